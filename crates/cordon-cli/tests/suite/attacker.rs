//! Probes outside the shared corpus, of the same and neighbouring classes:
//! host services by unix socket path, SysV IPC and `/dev/shm` of the host,
//! the i386 syscall entry, hard links and symlinks out of a grant,
//! `open_by_handle_at`. Each has a control outside the sandbox (dev mode)
//! that shows the probe works when nothing stops it.

use std::cell::RefCell;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Dir, Mode};

use super::{run_in, tool, SYSCALL_PROBE};

const CONNECT_UNIX: &str = r#"
import socket, sys
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    print("connected")
except OSError as e:
    print(e.strerror)
"#;

#[test]
fn host_unix_socket_paths_are_out_of_reach() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let dir = Dir::new("unix-sock");
    let path = dir.join("service.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let path = path.to_str().unwrap();
    let probe = |mode: Mode, extra: &[&str]| {
        let out = run_in(mode).args(extra).args(["--", python, "-c", CONNECT_UNIX, path]).run();
        out.assert_success();
        out.stdout.trim().to_owned()
    };
    assert_eq!(probe(Mode::Dev, &[]), "connected", "control: the host service answers outside a sandbox");
    each_mode(sandbox_modes!(support), |mode| {
        // Landlock (ABI < 9) does not check socket paths, so process mode
        // refuses socket(AF_UNIX) itself; container mode does not mount it.
        let expected = if mode == Mode::Container { "No such file or directory" } else { "Operation not permitted" };
        assert_eq!(probe(mode, &[]), expected, "[{}]", mode.as_str());
    });
}

/// The probe of `a_host_services_socket_inside_a_grant_is_out_of_reach`:
/// connects to argv[1] and sends a marker; then makes a listener of its own
/// at argv[2] and connects to that (the control: the sandbox's own unix
/// services keep working). Prints one line for each.
const HOST_SOCKET_IN_GRANT: &str = r#"
import os, socket, sys, threading
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.sendall(b"SANDBOX-WAS-HERE")
    print("host: connected", flush=True)
except OSError as e:
    print("host:", e.strerror, flush=True)
try:
    l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    l.bind(sys.argv[2]); l.listen(1)
    def serve():
        c, _ = l.accept(); c.sendall(c.recv(10)); c.close()
    threading.Thread(target=serve, daemon=True).start()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(sys.argv[2]); c.sendall(b"ping")
    print("own:", c.recv(10).decode(), flush=True)
except OSError as e:
    print("own:", e.strerror, flush=True)
"#;

