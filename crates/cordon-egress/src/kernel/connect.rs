//! One `connect()` of the sandbox, from notification to answer: read what
//! it asked for, check which socket and namespace it is, decide, and act
//! (hand a host socket over, connect in the sandbox's context, or refuse).
//! Also every `bind()` of the sandbox ([`bind`]): a socket cordon handed
//! over is never bound (its connection ended, the kernel gave its port
//! back, and it lives in the host's namespace), any other is bound by the
//! connect helper, in the sandbox's context.
//!
//! The rules of `EGRESS.md`, and where each is kept:
//!
//! 1. never `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: every answer here is a
//!    result the supervisor produced itself, from its own copy of the
//!    address and its own duplicate of the socket;
//! 2. the socket's namespace is checked (`SO_NETNS_COOKIE`) before anything else:
//!    a socket cordon handed over is never connected again (`AF_UNSPEC`
//!    gets `EOPNOTSUPP`, anything else `EISCONN`) nor bound (`EINVAL`);
//! 3. only TCP is handed over, and only once `ESTABLISHED`;
//! 4. `MSG_FASTOPEN` and `io_uring` are refused by the seccomp filter;
//! 5. `O_NONBLOCK` and close-on-exec are mirrored; only the options in
//!    [`COPIED_OPTIONS`] are copied;
//! 6. the supervisor's own connect timeout bounds every wait, and each
//!    notification is its own task;
//! 7. unix sockets and the sandbox's own loopback are connected by the
//!    connect helper, in the sandbox's context;
//! 8. no reference to a handed-over socket is kept (see `accounting`);
//! 9. interface binding is refused by the filter (the sandbox has no
//!    interface but `lo` to bind to); `getsockname()` on a handed-over
//!    socket shows the host's source address and port, which the server
//!    sees anyway.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use cordon_core::sys::helper::HelperOp;
use cordon_core::sys::notify::{self, CloseOnExec, Notification};
use tokio::io::Interest;

use super::decide::{decide, loopback_hint, Decision, HandOver, LocalRoute, Refusal, SocketKind};
use super::ledger::Notice;
use super::process::{Taken, TaskId};
use super::sockaddr;
use super::Shared;
use crate::policy::{check_connected, AddrClass, Denied, Destination};
use crate::record::{ConnectionRecord, Protocol};

/// Largest `sockaddr` the kernel accepts (`sizeof(struct sockaddr_storage)`).
const MAX_SOCKADDR: usize = 128;

/// Socket options copied from the caller's socket to the one handed over.
/// Nothing that changes how the kernel sizes or routes the connection:
/// copying `TCP_MAXSEG` from an unconnected socket reads back 536 and cost
/// 40 % of the throughput in the prototype; buffer sizes turn autotuning off.
const COPIED_OPTIONS: &[(i32, i32, usize)] = &[
    (libc::IPPROTO_TCP, libc::TCP_NODELAY, 4),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 4),
    (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 4),
    (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 4),
    (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 4),
    (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, 4),
    (libc::SOL_SOCKET, libc::SO_LINGER, 8),
    (libc::SOL_SOCKET, libc::SO_OOBINLINE, 4),
    (libc::SOL_SOCKET, libc::SO_SNDTIMEO, 16),
    (libc::SOL_SOCKET, libc::SO_RCVTIMEO, 16),
];

/// `TCP_ESTABLISHED` in `tcp_info.tcpi_state`.
const TCP_ESTABLISHED: u8 = 1;
/// `TCP_CLOSE_WAIT`: established, then the peer's FIN arrived.
const TCP_CLOSE_WAIT: u8 = 8;
/// `TCP_CLOSE`.
const TCP_CLOSE: u8 = 7;

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Serves one notification and answers it.
pub(crate) async fn serve(shared: Arc<Shared>, n: Notification) {
    let errno = match i64::from(n.nr) {
        libc::SYS_connect => connect(&shared, &n).await,
        libc::SYS_bind => bind(&shared, &n).await,
        _ => Some(libc::ENOSYS),
    };
    if let Some(errno) = errno {
        // ENOENT: the thread is gone (killed); nobody waits for the answer.
        let _ = notify::respond(shared.listener.as_fd(), n.id, 0, errno);
    }
}

