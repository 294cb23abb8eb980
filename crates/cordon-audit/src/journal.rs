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
//! Every line carries a MAC (`"mac"`, HMAC-SHA-256 with a key derived from
//! the audit key, bound to the log: [`LineKey`]). The journal lies beside
//! the log, where a run that may write the log's folder but records to
//! another log can write it too; the audit key lies in cordon's state
//! folder, which no run reaches. So a line without a valid MAC (forged, or
//! damaged) is never taken for what it says: it opens no run, ends none,
//! and its draft is never recorded; recovery records one
//! `JOURNAL_FORGED` record saying how many such lines it found
//! ([`Rejected`]). A log without a key ([`crate::KeyFolder::Unsigned`])
//! has unauthenticated lines, as it has an unsigned chain.
//!
//! Whether a run's owner lives is a lock, not a pid: the owner holds an
//! open-file-description lock on the first byte of the run's begin line
//! until the run ends, and the kernel drops it when the owner dies, however
//! it dies. So a reused pid or a reboot cannot pass for the owner, and no
//! `/proc` file is read. A run whose lock is gone ([`Locked::take_dead`])
//! and that has no record in the log after the size the log had at its
//! begin is recorded as `LOST`.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cordon_core::sys::{self, ByteLock};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::log::{read_line_at, Tail};
use crate::record::{hex, now_rfc3339, unhex_32, AuditRecord, ErrorCode};

/// The key that authenticates the journal lines of one log: HMAC-SHA-256
/// keyed by [`crate::checkpoint::AuditKey::journal_key`], over the log's
/// identity (the name of its latest-checkpoint file, a hash of its resolved
/// path) and then the line. Bound to the log, so a line copied from another
/// log's journal does not pass either. Made once with the audit key (on
/// the thread that loads it); each line costs one MAC of its bytes.
#[derive(Clone)]
pub(crate) struct LineKey {
    /// The MAC's state once the key and the log's identity are in.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for LineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineKey(..)")
    }
}

/// What follows a sealed line's JSON body (without its closing brace):
/// `,"mac":"` 64 hex digits `"}`.
const MAC_FIELD: &[u8] = b",\"mac\":\"";
const SEALED_TAIL: usize = MAC_FIELD.len() + 64 + 2;

impl LineKey {
    /// The key of the log named `log_id`, from `key` (the audit key's
    /// journal key).
    pub(crate) fn new(key: &Zeroizing<[u8; 32]>, log_id: &[u8]) -> LineKey {
        let mut keyed = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).expect("HMAC takes a key of any length");
        keyed.update(&(log_id.len() as u64).to_be_bytes());
        keyed.update(log_id);
        LineKey { keyed }
    }

    fn tag(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(body);
        mac
    }
}

/// Adds the MAC of the JSON object `buf[start..]` (which ends in `}`) as its
/// last field, `"mac"`. Nothing without a key.
pub(crate) fn seal(key: Option<&LineKey>, buf: &mut Vec<u8>, start: usize) {
    let Some(key) = key else { return };
    let tag = key.tag(&buf[start..]).finalize().into_bytes();
    debug_assert_eq!(buf.last(), Some(&b'}'));
    buf.pop();
    buf.extend_from_slice(MAC_FIELD);
    buf.extend_from_slice(hex(&tag).as_bytes());
    buf.extend_from_slice(b"\"}");
}

/// The JSON body of `line` (without its `"mac"`) when its MAC is valid;
/// `line` itself without a key; `None` when it has no valid MAC.
fn authentic<'a>(key: Option<&LineKey>, line: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    let Some(key) = key else { return Some(Cow::Borrowed(line)) };
    let split = line.len().checked_sub(SEALED_TAIL)?;
    let (head, tail) = line.split_at(split);
    let tag = unhex_32(tail.strip_prefix(MAC_FIELD)?.strip_suffix(b"\"}")?)?;
    let mut body = Vec::with_capacity(head.len() + 1);
    body.extend_from_slice(head);
    body.push(b'}');
    // Compared in constant time.
    key.tag(&body).verify_slice(&tag).ok()?;
    Some(Cow::Owned(body))
}

/// Lines of a journal that parse as journal lines but have no valid MAC:
/// forged by someone who could write the log's folder, or damaged. They
/// change nothing; recovery records them as one `JOURNAL_FORGED` record
/// ([`Rejected::record`]).
#[derive(Debug, Default)]
pub(crate) struct Rejected {
    /// How many.
    pub(crate) lines: usize,
    /// Where the first one starts.
    pub(crate) first_at: Option<u64>,
    /// The request ids the first few claim (as written; for the record).
    claimed: Vec<String>,
    /// SHA-256 over the rejected lines, in order.
    digest: Sha256,
}

