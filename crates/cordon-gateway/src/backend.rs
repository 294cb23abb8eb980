//! The execution seam: where accepted executions are queued, run, cancelled
//! and looked up.
//!
//! [`Backend`] is what the routes call. [`LocalBackend`] (the default): a
//! bounded in-memory queue served by a fixed set of worker threads, each
//! running one execution at a time through the library
//! ([`cordon::plugin::run_handler`]), each in a fresh sandbox.
//! [`NatsBackend`] (`cordon serve --queue`): a NATS JetStream work queue
//! served by `cordon worker` processes on any number of hosts
//! ([`crate::queue`]). With `[server] pool_size`, the local workers start
//! executions in sandboxes parked ahead of demand ([`crate::pool`]).
//!
//! # Guarantees (local backend)
//!
//! - **One audit record per accepted execution**, written through the
//!   service's group-commit writer ([`cordon::audit::GroupWriter`]): an
//!   execution is accepted once its begin is durable in the run journal,
//!   so a service that is SIGKILLed while the execution is queued or
//!   running leaves it to be recorded as `LOST` by the next start. A
//!   worker may take an execution while its begin is being committed and
//!   set its sandbox up meanwhile (or take a parked one), but its command
//!   starts only once the begin is durable; an execution whose begin
//!   fails is refused, never started and never recorded, and its sandbox
//!   is killed. A
//!   result is published only once its record is durable; the worker does
//!   not wait for that (the wait is a task on the runtime), so it starts
//!   the next execution while the record shares an `fdatasync` with
//!   others. An execution cancelled while queued is recorded `CANCELLED`.
//! - **Sandboxes die with the service.** Sandboxes are cloned from the
//!   worker threads, which live until the backend is drained: the
//!   sandbox's `PR_SET_PDEATHSIG` fires when the cloning *thread* exits, so
//!   a short-lived thread (a tokio blocking-pool thread is retired after
//!   10 s idle) must never start one. When the service dies, its threads
//!   die and every sandbox is killed.
//! - **Bounded.** At most `queue` executions wait; more are refused
//!   ([`SubmitError::QueueFull`], 503). A tenant has at most its
//!   `max_concurrent` executions queued or running ([`SubmitError::TenantBusy`], 429).
//!   At most `results_per_tenant` finished results are kept, each for
//!   `result_ttl_s`; the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cordon::audit::{GroupRun, GroupWriter, Subject, TraceParent};
use cordon::plugin::{
    park_handler, park_planned, ArtifactStore, HandlerAftermath, HandlerRequest, HandlerResult, HandlerStart,
};
use cordon::{Cancel, KernelSupport, Mode, OnExec, Signals, Sweep};
use serde::Serialize;
use tokio::sync::watch;

use crate::catalog::Runnable;
use crate::metrics::Metrics;
use crate::plans::Plans;
use crate::pool::{Key, Pool, Taken};
pub use crate::queue::backend::NatsBackend;

/// One accepted execution.
#[derive(Clone, Debug)]
pub struct Job {
    /// The execution id (also the run's request id): always made by the
    /// service ([`cordon::new_request_id`]), never the caller's key.
    pub id: String,
    /// The caller's `Idempotency-Key`: within its tenant, a request sent
    /// again with it is answered with the first one's execution. Recorded
    /// beside the id (the audit record's `idempotency_key`).
    pub idempotency_key: Option<String>,
    /// On whose behalf.
    pub tenant: String,
    /// Who asked.
    pub principal: String,
    /// The access token's `jti`.
    pub jti: String,
    /// The caller's `traceparent`.
    pub traceparent: Option<String>,
    /// The trace the execution belongs to: the caller's, or a new one.
    pub trace: TraceParent,
    /// The HTTP request's id.
    pub http_request_id: String,
    /// The plugin, verified.
    pub plugin: Runnable,
    /// The handler.
    pub handler: String,
    /// The input JSON.
    pub input: Vec<u8>,
}

/// Where an execution is.
#[derive(Clone, Debug)]
pub enum Status {
    /// Accepted, waiting for a worker.
    Queued,
    /// In its sandbox.
    Running,
    /// Finished: the result as sent to the caller (ExecutionResult plus `id`).
    Done(Arc<serde_json::Value>),
    /// Finished, but its stored result is refused (`--queue`: not signed by
    /// a trusted key); why, for the service log.
    Refused(String),
}

impl Status {
    /// `queued`, `running`, `done` or `refused`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done(_) => "done",
            Status::Refused(_) => "refused",
        }
    }
}

