//! Connections and descriptors (review s9 F7): a client holding many idle
//! or slow connections makes other clients wait for a connection, never an
//! execution fail for want of a descriptor.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cordon_testkit::poll_until;
use serde_json::json;

use super::{read_response, Options, Service};

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
