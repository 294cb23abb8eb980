//! `POST /v1/token` (client credentials, refresh rotation) and
//! `POST /v1/token/revoke` (RFC 7009).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use crate::auth::{Refresh, TokenResponse};
use crate::error::ApiError;
use crate::extract::{FormOrJson, RequestContext};
use crate::state::AppState;

/// The token routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/token", post(token)).route("/v1/token/revoke", post(revoke))
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

fn no_store(body: TokenResponse) -> Response {
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn token(
    State(state): State<AppState>,
    ctx: RequestContext,
    FormOrJson(req): FormOrJson<TokenRequest>,
) -> Result<Response, ApiError> {
    let missing = |field: &str| ApiError::oauth("invalid_request", format!("`{field}` is required"));
    match req.grant_type.as_deref() {
        None => Err(missing("grant_type")),
        Some("client_credentials") => {
            let id = req.client_id.ok_or_else(|| missing("client_id"))?;
            let secret = req.client_secret.ok_or_else(|| missing("client_secret"))?;
            let Some(tenant) = state.keys.check_client(&id, &secret) else {
                state.metrics.auth_failure();
                return Err(ApiError::invalid_client("unknown client_id or wrong client_secret"));
            };
            // Each grant is a request of the client's tenant, spent once the
            // secret is checked (a stranger cannot spend a tenant's room):
            // a flood of grants gets 429, like any other request.
            state.tenancy.admit_request(&tenant)?;
            let pair =
                state.refresh.start(&state.keys, &tenant, &format!("client:{id}"), state.config.server.refresh_ttl_s);
            Ok(no_store(pair))
        }
        Some("refresh_token") => {
            let token = req.refresh_token.ok_or_else(|| missing("refresh_token"))?;
            // A refresh spends its family's tenant's room; an unknown token
            // none (the exchange below refuses it without keeping anything).
            if let Some(tenant) = state.refresh.tenant_of(&token) {
                state.tenancy.admit_request(&tenant)?;
            }
            match state.refresh.refresh(&state.keys, &token) {
                Refresh::Rotated(pair) => Ok(no_store(pair)),
                Refresh::Invalid(reason) => Err(ApiError::oauth("invalid_grant", reason)),
                Refresh::ReuseDetected { family, tenant, principal } => {
                    state.metrics.refresh_reuse();
                    record_reuse(&state, &ctx, &family, &tenant, &principal).await?;
                    Err(ApiError::oauth(
                        "invalid_grant",
                        "this refresh token was already used; its session and every token issued in it are revoked",
                    ))
                }
            }
        }
        Some(other) => Err(ApiError::oauth(
            "unsupported_grant_type",
            format!("grant_type `{other}` is not supported; use client_credentials or refresh_token"),
        )),
    }
}

/// The one audit record of a family revoked for reuse.
async fn record_reuse(
    state: &AppState,
    ctx: &RequestContext,
    family: &str,
    tenant: &str,
    principal: &str,
) -> Result<(), ApiError> {
    use cordon::audit::{Ending, ErrorCode, Subject, TraceParent};
    let subject = Subject {
        trace_id: TraceParent::from_caller_or_new(ctx.traceparent.as_deref()).trace_id_hex(),
        tenant: Some(tenant.to_owned()),
        principal: Some(principal.to_owned()),
        token_jti: Some(format!("family:{family}")),
        traceparent: ctx.traceparent.clone(),
        ..Subject::default()
    };
    let ending = Ending {
        // No run: the record's mode stays empty.
        mode: cordon::Mode::Container,
        outcome: ErrorCode::RefreshReuse.into(),
        error: Some(format!(
            "a rotated refresh token of family {family} was presented after the grace window; the family and its access tokens were revoked"
        )),
        duration_ms: 0.0,
        cpu_ms: None,
        peak_rss_kb: None,
        network: None,
        policy_digest: String::new(),
    };
    state
        .audit
        .record_unstarted(&subject, &ctx.request_id, None, ending, &[])
        .await
        .map(drop)
        .map_err(|e| ApiError::internal(format!("cannot append the refresh-reuse record: {}", e.render())))
}

#[derive(Deserialize)]
struct RevokeRequest {
    token: Option<String>,
}

async fn revoke(
    State(state): State<AppState>,
    FormOrJson(req): FormOrJson<RevokeRequest>,
) -> Result<StatusCode, ApiError> {
    let token = req.token.ok_or_else(|| ApiError::oauth("invalid_request", "`token` is required"))?;
    // RFC 7009 §2.2: 200 whether or not the token was known.
    state.refresh.revoke(&state.keys, &token);
    Ok(StatusCode::OK)
}