/// Why an execution was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue holds its maximum.
    #[error("the execution queue is full ({0} waiting)")]
    QueueFull(usize),
    /// The tenant has `max_concurrent` executions queued or running.
    #[error("tenant `{tenant}` has {active} executions queued or running, its max_concurrent")]
    TenantBusy {
        /// The tenant.
        tenant: String,
        /// How many.
        active: u32,
    },
    /// The service is shutting down.
    #[error("the service is shutting down")]
    Draining,
    /// The start could not be recorded, so the execution was not accepted.
    #[error("cannot record the execution's start in the audit log: {0}")]
    Audit(String),
    /// The tenant has `cap` executions on the shared queue (`--queue`).
    #[error("tenant `{tenant}` has {cap} executions on the queue, its cap")]
    TenantQueueFull {
        /// The tenant.
        tenant: String,
        /// The cap.
        cap: i64,
    },
    /// The queue did not answer in time (`--queue`); retrying with the same
    /// `Idempotency-Key` is safe.
    #[error("the execution queue is unavailable: {0}")]
    Unavailable(String),
    /// The process that clones this service's sandboxes is gone (local
    /// backend, `cordon serve` started it): nothing can run here until the
    /// service is restarted.
    #[error("the sandbox spawner of this service (pid {0}) is gone: no sandbox can be started; restart the service")]
    SpawnerGone(i32),
}

/// Whether `/readyz` may say ready.
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    /// Every worker is started and idle or running, the kernel was probed,
    /// and the service is not draining.
    pub warm: bool,
    /// Workers started.
    pub workers: usize,
    /// Workers running an execution now.
    pub busy: usize,
    /// Executions waiting.
    pub queued: usize,
    /// Why not warm, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The execution backend the routes use.
pub enum Backend {
    /// Worker threads in this process.
    Local(LocalBackend),
    /// A NATS JetStream work queue and `cordon worker`s.
    Nats(Arc<NatsBackend>),
}

impl Backend {
    /// Accepts `job` (once its begin is durable, or it is on the queue),
    /// or says why not; returns the id of the execution to answer with.
    /// `max_concurrent` is the tenant's (local backend; the queue has its
    /// per-tenant cap). An `Idempotency-Key` the tenant sent before, whose
    /// execution is still known, is not run again: the id returned is the
    /// first execution's. Another tenant's identical key is unrelated.
    pub async fn submit(&self, job: Job, max_concurrent: u32) -> Result<String, SubmitError> {
        match self {
            Backend::Local(b) => b.submit(job, max_concurrent).await,
            Backend::Nats(b) => b.submit(job).await,
        }
    }

    /// Where `id` of `tenant` is; `None` for an unknown id or another
    /// tenant's (the caller answers 404 to both).
    pub async fn status(&self, tenant: &str, id: &str) -> Option<Status> {
        match self {
            Backend::Local(b) => b.status(tenant, id),
            Backend::Nats(b) => b.status(tenant, id).await,
        }
    }

    /// Waits up to `timeout` for `id` to finish; returns where it is then.
    pub async fn wait(&self, tenant: &str, id: &str, timeout: Duration) -> Option<Status> {
        match self {
            Backend::Local(b) => b.wait(tenant, id, timeout).await,
            Backend::Nats(b) => b.wait(tenant, id, timeout).await,
        }
    }

    /// Cancels `id`: a queued execution never runs, a running one is
    /// killed; both are recorded `CANCELLED`. Returns its status after the
    /// request (a finished one is left as it is).
    pub async fn cancel(&self, tenant: &str, id: &str) -> Option<Status> {
        match self {
            Backend::Local(b) => b.cancel(tenant, id).await,
            Backend::Nats(b) => b.cancel(tenant, id).await,
        }
    }

    /// Readiness for `/readyz`.
    pub fn readiness(&self) -> Readiness {
        match self {
            Backend::Local(b) => b.readiness(),
            Backend::Nats(b) => b.readiness(),
        }
    }

    /// Stops accepting, lets queued and running executions finish for up to
    /// `grace`, then cancels what is left and waits for every record to be
    /// durable. The audit writer stays open (the caller shuts it down).
    pub async fn drain(&self, grace: Duration) {
        match self {
            Backend::Local(b) => b.drain(grace).await,
            Backend::Nats(b) => b.drain(grace).await,
        }
    }
}

/// Settings of the local backend.
#[derive(Clone, Debug)]
pub struct LocalSettings {
    /// Worker threads (executions at once).
    pub workers: u32,
    /// Queue capacity.
    pub queue: u32,
    /// Forced mode, or container where possible.
    pub mode: Option<Mode>,
    /// Where runs create their folders.
    pub run_root: PathBuf,
    /// Results kept per tenant.
    pub results_per_tenant: u32,
    /// How long results are kept.
    pub result_ttl: Duration,
}

