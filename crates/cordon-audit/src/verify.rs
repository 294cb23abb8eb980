//! Checking the log: every line a record, every record chained to the one
//! before it, every checkpoint signed by a known key and true of the chain,
//! and the log at least as long as its latest checkpoint says.
//!
//! What each check catches:
//!
//! - the chain: an edited, removed, reordered or inserted line, unless
//!   everything after it was re-chained;
//! - the checkpoints in the log: re-chaining of anything before the last
//!   one (the signed chain head no longer matches), by anyone without the
//!   key;
//! - the latest checkpoint, kept outside the log in protected state:
//!   re-chaining of anything it covers (every record a writer appended), and
//!   truncation of the tail (the log is shorter than it says).
//!
//! A line cut short by a crash (a write that never finished) is reported as
//! torn, never as tampering: as the last line, or followed by a line that
//! chains over it, as the next append does.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::checkpoint::{self, Checkpoint, NoteError, Verifier};
use crate::log::KeyFolder;
use crate::record::{hex, AuditRecord};

/// Where and how the log is broken.
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
    /// A line is not an audit record.
    #[error("{}:{line}: not an audit record ({reason}); it was edited", path.display())]
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
    /// A checkpoint is there but there is no key to check it with.
    #[error("{}: cannot check the checkpoint {where_}: no verifier key is known", path.display())]
    NoKey {
        /// The log.
        path: PathBuf,
        /// `on line N`, or `kept in FILE`.
        where_: String,
    },
    /// A checkpoint's signature does not verify (another key, or edited).
    #[error("{}: the checkpoint {where_} does not verify: {reason}; it was forged or edited", path.display())]
    BadCheckpoint {
        /// The log.
        path: PathBuf,
        /// `on line N`, or `kept in FILE`.
        where_: String,
        /// Why.
        reason: NoteError,
        /// 1-based line, for a checkpoint in the log.
        line: Option<usize>,
    },
    /// A signed checkpoint disagrees with the chain: the lines it covers
    /// were changed and re-chained.
    #[error("{}:{line}: the chain differs from the signed checkpoint {where_} ({size} lines): records up to line {line} were changed and re-chained", path.display())]
    Rechained {
        /// The log.
        path: PathBuf,
        /// `on line N`, or `kept in FILE`.
        where_: String,
        /// The lines the checkpoint covers.
        size: u64,
        /// 1-based line where the chain differs.
        line: usize,
    },
    /// The log is shorter than its latest checkpoint says.
    #[error("{}: truncated: the latest checkpoint ({}) covers {size} lines, the log has {lines}; records after line {lines} were removed", path.display(), anchor.display())]
    Truncated {
        /// The log.
        path: PathBuf,
        /// The latest checkpoint's file.
        anchor: PathBuf,
        /// The lines it covers.
        size: u64,
        /// The lines the log has.
        lines: usize,
    },
}

impl VerifyError {
    /// The 1-based line the problem was found on, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            VerifyError::Read { .. } | VerifyError::NoKey { .. } | VerifyError::Truncated { .. } => None,
            VerifyError::BadCheckpoint { line, .. } => *line,
            VerifyError::HeadRemoved { .. } => Some(1),
            VerifyError::Malformed { line, .. }
            | VerifyError::Reordered { line, .. }
            | VerifyError::Broken { line, .. }
            | VerifyError::Rechained { line, .. } => Some(*line),
        }
    }
}

/// What [`verify`] checks signatures and the tail against.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Keys whose checkpoints are accepted.
    pub verifiers: Vec<Verifier>,
    /// The file holding the log's latest checkpoint; `None`: the tail is not
    /// checked.
    pub anchor: Option<PathBuf>,
}

impl Trust {
    /// The verifier keys and the latest checkpoint cordon keeps for the log
    /// at `log` in `keys` (see [`KeyFolder`]).
    pub fn for_log(log: &Path, keys: &KeyFolder) -> Trust {
        match keys.resolve(log) {
            Some(dir) => {
                Trust { verifiers: checkpoint::known_verifiers(&dir), anchor: Some(checkpoint::anchor_path(&dir, log)) }
            }
            None => Trust::default(),
        }
    }
}

/// What [`verify`] found in a log that is intact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Lines in the log.
    pub lines: usize,
    /// Lines that are records (all but torn ones).
    pub records: usize,
    /// Lines cut short by a crash, 1-based: not tampering, but their
    /// records are lost (the runs are recorded as `LOST`).
    pub torn: Vec<usize>,
    /// Checkpoints in the log, each verified.
    pub checkpoints: usize,
    /// The latest checkpoint kept outside the log, when there is one: the
    /// lines it covers and the key that signed it.
    pub latest: Option<(u64, String)>,
}

struct Line {
    hash: [u8; 32],
    /// `prev` and `checkpoint`, or why the line is not a record.
    parsed: Result<(String, Option<String>), String>,
    /// It ends without a newline.
    unterminated: bool,
}

