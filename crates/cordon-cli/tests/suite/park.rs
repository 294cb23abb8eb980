//! Parked runs (issue 14, the warm pool's first half): `cordon::park` sets a
//! sandbox up to its command's start and `Parked::start` starts it with the
//! request's own data. Checked from the host: the parked sandbox's init
//! exists and waits in `read(2)` on its go pipe while its command has not
//! run (a file it would write is absent, init has no child); the input,
//! `TRACEPARENT` and request id come from the start, not the park; the
//! clock (timeout) starts at the start; a parked sandbox dropped unstarted
//! is killed and reaped. The CLI (`cordon run`, park plus an immediate
//! start) is the whole rest of the suite.

use std::path::Path;
use std::time::Duration;

use cordon_testkit::{each_mode, kernel_support, poll_until, sandbox_modes, Dir, Mode};

/// A well-formed traceparent the park carries as a placeholder.
const PLACEHOLDER: &str = "00-00000000000000000000000000000001-0000000000000001-00";
/// The one a start gives.
const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A request that writes `<dir>/ran`, echoes its stdin and `TRACEPARENT`.
fn request(mode: Mode, dir: &Path, id: &str) -> cordon::RunRequest {
    let script = format!("echo ran > {}/ran; cat; echo; echo \"tp=$TRACEPARENT\"", dir.display());
    let mut policy = cordon::PolicyBuilder::new().write(cordon::PathRule { path: dir.to_path_buf() }).build();
    policy.env.set.push(("TRACEPARENT".into(), PLACEHOLDER.into()));
    policy.limits.timeout_ms = Some(10_000);
    let mut req = cordon::RunRequest::new(policy, mode, vec!["sh".into(), "-c".into(), script]);
    req.capture = cordon::Capture::Logs;
    req.cwd = "/".into();
    req.stdin = cordon::Input::Bytes(b"parked input".to_vec());
    req.signals = cordon::Signals::Leave;
    req.request_id = Some(id.into());
    req
}

fn logs(r: &cordon::ExecutionResult) -> String {
    r.logs.lines.iter().map(|l| format!("{}\n", l.text)).collect()
}

/// Whether `pid` is blocked in `read(2)` (syscall 0 in `/proc/PID/syscall`):
/// a parked init does nothing else that blocks in a read.
fn waits_in_read(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| s.split(' ').next() == Some("0"))
}

fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn children(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default()
}

fn park(req: &cordon::RunRequest) -> cordon::Parked {
    match cordon::park(req) {
        Ok(p) => p,
        Err(failed) => panic!("park failed: {failed:?}"),
    }
}

/// Parked, nothing of the command has run; started, it runs with the
/// start's input, traceparent and request id (the placeholders of the park
/// are what it would see otherwise: the control with no start data).
#[test]
fn a_parked_sandbox_runs_its_command_only_when_started_and_with_the_starts_data() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("park-start");
        let ran = dir.path().join("ran");
        let parked = park(&request(mode, dir.path(), &format!("park-{}-{}", std::process::id(), mode.as_str())));
        let pid = parked.pid();
        assert!(poll_until(Duration::from_secs(10), || waits_in_read(pid)), "init {pid} never waited at its go pipe");
        assert!(!ran.exists(), "the command ran before the start");
        assert_eq!(children(pid), "", "init forked before the start");
        assert!(!parked.is_dead());
        let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
        assert_ne!(std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok(), Some(ours), "not in a pid namespace");
        let result = parked.start(cordon::Start {
            request_id: Some("the-callers-id".into()),
            input: Some(b"the real input".to_vec()),
            traceparent: Some(GIVEN.into()),
            ..cordon::Start::default()
        });
        assert!(result.ok, "{result:?}");
        assert_eq!(result.request_id, "the-callers-id");
        assert_eq!(logs(&result), format!("the real input\ntp={GIVEN}\n"));
        assert!(ran.exists(), "the command did not run");
        assert!(!exists(pid), "init {pid} was not reaped");

        // Control: no start data keeps what the park was given.
        let dir = Dir::new("park-defaults");
        let id = format!("park-defaults-{}-{}", std::process::id(), mode.as_str());
        let result = park(&request(mode, dir.path(), &id)).start(cordon::Start::default());
        assert!(result.ok, "{result:?}");
        assert_eq!(result.request_id, id);
        assert_eq!(logs(&result), format!("parked input\ntp={PLACEHOLDER}\n"));
    });
}

/// A parked sandbox dropped unstarted is killed and reaped (no process,
/// no zombie), and its command never runs. Control: the same park's init
/// exists before the drop.
#[test]
fn a_parked_sandbox_dropped_unstarted_is_killed_and_reaped() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("park-drop");
        let parked = park(&request(mode, dir.path(), &format!("park-drop-{}-{}", std::process::id(), mode.as_str())));
        let pid = parked.pid();
        assert!(poll_until(Duration::from_secs(10), || waits_in_read(pid)), "init {pid} never waited at its go pipe");
        assert!(exists(pid));
        drop(parked);
        assert!(!exists(pid), "init {pid} survived the drop (or was left a zombie)");
        assert!(!dir.path().join("ran").exists(), "the command ran");
    });
}

