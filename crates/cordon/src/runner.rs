//! One run: plan, spawn, supervise, account.
//!
//! The supervisor is a single-threaded `poll` loop over the child's pidfd,
//! the captured output pipes, the pty relay ([`crate::tty`]) and a signalfd
//! for cordon's own signals ([`sys::SUPERVISED_SIGNALS`]): termination
//! requests are forwarded to the run once (its init passes each to every
//! process), `SIGTSTP`, `SIGTTIN` and `SIGTTOU` stop the whole run and then
//! cordon ([`stop_job`]), `SIGCONT` resumes both, `SIGWINCH` resizes the
//! run's pty. The sandbox lives in a process group of its own, so a key
//! typed on the caller's terminal (Ctrl-C) signals cordon alone, and the
//! command receives it exactly once. It owns the wall clock (SIGTERM, then
//! SIGKILL after the grace period), the output budget and, where a cgroup
//! counts it, the CPU budget.
//!
//! # Job control and the time limit
//!
//! The caller's terminal is relayed (a pty of the run's, or pipes), so
//! cordon is the program of the job that reads and writes it, and job
//! control stops cordon as it would the command: Ctrl-Z, a read in the
//! background, output in the background under `stty tostop`. A stopped
//! cordon enforces nothing, so the run never goes on without it: every
//! process of the run is stopped first (`SIGSTOP` from its init, which no
//! process can catch or ignore), and resumed when cordon is. The time limit
//! is wall-clock time and goes on while the job is stopped: a deadline
//! that passed meanwhile ends the run as soon as it is continued (SIGTERM,
//! then SIGKILL after the grace period, as at any timeout).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cordon_core::enforce::{self, links, CgroupStats, Command, ExitStatus, SpawnError, Stdio};
use cordon_core::plan::Plan;
use cordon_core::plan::TerminalPlan;
use cordon_core::policy::env::{redact, Home, DEFAULT_PATH};
use cordon_core::policy::{Mode, Policy};
use cordon_core::probe::KernelSupport;
use cordon_core::state::{self, Protected};
use cordon_core::system_entries::SystemEntries;
use cordon_core::{sys, trace};

use crate::result::{EnvNames, ErrorCode, ExecutionResult, Exit, LogLine, Logs, Metrics, ResultError, Stream};
use crate::sink::Sink;
use crate::tty::{self, InputEvent, RawMode, Relay, TerminalInput, Tty};

/// Whether output is passed through or captured into the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// stdout/stderr go to cordon's own.
    PassThrough,
    /// Captured, bounded by `limits.output_bytes`, into `logs`.
    Logs,
}

/// What the command reads on stdin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Input {
    /// cordon's own stdin.
    #[default]
    Inherit,
    /// These bytes, then end of file (a plugin handler's JSON input).
    Bytes(Vec<u8>),
}

/// The result channel of a plugin handler: a pipe the command gets as fd 3
/// (named in `CORDON_RESULT_FD`), read into `ExecutionResult::data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultChannel {
    /// Results larger than this are refused (`INVALID_RESULT`).
    pub max_bytes: usize,
}

/// The fd number the result channel has inside the sandbox.
pub const RESULT_FD: i32 = 3;

/// The environment variable a [`Start`] may set late (see [`Start::traceparent`]).
const TRACEPARENT_ENV: &str = cordon_plugin::traceparent::ENV;

/// Ends a run early from another thread: [`Cancel::cancel`] makes the
/// supervisor kill the whole sandbox (as at the timeout, without the
/// grace period), and the result is `CANCELLED`; [`Cancel::expire`] does
/// the same for a deadline the host enforces, and the result is `EXPIRED`.
/// A run cancelled before it started never starts. Clones share one
/// handle; only the first call counts (its reason stays).
#[derive(Clone, Debug)]
pub struct Cancel(std::sync::Arc<CancelInner>);

/// Why a run was ended through its [`Cancel`] handle: the error code of
/// its result and audit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// The caller gave up (`CANCELLED`).
    Caller,
    /// A deadline the host enforces passed (`EXPIRED`).
    Deadline,
}

#[derive(Debug)]
struct CancelInner {
    /// 0 while running; else the first call's reason ([`CancelInner::code`]).
    state: std::sync::atomic::AtomicU8,
    /// Readable once cancelled: the supervisor polls it beside the pidfd.
    read: OwnedFd,
    write: std::fs::File,
}

impl CancelInner {
    fn code(reason: CancelReason) -> u8 {
        match reason {
            CancelReason::Caller => 1,
            CancelReason::Deadline => 2,
        }
    }
}

impl Cancel {
    /// A handle not cancelled yet. Fails only when no pipe can be created.
    pub fn new() -> io::Result<Cancel> {
        let (read, write) = sys::pipe()?;
        let write = std::fs::File::from(write);
        Ok(Cancel(std::sync::Arc::new(CancelInner { state: 0.into(), read, write })))
    }

    /// Cancels the run for the caller (`CANCELLED`); returns whether this
    /// call was the first.
    pub fn cancel(&self) -> bool {
        self.end(CancelReason::Caller)
    }

    /// Ends the run because its deadline passed (`EXPIRED`); returns
    /// whether this call was the first.
    pub fn expire(&self) -> bool {
        self.end(CancelReason::Deadline)
    }

    fn end(&self, reason: CancelReason) -> bool {
        use std::io::Write;
        use std::sync::atomic::Ordering::SeqCst;
        let first = self.0.state.compare_exchange(0, CancelInner::code(reason), SeqCst, SeqCst).is_ok();
        if first {
            // One byte wakes the supervisor's poll; the pipe never fills.
            let _ = (&self.0.write).write(&[1]);
        }
        first
    }

    /// Whether [`Cancel::cancel`] or [`Cancel::expire`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.state.load(std::sync::atomic::Ordering::SeqCst) != 0
    }

    /// Why the run was ended, once it was: the first call's reason.
    pub fn reason(&self) -> Option<CancelReason> {
        match self.0.state.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            2 => Some(CancelReason::Deadline),
            _ => Some(CancelReason::Caller),
        }
    }
}

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The policy.
    pub policy: Policy,
    /// The tier.
    pub mode: Mode,
    /// Program and arguments; the program is looked up in the sandbox's `PATH`.
    pub argv: Vec<String>,
    /// Working directory (host path; also the path inside).
    pub cwd: PathBuf,
    /// Output handling.
    pub capture: Capture,
    /// cordon's own environment, the source for `env.allow`.
    pub host_env: Vec<(String, String)>,
    /// Request id; generated when `None`.
    pub request_id: Option<String>,
    /// Extra warnings to carry into the result (e.g. a mode fallback).
    pub warnings: Vec<String>,
    /// What the kernel supports, if the caller probed already; probed when
    /// `None`, except in dev mode, which needs nothing of it.
    pub support: Option<KernelSupport>,
    /// stdin.
    pub stdin: Input,
    /// A result channel, for plugin handlers.
    pub result: Option<ResultChannel>,
    /// cordon's own files this run must not reach besides those of
    /// [`cordon_core::state::protected_paths`]: the audit log it records to,
    /// when that is elsewhere. Every protected path is carved out of the
    /// grants (see [`cordon_core::state`]).
    pub protect: Vec<Protected>,
    /// Folders inside cordon's state that this run needs (a plugin's own
    /// folder and data folder): their grants are kept.
    pub own_folders: Vec<PathBuf>,
    /// The run's own run folder inside cordon's folder of run folders
    /// ([`cordon_core::state::runs_folder`]): its grants there are kept, and
    /// a grant covering that folder reaches this run's folder and no
    /// other's ([`cordon_core::state::carve_out_with_hole`]).
    pub run_folder: Option<PathBuf>,
    /// A terminal of the command's own, relayed to cordon's (`--tty`).
    pub tty: Tty,
    /// Ends the run early when cancelled; `None`: only the limits end it.
    pub cancel: Option<Cancel>,
    /// What cordon's own SIGINT/SIGTERM/SIGHUP do to the run.
    pub signals: Signals,
    /// How network refusals say what to change: `--net` (the default) or
    /// the manifest's `net.allow`.
    pub net_hints: cordon_egress::kernel::HintStyle,
    /// Follow a rule's symbolic link in a folder a run may have written
    /// (`--follow-links`), recording each in the enforcement ledger;
    /// default `false`: such a link refuses the run
    /// ([`cordon_core::enforce::links`]).
    pub follow_links: bool,
}

/// What the calling process's termination signals do to a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signals {
    /// SIGINT, SIGTERM and SIGHUP are blocked on the supervising thread and
    /// forwarded to the run (`cordon run`, `cordon exec`).
    #[default]
    Forward,
    /// Left alone: the host process handles them itself (the gateway drains
    /// its runs on SIGTERM instead of passing it on). The supervising
    /// thread's signal mask is not changed.
    Leave,
}

impl RunRequest {
    /// A request with the current directory, passed-through output and
    /// cordon's own environment.
    pub fn new(policy: Policy, mode: Mode, argv: Vec<String>) -> Self {
        RunRequest {
            policy,
            mode,
            argv,
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            capture: Capture::PassThrough,
            host_env: std::env::vars().collect(),
            request_id: None,
            warnings: vec![],
            support: None,
            stdin: Input::Inherit,
            result: None,
            protect: vec![],
            own_folders: vec![],
            run_folder: None,
            tty: Tty::Off,
            cancel: None,
            signals: Signals::Forward,
            net_hints: cordon_egress::kernel::HintStyle::Flag,
            follow_links: false,
        }
    }
}

/// The program could not be resolved before the start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No such file in `PATH` (in the folders the sandbox sees) or at the
    /// path given.
    #[error("command not found: {program}")]
    NotFound {
        /// The name as given.
        program: String,
        /// Where it is on `PATH` in a folder the sandbox does not see.
        hidden: Option<PathBuf>,
    },
    /// Found, but not an executable file.
    #[error("command is not executable: {program}")]
    NotExecutable {
        /// The name as given.
        program: String,
        /// The file found.
        path: PathBuf,
    },
}

