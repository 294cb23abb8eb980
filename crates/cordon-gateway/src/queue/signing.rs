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
//!   signed, is signed by a key not in `[queue] result_keys`, or whose bytes
//!   changed after signing.
//! - A key added to the folder is picked up without a restart: an unknown
//!   key id makes the gateway read the folder again before it refuses.
//!
//! # Not guaranteed
//!
//! - The `worker` name is the signer's claim: any trusted key may sign for
//!   any worker name. The key id in the signature says which key it was.
//! - A forged result stored first still occupies the request's key (first
//!   writer wins): the request then has no answerable result, and workers
//!   skip it. Refusing it is the gateway's whole defence; the operator
//!   removes the offending credential.
//! - Keys are not revoked by the gateway beyond removing their `.pub` file
//!   and restarting it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
        "refusing the stored result of {key} (it names worker `{worker}`): its signature by key {key_id} ({}) does not match its content: it was changed after signing",
        file.display()
    )]
    Altered {
        /// The bucket key.
        key: String,
        /// The worker it names.
        worker: String,
        /// The key that signed it.
        key_id: KeyId,
        /// The public key file.
        file: PathBuf,
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
        }
    }
}

/// A folder of trusted public keys (`*.pub`), plus this process's own.
pub struct Trusted {
    folder: PathBuf,
    own: Option<PublicKey>,
    keys: Mutex<HashMap<KeyId, (PublicKey, PathBuf)>>,
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
    /// A `.pub` file in it is not a public key.
    #[error("the result key {} cannot be used: {reason}", file.display())]
    Key {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl TrustedError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            TrustedError::List { .. } => {
                "[queue] result_keys must name a readable folder holding the .pub file of each worker's --result-key"
            }
            TrustedError::Key { .. } => {
                "each .pub file there must be a public key written by `cordon key gen` (or `minisign -G`); remove or replace it"
            }
        }
    }
}

impl Trusted {
    /// Reads every `*.pub` in `folder`; `own` (this gateway's key) is
    /// trusted too. A file that is not a public key is an error.
    pub fn load(folder: &Path, own: Option<PublicKey>) -> Result<Trusted, TrustedError> {
        let keys = read_folder(folder)?;
        Ok(Trusted { folder: folder.to_owned(), own, keys: Mutex::new(keys) })
    }

    fn known(&self, id: KeyId) -> Option<(PublicKey, PathBuf)> {
        if let Some(own) = self.own.as_ref().filter(|k| k.key_id() == id) {
            return Some((own.clone(), PathBuf::from("this gateway's --result-key")));
        }
        self.keys.lock().expect("trusted keys lock").get(&id).cloned()
    }

    /// Checks the signature of `value`, stored under `key`.
    pub fn verify(&self, key: &str, value: &serde_json::Value) -> Result<(), Refusal> {
        let worker = worker_of(value).to_owned();
        let unsigned = |detail: String| Refusal::Unsigned { key: key.to_owned(), worker: worker.clone(), detail };
        let Some(text) = value.get(SIGNATURE_FIELD) else { return Err(unsigned(String::new())) };
        let Some(text) = text.as_str() else { return Err(unsigned(": its signature is not a string".into())) };
        let signature = Signature::parse(text, Path::new(SIGNATURE_FIELD))
            .map_err(|e| unsigned(format!(": its signature cannot be read ({e})")))?;
        let id = signature.key_id();
        let found = self.known(id).or_else(|| {
            // A key added since: read the folder again.
            match read_folder(&self.folder) {
                Ok(keys) => *self.keys.lock().expect("trusted keys lock") = keys,
                Err(e) => eprintln!("cordon serve: {e}\n  hint: {}", e.hint()),
            }
            self.known(id)
        });
        let Some((public, file)) = found else {
            return Err(Refusal::UnknownKey { key: key.to_owned(), worker, key_id: id, folder: self.folder.clone() });
        };
        public.verify(&signed_message(key, value), &signature).map_err(|_| Refusal::Altered {
            key: key.to_owned(),
            worker,
            key_id: id,
            file,
        })
    }
}

fn read_folder(folder: &Path) -> Result<HashMap<KeyId, (PublicKey, PathBuf)>, TrustedError> {
    let list = |source| TrustedError::List { folder: folder.to_owned(), source };
    let mut keys = HashMap::new();
    for entry in std::fs::read_dir(folder).map_err(list)? {
        let path = entry.map_err(list)?.path();
        if path.extension().is_some_and(|e| e == "pub") {
            let key =
                PublicKey::load(&path).map_err(|e| TrustedError::Key { file: path.clone(), reason: e.to_string() })?;
            keys.insert(key.key_id(), (key, path));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> serde_json::Value {
        serde_json::json!({"id": "r1", "ok": true, "output": {"n": 1.5, "s": "x"}, "worker": "w1", "attempt": 2})
    }

    #[test]
    fn a_signed_result_verifies_after_a_round_trip_through_its_stored_bytes() {
        let dir = std::env::temp_dir().join(format!("cordon-signing-{}-a", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let signer = SecretKey::generate().unwrap();
        std::fs::write(dir.join("w1.pub"), signer.public_key().to_file_text()).unwrap();
        let trusted = Trusted::load(&dir, None).unwrap();
        let mut v = result();
        sign(&signer, "acme.r1", &mut v);
        let stored: serde_json::Value = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        trusted.verify("acme.r1", &stored).expect("control: the genuine result");
        // Moved to another key, changed, unsigned, by an unknown key: refused.
        assert!(matches!(trusted.verify("beta.r1", &stored), Err(Refusal::Altered { .. })));
        let mut changed = stored.clone();
        changed["output"]["n"] = 2.into();
        let e = trusted.verify("acme.r1", &changed).unwrap_err();
        assert!(e.to_string().contains("changed after signing"), "{e}");
        let mut unsigned = stored.clone();
        unsigned.as_object_mut().unwrap().remove(SIGNATURE_FIELD);
        let e = trusted.verify("acme.r1", &unsigned).unwrap_err();
        assert!(e.to_string().contains("names worker `w1`): it is not signed"), "{e}");
        let mut other = result();
        sign(&SecretKey::generate().unwrap(), "acme.r1", &mut other);
        let e = trusted.verify("acme.r1", &other).unwrap_err();
        assert!(e.to_string().contains("which is not among the result keys"), "{e}");
        assert!(e.hint().contains("copy the .pub"), "{}", e.hint());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
