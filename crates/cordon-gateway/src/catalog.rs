//! Which plugins the service runs: the [`Catalog`] interface, and today's
//! implementation over a folder of plugin folders ([`FolderCatalog`]).
//!
//! The registry (`cordon-registry`: installed, signed, verified plugins with
//! an enabled flag) becomes a second implementation of [`Catalog`]; the
//! routes only see the trait.

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

impl FolderCatalog {
    /// A catalog of `root`'s sub-folders.
    pub fn new(root: &Path, disabled: &[String]) -> FolderCatalog {
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
        })
    }

    fn check(&self) -> Result<(), CatalogError> {
        std::fs::read_dir(&self.root)
            .map(|_| ())
            .map_err(|source| CatalogError::Read { path: self.root.clone(), source })
    }
}
