//! The pure decision: may a destination be reached, and may one of its
//! resolved addresses be connected to. No I/O happens here; the server calls
//! [`check`] before resolving a name and [`check_addr`] on every address the
//! resolver returned, and connects only to an address that passed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cordon_core::policy::{NetPattern, NetPolicy};
use serde::Serialize;

use crate::host;

/// The host part of a [`Destination`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lower-case, without a trailing dot.
    Name(String),
    /// An IP address literal.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Where a client asked to go: a host (name or IP literal) and a port.
///
/// Built with [`Destination::new`], which normalises the host so that pattern
/// matching compares like with like: names are lower-cased and lose a
/// trailing dot, `[v6]` brackets are removed, IP literals are parsed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    host: Host,
    port: u16,
}

/// Why a host and port do not form a [`Destination`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseDestinationError {
    /// The host is empty, too long, or has characters no host name has.
    #[error("`{host}` is not a host name or IP address; {reason}")]
    InvalidHost {
        /// The host as given (truncated to 256 bytes).
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Port 0 cannot be connected to.
    #[error("port 0 cannot be connected to")]
    ZeroPort,
}

/// Longest DNS name (RFC 1035), without the trailing dot.
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

impl Destination {
    /// Normalises `host` (a DNS name, an IPv4 literal, or an IPv6 literal with
    /// or without brackets) and pairs it with `port`.
    ///
    /// Names may contain ASCII letters, digits, `-` and `_` in non-empty dot
    /// separated labels; anything else (spaces, `%` zone ids, `@`, non-ASCII)
    /// is refused, so a name that reaches the resolver is one the policy
    /// could have named.
    pub fn new(host: &str, port: u16) -> Result<Self, ParseDestinationError> {
        let invalid = |reason| ParseDestinationError::InvalidHost { host: truncate(host, 256), reason };
        if port == 0 {
            return Err(ParseDestinationError::ZeroPort);
        }
        if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(|| invalid("unclosed `[`"))?;
            let ip = inner.parse::<Ipv6Addr>().map_err(|_| invalid("brackets must hold an IPv6 address"))?;
            return Ok(Destination { host: Host::Ip(IpAddr::V6(ip)), port });
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Destination { host: Host::Ip(ip), port });
        }
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if name.is_empty() {
            return Err(invalid("empty host"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("longer than 253 characters"));
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err(invalid("empty label"));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(invalid("a label is longer than 63 characters"));
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(invalid("only letters, digits, `-`, `_` and `.` may appear in a host name"));
            }
        }
        Ok(Destination { host: Host::Name(name), port })
    }

    /// A destination that is an IP address.
    pub fn from_ip(ip: IpAddr, port: u16) -> Self {
        Destination { host: Host::Ip(ip), port }
    }

    /// The normalised host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The allow pattern that let a destination through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    /// The matching pattern; the most specific one when several match.
    pub rule: NetPattern,
}

impl Allowed {
    /// The pattern as written on the command line (`api.example.com:443`).
    pub fn rule_text(&self) -> String {
        pattern_text(&self.rule)
    }
}

/// Address ranges that are refused unless a pattern names the host or the
/// address literally (see [`check_addr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AddrClass {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, and the deprecated
    /// IPv6 site-local `fec0::/10`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `100.64.0.0/10`, carrier-grade NAT, also used for cloud-internal services.
    SharedCgnat,
    /// `fc00::/7`.
    UniqueLocal,
    /// `0.0.0.0/8` ("this network"; Linux routes `0.0.0.0` to the local host) and `::`.
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Not routable on the internet: `240.0.0.0/4`, `192.0.0.0/24`,
    /// `198.18.0.0/15`, IPv4-compatible IPv6 (`::a.b.c.d`), the IPv6 discard
    /// prefix `100::/64`, and the local-use NAT64 prefix `64:ff9b:1::/48`.
    Reserved,
    /// Instance metadata services that hand out cloud credentials:
    /// `169.254.169.254`, `fd00:ec2::254`, `100.100.100.200`.
    CloudMetadata,
    /// An address of this host in no range above (a public IPv4 or a global
    /// IPv6 on one of its interfaces, or a NAT64/6to4 spelling of one): a
    /// connection to it goes through the host's loopback and reaches every
    /// service bound to `0.0.0.0`/`::` as the host itself. Asked of the
    /// host's routes at each check ([`classify_on_host`]).
    HostAddress,
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::LinkLocal => "link-local",
            AddrClass::SharedCgnat => "shared (carrier-grade NAT)",
            AddrClass::UniqueLocal => "unique-local",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Multicast => "multicast",
            AddrClass::Broadcast => "broadcast",
            AddrClass::Reserved => "reserved",
            AddrClass::CloudMetadata => "cloud metadata",
            AddrClass::HostAddress => "local (this host's own)",
        })
    }
}

/// Why a destination or address is refused. Every variant names the
/// destination; the message says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// No allow pattern matches.
    #[error("{dest} is not allowed by the network policy; add --net {dest} to allow it")]
    NotAllowed {
        /// The destination refused.
        dest: Destination,
    },
    /// A deny pattern matches; deny beats allow.
    #[error("{dest} is refused by the deny rule `{rule}`")]
    DenyRule {
        /// The destination refused.
        dest: Destination,
        /// The deny pattern that matched.
        rule: String,
    },
    /// The destination is, or resolves to, an address in an [`AddrClass`]
    /// and no allow pattern names it literally.
    #[error("{}", special_address_message(.dest, .addr, *.class))]
    SpecialAddress {
        /// The destination refused.
        dest: Destination,
        /// The address it is or resolved to.
        addr: IpAddr,
        /// Why that address is guarded.
        class: AddrClass,
    },
}

fn special_address_message(dest: &Destination, addr: &IpAddr, class: AddrClass) -> String {
    let literal = Destination::from_ip(*addr, dest.port());
    match dest.host() {
        Host::Ip(_) => format!(
            "{dest} is a {class} address; name it literally to allow: add --net {literal} (a wildcard never unlocks such addresses)"
        ),
        Host::Name(_) => format!(
            "{dest} resolves to a {class} address ({addr}); a name never unlocks such addresses: add --net {literal} to allow that address"
        ),
    }
}

