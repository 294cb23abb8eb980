//! `POST /v1/executions`, `GET` and `DELETE /v1/executions/{id}`; the
//! submit-and-wait path is shared with `/internal/dispatch`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::auth::Caller;
use crate::backend::{Job, Status, SubmitError};
use crate::catalog::CatalogError;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authed, RequestContext};
use crate::state::AppState;

/// The execution routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/executions", post(create)).route("/v1/executions/{id}", get(show).delete(cancel))
}

/// The default `wait_ms`.
pub const DEFAULT_WAIT_MS: u64 = 30_000;

/// How long `DELETE` waits for a running execution to be killed and
/// recorded before answering with its status so far.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// The body of `POST /v1/executions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionRequest {
    /// `@scope/name`.
    pub plugin: String,
    /// The handler.
    pub handler: String,
    /// The input; default `{}`.
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    /// How long to wait for the result before answering 202.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

async fn create(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ctx: RequestContext,
    ApiJson(req): ApiJson<ExecutionRequest>,
) -> Result<Response, ApiError> {
    submit_and_wait(&state, caller, ctx, req).await
}

/// Verifies the plugin, accepts the execution and waits up to `wait_ms`
/// for it: 200 with the result, or 202 with its id and `Location`.
pub async fn submit_and_wait(
    state: &AppState,
    caller: Caller,
    ctx: RequestContext,
    req: ExecutionRequest,
) -> Result<Response, ApiError> {
    let max_wait = state.config.server.max_wait_ms;
    let wait_ms = req.wait_ms.unwrap_or(DEFAULT_WAIT_MS.min(max_wait));
    if wait_ms > max_wait {
        return Err(ApiError::bad_request(format!(
            "wait_ms = {wait_ms} exceeds the service's max_wait_ms of {max_wait}"
        )));
    }
    if req.handler.is_empty() {
        return Err(ApiError::bad_request("`handler` is empty"));
    }
    let input = serde_json::to_vec(req.input.as_ref().unwrap_or(&serde_json::json!({})))
        .map_err(|e| ApiError::internal(format!("cannot serialise the input: {e}")))?;
    cordon::trace::step("gateway: caller authenticated, body parsed");
    let plugin = state.catalog.resolve(&req.plugin).map_err(|e| match e {
        CatalogError::NotFound(_) => ApiError::not_found(e.to_string()),
        CatalogError::Disabled(_) => ApiError::conflict("plugin_disabled", e.to_string()),
        CatalogError::Invalid { .. } => ApiError::conflict("plugin_invalid", e.to_string()),
        _ => ApiError::internal(e.to_string()),
    })?;
    if !plugin.handlers.contains(&req.handler) {
        return Err(ApiError::bad_request(format!(
            "plugin `{}` has no handler `{}`; its handlers: {}",
            plugin.id,
            req.handler,
            plugin.handlers.join(", ")
        )));
    }
    cordon::trace::step("gateway: plugin verified");
    let max_concurrent = state.tenancy.max_concurrent(&caller.tenant).unwrap_or(0);
    // The id is always the service's: a caller's key names its request
    // within its tenant only, never a run folder, store path or record id.
    let job = Job {
        id: cordon::new_request_id(),
        idempotency_key: ctx.idempotency_key,
        tenant: caller.tenant.clone(),
        principal: caller.principal,
        jti: caller.jti,
        trace: cordon::audit::TraceParent::from_caller_or_new(ctx.traceparent.as_deref()),
        traceparent: ctx.traceparent,
        http_request_id: ctx.request_id,
        plugin,
        handler: req.handler,
        input,
    };
    let id = state.backend.submit(job, max_concurrent).await.map_err(|e| match e {
        SubmitError::QueueFull(_) => ApiError::unavailable("queue_full", format!("{e}; retry later"), 1),
        SubmitError::Draining => ApiError::unavailable("shutting_down", e.to_string(), 5),
        SubmitError::TenantBusy { .. } | SubmitError::TenantQueueFull { .. } => ApiError::too_many(e.to_string(), 1),
        SubmitError::Unavailable(_) => {
            ApiError::unavailable("queue_unavailable", format!("{e}; retry with the same Idempotency-Key"), 1)
        }
        SubmitError::SpawnerGone(_) => ApiError::unavailable("sandboxes_unavailable", e.to_string(), 30),
        SubmitError::Audit(_) => ApiError::internal(e.to_string()),
    })?;
    let status = state.backend.wait(&caller.tenant, &id, Duration::from_millis(wait_ms)).await;
    cordon::trace::step("gateway: waiter woken");
    match status {
        Some(Status::Done(result)) => Ok(Json(result.as_ref().clone()).into_response()),
        Some(Status::Refused(_)) => Err(refused(&id)),
        other => {
            let name = other.map_or("queued", |s| s.name());
            let mut resp = (StatusCode::ACCEPTED, Json(serde_json::json!({"id": id, "status": name}))).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/v1/executions/{id}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
    }
}

fn status_body(id: &str, status: &Status) -> serde_json::Value {
    let mut body = serde_json::json!({"id": id, "status": status.name()});
    if let Status::Done(result) = status {
        body["result"] = result.as_ref().clone();
    }
    body
}

/// A stored result the gateway does not answer (the backend logged why).
fn refused(id: &str) -> ApiError {
    ApiError::bad_gateway(
        "result_refused",
        format!("the stored result of execution `{id}` failed the service's signature check and is not answered; the service log says why"),
    )
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no execution `{id}`"))
}

async fn show(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = state.backend.status(&caller.tenant, &id).await.ok_or_else(|| not_found(&id))?;
    if let Status::Refused(_) = status {
        return Err(refused(&id));
    }
    Ok(Json(status_body(&id, &status)))
}

async fn cancel(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = state.backend.cancel(&caller.tenant, &id).await.ok_or_else(|| not_found(&id))?;
    let status = match status {
        Status::Done(_) | Status::Refused(_) => status,
        _ => state.backend.wait(&caller.tenant, &id, CANCEL_WAIT).await.ok_or_else(|| not_found(&id))?,
    };
    if let Status::Refused(_) = status {
        return Err(refused(&id));
    }
    Ok(Json(status_body(&id, &status)))
}
