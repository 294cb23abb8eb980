//! `cordon.toml`: a plugin's id, version, handlers, permissions and quotas.
//!
//! This module owns reading and validating a manifest and turning it into a
//! [`Policy`]. Parsing is strict: an unknown key, a value of the wrong type,
//! a pattern cordon cannot enforce, a quota out of range or a malformed id is
//! an error that names the file, the line and the column, with a hint where
//! there is one to give. Nothing here touches the kernel; the only I/O is
//! reading the manifest and, in [`Manifest::resolve_handler`], looking at the
//! plugin folder and `PATH` to find a program.
//!
//! ```toml
//! id = "@acme/weather"
//! version = "1.2.3"
//! extends = ["platform"]
//!
//! [handlers.forecast]
//! command = ["python3", "main.py"]
//!
//! [permissions]
//! net.allow = ["api.weather.example:443"]
//! env.allow = ["WEATHER_TOKEN"]
//!
//! [quotas]
//! timeout_ms = 30000
//! memory_mb = 256
//! ```
//!
//! # Paths
//!
//! `fs.*` and `exec` entries are relative to the plugin folder. A relative
//! entry may not climb out of the folder with `..`, nor lead out of it
//! through a symbolic link at any component (a shipped `data ->
//! /var/tmp/secret`): the policy names the path with its links resolved,
//! and an entry resolving outside the folder is [`OutsidePlugin`], refused
//! by `check` and `exec` alike. The same holds for a handler's program and
//! `exec` entries found in the folder. An absolute entry names a host path
//! outright, so the operator sees it in `cordon check`. Only a trailing
//! `/**` is accepted as a wildcard (enforcement is per path tree).
//!
//! # Defaults
//!
//! The effective policy of a manifest is the least privilege of DESIGN.md
//! plus what the manifest declares, plus read access to the plugin folder
//! itself, because the handler's own code has to be readable to run.
//! Nothing else is implied: no data folder, no network, no inherited
//! variables, no quotas beyond [`Limits::default`]. Presets named in
//! `extends` add grants: see [`Preset`].

use cordon_core::policy::fs::normalize;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cordon_core::policy::{EnvPattern, Limits, NetPattern, PathRule, Policy, PolicyError};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::builder::PolicyBuilder;
use crate::capabilities;

mod policy_file;
pub use policy_file::PolicyFile;

/// The manifest's file name inside a plugin folder.
pub const MANIFEST_FILE: &str = "cordon.toml";

/// Manifests larger than this are refused before parsing (64 KiB).
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// The environment variable naming the data folder when the `platform`
/// preset grants one.
pub const DATA_DIR_ENV: &str = "CORDON_DATA_DIR";

/// Which kind of file a [`ManifestError`] or an [`OutsidePlugin`] is
/// about: both are read by the same parser, with the same rules for paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FileKind {
    /// A plugin's `cordon.toml`.
    Manifest,
    /// A [`PolicyFile`] (`cordon run --policy FILE`).
    Policy,
}

impl FileKind {
    /// "a manifest", "a policy file".
    pub fn noun(self) -> &'static str {
        match self {
            FileKind::Manifest => "a manifest",
            FileKind::Policy => "a policy file",
        }
    }

    /// The folder relative entries are relative to, and stay in.
    pub fn folder(self) -> &'static str {
        match self {
            FileKind::Manifest => "the plugin folder",
            FileKind::Policy => "the policy file's folder",
        }
    }
}

/// A manifest or a policy file that cannot be read or is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be opened or read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file's path.
        path: PathBuf,
        /// What the file was to be.
        kind: FileKind,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is over [`MAX_MANIFEST_BYTES`]; it was not parsed.
    #[error("{} is {size} bytes; {} may have at most {MAX_MANIFEST_BYTES} bytes", path.display(), kind.noun())]
    TooLarge {
        /// The file's path.
        path: PathBuf,
        /// What the file was to be.
        kind: FileKind,
        /// Its size (at least; reading stops after the limit).
        size: u64,
    },
    /// The file is not valid: syntax, schema or value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column, counted in characters.
        column: usize,
        /// What is wrong.
        message: String,
        /// What to do about it, where there is a suggestion.
        hint: Option<String>,
        /// The offending line of the file.
        source_line: String,
    },
}

/// A path of the manifest (or policy file), relative to the plugin folder
/// (the policy file's folder), that leads out of the folder once symbolic
/// links are resolved.
#[derive(Debug, thiserror::Error)]
#[error("{entry} resolves to {}, outside {} {}", resolved.display(), kind.folder(), plugin_dir.display())]
pub struct OutsidePlugin {
    /// The entry, e.g. ``fs.read `data` `` or ``program `./run` of handler `go` ``.
    pub entry: String,
    /// Where it leads, links resolved.
    pub resolved: PathBuf,
    /// The plugin folder (the policy file's folder), links resolved.
    pub plugin_dir: PathBuf,
    /// The file the entry is in.
    pub kind: FileKind,
}

