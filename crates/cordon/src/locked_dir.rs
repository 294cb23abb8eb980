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

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cordon_core::sys;

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
    /// Sweeps `parent` of unlocked `PREFIX<26 characters>` folders, then
    /// creates, locks and publishes `parent/NAME` (mode 0700). `name` must
    /// start with `prefix` for a later sweep to find it.
    pub(crate) fn create(parent: &Path, prefix: &str, name: &str) -> io::Result<LockedDir> {
        sweep(parent, prefix);
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
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes the folders of `parent` named `PREFIX<26 characters>` that no
/// run holds, and abandoned temporary ones.
fn sweep(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let live = name.starts_with(prefix) && name.len() == prefix.len() + 26;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_removes_only_unheld_folders_and_never_a_live_one() {
        let parent = std::env::temp_dir().join(format!("cordon-locked-dir-test-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        let id = |n: u32| format!("t-{n:026}");
        let held = LockedDir::create(&parent, "t-", &id(1)).unwrap();
        // A folder left by a killed run: same shape, nobody holds it.
        std::fs::create_dir(parent.join(id(2))).unwrap();
        // Control: a name of another shape is never touched.
        std::fs::create_dir(parent.join("t-other")).unwrap();
        let _second = LockedDir::create(&parent, "t-", &id(3)).unwrap();
        assert!(held.path().is_dir(), "a held folder must survive a sweep");
        assert!(!parent.join(id(2)).exists(), "an unheld folder is swept");
        assert!(parent.join("t-other").is_dir());
        // Many creators at once in one folder: none loses its folder.
        std::thread::scope(|s| {
            for t in 0..8u32 {
                let parent = &parent;
                s.spawn(move || {
                    for i in 0..50u32 {
                        let d = LockedDir::create(parent, "t-", &id(1000 + t * 100 + i)).expect("create");
                        assert!(d.path().is_dir(), "swept while held");
                    }
                });
            }
        });
        drop(held);
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
