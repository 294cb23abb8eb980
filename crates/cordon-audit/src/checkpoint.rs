//! Signed checkpoints: the key the sandbox never sees, and what it signs.
//!
//! A checkpoint says "the first `size` lines of the log with origin `origin`
//! end in the line whose SHA-256 is `hash`". It is a [C2SP signed note]
//! whose body follows [C2SP tlog-checkpoint]: the origin line, the size in
//! decimal, the hash in standard base64, each ending in a newline. The hash
//! is the head of cordon's hash chain (what the next line's `prev` names), not
//! a Merkle tree root. The signature line is `— <key name> <base64(key id ||
//! Ed25519 signature)>`, the key id the first four bytes of
//! SHA-256(name || 0x0A || 0x01 || public key), so Go's
//! `golang.org/x/mod/sumdb/note` opens cordon's checkpoints with the
//! verifier key cordon writes (`<name>+<key id>+<base64(0x01 || key)>`).
//!
//! # Keys
//!
//! [`AuditKey::load_or_create`] keeps the key in a key folder (cordon's
//! state folder, which no sandbox reaches): `audit.key` (the private key in
//! the note package's `PRIVATE+KEY+...` form, `0600`), created on first use
//! from the system's random source, and `audit-keys/<key id>.pub`, the
//! verifier key of every key ever created there, with `<key id>.bound`, the
//! public half again with an HMAC-SHA-256 tag under a key derived from the
//! seed: a load reads it instead of deriving the public half (a scalar
//! multiplication, ≈ 220 000 instructions, a fifth of a dev run), and uses
//! it only when the tag is this seed's. Rotating is moving
//! `audit.key` away: the next writer creates a new key, and checkpoints of
//! the old one still verify with its public key, which stays.
//!
//! [C2SP signed note]: https://c2sp.org/signed-note
//! [C2SP tlog-checkpoint]: https://c2sp.org/tlog-checkpoint

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::{Verifier as _, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::record::hex;

/// The private key's file name in the key folder.
pub const KEY_FILE: &str = "audit.key";

/// The folder of verifier keys in the key folder.
pub const PUBLIC_KEYS_DIR: &str = "audit-keys";

/// The folder of the latest checkpoint of each log, in the key folder.
pub const ANCHORS_DIR: &str = "audit-checkpoints";

/// The signature type byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;

/// The em dash and space that start a signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Notes larger than this are refused before parsing.
const MAX_NOTE_BYTES: usize = 16 << 10;

/// A key or note that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file or folder cannot be read or written.
    #[error("cannot {action} the audit key {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The key file does not hold a key.
    #[error("{} is not an audit key: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No random bytes for a new key.
    #[error("cannot get random bytes for a new audit key: {0}")]
    Random(String),
}

/// Why a note does not open.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// Not a signed note, or not a checkpoint body.
    #[error("not a signed checkpoint: {0}")]
    Malformed(String),
    /// Signed only by keys this verifier does not know.
    #[error("signed by an unknown key ({0})")]
    UnknownKey(String),
    /// A known key's signature does not match the text.
    #[error("the signature of {0} does not match")]
    BadSignature(String),
}

/// The body of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which log: `cordon.audit/` and the first 16 hex digits of the first
    /// line's SHA-256.
    pub origin: String,
    /// How many lines it covers.
    pub size: u64,
    /// SHA-256 of the last covered line (of nothing when `size` is 0).
    pub hash: [u8; 32],
}

impl Checkpoint {
    /// The origin of a log whose first line is `first_line`.
    pub fn origin_of(first_line: &[u8]) -> String {
        format!("cordon.audit/{}", &hex(&Sha256::digest(first_line))[..16])
    }

