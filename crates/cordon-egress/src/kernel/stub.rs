//! The sandbox's stub DNS: UDP and TCP on the sandbox's own 127.0.0.1:53
//! (sockets init created in the sandbox's namespace; cordon serves them
//! from its own). The sandbox's `/etc/resolv.conf` points here, and it is
//! the only UDP that leaves the sandbox.
//!
//! - A name no allow pattern matches gets `NXDOMAIN` and a notice; it is
//!   never sent anywhere, so data cannot leave in the labels of a lookup
//!   to a zone the policy does not allow.
//! - An allowed name is resolved once, by the host's resolver, and every
//!   address checked ([`check_lookup_addrs`]): a name that resolves only to
//!   loopback, private or metadata addresses is refused like the others.
//! - The answer is one synthetic `A` record from 198.18.0.0/15 (see
//!   `names`): the connect to it is checked against the name and goes to
//!   the addresses resolved here. `AAAA` and every other type get an empty
//!   answer: programs fall back to IPv4.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use super::dns::{self, Query, QueryError, Rcode, CLASS_IN, TYPE_A};
use super::ledger::Notice;
use super::Shared;
use crate::policy::{check_lookup, check_lookup_addrs, LookupDenied};
use crate::record::Protocol;

/// Time to live of the stub's answers: the mapping never changes during a
/// run, so resolvers may cache it.
const TTL: u32 = 300;
/// Queries answered at once; more wait (UDP: dropped, the client retries).
const MAX_IN_FLIGHT: usize = 64;
/// TCP connections at once.
const MAX_TCP: usize = 16;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most addresses of one name that are kept.
const MAX_ADDRS: usize = 16;

/// The host's resolver, as the stub uses it: one blocking call per name.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `name` (a normalised host name).
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>>;
}

/// `getaddrinfo`, through the standard library.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        use std::net::ToSocketAddrs;
        Ok((name, 0u16).to_socket_addrs()?.map(|a| a.ip()).collect())
    }
}

/// Serves the UDP socket until the runtime stops.
pub(crate) async fn serve_udp(sh: Arc<Shared>, sock: OwnedFd) {
    let Ok(sock) = udp(sock) else { return };
    let sock = Arc::new(sock);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; dns::MAX_MESSAGE * 8];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else { continue };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else { continue };
        let (sh, sock, msg) = (Arc::clone(&sh), Arc::clone(&sock), buf[..n].to_vec());
        tokio::spawn(async move {
            if let Some(reply) = respond(&sh, &msg, peer).await {
                let _ = sock.send_to(&reply, peer).await;
            }
            drop(permit);
        });
    }
}

/// Serves the TCP listener until the runtime stops.
pub(crate) async fn serve_tcp(sh: Arc<Shared>, listener: OwnedFd) {
    let Ok(listener) = tcp(listener) else { return };
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else { continue };
        let sh = Arc::clone(&sh);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(60), serve_stream(&sh, stream, peer)).await;
            drop(permit);
        });
    }
}

fn udp(fd: OwnedFd) -> io::Result<UdpSocket> {
    let std = std::net::UdpSocket::from(fd);
    std.set_nonblocking(true)?;
    UdpSocket::from_std(std)
}

fn tcp(fd: OwnedFd) -> io::Result<TcpListener> {
    let std = std::net::TcpListener::from(fd);
    std.set_nonblocking(true)?;
    TcpListener::from_std(std)
}

/// DNS over TCP: two length bytes, then the message; several per
/// connection.
async fn serve_stream(sh: &Shared, mut stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len > dns::MAX_MESSAGE * 8 {
            return Ok(());
        }
        let mut msg = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut msg)).await.map_err(|_| io::ErrorKind::TimedOut)??;
        let Some(reply) = respond(sh, &msg, peer).await else { return Ok(()) };
        let mut out = u16::try_from(reply.len()).unwrap_or(0).to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        stream.write_all(&out).await?;
    }
}

/// The answer to one message, if it deserves one.
pub(crate) async fn respond(sh: &Shared, msg: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
    let q = match dns::parse_query(msg) {
        Ok(q) => q,
        Err(QueryError::Ignore) => return None,
        Err(QueryError::Answer { id, rcode, why }) => {
            if rcode == Rcode::NxDomain {
                notice(sh, peer, "a name that is not a host name", Found::just(why.to_owned()), Repeat::Count);
            }
            return Some(dns::error(None, id, rcode));
        }
    };
    if q.qclass != CLASS_IN {
        return Some(dns::error(Some(&q), q.id, Rcode::Refused));
    }
    if let Err(denied) = check_lookup(&sh.config.policy, &q.name) {
        // One lookup asks for A and AAAA: the A query is the one counted.
        refused(sh, peer, &denied, if q.qtype == TYPE_A { Repeat::Count } else { Repeat::Ignore });
        return Some(dns::error(Some(&q), q.id, Rcode::NxDomain));
    }
    if q.qtype != TYPE_A {
        // Allowed, but only IPv4 answers exist here: "no data".
        return Some(dns::answer(&q, &[], TTL));
    }
    Some(match resolve(sh, &q, peer).await {
        Ok(addr) => dns::answer(&q, &[addr], TTL),
        Err(rcode) => dns::error(Some(&q), q.id, rcode),
    })
}

