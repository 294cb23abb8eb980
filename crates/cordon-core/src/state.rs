//! Where cordon keeps its own state, and keeping it out of every sandbox.
//!
//! cordon's state is what makes its records and its trust decisions worth
//! anything, so no sandbox may reach it, whatever its grants:
//!
//! - the state folder, [`state_dir`] (`$XDG_STATE_HOME/cordon`, else
//!   `~/.local/state/cordon`): the default audit log, its run journal and
//!   pending markers, the audit signing key and its latest checkpoints;
//! - cordon's home, [`home_dir`] (`$CORDON_HOME`, else
//!   `$XDG_DATA_HOME/cordon`, else `~/.local/share/cordon`): the plugin
//!   registry (lock file, installed plugins, trust store), plugin data
//!   folders and the artifact store;
//! - wherever else the audit log of a run is (`--audit-log`), with its
//!   companion files: the caller names them ([`Protected`]).
//!
//! [`protected_paths`] lists the first two; [`carve_out`] takes every
//! protected path out of a policy's grants before it is planned: a grant
//! that covers one gets a `deny` for it (created first when missing, so a
//! sandbox cannot plant it), a grant inside one is dropped, and each change
//! comes back as a sentence for the user.
//!
//! # Guarantees and limits
//!
//! Paths are compared after resolving symbolic links, and a carve-out is
//! added both as resolved and as seen through the grant's own spelling, so a
//! grant through a link is carved too. A `deny` is enforced as every `deny`
//! is (see `enforce::landlock`): the protected path gets no access, and the
//! folders between it and the grant cannot get new, removed or renamed
//! entries during the run (which is also what stops a sandbox from renaming
//! a folder above the state away). Another path to the same inode (a host
//! bind mount, a hard link made outside cordon) is not recognised. Dev mode
//! has no sandbox, so nothing is carved there.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::policy::fs::{starts_with, Spelled};
use crate::policy::{PathRule, Policy, SystemSet};
use crate::system_entries::SystemEntries;

/// How every note of [`carve_out`] starts (runners that print a note
/// themselves can tell it from other warnings).
pub const NOTE_PREFIX: &str = "cordon's own state is kept out of every sandbox: ";

/// The variable naming cordon's home (the plugin registry).
pub const HOME_ENV: &str = "CORDON_HOME";

fn absolute(v: Option<OsString>) -> Option<PathBuf> {
    v.map(PathBuf::from).filter(|p| p.is_absolute())
}

/// cordon's state folder: `$XDG_STATE_HOME/cordon`, else
/// `~/.local/state/cordon` (relative values are ignored, as the XDG spec
/// says). `None` without either.
pub fn state_dir() -> Option<PathBuf> {
    state_dir_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

/// [`state_dir`] from the values of `XDG_STATE_HOME` and `HOME`.
pub fn state_dir_from(xdg_state: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    absolute(xdg_state).map(|s| s.join("cordon")).or_else(|| absolute(home).map(|h| h.join(".local/state/cordon")))
}

/// cordon's data folder: `$XDG_DATA_HOME/cordon`, else
/// `~/.local/share/cordon`. Plugin data folders and the artifact store
/// live here by default.
pub fn data_dir() -> Option<PathBuf> {
    absolute(std::env::var_os("XDG_DATA_HOME"))
        .map(|d| d.join("cordon"))
        .or_else(|| absolute(std::env::var_os("HOME")).map(|h| h.join(".local/share/cordon")))
}

/// cordon's home, where the plugin registry lives: `$CORDON_HOME`, else
/// [`data_dir`].
pub fn home_dir() -> Option<PathBuf> {
    absolute(std::env::var_os(HOME_ENV)).or_else(data_dir)
}

/// Whether a protected path is a folder (created when missing, so that no
/// sandbox can create it first) or a file (left alone when missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A folder.
    Folder,
    /// A file.
    File,
}

/// A path no sandbox may reach, and what it holds (for the message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protected {
    /// The path.
    pub path: PathBuf,
    /// What it is, e.g. `cordon's state folder (audit log, run journal, audit key)`.
    pub what: String,
    /// Folder or file.
    pub kind: Kind,
}

