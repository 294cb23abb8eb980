//! The sandbox spawner: a small single-threaded process that clones
//! sandboxes for a big multi-threaded one (`cordon serve`).
//!
//! # Why
//!
//! A sandbox's init is cloned without `CLONE_VM` (it outlives the command's
//! exec and runs cordon's code on memory of its own). Cloned from the
//! service, it shares every page of the service copy-on-write for as long
//! as it lives, and a warm pool keeps parked ones alive all the time: every
//! page the service writes then faults once, with a TLB-shootdown
//! interrupt to the other CPUs the service's threads run on, and every
//! clone copies the service's page tables (measured: about a third of the
//! CPU of an execution). Cloned from a process whose memory is a few
//! hundred KiB and that writes only while it clones, all of that goes.
//!
//! # What it is
//!
//! A fresh program, not a copy of the service: [`Spawner::start`] forks
//! and at once execs `/proc/self/exe` (the same build, so both sides
//! encode requests alike) with an empty environment and the arguments
//! [`SPAWNER_NAME`] [`SPAWNER_ARG`]; that program's `main` calls
//! [`serve_if_asked`] first. So the spawner holds nothing the service ever
//! held: no secret, key or token, not even the service's environment or
//! arguments (a secret given as `CORDON_JWT_SECRET=…` stays in the
//! service), and every sandbox cloned from it inherits that emptiness.
//! It dies with the thread that started it (`PR_SET_PDEATHSIG`, set
//! before the exec and checked against a race with `getppid`) and at the
//! end of its channel, blocks every signal (a Ctrl-C at the service's
//! terminal is the service's to handle), and keeps only fds 0-2 and its
//! channel. It reads one request at a time: a [`ChildSpec`] (encoded with
//! [`encode`], every descriptor attached as `SCM_RIGHTS`) and the clone
//! flags; it clones the child with `CLONE_PARENT` ([`ParentOf::CallersParent`]),
//! so the sandbox is the *service's* child: the service waits for it, holds
//! its pidfd, and the child's own `PR_SET_PDEATHSIG` follows the thread
//! that started the spawner. It closes its copies of the request's
//! descriptors, then answers with the pid and the pidfd (or the errno).
//!
//! Guarantees: the child runs the same [`super::child::child_main`] on the
//! same spec, decoded field by field (the encoder destructures the spec
//! naming every field, so a field added to it does not compile until it
//! travels). The spawner holds none of the service's memory, environment
//! or descriptors but fds 0-2. Not guaranteed: a spawner killed from
//! outside is not restarted; every later [`Spawner::spawn`] fails with
//! `BrokenPipe` naming it, and [`Spawner::alive`] turns false.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicI32;
use std::sync::{Mutex, PoisonError};

use super::child::{
    CStringArray, ChildSpec, ChildTerminal, EgressChild, LateEnv, LateRule, MountOp, PtyStderr, Supervision,
};
use super::{cvt, send_with_fds, ParentOf, Spawned, Stack};
use crate::enforce::seccomp::SockFilter;

/// The most descriptors one request carries (a spec holds at most 16).
const MAX_FDS: usize = super::MAX_FDS_PER_MESSAGE;

/// The largest request the spawner reads (a spec is a few KiB to a few
/// tens of KiB: argv, environment, mount steps, seccomp programs). A
/// larger one is refused with `EMSGSIZE`, by the socket or by the spawner.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The process name the spawner shows (`/proc/PID/comm`), also its
/// `argv[0]`.
pub const SPAWNER_NAME: &str = "cordon-spawner";

/// The spawner's one argument: what [`serve_if_asked`] looks for.
pub const SPAWNER_ARG: &str = "--cordon-sandbox-spawner";

/// The spawner's end of its channel, in the spawner.
const CHANNEL_FD: RawFd = 3;

/// How long [`Spawner::start`] waits for the spawner to be ready.
const START_TIMEOUT_MS: libc::c_int = 10_000;

/// The spawner's first message: it runs and reads requests.
const READY: [u8; 8] = *b"ready\0\0\0";

/// The service's side of the spawner: its channel, pid and pidfd.
#[derive(Debug)]
pub struct Spawner {
    channel: Mutex<OwnedFd>,
    pid: libc::pid_t,
    pidfd: OwnedFd,
}

