//! `cordon audit`: list and verify the audit log; and the audit session
//! `run` and `exec` keep, so that every invocation leaves one record.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use clap::Args;
use cordon::audit::{
    self, AuditError, AuditRecord, AuditTrail, Filter, KeyFolder, Outcome, Subject, TraceParent, Trust, Verifier,
    VerifyError,
};
use cordon::plugin::{HandlerRequest, HandlerResult, PluginId};
use cordon::{ErrorCode, ExecutionResult, Mode, RunRequest};

use crate::render;

#[derive(Args, Debug)]
#[command(after_help = "With --verify, the hash chain, every signed checkpoint in the log and the latest checkpoint \
kept in cordon's state folder are checked: an edited, removed, reordered or re-chained record, a truncated tail and a \
checkpoint not signed by a known key are found. A record cut short by a crash is reported as torn, not as tampering.\n\n\
Exit status: 0; with --verify, 0 when nothing was tampered with (torn records are listed on stderr), 1 when \
something was or the checkpoints cannot be checked (no verifier key); 125 on bad flags.")]
pub struct AuditArgs {
    /// Only records of this plugin (`@scope/name`).
    #[arg(long, value_name = "ID")]
    plugin: Option<String>,
    /// Only records of this package version: its tree hash (`sha256:…`, as `cordon plugin info` shows it) or its first 8+ hex digits.
    #[arg(long, value_name = "HASH")]
    package: Option<String>,
    /// Only records of packages signed by this key id (as `cordon trust list` shows it).
    #[arg(long, value_name = "KEY_ID")]
    signer: Option<String>,
    /// Only records at or after T: an RFC 3339 time, a date, or a duration ago (`2h`, `7days`).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only records before T (same forms as --since).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Only records with this outcome: ok, error (anything not ok), LOST, or an error code such as TIMEOUT.
    #[arg(long, value_name = "OUTCOME")]
    outcome: Option<String>,
    /// Print one JSON array of records (with --verify: one JSON object).
    #[arg(long)]
    json: bool,
    /// Check every record, the hash chain and the signed checkpoints instead of listing.
    #[arg(long, conflicts_with_all = ["plugin", "package", "signer", "since", "until", "outcome"])]
    verify: bool,
    /// With --verify: also accept checkpoints signed by this verifier key (a file holding
    /// `<name>+<key id>+<key>`, as in audit-keys/*.pub of the host that wrote the log). Repeatable.
    #[arg(long = "key", value_name = "FILE", requires = "verify")]
    keys: Vec<PathBuf>,
    /// The audit log (default: $CORDON_AUDIT_LOG, else $XDG_STATE_HOME/cordon/audit.jsonl or ~/.local/state/cordon/audit.jsonl).
    #[arg(long, value_name = "PATH")]
    audit_log: Option<PathBuf>,
}

pub fn run(a: AuditArgs) -> Result<i32> {
    let path = audit::log_path(a.audit_log.as_deref()).map_err(hinted)?;
    if a.verify {
        return verify(&path, &a.keys, a.json);
    }
    let now = SystemTime::now();
    let time = |flag: &str, raw: &Option<String>| -> Result<Option<SystemTime>> {
        raw.as_deref().map(|t| audit::parse_time(t, now).with_context(|| format!("invalid --{flag} {t}"))).transpose()
    };
    if let Some(p) = &a.plugin {
        p.parse::<PluginId>().with_context(|| format!("invalid --plugin {p}"))?;
    }
    if let Some(o) = &a.outcome {
        if !o.eq_ignore_ascii_case("error") && o.parse::<Outcome>().is_err() {
            let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
            bail!("invalid --outcome {o}\n  hint: use ok, error, or one of {}", codes.join(", "));
        }
    }
    let package = a
        .package
        .as_deref()
        .map(|p| audit::package_prefix(p).with_context(|| format!("invalid --package {p}")))
        .transpose()?;
    let filter = Filter {
        plugin: a.plugin.clone(),
        package,
        signer: a.signer.clone(),
        since: time("since", &a.since)?,
        until: time("until", &a.until)?,
        outcome: a.outcome.clone(),
    };
    let found = match audit::filter(&path, &filter) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("cordon: notice: no audit log at {} yet: nothing has been recorded there", path.display());
            cordon::audit::Filtered::default()
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read the audit log {}", path.display())),
    };
    if a.json {
        println!("{}", render::json(&found.records).context("cannot serialise the records")?);
    } else {
        for r in &found.records {
            render::line(&line(r));
        }
    }
    if !found.malformed_lines.is_empty() {
        let lines: Vec<String> = found.malformed_lines.iter().map(usize::to_string).collect();
        render::message(
            "warning",
            &format!(
                "lines {} of {} are not audit records\nhint: run `cordon audit --verify`",
                lines.join(", "),
                path.display()
            ),
        );
    }
    Ok(0)
}

