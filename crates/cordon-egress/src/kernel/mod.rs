//! Transparent egress: the supervisor that decides every `connect()` of a
//! sandbox and hands allowed TCP connections over as sockets connected in
//! the host's network namespace, so that any program reaches what the
//! policy allows at the speed of a direct connection, and every refusal is
//! explained.
//!
//! # How
//!
//! The sandbox's seccomp filter stops every `connect()` and hands it to
//! [`spawn`]'s supervisor through a notification listener. For each one
//! (see `connect` for the rules it keeps) the supervisor reads the address
//! and a duplicate of the socket, decides (module `decide`), and
//! either connects a socket of its own in the host's namespace, waits until
//! the connection is established and installs it in place of the caller's
//! (`SECCOMP_IOCTL_NOTIF_ADDFD`), or has the connect done in the sandbox's
//! own context, or refuses with an errno and a notice on stderr. After the
//! hand-over the program reads and writes the kernel's socket directly:
//! no byte passes through cordon.
//!
//! # Choice: replacing the descriptor at `connect()`
//!
//! The alternative, creating every stream socket in the host's namespace at
//! `socket()` time and performing each `connect`, `bind` and `listen` for
//! the program, keeps registrations (`epoll`, `dup`) made before the
//! connect valid. It was not taken: the sandbox would then hold unconnected
//! host sockets, on which every call that can reach the network (`bind`,
//! `listen`, `sendto` with an address, `setsockopt`) must be intercepted
//! and emulated, and connects to the sandbox's own loopback would need a
//! second kind of socket. Replacing a socket only once it is an established
//! TCP connection leaves the sandbox nothing to misuse. The cost: a program
//! that registered the socket with `epoll` (or `dup`ed or `bind`ed it)
//! before `connect()` keeps the registration of the old one (nginx's
//! upstream connections do); a `bind()` before `connect()` is not carried
//! over.
//!
//! # Non-guarantees
//!
//! - A `connect()` returns only once the supervisor has answered, even on
//!   a non-blocking socket (which then succeeds at once, as a connect to
//!   loopback may): about 100 µs more per new connection, plus the network
//!   round trip, spent in the caller's thread.
//! - `getsockname()` on a handed-over socket shows the host's source
//!   address and port (which the server sees anyway).
//! - A program's own Landlock network rules do not apply to connections
//!   the supervisor makes; its own seccomp filters still do.

mod accounting;
mod connect;
mod decide;
mod diag;
mod dns;
mod helper;
mod ledger;
mod names;
mod process;
mod sockaddr;
mod stub;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use cordon_core::policy::NetPolicy;
use cordon_core::sys::notify;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

pub use decide::UnixConnects;
pub use ledger::{HintStyle, Notice};
pub use stub::{Resolve, SystemResolver};

use crate::record::ConnectionRecord;
use accounting::Accounting;
use helper::HelperClient;
use ledger::Ledger;
use names::Names;

/// A cap on connections open at once, shared by every run that holds it
/// (a gateway's global cap). Each handed-over connection holds one unit
/// until the kernel reports it closed.
#[derive(Debug)]
pub struct ConnectionBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ConnectionBudget {
    /// A budget of `limit` connections.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ConnectionBudget { limit, used: AtomicUsize::new(0) })
    }

    /// Connections open now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(self: &Arc<Self>) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used >= self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(used, used + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }
}

/// Where refusal notices go as they happen (cordon prints them on
/// stderr). Called from the supervisor's thread.
pub type NoticeSink = Arc<dyn Fn(&Notice) + Send + Sync>;

/// Notices per run given to the [`KernelConfig::notices`] sink before the
/// rest are only counted (and summed up in one last notice).
pub const MAX_NOTICES: usize = 20;

