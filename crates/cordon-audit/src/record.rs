//! What one line of the log says: [`AuditRecord`], its [`Subject`] and
//! [`Outcome`], and the redaction applied before a record is written.
//!
//! # Compatibility
//!
//! Fields may be added, none removed or renamed. Fields added after the
//! first release are optional and left out of the JSON when unset, so logs
//! written before them still parse and records written by a newer cordon
//! still read with an older one (unknown fields are ignored).

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use cordon_core::policy::{Mode, Policy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One execution, as recorded. Fields may be added, none removed or renamed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the run started, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The run's request id (the ExecutionResult's).
    pub request_id: String,
    /// Who and what ran: trace, tenant, principal, plugin, handler or
    /// command, package provenance. Its fields are fields of the record.
    #[serde(flatten)]
    pub subject: Subject,
    /// `container`, `process` or `dev`; empty for a run that failed before
    /// its mode was known.
    pub mode: String,
    /// [`policy_digest`] of the effective policy.
    pub policy_digest: String,
    /// [`Outcome::as_str`]: `ok`, an ExecutionResult error code, or `LOST`.
    pub outcome: String,
    /// The error message, when not ok (secrets redacted).
    #[serde(default)]
    pub error: Option<String>,
    /// Wall clock of the run, ms (0 for a lost run).
    #[serde(default)]
    pub duration_ms: f64,
    /// CPU time of every process of the run, ms.
    #[serde(default)]
    pub cpu_ms: Option<f64>,
    /// Peak resident memory, KiB.
    #[serde(default)]
    pub peak_rss_kb: Option<u64>,
    /// What the proxy saw: hosts, bytes, denials ([`network_summary`]).
    #[serde(default)]
    pub network: Option<serde_json::Value>,
    /// True for a record written on a dead cordon's behalf (outcome `LOST`).
    #[serde(default)]
    pub lost: bool,
    /// The record's line number in the log, from 1; set when appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Every `CHECKPOINT_EVERY` records: a signed checkpoint (C2SP signed
    /// note) of the lines before this one; set when appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// SHA-256 of the previous line; set when the record is appended.
    #[serde(default)]
    pub prev: String,
}

/// Who and what a run is, known before it starts: everything a record says
/// but its outcome. Hosts fill what they know (a gateway: tenant, principal,
/// token id, `traceparent`, worker; a registry: the package's provenance)
/// and leave the rest `None`.
///
/// The first six fields are always written (as `null` when unset), the
/// others only when set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// The W3C trace id, 32 hex digits.
    #[serde(default)]
    pub trace_id: String,
    /// The tenant the run was on behalf of, if the host has tenants.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The plugin id, for `cordon exec`.
    #[serde(default)]
    pub plugin: Option<String>,
    /// The plugin's version.
    #[serde(default)]
    pub plugin_version: Option<String>,
    /// The handler's name.
    #[serde(default)]
    pub handler: Option<String>,
    /// The argv, for `cordon run` (and the handler's command).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// The authenticated caller (a token's `sub`, a client id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The `jti` of the access token the request came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_jti: Option<String>,
    /// The caller's whole W3C `traceparent` header, as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The installed package's tree hash (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_tree_hash: Option<String>,
    /// The id of the key that signed the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_key_id: Option<String>,
    /// The package's state when it ran: `signed`, `unsigned`, `invalid` or
    /// `modified` (DESIGN.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_state: Option<String>,
    /// The worker (host, process or pool slot) that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Which attempt this is, from 1, when a host retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The caller's `Idempotency-Key` (a gateway): the caller's name for
    /// the request, scoped to its tenant. Never the request id, which the
    /// host makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl AuditRecord {
    /// A record of a run starting now, outcome `ok` until told otherwise.
    pub fn new(request_id: &str, trace_id: &str, mode: &str) -> AuditRecord {
        AuditRecord {
            time: now_rfc3339(),
            request_id: request_id.to_owned(),
            subject: Subject { trace_id: trace_id.to_owned(), ..Subject::default() },
            mode: mode.to_owned(),
            outcome: Outcome::Ok.as_str().to_owned(),
            ..AuditRecord::default()
        }
    }

    /// The draft of a run starting now: `subject`, the request id and the
    /// mode (empty when not known yet).
    pub fn draft(subject: &Subject, request_id: &str, mode: Option<Mode>) -> AuditRecord {
        AuditRecord {
            time: now_rfc3339(),
            request_id: request_id.to_owned(),
            subject: subject.clone(),
            mode: mode.map_or("", Mode::as_str).to_owned(),
            outcome: Outcome::Ok.as_str().to_owned(),
            ..AuditRecord::default()
        }
    }

    /// The record of a request that never began a run (a bad flag,
    /// manifest or input): `mode` is the mode asked for, if one was known;
    /// the record's `mode` is empty otherwise.
    pub fn unstarted(
        subject: &Subject,
        request_id: &str,
        mode: Option<Mode>,
        ending: Ending,
        secrets: &[String],
    ) -> AuditRecord {
        let mut record = AuditRecord::draft(subject, request_id, mode).finish(ending, secrets);
        record.mode = mode.map_or("", Mode::as_str).to_owned();
        record
    }

    /// Fills in how the run ended, with `secrets` redacted.
    pub fn finish(mut self, ending: Ending, secrets: &[String]) -> AuditRecord {
        let Ending { mode, outcome, error, duration_ms, cpu_ms, peak_rss_kb, network, policy_digest } = ending;
        self.mode = mode.as_str().to_owned();
        self.outcome = outcome.as_str().to_owned();
        self.error = error;
        self.duration_ms = duration_ms;
        self.cpu_ms = cpu_ms;
        self.peak_rss_kb = peak_rss_kb;
        self.network = network;
        self.policy_digest = policy_digest;
        redact(&mut self, secrets);
        self
    }
}