impl Spawner {
    /// Starts the spawner: a fork of this process that at once execs
    /// `/proc/self/exe` (this very program, so the request encoding is the
    /// same build's) with an empty environment, the arguments
    /// [`SPAWNER_NAME`] [`SPAWNER_ARG`], its channel as descriptor
    /// [`CHANNEL_FD`] and nothing else but fds 0-2. That program must call
    /// [`serve_if_asked`] first thing in its `main`. Returns once the
    /// spawner said it is ready; fails with the reason when it could not
    /// start (the exec failed, or the program did not answer within
    /// [`START_TIMEOUT_MS`]: it was then killed).
    ///
    /// Between the fork and the exec the child only makes system calls
    /// (no allocation, no lock), so any thread may call this; the death
    /// signal follows the thread that did (call it from the main thread).
    pub fn start() -> io::Result<Spawner> {
        let (ours, theirs) = super::seqpacket_pair()?;
        let argv = [SPAWNER_NAME, SPAWNER_ARG].map(|a| CString::new(a).unwrap_or_default());
        let argv_ptrs = [argv[0].as_ptr(), argv[1].as_ptr(), std::ptr::null()];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        // SAFETY: getpid takes no arguments.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the child runs only `exec_spawner`, which makes system
        // calls on memory prepared above and never returns.
        let pid = cvt(unsafe { libc::fork() }.into())?;
        if pid == 0 {
            exec_spawner(theirs.as_raw_fd(), parent, &argv_ptrs, &envp);
        }
        drop(theirs);
        let pid = libc::pid_t::try_from(pid).unwrap_or(-1);
        // SAFETY: pidfd_open with a pid and no flags; the result is checked.
        let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
        // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(RawFd::try_from(fd).unwrap_or(-1)) };
        let spawner = Spawner { channel: Mutex::new(ours), pid, pidfd };
        if let Err(e) = spawner.await_ready() {
            // Not left running nor as a zombie: killed (it may be alive
            // and silent) and reaped.
            let _ = super::pidfd_send_signal(spawner.pidfd.as_fd(), libc::SIGKILL);
            // SAFETY: waits for our own child, whose pid no one else reaps.
            unsafe { libc::waitpid(spawner.pid, std::ptr::null_mut(), 0) };
            return Err(e);
        }
        Ok(spawner)
    }

    /// Waits for the spawner's first message: [`READY`], or the errno of
    /// its failed exec. A spawner that does not answer in time is killed.
    fn await_ready(&self) -> io::Result<()> {
        let channel = self.channel.lock().unwrap_or_else(PoisonError::into_inner);
        let failed = |why: String| {
            io::Error::other(format!("the sandbox spawner (pid {}, /proc/self/exe {SPAWNER_ARG}) {why}", self.pid))
        };
        let ready = super::poll(&[(channel.as_fd(), libc::POLLIN)], START_TIMEOUT_MS)?;
        if ready[0] == 0 {
            return Err(failed(format!(
                "did not answer within {START_TIMEOUT_MS} ms and was killed; a program that starts a \
spawner must call cordon::spawner_entry() first thing in its main"
            )));
        }
        let mut hello = [0u8; 8];
        let (n, _) = recv_with_fds(channel.as_fd(), &mut hello)?;
        match (n, hello) {
            (8, READY) => Ok(()),
            (8, [0, 0, 0, 0, e @ ..]) => {
                let e = io::Error::from_raw_os_error(i32::from_ne_bytes(e));
                Err(failed(format!("could not exec its program: {e}")))
            }
            (0, _) => Err(failed(
                "ended before it was ready; a program that starts a spawner must call \
cordon::spawner_entry() first thing in its main"
                    .into(),
            )),
            _ => Err(failed("answered something else than ready".into())),
        }
    }

    /// The spawner's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Whether the spawner still runs (its pidfd is not readable). A
    /// spawner found dead is reaped here, so it does not stay a zombie of
    /// the service until the service ends (its pid is freed; the pidfd we
    /// hold keeps naming the dead process, never a new one).
    pub fn alive(&self) -> bool {
        let alive = super::poll(&[(self.pidfd.as_fd(), libc::POLLIN)], 0).is_ok_and(|r| r[0] & libc::POLLIN == 0);
        if !alive {
            // SAFETY: siginfo_t is plain data, valid all zero.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let pidfd = libc::id_t::try_from(self.pidfd.as_raw_fd()).unwrap_or_default();
            // SAFETY: waitid on the pidfd of our own child into the
            // siginfo above; WNOHANG, so it never blocks, and a second
            // call (already reaped) fails with ECHILD, ignored.
            unsafe { libc::waitid(libc::P_PIDFD, pidfd, &mut info, libc::WEXITED | libc::WNOHANG) };
        }
        alive
    }

