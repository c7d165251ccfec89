//! Terminals in a sandbox: a program on a pseudo-terminal that outlives any one connection.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// What a new terminal runs (spec/api.md §12.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PtyCommand {
    /// The guest's default: `/bin/bash -il`.
    DefaultShell,
    /// A shell program, run as `<shell> -il`.
    Shell(String),
    /// A full command line, run as `/bin/bash -lc <command>`.
    Command(String),
}

impl PtyCommand {
    pub fn argv(&self) -> Vec<String> {
        match self {
            PtyCommand::DefaultShell => vec!["/bin/bash".into(), "-il".into()],
            PtyCommand::Shell(shell) => vec![shell.clone(), "-il".into()],
            PtyCommand::Command(line) => vec!["/bin/bash".into(), "-lc".into(), line.clone()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyRequest {
    /// Unique within the sandbox: `[A-Za-z0-9_.-]`, at most 64 bytes.
    pub id: String,
    pub command: PtyCommand,
    /// `TERM` for the program.
    pub term: String,
    pub cols: u16,
    pub rows: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyInfo {
    pub id: String,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Process id inside the sandbox.
    pub pid: i32,
    pub cols: u16,
    pub rows: u16,
    pub created_at: DateTime<Utc>,
    /// `None` while the program runs.
    pub exit_code: Option<i32>,
    /// Whether a stream is attached right now.
    pub attached: bool,
}

impl PtyInfo {
    pub fn alive(&self) -> bool {
        self.exit_code.is_none()
    }
}

/// Terminal → client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyEvent {
    /// Output bytes (stdout and stderr are one stream on a terminal).
    Output(Vec<u8>),
    /// The program exited; nothing follows.
    Exit(i32),
}

/// Client → terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyInput {
    /// Keystrokes.
    Data(Vec<u8>),
    Resize {
        cols: u16,
        rows: u16,
    },
}

/// An attached terminal. Both channels are bounded: a client that stops reading `output`
/// eventually blocks the program's writes instead of growing buffers. Dropping `input` detaches
/// (the program keeps running); the `output` channel closes without an `Exit` event when the
/// stream is taken over by a newer attach or the terminal is killed.
pub struct PtyStream {
    pub info: PtyInfo,
    pub output: mpsc::Receiver<PtyEvent>,
    pub input: mpsc::Sender<PtyInput>,
}

/// Largest id a client may choose.
pub const MAX_PTY_ID: usize = 64;

/// Whether `id` is usable as a terminal id: 1 to 64 of `[A-Za-z0-9_.-]`.
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

    #[test]
    fn commands_become_argv() {
        assert_eq!(PtyCommand::DefaultShell.argv(), ["/bin/bash", "-il"]);
        assert_eq!(
            PtyCommand::Shell("/bin/sh".into()).argv(),
            ["/bin/sh", "-il"]
        );
        assert_eq!(
            PtyCommand::Command("a && b".into()).argv(),
            ["/bin/bash", "-lc", "a && b"]
        );
    }
}
