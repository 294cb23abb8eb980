//! Scale-out: executions on a NATS JetStream work queue (`cordon serve
//! --queue`, `cordon worker --queue`). The design and the measurements
//! behind every setting are `SCALE-OUT.md`; this module holds what the
//! gateway, the workers and the dead-letter handler share: the connection
//! (with the failover tuning), the streams, consumer and results bucket,
//! the subjects and the message formats.
//!
//! - [`backend::NatsBackend`]: the gateway side, a [`crate::backend::Backend`]
//!   variant: publish, wait for the result, cancel, expire.
//! - [`worker`]: `cordon worker`, which pulls only as many requests as it has
//!   free sandbox slots and runs each through the library.
//! - [`dead_letters`]: the handler of requests that used up their deliveries.
//!
//! # Guarantees
//!
//! - **At-least-once execution, exactly one recorded result per request
//!   id.** A result is written with a KV `create` (create-if-absent) into
//!   the bucket [`RESULTS_BUCKET`]: the first writer wins, and every later
//!   writer (a re-run after a worker died, a cancellation, an expiry, the
//!   dead-letter handler) is refused and keeps the first. A plugin can run
//!   twice when its worker dies after starting it: it sees the same request
//!   id both times.
//! - **A request is published once per id.** `Nats-Msg-Id` is the tenant
//!   and id, so a retried submit within the stream's two-minute duplicate
//!   window is stored once; after it, the gateway finds the stored result.
//! - **Failover tuning** (SCALE-OUT.md condition 3): client PING every 5 s,
//!   JetStream requests time out after 2 s, pull requests expire after 2 s
//!   (no idle heartbeats: see [`worker`]), and the results bucket has `allow_direct: false`,
//!   so every read of a result goes to the bucket's leader.
//!
//! # Not guaranteed
//!
//! - Ordering between tenants beyond FIFO within the one consumer.
//! - A result after the bucket's TTL (24 h).

pub mod backend;
pub mod dead_letters;
pub mod signing;
pub mod worker;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, kv, stream};
use cordon_registry::minisign::SecretKey;
use serde::{Deserialize, Serialize};

/// The work queue stream.
pub const EXEC_STREAM: &str = "CORDON_EXEC";
/// The durable pull consumer of interactive requests.
pub const EXEC_CONSUMER: &str = "exec-p0";
/// The results bucket (stream `KV_cordon_results`).
pub const RESULTS_BUCKET: &str = "cordon_results";
/// The stream capturing max-deliveries advisories.
pub const ADVISORY_STREAM: &str = "CORDON_ADV";
/// The durable consumer of [`ADVISORY_STREAM`].
pub const ADVISORY_CONSUMER: &str = "dead-letters";
/// The dead-letter stream: a copy of each request given up on.
pub const DLQ_STREAM: &str = "CORDON_DLQ";

/// How long one pull request waits for messages before it is re-issued.
pub const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// The body of a `cordon.cancel.*` message sent because the request's
/// deadline passed (the run is recorded `EXPIRED`); an empty body is the
/// caller's cancellation (`CANCELLED`).
pub const CANCEL_EXPIRED: &[u8] = b"expired";

/// Header on a done notification: the outcome of the result it announces
/// (`ok` or the error code).
pub const OUTCOME_HEADER: &str = "Cordon-Outcome";
/// Header on a done notification: the attempt of the result it announces.
pub const ATTEMPT_HEADER: &str = "Cordon-Attempt";
/// Header on a done notification: `first` when its result was stored,
/// `refused` when another result was stored first (a duplicate).
pub const STORED_HEADER: &str = "Cordon-Stored";

/// Header: the request's tenant.
pub const TENANT_HEADER: &str = "Cordon-Tenant";
/// Header: the deadline, unix milliseconds.
pub const DEADLINE_HEADER: &str = "Cordon-Deadline";

