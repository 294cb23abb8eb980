//! `spawn`: applies a [`Plan`] to a new child process and starts the command.
//!
//! The recipe, in the order the child runs it (see `sys::child`):
//!
//! ```text
//! clone(user, pid, net, mount, ipc, uts namespaces)   // one syscall, all at once
//! init:    new process group; write id maps; join the run's cgroups, then unshare
//!          the cgroup namespace (so it is rooted there); bring up loopback;
//!          set the host name; write the run's namespace sysctls; build the
//!          container root and pivot into it (process mode: make the host's
//!          mounts read-only and bind the grants on top); allocate the pty
//!          (from the run's own devpts); fork the command
//! command: stdio (the pty as controlling terminal of a new session); chdir;
//!          rlimits; drop capabilities; no_new_privs; landlock (late rules,
//!          restrict_self); close fds;
//!          seccomp; execve
//! ```
//!
//! cgroups come before the root is built (the cgroup files are opened by the
//! parent, before the clone, so nothing needs `/sys` inside); seccomp comes
//! last so it may deny every syscall used before it.

pub mod cgroups;
pub mod landlock;
pub mod links;
pub mod mount_table;
pub mod mounts;
pub mod pin;
pub mod seccomp;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::plan::{Egress, FsAccess, HostSockets, Namespace, Plan, RlimitKind, TerminalPlan};
use crate::policy::Mode;
pub use crate::sys::child::PtyStderr;
pub use crate::sys::child::LATE_ENV_BYTES;
use crate::sys::child::{
    CStringArray, ChildFailure, ChildMark, ChildSpec, ChildStage, ChildTerminal, EgressChild, GoMessage, LateEnv,
    LateRule, MarkRecord, MountOp, SpecMemory, StatusRecord, Supervision, TerminalStep,
};
pub use crate::sys::tty::WindowSize;
use crate::sys::{self, Reaped};
use crate::system_entries::SystemEntries;

pub use cgroups::{CgroupStats, CpuTimes, RunCgroups};

/// What to run: the program, resolved before the clone.
#[derive(Clone, Debug)]
pub struct Command {
    /// Absolute path of the executable.
    pub program: PathBuf,
    /// argv, including argv\[0\].
    pub args: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    /// A variable of `env` whose value, exactly [`LATE_ENV_BYTES`] long, a
    /// parked sandbox's start may replace ([`Go::late_env`]): the
    /// `traceparent` of a plugin run. `None`: the environment is final.
    pub late_env: Option<String>,
}

/// What starts a parked sandbox ([`Parked::start`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Go {
    /// Replaces the value of [`Command::late_env`]; `None` keeps the one
    /// given at park.
    pub late_env: Option<[u8; LATE_ENV_BYTES]>,
}

/// Descriptors the command gets instead of cordon's own: stdin, stdout,
/// stderr, and an optional fd 3. `None` inherits cordon's (nothing, for 3).
/// The caller keeps the other ends.
#[derive(Debug, Default)]
pub struct Stdio {
    /// fd 0.
    pub stdin: Option<OwnedFd>,
    /// fd 1.
    pub stdout: Option<OwnedFd>,
    /// fd 2.
    pub stderr: Option<OwnedFd>,
    /// fd 3 (a plugin handler's result channel).
    pub fd3: Option<OwnedFd>,
    /// The command's pty, when the plan has one ([`TerminalPlan::Pty`]): it
    /// replaces stdin and stdout (and stderr, per [`PtyRequest::stderr`]).
    pub pty: Option<PtyRequest>,
}

/// A pty for the command; the caller relays its master
/// ([`Running::pty_master`]).
#[derive(Clone, Copy, Debug)]
pub struct PtyRequest {
    /// Its initial window size.
    pub size: WindowSize,
    /// Where the command's stderr goes.
    pub stderr: PtyStderr,
}

