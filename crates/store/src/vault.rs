//! Secrets vaults (issue #13): vaults, credentials (sealed values only), services, request
//! logs and the per-VM placeholders. Nothing here decrypts: sealing is the server's job.

use crate::*;
use rusqlite::{params, OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultRow {
    pub id: String,
    pub user_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A credential as stored: `sealed` is the AEAD output, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub id: String,
    pub vault_id: String,
    pub name: String,
    pub credential_type: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub sealed: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for CredentialRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRow")
            .field("id", &self.id)
            .field("vault_id", &self.vault_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    pub id: String,
    pub vault_id: String,
    pub host: String,
    pub auth_config: serde_json::Value,
    pub enabled: bool,
    pub description: Option<String>,
    pub template_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLogRow {
    pub vault_id: String,
    pub created_at: DateTime<Utc>,
    pub vm_id: Option<String>,
    pub host: String,
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    pub credential_id: Option<String>,
    pub credential_name: Option<String>,
}

const VAULT_COLS: &str = "id, user_id, name, description, created_at, updated_at";
const CRED_COLS: &str =
    "id, vault_id, name, credential_type, description, enabled, sealed, created_at, updated_at";
const SVC_COLS: &str =
    "id, vault_id, host, auth_config, enabled, description, template_id, created_at";

fn vault_row(r: &Row<'_>) -> rusqlite::Result<VaultRow> {
    Ok(VaultRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        created_at: from_millis(r.get(4)?),
        updated_at: from_millis(r.get(5)?),
    })
}

fn cred_row(r: &Row<'_>) -> rusqlite::Result<CredentialRow> {
    Ok(CredentialRow {
        id: r.get(0)?,
        vault_id: r.get(1)?,
        name: r.get(2)?,
        credential_type: r.get(3)?,
        description: r.get(4)?,
        enabled: r.get(5)?,
        sealed: r.get(6)?,
        created_at: from_millis(r.get(7)?),
        updated_at: from_millis(r.get(8)?),
    })
}

fn svc_row(r: &Row<'_>) -> rusqlite::Result<ServiceRow> {
    let text: String = r.get(3)?;
    Ok(ServiceRow {
        id: r.get(0)?,
        vault_id: r.get(1)?,
        host: r.get(2)?,
        auth_config: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        enabled: r.get(4)?,
        description: r.get(5)?,
        template_id: r.get(6)?,
        created_at: from_millis(r.get(7)?),
    })
}

impl Store {
    pub fn insert_vault(&self, v: &VaultRow) -> Result<()> {
        self.writer()
            .prepare_cached(&format!(
                "INSERT INTO vaults ({VAULT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![
                v.id,
                v.user_id,
                v.name,
                v.description,
                to_millis(v.created_at),
                to_millis(v.updated_at)
            ])?;
        Ok(())
    }

    pub fn get_user_vault(&self, user_id: i64, id: &str) -> Result<Option<VaultRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {VAULT_COLS} FROM vaults WHERE id = ?1 AND user_id = ?2"),
                params![id, user_id],
                vault_row,
            )
            .optional()?)
    }

    pub fn list_user_vaults(&self, user_id: i64) -> Result<Vec<VaultRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {VAULT_COLS} FROM vaults WHERE user_id = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![user_id], vault_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn update_vault(&self, v: &VaultRow) -> Result<()> {
        self.writer()
            .prepare_cached(
                "UPDATE vaults SET name = ?2, description = ?3, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![
                v.id,
                v.name,
                v.description,
                to_millis(v.updated_at)
            ])?;
        Ok(())
    }

    /// Delete a vault with its credentials, services, logs and placeholders.
    pub fn delete_vault(&self, id: &str) -> Result<bool> {
        let n = self
            .writer()
            .prepare_cached("DELETE FROM vaults WHERE id = ?1")?
            .execute(params![id])?;
        Ok(n > 0)
    }

    /// A duplicate name in the vault is [`StoreError::Conflict`].
    pub fn insert_credential(&self, c: &CredentialRow) -> Result<()> {
        self.writer()
            .prepare_cached(&format!(
                "INSERT INTO vault_credentials ({CRED_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                c.id,
                c.vault_id,
                c.name,
                c.credential_type,
                c.description,
                c.enabled,
                c.sealed,
                to_millis(c.created_at),
                to_millis(c.updated_at)
            ])
            .map_err(|e| conflict_or(e, &format!("a credential named {:?} in this vault", c.name)))?;
        Ok(())
    }

    pub fn list_credentials(&self, vault_id: &str) -> Result<Vec<CredentialRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CRED_COLS} FROM vault_credentials WHERE vault_id = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![vault_id], cred_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn get_credential(&self, vault_id: &str, id: &str) -> Result<Option<CredentialRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!(
                    "SELECT {CRED_COLS} FROM vault_credentials WHERE vault_id = ?1 AND id = ?2"
                ),
                params![vault_id, id],
                cred_row,
            )
            .optional()?)
    }

    /// Rotate in place: same id and name, new sealed value.
    pub fn rotate_credential(&self, id: &str, sealed: &[u8], at: DateTime<Utc>) -> Result<bool> {
        let n = self
            .writer()
            .prepare_cached(
                "UPDATE vault_credentials SET sealed = ?2, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, sealed, to_millis(at)])?;
        Ok(n > 0)
    }

    pub fn delete_credential(&self, vault_id: &str, id: &str) -> Result<bool> {
        let n = self
            .writer()
            .prepare_cached("DELETE FROM vault_credentials WHERE vault_id = ?1 AND id = ?2")?
            .execute(params![vault_id, id])?;
        Ok(n > 0)
    }

    /// Insert services in one transaction (a template batch binds all or none).
    pub fn insert_services(&self, rows: &[ServiceRow]) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO vault_services ({SVC_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?;
            for s in rows {
                stmt.execute(params![
                    s.id,
                    s.vault_id,
                    s.host,
                    s.auth_config.to_string(),
                    s.enabled,
                    s.description,
                    s.template_id,
                    to_millis(s.created_at)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn list_services(&self, vault_id: &str) -> Result<Vec<ServiceRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SVC_COLS} FROM vault_services WHERE vault_id = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![vault_id], svc_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_service(&self, vault_id: &str, id: &str) -> Result<bool> {
        let n = self
            .writer()
            .prepare_cached("DELETE FROM vault_services WHERE vault_id = ?1 AND id = ?2")?
            .execute(params![vault_id, id])?;
        Ok(n > 0)
    }

    /// Append request-log rows (one transaction); rows of vaults deleted meanwhile are dropped.
    pub fn insert_request_logs(&self, rows: &[RequestLogRow]) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO vault_request_logs (vault_id, created_at, vm_id, host, method, path,
                    status, credential_id, credential_name)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE EXISTS
                    (SELECT 1 FROM vaults WHERE id = ?1)",
            )?;
            for r in rows {
                stmt.execute(params![
                    r.vault_id,
                    to_millis(r.created_at),
                    r.vm_id,
                    r.host,
                    r.method,
                    r.path,
                    r.status,
                    r.credential_id,
                    r.credential_name
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Newest first.
    pub fn list_request_logs(&self, vault_id: &str, limit: i64) -> Result<Vec<RequestLogRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT vault_id, created_at, vm_id, host, method, path, status, credential_id,
                credential_name FROM vault_request_logs WHERE vault_id = ?1
             ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![vault_id, limit], |r| {
            Ok(RequestLogRow {
                vault_id: r.get(0)?,
                created_at: from_millis(r.get(1)?),
                vm_id: r.get(2)?,
                host: r.get(3)?,
                method: r.get(4)?,
                path: r.get(5)?,
                status: r.get(6)?,
                credential_id: r.get(7)?,
                credential_name: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forget request logs older than `before`; returns how many went.
    pub fn prune_request_logs(&self, before: DateTime<Utc>) -> Result<usize> {
        Ok(self
            .writer()
            .prepare_cached("DELETE FROM vault_request_logs WHERE created_at < ?1")?
            .execute(params![to_millis(before)])?)
    }

    /// The active VM running in `sandbox_id`, with its vault ids (the vault proxy's question).
    pub fn vm_of_sandbox(&self, sandbox_id: &str) -> Result<Option<(String, Vec<String>)>> {
        let row: Option<(String, String)> = self
            .reader()
            .query_row(
                "SELECT id, record FROM vms WHERE sandbox_id = ?1 AND status = 'active'
                 ORDER BY created_at DESC LIMIT 1",
                params![sandbox_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(id, record)| {
            let ids = serde_json::from_str::<serde_json::Value>(&record)
                .ok()
                .and_then(|v| v.get("vault_ids").cloned())
                .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
                .unwrap_or_default();
            (id, ids)
        }))
    }

    /// The placeholders of a VM: (credential id, token).
    pub fn vm_placeholders(&self, vm_id: &str) -> Result<Vec<(String, String)>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT credential_id, token FROM vault_placeholders WHERE vm_id = ?1",
        )?;
        let rows = stmt.query_map(params![vm_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Record placeholders (existing ones for the same VM and credential are kept).
    pub fn insert_placeholders(&self, vm_id: &str, rows: &[(String, String)]) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO vault_placeholders (vm_id, credential_id, token)
                 VALUES (?1, ?2, ?3)",
            )?;
            for (cred, token) in rows {
                stmt.execute(params![vm_id, cred, token])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
