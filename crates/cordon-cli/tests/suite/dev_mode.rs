//! Dev mode: no isolation, and a warning on every run.

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Mode};
use serde_json::Value;

use super::run_in;

fn warnings(result: &Value) -> Vec<String> {
    result["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn dev_mode_warns_on_stderr_and_in_the_result() {
    let support = kernel_support();
    run_in(Mode::Dev).args(["--", "true"]).run().assert_success().assert_stderr_contains("warning: dev mode");

    let out = run_in(Mode::Dev).args(["--json", "--", "true"]).run();
    out.assert_success().assert_stderr_contains("warning: dev mode");
    let w = warnings(&out.json());
    assert!(w.iter().any(|w| w.contains("dev mode")), "warnings {w:?}\n{out}");

    // Control: sandboxed modes carry no such warning.
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--json", "--", "true"]).run();
        out.assert_success().assert_stderr_lacks("dev mode");
        let w = warnings(&out.json());
        assert!(!w.iter().any(|w| w.contains("dev mode")), "[{}] {w:?}\n{out}", mode.as_str());
    });
}
