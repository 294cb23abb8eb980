//! Executions against the running service: sync and async results, the
//! audit record's attribution, tenant isolation, cancel, quotas, size and
//! time limits, and the OpenAPI schemas of real responses.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cordon_testkit::{poll_until, processes_mentioning};
use serde_json::json;

use super::{http, Options, Resp, Service, BETA_SECRET, PLUGIN, SERVICE_TOKEN};
use crate::suite::unique_sleep_marker;

/// Checks `value` against schema `name` of the service's OpenAPI document:
/// required properties, JSON types and enums, recursively through `$ref`s
/// and object properties. Enough to catch a response drifting from the
/// document.
#[track_caller]
fn assert_schema(doc: &serde_json::Value, name: &str, value: &serde_json::Value) {
    fn check(
        doc: &serde_json::Value,
        schema: &serde_json::Value,
        v: &serde_json::Value,
        at: &str,
    ) -> Result<(), String> {
        if let Some(r) = schema.get("$ref").and_then(|r| r.as_str()) {
            let name = r.trim_start_matches("#/components/schemas/");
            return check(doc, &doc["components"]["schemas"][name], v, at);
        }
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                serde_json::Value::String(s) => vec![s.as_str()],
                serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
                _ => vec![],
            };
            let actual = match v {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "boolean",
                serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
                serde_json::Value::Number(_) => "number",
                serde_json::Value::String(_) => "string",
                serde_json::Value::Array(_) => "array",
                serde_json::Value::Object(_) => "object",
            };
            let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
            if !ok {
                return Err(format!("{at}: {actual} where the document says {types:?}"));
            }
        }
        if let Some(e) = schema.get("enum").and_then(|e| e.as_array()) {
            if !e.contains(v) {
                return Err(format!("{at}: {v} is not one of {e:?}"));
            }
        }
        if v.is_null() {
            return Ok(());
        }
        for req in schema.get("required").and_then(|r| r.as_array()).into_iter().flatten() {
            let k = req.as_str().unwrap_or_default();
            if v.get(k).is_none() {
                return Err(format!("{at}: required property `{k}` is missing"));
            }
        }
        for (k, sub) in schema.get("properties").and_then(|p| p.as_object()).into_iter().flatten() {
            if let Some(x) = v.get(k) {
                check(doc, sub, x, &format!("{at}.{k}"))?;
            }
        }
        Ok(())
    }
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name} in the document");
    if let Err(e) = check(doc, schema, value, name) {
        panic!("response does not match the OpenAPI schema: {e}\n{value:#}");
    }
}

fn openapi(s: &Service) -> serde_json::Value {
    let r = http(s.addr, "GET", "/v1/openapi.json", &[], b"");
    assert_eq!(r.status, 200);
    r.json()
}

