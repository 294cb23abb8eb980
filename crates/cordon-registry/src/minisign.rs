//! minisign files (secret keys, public keys, signatures) and the Ed25519
//! operations on them. This is the only module of cordon that touches key
//! material: everything else handles [`PublicKey`], [`SecretKey`] and
//! [`Signature`] as opaque values.
//!
//! # Format
//!
//! The files are those of the stock `minisign` tool (version 0.11 and
//! later), so operators can use either tool on either side:
//!
//! ```text
//! public key   untrusted comment: minisign public key <KEY ID>
//!              base64("Ed" | key id (8) | Ed25519 public key (32))
//! secret key   untrusted comment: ...
//!              base64("Ed" | kdf "\0\0" | "B2" | salt (32) | ops (8) | mem (8)
//!                     | key id (8) | seed and public key (64) | BLAKE2b-256 checksum (32))
//! signature    untrusted comment: ...
//!              base64(algorithm "ED" or "Ed" | key id (8) | signature (64))
//!              trusted comment: <one line>
//!              base64(Ed25519 signature of (signature | trusted comment))
//! ```
//!
//! A key id is shown as minisign shows it: 16 upper-case hex digits of the
//! id read as a little-endian number.
//!
//! # Algorithms
//!
//! On input both algorithms are accepted: `ED` signs the BLAKE2b-512 hash of
//! the message (minisign's default since 0.8), `Ed` ("legacy") the message
//! itself. cordon emits `ED`: it is what current minisign emits and expects
//! by default, so `minisign -V -H` (which insists on prehashing) verifies
//! cordon's signatures too, and the signed bytes stay 64 no matter how large
//! the message is.
//!
//! # What is checked
//!
//! Signatures are verified with `verify_strict` (no small-order keys, no
//! non-canonical `S`), the same acceptance as libsodium's, which stock
//! minisign uses. Both the signature and the global signature over the
//! trusted comment must verify. Secret keys encrypted with a password
//! (minisign's default without `-W`) are refused with a hint: cordon never
//! prompts for passwords.
//!
//! # Non-guarantees
//!
//! Secret keys are zeroed on drop (dalek's `zeroize`); the file text they
//! were parsed from is the caller's and is not.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// Key and signature files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 8192;

/// The longest trusted comment cordon writes or accepts (minisign's limit).
pub const MAX_COMMENT_BYTES: usize = 1024;

const ALG_ED25519: &[u8; 2] = b"Ed";
const ALG_PREHASHED: &[u8; 2] = b"ED";
const KDF_NONE: &[u8; 2] = b"\0\0";
const KDF_SCRYPT: &[u8; 2] = b"Sc";
const CHECKSUM_BLAKE2B: &[u8; 2] = b"B2";
const UNTRUSTED_PREFIX: &str = "untrusted comment: ";
const TRUSTED_PREFIX: &str = "trusted comment: ";

/// A minisign file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any key or signature file.
    #[error("{} is larger than {MAX_FILE_BYTES} bytes; it is not a minisign {what}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        what: &'static str,
    },
    /// The file is not in minisign's format.
    #[error("{} is not a minisign {what}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The secret key is protected by a password.
    #[error("{} is encrypted with a password", path.display())]
    Encrypted {
        /// The file.
        path: PathBuf,
    },
    /// The secret key's checksum or public half does not match.
    #[error("{} is damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What does not match.
        reason: &'static str,
    },
    /// The key files could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The system's random source failed.
    #[error("cannot get random bytes for a new key: {0}")]
    Random(String),
}

impl KeyFileError {
    /// What to do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            KeyFileError::Encrypted { .. } => Some(
                "cordon never asks for passwords: sign the statement with `cordon plugin statement FILE > s; \
                 minisign -Sm s -x FILE.minisig`, or remove the password with `minisign -C -W`",
            ),
            KeyFileError::Malformed { what: "public key", .. } => {
                Some("a public key file is what `minisign -G` or `cordon key gen` wrote as KEY.pub")
            }
            KeyFileError::Malformed { what: "secret key", .. } | KeyFileError::Damaged { .. } => {
                Some("a secret key file is what `minisign -G -W` or `cordon key gen --out KEY` wrote as KEY")
            }
            KeyFileError::Malformed { .. } => {
                Some("a signature file is what `cordon plugin sign` or `minisign -S` wrote as FILE.minisig")
            }
            KeyFileError::Write { .. } => Some("choose an --out path in a folder you can write"),
            _ => None,
        }
    }
}

