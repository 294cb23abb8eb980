//! cordon-egress: a sandbox's way out to the network, and the allow-list
//! decisions every way out shares.
//!
//! The decisions ([`check`], [`check_addr`], [`classify`]) are pure and
//! shared by every egress path, so a destination is judged the same way
//! whichever route a program takes. [`ConnectionRecord`] is what every path
//! reports per connection.
//!
//! # The filtering proxy
//!
//! A sandboxed command has an empty network namespace. Cordon's supervisor
//! starts this proxy on a listener the sandbox can reach, sets
//! `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` ([`proxy_env`]), and every
//! connection the command makes goes through [`check`] and [`check_addr`]
//! against the policy's `net` part ([`NetPolicy`](cordon_core::policy::NetPolicy)).
//!
//! # What it protects
//!
//! - **Host allow-lists.** Only destinations an allow pattern matches are
//!   reached: `api.example.com`, `*.example.com` (subdomains, not the apex),
//!   `*`, each with an optional `:port`. Deny patterns win over allow
//!   patterns. The default is deny.
//! - **SSRF.** Loopback, private, link-local, CGNAT, unique-local,
//!   unspecified, multicast, broadcast, reserved and cloud-metadata
//!   addresses, and their IPv4-mapped, IPv4-compatible, NAT64 and 6to4 IPv6
//!   spellings, are refused unless an allow pattern names the host or the
//!   address literally (`localhost:8080`, `127.0.0.1:8080`). `*` never
//!   unlocks them.
//! - **DNS rebinding.** A name is resolved once; every address is checked;
//!   the proxy connects to a checked address and never resolves again.
//! - **Accounting.** Every client connection, allowed or not, ends up as
//!   one [`ConnectionRecord`] with exact payload byte counts, returned by
//!   [`ProxyHandle::shutdown`].
//! - **Explanations.** A refused HTTP client gets `403 Forbidden` with a
//!   text body naming the destination and the `--net` pattern that would
//!   allow it; a SOCKS5 client gets reply `0x02` ("not allowed by ruleset").
//!
//! # Protocols
//!
//! One listener serves all three; the first byte tells them apart.
//!
//! - HTTP forward proxy: absolute-form requests (`GET http://host/path
//!   HTTP/1.1`). The proxy forwards **one request per client connection**:
//!   it sends `Connection: close` upstream and downstream, rewrites the
//!   target to origin-form, replaces `Host`, and drops hop-by-hop fields
//!   (`Connection` and what it lists, `Proxy-Connection`,
//!   `Proxy-Authorization`, `Keep-Alive`, `TE`, `Trailer`, `Upgrade`).
//!   Clients open a new connection for the next request, as they do after
//!   `Connection: close`.
//! - HTTP `CONNECT host:port`: a byte tunnel (HTTPS, or anything else).
//! - SOCKS5 (RFC 1928): no authentication, `CONNECT` only, names and IPv4
//!   and IPv6 addresses. `socks5h://` (names resolved by the proxy) is what
//!   [`proxy_env`] sets, because the sandbox has no resolver.
//!
//! # Bounds
//!
//! Request and response heads: 64 KiB (`431` past it for requests).
//! Handshake: 30 s. Resolving and connecting: 10 s each. Idle connections:
//! 300 s. Connections at once: 256. Records: 100 000. These are fields of
//! [`ProxyConfig`] (the head limit is [`MAX_HEAD_BYTES`]).
//!
//! Relay buffers start at 16 KiB and grow to 1 MiB per direction for
//! transfers that keep them full: at most about 2 MiB per connection, so
//! 512 MiB at the default 256 connections if every one is a bulk transfer.
//!
//! # Current limitations
//!
//! - No TLS interception, so no path-level rules for HTTPS (patterns with a
//!   path are refused when the policy is parsed).
//! - No HTTP keep-alive towards clients or servers, no HTTP/2 to the proxy,
//!   no `Upgrade` on forwarded requests (WebSocket clients use `CONNECT`).
//! - No UDP (SOCKS5 `UDP ASSOCIATE` is refused), no SOCKS4.
//! - Names are resolved with the host's resolver (`getaddrinfo` on a small
//!   blocking pool); a lookup stuck past the timeout keeps its thread busy.
//!
//! # Test strategy
//!
//! The decisions are pure and tested in tables ([`check`], [`check_addr`],
//! the HTTP and SOCKS5 parsers, including garbage input). `tests/` runs
//! the real proxy against servers the tests start on 127.0.0.1 and drives
//! it with curl and Python's `urllib`, checking status, body, what the
//! server received, and that the records' byte counts are exact.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod policy;
pub mod proxy;
mod record;

pub use policy::{
    check, check_addr, classify, pattern_text, AddrClass, Allowed, Denied, Destination, Host, ParseDestinationError,
};
pub use proxy::{proxy_env, spawn, ProxyConfig, ProxyHandle, SpawnError, MAX_HEAD_BYTES};
pub use record::{ConnectionRecord, Protocol};
