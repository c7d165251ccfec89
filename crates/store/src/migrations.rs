//! Schema migrations, applied in order at open. `PRAGMA user_version` records how many ran.
//! Never edit a released migration; append a new one.

use crate::{Result, StoreError};
use rusqlite::Connection;
use std::path::Path;

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: accounts, sessions, executions.
    "
    CREATE TABLE users (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        email       TEXT NOT NULL UNIQUE COLLATE NOCASE,
        name        TEXT,
        is_admin    INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        key_hash    BLOB NOT NULL UNIQUE,
        prefix      TEXT NOT NULL,
        description TEXT,
        is_active   INTEGER NOT NULL DEFAULT 1,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX api_keys_user ON api_keys(user_id);
    CREATE TABLE ssh_keys (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        key_type    TEXT NOT NULL,
        public_key  TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        comment     TEXT,
        created_at  INTEGER NOT NULL,
        UNIQUE (user_id, fingerprint)
    );
    CREATE TABLE sessions (
        id                TEXT PRIMARY KEY,
        user_id           INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        vm_id             TEXT NOT NULL UNIQUE,
        sandbox_id        TEXT NOT NULL,
        status            TEXT NOT NULL,
        end_reason        TEXT,
        memory_mb         INTEGER NOT NULL,
        vcpu_count        INTEGER NOT NULL,
        lifetime_seconds  INTEGER NOT NULL,
        metadata          TEXT NOT NULL,
        created_at        INTEGER NOT NULL,
        expires_at        INTEGER NOT NULL,
        ended_at          INTEGER,
        execution_count   INTEGER NOT NULL DEFAULT 0,
        execution_seconds REAL NOT NULL DEFAULT 0,
        cpu_seconds       REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_user ON sessions(user_id, created_at);
    CREATE INDEX sessions_status ON sessions(status);
    CREATE INDEX sessions_sandbox ON sessions(sandbox_id);
    CREATE TABLE executions (
        id             TEXT PRIMARY KEY,
        session_id     TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        language       TEXT NOT NULL,
        status         TEXT NOT NULL,
        stdout         TEXT NOT NULL DEFAULT '',
        stderr         TEXT NOT NULL DEFAULT '',
        exit_code      INTEGER,
        timed_out      INTEGER NOT NULL DEFAULT 0,
        execution_time REAL,
        cpu_time       REAL,
        error          TEXT,
        created_at     INTEGER NOT NULL,
        completed_at   INTEGER
    );
    CREATE INDEX executions_status ON executions(status);
    CREATE INDEX executions_user ON executions(user_id, status);
    ",
    // 2: VMs and their disk snapshots. The record is the wire record as JSON; the columns
    // beside it are what queries filter on, kept in step by every write.
    "
    CREATE TABLE vms (
        id          TEXT PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        session_id  TEXT NOT NULL,
        sandbox_id  TEXT,
        status      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        record      TEXT NOT NULL,
        env         TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX vms_user ON vms(user_id, created_at);
    CREATE INDEX vms_status ON vms(status);
    CREATE INDEX vms_session ON vms(session_id);
    INSERT INTO vms (id, user_id, session_id, sandbox_id, status, created_at, record)
        SELECT vm_id, user_id, id, sandbox_id,
               CASE status WHEN 'active' THEN 'active' ELSE 'terminated' END, created_at,
               json_object(
                 'vm_id', vm_id, 'id', vm_id, 'session_id', id,
                 'status', CASE status WHEN 'active' THEN 'active' ELSE 'terminated' END,
                 'created_at', strftime('%Y-%m-%dT%H:%M:%fZ', created_at / 1000.0, 'unixepoch'),
                 'expires_at', strftime('%Y-%m-%dT%H:%M:%fZ', expires_at / 1000.0, 'unixepoch'),
                 'end_reason', end_reason,
                 'memory_mb', memory_mb, 'vcpu_count', vcpu_count,
                 'vm_lifetime_seconds', lifetime_seconds, 'metadata', json(metadata),
                 'image_variant', 'standard')
        FROM sessions;
    CREATE TABLE snapshots (
        id          TEXT PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        status      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        record      TEXT NOT NULL
    );
    CREATE INDEX snapshots_user ON snapshots(user_id, created_at);
    CREATE INDEX snapshots_status ON snapshots(status);
    ",
    // 3: volumes, checkpoints, mounts
    "
    CREATE TABLE volumes (
        id          TEXT PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        quota_bytes INTEGER NOT NULL,
        used_bytes  INTEGER NOT NULL DEFAULT 0,
        status      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        UNIQUE (user_id, name)
    );
    CREATE TABLE volume_checkpoints (
        id          TEXT PRIMARY KEY,
        volume_id   TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
        name        TEXT,
        status      TEXT NOT NULL,
        size_bytes  INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX volume_checkpoints_volume ON volume_checkpoints(volume_id, created_at);
    CREATE TABLE vm_mounts (
        vm_id         TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
        volume_id     TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
        mount_path    TEXT NOT NULL,
        mode          TEXT NOT NULL,
        checkpoint_id TEXT,
        created_at    INTEGER NOT NULL,
        PRIMARY KEY (vm_id, mount_path)
    );
    CREATE INDEX vm_mounts_volume ON vm_mounts(volume_id);
    ",
    // 4: egress policies. One row per VM or session that was given a policy (none: the
    // default, open one); the policy is the five fields of spec/api.md §2 as JSON.
    "
    CREATE TABLE egress_policies (
        target_type TEXT NOT NULL CHECK (target_type IN ('vm', 'session')),
        target_id   TEXT NOT NULL,
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        policy      TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (target_type, target_id)
    );
    CREATE INDEX egress_policies_user ON egress_policies(user_id);
    ",
    // 5: shares. One live share per (session, port): the session outlives resumes, which
    // give the VM a new id. `listen_port` is the proxy port in ports mode (NULL once released).
    "
    CREATE TABLE shares (
        id          TEXT PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        session_id  TEXT NOT NULL,
        vm_id       TEXT NOT NULL,
        port        INTEGER NOT NULL,
        is_public   INTEGER NOT NULL,
        token       TEXT NOT NULL,
        listen_port INTEGER,
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    );
    CREATE UNIQUE INDEX shares_live ON shares(session_id, port) WHERE revoked_at IS NULL;
    CREATE UNIQUE INDEX shares_listen_port ON shares(listen_port) WHERE listen_port IS NOT NULL;
    CREATE INDEX shares_user ON shares(user_id);
    ",
    // 6: audit events, written by triggers in the transaction of each change.
    include_str!("sql/events.sql"),
    // 7: webhook endpoints and their delivery queue.
    include_str!("sql/webhooks.sql"),
    // 8: secrets vaults: vaults, sealed credentials, services, request logs, placeholders.
    include_str!("sql/vault.sql"),
    // 9: metering samples and credit allocations.
    include_str!("sql/metering.sql"),
    // 10: workloads (cron and job deploys) and their runs.
    include_str!("sql/workloads.sql"),
    // 11: per-user quota overrides.
    include_str!("sql/user_limits.sql"),
    // 12: tapes, their events and filesystem checkpoints.
    include_str!("sql/tapes.sql"),
];

pub(crate) fn run(conn: &mut Connection, path: &Path) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > MIGRATIONS.len() as i64 {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = index + 1;
        let fail = |source| StoreError::Migration { version, source };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}
