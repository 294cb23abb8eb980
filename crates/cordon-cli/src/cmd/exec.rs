//! `cordon exec`: run one handler of a plugin folder, and the flags it
//! shares with `cordon check`.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use cordon::audit::Subject;
use cordon::plugin::{HandlerRequest, HandlerResult, PluginId, PolicyBuilder, Template, MAX_INPUT_BYTES};
use cordon::{EnvPattern, ErrorCode, Mode, NetPattern, Policy, SystemSet, WriteXorExecute};

use crate::render;

#[derive(Args, Debug)]
#[command(after_help = "The handler's result (the JSON it writes to fd 3) is printed on stdout; its own output is \
printed on stderr after the run, secrets redacted. With --json, one result object is printed instead.\n\n\
Exit status: the handler's own; 128+N if signal N ended it (memory, CPU and pids kills included); 124 at the \
timeout; 125 if cordon refused to start it (bad flags, invalid manifest, unknown handler, a permission this host \
cannot enforce); 126 not executable; 127 not found; 1 if it exited 0 without a valid result (INVALID_RESULT), \
and 1 if the registry refused an installed plugin (not installed, disabled, invalid or modified signature state).")]
pub struct ExecArgs {
    /// An installed plugin (`@scope/name`, verified before it runs) or a plugin folder (holding cordon.toml).
    #[arg(value_name = "ID|DIR")]
    plugin: String,
    /// The handler to run.
    #[arg(value_name = "HANDLER")]
    handler: String,
    /// The input JSON: a file, or `-` for stdin. Default: stdin when it is not a terminal (empty: `{}`), else `{}`.
    #[arg(long, value_name = "FILE|-")]
    input: Option<PathBuf>,
    /// The handler's working directory (default: the plugin folder); the policy must grant it.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Isolation tier. Default: container where this host supports the policy, else process (with a notice).
    #[arg(long, value_name = "container|process|dev")]
    mode: Option<String>,
    /// Capture everything and print one result object (ExecutionResult plus plugin, trace and artifacts) on stdout.
    #[arg(long)]
    json: bool,
    /// The tenant the run is on behalf of (recorded in the audit log).
    #[arg(long, value_name = "T")]
    tenant: Option<String>,
    /// The caller's W3C traceparent (default: $TRACEPARENT, else a new trace).
    #[arg(long, value_name = "V")]
    traceparent: Option<String>,
    /// The audit log (default: $CORDON_AUDIT_LOG, else $XDG_STATE_HOME/cordon/audit.jsonl or ~/.local/state/cordon/audit.jsonl).
    #[arg(long, value_name = "PATH")]
    audit_log: Option<PathBuf>,
    #[command(flatten)]
    plugin_opts: PluginArgs,
    #[command(flatten)]
    narrow: NarrowArgs,
}

// Host-side settings of a plugin run, shared with `cordon check`.
// (A plain comment: the doc comment of a flattened struct would become the
// summary of each command that flattens it; see `Command` in lib.rs.)
#[derive(Args, Debug)]
pub struct PluginArgs {
    /// The data folder of a plugin that extends the platform preset (default: $XDG_DATA_HOME/cordon/data/@scope/name).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The artifact store (default: $CORDON_ARTIFACT_STORE, else $XDG_DATA_HOME/cordon/artifacts).
    #[arg(long, value_name = "DIR")]
    artifact_store: Option<PathBuf>,
    /// Layout of the store (default: {plugin}/{version}/{handler}/{request_id}).
    #[arg(long, value_name = "TEMPLATE")]
    artifact_template: Option<String>,
    /// A capability this host grants the plugin (`llm`, `cache:results`, ...). Repeatable.
    #[arg(long = "capability", value_name = "NAME")]
    capabilities: Vec<String>,
}

