//! Tapes (spec §17, docs/tapes.md): a session recorded step by step.
//!
//! The hooks of executes, uploads, downloads and terminals call [`record`] with what happened;
//! when the session's sandbox records on a tape, that becomes the tape's next step. With
//! `record_fs`, a step that can change files first takes a checkpoint (a runtime snapshot of
//! the VM's writable layer, O(1) on btrfs), so any step's files can be diffed and branched
//! from. Clients add their own events (tool calls, LLM calls) through the API.

mod branch;
mod cassette;
mod diff;

pub use branch::branch;
pub use diff::diff;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use base64::Engine;
use chrono::Utc;
use instavm_api::{TapeRecord, TapeStatus};
use instavm_runtime::{ExecOutput, SandboxId, SnapshotId};
use instavm_store::{AppendError, NewTapeEvent, TapeRow};
use rand::RngCore;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;

/// Bytes of stdout and of stderr an `execute` step keeps (the rest is counted, not stored).
const OUTPUT_KEPT: usize = 4096;
/// Bytes of code an `execute` step keeps (longer code is recorded but cannot be replayed).
const COMMAND_KEPT: usize = 256 * 1024;

/// What the server knows about tapes outside the database.
#[derive(Default)]
pub struct Tapes {
    /// Tapes in `recording`, as a hint: when it is zero no hook reads the database. It never
    /// stays below the true number (raised before a tape is stored, lowered after it ends).
    recording: AtomicI64,
    /// Where `llm_call` cassettes are written (spec/webhooks.md §2).
    cassette_root: OnceLock<PathBuf>,
}

impl Tapes {
    pub(crate) fn may_record(&self) -> bool {
        self.recording.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn started(&self) {
        self.recording.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ended(&self, n: usize) {
        self.recording.fetch_sub(n as i64, Ordering::Relaxed);
    }

    pub fn set_cassette_root(&self, root: PathBuf) {
        let _ = self.cassette_root.set(root);
    }

    pub(crate) fn cassette_root(&self) -> Option<&PathBuf> {
        self.cassette_root.get()
    }
}

/// At start: how many tapes are recording (the hint of [`Tapes`]).
pub async fn load(state: &AppState) -> ApiResult<()> {
    let n = state.db(|s| s.count_recording_tapes()).await?;
    state.tapes().recording.store(n as i64, Ordering::Relaxed);
    Ok(())
}

/// Something a session did that becomes a step of its tape.
pub enum Step<'a> {
    Execute {
        language: &'a str,
        command: &'a str,
        output: &'a ExecOutput,
    },
    Upload {
        path: &'a str,
        size: u64,
    },
    Download {
        path: &'a str,
        size: u64,
    },
    PtyOpen {
        pty_id: &'a str,
        command: &'a str,
    },
    PtyClose {
        pty_id: &'a str,
    },
}

impl Step<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Step::Execute { .. } => "execute",
            Step::Upload { .. } => "upload",
            Step::Download { .. } => "download",
            Step::PtyOpen { .. } => "pty_open",
            Step::PtyClose { .. } => "pty_close",
        }
    }

    /// Steps after which the files may differ get a checkpoint.
    fn changes_files(&self) -> bool {
        matches!(
            self,
            Step::Execute { .. } | Step::Upload { .. } | Step::PtyClose { .. }
        )
    }

    fn payload(&self) -> Value {
        match self {
            Step::Execute {
                language,
                command,
                output,
            } => json!({
                "language": language,
                "command": cut(command, COMMAND_KEPT),
                "command_bytes": command.len(),
                "status": if output.timed_out { "timeout" } else if output.exit_code == 0 { "ok" } else { "error" },
                "exit_code": output.exit_code,
                "execution_time": output.execution_time,
                "stdout": cut(&output.stdout, OUTPUT_KEPT),
                "stdout_bytes": output.stdout.len(),
                "stderr": cut(&output.stderr, OUTPUT_KEPT),
                "stderr_bytes": output.stderr.len(),
            }),
            Step::Upload { path, size } => json!({"path": path, "size": size, "status": "ok"}),
            Step::Download { path, size } => json!({"path": path, "size": size, "status": "ok"}),
            Step::PtyOpen { pty_id, command } => {
                json!({"pty_id": pty_id, "command": command, "status": "open"})
            }
            Step::PtyClose { pty_id } => json!({"pty_id": pty_id, "status": "closed"}),
        }
    }
}

