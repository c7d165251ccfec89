//! The host side of sandbox terminals: requests to the agent's PTY table, and an attached
//! terminal's stream turned into a pair of bounded channels.

use crate::agent_client::AgentClient;
use chrono::{TimeZone, Utc};
use instavm_protocol::{
    parse_json, read_frame_async, write_frame_async, write_json_async, ErrorKind, FrameKind,
    PtyState, Request, Response,
};
use instavm_runtime::{PtyEvent, PtyInfo, PtyInput, PtyStream, RuntimeError};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Output chunks (of at most 64 KiB) buffered per attached terminal before the agent waits.
const OUTPUT_CHUNKS: usize = 16;
const INPUT_MESSAGES: usize = 64;

pub fn info(s: PtyState) -> PtyInfo {
    PtyInfo {
        id: s.id,
        argv: s.argv,
        pid: s.pid,
        cols: s.cols,
        rows: s.rows,
        created_at: Utc
            .timestamp_opt(s.created_at, 0)
            .single()
            .unwrap_or_else(Utc::now),
        exit_code: s.exit_code,
        attached: s.attached,
    }
}

/// An agent's error answer about terminal `id`.
pub fn error(kind: ErrorKind, message: String, id: &str) -> RuntimeError {
    match kind {
        ErrorKind::NotFound => RuntimeError::PtyNotFound(id.to_owned()),
        ErrorKind::AlreadyExists => RuntimeError::AlreadyExists(format!("terminal {id:?}")),
        ErrorKind::LimitReached => RuntimeError::LimitReached(message),
        ErrorKind::BadRequest => RuntimeError::InvalidRequest(message),
        _ => RuntimeError::Agent(message),
    }
}

fn agent_err(e: std::io::Error) -> RuntimeError {
    RuntimeError::Agent(e.to_string())
}

/// Attach to terminal `id` on a connection of its own.
pub async fn attach(client: &AgentClient, id: &str) -> Result<PtyStream, RuntimeError> {
    let mut s = UnixStream::connect(client.socket())
        .await
        .map_err(agent_err)?;
    write_json_async(&mut s, &Request::PtyAttach { id: id.to_owned() })
        .await
        .map_err(agent_err)?;
    let first = read_frame_async(&mut s)
        .await
        .map_err(agent_err)?
        .ok_or_else(|| RuntimeError::Agent("the agent closed the terminal stream".into()))?;
    let state = match parse_json::<Response>(&first).map_err(agent_err)? {
        Response::Pty(state) => state,
        Response::Error { kind, message } => return Err(error(kind, message, id)),
        other => return Err(RuntimeError::Agent(format!("unexpected answer {other:?}"))),
    };
    let (mut rd, mut wr) = s.into_split();
    let (out_tx, out_rx) = mpsc::channel(OUTPUT_CHUNKS);
    let (in_tx, mut in_rx) = mpsc::channel::<PtyInput>(INPUT_MESSAGES);
    let pty_id = id.to_owned();
    tokio::spawn(async move {
        // Agent → client. Awaiting the channel is the backpressure: no read while it is full.
        loop {
            let event = match read_frame_async(&mut rd).await {
                Ok(Some(f)) if f.kind == FrameKind::Data => PtyEvent::Output(f.payload),
                Ok(Some(f)) if f.kind == FrameKind::Json => match parse_json::<Response>(&f) {
                    Ok(Response::PtyExit { exit_code }) => PtyEvent::Exit(exit_code),
                    _ => return,
                },
                // Taken over, killed, or the sandbox is gone: the stream just ends.
                _ => return,
            };
            let last = matches!(event, PtyEvent::Exit(_));
            if out_tx.send(event).await.is_err() || last {
                return;
            }
        }
    });
    tokio::spawn(async move {
        // Client → agent, until the client drops its sender (a detach) or the agent goes away.
        while let Some(input) = in_rx.recv().await {
            let sent = match input {
                PtyInput::Data(bytes) => write_frame_async(&mut wr, FrameKind::Data, &bytes).await,
                PtyInput::Resize { cols, rows } => {
                    let resize = Request::PtyResize {
                        id: pty_id.clone(),
                        cols,
                        rows,
                    };
                    write_json_async(&mut wr, &resize).await
                }
            };
            if sent.is_err() {
                return;
            }
        }
        let _ = write_frame_async(&mut wr, FrameKind::End, &[]).await;
    });
    Ok(PtyStream {
        info: info(state),
        output: out_rx,
        input: in_tx,
    })
}
