//! The audit trail of executions: one record per run, whatever happened.
//!
//! This module owns the part of auditing that surrounds a run: where the
//! log is ([`log_path`]), opening it and recording the runs an earlier
//! cordon did not see end ([`AuditTrail::open`]), marking a run as started
//! before anything runs ([`AuditTrail::begin`]), and turning its
//! [`ExecutionResult`] into a record ([`AuditedRun::complete`]). The log
//! format, the hash chain, verification and filtering live in
//! `cordon_plugin::audit` and are re-exported here.
//!
//! # Guarantees
//!
//! - Every run started through [`run_audited`] (`cordon run`) or
//!   [`run_handler`](crate::plugin::run_handler) with a trail (`cordon exec`)
//!   ends up with exactly one record: `ok`, its error code (`TIMEOUT`,
//!   `MEMORY_LIMIT`, `SETUP_FAILED`, ...), or `LOST`.
//! - A run whose start cannot be recorded does not start (fail closed): its
//!   result is `SETUP_FAILED` naming the log.
//! - If cordon is killed (SIGKILL included) between the start and the
//!   record, the run's marker stays in `pending/` next to the log and the
//!   next [`AuditTrail::open`] on that log appends a `lost: true` record with
//!   outcome `LOST` for it. Records are never written from a signal handler.
//! - Secret values (DESIGN.md, env) are replaced by `***` in every free-text
//!   field of the record, as in logs and results.
//!
//! # Where the log is
//!
//! `--audit-log PATH`, else `$CORDON_AUDIT_LOG`, else
//! `$XDG_STATE_HOME/cordon/audit.jsonl`, else
//! `~/.local/state/cordon/audit.jsonl`.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use cordon_core::policy::{Mode, Policy};

pub use cordon_plugin::audit::{
    filter, parse_time, policy_digest, recover_lost, verify, AuditLog, AuditRecord, Filter, Filtered, Pending,
    TimeError, VerifyError, OUTCOME_LOST, OUTCOME_OK,
};
pub use cordon_plugin::traceparent::{TraceParent, TraceParentError, ENV as TRACEPARENT_ENV};

use crate::result::{ErrorCode, ExecutionResult, Logs, Metrics, ResultError};
use crate::runner::RunRequest;

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
    /// The start marker could not be written; the run must not start.
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
}

/// The audit log's path: `flag`, else `$CORDON_AUDIT_LOG`, else
/// [`AuditLog::default_path`].
pub fn log_path(flag: Option<&Path>) -> Result<PathBuf, AuditError> {
    log_path_from(flag, std::env::var_os(LOG_ENV), AuditLog::default_path())
}

fn log_path_from(flag: Option<&Path>, env: Option<OsString>, default: Option<PathBuf>) -> Result<PathBuf, AuditError> {
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

/// What a run is, for its record: everything but the outcome.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    /// W3C trace id, 32 hex digits.
    pub trace_id: String,
    /// On whose behalf.
    pub tenant: Option<String>,
    /// Plugin id (`cordon exec`).
    pub plugin: Option<String>,
    /// Plugin version.
    pub plugin_version: Option<String>,
    /// Handler name.
    pub handler: Option<String>,
    /// The argv (`cordon run`, and the handler's command).
    pub command: Option<Vec<String>>,
}

