//! Plugins: run a handler of a plugin folder under its manifest's policy.
//!
//! A plugin is a folder with a `cordon.toml` ([`Manifest`]) that declares
//! handlers, permissions and quotas. [`run_handler`] is what `cordon exec`
//! does, and [`check_plugin`] what `cordon check` does; both go through the
//! same preparation, so `check` answers exactly what `exec` would refuse.
//!
//! # What a handler gets
//!
//! - The manifest's policy, narrowed by the host's ([`HandlerRequest::host`]:
//!   the host may narrow a manifest, never widen it), plus read access to
//!   the plugin folder and, with `extends = ["platform"]`, its data folder
//!   writable and named in `CORDON_DATA_DIR`.
//! - The input JSON on stdin; a pipe named in `CORDON_RESULT_FD` (fd 3) for
//!   its one JSON result, which lands in `data`.
//! - `CORDON_ARTIFACTS`: an empty writable folder, fresh for the run, under
//!   [`HandlerRequest::run_root`]. After the run its regular files are moved
//!   into the artifact store ([`ArtifactStore`]) and listed in the result
//!   with size and SHA-256; symbolic links are never followed.
//! - `TRACEPARENT`: the caller's W3C trace with a new parent id, or a new
//!   trace.
//! - When the policy allows a host: `HTTP_PROXY` and friends (set by the
//!   runner) and `NODE_OPTIONS=--require <preload>`, a file cordon ships
//!   that makes Node's global `fetch` use the proxy (Node ignores the proxy
//!   variables). The preload is written into the run's folder and granted
//!   read-only.
//! - `CORDON_CAPABILITIES`: the granted capabilities, comma-separated, when
//!   the manifest requires any.
//!
//! Output is always captured (bounded by `output_bytes`, secrets
//! redacted) into the result's `logs`.
//!
//! # Refusals
//!
//! Nothing runs, and the result is `SETUP_FAILED` (exit status 125), when
//! the manifest is invalid (the message has file, line and column), the
//! handler is unknown, a required capability is not granted, or an entry of
//! the policy cannot be enforced in the chosen mode on this host (see
//! [`PluginCheck`]). An exec allow-list (`permissions.exec`) is enforced by
//! Landlock: grants keep read access but lose the execute right, which only
//! the listed files, the handler and the ELF loader have (a script handler
//! needs its interpreter listed).
//!
//! # Ambient authority
//!
//! [`HandlerRequest::host_env`] is the source of `env.allow`; the data
//! folder and the artifact store are host folders the plugin writes to.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use cordon_core::plan::{Enforcement, Plan, PlanError};
use cordon_core::policy::{Mode, PathRule, Policy};
use cordon_core::probe::{KernelSupport, ProbeError};
use cordon_core::state::Protected;

pub use cordon_plugin::artifacts::{Artifact, CollectLimits, Skipped, Template, DEFAULT_TEMPLATE};
pub use cordon_plugin::builder::PolicyBuilder;
pub use cordon_plugin::capabilities::{check_capabilities, CapabilityCheck};
pub use cordon_plugin::manifest::{
    locate, FileKind, Handler, HandlerError, Manifest, ManifestError, OutsidePlugin, PluginId, PolicyFile, Preset,
    DATA_DIR_ENV, MANIFEST_FILE, MAX_MANIFEST_BYTES,
};

use crate::audit::{self, AuditError, AuditTrail, Subject, TraceParent};
use crate::locked_dir::{LockedDir, Sweep};
use crate::result::ExecutionResult;
use crate::runner::{Capture, Input, ResultChannel, RunRequest};

/// Results larger than this are refused by default (`INVALID_RESULT`): 1 MiB.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 1 << 20;

/// Inputs larger than this are refused before anything runs: 16 MiB.
pub const MAX_INPUT_BYTES: usize = 16 << 20;

/// The variable naming the artifact folder inside the sandbox.
pub const ARTIFACTS_ENV: &str = cordon_plugin::artifacts::ENV;

/// The variable naming the granted capabilities inside the sandbox.
pub const CAPABILITIES_ENV: &str = "CORDON_CAPABILITIES";

/// The preload that routes Node's global `fetch` through the proxy.
const NODE_FETCH_PRELOAD: &str = include_str!("../preload/node-fetch-proxy.cjs");

/// Where the artifacts of runs go.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    /// The store's root; `None`: artifacts are not kept (a warning says so).
    pub root: Option<PathBuf>,
    /// The layout below the root.
    pub template: Template,
    /// Caps per run.
    pub limits: CollectLimits,
}

impl ArtifactStore {
    /// `$XDG_DATA_HOME/cordon/artifacts`, else
    /// `~/.local/share/cordon/artifacts`.
    pub fn default_root() -> Option<PathBuf> {
        cordon_core::state::data_dir().map(|d| d.join("artifacts"))
    }

    /// The default store with [`SERVICE_TEMPLATE`]: for runs of a
    /// service, which always name their tenant.
    pub fn for_service() -> Self {
        ArtifactStore {
            template: SERVICE_TEMPLATE.parse().expect("the service template is valid"),
            ..ArtifactStore::default()
        }
    }
}

/// The artifact store's layout for a service's runs (`cordon serve`,
/// `cordon worker`): [`DEFAULT_TEMPLATE`] below `tenants/{tenant}/`, so
/// that each tenant's files stay apart, also when two tenants' runs have
/// one id (on the queue a request's id is its `Idempotency-Key`).
pub const SERVICE_TEMPLATE: &str = "tenants/{tenant}/{plugin}/{version}/{handler}/{request_id}";

impl Default for ArtifactStore {
    fn default() -> Self {
        ArtifactStore {
            root: ArtifactStore::default_root(),
            template: Template::default(),
            limits: CollectLimits::default(),
        }
    }
}

/// The data folder the `platform` preset grants plugin `id` by default:
/// `$XDG_DATA_HOME/cordon/data/@scope/name` (or under
/// `~/.local/share/cordon`).
pub fn default_data_dir(id: &PluginId) -> Option<PathBuf> {
    cordon_core::state::data_dir().map(|d| d.join("data").join(format!("@{}", id.scope())).join(id.name()))
}

/// The data folder the `platform` preset grants plugin `id` when it runs
/// for `tenant` of a service (`cordon serve`, `cordon worker`):
/// `$XDG_DATA_HOME/cordon/tenants/<tenant>/@scope/name` (or under
/// `~/.local/share/cordon`). Beside [`default_data_dir`]'s `data/`, not
/// below it, so that no per-plugin data folder (a `cordon exec` of the
/// plugin writes there) holds a tenant's data. `<tenant>` is
/// [`tenant_folder_name`]'s: every tenant has its own folder.
/// `Ok(None)`: no data folder can be named (HOME and XDG_DATA_HOME unset).
pub fn tenant_data_dir(tenant: &str, id: &PluginId) -> Result<Option<PathBuf>, PluginError> {
    let folder = tenant_folder_name(tenant)?;
    Ok(cordon_core::state::data_dir()
        .map(|d| d.join("tenants").join(folder).join(format!("@{}", id.scope())).join(id.name())))
}