impl Protected {
    /// A protected folder.
    pub fn folder(path: impl Into<PathBuf>, what: impl Into<String>) -> Protected {
        Protected { path: path.into(), what: what.into(), kind: Kind::Folder }
    }

    /// A protected file.
    pub fn file(path: impl Into<PathBuf>, what: impl Into<String>) -> Protected {
        Protected { path: path.into(), what: what.into(), kind: Kind::File }
    }
}

/// The variable naming the artifact store `cordon exec` uses by default.
pub const ARTIFACT_STORE_ENV: &str = "CORDON_ARTIFACT_STORE";

/// The folder systemd hands a service's credentials in (`LoadCredential=`).
pub const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";

/// What [`protect_from_now_on`] added.
static ADDED: std::sync::Mutex<Vec<Protected>> = std::sync::Mutex::new(Vec::new());

/// Adds `p` to [`protected_paths`] for the rest of this process. For what
/// a process reads its own secrets and trust from besides the state and
/// home folders: `cordon serve`'s secret files and configuration, the
/// registry it serves from, a worker's result key and queue credentials.
/// Called where the file is read, so that every later run of the process
/// keeps it out, whichever caller plans the run. A relative path is taken
/// from the current folder.
pub fn protect_from_now_on(p: Protected) {
    let p = match p.path.is_absolute() {
        true => p,
        false => match std::env::current_dir() {
            Ok(cwd) => Protected { path: cwd.join(&p.path), ..p },
            Err(_) => p,
        },
    };
    let mut added = ADDED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !added.iter().any(|a| a.path == p.path) {
        added.push(p);
    }
}

/// cordon's own state that every sandbox is kept out of: [`state_dir`],
/// [`home_dir`] and [`data_dir`] (plugin data folders, the default
/// artifact store) where they can be named, the artifact store of
/// `$CORDON_ARTIFACT_STORE`, a service's `$CREDENTIALS_DIRECTORY`, and
/// what this process added with [`protect_from_now_on`]. Callers add the
/// files of an audit log kept elsewhere and the artifact store a run's
/// files go to.
pub fn protected_paths() -> Vec<Protected> {
    let mut out = vec![];
    if let Some(d) = state_dir() {
        out.push(Protected::folder(d, "cordon's state folder: audit log, run journal, audit signing key"));
    }
    let home = home_dir();
    if let Some(d) = &home {
        out.push(Protected::folder(d, "cordon's home: plugin registry, trust store, installed plugins"));
    }
    if let Some(d) = data_dir().filter(|d| Some(d) != home.as_ref()) {
        out.push(Protected::folder(d, "cordon's data folder: plugin data folders, artifact store"));
    }
    if let Some(d) = absolute(std::env::var_os(ARTIFACT_STORE_ENV)) {
        out.push(Protected::folder(d, "cordon's artifact store ($CORDON_ARTIFACT_STORE)"));
    }
    if let Some(d) = absolute(std::env::var_os(CREDENTIALS_ENV)) {
        out.push(Protected::folder(d, "this service's credentials ($CREDENTIALS_DIRECTORY)"));
    }
    // Inside the state folder when there is one (handled with it).
    out.push(Protected::folder(runs_folder(&default_run_root()), RUNS_FOLDER_WHAT));
    out.extend(ADDED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned());
    out
}

/// Makes the folders of `rel` below `base` (`base` itself made first as
/// spelled, when missing), each `0700`, without following a link below
/// `base`: a link there (one a run that could write `base` may have made)
/// fails with `ELOOP`, a file with `ENOTDIR`, and nothing is made through
/// either. For plugin data folders below [`data_dir`].
pub fn make_private_dir_beneath(base: &Path, rel: &Path) -> io::Result<()> {
    use std::os::fd::AsFd;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(base)?;
    let mut at = std::fs::File::open(base).map(std::os::fd::OwnedFd::from)?;
    for part in rel.components() {
        let std::path::Component::Normal(name) = part else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let name = Path::new(name);
        match crate::sys::mkdir_at(at.as_fd(), name, 0o700) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
            _ => {}
        }
        at = crate::sys::open_beneath(at.as_fd(), name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    }
    Ok(())
}

