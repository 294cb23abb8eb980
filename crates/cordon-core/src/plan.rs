//! `Plan::build`: the pure decision of how a policy is enforced on a host.
//!
//! A plan says which mechanisms run, with which ABI and rules, in which
//! order, and which policy entry each one covers (the ledger). It reads no
//! file and makes no syscall, so `cordon check` prints it and tests build
//! plans for older kernels from [`KernelSupport`] fixtures.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::enforce::seccomp::{ConnectRule, FileWatches, MemfdExec, SeccompPlan, UnixSockets};
use crate::policy::fs::{LIBRARY_TREES, SYSTEM_DEVICES, SYSTEM_READ};
use crate::policy::{Mode, NetVia, Policy, SystemSet};
use crate::probe::{CgroupDir, KernelSupport, LandlockAbi};
use crate::system_entries::SystemEntries;

/// Access granted to a path tree. Ordered: a later variant includes the
/// earlier ones' file access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsAccess {
    /// List directories only (the container's own root).
    List,
    /// Read and execute.
    Read,
    /// Read and execute a file named by an exec allow-list.
    Exec,
    /// Read and write an existing character device.
    Device,
    /// A terminal of the sandbox's own: a device, plus its `ioctl`s (modes,
    /// window size, job control).
    Terminal,
    /// Everything: read, write, create, remove, rename.
    Write,
}

/// The Landlock part of a plan.
#[derive(Clone, Debug, Serialize)]
pub struct LandlockPlan {
    /// The ABI the ruleset is built for.
    pub abi: u32,
    /// Whether signal and abstract-unix-socket scopes are set.
    pub scopes: bool,
    /// Host paths and their access.
    pub rules: Vec<(PathBuf, FsAccess)>,
    /// Carve-outs.
    pub deny: Vec<PathBuf>,
    /// Paths inside the container, added by the child.
    pub late: Vec<(PathBuf, FsAccess)>,
    /// With an exec allow-list: `Read` and `Write` grants lose the execute
    /// right, which only the `Exec` rules (the list, the command itself and
    /// the ELF loader) keep.
    pub exec_restricted: bool,
    /// Trees whose rules are opened without following symbolic links
    /// ([`FsPolicy::pinned`](crate::policy::FsPolicy::pinned)).
    pub pinned: Vec<PathBuf>,
    /// Rules kept inside a deny
    /// ([`FsPolicy::holes`](crate::policy::FsPolicy::holes)).
    pub holes: Vec<(PathBuf, PathBuf)>,
}

/// A kernel namespace the sandbox gets its own instance of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    /// Users: no capability in the host's namespace.
    User,
    /// Processes: the run's processes see only each other; all die with init.
    Pid,
    /// Network: loopback only.
    Net,
    /// Mounts: a root of its own.
    Mount,
    /// SysV IPC and POSIX message queues.
    Ipc,
    /// Host name.
    Uts,
    /// Cgroup view.
    Cgroup,
}

/// A resource limit set with `setrlimit` in the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    /// Which one.
    pub kind: RlimitKind,
    /// Soft and hard limit (equal unless noted).
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The rlimits cordon uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RlimitKind {
    /// Private writable memory (memory fallback without a cgroup).
    Data,
    /// CPU seconds per process.
    Cpu,
    /// Largest file written.
    Fsize,
    /// Processes of this user (per user namespace).
    Nproc,
    /// Core dump size.
    Core,
}

/// Per-run cgroups to create, with their limits.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CgroupPlan {
    /// Memory cgroup and its limit in bytes.
    pub memory: Option<(CgroupDir, u64)>,
    /// Pids cgroup and its limit.
    pub pids: Option<(CgroupDir, u64)>,
    /// CPU accounting cgroup (the supervisor polls it for `cpu_ms`).
    pub cpuacct: Option<CgroupDir>,
}

impl CgroupPlan {
    /// Whether any cgroup is created.
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.pids.is_none() && self.cpuacct.is_none()
    }
}

/// A bind mount: a host path shown at the same path inside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Bind {
    /// Host path, shown at the same path inside.
    pub path: PathBuf,
    /// `Read`: read-only; `Write`: read-write; `Exec`: read-only and
    /// executable where [`ExecMounts::ListedOnly`] makes the rest `noexec`.
    pub access: FsAccess,
}

/// Which mounts let files be executed (or mapped executable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecMounts {
    /// Every file tree the sandbox sees (Landlock decides what runs).
    Everywhere,
    /// With an exec allow-list: every tree is `noexec` but the system library
    /// folders ([`LIBRARY_TREES`]) and the `Exec` binds (the listed files,
    /// the command), so the ELF loader (`ld.so FILE`) cannot map an unlisted
    /// program, and nothing written to a write grant, `/tmp` or `/dev/shm`
    /// can run. Shared objects outside the library folders must be listed.
    ListedOnly,
}

/// The sandbox's file system view, built by init in the run's mount
/// namespace. Every bind that is not a write grant is read-only; device
/// nodes are bound read-only too (they stay writable, but their mode,
/// owner and times cannot change).
#[derive(Clone, Debug, Serialize)]
pub struct RootPlan {
    /// Binds, shallowest first. Container mode binds everything granted
    /// into a fresh root; process mode keeps the host's mounts, made
    /// read-only (recursively, with propagation from the host cut), and binds
    /// on top only what differs: write grants, grants under `/tmp` (which the
    /// private `/tmp` hides) and `Exec` binds.
    pub binds: Vec<Bind>,
    /// Carve-outs. Container mode hides them; process mode hides those under
    /// `/tmp` and makes those inside write grants read-only (Landlock
    /// refuses access to their content).
    pub deny: Vec<PathBuf>,
    /// Size cap of the private `/tmp`, MiB.
    pub tmp_size_mb: u64,
    /// Which mounts are executable.
    pub exec: ExecMounts,
    /// Trees whose binds are taken as resolved already
    /// ([`FsPolicy::pinned`](crate::policy::FsPolicy::pinned)): not
    /// resolved again, and bound without following links.
    pub pinned: Vec<PathBuf>,
    /// Binds kept inside a deny, mounted on top of its hiding
    /// ([`FsPolicy::holes`](crate::policy::FsPolicy::holes)).
    pub holes: Vec<(PathBuf, PathBuf)>,
}

/// A sysctl of the run's own namespaces, written by init before the
/// command starts (it needs init's capabilities in the run's user
/// namespace). Never a host-wide setting.
///
/// Never a `net/` key either: init writes these while it is still in
/// cordon's network namespace (the run's own is made beside the mounts and
/// joined after them), so a `net/` key would set the host's value. Made
/// only by [`NamespaceSysctl::new`], which refuses one when it is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NamespaceSysctl {
    key: &'static str,
    value: &'static str,
}

impl NamespaceSysctl {
    /// `vm.memfd_noexec = 2` (per pid namespace since 6.3): every memfd of
    /// the run is sealed non-executable and `MFD_EXEC` is refused.
    pub const MEMFD_NOEXEC: NamespaceSysctl = NamespaceSysctl::new("vm/memfd_noexec", "2");

