//! Artifacts: files a handler leaves in its `CORDON_ARTIFACTS` folder,
//! moved into an artifact store after the run.
//!
//! [`collect`] moves every regular file under the run's folder to
//! `store_root/<template expanded>/<relative path>` and returns each one's
//! relative path, size and SHA-256. It never follows a symbolic link: links
//! are skipped and reported, so a handler cannot make cordon copy a host file
//! it links to; and below the store's root the destination is walked from a
//! descriptor of the root, one component at a time, never through a link
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, `mkdirat`,
//! `O_CREAT | O_EXCL`), so a link planted in the store cannot
//! send the files elsewhere: the collection stops there with
//! [`ArtifactError::LinkInStore`]. The root's own path may not pass
//! through a link this user could re-point ([`check_store_root`]: refused
//! before the run; the collection opens the root by the same walk, by
//! descriptors from `/`, and stores below the descriptor it ends with, so a
//! link swapped in after the check is refused too). Files over the per-file cap are skipped; once the total or
//! count cap would be passed, the remaining files are skipped too. Skipped
//! files stay where they were (the run's scratch folder, which the caller
//! removes).
//!
//! Each file is copied into a new file of the store, never renamed: the
//! store holds no inode that another name or an open descriptor still
//! reaches (a hard link the run made, a descriptor it passed on), so what
//! is stored is what was hashed. Each source is opened below the artifact
//! folder without following a link, non-blocking, and must still be a
//! regular file. Call it after every process of the run has ended: a live
//! one could still add, replace or rename entries while they are walked.
//!
//! ```
//! use cordon_plugin::artifacts::{Template, TemplateVars};
//! let t: Template = "{plugin}/{version}/{handler}/{request_id}".parse().unwrap();
//! let vars = TemplateVars {
//!     plugin: "@acme/weather".into(),
//!     version: "1.2.3".into(),
//!     handler: "forecast".into(),
//!     request_id: "01J0000000000000000000000".into(),
//!     tenant: None,
//! };
//! assert_eq!(t.expand(&vars).unwrap(), std::path::Path::new("@acme/weather/1.2.3/forecast/01J0000000000000000000000"));
//! assert!("{plugin}/../{handler}".parse::<Template>().is_err());
//! assert!("{plugin}/{nope}".parse::<Template>().is_err());
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use cordon_core::sys;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::traceparent::hex;

/// The default store layout.
pub const DEFAULT_TEMPLATE: &str = "{plugin}/{version}/{handler}/{request_id}";

/// The variable naming the artifact folder inside the sandbox.
pub const ENV: &str = "CORDON_ARTIFACTS";

/// Something went wrong collecting artifacts. Files moved before the error
/// stay in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The template is malformed.
    #[error("invalid artifact path template `{template}`: {reason}")]
    Template {
        /// The template as given.
        template: String,
        /// What is wrong.
        reason: String,
    },
    /// A placeholder's value would make an unsafe path.
    #[error("artifact path template `{template}` expands to `{expanded}`, which {reason}")]
    Expand {
        /// The template.
        template: String,
        /// What it expanded to.
        expanded: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The run's artifact folder is a symbolic link.
    #[error("artifact folder {} is a symbolic link; refusing to follow it", path.display())]
    SourceIsSymlink {
        /// The folder.
        path: PathBuf,
    },
    /// A folder could not be listed.
    #[error("cannot read artifact folder {}", path.display())]
    ReadDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A store folder could not be created.
    #[error("cannot create artifact store folder {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A folder on the way to the destination is a symbolic link, or not
    /// a folder: someone (a sandbox whose grants reached the store) put it
    /// there to redirect the files.
    #[error("artifact store path {} is a symbolic link or not a folder; refusing to write through it", path.display())]
    LinkInStore {
        /// The path in the store.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The store's root is reached through a symbolic link that this user
    /// may re-point (its folder is writable): so could a run whose grants
    /// cover that folder, sending the next run's files anywhere.
    #[error(
        "the artifact store {} is reached through the symbolic link {} (to {}), which sits in a folder this user can write: a run granted that folder could re-point it and have cordon store files wherever it leads",
        root.display(), link.display(), target.display()
    )]
    StoreThroughLink {
        /// The store's root as given.
        root: PathBuf,
        /// The link on its path.
        link: PathBuf,
        /// Where the link leads now.
        target: PathBuf,
        /// The store's root with its links resolved, when it exists.
        resolved: Option<PathBuf>,
    },
    /// The destination is already taken (a reused request id?).
    #[error("artifact {} already exists in the store", path.display())]
    Exists {
        /// The destination.
        path: PathBuf,
    },
    /// A file could not be moved.
    #[error("cannot move artifact {} to {}", from.display(), to.display())]
    Move {
        /// The source file.
        from: PathBuf,
        /// The destination.
        to: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl ArtifactError {
    /// A suggestion for the user, where there is one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ArtifactError::Template { .. } => Some(
                "use `/`-separated parts with the placeholders {plugin}, {version}, {handler}, {request_id}, {tenant}",
            ),
            ArtifactError::Exists { .. } => Some("each run needs its own folder: put {request_id} in the template"),
            ArtifactError::StoreThroughLink { .. } => Some(
                "give the store's real path (--artifact-store, CORDON_ARTIFACT_STORE; the folder the link leads to), or replace the link by that folder",
            ),
            ArtifactError::LinkInStore { .. } => Some(
                "cordon never writes through a link below the store's root: remove it, and keep the store out of every run's grants",
            ),
            _ => None,
        }
    }
}

