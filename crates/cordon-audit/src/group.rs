//! Group commit: one writer thread records for a long-running service,
//! many records per `fdatasync`.
//!
//! [`GroupWriter`] is what a service (the gateway, a scale-out worker) uses
//! instead of [`AuditTrail`](crate::AuditTrail): every execution it accepts
//! gets exactly one record, a caller learns when *its* record (and its
//! begin) is durable, and a `SIGKILL` of the service leaves every run in
//! flight to be recorded as `LOST` by the next start.
//!
//! # How it works
//!
//! The writer owns the log: until it shuts down, an open-file-description lock
//! on the log keeps every other writer out ([`AuditError::Owned`] for a
//! `cordon run` or a second service on it), and the kernel drops that lock
//! when the service dies. A thread takes operations from a channel and
//! commits them in groups: whatever is queued when it is free (waiting up to
//! [`GroupOptions::linger`] for more, at most [`GroupOptions::max_batch`]).
//! One commit
//!
//! 1. appends the begin lines of the group's new runs to the run journal
//!    (one `write(2)`), and the end lines of the runs whose records the
//!    previous commit made durable;
//! 2. appends the group's records to the log, chained, with one `write(2)`;
//! 3. `fdatasync`s the journal (when the group began runs) and the log
//!    (when it has records): one sync per file per group, however large;
//! 4. stores the latest checkpoint (one `pwrite`, covering every record);
//! 5. answers every caller of the group.
//!
//! So a begin is answered once it is on disk (a run accepted survives a
//! machine crash as `LOST` at worst), and a record once it is on disk. The
//! delay a caller sees is bounded by `linger`, the commit in progress when
//! it asked, and its own commit.
//!
//! # Guarantees
//!
//! - Exactly one record per begun run: its own, or `LOST` when the service
//!   died before it (recorded by the next [`GroupWriter::open`], which reads
//!   the journal and looks for the record in the log after the size the log
//!   had at the begin), or, at [`GroupWriter::shutdown`], `LOST` for runs
//!   the service never completed.
//! - A record another process appended (a `cordon run` on this log while no
//!   service held it) is never duplicated; runs such a process still has in
//!   flight keep the service from starting ([`AuditError::Busy`]).
//! - Checkpoints: every [`CHECKPOINT_EVERY`](crate::CHECKPOINT_EVERY) records
//!   and every [`GroupOptions::checkpoint_interval`] a record carries one;
//!   every commit stores the latest; shutdown syncs it.
//!
//! Dropping a [`GroupRun`] without completing it leaves its run open until
//! shutdown (then `LOST`). Dropping the writer shuts it down.
//!
//! # Async
//!
//! A plain thread and a channel, no runtime: [`Commit`] is a future (a
//! `tokio::sync::oneshot` underneath) that tokio code awaits, and
//! [`Commit::wait`] blocks for code that is not async (never call it on an
//! async runtime's thread).
//!
//! ```no_run
//! use cordon_audit::{Ending, ErrorCode, GroupOptions, GroupWriter, KeyFolder, Outcome, Subject};
//! use cordon_core::policy::Mode;
//!
//! # async fn serve() -> Result<(), cordon_audit::AuditError> {
//! let writer = GroupWriter::open("/var/lib/cordon/audit.jsonl".as_ref(), &KeyFolder::State, GroupOptions::default())?;
//! eprintln!("recorded {} runs of the last start as LOST", writer.recovered());
//!
//! // Per request: accepted once the begin is durable...
//! let subject = Subject { tenant: Some("acme".into()), principal: Some("ci".into()), ..Subject::default() };
//! let run = writer.begin(&subject, "01JREQUEST", Some(Mode::Container)).await?;
//! // ... run the execution, then answer only once its record is durable.
//! let ending = Ending {
//!     mode: Mode::Container,
//!     outcome: Outcome::Ok,
//!     error: None,
//!     duration_ms: 3.1,
//!     cpu_ms: Some(1.2),
//!     peak_rss_kb: Some(1840),
//!     network: None,
//!     policy_digest: String::new(),
//! };
//! let record = run.complete(ending, &[]).await?;
//! assert_eq!(record.outcome, "ok");
//!
//! // SIGTERM: drain, then
//! let stats = writer.shutdown()?;
//! eprintln!("{} records in {} log syncs", stats.records, stats.log_syncs);
//! # let _ = ErrorCode::Cancelled;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cordon_core::policy::Mode;
use cordon_core::state::Protected;
use tokio::sync::oneshot;

