//! Legacy scp (`scp -O`), spoken by the gateway itself: `scp -t` (the client uploads) and
//! `scp -f` (the client downloads), recursive or not, over the runtime's streaming file calls.
//! Relative paths are relative to the VM user's home, `/root`, as with a real sshd.

use crate::vm_shell;
use instavm_runtime::{ByteReader, FileKind, Runtime, SandboxId, WriteOptions};
use russh::server::Handle;
use russh::ChannelId;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const HOME: &str = "/root";
/// Longest control line accepted from the client.
const MAX_LINE: usize = 4096;
const CHUNK: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// `-t`: the client sends files to `target`.
    Upload,
    /// `-f`: the client fetches `target`.
    Download,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub direction: Direction,
    pub recursive: bool,
    /// `-d`: the target must be a directory.
    pub target_is_dir: bool,
    pub target: String,
}

/// `scp [-r] [-p] [-d] [-v] [-q] -t|-f [--] PATH`, as OpenSSH's client sends it.
pub fn parse_command(command: &str) -> Option<Transfer> {
    let mut words = command.split_whitespace();
    if words.next()? != "scp" {
        return None;
    }
    let (mut direction, mut recursive, mut target_is_dir) = (None, false, false);
    let mut rest: Vec<&str> = Vec::new();
    let mut flags_done = false;
    for w in words {
        if !flags_done && w == "--" {
            flags_done = true;
        } else if !flags_done && w.starts_with('-') && w.len() > 1 {
            for c in w[1..].chars() {
                match c {
                    't' => direction = Some(Direction::Upload),
                    'f' => direction = Some(Direction::Download),
                    'r' => recursive = true,
                    'd' => target_is_dir = true,
                    'p' | 'v' | 'q' | 'T' => {}
                    _ => return None,
                }
            }
        } else {
            rest.push(w);
        }
    }
    // The client quotes nothing for simple paths; a path with spaces arrives as several words.
    let target = rest.join(" ");
    Some(Transfer {
        direction: direction?,
        recursive,
        target_is_dir,
        target: if target.is_empty() {
            ".".into()
        } else {
            target
        },
    })
}

