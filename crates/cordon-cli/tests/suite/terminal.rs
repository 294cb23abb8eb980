//! Terminals (issue 10 items 1–3, issue 9's terminal ioctls): one SIGINT per
//! Ctrl-C, ptys inside the sandbox, interactive runs on a pty of the run's
//! own, and what a sandbox can do to the caller's terminal with `--no-tty`.
//! Every test drives cordon through a real pty ([`Pty`]) and checks the
//! terminal from the host side.

use std::time::Duration;

use cordon_testkit::{
    each_mode, kernel_support, poll_until, processes_with_argv, sandbox_modes, Mode, Pty, TestCommand,
};

use super::{cordon_bin, run_in, tool, unique_sleep_marker};

/// Long enough for a loaded machine; returns as soon as the text shows.
const SHOWS: Duration = Duration::from_secs(60);

/// `setsid --ctty PROGRAM`: the program leads a new session whose
/// controlling terminal is the pty on its stdin, as a login shell does.
/// It starts in `/usr`, which the system set grants, so nothing but the
/// program prints on the pty.
fn on_pty(program: &str) -> TestCommand {
    let mut cmd = TestCommand::new(tool("/usr/bin/setsid"));
    cmd.args(["--ctty", program]).command().current_dir("/usr");
    cmd
}

/// `cordon run --mode MODE` on a pty.
fn cordon_on_pty(mode: Mode) -> TestCommand {
    let mut cmd = on_pty(cordon_bin().to_str().expect("UTF-8 path"));
    cmd.args(["run", "--mode", mode.as_str()]);
    cmd
}

/// Counts the SIGINTs it receives, on its stdout: `got N` as they come,
/// then, once none came for half a second, `sigints N`, and it dies of
/// SIGINT as an uncaught Ctrl-C would. `ready` first, also as the file
/// `$READY` when that is set (where stdout is captured). Python's C-level handler writes
/// one byte per delivery to the wakeup pipe, and the probe spins rather
/// than sleeps: a signal to a running process is delivered at once, so
/// duplicates sent microseconds apart are not merged into one pending
/// signal while it sleeps.
const SIGINT_COUNTER: &str = r#"
import os, signal, time
r, w = os.pipe()
os.set_blocking(r, False)
os.set_blocking(w, False)
signal.signal(signal.SIGINT, lambda sig, frame: None)
signal.set_wakeup_fd(w)
n = 0
def count():
    global n
    try:
        n += len(os.read(r, 64))
    except BlockingIOError:
        return False
    os.write(1, b"got %d\n" % n)
    return True
os.write(1, b"ready\n")
if os.environ.get("READY"):
    open(os.environ["READY"], "w").close()
while n == 0:
    count()
quiet_until = time.monotonic() + 0.5
while time.monotonic() < quiet_until:
    if count():
        quiet_until = time.monotonic() + 0.5
os.write(1, b"sigints %d\n" % n)
signal.set_wakeup_fd(-1)
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.kill(os.getpid(), signal.SIGINT)
"#;

#[test]
fn one_ctrl_c_delivers_one_sigint_and_ends_the_run_interrupted() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    // Control: without cordon, one Ctrl-C is one SIGINT...
    let pty = Pty::open(24, 80);
    let out = on_pty(python).args(["-c", SIGINT_COUNTER]).run_on_pty(&pty, |pty, _| pty.type_after("ready", b"\x03"));
    assert!(out.stdout.contains("sigints 1\r\n"), "control: {out}");
    // ...and the counter does count a second one.
    let pty = Pty::open(24, 80);
    let out = on_pty(python).args(["-c", SIGINT_COUNTER]).run_on_pty(&pty, |pty, pid| {
        pty.expect("ready");
        let kill = || std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
        assert!(kill().success());
        pty.expect("got 1");
        assert!(kill().success());
    });
    assert!(out.stdout.contains("sigints 2\r\n"), "control: two SIGINTs are counted as two\n{out}");

    each_mode(sandbox_modes!(support), |mode| {
        // The run's own pty (the default on a terminal), the caller's
        // terminal without a pty, and captured output.
        for extra in [&[][..], &["--no-tty"], &["--json"]] {
            let json = extra == ["--json"];
            let dir = cordon_testkit::Dir::new("terminal-sigint");
            let ready = dir.join("ready");
            let pty = Pty::open(24, 80);
            let mut cmd = cordon_on_pty(mode);
            cmd.args(extra);
            if json {
                // The output is captured: readiness shows as a file.
                cmd.args(["--write", dir.path().to_str().unwrap(), "--env", "READY"]).env("READY", &ready);
            }
            let out = cmd.args(["--", python, "-c", SIGINT_COUNTER]).run_on_pty(&pty, |pty, _| {
                if json {
                    assert!(poll_until(SHOWS, || ready.exists()), "the counter never started\n{}", pty.transcript());
                    pty.type_keys(b"\x03");
                } else {
                    pty.type_after("ready", b"\x03");
                }
            });
            let what = format!("[{} {extra:?}]", mode.as_str());
            out.assert_code(130);
            assert_eq!(out.audit[0]["outcome"], "INTERRUPTED", "{what}\n{out}");
            if json {
                // After the terminal's echo of the Ctrl-C (`^C`).
                let line = out.stdout.lines().find_map(|l| l.find('{').map(|at| &l[at..]));
                let line = line.unwrap_or_else(|| panic!("{what} {out}"));
                let result: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
                assert_eq!(result["error"]["code"], "INTERRUPTED", "{what}");
                assert_eq!(result["exit"], serde_json::json!({"signal": 2}), "{what}");
                let logged: Vec<&str> =
                    result["logs"]["lines"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
                assert!(logged.contains(&"sigints 1"), "{what} one Ctrl-C must be one SIGINT\n{out}");
            } else {
                assert!(out.stdout.contains("sigints 1\r\n"), "{what} one Ctrl-C must be one SIGINT\n{out}");
            }
        }
    });
}