/// How the supervisor behaves. [`KernelConfig::new`] gives the defaults.
#[derive(Clone)]
#[non_exhaustive]
pub struct KernelConfig {
    /// What may be reached. The default [`NetPolicy`] allows nothing.
    pub policy: NetPolicy,
    /// What unix socket connects may reach. Default: [`UnixConnects::Refused`].
    pub unix: UnixConnects,
    /// Budget for connecting to a destination (all its addresses together):
    /// the caller's own timeout cannot interrupt a connect the supervisor
    /// performs. Default: 10 s.
    pub connect_timeout: Duration,
    /// Handed-over connections open at once, per run; past it a connect
    /// fails with `ENOBUFS`. Each holds kernel socket buffers (up to
    /// `net.ipv4.tcp_rmem` + `tcp_wmem` maxima), charged to the memory
    /// cgroup of the socket's maker: the run's with [`Endpoints::sockets`],
    /// else cordon's.
    /// Default: 256.
    pub max_open: usize,
    /// A cap shared with other runs, on top of `max_open`. Default: none.
    pub budget: Option<Arc<ConnectionBudget>>,
    /// Records kept per run (connections and distinct refusals); past it
    /// one summary record counts the rest. Default: 10 000 (a few MiB at
    /// most).
    pub max_records: usize,
    /// Names the stub DNS answers per run. Default: 4096.
    pub max_names: usize,
    /// How notices phrase the fix. Default: [`HintStyle::Flag`].
    pub hints: HintStyle,
    /// Live notices. Default: none (they are in the records anyway).
    /// At most [`MAX_NOTICES`] per run reach the sink (one per distinct
    /// refusal; identical ones are counted, not repeated), then, when the
    /// run ends, one notice saying how many more there were: a sandbox
    /// that loops over refused destinations cannot flood cordon's stderr
    /// (in `cordon serve`, the service's log). The records keep counting.
    pub notices: Option<NoticeSink>,
    /// How allowed names are resolved, once each. Default:
    /// [`SystemResolver`] (`getaddrinfo`).
    pub resolver: Arc<dyn Resolve>,
}

impl KernelConfig {
    /// The defaults documented on each field, with `policy`.
    pub fn new(policy: NetPolicy) -> Self {
        KernelConfig {
            policy,
            unix: UnixConnects::Refused,
            connect_timeout: Duration::from_secs(10),
            max_open: 256,
            budget: None,
            max_records: 10_000,
            max_names: 4096,
            hints: HintStyle::Flag,
            notices: None,
            resolver: Arc::new(SystemResolver),
        }
    }
}

impl std::fmt::Debug for KernelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelConfig")
            .field("policy", &self.policy)
            .field("unix", &self.unix)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_open", &self.max_open)
            .field("max_records", &self.max_records)
            .finish_non_exhaustive()
    }
}

/// What a sandbox gives its supervisor (see `cordon_core::enforce::SandboxEgress`).
#[derive(Debug)]
pub struct Endpoints {
    /// The seccomp notification listener of the sandbox's filter.
    pub listener: OwnedFd,
    /// The supervisor's end of the connect helper's channel.
    pub helper: OwnedFd,
    /// The stub DNS's UDP socket, bound to the sandbox's 127.0.0.1:53. Its
    /// network namespace is the sandbox's: it tells the sandbox's sockets
    /// from handed-over ones.
    pub dns_udp: OwnedFd,
    /// The stub DNS's TCP listener, on the sandbox's 127.0.0.1:53.
    pub dns_tcp: OwnedFd,
    /// The channel to the run's socket maker (`cordon_core::sys::sockets`),
    /// which makes the host sockets in the run's memory cgroup. `None`:
    /// the supervisor makes them (charged to cordon's cgroup).
    pub sockets: Option<OwnedFd>,
}