/// The folder name of `tenant` below `tenants/`: the name itself, each
/// capital letter written as `+` and the letter in lower case (`Acme` is
/// `+acme`), so that two tenants never share a folder, also on a file
/// system that folds case. Refused (the name could climb out of, or name,
/// `tenants/` itself, or be a path): an empty name, `.`, `..`, more than 64
/// characters, or any character but `A-Z a-z 0-9 - _ .` (what a service's
/// configuration allows).
pub fn tenant_folder_name(tenant: &str) -> Result<String, PluginError> {
    let bad = |reason: &str| PluginError::TenantName { tenant: tenant.to_owned(), reason: reason.to_owned() };
    if tenant.is_empty() || tenant.len() > 64 {
        return Err(bad("it must be 1 to 64 characters"));
    }
    if tenant == "." || tenant == ".." {
        return Err(bad("`.` and `..` name folders of their own"));
    }
    if !tenant.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(bad("only A-Z, a-z, 0-9, `-`, `_` and `.` are allowed"));
    }
    let mut out = String::with_capacity(tenant.len() + 4);
    for c in tenant.chars() {
        if c.is_ascii_uppercase() {
            out.push('+');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// One handler execution (or, for [`check_plugin`], one plugin check; the
/// handler and input are then unused).
#[derive(Clone, Debug)]
pub struct HandlerRequest {
    /// The plugin folder (holding `cordon.toml`).
    pub plugin_dir: PathBuf,
    /// The handler's name.
    pub handler: String,
    /// The input JSON, given to the handler on stdin. Default `{}`.
    pub input: Vec<u8>,
    /// The tier; `None`: container where this host supports the policy,
    /// else process (with a warning).
    pub mode: Option<Mode>,
    /// The host's policy, intersected with the manifest's. Default
    /// [`PolicyBuilder::unrestricted`]: no narrowing.
    pub host: Policy,
    /// The handler's working directory; default the plugin folder. It must
    /// be readable under the effective policy.
    pub workdir: Option<PathBuf>,
    /// cordon's own environment, the source for `env.allow`.
    pub host_env: Vec<(String, String)>,
    /// Request id; generated when `None`.
    pub request_id: Option<String>,
    /// The caller's W3C `traceparent`; an invalid or missing one starts a
    /// new trace.
    pub traceparent: Option<String>,
    /// On whose behalf (audit only).
    pub tenant: Option<String>,
    /// Ends the run early when cancelled (result `CANCELLED`, or `EXPIRED`
    /// through [`crate::runner::Cancel::expire`]).
    pub cancel: Option<crate::runner::Cancel>,
    /// What cordon's own termination signals do to the run.
    pub signals: crate::runner::Signals,
    /// The data folder for the `platform` preset; `None`: the tenant's
    /// ([`HandlerRequest::data_tenant`]), else [`default_data_dir`].
    /// Created if missing.
    pub data_dir: Option<PathBuf>,
    /// A service's tenant whose data folder the `platform` preset grants
    /// ([`tenant_data_dir`]) when `data_dir` is `None`; `None`: the
    /// plugin's own ([`default_data_dir`]). Unlike `tenant`, which only
    /// names the tenant in the audit record and artifact paths, this
    /// decides what the run may read and write.
    pub data_tenant: Option<String>,
    /// Where artifacts go.
    pub store: ArtifactStore,
    /// Capabilities the host application grants.
    pub capabilities: Vec<String>,
    /// The largest result accepted.
    pub max_result_bytes: usize,
    /// Where the run's own folder (artifacts, preload) is created: in its
    /// folder of run folders, `cordon-runs-UID`
    /// ([`cordon_core::state::runs_folder`]), which no sandbox reaches but
    /// for its own run's folder. Default
    /// [`cordon_core::state::default_run_root`]: cordon's state folder,
    /// else `/var/tmp` (not `/tmp`, which container mode replaces).
    pub run_root: PathBuf,
    /// What the kernel supports, if the caller probed already.
    pub support: Option<KernelSupport>,
    /// The audit trail; `None`: no record is written (a host that records
    /// runs itself writes [`HandlerResult::subject`] with the result).
    pub audit: Option<AuditTrail>,
    /// Files of the host no sandbox may reach, besides the trail's: the
    /// audit log of a host that records runs itself. Carved out of every
    /// grant like cordon's own state.
    pub protect: Vec<Protected>,
    /// What the host knows about the run for its audit record (principal,
    /// token id, the caller's whole `traceparent`, worker, attempt, package
    /// provenance). [`run_handler`] sets the trace id, tenant, plugin,
    /// version, handler and command itself. Default: nothing more.
    pub audit_subject: Subject,
    /// When the run's folder's creation looks for folders of killed runs
    /// beside it under [`HandlerRequest::run_root`]. Default:
    /// [`Sweep::WhenDue`]; a host that learns of a crash (its own audit
    /// writer recovered a lost run) passes [`Sweep::Now`]. With
    /// [`HandlerRequest::audit`] set, a trail that recovered a lost run
    /// makes it `Now` too.
    pub sweep: Sweep,
    /// The plugin's `cordon.toml` as the caller read and verified it (an
    /// installed plugin: against its verified tree), used instead of the
    /// file in the folder, which a run of the plugin may have changed
    /// since. `None`: the file is read (a development folder).
    pub manifest: Option<Vec<u8>>,
    /// Follow a rule's symbolic link in a folder a run may have written
    /// (`cordon exec --follow-links`), recording it in the enforcement
    /// ledger; default `false`: such a link refuses the run
    /// ([`cordon_core::enforce::links`]). A manifest cannot ask for it.
    pub follow_links: bool,
}

impl HandlerRequest {
    /// A request with the defaults documented on each field, cordon's own
    /// environment, and no audit trail.
    pub fn new(plugin_dir: impl Into<PathBuf>, handler: impl Into<String>) -> Self {
        HandlerRequest {
            plugin_dir: plugin_dir.into(),
            handler: handler.into(),
            input: b"{}".to_vec(),
            mode: None,
            host: PolicyBuilder::unrestricted(),
            workdir: None,
            host_env: std::env::vars().collect(),
            request_id: None,
            traceparent: None,
            tenant: None,
            cancel: None,
            signals: crate::runner::Signals::Forward,
            data_dir: None,
            data_tenant: None,
            store: ArtifactStore::default(),
            capabilities: vec![],
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            run_root: cordon_core::state::default_run_root(),
            support: None,
            audit: None,
            protect: vec![],
            audit_subject: Subject::default(),
            sweep: Sweep::WhenDue,
            manifest: None,
            follow_links: false,
        }
    }
}

/// Why a handler did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin folder cannot be opened.
    #[error("cannot open the plugin folder {}", path.display())]
    PluginDir {
        /// The folder as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The manifest is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The handler is unknown or its program is missing.
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// A path of the manifest leads out of the plugin folder.
    #[error(transparent)]
    OutsidePlugin(#[from] OutsidePlugin),
    /// A write grant covers the plugin's own folder (review s12 R12-1): a
    /// run could rewrite the manifest (and code) the next run gets.
    #[error(
        "plugin {plugin} may not write its own folder {}: the write grant {} covers it, so a run could rewrite the manifest and code the next run gets",
        plugin_dir.display(),
        grant.display()
    )]
    WritesOwnFolder {
        /// The plugin.
        plugin: String,
        /// The plugin folder.
        plugin_dir: PathBuf,
        /// The write grant that covers it.
        grant: PathBuf,
    },
    /// A development folder's manifest has other names (hard links) and the
    /// plugin may write: a run could rewrite it through one of them.
    #[error(
        "plugin {plugin} may write files and its manifest {} has {links} names (hard links), so a run could rewrite it through another name",
        manifest.display()
    )]
    ManifestHardLinked {
        /// The plugin.
        plugin: String,
        /// The manifest file.
        manifest: PathBuf,
        /// How many names it has.
        links: u64,
    },
    /// A development folder's manifest is a symbolic link: where it leads
    /// may lie in any folder, one a run can write (review s14 R14-2).
    #[error(
        "the manifest {} is a symbolic link (to {}); cordon reads a development folder's manifest only as a file of its own, which a run cannot re-point or rewrite through a folder it may write",
        manifest.display(),
        target.display()
    )]
    ManifestLinked {
        /// The manifest's name in the plugin folder.
        manifest: PathBuf,
        /// Where the link leads, as written.
        target: PathBuf,
    },
    /// The `platform` preset needs a data folder and there is none.
    #[error(
        "plugin {plugin} extends the platform preset, which needs a data folder; HOME and XDG_DATA_HOME are unset"
    )]
    NoDataDir {
        /// The plugin.
        plugin: String,
    },
    /// A tenant's name cannot name its data folder ([`tenant_folder_name`]).
    #[error("tenant name `{tenant}` cannot name a data folder: {reason}")]
    TenantName {
        /// The tenant.
        tenant: String,
        /// Why.
        reason: String,
    },
    /// The data folder cannot be created.
    #[error("cannot create the data folder {}", path.display())]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The kernel probe failed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// The working directory is unusable.
    #[error("invalid working directory {}: {reason}", path.display())]
    Workdir {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The input is too large or not JSON.
    #[error("invalid input: {reason}")]
    Input {
        /// Why.
        reason: String,
    },
    /// Part of the policy cannot be enforced here, or a capability is missing.
    #[error("plugin {plugin} cannot run in {mode} mode on this host:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Refused {
        /// The plugin.
        plugin: String,
        /// The mode.
        mode: &'static str,
        /// Each problem, as in [`PluginCheck::problems`].
        problems: Vec<String>,
    },
    /// The run root's folder of run folders cannot be used.
    #[error(transparent)]
    RunsFolder(cordon_core::state::RunsFolderError),
    /// The artifact store cannot be used as given.
    #[error(transparent)]
    Store(cordon_plugin::artifacts::ArtifactError),
    /// The run's own folder cannot be created.
    #[error("cannot create the run folder {}", path.display())]
    RunDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The audit log cannot be written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The caller's request id cannot name a run.
    #[error(transparent)]
    RequestId(#[from] crate::BadRequestId),
}

