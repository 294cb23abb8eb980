//! The log file: where it is, opening it, and appending one chained line.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::record::{sha256_hex, AuditRecord};

/// The log's file name under the state directory.
pub const LOG_FILE: &str = "audit.jsonl";

/// An append-only, hash-chained audit log.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// `$XDG_STATE_HOME/cordon/audit.jsonl`, or
    /// `~/.local/state/cordon/audit.jsonl` when `XDG_STATE_HOME` is unset or
    /// not absolute. `None` without a usable `HOME` either.
    pub fn default_path() -> Option<PathBuf> {
        default_path_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
    }

    /// Opens (creating it and its folders) the log at `path`. Folders are
    /// created `0700`, the log `0600`: records name what ran and when.
    pub fn open(path: &Path) -> io::Result<AuditLog> {
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
        Ok(AuditLog { path: path.to_owned() })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record`, setting its `prev` to the hash of the last line.
    /// See the crate docs for the locking and durability guarantees.
    pub fn append(&self, mut record: AuditRecord) -> io::Result<()> {
        let file = open_file(&self.path)?;
        file.lock()?;
        // The lock is released when `file` is closed.
        append_locked(&file, &mut record)
    }
}

pub(crate) fn default_path_from(xdg_state: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    cordon_core::state::state_dir_from(xdg_state, home).map(|d| d.join(LOG_FILE))
}

/// The log opened for reading and appending (created `0600` if missing).
pub(crate) fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path)
}

/// Appends one record; the caller holds the lock.
pub(crate) fn append_locked(file: &File, record: &mut AuditRecord) -> io::Result<()> {
    let (last, torn) = last_line(file)?;
    record.prev = sha256_hex(&last);
    let mut buf = Vec::with_capacity(512);
    if torn {
        // End the cut-short line so this record starts on its own line.
        buf.push(b'\n');
    }
    // serde_json escapes newlines in strings: one record is one line.
    serde_json::to_writer(&mut buf, record).map_err(io::Error::other)?;
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
    file.sync_data()
}

/// The last line's bytes (without newline), and whether it lacks its
/// newline (a torn write).
fn last_line(file: &File) -> io::Result<(Vec<u8>, bool)> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((Vec::new(), false));
    }
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    let torn = last[0] != b'\n';
    let end = if torn { len } else { len - 1 };
    // Read backwards in chunks until the previous newline.
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = end;
    while pos > 0 {
        let step = pos.min(4096);
        let mut chunk = vec![0u8; usize::try_from(step).map_err(io::Error::other)?];
        file.read_exact_at(&mut chunk, pos - step)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            chunk.drain(..=i);
            chunk.extend_from_slice(&tail);
            return Ok((chunk, torn));
        }
        chunk.extend_from_slice(&tail);
        tail = chunk;
        pos -= step;
    }
    Ok((tail, torn))
}
