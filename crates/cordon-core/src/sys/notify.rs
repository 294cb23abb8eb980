//! The raw syscalls of transparent egress: seccomp user notification (the
//! supervisor's side), reaching into a notifying thread (`pidfd_getfd`,
//! `process_vm_readv`, `/proc/<tid>/fdinfo`), sockets in the host's network
//! namespace, `sock_diag` netlink and `epoll`.
//!
//! Nothing here decides anything: `cordon-egress` calls these wrappers and
//! holds the logic. Every wrapper takes borrowed descriptors and returns
//! `io::Result`; the kernel's errno comes back untouched, because several
//! callers pass it on to the sandbox as the answer to its own syscall.
//!
//! # Races with the notifying process
//!
//! A notification names a thread by its id. Until the notification is
//! answered that thread is blocked in the syscall, so the id cannot be
//! reused: a wrapper that reads from the thread and is followed by
//! [`notification_id_valid`] returning `true` read from the right thread.
//! Memory read with [`read_process_memory`] may still be changed by another
//! thread of the process right after the read: callers act on their copy and
//! never let the kernel re-read it (no `SECCOMP_USER_NOTIF_FLAG_CONTINUE`).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;
use crate::enforce::seccomp::SockFilter;

/// One seccomp notification: the syscall a thread of the sandbox is blocked
/// in, waiting for the supervisor's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Cookie for [`respond`], [`add_fd_at`] and [`notification_id_valid`].
    pub id: u64,
    /// The thread id, in the pid namespace of the process that received
    /// the notification (cordon's).
    pub tid: u32,
    /// The syscall number.
    pub nr: i32,
    /// The audit architecture of the syscall.
    pub arch: u32,
    /// The raw arguments.
    pub args: [u64; 6],
}

/// Checks that the kernel's notification structures have the sizes this
/// code was written for (`SECCOMP_GET_NOTIF_SIZES`).
pub fn check_notification_sizes() -> io::Result<()> {
    const SECCOMP_GET_NOTIF_SIZES: libc::c_uint = 3;
    let mut sizes = libc::seccomp_notif_sizes { seccomp_notif: 0, seccomp_notif_resp: 0, seccomp_data: 0 };
    // SAFETY: the kernel writes one seccomp_notif_sizes into `sizes`, which
    // lives across the call.
    cvt(unsafe {
        libc::syscall(libc::SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0u32, &mut sizes as *mut libc::seccomp_notif_sizes)
    })?;
    let fits = usize::from(sizes.seccomp_notif) <= size_of::<libc::seccomp_notif>()
        && usize::from(sizes.seccomp_notif_resp) <= size_of::<libc::seccomp_notif_resp>()
        && usize::from(sizes.seccomp_data) == size_of::<libc::seccomp_data>();
    if fits {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::Unsupported, "seccomp notification structures have unexpected sizes"))
    }
}

/// `SECCOMP_IOCTL_NOTIF_RECV`: takes one pending notification. Blocks when
/// none is pending, so call it when the listener polls readable. `ENOENT`
/// means the notifying thread was killed before it could be received.
pub fn recv_notification(listener: BorrowedFd<'_>) -> io::Result<Notification> {
    // SAFETY: seccomp_notif is plain data; the kernel requires it zeroed.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one seccomp_notif into `n`, which lives
    // across the call.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) }.into())?;
    Ok(Notification { id: n.id, tid: n.pid, nr: n.data.nr, arch: n.data.arch, args: n.data.args })
}

/// `SECCOMP_IOCTL_NOTIF_SEND`: the notifying syscall returns `val` when
/// `errno` is 0, else fails with `errno`. `ENOENT`: the thread is gone.
pub fn respond(listener: BorrowedFd<'_>, id: u64, val: i64, errno: i32) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp { id, val, error: -errno, flags: 0 };
    // SAFETY: the ioctl reads one seccomp_notif_resp from `resp`.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) }.into()).map(drop)
}

/// `SECCOMP_IOCTL_NOTIF_ID_VALID`: whether the notification is still
/// pending, i.e. its thread is alive and still blocked in the syscall.
pub fn notification_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    let mut id = id;
    // SAFETY: the ioctl reads one u64 from `id`.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) == 0 }
}

/// Whether the installed descriptor is closed when the sandbox execs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseOnExec {
    /// `FD_CLOEXEC` set.
    Set,
    /// Inherited across `execve`.
    Clear,
}

