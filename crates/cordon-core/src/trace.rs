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
//! exec (they allocate): the sandbox's own setup steps are timed there with
//! `clock_gettime` into a pipe (`sys::child::ChildMark`), and the parent
//! prints them once the command has started ([`steps_at`]).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::sys;

/// The variable that turns tracing on.
pub const ENV: &str = "CORDON_TRACE";

/// The clock's zero (`CLOCK_MONOTONIC`, ns), or `None` when tracing is off.
fn start() -> Option<u64> {
    static START: OnceLock<Option<u64>> = OnceLock::new();
    *START.get_or_init(|| {
        let on = std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0");
        on.then(sys::monotonic_ns)
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
    let now = sys::monotonic_ns().saturating_sub(zero);
    let last = LAST_NS.swap(now, Ordering::Relaxed);
    print(name, now, now.saturating_sub(last));
}

/// Marks steps that another process timed (the sandbox's own setup, see
/// `sys::child::ChildMark`): each `(name, at)` with `at` a
/// `CLOCK_MONOTONIC` time in ns, its duration counted from the previous
/// one, the first from `since`. Printed as they come, after the parent's
/// marks around them.
pub fn steps_at(marks: &[(&str, u64)], since: u64) {
    let Some(zero) = start() else { return };
    let mut last = since;
    for (name, at) in marks {
        print(name, at.saturating_sub(zero), at.saturating_sub(last));
        last = *at;
    }
}

fn print(name: &str, at: u64, took: u64) {
    let ms = |ns: u64| ns as f64 / 1e6;
    let line = format!("cordon: trace: {:>8.3} ms  {:>+9.3} ms  {name}\n", ms(at), ms(took));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
