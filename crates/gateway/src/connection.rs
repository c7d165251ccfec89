//! One SSH connection: authentication, then session channels mapped onto the runtime.

use crate::{scp, Directory};
use instavm_runtime::{
    ExecRequest, Language, PtyCommand, PtyEvent, PtyInput, PtyRequest, Runtime, SandboxId,
};
use russh::keys::ssh_key::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Accepts connections; one [`Connection`] each.
pub struct Listener {
    pub directory: Arc<dyn Directory>,
    pub runtime: Arc<dyn Runtime>,
    pub spool: std::path::PathBuf,
}

impl russh::server::Server for Listener {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        Connection {
            directory: self.directory.clone(),
            runtime: self.runtime.clone(),
            spool: self.spool.clone(),
            peer,
            sandbox: None,
            channels: HashMap::new(),
        }
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        tracing::debug!(error = %error, "SSH connection ended with an error");
    }
}

/// What a session channel asked for before its program starts.
#[derive(Default)]
struct ChannelState {
    /// `(term, cols, rows)` from `pty-req`.
    pty: Option<(String, u16, u16)>,
    /// Where the client's bytes go once a program runs.
    input: Option<Input>,
    /// The terminal a shell or a `pty-req` exec runs on, to kill it when the channel closes.
    pty_id: Option<String>,
    /// The channel's own stream, kept until its request says what it is for: SFTP reads it;
    /// everything else uses the handler callbacks and drops it (an unread channel would stall
    /// the connection once its buffer filled).
    stream: Option<Channel<Msg>>,
    /// The channel runs the SFTP subsystem.
    sftp: bool,
}

enum Input {
    Pty(mpsc::Sender<PtyInput>),
    Scp(mpsc::Sender<Vec<u8>>),
}

pub struct Connection {
    directory: Arc<dyn Directory>,
    runtime: Arc<dyn Runtime>,
    spool: std::path::PathBuf,
    peer: Option<SocketAddr>,
    /// Set by a successful login.
    sandbox: Option<SandboxId>,
    channels: HashMap<ChannelId, ChannelState>,
}

fn dimension(v: u32, default: u16) -> u16 {
    match u16::try_from(v) {
        Ok(0) | Err(_) => default,
        Ok(v) => v.min(1000),
    }
}

impl Connection {
    fn refuse(&self, user: &str, method: &str) -> Auth {
        tracing::warn!(user, method, peer = ?self.peer, "SSH login refused");
        Auth::reject()
    }

    fn sandbox(&self) -> Result<SandboxId, russh::Error> {
        self.sandbox.clone().ok_or(russh::Error::NotAuthenticated)
    }

    /// Run `command` (`None`: a login shell) on a terminal and stream it to the channel.
    async fn start_terminal(
        &mut self,
        channel: ChannelId,
        command: Option<String>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let sandbox = self.sandbox()?;
        let state = self.channels.entry(channel).or_default();
        let (term, cols, rows) = state
            .pty
            .clone()
            .unwrap_or_else(|| ("xterm-256color".into(), 80, 24));
        let req = PtyRequest {
            id: format!("ssh-{}", random_hex()),
            command: command.map_or(PtyCommand::DefaultShell, PtyCommand::Command),
            term,
            cols,
            rows,
        };
        let pty_id = req.id.clone();
        let handle = session.handle();
        let runtime = self.runtime.clone();
        let opened = async {
            runtime.pty_open(&sandbox, req).await?;
            runtime.pty_attach(&sandbox, &pty_id).await
        }
        .await;
        let stream = match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "SSH: cannot start a terminal");
                session.channel_failure(channel)?;
                return Ok(());
            }
        };
        session.channel_success(channel)?;
        state.input = Some(Input::Pty(stream.input));
        state.pty_id = Some(pty_id.clone());
        let mut output = stream.output;
        tokio::spawn(async move {
            let mut code = None;
            while let Some(event) = output.recv().await {
                match event {
                    PtyEvent::Output(bytes) => {
                        if handle.data(channel, bytes).await.is_err() {
                            break;
                        }
                    }
                    PtyEvent::Exit(c) => {
                        code = Some(c);
                        break;
                    }
                }
            }
            finish(&handle, channel, code.unwrap_or(255)).await;
            let _ = runtime.pty_kill(&sandbox, &pty_id).await;
        });
        Ok(())
    }

    fn drop_stream(&mut self, channel: ChannelId) {
        if let Some(state) = self.channels.get_mut(&channel) {
            state.stream = None;
        }
    }

    /// A command without a terminal: `bash -c`, whole output, exit status.
    fn start_exec(
        &mut self,
        channel: ChannelId,
        command: String,
        handle: Handle,
    ) -> Result<(), russh::Error> {
        let sandbox = self.sandbox()?;
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            let req = ExecRequest {
                language: Language::Bash,
                code: command,
                timeout: None,
            };
            let code = match runtime.exec(&sandbox, req).await {
                Ok(out) => {
                    if !out.stdout.is_empty() {
                        let _ = handle.data(channel, out.stdout.into_bytes()).await;
                    }
                    if !out.stderr.is_empty() {
                        let _ = handle
                            .extended_data(channel, 1, out.stderr.into_bytes())
                            .await;
                    }
                    out.exit_code
                }
                Err(e) => {
                    let msg = format!("instavm gateway: {e}\n");
                    let _ = handle.extended_data(channel, 1, msg.into_bytes()).await;
                    255
                }
            };
            finish(&handle, channel, code).await;
        });
        Ok(())
    }
}

