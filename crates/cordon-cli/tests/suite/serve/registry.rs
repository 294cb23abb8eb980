//! The service runs the plugins installed in the registry (`cordon plugin
//! install`), verified before every run: disabled and modified plugins are
//! refused at once, and the record names the package that ran.

use serde_json::json;

use super::{Options, Service, PLUGIN};
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