    /// The note body: origin, size and hash lines.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.hash))
    }

    /// Parses a body written by [`Checkpoint::body`] (extension lines after
    /// the third are ignored, as tlog-checkpoint allows).
    pub fn parse(body: &str) -> Result<Checkpoint, NoteError> {
        let bad = |why: &str| NoteError::Malformed(why.to_owned());
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("no origin line"))?;
        let size = lines.next().ok_or_else(|| bad("no size line"))?;
        if size.is_empty() || (size.len() > 1 && size.starts_with('0')) || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the size is not a decimal number"));
        }
        let size = size.parse().map_err(|_| bad("the size is too large"))?;
        let hash = lines.next().ok_or_else(|| bad("no hash line"))?;
        let hash: [u8; 32] = B64
            .decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| bad("the hash is not 32 bytes of base64"))?;
        Ok(Checkpoint { origin: origin.to_owned(), size, hash })
    }
}

/// A public key that checks signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

impl Verifier {
    /// Parses a verifier key: `<name>+<8 hex key id>+<base64(0x01 || key)>`.
    pub fn parse(vkey: &str) -> Result<Verifier, NoteError> {
        let bad = |why: &str| NoteError::Malformed(format!("verifier key `{}`: {why}", vkey.trim()));
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key id>+<key>"));
        };
        if !valid_name(name) {
            return Err(bad("the name is empty or has a space or `+`"));
        }
        let key = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let (&[ED25519], key) = key.split_at(1.min(key.len())) else {
            return Err(bad("not an Ed25519 key"));
        };
        let key: [u8; 32] = key.try_into().map_err(|_| bad("the key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not a valid Ed25519 point"))?;
        let v = Verifier { id: key_id(name, &key), name: name.to_owned(), key };
        if id != hex(&v.id) {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(v)
    }

    /// The verifier key in the form [`Verifier::parse`] reads.
    pub fn to_vkey(&self) -> String {
        let mut key = vec![ED25519];
        key.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex(&self.id), B64.encode(key))
    }

    /// `name+keyid`, for messages.
    pub fn label(&self) -> String {
        format!("{}+{}", self.name, hex(&self.id))
    }
}

/// The signing key of the audit log. Never shown to a sandbox: it lives in
/// cordon's state folder.
pub struct AuditKey {
    /// The seed's SHA-512 (the signing scalar and the nonce prefix), which
    /// is what signing uses; zeroed when dropped.
    expanded: ExpandedSecretKey,
    /// [`AuditKey::journal_key`], derived from the seed when loaded.
    journal: Zeroizing<[u8; 32]>,
    verifier: Verifier,
}

/// A key for one use of the key with `seed` (HMAC-SHA-256 of the use's
/// label): the run journal's MACs, the tag of the kept public half.
fn subkey(seed: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(seed).expect("HMAC takes a key of any length");
    mac.update(label);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The run journal's MAC key of the key with `seed`.
fn journal_key_of(seed: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    subkey(seed, b"cordon audit run journal v1")
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey").field("verifier", &self.verifier.label()).finish_non_exhaustive()
    }
}

