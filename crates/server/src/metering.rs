//! Metering and credits (spec §19, §20.2): a sampler reads every live session's cgroup counters
//! (`Runtime::stats`: cumulative CPU seconds, memory in use) and stores the deltas; usage,
//! credits, trends and the forecast add those samples up and price them with the operator's
//! rates. With enforcement on, a user whose month's usage reached the allocation gets a 403
//! for new VMs.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{DateTime, Datelike, Days, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use instavm_store::{CreditAllocation, MeterReading, UsageSum};
use serde_json::{json, Value};
use std::time::Duration;

/// What the operator sets about metering and credits.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingSettings {
    /// Seconds between samples.
    pub sample_interval: Duration,
    /// Dollars per CPU-second (one core busy for one second).
    pub cpu_rate_per_core_second: f64,
    /// Dollars per GiB of memory held for one second.
    pub ram_rate_per_gib_second: f64,
    /// Dollars per browser-automation call.
    pub browser_rate_per_call: f64,
    /// The monthly allocation of users the admin API gave none.
    pub default_dollars: f64,
    pub default_browser_automation: f64,
    /// Refuse new VMs (403) to users whose month's usage reached their allocation.
    pub enforce: bool,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            sample_interval: Duration::from_secs(15),
            cpu_rate_per_core_second: 0.000_02,
            ram_rate_per_gib_second: 0.000_002_5,
            browser_rate_per_call: 0.01,
            default_dollars: 100.0,
            default_browser_automation: 1000.0,
            enforce: false,
        }
    }
}

impl BillingSettings {
    pub fn cost(&self, u: UsageSum) -> f64 {
        u.cpu_seconds * self.cpu_rate_per_core_second
            + u.mem_gib_seconds * self.ram_rate_per_gib_second
    }
}

/// Start the sampler.
pub fn start(state: &AppState, settings: BillingSettings) -> tokio::task::JoinHandle<()> {
    state.set_billing(settings);
    let state = state.clone();
    tokio::spawn(async move {
        let interval = state
            .billing()
            .sample_interval
            .max(Duration::from_millis(200));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sample(&state).await {
                tracing::warn!(error = %e, "metering: sampling failed");
            }
        }
    })
}

/// One round: read every active session's sandbox and store the deltas.
pub async fn sample(state: &AppState) -> ApiResult<usize> {
    let sessions = state.db(|s| s.active_sessions()).await?;
    let mut readings = Vec::with_capacity(sessions.len());
    for s in sessions {
        let Some(id) = instavm_runtime::SandboxId::parse(&s.sandbox_id) else {
            continue;
        };
        // A sandbox that went away between the list and the read is skipped.
        if let Ok(stats) = state.runtime().stats(&id).await {
            readings.push(MeterReading {
                session_id: s.id,
                user_id: s.user_id,
                vm_id: Some(s.vm_id),
                cpu_total: stats.cpu_seconds,
                memory_bytes: stats.memory_bytes,
            });
        }
    }
    let max_gap = state.billing().sample_interval.as_secs_f64() * 2.0 + 1.0;
    let now = Utc::now();
    state
        .db(move |s| s.record_meter_readings(&readings, now, max_gap))
        .await
}

fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