/// The result type of this module's file operations.
pub type Result<T, E = KeyFileError> = std::result::Result<T, E>;

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature names another key than the one it was checked with.
    #[error("the signature was made with key {signed_with}, not {checked_with}")]
    OtherKey {
        /// The key id in the signature.
        signed_with: KeyId,
        /// The key id of the public key.
        checked_with: KeyId,
    },
    /// The signature does not match the message.
    #[error("the signature does not match the signed statement")]
    Message,
    /// The global signature over the trusted comment does not match.
    #[error("the trusted comment of the signature was altered")]
    TrustedComment,
}

/// A minisign key id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.len() != 16 {
            return Err(format!("a key id has 16 hex digits, `{s}` has {}", s.len()));
        }
        let n = u64::from_str_radix(s, 16).map_err(|_| format!("`{s}` is not a hex key id"))?;
        Ok(KeyId(n.to_le_bytes()))
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The algorithm of a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `ED`: Ed25519 over the BLAKE2b-512 hash of the message.
    Prehashed,
    /// `Ed`: Ed25519 over the message (minisign before 0.8, and `-l`).
    Legacy,
}

/// An Ed25519 public key with its minisign key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key_id: KeyId,
    key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id)
    }
}

impl PublicKey {
    /// Reads a public key file (`minisign -G`'s `.pub`, or the bare base64
    /// line `minisign -P` takes).
    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = read_small(path, "public key")?;
        PublicKey::parse(&text, path)
    }

    /// Parses a public key file's text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<PublicKey> {
        let bad = |reason: &str| malformed(path, "public key", reason);
        let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
        let b64 = match lines.as_slice() {
            [c, b] if c.starts_with(UNTRUSTED_PREFIX) => *b,
            [b] => *b,
            _ => return Err(bad("expected an `untrusted comment:` line and one base64 line")),
        };
        PublicKey::from_base64(b64).map_err(|r| bad(&r))
    }

    /// Parses the base64 line of a public key.
    pub fn from_base64(b64: &str) -> std::result::Result<PublicKey, String> {
        let raw = BASE64.decode(b64.trim()).map_err(|e| format!("invalid base64 ({e})"))?;
        if raw.len() != 42 {
            return Err(format!("the key is {} bytes long, a minisign public key has 42", raw.len()));
        }
        if &raw[..2] != ALG_ED25519 {
            return Err("unknown signature algorithm (only Ed25519 is defined)".into());
        }
        let key_id = KeyId(raw[2..10].try_into().expect("8 bytes"));
        let bytes: [u8; 32] = raw[10..42].try_into().expect("32 bytes");
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 public key".to_owned())?;
        if key.is_weak() {
            return Err("a weak (small-order) Ed25519 public key".into());
        }
        Ok(PublicKey { key_id, key })
    }

    /// The base64 line of the key (what `minisign -P` takes).
    pub fn to_base64(&self) -> String {
        let mut raw = Vec::with_capacity(42);
        raw.extend_from_slice(ALG_ED25519);
        raw.extend_from_slice(&self.key_id.0);
        raw.extend_from_slice(self.key.as_bytes());
        BASE64.encode(raw)
    }

    /// The file text, as `minisign -G` writes it.
    pub fn to_file_text(&self) -> String {
        format!("{UNTRUSTED_PREFIX}minisign public key {}\n{}\n", self.key_id, self.to_base64())
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Checks `signature` over `message` and its trusted comment.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> std::result::Result<(), SignatureError> {
        if signature.key_id != self.key_id {
            return Err(SignatureError::OtherKey { signed_with: signature.key_id, checked_with: self.key_id });
        }
        let sig = ed25519_dalek::Signature::from_bytes(&signature.signature);
        let ok = match signature.algorithm {
            Algorithm::Prehashed => self.key.verify_strict(&Blake2b512::digest(message), &sig),
            Algorithm::Legacy => self.key.verify_strict(message, &sig),
        };
        ok.map_err(|_| SignatureError::Message)?;
        self.verify_trusted_comment(signature)
    }

    /// Checks only the global signature over the signature and its trusted
    /// comment: whether the comment is the signer's, whatever message the
    /// signature is for.
    pub fn verify_trusted_comment(&self, signature: &Signature) -> std::result::Result<(), SignatureError> {
        if signature.key_id != self.key_id {
            return Err(SignatureError::OtherKey { signed_with: signature.key_id, checked_with: self.key_id });
        }
        let global = ed25519_dalek::Signature::from_bytes(&signature.global_signature);
        self.key
            .verify_strict(&global_message(&signature.signature, &signature.trusted_comment), &global)
            .map_err(|_| SignatureError::TrustedComment)
    }
}

