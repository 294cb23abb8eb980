//! Inherited file descriptors: only stdin, stdout and stderr reach the command.

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Mode, Outcome, TestCommand};

use super::cordon_bin;

/// Opens fds 5 and 6 without `O_CLOEXEC` (a shell redirection), then execs
/// `argv`, so whatever `argv` starts inherits them.
fn with_extra_fds(argv: &[&str]) -> Outcome {
    TestCommand::new("/bin/sh").args(["-c", r#"exec 5</etc/hostname 6>>/dev/null; exec "$@""#, "sh"]).args(argv).run()
}

fn fd_numbers(out: &Outcome) -> Vec<u32> {
    out.assert_success();
    let mut fds: Vec<u32> =
        out.stdout.split_whitespace().map(|f| f.parse().unwrap_or_else(|_| panic!("not an fd: {f}\n{out}"))).collect();
    fds.sort_unstable();
    fds
}

#[test]
fn only_standard_fds_are_inherited() {
    let support = kernel_support();
    // Control: without cordon in between, `ls` sees the extra fds.
    let control = fd_numbers(&with_extra_fds(&["ls", "/proc/self/fd"]));
    assert!(control.contains(&5) && control.contains(&6), "control did not inherit fds 5 and 6: {control:?}");

    let bin = cordon_bin().to_str().expect("utf-8 path");
    each_mode(sandbox_modes!(support), |mode| {
        let out = with_extra_fds(&[bin, "run", "--mode", mode.as_str(), "--", "ls", "/proc/self/fd"]);
        // 0, 1, 2, plus the directory fd `ls` opens to list /proc/self/fd.
        assert_eq!(fd_numbers(&out), [0, 1, 2, 3], "[{}]\n{out}", mode.as_str());
    });
}

/// Dev mode, then the sandboxed modes given.
fn with_dev(sandboxed: Vec<Mode>) -> Vec<Mode> {
    std::iter::once(Mode::Dev).chain(sandboxed).collect()
}

/// Whether cordon starts at Rust's runtime (musl) or at a C `main` (glibc:
/// `sys::runtime_init`), a standard descriptor that is closed when cordon starts is opened on
/// `/dev/null`, so nothing cordon opens later (the audit log, say) takes the
/// number: the `--json` result would be written into the audit log.
#[test]
fn a_closed_stdout_is_not_reused_for_what_cordon_opens() {
    let support = kernel_support();
    let bin = cordon_bin().to_str().expect("utf-8 path");
    // The line is computed, so the audit record's command line does not hold it.
    let probe = ["/bin/sh", "-c", "echo out-$((6 * 7))"];
    each_mode(with_dev(sandbox_modes!(support)), |mode| {
        // Control: with stdout open, the command's line arrives there.
        let mut open = TestCommand::new(bin);
        open.args(["run", "--mode", mode.as_str(), "--"]).args(probe);
        open.run().assert_success().assert_stdout_contains("out-42");

        let mut closed = TestCommand::new("/bin/sh");
        closed.args(["-c", r#"exec "$@" >&-"#, "sh", bin, "run", "--json", "--mode", mode.as_str(), "--"]).args(probe);
        let log = closed.audit_log().to_owned();
        let out = closed.run();
        out.assert_success();
        let records = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}\n{out}", log.display()));
        assert!(!records.contains("out-42"), "[{}] the result went into the audit log:\n{records}", mode.as_str());
        // One line, the run's record: not the `--json` result cordon prints.
        let lines: Vec<&str> = records.lines().collect();
        assert_eq!(lines.len(), 1, "[{}] audit log:\n{records}", mode.as_str());
        let record: serde_json::Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("[{}] audit line is not JSON ({e}): {records}", mode.as_str()));
        assert_eq!(record["seq"], 1, "[{}] not an audit record: {records}", mode.as_str());
    });
}

/// cordon ignores `SIGPIPE` for itself; the command gets the default action
/// back, even when cordon was started with it ignored.
#[test]
fn the_command_gets_the_default_sigpipe_action() {
    let support = kernel_support();
    let bin = cordon_bin().to_str().expect("utf-8 path");
    let ignored_pipe = |argv: &[&str]| -> bool {
        let out = TestCommand::new("/bin/sh").args(["-c", r#"trap "" PIPE; exec "$@""#, "sh"]).args(argv).run();
        out.assert_success();
        let mask = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no SigIgn line\n{out}"));
        mask & (1 << (SIGPIPE - 1)) != 0
    };
    // Control: the probe sees an ignored SIGPIPE.
    assert!(ignored_pipe(&["grep", "SigIgn", "/proc/self/status"]), "control: SIGPIPE not seen as ignored");
    each_mode(with_dev(sandbox_modes!(support)), |mode| {
        let argv = [bin, "run", "--mode", mode.as_str(), "--", "grep", "SigIgn", "/proc/self/status"];
        assert!(!ignored_pipe(&argv), "[{}] the command started with SIGPIPE ignored", mode.as_str());
    });
}

/// `SIGPIPE`'s number on Linux.
const SIGPIPE: u32 = 13;
