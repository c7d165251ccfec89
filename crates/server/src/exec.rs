//! Running code in a session's sandbox, for `/execute` and for background tasks.

use crate::error::{ApiError, ApiResult};
use crate::gate::Pass;
use crate::sessions;
use crate::state::AppState;
use chrono::Utc;
use instavm_runtime::{ExecOutput, ExecRequest, Language, RuntimeError, TIMEOUT_EXIT_CODE};
use instavm_store::{ExecutionResult, SessionRecord, UsageCounters};
use std::time::Duration;

/// How long past its own deadline the runtime gets before the server answers for it.
const RUNTIME_GRACE: Duration = Duration::from_secs(10);

/// `language` of a request; Python when left out (spec §25.2).
pub fn parse_language(raw: Option<&str>) -> ApiResult<Language> {
    match raw {
        None => Ok(Language::Python),
        Some(s) => Language::parse(s).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "unsupported language {s:?}: use \"python\" or \"bash\""
            ))
        }),
    }
}

/// Check a requested timeout (seconds).
pub fn check_timeout(state: &AppState, timeout: Option<u64>) -> ApiResult<Option<u64>> {
    let max = state.limits().max_exec_timeout_seconds;
    match timeout {
        Some(t) if t == 0 || t > max => Err(ApiError::Unprocessable(format!(
            "timeout must be between 1 and {max} seconds, got {t}"
        ))),
        other => Ok(other),
    }
}

/// When the client waits `client_timeout` for the answer, stop the code a little earlier so
/// the answer arrives in time (agents.md §2.3): 10% earlier, at least 0.2 s and at most 1 s.
pub fn deadline_for_client(client_timeout: Duration) -> Duration {
    let margin = (client_timeout / 10).clamp(Duration::from_millis(200), Duration::from_secs(1));
    client_timeout
        .saturating_sub(margin)
        .max(Duration::from_millis(100))
}

/// The time limit of a synchronous execution. Without a `timeout`, the client's HTTP timeout
/// is assumed to equal the session lifetime (the official SDK uses one number for both).
pub fn sync_deadline(rec: &SessionRecord, timeout: Option<u64>) -> Duration {
    deadline_for_client(Duration::from_secs(timeout.unwrap_or(rec.lifetime_seconds)))
}

/// The time limit of a background task: its `timeout`, else what is left of the session.
pub fn async_deadline(rec: &SessionRecord, timeout: Option<u64>) -> Duration {
    match timeout {
        Some(t) => Duration::from_secs(t),
        None => (rec.expires_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1)),
    }
}

/// The places an execution takes: one under its session, one under its user.
fn slot_keys(state: &AppState, rec: &SessionRecord) -> [(String, usize); 2] {
    let l = state.limits();
    [
        (
            format!("exec-session:{}", rec.id),
            l.max_concurrent_execs_per_session,
        ),
        (
            format!("exec-user:{}", rec.user_id),
            l.max_concurrent_execs_per_user,
        ),
    ]
}

/// A place for a synchronous execution, or 429: too many are running (a client can retry, and
/// the official SDK raises `RateLimitError` with the detail).
pub fn try_slot(state: &AppState, rec: &SessionRecord) -> ApiResult<Pass> {
    let keys = slot_keys(state, rec);
    state.gate().try_enter(&keys).map_err(|full| {
        let (limit, per) = match full {
            0 => (keys[0].1, "session"),
            _ => (keys[1].1, "user"),
        };
        ApiError::TooManyRequests(format!(
            "too many concurrent executions: at most {limit} at a time per {per}; wait for one to finish"
        ))
    })
}

