//! The log file: where it is, opening it, and appending one chained line.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use std::os::fd::AsFd;

use cordon_core::state::Protected;
use cordon_core::sys::{self, ByteLock};
use cordon_core::trace;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::checkpoint::{self, Anchor, AuditKey, Checkpoint};
use crate::journal::LineKey;
use crate::record::{hex, AuditRecord};

/// The byte a writer that owns the log locks (see
/// [`AuditLog::take_ownership`]): the last one a file offset can name.
const OWNER_BYTE: u64 = i64::MAX as u64 - 1;

/// The log's file name under the state directory.
pub const LOG_FILE: &str = "audit.jsonl";

/// A record carries a signed checkpoint of the lines before it when its
/// `seq` is one more than a multiple of this: every 100 records.
pub const CHECKPOINT_EVERY: u64 = 100;

/// Where the audit key and the latest checkpoints are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFolder {
    /// cordon's state folder (`cordon_core::state::state_dir`), else the
    /// log's own folder when there is no state folder (no `HOME`).
    State,
    /// This folder.
    At(PathBuf),
    /// No key: records carry no checkpoint and no latest checkpoint is
    /// kept (for reading, and for tests of the chain alone).
    Unsigned,
}

impl KeyFolder {
    /// The folder for the log at `log`, or `None` for [`KeyFolder::Unsigned`].
    pub fn resolve(&self, log: &Path) -> Option<PathBuf> {
        match self {
            KeyFolder::State => cordon_core::state::state_dir()
                .or_else(|| log.parent().filter(|d| !d.as_os_str().is_empty()).map(Path::to_owned))
                .or_else(|| Some(PathBuf::from("."))),
            KeyFolder::At(dir) => Some(dir.clone()),
            KeyFolder::Unsigned => None,
        }
    }
}

/// The key, where this log's latest checkpoint goes, and the key of its
/// run journal's lines.
#[derive(Debug)]
struct Signer {
    key: AuditKey,
    anchor: Anchor,
    journal: LineKey,
}

/// The signing side of a log that signs: its key folder, and the key and
/// latest-checkpoint file, loaded once by whoever needs them first: the
/// opening thread ([`AuditLog::open_with`]), or, after
/// [`AuditLog::open_loading_key_behind`], the log's first user of them.
#[derive(Debug)]
struct SignerSlot {
    dir: PathBuf,
    /// The log, for loading here.
    path: PathBuf,
    signer: Arc<OnceLock<io::Result<Signer>>>,
}