/// Exit status, EOF, close: how a session channel ends.
async fn finish(handle: &Handle, channel: ChannelId, code: i32) {
    let _ = handle
        .exit_status_request(channel, code.clamp(0, 255) as u32)
        .await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        // Every client tries "none" first; not worth a warning.
        let _ = user;
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(self.refuse(user, "password"))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        match self.directory.authorize(user, &fingerprint).await {
            Some(sandbox) => {
                tracing::info!(vm = user, %fingerprint, peer = ?self.peer, "SSH login");
                self.sandbox = Some(sandbox);
                Ok(Auth::Accept)
            }
            None => {
                tracing::warn!(vm = user, %fingerprint, peer = ?self.peer, "SSH login refused: key not registered for this VM");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.sandbox.is_none() {
            return Ok(()); // dropping `reply` refuses it
        }
        let state = ChannelState {
            stream: Some(channel),
            ..ChannelState::default()
        };
        let id = state.stream.as_ref().map(|c| c.id());
        if let Some(id) = id {
            self.channels.insert(id, state);
        }
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let term = if term.is_empty() || !term.bytes().all(|b| b.is_ascii_graphic()) {
            "xterm-256color".to_string()
        } else {
            term.chars().take(64).collect()
        };
        let state = self.channels.entry(channel).or_default();
        state.pty = Some((term, dimension(cols, 80), dimension(rows, 24)));
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.drop_stream(channel);
        self.start_terminal(channel, None, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.drop_stream(channel);
        let Ok(command) = std::str::from_utf8(data).map(str::to_owned) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        if self.channels.get(&channel).is_some_and(|s| s.pty.is_some()) {
            return self.start_terminal(channel, Some(command), session).await;
        }
        if let Some(transfer) = scp::parse_command(&command) {
            let (tx, rx) = mpsc::channel(64);
            if let Some(state) = self.channels.get_mut(&channel) {
                state.input = Some(Input::Scp(tx));
            }
            session.channel_success(channel)?;
            let job = scp::Job {
                runtime: self.runtime.clone(),
                sandbox: self.sandbox()?,
                handle: session.handle(),
                channel,
            };
            tokio::spawn(async move {
                let code = job.run(transfer, rx).await;
                finish(&job.handle, job.channel, code).await;
            });
            return Ok(());
        }
        session.channel_success(channel)?;
        self.start_exec(channel, command, session.handle())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let stream = self
            .channels
            .get_mut(&channel)
            .and_then(|s| s.stream.take());
        match (name, stream, self.sandbox.clone()) {
            ("sftp", Some(stream), Some(sandbox)) => {
                session.channel_success(channel)?;
                if let Some(state) = self.channels.get_mut(&channel) {
                    state.sftp = true;
                }
                let sftp =
                    crate::sftp::Session::new(self.runtime.clone(), sandbox, self.spool.clone());
                // Runs on its own task until the client closes the channel.
                russh_sftp::server::run(stream.into_stream(), sftp).await;
            }
            _ => {
                tracing::info!(subsystem = name, "SSH subsystem refused");
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get(&channel).and_then(|s| s.input.as_ref()) {
            Some(Input::Pty(tx)) => {
                let _ = tx.send(PtyInput::Data(data.to_vec())).await;
            }
            Some(Input::Scp(tx)) => {
                let _ = tx.send(data.to_vec()).await;
            }
            None => {} // an exec without a terminal reads no input
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Input::Pty(tx)) = self.channels.get(&channel).and_then(|s| s.input.as_ref()) {
            let resize = PtyInput::Resize {
                cols: dimension(cols, 80),
                rows: dimension(rows, 24),
            };
            let _ = tx.send(resize).await;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The end of an scp upload's input; a terminal ignores it (its program decides).
        if let Some(state) = self.channels.get_mut(&channel) {
            if matches!(state.input, Some(Input::Scp(_))) {
                state.input = None;
            }
            if state.sftp {
                // Like sftp-server exiting at the end of its input: clients such as scp check
                // for a zero exit status. Sent from the handler itself, so it is queued before
                // the close that the SFTP task's stream sends when it ends.
                session.exit_status_request(channel, 0)?;
                session.eof(channel)?;
                session.close(channel)?;
            }
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A closed channel takes its terminal with it, so nothing keeps running unseen.
        if let Some(state) = self.channels.remove(&channel) {
            if let (Some(pty), Some(sandbox)) = (state.pty_id, self.sandbox.clone()) {
                let runtime = self.runtime.clone();
                tokio::spawn(async move {
                    let _ = runtime.pty_kill(&sandbox, &pty).await;
                });
            }
        }
        Ok(())
    }
}
