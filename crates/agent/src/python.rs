//! The sandbox's persistent Python interpreter ("kernel"): started eagerly at boot so the first
//! execution does not pay for interpreter start-up, fed one cell at a time, interrupted with
//! SIGINT at a timeout (state kept) and restarted only when it will not stop or has died.

use crate::output::{exec_result, ms_until, Capture, ExecOutput};
use crate::reaper::{self, Waiter};
use crate::{env, sys};
use instavm_protocol::ExecSpec;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const DRIVER: &str = include_str!("driver.py");
/// How long an interrupted cell gets to unwind before the interpreter is killed.
const INTERRUPT_GRACE: Duration = Duration::from_millis(1500);
/// How long a fresh interpreter may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Cells up to this size are written straight into the (empty, 64 KiB) request pipe.
const SMALL_CELL: usize = 32 << 10;

struct Kernel {
    waiter: Arc<Waiter>,
    to_py: File,
    from_py: OwnedFd,
    out: OwnedFd,
    err: OwnedFd,
    /// Bytes of a partially received answer.
    pending: Vec<u8>,
    ready: bool,
}

fn slot() -> &'static Mutex<Option<Kernel>> {
    static SLOT: OnceLock<Mutex<Option<Kernel>>> = OnceLock::new();
    SLOT.get_or_init(|| Mutex::new(None))
}

fn lock() -> MutexGuard<'static, Option<Kernel>> {
    slot().lock().unwrap_or_else(|e| e.into_inner())
}

pub fn python_path() -> Option<&'static str> {
    ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// Start the interpreter now, without waiting for it to be ready.
pub fn start_eagerly() {
    let mut k = lock();
    if k.is_none() {
        match spawn() {
            Ok(kernel) => *k = Some(kernel),
            Err(e) => eprintln!("instavm-agent: python not started: {e}"),
        }
    }
}

/// The running interpreter's pid.
pub fn pid() -> Option<i32> {
    lock().as_ref().map(|k| k.waiter.pid)
}

/// True once the interpreter has said it is ready (never blocks).
pub fn is_ready() -> bool {
    match slot().try_lock() {
        Ok(mut k) => k.as_mut().is_some_and(|k| {
            if !k.ready {
                let _ = poll_ready(k, 0);
            }
            k.ready
        }),
        // Busy running a cell, so it is up.
        Err(_) => true,
    }
}

fn spawn() -> io::Result<Kernel> {
    let env = env::get();
    let python = python_path().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "python3 is not installed in this image",
        )
    })?;
    let (req_r, req_w) = sys::pipe()?;
    let (resp_r, resp_w) = sys::pipe()?;
    let (out_r, out_w) = sys::pipe()?;
    let (err_r, err_w) = sys::pipe()?;
    for fd in [&resp_r, &out_r, &err_r] {
        sys::set_nonblocking(fd)?;
    }
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(DRIVER)
        .env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .current_dir(env.workdir_or_root())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let (req_fd, resp_fd) = (req_r.as_raw_fd(), resp_w.as_raw_fd());
    // SAFETY: the closure only makes async-signal-safe system calls (setpgid, open/write/close,
    // dup2).
    unsafe {
        cmd.pre_exec(move || {
            sys::child_setup()?;
            sys::dup_to(req_fd, instavm_protocol::CONFIG_FD)?;
            sys::dup_to(resp_fd, instavm_protocol::LISTEN_FD)
        })
    };
    let waiter = reaper::spawn(&mut cmd)?;
    drop(cmd);
    drop((req_r, resp_w));
    Ok(Kernel {
        waiter,
        to_py: File::from(req_w),
        from_py: resp_r,
        out: out_r,
        err: err_r,
        pending: Vec::new(),
        ready: false,
    })
}

/// Take one complete answer from `pending`, if there is one.
fn take_message(pending: &mut Vec<u8>) -> Option<String> {
    if pending.len() < 4 {
        return None;
    }
    let len = u32::from_le_bytes([pending[0], pending[1], pending[2], pending[3]]) as usize;
    if pending.len() < 4 + len {
        return None;
    }
    let msg = String::from_utf8_lossy(&pending[4..4 + len]).into_owned();
    pending.drain(..4 + len);
    Some(msg)
}

/// A cell's answer: "<exit code> <cpu seconds>".
fn parse_answer(a: &str) -> (i32, f64) {
    let mut parts = a.split(' ');
    let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
    let cpu = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0.0);
    (code, cpu)
}

/// Read what the interpreter has answered. Returns Err on end of stream (it died).
fn read_answers(k: &mut Kernel) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match sys::read_nb(&k.from_py, &mut buf)? {
            Some(0) => return Err(io::Error::new(io::ErrorKind::BrokenPipe, "python exited")),
            Some(n) => k.pending.extend_from_slice(&buf[..n]),
            None => return Ok(()),
        }
    }
}

/// Wait up to `timeout_ms` for the ready message.
fn poll_ready(k: &mut Kernel, timeout_ms: i32) -> io::Result<()> {
    let fds = [k.from_py.as_raw_fd()];
    if sys::poll_readable(&fds, timeout_ms)?[0] {
        read_answers(k)?;
        if take_message(&mut k.pending).is_some() {
            k.ready = true;
        }
    }
    Ok(())
}

fn wait_ready(k: &mut Kernel) -> io::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while !k.ready {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "python did not start",
            ));
        }
        poll_ready(k, ms_until(deadline))?;
    }
    Ok(())
}