/// An Ed25519 secret key with its minisign key id. Zeroed on drop.
pub struct SecretKey {
    key_id: KeyId,
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.key_id)
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SecretKey> {
        let mut seed = [0u8; 32];
        let mut id = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
        getrandom::fill(&mut id).map_err(|e| KeyFileError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(SecretKey { key_id: KeyId(id), key })
    }

    /// Reads an unencrypted secret key file (`minisign -G -W`, or
    /// `cordon key gen`).
    pub fn load(path: &Path) -> Result<SecretKey> {
        let text = read_small(path, "secret key")?;
        SecretKey::parse(&text, path)
    }

    /// Parses a secret key file's text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<SecretKey> {
        let bad = |reason: &str| malformed(path, "secret key", reason);
        let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
        let [comment, b64] = lines.as_slice() else {
            return Err(bad("expected an `untrusted comment:` line and one base64 line"));
        };
        if !comment.starts_with(UNTRUSTED_PREFIX) {
            return Err(bad("the first line is not an `untrusted comment:`"));
        }
        let raw = zeroize::Zeroizing::new(BASE64.decode(b64).map_err(|e| bad(&format!("invalid base64 ({e})")))?);
        if raw.len() != 158 {
            return Err(bad(&format!("the key is {} bytes long, a minisign secret key has 158", raw.len())));
        }
        if &raw[..2] != ALG_ED25519 {
            return Err(bad("unknown signature algorithm (only Ed25519 is defined)"));
        }
        match &raw[2..4] {
            k if k == KDF_NONE => {}
            k if k == KDF_SCRYPT => return Err(KeyFileError::Encrypted { path: path.to_owned() }),
            _ => return Err(bad("unknown key derivation algorithm")),
        }
        if &raw[4..6] != CHECKSUM_BLAKE2B {
            return Err(bad("unknown checksum algorithm"));
        }
        let keynum = &raw[54..62];
        let sk = &raw[62..126];
        let checksum = &raw[126..158];
        // minisign 0.11 leaves the checksum of an unencrypted key zeroed;
        // any other value must be right.
        if checksum.iter().any(|b| *b != 0) && checksum != secret_checksum(keynum, sk).as_slice() {
            return Err(KeyFileError::Damaged { path: path.to_owned(), reason: "its checksum does not match" });
        }
        let seed: [u8; 32] = sk[..32].try_into().expect("32 bytes");
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes() != &sk[32..] {
            return Err(KeyFileError::Damaged {
                path: path.to_owned(),
                reason: "its public half does not belong to its secret half",
            });
        }
        Ok(SecretKey { key_id: KeyId(keynum.try_into().expect("8 bytes")), key })
    }

    /// The file text, as `minisign -G -W` writes it (with the checksum
    /// filled in, as newer minisign versions do).
    pub fn to_file_text(&self) -> String {
        let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(158));
        raw.extend_from_slice(ALG_ED25519);
        raw.extend_from_slice(KDF_NONE);
        raw.extend_from_slice(CHECKSUM_BLAKE2B);
        raw.extend_from_slice(&[0u8; 48]); // salt, opslimit, memlimit: unused without a KDF
        raw.extend_from_slice(&self.key_id.0);
        let mut sk = zeroize::Zeroizing::new([0u8; 64]);
        sk[..32].copy_from_slice(self.key.as_bytes());
        sk[32..].copy_from_slice(self.key.verifying_key().as_bytes());
        raw.extend_from_slice(sk.as_slice());
        raw.extend_from_slice(&secret_checksum(&self.key_id.0, sk.as_slice()));
        let b64 = zeroize::Zeroizing::new(BASE64.encode(raw.as_slice()));
        format!("{UNTRUSTED_PREFIX}cordon secret key (no password)\n{}\n", b64.as_str())
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey { key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// Signs `message` (prehashed, `ED`) with `trusted_comment`, which must
    /// be one line of at most [`MAX_COMMENT_BYTES`].
    pub fn sign(&self, message: &[u8], trusted_comment: &str) -> Signature {
        let mut comment: String = trusted_comment.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        while comment.len() > MAX_COMMENT_BYTES {
            comment.pop();
        }
        let signature = self.key.sign(&Blake2b512::digest(message)).to_bytes();
        let global_signature = self.key.sign(&global_message(&signature, &comment)).to_bytes();
        Signature {
            algorithm: Algorithm::Prehashed,
            key_id: self.key_id,
            signature,
            untrusted_comment: "signature from cordon secret key".into(),
            trusted_comment: comment,
            global_signature,
        }
    }

    /// Writes a new key pair: `path` (mode 0600) and `path.pub`. Refuses to
    /// replace either file.
    pub fn write_pair(&self, path: &Path) -> Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let public = pub_path(path);
        let create = |p: &Path, mode: u32, text: &str| -> Result<()> {
            let write_err = |source| KeyFileError::Write { path: p.to_owned(), source };
            let mut f =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(p).map_err(write_err)?;
            f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(write_err)
        };
        if public.exists() {
            return Err(KeyFileError::Write {
                path: public,
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it exists; keys are never replaced"),
            });
        }
        create(path, 0o600, &self.to_file_text())?;
        if let Err(e) = create(&public, 0o644, &self.public_key().to_file_text()) {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(public)
    }
}

