//! The proxy server: one listener, one dedicated thread with a
//! current-thread tokio runtime, one task per client connection. The
//! caller (cordon's supervisor) stays synchronous; nothing async crosses
//! this module's public API.
//!
//! Each connection goes through the same steps whatever the protocol:
//! read a bounded request, [`check`] the destination, resolve a name once,
//! [`check_addr`] every address, connect to an address that passed, relay,
//! and file a [`ConnectionRecord`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use cordon_core::policy::NetPolicy;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};

use super::http::{self, HeadError, Target, MAX_HEAD_BYTES};
use super::relay::{self, CopyError, Counted, Direction, ExchangeError, RelayMemory};
use super::socks::{self, Reply, SocksError, SocksHost};
use crate::policy::{check, check_addr, check_connected, Denied, Destination, Host, ParseDestinationError};
use crate::record::{ConnectionRecord, Ledger, Protocol, Tracker};
use crate::sockets::Sockets;

/// How the proxy behaves. [`ProxyConfig::new`] gives the defaults; the
/// fields are public so a caller can tighten them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// What may be reached. The default [`NetPolicy`] allows nothing.
    pub policy: NetPolicy,
    /// Budget for resolving a name, and separately for connecting to its
    /// addresses (all of them together). Default: 10 s.
    pub connect_timeout: Duration,
    /// Time a client has to send a complete request head or SOCKS5
    /// handshake after connecting. Default: 30 s.
    pub handshake_timeout: Duration,
    /// A connection on which no byte moves either way for this long is
    /// closed (detected within twice this). Default: 300 s.
    pub idle_timeout: Duration,
    /// Connections served at once. Past it, a client is answered at once
    /// with a refusal that says so (HTTP `503`, SOCKS5 "general failure"),
    /// recorded with the destination it asked for; at most
    /// [`MAX_REFUSING`] refusals are in progress at once, and further
    /// clients wait in the listen backlog meanwhile. Default: 256.
    ///
    /// # Memory
    ///
    /// Each connection holds two relay buffers of 16 KiB, and up to 64 KiB
    /// for a request head while it arrives; buffers grow past 16 KiB only
    /// within [`relay_memory`](Self::relay_memory). Per proxy (one run) at
    /// most (`max_connections` + [`MAX_REFUSING`]) × 96 KiB +
    /// `relay_memory`: about 33 MiB with the defaults, and about 40 KiB per
    /// stalled tunnel once the budget is spent. Not counted: the kernel's
    /// socket buffers (bounded per socket by `net.ipv4.tcp_rmem` and
    /// `tcp_wmem`, host-wide by `net.ipv4.tcp_mem`), charged to the memory
    /// cgroup of the process that makes or accepts the socket: the run's
    /// with [`spawn_charged`], the proxy's own with [`spawn`].
    pub max_connections: usize,
    /// What relay buffers may grow by, together (see [`RelayMemory`]).
    /// Default: 8 MiB for this proxy, [`within`](RelayMemory::within)
    /// [`RelayMemory::process_wide`] (64 MiB shared by every proxy of the
    /// process that uses the default): a gateway's many runs together
    /// never hold more.
    pub relay_memory: Arc<RelayMemory>,
    /// Connections recorded per proxy lifetime. Past it, connections are
    /// closed unserved and counted in one summary record. Default: 100 000.
    pub max_records: usize,
    /// On shutdown, how long open connections may take to finish before
    /// they are cut off (and recorded as cut off). Default: 500 ms.
    pub shutdown_grace: Duration,
}

impl ProxyConfig {
    /// The defaults documented on each field, with `policy`.
    pub fn new(policy: NetPolicy) -> Self {
        ProxyConfig {
            policy,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_connections: 256,
            relay_memory: RelayMemory::within(RelayMemory::process_wide(), 8 << 20),
            max_records: 100_000,
            shutdown_grace: Duration::from_millis(500),
        }
    }
}