/// The answer to a `connect()`: `Some(0)` success, `Some(errno)`, or
/// `None` when it was answered already.
async fn connect(sh: &Arc<Shared>, n: &Notification) -> Option<i32> {
    // connect(int fd, const struct sockaddr *addr, socklen_t len): the
    // kernel reads the ints as 32 bits.
    let fd = low_int(n.args[0]);
    let addr_ptr = n.args[1];
    let addr_len = low_int(n.args[2]);
    let (sock, task) = match caller_socket(sh, n, fd) {
        Ok(s) => s,
        Err(errno) => return Some(errno),
    };
    let bytes = match caller_sockaddr(sh, n, addr_ptr, addr_len) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(errno) => return Some(errno),
    };
    // Rule 2: a socket that is not in the sandbox's namespace is one cordon
    // handed over (or one the sandbox inherited); it is never connected again.
    if outside_sandbox(sh, sock.as_fd()) {
        let unspec = bytes.get(..2).map(|b| i32::from(u16::from_ne_bytes([b[0], b[1]]))) == Some(libc::AF_UNSPEC);
        let errno = if unspec { libc::EOPNOTSUPP } else { libc::EISCONN };
        let refusal = Refusal {
            errno,
            target: format!("a socket already connected outside the sandbox (fd {fd})"),
            name: None,
            port: 0,
            reason: "a socket cordon connected cannot be disconnected or connected again".into(),
            suggestion: None,
            rule: None,
            detail: None,
        };
        return Some(refuse(sh, n, task, Protocol::Tcp, &refusal));
    }
    let kind = match socket_kind(sock.as_fd()) {
        Ok(k) => k,
        Err(errno) => return Some(errno),
    };
    let target = sockaddr::parse(kind.domain, &bytes);
    let decision = decide(&sh.config.policy, &sh.lock().names, sh.config.unix, kind, &target);
    let protocol = match (kind.domain, kind.kind) {
        (libc::AF_UNIX, _) => Protocol::Unix,
        (_, libc::SOCK_DGRAM) => Protocol::Udp,
        _ => Protocol::Tcp,
    };
    Some(match decision {
        Decision::Answer(errno) => errno,
        Decision::Refuse(r) => refuse(sh, n, task, protocol, &r),
        Decision::Local(LocalRoute::Direct) => {
            let errno = match notify::connect_raw(sock.as_fd(), &bytes) {
                Ok(()) => 0,
                Err(e) => errno_of(&e),
            };
            note_resolver_user(sh, n, task, &target, sock.as_fd(), errno);
            errno
        }
        Decision::Local(LocalRoute::Helper) => {
            let cwd = if kind.domain == libc::AF_UNIX { caller_cwd(n.tid) } else { None };
            // Opened by thread id: the caller's only while it waits.
            if cwd.is_some() && !notify::notification_id_valid(sh.listener.as_fd(), n.id) {
                return None;
            }
            let (errno, outside) = sh
                .helper
                .connect(sock.as_fd(), cwd.as_ref().map(|c| c.as_fd()), &bytes, sh.config.connect_timeout)
                .await;
            if outside {
                return Some(refuse(sh, n, task, protocol, &host_unix_socket(&bytes)));
            }
            note_resolver_user(sh, n, task, &target, sock.as_fd(), errno);
            if let Some(addr) = loopback_hint(&target, errno) {
                loopback_notice(sh, sh.process_name(n.tid, task), addr);
            } else if errno == libc::EINPROGRESS && kind.is_tcp() {
                if let Some(addr) = loopback_hint(&target, libc::ECONNREFUSED) {
                    // Named now, while the caller waits for the answer: by
                    // the time the watch has its verdict it may be gone.
                    let process = sh.process_name(n.tid, task);
                    tokio::spawn(watch_local_connect(Arc::clone(sh), process, sock, addr));
                }
            }
            errno
        }
        Decision::HandOver(h) => return hand_over(sh, (n, task), fd, sock, kind, h).await,
    })
}

