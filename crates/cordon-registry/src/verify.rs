//! Verification: a signature against the trust store, and an installed tree
//! against its listing, with the errors that tell the cases apart.
//!
//! # Signatures
//!
//! [`check_signature`] finds the trusted key by the signature's key id,
//! checks its expiry and scope, and verifies the signature over the
//! [`Statement`]. Each failure has its own [`VerifyError`]: unsigned,
//! unknown key, expired key, out-of-scope key, a signature for another
//! statement (the trusted comment says which field differs), or a bad
//! signature.
//!
//! # Trees
//!
//! [`check_tree`] walks the installed folder without following links and
//! compares it with the tree listing: every path, kind, mode and SHA-256.
//! The first difference is a [`VerifyError::Modified`] naming the file
//! and, for content, both hashes.
//!
//! ## The cache
//!
//! Hashing every file on every load costs time proportional to the plugin's
//! size. [`StampCache`] remembers, per tree hash and path, the SHA-256 of a
//! file together with its stamp: device, inode, size, mtime and ctime (all
//! in nanoseconds). A file whose `lstat` gives the same stamp is not read
//! again. This is sound because the kernel sets ctime to the current time
//! on every change of content, mode, owner or link count, and no system
//! call lets a process set it: a rewrite that restores size and mtime
//! (`utimensat`) still moves ctime, and a replacement file is a new inode
//! with a new ctime. Two guards close the remaining gaps:
//!
//! - An entry is only recorded when the file's ctime is at least
//!   [`RACY_WINDOW`] older than the moment hashing began (git's "racily
//!   clean" rule): ctime has the granularity of the kernel's coarse clock,
//!   so a change within the same tick as the hash would not move it.
//! - The cache lives beside the lock file, not in the plugin store, so
//!   whoever can write the store but not the lock file cannot forge it.
//!
//! Not covered: writes through a shared writable mapping made before the
//! file was hashed may change its content without a new ctime until the
//! kernel writes the page back (then the next write faults and updates
//! it). A host that must exclude even that sets
//! [`Cache::Off`](crate::Cache::Off) and pays for the full hash.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use cordon_plugin::manifest::PluginId;
use serde::{Deserialize, Serialize};

use crate::minisign::{KeyFileError, KeyId, Signature, SignatureError};
use crate::statement::Statement;
use crate::store::State;
use crate::tree::{scan, sha256_reader, Digest256, Entry, ScanError, Tree};
use crate::trust::TrustStore;

/// Files changed more recently than this before hashing began are not
/// cached (see the module docs).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Why a plugin is not Signed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No signature, and unsigned plugins are not allowed.
    #[error("{id} is unsigned")]
    Unsigned {
        /// The plugin.
        id: String,
    },
    /// The signature file is not a minisign signature.
    #[error("the signature of {id} cannot be read: {reason}")]
    MalformedSignature {
        /// The plugin.
        id: String,
        /// Why.
        reason: String,
    },
    /// The key is not in the trust store.
    #[error("{id} is signed by key {key_id}, which is not trusted here")]
    UnknownKey {
        /// The plugin.
        id: String,
        /// The key.
        key_id: KeyId,
    },
    /// The key has expired.
    #[error("{id} is signed by key `{name}` ({key_id}), which expired on {expires}")]
    KeyExpired {
        /// The plugin.
        id: String,
        /// The key's name.
        name: String,
        /// The key.
        key_id: KeyId,
        /// Its expiry date.
        expires: String,
    },
    /// The key may not sign this plugin.
    #[error("{id} is signed by key `{name}` ({key_id}), whose scope ({}) does not include it", scope.join(", "))]
    OutOfScope {
        /// The plugin.
        id: String,
        /// The key's name.
        name: String,
        /// The key.
        key_id: KeyId,
        /// Its scope.
        scope: Vec<String>,
    },
    /// The signature is valid for another statement: its trusted comment
    /// names what it was made for (a digest mismatch).
    #[error("the signature of {id} was made for another statement: {mismatch}")]
    StatementMismatch {
        /// The plugin.
        id: String,
        /// Which fields differ, ours and signed.
        mismatch: String,
    },
    /// The signature does not verify.
    #[error("bad signature on {id} by key `{name}` ({key_id}): {reason}")]
    BadSignature {
        /// The plugin.
        id: String,
        /// The key's name.
        name: String,
        /// The key.
        key_id: KeyId,
        /// What did not verify.
        reason: SignatureError,
    },
    /// An installed file's content differs from the signed tree (a digest
    /// mismatch).
    #[error("{id} was modified after installation: {file} has {actual}, the signed tree has {expected}")]
    Modified {
        /// The plugin.
        id: String,
        /// The file, relative to the plugin folder.
        file: String,
        /// Its hash in the signed tree.
        expected: Digest256,
        /// Its hash now.
        actual: Digest256,
    },
    /// The installed tree differs from the signed one otherwise: a file
    /// added, removed, replaced by a link, or with another mode.
    #[error("{id} was modified after installation: {file} {change}")]
    Altered {
        /// The plugin.
        id: String,
        /// The path.
        file: String,
        /// What changed.
        change: String,
    },
}

