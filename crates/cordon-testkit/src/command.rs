//! `TestCommand`: run a program, capture everything, assert with context.

use std::ffi::OsStr;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::procs::poll_until;

/// How long a command may run before the fixture kills it and fails the
/// test. A safety net against a hung sandbox, far above any expected run;
/// tests assert cordon's own limits, never this one.
const WATCHDOG: Duration = Duration::from_secs(180);

/// A program to run with captured output. Stdin is empty unless
/// [`stdin`](Self::stdin) is called; the environment is inherited unless
/// changed with [`env`](Self::env) / [`env_remove`](Self::env_remove).
///
/// # cordon's state stays in the test
///
/// Every command gets a state folder of its own,
/// `/var/tmp/cordon-test-state-<pid>-<n>` (removed when the command is
/// dropped): `CORDON_AUDIT_LOG` names `audit.jsonl` in it, and
/// `XDG_STATE_HOME` / `XDG_DATA_HOME` point into it, so no test writes to
/// the real audit log, artifact store or plugin data folders of the user
/// running the suite.
///
/// # Every execution leaves exactly one audit record
///
/// [`run`](Self::run) checks the audit log the command wrote to (its own,
/// or the one `--audit-log` or [`env`](Self::env) named): every line must
/// be JSON and, when it appended to the log, the hash chain, its
/// checkpoints and its latest checkpoint must verify; a
/// `cordon run` or
/// `cordon exec` must have appended exactly one record of its own (besides
/// `lost` records of earlier runs it recovered), carrying the
/// request id of its `--json` result when it printed one; any other
/// `cordon` subcommand must have appended none. Commands that cordon itself
/// rejected as unparsable (clap's `error:` messages, `--help`) are not
/// executions and append nothing. The records are in [`Outcome::audit`].
#[derive(Debug)]
pub struct TestCommand {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    state: PathBuf,
    /// The state folder while this command still owns it (removed on drop).
    state_owned: Option<PathBuf>,
    audit_log: PathBuf,
    /// cordon's state folder for this command (its audit key and latest
    /// checkpoints): `$XDG_STATE_HOME/cordon`.
    key_folder: PathBuf,
}

/// A process started by [`TestCommand::spawn_without_output`]: a
/// [`Child`] (through `Deref`) that owns the command's state folder and
/// removes it when dropped.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    state: Option<PathBuf>,
}

impl std::ops::Deref for Spawned {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            // A process still running would recreate the folder; wait for it
            // only briefly, the test may have left it to be killed later.
            let _ = poll_until(Duration::from_secs(2), || matches!(self.child.try_wait(), Ok(Some(_))));
            let _ = std::fs::remove_dir_all(state);
        }
    }
}

static NEXT_STATE: AtomicU32 = AtomicU32::new(0);

