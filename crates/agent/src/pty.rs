//! Terminals: programs on pseudo-terminals that live independently of any host connection.
//!
//! Each terminal has one pump thread that reads the master end. While a connection is attached,
//! output goes straight to it as data frames: a slow reader makes the pump wait, the kernel's
//! terminal buffer fills and the program blocks in `write` (backpressure, no memory growth).
//! While nobody is attached the pump keeps reading, so the program never stalls, and keeps the
//! newest [`MAX_PENDING`] bytes; the next attach receives them first (output missed while
//! detached, never output already delivered). The program's exit ends an attached stream with a
//! `PtyExit` frame; an exited terminal stays listed (with its exit code) until it is killed.

use crate::files::error;
use crate::user_command::user_command;
use crate::{reaper, sys};
use instavm_protocol::{
    parse_json, read_frame, write_frame, write_json, ErrorKind, FrameKind, PtySpec, PtyState,
    Request, Response, CHUNK,
};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Terminals a sandbox may hold at once (running or exited but not yet deleted).
pub const MAX_PTYS: usize = 64;
/// Output kept for the next attach while nobody is attached.
pub const MAX_PENDING: usize = 64 << 10;

/// The connection a terminal's output goes to. Its mutex makes each frame, and the replay of
/// pending output at attach, one unit.
struct Sink {
    stream: Mutex<UnixStream>,
}

struct Shared {
    cols: u16,
    rows: u16,
    exit_code: Option<i32>,
    pending: VecDeque<u8>,
    sink: Option<Arc<Sink>>,
}

struct Pty {
    spec: PtySpec,
    pid: i32,
    created_at: i64,
    master: OwnedFd,
    shared: Mutex<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn table() -> &'static Mutex<BTreeMap<String, Arc<Pty>>> {
    static TABLE: OnceLock<Mutex<BTreeMap<String, Arc<Pty>>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

fn find(id: &str) -> Result<Arc<Pty>, Response> {
    lock(table())
        .get(id)
        .cloned()
        .ok_or_else(|| error(ErrorKind::NotFound, format!("no terminal {id:?}")))
}

impl Pty {
    fn state(&self) -> PtyState {
        let shared = lock(&self.shared);
        PtyState {
            id: self.spec.id.clone(),
            argv: self.spec.argv.clone(),
            pid: self.pid,
            cols: shared.cols,
            rows: shared.rows,
            created_at: self.created_at,
            exit_code: shared.exit_code,
            attached: shared.sink.is_some(),
        }
    }

    /// Hand output to the attached connection, or keep it for the next one.
    fn deliver(&self, bytes: &[u8]) {
        let sink = lock(&self.shared).sink.clone();
        if let Some(sink) = sink {
            let sent = write_frame(&mut *lock(&sink.stream), FrameKind::Data, bytes);
            if sent.is_ok() {
                return;
            }
            // The connection is gone: detach it (unless a newer one replaced it already).
            let mut shared = lock(&self.shared);
            if shared.sink.as_ref().is_some_and(|s| Arc::ptr_eq(s, &sink)) {
                shared.sink = None;
            }
        }
        let mut shared = lock(&self.shared);
        shared.pending.extend(bytes);
        let excess = shared.pending.len().saturating_sub(MAX_PENDING);
        shared.pending.drain(..excess);
    }
}

/// `PtyOpen`: start the program and its pump.
pub fn open(spec: PtySpec) -> Response {
    if spec.argv.is_empty() || spec.cols == 0 || spec.rows == 0 {
        return error(
            ErrorKind::BadRequest,
            "a terminal needs a program and a size",
        );
    }
    let mut ptys = lock(table());
    if ptys.contains_key(&spec.id) {
        return error(
            ErrorKind::AlreadyExists,
            format!("terminal {:?} exists", spec.id),
        );
    }
    if ptys.len() >= MAX_PTYS {
        return error(
            ErrorKind::LimitReached,
            format!("at most {MAX_PTYS} terminals per sandbox; delete some first"),
        );
    }
    let program = spec.argv[0].clone();
    match start(spec) {
        Ok(pty) => {
            let state = pty.state();
            ptys.insert(pty.spec.id.clone(), pty);
            Response::Pty(state)
        }
        Err(e) => {
            // A program that does not exist or cannot run is the caller's mistake.
            let kind = match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => ErrorKind::BadRequest,
                _ => ErrorKind::Other,
            };
            error(kind, format!("cannot start {program}: {e}"))
        }
    }
}

