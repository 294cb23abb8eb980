//! The run journal: which runs have started and have no record yet.
//!
//! `<log>.inflight` holds one JSON line per change: a run beginning (its
//! draft record, its owner's pid, start time and boot id, and the log's size
//! at that moment) or ending, each followed by the set of runs still open
//! after it. So the last complete line says which runs are open, and
//! finding them reads only the end of the file. When the last open run
//! ends, the journal is truncated to nothing: with one run at a time it
//! holds at most one line, and its common state is empty.
//!
//! Every change is one `write(2)` under an exclusive `flock` of the
//! journal, and none is synced: a write survives the death of the process
//! that made it (it is in the page cache), which is what the journal is
//! for. A run's begin line is written before the run starts.
//!
//! Whether a run's owner lives is a lock, not a pid: the owner holds an
//! open-file-description lock on the first byte of the run's begin line
//! until the run ends, and the kernel drops it when the owner dies, however
//! it dies. So a reused pid or a reboot cannot pass for the owner, and no
//! `/proc` file is read. A run whose lock is gone ([`Locked::take_dead`])
//! and that has no record in the log after the size the log had at its
//! begin is recorded as `LOST`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cordon_core::sys::{self, ByteLock};

use serde::{Deserialize, Serialize};

use crate::log::{read_line_at, Tail};
use crate::record::{AuditRecord, ErrorCode};

/// What follows the log's file name in its journal's.
pub const JOURNAL_SUFFIX: &str = ".inflight";

/// The journal of the log at `log`.
pub fn path_of(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_owned();
    name.push(JOURNAL_SUFFIX);
    log.with_file_name(name)
}

/// A run that has begun and has no record yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Open {
    /// Its request id.
    pub(crate) id: String,
    /// The pid of the process that began it (for messages).
    pub(crate) pid: u32,
    /// The offset of its begin line in the journal; its owner holds a lock
    /// on that byte.
    pub(crate) at: u64,
    /// The log's size when it began: its record, if any, lies after.
    pub(crate) log_len: u64,
}

/// One line. Runs begun by `AuditTrail` write the open set after each
/// change (`open`), so the last line tells it; a group writer, which owns
/// the journal, writes only the change (`begin` with `pid` and `log_len`,
/// or `end`), and the open set is what replaying its lines leaves.
#[derive(Serialize, Deserialize)]
pub(crate) struct Line {
    /// A run beginning: its draft record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) begin: Option<AuditRecord>,
    /// A run ending, or given up as lost: its request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) end: Option<String>,
    /// With `begin`, when there is no `open`: the beginner's pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pid: Option<u32>,
    /// With `begin`, when there is no `open`: the log's size then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) log_len: Option<u64>,
    /// The runs open after this line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) open: Option<Vec<Open>>,
}

/// Where a run's begin line is ([`Locked::begin`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Begun {
    /// The line's offset, whose byte the run's owner holds locked.
    pub(crate) at: u64,
    /// The journal's size after the line, when no other run was open
    /// before it.
    pub(crate) alone_until: Option<u64>,
}

/// A begun run whose owner is gone, as [`Journal::take_dead`] found it.
#[derive(Debug)]
pub(crate) struct Dead {
    pub(crate) draft: AuditRecord,
    pub(crate) pid: u32,
    pub(crate) log_len: u64,
}

/// The journal of one log, open.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    lock: Mutex<()>,
}

/// The journal held by [`Journal::lock`].
pub(crate) struct Locked<'a> {
    journal: &'a Journal,
    _guard: MutexGuard<'a, ()>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.journal.file.unlock();
    }
}

impl Journal {
    /// Opens (creating it, `0600`) the journal of the log at `log`.
    pub(crate) fn open(log: &Path) -> io::Result<Journal> {
        // Never through a link a run may have put in its place (review s14
        // R14-3: cordon would truncate the link's target).
        let file = cordon_core::state::open_own_file(
            OpenOptions::new().read(true).append(true).create(true).mode(0o600),
            &path_of(log),
        )?;
        Ok(Journal { file, lock: Mutex::new(()) })
    }

    /// The file, for a writer that owns it from now on.
    pub(crate) fn into_file(self) -> File {
        self.file
    }

    /// Whether no run is open (the common state: one syscall to tell).
    pub(crate) fn is_empty(&self) -> io::Result<bool> {
        Ok(self.file.metadata()?.len() == 0)
    }

    /// Holds the journal against this process's threads and, by `flock`,
    /// every other process.
    pub(crate) fn lock(&self) -> io::Result<Locked<'_>> {
        let guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.file.lock()?;
        Ok(Locked { journal: self, _guard: guard })
    }
}