/// The folder of run folders below a run root: `RUN_ROOT/cordon-runs-UID`,
/// one per user (a run root such as `/var/tmp` is shared). Each run's own
/// folder (`cordon-exec-<id>`: its artifacts until they are collected) is
/// made in it, and it is protected like the rest of cordon's state: no
/// sandbox reaches it but a run's own folder, granted to that run alone
/// ([`carve_out_with_hole`]).
pub fn runs_folder(run_root: &Path) -> PathBuf {
    run_root.join(format!("cordon-runs-{}", crate::sys::effective_uid()))
}

/// Where run folders go when the caller names no run root: cordon's state
/// folder ([`state_dir`], out of every sandbox's reach already), else
/// `/var/tmp` (not `/tmp`, which container mode replaces).
pub fn default_run_root() -> PathBuf {
    state_dir().unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

/// The folder of run folders cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {} as the folder of cordon's run folders: {problem}", path.display())]
pub struct RunsFolderError {
    /// The folder.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
    /// The cause, when a call failed.
    #[source]
    pub source: Option<io::Error>,
}

impl RunsFolderError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        "remove it (it holds nothing but run folders; a live run's folder is locked) or choose another run root: cordon exec uses cordon's state folder ($XDG_STATE_HOME/cordon, else ~/.local/state/cordon), cordon serve and the worker [server] run_root"
    }
}

/// Makes [`runs_folder`] of `run_root` (`0700`; `run_root` itself made as
/// spelled when missing) and checks it before a run's folder goes in:
/// opened without following a link (`ELOOP`: a link there is refused, not
/// followed), a folder, owned by this user (on a shared run root another
/// user could have made it first, to read or plant this user's
/// artifacts), and `0700` (group and other bits are taken away). Returns
/// it with its parent resolved, as the carve-out will see it, and
/// registers it with [`protect_from_now_on`], so every later run of this
/// process keeps out of it (callers that run many at once register it when
/// they learn the run root, before the first).
pub fn make_runs_folder(run_root: &Path) -> Result<PathBuf, RunsFolderError> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = runs_folder(run_root);
    let fail = |problem: &str, source: Option<io::Error>| RunsFolderError {
        path: path.clone(),
        problem: problem.to_owned(),
        source,
    };
    let name = path.file_name().map(PathBuf::from).unwrap_or_default();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(run_root)
        .map_err(|e| fail("its run root cannot be created", Some(e)))?;
    let root = std::fs::canonicalize(run_root).map_err(|e| fail("its run root cannot be resolved", Some(e)))?;
    let at = std::fs::File::open(&root).map_err(|e| fail("its run root cannot be opened", Some(e)))?;
    match crate::sys::mkdir_at(at.as_fd(), &name, 0o700) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(fail("it cannot be created", Some(e))),
        _ => {}
    }
    let dir =
        match crate::sys::open_beneath(at.as_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0) {
            Ok(fd) => std::fs::File::from(fd),
            // O_NOFOLLOW | O_DIRECTORY on a link: ENOTDIR (ELOOP on the way).
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
                return Err(fail(
                    match link {
                        true => "it is a symbolic link, which cordon does not follow",
                        false => "it is not a folder",
                    },
                    None,
                ));
            }
            Err(e) => return Err(fail("it cannot be opened", Some(e))),
        };
    let meta = dir.metadata().map_err(|e| fail("it cannot be looked at", Some(e)))?;
    let me = crate::sys::effective_uid();
    if meta.uid() != me {
        return Err(fail(
            &format!("it belongs to uid {}, not to this user (uid {me}): another user made it first", meta.uid()),
            None,
        ));
    }
    if meta.mode() & 0o077 != 0 {
        dir.set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail("its permissions cannot be set to 0700", Some(e)))?;
    }
    let resolved = root.join(name);
    protect_from_now_on(Protected::folder(&resolved, RUNS_FOLDER_WHAT));
    Ok(resolved)
}

/// How the carve-out's notes name a folder of run folders.
pub const RUNS_FOLDER_WHAT: &str = "cordon's run folders: other runs' artifacts until they are collected";

/// A policy with cordon's state carved out, and what changed.
#[derive(Clone, Debug)]
pub struct Carving {
    /// The policy to plan.
    pub policy: Policy,
    /// One sentence per change, for stderr and the result's warnings.
    pub notes: Vec<String>,
}

