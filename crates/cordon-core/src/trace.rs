//! `CORDON_TRACE=1`: how long each step of a run takes, on stderr.
//!
//! [`step`] marks the end of a step. With `CORDON_TRACE` set to anything but
//! empty or `0` in cordon's environment, each mark prints one line to
//! stderr:
//!
//! ```text
//! cordon: trace:    0.412 ms   +0.087 ms  audit: begin
//! ```
//!
//! the time since the first mark of the process, the time since the
//! previous mark, and the step's name. Marks are cheap when tracing is off:
//! the variable is read once, then each mark is one atomic load. The first
//! mark is the clock's zero, so a binary should mark as early as it can (the
//! CLI marks at the top of `main`). Marks are never made between clone and
//! exec (they allocate).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The variable that turns tracing on.
pub const ENV: &str = "CORDON_TRACE";

/// The clock's zero, or `None` when tracing is off.
fn start() -> Option<Instant> {
    static START: OnceLock<Option<Instant>> = OnceLock::new();
    *START.get_or_init(|| {
        let on = std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0");
        on.then(Instant::now)
    })
}

/// Whether tracing is on.
pub fn enabled() -> bool {
    start().is_some()
}

/// Marks the end of step `name` (see the module docs).
pub fn step(name: &str) {
    static LAST_NS: AtomicU64 = AtomicU64::new(0);
    let Some(zero) = start() else { return };
    let now = u64::try_from(zero.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let last = LAST_NS.swap(now, Ordering::Relaxed);
    let ms = |ns: u64| ns as f64 / 1e6;
    let line = format!("cordon: trace: {:>8.3} ms  {:>+9.3} ms  {name}\n", ms(now), ms(now.saturating_sub(last)));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
