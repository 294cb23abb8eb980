//! The service runs the plugins installed in the registry (`cordon plugin
//! install`), verified before every run: disabled and modified plugins are
//! refused at once, and the record names the package that ran.

use serde_json::json;

use super::{Options, Service, INTERNAL_SECRET, JWT_SECRET, PLUGIN};
use crate::suite::cordon;

#[test]
fn registry_plugins_are_verified_before_every_run() {
    let s = Service::start_with("serve-registry", Options { registry: true, ..Options::default() });
    let home = s.dir.join("home");
    let at = s.access_token();
    // Nothing installed yet.
    assert_eq!(s.execute(&at, "empty", json!({}), None).status, 404);
    let package = s.dir.join("gw.tar.gz");
    let plugin_dir = s.dir.join("plugins/gw");
    cordon().args(["plugin", "pack"]).arg(&plugin_dir).arg("--out").arg(&package).run().assert_success();
    cordon()
        .env("CORDON_HOME", &home)
        .args(["plugin", "install"])
        .arg(&package)
        .args(["--allow-unsigned", "--approve"])
        .run()
        .assert_success();
    let list = s.get("/v1/plugins", &at).json();
    let p = &list["plugins"][0];
    assert_eq!(
        (p["id"].as_str(), p["state"].as_str(), p["enabled"].as_bool()),
        (Some(PLUGIN), Some("unsigned"), Some(true)),
        "{list}"
    );
    let r = s.execute(&at, "empty", json!({}), None);
    assert_eq!(r.status, 200, "{r:?}\n{}", s.log());
    let rec = &s.records_of(r.json()["id"].as_str().unwrap())[0];
    assert_eq!(rec["signature_state"], "unsigned");
    assert!(rec["package_tree_hash"].as_str().is_some_and(|h| h.starts_with("sha256:")), "{rec}");
    // Disabled: refused at once, nothing recorded; enabled again: runs.
    cordon().env("CORDON_HOME", &home).args(["plugin", "disable", PLUGIN]).run().assert_success();
    let r = s.execute(&at, "empty", json!({}), None);
    assert_eq!((r.status, r.error().0.as_str()), (409, "plugin_disabled"), "{r:?}");
    cordon().env("CORDON_HOME", &home).args(["plugin", "enable", PLUGIN]).run().assert_success();
    assert_eq!(s.execute(&at, "empty", json!({}), None).status, 200);
    // A changed file in the installed tree: modified, never runs.
    let info = cordon().env("CORDON_HOME", &home).args(["plugin", "info", PLUGIN, "--json"]).run();
    let installed = std::path::PathBuf::from(info.json()["path"].as_str().expect("path").to_owned());
    let script = installed.join("empty.sh");
    let mut text = std::fs::read_to_string(&script).unwrap();
    text.push_str("echo tampered\n");
    std::fs::write(&script, text).unwrap();
    let r = s.execute(&at, "empty", json!({}), None);
    assert_eq!((r.status, r.error().0.as_str()), (409, "plugin_invalid"), "{r:?}");
    assert!(r.error().1.contains("empty.sh"), "the refusal names the changed file: {r:?}");
    let list = s.get("/v1/plugins", &at).json();
    assert_eq!(list["plugins"][0]["state"], "modified", "{list}");
    assert_eq!(s.audit_records().len(), 2, "only the two runs that ran are recorded");
}

/// Installs the plugin folder `DIR/plugins/<name>` into the service's
/// registry (`DIR/home`).
fn install(s: &Service, name: &str) {
    let package = s.dir.join(format!("{name}.tar.gz"));
    cordon()
        .args(["plugin", "pack"])
        .arg(s.dir.join("plugins").join(name))
        .arg("--out")
        .arg(&package)
        .run()
        .assert_success();
    cordon()
        .env("CORDON_HOME", s.dir.join("home"))
        .args(["plugin", "install"])
        .arg(&package)
        .args(["--allow-unsigned", "--approve"])
        .run()
        .assert_success();
}

