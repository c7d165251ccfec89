//! The host side of the agent protocol: a small pool of open connections per sandbox, request
//! helpers, and streaming file transfers. Everything the agent says is untrusted input.

use instavm_protocol::{
    parse_json, read_frame_async_max, write_frame_async, write_json_async, Entry, ExecResult,
    ExecSpec, FrameKind, Request, Response, CHUNK, NOTE_SLACK,
};
use instavm_runtime::{ByteReader, RuntimeError};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Connections kept open per sandbox for reuse.
const MAX_IDLE: usize = 8;
/// Largest JSON answer accepted from an agent (a recursive listing is the biggest). Bulk bytes
/// come in `CHUNK`-sized data frames, so a hostile agent cannot make the host allocate more
/// than this at once.
const MAX_ANSWER: usize = 16 << 20;

pub struct AgentClient {
    socket: PathBuf,
    idle: Mutex<Vec<UnixStream>>,
}

fn agent_err(e: io::Error) -> RuntimeError {
    RuntimeError::Agent(e.to_string())
}

impl AgentClient {
    pub fn new(socket: PathBuf) -> Self {
        AgentClient {
            socket,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The agent's listening socket, for connections that leave the pool (terminal streams).
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    async fn take(&self) -> Result<UnixStream, RuntimeError> {
        let reused = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match reused {
            Some(s) => Ok(s),
            None => UnixStream::connect(&self.socket).await.map_err(agent_err),
        }
    }

    /// Return a connection that finished an exchange cleanly.
    fn give_back(&self, s: UnixStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }

    async fn read_response(s: &mut UnixStream) -> Result<Response, RuntimeError> {
        let frame = read_frame_async_max(s, MAX_ANSWER)
            .await
            .map_err(agent_err)?
            .ok_or_else(|| RuntimeError::Agent("the agent closed the connection".into()))?;
        parse_json(&frame).map_err(agent_err)
    }

    /// One request, one JSON answer.
    pub async fn call(&self, req: &Request) -> Result<Response, RuntimeError> {
        let mut s = self.take().await?;
        let result = async {
            write_json_async(&mut s, req).await.map_err(agent_err)?;
            Self::read_response(&mut s).await
        }
        .await;
        // A connection that failed mid-exchange is out of step: drop it. No retry: the
        // request may have run.
        if result.is_ok() {
            self.give_back(s);
        }
        result
    }

    /// Run code. The answer is the result header and the raw stdout and stderr bytes, each at
    /// most `max_output` plus the agent's notes: more is a broken agent, not a noisy program.
    pub async fn exec(
        &self,
        spec: ExecSpec,
    ) -> Result<(ExecResult, Vec<u8>, Vec<u8>), RuntimeError> {
        let max = spec.max_output.saturating_add(NOTE_SLACK);
        let mut s = self.take().await?;
        let result = async {
            write_json_async(&mut s, &Request::Exec(spec))
                .await
                .map_err(agent_err)?;
            let header = match Self::read_response(&mut s).await? {
                Response::ExecResult(r) => r,
                Response::Error { message, .. } => return Err(RuntimeError::Agent(message)),
                other => {
                    return Err(RuntimeError::Agent(format!(
                        "unexpected answer to an execution: {other:?}"
                    )))
                }
            };
            let stdout = read_stream(&mut s, header.stdout_len, max).await?;
            let stderr = read_stream(&mut s, header.stderr_len, max).await?;
            Ok((header, stdout, stderr))
        }
        .await;
        if result.is_ok() {
            self.give_back(s);
        }
        result
    }

    /// Stream `data` into a file in the sandbox.
    pub async fn write_file(
        &self,
        path: &str,
        create_parents: bool,
        mode: Option<u32>,
        mut data: ByteReader,
    ) -> Result<Response, RuntimeError> {
        let mut s = UnixStream::connect(&self.socket).await.map_err(agent_err)?;
        let req = Request::WriteFile {
            path: path.to_owned(),
            create_parents,
            mode,
        };
        write_json_async(&mut s, &req).await.map_err(agent_err)?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match data.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    // The upload broke: end the transfer so the agent stays in step, then report.
                    let _ = write_frame_async(&mut s, FrameKind::End, &[]).await;
                    let _ = Self::read_response(&mut s).await;
                    return Err(RuntimeError::io("reading the upload", e));
                }
            };
            if n == 0 {
                break;
            }
            write_frame_async(&mut s, FrameKind::Data, &buf[..n])
                .await
                .map_err(agent_err)?;
        }
        write_frame_async(&mut s, FrameKind::End, &[])
            .await
            .map_err(agent_err)?;
        let r = Self::read_response(&mut s).await?;
        self.give_back(s);
        Ok(r)
    }

    /// Open a file in the sandbox for streaming. Returns the agent's first answer (a `File` entry
    /// or an error) and, for a file, a reader over its bytes.
    pub async fn read_file(
        &self,
        path: &str,
    ) -> Result<(Response, Option<ByteReader>), RuntimeError> {
        let mut s = UnixStream::connect(&self.socket).await.map_err(agent_err)?;
        let req = Request::ReadFile {
            path: path.to_owned(),
        };
        write_json_async(&mut s, &req).await.map_err(agent_err)?;
        let first = Self::read_response(&mut s).await?;
        let Response::File(Entry { size, .. }) = &first else {
            return Ok((first, None));
        };
        let expected = *size;
        let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(4);
        tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                let item = match read_frame_async_max(&mut s, MAX_ANSWER).await {
                    Ok(Some(f)) if f.kind == FrameKind::Data => {
                        sent += f.payload.len() as u64;
                        Ok(f.payload)
                    }
                    Ok(Some(f)) if f.kind == FrameKind::End => return,
                    Ok(Some(f)) => match parse_json::<Response>(&f) {
                        Ok(Response::Error { message, .. }) => Err(io::Error::other(message)),
                        _ => Err(io::Error::other("unexpected message in a download")),
                    },
                    Ok(None) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("download ended after {sent} of {expected} bytes"),
                    )),
                    Err(e) => Err(e),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok((
            first,
            Some(Box::pin(ChannelReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
            })),
        ))
    }
}