impl SignerSlot {
    /// The key and anchor, loaded here (from the log open as `file`) unless
    /// they are loaded or being loaded (then waiting for that). The error
    /// loading them gave, every time, when they could not be.
    fn get(&self, file: &File) -> io::Result<&Signer> {
        match self.signer.get_or_init(|| load_signer(&self.dir, file, &self.path)) {
            Ok(s) => Ok(s),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// Loads (creating it on first use) the audit key in `dir`, and opens the
/// latest-checkpoint file of the log at `path`, open as `file`.
fn load_signer(dir: &Path, file: &File, path: &Path) -> io::Result<Signer> {
    let key = AuditKey::load_or_create(dir, key_name).map_err(io::Error::other)?;
    let anchor_path = checkpoint::anchor_path_of_open(dir, file, path);
    // The log's identity, for its journal's lines: the name of its anchor
    // (a hash of its resolved path).
    let journal = LineKey::new(&key.journal_key(), anchor_path.file_name().unwrap_or_default().as_encoded_bytes());
    let anchor = Anchor::open(&anchor_path)?;
    Ok(Signer { key, anchor, journal })
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Opened once, `O_APPEND`; `flock` on it keeps other processes out.
    file: File,
    /// Keeps this process's threads out of each other's appends (they
    /// share `file`, and so its `flock`).
    lock: Mutex<()>,
    signer: Option<SignerSlot>,
    /// The log's origin (from its first line), once known.
    origin: OnceLock<String>,
    /// The log's end as [`AuditLog::read_ahead`] read it, for the next
    /// append.
    ahead: Mutex<Option<Ahead>>,
}

/// The end of the log, read ahead of an append ([`AuditLog::read_ahead`]):
/// what the append needs of it, good while the log is still `len` bytes.
#[derive(Debug)]
struct Ahead {
    len: u64,
    torn: bool,
    seq: u64,
    prev: [u8; 32],
}

/// An append-only, hash-chained audit log, open for appending. Clones share
/// the descriptor.
#[derive(Clone, Debug)]
pub struct AuditLog(Arc<Inner>);

/// What [`AuditLog::append`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The record's line number (its `seq`).
    pub seq: u64,
    /// SHA-256 of the line, hex.
    pub hash: String,
}

impl AuditLog {
    /// `$XDG_STATE_HOME/cordon/audit.jsonl`, or
    /// `~/.local/state/cordon/audit.jsonl` when `XDG_STATE_HOME` is unset or
    /// not absolute. `None` without a usable `HOME` either.
    pub fn default_path() -> Option<PathBuf> {
        default_path_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
    }

    /// [`AuditLog::open_with`] the key in cordon's state folder.
    pub fn open(path: &Path) -> io::Result<AuditLog> {
        AuditLog::open_with(path, &KeyFolder::State)
    }

    /// Opens (creating it and its folders) the log at `path`, and the audit
    /// key in `keys` (created on first use). Folders are created `0700`,
    /// the log `0600`: records name what ran and when. A new log's folder
    /// entry is synced, so a crash cannot lose the file with its records.
    pub fn open_with(path: &Path, keys: &KeyFolder) -> io::Result<AuditLog> {
        let file = open_or_create(path)?;
        let signer = match keys.resolve(path) {
            Some(dir) => {
                let signer = load_signer(&dir, &file, path)?;
                Some(SignerSlot { dir, path: path.to_owned(), signer: Arc::new(OnceLock::from(Ok(signer))) })
            }
            None => None,
        };
        Ok(AuditLog::new(path, file, signer))
    }

    /// [`AuditLog::open_with`], the audit key loaded and checked and the
    /// latest-checkpoint file opened by whatever needs them first (an
    /// append, or [`AuditLog::key_ready`], which [`crate::AuditTrail::begin`]
    /// asks before a run may start), so a run prepares meanwhile and a key
    /// that cannot be loaded still refuses every run before it starts, with
    /// the error [`AuditLog::open_with`] would have given. (A thread of
    /// their own loaded them while the run prepared, when a load derived
    /// the key's public half; with the public half kept beside the key, a
    /// load costs less than starting that thread did: ≈ 70 000
    /// instructions, against a thread's stack mapped, cloned and unmapped.)
    pub fn open_loading_key_behind(path: &Path, keys: &KeyFolder) -> io::Result<AuditLog> {
        let file = open_or_create(path)?;
        let signer =
            keys.resolve(path).map(|dir| SignerSlot { dir, path: path.to_owned(), signer: Arc::new(OnceLock::new()) });
        Ok(AuditLog::new(path, file, signer))
    }

    fn new(path: &Path, file: File, signer: Option<SignerSlot>) -> AuditLog {
        AuditLog(Arc::new(Inner {
            path: path.to_owned(),
            file,
            lock: Mutex::new(()),
            signer,
            origin: OnceLock::new(),
            ahead: Mutex::new(None),
        }))
    }

    /// Waits for the audit key of [`AuditLog::open_loading_key_behind`]:
    /// the error loading it gave, if it could not be loaded. At once for a
    /// log opened otherwise, or that does not sign.
    pub fn key_ready(&self) -> io::Result<()> {
        match &self.0.signer {
            Some(s) => s.get(&self.0.file).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Reads, without holding the log, what the next append needs of its
    /// end (the last line's hash, the next line number) and the log's
    /// origin (from its first line, once that is whole), so that the
    /// append does not: a run's command runs meanwhile. The log is
    /// append-only, so bytes read up to its size then are still those
    /// while it has that size; the append uses what was read only if the
    /// log, held, still has it, and reads its end again otherwise. Best
    /// effort: an error leaves it all to the append.
    pub fn read_ahead(&self) {
        let file = &self.0.file;
        let Ok(tail) = Tail::read(file) else { return };
        let Ok(seq) = tail.next_seq(file) else { return };
        let prev = Sha256::digest(&tail.last).into();
        let len = tail.len;
        *self.0.ahead.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Ahead { len, torn: tail.torn, seq, prev });
        if self.0.origin.get().is_none() && len > 0 {
            // Only a first line with its newline: one being written now
            // may be cut short.
            if let Ok(first) = read_line_at(file, 0) {
                if (first.len() as u64) < len {
                    let _ = self.0.origin.set(Checkpoint::origin_of(&first));
                }
            }
        }
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// The folder of the audit key and latest checkpoints, if the log signs.
    pub fn key_folder(&self) -> Option<&Path> {
        self.0.signer.as_ref().map(|s| s.dir.as_path())
    }

    /// Takes the log for this writer alone, for as long as it is open: an
    /// open-file-description lock far past any content, which the kernel
    /// drops when the process dies. `EAGAIN` when another writer has it.
    pub(crate) fn take_ownership(&self) -> io::Result<()> {
        sys::ofd_lock_byte(self.0.file.as_fd(), OWNER_BYTE, ByteLock::Hold)
    }

    /// Gives the log back after [`AuditLog::take_ownership`], while this
    /// handle stays open: a writer's shutdown.
    pub(crate) fn release_ownership(&self) -> io::Result<()> {
        sys::ofd_lock_byte(self.0.file.as_fd(), OWNER_BYTE, ByteLock::Release)
    }

    /// Whether another writer took the log with
    /// [`AuditLog::take_ownership`].
    pub(crate) fn owned_by_another(&self) -> io::Result<bool> {
        sys::ofd_byte_locked(self.0.file.as_fd(), OWNER_BYTE)
    }

    /// The key of the run journal's lines (`None` for a log that does not
    /// sign), loaded here or waited for as [`AuditLog::key_ready`].
    pub(crate) fn journal_key(&self) -> io::Result<Option<&LineKey>> {
        match &self.0.signer {
            Some(s) => Ok(Some(&s.get(&self.0.file)?.journal)),
            None => Ok(None),
        }
    }

    /// Makes the latest checkpoint durable (a writer's shutdown).
    pub(crate) fn sync_anchor(&self) -> io::Result<()> {
        match &self.0.signer {
            Some(s) => s.get(&self.0.file)?.anchor.sync(),
            None => Ok(()),
        }
    }

    /// The log's size now (for recovery: a run's record lies after the
    /// size the log had when the run began).
    pub(crate) fn len(&self) -> io::Result<u64> {
        Ok(self.0.file.metadata()?.len())
    }

    /// Appends `record`, setting its `prev` to the hash of the last line and
    /// its `seq` to its line number, and makes it durable (one `fdatasync`).
    /// See the crate docs for the locking, durability and checkpoint
    /// guarantees.
    pub fn append(&self, mut record: AuditRecord) -> io::Result<Appended> {
        let held = self.lock()?;
        held.append(&mut record)
    }

    /// Holds the log (this process's threads and, by `flock`, every other
    /// process) until the guard drops.
    pub(crate) fn lock(&self) -> io::Result<Held<'_>> {
        let guard = self.0.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.0.file.lock()?;
        Ok(Held { log: self, _guard: guard })
    }

    /// The log's files, which no sandbox may reach: the log, its run
    /// journal, and the audit key and checkpoints.
    pub fn protected(&self) -> Vec<Protected> {
        let mut out = vec![
            Protected::file(self.path(), "the audit log"),
            Protected::file(crate::journal::path_of(self.path()), "the audit log's run journal"),
        ];
        if let Some(s) = &self.0.signer {
            out.push(Protected::file(s.dir.join(checkpoint::KEY_FILE), "the audit signing key"));
            out.push(Protected::folder(s.dir.join(checkpoint::PUBLIC_KEYS_DIR), "the audit verifier keys"));
            out.push(Protected::folder(s.dir.join(checkpoint::ANCHORS_DIR), "the audit log's latest checkpoints"));
        }
        out
    }
}

/// Whether the first of the records appended together carries a checkpoint
/// whatever its `seq` (a long-running writer's time-based checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InLogCheckpoint {
    /// Only every [`CHECKPOINT_EVERY`] records.
    OnCadence,
    /// On the first record too.
    Now,
}

/// The log held by [`AuditLog::lock`].
pub(crate) struct Held<'a> {
    log: &'a AuditLog,
    _guard: MutexGuard<'a, ()>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.log.0.file.unlock();
    }
}

