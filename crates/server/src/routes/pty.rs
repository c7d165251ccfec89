//! Terminals (spec/api.md §12): REST in both scopes, and the WebSocket stream.
//!
//! The WebSocket carries raw terminal bytes as binary frames both ways, `{"type":"resize"}`
//! text frames in and one `{"type":"exit","exit_code":N}` text frame out. Close codes: 4401 for a
//! bad key, 4404 for an unknown session, VM or terminal, 4502/4504 only while attaching to the
//! guest, 1000 when the program exits or a newer connection takes the terminal over.

use crate::auth::{authenticate, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiPath2, ApiQuery};
use crate::state::AppState;
use crate::terminals::{self, check_size, Scope};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use instavm_api::{pty_close, CreatePtyRequest, PtyControl, PtyList, PtyView, ResizePtyRequest};
use instavm_runtime::{PtyEvent, PtyInput, PtyStream, RuntimeError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// Longest wait for the guest to accept a terminal stream.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(15);

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/sessions/{owner}/pty/sessions",
            post(create::<SESSION>).get(list::<SESSION>),
        )
        .route(
            "/v1/sessions/{owner}/pty/sessions/{pty_id}",
            get(get_one::<SESSION>).delete(kill::<SESSION>),
        )
        .route(
            "/v1/sessions/{owner}/pty/sessions/{pty_id}/resize",
            post(resize::<SESSION>),
        )
        .route(
            "/v1/sessions/{owner}/pty/{pty_id}/connect",
            get(connect::<SESSION>),
        )
        .route(
            "/v1/vms/{owner}/pty/sessions",
            post(create::<VM>).get(list::<VM>),
        )
        .route(
            "/v1/vms/{owner}/pty/sessions/{pty_id}",
            get(get_one::<VM>).delete(kill::<VM>),
        )
        .route(
            "/v1/vms/{owner}/pty/sessions/{pty_id}/resize",
            post(resize::<VM>),
        )
        .route("/v1/vms/{owner}/pty/{pty_id}/connect", get(connect::<VM>))
}

/// The scope as a const parameter, so one handler serves both URL families.
const SESSION: bool = false;
const VM: bool = true;

fn scope(vm: bool) -> Scope {
    if vm {
        Scope::Vm
    } else {
        Scope::Session
    }
}

async fn create<const IN_VM: bool>(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(owner): ApiPath,
    ApiJson(body): ApiJson<CreatePtyRequest>,
) -> ApiResult<Json<PtyView>> {
    let req = terminals::pty_request(body)?;
    let sb = terminals::sandbox(&state, user.id, scope(IN_VM), &owner).await?;
    let info = state.runtime().pty_open(&sb, req).await?;
    let view = terminals::view(&info);
    let step = crate::tapes::Step::PtyOpen {
        pty_id: &view.session_id,
        command: &view.command,
    };
    crate::tapes::record(&state, &sb, step).await;
    Ok(Json(view))
}

async fn list<const IN_VM: bool>(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath(owner): ApiPath,
) -> ApiResult<Json<PtyList>> {
    let sb = terminals::sandbox(&state, user.id, scope(IN_VM), &owner).await?;
    let ptys = state.runtime().pty_list(&sb).await?;
    Ok(Json(PtyList {
        sessions: ptys.iter().map(terminals::view).collect(),
    }))
}

async fn get_one<const IN_VM: bool>(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath2(owner, pty_id): ApiPath2,
) -> ApiResult<Json<PtyView>> {
    let sb = terminals::sandbox(&state, user.id, scope(IN_VM), &owner).await?;
    let info = state.runtime().pty_get(&sb, &pty_id).await?;
    Ok(Json(terminals::view(&info)))
}

async fn resize<const IN_VM: bool>(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath2(owner, pty_id): ApiPath2,
    ApiJson(req): ApiJson<ResizePtyRequest>,
) -> ApiResult<Json<PtyView>> {
    check_size(req.cols, req.rows)?;
    let sb = terminals::sandbox(&state, user.id, scope(IN_VM), &owner).await?;
    let rt = state.runtime();
    rt.pty_resize(&sb, &pty_id, req.cols, req.rows).await?;
    Ok(Json(terminals::view(&rt.pty_get(&sb, &pty_id).await?)))
}

async fn kill<const IN_VM: bool>(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiPath2(owner, pty_id): ApiPath2,
) -> ApiResult<Json<Value>> {
    let sb = terminals::sandbox(&state, user.id, scope(IN_VM), &owner).await?;
    state.runtime().pty_kill(&sb, &pty_id).await?;
    crate::tapes::record(
        &state,
        &sb,
        crate::tapes::Step::PtyClose { pty_id: &pty_id },
    )
    .await;
    Ok(Json(
        json!({ "status": "killed", "session_id": pty_id, "id": pty_id }),
    ))
}

