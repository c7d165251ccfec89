//! Changes to a running sandbox and its layer snapshots: memory limit, environment pushes,
//! snapshots, and layers started from one.

use super::{agent_deadline, io_err, lock, Inner, Sandbox, MIN_MEMORY_MB};
use crate::cgroup::Limits;
use crate::layers::Layer;
use crate::record;
use instavm_protocol::{Request, Response};
use instavm_runtime::*;
use std::collections::BTreeMap;

impl Inner {
    /// A spec naming a snapshot must name one this runtime holds.
    pub fn check_snapshot(&self, spec: &SandboxSpec) -> Result<()> {
        match &spec.from_snapshot {
            Some(s) if !self.layers.has_snapshot(s.as_str()) => {
                Err(RuntimeError::InvalidSpec(format!("unknown snapshot {s}")))
            }
            _ => Ok(()),
        }
    }

    /// The writable layer of a new sandbox: empty, or a copy of the spec's snapshot.
    pub fn create_layer(&self, id: &str, spec: &SandboxSpec) -> std::io::Result<Layer> {
        let quota = spec.disk_mb << 20;
        match &spec.from_snapshot {
            Some(snap) => self.layers.create_from_snapshot(id, quota, snap.as_str()),
            None => self.layers.create(id, quota),
        }
    }

    /// Change the memory limit in place (cgroups) and remember it.
    pub fn set_memory(&self, sb: &Sandbox, memory_mb: u32) -> Result<()> {
        if memory_mb < MIN_MEMORY_MB {
            return Err(RuntimeError::InvalidSpec(format!(
                "memory_mb must be at least {MIN_MEMORY_MB}"
            )));
        }
        let mut rec = lock(&sb.record);
        let limits = Limits {
            memory_bytes: u64::from(memory_mb) << 20,
            pids: rec.spec.pids_max,
            vcpus: rec.spec.vcpu_count,
        };
        self.cgroups
            .set_limits(sb.id.as_str(), limits)
            .map_err(io_err("setting the memory limit"))?;
        rec.spec.memory_mb = memory_mb;
        record::save(&sb.dir, &rec).map_err(io_err("writing the sandbox record"))
    }

    pub fn snapshot(&self, sb: &Sandbox, snap: &SnapshotId) -> Result<SnapshotInfo> {
        let taken = self
            .layers
            .snapshot(sb.id.as_str(), snap.as_str())
            .map_err(io_err("taking a layer snapshot"))?;
        Ok(SnapshotInfo {
            size_bytes: taken.size_bytes,
            copied: taken.copied,
        })
    }

    pub fn delete_snapshot(&self, snap: &SnapshotId) -> Result<()> {
        self.layers
            .delete_snapshot(snap.as_str())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => RuntimeError::NotFound(snap.to_string()),
                _ => RuntimeError::io("deleting a layer snapshot", e),
            })
    }

    pub fn list_snapshots(&self) -> Vec<SnapshotId> {
        self.layers
            .list_snapshots()
            .iter()
            .filter_map(|s| SnapshotId::parse(s))
            .collect()
    }
}

/// Hand variables to the agent, which keeps them in memory and gives them to the running
/// interpreter and every later process. The sandbox record (on disk) is not touched.
pub async fn push_env(sb: &Sandbox, env: BTreeMap<String, String>) -> Result<()> {
    for (k, v) in &env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(RuntimeError::InvalidSpec(format!(
                "invalid environment variable {k:?}"
            )));
        }
    }
    // Configure also sets the deadline and the CPU: send the ones the sandbox has.
    let (deadline_unix_secs, cpu) = {
        let rec = lock(&sb.record);
        (agent_deadline(rec.expires_at), rec.cpu)
    };
    let request = Request::Configure {
        env: env.into_iter().collect(),
        deadline_unix_secs,
        cpu,
    };
    match sb.client.call(&request).await.map_err(|e| sb.explain(e))? {
        Response::Ok => Ok(()),
        Response::Error { message, .. } => Err(RuntimeError::Agent(message)),
        other => Err(RuntimeError::Agent(format!("unexpected answer {other:?}"))),
    }
}
