//! Network allow-lists through the filtering proxy (issue 4), `--net-via
//! proxy`, in both sandbox modes, against servers this test starts on the
//! host's loopback. The sandbox keeps its empty network namespace; the
//! proxy is its only way out, and `network` in the result accounts for
//! every connection.

use std::net::UdpSocket;
use std::time::Duration;

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, HttpServer, Mode};

use super::{run_in, tool};

const BODY: &str = "hello from the host server\n";

/// The test server, answering with [`BODY`].
fn start_server() -> HttpServer {
    HttpServer::start(BODY)
}

/// `cordon run` with the proxy as the route out.
fn run_via_proxy(mode: Mode) -> cordon_testkit::TestCommand {
    let mut cmd = run_in(mode);
    cmd.args(["--net-via", "proxy"]);
    cmd
}

fn curl(mode: Mode, net: &[&str], url: &str, extra: &[&str]) -> cordon_testkit::Outcome {
    let mut cmd = run_via_proxy(mode);
    cmd.arg("--json");
    for n in net {
        cmd.args(["--net", n]);
    }
    cmd.args(["--", tool("/usr/bin/curl"), "-s", "-S"]).args(extra).arg(url).run()
}

#[test]
fn an_allowed_host_is_reached_and_accounted_for_exactly() {
    let support = kernel_support();
    let server = start_server();
    let allow = format!("127.0.0.1:{}", server.port);
    each_mode(sandbox_modes!(support), |mode| {
        // Through CONNECT (-p), the tunnel carries exactly what client and
        // server exchanged.
        let before = server.received();
        let out = curl(mode, &[&allow], &format!("http://127.0.0.1:{}/x", server.port), &["-p"]);
        let r = out.json();
        assert_eq!(r["ok"], true, "[{}] {r}", mode.as_str());
        assert_eq!(r["logs"]["lines"][0]["text"], BODY.trim_end());
        let net = r["network"].as_array().expect("network list");
        assert_eq!(net.len(), 1, "{net:?}");
        let c = &net[0];
        assert_eq!(
            (c["host"].as_str(), c["port"].as_u64(), c["allowed"].as_bool()),
            (Some("127.0.0.1"), Some(u64::from(server.port)), Some(true))
        );
        assert_eq!(c["rule"], allow.as_str());
        assert_eq!(c["protocol"], "connect");
        let up = server.received() - before;
        assert_eq!(c["bytes_up"].as_u64(), Some(up), "bytes up must be what the server received");
        assert_eq!(c["bytes_down"].as_u64(), Some(server.response_len()), "bytes down must be what the server sent");
    });
}

#[test]
fn python_urllib_uses_the_proxy_from_the_environment() {
    let support = kernel_support();
    let server = start_server();
    let allow = format!("127.0.0.1:{}", server.port);
    let script = format!(
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{}/').read().decode(), end='')",
        server.port
    );
    each_mode(sandbox_modes!(support), |mode| {
        run_via_proxy(mode)
            .args(["--net", &allow, "--", tool("/usr/bin/python3"), "-c", &script])
            .run()
            .assert_success()
            .assert_stdout_eq(BODY);
    });
}

