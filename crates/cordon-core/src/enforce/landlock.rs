//! Landlock: the filesystem rules and the signal / abstract-socket scopes.
//!
//! Rules attach to inodes, so the ruleset is built here, in the parent, from
//! host paths, and holds in container mode too (bind mounts share inodes).
//! Paths that exist only inside the container (its `/tmp` and `/proc`) are
//! added by the child as late rules.
//!
//! Landlock only adds access; it cannot take a subtree away from a granted
//! tree. A `deny` entry inside a granted tree is therefore enforced by
//! granting, instead of the tree, each entry of each directory on the way down
//! to the denied path except the next step towards it. The directories on that
//! way cannot be listed or written directly (new entries there would not be
//! covered); everything beside the denied path keeps its access.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use landlock::{Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope, ABI};

use super::mount_table::{MountTable, Place};
use crate::plan::{FsAccess, LandlockPlan};
use crate::system_entries::{Kind, SystemEntries};

/// Building the Landlock ruleset failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LandlockError {
    /// `landlock_create_ruleset` or the crate's compatibility check failed.
    #[error("failed to create the landlock ruleset for ABI {abi}")]
    CreateRuleset {
        /// The ABI asked for.
        abi: u32,
        /// The cause.
        #[source]
        source: landlock::RulesetError,
    },
    /// A rule could not be added.
    #[error("failed to add landlock rule for {path}")]
    AddRule {
        /// The path of the rule.
        path: PathBuf,
        /// The cause (`landlock_add_rule`'s error).
        #[source]
        source: io::Error,
    },
    /// A rule inside a pinned tree (a plugin folder) no longer opens without
    /// following a symbolic link: a link was made on its path after the
    /// policy was resolved.
    #[error("refusing the grant on {path}: a symbolic link was made on its path after the check")]
    LinkAppeared {
        /// The path of the rule, as resolved when the policy was made.
        path: PathBuf,
        /// The cause (`ELOOP`).
        #[source]
        source: io::Error,
    },
    /// The mount table could not tell where a denied path lies, to find it
    /// under the other names bind mounts give it.
    #[error("failed to tell which mounts the denied paths and the grants lie on (/proc/self/mountinfo), to deny what bind mounts show under other names")]
    Mounts {
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An overlay a rule reaches names a layer by a relative path (the
    /// mounter's working folder, which mountinfo does not show), so where
    /// its files lie on the host, and whether a denied path is among them,
    /// cannot be told.
    #[error(
        "refusing the run: the overlay mounted on {} names its layer `{}` by a relative path, so cordon cannot tell whether it shows a denied path under another name; remount it with absolute layer paths (mount -o lowerdir=/abs/...), or keep it out of the grants",
        overlay.display(), layer.display()
    )]
    RelativeOverlayLayer {
        /// The overlay's mount point.
        overlay: PathBuf,
        /// The layer as mountinfo shows it.
        layer: PathBuf,
    },
    /// A directory on the way to a denied path could not be listed.
    #[error("failed to list {path} to carve out a denied path")]
    ListDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl LandlockPlan {
    /// Which rules carry the execute right.
    pub fn exec_right(&self) -> ExecRight {
        if self.exec_restricted {
            ExecRight::ListedOnly
        } else {
            ExecRight::WithGrants
        }
    }
}

fn abi_of(v: u32) -> ABI {
    match v {
        0 => ABI::Unsupported,
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        _ => ABI::V7,
    }
}

/// Whether grants keep the execute right (see `LandlockPlan::exec_restricted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecRight {
    /// `Read` and `Write` include execute.
    WithGrants,
    /// Only `Exec` rules carry execute.
    ListedOnly,
}

/// The Landlock access bits for `access`, for the given ABI.
pub fn access_bits(access: FsAccess, abi: u32, exec: ExecRight) -> landlock::BitFlags<AccessFs> {
    let abi = abi_of(abi);
    let strip = |bits: landlock::BitFlags<AccessFs>| {
        if exec == ExecRight::ListedOnly {
            bits & !AccessFs::Execute
        } else {
            bits
        }
    };
    match access {
        FsAccess::List => AccessFs::ReadDir.into(),
        FsAccess::Read => strip(AccessFs::from_read(abi)),
        FsAccess::Exec => AccessFs::Execute | AccessFs::ReadFile,
        FsAccess::Write => strip(AccessFs::from_all(abi)),
        FsAccess::Device | FsAccess::Terminal => {
            let mut a = AccessFs::ReadFile | AccessFs::WriteFile;
            if AccessFs::from_all(abi).contains(AccessFs::Truncate) {
                a |= AccessFs::Truncate;
            }
            if access == FsAccess::Terminal {
                // Its own devpts: listing it reveals only the run's ptys.
                a |= AccessFs::ReadDir;
                if AccessFs::from_all(abi).contains(AccessFs::IoctlDev) {
                    a |= AccessFs::IoctlDev;
                }
            }
            a
        }
    }
}