/// Subjects.
pub mod subject {
    /// Where a request of `tenant` is published (class `p0`, interactive).
    pub fn exec(tenant: &str) -> String {
        format!("cordon.exec.p0.{tenant}")
    }
    /// "The result of `id` is in the bucket" (core NATS).
    pub fn done(tenant: &str, id: &str) -> String {
        format!("cordon.done.{tenant}.{id}")
    }
    /// Every done notification.
    pub const DONE_ALL: &str = "cordon.done.>";
    /// "Kill the sandbox running `id`" (core NATS).
    pub fn cancel(tenant: &str, id: &str) -> String {
        format!("cordon.cancel.{tenant}.{id}")
    }
    /// Every cancellation.
    pub const CANCEL_ALL: &str = "cordon.cancel.>";
    /// The dead-letter copy of a request of `tenant`.
    pub fn dlq(tenant: &str) -> String {
        format!("cordon.dlq.{tenant}")
    }
    /// The max-deliveries advisories of the exec consumer.
    pub const MAX_DELIVERIES: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.CORDON_EXEC.*";
}

/// The bucket key of `id` of `tenant`: tenants never share a key.
pub fn result_key(tenant: &str, id: &str) -> String {
    format!("{tenant}.{id}")
}

/// Whether `s` can be one token of a subject and a KV key part: 1 to 128
/// of `A-Z a-z 0-9 _ -`. Tenant names and request ids must be.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An execution request as it travels on the queue (the message body).
/// Callback URLs and secrets never travel: workers see only what a run
/// needs and what its audit record names.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireRequest {
    /// The request id (the caller's `Idempotency-Key`, or a new UUIDv7).
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// Who asked (token `sub`).
    pub principal: String,
    /// The access token's `jti`.
    pub jti: String,
    /// The caller's `traceparent`.
    #[serde(default)]
    pub traceparent: Option<String>,
    /// `@scope/name`.
    pub plugin: String,
    /// The version the gateway verified; a worker with another refuses.
    pub version: String,
    /// The tree hash the gateway verified (registry plugins); a worker whose
    /// installation differs refuses.
    #[serde(default)]
    pub tree_hash: Option<String>,
    /// The handler.
    pub handler: String,
    /// The input JSON.
    pub input: serde_json::Value,
    /// Past this (unix ms) the request is not started, and a run still going
    /// is killed; the result is `EXPIRED`.
    pub deadline_ms: u64,
}

impl WireRequest {
    /// The audit subject of this request as handled by `worker` at
    /// `attempt` (without the package provenance, which the worker adds
    /// when it runs the plugin).
    pub fn audit_subject(&self, worker: &str, attempt: u32) -> cordon::audit::Subject {
        cordon::audit::Subject {
            trace_id: cordon::audit::TraceParent::from_caller_or_new(self.traceparent.as_deref()).trace_id_hex(),
            tenant: Some(self.tenant.clone()),
            plugin: Some(self.plugin.clone()),
            plugin_version: Some(self.version.clone()),
            handler: Some(self.handler.clone()),
            principal: Some(self.principal.clone()),
            token_jti: Some(self.jti.clone()),
            traceparent: self.traceparent.clone(),
            worker: Some(worker.to_owned()),
            attempt: Some(attempt),
            ..cordon::audit::Subject::default()
        }
    }
}

/// A result for request `id` that ended without a run (`code`, `message`),
/// and its stored form naming `worker` and `attempt`.
pub fn ended_without_run(
    id: &str,
    code: cordon::ErrorCode,
    message: &str,
    worker: &str,
    attempt: u32,
) -> (cordon::ExecutionResult, serde_json::Value) {
    let mut result = cordon::ExecutionResult::unstarted(id, cordon::Mode::Container, message.to_owned());
    if let Some(e) = &mut result.error {
        e.code = code;
    }
    let value = stored_result(id, &serde_json::to_value(&result).unwrap_or_default(), None, worker, attempt);
    (result, value)
}

/// The stored (and answered) form of a result: the ExecutionResult with
/// `id`, the timing breakdown if any, `worker` and `attempt`.
pub fn stored_result(
    id: &str,
    result: &serde_json::Value,
    timing: Option<serde_json::Value>,
    worker: &str,
    attempt: u32,
) -> serde_json::Value {
    let mut v = crate::backend::response_value(id, result, timing);
    if let Some(o) = v.as_object_mut() {
        o.insert("worker".into(), worker.into());
        o.insert("attempt".into(), attempt.into());
    }
    v
}

