//! Issue 13, lifecycle: every load verifies (a changed byte, mode, file or
//! link after install is Modified and refused, with and without the stamp
//! cache, also for a same-size rewrite that restores the mtime); consent to
//! wider permissions; downgrade protection; disable and uninstall; and
//! concurrent installs that all land.

use std::io::Write;
use std::time::Duration;

use cordon_registry::{
    Approval, Cache, Downgrade, Enablement, InstallChange, InstallOptions, RegistryError, State, VerifyError,
};
use cordon_testkit::poll_until;

use super::Fixture;

fn signed(label: &str) -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new(label);
    let key = f.key("k");
    f.trust(&key, "k", &[], None);
    (f, key)
}

#[track_caller]
fn modified(f: &Fixture, id: &str, cache: Cache) -> VerifyError {
    match f.reg.load_with(id, cache) {
        Err(RegistryError::Verify(e)) if e.state() == State::Modified => e,
        other => panic!("expected Modified, got {other:?}"),
    }
}

#[test]
fn a_changed_byte_after_install_is_modified_and_named_with_both_hashes() {
    let (f, key) = signed("tamper");
    let pkg = f.publish(&f.plugin("@t/tamper", "1.0.0", ""), "p.tar.gz", &key);
    f.reg.install(&pkg, &InstallOptions::default()).unwrap();
    let dir = f.reg.load("@t/tamper").unwrap().dir;
    let file = dir.join("data/words.txt");
    let original = std::fs::read(&file).unwrap();
    for cache in [Cache::Off, Cache::On] {
        let mut bytes = original.clone();
        bytes[0] ^= 0x20;
        std::fs::write(&file, &bytes).unwrap();
        let e = modified(&f, "@t/tamper", cache);
        let text = e.to_string();
        assert!(text.contains("data/words.txt has sha256:"), "{text}");
        assert!(text.contains(&format!("the signed tree has sha256:{}", sha256(&original))), "{text}");
        assert!(text.contains(&format!("has sha256:{}", sha256(&bytes))), "{text}");
        // Control: restored, it loads again.
        std::fs::write(&file, &original).unwrap();
        f.reg.load_with("@t/tamper", cache).unwrap();
    }
    let status = {
        std::fs::write(&file, b"x").unwrap();
        f.reg.info("@t/tamper", Cache::On).unwrap()
    };
    assert_eq!(status.state, State::Modified);
    std::fs::write(&file, &original).unwrap();
}

#[test]
fn the_stamp_cache_never_hides_a_change() {
    let (f, key) = signed("cache");
    let pkg = f.publish(&f.plugin("@t/cache", "1.0.0", ""), "p.tar.gz", &key);
    f.reg.install(&pkg, &InstallOptions::default()).unwrap();
    let dir = f.reg.load("@t/cache").unwrap().dir;
    let cache_file = f.reg.home().join("verify-cache.json");
    // Files are cached once their ctime is RACY_WINDOW old: wait for that.
    let cached = poll_until(Duration::from_secs(10), || {
        f.reg.load("@t/cache").unwrap();
        std::fs::read_to_string(&cache_file).is_ok_and(|c| c.contains("data/words.txt"))
    });
    assert!(cached, "the cache never recorded the files");
    let file = dir.join("data/words.txt");
    let meta = std::fs::metadata(&file).unwrap();
    let mtime = meta.modified().unwrap();
    // Same size, same mtime (restored with utimensat), same inode: only
    // ctime tells, and user space cannot set it.
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.write_all(b"ALPHA").unwrap();
        f.set_modified(mtime).unwrap();
    }
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!((after.len(), after.modified().unwrap()), (meta.len(), mtime));
    let e = modified(&f, "@t/cache", Cache::On);
    assert!(e.to_string().contains("data/words.txt"), "{e}");
    std::fs::write(&file, "alpha\nbeta\n").unwrap();
    f.reg.load("@t/cache").expect("control: restored content loads");
    // A new file in place of the old one (a new inode).
    std::fs::write(dir.join("run.sh.new"), "#!/bin/sh\necho evil\n").unwrap();
    std::fs::rename(dir.join("run.sh.new"), dir.join("run.sh")).unwrap();
    let e = modified(&f, "@t/cache", Cache::On);
    assert!(e.to_string().contains("run.sh"), "{e}");
}

