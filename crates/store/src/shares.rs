//! Share records (spec §9).

use crate::*;
use rusqlite::{params, OptionalExtension, Row};

/// A share as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRow {
    pub id: String,
    pub user_id: i64,
    /// What the share follows: the session's current VM.
    pub session_id: String,
    /// The VM it was made for.
    pub vm_id: String,
    pub port: u16,
    pub is_public: bool,
    /// The access-link token (shown to the owner in `access_url`, so kept as it is).
    pub token: String,
    /// The proxy port serving it (ports mode), until released.
    pub listen_port: Option<u16>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, user_id, session_id, vm_id, port, is_public, token, listen_port, created_at, revoked_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ShareRow> {
    Ok(ShareRow {
        id: row.get(0)?,
        user_id: row.get(1)?,
        session_id: row.get(2)?,
        vm_id: row.get(3)?,
        port: row.get(4)?,
        is_public: row.get(5)?,
        token: row.get(6)?,
        listen_port: row.get(7)?,
        created_at: from_millis(row.get(8)?),
        revoked_at: row.get::<_, Option<i64>>(9)?.map(from_millis),
    })
}

impl Store {
    /// Record a new share; a live share for the same (session, port) is
    /// [`StoreError::Conflict`] (two creates raced: the caller reads the winner).
    pub fn insert_share(&self, s: &ShareRow) -> Result<()> {
        self.writer()
            .prepare_cached(&format!(
                "INSERT INTO shares ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                s.id,
                s.user_id,
                s.session_id,
                s.vm_id,
                s.port,
                s.is_public,
                s.token,
                s.listen_port,
                to_millis(s.created_at),
                s.revoked_at.map(to_millis)
            ])
            .map_err(|e| conflict_or(e, "a live share for this VM and port"))?;
        Ok(())
    }

    pub fn get_share(&self, id: &str) -> Result<Option<ShareRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM shares WHERE id = ?1"),
                params![id],
                from_row,
            )
            .optional()?)
    }

    pub fn get_share_by_listen_port(&self, port: u16) -> Result<Option<ShareRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM shares WHERE listen_port = ?1"),
                params![port],
                from_row,
            )
            .optional()?)
    }

    /// The live (not revoked) share of a session's port.
    pub fn live_share(&self, session_id: &str, port: u16) -> Result<Option<ShareRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM shares
                     WHERE session_id = ?1 AND port = ?2 AND revoked_at IS NULL"
                ),
                params![session_id, port],
                from_row,
            )
            .optional()?)
    }

    pub fn set_share_public(&self, id: &str, is_public: bool) -> Result<bool> {
        Ok(self
            .writer()
            .prepare_cached(
                "UPDATE shares SET is_public = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![id, is_public])?
            == 1)
    }

    /// Revoke; false when it was revoked already.
    pub fn revoke_share(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        Ok(self
            .writer()
            .prepare_cached(
                "UPDATE shares SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![id, to_millis(at)])?
            == 1)
    }

    /// Shares whose proxy port is still held.
    pub fn shares_with_listen_port(&self) -> Result<Vec<ShareRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM shares WHERE listen_port IS NOT NULL"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Give a share's proxy port back (the share stays, unreachable).
    pub fn release_share_port(&self, id: &str) -> Result<()> {
        self.writer()
            .prepare_cached("UPDATE shares SET listen_port = NULL WHERE id = ?1")?
            .execute(params![id])?;
        Ok(())
    }
}
