//! Inherited file descriptors: only stdin, stdout and stderr reach the command.

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Outcome, TestCommand};

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
