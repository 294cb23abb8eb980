//! Network namespaces a test makes and removes, and a relay into one.
//!
//! A namespace is held by a process (`unshare --net`), never named with
//! `ip netns add` (that would bind-mount it under the host's `/run/netns`):
//! it goes away with the last process in it, so a crashed test leaves
//! nothing behind but processes that die when their holder's stdin closes.
//! Everything configured inside (bridges, veth pairs, addresses, links set
//! down) lives in the test's own namespaces: the host's network
//! configuration is never touched, which is checked before every command
//! (the namespace must differ from the test process's own).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cordon_testkit::poll_until;

/// A network namespace held by a process of this test (`unshare --net`):
/// loopback is up; gone when dropped (the holder is SIGKILLed by pid).
pub struct Netns {
    holder: Child,
}

impl Netns {
    /// A fresh namespace. Its holder prints a line only after `unshare`
    /// succeeded, so no command can run in the host's namespace by mistake.
    pub fn new() -> Netns {
        let mut holder = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", "echo up; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn unshare (util-linux)");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("stdout pipe")).read_line(&mut line).expect("holder's line");
        assert_eq!(line.trim(), "up", "unshare --net failed (needs root)");
        let ns = Netns { holder };
        let own = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let theirs = std::fs::read_link(ns.path()).expect("holder's netns");
        assert_ne!(own, theirs, "the holder is in the test's own network namespace");
        ns.ip("link set lo up");
        ns
    }

    /// The holder's pid (a process in the namespace).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `/proc/PID/ns/net` of the holder.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// `program` to be run inside the namespace (`nsenter --net`, which
    /// execs it: the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        in_netns(self.pid(), program)
    }

    /// Runs `ip -batch -` with `commands` (one per line) inside; panics with
    /// ip's message when one fails.
    pub fn ip(&self, commands: &str) {
        let mut child = self
            .command("ip")
            .args(["-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ip (iproute2)");
        child.stdin.take().expect("stdin").write_all(commands.as_bytes()).expect("write ip batch");
        let out = child.wait_with_output().expect("ip");
        assert!(out.status.success(), "ip -batch failed:\n{commands}\n{}", String::from_utf8_lossy(&out.stderr));
    }

    /// `curl -s URL` from inside; the body, or `None` when it fails.
    pub fn curl(&self, url: &str) -> Option<String> {
        let out = self.command("curl").args(["-sf", "--max-time", "3", url]).output().expect("run curl");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// `program` run inside the network namespace of process `pid`.
pub fn in_netns(pid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/proc/{pid}/ns/net")).arg("--").arg(program);
    cmd
}

/// Makes `target` (a TCP address inside the namespace of process `pid`)
/// reachable from the test at [`Relay::addr`] (loopback, a port the kernel
/// picked): `socat` inside listens on a unix socket in `dir` (a path, so
/// no namespace), and a thread here forwards each loopback connection to it.
pub struct Relay {
    pub addr: SocketAddr,
    socat: Child,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(pid: u32, target: SocketAddr, dir: &Path) -> Relay {
        let sock = dir.join(format!("relay-{}-{}.sock", target.ip(), target.port()));
        assert!(sock.as_os_str().len() < 100, "unix socket path too long: {}", sock.display());
        let socat = in_netns(pid, "socat")
            .arg(format!("UNIX-LISTEN:{},fork", sock.display()))
            .arg(format!("TCP:{target}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn socat (`.ci/run` installs the Debian package socat)");
        let listening = poll_until(Duration::from_secs(10), || sock.exists());
        assert!(listening, "socat never listened on {}", sock.display());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let Ok(unix) = UnixStream::connect(&sock) else { continue };
                forward(tcp, unix);
            }
        });
        Relay { addr, socat, stop }
    }
}

/// Copies both ways between `tcp` and `unix` until either side closes.
fn forward(tcp: TcpStream, unix: UnixStream) {
    let (Ok(mut tcp_r), Ok(mut unix_r)) = (tcp.try_clone(), unix.try_clone()) else { return };
    let (mut tcp_w, mut unix_w) = (tcp, unix);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut tcp_r, &mut unix_w);
        let _ = unix_w.shutdown(std::net::Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut unix_r, &mut tcp_w);
        let _ = tcp_w.shutdown(std::net::Shutdown::Write);
    });
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.socat.kill();
        let _ = self.socat.wait();
        // Wake the accept loop so its thread ends.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}
