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

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_26_chars_and_sort_by_time() {
        let a = super::new_request_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::new_request_id();
        assert_eq!(a.len(), 26);
        assert!(a < b, "{a} {b}");
    }
}