impl ResolveError {
    /// What to do about it, where cordon can tell.
    pub fn hint(&self) -> Option<String> {
        match self {
            ResolveError::NotFound { hidden: Some(p), .. } => Some(format!(
                "{} is on PATH, in a folder the sandbox does not see; grant it (--read {})",
                p.display(),
                p.parent().unwrap_or(Path::new("/")).display()
            )),
            ResolveError::NotFound { .. } => None,
            ResolveError::NotExecutable { program, path } => {
                let interpreter = script_interpreter(path);
                Some(match interpreter {
                    Some(i) => {
                        format!("make it executable (chmod +x {program}), or name its interpreter: {i} {program}")
                    }
                    None => {
                        format!("make it executable (chmod +x {program}), or name its interpreter (e.g. sh {program})")
                    }
                })
            }
        }
    }
}

/// The interpreter a script's `#!` line names (its file name, as typed on
/// a command line: `python3`, `sh`), or `None` for anything else.
fn script_interpreter(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 128];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(line.split(|b| *b == b'\n').next()?).into_owned();
    let mut words = line.split_whitespace();
    let first = Path::new(words.next()?).file_name()?.to_str()?.to_owned();
    // `#!/usr/bin/env python3` names its interpreter second.
    match (first.as_str(), words.next()) {
        ("env", Some(second)) => Some(second.to_owned()),
        _ => Some(first),
    }
}

/// Finds `program` as `execvp` would, in `path` (colon-separated), relative
/// names against `cwd`, looking only in the folders `sees` (what the
/// sandbox can read): `PATH` is the caller's, and a folder the sandbox
/// does not see would resolve to a file it cannot execute. A name given
/// with a `/` is taken as it is.
pub fn resolve_program(
    program: &str,
    path: &str,
    cwd: &Path,
    sees: impl Fn(&Path) -> bool,
) -> Result<PathBuf, ResolveError> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let not_found = |hidden| ResolveError::NotFound { program: program.into(), hidden };
    if program.is_empty() {
        return Err(not_found(None));
    }
    if program.contains('/') {
        let p = cwd.join(program);
        return match executable(&p) {
            Ok(true) => Ok(p),
            Ok(false) => Err(ResolveError::NotExecutable { program: program.into(), path: p }),
            Err(_) => Err(not_found(None)),
        };
    }
    let mut non_exec = None;
    let mut hidden = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = cwd.join(dir).join(program);
        match executable(&p) {
            Ok(true) if sees(&p) => return Ok(p),
            Ok(true) => hidden = hidden.or(Some(p)),
            Ok(false) if sees(&p) => non_exec = non_exec.or(Some(p)),
            Ok(false) | Err(_) => {}
        }
    }
    match non_exec {
        Some(p) => Err(ResolveError::NotExecutable { program: program.into(), path: p }),
        None => Err(not_found(hidden)),
    }
}

#[derive(Debug)]
struct Started {
    request_id: String,
    start: Instant,
    warnings: Vec<String>,
    enforcement: Vec<cordon_core::plan::LedgerEntry>,
    env: EnvNames,
}

impl Started {
    fn fail(self, mode: Mode, code: ErrorCode, message: String) -> ExecutionResult {
        ExecutionResult {
            ok: false,
            request_id: self.request_id,
            mode,
            exit: None,
            error: Some(ResultError { code, message }),
            data: None,
            metrics: Metrics { wall_ms: ms(self.start.elapsed()), ..Metrics::default() },
            logs: Logs::default(),
            warnings: self.warnings,
            enforcement: self.enforcement,
            network: vec![],
            env: self.env,
            not_granted: vec![],
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Runs one request to the end and returns its result. Never panics on
/// user error: every failure is a result with an error code. The same as
/// [`park`] and an immediate start, with the clock (`wall_ms`, the
/// timeout) running from the beginning of the setup.
pub fn run(req: &RunRequest) -> ExecutionResult {
    run_answering(req).0
}

/// [`run`], returning as soon as the result is known, with what is left
/// of the run ([`Aftermath`]): the caller does its own work (the audit
/// record) while the sandbox's init tears its namespaces down (≈ 0.4 ms of
/// a container run: the mount tree, the network namespace, an RCU grace
/// period), then drops it, which waits for that and removes the run's
/// cgroups. When it returns, every process of the run but init
/// is reaped (init reports only after `waitpid` says none is left), and
/// init runs nothing but its exit.
pub fn run_answering(req: &RunRequest) -> (ExecutionResult, Aftermath) {
    run_answering_while(req, &mut || {})
}

/// [`run_answering`], calling `while_running` once the command has been
/// exec'd (as [`Start::on_exec`]; not when the run fails before), before
/// the run is supervised: for the caller's own work that the command's
/// start need not wait for (the audit record's preparation), done while
/// the command starts up on the other CPU.
pub fn run_answering_while(req: &RunRequest, while_running: &mut dyn FnMut()) -> (ExecutionResult, Aftermath) {
    run_answering_gated(req, &mut || Ok(()), while_running)
}

/// [`run_answering_while`], with `before_start` called once before the
/// command can start, for the caller's own work that must be done by then
/// (the audit record's begin). In process and container mode it is called
/// once the sandbox is parked, so it runs while init builds the
/// namespaces and mounts on the other CPU; an error it returns (boxed:
/// it is large) is the run's result, and the parked sandbox is dropped (init killed and
/// reaped, its cgroups removed) before its command ever ran. It is not
/// called when the run fails before it is parked. In dev mode, whose
/// command starts as soon as its process is made, it is called before
/// anything else.
pub fn run_answering_gated(
    req: &RunRequest,
    before_start: &mut dyn FnMut() -> Result<(), Box<ExecutionResult>>,
    while_running: &mut dyn FnMut(),
) -> (ExecutionResult, Aftermath) {
    let mut after = Aftermath::default();
    let mut started = |parked: Parked, after: &mut Aftermath| {
        parked.start_with(Start::default(), Clock::FromPark, after, while_running)
    };
    let result = match req.mode {
        Mode::Dev => match before_start().map(|()| park(req)) {
            Err(refused) => *refused,
            Ok(Ok(parked)) => started(parked, &mut after),
            Ok(Err(failed)) => *failed,
        },
        _ => match park(req) {
            Ok(parked) => match before_start() {
                Ok(()) => started(parked, &mut after),
                Err(refused) => *refused,
            },
            Err(failed) => *failed,
        },
    };
    (result, after)
}

/// What is left of a run after its result ([`run_answering`]): the
/// sandbox's teardown (init exiting, the socket maker, the cgroups).
/// Dropping it waits for that; no process of the run but its init, in its `_exit`,
/// is left while it is held. Hold it only across the caller's own work,
/// on the thread that ran the request, and drop it before the process
/// ends: a cordon that exits holding it leaves the run's cgroups behind
/// (swept later, as a killed cordon's are).
#[derive(Debug, Default)]
#[must_use = "dropping it waits for the sandbox's teardown"]
pub struct Aftermath {
    teardown: Option<enforce::Teardown>,
}

/// What a parked run learns when it is started ([`Parked::start`]). Each
/// `None` keeps what the parked [`RunRequest`] said.
#[derive(Clone, Debug, Default)]
pub struct Start {
    /// The result's `request_id` (the caller's). The parked request's id
    /// still names the run's cgroups.
    pub request_id: Option<String>,
    /// The command's stdin, then end of file. Needs a request parked with
    /// [`Input::Bytes`] (the pipe is made at park).
    pub input: Option<Vec<u8>>,
    /// The value of `TRACEPARENT` in the command's environment: 55
    /// characters (W3C trace context, version 00). Needs a request whose
    /// environment sets `TRACEPARENT` to a placeholder of that length.
    pub traceparent: Option<String>,
    /// Ends the run early; replaces the parked request's handle.
    pub cancel: Option<Cancel>,
    /// Called once the command has been exec'd (not when the start fails
    /// before), on the thread that starts the run, before the run is
    /// supervised: for a host that holds other work (a warm pool's next
    /// sandbox) off the CPU while the run starts.
    pub on_exec: Option<OnExec>,
}

/// A call made once a started run's command has been exec'd
/// ([`Start::on_exec`]).
#[derive(Clone)]
pub struct OnExec(std::sync::Arc<dyn Fn() + Send + Sync>);

impl OnExec {
    /// `f`, to be called once the command has been exec'd.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> OnExec {
        OnExec(std::sync::Arc::new(f))
    }
}

impl std::fmt::Debug for OnExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnExec(..)")
    }
}

/// Where a run's clock (its `wall_ms` and its timeout) starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    /// At the beginning of [`park`]: a run started at once (`cordon run`).
    FromPark,
    /// At [`Parked::start`]: a sandbox parked ahead of its request.
    FromStart,
}

/// A run set up up to its command's start ([`park`]): the plan built, the
/// sandbox's namespaces, mounts and cgroups ready, its init waiting for the go message. [`Parked::start`] starts the
/// command with the request's own data ([`Start`]) and supervises it to
/// the end; nothing of the run (wall clock, timeout, CPU polling, output
/// capture, cancel) counts before that.
///
/// Dropped unstarted, the sandbox is killed and reaped and its cgroups
/// removed. Its init dies with the thread that parked
/// it (`PR_SET_PDEATHSIG`), so park from a thread that outlives the run;
/// with [`Signals::Forward`], start it on that thread too (the signals
/// are blocked on it). Dev mode has no init to hold the command: it runs
/// from [`park`] on, reads the start's input when it is written, and a
/// start that gives it a `TRACEPARENT` is refused (it is too late to set).
#[derive(Debug)]
pub struct Parked {
    sandbox: enforce::Parked,
    req: RunRequest,
    plan: Plan,
    ours: Pipes,
    started: Started,
    signals: Option<OwnedFd>,
    secrets: Vec<String>,
    late_env: LateEnvUse,
}

