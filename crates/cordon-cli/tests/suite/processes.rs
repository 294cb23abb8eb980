//! Processes: no view of or power over host processes, and nothing the
//! command starts outlives the run, even when cordon itself is SIGKILLed.

use std::time::Duration;

use cordon_testkit::{
    each_mode, kernel_support, poll_until, processes_mentioning, processes_with_argv, sandbox_modes, Mode, TestCommand,
};

use super::{run_in, unique_sleep_marker};

#[test]
fn host_processes_cannot_be_signalled() {
    let support = kernel_support();
    let me = std::process::id().to_string();
    // Control: without a sandbox, the probe reaches the test process.
    run_in(Mode::Dev).args(["--", "kill", "-0", &me]).run().assert_success();
    each_mode(sandbox_modes!(support), |mode| {
        // Control: the command may signal itself.
        run_in(mode).args(["--", "sh", "-c", "kill -0 $$ && echo alive"]).run().assert_stdout_eq("alive\n");
        // The host pid does not exist in the sandbox's pid namespace.
        run_in(mode)
            .args(["--", "sh", "-c", &format!("kill -0 {me}")])
            .run()
            .assert_code(1)
            .assert_stderr_contains("kill: No such process");
    });
}

#[test]
fn host_process_details_are_not_readable() {
    let support = kernel_support();
    let cmdline = format!("/proc/{}/cmdline", std::process::id());
    // Control: without a sandbox, the probe reads the test process's argv.
    run_in(Mode::Dev).args(["--", "head", "-c", "1", &cmdline]).run().assert_success();
    each_mode(sandbox_modes!(support), |mode| {
        // Control: the command's own /proc entry is readable.
        run_in(mode).args(["--", "head", "-c", "4", "/proc/self/cmdline"]).run().assert_stdout_eq("head");
        // Both modes mount the run's own /proc: host pids do not exist there.
        run_in(mode)
            .args(["--", "head", "-c", "1", &cmdline])
            .run()
            .assert_code(1)
            .assert_stderr_contains(&format!("{cmdline}' for reading: No such file or directory"));
        // Init (pid 1, a fork of cordon) is hidden too: its argv is cordon's.
        run_in(mode)
            .args(["--", "cat", "/proc/1/cmdline"])
            .run()
            .assert_code(1)
            .assert_stderr_contains("No such file or directory");
    });
}

/// A shell line that leaves `sleep <marker>` behind as an orphan in a new
/// session: its parent exits at once, and it no longer shares the caller's
/// session or process group.
fn orphan_script(marker: &str) -> String {
    format!(r#"setsid sh -c 'sleep {marker} >/dev/null 2>&1 & echo started'"#)
}

#[test]
fn orphaned_descendant_is_gone_when_cordon_returns() {
    let support = kernel_support();
    // Control: without cordon, the same script leaves the orphan running.
    let marker = unique_sleep_marker();
    TestCommand::new("sh").args(["-c", &orphan_script(&marker)]).run().assert_stdout_eq("started\n");
    let survived = poll_until(Duration::from_secs(5), || processes_with_argv(&["sleep", &marker]).len() == 1);
    kill_leftovers(&marker);
    assert!(survived, "control: the orphan `sleep {marker}` should survive its parent");

    each_mode(sandbox_modes!(support), |mode| {
        let marker = unique_sleep_marker();
        run_in(mode).args(["--", "sh", "-c", &orphan_script(&marker)]).run().assert_stdout_eq("started\n");
        // The orphan may not have exec'd `sleep` yet when its parent returns,
        // so look for any process mentioning the marker. Killed but not yet
        // dead is a legitimate instant; give it a second.
        poll_until(Duration::from_secs(1), || processes_mentioning(&marker).is_empty());
        let leftovers = kill_leftovers(&marker);
        assert!(leftovers.is_empty(), "[{}] `sleep {marker}` outlived the run: pids {leftovers:?}", mode.as_str());
    });
}

#[test]
fn descendants_die_when_cordon_is_sigkilled() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let marker = unique_sleep_marker();
        let script = format!("{}; exec sleep {marker}", orphan_script(&marker));
        let mut cordon = run_in(mode).args(["--", "sh", "-c", &script]).spawn_without_output();
        let both_running = poll_until(Duration::from_secs(20), || processes_with_argv(&["sleep", &marker]).len() == 2);
        if !both_running {
            let _ = cordon.kill();
            let _ = cordon.wait();
            kill_leftovers(&marker);
            panic!("[{}] the command never started both `sleep {marker}` processes", mode.as_str());
        }

        cordon.kill().expect("SIGKILL cordon"); // std sends SIGKILL to this pid only
        cordon.wait().expect("reap cordon");
        poll_until(Duration::from_secs(2), || processes_mentioning(&marker).is_empty());
        let leftovers = kill_leftovers(&marker);
        assert!(
            leftovers.is_empty(),
            "[{}] after SIGKILL of cordon, `sleep {marker}` still ran: pids {leftovers:?}",
            mode.as_str()
        );
    });
}

/// Kills (SIGKILL, by pid) the processes this test started that mention
/// `marker`, and returns their pids, so a failing test leaves nothing behind.
fn kill_leftovers(marker: &str) -> Vec<u32> {
    let pids = processes_mentioning(marker);
    for pid in &pids {
        TestCommand::new("kill").args(["-KILL", &pid.to_string()]).run();
    }
    pids
}
