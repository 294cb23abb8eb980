//! A rule is not taken through a symbolic link that an earlier run may
//! have made (review s13 R13-6).
//!
//! A rule's path is resolved through its links when a run is set up ("a
//! grant spelled through a link is a rule on its target"). [`super::pin`]
//! refuses a link inside one of the same run's write grants; but a link an
//! EARLIER run made, in a folder its wider write grant covered, was
//! followed silently: run 1 (`--write W`) replaced `W/out` by a link to a
//! private host folder, and run 2 (`--write W/out` or `--read W/out`, a
//! later step of a pipeline, another tenant's plugin) read and wrote there.
//!
//! So every rule (read, write, deny, exec) is walked the way `realpath(3)`
//! does, and a link met on the way is refused, naming the rule, the link,
//! its target and the folder, unless that folder and every folder above it
//! is one no run could have written:
//!
//! - owned by root, and writable by no one but its owner (no group or
//!   other write bit: ACLs that let someone else write show there too, as
//!   the mask); a run runs as its caller, and a caller other than root can
//!   write none of these folders, nor make one of its own writable;
//! - when cordon runs as root, who may write every folder, the folder must
//!   also lie in the host's system layout: `/` itself, or `/usr`, `/etc`,
//!   `/bin`, `/sbin`, `/lib*`, `/opt` (and the kernel's `/proc`, `/sys`)
//!   and below ([`SYSTEM_LAYOUT`]). Links
//!   elsewhere (under `/var`, `/srv`, `/home`, `/tmp`, ...) are refused for
//!   root, whoever made them. A run as root with a write grant inside the
//!   system layout may plant a link there that a later run as root follows:
//!   granting writes there is trusting the run with the system.
//!
//! The system's own links (`/bin` -> `usr/bin`, `/etc/alternatives/*`)
//! stay silent. The caller accepts a refused link with `--follow-links`
//! (`cordon run`, `cordon exec`; a manifest has no such field), which
//! records each link followed in the run's enforcement ledger, or by
//! spelling the target. A link inside one of the run's own write grants
//! is left to [`super::pin`], which refuses it whatever the flag says.
//! Trees pinned already (a plugin folder) and cordon's own folders are not
//! looked at: cordon made or resolved them itself.

use std::path::{Path, PathBuf};

use crate::policy::{PathRule, Policy};

/// The folders that, with `/` itself, hold the host's system: when cordon
/// runs as root, only links inside them (root's, writable by root only)
/// are followed without `--follow-links`. `/proc` and `/sys` are the
/// kernel's: no one makes a link there (`symlink(2)` fails on both).
/// Not `/dev`, where root may make links (a run as root granted it).
pub const SYSTEM_LAYOUT: &[&str] =
    &["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/proc", "/sys"];

/// Where a rule came from, for naming it: a flag of `cordon run` (or its
/// policy file) or a plugin's manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleSource {
    /// `--read`, `--write`, `--deny`, `--exec` (or the policy file's lists).
    Flags,
    /// `fs.read`, `fs.write`, `fs.deny`, `exec` of a plugin's `cordon.toml`.
    Manifest,
}

/// Why a folder is one a run may have written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writable {
    /// Owned by this user id, not root.
    Owner(u32),
    /// Its group or everyone may write it (the mode).
    Shared(u32),
    /// cordon runs as root and the folder is outside [`SYSTEM_LAYOUT`].
    OutsideSystem,
    /// It could not be looked at.
    Unknown(String),
}

impl std::fmt::Display for Writable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writable::Owner(uid) => write!(f, "owned by uid {uid}, not root"),
            Writable::Shared(mode) => write!(f, "writable by its group or by everyone (mode {mode:o})"),
            Writable::OutsideSystem => write!(
                f,
                "outside the system's own folders (/, {}), and cordon runs as root, who may write every folder",
                SYSTEM_LAYOUT.join(", ")
            ),
            Writable::Unknown(e) => write!(f, "which cordon could not look at ({e})"),
        }
    }
}

/// A rule that passes through a symbolic link in a folder a run may write.
#[derive(Debug)]
pub struct LinkInWritableFolder {
    /// Which list the rule is in: `fs.read`, `fs.write`, `fs.deny`, `exec`.
    pub field: &'static str,
    /// Where the rule came from.
    pub source: RuleSource,
    /// The rule's path as declared.
    pub path: PathBuf,
    /// The link met on the way.
    pub link: PathBuf,
    /// What the link points at, as it is written.
    pub target: PathBuf,
    /// Where the rule's path leads, every link followed.
    pub resolved: PathBuf,
    /// The folder (the link's or one above it) a run may have written.
    pub folder: PathBuf,
    /// Why.
    pub why: Writable,
}

impl LinkInWritableFolder {
    /// The rule as the caller wrote it: `--read /x` or `fs.read entry /x`.
    pub fn rule(&self) -> String {
        rule_name(self.field, self.source, &self.path)
    }