/// How a run ended: what a record adds to its draft.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    /// The mode it ran in (or was asked for).
    pub mode: Mode,
    /// `ok` or why not.
    pub outcome: Outcome,
    /// The error message, when not ok.
    pub error: Option<String>,
    /// Wall clock, ms.
    pub duration_ms: f64,
    /// CPU of every process of the run, ms; `None` when nothing started.
    pub cpu_ms: Option<f64>,
    /// Peak resident memory, KiB; `None` when nothing started.
    pub peak_rss_kb: Option<u64>,
    /// [`network_summary`] of the connections, if any.
    pub network: Option<serde_json::Value>,
    /// [`policy_digest`] of the effective policy; empty when none was built.
    pub policy_digest: String,
}

/// Machine-readable reason a run is not `ok`: the `error.code` of an
/// ExecutionResult and the `outcome` of its audit record, spelled the same
/// in both (`TIMEOUT`, `SETUP_FAILED`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The wall-clock limit ended it.
    Timeout,
    /// The memory limit ended it.
    MemoryLimit,
    /// The CPU limit ended it.
    CpuLimit,
    /// The process limit was reached.
    PidsLimit,
    /// The output capture limit was reached.
    OutputLimit,
    /// cordon failed before the command started.
    SetupFailed,
    /// The command was not found.
    NotFound,
    /// The command could not be executed.
    NotExecutable,
    /// It exited with a non-zero code.
    NonzeroExit,
    /// A signal killed it.
    Killed,
    /// `SIGINT` ended it: a Ctrl-C on the caller's terminal (relayed through
    /// the run's pty, or forwarded by cordon) or an interrupt sent to cordon.
    Interrupted,
    /// The handler's result was missing or malformed.
    InvalidResult,
    /// The caller cancelled the run (a gateway's `DELETE`); never set by a
    /// run on its own.
    Cancelled,
    /// The run's supervisor died before recording how it ended, so the
    /// result is unknown; written by the recovery of such runs.
    Lost,
    /// The run waited in a host's queue past its deadline and never
    /// started; never set by a run on its own.
    Expired,
    /// Not a run: a gateway saw a rotated refresh token presented again
    /// after its grace window and revoked the token's whole family (a
    /// security event, one record per family).
    RefreshReuse,
    /// Not a run: lines of an audit log's run journal without a valid MAC
    /// (forged by someone who could write the log's folder, or damaged),
    /// found by the recovery of lost runs and recorded as this one record
    /// instead of the runs they name.
    JournalForged,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::Timeout,
        ErrorCode::MemoryLimit,
        ErrorCode::CpuLimit,
        ErrorCode::PidsLimit,
        ErrorCode::OutputLimit,
        ErrorCode::SetupFailed,
        ErrorCode::NotFound,
        ErrorCode::NotExecutable,
        ErrorCode::NonzeroExit,
        ErrorCode::Killed,
        ErrorCode::Interrupted,
        ErrorCode::InvalidResult,
        ErrorCode::Cancelled,
        ErrorCode::Lost,
        ErrorCode::Expired,
        ErrorCode::RefreshReuse,
        ErrorCode::JournalForged,
    ];

    /// The spelling in results and records (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::MemoryLimit => "MEMORY_LIMIT",
            ErrorCode::CpuLimit => "CPU_LIMIT",
            ErrorCode::PidsLimit => "PIDS_LIMIT",
            ErrorCode::OutputLimit => "OUTPUT_LIMIT",
            ErrorCode::SetupFailed => "SETUP_FAILED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::NotExecutable => "NOT_EXECUTABLE",
            ErrorCode::NonzeroExit => "NONZERO_EXIT",
            ErrorCode::Killed => "KILLED",
            ErrorCode::Interrupted => "INTERRUPTED",
            ErrorCode::InvalidResult => "INVALID_RESULT",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::Lost => "LOST",
            ErrorCode::Expired => "EXPIRED",
            ErrorCode::RefreshReuse => "REFRESH_REUSE",
            ErrorCode::JournalForged => "JOURNAL_FORGED",
        }
    }
}