#[test]
fn refusals_are_explained_and_recorded() {
    let support = kernel_support();
    let server = start_server();
    let port = server.port;
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        // (url, --net patterns, what the 403 body says)
        (format!("http://127.0.0.1:{port}/"), vec!["example.com".into()], "not allowed by the network policy"),
        // A private/loopback literal needs a literal pattern; `*` is not one.
        (format!("http://127.0.0.1:{port}/"), vec!["*".into()], "127.0.0.1"),
        // A name that resolves to loopback is refused unless named literally.
        (format!("http://localhost:{port}/"), vec!["*".into()], "localhost"),
        // The right host on another port.
        (
            format!("http://127.0.0.1:{port}/"),
            vec![format!("127.0.0.1:{}", port.wrapping_add(1))],
            "not allowed by the network policy",
        ),
    ];
    each_mode(sandbox_modes!(support), |mode| {
        for (i, (url, net, says)) in cases.iter().enumerate() {
            let mut cmd = run_via_proxy(mode);
            cmd.arg("--json");
            for n in net {
                cmd.args(["--net", n]);
            }
            let out = cmd.args(["--", tool("/usr/bin/curl"), "-s", "-w", "\\n%{http_code}", url]).run();
            let r = out.json();
            let text: Vec<&str> =
                r["logs"]["lines"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
            assert_eq!(text.last().copied(), Some("403"), "[{}] case {i} {url} {net:?}: {r}", mode.as_str());
            assert!(
                text.iter().any(|t| t.contains(says)),
                "[{}] case {i}: body should mention `{says}`: {text:?}",
                mode.as_str()
            );
            let conn = &r["network"][0];
            assert_eq!(conn["allowed"], false, "[{}] case {i}: {r}", mode.as_str());
        }
    });
}

#[test]
fn nothing_but_the_proxy_is_reachable() {
    let support = kernel_support();
    let server = start_server();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let allow = format!("127.0.0.1:{}", server.port);
    let probe = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {}), timeout=2); print('tcp connected')\nexcept OSError as e: print('tcp', e.strerror)\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('127.0.0.1', {udp_port})); print('udp sent')",
        server.port
    );
    // Control: outside a sandbox both reach the host.
    let control = run_in(Mode::Dev).args(["--", tool("/usr/bin/python3"), "-c", &probe]).run();
    control.assert_success().assert_stdout_contains("tcp connected");
    let mut buf = [0u8; 8];
    assert!(udp.recv_from(&mut buf).is_ok(), "control: the datagram reached the host");
    each_mode(sandbox_modes!(support), |mode| {
        // Even with the server allowed, a direct connection has no route: the
        // sandbox's 127.0.0.1 is its own.
        let out = run_via_proxy(mode).args(["--net", &allow, "--", tool("/usr/bin/python3"), "-c", &probe]).run();
        out.assert_success().assert_stdout_contains("tcp Connection refused");
        assert!(udp.recv_from(&mut [0u8; 8]).is_err(), "[{}] a datagram reached the host", mode.as_str());
    });
}

#[test]
fn dev_mode_refuses_network_rules() {
    run_in(Mode::Dev)
        .args(["--net", "example.com", "--", "true"])
        .run()
        .assert_code(125)
        .assert_stderr_contains("dev mode");
}

