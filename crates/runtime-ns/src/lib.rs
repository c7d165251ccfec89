//! Linux namespace sandbox backend (work in progress: the API below is the stable seam).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use instavm_runtime::*;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::broadcast;

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
}

impl NsConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NsConfig {
            data_dir: data_dir.into(),
            images_dir: None,
            agent_path: None,
        }
    }
}

pub struct NsRuntime {
    events: broadcast::Sender<RuntimeEvent>,
}

impl NsRuntime {
    /// Open the backend: check the host, recover sandboxes a previous run left alive and clean up
    /// what it left dead.
    pub async fn open(_config: NsConfig) -> Result<Arc<NsRuntime>> {
        Err(RuntimeError::Unavailable(
            "the namespace runtime is not built yet".into(),
        ))
    }
}

/// Destroy every sandbox that belongs to `config.data_dir` and release every mount and device
/// the backend holds for it, so the directory can be deleted (tests, uninstall).
pub async fn purge(_config: NsConfig) -> Result<()> {
    Ok(())
}

fn unavailable<T>() -> Result<T> {
    Err(RuntimeError::Unavailable("not built yet".into()))
}

#[async_trait]
impl Runtime for NsRuntime {
    fn name(&self) -> &'static str {
        "namespaces"
    }
    async fn create(&self, _spec: SandboxSpec) -> Result<SandboxInfo> {
        unavailable()
    }
    async fn exec(&self, _id: &SandboxId, _req: ExecRequest) -> Result<ExecOutput> {
        unavailable()
    }
    async fn write_file(
        &self,
        _id: &SandboxId,
        _path: &str,
        _data: ByteReader,
        _opts: WriteOptions,
    ) -> Result<FileInfo> {
        unavailable()
    }
    async fn read_file(&self, _id: &SandboxId, _path: &str) -> Result<(FileInfo, ByteReader)> {
        unavailable()
    }
    async fn stat(&self, _id: &SandboxId, _path: &str) -> Result<FileInfo> {
        unavailable()
    }
    async fn list_dir(&self, _id: &SandboxId, _path: &str, _r: bool) -> Result<Vec<FileInfo>> {
        unavailable()
    }
    async fn stats(&self, _id: &SandboxId) -> Result<SandboxStats> {
        unavailable()
    }
    async fn set_expiry(&self, _id: &SandboxId, _at: DateTime<Utc>) -> Result<()> {
        unavailable()
    }
    async fn destroy(&self, _id: &SandboxId) -> Result<()> {
        unavailable()
    }
    async fn get(&self, _id: &SandboxId) -> Result<SandboxInfo> {
        unavailable()
    }
    async fn list(&self) -> Result<Vec<SandboxInfo>> {
        unavailable()
    }
    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }
}