/// `ok`, or the error code of a stored result.
pub fn outcome_of(value: &serde_json::Value) -> &str {
    if value["ok"] == true {
        "ok"
    } else {
        value["error"]["code"].as_str().unwrap_or("error")
    }
}

/// Announces on `cordon.done.<tenant>.<id>` that a result of it was
/// written (`value`, stored or refused): it wakes the gateways' waiters
/// and feeds their queue metrics. The headers say what it announces; a
/// refused result (a duplicate) travels in the body, signed by `signer`,
/// since it is stored nowhere else for the gateways to check.
pub async fn notify_done(
    client: &async_nats::Client,
    signer: Option<&SecretKey>,
    tenant: &str,
    id: &str,
    value: &serde_json::Value,
    stored: crate::metrics::Stored,
) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(OUTCOME_HEADER, outcome_of(value));
    headers.insert(ATTEMPT_HEADER, value["attempt"].as_u64().unwrap_or(0).to_string().as_str());
    let (stored, body) = match stored {
        crate::metrics::Stored::First => ("first", bytes::Bytes::new()),
        crate::metrics::Stored::Refused => {
            let mut value = value.clone();
            if let Some(signer) = signer {
                signing::sign(signer, &result_key(tenant, id), &mut value);
            }
            ("refused", serde_json::to_vec(&value).unwrap_or_default().into())
        }
    };
    headers.insert(STORED_HEADER, stored);
    let _ = client.publish_with_headers(subject::done(tenant, id), headers, body).await;
}