/// Setting up the sandbox failed before the command started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// Building the Landlock ruleset failed.
    #[error(transparent)]
    Landlock(#[from] landlock::LandlockError),
    /// Compiling the seccomp filters failed.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// Creating the run's cgroups failed.
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    /// A pipe or the clone itself failed.
    #[error("failed to {what}")]
    Os {
        /// The step.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A string for the child contains a NUL byte.
    #[error("{what} contains a NUL byte: {value:?}")]
    Nul {
        /// Which argument.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// [`Command::late_env`] names no variable of the environment whose
    /// value has [`LATE_ENV_BYTES`] bytes.
    #[error("the late environment variable {name} is not set to a value of {LATE_ENV_BYTES} bytes")]
    LateEnv {
        /// The name.
        name: String,
    },
    /// A step in the child failed.
    #[error("sandbox setup failed at {stage}{detail}")]
    Child {
        /// The step.
        stage: &'static str,
        /// Which mount or rule, when the stage has several.
        detail: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The sandbox spawner ([`start_spawner`]) is gone: no sandbox can be
    /// cloned in this process any more.
    #[error("cannot start a sandbox")]
    SpawnerGone {
        /// What the channel to the spawner said.
        #[source]
        source: io::Error,
    },
    /// A denied file has hard links that are not denied: another link in a
    /// granted folder would read it (a deny hides paths, not the file).
    #[error("the denied file {path} has {links} hard links, and the run denies only {denied} of them: a run could read it through another")]
    DeniedFileLinked {
        /// The denied path.
        path: PathBuf,
        /// Its link count.
        links: u64,
        /// How many of the run's denied paths name it.
        denied: usize,
    },
    /// A denied path lies inside a grant that sits below a folder the run
    /// has a broad Landlock rule on (its own `/tmp` or `/dev/shm`): Landlock
    /// walks up across mounts, so that rule covers the grant, and only the
    /// mask over the denied path would hold it (review s9 F1).
    #[error(
        "the denied path {} lies inside the grant {}, which is below {folder}: the run's own {folder} has a write rule that covers every grant mounted below it, so nothing but a mask would keep the run out of the denied path, and a rename of a folder above it (by the run, or on the host) lifts the mask",
        deny.display(), grant.display(), folder = folder.display()
    )]
    DenyInsidePrivateFolder {
        /// The denied path (a deny, or cordon's own state carved out of the grant).
        deny: PathBuf,
        /// The grant around it.
        grant: PathBuf,
        /// The run's own folder with the broad rule (`/tmp`, `/dev/shm`).
        folder: PathBuf,
    },
    /// A sandboxed command would get, as fd 0, 1 or 2, a descriptor that
    /// reaches past the run's rules. A socket that is not a connected unix
    /// stream (or seqpacket) one lives in the caller's network namespace,
    /// and the kernel uses it there: a UDP socket sends to any address, an
    /// unconnected (or disconnected) TCP socket connects anywhere past the
    /// proxy, a unix datagram or unconnected stream socket addresses host
    /// sockets by path, a listening one accepts the host's connections
    /// (review s9 F2, s10 R1). A directory lets the command change the mode
    /// and times of what it holds (`fchmodat`, `utimensat` relative to it,
    /// on the caller's mount), which no rule covers; a block device is no
    /// stdio (review s10 R4).
    #[error("fd {fd} of the command is {what}")]
    UnsafeStdio {
        /// 0, 1 or 2.
        fd: u8,
        /// What the descriptor is, and why it cannot be handed over.
        what: String,
    },
    /// The command could not be executed.
    #[error("cannot execute {program}")]
    Exec {
        /// The program.
        program: PathBuf,
        /// The errno from execve.
        #[source]
        source: io::Error,
    },
}

impl SpawnError {
    /// A suggestion for the user, where there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            SpawnError::Exec { source, .. } if source.raw_os_error() == Some(libc::EACCES) => {
                Some("the file exists but is not executable inside the sandbox; grant its folder with --read".into())
            }
            SpawnError::Exec { source, .. } if source.raw_os_error() == Some(libc::ENOENT) => {
                Some("the program (or its interpreter or libraries) is not visible inside the sandbox; grant its folder with --read".into())
            }
            SpawnError::Child { stage: "terminal", .. } => Some("run with --tty (a pty of the run's own), or redirect the command's stdin, stdout and stderr away from the terminal".into()),
            SpawnError::Child { stage: "mount", .. } => Some("run `cordon doctor`; the host may forbid mounts in user namespaces (e.g. a masked /proc)".into()),
            SpawnError::SpawnerGone { .. } => Some(
                "the process that clones sandboxes for this service was killed; restart the service (it is not restarted by itself)".into(),
            ),
            SpawnError::Cgroup(_) => Some("run `cordon doctor` to see which cgroup controllers are usable".into()),
            SpawnError::DeniedFileLinked { path, .. } => Some(format!(
                "deny every link of it too (`find / -xdev -samefile {}` lists them), or remove the links it does not need",
                path.display()
            )),
            SpawnError::UnsafeStdio { .. } => Some(
                "give the command a pipe, a file or a terminal there (e.g. `… | cordon run …` or `cordon run … | …` instead of the socket), or a connected unix stream socket".into(),
            ),
            SpawnError::DenyInsidePrivateFolder { folder, .. } => Some(format!(
                "move the granted folder out of {} (e.g. to /var/tmp), or drop the deny; if the denied path is cordon's audit log or state folder, keep it out of the grant (--audit-log elsewhere)",
                folder.display()
            )),
            SpawnError::Landlock(landlock::LandlockError::LinkAppeared { .. }) => Some(
                "the plugin folder changed after its paths were resolved; see where the link points, remove it, and run `cordon check` again".into(),
            ),
            _ => None,
        }
    }
}

fn os(what: &'static str) -> impl FnOnce(io::Error) -> SpawnError {
    move |source| SpawnError::Os { what, source }
}

fn cstring(what: &'static str, s: impl Into<Vec<u8>>) -> Result<CString, SpawnError> {
    let v = s.into();
    CString::new(v.clone()).map_err(|_| SpawnError::Nul { what, value: String::from_utf8_lossy(&v).into_owned() })
}

/// A started sandbox.
#[derive(Debug)]
pub struct Running {
    /// Pid of the child (init, or the command in dev mode), in cordon's namespace.
    pub pid: libc::pid_t,
    /// pidfd of that child.
    pub pidfd: OwnedFd,
    /// Before `cgroups`: it must be gone before they can be removed.
    _socket_maker: Option<SocketMaker>,
    /// The run's cgroups.
    pub cgroups: RunCgroups,
    /// The listening socket inside the sandbox's network namespace, for the
    /// proxy to serve.
    pub proxy_listener: Option<OwnedFd>,
    /// The master of the command's pty, for the caller to relay.
    pub pty_master: Option<OwnedFd>,
    /// Transparent egress: what the supervisor serves, with [`Egress::Kernel`].
    pub egress: Option<SandboxEgress>,
    /// The channel to the run's socket maker (see `sys::sockets`), when the
    /// run allows a host and has a memory cgroup: sockets made (or
    /// accepted) there are charged to it. For transparent egress's
    /// supervisor or the proxy, whichever the run has.
    pub sockets: Option<OwnedFd>,
    status: Option<OwnedFd>,
    supervision: Supervision,
    _lifeline: Option<OwnedFd>,
    spec_memory: SpecMemory,
}

/// The supervisor's ends of transparent egress (see `cordon-egress`).
#[derive(Debug)]
pub struct SandboxEgress {
    /// The seccomp notification listener of the command's filter: every
    /// `connect()` of the sandbox waits here for an answer.
    pub listener: OwnedFd,
    /// The supervisor's end of the connect helper's channel (see
    /// `sys::helper`): connects that must run in the sandbox's context.
    pub helper: OwnedFd,
    /// The stub DNS's UDP socket, bound to the sandbox's 127.0.0.1:53.
    pub dns_udp: OwnedFd,
    /// The stub DNS's TCP listener, on the sandbox's 127.0.0.1:53.
    pub dns_tcp: OwnedFd,
}

/// The run's socket maker (see `sys::sockets`), in the run's cgroups.
/// Killed and reaped on drop.
#[derive(Debug)]
struct SocketMaker(sys::Spawned);

impl SocketMaker {
    /// Starts it and moves it into the run's cgroups (with a place of its
    /// own in the pids quota). Returns it and the caller's end of its
    /// channel.
    fn start(cgroups: &mut RunCgroups) -> Result<(SocketMaker, OwnedFd), SpawnError> {
        let (ours, theirs) = sys::seqpacket_pair().map_err(os("create the socket maker's channel"))?;
        let maker =
            SocketMaker(sys::sockets::spawn_socket_maker(theirs.as_fd()).map_err(os("start the socket maker"))?);
        drop(theirs);
        // It shares the run's cgroup with the command: the out-of-memory
        // killer should pick the command, not the maker (whose resident
        // set counts cordon's pages). Best effort: lowering it needs
        // CAP_SYS_RESOURCE; a maker killed makes later connects fail with
        // ENOBUFS, never made outside the run's cgroup.
        let _ = std::fs::write(format!("/proc/{}/oom_score_adj", maker.0.pid), "-1000");
        cgroups.admit_helper(maker.0.pid)?;
        Ok((maker, ours))
    }
}

