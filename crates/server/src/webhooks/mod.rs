//! Webhooks (spec §15, spec/webhooks.md §1): endpoints, and deliveries of the audit events
//! that match their patterns.
//!
//! The audit log is the outbox: the worker (`worker.rs`) turns events past a cursor into
//! queued deliveries in one transaction, then sends due deliveries, signs each attempt with the
//! endpoint's current secret, retries with backoff and records every attempt. Everything is
//! in SQLite, so a restart (even `kill -9`) resumes where it stopped; a send that was in
//! flight is sent again (at least once).

pub mod guard;
pub mod sign;
pub mod worker;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{DateTime, SecondsFormat, Utc};
use instavm_api::{
    CreateWebhookRequest, DeliveryAttempt, DeliveryQuery, UpdateWebhookRequest, WebhookDelivery,
    WebhookDeliveryPage, WebhookEndpoint, WebhookVerifyResult,
};
use instavm_store::{
    DeliveryFilter, EventRow, WebhookAttempt, WebhookDeliveryRow, WebhookEndpointRow,
};
use rand::RngCore;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub const NOT_FOUND: &str = "webhook endpoint not found";
pub const DELIVERY_NOT_FOUND: &str = "webhook delivery not found";
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 10;
pub const MAX_TIMEOUT_SECONDS: i64 = 60;
pub const DEFAULT_MAX_RETRIES: u32 = 5;
pub const MAX_RETRIES: i64 = 20;
pub const MAX_ENDPOINTS_PER_USER: u64 = 25;
const MAX_PATTERNS: usize = 50;
const MAX_PATTERN_LEN: usize = 200;
const MAX_URL_LEN: usize = 2048;
const MAX_DESCRIPTION_LEN: usize = 1000;
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;

/// What the operator decides about webhooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Allow URLs that resolve to loopback, private, link-local or the host's own addresses.
    pub allow_private: bool,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    pub queued: AtomicU64,
    pub attempts: AtomicU64,
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub exhausted: AtomicU64,
}

/// The webhook plane of a server: settings, the HTTP client and the worker's wake-up.
pub struct Webhooks {
    pub settings: WebhookSettings,
    pub client: reqwest::Client,
    pub wake: Notify,
    pub counters: WebhookCounters,
}

