//! `POST /internal/dispatch`: an execution on behalf of a named tenant, for
//! the platform's own services. Authenticated by the internal secret alone.

use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, Dispatcher, RequestContext};
use crate::routes::executions::{submit_and_wait, ExecutionRequest};
use crate::state::AppState;

/// The dispatch route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/internal/dispatch", post(dispatch))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DispatchRequest {
    tenant: String,
    plugin: String,
    handler: String,
    #[serde(default)]
    input: Option<serde_json::Value>,
    #[serde(default)]
    wait_ms: Option<u64>,
}

async fn dispatch(
    State(state): State<AppState>,
    _: Dispatcher,
    ctx: RequestContext,
    ApiJson(req): ApiJson<DispatchRequest>,
) -> Result<Response, ApiError> {
    if !state.tenancy.exists(&req.tenant) {
        return Err(ApiError::bad_request(format!("tenant `{}` is not configured", req.tenant)));
    }
    state.tenancy.admit_request(&req.tenant)?;
    let caller = Caller { tenant: req.tenant, principal: "dispatch".into(), jti: "internal".into() };
    let exec = ExecutionRequest { plugin: req.plugin, handler: req.handler, input: req.input, wait_ms: req.wait_ms };
    submit_and_wait(&state, caller, ctx, exec).await
}
