//! `cordon run --policy FILE.toml` (issue 10 item 15): the file's
//! `[permissions]` and `[quotas]` hold, checked on the host (files written
//! or left alone, limits hit); list flags add to the file, quota flags
//! replace its values; relative paths are the file's folder's; every error
//! names the file with line and column, or the path, with a hint. Each
//! grant and limit has its control: the same run without the file, or with
//! the flag that lifts it.

use cordon_testkit::{each_mode, kernel_support, require, sandbox_modes, Dir, Mode};

use super::{cordon, run_in, READ_ONLY_ERROR};

/// A project folder with `policy.toml` granting `out` writable, and an
/// `other` folder holding `keep.txt`.
fn project(label: &str, policy: &str) -> Dir {
    let dir = Dir::new(label);
    dir.create("policy.toml", policy);
    dir.create_dir("out");
    dir.create("other/keep.txt", "original\n");
    dir
}

/// What `sh` says about a write into a folder no grant covers: container
/// mode does not mount it (dash: "Directory nonexistent"); process mode
/// sees it through read-only host mounts.
fn refused_write(mode: Mode) -> &'static str {
    match mode {
        Mode::Container => "Directory nonexistent",
        _ => READ_ONLY_ERROR,
    }
}

#[test]
fn a_policy_files_write_grant_holds_and_a_path_outside_it_is_refused() {
    let support = kernel_support();
    let dir = project("pf-write", "# the build's output only\n[permissions]\nfs.write = [\"out\"]\n");
    let policy = dir.join("policy.toml");
    let (out, keep) = (dir.join("out/new.txt"), dir.join("other/keep.txt"));
    each_mode(sandbox_modes!(support), |mode| {
        let write = |target: &std::path::Path| format!("echo written > {}", target.display());
        // Control: without the file, `out` is not writable.
        let o = run_in(mode).args(["--", "sh", "-c", &write(&out)]).run();
        o.assert_code(2).assert_stderr_contains(refused_write(mode));
        assert!(!out.exists(), "[{}] written without a grant", mode.as_str());

        // The file's grant: written on the host.
        run_in(mode).arg("--policy").arg(&policy).args(["--", "sh", "-c", &write(&out)]).run().assert_success();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "written\n", "[{}]", mode.as_str());
        std::fs::remove_file(&out).unwrap();

        // Outside it: refused, and the host file is unchanged.
        let o = run_in(mode).arg("--policy").arg(&policy).args(["--", "sh", "-c", &write(&keep)]).run();
        o.assert_code(2).assert_stderr_contains(&format!("{}: {}", keep.display(), refused_write(mode)));
        assert_eq!(dir.read("other/keep.txt"), "original\n", "[{}]", mode.as_str());

        // A flag adds to the file's grants: --write other, and the same
        // write goes through (the control of the refusal above).
        run_in(mode)
            .arg("--policy")
            .arg(&policy)
            .arg("--write")
            .arg(dir.join("other"))
            .args(["--", "sh", "-c", &write(&keep)])
            .run()
            .assert_success();
        assert_eq!(dir.read("other/keep.txt"), "written\n", "[{}]", mode.as_str());
        std::fs::write(&keep, "original\n").unwrap();
        // ... and the file's grant still holds next to the flag's.
        run_in(mode)
            .arg("--policy")
            .arg(&policy)
            .arg("--write")
            .arg(dir.join("other"))
            .args(["--", "sh", "-c", &write(&out)])
            .run()
            .assert_success();
        std::fs::remove_file(&out).unwrap();

        // A --deny flag carves out of the file's grant.
        let secret = dir.create_dir("out/secret").join("x");
        let o = run_in(mode)
            .arg("--policy")
            .arg(&policy)
            .arg("--deny")
            .arg(dir.join("out/secret"))
            .args(["--", "sh", "-c", &write(&secret)])
            .run();
        assert_ne!(o.code(), Some(0), "[{}] write under --deny succeeded\n{o}", mode.as_str());
        assert!(!secret.exists(), "[{}] written under --deny", mode.as_str());
        std::fs::remove_dir(dir.join("out/secret")).unwrap();
    });
}

#[test]
fn relative_entries_are_the_policy_files_folders_and_the_file_is_found_from_the_current_directory() {
    let support = kernel_support();
    let dir = project("pf-rel", "[permissions]\nfs.write = [\"out\"]\nfs.read = [\"other\"]\n");
    let elsewhere = Dir::new("pf-rel-cwd");
    elsewhere.create_dir("out");
    each_mode(sandbox_modes!(support), |mode| {
        // `--policy policy.toml` from the project folder, the command
        // working in another folder: `out` is the project's, not the cwd's.
        let mut cmd = run_in(mode);
        cmd.command().current_dir(dir.path());
        cmd.args(["--policy", "policy.toml", "--cwd"])
            .arg(elsewhere.path())
            .args(["--", "sh", "-c"])
            .arg(format!("cat {} > {}", dir.join("other/keep.txt").display(), dir.join("out/copy.txt").display()))
            .run()
            .assert_success();
        assert_eq!(dir.read("out/copy.txt"), "original\n", "[{}]", mode.as_str());
        std::fs::remove_file(dir.join("out/copy.txt")).unwrap();
        // The cwd's own `out` was not granted by the relative entry.
        let o = run_in(mode)
            .arg("--policy")
            .arg(dir.join("policy.toml"))
            .arg("--cwd")
            .arg(elsewhere.path())
            .args(["--", "sh", "-c", "echo x > out/y"])
            .run();
        assert_ne!(o.code(), Some(0), "[{}]\n{o}", mode.as_str());
        assert!(!elsewhere.join("out/y").exists(), "[{}] the cwd's out was written", mode.as_str());
    });
}

