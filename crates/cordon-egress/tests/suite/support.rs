//! Fixtures: servers on 127.0.0.1 that the tests start themselves, a proxy
//! on an ephemeral loopback port, and the real clients (curl, python3).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cordon_core::policy::{NetPattern, NetPolicy};
use cordon_egress::{ConnectionRecord, ProxyConfig, ProxyHandle};

pub const CURL: &str = "/usr/bin/curl";
pub const PYTHON: &str = "/usr/bin/python3";

/// A policy from `--net`-style patterns. Set field by field, so a field
/// added to `NetPolicy` later keeps its default.
#[allow(clippy::field_reassign_with_default)]
pub fn policy(allow: &[&str], deny: &[&str]) -> NetPolicy {
    let parse = |list: &[&str]| list.iter().map(|p| NetPattern::parse(p).expect("pattern")).collect();
    let mut policy = NetPolicy::default();
    policy.allow = parse(allow);
    policy.deny = parse(deny);
    policy
}

/// A proxy on an ephemeral loopback port.
pub fn proxy(allow: &[&str], deny: &[&str]) -> ProxyHandle {
    proxy_with(ProxyConfig::new(policy(allow, deny)))
}

pub fn proxy_with(config: ProxyConfig) -> ProxyHandle {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy listener");
    cordon_egress::spawn(listener, config).expect("spawn proxy")
}

/// The only record a proxy wrote, after shutting it down.
pub fn only_record(proxy: ProxyHandle) -> ConnectionRecord {
    let mut records = proxy.shutdown();
    assert_eq!(records.len(), 1, "expected one record, got {records:#?}");
    records.remove(0)
}

/// One connection as the origin saw it.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The request head, verbatim.
    pub head: String,
    /// Every byte received on the connection, head and body included.
    pub received: u64,
    /// Every byte sent on the connection.
    pub sent: u64,
}

/// A small HTTP/1.1 origin server on 127.0.0.1. It keeps connections open
/// after responding (like a keep-alive server) until the peer closes, so
/// the proxy must find the end of a response from its framing.
///
/// Paths: `/bytes/N` answers N bytes; `/echo-length` answers how many body
/// bytes arrived; anything else answers `hello from origin\n`.
pub struct Origin {
    pub addr: SocketAddr,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&exchanges);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    if let Some(exchange) = serve_origin(stream) {
                        log.lock().unwrap().push(exchange);
                    }
                });
            }
        });
        Origin { addr, exchanges }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Completed exchanges so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().unwrap().clone()
    }

    /// Waits until `n` exchanges have completed.
    pub fn wait_for(&self, n: usize) -> Vec<Exchange> {
        wait_until(&format!("{n} origin exchanges"), || (self.exchanges().len() >= n).then(|| self.exchanges()))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn serve_origin(mut stream: TcpStream) -> Option<Exchange> {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let lower = head.to_ascii_lowercase();
    let content_length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap())
        .unwrap_or(0);
    let chunked = lower.contains("transfer-encoding: chunked");
    // Read the whole body before answering, as servers do.
    loop {
        let body = &buf[head_end..];
        let complete = if chunked { body.ends_with(b"0\r\n\r\n") } else { body.len() >= content_length };
        if complete {
            break;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body_len = buf.len() - head_end;
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    let body: Vec<u8> = if let Some(n) = path.strip_prefix("/bytes/") {
        (0..n.parse::<usize>().unwrap()).map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26]).collect()
    } else if path == "/echo-length" {
        format!("received {body_len} body bytes\n").into_bytes()
    } else {
        b"hello from origin\n".to_vec()
    };
    let is_head = head.starts_with("HEAD ");
    let response_head =
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut sent = 0;
    stream.write_all(response_head.as_bytes()).ok()?;
    sent += response_head.len() as u64;
    if !is_head {
        stream.write_all(&body).ok()?;
        sent += body.len() as u64;
    }
    // Keep the connection until the peer closes it, counting what arrives.
    let mut received = buf.len() as u64;
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    Some(Exchange { head, received, sent })
}

/// A TCP echo server on 127.0.0.1.
pub struct Echo {
    pub addr: SocketAddr,
}

impl Echo {
    pub fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Echo { addr }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback port whose connections hang: a listener that never accepts,
/// with its accept queue filled. The kernel drops further SYNs, so a
/// connect there times out instead of being refused. Keep the value alive
/// while it is needed.
pub struct Blackhole {
    listener: TcpListener,
    _queued: Vec<TcpStream>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind blackhole");
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        // The queue holds the listen backlog plus one; std asks for 128.
        for _ in 0..4096 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => queued.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Blackhole { listener, _queued: queued };
                }
                Err(e) => panic!("filling the blackhole's accept queue: {e}"),
            }
        }
        panic!("the accept queue of {addr} never filled");
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }
}

/// Polls `probe` until it returns something, for at most 10 s.
pub fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `request` on a fresh connection to `addr`, half-closes, and
/// returns everything read until the peer closes.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The peer may close early (a refused request); a failed write is fine.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// Sends a request without half-closing and reads the response head and
/// as many bytes as `Content-Length` says.
pub fn raw_keep_open(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while find(&buf, b"\r\n\r\n").is_none() {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed early: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// What curl did.
#[derive(Debug)]
pub struct Curl {
    /// curl's exit status.
    pub exit: i32,
    /// The final HTTP status (0 if none).
    pub status: u16,
    /// The status of the proxy's answer to CONNECT (0 if none).
    pub connect_status: u16,
    /// Header bytes curl received, as curl counts them.
    pub header_bytes: u64,
    /// The body.
    pub body: Vec<u8>,
    /// curl's error output.
    pub stderr: String,
}

impl Curl {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs `/usr/bin/curl` with `args`, no proxy variables in its environment,
/// and a 20 s limit.
pub fn curl(args: &[&str]) -> Curl {
    assert!(Path::new(CURL).exists(), "{CURL} is required by these tests (apt-get install curl)");
    let out = Command::new(CURL)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .args(["-sS", "--max-time", "20", "-o", "-"])
        .args(["-w", "%{stderr}CURLW %{http_code} %{http_connect} %{size_header}\n"])
        .args(args)
        .output()
        .expect("run curl");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let w = stderr.lines().find_map(|l| l.strip_prefix("CURLW ")).unwrap_or_else(|| panic!("no -w line: {stderr}"));
    let fields: Vec<u16> = w.split(' ').take(2).map(|f| f.parse().unwrap()).collect();
    let header_bytes = w.rsplit(' ').next().unwrap().parse().unwrap();
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status: fields[0],
        connect_status: fields[1],
        header_bytes,
        body: out.stdout,
        stderr,
    }
}

/// Runs a python3 script with `env` as its whole environment (plus PATH);
/// returns its stdout, panicking with the transcript if it fails.
pub fn python(script: &str, env: &[(&str, String)]) -> String {
    assert!(Path::new(PYTHON).exists(), "{PYTHON} is required by these tests (apt-get install python3)");
    let out = Command::new(PYTHON)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["-c", script])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python3 failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