#[test]
fn added_removed_relinked_and_rechmodded_files_are_modified() {
    let (f, key) = signed("altered");
    let pkg = f.publish(&f.plugin("@t/altered", "1.0.0", ""), "p.tar.gz", &key);
    f.reg.install(&pkg, &InstallOptions::default()).unwrap();
    let dir = f.reg.load("@t/altered").unwrap().dir;
    use std::os::unix::fs::PermissionsExt;
    type Step = (&'static str, Box<dyn Fn(&std::path::Path)>, Box<dyn Fn(&std::path::Path)>, &'static str);
    let steps: Vec<Step> = vec![
        (
            "added",
            Box::new(|d| std::fs::write(d.join("extra.sh"), "x").unwrap()),
            Box::new(|d| std::fs::remove_file(d.join("extra.sh")).unwrap()),
            "extra.sh is not in the signed tree",
        ),
        (
            "removed",
            Box::new(|d| std::fs::rename(d.join("data/words.txt"), d.join("../words.bak")).unwrap()),
            Box::new(|d| std::fs::rename(d.join("../words.bak"), d.join("data/words.txt")).unwrap()),
            "data/words.txt is missing",
        ),
        (
            "chmod",
            Box::new(|d| {
                std::fs::set_permissions(d.join("data/words.txt"), std::fs::Permissions::from_mode(0o755)).unwrap()
            }),
            Box::new(|d| {
                std::fs::set_permissions(d.join("data/words.txt"), std::fs::Permissions::from_mode(0o644)).unwrap()
            }),
            "has mode 755; the signed tree has 644",
        ),
        (
            "symlink",
            Box::new(|d| {
                std::fs::rename(d.join("run.sh"), d.join("../run.bak")).unwrap();
                std::os::unix::fs::symlink(d.join("../run.bak"), d.join("run.sh")).unwrap();
            }),
            Box::new(|d| {
                std::fs::remove_file(d.join("run.sh")).unwrap();
                std::fs::rename(d.join("../run.bak"), d.join("run.sh")).unwrap();
            }),
            "run.sh is a symbolic link",
        ),
    ];
    for (name, change, undo, message) in steps {
        change(&dir);
        let e = modified(&f, "@t/altered", Cache::On);
        assert!(e.to_string().contains(message), "{name}: {e}");
        undo(&dir);
        f.reg.load("@t/altered").unwrap_or_else(|e| panic!("{name}: control after undo: {e}"));
    }
}

#[test]
fn wider_permissions_wait_for_approval_and_narrower_ones_do_not() {
    let (f, key) = signed("consent");
    let v1 = f.publish(
        &f.plugin("@t/consent", "1.0.0", "[permissions]\nfs.read = [\"data\"]\n[quotas]\nmemory_mb = 64\n"),
        "1.tar.gz",
        &key,
    );
    f.reg.install(&v1, &InstallOptions::default()).unwrap();
    let v2 = f.publish(
        &f.plugin("@t/consent", "2.0.0", "[permissions]\nfs.read = [\"data\"]\nnet.allow = [\"api.example.com:443\"]\nenv.allow = [\"TOKEN\"]\n[quotas]\nmemory_mb = 256\n"),
        "2.tar.gz",
        &key,
    );
    let before = f.snapshot();
    let e = f.reg.install(&v2, &InstallOptions::default()).unwrap_err();
    let RegistryError::NeedsConsent { diff, .. } = &e else { panic!("{e}") };
    let text = e.to_string();
    for want in ["+ net.allow + api.example.com:443", "+ env.allow + TOKEN", "+ quota memory_mb 64 -> 256"] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    assert_eq!(diff.widened.len(), 3);
    assert!(e.hint().unwrap().contains("--approve"));
    assert_eq!(f.snapshot(), before, "a refused update changes nothing");
    assert_eq!(f.reg.load("@t/consent").unwrap().version, "1.0.0", "the old version still runs");
    let r = f.reg.install(&v2, &InstallOptions { approval: Approval::Given, ..Default::default() }).unwrap();
    assert_eq!(
        (r.change, r.previous.as_deref(), r.plugin.version.as_str()),
        (InstallChange::Updated, Some("1.0.0"), "2.0.0")
    );
    // Narrowing needs no consent.
    let v3 = f.publish(
        &f.plugin("@t/consent", "3.0.0", "[permissions]\nfs.read = [\"data/sub\"]\n[quotas]\nmemory_mb = 128\n"),
        "3.tar.gz",
        &key,
    );
    let r = f.reg.install(&v3, &InstallOptions::default()).unwrap();
    assert!(!r.diff.as_ref().unwrap().widens());
    assert_eq!(f.reg.load("@t/consent").unwrap().version, "3.0.0");
    // Only one version's files are kept.
    let versions = std::fs::read_dir(f.reg.home().join("plugins/@t/consent")).unwrap().count();
    assert_eq!(versions, 2, "one folder and its listing");
}

