//! Everything that runs in the child between `clone` and `execve`.
//!
//! # Async-signal safety
//!
//! The caller may have other threads, and one of them may hold the allocator
//! lock at the moment of `clone`. So nothing here allocates, locks, logs or
//! panics: the code only reads a [`ChildSpec`] the parent prepared and makes
//! raw syscalls. A failure is written to the report pipe as a fixed-size
//! [`ChildFailure`] and the process `_exit`s; the parent turns it into an
//! error naming the step.
//!
//! # Shape
//!
//! With [`Supervision::Init`] the cloned process is pid 1 of a new pid
//! namespace, and the leader of a new process group in cordon's session
//! (see `init_group`): a key the caller types (Ctrl-C) signals cordon's
//! group alone, and cordon forwards it once. It finishes the namespace setup (id maps, cgroup,
//! mounts, loopback, hostname), allocates the command's pty when asked
//! ([`ChildTerminal::Allocate`]), forks the command, and then only reaps
//! children and forwards signals. When the command exits, init kills every process left in
//! the namespace, reports the command's wait status and the run's accounting
//! on the status pipe ([`StatusRecord`]) and exits; the kernel then tears the
//! namespaces down while cordon already answers. Init dies with cordon
//! (`PR_SET_PDEATHSIG`), and with it every process of the run.
//!
//! With [`Supervision::Direct`] (dev mode) the cloned process is the command,
//! in a process group of its own, and in a session of its own where there is
//! a terminal to keep it from (see `lead_group_or_session`).

use std::cell::UnsafeCell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::enforce::seccomp::{BpfProgram, SockFilter};
use libc::{c_char, c_int, c_ulong};

/// The step of the child setup that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum ChildStage {
    /// `prctl(PR_SET_PDEATHSIG)` or the lifeline check.
    Lifeline = 1,
    /// Writing `/proc/self/{setgroups,uid_map,gid_map}`.
    IdMaps,
    /// `unshare(CLONE_NEWCGROUP)`.
    CgroupNamespace,
    /// One of the mount steps (index in `mount_step`).
    Mount,
    /// Bringing up the loopback interface.
    Loopback,
    /// `sethostname`.
    Hostname,
    /// `fork` of the command.
    Fork,
    /// Redirecting stdin/stdout/stderr.
    Stdio,
    /// `chdir` to the working directory.
    Chdir,
    /// `setrlimit`.
    Rlimit,
    /// Dropping capabilities.
    Capabilities,
    /// `prctl(PR_SET_NO_NEW_PRIVS)`.
    NoNewPrivs,
    /// Adding the in-sandbox Landlock rules.
    LandlockAddRule,
    /// `landlock_restrict_self`.
    LandlockRestrict,
    /// `close_range`.
    CloseFds,
    /// Loading a seccomp filter.
    Seccomp,
    /// `execve` itself.
    Exec,
    /// Resetting signal dispositions.
    Signals,
    /// Creating or handing over the proxy listener.
    ProxyListener,
    /// `setsid` or `setpgid`.
    Session,
    /// Allocating the pty or making it the controlling terminal.
    Terminal,
    /// Writing a sysctl of the run's own namespaces (index in `sysctls`).
    Sysctl,
    /// Starting the connect helper.
    ConnectHelper,
    /// Handing the seccomp notification listener to cordon.
    NotifyListener,
    /// Creating or handing over the stub DNS's sockets.
    DnsSockets,
    /// `prctl(PR_SET_DUMPABLE, 0)` of init's memory.
    Dumpable,
    /// Making the run's network namespace (in init's network helper) or
    /// joining it (index: which step).
    NetworkNamespace,
}

/// Every stage with the words an error message uses for it.
const STAGES: [(ChildStage, &str); 27] = [
    (ChildStage::Lifeline, "lifeline"),
    (ChildStage::IdMaps, "uid/gid maps"),
    (ChildStage::CgroupNamespace, "cgroup namespace"),
    (ChildStage::Mount, "mount"),
    (ChildStage::Loopback, "loopback interface"),
    (ChildStage::Hostname, "hostname"),
    (ChildStage::Fork, "fork"),
    (ChildStage::Stdio, "stdio"),
    (ChildStage::Chdir, "chdir to the working directory"),
    (ChildStage::Rlimit, "setrlimit"),
    (ChildStage::Capabilities, "dropping capabilities"),
    (ChildStage::NoNewPrivs, "no_new_privs"),
    (ChildStage::LandlockAddRule, "landlock rule inside the sandbox"),
    (ChildStage::LandlockRestrict, "landlock_restrict_self"),
    (ChildStage::CloseFds, "close_range"),
    (ChildStage::Seccomp, "seccomp"),
    (ChildStage::Exec, "execve"),
    (ChildStage::Signals, "signal dispositions"),
    (ChildStage::ProxyListener, "proxy listener inside the sandbox"),
    (ChildStage::Session, "new session or process group"),
    (ChildStage::Terminal, "terminal"),
    (ChildStage::Sysctl, "sysctl of the run's namespaces"),
    (ChildStage::ConnectHelper, "connect helper"),
    (ChildStage::NotifyListener, "handing the seccomp notification listener to cordon"),
    (ChildStage::DnsSockets, "stub DNS sockets inside the sandbox"),
    (ChildStage::Dumpable, "making init's memory non-dumpable"),
    (ChildStage::NetworkNamespace, "the run's network namespace"),
];

impl ChildStage {
    /// Decodes the wire value.
    pub fn from_u32(v: u32) -> Option<Self> {
        STAGES.iter().map(|(s, _)| *s).find(|s| *s as u32 == v)
    }

    /// What the step is, for error messages.
    pub fn name(self) -> &'static str {
        STAGES.iter().find(|(s, _)| *s == self).map_or("an unknown step", |(_, n)| n)
    }

    /// Whether a failure of this stage names a step index (which mount,
    /// rule, limit or filter).
    pub fn has_index(self) -> bool {
        matches!(
            self,
            ChildStage::Mount
                | ChildStage::LandlockAddRule
                | ChildStage::Rlimit
                | ChildStage::Seccomp
                | ChildStage::Terminal
                | ChildStage::Sysctl
                | ChildStage::NetworkNamespace
        )
    }
}

/// A point in the sandbox's setup that `CORDON_TRACE` reports: the child
/// writes a [`MarkRecord`] to [`ChildSpec::trace`] as it passes each (see
/// `crate::trace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum ChildMark {
    /// Init runs: death signal set, lifeline checked, session made.
    Started = 1,
    /// The uid/gid maps are written.
    IdMaps,
    /// The network helper is started (or, without a network namespace of
    /// the run's own, the proxy listener handed over), the host name and
    /// the sysctls set.
    Network,
    /// The container root (or process mode's mounts) is built.
    Mounts,
    /// Init joined the network namespace its helper made beside the
    /// mounts (loopback up, listeners handed over).
    NetworkJoined,
    /// cordon has put init into the run's cgroups (the "go" byte).
    Go,
    /// The cgroup namespace is entered and the pty allocated.
    Namespaces,
    /// The command's process runs: stdio, working directory, rlimits.
    CommandStdio,
    /// Capabilities dropped, `no_new_privs` set.
    Privileges,
    /// Landlock restricts the command.
    Landlock,
    /// Container mode: the host's root, detached beside the command's
    /// set-up (see `start_detach`), is gone; the command's process waited
    /// for it here, after Landlock.
    Detached,
    /// Descriptors closed, seccomp loaded: `execve` is next.
    Seccomp,
}

/// Every mark with its name in the trace.
const MARKS: [(ChildMark, &str); 12] = [
    (ChildMark::Started, "sandbox: init started"),
    (ChildMark::IdMaps, "sandbox: uid/gid maps"),
    (ChildMark::Network, "sandbox: network helper started, host name, sysctls"),
    (ChildMark::Mounts, "sandbox: mounts"),
    (ChildMark::NetworkJoined, "sandbox: network namespace joined (made beside the mounts)"),
    (ChildMark::Go, "sandbox: go (cgroups joined)"),
    (ChildMark::Namespaces, "sandbox: cgroup namespace, pty"),
    (ChildMark::CommandStdio, "sandbox: command forked, stdio, cwd, rlimits"),
    (ChildMark::Privileges, "sandbox: capabilities dropped, no_new_privs"),
    (ChildMark::Landlock, "sandbox: landlock"),
    (ChildMark::Detached, "sandbox: host root detached (beside the command's set-up)"),
    (ChildMark::Seccomp, "sandbox: fds closed, seccomp (execve next)"),
];

impl ChildMark {
    /// The mark's name in the trace, from its wire value.
    pub fn name_of(v: u32) -> &'static str {
        MARKS.iter().find(|(m, _)| *m as u32 == v).map_or("sandbox: unknown mark", |(_, n)| n)
    }
}

/// What the child writes to the trace pipe at each [`ChildMark`]: 16 bytes,
/// one `write(2)` (atomic on a pipe).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct MarkRecord {
    /// [`ChildMark`] as `u32`.
    pub mark: u32,
    /// Unused, zero.
    pub pad: u32,
    /// `CLOCK_MONOTONIC` when the mark was passed, ns.
    pub at_ns: u64,
}

impl MarkRecord {
    /// Size on the wire.
    pub const SIZE: usize = std::mem::size_of::<MarkRecord>();

    /// Parses the bytes the child wrote.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut word = [0u8; 4];
        word.copy_from_slice(&b[0..4]);
        let mut at = [0u8; 8];
        at.copy_from_slice(&b[8..16]);
        MarkRecord { mark: u32::from_ne_bytes(word), pad: 0, at_ns: u64::from_ne_bytes(at) }
    }
}

/// Writes `m` with the current time to the trace pipe, when there is one.
fn mark(spec: &ChildSpec, m: ChildMark) {
    let Some(fd) = &spec.trace else { return };
    let r = MarkRecord { mark: m as u32, pad: 0, at_ns: super::monotonic_ns() };
    // SAFETY: `r` is a plain repr(C) value of SIZE bytes; write only reads it.
    // A failed write only loses a trace line.
    unsafe { libc::write(fd.as_raw_fd(), (&r as *const MarkRecord).cast(), MarkRecord::SIZE) };
}

/// What the child writes to the report pipe when a step fails.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct ChildFailure {
    /// [`ChildStage`] as `u32`.
    pub stage: u32,
    /// The errno of the failed call.
    pub errno: i32,
    /// For [`ChildStage::Mount`]: which [`MountOp`]; for the Landlock rules,
    /// which rule; for [`ChildStage::Terminal`], the [`TerminalStep`].
    pub index: u32,
}

impl ChildFailure {
    /// Size on the wire.
    pub const SIZE: usize = std::mem::size_of::<ChildFailure>();

    /// Parses the bytes the child wrote.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        ChildFailure {
            stage: u32::from_ne_bytes(word(0)),
            errno: i32::from_ne_bytes(word(4)),
            index: u32::from_ne_bytes(word(8)),
        }
    }
}

