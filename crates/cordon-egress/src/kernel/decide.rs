//! What to do with one `connect()` of the sandbox: the pure decision the
//! supervisor makes from the socket's kind, the address the program asked
//! for, the policy and the names the stub DNS handed out.
//!
//! - Allowed TCP to the host's network: connect from the host's namespace
//!   and hand the socket over ([`Decision::HandOver`]).
//! - The sandbox's own loopback (unless a pattern names the host's
//!   loopback address literally), unix sockets, `AF_UNSPEC` and other
//!   families: performed in the sandbox's own context ([`Decision::Local`]);
//!   the kernel's answer is the caller's.
//! - Everything else: refused with an errno and an explanation
//!   ([`Decision::Refuse`]). UDP leaves the sandbox only as DNS, through the
//!   stub.

use std::net::{IpAddr, SocketAddr};

use cordon_core::policy::NetPolicy;

use super::names::{is_synthetic, Names};
use super::sockaddr::{canonical, Target};
use crate::policy::{check, check_addr, Denied, Destination};

/// `IPPROTO_MPTCP`: Multipath TCP, which falls back to TCP by design; a
/// plain TCP socket stands in for it.
const IPPROTO_MPTCP: i32 = 262;

/// The caller's socket, as `getsockopt` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketKind {
    /// `SO_DOMAIN`.
    pub domain: i32,
    /// `SO_TYPE`.
    pub kind: i32,
    /// `SO_PROTOCOL`.
    pub protocol: i32,
}

impl SocketKind {
    /// A TCP (or MPTCP) stream socket.
    pub fn is_tcp(self) -> bool {
        self.kind == libc::SOCK_STREAM && (self.protocol == libc::IPPROTO_TCP || self.protocol == IPPROTO_MPTCP)
    }
}

/// What the sandbox's unix sockets may connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnixConnects {
    /// Whatever the command could reach itself (container mode: its own
    /// root, its own credentials, its Landlock domain).
    InSandbox,
    /// Nothing (process mode: Landlock below ABI 9 does not check socket
    /// paths, so a host socket would be in reach).
    Refused,
}

/// Where a local connect runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalRoute {
    /// The supervisor connects the caller's own socket (a duplicate of it,
    /// which lives in the sandbox's namespace). For datagram sockets, whose
    /// connect never blocks and involves no path.
    Direct,
    /// The connect helper does, in the sandbox's context (see
    /// `cordon_core::sys::helper`).
    Helper,
}

/// A refused connect: the errno the program gets, and what cordon says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The errno.
    pub errno: i32,
    /// The destination as the program asked for it: `name:port` when it
    /// used a name from the stub DNS, else the address.
    pub target: String,
    /// The name, when the program asked for one.
    pub name: Option<String>,
    /// The port.
    pub port: u16,
    /// Why, for people.
    pub reason: String,
    /// The `--net` pattern that would allow it, when one would.
    pub suggestion: Option<String>,
    /// The deny pattern that refused it, if one did.
    pub rule: Option<String>,
    /// Why, in short, when the fix alone does not say.
    pub detail: Option<String>,
}

impl Refusal {
    pub(crate) fn denied(errno: i32, name: Option<String>, d: &Denied) -> Self {
        Refusal {
            errno,
            target: d.dest().to_string(),
            name,
            port: d.dest().port(),
            reason: d.to_string(),
            suggestion: d.suggestion(),
            rule: d.rule().map(str::to_owned),
            detail: d.detail(),
        }
    }
}

/// A connect to hand over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOver {
    /// What the program asked for (a name from the stub, or an address).
    pub dest: Destination,
    /// The addresses to try, in order; each passed [`check_addr`].
    pub addrs: Vec<SocketAddr>,
    /// The allow pattern that let it through.
    pub rule: String,
}

/// What the supervisor does with a `connect()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Connect from the host's namespace; hand the socket over.
    HandOver(HandOver),
    /// Perform it in the sandbox's namespace; pass the kernel's answer on.
    Local(LocalRoute),
    /// Refuse it, explained.
    Refuse(Refusal),
    /// Answer with this errno, as the kernel would have before anything
    /// happened (a malformed address). Nothing to explain.
    Answer(i32),
}