/// R12-5. A grant (a read grant too: a read-only bind does not stop
/// `connect()`) that covers a host service's socket file (`/run/docker.sock`
/// under `--read /run`) puts the file in the sandbox's root; the connect
/// helper connects in the sandbox's context, so container mode reached the
/// service, as the sandbox's root. Now the helper checks the listener
/// (`SO_PEERCRED`'s pid is 0 in the sandbox's pid namespace for a process
/// outside it), cuts the connection and refuses it (`EACCES`, explained),
/// while a listener the command made itself keeps working. The evidence is
/// the host side: the bytes the host's socket (0600, the test's) received,
/// read up to a marker connection the test makes after each run (accepts
/// are served in order). Process mode refuses `socket(AF_UNIX)` as before.
/// Fails on 6831b6e (container mode: "host: connected", the marker arrived).
#[test]
fn a_host_services_socket_inside_a_grant_is_out_of_reach() {
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;

    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let dir = Dir::new("host-service");
    let run_dir = dir.create_dir("run");
    let own_dir = dir.create_dir("own");
    let path = run_dir.join("daemon.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Everything each connection sent, until the test's own "END".
    let received = || {
        std::os::unix::net::UnixStream::connect(&path).unwrap().write_all(b"END").unwrap();
        let mut got = vec![];
        loop {
            let (mut c, _) = listener.accept().unwrap();
            c.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
            let mut data = vec![];
            let _ = c.read_to_end(&mut data);
            if data == b"END" {
                return got;
            }
            got.push(String::from_utf8_lossy(&data).into_owned());
        }
    };
    let n = std::cell::Cell::new(0);
    each_mode(sandbox_modes!(support), |mode| {
        for grant in ["--read", "--write"] {
            n.set(n.get() + 1);
            let mine = own_dir.join(format!("{}.sock", n.get()));
            let out = run_in(mode)
                .args([grant, run_dir.to_str().unwrap(), "--write", own_dir.to_str().unwrap()])
                .args(["--", python, "-c", HOST_SOCKET_IN_GRANT, path.to_str().unwrap(), mine.to_str().unwrap()])
                .run();
            out.assert_success();
            let what = format!("[{} {grant}]", mode.as_str());
            let got = received();
            assert!(!got.iter().any(|g| g.contains("SANDBOX-WAS-HERE")), "{what} the host service received {got:?}");
            if mode == Mode::Container {
                out.assert_stdout_eq("host: Permission denied\nown: ping\n");
                out.assert_stderr_contains(&format!("cordon: network: refused the unix socket {}", path.display()));
                out.assert_stderr_contains("its listener is a host service, outside the sandbox");
            } else {
                out.assert_stdout_eq("host: Operation not permitted\nown: Operation not permitted\n");
            }
        }
    });
}

#[test]
fn abstract_unix_sockets_of_the_host_are_out_of_reach() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let name = format!("\0cordon-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..]).unwrap();
    let _listener = UnixListener::bind_addr(&addr).unwrap();
    let arg = format!("@{}", &name[1..]);
    let script = CONNECT_UNIX.replace("s.connect(sys.argv[1])", "s.connect('\\0' + sys.argv[1][1:])");
    let probe = |mode: Mode| {
        let out = run_in(mode).args(["--", python, "-c", &script, &arg]).run();
        out.assert_success();
        out.stdout.trim().to_owned()
    };
    assert_eq!(probe(Mode::Dev), "connected", "control");
    each_mode(sandbox_modes!(support), |mode| {
        let expected = if mode == Mode::Container { "Connection refused" } else { "Operation not permitted" };
        assert_eq!(probe(mode), expected, "[{}]", mode.as_str());
    });
}

const SHM_PROBE: &str = r#"
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
key, create = int(sys.argv[1], 0), sys.argv[2] == "create"
flags = (0o1000 | 0o666) if create else 0
r = libc.shmget(ctypes.c_int(key), ctypes.c_size_t(4096 if create else 0), ctypes.c_int(flags))
if r < 0:
    print(errno.errorcode[ctypes.get_errno()])
elif sys.argv[2] == "remove":
    libc.shmctl(r, 0, None)
    print("removed")
else:
    print("found")
"#;

#[test]
fn host_sysv_shared_memory_is_out_of_reach() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let key = format!("{:#x}", 0x4344_0000u32 | (std::process::id() & 0xffff));
    let host = |what: &str| {
        let out = cordon_testkit::TestCommand::new(python).args(["-c", SHM_PROBE, &key, what]).run();
        out.assert_success();
        out.stdout.trim().to_owned()
    };
    assert_eq!(host("create"), "found");
    let inside = |mode: Mode| {
        let out = run_in(mode).args(["--", python, "-c", SHM_PROBE, &key, "lookup"]).run();
        out.assert_success();
        out.stdout.trim().to_owned()
    };
    let control = inside(Mode::Dev);
    let verdicts = RefCell::new(vec![]);
    each_mode(sandbox_modes!(support), |mode| verdicts.borrow_mut().push((mode, inside(mode))));
    assert_eq!(host("remove"), "removed");
    assert_eq!(control, "found", "control: the segment is visible outside a sandbox");
    for (mode, v) in verdicts.into_inner() {
        assert_eq!(v, "ENOENT", "[{}] the host's segment must not be visible", mode.as_str());
    }
}

