//! Load on the group-commit writer: THREADS request threads each begin and
//! complete RUNS runs, waiting for each answer as a gateway would; then the
//! same work through `AuditTrail` (one commit per run, as `cordon run`
//! does), for comparison. Prints runs per second, records per `fdatasync`
//! and the latency of a durable record.
//!
//! usage: cargo run --release -p cordon-audit --example group_load -- [THREADS] [RUNS] [DIR]
//! (default 16 threads, 200 runs each, a temporary folder in /var/tmp: a
//! real disk, not a tmpfs, where fdatasync is free)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cordon_audit::{AuditTrail, Ending, GroupOptions, GroupWriter, KeyFolder, Outcome, Subject};
use cordon_core::policy::Mode;

fn ending() -> Ending {
    Ending {
        mode: Mode::Dev,
        outcome: Outcome::Ok,
        error: None,
        duration_ms: 1.0,
        cpu_ms: None,
        peak_rss_kb: None,
        network: None,
        policy_digest: String::new(),
    }
}

/// The `per_mille`/1000 quantile of `sorted`, in ms.
fn percentile(sorted: &[Duration], per_mille: usize) -> f64 {
    let i = (sorted.len().saturating_sub(1) * per_mille + 500) / 1000;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(what: &str, started: Instant, mut latencies: Vec<Duration>) {
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "{what}: {} runs in {secs:.2} s = {:.0} runs/s; begin-to-durable-record p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        latencies.len() as f64 / secs,
        percentile(&latencies, 500),
        percentile(&latencies, 990),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let dir = args
        .get(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/var/tmp/cordon-group-load-{}", std::process::id())));
    std::fs::create_dir_all(&dir).expect("create the folder");
    let keys = KeyFolder::At(dir.join("keys"));

    let path = dir.join("group.jsonl");
    let writer = GroupWriter::open(&path, &keys, GroupOptions::default()).expect("open the writer");
    let started = Instant::now();
    let latencies = run_threads(threads, |t| {
        (0..runs)
            .map(|i| {
                let t0 = Instant::now();
                let run = writer.begin(&Subject::default(), &format!("G{t}-{i}"), Some(Mode::Dev)).wait().unwrap();
                run.complete(ending(), &[]).wait().unwrap();
                t0.elapsed()
            })
            .collect()
    });
    report("group commit", started, latencies);
    let s = writer.shutdown().expect("shut down");
    println!(
        "  {} records in {} log fdatasyncs ({:.1} per sync), {} begins in {} journal fdatasyncs ({:.1} per sync), {} commits",
        s.records,
        s.log_syncs,
        s.records as f64 / s.log_syncs.max(1) as f64,
        s.begins,
        s.journal_syncs,
        s.begins as f64 / s.journal_syncs.max(1) as f64,
        s.commits
    );

    let path = dir.join("trail.jsonl");
    let trail = AuditTrail::open_with(&path, &keys).expect("open the trail");
    let per_thread = (runs / 10).max(1);
    let started = Instant::now();
    let latencies = run_threads(threads, |t| {
        (0..per_thread)
            .map(|i| {
                let t0 = Instant::now();
                let run = trail.begin(&Subject::default(), &format!("T{t}-{i}"), Some(Mode::Dev)).unwrap();
                run.complete(ending(), &[]).unwrap();
                t0.elapsed()
            })
            .collect()
    });
    report("one commit per run (AuditTrail)", started, latencies);
    if args.get(3).is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn run_threads(threads: usize, work: impl Fn(usize) -> Vec<Duration> + Sync) -> Vec<Duration> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn({
                    let work = &work;
                    move || work(t)
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}
