//! Metering samples and credit allocations (spec §19, §20.2).

use crate::*;
use rusqlite::{params, OptionalExtension};

/// One reading of a session's sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterReading {
    pub session_id: String,
    pub user_id: i64,
    pub vm_id: Option<String>,
    /// The cgroup's cumulative CPU time.
    pub cpu_total: f64,
    pub memory_bytes: u64,
}

/// Usage added up over a span (one bucket of a series, or a whole period).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageSum {
    pub cpu_seconds: f64,
    pub mem_gib_seconds: f64,
}

/// One sample as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSampleRow {
    pub at: DateTime<Utc>,
    pub session_id: String,
    pub vm_id: Option<String>,
    pub usage_type: String,
    pub cpu_seconds: f64,
    pub mem_gib_seconds: f64,
}

/// The operator's grant to one user.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CreditAllocation {
    pub dollars: f64,
    pub browser_automation: f64,
}

impl Store {
    /// Record readings taken at `now`: each becomes a sample of the CPU used since the
    /// session's last reading and of memory held over the time since (at most `max_gap`
    /// seconds of it, so a server that was down does not bill its downtime). One transaction.
    pub fn record_meter_readings(
        &self,
        readings: &[MeterReading],
        now: DateTime<Utc>,
        max_gap: f64,
    ) -> Result<usize> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let mut n = 0;
        for r in readings {
            let last: Option<(f64, i64)> = tx
                .prepare_cached("SELECT cpu_total, at FROM usage_meters WHERE session_id = ?1")?
                .query_row([&r.session_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let (cpu, gap) = match last {
                // A counter that went down belongs to a new sandbox (a resume): all of it is new.
                Some((prev, at)) => (
                    if r.cpu_total >= prev {
                        r.cpu_total - prev
                    } else {
                        r.cpu_total
                    },
                    ((to_millis(now) - at) as f64 / 1000.0).clamp(0.0, max_gap),
                ),
                None => (r.cpu_total, 0.0),
            };
            let gib_seconds = r.memory_bytes as f64 / (1u64 << 30) as f64 * gap;
            tx.prepare_cached(
                "INSERT INTO usage_meters (session_id, cpu_total, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (session_id) DO UPDATE SET cpu_total = ?2, at = ?3",
            )?
            .execute(params![r.session_id, r.cpu_total, to_millis(now)])?;
            if cpu > 0.0 || gib_seconds > 0.0 {
                tx.prepare_cached(
                    "INSERT INTO usage_samples (seq, user_id, session_id, vm_id, at, cpu_seconds,
                         mem_gib_seconds)
                     VALUES ((SELECT IFNULL(MAX(seq), 0) + 1 FROM usage_samples), ?1, ?2, ?3, ?4,
                         ?5, ?6)",
                )?
                .execute(params![
                    r.user_id,
                    r.session_id,
                    r.vm_id,
                    to_millis(now),
                    cpu,
                    gib_seconds
                ])?;
                n += 1;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// A user's usage in `[start, end)`, in buckets of `bucket` seconds from `start`.
    pub fn usage_series(
        &self,
        user_id: i64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        bucket_seconds: i64,
    ) -> Result<Vec<(i64, UsageSum)>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT (at - ?2) / ?4 AS b, SUM(cpu_seconds), SUM(mem_gib_seconds) FROM usage_samples
             WHERE user_id = ?1 AND at >= ?2 AND at < ?3 GROUP BY b ORDER BY b",
        )?;
        let rows = stmt.query_map(
            params![
                user_id,
                to_millis(start),
                to_millis(end),
                bucket_seconds.max(1) * 1000
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    UsageSum {
                        cpu_seconds: r.get(1)?,
                        mem_gib_seconds: r.get(2)?,
                    },
                ))
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A user's samples in `[start, end)`, newest first.
    pub fn usage_samples(
        &self,
        user_id: i64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<UsageSampleRow>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT at, session_id, vm_id, usage_type, cpu_seconds, mem_gib_seconds
             FROM usage_samples WHERE user_id = ?1 AND at >= ?2 AND at < ?3
             ORDER BY seq DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![user_id, to_millis(start), to_millis(end), limit as i64],
            |r| {
                Ok(UsageSampleRow {
                    at: from_millis(r.get(0)?),
                    session_id: r.get(1)?,
                    vm_id: r.get(2)?,
                    usage_type: r.get(3)?,
                    cpu_seconds: r.get(4)?,
                    mem_gib_seconds: r.get(5)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn credit_allocation(&self, user_id: i64) -> Result<Option<CreditAllocation>> {
        Ok(self
            .reader()
            .query_row(
                "SELECT dollars, browser_automation FROM credit_allocations WHERE user_id = ?1",
                [user_id],
                |r| {
                    Ok(CreditAllocation {
                        dollars: r.get(0)?,
                        browser_automation: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn set_credit_allocation(
        &self,
        user_id: i64,
        a: CreditAllocation,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.writer().execute(
            "INSERT INTO credit_allocations (user_id, dollars, browser_automation, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id) DO UPDATE SET dollars = ?2, browser_automation = ?3,
                 updated_at = ?4",
            params![user_id, a.dollars, a.browser_automation, to_millis(now)],
        )?;
        Ok(())
    }
}
