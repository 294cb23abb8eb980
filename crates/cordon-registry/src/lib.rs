//! cordon-registry: signed plugin packages, their trust store and their
//! installed state, and the verification that runs before every load.
//!
//! [`Registry`] is the one entry point: the `cordon plugin`, `cordon trust`
//! and `cordon exec ID` commands are glue around it, and a host such as the
//! gateway calls the same methods ([`Registry::list`] to show plugins,
//! [`Registry::load`] before each run). Free functions cover what needs no
//! store: [`pack`](package::pack), [`inspect`], [`sign`] and [`generate_key`].
//!
//! # What it protects
//!
//! - **Only signed code runs.** A package's *statement* (plugin id,
//!   version, tree hash, permissions digest; see [`statement`]) is signed
//!   with Ed25519 in the minisign format, so stock `minisign` interoperates
//!   both ways. A plugin is [`State::Signed`] only while its signature
//!   verifies with a trusted, in-scope, unexpired key ([`trust`]); a
//!   removed or expired key makes installed plugins [`State::Invalid`] at
//!   their next load. Unsigned plugins run only when installed with
//!   [`Unsigned::Allow`], which the lock file records.
//! - **Every load verifies.** [`Registry::load`] checks the signature
//!   first, then the installed tree against the lock file: a changed,
//!   added, removed or re-linked file makes the plugin [`State::Modified`]
//!   and the error names the file and both hashes ([`verify`]).
//! - **Consent.** An update that asks for more (see
//!   [`permissions::diff`]) is refused without [`Approval::Given`]; the
//!   installed version stays in place and runnable. A version below the
//!   highest ever installed is refused without [`Downgrade::Allow`].
//! - **Signer continuity.** A version signed by another key than the last
//!   one installed for its id (or unsigned after signed, or signed after
//!   unsigned) is refused without [`Approval::Given`], naming both signers:
//!   trust scopes say which ids a key may sign, not whose plugin an id is,
//!   and the default scope is every id. The lock file keeps the last
//!   signer per id after uninstall, as it keeps the highest version.
//! - **Hostile packages** are refused before anything is stored
//!   ([`package::unpack`]).
//! - **Crash safety.** The lock file is replaced atomically under a file
//!   lock ([`store`]): concurrent installs are serialised and none is lost,
//!   and a process killed at any point leaves the old or the new state.
//!
//! The manifest is read only after the package passed the hostile-package
//! checks, and nothing it says is acted on before the signature over its
//! statement verified.
//!
//! # Current limitations
//!
//! - The check happens before a run starts; a process that can write the
//!   plugin store could change a file between the check and the handler
//!   reading it. The store should be writable by the operator only.
//! - Keys have no revocation list beyond removing them from the trust
//!   store; there is no transparency log.
//! - Encrypted (password-protected) minisign secret keys are not read:
//!   sign the statement with stock `minisign` instead.
//!
//! # Test strategy
//!
//! Pure parts (formats, paths, permission diffs, scopes) are unit-tested
//! next to the code. `tests/` drives a real store in temporary folders:
//! a table of crafted hostile archives (raw tar bytes where the `tar`
//! crate refuses to write them), tampering after install, moved
//! signatures, expired and out-of-scope keys, consent and downgrade, and
//! interoperability with the stock `minisign` binary both ways. The CLI
//! suite kills real `cordon plugin install` processes at many points and
//! checks the store every time, and runs two installs at once.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod minisign;
pub mod package;
pub mod permissions;
pub mod statement;
pub mod store;
pub mod tree;
pub mod trust;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cordon_plugin::manifest::PluginId;
use serde::Serialize;

pub use minisign::{KeyFileError, KeyId};
pub use package::{pack, PackError, Packed, UnpackError, Unpacked};
pub use permissions::{PermissionDiff, Permissions};
pub use statement::Statement;
pub use store::{Installed, State};
pub use tree::Digest256;
pub use trust::{TrustInputError, TrustedKey};
pub use verify::VerifyError;

pub use store::Signer;
use store::{LockFile, Staging, WriteLock};
use trust::TrustStore;
use verify::StampCache;

/// The variable naming cordon's home (state and installed plugins).
pub const HOME_ENV: &str = cordon_core::state::HOME_ENV;

/// Whether an update that widens permissions is approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Approval {
    /// `--approve`.
    Given,
    /// Refuse a widening update.
    #[default]
    NotGiven,
}

/// Whether an unsigned package may be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Unsigned {
    /// `--allow-unsigned`; recorded in the lock file.
    Allow,
    /// Refuse it.
    #[default]
    Refuse,
}