/// The rights the kernel accepts on a file (not a directory) for `abi`.
pub fn file_rights(abi: u32) -> landlock::BitFlags<AccessFs> {
    AccessFs::from_file(abi_of(abi))
}

/// Creates the (still empty) ruleset `plan` handles: its handled rights
/// and scopes. [`add_rules`] fills it; the two are apart so that the rules
/// (a path lookup, an `fstat` and a `landlock_add_rule` each: the costliest
/// part) can go in after the sandbox's init was cloned with the
/// descriptor, while init builds its mounts. The ruleset is the object the
/// descriptor refers to, so rules added through this descriptor count for
/// init's copy of it too (also one passed to the sandbox spawner).
///
/// Guarantee: a rule only adds access, so a ruleset used before every rule
/// is in grants less, never more. The caller sees to it that the command's
/// `landlock_restrict_self` comes after [`add_rules`] returned (the
/// command starts only on the go message, sent after it).
pub fn create_ruleset(plan: &LandlockPlan) -> Result<OwnedFd, LandlockError> {
    let abi = abi_of(plan.abi);
    let err = |source| LandlockError::CreateRuleset { abi: plan.abi, source };
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?;
    if plan.scopes {
        ruleset = ruleset.scope(Scope::Signal | Scope::AbstractUnixSocket).map_err(err)?;
    }
    let created: Option<OwnedFd> = ruleset.create().map_err(err)?.into();
    created.ok_or_else(|| err(landlock::RulesetError::from(landlock::CreateRulesetError::MissingHandledAccess)))
}

/// Adds every rule of `plan` to `ruleset` (made by [`create_ruleset`]).
///
/// A rule is made on what its path resolves to, so a system set entry that
/// is a symbolic link (`/bin`, `/lib`, `/etc/os-release` on a merged-`/usr`
/// host) is taken as its target, as `system` resolved it: a `deny` inside
/// the target carves that rule too (a rule on the link would grant the
/// whole target tree, the denied path included). A rule inside another
/// rule with the same access adds nothing and is not made.
pub fn add_rules(
    ruleset: BorrowedFd<'_>,
    plan: &LandlockPlan,
    system: Option<&SystemEntries>,
) -> Result<(), LandlockError> {
    let abi = abi_of(plan.abi);
    // Rules go in with one syscall each: the crate's `add_rule` would fstat
    // every descriptor again to sort files from directories, which the
    // fstat below already did.
    let add = |fd: BorrowedFd<'_>, bits: landlock::BitFlags<AccessFs>, path: &dyn Fn() -> PathBuf| {
        crate::sys::landlock_add_path_rule(ruleset, fd, bits.bits())
            .map_err(|source| LandlockError::AddRule { path: path(), source })
    };
    let rules = match system {
        Some(system) => resolve_system_entries(&plan.rules, system, &plan.pinned),
        None => plan.rules.iter().map(|(p, a)| (p.clone(), *a, Spelling::AsDeclared)).collect(),
    };
    let holes: Vec<(PathBuf, PathBuf)> =
        plan.holes.iter().map(|(outer, hole)| (super::resolved(outer), super::resolved(hole))).collect();
    let (rules, deny) = resolve_for_carving(rules, &plan.deny, &plan.pinned, &holes)?;
    for (path, access) in without_nested(expand_denies_with_holes(&rules, &deny, &holes)?) {
        // O_PATH, as the kernel wants for a rule; its fstat says file or
        // directory without a second lookup by path. Inside a pinned tree
        // no link is followed: its rules were resolved when the policy was
        // made, so a link there now was made since, to redirect the grant.
        let opened = if plan.pinned.iter().any(|p| path.starts_with(p)) {
            match crate::sys::open_path_without_links(&path) {
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(LandlockError::LinkAppeared { path, source: e });
                }
                other => other.map(std::fs::File::from),
            }
        } else {
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(&path)
        };
        let Ok(fd) = opened else {
            continue; // vanished or unreadable: grant nothing
        };
        let is_dir = fd.metadata().is_ok_and(|m| m.is_dir());
        let mut bits = access_bits(access, plan.abi, plan.exec_right());
        if !is_dir {
            bits &= AccessFs::from_file(abi);
        }
        add(fd.as_fd(), bits, &|| path.clone())?;
    }
    Ok(())
}