impl PluginError {
    /// What to do about it, where there is a suggestion.
    pub fn hint(&self) -> Option<String> {
        match self {
            PluginError::PluginDir { .. } => Some("give the folder that holds the plugin's cordon.toml".into()),
            PluginError::Manifest(e) => e.hint().map(str::to_owned),
            PluginError::Handler(HandlerError::Unknown { .. }) => {
                Some("run `cordon check PLUGIN` to list its handlers".into())
            }
            PluginError::Handler(HandlerError::OutsidePlugin(e)) | PluginError::OutsidePlugin(e) => {
                Some(e.hint().into())
            }
            PluginError::Handler(_) => {
                Some("`command[0]` is looked up in the plugin folder, then on the sandbox's PATH".into())
            }
            PluginError::WritesOwnFolder { .. } => Some(
                "grant the folder the plugin writes outside its own folder: the platform preset's data folder \
                 (extends = [\"platform\"]), $CORDON_ARTIFACTS, or another path in fs.write"
                    .into(),
            ),
            PluginError::ManifestLinked { manifest, .. } => Some(format!(
                "replace the link by the file: `cp --remove-destination \"$(readlink -f {0})\" {0}`",
                manifest.display()
            )),
            PluginError::ManifestHardLinked { .. } => Some(
                "give the folder a manifest of its own: `cp cordon.toml cordon.toml.new && mv cordon.toml.new cordon.toml`"
                    .into(),
            ),
            PluginError::NoDataDir { .. } => Some("pass --data-dir DIR".into()),
            PluginError::DataDir { source, .. } if source.raw_os_error() == Some(libc::ELOOP) => Some(
                "a folder on its way below cordon's data folder is a symbolic link, which cordon never follows there: remove it (a run that could write cordon's data folder may have made it)".into(),
            ),
            PluginError::DataDir { .. } => Some("pass --data-dir with a folder you can write".into()),
            PluginError::TenantName { .. } => {
                Some("rename the tenant in the service's configuration (1 to 64 of A-Z a-z 0-9 - _ ., not `.` or `..`)".into())
            }
            PluginError::Probe(_) => Some("run `cordon doctor`".into()),
            PluginError::Workdir { .. } => Some(
                "use a folder the manifest grants (fs.read, fs.write, the plugin folder or the data folder)".into(),
            ),
            PluginError::Input { .. } => Some("--input takes a file holding one JSON value, or `-` for stdin".into()),
            PluginError::Refused { .. } => Some(
                "run `cordon check PLUGIN` for the whole ledger; `cordon doctor` shows what this host can enforce"
                    .into(),
            ),
            PluginError::RunDir { .. } => None,
            PluginError::RunsFolder(e) => Some(e.hint().into()),
            PluginError::Store(e) => e.hint().map(str::to_owned),
            PluginError::Audit(e) => Some(e.hint().into()),
            PluginError::RequestId(e) => Some(e.hint().into()),
        }
    }

    /// The message, its causes, the manifest excerpt and the hint, one per
    /// line, for a result or a terminal.
    pub fn render(&self) -> String {
        if let PluginError::Manifest(e) = self {
            return e.render();
        }
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        if matches!(
            self,
            PluginError::Handler(_) | PluginError::OutsidePlugin(_) | PluginError::Probe(_) | PluginError::Audit(_)
        ) {
            // `transparent`: the first source is the error itself.
            cause = cause.and_then(std::error::Error::source);
        }
        while let Some(c) = cause {
            out.push_str(&format!("\ncaused by: {c}"));
            cause = c.source();
        }
        if let Some(h) = self.hint() {
            out.push_str(&format!("\nhint: {h}"));
        }
        out
    }
}

/// Where an entry of the effective policy comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Source {
    /// Declared in the manifest (possibly narrowed by the host).
    Manifest,
    /// Granted by a preset the manifest extends.
    Preset,
    /// Implied: the plugin folder must be readable for its code to run.
    Implied,
    /// Set by the host's flags.
    Host,
    /// cordon's baseline for every run (system set, syscalls, defaults).
    Baseline,
}

/// One line of a plugin's ledger.
#[derive(Clone, Debug, Serialize)]
pub struct CheckEntry {
    /// The entry, e.g. `fs.read /srv/plugin/data`, `quota memory_mb=256`,
    /// `capability llm`.
    pub permission: String,
    /// Where it comes from.
    pub source: Source,
    /// What enforces it here; `None` when nothing can.
    pub mechanism: Option<String>,
    /// How completely; `None` when nothing can.
    pub enforcement: Option<Enforcement>,
    /// Why it cannot be enforced or granted here; `exec` refuses the plugin
    /// while any entry has one.
    pub problem: Option<String>,
}

/// A handler, as listed by [`check_plugin`].
#[derive(Clone, Debug, Serialize)]
pub struct HandlerInfo {
    /// Its name.
    pub name: String,
    /// Its argv as declared.
    pub command: Vec<String>,
    /// For people.
    pub description: Option<String>,
}

/// What [`check_plugin`] found: the effective policy as an enforcement
/// ledger, and whether `exec` would run the plugin here.
#[derive(Clone, Debug, Serialize)]
pub struct PluginCheck {
    /// Plugin id.
    pub plugin: String,
    /// Version.
    pub version: String,
    /// Description.
    pub description: Option<String>,
    /// The manifest file.
    pub manifest: PathBuf,
    /// The handlers.
    pub handlers: Vec<HandlerInfo>,
    /// The mode the check was made for.
    pub mode: Mode,
    /// [`audit::policy_digest`] of the effective policy (what audit records
    /// carry).
    pub policy_digest: String,
    /// One entry per permission, quota and baseline rule.
    pub entries: Vec<CheckEntry>,
    /// Everything that stops `exec`, one sentence each.
    pub problems: Vec<String>,
    /// Things to know that do not stop it (mode fallback, dev mode).
    pub warnings: Vec<String>,
    /// Entries the manifest declares that the host's flags removed or
    /// narrowed (`net.allow *.example.com` when `--net api.example.com`
    /// kept only that host), in the ledger's words.
    pub narrowed_by_host: Vec<String>,
    /// Whether `exec` would run it: no problems.
    pub runnable: bool,
}

/// Everything known before a handler starts.
struct Prepared {
    manifest: Manifest,
    plugin_dir: PathBuf,
    data_dir: Option<PathBuf>,
    policy: Policy,
    mode: Mode,
    support: KernelSupport,
    check: PluginCheck,
}

/// Loads and validates the plugin, builds its effective policy and ledger
/// for the chosen mode on this host. Returns an error only when the plugin
/// cannot be checked at all (bad folder or manifest, failed probe); a
/// plugin that cannot be enforced here is a check with `runnable: false`.
///
/// A check changes nothing on the host: a data folder that does not exist
/// yet is shown where it would be created.
pub fn check_plugin(req: &HandlerRequest) -> Result<PluginCheck, PluginError> {
    prepare(req, DataDir::Leave, req.manifest.as_deref()).map(|p| p.check)
}

/// Whether preparing a run creates a missing data folder.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DataDir {
    /// Create it (a run is about to use it).
    Create,
    /// Leave the host as it is (a check).
    Leave,
}

fn prepare(req: &HandlerRequest, data: DataDir, given: Option<&[u8]>) -> Result<Prepared, PluginError> {
    let plugin_dir = std::fs::canonicalize(&req.plugin_dir)
        .map_err(|source| PluginError::PluginDir { path: req.plugin_dir.clone(), source })?;
    let manifest = match given {
        Some(bytes) => Manifest::parse_bytes(bytes, &plugin_dir.join(MANIFEST_FILE))?,
        None => {
            // Not read through a link: the grants below are checked against
            // the manifest's own name and inode, and a link's target could
            // lie anywhere a run may write.
            let file = plugin_dir.join(MANIFEST_FILE);
            if let Ok(target) = std::fs::read_link(&file) {
                return Err(PluginError::ManifestLinked { manifest: file, target });
            }
            Manifest::load(&plugin_dir)?
        }
    };
    let data_dir = if manifest.extends.contains(&Preset::Platform) {
        let named = match (&req.data_dir, &req.data_tenant) {
            (Some(dir), _) => Some(dir.clone()),
            (None, Some(tenant)) => tenant_data_dir(tenant, &manifest.id)?,
            (None, None) => default_data_dir(&manifest.id),
        };
        let dir = named.ok_or_else(|| PluginError::NoDataDir { plugin: manifest.id.to_string() })?;
        let dir = std::path::absolute(&dir).map_err(|source| PluginError::DataDir { path: dir.clone(), source })?;
        if data == DataDir::Create {
            create_private_dir(&dir).map_err(|source| PluginError::DataDir { path: dir.clone(), source })?;
        }
        // Grants name resolved paths; a folder not created yet is taken as written.
        Some(std::fs::canonicalize(&dir).unwrap_or(dir))
    } else {
        None
    };
    let policy = effective_policy(&manifest, &plugin_dir, data_dir.as_deref(), &req.host)?;
    // By where each grant leads: one spelled through a link above the
    // folder covers it as well, and one on the manifest file itself
    // (`fs.write = ["cordon.toml"]`, review s13 R13-5) or on another name
    // of it (a hard link) rewrites it just the same.
    let manifest_file = plugin_dir.join(MANIFEST_FILE);
    let manifest_id = file_id(&manifest_file);
    let leads_to =
        |w: &PathRule| std::fs::canonicalize(&w.path).unwrap_or_else(|_| cordon_core::policy::fs::normalize(&w.path));
    // The folder as the caller named it, too: a link on that path inside a
    // write grant (`cordon exec /w/pl`, `pl` a link, `fs.write = ["/w"]`)
    // can be re-pointed by a run to another folder for the next run.
    let spelled = std::path::absolute(&req.plugin_dir)
        .map(|p| cordon_core::policy::fs::normalize(&p))
        .unwrap_or_else(|_| plugin_dir.clone());
    let reaches_manifest = |w: &PathRule| {
        let to = leads_to(w);
        plugin_dir.starts_with(&to)
            || spelled.starts_with(&to)
            || spelled.starts_with(cordon_core::policy::fs::normalize(&w.path))
            || to == manifest_file
            || (manifest_id.is_some() && file_id(&to) == manifest_id)
    };
    if let Some(grant) = policy.fs.write.iter().find(|w| reaches_manifest(w)) {
        // Named as the caller spelled it when only that spelling is covered.
        let plugin_dir =
            if spelled != plugin_dir && !plugin_dir.starts_with(leads_to(grant)) { spelled } else { plugin_dir };
        return Err(PluginError::WritesOwnFolder {
            plugin: manifest.id.to_string(),
            plugin_dir,
            grant: grant.path.clone(),
        });
    }
    // A development folder's manifest with another name (a hard link)
    // could be rewritten through that name wherever a write grant lies.
    if given.is_none() && !policy.fs.write.is_empty() {
        if let Some(links) = std::fs::metadata(&manifest_file).ok().map(|m| m.nlink()).filter(|n| *n > 1) {
            return Err(PluginError::ManifestHardLinked {
                plugin: manifest.id.to_string(),
                manifest: manifest_file,
                links,
            });
        }
    }
    let support = match &req.support {
        Some(s) => s.clone(),
        None => KernelSupport::detect()?,
    };
    let (mode, fallback) = choose_mode(req.mode, &policy, &support);
    let mut check =
        ledger(&manifest, &policy, mode, &support, &req.capabilities, &plugin_dir, data_dir.as_deref(), &req.host);
    check.warnings.extend(fallback);
    Ok(Prepared { manifest, plugin_dir, data_dir, policy, mode, support, check })
}