/// A NUL-terminated array of C strings (argv, envp), kept with its storage.
#[derive(Debug)]
pub struct CStringArray {
    _storage: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl CStringArray {
    /// Builds the array; the pointers stay valid as long as `self` lives.
    pub fn new(items: Vec<CString>) -> Self {
        Self::with_late(items, None)
    }

    /// Builds the array with `late` as its last entry: the entry init
    /// completes from the go message ([`GoMessage::late_env`]). The pointer
    /// stays valid as long as `late` lives (its storage is boxed).
    pub fn with_late(items: Vec<CString>, late: Option<&LateEnv>) -> Self {
        let mut ptrs: Vec<*const c_char> = items.iter().map(|s| s.as_ptr()).collect();
        if let Some(l) = late {
            ptrs.push(UnsafeCell::raw_get(l.entry.as_ptr()).cast_const().cast());
        }
        ptrs.push(std::ptr::null());
        CStringArray { _storage: items, ptrs }
    }
    fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }

    /// The entries given to [`CStringArray::new`] (without a late one).
    pub(super) fn items(&self) -> &[CString] {
        &self._storage
    }

    /// The strings, without the array of pointers to them.
    fn into_items(self) -> Vec<CString> {
        self._storage
    }
}

/// How many bytes the value of the late environment variable has: the
/// length of a W3C `traceparent` of version 00.
pub const LATE_ENV_BYTES: usize = 55;

/// One environment entry, `NAME=<value of LATE_ENV_BYTES>` and its NUL, whose
/// value a parked init overwrites from its go message: the one piece of
/// the command's environment known only when a parked sandbox is started.
/// Init has its own copy of the parent's memory, so it writes here without
/// allocating; the command's process shares it until `execve`.
pub struct LateEnv {
    entry: Box<[UnsafeCell<u8>]>,
    value_at: usize,
}

impl LateEnv {
    /// The entry `name=placeholder`; `None` when the placeholder is not
    /// [`LATE_ENV_BYTES`] long or either contains a NUL.
    pub fn new(name: &str, placeholder: &[u8]) -> Option<LateEnv> {
        if placeholder.len() != LATE_ENV_BYTES || name.contains('\0') || placeholder.contains(&0) {
            return None;
        }
        let bytes = name.bytes().chain([b'=']).chain(placeholder.iter().copied()).chain([0]);
        Some(LateEnv { entry: bytes.map(UnsafeCell::new).collect(), value_at: name.len() + 1 })
    }

    /// The name and the value as given to [`LateEnv::new`] (the parent's
    /// copy: only init's own copy is ever overwritten).
    pub(super) fn name_and_value(&self) -> (Vec<u8>, Vec<u8>) {
        // SAFETY: only init writes the entry, in its own copy of the
        // memory; nothing writes the caller's while it reads it here.
        let bytes: Vec<u8> = self.entry.iter().map(|c| unsafe { *c.get() }).collect();
        let end = bytes.len().saturating_sub(1);
        (bytes[..self.value_at - 1].to_vec(), bytes[self.value_at..end].to_vec())
    }

    /// Overwrites the value (init, after the go message). No allocation.
    fn set(&self, value: &[u8; LATE_ENV_BYTES]) {
        for (cell, b) in self.entry[self.value_at..].iter().zip(value) {
            // SAFETY: init is single-threaded and nothing else reads the
            // entry until the command's process (forked after this) execs.
            unsafe { *cell.get() = *b };
        }
    }
}

impl std::fmt::Debug for LateEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateEnv").field("value_at", &self.value_at).finish_non_exhaustive()
    }
}

/// What a parked init reads on its go pipe before it starts the command:
/// fixed size, read without allocating. A short read (cordon gave up)
/// makes init exit.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct GoMessage {
    /// [`GoMessage::TAG`].
    pub tag: u8,
    /// 1: `late_env` replaces the [`LateEnv`] placeholder; 0: it stays.
    pub has_late_env: u8,
    /// The late environment value.
    pub late_env: [u8; LATE_ENV_BYTES],
}

impl GoMessage {
    /// Size on the wire (below `PIPE_BUF`: one atomic write).
    pub const SIZE: usize = std::mem::size_of::<GoMessage>();
    /// The first byte of every go message.
    pub const TAG: u8 = b'g';

    /// A message that starts the command, with `late_env` when given.
    pub fn new(late_env: Option<[u8; LATE_ENV_BYTES]>) -> Self {
        GoMessage {
            tag: Self::TAG,
            has_late_env: u8::from(late_env.is_some()),
            late_env: late_env.unwrap_or([0; LATE_ENV_BYTES]),
        }
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0] = self.tag;
        b[1] = self.has_late_env;
        b[2..].copy_from_slice(&self.late_env);
        b
    }

    fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut late_env = [0u8; LATE_ENV_BYTES];
        late_env.copy_from_slice(&b[2..]);
        GoMessage { tag: b[0], has_late_env: b[1], late_env }
    }
}

/// Who supervises the command inside the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Supervision {
    /// A minimal init is pid 1 of a new pid namespace; the command is its child.
    Init,
    /// The cloned process execs the command itself (dev mode).
    Direct,
}

/// One filesystem step of building the container root, prepared by the parent.
#[derive(Debug)]
pub enum MountOp {
    /// `mount(src, target, fstype, flags, data)`.
    Mount {
        /// Source (`tmpfs`, `proc`, or a path to bind).
        src: CString,
        /// Mount point.
        target: CString,
        /// File system type; empty for binds.
        fstype: CString,
        /// `MS_*` flags.
        flags: c_ulong,
        /// Options string; empty for none.
        data: CString,
    },
    /// `mount_setattr(path, AT_RECURSIVE?)` setting `attr` (`MOUNT_ATTR_*`).
    SetAttr {
        /// The mount.
        path: CString,
        /// `MOUNT_ATTR_*` bits to set.
        attr: u64,
        /// Whether submounts are included.
        recursive: bool,
    },
    /// `open_tree(path, OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy of
    /// the mounts at `path`, kept in [`ChildSpec::tree_slots`]`[slot]` until
    /// an [`MountOp::AttachTree`] mounts it (after a mount hid `path`).
    /// `path` is resolved already and opened without following links
    /// (`ELOOP` fails the run).
    CloneTree {
        /// What to copy.
        path: CString,
        /// Where the descriptor is kept.
        slot: usize,
    },
    /// Sets `attr` (unless 0) on every mount of the tree in `slot`
    /// (`mount_setattr(AT_EMPTY_PATH | AT_RECURSIVE)`), then `move_mount`s
    /// it onto `target`, opened without following links.
    AttachTree {
        /// The slot a [`MountOp::CloneTree`] filled.
        slot: usize,
        /// Mount point.
        target: CString,
        /// `MOUNT_ATTR_*` bits to set.
        attr: u64,
    },
    /// `mkdir(path, mode)`; an existing path is fine.
    Mkdir {
        /// Path.
        path: CString,
        /// Mode.
        mode: u32,
    },
    /// Creates an empty file (a mount point for a file bind); existing is fine.
    Touch {
        /// Path.
        path: CString,
    },
    /// `symlink(target, path)`.
    Symlink {
        /// What the link points to.
        target: CString,
        /// Where the link is made.
        path: CString,
    },
    /// Creates (or truncates) `path` with mode 0644 and writes `contents`.
    WriteFile {
        /// Path.
        path: CString,
        /// What the file holds.
        contents: Vec<u8>,
    },
    /// `chdir(path)`.
    Chdir {
        /// Path.
        path: CString,
    },
    /// `pivot_root(new, put_old)`.
    PivotRoot {
        /// New root.
        new_root: CString,
        /// Where the old root goes.
        put_old: CString,
    },
    /// `umount2(path, MNT_DETACH)`, made by a thread of init's beside the
    /// rest of its set-up; the command's process waits for it before the
    /// command runs (`start_detach`, `await_detach`).
    Detach {
        /// Mount point.
        path: CString,
    },
}

/// Where the command's stderr goes when it gets a pty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtyStderr {
    /// To the pty, like stdout.
    Pty,
    /// To cordon's own stderr (which is not a terminal).
    Inherit,
}

/// The command's terminal, prepared by the parent.
#[derive(Debug)]
pub enum ChildTerminal {
    /// None of its own: with init, the command shares init's process
    /// group, in cordon's session (see [`init_group`]); without, see
    /// [`lead_group_or_session`]. A caller's terminal never reaches init:
    /// cordon relays it through pipes.
    Detached,
    /// Init allocates a pty pair from the sandbox's own `/dev/ptmx`, sizes
    /// it, sends the master to cordon over `channel` (`SCM_RIGHTS`) and gives
    /// the command the slave on fds 0 and 1 (and 2, per `stderr`) as the
    /// controlling terminal of a session of its own.
    Allocate {
        /// cordon's end receives the master.
        channel: OwnedFd,
        /// Initial window size: rows, columns.
        size: (u16, u16),
        /// Where stderr goes.
        stderr: PtyStderr,
    },
    /// The slave of a pair cordon allocated is already the command's fd 0
    /// (dev mode): the command makes it its controlling terminal.
    Given,
}

/// Which part of [`ChildStage::Terminal`] failed (the failure's index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum TerminalStep {
    /// Opening `/dev/ptmx`.
    OpenPtmx = 0,
    /// Unlocking the slave, sizing the pty or opening the slave.
    SetUp = 1,
    /// Sending the master to cordon.
    SendMaster = 2,
    /// `TIOCSCTTY`.
    ControllingTerminal = 3,
}

impl TerminalStep {
    /// What the step is, for error messages.
    pub fn describe(index: u32) -> &'static str {
        match index {
            0 => "opening the sandbox's /dev/ptmx",
            1 => "setting up the pty",
            2 => "handing the pty to cordon",
            3 => "making the pty the controlling terminal",
            _ => "an unknown terminal step",
        }
    }
}

/// A Landlock rule added inside the sandbox, for paths that exist only there
/// (the container's own `/tmp` and `/proc`).
#[derive(Debug)]
pub struct LateRule {
    /// Path inside the sandbox.
    pub path: CString,
    /// `LANDLOCK_ACCESS_FS_*` bits, for a directory.
    pub access: u64,
    /// The same, for a file (without the directory-only rights, which the
    /// kernel refuses on a file): whether the path is one shows only inside.
    pub file_access: u64,
}

/// Transparent egress, child side: the command's `connect()` calls stop at
/// cordon (seccomp user notification), and a connect helper serves the
/// connects that must run in the sandbox's own context (see
/// [`super::helper`]).
#[derive(Debug)]
pub struct EgressChild {
    /// The command's process sends the notification listener of its
    /// seccomp filter to cordon over this socket (`SCM_RIGHTS`), then
    /// closes its own copy before `execve`.
    pub listener_channel: OwnedFd,
    /// The helper's end of its channel to cordon.
    pub helper_channel: OwnedFd,
    /// The helper's own seccomp filter.
    pub helper_filter: BpfProgram,
    /// The helper's stack (it shares init's memory, as the command's
    /// process does until it execs).
    pub helper_stack: super::Stack,
}

