//! The Linux namespace sandbox backend.
//!
//! A sandbox is a process tree in its own pid, mount, network, UTS, IPC and cgroup namespaces,
//! whose PID 1 is `instavm-agent`; its root is an overlay of a shared read-only image and a
//! private, quota-limited writable layer; its limits are cgroups; its network is a veth pair
//! behind NAT and a firewall. See ARCHITECTURE.md and docs/threat-model.md.
//!
//! Sandboxes outlive the server process: on `open`, live ones are recovered and everything a
//! dead one left behind (cgroups, layers, veths, address slots, records) is removed.

mod agent_client;
mod cgroup;
mod ids;
pub mod image;
mod layers;
mod network;
mod pty;
mod record;
mod sandbox;
mod slots;
mod sys;
mod volumes;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use instavm_protocol::{Lang, Request, Response};
use instavm_runtime::*;
use sandbox::{Inner, Sandbox};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

pub use layers::Backend as LayerBackend;

/// Where the backend keeps its state and how it finds the guest agent.
#[derive(Debug, Clone)]
pub struct NsConfig {
    /// Images, sandbox state and writable layers live under here.
    pub data_dir: PathBuf,
    /// Built images; `None` means `<data_dir>/images`. Point several data directories (tests)
    /// at one images directory to build the base image only once.
    pub images_dir: Option<PathBuf>,
    /// The `instavm-agent` binary; `None` looks next to the current executable.
    pub agent_path: Option<PathBuf>,
    /// Sandboxes kept pre-started so a create only has to hand one over (0: none). Each costs
    /// an idle sandbox's memory (about 5 MiB).
    pub warm_pool: usize,
    /// DNS upstreams and private ranges for the sandboxes' egress (docs/network.md).
    pub egress: EgressSettings,
}

/// Host-wide egress settings (server flags `--dns-upstream`, `--private-range`,
/// `--allow-private-range`).
#[derive(Debug, Clone, Default)]
pub struct EgressSettings {
    /// Where the VMs' resolvers forward; empty: the host's /etc/resolv.conf.
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    /// Ranges blocked in addition to the defaults.
    pub private_ranges: Vec<String>,
    /// Ranges (or parts of default ones) made reachable.
    pub allowed_private_ranges: Vec<String>,
}

impl NsConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NsConfig {
            data_dir: data_dir.into(),
            images_dir: None,
            agent_path: None,
            warm_pool: DEFAULT_WARM_POOL,
            egress: EgressSettings::default(),
        }
    }
}

pub const DEFAULT_WARM_POOL: usize = 2;

/// Longest execution timeout; also used when a request gives none.
const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(300);
/// Most bytes kept of each of stdout and stderr of one execution: enough for the tens of MB of
/// base64 tarball the Agents integration moves through stdout.
const MAX_OUTPUT: u64 = 32 << 20;

/// The per-stream output cap of a sandbox with `memory_mb` of memory: the agent holds both
/// streams in the sandbox's own memory, so together they take at most a quarter of it (a
/// 256 MiB sandbox keeps 32 MiB of each; a 128 MiB one 16 MiB).
pub fn max_output(memory_mb: u32) -> u64 {
    (u64::from(memory_mb) << 20).div_ceil(8).min(MAX_OUTPUT)
}

/// Output bytes as text; invalid UTF-8 is replaced (a copy only then).
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
/// How long past its own timeout an execution may take before the agent is deemed hung.
const AGENT_GRACE: Duration = Duration::from_secs(30);

pub struct NsRuntime {
    inner: Arc<Inner>,
}

impl Drop for NsRuntime {
    /// Sandboxes live on (a restarted runtime recovers them); background tasks stop.
    fn drop(&mut self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl NsRuntime {
    /// Open the backend: check the host, recover sandboxes a previous run left alive and clean up
    /// what it left dead. Starts the expiry reaper.
    pub async fn open(config: NsConfig) -> Result<Arc<NsRuntime>> {
        let inner = tokio::task::spawn_blocking(move || Inner::open(config))
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("runtime start-up panicked: {e}")))??;
        let inner = Arc::new(inner);
        inner.recover()?;
        sandbox::start_reaper(&inner);
        sandbox::start_pool(&inner);
        Ok(Arc::new(NsRuntime { inner }))
    }