/// `SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SETFD`: installs
/// `src` in the notifying process at descriptor number `target`, replacing
/// (as `dup2` would) whatever is there. The file is shared, not copied:
/// status flags such as `O_NONBLOCK` are those of `src`.
pub fn add_fd_at(
    listener: BorrowedFd<'_>,
    id: u64,
    src: BorrowedFd<'_>,
    target: u32,
    cloexec: CloseOnExec,
) -> io::Result<()> {
    let newfd_flags = match cloexec {
        CloseOnExec::Set => u32::try_from(libc::O_CLOEXEC).unwrap_or(0),
        CloseOnExec::Clear => 0,
    };
    let mut addfd = libc::seccomp_notif_addfd {
        id,
        flags: u32::try_from(libc::SECCOMP_ADDFD_FLAG_SETFD).unwrap_or(1),
        srcfd: u32::try_from(src.as_raw_fd()).unwrap_or(u32::MAX),
        newfd: target,
        newfd_flags,
    };
    // SAFETY: the ioctl reads one seccomp_notif_addfd from `addfd`.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ADDFD, &mut addfd) }.into()).map(drop)
}

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS(SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)`:
/// the notifying thread and the supervisor hand the CPU to each other
/// directly (Linux 6.6), which saves a scheduler round trip per answer.
pub fn set_sync_wake_up(listener: BorrowedFd<'_>) -> io::Result<()> {
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
    let mut flags = SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP;
    // SAFETY: the ioctl reads one u64 from `flags`.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS, &mut flags) }.into()).map(drop)
}

/// `PIDFD_THREAD` (Linux 6.9): the pidfd names one thread, not its process.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// A pidfd for thread `tid` (`pidfd_open(tid, PIDFD_THREAD)`), so that
/// [`pidfd_getfd`] reads that thread's descriptor table: a thread created
/// without `CLONE_FILES` has its own.
pub fn pidfd_open_thread(tid: u32) -> io::Result<OwnedFd> {
    let tid = libc::pid_t::try_from(tid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes integers only.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, tid, PIDFD_THREAD) })?;
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(RawFd::try_from(fd).unwrap_or(-1)) })
}

/// The pidfs inode of `pidfd` (Linux 6.9+): one number per thread or
/// process for as long as the system runs, never reused, the same for
/// every pidfd of it. `None` when the pidfd is not on pidfs (an older
/// kernel's anonymous inode, shared by all pidfds), which identifies nothing.
pub fn pidfd_inode(pidfd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    const PIDFS_MAGIC: i64 = 0x5049_4446;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fs` is a live, writable statfs the kernel fills in.
    cvt(unsafe { libc::fstatfs(pidfd.as_raw_fd(), &mut fs) }.into())?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures
    if fs.f_type as i64 != PIDFS_MAGIC {
        return Ok(None);
    }
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable stat the kernel fills in.
    cvt(unsafe { libc::fstat(pidfd.as_raw_fd(), &mut st) }.into())?;
    Ok(Some(st.st_ino))
}

