//! The trail around a run: where the log is, opening it (recording the runs
//! an earlier cordon left unfinished), marking a run as started before
//! anything runs, and appending its record when it ends.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use cordon_core::policy::Mode;
use cordon_core::state::Protected;

use std::sync::Arc;

use crate::journal::{self, lost, Begun, Journal, Rejected};
use crate::log::{AuditLog, KeyFolder};
use crate::record::{AuditRecord, Ending, Subject};

/// The variable naming the audit log when no `--audit-log` is given.
pub const LOG_ENV: &str = "CORDON_AUDIT_LOG";

/// The audit log cannot be found, opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// No flag, no variable, and no absolute `HOME` or `XDG_STATE_HOME`.
    #[error("no audit log location: neither --audit-log, CORDON_AUDIT_LOG, XDG_STATE_HOME nor HOME is set")]
    NoLocation,
    /// The log (or its folder) cannot be created or opened.
    #[error("cannot open the audit log {}", path.display())]
    Open {
        /// The log.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Runs left pending by a killed cordon could not be recorded.
    #[error("cannot record the runs an earlier cordon left unfinished in {}", path.display())]
    Recover {
        /// The log.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The start could not be recorded; the run must not start.
    #[error("cannot record the start of run {request_id} next to the audit log {}", path.display())]
    Begin {
        /// The log.
        path: PathBuf,
        /// The run.
        request_id: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A group writer (`cordon serve`) records into this log; nothing else
    /// may.
    #[error("the audit log {} is written by a running service (cordon serve), which records only its own runs", path.display())]
    Owned {
        /// The log.
        path: PathBuf,
    },
    /// Runs of other cordon processes are in flight on this log, so a group
    /// writer cannot take it.
    #[error("cordon run or exec (pid {pid}) is still recording into the audit log {}", path.display())]
    Busy {
        /// The log.
        path: PathBuf,
        /// One of the processes.
        pid: u32,
    },
    /// The group writer's thread is gone (shut down, or it panicked).
    #[error("the audit writer of {} has stopped", path.display())]
    WriterGone {
        /// The log.
        path: PathBuf,
    },
    /// The record could not be appended.
    #[error("cannot append the record of run {request_id} to the audit log {}", path.display())]
    Append {
        /// The log.
        path: PathBuf,
        /// The run.
        request_id: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl AuditError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            AuditError::Append { .. } => {
                "the run stays in the log's run journal; the next cordon that can write the log records it as LOST"
            }
            AuditError::Owned { .. } => "give this command a log of its own (--audit-log PATH or CORDON_AUDIT_LOG)",
            AuditError::Busy { .. } => "wait for it to finish, or give the service a log of its own",
            _ => "pass --audit-log PATH or set CORDON_AUDIT_LOG to a file in a folder you can write",
        }
    }

    /// The message, its cause and the hint, for people.
    pub fn render(&self) -> String {
        let cause = std::error::Error::source(self).map(|s| format!(": {s}")).unwrap_or_default();
        format!("{self}{cause}\nhint: {}", self.hint())
    }
}

/// What to tell the user when opening the log at `log` found `lines` lines
/// of its run journal without a valid MAC ([`AuditTrail::rejected`],
/// [`crate::GroupWriter::rejected`]): one line, then a `hint:` line.
pub fn rejected_journal_lines(lines: usize, log: &Path) -> String {
    format!(
        "{lines} line(s) of the run journal {}{} had no valid MAC: forged by a process that could write that folder (a sandbox with a write grant on it), or damaged; recorded as one JOURNAL_FORGED record in the log, not as the runs they name\nhint: keep the audit log in a folder no sandbox may write; `cordon audit --outcome JOURNAL_FORGED` lists these records",
        log.display(),
        crate::JOURNAL_SUFFIX,
    )
}

/// The audit log's path: `flag`, else `$CORDON_AUDIT_LOG`, else
/// [`AuditLog::default_path`].
pub fn log_path(flag: Option<&Path>) -> Result<PathBuf, AuditError> {
    log_path_from(flag, std::env::var_os(LOG_ENV), AuditLog::default_path())
}

pub(crate) fn log_path_from(
    flag: Option<&Path>,
    env: Option<OsString>,
    default: Option<PathBuf>,
) -> Result<PathBuf, AuditError> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    if let Some(p) = env.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    default.ok_or(AuditError::NoLocation)
}