/// The rules and the denies, as [`expand_denies`] takes them.
type Carving = (Vec<(PathBuf, FsAccess)>, Vec<PathBuf>);

/// `rules` and `deny` in one spelling, resolved through their symbolic
/// links as far as they exist, so that [`expand_denies`] carves by what
/// the rules are made on: a rule is opened following links, so a grant
/// spelled through a link (`/srv/app/current` → `v1`) is a rule on its
/// target, and a deny must be found inside it whichever way either is
/// spelled (review s10 R3: a policy file's or manifest's paths are taken
/// as declared, and a deny spelled through another link than its grant was
/// never carved out, so process mode did not enforce it at all). Rules
/// inside a pinned tree are left as they are: they were resolved when the
/// policy was made, and a link there now is refused when the rule is
/// opened. Rules [`Spelling::Resolved`] already (the system set's entries,
/// as the run looked at them) are not resolved again. The denies come with
/// their bind-mount aliases ([`deny_aliases`]).
fn resolve_for_carving(
    rules: Vec<(PathBuf, FsAccess, Spelling)>,
    deny: &[PathBuf],
    pinned: &[PathBuf],
    holes: &[(PathBuf, PathBuf)],
) -> Result<Carving, LandlockError> {
    let rules: Vec<(PathBuf, FsAccess)> = rules
        .into_iter()
        .map(|(path, access, spelling)| {
            match spelling == Spelling::Resolved || pinned.iter().any(|p| path.starts_with(p)) {
                true => (path, access),
                false => (super::resolved(&path), access),
            }
        })
        .collect();
    let mut deny: Vec<PathBuf> = deny.iter().map(|d| super::resolved(d)).collect();
    let aliases = deny_aliases(&rules, &deny, holes)?;
    deny.extend(aliases);
    Ok((rules, deny))
}

