//! Terminal messages. A PTY lives in the agent independently of any connection: `PtyOpen`
//! starts it, `PtyAttach` turns a connection into its byte stream (output as data frames from
//! the agent; input as data frames from the host, `PtyResize` as JSON frames, an end frame to
//! detach), and the agent ends an attached stream with a `PtyExit` JSON frame.

use serde::{Deserialize, Serialize};

/// What to run on a new terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PtySpec {
    /// Unique within the sandbox (`[A-Za-z0-9_.-]`, at most 64 bytes).
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

/// Largest id a client may choose.
pub const MAX_PTY_ID: usize = 64;

/// Whether `id` is usable as a PTY id.
pub fn is_valid_pty_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PTY_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pty_ids() {
        assert!(is_valid_pty_id("pty-0123456789ab"));
        assert!(is_valid_pty_id("a.b_c-D"));
        assert!(!is_valid_pty_id(""));
        assert!(!is_valid_pty_id("../x"));
        assert!(!is_valid_pty_id("a b"));
        assert!(!is_valid_pty_id(&"x".repeat(65)));
    }
}
