//! `sock_diag` netlink messages: the kernel's broadcast of destroyed TCP
//! sockets (with their final `tcp_info`), and exact lookups of one socket by
//! its addresses. Byte layouts of `linux/inet_diag.h` and `linux/tcp.h`;
//! pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use cordon_core::enforce::seccomp::SockFilter;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const INET_DIAG_MSG_LEN: usize = 72;
const INET_DIAG_INFO: u16 = 2;
/// `INET_DIAG_NOCOOKIE`: match any cookie.
const NO_COOKIE: u64 = u64::MAX;

/// `TCP_TIME_WAIT` in `tcpi_state`/`idiag_state`.
pub const TCP_TIME_WAIT: u8 = 6;
/// `TCP_CLOSE_WAIT`.
const TCP_CLOSE_WAIT: u8 = 8;
/// `TCP_LAST_ACK`.
const TCP_LAST_ACK: u8 = 9;
/// `TCP_CLOSING`.
const TCP_CLOSING: u8 = 11;

/// The counters of `tcp_info` cordon reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// `tcpi_state` (at the time of the message).
    pub state: u8,
    /// `tcpi_bytes_acked`: sequence space acknowledged by the peer,
    /// including one for the SYN and one for a FIN.
    pub bytes_acked: u64,
    /// `tcpi_bytes_received`: sequence space received in order, including
    /// one for the peer's FIN.
    pub bytes_received: u64,
    /// `tcpi_bytes_sent`: payload sent, retransmissions included.
    pub bytes_sent: u64,
    /// `tcpi_bytes_retrans`: payload retransmitted.
    pub bytes_retrans: u64,
}

impl TcpCounters {
    /// Payload bytes sent, each counted once.
    pub fn payload_up(&self) -> u64 {
        self.bytes_sent.saturating_sub(self.bytes_retrans)
    }

    /// Whether our FIN was acknowledged: the acknowledged sequence space is
    /// the SYN, every payload byte and the FIN.
    pub fn fin_acked(&self) -> bool {
        self.bytes_acked == self.payload_up() + 2
    }

    /// Payload bytes received, given whether the peer's FIN was received.
    pub fn payload_down(&self, peer_fin: bool) -> u64 {
        self.bytes_received.saturating_sub(u64::from(peer_fin))
    }

    /// Whether the state says the peer's FIN has been received.
    pub fn state_has_peer_fin(state: u8) -> bool {
        matches!(state, TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING | TCP_TIME_WAIT)
    }
}

/// One socket as a `sock_diag` message describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    /// `idiag_state` (for a time-wait socket, its sub-state).
    pub state: u8,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// `idiag_cookie`.
    pub cookie: u64,
    /// `INET_DIAG_INFO`, when present.
    pub counters: Option<TcpCounters>,
}

/// Why a netlink answer is not a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagReply {
    /// A socket.
    Socket(DiagSocket),
    /// `NLMSG_ERROR` with this errno (0: an acknowledgement).
    Error(i32),
    /// `NLMSG_DONE`, or a message cordon does not read.
    Other,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Splits a netlink datagram into its messages and reads each.
pub fn parse(datagram: &[u8]) -> Vec<DiagReply> {
    let mut out = vec![];
    let mut at = 0;
    while at + NLMSG_HDRLEN <= datagram.len() {
        let Some(len) = u32_at(datagram, at).and_then(|l| usize::try_from(l).ok()) else { break };
        if len < NLMSG_HDRLEN || at + len > datagram.len() {
            break;
        }
        let kind = u16_at(datagram, at + 4).unwrap_or(0);
        let body = &datagram[at + NLMSG_HDRLEN..at + len];
        out.push(match kind {
            NLMSG_ERROR => DiagReply::Error(-(u32_at(body, 0).map_or(0, |e| e as i32))),
            NLMSG_DONE => DiagReply::Other,
            SOCK_DIAG_BY_FAMILY => parse_socket(body).map_or(DiagReply::Other, DiagReply::Socket),
            _ => DiagReply::Other,
        });
        at += align4(len);
    }
    out
}

