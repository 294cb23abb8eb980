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

/// The probe of `a_read_grant_gives_no_lease_and_no_dnotify`: tries a read
/// lease on argv[1] and dnotify on the folder argv[2], says `ready`, waits
/// for a line on stdin (the host has made a file in the folder by then),
/// and prints how many SIGIO it got.
const LEASE_DNOTIFY: &str = r#"
import fcntl, os, signal, sys
got = []
signal.signal(signal.SIGIO, lambda *a: got.append(1))
f = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.fcntl(f, fcntl.F_SETLEASE, fcntl.F_RDLCK); print("lease taken", flush=True)
except OSError as e:
    print("lease:", e.strerror, flush=True)
d = os.open(sys.argv[2], os.O_RDONLY)
try:
    fcntl.fcntl(d, fcntl.F_NOTIFY, fcntl.DN_CREATE | fcntl.DN_MULTISHOT); print("dnotify armed", flush=True)
except OSError as e:
    print("dnotify:", e.strerror, flush=True)
print("ready", flush=True)
sys.stdin.readline()
print("signals:", len(got), flush=True)
"#;

/// R12-6. With a read grant, `fcntl(F_SETLEASE)` on a file the sandbox's
/// uid owns held every host open-for-write of it until the sandbox let go
/// (up to 45 s each) and signalled the sandbox for each; `F_NOTIFY`
/// (dnotify) reported the host's changes in a granted folder. The filter
/// refuses both (`EPERM`). Host side: `/proc/locks` lists no lease on the
/// file while the sandbox holds it open (no timing involved), and the
/// file the host makes in the folder (after the sandbox said `ready`;
/// dnotify signals within the host's own create) reaches the sandbox as no
/// signal. Fails on 6831b6e (a LEASE line for the file, "signals: 1").
#[test]
fn a_read_grant_gives_no_lease_and_no_dnotify() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::MetadataExt;
    use std::process::Stdio;

    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let dir = cordon_testkit::Dir::new("lease");
    let file = dir.create("f", "data\n");
    let folder = dir.create_dir("d");
    let inode = std::fs::metadata(&file).unwrap().ino();
    let leases = || {
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        locks
            .lines()
            .filter(|l| {
                l.contains("LEASE")
                    && l.split_whitespace().any(|w| w.rsplit(':').next() == Some(inode.to_string().as_str()))
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let n = std::cell::Cell::new(0);
    each_mode(sandbox_modes!(support), |mode| {
        n.set(n.get() + 1);
        let mut cmd = run_in(mode);
        cmd.args(["--read", dir.path().to_str().unwrap(), "--", python, "-c", LEASE_DNOTIFY]);
        cmd.args([file.to_str().unwrap(), folder.to_str().unwrap()]);
        let mut child = cmd
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cordon");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut said = String::new();
        while !said.ends_with("ready\n") {
            assert_ne!(out.read_line(&mut said).unwrap(), 0, "[{}] the probe ended early: {said}", mode.as_str());
        }
        let held = leases();
        std::fs::write(folder.join(format!("new-{}", n.get())), "").unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert!(child.wait().unwrap().success(), "[{}] {said}{rest}", mode.as_str());
        assert_eq!(held, Vec::<String>::new(), "[{}] the sandbox holds a lease on the host's file", mode.as_str());
        assert_eq!(
            format!("{said}{rest}"),
            "lease: Operation not permitted\ndnotify: Operation not permitted\nready\nsignals: 0\n",
            "[{}]",
            mode.as_str()
        );
    });
}