    /// The sysctl at `key` (a path below `/proc/sys`) set to `value`.
    /// Used in a constant, a `net/` key fails the build.
    const fn new(key: &'static str, value: &'static str) -> NamespaceSysctl {
        let k = key.as_bytes();
        let net = k.len() >= 4 && k[0] == b'n' && k[1] == b'e' && k[2] == b't' && k[3] == b'/';
        assert!(!net, "a net/ sysctl would be written in the host's network namespace");
        NamespaceSysctl { key, value }
    }

    /// Path below `/proc/sys`.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// Value written.
    pub fn value(&self) -> &'static str {
        self.value
    }
}

/// Where the command's `/tmp`, `HOME` and `TMPDIR` live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tmp {
    /// A tmpfs mounted on `/tmp` inside the sandbox, capped at this many MiB;
    /// grants under the host's `/tmp` are mounted on top of it.
    Private {
        /// Size cap.
        size_mb: u64,
    },
    /// None of its own: dev mode, which runs the command as the caller
    /// would (no mount namespace, no folder made or removed per run), with
    /// the caller's `HOME` and `TMPDIR` when it has them.
    Caller,
}

/// How completely a policy entry is enforced here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// Exactly as asked.
    Full,
    /// Enforced, with a documented gap (named in the ledger entry).
    Partial,
    /// Not enforced (dev mode only).
    NotEnforced,
}

/// One line of the enforcement ledger: a policy entry and what enforces it.
#[derive(Clone, Debug, Serialize)]
pub struct LedgerEntry {
    /// The policy entry, e.g. `fs.read /srv/data` or `quota memory_mb=256`.
    pub rule: String,
    /// The mechanism, e.g. `landlock ABI 7 + mount namespace`.
    pub mechanism: String,
    /// How completely.
    pub enforcement: Enforcement,
}

/// The enforcement plan for one execution.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The tier.
    pub mode: Mode,
    /// Namespaces created at `clone` (the cgroup namespace after joining).
    pub namespaces: Vec<Namespace>,
    /// Landlock rules, if any.
    pub landlock: Option<LandlockPlan>,
    /// The seccomp filter, if any.
    pub seccomp: Option<SeccompPlan>,
    /// Per-run cgroups.
    pub cgroup: CgroupPlan,
    /// rlimits for the command.
    pub rlimits: Vec<Rlimit>,
    /// The container root, in container mode.
    pub root: Option<RootPlan>,
    /// Process mode's view of the host: every inherited mount read-only,
    /// the grants bound on top, the run's own `/proc` (only its pid
    /// namespace is listed), private tmpfs on `/tmp` and `/dev/shm` (POSIX
    /// semaphores and shared memory live there; the host's is shared by
    /// every process).
    pub host_view: Option<RootPlan>,
    /// Sysctls of the run's own namespaces.
    pub sysctls: Vec<NamespaceSysctl>,
    /// Whether every capability is dropped.
    pub drop_capabilities: bool,
    /// The command's `/tmp`.
    pub tmp: Tmp,
    /// Port of the filtering proxy on the sandbox's loopback, with
    /// [`Egress::Proxy`].
    pub proxy_port: Option<u16>,
    /// The command's terminal; see [`Plan::attach_terminal`].
    pub terminal: TerminalPlan,
    /// How the sandbox reaches the network, if at all.
    pub egress: Egress,
    /// Whether host sockets are made for the run (transparent egress or the
    /// proxy), and by whom.
    #[serde(skip)]
    pub host_sockets: HostSockets,
    /// What enforces each policy entry.
    pub ledger: Vec<LedgerEntry>,
    /// The system set as the run looked at it for its carve-out, for
    /// container mode's mount steps to use rather than look again. Not a
    /// decision: [`Plan::build`] leaves it `None` (the mount steps look for
    /// themselves), the runner fills it in.
    #[serde(skip)]
    pub system_entries: Option<SystemEntries>,
}

/// What the command's stdin, stdout and stderr are, as far as terminals go:
/// the input of [`Plan::attach_terminal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminalUse {
    /// cordon allocates a pty for the command and relays it to the caller
    /// (`--tty`).
    Pty,
    /// The command gets cordon's own descriptors; `true` marks those of
    /// fds 0, 1, 2 that are the caller's terminal.
    Caller([bool; 3]),
}

/// How the command's terminal is handled.
///
/// Whatever the mode, no key typed on the caller's terminal signals the
/// sandbox (it runs in a process group of its own, and a pty of the run is
/// the controlling terminal of a session of its own), no descriptor of the
/// caller's terminal enters a process or container sandbox, and `/dev/tty`
/// never reaches the caller's terminal: it is granted only with a pty of
/// the run's own ([`Plan::attach_terminal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TerminalPlan {
    /// None of the command's descriptors is a terminal.
    None,
    /// A pty of the sandbox's own devpts instance, allocated inside it;
    /// cordon relays it to the caller's terminal, so the sandbox never
    /// holds the caller's.
    Pty,
    /// The caller's terminal is on these of fds 0..=2: the command gets
    /// pipes instead, which cordon relays to and from the terminal from the
    /// caller's session and process group. Job control applies to cordon as
    /// to any program of the job (a read in the background stops the job
    /// with `SIGTTIN`), and cordon stops and resumes the whole run with
    /// itself. `isatty` is false in the sandbox, which stays in cordon's
    /// session without a way to its terminal (`/dev/tty` is not granted).
    Relayed {
        /// fds 0, 1, 2.
        fds: [bool; 3],
    },
    /// Dev mode: the caller's terminal is passed as it is.
    Unrestricted,
}

/// Whether host sockets are made for the run (by its socket maker, see
/// `sys::sockets`, in the run's memory cgroup when it has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostSockets {
    /// None: no route out, or a policy that allows no host (every connect
    /// is refused or stays in the sandbox), so no maker is started.
    None,
    /// Transparent egress hands allowed connections over, or the proxy
    /// relays them: the maker makes their host sockets (and accepts the
    /// proxy's connections from the sandbox).
    Maker,
}

/// The sandbox's way out to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Egress {
    /// No route and no supervisor: the empty network namespace refuses
    /// every destination and nothing explains it. Dev mode (which has the
    /// host's network), and sandboxes that allow nothing on a kernel without
    /// transparent egress.
    None,
    /// Transparent egress ([`NetVia::Kernel`]): the supervisor decides every
    /// `connect()` and name lookup, in both cases explaining refusals.
    Kernel,
    /// The filtering proxy ([`NetVia::Proxy`]) on the sandbox's
    /// 127.0.0.1:[`PROXY_PORT`].
    Proxy,
}

