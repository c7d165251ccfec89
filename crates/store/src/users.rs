//! Users and their API keys.

use crate::*;
use instavm_api::UserLimits;
use rusqlite::{params, OptionalExtension, Row};

const USER_COLUMNS: &str = "id, email, name, is_admin, created_at";
const KEY_COLUMNS: &str = "id, user_id, prefix, description, is_active, created_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        is_admin: row.get(3)?,
        created_at: from_millis(row.get(4)?),
    })
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.get(0)?,
        user_id: row.get(1)?,
        prefix: row.get(2)?,
        description: row.get(3)?,
        is_active: row.get(4)?,
        created_at: from_millis(row.get(5)?),
    })
}

impl Store {
    /// Create a user. A duplicate email (case-insensitive) is [`StoreError::Conflict`].
    pub fn create_user(
        &self,
        email: &str,
        name: Option<&str>,
        is_admin: bool,
        now: DateTime<Utc>,
    ) -> Result<UserRecord> {
        let conn = self.writer();
        conn.prepare_cached(
            "INSERT INTO users (email, name, is_admin, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![email, name, is_admin, to_millis(now)])
        .map_err(|e| conflict_or(e, &format!("a user with email {email}")))?;
        let id = conn.last_insert_rowid();
        Ok(UserRecord {
            id,
            email: email.to_owned(),
            name: name.map(str::to_owned),
            is_admin,
            created_at: from_millis(to_millis(now)),
        })
    }

    /// Create a user together with its first API key, in one transaction.
    pub fn create_user_with_key(
        &self,
        email: &str,
        name: Option<&str>,
        key: &NewApiKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<(UserRecord, ApiKeyRecord)> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO users (email, name, is_admin, created_at) VALUES (?1, ?2, 0, ?3)",
        )?
        .execute(params![email, name, to_millis(now)])
        .map_err(|e| conflict_or(e, &format!("a user with email {email}")))?;
        let user_id = tx.last_insert_rowid();
        let key = insert_key(&tx, user_id, key, now)?;
        tx.commit()?;
        let user = UserRecord {
            id: user_id,
            email: email.to_owned(),
            name: name.map(str::to_owned),
            is_admin: false,
            created_at: from_millis(to_millis(now)),
        };
        Ok((user, key))
    }

    /// The built-in admin user, created on first use.
    pub fn ensure_admin_user(&self, email: &str, now: DateTime<Utc>) -> Result<UserRecord> {
        let existing = self
            .reader()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE is_admin = 1 ORDER BY id LIMIT 1"),
                [],
                user_from_row,
            )
            .optional()?;
        match existing {
            Some(user) => Ok(user),
            None => self.create_user(email, Some("Administrator"), true, now),
        }
    }

    pub fn get_user(&self, id: i64) -> Result<Option<UserRecord>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id],
                user_from_row,
            )
            .optional()?)
    }

    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))?;
        let rows = stmt.query_map([], user_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The user owning an active key with this hash.
    pub fn user_by_key_hash(&self, hash: &[u8]) -> Result<Option<UserRecord>> {
        Ok(self
            .reader()
            .query_row(
                "SELECT u.id, u.email, u.name, u.is_admin, u.created_at
                 FROM api_keys k JOIN users u ON u.id = k.user_id
                 WHERE k.key_hash = ?1 AND k.is_active = 1",
                [hash],
                user_from_row,
            )
            .optional()?)
    }

    pub fn create_api_key(
        &self,
        user_id: i64,
        key: &NewApiKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<ApiKeyRecord> {
        let conn = self.writer();
        insert_key(&conn, user_id, key, now)
    }

    pub fn count_api_keys(&self, user_id: i64) -> Result<u64> {
        Ok(self.reader().query_row(
            "SELECT COUNT(*) FROM api_keys WHERE user_id = ?1",
            [user_id],
            |r| r.get(0),
        )?)
    }

    pub fn list_api_keys(&self, user_id: i64) -> Result<Vec<ApiKeyRecord>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([user_id], key_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn get_api_key(&self, user_id: i64, id: i64) -> Result<Option<ApiKeyRecord>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = ?1 AND id = ?2"),
                [user_id, id],
                key_from_row,
            )
            .optional()?)
    }

    /// Change a key's description and/or active flag; `None` when the user has no such key.
    pub fn update_api_key(
        &self,
        user_id: i64,
        id: i64,
        description: Option<&str>,
        is_active: Option<bool>,
    ) -> Result<Option<ApiKeyRecord>> {
        {
            let conn = self.writer();
            let changed = conn
                .prepare_cached(
                    "UPDATE api_keys SET description = COALESCE(?3, description),
                                     is_active = COALESCE(?4, is_active)
                 WHERE user_id = ?1 AND id = ?2",
                )?
                .execute(params![user_id, id, description, is_active])?;
            if changed == 0 {
                return Ok(None);
            }
        }
        self.get_api_key(user_id, id)
    }

    /// Delete a key; false when the user has no such key.
    pub fn delete_api_key(&self, user_id: i64, id: i64) -> Result<bool> {
        let changed = self
            .writer()
            .prepare_cached("DELETE FROM api_keys WHERE user_id = ?1 AND id = ?2")?
            .execute([user_id, id])?;
        Ok(changed > 0)
    }
}

/// A key about to be stored: only its hash and a short display prefix.
pub struct NewApiKey<'a> {
    pub hash: &'a [u8],
    pub prefix: &'a str,
    pub description: Option<&'a str>,
}

fn insert_key(
    conn: &rusqlite::Connection,
    user_id: i64,
    key: &NewApiKey<'_>,
    now: DateTime<Utc>,
) -> Result<ApiKeyRecord> {
    conn.prepare_cached(
        "INSERT INTO api_keys (user_id, key_hash, prefix, description, is_active, created_at)
         VALUES (?1, ?2, ?3, ?4, 1, ?5)",
    )?
    .execute(params![
        user_id,
        key.hash,
        key.prefix,
        key.description,
        to_millis(now)
    ])
    .map_err(|e| conflict_or(e, "an API key with this hash"))?;
    Ok(ApiKeyRecord {
        id: conn.last_insert_rowid(),
        user_id,
        prefix: key.prefix.to_owned(),
        description: key.description.map(str::to_owned),
        is_active: true,
        created_at: from_millis(to_millis(now)),
    })
}

impl Store {
    /// The operator's overrides for a user and when they were set (`None`: no overrides).
    pub fn user_limits(&self, user_id: i64) -> Result<Option<(UserLimits, DateTime<Utc>)>> {
        let row: Option<(String, i64)> = self
            .reader()
            .query_row(
                "SELECT overrides, updated_at FROM user_limits WHERE user_id = ?1",
                [user_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(json, at)| {
            let overrides = serde_json::from_str(&json)
                .map_err(|e| StoreError::Encode(format!("user_limits of user {user_id}: {e}")))?;
            Ok((overrides, from_millis(at)))
        })
        .transpose()
    }

    /// Replace a user's overrides; empty ones remove the row (the server's limits apply).
    pub fn set_user_limits(
        &self,
        user_id: i64,
        overrides: &UserLimits,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if *overrides == UserLimits::default() {
            self.writer()
                .execute("DELETE FROM user_limits WHERE user_id = ?1", [user_id])?;
            return Ok(());
        }
        self.writer().execute(
            "INSERT INTO user_limits (user_id, overrides, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id) DO UPDATE SET overrides = ?2, updated_at = ?3",
            params![
                user_id,
                serde_json::to_string(overrides).map_err(|e| StoreError::Encode(e.to_string()))?,
                to_millis(now)
            ],
        )?;
        Ok(())
    }
}
