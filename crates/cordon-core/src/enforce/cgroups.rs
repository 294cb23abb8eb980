//! Per-run cgroups below cordon's own: created right after the clone, while
//! init sets up the namespaces, and init is moved into them before it starts
//! the command (joining a v1 hierarchy waits for an RCU grace period, so
//! doing it in parallel keeps it off the critical path). Read and removed
//! after the run. cordon never moves a process out of the cgroup it started in.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::plan::CgroupPlan;
use crate::probe::CgroupVersion;

/// Creating or configuring a per-run cgroup failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} cgroup {path}")]
pub struct CgroupError {
    /// What was being done.
    pub action: &'static str,
    /// The cgroup directory or file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

/// What the run's cgroups counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct CgroupStats {
    /// The memory controller killed a process for exceeding the limit.
    pub oom_killed: bool,
    /// Peak memory use, bytes.
    pub memory_peak: Option<u64>,
    /// A fork failed at the pids limit.
    pub pids_limit_hit: bool,
    /// CPU time of every process that was in the run's cgroup, when the
    /// run has one that counts CPU (see [`RunCgroups::cpu_times`]).
    pub cpu: Option<CpuTimes>,
}

/// CPU time a cgroup counted, nanoseconds. Unlike `wait4`'s resource usage
/// it includes processes no `wait` ever reported: children reaped
/// automatically because their parent ignores `SIGCHLD`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// All CPU time; exact (v1 `cpuacct.usage`, v2 `usage_usec`).
    pub total_ns: u64,
    /// The user part. On v1 it and `sys_ns` come from a different,
    /// tick-based counter, so they need not add up to `total_ns`: use them
    /// as a proportion.
    pub user_ns: u64,
    /// The system part.
    pub sys_ns: u64,
}

impl CpuTimes {
    /// `wait4`'s user and system microseconds, raised to what the cgroup
    /// counted: the CPU it saw beyond them (processes no `wait` reported,
    /// cordon's socket maker for the run) is split in the cgroup's own
    /// user/system proportion. Never lowers either figure.
    pub fn cover(&self, user_us: u64, sys_us: u64) -> (u64, u64) {
        let unseen_us = (self.total_ns / 1000).saturating_sub(user_us + sys_us);
        let parts = self.user_ns + self.sys_ns;
        let user_share = match parts {
            0 => unseen_us,
            _ => u64::try_from(u128::from(unseen_us) * u128::from(self.user_ns) / u128::from(parts)).unwrap_or(0),
        };
        (user_us + user_share, sys_us + (unseen_us - user_share))
    }
}

/// The run's cgroups. Removed on drop (best effort: a cgroup that still has
/// a process cannot be removed, and is left for the next run's sweep).
#[derive(Debug, Default)]
pub struct RunCgroups {
    memory: Option<(CgroupVersion, PathBuf)>,
    pids: Option<(CgroupVersion, PathBuf)>,
    cpuacct: Option<(CgroupVersion, PathBuf)>,
    procs: Vec<PathBuf>,
    /// What `pids.max` says now.
    pids_max: Option<u64>,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError { action: "configure", path: path.to_owned(), source })
}

fn make(dir: &Path) -> Result<(), CgroupError> {
    fs::create_dir(dir).map_err(|source| CgroupError { action: "create", path: dir.to_owned(), source })
}

