//! Packages: a plugin folder as a reproducible `.tar.gz` ([`pack`]), and
//! the safe way back ([`unpack`]).
//!
//! # Reproducible
//!
//! [`pack`] writes the entries sorted by path, directories before what they
//! hold, with mtime 0, owner and group 0 and no names, modes `755` for
//! directories and executables and `644` for other files, GNU long-name
//! records for long paths, and a gzip header with mtime 0 and no file name.
//! Packing the same folder twice gives the same bytes (with the same
//! version of this crate; the compressed bytes may differ between
//! versions of the deflate library, which is why signatures cover the tree
//! hash, not the package's SHA-256). Anything but regular files and folders
//! (links, FIFOs, sockets, devices) is refused, and so is a name that
//! [`check_path`] refuses.
//!
//! # Hostile packages
//!
//! [`unpack`] treats the package as hostile. It writes only into the
//! staging folder it is given (fresh, created by the caller), never
//! through a link (it creates none and opens every file with `O_EXCL`), and
//! refuses, each with its own [`UnpackError`]: paths that are absolute,
//! climb out with `..` or are otherwise not [`check_path`]-clean, symbolic
//! and hard links, device nodes, FIFOs, setuid/setgid bits, an entry whose
//! data ends before its header's size, a corrupt header (what follows an
//! entry whose size is shorter than its data), duplicate entries, names
//! that collide when case is ignored, a file used as a folder, more than
//! [`MAX_FILES`] entries, a declared unpacked size over
//! max([`MIN_UNPACKED_CAP`], 20 × the package size) (Cargo's rule), a
//! decompressed stream larger than that (a gzip bomb), and data after the
//! gzip stream. On an error the caller removes the staging folder; nothing
//! else was touched.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use cordon_plugin::manifest::{Manifest, ManifestError, MANIFEST_FILE, MAX_MANIFEST_BYTES};
use sha2::{Digest, Sha256};

use crate::tree::{check_path, scan, Digest256, Entry, Executable, PathProblem, ScanError, Tree};

/// At most this many entries (files and folders) in a package.
pub const MAX_FILES: usize = 20_000;

/// The unpacked size cap is the larger of this and 20 times the package
/// size: 512 MiB.
pub const MIN_UNPACKED_CAP: u64 = 512 << 20;

/// Packages larger than this are refused before reading: 1 GiB.
pub const MAX_PACKAGE_BYTES: u64 = 1 << 30;

/// Headers, padding and long names may add this much to the decompressed
/// stream beyond the unpacked size cap before it counts as a gzip bomb.
const STREAM_SLACK: u64 = 64 << 20;

/// Why a folder cannot be packed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The folder's manifest is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The folder holds something a package cannot.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The package could not be written.
    #[error("cannot write the package {}", path.display())]
    Write {
        /// The package.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl PackError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            PackError::Manifest(e) => e.hint().map(str::to_owned),
            PackError::Scan(ScanError::Special { .. }) => {
                Some("replace links with copies of the files; packages hold regular files and folders only".into())
            }
            PackError::Scan(ScanError::Name { .. }) => Some("rename the file".into()),
            PackError::Write { .. } => Some("pass --out with a path in a folder you can write".into()),
            _ => None,
        }
    }
}

/// A written package.
#[derive(Clone, Debug)]
pub struct Packed {
    /// Where it was written.
    pub path: PathBuf,
    /// The SHA-256 of the `.tar.gz`.
    pub sha256: Digest256,
    /// The plugin's tree.
    pub tree: Tree,
}

/// The default package name for a manifest: `<name>-<version>.tar.gz`.
pub fn default_file_name(manifest: &Manifest) -> String {
    format!("{}-{}.tar.gz", manifest.id.name(), manifest.version)
}