impl VerifyError {
    /// The state this error puts a plugin in.
    pub fn state(&self) -> State {
        match self {
            VerifyError::Unsigned { .. } => State::Unsigned,
            VerifyError::Modified { .. } | VerifyError::Altered { .. } => State::Modified,
            _ => State::Invalid,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            VerifyError::Unsigned { .. } => {
                "ask the publisher for FILE.minisig (`cordon plugin sign FILE --key KEY`), or install with \
                 --allow-unsigned to accept an unsigned plugin"
                    .into()
            }
            VerifyError::MalformedSignature { .. } => {
                "FILE.minisig must be what `cordon plugin sign` or `minisign -S` wrote".into()
            }
            VerifyError::UnknownKey { key_id, .. } => format!(
                "if you trust the publisher, get their public key (minisign key id {key_id}) and run `cordon trust add KEY.pub`"
            ),
            VerifyError::KeyExpired { .. } => {
                "ask the publisher for a package signed with a current key, or renew the key with `cordon trust remove` \
                 and `cordon trust add --expires`"
                    .into()
            }
            VerifyError::OutOfScope { .. } => {
                "widen the key's scope with `cordon trust remove` and `cordon trust add --scope`, if the publisher \
                 really owns this plugin"
                    .into()
            }
            VerifyError::StatementMismatch { .. } => {
                "a signature covers one plugin id, version, tree and permission set; the publisher must sign this \
                 package itself (`cordon plugin sign`)"
                    .into()
            }
            VerifyError::BadSignature { .. } => {
                "the package or its signature was altered after signing; do not install it, and ask the publisher".into()
            }
            VerifyError::Modified { .. } | VerifyError::Altered { .. } => {
                "someone changed the installed files; find out who, then reinstall the package \
                 (`cordon plugin uninstall ID` and `cordon plugin install FILE`)"
                    .into()
            }
        }
    }
}

/// Who signed, once a signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// The key.
    pub key_id: KeyId,
    /// Its name in the trust store.
    pub name: String,
}

/// Checks `signature` (the text of a `.minisig`) over `statement`.
pub fn check_signature(
    statement: &Statement,
    signature: &str,
    trust: &TrustStore,
    now: SystemTime,
) -> Result<Signer, VerifyError> {
    let id = statement.id.to_string();
    let sig = Signature::parse(signature, Path::new("signature")).map_err(|e| VerifyError::MalformedSignature {
        id: id.clone(),
        reason: match e {
            KeyFileError::Malformed { reason, .. } => reason,
            other => other.to_string(),
        },
    })?;
    let key_id = sig.key_id();
    let key = trust.by_key_id(key_id).ok_or_else(|| VerifyError::UnknownKey { id: id.clone(), key_id })?;
    let name = key.name.clone();
    if key.expired_at(now) {
        return Err(VerifyError::KeyExpired { id, name, key_id, expires: key.expires.clone().unwrap_or_default() });
    }
    if !key.admits(&statement.id) {
        return Err(VerifyError::OutOfScope { id, name, key_id, scope: key.scope.clone() });
    }
    let public = key.public_key().ok_or_else(|| VerifyError::BadSignature {
        id: id.clone(),
        name: name.clone(),
        key_id,
        reason: SignatureError::Message,
    })?;
    match public.verify(statement.text().as_bytes(), &sig) {
        Ok(()) => Ok(Signer { key_id, name }),
        Err(SignatureError::Message) => {
            // Is it a genuine signature of another statement? Only a trusted
            // comment that verifies may say so.
            let global_ok = public.verify_trusted_comment(&sig).is_ok();
            match statement.mismatch_with(sig.trusted_comment()).filter(|_| global_ok) {
                Some(mismatch) => Err(VerifyError::StatementMismatch { id, mismatch }),
                None => Err(VerifyError::BadSignature { id, name, key_id, reason: SignatureError::Message }),
            }
        }
        Err(reason) => Err(VerifyError::BadSignature { id, name, key_id, reason }),
    }
}

/// A file's identity and change stamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// A cached hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    stamp: Stamp,
    sha256: Digest256,
}

/// Hashes already computed, by tree hash and path (see the module docs).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StampCache {
    /// By tree hash, then by path.
    pub trees: BTreeMap<Digest256, BTreeMap<String, Cached>>,
    /// Whether anything was added since it was read.
    #[serde(skip)]
    pub changed: bool,
}

