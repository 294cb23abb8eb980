//! The audit trail: one JSON line per execution, hash-chained, append-only.
//!
//! # Format
//!
//! `audit.jsonl` holds one [`AuditRecord`] per line. Each record's `prev` is
//! the lowercase hex SHA-256 of the previous line's bytes (without its
//! newline), or of the empty string for the first line. [`verify`] walks the
//! chain and names the first line where it breaks: an edited record breaks
//! the link to the next one, a removed record breaks the link across the gap,
//! a moved record points at a line elsewhere in the file.
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
//! # Runs that cordon did not see end
//!
//! [`AuditLog::begin`] writes a marker in a `pending/` folder next to the log
//! before a run starts, naming the run and cordon's pid (and the pid's start
//! time, so a reused pid is not taken for the live owner).
//! [`Pending::complete`] appends the record and removes the marker. If cordon
//! is SIGKILLed in between, the marker stays; the next [`recover_lost`] (the
//! CLI runs it on start) appends a record with `lost: true` and outcome
//! `LOST` for every marker whose owner is gone, unless the log already holds
//! a record for that request (cordon died between append and unlink). So
//! every execution ends up with exactly one record.
//!
//! # Current limitations
//!
//! The chain has no external anchor: editing or removing the *last*
//! records, or replacing the whole file, is not detectable from the file
//! alone. Markers are not fsynced (they protect against cordon being killed,
//! not against power loss). Times are UTC.
//!
//! Time stamps are formatted and parsed with `humantime`: a dependency-free
//! crate of a few hundred lines that does exactly RFC 3339 in UTC both ways
//! and parses `--since 2h`-style durations, which hand-written code would
//! duplicate and `time`/`chrono` would bring with far more than needed.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cordon_core::policy::Policy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::traceparent::hex;

/// The log's file name under the state directory.
pub const LOG_FILE: &str = "audit.jsonl";

/// The folder of run markers, next to the log.
pub const PENDING_DIR: &str = "pending";

/// `outcome` of a successful run.
pub const OUTCOME_OK: &str = "ok";

/// `outcome` of a run whose end cordon did not record.
pub const OUTCOME_LOST: &str = "LOST";

/// One execution, as recorded. Fields may be added, none removed or renamed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the run started, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The run's request id (the ExecutionResult's).
    pub request_id: String,
    /// The W3C trace id, 32 hex digits.
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
    /// `container`, `process` or `dev`.
    pub mode: String,
    /// [`policy_digest`] of the effective policy.
    pub policy_digest: String,
    /// [`OUTCOME_OK`], an ExecutionResult error code, or [`OUTCOME_LOST`].
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
    /// What the proxy saw: hosts, bytes, denials.
    #[serde(default)]
    pub network: Option<serde_json::Value>,
    /// True for a record written by [`recover_lost`] on cordon's behalf.
    #[serde(default)]
    pub lost: bool,
    /// SHA-256 of the previous line; set by [`AuditLog::append`].
    #[serde(default)]
    pub prev: String,
}

