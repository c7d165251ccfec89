//! Terminal messages. A PTY lives in the agent independently of any connection: `PtyOpen`
//! starts it, `PtyAttach` turns a connection into its byte stream (output as data frames from
//! the agent; input as data frames from the host, `PtyResize` as JSON frames, an end frame to
//! detach), and the agent ends an attached stream with a `PtyExit` JSON frame.

use serde::{Deserialize, Serialize};

/// What to run on a new terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PtySpec {
    /// Unique within the sandbox (the host checks its shape).
    pub id: String,
    /// Program and arguments, run with the terminal as its controlling terminal.
    pub argv: Vec<String>,
    /// `TERM` for the program.
    pub term: String,
    pub cols: u16,
    pub rows: u16,
}

/// A terminal as the agent reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PtyState {
    pub id: String,
    pub argv: Vec<String>,
    pub pid: i32,
    pub cols: u16,
    pub rows: u16,
    /// Unix seconds.
    pub created_at: i64,
    /// `None` while the program runs; then its exit status (128 + signal when killed).
    pub exit_code: Option<i32>,
    /// Whether a connection is attached to its stream right now.
    pub attached: bool,
}