impl OutsidePlugin {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self.kind {
            FileKind::Manifest => {
                "a relative path in a manifest stays inside the plugin folder, symbolic links included: ship the \
                 files instead of a link, or ask for the host path with an absolute entry so the operator sees it \
                 in `cordon check`"
            }
            FileKind::Policy => {
                "a relative path in a policy file stays inside the file's folder, symbolic links included: write \
                 the absolute path to grant one elsewhere"
            }
        }
    }
}

/// `path` (absolute) with every symbolic link resolved, component by
/// component, the way the kernel resolves it now; a part that does not
/// exist is kept as written, and a dangling link is followed to where it
/// points. Gives up following after 40 links, as the kernel does (ELOOP).
pub fn resolve_links(path: &Path) -> PathBuf {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    let mut done = PathBuf::from("/");
    let mut todo: VecDeque<OsString> = path.iter().skip(1).map(OsString::from).collect();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match c.to_str() {
            Some(".") => continue,
            Some("..") => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let next = done.join(&c);
        let link = std::fs::symlink_metadata(&next).is_ok_and(|m| m.file_type().is_symlink());
        match std::fs::read_link(&next) {
            Ok(target) if link && hops < 40 => {
                hops += 1;
                if target.is_absolute() {
                    done = PathBuf::from("/");
                }
                for part in target.iter().rev().filter(|p| *p != "/") {
                    todo.push_front(part.to_owned());
                }
            }
            _ => done = next,
        }
    }
    done
}

/// `plugin_dir.join(rel)` with links resolved, refused when it leaves
/// `plugin_dir` (itself resolved). `entry` names it in the error.
fn confine(
    plugin_dir: &Path,
    kind: FileKind,
    rel: &Path,
    entry: impl FnOnce() -> String,
) -> std::result::Result<PathBuf, OutsidePlugin> {
    let resolved = resolve_links(&normalize(&plugin_dir.join(rel)));
    if resolved.starts_with(plugin_dir) {
        Ok(resolved)
    } else {
        Err(OutsidePlugin { entry: entry(), resolved, plugin_dir: plugin_dir.to_owned(), kind })
    }
}

impl ManifestError {
    /// A suggestion for the user, where there is one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ManifestError::Invalid { hint, .. } => hint.as_deref(),
            ManifestError::TooLarge { kind: FileKind::Manifest, .. } => {
                Some("a manifest declares handlers and permissions; keep data files next to it, not in it")
            }
            ManifestError::TooLarge { kind: FileKind::Policy, .. } => {
                Some("a policy file holds only [permissions] and [quotas]; keep data files next to it, not in it")
            }
            ManifestError::Read { kind: FileKind::Manifest, .. } => {
                Some("a plugin folder needs a `cordon.toml` at its top level")
            }
            ManifestError::Read { kind: FileKind::Policy, .. } => {
                Some("--policy takes a TOML file with [permissions] and [quotas] blocks, as in a plugin's cordon.toml")
            }
        }
    }

    /// `(line, column)` of the mistake, both 1-based, when there is one.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            ManifestError::Invalid { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }

    /// The message, its causes, the offending line with a caret, and the
    /// hint, one per line: what a terminal shows.
    pub fn render(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(&format!("\ncaused by: {c}"));
            cause = c.source();
        }
        if let Some(ex) = self.excerpt() {
            out.push('\n');
            out.push_str(&ex);
        }
        if let Some(h) = self.hint() {
            out.push_str(&format!("\nhint: {h}"));
        }
        out
    }

    /// The offending line with a caret under the column, for terminals.
    pub fn excerpt(&self) -> Option<String> {
        match self {
            ManifestError::Invalid { line, column, source_line, .. } => {
                let gutter = line.to_string();
                Some(format!(
                    "{pad} |\n{gutter} | {source_line}\n{pad} | {caret:>width$}",
                    pad = " ".repeat(gutter.len()),
                    caret = "^",
                    width = *column,
                ))
            }
            _ => None,
        }
    }
}

/// The result type of this module.
pub type Result<T, E = ManifestError> = std::result::Result<T, E>;

/// A plugin id: `@scope/name`, both parts lowercase `[a-z0-9-]`, 1 to 64
/// characters each.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PluginId {
    scope: String,
    name: String,
}