/// Everything the child needs, prepared by the parent before `clone`.
#[derive(Debug)]
pub struct ChildSpec {
    /// Absolute path of the executable.
    pub exe: CString,
    /// argv.
    pub argv: CStringArray,
    /// envp.
    pub envp: CStringArray,
    /// The entry of `envp` init completes from the go message, if any.
    pub late_env: Option<LateEnv>,
    /// Working directory of the command.
    pub cwd: Option<CString>,
    /// `uid_map` and `gid_map` contents when a user namespace is created.
    pub id_maps: Option<(Vec<u8>, Vec<u8>)>,
    /// Read end of the "go" pipe: when set, init waits for a [`GoMessage`]
    /// after the mounts, before it starts the command. cordon creates the
    /// run's cgroups and moves init into them meanwhile, in parallel with
    /// init's own setup, and a parked sandbox waits here until it is
    /// started; EOF means cordon gave up, and init exits.
    pub go: Option<OwnedFd>,
    /// Enter a new cgroup namespace (after the "go", so it is rooted in the
    /// run's cgroup).
    pub cgroup_namespace: bool,
    /// Steps that build the sandbox's mounts, run by init.
    pub mounts: Vec<MountOp>,
    /// One slot per [`MountOp::CloneTree`] (`-1` until filled). Init has its
    /// own copy of the parent's memory, so it writes here without
    /// allocating.
    pub tree_slots: Vec<std::sync::atomic::AtomicI32>,
    /// `(path, value)`: sysctls of the run's own namespaces (full paths
    /// below `/proc/sys`), written by init before the mounts, while it holds
    /// every capability in the run's user namespace.
    pub sysctls: Vec<(CString, CString)>,
    /// The run gets a network namespace of its own, made by init's network
    /// helper beside the mounts (see `init_main`), with `lo` up. The
    /// sandbox's `clone` does not ask for one.
    pub loopback_up: bool,
    /// Init listens on `127.0.0.1:port` inside the sandbox's network
    /// namespace and sends the listening socket to cordon over this socket
    /// (`SCM_RIGHTS`): the proxy then serves, from the host's namespace, the
    /// only address the sandbox can reach.
    pub proxy_listener: Option<(OwnedFd, u16)>,
    /// Init binds a UDP socket and a TCP listener to `127.0.0.1:53` inside
    /// the sandbox's network namespace and sends both to cordon over this
    /// socket, UDP first: cordon's stub DNS serves them.
    pub dns_sockets: Option<OwnedFd>,
    /// Host name in the new UTS namespace.
    pub hostname: Option<CString>,
    /// Resource limits for the command.
    pub rlimits: Vec<(c_int, libc::rlimit)>,
    /// Drop every capability (and the bounding set) before exec.
    pub drop_capabilities: bool,
    /// The highest capability number (read only with `drop_capabilities`).
    pub last_cap: c_int,
    /// A created Landlock ruleset, and rules to add inside the sandbox.
    pub landlock: Option<(OwnedFd, Vec<LateRule>)>,
    /// Landlock `restrict_self` flags.
    pub landlock_flags: u32,
    /// The command's seccomp program, in a memory file cordon fills and
    /// seals ([`super::fill_program_file`]) before the go message (without
    /// init, before the clone): compiled while init builds the mounts. The
    /// command's process maps it, refuses it unsealed, and loads it last,
    /// with a notification listener when there is `egress`.
    pub seccomp: Option<OwnedFd>,
    /// Transparent egress: the connect helper and the listener's way out.
    pub egress: Option<EgressChild>,
    /// Replacement stdin/stdout/stderr, `None` to inherit; and a descriptor
    /// the command gets as fd 3 (a plugin handler's result channel).
    pub stdio: [Option<OwnedFd>; 4],
    /// The command's terminal.
    pub terminal: ChildTerminal,
    /// Write end of the report pipe (close-on-exec).
    pub report: OwnedFd,
    /// Write end of the status pipe, for init.
    pub status: Option<OwnedFd>,
    /// Read end of the lifeline pipe; EOF there means cordon is gone.
    pub lifeline: Option<OwnedFd>,
    /// Who supervises the command.
    pub supervision: Supervision,
    /// Stack for the command's process between its `clone` and `execve`.
    pub command_stack: super::Stack,
    /// Write end of the trace pipe (`CORDON_TRACE`): the child writes a
    /// [`MarkRecord`] at each [`ChildMark`].
    pub trace: Option<OwnedFd>,
    /// The signal that asks init to end the run: kill every process, reap
    /// them (so their CPU time reaches init's rusage), report, exit.
    pub kill_request: c_int,
}

impl ChildSpec {
    /// Calls `f` with every descriptor the spec holds: the ones init keeps
    /// when it closes what it inherited ([`close_inherited`]). Every field
    /// is named (no `..`), so a field added to the spec does not compile
    /// until it is sorted here: a new descriptor cannot be closed
    /// silently. Allocation-free (init runs it).
    pub(super) fn for_each_fd(&self, mut f: impl FnMut(&OwnedFd)) {
        let ChildSpec {
            exe: _,
            argv: _,
            envp: _,
            late_env: _,
            cwd: _,
            id_maps: _,
            go,
            cgroup_namespace: _,
            mounts: _,
            tree_slots: _,
            sysctls: _,
            loopback_up: _,
            proxy_listener,
            dns_sockets,
            hostname: _,
            rlimits: _,
            drop_capabilities: _,
            last_cap: _,
            landlock,
            landlock_flags: _,
            seccomp,
            egress,
            stdio,
            terminal,
            report,
            status,
            lifeline,
            supervision: _,
            command_stack: _,
            trace,
            kill_request: _,
        } = self;
        let mut opt = |fd: Option<&OwnedFd>| fd.into_iter().for_each(&mut f);
        opt(go.as_ref());
        opt(proxy_listener.as_ref().map(|(fd, _)| fd));
        opt(dns_sockets.as_ref());
        opt(landlock.as_ref().map(|(fd, _)| fd));
        opt(seccomp.as_ref());
        if let Some(EgressChild { listener_channel, helper_channel, helper_filter: _, helper_stack: _ }) = egress {
            opt(Some(listener_channel));
            opt(Some(helper_channel));
        }
        stdio.iter().for_each(|fd| opt(fd.as_ref()));
        match terminal {
            ChildTerminal::Allocate { channel, size: _, stderr: _ } => opt(Some(channel)),
            ChildTerminal::Detached | ChildTerminal::Given => {}
        }
        opt(Some(report));
        opt(status.as_ref());
        opt(lifeline.as_ref());
        opt(trace.as_ref());
    }
}

impl ChildSpec {
    /// Closes the descriptors the spec holds (cordon's copies of the
    /// child's ends, which must go at once: the report pipe reaches end of
    /// file only when every write end is closed, the lifeline hangs up
    /// only when cordon goes) and keeps the rest of it, to be dropped once
    /// init has exited ([`SpecMemory`]). Every field is named, as in
    /// [`ChildSpec::for_each_fd`]: a descriptor added to the spec does not
    /// compile until it is sorted here.
    pub fn close_descriptors(self) -> SpecMemory {
        let ChildSpec {
            exe,
            argv,
            envp,
            late_env,
            cwd,
            id_maps,
            go,
            cgroup_namespace: _,
            mounts,
            tree_slots,
            sysctls,
            loopback_up: _,
            proxy_listener,
            dns_sockets,
            hostname,
            rlimits,
            drop_capabilities: _,
            last_cap: _,
            landlock,
            landlock_flags: _,
            seccomp,
            egress,
            stdio,
            terminal,
            report,
            status,
            lifeline,
            supervision: _,
            command_stack,
            trace,
            kill_request: _,
        } = self;
        let late_rules = landlock.map(|(ruleset, rules)| {
            drop(ruleset);
            rules
        });
        let helper = egress.map(|EgressChild { listener_channel, helper_channel, helper_filter, helper_stack }| {
            drop((listener_channel, helper_channel));
            (helper_filter, helper_stack)
        });
        drop((go, proxy_listener, dns_sockets, seccomp, stdio, terminal, report, status, lifeline, trace));
        SpecMemory {
            _command: (exe, argv.into_items(), envp.into_items()),
            _late_env: late_env,
            _names: (cwd, hostname),
            _id_maps: id_maps,
            _mounts: mounts,
            _tree_slots: tree_slots,
            _sysctls: sysctls,
            _rlimits: rlimits,
            _late_rules: late_rules,
            _helper: helper,
            _command_stack: command_stack,
        }
    }
}

/// What a [`ChildSpec`] holds in memory (its mount steps, strings, rules,
/// the stacks), kept by cordon after the clone until the sandbox is gone.
/// Init is a fork: until it exits it shares cordon's pages copy-on-write,
/// and freeing the spec right after the clone wrote to each page its ~150
/// mount steps and strings lie on (malloc's free lists), so cordon copied
/// those pages while init and its network helper built the sandbox on the
/// CPUs. Dropped after init's exit, the same frees copy nothing.
#[derive(Debug)]
pub struct SpecMemory {
    _command: (CString, Vec<CString>, Vec<CString>),
    _late_env: Option<LateEnv>,
    _names: (Option<CString>, Option<CString>),
    _id_maps: Option<(Vec<u8>, Vec<u8>)>,
    _mounts: Vec<MountOp>,
    _tree_slots: Vec<AtomicI32>,
    _sysctls: Vec<(CString, CString)>,
    _rlimits: Vec<(c_int, libc::rlimit)>,
    _late_rules: Option<Vec<LateRule>>,
    _helper: Option<(BpfProgram, super::Stack)>,
    _command_stack: super::Stack,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reports a failed step on the report pipe and exits.
fn fail(spec: &ChildSpec, stage: ChildStage, index: u32) -> ! {
    fail_with(spec, stage, index, errno())
}

/// [`fail`] with an errno of our choosing: a step that failed a check of
/// its own rather than a syscall.
fn fail_with(spec: &ChildSpec, stage: ChildStage, index: u32, errno: i32) -> ! {
    let f = ChildFailure { stage: stage as u32, errno, index };
    // SAFETY: `f` is a plain repr(C) value of SIZE bytes; write only reads it.
    unsafe { libc::write(spec.report.as_raw_fd(), (&f as *const ChildFailure).cast(), ChildFailure::SIZE) };
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(127) }
}

/// Runs `rc`-returning call and fails the step when it returned -1.
macro_rules! check {
    ($spec:expr, $stage:expr, $idx:expr, $call:expr) => {
        if $call == -1 {
            fail($spec, $stage, $idx)
        }
    };
}

/// The child's entry point after `clone`. Never returns.
pub(super) fn child_main(spec: &ChildSpec, handlers: super::HandlersCleared) -> ! {
    match spec.supervision {
        Supervision::Direct => {
            lead_group_or_session(spec);
            unblock_signals_with_default_handlers(handlers);
            exec_command(spec, -1, None)
        }
        Supervision::Init => init_main(spec),
    }
}

