//! Credits and billing (spec §19), from metered usage (`metering.rs`), and the admin route
//! that sets a user's monthly allocation.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_int_id, ApiJson, ApiPath, ApiQuery};
use crate::metering;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use instavm_store::CreditAllocation;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/credits/allocation", get(allocation))
        .route("/v1/credits/usage", get(usage))
        .route("/v1/credits/summary", get(summary))
        .route("/v1/credits/check", get(check))
        .route("/v1/credits/rates", get(rates))
        .route("/v1/credits/usage/trends", get(trends))
        .route("/v1/credits/usage/forecasting", get(forecast))
        .route("/v1/admin/users/{user_id}/credits", put(set_allocation))
}

#[derive(Debug, Default, Deserialize)]
struct PeriodQuery {
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    usage_type: Option<String>,
    #[serde(default)]
    granularity: Option<String>,
    #[serde(default)]
    required_credits: Option<i64>,
}

async fn allocation(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Json<Value>> {
    Ok(Json(metering::allocation(&state, user.id).await?))
}

async fn usage(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> ApiResult<Json<Value>> {
    let period = q.period.unwrap_or_else(|| "current_month".into());
    let rows = metering::usage_rows(
        &state,
        user.id,
        &period,
        q.limit.unwrap_or(100),
        q.usage_type.as_deref().filter(|t| !t.is_empty()),
    )
    .await?;
    Ok(Json(rows))
}

async fn summary(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> ApiResult<Json<Value>> {
    let period = q.period.unwrap_or_else(|| "current_month".into());
    Ok(Json(metering::summary(&state, user.id, &period).await?))
}

async fn check(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> ApiResult<Json<Value>> {
    let usage_type = q
        .usage_type
        .ok_or_else(|| ApiError::Unprocessable("usage_type is required".into()))?;
    let required = q
        .required_credits
        .ok_or_else(|| ApiError::Unprocessable("required_credits is required".into()))?;
    Ok(Json(
        metering::check(&state, user.id, &usage_type, required).await?,
    ))
}

async fn rates(State(state): State<AppState>, Principal(_user): Principal) -> Json<Value> {
    Json(metering::rates(&state))
}

async fn trends(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> ApiResult<Json<Value>> {
    let period = q.period.unwrap_or_else(|| "30d".into());
    let granularity = q.granularity.unwrap_or_else(|| "daily".into());
    Ok(Json(
        metering::trends(&state, user.id, &period, &granularity).await?,
    ))
}

async fn forecast(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Json<Value>> {
    Ok(Json(metering::forecast(&state, user.id).await?))
}

#[derive(Debug, Deserialize)]
struct AllocationRequest {
    #[serde(default)]
    dollars: Option<f64>,
    #[serde(default)]
    browser_automation: Option<f64>,
}

/// `PUT /v1/admin/users/{id}/credits`: the user's monthly allocation (admin key only).
async fn set_allocation(
    State(state): State<AppState>,
    Principal(caller): Principal,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<AllocationRequest>,
) -> ApiResult<Json<Value>> {
    if !caller.is_admin {
        return Err(ApiError::Forbidden("this needs the admin API key".into()));
    }
    let user_id = parse_int_id(&id, "user id")?;
    let b = state.billing();
    let current = state.db(move |s| s.credit_allocation(user_id)).await?;
    let mut a = current.unwrap_or(CreditAllocation {
        dollars: b.default_dollars,
        browser_automation: b.default_browser_automation,
    });
    if let Some(d) = req.dollars {
        a.dollars = d;
    }
    if let Some(n) = req.browser_automation {
        a.browser_automation = n;
    }
    if !(a.dollars.is_finite()
        && a.dollars >= 0.0
        && a.browser_automation.is_finite()
        && a.browser_automation >= 0.0)
    {
        return Err(ApiError::Unprocessable(
            "allocations must be non-negative numbers".into(),
        ));
    }
    let exists = state.db(move |s| s.get_user(user_id)).await?.is_some();
    if !exists {
        return Err(ApiError::NotFound("user not found".into()));
    }
    let now = chrono::Utc::now();
    state
        .db(move |s| s.set_credit_allocation(user_id, a, now))
        .await?;
    Ok(Json(json!({
        "user_id": user_id,
        "dollars": a.dollars,
        "browser_automation": a.browser_automation,
    })))
}
