//! Cron expressions with time zones: five fields (minute hour day-of-month month day-of-week),
//! evaluated in the schedule's zone so that "0 9 * * *" in Europe/Paris is 09:00 there, summer
//! and winter (croner handles the daylight-saving gaps and repeats).

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::str::FromStr as _;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

impl CronSchedule {
    /// Parse `expression` (exactly five fields, as the manifest requires) in `timezone`.
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "schedule.cron {expression:?} has {fields} fields; it needs 5 (minute hour day-of-month month day-of-week)"
            ));
        }
        let cron = Cron::from_str(expression)
            .map_err(|e| format!("schedule.cron {expression:?} is not a cron expression: {e}"))?;
        let zone: Tz = timezone.parse().map_err(|_| {
            format!("schedule.timezone {timezone:?} is not a known time zone (an IANA name such as Europe/Paris)")
        })?;
        Ok(CronSchedule { cron, zone })
    }

    /// The first time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            // croner keeps the sub-second part of `after`; schedule times are whole seconds.
            .and_then(|t| t.with_timezone(&Utc).with_nanosecond(0))
    }

    /// The times in `(from, to]`, at most `cap` of them (oldest first).
    pub fn times_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cap: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut at = from;
        while out.len() < cap {
            match self.next_after(at) {
                Some(t) if t <= to => {
                    out.push(t);
                    at = t;
                }
                _ => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_minute_and_zones() {
        let s = CronSchedule::parse("* * * * *", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 30).unwrap()
            + chrono::Duration::milliseconds(250);
        assert_eq!(
            s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 10, 1, 0).unwrap())
        );
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        let paris = CronSchedule::parse("0 9 * * *", "Europe/Paris").unwrap();
        let winter = Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap();
        assert_eq!(
            paris.next_after(winter),
            Some(Utc.with_ymd_and_hms(2026, 1, 10, 8, 0, 0).unwrap())
        );
        let summer = Utc.with_ymd_and_hms(2026, 7, 10, 0, 0, 0).unwrap();
        assert_eq!(
            paris.next_after(summer),
            Some(Utc.with_ymd_and_hms(2026, 7, 10, 7, 0, 0).unwrap())
        );
        let missed = s.times_between(t, t + chrono::Duration::minutes(5), 100);
        assert_eq!(missed.len(), 5);
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        assert!(CronSchedule::parse("* * * *", "UTC")
            .unwrap_err()
            .contains("4 fields"));
        assert!(CronSchedule::parse("61 * * * *", "UTC")
            .unwrap_err()
            .contains("not a cron expression"));
        assert!(CronSchedule::parse("* * * * *", "Mars/Olympus")
            .unwrap_err()
            .contains("time zone"));
    }
}