/// Dev mode's command leads a process group of its own: the group the
/// supervisor signals, and kills when the command ends. It also leads a
/// session of its own wherever there is a terminal to keep it from: with a
/// pty of the run's own (which becomes its controlling terminal), and when
/// cordon's session has a controlling terminal, so keys typed there signal
/// cordon alone (which forwards them once) and the command cannot reach
/// that terminal through `/dev/tty`. Without one, a new session would
/// change nothing the command can reach but its session id, and it is not
/// cheap: with the scheduler's autogroups, `setsid` makes a task group
/// (35 to 440 µs measured on a 2-core VM, against 0.4 µs for `setpgid`).
/// Only `ENXIO` from `/dev/tty` (no controlling terminal) skips the
/// session; any other answer keeps it. No memory involved.
fn lead_group_or_session(spec: &ChildSpec) {
    let session = match spec.terminal {
        ChildTerminal::Given => true,
        ChildTerminal::Detached | ChildTerminal::Allocate { .. } => has_controlling_terminal(),
    };
    let rc = if session {
        // SAFETY: setsid takes no arguments.
        unsafe { libc::setsid() }
    } else {
        // SAFETY: integer arguments: this process leads a group of its own.
        unsafe { libc::setpgid(0, 0) }
    };
    check!(spec, ChildStage::Session, 0, rc);
}

/// Whether this process's session has a controlling terminal: `/dev/tty`
/// opens (without becoming the controlling terminal of anything, and
/// without waiting for a line), or fails otherwise than with `ENXIO`, the
/// kernel's answer when there is none.
fn has_controlling_terminal() -> bool {
    let flags = libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: a constant C string; integer flags; the result is checked.
    let fd = unsafe { libc::open(c"/dev/tty".as_ptr(), flags) };
    if fd < 0 {
        return errno() != libc::ENXIO;
    }
    // SAFETY: the descriptor just opened, ours alone.
    unsafe { libc::close(fd) };
    true
}

/// Init leads a process group of its own, which the command and what it
/// starts share: no signal sent to cordon's group reaches them. It stays
/// in cordon's session: `setsid` would make a scheduler autogroup (114 to
/// 440 µs measured in a user and pid namespace on a 2-core VM, and every
/// later step of the run then waits in a group of its own), and a session
/// of its own would take the sandbox out of the caller's job control.
/// Staying there reaches nothing: no descriptor of the caller's terminal
/// enters the sandbox (cordon relays it through pipes), the plan grants
/// `/dev/tty` only where the command has a pty of the run's own (as the
/// controlling terminal of the session it makes in [`attach_pty`]), so no
/// process of the sandbox can open the controlling terminal cordon's
/// session has or gets later; and the pid namespace hides every group and
/// session outside it from `kill`, `setpgid` and `getsid`.
fn init_group(spec: &ChildSpec) {
    // SAFETY: integer arguments: this process leads a group of its own.
    check!(spec, ChildStage::Session, 0, unsafe { libc::setpgid(0, 0) });
}

fn init_main(spec: &ChildSpec) -> ! {
    // SAFETY: prctl with integer arguments only.
    check!(spec, ChildStage::Lifeline, 0, unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) });
    if let Some(lifeline) = &spec.lifeline {
        // cordon may have died before PR_SET_PDEATHSIG took effect. Its end of
        // the lifeline is the only write end left (ours was closed on clone by
        // the parent holding the only copy), so a hang-up means it is gone.
        let mut p = libc::pollfd { fd: lifeline.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) };
        if p.revents & (libc::POLLHUP | libc::POLLIN) != 0 {
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(1) }
        }
    }
    // First a group of its own: the helper below is made in it, out of
    // reach of what is sent to cordon's group.
    init_group(spec);
    // The run's network namespace is made beside the mounts: the most
    // costly namespace to make (every network subsystem sets up its part)
    // is made by a helper on the other CPU while init builds the mounts,
    // instead of in cordon's `clone` before init runs at all. The helper
    // brings `lo` up and hands the sandbox's listeners over in it; init
    // joins it before anything of the command runs, and does nothing with
    // the network before (it stays in cordon's network namespace until
    // then, with no capability there). Once the mounts no longer wait for
    // the old root's detach, the helper is what init waits for, so it
    // starts first: it needs only the capabilities init holds in its user
    // namespace from the clone on, not the id maps (a map changes no
    // credential), and it shares init's memory, so init's
    // PR_SET_DUMPABLE below covers it too.
    let network = NetworkStart { spec, netns: AtomicI32::new(-1) };
    let helper = match spec.loopback_up {
        true => Some(start_network_helper(&network)),
        false => None,
    };
    mark(spec, ChildMark::Started);
    // Opened before the mounts, from the host's view: what the command's
    // replaced stdio slots of a parked init point at ([`close_inherited`]).
    let null = match spec.go {
        // SAFETY: a constant C string; the result is checked.
        Some(_) => unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) },
        None => -1,
    };
    if spec.go.is_some() && null == -1 {
        fail(spec, ChildStage::Stdio, 0);
    }
    if let Some((uid_map, gid_map)) = &spec.id_maps {
        write_file(spec, c"/proc/self/setgroups", b"deny", ChildStage::IdMaps, 0);
        write_file(spec, c"/proc/self/uid_map", uid_map, ChildStage::IdMaps, 0);
        write_file(spec, c"/proc/self/gid_map", gid_map, ChildStage::IdMaps, 0);
        mark(spec, ChildMark::IdMaps);
    }
    // Init's memory is a copy of its parent's (cordon's, or the service's
    // spawner's: their whole environment, secrets included) and is shared
    // by the command's process until its exec and by the connect helper for
    // its whole life, under the command's credentials. Not dumpable, the
    // command can open none of it (/proc/PID/mem, environ, fd/N) in any of
    // those processes, also not before the helper's own prctl. After the id
    // maps: a non-dumpable process's /proc/self files belong to the
    // initial namespace's root.
    // SAFETY: prctl with integer arguments only.
    check!(spec, ChildStage::Dumpable, 0, unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) });
    if helper.is_none() {
        make_listeners(spec);
    }
    if let Some(name) = &spec.hostname {
        // SAFETY: `name` is a valid C string; length excludes the NUL.
        check!(spec, ChildStage::Hostname, 0, unsafe { libc::sethostname(name.as_ptr(), name.as_bytes().len()) });
    }
    for (i, (path, value)) in spec.sysctls.iter().enumerate() {
        write_file(spec, path, value.as_bytes(), ChildStage::Sysctl, u32::try_from(i).unwrap_or(u32::MAX));
    }
    mark(spec, ChildMark::Network);
    // Container mode's last mount step detaches the host's root, which
    // pivot_root left stacked on the new one. Its umount waits for an RCU
    // grace period (synchronize_rcu_expedited: 0.1-0.3 ms here, almost all
    // of it asleep), so a thread of init's makes it while init and the
    // command's process go on; the command's process waits for it before
    // anything of the command can run (`await_detach`).
    let detaching = detach_step(spec);
    for (i, op) in spec.mounts.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        match (op, &detaching) {
            (MountOp::Detach { .. }, Some(d)) if d.index == i => start_detach(spec, d),
            _ => apply_mount_op(spec, op, i),
        }
    }
    mark(spec, ChildMark::Mounts);
    if let Some(helper) = helper {
        join_network(&network, helper);
        mark(spec, ChildMark::NetworkJoined);
    }
    if let Some(go) = &spec.go {
        close_inherited(spec, null);
        let message = read_go_message(go.as_raw_fd());
        if let (Some(late), Some(message)) = (&spec.late_env, &message) {
            if message.has_late_env == 1 {
                late.set(&message.late_env);
            }
        }
        if message.is_none() {
            // SAFETY: _exit never returns. cordon reports its own error.
            unsafe { libc::_exit(1) }
        }
        mark(spec, ChildMark::Go);
    }
    if spec.cgroup_namespace {
        // SAFETY: unshare with a flag only.
        check!(spec, ChildStage::CgroupNamespace, 0, unsafe { libc::unshare(libc::CLONE_NEWCGROUP) });
    }
    // The mounts are done: /dev/ptmx is the sandbox's own.
    let tty = match &spec.terminal {
        ChildTerminal::Allocate { channel, size, .. } => allocate_pty(spec, channel.as_raw_fd(), *size),
        _ => -1,
    };
    mark(spec, ChildMark::Namespaces);

    // Block every signal: init takes them with sigwaitinfo, so none can
    // interrupt it, and none is lost between fork and the wait loop.
    // SAFETY: sigset_t is plain data, filled by sigfillset before use.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointer.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: valid sigset pointer; the old mask is not needed.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) };

    // The command's process shares init's memory until it execs
    // (CLONE_VM | CLONE_VFORK, as posix_spawn does): no page tables to copy,
    // no copy-on-write faults, and init waits until the exec is done. It runs
    // on its own stack from the spec, and only makes syscalls.
    let start =
        CommandStart { spec, tty, detaching: detaching.as_ref(), handlers: std::sync::atomic::AtomicBool::new(false) };
    // SAFETY: `start` (and the spec it points to) outlives the child's use
    // of it, since init is suspended until the child execs or exits; the
    // child runs `command_entry`, which execs or _exits.
    let cmd = unsafe {
        super::clone_vm(
            command_entry,
            &spec.command_stack,
            libc::CLONE_VFORK,
            std::ptr::null_mut(),
            (&start as *const CommandStart<'_>).cast_mut().cast(),
            &start.handlers,
        )
    };
    if cmd == -1 {
        fail(spec, ChildStage::Fork, 0);
    }
    // From here init needs only its status pipe. Everything else it
    // inherited from cordon goes: the report pipe (so cordon sees EOF there
    // once the command has exec'd), the command's stdio, and cordon's own
    // ends of the pipes (a stdin writer init kept open would keep a command
    // reading its input to the end waiting forever), and the pty's slave
    // (the pty hangs up when the command's processes are gone).
    let keep = spec.status.as_ref().map_or(-1, |s| s.as_raw_fd());
    close_all_from(3, keep);
    init_loop(spec, cmd)
}

/// Reads one whole [`GoMessage`] into a stack buffer; `None` on EOF or
/// error before it is complete, or a wrong tag.
fn read_go_message(fd: RawFd) -> Option<GoMessage> {
    let mut buf = [0u8; GoMessage::SIZE];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into the unfilled rest of a live local buffer.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            -1 if errno() == libc::EINTR => {}
            n if n <= 0 => return None,
            n => got += n as usize,
        }
    }
    Some(GoMessage::from_bytes(&buf)).filter(|m| m.tag == GoMessage::TAG)
}

