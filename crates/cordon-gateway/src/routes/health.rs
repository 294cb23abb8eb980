//! `GET /healthz` (the process answers) and `GET /readyz` (it can take
//! executions: workers warm, audit log writable, plugin folder readable;
//! not while draining). Under `--insecure-dev`, `/readyz` carries the
//! warnings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

/// The health routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let pool = state.backend.readiness();
    let log = state.audit.path().to_owned();
    let store = tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new().append(true).open(&log).map(|_| ()).map_err(|e| format!("{}: {e}", log.display()))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let plugins = state.catalog.check().map_err(|e| e.to_string());
    let ready = pool.warm && store.is_ok() && plugins.is_ok();
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "pool": pool,
        "store": match &store { Ok(()) => serde_json::json!({"writable": true}), Err(e) => serde_json::json!({"writable": false, "error": e}) },
        "plugins": match &plugins { Ok(()) => serde_json::json!({"readable": true}), Err(e) => serde_json::json!({"readable": false, "error": e}) },
    });
    if !state.insecure.is_empty() {
        body["warnings"] =
            serde_json::json!(state.insecure.iter().map(|w| format!("insecure-dev: {w}")).collect::<Vec<_>>());
    }
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}
