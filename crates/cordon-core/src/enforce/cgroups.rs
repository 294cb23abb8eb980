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
    /// CPU time of all processes, nanoseconds.
    pub cpu_ns: Option<u64>,
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

    /// Reads what the controllers counted.
    pub fn stats(&self) -> CgroupStats {
        let mut s = CgroupStats { cpu_ns: self.cpu_ns(), ..CgroupStats::default() };
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
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}
