//! The one mapping from errors to HTTP responses.
//!
//! Every error body is `{"error": {"code": "...", "message": "..."}}`
//! (DESIGN.md). A 4xx says what was wrong; a 5xx says only that something
//! failed, with the request id, and the detail travels in a response
//! extension ([`Internal`]) that the logging middleware prints and strips.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered to the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_s: Option<u64>,
    bearer_error: Option<&'static str>,
    internal: Option<String>,
}

/// The detail of a 5xx, for the log only.
#[derive(Clone, Debug)]
pub struct Internal(pub String);

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after_s: None, bearer_error: None, internal: None }
    }

    /// 400: the request is malformed; `message` names the field.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 with an OAuth error code (`invalid_grant`, `unsupported_grant_type`, ...).
    pub fn oauth(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 `invalid_client` (RFC 6749 §5.2).
    pub fn invalid_client(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", message);
        e.bearer_error = Some("invalid_client");
        e
    }

    /// 401 with `WWW-Authenticate: Bearer error="invalid_token"` and the reason.
    pub fn unauthorized(reason: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", reason);
        e.bearer_error = Some("invalid_token");
        e
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the request conflicts with the resource's state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// 408: the request did not arrive in time.
    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 429 with `Retry-After`.
    pub fn too_many(message: impl Into<String>, retry_after_s: u64) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        e.retry_after_s = Some(retry_after_s.max(1));
        e
    }

    /// 503 with `Retry-After`: the queue is full or the service is draining.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after_s: u64) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after_s = Some(retry_after_s.max(1));
        e
    }

    /// 502: what another part of the service answered cannot be used
    /// (`--queue`: a stored result failed its signature check, which the
    /// caller of this logged).
    pub fn bad_gateway(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, code, message)
    }

    /// 500: `detail` is logged, never sent.
    pub fn internal(detail: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error");
        e.internal = Some(detail.into());
        e
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, Json(body)).into_response();
        let h = resp.headers_mut();
        if let Some(s) = self.retry_after_s {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(kind) = self.bearer_error {
            // The reason goes in error_description, minus the characters a
            // quoted-string cannot hold.
            let desc: String = self.message.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect();
            let value = format!("Bearer realm=\"cordon\", error=\"{kind}\", error_description=\"{desc}\"");
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if let Some(detail) = self.internal {
            resp.extensions_mut().insert(Internal(detail));
        }
        resp
    }
}