/// The timeout counts from the start: a sandbox parked for longer than its
/// timeout still runs to the end. Control: a command longer than the
/// timeout, started the same way, is stopped with TIMEOUT.
#[test]
fn a_parked_sandboxs_timeout_counts_from_its_start() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("park-clock");
        let mut req = request(mode, dir.path(), &format!("park-clock-{}-{}", std::process::id(), mode.as_str()));
        req.policy.limits.timeout_ms = Some(300);
        let parked = park(&req);
        assert!(poll_until(Duration::from_secs(10), || waits_in_read(parked.pid())));
        // Waiting is the point here: the park outlives the timeout.
        std::thread::sleep(Duration::from_millis(400));
        let result = parked.start(cordon::Start::default());
        assert!(result.ok, "{result:?}");

        req.argv = vec!["sleep".into(), "5".into()];
        let result = park(&req).start(cordon::Start::default());
        assert_eq!(result.error.as_ref().map(|e| e.code), Some(cordon::ErrorCode::Timeout), "{result:?}");
    });
}

/// Start data the park did not prepare for is refused with a message
/// naming it, and the command does not run; a traceparent of the wrong
/// shape likewise. Control: the first test starts the same park with
/// well-formed data.
#[test]
fn start_data_the_park_did_not_prepare_for_is_refused() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("park-refused");
        let id = |n: &str| format!("park-refused-{n}-{}-{}", std::process::id(), mode.as_str());
        let mut req = request(mode, dir.path(), &id("a"));
        req.policy.env.set.retain(|(k, _)| k != "TRACEPARENT");
        let result = park(&req).start(cordon::Start { traceparent: Some(GIVEN.into()), ..cordon::Start::default() });
        let e = result.error.expect("refused");
        assert_eq!(e.code, cordon::ErrorCode::SetupFailed);
        assert!(e.message.contains("parked without a TRACEPARENT placeholder"), "{}", e.message);

        let result = park(&request(mode, dir.path(), &id("b")))
            .start(cordon::Start { traceparent: Some(GIVEN.replace('4', "x")), ..cordon::Start::default() });
        let e = result.error.expect("refused");
        assert!(e.message.contains("is not 55 characters of hex digits and dashes"), "{}", e.message);

        let mut req = request(mode, dir.path(), &id("c"));
        req.stdin = cordon::Input::Inherit;
        let result = park(&req).start(cordon::Start { input: Some(b"x".to_vec()), ..cordon::Start::default() });
        let e = result.error.expect("refused");
        assert!(e.message.contains("parked without an input pipe"), "{}", e.message);
        assert!(!dir.path().join("ran").exists(), "a refused start ran its command");
    });
}

/// A run is answered as soon as its init has reaped every other process
/// of it, before init's own exit (the teardown of its namespaces runs
/// while the caller writes its record), and dropping what is left reaps
/// init: checked from the host with init's pid. Control: while the command
/// runs, init has a child and the command's background `sleep` is seen.
#[test]
fn a_run_is_answered_before_inits_exit_and_nothing_else_of_it_is_left() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("park-answer");
        let fifo = dir.path().join("go");
        cordon_testkit::TestCommand::new("mkfifo").arg(&fifo).run().assert_success();
        let marker = super::unique_sleep_marker();
        let mut req = request(mode, dir.path(), &format!("park-answer-{}-{}", std::process::id(), mode.as_str()));
        req.argv = ["sh", "-c", &format!("sleep {marker} & read line < {}; exit 3", fifo.display())]
            .map(String::from)
            .to_vec();
        let parked = park(&req);
        let init = parked.pid();
        let run = std::thread::spawn(move || parked.start_answering(cordon::Start::default()));

        let seen = poll_until(Duration::from_secs(10), || {
            !cordon_testkit::processes_with_argv(&["sleep", &marker]).is_empty()
        });
        assert!(seen, "control: the command's background sleep was never seen");
        assert_ne!(children(init), "", "control: init has no child while the command runs");
        // Opening the fifo waits for the command's `read`; the line ends it.
        std::fs::write(&fifo, "go\n").expect("write the fifo");

        let (result, after) = run.join().expect("the run's thread");
        assert_eq!(result.exit, Some(cordon::Exit::Code(3)), "{result:?}");
        assert_eq!(
            cordon_testkit::processes_with_argv(&["sleep", &marker]),
            Vec::<u32>::new(),
            "the background sleep outlived the answer"
        );
        assert_eq!(children(init), "", "init had a child (or an unreaped zombie) at the answer");
        assert!(exists(init), "init {init} was reaped before the answer: the run waited for its exit");
        drop(after);
        assert!(!exists(init), "init {init} was not reaped (or left a zombie) by the drop");
    });
}

/// `(device, inode)` of what `/proc/<pid>/fd/<fd>` points at.
fn file_of(pid: &str, fd: u32) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).unwrap_or_else(|e| panic!("fd {fd} of {pid}: {e}"));
    (m.dev(), m.ino())
}

