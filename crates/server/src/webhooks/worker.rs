//! The delivery worker: one task per server. Each round it (1) turns audit events past the
//! dispatch cursor into deliveries for the endpoints whose patterns match, in one transaction
//! with moving the cursor, and (2) sends the deliveries that are due, several at once, each
//! with its endpoint's timeout, recording every attempt and scheduling retries with backoff.

use super::{backoff, event_body, guard, new_delivery, sign, Webhooks};
use crate::state::AppState;
use chrono::Utc;
use instavm_store::{EventRow, WebhookAttempt, WebhookDeliveryRow, WebhookEndpointRow};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Sends in flight at once.
const CONCURRENCY: usize = 64;
/// Events turned into deliveries per transaction.
const DISPATCH_BATCH: usize = 500;
/// The longest the worker sleeps when nothing wakes it (new events are noticed this late).
const POLL: Duration = Duration::from_millis(100);
/// Bytes of a receiver's answer kept in `last_error`.
const ERROR_BODY_BYTES: usize = 200;

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

pub async fn run(state: AppState) {
    let hooks = state.webhooks();
    let mut inflight: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let mut dispatched = match state.db(|s| s.webhook_dispatch_cursor()).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: reading the dispatch cursor");
            0
        }
    };
    loop {
        // 1. New events become deliveries.
        match state.db(|s| s.count_events()).await {
            Ok(latest) if latest > dispatched => match dispatch(&state).await {
                Ok(queued) => {
                    hooks
                        .counters
                        .queued
                        .fetch_add(queued as u64, Ordering::Relaxed);
                    match state.db(|s| s.webhook_dispatch_cursor()).await {
                        Ok(seq) => dispatched = seq,
                        Err(e) => tracing::error!(error = %e, "webhooks: reading the cursor"),
                    }
                    if dispatched < latest {
                        // More than one batch waiting: go round again straight away.
                        hooks.wake.notify_one();
                    }
                }
                Err(e) => tracing::error!(error = %e, "webhooks: dispatching events"),
            },
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "webhooks: reading the event log"),
        }
        // 2. Due deliveries are sent.
        while let Some(done) = tasks.try_join_next() {
            if let Ok(id) = done {
                inflight.remove(&id);
            }
        }
        if tasks.len() < CONCURRENCY {
            let want = CONCURRENCY * 2;
            match state
                .db(move |s| s.due_webhook_deliveries(Utc::now(), want))
                .await
            {
                Ok(due) => {
                    for d in due {
                        if tasks.len() >= CONCURRENCY {
                            break;
                        }
                        if inflight.insert(d.id.clone()) {
                            let state = state.clone();
                            tasks.spawn(async move {
                                let id = d.id.clone();
                                attempt(&state, d).await;
                                id
                            });
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "webhooks: reading due deliveries"),
            }
        }
        // 3. Wait for a send to finish, a wake-up (new delivery, event) or the poll.
        let wait = next_wait(&state, &inflight).await;
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(id) = done {
                    inflight.remove(&id);
                }
            }
            () = hooks.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Until the next due delivery, at most `POLL`.
async fn next_wait(state: &AppState, inflight: &HashSet<String>) -> Duration {
    if !inflight.is_empty() {
        return POLL;
    }
    match state.db(|s| s.next_webhook_due()).await {
        Ok(Some(at)) => (at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(POLL),
        _ => POLL,
    }
}

async fn dispatch(state: &AppState) -> Result<usize, crate::error::ApiError> {
    state
        .db(|s| {
            s.dispatch_events(DISPATCH_BATCH, &|event: &EventRow, endpoints| {
                let now = Utc::now();
                let mut body = None;
                endpoints
                    .iter()
                    .filter(|e| sign::matches(&e.event_patterns, &event.event_type))
                    .map(|e| {
                        let body = body.get_or_insert_with(|| event_body(event)).clone();
                        new_delivery(e, &event.id, &event.event_type, body, now)
                    })
                    .collect()
            })
        })
        .await
}

/// One attempt at a delivery, and its record.
async fn attempt(state: &AppState, mut d: WebhookDeliveryRow) {
    let hooks = state.webhooks();
    let endpoint_id = d.endpoint_id.clone();
    let endpoint = match state
        .db(move |s| s.get_webhook_endpoint(&endpoint_id))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: reading an endpoint");
            return;
        }
    };
    let now = Utc::now();
    d.attempt_count += 1;
    let (outcome, exhausted) = match endpoint {
        Some(e) if e.enabled => {
            let outcome = send(state, &e, &d.event_id, &d.event_type, &d.body).await;
            let exhausted = d.attempt_count > e.max_retries;
            (outcome, exhausted)
        }
        _ => (
            Outcome {
                status_code: None,
                error: Some("the endpoint was disabled".into()),
                duration_ms: 0,
            },
            true,
        ),
    };
    hooks.counters.attempts.fetch_add(1, Ordering::Relaxed);
    d.last_status_code = outcome.status_code;
    d.last_error = outcome.error.clone();
    if outcome.ok() {
        d.status = "delivered".into();
        d.delivered_at = Some(Utc::now());
        hooks.counters.delivered.fetch_add(1, Ordering::Relaxed);
    } else {
        hooks
            .counters
            .failed_attempts
            .fetch_add(1, Ordering::Relaxed);
        if exhausted {
            d.status = "failed".into();
            hooks.counters.exhausted.fetch_add(1, Ordering::Relaxed);
        } else {
            d.next_attempt_at = now
                + chrono::Duration::from_std(backoff(d.attempt_count))
                    .unwrap_or(chrono::Duration::seconds(1));
        }
    }
    let record = WebhookAttempt {
        status_code: outcome.status_code,
        error: outcome.error,
        duration_ms: outcome.duration_ms,
    };
    let delivery_id = d.id.clone();
    if let Err(e) = state
        .db(move |s| s.record_webhook_attempt(&d, &record, now))
        .await
    {
        tracing::error!(delivery = %delivery_id, error = %e, "webhooks: recording an attempt");
    }
}

