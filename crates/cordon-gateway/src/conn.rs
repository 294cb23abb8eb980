//! Limits on one connection and on one peer (review s10 R2): the
//! write-progress timeout ([`SendTimeout`], `send_timeout_ms`), the
//! per-peer connection cap ([`Peers`], `max_connections_per_peer`,
//! `peer_cap_exempt`), and the rate-limited log lines of both
//! ([`LogGate`]).
//!
//! Without them, a client that sends pipelined requests and never reads
//! the answers kept its connection, and its `max_connections` slot, for
//! good: no timeout covered writing a response. Pipelining itself is
//! bounded by hyper: a connection's next request is read only once the
//! answer to the previous one is written, so requests queued behind an
//! unread answer stay in hyper's read buffer (at most `max_header_bytes`)
//! and the kernel's receive buffer.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose writes must make progress: once a write (or flush or
/// shutdown) has waited `timeout` without the peer taking a byte, it fails
/// with `TimedOut`, which ends the connection. Each write that goes through
/// starts the wait over, so a slow client that keeps reading gets its whole
/// answer however long it takes; one whose receive window stays shut is
/// cut off after `timeout` (nginx's `send_timeout`).
pub struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Running while a write is waiting for the peer.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    tripped: Arc<AtomicBool>,
}

impl<S> SendTimeout<S> {
    /// `inner` with the timeout; [`SendTimeout::tripped`] tells whether it
    /// ended the connection.
    pub fn new(inner: S, timeout: Duration) -> SendTimeout<S> {
        SendTimeout { inner, timeout, stalled: None, tripped: Arc::new(AtomicBool::new(false)) }
    }

    /// Set once a write has failed for want of progress (shared: read it
    /// after the connection has ended).
    pub fn tripped(&self) -> Arc<AtomicBool> {
        self.tripped.clone()
    }

    fn progress<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stalled.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.tripped.store(true, Ordering::Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer took no byte of the answer for {} ms (send_timeout_ms)", timeout.as_millis()),
                )))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(cx, polled)
    }
}

/// An address range (`10.0.0.0/8`, `::1`, `2001:db8::/32`) in
/// `peer_cap_exempt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl std::str::FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Net, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("`{s}` is not an IP address or range"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{s}`: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Net { addr, prefix })
    }
}

/// `ip`, an IPv4-mapped IPv6 address as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The peer a connection is counted against: its IPv4 address, or the /64
/// of its IPv6 address (the smallest block a site or host is given: one
/// host can use every address in it).
fn peer_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// How a peer's connection is shown in a log line (`/64` for IPv6).
pub fn peer_label(ip: IpAddr) -> String {
    match peer_key(ip) {
        IpAddr::V6(k) => format!("{k}/64"),
        v4 => v4.to_string(),
    }
}

/// The connections each peer has open, against `max_connections_per_peer`.
pub struct Peers {
    cap: u32,
    exempt: Vec<Net>,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// A connection counted against its peer; gives its place back when dropped.
pub struct PeerSlot {
    peers: Arc<Peers>,
    key: IpAddr,
}

/// The peer already has `max_connections_per_peer` connections open.
#[derive(Debug)]
pub struct AtCap {
    /// The cap.
    pub cap: u32,
}

impl Peers {
    /// At most `cap` connections per peer, peers in `exempt` not counted.
    pub fn new(cap: u32, exempt: Vec<Net>) -> Arc<Peers> {
        Arc::new(Peers { cap, exempt, open: Mutex::new(HashMap::new()) })
    }

    /// Counts a new connection of `ip`: `None` when the peer is exempt.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Option<PeerSlot>, AtCap> {
        if self.exempt.iter().any(|n| n.contains(ip)) {
            return Ok(None);
        }
        let key = peer_key(ip);
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= self.cap {
            return Err(AtCap { cap: self.cap });
        }
        *n += 1;
        Ok(Some(PeerSlot { peers: self.clone(), key }))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// At most one log line a second for one kind of event; the lines left out
/// are counted in the next one (an attacker reconnecting in a loop must not
/// fill the log).
#[derive(Default)]
pub struct LogGate {
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogGate {
    /// Logs `line()` unless a line was logged less than a second ago.
    pub fn log(&self, line: impl FnOnce() -> String) {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if s.0.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
            s.1 += 1;
            return;
        }
        let left_out = std::mem::take(&mut s.1);
        s.0 = Some(now);
        drop(s);
        if left_out == 0 {
            eprintln!("cordon serve: {}", line());
        } else {
            eprintln!("cordon serve: {} ({left_out} more like it since the last such line, not logged)", line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn ranges_match_by_prefix_and_mapped_addresses_as_ipv4() {
        let lo: Net = "127.0.0.0/8".parse().expect("range");
        assert!(lo.contains(ip("127.0.0.1")) && lo.contains(ip("127.255.0.9")) && lo.contains(ip("::ffff:127.0.0.2")));
        assert!(!lo.contains(ip("128.0.0.1")) && !lo.contains(ip("::1")));
        let one: Net = "::1".parse().expect("address");
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        let all: Net = "0.0.0.0/0".parse().expect("range");
        assert!(all.contains(ip("8.8.8.8")));
        assert!("10.0.0.0/33".parse::<Net>().is_err() && "nope".parse::<Net>().is_err());
    }

    #[test]
    fn a_peer_is_held_to_its_cap_and_an_ipv6_peer_is_its_64() {
        let peers = Peers::new(2, vec!["127.0.0.0/8".parse().expect("range")]);
        let a = peers.admit(ip("10.0.0.1")).expect("first").expect("counted");
        let _b = peers.admit(ip("::ffff:10.0.0.1")).expect("second").expect("counted");
        assert!(peers.admit(ip("10.0.0.1")).is_err(), "third");
        assert!(peers.admit(ip("10.0.0.2")).is_ok(), "another peer");
        assert!(peers.admit(ip("127.0.0.1")).expect("exempt").is_none());
        drop(a);
        assert!(peers.admit(ip("10.0.0.1")).is_ok(), "a place was given back");
        let _c = peers.admit(ip("2001:db8::1")).expect("first");
        let _d = peers.admit(ip("2001:db8::2")).expect("second");
        assert!(peers.admit(ip("2001:db8::ffff:1")).is_err(), "the same /64");
        assert!(peers.admit(ip("2001:db8:0:1::1")).is_ok(), "another /64");
        assert_eq!(peer_label(ip("2001:db8::7")), "2001:db8::/64");
    }
}
