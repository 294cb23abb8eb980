//! `cordon serve`: the gateway (crate `cordon-gateway`) on a socket.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use cordon_gateway::{AppState, Config, Secrets, Strictness};

use crate::render;

/// The default listen address: loopback only.
const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

#[derive(Args, Debug)]
#[command(
    after_help = "Secrets come from CORDON_JWT_SECRET and CORDON_INTERNAL_SECRET (or CORDON_JWT_SECRET_FILE and \
CORDON_INTERNAL_SECRET_FILE): at least 32 bytes each, different from each other and from every value shown in \
cordon's documentation. The service refuses to start otherwise, unless --insecure-dev.\n\n\
SIGTERM or SIGINT: stop accepting, let in-flight executions finish (server.shutdown_timeout_ms, then cancel them), \
record every one, exit 0. Exit status 125 when the service cannot start."
)]
pub struct ServeArgs {
    /// The configuration (TOML: [server], [tenants.NAME] with clients, tokens and quotas).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address to listen on (port 0 picks a free port, printed on start).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// For a developer's machine: start with missing or weak secrets (with a warning on every start and in /readyz); loopback only.
    #[arg(long)]
    insecure_dev: bool,
    /// Put executions on a NATS JetStream queue for `cordon worker`s on any number of hosts, instead of running them in this process.
    #[command(flatten)]
    queue: crate::cmd::queue::QueueConn,
    #[command(flatten)]
    tuning: crate::cmd::queue::QueueTuning,
}

pub fn run(a: ServeArgs) -> Result<i32> {
    let listen: SocketAddr = a
        .listen
        .parse()
        .with_context(|| format!("invalid --listen {}: expected IP:PORT, e.g. {DEFAULT_LISTEN}", a.listen))?;
    let queue = match a.queue.settings()? {
        Some(mut q) => {
            a.tuning.apply(&mut q)?;
            Some(q)
        }
        None => None,
    };
    if queue.is_none() {
        // The small process every sandbox of this service is cloned from
        // (see cordon::start_spawner): this program started afresh, with
        // nothing of this process (no environment, no secret), from the
        // main thread, which its death signal follows.
        cordon::start_spawner().context("cordon serve cannot start its sandbox spawner")?;
    }
    let strictness = if a.insecure_dev { Strictness::InsecureDev } else { Strictness::Refuse };
    if a.insecure_dev && !listen.ip().is_loopback() {
        bail!(
            "--insecure-dev listens on loopback only, not {listen}\n  hint: use --listen 127.0.0.1:PORT, or drop --insecure-dev and set real secrets"
        );
    }
    let config = match &a.config {
        Some(path) => Config::load(path).map_err(|e| {
            let hint = e.hint().map(|h| format!("\n  hint: {h}")).unwrap_or_default();
            anyhow::anyhow!("{e}{hint}")
        })?,
        None => Config::empty(),
    };
    let secrets = Secrets::load(&|k| std::env::var(k).ok(), strictness)
        .map_err(|e| anyhow::anyhow!("{e}\n  hint: {}", e.hint()))
        .context("cordon serve refuses to start")?;
    let mut insecure = vec![];
    if a.insecure_dev {
        insecure.push("started with --insecure-dev: for a developer's machine only".to_owned());
        insecure.extend(secrets.warnings.iter().cloned());
        for w in &insecure {
            render::message("warning", &format!("insecure-dev: {w}"));
        }
    }
    let queue = match queue {
        Some(mut q) => {
            match (&config.queue.result_keys, a.insecure_dev) {
                (Some(folder), _) => {
                    if q.result_key.is_none() {
                        bail!(
                            "cordon serve --queue with [queue] result_keys needs --result-key FILE, to sign the results it decides itself (EXPIRED, CANCELLED)\n  \
                             hint: make one with `cordon key gen --out FILE` and copy FILE.pub into {} on every gateway",
                            folder.display()
                        );
                    }
                    q.result_keys = Some(folder.clone());
                }
                (None, true) => {
                    let w = "--queue without [queue] result_keys: results are answered without checking who wrote them";
                    render::message("warning", &format!("insecure-dev: {w}"));
                    insecure.push(w.to_owned());
                }
                (None, false) => bail!(
                    "cordon serve --queue needs [queue] result_keys in {}: without it, any credential that can write the results bucket could answer for a worker\n  \
                     hint: make each worker's key with `cordon key gen --out FILE`, start it with --result-key FILE, copy FILE.pub into a folder and set [queue] result_keys = \"FOLDER\" (or, on a developer's machine, --insecure-dev)",
                    a.config.as_ref().map_or("the configuration (--config FILE)".to_owned(), |p| p.display().to_string())
                ),
            }
            Some(q)
        }
        None => None,
    };
    if config.tenants.is_empty() {
        render::message(
            "notice",
            "no tenants are configured: only /internal/dispatch can run executions (pass --config FILE)",
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cordon-serve")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let state = match queue {
            Some(q) => AppState::start_queued(config, &secrets, insecure, q).await,
            None => AppState::start(config, &secrets, insecure),
        };
        let state = state.map_err(|e| {
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            let hint = e.hint().map(|h| format!("\n  hint: {h}")).unwrap_or_default();
            anyhow::anyhow!("{e}{cause}{hint}")
        })?;
        if state.audit.rejected() > 0 {
            render::message(
                "warning",
                &cordon::audit::rejected_journal_lines(state.audit.rejected(), state.audit.path()),
            );
        }
        cordon_gateway::serve(state, listen, |addr| {
            render::message("serve", &format!("listening on http://{addr}"));
        })
        .await
        .map_err(|e| {
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            anyhow::anyhow!("{e}{cause}")
        })
    })?;
    Ok(0)
}
