//! The system set's entries ([`SYSTEM_READ`]) as this host has them,
//! looked at once per run for the two steps that need to know what each
//! one is: the carve-out of cordon's state ([`crate::state::carve_out`]:
//! where each entry resolves to) and container mode's mount steps
//! ([`crate::enforce::mounts::build_mount_ops`]: file, directory or link,
//! and a link's target). Each step used to look again for itself (about
//! 150 `readlink`s and 50 `statx` per run).
//!
//! # Guarantees and limits
//!
//! [`SystemEntry::resolved`] is what `realpath(3)` gives for the entry
//! (the entry as written when it does not exist), from one `lstat` per
//! entry, a `readlink` per link, `realpath` of each distinct parent folder
//! (`/`, `/etc`, ...) and of each link. It is a snapshot: an entry changed
//! after [`SystemEntries::look`] is seen as it was. The steps that use it
//! run right after it, as they ran right after their own look before; the
//! mounts and Landlock's rules still open the paths themselves. Landlock
//! does not use it: a rule needs a descriptor of the entry anyway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::policy::fs::SYSTEM_READ;

/// What one system entry is on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Absent (or not reachable: its `lstat` failed).
    Missing,
    /// A directory.
    Dir,
    /// Anything else that is not a link (files, devices).
    File,
    /// A symbolic link, with its target as written.
    Link(PathBuf),
}

/// One entry of [`SYSTEM_READ`], looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemEntry {
    /// The entry as [`SYSTEM_READ`] lists it.
    pub path: &'static str,
    /// What it is.
    pub kind: Kind,
    /// Where it resolves to, links followed (`realpath(3)`); the path as
    /// written when it does not resolve.
    pub resolved: PathBuf,
}

/// Every entry of [`SYSTEM_READ`], in its order, looked at once.
#[derive(Clone, Debug)]
pub struct SystemEntries(Vec<SystemEntry>);

impl SystemEntries {
    /// Looks at every entry of [`SYSTEM_READ`] now (see the module docs
    /// for the system calls).
    pub fn look() -> SystemEntries {
        Self::look_at(SYSTEM_READ)
    }

    /// Looks at `paths` (absolute and normal: no `.`, `..` or repeated
    /// `/`, as [`SYSTEM_READ`]'s are).
    pub fn look_at(paths: &[&'static str]) -> SystemEntries {
        let mut parents: HashMap<&Path, Option<PathBuf>> = HashMap::new();
        let entries = paths
            .iter()
            .map(|&path| {
                let p = Path::new(path);
                let kind = match std::fs::symlink_metadata(p) {
                    Err(_) => Kind::Missing,
                    Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(p) {
                        Ok(target) => Kind::Link(target),
                        Err(_) => Kind::Missing, // replaced meanwhile
                    },
                    Ok(m) if m.is_dir() => Kind::Dir,
                    Ok(_) => Kind::File,
                };
                // Not a link: its real path is its parent's real path and
                // its own name. A link (or a parent that does not resolve):
                // resolved in full.
                let via_parent = match (&kind, p.parent(), p.file_name()) {
                    (Kind::Dir | Kind::File, Some(parent), Some(name)) => parents
                        .entry(parent)
                        .or_insert_with(|| std::fs::canonicalize(parent).ok())
                        .as_ref()
                        .map(|real| real.join(name)),
                    _ => None,
                };
                let resolved = match (&kind, via_parent) {
                    (Kind::Missing, _) => p.to_owned(),
                    (_, Some(r)) => r,
                    (_, None) => std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned()),
                };
                SystemEntry { path, kind, resolved }
            })
            .collect();
        SystemEntries(entries)
    }

    /// The entries, in [`SYSTEM_READ`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = &SystemEntry> {
        self.0.iter()
    }

    /// The entry at `path`, when it is one of the system set.
    pub fn get(&self, path: &str) -> Option<&SystemEntry> {
        self.0.iter().find(|e| e.path == path)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// Each entry resolves exactly as `realpath(3)` (std's `canonicalize`)
    /// does, the path as written when that fails: plain files and folders,
    /// entries below a linked folder, relative and absolute links, links to
    /// links, dangling links, loops and missing entries.
    #[test]
    fn entries_resolve_as_realpath_does() {
        let dir = std::env::temp_dir().join(format!("cordon-system-entries-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real/sub")).unwrap();
        std::fs::write(dir.join("real/file"), "x").unwrap();
        symlink("real", dir.join("linked")).unwrap();
        symlink("real/file", dir.join("rel-link")).unwrap();
        symlink(dir.join("real/sub"), dir.join("abs-link")).unwrap();
        symlink("rel-link", dir.join("link-to-link")).unwrap();
        symlink("nowhere", dir.join("dangling")).unwrap();
        symlink("loop-b", dir.join("loop-a")).unwrap();
        symlink("loop-a", dir.join("loop-b")).unwrap();
        symlink("../real/file", dir.join("real/sub/up")).unwrap();
        let names = [
            "real",
            "real/file",
            "real/sub",
            "linked",
            "linked/file",
            "linked/sub",
            "linked/sub/up",
            "rel-link",
            "abs-link",
            "link-to-link",
            "dangling",
            "loop-a",
            "missing",
            "real/file/below-a-file",
            "linked/missing",
        ];
        let paths: Vec<&'static str> =
            names.iter().map(|n| &*Box::leak(dir.join(n).to_str().unwrap().to_owned().into_boxed_str())).collect();
        let looked = SystemEntries::look_at(&paths);
        for (entry, path) in looked.iter().zip(&paths) {
            let realpath = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
            assert_eq!(entry.resolved, realpath, "{path}");
        }
        let kind = |name: &str| looked.get(dir.join(name).to_str().unwrap()).unwrap().kind.clone();
        assert_eq!(kind("linked/file"), Kind::File);
        assert_eq!(kind("linked/sub"), Kind::Dir);
        assert_eq!(kind("linked/sub/up"), Kind::Link("../real/file".into()));
        assert_eq!(kind("dangling"), Kind::Link("nowhere".into()));
        assert_eq!(kind("missing"), Kind::Missing);
        assert_eq!(kind("real/file/below-a-file"), Kind::Missing);
        // Entries below a link resolve through it (the control: written
        // differently from where they are).
        let linked = looked.get(dir.join("linked/file").to_str().unwrap()).unwrap();
        assert_eq!(linked.resolved, std::fs::canonicalize(&dir).unwrap().join("real/file"));
        assert!(looked.get("/not/in/the/list").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The host's own system set resolves as `realpath` says, entry by entry.
    #[test]
    fn the_hosts_system_set_resolves_as_realpath_does() {
        let looked = SystemEntries::look();
        assert_eq!(looked.iter().count(), SYSTEM_READ.len());
        for e in looked.iter() {
            let realpath = std::fs::canonicalize(e.path).unwrap_or_else(|_| PathBuf::from(e.path));
            assert_eq!(e.resolved, realpath, "{}", e.path);
        }
        assert_eq!(looked.get("/usr").map(|e| &e.kind), Some(&Kind::Dir), "control: /usr exists here");
    }
}