/// Closes every descriptor >= 3 that is not one of the spec's own
/// ([`ChildSpec::for_each_fd`]): what init inherited from cordon, i.e.
/// every file and socket cordon had open at the clone, other runs' pipe
/// ends among them. Done before init waits at its go pipe, so that a
/// parked sandbox keeps no other run's pipe open (whose reader would wait
/// for its end of file as long as it is parked). Also points each of fds
/// 0..=2 the command gets a replacement for at `null` (`/dev/null`, opened
/// by init before its mounts), so that a parked init holds no caller's
/// stdout or stderr (a log pipe's reader would wait for it); a slot the
/// command inherits (`None`) is kept. `null` itself is closed here.
fn close_inherited(spec: &ChildSpec, null: c_int) {
    for (i, slot) in (0..).zip(&spec.stdio[..3]) {
        if slot.is_some() && null != i {
            // SAFETY: dup2 with integer arguments; `null` is open.
            check!(spec, ChildStage::Stdio, i as u32, unsafe { libc::dup2(null, i) });
        }
    }
    let mut keep = [-1 as c_int; 24];
    let mut n = 0;
    let mut overflow = false;
    spec.for_each_fd(|fd| match keep.get_mut(n) {
        Some(k) => {
            *k = fd.as_raw_fd();
            n += 1;
        }
        None => overflow = true,
    });
    if overflow {
        // More descriptors than the keep list holds: a spec this code was
        // not sized for. Closing some of them would break the run later
        // and obscurely; fail it now.
        fail_with(spec, ChildStage::CloseFds, 0, libc::EMFILE);
    }
    let keep = &mut keep[..n];
    keep.sort_unstable();
    let mut next: u32 = 3;
    for k in keep.iter().filter_map(|k| u32::try_from(*k).ok()) {
        if k > next {
            // SAFETY: close_range with integer arguments.
            unsafe { libc::syscall(libc::SYS_close_range, next, k - 1, 0u32) };
        }
        next = next.max(k + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0u32) };
}

/// Closes every descriptor >= `first` except `keep` (-1: none).
fn close_all_from(first: c_int, keep: c_int) {
    let first = u32::try_from(first).unwrap_or(3);
    match u32::try_from(keep) {
        Ok(k) if k >= first => {
            if k > first {
                // SAFETY: close_range with integer arguments.
                unsafe { libc::syscall(libc::SYS_close_range, first, k - 1, 0u32) };
            }
            // SAFETY: as above.
            unsafe { libc::syscall(libc::SYS_close_range, k + 1, u32::MAX, 0u32) };
        }
        _ => {
            // SAFETY: as above.
            unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
        }
    }
}

/// What init hands the command's process: the spec, and the pty slave it
/// allocated (-1: none).
struct CommandStart<'a> {
    spec: &'a ChildSpec,
    tty: c_int,
    detaching: Option<&'a Detaching>,
    /// Whether the kernel put back our handled signals' default actions
    /// (see `super::clone_vm`).
    handlers: std::sync::atomic::AtomicBool,
}

/// Opens a pty pair from the sandbox's `/dev/ptmx`, sizes it, sends the
/// master to cordon and returns the slave (close-on-exec).
fn allocate_pty(spec: &ChildSpec, channel: RawFd, (rows, cols): (u16, u16)) -> c_int {
    let st = ChildStage::Terminal;
    // SAFETY: a valid C string; integer flags.
    let master = unsafe { libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    check!(spec, st, TerminalStep::OpenPtmx as u32, master);
    let unlock: c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a live local.
    check!(spec, st, TerminalStep::SetUp as u32, unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) });
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from a live local.
    check!(spec, st, TerminalStep::SetUp as u32, unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) });
    // TIOCGPTPEER opens the slave of this very master, with no path lookup.
    // SAFETY: integer arguments; it returns a new descriptor.
    let slave = unsafe { libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    check!(spec, st, TerminalStep::SetUp as u32, slave);
    if super::send_byte_with_fd(channel, master) == -1 {
        fail(spec, st, TerminalStep::SendMaster as u32);
    }
    // SAFETY: cordon holds its own copy now; ours goes.
    unsafe { libc::close(master) };
    slave
}

/// `clone(CLONE_VM | extra | SIGCHLD)` running `entry(arg)` on `stack`: a
/// process sharing this memory, on a stack of its own. Returns what `clone`
/// returned.
///
/// # Safety
///
/// `entry` must never return into the caller's frames (it execs or
/// `_exit`s); `stack` must live as long as the memory the child shares
/// with the caller (a mapping of the spec, which lives in init's memory);
/// `arg` must stay valid for as long as the child reads it.
unsafe fn clone_on_stack(
    entry: extern "C" fn(*mut libc::c_void) -> c_int,
    stack: &super::Stack,
    extra: c_int,
    arg: *mut libc::c_void,
) -> c_int {
    let top = stack.top();
    // SAFETY: the caller's contract; `top` is the 16-byte-aligned end of
    // `stack`'s mapping.
    unsafe { libc::clone(entry, top as *mut libc::c_void, libc::CLONE_VM | extra | libc::SIGCHLD, arg) }
}

/// Entry of the command's process (see `init_main`).
extern "C" fn command_entry(arg: *mut libc::c_void) -> c_int {
    // SAFETY: `arg` is the `&CommandStart` init passed to clone; init is
    // suspended (CLONE_VFORK) and it lives in init's memory, which we share.
    let start = unsafe { &*(arg as *const CommandStart<'_>) };
    let spec = start.spec;
    unblock_signals_with_default_handlers(super::HandlersCleared::from(&start.handlers));
    exec_command(spec, start.tty, start.detaching)
}

/// The command starts with no blocked signal, whatever cordon blocked. A
/// process that shares its parent's memory until `execve` (`CLONE_VM`, both
/// ways cordon starts a command) is entered with every signal blocked and
/// first puts back the default action of each signal the parent handles, as
/// `posix_spawn` does: a handler of the program that embeds cordon must
/// never run here, on memory it shares with the process it was written for.
/// `execve` would reset them anyway; ignored signals stay ignored until
/// [`exec_command`] sees to `SIGPIPE`. glibc's internal signals (32 and 33)
/// are left alone, as glibc does. Where the kernel has put the default
/// actions back already (`CLONE_CLEAR_SIGHAND`, see `super::clone_vm`),
/// only the mask is cleared.
fn unblock_signals_with_default_handlers(handlers: super::HandlersCleared) {
    let asked = if handlers == super::HandlersCleared::No { 64 } else { 0 };
    for sig in 1..=asked {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == 32 || sig == 33 {
            continue;
        }
        // SAFETY: sigaction is plain data; the kernel fills it.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a NULL new action only reads the current one into `old`.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == -1 {
            continue;
        }
        if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
            // SAFETY: plain data, then the default action: no handler code.
            let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
            dfl.sa_sigaction = libc::SIG_DFL;
            // SAFETY: a live sigaction value; the old action is not wanted.
            unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
        }
    }
    // SAFETY: plain data, initialised by sigemptyset before use.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointer.
    unsafe { libc::sigemptyset(&mut empty) };
    // SAFETY: valid sigset pointer.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
}

fn init_loop(spec: &ChildSpec, cmd: libc::pid_t) -> ! {
    // SAFETY: plain data, filled by sigfillset.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::sigfillset(&mut all) };
    loop {
        // SAFETY: siginfo_t is plain data; the kernel fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid set and info pointers.
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        match sig {
            -1 => continue,
            libc::SIGCHLD => loop {
                let mut status = 0;
                // SAFETY: `status` is a live local.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == cmd {
                    finish(spec, status);
                }
            },
            s if s == spec.kill_request => kill_all_and_finish(spec, cmd),
            // Termination requests and job control go to every process of
            // the run, once each, as a terminal signals its foreground group.
            libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT | libc::SIGCONT => {
                // SAFETY: kill(-1) from pid 1 reaches every other process in this pid namespace.
                unsafe { libc::kill(-1, sig) };
            }
            // cordon stops for job control: the whole run stops with it,
            // whatever its processes do with SIGTSTP (none can catch or
            // ignore SIGSTOP), so nothing of it runs while cordon cannot
            // enforce its time limit. SIGCONT (above) resumes it.
            libc::SIGTSTP => {
                // SAFETY: kill(-1) from pid 1 reaches every other process in this pid namespace.
                unsafe { libc::kill(-1, libc::SIGSTOP) };
            }
            other => {
                // SAFETY: forwards to our own child.
                unsafe { libc::kill(cmd, other) };
            }
        }
    }
}

/// cordon ends the run: kill everything, reap everything (keeping the
/// command's status), report, exit. Reaping here rather than letting the
/// kernel tear the namespace down keeps every process's CPU time in the
/// rusage cordon reads: the kernel auto-reaps when init dies, and drops it.
fn kill_all_and_finish(spec: &ChildSpec, cmd: libc::pid_t) -> ! {
    // SAFETY: kill(-1) from pid 1 reaches every other process in this pid namespace.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    let mut cmd_status = libc::SIGKILL; // as a wait status: killed by SIGKILL
    loop {
        let mut st = 0;
        // SAFETY: `st` is a live local.
        let pid = unsafe { libc::waitpid(-1, &mut st, 0) };
        if pid == cmd {
            cmd_status = st;
        } else if pid == -1 && errno() != libc::EINTR {
            break;
        }
    }
    finish(spec, cmd_status)
}

/// The command is gone: kill the rest, reap them, report, exit.
fn finish(spec: &ChildSpec, status: c_int) -> ! {
    // SAFETY: kill(-1) from pid 1 reaches every other process in this pid namespace.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    loop {
        let mut st = 0;
        // SAFETY: `st` is a live local.
        if unsafe { libc::waitpid(-1, &mut st, 0) } == -1 && errno() != libc::EINTR {
            break;
        }
    }
    if let Some(fd) = &spec.status {
        let r = StatusRecord::now(status);
        // SAFETY: `r` is a plain repr(C) value of SIZE bytes; write only reads it.
        unsafe { libc::write(fd.as_raw_fd(), (&r as *const StatusRecord).cast(), StatusRecord::SIZE) };
    }
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(0) }
}

/// What init writes to the status pipe once every other process of the
/// run is reaped (ECHILD: none is left in its pid namespace): the
/// command's wait status and the accounting `wait4` of init would return
/// (init's own and that of every process it reaped). cordon answers the
/// run from it without waiting for init's exit, whose teardown of the
/// namespaces (the mount tree, an RCU grace period) then runs beside
/// cordon's own work; init's CPU time after this write is not in it. 32
/// bytes, one `write(2)` (atomic on a pipe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct StatusRecord {
    /// The command's raw wait status.
    pub status: i32,
    /// Unused, zero.
    pub pad: u32,
    /// User CPU time, microseconds.
    pub user_us: u64,
    /// System CPU time, microseconds.
    pub sys_us: u64,
    /// Largest resident set of init and of any process it reaped, KiB.
    pub max_rss_kb: u64,
}

impl StatusRecord {
    /// Size on the wire.
    pub const SIZE: usize = std::mem::size_of::<StatusRecord>();

    /// `status` with init's accounting so far: `getrusage` of itself and
    /// of its reaped children, as `wait4` sums them.
    fn now(status: c_int) -> Self {
        // SAFETY: rusage is plain data; all-zero is a valid value.
        let mut own: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut reaped: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointers to live locals; getrusage cannot fail with these arguments.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut own) };
        // SAFETY: as above.
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut reaped) };
        let us = |t: libc::timeval| {
            u64::try_from(t.tv_sec).unwrap_or(0).saturating_mul(1_000_000) + u64::try_from(t.tv_usec).unwrap_or(0)
        };
        StatusRecord {
            status,
            pad: 0,
            user_us: us(own.ru_utime) + us(reaped.ru_utime),
            sys_us: us(own.ru_stime) + us(reaped.ru_stime),
            max_rss_kb: u64::try_from(own.ru_maxrss.max(reaped.ru_maxrss)).unwrap_or(0),
        }
    }

    /// Parses the bytes init wrote.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_ne_bytes(w)
        };
        let mut status = [0u8; 4];
        status.copy_from_slice(&b[0..4]);
        StatusRecord {
            status: i32::from_ne_bytes(status),
            pad: 0,
            user_us: word(8),
            sys_us: word(16),
            max_rss_kb: word(24),
        }
    }
}

