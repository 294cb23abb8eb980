//! Whether an address is one of this host's own: the host's route lookup
//! (`RTM_GETROUTE` on `NETLINK_ROUTE`, in the calling thread's network
//! namespace, which is the host's for the supervisor and the proxy) says
//! `RTN_LOCAL`. A connection to such an address never leaves the host: it
//! goes through the host's `lo` and arrives from that same address, so it
//! reaches every service bound to `0.0.0.0` or `::` as the host itself,
//! whatever range the address is in (a public IPv4 on `eth0`, a global
//! IPv6). Addresses come and go, so every question is asked afresh: one
//! netlink round trip (the kernel answers during `send`), a few
//! microseconds next to the connect that follows.
//!
//! When netlink cannot be used (a service manager that allows only inet
//! and unix sockets), the answer comes from a UDP socket connected to the
//! address (a route lookup; no packet is sent): the source the kernel picks
//! for an interface's own address is that address (inside a local range
//! route with a preferred source, AnyIP, it is the preferred source: such
//! ranges are seen only through netlink). When neither works, the address
//! counts as the host's own: refused unless named literally.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;

use cordon_core::sys::notify;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 1;
const RTA_DST: u16 = 1;
const RTN_LOCAL: u8 = 2;
const RTMSG_LEN: usize = 12;

/// Whether `ip` is an address of this host (see the module documentation).
/// IPv4-mapped addresses are asked about as the IPv4 address they map to.
pub fn is_host_address(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    match route_type(ip) {
        Some(kind) => kind == Some(RTN_LOCAL),
        None => source_is_destination(ip).unwrap_or(true),
    }
}

/// The route type the host's lookup gives `ip`: `Some(None)` when there is
/// no route (an error answer), `None` when netlink could not be asked.
fn route_type(ip: IpAddr) -> Option<Option<u8>> {
    let sock = notify::new_socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE).ok()?;
    notify::send_nonblocking(sock.as_fd(), &route_request(ip)).ok()?;
    let mut buf = [0u8; 1024];
    let n = notify::recv_nonblocking(sock.as_fd(), &mut buf).ok()?;
    parse_route_reply(&buf[..n])
}

/// `RTM_GETROUTE` for the host route to `ip` (`ip route get IP`).
fn route_request(ip: IpAddr) -> Vec<u8> {
    // Families and lengths are small constants: the conversions cannot fail.
    let (family, addr): (u8, Vec<u8>) = match ip {
        IpAddr::V4(v4) => (u8::try_from(libc::AF_INET).unwrap_or(2), v4.octets().to_vec()),
        IpAddr::V6(v6) => (u8::try_from(libc::AF_INET6).unwrap_or(10), v6.octets().to_vec()),
    };
    let rta_len = u16::try_from(4 + addr.len()).unwrap_or(0);
    let len = NLMSG_HDRLEN + RTMSG_LEN + usize::from(rta_len);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_ne_bytes());
    m.extend_from_slice(&RTM_GETROUTE.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
                                              // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    m.extend_from_slice(&[family, u8::try_from(addr.len() * 8).unwrap_or(0), 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&rta_len.to_ne_bytes());
    m.extend_from_slice(&RTA_DST.to_ne_bytes());
    m.extend_from_slice(&addr);
    m
}

/// The answer to [`route_request`]: `Some(Some(rtm_type))` for a route,
/// `Some(None)` for an error answer (no route), `None` for anything else.
fn parse_route_reply(reply: &[u8]) -> Option<Option<u8>> {
    let kind = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    match kind {
        RTM_NEWROUTE => Some(Some(*reply.get(NLMSG_HDRLEN + 7)?)),
        NLMSG_ERROR => {
            let errno = i32::from_ne_bytes(reply.get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)?.try_into().ok()?);
            (errno != 0).then_some(None)
        }
        _ => None,
    }
}

/// The fallback: connect a UDP socket to `ip` (no packet is sent) and see
/// whether the kernel chose `ip` itself as the source. `Some(false)` when
/// there is no route; `None` when no socket could be made.
fn source_is_destination(ip: IpAddr) -> Option<bool> {
    let any: IpAddr = match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
    if sock.connect(SocketAddr::new(ip, 9)).is_err() {
        return Some(false);
    }
    Some(sock.local_addr().ok()?.ip().to_canonical() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_the_hosts_own_and_a_documentation_address_is_not() {
        for ip in ["127.0.0.1", "127.3.2.1", "::ffff:127.0.0.1"] {
            assert!(is_host_address(ip.parse().unwrap()), "{ip}");
        }
        // The fallback sees an address a local route gives itself as the
        // source; inside a local range with a preferred source (127.0.0.0/8
        // src 127.0.0.1, AnyIP ranges) it picks that source instead, so it
        // answers only for the addresses of interfaces.
        assert_eq!(source_is_destination("127.0.0.1".parse().unwrap()), Some(true));
        // No test machine owns TEST-NET-3.
        assert!(!is_host_address("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn the_route_request_is_what_ip_route_get_sends() {
        let m = route_request("192.0.2.2".parse().unwrap());
        assert_eq!(m.len(), 16 + 12 + 8);
        assert_eq!(&m[16..18], &[u8::try_from(libc::AF_INET).unwrap(), 32]);
        assert_eq!(&m[m.len() - 4..], &[192, 0, 2, 2]);
        let m = route_request("2001:db8::1".parse().unwrap());
        assert_eq!((m.len(), m[17]), (16 + 12 + 20, 128));
    }

    #[test]
    fn replies_are_read_or_refused() {
        let mut route = vec![0u8; 16 + 12];
        route[4..6].copy_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        route[16 + 7] = RTN_LOCAL;
        assert_eq!(parse_route_reply(&route), Some(Some(RTN_LOCAL)));
        let mut error = vec![0u8; 16 + 4];
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error[16..20].copy_from_slice(&(-libc::ENETUNREACH).to_ne_bytes());
        assert_eq!(parse_route_reply(&error), Some(None));
        assert_eq!(parse_route_reply(&[0u8; 3]), None);
        assert_eq!(parse_route_reply(&route[..20]), None);
    }
}