/// A writer that hashes what passes through.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Packs the plugin folder `dir` (its `cordon.toml` must be valid) into
/// `out` (default: [`default_file_name`] in the current folder), replacing
/// it atomically. See the module docs for what makes it reproducible.
pub fn pack(dir: &Path, out: Option<&Path>) -> Result<Packed, PackError> {
    let manifest = Manifest::load(dir)?;
    let out = match out {
        Some(p) => p.to_owned(),
        None => PathBuf::from(default_file_name(&manifest)),
    };
    let out = std::path::absolute(&out).map_err(|source| PackError::Write { path: out.clone(), source })?;
    let write_err = |source| PackError::Write { path: out.clone(), source };
    let tmp = PathBuf::from(format!("{}.tmp-{}", out.display(), std::process::id()));
    let dir_abs = std::fs::canonicalize(dir).map_err(|source| PackError::Read { path: dir.to_owned(), source })?;
    let out_real =
        out.parent().and_then(|p| std::fs::canonicalize(p).ok()).map(|p| p.join(out.file_name().unwrap_or_default()));
    let tmp_real = out_real.as_ref().map(|o| PathBuf::from(format!("{}.tmp-{}", o.display(), std::process::id())));
    let skip: Vec<PathBuf> = out_real.into_iter().chain(tmp_real).collect();
    let found = scan(&dir_abs, &skip)?;
    let file = File::create(&tmp).map_err(write_err)?;
    let result = (|| -> Result<(Digest256, Tree), PackError> {
        let hashing = HashingWriter { inner: io::BufWriter::new(file), hash: Sha256::new() };
        let gz = flate2::GzBuilder::new().mtime(0).write(hashing, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        let mut tree = Tree::new();
        for f in &found {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            if f.meta.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, format!("{}/", f.path), io::empty()).map_err(write_err)?;
                tree.insert(f.path.clone(), Entry::Dir);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let bytes = std::fs::read(&f.abs).map_err(|source| PackError::Read { path: f.abs.clone(), source })?;
                let executable = Executable::from_mode(f.meta.permissions().mode());
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(executable.mode());
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, &f.path, bytes.as_slice()).map_err(write_err)?;
                tree.insert(f.path.clone(), Entry::File { executable, sha256: Digest256::of(&bytes) });
            }
        }
        let gz = tar.into_inner().map_err(write_err)?;
        let mut hashing = gz.finish().map_err(write_err)?;
        hashing.flush().map_err(write_err)?;
        let digest = Digest256(hashing.hash.finalize().into());
        let file = hashing.inner.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        Ok((digest, tree))
    })();
    match result {
        Ok((sha256, tree)) => {
            std::fs::rename(&tmp, &out).map_err(write_err)?;
            Ok(Packed { path: out, sha256, tree })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Why a package was refused. Each hostile construction has its own
/// variant; the store is untouched after any of them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The package file cannot be opened or read.
    #[error("cannot read the package {}", path.display())]
    Read {
        /// The package.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The package is larger than [`MAX_PACKAGE_BYTES`].
    #[error("the package is {size} bytes; at most {MAX_PACKAGE_BYTES} are accepted")]
    PackageTooLarge {
        /// Its size.
        size: u64,
    },
    /// Not gzip, or a corrupt gzip stream.
    #[error("the package is not a valid .tar.gz: {reason}")]
    NotGzip {
        /// What the decoder said.
        reason: String,
    },
    /// Bytes after the end of the gzip stream.
    #[error("the package has data after the end of its gzip stream")]
    TrailingData,
    /// A tar header is corrupt (often: the entry before it declared a
    /// smaller size than its data).
    #[error("corrupt tar header{}: {reason}", after.as_ref().map(|a| format!(" after entry `{a}`")).unwrap_or_default())]
    CorruptHeader {
        /// The entry before it.
        after: Option<String>,
        /// What the reader said.
        reason: String,
    },
    /// A path a package may not hold.
    #[error("entry `{path}` is refused: {problem}")]
    Path {
        /// The path, lossily decoded.
        path: String,
        /// Why.
        problem: PathProblem,
    },
    /// A symbolic link.
    #[error("entry `{path}` is a symbolic link (to `{target}`); packages hold regular files and folders only")]
    Symlink {
        /// The entry.
        path: String,
        /// Where it points.
        target: String,
    },
    /// A hard link.
    #[error("entry `{path}` is a hard link (to `{target}`); packages hold regular files and folders only")]
    HardLink {
        /// The entry.
        path: String,
        /// What it links to.
        target: String,
    },
    /// A character or block device.
    #[error("entry `{path}` is a {kind} device node; packages hold regular files and folders only")]
    Device {
        /// The entry.
        path: String,
        /// `character` or `block`.
        kind: &'static str,
    },
    /// A FIFO.
    #[error("entry `{path}` is a FIFO; packages hold regular files and folders only")]
    Fifo {
        /// The entry.
        path: String,
    },
    /// Another entry type (sparse files, ...).
    #[error("entry `{path}` has unsupported tar type {kind:?}")]
    Unsupported {
        /// The entry.
        path: String,
        /// The type byte.
        kind: char,
    },
    /// Setuid or setgid bits.
    #[error("entry `{path}` has mode {mode:o} with the setuid or setgid bit")]
    SetId {
        /// The entry.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// The data ends before the header's size.
    #[error("entry `{path}`: the header says {declared} bytes, the data ends after {found}")]
    SizeMismatch {
        /// The entry.
        path: String,
        /// The header's size.
        declared: u64,
        /// What was there.
        found: u64,
    },
    /// The same path twice.
    #[error("entry `{path}` appears twice")]
    Duplicate {
        /// The entry.
        path: String,
    },
    /// Two names that differ only in case.
    #[error("entries `{path}` and `{other}` differ only in case")]
    CaseCollision {
        /// The later entry.
        path: String,
        /// The earlier one.
        other: String,
    },
    /// A file is used as a folder, or a folder as a file.
    #[error("entry `{path}` needs `{parent}` to be a folder, but it is a file")]
    NotAFolder {
        /// The entry.
        path: String,
        /// The file in its way.
        parent: String,
    },
    /// More than [`MAX_FILES`] entries.
    #[error("the package has more than {max} entries")]
    TooManyFiles {
        /// The cap.
        max: usize,
    },
    /// The declared sizes add up to more than the cap.
    #[error("the package unpacks to more than {cap} bytes (at `{path}`)")]
    UnpackedTooLarge {
        /// The cap: max(512 MiB, 20 × the package size).
        cap: u64,
        /// The entry that crossed it.
        path: String,
    },
    /// The decompressed stream is larger than any honest package of this
    /// size.
    #[error("the package decompresses to more than {limit} bytes: a gzip bomb")]
    GzipBomb {
        /// The limit on the decompressed stream.
        limit: u64,
    },
    /// No `cordon.toml` at the top.
    #[error("the package has no cordon.toml at its top level")]
    NoManifest,
    /// `cordon.toml` is larger than a manifest may be.
    #[error("the package's cordon.toml is {size} bytes; a manifest may have at most {MAX_MANIFEST_BYTES}")]
    ManifestTooLarge {
        /// Its size.
        size: u64,
    },
    /// `cordon.toml` is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The staging folder could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl UnpackError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            UnpackError::Read { .. } | UnpackError::Write { .. } => None,
            UnpackError::Manifest(e) => e.hint().map(str::to_owned),
            UnpackError::NoManifest => Some("pack the plugin folder itself with `cordon plugin pack DIR`".into()),
            _ => Some(
                "this is not a package `cordon plugin pack` writes; do not install it, and ask its publisher".into(),
            ),
        }
    }
}

/// What [`unpack`] found.
#[derive(Clone, Debug)]
pub struct Unpacked {
    /// The tree.
    pub tree: Tree,
    /// The validated manifest.
    pub manifest: Manifest,
    /// The package's SHA-256.
    pub package_sha256: Digest256,
    /// The package's size.
    pub package_bytes: u64,
    /// The sum of its files' sizes.
    pub unpacked_bytes: u64,
}

/// Reads and hashes what passes through, counting bytes.
struct Tee<R> {
    inner: R,
    hash: Sha256,
    count: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Counts decompressed bytes and fails past a limit.
struct Capped<R> {
    inner: R,
    count: u64,
    limit: u64,
    exceeded: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            self.exceeded.set(true);
            return Err(io::Error::other("decompressed stream over its limit"));
        }
        Ok(n)
    }
}