/// Run code in the session's sandbox and count it against the session.
///
/// The runtime call runs in its own task, so it finishes (and leaves the sandbox's interpreter
/// in a known state) even when the client that asked for it goes away.
pub async fn run(
    state: &AppState,
    rec: &SessionRecord,
    language: Language,
    code: String,
    deadline: Duration,
) -> ApiResult<ExecOutput> {
    let sandbox = sessions::sandbox_id(rec)?;
    let runtime = state.runtime().clone();
    // Kept for the tape only when one may be recording (code can be large).
    let taped_code = state.tapes().may_record().then(|| code.clone());
    let request = ExecRequest {
        language,
        code,
        timeout: Some(deadline),
    };
    let task = {
        let sandbox = sandbox.clone();
        tokio::spawn(async move { runtime.exec(&sandbox, request).await })
    };
    let output = match tokio::time::timeout(deadline + RUNTIME_GRACE, task).await {
        Ok(joined) => joined.map_err(ApiError::internal)?,
        Err(_) => {
            tracing::warn!(session = %rec.id, ?deadline, "the runtime overran an execution deadline");
            Ok(timed_out_output(deadline))
        }
    };
    let output = match output {
        Ok(output) => output,
        Err(RuntimeError::NotFound(_) | RuntimeError::NotRunning(_)) => {
            return Err(sessions::sandbox_gone(state, rec).await)
        }
        Err(err) => return Err(err.into()),
    };
    state.record_usage(
        &rec.id,
        UsageCounters {
            execution_count: 1,
            execution_seconds: output.execution_time,
            cpu_seconds: output.cpu_time,
        },
    );
    if let Some(code) = &taped_code {
        let step = crate::tapes::Step::Execute {
            language: language.as_str(),
            command: code,
            output: &output,
        };
        crate::tapes::record(state, &sandbox, step).await;
    }
    Ok(output)
}

fn timed_out_output(deadline: Duration) -> ExecOutput {
    ExecOutput {
        stdout: String::new(),
        stderr: format!("execution did not stop within its {deadline:?} timeout\n"),
        exit_code: TIMEOUT_EXIT_CODE,
        execution_time: deadline.as_secs_f64(),
        cpu_time: 0.0,
        timed_out: true,
    }
}

/// Start a background task; its result (or why it failed) lands in the store.
pub fn spawn_task(
    state: AppState,
    rec: SessionRecord,
    task_id: String,
    language: Language,
    code: String,
    deadline: Duration,
) {
    tokio::spawn(async move {
        // Background tasks queue for a place instead of failing (their number is bounded by
        // the pending-task limit).
        let _pass = state.gate().enter(&slot_keys(&state, &rec)).await;
        let result = run(&state, &rec, language, code, deadline).await;
        let id = task_id.clone();
        let stored = match result {
            Ok(out) => {
                let result = ExecutionResult {
                    stdout: out.stdout,
                    stderr: out.stderr,
                    exit_code: out.exit_code,
                    timed_out: out.timed_out,
                    execution_time: out.execution_time,
                    cpu_time: out.cpu_time,
                };
                state
                    .db(move |s| s.complete_execution(&id, &result, Utc::now()))
                    .await
            }
            Err(err) => {
                let detail = err.detail();
                if err.status().is_server_error() {
                    tracing::error!(task = %task_id, error = %err, "task failed");
                }
                state
                    .db(move |s| s.fail_execution(&id, &detail, Utc::now()))
                    .await
            }
        };
        if let Err(err) = stored {
            tracing::error!(task = %task_id, error = %err, "storing a task result failed");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_leaves_room_for_the_answer() {
        let d = |s: f64| deadline_for_client(Duration::from_secs_f64(s)).as_secs_f64();
        assert!((d(1.0) - 0.8).abs() < 1e-9);
        assert!((d(5.0) - 4.5).abs() < 1e-9);
        assert!((d(300.0) - 299.0).abs() < 1e-9);
        assert!(d(0.1) >= 0.1 - 1e-9);
    }

    #[test]
    fn language_defaults_to_python_and_rejects_others() {
        assert_eq!(parse_language(None).unwrap(), Language::Python);
        assert_eq!(parse_language(Some("bash")).unwrap(), Language::Bash);
        assert!(matches!(
            parse_language(Some("ruby")),
            Err(ApiError::Unprocessable(_))
        ));
    }
}
