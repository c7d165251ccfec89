//! Audit events (spec §14): who acted, and reading the log. The events themselves are written
//! by the store's triggers in the transaction of each change; the server only says who acts,
//! per request: the request's id and the user its key belongs to.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use instavm_api::{AuditCatalog, AuditEvent, AuditEventPage, AuditQuery, REQUEST_ID_HEADER};
use instavm_store::{Actor, EventFilter, EventRow, UserRecord, EVENT_CATALOG};
use std::sync::Mutex;

pub const NOT_FOUND: &str = "event not found";
/// Page size when `limit` is not given, and the most one page holds.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

/// What one request knows about who acts.
struct RequestScope {
    request_id: Option<String>,
    actor: Mutex<Option<(&'static str, String)>>,
}

tokio::task_local! {
    static REQUEST: RequestScope;
}

/// Middleware: every request runs in a scope that authentication fills in.
pub async fn scope_request(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let scope = RequestScope {
        request_id,
        actor: Mutex::new(None),
    };
    REQUEST.scope(scope, next.run(req)).await
}

/// Called when a request's key resolved to `user`.
pub fn set_actor(user: &UserRecord) {
    let kind = if user.is_admin { "admin" } else { "user" };
    let _ = REQUEST.try_with(|s| {
        *s.actor.lock().unwrap_or_else(|e| e.into_inner()) = Some((kind, user.id.to_string()));
    });
}

/// The actor of store calls made now: the request's user, else the system (sweeps, restarts).
pub fn current_actor() -> Option<Actor> {
    REQUEST
        .try_with(|s| {
            let actor = s.actor.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let (kind, id) = match actor {
                Some((kind, id)) => (kind, Some(id)),
                None => ("system", None),
            };
            Actor {
                kind,
                id,
                request_id: s.request_id.clone(),
            }
        })
        .ok()
}

pub fn catalog() -> AuditCatalog {
    AuditCatalog {
        catalog: EVENT_CATALOG
            .iter()
            .map(|(group, types)| {
                (
                    (*group).to_owned(),
                    types.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect(),
    }
}

fn wire(e: EventRow) -> AuditEvent {
    AuditEvent {
        id: e.id,
        created_at: e.created_at,
        event_group: e.event_group,
        event_type: e.event_type,
        status: e.status,
        user_id: e.user_id,
        vm_id: e.vm_id,
        session_id: e.session_id,
        resource_type: e.resource_type,
        resource_id: e.resource_id,
        actor_type: e.actor_type,
        actor_id: e.actor_id,
        request_id: e.request_id,
        event_payload: e.payload,
        error_message: e.error_message,
    }
}

/// Cursors are opaque to clients: a position in the log.
fn encode_cursor(seq: i64) -> String {
    format!("c{seq:x}")
}

fn decode_cursor(text: &str) -> ApiResult<i64> {
    text.strip_prefix('c')
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        .filter(|seq| *seq > 0)
        .ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "cursor {text:?} is not one this server gave out (use next_cursor as it is)"
            ))
        })
}

/// A user sees the events of their own resources; the admin sees everyone's (and may filter
/// by `user_id`).
pub async fn list(state: &AppState, user: &UserRecord, q: AuditQuery) -> ApiResult<AuditEventPage> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    let user_id = if user.is_admin {
        q.user_id
    } else {
        match q.user_id {
            Some(id) if id != user.id => {
                return Ok(AuditEventPage {
                    items: Vec::new(),
                    next_cursor: None,
                })
            }
            _ => Some(user.id),
        }
    };
    let blank = |v: Option<String>| v.filter(|s| !s.is_empty());
    let filter = EventFilter {
        user_id,
        event_group: blank(q.event_group),
        event_type: blank(q.event_type),
        status: blank(q.status),
        vm_id: blank(q.vm_id),
        session_id: blank(q.session_id),
        before_seq: blank(q.cursor).map(|c| decode_cursor(&c)).transpose()?,
    };
    // One more than asked tells whether an older page exists.
    let want = limit as usize;
    let mut rows = state.db(move |s| s.list_events(&filter, want + 1)).await?;
    let next_cursor = if rows.len() > want {
        rows.truncate(want);
        rows.last().map(|e| encode_cursor(e.seq))
    } else {
        None
    };
    Ok(AuditEventPage {
        items: rows.into_iter().map(wire).collect(),
        next_cursor,
    })
}

pub async fn get(state: &AppState, user: &UserRecord, id: &str) -> ApiResult<AuditEvent> {
    let id_owned = id.to_owned();
    let row = state.db(move |s| s.get_event(&id_owned)).await?;
    row.filter(|e| user.is_admin || e.user_id == Some(user.id))
        .map(wire)
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))
}