/// cordon's state cannot be kept out of a grant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A protected folder that a grant covers could not be created.
    #[error("cannot create {} ({what}) before carving it out of fs.{kind} {}", path.display(), grant.display())]
    Create {
        /// The folder.
        path: PathBuf,
        /// What it holds.
        what: String,
        /// `read` or `write`.
        kind: &'static str,
        /// The grant covering it.
        grant: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A grant covers protected state that holds a folder the run itself
    /// needs (a plugin's own folder or data folder).
    #[error(
        "fs.{kind} {} covers {} ({what}), which holds {}, a folder this run needs; cordon cannot carve out the one and keep the other",
        grant.display(), path.display(), own.display()
    )]
    OwnFolderCovered {
        /// `read` or `write`.
        kind: &'static str,
        /// The covering grant.
        grant: PathBuf,
        /// The protected path.
        path: PathBuf,
        /// What it holds.
        what: String,
        /// The folder the run needs.
        own: PathBuf,
    },
}

impl StateError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            StateError::Create { .. } => "check the folder's permissions, or set XDG_STATE_HOME / CORDON_HOME elsewhere",
            StateError::OwnFolderCovered { .. } => {
                "narrow the grant so that it does not contain cordon's state, or keep the plugin's data folder elsewhere (--data-dir)"
            }
        }
    }
}

/// One grant, as written and as resolved (borrowed from the policy and
/// the system entries where it can be).
struct Grant<'a> {
    kind: &'static str,
    path: &'a Path,
    resolved: Cow<'a, Path>,
    system: bool,
}