/// Checks `package` entry by entry and, with `dest`, writes its tree into
/// `dest` (an empty folder the caller created). Without `dest` nothing is
/// written: the package is only checked and hashed. See the module docs.
///
/// Nothing is synced to disk here, so a refused package costs no fsync;
/// [`sync_tree`] makes an accepted one durable.
pub fn unpack(package: &Path, dest: Option<&Path>) -> Result<Unpacked, UnpackError> {
    let read_err = |source| UnpackError::Read { path: package.to_owned(), source };
    let file = File::open(package).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    if size > MAX_PACKAGE_BYTES {
        return Err(UnpackError::PackageTooLarge { size });
    }
    let cap = MIN_UNPACKED_CAP.max(size.saturating_mul(20));
    let stream_limit = cap + STREAM_SLACK;
    let exceeded = std::rc::Rc::new(std::cell::Cell::new(false));
    let tee = Tee { inner: file, hash: Sha256::new(), count: 0 };
    let gz = flate2::bufread::GzDecoder::new(BufReader::new(tee));
    let capped = Capped { inner: gz, count: 0, limit: stream_limit, exceeded: exceeded.clone() };
    let mut archive = tar::Archive::new(capped);
    let bomb = || UnpackError::GzipBomb { limit: stream_limit };
    // A read error is the bomb when the cap tripped, else corrupt gzip.
    let stream_err = |e: io::Error, after: Option<&String>| -> UnpackError {
        if exceeded.get() {
            bomb()
        } else if e.kind() == io::ErrorKind::InvalidInput
            || e.to_string().contains("gzip")
            || e.to_string().contains("deflate")
        {
            UnpackError::NotGzip { reason: e.to_string() }
        } else {
            UnpackError::CorruptHeader { after: after.cloned(), reason: e.to_string() }
        }
    };

    let mut state = Walk::default();
    let mut manifest_bytes: Option<Vec<u8>> = None;
    let mut declared_total = 0u64;
    let mut last: Option<String> = None;
    let entries = archive.entries().map_err(|e| stream_err(e, None))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| stream_err(e, last.as_ref()))?;
        state.count += 1;
        if state.count > MAX_FILES {
            return Err(UnpackError::TooManyFiles { max: MAX_FILES });
        }
        let raw = entry.path_bytes().into_owned();
        let lossy = String::from_utf8_lossy(&raw).into_owned();
        // Other tar tools write `./` and `./x`; a trailing `/` marks folders.
        let mut trimmed: &[u8] = &raw;
        while let Some(rest) = trimmed.strip_prefix(b"./") {
            trimmed = rest;
        }
        let trimmed = trimmed.strip_suffix(b"/").unwrap_or(trimmed);
        if (trimmed.is_empty() || trimmed == b".") && entry.header().entry_type().is_dir() {
            continue;
        }
        let path =
            check_path(trimmed).map_err(|problem| UnpackError::Path { path: lossy.clone(), problem })?.to_owned();
        let header = entry.header();
        let kind = header.entry_type();
        let link_target =
            || entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Directory => {}
            tar::EntryType::Symlink => return Err(UnpackError::Symlink { path, target: link_target() }),
            tar::EntryType::Link => return Err(UnpackError::HardLink { path, target: link_target() }),
            tar::EntryType::Char => return Err(UnpackError::Device { path, kind: "character" }),
            tar::EntryType::Block => return Err(UnpackError::Device { path, kind: "block" }),
            tar::EntryType::Fifo => return Err(UnpackError::Fifo { path }),
            other => return Err(UnpackError::Unsupported { path, kind: char::from(other.as_byte()) }),
        }
        let mode =
            header.mode().map_err(|e| UnpackError::CorruptHeader { after: last.clone(), reason: e.to_string() })?;
        if mode & 0o6000 != 0 {
            return Err(UnpackError::SetId { path, mode });
        }
        let is_dir = kind == tar::EntryType::Directory;
        state.admit(&path, is_dir)?;
        let declared = entry.size();
        if is_dir {
            if let Some(d) = dest {
                make_dir(&d.join(&path))?;
            }
            state.tree.insert(path.clone(), Entry::Dir);
            last = Some(path);
            continue;
        }
        declared_total = declared_total.saturating_add(declared);
        if declared_total > cap {
            return Err(UnpackError::UnpackedTooLarge { cap, path });
        }
        let is_manifest = path == MANIFEST_FILE;
        if is_manifest && declared > MAX_MANIFEST_BYTES {
            return Err(UnpackError::ManifestTooLarge { size: declared });
        }
        let executable = Executable::from_mode(mode);
        let mut out = match dest {
            Some(d) => {
                let p = d.join(&path);
                if let Some(parent) = p.parent() {
                    make_dirs(d, parent)?;
                }
                Some((create_file(&p)?, p))
            }
            None => None,
        };
        let mut hash = Sha256::new();
        let mut keep = if is_manifest { Some(Vec::new()) } else { None };
        let mut buf = vec![0u8; 64 * 1024];
        let mut found = 0u64;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(n) => n,
                Err(e) if exceeded.get() => return Err(stream_err(e, None)),
                Err(_) => return Err(UnpackError::SizeMismatch { path, declared, found }),
            };
            if n == 0 {
                break;
            }
            found += n as u64;
            hash.update(&buf[..n]);
            if let Some(k) = keep.as_mut() {
                k.extend_from_slice(&buf[..n]);
            }
            if let Some((f, p)) = out.as_mut() {
                f.write_all(&buf[..n]).map_err(|source| UnpackError::Write { path: p.clone(), source })?;
            }
        }
        if found != declared {
            return Err(UnpackError::SizeMismatch { path, declared, found });
        }
        if let Some((f, p)) = out {
            use std::os::unix::fs::PermissionsExt;
            // Explicit: the umask must not change the mode the tree records.
            f.set_permissions(std::fs::Permissions::from_mode(executable.mode()))
                .map_err(|source| UnpackError::Write { path: p, source })?;
        }
        if let Some(k) = keep {
            manifest_bytes = Some(k);
        }
        state.tree.insert(path.clone(), Entry::File { executable, sha256: Digest256(hash.finalize().into()) });
        last = Some(path);
    }
    // Past the end-of-archive marker: drain what is left, so that a bomb
    // hidden after it is caught and the package hash covers every byte.
    let mut capped = archive.into_inner();
    io::copy(&mut capped, &mut io::sink()).map_err(|e| stream_err(e, last.as_ref()))?;
    let mut reader = capped.inner.into_inner();
    let mut rest = [0u8; 1];
    if reader.read(&mut rest).map_err(read_err)? != 0 {
        return Err(UnpackError::TrailingData);
    }
    let tee = reader.into_inner();
    let package_sha256 = Digest256(tee.hash.finalize().into());
    let bytes = manifest_bytes.ok_or(UnpackError::NoManifest)?;
    let manifest = Manifest::parse_bytes(&bytes, Path::new(MANIFEST_FILE))?;
    Ok(Unpacked {
        tree: state.tree,
        manifest,
        package_sha256,
        package_bytes: tee.count,
        unpacked_bytes: declared_total,
    })
}