/// A policy that this host cannot enforce. Every variant names the missing
/// feature; [`PlanError::hint`] says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Landlock is missing or too old.
    #[error("{mode} mode needs landlock ABI {needed} ({why}); this kernel provides {found}")]
    LandlockAbi {
        /// The mode asked for.
        mode: &'static str,
        /// The ABI needed.
        needed: u32,
        /// The ABI found.
        found: LandlockAbi,
        /// What needs it.
        why: &'static str,
    },
    /// No seccomp.
    #[error("{mode} mode needs seccomp-bpf, which this kernel does not offer")]
    Seccomp {
        /// The mode asked for.
        mode: &'static str,
    },
    /// No user namespaces where one is needed.
    #[error("{mode} mode needs user namespaces ({why}), which this host does not allow for this user")]
    UserNamespaces {
        /// The mode asked for.
        mode: &'static str,
        /// What needs them.
        why: &'static str,
    },
    /// A quota has no mechanism here.
    #[error("quota {quota} cannot be enforced here: {why}")]
    Quota {
        /// The quota.
        quota: &'static str,
        /// Why not.
        why: &'static str,
    },
    /// Transparent egress is needed (the policy allows a host) and this
    /// kernel lacks it.
    #[error("network rules (--net {pattern}) need transparent egress: seccomp user notification, pidfd_getfd and thread pidfds (PIDFD_THREAD, Linux 6.9), which this kernel ({kernel}) does not offer")]
    TransparentEgress {
        /// The first pattern.
        pattern: String,
        /// The running kernel.
        kernel: String,
    },
    /// Network allow-lists need the sandbox's own network namespace, which
    /// dev mode does not have.
    #[error("network rules (--net {pattern}) cannot be enforced in dev mode, which has no network isolation")]
    NetworkInDevMode {
        /// The first pattern.
        pattern: String,
    },
}

impl PlanError {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            PlanError::LandlockAbi { .. } => "run `cordon doctor`; boot a kernel with Landlock enabled (CONFIG_SECURITY_LANDLOCK=y and `landlock` in the lsm= boot parameter), or use --mode dev for trusted code only",
            PlanError::Seccomp { .. } => "use a kernel built with CONFIG_SECCOMP_FILTER=y",
            PlanError::UserNamespaces { .. } => "run `cordon doctor`; allow user namespaces (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns), run as root, or use --mode process",
            PlanError::Quota { .. } => "run `cordon doctor` to see which cgroup controllers this process may use; delegate one to cordon's cgroup, or drop the quota",
            PlanError::TransparentEgress { .. } => "run `cordon doctor`; use Linux 6.9 or later, or --net-via proxy (only programs that honour HTTP_PROXY get out, through a user-space relay)",
            PlanError::NetworkInDevMode { .. } => "use --mode process or --mode container, or drop --net (dev mode reaches the network directly)",
        }
    }
}

/// Size of the container's `/tmp` when no memory limit says otherwise.
pub const DEFAULT_TMP_MB: u64 = 512;

/// ELF interpreters (dynamic loaders) that an exec allow-list implies.
pub const ELF_LOADERS: &[&str] = &[
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
    "/lib/ld-musl-x86_64.so.1",
    "/lib/ld-musl-aarch64.so.1",
];

/// What an exec allow-list does not stop, as the ledger, `cordon check` and
/// the README say it.
pub const EXEC_LIST_GAP: &str = "the ELF loader (ld.so FILE) still starts ELF files that lie in the system library \
folders (/usr/lib, /lib*, /usr/local/lib) or in a memfd, and a listed program that runs code of its own (an \
interpreter, a JIT, ctypes) is not confined by the list";

/// Where the filtering proxy listens on the sandbox's own loopback.
pub const PROXY_PORT: u16 = 3128;

/// Landlock ABI with `TRUNCATE`, below which read-only grants could be truncated.
const FS_ABI: u32 = 3;

impl Plan {
    /// `HOME` and `TMPDIR` inside the sandbox; `None` in dev mode, where
    /// they are the caller's ([`Tmp::Caller`]).
    pub fn home(&self) -> Option<&Path> {
        match &self.tmp {
            Tmp::Private { .. } => Some(Path::new("/tmp")),
            Tmp::Caller => None,
        }
    }

    /// The plan of a dev-mode run: nothing is enforced but the timeout (by
    /// the supervisor), so the kernel is not asked anything and no
    /// [`KernelSupport`] is needed, and no folder is made ([`Tmp::Caller`]).
    /// Refuses network grants, which dev mode cannot hold to their patterns.
    pub fn build_dev(policy: &Policy) -> Result<Plan, PlanError> {
        if let Some(p) = policy.net.allow.first() {
            return Err(PlanError::NetworkInDevMode {
                pattern: format!("{}{}", p.host, p.port.map(|p| format!(":{p}")).unwrap_or_default()),
            });
        }
        let mut plan = Plan::unrestricted(Mode::Dev);
        plan.rlimits.clear();
        plan.ledger_dev(policy);
        Ok(plan)
    }

    /// A plan of `mode` that enforces nothing yet, with the caller's `HOME`
    /// and `TMPDIR` and no core dumps; [`Plan::build`] adds to it.
    fn unrestricted(mode: Mode) -> Plan {
        Plan {
            mode,
            namespaces: vec![],
            landlock: None,
            seccomp: None,
            cgroup: CgroupPlan::default(),
            rlimits: vec![Rlimit { kind: RlimitKind::Core, soft: 0, hard: 0 }],
            root: None,
            host_view: None,
            sysctls: vec![],
            drop_capabilities: false,
            proxy_port: None,
            terminal: TerminalPlan::None,
            egress: Egress::None,
            host_sockets: HostSockets::None,
            tmp: Tmp::Caller,
            ledger: vec![],
            system_entries: None,
        }
    }