/// Compares the folder `dir` with `tree`. With `cache`, unchanged files
/// (same stamp) are not read again, and newly hashed files that are old
/// enough are added to it.
pub fn check_tree(
    id: &str,
    dir: &Path,
    tree: &Tree,
    tree_hash: Digest256,
    cache: Option<&mut StampCache>,
) -> Result<(), VerifyError> {
    let altered = |file: &str, change: &str| VerifyError::Altered {
        id: id.to_owned(),
        file: file.to_owned(),
        change: change.to_owned(),
    };
    let root = std::fs::symlink_metadata(dir)
        .map_err(|e| altered(&dir.display().to_string(), &format!("cannot be read ({e})")))?;
    if !root.is_dir() {
        return Err(altered(&dir.display().to_string(), "is not a folder (a link or a file took its place)"));
    }
    let started = SystemTime::now();
    let found = scan(dir, &[]).map_err(|e| match e {
        ScanError::Special { path, kind } => {
            altered(&rel(dir, &path), &format!("is a {kind}, not a file of the signed tree"))
        }
        ScanError::Name { path, problem } => {
            altered(&rel(dir, &path), &format!("is not in the signed tree ({problem})"))
        }
        ScanError::Read { path, source } => altered(&rel(dir, &path), &format!("cannot be read ({source})")),
    })?;
    let mut seen = 0usize;
    let mut fresh: Vec<(String, Cached)> = vec![];
    let cached = cache.as_deref().and_then(|c| c.trees.get(&tree_hash));
    for f in &found {
        use std::os::unix::fs::PermissionsExt;
        let expected = tree.get(&f.path).ok_or_else(|| altered(&f.path, "is not in the signed tree"))?;
        seen += 1;
        let mode = f.meta.permissions().mode() & 0o7777;
        match expected {
            Entry::Dir => {
                if !f.meta.is_dir() {
                    return Err(altered(&f.path, "is a file; the signed tree has a folder"));
                }
                if mode != 0o755 {
                    return Err(altered(&f.path, &format!("has mode {mode:o}; the signed tree has 755")));
                }
            }
            Entry::File { executable, sha256 } => {
                if !f.meta.is_file() {
                    return Err(altered(&f.path, "is a folder; the signed tree has a file"));
                }
                if mode != executable.mode() {
                    return Err(altered(
                        &f.path,
                        &format!("has mode {mode:o}; the signed tree has {:o}", executable.mode()),
                    ));
                }
                let stamp = Stamp::of(&f.meta);
                let hit = cached.and_then(|c| c.get(&f.path)).filter(|c| c.stamp == stamp).map(|c| c.sha256);
                let actual = match hit {
                    Some(h) => h,
                    None => {
                        let file = std::fs::File::open(&f.abs)
                            .map_err(|e| altered(&f.path, &format!("cannot be read ({e})")))?;
                        let (h, _) =
                            sha256_reader(file).map_err(|e| altered(&f.path, &format!("cannot be read ({e})")))?;
                        if h == *sha256 && old_enough(&f.meta, started) {
                            fresh.push((f.path.clone(), Cached { stamp, sha256: h }));
                        }
                        h
                    }
                };
                if actual != *sha256 {
                    return Err(VerifyError::Modified {
                        id: id.to_owned(),
                        file: f.path.clone(),
                        expected: *sha256,
                        actual,
                    });
                }
            }
        }
    }
    if seen != tree.iter().count() {
        let present: std::collections::HashSet<&str> = found.iter().map(|f| f.path.as_str()).collect();
        if let Some((missing, _)) = tree.iter().find(|(p, _)| !present.contains(p.as_str())) {
            return Err(altered(missing, "is missing"));
        }
    }
    if let Some(c) = cache {
        if !fresh.is_empty() {
            c.trees.entry(tree_hash).or_default().extend(fresh);
            c.changed = true;
        }
    }
    Ok(())
}

fn old_enough(meta: &std::fs::Metadata, started: SystemTime) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ctime = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(meta.ctime()).unwrap_or(u64::MAX / 4))
        + Duration::from_nanos(u64::try_from(meta.ctime_nsec()).unwrap_or(0));
    started.duration_since(ctime).is_ok_and(|age| age >= RACY_WINDOW)
}

fn rel(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}

/// The statement of an installed plugin, from its lock entry.
pub fn statement_of(
    id: &str,
    version: &semver::Version,
    tree: Digest256,
    permissions: Digest256,
) -> Result<Statement, VerifyError> {
    let id_parsed: PluginId = id.parse().map_err(|e: cordon_plugin::manifest::PluginIdError| {
        VerifyError::MalformedSignature { id: id.to_owned(), reason: e.to_string() }
    })?;
    Ok(Statement { id: id_parsed, version: version.clone(), tree, permissions })
}
