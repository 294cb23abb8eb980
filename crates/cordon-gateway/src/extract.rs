//! Extractors: JSON and form bodies whose rejections become [`ApiError`]s,
//! the authenticated caller (with the tenant's rate limit), the dispatch
//! secret, and the request's id and trace.

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

fn body_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("the request body exceeds the service's max_body_bytes")
    } else {
        ApiError::bad_request(text)
    }
}

/// A JSON body; any rejection (wrong content type, bad JSON, a missing or
/// mistyped field, too large) is an [`ApiError`] naming the problem.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    body_error(e.status(), e.body_text())
}

fn form_rejection(e: FormRejection) -> ApiError {
    body_error(e.status(), e.body_text())
}

/// A body that is either `application/x-www-form-urlencoded` (OAuth's
/// usual form) or JSON.
pub struct FormOrJson<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequest<S> for FormOrJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if json {
            ApiJson::<T>::from_request(req, state).await.map(|ApiJson(v)| FormOrJson(v))
        } else {
            axum::Form::<T>::from_request(req, state).await.map(|axum::Form(v)| FormOrJson(v)).map_err(form_rejection)
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("no Authorization header; send `Authorization: Bearer <access token>`")
    })?;
    let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized("the Authorization header is not `Bearer <token>`"));
    }
    Ok(token.trim())
}

/// The authenticated caller of a `/v1` endpoint. Extracting it also spends
/// one token of the tenant's rate bucket (429 with `Retry-After` when
/// empty).
pub struct Authed(pub Caller);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let caller = state.keys.authenticate(token).map_err(|e| {
            state.metrics.auth_failure();
            ApiError::unauthorized(e.0)
        })?;
        state.tenancy.admit_request(&caller.tenant)?;
        Ok(Authed(caller))
    }
}

/// The internal dispatch secret as bearer; a JWT or service token is
/// refused.
pub struct Dispatcher;

impl FromRequestParts<AppState> for Dispatcher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if state.keys.is_internal_secret(token) {
            Ok(Dispatcher)
        } else {
            state.metrics.auth_failure();
            Err(ApiError::unauthorized("/internal/dispatch accepts only the internal secret, never an access token"))
        }
    }
}

/// The request's id (set by the middleware, echoed in `x-request-id`) and
/// the caller's W3C `traceparent`, if valid.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The id.
    pub request_id: String,
    /// The `traceparent` header, when it parses.
    pub traceparent: Option<String>,
    /// The `Idempotency-Key` header: the caller's name for the request,
    /// scoped to its tenant, so that sending the same request again
    /// returns the first one's result. Never the execution's id.
    pub idempotency_key: Option<String>,
}

/// The header carrying the caller's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let request_id = parts
            .extensions
            .get::<crate::server::RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(cordon::new_request_id);
        let traceparent = parts
            .headers
            .get(cordon::audit::TRACEPARENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.parse::<cordon::audit::TraceParent>().is_ok())
            .map(str::to_owned);
        let idempotency_key = match parts.headers.get(IDEMPOTENCY_KEY_HEADER) {
            None => None,
            Some(v) => match v.to_str() {
                Ok(k) if crate::queue::is_token(k) => Some(k.to_owned()),
                _ => {
                    return Err(ApiError::bad_request(
                        "the Idempotency-Key header must be 1-128 of A-Z a-z 0-9 _ - (a UUID works)",
                    ))
                }
            },
        };
        Ok(RequestContext { request_id, traceparent, idempotency_key })
    }
}