/// Each deny spelled again through every place a rule reaches it under
/// another name: a bind mount, which no resolution of links sees. A place
/// is a rule's own path or the mount point of a mount below it, and it
/// names what lies at its [`Place`] on its filesystem, however mounted:
///
/// - a denied path inside a place is denied through the place too (review
///   s10 R3: `--deny /X/shared/conf/secret` against `fs.read = ["/X/alias"]`,
///   `/X/alias` a bind of `/X/shared`; review s11 S3: `--deny
///   /X/srv-conf/secret`, `/X/srv-conf` a bind of `/X/app/conf`, against
///   `fs.read = ["/X/app"]`);
/// - a place inside a denied tree is denied whole (review s11 S3: `--deny
///   /home/alice` against `fs.read = ["/mnt/data"]`, a bind of
///   `/home/alice/data`; Landlock rules sit on inodes, so that rule opened
///   the denied tree under its own name too);
/// - an overlay mount shows its layers' files: it is a place for each layer.
///   A layer mountinfo names by a relative path cannot be placed: the run
///   is refused (review s13 R13-2). A layer that is not there under the
///   name mountinfo gives is passed by: a layer renamed since the mount is
///   then not seen (mountinfo keeps the string the mounter gave), but the
///   root of every container (Docker, Podman) is an overlay whose layers
///   lie outside its mount namespace, and refusing those would refuse
///   every run with a deny there.
///
/// Each alias only takes access away. A deny that does not exist (yet) is
/// placed by its nearest existing folder; a deny or rule whose mount
/// cannot be told refuses the run. A rule kept in a hole of a deny
/// ([`crate::policy::FsPolicy::holes`]) lies inside that deny by its own
/// name, which is no alias.
fn deny_aliases(
    rules: &[(PathBuf, FsAccess)],
    deny: &[PathBuf],
    holes: &[(PathBuf, PathBuf)],
) -> Result<Vec<PathBuf>, LandlockError> {
    if deny.is_empty() {
        return Ok(vec![]);
    }
    let mounts = |source| LandlockError::Mounts { source };
    let table = MountTable::read().map_err(mounts)?;
    // A deny that does not exist yet (a file the run or the host makes
    // later) is placed by its nearest folder that does, plus the rest.
    let mut denied: Vec<(&PathBuf, Place)> = vec![];
    for d in deny {
        for folder in d.ancestors() {
            if let Some(mut place) = table.place(folder).map_err(mounts)? {
                if let Ok(rest) = d.strip_prefix(folder) {
                    if !rest.as_os_str().is_empty() {
                        place.path.push(rest);
                    }
                }
                denied.push((d, place));
                break;
            }
        }
    }
    // Where `place` shows what lies at `at`: spelled through it, or the
    // whole of it when it lies inside.
    let through = |spelled: &Path, place: &Place, at: &Place| -> Option<PathBuf> {
        if place.device != at.device {
            return None;
        }
        match at.path.strip_prefix(&place.path) {
            Ok(rest) if rest.as_os_str().is_empty() => Some(spelled.to_owned()),
            Ok(rest) => Some(spelled.join(rest)),
            Err(_) => place.path.starts_with(&at.path).then(|| spelled.to_owned()),
        }
    };
    let mut aliases = vec![];
    for (rule, _) in rules {
        let own = table.mount_of(rule).map_err(mounts)?;
        let mut places: Vec<(PathBuf, Place)> = vec![];
        if let Some((m, below)) = own {
            places.push((rule.clone(), m.place_of(below)));
        }
        places.extend(table.below(rule).map(|m| (m.point.clone(), m.root.clone())));
        // An overlay shows its layers' files under its mount point.
        for m in own.map(|(m, _)| m).into_iter().chain(table.below(rule)) {
            for layer in &m.layers {
                if layer.is_relative() {
                    return Err(LandlockError::RelativeOverlayLayer { overlay: m.point.clone(), layer: layer.clone() });
                }
                if let Some(place) = table.place(&super::resolved(layer)).map_err(mounts)? {
                    places.push((m.point.clone(), place));
                }
            }
        }
        for (spelled, place) in &places {
            for (d, at) in &denied {
                if spelled == rule && crate::policy::fs::in_hole(rule, d, holes) {
                    continue;
                }
                match through(spelled, place, at) {
                    Some(alias) if alias != **d => aliases.push(alias),
                    _ => {}
                }
            }
        }
    }
    Ok(aliases)
}

/// Whether a rule's path is resolved through its links already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// Resolved: `realpath(3)` of the path as declared.
    Resolved,
    /// As the policy declared it.
    AsDeclared,
}

/// `rules` with each path that is an entry of the system set replaced by
/// where `system` saw it resolve, and marked [`Spelling::Resolved`]: a
/// link by its target, a folder or file by itself below its parent's real
/// path (what `realpath` gives; [`SystemEntries`] looked once per run, for
/// the carve-out of cordon's state and the mounts, so [`resolve_for_carving`]
/// need not resolve the ~50 entries again: ~120 `readlink`s per run). An
/// entry that did not resolve (missing, a dangling link), a folder or file
/// inside a pinned tree (taken as it is there), and every other rule stay
/// as declared.
pub fn resolve_system_entries(
    rules: &[(PathBuf, FsAccess)],
    system: &SystemEntries,
    pinned: &[PathBuf],
) -> Vec<(PathBuf, FsAccess, Spelling)> {
    rules
        .iter()
        .map(|(path, access)| {
            let entry = path.to_str().and_then(|p| system.get(p));
            let is_pinned = || pinned.iter().any(|p| path.starts_with(p));
            match entry.map(|e| (&e.kind, &e.resolved)) {
                Some((Kind::Link(_), to)) if to.is_absolute() && to != path => {
                    (to.clone(), *access, Spelling::Resolved)
                }
                Some((Kind::Dir | Kind::File, to)) if to.is_absolute() && !is_pinned() => {
                    (to.clone(), *access, Spelling::Resolved)
                }
                _ => (path.clone(), *access, Spelling::AsDeclared),
            }
        })
        .collect()
}

