//! Issue 13, hostile packages: each crafted archive is refused with its own
//! error, nothing lands outside the staging folder, and the store is the
//! same before and after. The control: the same writer's benign archive
//! installs.

use std::path::{Path, PathBuf};

use cordon_registry::{RegistryError, UnpackError};

use super::raw::{gzip, Tar, MANIFEST};
use super::{unsigned_ok, Fixture};

fn base() -> Tar {
    Tar::default().file("cordon.toml", MANIFEST.as_bytes()).file("run.sh", b"#!/bin/sh\n")
}

/// Installs `gz` and returns the refusal; asserts the store is unchanged.
#[track_caller]
fn refuse(f: &Fixture, name: &str, gz: &[u8]) -> UnpackError {
    let pkg = f.dir.join(format!("{name}.tar.gz"));
    std::fs::write(&pkg, gz).unwrap();
    let before = f.snapshot();
    let err = match f.reg.install(&pkg, &unsigned_ok()) {
        Ok(r) => panic!("{name}: installed {r:?}"),
        Err(RegistryError::Unpack { source, .. }) => *source,
        Err(other) => panic!("{name}: refused for another reason: {other}"),
    };
    assert_eq!(f.snapshot(), before, "{name}: the store changed after the refusal");
    err
}

fn outside(f: &Fixture, name: &str) -> PathBuf {
    f.dir.join(name)
}

/// Name, package bytes, the expected error, a part of its message.
type Case = (&'static str, Vec<u8>, Box<dyn Fn(&UnpackError) -> bool>, &'static str);