/// Where an execution's begin is: its command starts only once `Durable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Begin {
    /// Being committed.
    Pending,
    /// Durable: the execution is accepted.
    Durable,
    /// Failed: the execution is refused (its submit says why).
    Failed,
}

/// Waits (async) until the begin is settled; whether it is durable.
async fn begun(mut rx: watch::Receiver<Begin>) -> bool {
    matches!(rx.wait_for(|b| *b != Begin::Pending).await.map(|b| *b), Ok(Begin::Durable))
}

enum Phase {
    /// The job, its audit run (begun when it was queued), when it was
    /// queued, and where its begin is.
    Queued(Box<Job>, Box<GroupRun>, Instant, watch::Receiver<Begin>),
    /// In its sandbox, or over with its record being committed.
    Running(Cancel),
    /// Cancelled while queued, its record being committed.
    Recording,
    Done(Arc<serde_json::Value>),
}

struct Entry {
    tenant: String,
    /// The caller's `Idempotency-Key`, if it gave one.
    key: Option<String>,
    phase: Phase,
    watch: watch::Sender<u8>,
    finished: Option<Instant>,
}

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    /// Per tenant: queued or running.
    active: HashMap<String, u32>,
    /// Per tenant: finished ids, oldest first.
    finished: HashMap<String, VecDeque<String>>,
    /// (tenant, `Idempotency-Key`) -> the execution id, for as long as
    /// the execution is in `entries` (or its acceptance is under way).
    keys: HashMap<(String, String), String>,
}

impl Table {
    /// Removes `id`'s entry and its key's mapping.
    fn remove(&mut self, id: &str) {
        if let Some(Entry { tenant, key: Some(key), .. }) = self.entries.remove(id) {
            let k = (tenant, key);
            if self.keys.get(&k).is_some_and(|mapped| mapped == id) {
                self.keys.remove(&k);
            }
        }
    }
}

/// What a submit found under the table lock.
enum Found {
    /// The tenant's key names an execution: answer with it once its begin
    /// is settled (when it is still pending).
    Replay(String, Option<watch::Receiver<Begin>>),
    /// A new execution, its place reserved.
    New,
}

struct Shared {
    table: Mutex<Table>,
    settings: LocalSettings,
    audit: Arc<GroupWriter>,
    /// Where the waits for records run, off the workers.
    runtime: tokio::runtime::Handle,
    /// Records asked for and not yet durable.
    recording: AtomicUsize,
    support: KernelSupport,
    metrics: Metrics,
    started_workers: AtomicUsize,
    busy: AtomicU32,
    queued: AtomicUsize,
    /// The environment handed to runs as `host_env`.
    env: Vec<(String, String)>,
    /// The log recovered lost runs at start (the service was killed): the
    /// next run sweeps the run root of the folders they left at once,
    /// instead of when the sweep is due.
    sweep_now: AtomicBool,
    /// The warm pool, when `[server] pool_size` is set.
    pool: Option<Pool>,
    /// The plans of installed plugins' handlers, for fresh and pooled
    /// runs alike.
    plans: Plans,
}