/// The result type of this module.
pub type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// A placeholder of a [`Template`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placeholder {
    /// `{plugin}`: the plugin id, `@scope/name` (two folders).
    Plugin,
    /// `{version}`.
    Version,
    /// `{handler}`.
    Handler,
    /// `{request_id}`.
    RequestId,
    /// `{tenant}`: an error when the run has none.
    Tenant,
}

impl Placeholder {
    const ALL: &'static [(&'static str, Placeholder)] = &[
        ("plugin", Placeholder::Plugin),
        ("version", Placeholder::Version),
        ("handler", Placeholder::Handler),
        ("request_id", Placeholder::RequestId),
        ("tenant", Placeholder::Tenant),
    ];
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Placeholder),
}

/// A store layout such as [`DEFAULT_TEMPLATE`]: `/`-separated, relative,
/// with no `.` or `..` parts and only known placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    raw: String,
    parts: Vec<Part>,
}

impl Default for Template {
    fn default() -> Self {
        DEFAULT_TEMPLATE.parse().expect("the default template is valid")
    }
}

impl FromStr for Template {
    type Err = ArtifactError;

    fn from_str(raw: &str) -> Result<Template> {
        let bad = |reason: String| ArtifactError::Template { template: raw.to_owned(), reason };
        if raw.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if raw.starts_with('/') {
            return Err(bad("it must be relative to the store".into()));
        }
        if raw.contains('\0') {
            return Err(bad("it contains a NUL character".into()));
        }
        for segment in raw.split('/') {
            match segment {
                "" => return Err(bad("it has an empty part (`//` or a trailing `/`)".into())),
                "." | ".." => return Err(bad(format!("`{segment}` parts are not allowed"))),
                _ => {}
            }
        }
        let mut parts = Vec::new();
        let mut rest = raw;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    rest = "";
                }
                Some(i) if rest.as_bytes()[i] == b'}' => return Err(bad("unmatched `}`".into())),
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].to_owned()));
                    }
                    let close = rest[i..].find('}').ok_or_else(|| bad("unclosed `{`".into()))? + i;
                    let name = &rest[i + 1..close];
                    let var = Placeholder::ALL
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| *v)
                        .ok_or_else(|| bad(format!("unknown placeholder `{{{name}}}`")))?;
                    parts.push(Part::Var(var));
                    rest = &rest[close + 1..];
                }
            }
        }
        Ok(Template { raw: raw.to_owned(), parts })
    }
}

/// The values of a [`Template`]'s placeholders for one run.
#[derive(Clone, Debug, Default)]
pub struct TemplateVars {
    /// `{plugin}`.
    pub plugin: String,
    /// `{version}`.
    pub version: String,
    /// `{handler}`.
    pub handler: String,
    /// `{request_id}`.
    pub request_id: String,
    /// `{tenant}`.
    pub tenant: Option<String>,
}