/// The session and the controlling terminal (`tty_nr`, as encoded in
/// `/proc/<pid>/stat`) of a host process.
fn session_and_terminal(pid: u32) -> (u32, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').expect("stat has a name") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    (fields[3].parse().unwrap(), fields[4].parse().unwrap())
}

#[test]
fn the_sandbox_is_outside_the_callers_session_and_terminal() {
    let support = kernel_support();
    // Control: a program started from a shell on the pty is in the shell's
    // session, with the pty as its controlling terminal; keys typed there
    // signal it directly.
    let marker = unique_sleep_marker();
    let pty = Pty::open(24, 80);
    on_pty("/bin/sh").args(["-c", &format!("sleep {marker}; true")]).run_on_pty(&pty, |pty, sh| {
        let sleep = wait_for_process(&["sleep", &marker]);
        assert_eq!(session_and_terminal(sleep), (sh, pty.device()), "control");
        assert!(std::process::Command::new("kill").arg(sleep.to_string()).status().unwrap().success());
    });
    each_mode(sandbox_modes!(support), |mode| {
        for extra in [&[][..], &["--no-tty"]] {
            let marker = unique_sleep_marker();
            let pty = Pty::open(24, 80);
            let out = cordon_on_pty(mode).args(extra).args(["--", "sleep", &marker]).run_on_pty(&pty, |pty, cordon| {
                let sleep = wait_for_process(&["sleep", &marker]);
                let (session, terminal) = session_and_terminal(sleep);
                let what = format!("[{} {extra:?}]", mode.as_str());
                if extra.is_empty() {
                    // A terminal belongs to one session: in another one,
                    // the caller's cannot be the command's controlling
                    // terminal. (Device numbers do not tell devpts
                    // instances apart.)
                    assert_ne!(session, cordon, "{what} the command is in a session of its own");
                    assert_ne!(terminal, 0, "{what} its own pty is its controlling terminal");
                } else {
                    // Relayed: it stays in cordon's session (cordon leads
                    // it here), in a process group of its own, and holds
                    // no descriptor of the terminal (see
                    // `without_a_terminal_the_sandbox_stays_in_cordons_session…`
                    // for /dev/tty).
                    assert_eq!(session, cordon, "{what} the command stays in cordon's session");
                    assert_ne!(host_ids(sleep)[1], u64::from(cordon), "{what} in a process group of its own");
                    for fd in 0..3 {
                        let target = std::fs::read_link(format!("/proc/{sleep}/fd/{fd}")).unwrap();
                        assert!(target.to_string_lossy().starts_with("pipe:"), "{what} fd {fd}: {}", target.display());
                    }
                    let _ = pty;
                }
                assert!(std::process::Command::new("kill").arg(cordon.to_string()).status().unwrap().success());
            });
            out.assert_code(143);
        }
    });
}

/// The `ids PID PGRP SESSION TTY_NR` lines [`IDS`] printed, in order.
fn printed_ids(text: &str) -> Vec<[u64; 4]> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("ids "))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().map(|f| f.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect()
}

/// A shell script that prints `ids PID PGRP SESSION TTY_NR` for itself,
/// then for its parent (in dev mode: cordon), from `/proc/PID/stat`.
const IDS: &str =
    r#"for p in $$ $PPID; do read -r s < /proc/$p/stat; set -- ${s##*") "}; echo "ids $p $3 $4 $5"; done"#;

/// Dev mode's command leads a process group of its own, the one cordon
/// kills when the command ends, and a session of its own only where there
/// is a terminal to keep it from (issue 12: `setsid` makes a scheduler
/// autogroup, 35-440 us on the 2-core VM). On a pty, with a pty of the
/// run's own or with `--no-tty`, it is outside cordon's session: its own
/// pty is its controlling terminal, or it has none at all. Started without
/// a controlling terminal (`setsid -w`), it stays in cordon's session, in a
/// group of its own, and the process it left running in that group is
/// killed when it ends. Fails on a cordon that always makes a session (the
/// command's session is its own pid there too).
#[test]
fn dev_mode_leaves_cordons_session_only_where_there_is_a_terminal() {
    for extra in [&[][..], &["--no-tty"]] {
        let pty = Pty::open(24, 80);
        let out = cordon_on_pty(Mode::Dev).args(extra).args(["--", "sh", "-c", IDS]).run_on_pty(&pty, |_, _| {});
        out.assert_success();
        let ids = printed_ids(&out.stdout);
        assert_eq!(ids.len(), 2, "[on a pty {extra:?}]\n{out}");
        let ([pid, group, session, tty], [_, _, cordon_session, cordon_tty]) = (ids[0], ids[1]);
        let what = format!("[on a pty {extra:?}]");
        assert_ne!(cordon_tty, 0, "{what} control: cordon's controlling terminal is the pty");
        assert_eq!((group, session), (pid, pid), "{what} the command leads a session of its own\n{out}");
        assert_ne!(session, cordon_session, "{what}");
        match extra.is_empty() {
            true => assert_ne!(tty, 0, "{what} its own pty is its controlling terminal"),
            false => assert_eq!(tty, 0, "{what} no controlling terminal at all"),
        }
    }

    let marker = unique_sleep_marker();
    let script = format!("sleep {marker} </dev/null >/dev/null 2>&1 & kill -0 $! && echo left-running; {IDS}");
    let mut cmd = TestCommand::new(tool("/usr/bin/setsid"));
    cmd.arg("-w").arg(cordon_bin()).args(["run", "--mode", "dev", "--", "sh", "-c", &script]);
    let out = cmd.run();
    out.assert_success();
    let ids = printed_ids(&out.stdout);
    assert_eq!(ids.len(), 2, "[no terminal]\n{out}");
    let ([pid, group, session, tty], [_, cordon_group, cordon_session, cordon_tty]) = (ids[0], ids[1]);
    assert_eq!((tty, cordon_tty), (0, 0), "[no terminal] control: no controlling terminal\n{out}");
    assert_eq!(group, pid, "[no terminal] the command leads a process group of its own\n{out}");
    assert_ne!(group, cordon_group, "[no terminal]");
    assert_eq!(session, cordon_session, "[no terminal] the command stays in cordon's session\n{out}");
    assert!(out.stdout.contains("left-running"), "[no terminal] control: the sleep ran\n{out}");
    assert!(
        poll_until(SHOWS, || processes_with_argv(&["sleep", &marker]).is_empty()),
        "[no terminal] what the command left running in its group is killed when it ends"
    );
}