impl Rejected {
    fn add(&mut self, at: u64, raw: &[u8], line: &Line) {
        self.lines += 1;
        self.first_at.get_or_insert(at);
        let id = line.begin.as_ref().map(|b| b.request_id.as_str()).or(line.end.as_deref());
        if let Some(id) = id.filter(|_| self.claimed.len() < 3) {
            self.claimed.push(id.chars().take(64).collect());
        }
        self.digest.update(raw);
    }

    /// Whether there is none.
    pub(crate) fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The record saying that `journal` had these lines: outcome
    /// `JOURNAL_FORGED`, not a run (no tenant, plugin or command: nothing
    /// the lines claim is taken for true), with a request id made of the
    /// lines' hash.
    pub(crate) fn record(&self, journal: &Path) -> AuditRecord {
        let digest = hex(&self.digest.clone().finalize());
        let claimed = if self.claimed.is_empty() {
            String::new()
        } else {
            format!(
                " (claiming request ids {})",
                self.claimed.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ")
            )
        };
        AuditRecord {
            time: now_rfc3339(),
            request_id: format!("journal-{}", &digest[..26]),
            outcome: ErrorCode::JournalForged.as_str().to_owned(),
            error: Some(format!(
                "{} line(s) of the run journal {} from byte {} had no valid MAC{claimed}: forged by someone who could write the log's folder, or damaged; recorded only as this, not as the runs they name (sha256 of the lines {digest})",
                self.lines,
                journal.display(),
                self.first_at.unwrap_or(0),
            )),
            ..AuditRecord::default()
        }
    }
}

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
    /// A group writer's run: its number ([`Line::n`]), which its end line
    /// names. Request ids are not unique (two tenants' runs may share one),
    /// so an end names the begin it ends by this or by `at`, never by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) n: Option<u64>,
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
    /// A group writer's `begin` or `end`: the run's number, unique in the
    /// journal, so an end drops its own begin and not another run's with
    /// the same request id. An `end` without it (a journal written before
    /// it existed) drops every run with its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) n: Option<u64>,
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
    /// Its begin line's offset (which run of the open set it is).
    pub(crate) at: u64,
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

    /// The runs open now: the open set of the last complete line with a
    /// valid MAC (a line cut short by a killed writer is skipped: its
    /// change never happened; a line without a valid MAC is counted in
    /// `rejected` and changes nothing).
    pub(crate) fn open_runs(&self, key: Option<&LineKey>, rejected: &mut Rejected) -> io::Result<Vec<Open>> {
        self.open_runs_in(&Tail::read(self.file())?, key, rejected)
    }

    /// [`Locked::open_runs`] of the journal whose end is `tail` (read under
    /// this lock, so it is still the end).
    fn open_runs_in(&self, tail: &Tail, key: Option<&LineKey>, rejected: &mut Rejected) -> io::Result<Vec<Open>> {
        if tail.len == 0 {
            return Ok(vec![]);
        }
        if !tail.torn {
            if let Some(body) = authentic(key, &tail.last) {
                if let Ok(Line { open: Some(open), .. }) = serde_json::from_slice::<Line>(&body) {
                    return Ok(open);
                }
            }
        }
        // A group writer's journal, a last line cut short (its writer was
        // killed before its change happened), or one without a valid MAC:
        // replay it all.
        replay(self.file(), tail.len, key, rejected)
    }

    /// Writes the begin line of `draft` with `log_len`, the log's size
    /// now, and locks its first byte for as long as this process runs it.
    /// Returns the line's offset, which [`Locked::end`] takes.
    pub(crate) fn begin(&self, draft: &AuditRecord, log_len: u64, key: Option<&LineKey>) -> io::Result<Begun> {
        // One look at the end serves the open set, the line's offset and
        // its write.
        let tail = Tail::read(self.file())?;
        // Lines without a valid MAC are left to the next recovery to report.
        let mut open = self.open_runs_in(&tail, key, &mut Rejected::default())?;
        let alone = open.is_empty();
        // After the newline that a torn last line gets.
        let at = tail.len + u64::from(tail.torn);
        open.push(Open { id: draft.request_id.clone(), pid: std::process::id(), at, log_len, n: None });
        let line = Line { begin: Some(draft.clone()), end: None, pid: None, log_len: None, open: Some(open), n: None };
        let written = self.write_after(&tail, &line, key)?;
        // Under the journal's flock, so no recovery looks before it holds.
        sys::ofd_lock_byte(self.file().as_fd(), at, ByteLock::Hold)?;
        Ok(Begun { at, alone_until: alone.then_some(tail.len + written) })
    }

    /// Ends run `id`, begun at `begun.at`: it has its record. The open
    /// set loses the run begun there, not every run named `id` (request
    /// ids are not unique). The last open run's
    /// end empties the journal.
    pub(crate) fn end(&self, id: &str, begun: &Begun, key: Option<&LineKey>) -> io::Result<()> {
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
            let mut open = self.open_runs_in(&tail, key, &mut Rejected::default())?;
            open.retain(|o| o.at != begun.at);
            self.end_all(&tail, open, id, key)?;
        }
        sys::ofd_lock_byte(self.file().as_fd(), begun.at, ByteLock::Release)
    }

    /// Writes the end of run `id` with `open`, the runs left, after `tail`;
    /// or empties the journal when none is left.
    fn end_all(&self, tail: &Tail, open: Vec<Open>, id: &str, key: Option<&LineKey>) -> io::Result<()> {
        if open.is_empty() {
            return self.file().set_len(0);
        }
        let line = Line { begin: None, end: Some(id.to_owned()), pid: None, log_len: None, open: Some(open), n: None };
        self.write_after(tail, &line, key).map(drop)
    }

    /// The open runs whose owner is gone, with their drafts; the caller
    /// records each, then calls [`Locked::forget`]. Lines without a valid
    /// MAC go to `rejected`.
    pub(crate) fn take_dead(&self, key: Option<&LineKey>, rejected: &mut Rejected) -> io::Result<Vec<Dead>> {
        let mut dead = vec![];
        for o in self.open_runs(key, rejected)? {
            if sys::ofd_byte_locked(self.file().as_fd(), o.at)? {
                continue;
            }
            let line = read_line_at(self.file(), o.at)?;
            let begin = match authentic(key, &line) {
                Some(body) => serde_json::from_slice::<Line>(&body).ok().and_then(|l| l.begin),
                None => {
                    // A valid open set names this line, which is not valid
                    // now: damaged or overwritten since.
                    if let Ok(l) = serde_json::from_slice::<Line>(&line) {
                        rejected.add(o.at, &line, &l);
                    }
                    None
                }
            };
            let draft = match begin {
                Some(d) if d.request_id == o.id => d,
                // The begin line is not where the set says: keep what the
                // set knows (the request id).
                _ => AuditRecord { request_id: o.id.clone(), ..AuditRecord::default() },
            };
            dead.push(Dead { draft, at: o.at, pid: o.pid, log_len: o.log_len });
        }
        Ok(dead)
    }

    /// Empties the journal: no run is open.
    pub(crate) fn truncate(&self) -> io::Result<()> {
        self.file().set_len(0)
    }

    /// Drops the runs `dead` (as [`Locked::take_dead`] found them: they
    /// were recorded) from the open set, by where they begun. The line it
    /// writes is the journal's last, with a valid MAC: lines rejected
    /// before it are not read again.
    pub(crate) fn forget(&self, dead: &[Dead], key: Option<&LineKey>) -> io::Result<()> {
        let tail = Tail::read(self.file())?;
        let mut open = self.open_runs_in(&tail, key, &mut Rejected::default())?;
        open.retain(|o| !dead.iter().any(|d| d.at == o.at));
        self.end_all(&tail, open, dead.first().map_or("", |d| d.draft.request_id.as_str()), key)
    }

    /// Appends `line`, sealed with `key` (after the newline a torn last
    /// line gets); returns how many bytes it wrote.
    fn write_after(&self, tail: &Tail, line: &Line, key: Option<&LineKey>) -> io::Result<u64> {
        let mut buf = Vec::with_capacity(512);
        if tail.torn {
            buf.push(b'\n');
        }
        let start = buf.len();
        serde_json::to_writer(&mut buf, line).map_err(io::Error::other)?;
        seal(key, &mut buf, start);
        buf.push(b'\n');
        (&self.journal.file).write_all(&buf)?;
        Ok(buf.len() as u64)
    }
}