/// Whether the parked command's environment has a `TRACEPARENT` a
/// [`Start`] may replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LateEnvUse {
    Traceparent,
    None,
}

/// Sets a run up up to its command's start and parks it there (see
/// [`Parked`]). A run that cannot be set up returns its result (boxed: it
/// is large), exactly as [`run`] would.
pub fn park(req: &RunRequest) -> Result<Parked, Box<ExecutionResult>> {
    let mut started = Started {
        request_id: req.request_id.clone().unwrap_or_else(crate::new_request_id),
        start: Instant::now(),
        warnings: req.warnings.clone(),
        enforcement: vec![],
        env: EnvNames::default(),
    };
    if let Some(Err(e)) = req.request_id.as_deref().map(crate::check_request_id) {
        started.request_id = crate::new_request_id();
        return Err(Box::new(started.fail(req.mode, ErrorCode::SetupFailed, format!("{e}\nhint: {}", e.hint()))));
    }
    if req.mode == Mode::Dev {
        let w = "dev mode: no isolation at all; only the timeout is enforced. Use it for trusted code only.";
        eprintln!("cordon: warning: {w}");
        started.warnings.push(w.to_owned());
    }
    let mode = req.mode;
    if let Err(e) = req.policy.validate() {
        return Err(Box::new(started.fail(mode, ErrorCode::SetupFailed, e.to_string())));
    }
    // No rule is taken through a link an earlier run may have made (in a
    // folder a run may write), unless the caller said to follow it.
    let followed = match mode {
        Mode::Dev => vec![],
        _ => {
            let source = match req.net_hints {
                cordon_egress::kernel::HintStyle::Flag => links::RuleSource::Flags,
                cordon_egress::kernel::HintStyle::Manifest => links::RuleSource::Manifest,
            };
            let exempt: Vec<PathBuf> = req.own_folders.iter().chain(&req.run_folder).cloned().collect();
            match links::check_policy(&req.policy, &exempt, source, req.follow_links) {
                Ok(f) => f,
                Err(e) => {
                    return Err(Box::new(started.fail(
                        mode,
                        ErrorCode::SetupFailed,
                        format!("{e}\nhint: {}", e.hint()),
                    )))
                }
            }
        }
    };
    for f in &followed {
        let note = format!(
            "{} follows the symbolic link {} (to {}) in a folder a run may write (--follow-links)",
            f.rule,
            f.link.display(),
            f.target.display()
        );
        eprintln!("cordon: notice: {note}");
        started.warnings.push(note);
    }
    trace::step("runner: links checked");
    // No rule is taken through a link a run could have made in a write
    // grant (the grants are pinned trees from here on).
    let pinned;
    let policy = match mode {
        Mode::Dev => &req.policy,
        _ => match cordon_core::enforce::pin::pin_write_grants(&req.policy) {
            Ok(Some(p)) => {
                pinned = p;
                &pinned
            }
            Ok(None) => &req.policy,
            Err(e) => {
                return Err(Box::new(started.fail(mode, ErrorCode::SetupFailed, format!("{e}\nhint: {}", e.hint()))))
            }
        },
    };
    let carved;
    // Looked at once, for the carve-out and the mount steps.
    let system_entries = (mode != Mode::Dev).then(SystemEntries::look);
    let granted = match &system_entries {
        None => policy,
        Some(system) => {
            let mut protected = state::protected_paths();
            protected.extend(req.protect.iter().cloned());
            match state::carve_out_with_hole(policy, &protected, &req.own_folders, req.run_folder.as_deref(), system) {
                Ok(c) => {
                    for note in &c.notes {
                        eprintln!("cordon: notice: {note}");
                        started.warnings.push(note.clone());
                    }
                    carved = c.policy;
                    &carved
                }
                Err(e) => {
                    return Err(Box::new(started.fail(
                        mode,
                        ErrorCode::SetupFailed,
                        format!("{e}\nhint: {}", e.hint()),
                    )))
                }
            }
        }
    };
    if req.tty == Tty::Relay && (req.capture != Capture::PassThrough || req.stdin != Input::Inherit) {
        let what = if req.capture != Capture::PassThrough { "captured output (--json)" } else { "given input" };
        return Err(Box::new(started.fail(
            mode,
            ErrorCode::SetupFailed,
            format!("a pty of its own (--tty) cannot be combined with {what}\nhint: drop --tty, or --json"),
        )));
    }
    trace::step("runner: cordon's state carved out");
    // Dev mode asks the kernel for nothing, so it is not probed.
    let support = match (mode, req.support.clone()) {
        (Mode::Dev, _) => None,
        (_, Some(s)) => Some(s),
        (_, None) => match KernelSupport::detect() {
            Ok(s) => Some(s),
            Err(e) => return Err(Box::new(started.fail(mode, ErrorCode::SetupFailed, format!("{e}: {}", e.source)))),
        },
    };
    // The program is found before planning: an exec allow-list always
    // includes the command itself. PATH does not depend on HOME.
    let path_env = req.policy.env.build(req.host_env.iter().cloned(), Home::Set("/tmp"));
    let path = path_env.iter().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let Some(program) = req.argv.first() else {
        return Err(Box::new(started.fail(mode, ErrorCode::SetupFailed, "no command given".into())));
    };
    let sees = |p: &Path| mode == Mode::Dev || crate::check_fs(granted, p, crate::Access::Read).is_ok();
    let program = match resolve_program(program, path, &req.cwd, sees) {
        Ok(p) => p,
        Err(e) => {
            let code = match e {
                ResolveError::NotFound { .. } => ErrorCode::NotFound,
                ResolveError::NotExecutable { .. } => ErrorCode::NotExecutable,
            };
            let hint = e.hint().map(|h| format!("\nhint: {h}")).unwrap_or_default();
            return Err(Box::new(started.fail(mode, code, format!("{e}{hint}"))));
        }
    };
    let with_command;
    let policy = match &granted.exec {
        Some(list) if !list.contains(&program) => {
            let mut p = granted.clone();
            p.exec.get_or_insert_with(Vec::new).push(program.clone());
            with_command = p;
            &with_command
        }
        _ => granted,
    };
    trace::step("runner: command resolved");
    let planned = match &support {
        Some(support) => Plan::build(policy, mode, support),
        None => Plan::build_dev(policy),
    };
    let mut plan = match planned {
        Ok(p) => p,
        Err(e) => return Err(Box::new(started.fail(mode, ErrorCode::SetupFailed, format!("{e}\nhint: {}", e.hint())))),
    };
    plan.attach_terminal(tty::terminal_use(req));
    plan.system_entries = system_entries;
    trace::step("runner: plan built");
    started.enforcement = plan.ledger.clone();
    started.enforcement.extend(followed.iter().map(|f| cordon_core::plan::LedgerEntry {
        rule: f.rule.clone(),
        mechanism: format!(
            "followed the symbolic link {} (to {}) in a folder a run may write: accepted by --follow-links",
            f.link.display(),
            f.target.display()
        ),
        enforcement: cordon_core::plan::Enforcement::Full,
    }));
    let home = plan.home().map(|h| h.to_string_lossy().into_owned());
    let home = home.as_deref().map_or(Home::Caller, Home::Set);
    let mut env = req.policy.env.build(req.host_env.iter().cloned(), home);
    if req.result.is_some() {
        env.push(("CORDON_RESULT_FD".into(), RESULT_FD.to_string()));
    }
    if let Some(port) = plan.proxy_port {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        env.extend(cordon_egress::proxy_env(addr).into_iter().map(|(k, v)| (k.to_owned(), v)));
    }
    let passed = req.policy.env.passed_names(&req.host_env, home);
    started.env =
        EnvNames { set: env.iter().map(|(k, _)| k.clone()).filter(|k| !passed.contains(k)).collect(), passed };
    let secrets = req.policy.env.secret_values(&env);
    let late_env = match env.iter().any(|(k, v)| k == TRACEPARENT_ENV && v.len() == enforce::LATE_ENV_BYTES) {
        true => LateEnvUse::Traceparent,
        false => LateEnvUse::None,
    };
    let cmd = Command {
        program,
        args: req.argv.clone(),
        env,
        cwd: req.cwd.clone(),
        late_env: (late_env == LateEnvUse::Traceparent).then(|| TRACEPARENT_ENV.to_owned()),
    };
    let (stdio, ours) = match Pipes::create(req, &plan) {
        Ok(p) => p,
        Err(e) => {
            return Err(Box::new(started.fail(
                mode,
                ErrorCode::SetupFailed,
                format!("cannot create the command's pipes: {e}"),
            )))
        }
    };
    // Blocked before the clone so a Ctrl-C can't slip between; the child
    // unblocks everything before exec.
    let signals = match req.signals {
        Signals::Forward => sys::block_supervised_signals().ok(),
        Signals::Leave => None,
    };
    let sandbox = match enforce::park(&plan, &cmd, &started.request_id, stdio) {
        Ok(p) => p,
        Err(e) => return Err(Box::new(spawn_failed(started, mode, &e))),
    };
    trace::step("runner: parked");
    Ok(Parked { sandbox, req: req.clone(), plan, ours, started, signals, secrets, late_env })
}

/// Kills and reaps a started sandbox that cannot be served, and fails the
/// run with `message`.
fn abandon(running: enforce::Running, started: Started, mode: Mode, message: String) -> ExecutionResult {
    let _ = running.signal(libc::SIGKILL);
    let _ = running.reap();
    started.fail(mode, ErrorCode::SetupFailed, message)
}

/// The result of a run whose sandbox could not be set up or started.
fn spawn_failed(started: Started, mode: Mode, e: &SpawnError) -> ExecutionResult {
    let (code, msg) = match e {
        SpawnError::Exec { source, .. } if source.raw_os_error() == Some(libc::ENOENT) => {
            (ErrorCode::NotFound, e.to_string())
        }
        SpawnError::Exec { .. } => (ErrorCode::NotExecutable, e.to_string()),
        _ => (ErrorCode::SetupFailed, e.to_string()),
    };
    let cause = std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default();
    let hint = e.hint().map(|h| format!("\nhint: {h}")).unwrap_or_default();
    started.fail(mode, code, format!("{msg}{cause}{hint}"))
}

