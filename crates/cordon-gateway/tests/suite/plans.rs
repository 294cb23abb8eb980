//! The park cache's plans (`cordon_gateway::plans`) are made only from a
//! manifest that hashes to what the catalog verified: a manifest changed
//! on disk after its verification (the window between the catalog's check
//! and the plan's read) is refused and never planned, so no sandbox is set
//! up from it and nothing is kept.

use cordon::plugin::HandlerRequest;
use cordon_gateway::plans::Plans;
use cordon_gateway::pool::Key;
use cordon_registry::Digest256;
use cordon_testkit::Dir;

const MANIFEST: &str =
    "id = \"@test/planned\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"sh\", \"-c\", \"true\"]\n";

fn key(dir: &std::path::Path) -> Key {
    Key {
        plugin: "@test/planned".into(),
        dir: dir.to_owned(),
        tree_hash: Some(format!("{}", Digest256::of(b"a tree"))),
        handler: "main".into(),
        mode: None,
        tenant: Some("acme".into()),
    }
}

/// The verified manifest's hash is that of MANIFEST; the file on disk is
/// then changed (a wider handler): refused, naming the file and both
/// hashes, and nothing kept. Control: the file as verified is planned
/// (its handler's command) and kept; a development folder (no tree hash)
/// is not planned ahead.
#[test]
fn a_manifest_changed_after_its_verification_is_never_planned() {
    let dir = Dir::new("plans-changed");
    std::fs::write(dir.join("cordon.toml"), MANIFEST).unwrap();
    let verified = Digest256::of(MANIFEST.as_bytes());
    let req = HandlerRequest::new(dir.path(), "main");
    let plans = Plans::new();
    let changed = MANIFEST.replace("true", "cat /etc/shadow");
    std::fs::write(dir.join("cordon.toml"), &changed).unwrap();
    let refused = plans.get(&key(dir.path()), Some(verified), &req).expect("planned ahead").unwrap_err();
    let message = refused.result.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
    assert!(message.contains("changed after the plugin was verified"), "{message}");
    assert!(
        message.contains(&verified.to_string()) && message.contains(&Digest256::of(changed.as_bytes()).to_string())
    );
    assert_eq!(refused.result.error.as_ref().map(|e| e.code), Some(cordon::ErrorCode::SetupFailed));
    assert!(plans.is_empty(), "a refused plan was kept");
    // Control: as verified.
    std::fs::write(dir.join("cordon.toml"), MANIFEST).unwrap();
    let plan = plans.get(&key(dir.path()), Some(verified), &req).expect("planned ahead").expect("planned");
    assert_eq!((plan.plugin().id.as_str(), plan.plugin().version.as_str()), ("@test/planned", "1.0.0"));
    assert_eq!(plans.len(), 1);
    let dev = Key { tree_hash: None, ..key(dir.path()) };
    assert!(plans.get(&dev, Some(verified), &req).is_none(), "a development folder was planned ahead");
}
