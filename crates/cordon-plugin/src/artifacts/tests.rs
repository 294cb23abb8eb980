use super::*;
use crate::testdir::TempDir;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::{symlink, PermissionsExt};

fn vars() -> TemplateVars {
    TemplateVars {
        plugin: "@acme/weather".into(),
        version: "1.2.3".into(),
        handler: "forecast".into(),
        request_id: "01JREQ".into(),
        tenant: None,
    }
}

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

#[test]
fn nested_files_are_moved_with_size_and_hash() {
    let src = TempDir::new("art-src");
    let store = TempDir::new("art-store");
    write(src.path(), "report.txt", b"hello");
    write(src.path(), "a/b/c/deep.json", b"{}");
    write(src.path(), "a/empty", b"");
    let c = collect(src.path(), store.path(), &Template::default(), &vars(), &CollectLimits::default()).unwrap();
    let dir = store.path().join("@acme/weather/1.2.3/forecast/01JREQ");
    assert_eq!(c.dir, dir);
    let listed: Vec<(&str, u64)> = c.artifacts.iter().map(|a| (a.path.as_str(), a.size)).collect();
    assert_eq!(listed, [("a/b/c/deep.json", 2), ("a/empty", 0), ("report.txt", 5)]);
    assert_eq!(c.artifacts[2].sha256, sha(b"hello"));
    assert_eq!(c.artifacts[1].sha256, sha(b""));
    assert_eq!(fs::read(dir.join("a/b/c/deep.json")).unwrap(), b"{}");
    assert_eq!(c.artifacts[0].stored_at, dir.join("a/b/c/deep.json"));
    assert!(!src.path().join("report.txt").exists(), "moved, not copied");
    assert!(c.skipped.is_empty());
}

#[test]
fn symlinks_are_skipped_never_followed() {
    let src = TempDir::new("art-links");
    let store = TempDir::new("art-links-store");
    let outside = TempDir::new("art-outside");
    write(outside.path(), "secret", b"host secret");
    write(outside.path(), "dir/inner", b"also secret");
    write(src.path(), "ok.txt", b"ok");
    symlink(outside.path().join("secret"), src.path().join("to-file")).unwrap();
    symlink(outside.path().join("dir"), src.path().join("to-dir")).unwrap();
    symlink("/nonexistent", src.path().join("dangling")).unwrap();
    fs::create_dir(src.path().join("sub")).unwrap();
    symlink("../ok.txt", src.path().join("sub/rel")).unwrap();

    let c = collect(src.path(), store.path(), &Template::default(), &vars(), &CollectLimits::default()).unwrap();
    assert_eq!(c.artifacts.iter().map(|a| a.path.as_str()).collect::<Vec<_>>(), ["ok.txt"]);
    let skipped: Vec<(&str, SkipReason)> = c.skipped.iter().map(|s| (s.path.as_str(), s.reason)).collect();
    assert_eq!(
        skipped,
        [
            ("dangling", SkipReason::Symlink),
            ("sub/rel", SkipReason::Symlink),
            ("to-dir", SkipReason::Symlink),
            ("to-file", SkipReason::Symlink)
        ]
    );
    // Nothing from outside reached the store, and the outside is intact.
    assert!(!c.dir.join("to-file").exists() && !c.dir.join("to-dir").exists());
    assert_eq!(fs::read(outside.path().join("secret")).unwrap(), b"host secret");
    assert_eq!(fs::read(outside.path().join("dir/inner")).unwrap(), b"also secret");
}

#[test]
fn a_symlinked_artifact_folder_is_refused() {
    let real = TempDir::new("art-real");
    let holder = TempDir::new("art-holder");
    let store = TempDir::new("art-store3");
    write(real.path(), "f", b"x");
    let link = holder.path().join("artifacts");
    symlink(real.path(), &link).unwrap();
    let e = collect(&link, store.path(), &Template::default(), &vars(), &CollectLimits::default()).unwrap_err();
    assert!(matches!(e, ArtifactError::SourceIsSymlink { .. }), "{e:?}");
    assert!(real.path().join("f").exists());
}

