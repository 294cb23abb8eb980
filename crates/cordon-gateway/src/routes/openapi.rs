//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of every route. A test
//! checks it against the routes registered in this folder, both ways, and
//! validates real responses against its schemas.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// The OpenAPI route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(openapi))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