/// Whether `pidfd_open(PIDFD_THREAD)` works here: the newest of the
/// features transparent egress needs (Linux 6.9), so its presence implies
/// `pidfd_getfd`, `SECCOMP_ADDFD_FLAG_SETFD` and
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`. Opens and closes a pidfd for
/// the calling thread; changes nothing.
pub fn probe_thread_pidfd() -> io::Result<()> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    pidfd_open_thread(u32::try_from(tid).unwrap_or(0)).map(drop)
}

/// `pidfd_getfd(pidfd, fd)`: a duplicate, in this process, of descriptor
/// `fd` of the thread behind `pidfd` (close-on-exec). It refers to the same
/// open file: a socket stays in its network namespace.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes integers only.
    let got = cvt(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0u32) })?;
    // SAFETY: the kernel just installed this descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(RawFd::try_from(got).unwrap_or(-1)) })
}

/// `process_vm_readv`: copies `buf.len()` bytes at `addr` in process `pid`.
/// Returns how many bytes were read (fewer at the end of a mapping).
pub fn read_process_memory(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let addr = usize::try_from(addr).map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: `local` describes `buf`, which lives across the call; the
    // remote address is only dereferenced by the kernel, in the other
    // process, with its own checks.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    cvt(n as libc::c_long).map(|n| usize::try_from(n).unwrap_or(0))
}

/// `SO_NETNS_COOKIE` (Linux 5.14; the generic value, which x86_64 and
/// aarch64 use).
const SO_NETNS_COOKIE: i32 = 71;

/// The cookie of the network namespace a socket lives in
/// (`SO_NETNS_COOKIE`): unique for every namespace for as long as the host
/// runs, never reused. One `getsockopt`, no privilege, no descriptor made
/// (`SIOCGSKNS` opens the namespace as a file and needs `CAP_NET_ADMIN`
/// over it).
pub fn socket_netns_cookie(sock: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie = [0u8; 8];
    match getsockopt_bytes(sock, libc::SOL_SOCKET, SO_NETNS_COOKIE, &mut cookie)? {
        8 => Ok(u64::from_ne_bytes(cookie)),
        _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

/// `getsockopt` of an `int` option.
pub fn getsockopt_int(sock: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: the kernel writes at most `len` bytes into `v`.
    cvt(unsafe { libc::getsockopt(sock.as_raw_fd(), level, name, (&mut v as *mut libc::c_int).cast(), &mut len) }
        .into())?;
    Ok(v)
}

/// `setsockopt` of an `int` option.
pub fn setsockopt_int(sock: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: the kernel reads `len` bytes from `value`.
    cvt(unsafe { libc::setsockopt(sock.as_raw_fd(), level, name, (&value as *const libc::c_int).cast(), len) }.into())
        .map(drop)
}

/// `getsockopt` into raw bytes (a `struct linger`, a `struct timeval`, a
/// `tcp_info`). Returns how many bytes the kernel wrote.
pub fn getsockopt_bytes(sock: BorrowedFd<'_>, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len()).unwrap_or(0);
    // SAFETY: the kernel writes at most `len` bytes into `buf`.
    cvt(unsafe { libc::getsockopt(sock.as_raw_fd(), level, name, buf.as_mut_ptr().cast(), &mut len) }.into())?;
    Ok(usize::try_from(len).unwrap_or(0))
}

/// `setsockopt` from raw bytes.
pub fn setsockopt_bytes(sock: BorrowedFd<'_>, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len()).unwrap_or(0);
    // SAFETY: the kernel reads `len` bytes from `value`.
    cvt(unsafe { libc::setsockopt(sock.as_raw_fd(), level, name, value.as_ptr().cast(), len) }.into()).map(drop)
}

/// A new socket in the calling thread's network namespace, non-blocking and
/// close-on-exec.
pub fn new_socket(domain: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers only.
    let fd = cvt(unsafe { libc::socket(domain, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, protocol) }.into())?;
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(RawFd::try_from(fd).unwrap_or(-1)) })
}

/// `connect(sock, addr)` with the address as raw `sockaddr` bytes. On a
/// non-blocking socket, `EINPROGRESS` comes back as the error.
pub fn connect_raw(sock: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(addr.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the kernel reads `len` bytes from `addr`.
    cvt(unsafe { libc::connect(sock.as_raw_fd(), addr.as_ptr().cast(), len) }.into()).map(drop)
}

/// `getsockname` / `getpeername` as raw `sockaddr` bytes.
pub fn socket_address(sock: BorrowedFd<'_>, end: SocketEnd) -> io::Result<Vec<u8>> {
    // SAFETY: sockaddr_storage is plain data.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(size_of::<libc::sockaddr_storage>()).unwrap_or(128);
    let ptr = (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    let rc = match end {
        // SAFETY: the kernel writes at most `len` bytes into `storage`.
        SocketEnd::Local => unsafe { libc::getsockname(sock.as_raw_fd(), ptr, &mut len) },
        // SAFETY: as above.
        SocketEnd::Peer => unsafe { libc::getpeername(sock.as_raw_fd(), ptr, &mut len) },
    };
    cvt(rc.into())?;
    let len = usize::try_from(len).unwrap_or(0).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `storage` is `size_of::<sockaddr_storage>()` initialised bytes
    // and `len` is no larger.
    let bytes = unsafe { std::slice::from_raw_parts((&storage as *const libc::sockaddr_storage).cast::<u8>(), len) };
    Ok(bytes.to_vec())
}

/// Which address of a socket [`socket_address`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketEnd {
    /// `getsockname`.
    Local,
    /// `getpeername`.
    Peer,
}

/// The file status flags (`F_GETFL`) of a descriptor.
pub fn file_status_flags(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: F_GETFL takes no pointer.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }.into())?;
    Ok(i32::try_from(flags).unwrap_or(0))
}

/// Sets the file status flags (`F_SETFL`) of a descriptor.
pub fn set_file_status_flags(fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    // SAFETY: F_SETFL takes an integer.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }.into()).map(drop)
}

/// `send(sock, data, MSG_DONTWAIT | MSG_NOSIGNAL)`.
pub fn send_nonblocking(sock: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads `data.len()` bytes from `data`.
    let n = unsafe {
        libc::send(sock.as_raw_fd(), data.as_ptr().cast(), data.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    cvt(n as libc::c_long).map(|n| usize::try_from(n).unwrap_or(0))
}

/// `recv(sock, buf, MSG_DONTWAIT)`.
pub fn recv_nonblocking(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    cvt(n as libc::c_long).map(|n| usize::try_from(n).unwrap_or(0))
}

/// `/proc/<tid>/fdinfo/<fd>`: whether descriptor `fd` of thread `tid` is
/// close-on-exec (the `flags:` line carries `O_CLOEXEC` for it; `F_GETFD`
/// cannot be asked of another process).
pub fn remote_fd_cloexec(tid: u32, fd: i32) -> io::Result<CloseOnExec> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}"))?;
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "fdinfo has no flags line"))?;
    Ok(if flags & u32::try_from(libc::O_CLOEXEC).unwrap_or(0) != 0 { CloseOnExec::Set } else { CloseOnExec::Clear })
}

/// A `NETLINK_SOCK_DIAG` socket, non-blocking, subscribed to the kernel's
/// broadcast of destroyed TCP sockets (IPv4 and IPv6) of the calling
/// thread's network namespace. Each message is an `inet_diag_msg` with the
/// socket's final `tcp_info`. No privilege is needed.
pub fn sock_diag_destroy_listener() -> io::Result<OwnedFd> {
    const SKNLGRP_INET_TCP_DESTROY: i32 = 1;
    const SKNLGRP_INET6_TCP_DESTROY: i32 = 3;
    let fd = new_socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_SOCK_DIAG)?;
    // Bound (the kernel picks a port id): an unbound socket has port id 0,
    // the kernel's own, and broadcasts skip it.
    // SAFETY: sockaddr_nl is plain data; all-zero but the family means "pick".
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or(16);
    let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or(12);
    // SAFETY: the kernel reads `len` bytes from `addr`.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_nl).cast(), len) }.into())?;
    for group in [SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY] {
        setsockopt_int(fd.as_fd(), libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, group)?;
    }
    Ok(fd)
}

/// Attaches a classic-BPF socket filter (`SO_ATTACH_FILTER`), replacing the
/// one attached before, if any, at once: a datagram is checked either by
/// the old program or by the new one. On a netlink socket the program sees
/// each message from its `nlmsghdr` on, and a datagram it drops is never
/// queued (so it neither wakes the reader nor fills the queue).
pub fn attach_socket_filter(sock: BorrowedFd<'_>, program: &[SockFilter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SockFilter is `#[repr(C)]` with the fields of `struct sock_filter`.
    let fprog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut().cast() };
    let size = libc::socklen_t::try_from(size_of::<libc::sock_fprog>()).unwrap_or(16);
    // SAFETY: the kernel reads one sock_fprog from `fprog`, and through it
    // `len` instructions from `program`, both live across the call; it
    // copies the program and keeps no pointer.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            size,
        )
    }
    .into())
    .map(drop)
}