use crate::journal::{self, lost, seal, Journal, Line, Rejected};
use crate::log::{AuditLog, InLogCheckpoint, KeyFolder};
use crate::record::{AuditRecord, Ending, Subject};
use crate::trail::AuditError;

/// How a [`GroupWriter`] groups and checkpoints. Defaults in each field.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// How long a commit waits for more operations once it has one.
    /// Default 0: it starts at once, and what arrives meanwhile goes into
    /// the next commit, so groups grow with load and idle requests do not
    /// wait.
    pub linger: Duration,
    /// Most operations in one commit. Default 1024.
    pub max_batch: usize,
    /// A record carries a checkpoint when this long has passed since the
    /// last one did (besides every 100 records). Default 60 s.
    pub checkpoint_interval: Duration,
    /// The run journal is rewritten with only the open runs when it grows
    /// past this many bytes while runs are open (it is emptied whenever
    /// none is). Default 4 MiB.
    pub compact_at: u64,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            linger: Duration::ZERO,
            max_batch: 1024,
            checkpoint_interval: Duration::from_secs(60),
            compact_at: 4 << 20,
        }
    }
}

/// What a writer has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Runs begun.
    pub begins: u64,
    /// Records appended (`LOST` records of runs left open at shutdown
    /// included).
    pub records: u64,
    /// Commits with at least one operation.
    pub commits: u64,
    /// `fdatasync`s of the log.
    pub log_syncs: u64,
    /// `fdatasync`s of the run journal.
    pub journal_syncs: u64,
}

#[derive(Default)]
struct Counters {
    begins: AtomicU64,
    records: AtomicU64,
    commits: AtomicU64,
    log_syncs: AtomicU64,
    journal_syncs: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> GroupStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GroupStats {
            begins: g(&self.begins),
            records: g(&self.records),
            commits: g(&self.commits),
            log_syncs: g(&self.log_syncs),
            journal_syncs: g(&self.journal_syncs),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, AuditError>>;

enum Op {
    Begin { draft: AuditRecord, n: u64, reply: Reply<()> },
    Record { record: AuditRecord, begun: Begun, reply: Reply<AuditRecord> },
    Shutdown { reply: Reply<GroupStats> },
}

/// Whether a record ends a run the writer began.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Begun {
    /// It did, as run number `n` of this writer: the run's journal entry
    /// ends with it. The number, not the request id, names the run: two
    /// tenants' runs may share an id.
    Yes(u64),
    /// It did not (a request refused before it began).
    No,
}

/// A group-committing audit writer for a long-running service; see the
/// module docs.
pub struct GroupWriter {
    /// `None` once shut down.
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    log: AuditLog,
    recovered: usize,
    rejected: usize,
    counters: Arc<Counters>,
    /// The next run's number ([`journal::Line::n`]).
    next_n: AtomicU64,
}

impl std::fmt::Debug for GroupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWriter").field("path", &self.path).field("recovered", &self.recovered).finish()
    }
}

/// An operation's answer, once its commit is durable: a future, or
/// [`Commit::wait`].
#[must_use = "a commit's answer says whether it is durable"]
pub struct Commit<T> {
    rx: oneshot::Receiver<Result<T, AuditError>>,
    path: PathBuf,
}

impl<T> Commit<T> {
    /// Blocks until the answer. Not on an async runtime's thread (await it
    /// there).
    pub fn wait(self) -> Result<T, AuditError> {
        let path = self.path;
        self.rx.blocking_recv().unwrap_or_else(|_| Err(AuditError::WriterGone { path }))
    }
}

impl<T> Future for Commit<T> {
    type Output = Result<T, AuditError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let path = self.path.clone();
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or_else(|_| Err(AuditError::WriterGone { path })))
    }
}

/// A run between [`GroupWriter::begin`] and its record.
#[derive(Debug)]
#[must_use = "a begun run is recorded as LOST at shutdown unless completed"]
pub struct GroupRun {
    tx: mpsc::Sender<Op>,
    draft: AuditRecord,
    /// Its number in this writer.
    n: u64,
    path: PathBuf,
}

