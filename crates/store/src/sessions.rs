//! Sessions: one row per session, kept after it ends.

use crate::*;
use rusqlite::{params, OptionalExtension, Row};

const COLUMNS: &str = "id, user_id, vm_id, sandbox_id, status, end_reason, memory_mb, vcpu_count,
    lifetime_seconds, metadata, created_at, expires_at, ended_at, execution_count,
    execution_seconds, cpu_seconds";

/// Row decoding; a value this build cannot read becomes `FromSqlConversionFailure`.
fn from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let bad = |col: usize, msg: String| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, msg.into())
    };
    let status: String = row.get(4)?;
    let metadata: String = row.get(9)?;
    Ok(SessionRecord {
        id: row.get(0)?,
        user_id: row.get(1)?,
        vm_id: row.get(2)?,
        sandbox_id: row.get(3)?,
        status: SessionState::parse(&status)
            .ok_or_else(|| bad(4, format!("unknown session status {status:?}")))?,
        end_reason: row.get(5)?,
        memory_mb: row.get(6)?,
        vcpu_count: row.get(7)?,
        lifetime_seconds: row.get(8)?,
        metadata: serde_json::from_str(&metadata).map_err(|e| bad(9, e.to_string()))?,
        created_at: from_millis(row.get(10)?),
        expires_at: from_millis(row.get(11)?),
        ended_at: row.get::<_, Option<i64>>(12)?.map(from_millis),
        usage: UsageCounters {
            execution_count: row.get(13)?,
            execution_seconds: row.get(14)?,
            cpu_seconds: row.get(15)?,
        },
    })
}

impl Store {
    /// Record a session started with `POST /v1/sessions/session`, and the VM record behind it.
    pub fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        self.insert_vm_session(&VmRow::for_session(s), s)
    }

    pub(crate) fn write_session(conn: &rusqlite::Connection, s: &SessionRecord) -> Result<()> {
        let metadata = serde_json::Value::Object(s.metadata.clone()).to_string();
        conn
            .prepare_cached(
                &format!("INSERT INTO sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"))?.execute(params![
                    s.id,
                    s.user_id,
                    s.vm_id,
                    s.sandbox_id,
                    s.status.as_str(),
                    s.end_reason,
                    s.memory_mb,
                    s.vcpu_count,
                    s.lifetime_seconds,
                    metadata,
                    to_millis(s.created_at),
                    to_millis(s.expires_at),
                    s.ended_at.map(to_millis),
                    s.usage.execution_count,
                    s.usage.execution_seconds,
                    s.usage.cpu_seconds,
                ],
            )
            .map_err(|e| conflict_or(e, &format!("session {}", s.id)))?;
        Ok(())
    }

    pub fn get_session(&self, id: &str) -> Result<Option<SessionRecord>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?)
    }

    /// The session with this id if, and only if, it belongs to `user_id`.
    pub fn get_user_session(&self, user_id: i64, id: &str) -> Result<Option<SessionRecord>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1 AND user_id = ?2"),
                params![id, user_id],
                from_row,
            )
            .optional()?)
    }

    /// The user's sessions, newest first, that pass `keep`, at most `limit` of them.
    pub fn list_user_sessions(
        &self,
        user_id: i64,
        limit: usize,
        mut keep: impl FnMut(&SessionRecord) -> bool,
    ) -> Result<Vec<SessionRecord>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE user_id = ?1 ORDER BY created_at DESC, id"
        ))?;
        let mut out = Vec::new();
        for row in stmt.query_map([user_id], from_row)? {
            if out.len() >= limit {
                break;
            }
            let session = row?;
            if keep(&session) {
                out.push(session);
            }
        }
        Ok(out)
    }

    /// The user's sessions that overlap `[start, end)`.
    pub fn user_sessions_between(
        &self,
        user_id: i64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<SessionRecord>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM sessions
             WHERE user_id = ?1 AND created_at < ?3 AND (ended_at IS NULL OR ended_at > ?2)"
        ))?;
        let rows = stmt.query_map(params![user_id, to_millis(start), to_millis(end)], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn active_sessions(&self) -> Result<Vec<SessionRecord>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE status = 'active'"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The active session running on this sandbox, if any.
    pub fn active_session_by_sandbox(&self, sandbox_id: &str) -> Result<Option<SessionRecord>> {
        Ok(self
            .reader()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM sessions WHERE sandbox_id = ?1 AND status = 'active'"
                ),
                [sandbox_id],
                from_row,
            )
            .optional()?)
    }

    pub fn count_active_sessions(&self, user_id: i64) -> Result<u64> {
        Ok(self.reader().query_row(
            "SELECT COUNT(*) FROM sessions WHERE user_id = ?1 AND status = 'active'",
            [user_id],
            |r| r.get(0),
        )?)
    }

    /// Move an active (or suspended) session to `state`, and its VM record to `terminated`.
    /// Returns false when it had ended already (so the first reason to end a session is the
    /// one recorded).
    pub fn end_session(
        &self,
        id: &str,
        state: SessionState,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let changed = tx
            .prepare_cached(
                "UPDATE sessions SET status = ?2, end_reason = ?3, ended_at = ?4
             WHERE id = ?1 AND status IN ('active', 'suspended')",
            )?
            .execute(params![id, state.as_str(), reason, to_millis(at)])?;
        if changed > 0 {
            crate::vms::terminate_session_vm(&tx, id, reason, at)?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    /// Add counters to several sessions in one transaction.
    pub fn add_session_usage(&self, deltas: &[(String, UsageCounters)]) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "UPDATE sessions SET execution_count = execution_count + ?2,
                                     execution_seconds = execution_seconds + ?3,
                                     cpu_seconds = cpu_seconds + ?4
                 WHERE id = ?1",
            )?;
            for (id, d) in deltas {
                stmt.execute(params![
                    id,
                    d.execution_count,
                    d.execution_seconds,
                    d.cpu_seconds
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Store {
    /// The session with this VM id if, and only if, it belongs to `user_id`.
    /// The session of VM `vm_id`, whoever owns it (the SSH gateway checks the owner's keys).
    pub fn get_session_by_vm(&self, vm_id: &str) -> Result<Option<SessionRecord>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE vm_id = ?1"),
                params![vm_id],
                from_row,
            )
            .optional()?)
    }

    pub fn get_user_session_by_vm(
        &self,
        user_id: i64,
        vm_id: &str,
    ) -> Result<Option<SessionRecord>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE vm_id = ?1 AND user_id = ?2"),
                params![vm_id, user_id],
                from_row,
            )
            .optional()?)
    }
}