fn parse_socket(b: &[u8]) -> Option<DiagSocket> {
    if b.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let family = i32::from(b[0]);
    let state = b[1];
    let sport = u16::from_be_bytes([b[4], b[5]]);
    let dport = u16::from_be_bytes([b[6], b[7]]);
    let ip = |at: usize| -> Option<IpAddr> {
        let raw: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
        Some(match family {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
            _ => IpAddr::V6(Ipv6Addr::from(raw)),
        })
    };
    let (src, dst) = (ip(8)?, ip(24)?);
    let cookie = u64::from(u32_at(b, 44)?) | (u64::from(u32_at(b, 48)?) << 32);
    let mut counters = None;
    let mut at = INET_DIAG_MSG_LEN;
    while at + 4 <= b.len() {
        let len = usize::from(u16_at(b, at)?);
        let kind = u16_at(b, at + 2)?;
        if len < 4 || at + len > b.len() {
            break;
        }
        if kind == INET_DIAG_INFO {
            let info = &b[at + 4..at + len];
            counters = Some(TcpCounters {
                state: *info.first()?,
                bytes_acked: u64_at(info, 120).unwrap_or(0),
                bytes_received: u64_at(info, 128).unwrap_or(0),
                bytes_sent: u64_at(info, 200).unwrap_or(0),
                bytes_retrans: u64_at(info, 208).unwrap_or(0),
            });
        }
        at += align4(len);
    }
    Some(DiagSocket {
        state,
        local: SocketAddr::new(src, sport),
        remote: SocketAddr::new(dst, dport),
        cookie,
        counters,
    })
}

/// Most destination addresses [`destroy_filter`] names one by one (each
/// costs the kernel one comparison per report, all in one conditional
/// jump's reach); past that it keeps every report.
pub const MAX_FILTERED_ADDRESSES: usize = 254;

const BPF_LD_B_ABS: u16 = 0x30;
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JA: u16 = 0x05;
const BPF_RET_K: u16 = 0x06;
/// Where an `inet_diag_msg`'s fields start in a netlink message.
const AT_FAMILY: u32 = 16;
const AT_DST: u32 = 40;

/// The filter that keeps every report (see [`destroy_filter`]).
pub fn keep_every_report() -> Vec<SockFilter> {
    vec![SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k: u32::MAX }]
}

/// A classic-BPF program for the destroy broadcast that keeps the reports
/// of sockets whose remote address is one of `peers` (an IPv4 peer also as
/// the v4-mapped remote of an IPv6 socket), whatever their ports, and drops
/// most other TCP closes on the host before they are queued. With no peer
/// it keeps nothing; with more than [`MAX_FILTERED_ADDRESSES`] addresses,
/// everything ([`keep_every_report`]).
///
/// Ports are not checked: the kernel's report of a socket closed with
/// `SO_LINGER` {1, 0} (a reset) carries remote port 0 (`tcp_disconnect`
/// clears it before the socket is freed), so a port check dropped those
/// reports and their connections' slots never came back (review s9 F3);
/// and one comparison per address, not two forms of several per
/// address and port, keeps the program small enough to attach for many
/// destinations (review s9 F5: the kernel refused to attach it for 61,
/// `ENOMEM` from the socket's option memory). A remote address of zero
/// is kept too, should the kernel ever clear it as well.
///
/// It compares one word of the remote address: the first for an IPv4
/// socket, the last for an IPv6 one (a v4-mapped address's IPv4 part).
/// Guarantee: the report of a socket cordon connected to one of `peers`
/// is kept. Not a guarantee: that only cordon's are kept; another socket
/// on the host to the same address (or, for IPv6, an address with the
/// same last word) is kept too, and ignored by cookie.
pub fn destroy_filter(peers: &[IpAddr]) -> Vec<SockFilter> {
    let ret = |k| SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k };
    if peers.is_empty() {
        return vec![ret(0)];
    }
    let mut words: Vec<u32> = vec![0];
    for peer in peers {
        let word = match peer.to_canonical() {
            IpAddr::V4(v4) => u32::from(v4),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                u32::from_be_bytes([o[12], o[13], o[14], o[15]])
            }
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    if words.len() > MAX_FILTERED_ADDRESSES + 1 {
        return keep_every_report();
    }
    let n = words.len();
    let family = u32::try_from(libc::AF_INET6).unwrap_or(10);
    let mut program = vec![
        SockFilter { code: BPF_LD_B_ABS, jt: 0, jf: 0, k: AT_FAMILY },
        // IPv6: the next instruction, else the one after the jump.
        SockFilter { code: BPF_JEQ_K, jt: 0, jf: 2, k: family },
        SockFilter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: AT_DST + 12 },
        SockFilter { code: BPF_JA, jt: 0, jf: 0, k: 1 },
        SockFilter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: AT_DST },
    ];
    for (i, &word) in words.iter().enumerate() {
        // A match skips the later comparisons and the dropping return.
        let to_keep = u8::try_from(n - i).unwrap_or(u8::MAX);
        program.push(SockFilter { code: BPF_JEQ_K, jt: to_keep, jf: 0, k: word });
    }
    program.push(ret(0));
    program.push(ret(u32::MAX));
    program
}