// The `run` flags that narrow a manifest's policy. They never widen it:
// each one is intersected with what the manifest declares.
// (A plain comment: the doc comment of a flattened struct would become the
// summary of each command that flattens it; see `Command` in lib.rs.)
#[derive(Args, Debug)]
pub struct NarrowArgs {
    /// Keep only manifest paths within these trees (read access). Repeatable.
    #[arg(long = "read", value_name = "PATH")]
    read: Vec<String>,
    /// Keep write access only within these trees. Repeatable.
    #[arg(long = "write", value_name = "PATH")]
    write: Vec<String>,
    /// Carve a path out of the manifest's grants. Repeatable.
    #[arg(long = "deny", value_name = "PATH")]
    deny: Vec<String>,
    /// Keep only manifest hosts matching these patterns. Repeatable.
    #[arg(long = "net", value_name = "PATTERN")]
    net: Vec<String>,
    /// How allowed hosts are reached: `kernel` (default) or `proxy` (HTTP_PROXY only).
    #[arg(long = "net-via", value_name = "kernel|proxy")]
    net_via: Option<String>,
    /// Keep only manifest variables matching these patterns. Repeatable.
    #[arg(long = "env", value_name = "PATTERN")]
    env: Vec<String>,
    /// Drop the read-only system set.
    #[arg(long)]
    no_system: bool,
    /// Lower the wall-clock limit (ms).
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Lower the time between SIGTERM and SIGKILL (ms).
    #[arg(long, value_name = "N")]
    grace_ms: Option<u64>,
    /// Lower the memory limit (MiB).
    #[arg(long, value_name = "N")]
    memory_mb: Option<u64>,
    /// Lower the CPU time limit (ms).
    #[arg(long, value_name = "N")]
    cpu_ms: Option<u64>,
    /// Lower the process limit.
    #[arg(long, value_name = "N")]
    pids: Option<u64>,
    /// Lower the largest file size (MiB).
    #[arg(long, value_name = "N")]
    file_size_mb: Option<u64>,
    /// Lower the captured output limit (bytes).
    #[arg(long, value_name = "N")]
    output_bytes: Option<u64>,
    /// Refuse memory that is writable and executable at once.
    #[arg(long)]
    deny_wx: bool,
    /// Follow a symbolic link on the way to a --read/--write path or a manifest's fs.*/exec path that lies in a folder a run may write; by default such a link refuses the run, since an earlier run may have made it. Each link followed is named on stderr (and a manifest's in the result's enforcement list).
    #[arg(long)]
    follow_links: bool,
}

impl NarrowArgs {
    /// The host policy: [`PolicyBuilder::unrestricted`] with the parts these
    /// flags set replaced. Errors name the flag.
    pub fn host_policy(&self, cwd: &Path) -> Result<Policy> {
        let mut p = PolicyBuilder::unrestricted();
        // Narrowing compares the manifest's resolved paths with these:
        // resolved too. The effective policy's rules are the manifest's,
        // pinned where a write grant holds them; a deny is added to them as
        // written, and resolved there (a link in a write grant refuses it).
        if !self.read.is_empty() || !self.write.is_empty() {
            p.fs.read = super::resolved_path_flags("read", &self.read, cwd, self.follow_links)?;
            p.fs.write = super::resolved_path_flags("write", &self.write, cwd, self.follow_links)?;
        }
        p.fs.deny = super::path_flags("deny", &self.deny, cwd)?;
        if self.no_system {
            p.fs.system = SystemSet::Exclude;
        }
        if !self.net.is_empty() {
            p.net.allow = self
                .net
                .iter()
                .map(|n| NetPattern::parse(n).with_context(|| format!("invalid --net {n}")))
                .collect::<Result<_>>()?;
        }
        if let Some(v) = &self.net_via {
            p.net.via = v.parse().with_context(|| format!("invalid --net-via {v}"))?;
        }
        if !self.env.is_empty() {
            p.env.allow = self
                .env
                .iter()
                .map(|e| EnvPattern::parse(e).with_context(|| format!("invalid --env {e}")))
                .collect::<Result<_>>()?;
        }
        let l = &mut p.limits;
        l.timeout_ms = self.timeout_ms.or(l.timeout_ms);
        l.memory_mb = self.memory_mb.or(l.memory_mb);
        l.cpu_ms = self.cpu_ms.or(l.cpu_ms);
        l.pids = self.pids.or(l.pids);
        l.file_size_mb = self.file_size_mb.or(l.file_size_mb);
        l.grace_ms = self.grace_ms.unwrap_or(l.grace_ms);
        l.output_bytes = self.output_bytes.unwrap_or(l.output_bytes);
        // The quota ranges of `run` apply to what the flags set.
        let mut probe = Policy::default();
        probe.limits = cordon::Limits {
            timeout_ms: self.timeout_ms,
            grace_ms: self.grace_ms.unwrap_or(probe.limits.grace_ms),
            memory_mb: self.memory_mb,
            cpu_ms: self.cpu_ms,
            pids: self.pids,
            output_bytes: self.output_bytes.unwrap_or(probe.limits.output_bytes),
            file_size_mb: self.file_size_mb,
        };
        probe.validate().context("invalid quota flag")?;
        if self.deny_wx {
            p.wx = WriteXorExecute::Deny;
        }
        Ok(p)
    }
}

