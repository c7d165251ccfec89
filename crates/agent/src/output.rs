//! Collecting a running program's stdout and stderr from non-blocking pipes, with a size cap.

use crate::sys;
use std::io;
use std::os::fd::AsRawFd;

pub struct Capture {
    buf: Vec<u8>,
    dropped: u64,
    max: usize,
}

impl Capture {
    pub fn new(max: u64) -> Self {
        Capture {
            buf: Vec::new(),
            dropped: 0,
            max: usize::try_from(max).unwrap_or(usize::MAX),
        }
    }

    fn push(&mut self, data: &[u8]) {
        let room = self.max.saturating_sub(self.buf.len());
        let keep = room.min(data.len());
        self.buf.extend_from_slice(&data[..keep]);
        self.dropped += (data.len() - keep) as u64;
    }

    /// Read everything available now. Returns true at end of stream.
    pub fn drain(&mut self, fd: &impl AsRawFd) -> io::Result<bool> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match sys::read_nb(fd, &mut chunk)? {
                Some(0) => return Ok(true),
                Some(n) => self.push(&chunk[..n]),
                None => return Ok(false),
            }
        }
    }

    /// The captured bytes as text (invalid UTF-8 replaced), with a note when bytes were dropped.
    pub fn into_string(self, stream: &str) -> String {
        let mut s = String::from_utf8(self.buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        if self.dropped > 0 {
            s.push_str(&format!(
                "\n[instavm: {stream} truncated, {} bytes dropped]\n",
                self.dropped
            ));
        }
        s
    }
}

/// Milliseconds left until `deadline`, for poll(2).
pub fn ms_until(deadline: std::time::Instant) -> i32 {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    i32::try_from(left.as_millis()).unwrap_or(i32::MAX)
}

/// GNU `timeout`'s exit code, which the Agents integration also expects.
pub const TIMEOUT_EXIT_CODE: i32 = 124;

/// Assemble an execution's answer; a timeout sets exit code 124 and says so on stderr, with
/// `how` telling what happened to the code ("killed", "interrupted").
pub fn exec_result(
    spec: &instavm_protocol::ExecSpec,
    started: std::time::Instant,
    out: Capture,
    mut stderr: String,
    exit_code: i32,
    cpu_time: f64,
    timed_out: Option<&str>,
) -> instavm_protocol::ExecResult {
    let mut exit_code = exit_code;
    if let Some(how) = timed_out {
        exit_code = TIMEOUT_EXIT_CODE;
        stderr.push_str(&format!(
            "\n[instavm: {how} after the {:.1}s timeout]\n",
            spec.timeout_ms as f64 / 1000.0
        ));
    }
    instavm_protocol::ExecResult {
        stdout: out.into_string("stdout"),
        stderr,
        exit_code,
        execution_time: started.elapsed().as_secs_f64(),
        cpu_time,
        timed_out: timed_out.is_some(),
    }
}