fn start(spec: PtySpec) -> io::Result<Arc<Pty>> {
    let (master, slave) = sys::openpty(spec.cols, spec.rows)?;
    let mut cmd = user_command(&spec.argv[0], &spec.argv[1..], sys::pty_child_setup);
    cmd.env("TERM", &spec.term)
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    let waiter = reaper::spawn(&mut cmd)?;
    // Our copies of the slave end must go, or the master never sees the last close.
    drop(cmd);
    let pty = Arc::new(Pty {
        pid: waiter.pid,
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        shared: Mutex::new(Shared {
            cols: spec.cols,
            rows: spec.rows,
            exit_code: None,
            pending: VecDeque::new(),
            sink: None,
        }),
        spec,
        master,
    });
    let pumped = pty.clone();
    std::thread::Builder::new()
        .name("pty".into())
        .stack_size(128 << 10)
        .spawn(move || pump(&pumped, &waiter))?;
    Ok(pty)
}

/// Read the terminal until its program exits, then end the attached stream.
fn pump(pty: &Pty, waiter: &reaper::Waiter) {
    let mut buf = vec![0u8; CHUNK];
    let mut master_open = true;
    loop {
        let fds = [
            if master_open {
                pty.master.as_raw_fd()
            } else {
                -1
            },
            waiter.wake.as_raw_fd(),
        ];
        let Ok(ready) = sys::poll_readable(&fds, -1) else {
            break;
        };
        if ready[0] {
            // A terminal hands out at most a few KiB per read: gather what is there into one
            // frame, so a fast producer costs one message per 64 KiB, not per 4 KiB.
            let mut filled = 0;
            while filled < buf.len() {
                match sys::read_nb(&pty.master, &mut buf[filled..]) {
                    Ok(Some(0)) | Err(_) => {
                        master_open = false; // EIO: every slave end closed
                        break;
                    }
                    Ok(Some(n)) => filled += n,
                    Ok(None) => break,
                }
            }
            if filled > 0 {
                pty.deliver(&buf[..filled]);
            }
        }
        if waiter.has_exited() {
            break;
        }
    }
    // What the program wrote before it exited is still in the terminal: pass it on.
    while master_open {
        match sys::read_nb(&pty.master, &mut buf) {
            Ok(Some(n)) if n > 0 => pty.deliver(&buf[..n]),
            _ => master_open = false,
        }
    }
    let exit_code = waiter.take().map_or(1, |e| e.exit_code());
    let sink = {
        let mut shared = lock(&pty.shared);
        shared.exit_code = Some(exit_code);
        shared.sink.take()
    };
    if let Some(sink) = sink {
        finish(&sink, exit_code);
    }
}

fn finish(sink: &Sink, exit_code: i32) {
    let mut stream = lock(&sink.stream);
    let _ = write_json(&mut *stream, &Response::PtyExit { exit_code });
    // Also wakes the attached connection's thread, which is blocked reading input.
    let _ = stream.shutdown(Shutdown::Both);
}

pub fn list() -> Response {
    let ptys: Vec<Arc<Pty>> = lock(table()).values().cloned().collect();
    Response::Ptys {
        ptys: ptys.iter().map(|p| p.state()).collect(),
    }
}

pub fn get(id: &str) -> Response {
    match find(id) {
        Ok(pty) => Response::Pty(pty.state()),
        Err(e) => e,
    }
}