impl TestCommand {
    /// A command running `program` with no arguments yet.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let n = NEXT_STATE.fetch_add(1, Ordering::Relaxed);
        let state = PathBuf::from(format!("/var/tmp/cordon-test-state-{}-{n}", std::process::id()));
        let audit_log = state.join("audit.jsonl");
        let mut cmd = Command::new(program);
        cmd.env("CORDON_AUDIT_LOG", &audit_log)
            .env("XDG_STATE_HOME", state.join("state"))
            .env("XDG_DATA_HOME", state.join("data"));
        let key_folder = state.join("state/cordon");
        TestCommand { cmd, stdin: None, state_owned: Some(state.clone()), state, audit_log, key_folder }
    }

    /// The audit log this command writes to unless `--audit-log` says
    /// otherwise.
    pub fn audit_log(&self) -> &Path {
        &self.audit_log
    }

    /// The folder `XDG_DATA_HOME` points into (artifact store, data folders).
    pub fn data_home(&self) -> PathBuf {
        self.state.join("data")
    }

    /// Appends one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Sets a variable in the program's environment.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        if key.as_ref() == "CORDON_AUDIT_LOG" {
            self.audit_log = PathBuf::from(value.as_ref());
        }
        if key.as_ref() == "XDG_STATE_HOME" {
            self.key_folder = Path::new(value.as_ref()).join("cordon");
        }
        self.cmd.env(key, value);
        self
    }

    /// Removes a variable from the program's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env_remove(key);
        self
    }

    /// Feeds `input` to the program's stdin, then closes it.
    pub fn stdin(&mut self, input: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(input.into());
        self
    }

    /// The underlying `std::process::Command`, for what this type does not wrap.
    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Starts the program with stdin, stdout and stderr on `/dev/null`, for
    /// tests that watch or signal the running process itself. The command's
    /// state folder now belongs to the returned [`Spawned`], so it outlives
    /// this `TestCommand` as long as the process may use it.
    pub fn spawn_without_output(&mut self) -> Spawned {
        self.cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = self.cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", self.display()));
        Spawned { child, state: self.state_owned.take() }
    }

    /// Runs the program to completion and captures its status and output.
    ///
    /// # Panics
    ///
    /// When the program cannot be started, or is still running after the
    /// watchdog (minutes); it is killed first.
    pub fn run(&mut self) -> Outcome {
        let log = self.effective_audit_log();
        let before = count_lines(&log);
        let mut outcome = self.run_unchecked();
        outcome.audit = self.check_audit(&log, before, &outcome);
        outcome
    }

    /// Runs the program with `pty`'s slave as its stdin, stdout and stderr
    /// and calls `interact` with the pty and the program's pid while it runs
    /// (type keys, wait for output, send signals),
    /// then waits for it like [`run`](Self::run), with the same audit
    /// checks. The outcome's stdout is the pty's transcript (everything it
    /// showed, `\r\n` line ends); its stderr is empty. To make the pty the
    /// program's controlling terminal, run it under `setsid --ctty`.
    ///
    /// # Panics
    ///
    /// As [`run`](Self::run).
    pub fn run_on_pty(&mut self, pty: &crate::Pty, interact: impl FnOnce(&crate::Pty, u32)) -> Outcome {
        let log = self.effective_audit_log();
        let before = count_lines(&log);
        let command = self.display();
        self.cmd.stdin(pty.stdio()).stdout(pty.stdio()).stderr(pty.stdio());
        let mut child = self.cmd.spawn().unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        interact(pty, child.id());
        let status = wait_or_kill(&mut child, &command, || pty.transcript());
        pty.settle();
        let mut outcome = Outcome { command, status, stdout: pty.transcript(), stderr: String::new(), audit: vec![] };
        outcome.audit = self.check_audit(&log, before, &outcome);
        outcome
    }

    /// `--audit-log PATH` from the arguments, else the log in the
    /// environment.
    fn effective_audit_log(&self) -> PathBuf {
        let args: Vec<&OsStr> = self.cmd.get_args().collect();
        for (i, a) in args.iter().enumerate() {
            if *a == "--" {
                break;
            }
            if *a == "--audit-log" {
                if let Some(v) = args.get(i + 1) {
                    return PathBuf::from(v);
                }
            }
            if let Some(v) = a.to_str().and_then(|a| a.strip_prefix("--audit-log=")) {
                return PathBuf::from(v);
            }
        }
        self.audit_log.clone()
    }

    /// The `cordon` subcommand this runs, when the program (or, behind
    /// `setpriv` and the like, an argument) is a `cordon` binary.
    fn cordon_subcommand(&self) -> Option<String> {
        let program = self.cmd.get_program();
        let words: Vec<&OsStr> = std::iter::once(program).chain(self.cmd.get_args()).collect();
        let at = words.iter().position(|w| Path::new(w).file_name().is_some_and(|n| n == "cordon"))?;
        words.get(at + 1).map(|s| s.to_string_lossy().into_owned())
    }

    fn check_audit(&self, log: &Path, before: usize, outcome: &Outcome) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        // A last line without its newline is a record a crash cut short
        // (torn), which verification reports as such; any other line must
        // be a record.
        let records: Vec<serde_json::Value> = text
            .split_inclusive('\n')
            .enumerate()
            .filter_map(|(i, l)| match serde_json::from_str(l) {
                Ok(v) => Some(v),
                Err(_) if !l.ends_with('\n') => None,
                Err(e) => panic!("audit log {} line {} is not JSON ({e}): {l}\n{outcome}", log.display(), i + 1),
            })
            .collect();
        // Records of runs an earlier cordon left unfinished (`lost`), and
        // of run journal lines without a valid MAC (`JOURNAL_FORGED`), are
        // appended by whichever cordon starts next; they are not this
        // command's.
        let new: Vec<serde_json::Value> = records
            .iter()
            .skip(before)
            .filter(|r| r["lost"] != true && r["outcome"] != "JOURNAL_FORGED")
            .cloned()
            .collect();
        if records.len() > before {
            let trust = cordon::audit::Trust::for_log(log, &cordon::audit::KeyFolder::At(self.key_folder.clone()));
            if let Err(e) = cordon::audit::verify(log, &trust) {
                panic!("audit log {} does not verify: {e}\n{outcome}", log.display());
            }
        }
        let Some(sub) = self.cordon_subcommand() else { return new };
        let args: Vec<String> = self.cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let help =
            args.iter().take_while(|a| *a != "--").any(|a| ["-h", "--help", "-V", "--version"].contains(&a.as_str()));
        let rejected_by_parser = outcome.stderr.starts_with("error:") || help;
        let expected = usize::from(matches!(sub.as_str(), "run" | "exec") && !rejected_by_parser);
        if new.len() != expected {
            panic!(
                "`cordon {sub}` appended {} audit records to {}, expected {expected}:\n{}\n{outcome}",
                new.len(),
                log.display(),
                new.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("\n")
            );
        }
        if let (Some(record), Ok(result)) = (new.first(), serde_json::from_str::<serde_json::Value>(&outcome.stdout)) {
            if let Some(id) = result.get("request_id").filter(|_| result.get("metrics").is_some()) {
                assert_eq!(
                    &record["request_id"], id,
                    "the audit record and the --json result name different runs\n{outcome}"
                );
            }
        }
        new
    }

    fn run_unchecked(&mut self) -> Outcome {
        let command = self.display();
        let stdin = if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() };
        self.cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.cmd.spawn().unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let feeder = child.stdin.take().zip(self.stdin.clone()).map(|(mut pipe, input)| {
            // A program that exits without reading gives EPIPE; that is its business.
            std::thread::spawn(move || drop(pipe.write_all(&input)))
        });
        let stdout = drain(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        let status = wait_or_kill(&mut child, &command, String::new);
        if let Some(feeder) = feeder {
            let _ = feeder.join();
        }
        Outcome {
            command,
            status,
            stdout: stdout.join().expect("stdout reader panicked"),
            stderr: stderr.join().expect("stderr reader panicked"),
            audit: vec![],
        }
    }

    fn display(&self) -> String {
        let mut parts = vec![self.cmd.get_program().to_string_lossy().into_owned()];
        parts.extend(self.cmd.get_args().map(|a| quote(&a.to_string_lossy())));
        parts.join(" ")
    }
}