impl AuditKey {
    /// Loads `dir/audit.key`, creating it (and its verifier key in
    /// `dir/audit-keys/`) on first use. `name` names a new key (no spaces
    /// or `+`); it is asked only when a key is made.
    pub fn load_or_create(dir: &Path, name: impl FnOnce() -> String) -> Result<AuditKey, KeyError> {
        let path = dir.join(KEY_FILE);
        match AuditKey::load(&path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::Io { action, path, source }
        };
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("create the folder of", dir))?;
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = AuditKey::from_seed(&name(), &seed);
        let pubs = dir.join(PUBLIC_KEYS_DIR);
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&pubs).map_err(io("create the folder of", &pubs))?;
        let pub_path = pubs.join(format!("{}.pub", hex(&key.verifier.id)));
        fs::write(&pub_path, format!("{}\n", key.verifier.to_vkey())).map_err(io("write", &pub_path))?;
        let _ = write_bound_public(
            &pubs.join(format!("{}.{BOUND_EXT}", hex(&key.verifier.id))),
            &key.verifier.name,
            &seed,
            &key.verifier.key,
        );
        // Written under a unique name, then linked into place: a concurrent
        // first use either wins or finds the winner's complete key.
        let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", unique()));
        let text = Zeroizing::new(key.private_text(&seed));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("write", &tmp))?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(io("write", &tmp))?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync the folder of", dir))?;
                Ok(key)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => AuditKey::load(&path),
            Err(e) => Err(io("create", &path)(e)),
        }
    }

    /// Loads a private key file (`PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`).
    pub fn load(path: &Path) -> Result<AuditKey, KeyError> {
        let malformed = |reason: &str| KeyError::Malformed { path: path.to_owned(), reason: reason.to_owned() };
        // Room for a whole key file at once: one read (and one to see its
        // end) instead of std's growing probes, and no reallocation leaves
        // a copy of the secret behind.
        let mut text = Zeroizing::new(String::with_capacity(512));
        File::open(path).and_then(|f| f.take(4096).read_to_string(&mut text)).map_err(|source| KeyError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(|| malformed("no PRIVATE+KEY+ prefix"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed("expected PRIVATE+KEY+<name>+<key id>+<key>"));
        };
        let bytes = Zeroizing::new(B64.decode(key).map_err(|_| malformed("the key is not base64"))?);
        let seed: [u8; 32] = match bytes.split_first() {
            Some((&ED25519, seed)) => seed.try_into().map_err(|_| malformed("the key is not 32 bytes"))?,
            _ => return Err(malformed("not an Ed25519 key")),
        };
        let seed = Zeroizing::new(seed);
        if !valid_name(name) {
            return Err(malformed("the name is empty or has a space or `+`"));
        }
        let expanded = ExpandedSecretKey::from(&*seed);
        let bound = path.parent().map(|dir| dir.join(PUBLIC_KEYS_DIR).join(format!("{id}.{BOUND_EXT}")));
        // The public half as kept beside the key, if its tag shows it was
        // derived from this very seed; else derived again (a scalar
        // multiplication: ≈ 220 000 instructions, most of a key load) and
        // kept for the next load.
        let kept = bound.as_deref().and_then(|b| read_bound_public(b, name, &seed));
        let public = kept.unwrap_or_else(|| VerifyingKey::from(&expanded));
        let key = AuditKey {
            verifier: Verifier { id: key_id(name, &public), name: name.to_owned(), key: public },
            expanded,
            journal: journal_key_of(&seed),
        };
        if id != hex(&key.verifier.id) {
            return Err(malformed("the key id does not match the key"));
        }
        if kept.is_none() {
            if let Some(b) = &bound {
                // Best effort: a key folder that cannot be written loads
                // the slow way every time.
                let _ = write_bound_public(b, name, &seed, &public);
            }
        }
        Ok(key)
    }

    fn from_seed(name: &str, seed: &[u8; 32]) -> AuditKey {
        let expanded = ExpandedSecretKey::from(seed);
        let key = VerifyingKey::from(&expanded);
        AuditKey {
            verifier: Verifier { id: key_id(name, &key), name: name.to_owned(), key },
            expanded,
            journal: journal_key_of(seed),
        }
    }

    fn private_text(&self, seed: &[u8; 32]) -> String {
        let mut key = Zeroizing::new(vec![ED25519]);
        key.extend_from_slice(seed);
        format!("PRIVATE+KEY+{}+{}+{}\n", self.verifier.name, hex(&self.verifier.id), B64.encode(&*key))
    }

    /// The key of the run journal's line MACs ([`crate::journal::LineKey`]),
    /// derived from this key's seed (HMAC-SHA-256 of a fixed label): who
    /// cannot read the audit key cannot make a journal line that recovery
    /// accepts.
    pub(crate) fn journal_key(&self) -> Zeroizing<[u8; 32]> {
        self.journal.clone()
    }

    /// The matching verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// `checkpoint` as a signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        // The public half is the one derived from this seed or bound to it
        // by `bound_tag` (never one read unchecked: signing one message
        // under two public keys would give the secret away).
        let sig = raw_sign::<Sha512>(&self.expanded, body.as_bytes(), &self.verifier.key);
        let mut blob = self.verifier.id.to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.verifier.name, B64.encode(blob))
    }
}

