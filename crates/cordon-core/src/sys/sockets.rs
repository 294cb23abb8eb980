//! The socket maker: a process in cordon's namespaces, placed in the run's
//! cgroups, that only creates TCP sockets for the egress supervisor.
//!
//! # Why
//!
//! The kernel charges a socket's buffers to the memory cgroup of the task
//! that created it (`sk_alloc` → `mem_cgroup_sk_alloc` reads `current`'s
//! memcg, and it never changes afterwards); an accepted socket to the task
//! that calls `accept()`. Sockets the supervisor connected on the sandbox's
//! behalf were cordon's: a run could hold hundreds of MiB of receive
//! buffers outside its `--memory-mb`. A thread cannot be put in another
//! memory cgroup (the controller is not threaded), and a socket of the host's
//! namespace can only be made by a task in it, so a process is needed. The
//! supervisor connects the sockets as before; only their creation moves.
//!
//! # What it is
//!
//! The maker's own pages are a copy-on-write share of cordon's, charged
//! to cordon's cgroup, but its resident set (what the out-of-memory killer
//! weighs) counts them: see [`spawn_socket_maker`] for what happens when
//! the run's out-of-memory killer picks it.
//!
//! A fork of cordon (no `CLONE_VM`: sharing cordon's memory would make the
//! out-of-memory killer of the run's cgroup kill cordon with it) that
//! blocks every signal, closes every descriptor but its channel, dies with
//! the thread that made it (`PR_SET_PDEATHSIG`) and otherwise only
//! answers requests: one byte, `4` or `6`, gets a non-blocking,
//! close-on-exec TCP socket of that family (`SCM_RIGHTS`), or one byte with
//! the errno of `socket()`; `a` with a listening socket attached gets a
//! connection `accept4`ed from it (the filtering proxy's connections from
//! the sandbox: an accepted socket is charged to the task that accepts it,
//! `inet_csk_accept` → `mem_cgroup_sk_alloc`), or the errno of
//! `accept4()`. It exits at the end of its channel. Between the
//! clone and its exit it runs only syscalls on its stack: no allocation, no
//! locks, so forking a multi-threaded cordon is sound.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, Spawned};

/// Asks for an IPv4 socket.
pub const REQUEST_V4: u8 = b'4';
/// Asks for an IPv6 socket.
pub const REQUEST_V6: u8 = b'6';
/// Asks for `accept4` on the listener sent with the request.
pub const REQUEST_ACCEPT: u8 = b'a';

/// Starts a socket maker answering on `channel` (one end of a
/// [`super::seqpacket_pair`]; the caller keeps the other). It is not in any
/// cgroup of the run yet: move it before sending requests.
pub fn spawn_socket_maker(channel: BorrowedFd<'_>) -> io::Result<Spawned> {
    let parent = std::process::id();
    let channel = channel.as_raw_fd();
    match super::fork_with_pidfd(0)? {
        // It only makes syscalls on its stack and `_exit`s.
        super::Forked::Child => serve(channel, parent),
        super::Forked::Parent(spawned) => Ok(spawned),
    }
}

