//! Day arithmetic of the usage reports (`metering.rs` adds the metered samples up by day).

use chrono::{DateTime, NaiveDate, Utc};

/// Midnight UTC at the start of `day`.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}
