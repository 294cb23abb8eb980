//! The ExecutionResult of DESIGN.md: fields may be added, never removed or
//! renamed.

use serde::Serialize;

pub use cordon_audit::ErrorCode;
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
    /// User CPU of every process of the run, ms: what `wait` reported,
    /// raised to what the run's cgroup counted when it has one that counts
    /// CPU (a `cpu_ms` quota; on cgroup v2 any memory or pids quota too).
    /// Without such a cgroup, a child reaped automatically (its parent
    /// ignores `SIGCHLD`) is missing from it.
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
    pub network: Vec<cordon_egress::ConnectionRecord>,
    /// The names (never the values) of the command's environment, and
    /// where each came from. Empty when the run never started.
    pub env: EnvNames,
    /// Paths the command's captured output reported missing or refused
    /// that exist on the host outside the grants (a failed run only; see
    /// [`crate::explain`]). Empty when output was not captured.
    pub not_granted: Vec<crate::explain::NotGranted>,
}

/// The names of a run's environment variables, by origin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EnvNames {
    /// With the caller's value: `PATH` and the basics (`LANG`, `LC_ALL`,
    /// `LC_CTYPE`, `TERM`, `TZ`) when set, and what `env.allow` matches.
    pub passed: Vec<String>,
    /// Set by cordon (`HOME`, `TMPDIR`, a default `LANG`, the proxy's
    /// variables, `CORDON_RESULT_FD`) or by `env.set`.
    pub set: Vec<String>,
}

impl ExecutionResult {
    /// A result for a run that did not start: `SETUP_FAILED` with `message`.
    pub fn unstarted(request_id: &str, mode: Mode, message: String) -> ExecutionResult {
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
            env: EnvNames::default(),
            not_granted: vec![],
        }
    }

    /// Replaces secrets in the parts of a result the runner does not redact
    /// (error message, warnings). Logs and `data` are redacted by the runner.
    pub fn redact(&mut self, secrets: &[String]) {
        if secrets.is_empty() {
            return;
        }
        let redact = cordon_core::policy::env::redact;
        if let Some(e) = &mut self.error {
            e.message = redact(&e.message, secrets);
        }
        for w in &mut self.warnings {
            *w = redact(w, secrets);
        }
    }

    /// How the run ended, for its audit record.
    pub fn audit_ending(&self, policy_digest: &str) -> cordon_audit::Ending {
        let started = self.exit.is_some();
        let network = serde_json::to_value(&self.network).ok();
        let connections = network.as_ref().and_then(|v| v.as_array()).map_or(&[][..], Vec::as_slice);
        cordon_audit::Ending {
            mode: self.mode,
            outcome: self.error.as_ref().map_or(cordon_audit::Outcome::Ok, |e| e.code.into()),
            error: self.error.as_ref().map(|e| e.message.clone()),
            duration_ms: self.metrics.wall_ms,
            cpu_ms: started.then(|| ((self.metrics.cpu_user_ms + self.metrics.cpu_sys_ms) * 1000.0).round() / 1000.0),
            peak_rss_kb: started.then_some(self.metrics.peak_rss_kb),
            network: cordon_audit::network_summary(connections),
            policy_digest: policy_digest.to_owned(),
        }
    }

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
            env: EnvNames { passed: vec!["PATH".into()], set: vec!["HOME".into()] },
            not_granted: vec![],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["env"], serde_json::json!({"passed": ["PATH"], "set": ["HOME"]}));
        assert_eq!(v["exit"], serde_json::json!({"signal": 9}));
        assert_eq!(v["error"]["code"], "MEMORY_LIMIT");
        assert_eq!(v["mode"], "container");
        assert_eq!(v["logs"]["lines"][0]["stream"], "stdout");
        for k in ["wall_ms", "cpu_user_ms", "cpu_sys_ms", "peak_rss_kb"] {
            assert!(v["metrics"].get(k).is_some(), "{k}");
        }
        assert_eq!(r.exit_status(), 137);
    }

    #[test]
    fn an_unstarted_run_ends_without_cpu_or_memory() {
        let mut r = ExecutionResult::unstarted("01JTEST", Mode::Process, "no such file: hunter22-token".into());
        r.metrics.wall_ms = 4.5;
        r.redact(&["hunter22-token".into()]);
        assert_eq!(r.error.as_ref().unwrap().message, "no such file: ***");
        let e = r.audit_ending("abc");
        assert_eq!(e.outcome, cordon_audit::Outcome::Error(ErrorCode::SetupFailed));
        assert_eq!((e.cpu_ms, e.peak_rss_kb, e.network), (None, None, None));
        assert_eq!(e.duration_ms, 4.5);
    }
}
