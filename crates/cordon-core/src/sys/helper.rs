//! The connect helper: a process inside the sandbox that runs `connect()`
//! for the supervisor when a connect must happen in the sandbox's own
//! context: unix sockets (their path is looked up with the caller's root,
//! mount namespace, credentials and Landlock domain) and the sandbox's own
//! loopback. It also runs every `bind()` of the sandbox the supervisor
//! lets through, for the same reason: a bind, too, is never left to the
//! kernel after a check (another thread could swap the socket), and a
//! unix socket's path must be made where the caller would make it.
//!
//! # Why a helper
//!
//! The sandbox's `connect()` calls all stop at the supervisor (seccomp user
//! notification) and the supervisor never lets the kernel resume them
//! (`SECCOMP_USER_NOTIF_FLAG_CONTINUE` would let another thread swap the
//! descriptor or the address between the check and the connect). So the
//! supervisor performs each connect itself, on a duplicate of the caller's
//! socket. For a host destination that is a socket of its own. For a unix
//! socket it must not be the supervisor: it would resolve the path in the
//! host's root with cordon's credentials, and reach a root-only socket
//! from a `nobody` sandbox. The helper resolves it exactly as the command
//! would.
//!
//! # What the helper is
//!
//! The command's process clones it (`CLONE_VM | CLONE_PARENT`, on a stack
//! of its own) after its rlimits, dropped capabilities, `no_new_privs` and
//! Landlock domain are in place and before its own seccomp filter is
//! loaded: it has the command's restrictions, in the same Landlock domain
//! (so abstract sockets and signals scoped to the domain behave as for the
//! command), with init as its parent. It is not dumpable, so the sandbox
//! can neither read nor write its memory, and it holds only its channel to
//! the supervisor; its own seccomp filter allows the few calls of its loop
//! and kills it on anything else. Taking it over would give nothing the
//! command lacks: its connects run in the sandbox's network namespace.
//!
//! # Protocol
//!
//! A `SOCK_SEQPACKET` socket pair. The supervisor sends one
//! [`HelperRequest`] per connect or bind ([`HelperOp`]) with the socket
//! (and, for a unix socket, an `O_PATH` descriptor of the caller's working
//! directory, for relative paths) attached; the helper answers one
//! [`HelperReply`] with the errno of its `connect()` or `bind()` (0 on
//! success). Requests are served one at a time.
//!
//! # Host services
//!
//! A grant that covers a host service's socket file (`/run/docker.sock`
//! under `--read /run`; a read-only bind does not stop `connect()`) puts it
//! in the sandbox's root, and Landlock below ABI 9 does not check socket
//! paths. So after a unix stream or seqpacket connect succeeds, the helper
//! asks for the listener's credentials: `SO_PEERCRED`'s pid is given in the
//! helper's pid namespace, the sandbox's, where a process outside it has
//! no number (0). Such a connection is shut down both ways and refused
//! (`EACCES`, [`HelperReply::outside`] set, so the supervisor explains it);
//! listeners the command made keep working. Known gaps: another thread of
//! the sandbox holding the same socket can write to it between the connect
//! and the shutdown (microseconds); a greeting the service sent in that
//! window stays readable; datagram sockets carry no credentials and are
//! not checked (their `sendto()` names any path anyway); and with
//! `--net-via proxy` or no transparent egress, `connect()` is not sent to
//! the supervisor at all.
//!
//! Everything here runs in the child: no allocation, no locks.

use std::os::fd::RawFd;

use libc::c_int;

/// Longest socket address a request carries (`sizeof(struct sockaddr_storage)`).
pub const MAX_ADDR: usize = 128;

/// `umask` of a request that leaves the helper's file mode creation mask
/// as it is.
pub const KEEP_UMASK: u32 = u32::MAX;

/// What the helper does with the attached socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperOp {
    /// `connect()` it to the address.
    Connect,
    /// `bind()` it to the address.
    Bind,
}

impl HelperOp {
    /// The number on the wire.
    pub fn wire(self) -> u32 {
        match self {
            HelperOp::Connect => 0,
            HelperOp::Bind => 1,
        }
    }

    /// The operation a number on the wire names, if any.
    pub fn from_wire(v: u32) -> Option<Self> {
        match v {
            0 => Some(HelperOp::Connect),
            1 => Some(HelperOp::Bind),
            _ => None,
        }
    }
}

/// One request to the helper: connect or bind the attached socket to
/// `addr`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct HelperRequest {
    /// Echoed in the reply.
    pub id: u64,
    /// Bytes of `addr` in use.
    pub addr_len: u32,
    /// 1 when a working directory descriptor follows the socket.
    pub has_cwd: u32,
    /// [`HelperOp::wire`].
    pub op: u32,
    /// The caller's file mode creation mask, set before a bind (a unix
    /// socket's file gets the permissions the caller's own bind would
    /// give it), or [`KEEP_UMASK`].
    pub umask: u32,
    /// The `sockaddr`, as the caller passed it.
    pub addr: [u8; MAX_ADDR],
}