/// A server that accepts connections and, on each, never reads and writes
/// an HTTP response head followed by up to `per_conn` body bytes, as far as
/// the connection takes them (nothing at all when `per_conn` is 0). It
/// counts what it accepted and wrote.
pub(super) struct FloodServer {
    pub(super) port: u16,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FloodServer {
    pub(super) fn start(per_conn: usize) -> FloodServer {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let (written, accepted, stop) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (w, a, s) = (Arc::clone(&written), Arc::clone(&accepted), Arc::clone(&stop));
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {per_conn}\r\n\r\n").into_bytes();
            let body = vec![b'x'; 64 * 1024];
            // (connection, head bytes sent, body bytes sent)
            let mut conns: Vec<(std::net::TcpStream, usize, usize)> = vec![];
            while !s.load(Ordering::Relaxed) {
                while let Ok((c, _)) = listener.accept() {
                    c.set_nonblocking(true).unwrap();
                    conns.push((c, 0, 0));
                    a.fetch_add(1, Ordering::Relaxed);
                }
                let mut moved = false;
                for (c, head_sent, sent) in &mut conns {
                    let result = if per_conn == 0 {
                        continue;
                    } else if *head_sent < head.len() {
                        c.write(&head[*head_sent..]).map(|k| *head_sent += k)
                    } else if *sent < per_conn {
                        c.write(&body[..body.len().min(per_conn - *sent)]).map(|k| *sent += k)
                    } else {
                        continue;
                    };
                    if let Ok(()) = result {
                        moved = true;
                    }
                }
                let total: usize = conns.iter().map(|(_, h, b)| h + b).sum();
                w.store(total as u64, Ordering::Relaxed);
                if !moved {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        FloodServer { port, written, accepted, stop }
    }

    pub(super) fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for the sandboxed client to write `ready` (failing the test
    /// if it does not, or if cordon exits first), then until no byte moves
    /// any more: every connection is stalled. Whether they stalled.
    pub(super) fn stalls_once_ready(
        &self,
        what: &str,
        ready: &std::path::Path,
        child: &mut std::process::Child,
    ) -> bool {
        let opened = cordon_testkit::poll_until(Duration::from_secs(120), || {
            ready.exists() || child.try_wait().ok().flatten().is_some()
        });
        assert!(opened && ready.exists(), "{what} the client did not open its connections: {:?}", child.try_wait());
        let mut last = u64::MAX;
        cordon_testkit::poll_until(Duration::from_secs(60), || {
            let now = self.written();
            std::thread::sleep(Duration::from_millis(300));
            let same = now == last && now == self.written();
            last = now;
            same
        })
    }

    pub(super) fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for FloodServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A process's resident memory in KiB, from the host's `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Opens N connections through the proxy the way argv[3] says. `connect`,
/// `socks` and `post`: CONNECT tunnels, SOCKS5 tunnels, forwarded POSTs of
/// PER bytes, on which it sends as much as it can and reads nothing (the
/// server never reads either). `download`: one forwarded GET each, of which
/// it reads half of the PER-byte body as fast as it comes, one connection
/// after another, and then no more (a fast origin, a client that stalls). Writes `ready` in
/// SCRATCH (the bytes it sent or read) once nothing more moves, then holds
/// everything open until `done` appears.
const STALL_CLIENT: &str = r#"
import os, socket, sys, time
port, scratch, how, n, per = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
host, pport = os.environ["http_proxy"][len("http://"):].rsplit(":", 1)
def read_exactly(s, k):
    out = b""
    while len(out) < k:
        got = s.recv(k - len(out))
        assert got, "the proxy closed the connection"
        out += got
    return out
socks = []
for _ in range(n):
    s = socket.socket()
    if how != "download":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    s.connect((host, int(pport)))
    if how == "socks":
        s.sendall(b"\x05\x01\x00")
        assert read_exactly(s, 2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x01" + bytes([127, 0, 0, 1]) + port.to_bytes(2, "big"))
        reply = read_exactly(s, 10)
        assert reply[1] == 0, reply
    elif how == "connect":
        s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += read_exactly(s, 1)
        assert head.startswith(b"HTTP/1.1 200"), head
    elif how == "post":
        s.sendall(f"POST http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\nContent-Length: {per}\r\n\r\n".encode())
    else:
        s.sendall(f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    socks.append(s)
sent = [0] * n
if how == "download":
    for i, s in enumerate(socks):
        while sent[i] < per // 2:
            got = s.recv(min(65536, per // 2 - sent[i]))
            assert got, "the proxy closed the connection"
            sent[i] += len(got)
else:
    chunk = b"y" * 65536
    for s in socks:
        s.setblocking(False)
    while True:
        moved = 0
        for i, s in enumerate(socks):
            if sent[i] < per:
                try:
                    k = s.send(chunk[: per - sent[i]]); sent[i] += k; moved += k
                except BlockingIOError:
                    pass
        if not moved:
            break
with open(f"{scratch}/ready.tmp", "w") as f:
    f.write(str(sum(sent)))
os.rename(f"{scratch}/ready.tmp", f"{scratch}/ready")
for _ in range(1200):
    if os.path.exists(f"{scratch}/done"):
        break
    time.sleep(0.05)
"#;

/// Issue 9 finding 7: the proxy lives in cordon's own process, outside the
/// run's memory limit. 200 connections that stall with data to relay (the
/// client never reads, the server never reads) once grew cordon to ~413 MiB
/// for a run limited to 64 MiB; relay buffers now grow only within a
/// per-run budget. Measured from the host (`/proc/PID/status` of the
/// cordon process, where the proxy runs) for CONNECT tunnels, SOCKS5
/// tunnels, forwarded POSTs whose origin never reads, and forwarded
/// downloads whose client stops reading (a fast origin, a stalled client).
/// Before the budget: about 230 MiB for each kind of tunnel and 64 to 69
/// MiB for the POSTs; the downloads stayed near 15 MiB (the kernel's
/// receive window keeps the proxy's reads small there).
#[test]
fn stalled_connections_keep_cordons_memory_below_the_runs_limit() {
    const CONNECTIONS: usize = 200;
    const PER_CONN: usize = 1 << 20;
    // The proxy's documented bound per run (about 33 MiB, `ProxyConfig`)
    // plus cordon's own few MiB, well below the run's 64 MiB.
    const RSS_BOUND_KIB: u64 = 48 * 1024;
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        // Every way is measured before any is judged, so a failure names them all.
        let mut measured = vec![];
        for how in ["connect", "socks", "post", "download"] {
            let what = format!("[{} {how}]", mode.as_str());
            // A POST's origin neither reads nor answers: an answer the
            // kernel could take whole would end the exchange.
            let (per_conn, answer) = match how {
                "download" => (2 * PER_CONN, 2 * PER_CONN),
                "post" => (PER_CONN, 0),
                _ => (PER_CONN, PER_CONN),
            };
            let server = FloodServer::start(answer);
            let scratch = cordon_testkit::Dir::new("proxy-stall");
            let mut cmd = run_via_proxy(mode);
            cmd.arg("--write").arg(scratch.path());
            // Every socket of the run's connections counts against its
            // memory (v1: its TCP limit), the proxy's sides too (made and
            // accepted by the run's socket maker): a download's 200 MiB
            // left unread, queued on both sides of the proxy, need far more
            // than 64 MiB to move at all.
            let run_limit = if how == "download" { "1024" } else { "64" };
            cmd.args(["--memory-mb", run_limit, "--net", &format!("127.0.0.1:{}", server.port)]);
            cmd.args(["--", python, "-c", STALL_CLIENT, &server.port.to_string()]).arg(scratch.path());
            cmd.args([how, &CONNECTIONS.to_string(), &per_conn.to_string()]);
            let mut child = cmd.spawn_without_output();
            let pid = child.id();
            let settled = server.stalls_once_ready(&what, &scratch.join("ready"), &mut child);
            let rss = rss_kib(pid);
            let written = server.written();
            std::fs::write(scratch.join("done"), "").unwrap();
            let status = child.wait().expect("cordon ends");
            assert!(settled, "{what} the connections never stalled");
            assert_eq!(server.accepted(), CONNECTIONS as u64, "{what} connections that reached the server");
            // Controls: the connections carried data, so the proxy had bytes
            // to hold, and a slow client did read what it meant to.
            let client_moved: usize = scratch.read("ready").parse().expect("the client's count");
            match how {
                "download" => assert_eq!(client_moved, CONNECTIONS * per_conn / 2, "{what} bytes the client read"),
                "post" => {
                    assert!(client_moved >= CONNECTIONS * 64 * 1024, "{what} the client sent {client_moved} bytes")
                }
                _ => assert!(written >= (CONNECTIONS * 64 * 1024) as u64, "{what} the server wrote {written} bytes"),
            }
            eprintln!(
                "{what} cordon's RSS with {CONNECTIONS} stalled connections: {rss} KiB ({client_moved} bytes by the client, {written} by the server)"
            );
            assert!(status.success(), "{what} {status:?}");
            measured.push(format!("{how}: {rss} KiB"));
            if rss >= RSS_BOUND_KIB {
                measured.last_mut().unwrap().push_str(" (over)");
            }
        }
        assert!(
            !measured.iter().any(|m| m.ends_with("(over)")),
            "[{}] cordon's RSS with {CONNECTIONS} stalled connections, bound {RSS_BOUND_KIB} KiB: {measured:?}",
            mode.as_str()
        );
    });
}

/// Past its 256 connections at once, the proxy refuses a client at once
/// and says why, in the client's protocol (HTTP 503 with the reason, SOCKS5
/// "general failure"), and records the refusal with the destination asked
/// for; the refused connections never reach the server. Control: once one
/// connection closes, the next one is served.
#[test]
fn past_its_connection_cap_the_proxy_refuses_with_a_reason() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let server = cordon_testkit::StaticServer::start(std::path::Path::new("/nonexistent"));
    let allow = format!("127.0.0.1:{}", server.port);
    let script = r#"
import os, socket, sys, time
port = int(sys.argv[1])
host, pport = os.environ["http_proxy"][len("http://"):].rsplit(":", 1)
def head_of(s):
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        got = s.recv(1)
        if not got:
            break
        head += got
    return head
def connect():
    s = socket.create_connection((host, int(pport)))
    s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s, head_of(s)
idle = []
for _ in range(256):
    s, head = connect()
    assert head.startswith(b"HTTP/1.1 200"), head
    idle.append(s)
s, head = connect()
body = s.recv(4096).decode()
print(head.split(b"\r\n")[0].decode())
print(body, end="")
s = socket.create_connection((host, int(pport)))
s.sendall(b"\x05\x01\x00")
assert s.recv(2) == b"\x05\x00"
s.sendall(b"\x05\x01\x00\x01" + bytes([127, 0, 0, 1]) + port.to_bytes(2, "big"))
print("socks reply", s.recv(10)[1])
idle.pop().close()
for _ in range(200):
    s, head = connect()
    if head.startswith(b"HTTP/1.1 200"):
        print("after one closed:", head.split(b"\r\n")[0].decode())
        break
    time.sleep(0.05)
"#;
    each_mode(sandbox_modes!(support), |mode| {
        let before = server.accepted();
        let out = run_via_proxy(mode)
            .args(["--json", "--net", &allow, "--", python, "-c", script, &server.port.to_string()])
            .run();
        let r = out.json();
        assert_eq!(r["ok"], true, "[{}] {out}", mode.as_str());
        let text: Vec<&str> =
            r["logs"]["lines"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
        let reason =
            "refused: the run already has 256 connections open through the proxy, its limit; close one and retry";
        assert_eq!(
            text,
            [
                "HTTP/1.1 503 Service Unavailable",
                &format!("cordon proxy: {reason}"),
                "socks reply 1",
                "after one closed: HTTP/1.1 200 Connection established",
            ],
            "[{}] {out}",
            mode.as_str()
        );
        // Host side: 256 tunnels and the one after a close; no refused one.
        assert!(
            cordon_testkit::poll_until(Duration::from_secs(10), || server.accepted() - before == 257),
            "[{}] the server accepted {} connections",
            mode.as_str(),
            server.accepted() - before
        );
        let refused: Vec<&serde_json::Value> =
            r["network"].as_array().unwrap().iter().filter(|c| c["allowed"] == false).collect();
        assert!(refused.len() >= 2, "[{}] {refused:?}", mode.as_str());
        for c in &refused {
            assert_eq!((c["host"].as_str(), c["port"].as_u64()), (Some("127.0.0.1"), Some(u64::from(server.port))));
            assert_eq!(c["error"].as_str(), Some(reason), "{c}");
        }
        let protocols: Vec<&str> = refused.iter().filter_map(|c| c["protocol"].as_str()).collect();
        assert!(protocols.contains(&"connect") && protocols.contains(&"socks5"), "{protocols:?}");
    });
}