/// Tries to open `/dev/tty`, write to it and push input into it; prints
/// `dev-tty ok` or the errno name; then becomes `sleep ARGV1`, for the
/// host to find.
const DEV_TTY_PROBE: &str = r##"
import errno, fcntl, os, sys, termios
def attempt():
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        os.write(fd, b"the-sandbox-wrote-here\n")
        fcntl.ioctl(fd, termios.TIOCSTI, b"#")
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print("dev-tty", attempt(), flush=True)
os.execv("/usr/bin/sleep", ["sleep", sys.argv[1]])
"##;

/// `(parent, process group, session, controlling terminal)` of `pid`, from
/// the host's `/proc`.
fn host_ids(pid: u32) -> [u64; 4] {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_else(|e| panic!("{pid}: {e}"));
    let fields: Vec<u64> =
        stat.rsplit_once(") ").unwrap().1.split(' ').skip(1).take(4).map(|f| f.parse().unwrap()).collect();
    [fields[0], fields[1], fields[2], fields[3]]
}

/// The outermost of the `cordon` processes `pid` descends from (init is
/// a clone of cordon without an exec, so it runs cordon's file too).
fn cordon_above(pid: u32) -> u32 {
    let is_cordon = |p: u64| std::fs::canonicalize(format!("/proc/{p}/exe")).is_ok_and(|e| e == cordon_bin());
    let mut p = u64::from(pid);
    let mut top = None;
    while p > 1 {
        if is_cordon(p) {
            top = Some(p);
        }
        p = host_ids(u32::try_from(p).unwrap())[0];
    }
    u32::try_from(top.unwrap_or_else(|| panic!("no cordon above {pid}"))).unwrap()
}

/// Process and container mode (issue 12: `setsid` makes a scheduler
/// autogroup, 114-440 us in a user and pid namespace): where it holds no
/// terminal, the sandbox stays in cordon's session, in a process group of
/// its own, and `/dev/tty`, which would open that session's controlling
/// terminal, is not granted. Run on a pty with every descriptor elsewhere
/// (cordon's session has the pty as controlling terminal), and without a
/// terminal at all (`setsid -w`). Host side: the command's session and
/// group from the host's `/proc`, nothing written to the pty, no input
/// pushed into it. With a pty of the run's own, `/dev/tty` opens that
/// pty. Fails on a build that keeps the `/dev/tty` grant (the probe
/// writes on the caller's terminal) and on one that keeps `setsid`.
#[test]
fn without_a_terminal_the_sandbox_stays_in_cordons_session_and_cannot_open_its_terminal() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        for on_terminal in [true, false] {
            let what = format!("[{m}, {}]", if on_terminal { "on a pty, stdio elsewhere" } else { "no terminal" });
            let marker = unique_sleep_marker();
            let out_dir = cordon_testkit::Dir::new("terminal-session");
            let out_file = out_dir.join("out");
            let cordon = cordon_bin().to_str().expect("UTF-8 path");
            let run = [cordon, "run", "--mode", m, "--", python, "-c", DEV_TTY_PROBE, &marker];
            let pty = Pty::open(24, 80);
            // Finds the command, reads its ids, ends it (SIGTERM to the
            // sleep this test started).
            let check = |_: &Pty, _: u32| {
                let sleep = wait_for_process(&["sleep", &marker]);
                let [_, group, session, _] = host_ids(sleep);
                let [_, cordon_group, cordon_session, cordon_tty] = host_ids(cordon_above(sleep));
                assert_eq!(cordon_tty != 0, on_terminal, "{what} control: cordon's controlling terminal");
                assert_eq!(session, cordon_session, "{what} the sandbox stays in cordon's session");
                assert_ne!(group, cordon_group, "{what} in a process group of its own");
                let killed = std::process::Command::new("kill").args(["-TERM", &sleep.to_string()]).status().unwrap();
                assert!(killed.success(), "{what} kill {sleep}");
            };
            if on_terminal {
                let script = r#"exec "$@" </dev/null >"$OUT" 2>&1"#;
                let mut cmd = on_pty("/bin/sh");
                cmd.args(["-c", script, "sh"]).args(run).env("OUT", &out_file);
                let outcome = cmd.run_on_pty(&pty, check);
                outcome.assert_code(143);
                assert!(!pty.transcript().contains("the-sandbox-wrote-here"), "{what} {}", pty.transcript());
                assert_eq!(pty.input_pending(), 0, "{what} input pushed into the terminal");
            } else {
                let mut cmd = TestCommand::new(tool("/usr/bin/setsid"));
                cmd.arg("-w").args(run);
                let outcome = std::thread::scope(|s| {
                    let running = s.spawn(|| cmd.run());
                    check(&pty, 0);
                    running.join().expect("the run's thread")
                });
                outcome.assert_code(143);
                std::fs::write(&out_file, &outcome.stdout).unwrap();
            }
            let printed = std::fs::read_to_string(&out_file).unwrap();
            assert!(printed.contains("dev-tty EACCES\n"), "{what} /dev/tty is not granted: {printed}");
        }
        // Control: with a pty of the run's own, /dev/tty is that pty.
        let pty = Pty::open(24, 80);
        let out =
            cordon_on_pty(mode).args(["--", "sh", "-c", "echo via-dev-tty >/dev/tty"]).run_on_pty(&pty, |_, _| {});
        out.assert_success();
        assert!(out.stdout.contains("via-dev-tty"), "[{m}] {out}");
    });
}