#[test]
fn crafted_archives_are_refused_each_with_its_own_error() {
    let f = Fixture::new("hostile");
    // Control: the raw writer's output is a valid package, and a first
    // install makes the store non-empty, so "unchanged" means something.
    let ok = f.dir.join("ok.tar.gz");
    std::fs::write(&ok, gzip(&base().end())).unwrap();
    f.reg.install(&ok, &unsigned_ok()).expect("benign crafted archive installs");
    let evil_abs = outside(&f, "evil-absolute");
    let staging = f.reg.home().join("staging");

    let mut cases: Vec<Case> = vec![];
    let mut t = base();
    t.entry(b"../../../evil-dotdot", b'0', 0o644, b"", b"x");
    cases.push((
        "dotdot",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::Path { .. })),
        "climbs out of the package",
    ));
    let mut t = base();
    t.entry(evil_abs.to_str().unwrap().as_bytes(), b'0', 0o644, b"", b"x");
    cases.push(("absolute", gzip(&t.end()), Box::new(|e| matches!(e, UnpackError::Path { .. })), "it is absolute"));
    let mut t = base();
    t.entry(b"passwd", b'2', 0o777, b"/etc/passwd", b"");
    cases.push((
        "symlink",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::Symlink { .. })),
        "is a symbolic link (to `/etc/passwd`)",
    ));
    let mut t = base();
    t.entry(b"again.toml", b'1', 0o644, b"cordon.toml", b"");
    cases.push((
        "hardlink",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::HardLink { .. })),
        "is a hard link (to `cordon.toml`)",
    ));
    let mut t = base();
    t.entry(b"null", b'3', 0o666, b"", b"");
    cases.push((
        "chardev",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::Device { kind: "character", .. })),
        "is a character device node",
    ));
    let mut t = base();
    t.entry(b"sda", b'4', 0o660, b"", b"");
    cases.push((
        "blockdev",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::Device { kind: "block", .. })),
        "is a block device node",
    ));
    let mut t = base();
    t.entry(b"pipe", b'6', 0o644, b"", b"");
    cases.push(("fifo", gzip(&t.end()), Box::new(|e| matches!(e, UnpackError::Fifo { .. })), "is a FIFO"));
    let mut t = base();
    t.entry(b"suid", b'0', 0o4755, b"", b"x");
    cases.push((
        "setuid",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::SetId { mode: 0o4755, .. })),
        "setuid or setgid",
    ));
    let mut t = base();
    t.entry(b"sgid", b'0', 0o2755, b"", b"x");
    cases.push((
        "setgid",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::SetId { mode: 0o2755, .. })),
        "setuid or setgid",
    ));
    // The header claims 100 bytes, the archive ends after 10.
    let mut t = base();
    t.0.extend_from_slice(&super::raw::header(b"short", 100, b'0', 0o644, b""));
    t.0.extend_from_slice(b"0123456789");
    cases.push((
        "size-short",
        gzip(&t.0),
        Box::new(|e| matches!(e, UnpackError::SizeMismatch { declared: 100, found: 10, .. })),
        "the header says 100 bytes, the data ends after 10",
    ));
    // The header claims 5 bytes; 600 follow, and are read as the next header.
    let mut t = base();
    t.0.extend_from_slice(&super::raw::header(b"long", 5, b'0', 0o644, b""));
    t.data(&[b'A'; 600]);
    cases.push((
        "size-long",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::CorruptHeader { after: Some(a), .. } if a == "long")),
        "corrupt tar header after entry `long`",
    ));
    let t = base().file("twice.txt", b"1").file("twice.txt", b"2");
    cases.push((
        "duplicate",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::Duplicate { .. })),
        "`twice.txt` appears twice",
    ));
    let t = base().file("Readme", b"1").file("README", b"2");
    cases.push((
        "case",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::CaseCollision { .. })),
        "differ only in case",
    ));
    let mut t = base();
    let long = "n".repeat(300);
    t.long_name(long.as_bytes());
    t.entry(b"placeholder", b'0', 0o644, b"", b"x");
    cases.push((
        "name-too-long",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::Path { .. })),
        "a component is longer than 255 bytes",
    ));
    let t = base().file("a", b"file").file("a/b", b"under a file");
    cases.push((
        "file-as-folder",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::NotAFolder { .. })),
        "needs `a` to be a folder",
    ));
    let mut t = base();
    for i in 0..cordon_registry::package::MAX_FILES {
        t.entry(format!("f/{i}").as_bytes(), b'0', 0o644, b"", b"");
    }
    cases.push((
        "file-count",
        gzip(&t.end()),
        Box::new(|e| matches!(e, UnpackError::TooManyFiles { .. })),
        "more than 20000 entries",
    ));
    // 600 MiB declared, nothing behind it: refused before any data is read.
    let mut t = base();
    t.0.extend_from_slice(&super::raw::header(b"huge", 600 << 20, b'0', 0o644, b""));
    cases.push((
        "unpacked-size",
        gzip(&t.0),
        Box::new(|e| matches!(e, UnpackError::UnpackedTooLarge { cap, .. } if *cap == 512 << 20)),
        "unpacks to more than 536870912 bytes (at `huge`)",
    ));
    // A small honest tar, then 600 MiB of zeros after its end marker.
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&base().end()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..600 {
            e.write_all(&zeros).unwrap();
        }
        e.finish().unwrap()
    };
    cases.push(("gzip-bomb", bomb, Box::new(|e| matches!(e, UnpackError::GzipBomb { .. })), "a gzip bomb"));
    let mut trailing = gzip(&base().end());
    trailing.extend_from_slice(b"appended after the gzip stream");
    cases.push((
        "trailing",
        trailing,
        Box::new(|e| matches!(e, UnpackError::TrailingData)),
        "data after the end of its gzip stream",
    ));
    cases.push((
        "not-gzip",
        base().end(),
        Box::new(|e| matches!(e, UnpackError::NotGzip { .. })),
        "not a valid .tar.gz",
    ));
    let t = Tar::default().file("run.sh", b"#!/bin/sh\n");
    cases.push(("no-manifest", gzip(&t.end()), Box::new(|e| matches!(e, UnpackError::NoManifest)), "no cordon.toml"));

    assert!(cases.len() >= 12);
    let mut failures = vec![];
    for (name, gz, expected, message) in &cases {
        let err = refuse(&f, name, gz);
        if !expected(&err) || !err.to_string().contains(message) {
            failures.push(format!("{name}: got `{err}` ({err:?}), expected a message with `{message}`"));
        }
        assert!(err.hint().is_some(), "{name}: no hint");
    }
    for p in ["evil-dotdot", "evil-absolute"] {
        assert!(!outside(&f, p).exists() && !f.reg.home().join(p).exists(), "{p} was written");
    }
    assert!(!evil_abs.exists());
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "staging left behind");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The first plugin is still installed and runnable.
    f.reg.load("@hostile/pkg").expect("the installed plugin survives every refusal");
}

#[test]
fn packing_refuses_links_and_special_names() {
    let f = Fixture::new("pack-refuses");
    let dir = f.plugin("@t/links", "1.0.0", "");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd")).unwrap();
    let err = cordon_registry::pack(&dir, Some(&f.dir.join("x.tar.gz"))).unwrap_err();
    assert!(err.to_string().contains("is a symbolic link; a plugin holds regular files and folders only"), "{err}");
    assert!(!f.dir.join("x.tar.gz").exists());
    assert!(!Path::new(&format!("{}.tmp-{}", f.dir.join("x.tar.gz").display(), std::process::id())).exists());
}

#[test]
fn packing_is_reproducible() {
    let f = Fixture::new("pack-repro");
    let dir = f.plugin("@t/repro", "1.0.0", "");
    let a = f.pack(&dir, "a.tar.gz");
    // Touch everything: new mtimes, another umask's modes, same content.
    for e in ["cordon.toml", "data/words.txt"] {
        let p = dir.join(e);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let b = f.pack(&dir, "b.tar.gz");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // Content matters: one byte changes the package and the tree hash.
    std::fs::write(dir.join("data/words.txt"), "alpha\nbetA\n").unwrap();
    let c = f.pack(&dir, "c.tar.gz");
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    let (ta, tc) = (cordon_registry::inspect(&a).unwrap(), cordon_registry::inspect(&c).unwrap());
    assert_ne!(ta.statement.tree, tc.statement.tree);
}
