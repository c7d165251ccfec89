//! `GET /v1/users/me`, the usage report, and the admin-only user API.

use crate::auth::{display_prefix, generate_key, hash_key, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{Days, Utc};
use instavm_api::{CreateUserRequest, CreatedUser, UsageBreakdown, UsageBreakdownQuery, User};
use instavm_store::{NewApiKey, UserRecord};

pub fn user(rec: &UserRecord) -> User {
    User {
        id: rec.id,
        email: rec.email.clone(),
        name: rec.name.clone(),
        // Accounts are created by the operator, who vouches for them.
        is_verified: true,
        is_admin: rec.is_admin,
        created_at: rec.created_at,
    }
}

pub async fn me(Principal(rec): Principal) -> Json<User> {
    Json(user(&rec))
}

/// `GET /v1/users/me/usage-breakdown?days=&start_date=&end_date=`.
pub async fn usage_breakdown(
    State(state): State<AppState>,
    Principal(rec): Principal,
    ApiQuery(q): ApiQuery<UsageBreakdownQuery>,
) -> ApiResult<Json<UsageBreakdown>> {
    let days = q.days.unwrap_or(30);
    if !(1..=365).contains(&days) {
        return Err(ApiError::Unprocessable(format!(
            "days must be between 1 and 365, got {days}"
        )));
    }
    let now = Utc::now();
    let span = Days::new(u64::from(days - 1));
    let (first, last) = match (q.start_date, q.end_date) {
        (Some(s), Some(e)) => (s, e),
        (Some(s), None) => (s, now.date_naive()),
        (None, Some(e)) => (e.checked_sub_days(span).unwrap_or(e), e),
        (None, None) => {
            let today = now.date_naive();
            (today.checked_sub_days(span).unwrap_or(today), today)
        }
    };
    if first > last {
        return Err(ApiError::Unprocessable(format!(
            "start_date {first} is after end_date {last}"
        )));
    }
    if (last - first).num_days() >= 366 {
        return Err(ApiError::Unprocessable(
            "the period may span at most 366 days".into(),
        ));
    }
    // Metered usage (CPU seconds and GiB-seconds sampled from the VMs' cgroups).
    Ok(Json(
        crate::metering::breakdown(&state, rec.id, first, last).await?,
    ))
}

fn require_admin(rec: &UserRecord) -> ApiResult<()> {
    if rec.is_admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this needs the admin API key".into()))
    }
}

/// `POST /v1/admin/users` `{"email", "name"?}`: create a user and its first API key.
pub async fn admin_create(
    State(state): State<AppState>,
    Principal(caller): Principal,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    require_admin(&caller)?;
    let email = req.email.trim().to_owned();
    check_email(&email)?;
    let name = req
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.len() > 200) {
        return Err(ApiError::Unprocessable(
            "name is longer than 200 bytes".into(),
        ));
    }
    let key = generate_key();
    let (hash, prefix) = (hash_key(&key), display_prefix(&key));
    let (user_rec, key_rec) = state
        .db(move |s| {
            s.create_user_with_key(
                &email,
                name.as_deref(),
                &NewApiKey {
                    hash: &hash,
                    prefix: &prefix,
                    description: Some("first key"),
                },
                Utc::now(),
            )
        })
        .await?;
    tracing::info!(user = user_rec.id, "user created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: user(&user_rec),
            api_key: key,
            api_key_id: key_rec.id,
        }),
    ))
}

/// `GET /v1/admin/users`.
pub async fn admin_list(
    State(state): State<AppState>,
    Principal(caller): Principal,
) -> ApiResult<Json<Vec<User>>> {
    require_admin(&caller)?;
    let users = state.db(|s| s.list_users()).await?;
    Ok(Json(users.iter().map(user).collect()))
}

/// A plausible address: one `@`, something on both sides, a dot in the domain, no spaces.
fn check_email(email: &str) -> ApiResult<()> {
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if valid {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "{email:?} is not a valid email address"
        )))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails() {
        for ok in ["a@b.io", "first.last+tag@example.co.uk"] {
            assert!(super::check_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.io", "a@@b.io", "a b@c.io", "a@.io", "a@b.io.",
        ] {
            assert!(super::check_email(bad).is_err(), "{bad}");
        }
    }
}
