//! Results signed by the role that wrote them (issue 15 item 5).
//!
//! Any credential that may `create` in the results bucket can write any
//! request's result there: a worker host is semi-trusted. So every writer
//! (each `cordon worker`, `cordon dead-letters`, the gateway for what it
//! decides itself) signs the result it stores with its own Ed25519 key,
//! and the gateway answers a stored result only when its signature is by
//! one of the keys it was configured with (`[queue] result_keys`, a folder
//! of public keys).
//!
//! Keys are minisign key pairs, made with `cordon key gen --out FILE`
//! (FILE is the secret key, `FILE.pub` the public one), the same tooling as
//! plugin signing.
//!
//! # What is signed
//!
//! The stored result is the ExecutionResult JSON with `id`, `worker`,
//! `attempt` and a member `signature`: a minisign signature (the four-line
//! text `minisign -S` writes, algorithm `ED`) of these bytes:
//!
//! ```text
//! cordon result v1
//! key: <tenant>.<request id>
//! attempt: <attempt>
//! worker: <worker>
//! outcome: ok | <error code>
//! body: sha256:<hex SHA-256 of the result's JSON without `signature`>
//! ```
//!
//! each line ending in `\n`. The body's JSON is compact, with every object's
//! members sorted by name (serde_json's `Value` as the gateway parses and
//! writes it back). The bucket key is the one the result is stored under,
//! so a genuine result copied under another tenant or request id is refused
//! too. The trusted comment (`cordon result <key> attempt <n> by
//! <worker>`) is also signed, as minisign always does.
//!
//! # Guarantees
//!
//! - The gateway refuses (HTTP 502, and a message in its log naming the
//!   worker the result claims and what to do) a stored result that is not
//!   signed, is signed by a key not in `[queue] result_keys`, whose bytes
//!   changed after signing, or that names a worker its key does not sign
//!   for.
//! - **A key signs for the workers its files are named after**: `w1.pub`
//!   trusts results naming worker `w1` (`cordon worker --name w1`), no
//!   other; the same key under two names signs for both. The gateway's own
//!   key signs for `gateway`. A file not named `WORKER.pub` is not used.
//! - **Only root and the gateway's user can change what is trusted**: the
//!   gateway refuses to start when the folder, one of its parents (unless
//!   sticky, like /tmp) or a key file is writable by group or others or
//!   owned by another user (the error names the path, its mode and owner,
//!   and the `chmod`/`chown` that fixes it), as sshd does for
//!   `authorized_keys`. The parents checked are those of the path as
//!   configured and those of the path it resolves to, so a symbolic link on
//!   the way counts as what it is: a link in a folder others can write, or a
//!   link owned by another user, is refused (whoever may replace it decides
//!   which folder is read). A key file that is a symbolic link is refused:
//!   the folder's own safety would not cover its target.
//! - A key added to the folder is picked up without a restart: an unknown
//!   key id makes the gateway read the folder again, off the async runtime
//!   and at most once per [`RELOAD_EVERY`] (so a result by an unknown key
//!   costs no disk read per lookup). A file that cannot be used then (not
//!   a key, wrongly named, writable by others) is skipped and logged once;
//!   the others are used. If the folder itself has become unsafe, the keys
//!   read before stay and nothing new is trusted.
//!
//! # Not guaranteed
//!
//! - A key file's parents are checked only on the folder's own path: a
//!   `.pub` that is a symbolic link is checked as the file it points to,
//!   not along that file's path.
//! - A forged result stored first still occupies the request's key (first
//!   writer wins): the request then has no answerable result, and workers
//!   skip it. Refusing it is the gateway's whole defence; the operator
//!   removes the offending credential.
//! - Keys are not revoked by the gateway beyond removing their `.pub` file
//!   and restarting it; a key added within [`RELOAD_EVERY`] of the last read
//!   is refused until the next one.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cordon_registry::minisign::{PublicKey, SecretKey, Signature};
use cordon_registry::KeyId;
use sha2::{Digest, Sha256};

/// The member of a stored result holding its signature.
pub const SIGNATURE_FIELD: &str = "signature";

