//! The scheduler: cron times that came become runs, queued runs become VMs.
//!
//! Promises (docs/deploy.md): a due time is turned into its run in the same transaction that
//! moves the workload's `next_run_at`, and a queued run is claimed by a conditional update,
//! so neither a second tick nor a restart starts a run twice. Runs that were going when the
//! server stopped are recorded as failed ("interrupted by a server restart"), their VMs
//! destroyed, and retried when the schedule allows retries. Times missed while the server was
//! down follow the schedule's `catchup`: `skip` records one skipped run saying how many were
//! missed, `run-once` runs once for the latest, `run-all` runs each (at most 100).

use super::{new_id, run_record, Workload, DEFAULT_RUN_TIMEOUT_SECONDS};
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, Readiness};
use crate::{sessions, vms};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use instavm_api::*;
use instavm_runtime::Language;
use instavm_store::{NewRun, RunRow};
use std::collections::HashMap;
use std::time::Duration;

/// A time is "on time" when the scheduler sees it within this; older ones were missed.
const ON_TIME: chrono::Duration = chrono::Duration::seconds(60);
/// How many missed times `run-all` catches up at most.
const MAX_CATCHUP: usize = 100;
/// Runs at the same time on this server, all workloads together.
const MAX_PARALLEL_RUNS: usize = 4;
/// Output kept per stream and run (the end of it).
const MAX_KEPT_OUTPUT: usize = 256 * 1024;
const TICK: Duration = Duration::from_secs(1);

/// Have the scheduler look now (a new workload, a manual run).
pub fn wake(state: &AppState) {
    state.workloads_wake().notify_one();
}