#[test]
fn downgrades_are_refused_without_the_flag_even_after_uninstall() {
    let (f, key) = signed("downgrade");
    let v1 = f.publish(&f.plugin("@t/down", "1.0.0", ""), "1.tar.gz", &key);
    let v2 = f.publish(&f.plugin("@t/down", "2.0.0", ""), "2.tar.gz", &key);
    f.reg.install(&v2, &InstallOptions::default()).unwrap();
    let e = f.reg.install(&v1, &InstallOptions::default()).unwrap_err();
    assert!(matches!(e, RegistryError::Downgrade { .. }), "{e}");
    assert!(e.to_string().contains("1.0.0 is lower than 2.0.0"), "{e}");
    f.reg.uninstall("@t/down").unwrap();
    assert!(matches!(f.reg.load("@t/down"), Err(RegistryError::NotInstalled { .. })));
    let e = f.reg.install(&v1, &InstallOptions::default()).unwrap_err();
    assert!(matches!(e, RegistryError::Downgrade { .. }), "uninstall is no way around it: {e}");
    let r = f.reg.install(&v1, &InstallOptions { downgrade: Downgrade::Allow, ..Default::default() }).unwrap();
    assert_eq!(r.plugin.version, "1.0.0");
    assert_eq!(r.plugin.highest_version, "2.0.0");
    // The same version again is a no-op.
    let again = f.reg.install(&v1, &InstallOptions { downgrade: Downgrade::Allow, ..Default::default() }).unwrap();
    assert_eq!(again.change, InstallChange::Unchanged);
}

#[test]
fn disable_takes_effect_at_the_next_load() {
    let (f, key) = signed("disable");
    let pkg = f.publish(&f.plugin("@t/off", "1.0.0", ""), "p.tar.gz", &key);
    f.reg.install(&pkg, &InstallOptions::default()).unwrap();
    f.reg.load("@t/off").unwrap();
    f.reg.set_enabled("@t/off", Enablement::Disabled).unwrap();
    let e = f.reg.load("@t/off").unwrap_err();
    assert!(matches!(e, RegistryError::Disabled { .. }), "{e}");
    assert!(e.hint().unwrap().contains("cordon plugin enable @t/off"));
    assert!(!f.reg.list(Cache::On).unwrap()[0].enabled);
    f.reg.set_enabled("@t/off", Enablement::Enabled).unwrap();
    f.reg.load("@t/off").unwrap();
    f.reg.uninstall("@t/off").unwrap();
    assert!(!f.reg.home().join("plugins/@t").exists(), "uninstall removes the files");
}