/// `rules` (sorted by path, as [`expand_denies`] returns them) without those
/// lying inside another rule's path with the same access: Landlock grants
/// a rule's access to everything beneath it. The paths hold no symbolic
/// links (system links are resolved, every other path by
/// [`resolve_for_carving`], carved entries skip links), so inside by path is inside
/// on the filesystem; were one made since, the rule left out grants less,
/// never more.
pub fn without_nested(rules: Vec<(PathBuf, FsAccess)>) -> Vec<(PathBuf, FsAccess)> {
    let mut kept: Vec<(PathBuf, FsAccess)> = Vec::with_capacity(rules.len());
    // Sorted by path component by component, a path's descendants follow
    // it before anything else does: the kept rules that are ancestors of
    // the current path are a stack (indices into `kept`, outermost first).
    let mut ancestors: Vec<usize> = vec![];
    for (path, access) in rules {
        while ancestors.last().is_some_and(|&i| !path.starts_with(&kept[i].0)) {
            ancestors.pop();
        }
        if ancestors.iter().any(|&i| kept[i].1 == access) {
            continue;
        }
        ancestors.push(kept.len());
        kept.push((path, access));
    }
    kept
}

/// Replaces every granted tree that contains a denied path by its entries
/// minus the way to that path (see the module docs), and leaves out every
/// rule that lies inside a denied path: a deny takes a whole tree away,
/// the system set's rules in it included (`--deny /etc` leaves no
/// `/etc/passwd` rule, `--deny /usr` none of `/usr/bin`).
pub fn expand_denies(
    rules: &[(PathBuf, FsAccess)],
    deny: &[PathBuf],
) -> Result<Vec<(PathBuf, FsAccess)>, LandlockError> {
    expand_denies_with_holes(rules, deny, &[])
}

/// [`expand_denies`], keeping the rules that lie in a hole of a deny
/// around them ([`crate::policy::FsPolicy::holes`]; resolved, as the rules
/// and the denies are). A deny inside such a rule still carves it.
pub fn expand_denies_with_holes(
    rules: &[(PathBuf, FsAccess)],
    deny: &[PathBuf],
    holes: &[(PathBuf, PathBuf)],
) -> Result<Vec<(PathBuf, FsAccess)>, LandlockError> {
    let mut out: BTreeMap<PathBuf, FsAccess> = BTreeMap::new();
    for (path, access) in rules {
        if deny.iter().any(|d| path.starts_with(d) && !crate::policy::fs::in_hole(path, d, holes)) {
            continue;
        }
        let inside: Vec<&PathBuf> = deny.iter().filter(|d| d.starts_with(path)).collect();
        if inside.is_empty() {
            merge(&mut out, path.clone(), *access);
        } else {
            carve(path, *access, &inside, &mut out)?;
        }
    }
    Ok(out.into_iter().collect())
}

fn merge(out: &mut BTreeMap<PathBuf, FsAccess>, path: PathBuf, access: FsAccess) {
    let slot = out.entry(path).or_insert(access);
    *slot = (*slot).max(access);
}

