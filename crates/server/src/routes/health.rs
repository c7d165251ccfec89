use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use instavm_api::Health;

/// 200 once sandboxes can be created, 503 with a `detail` before.
pub async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.require_ready()?;
    Ok(Json(Health {
        status: "ok".into(),
        runtime: state.runtime().name().into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}