impl GroupRun {
    /// Records how the run ended (its draft finished with `ending`, with
    /// `secrets` redacted); the answer comes once the record is durable.
    pub fn complete(self, ending: Ending, secrets: &[String]) -> Commit<AuditRecord> {
        let record = self.draft.finish(ending, secrets);
        let n = self.n;
        send(&self.tx, &self.path, |reply| Op::Record { record, begun: Begun::Yes(n), reply })
    }

    /// The run's request id.
    pub fn request_id(&self) -> &str {
        &self.draft.request_id
    }

    /// Who and what the record names. What becomes known after the begin
    /// (the worker, the command) goes here; a run recorded as `LOST` names
    /// only what its begin knew.
    pub fn subject_mut(&mut self) -> &mut Subject {
        &mut self.draft.subject
    }
}

fn send<T>(tx: &mpsc::Sender<Op>, path: &Path, op: impl FnOnce(Reply<T>) -> Op) -> Commit<T> {
    let (reply, rx) = oneshot::channel();
    // A writer that is gone drops the reply; the commit says so.
    let _ = tx.send(op(reply));
    Commit { rx, path: path.to_owned() }
}

impl GroupWriter {
    /// Opens (creating it) the log at `path` with the audit key in `keys`,
    /// takes it for this writer alone, records every run an earlier writer
    /// left unfinished as `LOST`, and starts the writer thread.
    pub fn open(path: &Path, keys: &KeyFolder, options: GroupOptions) -> Result<GroupWriter, AuditError> {
        let open_err = |source| AuditError::Open { path: path.to_owned(), source };
        let log = AuditLog::open_with(path, keys).map_err(open_err)?;
        match log.take_ownership() {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::PermissionDenied) => {
                return Err(AuditError::Owned { path: path.to_owned() })
            }
            Err(e) => return Err(open_err(e)),
        }
        let journal = Journal::open(path).map_err(open_err)?;
        let (recovered, rejected) = recover(&log, &journal, path)?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel();
        let mut state = State {
            log: log.clone(),
            journal_path: journal::path_of(path),
            journal: journal.into_file(),
            options,
            open: HashMap::new(),
            ended: vec![],
            last_checkpoint: Instant::now(),
            counters: counters.clone(),
            path: path.to_owned(),
        };
        let thread =
            std::thread::Builder::new().name("cordon-audit".into()).spawn(move || state.serve(rx)).map_err(open_err)?;
        Ok(GroupWriter {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            path: path.to_owned(),
            log,
            recovered,
            rejected,
            counters,
            next_n: AtomicU64::new(0),
        })
    }

    /// How many lines of the run journal [`GroupWriter::open`] found
    /// without a valid MAC (forged, or damaged): recorded as one
    /// `JOURNAL_FORGED` record, not as the runs they name.
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// How many runs of an earlier writer [`GroupWriter::open`] recorded as
    /// `LOST`.
    pub fn recovered(&self) -> usize {
        self.recovered
    }

    /// The log's files, which no sandbox may reach.
    pub fn protected(&self) -> Vec<Protected> {
        self.log.protected()
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> GroupStats {
        self.counters.snapshot()
    }

    /// Begins run `request_id`: the answer comes once its begin is durable
    /// (the run may start then; an error means it must not).
    pub fn begin(&self, subject: &Subject, request_id: &str, mode: Option<Mode>) -> BeginCommit {
        let draft = AuditRecord::draft(subject, request_id, mode);
        let tx = self.sender();
        let n = self.next_n.fetch_add(1, Ordering::Relaxed);
        let inner = send(&tx, &self.path, |reply| Op::Begin { draft: draft.clone(), n, reply });
        BeginCommit { inner, run: Some(GroupRun { tx, draft, n, path: self.path.clone() }), path: self.path.clone() }
    }

    /// Records a request that never began a run (refused before it
    /// started): `mode` is the mode asked for, if known.
    pub fn record_unstarted(
        &self,
        subject: &Subject,
        request_id: &str,
        mode: Option<Mode>,
        ending: Ending,
        secrets: &[String],
    ) -> Commit<AuditRecord> {
        let record = AuditRecord::unstarted(subject, request_id, mode, ending, secrets);
        send(&self.sender(), &self.path, |reply| Op::Record { record, begun: Begun::No, reply })
    }

    /// Commits what is queued, records runs begun and never completed as
    /// `LOST`, syncs the latest checkpoint, empties the run journal, stops
    /// the writer and gives the log back: another writer (a restarted
    /// service, a `cordon run`) may take it at once, though this value
    /// lives on. The shutdown hook of a service, through a shared
    /// reference (request handlers hold the writer too): what is asked of
    /// it afterwards fails with [`AuditError::WriterGone`]. Blocks (not on
    /// an async runtime's thread); a second call says `WriterGone`.
    pub fn shutdown(&self) -> Result<GroupStats, AuditError> {
        let tx = self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let Some(tx) = tx else { return Err(AuditError::WriterGone { path: self.path.clone() }) };
        let commit = send(&tx, &self.path, |reply| Op::Shutdown { reply });
        drop(tx);
        let answer = commit.wait();
        if let Some(t) = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = t.join();
        }
        // The thread is gone, so nothing of this writer writes any more.
        // Unlocking a byte this open file description holds fails only for
        // a bad descriptor, whose locks the kernel has dropped already.
        let _ = self.log.release_ownership();
        answer
    }

    fn sender(&self) -> mpsc::Sender<Op> {
        match &*self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(tx) => tx.clone(),
            // Shut down: a channel nobody reads, so the answer is WriterGone.
            None => mpsc::channel().0,
        }
    }
}