    /// Has the spawner clone the child of `spec` with `namespaces` (as
    /// [`super::spawn`] would, with [`ParentOf::CallersParent`]): the
    /// child is the caller's. One request at a time (callers queue on a
    /// lock). A spawner that is gone fails with `BrokenPipe` naming it; a
    /// failed clone with its errno.
    pub fn spawn(&self, namespaces: libc::c_int, spec: &ChildSpec) -> io::Result<Spawned> {
        let mut w = Writer::default();
        w.i32(namespaces);
        encode(spec, &mut w);
        let gone = |e: io::Error| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("the sandbox spawner (pid {}, {SPAWNER_NAME}) is gone: {e}", self.pid),
            )
        };
        let channel = self.channel.lock().unwrap_or_else(PoisonError::into_inner);
        send_with_fds(channel.as_fd(), &w.buf, &w.fds, 0).map_err(|e| match e.raw_os_error() {
            Some(libc::EMSGSIZE | libc::EINVAL) => e,
            _ => gone(e),
        })?;
        let mut reply = [0u8; 8];
        let (n, mut fds) = recv_with_fds(channel.as_fd(), &mut reply).map_err(gone)?;
        drop(channel);
        if n == 0 {
            return Err(gone(io::Error::new(io::ErrorKind::UnexpectedEof, "its channel is closed")));
        }
        let pid = i32::from_ne_bytes(reply[..4].try_into().unwrap_or_default());
        let errno = i32::from_ne_bytes(reply[4..].try_into().unwrap_or_default());
        if errno != 0 {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let pidfd = fds.pop().ok_or_else(|| io::Error::other("the sandbox spawner answered without a pidfd"))?;
        Ok(Spawned { pid, pidfd })
    }
}

/// The forked child of [`Spawner::start`], up to its exec: system calls
/// only (no allocation, no lock: the caller may have other threads).
/// Never returns: on a failed exec it reports the errno on its channel.
fn exec_spawner(
    channel: RawFd,
    parent: libc::pid_t,
    argv: &[*const libc::c_char; 3],
    envp: &[*const libc::c_char; 1],
) -> ! {
    // SAFETY: prctl with integer arguments. The death signal survives the
    // exec (the program is not set-user-ID and has no file capabilities).
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid takes no arguments. The service may have died before
    // the death signal was set up.
    if unsafe { libc::getppid() } != parent {
        // SAFETY: _exit runs none of the service's exit handlers.
        unsafe { libc::_exit(0) };
    }
    // Every signal blocked (a Ctrl-C at the service's terminal is the
    // service's to handle); the mask survives the exec.
    // SAFETY: sigset_t is plain data, filled by sigfillset before use.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointer.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: valid sigset pointer; this (only) thread's mask changes.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) };
    // The channel at CHANNEL_FD without close-on-exec, fds 0-2 kept (a
    // sandbox's command may inherit them, as from the service), nothing
    // else of the service passes the exec.
    let moved = if channel == CHANNEL_FD {
        // SAFETY: fcntl with integer arguments.
        unsafe { libc::fcntl(CHANNEL_FD, libc::F_SETFD, 0) }
    } else {
        // SAFETY: dup2 with integer arguments.
        unsafe { libc::dup2(channel, CHANNEL_FD) }
    };
    if moved != -1 {
        let from = libc::c_uint::try_from(CHANNEL_FD + 1).unwrap_or(4);
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0u32) };
        // SAFETY: NUL-terminated program path; argv and envp are
        // NULL-terminated arrays of C strings that outlive the call.
        unsafe { libc::execve(c"/proc/self/exe".as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    }
    let mut report = [0u8; 8];
    report[4..].copy_from_slice(&io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOEXEC).to_ne_bytes());
    let to = if moved == -1 { channel } else { CHANNEL_FD };
    // SAFETY: a live 8-byte buffer; `to` is our channel (at `channel` if
    // the dup failed, at CHANNEL_FD otherwise).
    unsafe { libc::send(to, report.as_ptr().cast(), report.len(), libc::MSG_NOSIGNAL) };
    // SAFETY: _exit runs none of the service's exit handlers.
    unsafe { libc::_exit(127) }
}

/// The spawner's entry: in a program started by [`Spawner::start`] (its
/// arguments are exactly [`SPAWNER_NAME`] [`SPAWNER_ARG`]) serves requests
/// on [`CHANNEL_FD`] and never returns; in any other, returns at once.
/// Call it first thing in `main` of a program that starts a spawner.
pub fn serve_if_asked() {
    let mut args = std::env::args_os();
    let asked = args.next().is_some_and(|a| a == SPAWNER_NAME)
        && args.next().is_some_and(|a| a == SPAWNER_ARG)
        && args.next().is_none();
    if asked {
        // SAFETY: Spawner::start left the channel open at CHANNEL_FD and
        // nothing else in this fresh program owns that descriptor.
        serve(unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) })
    }
}

