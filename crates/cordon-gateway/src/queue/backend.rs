//! The gateway's side of the queue: a [`crate::backend::Backend`] variant
//! that publishes executions to JetStream and reads their results from the
//! results bucket (SCALE-OUT.md §1, "How the gateway submits and waits").
//!
//! # Guarantees
//!
//! - **Submit** looks the id up first (an idempotent replay returns the
//!   stored result), then publishes with `Nats-Msg-Id` and waits for the
//!   stream's acknowledgement: an accepted execution is on the stream's
//!   quorum. A tenant at its queue cap gets [`SubmitError::TenantQueueFull`]
//!   (429); a publish that times out gets [`SubmitError::Unavailable`]
//!   (503), and the caller may retry with the same `Idempotency-Key`.
//! - **Waiting** listens to `cordon.done.>` (one subscription for the
//!   gateway) and reads the result from the bucket's leader; the waiter is
//!   registered before the lookup, so a result written in between is seen.
//! - **Deadline.** When an accepted request's deadline passes without a
//!   result, the gateway cancels it on the workers and records `EXPIRED`
//!   with a KV `create`: a worker that finished first keeps its result.
//! - **Cancel** reaches the worker running the request (`cordon.cancel.*`),
//!   which kills the sandbox and records `CANCELLED`; a request not running
//!   anywhere is recorded `CANCELLED` by the gateway, and never runs.
//! - The gateway's audit log records what it decided itself (`EXPIRED`,
//!   `CANCELLED` before a start); runs are recorded by the worker that ran
//!   them, `LOST` ones by the dead-letter handler.
//!
//! # Not guaranteed
//!
//! - `GET /v1/executions/{id}` of a request another gateway accepted says
//!   404 until its result exists (this gateway does not know it).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use cordon::audit::GroupWriter;
use cordon::ErrorCode;
use cordon_registry::minisign::SecretKey;
use cordon_registry::KeyId;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::signing::{Refusal, Trusted, RELOAD_EVERY};
use super::{connect, create_result, ended_without_run, ensure, notify_done, now_ms, result_key, retry, subject};
use super::{QueueError, QueueSettings, WireRequest};
use crate::backend::{subject_of, Job, Readiness, Status, SubmitError};
use crate::metrics::{Metrics, QueueGauges, Stored};

/// The name in results and records of what the gateway decided itself.
const GATEWAY: &str = "gateway";

/// How long after its result was stored a done notice of it is counted
/// (notices follow the store by milliseconds; this is room for a failover
/// and clock skew between the gateway and NATS).
const COUNT_FIRST_WITHIN: Duration = Duration::from_secs(60);

/// Notices waiting to be counted; past this, new ones are dropped (not
/// counted) until the counter catches up.
const COUNT_BACKLOG: usize = 4096;

/// Notices signed by a key not read yet, waiting for the next read of the
/// key folder; past this, such notices are dropped (not counted).
const DEFER_MAX: usize = 1024;

/// A done notice to count: its key (`tenant.id`), headers and body.
struct Notice {
    key: String,
    headers: Option<async_nats::HeaderMap>,
    body: bytes::Bytes,
}

/// Counts the results done notices announce, **after checking them**
/// (review finding: notices are not signed, and any worker credential may
/// publish on `cordon.done.>`):
///
/// - `first` (a result was stored): counted from the stored result as read
///   from the bucket's leader and verified ([`super::signing`]), not from
///   the headers, once per stored result, and only within
///   [`COUNT_FIRST_WITHIN`] of its store (so a replayed notice counts
///   nothing: it is either remembered or too late).
/// - `refused` (a duplicate): counted when its body is a result of the same
///   key, signed by a trusted key for the worker it names, that is not the
///   stored one (another worker or attempt) while the stored one verifies
///   and is younger than the deadline plus a minute; once per
///   (key, worker, attempt).
/// - Only configured tenants; an outcome that is not an error code counts
///   as `other`; an attempt at most the stream's deliveries.
///
/// A result or duplicate signed by a key the gateway has not read yet is
/// never waited for on the counting task (a flood of notices forged with
/// random key ids would hold it up to a second each): the notice is set
/// aside, a read of the key folder is started in the background, and it is
/// counted once its key is known; one whose key is still unknown after a
/// read that started after it was set aside is dropped.
///
/// Not guaranteed: a genuine notice dropped (backlog or set-aside list
/// full, or this gateway disconnected) is not counted; each gateway counts
/// what it saw. Drops are counted (`cordon_queue_notices_dropped_total`).
struct Counter {
    results: kv::Store,
    trusted: Option<Arc<Trusted>>,
    metrics: Metrics,
    tenants: HashSet<String>,
    max_deliver: u64,
    /// How long after the stored result a duplicate may still come.
    duplicate_within: Duration,
    /// What was counted, with when (forgotten after its window).
    counted: HashMap<String, std::time::Instant>,
    order: std::collections::VecDeque<(std::time::Instant, String)>,
    /// Notices signed by a key not read yet: the folder reads done when
    /// each was set aside, the key, the notice.
    deferred: std::collections::VecDeque<(u64, KeyId, Notice)>,
}