impl Drop for GroupWriter {
    /// Shuts the writer down. On an async runtime's thread, where it must
    /// not block, it only asks: the writer thread finishes on its own (and
    /// if the process exits first, the next open records what was left
    /// open as `LOST`).
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            if let Some(tx) = self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                let (reply, _) = oneshot::channel();
                let _ = tx.send(Op::Shutdown { reply });
            }
            return;
        }
        let _ = self.shutdown();
    }
}

/// [`GroupWriter::begin`]'s answer: the run, once its begin is durable.
#[must_use = "a begin's answer says whether the run may start"]
pub struct BeginCommit {
    inner: Commit<()>,
    run: Option<GroupRun>,
    path: PathBuf,
}

impl BeginCommit {
    /// Blocks until the begin is durable (see [`Commit::wait`]).
    pub fn wait(self) -> Result<GroupRun, AuditError> {
        let BeginCommit { inner, run, path } = self;
        inner.wait()?;
        run.ok_or(AuditError::WriterGone { path })
    }

    /// The run at once, and the answer to its begin apart: for a host that
    /// sets the run up while its begin is committed. Until that answer is
    /// `Ok` the run's command must not start (a crash before would leave a
    /// run that ran with no trace); after an error it must neither start
    /// nor be completed (drop it: the writer no longer holds it open).
    pub fn split(self) -> (GroupRun, Commit<()>) {
        let BeginCommit { inner, run, .. } = self;
        (run.expect("an unpolled begin holds its run"), inner)
    }
}

impl Future for BeginCommit {
    type Output = Result<GroupRun, AuditError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let path = self.path.clone();
                Poll::Ready(self.run.take().ok_or(AuditError::WriterGone { path }))
            }
        }
    }
}

/// Records the runs an earlier writer left open as `LOST` (and lines
/// without a valid MAC as one `JOURNAL_FORGED` record), then empties the
/// journal. Runs whose owner still lives (another process's `cordon run`)
/// make the service refuse to start. Returns how many runs it recorded and
/// how many lines it rejected.
fn recover(log: &AuditLog, journal: &Journal, path: &Path) -> Result<(usize, usize), AuditError> {
    let recover_err = |source| AuditError::Recover { path: path.to_owned(), source };
    if journal.is_empty().map_err(recover_err)? {
        return Ok((0, 0));
    }
    let key = log.journal_key().map_err(recover_err)?;
    let locked = journal.lock().map_err(recover_err)?;
    let open = locked.open_runs(key, &mut Rejected::default()).map_err(recover_err)?;
    let mut rejected = Rejected::default();
    let dead = locked.take_dead(key, &mut rejected).map_err(recover_err)?;
    if let Some(alive) = open.iter().find(|o| !dead.iter().any(|d| d.at == o.at)) {
        return Err(AuditError::Busy { path: path.to_owned(), pid: alive.pid });
    }
    let held = log.lock().map_err(recover_err)?;
    if !rejected.is_empty() {
        held.append(&mut rejected.record(&journal::path_of(path))).map_err(recover_err)?;
    }
    let mut appended = 0;
    for d in &dead {
        if !held.has_record(&d.draft, d.log_len).map_err(recover_err)? {
            held.append(&mut lost(d.draft.clone(), d.pid)).map_err(recover_err)?;
            appended += 1;
        }
    }
    drop(held);
    locked.truncate().map_err(recover_err)?;
    Ok((appended, rejected.lines))
}