    /// Decides how `policy` is enforced in `mode` on a host with `support`.
    /// With [`Mode::Dev`] it is [`Plan::build_dev`], which does not look at
    /// `support`.
    pub fn build(policy: &Policy, mode: Mode, support: &KernelSupport) -> Result<Plan, PlanError> {
        if mode == Mode::Dev {
            return Plan::build_dev(policy);
        }
        let mut plan = Plan::unrestricted(mode);
        let name = mode.as_str();
        if !support.seccomp.is_available() {
            return Err(PlanError::Seccomp { mode: name });
        }
        let userns = support.user_namespaces.is_available();
        match mode {
            Mode::Container => {
                if !userns {
                    return Err(PlanError::UserNamespaces {
                        mode: name,
                        why: "the container root is built inside one",
                    });
                }
                plan.namespaces = vec![
                    Namespace::User,
                    Namespace::Mount,
                    Namespace::Pid,
                    Namespace::Net,
                    Namespace::Ipc,
                    Namespace::Uts,
                    Namespace::Cgroup,
                ];
            }
            _ => {
                if !userns && !support.root {
                    return Err(PlanError::UserNamespaces {
                        mode: name,
                        why: "an unprivileged user needs one for the empty network namespace",
                    });
                }
                plan.namespaces = if userns { vec![Namespace::User] } else { vec![] };
                // IPC: uid 0 would otherwise reach the host's SysV segments;
                // mount: the read-only host view, the run's own /proc, /tmp
                // and /dev/shm.
                plan.namespaces.extend([Namespace::Mount, Namespace::Pid, Namespace::Net, Namespace::Ipc]);
            }
        }
        let needed = if mode == Mode::Process { LandlockAbi::SCOPES.0 } else { FS_ABI };
        if support.landlock_abi.0 < needed {
            let why = if mode == Mode::Process {
                "filesystem rules, and scopes for signals and abstract unix sockets"
            } else {
                "filesystem rules with truncate control"
            };
            return Err(PlanError::LandlockAbi { mode: name, needed, found: support.landlock_abi, why });
        }
        plan.drop_capabilities = true;
        let container = mode == Mode::Container;
        let memfd = match policy.exec {
            None => MemfdExec::Allow,
            Some(_) if support.root && support.memfd_noexec.is_available() => {
                plan.sysctls.push(NamespaceSysctl::MEMFD_NOEXEC);
                MemfdExec::Allow
            }
            Some(_) => MemfdExec::RequireNoexecSeal,
        };
        plan.egress = plan_egress(policy, support)?;
        if matches!(plan.egress, Egress::Kernel | Egress::Proxy) && !policy.net.allow.is_empty() {
            plan.host_sockets = HostSockets::Maker;
        }
        plan.seccomp = Some(SeccompPlan {
            wx: policy.wx,
            unix: if container { UnixSockets::Allow } else { UnixSockets::SocketpairOnly },
            watches: if container { FileWatches::Allow } else { FileWatches::Refuse },
            memfd,
            connect: if plan.egress == Egress::Kernel { ConnectRule::Notify } else { ConnectRule::Allow },
        });
        let root = root_plan(policy, mode);
        plan.tmp = Tmp::Private { size_mb: root.tmp_size_mb };
        plan.landlock = Some(landlock_plan(policy, mode, support, &plan.tmp));
        if container {
            plan.root = Some(root);
        } else {
            plan.host_view = Some(root);
        }
        if plan.egress == Egress::Proxy {
            plan.proxy_port = Some(PROXY_PORT);
        }
        plan.plan_limits(policy, support)?;
        plan.ledger_sandbox(policy, support);
        Ok(plan)
    }

    /// Decides how the command's terminal is handled (see [`TerminalPlan`])
    /// and records it in the ledger. Pure, like [`Plan::build`].
    pub fn attach_terminal(&mut self, terminal: TerminalUse) {
        self.terminal = match terminal {
            TerminalUse::Pty => TerminalPlan::Pty,
            TerminalUse::Caller(fds) if !fds.contains(&true) => TerminalPlan::None,
            TerminalUse::Caller(_) if self.mode == Mode::Dev => TerminalPlan::Unrestricted,
            TerminalUse::Caller(fds) => TerminalPlan::Relayed { fds },
        };
        // `/dev/tty` opens the opener's controlling terminal. It is granted
        // only where that is a pty of the run's own (the command's session
        // has it). Otherwise the sandbox stays in cordon's session, whose
        // controlling terminal, now or later, it must never open; a grant
        // that covers it (`--read /dev`) is carved, too.
        if let Some(ll) = &mut self.landlock {
            let dev_tty = (PathBuf::from("/dev/tty"), FsAccess::Terminal);
            ll.late.retain(|rule| *rule != dev_tty);
            if self.terminal == TerminalPlan::Pty {
                ll.late.push(dev_tty);
            } else {
                let dev_tty = Path::new("/dev/tty");
                if ll.rules.iter().any(|(p, _)| dev_tty.starts_with(p)) && !ll.deny.iter().any(|d| d == dev_tty) {
                    ll.deny.push(dev_tty.to_owned());
                    for root in [&mut self.root, &mut self.host_view].into_iter().flatten() {
                        root.deny.push(dev_tty.to_owned());
                    }
                }
            }
        }
        self.ledger.retain(|e| !e.rule.starts_with("terminal"));
        let (rule, mechanism, enforcement) = match self.terminal {
            TerminalPlan::None => return,
            TerminalPlan::Pty if self.mode == Mode::Dev => (
                "terminal (a pty of its own)".to_owned(),
                "pty from the host's devpts, relayed by cordon".to_owned(),
                Enforcement::Full,
            ),
            TerminalPlan::Pty => (
                "terminal (a pty of its own)".to_owned(),
                "pty from the sandbox's own devpts instance, relayed by cordon; the caller's terminal is not passed in"
                    .to_owned(),
                Enforcement::Full,
            ),
            TerminalPlan::Relayed { fds } => (
                format!("terminal (the caller's, on fd {})", fd_list(fds)),
                "pipes relayed by cordon, which job control stops like any program of the job, and the whole run \
                 with it; the caller's terminal is not passed in"
                    .to_owned(),
                Enforcement::Full,
            ),
            TerminalPlan::Unrestricted => {
                ("terminal (the caller's)".to_owned(), "none (dev mode)".to_owned(), Enforcement::NotEnforced)
            }
        };
        self.ledger.push(LedgerEntry { rule, mechanism, enforcement });
    }

    fn plan_limits(&mut self, policy: &Policy, support: &KernelSupport) -> Result<(), PlanError> {
        let l = &policy.limits;
        if let Some(mb) = l.memory_mb {
            match &support.cgroups.memory {
                Some(dir) => self.cgroup.memory = Some((dir.clone(), mb << 20)),
                None => {
                    let bytes = mb << 20;
                    self.rlimits.push(Rlimit { kind: RlimitKind::Data, soft: bytes, hard: bytes });
                }
            }
        }
        if let Some(n) = l.pids {
            match &support.cgroups.pids {
                Some(dir) => self.cgroup.pids = Some((dir.clone(), n)),
                // RLIMIT_NPROC counts per user namespace since 5.14, but never
                // binds a process whose real uid is the host's root.
                None if !support.root && self.namespaces.contains(&Namespace::User) => {
                    self.rlimits.push(Rlimit { kind: RlimitKind::Nproc, soft: n, hard: n })
                }
                None => return Err(PlanError::Quota {
                    quota: "pids",
                    why:
                        "no pids cgroup controller is usable below cordon's cgroup, and RLIMIT_NPROC does not bind root",
                }),
            }
        }
        if let Some(ms) = l.cpu_ms {
            let secs = ms.div_ceil(1000);
            self.rlimits.push(Rlimit { kind: RlimitKind::Cpu, soft: secs, hard: secs + 1 });
            self.cgroup.cpuacct = support.cgroups.cpuacct.clone();
        }
        if let Some(mb) = l.file_size_mb {
            self.rlimits.push(Rlimit { kind: RlimitKind::Fsize, soft: mb << 20, hard: mb << 20 });
        }
        Ok(())
    }

    fn ledger_dev(&mut self, policy: &Policy) {
        let none = |rule: String| LedgerEntry {
            rule,
            mechanism: "none (dev mode)".into(),
            enforcement: Enforcement::NotEnforced,
        };
        self.ledger.push(none("fs, net, env, syscalls, quotas".into()));
        if let Some(t) = policy.limits.timeout_ms {
            self.ledger.push(LedgerEntry {
                rule: format!("quota timeout_ms={t}"),
                mechanism: "supervisor".into(),
                enforcement: Enforcement::Full,
            });
        }
    }