/// fsyncs every file and folder of an unpacked tree (folders after what
/// they hold), so that it is complete on disk before a lock file names it.
///
/// Files are synced from a few threads at once: a filesystem with a
/// journal commits concurrent fsyncs together, which for a tree of many
/// small files is several times faster than one after the other.
pub fn sync_tree(dir: &Path, tree: &Tree) -> io::Result<()> {
    const THREADS: usize = 8;
    let files: Vec<PathBuf> =
        tree.iter().filter(|(_, e)| matches!(e, Entry::File { .. })).map(|(p, _)| dir.join(p)).collect();
    let chunk = files.len().div_ceil(THREADS).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().try_for_each(|f| File::open(f)?.sync_all())))
            .collect();
        workers.into_iter().try_for_each(|w| w.join().unwrap_or_else(|_| Err(io::Error::other("sync thread panicked"))))
    })?;
    let mut dirs: Vec<&String> = tree.iter().filter(|(_, e)| matches!(e, Entry::Dir)).map(|(p, _)| p).collect();
    dirs.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for d in dirs {
        File::open(dir.join(d))?.sync_all()?;
    }
    File::open(dir)?.sync_all()
}

/// The bookkeeping of one pass over the entries.
#[derive(Default)]
struct Walk {
    tree: Tree,
    count: usize,
    /// Lower-cased path to the path first seen with it.
    folded: HashMap<String, String>,
    /// Paths that had their own entry (folders may also be implied).
    explicit: HashSet<String>,
}