#[test]
fn host_dev_shm_is_private() {
    let support = kernel_support();
    let name = format!("/dev/shm/cordon-test-{}", std::process::id());
    std::fs::write(&name, "host shm\n").unwrap();
    let control = run_in(Mode::Dev).args(["--", "cat", &name]).run();
    let outs = RefCell::new(vec![]);
    each_mode(sandbox_modes!(support), |mode| {
        outs.borrow_mut().push((
            mode,
            run_in(mode)
                .args(["--", "sh", "-c", &format!("cat {name}; echo new > /dev/shm/mine && cat /dev/shm/mine")])
                .run(),
        ))
    });
    let leaked = std::path::Path::new("/dev/shm/mine").exists();
    std::fs::remove_file(&name).unwrap();
    control.assert_success().assert_stdout_eq("host shm\n");
    assert!(!leaked, "a file written to the sandbox's /dev/shm appeared on the host");
    for (mode, out) in outs.into_inner() {
        out.assert_success().assert_stderr_contains("No such file or directory").assert_stdout_eq("new\n");
        let _ = mode;
    }
}

#[test]
fn the_i386_syscall_entry_kills_the_process() {
    let support = kernel_support();
    let gcc = tool("/usr/bin/gcc");
    let dir = Dir::new("int80");
    dir.create(
        "int80.c",
        "#include <stdio.h>\nint main(void) { long r; __asm__ volatile (\"int $0x80\" : \"=a\"(r) : \"a\"(20L) : \"memory\"); printf(\"getpid via int 0x80: %ld\\n\", r); return 0; }\n",
    );
    cordon_testkit::TestCommand::new(gcc)
        .arg("-o")
        .arg(dir.join("int80"))
        .arg(dir.join("int80.c"))
        .run()
        .assert_success();
    let bin = dir.join("int80");
    let bin = bin.to_str().unwrap();
    let d = dir.path().to_str().unwrap();
    run_in(Mode::Dev).args(["--", bin]).run().assert_success().assert_stdout_contains("getpid via int 0x80: ");
    each_mode(sandbox_modes!(support), |mode| {
        // SIGSYS from SECCOMP_RET_KILL_PROCESS: 128 + 31.
        run_in(mode).args(["--read", d, "--", bin]).run().assert_code(159);
    });
}

#[test]
fn open_by_handle_at_is_refused() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let args = ["304", "-100", "buf", "0"];
    let answer = |mode: Mode| {
        let out = run_in(mode).args(["--", python, "-c", SYSCALL_PROBE]).args(args).run();
        out.assert_success();
        out.stdout.trim().to_owned()
    };
    let control = answer(Mode::Dev);
    assert!(
        control != "EPERM" && control != "ok",
        "control: the kernel looks at the handle outside a sandbox ({control})"
    );
    each_mode(sandbox_modes!(support), |mode| assert_eq!(answer(mode), "EPERM", "[{}]", mode.as_str()));
}

#[test]
fn links_cannot_carry_a_file_out_of_its_grant() {
    let support = kernel_support();
    let secret = Dir::new("link-secret");
    let target = secret.create("secret.txt", "secret\n");
    let work = Dir::new("link-work");
    std::os::unix::fs::symlink(&target, work.join("via-symlink")).unwrap();
    let w = work.path().to_str().unwrap();
    let s = secret.path().to_str().unwrap();
    each_mode(sandbox_modes!(support), |mode| {
        // Control: with the secret's folder granted, the symlink leads there.
        run_in(mode)
            .args(["--write", w, "--read", s, "--cwd", w, "--", "cat", "via-symlink"])
            .run()
            .assert_success()
            .assert_stdout_eq("secret\n");
        // Without it, the symlink leads nowhere readable.
        run_in(mode).args(["--write", w, "--cwd", w, "--", "cat", "via-symlink"]).run().assert_code(1);
        // A hard link from the read-only system set into a writable grant
        // would make /etc/passwd writable through it.
        let out = run_in(mode).args(["--write", w, "--cwd", w, "--", "ln", "/etc/passwd", "pw"]).run();
        out.assert_code(1);
        assert!(!work.join("pw").exists(), "[{}] hard link created", mode.as_str());
    });
}