/// Starting the supervisor failed; nothing is left running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The sandbox's network namespace could not be read.
    #[error("failed to read the sandbox's network namespace (SO_NETNS_COOKIE of the stub DNS socket, Linux 5.14)")]
    SandboxNamespace(#[source] io::Error),
    /// The kernel's notification structures are not what cordon knows.
    #[error("seccomp user notification is not usable here")]
    NotificationSizes(#[source] io::Error),
    /// A descriptor could not be prepared.
    #[error("failed to prepare the supervisor's {what}")]
    Setup {
        /// Which one.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The runtime or the thread could not be started.
    #[error("failed to start the egress supervisor")]
    Start(#[source] io::Error),
}

/// Whether the stub DNS answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stub {
    /// Allowed names get synthetic addresses, others `NXDOMAIN`.
    Answering,
    /// The policy allows no name: nothing listens on the sandbox's port 53,
    /// so a lookup fails at once (and is explained at its `connect()`),
    /// and a lookup gets no answer at all, not even a refusal.
    Closed,
}

impl Stub {
    fn for_policy(policy: &NetPolicy) -> Stub {
        if crate::policy::allows_any_name(policy) {
            Stub::Answering
        } else {
            Stub::Closed
        }
    }

    fn answers(self) -> bool {
        self == Stub::Answering
    }
}

/// State shared by the supervisor's tasks.
pub(crate) struct Shared {
    config: KernelConfig,
    stub: Stub,
    listener: Arc<OwnedFd>,
    /// The cookie of the sandbox's network namespace.
    sandbox_netns: u64,
    helper: HelperClient,
    sockets: crate::sockets::Sockets,
    accounting: Arc<Accounting>,
    state: Mutex<State>,
    open: Arc<AtomicUsize>,
    /// Woken when a slot comes back ([`Shared::open_slot`]).
    slot_freed: Arc<tokio::sync::Notify>,
    /// Notices of this run so far, given to the sink or not.
    notices: AtomicUsize,
}

pub(crate) struct State {
    names: Names,
    /// Names of the processes that connected.
    processes: process::Processes,
    ledger: Ledger,
    /// Which thread connected the UDP or TCP socket with this local port to
    /// the stub DNS, so a refused lookup can name its process.
    resolver_users: std::collections::HashMap<u16, u32>,
}

/// Where the stub DNS listens, in the sandbox's namespace.
pub const STUB_ADDR: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 53);

/// Receive queue asked for the destroy broadcast: about 4 000 reports.
const DESTROY_QUEUE: i32 = 4 << 20;

/// Entries of [`State::resolver_users`] kept at most (then it starts over).
const MAX_RESOLVER_USERS: usize = 1024;

/// One open connection's share of the caps; released on drop, which wakes
/// the connects waiting at the cap.
pub(crate) struct Slot {
    open: Arc<AtomicUsize>,
    budget: Option<Arc<ConnectionBudget>>,
    freed: Arc<tokio::sync::Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(b) = &self.budget {
            b.used.fetch_sub(1, Ordering::AcqRel);
        }
        self.freed.notify_waiters();
    }
}

impl Shared {
    fn new(
        config: KernelConfig,
        listener: Arc<OwnedFd>,
        sandbox_netns: u64,
        helper: HelperClient,
        sockets: crate::sockets::Sockets,
        destroyed: Option<Arc<OwnedFd>>,
    ) -> Self {
        Shared {
            stub: Stub::for_policy(&config.policy),
            state: Mutex::new(State {
                names: Names::new(config.max_names),
                processes: Default::default(),
                ledger: Ledger::new(config.max_records),
                resolver_users: Default::default(),
            }),
            config,
            listener,
            sandbox_netns,
            helper,
            sockets,
            accounting: Arc::new(Accounting::new(destroyed)),
            open: Arc::new(AtomicUsize::new(0)),
            slot_freed: Arc::default(),
            notices: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `name, pid N` of the process of thread `tid` (see `process`).
    fn process_name(&self, tid: u32, task: Option<process::TaskId>) -> Option<String> {
        self.lock().processes.name(tid, task)
    }

    /// At the end of the run: one notice saying how many were not given
    /// to the sink, if any.
    fn notify_unprinted(&self) {
        let unprinted = self.notices.load(Ordering::Relaxed).saturating_sub(MAX_NOTICES);
        if let (Some(sink), 1..) = (&self.config.notices, unprinted) {
            sink(&Notice {
                kind: "hint",
                target: format!("{unprinted} more refusal(s) were not printed (at most {MAX_NOTICES} are per run)"),
                process: None,
                reason: "every refusal is counted in the run's network records (the result's `network` list and the audit record)"
                    .into(),
                suggestion: None,
                detail: None,
            });
        }
    }

    /// Gives `notice` to the sink, unless [`MAX_NOTICES`] were given.
    fn notify(&self, notice: &Notice) {
        if let Some(sink) = &self.config.notices {
            if self.notices.fetch_add(1, Ordering::Relaxed) < MAX_NOTICES {
                sink(notice);
            }
        }
    }

    /// A slot for one more open connection, or the cap that is reached.
    /// A slot comes back when the kernel reports its connection's socket
    /// destroyed: only then is it gone for sure, since a connection that
    /// ended may still be held by the sandbox (review s8 F6). The kernel
    /// sends those reports from a work queue, which a busy host runs late:
    /// so at the run's own cap, while some of its connections have ended
    /// ([`Accounting::any_ended`]), a connect waits up to `wait` for a
    /// report, and a program that opens and closes connections one after
    /// another is not refused because the host is busy. With none ended,
    /// or at the cap shared with other runs, it is refused at once.
    async fn open_slot(&self, wait: Duration) -> Result<Slot, FullCap> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut freed = std::pin::pin!(self.slot_freed.notified());
            // Registered before the try: a slot freed after it wakes us.
            freed.as_mut().enable();
            match self.take_slot() {
                Ok(slot) => return Ok(slot),
                Err(full @ FullCap::Shared(_)) => return Err(full),
                Err(full) => {
                    if !self.accounting.any_ended() || tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Err(full);
                    }
                }
            }
        }
    }

    fn take_slot(&self) -> Result<Slot, FullCap> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.config.max_open {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(FullCap::Run(self.config.max_open));
        }
        if let Some(b) = &self.config.budget {
            if !b.take() {
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(FullCap::Shared(b.limit));
            }
        }
        Ok(Slot {
            open: Arc::clone(&self.open),
            budget: self.config.budget.clone(),
            freed: Arc::clone(&self.slot_freed),
        })
    }
}