/// Writes `value` as the result of `key` unless one exists (first writer
/// wins), signed by `signer` when there is one ([`signing`]), retrying
/// infrastructure errors in place for up to `limit`: `Ok(true)` written,
/// `Ok(false)` another result was first.
pub async fn create_result(
    results: &kv::Store,
    signer: Option<&SecretKey>,
    key: &str,
    value: &serde_json::Value,
    limit: Duration,
) -> Result<bool, kv::CreateError> {
    let mut value = value.clone();
    if let Some(signer) = signer {
        signing::sign(signer, key, &mut value);
    }
    let bytes: bytes::Bytes = serde_json::to_vec(&value).unwrap_or_default().into();
    retry(limit, Duration::from_millis(250), || async {
        match results.create(key, bytes.clone()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await
}

/// How to reach NATS and how the queue is set up. The defaults are
/// SCALE-OUT.md's production column.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// `host:port` of each server.
    pub servers: Vec<String>,
    /// A NATS credentials file (`.creds`: user JWT and nkey seed) for this
    /// role, if the servers require one.
    pub creds: Option<PathBuf>,
    /// A user and the file holding its password, for servers whose
    /// configuration lists users (`authorization { users = [...] }`).
    pub user: Option<(String, PathBuf)>,
    /// The secret key this role signs the results it writes with
    /// (`--result-key`, made by `cordon key gen`).
    pub result_key: Option<PathBuf>,
    /// The gateway: the folder of public keys whose results it accepts
    /// (`[queue] result_keys`); `None` accepts results unchecked
    /// (`--insecure-dev` only).
    pub result_keys: Option<PathBuf>,
    /// A worker that stops acknowledging for this long loses its delivery.
    pub ack_wait: Duration,
    /// Deliveries before a request is given up on (`LOST`).
    pub max_deliver: i64,
    /// Requests one tenant may have in the queue (queued or running);
    /// beyond it, 429.
    pub tenant_cap: i64,
    /// Stream and bucket replicas (1, or 3 on a cluster).
    pub replicas: usize,
    /// How long an accepted request may take, from acceptance to result.
    pub deadline: Duration,
}

impl QueueSettings {
    /// Settings for `servers` with the defaults: AckWait 10 s, 3 deliveries,
    /// 1000 per tenant, one replica per listed server up to 3, 5 min deadline.
    pub fn new(servers: Vec<String>) -> QueueSettings {
        let replicas = servers.len().clamp(1, 3);
        QueueSettings {
            servers,
            creds: None,
            user: None,
            result_key: None,
            result_keys: None,
            ack_wait: Duration::from_secs(10),
            max_deliver: 3,
            tenant_cap: 1000,
            replicas,
            deadline: Duration::from_secs(300),
        }
    }
}

/// The queue cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// `--queue` is not `nats://HOST:PORT[,HOST:PORT…]`.
    #[error("invalid --queue `{given}`: {why}")]
    Url {
        /// What was given.
        given: String,
        /// What is wrong.
        why: String,
    },
    /// No server answered.
    #[error("cannot connect to NATS at {servers}: {source}")]
    Connect {
        /// The servers tried.
        servers: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
    /// The credentials file cannot be read.
    #[error("cannot read the NATS credentials {}: {source}", path.display())]
    Creds {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The role's `--result-key` cannot be used.
    #[error("cannot use the result signing key {}: {detail}", path.display())]
    ResultKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The gateway's trusted result keys cannot be used.
    #[error(transparent)]
    ResultKeys(#[from] signing::TrustedError),
    /// A stream, consumer or the bucket cannot be created or opened.
    #[error("cannot set up {what} on NATS JetStream: {detail}")]
    Setup {
        /// Which object.
        what: String,
        /// The server's or client's error.
        detail: String,
    },
    /// The process that clones this worker's sandboxes is gone: the worker
    /// stopped taking deliveries (those it held go back to the queue).
    #[error("the sandbox spawner of this worker (pid {pid}) is gone: no sandbox can be started here, so the worker stopped taking deliveries and handed back those it held")]
    SpawnerGone {
        /// The spawner's pid.
        pid: i32,
    },
}

impl QueueError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            QueueError::Url { .. } => "pass --queue nats://HOST:PORT, or several separated by commas".into(),
            QueueError::Connect { .. } => {
                "start nats-server with JetStream (`nats-server -js`), or check the addresses and the credentials".into()
            }
            QueueError::Creds { .. } => {
                "pass --queue-creds with a readable .creds file, or --queue-password-file with a readable file holding this role's password".into()
            }
            QueueError::ResultKey { .. } => {
                "pass --result-key with a secret key written by `cordon key gen --out FILE` (no password), and put FILE.pub in the gateways' [queue] result_keys folder".into()
            }
            QueueError::ResultKeys(e) => e.hint(),
            QueueError::Setup { .. } => {
                "JetStream must be enabled on the servers (`-js`), and this role's credentials must allow the JetStream API".into()
            }
            QueueError::SpawnerGone { .. } => {
                "restart the worker (under systemd, `Restart=on-failure` does it); its requests are run by other workers meanwhile".into()
            }
        }
    }
}

/// Parses `nats://HOST:PORT[,HOST:PORT…]` (each later entry may repeat the
/// `nats://` scheme) into `host:port` addresses.
pub fn parse_servers(given: &str) -> Result<Vec<String>, QueueError> {
    let bad = |why: String| QueueError::Url { given: given.to_owned(), why };
    let Some(rest) = given.strip_prefix("nats://") else {
        return Err(bad("it must start with nats://".into()));
    };
    let mut out = vec![];
    for part in rest.split(',') {
        let hp = part.trim().trim_start_matches("nats://");
        let Some((host, port)) = hp.rsplit_once(':') else {
            return Err(bad(format!("`{hp}` has no :PORT")));
        };
        if host.is_empty() {
            return Err(bad(format!("`{hp}` has no host")));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad(format!("`{port}` in `{hp}` is not a port (1-65535)")));
        }
        out.push(hp.to_owned());
    }
    Ok(out)
}

/// Which of the three roles a connection is: each has its own reply
/// subjects (inbox prefix), so per-role permissions can keep one role from
/// reading another's replies (README, "Per-role credentials").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `cordon serve --queue`.
    Gateway,
    /// `cordon worker`.
    Worker,
    /// `cordon dead-letters`.
    DeadLetters,
}

