//! Tapes, their events and filesystem checkpoints (migration 12).

use crate::*;
use instavm_api::{TapeCheckpoint, TapeEvent, TapeRecord, TapeStatus};
use rusqlite::{params, OptionalExtension, Row};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct TapeRow {
    pub user_id: i64,
    pub record: TapeRecord,
}

/// An event to append; its step is given out by [`Store::append_tape_event`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewTapeEvent<'a> {
    pub tape_id: &'a str,
    pub kind: &'a str,
    pub payload: &'a serde_json::Value,
    pub parent_step_id: Option<u64>,
    pub checkpoint_id: Option<&'a str>,
    /// The checkpoint is one of ours (a runtime snapshot) and is recorded as the state after
    /// this event's step.
    pub owns_checkpoint: bool,
    pub ts: DateTime<Utc>,
}

/// Filters of `GET /v1/tapes`.
#[derive(Debug, Clone, Default)]
pub struct TapeFilter {
    pub session_id: Option<String>,
    pub vm_id: Option<String>,
    pub status: Option<TapeStatus>,
    pub limit: u32,
    pub offset: u32,
}

/// Why an event could not be appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("tape not found")]
    NoTape,
    #[error("tape is {0}, not recording")]
    NotRecording(&'static str),
    #[error("parent_step_id {parent} names no step of this tape (it has {total} steps)")]
    NoSuchParent { parent: u64, total: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for AppendError {
    fn from(e: rusqlite::Error) -> Self {
        AppendError::Store(e.into())
    }
}

const TAPE_COLUMNS: &str = "id, user_id, session_id, vm_id, status, record_fs, \
    record_egress_content, retention_days, parent_tape_id, parent_step_id, total_steps, \
    created_at, stopped_at, expires_at, error";

fn tape_row(r: &Row<'_>) -> rusqlite::Result<TapeRow> {
    let id: String = r.get(0)?;
    let status: String = r.get(4)?;
    Ok(TapeRow {
        user_id: r.get(1)?,
        record: TapeRecord {
            tape_id: id.clone(),
            id,
            status: TapeStatus::parse(&status).unwrap_or(TapeStatus::Failed),
            session_id: r.get(2)?,
            vm_id: r.get(3)?,
            record_fs: r.get(5)?,
            record_egress_content: r.get(6)?,
            retention_days: r.get(7)?,
            parent_tape_id: r.get(8)?,
            parent_step_id: r.get::<_, Option<i64>>(9)?.map(|s| s as u64),
            total_steps: r.get::<_, i64>(10)? as u64,
            created_at: from_millis(r.get(11)?),
            stopped_at: r.get::<_, Option<i64>>(12)?.map(from_millis),
            expires_at: from_millis(r.get(13)?),
            error: r.get(14)?,
        },
    })
}

fn event_row(r: &Row<'_>) -> rusqlite::Result<TapeEvent> {
    let payload: String = r.get(3)?;
    Ok(TapeEvent {
        step_id: r.get::<_, i64>(0)? as u64,
        kind: r.get(1)?,
        ts: from_millis(r.get(2)?),
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        parent_step_id: r.get::<_, Option<i64>>(4)?.map(|s| s as u64),
        checkpoint_id: r.get(5)?,
    })
}

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<TapeCheckpoint> {
    Ok(TapeCheckpoint {
        checkpoint_id: r.get(0)?,
        step_id: r.get::<_, i64>(1)? as u64,
        created_at: from_millis(r.get(2)?),
    })
}

impl Store {
    /// Record a new tape, with the checkpoint of the state it starts from (step 0). A second
    /// recording tape on one session is a `Conflict`.
    pub fn insert_tape(&self, t: &TapeRow, start_checkpoint: Option<&str>) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let r = &t.record;
        let inserted = tx.execute(
            &format!("INSERT INTO tapes ({TAPE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
            params![
                r.id,
                t.user_id,
                r.session_id,
                r.vm_id,
                r.status.as_str(),
                r.record_fs,
                r.record_egress_content,
                r.retention_days,
                r.parent_tape_id,
                r.parent_step_id.map(|s| s as i64),
                r.total_steps as i64,
                to_millis(r.created_at),
                r.stopped_at.map(to_millis),
                to_millis(r.expires_at),
                r.error,
            ],
        );
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::Conflict(format!(
                    "a recording tape of session {}",
                    r.session_id
                )));
            }
            other => other?,
        };
        if let Some(ckpt) = start_checkpoint {
            tx.execute(
                "INSERT INTO tape_checkpoints (id, tape_id, step_id, created_at) VALUES (?1, ?2, 0, ?3)",
                params![ckpt, r.id, to_millis(r.created_at)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn get_tape(&self, id: &str) -> Result<Option<TapeRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {TAPE_COLUMNS} FROM tapes WHERE id = ?1"),
                [id],
                tape_row,
            )
            .optional()?)
    }

    /// The tape a session is recording on, if any (read on every execute, upload, ...).
    pub fn recording_tape(&self, session_id: &str) -> Result<Option<TapeRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!(
                    "SELECT {TAPE_COLUMNS} FROM tapes WHERE session_id = ?1 AND status = 'recording'"
                ),
                [session_id],
                tape_row,
            )
            .optional()?)
    }

    /// The tape recording the session whose sandbox this is (the hooks of executes, uploads
    /// and terminals know the sandbox; a resumed VM's session points at its new one).
    pub fn recording_tape_of_sandbox(&self, sandbox_id: &str) -> Result<Option<TapeRow>> {
        self.recording_tape_where("s.sandbox_id", sandbox_id)
    }

    /// The tape recording the session of this VM (the egress proxy knows VMs).
    pub fn recording_tape_of_vm(&self, vm_id: &str) -> Result<Option<TapeRow>> {
        self.recording_tape_where("s.vm_id", vm_id)
    }

    fn recording_tape_where(&self, column: &str, value: &str) -> Result<Option<TapeRow>> {
        let cols = TAPE_COLUMNS
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(self
            .reader()
            .query_row(
                &format!(
                    "SELECT {cols} FROM tapes t JOIN sessions s ON s.id = t.session_id
                     WHERE {column} = ?1 AND t.status = 'recording'"
                ),
                [value],
                tape_row,
            )
            .optional()?)
    }

    pub fn count_recording_tapes(&self) -> Result<u64> {
        Ok(self.reader().query_row(
            "SELECT COUNT(*) FROM tapes WHERE status = 'recording'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Stop the tapes whose session has ended; returns their ids.
    pub fn stop_tapes_of_ended_sessions(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        let conn = self.writer();
        let mut stmt = conn.prepare(
            "UPDATE tapes SET status = 'stopped', stopped_at = ?1
             WHERE status = 'recording' AND session_id IN
               (SELECT id FROM sessions WHERE status NOT IN ('active', 'suspended'))
             RETURNING id",
        )?;
        let rows = stmt.query_map([to_millis(now)], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A user's tapes, newest first.
    pub fn list_tapes(&self, user_id: i64, f: &TapeFilter) -> Result<Vec<TapeRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TAPE_COLUMNS} FROM tapes WHERE user_id = ?1
               AND (?2 IS NULL OR session_id = ?2) AND (?3 IS NULL OR vm_id = ?3)
               AND (?4 IS NULL OR status = ?4)
             ORDER BY created_at DESC, id DESC LIMIT ?5 OFFSET ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                user_id,
                f.session_id,
                f.vm_id,
                f.status.map(|s| s.as_str()),
                f.limit,
                f.offset
            ],
            tape_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Move a tape out of `recording` (stop, failure). Returns false if it was not recording.
    pub fn end_tape(
        &self,
        id: &str,
        status: TapeStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let n = self.writer().execute(
            "UPDATE tapes SET status = ?2, error = ?3, stopped_at = ?4
             WHERE id = ?1 AND status = 'recording'",
            params![id, status.as_str(), error, to_millis(now)],
        )?;
        Ok(n == 1)
    }

    /// Stop the tape a session records on (its VM ended). Returns the tape's id.
    pub fn stop_tape_of_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        Ok(self
            .writer()
            .query_row(
                "UPDATE tapes SET status = 'stopped', stopped_at = ?2
                 WHERE session_id = ?1 AND status = 'recording' RETURNING id",
                params![session_id, to_millis(now)],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Append an event on the next step of a recording tape; returns the step.
    pub fn append_tape_event(&self, e: &NewTapeEvent<'_>) -> Result<u64, AppendError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let step = append_in(&tx, e)?;
        tx.commit()?;
        Ok(step)
    }

    /// Append a step that took a checkpoint (`e.checkpoint_id`, owned) and, on the step after
    /// it, its `fs_summary` with `summary` as payload, in one transaction (one commit per
    /// recorded step). Returns the step of `e`.
    pub fn append_tape_step_with_summary(
        &self,
        e: &NewTapeEvent<'_>,
        summary: &serde_json::Value,
    ) -> Result<u64, AppendError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let step = append_in(&tx, e)?;
        let mut payload = summary.clone();
        if let Some(p) = payload.as_object_mut() {
            p.insert("after_step".into(), step.into());
        }
        append_in(
            &tx,
            &NewTapeEvent {
                tape_id: e.tape_id,
                kind: "fs_summary",
                payload: &payload,
                parent_step_id: Some(step),
                checkpoint_id: e.checkpoint_id,
                owns_checkpoint: false,
                ts: e.ts,
            },
        )?;
        tx.commit()?;
        Ok(step)
    }

    /// Events after `after_step`, oldest first, optionally of one kind.
    pub fn tape_events(
        &self,
        tape_id: &str,
        after_step: u64,
        kind: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TapeEvent>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT step_id, kind, ts, payload, parent_step_id, checkpoint_id FROM tape_events
             WHERE tape_id = ?1 AND step_id > ?2 AND (?3 IS NULL OR kind = ?3)
             ORDER BY step_id LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![tape_id, after_step as i64, kind, limit], event_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many events of each kind a tape holds.
    pub fn tape_lanes(&self, tape_id: &str) -> Result<BTreeMap<String, u64>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare("SELECT kind, COUNT(*) FROM tape_events WHERE tape_id = ?1 GROUP BY kind")?;
        let rows = stmt.query_map([tape_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn tape_checkpoints(&self, tape_id: &str) -> Result<Vec<TapeCheckpoint>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT id, step_id, created_at FROM tape_checkpoints WHERE tape_id = ?1 ORDER BY step_id",
        )?;
        let rows = stmt.query_map([tape_id], checkpoint_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The checkpoint that holds the files as they were after `step`: the last one taken at or
    /// before it.
    pub fn tape_checkpoint_at(&self, tape_id: &str, step: u64) -> Result<Option<TapeCheckpoint>> {
        Ok(self
            .reader()
            .query_row(
                "SELECT id, step_id, created_at FROM tape_checkpoints
                 WHERE tape_id = ?1 AND step_id <= ?2 ORDER BY step_id DESC LIMIT 1",
                params![tape_id, step as i64],
                checkpoint_row,
            )
            .optional()?)
    }

    /// Every checkpoint id of every tape (the start-up sweep keeps these snapshots).
    pub fn tape_checkpoint_ids(&self) -> Result<Vec<String>> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT id FROM tape_checkpoints")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Delete a tape with its events; returns the ids of its checkpoints (whose snapshots the
    /// caller deletes).
    pub fn delete_tape(&self, id: &str) -> Result<Vec<String>> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let ids = checkpoint_ids(&tx, id)?;
        tx.execute("DELETE FROM tapes WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(ids)
    }

    /// Mark tapes whose retention ran out as `expired` (a recording one is stopped first) and
    /// forget their checkpoints.
    pub fn expire_tapes(&self, now: DateTime<Utc>) -> Result<Vec<ExpiredTape>> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let due: Vec<(String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT id, status FROM tapes WHERE status != 'expired' AND expires_at <= ?1",
            )?;
            let rows = stmt.query_map([to_millis(now)], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::with_capacity(due.len());
        for (id, status) in due {
            let checkpoints = checkpoint_ids(&tx, &id)?;
            tx.execute("DELETE FROM tape_checkpoints WHERE tape_id = ?1", [&id])?;
            tx.execute(
                "UPDATE tapes SET status = 'expired', stopped_at = IFNULL(stopped_at, ?2) WHERE id = ?1",
                params![id, to_millis(now)],
            )?;
            out.push(ExpiredTape {
                id,
                checkpoints,
                was_recording: status == "recording",
            });
        }
        tx.commit()?;
        Ok(out)
    }
}

/// A tape [`Store::expire_tapes`] expired: the snapshots of its checkpoints are the caller's
/// to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredTape {
    pub id: String,
    pub checkpoints: Vec<String>,
    pub was_recording: bool,
}

/// Give `e` the tape's next step, inside the caller's transaction.
fn append_in(tx: &rusqlite::Transaction<'_>, e: &NewTapeEvent<'_>) -> Result<u64, AppendError> {
    let tape: Option<(String, i64)> = tx
        .query_row(
            "SELECT status, total_steps FROM tapes WHERE id = ?1",
            [e.tape_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((status, total)) = tape else {
        return Err(AppendError::NoTape);
    };
    let total = total as u64;
    if status != "recording" {
        let status = TapeStatus::parse(&status).unwrap_or(TapeStatus::Failed);
        return Err(AppendError::NotRecording(status.as_str()));
    }
    if let Some(parent) = e.parent_step_id {
        if parent == 0 || parent > total {
            return Err(AppendError::NoSuchParent { parent, total });
        }
    }
    let step = total + 1;
    tx.execute(
        "UPDATE tapes SET total_steps = ?2 WHERE id = ?1",
        params![e.tape_id, step as i64],
    )?;
    let payload =
        serde_json::to_string(e.payload).map_err(|err| StoreError::Encode(err.to_string()))?;
    tx.execute(
        "INSERT INTO tape_events (tape_id, step_id, kind, ts, parent_step_id, checkpoint_id, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            e.tape_id,
            step as i64,
            e.kind,
            to_millis(e.ts),
            e.parent_step_id.map(|s| s as i64),
            e.checkpoint_id,
            payload
        ],
    )?;
    if let (true, Some(ckpt)) = (e.owns_checkpoint, e.checkpoint_id) {
        tx.execute(
            "INSERT INTO tape_checkpoints (id, tape_id, step_id, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![ckpt, e.tape_id, step as i64, to_millis(e.ts)],
        )?;
    }
    Ok(step)
}

fn checkpoint_ids(conn: &rusqlite::Connection, tape_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT id FROM tape_checkpoints WHERE tape_id = ?1")?;
    let rows = stmt.query_map([tape_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