/// Writes `data` to the `/proc` file `path`, failing the step `stage`
/// (index `i`).
fn write_file(spec: &ChildSpec, path: &std::ffi::CStr, data: &[u8], stage: ChildStage, i: u32) {
    // SAFETY: `path` is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    check!(spec, stage, i, fd);
    // SAFETY: `data` is a live slice.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    // SAFETY: `fd` was opened above and is ours.
    unsafe { libc::close(fd) };
    check!(spec, stage, i, n);
}

/// What init's network helper works from, in init's frame (shared memory):
/// the spec, and where the helper leaves the descriptor of the network
/// namespace it made (in the descriptor table it shares with init).
struct NetworkStart<'a> {
    spec: &'a ChildSpec,
    netns: AtomicI32,
}

/// Clones the network helper (`network_entry`): it shares init's memory and
/// descriptors, runs on the command's stack (the command starts only after
/// [`join_network`] reaped the helper) and with every signal blocked (it
/// runs none of the handlers cordon left in the memory it shares).
/// Returns its pid.
fn start_network_helper(start: &NetworkStart<'_>) -> libc::pid_t {
    let spec = start.spec;
    // SAFETY: sigset_t is plain data, filled by sigfillset before use.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; written by sigprocmask.
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointer.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: valid sigset pointers.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, &mut before) };
    // SAFETY: `start` lives in init_main's frame, which outlives the helper
    // (init reaps it in join_network before it goes on); the helper returns
    // from `network_entry` (clone's wrapper then exits it) or `_exit`s, and
    // never returns into init's frames. The command's stack is unused until
    // then.
    let pid = unsafe {
        clone_on_stack(
            network_entry,
            &spec.command_stack,
            libc::CLONE_FILES,
            (start as *const NetworkStart<'_>).cast_mut().cast(),
        )
    };
    // SAFETY: valid sigset pointer; the mask init had.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    if pid == -1 {
        fail(spec, ChildStage::NetworkNamespace, 0);
    }
    pid
}

/// Entry of the network helper: a network namespace of the run's own
/// (owned by its user namespace, as if cordon's `clone` had made it),
/// loopback up, the listeners handed to cordon, and the namespace's
/// descriptor left for init. A failure is reported like init's (the
/// report pipe is shared) and ends the helper with 127; its errno is read
/// from the thread-local slot it shares with init, so a failing call of
/// init's in the same microseconds could replace it.
extern "C" fn network_entry(arg: *mut libc::c_void) -> c_int {
    // SAFETY: `arg` is the `&NetworkStart` init passed to clone; it lives in
    // init's frame until init has reaped us.
    let start = unsafe { &*(arg as *const NetworkStart<'_>) };
    let spec = start.spec;
    // SAFETY: unshare with a flag only.
    check!(spec, ChildStage::NetworkNamespace, 1, unsafe { libc::unshare(libc::CLONE_NEWNET) });
    loopback_up(spec);
    make_listeners(spec);
    // The namespace's descriptor comes from a socket in it, not from a
    // path: init's pivot_root moves our root along with its own, so
    // `/proc` may already be gone from our view.
    // SAFETY: socket with integer arguments.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check!(spec, ChildStage::NetworkNamespace, 2, sock);
    // SAFETY: SIOCGSKNS takes no argument and returns a new close-on-exec
    // descriptor of the socket's network namespace.
    let fd = unsafe { libc::ioctl(sock, SIOCGSKNS) };
    // SAFETY: our own socket, used up.
    unsafe { libc::close(sock) };
    check!(spec, ChildStage::NetworkNamespace, 2, fd);
    start.netns.store(fd, Ordering::Release);
    0
}

/// The detach of the host's root, made by a thread of init's beside init's
/// remaining set-up (see `init_main`), in init's memory: the detacher, init
/// and the command's process share it.
struct Detaching {
    /// Which mount step it is (a [`MountOp::Detach`]), for a failure's report.
    index: u32,
    /// Its mount point.
    path: *const c_char,
    /// The detacher's tid while it runs: the kernel writes it before the
    /// detacher runs and clears it, waking a waiter, when the detacher ends
    /// (`CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID`, as `pthread_join`
    /// waits), whatever ends it.
    running: AtomicI32,
    /// 0 once detached, else the errno of its `umount2`; [`NOT_DETACHED`]
    /// until then.
    result: AtomicI32,
    /// The detacher's stack.
    stack: super::Stack,
}

/// [`Detaching::result`] before the detacher has one.
const NOT_DETACHED: i32 = i32::MIN;

/// The detacher's stack: it only calls `umount2`.
const DETACH_STACK_BYTES: usize = 16 * 1024;

/// The spec's [`MountOp::Detach`] as a [`Detaching`], with its stack
/// mapped (before the mounts: the detacher starts in the middle of them).
/// `None` without one (process mode, dev mode).
fn detach_step(spec: &ChildSpec) -> Option<Detaching> {
    let (i, path) = spec.mounts.iter().enumerate().find_map(|(i, op)| match op {
        MountOp::Detach { path } => Some((i, path)),
        _ => None,
    })?;
    let index = u32::try_from(i).unwrap_or(u32::MAX);
    let stack = match super::Stack::new(DETACH_STACK_BYTES) {
        Ok(s) => s,
        Err(e) => fail_with(spec, ChildStage::Mount, index, e.raw_os_error().unwrap_or(libc::ENOMEM)),
    };
    Some(Detaching {
        index,
        path: path.as_ptr(),
        running: AtomicI32::new(0),
        result: AtomicI32::new(NOT_DETACHED),
        stack,
    })
}

/// Starts the detacher (`detach_entry`): a thread of init's (no child for
/// init to reap, none in the process tree; it ends on its own), sharing
/// init's memory and descriptors but not its working directory, which it
/// takes as it is now (the new root, the old one stacked on it, right after
/// `pivot_root`), with every signal blocked (init takes the process's
/// signals with sigwaitinfo; the detacher runs none of the handlers cordon
/// left in the memory it shares).
fn start_detach(spec: &ChildSpec, d: &Detaching) {
    // SAFETY: sigset_t is plain data, filled by sigfillset before use.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; written by sigprocmask.
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointer.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: valid sigset pointers.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, &mut before) };
    let flags = libc::CLONE_VM
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID;
    let tid = d.running.as_ptr();
    // SAFETY: `d` lives in init_main's frame, which init never leaves; the
    // detacher returns from `detach_entry` (the trampoline then exits it)
    // and never returns into init's frames; its stack is its own and lives
    // in `d`. The kernel writes the tid to `running` before the detacher
    // runs and clears it when the detacher ends. The syscall itself, not
    // the C library's clone: musl's refuses CLONE_THREAD.
    let rc =
        unsafe { super::clone_raw(detach_entry, &d.stack, flags, tid, tid, (d as *const Detaching).cast_mut().cast()) };
    // SAFETY: valid sigset pointer; the mask init had.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    if rc < 0 {
        fail_with(spec, ChildStage::Mount, d.index, i32::try_from(-rc).unwrap_or(libc::EINVAL));
    }
}

/// Entry of the detacher: `umount2(MNT_DETACH)` of the host's root, its
/// outcome left in [`Detaching::result`].
extern "C" fn detach_entry(arg: *mut libc::c_void) -> c_int {
    // SAFETY: `arg` is the `&Detaching` init passed to clone; it lives in
    // init's frame for init's whole life.
    let d = unsafe { &*(arg as *const Detaching) };
    // SAFETY: `path` points into the spec's mount steps, in init's memory.
    let rc = unsafe { libc::umount2(d.path, libc::MNT_DETACH) };
    // errno is init's thread-local slot, which we share: a failing call of
    // init's in the same microseconds could replace it (the report would
    // name another errno; the run fails either way).
    d.result.store(if rc == -1 { errno().max(1) } else { 0 }, Ordering::Release);
    0
}

/// Waits until the detacher has ended, and fails the run unless it
/// detached the host's root.
fn await_detach(spec: &ChildSpec, d: &Detaching) {
    loop {
        let tid = d.running.load(Ordering::Acquire);
        if tid == 0 {
            break;
        }
        // SAFETY: FUTEX_WAIT on a live word of the memory we share with
        // init, while it still holds `tid`; shared (not private), as the
        // kernel's wake at the detacher's end is. Spurious returns loop.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                d.running.as_ptr(),
                libc::FUTEX_WAIT,
                tid,
                std::ptr::null::<libc::timespec>(),
            )
        };
    }
    match d.result.load(Ordering::Acquire) {
        0 => {}
        // Ended without a result: it was killed.
        NOT_DETACHED => fail_with(spec, ChildStage::Mount, d.index, libc::ECHILD),
        e => fail_with(spec, ChildStage::Mount, d.index, e),
    }
}

/// `ioctl` on a socket: a descriptor of its network namespace (Linux 4.9).
const SIOCGSKNS: libc::Ioctl = 0x894C;

/// Waits for the network helper and moves init into the namespace it
/// made. A helper that reported its failure (exit 127) leaves the report
/// to it: init exits. Any other end of the helper is a failure of its own.
fn join_network(start: &NetworkStart<'_>, helper: libc::pid_t) {
    let spec = start.spec;
    let mut status: c_int = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    while unsafe { libc::waitpid(helper, &mut status, 0) } == -1 {
        if errno() != libc::EINTR {
            fail(spec, ChildStage::NetworkNamespace, 3);
        }
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => {}
        // SAFETY: _exit never returns. cordon reports the helper's failure.
        (true, 127) => unsafe { libc::_exit(1) },
        _ => fail(spec, ChildStage::NetworkNamespace, 4),
    }
    let fd = start.netns.load(Ordering::Acquire);
    // SAFETY: `fd` is the namespace descriptor the helper opened in the
    // table we share; setns checks it is one.
    check!(spec, ChildStage::NetworkNamespace, 5, unsafe { libc::setns(fd, libc::CLONE_NEWNET) });
    // SAFETY: our own descriptor, used up.
    unsafe { libc::close(fd) };
}

/// The proxy's listener and the stub DNS's sockets, bound in the network
/// namespace of the caller, handed to cordon.
fn make_listeners(spec: &ChildSpec) {
    if let Some((channel, port)) = &spec.proxy_listener {
        send_proxy_listener(spec, channel.as_raw_fd(), *port);
    }
    if let Some(channel) = &spec.dns_sockets {
        send_dns_sockets(spec, channel.as_raw_fd());
    }
}