/// Checks the log at `path`: every line, the hash chain, every checkpoint,
/// and the latest checkpoint in `trust`. Returns what it found, or the first
/// problem.
pub fn verify(path: &Path, trust: &Trust) -> Result<Verified, VerifyError> {
    let read_err = |source| VerifyError::Read { path: path.to_owned(), source };
    let mut reader = BufReader::new(File::open(path).map_err(read_err)?);
    let mut lines: Vec<Line> = Vec::new();
    let mut first = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(read_err)? == 0 {
            break;
        }
        let unterminated = buf.last() != Some(&b'\n');
        let body = if unterminated { &buf[..] } else { &buf[..buf.len() - 1] };
        if lines.is_empty() {
            first = body.to_vec();
        }
        let parsed =
            serde_json::from_slice::<AuditRecord>(body).map(|r| (r.prev, r.checkpoint)).map_err(|e| e.to_string());
        lines.push(Line { hash: Sha256::digest(body).into(), parsed, unterminated });
    }
    let hexes: Vec<String> = lines.iter().map(|l| hex(&l.hash)).collect();
    let by_hash: HashMap<&str, usize> = hexes.iter().enumerate().map(|(i, h)| (h.as_str(), i + 1)).collect();
    let origin = Checkpoint::origin_of(&first);
    let mut out = Verified { lines: lines.len(), ..Verified::default() };
    let mut expected = hex(&Sha256::digest(b""));
    for (i, l) in lines.iter().enumerate() {
        let line = i + 1;
        match &l.parsed {
            Ok((prev, cp)) => {
                if *prev != expected {
                    if let Some(&after) = by_hash.get(prev.as_str()) {
                        return Err(VerifyError::Reordered { path: path.to_owned(), line, after });
                    }
                    if line == 1 {
                        return Err(VerifyError::HeadRemoved { path: path.to_owned() });
                    }
                    return Err(VerifyError::Broken { path: path.to_owned(), line });
                }
                out.records += 1;
                if let Some(note) = cp {
                    let where_ = format!("on line {line}");
                    let size = check_note(path, note, trust, &where_, Some(line), &origin, |size| {
                        (size + 1 == line as u64).then(|| lines.get(line - 2).map_or([0; 32], |p| p.hash))
                    })?;
                    debug_assert_eq!(size + 1, line as u64);
                    out.checkpoints += 1;
                }
            }
            Err(reason) => {
                // Cut short by a crash: the last line, without its newline,
                // or a line the next record chains over (the next append
                // ends a torn line before writing its own).
                let chained_over = lines.get(line).is_some_and(|n| matches!(&n.parsed, Ok((p, _)) if *p == hexes[i]));
                if !(l.unterminated || chained_over) {
                    return Err(VerifyError::Malformed { path: path.to_owned(), line, reason: reason.clone() });
                }
                out.torn.push(line);
            }
        }
        expected.clone_from(&hexes[i]);
    }
    if let Some(anchor) = &trust.anchor {
        let notes =
            checkpoint::read_anchor(anchor).map_err(|source| VerifyError::Read { path: anchor.clone(), source })?;
        let where_ = format!("kept in {}", anchor.display());
        let mut damaged = None;
        for note in notes.unwrap_or_default() {
            let mut covered = 0;
            let checked = check_note(path, &note, trust, &where_, None, &origin, |size| {
                covered = size;
                let s = usize::try_from(size).ok()?;
                if s == 0 {
                    return Some(Sha256::digest(b"").into());
                }
                lines.get(s - 1).map(|l| l.hash)
            });
            match checked {
                Ok(size) => {
                    if out.latest.as_ref().is_none_or(|(s, _)| size > *s) {
                        let key = checkpoint::open(&note, &trust.verifiers).map(|(_, v)| v.label()).unwrap_or_default();
                        out.latest = Some((size, key));
                    }
                }
                // A slot a crash tore: the other one stands for it.
                Err(
                    e @ VerifyError::BadCheckpoint {
                        reason: NoteError::Malformed(_) | NoteError::BadSignature(_), ..
                    },
                ) => {
                    damaged.get_or_insert(e);
                }
                Err(VerifyError::Rechained { .. }) if covered > lines.len() as u64 => {
                    return Err(VerifyError::Truncated {
                        path: path.to_owned(),
                        anchor: anchor.clone(),
                        size: covered,
                        lines: lines.len(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        if let (None, Some(e)) = (&out.latest, damaged) {
            return Err(e);
        }
    }
    Ok(out)
}

/// Opens `note` with `trust`'s keys and checks it against the chain:
/// `chain_hash(size)` is the hash of the line the checkpoint should end
/// on, or `None` when the log has no such line. Returns the size.
fn check_note(
    path: &Path,
    note: &str,
    trust: &Trust,
    where_: &str,
    line: Option<usize>,
    origin: &str,
    mut chain_hash: impl FnMut(u64) -> Option<[u8; 32]>,
) -> Result<u64, VerifyError> {
    if trust.verifiers.is_empty() {
        return Err(VerifyError::NoKey { path: path.to_owned(), where_: where_.to_owned() });
    }
    let (cp, _) = checkpoint::open(note, &trust.verifiers).map_err(|reason| VerifyError::BadCheckpoint {
        path: path.to_owned(),
        where_: where_.to_owned(),
        reason,
        line,
    })?;
    let differs = |at: usize| VerifyError::Rechained {
        path: path.to_owned(),
        where_: where_.to_owned(),
        size: cp.size,
        line: at,
    };
    let at = usize::try_from(cp.size).unwrap_or(usize::MAX).max(1);
    match chain_hash(cp.size) {
        Some(h) if h == cp.hash && cp.origin == origin => Ok(cp.size),
        _ => Err(differs(line.unwrap_or(at))),
    }
}
