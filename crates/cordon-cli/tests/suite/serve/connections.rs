//! Connections and descriptors (review s9 F7): a client holding many idle
//! or slow connections makes other clients wait for a connection, never an
//! execution fail for want of a descriptor.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cordon_testkit::poll_until;
use serde_json::json;

use super::{http, read_response, Options, Service};

/// The service's open descriptors that are sockets.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

/// Keeps `n` connections to `addr` open, each with a partial request head,
/// opening a new one for each the service closes, until `stop`; counts the
/// connections open.
fn flood(addr: SocketAddr, n: usize, stop: &AtomicBool, open: &AtomicUsize) {
    let mut held: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    while !stop.load(Ordering::SeqCst) {
        for slot in &mut held {
            // Alive while it has nothing to read: an end or an answer (the
            // service gave up on it) means it is done.
            let alive = slot
                .as_ref()
                .is_some_and(|c| matches!(c.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
            if !alive {
                *slot = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok().and_then(|mut c| {
                    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").ok()?;
                    c.set_nonblocking(true).ok()?;
                    Some(c)
                });
            }
        }
        open.store(held.iter().flatten().count(), Ordering::SeqCst);
        // Pacing the sweep over the sockets, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sets the flag when dropped (a failed assertion ends the flood too).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The reproducer (review s9 F7): under a 200 open files limit, a client
/// holding 180 connections with partial request heads (renewing each the
/// service closes) left no descriptors for an execution ("cannot create
/// the command's pipes: Too many open files"). Now the service serves at
/// most half the limit in connections; the rest wait in the listen backlog
/// (80 of its 128 places, so the execution's connection waits there too,
/// in order), and the execution runs once its connection is taken.
#[test]
fn a_flood_of_idle_connections_waits_in_the_backlog_and_an_execution_still_runs() {
    let s = Service::start_with(
        "serve-flood",
        Options { nofile: Some(200), server: "header_timeout_ms = 2000\n".into(), ..Options::default() },
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("open files line");
    assert_eq!(line.split_whitespace().collect::<Vec<_>>()[3..5], ["200", "200"], "{line}");
    assert!(s.log().contains("at most 100 connections at once (open files limit 200)"), "{}", s.log());
    let token = s.access_token();
    let control = s.execute(&token, "empty", json!({}), Some(60_000));
    assert_eq!(control.status, 200, "control: {control:?}");
    let stop = AtomicBool::new(false);
    let open = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        let addr = s.addr;
        let (stop, open) = (&stop, &open);
        sc.spawn(move || flood(addr, 180, stop, open));
        let stopping = StopOnDrop(stop);
        // The flood holds every connection the service serves, and more
        // wait in the backlog.
        let full =
            poll_until(Duration::from_secs(60), || open.load(Ordering::SeqCst) >= 170 && sockets_of(s.pid()) >= 100);
        let r = full.then(|| s.execute(&token, "empty", json!({}), Some(60_000)));
        drop(stopping);
        assert!(
            full,
            "the flood never filled the service: {} open, {} sockets",
            open.load(Ordering::SeqCst),
            sockets_of(s.pid())
        );
        let r = r.expect("ran");
        assert_eq!(r.status, 200, "{r:?}\n{}", s.log());
        assert_eq!(r.json()["ok"], true, "{r:?}");
    });
}

/// A body trickled a byte at a time held its connection for as long as the
/// request's time limit (max_wait_ms + 30 s); now `body_timeout_ms` (default
/// 10 s) ends it with 408.
#[test]
fn a_trickled_body_is_cut_off_with_408() {
    let s = Service::start("serve-trickle");
    let mut c = TcpStream::connect(s.addr).expect("connect");
    c.write_all(
        b"POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ng",
    )
    .expect("head");
    c.set_read_timeout(Some(Duration::from_secs(120))).expect("read timeout");
    let mut writer = c.try_clone().expect("clone");
    let r = std::thread::scope(|sc| {
        sc.spawn(move || {
            // One byte a second until the service hangs up.
            for _ in 0..999 {
                std::thread::sleep(Duration::from_secs(1));
                if writer.write_all(b"r").is_err() {
                    break;
                }
            }
        });
        let r = read_response(&mut c);
        let _ = c.shutdown(std::net::Shutdown::Both);
        r
    });
    assert_eq!(r.status, 408, "{r:?}");
    assert!(r.error().1.contains("body_timeout_ms (10000 ms)"), "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
}

/// A connection to `addr` from `source` (any loopback address: the whole
/// of 127.0.0.0/8 is on `lo`). With `rcvbuf`, a client on a slow link: a
/// receive buffer of that many bytes and segments of 1400 bytes (set before
/// connecting, so the window the client offers is small from the start,
/// and the service's send buffer is sized for Ethernet's segments, not
/// loopback's 64 KiB ones, which would let the kernel take a whole
/// megabyte answer off the service at once).
fn connect_from(addr: SocketAddr, source: std::net::Ipv4Addr, rcvbuf: Option<i32>) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = addr else { panic!("the service listens on IPv4 loopback: {addr}") };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).expect("AF_INET"),
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).expect("size");
    // SAFETY: socket with integer arguments; a valid descriptor is owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    if let Some(size) = rcvbuf {
        let optlen = libc::socklen_t::try_from(std::mem::size_of::<i32>()).expect("size");
        // SAFETY: `size` outlives the call; optlen is its size.
        let r = unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, std::ptr::from_ref(&size).cast(), optlen)
        };
        assert_eq!(r, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let mss: i32 = 1400;
        // SAFETY: `mss` outlives the call; optlen is its size.
        let r = unsafe {
            libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, std::ptr::from_ref(&mss).cast(), optlen)
        };
        assert_eq!(r, 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
    }
    let from = sockaddr(source, 0);
    // SAFETY: `from` is a sockaddr_in of `len` bytes that outlives the call.
    let r = unsafe { libc::bind(fd, std::ptr::from_ref(&from).cast(), len) };
    assert_eq!(r, 0, "bind {source}: {}", std::io::Error::last_os_error());
    let to = sockaddr(*to.ip(), to.port());
    // SAFETY: as above.
    let r = unsafe { libc::connect(fd, std::ptr::from_ref(&to).cast(), len) };
    assert_eq!(r, 0, "connect {addr}: {}", std::io::Error::last_os_error());
    TcpStream::from(owned)
}

