//! The tree of a plugin: every file's path, mode and SHA-256, and the tree
//! hash over them, which is what a signature's statement names.
//!
//! # The listing
//!
//! A [`Tree`] has one canonical text, its *listing*: a header line, then one
//! line per directory and per file, sorted by path (bytewise):
//!
//! ```text
//! cordon-tree v1
//! d 755 - messages
//! f 644 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 messages/hello.txt
//! f 755 4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce greet.sh
//! ```
//!
//! The tree hash is `sha256:` and the SHA-256 of the listing. The listing
//! therefore authenticates itself: a copy stored anywhere is trusted once it
//! hashes to the tree hash that the lock file records.
//!
//! # Paths
//!
//! [`check_path`] is the one definition of a path a package may hold, used
//! when packing, unpacking and verifying: relative, `/`-separated, UTF-8
//! without control characters, no `.` or `..` components, at most
//! [`MAX_COMPONENT_BYTES`] per component, [`MAX_PATH_BYTES`] in all and
//! [`MAX_DEPTH`] components deep. Modes are normalised to `644` and `755`
//! for files (by the owner's execute bit) and `755` for directories.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The longest path component.
pub const MAX_COMPONENT_BYTES: usize = 255;
/// The longest path.
pub const MAX_PATH_BYTES: usize = 1024;
/// The deepest path, in components.
pub const MAX_DEPTH: usize = 32;

const HEADER: &str = "cordon-tree v1";

/// A SHA-256 digest, shown as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest256(pub [u8; 32]);

impl Digest256 {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest256 {
        Digest256(Sha256::digest(bytes).into())
    }

    /// Lower-case hex, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses `sha256:<64 hex digits>` (or the bare hex).
    pub fn parse(s: &str) -> Option<Digest256> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Digest256(out))
    }
}

impl fmt::Display for Digest256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl serde::Serialize for Digest256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest256::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not sha256:<64 hex digits>")))
    }
}

/// Whether a file is executable (mode `755`) or not (`644`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executable {
    /// `755`.
    Yes,
    /// `644`.
    No,
}

impl Executable {
    /// From a file's permission bits: the owner's execute bit decides.
    pub fn from_mode(mode: u32) -> Executable {
        if mode & 0o100 != 0 {
            Executable::Yes
        } else {
            Executable::No
        }
    }

    /// The normalised permission bits.
    pub fn mode(self) -> u32 {
        match self {
            Executable::Yes => 0o755,
            Executable::No => 0o644,
        }
    }
}

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory (mode `755`).
    Dir,
    /// A regular file.
    File {
        /// Its mode.
        executable: Executable,
        /// Its content's SHA-256.
        sha256: Digest256,
    },
}

/// Why a path cannot be in a package.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathProblem {
    /// Empty.
    #[error("the path is empty")]
    Empty,
    /// Starts with `/`.
    #[error("it is absolute")]
    Absolute,
    /// Has a `..` component.
    #[error("it climbs out of the package with `..`")]
    ParentDir,
    /// Has an empty or `.` component.
    #[error("it has an empty or `.` component")]
    EmptyComponent,
    /// Not UTF-8, or has a control character or a backslash.
    #[error("it is not UTF-8 text without control characters")]
    Characters,
    /// A component longer than [`MAX_COMPONENT_BYTES`].
    #[error("a component is longer than {MAX_COMPONENT_BYTES} bytes")]
    ComponentTooLong,
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("it is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    /// Deeper than [`MAX_DEPTH`].
    #[error("it is more than {MAX_DEPTH} folders deep")]
    TooDeep,
}

/// Checks a package path (see the module docs). `raw` is the path as
/// bytes; on success it is returned as text.
pub fn check_path(raw: &[u8]) -> Result<&str, PathProblem> {
    if raw.is_empty() {
        return Err(PathProblem::Empty);
    }
    if raw[0] == b'/' {
        return Err(PathProblem::Absolute);
    }
    let text = std::str::from_utf8(raw).map_err(|_| PathProblem::Characters)?;
    let mut depth = 0;
    for part in text.split('/') {
        match part {
            ".." => return Err(PathProblem::ParentDir),
            "" | "." => return Err(PathProblem::EmptyComponent),
            _ => {}
        }
        if part.len() > MAX_COMPONENT_BYTES {
            return Err(PathProblem::ComponentTooLong);
        }
        depth += 1;
    }
    if text.chars().any(|c| c.is_control() || c == '\\') {
        return Err(PathProblem::Characters);
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathProblem::TooLong);
    }
    if depth > MAX_DEPTH {
        return Err(PathProblem::TooDeep);
    }
    Ok(text)
}

