//! `tag:yaml.org,2002:timestamp`: PyYAML builds a `datetime.date` or `datetime.datetime`, and
//! Python's constructors raise `ValueError` for impossible dates such as `2024-02-30`.

use std::sync::LazyLock;

use regex::Regex;

use crate::py::{PyError, PyExc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Date {
    pub year: u32,
    pub month: u32,
    pub day: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub microsecond: u32,
    /// UTC offset in minutes; `None` for a naive datetime.
    pub offset_minutes: Option<i64>,
}

impl DateTime {
    /// Microseconds since 0001-01-01 in UTC, to compare aware datetimes as Python does.
    pub fn utc_micros(&self) -> i128 {
        let days = i128::from(days_before(self.date));
        let seconds = days * 86_400
            + i128::from(self.hour) * 3600
            + i128::from(self.minute) * 60
            + i128::from(self.second)
            - i128::from(self.offset_minutes.unwrap_or(0)) * 60;
        seconds * 1_000_000 + i128::from(self.microsecond)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timestamp {
    Date(Date),
    DateTime(DateTime),
}

static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?P<year>[0-9][0-9][0-9][0-9])-(?P<month>[0-9][0-9]?)-(?P<day>[0-9][0-9]?)",
        r"(?:(?:[Tt]|[ \t]+)(?P<hour>[0-9][0-9]?):(?P<minute>[0-9][0-9]):(?P<second>[0-9][0-9])",
        r"(?:\.(?P<fraction>[0-9]*))?",
        r"(?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>[0-9][0-9]?)(?::(?P<tz_minute>[0-9][0-9]))?))?)?",
        r"\n?\z"
    ))
    .unwrap_or_else(|e| panic!("bad timestamp pattern: {e}"))
});

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_before(date: Date) -> u32 {
    let y = date.year - 1;
    let mut days = y * 365 + y / 4 - y / 100 + y / 400;
    for m in 1..date.month {
        days += days_in_month(date.year, m);
    }
    days + date.day - 1
}

fn check_date(year: u32, month: u32, day: u32) -> Result<Date, PyError> {
    if !(1..=9999).contains(&year) {
        return Err(PyError::value(format!("year {year} is out of range")));
    }
    if !(1..=12).contains(&month) {
        return Err(PyError::value("month must be in 1..12"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(PyError::value("day is out of range for month"));
    }
    Ok(Date { year, month, day })
}

/// `repr(datetime.timedelta(seconds=...))`.
fn timedelta_repr(total_seconds: i64) -> String {
    let days = total_seconds.div_euclid(86_400);
    let seconds = total_seconds.rem_euclid(86_400);
    let mut parts = Vec::new();
    if days != 0 {
        parts.push(format!("days={days}"));
    }
    if seconds != 0 {
        parts.push(format!("seconds={seconds}"));
    }
    if parts.is_empty() {
        parts.push("0".to_string());
    }
    format!("datetime.timedelta({})", parts.join(", "))
}

/// `SafeConstructor.construct_yaml_timestamp` on the scalar text.
pub fn construct(text: &str) -> Result<Timestamp, PyError> {
    let Some(caps) = TIMESTAMP.captures(text) else {
        return Err(PyError::new(
            PyExc::AttributeError,
            "'NoneType' object has no attribute 'groupdict'",
        ));
    };
    let num = |name: &str| -> u32 {
        caps.name(name)
            .and_then(|m| m.as_str().parse().ok())
            .unwrap_or(0)
    };
    let (year, month, day) = (num("year"), num("month"), num("day"));
    if caps.name("hour").is_none() {
        return check_date(year, month, day).map(Timestamp::Date);
    }
    let microsecond = match caps.name("fraction").map(|m| m.as_str()) {
        Some(f) if !f.is_empty() => {
            let mut digits: String = f.chars().take(6).collect();
            while digits.len() < 6 {
                digits.push('0');
            }
            digits.parse().unwrap_or(0)
        }
        _ => 0,
    };
    let offset_minutes = if let Some(sign) = caps.name("tz_sign") {
        let minutes = i64::from(num("tz_hour")) * 60 + i64::from(num("tz_minute"));
        let minutes = if sign.as_str() == "-" {
            -minutes
        } else {
            minutes
        };
        if minutes.abs() >= 24 * 60 {
            return Err(PyError::value(format!(
                "offset must be a timedelta strictly between -timedelta(hours=24) and timedelta(hours=24), not {}.",
                timedelta_repr(minutes * 60)
            )));
        }
        Some(minutes)
    } else if caps.name("tz").is_some() {
        Some(0)
    } else {
        None
    };
    let date = check_date(year, month, day)?;
    let (hour, minute, second) = (num("hour"), num("minute"), num("second"));
    if hour > 23 {
        return Err(PyError::value("hour must be in 0..23"));
    }
    if minute > 59 {
        return Err(PyError::value("minute must be in 0..59"));
    }
    if second > 59 {
        return Err(PyError::value("second must be in 0..59"));
    }
    Ok(Timestamp::DateTime(DateTime {
        date,
        hour,
        minute,
        second,
        microsecond,
        offset_minutes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_like_python() {
        assert!(matches!(construct("2002-12-14"), Ok(Timestamp::Date(_))));
        assert_eq!(
            construct("2024-02-30").unwrap_err().message,
            "day is out of range for month"
        );
        assert_eq!(
            construct("0000-01-01").unwrap_err().message,
            "year 0 is out of range"
        );
        assert_eq!(
            construct("2024-13-01").unwrap_err().message,
            "month must be in 1..12"
        );
        assert!(construct("2024-02-29").is_ok());
        assert_eq!(
            construct("2001-12-14 21:59:43 +25").unwrap_err().message,
            "offset must be a timedelta strictly between -timedelta(hours=24) and timedelta(hours=24), not datetime.timedelta(days=1, seconds=3600)."
        );
        assert_eq!(
            construct("2001-12-14 24:00:00").unwrap_err().message,
            "hour must be in 0..23"
        );
    }

    #[test]
    fn aware_datetimes_compare_in_utc() {
        let (Ok(Timestamp::DateTime(a)), Ok(Timestamp::DateTime(b))) = (
            construct("2001-12-14t21:59:43.10-05:00"),
            construct("2001-12-15 02:59:43.1Z"),
        ) else {
            panic!("datetimes expected");
        };
        assert_eq!(a.utc_micros(), b.utc_micros());
    }
}