fn next_month(start: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if start.month() == 12 {
        (start.year() + 1, 1)
    } else {
        (start.year(), start.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(start)
}

/// `current_month`, `last_30_days` or `all` as a span ending now.
fn period_span(period: &str, now: DateTime<Utc>) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    let start = match period {
        "current_month" => month_start(now),
        "last_30_days" => now - ChronoDuration::days(30),
        "all" => DateTime::<Utc>::UNIX_EPOCH,
        other => {
            return Err(ApiError::Unprocessable(format!(
                "period must be current_month, last_30_days or all, got {other:?}"
            )))
        }
    };
    Ok((start, now + ChronoDuration::seconds(1)))
}

async fn total(
    state: &AppState,
    user_id: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> ApiResult<UsageSum> {
    let span = (end - start).num_seconds().max(1);
    let rows = state
        .db(move |s| s.usage_series(user_id, start, end, span))
        .await?;
    Ok(rows
        .into_iter()
        .fold(UsageSum::default(), |mut acc, (_, u)| {
            acc.cpu_seconds += u.cpu_seconds;
            acc.mem_gib_seconds += u.mem_gib_seconds;
            acc
        }))
}

async fn allocation_of(state: &AppState, user_id: i64) -> ApiResult<CreditAllocation> {
    let b = state.billing();
    Ok(state
        .db(move |s| s.credit_allocation(user_id))
        .await?
        .unwrap_or(CreditAllocation {
            dollars: b.default_dollars,
            browser_automation: b.default_browser_automation,
        }))
}

fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

fn bucket(allocated: f64, used: f64) -> Value {
    json!({
        "allocated": round(allocated),
        "used": round(used),
        "remaining": round((allocated - used).max(0.0)),
        "overage": round((used - allocated).max(0.0)),
    })
}

/// The month's dollars used, for enforcement and the allocation.
async fn month_used(state: &AppState, user_id: i64) -> ApiResult<(UsageSum, f64)> {
    let now = Utc::now();
    let u = total(
        state,
        user_id,
        month_start(now),
        now + ChronoDuration::seconds(1),
    )
    .await?;
    Ok((u, state.billing().cost(u)))
}

/// 403 when enforcement is on and the user's month reached the allocation.
pub async fn enforce_credits(state: &AppState, user_id: i64) -> ApiResult<()> {
    if !state.billing().enforce {
        return Ok(());
    }
    let alloc = allocation_of(state, user_id).await?;
    let (_, used) = month_used(state, user_id).await?;
    if used >= alloc.dollars {
        return Err(ApiError::Forbidden(format!(
            "credit allocation used up: ${used:.4} of ${:.2} this month; ask the operator for more",
            alloc.dollars
        )));
    }
    Ok(())
}

pub async fn allocation(state: &AppState, user_id: i64) -> ApiResult<Value> {
    let now = Utc::now();
    let start = month_start(now);
    let alloc = allocation_of(state, user_id).await?;
    let (_, used) = month_used(state, user_id).await?;
    Ok(json!({
        "id": format!("alloc_{user_id}_{}", start.format("%Y%m")),
        "allocation_period_start": start,
        "allocation_period_end": next_month(start),
        "dollars": bucket(alloc.dollars, used),
        "browser_automation": bucket(alloc.browser_automation, 0.0),
    }))
}

pub async fn summary(state: &AppState, user_id: i64, period: &str) -> ApiResult<Value> {
    let (start, end) = period_span(period, Utc::now())?;
    let alloc = allocation_of(state, user_id).await?;
    let u = total(state, user_id, start, end).await?;
    let used = state.billing().cost(u);
    Ok(json!({
        "period": period,
        "period_start": start,
        "period_end": end,
        "dollars": bucket(alloc.dollars, used),
        "browser_automation": bucket(alloc.browser_automation, 0.0),
        "vm_execution": {
            "cpu_seconds": round(u.cpu_seconds),
            "ram_gib_seconds": round(u.mem_gib_seconds),
            "cost_dollars": round(used),
        },
    }))
}

pub async fn usage_rows(
    state: &AppState,
    user_id: i64,
    period: &str,
    limit: i64,
    usage_type: Option<&str>,
) -> ApiResult<Value> {
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and 1000, got {limit}"
        )));
    }
    let (start, end) = period_span(period, Utc::now())?;
    // Browser automation is not metered yet: no rows of that type exist.
    if usage_type.is_some_and(|t| t != "vm_execution") {
        return Ok(json!([]));
    }
    let rows = state
        .db(move |s| s.usage_samples(user_id, start, end, limit as usize))
        .await?;
    let b = state.billing();
    Ok(Value::Array(
        rows.into_iter()
            .map(|r| {
                let u = UsageSum {
                    cpu_seconds: r.cpu_seconds,
                    mem_gib_seconds: r.mem_gib_seconds,
                };
                json!({
                    "created_at": r.at,
                    "usage_type": r.usage_type,
                    "credits_used": round(b.cost(u)),
                    "resource_id": r.vm_id.unwrap_or(r.session_id.clone()),
                    "session_id": r.session_id,
                    "cpu_seconds": round(r.cpu_seconds),
                    "ram_gib_seconds": round(r.mem_gib_seconds),
                })
            })
            .collect(),
    ))
}

pub async fn check(
    state: &AppState,
    user_id: i64,
    usage_type: &str,
    required: i64,
) -> ApiResult<Value> {
    if required < 0 {
        return Err(ApiError::Unprocessable(
            "required_credits must not be negative".into(),
        ));
    }
    let alloc = allocation_of(state, user_id).await?;
    let remaining = match usage_type {
        "browser_automation" => alloc.browser_automation,
        "vm_execution" | "dollars" => {
            let (_, used) = month_used(state, user_id).await?;
            (alloc.dollars - used).max(0.0)
        }
        other => {
            return Err(ApiError::Unprocessable(format!(
                "usage_type must be browser_automation or vm_execution, got {other:?}"
            )))
        }
    };
    let available = remaining >= required as f64;
    Ok(json!({
        "available": available,
        "usage_type": usage_type,
        "required_credits": required,
        "remaining_credits": round(remaining),
        "shortage": round((required as f64 - remaining).max(0.0)),
        "reason": if available { Value::Null } else { json!("insufficient credits in this month's allocation") },
    }))
}

pub fn rates(state: &AppState) -> Value {
    let b = state.billing();
    json!({
        "vm_execution": {
            "rate_description": "CPU seconds per core and GiB-seconds of memory, sampled from each VM's cgroup",
            "cpu_rate_per_second_per_core": b.cpu_rate_per_core_second,
            "ram_rate_per_gib_per_second": b.ram_rate_per_gib_second,
        },
        "browser_automation": {
            "rate_description": "per browser-automation call",
            "sample_1_call": b.browser_rate_per_call,
            "minimum_charge": b.browser_rate_per_call,
        },
    })
}

