//! Request ids: ULIDs (time-ordered, 26 Crockford base32 characters).

use std::time::{SystemTime, UNIX_EPOCH};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new ULID: 48 bits of milliseconds since the epoch, 80 random bits.
pub fn new_request_id() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let mut rand = [0u8; 10];
    if cordon_core::sys::random_bytes(&mut rand).is_err() {
        // getrandom cannot fail on Linux >= 3.17 once the pool is ready;
        // fall back to the clock's nanoseconds rather than abort a run.
        let ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        rand[..4].copy_from_slice(&ns.to_ne_bytes());
    }
    let value = (ms & ((1 << 48) - 1)) << 80 | rand.iter().fold(0u128, |a, b| (a << 8) | u128::from(*b));
    (0..26).rev().map(|i| CROCKFORD[((value >> (i * 5)) & 31) as usize] as char).collect()
}

/// Longest request id a caller may give.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// A request id a caller gave that cannot name a run: it names the run's
/// run folder (`cordon-exec-<id>`) and cgroups, and its artifacts' place in
/// a store.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("request id {id:?} is not 1-{MAX_REQUEST_ID_BYTES} of A-Z a-z 0-9 _ -")]
pub struct BadRequestId {
    /// The id as given (at most 140 characters of it).
    pub id: String,
}

impl BadRequestId {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        "give an id of letters, digits, `_` and `-` (a ULID or UUID works), or none: cordon makes one"
    }
}

/// Checks an id a caller gave for a run ([`BadRequestId`] says why ids are
/// restricted). Ids cordon makes ([`new_request_id`]) always pass.
pub fn check_request_id(id: &str) -> Result<(), BadRequestId> {
    let shaped = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match shaped {
        true => Ok(()),
        false => Err(BadRequestId { id: id.chars().take(140).collect() }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_checked() {
        for good in
            ["a", "pool-01ARZ3NDEKTSV4RRFFQ69G5FAV", "the_callers-id", &"x".repeat(128), &super::new_request_id()]
        {
            assert_eq!(super::check_request_id(good), Ok(()), "{good}");
        }
        for bad in ["", "../x", "a/b", ".", "X\n\"; injected", "é", &"x".repeat(129), "a b"] {
            assert!(super::check_request_id(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn ids_are_26_chars_and_sort_by_time() {
        let a = super::new_request_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::new_request_id();
        assert_eq!(a.len(), 26);
        assert!(a < b, "{a} {b}");
    }
}