/// The variable naming the artifact store when `--artifact-store` is not given.
pub const ARTIFACT_STORE_ENV: &str = "CORDON_ARTIFACT_STORE";

/// A request for `plugin` with the shared flags applied.
pub fn request(
    plugin: &Path,
    handler: &str,
    mode: Option<&str>,
    opts: &PluginArgs,
    narrow: &NarrowArgs,
) -> Result<HandlerRequest> {
    let here = std::env::current_dir().context("cannot read the current directory")?;
    let mut req = HandlerRequest::new(plugin, handler);
    req.mode = mode.map(|m| m.parse::<Mode>().with_context(|| format!("invalid --mode {m}"))).transpose()?;
    req.host = narrow.host_policy(&here)?;
    req.follow_links = narrow.follow_links;
    req.data_dir = opts.data_dir.as_ref().map(|d| here.join(d));
    if let Some(store) = opts
        .artifact_store
        .clone()
        .or_else(|| std::env::var_os(ARTIFACT_STORE_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
    {
        req.store.root = Some(here.join(store));
    }
    if let Some(t) = &opts.artifact_template {
        req.store.template = t
            .parse::<Template>()
            .map_err(|e| match e.hint() {
                Some(h) => anyhow::anyhow!("{e}\n  hint: {h}"),
                None => anyhow::anyhow!("{e}"),
            })
            .with_context(|| format!("invalid --artifact-template {t}"))?;
    }
    for c in &opts.capabilities {
        cordon::validate_capability_name(c)
            .map_err(|e| match e.hint() {
                Some(h) => anyhow::anyhow!("{e}\n  hint: {h}"),
                None => anyhow::anyhow!("{e}"),
            })
            .with_context(|| format!("invalid --capability {c}"))?;
    }
    req.capabilities.clone_from(&opts.capabilities);
    Ok(req)
}

/// The input from `--input FILE|-`. Empty stdin (`/dev/null`, a closed
/// pipe) is `{}`, so that `cordon exec` without `--input` works anywhere.
fn read_input(flag: &Path) -> Result<Vec<u8>> {
    let limit = MAX_INPUT_BYTES as u64;
    let mut bytes = vec![];
    if flag == Path::new("-") {
        std::io::stdin().lock().take(limit + 1).read_to_end(&mut bytes).context("cannot read --input - (stdin)")?;
    } else {
        let f =
            std::fs::File::open(flag).with_context(|| format!("invalid --input {}: cannot open it", flag.display()))?;
        f.take(limit + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("invalid --input {}: cannot read it", flag.display()))?;
    }
    if flag == Path::new("-") && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(b"{}".to_vec());
    }
    if bytes.len() as u64 > limit {
        bail!("invalid --input {}: more than {MAX_INPUT_BYTES} bytes\n  hint: pass large data as a file the manifest grants, not as input", flag.display());
    }
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        bail!("invalid --input {}: not one JSON value ({e})\n  hint: the input is one JSON value, e.g. {{\"name\": \"Ada\"}}", flag.display());
    }
    Ok(bytes)
}

pub fn run(a: ExecArgs) -> Result<i32> {
    let traceparent = a.traceparent.clone().or_else(|| std::env::var(cordon::audit::TRACEPARENT_ENV).ok());
    let subject = Subject { tenant: a.tenant.clone(), handler: Some(a.handler.clone()), ..Subject::default() };
    let session =
        super::audit::Session::open(a.audit_log.as_deref(), a.mode.as_deref(), traceparent.as_deref(), subject)?;
    session.finish(execute(&a, &session))
}

