//! The service's life: SIGTERM drains and records, SIGKILL leaves no
//! sandbox and the next start records `LOST`, and after a load run the
//! audit log holds exactly one record per accepted execution.

use std::collections::BTreeMap;
use std::time::Duration;

use cordon_testkit::{poll_until, processes_mentioning};
use serde_json::json;

use super::{http, Options, Service};
use crate::suite::unique_sleep_marker;

#[test]
fn sigterm_stops_accepting_drains_in_flight_executions_records_them_and_exits_0() {
    let s = Service::start_with("serve-sigterm", Options { server: "workers = 2\n".into(), ..Options::default() });
    let at = s.access_token();
    // Two executions that each take a second, and one synchronous caller.
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let r = s.execute(&at, "nap", json!({}), Some(0));
            assert_eq!(r.status, 202, "{r:?}");
            r.json()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let addr = s.addr;
    let sync_at = at.clone();
    let waiter = std::thread::spawn(move || {
        let body = json!({"plugin": super::PLUGIN, "handler": "nap"}).to_string();
        let auth = format!("Bearer {sync_at}");
        http(
            addr,
            "POST",
            "/v1/executions",
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            body.as_bytes(),
        )
    });
    // The synchronous one is accepted before the signal.
    assert!(poll_until(Duration::from_secs(20), || in_flight(&s) + s.audit_records().len() >= 3), "{}", s.log());
    let mut s = s;
    s.signal("TERM");
    let sync = waiter.join().unwrap();
    assert_eq!(sync.status, 200, "the waiting caller gets its result: {sync:?}\n{}", s.log());
    assert_eq!(sync.json()["data"], json!({"napped": true}));
    let code = s.wait_exit();
    assert_eq!(code, Some(0), "{}", s.log());
    assert!(std::net::TcpStream::connect(addr).is_err(), "the listener is closed");
    for id in &ids {
        let records = s.records_of(id);
        assert_eq!(records.len(), 1, "{id}: {records:#?}");
        assert_eq!(records[0]["outcome"], "ok", "drained, not cancelled: {records:#?}");
    }
    assert_eq!(s.audit_records().len(), 3);
    assert!(s.log().contains("stopped; every execution is recorded"), "{}", s.log());
}

/// Executions queued or running, as `/readyz` counts them.
fn in_flight(s: &Service) -> usize {
    let pool = &http(s.addr, "GET", "/readyz", &[], b"").json()["pool"];
    usize::try_from(pool["busy"].as_u64().unwrap_or(0) + pool["queued"].as_u64().unwrap_or(0)).unwrap_or(usize::MAX)
}

