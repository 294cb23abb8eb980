//! SOCKS5 (RFC 1928) framing: the method negotiation and the CONNECT
//! request, parsed incrementally from a buffer, and the replies. Pure; no
//! authentication methods other than "none" and no commands other than
//! CONNECT are offered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The first byte of every SOCKS5 message.
pub const VERSION: u8 = 5;
/// The "no authentication required" method.
const NO_AUTH: u8 = 0x00;
/// "No acceptable methods".
const NO_ACCEPTABLE: u8 = 0xff;

/// Reply codes (RFC 1928 section 6) the proxy sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    /// Succeeded.
    Succeeded = 0x00,
    /// General SOCKS server failure.
    GeneralFailure = 0x01,
    /// Connection not allowed by ruleset.
    NotAllowed = 0x02,
    /// Host unreachable.
    HostUnreachable = 0x04,
    /// Connection refused.
    ConnectionRefused = 0x05,
    /// Command not supported.
    CommandNotSupported = 0x07,
    /// Address type not supported.
    AddressNotSupported = 0x08,
}

/// A SOCKS5 message the proxy cannot serve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SocksError {
    /// Not a SOCKS5 message.
    #[error("malformed SOCKS5 {0}")]
    Malformed(&'static str),
    /// The client offers no method the proxy accepts.
    #[error("SOCKS5 client offers no acceptable authentication method; this proxy accepts only \"no authentication\"")]
    NoAcceptableMethod,
    /// A command other than CONNECT (BIND, UDP ASSOCIATE).
    #[error("SOCKS5 command {0:#04x} is not supported; only CONNECT is")]
    Command(u8),
    /// An unknown address type.
    #[error("SOCKS5 address type {0:#04x} is not supported")]
    AddressType(u8),
}

impl SocksError {
    /// The reply code the client is told, or `None` when the failure comes
    /// before a request (the negotiation answer covers it).
    pub fn reply(&self) -> Option<Reply> {
        match self {
            SocksError::Malformed(_) => Some(Reply::GeneralFailure),
            SocksError::NoAcceptableMethod => None,
            SocksError::Command(_) => Some(Reply::CommandNotSupported),
            SocksError::AddressType(_) => Some(Reply::AddressNotSupported),
        }
    }
}

/// Reads the method negotiation at the start of `buf`. `Ok(None)`: more
/// bytes are needed. `Ok(Some(n))`: the greeting is `n` bytes long and
/// offers "no authentication".
pub fn parse_greeting(buf: &[u8]) -> Result<Option<usize>, SocksError> {
    let (Some(&version), Some(&count)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(SocksError::Malformed("greeting"));
    }
    let len = 2 + usize::from(count);
    let Some(methods) = buf.get(2..len) else {
        return Ok(None);
    };
    if methods.contains(&NO_AUTH) {
        Ok(Some(len))
    } else {
        Err(SocksError::NoAcceptableMethod)
    }
}

/// The answer to a greeting: "no authentication", or "no acceptable
/// methods" (after which the client closes).
pub fn greeting_reply(accepted: bool) -> [u8; 2] {
    [VERSION, if accepted { NO_AUTH } else { NO_ACCEPTABLE }]
}

/// The host a SOCKS5 CONNECT names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocksHost {
    /// ATYP 3: a name for the proxy to resolve (`socks5h`).
    Name(String),
    /// ATYP 1 or 4: an address the client resolved.
    Ip(IpAddr),
}

