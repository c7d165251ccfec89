//! Changes to a running sandbox and its layer snapshots: memory limit, environment pushes,
//! snapshots, and layers started from one.

use super::{agent_deadline, io_err, lock, Inner, Sandbox, MIN_MEMORY_MB};
use crate::cgroup::Limits;
use crate::layers::{Layer, ReadError, SnapshotMeta};
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
        let meta = SnapshotMeta {
            image: lock(&sb.record).spec.image.clone(),
        };
        let taken = self
            .layers
            .snapshot(sb.id.as_str(), snap.as_str(), &meta)
            .map_err(io_err("taking a layer snapshot"))?;
        Ok(SnapshotInfo {
            size_bytes: taken.size_bytes,
            copied: taken.copied,
        })
    }

    /// The rootfs a snapshot's sandbox ran on.
    fn snapshot_lower(&self, snap: &SnapshotId) -> Result<std::path::PathBuf> {
        let meta = self
            .layers
            .snapshot_meta(snap.as_str())
            .map_err(snapshot_err(snap, "reading a layer snapshot"))?;
        self.images.rootfs(&meta.image).ok_or_else(|| {
            RuntimeError::Unavailable(format!(
                "image {:?} of snapshot {snap} is no longer installed",
                meta.image
            ))
        })
    }

    pub fn snapshot_diff(&self, from: &SnapshotId, to: &SnapshotId) -> Result<Vec<PathChange>> {
        let (from_lower, to_lower) = (self.snapshot_lower(from)?, self.snapshot_lower(to)?);
        self.layers
            .snapshot_diff((from.as_str(), &from_lower), (to.as_str(), &to_lower))
            .map_err(io_err("comparing layer snapshots"))
    }

    pub fn snapshot_read_file(
        &self,
        snap: &SnapshotId,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>> {
        let components = snapshot_path(path)?;
        let lower = self.snapshot_lower(snap)?;
        self.layers
            .snapshot_read_file(snap.as_str(), &lower, &components, max_bytes)
            .map_err(|e| match e {
                ReadError::TooBig(size) => RuntimeError::WrongFileType(format!(
                    "{path} is {size} bytes in snapshot {snap}, more than the {max_bytes} \
                     bytes that may be read"
                )),
                ReadError::Io(e) => snapshot_err(snap, "reading a file of a layer snapshot")(e),
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

fn snapshot_err<'a>(
    snap: &'a SnapshotId,
    context: &'a str,
) -> impl FnOnce(std::io::Error) -> RuntimeError + 'a {
    move |e| match e.kind() {
        std::io::ErrorKind::NotFound => RuntimeError::NotFound(snap.to_string()),
        _ => RuntimeError::io(context, e),
    }
}

/// The components of an absolute path inside a snapshot; `..` is refused (a lookup in a
/// snapshot has no directory to climb back out of safely), `.` and empty ones are skipped.
fn snapshot_path(path: &str) -> Result<Vec<&str>> {
    let bad = |why: &str| Err(RuntimeError::InvalidPath(format!("{path:?}: {why}")));
    if !path.starts_with('/') {
        return bad("must be absolute");
    }
    if path.contains('\0') {
        return bad("contains NUL");
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return bad("must not contain \"..\""),
            c => out.push(c),
        }
    }
    Ok(out)
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