impl Denied {
    /// The destination that was refused.
    pub fn dest(&self) -> &Destination {
        match self {
            Denied::NotAllowed { dest } | Denied::DenyRule { dest, .. } | Denied::SpecialAddress { dest, .. } => dest,
        }
    }

    /// The deny pattern that matched, if a pattern (rather than the default
    /// deny or the address guard) made the decision.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Denied::DenyRule { rule, .. } => Some(rule),
            Denied::NotAllowed { .. } | Denied::SpecialAddress { .. } => None,
        }
    }

    /// What a short notice should add to "refused DEST": why a special
    /// address is refused, which the fix alone does not say.
    pub fn detail(&self) -> Option<String> {
        match self {
            Denied::SpecialAddress { dest, addr, class } => Some(match dest.host() {
                Host::Ip(_) => format!("a {class} address, which only a pattern naming it literally unlocks"),
                Host::Name(_) => format!("it resolves to a {class} address ({addr}), which a name never unlocks"),
            }),
            Denied::NotAllowed { .. } | Denied::DenyRule { .. } => None,
        }
    }

    /// The `--net` pattern that would allow the destination, when adding one
    /// would (a deny rule cannot be overridden by an allow pattern). For a
    /// special address that is the address itself, never a name.
    pub fn suggestion(&self) -> Option<String> {
        match self {
            Denied::NotAllowed { dest } => Some(dest.to_string()),
            Denied::SpecialAddress { dest, addr, .. } => Some(Destination::from_ip(*addr, dest.port()).to_string()),
            Denied::DenyRule { .. } => None,
        }
    }
}

/// Renders a pattern the way `--net` takes it: `host`, `host:port`,
/// `[v6]:port`.
pub fn pattern_text(pattern: &NetPattern) -> String {
    match pattern.port {
        None => pattern.host.clone(),
        Some(port) if pattern.host.contains(':') => format!("[{}]:{port}", pattern.host),
        Some(port) => format!("{}:{port}", pattern.host),
    }
}

/// Decides whether `dest` may be reached under `policy`, before any name is
/// resolved.
///
/// - An exact pattern matches that host only; `*.example.com` matches every
///   subdomain of `example.com` but not `example.com` itself; `*` matches
///   everything, IP literals included.
/// - A pattern with a port matches that port only; without one, every port.
/// - Deny patterns are checked first and win over any allow pattern.
/// - With no matching allow pattern the answer is [`Denied::NotAllowed`]:
///   the default is deny.
///
/// Passing this check is not enough to connect: every address the host
/// resolves to must also pass [`check_addr`].
pub fn check(policy: &NetPolicy, dest: &Destination) -> Result<Allowed, Denied> {
    if let Some(rule) = policy.deny.iter().find(|p| matches(p, dest, IpCompare::Canonical)) {
        return Err(Denied::DenyRule { dest: dest.clone(), rule: pattern_text(rule) });
    }
    policy
        .allow
        .iter()
        .filter(|p| matches(p, dest, IpCompare::Exact))
        .max_by_key(|p| specificity(p))
        .map(|rule| Allowed { rule: rule.clone() })
        .ok_or_else(|| Denied::NotAllowed { dest: dest.clone() })
}

/// Decides whether a connection may go to `addr`, one of the addresses
/// `dest` resolved to (or `dest`'s own IP literal). Every egress path calls
/// it on every address before connecting.
///
/// Addresses in an [`AddrClass`] (loopback, private, link-local, CGNAT,
/// unique-local, unspecified, multicast, broadcast, reserved, cloud metadata,
/// and IPv4-mapped, IPv4-compatible, NAT64 and 6to4 IPv6 forms of those) are
/// refused unless an allow pattern with a matching port names the address
/// literally: an IP literal equal to it (`127.0.0.1:8080`), or `localhost`
/// for `127.0.0.1` and `::1`. A DNS name never unlocks them, whatever it
/// resolves to: a plugin's own domain re-pointed at `127.0.0.1` or
/// `169.254.169.254` by its owner, or a host name that `/etc/hosts` maps to
/// loopback, stays refused. Numeric spellings that are not IP literals to
/// [`Destination::new`] (`2130706433`, `0x7f.1`, `127.1`) are names, so they
/// unlock nothing either. Wildcard patterns never unlock: `*` must not turn
/// into a way to reach the host's own services or the cloud metadata
/// endpoint.
///
/// Deny patterns that name an IP address apply to resolved addresses too, so
/// a name cannot be used to reach a denied address.
pub fn check_addr(policy: &NetPolicy, dest: &Destination, addr: IpAddr) -> Result<(), Denied> {
    let port_ok = |p: &NetPattern| p.port.is_none_or(|port| port == dest.port);
    if let Some(rule) = policy
        .deny
        .iter()
        .find(|p| port_ok(p) && pattern_ip(p).is_some_and(|ip| ip.to_canonical() == addr.to_canonical()))
    {
        return Err(Denied::DenyRule { dest: dest.clone(), rule: pattern_text(rule) });
    }
    let Some(class) = classify_on_host(addr) else {
        return Ok(());
    };
    let named_literally = policy.allow.iter().any(|p| port_ok(p) && names_literally(p, addr));
    if named_literally {
        Ok(())
    } else {
        Err(Denied::SpecialAddress { dest: dest.clone(), addr, class })
    }
}

/// The second line behind [`check_addr`], once a connection to `peer` is
/// established from `local`: a connection whose two ends have the same
/// address went to this host itself (through its loopback), whatever the
/// address looked like when it was checked (an address added to an
/// interface since, a route [`classify_on_host`] missed). Refused as
/// [`AddrClass::HostAddress`] (or the peer's own class) unless an allow
/// pattern names the peer literally, as [`check_addr`] would have.
pub fn check_connected(policy: &NetPolicy, dest: &Destination, local: IpAddr, peer: IpAddr) -> Result<(), Denied> {
    if local.to_canonical() != peer.to_canonical() {
        return Ok(());
    }
    let port_ok = |p: &NetPattern| p.port.is_none_or(|port| port == dest.port);
    if policy.allow.iter().any(|p| port_ok(p) && names_literally(p, peer)) {
        return Ok(());
    }
    let class = classify(peer).unwrap_or(AddrClass::HostAddress);
    Err(Denied::SpecialAddress { dest: dest.clone(), addr: peer, class })
}

