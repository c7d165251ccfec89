//! Account SSH public keys.

use crate::*;
use rusqlite::{params, Row};

const COLUMNS: &str = "id, user_id, key_type, public_key, fingerprint, comment, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<SshKeyRecord> {
    Ok(SshKeyRecord {
        id: row.get(0)?,
        user_id: row.get(1)?,
        key_type: row.get(2)?,
        public_key: row.get(3)?,
        fingerprint: row.get(4)?,
        comment: row.get(5)?,
        created_at: from_millis(row.get(6)?),
    })
}

/// An SSH key about to be stored (already parsed and fingerprinted by the caller).
pub struct NewSshKey<'a> {
    pub key_type: &'a str,
    pub public_key: &'a str,
    pub fingerprint: &'a str,
    pub comment: Option<&'a str>,
}

impl Store {
    /// Add a key; the same key twice for one user is [`StoreError::Conflict`].
    pub fn add_ssh_key(
        &self,
        user_id: i64,
        key: &NewSshKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<SshKeyRecord> {
        let conn = self.writer();
        conn.prepare_cached(
            "INSERT INTO ssh_keys (user_id, key_type, public_key, fingerprint, comment, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            user_id,
            key.key_type,
            key.public_key,
            key.fingerprint,
            key.comment,
            to_millis(now)
        ])
        .map_err(|e| conflict_or(e, &format!("SSH key {}", key.fingerprint)))?;
        Ok(SshKeyRecord {
            id: conn.last_insert_rowid(),
            user_id,
            key_type: key.key_type.to_owned(),
            public_key: key.public_key.to_owned(),
            fingerprint: key.fingerprint.to_owned(),
            comment: key.comment.map(str::to_owned),
            created_at: from_millis(to_millis(now)),
        })
    }

    pub fn list_ssh_keys(&self, user_id: i64) -> Result<Vec<SshKeyRecord>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM ssh_keys WHERE user_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([user_id], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether `user_id` registered the key with this fingerprint (`SHA256:...`).
    pub fn user_has_ssh_key(&self, user_id: i64, fingerprint: &str) -> Result<bool> {
        let n: i64 = self.reader().query_row(
            "SELECT COUNT(*) FROM ssh_keys WHERE user_id = ?1 AND fingerprint = ?2",
            params![user_id, fingerprint],
            |row| row.get(0),
        )?;
        Ok(n > 0)
    }

    pub fn count_ssh_keys(&self, user_id: i64) -> Result<u64> {
        Ok(self.reader().query_row(
            "SELECT COUNT(*) FROM ssh_keys WHERE user_id = ?1",
            [user_id],
            |r| r.get(0),
        )?)
    }

    /// Delete a key; false when the user has no such key.
    pub fn delete_ssh_key(&self, user_id: i64, id: i64) -> Result<bool> {
        let changed = self
            .writer()
            .prepare_cached("DELETE FROM ssh_keys WHERE user_id = ?1 AND id = ?2")?
            .execute([user_id, id])?;
        Ok(changed > 0)
    }
}