impl Locked<'_> {
    fn file(&self) -> &File {
        &self.journal.file
    }

    /// The runs open now: the open set of the last complete line (a line
    /// cut short by a killed writer is skipped: its change never
    /// happened).
    pub(crate) fn open_runs(&self) -> io::Result<Vec<Open>> {
        self.open_runs_in(&Tail::read(self.file())?)
    }

    /// [`Locked::open_runs`] of the journal whose end is `tail` (read under
    /// this lock, so it is still the end).
    fn open_runs_in(&self, tail: &Tail) -> io::Result<Vec<Open>> {
        if tail.len == 0 {
            return Ok(vec![]);
        }
        if !tail.torn {
            if let Ok(Line { open: Some(open), .. }) = serde_json::from_slice::<Line>(&tail.last) {
                return Ok(open);
            }
        }
        // A group writer's journal, or a last line cut short (its writer
        // was killed before its change happened): replay it all.
        replay(self.file(), tail.len)
    }

    /// Writes the begin line of `draft` with `log_len`, the log's size
    /// now, and locks its first byte for as long as this process runs it.
    /// Returns the line's offset, which [`Locked::end`] takes.
    pub(crate) fn begin(&self, draft: &AuditRecord, log_len: u64) -> io::Result<Begun> {
        // One look at the end serves the open set, the line's offset and
        // its write.
        let tail = Tail::read(self.file())?;
        let mut open = self.open_runs_in(&tail)?;
        let alone = open.is_empty();
        // After the newline that a torn last line gets.
        let at = tail.len + u64::from(tail.torn);
        open.push(Open { id: draft.request_id.clone(), pid: std::process::id(), at, log_len });
        let line = Line { begin: Some(draft.clone()), end: None, pid: None, log_len: None, open: Some(open) };
        let written = self.write_after(&tail, &line)?;
        // Under the journal's flock, so no recovery looks before it holds.
        sys::ofd_lock_byte(self.file().as_fd(), at, ByteLock::Hold)?;
        Ok(Begun { at, alone_until: alone.then_some(tail.len + written) })
    }

    /// Ends run `id`, begun at `at`: it has its record. The last open run's
    /// end empties the journal.
    pub(crate) fn end(&self, id: &str, begun: &Begun) -> io::Result<()> {
        // While a run is open the journal only grows: every change under
        // its flock appends a line, it is emptied only when no run is open,
        // and a group writer takes it only when none is. So a journal still
        // the size this run's begin left it, when no other run was open
        // then, has changed in nothing since: this run is its only open one,
        // and it is emptied without being read.
        let untouched = begun.alone_until.is_some_and(|len| self.file().metadata().is_ok_and(|m| m.len() == len));
        if untouched {
            self.file().set_len(0)?;
        } else {
            let tail = Tail::read(self.file())?;
            let mut open = self.open_runs_in(&tail)?;
            open.retain(|o| o.id != id);
            self.end_all(&tail, open, id)?;
        }
        sys::ofd_lock_byte(self.file().as_fd(), begun.at, ByteLock::Release)
    }

    /// Writes the end of run `id` with `open`, the runs left, after `tail`;
    /// or empties the journal when none is left.
    fn end_all(&self, tail: &Tail, open: Vec<Open>, id: &str) -> io::Result<()> {
        if open.is_empty() {
            return self.file().set_len(0);
        }
        let line = Line { begin: None, end: Some(id.to_owned()), pid: None, log_len: None, open: Some(open) };
        self.write_after(tail, &line).map(drop)
    }

    /// The open runs whose owner is gone, with their drafts; the caller
    /// records each, then calls [`Locked::forget`].
    pub(crate) fn take_dead(&self) -> io::Result<Vec<Dead>> {
        let mut dead = vec![];
        for o in self.open_runs()? {
            if sys::ofd_byte_locked(self.file().as_fd(), o.at)? {
                continue;
            }
            let line = read_line_at(self.file(), o.at)?;
            let draft = match serde_json::from_slice::<Line>(&line).ok().and_then(|l| l.begin) {
                Some(d) if d.request_id == o.id => d,
                // The begin line is not where the set says: keep what the
                // set knows (the request id).
                _ => AuditRecord { request_id: o.id.clone(), ..AuditRecord::default() },
            };
            dead.push(Dead { draft, pid: o.pid, log_len: o.log_len });
        }
        Ok(dead)
    }

    /// Empties the journal: no run is open.
    pub(crate) fn truncate(&self) -> io::Result<()> {
        self.file().set_len(0)
    }

    /// Drops the runs `ids` from the open set (they were recorded).
    pub(crate) fn forget(&self, ids: &[String]) -> io::Result<()> {
        let tail = Tail::read(self.file())?;
        let mut open = self.open_runs_in(&tail)?;
        open.retain(|o| !ids.contains(&o.id));
        self.end_all(&tail, open, ids.first().map_or("", String::as_str))
    }

    /// Appends `line` to the journal whose end is `tail` (read under this
    /// lock), ending a torn last line first.
    /// Appends `line` (after the newline a torn last line gets); returns
    /// how many bytes it wrote.
    fn write_after(&self, tail: &Tail, line: &Line) -> io::Result<u64> {
        let mut buf = Vec::with_capacity(512);
        if tail.torn {
            buf.push(b'\n');
        }
        serde_json::to_writer(&mut buf, line).map_err(io::Error::other)?;
        buf.push(b'\n');
        (&self.journal.file).write_all(&buf)?;
        Ok(buf.len() as u64)
    }
}

/// The open runs that replaying the first `len` bytes of `file` leaves: an
/// `open` set replaces what came before it, a `begin` adds a run, an `end`
/// drops one; a line that does not parse (cut short) changes nothing.
pub(crate) fn replay(file: &File, len: u64) -> io::Result<Vec<Open>> {
    let mut all = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    file.read_exact_at(&mut all, 0)?;
    let mut open: Vec<Open> = vec![];
    let mut at = 0u64;
    for raw in all.split_inclusive(|b| *b == b'\n') {
        let start = at;
        at += raw.len() as u64;
        let Ok(line) = serde_json::from_slice::<Line>(raw) else { continue };
        match line {
            Line { open: Some(set), .. } => open = set,
            Line { begin: Some(draft), pid, log_len, .. } => open.push(Open {
                id: draft.request_id,
                pid: pid.unwrap_or(0),
                at: start,
                log_len: log_len.unwrap_or(0),
            }),
            Line { end: Some(id), .. } => open.retain(|o| o.id != id),
            _ => {}
        }
    }
    Ok(open)
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
