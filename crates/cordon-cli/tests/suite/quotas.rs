//! Quotas: wall clock, memory, pids, CPU, file size and captured output.
//! Each limit is checked against the same command run without it.

use cordon_testkit::{each_mode, kernel_support, require, sandbox_modes, Dir};
use serde_json::Value;

use super::{run_in, tool};

fn error_code(result: &Value) -> &str {
    result["error"]["code"].as_str().unwrap_or("<none>")
}

#[test]
fn timeout_ends_the_run_with_124() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        // Control: without a timeout, the same sleep completes.
        run_in(mode).args(["--json", "--", "sleep", "1"]).run().assert_success();

        let out = run_in(mode).args(["--json", "--timeout-ms", "300", "--", "sleep", "1"]).run();
        out.assert_code(124);
        let result = out.json();
        assert_eq!(error_code(&result), "TIMEOUT", "[{}]\n{out}", mode.as_str());
        assert_eq!(result["ok"], false, "{out}");
    });
}

/// Allocates and touches 512 MiB.
const ALLOCATE_512_MIB: &str = "b = b'x' * (512 << 20); print(len(b) >> 20)";

#[test]
fn memory_limit_kills_with_137() {
    let support = kernel_support();
    require!(support.cgroups.memory.is_some(), "a memory cgroup controller usable below cordon's cgroup");
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        // Control: without the limit, the allocation succeeds.
        run_in(mode).args(["--", python, "-c", ALLOCATE_512_MIB]).run().assert_stdout_eq("512\n");

        let out = run_in(mode).args(["--json", "--memory-mb", "64", "--", python, "-c", ALLOCATE_512_MIB]).run();
        out.assert_code(137);
        let result = out.json();
        assert_eq!(error_code(&result), "MEMORY_LIMIT", "[{}]\n{out}", mode.as_str());
        assert_eq!(result["exit"], serde_json::json!({"signal": 9}), "{out}");
    });
}

const FORK_100: &str = "for i in $(seq 100); do sleep 1 & done; wait";

#[test]
fn pids_limit_stops_a_fork_loop() {
    let support = kernel_support();
    require!(support.cgroups.pids.is_some(), "a pids cgroup controller usable below cordon's cgroup");
    each_mode(sandbox_modes!(support), |mode| {
        // Control: without the limit, 100 children start fine.
        run_in(mode).args(["--json", "--", "sh", "-c", FORK_100]).run().assert_success();

        let out = run_in(mode).args(["--json", "--pids", "20", "--", "sh", "-c", FORK_100]).run();
        let result = out.json();
        assert_eq!(error_code(&result), "PIDS_LIMIT", "[{}]\n{out}", mode.as_str());
        assert_eq!(result["ok"], false, "{out}");
        assert_ne!(out.code(), Some(0), "{out}");
    });
}

const BUSY_LOOP: &str = "while True: pass";

#[test]
fn cpu_limit_kills_a_busy_loop() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        // Control: without a CPU limit, only the wall clock stops the loop.
        let control = run_in(mode).args(["--json", "--timeout-ms", "1500", "--", python, "-c", BUSY_LOOP]).run();
        assert_eq!(error_code(&control.json()), "TIMEOUT", "[{}] control\n{control}", mode.as_str());

        let out = run_in(mode)
            .args(["--json", "--cpu-ms", "300", "--timeout-ms", "60000", "--", python, "-c", BUSY_LOOP])
            .run();
        let result = out.json();
        assert_eq!(error_code(&result), "CPU_LIMIT", "[{}]\n{out}", mode.as_str());
        let signal = result["exit"]["signal"].as_i64().unwrap_or_else(|| panic!("exit is not a signal\n{out}"));
        out.assert_code(128 + i32::try_from(signal).expect("small signal number"));
    });
}

#[test]
fn cpu_limit_result_reports_the_cpu_time_used() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode)
            .args(["--json", "--cpu-ms", "300", "--timeout-ms", "60000", "--", python, "-c", BUSY_LOOP])
            .run();
        let result = out.json();
        assert_eq!(error_code(&result), "CPU_LIMIT", "[{}]\n{out}", mode.as_str());
        let used = result["metrics"]["cpu_user_ms"].as_f64().unwrap_or(0.0)
            + result["metrics"]["cpu_sys_ms"].as_f64().unwrap_or(0.0);
        // Generous: the limit fired, so at least half of it was used.
        assert!(used >= 150.0, "[{}] CPU_LIMIT at 300 ms, but metrics report {used} ms of CPU\n{out}", mode.as_str());
    });
}