/// Decides one `connect()`. See the module documentation.
pub fn decide(policy: &NetPolicy, names: &Names, unix: UnixConnects, kind: SocketKind, target: &Target) -> Decision {
    match kind.domain {
        libc::AF_UNIX => match unix {
            UnixConnects::InSandbox => Decision::Local(LocalRoute::Helper),
            UnixConnects::Refused => Decision::Refuse(Refusal {
                errno: libc::EPERM,
                target: "a unix socket".into(),
                name: None,
                port: 0,
                reason: "process mode has no named unix sockets: Landlock below ABI 9 cannot check socket paths".into(),
                suggestion: None,
                rule: None,
                detail: None,
            }),
        },
        libc::AF_INET | libc::AF_INET6 => decide_inet(policy, names, kind, target),
        // Netlink and the like: the sandbox's own namespace.
        _ => Decision::Local(LocalRoute::Helper),
    }
}

fn local(kind: SocketKind) -> Decision {
    Decision::Local(if kind.kind == libc::SOCK_DGRAM { LocalRoute::Direct } else { LocalRoute::Helper })
}

fn decide_inet(policy: &NetPolicy, names: &Names, kind: SocketKind, target: &Target) -> Decision {
    let addr = match target {
        Target::Invalid(errno) => return Decision::Answer(*errno),
        // Dissolving an association, or a family the kernel will refuse:
        // the socket is the sandbox's, so is the outcome.
        Target::Unspec | Target::Other => return local(kind),
        Target::Inet(addr) => canonical(*addr),
    };
    let ip = addr.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        // The host's loopback only when a pattern names it literally; else
        // the sandbox's own.
        let dest = Destination::from_ip(ip, addr.port());
        return match check(policy, &dest) {
            Ok(allowed) if kind.is_tcp() && addr.port() != 0 && check_addr(policy, &dest, ip).is_ok() => {
                Decision::HandOver(HandOver { dest, addrs: vec![addr], rule: allowed.rule_text() })
            }
            _ => local(kind),
        };
    }
    if addr.port() == 0 {
        return Decision::Answer(libc::ECONNREFUSED);
    }
    let (dest, candidates) = if is_synthetic(ip) {
        let Some(entry) = names.lookup(ip) else {
            return Decision::Refuse(Refusal {
                errno: libc::ECONNREFUSED,
                target: addr.to_string(),
                name: None,
                port: addr.port(),
                reason: format!(
                    "{ip} was not handed out by cordon's stub DNS (198.18.0.0/15 is where its answers come from)"
                ),
                suggestion: None,
                rule: None,
                detail: None,
            });
        };
        match Destination::new(&entry.name, addr.port()) {
            Ok(dest) => (dest, entry.addrs.iter().map(|a| SocketAddr::new(*a, addr.port())).collect::<Vec<_>>()),
            Err(_) => return Decision::Answer(libc::ECONNREFUSED),
        }
    } else {
        (Destination::from_ip(ip, addr.port()), vec![addr])
    };
    let name = match dest.host() {
        crate::policy::Host::Name(n) => Some(n.clone()),
        crate::policy::Host::Ip(_) => None,
    };
    let allowed = match check(policy, &dest) {
        Ok(a) => a,
        Err(d) => return Decision::Refuse(Refusal::denied(libc::ECONNREFUSED, name, &d)),
    };
    if !kind.is_tcp() {
        let what = if kind.kind == libc::SOCK_DGRAM { "UDP" } else { "this socket type" };
        return Decision::Refuse(Refusal {
            errno: libc::ENETUNREACH,
            target: dest.to_string(),
            name,
            port: dest.port(),
            reason: format!(
                "{what} does not leave the sandbox: only TCP connections are made for it (names are resolved by cordon's stub DNS)"
            ),
            suggestion: None,
            rule: None,
            detail: None,
        });
    }
    let mut addrs = vec![];
    let mut first_refused = None;
    for a in candidates {
        match check_addr(policy, &dest, a.ip()) {
            Ok(()) => addrs.push(a),
            Err(d) => {
                first_refused.get_or_insert(d);
            }
        }
    }
    if addrs.is_empty() {
        return match first_refused {
            Some(d) => Decision::Refuse(Refusal::denied(libc::ECONNREFUSED, name, &d)),
            None => Decision::Refuse(Refusal {
                errno: libc::ECONNREFUSED,
                target: dest.to_string(),
                name,
                port: dest.port(),
                reason: format!("{} resolved to no address", dest.host()),
                suggestion: None,
                rule: None,
                detail: None,
            }),
        };
    }
    Decision::HandOver(HandOver { dest, addrs, rule: allowed.rule_text() })
}