/// The answer to a `bind()`, as [`connect`]'s. A socket outside the
/// sandbox's namespace (rule 2: one cordon handed over, whose connection
/// has ended, so that the kernel gave its port back) gets `EINVAL`, what
/// the kernel answers for a bound socket: bound, it would hold a port of
/// the host. Every other socket is bound by the connect helper, in the
/// sandbox's context (its root, working directory, file mode creation
/// mask, credentials, Landlock domain and network namespace), so a unix
/// path, an abstract name or a port is taken exactly as the caller's own
/// `bind()` would take it. Never left to the kernel (rule 1): another
/// thread could put a host socket at the descriptor's number in between.
async fn bind(sh: &Arc<Shared>, n: &Notification) -> Option<i32> {
    // bind(int fd, const struct sockaddr *addr, socklen_t len)
    let fd = low_int(n.args[0]);
    let (sock, task) = match caller_socket(sh, n, fd) {
        Ok(s) => s,
        Err(errno) => return Some(errno),
    };
    let bytes = match caller_sockaddr(sh, n, n.args[1], low_int(n.args[2])) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(errno) => return Some(errno),
    };
    if outside_sandbox(sh, sock.as_fd()) {
        let refusal = Refusal {
            errno: libc::EINVAL,
            target: "a socket connected outside the sandbox".into(),
            name: None,
            port: 0,
            reason: format!("a socket cordon connected cannot be bound (fd {fd}): it would take a port of the host"),
            suggestion: None,
            rule: None,
            detail: None,
        };
        return Some(refuse(sh, n, task, Protocol::Tcp, &refusal));
    }
    let unix = notify::getsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).ok() == Some(libc::AF_UNIX);
    let (cwd, umask) = if unix { (caller_cwd(n.tid), caller_umask(n.tid)) } else { (None, None) };
    // Read by thread id: the caller's only while it waits.
    if unix && !notify::notification_id_valid(sh.listener.as_fd(), n.id) {
        return None;
    }
    let cwd = cwd.as_ref().map(|c| c.as_fd());
    match sh.helper.ask(HelperOp::Bind, sock.as_fd(), cwd, &bytes, umask, sh.config.connect_timeout).await {
        // The helper is gone (the sandbox can kill it): nothing binds.
        libc::ECONNREFUSED => Some(libc::EADDRNOTAVAIL),
        errno => Some(errno),
    }
}

/// The `sockaddr` of `len` bytes at `ptr` in the notifying thread:
/// `Ok(None)` when the thread is gone (nobody waits for an answer), an
/// errno for a bad length or address.
fn caller_sockaddr(sh: &Shared, n: &Notification, ptr: u64, len: i32) -> Result<Option<Vec<u8>>, i32> {
    let Ok(len) = usize::try_from(len) else { return Err(libc::EINVAL) };
    if len > MAX_SOCKADDR {
        return Err(libc::EINVAL);
    }
    let mut bytes = vec![0u8; len];
    if len > 0 && !matches!(notify::read_process_memory(n.tid, ptr, &mut bytes), Ok(got) if got == len) {
        return Err(libc::EFAULT);
    }
    // The thread was alive through the read: the bytes are its own.
    if !notify::notification_id_valid(sh.listener.as_fd(), n.id) {
        return Ok(None);
    }
    Ok(Some(bytes))
}

/// Whether `sock` lives outside the sandbox's network namespace (or its
/// namespace cannot be read).
fn outside_sandbox(sh: &Shared, sock: BorrowedFd<'_>) -> bool {
    !matches!(notify::socket_netns_cookie(sock), Ok(ns) if ns == sh.sandbox_netns)
}