fn kill(k: &Kernel) {
    sys::kill(-k.waiter.pid, libc::SIGKILL);
    sys::kill(k.waiter.pid, libc::SIGKILL);
}

/// Run one cell.
pub fn run(spec: &ExecSpec) -> io::Result<ExecOutput> {
    let started = Instant::now();
    let mut guard = lock();
    if guard.as_ref().is_none_or(|k| k.waiter.has_exited()) {
        *guard = Some(spawn()?);
    }
    let Some(k) = guard.as_mut() else {
        unreachable!("kernel was just started")
    };
    if let Err(e) = wait_ready(k) {
        // Say why: whatever the interpreter printed before it gave up.
        let mut err = Capture::new(64 << 10);
        let _ = err.drain(&k.err);
        kill(k);
        *guard = None;
        let said = String::from_utf8_lossy(&err.into_bytes("stderr")).into_owned();
        return Err(io::Error::new(
            e.kind(),
            format!("python did not start: {e}: {}", said.trim()),
        ));
    }

    let mut msg = (spec.code.len() as u32).to_le_bytes().to_vec();
    msg.extend_from_slice(spec.code.as_bytes());
    // The interpreter is idle, so its request pipe is empty and a small cell fits at once. A
    // bigger one goes from a helper thread: the interpreter may start printing (into pipes we
    // must keep draining) before it has read the whole cell.
    let writer = if msg.len() <= SMALL_CELL {
        k.to_py.write_all(&msg)?;
        None
    } else {
        let mut to_py = k.to_py.try_clone()?;
        Some(std::thread::spawn(move || to_py.write_all(&msg)))
    };

    let deadline = started + Duration::from_millis(spec.timeout_ms);
    let mut out = Capture::new(spec.max_output);
    let mut err = Capture::new(spec.max_output);
    let mut interrupted_at: Option<Instant> = None;
    let mut answer = None;
    loop {
        let wait = match interrupted_at {
            Some(t) => ms_until(t + INTERRUPT_GRACE),
            None => ms_until(deadline),
        };
        let fds = [
            k.out.as_raw_fd(),
            k.err.as_raw_fd(),
            k.from_py.as_raw_fd(),
            k.waiter.wake.as_raw_fd(),
        ];
        let ready = sys::poll_readable(&fds, wait)?;
        if ready[0] {
            out.drain(&k.out)?;
        }
        if ready[1] {
            err.drain(&k.err)?;
        }
        let hung_up = ready[2] && read_answers(k).is_err();
        if let Some(a) = take_message(&mut k.pending) {
            answer = Some(a);
            break;
        }
        if hung_up || k.waiter.has_exited() {
            break;
        }
        let now = Instant::now();
        match interrupted_at {
            None if now >= deadline => {
                sys::kill(k.waiter.pid, libc::SIGINT);
                interrupted_at = Some(now);
            }
            Some(t) if now >= t + INTERRUPT_GRACE => {
                kill(k);
                break;
            }
            _ => {}
        }
    }
    out.drain(&k.out)?;
    err.drain(&k.err)?;
    if let Some(w) = writer {
        let _ = w.join();
    }

    let timed_out = interrupted_at.is_some();
    let mut stderr = err.into_bytes("stderr");
    let (exit_code, cpu_time) = if let Some(a) = answer {
        parse_answer(&a)
    } else {
        // No answer: it died or we killed it. Report how it ended; start afresh next time.
        let status = wait_exit(&k.waiter);
        *guard = None;
        stderr.extend_from_slice(
            format!(
                "\n[instavm: the Python interpreter {}; its state was reset]\n",
                if timed_out {
                    "did not stop at the timeout and was killed"
                } else {
                    "exited"
                }
            )
            .as_bytes(),
        );
        (
            status.as_ref().map_or(137, |e| e.exit_code()),
            status.map_or(0.0, |e| e.cpu_seconds),
        )
    };
    Ok(exec_result(
        spec,
        started,
        out,
        stderr,
        exit_code,
        cpu_time,
        timed_out.then_some("interrupted"),
    ))
}

fn wait_exit(w: &Waiter) -> Option<crate::sys::Exited> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(e) = w.take() {
            return Some(e);
        }
        if Instant::now() >= deadline {
            return None;
        }
        let _ = sys::poll_readable(&[w.wake.as_raw_fd()], ms_until(deadline));
    }
}

/// Make new environment variables visible to the running interpreter. Variables that Python
/// reads only at start-up (PYTHON*) need a fresh interpreter instead.
pub fn apply_env(vars: Vec<(String, String)>) -> io::Result<()> {
    if vars.is_empty() {
        return Ok(());
    }
    if vars.iter().any(|(k, _)| k.starts_with("PYTHON")) {
        let mut guard = lock();
        if let Some(k) = guard.take() {
            kill(&k);
        }
        drop(guard);
        start_eagerly();
        return Ok(());
    }
    // A JSON object of strings is also a Python dict literal.
    let map: serde_json::Map<String, serde_json::Value> = vars
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let code = format!(
        "__import__('os').environ.update({})",
        serde_json::Value::Object(map)
    );
    let spec = ExecSpec {
        lang: instavm_protocol::Lang::Python,
        code,
        timeout_ms: START_TIMEOUT.as_millis() as u64,
        max_output: 64 << 10,
    };
    let r = run(&spec)?;
    if r.result.exit_code != 0 {
        return Err(io::Error::other(format!(
            "setting the environment failed: {}",
            String::from_utf8_lossy(&r.stderr)
        )));
    }
    Ok(())
}
