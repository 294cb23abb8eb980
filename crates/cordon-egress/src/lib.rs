//! cordon-egress: a sandbox's way out to the network, and the allow-list
//! decisions every way out shares.
//!
//! The decisions ([`check`], [`check_addr`], [`check_lookup`],
//! [`check_lookup_addrs`], [`classify`]) are shared by every egress path, so
//! a destination is judged the same way whichever route a program takes.
//! They are pure but for one question asked of the host's routes
//! ([`classify_on_host`]: is this address one of the host's own?). [`ConnectionRecord`] is what every path reports per connection.
//!
//! Two routes, against the policy's `net` part
//! ([`NetPolicy`](cordon_core::policy::NetPolicy)):
//!
//! - [`kernel`]: transparent egress, the default. The supervisor decides
//!   every `connect()` of the sandbox (seccomp user notification) and every
//!   name lookup (its stub DNS), connects allowed TCP destinations from the
//!   host's namespace and hands the established socket to the program. Any
//!   program works; no byte passes through cordon.
//! - [`proxy`]: the filtering proxy (`--net-via proxy`) on a listener in
//!   the sandbox, announced in `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`
//!   ([`proxy_env`]): for kernels without transparent egress, and for
//!   programs that should see HTTP-level refusals (`403` with a body).
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
//!   spellings, and the host's own addresses (whatever their range: a
//!   connection to one goes through the host's loopback), are refused
//!   unless an allow pattern names the address literally (`127.0.0.1:8080`, or `localhost:8080` for `127.0.0.1` and
//!   `::1`). A DNS name never unlocks them, whatever it resolves to, and
//!   `*` never does.
//! - **DNS rebinding.** A name is resolved once; every address is checked;
//!   connections go to a checked address and nothing resolves again.
//! - **DNS exfiltration** (transparent egress). A name no pattern allows is
//!   answered `NXDOMAIN` by the stub and never sent anywhere.
//! - **Accounting.** Every connection, allowed or not, ends up as one
//!   [`ConnectionRecord`] with exact payload byte counts (identical
//!   refusals as one, counted), returned by [`ProxyHandle::shutdown`] or
//!   [`kernel::KernelEgress::finish`].
//! - **Explanations.** Transparent egress reports each refusal as it
//!   happens ([`kernel::Notice`]: what, which process, the fix) and answers
//!   the program with the errno a refused connection gets. The proxy answers
//!   a refused HTTP client with `403 Forbidden` and a text body naming the
//!   destination and the `--net` pattern that would allow it, a SOCKS5
//!   client with reply `0x02` ("not allowed by ruleset").
//!
//! # The proxy's protocols
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
//! 300 s. Connections at once: 256; past it a client is refused with a
//! reason (HTTP `503`, SOCKS5 "general failure") and a record, at most
//! [`MAX_REFUSING`] at a time. Records: 100 000. These are fields of
//! [`ProxyConfig`] (the head limit is [`MAX_HEAD_BYTES`]).
//!
//! Memory: relay buffers start at 16 KiB and grow to 1 MiB per direction
//! for transfers that keep them full, but only within a [`RelayMemory`]
//! budget: 8 MiB per proxy, within 64 MiB for the whole process
//! ([`RelayMemory::process_wide`]). A proxy (one run) therefore holds at
//! most about 33 MiB however its connections behave (stalled tunnels, a
//! client that never reads a fast download), and the proxies of one
//! process (a gateway's runs) never hold more than 64 MiB of grown
//! buffers together; past the budget, relays keep their 16 KiB buffers
//! and move data more slowly. The kernel's socket buffers are not counted
//! (see [`ProxyConfig::max_connections`]).
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
//! the lookup checks, the connect decision, the DNS, `sock_diag` and
//! `sockaddr` codecs, the HTTP and SOCKS5 parsers, garbage input included);
//! the stub DNS is tested with an injected resolver that records what it
//! was asked. `tests/` runs the real proxy against servers the tests start
//! on 127.0.0.1 and drives it with curl and Python's `urllib`, checking
//! status, body, what the server received, and that the records' byte
//! counts are exact. Transparent egress needs a sandbox: its tests are in
//! the CLI's suite (`egress.rs`), with every program the issue names and a
//! probe per rule of EGRESS.md, each with its control.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod host;
pub mod kernel;
mod policy;
pub mod proxy;
mod record;
mod sockets;

pub use policy::{
    allows_any_name, check, check_addr, check_connected, check_lookup, check_lookup_addrs, classify, classify_on_host,
    names_special_address, pattern_address, pattern_text, AddrClass, Allowed, Denied, Destination, Host, LookupDenied,
    ParseDestinationError,
};
pub use proxy::{
    proxy_env, spawn, spawn_charged, ProxyConfig, ProxyHandle, RelayMemory, SpawnError, MAX_HEAD_BYTES, MAX_REFUSING,
};
pub use record::{ConnectionRecord, Protocol};