/// The bytes signed for `value` stored under `key` (see the module docs).
pub fn signed_message(key: &str, value: &serde_json::Value) -> Vec<u8> {
    let mut body = value.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove(SIGNATURE_FIELD);
    }
    let digest = Sha256::digest(serde_json::to_vec(&body).unwrap_or_default());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "cordon result v1\nkey: {key}\nattempt: {}\nworker: {}\noutcome: {}\nbody: sha256:{hex}\n",
        value["attempt"].as_u64().unwrap_or(0),
        worker_of(value),
        super::outcome_of(value),
    )
    .into_bytes()
}

fn worker_of(value: &serde_json::Value) -> &str {
    value["worker"].as_str().unwrap_or("")
}

/// Adds `signature` to `value`, to be stored under `key`, signed with
/// `signer`.
pub fn sign(signer: &SecretKey, key: &str, value: &mut serde_json::Value) {
    let comment = format!("cordon result {key} attempt {} by {}", value["attempt"], worker_of(value));
    let signature = signer.sign(&signed_message(key, value), &comment);
    if let Some(o) = value.as_object_mut() {
        o.insert(SIGNATURE_FIELD.into(), signature.to_file_text().into());
    }
}

/// Why a stored result is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No `signature` member (or not a signature).
    #[error("refusing the stored result of {key} (it names worker `{worker}`): it is not signed{detail}")]
    Unsigned {
        /// The bucket key.
        key: String,
        /// The worker it names.
        worker: String,
        /// Why the signature member does not count, if there is one.
        detail: String,
    },
    /// Signed by a key that is not trusted.
    #[error(
        "refusing the stored result of {key} (it names worker `{worker}`): it is signed by key {key_id}, which is not among the result keys in {}",
        folder.display()
    )]
    UnknownKey {
        /// The bucket key.
        key: String,
        /// The worker it names.
        worker: String,
        /// The key that signed it.
        key_id: KeyId,
        /// The folder of trusted keys.
        folder: PathBuf,
    },
    /// The signature does not match the stored bytes.
    #[error(
        "refusing the stored result of {key} (it names worker `{worker}`): its signature by key {key_id} ({file}) does not match its content: it was changed after signing"
    )]
    Altered {
        /// The bucket key.
        key: String,
        /// The worker it names.
        worker: String,
        /// The key that signed it.
        key_id: KeyId,
        /// The public key's file(s).
        file: String,
    },
    /// Signed by a trusted key that does not sign for the worker it names.
    #[error(
        "refusing the stored result of {key} (it names worker `{worker}`): it is signed by key {key_id} ({file}), which signs only for worker {names}"
    )]
    OtherWorker {
        /// The bucket key.
        key: String,
        /// The worker it names.
        worker: String,
        /// The key that signed it.
        key_id: KeyId,
        /// The workers the key signs for.
        names: String,
        /// The public key's file(s).
        file: String,
    },
}

impl Refusal {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            Refusal::Unsigned { worker, .. } => format!(
                "start worker `{worker}` with --result-key FILE (made by `cordon key gen --out FILE`); if it is not yours, \
                 a credential that can write the results bucket is being misused: revoke it"
            ),
            Refusal::UnknownKey { worker, folder, .. } => format!(
                "if worker `{worker}` is yours, copy the .pub of its --result-key into {}; if not, a credential that can \
                 write the results bucket is being misused: revoke it",
                folder.display()
            ),
            Refusal::Altered { worker, .. } => format!(
                "a credential that can write the results bucket changed or forged this result: revoke it, and check \
                 worker `{worker}`'s host"
            ),
            Refusal::OtherWorker { worker, names, .. } => format!(
                "the host of worker {names} signed a result in the name of `{worker}`: check that host and revoke its \
                 credential; if the key is `{worker}`'s too, copy its .pub as {worker}.pub"
            ),
        }
    }
}

/// How often, at most, an unknown key id makes the gateway read the folder
/// of trusted keys again.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// A public key and the workers it may sign for: the stems of the `.pub`
/// files holding it (`w1.pub` signs for worker `w1`).
#[derive(Clone)]
struct Bound {
    key: PublicKey,
    /// (worker name, file), sorted by name.
    names: Vec<(String, PathBuf)>,
}