impl Webhooks {
    pub fn new(settings: WebhookSettings) -> Webhooks {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(guard::GuardedResolver {
                allow_private: settings.allow_private,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("instavm-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Webhooks {
            settings,
            client,
            wake: Notify::new(),
            counters: WebhookCounters::default(),
        }
    }
}

/// The webhook counters, in OpenMetrics text, before the `# EOF` of `/metrics`.
pub fn append_metrics(state: &AppState, text: &mut String) {
    let hooks = state.webhooks();
    let c = &hooks.counters;
    if text.ends_with("# EOF\n") {
        text.truncate(text.len() - "# EOF\n".len());
    }
    for (name, help, v) in [
        (
            "instavm_webhook_deliveries_queued",
            "Webhook deliveries queued.",
            &c.queued,
        ),
        (
            "instavm_webhook_attempts",
            "Webhook delivery attempts made.",
            &c.attempts,
        ),
        (
            "instavm_webhook_delivered",
            "Webhook deliveries answered with a 2xx.",
            &c.delivered,
        ),
        (
            "instavm_webhook_failed_attempts",
            "Webhook attempts that failed (non-2xx, timeout, refused).",
            &c.failed_attempts,
        ),
        (
            "instavm_webhook_exhausted",
            "Webhook deliveries that used up their retries.",
            &c.exhausted,
        ),
    ] {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    text.push_str("# EOF\n");
}

/// Start the delivery worker; it runs until the returned handle is aborted or dropped with
/// the runtime.
pub fn start(state: &AppState, settings: WebhookSettings) -> tokio::task::JoinHandle<()> {
    state.set_webhooks(Arc::new(Webhooks::new(settings)));
    tokio::spawn(worker::run(state.clone()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

pub fn new_secret() -> String {
    format!("whsec_{}", random_hex(24))
}

fn secret_hint(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("whsec_…{tail}")
}

pub fn new_delivery_id() -> String {
    format!("whd_{}", random_hex(12))
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn wire_endpoint(e: &WebhookEndpointRow, with_secret: bool) -> WebhookEndpoint {
    WebhookEndpoint {
        id: e.id.clone(),
        url: e.url.clone(),
        status: if e.enabled { "active" } else { "disabled" }.into(),
        enabled: e.enabled,
        description: e.description.clone(),
        event_patterns: e.event_patterns.clone(),
        timeout_seconds: e.timeout_seconds,
        max_retries: e.max_retries,
        secret: with_secret.then(|| e.secret.clone()),
        secret_hint: secret_hint(&e.secret),
        verified_at: e.verified_at,
        created_at: e.created_at,
        updated_at: e.updated_at,
    }
}

fn wire_delivery(d: WebhookDeliveryRow, attempts: Vec<WebhookAttempt>) -> WebhookDelivery {
    WebhookDelivery {
        next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
        id: d.id,
        endpoint_id: d.endpoint_id,
        event_id: d.event_id,
        event_type: d.event_type,
        status: d.status,
        attempt_count: d.attempt_count,
        last_status_code: d.last_status_code,
        last_error: d.last_error,
        created_at: d.created_at,
        delivered_at: d.delivered_at,
        attempts: attempts
            .into_iter()
            .map(|a| DeliveryAttempt {
                status_code: a.status_code,
                error: a.error,
                duration_ms: a.duration_ms,
            })
            .collect(),
    }
}

/// The body sent for an audit event: the event's fields as `GET /v1/audit/events` shows them,
/// with the payload also under `data` (spec/webhooks.md §1.3).
pub fn event_body(e: &EventRow) -> String {
    json!({
        "id": e.id,
        "event_type": e.event_type,
        "created_at": iso(e.created_at),
        "event_group": e.event_group,
        "status": e.status,
        "user_id": e.user_id,
        "vm_id": e.vm_id,
        "session_id": e.session_id,
        "resource_type": e.resource_type,
        "resource_id": e.resource_id,
        "actor_type": e.actor_type,
        "actor_id": e.actor_id,
        "request_id": e.request_id,
        "error_message": e.error_message,
        "event_payload": e.payload,
        "data": e.payload,
    })
    .to_string()
}

/// A body for an event the webhook plane makes itself (`webhook.test`, `webhook.verify`).
fn own_event_body(
    event_id: &str,
    event_type: &str,
    endpoint_id: &str,
    data: serde_json::Value,
) -> String {
    let mut data = data;
    data["endpoint_id"] = json!(endpoint_id);
    json!({
        "id": event_id,
        "event_type": event_type,
        "created_at": iso(Utc::now()),
        "event_group": "webhook",
        "status": "success",
        "resource_type": "webhook_endpoint",
        "resource_id": endpoint_id,
        "event_payload": data,
        "data": data,
    })
    .to_string()
}

pub fn new_delivery(
    endpoint: &WebhookEndpointRow,
    event_id: &str,
    event_type: &str,
    body: String,
    now: DateTime<Utc>,
) -> WebhookDeliveryRow {
    WebhookDeliveryRow {
        seq: 0,
        id: new_delivery_id(),
        endpoint_id: endpoint.id.clone(),
        user_id: endpoint.user_id,
        event_id: event_id.to_owned(),
        event_type: event_type.to_owned(),
        body,
        status: "pending".into(),
        attempt_count: 0,
        next_attempt_at: now,
        last_status_code: None,
        last_error: None,
        created_at: now,
        delivered_at: None,
    }
}

fn check_patterns(patterns: Vec<String>) -> ApiResult<Vec<String>> {
    let patterns: Vec<String> = patterns
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if patterns.len() > MAX_PATTERNS {
        return Err(ApiError::Unprocessable(format!(
            "at most {MAX_PATTERNS} event_patterns"
        )));
    }
    if let Some(p) = patterns.iter().find(|p| p.len() > MAX_PATTERN_LEN) {
        return Err(ApiError::Unprocessable(format!(
            "event pattern {:?}... is longer than {MAX_PATTERN_LEN} characters",
            &p[..20.min(p.len())]
        )));
    }
    if patterns.is_empty() {
        return Ok(vec!["*".into()]);
    }
    Ok(patterns)
}

fn check_timeout(v: i64) -> ApiResult<u32> {
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&v) {
        return Err(ApiError::Unprocessable(format!(
            "timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}, got {v}"
        )));
    }
    Ok(v as u32)
}

fn check_retries(v: i64) -> ApiResult<u32> {
    if !(0..=MAX_RETRIES).contains(&v) {
        return Err(ApiError::Unprocessable(format!(
            "max_retries must be between 0 and {MAX_RETRIES}, got {v}"
        )));
    }
    Ok(v as u32)
}

fn check_description(d: Option<String>) -> ApiResult<Option<String>> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_LEN => Err(ApiError::Unprocessable(
            format!("description is longer than {MAX_DESCRIPTION_LEN} characters"),
        )),
        Some(d) if d.trim().is_empty() => Ok(None),
        d => Ok(d),
    }
}

async fn check_url(state: &AppState, url: &str) -> ApiResult<String> {
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::Unprocessable(format!(
            "webhook url is longer than {MAX_URL_LEN} characters"
        )));
    }
    let allow = state.webhooks().settings.allow_private;
    match guard::check(url, allow).await {
        Ok(parsed) => Ok(parsed.to_string()),
        Err(e @ guard::UrlRefused::Private { .. }) => Err(ApiError::Forbidden(e.to_string())),
        Err(e) => Err(ApiError::Unprocessable(e.to_string())),
    }
}

pub async fn create(
    state: &AppState,
    user_id: i64,
    req: CreateWebhookRequest,
) -> ApiResult<WebhookEndpoint> {
    let url = check_url(state, &req.url).await?;
    let now = Utc::now();
    let row = WebhookEndpointRow {
        id: format!("whe_{}", random_hex(12)),
        user_id,
        url,
        description: check_description(req.description)?,
        event_patterns: check_patterns(req.event_patterns.unwrap_or_default())?,
        secret: new_secret(),
        timeout_seconds: req
            .timeout_seconds
            .map(check_timeout)
            .transpose()?
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        max_retries: req
            .max_retries
            .map(check_retries)
            .transpose()?
            .unwrap_or(DEFAULT_MAX_RETRIES),
        enabled: true,
        verified_at: None,
        created_at: now,
        updated_at: now,
        since_seq: 0,
    };
    let saved = row.clone();
    let count = state
        .db(move |s| {
            let n = s.count_webhook_endpoints(user_id)?;
            if n < MAX_ENDPOINTS_PER_USER {
                s.save_webhook_endpoint(&saved)?;
            }
            Ok(n)
        })
        .await?;
    if count >= MAX_ENDPOINTS_PER_USER {
        return Err(ApiError::Forbidden(format!(
            "a user may have at most {MAX_ENDPOINTS_PER_USER} webhook endpoints"
        )));
    }
    Ok(wire_endpoint(&row, true))
}

/// The caller's endpoint, or 404 (someone else's is indistinguishable from none).
pub async fn owned(state: &AppState, user_id: i64, id: &str) -> ApiResult<WebhookEndpointRow> {
    let id = id.to_owned();
    state
        .db(move |s| s.get_webhook_endpoint(&id))
        .await?
        .filter(|e| e.user_id == user_id)
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))
}