/// `KEY.pub` beside `KEY`.
pub fn pub_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// A minisign signature with its trusted comment.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    algorithm: Algorithm,
    key_id: KeyId,
    signature: [u8; 64],
    untrusted_comment: String,
    trusted_comment: String,
    global_signature: [u8; 64],
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({:?} by {})", self.algorithm, self.key_id)
    }
}

impl Signature {
    /// Reads a signature file.
    pub fn load(path: &Path) -> Result<Signature> {
        let text = read_small(path, "signature")?;
        Signature::parse(&text, path)
    }

    /// Parses a signature file's text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Signature> {
        let bad = |reason: &str| malformed(path, "signature", reason);
        let lines: Vec<&str> = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
        let lines: Vec<&str> = lines.into_iter().filter(|l| !l.is_empty()).collect();
        let [untrusted, sig, trusted, global] = lines.as_slice() else {
            return Err(bad("expected four lines: untrusted comment, signature, trusted comment, global signature"));
        };
        let untrusted_comment =
            untrusted.strip_prefix(UNTRUSTED_PREFIX).ok_or_else(|| bad("line 1 is not an `untrusted comment:`"))?;
        let trusted_comment =
            trusted.strip_prefix(TRUSTED_PREFIX).ok_or_else(|| bad("line 3 is not a `trusted comment:`"))?;
        if trusted_comment.len() > MAX_COMMENT_BYTES {
            return Err(bad("the trusted comment is longer than 1024 bytes"));
        }
        let raw = BASE64.decode(sig.trim()).map_err(|e| bad(&format!("line 2 is not base64 ({e})")))?;
        if raw.len() != 74 {
            return Err(bad(&format!("the signature is {} bytes long, a minisign signature has 74", raw.len())));
        }
        let algorithm = match &raw[..2] {
            a if a == ALG_PREHASHED => Algorithm::Prehashed,
            a if a == ALG_ED25519 => Algorithm::Legacy,
            _ => return Err(bad("unknown signature algorithm (expected `ED` or `Ed`)")),
        };
        let global = BASE64.decode(global.trim()).map_err(|e| bad(&format!("line 4 is not base64 ({e})")))?;
        let global_signature: [u8; 64] =
            global.try_into().map_err(|_| bad("the global signature is not 64 bytes long"))?;
        Ok(Signature {
            algorithm,
            key_id: KeyId(raw[2..10].try_into().expect("8 bytes")),
            signature: raw[10..74].try_into().expect("64 bytes"),
            untrusted_comment: untrusted_comment.to_owned(),
            trusted_comment: trusted_comment.to_owned(),
            global_signature,
        })
    }

    /// The file text, as `minisign -S` writes it.
    pub fn to_file_text(&self) -> String {
        let mut raw = Vec::with_capacity(74);
        raw.extend_from_slice(match self.algorithm {
            Algorithm::Prehashed => ALG_PREHASHED,
            Algorithm::Legacy => ALG_ED25519,
        });
        raw.extend_from_slice(&self.key_id.0);
        raw.extend_from_slice(&self.signature);
        format!(
            "{UNTRUSTED_PREFIX}{}\n{}\n{TRUSTED_PREFIX}{}\n{}\n",
            self.untrusted_comment,
            BASE64.encode(raw),
            self.trusted_comment,
            BASE64.encode(self.global_signature)
        )
    }

    /// The id of the key that made it.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The trusted comment (authentic only once [`PublicKey::verify`]
    /// accepted the signature).
    pub fn trusted_comment(&self) -> &str {
        &self.trusted_comment
    }
}