/// Worker threads in this process; see the module docs.
pub struct LocalBackend {
    shared: Arc<Shared>,
    sender: Mutex<Option<Sender<String>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// The only variables of the service's environment a run may see (through
/// a manifest's `env.allow`): never the service's secrets.
pub(crate) const PASSED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ"];

impl LocalBackend {
    /// Starts the workers. Call it on the tokio runtime that serves the
    /// routes (results are published from tasks on it).
    pub fn start(
        settings: LocalSettings,
        audit: Arc<GroupWriter>,
        support: KernelSupport,
        metrics: Metrics,
        pool: Option<Pool>,
    ) -> LocalBackend {
        // Unbounded: the bound is `queued`, reserved under the table lock
        // before the begin, so a refusal never needs to undo a begun run.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let env = std::env::vars().filter(|(k, _)| PASSED_ENV.contains(&k.as_str())).collect();
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            sweep_now: AtomicBool::new(audit.recovered() > 0),
            audit,
            runtime: tokio::runtime::Handle::current(),
            recording: AtomicUsize::new(0),
            support,
            metrics,
            started_workers: AtomicUsize::new(0),
            busy: AtomicU32::new(0),
            queued: AtomicUsize::new(0),
            env,
            settings,
            pool,
            plans: Plans::new(),
        });
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..shared.settings.workers)
            .map(|i| {
                let shared = shared.clone();
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("cordon-worker-{i}"))
                    .spawn(move || worker(&shared, &rx))
                    .expect("a worker thread can be spawned")
            })
            .collect();
        LocalBackend { shared, sender: Mutex::new(Some(tx)), workers: Mutex::new(workers) }
    }

    async fn submit(&self, job: Job, max_concurrent: u32) -> Result<String, SubmitError> {
        let sender = self.sender.lock().expect("sender lock").clone().ok_or(SubmitError::Draining)?;
        if let cordon::SpawnerState::Gone(pid) = cordon::spawner_state() {
            return Err(SubmitError::SpawnerGone(pid));
        }
        let s = &self.shared;
        let found = {
            // A place in the tenant's count and in the queue, reserved
            // before the begin, and the key's mapping with it (under the
            // same lock: two requests with one key never both run).
            let mut table = s.table.lock().expect("execution table lock");
            expire(&mut table, s.settings.result_ttl);
            let mapped = job.idempotency_key.as_ref().and_then(|k| table.keys.get(&(job.tenant.clone(), k.clone())));
            if let Some(first) = mapped.cloned() {
                // The same key of the same tenant again. An execution
                // whose acceptance is under way has no entry yet: its id
                // is answered as queued.
                let begin = match table.entries.get(&first).map(|e| &e.phase) {
                    Some(Phase::Queued(.., begin)) => Some(begin.clone()),
                    _ => None,
                };
                Found::Replay(first, begin)
            } else {
                let active = table.active.get(&job.tenant).copied().unwrap_or(0);
                if active >= max_concurrent {
                    return Err(SubmitError::TenantBusy { tenant: job.tenant.clone(), active });
                }
                let waiting = s.queued.load(Ordering::SeqCst);
                if waiting >= s.settings.queue as usize {
                    return Err(SubmitError::QueueFull(waiting));
                }
                *table.active.entry(job.tenant.clone()).or_default() += 1;
                s.queued.fetch_add(1, Ordering::SeqCst);
                if let Some(k) = &job.idempotency_key {
                    table.keys.insert((job.tenant.clone(), k.clone()), job.id.clone());
                }
                Found::New
            }
        };
        if let Found::Replay(first, begin) = found {
            let refused = match begin {
                Some(begin) => !begun(begin).await,
                None => false,
            };
            return match refused {
                true => Err(SubmitError::Audit("the first request with this Idempotency-Key was refused".into())),
                false => Ok(first),
            };
        }
        // From here the acceptance runs to its end in a task of its own: a
        // client that hangs up while its begin is being committed drops this
        // future (hyper cancels the handler), which would leave a begun run
        // that is never queued (recorded `LOST` at shutdown) and a place in
        // the tenant's count that is never given back (429 for good).
        let shared = s.clone();
        let id = job.id.clone();
        tokio::spawn(async move { accept(&shared, sender, job).await })
            .await
            .unwrap_or_else(|e| Err(SubmitError::Audit(format!("the acceptance of the execution failed: {e}"))))
            .map(|()| id)
    }

    fn status(&self, tenant: &str, id: &str) -> Option<Status> {
        let table = self.shared.table.lock().expect("execution table lock");
        let e = table.entries.get(id).filter(|e| e.tenant == tenant)?;
        Some(status_of(e))
    }

    async fn wait(&self, tenant: &str, id: &str, timeout: Duration) -> Option<Status> {
        let mut rx = {
            let table = self.shared.table.lock().expect("execution table lock");
            table.entries.get(id).filter(|e| e.tenant == tenant)?.watch.subscribe()
        };
        let _ = tokio::time::timeout(timeout, rx.wait_for(|p| *p == DONE)).await;
        self.status(tenant, id)
    }

    async fn cancel(&self, tenant: &str, id: &str) -> Option<Status> {
        cancel(&self.shared, tenant, id).await
    }

    fn readiness(&self) -> Readiness {
        let s = &self.shared;
        let started = s.started_workers.load(Ordering::SeqCst);
        let draining = self.sender.lock().expect("sender lock").is_none();
        let want = s.settings.workers as usize;
        let reason = if draining {
            Some("draining: the service is shutting down".to_owned())
        } else if let cordon::SpawnerState::Gone(pid) = cordon::spawner_state() {
            Some(SubmitError::SpawnerGone(pid).to_string())
        } else if started < want {
            Some(format!("{started} of {want} workers started"))
        } else {
            None
        };
        Readiness {
            warm: reason.is_none(),
            workers: started,
            busy: s.busy.load(Ordering::SeqCst) as usize,
            queued: s.queued.load(Ordering::SeqCst),
            reason,
        }
    }

    async fn drain(&self, grace: Duration) {
        // Closing the channel: workers finish what is queued, then exit.
        self.sender.lock().expect("sender lock").take();
        let deadline = Instant::now() + grace;
        let shared = self.shared.clone();
        let idle = move || {
            shared.busy.load(Ordering::SeqCst) == 0
                && shared.queued.load(Ordering::SeqCst) == 0
                && shared.recording.load(Ordering::SeqCst) == 0
        };
        while !idle() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !idle() {
            // Out of time: cancel everything still queued or running.
            let ids: Vec<(String, String)> = {
                let table = self.shared.table.lock().expect("execution table lock");
                table
                    .entries
                    .iter()
                    .filter(|(_, e)| !matches!(e.phase, Phase::Done(_)))
                    .map(|(id, e)| (e.tenant.clone(), id.clone()))
                    .collect()
            };
            for (tenant, id) in ids {
                self.cancel(&tenant, &id).await;
            }
        }
        let workers = std::mem::take(&mut *self.workers.lock().expect("workers lock"));
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
        // No run can start any more: the parked sandboxes go.
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(p) = &shared.pool {
                p.stop();
            }
        })
        .await;
        // Every run has ended: wait for the last records to be durable.
        while self.shared.recording.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn status_of(e: &Entry) -> Status {
    match &e.phase {
        Phase::Queued(..) => Status::Queued,
        Phase::Running(_) | Phase::Recording => Status::Running,
        Phase::Done(v) => Status::Done(v.clone()),
    }
}