impl Drop for SocketMaker {
    fn drop(&mut self) {
        let _ = sys::pidfd_send_signal(self.0.pidfd.as_fd(), libc::SIGKILL);
        let _ = sys::wait4(self.0.pid);
    }
}

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitStatus {
    fn from_raw(status: libc::c_int) -> Self {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        }
    }
}

/// The end of a run: the command's status and the kernel's accounting.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    /// The command's exit. `None` when init itself was killed (timeout).
    pub status: Option<ExitStatus>,
    /// How the cloned child (init, or the command in dev mode) exited, when
    /// it was waited for; `None` when init reported the command's end
    /// before its own exit (see [`Running::end`]).
    pub child: Option<ExitStatus>,
    /// rusage of every reaped process of the run (with init's report: up to
    /// that report, init's exit not included).
    pub usage: Reaped,
}

/// What is left of a run once its command's end is known
/// ([`Running::end`]): init, still tearing its namespaces down (the mount
/// tree, the network namespace, an RCU grace period), the socket maker and
/// the run's cgroups. No process of the run but init is left, and init
/// runs only cordon's `_exit`. Dropping it waits for init's exit and reaps
/// it, then removes the cgroups, as [`Running::reap`] does at once: hold it
/// across work that does not need the sandbox gone (the audit record),
/// and drop it before the caller's own end.
#[derive(Debug)]
#[must_use = "dropping it waits for init's exit; hold it only across other work"]
pub struct Teardown {
    pid: libc::pid_t,
    wait: TeardownWait,
    /// Declared before the cgroups: dropped (killed, reaped) first.
    _socket_maker: Option<SocketMaker>,
    _cgroups: RunCgroups,
    _lifeline: Option<OwnedFd>,
    _pidfd: OwnedFd,
    /// What the sandbox's spec kept in memory: freed after init's exit
    /// (this struct's `drop` waits for it first), when no page of it is
    /// shared with init any more.
    _spec_memory: SpecMemory,
}

/// Whether a [`Teardown`] still has init to reap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TeardownWait {
    /// Init reported and is exiting: `wait4` it on drop.
    Init,
    /// Already reaped.
    Done,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if self.wait == TeardownWait::Init {
            let _ = sys::wait4(self.pid);
        }
        crate::trace::step("runner: sandbox torn down");
    }
}

impl Running {
    /// Sends `signal` to the run: to init, which forwards SIGTERM-like signals
    /// to every process; SIGKILL to init ends the whole pid namespace. In dev
    /// mode, to the command's process group.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        match self.supervision {
            Supervision::Init => sys::pidfd_send_signal(self.pidfd.as_fd(), signal),
            Supervision::Direct => sys::kill_process_group(self.pid, signal),
        }
    }

    /// Asks the run to end now: init kills and reaps every process (keeping
    /// their accounting) and exits; in dev mode the process group gets
    /// SIGKILL. If init does not exit soon, [`Running::signal`] with SIGKILL
    /// ends it the hard way.
    pub fn kill(&self) -> io::Result<()> {
        match self.supervision {
            Supervision::Init => sys::pidfd_send_signal(self.pidfd.as_fd(), KILL_REQUEST),
            Supervision::Direct => sys::kill_process_group(self.pid, libc::SIGKILL),
        }
    }

    /// Init's status pipe: readable (its [`StatusRecord`], or end of file
    /// if init died without one) once the command has ended and every
    /// other process of the run is reaped. `None` in dev mode: the pidfd
    /// tells.
    pub fn status_fd(&self) -> Option<BorrowedFd<'_>> {
        self.status.as_ref().map(|fd| fd.as_fd())
    }

    /// Waits for the child (which must have exited or be about to) and
    /// returns how the command ended, with the sandbox torn down.
    pub fn reap(self) -> io::Result<Finished> {
        self.end().map(|(finished, _torn_down_here)| finished)
    }

    /// Returns how the command ended (the run must be over, or about to
    /// be: [`Running::status_fd`] or the pidfd readable) as soon as init
    /// has reported it, and the rest of the run ([`Teardown`]) whose drop
    /// waits for init's exit. Without a report (dev mode; init killed
    /// before it wrote one) the child is waited for here, and the teardown
    /// has only the cgroups left.
    pub fn end(self) -> io::Result<(Finished, Teardown)> {
        let reported = match (self.supervision, &self.status) {
            (Supervision::Init, Some(fd)) => {
                let mut buf = [0u8; StatusRecord::SIZE];
                read_exact_or_eof(fd, &mut buf)?.then(|| StatusRecord::from_bytes(&buf))
            }
            _ => None,
        };
        let (finished, wait) = match reported {
            Some(r) => {
                let usage = Reaped { status: r.status, user_us: r.user_us, sys_us: r.sys_us, max_rss_kb: r.max_rss_kb };
                (Finished { status: Some(ExitStatus::from_raw(r.status)), child: None, usage }, TeardownWait::Init)
            }
            None => {
                let usage = sys::wait4(self.pid)?;
                let child = ExitStatus::from_raw(usage.status);
                let status = (self.supervision == Supervision::Direct).then_some(child);
                if self.supervision == Supervision::Direct {
                    // Anything the command left behind in its group goes too.
                    let _ = sys::kill_process_group(self.pid, libc::SIGKILL);
                }
                (Finished { status, child: Some(child), usage }, TeardownWait::Done)
            }
        };
        let teardown = Teardown {
            pid: self.pid,
            wait,
            _socket_maker: self._socket_maker,
            _cgroups: self.cgroups,
            _lifeline: self._lifeline,
            _pidfd: self.pidfd,
            _spec_memory: self.spec_memory,
        };
        Ok((finished, teardown))
    }
}

