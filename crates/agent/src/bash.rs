//! `bash -c` executions: one fresh process group each, killed as a group at the timeout.

use crate::output::{exec_result, ms_until, Capture, ExecOutput};
use crate::user_command::user_command;
use crate::{reaper, sys};
use instavm_protocol::ExecSpec;
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub fn run(spec: &ExecSpec) -> std::io::Result<ExecOutput> {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(spec.timeout_ms);
    let (out_r, out_w) = sys::pipe()?;
    let (err_r, err_w) = sys::pipe()?;
    sys::set_nonblocking(&out_r)?;
    sys::set_nonblocking(&err_r)?;

    let mut cmd = user_command("/bin/bash", ["-c", spec.code.as_str()], sys::child_setup);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let waiter = reaper::spawn(&mut cmd)?;
    // Close our copies of the write ends.
    drop(cmd);

    let mut out = Capture::new(spec.max_output);
    let mut err = Capture::new(spec.max_output);
    let mut timed_out = false;
    let (mut out_eof, mut err_eof) = (false, false);
    loop {
        if waiter.has_exited() {
            break;
        }
        let wait = if timed_out { 1000 } else { ms_until(deadline) };
        // A closed pipe stays readable forever: stop polling it (poll skips negative fds).
        let fds = [
            if out_eof { -1 } else { out_r.as_raw_fd() },
            if err_eof { -1 } else { err_r.as_raw_fd() },
            waiter.wake.as_raw_fd(),
        ];
        let ready = sys::poll_readable(&fds, wait)?;
        if ready[0] {
            out_eof = out.drain(&out_r)?;
        }
        if ready[1] {
            err_eof = err.drain(&err_r)?;
        }
        if !timed_out && Instant::now() >= deadline {
            timed_out = true;
            sys::kill(-waiter.pid, libc::SIGKILL);
        }
    }
    // The process is gone; whatever it wrote is in the pipes. Background children that still
    // hold the pipes open are not waited for.
    out.drain(&out_r)?;
    err.drain(&err_r)?;
    let exited = waiter.take();
    Ok(exec_result(
        spec,
        started,
        out,
        err.into_bytes("stderr"),
        exited.as_ref().map_or(1, |e| e.exit_code()),
        exited.map_or(0.0, |e| e.cpu_seconds),
        timed_out.then_some("killed"),
    ))
}