/// `--verify`: checks the log, prints what was found, returns 0 or 1.
fn verify(path: &Path, keys: &[PathBuf], json: bool) -> Result<i32> {
    let mut trust = Trust::for_log(path, &KeyFolder::State);
    for k in keys {
        let text = std::fs::read_to_string(k).with_context(|| format!("invalid --key {}", k.display()))?;
        trust.verifiers.push(Verifier::parse(&text).with_context(|| format!("invalid --key {}", k.display()))?);
    }
    let result = audit::verify(path, &trust);
    if json {
        let v = result.as_ref().ok();
        let out = serde_json::json!({
            "log": path,
            "intact": result.is_ok(),
            "lines": v.map(|v| v.lines),
            "records": v.map(|v| v.records),
            "torn_lines": v.map(|v| v.torn.clone()),
            "checkpoints": v.map(|v| v.checkpoints),
            "latest_checkpoint": v.and_then(|v| v.latest.as_ref()).map(|(size, key)| serde_json::json!({"lines": size, "key": key})),
            "error": result.as_ref().err().map(|e| serde_json::json!({"line": e.line(), "message": e.to_string()})),
        });
        println!("{}", render::json(&out)?);
    }
    match result {
        Ok(v) => {
            for line in &v.torn {
                render::message(
                    "notice",
                    &format!("{}:{line}: a record cut short by a crash (torn), not an edit", path.display()),
                );
            }
            let latest = match (&v.latest, &trust.anchor) {
                (Some((size, key)), _) => format!(", latest checkpoint ({size} lines, {key}) matches"),
                (None, Some(anchor)) => {
                    render::message(
                        "notice",
                        &format!(
                            "no latest checkpoint of this log is kept at {}: a truncated tail cannot be detected here",
                            anchor.display()
                        ),
                    );
                    String::new()
                }
                (None, None) => String::new(),
            };
            if !json {
                println!(
                    "{}: {} records, hash chain intact, {} checkpoints verified{latest}",
                    path.display(),
                    v.records,
                    v.checkpoints
                );
            }
            Ok(0)
        }
        Err(e) => {
            render::message("error", &format!("{e}"));
            if let Some(cause) = std::error::Error::source(&e) {
                eprintln!("  caused by: {cause}");
            }
            if matches!(e, VerifyError::NoKey { .. }) {
                eprintln!("  hint: pass --key FILE with the verifier key of the host that wrote the log (its audit-keys/*.pub)");
            }
            Ok(1)
        }
    }
}

/// One record for people: time, outcome, what ran, mode, duration, id.
fn line(r: &AuditRecord) -> String {
    let s = &r.subject;
    let what = match (&s.plugin, &s.handler, &s.command) {
        (Some(p), h, _) => format!("{p}@{} {}", s.plugin_version.as_deref().unwrap_or("?"), h.as_deref().unwrap_or("")),
        (None, Some(h), _) => format!("(plugin not loaded) {h}"),
        (None, None, Some(c)) => c.join(" "),
        (None, None, None) => "(no command)".into(),
    };
    let tenant = s.tenant.as_deref().map(|t| format!(" tenant={t}")).unwrap_or_default();
    format!("{}  {:<14} {:<9} {:>9.1} ms  {}  {what}{tenant}", r.time, r.outcome, r.mode, r.duration_ms, r.request_id)
}

/// The audit log of one `run` or `exec` invocation: opened (recording
/// runs an earlier cordon left unfinished) before anything else, so that
/// even a bad flag leaves a record.
pub struct Session {
    trail: AuditTrail,
    subject: std::cell::RefCell<Subject>,
    trace: TraceParent,
    request_id: String,
    mode: Option<Mode>,
    recorded: Cell<bool>,
}