impl Held<'_> {
    /// Appends one record (see [`AuditLog::append`]).
    pub(crate) fn append(&self, record: &mut AuditRecord) -> io::Result<Appended> {
        let mut appended = self.append_all(std::slice::from_mut(record), InLogCheckpoint::OnCadence)?;
        Ok(appended.remove(0))
    }

    /// Appends `records` with one `write(2)` and one `fdatasync`, chaining
    /// each onto the one before. With a signer, a record carries a
    /// checkpoint of the lines before it every [`CHECKPOINT_EVERY`] records
    /// (and the first one does with [`InLogCheckpoint::Now`]), and the
    /// latest checkpoint, covering the last record, is stored in the log's
    /// anchor. Nothing is written for no records.
    pub(crate) fn append_all(&self, records: &mut [AuditRecord], first: InLogCheckpoint) -> io::Result<Vec<Appended>> {
        if records.is_empty() {
            return Ok(vec![]);
        }
        let inner = &*self.log.0;
        let file = &inner.file;
        let signer = inner.signer.as_ref().map(|s| s.get(file)).transpose()?;
        let ahead = inner.ahead.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let (torn, mut seq, mut prev) = match ahead {
            // Read ahead, and the log has not changed since (see
            // `read_ahead`).
            Some(a) if file.metadata()?.len() == a.len => (a.torn, a.seq, a.prev),
            _ => {
                let tail = Tail::read(file)?;
                (tail.torn, tail.next_seq(file)?, Sha256::digest(&tail.last).into())
            }
        };
        let mut buf = Vec::with_capacity(1024 * records.len());
        if torn {
            // End the cut-short line so this record starts on its own line.
            buf.push(b'\n');
        }
        let mut out = Vec::with_capacity(records.len());
        let mut first_line: Option<(usize, usize)> = None;
        for (i, record) in records.iter_mut().enumerate() {
            record.prev = hex(&prev);
            record.seq = Some(seq);
            record.checkpoint = None;
            let due =
                (seq > 1 && (seq - 1) % CHECKPOINT_EVERY == 0) || (i == 0 && first == InLogCheckpoint::Now && seq > 1);
            if let Some(s) = signer.filter(|_| due) {
                // The first line may be in this very batch.
                let origin = self.origin(first_line.map(|(a, b)| &buf[a..b]))?;
                let cp = Checkpoint { origin, size: seq - 1, hash: prev };
                record.checkpoint = Some(s.key.sign(&cp));
            }
            let start = buf.len();
            // serde_json escapes newlines in strings: one record is one line.
            serde_json::to_writer(&mut buf, record).map_err(io::Error::other)?;
            prev = Sha256::digest(&buf[start..]).into();
            if seq == 1 {
                first_line = Some((start, buf.len()));
            }
            buf.push(b'\n');
            out.push(Appended { seq, hash: hex(&prev) });
            seq += 1;
        }
        // One write(2) on an O_APPEND descriptor: the kernel places it at
        // the end atomically with respect to other appenders.
        let written = (&*file).write(&buf)?;
        if written != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write to the audit log: {written} of {} bytes", buf.len()),
            ));
        }
        trace::step("audit: record written");
        // The record's pages start on their way to the disk, and the latest
        // checkpoint is signed while they go (best effort: the fdatasync
        // below waits for them either way). It is kept only once the record
        // it names is durable.
        let _ = sys::start_writeback(file.as_fd());
        let latest = match signer {
            Some(s) => {
                let origin = self.origin(first_line.map(|(a, b)| &buf[a..b]))?;
                let size = seq - 1;
                Some((s, size, s.key.sign(&Checkpoint { origin, size, hash: prev })))
            }
            None => None,
        };
        trace::step("audit: latest checkpoint signed (the record on its way)");
        // fdatasync: the data and the size needed to read it back. The only
        // durable write of a run (of a group of them, for a group commit).
        file.sync_data()?;
        trace::step("audit: fdatasync");
        if let Some((s, size, note)) = latest {
            s.anchor.store(size, &note).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "the record was appended, but its checkpoint could not be kept in {}: {e}",
                        s.anchor.path().display()
                    ),
                )
            })?;
            trace::step("audit: latest checkpoint kept");
        }
        Ok(out)
    }

    /// The log's origin: from `first` (the line just written as line 1), or
    /// from the file's first line.
    fn origin(&self, first: Option<&[u8]>) -> io::Result<String> {
        let cell = &self.log.0.origin;
        if let Some(o) = cell.get() {
            return Ok(o.clone());
        }
        let origin = match first {
            Some(line) => Checkpoint::origin_of(line),
            None => Checkpoint::origin_of(&read_line_at(&self.log.0.file, 0)?),
        };
        Ok(cell.get_or_init(|| origin).clone())
    }

    /// Whether the log holds the record of the run begun as `draft` at or
    /// after byte `from`: one with its request id, start time and tenant.
    /// A request id alone is not the run (two tenants' runs may share one,
    /// and one's record must not pass for the other's); a record whose
    /// tenant its host changed is not found, and the run gets a second,
    /// `LOST`, record rather than none.
    pub(crate) fn has_record(&self, draft: &AuditRecord, from: u64) -> io::Result<bool> {
        #[derive(Deserialize)]
        struct IdOnly {
            request_id: String,
            #[serde(default)]
            time: String,
            #[serde(default)]
            tenant: Option<String>,
        }
        let is_it =
            |r: IdOnly| r.request_id == draft.request_id && r.time == draft.time && r.tenant == draft.subject.tenant;
        let file = &self.log.0.file;
        let len = file.metadata()?.len();
        let mut pos = from.min(len);
        let mut buf = vec![0u8; 64 << 10];
        let mut line: Vec<u8> = vec![];
        while pos < len {
            let got = file.read_at(&mut buf, pos)?;
            if got == 0 {
                break;
            }
            pos += got as u64;
            for chunk in buf[..got].split_inclusive(|b| *b == b'\n') {
                line.extend_from_slice(chunk);
                if line.ends_with(b"\n") {
                    let found = serde_json::from_slice::<IdOnly>(&line).is_ok_and(is_it);
                    if found {
                        return Ok(true);
                    }
                    line.clear();
                }
            }
        }
        Ok(false)
    }
}

