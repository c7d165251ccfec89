//! `instavm cron ls|run|pause|resume|history|logs|rm`, `instavm job ls|history|logs|rm` and
//! `instavm run <slug>`: the workloads a `kind: cron` or `kind: job` deploy registered
//! (docs/deploy.md). The official 0.26.1 CLI only has stubs here (exit 2); ours talk to the
//! workloads API and take `--json`.

use std::time::Duration;

use clap::{Args, Subcommand};
use instavm_sdk::{Client, RunRecord, WorkloadKind, WorkloadRecord};

use super::RuntimeArgs;
use crate::output::{display, emit, table};

#[derive(Subcommand, Debug)]
pub enum CronCommand {
    /// List cron workloads.
    #[command(alias = "list")]
    Ls(RuntimeArgs),
    /// Start a run of a workload now.
    Run(RunArgs),
    /// Stop scheduling a cron workload.
    Pause(SlugArgs),
    /// Schedule a paused cron workload again.
    Resume(SlugArgs),
    /// Past runs, newest first.
    History(HistoryArgs),
    /// Output of the newest run (or of `--run ID`).
    Logs(LogsArgs),
    /// Delete a workload (its schedule and triggers stop).
    #[command(alias = "delete")]
    Rm(SlugArgs),
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// List job workloads.
    #[command(alias = "list")]
    Ls(RuntimeArgs),
    /// Start a run of a job now.
    Run(RunArgs),
    /// Past runs, newest first.
    History(HistoryArgs),
    /// Output of the newest run (or of `--run ID`).
    Logs(LogsArgs),
    /// Delete a workload.
    #[command(alias = "delete")]
    Rm(SlugArgs),
}

#[derive(Args, Debug)]
pub struct SlugArgs {
    /// Workload slug
    pub slug: String,
    #[command(flatten)]
    pub rt: RuntimeArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Workload slug
    pub slug: String,
    /// Wait for the run to finish and print its output
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits, in seconds
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    #[command(flatten)]
    pub rt: RuntimeArgs,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Workload slug
    pub slug: String,
    /// How many runs to show
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[command(flatten)]
    pub rt: RuntimeArgs,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Workload slug
    pub slug: String,
    /// A run ID (default: the newest run)
    #[arg(long = "run", value_name = "RUN_ID")]
    pub run_id: Option<String>,
    #[command(flatten)]
    pub rt: RuntimeArgs,
}

fn word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn list(rt: &RuntimeArgs, kind: WorkloadKind) -> anyhow::Result<()> {
    let client = rt.client()?;
    let workloads: Vec<WorkloadRecord> = match client.list_workloads().await {
        Err(instavm_sdk::Error::Api { status: 404, .. }) => {
            anyhow::bail!("this server has no workloads API (GET /v1/workloads answered 404)")
        }
        other => other?,
    }
    .into_iter()
    .filter(|w| w.kind == kind)
    .collect();
    let rows: Vec<Vec<String>> = workloads
        .iter()
        .map(|w| {
            let when = match (&w.schedule, w.triggers.is_empty()) {
                (Some(s), _) => format!("{} {}", s.cron, s.timezone),
                (None, false) => w
                    .triggers
                    .iter()
                    .map(|t| word(&t.kind))
                    .collect::<Vec<_>>()
                    .join(","),
                (None, true) => "-".into(),
            };
            vec![
                w.slug.clone(),
                word(&w.status),
                when,
                display(w.next_run_at.map(|t| t.to_rfc3339())),
                w.version.clone(),
            ]
        })
        .collect();
    let label = if kind == WorkloadKind::Cron {
        "cron"
    } else {
        "job"
    };
    let lines = if rows.is_empty() {
        vec![format!("No {label} workloads.")]
    } else {
        let when = if kind == WorkloadKind::Cron {
            "SCHEDULE"
        } else {
            "TRIGGERS"
        };
        table(&["SLUG", "STATUS", when, "NEXT RUN", "VERSION"], &rows)
    };
    emit(
        rt.json,
        &serde_json::json!({ "workloads": workloads }),
        &lines,
    )
}

fn run_rows(runs: &[RunRecord]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            vec![
                r.id.clone(),
                word(&r.trigger),
                word(&r.status),
                display(r.exit_code),
                r.attempt.to_string(),
                display(r.started_at.map(|t| t.to_rfc3339())),
                display(r.duration_ms.map(|d| format!("{:.1}s", d as f64 / 1000.0))),
            ]
        })
        .collect()
}