impl AuditRecord {
    /// A record of a run starting now, outcome `ok` until told otherwise.
    pub fn new(request_id: &str, trace_id: &str, mode: &str) -> AuditRecord {
        AuditRecord {
            time: now_rfc3339(),
            request_id: request_id.to_owned(),
            trace_id: trace_id.to_owned(),
            mode: mode.to_owned(),
            outcome: OUTCOME_OK.to_owned(),
            ..AuditRecord::default()
        }
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

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Replaces every occurrence of each secret in the record's free-text
/// fields (`error`, `command`, `tenant`, `handler`, and every string in
/// `network`) with `***`. Ids, digests and times are left alone: they are
/// generated, and a short secret could match part of a digest.
pub fn redact(record: &mut AuditRecord, secrets: &[String]) {
    let secrets: Vec<String> = secrets.iter().filter(|s| !s.is_empty()).cloned().collect();
    if secrets.is_empty() {
        return;
    }
    let r = |s: &mut String| *s = cordon_core::policy::env::redact(s, &secrets);
    let fields = [&mut record.error, &mut record.tenant, &mut record.handler];
    fields.into_iter().flatten().for_each(r);
    record.command.iter_mut().flatten().for_each(r);
    if let Some(net) = &mut record.network {
        redact_json(net, &secrets);
    }
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
                open_locked_file(path)?;
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
    /// See the module docs for the locking and durability guarantees.
    pub fn append(&self, mut record: AuditRecord) -> io::Result<()> {
        let file = open_locked_file(&self.path)?;
        file.lock()?;
        // The lock is released when `file` is closed.
        append_locked(&file, &mut record)
    }

    /// Records that a run is starting: writes a marker holding `draft` (the
    /// record as far as it is known) so the run is reported as lost if
    /// cordon dies before [`Pending::complete`]. `draft.request_id` names the
    /// marker and may contain only `[A-Za-z0-9_.-]` (no leading `.`).
    pub fn begin(&self, draft: &AuditRecord) -> io::Result<Pending> {
        let id = &draft.request_id;
        let valid = !id.is_empty()
            && id.len() <= 128
            && !id.starts_with('.')
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("request id `{id}` cannot name a marker file"),
            ));
        }
        let dir = self.pending_dir();
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let pid = std::process::id();
        let marker = Marker { log: self.path.clone(), pid, pid_start: process_start(pid), record: draft.clone() };
        let json = serde_json::to_vec(&marker).map_err(io::Error::other)?;
        // Write then rename, so a marker is either absent or complete.
        let tmp = dir.join(format!(".{id}.{pid}.tmp"));
        let path = dir.join(format!("{id}.json"));
        fs::write(&tmp, json)?;
        fs::rename(&tmp, &path)?;
        Ok(Pending { log: self.clone(), marker: path })
    }

    fn pending_dir(&self) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(PENDING_DIR)
    }
}

fn default_path_from(xdg_state: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> Option<PathBuf> {
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(state) = xdg_state.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Some(state.join("cordon").join(LOG_FILE));
    }
    let home = home.map(PathBuf::from).filter(|p| p.is_absolute())?;
    Some(home.join(".local/state/cordon").join(LOG_FILE))
}

fn open_locked_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path)
}

/// Appends one record; the caller holds the lock.
fn append_locked(file: &File, record: &mut AuditRecord) -> io::Result<()> {
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

/// A run between [`AuditLog::begin`] and [`Pending::complete`].
///
/// Dropping it without completing leaves the marker: once this process has
/// exited, [`recover_lost`] records the run as lost.
#[derive(Debug)]
#[must_use = "a pending run is recorded as lost unless completed"]
pub struct Pending {
    log: AuditLog,
    marker: PathBuf,
}

impl Pending {
    /// Appends the run's record and removes the marker.
    pub fn complete(self, record: AuditRecord) -> io::Result<()> {
        self.log.append(record)?;
        match fs::remove_file(&self.marker) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The marker file.
    pub fn marker_path(&self) -> &Path {
        &self.marker
    }
}

#[derive(Serialize, Deserialize)]
struct Marker {
    log: PathBuf,
    pid: u32,
    /// The owner's start time in clock ticks since boot (`/proc/PID/stat`
    /// field 22), which tells a live owner from a reused pid.
    pid_start: Option<u64>,
    record: AuditRecord,
}

/// Start time of `pid`, or `None` if it is not running (or is a zombie).
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the
    // last `)`. Then field 3 (state) is at index 0, field 22 at index 19.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn owner_alive(marker: &Marker) -> bool {
    match marker.pid_start {
        Some(start) => process_start(marker.pid) == Some(start),
        // The start time was unknown when the marker was written (no /proc):
        // never take the run for lost while the pid exists.
        None => Path::new(&format!("/proc/{}", marker.pid)).exists() || !Path::new("/proc/self").exists(),
    }
}

/// Appends a `lost: true` record for every run whose marker is still in
/// `pending/` while its owner process is gone, and removes those markers.
/// Returns how many records it appended. A lost record is the marker's
/// draft with `lost: true`, outcome [`OUTCOME_LOST`], an error naming the
/// dead pid, `duration_ms` 0, and `time` still the run's start. Runs that
/// already have a record get none (their marker is only removed). Holds the log's lock throughout,
/// so concurrent recoveries cannot record a run twice.
pub fn recover_lost(log: &AuditLog) -> io::Result<usize> {
    let dir = log.pending_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let file = open_locked_file(&log.path)?;
    file.lock()?;
    let mut stale: Vec<(PathBuf, Marker)> = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') && name.ends_with(".tmp") {
            // A marker half-written by a begin() that died: its run never
            // started. Remove it once its writer is gone.
            let pid = name.trim_end_matches(".tmp").rsplit('.').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| process_start(p).is_none()) {
                remove_if_present(&path)?;
            }
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        // A marker that does not parse was not written by begin() (it
        // renames complete files into place): leave it for a person.
        let Ok(marker) = fs::read(&path).and_then(|b| serde_json::from_slice::<Marker>(&b).map_err(io::Error::other))
        else {
            continue;
        };
        if marker.log == log.path && !owner_alive(&marker) {
            stale.push((path, marker));
        }
    }
    if stale.is_empty() {
        return Ok(0);
    }
    stale.sort_by(|a, b| a.1.record.time.cmp(&b.1.record.time));
    let recorded = request_ids(&log.path)?;
    let mut appended = 0;
    for (path, marker) in stale {
        if !recorded.contains(&marker.record.request_id) {
            let mut record = marker.record;
            record.lost = true;
            record.outcome = OUTCOME_LOST.to_owned();
            record.error = Some(format!(
                "cordon (pid {}) ended before recording the outcome; the command's result is unknown",
                marker.pid
            ));
            record.duration_ms = 0.0;
            append_locked(&file, &mut record)?;
            appended += 1;
        }
        remove_if_present(&path)?;
    }
    Ok(appended)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn request_ids(path: &Path) -> io::Result<HashSet<String>> {
    #[derive(Deserialize)]
    struct IdOnly {
        request_id: String,
    }
    let mut ids = HashSet::new();
    for line in BufReader::new(File::open(path)?).split(b'\n') {
        if let Ok(r) = serde_json::from_slice::<IdOnly>(&line?) {
            ids.insert(r.request_id);
        }
    }
    Ok(ids)
}

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

