//! The files under `CORDON_HOME` and how they are written.
//!
//! ```text
//! CORDON_HOME/
//!   registry.lock          the lock file (JSON): what is installed, see [`LockFile`]
//!   trust.json             trusted keys (see `trust`)
//!   verify-cache.json      file stamps already hashed (see `verify`); a cache, never a source of truth
//!   plugins/@scope/name/<version>-<tree>/        an installed plugin's files
//!   plugins/@scope/name/<version>-<tree>.tree    its tree listing (authenticated by the tree hash)
//!   staging/<unique>/      packages being unpacked
//! ```
//!
//! # Consistency
//!
//! The lock file is the only source of truth: a plugin folder it does not
//! name is garbage, removed by the next install or uninstall. Every file
//! cordon replaces here is written with [`write_atomic`] (temporary file,
//! fsync, rename, fsync of the folder), and every change is made while
//! holding [`WriteLock`], an exclusive `flock` on `CORDON_HOME` itself. So two
//! concurrent installs are serialised (both land), readers never see a torn
//! file, and a process killed at any point (SIGKILL included) leaves the
//! old lock file or the new one, each naming complete plugin folders: a
//! folder is complete and synced before the lock file names it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::minisign::KeyId;
use crate::permissions::Permissions;
use crate::tree::Digest256;

/// The lock file's name.
pub const LOCK_FILE: &str = "registry.lock";
/// The trust store's name.
pub const TRUST_FILE: &str = "trust.json";
/// The verification cache's name.
pub const CACHE_FILE: &str = "verify-cache.json";
/// Installed plugins live below this folder.
pub const PLUGINS_DIR: &str = "plugins";
/// Packages are unpacked below this folder.
pub const STAGING_DIR: &str = "staging";

/// Lock and trust files larger than this are refused (16 MiB).
pub const MAX_STATE_BYTES: u64 = 16 << 20;

/// A plugin's signature state (DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A valid signature by a trusted, in-scope, unexpired key.
    Signed,
    /// No signature; runs only when installed with `--allow-unsigned`.
    Unsigned,
    /// A bad signature, or an unknown, expired or out-of-scope key, or a
    /// statement that does not match. Never runs.
    Invalid,
    /// The installed files differ from the signed tree. Never runs.
    Modified,
}

impl State {
    /// The name DESIGN.md gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Signed => "signed",
            State::Unsigned => "unsigned",
            State::Invalid => "invalid",
            State::Modified => "modified",
        }
    }
}

/// One installed plugin, as the lock file records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Installed {
    /// `@scope/name`.
    pub id: String,
    /// The installed version.
    pub version: semver::Version,
    /// The SHA-256 of the package it came from.
    pub package_sha256: Digest256,
    /// The tree hash its signature covers.
    pub tree_hash: Digest256,
    /// The key that signed it; `None` for unsigned plugins.
    pub signer_key_id: Option<KeyId>,
    /// That key's name in the trust store at install time.
    pub signer: Option<String>,
    /// Its state when it was installed (`signed` or `unsigned`).
    pub state: State,
    /// Whether it was installed with `--allow-unsigned`.
    pub allow_unsigned: bool,
    /// Whether it runs (`cordon plugin enable|disable`).
    pub enabled: bool,
    /// The digest of the permissions the operator approved.
    pub approved_permissions: Digest256,
    /// Those permissions, for the diff of the next update.
    pub permissions: Permissions,
    /// The highest version of this plugin ever installed here.
    pub highest_version: semver::Version,
    /// Its folder, relative to `CORDON_HOME`.
    pub dir: String,
    /// The minisign signature file's text.
    pub signature: Option<String>,
    /// When it was installed (RFC 3339).
    pub installed_at: String,
}

/// The lock file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LockFile {
    /// Format version: 1.
    pub format: u32,
    /// Installed plugins by id.
    pub plugins: BTreeMap<String, Installed>,
    /// The highest version ever installed, by id; kept after uninstall so
    /// that uninstalling is no way around downgrade protection.
    pub highest_seen: BTreeMap<String, semver::Version>,
    /// The signer of the last version installed, by id; kept after
    /// uninstall so that uninstalling is no way around signer continuity
    /// (lock files written before it have none: the installed entry's
    /// signer stands in).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_signer: BTreeMap<String, Signer>,
}

