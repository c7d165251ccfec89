//! Terminal rules shared by the REST and WebSocket handlers (spec/api.md §12): which sandbox a
//! scope names for the caller, what a create request means, and how a terminal is shown.

use crate::error::{ApiError, ApiResult};
use crate::sessions;
use crate::state::AppState;
use instavm_api::{CreatePtyRequest, PtyView};
use instavm_runtime::{PtyCommand, PtyInfo, PtyRequest, SandboxId};
use rand::RngCore;

/// Largest terminal either way; beyond this a client is confused, not ambitious.
const MAX_DIMENSION: u16 = 1000;
const DEFAULT_TERM: &str = "xterm-256color";

/// The two equivalent URL scopes of §12.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Session,
    Vm,
}

/// The running sandbox behind `/v1/sessions/{id}/...` or `/v1/vms/{id}/...` for this user.
pub async fn sandbox(
    state: &AppState,
    user_id: i64,
    scope: Scope,
    id: &str,
) -> ApiResult<SandboxId> {
    let rec = match scope {
        Scope::Session => sessions::active(state, user_id, id).await?,
        Scope::Vm => {
            let vm_id = id.to_owned();
            let rec = state
                .db(move |s| s.get_user_session_by_vm(user_id, &vm_id))
                .await?
                .ok_or_else(|| ApiError::NotFound("VM not found".into()))?;
            sessions::active(state, user_id, &rec.id).await?
        }
    };
    sessions::sandbox_id(&rec)
}

pub fn check_size(cols: u16, rows: u16) -> ApiResult<()> {
    if cols == 0 || rows == 0 || cols > MAX_DIMENSION || rows > MAX_DIMENSION {
        return Err(ApiError::BadRequest(format!(
            "cols and rows must be between 1 and {MAX_DIMENSION} (got {cols}x{rows})"
        )));
    }
    Ok(())
}

fn non_empty(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(v) if v.trim().is_empty() => Err(ApiError::BadRequest(format!("`{field}` is empty"))),
        Some(v) if v.contains('\0') => Err(ApiError::BadRequest(format!(
            "`{field}` contains a NUL byte"
        ))),
        other => Ok(other),
    }
}

/// What a create request means, checked.
pub fn pty_request(body: CreatePtyRequest) -> ApiResult<PtyRequest> {
    let (cols, rows) = (body.cols.unwrap_or(80), body.rows.unwrap_or(24));
    check_size(cols, rows)?;
    let command = match (
        non_empty("shell", body.shell)?,
        non_empty("command", body.command)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "send either `shell` (a program) or `command` (a command line), not both".into(),
            ))
        }
        (Some(shell), None) => PtyCommand::Shell(shell),
        (None, Some(line)) => PtyCommand::Command(line),
        (None, None) => PtyCommand::DefaultShell,
    };
    let id = match body.id {
        Some(id) if instavm_runtime::is_valid_pty_id(&id) => id,
        Some(id) => {
            return Err(ApiError::BadRequest(format!(
                "invalid terminal id {id:?}: use 1 to {} letters, digits, `-`, `_` or `.`",
                instavm_runtime::MAX_PTY_ID
            )))
        }
        None => generate_id(),
    };
    let term = non_empty("term", body.term)?.unwrap_or_else(|| DEFAULT_TERM.into());
    if !term.bytes().all(|b| b.is_ascii_graphic()) || term.len() > 64 {
        return Err(ApiError::BadRequest(format!("invalid `term` {term:?}")));
    }
    Ok(PtyRequest {
        id,
        command,
        term,
        cols,
        rows,
    })
}

/// `pty-` and 12 hex digits, the shape the official clients use.
pub fn generate_id() -> String {
    let mut bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("pty-{}", hex::encode(bytes))
}

/// A terminal as the API shows it.
pub fn view(p: &PtyInfo) -> PtyView {
    PtyView {
        session_id: p.id.clone(),
        id: p.id.clone(),
        alive: p.alive(),
        exit_code: p.exit_code,
        command: p.argv.join(" "),
        argv: p.argv.clone(),
        pid: p.pid,
        cols: p.cols,
        rows: p.rows,
        attached: p.attached,
        created_at: p.created_at,
    }
}
