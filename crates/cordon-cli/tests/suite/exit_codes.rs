//! Exit status of `cordon run`: the command's own, 128+N for signal N, and
//! 124-127 for cordon's own outcomes (DESIGN.md, "CLI contract").

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Dir};
use serde_json::json;

use super::{cordon, run_in};

#[test]
fn command_exit_code_passes_through() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode).args(["--", "sh", "-c", "exit 7"]).run().assert_code(7);
        let out = run_in(mode).args(["--json", "--", "sh", "-c", "exit 7"]).run();
        out.assert_code(7);
        let result = out.json();
        assert_eq!(result["exit"], json!({"code": 7}), "{out}");
        assert_eq!(result["ok"], false, "{out}");
        assert_eq!(result["error"]["code"], "NONZERO_EXIT", "{out}");
    });
}

#[test]
fn killed_by_signal_is_128_plus_n() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--json", "--", "sh", "-c", "kill -9 $$"]).run();
        out.assert_code(137);
        assert_eq!(out.json()["exit"], json!({"signal": 9}), "{out}");
    });
}

#[test]
fn missing_command_is_127_not_found() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode)
            .args(["--", "cordon-test-no-such-command"])
            .run()
            .assert_code(127)
            .assert_stderr_contains("cordon-test-no-such-command");
        let out = run_in(mode).args(["--json", "--", "cordon-test-no-such-command"]).run();
        out.assert_code(127);
        assert_eq!(out.json()["error"]["code"], "NOT_FOUND", "{out}");
    });
}

#[test]
fn non_executable_file_is_126() {
    let support = kernel_support();
    let dir = Dir::new("exit-noexec");
    let script = dir.create("script.sh", "#!/bin/sh\necho ran\n");
    let runnable = dir.create_executable("runnable.sh", "#!/bin/sh\necho ran\n");
    each_mode(sandbox_modes!(support), |mode| {
        // Control: the same script with the execute bit runs.
        run_in(mode).arg("--read").arg(dir.path()).arg("--").arg(&runnable).run().assert_stdout_eq("ran\n");

        run_in(mode).arg("--read").arg(dir.path()).arg("--").arg(&script).run().assert_code(126);
        let out = run_in(mode).arg("--json").arg("--read").arg(dir.path()).arg("--").arg(&script).run();
        out.assert_code(126);
        assert_eq!(out.json()["error"]["code"], "NOT_EXECUTABLE", "{out}");
    });
}

#[test]
fn unknown_flag_is_125() {
    cordon()
        .args(["run", "--no-such-flag", "--", "true"])
        .run()
        .assert_code(125)
        .assert_stderr_contains("--no-such-flag");
}

#[test]
fn unknown_mode_is_125_naming_the_flag() {
    cordon()
        .args(["run", "--mode", "bogus", "--", "true"])
        .run()
        .assert_code(125)
        .assert_stderr_contains("--mode")
        .assert_stderr_contains("bogus");
}
