//! What `cordon` costs to start (issue 12), where a test can see it: the
//! shared libraries the loader maps.

use cordon_testkit::Mode;

use super::run_in;

/// The shared libraries the dynamic loader maps for a whole dev-mode run
/// (its `LD_DEBUG=files` lines: start-up and anything opened later), and
/// nothing of the command's (dev mode does not pass `LD_DEBUG` on).
fn libraries_loaded_by_a_run() -> Vec<String> {
    let out = run_in(Mode::Dev).env("LD_DEBUG", "files").args(["--", "true"]).run();
    out.assert_success();
    let mut libs: Vec<String> = out
        .stderr
        .lines()
        .filter_map(|l| l.split_once("file=").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split([' ', ';']).next())
        .map(str::to_owned)
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

/// `libgcc_s.so.1` is not loaded, at start or later (the unwinder is
/// linked in statically, see cordon-cli's build.rs): it would cost every
/// start a library to map and relocate, and its `cpuid` constructor.
#[test]
fn a_run_does_not_load_libgcc_s() {
    let libs = libraries_loaded_by_a_run();
    // Control: the loader's report is read (libc is always there).
    assert!(libs.iter().any(|l| l == "libc.so.6"), "no libc.so.6 among {libs:?}");
    assert!(!libs.iter().any(|l| l.starts_with("libgcc_s")), "libgcc_s is loaded: {libs:?}");
}
