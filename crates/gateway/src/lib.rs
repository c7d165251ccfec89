//! The SSH gateway (spec/api.md §22, spec/cli.md §4): `ssh <vm_id>@<ssh_host>` reaches the VM.
//!
//! The username is the VM id; the only accepted authentication is a public key registered on
//! the VM owner's account (`/v1/ssh-keys`). Everything else is refused and logged. A session
//! channel can run an interactive shell (with `pty-req` and `window-change`), an `exec` of any
//! script through `bash -c` (its stdout, stderr and exit status), legacy scp (`scp -O`, both
//! directions, recursive), which the gateway speaks itself on top of the runtime's file calls,
//! and the SFTP subsystem (modern `scp` and `sftp`).
//!
//! The gateway knows nothing of users or HTTP: the server gives it a [`Directory`] that answers
//! "which sandbox may this key open for this VM id", and the runtime to drive it.

mod connection;
mod host_key;
mod scp;
mod sftp;
mod vm_shell;

pub use host_key::{load_or_create_host_key, HostKeyError};

use async_trait::async_trait;
use instavm_runtime::{Runtime, SandboxId};
use russh::server::Server as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Who may open what.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// The running sandbox of VM `vm_id`, if the key with this OpenSSH SHA-256 fingerprint
    /// (`SHA256:...`) is registered by the VM's owner. `None` for anything else (unknown VM,
    /// another user's VM, an unknown key, a VM that is not running): the gateway tells the
    /// client nothing more than "permission denied".
    async fn authorize(&self, vm_id: &str, fingerprint: &str) -> Option<SandboxId>;
}

/// A running gateway.
pub struct Gateway {
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Serve SSH on `listener` until dropped; SFTP keeps open files in `spool` (anonymous
    /// temp files).
    pub fn start(
        listener: TcpListener,
        host_key: russh::keys::PrivateKey,
        directory: Arc<dyn Directory>,
        runtime: Arc<dyn Runtime>,
        spool: std::path::PathBuf,
    ) -> std::io::Result<Gateway> {
        let local_addr = listener.local_addr()?;
        let config = Arc::new(russh::server::Config {
            keys: vec![host_key],
            // Failed logins cost the client time, not us: russh waits this long before saying no.
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::from_millis(0)),
            inactivity_timeout: Some(Duration::from_secs(3600)),
            keepalive_interval: Some(Duration::from_secs(30)),
            // Without it Nagle and delayed ACKs add ~40 ms to each round trip of the handshake.
            nodelay: true,
            // The only way in: clients are told so instead of trying passwords.
            methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
            ..Default::default()
        });
        let mut server = connection::Listener {
            directory,
            runtime,
            spool,
        };
        let task = tokio::spawn(async move {
            if let Err(e) = server.run_on_socket(config, &listener).await {
                tracing::error!(error = %e, "the SSH gateway stopped");
            }
        });
        Ok(Gateway { local_addr, task })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}