/// The child's loop. Async-signal-safe: syscalls on stack buffers only.
fn serve(channel: RawFd, parent: u32) -> ! {
    // SAFETY: sigset_t is plain data, filled by sigfillset before use.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointer.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: valid sigset pointer; only this (the only) thread's mask
    // changes. SIGKILL and SIGSTOP cannot be blocked.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) };
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid takes no arguments. cordon may have died before the
    // death signal was set up: then there is no one to serve.
    if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent) {
        // SAFETY: _exit ends the process without running any of cordon's code.
        unsafe { libc::_exit(0) };
    }
    // Nothing of cordon's stays open here: not a handed-over socket, not a
    // pipe someone waits on for its end.
    let ch = u32::try_from(channel).unwrap_or(0);
    if ch > 0 {
        // SAFETY: close_range with integer arguments.
        unsafe { libc::syscall(libc::SYS_close_range, 0u32, ch - 1, 0u32) };
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, ch + 1, u32::MAX, 0u32) };
    loop {
        let mut request = [0u8; 1];
        let mut iov = libc::iovec { iov_base: request.as_mut_ptr().cast(), iov_len: 1 };
        let mut control = [0u64; 4];
        let mut msg = super::one_byte_msghdr(&mut iov, &mut control);
        // SAFETY: `msg` points at live locals on this stack.
        let n = unsafe { libc::recvmsg(channel, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n <= 0 {
            // Reading errno allocates nothing.
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // SAFETY: _exit ends the process without running any of
            // cordon's code. The channel's end: the run is over.
            unsafe { libc::_exit(0) };
        }
        let sent = super::received_fd(&msg);
        let fd = match (request[0], sent) {
            (REQUEST_ACCEPT, listener) if listener >= 0 => {
                // SAFETY: accept4 on a descriptor we own; no address wanted.
                unsafe {
                    libc::accept4(
                        listener,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    )
                }
            }
            (REQUEST_ACCEPT, _) => {
                // A request without its listener: answer as accept would.
                // SAFETY: accept4 on an invalid descriptor fails with EBADF.
                unsafe { libc::accept4(-1, std::ptr::null_mut(), std::ptr::null_mut(), 0) }
            }
            (kind, _) => {
                let domain = if kind == REQUEST_V6 { libc::AF_INET6 } else { libc::AF_INET };
                // SAFETY: socket takes integers only.
                unsafe {
                    libc::socket(
                        domain,
                        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        libc::IPPROTO_TCP,
                    )
                }
            }
        };
        let errno = if fd < 0 { io::Error::last_os_error().raw_os_error().unwrap_or(0) } else { 0 };
        if sent >= 0 {
            // SAFETY: the listener's copy the request brought is ours.
            unsafe { libc::close(sent) };
        }
        if fd < 0 {
            let errno = u8::try_from(errno).unwrap_or(u8::MAX);
            // SAFETY: the kernel reads one byte from `errno`.
            unsafe { libc::send(channel, (&errno as *const u8).cast(), 1, libc::MSG_NOSIGNAL) };
            continue;
        }
        super::send_byte_with_fd(channel, fd);
        // SAFETY: our copy; the receiver has its own.
        unsafe { libc::close(fd) };
    }
}

/// Receives one answer of the socket maker, without blocking: the socket,
/// or the maker's errno. `WouldBlock` when none is queued yet;
/// `UnexpectedEof` when the maker is gone.
pub fn recv_socket(channel: BorrowedFd<'_>) -> io::Result<Result<OwnedFd, i32>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = [0u64; 4];
    let mut msg = super::one_byte_msghdr(&mut iov, &mut control);
    // SAFETY: `msg` points at live locals; MSG_CMSG_CLOEXEC marks the new fd.
    let n = cvt(unsafe { libc::recvmsg(channel.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) }
        as libc::c_long)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the socket maker is gone"));
    }
    let fd = super::received_fd(&msg);
    if fd < 0 {
        return Ok(Err(i32::from(byte[0])));
    }
    // SAFETY: the kernel installed this descriptor for us; nobody else owns it.
    Ok(Ok(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Sends one request (`REQUEST_V4` or `REQUEST_V6`), without blocking.
pub fn request_socket(channel: BorrowedFd<'_>, request: u8) -> io::Result<()> {
    super::notify::send_nonblocking(channel, &[request]).map(drop)
}

/// Asks the maker to accept one connection on `listener` (a copy travels
/// with the request; the maker closes it after `accept4`), without
/// blocking. The answer is the accepted socket (non-blocking,
/// close-on-exec) or `accept4`'s errno (`EAGAIN` when none was waiting).
pub fn request_accept(channel: BorrowedFd<'_>, listener: BorrowedFd<'_>) -> io::Result<()> {
    let n = super::send_with_fd(
        channel.as_raw_fd(),
        REQUEST_ACCEPT,
        listener.as_raw_fd(),
        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
    );
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