/// Starting the proxy failed; nothing is left running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The listener's address could not be read (it is not bound?).
    #[error("failed to read the proxy listener's local address")]
    LocalAddr(#[source] io::Error),
    /// The listener could not be made non-blocking.
    #[error("failed to make the proxy listener non-blocking")]
    SetNonBlocking(#[source] io::Error),
    /// The runtime could not be built (no epoll or timer fd?).
    #[error("failed to build the proxy's runtime")]
    BuildRuntime(#[source] io::Error),
    /// The listener could not be registered with the runtime.
    #[error("failed to register the proxy listener with the runtime")]
    RegisterListener(#[source] io::Error),
    /// The proxy thread could not be started.
    #[error("failed to start the proxy thread")]
    SpawnThread(#[source] io::Error),
}

/// A running proxy. [`ProxyHandle::shutdown`] stops it and returns the
/// records; dropping the handle stops it too, discarding them.
#[derive(Debug)]
pub struct ProxyHandle {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Vec<ConnectionRecord>>>,
}

impl ProxyHandle {
    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, gives open connections
    /// [`shutdown_grace`](ProxyConfig::shutdown_grace) to finish, cuts off
    /// the rest, and returns one record per connection in accept order.
    pub fn shutdown(mut self) -> Vec<ConnectionRecord> {
        if let Some(stop) = self.stop.take() {
            // The thread may have ended already; then there is no one to tell.
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(records)) => records,
            Some(Err(_)) | None => {
                vec![ConnectionRecord::note("the proxy thread panicked; its connection records are lost".to_owned())]
            }
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        // Dropping the sender is the stop signal; the thread ends by itself.
        self.stop.take();
    }
}

/// Starts serving `listener` on a new thread named `cordon-proxy`, with a
/// current-thread runtime of its own.
///
/// Clients speak HTTP (absolute-form forward requests and `CONNECT`) or
/// SOCKS5 on the same listener; the first byte tells them apart (SOCKS5
/// starts with `0x05`, HTTP with a method letter).
///
/// # Ambient authority
///
/// The proxy connects with the caller's network access on behalf of the
/// sandbox: it is the one place where the policy's `net` part is enforced.
/// Give it a listener reachable only from the sandbox.
pub fn spawn(listener: std::net::TcpListener, config: ProxyConfig) -> Result<ProxyHandle, SpawnError> {
    spawn_with(listener, config, None)
}

/// As [`spawn`], with the run's socket maker (the channel of
/// `cordon_core::sys::sockets`, which this proxy then owns): it accepts
/// the sandbox's connections and makes the upstream sockets, so the
/// kernel charges both kinds of socket buffers to the run's memory cgroup
/// rather than to the proxy's. If the maker dies, new connections wait in
/// the listener's backlog unserved and upstream connects fail
/// (`ENOBUFS`): nothing is made outside the run's cgroup instead.
pub fn spawn_charged(
    listener: std::net::TcpListener,
    config: ProxyConfig,
    socket_maker: std::os::fd::OwnedFd,
) -> Result<ProxyHandle, SpawnError> {
    spawn_with(listener, config, Some(socket_maker))
}

fn spawn_with(
    listener: std::net::TcpListener,
    config: ProxyConfig,
    socket_maker: Option<std::os::fd::OwnedFd>,
) -> Result<ProxyHandle, SpawnError> {
    let local_addr = listener.local_addr().map_err(SpawnError::LocalAddr)?;
    listener.set_nonblocking(true).map_err(SpawnError::SetNonBlocking)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        // Name resolution is the only blocking work (getaddrinfo); a few
        // threads bound what a flood of lookups can cost.
        .max_blocking_threads(4)
        .thread_name("cordon-proxy-dns")
        .build()
        .map_err(SpawnError::BuildRuntime)?;
    let (listener, sockets) = {
        let _guard = runtime.enter();
        let sockets = Sockets::new(socket_maker).map_err(SpawnError::RegisterListener)?;
        let listener = if sockets.accepts() {
            Listener::Maker(crate::kernel::watch(listener, Interest::READABLE).map_err(SpawnError::RegisterListener)?)
        } else {
            Listener::Own(TcpListener::from_std(listener).map_err(SpawnError::RegisterListener)?)
        };
        (listener, Arc::new(sockets))
    };
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("cordon-proxy".into())
        .spawn(move || {
            let records = runtime.block_on(serve(listener, Arc::new(config), sockets, stop_rx));
            // A lookup stuck in getaddrinfo must not hold up the caller.
            runtime.shutdown_background();
            records
        })
        .map_err(SpawnError::SpawnThread)?;
    Ok(ProxyHandle { local_addr, stop: Some(stop_tx), thread: Some(thread) })
}

/// The environment that points a sandboxed command at the proxy at `addr`:
/// `http_proxy`, `https_proxy` and `all_proxy` and their upper-case twins
/// (tools differ in which they read), plus empty `no_proxy`/`NO_PROXY` so
/// no destination bypasses the proxy. `all_proxy` is `socks5h://`, which
/// makes clients send names rather than resolve them: the sandbox has no
/// resolver.
pub fn proxy_env(addr: SocketAddr) -> Vec<(&'static str, String)> {
    let http = format!("http://{addr}");
    let socks = format!("socks5h://{addr}");
    vec![
        ("http_proxy", http.clone()),
        ("HTTP_PROXY", http.clone()),
        ("https_proxy", http.clone()),
        ("HTTPS_PROXY", http),
        ("all_proxy", socks.clone()),
        ("ALL_PROXY", socks),
        ("no_proxy", String::new()),
        ("NO_PROXY", String::new()),
    ]
}

/// Refusals of connections past [`ProxyConfig::max_connections`] in
/// progress at once.
pub const MAX_REFUSING: usize = 16;

/// How long a client past the cap has to name its destination before it
/// is cut off without an answer.
const REFUSAL_HANDSHAKE: Duration = Duration::from_secs(5);

/// Whether a connection is served or only told why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    Served,
    /// Past the cap.
    OverCap,
    /// The run's socket maker is gone: no socket can be made in the run's
    /// memory cgroup any more (the proxy accepted this one itself, to say so).
    NoSockets,
}

/// The proxy's listener: accepted by the proxy itself, or by the run's
/// socket maker.
enum Listener {
    Own(TcpListener),
    Maker(AsyncFd<std::net::TcpListener>),
}

impl Listener {
    /// The next connection, and whether it can be served. Cancel-safe: a
    /// connection the maker accepted for a call that was dropped goes to
    /// the next call. Once the maker is gone, the proxy accepts for itself,
    /// only to refuse ([`Admission::NoSockets`]): clients are told why
    /// rather than left waiting in the backlog.
    async fn accept(&self, sockets: &Sockets) -> io::Result<(TcpStream, Admission)> {
        match self {
            Listener::Own(l) => l.accept().await.map(|(stream, _peer)| (stream, Admission::Served)),
            Listener::Maker(l) => loop {
                let mut ready = l.readable().await?;
                match sockets.accept(l.get_ref().as_fd()).await {
                    Ok(sock) => return Ok((TcpStream::from_std(std::net::TcpStream::from(sock))?, Admission::Served)),
                    Err(libc::EAGAIN) => ready.clear_ready(),
                    Err(_) if sockets.is_gone() => match ready.try_io(|l| l.get_ref().accept()) {
                        Ok(accepted) => {
                            let (stream, _peer) = accepted?;
                            stream.set_nonblocking(true)?;
                            return Ok((TcpStream::from_std(stream)?, Admission::NoSockets));
                        }
                        Err(_would_block) => continue,
                    },
                    Err(errno) => return Err(io::Error::from_raw_os_error(errno)),
                }
            },
        }
    }
}

async fn serve(
    listener: Listener,
    config: Arc<ProxyConfig>,
    sockets: Arc<Sockets>,
    mut stop: oneshot::Receiver<()>,
) -> Vec<ConnectionRecord> {
    let ledger = Ledger::new(config.max_records);
    let mut tasks = JoinSet::new();
    let mut refusing = JoinSet::new();
    loop {
        tokio::select! {
            // A message or a dropped handle: both mean stop.
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            Some(_) = refusing.join_next(), if !refusing.is_empty() => {}
            accepted = listener.accept(&sockets), if tasks.len() < config.max_connections || refusing.len() < MAX_REFUSING => match accepted {
                Ok((stream, Admission::NoSockets)) => match ledger.admit() {
                    Some(tracker) if refusing.len() < MAX_REFUSING => {
                        refusing.spawn(serve_connection(stream, Arc::clone(&config), Arc::clone(&sockets), tracker, Admission::NoSockets));
                    }
                    _ => drop(stream),
                },
                Ok((stream, _)) => match ledger.admit() {
                    Some(tracker) if tasks.len() < config.max_connections => {
                        tasks.spawn(serve_connection(stream, Arc::clone(&config), Arc::clone(&sockets), tracker, Admission::Served));
                    }
                    Some(tracker) => {
                        refusing.spawn(serve_connection(stream, Arc::clone(&config), Arc::clone(&sockets), tracker, Admission::OverCap));
                    }
                    None => drop(stream),
                },
                // EMFILE and friends: back off instead of spinning on a
                // listener that stays readable.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
    drop(listener);
    refusing.shutdown().await;
    let _ = timeout(config.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
    // Aborting drops each task's Tracker, which files its record as cut off.
    tasks.shutdown().await;
    ledger.take_records()
}

/// Why a connection was refused or failed. The record's `error` is this
/// message with its sources.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("the client sent no complete request within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("reading the request failed")]
    ReadRequest(#[source] io::Error),
    #[error("the client closed the connection before sending a request")]
    ClosedEarly,
    #[error("the client closed the connection in the middle of its request")]
    ClosedMidRequest,
    #[error("the request head is larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error("SOCKS4 is not supported; use SOCKS5 (socks5h://)")]
    Socks4,
    #[error(transparent)]
    Socks(#[from] SocksError),
    #[error(transparent)]
    Destination(#[from] ParseDestinationError),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("resolving {host} failed")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("resolving {host} timed out after {timeout:?}")]
    ResolveTimeout { host: String, timeout: Duration },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("connecting to {addr} failed")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {dest} timed out after {timeout:?}")]
    ConnectTimeout { dest: String, timeout: Duration },
    #[error("sending the proxy's reply to the client failed")]
    Reply(#[source] io::Error),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("relaying the tunnel failed")]
    Tunnel(#[source] io::Error),
    #[error("nothing moved in either direction for {0:?}; the proxy closed the connection")]
    Idle(Duration),
    #[error("refused: the run already has {0} connections open through the proxy, its limit; close one and retry")]
    TooManyConnections(usize),
    #[error("refused: {}", crate::sockets::MAKER_GONE)]
    NoSockets,
}

impl ServeError {
    /// The status an HTTP client is answered with, if the error deserves
    /// an answer (a client that went away gets none).
    fn http_status(&self) -> Option<u16> {
        Some(match self {
            ServeError::HandshakeTimeout(_) => 408,
            ServeError::HeadTooLarge => 431,
            ServeError::Head(e) => e.status(),
            ServeError::Destination(_) => 400,
            ServeError::Denied(_) => 403,
            ServeError::Resolve { .. } | ServeError::NoAddress { .. } | ServeError::Connect { .. } => 502,
            ServeError::ResolveTimeout { .. } | ServeError::ConnectTimeout { .. } | ServeError::Idle(_) => 504,
            ServeError::TooManyConnections(_) | ServeError::NoSockets => 503,
            ServeError::Exchange(e) => match e {
                ExchangeError::Chunked(_) => 400,
                ExchangeError::WriteUpstream(_)
                | ExchangeError::ReadUpstream(_)
                | ExchangeError::UpstreamClosed
                | ExchangeError::BadResponse(_)
                | ExchangeError::ResponseHeadTooLarge => 502,
                ExchangeError::ReadClient(_) | ExchangeError::ClientClosedInBody | ExchangeError::WriteClient(_) => {
                    return None
                }
            },
            ServeError::ReadRequest(_)
            | ServeError::ClosedEarly
            | ServeError::ClosedMidRequest
            | ServeError::Socks4
            | ServeError::Socks(_)
            | ServeError::Reply(_)
            | ServeError::Tunnel(_) => return None,
        })
    }

    /// The SOCKS5 reply code for an error before the success reply.
    fn socks_reply(&self) -> Option<Reply> {
        Some(match self {
            ServeError::Socks(e) => return e.reply(),
            ServeError::Destination(_) => Reply::GeneralFailure,
            ServeError::Denied(_) => Reply::NotAllowed,
            ServeError::TooManyConnections(_) | ServeError::NoSockets => Reply::GeneralFailure,
            ServeError::Resolve { .. }
            | ServeError::ResolveTimeout { .. }
            | ServeError::NoAddress { .. }
            | ServeError::ConnectTimeout { .. } => Reply::HostUnreachable,
            ServeError::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused => {
                Reply::ConnectionRefused
            }
            ServeError::Connect { .. } => Reply::HostUnreachable,
            _ => return None,
        })
    }
}

/// The error and its sources, joined: what goes in the record.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether the client has had its answer (an HTTP status or a SOCKS reply);
/// after that an error can only close the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Pending,
    Sent,
}

/// How a connection is closed once its record is filed.
enum Close {
    /// At once (tunnels end when both sides have closed).
    Now,
    /// After [`linger_close`]: the proxy wrote a response the client may
    /// still be reading.
    Linger,
}

/// Serves one client: reads its request, and then either serves it or,
/// when `admission` is [`Admission::OverCap`], answers why not (the
/// request is read first, so the refusal is in the client's protocol and
/// the record names the destination).
async fn serve_connection(
    mut stream: TcpStream,
    config: Arc<ProxyConfig>,
    sockets: Arc<Sockets>,
    mut tracker: Tracker,
    admission: Admission,
) {
    // Request/response exchanges are latency-bound; bulk transfers write
    // large buffers anyway, so Nagle only ever adds delay here.
    let _ = stream.set_nodelay(true);
    let mut answer = Answer::Pending;
    let budget = match admission {
        Admission::Served => config.handshake_timeout,
        Admission::OverCap | Admission::NoSockets => config.handshake_timeout.min(REFUSAL_HANDSHAKE),
    };
    let deadline = Instant::now() + budget;
    let mut buf = Vec::with_capacity(4096);
    let result = match read_some(&mut stream, &mut buf, MAX_HEAD_BYTES + 1, deadline, budget).await {
        Ok(0) => Err(ServeError::ClosedEarly),
        Err(e) => Err(e),
        Ok(_) => {
            let handshake = Handshake { deadline, budget, admission, sockets: &sockets };
            match buf.first() {
                Some(&socks::VERSION) => {
                    tracker.record.protocol = Protocol::Socks5;
                    serve_socks(&mut stream, buf, &config, &mut tracker, handshake, &mut answer).await
                }
                Some(4) => Err(ServeError::Socks4),
                _ => serve_http(&mut stream, buf, &config, &mut tracker, handshake, &mut answer).await,
            }
        }
    };
    let close = match result {
        Ok(close) => close,
        Err(err) => {
            tracker.record.error = Some(error_chain(&err));
            match answer {
                Answer::Pending => answer_error(&mut stream, &err, &tracker).await,
                Answer::Sent => Close::Now,
            }
        }
    };
    // The record is complete: file it before lingering, so neither the
    // linger time nor a shutdown during it changes what it says.
    tracker.finish();
    if let Close::Linger = close {
        linger_close(&mut stream).await;
    }
}

/// Tells the client why, in its protocol.
async fn answer_error(stream: &mut TcpStream, err: &ServeError, tracker: &Tracker) -> Close {
    match tracker.record.protocol {
        Protocol::Socks5 => {
            if let Some(code) = err.socks_reply() {
                let _ = stream.write_all(&socks::reply(code, None)).await;
            }
            Close::Now
        }
        Protocol::Http
        | Protocol::Connect
        | Protocol::Unknown
        | Protocol::Tcp
        | Protocol::Udp
        | Protocol::Unix
        | Protocol::Dns => {
            let response_started = tracker.counters.down.load(Ordering::Relaxed) > 0;
            match (err.http_status(), response_started) {
                (Some(status), false) => {
                    let _ = stream.write_all(&http::error_response(status, err)).await;
                    Close::Linger
                }
                _ => Close::Now,
            }
        }
    }
}

/// Reads what is available (at most up to `limit` bytes in `buf`) before
/// `deadline`. Returns 0 at end of stream.
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: usize,
    deadline: Instant,
    budget: Duration,
) -> Result<usize, ServeError> {
    let mut chunk = [0u8; 8192];
    let room = limit.saturating_sub(buf.len()).min(chunk.len());
    let n = timeout_at(deadline, stream.read(&mut chunk[..room]))
        .await
        .map_err(|_| ServeError::HandshakeTimeout(budget))?
        .map_err(ServeError::ReadRequest)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// How long a closing connection keeps draining what the client still sends.
const LINGER: Duration = Duration::from_secs(1);
/// How much a closing connection drains at most.
const LINGER_BYTES: usize = 1 << 20;

/// Closes a client connection without losing the response just written:
/// the write side is shut down first, then what the client still sends is
/// read and dropped (bounded in time and bytes). Closing a socket with
/// unread data makes the kernel send RST, and a client that gets RST may
/// discard the response it has not read yet (a 431 after an oversized head,
/// for instance).
async fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    let _ = timeout(LINGER, async {
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// The request's time limit and what happens once it is read.
#[derive(Clone, Copy)]
struct Handshake<'a> {
    deadline: Instant,
    budget: Duration,
    admission: Admission,
    /// Where the upstream socket comes from.
    sockets: &'a Sockets,
}

async fn serve_http(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    config: &ProxyConfig,
    tracker: &mut Tracker,
    handshake: Handshake<'_>,
    answer: &mut Answer,
) -> Result<Close, ServeError> {
    let Handshake { deadline, budget, .. } = handshake;
    let len = loop {
        if let Some(len) = http::head_len(&buf) {
            break len;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(ServeError::HeadTooLarge);
        }
        if read_some(stream, &mut buf, MAX_HEAD_BYTES + 1, deadline, budget).await? == 0 {
            return Err(ServeError::ClosedMidRequest);
        }
    };
    if len > MAX_HEAD_BYTES {
        return Err(ServeError::HeadTooLarge);
    }
    let head = http::parse_request(&buf[..len])?;
    let (authority, forward) = match &head.target {
        Target::Connect(authority) => (authority.clone(), None),
        Target::Forward { authority, .. } => {
            (authority.clone(), Some((http::rewrite_request(&head), head.body, head.method.to_owned())))
        }
    };
    tracker.record.protocol = if forward.is_some() { Protocol::Http } else { Protocol::Connect };
    tracker.record.host = truncated(&authority.host);
    tracker.record.port = authority.port;
    let dest = Destination::new(&authority.host, authority.port)?;
    // What came after the head stays; the head's buffer (up to 64 KiB) goes.
    let early = buf.split_off(len);
    drop(buf);
    let upstream = open_upstream(config, &dest, tracker, handshake).await?;
    match forward {
        None => {
            stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.map_err(ServeError::Reply)?;
            *answer = Answer::Sent;
            tunnel(stream, upstream, &early, config, tracker).await?;
            Ok(Close::Now)
        }
        Some((request_head, framing, method)) => {
            forward_one(stream, upstream, &request_head, &early, framing, &method, config, tracker).await?;
            Ok(Close::Linger)
        }
    }
}

async fn serve_socks(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    config: &ProxyConfig,
    tracker: &mut Tracker,
    handshake: Handshake<'_>,
    answer: &mut Answer,
) -> Result<Close, ServeError> {
    let Handshake { deadline, budget, .. } = handshake;
    // A greeting is at most 257 bytes and a request 262; nothing legitimate
    // comes near this bound.
    const LIMIT: usize = 1024;
    let greeting = loop {
        match socks::parse_greeting(&buf) {
            Ok(Some(len)) => break len,
            Ok(None) => {}
            Err(err @ SocksError::NoAcceptableMethod) => {
                let _ = stream.write_all(&socks::greeting_reply(false)).await;
                *answer = Answer::Sent;
                return Err(err.into());
            }
            Err(err) => return Err(err.into()),
        }
        if read_some(stream, &mut buf, LIMIT, deadline, budget).await? == 0 {
            return Err(ServeError::ClosedMidRequest);
        }
    };
    stream.write_all(&socks::greeting_reply(true)).await.map_err(ServeError::Reply)?;
    buf.drain(..greeting);
    let (len, host, port) = loop {
        if let Some(request) = socks::parse_request(&buf)? {
            break request;
        }
        if read_some(stream, &mut buf, LIMIT, deadline, budget).await? == 0 {
            return Err(ServeError::ClosedMidRequest);
        }
    };
    tracker.record.port = port;
    let dest = match host {
        SocksHost::Name(name) => {
            tracker.record.host = truncated(&name);
            Destination::new(&name, port)?
        }
        SocksHost::Ip(ip) => {
            tracker.record.host = ip.to_string();
            if port == 0 {
                return Err(ParseDestinationError::ZeroPort.into());
            }
            Destination::from_ip(ip, port)
        }
    };
    let upstream = open_upstream(config, &dest, tracker, handshake).await?;
    // The bound address is not the client's business: all zeros (clients
    // ignore it for CONNECT) keeps the host's addresses out of the sandbox.
    stream.write_all(&socks::reply(Reply::Succeeded, None)).await.map_err(ServeError::Reply)?;
    *answer = Answer::Sent;
    tunnel(stream, upstream, &buf[len..], config, tracker).await?;
    Ok(Close::Now)
}

fn truncated(host: &str) -> String {
    host.chars().take(256).collect()
}

/// The policy decision and the connection, with the record filled in as
/// each step passes. A connection past the cap is refused before any of
/// it: it costs no lookup and no upstream socket.
async fn open_upstream(
    config: &ProxyConfig,
    dest: &Destination,
    tracker: &mut Tracker,
    handshake: Handshake<'_>,
) -> Result<TcpStream, ServeError> {
    tracker.record.host = dest.host().to_string();
    match handshake.admission {
        Admission::Served => {}
        Admission::OverCap => return Err(ServeError::TooManyConnections(config.max_connections)),
        Admission::NoSockets => return Err(ServeError::NoSockets),
    }
    let allowed = check(&config.policy, dest).inspect_err(|denied| {
        tracker.record.rule = denied.rule().map(str::to_owned);
    })?;
    tracker.record.rule = Some(allowed.rule_text());
    let addrs = resolve(dest, config.connect_timeout).await?;
    // Every address must pass: an answer that mixes a public address with
    // 127.0.0.1 is how a rebinding attack hedges its bets.
    for addr in &addrs {
        check_addr(&config.policy, dest, addr.ip()).inspect_err(|denied| {
            tracker.record.rule = denied.rule().map(str::to_owned);
        })?;
    }
    tracker.record.allowed = true;
    let (stream, addr) = connect(dest, &addrs, config.connect_timeout, handshake.sockets).await?;
    tracker.record.addr = Some(addr);
    // The second line: a connection whose two ends have the same address
    // reached this host itself, through its loopback.
    let local = stream.local_addr().map_err(|source| ServeError::Connect { addr, source })?;
    check_connected(&config.policy, dest, local.ip(), addr.ip()).inspect_err(|_| {
        tracker.record.allowed = false;
        tracker.record.rule = None;
    })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Most addresses of one name that are checked and tried.
const MAX_ADDRS: usize = 16;

/// Resolves `dest` exactly once. The caller checks these addresses and
/// connects only to them: resolving again at connect time would let a DNS
/// server answer a public address to the check and `127.0.0.1` to the
/// connect (DNS rebinding).
async fn resolve(dest: &Destination, budget: Duration) -> Result<Vec<SocketAddr>, ServeError> {
    let name = match dest.host() {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, dest.port())]),
        Host::Name(name) => name,
    };
    let found = timeout(budget, tokio::net::lookup_host((name.as_str(), dest.port())))
        .await
        .map_err(|_| ServeError::ResolveTimeout { host: name.clone(), timeout: budget })?
        .map_err(|source| ServeError::Resolve { host: name.clone(), source })?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) && addrs.len() < MAX_ADDRS {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(ServeError::NoAddress { host: name.clone() });
    }
    Ok(addrs)
}

/// Connects to the first of `addrs` that accepts, all within `budget`.
async fn connect(
    dest: &Destination,
    addrs: &[SocketAddr],
    budget: Duration,
    sockets: &Sockets,
) -> Result<(TcpStream, SocketAddr), ServeError> {
    let deadline = Instant::now() + budget;
    let mut last = None;
    for &addr in addrs {
        match timeout_at(deadline, connect_one(addr, sockets)).await {
            Ok(Ok(stream)) => return Ok((stream, addr)),
            Ok(Err(source)) => last = Some(ServeError::Connect { addr, source }),
            Err(_) => break,
        }
    }
    Err(last.unwrap_or(ServeError::ConnectTimeout { dest: dest.to_string(), timeout: budget }))
}

/// Connects a socket from `sockets` to `addr`.
async fn connect_one(addr: SocketAddr, sockets: &Sockets) -> io::Result<TcpStream> {
    let domain = if addr.is_ipv6() { libc::AF_INET6 } else { libc::AF_INET };
    let sock = sockets.tcp(domain).await.map_err(io::Error::from_raw_os_error)?;
    TcpSocket::from_std_stream(std::net::TcpStream::from(sock)).connect(addr).await
}

/// Relays both ways between client and upstream until both sides have
/// closed, after sending the bytes that arrived with the request (`early`).
/// End of stream in one direction is passed on as a half-close, so
/// protocols that close their sending side first still get their answer.
async fn tunnel(
    client: &mut TcpStream,
    mut upstream: TcpStream,
    early: &[u8],
    config: &ProxyConfig,
    tracker: &Tracker,
) -> Result<(), ServeError> {
    let counters = Arc::clone(&tracker.counters);
    let (mut client_rx, client_tx) = client.split();
    let mut client_tx = Counted::new(client_tx, Arc::clone(&counters), Direction::Down);
    let (mut upstream_rx, upstream_tx) = upstream.split();
    let mut upstream_tx = Counted::new(upstream_tx, Arc::clone(&counters), Direction::Up);
    let up = async {
        upstream_tx.write_all(early).await.map_err(CopyError::Write)?;
        relay::copy(&mut client_rx, &mut upstream_tx, None, &config.relay_memory).await?;
        // A peer that is already gone makes the shutdown fail; nothing is
        // lost then.
        let _ = upstream_tx.shutdown().await;
        Ok::<_, CopyError>(())
    };
    let down = async {
        relay::copy(&mut upstream_rx, &mut client_tx, None, &config.relay_memory).await?;
        let _ = client_tx.shutdown().await;
        Ok::<_, CopyError>(())
    };
    tokio::select! {
        result = async { tokio::try_join!(up, down) } => result.map(drop).map_err(|e| ServeError::Tunnel(e.into_inner())),
        () = relay::idle(&counters, config.idle_timeout) => Err(ServeError::Idle(config.idle_timeout)),
    }
}

/// Forwards one plain HTTP request and its response.
#[allow(clippy::too_many_arguments)]
async fn forward_one(
    client: &mut TcpStream,
    mut upstream: TcpStream,
    request_head: &[u8],
    early: &[u8],
    framing: http::BodyFraming,
    method: &str,
    config: &ProxyConfig,
    tracker: &Tracker,
) -> Result<(), ServeError> {
    let counters = Arc::clone(&tracker.counters);
    let (mut client_rx, client_tx) = client.split();
    let mut client_tx = Counted::new(client_tx, Arc::clone(&counters), Direction::Down);
    let (mut upstream_rx, upstream_tx) = upstream.split();
    let mut upstream_tx = Counted::new(upstream_tx, Arc::clone(&counters), Direction::Up);
    let exchange = async {
        upstream_tx.write_all(request_head).await.map_err(ExchangeError::WriteUpstream)?;
        let upload = relay::relay_request_body(&mut client_rx, &mut upstream_tx, early, framing, &config.relay_memory);
        let download = relay::relay_response(&mut upstream_rx, &mut client_tx, method, &config.relay_memory);
        tokio::pin!(upload, download);
        // The exchange ends with the response; a server may answer before
        // the whole body has arrived (a 413, say).
        tokio::select! {
            result = &mut download => result,
            result = &mut upload => {
                result?;
                download.await
            }
        }
    };
    tokio::select! {
        result = exchange => result.map_err(ServeError::from),
        () = relay::idle(&counters, config.idle_timeout) => Err(ServeError::Idle(config.idle_timeout)),
    }
}