/// The one host process whose argv is `argv`, once it exists.
fn wait_for_process(argv: &[&str]) -> u32 {
    let mut found = vec![];
    poll_until(SHOWS, || {
        found = processes_with_argv(argv);
        found.len() == 1
    });
    assert_eq!(found.len(), 1, "{argv:?}: {found:?}");
    found[0]
}

#[test]
fn a_plain_program_ended_by_ctrl_c_exits_130() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let pty = Pty::open(24, 80);
        let out = cordon_on_pty(mode)
            .args(["--", "sh", "-c", "echo ready; exec sleep 60"])
            .run_on_pty(&pty, |pty, _| pty.type_after("ready", b"\x03"));
        out.assert_code(130);
        assert_eq!(out.audit[0]["outcome"], "INTERRUPTED", "[{}]\n{out}", mode.as_str());
    });
}

#[test]
fn on_a_terminal_the_command_gets_a_pty_of_the_run_and_with_no_tty_none() {
    let support = kernel_support();
    let probe = "tty; if [ -t 0 ] && [ -t 1 ]; then echo interactive; else echo not-interactive; fi";
    // Control: without cordon, the program sees the pty it runs on.
    let pty = Pty::open(24, 80);
    let out = on_pty("/bin/sh").args(["-c", probe]).run_on_pty(&pty, |_, _| {});
    assert!(out.stdout.contains("/dev/pts/") && out.stdout.contains("\r\ninteractive"), "control: {out}");
    each_mode(sandbox_modes!(support), |mode| {
        let pty = Pty::open(24, 80);
        let out = cordon_on_pty(mode).args(["--", "sh", "-c", probe]).run_on_pty(&pty, |_, _| {});
        out.assert_success();
        // The first pty of the run's own devpts instance.
        assert!(out.stdout.starts_with("/dev/pts/0\r\ninteractive\r\n"), "[{}] {out}", mode.as_str());
        let pty = Pty::open(24, 80);
        let out = cordon_on_pty(mode).args(["--no-tty", "--", "sh", "-c", probe]).run_on_pty(&pty, |_, _| {});
        assert!(out.stdout.starts_with("not a tty\r\nnot-interactive\r\n"), "[{}] {out}", mode.as_str());
    });
}

#[test]
fn tty_forces_a_pty_with_piped_input_and_conflicts_with_json() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let out =
            run_in(mode).args(["--tty", "--", "sh", "-c", "tty; read line; echo got $line"]).stdin("hello\n").run();
        out.assert_success();
        // The pty echoes the input it is given, as a terminal does, before
        // or after `tty` prints.
        assert!(out.stdout.lines().any(|l| l == "/dev/pts/0"), "[{}] {out}", mode.as_str());
        assert!(out.stdout.contains("got hello\r\n"), "[{}] {out}", mode.as_str());
        // Control: without --tty, piped stdio is no terminal.
        run_in(mode).args(["--", "tty"]).run().assert_code(1).assert_stdout_eq("not a tty\n");
    });
    super::cordon()
        .args(["run", "--tty", "--json", "--", "true"])
        .run()
        .assert_code(125)
        .assert_stderr_contains("'--tty' cannot be used with '--json'");
}

/// Prints its window size, then again after the first `SIGWINCH`.
const WINDOW_SIZE: &str = r#"
import fcntl, os, signal, struct, termios
def size():
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(1, termios.TIOCGWINSZ, bytes(8)))
    return b"%d %d" % (rows, cols)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})
os.write(1, b"start " + size() + b"\n")
signal.sigwait({signal.SIGWINCH})
os.write(1, b"resized " + size() + b"\n")
"#;

#[test]
fn the_window_size_propagates_and_follows_resizes() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    // Control: without cordon, on the pty itself.
    let pty = Pty::open(33, 101);
    let out = on_pty(python).args(["-c", WINDOW_SIZE]).run_on_pty(&pty, |pty, _| {
        pty.expect("start 33 101");
        pty.resize(40, 120);
    });
    assert!(out.stdout.contains("resized 40 120"), "control: {out}");
    each_mode(sandbox_modes!(support), |mode| {
        let pty = Pty::open(33, 101);
        let out = cordon_on_pty(mode).args(["--", python, "-c", WINDOW_SIZE]).run_on_pty(&pty, |pty, _| {
            pty.expect("start 33 101");
            pty.resize(40, 120);
        });
        out.assert_success();
        assert!(out.stdout.contains("resized 40 120"), "[{}] {out}", mode.as_str());
    });
}