/// A folder of trusted public keys (`*.pub`), plus this process's own.
///
/// Each key file's name binds the key to one worker: `w1.pub` trusts
/// results signed with it only when they name worker `w1` (the same key
/// under two names signs for both). The gateway's own key signs for
/// `gateway`.
pub struct Trusted {
    folder: PathBuf,
    own: Option<(PublicKey, String)>,
    keys: Mutex<HashMap<KeyId, Bound>>,
    /// When the folder was last read; held while it is read again.
    read_at: tokio::sync::Mutex<Instant>,
    /// What was logged about the folder's files (each logged once).
    logged: Mutex<HashSet<String>>,
    /// How many times the folder was read.
    reads: AtomicU64,
    /// A read started by [`Trusted::reload_soon`] has not finished yet.
    reload_pending: AtomicBool,
}

/// The folder of trusted keys cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedError {
    /// The folder cannot be listed.
    #[error("cannot list the result keys folder {}: {source}", folder.display())]
    List {
        /// The folder.
        folder: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A `.pub` file in it is not a public key, or not named after a worker.
    #[error("the result key {} cannot be used: {reason}", file.display())]
    Key {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The folder, one of its parents or a key file could be changed by
    /// someone other than root and this process's user (who could then add
    /// a trusted key), as sshd's StrictModes refuses for `authorized_keys`.
    #[error("refusing the result keys {what} {}: {why} (mode {mode:04o}, owner uid {owner})", path.display())]
    Unsafe {
        /// `folder`, `folder's parent`, `folder's path` (a link on it) or `file`.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner: u32,
        /// What is wrong.
        why: String,
        /// The command that fixes it.
        fix: String,
    },
}

impl TrustedError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            TrustedError::List { .. } => {
                "[queue] result_keys must name a readable folder holding the .pub file of each worker's --result-key"
                    .into()
            }
            TrustedError::Key { .. } => "each .pub file there must be a public key written by `cordon key gen` (or \
                                         `minisign -G`), named after the worker it signs for (`--name w1`: w1.pub); \
                                         remove, rename or replace it"
                .into(),
            TrustedError::Unsafe { fix, .. } => {
                format!("{fix}, after checking that every key in it is yours (anyone could have added one)")
            }
        }
    }
}

/// Only root and this process's user may be able to change what is
/// trusted. A parent folder writable by others is accepted only when it is
/// sticky (others cannot move this folder away, as in /tmp). A key file is
/// looked at without following a link: one is refused.
fn check_secure(path: &Path, what: &'static str) -> Result<(), TrustedError> {
    use std::os::unix::fs::MetadataExt;
    let look = if what == "file" { std::fs::symlink_metadata } else { std::fs::metadata };
    let meta = look(path).map_err(|source| TrustedError::List { folder: path.to_owned(), source })?;
    let (mode, owner) = (meta.mode() & 0o7777, meta.uid());
    let me = effective_uid();
    let unsafe_ =
        |why: String, fix: String| TrustedError::Unsafe { what, path: path.to_owned(), mode, owner, why, fix };
    if owner != 0 && Some(owner) != me {
        let user = me.map_or("this process's user".to_owned(), |u| format!("uid {u}"));
        return Err(unsafe_(
            format!("it is owned by neither root nor {user}, the user this gateway runs as"),
            format!("`chown root {}`", path.display()),
        ));
    }
    if what == "file" && meta.file_type().is_symlink() {
        return Err(unsafe_(
            "it is a symbolic link (what it points to is not covered by the folder's checks)".into(),
            format!("replace {} with a copy of the key it points to", path.display()),
        ));
    }
    if what == "file" && !meta.is_file() {
        return Err(unsafe_("it is not a regular file".into(), format!("`rm {}`", path.display())));
    }
    let sticky_parent = what == "folder's parent" && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky_parent {
        let who = match mode & 0o022 {
            0o020 => "its group",
            0o002 => "others",
            _ => "its group and others",
        };
        return Err(unsafe_(format!("it is writable by {who}"), format!("`chmod go-w {}`", path.display())));
    }
    Ok(())
}

/// A symbolic link on the way to the folder must be owned by root or this
/// process's user: its owner may point it elsewhere at any time (even in a
/// sticky folder).
fn check_link_owner(path: &Path) -> Result<(), TrustedError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let (mode, owner) = (meta.mode() & 0o7777, meta.uid());
    let me = effective_uid();
    if !meta.file_type().is_symlink() || owner == 0 || Some(owner) == me {
        return Ok(());
    }
    let user = me.map_or("this process's user".to_owned(), |u| format!("uid {u}"));
    Err(TrustedError::Unsafe {
        what: "folder's path",
        path: path.to_owned(),
        mode,
        owner,
        why: format!("it is a symbolic link owned by neither root nor {user}, who could point it elsewhere"),
        fix: format!(
            "name the folder by its real path ({})",
            std::fs::canonicalize(path).unwrap_or_default().display()
        ),
    })
}