/// Remembers which thread's socket talks to the stub DNS (by its local
/// port), so that a refused lookup can name the process. When the stub
/// does not answer (no name is allowed), says so now: the lookup fails
/// without the name ever reaching cordon.
fn note_resolver_user(
    sh: &Shared,
    n: &Notification,
    task: Option<TaskId>,
    target: &sockaddr::Target,
    sock: BorrowedFd<'_>,
    errno: i32,
) {
    let to_stub = matches!(target, sockaddr::Target::Inet(a) if sockaddr::canonical(*a) == super::STUB_ADDR);
    if !to_stub || (errno != 0 && errno != libc::EINPROGRESS && errno != libc::ECONNREFUSED) {
        return;
    }
    if sh.stub == super::Stub::Closed {
        let reason = "this run allows no host name, so every name lookup fails";
        if !sh.lock().ledger.count_if_known("lookups", "names", reason) {
            let notice = Notice {
                kind: "lookups",
                target: "names".into(),
                process: sh.process_name(n.tid, task),
                reason: reason.into(),
                suggestion: None,
                detail: None,
            };
            sh.lock().ledger.refused(Protocol::Dns, &notice, None, 0, None);
            sh.notify(&notice);
        }
        return;
    }
    let Some(local) = notify::socket_address(sock, notify::SocketEnd::Local).ok().and_then(|b| sockaddr::decode(&b))
    else {
        return;
    };
    let mut state = sh.lock();
    if state.resolver_users.len() >= super::MAX_RESOLVER_USERS {
        state.resolver_users.clear();
    }
    state.resolver_users.insert(local.port(), n.tid);
}

/// An `int` argument: its low 32 bits, as the kernel reads it.
fn low_int(arg: u64) -> i32 {
    i32::from_ne_bytes(u32::try_from(arg & u64::from(u32::MAX)).unwrap_or(0).to_ne_bytes())
}

/// A duplicate of descriptor `fd` of the notifying thread, and the thread
/// for [`Shared::process_name`]. Its pidfd is kept for its next connect
/// (see `process`).
fn caller_socket(sh: &Shared, n: &Notification, fd: i32) -> Result<(OwnedFd, Option<TaskId>), i32> {
    match sh.lock().processes.take_fd(n.tid, fd) {
        Taken::Socket(sock, task) => return Ok((sock, task)),
        Taken::Failed(errno) => return Err(errno),
        Taken::Unknown => {}
    }
    let pidfd = notify::pidfd_open_thread(n.tid).map_err(|_| libc::ESRCH)?;
    // The pidfd is the notifying thread's only while the notification is
    // pending (a dead thread's id can be reused).
    if !notify::notification_id_valid(sh.listener.as_fd(), n.id) {
        return Err(libc::ESRCH);
    }
    let sock = notify::pidfd_getfd(pidfd.as_fd(), fd).map_err(|e| errno_of(&e))?;
    Ok((sock, sh.lock().processes.keep_pidfd(n.tid, pidfd)))
}

/// The caller's socket's domain, type and protocol. An internet socket of
/// protocol TCP or UDP has one type only (`SOCK_STREAM`, `SOCK_DGRAM`: the
/// kernel registers them for no other), so its type is not asked.
fn socket_kind(sock: BorrowedFd<'_>) -> Result<SocketKind, i32> {
    let get = |name| notify::getsockopt_int(sock, libc::SOL_SOCKET, name).map_err(|e| errno_of(&e));
    let (domain, protocol) = (get(libc::SO_DOMAIN)?, get(libc::SO_PROTOCOL)?);
    let kind = match (domain, protocol) {
        (libc::AF_INET | libc::AF_INET6, libc::IPPROTO_TCP) => libc::SOCK_STREAM,
        (libc::AF_INET | libc::AF_INET6, libc::IPPROTO_UDP) => libc::SOCK_DGRAM,
        _ => get(libc::SO_TYPE)?,
    };
    Ok(SocketKind { domain, kind, protocol })
}

/// The caller's working directory, for a unix socket's relative path.
/// Opened by thread id: check the notification is still pending after
/// it (as [`caller_socket`] does after `pidfd_open`), or the thread may
/// have died and its id gone to another process, maybe a host one whose
/// directory a relative path would then be resolved from.
fn caller_cwd(tid: u32) -> Option<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(format!("/proc/{tid}/cwd"))
        .ok()
        .map(OwnedFd::from)
}

