//! Capabilities: none at all inside the sandbox.

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Mode, Outcome};

use super::run_in;

const ZERO: &str = "0000000000000000";

/// The `Cap*` lines of `grep Cap /proc/self/status` as (name, hex) pairs.
fn caps(out: &Outcome) -> Vec<(String, String)> {
    out.assert_success();
    out.stdout
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn no_capabilities_in_any_set() {
    let support = kernel_support();
    // Control: outside a sandbox the probe sees a non-empty bounding set.
    let host = caps(&run_in(Mode::Dev).args(["--", "grep", "Cap", "/proc/self/status"]).run());
    assert!(host.iter().any(|(k, v)| k == "CapBnd" && v != ZERO), "control: host bounding set {host:?}");

    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--", "grep", "Cap", "/proc/self/status"]).run();
        let inside = caps(&out);
        for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"] {
            let value = inside.iter().find(|(k, _)| k == set).map(|(_, v)| v.as_str());
            assert_eq!(value, Some(ZERO), "[{}] {set}\n{out}", mode.as_str());
        }
    });
}