/// The name of a key made on this host: `cordon-audit@<hostname>`.
fn key_name() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| !c.is_whitespace() && *c != '+').collect();
    if host.is_empty() {
        "cordon-audit".into()
    } else {
        format!("cordon-audit@{host}")
    }
}

pub(crate) fn default_path_from(xdg_state: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    cordon_core::state::state_dir_from(xdg_state, home).map(|d| d.join(LOG_FILE))
}

/// The log at `path`, created (with its folders) if it does not exist.
fn open_or_create(path: &Path) -> io::Result<File> {
    // Not through a link on the way to the log's folder that a run may
    // have made (review s14 R14-5): the log's latest checkpoint is kept by
    // where the path leads, so a folder swapped for a link to a fresh one
    // would start a new log there, and verifying the log by its name would
    // show a short, intact chain with every earlier record gone.
    if let Some(dir) = std::path::absolute(path).ok().as_deref().and_then(Path::parent) {
        use cordon_core::enforce::links::{check_path, RuleSource};
        if let Err(e) = check_path("fs.write", RuleSource::Flags, dir, false) {
            return Err(io::Error::other(format!(
                "the folder of the audit log {} is reached through the symbolic link {} (to {}), which lies in {}, a folder {}: a run that could write there may have made it, and a log through it would hide the records kept at its old place; name the log by its real path, or remove the link",
                path.display(),
                e.link.display(),
                e.target.display(),
                e.folder.display(),
                e.why
            )));
        }
    }
    match open_existing(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path),
        other => other,
    }
}

