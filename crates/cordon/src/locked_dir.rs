//! A run's own host folder, held by an exclusive `flock` for as long as the
//! run lives, and the sweep that removes folders whose run is gone (a
//! cordon that was killed cannot clean up after itself).
//!
//! A folder is created under a hidden temporary name (`.NAME.tmp`), locked,
//! and only then renamed into place, so a sweep never sees a live folder
//! unlocked: without that, two runs in one process (a gateway's workers) or
//! two cordons sharing a folder would remove each other's folders between
//! `mkdir` and `flock`. The lock belongs to the open directory, which the
//! rename does not change.
//!
//! A sweep lists the parent (with everything else in it) and opens
//! and tries to lock every folder of the kind, the live ones of other runs
//! included; on every run that was a good part of what a trivial run cost
//! beyond its command (issue 12), and of a gateway's per-execution work. So
//! a run sweeps only:
//!
//! - on evidence of a crash ([`Sweep::Now`]): opening the audit trail
//!   recovered a lost run, i.e. a cordon died during a run;
//! - otherwise at most once per [`SWEEP_INTERVAL`] per parent and kind, as
//!   the modification time of a stamp in cordon's state folder says (one
//!   `statx` per run). Without a state folder, or when the stamp cannot be
//!   renewed, it sweeps every time, as it always did.
//!
//! The stamp only times the look; the lock alone decides what is removed,
//! so a live run's folder never is. The stamp sits in cordon's state folder,
//! which every sandbox is kept out of ([`cordon_core::state`]); a dev-mode
//! command (no isolation) or another local process touching it can postpone
//! the removal of leftovers, never cause the removal of a live folder.

use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cordon_core::sys;

/// How often, at most, runs look for leftovers without evidence of a crash.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Whether creating a run's folder looks for leftovers of its kind now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sweep {
    /// When [`SWEEP_INTERVAL`] has passed since the last look.
    #[default]
    WhenDue,
    /// Now: a cordon died during a run (its audit record was lost).
    Now,
}

/// A folder this run holds; removed with everything in it on drop.
#[derive(Debug)]
pub(crate) struct LockedDir {
    path: PathBuf,
    _lock: std::fs::File,
}

/// A temporary folder older than this, and unlocked, was left by a cordon
/// killed between its `mkdir` and its rename.
const ABANDONED_TMP: Duration = Duration::from_secs(60);