pub async fn list(state: &AppState, user_id: i64) -> ApiResult<Vec<WebhookEndpoint>> {
    let rows = state.db(move |s| s.list_webhook_endpoints(user_id)).await?;
    Ok(rows.iter().map(|e| wire_endpoint(e, false)).collect())
}

async fn save(state: &AppState, row: WebhookEndpointRow) -> ApiResult<WebhookEndpointRow> {
    let saved = row.clone();
    state.db(move |s| s.save_webhook_endpoint(&saved)).await?;
    Ok(row)
}

pub async fn update(
    state: &AppState,
    mut row: WebhookEndpointRow,
    req: UpdateWebhookRequest,
) -> ApiResult<WebhookEndpoint> {
    if let Some(url) = req.url {
        let url = check_url(state, &url).await?;
        if url != row.url {
            row.url = url;
            row.verified_at = None;
        }
    }
    if req.description.is_some() {
        row.description = check_description(req.description)?;
    }
    if let Some(p) = req.event_patterns {
        row.event_patterns = check_patterns(p)?;
    }
    if let Some(t) = req.timeout_seconds {
        row.timeout_seconds = check_timeout(t)?;
    }
    if let Some(r) = req.max_retries {
        row.max_retries = check_retries(r)?;
    }
    if let Some(enabled) = req.enabled {
        row.enabled = enabled;
    }
    row.updated_at = Utc::now();
    let row = save(state, row).await?;
    if row.enabled {
        state.webhooks().wake.notify_one();
    }
    Ok(wire_endpoint(&row, false))
}