pub(crate) fn subject_of(job: &Job) -> Subject {
    Subject {
        trace_id: job.trace.trace_id_hex(),
        tenant: Some(job.tenant.clone()),
        plugin: Some(job.plugin.id.clone()),
        plugin_version: Some(job.plugin.version.clone()),
        handler: Some(job.handler.clone()),
        ..provenance(job)
    }
}

/// What the audit record says about the package that ran, and who asked.
fn provenance(job: &Job) -> Subject {
    Subject {
        idempotency_key: job.idempotency_key.clone(),
        ..provenance_of(&job.principal, &job.jti, job.traceparent.as_deref(), &job.plugin)
    }
}

/// [`provenance`] from its parts (a queue worker has no [`Job`]).
pub(crate) fn provenance_of(principal: &str, jti: &str, traceparent: Option<&str>, plugin: &Runnable) -> Subject {
    Subject {
        principal: Some(principal.to_owned()),
        token_jti: Some(jti.to_owned()),
        traceparent: traceparent.map(str::to_owned),
        package_tree_hash: plugin.tree_hash.clone(),
        signer_key_id: plugin.signer_key_id.clone(),
        signature_state: Some(plugin.state.clone()),
        ..Subject::default()
    }
}

/// Drops finished results older than `ttl`.
fn expire(table: &mut Table, ttl: Duration) {
    let mut old = vec![];
    let Table { entries, finished, .. } = &mut *table;
    for ids in finished.values_mut() {
        while let Some(id) = ids.front() {
            if entries.get(id).and_then(|e| e.finished).is_some_and(|t| t.elapsed() < ttl) {
                break;
            }
            old.extend(ids.pop_front());
        }
    }
    for id in old {
        table.remove(&id);
    }
}

/// Records an execution that never started, completing its audit run;
/// returns once the record is durable.
async fn record_unstarted(
    s: &Shared,
    job: &Job,
    run: GroupRun,
    code: cordon::ErrorCode,
    message: &str,
) -> Arc<serde_json::Value> {
    let mode = s.settings.mode.unwrap_or(Mode::Container);
    let mut result = cordon::ExecutionResult::unstarted(&job.id, mode, message.to_owned());
    if let Some(e) = &mut result.error {
        e.code = code;
    }
    if let Err(e) = run.complete(result.audit_ending(""), &[]).await {
        // Its journal entry stays: the next start records it as lost.
        result.warnings.push(e.render());
    }
    Arc::new(response_value(&job.id, &serde_json::to_value(&result).unwrap_or_default(), None))
}

/// The JSON a caller gets: the run's result with `id` (and the gateway's
/// timing breakdown).
pub(crate) fn response_value(
    id: &str,
    result: &serde_json::Value,
    timing: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut v = result.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), serde_json::Value::String(id.to_owned()));
        if let Some(t) = timing {
            o.insert("timing".into(), t);
        }
    }
    v
}