/// Why a plugin id is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid plugin id `{id}`: {reason}")]
pub struct PluginIdError {
    /// The id as given.
    pub id: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl PluginId {
    /// The part after `@`.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The part after `/`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FromStr for PluginId {
    type Err = PluginIdError;

    fn from_str(raw: &str) -> std::result::Result<Self, PluginIdError> {
        let bad = |reason| PluginIdError { id: raw.to_owned(), reason };
        let rest = raw.strip_prefix('@').ok_or_else(|| bad("it must start with `@`"))?;
        let (scope, name) = rest.split_once('/').ok_or_else(|| bad("it must have the form `@scope/name`"))?;
        for part in [scope, name] {
            if part.is_empty() || part.len() > 64 {
                return Err(bad("scope and name must have 1 to 64 characters each"));
            }
            if !part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                return Err(bad("scope and name may contain only lowercase letters, digits and `-`"));
            }
        }
        Ok(PluginId { scope: scope.to_owned(), name: name.to_owned() })
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}/{}", self.scope, self.name)
    }
}

impl Serialize for PluginId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A named set of grants a manifest can extend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Preset {
    /// The plugin folder read-only and the data folder (when the host gives
    /// one) writable, named in `CORDON_DATA_DIR`.
    Platform,
}

impl Preset {
    /// Every preset, in the order they are documented.
    pub const ALL: &'static [Preset] = &[Preset::Platform];

    /// The name used in `extends`.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Platform => "platform",
        }
    }
}

impl FromStr for Preset {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        Preset::ALL.iter().copied().find(|p| p.as_str() == s).ok_or(())
    }
}

/// One entry point of a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Handler {
    /// The argv; never empty. See [`Manifest::resolve_handler`] for how
    /// `command[0]` is found.
    pub command: Vec<String>,
    /// For people.
    pub description: Option<String>,
}

/// A path from `fs.*` or `exec`, validated and lexically normalised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ManifestPath {
    /// Relative to the plugin folder; empty means the folder itself. Never
    /// climbs out of it.
    InPlugin(PathBuf),
    /// An absolute host path, as declared.
    Host(PathBuf),
}

impl ManifestPath {
    /// The absolute path for a plugin installed in `plugin_dir` (links
    /// resolved already): an entry inside the folder with its symbolic links
    /// resolved, refused when they lead out of the folder (`key` names the
    /// entry's list in the error); a host path as declared (enforcement
    /// resolves its links, as for the operator's own flags).
    /// `kind` names the file in the error.
    pub fn resolve(&self, plugin_dir: &Path, kind: FileKind, key: &str) -> std::result::Result<PathBuf, OutsidePlugin> {
        match self {
            ManifestPath::InPlugin(rel) => confine(plugin_dir, kind, rel, || {
                format!("{key} `{}`", if rel.as_os_str().is_empty() { Path::new(".") } else { rel }.display())
            }),
            ManifestPath::Host(abs) => Ok(abs.clone()),
        }
    }
}

/// `[permissions]`: what the plugin asks for. Everything defaults to empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Permissions {
    /// `fs.read`: read and execute.
    pub fs_read: Vec<ManifestPath>,
    /// `fs.write`: read, write, create, remove.
    pub fs_write: Vec<ManifestPath>,
    /// `fs.deny`: carve-outs.
    pub fs_deny: Vec<ManifestPath>,
    /// `net.allow`.
    pub net_allow: Vec<NetPattern>,
    /// `net.deny`.
    pub net_deny: Vec<NetPattern>,
    /// `env.allow`: variables copied from the host.
    pub env_allow: Vec<EnvPattern>,
    /// `exec`: executables the handler may run, as declared (names without a
    /// `/` are found like `command[0]`). `None`: any readable file.
    pub exec: Option<Vec<String>>,
    /// `capabilities`: named platform capabilities the plugin requires.
    pub capabilities: Vec<String>,
}

impl Permissions {
    /// Adds these permissions to `b`: paths relative to `dir` (absolute,
    /// links resolved), confined to it as described under [Paths](self#paths);
    /// `exec` names found in `dir`, else on the sandbox's default `PATH`.
    /// `capabilities` are not part of a policy: the host application checks
    /// them ([`check_capabilities`](crate::capabilities::check_capabilities)).
    fn grant(
        &self,
        mut b: PolicyBuilder,
        dir: &Path,
        kind: FileKind,
    ) -> std::result::Result<PolicyBuilder, OutsidePlugin> {
        let rules = |key: &str, list: &[ManifestPath]| -> std::result::Result<Vec<PathRule>, OutsidePlugin> {
            list.iter().map(|m| Ok(PathRule { path: m.resolve(dir, kind, key)? })).collect()
        };
        b = rules("fs.read", &self.fs_read)?.into_iter().fold(b, PolicyBuilder::read);
        b = rules("fs.write", &self.fs_write)?.into_iter().fold(b, PolicyBuilder::write);
        b = rules("fs.deny", &self.fs_deny)?.into_iter().fold(b, PolicyBuilder::deny);
        b = self.net_allow.iter().fold(b, |b, n| b.allow_host(n.clone()));
        b = self.net_deny.iter().fold(b, |b, n| b.deny_host(n.clone()));
        b = self.env_allow.iter().fold(b, |b, e| b.inherit_env(e.clone()));
        if let Some(exec) = &self.exec {
            b = b.restrict_exec();
            for entry in exec {
                // A name found nowhere is left out: the allow-list only
                // shrinks, so this fails closed (execve gets EACCES).
                let search = cordon_core::policy::env::DEFAULT_PATH;
                if let Some(path) = find_program(entry, dir, kind, search, || format!("exec `{entry}`"))? {
                    b = b.allow_exec(path);
                }
            }
        }
        Ok(b)
    }
}

