//! Billing and usage (spec/cli.md §6.12): `billing status|allocation|usage|usage-history|check|
//! rates|trends|forecast|portal`. `billing` alone is the portal.

use super::RuntimeArgs;
use crate::output::emit;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

pub const PORTAL_URL: &str = "https://dashboard.instavm.io/billing";

#[derive(Subcommand, Debug)]
pub enum BillingCommand {
    /// The billing portal's URL.
    Portal(PortalArgs),
    /// This period's credits: allocated, used, remaining.
    Status(StatusArgs),
    /// The monthly allocation.
    Allocation(RuntimeArgs),
    /// Metered usage day by day (CPU hours, RAM GiB-hours, cost).
    Usage(UsageArgs),
    /// Usage rows, newest first.
    UsageHistory(HistoryArgs),
    /// Whether enough credits remain.
    Check(CheckArgs),
    /// The operator's rates.
    Rates(RuntimeArgs),
    /// Usage as an hourly, daily or weekly series.
    Trends(TrendsArgs),
    /// The month projected from the recent rate.
    Forecast(RuntimeArgs),
}

#[derive(Args, Debug)]
pub struct PortalArgs {
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(long, default_value = "current_month", value_parser = ["current_month", "last_30_days", "all"])]
    pub period: String,
}

#[derive(Args, Debug)]
pub struct UsageArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(long)]
    pub start_date: Option<String>,
    #[arg(long)]
    pub end_date: Option<String>,
    #[arg(long, default_value_t = 30)]
    pub days: u32,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(long, default_value = "current_month", value_parser = ["current_month", "last_30_days", "all"])]
    pub period: String,
    #[arg(long, value_parser = ["browser_automation"])]
    pub usage_type: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(long, value_parser = ["browser_automation"])]
    pub usage_type: String,
    #[arg(long)]
    pub required_credits: i64,
}

#[derive(Args, Debug)]
pub struct TrendsArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(long, default_value = "30d", value_parser = ["7d", "30d", "90d"])]
    pub period: String,
    #[arg(long, default_value = "daily", value_parser = ["hourly", "daily", "weekly"])]
    pub granularity: String,
}

fn num(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    match cur {
        Value::Null => "-".into(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn bucket_lines(v: &Value, title: &str, key: &str) -> Vec<String> {
    vec![
        format!("{title}:"),
        format!("  Allocated: {}", num(v, &[key, "allocated"])),
        format!("  Used:      {}", num(v, &[key, "used"])),
        format!("  Remaining: {}", num(v, &[key, "remaining"])),
    ]
}

pub async fn run(cmd: Option<BillingCommand>) -> anyhow::Result<()> {
    let Some(cmd) = cmd else {
        println!("Billing portal: {PORTAL_URL}");
        return Ok(());
    };
    match cmd {
        BillingCommand::Portal(a) => emit(
            a.json,
            &json!({ "url": PORTAL_URL }),
            &[format!("Billing portal: {PORTAL_URL}")],
        ),
        BillingCommand::Status(a) => {
            let v = a.rt.client()?.credits_summary(&a.period).await?;
            let mut lines = vec![format!("Period: {}", a.period)];
            lines.extend(bucket_lines(&v, "Dollars", "dollars"));
            lines.extend(bucket_lines(
                &v,
                "Browser automation credits",
                "browser_automation",
            ));
            emit(a.rt.json, &v, &lines)
        }
        BillingCommand::Allocation(rt) => {
            let v = rt.client()?.credits_allocation().await?;
            let mut lines = vec![format!(
                "Period: {} -> {}",
                num(&v, &["allocation_period_start"]),
                num(&v, &["allocation_period_end"])
            )];
            lines.extend(bucket_lines(&v, "Dollars", "dollars"));
            lines.extend(bucket_lines(
                &v,
                "Browser automation credits",
                "browser_automation",
            ));
            emit(rt.json, &v, &lines)
        }
        BillingCommand::Usage(a) => {
            let b =
                a.rt.client()?
                    .usage_breakdown_between(a.days, a.start_date.as_deref(), a.end_date.as_deref())
                    .await?;
            let mut lines = vec![
                format!("Period: {} -> {}", b.period_start, b.period_end),
                format!("Days: {}", b.total_days),
                format!("Total cost: ${:.4}", b.totals.cost_dollars),
                format!("CPU hours:  {:.4}", b.totals.cpu_hours),
                format!("RAM GiB-h:  {:.4}", b.totals.ram_gib_hours),
            ];
            for d in b
                .daily_breakdown
                .iter()
                .filter(|d| d.cpu_hours > 0.0 || d.ram_gib_hours > 0.0)
            {
                lines.push(format!(
                    "  {}  ${:.4}  cpu {:.4} h  ram {:.4} GiB-h",
                    d.date, d.cost_dollars, d.cpu_hours, d.ram_gib_hours
                ));
            }
            emit(a.rt.json, &b, &lines)
        }
        BillingCommand::UsageHistory(a) => {
            let rows =
                a.rt.client()?
                    .credits_usage(&a.period, a.usage_type.as_deref(), a.limit)
                    .await?;
            let list = rows.as_array().cloned().unwrap_or_default();
            let mut lines = Vec::new();
            if list.is_empty() {
                lines.push("(no usage)".to_owned());
            }
            for r in &list {
                lines.push(format!(
                    "{}  {:<14} {:>12}  {}",
                    num(r, &["created_at"]),
                    num(r, &["usage_type"]).trim_matches('"'),
                    num(r, &["credits_used"]),
                    num(r, &["resource_id"]).trim_matches('"')
                ));
            }
            emit(
                a.rt.json,
                &json!({"period": a.period, "rows": list}),
                &lines,
            )
        }
        BillingCommand::Check(a) => {
            let v =
                a.rt.client()?
                    .credits_check(&a.usage_type, a.required_credits)
                    .await?;
            let lines = vec![
                format!("Available: {}", num(&v, &["available"])),
                format!("Required:  {}", num(&v, &["required_credits"])),
                format!("Remaining: {}", num(&v, &["remaining_credits"])),
                format!("Shortage:  {}", num(&v, &["shortage"])),
            ];
            emit(a.rt.json, &v, &lines)
        }
        BillingCommand::Rates(rt) => {
            let v = rt.client()?.credits_rates().await?;
            let lines = vec![
                "VM execution:".to_owned(),
                format!(
                    "  CPU:  {} $/core-second",
                    num(&v, &["vm_execution", "cpu_rate_per_second_per_core"])
                ),
                format!(
                    "  RAM:  {} $/GiB-second",
                    num(&v, &["vm_execution", "ram_rate_per_gib_per_second"])
                ),
                "Browser automation:".to_owned(),
                format!(
                    "  Sample (1 call): {} credits",
                    num(&v, &["browser_automation", "sample_1_call"])
                ),
            ];
            emit(rt.json, &v, &lines)
        }
        BillingCommand::Trends(a) => {
            let v =
                a.rt.client()?
                    .credits_trends(&a.period, &a.granularity)
                    .await?;
            let n = v["series"].as_array().map_or(0, Vec::len);
            let lines = vec![
                format!("Period: {}, granularity: {}", a.period, a.granularity),
                format!("{n} buckets, total ${}", num(&v, &["total_cost_dollars"])),
            ];
            emit(a.rt.json, &v, &lines)
        }
        BillingCommand::Forecast(rt) => {
            let v = rt.client()?.credits_forecast().await?;
            let text = serde_json::to_string_pretty(&v)?;
            emit(rt.json, &v, &[text])
        }
    }
}
