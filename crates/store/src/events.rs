//! Audit events (spec §14). Triggers (`sql/events.sql`) write them in the transaction of each
//! change; this module says who acted and reads them back.

use crate::*;
use rusqlite::functions::FunctionFlags;
use rusqlite::{params_from_iter, OptionalExtension, Row};
use std::cell::RefCell;

/// Who makes the changes of one store call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// `user` (an API call with a user's key), `admin` (the admin key), `system` (the server on
    /// its own: expiries, restarts, sweeps).
    pub kind: &'static str,
    pub id: Option<String>,
    pub request_id: Option<String>,
}

thread_local! {
    static ACTOR: RefCell<Option<Actor>> = const { RefCell::new(None) };
}

/// Run `f` (store calls) with `actor` recorded on the events it causes.
pub fn with_actor<T>(actor: Option<Actor>, f: impl FnOnce() -> T) -> T {
    let previous = ACTOR.with(|a| a.replace(actor));
    let out = f();
    ACTOR.with(|a| *a.borrow_mut() = previous);
    out
}

fn current<T>(pick: impl Fn(&Actor) -> Option<T>) -> Option<T> {
    ACTOR.with(|a| a.borrow().as_ref().and_then(&pick))
}

/// The SQL functions the triggers call.
pub(crate) fn register_actor_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8;
    conn.create_scalar_function("instavm_actor_type", 0, flags, |_| {
        Ok(current(|a| Some(a.kind.to_owned())).unwrap_or_else(|| "system".to_owned()))
    })?;
    conn.create_scalar_function("instavm_actor_id", 0, flags, |_| {
        Ok(current(|a| a.id.clone()))
    })?;
    conn.create_scalar_function("instavm_request_id", 0, flags, |_| {
        Ok(current(|a| a.request_id.clone()))
    })?;
    Ok(())
}

/// Every event type the platform writes, by group (`GET /v1/audit/catalog`).
pub const EVENT_CATALOG: &[(&str, &[&str])] = &[
    (
        "api_key",
        &[
            "api_key.created",
            "api_key.updated",
            "api_key.revoked",
            "api_key.activated",
            "api_key.deleted",
        ],
    ),
    (
        "session",
        &[
            "session.started",
            "session.suspended",
            "session.resumed",
            "session.expired",
            "session.terminated",
        ],
    ),
    (
        "share",
        &["share.created", "share.visibility_changed", "share.revoked"],
    ),
    (
        "snapshot",
        &[
            "snapshot.created",
            "snapshot.ready",
            "snapshot.failed",
            "snapshot.deleted",
        ],
    ),
    ("ssh_key", &["ssh_key.added", "ssh_key.removed"]),
    (
        "tape",
        &[
            "tape.started",
            "tape.stopped",
            "tape.failed",
            "tape.expired",
            "tape.deleted",
        ],
    ),
    ("user", &["user.created", "user.limits_updated"]),
    (
        "vault",
        &[
            "vault.created",
            "vault.updated",
            "vault.deleted",
            "vault.credential_created",
            "vault.credential_rotated",
            "vault.credential_deleted",
            "vault.service_added",
            "vault.service_removed",
        ],
    ),
    (
        "vm",
        &[
            "vm.created",
            "vm.creating",
            "vm.active",
            "vm.suspended",
            "vm.terminated",
            "vm.failed",
            "vm.updated",
        ],
    ),
    (
        "webhook",
        &[
            "webhook.endpoint_created",
            "webhook.endpoint_updated",
            "webhook.endpoint_enabled",
            "webhook.endpoint_disabled",
            "webhook.secret_rotated",
            "webhook.endpoint_deleted",
        ],
    ),
    (
        "workload",
        &[
            "workload.deployed",
            "workload.paused",
            "workload.resumed",
            "workload.deleted",
            "workload.run_succeeded",
            "workload.run_failed",
            "workload.run_timed_out",
            "workload.run_skipped",
        ],
    ),
];

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Position in the log (cursors page along it).
    pub seq: i64,
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub user_id: Option<i64>,
    pub event_group: String,
    pub event_type: String,
    pub status: String,
    pub vm_id: Option<String>,
    pub session_id: Option<String>,
    pub resource_type: String,
    pub resource_id: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub request_id: Option<String>,
    pub payload: serde_json::Value,
    pub error_message: Option<String>,
}

/// What `GET /v1/audit/events` filters on; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub user_id: Option<i64>,
    pub event_group: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<String>,
    pub vm_id: Option<String>,
    pub session_id: Option<String>,
    /// Only events older than this position.
    pub before_seq: Option<i64>,
}

pub(crate) const COLUMNS: &str = "seq, id, created_at, user_id, event_group, event_type, status, vm_id, \
    session_id, resource_type, resource_id, actor_type, actor_id, request_id, payload, error_message";

pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    let payload: String = row.get(14)?;
    Ok(EventRow {
        seq: row.get(0)?,
        id: row.get(1)?,
        created_at: from_millis(row.get(2)?),
        user_id: row.get(3)?,
        event_group: row.get(4)?,
        event_type: row.get(5)?,
        status: row.get(6)?,
        vm_id: row.get(7)?,
        session_id: row.get(8)?,
        resource_type: row.get(9)?,
        resource_id: row.get(10)?,
        actor_type: row.get(11)?,
        actor_id: row.get(12)?,
        request_id: row.get(13)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        error_message: row.get(15)?,
    })
}

impl Store {
    /// Events matching `filter`, newest first, at most `limit`.
    pub fn list_events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<EventRow>> {
        let mut clauses = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut add = |clause: &str, value: rusqlite::types::Value| {
            values.push(value);
            clauses.push(format!("{clause} ?{}", values.len()));
        };
        if let Some(v) = filter.user_id {
            add("user_id =", v.into());
        }
        for (column, v) in [
            ("event_group =", &filter.event_group),
            ("event_type =", &filter.event_type),
            ("status =", &filter.status),
            ("vm_id =", &filter.vm_id),
            ("session_id =", &filter.session_id),
        ] {
            if let Some(v) = v {
                add(column, v.clone().into());
            }
        }
        if let Some(v) = filter.before_seq {
            add("seq <", v.into());
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        values.push((limit as i64).into());
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM events {filter} ORDER BY seq DESC LIMIT ?{}",
            values.len()
        ))?;
        let rows = stmt.query_map(params_from_iter(values), from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn count_events(&self) -> Result<i64> {
        Ok(self
            .reader()
            .query_row("SELECT IFNULL(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
    }

    /// The event with this id (`evt_<seq in hex>_<random>`).
    pub fn get_event(&self, id: &str) -> Result<Option<EventRow>> {
        let seq = id
            .strip_prefix("evt_")
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(hex, _)| i64::from_str_radix(hex, 16).ok());
        let Some(seq) = seq else {
            return Ok(None);
        };
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM events WHERE seq = ?1 AND id = ?2"),
                rusqlite::params![seq, id],
                from_row,
            )
            .optional()?)
    }
}