/// The effective uid, from `/proc/self/status` (`None` if unreadable).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Checks the folder and its parents ([`check_secure`]): the parents of
/// the path as configured (a link on the way is replaced by whoever may
/// write the folder holding it; a link's own owner may repoint it) and of
/// the path it resolves to.
fn check_folder(folder: &Path) -> Result<(), TrustedError> {
    let list = |source| TrustedError::List { folder: folder.to_owned(), source };
    check_secure(folder, "folder")?;
    let given = std::path::absolute(folder).map_err(list)?;
    let real = std::fs::canonicalize(folder).map_err(list)?;
    for path in given.ancestors() {
        check_link_owner(path)?;
    }
    let mut seen = std::collections::HashSet::new();
    for parent in given.ancestors().skip(1).chain(real.ancestors().skip(1)) {
        if seen.insert(parent) {
            check_secure(parent, "folder's parent")?;
        }
    }
    Ok(())
}

/// What one read of the folder found: the keys, and the files skipped
/// (with why).
struct Read {
    keys: HashMap<KeyId, Bound>,
    skipped: Vec<TrustedError>,
}

impl Trusted {
    /// Reads every `*.pub` in `folder`; `own` (this gateway's key) is
    /// trusted too, for worker `own_name`. The folder, its parents or a key
    /// file that others could change, or a file that is not a public key
    /// named after a worker, is an error: the gateway does not start.
    pub fn load(folder: &Path, own: Option<PublicKey>, own_name: &str) -> Result<Trusted, TrustedError> {
        check_folder(folder)?;
        // Whoever writes a key there answers for a worker: out of every
        // run of this process.
        cordon::state::protect_from_now_on(cordon::Protected::folder(
            folder,
            "the result keys this gateway trusts ([queue] result_keys)",
        ));
        let read = read_folder(folder)?;
        if let Some(e) = read.skipped.into_iter().next() {
            return Err(e);
        }
        Ok(Trusted {
            folder: folder.to_owned(),
            own: own.map(|k| (k, own_name.to_owned())),
            keys: Mutex::new(read.keys),
            read_at: tokio::sync::Mutex::new(Instant::now()),
            logged: Mutex::default(),
            reads: AtomicU64::new(1),
            reload_pending: AtomicBool::new(false),
        })
    }

    /// The key `id` and the workers it signs for (the folder's names, and
    /// the gateway's when it is the gateway's own key too).
    fn known(&self, id: KeyId) -> Option<Bound> {
        let mut found = self.keys.lock().expect("trusted keys lock").get(&id).cloned();
        if let Some((own, name)) = self.own.as_ref().filter(|(k, _)| k.key_id() == id) {
            let bound = found.get_or_insert_with(|| Bound { key: own.clone(), names: vec![] });
            bound.names.push((name.clone(), "this gateway's --result-key".into()));
        }
        found
    }

    /// A key added since the last read: reads the folder again, off the
    /// async runtime, at most once per [`RELOAD_EVERY`]: a caller waits for
    /// the next read due (at most that long), and callers that arrived
    /// before a read share it. A file that cannot be used is skipped and
    /// logged once; a folder others could change keeps the keys read before.
    async fn reload(&self, id: KeyId) -> Option<Bound> {
        let arrived = Instant::now();
        let mut read_at = self.read_at.lock().await;
        if *read_at >= arrived {
            return self.known(id);
        }
        if let Some(found) = self.known(id) {
            return Some(found);
        }
        tokio::time::sleep_until((*read_at + RELOAD_EVERY).into()).await;
        let folder = self.folder.clone();
        self.reads.fetch_add(1, Ordering::Relaxed);
        let read = tokio::task::spawn_blocking(move || check_folder(&folder).and_then(|()| read_folder(&folder)))
            .await
            .unwrap_or_else(|e| Err(TrustedError::Key { file: self.folder.clone(), reason: e.to_string() }));
        *read_at = Instant::now();
        match read {
            Ok(read) => {
                for e in read.skipped {
                    self.log_once(&e);
                }
                *self.keys.lock().expect("trusted keys lock") = read.keys;
            }
            Err(e) => self.log_once(&e),
        }
        self.known(id)
    }

