//! Which plugins the service runs: the [`Catalog`] interface and its two
//! implementations. The routes only see the trait.
//!
//! - [`RegistryCatalog`] (the default): the plugins installed with `cordon
//!   plugin install` under `CORDON_HOME`, each verified by
//!   [`cordon_registry::Registry::load`] (signature, then the installed
//!   tree) before every run; a disabled, modified or badly signed plugin is
//!   refused at once.
//! - [`FolderCatalog`] (`[server] plugins = "DIR"`): the sub-folders of one
//!   folder, unsigned, for development and tests.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use cordon::plugin::Manifest;

/// One installed plugin, as `GET /v1/plugins` lists it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PluginInfo {
    /// `@scope/name`.
    pub id: String,
    /// Its version.
    pub version: String,
    /// `signed`, `unsigned`, `invalid` or `modified` (DESIGN.md). A folder
    /// catalog has no signatures: `unsigned`, or `invalid` when the
    /// manifest does not load.
    pub state: String,
    /// Whether the service runs it.
    pub enabled: bool,
    /// Its handlers.
    pub handlers: Vec<String>,
}

/// A plugin checked and ready to run.
#[derive(Clone, Debug)]
pub struct Runnable {
    /// Its folder.
    pub dir: PathBuf,
    /// `@scope/name`.
    pub id: String,
    /// Its version.
    pub version: String,
    /// Its handlers.
    pub handlers: Vec<String>,
    /// `signed` or `unsigned` (DESIGN.md), for the audit record.
    pub state: String,
    /// The verified tree hash (`sha256:<hex>`), when installed.
    pub tree_hash: Option<String>,
    /// The id of the key that signed it.
    pub signer_key_id: Option<String>,
    /// The SHA-256 of its `cordon.toml` in the verified tree listing, when
    /// installed: a plan made from the manifest is made from bytes that
    /// hash to this ([`crate::plans`]).
    pub manifest_sha256: Option<cordon_registry::Digest256>,
}

/// Why a plugin cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// No installed plugin has this id.
    #[error("no plugin `{0}` is installed")]
    NotFound(String),
    /// Installed and disabled.
    #[error("plugin `{0}` is disabled")]
    Disabled(String),
    /// Installed, and it does not verify.
    #[error("plugin `{id}` does not verify: {reason}")]
    Invalid {
        /// The plugin.
        id: String,
        /// Why.
        reason: String,
    },
    /// The catalog cannot be read.
    #[error("cannot read the plugin folder {}: {source}", path.display())]
    Read {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where plugins come from.
pub trait Catalog: Send + Sync + 'static {
    /// Every installed plugin.
    fn list(&self) -> Result<Vec<PluginInfo>, CatalogError>;
    /// `id`, verified now and enabled, or why not. Called before every run.
    fn resolve(&self, id: &str) -> Result<Runnable, CatalogError>;
    /// Whether the catalog can be read (for `/readyz`).
    fn check(&self) -> Result<(), CatalogError>;
}

type Scanned = (PathBuf, Result<Manifest, String>);

/// Plugins as the sub-folders of one folder, each with a `cordon.toml`.
/// "Verify" means the manifest loads and names the id asked for; a plugin
/// is disabled by listing it in `[server] disabled`. Unsigned: the folder
/// is trusted as the operator's choice.
pub struct FolderCatalog {
    root: PathBuf,
    disabled: Vec<String>,
    /// id → folder, refreshed on a miss.
    index: Mutex<Vec<(String, PathBuf)>>,
}

/// Why a catalog entry that is a symbolic link is not run: the catalog
/// folder is kept out of every run, where a link leads is not (review s14
/// R14-2: a plugin whose grant covered the target rewrote the linked
/// plugin's manifest for its next run).
const LINKED_ENTRY: &str = "the catalog entry is a symbolic link; the service runs only plugin folders that lie in its catalog folder, which no run can write (where a link leads, another plugin's grant may reach): move the plugin folder into the catalog";

impl FolderCatalog {
    /// A catalog of `root`'s sub-folders. `root` is kept out of every run
    /// of this process from now on, as cordon's own state is: each plugin
    /// reads its own folder and no other's, and no run writes any
    /// (review s12: a plugin whose grant covered another catalog folder
    /// rewrote that plugin's code and manifest for its next run, any
    /// tenant's).
    pub fn new(root: &Path, disabled: &[String]) -> FolderCatalog {
        cordon::state::protect_from_now_on(cordon::Protected::folder(
            root,
            "the plugin folders this service runs ([server] plugins)",
        ));
        FolderCatalog { root: root.to_owned(), disabled: disabled.to_vec(), index: Mutex::new(vec![]) }
    }

    /// Each sub-folder with a manifest, and the manifest or why it does
    /// not load.
    fn scan(&self) -> Result<Vec<Scanned>, CatalogError> {
        let read = |source| CatalogError::Read { path: self.root.clone(), source };
        let mut out = vec![];
        let mut entries: Vec<_> = std::fs::read_dir(&self.root).map_err(read)?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let dir = e.path();
            if !dir.join(cordon::plugin::MANIFEST_FILE).is_file() {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_symlink()) {
                out.push((dir, Err(LINKED_ENTRY.into())));
                continue;
            }
            let manifest = Manifest::load(&dir).map_err(|e| e.to_string());
            out.push((dir, manifest));
        }
        Ok(out)
    }
}