impl AuditTrail {
    /// Opens (creating it if needed) the log at `path` and records every run
    /// an earlier cordon left unfinished on it as lost (see the module
    /// docs). [`AuditTrail::recovered`] says how many.
    pub fn open(path: &Path) -> Result<AuditTrail, AuditError> {
        let log = AuditLog::open(path).map_err(|source| AuditError::Open { path: path.to_owned(), source })?;
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

    /// Marks run `request_id` as started. Until [`AuditedRun::complete`],
    /// a cordon that dies leaves the run to be recorded as lost.
    pub fn begin(&self, subject: &Subject, request_id: &str, mode: Option<Mode>) -> Result<AuditedRun, AuditError> {
        let draft = draft(subject, request_id, mode);
        let pending = self.log.begin(&draft).map_err(|source| AuditError::Begin {
            path: self.log.path().to_owned(),
            request_id: request_id.to_owned(),
            source,
        })?;
        Ok(AuditedRun { pending, draft, path: self.log.path().to_owned() })
    }

    /// Records `result` of a run that never got as far as
    /// [`AuditTrail::begin`] (a bad flag, manifest or input).
    /// `mode` is the mode asked for, if one was known by then; the record's
    /// `mode` is empty otherwise.
    pub fn record_unstarted(
        &self,
        subject: &Subject,
        result: &ExecutionResult,
        mode: Option<Mode>,
        policy_digest: &str,
        secrets: &[String],
    ) -> Result<AuditRecord, AuditError> {
        let mut record = finish(draft(subject, &result.request_id, mode), result, policy_digest, secrets);
        record.mode = mode.map_or("", Mode::as_str).to_owned();
        self.log.append(record.clone()).map_err(|source| AuditError::Append {
            path: self.log.path().to_owned(),
            request_id: result.request_id.clone(),
            source,
        })?;
        Ok(record)
    }
}

fn draft(subject: &Subject, request_id: &str, mode: Option<Mode>) -> AuditRecord {
    let mut r = AuditRecord::new(request_id, &subject.trace_id, mode.map_or("", Mode::as_str));
    r.tenant.clone_from(&subject.tenant);
    r.plugin.clone_from(&subject.plugin);
    r.plugin_version.clone_from(&subject.plugin_version);
    r.handler.clone_from(&subject.handler);
    r.command.clone_from(&subject.command);
    r
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
    /// Appends the run's record: outcome, error, duration, CPU, peak
    /// memory and network summary from `result`, with `secrets` redacted.
    pub fn complete(
        self,
        result: &ExecutionResult,
        policy_digest: &str,
        secrets: &[String],
    ) -> Result<AuditRecord, AuditError> {
        let record = finish(self.draft, result, policy_digest, secrets);
        self.pending.complete(record.clone()).map_err(|source| AuditError::Append {
            path: self.path,
            request_id: result.request_id.clone(),
            source,
        })?;
        Ok(record)
    }
}

fn finish(mut r: AuditRecord, result: &ExecutionResult, policy_digest: &str, secrets: &[String]) -> AuditRecord {
    r.mode = result.mode.as_str().to_owned();
    r.policy_digest = policy_digest.to_owned();
    r.outcome = match &result.error {
        None => OUTCOME_OK.to_owned(),
        Some(e) => error_code_name(e.code),
    };
    r.error = result.error.as_ref().map(|e| e.message.clone());
    r.duration_ms = result.metrics.wall_ms;
    let started = result.exit.is_some();
    r.cpu_ms = started.then(|| ((result.metrics.cpu_user_ms + result.metrics.cpu_sys_ms) * 1000.0).round() / 1000.0);
    r.peak_rss_kb = started.then_some(result.metrics.peak_rss_kb);
    r.network = network_summary(result);
    cordon_plugin::audit::redact(&mut r, secrets);
    r
}

/// `TIMEOUT`, `SETUP_FAILED`, ...: the code as it appears in results.
pub fn error_code_name(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{code:?}"),
    }
}

/// What the filtering proxy saw, summed up: connections allowed and
/// denied, bytes each way, and the destinations. `None` when the run made
/// no connection through the proxy.
pub fn network_summary(result: &ExecutionResult) -> Option<serde_json::Value> {
    // Read through the result's JSON form: the record needs the summary of
    // whatever the proxy reports, and stays independent of its Rust type.
    let value = serde_json::to_value(result).ok()?;
    let conns = value.get("network")?.as_array()?;
    if conns.is_empty() {
        return None;
    }
    let mut allowed = 0u64;
    let (mut up, mut down) = (0u64, 0u64);
    let mut hosts: Vec<String> = vec![];
    let mut denied_hosts: Vec<String> = vec![];
    for c in conns {
        let dest = format!("{}:{}", c["host"].as_str().unwrap_or(""), c["port"].as_u64().unwrap_or(0));
        up += c["bytes_up"].as_u64().unwrap_or(0);
        down += c["bytes_down"].as_u64().unwrap_or(0);
        let list = if c["allowed"] == true {
            allowed += 1;
            &mut hosts
        } else {
            &mut denied_hosts
        };
        if !list.contains(&dest) {
            list.push(dest);
        }
    }
    Some(serde_json::json!({
        "connections": conns.len(),
        "allowed": allowed,
        "denied": conns.len() as u64 - allowed,
        "bytes_up": up,
        "bytes_down": down,
        "hosts": hosts,
        "denied_hosts": denied_hosts,
    }))
}