impl Parked {
    /// Pid of the sandbox's init in cordon's pid namespace.
    pub fn pid(&self) -> libc::pid_t {
        self.sandbox.pid()
    }

    /// The parked request's id: names the run's cgroups.
    pub fn run_id(&self) -> &str {
        &self.started.request_id
    }

    /// Whether the sandbox's init has exited while parked (its parking
    /// thread ended, it was killed, or its setup failed): such a sandbox
    /// can only be dropped.
    pub fn is_dead(&self) -> bool {
        sys::poll(&[(self.sandbox.pidfd(), libc::POLLIN)], 0).is_ok_and(|r| r[0] != 0)
    }

    /// Starts the command with the request's data and supervises it to the
    /// end; the clock starts now. Never panics on user error: every
    /// failure is a result with an error code.
    pub fn start(self, start: Start) -> ExecutionResult {
        let mut after = Aftermath::default();
        self.start_with(start, Clock::FromStart, &mut after, &mut || {})
    }

    /// [`Parked::start`], returning as soon as the result is known, with
    /// what is left of the run: see [`run_answering`].
    pub fn start_answering(self, start: Start) -> (ExecutionResult, Aftermath) {
        let mut after = Aftermath::default();
        let result = self.start_with(start, Clock::FromStart, &mut after, &mut || {});
        (result, after)
    }

    /// Starts and supervises the run; what is left of it once its result is
    /// known goes to `after`, for the caller to drop. `while_running` is
    /// called after [`Start::on_exec`] (see [`run_answering_while`]).
    fn start_with(
        self,
        start: Start,
        clock: Clock,
        after: &mut Aftermath,
        while_running: &mut dyn FnMut(),
    ) -> ExecutionResult {
        let Parked { sandbox, mut req, plan, mut ours, mut started, signals, secrets, late_env } = self;
        let mode = req.mode;
        if clock == Clock::FromStart {
            started.start = Instant::now();
        }
        if let Some(id) = start.request_id {
            if let Err(e) = crate::check_request_id(&id) {
                return started.fail(mode, ErrorCode::SetupFailed, format!("{e}\nhint: {}", e.hint()));
            }
            started.request_id = id;
        }
        if let Some(c) = start.cancel {
            req.cancel = Some(c);
        }
        if let Some(input) = start.input {
            match &mut ours.stdin {
                Some((_, bytes)) => *bytes = input,
                None => {
                    return started.fail(
                        mode,
                        ErrorCode::SetupFailed,
                        "this run was parked without an input pipe, so it cannot be given input\nhint: park it with stdin: Input::Bytes".into(),
                    )
                }
            }
        }
        let mut go = enforce::Go::default();
        if let (Mode::Dev, Some(_)) = (mode, &start.traceparent) {
            return started.fail(
                mode,
                ErrorCode::SetupFailed,
                format!("a dev mode run has no init to hold its command: it has run since the park, so it cannot be given a {TRACEPARENT_ENV}\nhint: park it in process or container mode, or set {TRACEPARENT_ENV} in the request before the park"),
            );
        }
        if let Some(tp) = start.traceparent {
            let shaped = tp.len() == enforce::LATE_ENV_BYTES && tp.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            let value = match (late_env, <[u8; enforce::LATE_ENV_BYTES]>::try_from(tp.as_bytes())) {
                (LateEnvUse::Traceparent, Ok(v)) if shaped => v,
                (LateEnvUse::None, _) => {
                    return started.fail(
                        mode,
                        ErrorCode::SetupFailed,
                        format!("this run was parked without a {TRACEPARENT_ENV} placeholder, so it cannot be given one\nhint: set {TRACEPARENT_ENV} to a placeholder of {} characters in the policy's env.set", enforce::LATE_ENV_BYTES),
                    )
                }
                _ => {
                    return started.fail(
                        mode,
                        ErrorCode::SetupFailed,
                        format!("traceparent `{tp}` is not {} characters of hex digits and dashes (W3C version 00)", enforce::LATE_ENV_BYTES),
                    )
                }
            };
            go.late_env = Some(value);
        }
        match req.cancel.as_ref().and_then(Cancel::reason) {
            Some(CancelReason::Deadline) => {
                return started.fail(mode, ErrorCode::Expired, "the deadline passed before it started".into())
            }
            Some(_) => return started.fail(mode, ErrorCode::Cancelled, "cancelled before it started".into()),
            None => {}
        }
        let req = &req;
        let plan = &plan;
        let mut running = match sandbox.start(go) {
            Ok(r) => r,
            Err(e) => return spawn_failed(started, mode, &e),
        };
        trace::step("runner: spawned");
        if let Some(OnExec(call)) = &start.on_exec {
            call();
        }
        while_running();
        // The listener lives in the sandbox's network namespace; the proxy
        // serves it from ours. Connections made before this point wait in its
        // backlog.
        let proxy = match running.proxy_listener.take() {
            None => None,
            Some(fd) => match spawn_proxy(req, fd, running.sockets.take()) {
                Ok(h) => Some(h),
                Err(e) => return abandon(running, started, mode, format!("cannot start the filtering proxy: {e}")),
            },
        };
        let mut kernel_egress = match running.egress.take() {
            None => KernelEgress::Off,
            Some(egress) => match KernelEgress::start(req, plan, egress, running.sockets.take()) {
                Ok(k) => k,
                Err(e) => return abandon(running, started, mode, e),
            },
        };
        // The caller's terminal goes raw only now, so that every setup error
        // above is printed in its usual modes.
        let relay = match running.pty_master.take().map(Relay::new).transpose() {
            Ok(r) => r,
            Err(e) => return abandon(running, started, mode, format!("cannot relay the command's pty: {e}")),
        };
        let raw = match &relay {
            // With SIGTTOU blocked, the kernel would let a background cordon
            // change the terminal under the shell: the job stops first, as
            // the kernel would stop it, until it is in the foreground.
            Some(_) => match await_foreground(&running) {
                false => None,
                true => match RawMode::enter() {
                    Ok(r) => r,
                    Err(e) => {
                        return abandon(running, started, mode, format!("cannot put the terminal in raw mode: {e}"))
                    }
                },
            },
            None => None,
        };
        let (mut result, teardown) = supervise(
            req,
            plan,
            running,
            ours,
            started,
            signals,
            &secrets,
            Terminal { relay, raw },
            &mut kernel_egress,
        );
        after.teardown = teardown;
        trace::step("runner: reaped");
        if let Some(p) = proxy {
            result.network = p.shutdown();
        }
        if let Some(records) = kernel_egress.finish() {
            result.network = records;
        }
        result
    }
}

/// Starts the filtering proxy on the sandbox's `listener`; with the run's
/// socket maker, the kernel charges its sockets to the run.
fn spawn_proxy(
    req: &RunRequest,
    listener: OwnedFd,
    sockets: Option<OwnedFd>,
) -> Result<cordon_egress::ProxyHandle, cordon_egress::SpawnError> {
    let listener = std::net::TcpListener::from(listener);
    let config = cordon_egress::ProxyConfig::new(req.policy.net.clone());
    match sockets {
        Some(maker) => cordon_egress::spawn_charged(listener, config, maker),
        None => cordon_egress::spawn(listener, config),
    }
}

/// Transparent egress of a run (see `cordon_egress::kernel`).
enum KernelEgress {
    /// The run has none (dev mode, `--net-via proxy`).
    Off,
    /// Its policy allows no host, so most such runs never connect: the
    /// supervisor's thread and runtime start on the sandbox's first
    /// `connect()` (which waits in the listener's queue meanwhile), to
    /// refuse and explain it. [`supervise`] polls the listener.
    OnFirstConnect(cordon_egress::kernel::Prepared),
    /// The supervisor runs.
    Serving(cordon_egress::kernel::KernelEgress),
}

impl KernelEgress {
    /// Prepares the supervisor for a sandbox just spawned, and starts it
    /// unless the policy allows no host. Refusals are printed on cordon's
    /// stderr as they happen. The error is the run's failure message.
    fn start(
        req: &RunRequest,
        plan: &Plan,
        egress: enforce::SandboxEgress,
        sockets: Option<OwnedFd>,
    ) -> Result<KernelEgress, String> {
        use cordon_egress::kernel::{self, Endpoints, KernelConfig, UnixConnects};
        let mut config = KernelConfig::new(req.policy.net.clone());
        // Container mode's root shows no host socket unless granted; process
        // mode's view is the host's, which Landlock below ABI 9 cannot guard.
        config.unix = if plan.mode == Mode::Container { UnixConnects::InSandbox } else { UnixConnects::Refused };
        config.hints = req.net_hints;
        let hints = config.hints;
        // A notice quotes names the sandbox chose (process names, looked-up
        // names): escaped like everything else cordon prints for it.
        config.notices = Some(std::sync::Arc::new(move |notice: &kernel::Notice| {
            let line = format!("{}\n", crate::text::for_terminal(&notice.render(hints), crate::text::Newlines::Escape));
            // One write: the sandbox's own output shares this stderr, and
            // `eprintln!` writes its pieces separately, so a line could be
            // split by the program's own message.
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        }));
        let endpoints = Endpoints {
            listener: egress.listener,
            helper: egress.helper,
            dns_udp: egress.dns_udp,
            dns_tcp: egress.dns_tcp,
            sockets,
        };
        let prepared = kernel::prepare(endpoints, config).map_err(|e| spawn_error_message(&e))?;
        if req.policy.net.allow.is_empty() {
            return Ok(KernelEgress::OnFirstConnect(prepared));
        }
        prepared.spawn().map(KernelEgress::Serving).map_err(|e| spawn_error_message(&e))
    }

