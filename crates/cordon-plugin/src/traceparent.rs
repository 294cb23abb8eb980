//! W3C Trace Context `traceparent`: parsed from a caller, generated when
//! there is none, and passed on to the handler with a new parent id.
//!
//! Format (version `00`): `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`,
//! lowercase only. The trace id and the parent id may not be all zeros,
//! version `ff` is invalid. A later version is parsed by its first four
//! fields, as the specification asks, and rewritten as version `00`.
//!
//! ```
//! use cordon_plugin::traceparent::TraceParent;
//! let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap();
//! assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(tp.sampled());
//! let child = tp.child();
//! assert_eq!(child.trace_id, tp.trace_id);
//! assert_ne!(child.parent_id, tp.parent_id);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The name of the HTTP header and of the variable passed to handlers.
pub const HEADER: &str = "traceparent";

/// The environment variable a handler finds its `traceparent` in.
pub const ENV: &str = "TRACEPARENT";

/// One `traceparent` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace id; never all zeros.
    pub trace_id: [u8; 16],
    /// The id of the caller's span; never all zeros.
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

/// Why a `traceparent` is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Not four `-`-separated fields of the right lengths.
    #[error("traceparent `{0}` is not `00-<32 hex>-<16 hex>-<2 hex>`")]
    Shape(String),
    /// A field has a character other than `0-9a-f`.
    #[error("traceparent `{0}` has a character other than lowercase hex")]
    NotHex(String),
    /// Version `ff`.
    #[error("traceparent `{0}` has the forbidden version `ff`")]
    Version(String),
    /// Version `00` with trailing data.
    #[error("traceparent `{0}` has data after the flags, which version 00 does not allow")]
    Trailing(String),
    /// A trace id of all zeros.
    #[error("traceparent `{0}` has an all-zero trace id")]
    ZeroTraceId(String),
    /// A parent id of all zeros.
    #[error("traceparent `{0}` has an all-zero parent id")]
    ZeroParentId(String),
}

impl TraceParent {
    /// A new trace: random trace id and parent id, sampled.
    pub fn generate() -> TraceParent {
        let mut bytes = random_24();
        // Random bytes are all zero with negligible probability; the spec
        // forbids it, so make sure.
        bytes[15] |= u8::from(bytes[..16].iter().all(|b| *b == 0));
        bytes[23] |= u8::from(bytes[16..].iter().all(|b| *b == 0));
        TraceParent { trace_id: take(&bytes[..16]), parent_id: take(&bytes[16..]), flags: 0x01 }
    }

    /// The same trace with a new parent id: what cordon passes to the
    /// handler, so the handler's spans hang under cordon's.
    pub fn child(&self) -> TraceParent {
        let mut parent_id: [u8; 8] = take(&random_24()[..8]);
        if parent_id == [0; 8] || parent_id == self.parent_id {
            parent_id[7] ^= 0x5a;
        }
        TraceParent { parent_id, ..*self }
    }

    /// The caller's `traceparent` when it is valid, else a new trace. An
    /// invalid header starts a new trace, as the specification asks.
    pub fn from_caller_or_new(header: Option<&str>) -> TraceParent {
        header.and_then(|h| h.trim().parse().ok()).unwrap_or_else(TraceParent::generate)
    }

    /// The trace id as 32 lowercase hex digits (the audit log's `trace_id`).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The parent id as 16 lowercase hex digits.
    pub fn parent_id_hex(&self) -> String {
        hex(&self.parent_id)
    }

    /// Whether the caller recorded (sampled) this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, TraceParentError> {
        let own = || s.to_owned();
        let fields: Vec<&str> = s.splitn(5, '-').collect();
        if fields.len() < 4 {
            return Err(TraceParentError::Shape(own()));
        }
        let (version, trace, parent, flags) = (fields[0], fields[1], fields[2], fields[3]);
        if version.len() != 2 || trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
            return Err(TraceParentError::Shape(own()));
        }
        if ![version, trace, parent, flags].iter().all(|f| f.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))) {
            return Err(TraceParentError::NotHex(own()));
        }
        if version == "ff" {
            return Err(TraceParentError::Version(own()));
        }
        if fields.len() == 5 && version == "00" {
            return Err(TraceParentError::Trailing(own()));
        }
        let trace_id: [u8; 16] = take(&unhex(trace));
        let parent_id: [u8; 8] = take(&unhex(parent));
        if trace_id == [0; 16] {
            return Err(TraceParentError::ZeroTraceId(own()));
        }
        if parent_id == [0; 8] {
            return Err(TraceParentError::ZeroParentId(own()));
        }
        Ok(TraceParent { trace_id, parent_id, flags: unhex(flags)[0] })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.parent_id), self.flags)
    }
}

impl Serialize for TraceParent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex digits to bytes; the caller has checked the digits.
fn unhex(s: &str) -> Vec<u8> {
    let digit = |b: u8| if b.is_ascii_digit() { b - b'0' } else { b - b'a' + 10 };
    s.as_bytes().chunks(2).map(|p| digit(p[0]) << 4 | digit(p[1])).collect()
}

fn take<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// 24 random bytes from the kernel (`getrandom(2)`: one syscall, no file).
/// If that fails (a seccomp filter around the caller, say), the ids are
/// derived from the clock, the pid and a counter: unique enough for
/// tracing, which is all they are for.
fn random_24() -> [u8; 24] {
    let mut out = [0u8; 24];
    if cordon_core::sys::random_bytes(&mut out).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(now.as_nanos().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        out.copy_from_slice(&h.finalize()[..24]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn round_trips() {
        let tp: TraceParent = VALID.parse().unwrap();
        assert_eq!(tp.to_string(), VALID);
        assert_eq!(tp.parent_id_hex(), "00f067aa0ba902b7");
        assert_eq!(serde_json::to_string(&tp).unwrap(), format!("\"{VALID}\""));
    }

    #[test]
    fn invalid_examples_are_refused_with_the_reason() {
        use TraceParentError as E;
        type Reason = fn(String) -> E;
        let cases: &[(&str, Reason)] = &[
            ("", E::Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", E::Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", E::Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01", E::Shape),
            ("0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", E::Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", E::Shape),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", E::Shape),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", E::NotHex),
            ("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", E::NotHex),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x", E::NotHex),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", E::Version),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", E::Trailing),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", E::ZeroTraceId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", E::ZeroParentId),
        ];
        for (raw, want) in cases {
            assert_eq!(raw.parse::<TraceParent>(), Err(want(raw.to_string())), "{raw:?}");
        }
    }

    #[test]
    fn later_versions_are_read_by_their_first_fields() {
        let tp: TraceParent = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-ever".parse().unwrap();
        assert!(!tp.sampled());
        assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = TraceParent::generate();
        let b = TraceParent::generate();
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(a.to_string().parse::<TraceParent>().unwrap(), a);
        assert!(a.sampled());
    }

    #[test]
    fn an_invalid_caller_header_starts_a_new_trace() {
        let kept = TraceParent::from_caller_or_new(Some(VALID));
        assert_eq!(kept.to_string(), VALID);
        let fresh = TraceParent::from_caller_or_new(Some("garbage"));
        assert_ne!(fresh.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(TraceParent::from_caller_or_new(None).trace_id, [0; 16]);
    }
}