impl Drop for TestCommand {
    fn drop(&mut self) {
        if let Some(state) = self.state_owned.take() {
            let _ = std::fs::remove_dir_all(state);
        }
    }
}

/// Waits for `child` up to the watchdog; past it, kills it and panics with
/// `seen` (what it printed so far, where the caller has it).
fn wait_or_kill(child: &mut Child, command: &str, seen: impl Fn() -> String) -> ExitStatus {
    let mut status = None;
    let finished = poll_until(WATCHDOG, || {
        status = child.try_wait().unwrap_or_else(|e| panic!("cannot wait for {command}: {e}"));
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command} still ran after {WATCHDOG:?}; killed it (is the sandbox hung?)\n{}", seen());
    }
    status.expect("finished means a status")
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = vec![];
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// What a finished [`TestCommand`] did. Every `assert_*` panics with the
/// command line, the status and both streams, and returns `self` so checks
/// can be chained.
#[derive(Debug)]
pub struct Outcome {
    /// The command line, quoted for a shell.
    pub command: String,
    /// How the program ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to stderr (lossy UTF-8).
    pub stderr: String,
    /// The audit records it appended (see [`TestCommand`]).
    pub audit: Vec<serde_json::Value>,
}

impl Outcome {
    /// The exit code, or `None` when a signal ended the program.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        if self.code() != Some(expected) {
            panic!("expected exit code {expected}\n{self}");
        }
        self
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// Asserts stdout is exactly `expected`.
    #[track_caller]
    pub fn assert_stdout_eq(&self, expected: &str) -> &Self {
        if self.stdout != expected {
            panic!("expected stdout {expected:?}\n{self}");
        }
        self
    }

    /// Asserts stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        if !self.stdout.contains(needle) {
            panic!("expected stdout to contain {needle:?}\n{self}");
        }
        self
    }

    /// Asserts stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        if !self.stderr.contains(needle) {
            panic!("expected stderr to contain {needle:?}\n{self}");
        }
        self
    }

    /// Asserts stderr does not contain `needle`.
    #[track_caller]
    pub fn assert_stderr_lacks(&self, needle: &str) -> &Self {
        if self.stderr.contains(needle) {
            panic!("expected stderr not to contain {needle:?}\n{self}");
        }
        self
    }

    /// Parses stdout as one JSON value (cordon's `--json` ExecutionResult).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{self}"))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ended = match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => format!("{:?}", self.status),
        };
        writeln!(f, "command: {}", self.command)?;
        writeln!(f, "ended:   {ended}")?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}\n--------------", self.stderr.trim_end())
    }
}
