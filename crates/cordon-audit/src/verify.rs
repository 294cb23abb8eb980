//! Checking the log: every line a record, every record chained to the one
//! before it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::record::{sha256_hex, AuditRecord};

/// Where and how the chain is broken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The log could not be read.
    #[error("cannot read audit log {}", path.display())]
    Read {
        /// The log.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The last line has no newline: a write was cut short.
    #[error("{}:{line}: torn record: the last line ends without a newline (a write was cut short)", path.display())]
    Torn {
        /// The log.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A line is not an audit record.
    #[error("{}:{line}: not an audit record ({reason}); it was edited or torn by a cut-short write", path.display())]
    Malformed {
        /// The log.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        reason: String,
    },
    /// The first line does not start the chain.
    #[error("{}:1: the first record does not start the chain; records before it were removed", path.display())]
    HeadRemoved {
        /// The log.
        path: PathBuf,
    },
    /// A line chains to a line other than its predecessor.
    #[error("{}:{line}: record out of order: it was written right after the record now on line {after}", path.display())]
    Reordered {
        /// The log.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line it was written after.
        after: usize,
    },
    /// A line does not chain to anything in the file.
    #[error("{}:{line}: hash chain broken: line {} was edited, or records between lines {} and {line} were removed", path.display(), line - 1, line - 1)]
    Broken {
        /// The log.
        path: PathBuf,
        /// 1-based line number of the first record whose `prev` is wrong.
        line: usize,
    },
}

impl VerifyError {
    /// The 1-based line the problem was found on, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            VerifyError::Read { .. } => None,
            VerifyError::HeadRemoved { .. } => Some(1),
            VerifyError::Torn { line, .. }
            | VerifyError::Malformed { line, .. }
            | VerifyError::Reordered { line, .. }
            | VerifyError::Broken { line, .. } => Some(*line),
        }
    }
}

/// Checks every line of the log and the hash chain. Returns the number of
/// records, or the first problem with its line number.
pub fn verify(path: &Path) -> Result<usize, VerifyError> {
    let read_err = |source| VerifyError::Read { path: path.to_owned(), source };
    let reader = BufReader::new(File::open(path).map_err(read_err)?);
    // First pass: hash and parse every line, so a record's predecessor can
    // be looked up wherever it now is.
    let mut lines: Vec<(String, Result<String, String>)> = Vec::new();
    let mut reader = reader;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(read_err)? == 0 {
            break;
        }
        let line = lines.len() + 1;
        if buf.last() != Some(&b'\n') {
            return Err(VerifyError::Torn { path: path.to_owned(), line });
        }
        let body = &buf[..buf.len() - 1];
        let parsed = serde_json::from_slice::<AuditRecord>(body).map(|r| r.prev).map_err(|e| e.to_string());
        lines.push((sha256_hex(body), parsed));
    }
    let by_hash: HashMap<&str, usize> = lines.iter().enumerate().map(|(i, (h, _))| (h.as_str(), i + 1)).collect();
    let mut expected = sha256_hex(b"");
    for (i, (hash, prev)) in lines.iter().enumerate() {
        let line = i + 1;
        let prev = prev.as_ref().map_err(|reason| VerifyError::Malformed {
            path: path.to_owned(),
            line,
            reason: reason.clone(),
        })?;
        if *prev != expected {
            if let Some(&after) = by_hash.get(prev.as_str()) {
                return Err(VerifyError::Reordered { path: path.to_owned(), line, after });
            }
            if line == 1 {
                return Err(VerifyError::HeadRemoved { path: path.to_owned() });
            }
            return Err(VerifyError::Broken { path: path.to_owned(), line });
        }
        expected.clone_from(hash);
    }
    Ok(lines.len())
}