impl LockedDir {
    /// Sweeps `parent` of unlocked folders of the kind (`prefix`) when
    /// `when` says so (see the module docs), then creates,
    /// locks and publishes `parent/NAME` (mode 0700). `name` must start
    /// with `prefix` for a later sweep to find it.
    pub(crate) fn create(parent: &Path, prefix: &str, name: &str, when: Sweep) -> io::Result<LockedDir> {
        if when == Sweep::Now || due(parent, prefix) {
            sweep(parent, prefix);
        }
        let tmp = parent.join(format!(".{name}.tmp"));
        let path = parent.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&tmp)?;
        let locked = std::fs::File::open(&tmp).and_then(|lock| {
            sys::try_lock_exclusive(&lock)?;
            std::fs::rename(&tmp, &path)?;
            Ok(lock)
        });
        match locked {
            Ok(lock) => Ok(LockedDir { path, _lock: lock }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockedDir {
    fn drop(&mut self) {
        // Most runs leave their folder empty: one `rmdir` then, instead of
        // the open, stat and listing `remove_dir_all` starts with.
        if std::fs::remove_dir(&self.path).is_err() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the folders of `parent` of the kind (any `PREFIX<rest>`: the
/// prefix is cordon's alone, and folders are named by ids of any shape, a
/// caller's request id or the pool's `pool-<ULID>`) that no run holds, and
/// abandoned temporary ones. The lock alone decides.
fn sweep(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let live = name.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty());
        let tmp = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")).is_some_and(|n| n.starts_with(prefix));
        if !(live || tmp) || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if tmp && !e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a > ABANDONED_TMP)) {
            continue;
        }
        if let Ok(f) = std::fs::File::open(e.path()) {
            if sys::try_lock_exclusive(&f).is_ok() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Whether the last look for `prefix` folders in `parent` is older than
/// [`SWEEP_INTERVAL`]; if so, the stamp is renewed (the caller looks now).
fn due(parent: &Path, prefix: &str) -> bool {
    let Some(stamp) = stamp_path(parent, prefix) else { return true };
    let fresh = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < SWEEP_INTERVAL);
    if !fresh {
        let _ = renew(&stamp);
    }
    !fresh
}

fn renew(stamp: &Path) -> io::Result<()> {
    if let Some(dir) = stamp.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(stamp)?;
    f.set_modified(SystemTime::now())
}

/// `<state>/sweeps/<prefix><hash of parent>`: one stamp per kind and parent.
fn stamp_path(parent: &Path, prefix: &str) -> Option<PathBuf> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut h);
    Some(cordon_core::state::state_dir()?.join("sweeps").join(format!("{prefix}{:016x}", h.finish())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_removes_only_unheld_folders_and_never_a_live_one() {
        let parent = std::env::temp_dir().join(format!("cordon-locked-dir-test-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        let id = |n: u32| format!("t-{n:026}");
        let held = LockedDir::create(&parent, "t-", &id(1), Sweep::Now).unwrap();
        // A folder left by a killed run: same shape, nobody holds it.
        std::fs::create_dir(parent.join(id(2))).unwrap();
        // Control: a folder of another kind (prefix) is never touched.
        std::fs::create_dir(parent.join("u-other")).unwrap();
        let _second = LockedDir::create(&parent, "t-", &id(3), Sweep::Now).unwrap();
        assert!(held.path().is_dir(), "a held folder must survive a sweep");
        assert!(!parent.join(id(2)).exists(), "an unheld folder is swept");
        assert!(parent.join("u-other").is_dir());
        // Many creators at once in one folder: none loses its folder.
        std::thread::scope(|s| {
            for t in 0..8u32 {
                let parent = &parent;
                s.spawn(move || {
                    for i in 0..50u32 {
                        let d = LockedDir::create(parent, "t-", &id(1000 + t * 100 + i), Sweep::Now).expect("create");
                        assert!(d.path().is_dir(), "swept while held");
                    }
                });
            }
        });
        drop(held);
        std::fs::remove_dir_all(&parent).unwrap();
    }

    /// Review s9 F6: run folders named by a caller's id or the pool's
    /// `pool-<ULID>` were never swept, so a retry with the same id after a
    /// crash failed for good (its new folder cannot be renamed onto the
    /// old one, which holds `artifacts/`).
    #[test]
    fn a_sweep_of_any_names_removes_every_unheld_folder_of_the_kind_and_never_a_held_one() {
        let parent = std::env::temp_dir().join(format!("cordon-locked-dir-any-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        let held = LockedDir::create(&parent, "x-", "x-held-key", Sweep::Now).unwrap();
        for left in ["x-retry-me-1", "x-pool-01ARZ3NDEKTSV4RRFFQ69G5FAV"] {
            std::fs::create_dir_all(parent.join(left).join("artifacts")).unwrap();
        }
        // Control: another kind is never touched.
        std::fs::create_dir(parent.join("y-retry-me-1")).unwrap();
        // The retry of a crashed run's id: its leftover is swept first.
        let retry = LockedDir::create(&parent, "x-", "x-retry-me-1", Sweep::Now).unwrap();
        assert!(retry.path().is_dir());
        assert!(!retry.path().join("artifacts").exists(), "the leftover was swept, not reused");
        assert!(!parent.join("x-pool-01ARZ3NDEKTSV4RRFFQ69G5FAV").exists(), "an unheld pool folder is swept");
        assert!(held.path().is_dir(), "a held folder must survive a sweep");
        assert!(parent.join("y-retry-me-1").is_dir());
        drop((held, retry));
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
