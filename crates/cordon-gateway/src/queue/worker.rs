//! `cordon worker --queue nats://…`: pulls execution requests from the
//! JetStream work queue and runs each in a fresh sandbox through the
//! library, as the gateway's local backend does.
//!
//! # The loop (SCALE-OUT.md §1, "Worker loop")
//!
//! - Pull only as many requests as there are free sandbox slots: a request
//!   buffered by a worker that dies waits a whole AckWait for nothing.
//! - Before running, look the result up (a leader read): a request whose
//!   result exists is acknowledged and skipped. That saves most of the work
//!   a dead worker's redeliveries would repeat.
//! - While a delivery is held (lookup, run, result write), a double-acked
//!   `+WPI` goes out every AckWait/3. When those fail for longer than the
//!   lease allows, the worker has lost contact: it kills the sandbox and
//!   drops the result, because another worker may be running the request
//!   already.
//! - Infrastructure errors (a lookup, write or ack that times out during a
//!   failover) are retried **in place** for up to 30 s, then NAKed: a NAK
//!   uses up one of the request's deliveries (condition 1).
//! - The result is written with a KV `create`: the first writer wins; a
//!   refused write is counted as a duplicate and the stored result stands.
//!
//! # Guarantees
//!
//! - **Leftovers are removed.** Runs create their folders under
//!   `RUN_ROOT/cordon-worker-PID`; a worker removes the folders of worker
//!   processes of this host that are gone when it starts.
//! - **Sandboxes die with the worker.** `cordon worker` starts its sandbox
//!   spawner first ([`cordon::start_spawner`], from the main thread, before
//!   any other): each sandbox is cloned by that small process, stays the
//!   worker's child, and its `PR_SET_PDEATHSIG` follows the worker's main
//!   thread, so it dies with the worker process; a SIGKILLed worker's runs
//!   are recorded `LOST` in its audit log by its next start, and their
//!   requests come back to another worker after AckWait.
//! - **A worker without its spawner takes no more work (fails closed).**
//!   It notices within [`SPAWNER_CHECK`] (and at every delivery it is about
//!   to run): it stops pulling, NAKs a delivery it was about to run (back
//!   to the queue for another worker; a run whose set-up failed because the
//!   spawner went away meanwhile is NAKed too, its attempt recorded
//!   `SETUP_FAILED` here), lets the runs already started finish and answer,
//!   and [`run`] returns [`QueueError::SpawnerGone`] (the command exits
//!   non-zero with the reason). It never clones a sandbox from its own
//!   multi-threaded process instead.
//! - Every run leaves one audit record naming the worker and the attempt
//!   (the delivery count); a request refused before it runs (deadline
//!   passed, plugin not installed here or different) is recorded unstarted.
//! - A deadline: a request is not started after it, and a run still going
//!   at it is killed; either way the result is `EXPIRED`.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, AckKind};
use cordon::audit::{AuditTrail, Subject};
use cordon::plugin::{run_handler_answering, ArtifactStore, HandlerRequest};
use cordon::{Cancel, ErrorCode, KernelSupport, Mode, Signals};
use futures_util::StreamExt;
use tokio::sync::{oneshot, watch, Semaphore};

use super::{
    connect, create_result, ended_without_run, notify_done, now_ms, result_key, retry, stored_result, subject,
};
use super::{QueueError, QueueSettings, WireRequest, EXEC_CONSUMER, PULL_EXPIRES};
use crate::backend::{provenance_of, PASSED_ENV};
use crate::catalog::{Catalog, Runnable};
use crate::metrics::Stored;

/// How long an infrastructure error is retried in place before the
/// delivery is NAKed.
const IN_PLACE: Duration = Duration::from_secs(30);
/// The pause between in-place tries.
const PAUSE: Duration = Duration::from_millis(250);
/// How often an idle worker checks that its sandbox spawner is there.
pub const SPAWNER_CHECK: Duration = Duration::from_millis(250);