#[test]
fn the_callers_terminal_is_raw_during_a_tty_run_and_restored_however_it_ends() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        // Ended by the command itself; at the timeout; by a SIGTERM to cordon.
        let endings: [(&[&str], i32); 3] = [(&[], 0), (&["--timeout-ms", "500"], 124), (&[], 143)];
        for (i, (flags, code)) in endings.into_iter().enumerate() {
            let pty = Pty::open(24, 80);
            let before = pty.modes();
            assert!(before.echoes(), "control: a fresh pty echoes");
            let script = if i == 0 { "echo ready; read x" } else { "echo ready; exec sleep 60" };
            let out = cordon_on_pty(mode).args(flags).args(["--", "sh", "-c", script]).run_on_pty(&pty, |pty, pid| {
                pty.expect("ready");
                assert!(!pty.modes().echoes(), "[{m}] the caller's terminal is raw while the pty is relayed");
                match i {
                    0 => pty.type_keys(b"done\r"),
                    2 => assert!(std::process::Command::new("kill").arg(pid.to_string()).status().unwrap().success()),
                    _ => {}
                }
            });
            out.assert_code(code);
            assert_eq!(pty.modes(), before, "[{m}] ending {i}: the terminal's modes are restored\n{out}");
        }
    });
}

#[test]
fn inside_a_pty_the_command_has_job_control_and_colours() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let pty = Pty::open(24, 80);
        let out = cordon_on_pty(mode)
            .args([
                "--",
                tool("/usr/bin/bash"),
                "--norc",
                "-ic",
                "echo flags=$-; sleep 0 & wait; ls --color=auto -d /usr",
            ])
            .run_on_pty(&pty, |_, _| {});
        out.assert_success();
        let flags = out.stdout.split("flags=").nth(1).unwrap_or_default().lines().next().unwrap_or_default();
        assert!(flags.contains('m'), "[{}] job control (set -m) is on: {out}", mode.as_str());
        assert!(!out.stdout.contains("no job control"), "[{}] {out}", mode.as_str());
        assert!(out.stdout.contains("\x1b["), "[{}] ls colours its output on a terminal: {out}", mode.as_str());
        // Control: with --no-tty, no terminal, no colours.
        let pty = Pty::open(24, 80);
        let out = cordon_on_pty(mode)
            .args(["--no-tty", "--", "ls", "--color=auto", "-d", "/usr"])
            .run_on_pty(&pty, |_, _| {});
        assert!(out.stdout.contains("/usr") && !out.stdout.contains("\x1b["), "[{}] {out}", mode.as_str());
    });
}

#[test]
fn ptys_inside_the_sandbox_work_and_come_from_its_own_devpts() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let script = tool("/usr/bin/script");
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        run_in(mode).args(["--", python, "-c", "import pty; pty.spawn('/bin/true')"]).run().assert_success();
        run_in(mode).args(["--", script, "-qc", "true", "/dev/null"]).run().assert_success();
        run_in(mode)
            .args(["--", script, "-qc", "echo inside a pty", "/dev/null"])
            .run()
            .assert_success()
            .assert_stdout_contains("inside a pty");
        // Its own instance: none of the host's ptys is there, and the
        // first one it opens is number 0.
        // Control: the host has a pty of its own while the probe runs (one
        // this test holds, so it does not depend on a terminal being there).
        let host_pty = Pty::open(24, 80);
        let out = run_in(mode)
            .args([
                "--",
                python,
                "-c",
                "import os; print(os.listdir('/dev/pts')); m, s = os.openpty(); print(os.ttyname(s))",
            ])
            .run();
        out.assert_success().assert_stdout_eq("['ptmx']\n/dev/pts/0\n");
        assert!(std::fs::read_dir("/dev/pts").unwrap().count() > 1, "[{m}] control: the host has ptys of its own");
        drop(host_pty);
    });
}

/// With `--no-tty` the command reads the caller's terminal line by line, as
/// typed, and `^D` is the end of its input; its output shows there. Host
/// side: none of its descriptors is the terminal (cordon relays pipes), so
/// it cannot change the terminal's mode or times or read it behind the
/// job's back (review s10 R4, s11 S2). Fails on 6831b6e (the command's fd
/// 0 and 1 were the caller's terminal).
#[test]
fn with_no_tty_the_callers_terminal_can_be_read_and_written() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let marker = unique_sleep_marker();
        let script = format!(
            ": {marker}; echo ready; read x; echo got $x >&2; while read -r l; do echo \"line:$l\"; done; echo eof-$((1+1))"
        );
        let pty = Pty::open(24, 80);
        let out = cordon_on_pty(mode).args(["--no-tty", "--", "sh", "-c", &script]).run_on_pty(&pty, |pty, _| {
            pty.type_after("ready", b"hello\n");
            pty.type_after("got hello", b"first\n");
            pty.expect("line:first");
            let (_, commands) = job_processes(&marker);
            assert_eq!(commands.len(), 1, "[{m}] {commands:?}");
            let device = format!("/dev/pts/{}", pty.device() & 0xff);
            for fd in 0..3 {
                let target = std::fs::read_link(format!("/proc/{}/fd/{fd}", commands[0])).unwrap();
                assert!(
                    target.to_string_lossy().starts_with("pipe:"),
                    "[{m}] the command's fd {fd} is {} (the caller's terminal is {device})",
                    target.display()
                );
            }
            pty.type_keys(b"second\n");
            pty.type_after("line:second", b"\x04");
        });
        out.assert_success();
        assert!(out.stdout.contains("eof-2"), "[{m}] ^D ends the input\n{out}");
    });
}