/// The caller's file mode creation mask (`Umask:` in its status), for
/// the file of a unix socket it binds. Read by thread id, as
/// [`caller_cwd`]: check the notification after it.
fn caller_umask(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// The refusal of a unix connect whose listener is outside the sandbox
/// (the helper cut it: see `cordon_core::sys::helper`).
fn host_unix_socket(addr: &[u8]) -> Refusal {
    let path = addr.get(2..).unwrap_or_default();
    let path = path.split(|b| *b == 0).next().unwrap_or_default();
    Refusal {
        errno: libc::EACCES,
        target: format!("the unix socket {}", String::from_utf8_lossy(path).escape_debug()),
        name: None,
        port: 0,
        reason: "its listener is a host service, outside the sandbox; a grant covering a socket file lets the command see it, never connect to it".into(),
        suggestion: None,
        rule: None,
        detail: None,
    }
}

/// Records a refusal (counted when it was seen before), prints the notice
/// the first time, and returns its errno.
fn refuse(sh: &Shared, n: &Notification, task: Option<TaskId>, protocol: Protocol, r: &Refusal) -> i32 {
    let kind = "connect";
    if sh.lock().ledger.count_if_known(kind, &r.target, &r.reason) {
        return r.errno;
    }
    let notice = Notice {
        kind,
        target: r.target.clone(),
        process: sh.process_name(n.tid, task),
        reason: r.reason.clone(),
        suggestion: r.suggestion.clone(),
        detail: r.detail.clone(),
    };
    sh.lock().ledger.refused(protocol, &notice, r.name.clone(), r.port, r.rule.clone());
    sh.notify(&notice);
    r.errno
}

/// A non-blocking connect to the sandbox's own loopback is refused a moment
/// later: watch the caller's socket that long (without reading its error,
/// which is the caller's) to say so.
async fn watch_local_connect(sh: Arc<Shared>, process: Option<String>, sock: OwnedFd, addr: SocketAddr) {
    const LOCAL_CONNECT: std::time::Duration = std::time::Duration::from_millis(100);
    let Ok(afd) = super::watch(sock, Interest::WRITABLE) else { return };
    let _ = tokio::time::timeout(LOCAL_CONNECT, afd.writable()).await;
    let sock = afd.into_inner();
    if tcp_state(sock.as_fd()) == Some(TCP_CLOSE) {
        loopback_notice(&sh, process, addr);
    }
}

/// Nothing listens at `addr` on the sandbox's own loopback: say how to
/// reach the host's instead. `process` is the caller, named while it
/// waited for its answer.
fn loopback_notice(sh: &Shared, process: Option<String>, addr: SocketAddr) {
    let target = format!("{addr} is the sandbox's own loopback and nothing listens there");
    let reason = format!("to reach the host's {addr}, allow it literally");
    if sh.lock().ledger.count_if_known("hint", &target, &reason) {
        return;
    }
    let notice = Notice { kind: "hint", target, process, reason, suggestion: Some(addr.to_string()), detail: None };
    sh.lock().ledger.refused(Protocol::Tcp, &notice, None, addr.port(), None);
    sh.notify(&notice);
}

/// Connects from the host's namespace and installs the socket in the
/// caller's place. Answers the notification itself on success.
async fn hand_over(
    sh: &Shared,
    (n, task): (&Notification, Option<TaskId>),
    fd: i32,
    sock: OwnedFd,
    kind: SocketKind,
    h: HandOver,
) -> Option<i32> {
    let started = Instant::now();
    let (host, name) = match h.dest.host() {
        crate::policy::Host::Name(name) => (name.clone(), Some(name.clone())),
        crate::policy::Host::Ip(ip) => (ip.to_string(), None),
    };
    let mut record = ConnectionRecord {
        protocol: Protocol::Tcp,
        host,
        name,
        port: h.dest.port(),
        allowed: true,
        rule: Some(h.rule.clone()),
        ..ConnectionRecord::new()
    };
    let options = CallerOptions::read(sock.as_fd(), kind.domain);
    let budget = connect_budget(sh, &options);
    let slot = match sh.open_slot(budget).await {
        Ok(slot) => slot,
        Err(full) => {
            let refusal = Refusal {
                errno: libc::ENOBUFS,
                target: h.dest.to_string(),
                name: record.name.clone(),
                port: h.dest.port(),
                reason: full.reason(),
                suggestion: None,
                rule: None,
                detail: None,
            };
            return Some(refuse(sh, n, task, Protocol::Tcp, &refusal));
        }
    };
    if let Err(e) = sh.accounting.expect(&h.addrs) {
        // Its close would go unreported and its slot stay taken.
        record.process = sh.process_name(n.tid, task);
        record.error = Some(format!("the kernel's close reports could not be arranged for: {e}"));
        sh.lock().ledger.push(record);
        return Some(libc::ENOBUFS);
    }
    let blocking = notify::file_status_flags(sock.as_fd()).map(|f| f & libc::O_NONBLOCK == 0).unwrap_or(true);
    let cloexec = notify::remote_fd_cloexec(n.tid, fd).unwrap_or(CloseOnExec::Clear);
    let mut to_itself = None;
    let connected = connect_host(sh, &options, budget, kind, (&h.dest, &h.addrs), &mut to_itself).await;
    drop(sock);
    let (host_sock, peer) = match connected {
        Ok(c) => c,
        Err(errno) => {
            if let Some(denied) = to_itself {
                drop(slot);
                let refusal = Refusal::denied(libc::ECONNREFUSED, record.name.clone(), &denied);
                return Some(refuse(sh, n, task, Protocol::Tcp, &refusal));
            }
            record.process = sh.process_name(n.tid, task);
            record.error = Some(match errno {
                libc::ENOBUFS if sh.sockets.is_gone() => format!("connecting failed: {}", crate::sockets::MAKER_GONE),
                _ => format!("connecting failed: {}", io::Error::from_raw_os_error(errno)),
            });
            record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            sh.lock().ledger.push(record);
            drop(slot);
            return Some(errno);
        }
    };
    if blocking {
        let flags = notify::file_status_flags(host_sock.as_fd()).unwrap_or(libc::O_RDWR | libc::O_NONBLOCK);
        let _ = notify::set_file_status_flags(host_sock.as_fd(), flags & !libc::O_NONBLOCK);
    }
    record.addr = Some(peer);
    let target = u32::try_from(fd).unwrap_or(u32::MAX);
    match notify::add_fd_at(sh.listener.as_fd(), n.id, host_sock.as_fd(), target, cloexec) {
        Ok(()) => {}
        Err(e) => {
            // ENOENT: the caller died while we connected; the socket goes.
            record.process = sh.process_name(n.tid, task);
            record.error = Some(format!("the caller was gone before the socket was handed over: {e}"));
            sh.lock().ledger.push(record);
            return None;
        }
    }
    // The process is named before the answer: until then the caller waits
    // in its connect, and after it one that exits at once (curl to a host
    // on loopback) is gone before its name can be read.
    record.process = sh.process_name(n.tid, task);
    let _ = notify::respond(sh.listener.as_fd(), n.id, 0, 0);
    // The caller runs on; the books are kept after its answer, off its
    // connect's time. Our copy keeps the socket alive until they are (its
    // close cannot be reported before), then goes: the sandbox's is the
    // only one (rule 8).
    sh.accounting.opened(sh, record, started, &host_sock, slot);
    drop(host_sock);
    None
}

/// How long cordon waits for a connect: its own connect timeout, or the
/// caller's `SO_SNDTIMEO` when shorter (the caller's own timeout cannot fire
/// while the supervisor holds its connect).
fn connect_budget(sh: &Shared, options: &CallerOptions) -> std::time::Duration {
    options.send_timeout().map_or(sh.config.connect_timeout, |t| t.min(sh.config.connect_timeout))
}

/// Tries `addrs` in order within the connect timeout; returns the first
/// socket whose handshake completed (see [`is_handed_over`]) to somewhere
/// other than this host itself, or the last errno. A connection whose two
/// ends have the same address reached the host itself through its loopback
/// ([`check_connected`], the second line behind `check_addr`): unless a
/// pattern names the address literally it is closed, and `to_itself` says
/// why.
async fn connect_host(
    sh: &Shared,
    options: &CallerOptions,
    timeout: std::time::Duration,
    kind: SocketKind,
    (dest, addrs): (&Destination, &[SocketAddr]),
    to_itself: &mut Option<Denied>,
) -> Result<(OwnedFd, SocketAddr), i32> {
    let itself = |sock: BorrowedFd<'_>, peer: SocketAddr| {
        let local = notify::socket_address(sock, notify::SocketEnd::Local).ok().and_then(|b| sockaddr::decode(&b));
        match local {
            Some(local) => check_connected(&sh.config.policy, dest, local.ip(), peer.ip()).err(),
            None => Some(Denied::SpecialAddress { dest: dest.clone(), addr: peer.ip(), class: AddrClass::HostAddress }),
        }
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = libc::ECONNREFUSED;
    for &addr in addrs {
        let Some(bytes) = sockaddr::encode(kind.domain, addr) else {
            last = libc::ENETUNREACH;
            continue;
        };
        let host = sh.sockets.tcp(kind.domain).await?;
        options.apply(host.as_fd());
        match notify::connect_raw(host.as_fd(), &bytes) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => {
                last = errno_of(&e);
                continue;
            }
        }
        // A destination on the host (loopback, the host's own addresses)
        // answers within the connect call: the handshake runs in the
        // kernel's softirq before it returns. Then nothing is waited for.
        if is_handed_over(tcp_state(host.as_fd())) {
            if let Some(denied) = itself(host.as_fd(), addr) {
                *to_itself = Some(denied);
                last = libc::ECONNREFUSED;
                continue;
            }
            return Ok((host, addr));
        }
        let Ok(afd) = super::watch(host, Interest::WRITABLE) else { return Err(libc::ENOMEM) };
        match tokio::time::timeout_at(deadline, afd.writable()).await {
            Err(_) => return Err(libc::ETIMEDOUT),
            Ok(Err(e)) => {
                last = errno_of(&e);
                continue;
            }
            Ok(Ok(mut guard)) => guard.retain_ready(),
        }
        // Deregistered from the runtime before it is handed over.
        let host = afd.into_inner();
        match notify::getsockopt_int(host.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR) {
            Ok(0) => {}
            Ok(err) => {
                last = err;
                continue;
            }
            Err(e) => {
                last = errno_of(&e);
                continue;
            }
        }
        // Rule 3: only a connection that is established is handed over.
        if !is_handed_over(tcp_state(host.as_fd())) {
            last = libc::ENOTCONN;
            continue;
        }
        if let Some(denied) = itself(host.as_fd(), addr) {
            *to_itself = Some(denied);
            last = libc::ECONNREFUSED;
            continue;
        }
        return Ok((host, addr));
    }
    Err(last)
}

