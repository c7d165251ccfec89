//! The HTTP surface: every route of the API and the middleware around them.

mod api_keys;
mod audit;
mod credits;
mod egress;
mod exec;
mod files;
mod health;
mod pty;
mod sessions;
mod shares;
mod snapshots;
mod ssh_keys;
mod tapes;
mod user_limits;
mod users;
mod vault;
pub(crate) mod vms;
mod volumes;
mod webhooks;
mod workloads;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use axum::Router;
use instavm_api::REQUEST_ID_HEADER;
use std::time::Duration;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// The whole API as a router. Trailing slashes are never redirected: a path with one is only
/// served where the spec calls it that way (`/v1/api-keys/`).
pub fn app(state: AppState) -> Router {
    let limits = state.limits().clone();
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(crate::metrics::serve))
        // Sessions (spec §1).
        .route("/v1/sessions/session", post(sessions::start))
        .route("/v1/sessions/session/{session_id}", get(sessions::info))
        .route("/v1/sessions/status/{session_id}", get(sessions::status))
        .route("/v1/sessions/usage/{session_id}", get(sessions::usage))
        .route("/v1/sessions/app-url/{session_id}", get(sessions::app_url))
        .route("/v1/sessions/sandboxes", get(sessions::list_sandboxes))
        .route("/kill", post(sessions::kill))
        // Execution.
        .route("/execute", post(exec::execute))
        .route("/execute_async", post(exec::execute_async))
        .route("/v1/executions/{task_id}", get(exec::get_execution))
        // Files.
        .route(
            "/upload",
            post(files::upload).layer(DefaultBodyLimit::max(limits.max_upload_bytes)),
        )
        .route("/download", post(files::download))
        // Accounts (spec §3, §13, §20) and the self-hosting admin API.
        .route("/v1/users/me", get(users::me))
        .route("/v1/users/me/usage-breakdown", get(users::usage_breakdown))
        .route(
            "/v1/admin/users",
            get(users::admin_list).post(users::admin_create),
        )
        .route(
            "/v1/api-keys",
            get(api_keys::list).post(api_keys::create),
        )
        .route(
            "/v1/api-keys/",
            get(api_keys::list).post(api_keys::create),
        )
        .route(
            "/v1/api-keys/{key_id}",
            get(api_keys::get)
                .patch(api_keys::update)
                .delete(api_keys::delete),
        )
        .route("/v1/ssh-keys", get(ssh_keys::list).post(ssh_keys::add))
        .route("/v1/ssh-keys/{key_id}", axum::routing::delete(ssh_keys::delete))
        // Terminals (spec §12), both scopes.
        .merge(pty::router())
        // VMs (spec §6) and snapshots (§7).
        .merge(vms::router())
        .merge(snapshots::router())
        // Shares (spec §9).
        .merge(shares::router())
        // Audit events (spec §14).
        .merge(audit::router())
        // Volumes (§16) and their mounts in VMs (§6.12 to §6.14).
        .merge(volumes::router(limits.max_upload_bytes))
        // Egress policy (spec §2).
        .merge(egress::router())
        // Workloads: deployed cron and job manifests (ours, docs/deploy.md).
        .merge(workloads::router())
        // Webhooks (spec §15).
        .merge(webhooks::router())
        // Credits and billing (spec §19).
        .merge(credits::router())
        // Tapes (spec §17).
        .merge(tapes::router())
        // Per-user quota overrides (ours, docs/quotas.md).
        .merge(user_limits::router())
        // Secrets vaults (spec §4).
        .merge(vault::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost, so the request id is set: who acts, for the audit events of the request.
        .layer(axum::middleware::from_fn(crate::audit::scope_request))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get(REQUEST_ID_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The path only: no query string and no headers, so no key is ever logged.
                    tracing::info_span!("request", id, method = %req.method(), path = req.uri().path())
                })
                .on_request(())
                .on_response(
                    |res: &axum::response::Response, latency: Duration, _span: &Span| {
                        tracing::info!(
                            status = res.status().as_u16(),
                            latency_us = latency.as_micros() as u64,
                            "answered"
                        );
                    },
                )
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not Found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