fn absolute(path: &str) -> String {
    let path = path.trim_matches(|c| c == '\'' || c == '"');
    if path.starts_with('/') {
        path.to_owned()
    } else if path.is_empty() || path == "." {
        HOME.to_owned()
    } else {
        format!("{HOME}/{path}")
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Bytes from the client, as a stream with line and exact-length reads.
struct Incoming {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Incoming {
    async fn fill(&mut self) -> bool {
        if self.pos < self.buf.len() {
            return true;
        }
        match self.rx.recv().await {
            Some(chunk) => {
                self.buf = chunk;
                self.pos = 0;
                true
            }
            None => false,
        }
    }

    async fn byte(&mut self) -> Option<u8> {
        while self.pos >= self.buf.len() {
            if !self.fill().await {
                return None;
            }
        }
        self.pos += 1;
        Some(self.buf[self.pos - 1])
    }

    async fn line(&mut self) -> Result<Option<String>, String> {
        let mut line = Vec::new();
        loop {
            match self.byte().await {
                None if line.is_empty() => return Ok(None),
                None => return Err("unexpected end of input".into()),
                Some(b'\n') => return Ok(Some(String::from_utf8_lossy(&line).into_owned())),
                Some(b) => line.push(b),
            }
            if line.len() > MAX_LINE {
                return Err("control line too long".into());
            }
        }
    }

    /// Copy exactly `n` bytes into `w`.
    async fn copy(
        &mut self,
        mut n: u64,
        w: &mut (impl AsyncWriteExt + Unpin),
    ) -> Result<(), String> {
        while n > 0 {
            if !self.fill().await {
                return Err("unexpected end of file data".into());
            }
            let take = ((self.buf.len() - self.pos) as u64).min(n) as usize;
            let slice = &self.buf[self.pos..self.pos + take];
            w.write_all(slice).await.map_err(|e| e.to_string())?;
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }
}

pub struct Job {
    pub runtime: Arc<dyn Runtime>,
    pub sandbox: SandboxId,
    pub handle: Handle,
    pub channel: ChannelId,
}

impl Job {
    async fn send(&self, bytes: &[u8]) -> Result<(), String> {
        self.handle
            .data(self.channel, bytes.to_vec())
            .await
            .map_err(|_| "the client went away".to_string())
    }

    async fn ack(&self) -> Result<(), String> {
        self.send(&[0]).await
    }

    /// Tell the client about an error (its scp prints it) the protocol's way.
    async fn warn(&self, message: &str) {
        let _ = self.send(format!("\x01scp: {message}\n").as_bytes()).await;
    }

    /// Run the transfer; the exit status for the channel.
    pub async fn run(&self, transfer: Transfer, rx: mpsc::Receiver<Vec<u8>>) -> i32 {
        let mut input = Incoming {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        let result = match transfer.direction {
            Direction::Upload => self.receive(&transfer, &mut input).await,
            Direction::Download => self.serve(&transfer, &mut input).await,
        };
        match result {
            Ok(()) => 0,
            Err(message) => {
                tracing::info!(error = %message, "scp failed");
                self.warn(&message).await;
                1
            }
        }
    }

    async fn kind(&self, path: &str) -> Option<FileKind> {
        self.runtime
            .stat(&self.sandbox, path)
            .await
            .ok()
            .map(|i| i.kind)
    }

    async fn mkdir(&self, path: &str) -> Result<(), String> {
        let cmd = format!("mkdir -p -- {}", vm_shell::quote(path));
        vm_shell::run(&self.runtime, &self.sandbox, &cmd).await
    }

    /// The sink side (`scp -t`).
    async fn receive(&self, t: &Transfer, input: &mut Incoming) -> Result<(), String> {
        let target = absolute(&t.target);
        let target_dir = self.kind(&target).await == Some(FileKind::Dir);
        if t.target_is_dir && !target_dir {
            return Err(format!("{}: Not a directory", t.target));
        }
        // Where the next file or directory goes: inside `dirs.last()`, or at `target` itself.
        let mut dirs: Vec<String> = Vec::new();
        self.ack().await?;
        while let Some(line) = input.line().await? {
            let (kind, rest) = line.split_at(line.len().min(1));
            match kind {
                "T" => self.ack().await?,
                "E" => {
                    dirs.pop();
                    self.ack().await?;
                }
                "C" | "D" => {
                    let mut parts = rest.splitn(3, ' ');
                    let mode = parts.next().and_then(|m| u32::from_str_radix(m, 8).ok());
                    let size = parts.next().and_then(|s| s.parse::<u64>().ok());
                    let name = parts.next().unwrap_or("");
                    let (Some(mode), Some(size)) = (mode, size) else {
                        return Err(format!("bad protocol line {line:?}"));
                    };
                    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                        return Err(format!("refusing the name {name:?}"));
                    }
                    let path = match dirs.last() {
                        Some(dir) => join(dir, name),
                        None if target_dir => join(&target, name),
                        None => target.clone(),
                    };
                    if kind == "D" {
                        if !t.recursive {
                            return Err("received a directory without -r".into());
                        }
                        self.mkdir(&path).await?;
                        dirs.push(path);
                        self.ack().await?;
                    } else {
                        self.ack().await?;
                        self.receive_file(&path, mode & 0o7777, size, input).await?;
                    }
                }
                "\x01" => tracing::info!(message = rest, "scp client warning"),
                "\x02" => return Err(rest.to_string()),
                _ => return Err(format!("bad protocol line {line:?}")),
            }
        }
        Ok(())
    }

    async fn receive_file(
        &self,
        path: &str,
        mode: u32,
        size: u64,
        input: &mut Incoming,
    ) -> Result<(), String> {
        let (mut w, r) = tokio::io::duplex(CHUNK);
        let reader: ByteReader = Box::pin(r);
        let opts = WriteOptions {
            create_parents: true,
            mode: Some(mode),
        };
        let write = self.runtime.write_file(&self.sandbox, path, reader, opts);
        let feed = async {
            let copied = input.copy(size, &mut w).await;
            drop(w); // the end of the file for the runtime
            copied
        };
        let (written, fed) = tokio::join!(write, feed);
        fed?;
        // After the data the client sends one status byte (0: all was sent).
        let status = input.byte().await;
        written.map_err(|e| format!("{path}: {e}"))?;
        if status != Some(0) {
            return Err(format!("{path}: the client ended the transfer"));
        }
        self.ack().await
    }

    async fn wait_ack(&self, input: &mut Incoming) -> Result<(), String> {
        match input.byte().await {
            Some(0) => Ok(()),
            Some(1) | Some(2) => {
                let msg = input.line().await.ok().flatten().unwrap_or_default();
                Err(format!("the client refused: {msg}"))
            }
            _ => Err("the client went away".into()),
        }
    }

    /// The source side (`scp -f`).
    async fn serve(&self, t: &Transfer, input: &mut Incoming) -> Result<(), String> {
        self.wait_ack(input).await?;
        let path = absolute(&t.target);
        self.send_path(&path, t.recursive, input).await
    }

    async fn send_path(
        &self,
        path: &str,
        recursive: bool,
        input: &mut Incoming,
    ) -> Result<(), String> {
        let info = self
            .runtime
            .stat(&self.sandbox, path)
            .await
            .map_err(|_| format!("{path}: No such file or directory"))?;
        let name = path
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("root");
        match info.kind {
            FileKind::Dir if recursive => {
                self.send(format!("D{:04o} 0 {name}\n", info.mode & 0o7777).as_bytes())
                    .await?;
                self.wait_ack(input).await?;
                let entries = self
                    .runtime
                    .list_dir(&self.sandbox, path, false)
                    .await
                    .map_err(|e| format!("{path}: {e}"))?;
                for entry in entries {
                    if matches!(entry.kind, FileKind::File | FileKind::Dir) {
                        Box::pin(self.send_path(&entry.path, true, input)).await?;
                    }
                }
                self.send(b"E\n").await?;
                self.wait_ack(input).await
            }
            FileKind::Dir => Err(format!("{path}: not a regular file")),
            FileKind::File => {
                let (info, mut reader) = self
                    .runtime
                    .read_file(&self.sandbox, path)
                    .await
                    .map_err(|e| format!("{path}: {e}"))?;
                self.send(format!("C{:04o} {} {name}\n", info.mode & 0o7777, info.size).as_bytes())
                    .await?;
                self.wait_ack(input).await?;
                let mut buf = vec![0u8; CHUNK];
                let mut sent = 0u64;
                while sent < info.size {
                    let n = reader
                        .read(&mut buf)
                        .await
                        .map_err(|e| format!("{path}: {e}"))?;
                    if n == 0 {
                        return Err(format!("{path}: file shrank while being sent"));
                    }
                    let n = n.min((info.size - sent) as usize);
                    self.send(&buf[..n]).await?;
                    sent += n as u64;
                }
                self.ack().await?;
                self.wait_ack(input).await
            }
            _ => Err(format!("{path}: not a regular file")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scp_commands() {
        let t = parse_command("scp -t /tmp/x").unwrap();
        assert_eq!(
            (t.direction, t.recursive, t.target.as_str()),
            (Direction::Upload, false, "/tmp/x")
        );
        let t = parse_command("scp -r -p -d -t -- /tmp/dir").unwrap();
        assert!(t.recursive && t.target_is_dir);
        assert_eq!(t.target, "/tmp/dir");
        let t = parse_command("scp -f file.txt").unwrap();
        assert_eq!(t.direction, Direction::Download);
        assert_eq!(absolute(&t.target), "/root/file.txt");
        assert_eq!(absolute("."), "/root");
        assert_eq!(parse_command("scp -t").unwrap().target, ".");
        assert!(parse_command("scp /a /b").is_none(), "no direction");
        assert!(parse_command("ls -t /tmp").is_none());
        assert!(parse_command("scp -Z -t /tmp").is_none());
    }
}