/// How a run ended, as a record's `outcome` spells it: `ok`, or an
/// [`ErrorCode`].
///
/// The record keeps the outcome as a string, so a log written by a later
/// cordon with a code this one does not know still reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Exit code 0 and no limit hit.
    Ok,
    /// Not ok, and why.
    Error(ErrorCode),
}

impl Outcome {
    /// `ok`, or the error code in capitals.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error(code) => code.as_str(),
        }
    }
}

impl From<ErrorCode> for Outcome {
    fn from(code: ErrorCode) -> Outcome {
        Outcome::Error(code)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outcome name that is neither `ok` nor an [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome `{0}`")]
pub struct UnknownOutcome(pub String);

impl FromStr for Outcome {
    type Err = UnknownOutcome;

    /// Case-insensitive: `timeout` is `Outcome::Error(ErrorCode::Timeout)`.
    fn from_str(s: &str) -> Result<Outcome, UnknownOutcome> {
        if s.eq_ignore_ascii_case("ok") {
            return Ok(Outcome::Ok);
        }
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .map(Outcome::Error)
            .ok_or_else(|| UnknownOutcome(s.to_owned()))
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The lowercase hex SHA-256 of the policy's JSON form.
pub fn policy_digest(policy: &Policy) -> String {
    match serde_json::to_vec(policy) {
        Ok(json) => sha256_hex(&json),
        // Only a path that is not UTF-8 makes JSON fail; the debug form
        // still names every field, so the digest still tells policies apart.
        Err(_) => sha256_hex(format!("{policy:?}").as_bytes()),
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// 32 bytes written as 64 hex digits (as [`hex`] writes them); `None` for
/// anything else.
pub(crate) fn unhex_32(digits: &[u8]) -> Option<[u8; 32]> {
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Replaces every occurrence of each secret in the record's free-text
/// fields (`error`, `command`, `tenant`, `principal`, `handler`, and every
/// string in `network`) with `***`. Ids, digests and times are left alone:
/// they are generated, and a short secret could match part of a digest.
pub fn redact(record: &mut AuditRecord, secrets: &[String]) {
    let secrets: Vec<String> = secrets.iter().filter(|s| !s.is_empty()).cloned().collect();
    if secrets.is_empty() {
        return;
    }
    if let Some(e) = &mut record.error {
        *e = cordon_core::policy::env::redact(e, &secrets);
    }
    redact_subject(&mut record.subject, &secrets);
    if let Some(net) = &mut record.network {
        redact_json(net, &secrets);
    }
}

/// `subject` with each secret replaced by `***` in its free-text fields
/// (`tenant`, `principal`, `handler`, `command`), as [`redact`] does.
pub fn redacted_subject(subject: &Subject, secrets: &[String]) -> Subject {
    let mut s = subject.clone();
    redact_subject(&mut s, secrets);
    s
}

fn redact_subject(s: &mut Subject, secrets: &[String]) {
    let secrets: Vec<String> = secrets.iter().filter(|s| !s.is_empty()).cloned().collect();
    if secrets.is_empty() {
        return;
    }
    let r = |v: &mut String| *v = cordon_core::policy::env::redact(v, &secrets);
    [&mut s.tenant, &mut s.principal, &mut s.handler].into_iter().flatten().for_each(r);
    s.command.iter_mut().flatten().for_each(r);
}

fn redact_json(value: &mut serde_json::Value, secrets: &[String]) {
    use serde_json::Value;
    match value {
        Value::String(s) => *s = cordon_core::policy::env::redact(s, secrets),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_json(v, secrets)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                redact_json(&mut v, secrets);
                map.insert(cordon_core::policy::env::redact(&k, secrets), v);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The values that must not show in a run's result or record: the
/// runner's own rule (passed or set variables whose names look secret, or
/// are marked secret), and, because an argv or an error message can carry
/// a value the policy never passed, every value of `host_env` whose name
/// looks secret. Longest first, so a secret that contains another is
/// replaced whole.
pub fn secret_values(policy: &Policy, host_env: &[(String, String)]) -> Vec<String> {
    let env = policy.env.build(host_env.iter().cloned(), cordon_core::policy::Home::Set("/"));
    let mut out = policy.env.secret_values(&env);
    out.extend(host_secret_values(host_env));
    out.sort();
    out.dedup();
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

/// What the filtering proxy saw, summed up from its connection records
/// (each a JSON object with `host`, `port`, `allowed`, `bytes_up`,
/// `bytes_down`): connections allowed and denied, bytes each way, and the
/// destinations. `None` when there was no connection.
pub fn network_summary(connections: &[serde_json::Value]) -> Option<serde_json::Value> {
    if connections.is_empty() {
        return None;
    }
    let mut allowed = 0u64;
    let (mut up, mut down) = (0u64, 0u64);
    let mut hosts: Vec<String> = vec![];
    let mut denied_hosts: Vec<String> = vec![];
    for c in connections {
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
        "connections": connections.len(),
        "allowed": allowed,
        "denied": connections.len() as u64 - allowed,
        "bytes_up": up,
        "bytes_down": down,
        "hosts": hosts,
        "denied_hosts": denied_hosts,
    }))
}