const UNIX_DATAGRAM: &str = r#"
import errno, socket, sys
host, mine = sys.argv[1], sys.argv[2]
def attempt(name, f):
    try:
        print(name, f())
    except OSError as e:
        print(name, errno.errorcode[e.errno])
def one_way():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.sendto(b"one-way", host)
    return "sent"
def via_connect():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.connect(host)
    a.send(b"via-connect")
    return "sent"
def two_way():
    # Drop the peer (the kernel forgets it on the next send), bind a name in
    # the write grant for the reply, send to the host's socket.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.close()
    try:
        a.send(b"x")
    except OSError:
        pass
    a.bind(mine)
    a.sendto(b"two-way", host)
    return "sent"
def pair(kind):
    a, b = socket.socketpair(socket.AF_UNIX, kind | socket.SOCK_NONBLOCK)
    a.send(b"ping")
    return b.recv(4).decode()
attempt("one-way", one_way)
attempt("via-connect", via_connect)
attempt("two-way", two_way)
attempt("stream", lambda: pair(socket.SOCK_STREAM))
attempt("seqpacket", lambda: pair(socket.SOCK_SEQPACKET))
"#;

/// Review s9 F2: process mode refuses `socket(AF_UNIX)` because Landlock
/// below ABI 9 does not check socket paths, but a datagram `socketpair`
/// reached any host datagram socket by path all the same: `sendto()` with
/// an address, `connect()` (not decided by the supervisor unless egress is
/// notified), and two-way once its peer is dropped and it is bound in a
/// write grant. The evidence is on the host side: what the host's socket
/// received.
#[test]
fn host_unix_datagram_sockets_are_out_of_reach_of_socketpairs() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let dir = Dir::new("unix-dgram");
    let host_path = dir.create_dir("host").join("d.sock");
    let host = std::os::unix::net::UnixDatagram::bind(&host_path).unwrap();
    host.set_nonblocking(true).unwrap();
    let write = dir.create_dir("w");
    // Every datagram sent is queued on the host socket before the sender's
    // call returns, so once the run has exited a non-blocking read sees all.
    let received = || {
        let mut got = vec![];
        let mut buf = [0u8; 64];
        loop {
            match host.recv(&mut buf) {
                Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("reading the host socket: {e}"),
            }
        }
    };
    let n = std::cell::Cell::new(0);
    let probe = |mode: Mode, extra: &[&str]| {
        n.set(n.get() + 1);
        let mine = write.join(format!("{}-{}.sock", mode.as_str(), n.get()));
        let out = run_in(mode)
            .args(extra)
            .args(["--write", write.to_str().unwrap(), "--", python, "-c", UNIX_DATAGRAM])
            .args([host_path.to_str().unwrap(), mine.to_str().unwrap()])
            .run();
        out.assert_success();
        (out.stdout.trim().to_owned(), received())
    };
    let (said, got) = probe(Mode::Dev, &[]);
    assert_eq!(
        said, "one-way sent\nvia-connect sent\ntwo-way sent\nstream ping\nseqpacket ping",
        "control: the probe reaches the host's socket outside a sandbox"
    );
    assert_eq!(got, ["one-way", "via-connect", "two-way"], "control: the host's socket received");
    each_mode(sandbox_modes!(support), |mode| {
        // Kernel egress notifies connect(); the proxy leaves it to the kernel.
        for extra in [&[][..], &["--net-via", "proxy", "--net", "127.0.0.1:1"][..]] {
            let (said, got) = probe(mode, extra);
            // Process mode refuses datagram pairs; container mode makes them,
            // but the host's path is not in its root.
            let refused = if mode == Mode::Container { "ENOENT" } else { "EPERM" };
            assert_eq!(
                said,
                format!("one-way {refused}\nvia-connect {refused}\ntwo-way {refused}\nstream ping\nseqpacket ping"),
                "[{}] {extra:?}",
                mode.as_str()
            );
            assert_eq!(got, Vec::<String>::new(), "[{}] {extra:?} the host's socket received", mode.as_str());
        }
    });
}

