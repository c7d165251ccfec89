use crate::pty::{PtySpec, PtyState};
use serde::{Deserialize, Serialize};

/// What the host asks of the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and readiness check.
    Ping,
    /// Run code to completion (or to its timeout).
    Exec(ExecSpec),
    /// Write a file; the data follows as data frames and an end frame.
    WriteFile {
        path: String,
        create_parents: bool,
        mode: Option<u32>,
    },
    /// Read a regular file; the answer is `File` then data frames and an end frame.
    ReadFile {
        path: String,
    },
    Stat {
        path: String,
    },
    ListDir {
        path: String,
        recursive: bool,
    },
    /// Move the time (unix seconds) at which the agent ends the sandbox by itself.
    SetDeadline {
        unix_secs: i64,
    },
    /// Hand a pre-started sandbox to its user: add environment variables (visible to the
    /// running interpreter too) and set its deadline.
    Configure {
        env: Vec<(String, String)>,
        deadline_unix_secs: i64,
        /// Keep the agent and the interpreter on one CPU, or let them run anywhere (`None`).
        /// On one CPU, a cell's round trip needs no cross-CPU wake-up, which costs ~100 us on
        /// virtualised hosts; it is chosen for one-vCPU sandboxes, whose quota is one CPU anyway.
        cpu: Option<u32>,
    },
    /// Start a program on a new terminal; the answer is `Pty`.
    PtyOpen(PtySpec),
    /// Every terminal of the sandbox, running or exited; the answer is `Ptys`.
    PtyList,
    PtyGet {
        id: String,
    },
    /// Also valid as a JSON frame inside an attached stream.
    PtyResize {
        id: String,
        cols: u16,
        rows: u16,
    },
    /// Kill the terminal's whole session and forget it.
    PtyKill {
        id: String,
    },
    /// Answer `Pty`, then make this connection the terminal's stream (see `pty` module docs).
    /// A newer attach takes the stream over from an older one.
    PtyAttach {
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Python,
    Bash,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub lang: Lang,
    pub code: String,
    pub timeout_ms: u64,
    /// Keep at most this many bytes of each of stdout and stderr; the rest is counted and
    /// dropped. The answer may exceed it by the agent's short notes (at most [`NOTE_SLACK`]).
    pub max_output: u64,
}

/// Room for the agent's notes (truncation, timeout, interpreter reset) on top of `max_output`.
pub const NOTE_SLACK: u64 = 4096;

/// What the agent answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Response {
    Pong {
        version: u8,
        /// True once the persistent Python interpreter is up.
        python_ready: bool,
    },
    ExecResult(ExecResult),
    File(Entry),
    Entries {
        entries: Vec<Entry>,
    },
    Ok,
    Pty(PtyState),
    Ptys {
        ptys: Vec<PtyState>,
    },
    /// The last message of an attached stream: the program exited.
    PtyExit {
        exit_code: i32,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// The header of an execution's answer. The output follows as raw bytes, never as JSON text
/// (escaping control bytes in JSON costs up to 6x): stdout's data frames and an end frame, then
/// stderr's data frames and an end frame, exactly `stdout_len` and `stderr_len` bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    pub stdout_len: u64,
    pub stderr_len: u64,
    pub exit_code: i32,
    pub execution_time: f64,
    pub cpu_time: f64,
    pub timed_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    pub modified: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    NotADirectory,
    IsADirectory,
    InvalidPath,
    PermissionDenied,
    /// The disk quota (or the disk) is full.
    NoSpace,
    /// The request itself was malformed.
    BadRequest,
    /// Something with this name exists already (a PTY id).
    AlreadyExists,
    /// A per-sandbox limit was reached (the number of PTYs).
    LimitReached,
    Other,
}

impl ErrorKind {
    pub fn from_io(e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(2) => ErrorKind::NotFound,
            Some(20) => ErrorKind::NotADirectory,
            Some(21) => ErrorKind::IsADirectory,
            Some(13) | Some(1) | Some(30) => ErrorKind::PermissionDenied,
            Some(28) | Some(122) => ErrorKind::NoSpace,
            Some(36) | Some(40) => ErrorKind::InvalidPath,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_stable_tags() {
        let r = Request::Stat { path: "/x".into() };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"stat","path":"/x"}"#
        );
        let e = Response::Error {
            kind: ErrorKind::NoSpace,
            message: "m".into(),
        };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(s, r#"{"op":"error","kind":"no_space","message":"m"}"#);
        assert_eq!(serde_json::from_str::<Response>(&s).unwrap(), e);
        let io = std::io::Error::from_raw_os_error(122);
        assert_eq!(ErrorKind::from_io(&io), ErrorKind::NoSpace);
    }
}

/// How the host starts an agent: the agent reads this JSON from fd [`CONFIG_FD`] (the host
/// writes it only after it has put the agent into the sandbox's cgroups), and accepts host
/// connections on the listening unix socket at fd [`LISTEN_FD`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub sandbox_id: String,
    pub hostname: String,
    /// Host paths, mounted before `pivot_root`.
    pub lower_dir: String,
    pub upper_dir: String,
    pub work_dir: String,
    /// Empty host directory that becomes the sandbox's `/`.
    pub root_dir: String,
    /// Working directory for executed code (created when missing).
    pub workdir: String,
    /// Environment for executed code, on top of the defaults.
    pub env: Vec<(String, String)>,
    /// Written to `/etc/resolv.conf`.
    pub nameservers: Vec<String>,
    /// Size of `/dev/shm` in bytes.
    pub shm_bytes: u64,
    /// Unix time at which the agent ends the sandbox by itself, so a sandbox never outlives its
    /// lifetime by much even when no server is running to reap it.
    pub deadline_unix_secs: i64,
    /// Keep the agent and the Python interpreter on this CPU (see `Configure::cpu`).
    pub cpu: Option<u32>,
    /// The host uid and gid that are root in the sandbox's user namespace (`USERNS_FD`).
    #[serde(default)]
    pub host_root_id: u32,
}

pub const CONFIG_FD: i32 = 3;
pub const LISTEN_FD: i32 = 4;
/// The sandbox's user namespace, which the agent enters once its root filesystem is built.
pub const USERNS_FD: i32 = 5;