    /// Import a rootfs tarball (plain or gzip) as an image that sandboxes can be created from.
    pub async fn import_image(&self, name: &str, tarball: PathBuf) -> Result<()> {
        let inner = self.inner.clone();
        let name = name.to_owned();
        blocking(move || {
            let f = std::fs::File::open(&tarball)
                .map_err(|e| RuntimeError::io(format!("open {}", tarball.display()), e))?;
            inner
                .images
                .import_tarball(&name, f)
                .map(drop)
                .map_err(|e| RuntimeError::InvalidSpec(format!("import {name}: {e}")))
        })
        .await
    }

    /// Pre-started sandboxes ready to be claimed right now.
    pub fn warm_count(&self) -> usize {
        self.inner.warm_count()
    }

    /// Which backend holds the writable layers (btrfs with quotas, or the tmpfs fallback).
    pub fn layer_backend(&self) -> LayerBackend {
        self.inner.layers.backend()
    }

    fn sandbox(&self, id: &SandboxId) -> Result<Arc<Sandbox>> {
        self.inner.get(id)
    }
}

/// Destroy every sandbox that belongs to `config.data_dir` and release every mount and device
/// the backend holds for it, so the directory can be deleted (tests, uninstall).
pub async fn purge(mut config: NsConfig) -> Result<()> {
    config.warm_pool = 0;
    let rt = NsRuntime::open(config).await?;
    for sb in rt.inner.everything() {
        match sandbox::destroy_any(&rt.inner, &sb.id, ExitReason::Destroyed).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let inner = rt.inner.clone();
    blocking(move || {
        // btrfs volumes stay in the image (unmounting the store releases them); tmpfs ones
        // are mounts of their own, whose data goes with them.
        if inner.layers.backend() == LayerBackend::Tmpfs {
            for (vol, _) in inner.volumes.list() {
                let _ = inner.volumes.delete(&vol);
            }
        }
        inner.layers.unmount();
        inner.cgroups.remove_instance();
        Ok(())
    })
    .await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::Unavailable(format!("worker panicked: {e}")))?
}

fn path_in_sandbox(path: &str) -> Result<String> {
    normalize_sandbox_path(path, sandbox::WORKDIR)
        .map_err(|e| RuntimeError::InvalidPath(e.to_string()))
}

fn file_info(e: instavm_protocol::Entry) -> FileInfo {
    FileInfo {
        path: e.path,
        kind: match e.kind {
            instavm_protocol::EntryKind::File => FileKind::File,
            instavm_protocol::EntryKind::Dir => FileKind::Dir,
            instavm_protocol::EntryKind::Symlink => FileKind::Symlink,
            instavm_protocol::EntryKind::Other => FileKind::Other,
        },
        size: e.size,
        mode: e.mode,
        modified: e.modified,
    }
}

/// Turn an agent error answer into the runtime's error for `path`.
fn agent_error(kind: instavm_protocol::ErrorKind, message: String, path: &str) -> RuntimeError {
    use instavm_protocol::ErrorKind as K;
    match kind {
        K::NotFound => RuntimeError::FileNotFound(path.to_owned()),
        K::NotADirectory | K::IsADirectory => RuntimeError::WrongFileType(message),
        K::InvalidPath | K::PermissionDenied => RuntimeError::InvalidPath(message),
        K::NoSpace => RuntimeError::QuotaExceeded(message),
        K::AlreadyExists => RuntimeError::AlreadyExists(message),
        K::LimitReached => RuntimeError::LimitReached(message),
        K::BadRequest | K::Other => RuntimeError::Agent(message),
    }
}

fn unexpected(r: Response) -> RuntimeError {
    let what = match r {
        Response::Error { message, .. } => message,
        other => format!("unexpected answer {other:?}"),
    };
    RuntimeError::Agent(what)
}

