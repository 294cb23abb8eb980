//! What the running kernel can enforce, read without changing anything.
//!
//! [`KernelSupport::detect`] is the only gate for kernel-dependent behaviour:
//! `cordon doctor` prints it, `Plan::build` decides from it, and tests skip
//! only when it says a feature is unsupported.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::sys;

/// The Landlock ABI version the kernel provides; 0 when Landlock is
/// unsupported or disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LandlockAbi(pub u32);

impl std::fmt::Display for LandlockAbi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 {
            f.write_str("unsupported")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl LandlockAbi {
    /// Filesystem rules (read, write, execute, make, remove).
    pub const FS: LandlockAbi = LandlockAbi(1);
    /// Renames and links across directories (`REFER`).
    pub const REFER: LandlockAbi = LandlockAbi(2);
    /// `TRUNCATE`.
    pub const TRUNCATE: LandlockAbi = LandlockAbi(3);
    /// `IOCTL_DEV`.
    pub const IOCTL_DEV: LandlockAbi = LandlockAbi(5);
    /// Scopes for signals and abstract unix sockets.
    pub const SCOPES: LandlockAbi = LandlockAbi(6);
}

/// Whether an optional kernel feature is present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// The feature works for this process.
    Available,
    /// The kernel or its configuration does not offer it.
    Unavailable,
}

impl Availability {
    fn from_bool(b: bool) -> Self {
        if b {
            Availability::Available
        } else {
            Availability::Unavailable
        }
    }
    /// Whether it is available.
    pub fn is_available(self) -> bool {
        self == Availability::Available
    }
}

/// A cgroup controller this process may create child groups in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupDir {
    /// `v1` or `v2`.
    pub version: CgroupVersion,
    /// The directory of the cgroup this process is in, for that controller.
    pub path: PathBuf,
}

/// The cgroup hierarchy a controller lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// A legacy per-controller hierarchy.
    V1,
    /// The unified hierarchy.
    V2,
}

/// Cgroup controllers usable below this process's own cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CgroupSupport {
    /// Memory limit and accounting.
    pub memory: Option<CgroupDir>,
    /// Process count limit.
    pub pids: Option<CgroupDir>,
    /// CPU time accounting.
    pub cpuacct: Option<CgroupDir>,
}

/// What this kernel, and this process's privileges, can enforce.
#[derive(Clone, Debug, Serialize)]
pub struct KernelSupport {
    /// `uname -r`.
    pub kernel: String,
    /// The Landlock ABI.
    pub landlock_abi: LandlockAbi,
    /// seccomp-bpf filters.
    pub seccomp: Availability,
    /// Whether this process may create user namespaces.
    pub user_namespaces: Availability,
    /// Whether the effective uid is 0.
    pub root: bool,
    /// What transparent egress needs: seccomp user notification
    /// (`SECCOMP_RET_USER_NOTIF` with `WAIT_KILLABLE_RECV` and `ADDFD`),
    /// `pidfd_getfd` and thread pidfds (`PIDFD_THREAD`, Linux 6.9).
    pub transparent_egress: Availability,
    /// Cgroup controllers usable below our own cgroup.
    pub cgroups: CgroupSupport,
    /// The per-pid-namespace `vm.memfd_noexec` sysctl (Linux 6.3), with
    /// which a run's init makes every memfd non-executable.
    pub memfd_noexec: Availability,
}

/// A probe gave an answer that is not one of the documented "unsupported"
/// answers; something is wrong with the host (or a seccomp filter around us).
#[derive(Debug, thiserror::Error)]
#[error("probing {feature} failed")]
pub struct ProbeError {
    /// What was probed.
    pub feature: &'static str,
    /// The unexpected error.
    #[source]
    pub source: io::Error,
}

/// Whether [`KernelSupport::detect_with`] looks for usable cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupProbe {
    /// Read `/proc/self/cgroup` and `/proc/self/mountinfo`.
    Probe,
    /// Leave `cgroups` empty: the caller needs no quota a cgroup enforces
    /// (this saves every `cordon run` without quotas two `/proc` reads).
    Skip,
}

