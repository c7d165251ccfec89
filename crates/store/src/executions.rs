//! Asynchronous executions (tasks) and their results.

use crate::*;
use rusqlite::{params, OptionalExtension, Row};

const COLUMNS: &str = "id, session_id, user_id, language, status, stdout, stderr, exit_code,
    timed_out, execution_time, cpu_time, error, created_at, completed_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ExecutionRow> {
    let status: String = row.get(4)?;
    Ok(ExecutionRow {
        id: row.get(0)?,
        session_id: row.get(1)?,
        user_id: row.get(2)?,
        language: row.get(3)?,
        status: TaskStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown task status {status:?}").into(),
            )
        })?,
        stdout: row.get(5)?,
        stderr: row.get(6)?,
        exit_code: row.get(7)?,
        timed_out: row.get(8)?,
        execution_time: row.get(9)?,
        cpu_time: row.get(10)?,
        error: row.get(11)?,
        created_at: from_millis(row.get(12)?),
        completed_at: row.get::<_, Option<i64>>(13)?.map(from_millis),
    })
}

impl Store {
    /// Record a new pending task.
    pub fn insert_execution(
        &self,
        id: &str,
        session_id: &str,
        user_id: i64,
        language: &str,
        now: DateTime<Utc>,
    ) -> Result<ExecutionRow> {
        self.writer().execute(
            "INSERT INTO executions (id, session_id, user_id, language, status, created_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
            params![id, session_id, user_id, language, to_millis(now)],
        )?;
        Ok(ExecutionRow {
            id: id.to_owned(),
            session_id: session_id.to_owned(),
            user_id,
            language: language.to_owned(),
            status: TaskStatus::Pending,
            stdout: String::new(),
            stderr: String::new(),
            exit_code: None,
            timed_out: false,
            execution_time: None,
            cpu_time: None,
            error: None,
            created_at: from_millis(to_millis(now)),
            completed_at: None,
        })
    }

    /// Store the result of a task that ran to the end.
    pub fn complete_execution(
        &self,
        id: &str,
        result: &ExecutionResult,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.writer().execute(
            "UPDATE executions SET status = 'complete', stdout = ?2, stderr = ?3, exit_code = ?4,
                 timed_out = ?5, execution_time = ?6, cpu_time = ?7, completed_at = ?8
             WHERE id = ?1 AND status = 'pending'",
            params![
                id,
                result.stdout,
                result.stderr,
                result.exit_code,
                result.timed_out,
                result.execution_time,
                result.cpu_time,
                to_millis(at)
            ],
        )?;
        Ok(())
    }

    /// Mark a pending task as failed (it could not run to the end).
    pub fn fail_execution(&self, id: &str, error: &str, at: DateTime<Utc>) -> Result<()> {
        self.writer().execute(
            "UPDATE executions SET status = 'failed', error = ?2, completed_at = ?3
             WHERE id = ?1 AND status = 'pending'",
            params![id, error, to_millis(at)],
        )?;
        Ok(())
    }

    /// Fail every task still pending (at start: they were interrupted by a restart).
    pub fn fail_pending_executions(&self, error: &str, at: DateTime<Utc>) -> Result<usize> {
        Ok(self.writer().execute(
            "UPDATE executions SET status = 'failed', error = ?1, completed_at = ?2
             WHERE status = 'pending'",
            params![error, to_millis(at)],
        )?)
    }

    /// The task with this id if, and only if, it belongs to `user_id`.
    pub fn get_user_execution(&self, user_id: i64, id: &str) -> Result<Option<ExecutionRow>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM executions WHERE id = ?1 AND user_id = ?2"),
                params![id, user_id],
                from_row,
            )
            .optional()?)
    }

    pub fn count_pending_executions(&self, user_id: i64) -> Result<u64> {
        Ok(self.reader().query_row(
            "SELECT COUNT(*) FROM executions WHERE user_id = ?1 AND status = 'pending'",
            [user_id],
            |r| r.get(0),
        )?)
    }
}