/// The synthetic address of an allowed name, resolving it the first time.
async fn resolve(sh: &Shared, q: &Query, peer: SocketAddr) -> Result<std::net::Ipv4Addr, Rcode> {
    if let Some(addr) = sh.lock().names.address_of(&q.name) {
        return Ok(addr);
    }
    let resolver = Arc::clone(&sh.config.resolver);
    let name = q.name.clone();
    let lookup = tokio::task::spawn_blocking(move || resolver.resolve(&name));
    let addrs = match tokio::time::timeout(sh.config.connect_timeout, lookup).await {
        Ok(Ok(Ok(addrs))) => addrs,
        // The name does not exist for the host either.
        Ok(Ok(Err(_))) => return Err(Rcode::NxDomain),
        Ok(Err(_)) | Err(_) => return Err(Rcode::ServFail),
    };
    let mut unique: Vec<IpAddr> = vec![];
    for a in addrs {
        if !unique.contains(&a) && unique.len() < MAX_ADDRS {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return Err(Rcode::NxDomain);
    }
    if let Err(denied) = check_lookup_addrs(&sh.config.policy, &q.name, &unique) {
        refused(sh, peer, &denied, Repeat::Count);
        return Err(Rcode::NxDomain);
    }
    let assigned = sh.lock().names.assign(&q.name, unique);
    match assigned {
        Ok(addr) => Ok(addr),
        Err(full) => {
            notice(sh, peer, &q.name, Found::just(full.to_string()), Repeat::Count);
            Err(Rcode::ServFail)
        }
    }
}

/// Whether a repeated refusal adds to the count.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Count,
    Ignore,
}

fn refused(sh: &Shared, peer: SocketAddr, d: &LookupDenied, repeat: Repeat) {
    let found = Found {
        reason: d.to_string(),
        suggestion: d.suggestion(),
        rule: d.rule().map(str::to_owned),
        detail: d.detail(),
    };
    notice(sh, peer, d.name(), found, repeat);
}

/// What is known about a refused lookup.
struct Found {
    reason: String,
    suggestion: Option<String>,
    rule: Option<String>,
    detail: Option<String>,
}

impl Found {
    fn just(reason: String) -> Self {
        Found { reason, suggestion: None, rule: None, detail: None }
    }
}