/// `cordon_connections_closed_total{limit="LIMIT"}` of the service (0 when
/// not yet counted), asked from 127.0.0.3 (a peer no test holds to its cap).
fn closed_by(s: &Service, limit: &str) -> u64 {
    let mut c = connect_from(s.addr, std::net::Ipv4Addr::new(127, 0, 0, 3), None);
    c.set_read_timeout(Some(Duration::from_secs(120))).expect("read timeout");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let text = read_response(&mut c).body;
    let key = format!("cordon_connections_closed_total{{limit=\"{limit}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&key)?.trim().parse().ok()).unwrap_or(0)
}

/// Whether the service has ended `c`: everything it sent read, then the end
/// of the stream (or a reset); waits up to 60 s for it.
fn ended_by_service(c: &mut TcpStream) -> bool {
    use std::io::Read;
    c.set_read_timeout(Some(Duration::from_secs(60))).expect("read timeout");
    let mut buf = [0u8; 65536];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// Review s10 R2: clients that pipeline requests and never read the
/// answers held their connections, and so every one of `max_connections`,
/// for good (no timeout covered writing an answer): `/healthz` of anyone
/// else went unanswered for as long as they stayed. Now a connection whose
/// answer the client takes no byte of for `send_timeout_ms` is closed, its
/// place goes to the next client, and the log and `/metrics` say which
/// limit closed it.
#[test]
fn clients_that_never_read_their_answers_lose_their_connections_and_others_are_served() {
    let s = Service::start_with(
        "serve-slow-read",
        Options { server: "max_connections = 4\nsend_timeout_ms = 500\n".into(), ..Options::default() },
    );
    let pipelined = b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(300);
    let mut attackers: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = connect_from(s.addr, std::net::Ipv4Addr::LOCALHOST, Some(1024));
            c.write_all(&pipelined).expect("send the pipelined requests");
            c
        })
        .collect();
    // Each holds one of the service's 4 connections: it has been answered
    // (a first byte waits in its buffer, unread).
    // (Or it has been served and already closed: only the service ends it.)
    for c in &attackers {
        c.set_read_timeout(Some(Duration::from_secs(60))).expect("read timeout");
        let served = match c.peek(&mut [0u8; 1]) {
            Ok(n) => n == 1,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(served, "an attacker's connection was never served");
    }
    // Another client is answered: the attackers' connections were closed.
    let r = http(s.addr, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    let counted = poll_until(Duration::from_secs(30), || closed_by(&s, "send_timeout_ms") >= 4);
    assert!(counted, "closed by send_timeout_ms: {}", closed_by(&s, "send_timeout_ms"));
    // (Drained only now: reading would let a connection not yet cut off
    // make progress.)
    for c in &mut attackers {
        assert!(ended_by_service(c), "an attacker's connection is still open");
    }
    let log = s.log_with(&["it took no byte of its answer for 500 ms (send_timeout_ms)"]);
    assert!(log.contains("closed the connection of 127.0.0.1:"), "{log}");
}

/// The other side of `send_timeout_ms`: a client on a slow link that keeps
/// reading gets its whole answer, however long it takes in all (here some
/// 2.5 s of pauses against a 1 s timeout), since every byte it takes starts
/// the wait over. Control: the same client pausing 3 s once, mid-answer,
/// is cut off (so the answer is large enough to stall the service's
/// writes, and the pauses are what the timeout sees).
#[test]
fn a_slow_client_that_keeps_reading_gets_its_whole_large_result() {
    use std::io::Read;
    let s = Service::start_with(
        "serve-slow-link",
        Options { server: "send_timeout_ms = 1000\n".into(), ..Options::default() },
    );
    let token = s.access_token();
    let blob = "x".repeat(900_000);
    let body =
        json!({"plugin": super::PLUGIN, "handler": "echo", "input": {"blob": blob}, "wait_ms": 60_000}).to_string();
    let request = format!(
        "POST /v1/executions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Reads 8 KiB at a time with `pause` between reads (pacing a slow
    // link, not a wait for a condition), after `stall` once past 100 KiB.
    let fetch = |pause: Duration, stall: Duration| {
        let mut c = connect_from(s.addr, std::net::Ipv4Addr::LOCALHOST, Some(8192));
        c.write_all(request.as_bytes()).expect("send");
        c.set_read_timeout(Some(Duration::from_secs(120))).expect("read timeout");
        let (mut got, mut buf, mut stalled) = (vec![], [0u8; 8192], false);
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if !stalled && got.len() > 100 << 10 {
                stalled = true;
                std::thread::sleep(stall);
            }
            std::thread::sleep(pause);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let whole = fetch(Duration::from_millis(20), Duration::ZERO);
    let (head, answer) =
        whole.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no answer: {}", &whole[..whole.len().min(500)]));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let v: serde_json::Value =
        serde_json::from_str(answer).unwrap_or_else(|e| panic!("not the whole answer ({} bytes): {e}", answer.len()));
    assert_eq!(v["data"]["blob"].as_str().map(str::len), Some(900_000), "{head}");
    assert_eq!(closed_by(&s, "send_timeout_ms"), 0);
    // Control.
    let cut = fetch(Duration::from_millis(20), Duration::from_secs(3));
    assert!(cut.len() < whole.len() - 100_000, "the stalled client got {} of {} bytes", cut.len(), whole.len());
    let counted = poll_until(Duration::from_secs(30), || closed_by(&s, "send_timeout_ms") == 1);
    assert!(counted, "closed by send_timeout_ms: {}", closed_by(&s, "send_timeout_ms"));
}

/// A client reading steadily at ~48 KB/s is not cut off by a 1 s
/// `send_timeout_ms`: without `TCP_NOTSENT_LOWAT` the kernel woke the
/// service's blocked write only once a third of the send buffer was free,
/// and the send buffer of such a connection autotunes to ~1 MB, so no write
/// went through for seconds while the client kept reading (f30593f cut a
/// steady 32 KB/s reader under a 2 s timeout).
#[test]
fn a_steady_reader_below_the_send_buffer_drain_rate_is_not_cut_off() {
    use std::io::Read;
    let s = Service::start_with(
        "serve-steady",
        Options { server: "send_timeout_ms = 1000\n".into(), ..Options::default() },
    );
    let mut c = connect_from(s.addr, std::net::Ipv4Addr::LOCALHOST, Some(4096));
    let mut requests = b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(39);
    requests.extend_from_slice(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    c.write_all(&requests).expect("send");
    c.set_read_timeout(Some(Duration::from_secs(120))).expect("read timeout");
    // 8 KiB every 170 ms (pacing a link, not a wait for a condition).
    let (mut got, mut buf) = (vec![], [0u8; 8192]);
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        std::thread::sleep(Duration::from_millis(170));
    }
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 40, "{} bytes", got.len());
    assert!(text.trim_end().ends_with('}'), "the last answer is cut: {} bytes", got.len());
    assert_eq!(closed_by(&s, "send_timeout_ms"), 0);
}

/// One peer cannot hold every connection: past `max_connections_per_peer`
/// its new connections are answered 503 `too_many_connections` and closed,
/// while another peer (127.0.0.2 here: loopback is held to the cap only
/// with `peer_cap_exempt = []`) is served, and the peer is served again
/// once it closes one.
#[test]
fn a_peer_at_its_cap_is_refused_and_another_peer_is_served() {
    let s = Service::start_with(
        "serve-peer-cap",
        Options {
            server: "max_connections_per_peer = 2\npeer_cap_exempt = []\nheader_timeout_ms = 120000\n".into(),
            ..Options::default()
        },
    );
    assert!(
        s.log().contains("at most 2 connections per peer (max_connections_per_peer; not counted: none)"),
        "{}",
        s.log()
    );
    // 127.0.0.4: a peer nothing else uses (the helpers' connections from
    // 127.0.0.1 may still be counted for a moment after they end).
    let one = std::net::Ipv4Addr::new(127, 0, 0, 4);
    let two = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let get = |from| {
        let mut c = connect_from(s.addr, from, None);
        c.set_read_timeout(Some(Duration::from_secs(120))).expect("read timeout");
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
        read_response(&mut c)
    };
    // Two connections of 127.0.0.4 held open, each in the middle of a head.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = connect_from(s.addr, one, None);
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("partial head");
            c
        })
        .collect();
    let r = get(one);
    assert_eq!(r.status, 503, "{r:?}");
    let (code, message) = r.error();
    assert_eq!(code, "too_many_connections", "{r:?}");
    assert!(
        message.contains("127.0.0.4 already has 2 connections open") && message.contains("max_connections_per_peer"),
        "{message}"
    );
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    let r = get(two);
    assert_eq!(r.status, 200, "another peer: {r:?}");
    assert_eq!(closed_by(&s, "max_connections_per_peer"), 1);
    let log = s.log_with(&["refused a connection of 127.0.0.4: it has 2 open already (max_connections_per_peer)"]);
    assert!(!log.contains("refused a connection of 127.0.0.2"), "{log}");
    // One closed: 127.0.0.4 is served again (once the service has seen it
    // close).
    drop(held.pop());
    let served = poll_until(Duration::from_secs(30), || get(one).status == 200);
    assert!(served, "127.0.0.4 was not served after closing one: {:?}", get(one));
    drop(held);
}
