//! Issue 13 through the CLI: an example plugin published, trusted,
//! installed, run by id and disabled; refusals with exit status 1 and a
//! record; usage errors with 2; a version signed by another trusted key
//! waits for `--approve`; `cordon plugin install` killed with SIGKILL
//! at many points leaves the old or the new state; two installs at once
//! both land; an update naming a special address under an approved `*`
//! waits for `--approve`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use cordon_registry::{Cache, Registry, State};
use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Dir, HttpServer, Mode, TestCommand};

use super::cordon;
use super::plugins::example;

/// `cordon ARGS` with `CORDON_HOME` set to `home`.
fn at(home: &Path, args: &[&str]) -> TestCommand {
    let mut c = cordon();
    c.env("CORDON_HOME", home).args(args);
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_example_plugin_is_published_trusted_installed_run_and_disabled() {
    let dir = Dir::new("registry-e2e");
    let home = dir.join("home");
    let key = dir.join("acme.key");
    let pkg = dir.join("hello-sh.tar.gz");
    // Publish.
    let out = at(&home, &["key", "gen", "--out", s(&key)]).run();
    out.assert_success();
    let key_id = out.stdout.trim().to_owned();
    assert_eq!(key_id.len(), 16, "{out}");
    let out = at(&home, &["plugin", "pack", s(&example("hello-sh")), "--out", s(&pkg)]).run();
    out.assert_success();
    let sha = cordon_registry::Digest256::of(&std::fs::read(&pkg).unwrap());
    assert_eq!(out.stdout, format!("{sha}  {}\n", pkg.display()));
    at(&home, &["plugin", "sign", s(&pkg), "--key", s(&key)]).run().assert_success();
    // Install: refused until the key is trusted.
    let out = at(&home, &["plugin", "install", s(&pkg)]).run();
    out.assert_code(1).assert_stderr_contains(&format!("signed by key {key_id}, which is not trusted here"));
    at(&home, &["trust", "add", &format!("{}.pub", key.display()), "--name", "acme", "--scope", "@examples/*"])
        .run()
        .assert_success();
    let out = at(&home, &["plugin", "install", s(&pkg), "--json"]).run();
    out.assert_success();
    let r = out.json();
    assert_eq!(r["change"], "installed", "{out}");
    assert_eq!(r["plugin"]["state"], "signed", "{out}");
    assert_eq!(r["plugin"]["signer_key_id"], key_id.as_str(), "{out}");
    let tree = r["plugin"]["tree_hash"].as_str().unwrap().to_owned();
    // Run it by id, in each sandbox mode; the record names the package.
    let support = kernel_support();
    let log = dir.join("audit.jsonl");
    let modes = sandbox_modes!(support);
    let runs = modes.len();
    each_mode(modes, |mode| {
        let mut c =
            at(&home, &["exec", "@examples/hello-sh", "greet", "--json", "--mode", mode.as_str(), "--input", "-"]);
        c.env("CORDON_AUDIT_LOG", &log);
        let out = c.stdin(r#"{"name": "Ada"}"#).run();
        out.assert_success();
        assert_eq!(out.json()["data"]["greeting"], "Hello, Ada!", "{out}");
        let rec = &out.audit[0];
        assert_eq!(rec["plugin"], "@examples/hello-sh", "{out}");
        assert_eq!(rec["package_tree_hash"], tree.as_str(), "{out}");
        assert_eq!(rec["signer_key_id"], key_id.as_str(), "{out}");
        assert_eq!(rec["signature_state"], "signed", "{out}");
    });
    // "What did this package version do" is one filter away: by tree hash
    // (whole or a prefix), by signer; a run of the folder is not counted.
    let mut c = at(&home, &["exec", s(&example("hello-sh")), "greet"]);
    c.env("CORDON_AUDIT_LOG", &log).run().assert_success();
    let count = |args: &[&str]| {
        let out = at(&home, &[&["audit", "--json", "--audit-log", s(&log)], args].concat()).run();
        out.assert_success();
        out.json().as_array().unwrap().len()
    };
    assert_eq!(count(&[]), runs + 1, "the control: every run is in the log");
    assert_eq!(count(&["--package", &tree]), runs);
    let hex = tree.strip_prefix("sha256:").unwrap();
    assert_eq!(count(&["--package", &hex[..12]]), runs, "a prefix without sha256:");
    assert_eq!(count(&["--signer", &key_id.to_ascii_lowercase()]), runs);
    assert_eq!(count(&["--package", &format!("sha256:{}", "0".repeat(64))]), 0);
    at(&home, &["audit", "--package", "abc", "--audit-log", s(&log)])
        .run()
        .assert_code(125)
        .assert_stderr_contains("invalid --package abc");
    // Incident response: disable takes effect at the next execution.
    at(&home, &["plugin", "disable", "@examples/hello-sh"]).run().assert_success();
    let out = at(&home, &["exec", "@examples/hello-sh", "greet"]).run();
    out.assert_code(1).assert_stderr_contains("@examples/hello-sh is disabled");
    assert_eq!(out.audit[0]["outcome"], "SETUP_FAILED", "{out}");
    let list = at(&home, &["plugin", "list", "--json"]).run();
    list.assert_success();
    assert_eq!(list.json()[0]["enabled"], false, "{list}");
    at(&home, &["plugin", "enable", "@examples/hello-sh"]).run().assert_success();
    // A changed byte: Modified, refused, named with both hashes.
    let installed = PathBuf::from(r["plugin"]["path"].as_str().unwrap());
    let script = installed.join("greet.sh");
    let original = std::fs::read(&script).unwrap();
    let mut changed = original.clone();
    changed.extend_from_slice(b"\n# changed\n");
    std::fs::write(&script, &changed).unwrap();
    let out = at(&home, &["exec", "@examples/hello-sh", "greet"]).run();
    out.assert_code(1).assert_stderr_contains(&format!(
        "greet.sh has {}, the signed tree has {}",
        cordon_registry::Digest256::of(&changed),
        cordon_registry::Digest256::of(&original)
    ));
    assert_eq!(out.audit[0]["signature_state"], "modified", "{out}");
    let out = at(&home, &["plugin", "verify", "--json"]).run();
    out.assert_code(1);
    assert_eq!(out.json()[0]["state"], "modified", "{out}");
    std::fs::write(&script, &original).unwrap();
    at(&home, &["plugin", "verify"]).run().assert_success();
    // Removing the key: Invalid at once.
    at(&home, &["trust", "remove", "acme"]).run().assert_success();
    let out = at(&home, &["exec", "@examples/hello-sh", "greet"]).run();
    out.assert_code(1).assert_stderr_contains("which is not trusted here");
    assert_eq!(out.audit[0]["signature_state"], "invalid", "{out}");
    // A folder path still runs without the registry.
    at(&home, &["exec", s(&example("hello-sh")), "greet"]).run().assert_success();
}

#[test]
fn registry_commands_exit_2_on_usage_errors() {
    let dir = Dir::new("registry-usage");
    let home = dir.join("home");
    at(&home, &["plugin", "info", "not-an-id"]).run().assert_code(2).assert_stderr_contains("invalid plugin id");
    at(&home, &["plugin", "install"]).run().assert_code(2);
    at(&home, &["trust", "frobnicate"]).run().assert_code(2);
    at(&home, &["key", "gen"]).run().assert_code(2);
    // Control: a well-formed command that is refused exits 1, not 2.
    at(&home, &["plugin", "info", "@t/missing"])
        .run()
        .assert_code(1)
        .assert_stderr_contains("@t/missing is not installed");
}

/// `@acme/payments` VERSION in `dir/src-VERSION`, its handler printing
/// `says` and the token it is given, packed and signed with `key`.
fn payments(dir: &Dir, key: &Path, version: &str, says: &str) -> PathBuf {
    let src = dir.create_dir(format!("src-{version}"));
    std::fs::write(
        src.join("cordon.toml"),
        format!(
            "id = \"@acme/payments\"\nversion = \"{version}\"\n[handlers.go]\ncommand = [\"./go.sh\"]\n\
             [permissions]\nenv.allow = [\"ACME_API_TOKEN\"]\n"
        ),
    )
    .unwrap();
    dir.create_executable(
        format!("src-{version}/go.sh"),
        format!("#!/bin/sh\necho \"{says} token=$ACME_API_TOKEN\"\necho '{{}}' >&$CORDON_RESULT_FD\n"),
    );
    let pkg = dir.join(format!("payments-{version}.tar.gz"));
    cordon_registry::pack(&src, Some(&pkg)).unwrap();
    cordon_registry::sign(&pkg, key).unwrap();
    pkg
}

#[test]
fn another_trusted_publishers_version_of_an_installed_id_is_refused_until_approved() {
    // R12-3: acme and mallory both trusted with the default scope (every
    // id). mallory's 1.0.1 of acme's @acme/payments must not take over its
    // id, approved variables and data: refused, before and after an
    // uninstall, with both signers named; the store on disk keeps acme's.
    let dir = Dir::new("registry-signer");
    let home = dir.join("home");
    let mut ids = vec![];
    for name in ["acme", "mallory"] {
        let key = dir.join(name);
        let out = at(&home, &["key", "gen", "--out", s(&key)]).run();
        out.assert_success();
        ids.push(out.stdout.trim().to_owned());
        at(&home, &["trust", "add", &format!("{}.pub", key.display()), "--name", name]).run().assert_success();
    }
    let ours = payments(&dir, &dir.join("acme"), "1.0.0", "acme code");
    let theirs = payments(&dir, &dir.join("mallory"), "1.0.1", "MALLORY CODE");
    at(&home, &["plugin", "install", s(&ours)]).run().assert_success();
    let lock = home.join("registry.lock");
    let want = format!("signer: acme ({}) -> mallory ({})", ids[0], ids[1]);
    let run = |home: &Path| {
        let mut c = at(home, &["exec", "@acme/payments", "go"]);
        c.env("ACME_API_TOKEN", "tok-123").run()
    };
    for step in ["installed", "after uninstall"] {
        let before = std::fs::read(&lock).unwrap();
        let out = at(&home, &["plugin", "install", s(&theirs)]).run();
        out.assert_code(1).assert_stderr_contains(&want).assert_stderr_contains("--approve");
        assert_eq!(std::fs::read(&lock).unwrap(), before, "{step}: the lock file is as it was\n{out}");
        let out = run(&home);
        if step == "installed" {
            out.assert_success();
            assert!(out.stderr.contains("acme code token="), "{step}: acme's code runs\n{out}");
        } else {
            out.assert_code(1).assert_stderr_contains("@acme/payments is not installed");
        }
        assert!(!out.stderr.contains("MALLORY"), "{step}\n{out}");
        at(&home, &["plugin", "uninstall", "@acme/payments"]).run();
    }
    // Approved: installed, and the change is said.
    let out = at(&home, &["plugin", "install", s(&theirs), "--approve"]).run();
    out.assert_success();
    assert!(out.stdout.contains(&format!("{want} (approved)")), "{out}");
    let out = run(&home);
    assert!(out.stderr.contains("MALLORY CODE"), "the control: the approved version runs\n{out}");
}

/// A plugin of `files` files in `dir/src-<version>`, packed and signed.
fn generated(dir: &Dir, key: &Path, version: &str, files: usize) -> PathBuf {
    let src = dir.create_dir(format!("src-{version}"));
    std::fs::write(
        src.join("cordon.toml"),
        format!("id = \"@t/big\"\nversion = \"{version}\"\n[handlers.main]\ncommand = [\"./run.sh\"]\n"),
    )
    .unwrap();
    for i in 0..files {
        std::fs::create_dir_all(src.join(format!("d{}", i % 10))).unwrap();
        std::fs::write(src.join(format!("d{}/f{i}.txt", i % 10)), format!("{version} {i}\n").repeat(200)).unwrap();
    }
    let pkg = dir.join(format!("big-{version}.tar.gz"));
    cordon_registry::pack(&src, Some(&pkg)).unwrap();
    cordon_registry::sign(&pkg, key).unwrap();
    pkg
}

fn install_cmd(home: &Path, pkg: &Path) -> Command {
    let mut c = Command::new(super::cordon_bin());
    c.env("CORDON_HOME", home)
        .args(["plugin", "install", "--allow-downgrade", "--approve"])
        .arg(pkg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// The store is consistent: the lock file parses, names only complete,
/// verified plugins, and `@t/big` is one of the versions offered.
#[track_caller]
fn assert_consistent(reg: &Registry, versions: &[&str]) {
    let all = reg.verify(None, Cache::Off).unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    let p = &all[0];
    assert_eq!(p.state, State::Signed, "torn state: {p:#?}");
    assert!(versions.contains(&p.version.as_str()), "{p:#?}");
}

#[test]
fn sigkill_during_install_leaves_the_old_or_the_new_state() {
    let dir = Dir::new("registry-sigkill");
    let home = dir.join("home");
    let key = dir.join("k");
    cordon_registry::generate_key(&key).unwrap();
    let reg = Registry::open(&home).unwrap();
    reg.trust_add(&PathBuf::from(format!("{}.pub", key.display())), Some("k"), &[], None).unwrap();
    let v1 = generated(&dir, &key, "1.0.0", 300);
    let v2 = generated(&dir, &key, "2.0.0", 300);
    assert!(install_cmd(&home, &v1).status().unwrap().success());
    // How long one install takes here, to spread the kills over it.
    let t = Instant::now();
    assert!(install_cmd(&home, &v2).status().unwrap().success());
    let full = t.elapsed();
    assert_consistent(&reg, &["2.0.0"]);
    let mut killed_running = 0;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..16u32 {
        let target = if i % 2 == 0 { &v1 } else { &v2 };
        let delay = full * i / 14;
        let mut child = install_cmd(&home, target).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed_running += 1;
        }
        child.wait().unwrap();
        assert_consistent(&reg, &["1.0.0", "2.0.0"]);
        seen.insert(reg.info("@t/big", Cache::On).unwrap().version);
    }
    assert!(killed_running >= 8, "only {killed_running} kills hit a running install (install takes {full:?})");
    // The next install sweeps what killed ones left behind, also when it
    // has nothing else to do (the same version is installed already).
    let current = reg.info("@t/big", Cache::On).unwrap().version;
    let same = if current == "1.0.0" { &v1 } else { &v2 };
    assert!(install_cmd(&home, same).status().unwrap().success());
    assert_consistent(&reg, &[current.as_str()]);
    let staged = std::fs::read_dir(home.join("staging")).unwrap().count();
    let kept = std::fs::read_dir(home.join("plugins/@t/big")).unwrap().count();
    assert_eq!((staged, kept), (0, 2), "garbage left after a sweep (seen versions: {seen:?})");
}

#[test]
fn two_concurrent_installs_are_both_recorded() {
    let dir = Dir::new("registry-concurrent");
    let home = dir.join("home");
    let key = dir.join("k");
    cordon_registry::generate_key(&key).unwrap();
    let reg = Registry::open(&home).unwrap();
    reg.trust_add(&PathBuf::from(format!("{}.pub", key.display())), Some("k"), &[], None).unwrap();
    let mut pkgs = vec![];
    for i in 0..6 {
        let src = dir.create_dir(format!("p{i}"));
        std::fs::write(
            src.join("cordon.toml"),
            format!("id = \"@t/p{i}\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"./run.sh\"]\n"),
        )
        .unwrap();
        std::fs::write(src.join("run.sh"), "#!/bin/sh\n").unwrap();
        let pkg = dir.join(format!("p{i}.tar.gz"));
        cordon_registry::pack(&src, Some(&pkg)).unwrap();
        cordon_registry::sign(&pkg, &key).unwrap();
        pkgs.push(pkg);
    }
    for pair in pkgs.chunks(2) {
        let mut a = install_cmd(&home, &pair[0]).spawn().unwrap();
        let mut b = install_cmd(&home, &pair[1]).spawn().unwrap();
        assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    }
    let ids: Vec<String> = reg.list(Cache::Off).unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, (0..6).map(|i| format!("@t/p{i}")).collect::<Vec<_>>());
}

/// Review s12 R12-1: a plugin whose write grant covered its own folder
/// (`fs.write = ["."]`, or a grant above it, spelled through a link too)
/// could rewrite its `cordon.toml` while it ran, and
/// the next run (which read the file again after the verification, or
/// through the verification cache's stamp) got permissions no one
/// approved: a private host folder read. Such a plugin is now refused
/// before it starts, installed (signed) or a development folder, naming
/// the grant; on the host its manifest is unchanged and its handler did
/// not run. Control: the same plugin writing its data folder instead runs.
#[test]
fn a_plugin_may_not_write_its_own_folder() {
    let dir = Dir::new("registry-own-folder");
    let home = dir.join("home");
    let key = dir.join("k.key");
    at(&home, &["key", "gen", "--out", s(&key)]).run().assert_success();
    at(&home, &["trust", "add", &format!("{}.pub", key.display()), "--name", "k"]).run().assert_success();
    let marker = dir.join("ran");
    let manifest = |id: &str, write: &str| {
        format!(
            "id = \"@rv/{id}\"\nversion = \"1.0.0\"\nextends = [\"platform\"]\n[permissions]\nfs.write = [{write}]\n\
             [handlers.go]\ncommand = [\"sh\", \"-c\", \"echo '# rewritten' >> cordon.toml; : > {marker}; echo {{}} >&$CORDON_RESULT_FD\"]\n",
            marker = marker.display()
        )
    };
    // A link outside the grant, so the pin does not refuse it first.
    let links = Dir::new("registry-own-folder-link");
    let above = links.join("to");
    std::os::unix::fs::symlink(dir.path(), &above).unwrap();
    // Review s13 R13-5: a grant on the manifest file itself, however spelled.
    let writes = [
        "\".\"".to_owned(),
        format!("{:?}", dir.path().display().to_string()),
        format!("{:?}", above.display().to_string()),
        "\"cordon.toml\"".to_owned(),
        "\"./cordon.toml\"".to_owned(),
        "\"sub/../cordon.toml\"".to_owned(),
    ];
    for (i, write) in writes.iter().map(String::as_str).enumerate() {
        let folder = dir.join(format!("plugin-{i}"));
        std::fs::create_dir_all(folder.join("sub")).unwrap();
        let id = format!("own{i}");
        let text = manifest(&id, write);
        std::fs::write(folder.join("cordon.toml"), &text).unwrap();
        // A development folder.
        let out = at(&home, &["exec", s(&folder), "go"]).run();
        out.assert_code(125).assert_stderr_contains("may not write its own folder");
        assert_eq!(std::fs::read_to_string(folder.join("cordon.toml")).unwrap(), text, "{out}");
        assert!(!marker.exists(), "the handler ran: {out}");
        // Installed and signed.
        let pkg = dir.join(format!("own-{i}.tar.gz"));
        at(&home, &["plugin", "pack", s(&folder), "--out", s(&pkg)]).run().assert_success();
        at(&home, &["plugin", "sign", s(&pkg), "--key", s(&key)]).run().assert_success();
        let installed = at(&home, &["plugin", "install", s(&pkg), "--json", "--approve"]).run();
        installed.assert_success();
        let path = PathBuf::from(installed.json()["plugin"]["path"].as_str().unwrap());
        let out = at(&home, &["exec", &format!("@rv/{id}"), "go"]).run();
        out.assert_code(125).assert_stderr_contains("may not write its own folder");
        assert_eq!(std::fs::read_to_string(path.join("cordon.toml")).unwrap(), text, "{out}");
        assert!(!marker.exists(), "the installed handler ran: {out}");
    }
    // A development folder whose manifest has another name: a grant on that
    // name (or on a folder holding it) would rewrite the manifest.
    let folder = dir.join("plugin-hardlink");
    std::fs::create_dir_all(folder.join("out")).unwrap();
    let text = manifest("hardlink", "\"out\"").replace("cordon.toml;", "out/m;");
    std::fs::write(folder.join("cordon.toml"), &text).unwrap();
    std::fs::hard_link(folder.join("cordon.toml"), folder.join("out/m")).unwrap();
    let out = at(&home, &["exec", s(&folder), "go"]).run();
    out.assert_code(125).assert_stderr_contains("has 2 names (hard links)");
    assert_eq!(std::fs::read_to_string(folder.join("cordon.toml")).unwrap(), text, "{out}");
    assert!(!marker.exists(), "the handler ran: {out}");
    // Review s14 R14-2: a manifest that is a symbolic link, to a file in a
    // folder the plugin may write (inside it or elsewhere): refused, never
    // read through the link; on the host the target is unchanged.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for (name, write, target) in [
        ("linked-in", "\"out\"".to_owned(), "out/cordon.toml".to_owned()),
        (
            "linked-out",
            format!("{:?}", elsewhere.display().to_string()),
            elsewhere.join("cordon.toml").display().to_string(),
        ),
    ] {
        let folder = dir.join(format!("plugin-{name}"));
        std::fs::create_dir_all(folder.join("out")).unwrap();
        let text = manifest(name, &write);
        let real = folder.join(&target);
        std::fs::write(&real, &text).unwrap();
        std::os::unix::fs::symlink(&target, folder.join("cordon.toml")).unwrap();
        let out = at(&home, &["exec", s(&folder), "go"]).run();
        out.assert_code(125)
            .assert_stderr_contains("is a symbolic link")
            .assert_stderr_contains("cp --remove-destination");
        assert_eq!(std::fs::read_to_string(&real).unwrap(), text, "{out}");
        assert!(!marker.exists(), "the handler ran: {out}");
    }
    // The plugin folder named through a link that lies in a folder the
    // plugin may write: a run could re-point the link to another folder
    // for the next run.
    let real = dir.join("plugin-real");
    std::fs::create_dir_all(&real).unwrap();
    let named = links.join("w/pl");
    std::fs::create_dir_all(links.join("w")).unwrap();
    std::os::unix::fs::symlink(&real, &named).unwrap();
    let text = manifest("respelled", &format!("{:?}", links.join("w").display().to_string()));
    std::fs::write(real.join("cordon.toml"), &text).unwrap();
    let out = at(&home, &["exec", s(&named), "go"]).run();
    out.assert_code(125).assert_stderr_contains("may not write its own folder").assert_stderr_contains(s(&named));
    assert!(std::fs::symlink_metadata(&named).unwrap().file_type().is_symlink(), "{out}");
    assert!(!marker.exists(), "the handler ran: {out}");
    // Control: the data folder is the plugin's to write.
    let folder = dir.join("plugin-data");
    std::fs::create_dir_all(&folder).unwrap();
    let text = manifest("data", "").replace(
        &format!("echo '# rewritten' >> cordon.toml; : > {}", marker.display()),
        "echo x > $CORDON_DATA_DIR/x",
    );
    std::fs::write(folder.join("cordon.toml"), &text).unwrap();
    let data = dir.join("data-folder");
    at(&home, &["exec", s(&folder), "go", "--data-dir", s(&data)]).run().assert_success();
    assert_eq!(std::fs::read_to_string(data.join("x")).unwrap(), "x\n", "control: the handler wrote its data folder");
}

/// Review s12 R12-7 (a): a development folder is not verified and may
/// name any id, and the platform preset's data folder is found by id, so a
/// folder naming an installed plugin read and rewrote that plugin's data.
/// It is refused now (125, naming the id) unless --data-dir is given; on
/// the host the installed plugin's data is untouched. Controls: with
/// --data-dir it runs there; the installed plugin itself still runs.
#[test]
fn a_development_folder_may_not_claim_an_installed_plugins_data_folder() {
    let dir = Dir::new("registry-claim");
    let home = dir.join("home");
    let key = dir.join("k.key");
    at(&home, &["key", "gen", "--out", s(&key)]).run().assert_success();
    at(&home, &["trust", "add", &format!("{}.pub", key.display()), "--name", "k"]).run().assert_success();
    let manifest = |command: &str| {
        format!(
            "id = \"@rv/vault\"\nversion = \"1.0.0\"\nextends = [\"platform\"]\n[handlers.go]\n\
             command = [\"sh\", \"-c\", \"{command}; echo {{}} >&$CORDON_RESULT_FD\"]\n"
        )
    };
    let real = dir.join("real");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(real.join("cordon.toml"), manifest("echo SECRET-DATA > $CORDON_DATA_DIR/note")).unwrap();
    let pkg = dir.join("vault.tar.gz");
    at(&home, &["plugin", "pack", s(&real), "--out", s(&pkg)]).run().assert_success();
    at(&home, &["plugin", "sign", s(&pkg), "--key", s(&key)]).run().assert_success();
    at(&home, &["plugin", "install", s(&pkg)]).run().assert_success();
    let mut c = at(&home, &["exec", "@rv/vault", "go"]);
    let data_home = c.data_home();
    c.run().assert_success();
    let note = |base: &std::path::Path| std::fs::read_to_string(base.join("cordon/data/@rv/vault/note")).ok();
    let installed_note = note(&data_home).or_else(|| std::fs::read_to_string(home.join("data/@rv/vault/note")).ok());
    assert_eq!(installed_note.as_deref(), Some("SECRET-DATA\n"), "control: the installed plugin wrote its data");
    let claim = dir.join("claim");
    std::fs::create_dir_all(&claim).unwrap();
    std::fs::write(
        claim.join("cordon.toml"),
        manifest("cat $CORDON_DATA_DIR/note; echo TAMPERED > $CORDON_DATA_DIR/note"),
    )
    .unwrap();
    let mut c = at(&home, &["exec", s(&claim), "go"]);
    c.env("XDG_DATA_HOME", data_home.clone());
    let out = c.run();
    out.assert_code(125).assert_stderr_contains("names the id @rv/vault, which is installed here");
    assert!(!out.stdout.contains("SECRET-DATA") && !out.stderr.contains("SECRET-DATA"), "{out}");
    let after = note(&data_home).or_else(|| std::fs::read_to_string(home.join("data/@rv/vault/note")).ok());
    assert_eq!(after.as_deref(), Some("SECRET-DATA\n"), "the installed plugin's data was rewritten: {out}");
    // Control: a folder of its own.
    let own = dir.join("own-data");
    at(&home, &["exec", s(&claim), "go", "--data-dir", s(&own)]).run().assert_success();
    assert_eq!(std::fs::read_to_string(own.join("note")).unwrap(), "TAMPERED\n");
}

/// `@rv/net` VERSION in `dir/net-VERSION` asking `net.allow = [allow]`,
/// its handler asking `127.0.0.1:port` for a page and printing what came
/// back (or that it could not), packed and signed with `key`.
fn net_plugin(dir: &Dir, key: &Path, version: &str, allow: &[&str], port: u16) -> PathBuf {
    let src = dir.create_dir(format!("net-{version}"));
    let allow: Vec<String> = allow.iter().map(|p| format!("{p:?}")).collect();
    std::fs::write(
        src.join("cordon.toml"),
        format!(
            "id = \"@rv/net\"\nversion = \"{version}\"\n[handlers.go]\ncommand = [\"/usr/bin/python3\", \"go.py\"]\n\
             [permissions]\nnet.allow = [{}]\n",
            allow.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(
        src.join("go.py"),
        format!(
            "import os, socket\ntry:\n    s = socket.create_connection((\"127.0.0.1\", {port}), timeout=5)\n    \
             s.sendall(b\"GET / HTTP/1.0\\r\\n\\r\\n\")\n    print(\"answer:\", s.recv(200).decode().split(\"\\r\\n\")[-1])\n\
             except OSError as e:\n    print(\"no answer:\", e)\nos.write(int(os.environ[\"CORDON_RESULT_FD\"]), b\"{{}}\")\n"
        ),
    )
    .unwrap();
    let pkg = dir.join(format!("net-{version}.tar.gz"));
    cordon_registry::pack(&src, Some(&pkg)).unwrap();
    cordon_registry::sign(&pkg, key).unwrap();
    pkg
}

/// Review s12 R12-2: the consent diff counted an approved
/// `net.allow = ["*"]` as covering a pattern naming a loopback, private,
/// link-local or metadata address, which `*` never reaches at run time, so
/// an update adding `127.0.0.1:PORT` installed without `--approve` and its
/// handler read a service listening on the host's loopback only; and
/// `cordon exec P --net '*'` kept the manifest's literal. Now each such
/// update (and one adding any IP literal: it may be the running host's own
/// address, which only a literal reaches) waits for `--approve` naming the
/// added pattern and leaves the lock file as it was; `--net '*'` drops the
/// literal. Host side: the loopback service received nothing. Controls: the
/// approved literal reaches it, and so does `--net` naming it.
#[test]
fn an_update_naming_a_special_address_waits_for_approval_under_a_wildcard() {
    let support = kernel_support();
    let server = HttpServer::start("HOST-LOOPBACK-SERVICE");
    let port = server.port;
    let dir = Dir::new("registry-net-literal");
    let home = dir.join("home");
    let key = dir.join("k.key");
    at(&home, &["key", "gen", "--out", s(&key)]).run().assert_success();
    at(&home, &["trust", "add", &format!("{}.pub", key.display()), "--name", "k"]).run().assert_success();
    let first = net_plugin(&dir, &key, "1.0.0", &["*"], port);
    at(&home, &["plugin", "install", s(&first)]).run().assert_success();
    let lock = home.join("registry.lock");
    let local = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("localhost.:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        "169.254.169.254:80".to_owned(),
        "10.0.0.1:80".to_owned(),
        "[fe80::1]:80".to_owned(),
        "203.0.113.9:80".to_owned(),
    ];
    for (i, added) in local.iter().enumerate() {
        let pkg = net_plugin(&dir, &key, &format!("1.1.{i}"), &["*", added], port);
        let before = std::fs::read(&lock).unwrap();
        let out = at(&home, &["plugin", "install", s(&pkg)]).run();
        out.assert_code(1).assert_stderr_contains("--approve");
        let shown = format!("{}{}", out.stdout, out.stderr);
        let want = format!("+ {added}");
        assert!(shown.contains(&want), "{added}: the added pattern is not named\n{out}");
        assert_eq!(std::fs::read(&lock).unwrap(), before, "{added}: installed without --approve\n{out}");
    }
    let exec = |mode: Mode, net: Option<&str>| {
        let mut c = at(&home, &["exec", "@rv/net", "go", "--mode", mode.as_str()]);
        if let Some(net) = net {
            c.args(["--net", net]);
        }
        let out = c.run();
        out.assert_success();
        format!("{}{}", out.stdout, out.stderr)
    };
    each_mode(sandbox_modes!(support), |mode| {
        let out = exec(mode, None);
        assert!(
            out.contains("no answer:") && !out.contains("HOST-LOOPBACK"),
            "[{}] 1.0.0 reached it: {out}",
            mode.as_str()
        );
    });
    assert_eq!(server.received(), 0, "the host's loopback service was asked by 1.0.0");
    // Approved: the literal reaches the service (the refusals above are
    // consent's, not the setup's).
    let approved = net_plugin(&dir, &key, "1.2.0", &["*", &format!("127.0.0.1:{port}")], port);
    let out = at(&home, &["plugin", "install", s(&approved), "--approve"]).run();
    out.assert_success();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let before = server.received();
        let out = exec(mode, None);
        assert!(out.contains("answer: HOST-LOOPBACK-SERVICE"), "[{m}] control: the approved literal\n{out}");
        assert!(server.received() > before, "[{m}] control: the host side saw the request");
        // The host's `--net '*'` does not keep the manifest's literal.
        let before = server.received();
        let out = exec(mode, Some("*"));
        assert!(
            out.contains("no answer:") && !out.contains("HOST-LOOPBACK"),
            "[{m}] --net '*' kept the literal: {out}"
        );
        assert_eq!(server.received(), before, "[{m}] --net '*': the host's loopback service was asked");
        // Control: the host naming the literal keeps it.
        let out = exec(mode, Some(&format!("127.0.0.1:{port}")));
        assert!(out.contains("answer: HOST-LOOPBACK-SERVICE"), "[{m}] control: --net naming the literal\n{out}");
    });
}

/// R12-2, the host's own address: `cordon exec P --net '*'` keeps no
/// manifest literal naming one of this host's addresses (`*` never reaches
/// them, R12-4), while an exec without `--net` keeps the approved literal
/// (the unrestricted host narrows nothing). The "host" is a network
/// namespace the test makes, with 192.0.2.77 on a veth and a listener on
/// `0.0.0.0` logging each connection (host side). Fails on 6206ba5 (`--net
/// '*'` reached the listener, both modes).
#[test]
fn exec_net_wildcard_keeps_no_literal_naming_the_hosts_own_address() {
    use std::io::{BufRead, BufReader};

    let support = kernel_support();
    let ns = super::netns::Netns::new();
    ns.ip(
        "link add own0 type veth peer name own1\naddr add 192.0.2.77/24 dev own0\nlink set own0 up\nlink set own1 up",
    );
    let dir = Dir::new("registry-own-address");
    let log = dir.join("accepted");
    std::fs::write(&log, "").unwrap();
    /// Killed (by pid) and reaped however the test ends.
    struct Listener(std::process::Child);
    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let listener = "import socket, sys\ns = socket.socket(); s.bind((\"0.0.0.0\", 0)); s.listen(16)\n\
                    print(s.getsockname()[1], flush=True)\nwhile True:\n    c, peer = s.accept()\n    \
                    open(sys.argv[1], \"a\").write(peer[0] + \"\\n\"); c.sendall(b\"HOST-OWN\\n\"); c.close()\n";
    let mut child = ns
        .command("/usr/bin/python3")
        .args(["-c", listener])
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the listener");
    let stdout = child.stdout.take().unwrap();
    let _listener = Listener(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("the listener's port");
    let port: u16 = line.trim().parse().expect("a port");
    let accepted = || std::fs::read_to_string(&log).unwrap().lines().count();

    let home = dir.join("home");
    let key = dir.join("k.key");
    at(&home, &["key", "gen", "--out", s(&key)]).run().assert_success();
    at(&home, &["trust", "add", &format!("{}.pub", key.display()), "--name", "k"]).run().assert_success();
    let src = dir.create_dir("own");
    std::fs::write(
        src.join("cordon.toml"),
        format!(
            "id = \"@rv/own\"\nversion = \"1.0.0\"\n[handlers.go]\ncommand = [\"/usr/bin/python3\", \"go.py\"]\n\
             [permissions]\nnet.allow = [\"192.0.2.77:{port}\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        src.join("go.py"),
        format!(
            "import os, socket\ntry:\n    print(\"answer:\", socket.create_connection((\"192.0.2.77\", {port}), \
             timeout=5).recv(100).decode().strip())\nexcept OSError as e:\n    print(\"no answer:\", e)\n\
             os.write(int(os.environ[\"CORDON_RESULT_FD\"]), b\"{{}}\")\n"
        ),
    )
    .unwrap();
    let pkg = dir.join("own.tar.gz");
    cordon_registry::pack(&src, Some(&pkg)).unwrap();
    cordon_registry::sign(&pkg, &key).unwrap();
    at(&home, &["plugin", "install", s(&pkg), "--approve"]).run().assert_success();
    let exec = |mode: Mode, net: Option<&str>| {
        let mut c = TestCommand::new("nsenter");
        c.env("CORDON_HOME", &home).arg(format!("--net={}", ns.path().display())).arg("--").arg(super::cordon_bin());
        c.args(["exec", "@rv/own", "go", "--mode", mode.as_str()]);
        if let Some(net) = net {
            c.args(["--net", net]);
        }
        let out = c.run();
        out.assert_success();
        format!("{}{}", out.stdout, out.stderr)
    };
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let before = accepted();
        let out = exec(mode, Some("*"));
        assert!(out.contains("no answer:") && !out.contains("HOST-OWN"), "[{m}] --net '*' kept the literal: {out}");
        assert_eq!(accepted(), before, "[{m}] --net '*': the host's own service accepted a connection");
        // Controls: the approved literal reaches it without --net, and with
        // --net naming it.
        for net in [None, Some(format!("192.0.2.77:{port}"))] {
            let before = accepted();
            let out = exec(mode, net.as_deref());
            assert!(out.contains("answer: HOST-OWN"), "[{m}] control {net:?}: {out}");
            assert_eq!(accepted(), before + 1, "[{m}] control {net:?}");
        }
    });
}