impl RunCgroups {
    /// Creates the cgroups `plan` asks for, named `cordon-{run_id}` (the caller makes `run_id` unique on the host), with
    /// their limits.
    pub fn create(plan: &CgroupPlan, run_id: &str) -> Result<Self, CgroupError> {
        let mut out = RunCgroups::default();
        for dir in [plan.memory.as_ref().map(|(d, _)| d), plan.pids.as_ref().map(|(d, _)| d), plan.cpuacct.as_ref()]
            .into_iter()
            .flatten()
        {
            sweep(&dir.path);
        }
        let mut procs = vec![];
        let name = format!("cordon-{run_id}");
        if let Some((dir, bytes)) = &plan.memory {
            let d = dir.path.join(&name);
            make(&d)?;
            out.memory = Some((dir.version, d.clone()));
            match dir.version {
                CgroupVersion::V1 => {
                    write(&d.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    // Version 1 charges socket buffers to a cgroup (a
                    // counter of their own) only once it has a TCP limit,
                    // and only for sockets made after that: set before
                    // anything joins. Best effort: a kernel without the
                    // file charges them to no cgroup, as before.
                    let _ = fs::write(d.join("memory.kmem.tcp.limit_in_bytes"), bytes.to_string());
                    // Without swap accounting this file is absent; nothing to cap then.
                    let _ = fs::write(d.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                }
                CgroupVersion::V2 => {
                    write(&d.join("memory.max"), &bytes.to_string())?;
                    write(&d.join("memory.swap.max"), "0")?;
                }
            }
            procs.push(d);
        }
        if let Some((dir, n)) = &plan.pids {
            let d = dir.path.join(&name);
            if out.memory.as_ref().is_none_or(|(_, m)| *m != d) {
                make(&d)?;
            }
            out.pids = Some((dir.version, d.clone()));
            // Init is in the group too; the quota counts the command's processes.
            write(&d.join("pids.max"), &(n + 1).to_string())?;
            out.pids_max = Some(n + 1);
            procs.push(d);
        }
        if let Some(dir) = &plan.cpuacct {
            let d = dir.path.join(&name);
            if !d.exists() {
                make(&d)?;
            }
            out.cpuacct = Some((dir.version, d.clone()));
            procs.push(d);
        }
        procs.sort();
        procs.dedup();
        out.procs = procs;
        Ok(out)
    }

    /// Whether there is any cgroup to join.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Moves `pid` (init, before it has children) into every run cgroup.
    pub fn join(&self, pid: libc::pid_t) -> Result<(), CgroupError> {
        for d in &self.procs {
            let p = d.join("cgroup.procs");
            fs::write(&p, pid.to_string()).map_err(|source| CgroupError { action: "join", path: p, source })?;
        }
        Ok(())
    }

    /// Whether the run has a memory cgroup.
    pub fn has_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Moves a helper process of cordon's (not the command's) into every
    /// run cgroup, with one more place in the pids quota for it: the
    /// command's quota is unchanged.
    pub fn admit_helper(&mut self, pid: libc::pid_t) -> Result<(), CgroupError> {
        if let (Some((_, d)), Some(n)) = (&self.pids, self.pids_max) {
            write(&d.join("pids.max"), &(n + 1).to_string())?;
            self.pids_max = Some(n + 1);
        }
        self.join(pid)
    }

    /// CPU time used so far by the run, nanoseconds.
    pub fn cpu_ns(&self) -> Option<u64> {
        let (v, d) = self.cpuacct.as_ref()?;
        match v {
            CgroupVersion::V1 => read_u64(&d.join("cpuacct.usage")),
            CgroupVersion::V2 => stat_field(&d.join("cpu.stat"), "usage_usec").map(|us| us * 1000),
        }
    }

    /// CPU time the run's processes used, split: from the CPU cgroup (made
    /// for a CPU quota) or, on v2, from the memory or pids cgroup, whose
    /// `cpu.stat` counts CPU without any controller. `None` without either.
    pub fn cpu_times(&self) -> Option<CpuTimes> {
        match &self.cpuacct {
            Some((CgroupVersion::V1, d)) => Some(CpuTimes {
                total_ns: read_u64(&d.join("cpuacct.usage"))?,
                user_ns: read_u64(&d.join("cpuacct.usage_user")).unwrap_or(0),
                sys_ns: read_u64(&d.join("cpuacct.usage_sys")).unwrap_or(0),
            }),
            _ => {
                let (version, d) = self.cpuacct.as_ref().or(self.memory.as_ref()).or(self.pids.as_ref())?;
                if *version != CgroupVersion::V2 {
                    return None;
                }
                let text = fs::read_to_string(d.join("cpu.stat")).ok()?;
                let us = |key| field(&text, key).map(|us| us * 1000);
                Some(CpuTimes { total_ns: us("usage_usec")?, user_ns: us("user_usec")?, sys_ns: us("system_usec")? })
            }
        }
    }

    /// Reads what the controllers counted.
    pub fn stats(&self) -> CgroupStats {
        let mut s = CgroupStats { cpu: self.cpu_times(), ..CgroupStats::default() };
        if let Some((v, d)) = &self.memory {
            match v {
                CgroupVersion::V1 => {
                    s.oom_killed = stat_field(&d.join("memory.oom_control"), "oom_kill").unwrap_or(0) > 0;
                    s.memory_peak = read_u64(&d.join("memory.max_usage_in_bytes"));
                }
                CgroupVersion::V2 => {
                    s.oom_killed = stat_field(&d.join("memory.events"), "oom_kill").unwrap_or(0) > 0;
                    s.memory_peak = read_u64(&d.join("memory.peak"));
                }
            }
        }
        if let Some((_, d)) = &self.pids {
            s.pids_limit_hit = stat_field(&d.join("pids.events"), "max").unwrap_or(0) > 0;
        }
        s
    }
}

impl Drop for RunCgroups {
    fn drop(&mut self) {
        let mut dirs: Vec<&PathBuf> =
            [&self.memory, &self.pids, &self.cpuacct].into_iter().flatten().map(|(_, d)| d).collect();
        dirs.dedup();
        for d in dirs {
            // The last process may still be leaving the group right after the
            // reap; retry briefly on EBUSY.
            for _ in 0..50 {
                match fs::remove_dir(d) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(2))
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Removes `cordon-*` cgroups in `parent` left by a cordon that was killed:
/// empty, and older than any run can take to join its cgroup after creating
/// it (a live run's init joins within a millisecond and stays until the end).
fn sweep(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    let now = std::time::SystemTime::now();
    for e in entries.flatten() {
        let stale = e.file_name().to_str().is_some_and(|n| n.starts_with("cordon-"))
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age.as_secs() >= 10))
            && fs::read_to_string(e.path().join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty());
        if stale {
            let _ = fs::remove_dir(e.path());
        }
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_field(path: &Path, key: &str) -> Option<u64> {
    field(&fs::read_to_string(path).ok()?, key)
}

/// The value of `key` in a cgroup file of `key value` lines.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::CpuTimes;

    #[test]
    fn cpu_the_cgroup_saw_beyond_wait4_is_added_in_its_proportion() {
        let cg = CpuTimes { total_ns: 1_000_000_000, user_ns: 750_000_000, sys_ns: 250_000_000 };
        // 100 ms seen by wait4; 900 ms only by the cgroup: 675 user, 225 system.
        assert_eq!(cg.cover(60_000, 40_000), (735_000, 265_000));
        // Everything seen: unchanged; the cgroup never lowers a figure.
        assert_eq!(cg.cover(800_000, 200_000), (800_000, 200_000));
        assert_eq!(cg.cover(2_000_000, 5), (2_000_000, 5));
        // No split known: the rest counts as user time.
        let total_only = CpuTimes { total_ns: 5_000_000, user_ns: 0, sys_ns: 0 };
        assert_eq!(total_only.cover(1_000, 1_000), (4_000, 1_000));
    }
}
