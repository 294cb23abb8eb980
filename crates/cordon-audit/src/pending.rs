//! Runs between their start and their record: markers in `pending/` next
//! to the log, and recovery of the runs a dead cordon left there.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log::{append_locked, open_file, AuditLog};
use crate::record::{AuditRecord, ErrorCode};

/// The folder of run markers, next to the log.
pub const PENDING_DIR: &str = "pending";

impl AuditLog {
    /// Records that a run is starting: writes a marker holding `draft` (the
    /// record as far as it is known) so the run is reported as lost if
    /// cordon dies before [`Pending::complete`]. `draft.request_id` names the
    /// marker and may contain only `[A-Za-z0-9_.-]` (no leading `.`).
    pub fn begin(&self, draft: &AuditRecord) -> io::Result<Pending> {
        let id = &draft.request_id;
        let valid = !id.is_empty()
            && id.len() <= 128
            && !id.starts_with('.')
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("request id `{id}` cannot name a marker file"),
            ));
        }
        let dir = self.pending_dir();
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let pid = std::process::id();
        let marker = Marker { log: self.path().to_owned(), pid, pid_start: process_start(pid), record: draft.clone() };
        let json = serde_json::to_vec(&marker).map_err(io::Error::other)?;
        // Write then rename, so a marker is either absent or complete.
        let tmp = dir.join(format!(".{id}.{pid}.tmp"));
        let path = dir.join(format!("{id}.json"));
        fs::write(&tmp, json)?;
        fs::rename(&tmp, &path)?;
        Ok(Pending { log: self.clone(), marker: path })
    }

    pub(crate) fn pending_dir(&self) -> PathBuf {
        self.path().parent().unwrap_or(Path::new(".")).join(PENDING_DIR)
    }
}

/// A run between [`AuditLog::begin`] and [`Pending::complete`].
///
/// Dropping it without completing leaves the marker: once this process has
/// exited, [`recover_lost`] records the run as lost.
#[derive(Debug)]
#[must_use = "a pending run is recorded as lost unless completed"]
pub struct Pending {
    log: AuditLog,
    marker: PathBuf,
}

impl Pending {
    /// Appends the run's record and removes the marker.
    pub fn complete(self, record: AuditRecord) -> io::Result<()> {
        self.log.append(record)?;
        remove_if_present(&self.marker)
    }

    /// The marker file.
    pub fn marker_path(&self) -> &Path {
        &self.marker
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Marker {
    pub(crate) log: PathBuf,
    pub(crate) pid: u32,
    /// The owner's start time in clock ticks since boot (`/proc/PID/stat`
    /// field 22), which tells a live owner from a reused pid.
    pub(crate) pid_start: Option<u64>,
    pub(crate) record: AuditRecord,
}

/// Start time of `pid`, or `None` if it is not running (or is a zombie).
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the
    // last `)`. Then field 3 (state) is at index 0, field 22 at index 19.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn owner_alive(marker: &Marker) -> bool {
    match marker.pid_start {
        Some(start) => process_start(marker.pid) == Some(start),
        // The start time was unknown when the marker was written (no /proc):
        // never take the run for lost while the pid exists.
        None => Path::new(&format!("/proc/{}", marker.pid)).exists() || !Path::new("/proc/self").exists(),
    }
}

/// Appends a `lost: true` record for every run whose marker is still in
/// `pending/` while its owner process is gone, and removes those markers.
/// Returns how many records it appended. A lost record is the marker's
/// draft with `lost: true`, outcome `LOST`, an error naming the dead pid,
/// `duration_ms` 0, and `time` still the run's start. Runs that already
/// have a record get none (their marker is only removed). Holds the log's
/// lock throughout, so concurrent recoveries cannot record a run twice.
pub fn recover_lost(log: &AuditLog) -> io::Result<usize> {
    let dir = log.pending_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let file = open_file(log.path())?;
    file.lock()?;
    let mut stale: Vec<(PathBuf, Marker)> = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') && name.ends_with(".tmp") {
            // A marker half-written by a begin() that died: its run never
            // started. Remove it once its writer is gone.
            let pid = name.trim_end_matches(".tmp").rsplit('.').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| process_start(p).is_none()) {
                remove_if_present(&path)?;
            }
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        // A marker that does not parse was not written by begin() (it
        // renames complete files into place): leave it for a person.
        let Ok(marker) = fs::read(&path).and_then(|b| serde_json::from_slice::<Marker>(&b).map_err(io::Error::other))
        else {
            continue;
        };
        if marker.log == log.path() && !owner_alive(&marker) {
            stale.push((path, marker));
        }
    }
    if stale.is_empty() {
        return Ok(0);
    }
    stale.sort_by(|a, b| a.1.record.time.cmp(&b.1.record.time));
    let recorded = request_ids(log.path())?;
    let mut appended = 0;
    for (path, marker) in stale {
        if !recorded.contains(&marker.record.request_id) {
            let mut record = marker.record;
            record.lost = true;
            record.outcome = ErrorCode::Lost.as_str().to_owned();
            record.error = Some(format!(
                "cordon (pid {}) ended before recording the outcome; the command's result is unknown",
                marker.pid
            ));
            record.duration_ms = 0.0;
            append_locked(&file, &mut record, log.signer())?;
            appended += 1;
        }
        remove_if_present(&path)?;
    }
    Ok(appended)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn request_ids(path: &Path) -> io::Result<HashSet<String>> {
    #[derive(Deserialize)]
    struct IdOnly {
        request_id: String,
    }
    let mut ids = HashSet::new();
    for line in BufReader::new(fs::File::open(path)?).split(b'\n') {
        if let Ok(r) = serde_json::from_slice::<IdOnly>(&line?) {
            ids.insert(r.request_id);
        }
    }
    Ok(ids)
}
