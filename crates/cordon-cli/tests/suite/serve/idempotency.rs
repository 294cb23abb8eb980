//! `Idempotency-Key`: the caller's name for a request within its tenant,
//! never the execution's id (review s9 F4), and a keyed execution killed
//! with the service leaves nothing that stops its retry (review s9 F6).

use std::time::Duration;

use cordon_testkit::poll_until;
use serde_json::json;

use super::{http, Options, Resp, Service, BETA_SECRET, PLUGIN};

/// `POST /v1/executions` of `handler` with `input`, the key if any.
fn post(s: &Service, bearer: &str, key: Option<&str>, handler: &str, input: serde_json::Value, wait_ms: u64) -> Resp {
    let auth = format!("Bearer {bearer}");
    let body = json!({"plugin": PLUGIN, "handler": handler, "input": input, "wait_ms": wait_ms}).to_string();
    let mut headers = vec![("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    http(s.addr, "POST", "/v1/executions", &headers, body.as_bytes())
}

/// A finished, successful execution's body.
#[track_caller]
fn ok(r: &Resp) -> serde_json::Value {
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["ok"], true, "{v:#}");
    v
}

/// The stored `report.txt` of an `art` execution: the JSON string it holds
/// (the handler stores its input as it came).
#[track_caller]
fn report(v: &serde_json::Value) -> String {
    assert_eq!(v["warnings"], json!([]), "{v:#}");
    let arts = v["artifacts"].as_array().unwrap_or_else(|| panic!("no artifacts: {v:#}"));
    assert_eq!(arts.len(), 1, "{v:#}");
    let at = arts[0]["stored_at"].as_str().expect("stored_at");
    assert!(at.contains(v["id"].as_str().expect("id")), "stored under another id: {at} {v:#}");
    let text = std::fs::read_to_string(at).unwrap_or_else(|e| panic!("{at}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{at}: {e}: {text:?}"))
}

/// The reproducer's sequence (review s9 F4): tenant beta uses the key tenant
/// acme will use, lets its result be evicted, and acme's execution with that
/// key then found beta's artifact at its store path (acme's "not stored");
/// while acme's was live, beta's post with the key was answered
/// `idempotency_key_in_use` (an oracle); the audit log had two records with
/// the key as request id. Now the id is the service's, the key is per tenant.
#[test]
fn another_tenants_identical_idempotency_key_is_another_execution_and_plants_nothing() {
    let s = Service::start_with(
        "serve-idem-tenants",
        Options { server: "results_per_tenant = 1\n".into(), ..Options::default() },
    );
    let acme = s.access_token();
    let beta = s.sign_in_as("ops", BETA_SECRET)["access_token"].as_str().expect("token").to_owned();
    let key = "invoice-2026-0042";
    let planted = ok(&post(&s, &beta, Some(key), "art", json!("EVIL from beta"), 60_000));
    assert_eq!(report(&planted), "EVIL from beta");
    // Beta's first result is evicted (one result per tenant).
    ok(&post(&s, &beta, None, "empty", json!({}), 60_000));
    let mine = ok(&post(&s, &acme, Some(key), "art", json!("GOOD from acme"), 60_000));
    let id = mine["id"].as_str().expect("id").to_owned();
    assert_ne!(id, key, "the key must not be the execution id");
    assert_ne!(mine["id"], planted["id"]);
    assert_eq!(report(&mine), "GOOD from acme", "acme's artifact is stored at acme's own id");
    // No oracle: acme's keyed execution is live in the table, and beta's
    // identical key is simply beta's next execution.
    let again = ok(&post(&s, &beta, Some(key), "art", json!("beta again"), 60_000));
    assert_ne!(again["id"], mine["id"]);
    assert_eq!(report(&again), "beta again");
    // Control: acme's retry of its key within the window gets its first
    // result, and runs nothing.
    let retry = ok(&post(&s, &acme, Some(key), "art", json!("GOOD from acme"), 60_000));
    assert_eq!(retry, mine, "the retry answers the first result");
    let records = s.audit_records();
    let mut ids: Vec<&str> = records.iter().map(|r| r["request_id"].as_str().expect("request_id")).collect();
    assert_eq!(ids.len(), 4, "{records:#?}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "request ids repeat: {records:#?}");
    let keyed: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["idempotency_key"] == key)
        .map(|r| (r["tenant"].as_str().expect("tenant"), r["request_id"].as_str().expect("request_id")))
        .collect();
    let planted_id = planted["id"].as_str().expect("id");
    let again_id = again["id"].as_str().expect("id");
    assert_eq!(keyed, [("beta", planted_id), ("acme", id.as_str()), ("beta", again_id)], "{records:#?}");
}

/// Review s9 F6: a keyed execution SIGKILLed with the service left
/// `cordon-exec-KEY`, which no sweep removed, so every retry with the key
/// failed "Directory not empty". Its folder is named by the service's id
/// now, and the restart's first run sweeps it.
#[test]
fn a_keyed_execution_killed_with_the_service_is_retried_after_the_restart() {
    let s = Service::start("serve-idem-crash");
    let token = s.access_token();
    let key = "retry-me-1";
    let r = post(&s, &token, Some(key), "sleep", json!({"s": "30.125"}), 0);
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json()["id"].as_str().expect("id").to_owned();
    assert_ne!(id, key);
    let runs = super::runs_folder(s.dir.path());
    let folder = runs.join(format!("cordon-exec-{id}"));
    assert!(poll_until(Duration::from_secs(30), || folder.is_dir()), "the run's folder never appeared: {folder:?}");
    assert!(!runs.join(format!("cordon-exec-{key}")).exists());
    let s = s.restart();
    let token = s.access_token();
    let retry = ok(&post(&s, &token, Some(key), "art", json!("second try"), 60_000));
    assert_ne!(retry["id"], id.as_str());
    assert_eq!(report(&retry), "second try");
    let swept = poll_until(Duration::from_secs(10), || !folder.exists());
    assert!(swept, "the killed run's folder outlived the first run after the restart");
    let lost: Vec<_> = s.records_of(&id);
    assert_eq!(lost.len(), 1, "{:#?}", s.audit_records());
    assert_eq!(lost[0]["outcome"], "LOST", "{lost:#?}");
    assert_eq!(lost[0]["idempotency_key"], key, "{lost:#?}");
}