/// A name part no other process or thread uses at the same time.
/// The extension of the file in the verifier folder that keeps a key's
/// public half with a tag binding it to the seed (`<key id>.bound`).
pub const BOUND_EXT: &str = "bound";

/// HMAC-SHA-256, under a key derived from the seed for this use alone, of
/// the key's name and public half: only the holder of the seed can make a
/// tag that [`read_bound_public`] accepts.
fn bound_tag(name: &str, seed: &[u8; 32], public: &[u8; 32]) -> Hmac<Sha256> {
    let mac_key = subkey(seed, b"cordon audit key: the public half's tag v2");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&*mac_key).expect("HMAC takes a key of any length");
    mac.update(name.as_bytes());
    mac.update(b"\n");
    mac.update(public);
    mac
}

/// The public half kept at `path` (`<base64 public key> <hex tag>`), when
/// its tag is this seed's for `name`; `None` when the file is missing,
/// malformed or its tag does not match (then the caller derives it).
fn read_bound_public(path: &Path, name: &str, seed: &[u8; 32]) -> Option<VerifyingKey> {
    let mut text = String::with_capacity(128);
    File::open(path).and_then(|f| f.take(256).read_to_string(&mut text)).ok()?;
    let (public, tag) = text.trim().split_once(' ')?;
    let public: [u8; 32] = B64.decode(public).ok()?.try_into().ok()?;
    let tag = crate::record::unhex_32(tag.as_bytes())?;
    bound_tag(name, seed, &public).verify_slice(&tag).ok()?;
    VerifyingKey::from_bytes(&public).ok()
}

/// Keeps `public` at `path` with its tag (written whole under another
/// name, then renamed into place).
fn write_bound_public(path: &Path, name: &str, seed: &[u8; 32], public: &VerifyingKey) -> io::Result<()> {
    let tag = bound_tag(name, seed, public.as_bytes()).finalize().into_bytes();
    let text = format!("{} {}\n", B64.encode(public.as_bytes()), hex(&tag));
    let tmp = path.with_extension(format!("{BOUND_EXT}.{}.tmp", unique()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// Opens a signed checkpoint note: its body, checked against the first
/// signature by one of `verifiers` (as Go's note package does, a bad
/// signature by a known key rejects the note; signatures by unknown keys are
/// skipped). Returns the checkpoint and the key that signed it.
pub fn open(note: &str, verifiers: &[Verifier]) -> Result<(Checkpoint, Verifier), NoteError> {
    let bad = |why: &str| NoteError::Malformed(why.to_owned());
    if note.len() > MAX_NOTE_BYTES {
        return Err(bad("larger than 16 KiB"));
    }
    let split = note.rfind("\n\n").ok_or_else(|| bad("no blank line before the signatures"))?;
    let (body, sigs) = (&note[..=split], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(bad("the last signature line has no newline"));
    }
    let mut unknown = vec![];
    for line in sigs.lines() {
        let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| bad("a signature line does not start with `— `"))?;
        let (name, sig) = rest.split_once(' ').ok_or_else(|| bad("a signature line has no signature"))?;
        let blob = B64.decode(sig).map_err(|_| bad("a signature is not base64"))?;
        if blob.len() < 4 || !valid_name(name) {
            return Err(bad("a signature line is malformed"));
        }
        let (id, sig) = blob.split_at(4);
        let Some(v) = verifiers.iter().find(|v| v.name == name && v.id == id) else {
            unknown.push(format!("{name}+{}", hex(id)));
            continue;
        };
        let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| NoteError::BadSignature(v.label()))?;
        v.key.verify(body.as_bytes(), &sig).map_err(|_| NoteError::BadSignature(v.label()))?;
        return Ok((Checkpoint::parse(body)?, v.clone()));
    }
    Err(NoteError::UnknownKey(if unknown.is_empty() { "no signature".into() } else { unknown.join(", ") }))
}

/// Every verifier key in `dir/audit-keys/` (unreadable entries are
/// skipped: a verifier key that does not parse checks nothing).
pub fn known_verifiers(dir: &Path) -> Vec<Verifier> {
    let Ok(entries) = fs::read_dir(dir.join(PUBLIC_KEYS_DIR)) else { return vec![] };
    let mut out: Vec<Verifier> = entries
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|t| Verifier::parse(&t).ok())
        .collect();
    out.sort_by_key(Verifier::label);
    out.dedup();
    out
}