/// The helper's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct HelperReply {
    /// The request's id.
    pub id: u64,
    /// 0, or the errno of `connect()` or `bind()`.
    pub errno: i32,
    /// [`OUTSIDE`] when a unix connect reached a listener outside the
    /// sandbox and was cut and refused (`EACCES`); else 0.
    pub outside: u32,
}

impl HelperRequest {
    /// Size on the wire.
    pub const SIZE: usize = std::mem::size_of::<HelperRequest>();

    /// The bytes sent.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..8].copy_from_slice(&self.id.to_ne_bytes());
        out[8..12].copy_from_slice(&self.addr_len.to_ne_bytes());
        out[12..16].copy_from_slice(&self.has_cwd.to_ne_bytes());
        out[16..20].copy_from_slice(&self.op.to_ne_bytes());
        out[20..24].copy_from_slice(&self.umask.to_ne_bytes());
        out[24..].copy_from_slice(&self.addr);
        out
    }
}

impl HelperReply {
    /// Size on the wire.
    pub const SIZE: usize = std::mem::size_of::<HelperReply>();

    /// Parses the bytes the helper sent.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[0..8]);
        let mut errno = [0u8; 4];
        errno.copy_from_slice(&b[8..12]);
        let mut outside = [0u8; 4];
        outside.copy_from_slice(&b[12..16]);
        HelperReply {
            id: u64::from_ne_bytes(id),
            errno: i32::from_ne_bytes(errno),
            outside: u32::from_ne_bytes(outside),
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The helper's loop, after its setup (see `child::spawn_connect_helper`):
/// serves requests on `channel` until the supervisor closes it, then exits.
pub(crate) fn serve(channel: RawFd) -> ! {
    loop {
        let mut req = HelperRequest { id: 0, addr_len: 0, has_cwd: 0, op: 0, umask: KEEP_UMASK, addr: [0; MAX_ADDR] };
        let mut fds: [c_int; 2] = [-1, -1];
        let n = recv_request(channel, &mut req, &mut fds);
        if n == 0 || (n < 0 && errno() != libc::EINTR) {
            // SAFETY: _exit never returns; the supervisor is gone.
            unsafe { libc::_exit(0) }
        }
        if n < 0 {
            continue;
        }
        let mut outside = 0;
        let err = if usize::try_from(n).ok() != Some(HelperRequest::SIZE) || fds[0] < 0 {
            libc::EINVAL
        } else {
            if req.has_cwd == 1 && fds[1] >= 0 {
                // SAFETY: fchdir on a descriptor we were sent; no memory involved.
                unsafe { libc::fchdir(fds[1]) };
            }
            let max = libc::socklen_t::try_from(MAX_ADDR).unwrap_or(0);
            let len = libc::socklen_t::try_from(req.addr_len).unwrap_or(0).min(max);
            let result = |rc: c_int| if rc == 0 { 0 } else { errno() };
            match HelperOp::from_wire(req.op) {
                Some(HelperOp::Connect) => {
                    // SAFETY: `req.addr` holds at least `len` bytes.
                    let err = result(unsafe { libc::connect(fds[0], req.addr.as_ptr().cast(), len) });
                    if err == 0 && is_unix(&req) && listener_outside(fds[0]) {
                        // The caller's socket is connected to a host service:
                        // cut it both ways before the caller hears of it.
                        // SAFETY: shutdown takes integers.
                        unsafe { libc::shutdown(fds[0], libc::SHUT_RDWR) };
                        outside = OUTSIDE;
                        libc::EACCES
                    } else {
                        err
                    }
                }
                Some(HelperOp::Bind) => {
                    if req.umask != KEEP_UMASK {
                        // SAFETY: umask with an integer argument; it cannot fail.
                        unsafe { libc::umask(req.umask & 0o777) };
                    }
                    // SAFETY: as above.
                    result(unsafe { libc::bind(fds[0], req.addr.as_ptr().cast(), len) })
                }
                None => libc::EINVAL,
            }
        };
        for fd in fds {
            if fd >= 0 {
                // SAFETY: descriptors we were sent; ours to close.
                unsafe { libc::close(fd) };
            }
        }
        let reply = HelperReply { id: req.id, errno: err, outside };
        // SAFETY: `reply` is plain repr(C) data of SIZE bytes.
        unsafe { libc::send(channel, (&reply as *const HelperReply).cast(), HelperReply::SIZE, libc::MSG_NOSIGNAL) };
    }
}

/// [`HelperReply::outside`] of a connect refused because the listener is
/// outside the sandbox.
pub const OUTSIDE: u32 = 1;

/// Whether a request's address is a unix socket's.
fn is_unix(req: &HelperRequest) -> bool {
    let family = u16::from_ne_bytes([req.addr[0], req.addr[1]]);
    req.addr_len >= 2 && i32::from(family) == libc::AF_UNIX
}

/// Whether the listener a unix socket just connected to belongs to no
/// process of the sandbox: the kernel gives `SO_PEERCRED`'s pid (the
/// process that called `listen()`) as seen from the caller's pid
/// namespace, the sandbox's, where a process outside it has no number (0).
/// Datagram sockets carry no peer credentials (0 too): they are left as
/// they are (their `sendto()` names any path anyway; see the README).
fn listener_outside(sock: RawFd) -> bool {
    let mut kind: c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<c_int>()).unwrap_or(4);
    // SAFETY: the kernel writes at most `len` bytes into `kind`.
    let rc =
        unsafe { libc::getsockopt(sock, libc::SOL_SOCKET, libc::SO_TYPE, (&mut kind as *mut c_int).cast(), &mut len) };
    if rc != 0 {
        return true;
    }
    if kind == libc::SOCK_DGRAM {
        return false;
    }
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).unwrap_or(12);
    // SAFETY: the kernel writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(sock, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len)
    };
    rc != 0 || cred.pid == 0
}

