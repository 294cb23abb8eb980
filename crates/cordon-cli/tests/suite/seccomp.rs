//! The seccomp filter: dangerous syscall families refused with EPERM,
//! unknown and new syscalls with ENOSYS, and `--deny-wx`.

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Mode};

use super::{run_in, tool, SYSCALL_PROBE};

/// Runs [`SYSCALL_PROBE`] with `args` and returns its one-line answer.
fn syscall(mode: Mode, args: &[&str]) -> String {
    let python = tool("/usr/bin/python3");
    let out = run_in(mode).args(["--", python, "-c", SYSCALL_PROBE]).args(args).run();
    out.assert_success();
    out.stdout.trim_end().to_owned()
}

const IO_URING_SETUP: &[&str] = &["425", "1", "buf"];
/// `ioctl(0, TIOCSTI, &c)` with garbage in the upper 32 bits of the
/// command, which the kernel ignores; a filter must not.
const TIOCSTI_64: &[&str] = &["16", "0", "0xffffffff00005412", "buf"];
const TIOCSTI: &[&str] = &["16", "0", "0x5412", "buf"];
const CLONE3: &[&str] = &["435", "0", "0"];
const GETPID: &[&str] = &["39"];
const X32_GETPID: &[&str] = &["0x40000027"];

#[test]
fn user_namespace_creation_is_refused() {
    let support = kernel_support();
    // Control: outside a sandbox the same command works.
    if support.user_namespaces.is_available() {
        run_in(Mode::Dev).args(["--", "unshare", "-U", "true"]).run().assert_success();
    }
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode)
            .args(["--", "unshare", "-U", "true"])
            .run()
            .assert_code(1)
            .assert_stderr_contains("unshare failed: Operation not permitted");
    });
}

#[test]
fn io_uring_setup_is_refused_with_eperm() {
    let support = kernel_support();
    assert_eq!(syscall(Mode::Dev, IO_URING_SETUP), "ok", "control: io_uring_setup outside a sandbox");
    each_mode(sandbox_modes!(support), |mode| {
        assert_eq!(syscall(mode, IO_URING_SETUP), "EPERM", "[{}]", mode.as_str());
    });
}

#[test]
fn tiocsti_is_refused_with_eperm_whatever_the_upper_bits() {
    let support = kernel_support();
    // Control: outside a sandbox the ioctl reaches the kernel, which answers
    // ENOTTY because stdin is /dev/null.
    assert_eq!(syscall(Mode::Dev, TIOCSTI_64), "ENOTTY", "control: 64-bit TIOCSTI outside a sandbox");
    each_mode(sandbox_modes!(support), |mode| {
        assert_eq!(syscall(mode, TIOCSTI), "EPERM", "[{}] TIOCSTI", mode.as_str());
        assert_eq!(syscall(mode, TIOCSTI_64), "EPERM", "[{}] TIOCSTI with upper bits set", mode.as_str());
    });
}

#[test]
fn clone3_fails_with_enosys() {
    let support = kernel_support();
    // Control: outside a sandbox the kernel itself rejects the NULL args.
    assert_eq!(syscall(Mode::Dev, CLONE3), "EINVAL", "control: clone3 outside a sandbox");
    each_mode(sandbox_modes!(support), |mode| {
        assert_eq!(syscall(mode, CLONE3), "ENOSYS", "[{}]", mode.as_str());
    });
}

#[test]
fn x32_syscall_numbers_fail_with_enosys() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        // Control: the same syscall under its x86_64 number is allowed.
        assert_eq!(syscall(mode, GETPID), "ok", "[{}] getpid", mode.as_str());
        assert_eq!(syscall(mode, X32_GETPID), "ENOSYS", "[{}] x32 getpid", mode.as_str());
    });
}

/// Maps one anonymous page writable and executable at once.
const WX_MMAP_PROBE: &str = r#"
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("mapped")
except OSError as e:
    print(e.strerror)
"#;

#[test]
fn deny_wx_refuses_writable_executable_memory() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        // Control: without the flag, W+X memory is allowed (JITs need it).
        run_in(mode).args(["--", python, "-c", WX_MMAP_PROBE]).run().assert_stdout_eq("mapped\n");
        run_in(mode)
            .args(["--deny-wx", "--", python, "-c", WX_MMAP_PROBE])
            .run()
            .assert_stdout_eq("Operation not permitted\n");
    });
}
