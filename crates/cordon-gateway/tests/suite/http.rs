//! The router in process (`oneshot`): the OpenAPI document against the
//! routes, both ways, and the HTTP-only answers.

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use cordon_gateway::{AppState, Config};
use cordon_testkit::Dir;
use tower::ServiceExt;

fn state(dir: &Dir) -> AppState {
    let text = format!(
        "[server]\nplugins = \"{}\"\naudit_log = \"{}\"\nworkers = 1\n",
        dir.create_dir("plugins").display(),
        dir.join("audit.jsonl").display()
    );
    let config = Config::parse(&text, Path::new("test.toml")).expect("config");
    let secrets = super::test_secrets();
    AppState::start(config, &secrets, vec![]).expect("state")
}

/// `(METHOD, path)` of every `.route(...)` in `src/routes/*.rs`.
fn registered_routes() -> BTreeSet<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("routes folder") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("route file");
        for part in text.split(".route(\"").skip(1) {
            let (path, rest) = part.split_once('"').expect("a quoted path");
            // `, get(handler).delete(other))`: the method calls up to the
            // closing parenthesis of `.route(`.
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let methods = &rest[..end];
            for m in ["get", "post", "put", "delete", "patch"] {
                if methods.contains(&format!(" {m}(")) || methods.contains(&format!(".{m}(")) {
                    out.insert((m.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    out
}

fn documented_routes(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn the_openapi_document_lists_exactly_the_registered_routes() {
    let doc: serde_json::Value = serde_json::from_str(cordon_gateway::routes::openapi::DOCUMENT).expect("valid JSON");
    let registered = registered_routes();
    let documented = documented_routes(&doc);
    assert!(registered.len() >= 11, "the route scan found too little: {registered:?}");
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&registered).collect();
    assert!(undocumented.is_empty(), "routes missing from openapi.json: {undocumented:?}");
    assert!(unrouted.is_empty(), "openapi.json documents routes that do not exist: {unrouted:?}");
    // Every `$ref` resolves.
    let text = cordon_gateway::routes::openapi::DOCUMENT;
    for r in text.split("\"$ref\": \"#/components/").skip(1) {
        let target = r.split('"').next().unwrap();
        let (kind, name) = target.split_once('/').unwrap();
        assert!(doc["components"][kind][name].is_object(), "dangling $ref {target}");
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_other_methods_are_405() {
    let dir = Dir::new("gw-openapi-live");
    let app = cordon_gateway::app(state(&dir));
    let doc: serde_json::Value = serde_json::from_str(cordon_gateway::routes::openapi::DOCUMENT).unwrap();
    for (method, path) in documented_routes(&doc) {
        let uri = path.replace("{id}", "01JTESTTESTTESTTESTTESTTES");
        let req = Request::builder().method(method.as_str()).uri(&uri).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(!text.contains("no such endpoint"), "{method} {path} fell through to the fallback");
    }
    let documented = documented_routes(&doc);
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for m in [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            if documented.contains(&(m.to_string(), path.clone())) {
                continue;
            }
            let uri = path.replace("{id}", "01JTESTTESTTESTTESTTESTTES");
            let req = Request::builder().method(m.clone()).uri(&uri).body(Body::empty()).unwrap();
            let status = app.clone().oneshot(req).await.unwrap().status();
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path} is not documented but answered {status}");
        }
    }
}

#[tokio::test]
async fn errors_have_the_documented_shape_and_a_request_id() {
    let dir = Dir::new("gw-errors");
    let app = cordon_gateway::app(state(&dir));
    let req = Request::builder().uri("/nowhere").body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.headers()["x-request-id"].len(), 26);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    assert!(v["error"]["message"].as_str().unwrap().contains("openapi.json"));
    // A form body to /v1/token without grant_type names the field.
    let req = Request::builder()
        .method("POST")
        .uri("/v1/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("client_id=x"))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value =
        serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "invalid_request");
    assert!(v["error"]["message"].as_str().unwrap().contains("grant_type"), "{v}");
}