/// Whether a version below the highest ever installed may be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Downgrade {
    /// `--allow-downgrade`.
    Allow,
    /// Refuse it.
    #[default]
    Refuse,
}

/// Whether verification may use the stamp cache (see [`verify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Cache {
    /// Files with an unchanged stamp are not hashed again.
    #[default]
    On,
    /// Every file is hashed.
    Off,
}

/// Whether a plugin runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enablement {
    /// `cordon plugin enable`.
    Enabled,
    /// `cordon plugin disable`.
    Disabled,
}

/// How to install.
#[derive(Clone, Copy, Debug, Default)]
pub struct InstallOptions {
    /// Consent to wider permissions and to a signer change.
    pub approval: Approval,
    /// Accept an unsigned package.
    pub unsigned: Unsigned,
    /// Accept a lower version.
    pub downgrade: Downgrade,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No `CORDON_HOME`, `XDG_DATA_HOME` or `HOME`.
    #[error("no cordon home: neither CORDON_HOME, XDG_DATA_HOME nor HOME is set")]
    NoHome,
    /// A file under `CORDON_HOME` cannot be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A state file is damaged.
    #[error(transparent)]
    State(#[from] store::ReadStateError),
    /// The package is hostile or malformed.
    #[error("refused package {}: {source}", path.display())]
    Unpack {
        /// The package.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<UnpackError>,
    },
    /// The package cannot be packed.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// Verification failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// An update asks for more than was approved, or is signed by another
    /// key than the version before it.
    #[error("{}", consent_text(id, from, to, diff, signer.as_deref()))]
    NeedsConsent {
        /// The plugin.
        id: String,
        /// The installed version (or, after an uninstall, the last one).
        from: String,
        /// The new one.
        to: String,
        /// The differences (boxed, as the signer: the error stays small).
        diff: Box<PermissionDiff>,
        /// The signer, when it changes.
        signer: Option<Box<SignerChange>>,
    },
    /// A lower version than the highest seen.
    #[error("{id} {version} is lower than {highest}, the highest version installed here")]
    Downgrade {
        /// The plugin.
        id: String,
        /// The version offered.
        version: String,
        /// The highest seen.
        highest: String,
    },
    /// The same version with other files.
    #[error("{id} {version} is installed with other files (tree {installed}); this package has tree {offered}")]
    SameVersion {
        /// The plugin.
        id: String,
        /// The version.
        version: String,
        /// The installed tree.
        installed: Digest256,
        /// The offered tree.
        offered: Digest256,
    },
    /// No such plugin installed.
    #[error("{id} is not installed")]
    NotInstalled {
        /// The id asked for.
        id: String,
    },
    /// The plugin is disabled.
    #[error("{id} is disabled")]
    Disabled {
        /// The plugin.
        id: String,
    },
    /// A key or signature file cannot be used.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// A trust store input is invalid.
    #[error(transparent)]
    TrustInput(#[from] TrustInputError),
    /// The key is trusted already.
    #[error("key {key_id} is already trusted as `{name}`")]
    AlreadyTrusted {
        /// The key.
        key_id: KeyId,
        /// Its name.
        name: String,
    },
    /// The name is taken.
    #[error("a trusted key is already named `{name}`")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// No key of that name.
    #[error("no trusted key is named `{name}`")]
    UnknownName {
        /// The name.
        name: String,
    },
    /// An id that is not `@scope/name`.
    #[error(transparent)]
    Id(#[from] cordon_plugin::manifest::PluginIdError),
}

impl RegistryError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::NoHome => Some("set CORDON_HOME to a folder for cordon's state".into()),
            RegistryError::Io { .. } => Some("check that the folder exists and that you can write it".into()),
            RegistryError::State(_) => {
                Some("the file was edited or damaged; restore it from a backup, or move it away to start over".into())
            }
            RegistryError::Unpack { source, .. } => source.hint(),
            RegistryError::Pack(e) => e.hint(),
            RegistryError::Verify(e) => Some(e.hint()),
            RegistryError::NeedsConsent { signer: None, .. } => Some(
                "review the permissions above; install again with --approve to grant them (the installed version \
                 keeps running until then)"
                    .into(),
            ),
            RegistryError::NeedsConsent { signer: Some(_), .. } => Some(
                "another publisher's key signed this version: any trusted key may sign any id its scope allows, so \
                 this is how one publisher takes over another's plugin, its approved permissions, variables and data \
                 folder. Check with the plugin's publisher that the key changed; install again with --approve to \
                 accept the new signer (the installed version keeps running until then), or limit each key with \
                 `cordon trust add --scope`"
                    .into(),
            ),
            RegistryError::Downgrade { .. } => {
                Some("install a newer version, or pass --allow-downgrade if you mean to go back".into())
            }
            RegistryError::SameVersion { .. } => Some(
                "a publisher changes files under a new version; to replace it anyway, `cordon plugin uninstall ID` first"
                    .into(),
            ),
            RegistryError::NotInstalled { .. } => {
                Some("`cordon plugin list` shows what is installed; a plugin folder is run by its path".into())
            }
            RegistryError::Disabled { id } => Some(format!("`cordon plugin enable {id}` lets it run again")),
            RegistryError::Key(e) => e.hint().map(str::to_owned),
            RegistryError::TrustInput(e) => Some(e.hint().into()),
            RegistryError::AlreadyTrusted { .. } => Some("`cordon trust list` shows the trusted keys".into()),
            RegistryError::NameTaken { .. } => Some("choose another --name".into()),
            RegistryError::UnknownName { .. } => Some("`cordon trust list` shows the names".into()),
            RegistryError::Id(_) => Some("plugin ids look like `@scope/name`".into()),
        }
    }