impl Template {
    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The relative folder for one run. Fails when a value is empty or
    /// would make the path absolute or climb (`..`).
    pub fn expand(&self, vars: &TemplateVars) -> Result<PathBuf> {
        let mut out = String::new();
        for part in &self.parts {
            let value = match part {
                Part::Literal(s) => s.as_str(),
                Part::Var(Placeholder::Plugin) => &vars.plugin,
                Part::Var(Placeholder::Version) => &vars.version,
                Part::Var(Placeholder::Handler) => &vars.handler,
                Part::Var(Placeholder::RequestId) => &vars.request_id,
                Part::Var(Placeholder::Tenant) => vars.tenant.as_deref().unwrap_or(""),
            };
            out.push_str(value);
        }
        let bad = |reason| ArtifactError::Expand { template: self.raw.clone(), expanded: out.clone(), reason };
        if out.contains('\0') {
            return Err(bad("contains a NUL character"));
        }
        if out.starts_with('/') {
            return Err(bad("is absolute"));
        }
        if out.split('/').any(|s| s.is_empty()) {
            return Err(bad("has an empty part (a placeholder without a value?)"));
        }
        if !Path::new(&out).components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad("has `.` or `..` parts"));
        }
        Ok(PathBuf::from(out))
    }
}

/// Caps on what one run may store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CollectLimits {
    /// Larger files are skipped. Default 64 MiB.
    pub max_file_bytes: u64,
    /// Files that would take the total past this are skipped, and so is
    /// everything after them. Default 256 MiB.
    pub max_total_bytes: u64,
    /// At most this many files are stored. Default 1000.
    pub max_files: usize,
}

impl Default for CollectLimits {
    fn default() -> Self {
        CollectLimits { max_file_bytes: 64 << 20, max_total_bytes: 256 << 20, max_files: 1000 }
    }
}

/// One stored file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// Relative to the artifact folder, `/`-separated.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    /// Where it is now.
    pub stored_at: PathBuf,
}

/// Why an entry was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
#[non_exhaustive]
pub enum SkipReason {
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket or device node.
    NotRegularFile,
    /// A name that is not UTF-8, which the result's JSON cannot carry
    /// faithfully.
    NonUtf8Name,
    /// Over [`CollectLimits::max_file_bytes`].
    FileTooLarge {
        /// Its size.
        size: u64,
    },
    /// Storing it would pass [`CollectLimits::max_total_bytes`] or
    /// [`CollectLimits::max_files`]; collection stopped here.
    TotalLimit,
}

/// An entry that was not stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Relative to the artifact folder (lossy for non-UTF-8 names).
    pub path: String,
    /// Why.
    #[serde(flatten)]
    pub reason: SkipReason,
}

/// What [`collect`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Collected {
    /// The run's folder in the store (created only if something was stored).
    pub dir: PathBuf,
    /// Stored files, sorted by path.
    pub artifacts: Vec<Artifact>,
    /// Entries left behind, sorted by path.
    pub skipped: Vec<Skipped>,
}

/// Moves every regular file under `src_dir` into
/// `store_root/<template expanded with vars>/`, keeping relative paths; see
/// the module docs.
pub fn collect(
    src_dir: &Path,
    store_root: &Path,
    template: &Template,
    vars: &TemplateVars,
    limits: &CollectLimits,
) -> Result<Collected> {
    let rel_dir = template.expand(vars)?;
    let dir = store_root.join(&rel_dir);
    let (files, mut skipped) = walk(src_dir)?;
    let mut out = Collected { dir, artifacts: Vec::new(), skipped: Vec::new() };
    // The run's folder in the store, opened at the first file stored, and
    // the run's artifact folder.
    let mut run_folder: Option<OwnedFd> = None;
    let mut src_root: Option<OwnedFd> = None;
    let mut total: u64 = 0;
    let mut stopped = false;
    for (rel, size) in files {
        let reason = if size > limits.max_file_bytes {
            Some(SkipReason::FileTooLarge { size })
        } else if stopped
            || out.artifacts.len() >= limits.max_files
            || total.saturating_add(size) > limits.max_total_bytes
        {
            stopped = true;
            Some(SkipReason::TotalLimit)
        } else {
            None
        };
        if let Some(reason) = reason {
            skipped.push(Skipped { path: rel, reason });
            continue;
        }
        let from = src_dir.join(&rel);
        let to = out.dir.join(&rel);
        let src = match &src_root {
            Some(fd) => fd,
            None => src_root.insert(open_source_root(src_dir)?),
        };
        let run = match &run_folder {
            Some(fd) => fd,
            None => run_folder.insert(open_run_folder(store_root, &rel_dir)?),
        };
        let rel_path = Path::new(&rel);
        let parent = match rel_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => Some(descend(run.as_fd(), p, &out.dir)?),
            None => None,
        };
        let parent_fd = parent.as_ref().map_or(run.as_fd(), |fd| fd.as_fd());
        let name = rel_path.file_name().map(Path::new).unwrap_or(rel_path);
        let (size, sha256) = move_file(src.as_fd(), rel_path, &from, parent_fd, name, &to)?;
        total = total.saturating_add(size);
        out.artifacts.push(Artifact { path: rel, size, sha256, stored_at: to });
    }
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    out.skipped = skipped;
    Ok(out)
}

