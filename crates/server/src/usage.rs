//! The day-by-day usage report of `GET /v1/users/me/usage-breakdown`: vCPU-hours and
//! GiB-hours reserved by the user's sessions. Self-hosted, so the cost is always zero.

use chrono::{DateTime, Days, NaiveDate, Utc};
use instavm_api::{DailyUsage, UsageBreakdown, UsageTotals};
use instavm_store::SessionRecord;

/// Midnight UTC at the start of `day`.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Usage per day for the days `first..=last`.
pub fn breakdown(
    sessions: &[SessionRecord],
    first: NaiveDate,
    last: NaiveDate,
    now: DateTime<Utc>,
) -> UsageBreakdown {
    let mut daily = Vec::new();
    let mut totals = UsageTotals::default();
    let mut day = first;
    while day <= last {
        let start = day_start(day);
        let end = day
            .checked_add_days(Days::new(1))
            .map(day_start)
            .unwrap_or(start);
        let mut usage = DailyUsage {
            date: day,
            cost_dollars: 0.0,
            cpu_hours: 0.0,
            ram_gib_hours: 0.0,
        };
        for s in sessions {
            let s_end = s.ended_at.unwrap_or_else(|| now.min(s.expires_at));
            let from = s.created_at.max(start);
            let to = s_end.min(end);
            if to > from {
                let hours = (to - from).num_milliseconds() as f64 / 3_600_000.0;
                usage.cpu_hours += hours * f64::from(s.vcpu_count);
                usage.ram_gib_hours += hours * f64::from(s.memory_mb) / 1024.0;
            }
        }
        totals.cpu_hours += usage.cpu_hours;
        totals.ram_gib_hours += usage.ram_gib_hours;
        daily.push(usage);
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    UsageBreakdown {
        period_start: first,
        period_end: last,
        total_days: daily.len() as u32,
        totals,
        daily_breakdown: daily,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use instavm_store::{Metadata, SessionState, UsageCounters};

    fn session(from: DateTime<Utc>, to: DateTime<Utc>) -> SessionRecord {
        SessionRecord {
            id: "s".into(),
            user_id: 1,
            vm_id: "vm_1".into(),
            sandbox_id: "aaaaaaaaaaaa".into(),
            status: SessionState::Terminated,
            end_reason: None,
            memory_mb: 2048,
            vcpu_count: 2,
            lifetime_seconds: 86_400,
            metadata: Metadata::new(),
            created_at: from,
            expires_at: to,
            ended_at: Some(to),
            usage: UsageCounters::default(),
        }
    }

    #[test]
    fn splits_a_session_across_midnight() {
        let d1 = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let d2 = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        let start = day_start(d2) - chrono::Duration::hours(1);
        let end = day_start(d2) + chrono::Duration::hours(2);
        let b = breakdown(&[session(start, end)], d1, d2, end);
        assert_eq!(b.total_days, 2);
        assert!((b.daily_breakdown[0].cpu_hours - 2.0).abs() < 1e-9);
        assert!((b.daily_breakdown[1].cpu_hours - 4.0).abs() < 1e-9);
        assert!((b.totals.ram_gib_hours - 6.0).abs() < 1e-9);
        assert_eq!(b.totals.cost_dollars, 0.0);
    }
}