fn read_exact_or_eof(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::from(fd.try_clone()?);
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The host name inside a UTS namespace.
const SANDBOX_HOSTNAME: &str = "cordon";

/// Stack of the command's process before exec: a few frames of syscalls.
const COMMAND_STACK_BYTES: usize = 64 * 1024;

/// Stack of the connect helper: its loop keeps one request (under 200
/// bytes) and a control buffer.
const HELPER_STACK_BYTES: usize = 32 * 1024;

/// The real-time signal that asks init to end the run (see `sys::child`).
const KILL_REQUEST: libc::c_int = 64;

fn clone_flags(ns: &[Namespace]) -> libc::c_int {
    ns.iter()
        .map(|n| match n {
            Namespace::User => libc::CLONE_NEWUSER,
            Namespace::Pid => libc::CLONE_NEWPID,
            // Made by init's network helper beside the mounts
            // (`ChildSpec::loopback_up`), not in this clone.
            Namespace::Net => 0,
            Namespace::Mount => libc::CLONE_NEWNS,
            Namespace::Ipc => libc::CLONE_NEWIPC,
            Namespace::Uts => libc::CLONE_NEWUTS,
            // Entered by init after it has joined the run's cgroups.
            Namespace::Cgroup => 0,
        })
        .fold(0, |a, b| a | b)
}

fn rlimit_resource(kind: RlimitKind) -> libc::c_int {
    (match kind {
        RlimitKind::Data => libc::RLIMIT_DATA,
        RlimitKind::Cpu => libc::RLIMIT_CPU,
        RlimitKind::Fsize => libc::RLIMIT_FSIZE,
        RlimitKind::Nproc => libc::RLIMIT_NPROC,
        RlimitKind::Core => libc::RLIMIT_CORE,
    }) as libc::c_int
}

/// The sandbox spawner of this process, once [`start_spawner`] started it.
static SPAWNER: std::sync::OnceLock<sys::spawner::Spawner> = std::sync::OnceLock::new();

/// From now on every sandbox of this process ([`park`], [`spawn`]) is
/// cloned by a small single-threaded spawner process started here (see
/// `sys::spawner`) instead of from this process: a sandbox's init then
/// shares none of this process's memory, which matters for a big
/// multi-threaded service that keeps sandboxes alive (copy-on-write
/// faults, TLB shootdowns, page-table copies). The spawner is this very
/// program started afresh (`/proc/self/exe`, empty environment), so it
/// holds none of this process's secrets or environment: **the program's
/// `main` must call [`spawner_entry`] first thing**. The sandboxes stay
/// this process's children (`CLONE_PARENT`); their death signal follows
/// the thread that called this (call it from the main thread). At most
/// once. Fails closed: once the spawner is gone, every park fails with
/// [`SpawnError::SpawnerGone`], never falling back to cloning here.
pub fn start_spawner() -> io::Result<libc::pid_t> {
    let spawner = sys::spawner::Spawner::start()?;
    let pid = spawner.pid();
    SPAWNER.set(spawner).map_err(|_| io::Error::other("the sandbox spawner is started already"))?;
    Ok(pid)
}

/// In a program that [`start_spawner`] started as its spawner, serves
/// the sandbox requests of the process that started it and never returns;
/// in every other case returns at once (an argument check, nothing else).
/// Call it first thing in `main` of any program that calls
/// [`start_spawner`].
pub fn spawner_entry() {
    sys::spawner::serve_if_asked();
}

/// The sandbox spawner's state ([`start_spawner`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnerState {
    /// None was started: sandboxes are cloned by this process.
    NotStarted,
    /// It runs, with this pid.
    Running(libc::pid_t),
    /// It is gone (it had this pid): no sandbox can be started.
    Gone(libc::pid_t),
}

/// Whether a sandbox spawner runs for this process.
pub fn spawner_state() -> SpawnerState {
    match SPAWNER.get() {
        None => SpawnerState::NotStarted,
        Some(s) if s.alive() => SpawnerState::Running(s.pid()),
        Some(s) => SpawnerState::Gone(s.pid()),
    }
}

/// Applies `plan` to a new child and starts `cmd` in it. Returns once the
/// command has been exec'd, or with the step that failed. The same as
/// [`park`] and an immediate [`Parked::start`].
pub fn spawn(plan: &Plan, cmd: &Command, run_id: &str, stdio: Stdio) -> Result<Running, SpawnError> {
    park(plan, cmd, run_id, stdio)?.start(Go::default())
}

/// A sandbox whose init has built its namespaces, loopback and mounts and
/// joined the run's cgroups, and waits at its go pipe, before the cgroup
/// namespace, the pty and the command's fork: [`Parked::start`] sends the
/// go message and returns the [`Running`] sandbox.
///
/// Dropped unstarted, init is killed (SIGKILL through its pidfd) and
/// reaped, and the run's cgroups are removed. Init dies with the *thread*
/// that parked it (`PR_SET_PDEATHSIG` fires when that thread exits) and
/// with cordon (the lifeline): park from a thread that outlives the run.
/// With a sandbox spawner ([`start_spawner`]) init is cloned there but is
/// still this process's child, and dies with the thread that started the
/// spawner instead.
/// In dev mode ([`Supervision::Direct`]: no init) the command was started
/// at once; [`Parked::start`] only waits for its exec.
#[derive(Debug)]
pub struct Parked {
    // Declared first: dropped (killed and reaped) before the cgroups.
    child: ParkedChild,
    socket_maker: Option<SocketMaker>,
    sockets: Option<OwnedFd>,
    cgroups: RunCgroups,
    go: Option<OwnedFd>,
    program: PathBuf,
    report: OwnedFd,
    status: Option<OwnedFd>,
    lifeline: OwnedFd,
    trace: Option<(OwnedFd, u64)>,
    proxy: Option<OwnedFd>,
    pty: Option<OwnedFd>,
    pty_master: Option<OwnedFd>,
    egress: Option<(OwnedFd, OwnedFd)>,
    dns: Option<OwnedFd>,
    supervision: Supervision,
    spec_memory: SpecMemory,
}

/// Init of a parked sandbox until it is started: killed and reaped when
/// dropped before.
#[derive(Debug)]
struct ParkedChild {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
}

impl Drop for ParkedChild {
    fn drop(&mut self) {
        if let Some(fd) = self.pidfd.take() {
            let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            let _ = sys::wait4(self.pid);
        }
    }
}

impl Parked {
    /// Pid of init (or the command, in dev mode), in cordon's namespace.
    pub fn pid(&self) -> libc::pid_t {
        self.child.pid
    }