/// Which records [`filter`] returns. Every set field must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The plugin id (`@scope/name`).
    pub plugin: Option<String>,
    /// Records at or after this time.
    pub since: Option<SystemTime>,
    /// Records before this time.
    pub until: Option<SystemTime>,
    /// `ok`, `error` (anything not ok), or an outcome code such as
    /// `TIMEOUT` or `LOST` (case-insensitive).
    pub outcome: Option<String>,
}

impl Filter {
    /// Whether `record` passes.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        if let Some(plugin) = &self.plugin {
            if record.plugin.as_deref() != Some(plugin.as_str()) {
                return false;
            }
        }
        if let Some(outcome) = &self.outcome {
            let ok = record.outcome == OUTCOME_OK;
            let pass = match outcome.to_ascii_lowercase().as_str() {
                "ok" => ok,
                "error" => !ok,
                _ => record.outcome.eq_ignore_ascii_case(outcome),
            };
            if !pass {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) = humantime::parse_rfc3339_weak(&record.time) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        true
    }
}

/// What [`filter`] found.
#[derive(Clone, Debug, Default)]
pub struct Filtered {
    /// Matching records, in log order.
    pub records: Vec<AuditRecord>,
    /// 1-based numbers of lines that are not records (run [`verify`]).
    pub malformed_lines: Vec<usize>,
}

/// The records of the log at `path` that pass `filter`.
pub fn filter(path: &Path, filter: &Filter) -> io::Result<Filtered> {
    let mut out = Filtered::default();
    for (i, line) in BufReader::new(File::open(path)?).split(b'\n').enumerate() {
        match serde_json::from_slice::<AuditRecord>(&line?) {
            Ok(record) if filter.matches(&record) => out.records.push(record),
            Ok(_) => {}
            Err(_) => out.malformed_lines.push(i + 1),
        }
    }
    Ok(out)
}

/// A time given on the command line that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time `{0}`; use an RFC 3339 UTC time (2024-05-01T12:00:00Z), a date (2024-05-01), or a duration meaning that long ago (90m, 2h, 7days)")]
pub struct TimeError(pub String);

/// Parses `--since`/`--until`: an RFC 3339 UTC time, a date (midnight UTC),
/// or a duration that means that long before `now`.
pub fn parse_time(raw: &str, now: SystemTime) -> Result<SystemTime, TimeError> {
    let s = raw.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if s.len() == 10 {
        if let Ok(t) = humantime::parse_rfc3339_weak(&format!("{s}T00:00:00Z")) {
            return Ok(t);
        }
    }
    humantime::parse_duration(s)
        .ok()
        .and_then(|d: Duration| now.checked_sub(d))
        .ok_or_else(|| TimeError(raw.to_owned()))
}

#[cfg(test)]
mod tests;