fn resolve(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Takes every `protected` path out of `policy`'s grants (see the module
/// docs). `own` are folders the run itself needs even when they lie inside
/// protected state (a plugin's own folder and data folder): grants of them
/// are kept, and a grant that covers the protected path around them is an
/// error, because carving that path out would take them away too.
///
/// Creates protected folders that a grant covers and that do not exist
/// yet, `0700`; reads nothing else.
///
/// `system` is the system set as the run looked at it
/// ([`SystemEntries::look`]); its entries count as grants when `policy`
/// includes the system set.
pub fn carve_out(
    policy: &Policy,
    protected: &[Protected],
    own: &[PathBuf],
    system: &SystemEntries,
) -> Result<Carving, StateError> {
    carve_out_with_hole(policy, protected, own, None, system)
}

/// [`carve_out`] for a run with its own run folder, `hole`, inside
/// protected state (in [`runs_folder`]): the run's grants inside it are
/// kept, and a grant that covers the protected folder around it carves
/// that folder out but for `hole` (a hole in the deny,
/// [`crate::policy::FsPolicy::holes`]): other runs' folders, and whatever
/// else the protected folder holds, stay out of reach, and this run's own
/// stays in it.
pub fn carve_out_with_hole(
    policy: &Policy,
    protected: &[Protected],
    own: &[PathBuf],
    hole: Option<&Path>,
    system: &SystemEntries,
) -> Result<Carving, StateError> {
    let mut out = policy.clone();
    let mut notes = vec![];
    let own: Vec<PathBuf> = own.iter().map(|p| resolve(p)).collect();
    let hole: Option<PathBuf> = hole.map(resolve);
    let mut grants: Vec<Grant> = vec![];
    if policy.fs.system == SystemSet::Include {
        grants.extend(system.iter().map(|e| Grant {
            kind: "read",
            path: Path::new(e.path),
            resolved: Cow::Borrowed(e.resolved.as_path()),
            system: true,
        }));
    }
    for (kind, rules) in [("read", &policy.fs.read), ("write", &policy.fs.write)] {
        grants.extend(rules.iter().map(|r| Grant {
            kind,
            path: r.path.as_path(),
            resolved: Cow::Owned(resolve(&r.path)),
            system: false,
        }));
    }
    // Each grant's two spellings, looked at once for the prefix tests.
    let spelled: Vec<(Spelled<'_>, Spelled<'_>)> =
        grants.iter().map(|g| (Spelled::new(g.path), Spelled::new(&g.resolved))).collect();
    let mut done: Vec<PathBuf> = vec![];
    for p in protected {
        let lexical = crate::policy::fs::normalize(&p.path);
        // Resolved once: each resolution is a readlink per component.
        let before = resolve(&lexical);
        if done.iter().any(|d| starts_with(&before, d)) {
            continue; // inside protected state already handled
        }
        let (lexical_s, before_s) = (Spelled::new(&lexical), Spelled::new(&before));
        let covering = grants
            .iter()
            .zip(&spelled)
            .find(|(_, (path, res))| lexical_s.starts_with(*path) || before_s.starts_with(*res))
            .map(|(g, _)| g);
        let create = matches!((covering, p.kind), (Some(_), Kind::Folder)) && !lexical.exists();
        if let (true, Some(g)) = (create, covering) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&lexical).map_err(|source| {
                StateError::Create {
                    path: lexical.clone(),
                    what: p.what.clone(),
                    kind: g.kind,
                    grant: g.path.to_path_buf(),
                    source,
                }
            })?;
        }
        // A folder just created resolves only now.
        let resolved = if create { resolve(&lexical) } else { before };
        done.push(resolved.clone());
        let resolved_s = Spelled::new(&resolved);
        // Grants inside protected state: dropped, unless the run needs them.
        for g in grants.iter().filter(|g| !g.system && starts_with(&g.resolved, &resolved)) {
            if own.iter().any(|o| *o == g.resolved) || hole.as_ref().is_some_and(|h| starts_with(&g.resolved, h)) {
                continue;
            }
            let rules = if g.kind == "read" { &mut out.fs.read } else { &mut out.fs.write };
            rules.retain(|r| r.path != *g.path);
            notes.push(format!(
                "{NOTE_PREFIX}fs.{} {} lies inside {} ({}) and is not granted",
                g.kind,
                g.path.display(),
                resolved.display(),
                p.what
            ));
        }
        // Grants around it: carved out.
        let around: Vec<&Grant> = grants
            .iter()
            .zip(&spelled)
            .filter(|(g, (_, res))| resolved_s.starts_with(*res) && resolved != g.resolved)
            .map(|(g, _)| g)
            .collect();
        let Some(first) = around.first() else { continue };
        if let Some(inner) = own.iter().find(|o| starts_with(o, &resolved)) {
            return Err(StateError::OwnFolderCovered {
                kind: first.kind,
                grant: first.path.to_path_buf(),
                path: resolved,
                what: p.what.clone(),
                own: inner.clone(),
            });
        }
        let mut denies = vec![resolved.clone()];
        for g in &around {
            if let Ok(rel) = resolved.strip_prefix(&g.resolved) {
                denies.push(g.path.join(rel));
            }
        }
        for d in denies {
            if !out.fs.deny.iter().any(|r| starts_with(&d, &r.path)) {
                out.fs.deny.push(PathRule { path: d });
            }
        }
        let kept = match hole.as_ref().filter(|h| starts_with(h, &resolved) && **h != resolved) {
            Some(h) => {
                out.fs.holes.push((resolved.clone(), h.clone()));
                format!(" but for this run's own folder {}", h.display())
            }
            None => String::new(),
        };
        notes.push(format!(
            "{NOTE_PREFIX}{} ({}) lies inside fs.{} {}, so it is carved out (no access){kept}, and the folders between them cannot get new, removed or renamed entries during this run",
            resolved.display(),
            p.what,
            first.kind,
            first.path.display()
        ));
    }
    Ok(Carving { policy: out, notes })
}