/// The files the service reads its secrets and trust from are cordon's
/// own state, out of every run's reach (review s12 R12-9, R12-8 (a)):
/// with the JWT secret in a file (`CORDON_JWT_SECRET_FILE`), a plugin whose
/// read grant covers that file's folder and the configuration file must
/// not return them (whoever has the JWT secret forges any tenant's
/// tokens); and a plugin whose write grant covers the registry the service
/// runs from (`[server] home`, not `$CORDON_HOME`) must not run, or it
/// could rewrite the trust store for every tenant's next run. A file
/// beside the secrets in the same grant is read: the grant is in force.
#[test]
fn a_plugin_cannot_read_the_services_secret_files_or_write_its_registry() {
    let s =
        Service::start_with("serve-own-state", Options { registry: true, secret_files: true, ..Options::default() });
    let dir = s.dir.path().to_owned();
    s.dir.create("etc/motd", "readable beside the secrets\n");
    s.dir.create(
        "plugins/peek/cordon.toml",
        format!(
            "id = \"@test/peek\"\nversion = \"1.0.0\"\n[handlers.go]\ncommand = [\"./go.sh\"]\n\
             [permissions]\nfs.read = [\"{d}/etc\", \"{d}/config.toml\"]\n",
            d = dir.display()
        ),
    );
    s.dir.create_executable(
        "plugins/peek/go.sh",
        format!(
            "#!/bin/sh\nb() {{ base64 -w0 < \"$1\" 2>/dev/null; }}\n\
             printf '{{\"motd\":\"%s\",\"jwt\":\"%s\",\"internal\":\"%s\",\"config\":\"%s\"}}' \
             \"$(b {d}/etc/motd)\" \"$(b {d}/etc/jwt.secret)\" \"$(b {d}/etc/internal.secret)\" \"$(b {d}/config.toml)\" >&3\n",
            d = dir.display()
        ),
    );
    s.dir.create(
        "plugins/plant/cordon.toml",
        format!(
            "id = \"@test/plant\"\nversion = \"1.0.0\"\n[handlers.go]\ncommand = [\"./go.sh\"]\n\
             [permissions]\nfs.write = [\"{d}\"]\n",
            d = dir.display()
        ),
    );
    s.dir.create_executable(
        "plugins/plant/go.sh",
        format!("#!/bin/sh\necho '{{\"keys\": []}}' > {d}/home/trust.json\nprintf '{{}}' >&3\n", d = dir.display()),
    );
    install(&s, "peek");
    install(&s, "plant");
    let at = s.access_token();
    let r = s.post_json("/v1/executions", &at, &json!({"plugin": "@test/peek", "handler": "go", "input": {}}));
    assert_eq!(r.status, 200, "{r:?}\n{}", s.log());
    let data = r.json()["data"].clone();
    let decoded = |k: &str| {
        let b64 = data[k].as_str().unwrap_or_else(|| panic!("no {k} in {data}"));
        let out = cordon_testkit::TestCommand::new("base64").arg("-d").stdin(b64.as_bytes().to_vec()).run();
        out.stdout.clone()
    };
    assert_eq!(decoded("motd"), "readable beside the secrets\n", "the control file was not read: {data}");
    for (k, secret) in [("jwt", JWT_SECRET), ("internal", INTERNAL_SECRET), ("config", "secret_sha256")] {
        let got = decoded(k);
        assert!(!got.contains(secret), "the plugin read the service's {k} file: {got:?}");
    }
    let trust = s.dir.join("home/trust.json");
    let before = std::fs::read(&trust).ok();
    let r = s.post_json("/v1/executions", &at, &json!({"plugin": "@test/plant", "handler": "go", "input": {}}));
    assert_eq!(std::fs::read(&trust).ok(), before, "the plugin rewrote the service's trust store: {r:?}");
    // A plugin installed in that registry lies inside any grant covering
    // it, so the refusal of a plugin that may write its own folder (R12-1)
    // may come first; either refusal names what the grant covers.
    let body = r.body.clone();
    assert!(
        body.contains("the plugin registry this service runs from") || body.contains("may not write its own folder"),
        "the refusal does not name the registry: {r:?}"
    );
}

