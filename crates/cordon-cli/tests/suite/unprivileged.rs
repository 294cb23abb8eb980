//! cordon run by an ordinary user. The suite runs as root in CI, so these
//! tests drop to `nobody` with `setpriv` (a developer running the suite as
//! an ordinary user exercises the same paths directly).

use std::os::unix::fs::PermissionsExt;

use cordon_testkit::{each_mode, kernel_support, require, sandbox_modes, Dir, Mode, TestCommand};

use super::{cordon_bin, tool};

const NOBODY: &str = "65534";

/// A copy of the binary that `nobody` may execute, and a command running it
/// as `nobody` (or as ourselves when we are not root).
struct AsUser {
    dir: Dir,
}

impl AsUser {
    fn new() -> Self {
        let dir = Dir::new("unpriv");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // Copied by `cp`, not in this process: a sibling test forking while
        // our write descriptor is open would hold it until its exec, and
        // executing the copy meanwhile fails with ETXTBSY.
        let copied = std::process::Command::new(tool("/bin/cp")).arg(cordon_bin()).arg(dir.join("cordon")).status();
        assert!(copied.is_ok_and(|s| s.success()), "cannot copy the cordon binary");
        std::fs::set_permissions(dir.join("cordon"), std::fs::Permissions::from_mode(0o755)).unwrap();
        AsUser { dir }
    }

    fn run(&self, mode: Mode, args: &[&str]) -> cordon_testkit::Outcome {
        let bin = self.dir.join("cordon");
        let mut cmd = if kernel_support().root {
            let mut c = TestCommand::new(tool("/usr/bin/setpriv"));
            c.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"]).arg(&bin);
            c
        } else {
            TestCommand::new(&bin)
        };
        cmd.args(["run", "--mode", mode.as_str()]).args(args);
        cmd.command().current_dir(self.dir.path());
        cmd.run()
    }
}

#[test]
fn an_ordinary_user_gets_the_same_sandbox() {
    let support = kernel_support();
    require!(support.user_namespaces.is_available(), "user namespaces for unprivileged users");
    let user = AsUser::new();
    let secret = Dir::new("unpriv-secret");
    std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = secret.create("note", "top secret\n");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = file.to_str().unwrap();
    let expect_uid = if support.root {
        NOBODY.to_owned()
    } else {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid().to_string()
    };
    each_mode(sandbox_modes!(support), |mode| {
        let out = user.run(mode, &["--", "sh", "-c", "id -u; echo hi > \"$TMPDIR/x\" && cat \"$TMPDIR/x\""]);
        out.assert_success().assert_stdout_eq(&format!("{expect_uid}\nhi\n"));
        // Control: with the grant, the (world-readable) file is readable.
        let dir = secret.path().to_str().unwrap();
        user.run(mode, &["--read", dir, "--", "cat", file]).assert_success().assert_stdout_eq("top secret\n");
        // Without it, the sandbox refuses although the file mode would allow it.
        let denied = if mode == Mode::Container { "No such file or directory" } else { "Permission denied" };
        user.run(mode, &["--", "cat", file]).assert_code(1).assert_stderr_contains(denied);
        // No capabilities, here either.
        user.run(mode, &["--", "grep", "CapEff", "/proc/self/status"])
            .assert_success()
            .assert_stdout_contains("0000000000000000");
    });
}

#[test]
fn an_ordinary_user_gets_rlimit_quotas_where_no_cgroup_is_delegated() {
    let support = kernel_support();
    require!(support.user_namespaces.is_available(), "user namespaces for unprivileged users");
    require!(support.root, "root, to drop to an ordinary user without delegated cgroups");
    let user = AsUser::new();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        // The ledger names the fallback mechanisms.
        let out = user.run(mode, &["--json", "--pids", "8", "--memory-mb", "64", "--", "true"]);
        let text = out.stdout.clone();
        assert!(text.contains("RLIMIT_NPROC") && text.contains("RLIMIT_DATA"), "[{}] {text}", mode.as_str());
        // pids: forks beyond the limit fail inside the run's user namespace.
        let forks = "for i in $(seq 20); do sleep 1 & done; wait; echo done";
        user.run(mode, &["--", "sh", "-c", forks]).assert_success().assert_stdout_eq("done\n");
        user.run(mode, &["--pids", "8", "--", "sh", "-c", forks]).assert_code(2).assert_stderr_contains("Cannot fork");
        // memory: the allocation fails (RLIMIT_DATA), control without the limit succeeds.
        let alloc = "bytearray(256 << 20); print('allocated')";
        user.run(mode, &["--", python, "-c", alloc]).assert_success().assert_stdout_eq("allocated\n");
        user.run(mode, &["--memory-mb", "64", "--", python, "-c", alloc])
            .assert_code(1)
            .assert_stderr_contains("MemoryError");
    });
}

/// Issue #9 for an ordinary user: its own file outside the grants keeps its
/// mode (the read-only mounts hold in its user namespace too, where the
/// inherited mounts are locked), and under an exec list no memfd or
/// `O_TMPFILE` program runs (the pid-namespace sysctl is root's to set, so
/// seccomp requires `MFD_NOEXEC_SEAL` instead).
#[test]
fn an_ordinary_user_cannot_change_its_files_outside_the_grants_or_run_memfds() {
    use std::os::unix::fs::MetadataExt;
    let support = kernel_support();
    require!(support.user_namespaces.is_available(), "user namespaces for unprivileged users");
    let user = AsUser::new();
    let python = tool("/usr/bin/python3");
    let dir = Dir::new("unpriv-meta");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.create("mine", "mine\n");
    if support.root {
        std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    }
    let (d, f) = (dir.path().to_str().unwrap(), file.to_str().unwrap());
    let mode_of = || std::fs::metadata(&file).unwrap().mode() & 0o777;
    each_mode(sandbox_modes!(support), |mode| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        user.run(mode, &["--read", d, "--", "chmod", "600", f])
            .assert_code(1)
            .assert_stderr_contains("Read-only file system");
        assert_eq!(mode_of(), 0o644, "[{}] the user's file changed outside the grants", mode.as_str());
        // Control: where writing is granted, the owner may chmod.
        user.run(mode, &["--write", d, "--", "chmod", "600", f]).assert_success();
        assert_eq!(mode_of(), 0o600, "[{}] control", mode.as_str());

        let free = user.run(mode, &["--", python, "-c", super::hardening::FD_EXEC_PROBE]);
        assert_eq!(free.stdout.lines().filter(|l| l.parse::<u32>().is_ok()).count(), 4, "control\n{free}");
        let listed = user.run(mode, &["--exec", python, "--", python, "-c", super::hardening::FD_EXEC_PROBE]);
        listed.assert_success();
        for route in ["memfd EACCES", "memfd-exec EACCES", "o-tmpfile EACCES", "execv-unlisted EACCES"] {
            listed.assert_stdout_contains(route);
        }
    });
}
