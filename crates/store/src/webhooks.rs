//! Webhook endpoints and their delivery queue (spec §15).

use crate::*;
use rusqlite::{params, OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpointRow {
    pub id: String,
    pub user_id: i64,
    pub url: String,
    pub description: Option<String>,
    pub event_patterns: Vec<String>,
    /// `whsec_...`, the HMAC key as its UTF-8 bytes (spec/webhooks.md §1).
    pub secret: String,
    pub timeout_seconds: u32,
    pub max_retries: u32,
    pub enabled: bool,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set by the store: the endpoint gets the events after this position in the log (its
    /// creation, or when it was last enabled).
    pub since_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDeliveryRow {
    pub seq: i64,
    pub id: String,
    pub endpoint_id: String,
    pub user_id: i64,
    pub event_id: String,
    pub event_type: String,
    /// The exact bytes that are signed and sent.
    pub body: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempt_count: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One attempt at a delivery, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

const ENDPOINT_COLUMNS: &str = "id, user_id, url, description, event_patterns, secret, \
    timeout_seconds, max_retries, enabled, verified_at, created_at, updated_at, since_seq";
const DELIVERY_COLUMNS: &str = "seq, id, endpoint_id, user_id, event_id, event_type, body, \
    status, attempt_count, next_attempt_at, last_status_code, last_error, created_at, delivered_at";

fn endpoint(row: &Row<'_>) -> rusqlite::Result<WebhookEndpointRow> {
    let patterns: String = row.get(4)?;
    Ok(WebhookEndpointRow {
        id: row.get(0)?,
        user_id: row.get(1)?,
        url: row.get(2)?,
        description: row.get(3)?,
        event_patterns: serde_json::from_str(&patterns).unwrap_or_default(),
        secret: row.get(5)?,
        timeout_seconds: row.get(6)?,
        max_retries: row.get(7)?,
        enabled: row.get(8)?,
        verified_at: row.get::<_, Option<i64>>(9)?.map(from_millis),
        created_at: from_millis(row.get(10)?),
        updated_at: from_millis(row.get(11)?),
        since_seq: row.get(12)?,
    })
}

fn delivery(row: &Row<'_>) -> rusqlite::Result<WebhookDeliveryRow> {
    Ok(WebhookDeliveryRow {
        seq: row.get(0)?,
        id: row.get(1)?,
        endpoint_id: row.get(2)?,
        user_id: row.get(3)?,
        event_id: row.get(4)?,
        event_type: row.get(5)?,
        body: row.get(6)?,
        status: row.get(7)?,
        attempt_count: row.get(8)?,
        next_attempt_at: from_millis(row.get(9)?),
        last_status_code: row.get(10)?,
        last_error: row.get(11)?,
        created_at: from_millis(row.get(12)?),
        delivered_at: row.get::<_, Option<i64>>(13)?.map(from_millis),
    })
}

/// What `GET /v1/webhooks/deliveries` filters on.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub user_id: i64,
    pub endpoint_id: Option<String>,
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub before_seq: Option<i64>,
}

impl Store {
    pub fn save_webhook_endpoint(&self, e: &WebhookEndpointRow) -> Result<()> {
        let patterns = serde_json::to_string(&e.event_patterns)
            .map_err(|err| StoreError::Encode(err.to_string()))?;
        self.writer()
            .prepare_cached(&format!(
                "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
                     (SELECT IFNULL(MAX(seq), 0) FROM events))
                 ON CONFLICT (id) DO UPDATE SET url = ?3, description = ?4, event_patterns = ?5,
                     secret = ?6, timeout_seconds = ?7, max_retries = ?8, enabled = ?9,
                     verified_at = ?10, updated_at = ?12,
                     since_seq = CASE WHEN enabled = 0 AND ?9 THEN excluded.since_seq
                                      ELSE since_seq END"
            ))?
            .execute(params![
                e.id,
                e.user_id,
                e.url,
                e.description,
                patterns,
                e.secret,
                e.timeout_seconds,
                e.max_retries,
                e.enabled,
                e.verified_at.map(to_millis),
                to_millis(e.created_at),
                to_millis(e.updated_at)
            ])?;
        Ok(())
    }

    pub fn get_webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpointRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?1"),
                [id],
                endpoint,
            )
            .optional()?)
    }

    pub fn list_webhook_endpoints(&self, user_id: i64) -> Result<Vec<WebhookEndpointRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE user_id = ?1
             ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt.query_map([user_id], endpoint)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn count_webhook_endpoints(&self, user_id: i64) -> Result<u64> {
        Ok(self.reader().query_row(
            "SELECT COUNT(*) FROM webhook_endpoints WHERE user_id = ?1",
            [user_id],
            |r| r.get(0),
        )?)
    }

    /// Queue one delivery now (a test or verify event, a replay).
    pub fn queue_webhook_delivery(&self, d: &WebhookDeliveryRow) -> Result<()> {
        insert_delivery(&self.writer(), d)
    }

    /// The dispatcher's step: deliveries for the events after the cursor (at most `limit`),
    /// made by `make` for each event, queued in one transaction with the cursor moved past
    /// them. Returns how many deliveries were queued.
    pub fn dispatch_events(
        &self,
        limit: usize,
        make: &dyn Fn(&EventRow, &[WebhookEndpointRow]) -> Vec<WebhookDeliveryRow>,
    ) -> Result<usize> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let last: i64 = tx.query_row(
            "SELECT last_seq FROM webhook_dispatch WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        let events: Vec<EventRow> = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                crate::events::COLUMNS
            ))?;
            let rows = stmt.query_map(params![last, limit as i64], crate::events::from_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let Some(newest) = events.last().map(|e| e.seq) else {
            return Ok(0);
        };
        let mut queued = 0;
        for event in &events {
            let Some(user_id) = event.user_id else {
                continue;
            };
            let endpoints: Vec<WebhookEndpointRow> = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                     WHERE user_id = ?1 AND enabled = 1 AND since_seq < ?2"
                ))?;
                let rows = stmt.query_map(params![user_id, event.seq], endpoint)?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            if endpoints.is_empty() {
                continue;
            }
            for d in make(event, &endpoints) {
                insert_delivery(&tx, &d)?;
                queued += 1;
            }
        }
        tx.execute(
            "UPDATE webhook_dispatch SET last_seq = ?1 WHERE id = 1",
            [newest],
        )?;
        tx.commit()?;
        Ok(queued)
    }

    /// Where the dispatcher is in the event log (it has turned every event up to here into
    /// deliveries).
    pub fn webhook_dispatch_cursor(&self) -> Result<i64> {
        Ok(self.reader().query_row(
            "SELECT last_seq FROM webhook_dispatch WHERE id = 1",
            [],
            |r| r.get(0),
        )?)
    }

    /// When the next pending delivery is due (`None`: nothing pending).
    pub fn next_webhook_due(&self) -> Result<Option<DateTime<Utc>>> {
        let at: Option<i64> = self.reader().query_row(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(at.map(from_millis))
    }

    /// Pending deliveries due by `now`, oldest first.
    pub fn due_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<WebhookDeliveryRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![to_millis(now), limit as i64], delivery)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Record an attempt and the delivery's new state, in one transaction.
    pub fn record_webhook_attempt(
        &self,
        d: &WebhookDeliveryRow,
        attempt: &WebhookAttempt,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO webhook_attempts (delivery_id, n, at, status_code, error, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            d.id,
            d.attempt_count,
            to_millis(at),
            attempt.status_code,
            attempt.error,
            attempt.duration_ms as i64
        ])?;
        tx.prepare_cached(
            "UPDATE webhook_deliveries SET status = ?2, attempt_count = ?3, next_attempt_at = ?4,
                 last_status_code = ?5, last_error = ?6, delivered_at = ?7
             WHERE id = ?1",
        )?
        .execute(params![
            d.id,
            d.status,
            d.attempt_count,
            to_millis(d.next_attempt_at),
            d.last_status_code,
            d.last_error,
            d.delivered_at.map(to_millis)
        ])?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_webhook_delivery(&self, id: &str) -> Result<Option<WebhookDeliveryRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1"),
                [id],
                delivery,
            )
            .optional()?)
    }

    /// Newest first.
    pub fn list_webhook_deliveries(
        &self,
        f: &DeliveryFilter,
        limit: usize,
    ) -> Result<Vec<WebhookDeliveryRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE user_id = ?1 AND (?2 IS NULL OR endpoint_id = ?2) AND (?3 IS NULL OR status = ?3)
               AND (?4 IS NULL OR event_type = ?4) AND (?5 IS NULL OR seq < ?5)
             ORDER BY seq DESC LIMIT ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                f.user_id,
                f.endpoint_id,
                f.status,
                f.event_type,
                f.before_seq,
                limit as i64
            ],
            delivery,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn webhook_attempts(&self, delivery_id: &str) -> Result<Vec<WebhookAttempt>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT status_code, error, duration_ms FROM webhook_attempts
             WHERE delivery_id = ?1 ORDER BY n",
        )?;
        let rows = stmt.query_map([delivery_id], |r| {
            Ok(WebhookAttempt {
                status_code: r.get(0)?,
                error: r.get(1)?,
                duration_ms: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn insert_delivery(conn: &Connection, d: &WebhookDeliveryRow) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS})
         VALUES ((SELECT IFNULL(MAX(seq), 0) + 1 FROM webhook_deliveries), ?1, ?2, ?3, ?4, ?5, ?6,
                 ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        d.id,
        d.endpoint_id,
        d.user_id,
        d.event_id,
        d.event_type,
        d.body,
        d.status,
        d.attempt_count,
        to_millis(d.next_attempt_at),
        d.last_status_code,
        d.last_error,
        to_millis(d.created_at),
        d.delivered_at.map(to_millis)
    ])?;
    Ok(())
}
