//! Audit events (spec/cli.md §6.13): `events tail|get|catalog` (group alias `audit`).

use super::RuntimeArgs;
use crate::output::emit;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use instavm_sdk::{AuditEvent, AuditQuery, Client};
use std::collections::HashSet;
use std::time::Duration;

/// Pages `tail` follows back in one round, at most (as the official CLI).
const MAX_PAGES: usize = 20;

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Print events oldest first, then follow new ones (`--once` to stop).
    Tail(TailArgs),
    /// Show one event.
    Get(GetArgs),
    /// Event types by group.
    Catalog(CatalogArgs),
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(long = "vm")]
    pub vm_id: Option<String>,
    #[arg(long = "session")]
    pub session_id: Option<String>,
    #[arg(long = "event")]
    pub event_type: Option<String>,
    #[arg(long = "group")]
    pub event_group: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
    /// 10s, 5m, 2h, 1d, a number of seconds, or an ISO-8601 time.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Seconds between polls when following (at least 1).
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// Keep following (the default).
    #[arg(short = 'f', long, conflicts_with = "once")]
    pub follow: bool,
    /// Print what is there and stop.
    #[arg(long)]
    pub once: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub event_id: String,
}

#[derive(Args, Debug)]
pub struct CatalogArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    let unit = |c: char| match c {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86400),
        _ => None,
    };
    let seconds = match t.chars().last().and_then(unit) {
        Some(mult) => t[..t.len() - 1]
            .parse::<f64>()
            .ok()
            .map(|n| n * mult as f64),
        None => t.parse::<f64>().ok(),
    };
    if let Some(s) = seconds.filter(|s| s.is_finite() && *s >= 0.0) {
        return Ok(Utc::now() - chrono::Duration::milliseconds((s * 1000.0) as i64));
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").map(|n| n.and_utc())
        })
        .map_err(|_| {
            format!("{text:?} is not 10s, 5m, 2h, 1d, a number of seconds, nor an ISO-8601 time")
        })
}

fn line(e: &AuditEvent) -> String {
    let target = e.vm_id.as_deref().unwrap_or(&e.resource_id);
    let mut text = format!(
        "{} {:<26} {:<8} {} {}",
        e.created_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        e.event_type,
        e.status,
        e.resource_type,
        target
    );
    if let Some(err) = &e.error_message {
        text.push_str(&format!(" ({err})"));
    }
    text
}

fn print(json: bool, e: &AuditEvent) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
    } else {
        println!("{}", line(e));
    }
    Ok(())
}

impl TailArgs {
    fn query(&self, cursor: Option<String>) -> AuditQuery {
        AuditQuery {
            event_group: self.event_group.clone(),
            event_type: self.event_type.clone(),
            status: self.status.clone(),
            user_id: None,
            vm_id: self.vm_id.clone(),
            session_id: self.session_id.clone(),
            cursor,
            limit: Some(self.limit.clamp(1, 200)),
        }
    }
}

/// Newest first: pages back until `stop` says an event is old enough, or history ends.
async fn fetch(
    client: &Client,
    a: &TailArgs,
    stop: &dyn Fn(&AuditEvent) -> bool,
    one_page: bool,
) -> anyhow::Result<Vec<AuditEvent>> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let page = client.audit_events(&a.query(cursor)).await?;
        for e in page.items {
            if stop(&e) {
                return Ok(out);
            }
            out.push(e);
        }
        match page.next_cursor {
            Some(c) if !one_page => cursor = Some(c),
            _ => break,
        }
    }
    Ok(out)
}

async fn tail(a: TailArgs) -> anyhow::Result<()> {
    let client = a.rt.client()?;
    let since = a.since;
    let mut seen: HashSet<String> = HashSet::new();
    let first = fetch(
        &client,
        &a,
        &|e| since.is_some_and(|s| e.created_at < s),
        since.is_none(),
    )
    .await?;
    let mut newest = first.first().map(|e| e.created_at);
    for e in first.iter().rev() {
        seen.insert(e.id.clone());
        print(a.rt.json, e)?;
    }
    if a.once {
        return Ok(());
    }
    let interval = Duration::from_secs_f64(a.interval.max(1.0));
    loop {
        tokio::time::sleep(interval).await;
        let watermark = newest.map(|t| t - chrono::Duration::seconds(1));
        let fresh = fetch(
            &client,
            &a,
            &|e| seen.contains(&e.id) || watermark.is_some_and(|w| e.created_at < w),
            false,
        )
        .await?;
        for e in fresh.iter().rev() {
            seen.insert(e.id.clone());
            newest = Some(newest.map_or(e.created_at, |n| n.max(e.created_at)));
            print(a.rt.json, e)?;
        }
    }
}

pub async fn run(cmd: EventsCommand) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::Tail(a) => tail(a).await,
        EventsCommand::Get(a) => {
            let e = a.rt.client()?.audit_event(&a.event_id).await?;
            let text = serde_json::to_string_pretty(&e)?;
            emit(a.rt.json, &e, &[text])
        }
        EventsCommand::Catalog(a) => {
            let c = a.rt.client()?.audit_catalog().await?;
            let lines: Vec<String> = c
                .catalog
                .iter()
                .map(|(group, types)| format!("{group}: {}", types.join(", ")))
                .collect();
            emit(a.rt.json, &c, &lines)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = Utc::now();
        let ago = |t: &str| (now - parse_since(t).unwrap()).num_seconds();
        assert!((9..=11).contains(&ago("10s")));
        assert!((299..=301).contains(&ago("5m")));
        assert!((7199..=7201).contains(&ago("2h")));
        assert!((86399..=86401).contains(&ago("1d")));
        assert!((89..=91).contains(&ago("90")));
        assert_eq!(
            parse_since("2026-01-02T03:04:05Z").unwrap().to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
        assert!(parse_since("2026-01-02T03:04:05").is_ok());
        for bad in ["", "x", "5w", "-3s"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
