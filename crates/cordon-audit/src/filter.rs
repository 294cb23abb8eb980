//! Reading the log back: records by plugin, package, signer, outcome and time.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::record::{AuditRecord, Outcome};

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
    /// A package tree hash, whole (`sha256:<hex>`) or its first hex digits
    /// (at least [`MIN_HASH_PREFIX`]; see [`package_prefix`]).
    pub package: Option<String>,
    /// The id of the key that signed the package (case-insensitive).
    pub signer: Option<String>,
}

/// The fewest hex digits `--package` takes: fewer would match by accident.
pub const MIN_HASH_PREFIX: usize = 8;

/// A tree hash given on the command line that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tree hash `{0}`; give `sha256:` and hex digits, or at least 8 hex digits of it, as `cordon plugin info ID` prints it")]
pub struct HashError(pub String);

/// Normalises `--package`: `sha256:<hex>` or bare hex, at least
/// [`MIN_HASH_PREFIX`] digits, to the lowercase `sha256:<hex>` prefix that
/// records start with.
pub fn package_prefix(raw: &str) -> Result<String, HashError> {
    let hex = raw.trim().strip_prefix("sha256:").unwrap_or(raw.trim());
    if hex.len() < MIN_HASH_PREFIX || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HashError(raw.to_owned()));
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

impl Filter {
    /// Whether `record` passes.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        if let Some(plugin) = &self.plugin {
            if record.subject.plugin.as_deref() != Some(plugin.as_str()) {
                return false;
            }
        }
        if let Some(package) = &self.package {
            if !record.subject.package_tree_hash.as_deref().is_some_and(|h| h.starts_with(package.as_str())) {
                return false;
            }
        }
        if let Some(signer) = &self.signer {
            if !record.subject.signer_key_id.as_deref().is_some_and(|k| k.eq_ignore_ascii_case(signer)) {
                return false;
            }
        }
        if let Some(outcome) = &self.outcome {
            let ok = record.outcome == Outcome::Ok.as_str();
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