/// The longest prefix of `s` within `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Record `step` on the tape of the session of `sandbox`, if it records. Never fails the
/// caller's request: a broken recording marks the tape `failed` with the reason.
pub async fn record(state: &AppState, sandbox: &SandboxId, step: Step<'_>) {
    if !state.tapes().may_record() {
        return;
    }
    let sb = sandbox.to_string();
    let tape = match state.db(move |s| s.recording_tape_of_sandbox(&sb)).await {
        Ok(Some(tape)) => tape,
        Ok(None) => return,
        Err(err) => {
            tracing::error!(error = %err, "looking up the recording tape");
            return;
        }
    };
    if let Err(err) = record_on(state, &tape, sandbox, step).await {
        tracing::error!(tape = %tape.record.id, error = %err, "recording a step failed");
        fail(state, &tape.record.id, &err.to_string()).await;
    }
}

async fn record_on(
    state: &AppState,
    tape: &TapeRow,
    sandbox: &SandboxId,
    step: Step<'_>,
) -> ApiResult<()> {
    let checkpoint = if tape.record.record_fs && step.changes_files() {
        Some(checkpoint(state, sandbox).await?)
    } else {
        None
    };
    let tape_id = tape.record.id.clone();
    let (kind, payload) = (step.kind().to_owned(), step.payload());
    let ckpt = checkpoint.clone();
    // `Ok` around the store's answer: the append's own errors are matched below.
    let stored = state
        .db(move |store| {
            let event = NewTapeEvent {
                tape_id: &tape_id,
                kind: &kind,
                payload: &payload,
                parent_step_id: None,
                checkpoint_id: ckpt.as_ref().map(|(id, _)| id.as_str()),
                owns_checkpoint: true,
                ts: Utc::now(),
            };
            Ok(match &ckpt {
                Some((id, size_bytes)) => {
                    let summary = json!({"checkpoint_id": id.as_str(), "size_bytes": size_bytes});
                    store.append_tape_step_with_summary(&event, &summary)
                }
                None => store.append_tape_event(&event),
            })
        })
        .await?;
    match stored {
        Ok(_) => Ok(()),
        Err(err) => {
            // Stopped meanwhile (or the write failed): the checkpoint belongs to no step.
            if let Some((id, _)) = &checkpoint {
                drop_checkpoint(state, id).await;
            }
            match err {
                AppendError::NotRecording(_) | AppendError::NoTape => Ok(()),
                other => Err(ApiError::internal(other)),
            }
        }
    }
}

/// An HTTP request a VM made through the vault's egress proxy becomes an `http_egress` step
/// of its session's tape: host, method, path (no query string), status and the name of the
/// credential injected, never a value. A tape with `record_egress_content` also gets the first
/// 64 KiB of both bodies (the response with every injected value redacted by the proxy).
pub async fn record_egress(state: &AppState, log: &instavm_net::vault::RequestLog) {
    let vm_id = log.vm_id.clone();
    let tape = match state.db(move |s| s.recording_tape_of_vm(&vm_id)).await {
        Ok(Some(tape)) => tape,
        Ok(None) => return,
        Err(err) => {
            tracing::error!(error = %err, "looking up the recording tape of an egress request");
            return;
        }
    };
    let mut payload = json!({
        "host": log.host,
        "method": log.method,
        "path": log.path,
        "status": log.status,
        "credential_name": log.credential_name,
        "via": "vault",
        "vm_id": log.vm_id,
    });
    if let (true, Some(bodies), Some(p)) = (
        tape.record.record_egress_content,
        &log.bodies,
        payload.as_object_mut(),
    ) {
        for (name, body) in [("request", &bodies.request), ("response", &bodies.response)] {
            p.insert(format!("{name}_bytes"), body.total.into());
            p.insert(format!("{name}_truncated"), body.truncated().into());
            match std::str::from_utf8(&body.bytes) {
                Ok(text) => p.insert(format!("{name}_body"), text.into()),
                Err(_) => p.insert(
                    format!("{name}_body_b64"),
                    base64::engine::general_purpose::STANDARD
                        .encode(&body.bytes)
                        .into(),
                ),
            };
        }
        p.insert(
            "response_content_type".into(),
            bodies.response_content_type.clone().into(),
        );
    }
    let llm_call = tape
        .record
        .record_egress_content
        .then(|| log.bodies.as_ref().and_then(|b| llm_call(log, b)))
        .flatten();
    let tape_id = &tape.record.id;
    match append(state, tape_id, "http_egress", payload, None, None, false).await {
        Ok(step) => {
            if let Some(call) = llm_call {
                let parent = Some(step);
                match append(
                    state,
                    tape_id,
                    "llm_call",
                    call.clone(),
                    parent,
                    None,
                    false,
                )
                .await
                {
                    Ok(step) => cassette::append(state, tape_id, step, &call),
                    Err(AppendError::NotRecording(_) | AppendError::NoTape) => {}
                    Err(err) => {
                        tracing::error!(tape = %tape_id, error = %err, "recording an LLM call")
                    }
                }
            }
        }
        Err(AppendError::NotRecording(_) | AppendError::NoTape) => {}
        Err(err) => tracing::error!(tape = %tape_id, error = %err, "recording an egress request"),
    }
}