/// The file holding the latest checkpoint of the log at `log` (resolved),
/// in the key folder `dir`.
pub fn anchor_path(dir: &Path, log: &Path) -> PathBuf {
    anchor_path_resolved(dir, &fs::canonicalize(log).unwrap_or_else(|_| log.to_owned()))
}

/// [`anchor_path`] of the log at `log`, open as `file`: its resolved path
/// is the kernel's name for the open file (one `readlink` of
/// `/proc/self/fd/N`, where resolving `log` takes one per component), the
/// same path [`anchor_path`] finds; resolved from `log` as there when
/// `/proc` does not tell (not mounted, or the file was removed since).
pub(crate) fn anchor_path_of_open(dir: &Path, file: &File, log: &Path) -> PathBuf {
    use std::os::fd::AsRawFd;
    let named = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
        .filter(|p| p.is_absolute() && !p.as_os_str().as_encoded_bytes().ends_with(b" (deleted)"));
    match named {
        Some(resolved) => anchor_path_resolved(dir, &resolved),
        None => anchor_path(dir, log),
    }
}

fn anchor_path_resolved(dir: &Path, resolved: &Path) -> PathBuf {
    let id = hex(&Sha256::digest(resolved.as_os_str().as_encoded_bytes()));
    dir.join(ANCHORS_DIR).join(format!("{}.note", &id[..32]))
}

/// Bytes per slot of an anchor file.
const SLOT: usize = 4096;

/// The file that keeps a log's latest checkpoint: two slots of 4 KiB, each
/// one signed note padded with NUL bytes, written in turn (by the parity of
/// the size they cover) with one `pwrite` each. A process killed mid-write
/// cannot tear a write within one page; a machine crash that tears one
/// slot leaves the other, one record older. Not synced: after a machine
/// crash an older note may come back, which makes verification check less,
/// never wrongly.
#[derive(Debug)]
pub struct Anchor {
    path: PathBuf,
    file: File,
}

impl Anchor {
    /// Opens (creating it and its folder, `0700`/`0600`) the anchor at `path`.
    pub fn open(path: &Path) -> io::Result<Anchor> {
        let open = || OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path);
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
                }
                open()?
            }
            other => other?,
        };
        Ok(Anchor { path: path.to_owned(), file })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes what is stored durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Stores `note`, the checkpoint of `size` lines, in its slot.
    pub fn store(&self, size: u64, note: &str) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if note.len() > SLOT {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a checkpoint note longer than 4 KiB"));
        }
        let mut buf = vec![0u8; SLOT];
        buf[..note.len()].copy_from_slice(note.as_bytes());
        self.file.write_all_at(&buf, (size % 2) * SLOT as u64)
    }
}

