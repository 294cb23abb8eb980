//! Network egress: host patterns, and which route the sandbox gets out by.
//! The decisions themselves are in `cordon-egress` (`check`, `check_addr`).

use serde::Serialize;

use super::{PolicyError, Result};

/// A host pattern: `api.example.com`, `*.example.com`, `*`, each with an
/// optional `:port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetPattern {
    /// The host part, lower-case; `*` or `*.suffix` for wildcards.
    pub host: String,
    /// The port, if the pattern names one.
    pub port: Option<u16>,
}

impl NetPattern {
    /// Parses a pattern, refusing paths (they cannot be enforced for HTTPS
    /// without TLS interception) and schemes.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |reason: &str| PolicyError::NetPattern { pattern: raw.to_owned(), reason: reason.to_owned() };
        if raw.contains("://") {
            return Err(bad("drop the scheme; patterns name hosts, not URLs"));
        }
        if raw.contains('/') {
            return Err(bad(
                "path-level rules cannot be enforced for HTTPS without TLS interception; name the host only",
            ));
        }
        let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
            let (h, tail) = rest.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            (h, tail.strip_prefix(':'))
        } else if raw.matches(':').count() == 1 {
            let (h, p) = raw.split_once(':').expect("one colon");
            (h, Some(p))
        } else {
            (raw, None)
        };
        let port = port
            .map(|p| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("port must be 1 to 65535")))
            .transpose()?;
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let name = host.strip_prefix("*.").unwrap_or(&host);
        if host != "*" && (name.contains('*') || name.is_empty()) {
            return Err(bad("`*` may only stand alone or as a leading `*.`"));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*' | '_')) {
            return Err(bad("host has characters that are not allowed in a host name"));
        }
        Ok(NetPattern { host, port })
    }
}

/// How allowed destinations are reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetVia {
    /// Transparent egress (the default): every `connect()` and every name
    /// lookup of the sandbox is decided by cordon's supervisor, which
    /// connects allowed destinations from the host's network namespace and
    /// hands the connected socket to the program. Any program works, proxy
    /// variables or not; a connection runs at the speed of a direct one.
    /// Needs seccomp user notification and thread pidfds (Linux 6.9).
    #[default]
    Kernel,
    /// A filtering proxy (HTTP, `CONNECT`, SOCKS5) on the sandbox's
    /// loopback, announced in `HTTP_PROXY` and friends: only programs that
    /// honour those variables get out, through a user-space relay.
    Proxy,
}

impl NetVia {
    /// The flag value: `kernel` or `proxy`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetVia::Kernel => "kernel",
            NetVia::Proxy => "proxy",
        }
    }
}

impl std::str::FromStr for NetVia {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "kernel" => Ok(NetVia::Kernel),
            "proxy" => Ok(NetVia::Proxy),
            other => Err(PolicyError::UnknownNetVia(other.to_owned())),
        }
    }
}

/// Network egress. Default: nothing (no route out at all).
#[derive(Clone, Debug, Default, Serialize)]
pub struct NetPolicy {
    /// Hosts that may be reached.
    pub allow: Vec<NetPattern>,
    /// Hosts that may not, even when `allow` matches (deny wins).
    pub deny: Vec<NetPattern>,
    /// The route out. Default: [`NetVia::Kernel`].
    pub via: NetVia,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(
            NetPattern::parse("API.example.com:443").unwrap(),
            NetPattern { host: "api.example.com".into(), port: Some(443) }
        );
        assert_eq!(NetPattern::parse("*.example.com").unwrap().port, None);
        assert_eq!(NetPattern::parse("[::1]:8080").unwrap().host, "::1");
        for bad in ["https://x.com", "x.com/path", "a.*.com", "x.com:0", "x.com:99999", ":80", "**"] {
            assert!(NetPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