/// Why a name lookup is refused. The stub DNS of transparent egress
/// answers such a name with `NXDOMAIN`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupDenied {
    /// No allow pattern matches the name, at any port.
    #[error("{name} is not allowed by the network policy; add --net {name} to allow it")]
    NotAllowed {
        /// The name looked up.
        name: String,
    },
    /// A deny pattern without a port matches the name.
    #[error("{name} is refused by the deny rule `{rule}`")]
    DenyRule {
        /// The name looked up.
        name: String,
        /// The deny pattern.
        rule: String,
    },
    /// Every address the name resolves to is refused: a special address no
    /// IP-literal pattern names, or one a deny pattern names.
    #[error("{name} resolves to a {class} address ({addr}); a name never unlocks such addresses: add --net {addr} to allow that address")]
    SpecialAddress {
        /// The name looked up.
        name: String,
        /// The first address it resolved to.
        addr: IpAddr,
        /// Why that address is guarded.
        class: AddrClass,
    },
}

impl LookupDenied {
    /// The name that was refused.
    pub fn name(&self) -> &str {
        match self {
            LookupDenied::NotAllowed { name }
            | LookupDenied::DenyRule { name, .. }
            | LookupDenied::SpecialAddress { name, .. } => name,
        }
    }

    /// The deny pattern that matched, if one did.
    pub fn rule(&self) -> Option<&str> {
        match self {
            LookupDenied::DenyRule { rule, .. } => Some(rule),
            LookupDenied::NotAllowed { .. } | LookupDenied::SpecialAddress { .. } => None,
        }
    }

    /// What a short notice should add to "refused lookup of NAME" (see
    /// [`Denied::detail`]).
    pub fn detail(&self) -> Option<String> {
        match self {
            LookupDenied::SpecialAddress { addr, class, .. } => {
                Some(format!("it resolves to a {class} address ({addr}), which a name never unlocks"))
            }
            LookupDenied::NotAllowed { .. } | LookupDenied::DenyRule { .. } => None,
        }
    }

    /// The `--net` pattern that would allow it, when one would.
    pub fn suggestion(&self) -> Option<String> {
        match self {
            LookupDenied::NotAllowed { name } => Some(name.clone()),
            LookupDenied::SpecialAddress { addr, .. } => Some(addr.to_string()),
            LookupDenied::DenyRule { .. } => None,
        }
    }
}

/// Decides whether a name may be looked up: whether some port of it could
/// be allowed. Each connection is then checked with [`check`] and
/// [`check_addr`] for its port.
///
/// `name` must be normalised as [`Destination::new`] does (lower case, no
/// trailing dot). An allow pattern with or without a port matching the name
/// lets it through; a deny pattern without a port refuses it.
pub fn check_lookup(policy: &NetPolicy, name: &str) -> Result<Allowed, LookupDenied> {
    let host = Host::Name(name.to_owned());
    if let Some(rule) = policy.deny.iter().find(|p| p.port.is_none() && host_matches(p, &host, IpCompare::Canonical)) {
        return Err(LookupDenied::DenyRule { name: name.to_owned(), rule: pattern_text(rule) });
    }
    policy
        .allow
        .iter()
        // An IP pattern names an address, which needs no lookup.
        .filter(|p| pattern_ip(p).is_none() && host_matches(p, &host, IpCompare::Exact))
        .max_by_key(|p| specificity(p))
        .map(|rule| Allowed { rule: rule.clone() })
        .ok_or_else(|| LookupDenied::NotAllowed { name: name.to_owned() })
}

/// Whether any name could be looked up under `policy`: some allow pattern
/// is not an IP literal (a name, `*.suffix`, `*` or `localhost`). Without
/// one, the stub DNS does not answer at all.
pub fn allows_any_name(policy: &NetPolicy) -> bool {
    policy.allow.iter().any(|p| pattern_ip(p).is_none())
}

/// Decides whether the addresses a name resolved to leave it worth
/// answering: refused when no address could be connected to at any port,
/// because each one is denied by an IP pattern without a port, or is a
/// special address ([`classify`]) that no allow pattern names literally
/// (see [`check_addr`]). Each connection is checked again for its port.
pub fn check_lookup_addrs(policy: &NetPolicy, name: &str, addrs: &[IpAddr]) -> Result<(), LookupDenied> {
    let mut first_refused = None;
    for addr in addrs {
        let denied = policy
            .deny
            .iter()
            .find(|p| p.port.is_none() && pattern_ip(p).is_some_and(|ip| ip.to_canonical() == addr.to_canonical()));
        if let Some(rule) = denied {
            first_refused.get_or_insert(LookupDenied::DenyRule { name: name.to_owned(), rule: pattern_text(rule) });
            continue;
        }
        match classify_on_host(*addr) {
            None => return Ok(()),
            Some(_) if policy.allow.iter().any(|p| names_literally(p, *addr)) => return Ok(()),
            Some(class) => {
                first_refused.get_or_insert(LookupDenied::SpecialAddress { name: name.to_owned(), addr: *addr, class });
            }
        }
    }
    first_refused.map_or(Ok(()), Err)
}

/// Whether `pattern` names an address [`classify_on_host`] guards
/// literally: an IP literal in a special range or of this host (now; not
/// pure, see there), or `localhost`. Only such a pattern (the same
/// address, see [`check_addr`]) reaches it: `*` and `*.suffix` never do, so
/// they never cover it either (the narrowing of a plugin's patterns by the
/// host's, and the registry's consent diff, ask this).
pub fn names_special_address(pattern: &NetPattern) -> bool {
    is_localhost(pattern) || pattern_ip(pattern).is_some_and(|ip| classify_on_host(ip).is_some())
}

