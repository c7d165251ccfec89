//! `instavm pty VM_ID [SHELL]`: a terminal in a VM over the WebSocket API (spec/cli.md §5).
//!
//! On a terminal, the local one goes to raw mode and window changes follow; otherwise stdin and
//! stdout are piped, and after the end of stdin a ^D goes out whenever the terminal is quiet,
//! so a shell reading it ends (the reference CLI stops at the end of stdin without waiting for
//! the program). The exit
//! code is the remote program's. The terminal is always deleted at the end.

use crate::commands::RuntimeArgs;
use crate::terminal::{self, RawMode};
use anyhow::Context;
use clap::Args;
use instavm_sdk::{CreatePtyRequest, PtyEvent};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Ctrl-D: end of input for a shell or a program reading the terminal.
const EOT: u8 = 0x04;
/// How long the terminal must be silent before piped mode sends ^D at the end of stdin.
const QUIET: Duration = Duration::from_millis(300);

#[derive(Args, Debug)]
pub struct PtyArgs {
    /// The VM to open a terminal in.
    pub vm_id: String,
    /// A shell program to run as `<shell> -il` (default: `/bin/bash -il`).
    pub shell: Option<String>,
    /// Override the InstaVM API key for this command.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Override the InstaVM API base URL for this command.
    #[arg(long)]
    pub base_url: Option<String>,
}

pub async fn run(args: PtyArgs) -> anyhow::Result<ExitCode> {
    let client = RuntimeArgs {
        api_key: args.api_key.clone(),
        base_url: args.base_url.clone(),
        json: false,
    }
    .client()?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let interactive = terminal::is_tty(&stdin) && terminal::is_tty(&stdout);
    let (cols, rows) = terminal::size(&stdout).unwrap_or((80, 24));
    let req = CreatePtyRequest {
        cols: Some(cols),
        rows: Some(rows),
        shell: args.shell.clone(),
        ..Default::default()
    };
    let pty = client
        .create_vm_pty(&args.vm_id, &req)
        .await
        .context("creating the terminal")?;
    let result = relay(&client, &args.vm_id, &pty.session_id, interactive).await;
    // Always remove it, whatever happened (the official CLI does the same).
    let _ = client.kill_vm_pty(&args.vm_id, &pty.session_id).await;
    result
}

async fn relay(
    client: &instavm_sdk::Client,
    vm_id: &str,
    pty_id: &str,
    interactive: bool,
) -> anyhow::Result<ExitCode> {
    let mut conn = client.connect_vm_pty(vm_id, pty_id).await?;
    let raw_mode = if interactive {
        Some(RawMode::enable(&std::io::stdin()).context("switching the terminal to raw mode")?)
    } else {
        None
    };
    let mut input = Some(read_stdin());
    let mut resized = signal(SignalKind::window_change())?;
    let mut stdout = std::io::stdout();
    let mut last_output = Instant::now();
    let mut tick = tokio::time::interval(QUIET);
    loop {
        tokio::select! {
            chunk = next_input(&mut input) => match chunk {
                Some(bytes) => conn.send_input(&bytes).await?,
                None if interactive => return Ok(ExitCode::SUCCESS),
                None => input = None, // from now on, ^D whenever the terminal is quiet
            },
            _ = tick.tick(), if input.is_none() => {
                // Input typed before the shell's line editor starts can swallow a ^D, so it
                // is repeated each time the program has been quiet for a while.
                if last_output.elapsed() >= QUIET {
                    conn.send_input(&[EOT]).await?;
                }
            }
            _ = resized.recv() => {
                if let Some((cols, rows)) = terminal::size(&stdout) {
                    conn.resize(cols, rows).await?;
                }
            }
            event = conn.next_event() => match event? {
                PtyEvent::Output(bytes) => {
                    last_output = Instant::now();
                    stdout.write_all(&bytes)?;
                    stdout.flush()?;
                }
                PtyEvent::Exit(code) => return Ok(ExitCode::from(code.clamp(0, 255) as u8)),
                PtyEvent::Closed { code, reason } => {
                    if code == 1000 {
                        return Ok(ExitCode::SUCCESS);
                    }
                    drop(raw_mode);
                    anyhow::bail!("the server closed the terminal ({code}): {reason}");
                }
            },
        }
    }
}

/// The next chunk of stdin; waits forever once stdin is done.
async fn next_input(input: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Stdin in chunks of up to 4 KiB, from a thread (a blocking read cannot be cancelled).
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}