#[test]
fn a_quota_from_the_file_is_enforced_and_a_flag_replaces_it() {
    let support = kernel_support();
    let dir = Dir::new("pf-quota");
    let timeout = dir.create("timeout.toml", "[quotas]\ntimeout_ms = 300\n");
    let pids = dir.create("pids.toml", "[quotas]\npids = 20\n");
    const FORK_100: &str = "for i in $(seq 100); do sleep 0.2 & done; wait";
    each_mode(sandbox_modes!(support), |mode| {
        let o = run_in(mode).arg("--policy").arg(&timeout).args(["--", "sleep", "5"]).run();
        o.assert_code(124).assert_stderr_contains(
            "cordon: stopped: TIMEOUT: timed out after 300 ms (timeout_ms)\n  hint: raise it with --timeout-ms N \
             (it replaces the policy file's value) or timeout_ms under [quotas] in the policy file\n",
        );
        // The flag replaces the file's value: the same sleep ends by itself.
        run_in(mode)
            .arg("--policy")
            .arg(&timeout)
            .args(["--timeout-ms", "20000", "--", "sleep", "0.5"])
            .run()
            .assert_success()
            .assert_stderr_lacks("TIMEOUT");
    });
    require!(support.cgroups.pids.is_some(), "a pids cgroup controller usable below cordon's cgroup");
    each_mode(sandbox_modes!(support), |mode| {
        let o = run_in(mode).arg("--policy").arg(&pids).args(["--json", "--", "sh", "-c", FORK_100]).run();
        let result = o.json();
        assert_eq!(result["error"]["code"], "PIDS_LIMIT", "[{}]\n{o}", mode.as_str());
        // The ledger shows the file's quota as the effective one.
        let ledger = result["enforcement"].as_array().unwrap();
        assert!(ledger.iter().any(|e| e["rule"] == "quota pids=20"), "[{}]\n{o}", mode.as_str());
        // Control: --pids replaces it and the 100 children start.
        let o =
            run_in(mode).arg("--policy").arg(&pids).args(["--pids", "400", "--json", "--", "sh", "-c", FORK_100]).run();
        o.assert_success();
        let ledger = o.json()["enforcement"].as_array().unwrap().clone();
        assert!(ledger.iter().any(|e| e["rule"] == "quota pids=400"), "[{}]\n{o}", mode.as_str());
        assert!(!ledger.iter().any(|e| e["rule"] == "quota pids=20"), "[{}]\n{o}", mode.as_str());
    });
}

#[test]
fn the_json_result_shows_the_files_grants_in_the_ledger() {
    let dir = project("pf-ledger", "[permissions]\nfs.write = [\"out\"]\nfs.read = [\"/usr/share/doc\"]\n");
    let o = run_in(Mode::Process).arg("--policy").arg(dir.join("policy.toml")).args(["--json", "--", "true"]).run();
    o.assert_success();
    let rules: Vec<String> =
        o.json()["enforcement"].as_array().unwrap().iter().map(|e| e["rule"].as_str().unwrap().to_owned()).collect();
    assert!(rules.contains(&format!("fs.write {}", dir.join("out").display())), "{rules:?}");
    assert!(rules.contains(&"fs.read /usr/share/doc".to_owned()), "{rules:?}");
    // Control: without the file neither is there.
    let o = run_in(Mode::Process).args(["--json", "--", "true"]).run();
    assert!(!o.stdout.contains("fs.write"), "{o}");
}

/// `cordon run --policy FILE -- touch MARKER` exits 125 with `stderr`,
/// and never starts the command.
fn refused(policy: &std::path::Path, stderr: &str) {
    let marker = Dir::new("pf-marker");
    let o = run_in(Mode::Process).arg("--policy").arg(policy).args(["--", "touch"]).arg(marker.join("ran")).run();
    o.assert_code(125).assert_stderr_contains(stderr);
    assert!(!marker.join("ran").exists(), "the command ran\n{o}");
}