/// The spawner's life: one request after another until the channel
/// ends. Never returns.
fn serve(channel: OwnedFd) -> ! {
    let name = CString::new(SPAWNER_NAME).unwrap_or_default();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    let ch = channel.as_raw_fd();
    // Close-on-exec again (it came without, across the exec): a sandbox's
    // init closes what its spec does not hold anyway, and nothing the
    // spawner starts by exec may ever hold its channel.
    // SAFETY: fcntl with integer arguments on our own descriptor.
    unsafe { libc::fcntl(ch, libc::F_SETFD, libc::FD_CLOEXEC) };
    if send_with_fds::<RawFd>(channel.as_fd(), &READY, &[], 0).is_err() {
        // SAFETY: _exit with an integer status.
        unsafe { libc::_exit(1) }
    }
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    loop {
        let (n, fds) = match recv_with_fds(channel.as_fd(), &mut buf) {
            Ok((0, _)) => {
                // SAFETY: as above.
                unsafe { libc::_exit(0) }
            }
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                if send_reply(ch, Err(e)).is_err() {
                    // SAFETY: as above.
                    unsafe { libc::_exit(1) }
                }
                continue;
            }
            Err(_) => {
                // SAFETY: as above.
                unsafe { libc::_exit(1) }
            }
        };
        let spawned = decode(&buf[..n], fds).and_then(|(namespaces, spec)| {
            let spawned = super::spawn(namespaces, ParentOf::CallersParent, &spec);
            // Our copies of the child's descriptors go before the answer:
            // the service reads its report pipe to the end.
            drop(spec);
            spawned
        });
        // Nothing of one sandbox's request stays in the memory the next
        // sandbox's init is cloned from.
        buf[..n].fill(0);
        if send_reply(ch, spawned).is_err() {
            // SAFETY: as above.
            unsafe { libc::_exit(1) }
        }
    }
}

/// Answers one request: the pid and 0 with the pidfd, or 0 and the errno.
fn send_reply(channel: RawFd, spawned: io::Result<Spawned>) -> io::Result<()> {
    // SAFETY: the spawner's own channel, open for its whole life.
    let channel = unsafe { BorrowedFd::borrow_raw(channel) };
    match spawned {
        Ok(s) => {
            let mut reply = s.pid.to_ne_bytes().to_vec();
            reply.extend(0i32.to_ne_bytes());
            send_with_fds(channel, &reply, &[s.pidfd.as_raw_fd()], 0).map(drop)
        }
        Err(e) => {
            let mut reply = 0i32.to_ne_bytes().to_vec();
            reply.extend(e.raw_os_error().unwrap_or(libc::EINVAL).to_ne_bytes());
            send_with_fds::<RawFd>(channel, &reply, &[], 0).map(drop)
        }
    }
}

/// Receives one message into `buf` and the descriptors attached to it
/// (close-on-exec). A message or a descriptor list cut short fails with
/// `EMSGSIZE` (the descriptors that came are closed).
fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let data_len = u32::try_from(MAX_FDS * std::mem::size_of::<libc::c_int>()).unwrap_or(0);
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = usize::try_from(unsafe { libc::CMSG_SPACE(data_len) }).unwrap_or(0);
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = super::c_fit(space).unwrap_or(0);
    // SAFETY: `msg` points at live buffers; MSG_CMSG_CLOEXEC marks new fds.
    let n = cvt(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) } as libc::c_long)?;
    let mut fds = vec![];
    // SAFETY: msg_control was filled by the kernel (or has no header: NULL).
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points at a header inside `control`.
        let header: libc::cmsghdr = unsafe { std::ptr::read_unaligned(cmsg) };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN is a pure computation.
            let empty = usize::try_from(unsafe { libc::CMSG_LEN(0) }).unwrap_or(0);
            let len: usize = super::c_fit(header.cmsg_len).unwrap_or(0);
            let count = len.saturating_sub(empty) / std::mem::size_of::<libc::c_int>();
            // SAFETY: `cmsg` is non-null and points into `control`.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
            for i in 0..count {
                let slot = data.wrapping_add(i);
                // SAFETY: the header carries `count` ints at `data`.
                let fd = unsafe { std::ptr::read_unaligned(slot) };
                // SAFETY: the kernel installed this descriptor for us alone.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: `msg` and `cmsg` come from the kernel's filled buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok((usize::try_from(n).unwrap_or(0), fds))
}

/// A request being written: bytes, and the descriptors it refers to by
/// index.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
    fds: Vec<RawFd>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn flag(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend(v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.buf.extend(v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend(v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }
    fn cstr(&mut self, s: &CString) {
        self.bytes(s.as_bytes());
    }
    fn cstrs(&mut self, items: &[CString]) {
        self.len(items.len());
        items.iter().for_each(|s| self.cstr(s));
    }
    fn fd(&mut self, fd: &OwnedFd) {
        self.len(self.fds.len());
        self.fds.push(fd.as_raw_fd());
    }
    fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                f(self, x);
            }
        }
    }
    /// A stack travels as its usable size; the spawner maps its own.
    fn stack(&mut self, s: &Stack) {
        self.len(s.range().len().saturating_sub(super::page_size()));
    }
    fn program(&mut self, p: &[SockFilter]) {
        self.len(p.len());
        for i in p {
            self.buf.extend(i.code.to_le_bytes());
            self.u8(i.jt);
            self.u8(i.jf);
            self.u32(i.k);
        }
    }
}

