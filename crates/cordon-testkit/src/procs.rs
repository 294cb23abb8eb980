//! Host process lookups and polling, for tests that check what survives a run.

use std::fs;
use std::time::{Duration, Instant};

/// Host pids whose full command line is exactly `argv`, read from
/// `/proc/<pid>/cmdline`. Zombies (empty command line) and processes that
/// exit during the scan are not listed. The scanning process itself is never
/// listed, since its argv is the test binary's.
pub fn processes_with_argv(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain(std::iter::once(0))).collect();
    let Ok(entries) = fs::read_dir("/proc") else { panic!("cannot list /proc") };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// Host pids whose command line (arguments joined by spaces) contains
/// `needle`, other than the calling process. Catches a process both before
/// and after it execs, as long as the marker is in its arguments.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else { panic!("cannot list /proc") };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
        })
        .collect()
}

/// Calls `cond` every 10 ms until it returns true or `timeout` passes;
/// returns whether it became true. Use generous timeouts: it returns as soon
/// as the condition holds, so a long bound costs nothing when things work.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
