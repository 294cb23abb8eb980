//! The log file: where it is, opening it, and appending one chained line.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cordon_core::state::Protected;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::checkpoint::{self, AuditKey, Checkpoint};
use crate::record::{sha256_hex, AuditRecord};

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

/// The key and where this log's latest checkpoint goes.
#[derive(Debug)]
pub(crate) struct Signer {
    pub(crate) key: AuditKey,
    pub(crate) dir: PathBuf,
    pub(crate) anchor: PathBuf,
}

/// An append-only, hash-chained audit log.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
    signer: Option<Arc<Signer>>,
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
    /// the log `0600`: records name what ran and when.
    pub fn open_with(path: &Path, keys: &KeyFolder) -> io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        match OpenOptions::new().append(true).create_new(true).mode(0o600).open(path) {
            Ok(_) => {
                // Make the new directory entry durable, or a crash could lose
                // the whole file along with its first records.
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    File::open(dir)?.sync_all()?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                open_file(path)?;
            }
            Err(e) => return Err(e),
        }
        let signer = match keys.resolve(path) {
            Some(dir) => {
                let key = AuditKey::load_or_create(&dir, &key_name()).map_err(io::Error::other)?;
                let anchor = checkpoint::anchor_path(&dir, path);
                Some(Arc::new(Signer { key, dir, anchor }))
            }
            None => None,
        };
        Ok(AuditLog { path: path.to_owned(), signer })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn signer(&self) -> Option<&Signer> {
        self.signer.as_deref()
    }

    /// The folder of the audit key and latest checkpoints, if the log signs.
    pub fn key_folder(&self) -> Option<&Path> {
        self.signer.as_deref().map(|s| s.dir.as_path())
    }

    /// Appends `record`, setting its `prev` to the hash of the last line and
    /// its `seq` to its line number. See the crate docs for the locking,
    /// durability and checkpoint guarantees.
    pub fn append(&self, mut record: AuditRecord) -> io::Result<()> {
        let file = open_file(&self.path)?;
        file.lock()?;
        // The lock is released when `file` is closed.
        append_locked(&file, &mut record, self.signer.as_deref())
    }

    /// The log's files, which no sandbox may reach: the log, its pending
    /// markers, and the audit key and checkpoints.
    pub fn protected(&self) -> Vec<Protected> {
        let mut out = vec![
            Protected::file(self.path(), "the audit log"),
            Protected::folder(self.pending_dir(), "the audit log's pending runs"),
        ];
        if let Some(s) = &self.signer {
            out.push(Protected::file(s.dir.join(checkpoint::KEY_FILE), "the audit signing key"));
            out.push(Protected::folder(s.dir.join(checkpoint::PUBLIC_KEYS_DIR), "the audit verifier keys"));
            out.push(Protected::folder(s.dir.join(checkpoint::ANCHORS_DIR), "the audit log's latest checkpoints"));
        }
        out
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

/// The log opened for reading and appending (created `0600` if missing).
pub(crate) fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path)
}

/// Appends one record; the caller holds the lock. With a signer, the
/// record carries a checkpoint every [`CHECKPOINT_EVERY`] records, and the
/// latest checkpoint (covering this record) replaces the log's anchor.
pub(crate) fn append_locked(file: &File, record: &mut AuditRecord, signer: Option<&Signer>) -> io::Result<()> {
    let tail = Tail::read(file)?;
    let seq = tail.next_seq(file)?;
    record.prev = sha256_hex(&tail.last);
    record.seq = Some(seq);
    record.checkpoint = None;
    if let Some(s) = signer.filter(|_| seq > 1 && (seq - 1) % CHECKPOINT_EVERY == 0) {
        let origin = Checkpoint::origin_of(&first_line(file)?);
        record.checkpoint =
            Some(s.key.sign(&Checkpoint { origin, size: seq - 1, hash: Sha256::digest(&tail.last).into() }));
    }
    let mut buf = Vec::with_capacity(1024);
    if tail.torn {
        // End the cut-short line so this record starts on its own line.
        buf.push(b'\n');
    }
    let start = buf.len();
    // serde_json escapes newlines in strings: one record is one line.
    serde_json::to_writer(&mut buf, record).map_err(io::Error::other)?;
    let line_hash: [u8; 32] = Sha256::digest(&buf[start..]).into();
    buf.push(b'\n');
    // One write(2) on an O_APPEND descriptor: the kernel places it at the
    // end atomically with respect to other appenders.
    let written = (&*file).write(&buf)?;
    if written != buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write to the audit log: {written} of {} bytes", buf.len()),
        ));
    }
    // fdatasync: the data and the size needed to read it back.
    file.sync_data()?;
    if let Some(s) = signer {
        let origin = if seq == 1 {
            Checkpoint::origin_of(&buf[start..buf.len() - 1])
        } else {
            Checkpoint::origin_of(&first_line(file)?)
        };
        let note = s.key.sign(&Checkpoint { origin, size: seq, hash: line_hash });
        checkpoint::write_anchor(&s.anchor, &note).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the record was appended, but its checkpoint {} could not be written: {e}", s.anchor.display()),
            )
        })?;
    }
    Ok(())
}

/// The end of the log: the last line and whether it lacks its newline.
struct Tail {
    last: Vec<u8>,
    torn: bool,
    /// The file's size.
    len: u64,
}

impl Tail {
    /// Reads backwards in chunks until the line before the last.
    fn read(file: &File) -> io::Result<Tail> {
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(Tail { last: vec![], torn: false, len });
        }
        let mut end_byte = [0u8];
        file.read_exact_at(&mut end_byte, len - 1)?;
        let torn = end_byte[0] != b'\n';
        let end = if torn { len } else { len - 1 };
        let mut tail: Vec<u8> = Vec::new();
        let mut pos = end;
        while pos > 0 {
            let step = pos.min(4096);
            let mut chunk = vec![0u8; usize::try_from(step).map_err(io::Error::other)?];
            file.read_exact_at(&mut chunk, pos - step)?;
            if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
                chunk.drain(..=i);
                chunk.extend_from_slice(&tail);
                return Ok(Tail { last: chunk, torn, len });
            }
            chunk.extend_from_slice(&tail);
            tail = chunk;
            pos -= step;
        }
        Ok(Tail { last: tail, torn, len })
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

/// The first line's bytes, without its newline.
fn first_line(file: &File) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut pos = 0u64;
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