/// Whether a host socket in this TCP state may be handed over (rule 3):
/// `ESTABLISHED`, or `CLOSE_WAIT`, which is `ESTABLISHED` after the peer's
/// FIN (a server that accepts, maybe writes, and closes at once gets there
/// before the supervisor looks; its data and FIN are queued on the socket,
/// and a direct connect would succeed and read them). Both states only
/// move towards closed: `shutdown()` sends a FIN (it disconnects only in
/// `SYN_SENT`, the state rule 3 is about), and a handed-over `ESTABLISHED`
/// socket reaches `CLOSE_WAIT` by itself anyway. Every other state (the
/// handshake not done, or the connection already gone) is refused.
fn is_handed_over(state: Option<u8>) -> bool {
    matches!(state, Some(TCP_ESTABLISHED | TCP_CLOSE_WAIT))
}

/// `tcp_info.tcpi_state`.
fn tcp_state(sock: BorrowedFd<'_>) -> Option<u8> {
    let mut info = [0u8; 8];
    notify::getsockopt_bytes(sock, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info).ok()?;
    Some(info[0])
}

/// The caller's values of [`COPIED_OPTIONS`] (and `IPV6_V6ONLY` for
/// IPv6), read once per connect and set on each host socket tried. Best
/// effort: an option the kernel refuses stays at its default. A value a new
/// socket already has is not set again: all zero bytes (the default of
/// every option in the list but the keepalive timings) and the keepalive
/// timings' defaults in a new network namespace, which the sandbox's is
/// (so an unset timing gets the host's default, as a direct connection
/// would). `IPV6_V6ONLY`, whose default follows a sysctl of each
/// namespace, is always set.
struct CallerOptions {
    /// Per entry of [`COPIED_OPTIONS`]: the value to set and its length.
    set: [Option<([u8; 16], usize)>; COPIED_OPTIONS.len()],
    v6only: Option<i32>,
}