/// Who signed an installed version: a trusted key, or nobody
/// (`--allow-unsigned`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signer {
    /// The key; `None` for an unsigned version.
    pub key_id: Option<KeyId>,
    /// That key's name in the trust store at install time.
    pub name: Option<String>,
    /// The version it signed.
    pub version: semver::Version,
}

impl Signer {
    /// Whether `other` is the same key (or both unsigned).
    pub fn same_key(&self, other: &Signer) -> bool {
        self.key_id == other.key_id
    }
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.name, &self.key_id) {
            (Some(n), Some(k)) => write!(f, "{n} ({k})"),
            (None, Some(k)) => write!(f, "{k}"),
            _ => f.write_str("unsigned"),
        }
    }
}

/// An exclusive `flock` on `CORDON_HOME`; released on drop.
#[derive(Debug)]
pub struct WriteLock {
    _file: File,
}

impl WriteLock {
    /// Waits for the lock.
    pub fn acquire(home: &Path) -> io::Result<WriteLock> {
        let file = File::open(home)?;
        file.lock()?;
        Ok(WriteLock { _file: file })
    }
}

/// Writes `bytes` to `path` so that a reader (or a process after a crash)
/// sees the old content or the new, never a mix: a temporary file in the
/// same folder, fsync, rename over `path`, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), unique()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsync of a folder, so that a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A number unique within this process.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    (u64::from(nanos) << 20) ^ N.fetch_add(1, Ordering::Relaxed)
}

/// Reads a JSON state file, at most [`MAX_STATE_BYTES`]. A missing file is
/// `None`.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, ReadStateError> {
    use std::io::Read;
    let err = |reason: String| ReadStateError { path: path.to_owned(), reason };
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let mut bytes = Vec::new();
    f.take(MAX_STATE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(err(format!("it is larger than {MAX_STATE_BYTES} bytes")));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| err(e.to_string()))
}

/// A state file that cannot be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot read {}: {reason}", path.display())]
pub struct ReadStateError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Serialises a state file for [`write_atomic`].
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(value).expect("plain data serialises");
    v.push(b'\n');
    v
}

/// The folder of an installed plugin, relative to `CORDON_HOME`.
pub fn plugin_dir(id: &str, version: &semver::Version, tree: &Digest256) -> String {
    format!("{PLUGINS_DIR}/{id}/{version}-{}", &tree.hex()[..16])
}

/// The tree listing beside a plugin folder.
pub fn listing_path(home: &Path, dir: &str) -> PathBuf {
    home.join(format!("{dir}.tree"))
}

/// Removes what the lock file does not name below `plugins/`, and staging
/// folders no live process holds. Call with the [`WriteLock`] held.
pub fn sweep(home: &Path, lock: &LockFile) {
    let keep: Vec<PathBuf> =
        lock.plugins.values().flat_map(|e| [home.join(&e.dir), listing_path(home, &e.dir)]).collect();
    let plugins = home.join(PLUGINS_DIR);
    // plugins/@scope/name/<entry>
    for scope in read_dir(&plugins) {
        for name in read_dir(&scope) {
            for entry in read_dir(&name) {
                if !keep.contains(&entry) {
                    let _ = remove_any(&entry);
                }
            }
            let _ = std::fs::remove_dir(&name);
        }
        let _ = std::fs::remove_dir(&scope);
    }
    for staged in read_dir(&home.join(STAGING_DIR)) {
        if let Ok(f) = File::open(&staged) {
            if f.try_lock().is_ok() {
                let _ = remove_any(&staged);
            }
        }
    }
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Removes a file or a folder tree (without following links).
pub fn remove_any(p: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A staging folder for one package, flocked while it lives (so
/// [`sweep`] leaves it alone) and removed on drop.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
    _lock: File,
}

impl Staging {
    /// Creates `CORDON_HOME/staging/<unique>` (mode 0700).
    pub fn create(home: &Path) -> io::Result<Staging> {
        use std::os::unix::fs::DirBuilderExt;
        let root = home.join(STAGING_DIR);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&root)?;
        let path = root.join(format!("{}-{}", std::process::id(), unique()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let lock = File::open(&path)?;
        lock.lock()?;
        Ok(Staging { path, _lock: lock })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The current time as RFC 3339 (seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
