//! Helpers shared by the CLI suite, and its modules (one per policy area).
//!
//! Conventions: every denial has a control that runs the same probe with the
//! restriction lifted (a grant added, the flag left out, dev mode, or no
//! sandbox at all) and sees it succeed; then the probe runs under the policy
//! and the test asserts the exact error the kernel gives there. Sandbox tests
//! run in `each_mode(sandbox_modes!(support), |mode| ...)`: `process` and
//! `container`, each reported on its own.

mod attacker;
mod audit;
mod capabilities;
mod check;
mod defaults;
mod dev_mode;
mod docs;
mod egress;
mod env;
mod escape;
mod exit_codes;
mod fds;
mod fs;
mod hardening;
mod json;
mod messages;
mod net_proxy;
mod netns;
mod network;
mod park;
mod plugins;
mod policy_file;
mod processes;
mod quotas;
mod real_programs;
mod registry;
mod schemas;
mod seccomp;
mod serve;
mod startup;
mod state;
mod terminal;
mod unprivileged;

use std::path::Path;

use cordon_testkit::{Mode, TestCommand};

/// The `cordon` binary cargo built for this test run.
pub fn cordon_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cordon"))
}

/// `cordon` with no arguments yet.
pub fn cordon() -> TestCommand {
    TestCommand::new(cordon_bin())
}

/// `cordon run --mode <mode>`; add flags, then `--` and the command.
pub fn run_in(mode: Mode) -> TestCommand {
    let mut cmd = cordon();
    cmd.args(["run", "--mode", mode.as_str()]);
    cmd
}

/// The message for a path that no grant covers. Container mode does not
/// mount it at all; process mode sees it and Landlock refuses access.
pub fn not_granted_error(mode: Mode) -> &'static str {
    match mode {
        Mode::Container => "No such file or directory",
        _ => "Permission denied",
    }
}

/// The message for a write under a read-only grant, or anywhere outside
/// the write grants: container mode binds the tree read-only, and process
/// mode makes every inherited mount read-only (Landlock alone cannot stop
/// metadata changes), so both refuse before any Landlock check.
pub const READ_ONLY_ERROR: &str = "Read-only file system";

/// A program the suite runs, by absolute path. Tools are part of the test
/// machine, not kernel features, so a missing one fails the test.
#[track_caller]
pub fn tool(path: &'static str) -> &'static str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing on this test machine; `.ci/run` must install it (tools are never a reason to skip)"
    );
    path
}

/// A sleep duration that doubles as a unique argv marker, so tests can find
/// exactly their own processes in `/proc/*/cmdline`. Under 32 seconds, so
/// nothing outlives a failed test by long.
pub fn unique_sleep_marker() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("31.{:07}{:03}", std::process::id() % 10_000_000, n % 1000)
}

/// A Python program that calls `syscall(2)` with its arguments (integers,
/// or `buf` for a pointer to 512 zeroed bytes) and prints `ok` or the errno
/// name, e.g. `EPERM`.
pub const SYSCALL_PROBE: &str = r#"
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buf = ctypes.create_string_buffer(512)
args = [ctypes.c_void_p(ctypes.addressof(buf)) if a == "buf" else ctypes.c_long(int(a, 0)) for a in sys.argv[1:]]
r = libc.syscall(*args)
print("ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), "errno %d" % ctypes.get_errno()))
"#;