/// The IP address `pattern`'s host is, when it is an IP literal (`1.2.3.4`,
/// `::1`, `[::1]`). `*.suffix` never matches one.
pub fn pattern_address(pattern: &NetPattern) -> Option<IpAddr> {
    pattern_ip(pattern)
}

/// Whether `pattern` names `addr` literally: an IP literal equal to it, or
/// `localhost` for `127.0.0.1` and `::1`. Ports are the caller's business.
fn names_literally(pattern: &NetPattern, addr: IpAddr) -> bool {
    pattern_ip(pattern) == Some(addr) || (is_localhost(pattern) && LOCALHOST.contains(&addr))
}

/// [`classify`], then whether `addr` (or the IPv4 address a NAT64 or 6to4
/// spelling embeds) is one of this host's own addresses
/// ([`AddrClass::HostAddress`]). Not pure: the second question goes to the
/// routes of the calling thread's network namespace (the host's, for the
/// supervisor and the proxy), afresh each time, since addresses change.
/// [`check_addr`] and [`check_lookup_addrs`] classify with it.
pub fn classify_on_host(addr: IpAddr) -> Option<AddrClass> {
    if let Some(class) = classify(addr) {
        return Some(class);
    }
    let own = host::is_host_address(addr) || embedded_v4(addr).is_some_and(|v4| host::is_host_address(v4.into()));
    own.then_some(AddrClass::HostAddress)
}

