//! Keeping session records true to the sandboxes: reconciliation at start, runtime events,
//! a periodic sweep for expired sessions, and getting the runtime ready.

use crate::error::ApiError;
use crate::sessions::{self, reason};
use crate::state::{AppState, Readiness};
use chrono::Utc;
use instavm_api::SessionState;
use instavm_runtime::{ExitReason, RuntimeEvent, SandboxState};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;

/// How often expired sessions are ended and usage counters are written.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Recorded for tasks that were running when the server stopped.
pub const INTERRUPTED: &str = "interrupted by a server restart";

/// Bring the records in line with the runtime after a (re)start:
/// - tasks still pending were interrupted and become failed;
/// - active sessions whose sandbox is gone become terminated;
/// - sandboxes that no active session owns (a start that crashed midway) are destroyed.
pub async fn reconcile(state: &AppState) -> Result<(), ApiError> {
    let now = Utc::now();
    let failed = state
        .db(move |s| s.fail_pending_executions(INTERRUPTED, now))
        .await?;
    let sandboxes = state.runtime().list().await?;
    let running: HashSet<String> = sandboxes
        .iter()
        .filter(|sb| sb.state == SandboxState::Running)
        .map(|sb| sb.id.to_string())
        .collect();
    let active = state.db(|s| s.active_sessions()).await?;
    let mut owned = HashSet::new();
    let (mut lost, mut expired) = (0, 0);
    for rec in &active {
        if !running.contains(&rec.sandbox_id) {
            sessions::mark_ended(state, &rec.id, SessionState::Terminated, reason::LOST).await?;
            lost += 1;
        } else if now >= rec.expires_at {
            sessions::end(state, rec, SessionState::Expired, reason::EXPIRED).await?;
            expired += 1;
        } else {
            owned.insert(rec.sandbox_id.clone());
        }
    }
    let mut orphans = 0;
    for sb in sandboxes {
        if !owned.contains(sb.id.as_str()) {
            orphans += 1;
            if let Err(err) = state.runtime().destroy(&sb.id).await {
                tracing::warn!(sandbox = %sb.id, error = %err, "destroying an orphan sandbox failed");
            }
        }
    }
    crate::vms::reconcile(state).await?;
    tracing::info!(
        recovered = owned.len(),
        lost,
        expired,
        orphans,
        interrupted_tasks = failed,
        "reconciled sessions with the runtime"
    );
    Ok(())
}

/// Start the background work; the tasks stop when the set is dropped.
pub fn spawn(state: AppState) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    tasks.spawn(prepare_until_ready(state.clone()));
    tasks.spawn(watch_events(state.clone()));
    tasks.spawn(crate::workloads::runner::run_forever(state.clone()));
    tasks.spawn(sweep_forever(state));
    tasks
}

/// Run `Runtime::prepare` (the base image build on first use) until it succeeds, so
/// `/health` turns 200; retried with backoff when it fails.
async fn prepare_until_ready(state: AppState) {
    let mut delay = Duration::from_secs(5);
    loop {
        tracing::info!(
            runtime = state.runtime().name(),
            "preparing the sandbox runtime"
        );
        match state.runtime().prepare().await {
            Ok(()) => {
                tracing::info!("the sandbox runtime is ready");
                state.set_readiness(Readiness::Ready);
                return;
            }
            Err(err) => {
                tracing::error!(error = %err, retry_in = ?delay, "preparing the sandbox runtime failed");
                state.set_readiness(Readiness::Failed(err.to_string()));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(300));
            }
        }
    }
}

/// Mark sessions whose sandbox expired, died or was destroyed.
async fn watch_events(state: AppState) {
    let mut events = state.runtime().subscribe();
    loop {
        match events.recv().await {
            Ok(RuntimeEvent::Exited { id, reason: why }) => {
                let (new_state, text) = match why {
                    ExitReason::Expired => (SessionState::Expired, reason::EXPIRED),
                    ExitReason::Destroyed => (SessionState::Terminated, reason::DESTROYED),
                    ExitReason::Died => (SessionState::Terminated, reason::DIED),
                };
                let sandbox = id.to_string();
                let found = state
                    .db(move |s| s.active_session_by_sandbox(&sandbox))
                    .await;
                match found {
                    Ok(Some(rec)) => {
                        if let Err(err) =
                            sessions::mark_ended(&state, &rec.id, new_state, text).await
                        {
                            tracing::error!(error = %err, "recording a session end failed");
                        }
                    }
                    Ok(None) => {}
                    Err(err) => tracing::error!(error = %err, "looking up a session failed"),
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "missed runtime events; checking every session");
                if let Err(err) = end_lost_sessions(&state).await {
                    tracing::error!(error = %err, "checking sessions failed");
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// End active sessions whose sandbox the runtime no longer has.
async fn end_lost_sessions(state: &AppState) -> Result<(), ApiError> {
    let running: HashSet<String> = state
        .runtime()
        .list()
        .await?
        .into_iter()
        .filter(|sb| sb.state == SandboxState::Running)
        .map(|sb| sb.id.to_string())
        .collect();
    for rec in state.db(|s| s.active_sessions()).await? {
        if !running.contains(&rec.sandbox_id) {
            sessions::mark_ended(state, &rec.id, SessionState::Terminated, reason::DIED).await?;
        }
    }
    Ok(())
}

async fn sweep_forever(state: AppState) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(err) = sweep(&state).await {
            tracing::error!(error = %err, "sweep failed");
        }
    }
}

/// End sessions past their lifetime (the runtime's reaper normally gets there first) and write
/// buffered usage counters.
pub async fn sweep(state: &AppState) -> Result<(), ApiError> {
    state.flush_usage().await?;
    crate::vms::sweep(state).await?;
    crate::shares::sweep(state).await?;
    crate::vault::prune_logs(state).await?;
    crate::tapes::sweep(state).await?;
    let now = Utc::now();
    for rec in state.db(|s| s.active_sessions()).await? {
        if now >= rec.expires_at {
            sessions::end(state, &rec, SessionState::Expired, reason::EXPIRED).await?;
        }
    }
    Ok(())
}