/// An opened audit log, ready to record runs.
#[derive(Clone, Debug)]
pub struct AuditTrail {
    log: AuditLog,
    journal: Arc<Journal>,
    recovered: usize,
    rejected: usize,
}

impl AuditTrail {
    /// Opens (creating it if needed) the log at `path`, with the audit key
    /// in cordon's state folder, and records every run an earlier cordon
    /// left unfinished on it as lost (see the crate docs).
    /// [`AuditTrail::recovered`] says how many.
    pub fn open(path: &Path) -> Result<AuditTrail, AuditError> {
        AuditTrail::open_with(path, &KeyFolder::State)
    }

    /// [`AuditTrail::open`] with the audit key and latest checkpoints in
    /// `keys`.
    pub fn open_with(path: &Path, keys: &KeyFolder) -> Result<AuditTrail, AuditError> {
        AuditTrail::open_as(path, AuditLog::open_with(path, keys))
    }

    /// [`AuditTrail::open`], the audit key loaded on a thread of its own
    /// while the caller prepares its run (see
    /// [`AuditLog::open_loading_key_behind`]): [`AuditTrail::key_ready`]
    /// waits for it, and [`AuditTrail::begin`] refuses a run with the
    /// error [`AuditTrail::open`] would have given when the key cannot be
    /// loaded.
    pub fn open_loading_key_behind(path: &Path) -> Result<AuditTrail, AuditError> {
        AuditTrail::open_as(path, AuditLog::open_loading_key_behind(path, &KeyFolder::State))
    }

    pub(crate) fn open_as(path: &Path, log: std::io::Result<AuditLog>) -> Result<AuditTrail, AuditError> {
        let open_err = |source| AuditError::Open { path: path.to_owned(), source };
        let log = log.map_err(open_err)?;
        if log.owned_by_another().map_err(open_err)? {
            return Err(AuditError::Owned { path: path.to_owned() });
        }
        cordon_core::trace::step("audit: log and key opened");
        let journal = Arc::new(Journal::open(path).map_err(open_err)?);
        let recover_err = |source| AuditError::Recover { path: path.to_owned(), source };
        let (recovered, rejected) = recover_journal(&log, &journal).map_err(recover_err)?;
        Ok(AuditTrail { log, journal, recovered, rejected })
    }

    /// Waits for the audit key (see
    /// [`AuditTrail::open_loading_key_behind`]): the error
    /// [`AuditTrail::open`] gives when it cannot be loaded.
    pub fn key_ready(&self) -> Result<(), AuditError> {
        self.log.key_ready().map_err(|source| AuditError::Open { path: self.log.path().to_owned(), source })
    }

    /// How many lost runs [`AuditTrail::open`] recorded.
    pub fn recovered(&self) -> usize {
        self.recovered
    }

    /// How many lines of the run journal [`AuditTrail::open`] found
    /// without a valid MAC (forged by someone who could write the log's
    /// folder, or damaged): recorded as one `JOURNAL_FORGED` record, not
    /// as the runs they name. The caller tells its user.
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// The log.
    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    /// The log's files, which no sandbox may reach (see
    /// `cordon_core::state`).
    pub fn protected(&self) -> Vec<Protected> {
        self.log.protected()
    }

    /// Marks run `request_id` as started: one unsynced line in the run
    /// journal. Until [`AuditedRun::complete`], a cordon that dies leaves
    /// the run to be recorded as lost by the next open. An error means the
    /// run must not start.
    pub fn begin(&self, subject: &Subject, request_id: &str, mode: Option<Mode>) -> Result<AuditedRun, AuditError> {
        // A run whose record could not be signed does not start.
        self.key_ready()?;
        let draft = AuditRecord::draft(subject, request_id, mode);
        let begin = || -> io::Result<Option<Begun>> {
            // Loaded by key_ready: no work here.
            let key = self.log.journal_key()?;
            let log_len = self.log.len()?;
            let l = self.journal.lock()?;
            // Under the journal's lock, as a group writer takes the log.
            if self.log.owned_by_another()? {
                return Ok(None);
            }
            l.begin(&draft, log_len, key).map(Some)
        };
        let begun = begin()
            .map_err(|source| AuditError::Begin {
                path: self.log.path().to_owned(),
                request_id: request_id.to_owned(),
                source,
            })?
            .ok_or_else(|| AuditError::Owned { path: self.log.path().to_owned() })?;
        Ok(AuditedRun { log: self.log.clone(), journal: self.journal.clone(), draft, begun })
    }