fn carve(
    dir: &Path,
    access: FsAccess,
    denies: &[&PathBuf],
    out: &mut BTreeMap<PathBuf, FsAccess>,
) -> Result<(), LandlockError> {
    if denies.iter().any(|d| d.as_path() == dir) || !dir.is_dir() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| LandlockError::ListDir { path: dir.to_owned(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| LandlockError::ListDir { path: dir.to_owned(), source })?;
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            // A link is not part of the tree it sits in: a rule on it would
            // grant wherever it points.
            continue;
        }
        let child = entry.path();
        let below: Vec<&PathBuf> = denies.iter().copied().filter(|d| d.starts_with(&child)).collect();
        if below.is_empty() {
            merge(out, child, access);
        } else {
            carve(&child, access, &below, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule inside a denied tree is left out, whatever granted it;
    /// control: the same rule beside the denied tree stays.
    #[test]
    fn a_rule_inside_a_denied_tree_is_left_out() {
        let rules = vec![
            (PathBuf::from("/etc/passwd"), FsAccess::Read),
            (PathBuf::from("/etc/ssl/certs"), FsAccess::Read),
            (PathBuf::from("/etcetera"), FsAccess::Read),
            (PathBuf::from("/usr/bin"), FsAccess::Read),
        ];
        let got = expand_denies(&rules, &[PathBuf::from("/etc")]).unwrap();
        assert_eq!(got, [(PathBuf::from("/etcetera"), FsAccess::Read), (PathBuf::from("/usr/bin"), FsAccess::Read)]);
        assert_eq!(expand_denies(&rules, &[]).unwrap().len(), 4, "control");
    }

    #[test]
    fn a_rule_in_a_hole_of_a_deny_is_kept_and_no_other() {
        let dir = std::env::temp_dir().join(format!("cordon-landlock-hole-{}", std::process::id()));
        let runs = dir.join("state/runs");
        for d in ["state/runs/mine/artifacts", "state/runs/other/artifacts", "state/key", "work"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let mine = runs.join("mine");
        let rules = vec![
            (dir.clone(), FsAccess::Write),
            (mine.join("artifacts"), FsAccess::Write),
            (runs.join("other/artifacts"), FsAccess::Write),
        ];
        let deny = [dir.join("state")];
        let holes = [(dir.join("state"), mine.clone())];
        let got = expand_denies_with_holes(&rules, &deny, &holes).unwrap();
        let paths: Vec<&Path> = got.iter().map(|(p, _)| p.as_path()).collect();
        assert!(paths.contains(&mine.join("artifacts").as_path()), "{got:?}");
        assert!(paths.contains(&dir.join("work").as_path()), "{got:?}");
        assert!(!paths.iter().any(|p| p.starts_with(runs.join("other")) || p.starts_with(dir.join("state/key"))));
        // A deny above the hole's outer folder (a user's) is not holed.
        let got = expand_denies_with_holes(&rules, std::slice::from_ref(&dir), &holes).unwrap();
        assert!(got.is_empty(), "{got:?}");
        // Nor is the hole itself denied by name.
        let got = expand_denies_with_holes(&rules[1..2], std::slice::from_ref(&mine), &holes).unwrap();
        assert!(got.is_empty(), "{got:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn deny_inside_a_tree_keeps_the_siblings() {
        let dir = std::env::temp_dir().join(format!("cordon-ll-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/secret")).unwrap();
        std::fs::create_dir_all(dir.join("a/ok")).unwrap();
        std::fs::write(dir.join("b"), "x").unwrap();
        let rules = vec![(dir.clone(), FsAccess::Read)];
        let got = expand_denies(&rules, &[dir.join("a/secret")]).unwrap();
        let paths: Vec<_> = got.iter().map(|(p, _)| p.strip_prefix(&dir).unwrap().to_owned()).collect();
        assert_eq!(paths, [PathBuf::from("a/ok"), PathBuf::from("b")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_a_terminal_of_the_run_gets_ioctls() {
        let device = access_bits(FsAccess::Device, 7, ExecRight::WithGrants);
        let terminal = access_bits(FsAccess::Terminal, 7, ExecRight::WithGrants);
        assert!(!device.contains(AccessFs::IoctlDev), "/dev/null and the caller's terminal: no ioctl");
        assert!(terminal.contains(AccessFs::IoctlDev | AccessFs::ReadFile | AccessFs::WriteFile));
        assert!(
            !access_bits(FsAccess::Terminal, 4, ExecRight::WithGrants).contains(AccessFs::IoctlDev),
            "ABI 4 has none"
        );
        assert!(!(terminal & file_rights(7)).contains(AccessFs::ReadDir), "a file rule has no directory rights");
    }

    #[test]
    fn a_rule_inside_another_with_the_same_access_is_left_out() {
        let p = |s: &str| PathBuf::from(s);
        let rules = expand_denies(
            &[
                (p("/usr"), FsAccess::Read),
                (p("/usr/bin"), FsAccess::Read),
                (p("/usr/lib/os-release"), FsAccess::Read),
                (p("/usr/local/bin/tool"), FsAccess::Exec),
                (p("/usr-other"), FsAccess::Read),
                (p("/w"), FsAccess::Write),
                (p("/w/r"), FsAccess::Read),
                (p("/w/r/deeper"), FsAccess::Write),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            without_nested(rules),
            [
                (p("/usr"), FsAccess::Read),
                // Another access: kept (exec lists carry execute alone).
                (p("/usr/local/bin/tool"), FsAccess::Exec),
                // Beside /usr by name, not inside it.
                (p("/usr-other"), FsAccess::Read),
                (p("/w"), FsAccess::Write),
                (p("/w/r"), FsAccess::Read),
            ]
        );
    }

    #[test]
    fn a_system_link_is_taken_as_its_target() {
        let dir = std::env::temp_dir().join(format!("cordon-ll-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        std::os::unix::fs::symlink("usr/bin", dir.join("bin")).unwrap();
        let (bin, usr) = (dir.join("bin"), dir.join("usr"));
        let leak = |s: &std::path::Path| -> &'static str { Box::leak(s.to_str().unwrap().to_owned().into_boxed_str()) };
        let system = SystemEntries::look_at(&[leak(&bin), leak(&usr), "/cordon-ll-absent"]);
        let rules = vec![
            (bin.clone(), FsAccess::Read),
            (usr.clone(), FsAccess::Read),
            (PathBuf::from("/cordon-ll-absent"), FsAccess::Read),
            (dir.join("not-a-system-entry"), FsAccess::Write),
        ];
        let entries = resolve_system_entries(&rules, &system, &[]);
        let resolved: Vec<(PathBuf, FsAccess)> = entries.iter().map(|(p, a, _)| (p.clone(), *a)).collect();
        assert_eq!(resolved[0], (dir.join("usr/bin"), FsAccess::Read), "the link becomes its target");
        assert_eq!(resolved[1..], rules[1..], "everything else stays");
        // A deny in the target now carves the rule that came from the link:
        // nothing grants the whole of usr/bin.
        std::fs::write(dir.join("usr/bin/secret"), "x").unwrap();
        std::fs::write(dir.join("usr/bin/tool"), "x").unwrap();
        let carved = without_nested(expand_denies(&resolved, &[dir.join("usr/bin/secret")]).unwrap());
        assert!(carved.iter().all(|(p, _)| p != &dir.join("usr/bin") && p != &usr), "{carved:?}");
        assert!(carved.contains(&(dir.join("usr/bin/tool"), FsAccess::Read)), "{carved:?}");
        // Control: the link as written keeps a rule on the whole target.
        let uncarved = expand_denies(&rules, &[dir.join("usr/bin/secret")]).unwrap();
        assert!(uncarved.contains(&(bin, FsAccess::Read)), "{uncarved:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The system set's entries come out resolved as the run looked at
    /// them, and marked so (resolve_for_carving does not look them up
    /// again): a link as its target, a folder and a file below a linked
    /// parent at their real paths. A missing entry, a dangling link, a
    /// folder inside a pinned tree and a rule outside the system set stay
    /// as declared.
    #[test]
    fn system_entries_come_resolved_and_the_rest_as_declared() {
        let dir = std::env::temp_dir().join(format!("cordon-ll-entries-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real/sub")).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        std::fs::write(dir.join("real/file"), "x").unwrap();
        std::os::unix::fs::symlink("real", dir.join("linked")).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.join("dangling")).unwrap();
        let leak = |s: &std::path::Path| -> &'static str { Box::leak(s.to_str().unwrap().to_owned().into_boxed_str()) };
        let names = ["linked", "linked/sub", "linked/file", "missing", "dangling", "real/sub"];
        let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        let system = SystemEntries::look_at(&paths.iter().map(|p| leak(p)).collect::<Vec<_>>());
        let mut rules: Vec<(PathBuf, FsAccess)> = paths.iter().map(|p| (p.clone(), FsAccess::Read)).collect();
        rules.push((dir.join("real/elsewhere"), FsAccess::Write));
        let pinned = [dir.join("real")];
        let got = resolve_system_entries(&rules, &system, &pinned);
        let want = [
            (dir.join("real"), Spelling::Resolved),
            (dir.join("real/sub"), Spelling::Resolved),
            (dir.join("real/file"), Spelling::Resolved),
            (dir.join("missing"), Spelling::AsDeclared),
            (dir.join("dangling"), Spelling::AsDeclared),
            (dir.join("real/sub"), Spelling::AsDeclared),
            (dir.join("real/elsewhere"), Spelling::AsDeclared),
        ];
        for (((path, access, spelling), (want_path, want_spelling)), (_, declared)) in got.iter().zip(&want).zip(&rules)
        {
            assert_eq!((path, spelling, access), (want_path, want_spelling, declared), "{got:?}");
        }
        assert_eq!(got.len(), want.len());
        // Each comes out as resolve_for_carving would have resolved it.
        for (path, _, spelling) in &got {
            if *spelling == Spelling::Resolved {
                assert_eq!(path, &super::super::resolved(path), "{path:?}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_beats_read_on_the_same_path() {
        let rules = vec![(PathBuf::from("/x"), FsAccess::Read), (PathBuf::from("/x"), FsAccess::Write)];
        assert_eq!(expand_denies(&rules, &[]).unwrap(), [(PathBuf::from("/x"), FsAccess::Write)]);
    }
}
