//! `GET /v1/plugins`: the installed plugins with version, state and
//! whether they are enabled.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::extract::Authed;
use crate::state::AppState;

/// The plugin routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/plugins", get(list))
}

async fn list(State(state): State<AppState>, _: Authed) -> Result<Json<serde_json::Value>, ApiError> {
    let plugins = state.catalog.list().map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(serde_json::json!({ "plugins": plugins })))
}