    fn ledger_sandbox(&mut self, policy: &Policy, support: &KernelSupport) {
        let container = self.mode == Mode::Container;
        let ll = self.landlock.as_ref().map(|l| l.abi).unwrap_or(0);
        let fs_mech = if container {
            format!("mount namespace + landlock ABI {ll}")
        } else {
            format!("landlock ABI {ll} + read-only host mounts")
        };
        let mut push = |rule: String, mechanism: String, enforcement| {
            self.ledger.push(LedgerEntry { rule, mechanism, enforcement })
        };
        if policy.fs.system == SystemSet::Include {
            push("fs.system (read-only system set)".into(), fs_mech.clone(), Enforcement::Full);
        }
        for (kind, rules) in [("fs.read", &policy.fs.read), ("fs.write", &policy.fs.write)] {
            for r in rules {
                push(format!("{kind} {}", r.path.display()), fs_mech.clone(), Enforcement::Full);
            }
        }
        for r in &policy.fs.deny {
            let (mech, e) = if container {
                (fs_mech.clone(), Enforcement::Full)
            } else {
                (
                    format!("{fs_mech} (the directories above it cannot be listed or written directly)"),
                    Enforcement::Partial,
                )
            };
            push(format!("fs.deny {}", r.path.display()), mech, e);
        }
        if let Some(list) = &policy.exec {
            let names: Vec<String> = list.iter().map(|p| p.display().to_string()).collect();
            let memfd = if self.sysctls.contains(&NamespaceSysctl::MEMFD_NOEXEC) {
                "vm.memfd_noexec=2 in the run's pid namespace"
            } else {
                "seccomp: memfd_create needs MFD_NOEXEC_SEAL"
            };
            push(
                format!("exec [{}]", names.join(", ")),
                format!(
                    "landlock ABI {ll}: execute right only on these files, the command itself and the ELF loader; \
                     every other mount noexec but the system library folders; memfds not executable ({memfd}). \
                     Gap: {EXEC_LIST_GAP}"
                ),
                Enforcement::Partial,
            );
        }
        let route = match self.egress {
            Egress::Kernel => "supervisor: every connect() (seccomp user notification) and name lookup (the sandbox's stub DNS); allowed TCP connected from the host's namespace and handed over".to_owned(),
            Egress::Proxy => format!(
                "filtering proxy on the sandbox's 127.0.0.1:{PROXY_PORT} (HTTP, CONNECT, SOCKS5); no other route"
            ),
            Egress::None => "empty network namespace".to_owned(),
        };
        if policy.net.allow.is_empty() {
            let how = match self.egress {
                Egress::Kernel => format!("empty network namespace; refusals explained by the {route}"),
                _ => route.clone(),
            };
            push("net (none)".into(), how, Enforcement::Full);
        }
        for (kind, patterns) in [("net.allow", &policy.net.allow), ("net.deny", &policy.net.deny)] {
            for p in patterns {
                push(
                    format!("{kind} {}{}", p.host, p.port.map(|p| format!(":{p}")).unwrap_or_default()),
                    route.clone(),
                    Enforcement::Full,
                );
            }
        }
        push("env".into(), env_mechanism(), Enforcement::Full);
        push("syscalls".into(), "seccomp-bpf allow-list, dangerous families EPERM".into(), Enforcement::Full);
        push(
            "file metadata outside write grants (mode, owner, times, xattrs)".into(),
            if container {
                "read-only binds, device nodes included"
            } else {
                "read-only host mounts (mount namespace)"
            }
            .into(),
            Enforcement::Full,
        );
        push(
            "setuid/setgid files, file capabilities, ACLs".into(),
            "seccomp: S_ISUID/S_ISGID modes refused (EPERM), extended attributes cannot be set (EOPNOTSUPP)".into(),
            Enforcement::Full,
        );
        if !container {
            push(
                "file watches".into(),
                "seccomp: inotify refused (ENOSYS) and fanotify (EPERM): the host's folders are in view".into(),
                Enforcement::Full,
            );
        }
        if policy.wx == crate::policy::WriteXorExecute::Deny {
            push(
                "memory W^X (deny_wx)".into(),
                "seccomp: mmap, mprotect and pkey_mprotect with PROT_WRITE and PROT_EXEC together refused".into(),
                Enforcement::Full,
            );
        }
        if !container {
            push(
                "host unix sockets".into(),
                "seccomp: socket(AF_UNIX) and datagram socketpairs refused, stream and seqpacket socketpairs allowed (landlock ABI < 9 cannot scope socket paths)"
                    .into(),
                Enforcement::Full,
            );
        }
        let scopes = self.landlock.as_ref().is_some_and(|l| l.scopes);
        push(
            "processes".into(),
            format!("pid namespace{}", if scopes { " + landlock signal scope" } else { "" }),
            Enforcement::Full,
        );
        push("capabilities (none)".into(), "capset + bounding set + no_new_privs".into(), Enforcement::Full);
        let l = &policy.limits;
        if let Some(t) = l.timeout_ms {
            push(
                format!("quota timeout_ms={t}"),
                "supervisor (SIGTERM, then SIGKILL after grace_ms)".into(),
                Enforcement::Full,
            );
        }
        if let Some(mb) = l.memory_mb {
            match &self.cgroup.memory {
                Some((d, _)) => push(
                    format!("quota memory_mb={mb}"),
                    format!("cgroup {:?} memory", d.version).to_lowercase(),
                    Enforcement::Full,
                ),
                None => push(
                    format!("quota memory_mb={mb}"),
                    "RLIMIT_DATA per process (counts writable mappings, not only used memory)".into(),
                    Enforcement::Partial,
                ),
            }
        }
        if let Some(n) = l.pids {
            match &self.cgroup.pids {
                Some((d, _)) => push(
                    format!("quota pids={n}"),
                    format!("cgroup {:?} pids", d.version).to_lowercase(),
                    Enforcement::Full,
                ),
                None => push(
                    format!("quota pids={n}"),
                    "RLIMIT_NPROC in the run's user namespace".into(),
                    Enforcement::Full,
                ),
            }
        }
        if let Some(ms) = l.cpu_ms {
            match &self.cgroup.cpuacct {
                Some(_) => push(
                    format!("quota cpu_ms={ms}"),
                    "cgroup cpu accounting polled by the supervisor + RLIMIT_CPU".into(),
                    Enforcement::Full,
                ),
                None => push(
                    format!("quota cpu_ms={ms}"),
                    "RLIMIT_CPU per process, whole seconds".into(),
                    Enforcement::Partial,
                ),
            }
        }
        if let Some(mb) = l.file_size_mb {
            push(format!("quota file_size_mb={mb}"), "RLIMIT_FSIZE".into(), Enforcement::Full);
        }
        push(format!("quota output_bytes={}", l.output_bytes), "supervisor capture buffer".into(), Enforcement::Full);
        let _ = support;
    }
}

/// What builds the command's environment and what is in it by default (the
/// ledger's `env` entry).
pub fn env_mechanism() -> String {
    format!(
        "supervisor builds it: {} passed from the caller (when set), {} set to the run's own; \
         nothing else unless env.allow passes or env.set sets it",
        crate::policy::env::BASIC_VARS.join(", "),
        crate::policy::env::SET_BY_CORDON.join(" and ")
    )
}