/// Read one output stream of an execution: exactly `len` bytes (at most `max`) of data frames,
/// then an end frame. The buffer is allocated once, at its announced size.
async fn read_stream(s: &mut UnixStream, len: u64, max: u64) -> Result<Vec<u8>, RuntimeError> {
    if len > max {
        return Err(RuntimeError::Agent(format!(
            "the agent announced {len} bytes of output, over the {max}-byte cap"
        )));
    }
    let mut buf = Vec::with_capacity(len as usize);
    loop {
        let frame = read_frame_async_max(s, CHUNK)
            .await
            .map_err(agent_err)?
            .ok_or_else(|| RuntimeError::Agent("the agent closed the connection".into()))?;
        match frame.kind {
            FrameKind::Data if buf.len() + frame.payload.len() <= len as usize => {
                buf.extend_from_slice(&frame.payload)
            }
            FrameKind::End if buf.len() == len as usize => return Ok(buf),
            _ => {
                return Err(RuntimeError::Agent(format!(
                    "execution output does not match its announced {len} bytes"
                )))
            }
        }
    }
}

/// An `AsyncRead` over chunks arriving on a channel; an `Err` item becomes a read error.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.pos < self.chunk.len() {
                let n = (self.chunk.len() - self.pos).min(buf.remaining());
                let start = self.pos;
                buf.put_slice(&self.chunk[start..start + n]);
                self.pos += n;
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use instavm_protocol::write_frame;

    /// Frames as a (possibly hostile) agent would send them.
    fn frames(parts: &[(FrameKind, &[u8])]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (kind, payload) in parts {
            write_frame(&mut buf, *kind, payload).unwrap();
        }
        buf
    }

    async fn read_from(bytes: Vec<u8>, len: u64, max: u64) -> Result<Vec<u8>, RuntimeError> {
        let (mut agent, mut host) = UnixStream::pair().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = agent.write_all(&bytes).await;
        });
        read_stream(&mut host, len, max).await
    }

    #[tokio::test]
    async fn output_streams_must_match_their_announced_size() {
        use FrameKind::{Data, End};
        let ok = frames(&[(Data, b"ab"), (Data, b"c"), (End, b"")]);
        assert_eq!(read_from(ok, 3, 10).await.unwrap(), b"abc");
        let empty = frames(&[(End, b"")]);
        assert!(read_from(empty, 0, 10).await.unwrap().is_empty());
        // More than announced, less than announced, over the cap, a JSON frame mid-stream.
        for (bytes, len) in [
            (frames(&[(Data, b"abcd"), (End, b"")]), 3),
            (frames(&[(Data, b"ab"), (End, b"")]), 3),
            (frames(&[(Data, b"abc"), (End, b"")]), 11),
            (frames(&[(FrameKind::Json, b"{}"), (End, b"")]), 2),
        ] {
            assert!(matches!(
                read_from(bytes, len, 10).await,
                Err(RuntimeError::Agent(_))
            ));
        }
        // A data frame over a chunk is refused before its payload is read.
        let mut huge = instavm_protocol::encode_header(Data, CHUNK + 1)
            .unwrap()
            .to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(read_from(huge, 5, 10 << 20).await.is_err());
    }
}
