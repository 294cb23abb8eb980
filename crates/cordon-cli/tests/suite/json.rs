//! The ExecutionResult printed by `--json` (DESIGN.md, "ExecutionResult").

use cordon_testkit::{each_mode, kernel_support, sandbox_modes};
use serde_json::Value;

use super::run_in;

#[track_caller]
fn number(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// A ULID: 26 characters of Crockford base32.
fn is_ulid(id: &str) -> bool {
    id.len() == 26 && id.chars().all(|c| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c)))
}

#[test]
fn result_has_the_documented_shape() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--json", "--", "sh", "-c", "echo out; echo err >&2"]).run();
        out.assert_success();
        let r = out.json();
        let ctx = format!("[{}]\n{out}", mode.as_str());

        assert_eq!(r["ok"], true, "{ctx}");
        let id = r["request_id"].as_str().unwrap_or_else(|| panic!("request_id is not a string {ctx}"));
        assert!(is_ulid(id), "request_id {id:?} is not 26 Crockford base32 characters {ctx}");
        assert_eq!(r["mode"], mode.as_str(), "{ctx}");
        assert_eq!(r["exit"], serde_json::json!({"code": 0}), "{ctx}");
        assert!(r["error"].is_null(), "{ctx}");
        assert!(r.get("data").is_some_and(Value::is_null), "data must be present and null {ctx}");

        let m = &r["metrics"];
        for field in ["wall_ms", "cpu_user_ms", "cpu_sys_ms", "peak_rss_kb"] {
            assert!(number(&m[field], field) >= 0.0, "metrics.{field} {ctx}");
        }
        assert!(number(&m["wall_ms"], "wall_ms") > 0.0, "{ctx}");
        assert!(number(&m["peak_rss_kb"], "peak_rss_kb") > 0.0, "{ctx}");

        assert_eq!(r["logs"]["dropped_bytes"], 0, "{ctx}");
        let lines = r["logs"]["lines"].as_array().unwrap_or_else(|| panic!("logs.lines is not an array {ctx}"));
        let mut seen: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                assert!(number(&l["ts_ms"], "ts_ms") >= 0.0, "{ctx}");
                (l["stream"].as_str().unwrap_or("?").to_owned(), l["text"].as_str().unwrap_or("?").to_owned())
            })
            .collect();
        seen.sort();
        assert_eq!(seen, [("stderr".into(), "err".into()), ("stdout".into(), "out".into())], "{ctx}");
    });
}

#[test]
fn every_run_gets_its_own_request_id() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let id = || run_in(mode).args(["--json", "--", "true"]).run().json()["request_id"].as_str().map(str::to_owned);
        let (a, b) = (id(), id());
        assert!(a.is_some() && a != b, "[{}] request ids {a:?} and {b:?}", mode.as_str());
    });
}
