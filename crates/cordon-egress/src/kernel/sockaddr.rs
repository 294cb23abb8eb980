//! Socket addresses as the kernel sees them: raw `sockaddr` bytes copied
//! out of the sandbox, parsed the way `connect()` would read them, and
//! encoded for the supervisor's own sockets. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// What a `connect()` asked for, read from its `sockaddr` bytes for a
/// socket of a given domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An IPv4 or IPv6 address, on a socket of that domain (an IPv4-mapped
    /// IPv6 address stays as written; see [`canonical`]).
    Inet(SocketAddr),
    /// `AF_UNSPEC`: dissolve the socket's association.
    Unspec,
    /// An address for a socket that is not `AF_INET`/`AF_INET6` (unix,
    /// netlink): the kernel reads it in the caller's context.
    Other,
    /// The kernel would refuse it with this errno before any packet.
    Invalid(i32),
}

const SIN_LEN: usize = 16;
const SIN6_LEN: usize = 28;

fn family_of(bytes: &[u8]) -> Option<i32> {
    let b: [u8; 2] = bytes.get(..2)?.try_into().ok()?;
    Some(i32::from(u16::from_ne_bytes(b)))
}

/// Reads `bytes` as `connect()` on a socket of `domain` would: the length
/// checks and the family checks of `inet_stream_connect`/`tcp_v4_connect`/
/// `tcp_v6_connect` and `udp`'s equivalents.
pub fn parse(domain: i32, bytes: &[u8]) -> Target {
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Target::Other;
    }
    let Some(family) = family_of(bytes) else {
        return Target::Invalid(libc::EINVAL);
    };
    if family == libc::AF_UNSPEC {
        return Target::Unspec;
    }
    match (domain, family) {
        (libc::AF_INET, libc::AF_INET) => {
            if bytes.len() < SIN_LEN {
                return Target::Invalid(libc::EINVAL);
            }
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Target::Inet(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        (libc::AF_INET6, libc::AF_INET6) => {
            // SIN6_LEN_RFC2133 (24 bytes, no scope id) is still accepted.
            if bytes.len() < 24 {
                return Target::Invalid(libc::EINVAL);
            }
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let flowinfo = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&bytes[8..24]);
            let scope = match bytes.get(24..28) {
                Some(s) => u32::from_ne_bytes([s[0], s[1], s[2], s[3]]),
                None => 0,
            };
            Target::Inet(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, flowinfo, scope)))
        }
        _ => Target::Invalid(libc::EAFNOSUPPORT),
    }
}

/// The address the kernel actually connects to: an IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`, what a dual-stack socket uses for IPv4) is
/// the IPv4 address. Policy checks compare this form, so a program's choice
/// of socket domain does not change what it may reach.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `sockaddr` bytes for connecting a socket of `domain` to `addr`: an
/// `AF_INET6` socket reaches an IPv4 address through its mapped form.
/// `None` when the socket cannot reach it (an IPv6 address from an
/// `AF_INET` socket).
pub fn encode(domain: i32, addr: SocketAddr) -> Option<Vec<u8>> {
    match (domain, addr.ip()) {
        (libc::AF_INET, IpAddr::V4(ip)) => {
            let mut b = vec![0u8; SIN_LEN];
            b[..2].copy_from_slice(&u16::try_from(libc::AF_INET).ok()?.to_ne_bytes());
            b[2..4].copy_from_slice(&addr.port().to_be_bytes());
            b[4..8].copy_from_slice(&ip.octets());
            Some(b)
        }
        (libc::AF_INET, IpAddr::V6(ip)) => {
            encode(libc::AF_INET, SocketAddr::new(IpAddr::V4(ip.to_ipv4_mapped()?), addr.port()))
        }
        (libc::AF_INET6, ip) => {
            let v6 = match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let mut b = vec![0u8; SIN6_LEN];
            b[..2].copy_from_slice(&u16::try_from(libc::AF_INET6).ok()?.to_ne_bytes());
            b[2..4].copy_from_slice(&addr.port().to_be_bytes());
            b[8..24].copy_from_slice(&v6.octets());
            if let SocketAddr::V6(sa) = addr {
                b[24..28].copy_from_slice(&sa.scope_id().to_ne_bytes());
            }
            Some(b)
        }
        _ => None,
    }
}

/// Reads `getsockname`/`getpeername` bytes of an IP socket.
pub fn decode(bytes: &[u8]) -> Option<SocketAddr> {
    let domain = family_of(bytes)?;
    match parse(domain, bytes) {
        Target::Inet(addr) => Some(addr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(addr: &str) -> Vec<u8> {
        encode(libc::AF_INET, addr.parse().unwrap()).unwrap()
    }

    fn v6(addr: &str) -> Vec<u8> {
        encode(libc::AF_INET6, addr.parse().unwrap()).unwrap()
    }

    #[test]
    fn addresses_round_trip() {
        for a in ["93.184.216.34:443", "127.0.0.1:1"] {
            assert_eq!(parse(libc::AF_INET, &v4(a)), Target::Inet(a.parse().unwrap()));
            assert_eq!(decode(&v4(a)), Some(a.parse().unwrap()));
        }
        for a in ["[2001:db8::1]:443", "[::1]:8080"] {
            assert_eq!(parse(libc::AF_INET6, &v6(a)), Target::Inet(a.parse().unwrap()));
        }
        // An AF_INET6 socket reaches IPv4 through the mapped form.
        assert_eq!(parse(libc::AF_INET6, &v6("10.0.0.1:80")), Target::Inet("[::ffff:10.0.0.1]:80".parse().unwrap()));
        assert_eq!(canonical("[::ffff:10.0.0.1]:80".parse().unwrap()), "10.0.0.1:80".parse().unwrap());
        assert_eq!(encode(libc::AF_INET, "[::ffff:10.0.0.1]:80".parse().unwrap()), Some(v4("10.0.0.1:80")));
        assert_eq!(encode(libc::AF_INET, "[2001:db8::1]:80".parse().unwrap()), None);
    }

    #[test]
    fn malformed_addresses_get_the_kernels_errno() {
        let mut short = v4("1.2.3.4:80");
        short.truncate(15);
        assert_eq!(parse(libc::AF_INET, &short), Target::Invalid(libc::EINVAL));
        assert_eq!(parse(libc::AF_INET, &[]), Target::Invalid(libc::EINVAL));
        assert_eq!(parse(libc::AF_INET, &[2]), Target::Invalid(libc::EINVAL));
        assert_eq!(parse(libc::AF_INET, &v6("[::1]:80")), Target::Invalid(libc::EAFNOSUPPORT));
        assert_eq!(parse(libc::AF_INET6, &v4("1.2.3.4:80")), Target::Invalid(libc::EAFNOSUPPORT));
        let mut old = v6("[::1]:80");
        old.truncate(24);
        assert!(matches!(parse(libc::AF_INET6, &old), Target::Inet(_)));
        old.truncate(23);
        assert_eq!(parse(libc::AF_INET6, &old), Target::Invalid(libc::EINVAL));
        let unspec = u16::try_from(libc::AF_UNSPEC).unwrap().to_ne_bytes();
        assert_eq!(parse(libc::AF_INET, &unspec), Target::Unspec);
        assert_eq!(parse(libc::AF_UNIX, &[1, 0, b'/']), Target::Other);
        for junk in
            [&[0xffu8; 128][..], &[0x0a, 0x00, 1, 2][..], &[7u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]]
        {
            let _ = parse(libc::AF_INET, junk);
            let _ = parse(libc::AF_INET6, junk);
        }
    }
}