/// What the command does with the socket it gets as fd 0, by kind: each
/// reaches the host's listener of that kind when nothing stops it.
const USE_STDIN_SOCKET: &str = r#"
import ctypes, errno, socket, struct, sys
kind, marker, target = sys.argv[1], sys.argv[2], sys.argv[3]
open(marker, "w").write("ran\n")
try:
    if kind == "udp":
        s = socket.socket(fileno=0)
        s.sendto(b"udp", ("127.0.0.1", int(target)))
    elif kind in ("tcp", "tcp-connected"):
        s = socket.socket(fileno=0)
        if kind == "tcp-connected":
            ctypes.CDLL(None).connect(0, struct.pack("H14x", 0), 16)
        s.connect(("127.0.0.1", int(target)))
        s.send(b"tcp")
    elif kind in ("unix-stream", "unix-connected"):
        s = socket.socket(fileno=0)
        s.connect(target)
        s.send(b"unix-stream")
    elif kind == "unix-datagram":
        s = socket.socket(fileno=0)
        s.sendto(b"unix-datagram", target)
    elif kind == "unix-listening":
        c, _ = socket.socket(fileno=0).accept()
        c.send(b"unix-listening")
    else:
        sys.exit("unknown kind " + kind)
    print("sent", file=sys.stderr)
except OSError as e:
    print(errno.errorcode[e.errno], file=sys.stderr)
"#;