/// `DELETE`: a soft-disable (spec §15.5). The endpoint and its deliveries stay listable;
/// `PATCH {"enabled": true}` turns it back on.
pub async fn disable(
    state: &AppState,
    mut row: WebhookEndpointRow,
) -> ApiResult<serde_json::Value> {
    row.enabled = false;
    row.updated_at = Utc::now();
    let row = save(state, row).await?;
    Ok(json!({"id": row.id, "status": "disabled", "enabled": false, "deleted": true}))
}

pub async fn rotate(state: &AppState, mut row: WebhookEndpointRow) -> ApiResult<WebhookEndpoint> {
    row.secret = new_secret();
    row.updated_at = Utc::now();
    let row = save(state, row).await?;
    Ok(wire_endpoint(&row, true))
}

/// Queue a `webhook.test` delivery.
pub async fn test(state: &AppState, row: WebhookEndpointRow) -> ApiResult<serde_json::Value> {
    if !row.enabled {
        return Err(ApiError::Conflict(
            "the webhook endpoint is disabled; enable it first".into(),
        ));
    }
    let event_id = format!("evt_test_{}", random_hex(8));
    let body = own_event_body(
        &event_id,
        "webhook.test",
        &row.id,
        json!({"message": "a test event from instavm"}),
    );
    let d = new_delivery(&row, &event_id, "webhook.test", body, Utc::now());
    let out = json!({
        "id": d.id, "delivery_id": d.id, "endpoint_id": row.id, "event_id": event_id,
        "event_type": "webhook.test", "status": "pending", "queued": true,
    });
    state.db(move |s| s.queue_webhook_delivery(&d)).await?;
    let hooks = state.webhooks();
    hooks.counters.queued.fetch_add(1, Ordering::Relaxed);
    hooks.wake.notify_one();
    Ok(out)
}

/// Send a signed `webhook.verify` challenge now and wait for the answer: a 2xx verifies.
pub async fn verify(
    state: &AppState,
    mut row: WebhookEndpointRow,
) -> ApiResult<WebhookVerifyResult> {
    let event_id = format!("evt_verify_{}", random_hex(8));
    let challenge = random_hex(16);
    let body = own_event_body(
        &event_id,
        "webhook.verify",
        &row.id,
        json!({"challenge": challenge}),
    );
    let outcome = worker::send(state, &row, &event_id, "webhook.verify", &body).await;
    let ok = outcome.status_code.is_some_and(|c| (200..300).contains(&c));
    if ok {
        row.verified_at = Some(Utc::now());
        row = save(state, row).await?;
    }
    Ok(WebhookVerifyResult {
        id: row.id,
        status: if ok { "verified" } else { "failed" }.into(),
        status_code: outcome.status_code,
        error: outcome.error,
        verified_at: row.verified_at,
    })
}

