//! Pending markers, as cordon wrote them before the run journal: one file
//! per run in `pending/` next to the log. A marker an older cordon left
//! when it was killed is still recorded as `LOST` by the next open; nothing
//! writes markers any more.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::journal::process_start;
use crate::log::AuditLog;
use crate::record::{AuditRecord, ErrorCode};

/// The folder of run markers, next to the log.
pub const PENDING_DIR: &str = "pending";

/// The markers folder of the log at `log`.
pub(crate) fn pending_dir(log: &Path) -> PathBuf {
    log.parent().unwrap_or(Path::new(".")).join(PENDING_DIR)
}

#[derive(Deserialize)]
pub(crate) struct Marker {
    pub(crate) log: PathBuf,
    pub(crate) pid: u32,
    /// The owner's start time in clock ticks since boot.
    pub(crate) pid_start: Option<u64>,
    pub(crate) record: AuditRecord,
}

fn owner_alive(marker: &Marker) -> bool {
    match marker.pid_start {
        Some(start) => process_start(marker.pid) == Some(start),
        None => Path::new(&format!("/proc/{}", marker.pid)).exists() || !Path::new("/proc/self").exists(),
    }
}

/// Records as `LOST` every run whose marker an older cordon left in
/// `pending/` while its owner is gone (unless the log has its record), and
/// removes those markers. Returns how many records it appended. One `stat`
/// when there is no `pending/` folder.
pub(crate) fn recover_markers(log: &AuditLog) -> io::Result<usize> {
    let entries = match fs::read_dir(pending_dir(log.path())) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let held = log.lock()?;
    let mut stale: Vec<(PathBuf, Marker)> = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') && name.ends_with(".tmp") {
            // Half-written by a begin that died: its run never started.
            let pid = name.trim_end_matches(".tmp").rsplit('.').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| process_start(p).is_none()) {
                remove_if_present(&path)?;
            }
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        // A marker that does not parse was not written by cordon: leave it.
        let Ok(marker) = fs::read(&path).and_then(|b| serde_json::from_slice::<Marker>(&b).map_err(io::Error::other))
        else {
            continue;
        };
        if marker.log == log.path() && !owner_alive(&marker) {
            stale.push((path, marker));
        }
    }
    stale.sort_by(|a, b| a.1.record.time.cmp(&b.1.record.time));
    let mut appended = 0;
    for (path, marker) in stale {
        if !held.has_record(&marker.record.request_id, 0)? {
            let mut record = lost(marker.record, marker.pid);
            held.append(&mut record)?;
            appended += 1;
        }
        remove_if_present(&path)?;
    }
    // Once an older cordon's markers are all recorded, the folder goes, so
    // later opens pay one failed `open` for it.
    let _ = fs::remove_dir(pending_dir(log.path()));
    Ok(appended)
}

/// The `LOST` record of a run whose owner (`pid`) died: its draft with
/// `lost: true`, an error naming the pid, `duration_ms` 0, and `time` still
/// the run's start.
pub(crate) fn lost(mut draft: AuditRecord, pid: u32) -> AuditRecord {
    draft.lost = true;
    draft.outcome = ErrorCode::Lost.as_str().to_owned();
    draft.error =
        Some(format!("cordon (pid {pid}) ended before recording the outcome; the command's result is unknown"));
    draft.duration_ms = 0.0;
    draft
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
