//! `GET /v1/tapes/{id}/diff`: the paths changed between the checkpoints of two steps, from the
//! snapshots' metadata (the runtime's `snapshot_diff`), and with `mode=content` a unified diff
//! of each changed small text file.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use instavm_api::{FileDiff, TapeDiff, TapeStatus};
use instavm_runtime::{ChangeKind, PathChange, SnapshotId};
use instavm_store::TapeRow;

/// Files shown in content mode, and the largest one read.
const CONTENT_FILES: usize = 50;
const CONTENT_BYTES: u64 = 64 * 1024;

pub async fn diff(
    state: &AppState,
    tape: &TapeRow,
    from: u64,
    to: u64,
    content: bool,
) -> ApiResult<TapeDiff> {
    let from_ckpt = checkpoint_for(state, tape, from).await?;
    let to_ckpt = checkpoint_for(state, tape, to).await?;
    let changes = if from_ckpt == to_ckpt {
        Vec::new()
    } else {
        state.runtime().snapshot_diff(&from_ckpt, &to_ckpt).await?
    };
    let contents = if content {
        Some(file_diffs(state, &from_ckpt, &to_ckpt, &changes).await?)
    } else {
        None
    };
    let of = |kind: ChangeKind| -> Vec<String> {
        changes
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.path.clone())
            .collect()
    };
    Ok(TapeDiff {
        tape_id: tape.record.id.clone(),
        from_step: from,
        to_step: to,
        mode: if content { "content" } else { "metadata" }.into(),
        changed_paths: changes.iter().map(|c| c.path.clone()).collect(),
        added: of(ChangeKind::Added),
        modified: of(ChangeKind::Modified),
        deleted: of(ChangeKind::Deleted),
        contents,
    })
}

/// The checkpoint holding the files as they were after `step`, or why there is none.
pub(crate) async fn checkpoint_for(
    state: &AppState,
    tape: &TapeRow,
    step: u64,
) -> ApiResult<SnapshotId> {
    check_step(tape, step, "step")?;
    if tape.record.status == TapeStatus::Expired {
        return Err(ApiError::Conflict(format!(
            "tape {} has expired: its filesystem checkpoints were freed",
            tape.record.id
        )));
    }
    if !tape.record.record_fs {
        return Err(ApiError::Conflict(format!(
            "tape {} was recorded without record_fs, so it has no filesystem checkpoints",
            tape.record.id
        )));
    }
    let id = tape.record.id.clone();
    let ckpt = state
        .db(move |s| s.tape_checkpoint_at(&id, step))
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "tape {} has no filesystem checkpoint at or before step {step}",
                tape.record.id
            ))
        })?;
    SnapshotId::parse(&ckpt.checkpoint_id)
        .ok_or_else(|| ApiError::internal(format!("malformed checkpoint {}", ckpt.checkpoint_id)))
}

/// A step of this tape: 0 (when recording started) up to its last one.
pub(crate) fn check_step(tape: &TapeRow, step: u64, name: &str) -> ApiResult<()> {
    let total = tape.record.total_steps;
    if step > total {
        return Err(ApiError::Unprocessable(format!(
            "{name} {step} is past the last step of tape {} ({total})",
            tape.record.id
        )));
    }
    Ok(())
}

async fn file_diffs(
    state: &AppState,
    from: &SnapshotId,
    to: &SnapshotId,
    changes: &[PathChange],
) -> ApiResult<Vec<FileDiff>> {
    let mut out = Vec::new();
    for change in changes.iter().take(CONTENT_FILES) {
        let Some(old) = text_at(state, from, &change.path).await? else {
            continue;
        };
        let Some(new) = text_at(state, to, &change.path).await? else {
            continue;
        };
        if old == new {
            continue;
        }
        let diff = similar::TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a{}", change.path), &format!("b{}", change.path))
            .to_string();
        out.push(FileDiff {
            path: change.path.clone(),
            diff,
        });
    }
    Ok(out)
}

/// A file's text in a checkpoint: `Some("")` when it did not exist, `None` when it is not a
/// small UTF-8 text file (binary, too big, a directory).
async fn text_at(state: &AppState, snap: &SnapshotId, path: &str) -> ApiResult<Option<String>> {
    let read = state
        .runtime()
        .snapshot_read_file(snap, path, CONTENT_BYTES)
        .await;
    match read {
        Ok(None) => Ok(Some(String::new())),
        Ok(Some(bytes)) => Ok(String::from_utf8(bytes).ok().filter(|t| !t.contains('\0'))),
        Err(instavm_runtime::RuntimeError::WrongFileType(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}
