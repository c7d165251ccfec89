//! Workloads (cron and job deploys) and their runs. The scheduler's promises live here: a due
//! cron time becomes a run in the same transaction that moves the workload's `next_run_at`
//! past it, and a queued run becomes `running` by a conditional update, so two ticks (or a
//! restart between them) never start one run twice.

use crate::*;
use rusqlite::{params, OptionalExtension, Row};

/// A workload as stored. JSON columns hold the wire shapes (schedule, triggers, vm, env).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRow {
    pub id: String,
    pub user_id: i64,
    pub slug: String,
    pub kind: String,
    pub version: String,
    pub status: String,
    pub snapshot_id: String,
    pub workdir: String,
    pub start_command: String,
    pub env: String,
    pub vm: String,
    pub schedule: Option<String>,
    pub triggers: String,
    pub webhook_secret: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const WORKLOAD_COLUMNS: &str = "id, user_id, slug, kind, version, status, snapshot_id, workdir, \
     start_command, env, vm, schedule, triggers, webhook_secret, next_run_at, created_at, updated_at";

fn workload_from_row(r: &Row<'_>) -> rusqlite::Result<WorkloadRow> {
    Ok(WorkloadRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        slug: r.get(2)?,
        kind: r.get(3)?,
        version: r.get(4)?,
        status: r.get(5)?,
        snapshot_id: r.get(6)?,
        workdir: r.get(7)?,
        start_command: r.get(8)?,
        env: r.get(9)?,
        vm: r.get(10)?,
        schedule: r.get(11)?,
        triggers: r.get(12)?,
        webhook_secret: r.get(13)?,
        next_run_at: r.get::<_, Option<i64>>(14)?.map(from_millis),
        created_at: from_millis(r.get(15)?),
        updated_at: from_millis(r.get(16)?),
    })
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub workload_id: String,
    pub user_id: i64,
    pub trigger: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub attempt: u32,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub not_before: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub vm_id: Option<String>,
    pub error: Option<String>,
    pub payload: Option<String>,
}

const RUN_COLUMNS: &str = "id, workload_id, user_id, trigger, status, exit_code, attempt, \
     scheduled_for, not_before, created_at, started_at, finished_at, vm_id, error, payload";

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        workload_id: r.get(1)?,
        user_id: r.get(2)?,
        trigger: r.get(3)?,
        status: r.get(4)?,
        exit_code: r.get(5)?,
        attempt: r.get(6)?,
        scheduled_for: r.get::<_, Option<i64>>(7)?.map(from_millis),
        not_before: from_millis(r.get(8)?),
        created_at: from_millis(r.get(9)?),
        started_at: r.get::<_, Option<i64>>(10)?.map(from_millis),
        finished_at: r.get::<_, Option<i64>>(11)?.map(from_millis),
        vm_id: r.get(12)?,
        error: r.get(13)?,
        payload: r.get(14)?,
    })
}

/// A run to queue.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub trigger: String,
    /// `queued`, or `skipped` for a schedule time the concurrency policy drops.
    pub status: String,
    pub attempt: u32,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub not_before: DateTime<Utc>,
    pub payload: Option<String>,
    pub error: Option<String>,
}

impl Store {
    /// Insert the workload, or replace the one of the same (user, slug): its id, history and
    /// creation time stay. Returns the stored row.
    pub fn upsert_workload(&self, w: &WorkloadRow) -> Result<WorkloadRow> {
        let conn = self.writer();
        conn.prepare_cached(&format!(
            "INSERT INTO workloads ({WORKLOAD_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
             ON CONFLICT (user_id, slug) DO UPDATE SET kind = excluded.kind, \
             version = excluded.version, snapshot_id = excluded.snapshot_id, \
             workdir = excluded.workdir, start_command = excluded.start_command, \
             env = excluded.env, vm = excluded.vm, schedule = excluded.schedule, \
             triggers = excluded.triggers, webhook_secret = excluded.webhook_secret, \
             next_run_at = excluded.next_run_at, updated_at = excluded.updated_at"
        ))?
        .execute(params![
            w.id,
            w.user_id,
            w.slug,
            w.kind,
            w.version,
            w.status,
            w.snapshot_id,
            w.workdir,
            w.start_command,
            w.env,
            w.vm,
            w.schedule,
            w.triggers,
            w.webhook_secret,
            w.next_run_at.map(to_millis),
            to_millis(w.created_at),
            to_millis(w.updated_at),
        ])?;
        let stored = conn
            .prepare_cached(&format!(
                "SELECT {WORKLOAD_COLUMNS} FROM workloads WHERE user_id = ?1 AND slug = ?2"
            ))?
            .query_row(params![w.user_id, w.slug], workload_from_row)?;
        Ok(stored)
    }