/// A request being read.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    fds: Vec<Option<OwnedFd>>,
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed spawn request: {what}"))
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(|| malformed("too short"))?;
        let b = &self.buf[self.at..end];
        self.at = end;
        Ok(b)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn flag(&mut self) -> io::Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(malformed("a flag is neither 0 nor 1")),
        }
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn len(&mut self) -> io::Result<usize> {
        usize::try_from(self.u32()?).map_err(|_| malformed("length"))
    }
    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }
    fn cstr(&mut self) -> io::Result<CString> {
        CString::new(self.bytes()?).map_err(|_| malformed("a string holds a NUL"))
    }
    fn cstrs(&mut self) -> io::Result<Vec<CString>> {
        let n = self.len()?;
        (0..n).map(|_| self.cstr()).collect()
    }
    fn fd(&mut self) -> io::Result<OwnedFd> {
        let i = self.len()?;
        self.fds.get_mut(i).and_then(Option::take).ok_or_else(|| malformed("a descriptor is missing or used twice"))
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<Option<T>> {
        match self.flag()? {
            false => Ok(None),
            true => f(self).map(Some),
        }
    }
    fn stack(&mut self) -> io::Result<Stack> {
        let bytes = self.len()?;
        Stack::new(bytes)
    }
    fn program(&mut self) -> io::Result<Vec<SockFilter>> {
        let n = self.len()?;
        (0..n)
            .map(|_| {
                let code = u16::from_le_bytes(self.take(2)?.try_into().unwrap_or_default());
                Ok(SockFilter { code, jt: self.u8()?, jf: self.u8()?, k: self.u32()? })
            })
            .collect()
    }
}

/// Writes `spec` for the spawner. Every field is named (no `..`): a field
/// added to [`ChildSpec`] does not compile until it travels.
fn encode(spec: &ChildSpec, w: &mut Writer) {
    let ChildSpec {
        exe,
        argv,
        envp,
        late_env,
        cwd,
        id_maps,
        go,
        cgroup_namespace,
        mounts,
        tree_slots,
        sysctls,
        loopback_up,
        proxy_listener,
        dns_sockets,
        hostname,
        rlimits,
        drop_capabilities,
        last_cap,
        landlock,
        landlock_flags,
        seccomp,
        egress,
        stdio,
        terminal,
        report,
        status,
        lifeline,
        supervision,
        command_stack,
        trace,
        kill_request,
    } = spec;
    w.cstr(exe);
    w.cstrs(argv.items());
    w.cstrs(envp.items());
    w.opt(late_env.as_ref(), |w, l| {
        let (name, value) = l.name_and_value();
        w.bytes(&name);
        w.bytes(&value);
    });
    w.opt(cwd.as_ref(), Writer::cstr);
    w.opt(id_maps.as_ref(), |w, (u, g)| {
        w.bytes(u);
        w.bytes(g);
    });
    w.opt(go.as_ref(), Writer::fd);
    w.flag(*cgroup_namespace);
    w.len(mounts.len());
    for m in mounts {
        encode_mount(m, w);
    }
    w.len(tree_slots.len());
    w.len(sysctls.len());
    for (path, value) in sysctls {
        w.cstr(path);
        w.cstr(value);
    }
    w.flag(*loopback_up);
    w.opt(proxy_listener.as_ref(), |w, (fd, port)| {
        w.fd(fd);
        w.u32(u32::from(*port));
    });
    w.opt(dns_sockets.as_ref(), Writer::fd);
    w.opt(hostname.as_ref(), Writer::cstr);
    w.len(rlimits.len());
    for (resource, limit) in rlimits {
        w.i32(*resource);
        w.u64(limit.rlim_cur);
        w.u64(limit.rlim_max);
    }
    w.flag(*drop_capabilities);
    w.i32(*last_cap);
    w.opt(landlock.as_ref(), |w, (fd, rules)| {
        w.fd(fd);
        w.len(rules.len());
        for LateRule { path, access, file_access } in rules {
            w.cstr(path);
            w.u64(*access);
            w.u64(*file_access);
        }
    });
    w.u32(*landlock_flags);
    w.opt(seccomp.as_ref(), Writer::fd);
    w.opt(egress.as_ref(), |w, e| {
        let EgressChild { listener_channel, helper_channel, helper_filter, helper_stack } = e;
        w.fd(listener_channel);
        w.fd(helper_channel);
        w.program(helper_filter);
        w.stack(helper_stack);
    });
    for fd in stdio {
        w.opt(fd.as_ref(), Writer::fd);
    }
    match terminal {
        ChildTerminal::Detached => w.u8(0),
        ChildTerminal::Allocate { channel, size, stderr } => {
            w.u8(1);
            w.fd(channel);
            w.u32(u32::from(size.0));
            w.u32(u32::from(size.1));
            w.flag(*stderr == PtyStderr::Pty);
        }
        ChildTerminal::Given => w.u8(2),
    }
    w.fd(report);
    w.opt(status.as_ref(), Writer::fd);
    w.opt(lifeline.as_ref(), Writer::fd);
    w.flag(*supervision == Supervision::Init);
    w.stack(command_stack);
    w.opt(trace.as_ref(), Writer::fd);
    w.i32(*kill_request);
}