/// Review s9 F2 and s10 R1: a socket handed to the command as stdio is
/// used in the caller's network namespace, past the run's own: a UDP
/// socket sends anywhere, a TCP socket (unconnected, or disconnected with
/// connect(AF_UNSPEC)) connects anywhere where connect() is left to the
/// kernel (`--net-via proxy`), a unix datagram or unconnected stream
/// socket addresses host sockets by path, a listening one takes the host's
/// connections. Such a run is refused before the command starts, in both
/// modes and both egress paths: exit 125 naming the fd, its marker absent,
/// and each host listener got nothing. Controls: in dev mode (no
/// isolation, not checked) the UDP probe reaches the host; a connected
/// unix stream socket runs in both modes and cannot address anyone else
/// (EISCONN, or ENOENT where container mode's root lacks the path).
#[test]
fn a_socket_as_stdio_is_refused_unless_a_connected_unix_stream() {
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::{UnixDatagram, UnixStream};
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let dir = Dir::new("socket-stdio");
    let hosts = dir.create_dir("host");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let decoy = TcpListener::bind("127.0.0.1:0").unwrap();
    let unix_path = hosts.join("s.sock");
    let unix = UnixListener::bind(&unix_path).unwrap();
    unix.set_nonblocking(true).unwrap();
    let dgram_path = hosts.join("d.sock");
    let dgram = UnixDatagram::bind(&dgram_path).unwrap();
    dgram.set_nonblocking(true).unwrap();
    let listening_path = hosts.join("l.sock");
    let marker = dir.create_dir("m").join("ran");
    let (udp_port, tcp_port) =
        (udp.local_addr().unwrap().port().to_string(), tcp.local_addr().unwrap().port().to_string());
    // What any host listener received since the last call.
    let received = || {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        if let Ok(n) = udp.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        if let Ok(n) = dgram.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        if tcp.accept().is_ok() {
            got.push("a tcp connection".to_owned());
        }
        if unix.accept().is_ok() {
            got.push("a unix connection".to_owned());
        }
        got
    };
    // The socket of each kind, made by the caller, and what the command aims at.
    let socket = |kind: &str| -> (OwnedFd, String) {
        match kind {
            "udp" => (unconnected_socket(libc::AF_INET, libc::SOCK_DGRAM), udp_port.clone()),
            "tcp" => (unconnected_socket(libc::AF_INET, libc::SOCK_STREAM), tcp_port.clone()),
            "tcp-connected" => (TcpStream::connect(decoy.local_addr().unwrap()).unwrap().into(), tcp_port.clone()),
            "unix-stream" => {
                (unconnected_socket(libc::AF_UNIX, libc::SOCK_STREAM), unix_path.to_str().unwrap().to_owned())
            }
            "unix-datagram" => (UnixDatagram::pair().unwrap().0.into(), dgram_path.to_str().unwrap().to_owned()),
            "unix-listening" => {
                let _ = std::fs::remove_file(&listening_path);
                (UnixListener::bind(&listening_path).unwrap().into(), String::new())
            }
            "unix-connected" => (UnixStream::pair().unwrap().0.into(), unix_path.to_str().unwrap().to_owned()),
            other => panic!("unknown kind {other}"),
        }
    };
    let probe = |mode: Mode, extra: &[&str], kind: &str| {
        let _ = std::fs::remove_file(&marker);
        let (stdin, target) = socket(kind);
        let mut cmd = run_in(mode);
        cmd.args(extra)
            .args(["--write", marker.parent().unwrap().to_str().unwrap(), "--timeout-ms", "5000", "--", python, "-c"])
            .args([USE_STDIN_SOCKET, kind, marker.to_str().unwrap(), &target]);
        let out = cmd
            .command()
            .stdin(std::process::Stdio::from(stdin))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), marker.exists(), received())
    };
    // Control: with nothing in the way, the probe reaches the host.
    let (code, stderr, ran, got) = probe(Mode::Dev, &[], "udp");
    assert_eq!((code, ran, got), (Some(0), true, vec!["udp".to_owned()]), "control (dev mode): {stderr}");
    each_mode(sandbox_modes!(support), |mode| {
        for extra in [&[][..], &["--net-via", "proxy"][..]] {
            for kind in ["udp", "tcp", "tcp-connected", "unix-stream", "unix-datagram", "unix-listening"] {
                let what = format!("[{}] {extra:?} {kind}", mode.as_str());
                let (code, stderr, ran, got) = probe(mode, extra, kind);
                assert_eq!(got, Vec::<String>::new(), "{what}: the host received");
                assert_eq!((code, ran), (Some(125), false), "{what}: {stderr}");
                assert!(stderr.contains("fd 0 of the command is "), "{what}: {stderr}");
                assert!(
                    stderr.contains("hint: give the command a pipe, a file or a terminal there"),
                    "{what}: {stderr}"
                );
            }
            // Control: a connected unix stream socket runs, and cannot
            // address the host's socket.
            let what = format!("[{}] {extra:?} unix-connected", mode.as_str());
            let (code, stderr, ran, got) = probe(mode, extra, "unix-connected");
            assert_eq!((code, ran, got), (Some(0), true, Vec::<String>::new()), "{what}: {stderr}");
            // (In container mode the host's path may not be looked up at all.)
            let expected = if mode == Mode::Container { &["EISCONN", "ENOENT"][..] } else { &["EISCONN"][..] };
            assert!(expected.iter().any(|e| stderr.contains(e)), "{what}: {stderr}");
        }
    });
}

/// An unbound, unconnected socket of the caller's.
fn unconnected_socket(domain: libc::c_int, kind: libc::c_int) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: socket with integer arguments; a valid descriptor is owned.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a new descriptor nothing else owns.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// What the command does with the stdio it gets: copies its input to its
/// output, then tries to change the mode and times of both descriptors,
/// saying how each attempt went on stderr.
const CHANGE_STDIO: &str = r#"
import errno, os, sys
open(sys.argv[1], "w").write("ran\n")
data = os.read(0, 4096)
os.write(1, data)
for name, op in [("fchmod-in", lambda: os.fchmod(0, 0o666)), ("fchmod-out", lambda: os.fchmod(1, 0o606)),
                 ("utime-in", lambda: os.utime(0, (0, 0))), ("utime-out", lambda: os.utime(1, (0, 0)))]:
    try:
        op()
        print(name, "done", file=sys.stderr)
    except OSError as e:
        print(name, errno.errorcode[e.errno], file=sys.stderr)
"#;