impl Session {
    /// Opens the log named by `flag` (else `$CORDON_AUDIT_LOG`, else the
    /// default). `traceparent` is the caller's, if any.
    pub fn open(
        flag: Option<&Path>,
        mode: Option<&str>,
        traceparent: Option<&str>,
        mut subject: Subject,
    ) -> Result<Session> {
        let path = audit::log_path(flag).map_err(hinted)?;
        // The key is loaded while the run is prepared; `ready` waits for it.
        let trail = AuditTrail::open_loading_key_behind(&path).map_err(hinted)?;
        cordon::trace::step("audit: log opened, lost runs recovered");
        if trail.recovered() > 0 {
            eprintln!(
                "cordon: notice: recorded {} run(s) as LOST in {}: an earlier cordon was killed before it could record them",
                trail.recovered(),
                path.display()
            );
        }
        if trail.rejected() > 0 {
            render::message("warning", &audit::rejected_journal_lines(trail.rejected(), &path));
        }
        let trace = TraceParent::from_caller_or_new(traceparent);
        subject.trace_id = trace.trace_id_hex();
        Ok(Session {
            trail,
            subject: std::cell::RefCell::new(subject),
            trace,
            request_id: cordon::new_request_id(),
            mode: mode.and_then(|m| m.parse().ok()),
            recorded: Cell::new(false),
        })
    }

    /// Waits for the audit key, which is loaded while the run is prepared:
    /// a key that cannot be loaded is the error opening the log gives
    /// otherwise, and nothing is recorded (nothing can be). Asked before
    /// [`Session::run`] and [`Session::handler`]; their begin refuses the
    /// run either way.
    pub fn ready(&self) -> Result<()> {
        self.trail.key_ready().map_err(|e| {
            self.recorded.set(true);
            hinted(e)
        })
    }

    /// Runs `req` with its record (`cordon run`).
    pub fn run(&self, req: &mut RunRequest) -> ExecutionResult {
        req.request_id = Some(self.request_id.clone());
        self.recorded.set(true);
        audit::run_audited(req, &self.trail, &self.subject.borrow())
    }

    /// Runs a handler, which records itself (`cordon exec`).
    pub fn handler(&self, req: &mut HandlerRequest) -> HandlerResult {
        req.request_id = Some(self.request_id.clone());
        req.traceparent = Some(self.trace.to_string());
        req.audit = Some(self.trail.clone());
        req.audit_subject = self.subject.borrow().clone();
        self.recorded.set(true);
        cordon::run_handler(req)
    }

    /// Passes `outcome` through; an error that came before the run (a bad
    /// flag, an unreadable input) is recorded as `SETUP_FAILED` first.
    pub fn finish(&self, outcome: Result<i32>) -> Result<i32> {
        if let Err(e) = &outcome {
            if !self.recorded.get() {
                self.record_unstarted(e.chain().map(ToString::to_string).collect::<Vec<_>>().join(": "));
            }
        }
        outcome
    }

    /// Adds what became known before the run (an installed plugin's id
    /// and provenance) to the record.
    pub fn amend_subject(&self, f: impl FnOnce(&mut Subject)) {
        f(&mut self.subject.borrow_mut());
    }

    /// Records a run that was refused before it started (`SETUP_FAILED`,
    /// with `message`) and returns its result.
    pub fn record_unstarted(&self, message: String) -> ExecutionResult {
        self.recorded.set(true);
        let result = ExecutionResult::unstarted(&self.request_id, self.mode.unwrap_or(Mode::Container), message);
        let host_env: Vec<(String, String)> = std::env::vars().collect();
        let secrets = audit::host_secret_values(&host_env);
        let ending = result.audit_ending("");
        if let Err(ae) =
            self.trail.record_unstarted(&self.subject.borrow(), &self.request_id, self.mode, ending, &secrets)
        {
            render::message("warning", &ae.render());
        }
        result
    }
}

/// An audit error as the CLI shows it: message, cause, indented hint.
fn hinted(e: AuditError) -> anyhow::Error {
    let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
    anyhow::anyhow!("{e}{cause}\n  hint: {}", e.hint())
}