fn global_message(signature: &[u8; 64], comment: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + comment.len());
    m.extend_from_slice(signature);
    m.extend_from_slice(comment.as_bytes());
    m
}

fn secret_checksum(keynum: &[u8], sk: &[u8]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(ALG_ED25519);
    h.update(keynum);
    h.update(sk);
    h.finalize().into()
}

fn malformed(path: &Path, what: &'static str, reason: &str) -> KeyFileError {
    KeyFileError::Malformed { path: path.to_owned(), what, reason: reason.to_owned() }
}

fn read_small(path: &Path, what: &'static str) -> Result<String> {
    use std::io::Read;
    let read_err = |source| KeyFileError::Read { path: path.to_owned(), source };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(KeyFileError::TooLarge { path: path.to_owned(), what });
    }
    String::from_utf8(bytes).map_err(|_| malformed(path, what, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("t")
    }

    #[test]
    fn a_signature_round_trips_and_binds_message_and_comment() {
        let sk = SecretKey::generate().unwrap();
        let pk = sk.public_key();
        let sig = sk.sign(b"statement", "trusted");
        let parsed = Signature::parse(&sig.to_file_text(), p()).unwrap();
        assert_eq!(parsed, sig);
        pk.verify(b"statement", &parsed).unwrap();
        assert_eq!(pk.verify(b"statemenT", &parsed), Err(SignatureError::Message));
        let mut tampered = parsed.clone();
        tampered.trusted_comment = "trusted!".into();
        assert_eq!(pk.verify(b"statement", &tampered), Err(SignatureError::TrustedComment));
        let other = SecretKey::generate().unwrap().public_key();
        assert!(matches!(pk_verify(&other, &parsed), Err(SignatureError::OtherKey { .. })));
    }

    fn pk_verify(pk: &PublicKey, s: &Signature) -> std::result::Result<(), SignatureError> {
        pk.verify(b"statement", s)
    }

    #[test]
    fn key_files_round_trip() {
        let sk = SecretKey::generate().unwrap();
        let again = SecretKey::parse(&sk.to_file_text(), p()).unwrap();
        assert_eq!(again.key_id(), sk.key_id());
        assert_eq!(again.public_key(), sk.public_key());
        let pk = PublicKey::parse(&sk.public_key().to_file_text(), p()).unwrap();
        assert_eq!(pk, sk.public_key());
        assert_eq!(PublicKey::parse(&pk.to_base64(), p()).unwrap(), pk);
        assert_eq!(pk.key_id().to_string().parse::<KeyId>().unwrap(), pk.key_id());
    }

    #[test]
    fn stock_minisign_files_parse() {
        // Made by `minisign -G -W` 0.11 (zeroed checksum) and `minisign -S`.
        let pk = PublicKey::parse(
            "untrusted comment: minisign public key 6F29CD17E1999E2B\nRWQrnpnhF80pbzzrk0GgXOYDUNPd4UnP7226xzRhPMsHxReq4JNFi9/l\n",
            p(),
        )
        .unwrap();
        assert_eq!(pk.key_id().to_string(), "6F29CD17E1999E2B");
        let sk = SecretKey::parse("untrusted comment: minisign encrypted secret key\nRWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAK56Z4RfNKW9ZIJzdH6DA98EN26AQ3gwRKCT1ZkMvLc57w4w2w/dwQDzrk0GgXOYDUNPd4UnP7226xzRhPMsHxReq4JNFi9/lAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", p()).unwrap();
        assert_eq!(sk.public_key(), pk);
        for (text, alg) in [
            ("untrusted comment: signature from minisign secret key\nRUQrnpnhF80pb4xsGzCtPCEGoFkxV8BB02p+GYeTzRU/1LiQsXmsIh1lkq78bLFgesV+fGw5WijCXY1oDxAIozx6fArWsC9S2A0=\ntrusted comment: timestamp:1796558982\tfile:m\thashed\nAxOLwPzHxeJGgHcVYDdyIhTAu5T5E4NgiCb2gbdb0u3AlQEFDu4Ekr8emJeBwTf3txMwvgESGcs7MIC8kaqpCA==\n", Algorithm::Prehashed),
            ("untrusted comment: signature from minisign secret key\nRWQrnpnhF80pbyU7Q9CJc7vvkWl/tA4rF9Hj6at87RPZa1Nc7jjDq4hHHXqJBgC6LNKgRWanTbQAg8mFDu1Mv4xkA9GlNjKDxAY=\ntrusted comment: timestamp:1796558982\tfile:m\nvG99/bnYIc5WE1ew1eNnv8i975585N1AVHiSp24wSBRSpt4bPB86JL8eCWZCwZpplnpGPq17jFBkskmp1MzSDA==\n", Algorithm::Legacy),
        ] {
            let sig = Signature::parse(text, p()).unwrap();
            assert_eq!(sig.algorithm(), alg);
            pk.verify(b"hi\n", &sig).unwrap();
            assert_eq!(pk.verify(b"hi", &sig), Err(SignatureError::Message));
        }
    }

    #[test]
    fn encrypted_and_damaged_keys_are_refused() {
        let sk = SecretKey::generate().unwrap();
        let text = sk.to_file_text();
        let b64 = text.lines().nth(1).unwrap();
        let mut raw = BASE64.decode(b64).unwrap();
        raw[2..4].copy_from_slice(KDF_SCRYPT);
        let enc = format!("untrusted comment: x\n{}\n", BASE64.encode(&raw));
        assert!(matches!(SecretKey::parse(&enc, p()), Err(KeyFileError::Encrypted { .. })));
        let mut raw = BASE64.decode(b64).unwrap();
        raw[100] ^= 1;
        let damaged = format!("untrusted comment: x\n{}\n", BASE64.encode(&raw));
        assert!(matches!(SecretKey::parse(&damaged, p()), Err(KeyFileError::Damaged { .. })));
        assert!(matches!(PublicKey::parse("nonsense", p()), Err(KeyFileError::Malformed { .. })));
    }
}