/// The device and inode of the file at `path` (following links), when it
/// can be looked at.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Makes a data folder. One below cordon's data folder is made without
/// following a link below it (a link there is refused, `ELOOP`): a run
/// that could once write there must not re-point another plugin's folder.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(base) = cordon_core::state::data_dir() {
        if let Ok(rel) = dir.strip_prefix(&base) {
            return cordon_core::state::make_private_dir_beneath(&base, rel);
        }
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The manifest's policy (with the plugin folder and the preset's data
/// folder) narrowed by `host`. The plugin folder stays readable whatever
/// the host's path grants are: without it nothing can run, and the manifest
/// already has it, so keeping it widens nothing.
///
/// The plugin folder's paths were resolved (links included) here, so the
/// folder is [pinned](cordon_core::policy::FsPolicy::pinned): enforcement
/// opens grants inside it without following links, and a link made there
/// after this point refuses the run instead of redirecting a grant.
pub fn effective_policy(
    manifest: &Manifest,
    plugin_dir: &Path,
    data_dir: Option<&Path>,
    host: &Policy,
) -> Result<Policy, OutsidePlugin> {
    let mut host = host.clone();
    let covered = host.fs.read.iter().chain(&host.fs.write).any(|r| plugin_dir.starts_with(&r.path));
    if !covered {
        host.fs.read.push(PathRule { path: plugin_dir.to_owned() });
    }
    let mut policy = manifest.builder(plugin_dir, data_dir)?.narrow(&host).build();
    policy.fs.pinned.push(plugin_dir.to_owned());
    Ok(policy)
}

/// The mode to run `policy` in: `flag`, else container where it can be
/// planned here, else process with a warning saying why.
pub fn choose_mode(flag: Option<Mode>, policy: &Policy, support: &KernelSupport) -> (Mode, Option<String>) {
    if let Some(m) = flag {
        return (m, None);
    }
    match Plan::build(policy, Mode::Container, support) {
        Ok(_) => (Mode::Container, None),
        Err(e) => (Mode::Process, Some(format!("container mode is not available here ({e}); running in process mode"))),
    }
}

#[allow(clippy::too_many_arguments)]
fn ledger(
    manifest: &Manifest,
    policy: &Policy,
    mode: Mode,
    support: &KernelSupport,
    granted: &[String],
    plugin_dir: &Path,
    data_dir: Option<&Path>,
    host: &Policy,
) -> PluginCheck {
    let mut entries: Vec<CheckEntry> = vec![];
    let mut problems: Vec<String> = vec![];
    let mut warnings: Vec<String> = vec![];
    let dev = mode == Mode::Dev;
    let quota_declared = |name: &str| {
        let q = &manifest.quotas;
        match name {
            "timeout_ms" => q.timeout_ms.is_some(),
            "grace_ms" => q.grace_ms.is_some(),
            "memory_mb" => q.memory_mb.is_some(),
            "cpu_ms" => q.cpu_ms.is_some(),
            "pids" => q.pids.is_some(),
            "output_bytes" => q.output_bytes.is_some(),
            "file_size_mb" => q.file_size_mb.is_some(),
            _ => false,
        }
    };
    let host_quota = |name: &str| {
        let (h, u) = (&host.limits, crate::plugin::PolicyBuilder::unrestricted().limits);
        match name {
            "timeout_ms" => h.timeout_ms != u.timeout_ms,
            "grace_ms" => h.grace_ms != u.grace_ms,
            "memory_mb" => h.memory_mb != u.memory_mb,
            "cpu_ms" => h.cpu_ms != u.cpu_ms,
            "pids" => h.pids != u.pids,
            "output_bytes" => h.output_bytes != u.output_bytes,
            "file_size_mb" => h.file_size_mb != u.file_size_mb,
            _ => false,
        }
    };
    let source_of = |rule: &str| -> Source {
        for kind in ["fs.read ", "fs.write "] {
            if let Some(path) = rule.strip_prefix(kind) {
                let path = Path::new(path);
                return if path == plugin_dir {
                    Source::Implied
                } else if Some(path) == data_dir {
                    Source::Preset
                } else {
                    Source::Manifest
                };
            }
        }
        if let Some(q) = rule.strip_prefix("quota ") {
            let name = q.split('=').next().unwrap_or("");
            return if quota_declared(name) {
                Source::Manifest
            } else if host_quota(name) {
                Source::Host
            } else {
                Source::Baseline
            };
        }
        if ["fs.deny ", "net.allow ", "net.deny ", "exec ["].iter().any(|k| rule.starts_with(k)) {
            return Source::Manifest;
        }
        Source::Baseline
    };
    let mut env_mechanism = Some(cordon_core::plan::env_mechanism());
    match Plan::build(policy, mode, support) {
        Ok(plan) => {
            for e in plan.ledger {
                if e.rule == "env" {
                    env_mechanism = Some(e.mechanism.clone());
                }
                let problem = (e.enforcement == Enforcement::NotEnforced && !dev)
                    .then(|| format!("{} is not enforced by {}", e.rule, e.mechanism));
                problems.extend(problem.clone());
                entries.push(CheckEntry {
                    source: source_of(&e.rule),
                    permission: e.rule,
                    mechanism: Some(e.mechanism),
                    enforcement: Some(e.enforcement),
                    problem,
                });
            }
        }
        Err(e) => {
            let quota = match &e {
                PlanError::Quota { quota, .. } => Some(*quota),
                _ => None,
            };
            problems.push(format!("{e} (hint: {})", e.hint()));
            env_mechanism = None;
            for rule in declared_rules(policy) {
                let hit = quota.is_some_and(|q| rule.starts_with(&format!("quota {q}=")));
                entries.push(CheckEntry {
                    source: source_of(&rule),
                    permission: rule,
                    mechanism: None,
                    enforcement: None,
                    problem: Some(if hit { e.to_string() } else { format!("not planned: {e}") }),
                });
            }
        }
    }
    if dev {
        warnings.push("dev mode: nothing but the timeout is enforced; use it for trusted code only".into());
    }
    for p in &policy.env.allow {
        let text = serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let (mechanism, enforcement) = match (&env_mechanism, dev) {
            (_, true) => (Some("none (dev mode)".to_owned()), Some(Enforcement::NotEnforced)),
            (Some(m), false) => (Some(m.clone()), Some(Enforcement::Full)),
            (None, false) => (None, None),
        };
        entries.push(CheckEntry {
            permission: format!("env.allow {text}"),
            source: Source::Manifest,
            mechanism,
            enforcement,
            problem: None,
        });
    }
    if policy.limits.timeout_ms.is_some() && !dev {
        entries.push(CheckEntry {
            permission: format!("quota grace_ms={}", policy.limits.grace_ms),
            source: source_of("quota grace_ms="),
            mechanism: Some("supervisor (SIGTERM at the timeout, SIGKILL after grace_ms)".into()),
            enforcement: Some(Enforcement::Full),
            problem: None,
        });
    }
    // Outside dev mode the plan's ledger has the exec entry, gap included.
    if let (Some(exec), true) = (&policy.exec, dev) {
        let list: Vec<String> = exec.iter().map(|p| p.display().to_string()).collect();
        entries.push(CheckEntry {
            permission: format!("exec [{}]", list.join(", ")),
            source: Source::Manifest,
            mechanism: Some("none (dev mode)".into()),
            enforcement: Some(Enforcement::NotEnforced),
            problem: None,
        });
    }
    let caps = check_capabilities(&manifest.permissions.capabilities, granted);
    for c in &caps.granted {
        entries.push(CheckEntry {
            permission: format!("capability {c}"),
            source: Source::Manifest,
            mechanism: Some(format!("granted by the host application (named in {CAPABILITIES_ENV})")),
            enforcement: Some(Enforcement::Full),
            problem: None,
        });
    }
    for c in &caps.missing {
        let problem = format!(
            "capability `{c}` is required but not granted; pass --capability {c} if the host application provides it"
        );
        problems.push(problem.clone());
        entries.push(CheckEntry {
            permission: format!("capability {c}"),
            source: Source::Manifest,
            mechanism: None,
            enforcement: None,
            problem: Some(problem),
        });
    }
    let handlers = manifest
        .handlers
        .iter()
        .map(|(name, h)| HandlerInfo {
            name: name.clone(),
            command: h.command.clone(),
            description: h.description.clone(),
        })
        .collect();
    // What the manifest asks for, before the host narrowed it. (Its paths
    // resolved when the effective policy was made, so this cannot fail.)
    let declared = manifest.builder(plugin_dir, data_dir).map_or_else(|_| policy.clone(), PolicyBuilder::build);
    let kept = rules_with_env(policy);
    let narrowed_by_host = rules_with_env(&declared).into_iter().filter(|r| !kept.contains(r)).collect();
    PluginCheck {
        narrowed_by_host,
        plugin: manifest.id.to_string(),
        version: manifest.version.to_string(),
        description: manifest.description.clone(),
        manifest: manifest.path.clone(),
        handlers,
        mode,
        policy_digest: audit::policy_digest(policy),
        runnable: problems.is_empty(),
        entries,
        problems,
        warnings,
    }
}