/// Regular files (relative path, size) and skipped entries.
type Walked = (Vec<(String, u64)>, Vec<Skipped>);

/// Regular files (relative path, size) and skipped entries under `root`,
/// both sorted, found without following any symbolic link.
fn walk(root: &Path) -> Result<Walked> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ArtifactError::ReadDir { path, source }
    };
    let meta = fs::symlink_metadata(root).map_err(read_err(root))?;
    if meta.file_type().is_symlink() {
        return Err(ArtifactError::SourceIsSymlink { path: root.to_owned() });
    }
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    // An explicit stack: a handler can nest folders deeply.
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let abs = root.join(&rel_dir);
        for entry in fs::read_dir(&abs).map_err(read_err(&abs))? {
            let entry = entry.map_err(read_err(&abs))?;
            let rel = rel_dir.join(entry.file_name());
            // DirEntry::file_type does not follow links (lstat / d_type).
            let ty = entry.file_type().map_err(read_err(&abs))?;
            let Some(name) = rel.to_str().map(str::to_owned) else {
                skipped.push(Skipped { path: rel.to_string_lossy().into_owned(), reason: SkipReason::NonUtf8Name });
                continue;
            };
            if ty.is_symlink() {
                skipped.push(Skipped { path: name, reason: SkipReason::Symlink });
            } else if ty.is_dir() {
                stack.push(rel);
            } else if ty.is_file() {
                let size = entry.metadata().map_err(read_err(&abs))?.len();
                files.push((name, size));
            } else {
                skipped.push(Skipped { path: name, reason: SkipReason::NotRegularFile });
            }
        }
    }
    files.sort();
    Ok((files, skipped))
}

/// The store's root (created when missing, as the operator spelled it),
/// then the run's folder `rel` below it, each component made and opened
/// without following a link: the root is walked once, by descriptors
/// ([`open_store_root`]), and the folders below it are made from the
/// descriptor that walk ends with. No path is looked up twice, so nothing
/// re-pointed between a check and an open can redirect the files.
fn open_run_folder(store_root: &Path, rel: &Path) -> Result<OwnedFd> {
    let root = open_store_root(store_root, Missing::Make)?.ok_or_else(|| ArtifactError::CreateDir {
        path: store_root.to_owned(),
        source: io::ErrorKind::NotFound.into(),
    })?;
    descend(root.as_fd(), rel, store_root)
}

/// What [`open_store_root`] does with a component of the root that is not
/// there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Stops: the rest would be made as folders (a check before a run).
    Stop,
    /// Makes it (`mkdirat`, `0755`) and goes on.
    Make,
}

/// Most links followed on the way to a store's root (the kernel's own
/// limit): a loop ends here.
const MAX_LINKS: usize = 40;