impl Role {
    /// The prefix of this role's reply subjects.
    pub fn inbox_prefix(self) -> &'static str {
        match self {
            Role::Gateway => "_INBOX_gateway",
            Role::Worker => "_INBOX_worker",
            Role::DeadLetters => "_INBOX_dead_letters",
        }
    }
}

/// Connects with SCALE-OUT.md's client tuning (PING every 5 s, 2 s
/// requests), reconnecting for ever, with `role`'s reply subjects; `name`
/// shows in the server's connection list.
pub async fn connect(
    settings: &QueueSettings,
    role: Role,
    name: &str,
) -> Result<(async_nats::Client, jetstream::Context), QueueError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .custom_inbox_prefix(role.inbox_prefix())
        .ping_interval(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(2)))
        .connection_timeout(Duration::from_secs(2));
    // The role's credentials: out of every run of this process.
    for path in settings.creds.iter().chain(settings.user.as_ref().map(|(_, p)| p)) {
        cordon::state::protect_from_now_on(cordon::Protected::file(path, "this role's queue credentials"));
    }
    if let Some(path) = &settings.creds {
        opts = opts.credentials_file(path).await.map_err(|source| QueueError::Creds { path: path.clone(), source })?;
    }
    if let Some((user, path)) = &settings.user {
        let password =
            std::fs::read_to_string(path).map_err(|source| QueueError::Creds { path: path.clone(), source })?;
        opts = opts.user_and_password(user.clone(), password.trim_end_matches(['\n', '\r']).to_owned());
    }
    let addrs: Vec<async_nats::ServerAddr> = settings
        .servers
        .iter()
        .map(|s| {
            format!("nats://{s}")
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| QueueError::Url { given: s.clone(), why: e.to_string() })
        })
        .collect::<Result<_, _>>()?;
    let client = opts
        .connect(addrs)
        .await
        .map_err(|source| QueueError::Connect { servers: settings.servers.join(","), source })?;
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(2)).build(client.clone());
    Ok((client, js))
}

/// Loads the role's `--result-key`, if any.
pub fn result_signer(settings: &QueueSettings) -> Result<Option<SecretKey>, QueueError> {
    let Some(path) = &settings.result_key else { return Ok(None) };
    cordon::state::protect_from_now_on(cordon::Protected::file(path, "this role's result signing key (--result-key)"));
    SecretKey::load(path).map(Some).map_err(|e| QueueError::ResultKey { path: path.clone(), detail: e.to_string() })
}

fn setup_err(what: &str) -> impl Fn(String) -> QueueError + '_ {
    move |detail| QueueError::Setup { what: what.to_owned(), detail }
}