/// Whether a local connect's failure deserves a word: `ECONNREFUSED` from
/// the sandbox's own loopback usually means the program meant the host's.
pub fn loopback_hint(target: &Target, errno: i32) -> Option<SocketAddr> {
    match target {
        Target::Inet(addr) if errno == libc::ECONNREFUSED => {
            let addr = canonical(*addr);
            matches!(addr.ip(), IpAddr::V4(v4) if v4.is_loopback())
                .then_some(addr)
                .or_else(|| (addr.ip() == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)).then_some(addr))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_core::policy::NetPattern;

    fn policy(allow: &[&str], deny: &[&str]) -> NetPolicy {
        let parse = |list: &[&str]| list.iter().map(|p| NetPattern::parse(p).unwrap()).collect();
        NetPolicy { allow: parse(allow), deny: parse(deny), ..NetPolicy::default() }
    }

    const TCP4: SocketKind = SocketKind { domain: libc::AF_INET, kind: libc::SOCK_STREAM, protocol: libc::IPPROTO_TCP };
    const TCP6: SocketKind =
        SocketKind { domain: libc::AF_INET6, kind: libc::SOCK_STREAM, protocol: libc::IPPROTO_TCP };
    const UDP4: SocketKind = SocketKind { domain: libc::AF_INET, kind: libc::SOCK_DGRAM, protocol: libc::IPPROTO_UDP };
    const UNIX: SocketKind = SocketKind { domain: libc::AF_UNIX, kind: libc::SOCK_STREAM, protocol: 0 };

    fn to(addr: &str) -> Target {
        Target::Inet(addr.parse().unwrap())
    }

    /// The decision in a form a table can spell.
    fn outcome(d: Decision) -> String {
        match d {
            Decision::HandOver(h) => format!(
                "hand over {} via {} to {}",
                h.dest,
                h.rule,
                h.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
            ),
            Decision::Local(LocalRoute::Direct) => "local direct".into(),
            Decision::Local(LocalRoute::Helper) => "local helper".into(),
            Decision::Refuse(r) => format!("refuse {} {}", r.errno, r.target),
            Decision::Answer(e) => format!("answer {e}"),
        }
    }

    #[test]
    fn decision_table() {
        let mut names = Names::new(16);
        let example = names.assign("example.com", vec!["93.184.216.34".parse().unwrap()]).unwrap();
        let evil = names.assign("evil.test", vec!["127.0.0.1".parse().unwrap()]).unwrap();
        let mixed =
            names.assign("mixed.test", vec!["10.0.0.1".parse().unwrap(), "93.184.216.35".parse().unwrap()]).unwrap();
        let (ex, ev, mx) = (example.to_string(), evil.to_string(), mixed.to_string());
        let refused = libc::ECONNREFUSED;
        let unreach = libc::ENETUNREACH;
        #[rustfmt::skip]
        let cases: Vec<(&[&str], SocketKind, Target, String)> = vec![
            // A name from the stub: checked by name, connected by address.
            (&["example.com:443"], TCP4, to(&format!("{ex}:443")), "hand over example.com:443 via example.com:443 to 93.184.216.34:443".into()),
            (&["example.com:443"], TCP6, to(&format!("[::ffff:{ex}]:443")), "hand over example.com:443 via example.com:443 to 93.184.216.34:443".into()),
            (&["example.com:443"], TCP4, to(&format!("{ex}:80")), format!("refuse {refused} example.com:80")),
            (&[], TCP4, to(&format!("{ex}:443")), format!("refuse {refused} example.com:443")),
            (&["example.com"], UDP4, to(&format!("{ex}:443")), format!("refuse {unreach} example.com:443")),
            // A name that resolved to loopback is refused, never local.
            (&["evil.test"], TCP4, to(&format!("{ev}:80")), format!("refuse {refused} evil.test:80")),
            (&["evil.test", "127.0.0.1:80"], TCP4, to(&format!("{ev}:80")), "hand over evil.test:80 via evil.test to 127.0.0.1:80".into()),
            // Only the addresses that pass are tried.
            (&["mixed.test"], TCP4, to(&format!("{mx}:443")), "hand over mixed.test:443 via mixed.test to 93.184.216.35:443".into()),
            // A synthetic address nobody was given.
            (&["*"], TCP4, to("198.18.200.1:443"), format!("refuse {refused} 198.18.200.1:443")),
            // IP literals.
            (&["93.184.216.34:443"], TCP4, to("93.184.216.34:443"), "hand over 93.184.216.34:443 via 93.184.216.34:443 to 93.184.216.34:443".into()),
            (&["93.184.216.34:443"], TCP4, to("93.184.216.34:80"), format!("refuse {refused} 93.184.216.34:80")),
            (&["*"], TCP4, to("10.0.0.1:80"), format!("refuse {refused} 10.0.0.1:80")),
            (&["*"], TCP4, to("169.254.169.254:80"), format!("refuse {refused} 169.254.169.254:80")),
            (&["*"], TCP6, to("[::ffff:169.254.169.254]:80"), format!("refuse {refused} 169.254.169.254:80")),
            (&["*"], TCP6, to("[64:ff9b::a9fe:a9fe]:80"), format!("refuse {refused} [64:ff9b::a9fe:a9fe]:80")),
            (&[], TCP4, to("192.0.2.1:80"), format!("refuse {refused} 192.0.2.1:80")),
            // Loopback: the host's when named literally, else the sandbox's own.
            (&["127.0.0.1:8080"], TCP4, to("127.0.0.1:8080"), "hand over 127.0.0.1:8080 via 127.0.0.1:8080 to 127.0.0.1:8080".into()),
            (&["127.0.0.1:8080"], TCP6, to("[::ffff:127.0.0.1]:8080"), "hand over 127.0.0.1:8080 via 127.0.0.1:8080 to 127.0.0.1:8080".into()),
            (&["localhost:8080"], TCP4, to("127.0.0.1:8080"), "hand over 127.0.0.1:8080 via localhost:8080 to 127.0.0.1:8080".into()),
            (&["127.0.0.1:8080"], TCP4, to("127.0.0.1:8081"), "local helper".into()),
            (&["*"], TCP4, to("127.0.0.1:8080"), "local helper".into()),
            (&[], TCP4, to("0.0.0.0:8080"), "local helper".into()),
            (&[], TCP6, to("[::1]:8080"), "local helper".into()),
            (&["127.0.0.1:53"], UDP4, to("127.0.0.1:53"), "local direct".into()),
            (&[], UDP4, to("127.0.0.1:53"), "local direct".into()),
            // What the kernel decides by itself.
            (&["*"], TCP4, Target::Unspec, "local helper".into()),
            (&["*"], UDP4, Target::Unspec, "local direct".into()),
            (&["*"], TCP4, Target::Invalid(libc::EAFNOSUPPORT), format!("answer {}", libc::EAFNOSUPPORT)),
            (&["*"], TCP4, to("93.184.216.34:0"), format!("answer {refused}")),
            (&["*"], UNIX, Target::Other, "local helper".into()),
        ];
        for (allow, kind, target, expected) in &cases {
            let got = outcome(decide(&policy(allow, &[]), &names, UnixConnects::InSandbox, *kind, target));
            assert_eq!(&got, expected, "allow {allow:?} {kind:?} {target:?}");
        }
        assert!(matches!(
            decide(&policy(&["*"], &[]), &names, UnixConnects::Refused, UNIX, &Target::Other),
            Decision::Refuse(Refusal { errno: libc::EPERM, .. })
        ));
    }

    #[test]
    fn refusals_explain_and_suggest() {
        let mut names = Names::new(4);
        let a = names.assign("registry.npmjs.org", vec!["104.16.0.1".parse().unwrap()]).unwrap();
        let Decision::Refuse(r) =
            decide(&policy(&[], &[]), &names, UnixConnects::InSandbox, TCP4, &to(&format!("{a}:443")))
        else {
            panic!("not refused")
        };
        assert_eq!(r.target, "registry.npmjs.org:443");
        assert_eq!(r.name.as_deref(), Some("registry.npmjs.org"));
        assert_eq!(r.suggestion.as_deref(), Some("registry.npmjs.org:443"));
        let Decision::Refuse(r) =
            decide(&policy(&["*"], &["*.npmjs.org"]), &names, UnixConnects::InSandbox, TCP4, &to(&format!("{a}:443")))
        else {
            panic!("not refused")
        };
        assert_eq!((r.rule.as_deref(), r.suggestion), (Some("*.npmjs.org"), None));
        assert_eq!(loopback_hint(&to("127.0.0.1:9"), libc::ECONNREFUSED), Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(
            loopback_hint(&to("[::ffff:127.0.0.1]:9"), libc::ECONNREFUSED),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(loopback_hint(&to("127.0.0.1:9"), 0), None);
    }
}