/// Which cap on open connections refused one more.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FullCap {
    /// The run's own [`KernelConfig::max_open`].
    Run(usize),
    /// The [`ConnectionBudget`] the run shares with others.
    Shared(usize),
}

impl FullCap {
    /// Why, and what to do, for a notice.
    pub fn reason(self) -> String {
        match self {
            FullCap::Run(n) => format!("the run already has {n} connections open, its limit; close one and retry"),
            FullCap::Shared(n) => {
                format!("the runs of this service have {n} connections open together, their limit; retry later")
            }
        }
    }
}

#[cfg(test)]
impl Shared {
    /// A supervisor's state without a sandbox, for the stub's unit tests
    /// (inside a runtime): the listener is `/dev/null`, the helper's
    /// channel one end of a pair.
    pub(crate) fn for_tests(config: KernelConfig) -> (Arc<Shared>, OwnedFd) {
        let (ours, theirs) = cordon_core::sys::seqpacket_pair().expect("socket pair");
        let listener = Arc::new(OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null")));
        let helper = HelperClient::new(ours).expect("helper client");
        (Arc::new(Shared::new(config, listener, 0, helper, crate::sockets::Sockets::Own, None)), theirs)
    }

    /// The records so far.
    pub(crate) fn records(&self) -> Vec<ConnectionRecord> {
        self.lock().ledger.take()
    }
}

/// A running supervisor. [`KernelEgress::finish`] stops it and returns the
/// records; dropping it stops it too, discarding them.
#[derive(Debug)]
pub struct KernelEgress {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Vec<ConnectionRecord>>>,
}

/// How long [`KernelEgress::finish`] waits for the kernel to report the
/// last connections closed before it reads them directly.
const FINISH_GRACE: Duration = Duration::from_millis(200);

impl KernelEgress {
    /// Stops serving (call it once the sandbox's processes are gone) and
    /// returns the records: one per handed-over connection, with exact
    /// payload byte counts, and one per distinct refusal.
    pub fn finish(mut self) -> Vec<ConnectionRecord> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(records)) => records,
            Some(Err(_)) | None => vec![ConnectionRecord::note(
                "the egress supervisor panicked; its connection records are lost".to_owned(),
            )],
        }
    }
}

impl Drop for KernelEgress {
    fn drop(&mut self) {
        self.stop.take();
    }
}

/// Starts the supervisor for one sandbox on a new thread named
/// `cordon-egress`, with a current-thread runtime of its own: [`prepare`]
/// then [`Prepared::spawn`]. The sandbox's `connect()` calls made before
/// this wait in the listener's queue.
///
/// # Ambient authority
///
/// The supervisor connects with the caller's network access on behalf of
/// the sandbox: it is where the policy's `net` part is enforced.
pub fn spawn(endpoints: Endpoints, config: KernelConfig) -> Result<KernelEgress, SpawnError> {
    prepare(endpoints, config)?.spawn()
}

/// A supervisor checked and ready to start, with no thread, runtime or
/// socket of its own yet: a caller whose sandbox may never connect (its
/// policy allows no host) starts it on the first notification
/// ([`Prepared::listener`] readable), and a run that never connects costs
/// no thread. Meanwhile the sandbox's `connect()` calls wait in the
/// listener's queue, and the stub DNS's sockets are already closed when it
/// would not answer (so lookups fail at once, as they do once it runs).
#[derive(Debug)]
pub struct Prepared {
    listener: OwnedFd,
    helper: OwnedFd,
    sockets: Option<OwnedFd>,
    /// The stub DNS's UDP and TCP sockets, when it answers.
    dns: Option<(OwnedFd, OwnedFd)>,
    sandbox_netns: u64,
    config: KernelConfig,
}