    /// The signature state an error of [`Registry::load`] means, if it is a
    /// verification failure.
    pub fn state(&self) -> Option<State> {
        match self {
            RegistryError::Verify(e) => Some(e.state()),
            _ => None,
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A package checked, with its statement.
#[derive(Clone, Debug)]
pub struct Inspected {
    /// What unpacking found.
    pub unpacked: Unpacked,
    /// The statement a signature must cover.
    pub statement: Statement,
}

/// Checks `package` as [`Registry::install`] would (nothing is written)
/// and returns its statement.
pub fn inspect(package: &Path) -> Result<Inspected> {
    let unpacked = package::unpack(package, None)
        .map_err(|source| RegistryError::Unpack { path: package.to_owned(), source: Box::new(source) })?;
    let statement = statement_for(&unpacked);
    Ok(Inspected { unpacked, statement })
}

fn statement_for(u: &Unpacked) -> Statement {
    Statement {
        id: u.manifest.id.clone(),
        version: u.manifest.version.clone(),
        tree: u.tree.hash(),
        permissions: Permissions::of(&u.manifest).digest(),
    }
}

/// The signature file of a package: `FILE.minisig`.
pub fn signature_path(package: &Path) -> PathBuf {
    let mut s = package.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

/// A signature written by [`sign`].
#[derive(Clone, Debug)]
pub struct Signed {
    /// `FILE.minisig`.
    pub path: PathBuf,
    /// What it covers.
    pub statement: Statement,
    /// The key that made it.
    pub key_id: KeyId,
}

/// Signs `package`'s statement with the secret key in `key` and writes
/// `FILE.minisig` (replacing an older one atomically).
pub fn sign(package: &Path, key: &Path) -> Result<Signed> {
    let inspected = inspect(package)?;
    let secret = minisign::SecretKey::load(key)?;
    let timestamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let file = package.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let st = inspected.statement;
    let signature = secret.sign(st.text().as_bytes(), &st.trusted_comment(timestamp, &file));
    let path = signature_path(package);
    store::write_atomic(&path, signature.to_file_text().as_bytes()).map_err(|source| RegistryError::Io {
        action: "write the signature",
        path: path.clone(),
        source,
    })?;
    Ok(Signed { path, statement: st, key_id: secret.key_id() })
}

/// Generates a key pair: `out` (secret, 0600, no password) and `out.pub`.
/// Returns the key id and the public key file.
pub fn generate_key(out: &Path) -> Result<(KeyId, PathBuf)> {
    let key = minisign::SecretKey::generate()?;
    let public = key.write_pair(out)?;
    Ok((key.key_id(), public))
}

/// A version signed by another key than the one before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignerChange {
    /// The signer of the last version installed.
    pub from: Signer,
    /// The signer of the new one.
    pub to: Signer,
}

impl std::fmt::Display for SignerChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "signer: {} -> {}", self.from, self.to)
    }
}