    /// The listener to poll for the first `connect()`, while not started.
    fn waiting_listener(&self) -> Option<BorrowedFd<'_>> {
        match self {
            KernelEgress::OnFirstConnect(p) => Some(p.listener()),
            _ => None,
        }
    }

    /// Starts the supervisor of an [`KernelEgress::OnFirstConnect`] run.
    fn start_serving(&mut self) -> Result<(), String> {
        match std::mem::replace(self, KernelEgress::Off) {
            KernelEgress::OnFirstConnect(p) => {
                *self = KernelEgress::Serving(p.spawn().map_err(|e| spawn_error_message(&e))?);
                Ok(())
            }
            other => {
                *self = other;
                Ok(())
            }
        }
    }

    /// Stops the supervisor and returns its records; `None` when it never
    /// ran (nothing connected, so there is nothing to record).
    fn finish(self) -> Option<Vec<cordon_egress::ConnectionRecord>> {
        match self {
            KernelEgress::Serving(k) => Some(k.finish()),
            KernelEgress::Off | KernelEgress::OnFirstConnect(_) => None,
        }
    }
}

fn spawn_error_message(e: &cordon_egress::kernel::SpawnError) -> String {
    let cause = std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default();
    format!("{e}{cause}")
}

/// cordon's ends of the command's pipes.
#[derive(Debug)]
struct Pipes {
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    result: Option<OwnedFd>,
    stdin: Option<(OwnedFd, Vec<u8>)>,
    /// Where the command's stdout and stderr go when cordon relays them
    /// ([`Handover::Relay`], [`Handover::Terminal`]): cordon's own
    /// descriptors. The output is written there, not captured.
    relay: [Option<Output>; 2],
    /// The caller's terminal as the command's stdin ([`Handover::Terminal`]).
    terminal_input: Option<TerminalInput>,
}

/// How a sandboxed command gets one of cordon's own stdio descriptors
/// (review s10 R4). A descriptor is used where it was opened: one of a
/// file the caller owns, opened outside the sandbox, lets the command
/// change the file's mode and times (`fchmod`, `futimens`, as its owner),
/// which no rule of the sandbox covers: not Landlock (it does not govern
/// metadata), not the read-only mounts (the descriptor is on the caller's).
/// `cordon run … > out.log` as root would let it make `/dev/null` mode 000
/// or a secret read on stdin world-readable.
#[derive(Debug, PartialEq, Eq)]
enum Handover {
    /// As it is: an anonymous pipe, a socket (which `enforce::park`
    /// checks), a file the caller does not own (the command, with no
    /// capability, cannot change its mode, owner or times), or a directory
    /// or block device (which `enforce::park` refuses).
    Keep,
    /// Through a pipe: cordon copies between it and its own descriptor.
    Relay,
    /// A terminal, through a pipe cordon relays from the caller's process
    /// group (review s11 S2): the command could otherwise read it while
    /// its job is in the background, where job control does not reach it
    /// (it leads no process group of the terminal's session), and change
    /// the terminal's mode and times (s10 R4).
    Terminal,
    /// Input from the caller's own `/dev/null`: an empty pipe reads alike.
    Empty,
}

/// How the command gets `fd`, one of cordon's stdio descriptors.
fn handover(fd: BorrowedFd<'_>) -> Handover {
    use std::io::IsTerminal;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(meta) = sys::metadata(fd) else {
        return Handover::Keep;
    };
    let kind = meta.file_type();
    if fd.is_terminal() {
        return Handover::Terminal;
    }
    if kind.is_socket() || kind.is_dir() || kind.is_block_device() {
        return Handover::Keep;
    }
    if kind.is_fifo() && sys::is_anonymous_pipe(fd).unwrap_or(false) {
        return Handover::Keep;
    }
    if meta.uid() != sys::effective_uid() {
        return Handover::Keep;
    }
    const DEV_NULL: u64 = (1 << 8) | 3;
    match kind.is_char_device() && meta.rdev() == DEV_NULL {
        true => Handover::Empty,
        false => Handover::Relay,
    }
}

impl Pipes {
    fn create(req: &RunRequest, plan: &Plan) -> io::Result<(Stdio, Pipes)> {
        let mut stdio = Stdio::default();
        if plan.terminal == TerminalPlan::Pty {
            stdio.pty = Some(tty::pty_request());
        }
        let mut ours =
            Pipes { stdout: None, stderr: None, result: None, stdin: None, relay: [None, None], terminal_input: None };
        if req.capture == Capture::Logs {
            let (r, w) = sys::pipe()?;
            (ours.stdout, stdio.stdout) = (Some(r), Some(w));
            let (r, w) = sys::pipe()?;
            (ours.stderr, stdio.stderr) = (Some(r), Some(w));
        }
        // A sandboxed command gets none of the caller's own files as stdio
        // (see Handover). Dev mode isolates nothing; a pty replaces them.
        let sandboxed = plan.mode != Mode::Dev && plan.terminal != TerminalPlan::Pty;
        if sandboxed && req.capture == Capture::PassThrough {
            let (out, err) = (io::stdout(), io::stderr());
            for (slot, own) in [out.as_fd(), err.as_fd()].into_iter().enumerate() {
                ours.relay[slot] = Some(match handover(own) {
                    Handover::Keep => continue,
                    Handover::Terminal => Output::Terminal(Sink::new(own)?),
                    Handover::Relay | Handover::Empty => Output::Relayed(Sink::new(own)?),
                });
                let (r, w) = sys::pipe()?;
                match slot {
                    0 => (ours.stdout, stdio.stdout) = (Some(r), Some(w)),
                    _ => (ours.stderr, stdio.stderr) = (Some(r), Some(w)),
                }
            }
        }
        if sandboxed && req.stdin == Input::Inherit {
            let own = io::stdin();
            match handover(own.as_fd()) {
                Handover::Keep => {}
                Handover::Empty => stdio.stdin = Some(sys::pipe()?.0),
                Handover::Terminal => {
                    let (r, w) = sys::pipe()?;
                    stdio.stdin = Some(r);
                    ours.terminal_input = Some(TerminalInput::new(own.as_fd(), w)?);
                }
                Handover::Relay => {
                    let mut source = std::fs::File::from(own.as_fd().try_clone_to_owned()?);
                    let (r, w) = sys::pipe()?;
                    stdio.stdin = Some(r);
                    // Never joined: it ends at the end of the input, or when
                    // the command's side is closed (EPIPE: SIGPIPE is
                    // ignored), or with cordon.
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut source, &mut std::fs::File::from(w));
                    });
                }
            }
        }
        if req.result.is_some() {
            let (r, w) = sys::pipe()?;
            (ours.result, stdio.fd3) = (Some(r), Some(w));
        }
        if let Input::Bytes(bytes) = &req.stdin {
            let (r, w) = sys::pipe()?;
            stdio.stdin = Some(r);
            ours.stdin = Some((w, bytes.clone()));
        }
        Ok((stdio, ours))
    }
}

/// Where the command's stdout or stderr goes, once read from its pipe.
#[derive(Debug)]
enum Output {
    /// Into the result's logs ([`Capture::Logs`]).
    Captured,
    /// To cordon's own descriptor, as it comes ([`Handover::Relay`]).
    Relayed(Sink),
    /// To the caller's terminal, as it comes, once cordon may write there
    /// ([`Handover::Terminal`], [`await_output_turn`]).
    Terminal(Sink),
}

impl Output {
    fn sink(&self) -> Option<&Sink> {
        match self {
            Output::Captured => None,
            Output::Relayed(s) | Output::Terminal(s) => Some(s),
        }
    }

    fn sink_mut(&mut self) -> Option<&mut Sink> {
        match self {
            Output::Captured => None,
            Output::Relayed(s) | Output::Terminal(s) => Some(s),
        }
    }

    /// Whether more of the command's output may be read for it: a sink
    /// holds nothing (see [`Sink`]).
    fn has_room(&self) -> bool {
        self.sink().is_none_or(Sink::has_room)
    }
}

/// Passes `data`, read from stream `stream` (0 stdout, 1 stderr), on.
fn put_output(out: &mut Output, cap: &mut Capturer, stream: usize, data: &[u8], secrets: &[String]) {
    match out {
        Output::Captured => cap.push(stream, data, secrets),
        Output::Relayed(s) | Output::Terminal(s) => s.put(data),
    }
}

/// Line assembly and the output budget.
struct Capturer {
    logs: Logs,
    budget: u64,
    used: u64,
    partial: [Vec<u8>; 2],
    start: Instant,
    exceeded: bool,
}

impl Capturer {
    fn push(&mut self, stream: usize, data: &[u8], secrets: &[String]) {
        let room = self.budget.saturating_sub(self.used);
        let keep = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.used += keep as u64;
        if keep < data.len() {
            self.logs.dropped_bytes += (data.len() - keep) as u64;
            self.exceeded = true;
        }
        self.partial[stream].extend_from_slice(&data[..keep]);
        while let Some(nl) = self.partial[stream].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[stream].drain(..=nl).collect();
            self.emit(stream, &line[..line.len() - 1], secrets);
        }
    }
    fn emit(&mut self, stream: usize, line: &[u8], secrets: &[String]) {
        let text = redact(&String::from_utf8_lossy(line), secrets);
        let stream = if stream == 0 { Stream::Stdout } else { Stream::Stderr };
        self.logs.lines.push(LogLine { stream, ts_ms: ms(self.start.elapsed()), text });
    }
    fn finish(mut self, secrets: &[String]) -> Logs {
        for s in 0..2 {
            let rest = std::mem::take(&mut self.partial[s]);
            if !rest.is_empty() {
                self.emit(s, &rest, secrets);
                if self.exceeded {
                    // The budget may have cut a secret in half: its head
                    // must not stand at the end of the line either.
                    if let Some(last) = self.logs.lines.last_mut() {
                        last.text = redact_cut_tail(&last.text, secrets);
                    }
                }
            }
        }
        self.logs
    }
}

/// Replaces a tail of `text` that is the beginning of a secret with `***`.
fn redact_cut_tail(text: &str, secrets: &[String]) -> String {
    for s in secrets {
        for k in (1..s.len()).rev() {
            if s.is_char_boundary(k) && text.ends_with(&s[..k]) {
                return format!("{}***", &text[..text.len() - k]);
            }
        }
    }
    text.to_owned()
}

