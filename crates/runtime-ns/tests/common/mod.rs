//! Shared set-up for the runtime's root-only integration tests: a runtime on a fresh data
//! directory under `target/`, the base image shared through `target/instavm-images`.

#![allow(dead_code)]

use instavm_runtime::*;
use instavm_runtime_ns::{NsConfig, NsRuntime};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

pub fn images_dir() -> PathBuf {
    std::env::var("INSTAVM_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target_dir().join("instavm-images"))
}

/// These tests need root (namespaces, mounts, cgroups). Anywhere else they say so and pass.
pub fn is_root() -> bool {
    // SAFETY-free: reading our own effective uid from /proc.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        eprintln!("SKIPPED: namespace runtime tests need root");
    }
    root
}

pub struct Env {
    pub rt: Arc<NsRuntime>,
    pub config: NsConfig,
    pub data: tempfile::TempDir,
    purged: bool,
}

impl Env {
    /// A runtime without a warm pool, so every create takes the cold path being tested.
    pub async fn new() -> Env {
        Self::with_pool(0).await
    }

    pub async fn with_pool(warm_pool: usize) -> Env {
        let root = target_dir().join("test-data");
        std::fs::create_dir_all(&root).unwrap();
        let data = tempfile::Builder::new()
            .prefix("rt-")
            .tempdir_in(&root)
            .unwrap();
        let mut config = NsConfig::new(data.path());
        config.images_dir = Some(images_dir());
        config.warm_pool = warm_pool;
        let rt = NsRuntime::open(config.clone()).await.expect("open runtime");
        rt.prepare().await.expect("base image");
        Env {
            rt,
            config,
            data,
            purged: false,
        }
    }

    /// Re-open the runtime on the same data directory (as a restarted server would).
    pub async fn reopen(&self) -> Arc<NsRuntime> {
        NsRuntime::open(self.config.clone())
            .await
            .expect("reopen runtime")
    }

    pub async fn sandbox(&self) -> SandboxInfo {
        self.sandbox_with(SandboxSpec::default()).await
    }

    pub async fn sandbox_with(&self, spec: SandboxSpec) -> SandboxInfo {
        self.rt.create(spec).await.expect("create sandbox")
    }

    pub async fn py(&self, id: &SandboxId, code: &str) -> ExecOutput {
        exec(&self.rt, id, Language::Python, code, 30).await
    }

    pub async fn sh(&self, id: &SandboxId, code: &str) -> ExecOutput {
        exec(&self.rt, id, Language::Bash, code, 30).await
    }

    /// Destroy everything and release the data directory (also done on drop, for tests that
    /// fail half-way; this form reports errors).
    pub async fn finish(mut self) {
        self.purged = true;
        instavm_runtime_ns::purge(self.config.clone())
            .await
            .expect("purge");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.purged {
            return;
        }
        let config = self.config.clone();
        // Drop cannot await: purge on a runtime of its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new().map(|rt| rt.block_on(instavm_runtime_ns::purge(config)))
        })
        .join();
    }
}

pub async fn exec(
    rt: &NsRuntime,
    id: &SandboxId,
    language: Language,
    code: &str,
    secs: u64,
) -> ExecOutput {
    rt.exec(
        id,
        ExecRequest {
            language,
            code: code.into(),
            timeout: Some(Duration::from_secs(secs)),
        },
    )
    .await
    .expect("exec")
}

pub fn reader(bytes: Vec<u8>) -> ByteReader {
    Box::pin(std::io::Cursor::new(bytes))
}

pub async fn read_all(mut r: ByteReader) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut v = Vec::new();
    r.read_to_end(&mut v).await?;
    Ok(v)
}

/// Every host-side trace a sandbox can leave.
pub fn leftovers(env: &Env, id: &SandboxId) -> Vec<String> {
    let mut found = Vec::new();
    let id = id.as_str();
    for ctrl in ["memory", "pids", "cpu", "cpuacct"] {
        let base = Path::new("/sys/fs/cgroup").join(ctrl).join("instavm");
        for inst in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            if inst.path().join(id).exists() {
                found.push(format!("cgroup {}", inst.path().join(id).display()));
            }
        }
    }
    if Path::new(&format!("/sys/class/net/ivm{id}")).exists() {
        found.push(format!("veth ivm{id}"));
    }
    for p in [
        env.data.path().join("layers").join(id),
        env.data.path().join("sandboxes").join(id),
    ] {
        if p.exists() {
            found.push(format!("path {}", p.display()));
        }
    }
    // Address slots and uid ranges.
    for pool in ["/run/instavm/ipam", "/run/instavm/ids"] {
        for slot in std::fs::read_dir(pool).into_iter().flatten().flatten() {
            if std::fs::read_to_string(slot.path())
                .unwrap_or_default()
                .contains(id)
            {
                found.push(format!("pool slot {}", slot.path().display()));
            }
        }
    }
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cg) = std::fs::read_to_string(p.path().join("cgroup")) {
            if cg.contains(&format!("/{id}")) {
                found.push(format!("process {}", p.file_name().to_string_lossy()));
            }
        }
    }
    found
}