#[test]
fn per_file_and_total_caps() {
    let src = TempDir::new("art-caps");
    let store = TempDir::new("art-caps-store");
    write(src.path(), "a", &[1; 10]);
    write(src.path(), "b-big", &[2; 100]);
    write(src.path(), "c", &[3; 10]);
    write(src.path(), "d", &[4; 10]);
    write(src.path(), "e", &[5; 1]);
    let limits = CollectLimits { max_file_bytes: 50, max_total_bytes: 25, max_files: 100 };
    let c = collect(src.path(), store.path(), &Template::default(), &vars(), &limits).unwrap();
    assert_eq!(c.artifacts.iter().map(|a| a.path.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    let skipped: Vec<(&str, SkipReason)> = c.skipped.iter().map(|s| (s.path.as_str(), s.reason)).collect();
    // `d` would pass the total; collection stops there, so the small `e`
    // after it is not stored either.
    assert_eq!(
        skipped,
        [
            ("b-big", SkipReason::FileTooLarge { size: 100 }),
            ("d", SkipReason::TotalLimit),
            ("e", SkipReason::TotalLimit)
        ]
    );
    assert!(src.path().join("b-big").exists() && src.path().join("d").exists(), "skipped files stay in place");
    assert_eq!(
        serde_json::to_value(&c.skipped[0]).unwrap(),
        serde_json::json!({"path": "b-big", "reason": "file_too_large", "size": 100})
    );
}

#[test]
fn file_count_cap() {
    let src = TempDir::new("art-count");
    let store = TempDir::new("art-count-store");
    for n in 0..5 {
        write(src.path(), &format!("f{n}"), b"x");
    }
    let limits = CollectLimits { max_files: 3, ..CollectLimits::default() };
    let c = collect(src.path(), store.path(), &Template::default(), &vars(), &limits).unwrap();
    assert_eq!(c.artifacts.len(), 3);
    assert_eq!(c.skipped.len(), 2);
}

#[test]
fn fifos_are_not_regular_files() {
    let src = TempDir::new("art-fifo");
    let store = TempDir::new("art-fifo-store");
    let status = std::process::Command::new("mkfifo").arg(src.path().join("pipe")).status().unwrap();
    assert!(status.success(), "mkfifo");
    let c = collect(src.path(), store.path(), &Template::default(), &vars(), &CollectLimits::default()).unwrap();
    assert_eq!(c.skipped, [Skipped { path: "pipe".into(), reason: SkipReason::NotRegularFile }]);
}

#[test]
fn stored_files_lose_set_id_and_exec_bits() {
    let src = TempDir::new("art-mode");
    let store = TempDir::new("art-mode-store");
    write(src.path(), "tool", b"#!/bin/sh\n");
    fs::set_permissions(src.path().join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    let c = collect(src.path(), store.path(), &Template::default(), &vars(), &CollectLimits::default()).unwrap();
    let mode = fs::metadata(&c.artifacts[0].stored_at).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
}

#[test]
fn an_existing_destination_is_not_overwritten() {
    let src = TempDir::new("art-exists");
    let store = TempDir::new("art-exists-store");
    write(src.path(), "f", b"new");
    let dest = store.path().join("@acme/weather/1.2.3/forecast/01JREQ/f");
    write(dest.parent().unwrap(), "f", b"old");
    let e = collect(src.path(), store.path(), &Template::default(), &vars(), &CollectLimits::default()).unwrap_err();
    assert!(matches!(e, ArtifactError::Exists { .. }), "{e:?}");
    assert_eq!(fs::read(dest).unwrap(), b"old");
    assert!(e.hint().is_some());
}

#[test]
fn move_file_copies_hashes_and_removes_the_source() {
    let a = TempDir::new("art-copy-a");
    let b = TempDir::new("art-copy-b");
    write(a.path(), "f", &[7; 200_000]);
    let src = File::open(a.path()).unwrap();
    let dir = File::open(b.path()).unwrap();
    let mv = |rel: &str, name: &str| {
        move_file(src.as_fd(), Path::new(rel), &a.path().join(rel), dir.as_fd(), Path::new(name), &b.path().join(name))
    };
    let (size, digest) = mv("f", "f").unwrap();
    assert_eq!(size, 200_000);
    assert_eq!(digest, sha(&[7; 200_000]));
    assert!(!a.path().join("f").exists());
    assert_eq!(fs::metadata(b.path().join("f")).unwrap().permissions().mode() & 0o777, 0o644);
    // It refuses to read through a link, in the name or on the way.
    symlink(b.path().join("f"), a.path().join("link")).unwrap();
    assert!(mv("link", "g").is_err());
    symlink(b.path(), a.path().join("dirlink")).unwrap();
    assert!(mv("dirlink/f", "g").is_err());
    assert!(!b.path().join("g").exists());
    assert!(b.path().join("f").exists(), "nothing was removed through the link");
    // Nor to write through one: a link at the destination stays a link,
    // and its target is not created.
    write(a.path(), "h", b"h");
    symlink(b.path().join("target"), b.path().join("h")).unwrap();
    let e = mv("h", "h").unwrap_err();
    assert!(matches!(e, ArtifactError::Exists { .. }), "{e:?}");
    assert!(!b.path().join("target").exists());
    assert!(a.path().join("h").exists());
}

/// A file with another name (a hard link the run made from a folder it
/// can write) or open elsewhere is stored as a new inode: writing through
/// the other name afterwards leaves the stored artifact as it was hashed.
/// On a rename (the old code, same filesystem) the store held the
/// writer's inode.
#[test]
fn the_store_never_holds_an_inode_the_run_can_still_reach() {
    use std::os::unix::fs::MetadataExt;
    let src = TempDir::new("art-hardlink");
    let store = TempDir::new("art-hardlink-store");
    let keep = TempDir::new("art-hardlink-keep");
    write(keep.path(), "kept", b"GENUINE");
    fs::hard_link(keep.path().join("kept"), src.path().join("report.txt")).unwrap();
    let mut open = fs::OpenOptions::new().write(true).open(keep.path().join("kept")).unwrap();
    let c = collect(src.path(), store.path(), &Template::default(), &vars(), &CollectLimits::default()).unwrap();
    let stored = &c.artifacts[0].stored_at;
    assert_eq!(c.artifacts[0].sha256, sha(b"GENUINE"));
    let (s, k) = (fs::metadata(stored).unwrap(), fs::metadata(keep.path().join("kept")).unwrap());
    assert_ne!((s.dev(), s.ino()), (k.dev(), k.ino()), "the store holds the run's inode");
    assert_eq!(s.nlink(), 1);
    fs::write(keep.path().join("kept"), b"PLANTED").unwrap();
    std::io::Write::write_all(&mut open, b"PLANTED").unwrap();
    assert_eq!(fs::read(stored).unwrap(), b"GENUINE");
}

/// Every place a link can be planted on the way to a stored file: the
/// run's folder, one of the template's folders above it, a subfolder of
/// the run's folder, the file's own name, each pointing to a folder
/// outside the store. Nothing is written outside, the link is still a
/// link, the collection fails naming it, and the handler's file stays in
/// its artifact folder.
#[test]
fn links_planted_in_the_store_are_never_written_through() {
    for (planted, rel) in [
        ("@acme/weather/1.2.3/forecast/01JREQ", "evil"),
        ("@acme/weather/1.2.3", "evil"),
        ("@acme", "evil"),
        ("@acme/weather/1.2.3/forecast/01JREQ/sub", "sub/evil"),
        ("@acme/weather/1.2.3/forecast/01JREQ/evil", "evil"),
    ] {
        for xdev in [false, true] {
            let src =
                if xdev { TempDir::new_in(Path::new("/dev/shm"), "art-plant") } else { TempDir::new("art-plant") };
            let store = TempDir::new("art-plant-store");
            let outside = TempDir::new("art-plant-outside");
            write(src.path(), rel, b"* * * * * root touch /tmp/pwned\n");
            let link = store.path().join(planted);
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            let target =
                if planted.ends_with("evil") { outside.path().join("evil") } else { outside.path().to_owned() };
            symlink(&target, &link).unwrap();
            let e = collect(src.path(), store.path(), &Template::default(), &vars(), &CollectLimits::default())
                .unwrap_err();
            let case = format!("{planted} (xdev {xdev})");
            assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "{case}: written outside the store");
            assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "{case}");
            assert!(src.path().join(rel).exists(), "{case}: the file left its folder");
            match (&e, planted.ends_with("evil")) {
                (ArtifactError::Exists { .. }, true) => {}
                (ArtifactError::LinkInStore { path, .. }, false) => {
                    assert_eq!(*path, link, "{case}");
                    assert!(e.hint().is_some());
                }
                _ => panic!("{case}: {e:?}"),
            }
        }
    }
}

#[test]
fn across_filesystems_files_are_copied() {
    // /dev/shm is a tmpfs on Linux hosts; the store is on the disk.
    let shm = Path::new("/dev/shm");
    let store = TempDir::new("art-xdev-store");
    let src = TempDir::new_in(shm, "art-xdev");
    assert!(!same_filesystem(src.path(), store.path()).unwrap(), "/dev/shm and the temp dir share a filesystem");
    write(src.path(), "x/y", b"across");
    let c = collect(src.path(), store.path(), &Template::default(), &vars(), &CollectLimits::default()).unwrap();
    assert_eq!(c.artifacts[0].sha256, sha(b"across"));
    assert_eq!(fs::read(c.dir.join("x/y")).unwrap(), b"across");
    assert!(!src.path().join("x/y").exists());
}

#[test]
fn templates_are_validated() {
    let cases = [
        ("", "it is empty"),
        ("/abs/{plugin}", "it must be relative to the store"),
        ("{plugin}/../x", "`..` parts are not allowed"),
        ("./{plugin}", "`.` parts are not allowed"),
        ("{plugin}//{handler}", "it has an empty part (`//` or a trailing `/`)"),
        ("{plugin}/", "it has an empty part (`//` or a trailing `/`)"),
        ("{plugin}/{date}", "unknown placeholder `{date}`"),
        ("{plugin", "unclosed `{`"),
        ("plugin}", "unmatched `}`"),
    ];
    for (raw, reason) in cases {
        match raw.parse::<Template>() {
            Err(ArtifactError::Template { reason: r, .. }) => assert_eq!(r, reason, "{raw:?}"),
            other => panic!("{raw:?}: {other:?}"),
        }
    }
    let t: Template = "runs/{tenant}-{handler}/{request_id}".parse().unwrap();
    let v = TemplateVars { tenant: Some("t1".into()), ..vars() };
    assert_eq!(t.expand(&v).unwrap(), Path::new("runs/t1-forecast/01JREQ"));
    assert_eq!(t.as_str(), "runs/{tenant}-{handler}/{request_id}");
}

#[test]
fn expansion_never_escapes_the_store() {
    let t = Template::default();
    let cases = [
        (TemplateVars { request_id: "../../etc".into(), ..vars() }, "has `.` or `..` parts"),
        (TemplateVars { handler: String::new(), ..vars() }, "has an empty part (a placeholder without a value?)"),
        (TemplateVars { plugin: "/etc".into(), ..vars() }, "is absolute"),
        (TemplateVars { version: "1\0".into(), ..vars() }, "contains a NUL character"),
    ];
    for (v, reason) in cases {
        match t.expand(&v) {
            Err(ArtifactError::Expand { reason: r, .. }) => assert_eq!(r, reason),
            other => panic!("{v:?}: {other:?}"),
        }
    }
    let tenant: Template = "{tenant}/{request_id}".parse().unwrap();
    assert!(tenant.expand(&vars()).is_err(), "no tenant, no folder");
}

/// The store's root is walked by descriptors: missing folders are made on
/// the way, `..` goes back to the folder the walk came from, and a link in
/// a folder this user can write is refused wherever it is on the path,
/// a missing store's parent included (`W/l/../store` with `l` a link to
/// another folder would be `<target's parent>/store` to the kernel);
/// nothing is made through it.
#[test]
fn the_store_root_is_walked_once_by_descriptors() {
    let w = TempDir::new("art-root-walk");
    let other = TempDir::new("art-root-walk-other");
    fs::create_dir(other.path().join("sub")).unwrap();
    let made = open_store_root(&w.path().join("a/b/../store"), Missing::Make).unwrap().unwrap();
    assert!(w.path().join("a/store").is_dir() && !w.path().join("a/b/store").exists());
    assert_eq!(sys::metadata(made.as_fd()).unwrap().ino(), fs::metadata(w.path().join("a/store")).unwrap().ino());
    symlink(other.path().join("sub"), w.path().join("l")).unwrap();
    for root in [w.path().join("l/../store"), w.path().join("l/new/store"), w.path().join("l")] {
        let e = open_store_root(&root, Missing::Make).unwrap_err();
        assert!(matches!(e, ArtifactError::StoreThroughLink { .. }), "{}: {e}", root.display());
        assert!(check_store_root(&root).is_err(), "{}", root.display());
    }
    assert!(!other.path().join("store").exists() && !other.path().join("sub/new").exists());
    // A check makes nothing.
    assert!(check_store_root(&w.path().join("c/d")).is_ok());
    assert!(!w.path().join("c").exists());
}