/// Never through a link, and only a regular file with one name (see
/// `cordon_core::state::open_own_file`).
fn open_existing(path: &Path) -> io::Result<File> {
    cordon_core::state::open_own_file(OpenOptions::new().read(true).append(true), path)
}

/// Creates the log (and its folders), or opens it when another process
/// just did.
fn create(path: &Path) -> io::Result<File> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    match cordon_core::state::open_own_file(
        OpenOptions::new().read(true).append(true).create_new(true).mode(0o600),
        path,
    ) {
        Ok(f) => {
            // Make the new directory entry durable, or a crash could lose
            // the whole file along with its first records.
            if let Some(dir) = dir {
                File::open(dir)?.sync_all()?;
            }
            Ok(f)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open_existing(path),
        Err(e) => Err(e),
    }
}

/// The end of a file of lines: the last line and whether it lacks its
/// newline.
pub(crate) struct Tail {
    pub(crate) last: Vec<u8>,
    pub(crate) torn: bool,
    /// The file's size.
    pub(crate) len: u64,
}

impl Tail {
    /// Reads backwards in chunks until the line before the last.
    pub(crate) fn read(file: &File) -> io::Result<Tail> {
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(Tail { last: vec![], torn: false, len });
        }
        let mut end_byte = [0u8];
        file.read_exact_at(&mut end_byte, len - 1)?;
        let torn = end_byte[0] != b'\n';
        let end = if torn { len } else { len - 1 };
        Ok(Tail { last: line_before(file, end)?, torn, len })
    }

    /// The line number of the next line: one more than the last record's
    /// `seq`, or, for a log written before `seq` or ending in a torn line,
    /// one more than the number of lines.
    fn next_seq(&self, file: &File) -> io::Result<u64> {
        #[derive(Deserialize)]
        struct Seq {
            seq: Option<u64>,
        }
        if self.len == 0 {
            return Ok(1);
        }
        if !self.torn {
            if let Ok(Seq { seq: Some(n) }) = serde_json::from_slice::<Seq>(&self.last) {
                return Ok(n + 1);
            }
        }
        Ok(count_lines(file, self.len)? + 1)
    }
}