/// An open run, as the writer thread knows it.
struct OpenRun {
    draft: AuditRecord,
    log_len: u64,
}

/// The writer thread's state.
struct State {
    log: AuditLog,
    journal_path: PathBuf,
    journal: File,
    options: GroupOptions,
    /// By run number.
    open: HashMap<u64, OpenRun>,
    /// Runs (request id, number) whose records the last commit made
    /// durable: their journal entries end with the next commit.
    ended: Vec<(String, u64)>,
    last_checkpoint: Instant,
    counters: Arc<Counters>,
    path: PathBuf,
}

impl State {
    fn serve(&mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut ops = vec![first];
            let deadline = Instant::now() + self.options.linger;
            while ops.len() < self.options.max_batch {
                let next = match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => rx.recv_timeout(left).ok(),
                    _ => rx.try_recv().ok(),
                };
                match next {
                    Some(op) => ops.push(op),
                    None => break,
                }
            }
            let shutdown = self.commit(ops);
            if let Some(reply) = shutdown {
                let _ = reply.send(self.shut_down());
                return;
            }
        }
        // Every sender is gone without a shutdown: finish the same way.
        let _ = self.shut_down();
    }

    /// Commits `ops` (see the module docs); returns a shutdown's reply.
    fn commit(&mut self, ops: Vec<Op>) -> Option<Reply<GroupStats>> {
        let mut begins: Vec<(AuditRecord, u64, Reply<()>)> = vec![];
        let mut records: Vec<(AuditRecord, Begun, Reply<AuditRecord>)> = vec![];
        let mut shutdown = None;
        for op in ops {
            match op {
                Op::Begin { draft, n, reply } => begins.push((draft, n, reply)),
                Op::Record { record, begun, reply } => records.push((record, begun, reply)),
                Op::Shutdown { reply } => shutdown = Some(reply),
            }
        }
        if begins.is_empty() && records.is_empty() {
            return shutdown;
        }
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        // 1. The journal: ends of the last commit's runs, begins of this one's.
        let journal_result = self.journal_lines(&begins).and_then(|wrote_begins| {
            if wrote_begins {
                self.journal.sync_data()?;
                self.counters.journal_syncs.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        match journal_result {
            Ok(()) => {
                for (_, _, reply) in begins {
                    self.counters.begins.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                for (draft, n, reply) in begins {
                    self.open.remove(&n);
                    let _ = reply.send(Err(AuditError::Begin {
                        path: self.path.clone(),
                        request_id: draft.request_id.clone(),
                        source: copy_error(&e),
                    }));
                }
            }
        }
        // 2-4. The records, in one write and one sync.
        self.append(records);
        self.maybe_compact();
        shutdown
    }

    /// Writes end lines for `self.ended` and begin lines for `begins`;
    /// returns whether it wrote begins (which then need a sync).
    fn journal_lines(&mut self, begins: &[(AuditRecord, u64, Reply<()>)]) -> io::Result<bool> {
        let mut buf = vec![];
        let key = self.log.journal_key()?;
        for (id, n) in self.ended.drain(..) {
            let start = buf.len();
            let line = Line { begin: None, end: Some(id), pid: None, log_len: None, open: None, n: Some(n) };
            serde_json::to_writer(&mut buf, &line).map_err(io::Error::other)?;
            seal(key, &mut buf, start);
            buf.push(b'\n');
        }
        if !begins.is_empty() {
            let log_len = self.log.len()?;
            for (draft, n, _) in begins {
                let line = Line {
                    begin: Some(draft.clone()),
                    end: None,
                    pid: Some(std::process::id()),
                    log_len: Some(log_len),
                    open: None,
                    n: Some(*n),
                };
                let start = buf.len();
                serde_json::to_writer(&mut buf, &line).map_err(io::Error::other)?;
                seal(key, &mut buf, start);
                buf.push(b'\n');
                self.open.insert(*n, OpenRun { draft: draft.clone(), log_len });
            }
        }
        if !buf.is_empty() {
            (&self.journal).write_all(&buf)?;
        }
        Ok(!begins.is_empty())
    }

    fn append(&mut self, records: Vec<(AuditRecord, Begun, Reply<AuditRecord>)>) {
        if records.is_empty() {
            return;
        }
        let (mut recs, rest): (Vec<AuditRecord>, Vec<(Begun, Reply<AuditRecord>)>) =
            records.into_iter().map(|(r, b, reply)| (r, (b, reply))).unzip();
        let due = if self.last_checkpoint.elapsed() >= self.options.checkpoint_interval {
            InLogCheckpoint::Now
        } else {
            InLogCheckpoint::OnCadence
        };
        let result = self.log.lock().and_then(|held| held.append_all(&mut recs, due));
        match result {
            Ok(appended) => {
                self.counters.log_syncs.fetch_add(1, Ordering::Relaxed);
                self.counters.records.fetch_add(recs.len() as u64, Ordering::Relaxed);
                if recs.iter().any(|r| r.checkpoint.is_some()) {
                    self.last_checkpoint = Instant::now();
                }
                for ((mut record, (begun, reply)), a) in recs.into_iter().zip(rest).zip(appended) {
                    record.seq = Some(a.seq);
                    if let Begun::Yes(n) = begun {
                        if self.open.remove(&n).is_some() {
                            self.ended.push((record.request_id.clone(), n));
                        }
                    }
                    let _ = reply.send(Ok(record));
                }
            }
            Err(e) => {
                for (record, (_, reply)) in recs.into_iter().zip(rest) {
                    let _ = reply.send(Err(AuditError::Append {
                        path: self.path.clone(),
                        request_id: record.request_id.clone(),
                        source: copy_error(&e),
                    }));
                }
            }
        }
    }

    /// With no run open, empties the journal; past `compact_at`, rewrites
    /// it with the open runs only (written aside, synced, renamed over).
    fn maybe_compact(&mut self) {
        if self.open.is_empty() {
            if self.journal.set_len(0).is_ok() {
                self.ended.clear();
            }
            return;
        }
        let big = self.journal.metadata().is_ok_and(|m| m.len() > self.options.compact_at);
        if big {
            let _ = self.compact();
        }
    }

    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.journal_path.with_extension("inflight.compact");
        let mut buf = vec![];
        let key = self.log.journal_key()?;
        for (n, run) in &self.open {
            let line = Line {
                begin: Some(run.draft.clone()),
                end: None,
                pid: Some(std::process::id()),
                log_len: Some(run.log_len),
                open: None,
                n: Some(*n),
            };
            let start = buf.len();
            serde_json::to_writer(&mut buf, &line).map_err(io::Error::other)?;
            seal(key, &mut buf, start);
            buf.push(b'\n');
        }
        // Made anew (O_EXCL follows no link): whatever is at that name, a
        // link a run put there included, goes first (review s14 R14-3).
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = OpenOptions::new().read(true).append(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(&buf)?;
        f.sync_data()?;
        fs::rename(&tmp, &self.journal_path)?;
        if let Some(dir) = self.journal_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        self.journal = f;
        self.ended.clear();
        Ok(())
    }

    /// Records runs still open as `LOST`, syncs the latest checkpoint,
    /// empties the journal.
    fn shut_down(&mut self) -> Result<GroupStats, AuditError> {
        let mut left: Vec<AuditRecord> = self
            .open
            .drain()
            .map(|(_, run)| {
                let mut r = lost(run.draft, std::process::id());
                r.error = Some("the service shut down before recording the outcome; the result is unknown".into());
                r
            })
            .collect();
        left.sort_by(|a, b| a.time.cmp(&b.time));
        let err = |source| AuditError::Append { path: self.path.clone(), request_id: String::new(), source };
        if !left.is_empty() {
            let held = self.log.lock().map_err(err)?;
            held.append_all(&mut left, InLogCheckpoint::Now).map_err(err)?;
            self.counters.records.fetch_add(left.len() as u64, Ordering::Relaxed);
            self.counters.log_syncs.fetch_add(1, Ordering::Relaxed);
        }
        self.log.sync_anchor().map_err(err)?;
        self.journal.set_len(0).map_err(err)?;
        self.ended.clear();
        Ok(self.counters.snapshot())
    }
}

/// An I/O error for one of several callers.
fn copy_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}
