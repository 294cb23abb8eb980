//! The policy: plain data describing what one execution may do.
//!
//! Nothing here touches the kernel. A [`Policy`] is built from CLI flags or a
//! plugin manifest, validated with [`Policy::validate`], and turned into an
//! enforcement [`Plan`](crate::plan::Plan) by `Plan::build`.

pub mod env;
pub mod fs;
pub mod limits;
pub mod net;

use serde::Serialize;

pub use env::{EnvPattern, EnvPolicy, Home};
pub use fs::{FsPolicy, PathRule, SystemSet};
pub use limits::Limits;
pub use net::{NetPattern, NetPolicy, NetVia};

/// The isolation tier an execution runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// Namespaces and a fresh root on top of everything `Process` does.
    Container,
    /// Landlock, seccomp, an empty network namespace, no capabilities, limits.
    Process,
    /// Nothing but the timeout. For debugging trusted code only.
    Dev,
}

impl Mode {
    /// The name used on the command line and in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Container => "container",
            Mode::Process => "process",
            Mode::Dev => "dev",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "container" => Ok(Mode::Container),
            "process" => Ok(Mode::Process),
            "dev" => Ok(Mode::Dev),
            other => Err(PolicyError::UnknownMode(other.to_owned())),
        }
    }
}

/// Whether writable memory may also be executable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteXorExecute {
    /// Mappings may be writable and executable at once (JIT runtimes need this).
    #[default]
    Allow,
    /// `mmap`/`mprotect` with `PROT_WRITE|PROT_EXEC` fail with `EPERM`.
    Deny,
}

/// Everything one execution is allowed to do.
///
/// The default is the least privilege of DESIGN.md: the read-only system set,
/// a private scratch `/tmp`, no network, the basic environment only, no
/// capabilities, no limits beyond those the caller sets.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Policy {
    /// Filesystem access. Enforced by Landlock (and by the mount namespace in
    /// container mode).
    pub fs: FsPolicy,
    /// Network egress. Empty: no network at all.
    pub net: NetPolicy,
    /// The command's environment.
    pub env: EnvPolicy,
    /// Executables that may be `execve`d. `None`: any readable file.
    pub exec: Option<Vec<std::path::PathBuf>>,
    /// Time, memory, CPU, process and output quotas.
    pub limits: Limits,
    /// Opt-in W^X rule for runtimes without a JIT. Default: allowed.
    pub wx: WriteXorExecute,
}

impl Policy {
    /// Whether a quota of this policy may need a cgroup (memory, pids, CPU).
    pub fn wants_cgroups(&self) -> bool {
        self.limits.memory_mb.is_some() || self.limits.pids.is_some() || self.limits.cpu_ms.is_some()
    }

    /// Checks the policy for mistakes a user can fix, naming the field.
    pub fn validate(&self) -> Result<()> {
        self.limits.validate()?;
        self.env.validate()?;
        Ok(())
    }
}

/// A policy that cannot be built or does not make sense.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `--mode` names no tier.
    #[error("unknown mode `{0}`; expected one of container, process, dev")]
    UnknownMode(String),
    /// `--net-via` names no route.
    #[error("unknown network route `{0}`; expected kernel or proxy")]
    UnknownNetVia(String),
    /// A path pattern uses a wildcard other than a trailing `/**`.
    #[error("path `{0}` has a wildcard; only a trailing `/**` (the whole tree) is supported, because access is enforced per path tree")]
    Wildcard(String),
    /// A path is empty.
    #[error("empty path")]
    EmptyPath,
    /// A path does not exist.
    #[error("path `{path}` does not exist")]
    PathMissing {
        /// The path as given.
        path: String,
    },
    /// An environment pattern is malformed.
    #[error("environment pattern `{0}` is invalid; use NAME or PREFIX*")]
    EnvPattern(String),
    /// A `K=V` pair is malformed.
    #[error("environment assignment `{0}` is invalid; use NAME=VALUE")]
    EnvAssignment(String),
    /// A quota is out of range.
    #[error("{field} = {value} is out of range; {expected}")]
    Limit {
        /// The quota's name.
        field: &'static str,
        /// The value given.
        value: u64,
        /// What is accepted.
        expected: &'static str,
    },
    /// A network pattern is malformed.
    #[error("network pattern `{pattern}` is invalid: {reason}")]
    NetPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl PolicyError {
    /// A suggestion for the user, where there is one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            PolicyError::Wildcard(_) => {
                Some("grant the directory itself (`dir` or `dir/**`) and use --deny for carve-outs")
            }
            PolicyError::PathMissing { .. } => Some("check the spelling, or create the path before the run"),
            PolicyError::NetPattern { .. } => {
                Some("patterns look like `api.example.com`, `*.example.com`, `*`, each with an optional `:port`")
            }
            _ => None,
        }
    }
}

/// The result type of this module.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;