/// A worker's settings.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// The queue.
    pub queue: QueueSettings,
    /// This worker's name in results and audit records (default: host name
    /// and pid).
    pub name: String,
    /// Sandboxes at once.
    pub slots: u32,
    /// Forced mode, or container where possible.
    pub mode: Option<Mode>,
    /// Where runs create their folders.
    pub run_root: PathBuf,
}

/// What the worker counted; printed when it stops.
#[derive(Debug, Default)]
pub struct Counters {
    /// Sandboxes run.
    pub runs: AtomicU64,
    /// Deliveries whose result already existed (skipped).
    pub skipped: AtomicU64,
    /// Results refused because another writer was first.
    pub duplicates: AtomicU64,
    /// Runs killed because the lease was lost.
    pub lease_lost: AtomicU64,
    /// Deliveries NAKed after in-place retries ran out.
    pub naks: AtomicU64,
}

struct Slot {
    req: Box<HandlerRequest>,
    reply: oneshot::Sender<cordon::plugin::HandlerResult>,
}

struct Shared {
    settings: WorkerSettings,
    client: async_nats::Client,
    results: kv::Store,
    signer: Option<cordon_registry::minisign::SecretKey>,
    catalog: Box<dyn Catalog>,
    trail: AuditTrail,
    support: KernelSupport,
    slots: std::sync::mpsc::SyncSender<Slot>,
    /// Running requests by bucket key, for `cordon.cancel.*`.
    running: Mutex<HashMap<String, Cancel>>,
    ack_wait: Duration,
    env: Vec<(String, String)>,
    counters: Counters,
    /// Set (to the spawner's pid) once the sandbox spawner is found gone:
    /// the pull loop stops.
    halt: watch::Sender<Option<i32>>,
}

impl Shared {
    /// Stops the worker for good: its sandbox spawner (`pid`) is gone.
    fn spawner_gone(&self, pid: i32) {
        self.halt.send_if_modified(|h| {
            let first = h.is_none();
            if first {
                eprintln!(
                    "cordon worker: the sandbox spawner (pid {pid}) is gone: taking no more deliveries; waiting for the running ones"
                );
                *h = Some(pid);
            }
            first
        });
    }
}

/// The sandbox spawner's pid once it is gone (`cordon::start_spawner`).
fn spawner_gone() -> Option<i32> {
    match cordon::spawner_state() {
        cordon::SpawnerState::Gone(pid) => Some(pid),
        cordon::SpawnerState::Running(_) | cordon::SpawnerState::NotStarted => None,
    }
}

/// Why [`execute`] has no result to store.
enum Unrun {
    /// The lease was lost: the sandbox was killed; another worker may hold
    /// the delivery now.
    LeaseLost,
    /// The sandbox spawner (this pid) is gone: the delivery goes back.
    SpawnerGone(i32),
}