async fn start_run(args: &RunArgs) -> anyhow::Result<()> {
    let client = args.rt.client()?;
    let mut run = client.start_run(&args.slug).await?;
    if !args.wait {
        let lines = vec![format!(
            "Started run {} of {} ({})",
            run.id,
            run.slug,
            word(&run.status)
        )];
        return emit(args.rt.json, &run, &lines);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout);
    while !run.status.is_final() {
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "run {} did not finish within {}s (status {})",
                run.id,
                args.timeout,
                word(&run.status)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        run = client.get_run(&run.id).await?;
    }
    let logs = client.run_logs(&run.id).await?;
    if args.rt.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({"run": run, "logs": logs}))?
        );
    } else {
        print!("{}", logs.stdout);
        eprint!("{}", logs.stderr);
        eprintln!(
            "Run {} {} (exit code {})",
            run.id,
            word(&run.status),
            display(run.exit_code)
        );
    }
    Ok(())
}

async fn history(args: &HistoryArgs) -> anyhow::Result<()> {
    let client = args.rt.client()?;
    let runs = client.list_runs(&args.slug, Some(args.limit)).await?;
    let lines = if runs.is_empty() {
        vec![format!("No runs of {} yet.", args.slug)]
    } else {
        table(
            &[
                "RUN", "TRIGGER", "STATUS", "EXIT", "ATTEMPT", "STARTED", "DURATION",
            ],
            &run_rows(&runs),
        )
    };
    emit(args.rt.json, &serde_json::json!({ "runs": runs }), &lines)
}

async fn logs(args: &LogsArgs) -> anyhow::Result<()> {
    let client: Client = args.rt.client()?;
    let run_id = match &args.run_id {
        Some(id) => id.clone(),
        None => match client
            .list_runs(&args.slug, Some(1))
            .await?
            .into_iter()
            .next()
        {
            Some(run) => run.id,
            None => anyhow::bail!(
                "{} has no runs yet (start one with `instavm run {}`)",
                args.slug,
                args.slug
            ),
        },
    };
    let logs = client.run_logs(&run_id).await?;
    if args.rt.json {
        println!("{}", serde_json::to_string(&logs)?);
    } else {
        print!("{}", logs.stdout);
        eprint!("{}", logs.stderr);
    }
    Ok(())
}

async fn pause_resume(args: &SlugArgs, pause: bool) -> anyhow::Result<()> {
    let client = args.rt.client()?;
    let record = if pause {
        client.pause_workload(&args.slug).await?
    } else {
        client.resume_workload(&args.slug).await?
    };
    let mut lines = vec![format!(
        "{} {}",
        if pause { "Paused" } else { "Resumed" },
        record.slug
    )];
    if let Some(next) = record.next_run_at {
        lines.push(format!("Next run: {}", next.to_rfc3339()));
    }
    emit(args.rt.json, &record, &lines)
}

async fn remove(args: &SlugArgs) -> anyhow::Result<()> {
    let client = args.rt.client()?;
    let answer = client.delete_workload(&args.slug).await?;
    emit(args.rt.json, &answer, &[format!("Deleted {}", args.slug)])
}

pub async fn run_cron(command: CronCommand) -> anyhow::Result<()> {
    match command {
        CronCommand::Ls(rt) => list(&rt, WorkloadKind::Cron).await,
        CronCommand::Run(a) => start_run(&a).await,
        CronCommand::Pause(a) => pause_resume(&a, true).await,
        CronCommand::Resume(a) => pause_resume(&a, false).await,
        CronCommand::History(a) => history(&a).await,
        CronCommand::Logs(a) => logs(&a).await,
        CronCommand::Rm(a) => remove(&a).await,
    }
}

pub async fn run_job(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Ls(rt) => list(&rt, WorkloadKind::Job).await,
        JobCommand::Run(a) => start_run(&a).await,
        JobCommand::History(a) => history(&a).await,
        JobCommand::Logs(a) => logs(&a).await,
        JobCommand::Rm(a) => remove(&a).await,
    }
}

/// `instavm run <slug>`: a manual run of any workload.
pub async fn run_now(args: RunArgs) -> anyhow::Result<()> {
    start_run(&args).await
}