    /// What to do.
    pub fn hint(&self) -> String {
        let flag = self.field.trim_start_matches("fs.");
        match self.source {
            RuleSource::Flags => format!(
                "if the link is yours, spell its target (--{flag} {}) or add --follow-links; otherwise remove the link",
                self.resolved.display()
            ),
            RuleSource::Manifest => format!(
                "a plugin's paths are not taken through such links: grant the target by its own path in cordon.toml \
                 ({} = [\"{}\"]), remove the link, or, if the link is yours, run with `cordon exec --follow-links`",
                self.field,
                self.resolved.display()
            ),
        }
    }
}

impl std::fmt::Display for LinkInWritableFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let folder = if self.link.parent() == Some(self.folder.as_path()) {
            format!("in {}, a folder {}", self.folder.display(), self.why)
        } else {
            format!("below {}, a folder {}", self.folder.display(), self.why)
        };
        write!(
            f,
            "{} passes through the symbolic link {} (to {}), which lies {folder}: a run that could write there may have \
             made it, so cordon does not follow it",
            self.rule(),
            self.link.display(),
            self.target.display()
        )
    }
}

impl std::error::Error for LinkInWritableFolder {}

/// A link followed because the caller said `--follow-links`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowedLink {
    /// The rule: `fs.read /x`.
    pub rule: String,
    /// The link.
    pub link: PathBuf,
    /// Its target, as written.
    pub target: PathBuf,
}

fn rule_name(field: &'static str, source: RuleSource, path: &Path) -> String {
    match source {
        RuleSource::Flags => format!("--{} {}", field.trim_start_matches("fs."), path.display()),
        RuleSource::Manifest => format!("{field} entry {}", path.display()),
    }
}