/// Runs the worker until `stop` turns true: then it pulls nothing more,
/// lets running executions finish, and prints what it counted.
pub async fn run(
    settings: WorkerSettings,
    catalog: Box<dyn Catalog>,
    trail: AuditTrail,
    support: KernelSupport,
    mut stop: watch::Receiver<bool>,
) -> Result<(), QueueError> {
    let (client, js) =
        connect(&settings.queue, super::Role::Worker, &format!("cordon-worker {}", settings.name)).await?;
    // The gateway creates the queue; a worker started first waits for it.
    let consumer: jetstream::consumer::PullConsumer =
        retry(Duration::from_secs(60), Duration::from_millis(200), || {
            js.get_consumer_from_stream(EXEC_CONSUMER, super::EXEC_STREAM)
        })
        .await
        .map_err(|e| QueueError::Setup {
            what: format!("consumer {EXEC_CONSUMER} (start `cordon serve --queue` first)"),
            detail: e.to_string(),
        })?;
    let signer = super::result_signer(&settings.queue)?;
    let ack_wait = consumer.cached_info().config.ack_wait;
    let run_root = own_run_root(&settings.run_root).map_err(|e| QueueError::Setup {
        what: format!("the worker's run folder under {}", settings.run_root.display()),
        detail: e.to_string(),
    })?;
    // Its runs' folders, every tenant's (cordon-worker-PID/<tenant>/
    // cordon-runs-UID, made at a tenant's first run): the whole of the
    // worker's own folder, out of every run of this process from the first
    // on, so a run started before another tenant's first cannot reach that
    // tenant's folders either (each run's own folder is its hole).
    cordon::state::protect_from_now_on(cordon::Protected::folder(run_root.clone(), cordon::state::RUNS_FOLDER_WHAT));
    let mut settings = settings;
    settings.run_root = run_root.clone();
    let results = retry(Duration::from_secs(60), Duration::from_millis(200), || super::results(&js)).await?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Slot>(settings.slots as usize);
    let rx = Arc::new(Mutex::new(rx));
    let mut threads = vec![];
    for i in 0..settings.slots {
        let rx = rx.clone();
        let t = std::thread::Builder::new()
            .name(format!("cordon-slot-{i}"))
            .spawn(move || slot_thread(&rx))
            .map_err(|e| QueueError::Setup { what: "worker slot threads".into(), detail: e.to_string() })?;
        threads.push(t);
    }
    let env = std::env::vars().filter(|(k, _)| PASSED_ENV.contains(&k.as_str())).collect();
    let slots = settings.slots as usize;
    let (halt, mut halted) = watch::channel(None);
    let shared = Arc::new(Shared {
        settings,
        client: client.clone(),
        results,
        signer,
        catalog,
        trail,
        support,
        slots: tx,
        running: Mutex::new(HashMap::new()),
        ack_wait,
        env,
        counters: Counters::default(),
        halt,
    });
    let watcher = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SPAWNER_CHECK);
            loop {
                tick.tick().await;
                if let Some(pid) = spawner_gone() {
                    shared.spawner_gone(pid);
                    break;
                }
            }
        })
    };
    let cancels = {
        let shared = shared.clone();
        let mut sub = client
            .subscribe(subject::CANCEL_ALL)
            .await
            .map_err(|e| QueueError::Setup { what: "the cancel subscription".into(), detail: e.to_string() })?;
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let key = m.subject.as_str().trim_start_matches("cordon.cancel.").to_owned();
                if let Some(c) = shared.running.lock().expect("running lock").get(&key) {
                    // The gateway cancels at the deadline too: that is an
                    // expiry, not the caller giving up.
                    if m.payload.as_ref() == super::CANCEL_EXPIRED {
                        c.expire();
                    } else {
                        c.cancel();
                    }
                }
            }
        })
    };
    eprintln!(
        "cordon worker: {} pulling {} with {slots} slots (AckWait {} ms)",
        shared.settings.name,
        EXEC_CONSUMER,
        ack_wait.as_millis()
    );
    let free = Arc::new(Semaphore::new(slots));
    let mut tasks = tokio::task::JoinSet::new();
    'pull: while !*stop.borrow() && halted.borrow().is_none() {
        let n = free.available_permits();
        if n == 0 {
            tokio::select! {
                p = free.clone().acquire_owned() => drop(p),
                _ = stop.changed() => {}
                _ = halted.changed() => {}
            }
            continue;
        }
        // No idle heartbeats: async-nats 0.51's batch stalls after one
        // (it returns Pending without re-arming its waker) and then drops
        // the delivery that follows. A short expiry re-issues a pull lost
        // in a failover instead (the client gives up on it 5 s later).
        let batch = consumer.batch().max_messages(n).expires(PULL_EXPIRES);
        let mut msgs = tokio::select! {
            b = batch.messages() => match b {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("cordon worker: pull failed (retrying): {e}");
                    tokio::time::sleep(PAUSE).await;
                    continue;
                }
            },
            _ = stop.changed() => break 'pull,
            _ = halted.changed() => break 'pull,
        };
        loop {
            let next = tokio::select! {
                m = msgs.next() => m,
                _ = stop.changed() => break 'pull,
                _ = halted.changed() => break 'pull,
            };
            match next {
                None => break,
                Some(Ok(msg)) => {
                    let Ok(permit) = free.clone().try_acquire_owned() else {
                        // Never more than asked for; should it happen, the
                        // delivery comes back after AckWait.
                        continue;
                    };
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        handle(&shared, msg).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    eprintln!("cordon worker: pull interrupted (retrying): {e}");
                    break;
                }
            }
            while tasks.try_join_next().is_some() {}
        }
    }
    eprintln!("cordon worker: stopping; waiting for {} running executions", tasks.len());
    while tasks.join_next().await.is_some() {}
    cancels.abort();
    watcher.abort();
    drop(threads);
    let _ = client.flush().await;
    let _ = std::fs::remove_dir_all(&run_root);
    let c = &shared.counters;
    eprintln!(
        "cordon worker: stopped: {} runs, {} skipped (result existed), {} duplicate results refused, {} leases lost, {} NAKs",
        c.runs.load(Ordering::Relaxed),
        c.skipped.load(Ordering::Relaxed),
        c.duplicates.load(Ordering::Relaxed),
        c.lease_lost.load(Ordering::Relaxed),
        c.naks.load(Ordering::Relaxed)
    );
    // Read into a local: the borrow's guard must not outlive `halted`.
    let gone = *halted.borrow();
    match gone {
        Some(pid) => Err(QueueError::SpawnerGone { pid }),
        None => Ok(()),
    }
}