    pub fn get_workload(&self, user_id: i64, slug: &str) -> Result<Option<WorkloadRow>> {
        self.reader()
            .prepare_cached(&format!(
                "SELECT {WORKLOAD_COLUMNS} FROM workloads WHERE user_id = ?1 AND slug = ?2"
            ))?
            .query_row(params![user_id, slug], workload_from_row)
            .optional()
            .map_err(Into::into)
    }

    pub fn get_workload_by_id(&self, id: &str) -> Result<Option<WorkloadRow>> {
        self.reader()
            .prepare_cached(&format!(
                "SELECT {WORKLOAD_COLUMNS} FROM workloads WHERE id = ?1"
            ))?
            .query_row(params![id], workload_from_row)
            .optional()
            .map_err(Into::into)
    }

    pub fn list_workloads(&self, user_id: i64) -> Result<Vec<WorkloadRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {WORKLOAD_COLUMNS} FROM workloads WHERE user_id = ?1 ORDER BY slug"
        ))?;
        let rows = stmt.query_map(params![user_id], workload_from_row)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Deletes the workload and its history; `false` when there was none.
    pub fn delete_workload(&self, user_id: i64, slug: &str) -> Result<bool> {
        Ok(self
            .writer()
            .prepare_cached("DELETE FROM workloads WHERE user_id = ?1 AND slug = ?2")?
            .execute(params![user_id, slug])?
            > 0)
    }

    /// Pause or resume; resuming sets the next schedule time computed by the caller.
    pub fn set_workload_status(
        &self,
        id: &str,
        status: &str,
        next_run_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.writer()
            .prepare_cached(
                "UPDATE workloads SET status = ?2, next_run_at = ?3, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![
                id,
                status,
                next_run_at.map(to_millis),
                to_millis(now)
            ])?;
        Ok(())
    }

    /// Active cron workloads whose next time has come.
    pub fn due_workloads(&self, now: DateTime<Utc>) -> Result<Vec<WorkloadRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {WORKLOAD_COLUMNS} FROM workloads \
             WHERE status = 'active' AND next_run_at IS NOT NULL AND next_run_at <= ?1"
        ))?;
        let rows = stmt.query_map(params![to_millis(now)], workload_from_row)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Insert the runs for the schedule times that came and move `next_run_at` to `next`, in
    /// one transaction, and only if `next_run_at` is still `expected` (a concurrent tick or a
    /// redeploy moved it: nothing happens, `false`).
    pub fn advance_schedule(
        &self,
        workload_id: &str,
        user_id: i64,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        runs: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let moved = tx
            .prepare_cached(
                "UPDATE workloads SET next_run_at = ?3 WHERE id = ?1 AND next_run_at = ?2",
            )?
            .execute(params![
                workload_id,
                to_millis(expected),
                next.map(to_millis)
            ])?;
        if moved == 0 {
            return Ok(false);
        }
        for run in runs {
            insert_run(&tx, workload_id, user_id, run, now)?;
        }
        tx.commit()?;
        Ok(true)
    }

    pub fn insert_run(
        &self,
        workload_id: &str,
        user_id: i64,
        run: &NewRun,
        now: DateTime<Utc>,
    ) -> Result<()> {
        insert_run(&self.writer(), workload_id, user_id, run, now)
    }

    /// Queued runs whose time has come, oldest first.
    pub fn ready_runs(&self, now: DateTime<Utc>) -> Result<Vec<RunRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM workload_runs \
             WHERE status = 'queued' AND not_before <= ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![to_millis(now)], run_from_row)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Runs in `running`, for one workload or (`None`) everywhere.
    pub fn running_runs(&self, workload_id: Option<&str>) -> Result<Vec<RunRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM workload_runs WHERE status = 'running' \
             AND (?1 IS NULL OR workload_id = ?1)"
        ))?;
        let rows = stmt.query_map(params![workload_id], run_from_row)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// `queued` → `running`; `false` when someone else took it.
    pub fn claim_run(&self, run_id: &str, now: DateTime<Utc>) -> Result<bool> {
        Ok(self
            .writer()
            .prepare_cached(
                "UPDATE workload_runs SET status = 'running', started_at = ?2 \
                 WHERE id = ?1 AND status = 'queued'",
            )?
            .execute(params![run_id, to_millis(now)])?
            > 0)
    }

    pub fn set_run_vm(&self, run_id: &str, vm_id: &str) -> Result<()> {
        self.writer()
            .prepare_cached("UPDATE workload_runs SET vm_id = ?2 WHERE id = ?1")?
            .execute(params![run_id, vm_id])?;
        Ok(())
    }

    /// Record how a run ended, with its output, and queue its retry (if any) in the same
    /// transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_run(
        &self,
        run_id: &str,
        status: &str,
        exit_code: Option<i32>,
        error: Option<&str>,
        stdout: &str,
        stderr: &str,
        now: DateTime<Utc>,
        retry: Option<(&str, i64, &NewRun)>,
    ) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        tx.prepare_cached(
            "UPDATE workload_runs SET status = ?2, exit_code = ?3, error = ?4, stdout = ?5, \
             stderr = ?6, finished_at = ?7 WHERE id = ?1",
        )?
        .execute(params![
            run_id,
            status,
            exit_code,
            error,
            stdout,
            stderr,
            to_millis(now)
        ])?;
        if let Some((workload_id, user_id, run)) = retry {
            insert_run(&tx, workload_id, user_id, run, now)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn get_run(&self, run_id: &str) -> Result<Option<RunRow>> {
        self.reader()
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM workload_runs WHERE id = ?1"
            ))?
            .query_row(params![run_id], run_from_row)
            .optional()
            .map_err(Into::into)
    }

    pub fn run_logs(&self, run_id: &str) -> Result<Option<(String, String)>> {
        self.reader()
            .prepare_cached("SELECT stdout, stderr FROM workload_runs WHERE id = ?1")?
            .query_row(params![run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(Into::into)
    }

    /// Newest first.
    pub fn list_runs(&self, workload_id: &str, limit: u32) -> Result<Vec<RunRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM workload_runs WHERE workload_id = ?1 \
             ORDER BY created_at DESC, id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![workload_id, limit], run_from_row)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }
}

fn insert_run(
    conn: &rusqlite::Connection,
    workload_id: &str,
    user_id: i64,
    run: &NewRun,
    now: DateTime<Utc>,
) -> Result<()> {
    let finished = (run.status == "skipped").then(|| to_millis(now));
    conn.prepare_cached(
        "INSERT INTO workload_runs (id, workload_id, user_id, trigger, status, attempt, \
         scheduled_for, not_before, created_at, payload, error, finished_at) \
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        run.id,
        workload_id,
        user_id,
        run.trigger,
        run.attempt,
        run.scheduled_for.map(to_millis),
        to_millis(run.not_before),
        to_millis(now),
        run.payload,
        run.error,
        finished,
    ])?;
    if run.status != "queued" {
        // Through an update, so the event trigger for finished runs sees it.
        conn.prepare_cached("UPDATE workload_runs SET status = ?2 WHERE id = ?1")?
            .execute(params![run.id, run.status])?;
    }
    Ok(())
}