fn finish(s: &Shared, id: &str, tenant: &str, value: Arc<serde_json::Value>, outcome: &str) {
    let mut table = s.table.lock().expect("execution table lock");
    if let Some(a) = table.active.get_mut(tenant) {
        *a = a.saturating_sub(1);
    }
    if let Some(e) = table.entries.get_mut(id) {
        e.phase = Phase::Done(value);
        e.finished = Some(Instant::now());
        e.watch.send_replace(DONE);
    }
    let cap = s.settings.results_per_tenant as usize;
    let ids = table.finished.entry(tenant.to_owned()).or_default();
    ids.push_back(id.to_owned());
    let evicted: Vec<String> = (cap..ids.len()).filter_map(|_| ids.pop_front()).collect();
    for old in evicted {
        table.remove(&old);
    }
    s.metrics.execution_done(tenant, outcome);
}

/// Cancels `id` of `tenant` (see [`Backend::cancel`]).
async fn cancel(s: &Arc<Shared>, tenant: &str, id: &str) -> Option<Status> {
    // A queued execution is recorded cancelled only once it is accepted:
    // one whose begin fails was never accepted (its caller is refused).
    let pending = {
        let table = s.table.lock().expect("execution table lock");
        match &table.entries.get(id).filter(|e| e.tenant == tenant)?.phase {
            Phase::Queued(.., begin) if *begin.borrow() == Begin::Pending => Some(begin.clone()),
            _ => None,
        }
    };
    if let Some(begin) = pending {
        if !begun(begin).await {
            return None;
        }
    }
    let (job, run) = {
        let mut table = s.table.lock().expect("execution table lock");
        let entry = table.entries.get_mut(id).filter(|e| e.tenant == tenant)?;
        match &entry.phase {
            Phase::Running(cancel) => {
                cancel.cancel();
                return Some(Status::Running);
            }
            Phase::Recording => return Some(Status::Running),
            Phase::Done(v) => return Some(Status::Done(v.clone())),
            Phase::Queued(..) => {}
        }
        // Queued: it never runs. The worker that dequeues it finds it
        // no longer queued.
        if let Phase::Queued(.., begin) = &entry.phase {
            if *begin.borrow() != Begin::Durable {
                return None;
            }
        }
        let Phase::Queued(job, run, ..) = std::mem::replace(&mut entry.phase, Phase::Recording) else {
            unreachable!("matched above")
        };
        (job, run)
    };
    s.queued.fetch_sub(1, Ordering::SeqCst);
    s.metrics.queued.set(i64::try_from(s.queued.load(Ordering::SeqCst)).unwrap_or(i64::MAX));
    let value = record_unstarted(s, &job, *run, cordon::ErrorCode::Cancelled, "cancelled before it started").await;
    finish(s, &job.id, &job.tenant, value.clone(), "CANCELLED");
    Some(Status::Done(value))
}

/// The acceptance of `job`, its place reserved: begun and queued at once,
/// accepted once the begin is durable, for an execution is accepted only
/// once a crash would leave it to be recorded as lost. A worker may take it
/// meanwhile and set its sandbox up, but starts its command only then (see
/// [`run_one`]); a begin that fails refuses the execution, and whoever
/// holds it then (this, or the worker that took it) drops it unrecorded.
/// Its record is completed by the worker (or the cancel), never by
/// `run_handler`. Runs as a task of its own (see `LocalBackend::submit`).
async fn accept(s: &Arc<Shared>, sender: Sender<String>, job: Job) -> Result<(), SubmitError> {
    let (run, durable) = s.audit.begin(&subject_of(&job), &job.id, None).split();
    let (begin, begin_rx) = watch::channel(Begin::Pending);
    let (watch, _) = watch::channel(QUEUED);
    let tenant = job.tenant.clone();
    let id = job.id.clone();
    let key = job.idempotency_key.clone();
    let phase = Phase::Queued(Box::new(job), Box::new(run), Instant::now(), begin_rx);
    s.table
        .lock()
        .expect("execution table lock")
        .entries
        .insert(id.clone(), Entry { tenant: tenant.clone(), key, phase, watch, finished: None });
    let queued = sender.send(id.clone()).is_ok();
    if let Err(e) = durable.await {
        begin.send_replace(Begin::Failed);
        let mut table = s.table.lock().expect("execution table lock");
        // Still queued: nobody took it, so it goes here; taken, the worker
        // drops it (`forget`).
        if matches!(table.entries.get(&id).map(|e| &e.phase), Some(Phase::Queued(..))) {
            table.remove(&id);
            if let Some(a) = table.active.get_mut(&tenant) {
                *a = a.saturating_sub(1);
            }
            s.queued.fetch_sub(1, Ordering::SeqCst);
        }
        return Err(SubmitError::Audit(e.render()));
    }
    begin.send_replace(Begin::Durable);
    cordon::trace::step("gateway: begin durable");
    s.metrics.queued.set(i64::try_from(s.queued.load(Ordering::SeqCst)).unwrap_or(i64::MAX));
    if !queued {
        // The workers are gone (draining began meanwhile): recorded
        // as cancelled, like any execution the drain leaves queued.
        cancel(s, &tenant, &id).await;
        return Err(SubmitError::Draining);
    }
    Ok(())
}