/// [`declared_rules`] and the `env.allow` entries, in the ledger's words.
fn rules_with_env(policy: &Policy) -> Vec<String> {
    let mut out = declared_rules(policy);
    for p in &policy.env.allow {
        let text = serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        out.push(format!("env.allow {text}"));
    }
    out
}

/// The policy's entries in the ledger's words, for when no plan exists.
fn declared_rules(policy: &Policy) -> Vec<String> {
    let mut out = vec![];
    let fs = &policy.fs;
    for (kind, rules) in [("fs.read", &fs.read), ("fs.write", &fs.write), ("fs.deny", &fs.deny)] {
        out.extend(rules.iter().map(|r| format!("{kind} {}", r.path.display())));
    }
    for (kind, pats) in [("net.allow", &policy.net.allow), ("net.deny", &policy.net.deny)] {
        out.extend(
            pats.iter().map(|p| format!("{kind} {}{}", p.host, p.port.map(|p| format!(":{p}")).unwrap_or_default())),
        );
    }
    let l = &policy.limits;
    for (name, v) in [
        ("timeout_ms", l.timeout_ms),
        ("memory_mb", l.memory_mb),
        ("cpu_ms", l.cpu_ms),
        ("pids", l.pids),
        ("file_size_mb", l.file_size_mb),
        ("output_bytes", Some(l.output_bytes)),
    ] {
        out.extend(v.map(|v| format!("quota {name}={v}")));
    }
    out
}

/// What a plugin run returns: the [`ExecutionResult`] and, beside its
/// fields in the JSON form, the plugin, the trace and the stored artifacts.
#[derive(Clone, Debug, Serialize)]
pub struct HandlerResult {
    /// The run's result.
    #[serde(flatten)]
    pub result: ExecutionResult,
    /// Plugin id, version and handler, once the manifest was read.
    pub plugin: Option<PluginRef>,
    /// The W3C trace id the run belongs to (also in the audit record).
    pub trace_id: String,
    /// [`audit::policy_digest`] of the effective policy, once it was built.
    pub policy_digest: Option<String>,
    /// Files the handler left in `CORDON_ARTIFACTS`, now in the store.
    pub artifacts: Vec<Artifact>,
    /// Who and what the run's audit record names, as [`run_handler`]
    /// completed [`HandlerRequest::audit_subject`] (trace id, tenant,
    /// plugin, handler, command), with the run's secrets redacted: what a
    /// host that records runs itself puts in its record.
    #[serde(skip)]
    pub subject: Subject,
    /// Entries of `CORDON_ARTIFACTS` that were not stored, and why.
    pub artifacts_skipped: Vec<Skipped>,
}

/// Which plugin and handler ran.
#[derive(Clone, Debug, Serialize)]
pub struct PluginRef {
    /// `@scope/name`.
    pub id: String,
    /// Its version.
    pub version: String,
    /// The handler.
    pub handler: String,
}

impl std::ops::Deref for HandlerResult {
    type Target = ExecutionResult;
    fn deref(&self) -> &ExecutionResult {
        &self.result
    }
}

impl HandlerResult {
    /// The exit status of `cordon exec`: that of `cordon run`
    /// ([`ExecutionResult::exit_status`]), except that a handler that
    /// exited 0 without a valid result (`INVALID_RESULT`) gives 1.
    pub fn exit_status(&self) -> i32 {
        let status = self.result.exit_status();
        match &self.result.error {
            Some(e) if e.code == crate::ErrorCode::InvalidResult && status == 0 => 1,
            _ => status,
        }
    }
}

/// The run's own host folder, `cordon-exec-<request id>` under the run
/// root: the artifact folder and the Node preload. Held and removed as a
/// [`LockedDir`], so a folder left by a killed cordon is swept by a later
/// run that creates one.
#[derive(Debug)]
struct RunDir {
    path: PathBuf,
    _held: LockedDir,
}

const RUN_DIR_PREFIX: &str = "cordon-exec-";

impl RunDir {
    /// Made in `runs`, the run root's folder of run folders
    /// ([`cordon_core::state::make_runs_folder`]).
    fn create(runs: &Path, request_id: &str, when: Sweep) -> io::Result<RunDir> {
        let held = LockedDir::create(runs, RUN_DIR_PREFIX, &format!("{RUN_DIR_PREFIX}{request_id}"), when)?;
        let path = held.path().to_owned();
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(path.join("artifacts"))?;
        Ok(RunDir { path, _held: held })
    }

    fn artifacts(&self) -> PathBuf {
        self.path.join("artifacts")
    }
}

/// Everything a run needs, once nothing can refuse it any more.
struct Ready {
    run: RunRequest,
    digest: String,
    run_dir: RunDir,
    plugin: PluginRef,
    command: Vec<String>,
}

/// Runs one handler; see the module docs. Never panics on user error:
/// every failure is a result with an error code, and with
/// [`HandlerRequest::audit`] set, every call leaves exactly one record.
pub fn run_handler(req: &HandlerRequest) -> HandlerResult {
    run_handler_answering(req).0
}

/// What is left of a handler's run once its result is known: the
/// sandbox's teardown ([`crate::Aftermath`]), then its run folder.
/// Dropping it waits for the teardown, then removes the folder; until
/// then no process of the run but its init, in its `_exit`, is left. Hold
/// it only across the caller's own work (recording, answering), on the
/// thread that ran the handler, and drop it before that thread ends.
#[derive(Debug, Default)]
#[must_use = "dropping it waits for the sandbox's teardown"]
pub struct HandlerAftermath {
    // Held only to be dropped, in this order: the sandbox goes before its
    // run folder.
    _after: crate::Aftermath,
    _run_dir: Option<RunDir>,
}

/// [`run_handler`], returning as soon as the result is known, with what
/// is left of the run: a host that records and answers runs itself does
/// that while the sandbox's init tears its namespaces down, then drops the
/// [`HandlerAftermath`].
pub fn run_handler_answering(req: &HandlerRequest) -> (HandlerResult, HandlerAftermath) {
    let request_id = req.request_id.clone().unwrap_or_else(crate::new_request_id);
    let trace = TraceParent::from_caller_or_new(req.traceparent.as_deref());
    let mut subject = Subject {
        trace_id: trace.trace_id_hex(),
        tenant: req.tenant.clone(),
        handler: Some(req.handler.clone()),
        ..req.audit_subject.clone()
    };
    let mut out = HandlerResult {
        result: ExecutionResult::unstarted(&request_id, req.mode.unwrap_or(Mode::Container), String::new()),
        plugin: None,
        trace_id: trace.trace_id_hex(),
        policy_digest: None,
        artifacts: vec![],
        artifacts_skipped: vec![],
        subject: Subject::default(),
    };
    let secrets_of = |p: &Policy| audit::secret_values(p, &req.host_env);
    let known_mode = std::cell::Cell::new(None);
    let ready = match get_ready(req, &request_id, &trace, &mut subject, &mut out, &known_mode) {
        Ok(r) => r,
        Err(failed) => {
            let (e, policy) = *failed;
            let secrets = policy.as_ref().map(secrets_of).unwrap_or_default();
            out.result.error = Some(crate::ResultError { code: crate::ErrorCode::SetupFailed, message: e.render() });
            out.result.redact(&secrets);
            out.subject = audit::redacted_subject(&subject, &secrets);
            if let Some(trail) = &req.audit {
                let ending = out.result.audit_ending(out.policy_digest.as_deref().unwrap_or_default());
                let mode = known_mode.get().or(req.mode);
                if let Err(e) = trail.record_unstarted(&subject, &request_id, mode, ending, &secrets) {
                    out.result.warnings.push(PluginError::from(e).render());
                }
            }
            return (out, HandlerAftermath::default());
        }
    };
    let secrets = secrets_of(&ready.run.policy);
    subject.command = Some(ready.command.clone());
    out.subject = audit::redacted_subject(&subject, &secrets);
    let started = match req.audit.as_ref().map(|t| t.begin(&subject, &request_id, Some(ready.run.mode))).transpose() {
        Ok(s) => s,
        Err(e) => {
            out.result.error = Some(crate::ResultError {
                code: crate::ErrorCode::SetupFailed,
                message: PluginError::from(e).render(),
            });
            out.result.redact(&secrets);
            return (out, HandlerAftermath::default());
        }
    };
    // Artifacts are collected and the record written while the sandbox's
    // init tears its namespaces down; the run folder goes once it is gone.
    let (mut result, after) = crate::runner::run_answering(&ready.run);
    let warnings = std::mem::take(&mut out.result.warnings);
    result.warnings.splice(0..0, warnings);
    let vars = cordon_plugin::artifacts::TemplateVars {
        plugin: ready.plugin.id.clone(),
        version: ready.plugin.version.clone(),
        handler: ready.plugin.handler.clone(),
        request_id: request_id.clone(),
        tenant: req.tenant.clone(),
    };
    store_artifacts(&req.store, &ready.run_dir, &vars, &mut out, &mut result);
    result.redact(&secrets);
    if let Some(started) = started {
        if let Err(e) = started.complete(result.audit_ending(&ready.digest), &secrets) {
            result.warnings.push(PluginError::from(e).render());
        }
    }
    out.result = result;
    (out, HandlerAftermath { _after: after, _run_dir: Some(ready.run_dir) })
}

