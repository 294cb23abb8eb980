//! `cordon worker` and `cordon dead-letters`, the other two roles of the
//! scale-out queue (crate `cordon-gateway`, module `queue`), and the
//! `--queue` flags they share with `cordon serve`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use cordon_gateway::queue::{self, worker::WorkerSettings, QueueSettings};
use cordon_gateway::Config;

use crate::render;

// How to reach the queue.
// (A plain comment: the doc comment of a flattened struct would become the
// summary of each command that flattens it; see `Command` in lib.rs.)
#[derive(Args, Debug, Clone)]
pub struct QueueConn {
    /// The NATS servers: nats://HOST:PORT, or several separated by commas (a cluster).
    #[arg(long, value_name = "nats://HOST:PORT[,…]")]
    pub queue: Option<String>,
    /// This role's NATS credentials file (.creds: user JWT and nkey seed).
    #[arg(long, value_name = "FILE", requires = "queue")]
    pub queue_creds: Option<PathBuf>,
    /// This role's NATS user, for servers whose configuration lists users (README: Per-role credentials).
    #[arg(long, value_name = "USER", requires = "queue_password_file")]
    pub queue_user: Option<String>,
    /// The file holding --queue-user's password (one line).
    #[arg(long, value_name = "FILE", requires = "queue_user")]
    pub queue_password_file: Option<PathBuf>,
    /// The secret key this role signs the results it writes with (`cordon key gen --out FILE`; FILE.pub goes in the gateways' [queue] result_keys folder).
    #[arg(long, value_name = "FILE", requires = "queue")]
    pub result_key: Option<PathBuf>,
}

impl QueueConn {
    /// The settings, when `--queue` was given.
    pub fn settings(&self) -> Result<Option<QueueSettings>> {
        let Some(q) = &self.queue else { return Ok(None) };
        let servers = queue::parse_servers(q).map_err(|e| anyhow::anyhow!("{e}\n  hint: {}", e.hint()))?;
        let mut s = QueueSettings::new(servers);
        s.creds = self.queue_creds.clone();
        s.user = self.queue_user.clone().zip(self.queue_password_file.clone());
        s.result_key = self.result_key.clone();
        Ok(Some(s))
    }

    fn required(&self, command: &str) -> Result<QueueSettings> {
        let s = self.settings()?.ok_or_else(|| {
            anyhow::anyhow!("cordon {command} needs --queue\n  hint: pass --queue nats://HOST:PORT, the servers `cordon serve --queue` uses")
        })?;
        if s.result_key.is_none() {
            anyhow::bail!(
                "cordon {command} needs --result-key FILE: the gateways answer only results signed by a key they trust\n  \
                 hint: make one with `cordon key gen --out FILE` and copy FILE.pub into the gateways' [queue] result_keys folder"
            );
        }
        Ok(s)
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Runs executions that `cordon serve --queue` put on the NATS JetStream queue, each in a fresh \
sandbox, with the plugins installed on this host (the same versions as on the gateway). SIGTERM or SIGINT: pull \
nothing more, let running executions finish, exit 0. Exit status 125 when the worker cannot start.")]
pub struct WorkerArgs {
    #[command(flatten)]
    conn: QueueConn,
    /// The configuration: [server] home or plugins, audit_log, run_root and mode apply (the same file as `cordon serve`'s works).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Sandboxes at once (default: [server] workers, 4).
    #[arg(long, value_name = "N")]
    slots: Option<u32>,
    /// This worker's name in results and audit records (default: HOSTNAME-PID).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

#[derive(Args, Debug)]
#[command(after_help = "Turns requests that used up their deliveries (their workers died every time) into a LOST \
result and a copy in the dead-letter stream, from the captured max-deliveries advisories; run one or more per \
cluster. SIGTERM or SIGINT: exit 0.")]
pub struct DeadLettersArgs {
    #[command(flatten)]
    conn: QueueConn,
    /// The configuration: [server] audit_log applies.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn config(path: &Option<PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p).map_err(|e| {
            let hint = e.hint().map(|h| format!("\n  hint: {h}")).unwrap_or_default();
            anyhow::anyhow!("{e}{hint}")
        }),
        None => Ok(Config::empty()),
    }
}

fn with_cause(e: &dyn std::error::Error) -> String {
    let cause = e.source().map(|s| format!(": {s}")).unwrap_or_default();
    format!("{e}{cause}")
}

/// Runs `f` on a runtime until it returns, with a stop signal that turns
/// true on SIGTERM or SIGINT.
fn run_until_signal<F, Fut>(name: &str, f: F) -> Result<i32>
where
    F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = tx.send(true);
            // Keep the sender: receivers see `true`, not a closed channel.
            std::future::pending::<()>().await;
        });
        f(rx).await
    })?;
    Ok(0)
}