impl KernelSupport {
    /// Probes the running kernel. Only reads: no namespace, cgroup or rule is
    /// created. Fails only on answers that mean "broken", not "unsupported".
    pub fn detect() -> Result<Self, ProbeError> {
        Self::detect_with(CgroupProbe::Probe)
    }

    /// [`detect`](Self::detect), with or without the cgroup probe.
    pub fn detect_with(cgroups: CgroupProbe) -> Result<Self, ProbeError> {
        let landlock_abi = match sys::landlock_abi() {
            Ok(v) => LandlockAbi(v),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EOPNOTSUPP)) => LandlockAbi(0),
            Err(source) => return Err(ProbeError { feature: "landlock", source }),
        };
        let seccomp = match sys::seccomp_mode() {
            Ok(_) => Availability::Available,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Availability::Unavailable,
            Err(source) => return Err(ProbeError { feature: "seccomp", source }),
        };
        let root = sys::effective_uid() == 0;
        let transparent_egress =
            if seccomp.is_available() { probe_transparent_egress() } else { Availability::Unavailable };
        Ok(KernelSupport {
            transparent_egress,
            kernel: sys::kernel_release(),
            landlock_abi,
            seccomp,
            user_namespaces: Availability::from_bool(user_namespaces_allowed(root)),
            root,
            memfd_noexec: Availability::from_bool(Path::new("/proc/sys/vm/memfd_noexec").exists()),
            cgroups: match cgroups {
                CgroupProbe::Probe => CgroupSupport::detect(),
                CgroupProbe::Skip => CgroupSupport::default(),
            },
        })
    }

    /// A current kernel with everything: Landlock ABI 7, seccomp, user
    /// namespaces, root, cgroup v1 memory/pids/cpuacct. For plan tests.
    pub fn fixture_full() -> Self {
        let v1 =
            |c: &str| Some(CgroupDir { version: CgroupVersion::V1, path: PathBuf::from("/sys/fs/cgroup").join(c) });
        KernelSupport {
            kernel: "6.18.0".into(),
            landlock_abi: LandlockAbi(7),
            seccomp: Availability::Available,
            user_namespaces: Availability::Available,
            root: true,
            transparent_egress: Availability::Available,
            cgroups: CgroupSupport { memory: v1("memory"), pids: v1("pids"), cpuacct: v1("cpuacct") },
            memfd_noexec: Availability::Available,
        }
    }

    /// A kernel with the given Landlock ABI and otherwise like
    /// [`fixture_full`](Self::fixture_full).
    pub fn fixture_landlock(abi: u32) -> Self {
        KernelSupport { landlock_abi: LandlockAbi(abi), ..Self::fixture_full() }
    }

    /// An unprivileged user on a kernel without user namespaces or cgroups.
    pub fn fixture_locked_down_user() -> Self {
        KernelSupport {
            user_namespaces: Availability::Unavailable,
            root: false,
            cgroups: CgroupSupport::default(),
            ..Self::fixture_full()
        }
    }
}

/// Transparent egress needs the `user_notif` seccomp action and thread
/// pidfds; the latter (Linux 6.9) is the newest of its features, so its
/// presence implies the rest (`pidfd_getfd` 5.6, `ADDFD` 5.9,
/// `WAIT_KILLABLE_RECV` 5.19). Reads a file, asks the kernel for the
/// notification structure sizes, and opens and closes a pidfd for this
/// thread: nothing changes.
fn probe_transparent_egress() -> Availability {
    let actions = fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    let available = actions.split_whitespace().any(|a| a == "user_notif")
        && sys::notify::check_notification_sizes().is_ok()
        && sys::notify::probe_thread_pidfd().is_ok();
    Availability::from_bool(available)
}