#[derive(Debug, Deserialize)]
struct ConnectQuery {
    api_key: Option<String>,
}

/// A close with a code and a reason (reasons are capped at 123 bytes by the protocol).
fn close(code: u16, reason: &str) -> Message {
    let mut reason = reason.to_owned();
    while reason.len() > 120 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn connect<const IN_VM: bool>(
    State(state): State<AppState>,
    ApiPath2(owner, pty_id): ApiPath2,
    ApiQuery(query): ApiQuery<ConnectQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    // A plain GET (no upgrade) gets a JSON error like every route, not axum's text.
    let ws = ws.map_err(|r| ApiError::from_rejection(r.status(), r.body_text()))?;
    Ok(ws.on_upgrade(move |socket| async move {
        let mut socket = socket;
        match open_stream(&state, scope(IN_VM), &owner, &pty_id, query.api_key).await {
            Ok(stream) => relay(socket, stream).await,
            Err((code, reason)) => {
                let _ = socket.send(close(code, &reason)).await;
            }
        }
    }))
}

/// Authenticate, resolve and attach; an error is the close code and reason to send.
async fn open_stream(
    state: &AppState,
    scope: Scope,
    owner: &str,
    pty_id: &str,
    key: Option<String>,
) -> Result<PtyStream, (u16, String)> {
    let key = key.filter(|k| !k.trim().is_empty()).ok_or((
        pty_close::UNAUTHORIZED,
        "missing API key: pass it as ?api_key=".to_string(),
    ))?;
    let user = authenticate(state, key.trim())
        .await
        .map_err(|e| (pty_close::UNAUTHORIZED, e.to_string()))?;
    let sb = terminals::sandbox(state, user.id, scope, owner)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(m) => (pty_close::NOT_FOUND, m),
            other => (pty_close::API_ERROR, other.to_string()),
        })?;
    let attach = state.runtime().pty_attach(&sb, pty_id);
    match tokio::time::timeout(ATTACH_TIMEOUT, attach).await {
        Err(_) => Err((
            pty_close::GUEST_TIMEOUT,
            "timed out attaching to the terminal".into(),
        )),
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(RuntimeError::PtyNotFound(id))) => {
            Err((pty_close::NOT_FOUND, format!("no terminal {id:?}")))
        }
        Ok(Err(RuntimeError::NotFound(_) | RuntimeError::NotRunning(_))) => {
            Err((pty_close::NOT_FOUND, "the VM is no longer running".into()))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "attaching a terminal failed");
            Err((
                pty_close::GUEST_UNREACHABLE,
                "could not reach the guest agent".into(),
            ))
        }
    }
}

/// Pump both ways until the program exits, the client leaves, or the terminal is taken over.
/// Input runs in its own task so a program that is not reading its input never stops output.
async fn relay(socket: WebSocket, stream: PtyStream) {
    let PtyStream {
        mut output, input, ..
    } = stream;
    let (mut ws_tx, mut ws_rx) = socket.split();
    let inbound = tokio::spawn(async move {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let item = match msg {
                Message::Binary(bytes) => PtyInput::Data(bytes.to_vec()),
                Message::Text(text) => match serde_json::from_str::<PtyControl>(&text) {
                    Ok(PtyControl::Resize { cols, rows }) if check_size(cols, rows).is_ok() => {
                        PtyInput::Resize { cols, rows }
                    }
                    _ => continue, // unknown control messages are ignored, like the client does
                },
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if input.send(item).await.is_err() {
                break;
            }
        }
        // Dropping `input` detaches; the program keeps running.
    });
    let mut end = close(1000, "detached");
    while let Some(event) = output.recv().await {
        match event {
            PtyEvent::Output(bytes) => {
                if ws_tx.send(Message::Binary(bytes.into())).await.is_err() {
                    break; // the client is gone: `inbound` ends and detaches
                }
            }
            PtyEvent::Exit(code) => {
                let exit = PtyControl::Exit { exit_code: code };
                let exit = serde_json::to_string(&exit).unwrap_or_default();
                let _ = ws_tx.send(Message::Text(exit.into())).await;
                end = close(1000, "exited");
                break;
            }
        }
    }
    // The stream ended: exit, takeover, kill, or the client left (then this send just fails).
    let _ = ws_tx.send(end).await;
    inbound.abort();
}