/// Opens one of cordon's own files that lives where runs may be granted
/// (an audit log kept outside the state folder, its run journal) with
/// `options`, never through a symbolic link in its last component and only
/// as a regular file with one name (review s14 R14-3): a run that could
/// write the file's folder may have replaced it by a link to a host file,
/// or a hard link to one, which cordon (often root) would then append to or
/// truncate. `options` may create the file (a new file has one name).
pub fn open_own_file(options: &mut std::fs::OpenOptions, path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let refused = |what: String| {
        io::Error::other(format!(
            "{} {what}; cordon opens its audit files only as regular files of their own, and a run that could write {} may have made it: move it away, or choose another file",
            path.display(),
            path.parent().map_or_else(|| ".".into(), |d| d.display().to_string())
        ))
    };
    let file = options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            refused(match std::fs::read_link(path) {
                Ok(to) => format!("is a symbolic link (to {})", to.display()),
                Err(_) => "is a symbolic link".into(),
            })
        } else {
            e
        }
    })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(refused("is not a regular file".into()));
    }
    if meta.nlink() > 1 {
        return Err(refused(format!("has {} names (hard links)", meta.nlink())));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("cordon-core-state-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Tmp(std::fs::canonicalize(p).unwrap())
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rule(p: &Path) -> PathRule {
        PathRule { path: p.to_owned() }
    }

    fn no_system() -> Policy {
        let mut p = Policy::default();
        p.fs.system = SystemSet::Exclude;
        p
    }

    #[test]
    fn state_and_home_follow_xdg_and_cordon_home() {
        let s = |x: Option<&str>, h: Option<&str>| state_dir_from(x.map(Into::into), h.map(Into::into));
        assert_eq!(s(Some("/s"), Some("/h")), Some(PathBuf::from("/s/cordon")));
        assert_eq!(s(Some("relative"), Some("/h")), Some(PathBuf::from("/h/.local/state/cordon")));
        assert_eq!(s(None, None), None);
    }

    #[test]
    fn a_grant_around_protected_state_gets_a_deny_and_a_note() {
        let t = Tmp::new("around");
        let state = t.0.join("home/.local/state/cordon");
        let mut policy = no_system();
        policy.fs.write.push(rule(&t.0.join("home")));
        let c = carve_out(&policy, &[Protected::folder(&state, "the state")], &[], &SystemEntries::look()).unwrap();
        assert!(state.is_dir(), "a missing protected folder is created before the run");
        assert_eq!(c.policy.fs.deny, [rule(&state)]);
        assert_eq!(c.policy.fs.write, policy.fs.write, "the grant itself stays");
        assert_eq!(c.notes.len(), 1);
        assert!(
            c.notes[0].contains(&format!(
                "{} (the state) lies inside fs.write {}",
                state.display(),
                t.0.join("home").display()
            )),
            "{}",
            c.notes[0]
        );
        // Control: a policy that does not reach the state is left alone.
        let mut elsewhere = no_system();
        elsewhere.fs.write.push(rule(&t.0.join("work")));
        let c = carve_out(&elsewhere, &[Protected::folder(&state, "the state")], &[], &SystemEntries::look()).unwrap();
        assert!(c.policy.fs.deny.is_empty() && c.notes.is_empty());
    }

    #[test]
    fn a_grant_inside_protected_state_is_dropped_unless_the_run_needs_it() {
        let t = Tmp::new("inside");
        let home = t.0.join("cordon-home");
        std::fs::create_dir_all(home.join("data/@a/b")).unwrap();
        std::fs::write(home.join("trust.json"), "{}").unwrap();
        let mut policy = no_system();
        policy.fs.read.push(rule(&home.join("trust.json")));
        policy.fs.write.push(rule(&home.join("data/@a/b")));
        let c =
            carve_out(&policy, &[Protected::folder(&home, "home")], &[home.join("data/@a/b")], &SystemEntries::look())
                .unwrap();
        assert!(c.policy.fs.read.is_empty());
        assert_eq!(c.policy.fs.write, [rule(&home.join("data/@a/b"))]);
        assert_eq!(c.notes.len(), 1);
        assert!(
            c.notes[0].contains(&format!("fs.read {} lies inside", home.join("trust.json").display())),
            "{}",
            c.notes[0]
        );
        // The protected folder itself, asked for by name, is dropped too.
        let mut whole = no_system();
        whole.fs.write.push(rule(&home));
        let c = carve_out(&whole, &[Protected::folder(&home, "home")], &[], &SystemEntries::look()).unwrap();
        assert!(c.policy.fs.write.is_empty() && c.policy.fs.deny.is_empty());
    }

    #[test]
    fn a_grant_covering_a_folder_the_run_needs_is_refused() {
        let t = Tmp::new("own");
        let home = t.0.join("cordon-home");
        let data = home.join("data/@a/b");
        std::fs::create_dir_all(&data).unwrap();
        let mut policy = no_system();
        policy.fs.write.push(rule(&t.0));
        policy.fs.write.push(rule(&data));
        let e = carve_out(
            &policy,
            &[Protected::folder(&home, "home")],
            std::slice::from_ref(&data),
            &SystemEntries::look(),
        )
        .unwrap_err();
        assert!(matches!(e, StateError::OwnFolderCovered { .. }), "{e}");
        assert!(e.to_string().contains(&format!("which holds {}", data.display())), "{e}");
    }

    #[test]
    fn a_grant_covering_the_run_folders_keeps_the_runs_own_folder_as_a_hole() {
        let t = Tmp::new("hole");
        let runs = t.0.join("state/cordon-runs-7");
        let mine = runs.join("cordon-exec-a");
        std::fs::create_dir_all(mine.join("artifacts")).unwrap();
        std::fs::create_dir_all(runs.join("cordon-exec-b/artifacts")).unwrap();
        let mut policy = no_system();
        policy.fs.write.push(rule(&t.0));
        policy.fs.write.push(rule(&mine.join("artifacts")));
        policy.fs.write.push(rule(&runs.join("cordon-exec-b/artifacts")));
        let protected = [Protected::folder(t.0.join("state"), "the state")];
        let c = carve_out_with_hole(&policy, &protected, &[], Some(&mine), &SystemEntries::look()).unwrap();
        assert_eq!(c.policy.fs.deny, [rule(&t.0.join("state"))]);
        assert_eq!(c.policy.fs.holes, [(t.0.join("state"), mine.clone())]);
        assert_eq!(c.policy.fs.write, [rule(&t.0), rule(&mine.join("artifacts"))], "another run's folder is dropped");
        assert!(c.notes.iter().any(|n| n.contains(&format!("but for this run's own folder {}", mine.display()))));
        // Without a grant around it: no deny and no hole, the run's own
        // grant kept all the same.
        let mut inside = no_system();
        inside.fs.write.push(rule(&mine.join("artifacts")));
        let c = carve_out_with_hole(&inside, &protected, &[], Some(&mine), &SystemEntries::look()).unwrap();
        assert!(c.policy.fs.deny.is_empty() && c.policy.fs.holes.is_empty());
        assert_eq!(c.policy.fs.write, inside.fs.write);
    }

    #[test]
    fn the_folder_of_run_folders_is_made_private_and_a_link_or_a_stranger_s_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = Tmp::new("runs");
        let made = make_runs_folder(&t.0.join("root")).unwrap();
        assert_eq!(made, runs_folder(&t.0.join("root")));
        assert_eq!(std::fs::metadata(&made).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_runs_folder(&t.0.join("root")).unwrap();
        assert_eq!(std::fs::metadata(&made).unwrap().permissions().mode() & 0o777, 0o700, "opened up again");
        assert!(protected_paths().iter().any(|p| p.path == made), "registered as protected");
        let elsewhere = t.0.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::create_dir_all(t.0.join("linked")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, runs_folder(&t.0.join("linked"))).unwrap();
        let e = make_runs_folder(&t.0.join("linked")).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn a_grant_through_a_symlink_is_carved_in_both_spellings() {
        let t = Tmp::new("link");
        let real = t.0.join("real");
        std::fs::create_dir_all(real.join("state")).unwrap();
        std::os::unix::fs::symlink(&real, t.0.join("link")).unwrap();
        let mut policy = no_system();
        policy.fs.write.push(rule(&t.0.join("link")));
        let c = carve_out(&policy, &[Protected::folder(real.join("state"), "s")], &[], &SystemEntries::look()).unwrap();
        assert_eq!(c.policy.fs.deny, [rule(&real.join("state")), rule(&t.0.join("link/state"))]);
    }

    #[test]
    fn the_system_set_counts_as_a_grant_but_is_never_dropped() {
        let mut policy = Policy::default();
        policy.fs.system = SystemSet::Include;
        let c = carve_out(&policy, &[Protected::file("/etc/hosts", "a file")], &[], &SystemEntries::look()).unwrap();
        assert!(c.policy.fs.deny.is_empty(), "a system entry that is itself protected stays: nothing around it");
        let c = carve_out(
            &policy,
            &[Protected::file("/usr/share/cordon-protected-test", "a file")],
            &[],
            &SystemEntries::look(),
        )
        .unwrap();
        assert_eq!(c.policy.fs.deny, [rule(Path::new("/usr/share/cordon-protected-test"))]);
        assert!(c.notes[0].contains("fs.read /usr"), "{}", c.notes[0]);
    }
}