/// Creates (or checks) every stream, the exec consumer and the results
/// bucket, as SCALE-OUT.md §1 configures them. Idempotent: the gateway
/// calls it on every start.
pub async fn ensure(js: &jetstream::Context, s: &QueueSettings) -> Result<(), QueueError> {
    let day = Duration::from_secs(24 * 3600);
    let exec = stream::Config {
        name: EXEC_STREAM.into(),
        subjects: vec!["cordon.exec.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: s.replicas,
        duplicate_window: Duration::from_secs(120),
        discard: stream::DiscardPolicy::New,
        max_messages_per_subject: s.tenant_cap,
        discard_new_per_subject: true,
        max_message_size: 512 * 1024,
        max_age: Duration::from_secs(3600),
        ..Default::default()
    };
    create_or_update(js, exec).await?;
    let results = stream::Config {
        name: format!("KV_{RESULTS_BUCKET}"),
        subjects: vec![format!("$KV.{RESULTS_BUCKET}.>")],
        storage: stream::StorageType::File,
        num_replicas: s.replicas,
        // One result per key, refused at the server: a second write is
        // refused even without the expected-sequence header a KV create
        // sends (a credential publishing to the subject directly cannot
        // replace a stored result), and there is no rollup (purge) either.
        max_messages_per_subject: 1,
        discard_new_per_subject: true,
        allow_rollup: false,
        deny_delete: true,
        deny_purge: true,
        discard: stream::DiscardPolicy::New,
        // Reads go to the leader (SCALE-OUT.md condition 3).
        allow_direct: false,
        max_age: day,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    create_or_update(js, results).await?;
    let adv = stream::Config {
        name: ADVISORY_STREAM.into(),
        subjects: vec![subject::MAX_DELIVERIES.into()],
        storage: stream::StorageType::File,
        num_replicas: s.replicas,
        max_age: 7 * day,
        ..Default::default()
    };
    create_or_update(js, adv).await?;
    let dlq = stream::Config {
        name: DLQ_STREAM.into(),
        subjects: vec!["cordon.dlq.>".into()],
        storage: stream::StorageType::File,
        num_replicas: s.replicas,
        max_age: 7 * day,
        ..Default::default()
    };
    create_or_update(js, dlq).await?;
    let consumer = consumer::pull::Config {
        durable_name: Some(EXEC_CONSUMER.into()),
        filter_subject: "cordon.exec.p0.>".into(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: s.ack_wait,
        max_deliver: s.max_deliver,
        max_ack_pending: 10_000,
        max_waiting: 512,
        ..Default::default()
    };
    js.create_consumer_on_stream(consumer, EXEC_STREAM)
        .await
        .map_err(|e| setup_err(&format!("consumer {EXEC_CONSUMER}"))(e.to_string()))?;
    let advisories = consumer::pull::Config {
        durable_name: Some(ADVISORY_CONSUMER.into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        ..Default::default()
    };
    js.create_consumer_on_stream(advisories, ADVISORY_STREAM)
        .await
        .map_err(|e| setup_err(&format!("consumer {ADVISORY_CONSUMER}"))(e.to_string()))?;
    Ok(())
}

async fn create_or_update(js: &jetstream::Context, config: stream::Config) -> Result<(), QueueError> {
    let name = format!("stream {}", config.name);
    match js.get_stream(&config.name).await {
        Ok(_) => js.update_stream(&config).await.map(|_| ()).map_err(|e| setup_err(&name)(e.to_string())),
        Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(_)) => {
            js.create_stream(config).await.map(|_| ()).map_err(|e| setup_err(&name)(e.to_string()))
        }
        Err(e) => Err(setup_err(&name)(e.to_string())),
    }
}

/// Opens the results bucket (created by [`ensure`]; async-nats's own
/// bucket creation cannot read nats-server 2.9's account info).
pub async fn results(js: &jetstream::Context) -> Result<kv::Store, QueueError> {
    js.get_key_value(RESULTS_BUCKET).await.map_err(|e| setup_err(&format!("bucket {RESULTS_BUCKET}"))(e.to_string()))
}

/// Retries `op` in place (never giving up the delivery) until it succeeds
/// or `limit` passes, pausing `pause` between tries; the last error then.
pub async fn retry<T, E, F, Fut>(limit: Duration, pause: Duration, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let until = tokio::time::Instant::now() + limit;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + pause >= until => return Err(e),
            Err(_) => tokio::time::sleep(pause).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_one_scheme_or_several() {
        assert_eq!(parse_servers("nats://127.0.0.1:4222").unwrap(), vec!["127.0.0.1:4222"]);
        assert_eq!(
            parse_servers("nats://a:1,nats://b:2, c:3").unwrap(),
            vec!["a:1".to_owned(), "b:2".to_owned(), "c:3".to_owned()]
        );
    }

    #[test]
    fn bad_servers_name_the_part() {
        let e = parse_servers("tcp://a:1").unwrap_err().to_string();
        assert!(e.contains("must start with nats://"), "{e}");
        let e = parse_servers("nats://a:1,b").unwrap_err().to_string();
        assert!(e.contains("`b` has no :PORT"), "{e}");
        let e = parse_servers("nats://a:0").unwrap_err().to_string();
        assert!(e.contains("is not a port"), "{e}");
    }

    #[test]
    fn tokens_exclude_subject_separators() {
        assert!(is_token("acme-1_x"));
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(129)] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }
}