/// Every plugin folder of `[server] plugins` is kept out of every run of
/// the service, as cordon's own state is (review s12): a plugin granted
/// write on another plugin's folder of the catalog rewrote its code for
/// every tenant's next run. The grant inside the catalog is not granted
/// (the result says so); on the host the other plugin's script is
/// unchanged and still answers as before. Control: the plugin's grant
/// beside the catalog is in force (it wrote there).
#[test]
fn a_plugin_cannot_write_another_plugin_folder_of_the_catalog() {
    let s = Service::start("serve-catalog-own");
    let dir = s.dir.path().to_owned();
    s.dir.create("beside/.keep", "");
    s.dir.create(
        "plugins/rewrite/cordon.toml",
        format!(
            "id = \"@test/rewrite\"\nversion = \"1.0.0\"\n[handlers.go]\ncommand = [\"./go.sh\"]\n\
             [permissions]\nfs.write = [\"{d}/plugins/gw\", \"{d}/beside\"]\n",
            d = dir.display()
        ),
    );
    s.dir.create_executable(
        "plugins/rewrite/go.sh",
        format!(
            "#!/bin/sh\necho ok > {d}/beside/control\n\
             echo 'printf \"{{\\\"pwned\\\": true}}\" >&3' > {d}/plugins/gw/empty.sh && echo rewrote >&2\nprintf '{{}}' >&3\n",
            d = dir.display()
        ),
    );
    let script = dir.join("plugins/gw/empty.sh");
    let before = std::fs::read(&script).unwrap();
    let at = s.access_token();
    let r = s.post_json("/v1/executions", &at, &json!({"plugin": "@test/rewrite", "handler": "go", "input": {}}));
    assert_eq!(r.status, 200, "{r:?}\n{}", s.log());
    assert_eq!(std::fs::read_to_string(dir.join("beside/control")).ok().as_deref(), Some("ok\n"), "{r:?}");
    assert_eq!(std::fs::read(&script).unwrap(), before, "the plugin rewrote another plugin's code: {r:?}");
    assert!(r.body.contains("the plugin folders this service runs"), "the result does not say why: {r:?}");
    let r = s.post_json("/v1/executions", &at, &json!({"plugin": PLUGIN, "handler": "empty", "input": {}}));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!r.body.contains("pwned"), "{r:?}");
}

/// Review s14 R14-2: a catalog entry that is a symbolic link to a plugin
/// folder elsewhere was run, though only the catalog folder is kept out of
/// every run: another plugin whose grant covered the link's target rewrote
/// the linked plugin's manifest for its next run. Such an entry is not run
/// now (its handler never starts), and a catalog plugin whose manifest is a
/// link is refused as a development folder's is.
#[test]
fn a_catalog_entry_or_manifest_that_is_a_link_is_not_run() {
    let s = Service::start("serve-catalog-link");
    let dir = s.dir.path().to_owned();
    s.dir.create("out/.keep", "");
    let marker = dir.join("out/ran");
    let victim = |id: &str| {
        format!(
            "id = \"{id}\"\nversion = \"1.0.0\"\n[permissions]\nfs.write = [\"{out}\"]\n\
             [handlers.go]\ncommand = [\"sh\", \"-c\", \"touch {m}; printf '{{}}' >&3\"]\n",
            out = dir.join("out").display(),
            m = marker.display()
        )
    };
    s.dir.create("elsewhere/victim/cordon.toml", victim("@test/victim"));
    std::os::unix::fs::symlink(dir.join("elsewhere/victim"), dir.join("plugins/victim")).unwrap();
    s.dir.create("elsewhere/manifest.toml", victim("@test/linked-manifest"));
    std::fs::create_dir_all(dir.join("plugins/linked-manifest")).unwrap();
    std::os::unix::fs::symlink(dir.join("elsewhere/manifest.toml"), dir.join("plugins/linked-manifest/cordon.toml"))
        .unwrap();
    let at = s.access_token();
    let r = s.post_json("/v1/executions", &at, &json!({"plugin": "@test/victim", "handler": "go", "input": {}}));
    assert_ne!(r.status, 200, "{r:?}\n{}", s.log());
    assert!(!marker.exists(), "the linked catalog entry ran: {r:?}");
    let r =
        s.post_json("/v1/executions", &at, &json!({"plugin": "@test/linked-manifest", "handler": "go", "input": {}}));
    assert!(r.body.contains("SETUP_FAILED") && r.body.contains("is a symbolic link"), "{r:?}\n{}", s.log());
    assert!(!marker.exists(), "the plugin with a linked manifest ran: {r:?}");
    // Control: the same plugin as a folder of the catalog runs.
    std::fs::remove_file(dir.join("plugins/victim")).unwrap();
    std::fs::rename(dir.join("elsewhere/victim"), dir.join("plugins/victim")).unwrap();
    let r = s.post_json("/v1/executions", &at, &json!({"plugin": "@test/victim", "handler": "go", "input": {}}));
    assert_eq!(r.status, 200, "{r:?}\n{}", s.log());
    assert!(marker.exists(), "control: the plugin did not run: {r:?}");
}
