//! The sandbox runtime seam.
//!
//! The server drives sandboxes only through [`Runtime`]. Backends: the Linux-namespace backend in
//! `instavm-runtime-ns` (the real one), and [`fake::FakeRuntime`] for unit tests of other crates.
//! A QEMU microVM backend can be added later behind the same trait.

pub mod fake;
mod fake_pty;
mod fake_volumes;
mod path;
mod pty;
mod types;
mod volume;

pub use path::{normalize_sandbox_path, PathError};
pub use pty::*;
pub use types::*;
pub use volume::*;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::pin::Pin;
use tokio::io::AsyncRead;
use tokio::sync::broadcast;

/// A stream of file bytes moving into or out of a sandbox, never held whole in memory.
pub type ByteReader = Pin<Box<dyn AsyncRead + Send + Unpin>>;

/// Everything that can go wrong in a runtime call. The server maps each variant to one HTTP
/// status; variants marked "user" are the caller's fault (4xx), the rest are ours (5xx).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// user: no sandbox with this id (or it is gone).
    #[error("sandbox {0} not found")]
    NotFound(String),
    /// user: the sandbox exists in the records but is no longer running.
    #[error("sandbox {0} is not running")]
    NotRunning(String),
    /// user: a path that is empty, not UTF-8, has NUL bytes, or is otherwise unusable.
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// user: the path does not exist inside the sandbox.
    #[error("no such file or directory: {0}")]
    FileNotFound(String),
    /// user: a directory where a file was expected, or the reverse.
    #[error("wrong file type: {0}")]
    WrongFileType(String),
    /// user: limits in the request that the backend cannot honour.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// user: a write ran past the sandbox's disk quota.
    #[error("disk quota exceeded: {0}")]
    QuotaExceeded(String),
    /// user: the host is at capacity (sandbox count, address pool).
    #[error("capacity exhausted: {0}")]
    Exhausted(String),
    /// user: this backend cannot do what was asked (e.g. snapshots on a backend without them).
    #[error("not supported by the {backend} runtime: {what}")]
    Unsupported { backend: &'static str, what: String },
    /// user: something with this name exists already (a terminal id).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// user: no terminal with this id in the sandbox.
    #[error("terminal {0} not found")]
    PtyNotFound(String),
    /// user: a request the sandbox refused as malformed (a terminal program that cannot run).
    #[error("{0}")]
    InvalidRequest(String),
    /// user: a per-sandbox limit (the number of terminals).
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// ours: the host lacks something the backend needs.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// ours: the agent broke the protocol or went away mid-call.
    #[error("agent error: {0}")]
    Agent(String),
    /// ours: an operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the error was caused by the caller's input rather than by the host.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            RuntimeError::NotFound(_)
                | RuntimeError::NotRunning(_)
                | RuntimeError::InvalidPath(_)
                | RuntimeError::FileNotFound(_)
                | RuntimeError::WrongFileType(_)
                | RuntimeError::InvalidSpec(_)
                | RuntimeError::QuotaExceeded(_)
                | RuntimeError::Exhausted(_)
                | RuntimeError::Unsupported { .. }
                | RuntimeError::AlreadyExists(_)
                | RuntimeError::PtyNotFound(_)
                | RuntimeError::LimitReached(_)
                | RuntimeError::InvalidRequest(_)
        )
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// A sandbox backend. All methods are safe to call concurrently; calls for one sandbox may run
/// in parallel (Python executions are serialised by the backend, bash ones are not).
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Short backend name for logs and `/health` ("namespaces", "fake").
    fn name(&self) -> &'static str;

    /// Build or load what the backend needs before it can create sandboxes (the base image on
    /// first use, which can take a minute; progress goes to `tracing`). Idempotent; the server
    /// calls it in the background at start and answers `/health` with 200 once it has returned.
    async fn prepare(&self) -> Result<()> {
        Ok(())
    }

    /// Create and start a sandbox. Returns once the sandbox accepts requests; the first `exec`
    /// may still wait for the Python interpreter to finish starting.
    async fn create(&self, spec: SandboxSpec) -> Result<SandboxInfo>;

    /// Run code and wait for it. A non-zero exit code or a timeout is a normal `Ok` answer.
    async fn exec(&self, id: &SandboxId, req: ExecRequest) -> Result<ExecOutput>;

    /// Write a file from a stream, creating parent directories when asked.
    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        data: ByteReader,
        opts: WriteOptions,
    ) -> Result<FileInfo>;

    /// Open a regular file for streaming out of the sandbox.
    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<(FileInfo, ByteReader)>;

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileInfo>;

    /// List a directory (one level, or the whole tree with `recursive`).
    async fn list_dir(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<Vec<FileInfo>>;

    /// Resource usage right now.
    async fn stats(&self, id: &SandboxId) -> Result<SandboxStats>;

    /// Move the expiry; the backend's reaper destroys the sandbox when it passes.
    async fn set_expiry(&self, id: &SandboxId, expires_at: DateTime<Utc>) -> Result<()>;

    /// Stop everything in the sandbox and free all its resources. Destroying an unknown or
    /// already-destroyed sandbox is `NotFound`.
    async fn destroy(&self, id: &SandboxId) -> Result<()>;

    async fn get(&self, id: &SandboxId) -> Result<SandboxInfo>;

    /// Every live sandbox, including those recovered from a previous run of the process.
    async fn list(&self) -> Result<Vec<SandboxInfo>>;

    /// What the host can hold (the server refuses sandboxes beyond it). By default this
    /// machine's CPUs and memory, with no disk store.
    fn capacity(&self) -> HostCapacity {
        HostCapacity::of_this_host()
    }

    /// Lifecycle events (a sandbox expired, died or was destroyed).
    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent>;

    /// Start a program on a new terminal. A duplicate id is `AlreadyExists`.
    async fn pty_open(&self, id: &SandboxId, req: PtyRequest) -> Result<PtyInfo> {
        let _ = (id, req);
        Err(self.unsupported("terminals"))
    }

    /// Every terminal of the sandbox, exited ones included until they are killed.
    async fn pty_list(&self, id: &SandboxId) -> Result<Vec<PtyInfo>> {
        let _ = id;
        Err(self.unsupported("terminals"))
    }

    /// One terminal; an unknown one is `NotFound`.
    async fn pty_get(&self, id: &SandboxId, pty: &str) -> Result<PtyInfo> {
        let _ = (id, pty);
        Err(self.unsupported("terminals"))
    }

    async fn pty_resize(&self, id: &SandboxId, pty: &str, cols: u16, rows: u16) -> Result<()> {
        let _ = (id, pty, cols, rows);
        Err(self.unsupported("terminals"))
    }

    /// Kill everything the terminal started and forget it.
    async fn pty_kill(&self, id: &SandboxId, pty: &str) -> Result<()> {
        let _ = (id, pty);
        Err(self.unsupported("terminals"))
    }

    /// Attach to a terminal's byte stream, taking it over from any earlier attach. Output the
    /// program wrote while nobody was attached (its newest 64 KiB) comes first.
    async fn pty_attach(&self, id: &SandboxId, pty: &str) -> Result<PtyStream> {
        let _ = (id, pty);
        Err(self.unsupported("terminals"))
    }

    // ---- capabilities a backend may lack: the defaults say so with `Unsupported` ----

    /// Take a read-only snapshot of the sandbox's writable layer (its files, not its
    /// processes or memory) under `snapshot`. A sandbox created with
    /// `SandboxSpec::from_snapshot` starts from a writable copy of it.
    async fn snapshot(&self, id: &SandboxId, snapshot: &SnapshotId) -> Result<SnapshotInfo> {
        let _ = (id, snapshot);
        Err(self.unsupported("disk snapshots"))
    }

    /// Delete a snapshot. Sandboxes started from it are not affected. Unknown is `NotFound`.
    async fn delete_snapshot(&self, snapshot: &SnapshotId) -> Result<()> {
        let _ = snapshot;
        Err(self.unsupported("disk snapshots"))
    }

    /// Every snapshot the backend holds (to clean up after a crash).
    async fn list_snapshots(&self) -> Result<Vec<SnapshotId>> {
        Ok(Vec::new())
    }

    /// What differs between two snapshots, as paths inside the sandbox (absolute, sorted):
    /// files, symlinks and directories added, modified (contents, mode or owner) or deleted
    /// going from `from` to `to`. A directory whose only change is its entries is not listed.
    /// Computed from the snapshots' metadata, never by reading file contents.
    async fn snapshot_diff(&self, from: &SnapshotId, to: &SnapshotId) -> Result<Vec<PathChange>> {
        let _ = (from, to);
        Err(self.unsupported("snapshot diffs"))
    }

    /// The contents of the regular file at `path` (absolute, inside the sandbox) as it was in
    /// `snapshot`, image layers included. `Ok(None)` when it did not exist or was not a
    /// regular file then; `WrongFileType` above `max_bytes`. Never follows a symlink.
    async fn snapshot_read_file(
        &self,
        snapshot: &SnapshotId,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>> {
        let _ = (snapshot, path, max_bytes);
        Err(self.unsupported("reading snapshot files"))
    }

    /// Change the memory limit of a running sandbox.
    async fn set_memory(&self, id: &SandboxId, memory_mb: u32) -> Result<()> {
        let _ = (id, memory_mb);
        Err(self.unsupported("changing memory live"))
    }

    /// Add environment variables to a running sandbox: the running interpreter and every
    /// later process see them. They are kept in memory only, never on the sandbox's disk.
    async fn push_env(&self, id: &SandboxId, env: BTreeMap<String, String>) -> Result<()> {
        let _ = (id, env);
        Err(self.unsupported("staging environment variables"))
    }

    // ---- volumes (docs/volumes.md): persistent trees with a quota, checkpoints, mounts ----

    /// Create an empty volume whose contents may not exceed `quota_bytes`. An existing one is
    /// `AlreadyExists`.
    async fn volume_create(&self, vol: &VolumeId, quota_bytes: u64) -> Result<()> {
        let _ = (vol, quota_bytes);
        Err(self.unsupported("volumes"))
    }

    /// Delete a volume and all its checkpoints. The caller makes sure nothing mounts it.
    /// Unknown is `NotFound`.
    async fn volume_delete(&self, vol: &VolumeId) -> Result<()> {
        let _ = vol;
        Err(self.unsupported("volumes"))
    }

    /// Change the quota (the caller refuses one below the used size).
    async fn volume_set_quota(&self, vol: &VolumeId, quota_bytes: u64) -> Result<()> {
        let _ = (vol, quota_bytes);
        Err(self.unsupported("volumes"))
    }

    /// Bytes the volume's quota counts right now.
    async fn volume_usage(&self, vol: &VolumeId) -> Result<u64> {
        let _ = vol;
        Err(self.unsupported("volumes"))
    }

    /// Every volume held with its checkpoints (to clean up after a crash).
    async fn volume_list(&self) -> Result<Vec<(VolumeId, Vec<CheckpointId>)>> {
        Ok(Vec::new())
    }

    /// Take a read-only checkpoint of the volume; returns the bytes it references.
    async fn volume_checkpoint(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<u64> {
        let _ = (vol, ckpt);
        Err(self.unsupported("volume checkpoints"))
    }

    async fn volume_delete_checkpoint(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<()> {
        let _ = (vol, ckpt);
        Err(self.unsupported("volume checkpoints"))
    }

    /// Write `path` (a [`volume_path`]) from a stream: into a temporary file, renamed into
    /// place at the end, so a failed or over-quota upload leaves the old file (or none).
    /// An existing file without `overwrite` is `AlreadyExists`; past the quota `QuotaExceeded`.
    async fn volume_write(
        &self,
        vol: &VolumeId,
        path: &str,
        data: ByteReader,
        overwrite: bool,
    ) -> Result<VolumeFileInfo> {
        let _ = (vol, path, data, overwrite);
        Err(self.unsupported("volumes"))
    }

    /// Open a regular file of the volume for streaming.
    async fn volume_read(
        &self,
        vol: &VolumeId,
        path: &str,
    ) -> Result<(VolumeFileInfo, ByteReader)> {
        let _ = (vol, path);
        Err(self.unsupported("volumes"))
    }

    /// Regular files whose path starts with `prefix`, in path order, at most `limit`; with
    /// `recursive` false only those directly in the prefix's directory.
    async fn volume_files(
        &self,
        vol: &VolumeId,
        prefix: &str,
        recursive: bool,
        limit: usize,
    ) -> Result<Vec<VolumeFileInfo>> {
        let _ = (vol, prefix, recursive, limit);
        Err(self.unsupported("volumes"))
    }

    /// Delete a file (or an empty directory). Unknown is `FileNotFound`.
    async fn volume_remove(&self, vol: &VolumeId, path: &str) -> Result<()> {
        let _ = (vol, path);
        Err(self.unsupported("volumes"))
    }

    /// Mount a volume (or a checkpoint of it, read-only) into the running sandbox, creating
    /// the mount point. Files belong to the sandbox's root inside.
    async fn mount_volume(&self, id: &SandboxId, mount: &VolumeMount) -> Result<()> {
        let _ = (id, mount);
        Err(self.unsupported("volume mounts"))
    }

    /// Take a volume mount out of the running sandbox. Nothing mounted there is `FileNotFound`.
    async fn unmount_volume(&self, id: &SandboxId, mount_path: &str) -> Result<()> {
        let _ = (id, mount_path);
        Err(self.unsupported("volume mounts"))
    }

    /// Replace a sandbox's egress policy; new connections follow it at once (connections already
    /// open stay). Backends without their own network answer `Unsupported`.
    async fn set_egress(&self, id: &SandboxId, policy: &EgressPolicy) -> Result<()> {
        let _ = (id, policy);
        Err(self.unsupported("egress policies"))
    }

    /// Attempts the sandbox's egress policy refused so far (refused DNS names, refused
    /// connections).
    async fn egress_denials(&self, id: &SandboxId) -> Result<u64> {
        let _ = id;
        Err(self.unsupported("egress policies"))
    }

    fn unsupported(&self, what: &str) -> RuntimeError {
        RuntimeError::Unsupported {
            backend: self.name(),
            what: what.to_owned(),
        }
    }
}
