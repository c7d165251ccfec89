//! Audit events (spec §14): catalog, events (newest first, cursor), one event.

use crate::audit;
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use instavm_api::{AuditCatalog, AuditEvent, AuditEventPage, AuditQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit/catalog", get(catalog))
        .route("/v1/audit/events", get(list))
        .route("/v1/audit/events/{event_id}", get(get_one))
}

async fn catalog(Principal(_user): Principal) -> Json<AuditCatalog> {
    Json(audit::catalog())
}

async fn list(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditEventPage>> {
    Ok(Json(audit::list(&state, &user, q).await?))
}

async fn get_one(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<AuditEvent>> {
    Ok(Json(audit::get(&state, &user, &id).await?))
}