/// Checks what the supervisor needs of the kernel and reads the sandbox's
/// network namespace: the failures [`spawn`] can have, short of starting a
/// thread. Nothing is started.
pub fn prepare(endpoints: Endpoints, config: KernelConfig) -> Result<Prepared, SpawnError> {
    notify::check_notification_sizes().map_err(SpawnError::NotificationSizes)?;
    let sandbox_netns = notify::socket_netns_cookie(endpoints.dns_udp.as_fd()).map_err(SpawnError::SandboxNamespace)?;
    let Endpoints { listener, helper, dns_udp, dns_tcp, sockets } = endpoints;
    // Closing them frees the port: nothing answers there.
    let dns = Stub::for_policy(&config.policy).answers().then_some((dns_udp, dns_tcp));
    Ok(Prepared { listener, helper, sockets, dns, sandbox_netns, config })
}
impl Prepared {
    /// The notification listener: readable once the sandbox has called
    /// `connect()` (or hung up, once no process of it is left).
    pub fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Starts the supervisor on a new thread named `cordon-egress`, with a
    /// current-thread runtime of its own. The thread creates no process:
    /// `PR_SET_PDEATHSIG` of the sandbox, which follows the thread that
    /// cloned it, is not affected when it ends.
    pub fn spawn(self) -> Result<KernelEgress, SpawnError> {
        let Prepared { listener, helper, sockets, dns, sandbox_netns, config } = self;
        let setup = |what| move |source| SpawnError::Setup { what, source };
        let destroyed = notify::sock_diag_destroy_listener().map_err(setup("sock_diag destroy listener"))?;
        // Every TCP socket the host closes is broadcast; the filter keeps those
        // to the run's destinations (and other sockets to them). A large queue
        // rides out a burst of them (`SO_RCVBUFFORCE` needs
        // CAP_NET_ADMIN; `SO_RCVBUF` is capped by `net.core.rmem_max`). Reports
        // lost anyway are made up for (see `Accounting::watch`).
        if notify::setsockopt_int(destroyed.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, DESTROY_QUEUE).is_err() {
            let _ = notify::setsockopt_int(destroyed.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, DESTROY_QUEUE);
        }
        // Nothing is connected yet: no report is the run's.
        notify::attach_socket_filter(destroyed.as_fd(), &diag::destroy_filter(&[]))
            .map_err(setup("sock_diag destroy listener's filter"))?;
        let diag = notify::sock_diag_socket().map_err(setup("sock_diag socket"))?;
        // Answers hand the CPU straight back to the waiting thread (6.6+).
        let _ = notify::set_sync_wake_up(listener.as_fd());
        cordon_core::sys::set_nonblocking(listener.as_fd()).map_err(setup("notification listener"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(4)
            .thread_name("cordon-egress-dns")
            .build()
            .map_err(SpawnError::Start)?;
        let (listener, helper, sockets) = {
            let _guard = runtime.enter();
            let listener = Arc::new(listener);
            let helper = HelperClient::new(helper).map_err(setup("connect helper channel"))?;
            let sockets = crate::sockets::Sockets::new(sockets).map_err(setup("socket maker channel"))?;
            (listener, helper, sockets)
        };
        let shared = Arc::new(Shared::new(config, listener, sandbox_netns, helper, sockets, Some(Arc::new(destroyed))));
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("cordon-egress".into())
            .spawn(move || {
                let records = runtime.block_on(serve(shared, diag, dns, stop_rx));
                // A lookup stuck in getaddrinfo must not hold up the caller.
                runtime.shutdown_background();
                records
            })
            .map_err(SpawnError::Start)?;
        Ok(KernelEgress { stop: Some(stop_tx), thread: Some(thread) })
    }
}

async fn serve(
    shared: Arc<Shared>,
    diag: OwnedFd,
    dns: Option<(OwnedFd, OwnedFd)>,
    mut stop: oneshot::Receiver<()>,
) -> Vec<ConnectionRecord> {
    let diag = Arc::new(diag);
    let mut background = JoinSet::new();
    background.spawn(shared.helper.clone().run());
    // `prepare` kept them only for a stub that answers.
    if let Some((dns_udp, dns_tcp)) = dns {
        background.spawn(stub::serve_udp(Arc::clone(&shared), dns_udp));
        background.spawn(stub::serve_tcp(Arc::clone(&shared), dns_tcp));
    }
    let accounting = Arc::clone(&shared.accounting);
    let watch_diag = diag.try_clone();
    if let Ok(watch_diag) = watch_diag {
        background.spawn(accounting.watch(Arc::clone(&shared), watch_diag));
    }
    let mut tasks = JoinSet::new();
    let listener = watch(Arc::clone(&shared.listener), Interest::READABLE);
    let mut listener = listener.ok();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            ready = async { listener.as_ref().expect("checked").readable().await }, if listener.is_some() => {
                let Ok(mut guard) = ready else {
                    listener = None;
                    continue;
                };
                match receive(&shared) {
                    Received::Notification(n) => {
                        tasks.spawn(connect::serve(Arc::clone(&shared), n));
                    }
                    Received::Nothing => guard.clear_ready(),
                    // No process uses the filter any more.
                    Received::Closed => listener = None,
                }
            }
        }
    }
    // The sandbox is gone: its waiting notifications fail at once.
    let _ =
        tokio::time::timeout(Duration::from_millis(500), async { while tasks.join_next().await.is_some() {} }).await;
    tasks.shutdown().await;
    shared.accounting.finish(&shared, FINISH_GRACE, diag.as_fd()).await;
    background.shutdown().await;
    shared.notify_unprinted();
    let records = shared.lock().ledger.take();
    records
}