/// Tries to change the terminal on fds 0–2 and to reach it other ways;
/// prints one `name result` line per attempt (`ok` or the errno name).
const TERMINAL_ATTACKS: &str = r##"
import errno, fcntl, os, struct, termios
no_echo = struct.pack("<IIIIB19s", termios.ICRNL, termios.OPOST | termios.ONLCR,
                      termios.B38400 | termios.CS8 | termios.CREAD, termios.ISIG, 0,
                      bytes([3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22, 0, 0, 0]))
def attempt(name, f):
    try:
        f()
        result = "ok"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    os.write(2, b"%s %s\n" % (name.encode(), result.encode()))
for fd in (0, 1, 2):
    attempt("fd%d-TIOCSTI" % fd, lambda: fcntl.ioctl(fd, termios.TIOCSTI, b"#"))
    attempt("fd%d-TCSETS" % fd, lambda: fcntl.ioctl(fd, termios.TCSETS, no_echo))
    attempt("fd%d-TIOCSWINSZ" % fd, lambda: fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 1, 1, 0, 0)))
    attempt("fd%d-TIOCSPGRP" % fd, lambda: fcntl.ioctl(fd, termios.TIOCSPGRP, struct.pack("i", os.getpgrp())))
    attempt("fd%d-TIOCEXCL" % fd, lambda: fcntl.ioctl(fd, termios.TIOCEXCL))
    attempt("fd%d-TCFLSH" % fd, lambda: fcntl.ioctl(fd, termios.TCFLSH, termios.TCIFLUSH))
    attempt("fd%d-TCGETS" % fd, lambda: fcntl.ioctl(fd, termios.TCGETS, bytes(60)))
    attempt("fd%d-fchmod" % fd, lambda: os.fchmod(fd, 0o666))
    attempt("fd%d-futimens" % fd, lambda: os.utime(fd, (2000000000, 2000000000)))
def reopened(path):
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 2, 2, 0, 0))
attempt("dev-tty", lambda: reopened("/dev/tty"))
attempt("proc-self-fd", lambda: reopened("/proc/self/fd/0"))
attempt("proc-init-fd", lambda: reopened("/proc/1/fd/0"))
attempt("TIOCSCTTY", lambda: (os.setsid(), fcntl.ioctl(0, termios.TIOCSCTTY, 0)))
"##;

fn attack_results(transcript: &str) -> Vec<(String, String)> {
    transcript
        .lines()
        .filter_map(|l| l.trim_end().split_once(' '))
        .filter(|(name, _)| {
            name.starts_with("fd") || ["dev-tty", "proc-self-fd", "proc-init-fd", "TIOCSCTTY"].contains(name)
        })
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

#[test]
fn with_no_tty_the_sandbox_cannot_change_the_callers_terminal() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    // Control: a program holding the terminal changes it (modes, size,
    // exclusive mode, pushed input), and /dev/tty reaches it.
    let pty = Pty::open(24, 80);
    pty.set_mode(0o620);
    let out = on_pty(python).args(["-c", TERMINAL_ATTACKS]).run_on_pty(&pty, |_, _| {});
    let results = attack_results(&out.stdout);
    for name in ["fd0-TCSETS", "fd0-TIOCSWINSZ", "fd0-TIOCEXCL", "dev-tty", "fd0-fchmod", "fd0-futimens"] {
        assert!(results.contains(&(name.into(), "ok".into())), "control: {name}\n{out}");
    }
    assert!(!pty.modes().echoes() && pty.window_size().rows == 2 && pty.is_exclusive(), "control: {out}");
    assert_eq!(pty.mode(), 0o666, "control: fchmod changed the terminal's mode\n{out}");

    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let pty = Pty::open(24, 80);
        let (modes, size) = (pty.modes(), pty.window_size());
        pty.set_mode(0o620);
        let out =
            cordon_on_pty(mode).args(["--no-tty", "--", python, "-c", TERMINAL_ATTACKS]).run_on_pty(&pty, |_, _| {});
        out.assert_success();
        // Host side: nothing changed.
        assert_eq!(pty.modes(), modes, "[{m}] the terminal's modes\n{out}");
        assert_eq!(pty.window_size(), size, "[{m}] the terminal's size\n{out}");
        assert!(!pty.is_exclusive(), "[{m}] exclusive mode\n{out}");
        assert_eq!(pty.input_pending(), 0, "[{m}] input pushed into the terminal\n{out}");
        // Its file too (review s10 R4: fchmod through the descriptor,
        // which no Landlock rule or read-only mount covers; its times are
        // the terminal's own to change at every write).
        assert_eq!(pty.mode(), 0o620, "[{m}] the terminal's mode\n{out}");
        // And what the sandbox saw: seccomp refuses TIOCSTI first; its
        // fds 0-2 are pipes cordon relays, no terminal (also reopened
        // through /proc); /dev/tty, which would open cordon's controlling
        // terminal, is not granted; init's fds do not show.
        let results = attack_results(&out.stdout);
        assert_eq!(results.len(), 31, "[{m}] {out}");
        for (name, result) in &results {
            let expected = match name.as_str() {
                n if n.ends_with("TIOCSTI") => "EPERM",
                // On its own pipes.
                n if n.ends_with("fchmod") || n.ends_with("futimens") => "ok",
                n if n.starts_with("fd") => "ENOTTY",
                "dev-tty" => "EACCES",
                "proc-self-fd" => "ENOTTY",
                "proc-init-fd" => "ENOENT",
                _ => "ENOTTY", // TIOCSCTTY on fd 0, from a new session
            };
            assert_eq!(result, expected, "[{m}] {name}\n{out}");
        }
    });
}