/// Checks every rule of `policy` outside `exempt` (trees pinned already
/// are exempt too) as the module docs say. With `follow`, a link that
/// would be refused is followed and listed instead.
pub fn check_policy(
    policy: &Policy,
    exempt: &[PathBuf],
    source: RuleSource,
    follow: bool,
) -> Result<Vec<FollowedLink>, Box<LinkInWritableFolder>> {
    let skip = |p: &Path| policy.fs.pinned.iter().chain(exempt).any(|t| p.starts_with(t));
    let mut checker = Checker::new(&policy.fs.write, follow);
    let lists: [(&'static str, &Vec<PathRule>); 3] =
        [("fs.write", &policy.fs.write), ("fs.read", &policy.fs.read), ("fs.deny", &policy.fs.deny)];
    for (field, rules) in lists {
        for rule in rules.iter().filter(|r| !skip(&r.path)) {
            checker.check(field, source, &rule.path)?;
        }
    }
    // An exec entry that is a bare name is found on PATH later.
    for path in policy.exec.iter().flatten().filter(|p| p.is_absolute() && !skip(p)) {
        checker.check("exec", source, path)?;
    }
    Ok(checker.followed)
}

/// Checks one path, as [`check_policy`] does for each rule (`cordon
/// exec`'s narrowing flags, resolved before the policy is made). Returns
/// the links followed with `follow`.
pub fn check_path(
    field: &'static str,
    source: RuleSource,
    path: &Path,
    follow: bool,
) -> Result<Vec<FollowedLink>, Box<LinkInWritableFolder>> {
    let mut checker = Checker::new(&[], follow);
    checker.check(field, source, path)?;
    Ok(checker.followed)
}

/// The walk over a policy's rules; what it needs only when a link is met
/// (most rules have none) is worked out then, once.
struct Checker<'a> {
    /// The run's write grants: a link in them is [`super::pin`]'s.
    write_rules: &'a [PathRule],
    /// The same, resolved.
    writes: Option<Vec<PathBuf>>,
    follow: bool,
    /// Whether cordon runs as root.
    root: Option<bool>,
    /// Folders looked at already, and what was found.
    seen: Vec<(PathBuf, Option<Writable>)>,
    followed: Vec<FollowedLink>,
}

impl<'a> Checker<'a> {
    fn new(write_rules: &'a [PathRule], follow: bool) -> Self {
        Checker { write_rules, writes: None, follow, root: None, seen: vec![], followed: vec![] }
    }

    fn in_write_grant(&mut self, folder: &Path) -> bool {
        let rules = self.write_rules;
        let writes = self.writes.get_or_insert_with(|| rules.iter().map(|r| super::resolved(&r.path)).collect());
        writes.iter().any(|w| folder.starts_with(w))
    }

    fn check(&mut self, field: &'static str, source: RuleSource, path: &Path) -> Result<(), Box<LinkInWritableFolder>> {
        let mut refused: Option<(PathBuf, PathBuf, PathBuf, Writable)> = None;
        let _ = super::pin::walk(path, |folder, link, target| {
            if self.in_write_grant(folder) {
                return Ok(());
            }
            if let Some((at, why)) = self.untrusted(folder) {
                if self.follow {
                    self.followed.push(FollowedLink {
                        rule: format!("{field} {}", path.display()),
                        link: link.to_owned(),
                        target: target.to_owned(),
                    });
                } else {
                    refused = Some((link.to_owned(), target.to_owned(), at, why));
                    return Err(());
                }
            }
            Ok(())
        });
        match refused {
            None => Ok(()),
            Some((link, target, folder, why)) => Err(Box::new(LinkInWritableFolder {
                field,
                source,
                path: path.to_owned(),
                link,
                target,
                resolved: super::resolved(path),
                folder,
                why,
            })),
        }
    }

    /// A folder from `/` down to `folder` (resolved: no link on it) that a
    /// run may have written, and why: `folder` itself when it is one (the
    /// link's own folder says most), else the first from `/`; `None` when
    /// there is none.
    fn untrusted(&mut self, folder: &Path) -> Option<(PathBuf, Writable)> {
        if let Some(why) = self.writable(folder) {
            return Some((folder.to_owned(), why));
        }
        folder.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev().find_map(|at| {
            let why = self.writable(at)?;
            Some((at.to_owned(), why))
        })
    }

    fn writable(&mut self, dir: &Path) -> Option<Writable> {
        if let Some((_, why)) = self.seen.iter().find(|(d, _)| d == dir) {
            return why.clone();
        }
        let root = *self.root.get_or_insert_with(|| crate::sys::effective_uid() == 0);
        let why = writable(dir, root);
        self.seen.push((dir.to_owned(), why.clone()));
        why
    }
}

/// Why a run may have written `dir`, or `None` (see the module docs).
fn writable(dir: &Path, root: bool) -> Option<Writable> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) => return Some(Writable::Unknown(e.to_string())),
    };
    if meta.uid() != 0 {
        return Some(Writable::Owner(meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(Writable::Shared(meta.mode() & 0o7777));
    }
    let in_system = dir == Path::new("/") || SYSTEM_LAYOUT.iter().any(|s| dir.starts_with(s));
    if root && !in_system {
        return Some(Writable::OutsideSystem);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_links_are_followed_and_links_in_open_folders_refused() {
        // /tmp is everyone's (1777): a link there is refused, for root too.
        let dir = std::env::temp_dir().join(format!("cordon-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real/sub")).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("abs")).unwrap();
        std::os::unix::fs::symlink("real/sub", dir.join("rel")).unwrap();
        std::os::unix::fs::symlink("abs", dir.join("chain")).unwrap();
        for p in [dir.join("abs"), dir.join("rel/x"), dir.join("chain/sub"), dir.join("abs/sub")] {
            let e = check_path("fs.read", RuleSource::Flags, &p, false).unwrap_err();
            assert!(e.link.starts_with(&dir), "{e}");
            assert!(e.to_string().contains("--read "), "{e}");
            assert!(e.hint().contains("--follow-links"), "{}", e.hint());
            let followed = check_path("fs.read", RuleSource::Flags, &p, true).unwrap();
            assert!(!followed.is_empty(), "{p:?}");
        }
        let e = check_path("fs.write", RuleSource::Manifest, &dir.join("rel"), false).unwrap_err();
        assert_eq!(e.resolved, dir.join("real/sub"));
        assert!(e.to_string().starts_with("fs.write entry "), "{e}");
        assert!(e.hint().contains("fs.write = [\""), "{}", e.hint());
        // No link, nothing to say.
        assert!(check_path("fs.read", RuleSource::Flags, &dir.join("real/sub/missing"), false).unwrap().is_empty());
        // A link inside the run's own write grant is pin's to refuse.
        let mut policy = Policy::default();
        policy.fs.write.push(PathRule { path: dir.clone() });
        policy.fs.read.push(PathRule { path: dir.join("rel") });
        assert_eq!(check_policy(&policy, &[], RuleSource::Flags, false).unwrap(), vec![]);
        // Exempt trees are not looked at.
        let mut policy = Policy::default();
        policy.fs.read.push(PathRule { path: dir.join("rel") });
        assert!(check_policy(&policy, &[], RuleSource::Flags, false).is_err());
        assert!(check_policy(&policy, std::slice::from_ref(&dir), RuleSource::Flags, false).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_system_layout_is_trusted() {
        assert_eq!(writable(Path::new("/"), true), None);
        assert_eq!(writable(Path::new("/usr"), true), None);
        assert_eq!(writable(Path::new("/var"), true), Some(Writable::OutsideSystem));
        assert!(Writable::OutsideSystem.to_string().contains("(/, /usr, /etc, /bin, /sbin, /lib, "));
        assert!(Writable::OutsideSystem.to_string().contains(", /proc, /sys)"));
        assert_eq!(writable(Path::new("/var"), false), None);
        assert!(matches!(writable(Path::new("/tmp"), false), Some(Writable::Shared(_))));
    }
}
