//! Collecting a running program's stdout and stderr from non-blocking pipes, with a size cap,
//! and sending them to the host as raw bytes.
//!
//! The cap counts the bytes the agent actually holds: output is kept raw (never escaped into
//! JSON), the buffer never grows past the cap, and it is sent in data frames of
//! [`instavm_protocol::CHUNK`] bytes, so a noisy program costs the agent (PID 1, charged to the
//! sandbox's memory) at most `max_output` per stream plus one chunk.

use crate::sys;
use instavm_protocol::{write_frame, write_json, ExecResult, ExecSpec, FrameKind, Response, CHUNK};
use std::io::{self, Write};
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
        // Grow by doubling, but never past the cap: `Vec`'s own doubling could reserve up to
        // twice the cap.
        let needed = self.buf.len() + keep;
        if needed > self.buf.capacity() {
            let target = (self.buf.capacity() * 2).max(needed).min(self.max);
            self.buf.reserve_exact(target - self.buf.len());
        }
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

    /// The captured bytes, with a note when bytes were dropped.
    pub fn into_bytes(mut self, stream: &str) -> Vec<u8> {
        if self.dropped > 0 {
            let note = format!(
                "\n[instavm: {stream} truncated, {} bytes dropped]\n",
                self.dropped
            );
            self.buf.extend_from_slice(note.as_bytes());
        }
        self.buf
    }
}

/// Milliseconds left until `deadline`, for poll(2).
pub fn ms_until(deadline: std::time::Instant) -> i32 {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    i32::try_from(left.as_millis()).unwrap_or(i32::MAX)
}

/// GNU `timeout`'s exit code, which the Agents integration also expects.
pub const TIMEOUT_EXIT_CODE: i32 = 124;

/// A finished execution: the result header and the output bytes that follow it.
pub struct ExecOutput {
    pub result: ExecResult,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Send the header, then stdout and stderr as data frames, each ended by an end frame.
    /// Frames are gathered into writes of up to two chunks, so a small answer is one write
    /// and the host wakes up once for it.
    pub fn send(&self, conn: &mut impl Write) -> io::Result<()> {
        let mut out = io::BufWriter::with_capacity(2 * CHUNK, conn);
        write_json(&mut out, &Response::ExecResult(self.result.clone()))?;
        for stream in [&self.stdout, &self.stderr] {
            for chunk in stream.chunks(CHUNK) {
                write_frame(&mut out, FrameKind::Data, chunk)?;
            }
            write_frame(&mut out, FrameKind::End, &[])?;
        }
        out.flush()
    }
}

/// Assemble an execution's answer; a timeout sets exit code 124 and says so on stderr, with
/// `how` telling what happened to the code ("killed", "interrupted").
pub fn exec_result(
    spec: &ExecSpec,
    started: std::time::Instant,
    out: Capture,
    mut stderr: Vec<u8>,
    exit_code: i32,
    cpu_time: f64,
    timed_out: Option<&str>,
) -> ExecOutput {
    let mut exit_code = exit_code;
    if let Some(how) = timed_out {
        exit_code = TIMEOUT_EXIT_CODE;
        stderr.extend_from_slice(
            format!(
                "\n[instavm: {how} after the {:.1}s timeout]\n",
                spec.timeout_ms as f64 / 1000.0
            )
            .as_bytes(),
        );
    }
    let stdout = out.into_bytes("stdout");
    ExecOutput {
        result: ExecResult {
            stdout_len: stdout.len() as u64,
            stderr_len: stderr.len() as u64,
            exit_code,
            execution_time: started.elapsed().as_secs_f64(),
            cpu_time,
            timed_out: timed_out.is_some(),
        },
        stdout,
        stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_holds_at_most_its_cap() {
        let mut c = Capture::new(100_000);
        for _ in 0..50 {
            c.push(&[b'"'; 7000]);
        }
        assert!(c.buf.capacity() <= 100_000, "{}", c.buf.capacity());
        let bytes = c.into_bytes("stdout");
        assert!(bytes.starts_with(&[b'"'; 100_000]));
        let note = String::from_utf8_lossy(&bytes[100_000..]).into_owned();
        assert_eq!(
            note,
            "\n[instavm: stdout truncated, 250000 bytes dropped]\n"
        );
    }
}