    /// The pidfd of that process: readable once it has exited (a parked
    /// sandbox whose init died: its thread ended, or it was killed).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.child.pidfd.as_ref().expect("held until started").as_fd()
    }

    /// Starts the command: sends the go message (one write of a fixed-size
    /// record), then waits until the command has been exec'd, or returns
    /// the step that failed.
    pub fn start(mut self, go: Go) -> Result<Running, SpawnError> {
        let sent = match self.go.take() {
            Some(fd) => {
                use std::io::Write;
                let message = GoMessage::new(go.late_env).to_bytes();
                std::fs::File::from(fd).write_all(&message)
            }
            None => Ok(()),
        };
        // A setup step that failed while the sandbox was parked made init
        // report it and exit: that failure, not the go pipe's, is the error.
        wait_for_exec(&self.report, &self.program)?;
        sent.map_err(os("start the command"))?;
        crate::trace::step("spawn: command exec'd");
        if let Some((r, cloned_at)) = self.trace.take() {
            crate::trace::steps_at(&read_marks(r), cloned_at);
        }
        // Init sent the listener before it waited for the go message, so
        // it is queued.
        let proxy_listener = match &self.proxy {
            Some(ch) => Some(sys::recv_fd(ch.as_fd()).map_err(os("receive the proxy listener from the sandbox"))?),
            None => None,
        };
        // Init sends the pty's master before it forks the command.
        if let Some(ch) = &self.pty {
            self.pty_master = Some(sys::recv_fd(ch.as_fd()).map_err(os("receive the pty from the sandbox"))?);
        }
        // The command sent its listener before it exec'd, and init the stub
        // DNS's sockets before it waited for the go message: both are queued.
        let egress = match (self.egress.take(), &self.dns) {
            (Some((channel, helper)), Some(dns)) => Some(SandboxEgress {
                listener: sys::recv_fd(channel.as_fd()).map_err(os("receive the seccomp notification listener"))?,
                helper,
                dns_udp: sys::recv_fd(dns.as_fd()).map_err(os("receive the stub DNS's sockets"))?,
                dns_tcp: sys::recv_fd(dns.as_fd()).map_err(os("receive the stub DNS's sockets"))?,
            }),
            _ => None,
        };
        let pidfd = self.child.pidfd.take().expect("held until started");
        Ok(Running {
            proxy_listener,
            pty_master: self.pty_master.take(),
            egress,
            sockets: self.sockets.take(),
            pid: self.child.pid,
            pidfd,
            _socket_maker: self.socket_maker.take(),
            cgroups: self.cgroups,
            status: self.status,
            supervision: self.supervision,
            _lifeline: Some(self.lifeline),
            spec_memory: self.spec_memory,
        })
    }
}

/// Refuses a run that denies a regular file with more hard links than it
/// denies (review s7 F3). A deny hides the paths it names, in both modes (a
/// mount over the path, Landlock rules around it), never the file itself:
/// another link to it in a granted folder reads it. Not covered: files
/// with other links inside a denied folder (that would take a walk of the
/// whole folder per run).
fn refuse_denied_files_with_other_links(plan: &Plan) -> Result<(), SpawnError> {
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;
    let denied = plan.landlock.iter().flat_map(|l| &l.deny).chain(plan.root.iter().flat_map(|r| &r.deny));
    // (device, inode) -> (link count, distinct denied paths naming it, the first)
    let mut files: BTreeMap<(u64, u64), (u64, Vec<&Path>)> = BTreeMap::new();
    for path in denied {
        let Ok(m) = std::fs::metadata(path) else { continue };
        if m.is_file() && m.nlink() > 1 {
            let (_, paths) = files.entry((m.dev(), m.ino())).or_insert((m.nlink(), vec![]));
            if !paths.contains(&path.as_path()) {
                paths.push(path);
            }
        }
    }
    match files.into_values().find(|(links, paths)| u64::try_from(paths.len()).unwrap_or(u64::MAX) < *links) {
        Some((links, paths)) => {
            Err(SpawnError::DeniedFileLinked { path: paths[0].to_owned(), links, denied: paths.len() })
        }
        None => Ok(()),
    }
}

/// Refuses a run in which a denied path lies inside a grant below a folder
/// the run has a broad write rule on (review s9 F1): the run's own `/tmp`
/// (container mode, and process mode's private `/tmp`) and `/dev/shm`.
/// Grants under the host's `/tmp` are mounted below the run's tmpfs there,
/// and Landlock's walk goes up across mounts, so that rule covers the whole
/// grant: the rules around a deny ([`landlock::expand_denies`]) refuse
/// nothing there, and only the mask over the denied path is left. A mask
/// sits on a dentry: it moves with a folder above it that the run renames,
/// and the host's atomic replace of the file detaches it. No rule can stop
/// at a mount, so the run is refused, never weakened.
///
/// Both the written and the resolved spelling of every path count (a
/// symlink into `/tmp`, a grant that is `/tmp` itself), and a deny that does
/// not exist is resolved as far as its parent exists.
fn refuse_denies_inside_private_folders(plan: &Plan) -> Result<(), SpawnError> {
    let Some(l) = &plan.landlock else { return Ok(()) };
    let denied: Vec<&PathBuf> = l.deny.iter().chain(plan.root.iter().flat_map(|r| &r.deny)).collect();
    if denied.is_empty() {
        return Ok(());
    }
    let folders: Vec<[PathBuf; 2]> =
        l.late.iter().filter(|(_, a)| *a == FsAccess::Write).map(|(p, _)| spellings(p)).collect();
    let grants: Vec<(&PathBuf, [PathBuf; 2])> = l.rules.iter().map(|(p, _)| (p, spellings(p))).collect();
    for deny in denied {
        let d = spellings(deny);
        for (grant, g) in &grants {
            if !d.iter().any(|d| g.iter().any(|g| d.starts_with(g))) {
                continue;
            }
            if let Some(f) = folders.iter().find(|f| g.iter().any(|g| f.iter().any(|f| g.starts_with(f)))) {
                return Err(SpawnError::DenyInsidePrivateFolder {
                    deny: deny.clone(),
                    grant: (*grant).clone(),
                    folder: f[0].clone(),
                });
            }
        }
    }
    Ok(())
}