/// The IPv4 address a NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address
/// leads to. (IPv4-mapped addresses are the IPv4 address itself;
/// IPv4-compatible ones are always [`AddrClass::Reserved`].)
fn embedded_v4(addr: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = addr else { return None };
    let seg = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match seg {
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

/// The guarded range `addr` falls in, or `None` for an ordinary public
/// address. Pure: whether the address is one of this host's own is
/// [`classify_on_host`]'s question.
pub fn classify(addr: IpAddr) -> Option<AddrClass> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddrClass> {
    let [a, b, c, _] = ip.octets();
    let in_net = |net: [u8; 4], bits: u32| {
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    Some(match () {
        // Checked before the ranges that contain them, for the message.
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) => {
            AddrClass::CloudMetadata
        }
        _ if ip.is_broadcast() => AddrClass::Broadcast,
        _ if a == 0 => AddrClass::Unspecified,
        _ if a == 127 => AddrClass::Loopback,
        _ if a == 10 || in_net([172, 16, 0, 0], 12) || (a == 192 && b == 168) => AddrClass::Private,
        _ if a == 169 && b == 254 => AddrClass::LinkLocal,
        _ if in_net([100, 64, 0, 0], 10) => AddrClass::SharedCgnat,
        _ if in_net([224, 0, 0, 0], 4) => AddrClass::Multicast,
        _ if in_net([240, 0, 0, 0], 4) || (a == 192 && b == 0 && c == 0) || in_net([198, 18, 0, 0], 15) => {
            AddrClass::Reserved
        }
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddrClass> {
    let seg = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if ip.is_unspecified() {
        return Some(AddrClass::Unspecified);
    }
    if ip.is_loopback() {
        return Some(AddrClass::Loopback);
    }
    // IPv4-mapped (::ffff:a.b.c.d): the kernel connects to the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d), deprecated since RFC 4291: never a
    // legitimate destination, and a way to spell a private IPv4 address.
    if seg[..6] == [0; 6] {
        return Some(classify_v4(embedded_v4(seg[6], seg[7])).unwrap_or(AddrClass::Reserved));
    }
    // NAT64 well-known prefix (RFC 6052): a NAT64 gateway forwards to the
    // embedded IPv4 address.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded_v4(seg[6], seg[7]));
    }
    // 6to4 (RFC 3056) embeds an IPv4 address in bits 16..48.
    if seg[0] == 0x2002 {
        return classify_v4(embedded_v4(seg[1], seg[2]));
    }
    Some(match seg[0] {
        _ if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => AddrClass::CloudMetadata,
        s if s & 0xfe00 == 0xfc00 => AddrClass::UniqueLocal,
        s if s & 0xffc0 == 0xfe80 => AddrClass::LinkLocal,
        s if s & 0xffc0 == 0xfec0 => AddrClass::Private,
        s if s & 0xff00 == 0xff00 => AddrClass::Multicast,
        0x64 if seg[1] == 0xff9b && seg[2] == 1 => AddrClass::Reserved,
        0x100 if seg[1..4] == [0; 3] => AddrClass::Reserved,
        _ => return None,
    })
}

/// How an IP literal in a pattern is compared with an IP destination. Deny
/// patterns compare canonical forms (`::ffff:1.2.3.4` is `1.2.3.4`) so a
/// different spelling cannot dodge them; allow patterns compare exactly, so
/// only the spelling the operator wrote is let through.
#[derive(Clone, Copy)]
enum IpCompare {
    Exact,
    Canonical,
}

impl IpCompare {
    fn same(self, a: IpAddr, b: IpAddr) -> bool {
        match self {
            IpCompare::Exact => a == b,
            IpCompare::Canonical => a.to_canonical() == b.to_canonical(),
        }
    }
}

fn matches(pattern: &NetPattern, dest: &Destination, ips: IpCompare) -> bool {
    pattern.port.is_none_or(|port| port == dest.port) && host_matches(pattern, dest.host(), ips)
}

fn pattern_host(pattern: &NetPattern) -> &str {
    pattern.host.strip_suffix('.').unwrap_or(&pattern.host)
}

fn pattern_ip(pattern: &NetPattern) -> Option<IpAddr> {
    let host = pattern_host(pattern);
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.parse().ok()
}

/// The addresses the name `localhost` stands for in a pattern.
const LOCALHOST: [IpAddr; 2] = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];

/// Whether the pattern's host is `localhost`, which names the loopback
/// addresses in [`LOCALHOST`] literally.
fn is_localhost(pattern: &NetPattern) -> bool {
    pattern_host(pattern).eq_ignore_ascii_case("localhost")
}

fn host_matches(pattern: &NetPattern, host: &Host, ips: IpCompare) -> bool {
    let p = pattern_host(pattern);
    if p == "*" {
        return true;
    }
    match host {
        Host::Name(name) => match p.strip_prefix("*.") {
            Some(suffix) => {
                name.strip_suffix(suffix).and_then(|sub| sub.strip_suffix('.')).is_some_and(|sub| !sub.is_empty())
            }
            None => name.eq_ignore_ascii_case(p),
        },
        Host::Ip(ip) => match pattern_ip(pattern) {
            Some(pip) => ips.same(pip, *ip),
            // `localhost` is a name for the loopback addresses, so a program
            // that resolved it itself (from `/etc/hosts`) still matches.
            None => is_localhost(pattern) && LOCALHOST.iter().any(|l| ips.same(*l, *ip)),
        },
    }
}

/// Orders matching allow patterns so the record names the narrowest one:
/// exact before `*.suffix` (longer suffix first) before `*`, and a pattern
/// with a port before the same without.
fn specificity(pattern: &NetPattern) -> (u8, usize, bool) {
    let host = pattern_host(pattern);
    let kind = if host == "*" {
        0
    } else if host.starts_with("*.") {
        1
    } else {
        2
    };
    (kind, host.len(), pattern.port.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> NetPolicy {
        let parse = |list: &[&str]| list.iter().map(|p| NetPattern::parse(p).unwrap()).collect();
        NetPolicy { allow: parse(allow), deny: parse(deny), ..NetPolicy::default() }
    }

    fn dest(host: &str, port: u16) -> Destination {
        Destination::new(host, port).unwrap()
    }

    /// What the check answered, in a form a table can spell.
    fn outcome(policy: &NetPolicy, d: &Destination) -> String {
        match check(policy, d) {
            Ok(allowed) => format!("allow {}", allowed.rule_text()),
            Err(Denied::NotAllowed { .. }) => "not-allowed".into(),
            Err(Denied::DenyRule { rule, .. }) => format!("deny {rule}"),
            Err(other) => format!("unexpected {other}"),
        }
    }

    /// allow, deny, host, port, expected outcome.
    type CheckCase<'a> = (&'a [&'a str], &'a [&'a str], &'a str, u16, &'a str);
    /// allow, destination host, port, resolved address, refused as.
    type AddrCase<'a> = (&'a [&'a str], &'a str, u16, &'a str, Option<AddrClass>);

    #[test]
    fn check_table() {
        #[rustfmt::skip]
        let cases: &[CheckCase<'_>] = &[
            // allow, deny, host, port, expected
            (&["api.example.com"], &[], "api.example.com", 443, "allow api.example.com"),
            (&["api.example.com"], &[], "API.Example.COM", 443, "allow api.example.com"),
            (&["api.example.com"], &[], "api.example.com.", 80, "allow api.example.com"),
            (&["api.example.com"], &[], "example.com", 443, "not-allowed"),
            (&["api.example.com"], &[], "x.api.example.com", 443, "not-allowed"),
            (&["api.example.com"], &[], "api.example.com.evil.net", 443, "not-allowed"),
            (&["api.example.com"], &[], "evilapi.example.com", 443, "not-allowed"),
            (&["api.example.com:443"], &[], "api.example.com", 443, "allow api.example.com:443"),
            (&["api.example.com:443"], &[], "api.example.com", 80, "not-allowed"),
            (&["*.example.com"], &[], "a.example.com", 443, "allow *.example.com"),
            (&["*.example.com"], &[], "a.b.example.com", 443, "allow *.example.com"),
            (&["*.example.com"], &[], "example.com", 443, "not-allowed"),
            (&["*.example.com"], &[], "badexample.com", 443, "not-allowed"),
            (&["*.example.com"], &[], "example.com.evil.net", 443, "not-allowed"),
            (&["*.example.com:8443"], &[], "a.example.com", 443, "not-allowed"),
            (&["*.example.com:8443"], &[], "a.example.com", 8443, "allow *.example.com:8443"),
            (&["*"], &[], "anything.at.all", 1, "allow *"),
            (&["*"], &[], "127.0.0.1", 80, "allow *"),
            (&["*:443"], &[], "x.org", 443, "allow *:443"),
            (&["*:443"], &[], "x.org", 80, "not-allowed"),
            (&[], &[], "x.org", 80, "not-allowed"),
            (&["*"], &["evil.com"], "evil.com", 443, "deny evil.com"),
            (&["*"], &["evil.com"], "sub.evil.com", 443, "allow *"),
            (&["*"], &["*.evil.com"], "sub.evil.com", 443, "deny *.evil.com"),
            (&["api.example.com"], &["api.example.com"], "api.example.com", 443, "deny api.example.com"),
            (&["api.example.com"], &["*:25"], "api.example.com", 25, "deny *:25"),
            (&["api.example.com"], &["*:25"], "api.example.com", 443, "allow api.example.com"),
            (&["api.example.com:443"], &["api.example.com:80"], "api.example.com", 443, "allow api.example.com:443"),
            (&["*", "*.example.com", "api.example.com"], &[], "api.example.com", 443, "allow api.example.com"),
            (&["*", "*.example.com"], &[], "api.example.com", 443, "allow *.example.com"),
            (&["api.example.com", "api.example.com:443"], &[], "api.example.com", 443, "allow api.example.com:443"),
            (&["127.0.0.1:8080"], &[], "127.0.0.1", 8080, "allow 127.0.0.1:8080"),
            (&["127.0.0.1:8080"], &[], "127.0.0.2", 8080, "not-allowed"),
            (&["[::1]:8080"], &[], "[::1]", 8080, "allow [::1]:8080"),
            (&["[::1]:8080"], &[], "0:0:0:0:0:0:0:1", 8080, "allow [::1]:8080"),
            (&["127.0.0.1"], &[], "::ffff:127.0.0.1", 80, "not-allowed"),
            (&["*"], &["127.0.0.1"], "::ffff:127.0.0.1", 80, "deny 127.0.0.1"),
            (&["*.0.0.1"], &[], "127.0.0.1", 80, "not-allowed"),
            (&["localhost"], &[], "127.0.0.1", 80, "allow localhost"),
            (&["localhost:8080"], &[], "::1", 8080, "allow localhost:8080"),
            (&["localhost"], &[], "127.0.0.2", 80, "not-allowed"),
            (&["localhost"], &[], "::ffff:127.0.0.1", 80, "not-allowed"),
            (&["*"], &["localhost"], "::ffff:127.0.0.1", 80, "deny localhost"),
            (&["xn--bcher-kva.example"], &[], "xn--bcher-kva.example", 443, "allow xn--bcher-kva.example"),
        ];
        for (allow, deny, host, port, expected) in cases {
            let got = outcome(&policy(allow, deny), &dest(host, *port));
            assert_eq!(&got, expected, "allow {allow:?} deny {deny:?} -> {host}:{port}");
        }
        assert!(cases.len() >= 30);
    }

    #[test]
    fn a_connection_whose_ends_share_an_address_needs_a_literal_pattern() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let any = policy(&["*"], &[]);
        let to = dest("x.test", 80);
        assert_eq!(check_connected(&any, &to, ip("198.51.100.7"), ip("203.0.113.9")), Ok(()));
        for local in ["203.0.113.9", "::ffff:203.0.113.9"] {
            let denied = check_connected(&any, &to, ip(local), ip("203.0.113.9")).unwrap_err();
            assert!(matches!(denied, Denied::SpecialAddress { class: AddrClass::HostAddress, .. }), "{local}");
            assert_eq!(denied.suggestion().as_deref(), Some("203.0.113.9:80"));
        }
        let literal = policy(&["203.0.113.9:80"], &[]);
        assert_eq!(check_connected(&literal, &dest("203.0.113.9", 80), ip("203.0.113.9"), ip("203.0.113.9")), Ok(()));
        let other_port = policy(&["203.0.113.9:81", "*"], &[]);
        assert!(check_connected(&other_port, &to, ip("203.0.113.9"), ip("203.0.113.9")).is_err());
        let localhost = policy(&["localhost:80"], &[]);
        assert_eq!(check_connected(&localhost, &dest("localhost", 80), ip("127.0.0.1"), ip("127.0.0.1")), Ok(()));
        let denied = check_connected(&any, &to, ip("127.0.0.1"), ip("127.0.0.1")).unwrap_err();
        assert!(matches!(denied, Denied::SpecialAddress { class: AddrClass::Loopback, .. }));
    }

    #[test]
    fn nat64_and_6to4_spellings_lead_to_their_ipv4_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let v4 = Some(Ipv4Addr::new(203, 0, 113, 9));
        assert_eq!(embedded_v4(ip("64:ff9b::cb00:7109")), v4);
        assert_eq!(embedded_v4(ip("2002:cb00:7109::1")), v4);
        assert_eq!(embedded_v4(ip("2001:db8::cb00:7109")), None);
        assert_eq!(embedded_v4(ip("203.0.113.9")), None);
        // Loopback is this host's whichever question answers.
        assert_eq!(classify_on_host(ip("127.0.0.1")), Some(AddrClass::Loopback));
        assert_eq!(classify_on_host(ip("203.0.113.9")), None);
    }

    #[test]
    fn check_addr_table() {
        #[rustfmt::skip]
        let cases: &[AddrCase<'_>] = &[
            // allow, destination host, port, resolved address, refused as
            (&["*"], "example.com", 443, "93.184.216.34", None),
            (&["*"], "example.com", 443, "2606:2800:220:1:248:1893:25c8:1946", None),
            (&["*"], "localhost", 80, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["*"], "localhost", 80, "127.255.0.9", Some(AddrClass::Loopback)),
            (&["*"], "localhost", 80, "::1", Some(AddrClass::Loopback)),
            (&["*"], "x.test", 80, "10.1.2.3", Some(AddrClass::Private)),
            (&["*"], "x.test", 80, "172.16.0.1", Some(AddrClass::Private)),
            (&["*"], "x.test", 80, "172.31.255.255", Some(AddrClass::Private)),
            (&["*"], "x.test", 80, "172.32.0.1", None),
            (&["*"], "x.test", 80, "192.168.1.1", Some(AddrClass::Private)),
            (&["*"], "x.test", 80, "169.254.1.1", Some(AddrClass::LinkLocal)),
            (&["*"], "x.test", 80, "169.254.169.254", Some(AddrClass::CloudMetadata)),
            (&["*"], "x.test", 80, "100.64.0.1", Some(AddrClass::SharedCgnat)),
            (&["*"], "x.test", 80, "100.127.255.255", Some(AddrClass::SharedCgnat)),
            (&["*"], "x.test", 80, "100.128.0.1", None),
            (&["*"], "x.test", 80, "100.100.100.200", Some(AddrClass::CloudMetadata)),
            (&["*"], "x.test", 80, "0.0.0.0", Some(AddrClass::Unspecified)),
            (&["*"], "x.test", 80, "0.1.2.3", Some(AddrClass::Unspecified)),
            (&["*"], "x.test", 80, "224.0.0.1", Some(AddrClass::Multicast)),
            (&["*"], "x.test", 80, "255.255.255.255", Some(AddrClass::Broadcast)),
            (&["*"], "x.test", 80, "240.0.0.1", Some(AddrClass::Reserved)),
            (&["*"], "x.test", 80, "::", Some(AddrClass::Unspecified)),
            (&["*"], "x.test", 80, "fe80::1", Some(AddrClass::LinkLocal)),
            (&["*"], "x.test", 80, "fc00::1", Some(AddrClass::UniqueLocal)),
            (&["*"], "x.test", 80, "fd12:3456::1", Some(AddrClass::UniqueLocal)),
            (&["*"], "x.test", 80, "fd00:ec2::254", Some(AddrClass::CloudMetadata)),
            (&["*"], "x.test", 80, "ff02::1", Some(AddrClass::Multicast)),
            (&["*"], "x.test", 80, "::ffff:127.0.0.1", Some(AddrClass::Loopback)),
            (&["*"], "x.test", 80, "::ffff:169.254.169.254", Some(AddrClass::CloudMetadata)),
            (&["*"], "x.test", 80, "::ffff:8.8.8.8", None),
            (&["*"], "x.test", 80, "::127.0.0.1", Some(AddrClass::Loopback)),
            (&["*"], "x.test", 80, "::8.8.8.8", Some(AddrClass::Reserved)),
            (&["*"], "x.test", 80, "64:ff9b::7f00:1", Some(AddrClass::Loopback)),
            (&["*"], "x.test", 80, "64:ff9b::a9fe:a9fe", Some(AddrClass::CloudMetadata)),
            (&["*"], "x.test", 80, "64:ff9b::808:808", None),
            (&["*"], "x.test", 80, "2002:c0a8:0101::1", Some(AddrClass::Private)),
            // Literal names and addresses unlock, wildcards never do.
            (&["localhost:8080"], "localhost", 8080, "127.0.0.1", None),
            (&["localhost:8080"], "localhost", 8080, "::1", None),
            (&["localhost:8080"], "localhost", 9090, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["localhost"], "localhost", 9090, "127.0.0.1", None),
            (&["localhost"], "localhost", 9090, "127.0.0.2", Some(AddrClass::Loopback)),
            (&["localhost"], "localhost", 9090, "10.0.0.1", Some(AddrClass::Private)),
            // Issue 9 finding 10: a name pattern never unlocks a special
            // address, whatever the name resolves to.
            (&["evil.test"], "evil.test", 80, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["evil.test:80"], "evil.test", 80, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["evil.test"], "evil.test", 80, "169.254.169.254", Some(AddrClass::CloudMetadata)),
            (&["evil.test"], "evil.test", 80, "10.1.2.3", Some(AddrClass::Private)),
            (&["evil.test"], "evil.test", 80, "100.64.0.1", Some(AddrClass::SharedCgnat)),
            (&["evil.test"], "evil.test", 80, "fd00::1", Some(AddrClass::UniqueLocal)),
            (&["evil.test"], "evil.test", 80, "::ffff:127.0.0.1", Some(AddrClass::Loopback)),
            (&["evil.test"], "evil.test", 80, "64:ff9b::a9fe:a9fe", Some(AddrClass::CloudMetadata)),
            (&["evil.test"], "evil.test", 80, "2002:7f00:1::", Some(AddrClass::Loopback)),
            (&["evil.test"], "evil.test", 80, "::7f00:1", Some(AddrClass::Loopback)),
            (&["2130706433:80"], "2130706433", 80, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["0x7f.1"], "0x7f.1", 80, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["0177.0.0.1"], "0177.0.0.1", 80, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["127.1"], "127.1", 80, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["metadata.google.internal"], "metadata.google.internal", 80, "169.254.169.254", Some(AddrClass::CloudMetadata)),
            // An IP literal or `localhost` names the address, for any name
            // that resolves to it (the operator allowed the address itself).
            (&["evil.test", "127.0.0.1:80"], "evil.test", 80, "127.0.0.1", None),
            (&["evil.test", "localhost:80"], "evil.test", 80, "127.0.0.1", None),
            (&["evil.test", "localhost:80"], "evil.test", 80, "::1", None),
            (&["127.0.0.1:8080"], "127.0.0.1", 8080, "127.0.0.1", None),
            (&["127.0.0.1:8080", "*"], "rebind.test", 8080, "127.0.0.1", None),
            (&["127.0.0.1:8080", "*"], "rebind.test", 8081, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["*.localhost"], "a.localhost", 80, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["*:8080"], "localhost", 8080, "127.0.0.1", Some(AddrClass::Loopback)),
            (&["169.254.169.254"], "169.254.169.254", 80, "169.254.169.254", None),
            (&["127.0.0.1"], "::ffff:127.0.0.1", 80, "::ffff:127.0.0.1", Some(AddrClass::Loopback)),
            (&["[::1]:8080"], "[::1]", 8080, "::1", None),
        ];
        for (allow, host, port, addr, expected) in cases {
            let p = policy(allow, &[]);
            let got = check_addr(&p, &dest(host, *port), addr.parse().unwrap());
            let got_class = match got {
                Ok(()) => None,
                Err(Denied::SpecialAddress { class, .. }) => Some(class),
                Err(other) => panic!("{other}"),
            };
            assert_eq!(got_class, *expected, "allow {allow:?} -> {host}:{port} at {addr}");
        }
        assert!(cases.len() >= 30);
    }

    #[test]
    fn lookups_are_checked_by_name_at_any_port() {
        let lookup = |allow: &[&str], deny: &[&str], name: &str| match check_lookup(&policy(allow, deny), name) {
            Ok(a) => format!("allow {}", a.rule_text()),
            Err(LookupDenied::NotAllowed { .. }) => "not-allowed".into(),
            Err(LookupDenied::DenyRule { rule, .. }) => format!("deny {rule}"),
            Err(other) => format!("unexpected {other}"),
        };
        assert_eq!(lookup(&["api.example.com:443"], &[], "api.example.com"), "allow api.example.com:443");
        assert_eq!(lookup(&["*.example.com"], &[], "a.example.com"), "allow *.example.com");
        assert_eq!(lookup(&["*.example.com"], &[], "example.com"), "not-allowed");
        assert_eq!(lookup(&["*"], &[], "anything"), "allow *");
        assert_eq!(lookup(&["*:443"], &[], "anything"), "allow *:443");
        assert_eq!(lookup(&[], &[], "anything"), "not-allowed");
        assert_eq!(lookup(&["*"], &["evil.com"], "evil.com"), "deny evil.com");
        // A deny pattern with a port refuses that port's connections, not
        // the name.
        assert_eq!(lookup(&["*"], &["evil.com:25"], "evil.com"), "allow *");
        assert_eq!(lookup(&["127.0.0.1:80"], &[], "127.0.0.1"), "not-allowed");
        let e = check_lookup(&policy(&[], &[]), "registry.npmjs.org").unwrap_err();
        assert_eq!(
            e.to_string(),
            "registry.npmjs.org is not allowed by the network policy; add --net registry.npmjs.org to allow it"
        );
        assert_eq!(e.suggestion().as_deref(), Some("registry.npmjs.org"));
        assert!(!allows_any_name(&policy(&[], &[])));
        assert!(!allows_any_name(&policy(&["127.0.0.1:80", "[::1]"], &[])));
        assert!(allows_any_name(&policy(&["127.0.0.1:80", "localhost"], &[])));
        assert!(allows_any_name(&policy(&["*:443"], &[])));
    }

    #[test]
    fn a_lookup_whose_every_address_is_special_is_refused() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = policy(&["evil.test"], &[]);
        let e = check_lookup_addrs(&p, "evil.test", &[ip("127.0.0.1"), ip("169.254.169.254")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "evil.test resolves to a loopback address (127.0.0.1); a name never unlocks such addresses: add --net 127.0.0.1 to allow that address"
        );
        assert_eq!(e.suggestion().as_deref(), Some("127.0.0.1"));
        assert!(check_lookup_addrs(&p, "evil.test", &[ip("127.0.0.1"), ip("93.184.216.34")]).is_ok());
        assert!(
            check_lookup_addrs(&policy(&["evil.test", "127.0.0.1:8080"], &[]), "evil.test", &[ip("127.0.0.1")]).is_ok()
        );
        assert!(check_lookup_addrs(&policy(&["evil.test", "localhost"], &[]), "evil.test", &[ip("::1")]).is_ok());
        assert!(check_lookup_addrs(&policy(&["*"], &[]), "x", &[ip("::ffff:10.0.0.1")]).is_err());
        let e = check_lookup_addrs(&policy(&["*"], &["93.184.216.34"]), "x", &[ip("93.184.216.34")]).unwrap_err();
        assert_eq!(e.rule(), Some("93.184.216.34"));
        assert!(check_lookup_addrs(&policy(&["*"], &["93.184.216.34:25"]), "x", &[ip("93.184.216.34")]).is_ok());
    }

    #[test]
    fn deny_patterns_apply_to_resolved_addresses() {
        let p = policy(&["*"], &["93.184.216.34:443"]);
        let d = dest("example.com", 443);
        assert!(check(&p, &d).is_ok());
        let err = check_addr(&p, &d, "93.184.216.34".parse().unwrap()).unwrap_err();
        assert_eq!(err.rule(), Some("93.184.216.34:443"));
        let err = check_addr(&p, &d, "::ffff:93.184.216.34".parse().unwrap()).unwrap_err();
        assert_eq!(err.rule(), Some("93.184.216.34:443"));
        assert!(check_addr(&p, &dest("example.com", 80), "93.184.216.34".parse().unwrap()).is_ok());
    }

    #[test]
    fn denials_explain_themselves() {
        let p = policy(&["localhost:8080"], &["*.evil.com"]);
        let e = check(&p, &dest("api.example.com", 443)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "api.example.com:443 is not allowed by the network policy; add --net api.example.com:443 to allow it"
        );
        assert_eq!(e.suggestion().as_deref(), Some("api.example.com:443"));
        let e = check(&p, &dest("x.evil.com", 443)).unwrap_err();
        assert_eq!(e.to_string(), "x.evil.com:443 is refused by the deny rule `*.evil.com`");
        assert_eq!(e.suggestion(), None);
        let e = check_addr(&policy(&["*"], &[]), &dest("localhost", 9000), "127.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "localhost:9000 resolves to a loopback address (127.0.0.1); a name never unlocks such addresses: add --net 127.0.0.1:9000 to allow that address"
        );
        assert_eq!(e.suggestion().as_deref(), Some("127.0.0.1:9000"));
        let e = check_addr(&policy(&["evil.test"], &[]), &dest("evil.test", 80), "169.254.169.254".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "evil.test:80 resolves to a cloud metadata address (169.254.169.254); a name never unlocks such addresses: add --net 169.254.169.254:80 to allow that address"
        );
        let e = check_addr(&policy(&["*"], &[]), &dest("::1", 9000), "::1".parse().unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("[::1]:9000 is a loopback address; name it literally to allow: add --net [::1]:9000"),
            "{e}"
        );
    }

    #[test]
    fn destinations_normalise_and_refuse_junk() {
        assert_eq!(dest("Example.COM.", 1).to_string(), "example.com:1");
        assert_eq!(dest("[::1]", 8080).to_string(), "[::1]:8080");
        assert_eq!(dest("::1", 8080).host(), &Host::Ip("::1".parse().unwrap()));
        assert_eq!(dest("10.0.0.1", 1).host(), &Host::Ip("10.0.0.1".parse().unwrap()));
        for bad in [
            "",
            ".",
            "a..b",
            "a b",
            "a@b",
            "fe80::1%eth0",
            "[::1",
            "[1.2.3.4]",
            "bücher.example",
            "a/b",
            "a:b",
            &"a".repeat(64),
            &["a"; 200].join("."),
            "\0",
            "*.example.com",
        ] {
            assert!(Destination::new(bad, 80).is_err(), "{bad:?}");
        }
        assert_eq!(Destination::new("a.com", 0), Err(ParseDestinationError::ZeroPort));
        // Forms that inet_aton would read as 127.0.0.1 are names to us; they
        // are refused after resolution by the address guard, not matched by a
        // literal `127.0.0.1` pattern.
        assert_eq!(dest("2130706433", 80).host(), &Host::Name("2130706433".into()));
        assert_eq!(dest("127.1", 80).host(), &Host::Name("127.1".into()));
    }

    #[test]
    fn pattern_text_round_trips() {
        for raw in [
            "api.example.com",
            "api.example.com:443",
            "*",
            "*:443",
            "*.example.com",
            "[::1]:8080",
            "::1",
            "10.0.0.1:22",
        ] {
            assert_eq!(pattern_text(&NetPattern::parse(raw).unwrap()), raw);
        }
    }
}
