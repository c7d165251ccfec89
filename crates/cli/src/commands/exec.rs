//! `instavm exec [FILE] --cmd CODE ...` and `instavm exec result TASK_ID` (spec/cli.md §6.8).

use super::RuntimeArgs;
use crate::output::{emit, Spinner};
use anyhow::{anyhow, bail};
use clap::{Args, ValueEnum};
use instavm_sdk::{ExecuteRequest, StartSessionRequest};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::Duration;

/// Lifetime of the session `exec` starts when none is given (the official CLI's 300 s).
const SESSION_LIFETIME: u64 = 300;

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// A local file to run, or the keyword `result` to fetch an async task's result.
    pub target: Option<String>,
    /// Task ID, with `instavm exec result TASK_ID`.
    pub task_id: Option<String>,
    /// Inline code to run.
    #[arg(long)]
    pub cmd: Option<String>,
    /// Language (inferred from .py/.sh/.bash files; the server's default is python).
    #[arg(long, value_enum)]
    pub language: Option<LanguageArg>,
    /// Reuse an existing session instead of starting a new one.
    #[arg(long)]
    pub session: Option<String>,
    /// Execution timeout in seconds (for `exec result`: how long to wait, default 60).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Start the code in the background and print its task ID.
    #[arg(long = "async")]
    pub async_exec: bool,
    /// Seconds between polls for `exec result`.
    #[arg(long, default_value_t = 1)]
    pub poll_interval: u64,
    #[command(flatten)]
    pub rt: RuntimeArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LanguageArg {
    Python,
    Bash,
}

impl LanguageArg {
    fn as_str(self) -> &'static str {
        match self {
            LanguageArg::Python => "python",
            LanguageArg::Bash => "bash",
        }
    }
}

pub async fn run(args: ExecArgs) -> anyhow::Result<()> {
    if args.target.as_deref() == Some("result") {
        return result(args).await;
    }
    let (code, language) = source(&args)?;
    let client = args.rt.client()?;
    let spinner = Spinner::start(args.rt.json, "Starting session");
    let session_id = match &args.session {
        Some(s) => s.clone(),
        None => {
            client
                .start_session(&StartSessionRequest {
                    vm_lifetime_seconds: Some(SESSION_LIFETIME),
                    ..StartSessionRequest::default()
                })
                .await?
                .session_id
        }
    };
    let req = ExecuteRequest {
        command: code,
        session_id: session_id.clone(),
        language: language.map(|l| l.as_str().to_owned()),
        timeout: args.timeout,
    };
    let mut payload = Map::new();
    if args.async_exec {
        spinner.set_message("Submitting");
        let res = client.execute_async(&req).await?;
        drop(spinner);
        payload.insert("task_id".into(), json!(res.task_id));
        payload.insert("session_id".into(), json!(session_id));
        payload.insert("language".into(), json!(req.language));
        merge(&mut payload, serde_json::to_value(&res)?);
        let mut lines = text(&payload);
        lines.push(String::new());
        lines.push("Use `instavm exec result <task_id>` to wait for completion.".into());
        return emit(args.rt.json, &payload, &lines);
    }
    spinner.set_message("Running");
    let res = client.execute(&req).await?;
    drop(spinner);
    payload.insert("session_id".into(), json!(session_id));
    payload.insert("language".into(), json!(req.language));
    merge(&mut payload, serde_json::to_value(&res)?);
    emit(args.rt.json, &payload, &text(&payload))
}

/// The code to run and its language, from `--cmd` or a file.
fn source(args: &ExecArgs) -> anyhow::Result<(String, Option<LanguageArg>)> {
    match (&args.cmd, &args.target) {
        (Some(_), Some(_)) => bail!("Provide either a local file path or --cmd, not both."),
        (Some(cmd), None) => Ok((cmd.clone(), args.language)),
        (None, None) => bail!("Provide a local file path or --cmd."),
        (None, Some(path)) => {
            if args.task_id.is_some() {
                bail!("Unexpected argument after the file path; did you mean `instavm exec result <task_id>`?");
            }
            let path = Path::new(path);
            if !path.is_file() {
                bail!("Local file not found: {}", path.display());
            }
            let code = std::fs::read_to_string(path)
                .map_err(|e| anyhow!("Cannot read {} as UTF-8 text: {e}", path.display()))?;
            let inferred = match path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("py") => Some(LanguageArg::Python),
                Some("sh" | "bash") => Some(LanguageArg::Bash),
                _ => None,
            };
            Ok((code, args.language.or(inferred)))
        }
    }
}

/// `instavm exec result TASK_ID`: poll until the task completes.
async fn result(args: ExecArgs) -> anyhow::Result<()> {
    if args.cmd.is_some() {
        bail!("Use `instavm exec result <task_id>` without --cmd.");
    }
    let task_id = args
        .task_id
        .clone()
        .ok_or_else(|| anyhow!("Task ID is required: `instavm exec result <task_id>`."))?;
    let client = args.rt.client()?;
    let wait = Duration::from_secs(args.timeout.unwrap_or(60));
    let poll = Duration::from_secs(args.poll_interval.max(1));
    let spinner = Spinner::start(args.rt.json, "Waiting for the task");
    let record = client.wait_for_task(&task_id, poll, wait).await?;
    drop(spinner);
    let mut payload = Map::new();
    for (key, value) in [
        ("task_id", json!(task_id)),
        ("stdout", json!(record.serialized_stdout)),
        ("stderr", json!(record.serialized_stderr)),
        ("cpu_time", json!(record.cpu_time)),
        ("created_at", json!(record.created_at)),
        ("execution_time", json!(record.execution_time)),
        ("exit_code", json!(record.exit_code)),
        ("status", json!(record.status)),
    ] {
        payload.insert(key.to_owned(), value);
    }
    emit(args.rt.json, &payload, &text(&payload))
}

fn merge(into: &mut Map<String, Value>, from: Value) {
    if let Value::Object(map) = from {
        into.extend(map);
    }
}

/// The official CLI's text layout for an execution.
fn text(p: &Map<String, Value>) -> Vec<String> {
    let s = |k: &str| p.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let n = |k: &str| p.get(k).filter(|v| !v.is_null());
    let mut lines = Vec::new();
    if let Some(v) = s("task_id") {
        lines.push(format!("Task: {v}"));
    }
    if let Some(v) = s("session_id") {
        lines.push(format!("Session: {v}"));
    }
    if let Some(v) = s("language") {
        lines.push(format!("Language: {v}"));
    }
    if let Some(v) = s("created_at") {
        lines.push(format!("Created: {v}"));
    }
    if let Some(v) = n("execution_time") {
        lines.push(format!("Execution time: {v}"));
    }
    if let Some(v) = n("cpu_time") {
        lines.push(format!("CPU time: {v}"));
    }
    if let Some(v) = n("exit_code") {
        lines.push(format!("Exit code: {v}"));
    }
    let mut has_output = false;
    for (label, value) in [
        ("Stdout", s("stdout").or(s("output"))),
        ("Stderr", s("stderr")),
    ] {
        if let Some(text) = value {
            has_output = true;
            lines.push(String::new());
            lines.push(label.into());
            lines.extend(text.trim_end_matches('\n').lines().map(str::to_owned));
        }
    }
    if !has_output && !p.contains_key("task_id") {
        lines.push("No output.".into());
    }
    lines
}