#[test]
fn a_sync_execution_returns_its_result_and_leaves_one_attributed_record() {
    let s = Service::start("serve-sync");
    let doc = openapi(&s);
    let pair = s.sign_in();
    assert_schema(&doc, "TokenResponse", &pair);
    let at = pair["access_token"].as_str().unwrap();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = json!({"plugin": PLUGIN, "handler": "echo", "input": {"hello": "world"}});
    let r = http(
        s.addr,
        "POST",
        "/v1/executions",
        &[
            ("Authorization", &format!("Bearer {at}")),
            ("Content-Type", "application/json"),
            ("traceparent", traceparent),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", s.log());
    let v = r.json();
    assert_schema(&doc, "ExecutionResult", &v);
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["data"], json!({"hello": "world"}));
    assert_eq!(v["mode"], "container", "container is the default where the host supports it");
    let id = v["id"].as_str().unwrap();
    assert_eq!(v["request_id"], id);
    // The audit record: exactly one, attributed.
    let records = s.records_of(id);
    assert_eq!(records.len(), 1, "{records:#?}");
    let rec = &records[0];
    let claims: serde_json::Value = {
        use base64::Engine;
        let part = at.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!(rec["outcome"], "ok");
    assert_eq!(rec["tenant"], "acme");
    assert_eq!(rec["principal"], "client:ci");
    assert_eq!(rec["token_jti"], claims["jti"]);
    assert_eq!(rec["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(rec["plugin"], PLUGIN);
    assert_eq!(rec["plugin_version"], "2.0.0");
    // And the id can be read back.
    let g = s.get(&format!("/v1/executions/{id}"), at);
    assert_eq!(g.status, 200, "{g:?}");
    let g = g.json();
    assert_schema(&doc, "ExecutionStatus", &g);
    assert_eq!(g["status"], "done");
    assert_eq!(g["result"]["data"], json!({"hello": "world"}));
    // Service tokens are attributed to their name.
    let r = s.execute(SERVICE_TOKEN, "empty", json!({}), None);
    assert_eq!(r.status, 200, "{r:?}");
    let rec = &s.records_of(r.json()["id"].as_str().unwrap())[0];
    assert_eq!((rec["principal"].as_str(), rec["token_jti"].as_str()), (Some("token:deploy"), Some("static:deploy")));
    // The plugin list and readiness match their schemas too.
    assert_schema(&doc, "PluginList", &s.get("/v1/plugins", at).json());
    assert_schema(&doc, "Readiness", &http(s.addr, "GET", "/readyz", &[], b"").json());
    assert_schema(&doc, "Error", &s.get("/v1/executions/nope", at).json());
    // Metrics count it.
    let m = http(s.addr, "GET", "/metrics", &[], b"").body;
    assert!(m.contains("cordon_executions_total{tenant=\"acme\",outcome=\"ok\"} 2"), "{m}");
}

#[test]
fn another_tenants_execution_is_404() {
    let s = Service::start("serve-tenants");
    let a = s.access_token();
    let b = s.sign_in_as("ops", BETA_SECRET)["access_token"].as_str().unwrap().to_owned();
    let r = s.execute(&a, "empty", json!({}), None);
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_owned();
    // Control: the owner sees it.
    assert_eq!(s.get(&format!("/v1/executions/{id}"), &a).status, 200);
    let other = s.get(&format!("/v1/executions/{id}"), &b);
    assert_eq!((other.status, other.error().0.as_str()), (404, "not_found"), "{other:?}");
    assert_eq!(s.delete(&format!("/v1/executions/{id}"), &b).status, 404);
    // The same answer as for an id that never existed.
    assert_eq!(
        s.get("/v1/executions/01ZZZZZZZZZZZZZZZZZZZZZZZZ", &b).error(),
        other.error_with_id("01ZZZZZZZZZZZZZZZZZZZZZZZZ", &id)
    );
}

impl Resp {
    /// The error with `id` replaced by `with`, to compare two 404s.
    fn error_with_id(&self, with: &str, id: &str) -> (String, String) {
        let (c, m) = self.error();
        (c, m.replace(id, with))
    }
}

#[test]
fn async_execution_polls_and_cancel_kills_the_sandbox_and_records_cancelled() {
    let s = Service::start("serve-cancel");
    let at = s.access_token();
    let marker = unique_sleep_marker();
    let r = s.execute(&at, "sleep", json!({"s": marker}), Some(0));
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(r.header("location"), Some(format!("/v1/executions/{id}").as_str()));
    let running = poll_until(Duration::from_secs(30), || {
        s.get(&format!("/v1/executions/{id}"), &at).json()["status"] == "running"
            && !processes_mentioning(&marker).is_empty()
    });
    assert!(running, "the execution never ran: {:?}", s.get(&format!("/v1/executions/{id}"), &at));
    let d = s.delete(&format!("/v1/executions/{id}"), &at);
    assert_eq!(d.status, 200, "{d:?}");
    let d = d.json();
    assert_eq!(d["status"], "done", "{d}");
    assert_eq!(d["result"]["error"]["code"], "CANCELLED", "{d}");
    assert!(
        poll_until(Duration::from_secs(10), || processes_mentioning(&marker).is_empty()),
        "the cancelled sandbox still runs: {:?}",
        processes_mentioning(&marker)
    );
    let records = s.records_of(&id);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "CANCELLED");
    // Cancelling a finished execution changes nothing.
    let again = s.delete(&format!("/v1/executions/{id}"), &at);
    assert_eq!(again.json()["result"]["error"]["code"], "CANCELLED");
    assert_eq!(s.records_of(&id).len(), 1);
}

#[test]
fn over_the_rate_the_tenant_gets_429_with_retry_after() {
    let opts = Options { acme: "max_concurrent = 8\nrate_per_sec = 2\n".into(), ..Options::default() };
    let s = Service::start_with("serve-rate", opts);
    let statuses: Vec<Resp> = (0..4).map(|_| s.get("/v1/plugins", SERVICE_TOKEN)).collect();
    assert_eq!(statuses[0].status, 200, "control: the first request passes");
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| panic!("no 429 in 4 requests at 2/s: {statuses:?}"));
    let retry: u64 = limited.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!(retry >= 1, "{limited:?}");
    assert_eq!(limited.error().0, "rate_limited");
    // Another tenant is not affected.
    let b = s.sign_in_as("ops", BETA_SECRET)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/v1/plugins", &b).status, 200);
}

#[test]
fn over_max_concurrent_the_tenant_gets_429_and_a_full_queue_503() {
    let opts = Options {
        server: "workers = 1\nqueue = 1\n".into(),
        acme: "max_concurrent = 2\nrate_per_sec = 1000\n".into(),
        ..Options::default()
    };
    let s = Service::start_with("serve-quota", opts);
    let at = s.access_token();
    let b = s.sign_in_as("ops", BETA_SECRET)["access_token"].as_str().unwrap().to_owned();
    let marker = unique_sleep_marker();
    let first = s.execute(&at, "sleep", json!({"s": marker}), Some(0));
    assert_eq!(first.status, 202, "{first:?}");
    let first_id = first.json()["id"].as_str().unwrap().to_owned();
    assert!(poll_until(Duration::from_secs(30), || s.get(&format!("/v1/executions/{first_id}"), &at).json()["status"]
        == "running"));
    let second = s.execute(&at, "sleep", json!({"s": marker}), Some(0));
    assert_eq!(second.status, 202, "queued: {second:?}");
    // acme has 2 queued or running: its max_concurrent.
    let third = s.execute(&at, "empty", json!({}), Some(0));
    assert_eq!(third.status, 429, "{third:?}");
    assert!(third.header("retry-after").is_some());
    // beta is within its quota, but the one worker is busy and the queue
    // (1) is full: 503.
    let full = s.execute(&b, "empty", json!({}), Some(0));
    assert_eq!(full.status, 503, "{full:?}");
    assert_eq!(full.error().0, "queue_full");
    assert!(full.header("retry-after").is_some());
    // Refused requests were never accepted: no record, no marker.
    let second_id = second.json()["id"].as_str().unwrap().to_owned();
    for id in [&first_id, &second_id] {
        assert_eq!(s.delete(&format!("/v1/executions/{id}"), &at).json()["result"]["error"]["code"], "CANCELLED");
    }
    let records = s.audit_records();
    assert_eq!(records.len(), 2, "only the two accepted executions are recorded: {records:#?}");
    // Control: with room again, beta runs.
    assert_eq!(s.execute(&b, "empty", json!({}), None).status, 200);
}

#[test]
fn oversized_bodies_get_413_and_oversized_heads_431() {
    let s = Service::start_with(
        "serve-sizes",
        Options { server: "max_body_bytes = 2048\nmax_header_bytes = 8192\n".into(), ..Options::default() },
    );
    let at = s.access_token();
    let small = s.execute(&at, "echo", json!({"pad": "x".repeat(100)}), None);
    assert_eq!(small.status, 200, "control: {small:?}");
    let big = s.execute(&at, "echo", json!({"pad": "x".repeat(4096)}), None);
    assert_eq!(big.status, 413, "{big:?}");
    assert_eq!(big.error().0, "payload_too_large");
    let ok = http(s.addr, "GET", "/healthz", &[("X-Pad", &"p".repeat(2000))], b"");
    assert_eq!(ok.status, 200, "control: {ok:?}");
    let huge = http(s.addr, "GET", "/healthz", &[("X-Pad", &"p".repeat(16 * 1024))], b"");
    assert_eq!(huge.status, 431, "{huge:?}");
}

#[test]
fn a_slow_header_client_is_cut_off() {
    let s = Service::start_with(
        "serve-slowloris",
        Options { server: "header_timeout_ms = 300\n".into(), ..Options::default() },
    );
    // Control: a whole request on a raw socket is answered.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", s.addr).as_bytes()).unwrap();
    assert_eq!(super::read_response(&mut c).status, 200);
    // A client that sends part of its head and stalls loses its connection.
    let mut slow = TcpStream::connect(s.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    let mut got = vec![];
    let end = slow.read_to_end(&mut got);
    assert!(end.is_ok(), "the connection was not closed by the service within 30 s: {end:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains(" 200 "), "a stalled head must not be served: {text}");
    // The same for an idle connection that never sends anything.
    let mut idle = TcpStream::connect(s.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert!(idle.read_to_end(&mut vec![]).is_ok(), "an idle connection was kept open");
    // `/metrics` counts both under the limit that closed them.
    let closed = || {
        let text = http(s.addr, "GET", "/metrics", &[], b"").body;
        let key = "cordon_connections_closed_total{limit=\"header_timeout_ms\"} ";
        text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    assert!(poll_until(Duration::from_secs(30), || closed() >= 2), "closed by header_timeout_ms: {}", closed());
}

#[test]
fn bad_requests_name_the_problem_and_disabled_plugins_are_refused_at_once() {
    let s = Service::start("serve-bad-requests");
    let at = s.access_token();
    let post = |body: &str| {
        http(
            s.addr,
            "POST",
            "/v1/executions",
            &[("Authorization", &format!("Bearer {at}")), ("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    let r = post("{not json");
    assert_eq!(r.status, 400, "{r:?}");
    let r = post(&json!({"plugin": PLUGIN}).to_string());
    assert_eq!(r.status, 400);
    assert!(r.error().1.contains("handler"), "{r:?}");
    let r = post(&json!({"plugin": PLUGIN, "handler": "empty", "wait": 5}).to_string());
    assert_eq!(r.status, 400);
    assert!(r.error().1.contains("unknown field `wait`"), "{r:?}");
    let r = post(&json!({"plugin": PLUGIN, "handler": "empty", "wait_ms": 10_000_000}).to_string());
    assert_eq!(r.status, 400);
    assert!(r.error().1.contains("max_wait_ms"), "{r:?}");
    let r = post(&json!({"plugin": "@test/none", "handler": "empty"}).to_string());
    assert_eq!(r.status, 404, "{r:?}");
    let r = post(&json!({"plugin": PLUGIN, "handler": "nope"}).to_string());
    assert_eq!(r.status, 400);
    assert!(r.error().1.contains("no handler `nope`; its handlers: art, echo, empty, nap, sleep"), "{r:?}");
    let r = post(&json!({"plugin": "@test/off", "handler": "empty"}).to_string());
    assert_eq!((r.status, r.error().0.as_str()), (409, "plugin_disabled"), "{r:?}");
    let plugins = s.get("/v1/plugins", &at).json();
    let off = plugins["plugins"].as_array().unwrap().iter().find(|p| p["id"] == "@test/off").cloned().unwrap();
    assert_eq!((off["enabled"].as_bool(), off["state"].as_str()), (Some(false), Some("unsigned")));
    assert_eq!(s.get("/nowhere", &at).status, 404);
    // None of these was accepted, so none left a record.
    assert!(s.audit_records().is_empty(), "{:#?}", s.audit_records());
    // An input the handler fails on is accepted and recorded: one record.
    let r = post(&json!({"plugin": PLUGIN, "handler": "sleep", "input": {"s": "not-a-number"}}).to_string());
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["ok"], false);
    assert_eq!(s.audit_records().len(), 1);
}