/// Receives one request and up to two descriptors. Returns what `recvmsg`
/// returned.
fn recv_request(channel: RawFd, req: &mut HelperRequest, fds: &mut [c_int; 2]) -> isize {
    let mut iov = libc::iovec { iov_base: (req as *mut HelperRequest).cast(), iov_len: HelperRequest::SIZE };
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    // SAFETY: msghdr is plain data; the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = super::c_fit(control.0.len()).unwrap_or(0);
    // SAFETY: `msg` points at live locals; MSG_CMSG_CLOEXEC marks the new fds.
    let n = unsafe { libc::recvmsg(channel, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        return n;
    }
    // SAFETY: msg_control was filled by the kernel (or holds no header: NULL).
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return n;
    }
    // SAFETY: `cmsg` is non-null and points at a header inside `control`.
    let header: libc::cmsghdr = unsafe { std::ptr::read_unaligned(cmsg) };
    if header.cmsg_level != libc::SOL_SOCKET || header.cmsg_type != libc::SCM_RIGHTS {
        return n;
    }
    // SAFETY: CMSG_LEN is a pure computation.
    let base = usize::try_from(unsafe { libc::CMSG_LEN(0) }).unwrap_or(usize::MAX);
    let len: usize = super::c_fit(header.cmsg_len).unwrap_or(0);
    let count = len.saturating_sub(base) / std::mem::size_of::<c_int>();
    // SAFETY: `cmsg` points into `control`.
    let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<c_int>();
    for i in 0..count {
        // SAFETY: the kernel wrote `count` ints at `data`, inside `control`,
        // so element `i` is in bounds.
        let at = unsafe { data.add(i) };
        // SAFETY: `at` points at an int the kernel wrote.
        let fd = unsafe { std::ptr::read_unaligned(at) };
        if i < fds.len() {
            fds[i] = fd;
        } else {
            // SAFETY: an extra descriptor we will not use; ours to close.
            unsafe { libc::close(fd) };
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_have_a_fixed_layout() {
        assert_eq!(HelperRequest::SIZE, 24 + MAX_ADDR);
        let mut addr = [0u8; MAX_ADDR];
        addr[0] = 1;
        let req = HelperRequest { id: 7, addr_len: 3, has_cwd: 1, op: HelperOp::Bind.wire(), umask: 0o77, addr };
        let b = req.to_bytes();
        assert_eq!(&b[0..8], &7u64.to_ne_bytes());
        assert_eq!(&b[8..12], &3u32.to_ne_bytes());
        assert_eq!(&b[16..20], &1u32.to_ne_bytes());
        assert_eq!(&b[20..24], &0o77u32.to_ne_bytes());
        assert_eq!(b[24], 1);
        for op in [HelperOp::Connect, HelperOp::Bind] {
            assert_eq!(HelperOp::from_wire(op.wire()), Some(op));
        }
        assert_eq!(HelperOp::from_wire(2), None);
        let mut r = [0u8; HelperReply::SIZE];
        r[0..8].copy_from_slice(&9u64.to_ne_bytes());
        r[8..12].copy_from_slice(&libc::ECONNREFUSED.to_ne_bytes());
        assert_eq!(HelperReply::from_bytes(&r), HelperReply { id: 9, errno: libc::ECONNREFUSED, outside: 0 });
        r[12..16].copy_from_slice(&OUTSIDE.to_ne_bytes());
        assert_eq!(HelperReply::from_bytes(&r).outside, OUTSIDE);
    }
}
