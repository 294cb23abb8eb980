//! cordon-audit: the audit trail of executions, one record per run whatever
//! happened.
//!
//! This crate is the one home of auditing: the record ([`AuditRecord`], its
//! [`Subject`] and [`Outcome`]), the hash-chained log ([`AuditLog`]), the
//! trail around a run ([`AuditTrail::begin`], [`AuditedRun::complete`]) and
//! the recovery of runs a dead cordon left unfinished ([`recover_lost`]),
//! verification ([`verify`]) and filtering ([`filter`]). The CLI (`cordon
//! run`, `exec`, `audit`) records through [`AuditTrail`], one commit per
//! run; a long-running service (the gateway, a scale-out worker) through
//! [`GroupWriter`], many records per `fdatasync`, answering each caller once
//! its own begin or record is durable (see its module docs, with an
//! example). It runs nothing itself.
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
//! - If cordon is killed (SIGKILL included) at any point between the start
//!   and the record, the next [`AuditTrail::open`] on that log appends a
//!   `lost: true` record with outcome `LOST` for the run, unless its record
//!   made it into the log first. Records are never written from a signal
//!   handler.
//! - The log is never torn by concurrent writers, and its chain never
//!   forks.
//! - Secret values are replaced by `***` in every free-text field of the
//!   record ([`redact`]), as in logs and results.
//!
//! # One durable write per run
//!
//! A run costs exactly one `fdatasync`: its record's. Everything else is a
//! `write(2)` that only has to outlive the *process*, not the machine:
//!
//! - [`AuditTrail::begin`] writes one line to the run journal,
//!   `<log>.inflight` (the draft record, the log's size, the runs open
//!   after it), under an exclusive `flock` of the journal, and locks the
//!   first byte of that line with an open-file-description lock that the
//!   kernel releases when the process dies, however it dies. Not synced.
//! - [`AuditedRun::complete`] appends the record under an exclusive `flock`
//!   of the log (one `write(2)` on an `O_APPEND` descriptor held since the
//!   open), `fdatasync`s it, keeps the signed latest checkpoint (one
//!   `pwrite`, not synced), then ends the journal line: the last open run's
//!   end truncates the journal to nothing, so it is empty between runs.
//! - [`AuditTrail::open`] reads nothing more than the journal's size when it
//!   is empty. Otherwise it reads the journal's last line (the open runs)
//!   and asks the kernel, per run, whether its byte lock is still held; a
//!   run whose lock is gone and whose record is not in the log after the
//!   size the log had at its begin gets its `LOST` record.
//!
//! What this guarantees, precisely:
//!
//! - **cordon killed** (SIGKILL, OOM kill, crash of the process) at any
//!   point: nothing written is lost, because the page cache outlives the
//!   process. A begin line written means `LOST` later unless the record
//!   follows; a record written is found, so no second record is added. The
//!   kernel copies a write page by page and a kill can land between two
//!   pages, so a record that spans a page boundary can be cut short: that
//!   leaves a torn line, which the next append ends and [`verify`]
//!   reports as torn; the run is then recorded `LOST`.
//! - **machine crash** (power loss, kernel panic): the run dies with the
//!   machine. A run whose `complete` returned has its record on disk. A run
//!   in flight has a `LOST` record after the reboot if its begin line
//!   reached the disk (the kernel wrote it back), and no record otherwise;
//!   the same holds for anything the run itself wrote without syncing.
//!   Checkpoints and the journal may come back older, which makes `verify`
//!   check less, never wrongly.
//! - **concurrent writers** (processes, or threads sharing one
//!   [`AuditLog`]): the `flock` (and, within a process, a mutex) serialises
//!   appends, so each record chains onto the one before it; one `write(2)`
//!   per record on an `O_APPEND` descriptor keeps records whole.
//!
//! The first run on a new log also syncs the new folder entry and creates
//! the audit key (a synced file): once per log and key, not per run.
//!
//! # Where the log is
//!
//! `--audit-log PATH`, else `$CORDON_AUDIT_LOG`, else
//! `$XDG_STATE_HOME/cordon/audit.jsonl`, else
//! `~/.local/state/cordon/audit.jsonl` ([`log_path`]).
//!
//! # Current limitations
//!
//! Times are UTC.
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
//! processes at once, including child processes SIGKILLed mid-run and at
//! arbitrary points of a stream of runs. The CLI
//! suite checks that every `cordon run` and `exec` of the whole suite leaves
//! exactly one record.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod checkpoint;
mod filter;
mod group;
mod journal;
mod log;
mod record;
mod trail;
mod verify;

pub use checkpoint::{Anchor, AuditKey, Checkpoint, KeyError, NoteError, Verifier};
pub use filter::{filter, package_prefix, parse_time, Filter, Filtered, HashError, TimeError, MIN_HASH_PREFIX};
pub use group::{BeginCommit, Commit, GroupOptions, GroupRun, GroupStats, GroupWriter};
pub use journal::JOURNAL_SUFFIX;
pub use log::{Appended, AuditLog, KeyFolder, CHECKPOINT_EVERY, LOG_FILE};
pub use record::{
    host_secret_values, network_summary, now_rfc3339, policy_digest, redact, redacted_subject, secret_values,
    AuditRecord, Ending, ErrorCode, Outcome, Subject, UnknownOutcome,
};
pub use trail::{log_path, rejected_journal_lines, AuditError, AuditTrail, AuditedRun, LOG_ENV};
pub use verify::{verify, Trust, Verified, VerifyError};

#[cfg(test)]
mod tests;
