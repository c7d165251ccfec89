//! Terminals (spec §12): the REST bodies and the WebSocket control messages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST .../pty/sessions`. At most one of `shell` (a program, run as `<shell> -il`) and
/// `command` (a command line, run as `/bin/bash -lc <command>`); neither means `/bin/bash -il`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreatePtyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A client-chosen id: 1 to 64 of `[A-Za-z0-9_.-]` (default `pty-<12 hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `TERM` for the program (default `xterm-256color`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
}

/// `POST .../pty/sessions/{id}/resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizePtyRequest {
    pub cols: u16,
    pub rows: u16,
}

/// A terminal. `session_id` is the terminal's id (what the official clients read); `id` is the
/// same value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyView {
    pub session_id: String,
    pub id: String,
    pub alive: bool,
    pub exit_code: Option<i32>,
    /// The program and its arguments, joined with spaces.
    pub command: String,
    pub argv: Vec<String>,
    /// Process id inside the VM.
    pub pid: i32,
    pub cols: u16,
    pub rows: u16,
    /// Whether a WebSocket is attached right now.
    pub attached: bool,
    pub created_at: DateTime<Utc>,
}

/// `GET .../pty/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyList {
    pub sessions: Vec<PtyView>,
}

/// Text frames of the WebSocket: `resize` from the client, `exit` from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PtyControl {
    Resize { cols: u16, rows: u16 },
    Exit { exit_code: i32 },
}

/// WebSocket close codes (spec §12.2).
pub mod pty_close {
    /// The key is missing or wrong.
    pub const UNAUTHORIZED: u16 = 4401;
    /// No such session, VM or terminal for this key.
    pub const NOT_FOUND: u16 = 4404;
    /// The API failed before reaching the guest (only while attaching).
    pub const API_ERROR: u16 = 4500;
    /// The API could not reach the guest (only while attaching).
    pub const GUEST_UNREACHABLE: u16 = 4502;
    /// Attaching to the guest timed out.
    pub const GUEST_TIMEOUT: u16 = 4504;
}
