//! Where cordon's host sockets for a run come from: the run's socket maker
//! (`cordon_core::sys::sockets`), a process in the run's memory cgroup, so
//! that the kernel charges their buffers to the run; or, for a run without
//! a memory cgroup, the caller itself. Both routes use it: transparent
//! egress for the sockets it connects, the proxy for its upstream sockets
//! and for the connections it accepts from the sandbox (an accepted socket
//! is charged to the task that calls `accept()`).
//!
//! One socket of each family is kept made ahead: a connect takes it and
//! asks for the next, whose answer is read by a later connect. So a run of
//! connects costs no round trip to the maker, only the first of each family.
//! An accept costs one round trip.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use cordon_core::sys::notify;
use cordon_core::sys::sockets::{self, REQUEST_V4, REQUEST_V6};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Why a run's connections fail once its socket maker is gone.
pub(crate) const MAKER_GONE: &str = "the run's socket maker is gone (the out-of-memory killer of the run's memory \
     cgroup may have picked it), and cordon makes no socket outside the run's memory limit: this run cannot open \
     new connections any more; give it more --memory-mb";

/// The source of host sockets.
pub(crate) enum Sockets {
    /// Made by the caller: charged to cordon's cgroup.
    Own,
    /// Made by the run's socket maker.
    Maker(Maker),
}

/// The client of a socket maker.
pub(crate) struct Maker {
    channel: AsyncFd<OwnedFd>,
    /// Set once its channel failed: it is gone for good.
    gone: AtomicBool,
    state: tokio::sync::Mutex<Stock>,
}

/// A request sent to the maker and not answered yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// A socket of this family.
    Socket(i32),
    /// An accept.
    Accept,
}

#[derive(Default)]
struct Stock {
    /// The requests not answered yet, in order.
    pending: VecDeque<Asked>,
    /// Sockets made ahead, with their family.
    ready: Vec<(i32, OwnedFd)>,
    /// Connections accepted for a caller that stopped waiting (a cancelled
    /// [`Sockets::accept`]): the next caller takes them.
    accepted: VecDeque<OwnedFd>,
}

impl Sockets {
    /// From the runtime of the caller: `channel` is registered with it.
    pub fn new(channel: Option<OwnedFd>) -> io::Result<Self> {
        Ok(match channel {
            None => Sockets::Own,
            Some(ch) => Sockets::Maker(Maker {
                channel: crate::kernel::watch(ch, Interest::READABLE)?,
                gone: AtomicBool::new(false),
                state: tokio::sync::Mutex::new(Stock::default()),
            }),
        })
    }

    /// A new non-blocking TCP socket of `domain` (`AF_INET`, `AF_INET6`)
    /// in the host's network namespace. The errno on failure (the maker's
    /// own, or `ENOBUFS` when the maker is gone: no socket is made
    /// elsewhere instead, which would put it outside the run's limit).
    pub async fn tcp(&self, domain: i32) -> Result<OwnedFd, i32> {
        match self {
            Sockets::Own => notify::new_socket(domain, libc::SOCK_STREAM, libc::IPPROTO_TCP)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO)),
            Sockets::Maker(m) => m.tcp(domain).await,
        }
    }

    /// Whether the maker is gone (seen by a request or an answer that
    /// failed): every request fails with `ENOBUFS` from then on.
    pub fn is_gone(&self) -> bool {
        match self {
            Sockets::Own => false,
            Sockets::Maker(m) => m.gone.load(Ordering::Relaxed),
        }
    }

    /// Whether connections are accepted by the maker ([`Sockets::accept`]),
    /// rather than by the caller.
    pub fn accepts(&self) -> bool {
        matches!(self, Sockets::Maker(_))
    }

    /// One connection accepted from the non-blocking `listener` by the
    /// maker (non-blocking, close-on-exec): the errno on failure (`EAGAIN`
    /// when none was waiting, `ENOBUFS` when the maker is gone or this is
    /// [`Sockets::Own`], whose caller accepts for itself).
    pub async fn accept(&self, listener: BorrowedFd<'_>) -> Result<OwnedFd, i32> {
        match self {
            Sockets::Own => Err(libc::ENOBUFS),
            Sockets::Maker(m) => m.accept(listener).await,
        }
    }
}