fn read_some(mut f: &std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    f.read(buf)
}

/// The supervisor's read buffer, allocated (zeroed) at its first read: a run
/// whose output is passed through, and that has no terminal relay, reads
/// nothing and does not pay for 64 KiB of zeroes.
#[derive(Default)]
struct ReadBuffer(Vec<u8>);

impl ReadBuffer {
    const SIZE: usize = 64 * 1024;

    fn get(&mut self) -> &mut [u8] {
        if self.0.is_empty() {
            self.0 = vec![0u8; Self::SIZE];
        }
        &mut self.0
    }
}

/// Gives the command its input, then end of file. When the whole input fits
/// in the pipe (the usual case: a pipe holds 64 KiB) it is written here and
/// the pipe closed, with no thread; otherwise what is left goes in from a
/// thread, since a handler may read it slowly, or not at all, and the
/// supervisor must keep draining its output meanwhile. A handler that exits
/// without reading its input closes the pipe; that is its business.
fn give_input(fd: OwnedFd, bytes: Vec<u8>) -> Option<std::thread::JoinHandle<()>> {
    use std::io::Write;
    let mut pipe = std::fs::File::from(fd);
    // Non-blocking for the first write only: it writes what fits now.
    let written = match sys::set_nonblocking(pipe.as_fd()).and_then(|()| pipe.write(&bytes)) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(_) => return None,
    };
    if written == bytes.len() {
        return None;
    }
    Some(std::thread::spawn(move || {
        let mut rest = &bytes[written..];
        while !rest.is_empty() {
            match pipe.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if sys::poll(&[(pipe.as_fd(), libc::POLLOUT)], -1).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Running,
    Timeout,
    Cpu,
    Output,
    Cancelled,
    /// Transparent egress failed to start at the first `connect()`.
    Egress,
}

/// The run's pty relay and the caller's terminal in raw mode, when the
/// command has a pty ([`Tty::Relay`]).
struct Terminal {
    relay: Option<Relay>,
    raw: Option<RawMode>,
}

impl Terminal {
    /// Handles one of [`sys::SUPERVISED_SIGNALS`] cordon received.
    fn on_signal(&self, running: &enforce::Running, sig: i32) {
        match sig {
            libc::SIGWINCH => {
                if let Some(r) = &self.relay {
                    r.follow_window_size();
                }
            }
            // Job control on the caller's side (Ctrl-Z, or a signal a shell
            // or the kernel sent): the whole run stops, then cordon, with
            // the terminal's modes given back meanwhile.
            libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
                stop_job(running, self.raw.as_ref(), sig);
            }
            libc::SIGCONT => {
                if let Some(raw) = &self.raw {
                    // Continued in the background (`bg`): the pty's raw
                    // mode would change the terminal under the shell, so
                    // the job stops again, as `SIGTTOU` would stop it.
                    if !await_foreground(running) {
                        return;
                    }
                    raw.resume();
                }
                if let Some(r) = &self.relay {
                    r.follow_window_size();
                }
                let _ = running.signal(libc::SIGCONT);
            }
            other => {
                let _ = running.signal(other);
            }
        }
    }
}

/// Stops the job for job control: every process of the run (init stops
/// them with `SIGSTOP`; in dev mode, the command's group gets `SIGTSTP`),
/// the caller's terminal gets its modes back, then cordon stops with `sig`
/// so the shell sees why ("Stopped (tty input)"). Returns once cordon is
/// continued, whether it was stopped: in an orphaned process group the
/// kernel discards the stop, and the run is resumed at once. After a stop,
/// the `SIGCONT` that continued cordon is pending on its signalfd, and the
/// supervisor resumes the run when it reads it.
fn stop_job(running: &enforce::Running, raw: Option<&RawMode>, sig: i32) -> bool {
    let _ = running.signal(libc::SIGTSTP);
    if let Some(raw) = raw {
        raw.suspend();
    }
    let stopped = sys::stop_self_with(sig).unwrap_or(false);
    if !stopped {
        if let Some(raw) = raw {
            raw.resume();
        }
        let _ = running.signal(libc::SIGCONT);
    }
    stopped
}

/// Waits, stopped, until cordon's group is in the foreground of its
/// terminal (stdin), as `SIGTTOU` makes a program wait that changes the
/// terminal's modes from the background. Returns false when it cannot be
/// stopped (an orphaned process group): it is not in the foreground then.
fn await_foreground(running: &enforce::Running) -> bool {
    while sys::tty::is_foreground(io::stdin().as_fd()) == Some(false) {
        if !stop_job(running, None, libc::SIGTTOU) {
            return false;
        }
    }
    true
}

/// Before output goes to the caller's terminal: under `stty tostop`, a
/// background job stops there (`SIGTTOU`), as the kernel stops a program
/// that writes the terminal then (the kernel itself lets cordon write, since
/// cordon blocks `SIGTTOU`). An orphaned group writes anyway.
fn await_output_turn(running: &enforce::Running, raw: Option<&RawMode>, terminal: BorrowedFd<'_>) {
    let background_stops = || {
        sys::tty::is_foreground(terminal) == Some(false)
            && sys::tty::Modes::of(terminal).is_ok_and(|m| m.stops_background_output())
    };
    while background_stops() {
        if !stop_job(running, raw, libc::SIGTTOU) {
            return;
        }
    }
}

/// For after a run and its audit record: cordon's signals, which the
/// supervisor blocked to read them, take their default actions again, so
/// that SIGTERM or Ctrl-C ends cordon while it writes its last messages to
/// a terminal that stopped taking them (review s13 R13-1). A signal that
/// came after the supervisor's last read acts now.
pub fn release_signals() {
    let _ = sys::unblock_supervised_signals();
}

/// The signals that ask cordon to end.
const ENDING_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// After the run: writes what `sinks` hold as the caller's side takes it,
/// until `deadline`, or until one of [`ENDING_SIGNALS`] arrives on
/// `signals` (`None`: cordon was asked to end already, nothing is waited
/// for); then drops the rest. Returns how many bytes were dropped.
fn deliver_held(sinks: &mut [&mut Sink], deadline: Option<Instant>, signals: Option<&OwnedFd>) -> u64 {
    let mut give_up = signals.is_none();
    loop {
        let now = Instant::now();
        give_up |= deadline.is_some_and(|d| now >= d);
        if give_up || sinks.iter().all(|s| !s.is_holding()) {
            break;
        }
        let mut fds: Vec<_> = sinks.iter().filter_map(|s| s.poll()).collect();
        let waiting = fds.len();
        if let Some(s) = signals {
            fds.push((s.as_fd(), libc::POLLIN));
        }
        let timeout = deadline
            .map_or(-1, |d| i32::try_from(d.saturating_duration_since(now).as_millis()).unwrap_or(i32::MAX).max(1));
        let Ok(rev) = sys::poll(&fds, timeout) else { break };
        drop(fds);
        if let Some(s) = signals.filter(|_| rev[waiting] != 0) {
            while let Some(sig) = sys::read_signalfd(s.as_fd()) {
                give_up |= ENDING_SIGNALS.contains(&sig);
            }
        }
        for s in sinks.iter_mut() {
            s.flush();
        }
    }
    sinks.iter_mut().map(|s| s.drop_held()).sum()
}

/// Tells the caller, on stderr if it takes it now, that output was dropped.
fn say_dropped(bytes: u64) {
    use std::io::Write;
    let stderr = io::stderr();
    if sys::poll(&[(stderr.as_fd(), libc::POLLOUT)], 0).is_ok_and(|r| r[0] & libc::POLLOUT != 0) {
        let _ = writeln!(
            stderr.lock(),
            "cordon: {bytes} bytes of the command's output were dropped: the caller's stdout or stderr did not take them before the run ended"
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn supervise(
    req: &RunRequest,
    plan: &Plan,
    running: enforce::Running,
    ours: Pipes,
    started: Started,
    signals: Option<OwnedFd>,
    secrets: &[String],
    mut term: Terminal,
    egress: &mut KernelEgress,
) -> (ExecutionResult, Option<enforce::Teardown>) {
    let limits = &req.policy.limits;
    let deadline = limits.timeout_ms.map(|t| started.start + Duration::from_millis(t));
    let grace = Duration::from_millis(limits.grace_ms);
    let cpu_budget_ns = limits.cpu_ms.filter(|_| plan.cgroup.cpuacct.is_some()).map(|ms| ms * 1_000_000);
    let mut cap = Capturer {
        logs: Logs::default(),
        budget: limits.output_bytes,
        used: 0,
        partial: [vec![], vec![]],
        start: started.start,
        exceeded: false,
    };
    let writer = ours.stdin.and_then(|(fd, bytes)| give_input(fd, bytes));
    let max_result = req.result.map_or(0, |r| r.max_bytes);
    let mut result_bytes: Vec<u8> = vec![];
    let mut result_too_large = false;
    let mut pipes: [Option<std::fs::File>; 3] = [ours.stdout, ours.stderr, ours.result].map(|p| p.map(Into::into));
    let mut outputs: [Output; 2] = ours.relay.map(|r| r.unwrap_or(Output::Captured));
    let mut input = ours.terminal_input;
    let mut ending = Ending::Running;
    let mut kill_at: Option<Instant> = None;
    // After a kill request, init gets this long to reap everything before
    // it is killed the hard way (losing the descendants' accounting).
    let mut hard_kill_at: Option<Instant> = None;
    const REAP_GRACE: Duration = Duration::from_millis(1000);
    let mut buf = ReadBuffer::default();
    // Transparent egress that could not be started when the sandbox first
    // connected: the run is stopped (its connect would wait forever).
    let mut egress_failed: Option<String> = None;
    // The notification listener hung up (no process of the sandbox is
    // left): it stays readable, so it is no longer polled.
    let mut egress_hung_up = false;
    // cordon was asked to end (SIGTERM, Ctrl-C...): output the caller's
    // side has not taken by the end of the run is not waited for.
    let mut asked_to_end = false;
    loop {
        let now = Instant::now();
        if ending == Ending::Running {
            if deadline.is_some_and(|d| now >= d) {
                ending = Ending::Timeout;
                let _ = running.signal(libc::SIGTERM);
                kill_at = Some(now + grace);
            } else if cpu_budget_ns.is_some_and(|b| running.cgroups.cpu_ns().unwrap_or(0) >= b) {
                ending = Ending::Cpu;
                kill_at = Some(now);
            } else if cap.exceeded {
                ending = Ending::Output;
                kill_at = Some(now);
            } else if req.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                ending = Ending::Cancelled;
                kill_at = Some(now);
            }
        }
        if kill_at.is_some_and(|k| now >= k) {
            let _ = running.kill();
            kill_at = None;
            hard_kill_at = Some(now + REAP_GRACE);
        }
        if hard_kill_at.is_some_and(|k| now >= k) {
            let _ = running.signal(libc::SIGKILL);
            hard_kill_at = None;
        }
        let mut wake =
            [deadline.filter(|_| ending == Ending::Running), kill_at, hard_kill_at].into_iter().flatten().min();
        if cpu_budget_ns.is_some() && ending == Ending::Running {
            let tick = now + Duration::from_millis(20);
            wake = Some(wake.map_or(tick, |w| w.min(tick)));
        }
        let timeout =
            wake.map_or(-1, |w| i32::try_from(w.saturating_duration_since(now).as_millis()).unwrap_or(i32::MAX).max(1));
        // In the background, the command's stdin from the terminal is read
        // at once: the kernel refuses it, and the job stops (see
        // `TerminalInput`). After the stop, the loop starts over.
        if let Some(i) = input.as_mut().filter(|i| ending == Ending::Running && i.read_at_once()) {
            if i.read(buf.get()) == InputEvent::Background && !stop_job(&running, None, libc::SIGTTIN) {
                i.end();
            }
            continue;
        }
        let mut fds = vec![(running.pidfd.as_fd(), libc::POLLIN)];
        // A stream whose output the caller's side has not taken yet is not
        // read: the command blocks on its pipe meanwhile.
        let pipe_slots: Vec<usize> =
            (0..3).filter(|i| pipes[*i].is_some() && outputs.get(*i).is_none_or(Output::has_room)).collect();
        for i in &pipe_slots {
            fds.push((pipes[*i].as_ref().expect("filtered").as_fd(), libc::POLLIN));
        }
        let sink_slots: Vec<(usize, usize)> = (0..2)
            .filter_map(|i| {
                let p = outputs[i].sink().and_then(Sink::poll)?;
                fds.push(p);
                Some((i, fds.len() - 1))
            })
            .collect();
        let relay_input = term.relay.as_ref().and_then(|r| r.input_fd()).map(|fd| {
            fds.push((fd, libc::POLLIN));
            fds.len() - 1
        });
        let relay_master = term.relay.as_ref().and_then(|r| r.master_poll()).map(|p| {
            fds.push(p);
            fds.len() - 1
        });
        let relay_sink = term.relay.as_ref().and_then(|r| r.output_poll()).map(|p| {
            fds.push(p);
            fds.len() - 1
        });
        let input_terminal = input.as_ref().and_then(TerminalInput::terminal_poll).map(|p| {
            fds.push(p);
            fds.len() - 1
        });
        let input_pipe = input.as_ref().and_then(TerminalInput::pipe_poll).map(|p| {
            fds.push(p);
            fds.len() - 1
        });
        let signal_slot = signals.as_ref().map(|s| {
            fds.push((s.as_fd(), libc::POLLIN));
            fds.len() - 1
        });
        // Init reports the command's end before its own exit (the teardown
        // of its namespaces): the run is over when either is readable.
        let status_slot = running.status_fd().map(|fd| {
            fds.push((fd, libc::POLLIN));
            fds.len() - 1
        });
        // Only wakes the loop, which checks the flag; polled only until it
        // fires, since it stays readable.
        if let Some(c) = req.cancel.as_ref().filter(|_| ending == Ending::Running) {
            fds.push((c.0.read.as_fd(), libc::POLLIN));
        }
        let egress_slot = egress.waiting_listener().filter(|_| !egress_hung_up).map(|fd| {
            fds.push((fd, libc::POLLIN));
            fds.len() - 1
        });
        let Ok(rev) = sys::poll(&fds, timeout) else { continue };
        drop(fds);
        if let Some(k) = egress_slot.filter(|k| rev[*k] != 0) {
            if rev[k] & libc::POLLIN == 0 {
                egress_hung_up = true;
            } else if let Err(e) = egress.start_serving() {
                if ending == Ending::Running {
                    ending = Ending::Egress;
                    kill_at = Some(now);
                }
                egress_failed.get_or_insert(e);
            }
        }
        for (i, k) in &sink_slots {
            if rev[*k] != 0 {
                if let Some(s) = outputs[*i].sink_mut() {
                    s.flush();
                }
            }
        }
        if relay_sink.is_some_and(|k| rev[k] != 0) {
            if let Some(relay) = &mut term.relay {
                relay.flush_output();
            }
        }
        if let Some(relay) = &mut term.relay {
            if relay_input.is_some_and(|k| rev[k] != 0)
                && relay.read_input(buf.get()) == InputEvent::Background
                && !stop_job(&running, term.raw.as_ref(), libc::SIGTTIN)
            {
                relay.end_input();
            }
            if let Some(k) = relay_master.filter(|k| rev[*k] != 0) {
                if rev[k] & libc::POLLOUT != 0 {
                    relay.write_pending();
                }
                relay.read_output(buf.get());
            }
        }
        if let Some(i) = &mut input {
            if let Some(k) = input_pipe.filter(|k| rev[*k] != 0) {
                i.on_pipe(rev[k]);
            }
            if input_terminal.is_some_and(|k| rev[k] != 0)
                && i.read(buf.get()) == InputEvent::Background
                && !stop_job(&running, None, libc::SIGTTIN)
            {
                i.end();
            }
        }
        for (k, i) in pipe_slots.iter().enumerate() {
            if rev[k + 1] != 0 {
                let buf = buf.get();
                match pipes[*i].as_ref().map(|p| read_some(p, buf)) {
                    Some(Ok(0)) | Some(Err(_)) => pipes[*i] = None,
                    Some(Ok(n)) if *i == 2 => {
                        keep_result(&mut result_bytes, &mut result_too_large, max_result, &buf[..n])
                    }
                    Some(Ok(n)) => {
                        if let Output::Terminal(s) = &outputs[*i] {
                            await_output_turn(&running, term.raw.as_ref(), s.fd());
                        }
                        put_output(&mut outputs[*i], &mut cap, *i, &buf[..n], secrets)
                    }
                    None => {}
                }
            }
        }
        if let (Some(s), Some(k)) = (&signals, signal_slot) {
            if rev[k] != 0 {
                while let Some(sig) = sys::read_signalfd(s.as_fd()) {
                    asked_to_end |= ENDING_SIGNALS.contains(&sig);
                    term.on_signal(&running, sig);
                }
            }
        }
        if rev[0] != 0 || status_slot.is_some_and(|k| rev[k] != 0) {
            break;
        }
    }
    // The run is over. Init killed every process before exiting, so the
    // pipes reach EOF (and the pty hangs up); drain what is still buffered.
    let cgroup_stats = running.cgroups.stats();
    let (finished, teardown) = match running.end() {
        Ok((f, t)) => (Some(f), Some(t)),
        Err(_) => (None, None),
    };
    if let Some(relay) = &mut term.relay {
        relay.drain_output(buf.get());
    }
    for (i, p) in pipes.iter_mut().enumerate() {
        while let Some(fd) = p.as_ref() {
            let buf = buf.get();
            match read_some(fd, buf) {
                Ok(0) | Err(_) => *p = None,
                Ok(n) if i == 2 => keep_result(&mut result_bytes, &mut result_too_large, max_result, &buf[..n]),
                Ok(n) => put_output(&mut outputs[i], &mut cap, i, &buf[..n], secrets),
            }
        }
    }
    // What the caller's side has not taken yet is delivered until the
    // deadline, or until cordon is asked to end; then it is dropped.
    let [out, err] = &mut outputs;
    let mut sinks: Vec<&mut Sink> =
        [term.relay.as_mut().map(Relay::sink), out.sink_mut(), err.sink_mut()].into_iter().flatten().collect();
    let undelivered = deliver_held(&mut sinks, deadline, signals.as_ref().filter(|_| !asked_to_end));
    drop(sinks);
    if undelivered > 0 && ending == Ending::Running {
        ending = Ending::Timeout;
    }
    // The caller's terminal gets its modes back before anything else is
    // printed.
    drop(term);
    if undelivered > 0 {
        say_dropped(undelivered);
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    let mut logs = cap.finish(secrets);
    logs.dropped_bytes += undelivered;
    let mut result = finish_result(req, plan, started, ending, finished, cgroup_stats, logs);
    if undelivered > 0 {
        if let Some(e) = &mut result.error {
            e.message.push_str(&format!(
                "; {undelivered} bytes of its output were dropped: the caller's stdout or stderr did not take them in time"
            ));
        }
    }
    if let Some(message) = egress_failed {
        result.ok = false;
        result.error = Some(ResultError { code: ErrorCode::SetupFailed, message });
    }
    if req.result.is_some() {
        read_result(&mut result, &result_bytes, result_too_large, max_result, secrets);
    }
    (result, teardown)
}

fn redact_json(v: &mut serde_json::Value, secrets: &[String]) {
    use serde_json::Value;
    match v {
        Value::String(s) => *s = redact(s, secrets),
        Value::Array(items) => items.iter_mut().for_each(|i| redact_json(i, secrets)),
        Value::Object(map) => map.values_mut().for_each(|i| redact_json(i, secrets)),
        _ => {}
    }
}

fn keep_result(kept: &mut Vec<u8>, too_large: &mut bool, max: usize, data: &[u8]) {
    if kept.len() + data.len() > max {
        *too_large = true;
    } else {
        kept.extend_from_slice(data);
    }
}

/// Puts the handler's result into `data`, or marks the run `INVALID_RESULT`
/// when it ended well but its result is missing, malformed or too large.
fn read_result(result: &mut ExecutionResult, bytes: &[u8], too_large: bool, max: usize, secrets: &[String]) {
    let problem = if too_large {
        Some(format!("the handler's result exceeds {max} bytes"))
    } else if bytes.iter().all(u8::is_ascii_whitespace) {
        let mut m = format!("the handler wrote no result to fd {RESULT_FD} (CORDON_RESULT_FD)");
        if stdout_held_json(&result.logs) {
            m.push_str(&format!(
                ", but its stdout held JSON: write the result to the descriptor named in CORDON_RESULT_FD \
                 (e.g. `>&{RESULT_FD}` in a shell, os.fdopen(int(os.environ[\"CORDON_RESULT_FD\"]), \"w\") in Python); \
                 stdout is the handler's log"
            ));
        }
        Some(m)
    } else {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(mut v) => {
                // Secrets are redacted in data as in logs.
                redact_json(&mut v, secrets);
                result.data = Some(v);
                None
            }
            Err(e) => Some(format!(
                "the handler's result is not one JSON value ({e}); it begins {}",
                first_bytes(bytes, secrets)
            )),
        }
    };
    if let Some(message) = problem {
        if result.error.is_none() {
            result.ok = false;
            result.error = Some(ResultError { code: ErrorCode::InvalidResult, message });
        }
    }
}

/// How many bytes of a bad result a message shows.
const RESULT_EXCERPT_BYTES: usize = 64;

/// The first bytes of a bad result, quoted and escaped (`\n`, `\x1b`…), so
/// that a message shows what the handler wrote without a terminal acting
/// on it; secrets redacted.
fn first_bytes(bytes: &[u8], secrets: &[String]) -> String {
    let cut = bytes.len().min(RESULT_EXCERPT_BYTES);
    let text = redact(&String::from_utf8_lossy(&bytes[..cut]), secrets);
    let more = if bytes.len() > cut { format!(" … ({} bytes in all)", bytes.len()) } else { String::new() };
    format!("\"{}\"{more}", text.escape_debug())
}

/// Whether the handler's stdout, taken whole, is one JSON object or
/// array: the usual mistake of printing the result instead of writing it
/// to `CORDON_RESULT_FD`.
fn stdout_held_json(logs: &Logs) -> bool {
    let stdout: Vec<&str> = logs.lines.iter().filter(|l| l.stream == Stream::Stdout).map(|l| l.text.as_str()).collect();
    let text = stdout.join("\n");
    let text = text.trim();
    (text.starts_with('{') || text.starts_with('[')) && serde_json::from_str::<serde_json::Value>(text).is_ok()
}

fn finish_result(
    req: &RunRequest,
    plan: &Plan,
    started: Started,
    ending: Ending,
    finished: Option<enforce::Finished>,
    cg: CgroupStats,
    logs: Logs,
) -> ExecutionResult {
    let wall = started.start.elapsed();
    let limits = &req.policy.limits;
    let (exit, usage) = match &finished {
        Some(f) => (
            f.status.or(f.child).map(|s| match s {
                ExitStatus::Code(c) => Exit::Code(c),
                ExitStatus::Signal(s) => Exit::Signal(s),
            }),
            Some(f.usage),
        ),
        None => (None, None),
    };
    // wait4's usage misses children reaped automatically (their parent
    // ignores SIGCHLD); a cgroup that counts CPU saw them.
    let usage = usage.map(|mut u| {
        if let Some(cpu) = cg.cpu {
            (u.user_us, u.sys_us) = cpu.cover(u.user_us, u.sys_us);
        }
        u
    });
    let cpu_ms = usage.map_or(0.0, |u| (u.user_us + u.sys_us) as f64 / 1000.0);
    let cpu_hit = ending == Ending::Cpu
        || (matches!(exit, Some(Exit::Signal(libc::SIGXCPU | libc::SIGKILL)))
            && limits.cpu_ms.is_some_and(|l| cpu_ms >= l as f64 * 0.9));
    let error = match ending {
        Ending::Timeout => {
            Some((ErrorCode::Timeout, format!("timed out after {} ms (timeout_ms)", limits.timeout_ms.unwrap_or(0))))
        }
        Ending::Cancelled => Some(match req.cancel.as_ref().and_then(Cancel::reason) {
            Some(CancelReason::Deadline) => {
                (ErrorCode::Expired, "the deadline passed while it ran; the sandbox was killed".to_owned())
            }
            _ => (ErrorCode::Cancelled, "cancelled by the caller; the sandbox was killed".to_owned()),
        }),
        Ending::Output => Some((
            ErrorCode::OutputLimit,
            format!("output exceeded {} bytes (output_bytes); the run was stopped", limits.output_bytes),
        )),
        _ if cpu_hit => {
            Some((ErrorCode::CpuLimit, format!("CPU time limit of {} ms reached (cpu_ms)", limits.cpu_ms.unwrap_or(0))))
        }
        _ if cg.oom_killed => Some((
            ErrorCode::MemoryLimit,
            format!(
                "memory limit of {} MiB reached (memory_mb); the kernel killed the process",
                limits.memory_mb.unwrap_or(0)
            ),
        )),
        _ if cg.pids_limit_hit => Some((
            ErrorCode::PidsLimit,
            format!("process limit of {} reached (pids); a fork failed", limits.pids.unwrap_or(0)),
        )),
        _ => match exit {
            Some(Exit::Code(0)) => None,
            Some(Exit::Code(c)) => Some((ErrorCode::NonzeroExit, format!("exited with code {c}"))),
            Some(Exit::Signal(libc::SIGINT)) => {
                Some((ErrorCode::Interrupted, "interrupted: SIGINT (Ctrl-C) ended it".to_owned()))
            }
            Some(Exit::Signal(s)) => Some((ErrorCode::Killed, format!("killed by signal {s}"))),
            None => Some((ErrorCode::SetupFailed, "lost track of the sandbox process".to_owned())),
        },
    };
    let _ = plan;
    let peak = cg.memory_peak.map(|b| b / 1024).unwrap_or(0).max(usage.map_or(0, |u| u.max_rss_kb));
    // Dev mode grants everything: nothing there is "not granted".
    let not_granted = match (&error, req.mode) {
        (Some(_), Mode::Container | Mode::Process) => crate::explain::not_granted(&req.policy, &req.cwd, &logs),
        _ => vec![],
    };
    ExecutionResult {
        ok: error.is_none(),
        request_id: started.request_id,
        mode: req.mode,
        exit,
        error: error.map(|(code, message)| ResultError { code, message }),
        data: None,
        metrics: Metrics {
            wall_ms: ms(wall),
            cpu_user_ms: usage.map_or(0.0, |u| u.user_us as f64 / 1000.0),
            cpu_sys_ms: usage.map_or(0.0, |u| u.sys_us as f64 / 1000.0),
            peak_rss_kb: peak,
        },
        logs,
        warnings: started.warnings,
        enforcement: started.enforcement,
        network: vec![],
        env: started.env,
        not_granted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_finds_programs_in_path_and_reports_missing_ones() {
        let all = |_: &Path| true;
        let p = resolve_program("sh", DEFAULT_PATH, Path::new("/"), all).unwrap();
        assert!(p.ends_with("sh"));
        assert!(matches!(
            resolve_program("no-such-cmd-xyz", DEFAULT_PATH, Path::new("/"), all),
            Err(ResolveError::NotFound { hidden: None, .. })
        ));
        let e = resolve_program("/etc/passwd", DEFAULT_PATH, Path::new("/"), all).unwrap_err();
        assert!(matches!(e, ResolveError::NotExecutable { .. }));
        assert_eq!(
            e.hint().unwrap(),
            "make it executable (chmod +x /etc/passwd), or name its interpreter (e.g. sh /etc/passwd)"
        );
        // A folder the sandbox does not see is skipped, and named in the hint.
        let only_bin = |p: &Path| p.starts_with("/bin");
        let e = resolve_program("sh", "/usr/bin:/bin", Path::new("/"), only_bin).unwrap();
        assert_eq!(e, Path::new("/bin/sh"));
        let e = resolve_program("sh", "/usr/bin", Path::new("/"), only_bin).unwrap_err();
        assert_eq!(
            e.hint().unwrap(),
            "/usr/bin/sh is on PATH, in a folder the sandbox does not see; grant it (--read /usr/bin)"
        );
    }

    #[test]
    fn a_scripts_interpreter_comes_from_its_first_line() {
        let dir = std::env::temp_dir().join(format!("cordon-shebang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (body, expected) in [
            ("#!/usr/bin/env python3\nprint(1)\n", Some("python3")),
            ("#! /bin/sh -e\n", Some("sh")),
            ("\x7fELF", None),
        ] {
            let f = dir.join("s");
            std::fs::write(&f, body).unwrap();
            assert_eq!(script_interpreter(&f).as_deref(), expected, "{body:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn capture_splits_lines_and_respects_the_budget() {
        let mut c = Capturer {
            logs: Logs::default(),
            budget: 10,
            used: 0,
            partial: [vec![], vec![]],
            start: Instant::now(),
            exceeded: false,
        };
        c.push(0, b"ab\ncd", &[]);
        c.push(1, b"secret!\nxyz", &["secret".into()]);
        assert!(c.exceeded);
        let logs = c.finish(&["secret".into()]);
        let texts: Vec<_> = logs.lines.iter().map(|l| l.text.as_str()).collect();
        // "secre" is all the budget kept of the secret: it must not show.
        assert_eq!(texts, ["ab", "cd", "***"]);
        assert_eq!(logs.dropped_bytes, 6);
    }
}