pub async fn run_forever(state: AppState) {
    let mut recovered = false;
    loop {
        if state.readiness() == Readiness::Ready {
            if !recovered {
                match recover(&state).await {
                    Ok(()) => recovered = true,
                    Err(e) => tracing::warn!(error = %e, "recovering workload runs failed"),
                }
            }
            if recovered {
                if let Err(e) = tick(&state).await {
                    tracing::warn!(error = %e, "the workload scheduler's tick failed");
                }
            }
        }
        tokio::select! {
            _ = state.workloads_wake().notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Runs left `running` by a previous process: their task is gone.
async fn recover(state: &AppState) -> ApiResult<()> {
    let stale = state.db(|s| s.running_runs(None)).await?;
    for run in stale {
        tracing::info!(run = %run.id, "a workload run was interrupted by a restart");
        if let Some(vm_id) = &run.vm_id {
            destroy_vm(state, run.user_id, vm_id).await;
        }
        let workload = load(state, &run.workload_id).await?;
        finish(
            state,
            &run,
            workload.as_ref(),
            Outcome::failed(crate::lifecycle::INTERRUPTED),
        )
        .await?;
    }
    Ok(())
}

async fn load(state: &AppState, id: &str) -> ApiResult<Option<Workload>> {
    let id = id.to_owned();
    state
        .db(move |s| s.get_workload_by_id(&id))
        .await?
        .map(Workload::decode)
        .transpose()
}

async fn tick(state: &AppState) -> ApiResult<()> {
    let now = Utc::now();
    for row in state.db(move |s| s.due_workloads(now)).await? {
        let w = Workload::decode(row)?;
        schedule_due(state, &w, now).await?;
    }
    dispatch(state, now).await
}

/// Turn the times of `w` that came into runs, as its concurrency and catchup policies say.
async fn schedule_due(state: &AppState, w: &Workload, now: DateTime<Utc>) -> ApiResult<()> {
    let (Some(cron), Some(policy), Some(expected)) = (w.cron(), &w.schedule, w.row.next_run_at)
    else {
        return Ok(());
    };
    // `expected` itself came (the workload is due), then every time after it up to now.
    let mut came = vec![expected];
    came.extend(cron.times_between(expected, now, 100_000));
    let (missed, on_time): (Vec<_>, Vec<_>) = came.into_iter().partition(|t| now - *t > ON_TIME);
    let mut times: Vec<(DateTime<Utc>, &str)> = Vec::new();
    let mut skipped_note = None;
    if !missed.is_empty() {
        match policy.catchup {
            Catchup::Skip => {
                skipped_note = Some((
                    *missed.last().unwrap_or(&expected),
                    format!(
                        "{} scheduled time(s) passed while the server was down; catchup is skip",
                        missed.len()
                    ),
                ))
            }
            Catchup::RunOnce => times.push((*missed.last().unwrap_or(&expected), "catchup")),
            Catchup::RunAll => {
                let from = missed.len().saturating_sub(MAX_CATCHUP);
                times.extend(missed[from..].iter().map(|t| (*t, "catchup")));
            }
        }
    }
    times.extend(on_time.iter().map(|t| (*t, "schedule")));
    let id = w.row.id.clone();
    let busy = !state
        .db(move |s| s.running_runs(Some(&id)))
        .await?
        .is_empty();
    let mut runs = Vec::new();
    if let Some((at, note)) = skipped_note {
        runs.push(new_run("catchup", "skipped", Some(at), now, Some(note)));
    }
    for (i, (at, trigger)) in times.into_iter().enumerate() {
        // Under `skip`, a time that finds a run going (or queued just before it) is dropped.
        let skip = policy.concurrency == Concurrency::Skip && (busy || i > 0);
        if skip {
            runs.push(new_run(
                trigger,
                "skipped",
                Some(at),
                now,
                Some("the previous run was still going; concurrency is skip".into()),
            ));
        } else {
            runs.push(new_run(trigger, "queued", Some(at), now, None));
        }
    }
    let next = cron.next_after(now);
    let (wid, uid) = (w.row.id.clone(), w.row.user_id);
    state
        .db(move |s| s.advance_schedule(&wid, uid, expected, next, &runs, now))
        .await?;
    Ok(())
}

fn new_run(
    trigger: &str,
    status: &str,
    scheduled_for: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    error: Option<String>,
) -> NewRun {
    NewRun {
        id: new_id("run"),
        trigger: trigger.to_owned(),
        status: status.to_owned(),
        attempt: 1,
        scheduled_for,
        not_before: now,
        payload: None,
        error,
    }
}

/// Start the queued runs whose time came, within the parallel cap and each workload's
/// concurrency policy (`skip` and `queue` run one at a time; `overlap` and jobs in parallel).
async fn dispatch(state: &AppState, now: DateTime<Utc>) -> ApiResult<()> {
    let ready = state.db(move |s| s.ready_runs(now)).await?;
    if ready.is_empty() {
        return Ok(());
    }
    let running = state.db(|s| s.running_runs(None)).await?;
    let mut slots = MAX_PARALLEL_RUNS.saturating_sub(running.len());
    let mut going: HashMap<String, usize> = HashMap::new();
    for r in &running {
        *going.entry(r.workload_id.clone()).or_default() += 1;
    }
    let mut workloads: HashMap<String, Option<Workload>> = HashMap::new();
    for run in ready {
        if slots == 0 {
            break;
        }
        if !workloads.contains_key(&run.workload_id) {
            let w = load(state, &run.workload_id).await?;
            workloads.insert(run.workload_id.clone(), w);
        }
        let Some(w) = workloads.get(&run.workload_id).and_then(|w| w.as_ref()) else {
            continue;
        };
        let one_at_a_time = w
            .schedule
            .as_ref()
            .is_some_and(|s| s.concurrency != Concurrency::Overlap);
        if one_at_a_time && going.get(&run.workload_id).copied().unwrap_or(0) > 0 {
            continue;
        }
        let run_id = run.id.clone();
        if !state.db(move |s| s.claim_run(&run_id, now)).await? {
            continue;
        }
        slots -= 1;
        *going.entry(run.workload_id.clone()).or_default() += 1;
        let (state, w) = (state.clone(), Workload::decode(w.row.clone())?);
        tokio::spawn(async move {
            let outcome = execute(&state, &run, &w).await;
            if let Err(e) = finish(&state, &run, Some(&w), outcome).await {
                tracing::warn!(run = %run.id, error = %e, "recording a workload run failed");
            }
            wake(&state);
        });
    }
    Ok(())
}

/// How a run ended.
struct Outcome {
    status: &'static str,
    exit_code: Option<i32>,
    error: Option<String>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn failed(error: impl Into<String>) -> Self {
        Outcome {
            status: "failed",
            exit_code: None,
            error: Some(error.into()),
            stdout: String::new(),
            stderr: String::new(),
        }
    }
}

fn timeout_of(w: &Workload, run: &RunRow) -> u64 {
    let from_trigger = || {
        w.triggers
            .iter()
            .filter(|t| match run.trigger.as_str() {
                "webhook" => t.kind == TriggerType::Webhook,
                _ => t.kind == TriggerType::Manual,
            })
            .find_map(|t| t.timeout_seconds)
    };
    w.schedule
        .as_ref()
        .and_then(|s| s.timeout_seconds)
        .or_else(from_trigger)
        .unwrap_or(DEFAULT_RUN_TIMEOUT_SECONDS)
}

/// Boot a VM from the workload's snapshot, run its command, destroy the VM.
async fn execute(state: &AppState, run: &RunRow, w: &Workload) -> Outcome {
    let timeout = timeout_of(w, run);
    let mut metadata = serde_json::Map::new();
    metadata.insert("instavm.workload".to_owned(), w.row.slug.clone().into());
    metadata.insert("instavm.run".to_owned(), run.id.clone().into());
    let req = CreateVmRequest {
        memory_mb: w.vm.memory_mb.map(|m| m.min(u32::MAX as u64) as u32),
        vcpu_count: w.vm.vcpu_count,
        // Room for the boot and the clean-up around the command's own limit.
        vm_lifetime_seconds: Some(timeout + 120),
        snapshot_id: Some(w.row.snapshot_id.clone()),
        metadata: Some(metadata),
        ..Default::default()
    };
    let vm = match crate::routes::vms::create_vm(state, w.row.user_id, &req, true).await {
        Ok(vm) => vm,
        Err(e) => return Outcome::failed(format!("the run's VM did not start: {}", e.detail())),
    };
    let (run_id, vm_id) = (run.id.clone(), vm.vm_id.clone());
    let _ = state.db(move |s| s.set_run_vm(&run_id, &vm_id)).await;
    let outcome = match command_in(state, w, run, &vm, timeout).await {
        Ok(out) => {
            let status = if out.timed_out {
                "timed_out"
            } else if out.exit_code == 0 {
                "succeeded"
            } else {
                "failed"
            };
            Outcome {
                status,
                exit_code: (!out.timed_out).then_some(out.exit_code),
                error: out
                    .timed_out
                    .then(|| format!("the command did not finish within {timeout} s")),
                stdout: tail(out.stdout),
                stderr: tail(out.stderr),
            }
        }
        Err(e) => Outcome::failed(format!("the run's command could not run: {}", e.detail())),
    };
    destroy_vm(state, w.row.user_id, &vm.vm_id).await;
    outcome
}

async fn command_in(
    state: &AppState,
    w: &Workload,
    run: &RunRow,
    vm: &VmRecord,
    timeout: u64,
) -> ApiResult<instavm_runtime::ExecOutput> {
    let session = sessions::active(state, w.row.user_id, &vm.session_id).await?;
    let mut script = String::new();
    let mut env = w.env.clone();
    env.insert("INSTAVM_WORKLOAD".into(), w.row.slug.clone());
    env.insert("INSTAVM_RUN_ID".into(), run.id.clone());
    env.insert("INSTAVM_RUN_TRIGGER".into(), run.trigger.clone());
    if let Some(at) = run.scheduled_for {
        env.insert("INSTAVM_SCHEDULED_FOR".into(), at.to_rfc3339());
    }
    if let Some(payload) = &run.payload {
        // The webhook's body, as a file: base64 keeps any byte out of the script's syntax.
        let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
        script.push_str(&format!(
            "printf %s '{b64}' | base64 -d > /tmp/instavm-trigger-payload\n"
        ));
        env.insert(
            "INSTAVM_TRIGGER_PAYLOAD_FILE".into(),
            "/tmp/instavm-trigger-payload".into(),
        );
    }
    for (k, v) in &env {
        script.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    script.push_str(&format!(
        "cd {} && {}\n",
        shell_quote(&w.row.workdir),
        w.row.start_command
    ));
    crate::exec::run(
        state,
        &session,
        Language::Bash,
        script,
        Duration::from_secs(timeout),
    )
    .await
}

fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// The last `MAX_KEPT_OUTPUT` bytes, cut at a character boundary.
fn tail(mut s: String) -> String {
    if s.len() <= MAX_KEPT_OUTPUT {
        return s;
    }
    let mut cut = s.len() - MAX_KEPT_OUTPUT;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    s.replace_range(..cut, "");
    s
}

async fn destroy_vm(state: &AppState, user_id: i64, vm_id: &str) {
    let result = async {
        let row = vms::owned(state, user_id, vm_id).await?;
        vms::delete(state, row).await.map(|_| ())
    }
    .await;
    if let Err(e) = result {
        if !matches!(e, ApiError::NotFound(_)) {
            tracing::warn!(vm = vm_id, error = %e, "destroying a workload run's VM failed");
        }
    }
}

/// Record the outcome, with the retry the schedule allows, in one transaction.
async fn finish(
    state: &AppState,
    run: &RunRow,
    w: Option<&Workload>,
    outcome: Outcome,
) -> ApiResult<()> {
    let now = Utc::now();
    let retry = w
        .and_then(|w| w.schedule.as_ref())
        .filter(|s| outcome.status != "succeeded" && run.attempt <= s.retries.max)
        .map(|s| NewRun {
            id: new_id("run"),
            trigger: "retry".into(),
            status: "queued".into(),
            attempt: run.attempt + 1,
            scheduled_for: run.scheduled_for,
            not_before: now + chrono::Duration::seconds(s.retries.backoff_seconds as i64),
            payload: run.payload.clone(),
            error: None,
        });
    let (run_id, workload_id, user_id) = (run.id.clone(), run.workload_id.clone(), run.user_id);
    let slug = w.map(|w| w.row.slug.clone()).unwrap_or_default();
    state
        .db(move |s| {
            s.finish_run(
                &run_id,
                outcome.status,
                outcome.exit_code,
                outcome.error.as_deref(),
                &outcome.stdout,
                &outcome.stderr,
                now,
                retry.as_ref().map(|r| (workload_id.as_str(), user_id, r)),
            )
        })
        .await?;
    tracing::debug!(run = %run_record(run, &slug).id, "workload run finished");
    Ok(())
}