/// Walks the path of a store's root from `/` by descriptors, one component
/// at a time: each is opened `O_PATH | O_NOFOLLOW` in the folder the walk
/// holds (`openat2`, `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so every
/// step is a look at the very inode the walk then stands on. A component
/// that is a symbolic link is refused when this user can write the folder
/// holding it (a sandbox granted that folder could re-point it:
/// [`ArtifactError::StoreThroughLink`]); otherwise its target is walked the
/// same way, its own links included. `..` goes back to the folder the walk
/// came from. Returns the root's descriptor, or `None` when a component is
/// missing and `missing` is [`Missing::Stop`].
fn open_store_root(root: &Path, missing: Missing) -> Result<Option<OwnedFd>> {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
    let err = |path: &Path, source| ArtifactError::CreateDir { path: path.to_owned(), source };
    let slash = || sys::open_path_without_links(Path::new("/")).map_err(|e| err(Path::new("/"), e));
    // The folders walked so far, `/` first, each with the path it was
    // reached by (for messages).
    let mut walked: Vec<(OwnedFd, PathBuf)> = vec![(slash()?, PathBuf::from("/"))];
    // What is left to walk, `..` included.
    let mut left: VecDeque<OsString> = VecDeque::new();
    let push_front = |left: &mut VecDeque<OsString>, path: &Path| -> bool {
        let mut absolute = false;
        let parts: Vec<OsString> = path
            .components()
            .filter_map(|c| match c {
                Component::RootDir => {
                    absolute = true;
                    None
                }
                Component::Normal(n) => Some(n.to_owned()),
                Component::ParentDir => Some(OsString::from("..")),
                Component::CurDir | Component::Prefix(_) => None,
            })
            .collect();
        for p in parts.into_iter().rev() {
            left.push_front(p);
        }
        absolute
    };
    push_front(&mut left, &absolute);
    let mut links = 0;
    let mut made = 0;
    while let Some(name) = left.pop_front() {
        if name == ".." {
            if walked.len() > 1 {
                walked.pop();
            }
            continue;
        }
        let (dir, at) = walked.last().expect("the walk holds / at least");
        let path = at.join(&name);
        let fd = match sys::open_beneath(dir.as_fd(), Path::new(&name), libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if missing == Missing::Stop {
                    return Ok(None);
                }
                // A folder that another process makes (or swaps) at the
                // same time is looked at again; a walk that keeps losing
                // that race gives up.
                made += 1;
                match sys::mkdir_at(dir.as_fd(), Path::new(&name), 0o755) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) && made < 8 => {}
                    Err(e) => return Err(err(&path, e)),
                }
                left.push_front(name);
                continue;
            }
            Err(e) => return Err(err(&path, e)),
        };
        let meta = sys::metadata(fd.as_fd()).map_err(|e| err(&path, e))?;
        let ty = meta.file_type();
        if ty.is_dir() {
            walked.push((fd, path));
            continue;
        }
        if !ty.is_symlink() {
            return Err(err(&path, io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        let target = sys::read_link_at(dir.as_fd(), Path::new(&name)).map_err(|e| err(&path, e))?;
        if sys::can_write_fd(dir.as_fd()) {
            return Err(ArtifactError::StoreThroughLink {
                root: root.to_owned(),
                link: path,
                target,
                resolved: fs::canonicalize(root).ok(),
            });
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(err(&path, io::Error::from_raw_os_error(libc::ELOOP)));
        }
        // Followed: its target is walked in its place, from `/` or from
        // the folder holding the link.
        if push_front(&mut left, &target) {
            walked.truncate(1);
        }
    }
    Ok(walked.pop().map(|(fd, _)| fd))
}

/// Makes and opens each folder of `rel` below `dir` (known as `shown`),
/// refusing a component that is a link or not a folder.
fn descend(dir: BorrowedFd<'_>, rel: &Path, shown: &Path) -> Result<OwnedFd> {
    let mut at: Option<OwnedFd> = None;
    let mut path = shown.to_owned();
    for part in rel.components() {
        let Component::Normal(name) = part else {
            return Err(ArtifactError::LinkInStore {
                path: path.join(rel),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            });
        };
        let name = Path::new(name);
        path.push(name);
        let cur = at.as_ref().map_or(dir, |fd| fd.as_fd());
        match sys::mkdir_at(cur, name, 0o755) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(source) => return Err(ArtifactError::CreateDir { path, source }),
        }
        let next = sys::open_beneath(cur, name, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
            .map_err(|source| ArtifactError::LinkInStore { path: path.clone(), source })?;
        at = Some(next);
    }
    match at {
        Some(fd) => Ok(fd),
        None => dir.try_clone_to_owned().map_err(|source| ArtifactError::CreateDir { path, source }),
    }
}

/// Checks the path of a store's root before any run uses it: no component
/// of it may be a symbolic link in a folder this user can write (a link
/// there a sandbox granted that folder could re-point between runs, and the
/// next collection would store files wherever it leads). Links in folders
/// this user cannot write (`/home` -> `/var/home` in a root-owned `/`, for
/// a user other than root) cannot be re-pointed by any run of this user and
/// are followed (their targets checked the same way). A root that is itself
/// a link is refused the same way, so the operator names the real folder
/// once instead of cordon resolving it again for every run. Components that
/// do not exist yet are not looked at (they are made as folders, never
/// links). The same walk as the collection's own ([`collect`] opens the
/// root by it, so a link swapped in after this check is refused there
/// too); other errors (a folder this user cannot search) are left to the
/// collection to report.
pub fn check_store_root(root: &Path) -> Result<()> {
    match open_store_root(root, Missing::Stop) {
        Err(e @ ArtifactError::StoreThroughLink { .. }) => Err(e),
        _ => Ok(()),
    }
}

/// The run's artifact folder, opened without following a link.
fn open_source_root(src_dir: &Path) -> Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(src_dir)
        .map(OwnedFd::from)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => ArtifactError::SourceIsSymlink { path: src_dir.to_owned() },
            _ => ArtifactError::ReadDir { path: src_dir.to_owned(), source },
        })
}