/// A `NETLINK_SOCK_DIAG` socket for requests (no subscriptions),
/// non-blocking.
pub fn sock_diag_socket() -> io::Result<OwnedFd> {
    new_socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_SOCK_DIAG)
}

/// An epoll instance, close-on-exec.
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes an integer.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }.into())?;
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(RawFd::try_from(fd).unwrap_or(-1)) })
}

/// Registers `fd` with `epoll` for `events`, tagged `data`. The
/// registration follows the open file, not the descriptor: it outlives the
/// caller closing `fd` while another descriptor keeps the file open, and
/// disappears silently when the last one closes. It holds no reference.
pub fn epoll_add(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: the kernel reads one epoll_event from `ev`.
    cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) }.into()).map(drop)
}

/// `epoll_wait(epoll, timeout 0)`: the ready `(events, data)` pairs.
pub fn epoll_ready(epoll: BorrowedFd<'_>) -> io::Result<Vec<(u32, u64)>> {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let max = libc::c_int::try_from(evs.len()).unwrap_or(64);
    // SAFETY: the kernel writes at most `max` events into `evs`.
    let n = cvt(unsafe { libc::epoll_wait(epoll.as_raw_fd(), evs.as_mut_ptr(), max, 0) }.into())?;
    Ok(evs[..usize::try_from(n).unwrap_or(0)].iter().map(|e| (e.events, e.u64)).collect())
}