/// Drops an execution a worker took whose begin failed: never started,
/// never recorded (its caller was refused); its place is given back.
fn forget(s: &Shared, job: &Job) {
    let mut table = s.table.lock().expect("execution table lock");
    table.remove(&job.id);
    if let Some(a) = table.active.get_mut(&job.tenant) {
        *a = a.saturating_sub(1);
    }
}

/// Blocks this worker until `begin` is settled; whether it is durable.
fn wait_begun(s: &Shared, begin: watch::Receiver<Begin>) -> bool {
    let durable = s.runtime.block_on(begun(begin));
    if durable {
        cordon::trace::step("gateway: begin durable (worker)");
    }
    durable
}

fn worker(s: &Arc<Shared>, rx: &Mutex<Receiver<String>>) {
    s.started_workers.fetch_add(1, Ordering::SeqCst);
    loop {
        let next = rx.lock().expect("queue lock").recv();
        let Ok(id) = next else { break };
        let claimed = {
            let mut table = s.table.lock().expect("execution table lock");
            match table.entries.get_mut(&id) {
                Some(e) if matches!(e.phase, Phase::Queued(..)) => {
                    let cancel = Cancel::new();
                    let next = match &cancel {
                        Ok(c) => Phase::Running(c.clone()),
                        Err(_) => Phase::Recording,
                    };
                    let Phase::Queued(job, run, accepted, begin) = std::mem::replace(&mut e.phase, next) else {
                        unreachable!("matched above")
                    };
                    if cancel.is_ok() {
                        e.watch.send_replace(RUNNING);
                    }
                    Some((job, run, accepted, begin, cancel))
                }
                // Cancelled while queued: already recorded.
                _ => None,
            }
        };
        let Some((job, run, accepted, begin, cancel)) = claimed else { continue };
        cordon::trace::step("gateway: worker took it");
        s.queued.fetch_sub(1, Ordering::SeqCst);
        s.metrics.queued.set(i64::try_from(s.queued.load(Ordering::SeqCst)).unwrap_or(i64::MAX));
        let cancel = match cancel {
            Ok(c) => c,
            Err(e) => {
                // No cancel handle (eventfd failed: out of descriptors),
                // so it cannot run: it is recorded and answered as a
                // setup failure, never left queued.
                let message = format!("cannot create the execution's cancel handle: {e}");
                match wait_begun(s, begin) {
                    true => record_setup_failure(s, *job, *run, message),
                    false => forget(s, &job),
                }
                continue;
            }
        };
        s.busy.fetch_add(1, Ordering::SeqCst);
        s.metrics.running.inc();
        run_one(s, *job, *run, accepted, begin, cancel);
        s.metrics.running.dec();
        s.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Records and publishes an execution taken off the queue that cannot
/// start (`SETUP_FAILED` with `message`), by a task like a run's record.
fn record_setup_failure(s: &Arc<Shared>, job: Job, run: GroupRun, message: String) {
    s.recording.fetch_add(1, Ordering::SeqCst);
    let shared = s.clone();
    s.runtime.spawn(async move {
        let value = record_unstarted(&shared, &job, run, cordon::ErrorCode::SetupFailed, &message).await;
        finish(&shared, &job.id, &job.tenant, value, cordon::ErrorCode::SetupFailed.as_str());
        shared.recording.fetch_sub(1, Ordering::SeqCst);
    });
}

/// The request of a run of `job`'s plugin and handler without the
/// execution's own data: what a fresh run and a parked one are made from.
/// Its data folder (the `platform` preset's) is `job`'s tenant's, never
/// the plugin's one folder that every tenant would share.
fn handler_template(s: &Shared, job: &Job) -> HandlerRequest {
    let mut req = HandlerRequest::new(&job.plugin.dir, &job.handler);
    req.data_tenant = Some(job.tenant.clone());
    // Artifacts under tenants/<tenant>/ of the store.
    req.store = ArtifactStore::for_service();
    req.mode = s.settings.mode;
    req.host_env = s.env.clone();
    req.run_root = s.settings.run_root.clone();
    req.support = Some(s.support.clone());
    // No trail: the run was begun at acceptance, and is completed here;
    // the log stays out of the sandbox's reach all the same.
    req.audit = None;
    req.protect = s.audit.protected();
    req.signals = Signals::Leave;
    req
}

fn run_one(
    s: &Arc<Shared>,
    job: Job,
    mut run: GroupRun,
    accepted: Instant,
    begin: watch::Receiver<Begin>,
    cancel: Cancel,
) {
    let t0 = Instant::now();
    let worker = std::thread::current().name().map(str::to_owned);
    // Its sandbox is set up while its begin is committed: one the pool
    // parked, or a fresh one parked here, both from the key's plan. Only
    // verified packages are planned ahead and pooled: a development
    // folder's manifest may change under the same key (no tree hash), so
    // it always runs fresh, planned for the run.
    let key = Key::of(&job.plugin, &job.handler, s.settings.mode, &job.tenant);
    let mut req = handler_template(s, &job);
    req.request_id = Some(job.id.clone());
    let planned = s.plans.get(&key, job.plugin.manifest_sha256, &req);
    // Parked per tenant when its runs get the tenant's data folder.
    let taken = match (&s.pool, &planned) {
        (Some(pool), Some(Ok(plan))) => {
            pool.take(&Plans::key_of(&key, plan), || (handler_template(s, &job), plan.clone()))
        }
        _ => None,
    };
    let (parked, refill) = match taken {
        Some(Taken { handler, refill }) => (Ok(handler), Some(Arc::new(refill))),
        None => {
            if s.sweep_now.swap(false, Ordering::SeqCst) {
                req.sweep = Sweep::Now;
            }
            let parked = match planned {
                Some(Ok(plan)) => park_planned(&plan, &req),
                Some(Err(refused)) => Err(refused),
                None => park_handler(&req),
            };
            (parked, None)
        }
    };
    // Its command starts only once it is accepted; refused, its sandbox is
    // killed unstarted and nothing is recorded.
    if !wait_begun(s, begin) {
        drop(parked);
        drop(refill);
        forget(s, &job);
        return;
    }
    // Answered as soon as the result is known: the sandbox's teardown
    // (`after`) runs while the record is committed and the answer sent.
    let (mut result, after): (HandlerResult, HandlerAftermath) = match parked {
        Ok(parked) => parked.start_answering(HandlerStart {
            request_id: job.id.clone(),
            input: job.input.clone(),
            traceparent: Some(job.trace.to_string()),
            tenant: Some(job.tenant.clone()),
            audit_subject: Subject { worker, ..provenance(&job) },
            cancel: Some(cancel),
            // Exec'd: the pool refills the key now, not while this
            // execution's parked init woke and started its command.
            on_exec: refill.clone().map(|r| OnExec::new(move || r.release())),
        }),
        // It could not be set up: the result says why, as the run's would.
        Err(failed) => {
            let mut failed = *failed;
            let known = std::mem::take(&mut failed.subject);
            failed.trace_id = job.trace.trace_id_hex();
            failed.subject = Subject { worker, command: known.command, ..subject_of(&job) };
            (failed, HandlerAftermath::default())
        }
    };
    cordon::trace::step("gateway: result read");
    // Released at the exec; a command that never ran releases it now.
    drop(refill);
    let digest = result.policy_digest.clone().unwrap_or_default();
    // The command and worker are known now.
    *run.subject_mut() = result.subject.clone();
    // The run's record, committed with others; the result is published
    // once it is durable, by a task, so this worker goes on at once.
    let commit = run.complete(result.result.audit_ending(&digest), &[]);
    let handler_ms = t0.elapsed().as_secs_f64() * 1e3;
    s.metrics.observe_run(handler_ms / 1e3, result.metrics.wall_ms / 1e3);
    s.recording.fetch_add(1, Ordering::SeqCst);
    let shared = s.clone();
    s.runtime.spawn(async move {
        let t1 = Instant::now();
        if let Err(e) = commit.await {
            // Its journal entry stays: the next start records it as lost.
            result.result.warnings.push(e.render());
        }
        cordon::trace::step("gateway: record durable");
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let outcome = result.error.as_ref().map_or("ok", |e| e.code.as_str());
        let timing = serde_json::json!({
            "queued_ms": ms(t0 - accepted),
            "handler_ms": (handler_ms * 1e3).round() / 1e3,
            "sandbox_wall_ms": result.metrics.wall_ms,
            "audit_ms": ms(t1.elapsed()),
        });
        let value = Arc::new(response_value(&job.id, &serde_json::to_value(&result).unwrap_or_default(), Some(timing)));
        finish(&shared, &job.id, &job.tenant, value, outcome);
        shared.recording.fetch_sub(1, Ordering::SeqCst);
    });
    // This worker takes its next execution only once the sandbox is gone
    // (init reaped, cgroups and run folder removed): no run outlives its
    // worker's turn, and the drain waits for every one.
    drop(after);
    cordon::trace::step("gateway: sandbox torn down");
}