/// The keepalive timings of a socket in a new network namespace that were
/// never set (`TCP_KEEPALIVE_TIME`, `_INTVL`, `_PROBES` of the kernel).
const KEEPALIVE_DEFAULTS: &[(i32, i32)] =
    &[(libc::TCP_KEEPIDLE, 7200), (libc::TCP_KEEPINTVL, 75), (libc::TCP_KEEPCNT, 9)];

impl CallerOptions {
    fn read(from: BorrowedFd<'_>, domain: i32) -> CallerOptions {
        let mut set = [None; COPIED_OPTIONS.len()];
        for (i, &(level, name, size)) in COPIED_OPTIONS.iter().enumerate() {
            let mut buf = [0u8; 16];
            let Ok(got) = notify::getsockopt_bytes(from, level, name, &mut buf[..size]) else { continue };
            let default = level == libc::IPPROTO_TCP
                && got == 4
                && KEEPALIVE_DEFAULTS.iter().any(|&(n, v)| n == name && buf[..4] == v.to_ne_bytes());
            if buf[..got].iter().any(|&b| b != 0) && !default {
                set[i] = Some((buf, got));
            }
        }
        let v6only = (domain == libc::AF_INET6)
            .then(|| notify::getsockopt_int(from, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).ok())
            .flatten();
        CallerOptions { set, v6only }
    }