#[test]
fn every_policy_file_error_names_the_file_and_where_with_a_hint() {
    let dir = Dir::new("pf-errors");
    let bad = |name: &str, text: &str| (dir.create(name, text), dir.join(name).display().to_string());

    let (p, path) = bad("key.toml", "[permissions]\nfs.raed = [\"x\"]\n");
    refused(
        &p,
        &format!(
            "cordon: error: {path}:2:4: unknown field `raed`, expected one of `read`, `write`, `deny`\n    |\n  2 | fs.raed = [\"x\"]\n    |    ^\n  hint: did you mean `read`?\n"
        ),
    );
    let (p, path) = bad("type.toml", "[quotas]\nmemory_mb = \"512\"\n");
    refused(
        &p,
        &format!(
            "cordon: error: {path}:2:13: invalid type: string \"512\", expected u64\n    |\n  2 | memory_mb = \"512\"\n    |             ^\n  hint: quotas are whole, non-negative numbers without quotes\n"
        ),
    );
    let (p, path) = bad("handlers.toml", "[handlers.main]\ncommand = [\"x\"]\n");
    refused(
        &p,
        &format!(
            "cordon: error: {path}:1:2: `handlers` belongs in a plugin's cordon.toml; a policy file holds only [permissions] and [quotas]\n"
        ),
    );
    let (p, path) = bad("caps.toml", "[permissions]\ncapabilities = [\"llm\"]\n");
    refused(&p, &format!("cordon: error: {path}:2:17: `capabilities` has no meaning in a policy file\n"));
    refused(&p, "hint: capabilities are what a host application grants a plugin (`cordon exec --capability NAME`)");
    let (p, path) = bad("range.toml", "[quotas]\npids = 100000\n");
    refused(&p, &format!("cordon: error: {path}:2:8: quotas.pids = 100000 is out of range\n"));
    let (p, path) = bad("up.toml", "[permissions]\nfs.read = [\"../secret\"]\n");
    refused(
        &p,
        &format!(
            "cordon: error: {path}:2:12: fs.read entry `../secret` leaves the policy file's folder\n    |\n  2 | fs.read = [\"../secret\"]\n    |            ^\n  hint: relative paths stay inside the policy file's folder; write an absolute path to ask for a host path\n"
        ),
    );
    // A link in the folder that leads out of it.
    std::os::unix::fs::symlink("/etc", dir.join("conf")).unwrap();
    let (p, path) = bad("link.toml", "[permissions]\nfs.read = [\"conf\"]\n");
    refused(
        &p,
        &format!(
            "cordon: error: invalid --policy {path}: fs.read `conf` resolves to /etc, outside the policy file's folder {}\n  hint: a relative path in a policy file stays inside the file's folder, symbolic links included: write the absolute path to grant one elsewhere\n",
            dir.path().display()
        ),
    );
    // A missing file is named, with what --policy takes.
    let missing = dir.join("nope.toml");
    refused(
        &missing,
        &format!(
            "cordon: error: cannot read {}\n  caused by: No such file or directory (os error 2)\n  hint: --policy takes a TOML file",
            missing.display()
        ),
    );
    // Control: a valid file in the same folder runs the command.
    let (p, _) = bad("good.toml", "[permissions]\nfs.read = [\"/etc/hostname\"]\n[quotas]\npids = 64\n");
    run_in(Mode::Process).arg("--policy").arg(&p).args(["--", "true"]).run().assert_success();
}

#[test]
fn policy_is_in_run_help() {
    cordon().args(["run", "--help"]).run().assert_success().assert_stdout_contains("--policy <FILE.toml>");
}

/// Review s11 S4: a policy file inside its own write grant (a project's
/// `build.toml` with `fs.write = ["."]`, or `--write .` beside it) was the
/// run's to rewrite, and the next run got what the sandbox wrote
/// (`fs.read = ["/"]` appended: a private host file read). Such a run is
/// refused before anything starts (125, naming the file and the grant),
/// and on the host the file is as it was. Control: the same file granting
/// a subfolder runs and writes there.
#[test]
fn a_policy_file_inside_its_own_write_grant_is_refused() {
    let support = kernel_support();
    let rewrite = "printf 'fs.read = [\"/\"]\\n' >> build.toml; echo built > out/done";
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        for (policy, flags) in [
            ("[permissions]\nfs.write = [\".\"]\n", &[][..]),
            ("[permissions]\nfs.write = [\"out\"]\n", &["--write", "."][..]),
        ] {
            let dir = Dir::new("pf-self");
            let file = dir.create("build.toml", policy);
            dir.create_dir("out");
            let out = run_in(mode)
                .arg("--cwd")
                .arg(dir.path())
                .arg("--policy")
                .arg(&file)
                .args(flags)
                .args(["--", "sh", "-c", rewrite])
                .run();
            out.assert_code(125).assert_stderr_contains("the file lies inside its own write grant");
            assert_eq!(
                dir.read("build.toml"),
                policy,
                "[{m}] {flags:?} the policy file was rewritten on the host\n{out}"
            );
            assert!(!dir.join("out/done").exists(), "[{m}] {flags:?} the command ran\n{out}");
        }
        // Control: a subfolder granted, the file beside it.
        let dir = Dir::new("pf-self");
        let policy = "[permissions]\nfs.write = [\"out\"]\n";
        let file = dir.create("build.toml", policy);
        dir.create_dir("out");
        run_in(mode)
            .arg("--cwd")
            .arg(dir.path())
            .arg("--policy")
            .arg(&file)
            .args(["--", "sh", "-c", "echo built > out/done"])
            .run()
            .assert_success();
        assert_eq!(dir.read("out/done"), "built\n", "[{m}] control");
    });
}