/// Moves what the handler left in its artifacts folder to the store (or
/// warns that it was discarded).
fn store_artifacts(
    store: &ArtifactStore,
    run_dir: &RunDir,
    vars: &cordon_plugin::artifacts::TemplateVars,
    out: &mut HandlerResult,
    result: &mut ExecutionResult,
) {
    match &store.root {
        Some(root) => {
            match cordon_plugin::artifacts::collect(&run_dir.artifacts(), root, &store.template, vars, &store.limits) {
                Ok(c) => {
                    out.artifacts = c.artifacts;
                    out.artifacts_skipped = c.skipped;
                }
                Err(e) => {
                    let hint = e.hint().map(|h| format!(" (hint: {h})")).unwrap_or_default();
                    let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
                    result.warnings.push(format!("artifacts were not stored: {e}{cause}{hint}"));
                }
            }
        }
        None => {
            if std::fs::read_dir(run_dir.artifacts()).is_ok_and(|mut d| d.next().is_some()) {
                result.warnings.push(
                    "artifacts were discarded: there is no artifact store (set HOME, or pass --artifact-store DIR)"
                        .into(),
                );
            }
        }
    }
}

/// A handler's run set up up to its command's start ([`park_handler`]):
/// the manifest read and checked, the policy built, the run's folder made
/// and the sandbox parked ([`crate::Parked`]). [`ParkedHandler::start`]
/// runs it for one request. Used once; dropped unstarted, the sandbox is
/// killed and reaped and its folders removed.
#[derive(Debug)]
pub struct ParkedHandler {
    // First: the sandbox goes before its folders.
    parked: crate::runner::Parked,
    run_dir: RunDir,
    out: HandlerResult,
    subject: Subject,
    secrets: Vec<String>,
    store: ArtifactStore,
}

/// What a [`ParkedHandler`] learns from its request.
#[derive(Clone, Debug, Default)]
pub struct HandlerStart {
    /// The request id of the result (the parked run's own id names its
    /// folders).
    pub request_id: String,
    /// The input JSON.
    pub input: Vec<u8>,
    /// The caller's W3C `traceparent`; an invalid or missing one starts a
    /// new trace.
    pub traceparent: Option<String>,
    /// On whose behalf (audit and artifact names).
    pub tenant: Option<String>,
    /// As [`HandlerRequest::audit_subject`].
    pub audit_subject: Subject,
    /// Ends the run early.
    pub cancel: Option<crate::runner::Cancel>,
    /// As [`crate::Start::on_exec`].
    pub on_exec: Option<crate::runner::OnExec>,
}

/// Sets a handler's run up up to its command's start (see
/// [`ParkedHandler`]), for a host that records runs itself: `req.audit`
/// must be `None`, and its `input`, `traceparent`, `tenant`,
/// `audit_subject` and `cancel` are replaced by the [`HandlerStart`]'s.
/// A run that cannot be set up returns its result (boxed: it is large), as
/// [`run_handler`] would.
pub fn park_handler(req: &HandlerRequest) -> Result<ParkedHandler, Box<HandlerResult>> {
    park_from(req, Planned::Now(None))
}

/// The part of a handler's run that depends on the plugin's manifest, the
/// handler and the host's side of the request ([`HandlerRequest`]'s
/// `plugin_dir`, `handler`, `mode`, `host`, `workdir`, `data_dir`,
/// `capabilities` and `support`), not on the execution: the manifest
/// parsed, the effective policy, the mode, the ledger's verdict and
/// warnings, the policy digest and the handler's command. Made by
/// [`plan_handler`], used by [`park_planned`] for any number of runs.
///
/// A plan is a snapshot of the manifest it was made from. A host that
/// keeps one across runs must know that the manifest has not changed
/// since: [`plan_handler`] takes the manifest's bytes, so that a host that
/// verified them (a registry's signed tree, by the file's hash) plans from
/// exactly what it verified, and keys the plan by that verification (a
/// tree hash). What the plan does not hold is looked at for every run as
/// before: the data folder is made if missing, the program is looked up
/// and every path opened by the sandbox's setup, and the plugin's files
/// are read by the sandbox when the command runs.
#[derive(Clone, Debug)]
pub struct HandlerPlan {
    plugin_dir: PathBuf,
    data_dir: Option<PathBuf>,
    policy: Policy,
    mode: Mode,
    support: KernelSupport,
    warnings: Vec<String>,
    digest: String,
    plugin: PluginRef,
    /// The capabilities granted, when the manifest requires any.
    capabilities: Option<Vec<String>>,
    argv: Vec<String>,
    cwd: PathBuf,
}

impl HandlerPlan {
    /// Which plugin, version and handler it runs.
    pub fn plugin(&self) -> &PluginRef {
        &self.plugin
    }

    /// The data folder its runs may write (the `platform` preset's), if
    /// any: a plan with one is made for one data folder (one tenant's).
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// [`audit::policy_digest`] of its effective policy.
    pub fn policy_digest(&self) -> &str {
        &self.digest
    }

    /// Notes what the plan knows in a run's subject and result.
    fn note(&self, subject: &mut Subject, out: &mut HandlerResult, known_mode: &std::cell::Cell<Option<Mode>>) {
        subject.plugin = Some(self.plugin.id.clone());
        subject.plugin_version = Some(self.plugin.version.clone());
        out.plugin = Some(self.plugin.clone());
        out.result.mode = self.mode;
        known_mode.set(Some(self.mode));
        out.result.warnings.extend(self.warnings.iter().cloned());
        out.policy_digest = Some(self.digest.clone());
    }
}

/// The [`HandlerPlan`] of `req`'s handler, from `manifest`: the bytes of
/// the plugin's `cordon.toml` as the caller read (and verified) them; the
/// file in the folder is not read. Refused as [`park_handler`] would refuse
/// the run (an invalid manifest, an unknown handler, a policy this host
/// cannot enforce): the result says why.
pub fn plan_handler(req: &HandlerRequest, manifest: &[u8]) -> Result<HandlerPlan, Box<HandlerResult>> {
    let request_id = req.request_id.clone().unwrap_or_else(crate::new_request_id);
    let mut subject = Subject { handler: Some(req.handler.clone()), ..Subject::default() };
    let mut out = unstarted_out(req, &request_id);
    let known_mode = std::cell::Cell::new(None);
    plan_of(req, Some(manifest), &mut subject, &mut out, &known_mode)
        .map_err(|failed| refused(req, *failed, &subject, out))
}

/// [`park_handler`] from a [`HandlerPlan`]: the plan's plugin, handler,
/// mode, policy, working directory, data folder and capabilities; of
/// `req`, only what is the run's own (request id, run root, environment,
/// protected files, signals, sweep, artifact store, result size).
pub fn park_planned(plan: &HandlerPlan, req: &HandlerRequest) -> Result<ParkedHandler, Box<HandlerResult>> {
    park_from(req, Planned::Given(plan))
}