    /// Whether the key `id` was read (or is the gateway's own).
    pub fn knows(&self, id: KeyId) -> bool {
        self.known(id).is_some()
    }

    /// How many times the folder was read (at load and since).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn log_once(&self, e: &TrustedError) {
        let text = format!("{e}\n  hint: {}", e.hint());
        let mut logged = self.logged.lock().expect("logged lock");
        if logged.len() < 1024 && logged.insert(text.clone()) {
            eprintln!("cordon serve: {text}");
        }
    }

    /// Checks the signature of `value`, stored under `key`, and that its
    /// key may sign for the worker it names. A key not read yet waits for
    /// the next read of the folder (at most [`RELOAD_EVERY`]).
    pub async fn verify(&self, key: &str, value: &serde_json::Value) -> Result<(), Refusal> {
        match self.verify_known(key, value) {
            Err(Refusal::UnknownKey { key_id, .. }) => {
                self.reload(key_id).await;
                self.verify_known(key, value)
            }
            checked => checked,
        }
    }

    /// Starts a read of the folder in the background unless one is under
    /// way (so a flood of unknown key ids starts one read at a time, each
    /// at most once per [`RELOAD_EVERY`]); [`Trusted::reads`] goes up when
    /// it is done.
    pub fn reload_soon(self: &Arc<Self>, id: KeyId) {
        if self.reload_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.reload(id).await;
            me.reload_pending.store(false, Ordering::Release);
        });
    }

    /// As [`Trusted::verify`], but never waits: a key not read yet is
    /// [`Refusal::UnknownKey`] at once (see [`Trusted::reload_soon`]).
    pub fn verify_known(&self, key: &str, value: &serde_json::Value) -> Result<(), Refusal> {
        let worker = worker_of(value).to_owned();
        let unsigned = |detail: String| Refusal::Unsigned { key: key.to_owned(), worker: worker.clone(), detail };
        let Some(text) = value.get(SIGNATURE_FIELD) else { return Err(unsigned(String::new())) };
        let Some(text) = text.as_str() else { return Err(unsigned(": its signature is not a string".into())) };
        let signature = Signature::parse(text, Path::new(SIGNATURE_FIELD))
            .map_err(|e| unsigned(format!(": its signature cannot be read ({e})")))?;
        let id = signature.key_id();
        let Some(bound) = self.known(id) else {
            return Err(Refusal::UnknownKey { key: key.to_owned(), worker, key_id: id, folder: self.folder.clone() });
        };
        let file = || bound.names.iter().map(|(_, f)| f.display().to_string()).collect::<Vec<_>>().join(", ");
        if bound.key.verify(&signed_message(key, value), &signature).is_err() {
            return Err(Refusal::Altered { key: key.to_owned(), worker, key_id: id, file: file() });
        }
        if !bound.names.iter().any(|(name, _)| *name == worker) {
            let names = bound.names.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ");
            return Err(Refusal::OtherWorker { key: key.to_owned(), worker, key_id: id, names, file: file() });
        }
        Ok(())
    }
}

