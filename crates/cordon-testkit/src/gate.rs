//! The kernel-feature gate: `require!`, `sandbox_modes!` and what they call.

use std::io::Write;

use cordon::{KernelSupport, Mode, Plan, Policy};

/// Skips the current test, or fails it in CI, unless `cond` holds.
///
/// `cond` must be computed from [`kernel_support`](crate::kernel_support)
/// (`cordon::KernelSupport::detect()`), never from the user id or from `PATH`.
/// The remaining arguments are a `format!` string saying what is required.
///
/// ```no_run
/// let support = cordon_testkit::kernel_support();
/// cordon_testkit::require!(support.cgroups.memory.is_some(), "a usable memory cgroup controller");
/// ```
#[macro_export]
macro_rules! require {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            $crate::report_unmet_requirement(&$crate::test_name!(), &::std::format!($($reason)+));
            return;
        }
    };
}

/// The sandboxing modes (`process`, `container`) this host supports, each
/// gated like [`require!`]: a mode the kernel cannot run is reported as a
/// `SKIP <test> [mode]` (or panics in CI) and left out of the list.
#[macro_export]
macro_rules! sandbox_modes {
    ($support:expr) => {
        $crate::sandbox_modes_for(&$crate::test_name!(), &$support)
    };
}

/// The path of the enclosing test function, without the test binary's crate
/// name, e.g. `suite::fs::write_grant_allows_writes`.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn here() {}
        $crate::short_test_name(::std::any::type_name_of_val(&here))
    }};
}

/// Turns the type name of a function nested in a test into the test's name:
/// drops the crate name, the helper's own name and closure segments.
pub fn short_test_name(full: &str) -> String {
    let segments: Vec<&str> = full.split("::").filter(|s| *s != "{{closure}}").collect();
    let without_helper = match segments.split_last() {
        Some((_, rest)) => rest,
        None => &segments[..],
    };
    let without_crate = without_helper.get(1..).unwrap_or(without_helper);
    without_crate.join("::")
}

/// Whether unmet kernel requirements fail instead of skipping: the `CI`
/// variable is set to anything other than `""`, `"0"` or `"false"`.
pub fn ci_requires_kernel_features() -> bool {
    ci_value_is_set(std::env::var_os("CI").as_deref().map(|v| v.to_string_lossy()).as_deref())
}

fn ci_value_is_set(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// Panics with `kernel feature required in CI: ...` in CI; elsewhere writes
/// `SKIP <test>: <reason>` to the real stderr, which libtest does not
/// capture, so the skip shows up in every run's output.
pub fn report_unmet_requirement(test: &str, reason: &str) {
    if ci_requires_kernel_features() {
        panic!("kernel feature required in CI: {reason} (test {test})");
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!!! SKIP {test}: {reason} (this host's kernel cannot run it; with CI=1 this test fails) !!!!"
    );
}

/// Probes the running kernel, the same probe `cordon doctor` prints.
///
/// # Panics
///
/// When the probe fails: a probe error means a broken host, not an
/// unsupported feature, so the test fails rather than skips.
pub fn kernel_support() -> KernelSupport {
    match KernelSupport::detect() {
        Ok(support) => support,
        Err(e) => {
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            panic!("kernel probe failed: {e}{cause}");
        }
    }
}

/// Why this kernel cannot run `mode` with the default policy, or `None` when
/// it can. Decided by cordon's own pure `Plan::build` from `support`, so the
/// gate and cordon agree on what each mode needs.
pub fn mode_unavailable_reason(mode: Mode, support: &KernelSupport) -> Option<String> {
    match Plan::build(&Policy::default(), mode, support) {
        Ok(_) => None,
        Err(e) => Some(format!("--mode {} is unavailable on this kernel: {e}", mode.as_str())),
    }
}

/// The function behind [`sandbox_modes!`].
pub fn sandbox_modes_for(test: &str, support: &KernelSupport) -> Vec<Mode> {
    [Mode::Process, Mode::Container]
        .into_iter()
        .filter(|&mode| match mode_unavailable_reason(mode, support) {
            None => true,
            Some(reason) => {
                report_unmet_requirement(&format!("{test} [{}]", mode.as_str()), &reason);
                false
            }
        })
        .collect()
}

/// Runs `check` once per mode and reports every mode that failed, not just
/// the first: each failure's panic message is printed as it happens, and
/// the test then fails naming all failed modes.
pub fn each_mode(modes: Vec<Mode>, check: impl Fn(Mode)) {
    let failed: Vec<&str> = modes
        .into_iter()
        .filter(|&mode| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(mode))).is_err())
        .map(Mode::as_str)
        .collect();
    assert!(failed.is_empty(), "failed in mode(s) {failed:?}; each failure is printed above");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_name_drops_crate_helper_and_closures() {
        assert_eq!(short_test_name("all::suite::fs::reads::here"), "suite::fs::reads");
        assert_eq!(short_test_name("all::suite::fs::reads::{{closure}}::here"), "suite::fs::reads");
    }

    #[test]
    fn ci_is_set_unless_empty_zero_or_false() {
        for unset in [None, Some(""), Some("0"), Some("false"), Some("FALSE")] {
            assert!(!ci_value_is_set(unset), "{unset:?}");
        }
        for set in [Some("1"), Some("true"), Some("yes")] {
            assert!(ci_value_is_set(set), "{set:?}");
        }
    }

    #[test]
    fn test_name_macro_names_the_enclosing_function() {
        assert_eq!(crate::test_name!(), "gate::tests::test_name_macro_names_the_enclosing_function");
    }
}