/// Where [`park_from`]'s plan comes from.
enum Planned<'a> {
    /// Made now, from the manifest given or the one in the folder.
    Now(Option<&'a [u8]>),
    /// Made before.
    Given(&'a HandlerPlan),
}

/// A run's result before anything is known.
fn unstarted_out(req: &HandlerRequest, request_id: &str) -> HandlerResult {
    HandlerResult {
        result: ExecutionResult::unstarted(request_id, req.mode.unwrap_or(Mode::Container), String::new()),
        plugin: None,
        trace_id: String::new(),
        policy_digest: None,
        artifacts: vec![],
        artifacts_skipped: vec![],
        subject: Subject::default(),
    }
}

/// The result of a run refused in its setup.
fn refused(
    req: &HandlerRequest,
    (e, policy): (PluginError, Option<Policy>),
    subject: &Subject,
    mut out: HandlerResult,
) -> Box<HandlerResult> {
    let secrets = policy.as_ref().map(|p| audit::secret_values(p, &req.host_env)).unwrap_or_default();
    out.result.error = Some(crate::ResultError { code: crate::ErrorCode::SetupFailed, message: e.render() });
    out.result.redact(&secrets);
    out.subject = audit::redacted_subject(subject, &secrets);
    Box::new(out)
}

fn park_from(req: &HandlerRequest, planned: Planned<'_>) -> Result<ParkedHandler, Box<HandlerResult>> {
    let request_id = req.request_id.clone().unwrap_or_else(crate::new_request_id);
    // A placeholder: its child goes into TRACEPARENT, which the start
    // overwrites (the same length).
    let trace = TraceParent::generate();
    let mut subject = Subject { handler: Some(req.handler.clone()), ..Subject::default() };
    let mut out = unstarted_out(req, &request_id);
    let unaudited = HandlerRequest { audit: None, input: b"{}".to_vec(), ..req.clone() };
    let known_mode = std::cell::Cell::new(None);
    let ready =
        crate::check_request_id(&request_id).map_err(|e| Box::new((e.into(), None))).and_then(|()| match planned {
            Planned::Now(given) => plan_of(&unaudited, given, &mut subject, &mut out, &known_mode)
                .and_then(|plan| ready_of(&plan, &unaudited, &request_id, &trace)),
            Planned::Given(plan) => {
                subject.handler = Some(plan.plugin.handler.clone());
                plan.note(&mut subject, &mut out, &known_mode);
                ready_of(plan, &unaudited, &request_id, &trace)
            }
        });
    let ready = match ready {
        Ok(r) => r,
        Err(failed) => return Err(refused(req, *failed, &subject, out)),
    };
    let secrets = audit::secret_values(&ready.run.policy, &req.host_env);
    subject.command = Some(ready.command.clone());
    let parked = crate::runner::park(&ready.run).map_err(|failed| {
        // As `run_handler` reports it: the check's warnings first.
        let warnings = std::mem::take(&mut out.result.warnings);
        out.result = *failed;
        out.result.warnings.splice(0..0, warnings);
        out.result.redact(&secrets);
        out.subject = audit::redacted_subject(&subject, &secrets);
        Box::new(out.clone())
    })?;
    Ok(ParkedHandler { parked, run_dir: ready.run_dir, out, subject, secrets, store: req.store.clone() })
}

impl ParkedHandler {
    /// Pid of the sandbox's init, in cordon's pid namespace.
    pub fn pid(&self) -> libc::pid_t {
        self.parked.pid()
    }

    /// Whether the sandbox died while parked (see [`crate::Parked::is_dead`]).
    pub fn is_dead(&self) -> bool {
        self.parked.is_dead()
    }

    /// Runs the parked handler for one request and returns its result, as
    /// [`run_handler`] would (without an audit trail: the host records it,
    /// from [`HandlerResult::subject`]).
    pub fn start(self, start: HandlerStart) -> HandlerResult {
        self.start_answering(start).0
    }

    /// [`ParkedHandler::start`], returning as soon as the result is known,
    /// with what is left of the run (see [`run_handler_answering`]).
    pub fn start_answering(self, start: HandlerStart) -> (HandlerResult, HandlerAftermath) {
        let ParkedHandler { parked, run_dir, mut out, subject, secrets, store } = self;
        let trace = TraceParent::from_caller_or_new(start.traceparent.as_deref());
        out.trace_id = trace.trace_id_hex();
        out.result.request_id = start.request_id.clone();
        let subject = Subject {
            trace_id: trace.trace_id_hex(),
            tenant: start.tenant.clone(),
            plugin: subject.plugin,
            plugin_version: subject.plugin_version,
            handler: subject.handler,
            command: subject.command,
            ..start.audit_subject
        };
        out.subject = audit::redacted_subject(&subject, &secrets);
        if let Err(e) = check_input(&start.input).and_then(|()| Ok(crate::check_request_id(&start.request_id)?)) {
            out.result.error = Some(crate::ResultError { code: crate::ErrorCode::SetupFailed, message: e.render() });
            // The sandbox goes before its run folder.
            drop(parked);
            drop(run_dir);
            return (out, HandlerAftermath::default());
        }
        let (mut result, after) = parked.start_answering(crate::runner::Start {
            request_id: Some(start.request_id.clone()),
            input: Some(start.input),
            traceparent: Some(trace.child().to_string()),
            cancel: start.cancel,
            on_exec: start.on_exec,
        });
        let warnings = std::mem::take(&mut out.result.warnings);
        result.warnings.splice(0..0, warnings);
        let plugin = out.plugin.clone().expect("set when the manifest was read");
        let vars = cordon_plugin::artifacts::TemplateVars {
            plugin: plugin.id,
            version: plugin.version,
            handler: plugin.handler,
            request_id: start.request_id,
            tenant: start.tenant,
        };
        store_artifacts(&store, &run_dir, &vars, &mut out, &mut result);
        result.redact(&secrets);
        out.result = result;
        (out, HandlerAftermath { _after: after, _run_dir: Some(run_dir) })
    }
}

/// A handler's input: one JSON value of at most [`MAX_INPUT_BYTES`].
fn check_input(input: &[u8]) -> Result<(), PluginError> {
    if input.len() > MAX_INPUT_BYTES {
        let reason = format!("it is {} bytes; at most {MAX_INPUT_BYTES} are accepted", input.len());
        return Err(PluginError::Input { reason });
    }
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(input) {
        return Err(PluginError::Input { reason: format!("not one JSON value: {e}") });
    }
    Ok(())
}

/// A setup failure, with the policy if one was built (for redaction).
type SetupFailure = Box<(PluginError, Option<Policy>)>;

/// Everything up to the start; an error comes with the policy, if one was
/// built (for redaction).
fn get_ready(
    req: &HandlerRequest,
    request_id: &str,
    trace: &TraceParent,
    subject: &mut Subject,
    out: &mut HandlerResult,
    known_mode: &std::cell::Cell<Option<Mode>>,
) -> Result<Ready, SetupFailure> {
    check_input(&req.input).map_err(|e| Box::new((e, None)))?;
    crate::check_request_id(request_id).map_err(|e| Box::new((e.into(), None)))?;
    let plan = plan_of(req, req.manifest.as_deref(), subject, out, known_mode)?;
    ready_of(&plan, req, request_id, trace)
}

/// The plan of `req`'s handler (the manifest `given`, or the one in its
/// folder), noting what it learns in `subject` and `out` as it goes, so a
/// failure says as much as is known.
fn plan_of(
    req: &HandlerRequest,
    given: Option<&[u8]>,
    subject: &mut Subject,
    out: &mut HandlerResult,
    known_mode: &std::cell::Cell<Option<Mode>>,
) -> Result<HandlerPlan, SetupFailure> {
    let prepared = prepare(req, DataDir::Create, given).map_err(|e| Box::new((e, None)))?;
    let Prepared { manifest, plugin_dir, data_dir, policy, mode, support, check } = prepared;
    let plugin =
        PluginRef { id: manifest.id.to_string(), version: manifest.version.to_string(), handler: req.handler.clone() };
    let mut plan = HandlerPlan {
        plugin_dir,
        data_dir,
        policy,
        mode,
        support,
        warnings: check.warnings.clone(),
        digest: check.policy_digest.clone(),
        plugin,
        capabilities: None,
        argv: vec![],
        cwd: PathBuf::new(),
    };
    plan.note(subject, out, known_mode);
    let (plugin_dir, policy) = (&plan.plugin_dir, &plan.policy);
    let fail = |e: PluginError, p: &Policy| Err(Box::new((e, Some(p.clone()))));
    let resolved = match manifest.resolve_handler(&req.handler, plugin_dir, cordon_core::policy::env::DEFAULT_PATH) {
        Ok(r) => r,
        Err(e) => return fail(e.into(), policy),
    };
    if !check.runnable {
        return fail(
            PluginError::Refused { plugin: plan.plugin.id.clone(), mode: mode.as_str(), problems: check.problems },
            policy,
        );
    }
    // Arguments naming a file of the plugin folder become absolute, so the
    // handler may run in another working directory.
    let mut argv = vec![resolved.program.to_string_lossy().into_owned()];
    argv.extend(resolved.argv.iter().skip(1).map(|a| {
        let p = plugin_dir.join(a);
        if !a.starts_with('-') && !Path::new(a).is_absolute() && p.exists() {
            p.to_string_lossy().into_owned()
        } else {
            a.clone()
        }
    }));
    let cwd = match &req.workdir {
        None => plugin_dir.clone(),
        Some(w) => {
            let abs = match std::fs::canonicalize(w) {
                Ok(p) if p.is_dir() => p,
                Ok(_) => {
                    return fail(PluginError::Workdir { path: w.clone(), reason: "not a directory".into() }, policy)
                }
                Err(e) => return fail(PluginError::Workdir { path: w.clone(), reason: e.to_string() }, policy),
            };
            if let Err(d) = crate::check_fs(policy, &abs, crate::Access::Read) {
                return fail(PluginError::Workdir { path: abs, reason: d.reason }, policy);
            }
            abs
        }
    };
    if !manifest.permissions.capabilities.is_empty() {
        plan.capabilities = Some(check_capabilities(&manifest.permissions.capabilities, &req.capabilities).granted);
    }
    plan.argv = argv;
    plan.cwd = cwd;
    Ok(plan)
}

/// The run of `plan` for one execution: its run folder made, the per-run
/// grants and variables added to the plan's policy.
fn ready_of(
    plan: &HandlerPlan,
    req: &HandlerRequest,
    request_id: &str,
    trace: &TraceParent,
) -> Result<Ready, SetupFailure> {
    let mut policy = plan.policy.clone();
    let fail = |e: PluginError, p: &Policy| Err(Box::new((e, Some(p.clone()))));
    // Made again for each run: a data folder removed since the plan was
    // made is there again, as a run without a plan would make it.
    if let Some(dir) = &plan.data_dir {
        if let Err(source) = create_private_dir(dir) {
            return fail(PluginError::DataDir { path: dir.clone(), source }, &policy);
        }
    }
    let sweep = match req.audit.as_ref().is_some_and(|t| t.recovered() > 0) {
        true => Sweep::Now,
        false => req.sweep,
    };
    // Refused before the run rather than after it: its files would have
    // nowhere to go.
    if let Some(root) = &req.store.root {
        if let Err(e) = cordon_plugin::artifacts::check_store_root(root) {
            return fail(PluginError::Store(e), &policy);
        }
    }
    let runs = match cordon_core::state::make_runs_folder(&req.run_root) {
        Ok(r) => r,
        Err(e) => return fail(PluginError::RunsFolder(e), &policy),
    };
    let run_dir = match RunDir::create(&runs, request_id, sweep) {
        Ok(d) => d,
        Err(source) => {
            let path = runs.join(format!("{RUN_DIR_PREFIX}{request_id}"));
            return fail(PluginError::RunDir { path, source }, &policy);
        }
    };
    // Per-run grants and variables come after the digest: the digest names
    // the approved policy, the same for every run of it.
    policy.fs.write.push(PathRule { path: run_dir.artifacts() });
    policy.env.set.push((ARTIFACTS_ENV.into(), run_dir.artifacts().to_string_lossy().into_owned()));
    policy.env.set.push((cordon_plugin::traceparent::ENV.into(), trace.child().to_string()));
    if let Some(granted) = &plan.capabilities {
        policy.env.set.push((CAPABILITIES_ENV.into(), granted.join(",")));
    }
    // Only the proxy needs help: with transparent egress Node's fetch
    // connects like any other program.
    if !policy.net.allow.is_empty() && policy.net.via == cordon_core::policy::NetVia::Proxy {
        let preload = run_dir.path.join("node-fetch-proxy.cjs");
        if let Err(source) = std::fs::write(&preload, NODE_FETCH_PRELOAD) {
            return fail(PluginError::RunDir { path: preload, source }, &policy);
        }
        let inherited = req
            .host_env
            .iter()
            .find(|(k, _)| k == "NODE_OPTIONS")
            .filter(|_| crate::check_env(&policy, "NODE_OPTIONS").is_ok())
            .map(|(_, v)| format!("{v} "))
            .unwrap_or_default();
        policy.fs.read.push(PathRule { path: preload.clone() });
        policy.env.set.push(("NODE_OPTIONS".into(), format!("{inherited}--require {}", preload.display())));
    }
    let run = RunRequest {
        policy,
        mode: plan.mode,
        argv: plan.argv.clone(),
        cwd: plan.cwd.clone(),
        capture: Capture::Logs,
        host_env: req.host_env.clone(),
        request_id: Some(request_id.to_owned()),
        warnings: vec![],
        support: Some(plan.support.clone()),
        stdin: Input::Bytes(req.input.clone()),
        result: Some(ResultChannel { max_bytes: req.max_result_bytes }),
        protect: req
            .audit
            .as_ref()
            .map(AuditTrail::protected)
            .unwrap_or_default()
            .into_iter()
            .chain(req.protect.iter().cloned())
            .chain(req.store.root.as_ref().map(|root| {
                Protected::folder(root, "cordon's artifact store: files of earlier runs, and where this run's go")
            }))
            .collect(),
        own_folders: std::iter::once(plan.plugin_dir.clone()).chain(plan.data_dir.clone()).collect(),
        run_folder: Some(run_dir.path.clone()),
        tty: crate::Tty::Off,
        cancel: req.cancel.clone(),
        signals: req.signals,
        net_hints: cordon_egress::kernel::HintStyle::Manifest,
        follow_links: req.follow_links,
    };
    Ok(Ready { run, digest: plan.digest.clone(), run_dir, plugin: plan.plugin.clone(), command: plan.argv.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        Manifest::parse(text, Path::new("/p/cordon.toml")).unwrap()
    }

    const BASE: &str = "id = \"@t/p\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"./run.sh\"]\n";

    #[test]
    fn host_flags_narrow_but_the_plugin_folder_stays_readable() {
        let m = manifest(&format!("{BASE}[permissions]\nfs.write = [\"/srv/out\"]\nnet.allow = [\"*.example.com\"]\n"));
        let mut host = PolicyBuilder::unrestricted();
        host.fs.read = vec![PathRule { path: "/srv".into() }];
        host.fs.write = vec![];
        host.net.allow = vec![cordon_core::policy::NetPattern::parse("api.example.com:443").unwrap()];
        let p = effective_policy(&m, Path::new("/p"), None, &host).unwrap();
        assert!(p.fs.write.is_empty(), "write needs write on both sides");
        assert!(p.fs.read.iter().any(|r| r.path == Path::new("/p")));
        assert!(p.fs.read.iter().any(|r| r.path == Path::new("/srv/out")));
        assert_eq!(p.net.allow.len(), 1);
        assert_eq!(p.net.allow[0].host, "api.example.com");
    }

    #[test]
    fn ledger_lists_every_declared_entry_and_refuses_what_cannot_be_enforced() {
        let m = manifest(&format!(
            "{BASE}[permissions]\nfs.read = [\"data\"]\nenv.allow = [\"TOKEN\"]\nexec = [\"/bin/sh\"]\ncapabilities = [\"llm\", \"cache:x\"]\n[quotas]\ntimeout_ms = 500\nmemory_mb = 64\n"
        ));
        let policy = effective_policy(&m, Path::new("/p"), None, &PolicyBuilder::unrestricted()).unwrap();
        let check = ledger(
            &m,
            &policy,
            Mode::Process,
            &KernelSupport::fixture_full(),
            &["cache:x".into()],
            Path::new("/p"),
            None,
            &PolicyBuilder::unrestricted(),
        );
        let find = |p: &str| {
            check
                .entries
                .iter()
                .find(|e| e.permission == p)
                .unwrap_or_else(|| panic!("no entry {p}: {:#?}", check.entries))
        };
        assert_eq!(find("fs.read /p").source, Source::Implied);
        assert_eq!(find("fs.read /p/data").source, Source::Manifest);
        assert_eq!(find("env.allow TOKEN").enforcement, Some(Enforcement::Full));
        assert_eq!(find("quota timeout_ms=500").source, Source::Manifest);
        assert!(find("quota memory_mb=64").mechanism.is_some());
        assert!(find("quota grace_ms=1000").mechanism.is_some());
        assert!(find("capability cache:x").problem.is_none());
        assert!(find("capability llm").problem.as_deref().unwrap().contains("--capability llm"));
        let exec = find("exec [/bin/sh]");
        assert_eq!(exec.enforcement, Some(Enforcement::Partial));
        assert!(exec.mechanism.as_deref().unwrap().contains(cordon_core::plan::EXEC_LIST_GAP));
        assert_eq!(check.entries.iter().filter(|e| e.permission.starts_with("exec ")).count(), 1);
        assert!(!check.runnable);
        assert_eq!(check.problems.len(), 1, "{:#?}", check.problems);
    }

    #[test]
    fn an_unplannable_quota_is_named() {
        let m = manifest(&format!("{BASE}[quotas]\npids = 8\n"));
        let policy = effective_policy(&m, Path::new("/p"), None, &PolicyBuilder::unrestricted()).unwrap();
        let check = ledger(
            &m,
            &policy,
            Mode::Process,
            &KernelSupport { cgroups: Default::default(), ..KernelSupport::fixture_full() },
            &[],
            Path::new("/p"),
            None,
            &PolicyBuilder::unrestricted(),
        );
        assert!(!check.runnable);
        let pids = check.entries.iter().find(|e| e.permission == "quota pids=8").expect("pids entry");
        assert!(pids.problem.as_deref().unwrap().contains("quota pids cannot be enforced"), "{pids:?}");
    }
}