/// The open runs that replaying the first `len` bytes of `file` leaves: an
/// `open` set replaces what came before it, a `begin` adds a run, an `end`
/// drops the run whose number it names (one without a number, from an
/// older journal, every run with its id); a line that does not parse (cut
/// short) changes nothing, nor does one without a valid MAC (counted in
/// `rejected`).
pub(crate) fn replay(file: &File, len: u64, key: Option<&LineKey>, rejected: &mut Rejected) -> io::Result<Vec<Open>> {
    let mut all = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    file.read_exact_at(&mut all, 0)?;
    let mut open: Vec<Open> = vec![];
    let mut at = 0u64;
    for raw in all.split_inclusive(|b| *b == b'\n') {
        let start = at;
        at += raw.len() as u64;
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let Some(body) = authentic(key, raw) else {
            if let Ok(line) = serde_json::from_slice::<Line>(raw) {
                rejected.add(start, raw, &line);
            }
            continue;
        };
        let Ok(line) = serde_json::from_slice::<Line>(&body) else { continue };
        match line {
            Line { open: Some(set), .. } => open = set,
            Line { begin: Some(draft), pid, log_len, n, .. } => open.push(Open {
                id: draft.request_id,
                pid: pid.unwrap_or(0),
                at: start,
                log_len: log_len.unwrap_or(0),
                n,
            }),
            Line { end: Some(_), n: Some(n), .. } => open.retain(|o| o.n != Some(n)),
            Line { end: Some(id), n: None, .. } => open.retain(|o| o.id != id),
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