/// Reads the `*.pub` files of `folder`: each must be a public key named
/// after a worker ([`super::is_token`]) and safe from others ([`check_secure`]);
/// the others are skipped, each with why.
fn read_folder(folder: &Path) -> Result<Read, TrustedError> {
    let list = |source| TrustedError::List { folder: folder.to_owned(), source };
    let mut read = Read { keys: HashMap::new(), skipped: vec![] };
    let mut entries = std::fs::read_dir(folder)
        .map_err(list)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(list)?;
    entries.sort();
    for path in entries {
        if path.extension().is_none_or(|e| e != "pub") {
            continue;
        }
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let loaded = check_secure(&path, "file").and_then(|()| {
            if !super::is_token(&name) {
                return Err(TrustedError::Key {
                    file: path.clone(),
                    reason: "its name is not `WORKER.pub` with WORKER the --name of the worker it signs for \
                             (1-128 of A-Z a-z 0-9 _ -)"
                        .into(),
                });
            }
            PublicKey::load(&path).map_err(|e| TrustedError::Key { file: path.clone(), reason: e.to_string() })
        });
        match loaded {
            Ok(key) => {
                let bound = read.keys.entry(key.key_id()).or_insert_with(|| Bound { key, names: vec![] });
                bound.names.push((name, path));
            }
            Err(e) => read.skipped.push(e),
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> serde_json::Value {
        serde_json::json!({"id": "r1", "ok": true, "output": {"n": 1.5, "s": "x"}, "worker": "w1", "attempt": 2})
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
    }

    #[test]
    fn a_signed_result_verifies_after_a_round_trip_through_its_stored_bytes() {
        let dir = std::env::temp_dir().join(format!("cordon-signing-{}-a", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let signer = SecretKey::generate().unwrap();
        std::fs::write(dir.join("w1.pub"), signer.public_key().to_file_text()).unwrap();
        let trusted = Trusted::load(&dir, None, "gateway").unwrap();
        let mut v = result();
        sign(&signer, "acme.r1", &mut v);
        let stored: serde_json::Value = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        block_on(trusted.verify("acme.r1", &stored)).expect("control: the genuine result");
        // Moved to another key, changed, unsigned, by an unknown key: refused.
        assert!(matches!(block_on(trusted.verify("beta.r1", &stored)), Err(Refusal::Altered { .. })));
        let mut changed = stored.clone();
        changed["output"]["n"] = 2.into();
        let e = block_on(trusted.verify("acme.r1", &changed)).unwrap_err();
        assert!(e.to_string().contains("changed after signing"), "{e}");
        let mut unsigned = stored.clone();
        unsigned.as_object_mut().unwrap().remove(SIGNATURE_FIELD);
        let e = block_on(trusted.verify("acme.r1", &unsigned)).unwrap_err();
        assert!(e.to_string().contains("names worker `w1`): it is not signed"), "{e}");
        let mut other = result();
        sign(&SecretKey::generate().unwrap(), "acme.r1", &mut other);
        let e = block_on(trusted.verify("acme.r1", &other)).unwrap_err();
        assert!(e.to_string().contains("which is not among the result keys"), "{e}");
        assert!(e.hint().contains("copy the .pub"), "{}", e.hint());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn folder(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cordon-signing-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_key_signs_only_for_the_workers_its_files_are_named_after() {
        let dir = folder("bound");
        let w1 = SecretKey::generate().unwrap();
        std::fs::write(dir.join("w1.pub"), w1.public_key().to_file_text()).unwrap();
        let trusted = Trusted::load(&dir, None, "gateway").unwrap();
        let signed = |worker: &str| {
            let mut v = result();
            v["worker"] = worker.into();
            sign(&w1, "acme.r1", &mut v);
            v
        };
        block_on(trusted.verify("acme.r1", &signed("w1"))).expect("control: its own name");
        let e = block_on(trusted.verify("acme.r1", &signed("w2"))).unwrap_err();
        assert!(matches!(e, Refusal::OtherWorker { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("(it names worker `w2`)") && text.contains("which signs only for worker `w1`"), "{text}");
        assert!(text.contains(&dir.join("w1.pub").display().to_string()), "{text}");
        assert!(e.hint().contains("copy its .pub as w2.pub"), "{}", e.hint());
        // The same key under a second name signs for both (after a reload:
        // a second name is no new key id, so it needs a restart).
        std::fs::write(dir.join("w2.pub"), w1.public_key().to_file_text()).unwrap();
        let trusted = Trusted::load(&dir, None, "gateway").unwrap();
        block_on(trusted.verify("acme.r1", &signed("w2"))).expect("w2.pub names it");
        block_on(trusted.verify("acme.r1", &signed("w1"))).expect("and w1.pub still");
        // The gateway's own key signs for `gateway` only.
        let own = SecretKey::generate().unwrap();
        let trusted = Trusted::load(&dir, Some(own.public_key()), "gateway").unwrap();
        let mut v = result();
        v["worker"] = "gateway".into();
        sign(&own, "acme.r1", &mut v);
        block_on(trusted.verify("acme.r1", &v)).expect("control: the gateway's own");
        v["worker"] = "w1".into();
        sign(&own, "acme.r1", &mut v);
        assert!(matches!(block_on(trusted.verify("acme.r1", &v)), Err(Refusal::OtherWorker { .. })));
        // The gateway's own key, also in the folder as w3.pub, signs for
        // both (one key shared by the gateway and a worker's host).
        std::fs::write(dir.join("w3.pub"), own.public_key().to_file_text()).unwrap();
        let trusted = Trusted::load(&dir, Some(own.public_key()), "gateway").unwrap();
        for worker in ["w3", "gateway"] {
            v["worker"] = worker.into();
            sign(&own, "acme.r1", &mut v);
            block_on(trusted.verify("acme.r1", &v)).unwrap_or_else(|e| panic!("{worker}: {e}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_keys_reread_the_folder_at_most_once_per_interval_and_a_bad_file_does_not_hide_a_new_key() {
        let dir = folder("reload");
        let trusted = Trusted::load(&dir, None, "gateway").unwrap();
        let stranger = SecretKey::generate().unwrap();
        let mut v = result();
        sign(&stranger, "acme.r1", &mut v);
        // Lookups of a key nobody trusts, 200 at once then 3 in a row: the
        // folder is read once for the 200 and once per interval after
        // (before: once per lookup), and each waits at most an interval.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
        rt.block_on(async {
            let burst = (0..200).map(|_| trusted.verify("acme.r1", &v));
            for r in futures_util::future::join_all(burst).await {
                assert!(matches!(r, Err(Refusal::UnknownKey { .. })));
            }
            for _ in 0..3 {
                assert!(matches!(trusted.verify("acme.r1", &v).await, Err(Refusal::UnknownKey { .. })));
            }
        });
        assert_eq!(trusted.reads(), 1 + 1 + 3, "one read at load, one for the burst, one per later lookup");
        // A bad file (not a key), a FIFO (would block a reader) and a key
        // others can write are skipped; the new genuine key is picked up.
        std::fs::write(dir.join("half-copied.pub"), "untrusted comment: x\nRWQ").unwrap();
        let fifo = dir.join("fifo.pub");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let loose = SecretKey::generate().unwrap();
        std::fs::write(dir.join("loose.pub"), loose.public_key().to_file_text()).unwrap();
        chmod(&dir.join("loose.pub"), 0o666);
        let w1 = SecretKey::generate().unwrap();
        std::fs::write(dir.join("w1.pub"), w1.public_key().to_file_text()).unwrap();
        let mut genuine = result();
        sign(&w1, "acme.r1", &mut genuine);
        // Picked up at its first lookup (which waits for the next read).
        block_on(trusted.verify("acme.r1", &genuine)).expect("the new key is picked up");
        let mut by_loose = result();
        by_loose["worker"] = "loose".into();
        sign(&loose, "acme.r1", &mut by_loose);
        assert!(matches!(block_on(trusted.verify("acme.r1", &by_loose)), Err(Refusal::UnknownKey { .. })));
        let logged = trusted.logged.lock().unwrap().clone();
        for what in [
            "half-copied.pub cannot be used",
            "fifo.pub: it is not a regular file",
            "loose.pub: it is writable by its group and others (mode 0666",
        ] {
            assert_eq!(logged.iter().filter(|l| l.contains(what)).count(), 1, "{what}: {logged:#?}");
        }
        // At start, the same files stop the gateway.
        let e = Trusted::load(&dir, None, "gateway").err().expect("refused");
        assert!(
            e.to_string().contains("cannot be used") || e.to_string().contains("refusing the result keys file"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Review finding: a key file linked elsewhere, or the folder named
    /// through a link that others may replace or repoint, was trusted.
    #[test]
    fn links_on_the_way_to_a_key_are_judged_as_what_they_are() {
        use std::os::unix::fs::symlink;
        let dir = folder("links");
        chmod(&dir, 0o755);
        let keys = dir.join("keys");
        std::fs::create_dir(&keys).unwrap();
        chmod(&keys, 0o755);
        let w1 = SecretKey::generate().unwrap();
        let original = dir.join("w1-original.pub");
        std::fs::write(&original, w1.public_key().to_file_text()).unwrap();
        chmod(&original, 0o644);
        // A key file that is a link (here to a safe file): refused.
        let file = keys.join("w1.pub");
        symlink(&original, &file).unwrap();
        let e = Trusted::load(&keys, None, "gateway").err().expect("a linked key file is refused");
        assert!(e.to_string().contains(&format!("file {}: it is a symbolic link", file.display())), "{e}");
        assert!(e.hint().contains("with a copy of the key it points to"), "{}", e.hint());
        std::fs::remove_file(&file).unwrap();
        std::fs::copy(&original, &file).unwrap();
        chmod(&file, 0o644);
        Trusted::load(&keys, None, "gateway").expect("control: a copy");
        // The folder named through a link that sits in a folder others can
        // write (not sticky): refused, naming that folder.
        let open = dir.join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o755);
        symlink(&keys, open.join("keys")).unwrap();
        symlink(&dir, open.join("via")).unwrap();
        Trusted::load(&open.join("keys"), None, "gateway").expect("control: the link's folder is safe");
        Trusted::load(&open.join("via/keys"), None, "gateway").expect("control: through a link on the way");
        chmod(&open, 0o777);
        for given in [open.join("keys"), open.join("via/keys")] {
            let e = Trusted::load(&given, None, "gateway").err().expect("refused");
            assert!(
                e.to_string().contains(&format!(
                    "folder's parent {}: it is writable by its group and others (mode 0777",
                    open.display()
                )),
                "{}: {e}",
                given.display()
            );
        }
        // In a sticky folder, a link owned by another user (who may repoint
        // it): refused; ours is the control above.
        chmod(&open, 0o1777);
        Trusted::load(&open.join("keys"), None, "gateway").expect("control: our link in a sticky folder");
        std::os::unix::fs::lchown(open.join("keys"), Some(4242), None).unwrap();
        let e = Trusted::load(&open.join("keys"), None, "gateway").err().expect("refused");
        assert!(
            e.to_string().contains(&format!(
                "folder's path {}: it is a symbolic link owned by neither root nor",
                open.join("keys").display()
            )),
            "{e}"
        );
        assert!(e.hint().contains(&format!("name the folder by its real path ({})", keys.display())), "{}", e.hint());
        chmod(&open, 0o755);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_folder_or_file_others_can_change_is_refused_naming_path_mode_and_fix() {
        use std::os::unix::fs::MetadataExt;
        let dir = folder("modes");
        let w1 = SecretKey::generate().unwrap();
        let file = dir.join("w1.pub");
        std::fs::write(&file, w1.public_key().to_file_text()).unwrap();
        chmod(&file, 0o644);
        chmod(&dir, 0o755);
        Trusted::load(&dir, None, "gateway").expect("control: 0755 folder, 0644 key, owned by us");
        let refused = |want: &str, fix: &str| {
            let e = Trusted::load(&dir, None, "gateway").err().expect("refused");
            assert!(e.to_string().contains(want), "{e}");
            assert!(e.hint().contains(fix), "{}", e.hint());
        };
        let shown = dir.display().to_string();
        chmod(&dir, 0o775);
        refused(
            &format!("refusing the result keys folder {shown}: it is writable by its group (mode 0775"),
            &format!("`chmod go-w {shown}`"),
        );
        chmod(&dir, 0o757);
        refused(&format!("folder {shown}: it is writable by others (mode 0757"), "chmod go-w");
        chmod(&dir, 0o755);
        chmod(&file, 0o646);
        refused(&format!("file {}: it is writable by others (mode 0646", file.display()), "chmod go-w");
        chmod(&file, 0o644);
        // Another owner (the suite runs as root, which may give it away).
        assert_eq!(std::fs::metadata(&dir).unwrap().uid(), 0, "the tests run as root");
        std::os::unix::fs::chown(&file, Some(4242), None).unwrap();
        refused(&format!("file {}: it is owned by neither root nor uid 0", file.display()), "`chown root");
        std::os::unix::fs::chown(&file, Some(0), None).unwrap();
        Trusted::load(&dir, None, "gateway").expect("control: owned by root again");
        // A world-writable parent is refused unless it is sticky (/tmp).
        let inner = dir.join("keys");
        std::fs::create_dir(&inner).unwrap();
        chmod(&inner, 0o755);
        chmod(&dir, 0o777);
        let e = Trusted::load(&inner, None, "gateway").err().expect("refused");
        assert!(
            e.to_string().contains(&format!(
                "refusing the result keys folder's parent {shown}: it is writable by its group and others (mode 0777"
            )),
            "{e}"
        );
        chmod(&dir, 0o1777);
        Trusted::load(&inner, None, "gateway").expect("control: a sticky parent, as /tmp");
        chmod(&dir, 0o755);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