/// A plugin's tree: its entries by path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

/// A listing that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("line {line} of the tree listing: {reason}")]
pub struct ListingError {
    /// 1-based.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds an entry; the path must pass [`check_path`]. Returns the entry
    /// it replaced, if any.
    pub fn insert(&mut self, path: String, entry: Entry) -> Option<Entry> {
        self.entries.insert(path, entry)
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Entries in listing order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// How many files (directories not counted).
    pub fn file_count(&self) -> usize {
        self.entries.values().filter(|e| matches!(e, Entry::File { .. })).count()
    }

    /// The canonical listing (see the module docs).
    pub fn listing(&self) -> String {
        let mut out = String::with_capacity(64 + self.entries.len() * 96);
        out.push_str(HEADER);
        out.push('\n');
        for (path, e) in &self.entries {
            match e {
                Entry::Dir => out.push_str(&format!("d 755 - {path}\n")),
                Entry::File { executable, sha256 } => {
                    out.push_str(&format!("f {:o} {} {path}\n", executable.mode(), sha256.hex()))
                }
            }
        }
        out
    }

    /// The tree hash: the SHA-256 of [`Tree::listing`].
    pub fn hash(&self) -> Digest256 {
        Digest256::of(self.listing().as_bytes())
    }

    /// Parses a listing. It must be canonical: re-listing the result gives
    /// the same text, so its hash is the tree hash.
    pub fn parse_listing(text: &str) -> Result<Tree, ListingError> {
        let err = |line: usize, reason: &str| ListingError { line, reason: reason.to_owned() };
        let mut lines = text.split_inclusive('\n').enumerate();
        match lines.next() {
            Some((_, l)) if l == format!("{HEADER}\n") => {}
            _ => return Err(err(1, "the first line is not `cordon-tree v1`")),
        }
        let mut tree = Tree::new();
        for (i, line) in lines {
            let n = i + 1;
            let line = line.strip_suffix('\n').ok_or_else(|| err(n, "the last line has no newline"))?;
            let mut parts = line.splitn(4, ' ');
            let (kind, mode, hash, path) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(k), Some(m), Some(h), Some(p)) => (k, m, h, p),
                _ => return Err(err(n, "expected `KIND MODE HASH PATH`")),
            };
            check_path(path.as_bytes()).map_err(|e| err(n, &format!("path `{path}`: {e}")))?;
            let entry = match (kind, mode, hash) {
                ("d", "755", "-") => Entry::Dir,
                ("f", "644" | "755", h) => Entry::File {
                    executable: if mode == "755" { Executable::Yes } else { Executable::No },
                    sha256: Digest256::parse(h).ok_or_else(|| err(n, "the hash is not 64 hex digits"))?,
                },
                _ => return Err(err(n, "unknown kind or mode")),
            };
            if let Some((last, _)) = tree.entries.last_key_value() {
                if last.as_str() >= path {
                    return Err(err(n, "entries are not sorted or repeat a path"));
                }
            }
            tree.insert(path.to_owned(), entry);
        }
        Ok(tree)
    }
}

/// Hashes a reader's content.
pub fn sha256_reader(mut r: impl Read) -> std::io::Result<(Digest256, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((Digest256(h.finalize().into()), n))
}

/// What a folder holds, as found on disk (links not followed).
#[derive(Clone, Debug)]
pub struct Found {
    /// The package path.
    pub path: String,
    /// The absolute path on disk.
    pub abs: PathBuf,
    /// Its metadata (`lstat`).
    pub meta: std::fs::Metadata,
}