/// Hosts whose API calls are LLM calls (their answers are what cassettes replay).
const LLM_HOSTS: &[&str] = &[
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "api.mistral.ai",
    "api.groq.com",
    "openrouter.ai",
];

/// An egress request to an LLM API as an `llm_call` payload in the cassette format of
/// spec/webhooks.md §2.2, when both bodies were kept whole and the request had no query string
/// (the cassette matches the exact URL, and the query is never kept).
fn llm_call(
    log: &instavm_net::vault::RequestLog,
    bodies: &instavm_net::vault::CapturedBodies,
) -> Option<Value> {
    use sha2::Digest;
    if !LLM_HOSTS.contains(&log.host.as_str())
        || bodies.request.truncated()
        || bodies.response.truncated()
        || log.has_query
    {
        return None;
    }
    let named = [
        ("content-type", &bodies.response_content_type),
        ("content-encoding", &bodies.response_content_encoding),
    ];
    let headers: Vec<[String; 2]> = named
        .iter()
        .filter_map(|(name, value)| Some([name.to_string(), (*value).clone()?]))
        .collect();
    Some(json!({
        "request": {
            "method": log.method,
            "url": format!("https://{}{}", log.host, log.path),
            "body_sha256": hex::encode(sha2::Sha256::digest(&bodies.request.bytes)),
        },
        "response": {
            "status": log.status.unwrap_or(200),
            "headers": headers,
            "body_b64": base64::engine::general_purpose::STANDARD.encode(&bodies.response.bytes),
        },
        "via": "vault",
    }))
}

/// Append an event on the tape's next step.
pub(crate) async fn append(
    state: &AppState,
    tape_id: &str,
    kind: &str,
    payload: Value,
    parent_step_id: Option<u64>,
    checkpoint_id: Option<String>,
    owns_checkpoint: bool,
) -> Result<u64, AppendError> {
    let (tape_id, kind) = (tape_id.to_owned(), kind.to_owned());
    let appended = state
        .db(move |store| {
            Ok(store.append_tape_event(&NewTapeEvent {
                tape_id: &tape_id,
                kind: &kind,
                payload: &payload,
                parent_step_id,
                checkpoint_id: checkpoint_id.as_deref(),
                owns_checkpoint,
                ts: Utc::now(),
            }))
        })
        .await;
    // The outer error is the blocking task's (it panicked or was cancelled).
    appended.unwrap_or_else(|e| {
        Err(AppendError::Store(instavm_store::StoreError::Encode(
            e.to_string(),
        )))
    })
}

/// A new checkpoint of the sandbox's writable layer, with the bytes it held.
pub(crate) async fn checkpoint(
    state: &AppState,
    sandbox: &SandboxId,
) -> ApiResult<(SnapshotId, u64)> {
    let mut bytes = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut bytes);
    let id = SnapshotId::parse(&format!("tck_{}", hex::encode(bytes)))
        .ok_or_else(|| ApiError::internal("malformed checkpoint id"))?;
    let started = std::time::Instant::now();
    let info = state.runtime().snapshot(sandbox, &id).await?;
    tracing::debug!(checkpoint = %id, us = started.elapsed().as_micros() as u64, "tape checkpoint");
    Ok((id, info.size_bytes))
}

async fn drop_checkpoint(state: &AppState, id: &SnapshotId) {
    if let Err(err) = state.runtime().delete_snapshot(id).await {
        tracing::warn!(checkpoint = %id, error = %err, "deleting a tape checkpoint failed");
    }
}

pub(crate) async fn drop_checkpoints(state: &AppState, ids: &[String]) {
    for id in ids.iter().filter_map(|i| SnapshotId::parse(i)) {
        drop_checkpoint(state, &id).await;
    }
}

async fn fail(state: &AppState, tape_id: &str, why: &str) {
    let (id, why) = (tape_id.to_owned(), why.to_owned());
    match state
        .db(move |s| s.end_tape(&id, TapeStatus::Failed, Some(&why), Utc::now()))
        .await
    {
        Ok(true) => state.tapes().ended(1),
        Ok(false) => {}
        Err(err) => tracing::error!(error = %err, "marking a tape failed"),
    }
}