/// `[quotas]`. `None` keeps cordon's default ([`Limits::default`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Quotas {
    /// Wall clock, 1 ms to 1 hour.
    pub timeout_ms: Option<u64>,
    /// SIGTERM to SIGKILL, 0 to 60 s.
    pub grace_ms: Option<u64>,
    /// Memory, 4 MiB to 64 GiB.
    pub memory_mb: Option<u64>,
    /// CPU time of all processes, 1 ms to 24 hours.
    pub cpu_ms: Option<u64>,
    /// Processes and threads at once, 1 to 4096.
    pub pids: Option<u64>,
    /// Captured output, 0 to 1 GiB.
    pub output_bytes: Option<u64>,
    /// Largest file written, 1 MiB to 64 GiB.
    pub file_size_mb: Option<u64>,
}

impl Quotas {
    /// These quotas over [`Limits::default`].
    pub fn to_limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            timeout_ms: self.timeout_ms.or(d.timeout_ms),
            grace_ms: self.grace_ms.unwrap_or(d.grace_ms),
            memory_mb: self.memory_mb.or(d.memory_mb),
            cpu_ms: self.cpu_ms.or(d.cpu_ms),
            pids: self.pids.or(d.pids),
            output_bytes: self.output_bytes.unwrap_or(d.output_bytes),
            file_size_mb: self.file_size_mb.or(d.file_size_mb),
        }
    }
}

/// A quota's accepted range, stricter than `Limits::validate` because a
/// manifest is written by a plugin author, not the operator.
struct QuotaRange {
    name: &'static str,
    min: u64,
    max: u64,
    human: &'static str,
}

const QUOTA_RANGES: &[QuotaRange] = &[
    QuotaRange { name: "timeout_ms", min: 1, max: 3_600_000, human: "1 to 3600000 (1 hour)" },
    QuotaRange { name: "grace_ms", min: 0, max: 60_000, human: "0 to 60000 (1 minute)" },
    QuotaRange { name: "memory_mb", min: 4, max: 65_536, human: "4 to 65536 (64 GiB)" },
    QuotaRange { name: "cpu_ms", min: 1, max: 86_400_000, human: "1 to 86400000 (24 hours)" },
    QuotaRange { name: "pids", min: 1, max: 4096, human: "1 to 4096" },
    QuotaRange { name: "output_bytes", min: 0, max: 1 << 30, human: "0 to 1073741824 (1 GiB)" },
    QuotaRange { name: "file_size_mb", min: 1, max: 65_536, human: "1 to 65536 (64 GiB)" },
];

/// A parsed and validated `cordon.toml`.
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// `id`.
    pub id: PluginId,
    /// `version`.
    #[serde(serialize_with = "serialize_display")]
    pub version: semver::Version,
    /// `description`.
    pub description: Option<String>,
    /// `extends`.
    pub extends: Vec<Preset>,
    /// `[handlers.NAME]`, by name; never empty.
    pub handlers: BTreeMap<String, Handler>,
    /// `[permissions]`.
    pub permissions: Permissions,
    /// `[quotas]`.
    pub quotas: Quotas,
}

fn serialize_display<S: serde::Serializer, T: fmt::Display>(v: &T, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A handler's program, found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedCommand {
    /// Absolute path of `command[0]`.
    pub program: PathBuf,
    /// The whole argv, `argv[0]` as declared.
    pub argv: Vec<String>,
}

/// Why a handler cannot be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The manifest has no handler of that name.
    #[error("plugin {plugin} has no handler `{name}`; it has: {known}")]
    Unknown {
        /// The plugin.
        plugin: String,
        /// The name asked for.
        name: String,
        /// The names it has, comma-separated.
        known: String,
    },
    /// `command[0]` is neither in the plugin folder nor on `PATH`.
    #[error("program `{program}` of handler `{name}` is not in the plugin folder {} nor on PATH", plugin_dir.display())]
    ProgramNotFound {
        /// The handler.
        name: String,
        /// `command[0]`.
        program: String,
        /// Where it was looked for first.
        plugin_dir: PathBuf,
    },
    /// `command[0]` names a file of the plugin folder that leads out of it.
    #[error(transparent)]
    OutsidePlugin(#[from] OutsidePlugin),
}