fn consent_text(id: &str, from: &str, to: &str, diff: &PermissionDiff, signer: Option<&SignerChange>) -> String {
    let mut out = match signer {
        Some(_) => format!("{id} {to} is signed by another key than {from}:\n"),
        None => format!("{id} {to} asks for more than the approved {from}:\n"),
    };
    if let Some(c) = signer {
        out.push_str(&format!("  ! {c}\n"));
    }
    if diff.widens() {
        if signer.is_some() {
            out.push_str(&format!("and asks for more than the approved {from}:\n"));
        }
        out.push_str(&diff.render());
    }
    out.truncate(out.trim_end().len());
    out
}

/// An installed plugin and its state now.
#[derive(Clone, Debug, Serialize)]
pub struct PluginStatus {
    /// `@scope/name`.
    pub id: String,
    /// The installed version.
    pub version: String,
    /// Its signature state now (DESIGN.md: signed, unsigned, invalid,
    /// modified).
    pub state: State,
    /// Whether it runs.
    pub enabled: bool,
    /// Why it is not signed, when it is not.
    pub error: Option<String>,
    /// What to do about that.
    pub hint: Option<String>,
    /// The plugin folder.
    pub path: PathBuf,
    /// The tree hash.
    pub tree_hash: Digest256,
    /// The package's SHA-256.
    pub package_sha256: Digest256,
    /// The signer's key id.
    pub signer_key_id: Option<KeyId>,
    /// The signer's name at install time.
    pub signer: Option<String>,
    /// Installed with `--allow-unsigned`.
    pub allow_unsigned: bool,
    /// The approved permissions digest.
    pub approved_permissions: Digest256,
    /// The approved permissions.
    pub permissions: Vec<String>,
    /// The highest version installed here.
    pub highest_version: String,
    /// When it was installed.
    pub installed_at: String,
}

/// What [`Registry::install`] did.
#[derive(Clone, Debug, Serialize)]
pub struct InstallReport {
    /// The plugin as now recorded.
    pub plugin: PluginStatus,
    /// What changed.
    pub change: InstallChange,
    /// The version it replaced.
    pub previous: Option<String>,
    /// The permission changes from the replaced version.
    pub diff: Option<PermissionDiff>,
    /// The signer change from the last version installed (approved).
    pub signer_change: Option<SignerChange>,
}

/// What an install changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallChange {
    /// A plugin that was not installed.
    Installed,
    /// Another version replaced the installed one.
    Updated,
    /// The same version and tree was installed already.
    Unchanged,
}

/// A verified plugin, ready to run: what [`Registry::load`] returns.
#[derive(Clone, Debug, Serialize)]
pub struct Loaded {
    /// `@scope/name`.
    pub id: String,
    /// Its version.
    pub version: String,
    /// Its folder, to run it from.
    pub dir: PathBuf,
    /// The verified tree hash.
    pub tree_hash: Digest256,
    /// The key that signed it.
    pub signer_key_id: Option<KeyId>,
    /// [`State::Signed`] or [`State::Unsigned`] (allowed at install).
    pub state: State,
    /// The SHA-256 of its `cordon.toml` as the verified tree listing names
    /// it: a host that reads the manifest itself checks what it read
    /// against this (see [`Registry::load`]).
    pub manifest_sha256: Digest256,
}

impl Loaded {
    /// Its `cordon.toml`, read once, if it still hashes to
    /// [`Loaded::manifest_sha256`]; else why not (naming the file, with
    /// what to do). A host runs the plugin from these bytes, never from a
    /// second read of the file, which may have changed since the check.
    pub fn read_manifest(&self) -> std::result::Result<Vec<u8>, String> {
        read_manifest(&self.dir, self.manifest_sha256)
    }
}