/// What counting a notice came to.
enum Counting {
    /// Counted, or not to be counted.
    Done,
    /// Signed by a key not read yet: count again after the next read.
    UnknownKey(KeyId),
}

/// A result checked against the keys read so far.
enum Check {
    Good,
    Bad,
    UnknownKey(KeyId),
}

impl Counter {
    async fn run(mut self, mut notices: tokio::sync::mpsc::Receiver<Notice>) {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = notices.recv() => {
                    let Some(n) = n else { break };
                    self.forget_old();
                    if let Counting::UnknownKey(id) = self.count(&n).await {
                        self.defer(n, id);
                    }
                }
                _ = tick.tick() => self.count_deferred().await,
            }
        }
    }

    /// Sets `n` aside until the key `id` is read, and asks for a read.
    fn defer(&mut self, n: Notice, id: KeyId) {
        let Some(trusted) = &self.trusted else { return };
        if self.deferred.len() >= DEFER_MAX {
            self.metrics.queue_notice_dropped("unknown_key");
            return;
        }
        trusted.reload_soon(id);
        self.deferred.push_back((trusted.reads(), id, n));
    }

    /// Counts the set-aside notices whose key is known now; drops those
    /// whose key is still unknown after a read that started after they were
    /// set aside; asks for a read for the others.
    async fn count_deferred(&mut self) {
        let Some(trusted) = self.trusted.clone() else { return };
        for (reads_then, id, n) in std::mem::take(&mut self.deferred) {
            let id = if trusted.knows(id) {
                self.forget_old();
                match self.count(&n).await {
                    Counting::Done => continue,
                    // Its stored result was known, its duplicate is not.
                    Counting::UnknownKey(other) => other,
                }
            } else {
                id
            };
            if trusted.reads() > reads_then && !trusted.knows(id) {
                self.metrics.queue_notice_dropped("unknown_key");
            } else {
                trusted.reload_soon(id);
                self.deferred.push_back((reads_then, id, n));
            }
        }
    }

    fn forget_old(&mut self) {
        let keep = COUNT_FIRST_WITHIN.max(self.duplicate_within);
        while let Some((at, _)) = self.order.front() {
            if at.elapsed() < keep {
                break;
            }
            let (_, key) = self.order.pop_front().expect("front");
            self.counted.remove(&key);
        }
    }

    /// The stored result of `key` and how long ago it was stored, if it
    /// is there (not checked: see [`Counter::check`]).
    async fn stored(&self, key: &str) -> Option<(serde_json::Value, Duration)> {
        let entry = retry(Duration::from_secs(2), Duration::from_millis(200), || self.results.entry(key.to_owned()))
            .await
            .ok()??;
        if entry.operation != kv::Operation::Put {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(&entry.value).ok()?;
        let age = async_nats::datetime::now() - entry.created;
        let age = Duration::from_millis(u64::try_from(age.whole_milliseconds()).unwrap_or(0));
        Some((value, age))
    }

    /// Checks `value`, stored under `key` or a duplicate of it, against the
    /// keys read so far (never waits for a read).
    fn check(&self, key: &str, value: &serde_json::Value) -> Check {
        match self.trusted.as_ref().map(|t| t.verify_known(key, value)) {
            None | Some(Ok(())) => Check::Good,
            Some(Err(Refusal::UnknownKey { key_id, .. })) => Check::UnknownKey(key_id),
            Some(Err(_)) => Check::Bad,
        }
    }

    fn remember(&mut self, what: String) -> bool {
        if self.counted.contains_key(&what) {
            return false;
        }
        let now = std::time::Instant::now();
        self.counted.insert(what.clone(), now);
        self.order.push_back((now, what));
        true
    }

    async fn count(&mut self, n: &Notice) -> Counting {
        let (Some(h), Some((tenant, _))) = (n.headers.as_ref(), n.key.split_once('.')) else { return Counting::Done };
        if !self.tenants.contains(tenant) {
            return Counting::Done;
        }
        let tenant = tenant.to_owned();
        let Some(stored_as) = h.get(super::STORED_HEADER).map(|v| v.as_str().to_owned()) else {
            return Counting::Done;
        };
        let Some((stored, age)) = self.stored(&n.key).await else { return Counting::Done };
        match self.check(&n.key, &stored) {
            Check::Good => {}
            Check::Bad => return Counting::Done,
            Check::UnknownKey(id) => return Counting::UnknownKey(id),
        }
        let max_deliver = self.max_deliver;
        let attempt = |v: &serde_json::Value| v["attempt"].as_u64().unwrap_or(0).min(max_deliver);
        if stored_as == "refused" {
            let Ok(dup) = serde_json::from_slice::<serde_json::Value>(&n.body) else { return Counting::Done };
            let other = (&dup["worker"], &dup["attempt"]) != (&stored["worker"], &stored["attempt"]);
            if !other || age > self.duplicate_within {
                return Counting::Done;
            }
            match self.check(&n.key, &dup) {
                Check::Good => {}
                Check::Bad => return Counting::Done,
                Check::UnknownKey(id) => return Counting::UnknownKey(id),
            }
            if self.remember(format!("{} {} {}", n.key, dup["worker"], attempt(&dup))) {
                self.metrics.queue_result(&tenant, "", 0, Stored::Refused);
            }
            return Counting::Done;
        }
        if age > COUNT_FIRST_WITHIN || !self.remember(n.key.clone()) {
            return Counting::Done;
        }
        let outcome = match super::outcome_of(&stored) {
            "ok" => "ok",
            o => cordon::ErrorCode::ALL.iter().map(|c| c.as_str()).find(|c| *c == o).unwrap_or("other"),
        };
        self.metrics.queue_result(&tenant, outcome, attempt(&stored), Stored::First);
        Counting::Done
    }
}