impl Manifest {
    /// Reads `dir/cordon.toml`, refusing files over [`MAX_MANIFEST_BYTES`]
    /// before parsing them.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = read_bounded(&path, FileKind::Manifest)?;
        Manifest::parse_bytes(&bytes, &path)
    }

    /// Parses manifest bytes; `path` is only used in messages and
    /// [`Manifest::path`].
    pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Manifest> {
        with_text(bytes, path, FileKind::Manifest, |text| Manifest::parse(text, path))
    }

    /// Parses manifest text; `path` is only used in messages and
    /// [`Manifest::path`].
    pub fn parse(text: &str, path: &Path) -> Result<Manifest> {
        let src = Source { path, text, kind: FileKind::Manifest };
        let raw: RawManifest = src.deserialize()?;
        raw.validate(&src)
    }

    /// The effective policy of a plugin installed in `plugin_dir`: the
    /// manifest's permissions and quotas, its presets, and read access to
    /// the plugin folder. `data_dir` is granted writable only when a preset
    /// asks for it. `plugin_dir` should be absolute; a relative one is made
    /// absolute against the current directory. Paths inside the folder are
    /// named with their symbolic links resolved; one leading out of it (a
    /// grant, an `exec` entry, or a handler's program) is [`OutsidePlugin`].
    pub fn policy(&self, plugin_dir: &Path, data_dir: Option<&Path>) -> std::result::Result<Policy, OutsidePlugin> {
        Ok(self.builder(plugin_dir, data_dir)?.build())
    }

    /// Like [`Manifest::policy`], as a builder to combine further.
    pub fn builder(
        &self,
        plugin_dir: &Path,
        data_dir: Option<&Path>,
    ) -> std::result::Result<PolicyBuilder, OutsidePlugin> {
        let plugin_dir = resolve_links(&absolute(plugin_dir));
        let mut b = PolicyBuilder::new().read(PathRule { path: plugin_dir.clone() }).limits(self.quotas.to_limits());
        for preset in &self.extends {
            match preset {
                Preset::Platform => {
                    if let Some(data) = data_dir {
                        let data = absolute(data);
                        b = b.write(PathRule { path: data.clone() }).set_env(DATA_DIR_ENV, &data.to_string_lossy());
                    }
                }
            }
        }
        b = self.permissions.grant(b, &plugin_dir, FileKind::Manifest)?;
        // Not part of the policy, but checked with it so that `check`
        // refuses what `exec` would: a program in the folder that is a link
        // out of it.
        for (name, h) in &self.handlers {
            let argv0 = &h.command[0];
            let entry = || format!("program `{argv0}` of handler `{name}`");
            find_program(argv0, &plugin_dir, FileKind::Manifest, "", entry)?;
        }
        Ok(b)
    }

    /// Finds handler `name`'s program. `command[0]` is taken from the plugin
    /// folder when it contains a `/` (relative to the folder, or absolute) or
    /// names a file in the folder; otherwise it is looked up in
    /// `search_path` (a `PATH`-style list; pass
    /// `cordon_core::policy::env::DEFAULT_PATH` for the sandbox's own).
    pub fn resolve_handler(
        &self,
        name: &str,
        plugin_dir: &Path,
        search_path: &str,
    ) -> std::result::Result<ResolvedCommand, HandlerError> {
        let handler = self.handlers.get(name).ok_or_else(|| HandlerError::Unknown {
            plugin: self.id.to_string(),
            name: name.to_owned(),
            known: self.handlers.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let plugin_dir = resolve_links(&absolute(plugin_dir));
        let argv0 = &handler.command[0];
        let entry = || format!("program `{argv0}` of handler `{name}`");
        let program = find_program(argv0, &plugin_dir, FileKind::Manifest, search_path, entry)?.ok_or_else(|| {
            HandlerError::ProgramNotFound {
                name: name.to_owned(),
                program: argv0.clone(),
                plugin_dir: plugin_dir.clone(),
            }
        })?;
        Ok(ResolvedCommand { program, argv: handler.command.clone() })
    }
}

/// `command[0]` / `exec` lookup; see [`Manifest::resolve_handler`]. A
/// program of the plugin folder comes with its links resolved, and is
/// refused when they lead out of the folder.
fn find_program(
    name: &str,
    plugin_dir: &Path,
    kind: FileKind,
    search_path: &str,
    entry: impl FnOnce() -> String,
) -> std::result::Result<Option<PathBuf>, OutsidePlugin> {
    if Path::new(name).is_absolute() {
        return Ok(Some(normalize(Path::new(name))));
    }
    if name.contains('/') || std::fs::symlink_metadata(plugin_dir.join(name)).is_ok() {
        let path = confine(plugin_dir, kind, Path::new(name), entry)?;
        if name.contains('/') || path.is_file() {
            return Ok(Some(path));
        }
    }
    Ok(search_path.split(':').filter(|d| d.starts_with('/')).map(|d| Path::new(d).join(name)).find(|p| p.is_file()))
}

fn absolute(p: &Path) -> PathBuf {
    normalize(&std::path::absolute(p).unwrap_or_else(|_| p.to_owned()))
}

/// The bytes of `path`, refused over [`MAX_MANIFEST_BYTES`] before they are
/// read.
fn read_bounded(path: &Path, kind: FileKind) -> Result<Vec<u8>> {
    let read_err = |source| ManifestError::Read { path: path.to_owned(), kind, source };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    if size > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { path: path.to_owned(), kind, size });
    }
    // The file may grow between stat and read: read one byte past the
    // limit so a grown file is caught too.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { path: path.to_owned(), kind, size: bytes.len() as u64 });
    }
    Ok(bytes)
}

