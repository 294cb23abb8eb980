//! The supervisor's side of the connect helper (see
//! `cordon_core::sys::helper`): requests (a connect or a bind) go out with
//! the caller's socket attached, replies come back in order, matched by id.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cordon_core::sys::helper::{HelperOp, HelperReply, HelperRequest, KEEP_UMASK, MAX_ADDR, OUTSIDE};
use cordon_core::sys::notify::recv_nonblocking;
use cordon_core::sys::send_with_fds;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;

/// A connection to the helper. Cheap to share.
#[derive(Clone)]
pub(crate) struct HelperClient {
    inner: Arc<Inner>,
}

struct Inner {
    channel: AsyncFd<OwnedFd>,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<HelperReply>>>,
}

impl HelperClient {
    /// Wraps the supervisor's end of the channel. Call [`HelperClient::run`]
    /// (as a task) to receive replies.
    pub fn new(channel: OwnedFd) -> io::Result<Self> {
        cordon_core::sys::set_nonblocking(channel.as_fd())?;
        let channel = super::watch(channel, Interest::READABLE | Interest::WRITABLE)?;
        Ok(HelperClient { inner: Arc::new(Inner { channel, next: AtomicU64::new(1), pending: Mutex::default() }) })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<HelperReply>>> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Receives replies until the helper is gone; then fails every waiter.
    pub async fn run(self) {
        let mut buf = [0u8; HelperReply::SIZE];
        loop {
            let Ok(mut guard) = self.inner.channel.readable().await else { break };
            match guard.try_io(|fd| recv_nonblocking(fd.as_fd(), &mut buf)) {
                Ok(Ok(n)) if n == HelperReply::SIZE => {
                    let reply = HelperReply::from_bytes(&buf);
                    if let Some(tx) = self.pending().remove(&reply.id) {
                        let _ = tx.send(reply);
                    }
                }
                Ok(Ok(_)) | Ok(Err(_)) => break,
                Err(_would_block) => continue,
            }
        }
        // Dropping the senders wakes every waiter with an error.
        self.pending().clear();
    }

    /// Asks the helper to connect `sock` to `addr` (raw `sockaddr` bytes),
    /// from the working directory `cwd` when given. Returns the errno of
    /// its `connect()`, 0 on success. `ECONNREFUSED` when the helper is
    /// gone; `ETIMEDOUT` past `timeout` (its connect may still complete
    /// later, on the caller's socket). And whether the helper refused it
    /// (`EACCES`) because a unix socket's listener is outside the sandbox.
    pub async fn connect(
        &self,
        sock: BorrowedFd<'_>,
        cwd: Option<BorrowedFd<'_>>,
        addr: &[u8],
        timeout: Duration,
    ) -> (i32, bool) {
        let reply = self.ask_reply(HelperOp::Connect, sock, cwd, addr, None, timeout).await;
        (reply.errno, reply.outside == OUTSIDE)
    }

    /// Asks the helper to `op` (connect or bind) `sock` to `addr` (raw
    /// `sockaddr` bytes), from the working directory `cwd` and with the
    /// file mode creation mask `umask` when given (a unix socket's path).
    /// Returns the errno of its call, 0 on success; `ECONNREFUSED` when the
    /// helper is gone, `ETIMEDOUT` past `timeout`.
    pub async fn ask(
        &self,
        op: HelperOp,
        sock: BorrowedFd<'_>,
        cwd: Option<BorrowedFd<'_>>,
        addr: &[u8],
        umask: Option<u32>,
        timeout: Duration,
    ) -> i32 {
        self.ask_reply(op, sock, cwd, addr, umask, timeout).await.errno
    }

    /// [`HelperClient::ask`], with the whole reply.
    async fn ask_reply(
        &self,
        op: HelperOp,
        sock: BorrowedFd<'_>,
        cwd: Option<BorrowedFd<'_>>,
        addr: &[u8],
        umask: Option<u32>,
        timeout: Duration,
    ) -> HelperReply {
        let failed = |errno| HelperReply { id: 0, errno, outside: 0 };
        if addr.len() > MAX_ADDR {
            return failed(libc::EINVAL);
        }
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let mut req = HelperRequest {
            id,
            addr_len: u32::try_from(addr.len()).unwrap_or(0),
            has_cwd: u32::from(cwd.is_some()),
            op: op.wire(),
            umask: umask.unwrap_or(KEEP_UMASK),
            addr: [0; MAX_ADDR],
        };
        req.addr[..addr.len()].copy_from_slice(addr);
        let bytes = req.to_bytes();
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, tx);
        let mut fds = vec![sock];
        fds.extend(cwd);
        let sent = loop {
            let Ok(mut guard) = self.inner.channel.writable().await else { break false };
            match guard.try_io(|fd| send_with_fds(fd.as_fd(), &bytes, &fds, libc::MSG_DONTWAIT)) {
                Ok(Ok(_)) => break true,
                Ok(Err(_)) => break false,
                Err(_would_block) => continue,
            }
        };
        if !sent {
            self.pending().remove(&id);
            return failed(libc::ECONNREFUSED);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => failed(libc::ECONNREFUSED),
            Err(_) => {
                self.pending().remove(&id);
                failed(libc::ETIMEDOUT)
            }
        }
    }
}