#[test]
fn sigterm_past_the_shutdown_timeout_cancels_and_records_what_is_left() {
    let opts = Options { server: "workers = 1\nshutdown_timeout_ms = 300\n".into(), ..Options::default() };
    let mut s = Service::start_with("serve-sigterm-timeout", opts);
    let at = s.access_token();
    let marker = unique_sleep_marker();
    let ids: Vec<String> = (0..2)
        .map(|_| s.execute(&at, "sleep", json!({"s": marker}), Some(0)).json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(poll_until(Duration::from_secs(30), || !processes_mentioning(&marker).is_empty()));
    s.signal("TERM");
    assert_eq!(s.wait_exit(), Some(0), "{}", s.log());
    assert!(processes_mentioning(&marker).is_empty(), "a sandbox outlived the service");
    for id in &ids {
        let records = s.records_of(id);
        assert_eq!(records.len(), 1, "{records:#?}");
        assert_eq!(records[0]["outcome"], "CANCELLED", "{records:#?}");
    }
}

#[test]
fn sigkill_leaves_no_sandbox_and_the_next_start_records_lost() {
    let opts = Options { server: "workers = 1\n".into(), ..Options::default() };
    let mut s = Service::start_with("serve-sigkill", opts);
    let at = s.access_token();
    let marker = unique_sleep_marker();
    let running = s.execute(&at, "sleep", json!({"s": marker}), Some(0)).json()["id"].as_str().unwrap().to_owned();
    let queued = s.execute(&at, "sleep", json!({"s": marker}), Some(0)).json()["id"].as_str().unwrap().to_owned();
    assert!(
        poll_until(Duration::from_secs(30), || !processes_mentioning(&marker).is_empty()),
        "the sandbox never started"
    );
    assert_eq!(s.get(&format!("/v1/executions/{queued}"), &at).json()["status"], "queued");
    s.kill();
    let gone = poll_until(Duration::from_secs(10), || processes_mentioning(&marker).is_empty());
    let leftovers = processes_mentioning(&marker);
    for pid in &leftovers {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(gone, "sandbox processes survived SIGKILL of the service: {leftovers:?}");
    assert!(s.records_of(&running).is_empty() && s.records_of(&queued).is_empty(), "nothing recorded yet");
    // Control: the killed run's folder stays behind (nobody holds it now).
    assert_eq!(run_folders(&s), 1, "the killed run's folder should stay until a run sweeps");
    let s = s.restart();
    for id in [&running, &queued] {
        let records = s.records_of(id);
        assert_eq!(records.len(), 1, "{id}: {records:#?}");
        assert_eq!(records[0]["outcome"], "LOST");
        assert_eq!(records[0]["lost"], true);
        assert_eq!(records[0]["tenant"], "acme");
        assert_eq!(records[0]["principal"], "client:ci");
    }
    // The first run since looked for leftovers at once, evidence of a crash
    // in hand (the sweep was not due: the killed run looked moments ago).
    let at = s.access_token();
    assert_eq!(s.execute(&at, "empty", json!({}), None).status, 200);
    // The run is answered before its teardown, so its own folder (and the
    // sweep's work) may still be under way at the answer.
    let swept = poll_until(Duration::from_secs(10), || run_folders(&s) == 0);
    assert!(swept, "the killed run's folder outlived the first run after the restart: {} left", run_folders(&s));
    // A second restart adds nothing.
    let s = s.restart();
    assert_eq!(s.audit_records().len(), 3, "{:#?}", s.audit_records());
}

/// The run folders (`cordon-exec-<request id>`) in the service's run
/// root's folder of run folders.
fn run_folders(s: &Service) -> usize {
    std::fs::read_dir(super::runs_folder(s.dir.path()))
        .expect("read the run root's folder of run folders")
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("cordon-exec-")))
        .count()
}