pub fn resize(id: &str, cols: u16, rows: u16) -> Response {
    let pty = match find(id) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if cols == 0 || rows == 0 {
        return error(ErrorKind::BadRequest, "cols and rows must be at least 1");
    }
    if let Err(e) = sys::set_winsize(&pty.master, cols, rows) {
        return error(ErrorKind::Other, format!("resize: {e}"));
    }
    let mut shared = lock(&pty.shared);
    shared.cols = cols;
    shared.rows = rows;
    Response::Ok
}

/// `PtyKill`: SIGKILL every process of the terminal's session (job-control shells put jobs in
/// process groups of their own, so the group alone is not enough), then forget it.
pub fn kill(id: &str) -> Response {
    let pty = match lock(table()).remove(id) {
        Some(p) => p,
        None => return error(ErrorKind::NotFound, format!("no terminal {id:?}")),
    };
    let (running, sink) = {
        let mut shared = lock(&pty.shared);
        (shared.exit_code.is_none(), shared.sink.take())
    };
    // An exited leader's pid may belong to another process by now.
    if running {
        for pid in session_members(pty.pid) {
            sys::kill(pid, libc::SIGKILL);
        }
    }
    if let Some(sink) = sink {
        let _ = lock(&sink.stream).shutdown(Shutdown::Both);
    }
    Response::Ok
}

/// Processes whose session id is `sid` (the session leader included).
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![sid];
    };
    let mut pids = vec![sid];
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the parenthesised command name: state ppid pgrp session ...
        let session = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(3))
            .and_then(|s| s.parse::<i32>().ok());
        if session == Some(sid) && pid != sid {
            pids.push(pid);
        }
    }
    pids
}

/// `PtyAttach`: this connection becomes the terminal's stream until the program exits, the host
/// ends it, or a newer attach takes over.
pub fn attach(mut conn: UnixStream, id: &str) -> io::Result<()> {
    let pty = match find(id) {
        Ok(p) => p,
        Err(e) => return write_json(&mut conn, &e),
    };
    let sink = Arc::new(Sink {
        stream: Mutex::new(conn.try_clone()?),
    });
    {
        // Hold the sink while publishing it and replaying, so the pump's next frame comes after.
        let mut stream = lock(&sink.stream);
        let (previous, pending, exit_code) = {
            let mut shared = lock(&pty.shared);
            let previous = shared.sink.replace(sink.clone());
            let pending: Vec<u8> = shared.pending.drain(..).collect();
            (previous, pending, shared.exit_code)
        };
        if let Some(previous) = previous {
            // Unblocks the older connection's thread; its host side sees the stream end.
            let _ = lock(&previous.stream).shutdown(Shutdown::Both);
        }
        write_json(&mut *stream, &Response::Pty(pty.state()))?;
        for chunk in pending.chunks(CHUNK) {
            write_frame(&mut *stream, FrameKind::Data, chunk)?;
        }
        if let Some(code) = exit_code {
            // Exited before this attach: the stream is only the replay and the exit.
            drop(stream);
            lock(&pty.shared).sink = None;
            finish(&sink, code);
            return Ok(());
        }
    }
    let result = forward_input(&mut conn, &pty);
    let mut shared = lock(&pty.shared);
    if shared.sink.as_ref().is_some_and(|s| Arc::ptr_eq(s, &sink)) {
        shared.sink = None;
    }
    result
}

/// Host → terminal: data frames are keystrokes, JSON frames resize, an end frame detaches.
fn forward_input(conn: &mut UnixStream, pty: &Pty) -> io::Result<()> {
    loop {
        let frame = match read_frame(conn) {
            Ok(Some(f)) => f,
            // A closed or shut-down connection: detached.
            Ok(None) | Err(_) => return Ok(()),
        };
        match frame.kind {
            FrameKind::Data => {
                if sys::write_all_nb(&pty.master, &frame.payload).is_err() {
                    return Ok(()); // the terminal is gone; the pump reports the exit
                }
            }
            FrameKind::End => return Ok(()),
            FrameKind::Json => {
                if let Ok(Request::PtyResize { cols, rows, .. }) = parse_json(&frame) {
                    let _ = resize(&pty.spec.id, cols, rows);
                }
            }
        }
    }
}