/// The prefix of a worker process's own folder under the run root.
const OWN_ROOT_PREFIX: &str = "cordon-worker-";

/// Removes the run folders of worker processes on this host that are gone
/// (a SIGKILLed worker cannot clean up; its runs' folders would collide
/// with a redelivery of the same request), then creates this process's own,
/// `RUN_ROOT/cordon-worker-PID`, where its runs create their folders.
fn own_run_root(root: &std::path::Path) -> std::io::Result<PathBuf> {
    // The default run root (cordon's state folder) may not exist yet.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(root)?;
    for e in std::fs::read_dir(root)?.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(OWN_ROOT_PREFIX)).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let mine = root.join(format!("{OWN_ROOT_PREFIX}{}", std::process::id()));
    // Made here, new: whatever has this name already (a folder an earlier
    // process with this pid left, or a link or folder someone else put
    // there first) is removed (a link itself, never what it points to)
    // and never used.
    match std::fs::symlink_metadata(&mine) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&mine)?,
        Ok(_) => std::fs::remove_file(&mine)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&mine)?;
    Ok(mine)
}

/// Makes (or finds) a tenant's run folder below the worker's own, and
/// checks that what is there is a folder of the worker's user, `0700`, and not a
/// symbolic link: one planted there (by a run whose grant covers the run
/// root) would send every run folder of that tenant elsewhere.
fn tenant_run_root(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(format!("cannot create the tenant's run folder {}: {e}", path.display()))
        }
        _ => {}
    }
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot look at the tenant's run folder {}: {e}", path.display()))?;
    // The worker made its own run root (cordon-worker-PID): its owner is this process's user.
    let owner = path.parent().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.uid());
    if !meta.file_type().is_dir() || Some(meta.uid()) != owner || meta.permissions().mode() & 0o777 != 0o700 {
        return Err(format!(
            "the tenant's run folder {} is not a 0700 folder of this user's (a symbolic link or another owner's?): remove it; keep the run root out of every run's grants",
            path.display()
        ));
    }
    Ok(())
}

fn slot_thread(rx: &Mutex<std::sync::mpsc::Receiver<Slot>>) {
    loop {
        let next = rx.lock().expect("slot queue lock").recv();
        let Ok(slot) = next else { break };
        let (result, after) = run_handler_answering(&slot.req);
        let _ = slot.reply.send(result);
        // The result is on its way to be recorded, stored and answered
        // while the sandbox is torn down (init's exit, cgroups, run
        // folder); this slot takes its next run only once that is done, so
        // no sandbox outlives its slot's turn.
        drop(after);
    }
}