/// `parse(text)` when `bytes` are UTF-8 of at most [`MAX_MANIFEST_BYTES`].
fn with_text<T>(bytes: &[u8], path: &Path, kind: FileKind, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { path: path.to_owned(), kind, size: bytes.len() as u64 });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let text = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
            let at = text.len();
            Err(Source { path, text: &text, kind }.error(at..at, "the file is not valid UTF-8".into(), None))
        }
    }
}

// ---------------------------------------------------------------------------
// Raw schema: exactly what the file may contain. Spans locate later errors.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    id: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    extends: Vec<Spanned<String>>,
    #[serde(default)]
    handlers: Option<Spanned<BTreeMap<Spanned<String>, RawHandler>>>,
    #[serde(default)]
    permissions: RawPermissions,
    #[serde(default)]
    quotas: RawQuotas,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHandler {
    command: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    description: Option<String>,
}

type SpannedList = Vec<Spanned<String>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPermissions {
    #[serde(default)]
    fs: RawFs,
    #[serde(default)]
    net: RawNet,
    #[serde(default)]
    env: RawEnv,
    #[serde(default)]
    exec: Option<SpannedList>,
    #[serde(default)]
    capabilities: SpannedList,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFs {
    #[serde(default)]
    read: SpannedList,
    #[serde(default)]
    write: SpannedList,
    #[serde(default)]
    deny: SpannedList,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNet {
    #[serde(default)]
    allow: SpannedList,
    #[serde(default)]
    deny: SpannedList,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    #[serde(default)]
    allow: SpannedList,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQuotas {
    timeout_ms: Option<Spanned<u64>>,
    grace_ms: Option<Spanned<u64>>,
    memory_mb: Option<Spanned<u64>>,
    cpu_ms: Option<Spanned<u64>>,
    pids: Option<Spanned<u64>>,
    output_bytes: Option<Spanned<u64>>,
    file_size_mb: Option<Spanned<u64>>,
}

const TOP_LEVEL_KEYS: &[&str] = &["id", "version", "description", "extends", "handlers", "permissions", "quotas"];

impl RawManifest {
    fn validate(self, src: &Source<'_>) -> Result<Manifest> {
        let id = self.id.get_ref().parse::<PluginId>().map_err(|e| {
            src.error(
                self.id.span(),
                e.to_string(),
                Some("ids look like `@scope/name`: lowercase letters, digits and `-`, 1 to 64 characters each".into()),
            )
        })?;
        let version = semver::Version::parse(self.version.get_ref()).map_err(|e| {
            src.error(
                self.version.span(),
                format!("invalid version `{}`: {e}", self.version.get_ref()),
                Some("use a semantic version such as `1.0.0` or `0.3.1-beta.2`".into()),
            )
        })?;
        let mut extends = Vec::new();
        for name in &self.extends {
            let preset = name.get_ref().parse::<Preset>().map_err(|()| {
                let known: Vec<_> = Preset::ALL.iter().map(|p| format!("`{}`", p.as_str())).collect();
                src.error(
                    name.span(),
                    format!("unknown preset `{}`", name.get_ref()),
                    Some(format!("known presets: {}", known.join(", "))),
                )
            })?;
            if !extends.contains(&preset) {
                extends.push(preset);
            }
        }
        let handlers = validate_handlers(self.handlers, src)?;
        let permissions = self.permissions.validate(src)?;
        let quotas = self.quotas.validate(src)?;
        Ok(Manifest {
            path: src.path.to_owned(),
            id,
            version,
            description: self.description,
            extends,
            handlers,
            permissions,
            quotas,
        })
    }
}

fn validate_handlers(
    raw: Option<Spanned<BTreeMap<Spanned<String>, RawHandler>>>,
    src: &Source<'_>,
) -> Result<BTreeMap<String, Handler>> {
    let no_handlers_hint = Some("add one, for example `[handlers.main]` with `command = [\"./run.sh\"]`".to_owned());
    let Some(raw) = raw else {
        return Err(src.error(0..0, "the manifest declares no handlers".into(), no_handlers_hint));
    };
    if raw.get_ref().is_empty() {
        return Err(src.error(raw.span(), "`handlers` is empty".into(), no_handlers_hint));
    }
    let mut out = BTreeMap::new();
    for (name, h) in raw.into_inner() {
        let valid = !name.get_ref().is_empty()
            && name.get_ref().len() <= 64
            && name.get_ref().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(src.error(
                name.span(),
                format!("invalid handler name `{}`", name.get_ref()),
                Some("handler names use lowercase letters, digits, `_` and `-` (1 to 64 characters)".into()),
            ));
        }
        let argv = h.command.get_ref();
        if argv.is_empty() {
            return Err(src.error(
                h.command.span(),
                format!("handler `{}` has an empty command", name.get_ref()),
                Some("give the program and its arguments, for example `command = [\"python3\", \"main.py\"]`".into()),
            ));
        }
        if argv[0].get_ref().is_empty() {
            return Err(src.error(argv[0].span(), "the program name is empty".into(), None));
        }
        if let Some(arg) = argv.iter().find(|a| a.get_ref().contains('\0')) {
            return Err(src.error(arg.span(), "command arguments cannot contain NUL characters".into(), None));
        }
        let command = argv.iter().map(|a| a.get_ref().clone()).collect();
        out.insert(name.into_inner(), Handler { command, description: h.description });
    }
    Ok(out)
}

impl RawPermissions {
    fn validate(self, src: &Source<'_>) -> Result<Permissions> {
        let paths = |list: &SpannedList, key: &str| -> Result<Vec<ManifestPath>> {
            list.iter().map(|s| manifest_path(s, key, src)).collect()
        };
        let nets = |list: &SpannedList| -> Result<Vec<NetPattern>> {
            list.iter().map(|s| NetPattern::parse(s.get_ref()).map_err(|e| src.policy_error(s.span(), &e))).collect()
        };
        let env_allow = self
            .env
            .allow
            .iter()
            .map(|s| {
                EnvPattern::parse(s.get_ref()).map_err(|e| {
                    let hint =
                        "env.allow entries are variable names (`GITHUB_TOKEN`) or prefixes ending in `*` (`MY_*`)";
                    src.error(s.span(), e.to_string(), Some(hint.into()))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let exec = match &self.exec {
            None => None,
            Some(list) => {
                for s in list {
                    // Same rules as an fs path; the value is kept as written
                    // so a bare name can be found on PATH later.
                    manifest_path(s, "exec", src)?;
                }
                Some(list.iter().map(|s| s.get_ref().clone()).collect())
            }
        };
        let mut capabilities = Vec::new();
        for s in &self.capabilities {
            capabilities::validate_name(s.get_ref())
                .map_err(|e| src.error(s.span(), e.to_string(), e.hint().map(str::to_owned)))?;
            capabilities.push(s.get_ref().clone());
        }
        Ok(Permissions {
            fs_read: paths(&self.fs.read, "fs.read")?,
            fs_write: paths(&self.fs.write, "fs.write")?,
            fs_deny: paths(&self.fs.deny, "fs.deny")?,
            net_allow: nets(&self.net.allow)?,
            net_deny: nets(&self.net.deny)?,
            env_allow,
            exec,
            capabilities,
        })
    }
}

fn manifest_path(s: &Spanned<String>, key: &str, src: &Source<'_>) -> Result<ManifestPath> {
    let raw = s.get_ref();
    if raw.contains('\0') {
        return Err(src.error(s.span(), format!("{key} entry contains a NUL character"), None));
    }
    // PathRule::parse does the wildcard and emptiness checks; the base is a
    // marker that tells whether a relative entry stays inside the folder.
    let base = Path::new("/plugin-folder");
    let rule = PathRule::parse(raw, base).map_err(|e| match e {
        PolicyError::Wildcard(_) => src.error(
            s.span(),
            e.to_string(),
            Some("grant the folder itself (`dir` or `dir/**`) and carve out with `fs.deny`".into()),
        ),
        other => src.policy_error(s.span(), &other),
    })?;
    if Path::new(raw).is_absolute() {
        return Ok(ManifestPath::Host(rule.path));
    }
    match rule.path.strip_prefix(base) {
        Ok(rel) => Ok(ManifestPath::InPlugin(rel.to_owned())),
        Err(_) => Err(src.error(
            s.span(),
            format!("{key} entry `{raw}` leaves {}", src.kind.folder()),
            Some(format!(
                "relative paths stay inside {}; write an absolute path to ask for a host path",
                src.kind.folder()
            )),
        )),
    }
}

impl RawQuotas {
    fn validate(self, src: &Source<'_>) -> Result<Quotas> {
        let fields = [
            &self.timeout_ms,
            &self.grace_ms,
            &self.memory_mb,
            &self.cpu_ms,
            &self.pids,
            &self.output_bytes,
            &self.file_size_mb,
        ];
        for (value, range) in fields.iter().zip(QUOTA_RANGES) {
            if let Some(v) = value {
                let n = *v.get_ref();
                if n < range.min || n > range.max {
                    return Err(src.error(
                        v.span(),
                        format!("quotas.{} = {n} is out of range", range.name),
                        Some(format!("{} accepts {}", range.name, range.human)),
                    ));
                }
            }
        }
        let get = |v: &Option<Spanned<u64>>| v.as_ref().map(|s| *s.get_ref());
        Ok(Quotas {
            timeout_ms: get(&self.timeout_ms),
            grace_ms: get(&self.grace_ms),
            memory_mb: get(&self.memory_mb),
            cpu_ms: get(&self.cpu_ms),
            pids: get(&self.pids),
            output_bytes: get(&self.output_bytes),
            file_size_mb: get(&self.file_size_mb),
        })
    }
}

// ---------------------------------------------------------------------------
// Locating errors.

struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    kind: FileKind,
}

impl Source<'_> {
    /// The text as `T`, refused over [`MAX_MANIFEST_BYTES`]; a TOML or
    /// schema error is located.
    fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        if self.text.len() as u64 > MAX_MANIFEST_BYTES {
            let size = self.text.len() as u64;
            return Err(ManifestError::TooLarge { path: self.path.to_owned(), kind: self.kind, size });
        }
        toml::from_str(self.text).map_err(|e| self.toml_error(&e))
    }

    /// An `Invalid` error at the start of `span`.
    fn error(&self, span: Range<usize>, message: String, hint: Option<String>) -> ManifestError {
        let (line, column, source_line) = locate(self.text, span.start);
        ManifestError::Invalid { path: self.path.to_owned(), line, column, message, hint, source_line }
    }

    fn policy_error(&self, span: Range<usize>, e: &PolicyError) -> ManifestError {
        self.error(span, e.to_string(), e.hint().map(str::to_owned))
    }

    fn toml_error(&self, e: &toml::de::Error) -> ManifestError {
        let span = e.span().unwrap_or(0..0);
        let mut message = e.message().trim_end().to_owned();
        let snippet = self.text.get(span.clone()).unwrap_or("");
        if message == "duplicate key" && !snippet.is_empty() {
            message = format!("duplicate key `{snippet}`");
        }
        let manifest_only = (self.kind == FileKind::Policy)
            .then(|| message.strip_prefix("unknown field `")?.split('`').next())
            .flatten()
            .filter(|key| TOP_LEVEL_KEYS.contains(key))
            .map(str::to_owned);
        let hint = if let Some(key) = manifest_only {
            message = format!(
                "`{key}` belongs in a plugin's cordon.toml; a policy file holds only [permissions] and [quotas]"
            );
            Some("remove it; to run a plugin's handler, use `cordon exec DIR HANDLER`".to_owned())
        } else if message.starts_with("unknown field") {
            unknown_field_hint(&message)
        } else if message.contains("expected u64") {
            Some("quotas are whole, non-negative numbers without quotes".to_owned())
        } else if message.starts_with("invalid type") {
            Some("check the value's type: strings are quoted, lists use [ ]".to_owned())
        } else if message.starts_with("missing field") {
            Some("see the manifest schema in the cordon-plugin docs (`id`, `version` and one `[handlers.NAME]` are required)".to_owned())
        } else {
            None
        };
        self.error(span, message, hint)
    }
}

/// "did you mean" for serde's `unknown field `x`, expected one of `a`, `b``.
fn unknown_field_hint(message: &str) -> Option<String> {
    let mut names = message.split('`').skip(1).step_by(2);
    let unknown = names.next()?;
    let expected: Vec<&str> = names.collect();
    let best = expected.iter().map(|e| (edit_distance(unknown, e), *e)).filter(|(d, e)| *d <= 2.max(e.len() / 3)).min();
    if let Some((_, name)) = best {
        return Some(format!("did you mean `{name}`?"));
    }
    if expected.iter().all(|e| TOP_LEVEL_KEYS.contains(e)) && ["read", "write", "deny", "allow"].contains(&unknown) {
        return Some("permissions go under `[permissions]`, for example `fs.read = [\"data\"]`".to_owned());
    }
    Some("remove it, or check the spelling against the keys listed".to_owned())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// 1-based line and column (in characters) of byte `offset`, and the line.
/// Line (1-based), column (1-based, in characters) and the text of the line
/// at byte `offset` of `text`: for errors that point into a TOML file.
pub fn locate(text: &str, offset: usize) -> (usize, usize, String) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    let source_line = text[line_start..line_end].trim_end_matches('\r').to_owned();
    (line, column, source_line)
}

#[cfg(test)]
mod tests;