fn encode_mount(m: &MountOp, w: &mut Writer) {
    match m {
        MountOp::Mount { src, target, fstype, flags, data } => {
            w.u8(0);
            [src, target, fstype].into_iter().for_each(|s| w.cstr(s));
            w.u64(*flags);
            w.cstr(data);
        }
        MountOp::SetAttr { path, attr, recursive } => {
            w.u8(1);
            w.cstr(path);
            w.u64(*attr);
            w.flag(*recursive);
        }
        MountOp::CloneTree { path, slot } => {
            w.u8(2);
            w.cstr(path);
            w.len(*slot);
        }
        MountOp::AttachTree { slot, target, attr } => {
            w.u8(3);
            w.len(*slot);
            w.cstr(target);
            w.u64(*attr);
        }
        MountOp::Mkdir { path, mode } => {
            w.u8(4);
            w.cstr(path);
            w.u32(*mode);
        }
        MountOp::Touch { path } => {
            w.u8(5);
            w.cstr(path);
        }
        MountOp::Symlink { target, path } => {
            w.u8(6);
            w.cstr(target);
            w.cstr(path);
        }
        MountOp::WriteFile { path, contents } => {
            w.u8(7);
            w.cstr(path);
            w.bytes(contents);
        }
        MountOp::Chdir { path } => {
            w.u8(8);
            w.cstr(path);
        }
        MountOp::PivotRoot { new_root, put_old } => {
            w.u8(9);
            w.cstr(new_root);
            w.cstr(put_old);
        }
        MountOp::Detach { path } => {
            w.u8(10);
            w.cstr(path);
        }
    }
}

fn decode_mount(r: &mut Reader<'_>) -> io::Result<MountOp> {
    Ok(match r.u8()? {
        0 => MountOp::Mount { src: r.cstr()?, target: r.cstr()?, fstype: r.cstr()?, flags: r.u64()?, data: r.cstr()? },
        1 => MountOp::SetAttr { path: r.cstr()?, attr: r.u64()?, recursive: r.flag()? },
        2 => MountOp::CloneTree { path: r.cstr()?, slot: r.len()? },
        3 => MountOp::AttachTree { slot: r.len()?, target: r.cstr()?, attr: r.u64()? },
        4 => MountOp::Mkdir { path: r.cstr()?, mode: r.u32()? },
        5 => MountOp::Touch { path: r.cstr()? },
        6 => MountOp::Symlink { target: r.cstr()?, path: r.cstr()? },
        7 => MountOp::WriteFile { path: r.cstr()?, contents: r.bytes()? },
        8 => MountOp::Chdir { path: r.cstr()? },
        9 => MountOp::PivotRoot { new_root: r.cstr()?, put_old: r.cstr()? },
        10 => MountOp::Detach { path: r.cstr()? },
        _ => return Err(malformed("unknown mount step")),
    })
}

