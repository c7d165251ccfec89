//! Terminals (spec §12): REST calls in the VM scope, and the WebSocket stream.

use crate::{Client, Error, Result};
use futures::{SinkExt, StreamExt};
use instavm_api::{CreatePtyRequest, PtyControl, PtyList, PtyView, ResizePtyRequest};
use reqwest::Method;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a terminal stream delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyEvent {
    Output(Vec<u8>),
    /// The program exited with this code; the stream is over.
    Exit(i32),
    /// The server closed the stream without an exit (a newer client took the terminal over,
    /// or it was killed); the code and reason of its close frame.
    Closed {
        code: u16,
        reason: String,
    },
}

/// An open terminal stream.
pub struct PtyConnection {
    socket: Socket,
}

impl Client {
    pub async fn create_vm_pty(&self, vm_id: &str, req: &CreatePtyRequest) -> Result<PtyView> {
        self.post(&["v1", "vms", vm_id, "pty", "sessions"], req)
            .await
    }

    pub async fn list_vm_ptys(&self, vm_id: &str) -> Result<Vec<PtyView>> {
        let list: PtyList = self.get(&["v1", "vms", vm_id, "pty", "sessions"]).await?;
        Ok(list.sessions)
    }

    pub async fn get_vm_pty(&self, vm_id: &str, pty_id: &str) -> Result<PtyView> {
        self.get(&["v1", "vms", vm_id, "pty", "sessions", pty_id])
            .await
    }

    pub async fn resize_vm_pty(
        &self,
        vm_id: &str,
        pty_id: &str,
        cols: u16,
        rows: u16,
    ) -> Result<PtyView> {
        let path = ["v1", "vms", vm_id, "pty", "sessions", pty_id, "resize"];
        self.post(&path, &ResizePtyRequest { cols, rows }).await
    }

    pub async fn kill_vm_pty(&self, vm_id: &str, pty_id: &str) -> Result<serde_json::Value> {
        let path = ["v1", "vms", vm_id, "pty", "sessions", pty_id];
        self.send(self.request(Method::DELETE, &path)?).await
    }

    /// `ws(s)://.../v1/vms/{vm}/pty/{pty}/connect?api_key=...` (the key percent-encoded).
    pub fn vm_pty_ws_url(&self, vm_id: &str, pty_id: &str) -> Result<String> {
        let key = self
            .api_key()
            .ok_or_else(|| Error::Invalid("an API key is needed for a terminal".into()))?;
        let mut url = self.url(&["v1", "vms", vm_id, "pty", pty_id, "connect"]);
        url.query_pairs_mut().append_pair("api_key", key);
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|_| Error::Invalid(format!("cannot make a WebSocket URL of {url}")))?;
        Ok(url.into())
    }

    pub async fn connect_vm_pty(&self, vm_id: &str, pty_id: &str) -> Result<PtyConnection> {
        let url = self.vm_pty_ws_url(vm_id, pty_id)?;
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| Error::Terminal(e.to_string()))?;
        Ok(PtyConnection { socket })
    }
}

fn ws_err(e: tokio_tungstenite::tungstenite::Error) -> Error {
    Error::Terminal(e.to_string())
}

impl PtyConnection {
    /// Keystrokes (or any bytes) for the terminal.
    pub async fn send_input(&mut self, bytes: &[u8]) -> Result<()> {
        self.socket
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .map_err(ws_err)
    }

    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        let text = serde_json::to_string(&PtyControl::Resize { cols, rows })
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(ws_err)
    }

    /// The next event; after `Exit` or `Closed` there are no more.
    pub async fn next_event(&mut self) -> Result<PtyEvent> {
        loop {
            let msg = match self.socket.next().await {
                Some(msg) => msg.map_err(ws_err)?,
                None => {
                    return Ok(PtyEvent::Closed {
                        code: 1006,
                        reason: "connection lost".into(),
                    })
                }
            };
            match msg {
                Message::Binary(bytes) => return Ok(PtyEvent::Output(bytes.to_vec())),
                Message::Text(text) => {
                    if let Ok(PtyControl::Exit { exit_code }) = serde_json::from_str(&text) {
                        return Ok(PtyEvent::Exit(exit_code));
                    }
                    // Other text frames are ignored, as the official client does.
                }
                Message::Close(frame) => {
                    let (code, reason) = frame.map_or((CloseCode::Status, String::new()), |f| {
                        (f.code, f.reason.to_string())
                    });
                    return Ok(PtyEvent::Closed {
                        code: code.into(),
                        reason,
                    });
                }
                _ => {}
            }
        }
    }

    /// Detach (the program keeps running in the VM).
    pub async fn close(mut self) -> Result<()> {
        self.socket.close(None).await.map_err(ws_err)
    }
}