/// What an exact lookup asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// The socket's `tcp_info` (a live socket; its cookie must match).
    Counters(u64),
    /// Only its state (a time-wait socket, whose cookie is not the one the
    /// live socket had).
    State,
}

/// A `SOCK_DIAG_BY_FAMILY` request for the one TCP socket with these
/// addresses (`local` is the host-side end cordon connected).
pub fn lookup_request(seq: u32, local: SocketAddr, remote: SocketAddr, want: Want) -> Vec<u8> {
    let family = if local.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let mut b = vec![0u8; NLMSG_HDRLEN + 56];
    let len = u32::try_from(b.len()).unwrap_or(0);
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    let r = NLMSG_HDRLEN;
    b[r] = u8::try_from(family).unwrap_or(0);
    b[r + 1] = u8::try_from(libc::IPPROTO_TCP).unwrap_or(6);
    let (ext, cookie) = match want {
        Want::Counters(cookie) => (1u8 << (INET_DIAG_INFO - 1), cookie),
        Want::State => (0, NO_COOKIE),
    };
    b[r + 2] = ext;
    b[r + 4..r + 8].copy_from_slice(&u32::MAX.to_ne_bytes());
    let id = r + 8;
    b[id..id + 2].copy_from_slice(&local.port().to_be_bytes());
    b[id + 2..id + 4].copy_from_slice(&remote.port().to_be_bytes());
    let put = |b: &mut [u8], at: usize, ip: IpAddr| match ip {
        IpAddr::V4(v4) => b[at..at + 4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b[at..at + 16].copy_from_slice(&v6.octets()),
    };
    put(&mut b, id + 4, local.ip());
    put(&mut b, id + 20, remote.ip());
    let (lo, hi) = split(cookie);
    b[id + 40..id + 44].copy_from_slice(&lo.to_ne_bytes());
    b[id + 44..id + 48].copy_from_slice(&hi.to_ne_bytes());
    b
}

/// A cookie as the kernel stores it: low and high 32 bits.
fn split(cookie: u64) -> (u32, u32) {
    (u32::try_from(cookie & u64::from(u32::MAX)).unwrap_or(0), u32::try_from(cookie >> 32).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as the kernel sends it, built field by field.
    fn message(
        family: i32,
        state: u8,
        local: SocketAddr,
        remote: SocketAddr,
        cookie: u64,
        info: Option<[u64; 4]>,
    ) -> Vec<u8> {
        let mut body = vec![0u8; INET_DIAG_MSG_LEN];
        body[0] = u8::try_from(family).unwrap();
        body[1] = state;
        body[4..6].copy_from_slice(&local.port().to_be_bytes());
        body[6..8].copy_from_slice(&remote.port().to_be_bytes());
        let put = |b: &mut [u8], at: usize, ip: IpAddr| match ip {
            IpAddr::V4(v4) => b[at..at + 4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => b[at..at + 16].copy_from_slice(&v6.octets()),
        };
        put(&mut body, 8, local.ip());
        put(&mut body, 24, remote.ip());
        let (lo, hi) = split(cookie);
        body[44..48].copy_from_slice(&lo.to_ne_bytes());
        body[48..52].copy_from_slice(&hi.to_ne_bytes());
        if let Some([acked, received, sent, retrans]) = info {
            let mut tcp = vec![0u8; 232];
            tcp[0] = 7;
            tcp[120..128].copy_from_slice(&acked.to_ne_bytes());
            tcp[128..136].copy_from_slice(&received.to_ne_bytes());
            tcp[200..208].copy_from_slice(&sent.to_ne_bytes());
            tcp[208..216].copy_from_slice(&retrans.to_ne_bytes());
            body.extend_from_slice(&u16::try_from(4 + tcp.len()).unwrap().to_ne_bytes());
            body.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
            body.extend_from_slice(&tcp);
        }
        let mut m = vec![0u8; NLMSG_HDRLEN];
        m[0..4].copy_from_slice(&u32::try_from(NLMSG_HDRLEN + body.len()).unwrap().to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn destroy_messages_are_read() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut dgram = message(libc::AF_INET, 7, local, remote, 0x1_0000_0002, Some([12347, 778, 12345, 0]));
        dgram.extend(message(libc::AF_INET6, 6, "[::1]:1".parse().unwrap(), "[::1]:2".parse().unwrap(), 5, None));
        let got = parse(&dgram);
        assert_eq!(got.len(), 2);
        let DiagReply::Socket(s) = got[0] else { panic!("{got:?}") };
        assert_eq!((s.local, s.remote, s.cookie), (local, remote, 0x1_0000_0002));
        let c = s.counters.unwrap();
        // The client closed first: SYN and FIN acknowledged, the server's
        // FIN received.
        assert_eq!(c.payload_up(), 12345);
        assert!(c.fin_acked());
        assert_eq!(c.payload_down(true), 777);
        let DiagReply::Socket(tw) = got[1] else { panic!() };
        assert_eq!((tw.state, tw.counters), (TCP_TIME_WAIT, None));
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..200 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = parse(&junk);
        }
        let mut huge = message(libc::AF_INET, 1, "1.2.3.4:1".parse().unwrap(), "5.6.7.8:2".parse().unwrap(), 1, None);
        huge[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse(&huge).is_empty());
    }

    /// Reads every report queued on `sock` into `seen` (cookie, remote).
    fn drain(sock: std::os::fd::BorrowedFd<'_>, seen: &mut Vec<(u64, SocketAddr)>) {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = cordon_core::sys::notify::recv_nonblocking(sock, &mut buf) {
            for reply in parse(&buf[..n]) {
                if let DiagReply::Socket(s) = reply {
                    seen.push((s.cookie, s.remote));
                }
            }
        }
    }

    fn cookie(sock: std::os::fd::BorrowedFd<'_>) -> u64 {
        let mut c = [0u8; 8];
        cordon_core::sys::notify::getsockopt_bytes(sock, libc::SOL_SOCKET, libc::SO_COOKIE, &mut c).unwrap();
        u64::from_ne_bytes(c)
    }

    /// Review s9 F3 and F5. The filter keeps the reports of sockets to its
    /// peers' addresses, whatever the ports, including those of sockets
    /// closed with a reset (`SO_LINGER` {1, 0} before any data), whose
    /// report carries remote port 0 (asserted below): the filter by address
    /// and port dropped them, and their slots never came back. Controls: the same broadcast filtered for another
    /// address keeps none of them, and the filtered one drops that
    /// address's.
    #[test]
    fn the_destroy_filter_keeps_the_reports_of_sockets_to_its_peers_addresses_whatever_the_port() {
        use cordon_core::sys::notify;
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsFd;
        let kept4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let kept4b = TcpListener::bind("127.0.0.1:0").unwrap();
        let kept6 = TcpListener::bind("[::1]:0").unwrap();
        let other = TcpListener::bind("127.0.0.2:0").unwrap();
        let (k4, k4b, k6, o) = (
            kept4.local_addr().unwrap(),
            kept4b.local_addr().unwrap(),
            kept6.local_addr().unwrap(),
            other.local_addr().unwrap(),
        );
        let filtered = notify::sock_diag_destroy_listener().unwrap();
        // One port of 127.0.0.1 named: every port of it is kept.
        notify::attach_socket_filter(filtered.as_fd(), &destroy_filter(&[k4.ip(), k6.ip()])).unwrap();
        let control = notify::sock_diag_destroy_listener().unwrap();
        notify::attach_socket_filter(control.as_fd(), &destroy_filter(&[o.ip()])).unwrap();
        // Connects, accepts, closes (client first, with a reset if asked);
        // the client socket's cookie.
        let exchange = |to: SocketAddr, listener: &TcpListener, reset: bool| {
            let client = TcpStream::connect(to).unwrap();
            let (server, _) = listener.accept().unwrap();
            let c = cookie(client.as_fd());
            if reset {
                // struct linger { l_onoff = 1, l_linger = 0 }
                let linger = [1i32.to_ne_bytes(), 0i32.to_ne_bytes()].concat();
                notify::setsockopt_bytes(client.as_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &linger).unwrap();
            }
            drop(client);
            drop(server);
            c
        };
        let c4 = exchange(k4, &kept4, false);
        let c4b = exchange(k4b, &kept4b, false);
        let c6 = exchange(k6, &kept6, false);
        // An IPv6 socket to the IPv4 peer, v4-mapped.
        let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", k4.port()).parse().unwrap();
        let cm = exchange(mapped, &kept4, false);
        let resets: Vec<u64> = (0..20).map(|_| exchange(k4b, &kept4b, true)).collect();
        let co = exchange(o, &other, false);
        let (mut got, mut got_control) = (vec![], vec![]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let wanted: Vec<u64> = [c4, c4b, c6, cm].into_iter().chain(resets.iter().copied()).collect();
        let has = |seen: &Vec<(u64, SocketAddr)>, c: u64| seen.iter().any(|(k, _)| *k == c);
        while !(wanted.iter().all(|&c| has(&got, c)) && has(&got_control, co)) {
            assert!(
                std::time::Instant::now() < deadline,
                "reports missing: {:?} of {wanted:?}; kept {got:?}, control {got_control:?}",
                wanted.iter().filter(|&&c| !has(&got, c)).collect::<Vec<_>>()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
            drain(filtered.as_fd(), &mut got);
            drain(control.as_fd(), &mut got_control);
        }
        // Most resets' reports had no remote port (the case a port check dropped).
        let reset_ports: Vec<u16> =
            got.iter().filter(|(k, _)| resets.contains(k)).map(|(_, remote)| remote.port()).collect();
        assert!(reset_ports.contains(&0), "{reset_ports:?}");
        // The control's report of the other address was delivered to every
        // subscriber in the same broadcast: the filtered one dropped it.
        drain(filtered.as_fd(), &mut got);
        assert!(!has(&got, co), "{got:?}");
        // Nor did it keep the servers' ends (their remote is a client's
        // address, 127.0.0.1 too: kept, never ours, ignored by cookie).
        assert!(!wanted.iter().any(|&c| has(&got_control, c)), "{got_control:?}");
    }

    /// The program: nothing kept with no peer; one comparison per distinct
    /// address (and one for address zero), every one in a conditional
    /// jump's reach, and the kernel takes it; past the limit, every report.
    #[test]
    fn the_destroy_filter_grows_by_address_and_keeps_all_past_its_limit() {
        use cordon_core::sys::notify;
        use std::os::fd::AsFd;
        assert_eq!(destroy_filter(&[]), vec![SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k: 0 }]);
        let addresses = |n: usize| -> Vec<IpAddr> {
            (0..n).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).unwrap()))).collect()
        };
        let one = destroy_filter(&addresses(1));
        // The same address again, as v4-mapped, and as another port: no growth.
        let twice = destroy_filter(&[addresses(1)[0], "::ffff:10.0.0.0".parse().unwrap()]);
        assert_eq!(one, twice);
        assert_eq!(one.len(), 5 + 2 + 2);
        let most = destroy_filter(&addresses(MAX_FILTERED_ADDRESSES));
        assert_eq!(most.len(), 5 + MAX_FILTERED_ADDRESSES + 1 + 2);
        let sock = notify::sock_diag_destroy_listener().unwrap();
        notify::attach_socket_filter(sock.as_fd(), &most).unwrap();
        assert_eq!(destroy_filter(&addresses(MAX_FILTERED_ADDRESSES + 1)), keep_every_report());
    }

    #[test]
    fn errors_and_lookups() {
        let mut err = vec![0u8; NLMSG_HDRLEN + 4];
        err[0..4].copy_from_slice(&20u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse(&err), vec![DiagReply::Error(libc::ENOENT)]);
        let req =
            lookup_request(9, "10.0.0.1:5000".parse().unwrap(), "10.0.0.2:80".parse().unwrap(), Want::Counters(7));
        assert_eq!(req.len(), 72);
        assert_eq!(u32_at(&req, 0), Some(72));
        assert_eq!(i32::from(req[16]), libc::AF_INET);
        assert_eq!(req[18], 2, "INET_DIAG_INFO requested");
        assert_eq!(&req[24..26], &5000u16.to_be_bytes());
        assert_eq!(&req[28..32], &[10, 0, 0, 1]);
        assert_eq!(u32_at(&req, 64), Some(7));
        let tw = lookup_request(1, "[::1]:5000".parse().unwrap(), "[::1]:80".parse().unwrap(), Want::State);
        assert_eq!((i32::from(tw[16]), tw[18], u64_at(&tw, 64)), (libc::AF_INET6, 0, Some(u64::MAX)));
    }
}