fn loopback_up(spec: &ChildSpec) {
    // SAFETY: socket with integer arguments.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check!(spec, ChildStage::Loopback, 0, sock);
    // SAFETY: ifreq is plain data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as c_char;
    }
    // The requests as `ioctl` takes them (`c_ulong` with glibc, `c_int`
    // with musl); both numbers fit either.
    let (Some(get_flags), Some(set_flags)) = (super::c_fit(libc::SIOCGIFFLAGS), super::c_fit(libc::SIOCSIFFLAGS))
    else {
        fail_with(spec, ChildStage::Loopback, 1, libc::EINVAL)
    };
    // SAFETY: `req` is a valid ifreq naming "lo"; the kernel fills the flags.
    check!(spec, ChildStage::Loopback, 1, unsafe { libc::ioctl(sock, get_flags, &mut req) });
    // SAFETY: reading the union member SIOCGIFFLAGS just wrote.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
    // SAFETY: as above, setting the flags.
    check!(spec, ChildStage::Loopback, 2, unsafe { libc::ioctl(sock, set_flags, &req) });
    // SAFETY: our own socket.
    unsafe { libc::close(sock) };
}

fn send_proxy_listener(spec: &ChildSpec, channel: RawFd, port: u16) {
    send_loopback_socket(spec, ChildStage::ProxyListener, channel, libc::SOCK_STREAM, port);
}

/// The stub DNS's sockets: UDP, then a TCP listener, both on 127.0.0.1:53.
fn send_dns_sockets(spec: &ChildSpec, channel: RawFd) {
    send_loopback_socket(spec, ChildStage::DnsSockets, channel, libc::SOCK_DGRAM, 53);
    send_loopback_socket(spec, ChildStage::DnsSockets, channel, libc::SOCK_STREAM, 53);
}

/// Binds a socket of `kind` to `127.0.0.1:port` in the sandbox's network
/// namespace (listening, for a stream socket), sends it to cordon over
/// `channel` and closes init's copy.
fn send_loopback_socket(spec: &ChildSpec, st: ChildStage, channel: RawFd, kind: c_int, port: u16) {
    // SAFETY: socket with integer arguments.
    let sock = unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0) };
    check!(spec, st, 0, sock);
    let addr = libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or(2),
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes([127, 0, 0, 1]) },
        sin_zero: [0; 8],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).unwrap_or(16);
    // SAFETY: `addr` is a live sockaddr_in of `len` bytes.
    check!(spec, st, 1, unsafe { libc::bind(sock, (&addr as *const libc::sockaddr_in).cast(), len) });
    if kind == libc::SOCK_STREAM {
        // SAFETY: integer arguments.
        check!(spec, st, 2, unsafe { libc::listen(sock, 128) });
    }
    if super::send_byte_with_fd(channel, sock) == -1 {
        fail(spec, st, 3);
    }
    // SAFETY: cordon holds its own copy now; ours goes.
    unsafe { libc::close(sock) };
}

fn apply_mount_op(spec: &ChildSpec, op: &MountOp, i: u32) {
    let st = ChildStage::Mount;
    let opt = |s: &CString| if s.as_bytes().is_empty() { std::ptr::null() } else { s.as_ptr() };
    match op {
        MountOp::Mount { src, target, fstype, flags, data } => {
            // SAFETY: every pointer is a valid C string or NULL.
            let rc = unsafe { libc::mount(opt(src), target.as_ptr(), opt(fstype), *flags, opt(data).cast()) };
            check!(spec, st, i, rc);
        }
        MountOp::SetAttr { path, attr, recursive } => {
            let flags = if *recursive { libc::AT_RECURSIVE } else { 0 };
            check!(spec, st, i, mount_setattr(libc::AT_FDCWD, path, flags, *attr));
        }
        MountOp::CloneTree { path, slot } => {
            const OPEN_TREE_CLONE: libc::c_uint = 1;
            let flags = OPEN_TREE_CLONE
                | libc::O_CLOEXEC as libc::c_uint
                | libc::AT_RECURSIVE as libc::c_uint
                | libc::AT_EMPTY_PATH as libc::c_uint;
            let src = super::open_without_links(path);
            check!(spec, st, i, src);
            // SAFETY: `src` is the descriptor just opened; the path is empty
            // (AT_EMPTY_PATH); the flags are plain integers.
            let fd = unsafe { libc::syscall(libc::SYS_open_tree, src, c"".as_ptr(), flags) };
            // SAFETY: our own descriptor, no longer needed.
            unsafe { libc::close(src) };
            check!(spec, st, i, fd);
            if let Some(s) = spec.tree_slots.get(*slot) {
                s.store(libc::c_int::try_from(fd).unwrap_or(-1), std::sync::atomic::Ordering::Relaxed);
            }
        }
        MountOp::AttachTree { slot, target, attr } => {
            const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
            const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
            let fd = spec.tree_slots.get(*slot).map_or(-1, |s| s.load(std::sync::atomic::Ordering::Relaxed));
            if *attr != 0 {
                let flags = libc::AT_EMPTY_PATH | libc::AT_RECURSIVE;
                check!(spec, st, i, mount_setattr(fd, c"", flags, *attr));
            }
            let to = super::open_without_links(target);
            check!(spec, st, i, to);
            // SAFETY: `fd` is the detached tree open_tree returned, `to` the
            // mount point just opened; both paths are empty.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    fd,
                    c"".as_ptr(),
                    to,
                    c"".as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
                )
            };
            // SAFETY: our own descriptor, no longer needed.
            unsafe { libc::close(to) };
            check!(spec, st, i, rc);
            // SAFETY: the tree is attached; its descriptor is ours to close.
            unsafe { libc::close(fd) };
        }
        MountOp::Mkdir { path, mode } => {
            // SAFETY: valid C string.
            if unsafe { libc::mkdir(path.as_ptr(), *mode) } == -1 && errno() != libc::EEXIST {
                fail(spec, st, i);
            }
        }
        MountOp::Touch { path } => {
            // mknod makes an empty regular file in one call (open + close
            // would be two); no capability is needed for S_IFREG.
            // SAFETY: valid C string.
            if unsafe { libc::mknod(path.as_ptr(), libc::S_IFREG | 0o644, 0) } == -1
                && errno() != libc::EEXIST
                && errno() != libc::EROFS
            {
                fail(spec, st, i);
            }
        }
        MountOp::Symlink { target, path } => {
            // SAFETY: valid C strings.
            if unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) } == -1 && errno() != libc::EEXIST {
                fail(spec, st, i);
            }
        }
        MountOp::WriteFile { path, contents } => {
            // SAFETY: valid C string.
            let fd = unsafe {
                libc::open(path.as_ptr(), libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY | libc::O_CLOEXEC, 0o644)
            };
            check!(spec, st, i, fd);
            // SAFETY: `contents` is a live slice.
            let n = unsafe { libc::write(fd, contents.as_ptr().cast(), contents.len()) };
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
            if usize::try_from(n).ok() != Some(contents.len()) {
                fail(spec, st, i);
            }
        }
        MountOp::Chdir { path } => {
            // SAFETY: valid C string.
            check!(spec, st, i, unsafe { libc::chdir(path.as_ptr()) });
        }
        MountOp::PivotRoot { new_root, put_old } => {
            // SAFETY: valid C strings.
            let rc = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
            check!(spec, st, i, rc);
        }
        MountOp::Detach { path } => {
            // SAFETY: valid C string.
            check!(spec, st, i, unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) });
        }
    }
}

/// `mount_setattr(dfd, path, flags)` setting `set`.
fn mount_setattr(dfd: c_int, path: &std::ffi::CStr, flags: c_int, set: u64) -> libc::c_long {
    #[repr(C)]
    struct MountAttr {
        set: u64,
        clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let a = MountAttr { set, clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: `path` is a valid C string and `a` a live mount_attr of the size passed.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dfd,
            path.as_ptr(),
            flags,
            &a as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    }
}

/// Applies the per-process restrictions in order and execs the command.
/// `tty` is the pty slave init allocated (-1: none).
///
/// Order matters: capabilities go before `no_new_privs` and Landlock (which
/// needs one of the two), descriptors are marked close-on-exec before
/// seccomp, and seccomp comes last so it may deny anything used above.
fn exec_command(spec: &ChildSpec, tty: c_int, detaching: Option<&Detaching>) -> ! {
    // Rust ignores SIGPIPE; an ignored disposition survives exec.
    // SAFETY: resetting a disposition to default, no handler involved.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) } == libc::SIG_ERR {
        fail(spec, ChildStage::Signals, 0);
    }
    // Targets in order 0..=3: every source is >= 3 (0-2 are open in cordon
    // when it makes the pipes), so only the source of fd 3 can already sit
    // at its target; dup2 would keep its close-on-exec flag, so clear it.
    for (target, fd) in spec.stdio.iter().enumerate() {
        if let Some(fd) = fd {
            let target = c_int::try_from(target).unwrap_or(0);
            let rc = if fd.as_raw_fd() == target {
                // SAFETY: F_SETFD on a descriptor the spec owns.
                unsafe { libc::fcntl(target, libc::F_SETFD, 0) }
            } else {
                // SAFETY: dup2 onto 0..=3 from a descriptor the spec owns.
                unsafe { libc::dup2(fd.as_raw_fd(), target) }
            };
            check!(spec, ChildStage::Stdio, 0, rc);
        }
    }
    match &spec.terminal {
        ChildTerminal::Allocate { stderr, .. } if tty >= 0 => attach_pty(spec, tty, *stderr),
        ChildTerminal::Given => make_controlling_terminal(spec),
        _ => {}
    }
    if let Some(cwd) = &spec.cwd {
        // SAFETY: valid C string.
        check!(spec, ChildStage::Chdir, 0, unsafe { libc::chdir(cwd.as_ptr()) });
    }
    for (i, (resource, limit)) in spec.rlimits.iter().enumerate() {
        // SAFETY: `limit` is a live rlimit value; the resource is a plain integer
        // (its C type differs between libcs, hence the cast).
        let rc = unsafe { libc::setrlimit(*resource as _, limit) };
        check!(spec, ChildStage::Rlimit, u32::try_from(i).unwrap_or(0), rc);
    }
    mark(spec, ChildMark::CommandStdio);
    if spec.drop_capabilities {
        drop_capabilities(spec);
    }
    // SAFETY: prctl with integer arguments.
    check!(spec, ChildStage::NoNewPrivs, 0, unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) });
    mark(spec, ChildMark::Privileges);
    if let Some((ruleset, late)) = &spec.landlock {
        for (i, rule) in late.iter().enumerate() {
            add_late_rule(spec, ruleset.as_raw_fd(), rule, u32::try_from(i).unwrap_or(0));
        }
        // SAFETY: the ruleset fd is open; flags are plain integers.
        let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), spec.landlock_flags) };
        check!(spec, ChildStage::LandlockRestrict, 0, rc);
        mark(spec, ChildMark::Landlock);
    }
    // The host's root is gone before the command's first instruction (and
    // before the connect helper starts): until then only this process,
    // cordon's own code, runs in the new root, where its lookups start
    // anyway (the stacked old root is reached only by looking down a
    // mount point on purpose).
    if let Some(d) = detaching {
        await_detach(spec, d);
        mark(spec, ChildMark::Detached);
    }
    // Only 0, 1 and 2 (and 3 when the spec gives one) reach the command,
    // whatever cordon inherited. The report pipe stays open until the exec
    // succeeds.
    let first_closed: u32 = if spec.stdio[3].is_some() { 4 } else { 3 };
    // SAFETY: close_range with integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    check!(spec, ChildStage::CloseFds, 0, rc);
    // The helper gets every restriction above and none of the seccomp
    // filters below: its connects must reach the kernel.
    if let Some(egress) = &spec.egress {
        spawn_connect_helper(spec, egress);
    }
    if let Some(file) = &spec.seccomp {
        load_command_filter(spec, file.as_raw_fd());
    }
    mark(spec, ChildMark::Seccomp);
    // SAFETY: exe, argv and envp are NUL-terminated and outlive the call.
    unsafe { libc::execve(spec.exe.as_ptr(), spec.argv.as_ptr(), spec.envp.as_ptr()) };
    fail(spec, ChildStage::Exec, 0)
}