/// Refuses a sandboxed run whose command would get, as fd 0, 1 or 2, a
/// socket other than a connected unix stream or seqpacket one (which can
/// neither address anyone else nor be connected again), a directory or a
/// block device (see [`SpawnError::UnsafeStdio`]). `given` are the
/// replacements the command gets; a slot without one is cordon's own
/// descriptor, which the command inherits. Dev mode isolates nothing and is
/// not checked.
fn refuse_unsafe_stdio(plan: &Plan, given: [Option<BorrowedFd<'_>>; 3]) -> Result<(), SpawnError> {
    use std::os::unix::fs::FileTypeExt;
    if plan.mode == Mode::Dev {
        return Ok(());
    }
    let (stdin, stdout, stderr) = (io::stdin(), io::stdout(), io::stderr());
    let own = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    for (fd, (given, own)) in (0u8..).zip(given.into_iter().zip(own)) {
        let slot = given.unwrap_or(own);
        let refuse = |what: &str| Err(SpawnError::UnsafeStdio { fd, what: what.to_owned() });
        // A closed slot: nothing to hand over.
        let Ok(meta) = sys::metadata(slot) else { continue };
        let kind = meta.file_type();
        if kind.is_dir() {
            return refuse(
                "a directory, in which it could change the mode and times of what the caller owns, past every rule",
            );
        }
        if kind.is_block_device() {
            return refuse("a block device");
        }
        if !kind.is_socket() {
            continue;
        }
        let in_callers = "used in the caller's network namespace, past the run's network rules";
        let domain = sys::notify::getsockopt_int(slot, libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(-1);
        if domain != libc::AF_UNIX {
            return refuse(&match domain {
                libc::AF_INET => format!("an AF_INET (IPv4) socket, {in_callers}"),
                libc::AF_INET6 => format!("an AF_INET6 (IPv6) socket, {in_callers}"),
                libc::AF_NETLINK => format!("a netlink socket, {in_callers}"),
                libc::AF_PACKET => format!("a packet socket, {in_callers}"),
                other => format!("a socket of address family {other}, {in_callers}"),
            });
        }
        let kind = sys::notify::getsockopt_int(slot, libc::SOL_SOCKET, libc::SO_TYPE).unwrap_or(libc::SOCK_DGRAM);
        if kind != libc::SOCK_STREAM && kind != libc::SOCK_SEQPACKET {
            return refuse(&format!("a unix datagram socket (or another connectionless one), {in_callers}"));
        }
        if sys::notify::getsockopt_int(slot, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).unwrap_or(1) != 0 {
            return refuse(&format!("a listening unix socket, {in_callers}"));
        }
        if sys::notify::socket_address(slot, sys::notify::SocketEnd::Peer).is_err() {
            return refuse(&format!("an unconnected unix stream socket, {in_callers}"));
        }
    }
    Ok(())
}

/// `path` as written, and resolved through every symlink as far as it
/// exists (the rest appended as written).
fn spellings(path: &Path) -> [PathBuf; 2] {
    [path.to_owned(), resolved(path)]
}

/// `path` resolved through every symlink as far as it exists, the rest
/// appended as written (`path` itself when nothing of it resolves).
pub(crate) fn resolved(path: &Path) -> PathBuf {
    let mut rest = vec![];
    let mut at = path;
    loop {
        if let Ok(r) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(r, |acc: PathBuf, c| acc.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return path.to_owned(),
        }
    }
}

/// Applies `plan` to a new child up to the command's start and parks it
/// there (see [`Parked`]). Returns once init runs in the run's cgroups; its
/// setup goes on meanwhile, and a failure in it is reported by
/// [`Parked::start`].
pub fn park(plan: &Plan, cmd: &Command, run_id: &str, stdio: Stdio) -> Result<Parked, SpawnError> {
    let supervision = if plan.mode == Mode::Dev { Supervision::Direct } else { Supervision::Init };
    refuse_denied_files_with_other_links(plan)?;
    refuse_denies_inside_private_folders(plan)?;
    refuse_unsafe_stdio(plan, [&stdio.stdin, &stdio.stdout, &stdio.stderr].map(|f| f.as_ref().map(|f| f.as_fd())))?;
    // The run's own look at the system set, or one now when a step needs it.
    let looked;
    let system = match (&plan.system_entries, plan.landlock.is_some() || plan.root.is_some()) {
        (Some(s), _) => Some(s),
        (None, true) => {
            looked = SystemEntries::look();
            Some(&looked)
        }
        (None, false) => None,
    };
    // The ruleset is made now and travels with the clone; its rules go in
    // after the clone, beside init's mounts (see `add_landlock_rules`),
    // except without init, where the command starts at once.
    let landlock = match &plan.landlock {
        Some(l) => {
            let fd = landlock::create_ruleset(l)?;
            let mut late = l
                .late
                .iter()
                .map(|(p, a)| {
                    let access = landlock::access_bits(*a, l.abi, l.exec_right());
                    Ok(LateRule {
                        path: cstring("path", p.as_os_str().as_bytes())?,
                        access: access.bits(),
                        file_access: (access & landlock::file_rights(l.abi)).bits(),
                    })
                })
                .collect::<Result<Vec<_>, SpawnError>>()?;
            // The generated resolver files are bound from a tmpfs no rule
            // covers: they get read rules of their own, inside (where they
            // exist: process mode skips a file the host lacks).
            if plan.egress == Egress::Kernel {
                for f in mounts::NET_FILES.iter().filter(|f| plan.root.is_some() || Path::new(f).exists()) {
                    let access =
                        landlock::file_rights(l.abi) & landlock::access_bits(FsAccess::Read, l.abi, l.exec_right());
                    late.push(LateRule {
                        path: cstring("path", *f)?,
                        access: access.bits(),
                        file_access: access.bits(),
                    });
                }
            }
            Some((fd, late))
        }
        None => None,
    };
    // Our own descriptor of the ruleset, to fill it after the clone.
    let landlock_rules = match (&plan.landlock, &landlock) {
        (Some(l), Some((fd, _))) => {
            let ours = fd.try_clone().map_err(os("duplicate the landlock ruleset's descriptor"))?;
            Some((l, ours))
        }
        _ => None,
    };
    if let (Supervision::Direct, Some((l, fd))) = (supervision, &landlock_rules) {
        landlock::add_rules(fd.as_fd(), l, system)?;
    }
    crate::trace::step("spawn: landlock ruleset created");
    // The program's file is made now and travels with the clone; the
    // program is compiled into it after the clone, beside init's mounts
    // (without init, now: the command starts at once).
    let (seccomp_theirs, seccomp_late) = match plan.seccomp {
        Some(sp) => {
            let file = sys::program_file().map_err(os("create the seccomp program's memory file"))?;
            let late = match supervision {
                Supervision::Direct => {
                    fill_seccomp(file.as_fd(), sp)?;
                    None
                }
                Supervision::Init => {
                    Some((file.try_clone().map_err(os("duplicate the seccomp program file's descriptor"))?, sp))
                }
            };
            (Some(file), late)
        }
        None => (None, None),
    };
    crate::trace::step("spawn: seccomp program file made");
    let id_maps = plan.namespaces.contains(&Namespace::User).then(|| {
        let (uid, gid) = (sys::effective_uid(), sys::effective_gid());
        (format!("{uid} {uid} 1\n").into_bytes(), format!("{gid} {gid} 1\n").into_bytes())
    });
    // Transparent egress: the sandbox's resolver points at the stub DNS.
    let net_files = (plan.egress == Egress::Kernel).then(|| {
        let hostname =
            if plan.namespaces.contains(&Namespace::Uts) { SANDBOX_HOSTNAME.to_owned() } else { sys::host_name() };
        mounts::NetFiles::for_stub(&hostname)
    });
    let mounts = match (&plan.root, &plan.host_view) {
        (Some(root), _) => match system {
            Some(system) => mounts::build_mount_ops(root, system, &cmd.cwd, net_files.as_ref()),
            None => mounts::build_mount_ops(root, &SystemEntries::look(), &cmd.cwd, net_files.as_ref()),
        },
        (None, Some(view)) => mounts::host_view_ops(view, &cmd.cwd, net_files.as_ref()),
        (None, None) => vec![],
    };
    let tree_slots = mounts
        .iter()
        .filter(|m| matches!(m, MountOp::CloneTree { .. }))
        .map(|_| std::sync::atomic::AtomicI32::new(-1))
        .collect();
    let sysctls = plan
        .sysctls
        .iter()
        .map(|s| Ok((cstring("sysctl", format!("/proc/sys/{}", s.key()))?, cstring("sysctl", s.value())?)))
        .collect::<Result<Vec<_>, SpawnError>>()?;
    crate::trace::step("spawn: mount steps prepared");
    let (report_r, report_w) = sys::pipe().map_err(os("create the report pipe"))?;
    let (status_r, status_w) = match supervision {
        Supervision::Init => {
            let (r, w) = sys::pipe().map_err(os("create the status pipe"))?;
            (Some(r), Some(w))
        }
        Supervision::Direct => (None, None),
    };
    let (lifeline_r, lifeline_w) = sys::pipe().map_err(os("create the lifeline pipe"))?;
    let (go_r, go_w) = match supervision {
        Supervision::Direct => (None, None),
        Supervision::Init => {
            let (r, w) = sys::pipe().map_err(os("create the go pipe"))?;
            (Some(r), Some(w))
        }
    };
    let (proxy_ours, proxy_theirs) = match plan.proxy_port {
        Some(port) => {
            let (a, b) = sys::socketpair().map_err(os("create the proxy channel"))?;
            (Some(a), Some((b, port)))
        }
        None => (None, None),
    };
    let mut stdio_fds = [stdio.stdin, stdio.stdout, stdio.stderr, stdio.fd3];
    let (terminal, pty_ours, pty_master) = match (plan.terminal, stdio.pty) {
        (TerminalPlan::Pty, Some(req)) if supervision == Supervision::Direct => {
            // Dev mode has no devpts of its own: the pair comes from ours.
            let (master, slave) = sys::tty::open_pty().map_err(os("allocate a pty"))?;
            sys::tty::set_window_size(master.as_fd(), req.size).map_err(os("set the pty's window size"))?;
            let targets = if req.stderr == PtyStderr::Pty { 0..3 } else { 0..2 };
            for t in targets {
                stdio_fds[t] = Some(slave.try_clone().map_err(os("duplicate the pty"))?);
            }
            (ChildTerminal::Given, None, Some(master))
        }
        (TerminalPlan::Pty, Some(req)) => {
            let (ours, theirs) = sys::socketpair().map_err(os("create the pty channel"))?;
            let size = (req.size.rows, req.size.cols);
            (ChildTerminal::Allocate { channel: theirs, size, stderr: req.stderr }, Some(ours), None)
        }
        _ => (ChildTerminal::Detached, None, None),
    };
    let (trace_r, trace_w) = match crate::trace::enabled() {
        true => {
            let (r, w) = sys::pipe().map_err(os("create the trace pipe"))?;
            (Some(r), Some(w))
        }
        false => (None, None),
    };
    let (dns_ours, dns_theirs) = match plan.egress {
        Egress::Kernel => {
            let (a, b) = sys::socketpair().map_err(os("create the stub DNS channel"))?;
            (Some(a), Some(b))
        }
        Egress::None | Egress::Proxy => (None, None),
    };
    let (egress_ours, egress_theirs) = match plan.egress {
        Egress::Kernel => {
            let (listener_ours, listener_theirs) = sys::socketpair().map_err(os("create the notification channel"))?;
            let (helper_ours, helper_theirs) =
                sys::seqpacket_pair().map_err(os("create the connect helper's channel"))?;
            let child = EgressChild {
                listener_channel: listener_theirs,
                helper_channel: helper_theirs,
                helper_filter: seccomp::helper_filter()?,
                helper_stack: sys::Stack::new(HELPER_STACK_BYTES).map_err(os("map the connect helper's stack"))?,
            };
            (Some((listener_ours, helper_ours)), Some(child))
        }
        Egress::None | Egress::Proxy => (None, None),
    };
    let cwd = cmd.cwd.clone();
    let late_env = match &cmd.late_env {
        None => None,
        Some(name) => {
            let value = cmd.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_bytes()).unwrap_or_default();
            Some(LateEnv::new(name, value).ok_or_else(|| SpawnError::LateEnv { name: name.clone() })?)
        }
    };
    let envp = cmd
        .env
        .iter()
        .filter(|(k, _)| Some(k) != cmd.late_env.as_ref())
        .map(|(k, v)| cstring("environment", format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let spec = ChildSpec {
        exe: cstring("program", cmd.program.as_os_str().as_bytes())?,
        argv: CStringArray::new(cmd.args.iter().map(|a| cstring("argument", a.as_bytes())).collect::<Result<_, _>>()?),
        envp: CStringArray::with_late(envp, late_env.as_ref()),
        late_env,
        cwd: Some(cstring("working directory", cwd.as_os_str().as_bytes())?),
        id_maps,
        go: go_r,
        cgroup_namespace: plan.namespaces.contains(&Namespace::Cgroup),
        mounts,
        tree_slots,
        sysctls,
        loopback_up: plan.namespaces.contains(&Namespace::Net),
        proxy_listener: proxy_theirs,
        dns_sockets: dns_theirs,
        hostname: plan
            .namespaces
            .contains(&Namespace::Uts)
            .then(|| cstring("host name", SANDBOX_HOSTNAME))
            .transpose()?,
        rlimits: plan
            .rlimits
            .iter()
            .map(|r| (rlimit_resource(r.kind), libc::rlimit { rlim_cur: r.soft, rlim_max: r.hard }))
            .collect(),
        drop_capabilities: plan.drop_capabilities,
        // Looked up only for a run that drops them (not dev mode).
        last_cap: if plan.drop_capabilities { sys::last_capability() } else { 0 },
        landlock,
        landlock_flags: 0,
        seccomp: seccomp_theirs,
        stdio: stdio_fds,
        terminal,
        egress: egress_theirs,
        report: report_w,
        status: status_w,
        lifeline: Some(lifeline_r),
        supervision,
        kill_request: KILL_REQUEST,
        command_stack: sys::Stack::new(COMMAND_STACK_BYTES).map_err(os("map the command's stack"))?,
        trace: trace_w,
    };
    crate::trace::step("spawn: child spec prepared");
    let cloned_at = sys::monotonic_ns();
    let child = match SPAWNER.get() {
        Some(spawner) => spawner.spawn(clone_flags(&plan.namespaces), &spec).map_err(|source| match source.kind() {
            io::ErrorKind::BrokenPipe => SpawnError::SpawnerGone { source },
            _ => SpawnError::Os { what: "clone the sandbox process (in the sandbox spawner)", source },
        })?,
        None => sys::spawn(clone_flags(&plan.namespaces), sys::ParentOf::Caller, &spec)
            .map_err(os("clone the sandbox process"))?,
    };
    crate::trace::step("spawn: cloned");
    // Our copies of the child's ends must go now: the report pipe reaches EOF
    // only when every write end is closed, and the lifeline is meant to hang
    // up only when *we* go. The rest of the spec is freed once init is gone
    // (see `SpecMemory`).
    let spec_memory = spec.close_descriptors();
    // While init builds the namespaces, create the run's cgroups and move
    // init into them; then let it start the command. Named after the run
    // and init's pid: a run of the same request again on this host (a queue
    // redelivery after its first worker was killed, whose empty cgroup the
    // sweep removes only later) gets its own.
    let cgroup_name = format!("{run_id}-{}", child.pid);
    let mut cgroups = match RunCgroups::create(&plan.cgroup, &cgroup_name).and_then(|c| c.join(child.pid).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            abandon(&child, go_w);
            return Err(e.into());
        }
    };
    // Host sockets transparent egress connects for the sandbox are made in
    // the run's memory cgroup, so their buffers count against its limit.
    let socket_maker = match (plan.host_sockets, cgroups.has_memory()) {
        (HostSockets::Maker, true) => match SocketMaker::start(&mut cgroups) {
            Ok(m) => Some(m),
            Err(e) => {
                abandon(&child, go_w);
                return Err(e);
            }
        },
        _ => None,
    };
    let (socket_maker, sockets) = match socket_maker {
        Some((m, ch)) => (Some(m), Some(ch)),
        None => (None, None),
    };
    crate::trace::step("spawn: cgroups made and joined");
    if let (Supervision::Init, Some((l, fd))) = (supervision, &landlock_rules) {
        // Init builds its mounts meanwhile and forks the command only on
        // the go message, sent after this: its restrict_self sees every rule.
        if let Err(e) = landlock::add_rules(fd.as_fd(), l, system) {
            abandon(&child, go_w);
            return Err(e.into());
        }
        crate::trace::step("spawn: landlock rules added (beside init's mounts)");
    }
    if let Some((file, sp)) = seccomp_late {
        // Sealed before the go message: the command's process refuses the
        // file unsealed.
        if let Err(e) = fill_seccomp(file.as_fd(), sp) {
            abandon(&child, go_w);
            return Err(e);
        }
        crate::trace::step("spawn: seccomp compiled (beside init's mounts)");
    }
    Ok(Parked {
        child: ParkedChild { pid: child.pid, pidfd: Some(child.pidfd) },
        socket_maker,
        sockets,
        cgroups,
        go: go_w,
        program: cmd.program.clone(),
        report: report_r,
        status: status_r,
        lifeline: lifeline_w,
        trace: trace_r.map(|r| (r, cloned_at)),
        proxy: proxy_ours,
        pty: pty_ours,
        pty_master,
        egress: egress_ours,
        dns: dns_ours,
        supervision,
        spec_memory,
    })
}

/// Compiles the command's seccomp program for `plan` into `file` (a
/// [`sys::program_file`]) and seals it.
fn fill_seccomp(file: BorrowedFd<'_>, plan: seccomp::SeccompPlan) -> Result<(), SpawnError> {
    let program = seccomp::build_filter(plan)?;
    sys::fill_program_file(file, &program).map_err(os("write the seccomp program's memory file"))
}

/// Ends a cloned child whose setup cordon could not finish: closes our end
/// of its go pipe (init sees EOF there and exits), kills it through its
/// pidfd and reaps it.
fn abandon(child: &sys::Spawned, go: Option<OwnedFd>) {
    drop(go);
    let _ = sys::pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
    let _ = sys::wait4(child.pid);
}

/// Reads the sandbox's setup marks until every writer has closed the trace
/// pipe (the command's copy closes at exec, init's right after).
fn read_marks(fd: OwnedFd) -> Vec<(&'static str, u64)> {
    use std::io::Read;
    let mut bytes = vec![];
    let _ = std::fs::File::from(fd).read_to_end(&mut bytes);
    bytes
        .chunks_exact(MarkRecord::SIZE)
        .map(|c| {
            let r = MarkRecord::from_bytes(c.try_into().expect("chunks of SIZE"));
            (ChildMark::name_of(r.mark), r.at_ns)
        })
        .collect()
}

/// Blocks until the report pipe reaches EOF (the exec succeeded) or carries
/// a failure record.
fn wait_for_exec(report: &OwnedFd, program: &Path) -> Result<(), SpawnError> {
    let mut buf = [0u8; ChildFailure::SIZE];
    if !read_exact_or_eof(report, &mut buf).map_err(os("read the report pipe"))? {
        return Ok(());
    }
    let f = ChildFailure::from_bytes(&buf);
    let source = io::Error::from_raw_os_error(f.errno);
    let stage = ChildStage::from_u32(f.stage);
    if stage == Some(ChildStage::Exec) {
        return Err(SpawnError::Exec { program: program.to_owned(), source });
    }
    let name = stage.map_or("an unknown step", ChildStage::name);
    let detail = match stage {
        Some(ChildStage::Terminal) => format!(" ({})", TerminalStep::describe(f.index)),
        Some(s) if s.has_index() => format!(" (step {})", f.index),
        _ => String::new(),
    };
    Err(SpawnError::Child { stage: name, detail, source })
}