/// Why a folder cannot be scanned as a plugin tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// A folder or file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Something other than a regular file or a folder.
    #[error("{} is a {kind}; a plugin holds regular files and folders only", path.display())]
    Special {
        /// The path.
        path: PathBuf,
        /// `symbolic link`, `FIFO`, ...
        kind: &'static str,
    },
    /// A name a package cannot hold.
    #[error("{} cannot be in a package: {problem}", path.display())]
    Name {
        /// The path.
        path: PathBuf,
        /// Why.
        problem: PathProblem,
    },
}

/// Names the kind of a non-regular, non-directory file.
pub fn special_kind(ft: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() || ft.is_dir() {
        None
    } else if ft.is_symlink() {
        Some("symbolic link")
    } else if ft.is_fifo() {
        Some("FIFO")
    } else if ft.is_socket() {
        Some("socket")
    } else if ft.is_block_device() {
        Some("block device")
    } else if ft.is_char_device() {
        Some("character device")
    } else {
        Some("special file")
    }
}

/// Lists every entry below `root` (not `root` itself), sorted by package
/// path, without following links. `skip` names absolute paths to leave
/// out (the package being written, when it lies inside the folder).
pub fn scan(root: &Path, skip: &[PathBuf]) -> Result<Vec<Found>, ScanError> {
    let mut out = Vec::new();
    scan_into(root, "", skip, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn scan_into(dir: &Path, prefix: &str, skip: &[PathBuf], out: &mut Vec<Found>) -> Result<(), ScanError> {
    let read_err = |source| ScanError::Read { path: dir.to_owned(), source };
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(read_err)?.collect::<Result<_, _>>().map_err(read_err)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let abs = e.path();
        if skip.contains(&abs) {
            continue;
        }
        let name = e.file_name();
        use std::os::unix::ffi::OsStrExt;
        let rel = if prefix.is_empty() {
            name.as_bytes().to_vec()
        } else {
            [prefix.as_bytes(), b"/", name.as_bytes()].concat()
        };
        let path = check_path(&rel).map_err(|problem| ScanError::Name { path: abs.clone(), problem })?.to_owned();
        let meta = std::fs::symlink_metadata(&abs).map_err(|source| ScanError::Read { path: abs.clone(), source })?;
        if let Some(kind) = special_kind(meta.file_type()) {
            return Err(ScanError::Special { path: abs, kind });
        }
        let is_dir = meta.is_dir();
        out.push(Found { path: path.clone(), abs: abs.clone(), meta });
        if is_dir {
            scan_into(&abs, &path, skip, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_round_trips_and_is_canonical() {
        let mut t = Tree::new();
        t.insert("b.sh".into(), Entry::File { executable: Executable::Yes, sha256: Digest256::of(b"x") });
        t.insert("a".into(), Entry::Dir);
        t.insert("a/c d.txt".into(), Entry::File { executable: Executable::No, sha256: Digest256::of(b"y") });
        let text = t.listing();
        assert!(text.starts_with("cordon-tree v1\nd 755 - a\nf 644 "), "{text}");
        let back = Tree::parse_listing(&text).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.hash(), t.hash());
        let unsorted = "cordon-tree v1\nd 755 - b\nd 755 - a\n";
        assert!(Tree::parse_listing(unsorted).unwrap_err().reason.contains("sorted"));
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(check_path(b"a/b.txt"), Ok("a/b.txt"));
        assert_eq!(check_path(b"/etc/passwd"), Err(PathProblem::Absolute));
        assert_eq!(check_path(b"a/../../x"), Err(PathProblem::ParentDir));
        assert_eq!(check_path(b"./a"), Err(PathProblem::EmptyComponent));
        assert_eq!(check_path(b"a//b"), Err(PathProblem::EmptyComponent));
        assert_eq!(check_path(b"a\nb"), Err(PathProblem::Characters));
        assert_eq!(check_path(b"a\xffb"), Err(PathProblem::Characters));
        assert_eq!(check_path(&[b'a'; 256]), Err(PathProblem::ComponentTooLong));
        let long = vec!["abcdefghij"; 100].join("/");
        assert_eq!(check_path(long.as_bytes()), Err(PathProblem::TooLong));
        let deep = vec!["a"; 33].join("/");
        assert_eq!(check_path(deep.as_bytes()), Err(PathProblem::TooDeep));
    }
}