/// A child burns 0.4 s of CPU; its parent either waits for it (`wait`) or
/// ignores SIGCHLD (`ignore`), so the kernel reaps it automatically and
/// `wait4`'s usage never sees its CPU.
const CHILD_BURNS_CPU: &str = r#"
import os, signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    t = time.process_time()
    while time.process_time() - t < 0.4:
        pass
    os._exit(0)
if sys.argv[1] == "wait":
    os.waitpid(pid, 0)
else:
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.01)
"#;

#[test]
fn cpu_of_a_child_reaped_automatically_is_reported_under_a_cpu_quota() {
    let support = kernel_support();
    require!(support.cgroups.cpuacct.is_some(), "a CPU accounting cgroup usable below cordon's cgroup");
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        for how in ["wait", "ignore"] {
            let out = run_in(mode)
                .args([
                    "--json",
                    "--cpu-ms",
                    "20000",
                    "--timeout-ms",
                    "60000",
                    "--",
                    python,
                    "-c",
                    CHILD_BURNS_CPU,
                    how,
                ])
                .run();
            out.assert_success();
            let result = out.json();
            let used = result["metrics"]["cpu_user_ms"].as_f64().unwrap_or(0.0)
                + result["metrics"]["cpu_sys_ms"].as_f64().unwrap_or(0.0);
            // `wait` is the control: wait4's usage has the child's 400 ms.
            assert!(
                used >= 350.0,
                "[{}] {how}: a child burned 400 ms of CPU, the result reports {used} ms\n{out}",
                mode.as_str()
            );
        }
    });
}

#[test]
fn file_size_limit_stops_a_large_write() {
    let support = kernel_support();
    let dir = Dir::new("quota-fsize");
    each_mode(sandbox_modes!(support), |mode| {
        let file = dir.join(format!("{}.bin", mode.as_str()));
        let dd = format!("of={}", file.display());
        // Control: without the limit, 4 MiB are written.
        run_in(mode)
            .arg("--write")
            .arg(dir.path())
            .args(["--", "dd", "if=/dev/zero", &dd, "bs=1M", "count=4"])
            .run()
            .assert_success();
        assert_eq!(std::fs::metadata(&file).expect("control file").len(), 4 << 20);

        // SIGXFSZ (25) ends dd at the 1 MiB boundary.
        run_in(mode)
            .arg("--write")
            .arg(dir.path())
            .args(["--file-size-mb", "1", "--", "dd", "if=/dev/zero", &dd, "bs=1M", "count=4"])
            .run()
            .assert_code(128 + 25);
        assert_eq!(std::fs::metadata(&file).expect("limited file").len(), 1 << 20, "[{}]", mode.as_str());
    });
}

#[test]
fn output_limit_stops_a_flood_and_counts_dropped_bytes() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        // Control: output under the limit is kept whole.
        let small =
            run_in(mode).args(["--json", "--output-bytes", "1000", "--", "sh", "-c", "yes | head -n 100"]).run();
        small.assert_success();
        let result = small.json();
        assert_eq!(result["logs"]["dropped_bytes"], 0, "{small}");
        assert_eq!(result["logs"]["lines"].as_array().map(Vec::len), Some(100), "{small}");

        let out = run_in(mode).args(["--json", "--output-bytes", "1000", "--", "yes"]).run();
        let result = out.json();
        assert_eq!(error_code(&result), "OUTPUT_LIMIT", "[{}]\n{out}", mode.as_str());
        assert!(result["logs"]["dropped_bytes"].as_u64().unwrap_or(0) > 0, "[{}] dropped_bytes\n{out}", mode.as_str());
        let kept: usize = result["logs"]["lines"]
            .as_array()
            .expect("logs.lines")
            .iter()
            .map(|l| l["text"].as_str().map_or(0, str::len) + 1)
            .sum();
        assert!(kept <= 1000, "[{}] kept {kept} bytes over a 1000-byte limit\n{out}", mode.as_str());
    });
}