/// Why a stored result cannot be answered.
enum LookupError {
    /// The bucket did not answer (retry).
    Unavailable(String),
    /// There is one, but it is refused (see [`super::signing`]): why.
    Refused(String),
}

/// See the module docs.
pub struct NatsBackend {
    settings: QueueSettings,
    client: async_nats::Client,
    js: jetstream::Context,
    results: kv::Store,
    /// Signs what the gateway decides itself (`--result-key`).
    signer: Option<SecretKey>,
    /// The keys whose results are answered; `None`: unchecked
    /// (`--insecure-dev`).
    trusted: Option<Arc<Trusted>>,
    /// Keys whose refusal was logged already (logged once each).
    refused: Mutex<HashSet<String>>,
    audit: Arc<GroupWriter>,
    metrics: Metrics,
    /// Bucket key → "done" signal, for waiters on this gateway.
    waiters: Arc<Mutex<HashMap<String, watch::Sender<bool>>>>,
    /// Requests this gateway accepted and has not seen finish.
    pending: Arc<Mutex<HashMap<String, Job>>>,
    draining: AtomicBool,
    listener: tokio::task::JoinHandle<()>,
}

impl NatsBackend {
    /// Connects, creates the streams, consumer and bucket if needed, and
    /// starts listening for results.
    /// `tenants`: the configured tenants (the only ones counted in the
    /// queue metrics).
    pub async fn start(
        settings: QueueSettings,
        tenants: HashSet<String>,
        audit: Arc<GroupWriter>,
        metrics: Metrics,
    ) -> Result<NatsBackend, QueueError> {
        let signer = super::result_signer(&settings)?;
        let trusted = match &settings.result_keys {
            Some(folder) => Some(Arc::new(Trusted::load(folder, signer.as_ref().map(SecretKey::public_key), GATEWAY)?)),
            None => None,
        };
        let (client, js) = connect(&settings, super::Role::Gateway, "cordon-gateway").await?;
        ensure(&js, &settings).await?;
        let results = super::results(&js).await?;
        let waiters: Arc<Mutex<HashMap<String, watch::Sender<bool>>>> = Arc::default();
        let mut done = client
            .subscribe(subject::DONE_ALL)
            .await
            .map_err(|e| QueueError::Setup { what: "the result subscription".into(), detail: e.to_string() })?;
        let (notices, backlog) = tokio::sync::mpsc::channel(COUNT_BACKLOG);
        let counter = Counter {
            results: results.clone(),
            trusted: trusted.clone(),
            metrics: metrics.clone(),
            tenants,
            max_deliver: u64::try_from(settings.max_deliver).unwrap_or(0),
            duplicate_within: settings.deadline + Duration::from_secs(60),
            counted: HashMap::new(),
            order: std::collections::VecDeque::new(),
            deferred: std::collections::VecDeque::new(),
        };
        let counting = tokio::spawn(counter.run(backlog));
        let listener = {
            let waiters = waiters.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                while let Some(m) = done.next().await {
                    let key = m.subject.as_str().trim_start_matches("cordon.done.");
                    if let Some(w) = waiters.lock().expect("waiters lock").get(key) {
                        w.send_replace(true);
                    }
                    let notice = Notice { key: key.to_owned(), headers: m.headers, body: m.payload };
                    if notices.try_send(notice).is_err() {
                        metrics.queue_notice_dropped("backlog_full");
                    }
                }
                counting.abort();
            })
        };
        Ok(NatsBackend {
            settings,
            client,
            js,
            results,
            signer,
            trusted,
            refused: Mutex::default(),
            audit,
            metrics,
            waiters,
            pending: Arc::default(),
            draining: AtomicBool::new(false),
            listener,
        })
    }

    /// The stored result of `key`, read from the bucket's leader, retried in
    /// place through a failover for up to `limit`, and checked against the
    /// trusted result keys ([`super::signing`]).
    async fn lookup(&self, key: &str, limit: Duration) -> Result<Option<Arc<serde_json::Value>>, LookupError> {
        let got = retry(limit, Duration::from_millis(200), || self.results.get(key.to_owned())).await;
        let value: serde_json::Value = match got {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| self.refuse(key, format!("refusing the stored result of {key}: it is not JSON: {e}")))?,
            Ok(None) => return Ok(None),
            Err(e) => return Err(LookupError::Unavailable(format!("cannot read the result of {key}: {e}"))),
        };
        if let Some(trusted) = &self.trusted {
            trusted.verify(key, &value).await.map_err(|r| self.refuse(key, format!("{r}\n  hint: {}", r.hint())))?;
        }
        Ok(Some(Arc::new(value)))
    }

    /// Logs (once per key) why the stored result of `key` is refused.
    fn refuse(&self, key: &str, why: String) -> LookupError {
        if self.refused.lock().expect("refused lock").insert(key.to_owned()) {
            eprintln!("cordon serve: {why}");
        }
        LookupError::Refused(why)
    }

    fn watcher(&self, key: &str) -> watch::Receiver<bool> {
        let mut w = self.waiters.lock().expect("waiters lock");
        w.entry(key.to_owned()).or_insert_with(|| watch::channel(false).0).subscribe()
    }

    fn forget(&self, key: &str) {
        self.pending.lock().expect("pending lock").remove(key);
        let mut w = self.waiters.lock().expect("waiters lock");
        if w.get(key).is_some_and(|s| s.receiver_count() == 0) {
            w.remove(key);
        }
    }

    /// Publishes `job` (see the module docs). The acceptance runs to its
    /// end in a task of its own: a client that hangs up while the publish
    /// is acknowledged drops this future (hyper cancels the handler), which
    /// would leave a queued request with no deadline kept by the gateway
    /// (never `EXPIRED` while no worker takes it) and not counted queued.
    pub(crate) async fn submit(self: &Arc<Self>, mut job: Job) -> Result<String, SubmitError> {
        // The queue deduplicates by id across gateways (`Nats-Msg-Id`, the
        // results bucket, both per tenant), so a keyed request's id is
        // still its key here.
        if let Some(key) = job.idempotency_key.take() {
            job.id = key;
        }
        let id = job.id.clone();
        let this = self.clone();
        tokio::spawn(async move { this.accept(job).await })
            .await
            .unwrap_or_else(|e| Err(SubmitError::Unavailable(format!("the acceptance of the execution failed: {e}"))))
            .map(|()| id)
    }

    async fn accept(self: &Arc<Self>, job: Job) -> Result<(), SubmitError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(SubmitError::Draining);
        }
        let key = result_key(&job.tenant, &job.id);
        let _watch = self.watcher(&key);
        match self.lookup(&key, Duration::from_secs(2)).await {
            // A result (or a refused one, which waiting reports) exists.
            Ok(Some(_)) | Err(LookupError::Refused(_)) => return Ok(()),
            Ok(None) => {}
            Err(LookupError::Unavailable(e)) => return Err(SubmitError::Unavailable(e)),
        }
        let deadline_ms = now_ms() + u64::try_from(self.settings.deadline.as_millis()).unwrap_or(u64::MAX);
        let wire = WireRequest {
            id: job.id.clone(),
            tenant: job.tenant.clone(),
            principal: job.principal.clone(),
            jti: job.jti.clone(),
            traceparent: job.traceparent.clone(),
            plugin: job.plugin.id.clone(),
            version: job.plugin.version.clone(),
            tree_hash: job.plugin.tree_hash.clone(),
            handler: job.handler.clone(),
            input: serde_json::from_slice(&job.input).unwrap_or_else(|_| serde_json::json!({})),
            deadline_ms,
        };
        let body = serde_json::to_vec(&wire).map_err(|e| SubmitError::Unavailable(e.to_string()))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", key.as_str());
        headers.insert(super::TENANT_HEADER, job.tenant.as_str());
        headers.insert(super::DEADLINE_HEADER, deadline_ms.to_string().as_str());
        let ack = async {
            let fut = self.js.publish_with_headers(subject::exec(&job.tenant), headers, body.into()).await?;
            fut.await
        };
        match ack.await {
            Ok(_) => {}
            Err(e) => {
                let text = e.to_string();
                // err 10077: maximum messages per subject exceeded.
                if text.contains("10077") || text.contains("maximum messages per subject") {
                    return Err(SubmitError::TenantQueueFull {
                        tenant: job.tenant.clone(),
                        cap: self.settings.tenant_cap,
                    });
                }
                return Err(SubmitError::Unavailable(format!("the queue did not accept the execution: {text}")));
            }
        }
        self.pending.lock().expect("pending lock").insert(key.clone(), job.clone());
        self.metrics.queued.inc();
        let this = self.clone();
        tokio::spawn(async move { this.enforce_deadline(job, deadline_ms).await });
        Ok(())
    }

    /// Waits for `job`'s deadline; if no result exists by then, cancels it
    /// on the workers and records `EXPIRED` (first writer wins).
    async fn enforce_deadline(self: Arc<Self>, job: Job, deadline_ms: u64) {
        let key = result_key(&job.tenant, &job.id);
        let mut rx = self.watcher(&key);
        let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        let finished = tokio::time::timeout(left, rx.wait_for(|d| *d)).await.is_ok();
        drop(rx);
        let stored =
            matches!(self.lookup(&key, Duration::from_secs(10)).await, Ok(Some(_)) | Err(LookupError::Refused(_)));
        if !finished && !stored {
            let reason = bytes::Bytes::from_static(super::CANCEL_EXPIRED);
            let _ = self.client.publish(subject::cancel(&job.tenant, &job.id), reason).await;
            self.record_unstarted(&job, ErrorCode::Expired, "the deadline passed before a worker finished it").await;
        }
        self.metrics.queued.dec();
        self.forget(&key);
    }

    /// Records `job` as ended by the gateway with `code`, if no result
    /// exists yet (KV create); the gateway's audit log gets the record only
    /// when its result is the one that counts.
    async fn record_unstarted(&self, job: &Job, code: ErrorCode, message: &str) {
        let key = result_key(&job.tenant, &job.id);
        let (result, value) = ended_without_run(&job.id, code, message, GATEWAY, 0);
        let created = create_result(&self.results, self.signer.as_ref(), &key, &value, Duration::from_secs(10)).await;
        match created {
            Ok(true) => {
                let subject =
                    cordon::audit::Subject { worker: Some(GATEWAY.into()), attempt: Some(0), ..subject_of(job) };
                let recorded = self.audit.record_unstarted(&subject, &job.id, None, result.audit_ending(""), &[]);
                if let Err(e) = recorded.await {
                    eprintln!("cordon serve: cannot record {} as {}: {e}", job.id, code.as_str());
                }
                notify_done(&self.client, self.signer.as_ref(), &job.tenant, &job.id, &value, Stored::First).await;
            }
            Ok(false) => {
                notify_done(&self.client, self.signer.as_ref(), &job.tenant, &job.id, &value, Stored::Refused).await
            }
            Err(e) => eprintln!("cordon serve: cannot record {} as {}: {e}", job.id, code.as_str()),
        }
    }

    pub(crate) async fn status(&self, tenant: &str, id: &str) -> Option<Status> {
        let key = result_key(tenant, id);
        match self.lookup(&key, Duration::from_secs(2)).await {
            Ok(Some(v)) => Some(Status::Done(v)),
            Err(LookupError::Refused(why)) => Some(Status::Refused(why)),
            _ if self.pending.lock().expect("pending lock").contains_key(&key) => Some(Status::Queued),
            _ => None,
        }
    }

    pub(crate) async fn wait(&self, tenant: &str, id: &str, timeout: Duration) -> Option<Status> {
        let key = result_key(tenant, id);
        let mut rx = self.watcher(&key);
        match self.lookup(&key, Duration::from_secs(2)).await {
            Ok(Some(v)) => return Some(Status::Done(v)),
            Err(LookupError::Refused(why)) => return Some(Status::Refused(why)),
            _ => {}
        }
        let _ = tokio::time::timeout(timeout, rx.wait_for(|d| *d)).await;
        drop(rx);
        self.status(tenant, id).await
    }

    /// Cancels `id`: the worker running it kills the sandbox and records
    /// `CANCELLED`; if no worker answers within 2 s, it was not running and
    /// the gateway records it.
    pub(crate) async fn cancel(&self, tenant: &str, id: &str) -> Option<Status> {
        let key = result_key(tenant, id);
        let known = self.pending.lock().expect("pending lock").get(&key).cloned();
        match self.lookup(&key, Duration::from_secs(2)).await {
            Ok(Some(v)) => return Some(Status::Done(v)),
            Err(LookupError::Refused(why)) => return Some(Status::Refused(why)),
            _ => {}
        }
        let job = known?;
        let _ = self.client.publish(subject::cancel(tenant, id), bytes::Bytes::new()).await;
        if let Some(Status::Done(v)) = self.wait(tenant, id, Duration::from_secs(2)).await {
            return Some(Status::Done(v));
        }
        self.record_unstarted(&job, ErrorCode::Cancelled, "cancelled before it started").await;
        self.status(tenant, id).await
    }

    /// Reads the queue's gauges from NATS into the metrics (at a scrape);
    /// on an error (NATS unreachable within 2 s) they keep their last values.
    pub(crate) async fn refresh_metrics(&self) {
        let read = async {
            let stream = self.js.get_stream(super::EXEC_STREAM).await.map_err(|e| e.to_string())?;
            let mut subjects = stream.info_with_subjects("cordon.exec.>").await.map_err(|e| e.to_string())?;
            let mut g = QueueGauges::default();
            while let Some((subject, n)) = subjects.next().await.transpose().map_err(|e| e.to_string())? {
                // cordon.exec.<class>.<tenant>
                if let Some(tenant) = subject.rsplit('.').next() {
                    g.depth.push((tenant.to_owned(), u64::try_from(n).unwrap_or(0)));
                }
            }
            let consumer: jetstream::consumer::PullConsumer =
                stream.get_consumer(super::EXEC_CONSUMER).await.map_err(|e| e.to_string())?;
            let info = consumer.get_info().await.map_err(|e| e.to_string())?;
            g.pending = info.num_pending;
            g.in_flight = u64::try_from(info.num_ack_pending).unwrap_or(0);
            g.waiting_pulls = u64::try_from(info.num_waiting).unwrap_or(0);
            Ok::<_, String>(g)
        };
        match tokio::time::timeout(Duration::from_secs(2), read).await {
            Ok(Ok(g)) => self.metrics.set_queue(&g),
            Ok(Err(e)) => eprintln!("cordon serve: cannot read the queue's metrics: {e}"),
            Err(_) => eprintln!("cordon serve: cannot read the queue's metrics: NATS did not answer within 2 s"),
        }
    }

    pub(crate) fn readiness(&self) -> Readiness {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let draining = self.draining.load(Ordering::SeqCst);
        let reason = if draining {
            Some("draining: the service is shutting down".to_owned())
        } else if !connected {
            Some(format!("not connected to NATS ({})", self.settings.servers.join(",")))
        } else {
            None
        };
        Readiness {
            warm: reason.is_none(),
            workers: 0,
            busy: 0,
            queued: self.pending.lock().expect("pending lock").len(),
            reason,
        }
    }

    /// Stops accepting. Accepted executions stay on the queue: workers run
    /// them whether or not this gateway is there.
    pub(crate) async fn drain(&self, _grace: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let _ = self.client.flush().await;
        self.listener.abort();
    }
}