/// Reads a request [`encode`] wrote (after its clone flags), taking its
/// descriptors from `fds`. Every descriptor must be used exactly once.
fn decode(buf: &[u8], fds: Vec<OwnedFd>) -> io::Result<(libc::c_int, ChildSpec)> {
    let mut r = Reader { buf, at: 0, fds: fds.into_iter().map(Some).collect() };
    let namespaces = r.i32()?;
    let exe = r.cstr()?;
    let argv = r.cstrs()?;
    let envp = r.cstrs()?;
    let late_env = r.opt(|r| {
        let name = String::from_utf8(r.bytes()?).map_err(|_| malformed("late variable name"))?;
        let value = r.bytes()?;
        LateEnv::new(&name, &value).ok_or_else(|| malformed("late variable"))
    })?;
    let cwd = r.opt(Reader::cstr)?;
    let id_maps = r.opt(|r| Ok((r.bytes()?, r.bytes()?)))?;
    let go = r.opt(Reader::fd)?;
    let cgroup_namespace = r.flag()?;
    let n = r.len()?;
    let mounts = (0..n).map(|_| decode_mount(&mut r)).collect::<io::Result<Vec<_>>>()?;
    let tree_slots = (0..r.len()?).map(|_| AtomicI32::new(-1)).collect();
    let n = r.len()?;
    let sysctls = (0..n).map(|_| Ok((r.cstr()?, r.cstr()?))).collect::<io::Result<Vec<_>>>()?;
    let loopback_up = r.flag()?;
    let proxy_listener = r.opt(|r| {
        let fd = r.fd()?;
        Ok((fd, u16::try_from(r.u32()?).map_err(|_| malformed("proxy port"))?))
    })?;
    let dns_sockets = r.opt(Reader::fd)?;
    let hostname = r.opt(Reader::cstr)?;
    let n = r.len()?;
    let rlimits = (0..n)
        .map(|_| Ok((r.i32()?, libc::rlimit { rlim_cur: r.u64()?, rlim_max: r.u64()? })))
        .collect::<io::Result<Vec<_>>>()?;
    let drop_capabilities = r.flag()?;
    let last_cap = r.i32()?;
    let landlock = r.opt(|r| {
        let fd = r.fd()?;
        let n = r.len()?;
        let rules = (0..n)
            .map(|_| Ok(LateRule { path: r.cstr()?, access: r.u64()?, file_access: r.u64()? }))
            .collect::<io::Result<Vec<_>>>()?;
        Ok((fd, rules))
    })?;
    let landlock_flags = r.u32()?;
    let seccomp = r.opt(Reader::fd)?;
    let egress = r.opt(|r| {
        Ok(EgressChild {
            listener_channel: r.fd()?,
            helper_channel: r.fd()?,
            helper_filter: r.program()?,
            helper_stack: r.stack()?,
        })
    })?;
    let stdio = [r.opt(Reader::fd)?, r.opt(Reader::fd)?, r.opt(Reader::fd)?, r.opt(Reader::fd)?];
    let terminal = match r.u8()? {
        0 => ChildTerminal::Detached,
        1 => {
            let channel = r.fd()?;
            let rows = u16::try_from(r.u32()?).map_err(|_| malformed("pty rows"))?;
            let cols = u16::try_from(r.u32()?).map_err(|_| malformed("pty columns"))?;
            let stderr = if r.flag()? { PtyStderr::Pty } else { PtyStderr::Inherit };
            ChildTerminal::Allocate { channel, size: (rows, cols), stderr }
        }
        2 => ChildTerminal::Given,
        _ => return Err(malformed("unknown terminal")),
    };
    let report = r.fd()?;
    let status = r.opt(Reader::fd)?;
    let lifeline = r.opt(Reader::fd)?;
    let supervision = if r.flag()? { Supervision::Init } else { Supervision::Direct };
    let command_stack = r.stack()?;
    let trace = r.opt(Reader::fd)?;
    let kill_request = r.i32()?;
    if r.at != buf.len() || r.fds.iter().any(Option::is_some) {
        return Err(malformed("bytes or descriptors left over"));
    }
    let envp = CStringArray::with_late(envp, late_env.as_ref());
    let spec = ChildSpec {
        exe,
        argv: CStringArray::new(argv),
        envp,
        late_env,
        cwd,
        id_maps,
        go,
        cgroup_namespace,
        mounts,
        tree_slots,
        sysctls,
        loopback_up,
        proxy_listener,
        dns_sockets,
        hostname,
        rlimits,
        drop_capabilities,
        last_cap,
        landlock,
        landlock_flags,
        seccomp,
        egress,
        stdio,
        terminal,
        report,
        status,
        lifeline,
        supervision,
        command_stack,
        trace,
        kill_request,
    };
    Ok((namespaces, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    /// A spec with every optional part present and every variant kind.
    fn full_spec() -> ChildSpec {
        let (r, _w) = super::super::pipe().unwrap();
        let fd = || r.try_clone().unwrap();
        let late = LateEnv::new("TRACEPARENT", &[b'0'; crate::sys::child::LATE_ENV_BYTES]).unwrap();
        let envp = CStringArray::with_late(vec![c("A=1"), c("B=2")], Some(&late));
        let insn = |k| SockFilter { code: 6, jt: 1, jf: 2, k };
        ChildSpec {
            exe: c("/bin/sh"),
            argv: CStringArray::new(vec![c("sh"), c("-c"), c("true")]),
            envp,
            late_env: Some(late),
            cwd: Some(c("/work")),
            id_maps: Some((b"0 0 1\n".to_vec(), b"0 0 1\n".to_vec())),
            go: Some(fd()),
            cgroup_namespace: true,
            mounts: vec![
                MountOp::Mount { src: c("tmpfs"), target: c("/r"), fstype: c("tmpfs"), flags: 6, data: c("size=1m") },
                MountOp::SetAttr { path: c("/r"), attr: 1, recursive: true },
                MountOp::CloneTree { path: c("/usr"), slot: 0 },
                MountOp::AttachTree { slot: 0, target: c("/r/usr"), attr: 3 },
                MountOp::Mkdir { path: c("/r/tmp"), mode: 0o1777 },
                MountOp::Touch { path: c("/r/f") },
                MountOp::Symlink { target: c("usr/bin"), path: c("/r/bin") },
                MountOp::WriteFile { path: c("/r/etc/hosts"), contents: b"127.0.0.1 x\n".to_vec() },
                MountOp::Chdir { path: c("/r") },
                MountOp::PivotRoot { new_root: c("."), put_old: c(".") },
                MountOp::Detach { path: c(".") },
            ],
            tree_slots: vec![AtomicI32::new(-1)],
            sysctls: vec![(c("/proc/sys/net/ipv4/ping_group_range"), c("0 0"))],
            loopback_up: true,
            proxy_listener: Some((fd(), 3128)),
            dns_sockets: Some(fd()),
            hostname: Some(c("cordon")),
            rlimits: vec![(libc::RLIMIT_NOFILE as libc::c_int, libc::rlimit { rlim_cur: 64, rlim_max: 128 })],
            drop_capabilities: true,
            last_cap: 40,
            landlock: Some((fd(), vec![LateRule { path: c("/tmp"), access: 7, file_access: 3 }])),
            landlock_flags: 0,
            seccomp: Some(fd()),
            egress: Some(EgressChild {
                listener_channel: fd(),
                helper_channel: fd(),
                helper_filter: vec![insn(4)],
                helper_stack: Stack::new(4096).unwrap(),
            }),
            stdio: [Some(fd()), None, Some(fd()), Some(fd())],
            terminal: ChildTerminal::Allocate { channel: fd(), size: (24, 80), stderr: PtyStderr::Pty },
            report: fd(),
            status: Some(fd()),
            lifeline: Some(fd()),
            supervision: Supervision::Init,
            command_stack: Stack::new(8192).unwrap(),
            trace: Some(fd()),
            kill_request: 64,
        }
    }

    fn encoded(namespaces: libc::c_int, spec: &ChildSpec) -> Writer {
        let mut w = Writer::default();
        w.i32(namespaces);
        encode(spec, &mut w);
        w
    }

    fn copies(fds: &[RawFd]) -> Vec<OwnedFd> {
        // SAFETY: the spec owns these descriptors and lives across the call.
        fds.iter().map(|fd| unsafe { BorrowedFd::borrow_raw(*fd) }.try_clone_to_owned().unwrap()).collect()
    }

    /// What the spawner decodes is the spec the service encoded: it
    /// encodes to the same bytes and descriptor order, every descriptor
    /// used; the late environment entry is kept. Controls: a request cut
    /// short, a descriptor missing and one left over are refused.
    /// A program that does not serve as a spawner (this test harness,
    /// which refuses the spawner's argument) fails the start with the
    /// reason and the fix, and leaves no process behind: the child is
    /// killed and reaped.
    #[test]
    fn a_program_without_the_spawner_entry_fails_the_start_and_leaves_nothing() {
        let e = Spawner::start().expect_err("the test harness is no spawner");
        let message = e.to_string();
        assert!(message.contains("ended before it was ready"), "{message}");
        assert!(message.contains("cordon::spawner_entry()"), "{message}");
        // The child ran this harness as `/proc/self/exe` (named `exe`):
        // no child of that name is left, not even a zombie.
        let children = |comm: &str| -> Vec<String> {
            let tasks = std::fs::read_dir("/proc/self/task").unwrap();
            let pids: Vec<String> = tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
                .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect();
            pids.into_iter()
                .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm))
                .collect()
        };
        assert_eq!(children("exe"), Vec::<String>::new(), "the failed spawner was left behind");
    }

    #[test]
    fn a_spec_travels_whole_and_a_malformed_request_is_refused() {
        let spec = full_spec();
        let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWPID;
        let w = encoded(flags, &spec);
        let mut held = vec![];
        spec.for_each_fd(|fd| held.push(fd.as_raw_fd()));
        held.sort_unstable();
        let mut sent = w.fds.clone();
        sent.sort_unstable();
        assert_eq!((sent.len(), sent), (15, held), "every descriptor the spec holds travels, once");
        let (namespaces, back) = decode(&w.buf, copies(&w.fds)).unwrap();
        assert_eq!(namespaces, flags);
        let again = encoded(namespaces, &back);
        assert_eq!(again.buf, w.buf);
        assert_eq!(again.fds.len(), w.fds.len());
        assert_eq!(back.envp.items().len(), 2);
        let late = back.late_env.as_ref().map(LateEnv::name_and_value);
        assert_eq!(late, Some((b"TRACEPARENT".to_vec(), vec![b'0'; crate::sys::child::LATE_ENV_BYTES])));
        assert_eq!(back.tree_slots.len(), 1);
        assert_eq!(back.command_stack.range().len(), spec.command_stack.range().len());

        let short = decode(&w.buf[..w.buf.len() - 1], copies(&w.fds)).map(|_| ()).unwrap_err();
        assert!(short.to_string().contains("too short"), "{short}");
        let missing = decode(&w.buf, copies(&w.fds[..14])).map(|_| ()).unwrap_err();
        assert!(missing.to_string().contains("descriptor is missing"), "{missing}");
        let mut extra = w.fds.clone();
        extra.push(w.fds[0]);
        let left = decode(&w.buf, copies(&extra)).map(|_| ()).unwrap_err();
        assert!(left.to_string().contains("left over"), "{left}");
    }
}