fn execute(a: &ExecArgs, session: &super::audit::Session) -> Result<i32> {
    if let Some(t) = &a.traceparent {
        t.parse::<cordon::audit::TraceParent>().with_context(|| format!("invalid --traceparent {t}")).map_err(|e| {
            e.context("a traceparent looks like 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        })?;
    }
    let (dir, manifest) = match resolve(&a.plugin) {
        Ok(Target::Folder(dir)) => {
            refuse_claimed_id(&dir, &a.plugin_opts)?;
            (dir, None)
        }
        Ok(Target::Installed(loaded)) => {
            session.amend_subject(|s| provenance(s, &loaded));
            // The manifest the run gets is the one verified, read once
            // (review s12 R12-1: a second read could see another).
            let manifest = loaded.read_manifest().map_err(anyhow::Error::msg)?;
            (loaded.dir, Some(manifest))
        }
        Err(refusal) => return Ok(refuse(a, session, &refusal)),
    };
    let mut req = request(&dir, &a.handler, a.mode.as_deref(), &a.plugin_opts, &a.narrow)?;
    req.manifest = manifest;
    match &a.input {
        Some(input) => req.input = read_input(input)?,
        None if !std::io::stdin().is_terminal() => req.input = read_input(Path::new("-"))?,
        None => {}
    }
    req.workdir = a.workdir.clone();
    req.tenant = a.tenant.clone();
    session.ready()?;
    let result = session.handler(&mut req);
    if a.json {
        println!("{}", render::json(&result).context("cannot serialise the result")?);
    } else {
        // The handler's stdout and stderr are its logs; stdout is kept for
        // its result. Both are the handler's text: escaped (see `render`).
        for l in &result.logs.lines {
            render::log_line(&l.text);
        }
        if let Some(data) = &result.data {
            println!("{}", render::json(data).context("cannot serialise the handler's result")?);
        }
        // Where the handler's files went (they are in the JSON result too).
        for f in &result.artifacts {
            render::message("artifact", &format!("{} ({} bytes) stored at {}", f.path, f.size, f.stored_at.display()));
        }
        for f in &result.artifacts_skipped {
            let why = serde_json::to_value(f.reason).ok().and_then(|v| v["reason"].as_str().map(str::to_owned));
            render::message(
                "artifact",
                &format!("{} not stored: {}", f.path, why.unwrap_or_default().replace('_', " ")),
            );
        }
    }
    summarize(&result, &a.plugin);
    Ok(result.exit_status())
}

/// What `ID|DIR` names.
pub enum Target {
    /// An installed plugin, verified just now.
    Installed(cordon_registry::Loaded),
    /// A plugin folder (development; nothing is verified).
    Folder(PathBuf),
}

/// Resolves `ID|DIR`: a valid plugin id (`@scope/name`) names an installed
/// plugin, which is verified now (signature, then every file); anything
/// else is a folder. A folder whose path looks like an id is given as
/// `./@scope/name`.
pub fn resolve(arg: &str) -> Result<Target, cordon_registry::RegistryError> {
    if arg.parse::<PluginId>().is_err() {
        return Ok(Target::Folder(PathBuf::from(arg)));
    }
    let cache = match std::env::var(VERIFY_CACHE_ENV).as_deref() {
        Ok("off") => cordon_registry::Cache::Off,
        _ => cordon_registry::Cache::On,
    };
    cordon_registry::Registry::from_env()?.load_with(arg, cache).map(Target::Installed)
}

/// Review s12 R12-7: a development folder is not verified, so it may name
/// any id, and the platform preset's data folder is found by id: a folder
/// naming a plugin installed here (now or before: its data folder may
/// still hold that plugin's data) would get that plugin's data to read and
/// rewrite. Refused unless `--data-dir` names the folder to use.
fn refuse_claimed_id(dir: &Path, opts: &PluginArgs) -> Result<()> {
    if opts.data_dir.is_some() {
        return Ok(());
    }
    // An unreadable manifest is the run's to report, with its own message.
    let Ok(manifest) = cordon::plugin::Manifest::load(dir) else { return Ok(()) };
    if !manifest.extends.contains(&cordon::plugin::Preset::Platform) {
        return Ok(());
    }
    // No registry here (none made yet): nothing installed to claim.
    let Some(home) = cordon_registry::Registry::default_home().filter(|h| h.is_dir()) else { return Ok(()) };
    let lock = cordon_registry::Registry::open(&home)
        .and_then(|r| r.lock_file())
        .with_context(|| format!("cannot read the registry at {} to check the folder's id", home.display()))?;
    let id = manifest.id.to_string();
    if lock.plugins.contains_key(&id) || lock.highest_seen.contains_key(&id) {
        bail!(
            "the development folder {} names the id {id}, which is installed here: it would get the installed \
             plugin's data folder\n  hint: run it with --data-dir DIR (a folder of its own), or give the folder \
             another id",
            dir.display()
        );
    }
    Ok(())
}

/// `CORDON_VERIFY_CACHE=off` makes every load hash every file of an
/// installed plugin (see `cordon_registry::verify` for what the cache
/// trusts).
pub const VERIFY_CACHE_ENV: &str = "CORDON_VERIFY_CACHE";

/// The audit fields of an installed plugin's run.
fn provenance(s: &mut Subject, loaded: &cordon_registry::Loaded) {
    s.plugin = Some(loaded.id.clone());
    s.plugin_version = Some(loaded.version.clone());
    s.package_tree_hash = Some(loaded.tree_hash.to_string());
    s.signer_key_id = loaded.signer_key_id.map(|k| k.to_string());
    s.signature_state = Some(loaded.state.as_str().to_owned());
}

/// An installed plugin the registry refused: recorded (with what the lock
/// file says of it), explained on stderr, exit status 1.
fn refuse(a: &ExecArgs, session: &super::audit::Session, e: &cordon_registry::RegistryError) -> i32 {
    let installed = cordon_registry::Registry::from_env()
        .and_then(|r| r.lock_file())
        .ok()
        .and_then(|mut l| l.plugins.remove(&a.plugin));
    session.amend_subject(|s| {
        s.plugin = Some(a.plugin.clone());
        if let Some(i) = &installed {
            s.plugin_version = Some(i.version.to_string());
            s.package_tree_hash = Some(i.tree_hash.to_string());
            s.signer_key_id = i.signer_key_id.map(|k| k.to_string());
        }
        s.signature_state = e.state().map(|st| st.as_str().to_owned());
    });
    let hint = e.hint().map(|h| format!("\nhint: {h}")).unwrap_or_default();
    let message = format!("cannot run {}: {e}", a.plugin);
    let result = session.record_unstarted(message.clone());
    if a.json {
        if let Ok(s) = render::json(&result) {
            println!("{s}");
        }
    }
    render::message("refused", &format!("{message}{hint}"));
    1
}

/// Lines that read like the sandbox refusing something.
const DENIAL_MARKERS: &[&str] =
    &["Permission denied", "Operation not permitted", "Read-only file system", "EACCES", "EPERM", "EROFS"];

/// On stderr, for people: why the run failed (which limit, which denial).
fn summarize(r: &HandlerResult, plugin: &str) {
    for w in r.warnings.iter().filter(|w| !w.starts_with("dev mode:") && !w.starts_with(cordon::state::NOTE_PREFIX)) {
        render::message("notice", w);
    }
    let Some(err) = &r.error else { return };
    let code = err.code.as_str();
    let kind = match err.code {
        ErrorCode::SetupFailed | ErrorCode::NotFound | ErrorCode::NotExecutable => "error",
        ErrorCode::NonzeroExit | ErrorCode::InvalidResult => "failed",
        _ => "stopped",
    };
    let mut message =
        if err.code == ErrorCode::SetupFailed { err.message.clone() } else { format!("{code}: {}", err.message) };
    if let Some(h) = render::limit_hint(err.code, render::FixIn::Manifest) {
        message.push_str(&format!("\nhint: {h}"));
    }
    render::message(kind, &message);
    render::not_granted(&r.not_granted, render::FixIn::Manifest);
    render::network_refusals(&r.network);
    // Each distinct line once, with how often it came; lines about a path
    // named just above are left out.
    let mut denials: Vec<(&str, usize)> = vec![];
    for t in r.logs.lines.iter().map(|l| l.text.as_str()) {
        if !DENIAL_MARKERS.iter().any(|m| t.contains(m))
            || r.not_granted.iter().any(|n| t.contains(&*n.path.to_string_lossy()))
        {
            continue;
        }
        if let Some((_, n)) = denials.iter_mut().find(|(d, _)| *d == t) {
            *n += 1;
        } else if denials.len() < 3 {
            denials.push((t, 1));
        }
    }
    for (d, n) in denials {
        let times = if n > 1 { format!(" ({n} times)") } else { String::new() };
        render::message(
            "denied?",
            &format!("the handler reported{times}: {d}\nhint: `cordon check {plugin}` shows what the policy grants"),
        );
    }
}