enum Received {
    Notification(notify::Notification),
    Nothing,
    Closed,
}

/// Takes one notification if one is pending. The listener cannot be read
/// without blocking, so it is polled first; a notification whose thread
/// was killed meanwhile makes the receive fail with `ENOENT`.
fn receive(shared: &Shared) -> Received {
    let fd = shared.listener.as_fd();
    let revents = match cordon_core::sys::poll(&[(fd, libc::POLLIN)], 0) {
        Ok(r) => r[0],
        Err(_) => return Received::Nothing,
    };
    if revents & libc::POLLIN == 0 {
        return if revents & (libc::POLLHUP | libc::POLLERR) != 0 { Received::Closed } else { Received::Nothing };
    }
    match notify::recv_notification(fd) {
        Ok(n) => Received::Notification(n),
        Err(_) => Received::Nothing,
    }
}

/// A descriptor the runtime may watch: owned, so it stays open and the
/// same for as long as the runtime holds it (what `AsyncFd` requires).
pub(crate) trait OwnedDescriptor: std::os::fd::AsRawFd {}
impl OwnedDescriptor for OwnedFd {}
impl OwnedDescriptor for Arc<OwnedFd> {}
impl OwnedDescriptor for std::net::TcpListener {}

/// Registers `fd` with the current runtime, for `interest`.
///
/// Tokio deprecated the safe constructor because a plain `RawFd` could be
/// closed behind its back; an owned descriptor cannot, which is the
/// condition its `unsafe` replacement states. This crate has no unsafe
/// code, so the deprecated safe one is used, for owned descriptors only.
#[allow(deprecated)]
pub(crate) fn watch<T: OwnedDescriptor>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    AsyncFd::with_interest(fd, interest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines a sink was given, for `notices` notices.
    fn printed(notices: usize) -> Vec<String> {
        let lines = Arc::new(Mutex::new(vec![]));
        let mut config = KernelConfig::new(NetPolicy::default());
        let sink = Arc::clone(&lines);
        config.notices = Some(Arc::new(move |n: &Notice| sink.lock().unwrap().push(n.render(HintStyle::Flag))));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (sh, _helper) = Shared::for_tests(config);
            for i in 0..notices {
                sh.notify(&Notice {
                    kind: "connect",
                    target: format!("192.0.2.1:{i}"),
                    process: None,
                    reason: "not allowed".into(),
                    suggestion: None,
                    detail: None,
                });
            }
            sh.notify_unprinted();
        });
        let lines = lines.lock().unwrap().clone();
        lines
    }

    #[test]
    fn notices_past_the_limit_are_summed_up_in_one() {
        // Control: up to the limit, each is printed and nothing is summed up.
        let all = printed(MAX_NOTICES);
        assert_eq!(all.len(), MAX_NOTICES);
        assert!(all.iter().all(|l| l.starts_with("cordon: network: refused 192.0.2.1:")), "{all:?}");
        let some = printed(MAX_NOTICES + 7);
        assert_eq!(some.len(), MAX_NOTICES + 1);
        assert_eq!(
            some[MAX_NOTICES - 1],
            format!("cordon: network: refused 192.0.2.1:{} — not allowed", MAX_NOTICES - 1)
        );
        assert_eq!(
            some[MAX_NOTICES],
            "cordon: network: 7 more refusal(s) were not printed (at most 20 are per run) — every refusal is counted in the run's network records (the result's `network` list and the audit record)"
        );
    }
}