impl Walk {
    fn admit(&mut self, path: &str, is_dir: bool) -> Result<(), UnpackError> {
        if !self.explicit.insert(path.to_owned()) {
            return Err(UnpackError::Duplicate { path: path.to_owned() });
        }
        let folded = path.to_lowercase();
        if let Some(other) = self.folded.get(&folded) {
            if other != path {
                return Err(UnpackError::CaseCollision { path: path.to_owned(), other: other.clone() });
            }
        }
        self.folded.insert(folded, path.to_owned());
        // Folders on the way are implied; none of them may be a file.
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            let ps = p.to_string_lossy().into_owned();
            match self.tree.get(&ps) {
                Some(Entry::File { .. }) => {
                    return Err(UnpackError::NotAFolder { path: path.to_owned(), parent: ps });
                }
                Some(Entry::Dir) => {}
                None => {
                    let folded = ps.to_lowercase();
                    if let Some(other) = self.folded.get(&folded) {
                        if *other != ps {
                            return Err(UnpackError::CaseCollision { path: path.to_owned(), other: other.clone() });
                        }
                    }
                    self.folded.insert(folded, ps.clone());
                    self.tree.insert(ps, Entry::Dir);
                }
            }
            parent = p.parent();
        }
        match self.tree.get(path) {
            Some(Entry::Dir) if !is_dir => {
                Err(UnpackError::NotAFolder { path: format!("{path}/…"), parent: path.to_owned() })
            }
            _ => Ok(()),
        }
    }
}