/// Review s10 R4: a descriptor is used where it was opened, so a file of
/// the caller's handed over as stdio let the command change its mode and
/// times on the host (`fchmod`, `futimens`), which neither Landlock nor the
/// sandbox's read-only mounts cover: `cordon run … < secret > out.log`
/// made the secret world-readable, and as root `> /dev/null` could make
/// the host's /dev/null mode 000. Now, in both modes, the caller's own
/// files reach the command through pipes cordon relays: the input and the
/// output arrive whole, and on the host both files keep their mode and
/// times, as does a /dev/null stand-in (a root-owned char 1:3 node) given
/// as stdin and as stdout. A directory as stdin refuses the run (exit 125,
/// the command never ran). Control: in dev mode (no isolation) the same
/// command changes the input file's mode on the host.
#[test]
fn the_callers_files_as_stdio_keep_their_mode_and_times() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let dir = Dir::new("stdio-files");
    let marker = dir.create_dir("m").join("ran");
    let host = dir.create_dir("host");
    let stamp = |p: &std::path::Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.mode() & 0o7777, m.mtime())
    };
    // Runs the command with `stdin` and `stdout` opened from these host
    // paths; returns cordon's exit code, the command's stderr, and whether
    // it ran.
    let probe = |mode: Mode, stdin: &std::path::Path, stdout: &std::path::Path| {
        let _ = std::fs::remove_file(&marker);
        let input = std::fs::File::open(stdin).unwrap();
        let output = std::fs::OpenOptions::new().append(true).open(stdout).unwrap();
        let out = run_in(mode)
            .args(["--write", marker.parent().unwrap().to_str().unwrap(), "--", python, "-c", CHANGE_STDIO])
            .arg(&marker)
            .command()
            .stdin(input)
            .stdout(output)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), marker.exists())
    };
    let files = || {
        let input = host.join("secret.conf");
        let output = host.join("out.log");
        std::fs::write(&input, "input-data\n").unwrap();
        std::fs::write(&output, "before\n").unwrap();
        for p in [&input, &output] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        (input, output)
    };
    // Control: with nothing in the way, the command changes the host file.
    let (input, output) = files();
    let (code, stderr, ran) = probe(Mode::Dev, &input, &output);
    assert_eq!((code, ran), (Some(0), true), "control: {stderr}");
    assert_eq!(stamp(&input).0, 0o666, "control: the input's mode on the host: {stderr}");
    each_mode(sandbox_modes!(support), |mode| {
        let what = format!("[{}]", mode.as_str());
        let (input, output) = files();
        let before = (stamp(&input), stamp(&output));
        let (code, stderr, ran) = probe(mode, &input, &output);
        assert_eq!((code, ran), (Some(0), true), "{what} {stderr}");
        assert_eq!((stamp(&input), stamp(&output).0), (before.0, 0o600), "{what} on the host: {stderr}");
        assert_ne!(stamp(&output).1, 0, "{what} the output's times on the host: {stderr}");
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "before\ninput-data\n", "{what} {stderr}");
        // A directory as stdin is refused before anything runs.
        let (code, stderr, ran) = probe(mode, &host, &output);
        assert_eq!((code, ran), (Some(125), false), "{what} directory: {stderr}");
        assert!(stderr.contains("fd 0 of the command is a directory"), "{what} {stderr}");
    });
    // /dev/null as the caller's own: only root owns it (a stand-in node).
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs the tests as root");
        eprintln!("NOTE: not root: the /dev/null stand-in part of this test is skipped (a non-root caller does not own /dev/null)");
        return;
    }
    let null = host.join("null");
    let path = std::ffi::CString::new(null.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mknod with integer arguments.
    let made = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(made, 0, "mknod: {}", std::io::Error::last_os_error());
    std::fs::set_permissions(&null, std::fs::Permissions::from_mode(0o666)).unwrap();
    each_mode(sandbox_modes!(support), |mode| {
        let before = stamp(&null);
        let (code, stderr, ran) = probe(mode, &null, &null);
        assert_eq!((code, ran), (Some(0), true), "[{}] null: {stderr}", mode.as_str());
        assert_eq!(stamp(&null), before, "[{}] the null node on the host: {stderr}", mode.as_str());
    });
}
