//! The ExecutionResult of DESIGN.md: fields may be added, never removed or
//! renamed.

use serde::Serialize;

use cordon_core::plan::LedgerEntry;
use cordon_core::policy::Mode;

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

/// Machine-readable reason a run is not `ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
    /// The handler's result was missing or malformed.
    InvalidResult,
}

/// Why a run is not `ok`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResultError {
    /// The reason.
    pub code: ErrorCode,
    /// For people: what happened and what to do.
    pub message: String,
}

/// Kernel accounting for the run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Metrics {
    /// Wall clock from spawn to reap, ms.
    pub wall_ms: f64,
    /// User CPU of every process of the run, ms.
    pub cpu_user_ms: f64,
    /// System CPU, ms.
    pub cpu_sys_ms: f64,
    /// Largest resident set (cgroup peak where a memory cgroup was used), KiB.
    pub peak_rss_kb: u64,
}

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// One captured line.
#[derive(Clone, Debug, Serialize)]
pub struct LogLine {
    /// The stream.
    pub stream: Stream,
    /// When it arrived, ms after the start.
    pub ts_ms: f64,
    /// The text, secrets redacted, without the newline.
    pub text: String,
}

/// Captured output.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Logs {
    /// Lines in arrival order.
    pub lines: Vec<LogLine>,
    /// Bytes not kept because the buffer was full.
    pub dropped_bytes: u64,
}

/// One execution's outcome, for the caller and the audit trail.
#[derive(Clone, Debug, Serialize)]
pub struct ExecutionResult {
    /// Exit code 0 and no limit hit.
    pub ok: bool,
    /// ULID of this execution.
    pub request_id: String,
    /// The tier it ran in.
    pub mode: Mode,
    /// How it ended; `null` when it never started.
    pub exit: Option<Exit>,
    /// Why it is not ok.
    pub error: Option<ResultError>,
    /// The handler's result (plugins); `null` for plain commands.
    pub data: Option<serde_json::Value>,
    /// Accounting.
    pub metrics: Metrics,
    /// Captured output (`--json` only).
    pub logs: Logs,
    /// Things the caller should know (dev mode, fallbacks).
    pub warnings: Vec<String>,
    /// What enforced each policy entry.
    pub enforcement: Vec<LedgerEntry>,
    /// One entry per connection the command made through the filtering
    /// proxy: host, port, allowed or denied and by which rule, bytes up and
    /// down. Empty when the policy allows no host.
    pub network: Vec<cordon_proxy::ConnectionRecord>,
}

impl ExecutionResult {
    /// The exit status of `cordon run` for this result (DESIGN.md).
    pub fn exit_status(&self) -> i32 {
        match (self.error.as_ref().map(|e| e.code), self.exit) {
            (Some(ErrorCode::Timeout), _) => 124,
            (Some(ErrorCode::SetupFailed), _) => 125,
            (Some(ErrorCode::NotExecutable), _) => 126,
            (Some(ErrorCode::NotFound), _) => 127,
            (_, Some(Exit::Code(c))) => c,
            (_, Some(Exit::Signal(s))) => 128 + s,
            (_, None) => 125,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_the_design() {
        let r = ExecutionResult {
            ok: false,
            request_id: "01J".into(),
            mode: Mode::Container,
            exit: Some(Exit::Signal(9)),
            error: Some(ResultError { code: ErrorCode::MemoryLimit, message: "m".into() }),
            data: None,
            metrics: Metrics::default(),
            logs: Logs {
                lines: vec![LogLine { stream: Stream::Stdout, ts_ms: 0.5, text: "hi".into() }],
                dropped_bytes: 0,
            },
            warnings: vec![],
            enforcement: vec![],
            network: vec![],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["exit"], serde_json::json!({"signal": 9}));
        assert_eq!(v["error"]["code"], "MEMORY_LIMIT");
        assert_eq!(v["mode"], "container");
        assert_eq!(v["logs"]["lines"][0]["stream"], "stdout");
        for k in ["wall_ms", "cpu_user_ms", "cpu_sys_ms", "peak_rss_kb"] {
            assert!(v["metrics"].get(k).is_some(), "{k}");
        }
        assert_eq!(r.exit_status(), 137);
    }
}