fn make_dir(p: &Path) -> Result<(), UnpackError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o755).create(p) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Only ever one we made: no links are created here.
            let meta =
                std::fs::symlink_metadata(p).map_err(|source| UnpackError::Write { path: p.to_owned(), source })?;
            if !meta.is_dir() {
                return Err(UnpackError::Write { path: p.to_owned(), source: e });
            }
        }
        Err(source) => return Err(UnpackError::Write { path: p.to_owned(), source }),
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .map_err(|source| UnpackError::Write { path: p.to_owned(), source })
}

fn make_dirs(root: &Path, dir: &Path) -> Result<(), UnpackError> {
    let rel = dir.strip_prefix(root).expect("inside the staging folder");
    let mut p = root.to_owned();
    for c in rel.components() {
        p.push(c);
        make_dir(&p)?;
    }
    Ok(())
}

/// `O_CREAT | O_EXCL`: never an existing file, never through a link.
fn create_file(p: &Path) -> Result<File, UnpackError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map_err(|source| UnpackError::Write { path: p.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_refuses_collisions_and_files_used_as_folders() {
        let mut w = Walk::default();
        w.admit("a/b.txt", false).unwrap();
        w.tree.insert("a/b.txt".into(), Entry::File { executable: Executable::No, sha256: Digest256::of(b"") });
        assert!(matches!(w.admit("a/b.txt", false), Err(UnpackError::Duplicate { .. })));
        assert!(matches!(w.admit("A/c", false), Err(UnpackError::CaseCollision { .. })));
        assert!(matches!(w.admit("a/B.TXT", false), Err(UnpackError::CaseCollision { .. })));
        assert!(matches!(w.admit("a/b.txt/x", false), Err(UnpackError::NotAFolder { .. })));
        w.admit("a", true).unwrap();
    }
}