/// `0, 2` for the marked fds.
fn fd_list(fds: [bool; 3]) -> String {
    (0..3).filter(|i| fds[*i]).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// The route out. Transparent egress whenever the kernel offers it, even
/// when nothing is allowed (so that refusals are explained); without it, a
/// policy that allows a host cannot be enforced as asked and is refused.
fn plan_egress(policy: &Policy, support: &KernelSupport) -> Result<Egress, PlanError> {
    let first =
        policy.net.allow.first().map(|p| format!("{}{}", p.host, p.port.map(|p| format!(":{p}")).unwrap_or_default()));
    Ok(match (policy.net.via, first) {
        (NetVia::Proxy, Some(_)) => Egress::Proxy,
        (NetVia::Proxy, None) => Egress::None,
        (NetVia::Kernel, _) if support.transparent_egress.is_available() => Egress::Kernel,
        (NetVia::Kernel, None) => Egress::None,
        (NetVia::Kernel, Some(pattern)) => {
            return Err(PlanError::TransparentEgress { pattern, kernel: support.kernel.clone() })
        }
    })
}

fn landlock_plan(policy: &Policy, mode: Mode, support: &KernelSupport, tmp: &Tmp) -> LandlockPlan {
    let abi = support.landlock_abi.0.min(7);
    let mut rules: Vec<(PathBuf, FsAccess)> = vec![];
    let mut late = vec![];
    if policy.fs.system == SystemSet::Include {
        rules.extend(SYSTEM_READ.iter().map(|p| (PathBuf::from(p), FsAccess::Read)));
        rules.extend(SYSTEM_DEVICES.iter().map(|p| (PathBuf::from(p), FsAccess::Device)));
    }
    rules.extend(policy.fs.read.iter().map(|r| (r.path.clone(), FsAccess::Read)));
    rules.extend(policy.fs.write.iter().map(|r| (r.path.clone(), FsAccess::Write)));
    if mode == Mode::Container {
        // The container root holds only what was granted, so listing it
        // reveals nothing; file access still needs a rule of its own.
        late.push((PathBuf::from("/"), FsAccess::List));
        late.push((PathBuf::from("/tmp"), FsAccess::Write));
        late.push((PathBuf::from("/dev/shm"), FsAccess::Write));
        late.push((PathBuf::from("/proc"), FsAccess::Read));
        // The run's own devpts instance (/dev/ptmx links into it). /dev/tty
        // comes with the terminal plan ([`Plan::attach_terminal`]).
        late.push((PathBuf::from("/dev/pts"), FsAccess::Terminal));
        if policy.fs.system == SystemSet::Exclude {
            late.extend(SYSTEM_DEVICES.iter().map(|p| (PathBuf::from(p), FsAccess::Device)));
        }
    } else {
        match tmp {
            Tmp::Private { .. } => late.push((PathBuf::from("/tmp"), FsAccess::Write)),
            // Dev mode has no Landlock plan; nothing to grant.
            Tmp::Caller => {}
        }
        late.push((PathBuf::from("/dev/shm"), FsAccess::Write));
        // The run's own /proc, mounted by init: only its processes are listed.
        late.push((PathBuf::from("/proc"), FsAccess::Read));
        // The run's own devpts instance, mounted on /dev/pts by init with
        // its ptmx bound on /dev/ptmx (a rule of its own: a file bind is
        // not beneath /dev/pts). /dev/tty comes with the terminal plan.
        late.push((PathBuf::from("/dev/pts"), FsAccess::Terminal));
        late.push((PathBuf::from("/dev/ptmx"), FsAccess::Terminal));
        if policy.fs.system == SystemSet::Exclude {
            rules.extend(SYSTEM_DEVICES.iter().map(|p| (PathBuf::from(p), FsAccess::Device)));
        }
    }
    if let Some(list) = &policy.exec {
        rules.extend(list.iter().map(|p| (p.clone(), FsAccess::Exec)));
        // The kernel opens a dynamic executable's interpreter as an exec too.
        rules.extend(ELF_LOADERS.iter().map(|p| (PathBuf::from(p), FsAccess::Exec)));
    }
    LandlockPlan {
        abi,
        scopes: support.landlock_abi >= LandlockAbi::SCOPES,
        rules,
        deny: policy.fs.deny.iter().map(|r| r.path.clone()).collect(),
        late,
        exec_restricted: policy.exec.is_some(),
        pinned: policy.fs.pinned.clone(),
        holes: policy.fs.holes.clone(),
    }
}

fn root_plan(policy: &Policy, mode: Mode) -> RootPlan {
    let mut binds: Vec<Bind> = vec![];
    let system = policy.fs.system == SystemSet::Include;
    // Process mode sees the host's mounts, read-only: the system set and
    // the read grants are already there (those under /tmp are re-bound by
    // the mount builder, which tells them apart by their resolved path).
    if mode == Mode::Container && system {
        binds.extend(SYSTEM_READ.iter().map(|p| Bind { path: PathBuf::from(p), access: FsAccess::Read }));
    }
    binds.extend(policy.fs.read.iter().map(|r| Bind { path: r.path.clone(), access: FsAccess::Read }));
    binds.extend(policy.fs.write.iter().map(|r| Bind { path: r.path.clone(), access: FsAccess::Write }));
    let exec = match &policy.exec {
        None => ExecMounts::Everywhere,
        Some(list) => {
            if system {
                binds.extend(LIBRARY_TREES.iter().map(|p| Bind { path: PathBuf::from(p), access: FsAccess::Exec }));
            }
            binds.extend(list.iter().map(|p| Bind { path: p.clone(), access: FsAccess::Exec }));
            ExecMounts::ListedOnly
        }
    };
    // Shallow first, so deeper grants are mounted on top of broader ones.
    binds.sort_by_key(|b| b.path.components().count());
    let tmp_size_mb = policy.limits.memory_mb.map_or(DEFAULT_TMP_MB, |m| m.min(DEFAULT_TMP_MB));
    let deny = policy.fs.deny.iter().map(|r| r.path.clone()).collect();
    RootPlan { binds, deny, tmp_size_mb, exec, pinned: policy.fs.pinned.clone(), holes: policy.fs.holes.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Limits, NetPattern, NetPolicy};
    use crate::probe::Availability;

    fn build(policy: &Policy, mode: Mode, s: &KernelSupport) -> Result<Plan, PlanError> {
        Plan::build(policy, mode, s)
    }

    #[test]
    fn an_exec_list_takes_execute_away_from_the_other_grants() {
        let policy = Policy { exec: Some(vec![PathBuf::from("/usr/bin/cat")]), ..Policy::default() };
        let ll = build(&policy, Mode::Process, &KernelSupport::fixture_full()).unwrap().landlock.unwrap();
        assert!(ll.exec_restricted);
        assert!(ll.rules.contains(&(PathBuf::from("/usr/bin/cat"), FsAccess::Exec)));
        assert!(ll.rules.contains(&(PathBuf::from("/lib64/ld-linux-x86-64.so.2"), FsAccess::Exec)));
        assert!(
            !build(&Policy::default(), Mode::Process, &KernelSupport::fixture_full())
                .unwrap()
                .landlock
                .unwrap()
                .exec_restricted
        );
    }

    #[test]
    fn full_kernel_process_mode_uses_every_mechanism() {
        let p = build(&Policy::default(), Mode::Process, &KernelSupport::fixture_full()).unwrap();
        assert_eq!(p.namespaces, [Namespace::User, Namespace::Mount, Namespace::Pid, Namespace::Net, Namespace::Ipc]);
        assert!(p.host_view.is_some() && p.root.is_none());
        assert_eq!(p.seccomp.unwrap().unix, UnixSockets::SocketpairOnly);
        let ll = p.landlock.unwrap();
        assert!(ll.scopes && ll.abi == 7);
        assert_eq!(p.tmp, Tmp::Private { size_mb: DEFAULT_TMP_MB });
        assert!(ll.late.contains(&(PathBuf::from("/tmp"), FsAccess::Write)));
        assert!(p.seccomp.is_some() && p.drop_capabilities);
    }

    #[test]
    fn process_mode_always_has_a_private_tmp_with_tmp_grants_bound_on_top() {
        let mut policy = Policy::default();
        policy.fs.write.push(crate::policy::PathRule::parse("/tmp/work", Path::new("/")).unwrap());
        for mode in [Mode::Process, Mode::Container] {
            let p = build(&policy, mode, &KernelSupport::fixture_full()).unwrap();
            assert_eq!(p.tmp, Tmp::Private { size_mb: DEFAULT_TMP_MB }, "{mode:?}");
            let view = p.root.as_ref().or(p.host_view.as_ref()).unwrap();
            assert!(view.binds.contains(&Bind { path: "/tmp/work".into(), access: FsAccess::Write }));
        }
    }

    #[test]
    #[should_panic(expected = "host's network namespace")]
    fn a_net_sysctl_cannot_be_made_because_init_writes_it_before_joining_the_runs_network() {
        // Control: a key of another tree is made as asked.
        let vm = NamespaceSysctl::new("vm/memfd_noexec", "2");
        assert_eq!((vm.key(), vm.value()), ("vm/memfd_noexec", "2"));
        let _ = NamespaceSysctl::new("net/ipv4/ping_group_range", "0 0");
    }

    #[test]
    fn an_exec_list_makes_unlisted_trees_noexec_and_memfds_sealed_and_says_where_it_stops() {
        let policy = Policy { exec: Some(vec![PathBuf::from("/usr/bin/cat")]), ..Policy::default() };
        for mode in [Mode::Process, Mode::Container] {
            let p = build(&policy, mode, &KernelSupport::fixture_full()).unwrap();
            let view = p.root.as_ref().or(p.host_view.as_ref()).unwrap();
            assert_eq!(view.exec, ExecMounts::ListedOnly);
            for exec in ["/usr/bin/cat", "/usr/lib", "/lib64"] {
                assert!(view.binds.contains(&Bind { path: exec.into(), access: FsAccess::Exec }), "{exec}");
            }
            // Root: the run's pid namespace gets vm.memfd_noexec=2.
            assert_eq!(p.sysctls, [NamespaceSysctl::MEMFD_NOEXEC]);
            assert_eq!(p.seccomp.unwrap().memfd, MemfdExec::Allow);
            let e = p.ledger.iter().find(|e| e.rule == "exec [/usr/bin/cat]").unwrap();
            assert_eq!(e.enforcement, Enforcement::Partial);
            assert!(e.mechanism.contains(EXEC_LIST_GAP), "{}", e.mechanism);
        }
        // Not root: the sysctl is out of reach; seccomp requires sealed memfds.
        let s = KernelSupport { root: false, ..KernelSupport::fixture_full() };
        let p = build(&policy, Mode::Process, &s).unwrap();
        assert!(p.sysctls.is_empty());
        assert_eq!(p.seccomp.unwrap().memfd, MemfdExec::RequireNoexecSeal);
        let p = build(&Policy::default(), Mode::Process, &KernelSupport::fixture_full()).unwrap();
        assert_eq!(p.host_view.unwrap().exec, ExecMounts::Everywhere);
        assert!(p.sysctls.is_empty());
    }

    #[test]
    fn old_landlock_refuses_process_mode_and_names_the_abi() {
        for abi in 0..6 {
            let e = build(&Policy::default(), Mode::Process, &KernelSupport::fixture_landlock(abi)).unwrap_err();
            assert!(matches!(e, PlanError::LandlockAbi { needed: 6, .. }), "{e}");
            assert!(e.to_string().contains("landlock ABI 6"), "{e}");
        }
    }

    #[test]
    fn container_mode_runs_on_abi_3_without_scopes() {
        let p = build(&Policy::default(), Mode::Container, &KernelSupport::fixture_landlock(3)).unwrap();
        assert!(!p.landlock.unwrap().scopes);
        assert!(build(&Policy::default(), Mode::Container, &KernelSupport::fixture_landlock(2)).is_err());
    }

    #[test]
    fn locked_down_user_cannot_get_a_sandbox() {
        let s = KernelSupport::fixture_locked_down_user();
        assert!(matches!(build(&Policy::default(), Mode::Process, &s), Err(PlanError::UserNamespaces { .. })));
        assert!(matches!(build(&Policy::default(), Mode::Container, &s), Err(PlanError::UserNamespaces { .. })));
        assert!(build(&Policy::default(), Mode::Dev, &s).is_ok());
    }

    #[test]
    fn root_without_pids_cgroup_refuses_a_pids_quota() {
        let mut s = KernelSupport::fixture_full();
        s.cgroups.pids = None;
        let policy = Policy { limits: Limits { pids: Some(10), ..Limits::default() }, ..Policy::default() };
        assert!(matches!(build(&policy, Mode::Process, &s), Err(PlanError::Quota { quota: "pids", .. })));
        s.root = false;
        let p = build(&policy, Mode::Process, &s).unwrap();
        assert!(p.rlimits.iter().any(|r| r.kind == RlimitKind::Nproc && r.soft == 10));
    }

    #[test]
    fn memory_falls_back_to_rlimit_and_says_partial() {
        let mut s = KernelSupport::fixture_full();
        s.cgroups.memory = None;
        let policy = Policy { limits: Limits { memory_mb: Some(64), ..Limits::default() }, ..Policy::default() };
        let p = build(&policy, Mode::Process, &s).unwrap();
        assert!(p.rlimits.iter().any(|r| r.kind == RlimitKind::Data));
        assert!(p.ledger.iter().any(|e| e.rule == "quota memory_mb=64" && e.enforcement == Enforcement::Partial));
        let p = build(&policy, Mode::Process, &KernelSupport::fixture_full()).unwrap();
        assert_eq!(p.cgroup.memory.unwrap().1, 64 << 20);
    }

    #[test]
    fn allowed_hosts_get_the_proxy_when_asked_except_in_dev_mode() {
        let mut policy = Policy::default();
        policy.net.allow.push(NetPattern::parse("example.com").unwrap());
        policy.net.via = NetVia::Proxy;
        for mode in [Mode::Process, Mode::Container] {
            let p = build(&policy, mode, &KernelSupport::fixture_full()).unwrap();
            assert_eq!((p.egress, p.proxy_port), (Egress::Proxy, Some(PROXY_PORT)));
            assert_eq!(p.seccomp.unwrap().connect, ConnectRule::Allow);
            assert!(p.namespaces.contains(&Namespace::Net));
            assert!(p.ledger.iter().any(|e| e.rule == "net.allow example.com" && e.mechanism.contains("proxy")));
        }
        let nothing = Policy { net: NetPolicy { via: NetVia::Proxy, ..NetPolicy::default() }, ..Policy::default() };
        let p = build(&nothing, Mode::Process, &KernelSupport::fixture_full()).unwrap();
        assert_eq!((p.egress, p.proxy_port), (Egress::None, None));
        let e = build(&policy, Mode::Dev, &KernelSupport::fixture_full()).unwrap_err();
        assert!(e.to_string().contains("--net example.com"), "{e}");
    }

    #[test]
    fn the_callers_terminal_is_relayed_through_pipes_whatever_landlock_can_do() {
        let stdin_only = TerminalUse::Caller([true, false, false]);
        for (mode, support) in [
            (Mode::Process, KernelSupport::fixture_full()),
            (Mode::Container, KernelSupport::fixture_full()),
            (Mode::Container, KernelSupport::fixture_landlock(3)),
        ] {
            let mut p = build(&Policy::default(), mode, &support).unwrap();
            p.attach_terminal(stdin_only);
            assert_eq!(p.terminal, TerminalPlan::Relayed { fds: [true, false, false] });
            let entry = p.ledger.iter().find(|e| e.rule.starts_with("terminal")).unwrap();
            assert_eq!(entry.rule, "terminal (the caller's, on fd 0)");
            assert!(entry.mechanism.contains("relayed by cordon"), "{}", entry.mechanism);
        }
        // A pty of its own, no terminal at all, and dev mode.
        let mut p = build(&Policy::default(), Mode::Container, &KernelSupport::fixture_landlock(3)).unwrap();
        p.attach_terminal(TerminalUse::Pty);
        assert_eq!(p.terminal, TerminalPlan::Pty);
        p.attach_terminal(TerminalUse::Caller([false; 3]));
        assert_eq!(p.terminal, TerminalPlan::None);
        assert!(!p.ledger.iter().any(|e| e.rule.starts_with("terminal")), "no stale terminal entry");
        let mut p = build(&Policy::default(), Mode::Dev, &KernelSupport::fixture_full()).unwrap();
        p.attach_terminal(stdin_only);
        assert_eq!(p.terminal, TerminalPlan::Unrestricted);
    }

    #[test]
    fn both_modes_grant_their_own_devpts_with_ioctls_and_dev_tty_only_where_it_cannot_reach_cordons_terminal() {
        let dev_tty = (PathBuf::from("/dev/tty"), FsAccess::Terminal);
        for mode in [Mode::Process, Mode::Container] {
            let mut p = build(&Policy::default(), mode, &KernelSupport::fixture_full()).unwrap();
            let ll = p.landlock.as_ref().unwrap();
            assert!(ll.late.contains(&(PathBuf::from("/dev/pts"), FsAccess::Terminal)), "{}", mode.as_str());
            assert!(!ll.rules.iter().any(|(p, _)| p.starts_with("/dev/pts")), "never the host's ptys");
            // In cordon's session (no terminal of the run's): no /dev/tty.
            assert!(!ll.late.contains(&dev_tty), "{} before a terminal plan", mode.as_str());
            for (terminal, granted) in [
                (TerminalUse::Pty, true),
                (TerminalUse::Caller([true, false, false]), false),
                (TerminalUse::Caller([false; 3]), false),
                (TerminalUse::Pty, true),
            ] {
                p.attach_terminal(terminal);
                let late = &p.landlock.as_ref().unwrap().late;
                assert_eq!(late.contains(&dev_tty), granted, "{} {terminal:?}", mode.as_str());
                assert!(late.iter().filter(|r| **r == dev_tty).count() <= 1, "one rule at most");
            }
            // A grant that covers /dev/tty is carved wherever the sandbox
            // stays in cordon's session: the caller's terminal relayed too.
            let mut policy = Policy::default();
            policy.fs.read.push(crate::policy::PathRule { path: PathBuf::from("/dev") });
            for terminal in [TerminalUse::Caller([false; 3]), TerminalUse::Caller([true, true, false])] {
                let mut p = build(&policy, mode, &KernelSupport::fixture_full()).unwrap();
                p.attach_terminal(terminal);
                let what = format!("{} {terminal:?}", mode.as_str());
                assert!(p.landlock.as_ref().unwrap().deny.contains(&PathBuf::from("/dev/tty")), "{what}");
                let root = p.root.as_ref().or(p.host_view.as_ref()).unwrap();
                assert!(root.deny.contains(&PathBuf::from("/dev/tty")), "{what}");
            }
        }
    }

    #[test]
    fn transparent_egress_is_the_default_and_fails_closed_without_the_kernel_features() {
        let mut policy = Policy::default();
        policy.net.allow.push(NetPattern::parse("example.com:443").unwrap());
        let without = KernelSupport { transparent_egress: Availability::Unavailable, ..KernelSupport::fixture_full() };
        for mode in [Mode::Process, Mode::Container] {
            let p = build(&policy, mode, &KernelSupport::fixture_full()).unwrap();
            assert_eq!((p.egress, p.proxy_port), (Egress::Kernel, None));
            assert_eq!(p.seccomp.unwrap().connect, ConnectRule::Notify);
            assert!(p
                .ledger
                .iter()
                .any(|e| e.rule == "net.allow example.com:443" && e.mechanism.contains("seccomp user notification")));
            // Nothing allowed: the supervisor still explains refusals.
            let p = build(&Policy::default(), mode, &KernelSupport::fixture_full()).unwrap();
            assert_eq!(p.egress, Egress::Kernel);
            // A kernel without it: nothing allowed still runs (closed, unexplained) ...
            let p = build(&Policy::default(), mode, &without).unwrap();
            assert_eq!((p.egress, p.seccomp.unwrap().connect), (Egress::None, ConnectRule::Allow));
            // ... an allowed host is refused, naming the feature and the way out.
            let e = build(&policy, mode, &without).unwrap_err();
            assert!(matches!(e, PlanError::TransparentEgress { .. }), "{e}");
            assert!(e.to_string().contains("seccomp user notification"), "{e}");
            assert!(e.to_string().contains("--net example.com:443"), "{e}");
            assert!(e.hint().contains("--net-via proxy"));
        }
    }

    #[test]
    fn dev_mode_enforces_nothing_but_says_so() {
        let p = build(&Policy::default(), Mode::Dev, &KernelSupport::fixture_full()).unwrap();
        assert!(p.landlock.is_none() && p.seccomp.is_none() && p.namespaces.is_empty());
        assert!(p.ledger.iter().all(|e| e.enforcement != Enforcement::Full || e.rule.starts_with("quota timeout")));
    }
}
