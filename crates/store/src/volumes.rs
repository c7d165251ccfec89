//! Volumes, their checkpoints and the mounts of volumes in VMs (migration 3).
//!
//! A mount row lives as long as its VM's record: a mount holds its volume only while the VM is
//! `creating` or `active` (a sandbox that ends takes its mounts with it), and the rows of a
//! suspended or ended VM tell a VM booted from its snapshot what to mount again.

use crate::*;
use rusqlite::{params, OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub id: String,
    pub user_id: i64,
    pub name: String,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub id: String,
    pub volume_id: String,
    pub name: Option<String>,
    pub status: String,
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRow {
    pub vm_id: String,
    pub volume_id: String,
    pub mount_path: String,
    /// `rw` or `ro`.
    pub mode: String,
    /// The checkpoint of a `ro` mount.
    pub checkpoint_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// VM states in which a mount holds its volume.
const HOLDING: &str = "('creating', 'active')";

const VOLUME_COLUMNS: &str =
    "id, user_id, name, quota_bytes, used_bytes, status, created_at, updated_at";

fn volume_row(r: &Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        quota_bytes: r.get::<_, i64>(3)? as u64,
        used_bytes: r.get::<_, i64>(4)? as u64,
        status: r.get(5)?,
        created_at: from_millis(r.get(6)?),
        updated_at: from_millis(r.get(7)?),
    })
}

const CHECKPOINT_COLUMNS: &str = "id, volume_id, name, status, size_bytes, created_at";

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<CheckpointRow> {
    Ok(CheckpointRow {
        id: r.get(0)?,
        volume_id: r.get(1)?,
        name: r.get(2)?,
        status: r.get(3)?,
        size_bytes: r.get::<_, i64>(4)? as u64,
        created_at: from_millis(r.get(5)?),
    })
}

const MOUNT_COLUMNS: &str =
    "m.vm_id, m.volume_id, m.mount_path, m.mode, m.checkpoint_id, m.created_at";

fn mount_row(r: &Row<'_>) -> rusqlite::Result<MountRow> {
    Ok(MountRow {
        vm_id: r.get(0)?,
        volume_id: r.get(1)?,
        mount_path: r.get(2)?,
        mode: r.get(3)?,
        checkpoint_id: r.get(4)?,
        created_at: from_millis(r.get(5)?),
    })
}

/// Why a mount could not be recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum MountRefused {
    /// Another VM mounts the volume `rw`.
    HeldBy(String),
    /// The VM has something mounted at this path already.
    PathTaken,
    /// The volume was deleted meanwhile.
    VolumeGone,
}

impl Store {
    pub fn insert_volume(&self, v: &VolumeRow) -> Result<()> {
        self.writer()
            .execute(
                &format!("INSERT INTO volumes ({VOLUME_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    v.id,
                    v.user_id,
                    v.name,
                    v.quota_bytes as i64,
                    v.used_bytes as i64,
                    v.status,
                    to_millis(v.created_at),
                    to_millis(v.updated_at)
                ],
            )
            .map_err(|e| conflict_or(e, &format!("a volume named {:?}", v.name)))?;
        Ok(())
    }

    /// Name, quota, usage and status of an existing volume.
    pub fn update_volume(&self, v: &VolumeRow) -> Result<()> {
        self.writer()
            .execute(
                "UPDATE volumes SET name = ?2, quota_bytes = ?3, used_bytes = ?4, status = ?5,
                     updated_at = ?6 WHERE id = ?1",
                params![
                    v.id,
                    v.name,
                    v.quota_bytes as i64,
                    v.used_bytes as i64,
                    v.status,
                    to_millis(v.updated_at)
                ],
            )
            .map_err(|e| conflict_or(e, &format!("a volume named {:?}", v.name)))?;
        Ok(())
    }

    pub fn set_volume_usage(&self, id: &str, used_bytes: u64) -> Result<()> {
        self.writer().execute(
            "UPDATE volumes SET used_bytes = ?2 WHERE id = ?1",
            params![id, used_bytes as i64],
        )?;
        Ok(())
    }

