//! Prometheus metrics (`GET /metrics`, admin key): requests and their latency by route, VMs by
//! state, sandbox start times, share proxy outcomes, audit events written.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    vms: Family<StateLabels, Gauge>,
    sandbox_start: Family<KindLabels, Histogram, fn() -> Histogram>,
    share_requests: Family<OutcomeLabels, Counter>,
    events: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("instavm");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let vms = Family::<StateLabels, Gauge>::default();
        let sandbox_start: Family<KindLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let share_requests = Family::<OutcomeLabels, Counter>::default();
        let events = Gauge::default();
        registry.register(
            "http_requests",
            "API requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "API request latency, by route",
            latency.clone(),
        );
        registry.register("vms", "VM records by state", vms.clone());
        registry.register(
            "sandbox_start_duration_seconds",
            "Time for the runtime to create a sandbox (kind: fresh or from_snapshot)",
            sandbox_start.clone(),
        );
        registry.register(
            "share_requests",
            "Requests to share URLs, by outcome (forwarded, or the refusal's status)",
            share_requests.clone(),
        );
        registry.register("audit_events", "Audit events written", events.clone());
        Metrics {
            registry,
            requests,
            latency,
            vms,
            sandbox_start,
            share_requests,
            events,
        }
    }
}

impl Metrics {
    pub fn observe_sandbox_start(&self, took: Duration, from_snapshot: bool) {
        let kind = if from_snapshot {
            "from_snapshot"
        } else {
            "fresh"
        };
        self.sandbox_start
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(took.as_secs_f64());
    }

    pub fn count_share_request(&self, outcome: &str) {
        self.share_requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }
}

/// Middleware: count and time every request by its route pattern (never the raw path, which
/// carries ids).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    let m = state.metrics();
    m.requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status: resp.status().as_u16(),
        })
        .inc();
    m.latency
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// `GET /metrics`: the text exposition format, for the admin key only.
pub async fn serve(
    State(state): State<AppState>,
    Principal(user): Principal,
) -> ApiResult<Response> {
    if !user.is_admin {
        return Err(ApiError::Forbidden("metrics need the admin API key".into()));
    }
    let counts = state.db(|s| s.count_vms_by_status()).await?;
    let m = state.metrics();
    for status in ["creating", "active", "suspended", "terminated", "failed"] {
        let n = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        m.vms
            .get_or_create(&StateLabels {
                state: status.into(),
            })
            .set(n);
    }
    m.events.set(state.db(|s| s.count_events()).await?);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.registry)
        .map_err(ApiError::internal)?;
    crate::webhooks::append_metrics(&state, &mut text);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