#[async_trait]
impl Runtime for NsRuntime {
    fn name(&self) -> &'static str {
        "namespaces"
    }

    async fn prepare(&self) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || {
            inner
                .images
                .ensure_base()
                .map(drop)
                .map_err(|e| RuntimeError::Unavailable(format!("base image: {e}")))
        })
        .await
    }

    async fn create(&self, spec: SandboxSpec) -> Result<SandboxInfo> {
        if let Some(sb) = sandbox::claim(&self.inner, &spec).await? {
            return Ok(sb.info());
        }
        let inner = self.inner.clone();
        let sb = blocking(move || inner.create(spec, false)).await?;
        sandbox::watch_exit(&self.inner, &sb);
        // The agent answers once the sandbox is set up; a setup failure surfaces here.
        match sb.client.call(&Request::Ping).await {
            Ok(Response::Pong { .. }) => {
                sb.started();
                Ok(sb.info())
            }
            other => {
                let why = sb.last_log_line().unwrap_or_else(|| format!("{other:?}"));
                let _ = self.destroy(&sb.id).await;
                Err(RuntimeError::Unavailable(format!(
                    "sandbox failed to start: {why}"
                )))
            }
        }
    }

    async fn exec(&self, id: &SandboxId, req: ExecRequest) -> Result<ExecOutput> {
        let sb = self.sandbox(id)?;
        let timeout = req
            .timeout
            .unwrap_or(DEFAULT_EXEC_TIMEOUT)
            .min(MAX_EXEC_TIMEOUT);
        let spec = instavm_protocol::ExecSpec {
            lang: match req.language {
                Language::Python => Lang::Python,
                Language::Bash => Lang::Bash,
            },
            code: req.code,
            timeout_ms: timeout.as_millis() as u64,
            max_output: max_output(sb.info().memory_mb),
        };
        let answer = tokio::time::timeout(timeout + AGENT_GRACE, sb.client.exec(spec))
            .await
            .map_err(|_| RuntimeError::Agent("the agent did not answer in time".into()))?;
        let (r, stdout, stderr) = answer.map_err(|e| sb.explain(e))?;
        Ok(ExecOutput {
            stdout: text(stdout),
            stderr: text(stderr),
            exit_code: r.exit_code,
            execution_time: r.execution_time,
            cpu_time: r.cpu_time,
            timed_out: r.timed_out,
        })
    }

    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        data: ByteReader,
        opts: WriteOptions,
    ) -> Result<FileInfo> {
        let sb = self.sandbox(id)?;
        let path = path_in_sandbox(path)?;
        let answer = sb
            .client
            .write_file(&path, opts.create_parents, opts.mode, data)
            .await
            .map_err(|e| sb.explain(e))?;
        match answer {
            Response::File(e) => Ok(file_info(e)),
            Response::Error { kind, message } => Err(agent_error(kind, message, &path)),
            other => Err(unexpected(other)),
        }
    }

    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<(FileInfo, ByteReader)> {
        let sb = self.sandbox(id)?;
        let path = path_in_sandbox(path)?;
        match sb
            .client
            .read_file(&path)
            .await
            .map_err(|e| sb.explain(e))?
        {
            (Response::File(e), Some(reader)) => Ok((file_info(e), reader)),
            (Response::Error { kind, message }, _) => Err(agent_error(kind, message, &path)),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileInfo> {
        let sb = self.sandbox(id)?;
        let path = path_in_sandbox(path)?;
        let req = Request::Stat { path: path.clone() };
        match sb.client.call(&req).await.map_err(|e| sb.explain(e))? {
            Response::File(e) => Ok(file_info(e)),
            Response::Error { kind, message } => Err(agent_error(kind, message, &path)),
            other => Err(unexpected(other)),
        }
    }

    async fn list_dir(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<Vec<FileInfo>> {
        let sb = self.sandbox(id)?;
        let path = path_in_sandbox(path)?;
        let req = Request::ListDir {
            path: path.clone(),
            recursive,
        };
        match sb.client.call(&req).await.map_err(|e| sb.explain(e))? {
            Response::Entries { entries } => Ok(entries.into_iter().map(file_info).collect()),
            Response::Error { kind, message } => Err(agent_error(kind, message, &path)),
            other => Err(unexpected(other)),
        }
    }

    async fn stats(&self, id: &SandboxId) -> Result<SandboxStats> {
        let sb = self.sandbox(id)?;
        let inner = self.inner.clone();
        blocking(move || Ok(inner.stats(&sb))).await
    }

    async fn set_expiry(&self, id: &SandboxId, expires_at: DateTime<Utc>) -> Result<()> {
        let sb = self.sandbox(id)?;
        let unix_secs = sandbox::agent_deadline(expires_at);
        match sb
            .client
            .call(&Request::SetDeadline { unix_secs })
            .await
            .map_err(|e| sb.explain(e))?
        {
            Response::Ok => {}
            other => return Err(unexpected(other)),
        }
        let inner = self.inner.clone();
        blocking(move || inner.set_expiry(&sb, expires_at)).await
    }

    fn capacity(&self) -> HostCapacity {
        HostCapacity {
            disk_mb: self.inner.layers.capacity_bytes().map(|b| b >> 20),
            ..HostCapacity::of_this_host()
        }
    }

    async fn destroy(&self, id: &SandboxId) -> Result<()> {
        sandbox::destroy(&self.inner, id, ExitReason::Destroyed).await
    }

    async fn get(&self, id: &SandboxId) -> Result<SandboxInfo> {
        Ok(self.sandbox(id)?.info())
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>> {
        Ok(self.inner.all().iter().map(|s| s.info()).collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.inner.events.subscribe()
    }

    async fn pty_open(&self, id: &SandboxId, req: PtyRequest) -> Result<PtyInfo> {
        if !is_valid_pty_id(&req.id) {
            return Err(RuntimeError::InvalidRequest(format!(
                "invalid terminal id {:?}",
                req.id
            )));
        }
        let sb = self.sandbox(id)?;
        let spec = instavm_protocol::PtySpec {
            argv: req.command.argv(),
            id: req.id,
            term: req.term,
            cols: req.cols,
            rows: req.rows,
        };
        let pty_id = spec.id.clone();
        match sb
            .client
            .call(&Request::PtyOpen(spec))
            .await
            .map_err(|e| sb.explain(e))?
        {
            Response::Pty(state) => Ok(pty::info(state)),
            Response::Error { kind, message } => Err(pty::error(kind, message, &pty_id)),
            other => Err(unexpected(other)),
        }
    }

    async fn pty_list(&self, id: &SandboxId) -> Result<Vec<PtyInfo>> {
        let sb = self.sandbox(id)?;
        match sb
            .client
            .call(&Request::PtyList)
            .await
            .map_err(|e| sb.explain(e))?
        {
            Response::Ptys { ptys } => Ok(ptys.into_iter().map(pty::info).collect()),
            other => Err(unexpected(other)),
        }
    }

    async fn pty_get(&self, id: &SandboxId, pty_id: &str) -> Result<PtyInfo> {
        let sb = self.sandbox(id)?;
        let req = Request::PtyGet {
            id: pty_id.to_owned(),
        };
        match sb.client.call(&req).await.map_err(|e| sb.explain(e))? {
            Response::Pty(state) => Ok(pty::info(state)),
            Response::Error { kind, message } => Err(pty::error(kind, message, pty_id)),
            other => Err(unexpected(other)),
        }
    }

    async fn pty_resize(&self, id: &SandboxId, pty_id: &str, cols: u16, rows: u16) -> Result<()> {
        let sb = self.sandbox(id)?;
        let req = Request::PtyResize {
            id: pty_id.to_owned(),
            cols,
            rows,
        };
        match sb.client.call(&req).await.map_err(|e| sb.explain(e))? {
            Response::Ok => Ok(()),
            Response::Error { kind, message } => Err(pty::error(kind, message, pty_id)),
            other => Err(unexpected(other)),
        }
    }

    async fn pty_kill(&self, id: &SandboxId, pty_id: &str) -> Result<()> {
        let sb = self.sandbox(id)?;
        let req = Request::PtyKill {
            id: pty_id.to_owned(),
        };
        match sb.client.call(&req).await.map_err(|e| sb.explain(e))? {
            Response::Ok => Ok(()),
            Response::Error { kind, message } => Err(pty::error(kind, message, pty_id)),
            other => Err(unexpected(other)),
        }
    }

    async fn pty_attach(&self, id: &SandboxId, pty_id: &str) -> Result<PtyStream> {
        let sb = self.sandbox(id)?;
        pty::attach(&sb.client, pty_id)
            .await
            .map_err(|e| sb.explain(e))
    }

    async fn snapshot(&self, id: &SandboxId, snapshot: &SnapshotId) -> Result<SnapshotInfo> {
        let sb = self.sandbox(id)?;
        let (inner, snapshot) = (self.inner.clone(), snapshot.clone());
        blocking(move || inner.snapshot(&sb, &snapshot)).await
    }

    async fn delete_snapshot(&self, snapshot: &SnapshotId) -> Result<()> {
        let (inner, snapshot) = (self.inner.clone(), snapshot.clone());
        blocking(move || inner.delete_snapshot(&snapshot)).await
    }

    async fn list_snapshots(&self) -> Result<Vec<SnapshotId>> {
        let inner = self.inner.clone();
        blocking(move || Ok(inner.list_snapshots())).await
    }

    async fn snapshot_diff(&self, from: &SnapshotId, to: &SnapshotId) -> Result<Vec<PathChange>> {
        let (inner, from, to) = (self.inner.clone(), from.clone(), to.clone());
        blocking(move || inner.snapshot_diff(&from, &to)).await
    }

    async fn snapshot_read_file(
        &self,
        snapshot: &SnapshotId,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>> {
        let (inner, snapshot, path) = (self.inner.clone(), snapshot.clone(), path.to_owned());
        blocking(move || inner.snapshot_read_file(&snapshot, &path, max_bytes)).await
    }

    async fn set_memory(&self, id: &SandboxId, memory_mb: u32) -> Result<()> {
        let sb = self.sandbox(id)?;
        let inner = self.inner.clone();
        blocking(move || inner.set_memory(&sb, memory_mb)).await
    }

    async fn push_env(&self, id: &SandboxId, env: BTreeMap<String, String>) -> Result<()> {
        let sb = self.sandbox(id)?;
        sandbox::push_env(&sb, env).await
    }

    async fn volume_create(&self, vol: &VolumeId, quota_bytes: u64) -> Result<()> {
        let (inner, vol) = (self.inner.clone(), vol.clone());
        blocking(move || inner.volumes.create(&vol, quota_bytes)).await
    }

    async fn volume_delete(&self, vol: &VolumeId) -> Result<()> {
        let (inner, vol) = (self.inner.clone(), vol.clone());
        blocking(move || inner.volumes.delete(&vol)).await
    }

    async fn volume_set_quota(&self, vol: &VolumeId, quota_bytes: u64) -> Result<()> {
        let (inner, vol) = (self.inner.clone(), vol.clone());
        blocking(move || inner.volumes.set_quota(&vol, quota_bytes)).await
    }

    async fn volume_usage(&self, vol: &VolumeId) -> Result<u64> {
        let (inner, vol) = (self.inner.clone(), vol.clone());
        blocking(move || inner.volumes.usage(&vol)).await
    }

    async fn volume_list(&self) -> Result<Vec<(VolumeId, Vec<CheckpointId>)>> {
        let inner = self.inner.clone();
        blocking(move || Ok(inner.volumes.list())).await
    }

    async fn volume_checkpoint(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<u64> {
        let (inner, vol, ckpt) = (self.inner.clone(), vol.clone(), ckpt.clone());
        blocking(move || inner.volumes.checkpoint(&vol, &ckpt)).await
    }

    async fn volume_delete_checkpoint(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<()> {
        let (inner, vol, ckpt) = (self.inner.clone(), vol.clone(), ckpt.clone());
        blocking(move || inner.volumes.delete_checkpoint(&vol, &ckpt)).await
    }

    async fn volume_write(
        &self,
        vol: &VolumeId,
        path: &str,
        data: ByteReader,
        overwrite: bool,
    ) -> Result<VolumeFileInfo> {
        volumes::write(self.inner.clone(), vol, path, data, overwrite).await
    }

    async fn volume_read(
        &self,
        vol: &VolumeId,
        path: &str,
    ) -> Result<(VolumeFileInfo, ByteReader)> {
        let (inner, vol, path) = (self.inner.clone(), vol.clone(), path.to_owned());
        let (info, file) = blocking(move || inner.volumes.open_file(&vol, &path)).await?;
        Ok((info, Box::pin(tokio::fs::File::from_std(file))))
    }

    async fn volume_files(
        &self,
        vol: &VolumeId,
        prefix: &str,
        recursive: bool,
        limit: usize,
    ) -> Result<Vec<VolumeFileInfo>> {
        let (inner, vol, prefix) = (self.inner.clone(), vol.clone(), prefix.to_owned());
        blocking(move || inner.volumes.list_files(&vol, &prefix, recursive, limit)).await
    }

    async fn volume_remove(&self, vol: &VolumeId, path: &str) -> Result<()> {
        let (inner, vol, path) = (self.inner.clone(), vol.clone(), path.to_owned());
        blocking(move || inner.volumes.remove_file(&vol, &path)).await
    }

    async fn mount_volume(&self, id: &SandboxId, mount: &VolumeMount) -> Result<()> {
        let sb = self.sandbox(id)?;
        let (inner, mount) = (self.inner.clone(), mount.clone());
        blocking(move || inner.mount_volume(&sb, &mount)).await
    }

    async fn unmount_volume(&self, id: &SandboxId, mount_path: &str) -> Result<()> {
        let sb = self.sandbox(id)?;
        let (inner, path) = (self.inner.clone(), mount_path.to_owned());
        blocking(move || inner.unmount_volume(&sb, &path)).await
    }

    async fn set_egress(&self, id: &SandboxId, policy: &EgressPolicy) -> Result<()> {
        let sb = self.sandbox(id)?;
        let (inner, policy) = (self.inner.clone(), policy.clone());
        blocking(move || inner.set_egress(&sb, &policy)).await
    }

    async fn egress_denials(&self, id: &SandboxId) -> Result<u64> {
        let sb = self.sandbox(id)?;
        let inner = self.inner.clone();
        blocking(move || inner.egress_denials(&sb)).await
    }
}
