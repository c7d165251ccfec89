//! What the runtime remembers about a sandbox across its own restarts: `<data>/sandboxes/<id>/
//! sandbox.json`, written before any resource is created (so a crash mid-create leaves a record
//! to clean up after) and rewritten atomically when it changes.

use chrono::{DateTime, Utc};
use instavm_runtime::{SandboxId, SandboxSpec};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: SandboxId,
    pub spec: SandboxSpec,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Host pid of the sandbox's init (the agent), once started.
    pub pid: Option<i32>,
    /// Its start time, to tell it from a later process that reused the pid.
    pub start_time: Option<u64>,
    /// The network slot, once allocated.
    pub slot: Option<u32>,
    /// The host uid/gid range (`ids.rs`), once allocated.
    #[serde(default)]
    pub ids: Option<u32>,
    /// Pre-started and waiting in the warm pool, not yet anybody's sandbox.
    #[serde(default)]
    pub pooled: bool,
    /// The CPU the agent and the interpreter are pinned to, if any.
    #[serde(default)]
    pub cpu: Option<u32>,
    /// The egress policy (`None`: the default, open one); re-applied when a restarted runtime
    /// recovers the sandbox, so there is no moment where a recovered VM is unrestricted.
    #[serde(default)]
    pub egress: Option<instavm_runtime::EgressPolicy>,
}

pub const FILE: &str = "sandbox.json";

pub fn save(dir: &Path, record: &Record) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    fs::write(&tmp, serde_json::to_vec_pretty(record)?)?;
    fs::rename(tmp, dir.join(FILE))
}

pub fn load(dir: &Path) -> Option<Record> {
    let bytes = fs::read(dir.join(FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Sandbox directories under `sandboxes`: (id, path).
pub fn scan(sandboxes: &Path) -> Vec<(SandboxId, PathBuf)> {
    fs::read_dir(sandboxes)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let id = SandboxId::parse(e.file_name().to_str()?)?;
            Some((id, e.path()))
        })
        .collect()
}
