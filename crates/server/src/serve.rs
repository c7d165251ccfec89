//! Starting and stopping the server process.

use crate::auth::generate_key;
use crate::config::{is_valid_key_text, ConfigError, RuntimeKind, ServerConfig};
use crate::error::ApiError;
use crate::lifecycle;
use crate::routes::app;
use crate::state::AppState;
use instavm_runtime::fake::FakeRuntime;
use instavm_runtime::{Runtime, RuntimeError};
use instavm_runtime_ns::{NsConfig, NsRuntime};
use instavm_store::{Store, StoreError};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("starting the {0} runtime: {1}")]
    Runtime(&'static str, #[source] RuntimeError),
    #[error("admin API key file {path}: {detail}")]
    AdminKey { path: PathBuf, detail: String },
    #[error("reconciling sessions with the runtime: {0}")]
    Reconcile(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
    #[error("SSH gateway: {0}")]
    Gateway(String),
    #[error("share proxy: {0}")]
    Shares(String),
    #[error("secrets vault: {0}")]
    Vault(String),
}

/// Run the server until SIGINT or SIGTERM.
pub async fn run(config: ServerConfig) -> Result<(), ServeError> {
    config.validate()?;
    let store = Store::open(&config.database_path())?;
    let admin_key = admin_key(&config)?;
    let runtime: Arc<dyn Runtime> = match config.runtime {
        RuntimeKind::Namespaces => {
            let mut ns = ns_config(&config.data_dir, config.images_dir.as_deref());
            if let Some(n) = config.warm_pool {
                ns.warm_pool = n;
            }
            ns.egress = config.egress.clone();
            NsRuntime::open(ns)
                .await
                .map_err(|e| ServeError::Runtime("namespaces", e))?
        }
        RuntimeKind::Fake => {
            tracing::warn!("using the fake runtime: no code runs, executions return empty output");
            Arc::new(FakeRuntime::new())
        }
    };
    clear_spool(&config.spool_dir());
    let state = AppState::new(
        store,
        runtime,
        config.limits.clone(),
        &admin_key,
        config.spool_dir(),
    )?;
    crate::vault::start(&state, &config.data_dir, &config.vault).map_err(ServeError::Vault)?;
    state.tapes().set_cassette_root(
        config
            .tapes_cassette_root
            .clone()
            .unwrap_or_else(|| config.data_dir.join("tapes")),
    );
    crate::tapes::load(&state)
        .await
        .map_err(|e| ServeError::Reconcile(e.to_string()))?;
    lifecycle::reconcile(&state)
        .await
        .map_err(|e: ApiError| ServeError::Reconcile(e.to_string()))?;
    match crate::egress::reapply(&state).await {
        Ok(n) => tracing::info!(policies = n, "egress policies re-applied"),
        Err(e) => tracing::error!("re-applying egress policies: {e}"),
    }
    let background = lifecycle::spawn(state.clone());
    let webhooks = crate::webhooks::start(&state, config.webhooks.clone());
    let metering = crate::metering::start(&state, config.billing.clone());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    // Printed as a plain line (not only through the log) so scripts and tests can find the
    // port when they asked for port 0.
    eprintln!("instavm server listening on http://{addr}");
    tracing::info!(%addr, runtime = state.runtime().name(), data_dir = %config.data_dir.display(), "listening");

    let _gateway = match config.ssh_listen {
        Some(ssh_addr) => Some(start_gateway(&config, ssh_addr, &state).await?),
        None => None,
    };

    if let Some(settings) = config.shares.clone() {
        let addr = crate::shares::start(&state, settings)
            .await
            .map_err(|e| ServeError::Shares(e.to_string()))?;
        // A plain line, like the HTTP one.
        eprintln!("instavm share proxy listening on {addr}");
        tracing::info!(addr, "share proxy listening");
    }

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    // Answers go out in several writes (headers, then streamed JSON): without TCP_NODELAY,
    // Nagle's algorithm and the client's delayed ACK hold the second write ~40 ms.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let mut server = tokio::spawn(async move { server.await });
    let outcome = tokio::select! {
        result = &mut server => Some(result),
        () = shutdown_signal() => None,
    };
    let result = match outcome {
        Some(result) => result,
        None => {
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        "requests still running after the grace period; stopping anyway"
                    );
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    drop(background);
    webhooks.abort();
    metering.abort();
    if let Err(err) = state.flush_usage().await {
        tracing::error!(error = %err, "writing usage counters at shutdown failed");
    }
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(ServeError::Serve(err)),
        Err(join) => Err(ServeError::Serve(std::io::Error::other(join.to_string()))),
    }
}

/// Start the SSH gateway with the host key kept in the data directory.
async fn start_gateway(
    config: &ServerConfig,
    addr: SocketAddr,
    state: &AppState,
) -> Result<instavm_gateway::Gateway, ServeError> {
    let key = instavm_gateway::load_or_create_host_key(&config.ssh_host_key_path())
        .map_err(|e| ServeError::Gateway(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let directory = Arc::new(crate::ssh_gateway::GatewayDirectory {
        state: state.clone(),
    });
    let spool = config.spool_dir().join("sftp");
    let gateway =
        instavm_gateway::Gateway::start(listener, key, directory, state.runtime().clone(), spool)
            .map_err(ServeError::Serve)?;
    // What VM records show as `ssh_host`: the configured name, else the address listened on
    // (nothing for a wildcard address, which names no host).
    let host = config.ssh_host.clone().or_else(|| {
        let ip = gateway.local_addr.ip();
        (!ip.is_unspecified()).then(|| ip.to_string())
    });
    if let Some(host) = host {
        state.set_ssh_host(host);
    }
    // A plain line, like the HTTP one, for scripts and tests that asked for port 0.
    eprintln!("instavm SSH gateway listening on {}", gateway.local_addr);
    tracing::info!(addr = %gateway.local_addr, "SSH gateway listening");
    Ok(gateway)
}

/// The namespace runtime's configuration for a server data directory: the runtime keeps its
/// state next to the database (`images/`, `layers.img`, `sandboxes/`).
pub fn ns_config(data_dir: &Path, images_dir: Option<&Path>) -> NsConfig {
    let mut config = NsConfig::new(data_dir);
    config.images_dir = images_dir.map(Path::to_path_buf);
    config
}

/// Destroy every sandbox of a data directory and release what the runtime holds for it, so
/// the directory can be deleted (`instavm server purge`, test teardown).
pub async fn purge(data_dir: &Path, images_dir: Option<&Path>) -> Result<(), RuntimeError> {
    instavm_runtime_ns::purge(ns_config(data_dir, images_dir)).await
}

/// The admin key: from the configuration, else from the key file, else generated, saved with
/// mode 0600 and printed once.
fn admin_key(config: &ServerConfig) -> Result<String, ServeError> {
    if let Some(key) = &config.admin_api_key {
        return Ok(key.clone());
    }
    let path = config.admin_key_path();
    let fail = |detail: String| ServeError::AdminKey {
        path: path.clone(),
        detail,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim();
            if !is_valid_key_text(key) {
                return Err(fail(
                    "does not hold a valid key; delete it to generate a new one".into(),
                ));
            }
            return Ok(key.to_owned());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let key = generate_key();
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| fail(e.to_string()))?
    };
    file.write_all(format!("{key}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(e.to_string()))?;
    // Deliberately not through `tracing`: the key must not end up in collected logs.
    eprintln!(
        "instavm server: generated an admin API key, saved in {} (mode 0600). It is shown only this once:\n  {key}",
        path.display()
    );
    Ok(key)
}

/// Uploads spooled by a previous run are incomplete by definition.
fn clear_spool(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