/// An interactive shell with job control on its pty, as a user's is (bash,
/// no rc files), prompting `shell$ `. In POSIX mode, bash names the signal
/// that stopped a job (`Stopped(SIGTTIN)`); `-b` reports it at once.
fn job_shell() -> TestCommand {
    let mut cmd = on_pty(tool("/usr/bin/bash"));
    cmd.args(["--norc", "--noprofile", "--posix", "-b", "-i"]).env("PS1", "shell$ ");
    cmd
}

/// The state letter of a host process (`T`: stopped), `?` once it is gone.
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).unwrap_or('?')
}

/// The processes of a job started from [`job_shell`], found on the host by
/// `marker` in their arguments: cordon (its parent is the shell), and the
/// command's processes (those that do not run cordon's file: init is a
/// clone of cordon, and runs nothing of the command's).
fn job_processes(marker: &str) -> (Option<u32>, Vec<u32>) {
    let is_cordon = |p: u64| std::fs::canonicalize(format!("/proc/{p}/exe")).is_ok_and(|e| e == cordon_bin());
    let found = cordon_testkit::processes_mentioning(marker);
    let parent = |p: u32| std::fs::read_to_string(format!("/proc/{p}/stat")).ok().map(|_| host_ids(p)[0]);
    let cordon =
        found.iter().copied().find(|p| is_cordon(u64::from(*p)) && parent(*p).is_some_and(|pp| !is_cordon(pp)));
    let commands = found.into_iter().filter(|p| !is_cordon(u64::from(*p))).collect();
    (cordon, commands)
}

/// Waits until cordon and every process of the command are stopped (or,
/// with `false`, none is), and returns cordon's pid.
fn await_job_state(marker: &str, stopped: bool, pty: &Pty, what: &str) -> u32 {
    let mut job = (None, vec![]);
    let reached = poll_until(SHOWS, || {
        job = job_processes(marker);
        let states: Vec<char> = job.0.iter().chain(&job.1).map(|p| state(*p)).collect();
        job.0.is_some() && !job.1.is_empty() && states.iter().all(|s| (*s == 'T') == stopped)
    });
    let states: Vec<(u32, char)> = job.0.iter().chain(&job.1).map(|p| (*p, state(*p))).collect();
    assert!(
        reached,
        "{what}: cordon and the command's processes must {} (pid, state): {states:?}\n{}",
        if stopped { "stop" } else { "run again" },
        pty.transcript()
    );
    job.0.expect("found")
}

/// Waits until no process of the job is left.
fn await_job_end(marker: &str, pty: &Pty, what: &str) {
    let gone = poll_until(SHOWS, || cordon_testkit::processes_mentioning(marker).is_empty());
    assert!(gone, "{what}: the job never ended\n{}", pty.transcript());
}

/// Review s11 S2 (medium): `cordon run cmd > log &` from an interactive
/// shell, with stdin the terminal. The sandbox used to hold the terminal in
/// a session of its own, where job control does not reach, so it read what
/// the user typed next for the shell (a sudo password). The terminal is now
/// relayed by cordon from the job's own process group: the job stops at its
/// first read, as `cat > out &` does (`SIGTTIN`), the whole
/// job (host side: cordon and the command's processes in state T), the
/// line typed meanwhile goes to the shell and never reaches the command,
/// and after `fg` the next line does. Fails on 6831b6e: the job never
/// stops and the command prints the shell's line.
#[test]
fn a_background_run_that_reads_the_terminal_stops_and_takes_nothing_typed_for_the_shell() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let marker = unique_sleep_marker();
        let dir = cordon_testkit::Dir::new("terminal-bg-read");
        let out = dir.join("out");
        let line = format!(
            "{} run --mode {m} -- sh -c ': {marker}; read -r x; echo \"got:$x\"' > {} &\n",
            cordon_bin().display(),
            out.display()
        );
        let pty = Pty::open(24, 80);
        let outcome = job_shell().run_on_pty(&pty, |pty, _| {
            pty.type_after("shell$ ", line.as_bytes());
            let cordon = await_job_state(&marker, true, pty, &format!("[{m}] at its read in the background"));
            // The user goes on typing for the shell, which reads it.
            pty.type_keys(b"echo shell-read-$((6*7)) hunter2\n");
            pty.expect("shell-read-42 hunter2");
            pty.expect("Stopped(SIGTTIN)");
            assert_eq!(state(cordon), 'T', "[{m}] still stopped\n{}", pty.transcript());
            pty.type_keys(b"fg\n");
            await_job_state(&marker, false, pty, &format!("[{m}] after fg"));
            pty.type_keys(b"for-the-command\n");
            await_job_end(&marker, pty, &format!("[{m}] after its line"));
            pty.type_keys(b"exit\n");
        });
        outcome.assert_success();
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(got, "got:for-the-command\n", "[{m}] what the command read\n{}", pty.transcript());
    });
}

