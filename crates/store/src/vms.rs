//! VM records. A VM row holds the wire record as JSON beside the columns queries filter on;
//! every write goes through [`write_vm`] so the two never disagree.

use crate::*;
use chrono::SecondsFormat;
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLUMNS: &str = "user_id, sandbox_id, env, record";

fn from_row(row: &Row<'_>) -> rusqlite::Result<VmRow> {
    let bad = |col: usize, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into())
    };
    let env: String = row.get(2)?;
    let record: String = row.get(3)?;
    Ok(VmRow {
        user_id: row.get(0)?,
        sandbox_id: row.get(1)?,
        env: serde_json::from_str(&env).map_err(|e| bad(2, e))?,
        record: serde_json::from_str(&record).map_err(|e| bad(3, e))?,
    })
}

fn write_vm(conn: &Connection, vm: &VmRow) -> Result<()> {
    let r = &vm.record;
    let record = serde_json::to_string(r).map_err(|e| StoreError::Encode(e.to_string()))?;
    let env = serde_json::to_string(&vm.env).map_err(|e| StoreError::Encode(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO vms (id, user_id, session_id, sandbox_id, status, created_at, record, env)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET session_id = ?3, sandbox_id = ?4, status = ?5,
             record = ?7, env = ?8",
    )?
    .execute(params![
        r.vm_id,
        vm.user_id,
        r.session_id,
        vm.sandbox_id,
        r.status.as_str(),
        to_millis(r.created_at),
        record,
        env
    ])?;
    Ok(())
}

/// Inside `end_session`'s transaction: the VM currently bound to the session has ended too.
pub(crate) fn terminate_session_vm(
    conn: &Connection,
    session_id: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let at = at.to_rfc3339_opts(SecondsFormat::Micros, true);
    conn.prepare_cached(
        "UPDATE vms SET status = 'terminated', sandbox_id = NULL,
             record = json_set(record, '$.status', 'terminated', '$.ended_at', ?2,
                               '$.end_reason', ?3)
         WHERE id = (SELECT vm_id FROM sessions WHERE id = ?1)
           AND status IN ('creating', 'active', 'suspended')",
    )?
    .execute(params![session_id, at, reason])?;
    Ok(())
}

impl VmRow {
    /// The VM record of a session started with `POST /v1/sessions/session`.
    pub fn for_session(s: &SessionRecord) -> VmRow {
        VmRow {
            user_id: s.user_id,
            sandbox_id: Some(s.sandbox_id.clone()),
            env: Default::default(),
            record: VmRecord {
                vm_id: s.vm_id.clone(),
                id: s.vm_id.clone(),
                session_id: s.id.clone(),
                status: match s.status {
                    SessionState::Active => VmState::Active,
                    SessionState::Suspended => VmState::Suspended,
                    SessionState::Expired | SessionState::Terminated => VmState::Terminated,
                },
                created_at: s.created_at,
                expires_at: s.expires_at,
                ended_at: s.ended_at,
                end_reason: s.end_reason.clone(),
                memory_mb: s.memory_mb,
                vcpu_count: s.vcpu_count,
                vm_lifetime_seconds: s.lifetime_seconds,
                metadata: s.metadata.clone(),
                image_variant: "standard".into(),
                snapshot_id: None,
                auto_suspend: false,
                auto_resume: false,
                snapshot_on_terminate: false,
                snapshot_name: None,
                vault_ids: Vec::new(),
                ssh_host: None,
                suspend_snapshot_id: None,
                resumed_vm_id: None,
            },
        }
    }
}

impl Store {
    /// How many VM records there are in each status.
    pub fn count_vms_by_status(&self) -> Result<Vec<(String, i64)>> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM vms GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Write a VM record (insert or replace).
    pub fn save_vm(&self, vm: &VmRow) -> Result<()> {
        write_vm(&self.writer(), vm)
    }

    /// A new session and the VM it runs on, in one transaction.
    pub fn insert_vm_session(&self, vm: &VmRow, session: &SessionRecord) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        Store::write_session(&tx, session)?;
        write_vm(&tx, vm)?;
        tx.commit()?;
        Ok(())
    }

    /// Bind an existing session to a VM that now runs (a resume or a respawn), making the
    /// session active again until `session_expires_at`; `others` are written in the same
    /// transaction (the VM it replaces).
    pub fn rebind_session(
        &self,
        vm: &VmRow,
        session_expires_at: DateTime<Utc>,
        others: &[&VmRow],
    ) -> Result<()> {
        let sandbox = vm.sandbox_id.as_deref().unwrap_or_default();
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let changed = tx.prepare_cached(
            "UPDATE sessions SET vm_id = ?2, sandbox_id = ?3, status = 'active', end_reason = NULL,
                 ended_at = NULL, expires_at = ?4
             WHERE id = ?1")?.execute(params![
                vm.record.session_id,
                vm.record.vm_id,
                sandbox,
                to_millis(session_expires_at)
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows));
        }
        write_vm(&tx, vm)?;
        for other in others {
            write_vm(&tx, other)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Record a suspend: the VM row (already `suspended`) and its session, which must be active.
    /// Returns false when the session had ended meanwhile (nothing is written).
    pub fn suspend_vm(&self, vm: &VmRow) -> Result<bool> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let changed = tx
            .prepare_cached(
                "UPDATE sessions SET status = 'suspended' WHERE id = ?1 AND status = 'active'",
            )?
            .execute([&vm.record.session_id])?;
        if changed == 0 {
            return Ok(false);
        }
        write_vm(&tx, vm)?;
        tx.commit()?;
        Ok(true)
    }

    /// Move a session's expiry (a lifetime extended for an auto-suspend).
    pub fn set_session_expiry(&self, session_id: &str, expires_at: DateTime<Utc>) -> Result<()> {
        self.writer()
            .prepare_cached("UPDATE sessions SET expires_at = ?2 WHERE id = ?1")?
            .execute(params![session_id, to_millis(expires_at)])?;
        Ok(())
    }

    pub fn get_vm(&self, vm_id: &str) -> Result<Option<VmRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM vms WHERE id = ?1"),
                [vm_id],
                from_row,
            )
            .optional()?)
    }

    /// The VM with this id if, and only if, it belongs to `user_id`.
    pub fn get_user_vm(&self, user_id: i64, vm_id: &str) -> Result<Option<VmRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM vms WHERE id = ?1 AND user_id = ?2"),
                params![vm_id, user_id],
                from_row,
            )
            .optional()?)
    }

    /// The user's VMs, newest first, at most `limit`; only creating and active ones when
    /// `running_only`.
    pub fn list_user_vms(
        &self,
        user_id: i64,
        limit: usize,
        running_only: bool,
    ) -> Result<Vec<VmRow>> {
        let filter = if running_only {
            "AND status IN ('creating', 'active')"
        } else {
            ""
        };
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM vms WHERE user_id = ?1 {filter}
             ORDER BY created_at DESC, id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![user_id, limit as i64], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every VM in `status` (reconciliation and sweeps).
    pub fn vms_with_status(&self, status: VmState) -> Result<Vec<VmRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM vms WHERE status = ?1"))?;
        let rows = stmt.query_map([status.as_str()], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