/// The `cordon.toml` of the plugin folder `dir`, read once, if it hashes to
/// `expected` (its verified tree's); else why not, for the run's error.
pub fn read_manifest(dir: &Path, expected: Digest256) -> std::result::Result<Vec<u8>, String> {
    use cordon_plugin::manifest::{MANIFEST_FILE, MAX_MANIFEST_BYTES};
    use std::io::Read;
    let path = dir.join(MANIFEST_FILE);
    let mut bytes = vec![];
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let found = Digest256::of(&bytes);
    if found != expected {
        return Err(format!(
            "{} changed after the plugin was verified (it hashes to {found}; the verified tree has {expected})\n\
             hint: reinstall the plugin (`cordon plugin install`), or find what writes to the plugin store",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The store under `CORDON_HOME`. Cheap to create; holds no open files.
#[derive(Clone, Debug)]
pub struct Registry {
    home: PathBuf,
}

impl Registry {
    /// `$CORDON_HOME`, else `$XDG_DATA_HOME/cordon`, else
    /// `~/.local/share/cordon` (absolute values only): cordon's home, which
    /// every sandbox is kept out of (`cordon_core::state`), except for a
    /// plugin's own folder while it runs.
    pub fn default_home() -> Option<PathBuf> {
        cordon_core::state::home_dir()
    }

    /// Opens the registry at [`Registry::default_home`].
    pub fn from_env() -> Result<Registry> {
        Registry::open(&Registry::default_home().ok_or(RegistryError::NoHome)?)
    }

    /// Opens (creating the folder and its staging folder if needed) the
    /// registry at `home`.
    pub fn open(home: &Path) -> Result<Registry> {
        use std::os::unix::fs::DirBuilderExt;
        let io = |source| RegistryError::Io { action: "create", path: home.to_owned(), source };
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(home).map_err(io)?;
        // Staging lives in the store (same filesystem, so moving a plugin
        // into place is a rename) and exists from the start, so a refused
        // package leaves the store exactly as it was.
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(home.join(store::STAGING_DIR)).map_err(io)?;
        let home = std::fs::canonicalize(home).map_err(io)?;
        Ok(Registry { home })
    }

    /// The folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    fn lock_path(&self) -> PathBuf {
        self.home.join(store::LOCK_FILE)
    }

    /// The lock file's content (empty when nothing was ever installed).
    pub fn lock_file(&self) -> Result<LockFile> {
        Ok(store::read_json(&self.lock_path())?.unwrap_or(LockFile { format: 1, ..LockFile::default() }))
    }

    /// The trust store's content.
    pub fn trust_store(&self) -> Result<TrustStore> {
        Ok(store::read_json(&self.home.join(store::TRUST_FILE))?.unwrap_or_default())
    }

    fn write_lock_file(&self, lock: &LockFile) -> Result<()> {
        let path = self.lock_path();
        store::write_atomic(&path, &store::to_json(lock)).map_err(|source| RegistryError::Io {
            action: "write",
            path,
            source,
        })
    }

    fn acquire(&self) -> Result<WriteLock> {
        WriteLock::acquire(&self.home).map_err(|source| RegistryError::Io {
            action: "lock",
            path: self.home.clone(),
            source,
        })
    }

    /// Installs `package` (its signature is `FILE.minisig`). See the crate
    /// docs for what is checked; on any error the store is as it was.
    pub fn install(&self, package: &Path, opts: &InstallOptions) -> Result<InstallReport> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| RegistryError::Io { action, path, source }
        };
        let staging = Staging::create(&self.home).map_err(io("create a staging folder in", &self.home))?;
        let tree_dir = staging.path().join("tree");
        std::fs::create_dir(&tree_dir).map_err(io("create", &tree_dir))?;
        let unpacked = package::unpack(package, Some(&tree_dir))
            .map_err(|source| RegistryError::Unpack { path: package.to_owned(), source: Box::new(source) })?;
        let statement = statement_for(&unpacked);
        let id = statement.id.to_string();
        let sig_path = signature_path(package);
        let signature = match std::fs::metadata(&sig_path) {
            Ok(_) => Some(minisign::Signature::load(&sig_path)?.to_file_text()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(RegistryError::Io { action: "read", path: sig_path, source }),
        };
        // The signature first: nothing the manifest says is acted on before.
        let trust = self.trust_store()?;
        let signer = match &signature {
            Some(sig) => Some(verify::check_signature(&statement, sig, &trust, SystemTime::now())?),
            None if opts.unsigned == Unsigned::Allow => None,
            None => return Err(VerifyError::Unsigned { id }.into()),
        };
        let permissions = Permissions::of(&unpacked.manifest);
        let tree_hash = statement.tree;
        let listing = unpacked.tree.listing();

        // Durable before the lock file can name it; outside the lock, so
        // concurrent installs overlap their I/O.
        package::sync_tree(&tree_dir, &unpacked.tree).map_err(io("sync", &tree_dir))?;

        let _guard = self.acquire()?;
        let mut lock = self.lock_file()?;
        let version = statement.version.clone();
        let existing = lock.plugins.get(&id).cloned();
        let highest = lock.highest_seen.get(&id).cloned();
        if let Some(e) = &existing {
            if e.version == version && e.tree_hash == tree_hash {
                // Nothing to change but what killed installs left behind.
                store::sweep(&self.home, &lock);
                return Ok(InstallReport {
                    plugin: self.status(e, &trust, Cache::On),
                    change: InstallChange::Unchanged,
                    previous: Some(e.version.to_string()),
                    diff: None,
                    signer_change: None,
                });
            }
            if e.version == version {
                return Err(RegistryError::SameVersion {
                    id,
                    version: version.to_string(),
                    installed: e.tree_hash,
                    offered: tree_hash,
                });
            }
        }
        if let Some(h) = &highest {
            if version < *h && opts.downgrade == Downgrade::Refuse {
                return Err(RegistryError::Downgrade { id, version: version.to_string(), highest: h.to_string() });
            }
        }
        let diff = existing.as_ref().map(|e| permissions::diff(&e.permissions, &permissions));
        // Signer continuity: the key that signed the last version installed
        // (kept after uninstall, as highest_seen is) signs the next one, or
        // the operator approves the change. Trust scopes say which ids a key
        // may sign, not whose plugin an id is.
        let new_signer = Signer {
            key_id: signer.as_ref().map(|s| s.key_id),
            name: signer.as_ref().map(|s| s.name.clone()),
            version: version.clone(),
        };
        let last_signer = lock.last_signer.get(&id).cloned().or_else(|| {
            existing.as_ref().map(|e| Signer {
                key_id: e.signer_key_id,
                name: e.signer.clone(),
                version: e.version.clone(),
            })
        });
        let signer_change = last_signer
            .filter(|last| !last.same_key(&new_signer))
            .map(|from| SignerChange { from, to: new_signer.clone() });
        let widens = diff.as_ref().is_some_and(PermissionDiff::widens);
        if (widens || signer_change.is_some()) && opts.approval == Approval::NotGiven {
            let from = match (&existing, &signer_change) {
                (Some(e), _) => e.version.to_string(),
                (None, Some(c)) => c.from.version.to_string(),
                (None, None) => unreachable!("no diff without an installed version"),
            };
            return Err(RegistryError::NeedsConsent {
                id,
                from,
                to: version.to_string(),
                diff: Box::new(diff.unwrap_or_default()),
                signer: signer_change.map(Box::new),
            });
        }
        // Into place: the folder and its listing first, synced, then the
        // lock file that names them.
        let dir = store::plugin_dir(&id, &version, &tree_hash);
        let final_dir = self.home.join(&dir);
        let parent = final_dir.parent().expect("plugins/@scope/name");
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        store::remove_any(&final_dir).map_err(io("clear", &final_dir))?;
        std::fs::rename(&tree_dir, &final_dir).map_err(io("move the plugin into", &final_dir))?;
        let listing_path = store::listing_path(&self.home, &dir);
        store::write_atomic(&listing_path, listing.as_bytes()).map_err(io("write", &listing_path))?;
        let highest_version = match highest {
            Some(h) if h > version => h,
            _ => version.clone(),
        };
        let entry = Installed {
            id: id.clone(),
            version: version.clone(),
            package_sha256: unpacked.package_sha256,
            tree_hash,
            signer_key_id: signer.as_ref().map(|s| s.key_id),
            signer: signer.as_ref().map(|s| s.name.clone()),
            state: if signer.is_some() { State::Signed } else { State::Unsigned },
            allow_unsigned: signer.is_none(),
            enabled: existing.as_ref().is_none_or(|e| e.enabled),
            approved_permissions: permissions.digest(),
            permissions,
            highest_version: highest_version.clone(),
            dir,
            signature,
            installed_at: store::now_rfc3339(),
        };
        lock.format = 1;
        lock.plugins.insert(id.clone(), entry.clone());
        lock.highest_seen.insert(id.clone(), highest_version);
        lock.last_signer.insert(id, new_signer);
        self.write_lock_file(&lock)?;
        store::sweep(&self.home, &lock);
        drop(staging);
        Ok(InstallReport {
            plugin: self.status(&entry, &trust, Cache::On),
            change: if existing.is_some() { InstallChange::Updated } else { InstallChange::Installed },
            previous: existing.map(|e| e.version.to_string()),
            diff,
            signer_change,
        })
    }

    /// Every installed plugin with its state now (each one verified).
    pub fn list(&self, cache: Cache) -> Result<Vec<PluginStatus>> {
        let lock = self.lock_file()?;
        let trust = self.trust_store()?;
        Ok(lock.plugins.values().map(|e| self.status(e, &trust, cache)).collect())
    }

    /// One plugin with its state now.
    pub fn info(&self, id: &str, cache: Cache) -> Result<PluginStatus> {
        let entry = self.entry(id)?;
        Ok(self.status(&entry, &self.trust_store()?, cache))
    }

    fn entry(&self, id: &str) -> Result<Installed> {
        let id: PluginId = id.parse()?;
        self.lock_file()?.plugins.remove(&id.to_string()).ok_or(RegistryError::NotInstalled { id: id.to_string() })
    }

    fn status(&self, e: &Installed, trust: &TrustStore, cache: Cache) -> PluginStatus {
        let (state, error, hint) = match self.verify_entry(e, trust, cache) {
            Ok((s, _)) => (s, None, None),
            Err(err) => (err.state(), Some(err.to_string()), Some(err.hint())),
        };
        PluginStatus {
            id: e.id.clone(),
            version: e.version.to_string(),
            state,
            enabled: e.enabled,
            error,
            hint,
            path: self.home.join(&e.dir),
            tree_hash: e.tree_hash,
            package_sha256: e.package_sha256,
            signer_key_id: e.signer_key_id,
            signer: e.signer.clone(),
            allow_unsigned: e.allow_unsigned,
            approved_permissions: e.approved_permissions,
            permissions: e.permissions.lines(),
            highest_version: e.highest_version.to_string(),
            installed_at: e.installed_at.clone(),
        }
    }

    /// Verifies one plugin (signature, then tree): its state and the
    /// manifest's hash in the verified listing, or why it is not runnable.
    fn verify_entry(&self, e: &Installed, trust: &TrustStore, cache: Cache) -> Result<(State, Digest256), VerifyError> {
        let altered =
            |file: String, change: &str| VerifyError::Altered { id: e.id.clone(), file, change: change.into() };
        if e.permissions.digest() != e.approved_permissions {
            return Err(altered(store::LOCK_FILE.into(), "names permissions that do not match their approved digest"));
        }
        let statement = verify::statement_of(&e.id, &e.version, e.tree_hash, e.approved_permissions)?;
        let state = match &e.signature {
            Some(sig) => {
                verify::check_signature(&statement, sig, trust, SystemTime::now())?;
                State::Signed
            }
            None if e.allow_unsigned => State::Unsigned,
            None => return Err(VerifyError::Unsigned { id: e.id.clone() }),
        };
        let listing_path = store::listing_path(&self.home, &e.dir);
        let listing_name = format!("{}.tree", e.dir);
        let listing = std::fs::read(&listing_path)
            .map_err(|err| altered(listing_name.clone(), &format!("cannot be read ({err})")))?;
        if Digest256::of(&listing) != e.tree_hash {
            return Err(altered(listing_name, "does not hash to the signed tree hash"));
        }
        let text = String::from_utf8(listing).map_err(|_| altered(listing_name.clone(), "is not text"))?;
        let tree = tree::Tree::parse_listing(&text).map_err(|err| altered(listing_name, &err.to_string()))?;
        let manifest_sha256 = match tree.get(cordon_plugin::manifest::MANIFEST_FILE) {
            Some(tree::Entry::File { sha256, .. }) => *sha256,
            _ => {
                return Err(altered(cordon_plugin::manifest::MANIFEST_FILE.into(), "is not a file of the signed tree"))
            }
        };
        let dir = self.home.join(&e.dir);
        if std::fs::canonicalize(&dir).ok().as_deref() != Some(dir.as_path()) {
            return Err(altered(e.dir.clone(), "is missing or reached through a symbolic link"));
        }
        match cache {
            Cache::Off => verify::check_tree(&e.id, &dir, &tree, e.tree_hash, None)?,
            Cache::On => {
                let path = self.home.join(store::CACHE_FILE);
                let mut stamps: StampCache = store::read_json(&path).ok().flatten().unwrap_or_default();
                let result = verify::check_tree(&e.id, &dir, &tree, e.tree_hash, Some(&mut stamps));
                if stamps.changed {
                    // Keep only trees the lock file still names. A cache that
                    // cannot be written costs time on the next load, nothing else.
                    if let Ok(lock) = self.lock_file() {
                        let live: Vec<Digest256> = lock.plugins.values().map(|p| p.tree_hash).collect();
                        stamps.trees.retain(|t, _| live.contains(t));
                    }
                    let _ = store::write_atomic(&path, &store::to_json(&stamps));
                }
                result?
            }
        }
        Ok((state, manifest_sha256))
    }

    /// Verifies plugin `id` for a run: installed, enabled, and Signed (or
    /// Unsigned and installed with `--allow-unsigned`), its tree unchanged.
    /// Call it before every run; `disable` takes effect at the next call.
    pub fn load(&self, id: &str) -> Result<Loaded> {
        self.load_with(id, Cache::On)
    }

    /// [`Registry::load`] choosing whether the stamp cache is used.
    pub fn load_with(&self, id: &str, cache: Cache) -> Result<Loaded> {
        let e = self.entry(id)?;
        if !e.enabled {
            return Err(RegistryError::Disabled { id: e.id });
        }
        let (state, manifest_sha256) = self.verify_entry(&e, &self.trust_store()?, cache)?;
        Ok(Loaded {
            manifest_sha256,
            id: e.id.clone(),
            version: e.version.to_string(),
            dir: self.home.join(&e.dir),
            tree_hash: e.tree_hash,
            signer_key_id: e.signer_key_id,
            state,
        })
    }

    /// Enables or disables plugin `id`; effective for the next load.
    pub fn set_enabled(&self, id: &str, to: Enablement) -> Result<Installed> {
        let _guard = self.acquire()?;
        let mut lock = self.lock_file()?;
        let key = id.parse::<PluginId>()?.to_string();
        let entry = lock.plugins.get_mut(&key).ok_or_else(|| RegistryError::NotInstalled { id: key.clone() })?;
        entry.enabled = to == Enablement::Enabled;
        let entry = entry.clone();
        self.write_lock_file(&lock)?;
        Ok(entry)
    }

    /// Removes plugin `id` and its files. Its highest version stays
    /// recorded (downgrade protection).
    pub fn uninstall(&self, id: &str) -> Result<Installed> {
        let _guard = self.acquire()?;
        let mut lock = self.lock_file()?;
        let key = id.parse::<PluginId>()?.to_string();
        let entry = lock.plugins.remove(&key).ok_or_else(|| RegistryError::NotInstalled { id: key.clone() })?;
        self.write_lock_file(&lock)?;
        store::sweep(&self.home, &lock);
        Ok(entry)
    }

    /// Verifies one plugin, or all: their states now.
    pub fn verify(&self, id: Option<&str>, cache: Cache) -> Result<Vec<PluginStatus>> {
        match id {
            Some(id) => Ok(vec![self.info(id, cache)?]),
            None => self.list(cache),
        }
    }

    /// Trusts the public key in `pubfile`.
    pub fn trust_add(
        &self,
        pubfile: &Path,
        name: Option<&str>,
        scope: &[String],
        expires: Option<&str>,
    ) -> Result<TrustedKey> {
        let key = minisign::PublicKey::load(pubfile)?;
        let name = name.map_or_else(|| key.key_id().to_string(), str::to_owned);
        trust::check_name(&name)?;
        for s in scope {
            trust::check_scope(s)?;
        }
        if let Some(d) = expires {
            trust::expiry_instant(d)?;
        }
        let _guard = self.acquire()?;
        let mut store = self.trust_store()?;
        if let Some(k) = store.by_key_id(key.key_id()) {
            return Err(RegistryError::AlreadyTrusted { key_id: k.key_id, name: k.name.clone() });
        }
        if store.by_name(&name).is_some() {
            return Err(RegistryError::NameTaken { name });
        }
        let mut scope = scope.to_vec();
        scope.sort();
        scope.dedup();
        let entry = TrustedKey {
            name,
            key_id: key.key_id(),
            public_key: key.to_base64(),
            scope,
            expires: expires.map(str::to_owned),
            added_at: store::now_rfc3339(),
        };
        store.keys.push(entry.clone());
        self.write_trust(&store)?;
        Ok(entry)
    }

    /// The trusted keys.
    pub fn trust_list(&self) -> Result<Vec<TrustedKey>> {
        Ok(self.trust_store()?.keys)
    }

    /// Stops trusting the key named `name` (or with that key id). Plugins it
    /// signed are Invalid from their next load.
    pub fn trust_remove(&self, name: &str) -> Result<TrustedKey> {
        let _guard = self.acquire()?;
        let mut store = self.trust_store()?;
        let pos = store
            .keys
            .iter()
            .position(|k| k.name == name || k.key_id.to_string() == name)
            .ok_or_else(|| RegistryError::UnknownName { name: name.to_owned() })?;
        let removed = store.keys.remove(pos);
        self.write_trust(&store)?;
        Ok(removed)
    }

    fn write_trust(&self, store: &TrustStore) -> Result<()> {
        let path = self.home.join(store::TRUST_FILE);
        store::write_atomic(&path, &store::to_json(store)).map_err(|source| RegistryError::Io {
            action: "write",
            path,
            source,
        })
    }
}