/// Puts the pty slave on fds 0, 1 (and 2) and makes it the controlling
/// terminal of a new session, whose only process group is then the pty's
/// foreground group.
fn attach_pty(spec: &ChildSpec, tty: c_int, stderr: PtyStderr) {
    // SAFETY: setsid takes no arguments; this process is no group leader.
    check!(spec, ChildStage::Session, 0, unsafe { libc::setsid() });
    let targets: &[c_int] = if stderr == PtyStderr::Pty { &[0, 1, 2] } else { &[0, 1] };
    for target in targets {
        // SAFETY: dup2 of the slave init opened onto 0..=2.
        check!(spec, ChildStage::Stdio, 0, unsafe { libc::dup2(tty, *target) });
    }
    make_controlling_terminal(spec);
}

/// `TIOCSCTTY` on fd 0: the terminal there becomes this session's.
fn make_controlling_terminal(spec: &ChildSpec) {
    // SAFETY: TIOCSCTTY takes an integer (0: do not steal it from another session).
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    check!(spec, ChildStage::Terminal, TerminalStep::ControllingTerminal as u32, rc);
}

fn drop_capabilities(spec: &ChildSpec) {
    let st = ChildStage::Capabilities;
    for cap in 0..=spec.last_cap {
        // SAFETY: prctl with integer arguments.
        check!(spec, st, 0, unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) });
    }
    // SAFETY: prctl with integer arguments.
    check!(spec, st, 1, unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) });
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: header and the two data words have the v3 layout capset expects.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    check!(spec, st, 2, rc);
}

fn add_late_rule(spec: &ChildSpec, ruleset: RawFd, rule: &LateRule, i: u32) {
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }
    const LANDLOCK_RULE_PATH_BENEATH: c_int = 1;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(rule.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd == -1 && errno() == libc::ENOENT {
        return; // not on this host (e.g. no /dev/pts): nothing to grant
    }
    check!(spec, ChildStage::LandlockAddRule, i, fd);
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live local; `fd` is ours.
    check!(spec, ChildStage::LandlockAddRule, i, unsafe { libc::fstat(fd, &mut st) });
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let access = if is_dir { rule.access } else { rule.file_access };
    let attr = PathBeneath { allowed_access: access, parent_fd: fd };
    // SAFETY: `attr` is a live landlock_path_beneath_attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneath,
            0u32,
        )
    };
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    check!(spec, ChildStage::LandlockAddRule, i, rc);
}

/// Maps the sealed program file (see [`ChildSpec::seccomp`]) and loads its
/// program, with the listener when there is egress. Fails the run (stage
/// seccomp, step 1) when the file is not sealed against writing or is no
/// whole, non-empty program of at most `BPF_MAXINSNS` instructions.
fn load_command_filter(spec: &ChildSpec, file: RawFd) {
    const BPF_MAXINSNS: usize = 4096;
    let insn = std::mem::size_of::<SockFilter>();
    // SAFETY: fcntl with integer arguments on a descriptor of the spec.
    let seals = unsafe { libc::fcntl(file, libc::F_GET_SEALS) };
    check!(spec, ChildStage::Seccomp, 1, seals);
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live local; `file` is the spec's.
    check!(spec, ChildStage::Seccomp, 1, unsafe { libc::fstat(file, &mut st) });
    let size = usize::try_from(st.st_size).unwrap_or(0);
    if seals & super::PROGRAM_FILE_SEALS != super::PROGRAM_FILE_SEALS
        || size == 0
        || size % insn != 0
        || size / insn > BPF_MAXINSNS
    {
        fail_with(spec, ChildStage::Seccomp, 1, libc::EBADFD);
    }
    // SAFETY: a new private read-only mapping of `size` bytes of the file;
    // no address hint.
    let at = unsafe { libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ, libc::MAP_PRIVATE, file, 0) };
    if at == libc::MAP_FAILED {
        fail(spec, ChildStage::Seccomp, 1);
    }
    // SAFETY: the mapping holds `size / insn` instructions, is page-aligned
    // (SockFilter's alignment is 4), every bit pattern is a valid
    // SockFilter, and nothing writes the sealed file; the slice is not used
    // after the munmap below.
    let prog = unsafe { std::slice::from_raw_parts(at.cast::<SockFilter>(), size / insn) };
    match &spec.egress {
        Some(egress) => load_seccomp_with_listener(spec, prog, egress),
        None => check!(spec, ChildStage::Seccomp, 0, seccomp_set_mode_filter(prog, 0)),
    }
    // SAFETY: the mapping made above; the kernel copied the program.
    unsafe { libc::munmap(at, size) };
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`; returns what the
/// syscall returned (the listener's descriptor with `NEW_LISTENER`).
fn seccomp_set_mode_filter(prog: &[SockFilter], flags: libc::c_ulong) -> libc::c_long {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const SockFilter,
    }
    let fprog = SockFprog { len: libc::c_ushort::try_from(prog.len()).unwrap_or(0), filter: prog.as_ptr() };
    // SAFETY: `fprog` points at a live BPF program of `len` instructions; the
    // kernel copies it.
    unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &fprog as *const SockFprog) }
}

/// Loads the command's filter with a notification listener and hands the
/// listener to cordon. `WAIT_KILLABLE_RECV`: once cordon has taken a
/// notification, only a fatal signal interrupts the waiting syscall, so a
/// signal handler cannot restart a `connect()` cordon is still performing.
/// The listener is sent before `execve`, so cordon finds it queued.
fn load_seccomp_with_listener(spec: &ChildSpec, prog: &[SockFilter], egress: &EgressChild) {
    let flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    let fd = seccomp_set_mode_filter(prog, flags);
    check!(spec, ChildStage::Seccomp, 0, fd);
    let fd = RawFd::try_from(fd).unwrap_or(-1);
    if super::send_byte_with_fd(egress.listener_channel.as_raw_fd(), fd) == -1 {
        fail(spec, ChildStage::NotifyListener, 0);
    }
    // SAFETY: cordon holds its own copy now; the command must not keep one.
    unsafe { libc::close(fd) };
}

/// Starts the connect helper (see [`super::helper`]): a process sharing
/// this memory on its own stack, with init as its parent, so the command
/// never sees it as a child of its own. Called after every restriction but
/// seccomp.
fn spawn_connect_helper(spec: &ChildSpec, egress: &EgressChild) {
    // SAFETY: `helper_entry` serves, then _exits; the stack and the spec
    // live in init's memory, which the helper shares for its whole life.
    let pid = unsafe {
        clone_on_stack(
            helper_entry,
            &egress.helper_stack,
            libc::CLONE_PARENT,
            (spec as *const ChildSpec).cast_mut().cast(),
        )
    };
    if pid == -1 {
        fail(spec, ChildStage::ConnectHelper, 0);
    }
}

/// Entry of the connect helper. It cannot report a failure (the command
/// may already run); it exits, and cordon answers the connects it would
/// have served with an error.
extern "C" fn helper_entry(arg: *mut libc::c_void) -> c_int {
    // SAFETY: `arg` is the `&ChildSpec` passed to clone; it lives in the
    // memory we share with init, for as long as init lives.
    let spec = unsafe { &*(arg as *const ChildSpec) };
    let Some(egress) = &spec.egress else {
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(1) }
    };
    let exit = || -> ! {
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(1) }
    };
    // Our parent is init (CLONE_PARENT); die with it.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } == -1 {
        exit();
    }
    // Not dumpable: the sandbox can neither ptrace nor open /proc/<pid>/mem
    // of the helper, and its /proc (hidepid=ptraceable) does not list it.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == -1 {
        exit();
    }
    // SAFETY: a static NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"cordon-connect".as_ptr(), 0, 0, 0) };
    // SAFETY: plain data, initialised by sigfillset before use.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointer.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: valid sigset pointer; the old mask is not needed.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) };
    let channel = egress.helper_channel.as_raw_fd();
    close_all_from(0, channel);
    if seccomp_set_mode_filter(&egress.helper_filter, 0) == -1 {
        exit();
    }
    super::helper::serve(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_survives_the_wire_and_has_a_name() {
        for (i, (stage, name)) in STAGES.iter().enumerate() {
            assert_eq!(*stage as usize, i + 1, "stages are numbered from 1 in declaration order");
            assert_eq!(ChildStage::from_u32(*stage as u32), Some(*stage));
            assert_eq!(stage.name(), *name);
        }
        assert_eq!(ChildStage::from_u32(0), None);
        assert_eq!(ChildStage::from_u32(u32::try_from(STAGES.len()).unwrap() + 1), None);
    }

    #[test]
    fn every_mark_has_a_name_and_survives_the_wire() {
        for (i, (m, name)) in MARKS.iter().enumerate() {
            assert_eq!(*m as usize, i + 1, "marks are numbered from 1 in declaration order");
            assert_eq!(ChildMark::name_of(*m as u32), *name);
            let r = MarkRecord { mark: *m as u32, pad: 0, at_ns: 0x0102_0304_0506_0708 };
            let mut bytes = [0u8; MarkRecord::SIZE];
            bytes[0..4].copy_from_slice(&r.mark.to_ne_bytes());
            bytes[8..16].copy_from_slice(&r.at_ns.to_ne_bytes());
            let back = MarkRecord::from_bytes(&bytes);
            assert_eq!((back.mark, back.at_ns), (r.mark, r.at_ns));
        }
        assert_eq!(ChildMark::name_of(0), "sandbox: unknown mark");
    }

    #[test]
    fn a_status_record_survives_the_wire() {
        let r = StatusRecord { status: -2, pad: 0, user_us: 1 << 40, sys_us: 3, max_rss_kb: u64::MAX };
        let mut bytes = [0u8; StatusRecord::SIZE];
        // SAFETY: `r` is a plain repr(C) value of SIZE bytes, as init writes it.
        let raw = unsafe { std::slice::from_raw_parts((&r as *const StatusRecord).cast::<u8>(), StatusRecord::SIZE) };
        bytes.copy_from_slice(raw);
        assert_eq!(StatusRecord::from_bytes(&bytes), r);
        assert_eq!(StatusRecord::SIZE, 32, "one write of 32 bytes, well under PIPE_BUF");
    }
}