/// The values that must not show in a run's result or record: the
/// runner's own rule (passed or set variables whose names look secret, or
/// are marked secret), and, because an argv or an error message can carry
/// a value the policy never passed, every value of `host_env` whose name
/// looks secret.
pub fn secret_values(policy: &Policy, host_env: &[(String, String)]) -> Vec<String> {
    let env = policy.env.build(host_env.iter().cloned(), "/");
    let mut out = policy.env.secret_values(&env);
    out.extend(host_secret_values(host_env));
    out.sort();
    out.dedup();
    // Longest first, so a secret that contains another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// Values of `host_env` whose names look secret (at least 4 bytes long,
/// as the runner requires).
pub fn host_secret_values(host_env: &[(String, String)]) -> Vec<String> {
    host_env
        .iter()
        .filter(|(k, v)| v.len() >= 4 && cordon_core::policy::env::looks_secret(k))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Replaces secrets in the parts of a result the runner does not redact
/// (error message, warnings). Logs and `data` are redacted by the runner.
pub fn redact_result(result: &mut ExecutionResult, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let redact = cordon_core::policy::env::redact;
    if let Some(e) = &mut result.error {
        e.message = redact(&e.message, secrets);
    }
    for w in &mut result.warnings {
        *w = redact(w, secrets);
    }
}

/// A result for a run that did not start: `SETUP_FAILED` with `message`.
pub fn unstarted_result(request_id: &str, mode: Mode, message: String) -> ExecutionResult {
    ExecutionResult {
        ok: false,
        request_id: request_id.to_owned(),
        mode,
        exit: None,
        error: Some(ResultError { code: ErrorCode::SetupFailed, message }),
        data: None,
        metrics: Metrics::default(),
        logs: Logs::default(),
        warnings: vec![],
        enforcement: vec![],
        network: vec![],
    }
}

/// Runs `req` with its audit record: the start is marked before anything
/// runs (a run whose start cannot be recorded does not start), the record
/// is appended when it ends. A record that cannot be appended is reported
/// in the result's `warnings`, and the run is recorded as lost later.
pub fn run_audited(req: &RunRequest, trail: &AuditTrail, subject: &Subject) -> ExecutionResult {
    let mut req = req.clone();
    let request_id = req.request_id.get_or_insert_with(crate::new_request_id).clone();
    let secrets = secret_values(&req.policy, &req.host_env);
    let digest = policy_digest(&req.policy);
    let started = match trail.begin(subject, &request_id, Some(req.mode)) {
        Ok(s) => s,
        Err(e) => {
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            let mut r = unstarted_result(&request_id, req.mode, format!("{e}{cause}\nhint: {}", e.hint()));
            redact_result(&mut r, &secrets);
            return r;
        }
    };
    let mut result = crate::run(&req);
    redact_result(&mut result, &secrets);
    if let Err(e) = started.complete(&result, &digest, &secrets) {
        let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
        result.warnings.push(format!("{e}{cause}; {}", e.hint()));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_variable_beats_default() {
        let flag = Path::new("/a/flag.jsonl");
        let env = Some(OsString::from("/b/env.jsonl"));
        let default = Some(PathBuf::from("/c/default.jsonl"));
        assert_eq!(log_path_from(Some(flag), env.clone(), default.clone()).unwrap(), flag);
        assert_eq!(log_path_from(None, env, default.clone()).unwrap(), Path::new("/b/env.jsonl"));
        assert_eq!(log_path_from(None, Some(OsString::new()), default.clone()).unwrap(), Path::new("/c/default.jsonl"));
        assert!(matches!(log_path_from(None, None, None), Err(AuditError::NoLocation)));
    }

    #[test]
    fn a_record_carries_the_outcome_and_no_secret() {
        let mut result = unstarted_result("01JTEST", Mode::Process, "no such file: hunter22-token".into());
        result.metrics.wall_ms = 4.5;
        let subject = Subject {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            command: Some(vec!["cat".into(), "hunter22-token".into()]),
            ..Subject::default()
        };
        let r = finish(draft(&subject, "01JTEST", None), &result, "abc", &["hunter22-token".into()]);
        assert_eq!(r.outcome, "SETUP_FAILED");
        assert_eq!(r.mode, "process");
        assert_eq!(r.duration_ms, 4.5);
        assert_eq!(r.cpu_ms, None, "a run that never started used no CPU of its own");
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("hunter22"), "{json}");
    }
}