    pub fn get_user_volume(&self, user_id: i64, id: &str) -> Result<Option<VolumeRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {VOLUME_COLUMNS} FROM volumes WHERE id = ?1 AND user_id = ?2"),
                params![id, user_id],
                volume_row,
            )
            .optional()?)
    }

    pub fn get_user_volume_by_name(&self, user_id: i64, name: &str) -> Result<Option<VolumeRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {VOLUME_COLUMNS} FROM volumes WHERE name = ?1 AND user_id = ?2"),
                params![name, user_id],
                volume_row,
            )
            .optional()?)
    }

    /// The user's volumes, oldest first.
    pub fn list_user_volumes(&self, user_id: i64) -> Result<Vec<VolumeRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE user_id = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([user_id], volume_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every volume id with its checkpoint ids (to match the runtime's after a crash).
    pub fn volume_ids(&self) -> Result<Vec<(String, Vec<String>)>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT v.id, c.id FROM volumes v LEFT JOIN volume_checkpoints c ON c.volume_id = v.id
             ORDER BY v.id",
        )?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
        for row in rows {
            let (vol, ckpt) = row?;
            if out.last().map(|(v, _)| v != &vol).unwrap_or(true) {
                out.push((vol, Vec::new()));
            }
            if let (Some(c), Some(last)) = (ckpt, out.last_mut()) {
                last.1.push(c);
            }
        }
        Ok(out)
    }

    /// Delete a volume with its checkpoints and mount rows. False when there was none.
    pub fn delete_volume(&self, id: &str) -> Result<bool> {
        Ok(self
            .writer()
            .execute("DELETE FROM volumes WHERE id = ?1", [id])?
            > 0)
    }

    /// Delete a volume unless a VM that is up mounts it, in one transaction (a mount racing
    /// with the delete either comes first and blocks it, or finds the volume gone). Answers
    /// the mounts that block it; empty when it was deleted (or did not exist).
    pub fn delete_unmounted_volume(&self, id: &str) -> Result<Vec<MountRow>> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let live = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {MOUNT_COLUMNS} FROM vm_mounts m JOIN vms v ON v.id = m.vm_id
                 WHERE m.volume_id = ?1 AND v.status IN {HOLDING} ORDER BY m.created_at"
            ))?;
            let rows = stmt.query_map([id], mount_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        if live.is_empty() {
            tx.execute("DELETE FROM volumes WHERE id = ?1", [id])?;
            tx.commit()?;
        }
        Ok(live)
    }

    pub fn insert_checkpoint(&self, c: &CheckpointRow) -> Result<()> {
        self.writer().execute(
            &format!("INSERT INTO volume_checkpoints ({CHECKPOINT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
            params![
                c.id,
                c.volume_id,
                c.name,
                c.status,
                c.size_bytes as i64,
                to_millis(c.created_at)
            ],
        )?;
        Ok(())
    }

    /// A volume's checkpoints, newest first.
    pub fn list_checkpoints(&self, volume_id: &str) -> Result<Vec<CheckpointRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM volume_checkpoints WHERE volume_id = ?1
             ORDER BY created_at DESC, rowid DESC"
        ))?;
        let rows = stmt.query_map([volume_id], checkpoint_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn get_checkpoint(&self, volume_id: &str, id: &str) -> Result<Option<CheckpointRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {CHECKPOINT_COLUMNS} FROM volume_checkpoints WHERE volume_id = ?1 AND id = ?2"),
                params![volume_id, id],
                checkpoint_row,
            )
            .optional()?)
    }

    pub fn delete_checkpoint(&self, id: &str) -> Result<bool> {
        Ok(self
            .writer()
            .execute("DELETE FROM volume_checkpoints WHERE id = ?1", [id])?
            > 0)
    }

    /// Record a mount, unless another VM holds the volume `rw` (for a `rw` mount) or the VM
    /// has something at that path: checked and written in one transaction, so two mounts
    /// racing for one volume cannot both win.
    pub fn add_mount(&self, m: &MountRow) -> Result<Result<(), MountRefused>> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM volumes WHERE id = ?1", [&m.volume_id], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Ok(Err(MountRefused::VolumeGone));
        }
        if m.mode == "rw" {
            let holder: Option<String> = tx
                .query_row(
                    &format!(
                        "SELECT m.vm_id FROM vm_mounts m JOIN vms v ON v.id = m.vm_id
                         WHERE m.volume_id = ?1 AND m.mode = 'rw' AND v.status IN {HOLDING}
                           AND m.vm_id != ?2 LIMIT 1"
                    ),
                    params![m.volume_id, m.vm_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(h) = holder {
                return Ok(Err(MountRefused::HeldBy(h)));
            }
        }
        let inserted = tx.execute(
            "INSERT INTO vm_mounts (vm_id, volume_id, mount_path, mode, checkpoint_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            params![
                m.vm_id,
                m.volume_id,
                m.mount_path,
                m.mode,
                m.checkpoint_id,
                to_millis(m.created_at)
            ],
        )?;
        if inserted == 0 {
            return Ok(Err(MountRefused::PathTaken));
        }
        tx.commit()?;
        Ok(Ok(()))
    }

    /// Every mount row of a VM (whatever its state), oldest first.
    pub fn mounts_of_vm(&self, vm_id: &str) -> Result<Vec<MountRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {MOUNT_COLUMNS} FROM vm_mounts m WHERE m.vm_id = ?1 ORDER BY m.created_at, m.mount_path"
        ))?;
        let rows = stmt.query_map([vm_id], mount_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Mounts of a volume by VMs that are up (they hold it).
    pub fn live_mounts_of_volume(&self, volume_id: &str) -> Result<Vec<MountRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {MOUNT_COLUMNS} FROM vm_mounts m JOIN vms v ON v.id = m.vm_id
             WHERE m.volume_id = ?1 AND v.status IN {HOLDING} ORDER BY m.created_at"
        ))?;
        let rows = stmt.query_map([volume_id], mount_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_mount(&self, vm_id: &str, mount_path: &str) -> Result<bool> {
        Ok(self.writer().execute(
            "DELETE FROM vm_mounts WHERE vm_id = ?1 AND mount_path = ?2",
            params![vm_id, mount_path],
        )? > 0)
    }
}