/// Copies one file, `rel` below the artifact folder `src` (shown as
/// `from`), into a new file `name` of `dir` (shown as `to`), then removes
/// it, returning its size and SHA-256 (of exactly what was stored).
///
/// Always a copy into a new inode, never a rename, even on one
/// filesystem: the store must never hold an inode that anything else
/// still reaches, and a renamed file could have another name (a hard link
/// the run made from a folder it may write, or a later run may) or be open
/// in another process (a descriptor the run passed on), through which the
/// stored artifact would change after its hash was recorded. The source
/// is opened below `src` without following a link on the way
/// (`RESOLVE_NO_SYMLINKS`), non-blocking (a FIFO put in its place makes
/// no reader wait) and must be a regular file; the destination is created
/// `O_EXCL`, never replacing or following an entry that is there.
fn move_file(
    src: BorrowedFd<'_>,
    rel: &Path,
    from: &Path,
    dir: BorrowedFd<'_>,
    name: &Path,
    to: &Path,
) -> Result<(u64, String)> {
    let move_err = |source| ArtifactError::Move { from: from.to_owned(), to: to.to_owned(), source };
    let mut file = File::from(
        sys::open_beneath(src, rel, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0).map_err(move_err)?,
    );
    if !file.metadata().map_err(move_err)?.is_file() {
        return Err(move_err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file any more")));
    }
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    let mut dst = match sys::open_beneath(dir, name, flags, 0o644) {
        Ok(fd) => File::from(fd),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(ArtifactError::Exists { path: to.to_owned() }),
        Err(e) => return Err(move_err(e)),
    };
    let copied = hash_copy(&mut file, &mut dst)
        .and_then(|done| dst.flush().map(|()| done))
        // The store is the operator's: no set-id or exec bits, whatever the umask.
        .and_then(|done| dst.set_permissions(fs::Permissions::from_mode(0o644)).map(|()| done));
    let done = match copied {
        Ok(done) => done,
        Err(e) => {
            // Leave no half-copied artifact behind.
            let _ = sys::unlink_at(dir, name);
            return Err(move_err(e));
        }
    };
    // The copy is what counts; the run folder goes with everything in it.
    let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
    let removed = match parent {
        Some(p) => sys::open_beneath(src, p, libc::O_PATH | libc::O_DIRECTORY, 0)
            .and_then(|fd| sys::unlink_at(fd.as_fd(), rel.file_name().map(Path::new).unwrap_or(rel))),
        None => sys::unlink_at(src, rel),
    };
    let _ = removed;
    Ok(done)
}

fn hash_copy(src: &mut File, dst: &mut impl Write) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size: u64 = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

/// Whether two paths are on the same filesystem (for tests and callers
/// that want to predict copy costs).
pub fn same_filesystem(a: &Path, b: &Path) -> io::Result<bool> {
    Ok(fs::metadata(a)?.dev() == fs::metadata(b)?.dev())
}

#[cfg(test)]
mod tests;