pub fn worker(a: WorkerArgs) -> Result<i32> {
    // First, from the main thread (its death signal follows the thread
    // that starts it): the small process every sandbox of this worker is
    // cloned from (see cordon::start_spawner); without it the worker stops
    // taking deliveries (queue::worker's docs).
    cordon::start_spawner().context("cordon worker cannot start its sandbox spawner")?;
    let settings = a.conn.required("worker")?;
    let config = config(&a.config)?;
    let s = &config.server;
    let catalog = cordon_gateway::state::catalog_of(s).map_err(|e| anyhow::anyhow!(with_cause(&e)))?;
    let path = cordon::audit::log_path(s.audit_log.as_deref()).map_err(|e| anyhow::anyhow!(e.render()))?;
    let trail = cordon::audit::AuditTrail::open(&path).map_err(|e| anyhow::anyhow!(e.render()))?;
    if trail.recovered() > 0 {
        render::message(
            "worker",
            &format!("recorded {} runs of an earlier worker on this log as LOST", trail.recovered()),
        );
    }
    if trail.rejected() > 0 {
        render::message("warning", &cordon::audit::rejected_journal_lines(trail.rejected(), &path));
    }
    let support = cordon::KernelSupport::detect().context("cannot probe what this kernel enforces")?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
    let name = a.name.unwrap_or_else(|| format!("{host}-{}", std::process::id()));
    if !queue::is_token(&name) {
        anyhow::bail!("invalid --name {name}: 1-128 of A-Z a-z 0-9 _ -");
    }
    let slots = a.slots.unwrap_or(s.workers);
    if slots == 0 {
        anyhow::bail!("invalid --slots 0: a worker needs at least one sandbox slot");
    }
    let ws = WorkerSettings { queue: settings, name, slots, mode: s.mode, run_root: s.run_root.clone() };
    run_until_signal("cordon-worker", move |stop| async move {
        queue::worker::run(ws, catalog, trail, support, stop)
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n  hint: {}", e.hint()))
    })
}

pub fn dead_letters(a: DeadLettersArgs) -> Result<i32> {
    let settings = a.conn.required("dead-letters")?;
    let config = config(&a.config)?;
    let path = cordon::audit::log_path(config.server.audit_log.as_deref()).map_err(|e| anyhow::anyhow!(e.render()))?;
    let trail = cordon::audit::AuditTrail::open(&path).map_err(|e| anyhow::anyhow!(e.render()))?;
    run_until_signal("cordon-dead-letters", move |stop| async move {
        queue::dead_letters::run(settings, trail, stop).await.map_err(|e| anyhow::anyhow!("{e}\n  hint: {}", e.hint()))
    })
}

// `cordon serve`'s queue tuning (used with --queue).
// (A plain comment: the doc comment of a flattened struct would become the
// summary of each command that flattens it; see `Command` in lib.rs.)
#[derive(Args, Debug)]
pub struct QueueTuning {
    /// With --queue: a worker that stops acknowledging for this long loses the execution to another worker.
    #[arg(long, value_name = "MS", default_value_t = 10_000, requires = "queue")]
    pub ack_wait_ms: u64,
    /// With --queue: deliveries before an execution is given up on (LOST).
    #[arg(long, value_name = "N", default_value_t = 3, requires = "queue")]
    pub max_deliver: i64,
    /// With --queue: executions one tenant may have on the queue; beyond it, 429.
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "queue")]
    pub tenant_queue_cap: i64,
    /// With --queue: stream and bucket replicas (default: 1 for one server, 3 for several).
    #[arg(long, value_name = "N", requires = "queue")]
    pub queue_replicas: Option<usize>,
    /// With --queue: how long an accepted execution may take to a result; then EXPIRED.
    #[arg(long, value_name = "MS", default_value_t = 300_000, requires = "queue")]
    pub deadline_ms: u64,
}

impl QueueTuning {
    /// Applies the flags to `s`.
    pub fn apply(&self, s: &mut QueueSettings) -> Result<()> {
        if self.ack_wait_ms < 1000 {
            anyhow::bail!("invalid --ack-wait-ms {}: at least 1000", self.ack_wait_ms);
        }
        if self.max_deliver < 1 {
            anyhow::bail!("invalid --max-deliver {}: at least 1", self.max_deliver);
        }
        if self.tenant_queue_cap < 1 {
            anyhow::bail!("invalid --tenant-queue-cap {}: at least 1", self.tenant_queue_cap);
        }
        s.ack_wait = Duration::from_millis(self.ack_wait_ms);
        s.max_deliver = self.max_deliver;
        s.tenant_cap = self.tenant_queue_cap;
        if let Some(r) = self.queue_replicas {
            if !(1..=5).contains(&r) {
                anyhow::bail!("invalid --queue-replicas {r}: 1 to 5");
            }
            s.replicas = r;
        }
        s.deadline = Duration::from_millis(self.deadline_ms);
        Ok(())
    }
}
