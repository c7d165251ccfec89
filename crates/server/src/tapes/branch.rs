//! `POST /v1/tapes/{id}/branch`: a new VM with the files of a step, recorded on a child tape.
//!
//! `live` boots the VM from the checkpoint of `at_step` (the files as they were then).
//! `replay` boots it from the checkpoint the tape started from and runs the recorded steps up
//! to `at_step` again: executes re-run their code, uploads put back the file as the checkpoint
//! after them holds it. Either way the VM gets the parent session's size and lifetime and its
//! VM's egress policy, and the child tape records from its `branch` event on.

use super::diff::{check_step, checkpoint_for};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use instavm_api::{BranchTapeResponse, TapeEvent, TapeStatus};
use instavm_runtime::{Language, SandboxSpec, SnapshotId, WriteOptions};
use instavm_store::{SessionRecord, TapeRow};
use serde_json::json;
use std::time::Duration;

/// Events read per page while replaying.
const PAGE: u32 = 500;

pub async fn branch(
    state: &AppState,
    parent: &TapeRow,
    at_step: u64,
    replay: bool,
) -> ApiResult<BranchTapeResponse> {
    check_step(parent, at_step, "at_step")?;
    let boot_from = if replay {
        checkpoint_for(state, parent, 0).await?
    } else {
        checkpoint_for(state, parent, at_step).await?
    };
    let to_replay = if replay {
        replayable_steps(state, parent, at_step).await?
    } else {
        Vec::new()
    };
    let user_id = parent.user_id;
    let sid = parent.record.session_id.clone();
    let session = state
        .db(move |s| s.get_session(&sid))
        .await?
        .ok_or_else(|| ApiError::Conflict("the tape's session no longer exists".into()))?;
    let vm = crate::vms::create(state, new_vm(state, &session, boot_from).await?, true).await?;
    let child_session = {
        let sid = vm.session_id.clone();
        state
            .db(move |s| s.get_session(&sid))
            .await?
            .ok_or_else(|| ApiError::internal("the branched VM has no session"))?
    };
    let parent_link = Some((parent.record.id.clone(), at_step));
    let child = super::start(
        state,
        user_id,
        &child_session,
        parent.record.record_fs,
        parent.record.record_egress_content,
        parent.record.retention_days,
        parent_link,
    )
    .await?;
    let mode = if replay { "replay" } else { "live" };
    let branch_event = json!({
        "parent_tape_id": parent.record.id,
        "parent_step_id": at_step,
        "mode": mode,
        "vm_id": vm.vm_id,
        "status": "ok",
    });
    super::append(state, &child.id, "branch", branch_event, None, None, false)
        .await
        .map_err(ApiError::internal)?;
    let mut replayed = 0;
    for event in &to_replay {
        replay_step(state, parent, &child_session, event).await?;
        replayed += 1;
    }
    tracing::info!(parent = %parent.record.id, child = %child.id, at_step, mode, replayed, vm = %vm.vm_id, "tape branched");
    Ok(BranchTapeResponse {
        tape_id: child.id,
        parent_tape_id: parent.record.id.clone(),
        parent_step_id: at_step,
        status: TapeStatus::Recording,
        mode: mode.into(),
        vm_id: vm.vm_id,
        session_id: child_session.id,
        replayed_steps: replayed,
    })
}

/// The VM of a branch: the parent session's size and lifetime, its VM's egress policy.
async fn new_vm(
    state: &AppState,
    session: &SessionRecord,
    from: SnapshotId,
) -> ApiResult<crate::vms::NewVm> {
    let vm_id = session.vm_id.clone();
    let vm = state.db(move |s| s.get_vm(&vm_id)).await?;
    let egress_policy = match &vm {
        Some(row) => match crate::egress::effective(state, row).await? {
            (_, "default") => None,
            (policy, _) => Some(policy),
        },
        None => None,
    };
    Ok(crate::vms::NewVm {
        user_id: session.user_id,
        spec: SandboxSpec {
            memory_mb: session.memory_mb,
            vcpu_count: session.vcpu_count,
            lifetime: Duration::from_secs(session.lifetime_seconds),
            from_snapshot: Some(from),
            ..SandboxSpec::default()
        },
        metadata: Default::default(),
        snapshot_id: None,
        auto_suspend: false,
        auto_resume: false,
        snapshot_on_terminate: false,
        snapshot_name: None,
        vault_ids: Vec::new(),
        session_id: None,
        mounts: Vec::new(),
        egress_policy,
    })
}

/// The executes and uploads up to `at_step`, checked before any VM boots: a step whose code
/// was cut when recorded cannot be replayed.
async fn replayable_steps(
    state: &AppState,
    tape: &TapeRow,
    at_step: u64,
) -> ApiResult<Vec<TapeEvent>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let id = tape.record.id.clone();
        let page = state
            .db(move |s| s.tape_events(&id, after, None, PAGE))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.step_id;
        for event in page {
            if event.step_id > at_step {
                return Ok(out);
            }
            match event.kind.as_str() {
                "execute" => {
                    let (code, full) = (
                        event.payload["command"].as_str().unwrap_or_default().len() as u64,
                        event.payload["command_bytes"].as_u64().unwrap_or(0),
                    );
                    if code != full {
                        return Err(ApiError::Conflict(format!(
                            "step {} cannot be replayed: its code ({full} bytes) was longer than a tape keeps",
                            event.step_id
                        )));
                    }
                    out.push(event);
                }
                "upload" => out.push(event),
                _ => {}
            }
        }
    }
    Ok(out)
}

async fn replay_step(
    state: &AppState,
    parent: &TapeRow,
    session: &SessionRecord,
    event: &TapeEvent,
) -> ApiResult<()> {
    let p = &event.payload;
    match event.kind.as_str() {
        "execute" => {
            let language = Language::parse(p["language"].as_str().unwrap_or("python"))
                .unwrap_or(Language::Python);
            let code = p["command"].as_str().unwrap_or_default().to_owned();
            let deadline = crate::exec::sync_deadline(session, None);
            crate::exec::run(state, session, language, code, deadline).await?;
        }
        "upload" => {
            let path = p["path"].as_str().unwrap_or_default().to_owned();
            let ckpt = checkpoint_for(state, parent, event.step_id).await?;
            let max = state.limits().max_upload_bytes as u64;
            let bytes = state
                .runtime()
                .snapshot_read_file(&ckpt, &path, max)
                .await?
                .ok_or_else(|| {
                    ApiError::Conflict(format!(
                        "step {} cannot be replayed: {path} is not in its checkpoint",
                        event.step_id
                    ))
                })?;
            let sandbox = crate::sessions::sandbox_id(session)?;
            let size = bytes.len() as u64;
            let reader: instavm_runtime::ByteReader = Box::pin(std::io::Cursor::new(bytes));
            state
                .runtime()
                .write_file(&sandbox, &path, reader, WriteOptions::default())
                .await?;
            super::record(state, &sandbox, super::Step::Upload { path: &path, size }).await;
        }
        _ => {}
    }
    Ok(())
}
