//! cordon-audit: the audit trail of executions, one record per run whatever
//! happened.
//!
//! This crate is the one home of auditing: the record ([`AuditRecord`], its
//! [`Subject`] and [`Outcome`]), the hash-chained log ([`AuditLog`]), the
//! trail around a run ([`AuditTrail::begin`], [`AuditedRun::complete`]) and
//! the recovery of runs a dead cordon left unfinished ([`recover_lost`]),
//! verification ([`verify`]) and filtering ([`filter`]). The CLI (`cordon
//! run`, `exec`, `audit`) and the gateway use it; it runs nothing itself.
//!
//! # Format
//!
//! `audit.jsonl` holds one [`AuditRecord`] per line. Each record's `prev` is
//! the lowercase hex SHA-256 of the previous line's bytes (without its
//! newline), or of the empty string for the first line, and its `seq` is
//! its line number. [`verify`] walks the chain and names the first line
//! where it breaks: an edited record breaks the link to the next one, a
//! removed record breaks the link across the gap, a moved record points at a
//! line elsewhere in the file. Fields may be added, none removed or renamed;
//! fields added later are left out when unset, so old logs stay valid.
//!
//! # Signed checkpoints
//!
//! The chain alone has no key: whoever can write the log can remove a record
//! and re-chain the rest. So the log is also signed, with an Ed25519 key kept
//! in cordon's state folder, which no sandbox reaches ([`AuditKey`], created
//! on first use, `0600`). A checkpoint is a [C2SP signed note] whose body is a
//! [C2SP tlog-checkpoint] of the chain: origin (`cordon.audit/` and a hash of
//! the first line), number of lines, and the hash of the last one
//! ([`Checkpoint`]). Defaults:
//!
//! - every [`CHECKPOINT_EVERY`] (100) records, the record carries a
//!   checkpoint of the lines before it (`checkpoint`), so a log copied
//!   elsewhere proves its own history to anyone with the verifier key;
//! - after every append, the latest checkpoint (covering the new record)
//!   replaces the log's file in `audit-checkpoints/` next to the key. It
//!   lives outside the log because truncating the tail of a log cannot be
//!   seen from the log itself.
//!
//! [`verify`] checks the chain, every checkpoint's signature against the
//! known verifier keys (`audit-keys/*.pub`, kept for every key ever made, so
//! rotating is moving `audit.key` away), that each checkpoint is true of the
//! chain (re-chaining changes the hash it signs), and that the log is at
//! least as long as its latest checkpoint (truncation). Checkpoints with no
//! known key to check them are a failure, not a pass. A line cut short by a
//! crash is reported as torn, never as tampering. Not detected: changes to
//! records after the latest checkpoint by someone who can also rewrite the
//! latest checkpoint, i.e. who holds cordon's state folder and its key.
//!
//! [C2SP signed note]: https://c2sp.org/signed-note
//! [C2SP tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
//!
//! # Guarantees
//!
//! - Every run started through [`AuditTrail::begin`] ends up with exactly
//!   one record: `ok`, its error code (`TIMEOUT`, `MEMORY_LIMIT`,
//!   `SETUP_FAILED`, ...), or `LOST`.
//! - A run whose start cannot be recorded must not start: `begin` returns an
//!   error and the caller refuses the run.
//! - If cordon is killed (SIGKILL included) between the start and the
//!   record, the run's marker stays in `pending/` next to the log and the
//!   next [`AuditTrail::open`] on that log appends a `lost: true` record with
//!   outcome `LOST` for it (the marker names the owner's pid and its start
//!   time, so a reused pid is not taken for the live owner). Records are
//!   never written from a signal handler.
//! - Secret values are replaced by `***` in every free-text field of the
//!   record ([`redact`]), as in logs and results.
//!
//! # Durability and concurrency
//!
//! [`AuditLog::append`] takes an exclusive `flock` on the log, reads the last
//! line, writes the new line with a single `write(2)` on an `O_APPEND`
//! descriptor and `fdatasync`s it before unlocking. The lock keeps two
//! processes (or two threads, each append opens its own descriptor) from
//! chaining onto the same predecessor. A cut-short write (disk full, power
//! loss) leaves a line without its newline; the next append terminates it
//! first, so later records stay readable and [`verify`] reports the torn
//! line by number.
//!
//! # Where the log is
//!
//! `--audit-log PATH`, else `$CORDON_AUDIT_LOG`, else
//! `$XDG_STATE_HOME/cordon/audit.jsonl`, else
//! `~/.local/state/cordon/audit.jsonl` ([`log_path`]).
//!
//! # Current limitations
//!
//! Markers are not fsynced (they protect against cordon being killed, not
//! against power loss). Times are UTC.
//!
//! Time stamps are formatted and parsed with `humantime`: a dependency-free
//! crate of a few hundred lines that does exactly RFC 3339 in UTC both ways
//! and parses `--since 2h`-style durations, which hand-written code would
//! duplicate and `time`/`chrono` would bring with far more than needed.
//!
//! # Test strategy
//!
//! Everything here is file-based and unit-tested with temporary folders:
//! logs edited, truncated, reordered and appended to by several threads and
//! processes at once, including a child process SIGKILLed mid-run. The CLI
//! suite checks that every `cordon run` and `exec` of the whole suite leaves
//! exactly one record.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod checkpoint;
mod filter;
mod log;
mod pending;
mod record;
mod trail;
mod verify;

pub use checkpoint::{AuditKey, Checkpoint, KeyError, NoteError, Verifier};
pub use filter::{filter, parse_time, Filter, Filtered, TimeError};
pub use log::{AuditLog, KeyFolder, CHECKPOINT_EVERY, LOG_FILE};
pub use pending::{recover_lost, Pending, PENDING_DIR};
pub use record::{
    host_secret_values, network_summary, now_rfc3339, policy_digest, redact, secret_values, AuditRecord, Ending,
    ErrorCode, Outcome, Subject, UnknownOutcome,
};
pub use trail::{log_path, AuditError, AuditTrail, AuditedRun, LOG_ENV};
pub use verify::{verify, Trust, Verified, VerifyError};

#[cfg(test)]
mod tests;