#[test]
fn concurrent_installs_are_all_recorded() {
    let (f, key) = signed("concurrent");
    let pkgs: Vec<_> =
        (0..6).map(|i| f.publish(&f.plugin(&format!("@t/c{i}"), "1.0.0", ""), &format!("{i}.tar.gz"), &key)).collect();
    std::thread::scope(|s| {
        for p in &pkgs {
            let reg = f.reg.clone();
            s.spawn(move || reg.install(p, &InstallOptions::default()).unwrap());
        }
    });
    let list = f.reg.list(Cache::Off).unwrap();
    assert_eq!(list.len(), 6, "{list:#?}");
    assert!(list.iter().all(|p| p.state == State::Signed));
}

fn sha256(bytes: &[u8]) -> String {
    cordon_registry::Digest256::of(bytes).hex()
}

#[test]
fn a_version_signed_by_another_trusted_key_waits_for_approval_even_after_uninstall() {
    // R12-3: both keys trusted with the default scope (every id). The
    // second publisher's version of the first one's id is not an update.
    let (f, acme) = signed("signer");
    let mallory = f.key("mallory");
    f.trust(&mallory, "mallory", &[], None);
    let extra = "[permissions]\nenv.allow = [\"ACME_API_TOKEN\"]\n";
    let v1 = f.publish(&f.plugin("@acme/pay", "1.0.0", extra), "1.tar.gz", &acme);
    let taken = f.publish(&f.plugin("@acme/pay", "1.0.1", extra), "taken.tar.gz", &mallory);
    f.reg.install(&v1, &InstallOptions::default()).unwrap();
    let acme_id = f.reg.load("@acme/pay").unwrap().signer_key_id.unwrap();
    let before = f.snapshot();
    let e = f.reg.install(&taken, &InstallOptions::default()).unwrap_err();
    let RegistryError::NeedsConsent { signer: Some(change), diff, .. } = &e else { panic!("{e}") };
    assert!(!diff.widens(), "the same permissions: only the signer changes");
    let mallory_id = change.to.key_id.unwrap();
    let want = format!("signer: k ({acme_id}) -> mallory ({mallory_id})");
    assert!(e.to_string().contains(&want), "missing `{want}` in:\n{e}");
    assert!(e.hint().unwrap().contains("--approve"), "{:?}", e.hint());
    assert_eq!(f.snapshot(), before, "a refused takeover changes nothing");
    assert_eq!(f.reg.load("@acme/pay").unwrap().signer_key_id, Some(acme_id), "acme's version still runs");
    // Uninstalling is no way around it, and neither is a version the
    // registry never had installed.
    f.reg.uninstall("@acme/pay").unwrap();
    let e = f.reg.install(&taken, &InstallOptions::default()).unwrap_err();
    assert!(e.to_string().contains(&want), "after uninstall: {e}");
    assert!(e.to_string().contains("than 1.0.0"), "names the last version installed: {e}");
    // The same key goes on without a word; an unsigned version is a change.
    let v2 = f.publish(&f.plugin("@acme/pay", "1.0.2", extra), "2.tar.gz", &acme);
    let r = f.reg.install(&v2, &InstallOptions::default()).unwrap();
    assert_eq!(r.signer_change, None);
    let plain = f.pack(&f.plugin("@acme/pay", "1.0.3", extra), "3.tar.gz");
    let e = f.reg.install(&plain, &super::unsigned_ok()).unwrap_err();
    assert!(e.to_string().contains(&format!("signer: k ({acme_id}) -> unsigned")), "{e}");
    // Approved: installed, reported, and the new signer is the one to keep.
    let taken2 = f.publish(&f.plugin("@acme/pay", "1.0.4", extra), "taken2.tar.gz", &mallory);
    let r = f.reg.install(&taken2, &InstallOptions { approval: Approval::Given, ..Default::default() }).unwrap();
    assert_eq!(r.signer_change.map(|c| c.to_string()), Some(want));
    assert_eq!(f.reg.load("@acme/pay").unwrap().signer_key_id, Some(mallory_id));
    let v5 = f.publish(&f.plugin("@acme/pay", "1.0.5", extra), "5.tar.gz", &acme);
    let e = f.reg.install(&v5, &InstallOptions::default()).unwrap_err();
    assert!(e.to_string().contains(&format!("signer: mallory ({mallory_id}) -> k ({acme_id})")), "{e}");
}
