//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use cordon::audit::{GroupOptions, GroupWriter, KeyFolder};

use crate::auth::{Keys, RefreshStore};
use crate::backend::{Backend, LocalBackend, LocalSettings};
use crate::catalog::{Catalog, CatalogError, FolderCatalog, RegistryCatalog};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::secrets::Secrets;
use crate::tenancy::Tenancy;

/// The service's state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// See [`AppState`].
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// Keys and static credentials.
    pub keys: Keys,
    /// Refresh-token families.
    pub refresh: RefreshStore,
    /// Rate buckets and limits.
    pub tenancy: Tenancy,
    /// Where executions run.
    pub backend: Backend,
    /// Where plugins come from.
    pub catalog: Box<dyn Catalog>,
    /// Metrics.
    pub metrics: Metrics,
    /// The audit log's group-commit writer (the service owns the log).
    pub audit: Arc<GroupWriter>,
    /// What `--insecure-dev` let through; shown by `/readyz`.
    pub insecure: Vec<String>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The service cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The audit log cannot be opened (or earlier lost runs recorded).
    #[error(transparent)]
    Audit(#[from] cordon::audit::AuditError),
    /// The kernel probe failed.
    #[error("cannot probe what this kernel enforces")]
    Probe(#[from] cordon::ProbeError),
    /// The plugin registry cannot be opened.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// No registry location.
    #[error("no plugin registry: neither [server] home, [server] plugins, CORDON_HOME, XDG_DATA_HOME nor HOME is set")]
    NoRegistry,
    /// The NATS queue cannot be used (`--queue`).
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// A tenant's name cannot be a NATS subject token (`--queue`).
    #[error("tenant `{0}` cannot be used with --queue: tenant names must be 1-128 of A-Z a-z 0-9 _ -")]
    TenantName(String),
}

impl StartError {
    /// What to do about it, where there is more to say than the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            StartError::Queue(e) => Some(e.hint()),
            _ => None,
        }
    }
}

impl AppState {
    /// Opens the audit log for this service alone (recording the
    /// executions a killed service left unfinished as `LOST`), probes the
    /// kernel once and starts the workers. `insecure` lists what
    /// `--insecure-dev` let through. Call it on the runtime that serves.
    pub fn start(config: Config, secrets: &Secrets, insecure: Vec<String>) -> Result<AppState, StartError> {
        let path = cordon::audit::log_path(config.server.audit_log.as_deref())?;
        let audit = Arc::new(GroupWriter::open(&path, &KeyFolder::State, GroupOptions::default())?);
        let support = cordon::KernelSupport::detect()?;
        let metrics = Metrics::new();
        let s = &config.server;
        // Its runs' folders: out of every run of this process from the
        // first on (each run registers it again when it makes its folder).
        cordon::state::protect_from_now_on(cordon::Protected::folder(
            cordon::state::runs_folder(&s.run_root),
            cordon::state::RUNS_FOLDER_WHAT,
        ));
        let settings = LocalSettings {
            workers: s.workers,
            queue: s.queue,
            mode: s.mode,
            run_root: s.run_root.clone(),
            results_per_tenant: s.results_per_tenant,
            result_ttl: Duration::from_secs(s.result_ttl_s),
        };
        // The pool asks a catalog of its own (the same plugins) before it
        // parks a run and while runs are parked.
        let pool = match s.pool_size {
            0 => None,
            n => Some(crate::pool::Pool::start(
                n as usize,
                Duration::from_millis(s.pool_ttl_ms),
                catalog_of(s)?,
                metrics.clone(),
            )),
        };
        let backend = Backend::Local(LocalBackend::start(settings, audit.clone(), support, metrics.clone(), pool));
        AppState::assemble(config, secrets, insecure, backend, audit, metrics)
    }

    /// [`AppState::start`] with executions on the NATS JetStream queue
    /// `queue` (`cordon serve --queue`) instead of this process's workers.
    pub async fn start_queued(
        config: Config,
        secrets: &Secrets,
        insecure: Vec<String>,
        queue: crate::queue::QueueSettings,
    ) -> Result<AppState, StartError> {
        if let Some(t) = config.tenants.iter().find(|t| !crate::queue::is_token(&t.name)) {
            return Err(StartError::TenantName(t.name.clone()));
        }
        let path = cordon::audit::log_path(config.server.audit_log.as_deref())?;
        let audit = Arc::new(GroupWriter::open(&path, &KeyFolder::State, GroupOptions::default())?);
        let metrics = Metrics::with_queue();
        let tenants = config.tenants.iter().map(|t| t.name.clone()).collect();
        let nats = crate::queue::backend::NatsBackend::start(queue, tenants, audit.clone(), metrics.clone()).await?;
        AppState::assemble(config, secrets, insecure, Backend::Nats(Arc::new(nats)), audit, metrics)
    }

    fn assemble(
        config: Config,
        secrets: &Secrets,
        insecure: Vec<String>,
        backend: Backend,
        audit: Arc<GroupWriter>,
        metrics: Metrics,
    ) -> Result<AppState, StartError> {
        let catalog = catalog_of(&config.server)?;
        Ok(AppState(Arc::new(Shared {
            keys: Keys::new(&secrets.jwt, &secrets.internal, &config),
            refresh: RefreshStore::new(Duration::from_millis(config.server.refresh_grace_ms)),
            tenancy: Tenancy::new(&config),
            backend,
            catalog,
            metrics,
            audit,
            insecure,
            config,
        })))
    }
}

/// The plugins `[server]` names: a development folder, or the registry.
pub fn catalog_of(s: &crate::config::Server) -> Result<Box<dyn Catalog>, StartError> {
    Ok(match (&s.plugins, &s.home) {
        (Some(dir), _) => Box::new(FolderCatalog::new(dir, &s.disabled)),
        (None, Some(home)) => Box::new(RegistryCatalog::open(home)?),
        (None, None) => {
            let home = cordon_registry::Registry::default_home().ok_or(StartError::NoRegistry)?;
            Box::new(RegistryCatalog::open(&home)?)
        }
    })
}
