//! Issue 13, signatures: stock minisign interoperates both ways; a
//! signature moved to another plugin, version or permission set is Invalid;
//! unknown, expired and out-of-scope keys are Invalid; unsigned packages
//! are refused unless allowed, and the allowance is recorded.

use std::path::Path;

use cordon_registry::{InstallOptions, RegistryError, State, VerifyError};

use super::{minisign, pub_of, unsigned_ok, Fixture};

#[track_caller]
fn verify_err(r: Result<cordon_registry::InstallReport, RegistryError>) -> VerifyError {
    match r {
        Err(RegistryError::Verify(e)) => e,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

#[test]
fn cordon_signatures_verify_with_stock_minisign_and_the_reverse() {
    let f = Fixture::new("interop");
    let key = f.key("cordon.key");
    let pkg = f.publish(&f.plugin("@t/interop", "1.0.0", ""), "p.tar.gz", &key);
    let statement = f.dir.create("statement", cordon_registry::inspect(&pkg).unwrap().statement.text());
    // cordon -> minisign (also with -H: cordon emits prehashed signatures).
    for extra in [&[][..], &["-H"][..]] {
        let out = minisign()
            .args(extra)
            .arg("-Vm")
            .arg(&statement)
            .arg("-x")
            .arg(format!("{}.minisig", pkg.display()))
            .arg("-p")
            .arg(pub_of(&key))
            .output()
            .unwrap();
        assert!(out.status.success(), "minisign -V {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("cordon:@t/interop 1.0.0 tree=sha256:"));
    }
    // Control for the check above: minisign refuses a changed statement.
    let changed = f.dir.create("changed", "cordon plugin statement v1\nid: @t/other\n");
    let out = minisign()
        .arg("-Vm")
        .arg(&changed)
        .arg("-x")
        .arg(format!("{}.minisig", pkg.display()))
        .arg("-p")
        .arg(pub_of(&key))
        .output()
        .unwrap();
    assert!(!out.status.success());

    // minisign -> cordon: a key from `minisign -G -W`, prehashed and legacy signatures.
    let mkey = f.dir.join("keys/stock.key");
    let out = minisign().arg("-G").arg("-W").arg("-p").arg(pub_of(&mkey)).arg("-s").arg(&mkey).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    f.trust(&mkey, "stock", &[], None);
    for (version, legacy) in [("2.0.0", false), ("3.0.0", true)] {
        let pkg = f.pack(&f.plugin("@t/interop", version, ""), &format!("{version}.tar.gz"));
        let st = f.dir.create(format!("st-{version}"), cordon_registry::inspect(&pkg).unwrap().statement.text());
        let mut cmd = minisign();
        cmd.arg("-S").arg("-W");
        if legacy {
            cmd.arg("-l");
        }
        let out = cmd
            .arg("-s")
            .arg(&mkey)
            .arg("-m")
            .arg(&st)
            .arg("-x")
            .arg(format!("{}.minisig", pkg.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = f.reg.install(&pkg, &InstallOptions::default()).unwrap();
        assert_eq!(report.plugin.state, State::Signed, "legacy={legacy}");
        assert_eq!(report.plugin.signer.as_deref(), Some("stock"));
    }
    // Stock minisign signs with a key cordon generated, too.
    f.trust(&key, "cordon", &[], None);
    let pkg = f.pack(&f.plugin("@t/interop", "4.0.0", ""), "4.tar.gz");
    let st = f.dir.create("st-4", cordon_registry::inspect(&pkg).unwrap().statement.text());
    let out = minisign()
        .args(["-S", "-W", "-s"])
        .arg(&key)
        .arg("-m")
        .arg(&st)
        .arg("-x")
        .arg(format!("{}.minisig", pkg.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Another key than 3.0.0's: a signer change, approved.
    let approved = InstallOptions { approval: cordon_registry::Approval::Given, ..InstallOptions::default() };
    let report = f.reg.install(&pkg, &approved).unwrap();
    assert_eq!(report.plugin.signer.as_deref(), Some("cordon"));
    assert!(report.signer_change.is_some());
}

#[test]
fn a_signature_moved_to_another_version_plugin_or_permission_set_is_invalid() {
    let f = Fixture::new("moved");
    let key = f.key("k");
    f.trust(&key, "k", &[], None);
    let signed = f.publish(&f.plugin("@t/moved", "1.0.0", ""), "signed.tar.gz", &key);
    let sig = std::fs::read(format!("{}.minisig", signed.display())).unwrap();
    let cases = [
        ("version", f.plugin("@t/moved", "1.0.1", ""), "version 1.0.1 (signed: 1.0.0)"),
        ("plugin", f.plugin("@t/other", "1.0.0", ""), "id @t/other (signed: @t/moved)"),
        (
            "permissions",
            {
                let d = f.dir.create_dir("src/perm");
                std::fs::write(d.join("cordon.toml"), "id = \"@t/moved\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"./run.sh\"]\n[permissions]\nnet.allow = [\"*\"]\n").unwrap();
                d
            },
            "permissions sha256:",
        ),
    ];
    for (name, dir, mismatch) in cases {
        let pkg = f.pack(&dir, &format!("{name}.tar.gz"));
        std::fs::write(format!("{}.minisig", pkg.display()), &sig).unwrap();
        let before = f.snapshot();
        let e = verify_err(f.reg.install(&pkg, &InstallOptions::default()));
        assert_eq!(e.state(), State::Invalid, "{name}");
        assert!(matches!(e, VerifyError::StatementMismatch { .. }), "{name}: {e}");
        assert!(e.to_string().contains(mismatch), "{name}: {e}");
        assert_eq!(f.snapshot(), before, "{name}");
    }
    // Files changed under the same id, version and permissions: the tree.
    let dir = f.plugin("@t/moved", "1.0.0", "");
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho evil\n").unwrap();
    let pkg = f.pack(&dir, "files.tar.gz");
    std::fs::write(format!("{}.minisig", pkg.display()), &sig).unwrap();
    let e = verify_err(f.reg.install(&pkg, &InstallOptions::default()));
    assert!(e.to_string().contains("tree sha256:"), "{e}");
    // A signature of the right key whose trusted comment was swapped: bad signature.
    let text = String::from_utf8(sig.clone()).unwrap();
    let forged: String = text
        .lines()
        .map(|l| if l.starts_with("trusted comment:") { "trusted comment: anything".to_owned() } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n");
    let pkg = f.pack(&f.plugin("@t/moved", "1.0.0", ""), "forged.tar.gz");
    std::fs::write(format!("{}.minisig", pkg.display()), forged).unwrap();
    let e = verify_err(f.reg.install(&pkg, &InstallOptions::default()));
    assert!(matches!(e, VerifyError::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains("trusted comment"), "{e}");
    // Control: the original pairing installs.
    assert_eq!(f.reg.install(&signed, &InstallOptions::default()).unwrap().plugin.state, State::Signed);
}

#[test]
fn unknown_expired_and_out_of_scope_keys_are_invalid() {
    let f = Fixture::new("keys");
    let key = f.key("k");
    let pkg = f.publish(&f.plugin("@acme/tool", "1.0.0", ""), "p.tar.gz", &key);
    let e = verify_err(f.reg.install(&pkg, &InstallOptions::default()));
    assert!(matches!(e, VerifyError::UnknownKey { .. }), "{e}");
    assert!(e.hint().contains("cordon trust add"));
    f.trust(&key, "old", &[], Some("2001-01-01"));
    let e = verify_err(f.reg.install(&pkg, &InstallOptions::default()));
    assert!(e.to_string().contains("expired on 2001-01-01"), "{e}");
    f.reg.trust_remove("old").unwrap();
    f.trust(&key, "other-scope", &["@other/*", "@acme/thing"], None);
    let e = verify_err(f.reg.install(&pkg, &InstallOptions::default()));
    assert!(matches!(e, VerifyError::OutOfScope { .. }), "{e}");
    f.reg.trust_remove("other-scope").unwrap();
    // Control: in scope and unexpired.
    f.trust(&key, "acme", &["@acme/*"], Some("2999-01-01"));
    f.reg.install(&pkg, &InstallOptions::default()).unwrap();
    assert_eq!(f.reg.load("@acme/tool").unwrap().state, State::Signed);
    // Trust changes reach installed plugins at their next load.
    f.reg.trust_remove("acme").unwrap();
    f.trust(&key, "acme", &["@acme/*"], Some("2001-01-01"));
    let e = f.reg.load("@acme/tool").unwrap_err();
    assert_eq!(e.state(), Some(State::Invalid), "{e}");
    f.reg.trust_remove("acme").unwrap();
    let e = f.reg.load("@acme/tool").unwrap_err();
    assert!(matches!(e, RegistryError::Verify(VerifyError::UnknownKey { .. })), "{e}");
    let list = f.reg.list(cordon_registry::Cache::On).unwrap();
    assert_eq!(list[0].state, State::Invalid);
}

#[test]
fn unsigned_packages_are_refused_unless_allowed_and_the_allowance_is_recorded() {
    let f = Fixture::new("unsigned");
    let pkg = f.pack(&f.plugin("@t/unsigned", "1.0.0", ""), "p.tar.gz");
    let before = f.snapshot();
    let e = verify_err(f.reg.install(&pkg, &InstallOptions::default()));
    assert!(matches!(e, VerifyError::Unsigned { .. }), "{e}");
    assert!(e.hint().contains("--allow-unsigned"));
    assert_eq!(f.snapshot(), before);
    let r = f.reg.install(&pkg, &unsigned_ok()).unwrap();
    assert_eq!(r.plugin.state, State::Unsigned);
    assert!(r.plugin.allow_unsigned);
    let loaded = f.reg.load("@t/unsigned").unwrap();
    assert_eq!((loaded.state, loaded.signer_key_id), (State::Unsigned, None));
    let lock = std::fs::read_to_string(f.reg.home().join("registry.lock")).unwrap();
    assert!(lock.contains("\"allow_unsigned\": true"), "{lock}");
    assert!(Path::new(&loaded.dir).join("run.sh").exists());
}

#[test]
fn malformed_and_encrypted_key_files_are_refused_with_a_hint() {
    let f = Fixture::new("badkeys");
    let bad = f.dir.create("bad.pub", "untrusted comment: x\nnot base64!\n");
    let e = f.reg.trust_add(&bad, None, &[], None).unwrap_err();
    assert!(e.to_string().contains("is not a minisign public key"), "{e}");
    assert!(e.hint().unwrap().contains("minisign -G"));
    let mkey = f.dir.join("enc.key");
    let out = minisign()
        .arg("-G")
        .arg("-p")
        .arg(f.dir.join("enc.pub"))
        .arg("-s")
        .arg(&mkey)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"pw\npw\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pkg = f.pack(&f.plugin("@t/enc", "1.0.0", ""), "p.tar.gz");
    let e = cordon_registry::sign(&pkg, &mkey).unwrap_err();
    assert!(e.to_string().contains("is encrypted with a password"), "{e}");
    assert!(e.hint().unwrap().contains("minisign -Sm s"), "{:?}", e.hint());
}
