//! Snapshot records (the wire record as JSON, beside the columns queries filter on).

use crate::*;
use rusqlite::{params, OptionalExtension, Row};

const COLUMNS: &str = "user_id, record";

fn from_row(row: &Row<'_>) -> rusqlite::Result<SnapshotRow> {
    let record: String = row.get(1)?;
    Ok(SnapshotRow {
        user_id: row.get(0)?,
        record: serde_json::from_str(&record).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
        })?,
    })
}

impl Store {
    /// Write a snapshot record (insert or replace).
    pub fn save_snapshot(&self, snap: &SnapshotRow) -> Result<()> {
        let r = &snap.record;
        let record = serde_json::to_string(r).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.writer()
            .prepare_cached(
                "INSERT INTO snapshots (id, user_id, status, created_at, record)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET status = ?3, record = ?5",
            )?
            .execute(params![
                r.id,
                snap.user_id,
                r.status.as_str(),
                to_millis(r.created_at),
                record
            ])?;
        Ok(())
    }

    pub fn get_user_snapshot(&self, user_id: i64, id: &str) -> Result<Option<SnapshotRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM snapshots WHERE id = ?1 AND user_id = ?2"),
                params![id, user_id],
                from_row,
            )
            .optional()?)
    }

    /// The user's snapshots, newest first.
    pub fn list_user_snapshots(&self, user_id: i64, limit: usize) -> Result<Vec<SnapshotRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM snapshots WHERE user_id = ?1
             ORDER BY created_at DESC, id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![user_id, limit as i64], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn snapshots_with_status(&self, status: SnapshotState) -> Result<Vec<SnapshotRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM snapshots WHERE status = ?1"
        ))?;
        let rows = stmt.query_map([status.as_str()], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Ids of every snapshot record, whatever its state.
    pub fn snapshot_ids(&self) -> Result<Vec<String>> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT id FROM snapshots")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Returns false when there was no such record.
    pub fn delete_snapshot(&self, id: &str) -> Result<bool> {
        Ok(self
            .writer()
            .execute("DELETE FROM snapshots WHERE id = ?1", [id])?
            > 0)
    }
}