fn encode_cursor(seq: i64) -> String {
    format!("d{seq:x}")
}

fn decode_cursor(text: &str) -> ApiResult<i64> {
    text.strip_prefix('d')
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        .filter(|seq| *seq > 0)
        .ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "cursor {text:?} is not one this server gave out (use next_cursor as it is)"
            ))
        })
}

pub async fn deliveries(
    state: &AppState,
    user_id: i64,
    q: DeliveryQuery,
) -> ApiResult<WebhookDeliveryPage> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    let blank = |v: Option<String>| v.filter(|s| !s.is_empty());
    let filter = DeliveryFilter {
        user_id,
        endpoint_id: blank(q.endpoint_id),
        status: blank(q.status),
        event_type: blank(q.event_type),
        before_seq: blank(q.cursor).map(|c| decode_cursor(&c)).transpose()?,
    };
    let want = limit as usize;
    let (mut rows, attempts) = state
        .db(move |s| {
            let rows = s.list_webhook_deliveries(&filter, want + 1)?;
            let mut attempts = Vec::with_capacity(rows.len());
            for d in rows.iter().take(want) {
                attempts.push(s.webhook_attempts(&d.id)?);
            }
            Ok((rows, attempts))
        })
        .await?;
    let next_cursor = if rows.len() > want {
        rows.truncate(want);
        rows.last().map(|d| encode_cursor(d.seq))
    } else {
        None
    };
    Ok(WebhookDeliveryPage {
        items: rows
            .into_iter()
            .zip(attempts)
            .map(|(d, a)| wire_delivery(d, a))
            .collect(),
        next_cursor,
    })
}

pub async fn get_delivery(state: &AppState, user_id: i64, id: &str) -> ApiResult<WebhookDelivery> {
    let id = id.to_owned();
    let found = state
        .db(move |s| {
            let Some(d) = s.get_webhook_delivery(&id)? else {
                return Ok(None);
            };
            let attempts = s.webhook_attempts(&d.id)?;
            Ok(Some((d, attempts)))
        })
        .await?;
    found
        .filter(|(d, _)| d.user_id == user_id)
        .map(|(d, a)| wire_delivery(d, a))
        .ok_or_else(|| ApiError::NotFound(DELIVERY_NOT_FOUND.into()))
}

/// Queue a delivery's event again, as a new delivery (the old one keeps its history).
pub async fn replay(state: &AppState, user_id: i64, id: &str) -> ApiResult<serde_json::Value> {
    let id_owned = id.to_owned();
    let old = state
        .db(move |s| s.get_webhook_delivery(&id_owned))
        .await?
        .filter(|d| d.user_id == user_id)
        .ok_or_else(|| ApiError::NotFound(DELIVERY_NOT_FOUND.into()))?;
    let endpoint = owned(state, user_id, &old.endpoint_id).await?;
    if !endpoint.enabled {
        return Err(ApiError::Conflict(
            "the webhook endpoint is disabled; enable it before replaying".into(),
        ));
    }
    let d = new_delivery(
        &endpoint,
        &old.event_id,
        &old.event_type,
        old.body.clone(),
        Utc::now(),
    );
    let out = json!({
        "id": d.id, "delivery_id": d.id, "replayed_from": old.id, "endpoint_id": endpoint.id,
        "event_id": d.event_id, "event_type": d.event_type, "status": "pending", "queued": true,
    });
    state.db(move |s| s.queue_webhook_delivery(&d)).await?;
    let hooks = state.webhooks();
    hooks.counters.queued.fetch_add(1, Ordering::Relaxed);
    hooks.wake.notify_one();
    Ok(out)
}

/// Wait before retry `n` (1 after the first failure): 1 s, 2 s, 4 s ... up to 10 minutes.
pub fn backoff(n: u32) -> Duration {
    let secs = 1u64 << n.saturating_sub(1).min(10);
    Duration::from_secs(secs.min(600))
}