/// Ctrl-Z on a foreground run stops the whole job: cordon with `SIGTSTP`
/// (the shell sees that signal, not a `SIGSTOP`), and every process of
/// the run, even one that ignores `SIGTSTP` (a stopped cordon cannot
/// enforce the time limit, so nothing of the run may go on meanwhile).
/// `bg` continues it in the background, where its read of the terminal
/// stops it again (`SIGTTIN`); `fg` resumes it with the input
/// reaching the command. Host side: /proc states of cordon and the
/// command's processes. Fails on 6831b6e: the command ignores the SIGTSTP
/// cordon forwarded and runs on while cordon is stopped (and `bg` lets it
/// read the terminal).
#[test]
fn ctrl_z_stops_the_whole_run_and_bg_and_fg_resume_it_as_a_job() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let marker = unique_sleep_marker();
        let line = format!(
            "{} run --mode {m} --no-tty -- sh -c ': {marker}; trap \"\" TSTP; echo ready-$((2*3)); read -r x; echo \"got:$x\"'\n",
            cordon_bin().display(),
        );
        let pty = Pty::open(24, 80);
        let outcome = job_shell().run_on_pty(&pty, |pty, _| {
            pty.type_after("shell$ ", line.as_bytes());
            pty.type_after("ready-6", b"\x1a");
            await_job_state(&marker, true, pty, &format!("[{m}] after Ctrl-Z"));
            pty.expect("Stopped(SIGTSTP)");
            pty.type_keys(b"bg\n");
            pty.expect("Stopped(SIGTTIN)");
            await_job_state(&marker, true, pty, &format!("[{m}] reading in the background after bg"));
            pty.type_keys(b"fg\n");
            await_job_state(&marker, false, pty, &format!("[{m}] after fg"));
            pty.type_keys(b"typed-after-fg\n");
            pty.expect("got:typed-after-fg");
            await_job_end(&marker, pty, &format!("[{m}] after its line"));
            pty.type_keys(b"exit\n");
        });
        outcome.assert_success();
    });
}

/// `stty tostop`: a background job that writes the terminal stops with
/// `SIGTTOU` until `fg`, as it does without
/// cordon; the output shows only then. Fails on 6831b6e: the sandbox wrote
/// the terminal from a session of its own, where `TOSTOP` does not apply.
#[test]
fn under_tostop_a_background_run_stops_before_its_output_reaches_the_terminal() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let marker = unique_sleep_marker();
        let line = format!(
            "stty tostop; {} run --mode {m} -- sh -c ': {marker}; echo out-$((3*5))' < /dev/null &\n",
            cordon_bin().display(),
        );
        let pty = Pty::open(24, 80);
        let outcome = job_shell().run_on_pty(&pty, |pty, _| {
            pty.type_after("shell$ ", line.as_bytes());
            let stopped = poll_until(SHOWS, || job_processes(&marker).0.is_some_and(|c| state(c) == 'T'));
            assert!(stopped, "[{m}] cordon stops before its output\n{}", pty.transcript());
            pty.type_keys(b"echo shell-$((6*7))\n");
            pty.expect("shell-42");
            pty.expect("Stopped(SIGTTOU)");
            assert!(!pty.transcript().contains("out-15"), "[{m}] no output in the background\n{}", pty.transcript());
            pty.type_keys(b"fg\n");
            pty.expect("out-15");
            await_job_end(&marker, pty, &format!("[{m}] after fg"));
            pty.type_keys(b"stty -tostop; exit\n");
        });
        outcome.assert_success();
    });
}

/// Review s13 R13-1 (low): a terminal that stops taking output (XOFF:
/// Ctrl-S with `IXON`; a frozen ssh connection alike) used to hold cordon
/// in a blocking write of the command's output, where it enforced nothing:
/// the run outlived its deadline and SIGTERM. The terminal stays stopped
/// until the checks are made (then Ctrl-Q). Host side: with
/// `--timeout-ms`, every process of the run is gone at the deadline, and
/// cordon ends with 124 (TIMEOUT in the audit record) once its own message
/// is out, through the pipe relay (`--no-tty`) and the pty relay (`--tty`,
/// stdin not the terminal, so `IXON` stays on); without a deadline, SIGTERM
/// to cordon ends the run while the terminal is still stopped. Fails on
/// f3822c1: the command's processes are still there (cordon sits in its
/// write).
#[test]
fn a_terminal_that_stops_taking_output_holds_neither_the_deadline_nor_sigterm() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        for (relay, timeout) in [("--no-tty", true), ("--tty", true), ("--no-tty", false)] {
            let what = format!("[{m} {relay} {}]", if timeout { "deadline" } else { "SIGTERM" });
            let marker = unique_sleep_marker();
            let limit = if timeout { "--timeout-ms 3000" } else { "" };
            // More output than the pty, the relay and the command's pipe
            // hold, then the command waits for its sleep.
            let line = format!(
                "exec {} run --mode {m} {relay} {limit} -- sh -c \"sleep {marker} & head -c 600000 /dev/zero | tr '\\\\0' x; wait\" < /dev/null",
                cordon_bin().display()
            );
            let pty = Pty::open(24, 80);
            // XOFF before anything runs: the terminal takes no output.
            pty.type_keys(b"\x13");
            let outcome = on_pty(tool("/bin/sh")).args(["-c", &line]).run_on_pty(&pty, |pty, pid| {
                let started = poll_until(SHOWS, || !job_processes(&marker).1.is_empty());
                assert!(started, "{what} the command never started\n{}", pty.transcript());
                if !timeout {
                    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                }
                let run_over = poll_until(SHOWS, || job_processes(&marker).1.is_empty());
                let left = job_processes(&marker).1;
                // The terminal did stop: not all the output showed.
                let shown = pty.transcript().matches('x').count();
                // XON, so that a failed check does not leave cordon blocked.
                pty.type_keys(b"\x11");
                assert!(shown < 600_000, "{what} the terminal never stopped taking output (XOFF)");
                assert!(
                    run_over,
                    "{what} with the terminal stopped, the run must end: cordon {}, run processes left {left:?}\n{}",
                    state(pid),
                    pty.transcript()
                );
            });
            if timeout {
                outcome.assert_code(124);
                assert_eq!(outcome.audit[0]["outcome"], "TIMEOUT", "{what}\n{outcome}");
            }
        }
    });
}