/// Reads a CONNECT request at the start of `buf`. `Ok(None)`: more bytes
/// are needed. `Ok(Some((n, host, port)))`: the request is `n` bytes long.
pub fn parse_request(buf: &[u8]) -> Result<Option<(usize, SocksHost, u16)>, SocksError> {
    let Some(&[version, command, reserved, atyp]) = buf.get(..4).and_then(|b| <&[u8; 4]>::try_from(b).ok()) else {
        return Ok(None);
    };
    if version != VERSION || reserved != 0 {
        return Err(SocksError::Malformed("request"));
    }
    if command != 0x01 {
        return Err(SocksError::Command(command));
    }
    let (host, addr_end) = match atyp {
        0x01 => {
            let Some(b) = buf.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()) else { return Ok(None) };
            (SocksHost::Ip(IpAddr::V4(Ipv4Addr::from(b))), 8)
        }
        0x04 => {
            let Some(b) = buf.get(4..20).and_then(|b| <[u8; 16]>::try_from(b).ok()) else { return Ok(None) };
            (SocksHost::Ip(IpAddr::V6(Ipv6Addr::from(b))), 20)
        }
        0x03 => {
            let Some(&len) = buf.get(4) else { return Ok(None) };
            let end = 5 + usize::from(len);
            let Some(name) = buf.get(5..end) else { return Ok(None) };
            let name = std::str::from_utf8(name).map_err(|_| SocksError::Malformed("domain name"))?;
            if name.is_empty() {
                return Err(SocksError::Malformed("domain name"));
            }
            (SocksHost::Name(name.to_owned()), end)
        }
        other => return Err(SocksError::AddressType(other)),
    };
    let Some(&[hi, lo]) = buf.get(addr_end..addr_end + 2).and_then(|b| <&[u8; 2]>::try_from(b).ok()) else {
        return Ok(None);
    };
    Ok(Some((addr_end + 2, host, u16::from_be_bytes([hi, lo]))))
}

/// A reply to a request. `bound` is the proxy's address on the upstream
/// connection for [`Reply::Succeeded`]; failures carry `0.0.0.0:0`.
pub fn reply(code: Reply, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut out = vec![VERSION, code as u8, 0];
    match bound.ip() {
        IpAddr::V4(ip) => {
            out.push(0x01);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(0x04);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        assert_eq!(parse_greeting(&[]), Ok(None));
        assert_eq!(parse_greeting(&[5]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 2, 0, 9]), Ok(Some(4)));
        assert_eq!(parse_greeting(&[5, 1, 2]), Err(SocksError::NoAcceptableMethod));
        assert_eq!(parse_greeting(&[5, 0]), Err(SocksError::NoAcceptableMethod));
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(SocksError::Malformed("greeting")));
    }

    #[test]
    fn requests() {
        let v4 = [5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90, 0xAA];
        assert_eq!(parse_request(&v4), Ok(Some((10, SocksHost::Ip("127.0.0.1".parse().unwrap()), 8080))));
        for cut in 0..10 {
            assert_eq!(parse_request(&v4[..cut]), Ok(None), "{cut}");
        }
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 80]);
        assert_eq!(parse_request(&v6), Ok(Some((22, SocksHost::Ip("::1".parse().unwrap()), 80))));
        let name = [&[5, 1, 0, 3, 9][..], b"localhost", &[1, 187]].concat();
        assert_eq!(parse_request(&name), Ok(Some((16, SocksHost::Name("localhost".into()), 443))));
        assert_eq!(parse_request(&[5, 2, 0, 1]), Err(SocksError::Command(2)));
        assert_eq!(parse_request(&[5, 3, 0, 1]), Err(SocksError::Command(3)));
        assert_eq!(parse_request(&[5, 1, 0, 9]), Err(SocksError::AddressType(9)));
        assert_eq!(parse_request(&[5, 1, 1, 1]), Err(SocksError::Malformed("request")));
        assert_eq!(parse_request(&[4, 1, 0, 1]), Err(SocksError::Malformed("request")));
        assert_eq!(parse_request(&[5, 1, 0, 3, 0, 0, 80]), Err(SocksError::Malformed("domain name")));
        assert_eq!(parse_request(&[5, 1, 0, 3, 2, 0xff, 0xfe, 0, 80]), Err(SocksError::Malformed("domain name")));
        assert_eq!(SocksError::Command(2).reply(), Some(Reply::CommandNotSupported));
    }

    #[test]
    fn replies() {
        assert_eq!(reply(Reply::NotAllowed, None), vec![5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reply(Reply::Succeeded, Some("10.0.0.1:258".parse().unwrap())), vec![5, 0, 0, 1, 10, 0, 0, 1, 1, 2]);
        assert_eq!(reply(Reply::Succeeded, Some("[::1]:1".parse().unwrap())).len(), 22);
        assert_eq!(greeting_reply(false), [5, 0xff]);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bytes = seed.to_le_bytes();
            let len = (bytes[0] % 9) as usize;
            let mut input = vec![5, bytes[1] % 4, bytes[2] % 2, bytes[3] % 6];
            input.extend_from_slice(&bytes[..len]);
            let _ = parse_request(&input);
            let _ = parse_greeting(&input);
            let _ = parse_request(&bytes);
            let _ = parse_greeting(&bytes);
        }
    }
}