#[test]
fn after_a_load_run_audit_records_equal_accepted_executions() {
    let opts = Options {
        server: "workers = 2\nqueue = 8\n".into(),
        acme: "max_concurrent = 6\nrate_per_sec = 1000\n".into(),
        ..Options::default()
    };
    let mut s = Service::start_with("serve-load", opts);
    let at = s.access_token();
    let addr = s.addr;
    // 6 clients × 15 requests, sync and async mixed; some are refused (429,
    // 503) by design.
    let outcomes: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|c| {
                let at = at.clone();
                scope.spawn(move || {
                    (0..15)
                        .map(|i| {
                            let wait = if (c + i) % 3 == 0 { 0 } else { 30_000 };
                            let body =
                                json!({"plugin": super::PLUGIN, "handler": "empty", "wait_ms": wait}).to_string();
                            let auth = format!("Bearer {at}");
                            let r = http(
                                addr,
                                "POST",
                                "/v1/executions",
                                &[("Authorization", &auth), ("Content-Type", "application/json")],
                                body.as_bytes(),
                            );
                            let id = r.json().get("id").and_then(|v| v.as_str()).map(str::to_owned);
                            (r.status, id)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (st, _) in &outcomes {
        *by_status.entry(*st).or_default() += 1;
    }
    let accepted: Vec<&String> =
        outcomes.iter().filter(|(st, _)| *st == 200 || *st == 202).filter_map(|(_, id)| id.as_ref()).collect();
    assert!(by_status.keys().all(|k| [200, 202, 429, 503].contains(k)), "{by_status:?}");
    assert!(accepted.len() >= 20, "too few accepted to say anything: {by_status:?}");
    s.signal("TERM");
    assert_eq!(s.wait_exit(), Some(0), "{}", s.log());
    let records = s.audit_records();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        *counts.entry(r["request_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for id in &accepted {
        assert_eq!(counts.get(id.as_str()), Some(&1), "execution {id} has {:?} records", counts.get(id.as_str()));
    }
    assert_eq!(
        records.len(),
        accepted.len(),
        "records {} != accepted {} ({by_status:?})",
        records.len(),
        accepted.len()
    );
    assert!(records.iter().all(|r| r["outcome"] == "ok"), "every drained execution ran: {records:#?}");
}

#[test]
fn clients_that_hang_up_while_being_accepted_leave_no_place_taken_and_no_lost_record() {
    let opts = Options { acme: "max_concurrent = 4\nrate_per_sec = 1000\n".into(), ..Options::default() };
    let s = Service::start_with("serve-hangup", opts);
    let at = s.access_token();
    // Clients that send a request and hang up at once: the service drops
    // the handler of each, some of them while their begin is committed
    // (where exactly is up to the scheduler: rounds until some were).
    let body = json!({"plugin": super::PLUGIN, "handler": "empty", "input": {}});
    let mut ours = 0;
    for _round in 0..20 {
        super::hang_up(s.addr, &at, &body, 40);
        // Every place of the tenant (4) comes back: an execution is
        // accepted again.
        let accepted = poll_until(Duration::from_secs(60), || s.execute(&at, "empty", json!({}), None).status == 200);
        assert!(
            accepted,
            "the tenant's places stayed taken: {:?}\n{}",
            s.execute(&at, "empty", json!({}), None),
            s.log()
        );
        ours += 1;
        // Records beyond ours: hung-up requests that were accepted ran.
        if s.audit_records().len() > ours {
            break;
        }
    }
    let mut s = s;
    s.signal("TERM");
    assert_eq!(s.wait_exit(), Some(0), "{}", s.log());
    let records = s.audit_records();
    // Control: hung-up requests were accepted (begun) before their clients
    // left, so the case was exercised.
    assert!(records.len() > ours, "no hung-up request got as far as its begin in 20 rounds: {records:#?}");
    let lost: Vec<_> = records.iter().filter(|r| r["outcome"] == "LOST").collect();
    assert!(lost.is_empty(), "accepted executions never queued: {lost:#?}");
    assert!(records.iter().all(|r| r["outcome"] == "ok"), "{records:#?}");
}

#[test]
fn a_run_root_every_user_may_write_is_refused_at_load_by_serve_and_worker() {
    // Review s13 (state piece's gap): a service or worker whose run_root is
    // a shared folder (/var/tmp, the old default) kept its folder of run
    // folders out of its own runs only: a `cordon run --write /var/tmp`
    // listed and could change it (and another user could make it first).
    // The configuration is refused at load, naming the file and line.
    use std::os::unix::fs::PermissionsExt;
    let dir = cordon_testkit::Dir::new("serve-shared-run-root");
    super::write_plugin(&dir);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let root = dir.path().to_owned();
    match Service::spawn(dir, Options::default()) {
        Ok(s) => {
            // The forbidden thing, host side: another cordon's sandbox with
            // a grant on the shared folder lists the service's run folders.
            let at = s.access_token();
            let _ = s.execute(&at, "empty", json!({}), Some(30_000));
            let runs = super::runs_folder(&root);
            let ls = crate::suite::run_in(cordon_testkit::Mode::Process)
                .args(["--write", root.to_str().unwrap(), "--", "ls", "-la", runs.to_str().unwrap()])
                .run();
            panic!(
                "the service started with run_root = {} (mode 1777); a sandbox lists its run folders:\n{ls}",
                root.display()
            );
        }
        Err((code, err)) => {
            assert!(code.is_some_and(|c| c != 0), "{code:?} {err}");
            for needle in [
                "config.toml:",
                &format!("run_root = \"{}\" is a folder every user may write (mode 1777)", root.display()),
                "hint: leave run_root out",
            ] {
                assert!(err.contains(needle), "{needle:?} not in:\n{err}");
            }
        }
    }
    // The worker reads the same file, and refuses it before connecting.
    let own = cordon_testkit::Dir::new("worker-shared-run-root");
    let shared = own.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let config = own.create("worker.toml", format!("[server]\nrun_root = \"{}\"\n", shared.display()));
    let out = crate::suite::cordon()
        .args(["worker", "--config", config.to_str().unwrap(), "--queue", "nats://127.0.0.1:9"])
        .args(["--result-key", own.join("absent.key").to_str().unwrap()])
        .run();
    assert_ne!(out.code(), Some(0), "{out}");
    out.assert_stderr_contains("worker.toml:2:").assert_stderr_contains("is a folder every user may write (mode 1777)");
}
