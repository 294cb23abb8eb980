//! The trail around a run: where the log is, opening it (recording the runs
//! an earlier cordon left unfinished), marking a run as started before
//! anything runs, and appending its record when it ends.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use cordon_core::policy::Mode;
use cordon_core::state::Protected;

use crate::log::{AuditLog, KeyFolder};
use crate::pending::{recover_lost, Pending};
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
                "the run's start marker stays in the log's pending/ folder; the next cordon that can write the log records the run as LOST"
            }
            _ => "pass --audit-log PATH or set CORDON_AUDIT_LOG to a file in a folder you can write",
        }
    }

    /// The message, its cause and the hint, for people.
    pub fn render(&self) -> String {
        let cause = std::error::Error::source(self).map(|s| format!(": {s}")).unwrap_or_default();
        format!("{self}{cause}\nhint: {}", self.hint())
    }
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
    recovered: usize,
}

impl AuditTrail {
    /// Opens (creating it if needed) the log at `path` and records every run
    /// an earlier cordon left unfinished on it as lost (see the crate
    /// docs). [`AuditTrail::recovered`] says how many.
    pub fn open(path: &Path) -> Result<AuditTrail, AuditError> {
        AuditTrail::open_with(path, &KeyFolder::State)
    }

    /// [`AuditTrail::open`] with the audit key and latest checkpoints in
    /// `keys`.
    pub fn open_with(path: &Path, keys: &KeyFolder) -> Result<AuditTrail, AuditError> {
        let log =
            AuditLog::open_with(path, keys).map_err(|source| AuditError::Open { path: path.to_owned(), source })?;
        let recovered = recover_lost(&log).map_err(|source| AuditError::Recover { path: path.to_owned(), source })?;
        Ok(AuditTrail { log, recovered })
    }

    /// How many lost runs [`AuditTrail::open`] recorded.
    pub fn recovered(&self) -> usize {
        self.recovered
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

    /// Marks run `request_id` as started. Until [`AuditedRun::complete`],
    /// a cordon that dies leaves the run to be recorded as lost. An error
    /// means the run must not start.
    pub fn begin(&self, subject: &Subject, request_id: &str, mode: Option<Mode>) -> Result<AuditedRun, AuditError> {
        let draft = AuditRecord::draft(subject, request_id, mode);
        let pending = self.log.begin(&draft).map_err(|source| AuditError::Begin {
            path: self.log.path().to_owned(),
            request_id: request_id.to_owned(),
            source,
        })?;
        Ok(AuditedRun { pending, draft, path: self.log.path().to_owned() })
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
        let mut record = AuditRecord::draft(subject, request_id, mode).finish(ending, secrets);
        record.mode = mode.map_or("", Mode::as_str).to_owned();
        self.log.append(record.clone()).map_err(|source| AuditError::Append {
            path: self.log.path().to_owned(),
            request_id: request_id.to_owned(),
            source,
        })?;
        Ok(record)
    }
}

/// A run between [`AuditTrail::begin`] and its record.
#[derive(Debug)]
#[must_use = "a started run is recorded as lost unless completed"]
pub struct AuditedRun {
    pending: Pending,
    draft: AuditRecord,
    path: PathBuf,
}

impl AuditedRun {
    /// Appends the run's record: its draft finished with `ending`, with
    /// `secrets` redacted. Returns the record as written (without `prev`).
    pub fn complete(self, ending: Ending, secrets: &[String]) -> Result<AuditRecord, AuditError> {
        let request_id = self.draft.request_id.clone();
        let record = self.draft.finish(ending, secrets);
        self.pending.complete(record.clone()).map_err(|source| AuditError::Append {
            path: self.path,
            request_id,
            source,
        })?;
        Ok(record)
    }

    /// The run's request id.
    pub fn request_id(&self) -> &str {
        &self.draft.request_id
    }
}