/// Records a refused lookup (counted when seen before, unless `repeat`
/// says not to) and prints the notice the first time.
fn notice(sh: &Shared, peer: SocketAddr, name: &str, found: Found, repeat: Repeat) {
    let kind = "lookup";
    let known = match repeat {
        Repeat::Count => sh.lock().ledger.count_if_known(kind, name, &found.reason),
        Repeat::Ignore => sh.lock().ledger.is_known(kind, name, &found.reason),
    };
    if known {
        return;
    }
    let tid = sh.lock().resolver_users.get(&peer.port()).copied();
    let process = tid.and_then(super::process::process_of);
    let notice = Notice {
        kind,
        target: name.to_owned(),
        process,
        reason: found.reason,
        suggestion: found.suggestion,
        detail: found.detail,
    };
    sh.lock().ledger.refused(Protocol::Dns, &notice, Some(name.to_owned()), 0, found.rule);
    sh.notify(&notice);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use cordon_core::policy::{NetPattern, NetPolicy};

    use super::*;
    use crate::kernel::KernelConfig;

    /// A resolver that answers from a table and remembers every name it
    /// was asked for.
    #[derive(Default)]
    struct Table {
        answers: HashMap<String, Vec<IpAddr>>,
        asked: Mutex<Vec<String>>,
    }

    impl Resolve for Arc<Table> {
        fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
            self.asked.lock().unwrap().push(name.to_owned());
            self.answers.get(name).cloned().ok_or_else(|| io::Error::other("no such name"))
        }
    }

    fn table(entries: &[(&str, &[&str])]) -> Arc<Table> {
        Arc::new(Table {
            answers: entries
                .iter()
                .map(|(n, a)| (n.to_string(), a.iter().map(|a| a.parse().unwrap()).collect()))
                .collect(),
            asked: Mutex::default(),
        })
    }

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![];
        for v in [7u16, 0x0100, 1, 0, 0, 0] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        for label in name.split('.') {
            m.push(u8::try_from(label.len()).unwrap());
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    /// (rcode, the answer's address if any) for each query, and the records.
    fn ask(
        allow: &[&str],
        resolver: Arc<Table>,
        queries: &[(&str, u16)],
    ) -> (Vec<(u8, Option<String>)>, Vec<crate::ConnectionRecord>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let policy = NetPolicy {
                allow: allow.iter().map(|p| NetPattern::parse(p).unwrap()).collect(),
                ..NetPolicy::default()
            };
            let mut config = KernelConfig::new(policy);
            config.resolver = Arc::new(resolver);
            let (sh, _helper) = Shared::for_tests(config);
            let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
            let mut out = vec![];
            for (name, qtype) in queries {
                let r = respond(&sh, &query(name, *qtype), peer).await.expect("an answer");
                let answers = u16::from_be_bytes([r[6], r[7]]);
                let addr = (answers > 0).then(|| {
                    std::net::Ipv4Addr::new(r[r.len() - 4], r[r.len() - 3], r[r.len() - 2], r[r.len() - 1]).to_string()
                });
                out.push((r[3] & 0x0f, addr));
            }
            (out, sh.records())
        })
    }

    const AAAA: u16 = 28;

    #[test]
    fn an_allowed_name_is_resolved_once_and_mapped() {
        let t = table(&[("api.example.com", &["93.184.216.34"])]);
        let (answers, records) = ask(
            &["api.example.com:443"],
            Arc::clone(&t),
            &[("api.example.com", TYPE_A), ("API.example.com", TYPE_A), ("api.example.com", AAAA)],
        );
        assert_eq!(answers, [(0, Some("198.18.0.1".into())), (0, Some("198.18.0.1".into())), (0, None)]);
        assert_eq!(*t.asked.lock().unwrap(), ["api.example.com"], "resolved once");
        assert!(records.is_empty());
    }

    #[test]
    fn names_outside_the_policy_are_never_resolved_even_with_long_labels() {
        let t = table(&[]);
        let secret = format!("{}.{}", "a".repeat(63), "b".repeat(63));
        let name = format!("{secret}.exfil.example");
        let (answers, records) =
            ask(&["*.allowed.example"], Arc::clone(&t), &[(&name, TYPE_A), (&name, AAAA), (&name, 16)]);
        assert!(answers.iter().all(|a| *a == (3, None)), "{answers:?}");
        assert!(t.asked.lock().unwrap().is_empty(), "a refused name reached the resolver");
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].host.as_str(), records[0].count), (name.as_str(), 1), "AAAA and TXT are not counted");
        assert_eq!(records[0].suggestion.as_deref(), Some(name.as_str()));
    }

    #[test]
    fn a_name_resolving_only_to_special_addresses_is_refused() {
        let t = table(&[
            ("loop.test", &["127.0.0.1"]),
            ("meta.test", &["169.254.169.254"]),
            ("mapped.test", &["::ffff:127.0.0.1"]),
            ("nat64.test", &["64:ff9b::a9fe:a9fe"]),
            ("mixed.test", &["10.0.0.1", "93.184.216.35"]),
        ]);
        let (answers, records) = ask(
            &["*.test"],
            t,
            &[
                ("loop.test", TYPE_A),
                ("meta.test", TYPE_A),
                ("mapped.test", TYPE_A),
                ("nat64.test", TYPE_A),
                ("mixed.test", TYPE_A),
            ],
        );
        assert_eq!(&answers[..4], &[(3, None), (3, None), (3, None), (3, None)]);
        assert_eq!(answers[4], (0, Some("198.18.0.1".into())), "a public address among them is enough to answer");
        let reasons: Vec<&str> = records.iter().map(|r| r.error.as_deref().unwrap()).collect();
        assert!(reasons[0].contains("resolves to a loopback address (127.0.0.1); a name never unlocks"), "{reasons:?}");
        assert!(reasons[1].contains("cloud metadata address (169.254.169.254)"), "{reasons:?}");
        assert!(reasons[2].contains("loopback address (::ffff:127.0.0.1)"), "{reasons:?}");
        assert!(reasons[3].contains("cloud metadata address"), "{reasons:?}");
        assert_eq!(records[0].suggestion.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn what_the_host_cannot_resolve_is_nxdomain_without_a_notice() {
        let (answers, records) = ask(&["*"], table(&[]), &[("nowhere.test", TYPE_A)]);
        assert_eq!(answers, [(3, None)]);
        assert!(records.is_empty(), "{records:?}");
    }
}