/// Runs `work` while keeping `msg`'s delivery: a double-acked `+WPI` every
/// AckWait/3. Returns `None` when the acks failed for longer than the lease
/// allows (contact lost; `on_lost` ran), else the work's output.
async fn holding<T>(
    msg: &jetstream::Message,
    ack_wait: Duration,
    work: impl std::future::Future<Output = T>,
    on_lost: impl FnOnce(),
) -> Option<T> {
    let lease = ack_wait.saturating_sub(Duration::from_secs(2)).max(ack_wait / 2);
    let mut tick = tokio::time::interval(ack_wait / 3);
    tick.tick().await;
    let mut last_ok = Instant::now();
    let mut on_lost = Some(on_lost);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return if on_lost.is_none() { None } else { Some(out) },
            _ = tick.tick() => {
                let acked = tokio::time::timeout(ack_wait / 3, msg.double_ack_with(AckKind::Progress)).await;
                if matches!(acked, Ok(Ok(()))) {
                    last_ok = Instant::now();
                } else if last_ok.elapsed() >= lease {
                    if let Some(f) = on_lost.take() {
                        f();
                    }
                }
            }
        }
    }
}

async fn handle(s: &Shared, msg: jetstream::Message) {
    let attempt = msg.info().map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX)).unwrap_or(1);
    let req = match serde_json::from_slice::<WireRequest>(&msg.payload) {
        Ok(r) if super::is_token(&r.tenant) && super::is_token(&r.id) => r,
        Ok(r) => {
            eprintln!("cordon worker: refusing request with an invalid tenant or id: {:?}/{:?}", r.tenant, r.id);
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
        Err(e) => {
            eprintln!("cordon worker: refusing a malformed request on {}: {e}", msg.subject);
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    let key = result_key(&req.tenant, &req.id);
    // A result already there: someone finished it (this saves most
    // redelivered work). An error is retried in place: running without
    // knowing would risk a run after the result was recorded.
    let lookup = holding(&msg, s.ack_wait, retry(IN_PLACE, PAUSE, || s.results.get(key.clone())), || {}).await;
    match lookup {
        Some(Ok(Some(_))) => {
            s.counters.skipped.fetch_add(1, Ordering::Relaxed);
            ack(s, &msg).await;
            return;
        }
        Some(Ok(None)) => {}
        Some(Err(e)) => {
            eprintln!("cordon worker: result lookup of {key} failed for {} s, NAKing: {e}", IN_PLACE.as_secs());
            nak(s, &msg).await;
            return;
        }
        None => return,
    }
    let value = match s.catalog.resolve(&req.plugin).map_err(|e| e.to_string()).and_then(|p| matches(&req, p)) {
        Err(why) => unstarted(s, &req, attempt, ErrorCode::SetupFailed, &why),
        Ok(_) if now_ms() >= req.deadline_ms => {
            unstarted(s, &req, attempt, ErrorCode::Expired, "the deadline passed before a worker could start it")
        }
        Ok(plugin) => match execute(s, &msg, &req, &key, plugin, attempt).await {
            Ok(v) => v,
            // Another worker may hold it now; write nothing.
            Err(Unrun::LeaseLost) => return,
            // Back to the queue, for a worker that can run it.
            Err(Unrun::SpawnerGone(pid)) => {
                s.spawner_gone(pid);
                nak(s, &msg).await;
                return;
            }
        },
    };
    let written =
        holding(&msg, s.ack_wait, create_result(&s.results, s.signer.as_ref(), &key, &value, IN_PLACE), || {}).await;
    let stored = match written {
        Some(Ok(true)) => Stored::First,
        Some(Ok(false)) => {
            s.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            Stored::Refused
        }
        Some(Err(e)) => {
            eprintln!("cordon worker: result write of {key} failed for {} s, NAKing: {e}", IN_PLACE.as_secs());
            nak(s, &msg).await;
            return;
        }
        None => return,
    };
    notify_done(&s.client, s.signer.as_ref(), &req.tenant, &req.id, &value, stored).await;
    ack(s, &msg).await;
}

/// The plugin this worker has installed, when it is the one the gateway
/// verified.
fn matches(req: &WireRequest, p: Runnable) -> Result<Runnable, String> {
    if p.version != req.version {
        return Err(format!(
            "plugin `{}` is version {} on this worker, the gateway accepted {}; install the same version on every worker",
            req.plugin, p.version, req.version
        ));
    }
    if let (Some(want), Some(have)) = (&req.tree_hash, &p.tree_hash) {
        if want != have {
            return Err(format!(
                "plugin `{}` differs on this worker (tree {have}, the gateway verified {want}); install the same package on every worker",
                req.plugin
            ));
        }
    }
    if !p.handlers.contains(&req.handler) {
        return Err(format!("plugin `{}` has no handler `{}` on this worker", req.plugin, req.handler));
    }
    Ok(p)
}

fn subject_for(s: &Shared, req: &WireRequest, plugin: &Runnable, attempt: u32) -> Subject {
    Subject {
        worker: Some(s.settings.name.clone()),
        attempt: Some(attempt),
        ..provenance_of(&req.principal, &req.jti, req.traceparent.as_deref(), plugin)
    }
}

/// Records a request refused before it ran, in this worker's audit log.
fn unstarted(s: &Shared, req: &WireRequest, attempt: u32, code: ErrorCode, why: &str) -> serde_json::Value {
    let (result, mut value) = ended_without_run(&req.id, code, why, &s.settings.name, attempt);
    let subject = req.audit_subject(&s.settings.name, attempt);
    if let Err(e) = s.trail.record_unstarted(&subject, &req.id, None, result.audit_ending(""), &[]) {
        if let Some(w) = value.get_mut("warnings").and_then(|w| w.as_array_mut()) {
            w.push(format!("the audit record could not be written: {e}").into());
        }
    }
    value
}

/// Runs the request in a slot, holding the delivery; [`Unrun`] when there
/// is no result to store: the lease was lost (the sandbox was killed and
/// its result is dropped), or the sandbox spawner is gone (nothing ran, or
/// its set-up failed for that reason).
async fn execute(
    s: &Shared,
    msg: &jetstream::Message,
    req: &WireRequest,
    key: &str,
    plugin: Runnable,
    attempt: u32,
) -> Result<serde_json::Value, Unrun> {
    if let Some(pid) = spawner_gone() {
        return Err(Unrun::SpawnerGone(pid));
    }
    let cancel = match Cancel::new() {
        Ok(c) => c,
        Err(e) => {
            return Ok(unstarted(
                s,
                req,
                attempt,
                ErrorCode::SetupFailed,
                &format!("cannot create a cancel handle: {e}"),
            ))
        }
    };
    let mut hr = HandlerRequest::new(&plugin.dir, &req.handler);
    hr.input = serde_json::to_vec(&req.input).unwrap_or_else(|_| b"{}".to_vec());
    hr.mode = s.settings.mode;
    hr.host_env = s.env.clone();
    hr.request_id = Some(req.id.clone());
    hr.traceparent = req.traceparent.clone();
    hr.tenant = Some(req.tenant.clone());
    // The tenant's own data folder, never the plugin's shared one.
    hr.data_tenant = Some(req.tenant.clone());
    // Artifacts under tenants/<tenant>/ of the store: two tenants' runs
    // with one key have one id here.
    hr.store = ArtifactStore::for_service();
    hr.audit_subject = subject_for(s, req, &plugin, attempt);
    // A folder per tenant under this worker's own: a request's id is its
    // key, and two tenants' runs with one key must not meet in one run
    // folder (the later could not start, and its failure would be stored
    // as the key's result).
    let run_root = s.settings.run_root.join(&req.tenant);
    if let Err(why) = tenant_run_root(&run_root) {
        return Ok(unstarted(s, req, attempt, ErrorCode::SetupFailed, &why));
    }
    hr.run_root = run_root;
    hr.support = Some(s.support.clone());
    hr.audit = Some(s.trail.clone());
    hr.cancel = Some(cancel.clone());
    hr.signals = Signals::Leave;
    let (reply, done) = oneshot::channel();
    s.running.lock().expect("running lock").insert(key.to_owned(), cancel.clone());
    let t0 = Instant::now();
    if s.slots.send(Slot { req: Box::new(hr), reply }).is_err() {
        s.running.lock().expect("running lock").remove(key);
        return Ok(unstarted(s, req, attempt, ErrorCode::SetupFailed, "the worker is stopping"));
    }
    let until_deadline = Duration::from_millis(req.deadline_ms.saturating_sub(now_ms()));
    let run = {
        let cancel = cancel.clone();
        async move {
            let mut done = done;
            tokio::select! {
                r = &mut done => r,
                _ = tokio::time::sleep(until_deadline) => {
                    // The result and the audit record say EXPIRED.
                    cancel.expire();
                    done.await
                }
            }
        }
    };
    let lost = cancel.clone();
    let out = holding(msg, s.ack_wait, run, move || {
        lost.cancel();
    })
    .await;
    s.running.lock().expect("running lock").remove(key);
    s.counters.runs.fetch_add(1, Ordering::Relaxed);
    let Some(Ok(result)) = out else {
        if out.is_none() {
            s.counters.lease_lost.fetch_add(1, Ordering::Relaxed);
            eprintln!("cordon worker: lost contact with NATS while running {key}; its sandbox was killed");
        }
        return Err(Unrun::LeaseLost);
    };
    if result.error.as_ref().is_some_and(|e| e.code == ErrorCode::SetupFailed) {
        if let Some(pid) = spawner_gone() {
            return Err(Unrun::SpawnerGone(pid));
        }
    }
    let value = serde_json::to_value(&result).unwrap_or_default();
    let timing = serde_json::json!({
        "handler_ms": (t0.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        "sandbox_wall_ms": result.metrics.wall_ms,
    });
    Ok(stored_result(&req.id, &value, Some(timing), &s.settings.name, attempt))
}

async fn ack(s: &Shared, msg: &jetstream::Message) {
    // Retried in place: an ack lost in a failover would rerun the request
    // (its result lookup then skips it, but only after AckWait).
    let acked = retry(IN_PLACE, PAUSE, || msg.double_ack()).await;
    if let Err(e) = acked {
        eprintln!("cordon worker: ack failed for {} s: {e}; the request comes back and is skipped", IN_PLACE.as_secs());
        let _ = s;
    }
}

async fn nak(s: &Shared, msg: &jetstream::Message) {
    s.counters.naks.fetch_add(1, Ordering::Relaxed);
    let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await;
}

#[cfg(test)]
mod tests {
    use super::{own_run_root, tenant_run_root, OWN_ROOT_PREFIX};

    /// A name planted where the worker makes its own folder
    /// (`RUN_ROOT/cordon-worker-PID`, PIDs are guessable) is never used: a
    /// link there is removed, not followed (no chmod of its target, no run
    /// folders in it), and a folder there is replaced by a new 0700 one.
    #[test]
    fn the_workers_own_folder_is_made_new_never_a_planted_link_or_folder() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("cordon-worker-own-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let target = root.join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(target.join("kept"), "x").unwrap();
        let name = root.join(format!("{OWN_ROOT_PREFIX}{}", std::process::id()));
        std::os::unix::fs::symlink(&target, &name).unwrap();
        let mine = own_run_root(&root).unwrap();
        assert_eq!(mine, name);
        let meta = std::fs::symlink_metadata(&mine).unwrap();
        assert!(meta.is_dir() && meta.permissions().mode() & 0o777 == 0o700, "{meta:?}");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o755, "the target was changed");
        assert!(target.join("kept").exists());
        // A folder with content already there: replaced, empty.
        std::fs::write(mine.join("planted"), "x").unwrap();
        let again = own_run_root(&root).unwrap();
        assert_eq!(std::fs::read_dir(&again).unwrap().count(), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Review s13 (the reviewer's note on per-tenant worker run folders): a
    /// link planted at a tenant's run folder is never taken as the folder.
    #[test]
    fn a_tenants_run_folder_is_made_once_and_never_a_planted_link() {
        let root = std::env::temp_dir().join(format!("cordon-worker-test-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let fresh = root.join("acme");
        tenant_run_root(&fresh).unwrap();
        tenant_run_root(&fresh).unwrap();
        assert!(std::fs::symlink_metadata(&fresh).unwrap().is_dir());
        let elsewhere = root.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let planted = root.join("beta");
        std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
        let err = tenant_run_root(&planted).unwrap_err();
        assert!(err.contains("not a 0700 folder"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