/// The bytes between the newline before `end` (or the start) and `end`.
fn line_before(file: &File, end: u64) -> io::Result<Vec<u8>> {
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = end;
    while pos > 0 {
        let step = pos.min(4096);
        let mut chunk = vec![0u8; usize::try_from(step).map_err(io::Error::other)?];
        file.read_exact_at(&mut chunk, pos - step)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            chunk.drain(..=i);
            chunk.extend_from_slice(&tail);
            return Ok(chunk);
        }
        chunk.extend_from_slice(&tail);
        tail = chunk;
        pos -= step;
    }
    Ok(tail)
}

/// Lines in the first `len` bytes, a last line without newline included.
fn count_lines(file: &File, len: u64) -> io::Result<u64> {
    let mut n = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = 0u64;
    let mut last = b'\n';
    while pos < len {
        let want = usize::try_from((len - pos).min(buf.len() as u64)).map_err(io::Error::other)?;
        let got = file.read_at(&mut buf[..want], pos)?;
        if got == 0 {
            break;
        }
        n += buf[..got].iter().filter(|b| **b == b'\n').count() as u64;
        last = buf[got - 1];
        pos += got as u64;
    }
    Ok(if last == b'\n' { n } else { n + 1 })
}

/// The bytes of the line starting at byte `at` of `file`, without its
/// newline (to the end of the file when it has none). The journal reads its
/// entries with it too.
pub(crate) fn read_line_at(file: &File, at: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut pos = at;
    loop {
        let got = file.read_at(&mut buf, pos)?;
        if got == 0 {
            return Ok(out);
        }
        if let Some(i) = buf[..got].iter().position(|b| *b == b'\n') {
            out.extend_from_slice(&buf[..i]);
            return Ok(out);
        }
        out.extend_from_slice(&buf[..got]);
        pos += got as u64;
    }
}