/// A new tape id.
pub(crate) fn new_tape_id() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("tape_{}", hex::encode(bytes))
}

/// Most days a tape may be kept.
pub const MAX_RETENTION_DAYS: u32 = 365;

/// Start recording a session (active, the caller's) on a new tape; `parent` links a branch.
pub(crate) async fn start(
    state: &AppState,
    user_id: i64,
    session: &instavm_store::SessionRecord,
    record_fs: bool,
    record_egress_content: bool,
    retention_days: u32,
    parent: Option<(String, u64)>,
) -> ApiResult<TapeRecord> {
    if !(1..=MAX_RETENTION_DAYS).contains(&retention_days) {
        return Err(ApiError::Unprocessable(format!(
            "retention_days must be between 1 and {MAX_RETENTION_DAYS}, got {retention_days}"
        )));
    }
    let sid = session.id.clone();
    if state.db(move |s| s.recording_tape(&sid)).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "session {} is already recording a tape; stop it first",
            session.id
        )));
    }
    let sandbox = crate::sessions::sandbox_id(session)?;
    let start_checkpoint = if record_fs {
        Some(checkpoint(state, &sandbox).await?.0)
    } else {
        None
    };
    let now = Utc::now();
    let id = new_tape_id();
    let (parent_tape_id, parent_step_id) = match parent {
        Some((t, s)) => (Some(t), Some(s)),
        None => (None, None),
    };
    let row = TapeRow {
        user_id,
        record: TapeRecord {
            tape_id: id.clone(),
            id,
            status: TapeStatus::Recording,
            session_id: session.id.clone(),
            vm_id: Some(session.vm_id.clone()),
            total_steps: 0,
            record_fs,
            record_egress_content,
            retention_days,
            parent_tape_id,
            parent_step_id,
            created_at: now,
            stopped_at: None,
            expires_at: now + chrono::Duration::days(retention_days.into()),
            error: None,
        },
    };
    state.tapes().started();
    let stored = {
        let row = row.clone();
        let ckpt = start_checkpoint.as_ref().map(|c| c.as_str().to_owned());
        state
            .db(move |s| s.insert_tape(&row, ckpt.as_deref()))
            .await
    };
    if let Err(err) = stored {
        state.tapes().ended(1);
        if let Some(c) = &start_checkpoint {
            drop_checkpoint(state, c).await;
        }
        return Err(err);
    }
    tracing::info!(tape = %row.record.id, session = %session.id, record_fs, "tape recording");
    Ok(row.record)
}

/// Stop a tape (a stopped one stays as it is).
pub(crate) async fn stop(state: &AppState, tape_id: &str) -> ApiResult<()> {
    let id = tape_id.to_owned();
    let ended = state
        .db(move |s| s.end_tape(&id, TapeStatus::Stopped, None, Utc::now()))
        .await?;
    if ended {
        state.tapes().ended(1);
    }
    Ok(())
}

/// Delete a tape, its checkpoints and its cassette.
pub(crate) async fn delete(state: &AppState, tape: &TapeRow) -> ApiResult<u64> {
    let id = tape.record.id.clone();
    let checkpoints = state.db(move |s| s.delete_tape(&id)).await?;
    if tape.record.status == TapeStatus::Recording {
        state.tapes().ended(1);
    }
    drop_checkpoints(state, &checkpoints).await;
    cassette::remove(state, &tape.record.id);
    Ok(checkpoints.len() as u64)
}

/// Every few seconds: stop the tapes of ended sessions, expire tapes past their retention
/// (their checkpoints and cassettes are freed; the record and events stay, as `expired`).
pub async fn sweep(state: &AppState) -> ApiResult<()> {
    let now = Utc::now();
    let stopped = state
        .db(move |s| s.stop_tapes_of_ended_sessions(now))
        .await?;
    if !stopped.is_empty() {
        state.tapes().ended(stopped.len());
        tracing::info!(tapes = stopped.len(), "stopped the tapes of ended sessions");
    }
    let expired = state.db(move |s| s.expire_tapes(now)).await?;
    for tape in expired {
        if tape.was_recording {
            state.tapes().ended(1);
        }
        drop_checkpoints(state, &tape.checkpoints).await;
        cassette::remove(state, &tape.id);
        tracing::info!(tape = %tape.id, checkpoints = tape.checkpoints.len(), "tape expired");
    }
    Ok(())
}

/// `llm_call` events also go to the tape's cassette file.
pub(crate) fn after_client_event(
    state: &AppState,
    tape_id: &str,
    step_id: u64,
    kind: &str,
    payload: &Value,
) {
    if kind == "llm_call" {
        cassette::append(state, tape_id, step_id, payload);
    }
}
