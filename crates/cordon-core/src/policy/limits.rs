//! Quotas: time, memory, CPU, processes, output, file size.

use serde::Serialize;

use super::{PolicyError, Result};

/// Quotas for one execution. `None` means "no limit of cordon's own" (the
/// host's limits still hold). Each is enforced by the mechanism the plan
/// picks: a cgroup where this process can create one, an rlimit otherwise.
#[derive(Clone, Debug, Serialize)]
pub struct Limits {
    /// Wall-clock limit, enforced by the supervisor. Default: none.
    pub timeout_ms: Option<u64>,
    /// Time between SIGTERM and SIGKILL when a limit ends a run. Default 1000.
    pub grace_ms: u64,
    /// Memory actually used (resident + swap, counted by the kernel), in MiB.
    pub memory_mb: Option<u64>,
    /// CPU time of all processes together, in milliseconds.
    pub cpu_ms: Option<u64>,
    /// Processes and threads alive at once.
    pub pids: Option<u64>,
    /// Captured stdout+stderr in `--json` mode. Default 1 MiB.
    pub output_bytes: u64,
    /// Largest file the command may write, in MiB.
    pub file_size_mb: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: None,
            grace_ms: 1000,
            memory_mb: None,
            cpu_ms: None,
            pids: None,
            output_bytes: 1 << 20,
            file_size_mb: None,
        }
    }
}

impl Limits {
    pub(crate) fn validate(&self) -> Result<()> {
        let check = |field, value: Option<u64>, min, max, expected| match value {
            Some(v) if v < min || v > max => Err(PolicyError::Limit { field, value: v, expected }),
            _ => Ok(()),
        };
        check("timeout_ms", self.timeout_ms, 1, 7 * 24 * 3_600_000, "expected 1 ms to 7 days")?;
        check("grace_ms", Some(self.grace_ms), 0, 600_000, "expected 0 to 600000 ms")?;
        check("memory_mb", self.memory_mb, 4, 1 << 30, "expected at least 4 MiB")?;
        check("cpu_ms", self.cpu_ms, 1, 7 * 24 * 3_600_000, "expected 1 ms to 7 days")?;
        check("pids", self.pids, 1, 4_194_304, "expected 1 to 4194304")?;
        check("output_bytes", Some(self.output_bytes), 0, 1 << 34, "expected 0 to 16 GiB")?;
        check("file_size_mb", self.file_size_mb, 1, 1 << 30, "expected at least 1 MiB")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_quota_names_the_field() {
        let l = Limits { memory_mb: Some(1), ..Limits::default() };
        let e = l.validate().unwrap_err().to_string();
        assert!(e.contains("memory_mb = 1"), "{e}");
        assert!(Limits::default().validate().is_ok());
    }
}