pub async fn trends(
    state: &AppState,
    user_id: i64,
    period: &str,
    granularity: &str,
) -> ApiResult<Value> {
    let days = match period {
        "7d" => 7,
        "30d" => 30,
        "90d" => 90,
        other => {
            return Err(ApiError::Unprocessable(format!(
                "period must be 7d, 30d or 90d, got {other:?}"
            )))
        }
    };
    let step: i64 = match granularity {
        "hourly" => 3600,
        "daily" => 86_400,
        "weekly" => 7 * 86_400,
        other => {
            return Err(ApiError::Unprocessable(format!(
                "granularity must be hourly, daily or weekly, got {other:?}"
            )))
        }
    };
    let now = Utc::now();
    // Buckets aligned to UTC hours or days, the last one holding now.
    let today = Utc
        .from_utc_datetime(&now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default())
        .max(DateTime::<Utc>::UNIX_EPOCH);
    let align = if step == 3600 {
        today
            + ChronoDuration::hours(i64::from(
                now.format("%H").to_string().parse::<u8>().unwrap_or(0),
            ))
    } else {
        today
    };
    let count = (days * 86_400 / step).max(1);
    let start = align - ChronoDuration::seconds(step * (count - 1));
    let end = align + ChronoDuration::seconds(step);
    let rows = state
        .db(move |s| s.usage_series(user_id, start, end, step))
        .await?;
    let b = state.billing();
    let mut series = Vec::with_capacity(count as usize);
    let mut total_cost = 0.0;
    for i in 0..count {
        let u = rows
            .iter()
            .find(|(k, _)| *k == i)
            .map(|(_, u)| *u)
            .unwrap_or_default();
        let cost = b.cost(u);
        total_cost += cost;
        series.push(json!({
            "start": start + ChronoDuration::seconds(step * i),
            "cpu_seconds": round(u.cpu_seconds),
            "ram_gib_seconds": round(u.mem_gib_seconds),
            "cost_dollars": round(cost),
        }));
    }
    Ok(json!({
        "period": period,
        "granularity": granularity,
        "series": series,
        "total_cost_dollars": round(total_cost),
    }))
}

/// The month projected from the last 7 days' daily rate.
pub async fn forecast(state: &AppState, user_id: i64) -> ApiResult<Value> {
    let now = Utc::now();
    let b = state.billing();
    let recent = total(state, user_id, now - ChronoDuration::days(7), now).await?;
    let daily = b.cost(recent) / 7.0;
    let alloc = allocation_of(state, user_id).await?;
    let (_, used) = month_used(state, user_id).await?;
    let end = next_month(month_start(now));
    let days_left = (end - now).num_seconds() as f64 / 86_400.0;
    let projected = used + daily * days_left;
    let remaining = (alloc.dollars - used).max(0.0);
    Ok(json!({
        "based_on_days": 7,
        "daily_average_dollars": round(daily),
        "month_to_date_dollars": round(used),
        "projected_month_dollars": round(projected),
        "allocated_dollars": round(alloc.dollars),
        "projected_overage_dollars": round((projected - alloc.dollars).max(0.0)),
        "days_until_exhausted": if daily > 0.0 { json!(round(remaining / daily)) } else { Value::Null },
        "recommendations": if projected > alloc.dollars {
            vec!["usage at the recent rate exceeds this month's allocation: ask the operator to raise it, or stop idle VMs"]
        } else {
            Vec::new()
        },
    }))
}

/// `GET /v1/users/me/usage-breakdown` from the samples, day by day.
pub async fn breakdown(
    state: &AppState,
    user_id: i64,
    first: NaiveDate,
    last: NaiveDate,
) -> ApiResult<instavm_api::UsageBreakdown> {
    let start = crate::usage::day_start(first);
    let end = crate::usage::day_start(last.succ_opt().unwrap_or(last));
    let rows = state
        .db(move |s| s.usage_series(user_id, start, end, 86_400))
        .await?;
    let b = state.billing();
    let mut daily = Vec::new();
    let mut totals = instavm_api::UsageTotals::default();
    let mut day = first;
    let mut i = 0i64;
    while day <= last {
        let u = rows
            .iter()
            .find(|(k, _)| *k == i)
            .map(|(_, u)| *u)
            .unwrap_or_default();
        let d = instavm_api::DailyUsage {
            date: day,
            cost_dollars: round(b.cost(u)),
            cpu_hours: u.cpu_seconds / 3600.0,
            ram_gib_hours: u.mem_gib_seconds / 3600.0,
        };
        totals.cost_dollars += d.cost_dollars;
        totals.cpu_hours += d.cpu_hours;
        totals.ram_gib_hours += d.ram_gib_hours;
        daily.push(d);
        i += 1;
        match day.checked_add_days(Days::new(1)) {
            Some(next) => day = next,
            None => break,
        }
    }
    Ok(instavm_api::UsageBreakdown {
        period_start: first,
        period_end: last,
        total_days: daily.len() as u32,
        totals,
        daily_breakdown: daily,
    })
}
