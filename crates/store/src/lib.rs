//! Persistence for the control plane: one SQLite database in the data directory.
//!
//! Durability: WAL journal with `synchronous = FULL`, so every committed transaction survives a
//! `kill -9` of the server and a power cut. Migrations run when the store is opened.
//!
//! The API is synchronous (rusqlite); the server calls it from blocking threads. One connection
//! serialises writes; reads use a second connection, which WAL lets run alongside a write.

mod egress;
mod events;
mod executions;
mod metering;
mod migrations;
mod records;
mod sessions;
mod shares;
mod snapshots;
mod ssh_keys;
mod tapes;
mod users;
mod vault;
mod vms;
mod volumes;
mod webhooks;
mod workloads;

#[cfg(test)]
mod events_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vm_tests;
#[cfg(test)]
mod volume_tests;

pub use egress::EgressRow;
pub use events::{with_actor, Actor, EventFilter, EventRow, EVENT_CATALOG};
pub use metering::{CreditAllocation, MeterReading, UsageSampleRow, UsageSum};
pub use records::*;
pub use shares::ShareRow;
pub use ssh_keys::NewSshKey;
pub use tapes::{AppendError, ExpiredTape, NewTapeEvent, TapeFilter, TapeRow};
pub use users::NewApiKey;
pub use vault::{CredentialRow, RequestLogRow, ServiceRow, VaultRow};
pub use volumes::{CheckpointRow, MountRefused, MountRow, VolumeRow};
pub use webhooks::{DeliveryFilter, WebhookAttempt, WebhookDeliveryRow, WebhookEndpointRow};
pub use workloads::{NewRun, RunRow, WorkloadRow};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database migration to version {version} failed: {source}")]
    Migration {
        version: usize,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the database {path} has schema version {found}, newer than this build knows ({known}); upgrade instavm")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    /// A unique constraint refused the write (duplicate email, key or fingerprint).
    #[error("already exists: {0}")]
    Conflict(String),
    /// A record could not be encoded as JSON (a bug).
    #[error("encoding a record: {0}")]
    Encode(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl Store {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let open = |path: &Path| -> Result<Connection> {
            let conn = Connection::open(path).map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
            configure(&conn).map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
            Ok(conn)
        };
        let mut writer = open(path)?;
        migrations::run(&mut writer, path)?;
        let reader = open(path)?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            }),
        })
    }

    /// Open a private in-memory database (tests).
    pub fn open_in_memory() -> Result<Store> {
        // Two connections to one shared in-memory database; the name is unique per store.
        let name = format!(
            "file:instavm-mem-{}?mode=memory&cache=shared",
            MEMORY_DB_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let open = || -> Result<Connection> {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                | rusqlite::OpenFlags::SQLITE_OPEN_URI;
            let conn =
                Connection::open_with_flags(&name, flags).map_err(|source| StoreError::Open {
                    path: PathBuf::from(&name),
                    source,
                })?;
            conn.execute_batch("PRAGMA foreign_keys = ON;")?;
            events::register_actor_functions(&conn)?;
            Ok(conn)
        };
        let mut writer = open()?;
        migrations::run(&mut writer, Path::new(":memory:"))?;
        let reader = open()?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            }),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied (rusqlite rolls
        // back on drop), so a poisoned lock is still safe to use.
        self.inner.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.inner.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

static MEMORY_DB_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Writes run cached statements: a statement on a table with triggers compiles the trigger
    // programs into itself, which costs more than the write (benches/audit.rs).
    conn.set_prepared_statement_cache_capacity(128);
    events::register_actor_functions(conn)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )
}

/// Timestamps are stored as integer milliseconds since the epoch: compact, and they sort.
fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Map a unique-constraint failure to [`StoreError::Conflict`].
fn conflict_or(err: rusqlite::Error, what: &str) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Sqlite(err),
    }
}