/// A parked init holds nothing of its caller's but what its command needs
/// (review findings P1, P2). A run parked first (A) is started while
/// another (B) is parked: A's command reads its input to the end, which
/// it gets only if B's init holds no copy of A's stdin pipe (before init
/// closed what it inherited, A waited for its 10 s timeout). B's fds 0-2,
/// which the command gets replaced, point at `/dev/null`, not at the
/// test's stdout and stderr (before: the caller's, e.g. `cordon serve`'s
/// log pipe); control: a slot the command inherits (stdin not given) is
/// kept, the same file as the test's own fd 0.
#[test]
fn a_parked_init_holds_no_other_runs_pipe_nor_its_callers_stdio() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("park-held");
        let id = |n: &str| format!("park-held-{n}-{}-{}", std::process::id(), mode.as_str());
        let a = park(&request(mode, dir.path(), &id("a")));
        let b = park(&request(mode, dir.path(), &id("b")));
        let pid = b.pid();
        assert!(poll_until(Duration::from_secs(10), || waits_in_read(pid)), "init {pid} never waited at its go pipe");
        let dev_null = {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata("/dev/null").unwrap();
            (m.dev(), m.ino())
        };
        for fd in 0..3 {
            assert_eq!(file_of(&pid.to_string(), fd), dev_null, "fd {fd} of the parked init {pid} is not /dev/null");
        }
        let result = a.start(cordon::Start { input: Some(b"for a".to_vec()), ..cordon::Start::default() });
        assert!(result.ok, "A did not finish while B was parked: {result:?}");
        assert_eq!(logs(&result), format!("for a\ntp={PLACEHOLDER}\n"));
        assert!(!b.is_dead());
        drop(b);

        // Control: stdin not given is the command's to inherit; init keeps it.
        let mut req = request(mode, dir.path(), &id("c"));
        req.stdin = cordon::Input::Inherit;
        let c = park(&req);
        let pid = c.pid();
        assert!(poll_until(Duration::from_secs(10), || waits_in_read(pid)), "init {pid} never waited at its go pipe");
        assert_eq!(file_of(&pid.to_string(), 0), file_of("self", 0), "the inherited stdin was not kept");
        assert_eq!(file_of(&pid.to_string(), 1), dev_null);
    });
}

/// Dev mode has no init to hold its command: it runs from the park on, so
/// a `TRACEPARENT` given at the start cannot reach it and is refused with
/// a message (review finding P3; before, it was dropped silently and the
/// run reported ok). Control: the same dev park started without one runs
/// with the park's placeholder and the start's input.
#[test]
fn a_dev_mode_park_refuses_a_traceparent_it_cannot_set() {
    let dir = Dir::new("park-dev");
    let id = |n: &str| format!("park-dev-{n}-{}", std::process::id());
    let result = park(&request(Mode::Dev, dir.path(), &id("a")))
        .start(cordon::Start { traceparent: Some(GIVEN.into()), ..cordon::Start::default() });
    let e = result.error.expect("refused");
    assert_eq!(e.code, cordon::ErrorCode::SetupFailed);
    assert!(e.message.contains("dev mode run has no init to hold its command"), "{}", e.message);
    assert!(e.message.contains("hint: "), "{}", e.message);

    let result = park(&request(Mode::Dev, dir.path(), &id("b")))
        .start(cordon::Start { input: Some(b"late input".to_vec()), ..cordon::Start::default() });
    assert!(result.ok, "{result:?}");
    assert_eq!(logs(&result), format!("late input\ntp={PLACEHOLDER}\n"));
}

/// A request id names the run's cgroups (the park's)
/// and the result (the start's): one that could name a path elsewhere, or
/// is empty or too long, is refused with a message naming it, at the park
/// and at the start, and the command does not run (review finding P4).
/// Control: the first test parks and starts with well-formed ids.
#[test]
fn request_ids_that_cannot_name_a_run_are_refused() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("park-ids");
        for bad in ["../escape", "", "a\n\"b", &"x".repeat(129)] {
            let failed = match cordon::park(&request(mode, dir.path(), bad)) {
                Ok(_) => panic!("request id {bad:?} was accepted at the park"),
                Err(failed) => failed,
            };
            let e = failed.error.expect("refused");
            assert_eq!(e.code, cordon::ErrorCode::SetupFailed);
            assert!(e.message.contains("is not 1-128 of A-Z a-z 0-9 _ -"), "{}", e.message);
            assert_ne!(failed.request_id, bad);

            let id = format!("park-ids-{}-{}", std::process::id(), mode.as_str());
            let result = park(&request(mode, dir.path(), &id))
                .start(cordon::Start { request_id: Some(bad.to_owned()), ..cordon::Start::default() });
            let e = result.error.expect("refused");
            assert!(e.message.contains("is not 1-128 of A-Z a-z 0-9 _ -"), "{}", e.message);
            assert_eq!(result.request_id, id);
        }
        assert!(!dir.path().join("ran").exists(), "a refused run ran its command");
        assert!(!std::env::temp_dir().join("escape").exists());
    });
}