/// POST a signed body to the endpoint's URL, within its timeout.
pub async fn send(
    state: &AppState,
    endpoint: &WebhookEndpointRow,
    event_id: &str,
    event_type: &str,
    body: &str,
) -> Outcome {
    let hooks: Arc<Webhooks> = state.webhooks();
    let started = Instant::now();
    let elapsed = |started: Instant| started.elapsed().as_millis() as u64;
    // The resolver refuses names that resolve to private addresses; literals are checked here.
    let url = match guard::check_literal(&endpoint.url, hooks.settings.allow_private) {
        Ok(url) => url,
        Err(e) => {
            return Outcome {
                status_code: None,
                error: Some(e.to_string()),
                duration_ms: 0,
            }
        }
    };
    let timestamp = Utc::now().timestamp();
    let signature = sign::header_value(&endpoint.secret, timestamp, body.as_bytes());
    let request = hooks
        .client
        .post(url)
        .timeout(Duration::from_secs(u64::from(endpoint.timeout_seconds)))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(sign::HEADER, signature)
        .header("InstaVM-Event-Id", event_id)
        .header("InstaVM-Event-Type", event_type)
        .body(body.to_owned());
    match request.send().await {
        Ok(res) => {
            let code = res.status().as_u16();
            let error = if res.status().is_success() {
                None
            } else {
                let text = res.text().await.unwrap_or_default();
                let mut text: String = text.chars().take(ERROR_BODY_BYTES).collect();
                if text.is_empty() {
                    text = format!("HTTP {code}");
                } else {
                    text = format!("HTTP {code}: {text}");
                }
                Some(text)
            };
            Outcome {
                status_code: Some(code),
                error,
                duration_ms: elapsed(started),
            }
        }
        Err(e) => {
            let error = if e.is_timeout() {
                format!("timed out after {} s", endpoint.timeout_seconds)
            } else {
                // The whole chain: reqwest's top level says only "error sending request".
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                text
            };
            Outcome {
                status_code: None,
                error: Some(error),
                duration_ms: elapsed(started),
            }
        }
    }
}