    /// Records how a run ended that never got as far as
    /// [`AuditTrail::begin`] (a bad flag, manifest or input). `mode` is the
    /// mode asked for, if one was known by then; the record's `mode` is
    /// empty otherwise.
    pub fn record_unstarted(
        &self,
        subject: &Subject,
        request_id: &str,
        mode: Option<Mode>,
        ending: Ending,
        secrets: &[String],
    ) -> Result<AuditRecord, AuditError> {
        let record = AuditRecord::unstarted(subject, request_id, mode, ending, secrets);
        self.log.append(record.clone()).map_err(|source| AuditError::Append {
            path: self.log.path().to_owned(),
            request_id: request_id.to_owned(),
            source,
        })?;
        Ok(record)
    }
}

/// Records as `LOST` the runs of the journal whose owner is gone, unless the
/// log already has their record (the owner died between the two), and lines
/// without a valid MAC as one `JOURNAL_FORGED` record. Holds the journal,
/// then the log, so concurrent recoveries record a run once. Returns how
/// many runs it recorded and how many lines it rejected.
fn recover_journal(log: &AuditLog, journal: &Journal) -> io::Result<(usize, usize)> {
    if journal.is_empty()? {
        return Ok((0, 0));
    }
    // Only now (a journal with lines is rare): the key, waited for.
    let key = log.journal_key()?;
    let held_journal = journal.lock()?;
    let mut rejected = Rejected::default();
    let dead = held_journal.take_dead(key, &mut rejected)?;
    if dead.is_empty() && rejected.is_empty() {
        return Ok((0, 0));
    }
    let held_log = log.lock()?;
    if !rejected.is_empty() {
        held_log.append(&mut rejected.record(&journal::path_of(log.path())))?;
    }
    let mut appended = 0;
    for d in &dead {
        if !held_log.has_record(&d.draft, d.log_len)? {
            held_log.append(&mut lost(d.draft.clone(), d.pid))?;
            appended += 1;
        }
    }
    drop(held_log);
    // Also after rejected lines alone: the line it writes (or the
    // truncation) leaves them behind, so they are reported once.
    held_journal.forget(&dead, key)?;
    Ok((appended, rejected.lines))
}

/// A run between [`AuditTrail::begin`] and its record.
///
/// Dropping it without completing leaves its journal entry: once this
/// process has exited, the next open records the run as lost.
#[derive(Debug)]
#[must_use = "a started run is recorded as lost unless completed"]
pub struct AuditedRun {
    log: AuditLog,
    journal: Arc<Journal>,
    draft: AuditRecord,
    /// Where its journal entry is.
    begun: Begun,
}

impl AuditedRun {
    /// Appends the run's record (its draft finished with `ending`, with
    /// `secrets` redacted; the run's one durable write), then ends its
    /// journal entry. Returns the record as written. A journal entry that
    /// cannot be ended is harmless: the record is found by the next open.
    pub fn complete(self, ending: Ending, secrets: &[String]) -> Result<AuditRecord, AuditError> {
        let request_id = self.draft.request_id.clone();
        let mut record = self.draft.finish(ending, secrets);
        let appended = self.log.append(record.clone()).map_err(|source| AuditError::Append {
            path: self.log.path().to_owned(),
            request_id: request_id.clone(),
            source,
        })?;
        record.seq = Some(appended.seq);
        if let (Ok(key), Ok(j)) = (self.log.journal_key(), self.journal.lock()) {
            let _ = j.end(&request_id, &self.begun, key);
        }
        Ok(record)
    }

    /// Reads what appending the record needs of the log ahead, while the
    /// run's command runs (see [`AuditLog::read_ahead`]).
    pub fn read_ahead(&self) {
        self.log.read_ahead();
    }

    /// The run's request id.
    pub fn request_id(&self) -> &str {
        &self.draft.request_id
    }

    /// Who and what the record names. What becomes known after the begin
    /// (the worker, the command) goes here; a run recorded as `LOST` names
    /// only what its begin knew.
    pub fn subject_mut(&mut self) -> &mut Subject {
        &mut self.draft.subject
    }
}