/// The notes an anchor file holds (one or two; an older, single-note file
/// reads as one). `None` when there is no such file.
pub fn read_anchor(path: &Path) -> io::Result<Option<Vec<String>>> {
    let mut bytes = vec![];
    match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
        Ok(f) => f.take(2 * SLOT as u64).read_to_end(&mut bytes)?,
    };
    let notes = bytes
        .chunks(SLOT)
        .map(|slot| String::from_utf8_lossy(slot).trim_end_matches('\0').to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    Ok(Some(notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, byte: u8) -> AuditKey {
        AuditKey::from_seed(name, &[byte; 32])
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let k = key("cordon-audit@host", 7);
        let cp = Checkpoint { origin: "cordon.audit/0123456789abcdef".into(), size: 42, hash: [9; 32] };
        let note = k.sign(&cp);
        assert!(note.starts_with("cordon.audit/0123456789abcdef\n42\nCQkJ"), "{note}");
        assert!(note.contains("\n\n\u{2014} cordon-audit@host "), "{note}");
        let (opened, by) = open(&note, &[k.verifier().clone()]).unwrap();
        assert_eq!((opened, by), (cp.clone(), k.verifier().clone()));
        // Another key: unknown, not accepted.
        let other = key("cordon-audit@host", 8);
        assert!(matches!(open(&note, &[other.verifier().clone()]), Err(NoteError::UnknownKey(_))));
        // A forged note, signed by another key under the same name: unknown
        // id; with a changed body: the signature fails.
        let forged = other.sign(&cp);
        assert!(matches!(open(&forged, &[k.verifier().clone()]), Err(NoteError::UnknownKey(_))));
        let edited = note.replacen("\n42\n", "\n41\n", 1);
        assert_eq!(open(&edited, &[k.verifier().clone()]), Err(NoteError::BadSignature(k.verifier().label())));
    }

    #[test]
    fn verifier_keys_round_trip_and_are_checked() {
        let k = key("cordon-audit@host", 3);
        let vkey = k.verifier().to_vkey();
        assert!(vkey.starts_with("cordon-audit@host+"), "{vkey}");
        assert_eq!(Verifier::parse(&vkey).unwrap(), *k.verifier());
        let wrong_id = format!("cordon-audit@host+00000000+{}", vkey.rsplit('+').next().unwrap());
        assert!(Verifier::parse(&wrong_id).is_err());
        assert!(Verifier::parse("no-plus-signs").is_err());
    }

    #[test]
    fn the_key_is_created_once_private_and_reloads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = cordon_testkit::Dir::new("audit-key");
        let a = AuditKey::load_or_create(dir.path(), || "n".into()).unwrap();
        let b = AuditKey::load_or_create(dir.path(), || "n".into()).unwrap();
        assert_eq!(a.verifier(), b.verifier());
        let mode = fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(known_verifiers(dir.path()), [a.verifier().clone()]);
        // Rotation: the old key moved away, a new one is made; both verify.
        fs::rename(dir.join(KEY_FILE), dir.join("old.key")).unwrap();
        let c = AuditKey::load_or_create(dir.path(), || "n".into()).unwrap();
        assert_ne!(c.verifier(), a.verifier());
        assert_eq!(known_verifiers(dir.path()).len(), 2);
        fs::write(dir.join(KEY_FILE), "PRIVATE+KEY+n+00000000+AQ==\n").unwrap();
        assert!(matches!(AuditKey::load(&dir.join(KEY_FILE)), Err(KeyError::Malformed { .. })));
    }

    /// The anchor of an open log is the one `anchor_path` (and so `cordon
    /// audit verify`) finds, also when the log is reached through a
    /// symbolic link: both name the resolved path. Control: the path as
    /// given names another anchor.
    #[test]
    fn an_open_logs_anchor_is_the_one_verify_finds() {
        let dir = cordon_testkit::Dir::new("audit-anchor");
        let real = dir.create_dir("real");
        std::os::unix::fs::symlink(&real, dir.join("link")).unwrap();
        let via_link = dir.join("link").join("audit.jsonl");
        let file = OpenOptions::new().create(true).append(true).open(&via_link).unwrap();
        let keys = dir.join("keys");
        let of_open = anchor_path_of_open(&keys, &file, &via_link);
        assert_eq!(of_open, anchor_path(&keys, &via_link));
        assert_eq!(of_open, anchor_path(&keys, &real.join("audit.jsonl")));
        assert_ne!(of_open, anchor_path_resolved(&keys, &via_link), "control: the unresolved path names another");
        // A log removed since it was opened: resolved from its path.
        fs::remove_file(real.join("audit.jsonl")).unwrap();
        assert_eq!(anchor_path_of_open(&keys, &file, &via_link), anchor_path_resolved(&keys, &via_link));
    }

    #[test]
    fn checkpoint_bodies_are_strict() {
        let cp = Checkpoint { origin: "o".into(), size: 0, hash: [0; 32] };
        assert_eq!(Checkpoint::parse(&cp.body()).unwrap(), cp);
        for bad in ["", "o\n01\nAAAA\n", "o\nx\nAAAA\n", "o\n1\nnot-base64\n", "o\n1\n"] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