    fn apply(&self, to: BorrowedFd<'_>) {
        for (&(level, name, _), value) in COPIED_OPTIONS.iter().zip(&self.set) {
            if let Some((buf, len)) = value {
                let _ = notify::setsockopt_bytes(to, level, name, &buf[..*len]);
            }
        }
        if let Some(v6only) = self.v6only {
            let _ = notify::setsockopt_int(to, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, v6only);
        }
    }

    /// The socket's own `SO_SNDTIMEO`, which bounds a blocking `connect()`
    /// in the kernel too; the supervisor honours it for any socket.
    fn send_timeout(&self) -> Option<std::time::Duration> {
        let at = COPIED_OPTIONS.iter().position(|&(_, name, _)| name == libc::SO_SNDTIMEO)?;
        let (tv, len) = self.set[at]?;
        let tv = tv.get(..16).filter(|_| len == 16)?;
        let secs = u64::from_ne_bytes(tv[0..8].try_into().ok()?);
        let micros = u64::from_ne_bytes(tv[8..16].try_into().ok()?);
        let t = std::time::Duration::from_secs(secs) + std::time::Duration::from_micros(micros);
        (!t.is_zero()).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_established_connection_is_handed_over_even_if_the_peer_closed_it() {
        // tcp_states.h: ESTABLISHED 1 ... CLOSE_WAIT 8 ... NEW_SYN_RECV 12.
        let handed: Vec<u8> = (0..=12).filter(|&s| is_handed_over(Some(s))).collect();
        assert_eq!(handed, [TCP_ESTABLISHED, TCP_CLOSE_WAIT]);
        assert!(!is_handed_over(None));
    }
}
