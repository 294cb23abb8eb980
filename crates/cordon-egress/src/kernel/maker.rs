//! Where the supervisor's host sockets come from: the run's socket maker
//! (`cordon_core::sys::sockets`), a process in the run's memory cgroup, so
//! that the kernel charges their buffers to the run; or, for a run without
//! a memory cgroup, the supervisor itself.
//!
//! One socket of each family is kept made ahead: a connect takes it and
//! asks for the next, whose answer is read by a later connect. So a run of
//! connects costs no round trip to the maker, only the first of each family.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use cordon_core::sys::notify;
use cordon_core::sys::sockets::{self, REQUEST_V4, REQUEST_V6};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The source of host sockets.
pub(crate) enum Sockets {
    /// Made by the supervisor: charged to cordon's cgroup.
    Own,
    /// Made by the run's socket maker.
    Maker(Maker),
}

/// The client of a socket maker.
pub(crate) struct Maker {
    channel: AsyncFd<OwnedFd>,
    state: tokio::sync::Mutex<Stock>,
}

#[derive(Default)]
struct Stock {
    /// The families asked for and not answered yet, in order.
    pending: VecDeque<i32>,
    /// Sockets made ahead, with their family.
    ready: Vec<(i32, OwnedFd)>,
}

impl Sockets {
    /// From the runtime of the caller: `channel` is registered with it.
    pub fn new(channel: Option<OwnedFd>) -> io::Result<Self> {
        Ok(match channel {
            None => Sockets::Own,
            Some(ch) => Sockets::Maker(Maker {
                channel: super::watch(ch, Interest::READABLE)?,
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
}

impl Maker {
    async fn tcp(&self, domain: i32) -> Result<OwnedFd, i32> {
        let mut stock = self.state.lock().await;
        loop {
            if let Some(at) = stock.ready.iter().position(|(d, _)| *d == domain) {
                let (_, sock) = stock.ready.swap_remove(at);
                // The next one is made while this one connects.
                self.ask(&mut stock, domain);
                return Ok(sock);
            }
            if !stock.pending.contains(&domain) && !self.ask(&mut stock, domain) {
                return Err(libc::ENOBUFS);
            }
            let answer = self.answer().await;
            let Some(family) = stock.pending.pop_front() else { return Err(libc::ENOBUFS) };
            match answer {
                Ok(Ok(sock)) => stock.ready.push((family, sock)),
                Ok(Err(errno)) if family == domain => return Err(errno),
                Ok(Err(_)) => {}
                Err(_) => return Err(libc::ENOBUFS),
            }
        }
    }

    /// Asks for one more socket of `domain`; whether the request was sent.
    fn ask(&self, stock: &mut Stock, domain: i32) -> bool {
        let request = if domain == libc::AF_INET6 { REQUEST_V6 } else { REQUEST_V4 };
        let sent = sockets::request_socket(self.channel.get_ref().as_fd(), request).is_ok();
        if sent {
            stock.pending.push_back(domain);
        }
        sent
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