impl Maker {
    async fn tcp(&self, domain: i32) -> Result<OwnedFd, i32> {
        let mut stock = self.state.lock().await;
        loop {
            if let Some(at) = stock.ready.iter().position(|(d, _)| *d == domain) {
                let (_, sock) = stock.ready.swap_remove(at);
                // The next one is made while this one connects.
                let _ = self.ask(&mut stock, domain);
                return Ok(sock);
            }
            if !stock.pending.contains(&Asked::Socket(domain)) {
                self.ask(&mut stock, domain)?;
            }
            if let (Asked::Socket(family), Some(errno)) = self.next(&mut stock).await? {
                if family == domain {
                    return Err(errno);
                }
            }
        }
    }

    async fn accept(&self, listener: BorrowedFd<'_>) -> Result<OwnedFd, i32> {
        let mut stock = self.state.lock().await;
        loop {
            if let Some(sock) = stock.accepted.pop_front() {
                return Ok(sock);
            }
            // An accept asked for by a caller that stopped waiting is
            // answered first: no second request meanwhile.
            if !stock.pending.contains(&Asked::Accept) {
                self.sent(sockets::request_accept(self.channel.get_ref().as_fd(), listener))?;
                stock.pending.push_back(Asked::Accept);
            }
            if let (Asked::Accept, Some(errno)) = self.next(&mut stock).await? {
                if !stock.pending.contains(&Asked::Accept) {
                    return Err(errno);
                }
            }
        }
    }

    /// Reads the maker's next answer and returns the request it answers
    /// with the errno it got, if any. A socket or an accepted connection is
    /// stocked (cancel-safe: a caller that stops waiting loses nothing).
    /// `ENOBUFS` when the maker is gone or out of step.
    async fn next(&self, stock: &mut Stock) -> Result<(Asked, Option<i32>), i32> {
        let answer = self.answer().await;
        let asked = stock.pending.pop_front().ok_or_else(|| self.lost())?;
        match (asked, answer) {
            (Asked::Socket(family), Ok(Ok(sock))) => {
                stock.ready.push((family, sock));
                Ok((asked, None))
            }
            (Asked::Accept, Ok(Ok(sock))) => {
                stock.accepted.push_back(sock);
                Ok((asked, None))
            }
            (_, Ok(Err(errno))) => Ok((asked, Some(errno))),
            (_, Err(_)) => Err(self.lost()),
        }
    }

    /// Marks the maker gone; the errno its callers get.
    fn lost(&self) -> i32 {
        self.gone.store(true, Ordering::Relaxed);
        libc::ENOBUFS
    }

    /// Asks for one more socket of `domain`.
    fn ask(&self, stock: &mut Stock, domain: i32) -> Result<(), i32> {
        let request = if domain == libc::AF_INET6 { REQUEST_V6 } else { REQUEST_V4 };
        self.sent(sockets::request_socket(self.channel.get_ref().as_fd(), request))?;
        stock.pending.push_back(Asked::Socket(domain));
        Ok(())
    }

    /// The errno of a request that could not be sent: `ENOBUFS`, and the
    /// maker is marked gone unless its channel was only full.
    fn sent(&self, request: io::Result<()>) -> Result<(), i32> {
        match request {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(libc::ENOBUFS),
            Err(_) => Err(self.lost()),
        }
    }

    /// The maker's next answer.
    async fn answer(&self) -> io::Result<Result<OwnedFd, i32>> {
        loop {
            let mut guard = self.channel.readable().await?;
            match guard.try_io(|fd| sockets::recv_socket(fd.get_ref().as_fd())) {
                Ok(answer) => return answer,
                Err(_would_block) => continue,
            }
        }
    }
}