impl Catalog for FolderCatalog {
    fn list(&self) -> Result<Vec<PluginInfo>, CatalogError> {
        let mut out = vec![];
        let mut index = vec![];
        for (dir, m) in self.scan()? {
            match m {
                Ok(m) => {
                    let id = m.id.to_string();
                    index.push((id.clone(), dir));
                    out.push(PluginInfo {
                        enabled: !self.disabled.contains(&id),
                        id,
                        version: m.version.to_string(),
                        state: "unsigned".into(),
                        handlers: m.handlers.keys().cloned().collect(),
                    });
                }
                Err(_) => out.push(PluginInfo {
                    id: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    version: String::new(),
                    state: "invalid".into(),
                    enabled: false,
                    handlers: vec![],
                }),
            }
        }
        *self.index.lock().expect("catalog index lock") = index;
        Ok(out)
    }

    fn resolve(&self, id: &str) -> Result<Runnable, CatalogError> {
        if self.disabled.iter().any(|d| d == id) {
            return Err(CatalogError::Disabled(id.to_owned()));
        }
        let cached =
            self.index.lock().expect("catalog index lock").iter().find(|(i, _)| i == id).map(|(_, d)| d.clone());
        let dir = match cached {
            Some(d) => d,
            None => {
                self.list()?;
                let index = self.index.lock().expect("catalog index lock");
                index
                    .iter()
                    .find(|(i, _)| i == id)
                    .map(|(_, d)| d.clone())
                    .ok_or_else(|| CatalogError::NotFound(id.into()))?
            }
        };
        // Verified on every run: the folder may have changed since the scan.
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(CatalogError::Invalid { id: id.into(), reason: LINKED_ENTRY.into() });
        }
        let m = Manifest::load(&dir).map_err(|e| CatalogError::Invalid { id: id.into(), reason: e.to_string() })?;
        if m.id.to_string() != id {
            // Replaced by another plugin: rescan next time.
            self.index.lock().expect("catalog index lock").clear();
            return Err(CatalogError::NotFound(id.into()));
        }
        Ok(Runnable {
            dir,
            id: id.into(),
            version: m.version.to_string(),
            handlers: m.handlers.keys().cloned().collect(),
            state: "unsigned".into(),
            tree_hash: None,
            signer_key_id: None,
            manifest_sha256: None,
        })
    }

    fn check(&self) -> Result<(), CatalogError> {
        std::fs::read_dir(&self.root)
            .map(|_| ())
            .map_err(|source| CatalogError::Read { path: self.root.clone(), source })
    }
}

/// The plugins installed in a registry (`CORDON_HOME`); see the module docs.
pub struct RegistryCatalog {
    registry: cordon_registry::Registry,
}

impl RegistryCatalog {
    /// The registry under `home`.
    pub fn open(home: &Path) -> Result<RegistryCatalog, CatalogError> {
        let registry = cordon_registry::Registry::open(home)
            .map_err(|e| CatalogError::Read { path: home.to_owned(), source: std::io::Error::other(e.to_string()) })?;
        // The registry every run of this process comes from: out of all of
        // them, whatever $CORDON_HOME says.
        cordon::state::protect_from_now_on(cordon::Protected::folder(
            registry.home(),
            "the plugin registry this service runs from: trust store, installed plugins",
        ));
        Ok(RegistryCatalog { registry })
    }

    fn handlers(dir: &Path) -> Vec<String> {
        Manifest::load(dir).map(|m| m.handlers.keys().cloned().collect()).unwrap_or_default()
    }

    fn read_error(&self, e: &cordon_registry::RegistryError) -> CatalogError {
        CatalogError::Read { path: self.registry.home().to_owned(), source: std::io::Error::other(e.to_string()) }
    }
}

impl Catalog for RegistryCatalog {
    fn list(&self) -> Result<Vec<PluginInfo>, CatalogError> {
        let plugins = self.registry.list(cordon_registry::Cache::On).map_err(|e| self.read_error(&e))?;
        Ok(plugins
            .into_iter()
            .map(|p| PluginInfo {
                handlers: Self::handlers(&p.path),
                id: p.id,
                version: p.version,
                state: p.state.as_str().to_owned(),
                enabled: p.enabled,
            })
            .collect())
    }

    fn resolve(&self, id: &str) -> Result<Runnable, CatalogError> {
        use cordon_registry::RegistryError as E;
        match self.registry.load(id) {
            Ok(l) => Ok(Runnable {
                handlers: Self::handlers(&l.dir),
                dir: l.dir,
                id: l.id,
                version: l.version,
                state: l.state.as_str().to_owned(),
                tree_hash: Some(l.tree_hash.to_string()),
                signer_key_id: l.signer_key_id.map(|k| k.to_string()),
                manifest_sha256: Some(l.manifest_sha256),
            }),
            Err(E::NotInstalled { .. }) => Err(CatalogError::NotFound(id.to_owned())),
            Err(E::Disabled { .. }) => Err(CatalogError::Disabled(id.to_owned())),
            Err(e) if e.state().is_some() => {
                let hint = e.hint().map(|h| format!(" (hint: {h})")).unwrap_or_default();
                Err(CatalogError::Invalid { id: id.to_owned(), reason: format!("{e}{hint}") })
            }
            Err(e @ E::Id(_)) => Err(CatalogError::NotFound(format!("{id} ({e})"))),
            Err(e) => Err(self.read_error(&e)),
        }
    }

    fn check(&self) -> Result<(), CatalogError> {
        self.registry.lock_file().map(|_| ()).map_err(|e| self.read_error(&e))
    }
}