/// Reads the sysctls that gate user namespaces. Root needs only a non-zero
/// `max_user_namespaces`; others also need unprivileged clones allowed.
fn user_namespaces_allowed(root: bool) -> bool {
    let read = |p: &str| fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    if read("/proc/sys/user/max_user_namespaces") == Some(0) {
        return false;
    }
    if root {
        return true;
    }
    let debian_knob = read("/proc/sys/kernel/unprivileged_userns_clone").unwrap_or(1) != 0;
    let apparmor_knob = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").unwrap_or(0) == 0;
    debian_knob && apparmor_knob
}

impl CgroupSupport {
    /// Finds, per controller, the directory of this process's own cgroup and
    /// keeps it if we may create children there (write access to it).
    pub fn detect() -> Self {
        let Ok(own) = fs::read_to_string("/proc/self/cgroup") else { return Self::default() };
        let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else { return Self::default() };
        let mut out = CgroupSupport::default();
        for (controller, slot) in [("memory", &mut out.memory), ("pids", &mut out.pids), ("cpuacct", &mut out.cpuacct)]
        {
            *slot = find_v1(&own, &mounts, controller).or_else(|| find_v2(&own, &mounts, controller));
        }
        out
    }
}

/// A v1 hierarchy carrying `controller`, joined with our path in it.
fn find_v1(own: &str, mounts: &str, controller: &str) -> Option<CgroupDir> {
    let rel = own.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        ctrls.split(',').any(|c| c == controller).then(|| path.to_owned())
    })?;
    let mount = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        let (fstype, _src, opts) = (r.next()?, r.next()?, r.next()?);
        (fstype == "cgroup" && opts.split(',').any(|o| o == controller))
            .then(|| left.split_whitespace().nth(4).map(str::to_owned))?
    })?;
    usable(CgroupVersion::V1, Path::new(&mount), &rel)
}

/// The unified hierarchy, if `controller` is enabled for our children.
fn find_v2(own: &str, mounts: &str, controller: &str) -> Option<CgroupDir> {
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mount = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2").then(|| left.split_whitespace().nth(4).map(str::to_owned))?
    })?;
    let dir = usable(CgroupVersion::V2, Path::new(&mount), rel)?;
    // cpu time is always accounted in v2 (cpu.stat); memory and pids need the
    // controller enabled in our subtree.
    let enabled = fs::read_to_string(dir.path.join("cgroup.subtree_control")).unwrap_or_default();
    let wanted = if controller == "cpuacct" { "cpu" } else { controller };
    (controller == "cpuacct" || enabled.split_whitespace().any(|c| c == wanted)).then_some(dir)
}

fn usable(version: CgroupVersion, mount: &Path, rel: &str) -> Option<CgroupDir> {
    let path = mount.join(rel.trim_start_matches('/'));
    sys::can_write(&path).then_some(CgroupDir { version, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_runs_and_reports_a_kernel() {
        let s = KernelSupport::detect().expect("probe must not fail on a sane host");
        assert!(!s.kernel.is_empty());
    }

    #[test]
    fn syscall_probes_say_what_proc_says() {
        // The files are the reference; the syscalls are what cordon uses.
        let proc = |p: &str| fs::read_to_string(p).expect(p).trim().to_owned();
        assert_eq!(sys::kernel_release(), proc("/proc/sys/kernel/osrelease"));
        assert_eq!(sys::last_capability().to_string(), proc("/proc/sys/kernel/cap_last_cap"));
    }

    #[test]
    fn v1_lookup_joins_mount_and_own_path() {
        let own = "4:memory:/a/b\n1:cpu:/\n0::/\n";
        let mounts = "30 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n";
        let rel = own.lines().find_map(|l| l.split(':').nth(2).filter(|_| l.contains("memory"))).unwrap();
        assert_eq!(rel, "/a/b");
        // `usable` needs write access, so only the parsing is pinned here.
        assert!(find_v1(own, mounts, "pids").is_none());
    }
}
