//! An in-memory backend for unit tests of crates above the runtime. It isolates nothing and runs
//! nothing: files live in a map, and executions are answered by a handler the test installs.

use crate::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::AsyncReadExt;

type ExecHandler = Arc<dyn Fn(&SandboxId, &ExecRequest) -> ExecOutput + Send + Sync>;

struct FakeSandbox {
    info: SandboxInfo,
    files: BTreeMap<String, Vec<u8>>,
    /// The environment executed code would see: the spec's, plus pushed variables.
    env: BTreeMap<String, String>,
    egress: EgressPolicy,
}

type Files = BTreeMap<String, Vec<u8>>;

/// See the module docs. `FakeRuntime::new()` answers every execution with exit code 0 and empty
/// output; use [`FakeRuntime::with_exec_handler`] to script answers.
pub struct FakeRuntime {
    sandboxes: Mutex<HashMap<SandboxId, FakeSandbox>>,
    handler: ExecHandler,
    events: broadcast::Sender<RuntimeEvent>,
    terminals: crate::fake_pty::FakeTerminals,
    snapshots: Mutex<HashMap<SnapshotId, Files>>,
    volumes: crate::fake_volumes::FakeVolumes,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::with_exec_handler(|_, _| ExecOutput {
            stdout: String::new(),
            stderr: String::new(),
            exit_code: 0,
            execution_time: 0.0,
            cpu_time: 0.0,
            timed_out: false,
        })
    }

    pub fn with_exec_handler(
        handler: impl Fn(&SandboxId, &ExecRequest) -> ExecOutput + Send + Sync + 'static,
    ) -> Self {
        FakeRuntime {
            sandboxes: Mutex::new(HashMap::new()),
            handler: Arc::new(handler),
            events: broadcast::channel(64).0,
            terminals: Default::default(),
            snapshots: Mutex::new(HashMap::new()),
            volumes: Default::default(),
        }
    }

    /// The environment a sandbox's code would see (tests of env pushes).
    pub fn env_of(&self, id: &SandboxId) -> Option<BTreeMap<String, String>> {
        self.lock().get(id).map(|sb| sb.env.clone())
    }

    /// The memory limit a sandbox has now (tests of live updates).
    pub fn memory_of(&self, id: &SandboxId) -> Option<u32> {
        self.lock().get(id).map(|sb| sb.info.memory_mb)
    }

    /// The volumes mounted in a sandbox now (tests of mounts).
    pub fn mounts_of(&self, id: &SandboxId) -> Vec<VolumeMount> {
        self.volumes.mounts_of(id)
    }

    /// A file of a volume (tests of uploads).
    pub fn volume_file(&self, vol: &VolumeId, path: &str) -> Option<Vec<u8>> {
        self.volumes.file(vol, path)
    }

    fn snapshot_lock(&self) -> MutexGuard<'_, HashMap<SnapshotId, Files>> {
        self.snapshots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SandboxId, FakeSandbox>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_sandbox<T>(
        &self,
        id: &SandboxId,
        f: impl FnOnce(&mut FakeSandbox) -> Result<T>,
    ) -> Result<T> {
        let mut map = self.lock();
        let sb = map
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        f(sb)
    }
}

fn normalize(path: &str) -> Result<String> {
    normalize_sandbox_path(path, "/app").map_err(|e| RuntimeError::InvalidPath(e.to_string()))
}

fn file_info(path: &str, size: u64, kind: FileKind) -> FileInfo {
    FileInfo {
        path: path.to_owned(),
        kind,
        size,
        mode: if kind == FileKind::Dir { 0o755 } else { 0o644 },
        modified: Utc::now().timestamp(),
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn create(&self, spec: SandboxSpec) -> Result<SandboxInfo> {
        let now = Utc::now();
        let lifetime = chrono::Duration::from_std(spec.lifetime)
            .map_err(|_| RuntimeError::InvalidSpec("lifetime too long".into()))?;
        let files = match &spec.from_snapshot {
            Some(snap) => self
                .snapshot_lock()
                .get(snap)
                .cloned()
                .ok_or_else(|| RuntimeError::InvalidSpec(format!("unknown snapshot {snap}")))?,
            None => Files::new(),
        };
        let env = spec.env.clone();
        let info = SandboxInfo {
            id: SandboxId::generate(),
            state: SandboxState::Running,
            image: spec.image,
            memory_mb: spec.memory_mb,
            vcpu_count: spec.vcpu_count,
            disk_mb: spec.disk_mb,
            created_at: now,
            expires_at: now + lifetime,
            ip_address: None,
        };
        self.lock().insert(
            info.id.clone(),
            FakeSandbox {
                info: info.clone(),
                files,
                env,
                egress: EgressPolicy::default(),
            },
        );
        Ok(info)
    }

    async fn exec(&self, id: &SandboxId, req: ExecRequest) -> Result<ExecOutput> {
        self.with_sandbox(id, |_| Ok(()))?;
        Ok((self.handler)(id, &req))
    }

    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        mut data: ByteReader,
        _opts: WriteOptions,
    ) -> Result<FileInfo> {
        let path = normalize(path)?;
        let mut buf = Vec::new();
        data.read_to_end(&mut buf)
            .await
            .map_err(|e| RuntimeError::io("reading upload", e))?;
        self.with_sandbox(id, |sb| {
            let info = file_info(&path, buf.len() as u64, FileKind::File);
            sb.files.insert(path, buf);
            Ok(info)
        })
    }

    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<(FileInfo, ByteReader)> {
        let path = normalize(path)?;
        self.with_sandbox(id, |sb| {
            let bytes = sb
                .files
                .get(&path)
                .cloned()
                .ok_or_else(|| RuntimeError::FileNotFound(path.clone()))?;
            let info = file_info(&path, bytes.len() as u64, FileKind::File);
            let reader: ByteReader = Box::pin(std::io::Cursor::new(bytes));
            Ok((info, reader))
        })
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileInfo> {
        let path = normalize(path)?;
        self.with_sandbox(id, |sb| match sb.files.get(&path) {
            Some(bytes) => Ok(file_info(&path, bytes.len() as u64, FileKind::File)),
            None if sb.files.keys().any(|k| k.starts_with(&format!("{path}/"))) => {
                Ok(file_info(&path, 0, FileKind::Dir))
            }
            None => Err(RuntimeError::FileNotFound(path.clone())),
        })
    }

    async fn list_dir(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<Vec<FileInfo>> {
        let path = normalize(path)?;
        let prefix = if path == "/" {
            "/".to_owned()
        } else {
            format!("{path}/")
        };
        self.with_sandbox(id, |sb| {
            Ok(sb
                .files
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .filter(|(k, _)| recursive || !k[prefix.len()..].contains('/'))
                .map(|(k, v)| file_info(k, v.len() as u64, FileKind::File))
                .collect())
        })
    }

    async fn stats(&self, id: &SandboxId) -> Result<SandboxStats> {
        self.with_sandbox(id, |sb| {
            Ok(SandboxStats {
                memory_limit_bytes: u64::from(sb.info.memory_mb) << 20,
                disk_bytes: sb.files.values().map(|v| v.len() as u64).sum(),
                disk_limit_bytes: sb.info.disk_mb << 20,
                ..SandboxStats::default()
            })
        })
    }

    async fn set_expiry(&self, id: &SandboxId, expires_at: DateTime<Utc>) -> Result<()> {
        self.with_sandbox(id, |sb| {
            sb.info.expires_at = expires_at;
            Ok(())
        })
    }

    async fn destroy(&self, id: &SandboxId) -> Result<()> {
        self.lock()
            .remove(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        self.terminals.forget(id);
        self.volumes.forget(id);
        let _ = self.events.send(RuntimeEvent::Exited {
            id: id.clone(),
            reason: ExitReason::Destroyed,
        });
        Ok(())
    }

    async fn get(&self, id: &SandboxId) -> Result<SandboxInfo> {
        self.with_sandbox(id, |sb| Ok(sb.info.clone()))
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>> {
        Ok(self.lock().values().map(|sb| sb.info.clone()).collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    async fn pty_open(&self, id: &SandboxId, req: PtyRequest) -> Result<PtyInfo> {
        self.with_sandbox(id, |_| Ok(()))?;
        self.terminals.open(id, req)
    }

    async fn pty_list(&self, id: &SandboxId) -> Result<Vec<PtyInfo>> {
        self.with_sandbox(id, |_| Ok(()))?;
        Ok(self.terminals.list(id))
    }

    async fn pty_get(&self, id: &SandboxId, pty: &str) -> Result<PtyInfo> {
        self.with_sandbox(id, |_| Ok(()))?;
        self.terminals.get(id, pty)
    }

    async fn pty_resize(&self, id: &SandboxId, pty: &str, cols: u16, rows: u16) -> Result<()> {
        self.with_sandbox(id, |_| Ok(()))?;
        self.terminals.resize(id, pty, cols, rows)
    }

    async fn pty_kill(&self, id: &SandboxId, pty: &str) -> Result<()> {
        self.with_sandbox(id, |_| Ok(()))?;
        self.terminals.kill(id, pty)
    }

    async fn pty_attach(&self, id: &SandboxId, pty: &str) -> Result<PtyStream> {
        self.with_sandbox(id, |_| Ok(()))?;
        self.terminals.attach(id, pty)
    }

    async fn snapshot(&self, id: &SandboxId, snapshot: &SnapshotId) -> Result<SnapshotInfo> {
        let files = self.with_sandbox(id, |sb| Ok(sb.files.clone()))?;
        let size_bytes = files.values().map(|v| v.len() as u64).sum();
        self.snapshot_lock().insert(snapshot.clone(), files);
        Ok(SnapshotInfo {
            size_bytes,
            copied: true,
        })
    }

    async fn delete_snapshot(&self, snapshot: &SnapshotId) -> Result<()> {
        self.snapshot_lock()
            .remove(snapshot)
            .map(drop)
            .ok_or_else(|| RuntimeError::NotFound(snapshot.to_string()))
    }

    async fn list_snapshots(&self) -> Result<Vec<SnapshotId>> {
        Ok(self.snapshot_lock().keys().cloned().collect())
    }

    /// The fake has no metadata: files count as modified when their contents differ.
    async fn snapshot_diff(&self, from: &SnapshotId, to: &SnapshotId) -> Result<Vec<PathChange>> {
        let snapshots = self.snapshot_lock();
        let get = |s: &SnapshotId| {
            snapshots
                .get(s)
                .ok_or_else(|| RuntimeError::NotFound(s.to_string()))
        };
        let (a, b) = (get(from)?, get(to)?);
        let mut changes: Vec<PathChange> = a
            .keys()
            .chain(b.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter_map(|path| {
                let kind = match (a.get(path), b.get(path)) {
                    (None, Some(_)) => ChangeKind::Added,
                    (Some(_), None) => ChangeKind::Deleted,
                    (Some(x), Some(y)) if x != y => ChangeKind::Modified,
                    _ => return None,
                };
                Some(PathChange {
                    path: path.clone(),
                    kind,
                })
            })
            .collect();
        changes.sort();
        Ok(changes)
    }

    async fn snapshot_read_file(
        &self,
        snapshot: &SnapshotId,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>> {
        let path = normalize(path)?;
        let snapshots = self.snapshot_lock();
        let files = snapshots
            .get(snapshot)
            .ok_or_else(|| RuntimeError::NotFound(snapshot.to_string()))?;
        match files.get(&path) {
            Some(data) if data.len() as u64 > max_bytes => Err(RuntimeError::WrongFileType(
                format!("{path} is {} bytes, more than {max_bytes}", data.len()),
            )),
            other => Ok(other.cloned()),
        }
    }

    async fn set_memory(&self, id: &SandboxId, memory_mb: u32) -> Result<()> {
        self.with_sandbox(id, |sb| {
            sb.info.memory_mb = memory_mb;
            Ok(())
        })
    }

    async fn push_env(&self, id: &SandboxId, env: BTreeMap<String, String>) -> Result<()> {
        self.with_sandbox(id, |sb| {
            sb.env.extend(env);
            Ok(())
        })
    }

    async fn volume_create(&self, vol: &VolumeId, quota_bytes: u64) -> Result<()> {
        self.volumes.create(vol, quota_bytes)
    }

    async fn volume_delete(&self, vol: &VolumeId) -> Result<()> {
        self.volumes.delete(vol)
    }

    async fn volume_set_quota(&self, vol: &VolumeId, quota_bytes: u64) -> Result<()> {
        self.volumes.set_quota(vol, quota_bytes)
    }

    async fn volume_usage(&self, vol: &VolumeId) -> Result<u64> {
        self.volumes.usage(vol)
    }

    async fn volume_list(&self) -> Result<Vec<(VolumeId, Vec<CheckpointId>)>> {
        Ok(self.volumes.list())
    }

    async fn volume_checkpoint(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<u64> {
        self.volumes.checkpoint(vol, ckpt)
    }

    async fn volume_delete_checkpoint(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<()> {
        self.volumes.delete_checkpoint(vol, ckpt)
    }

    async fn volume_write(
        &self,
        vol: &VolumeId,
        path: &str,
        data: ByteReader,
        overwrite: bool,
    ) -> Result<VolumeFileInfo> {
        self.volumes.write(vol, path, data, overwrite).await
    }

    async fn volume_read(
        &self,
        vol: &VolumeId,
        path: &str,
    ) -> Result<(VolumeFileInfo, ByteReader)> {
        self.volumes.read(vol, path)
    }

    async fn volume_files(
        &self,
        vol: &VolumeId,
        prefix: &str,
        recursive: bool,
        limit: usize,
    ) -> Result<Vec<VolumeFileInfo>> {
        self.volumes.files(vol, prefix, recursive, limit)
    }

    async fn volume_remove(&self, vol: &VolumeId, path: &str) -> Result<()> {
        self.volumes.remove(vol, path)
    }

    async fn mount_volume(&self, id: &SandboxId, mount: &VolumeMount) -> Result<()> {
        self.with_sandbox(id, |_| Ok(()))?;
        self.volumes.mount(id, mount)
    }

    async fn unmount_volume(&self, id: &SandboxId, mount_path: &str) -> Result<()> {
        self.with_sandbox(id, |_| Ok(()))?;
        self.volumes.unmount(id, mount_path)
    }

    async fn set_egress(&self, id: &SandboxId, policy: &EgressPolicy) -> Result<()> {
        self.with_sandbox(id, |sb| {
            sb.egress = policy.clone();
            Ok(())
        })
    }

    async fn egress_denials(&self, id: &SandboxId) -> Result<u64> {
        self.with_sandbox(id, |_| Ok(0))
    }
}

impl FakeRuntime {
    /// The egress policy last set on a sandbox (tests).
    pub fn egress_of(&self, id: &SandboxId) -> Option<EgressPolicy> {
        self.lock().get(id).map(|sb| sb.egress.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_round_trip_and_destroy_forgets() {
        let rt = FakeRuntime::new();
        let sb = rt.create(SandboxSpec::default()).await.unwrap();
        let data: ByteReader = Box::pin(std::io::Cursor::new(b"hello".to_vec()));
        rt.write_file(&sb.id, "d/f.txt", data, WriteOptions::default())
            .await
            .unwrap();
        let (info, mut r) = rt.read_file(&sb.id, "/app/d/f.txt").await.unwrap();
        assert_eq!(info.size, 5);
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello");
        rt.destroy(&sb.id).await.unwrap();
        assert!(matches!(
            rt.get(&sb.id).await,
            Err(RuntimeError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn snapshot_diffs_and_reads() {
        let rt = FakeRuntime::new();
        let sb = rt.create(SandboxSpec::default()).await.unwrap();
        let write = |path: &'static str, data: &'static [u8]| {
            let (rt, id) = (&rt, sb.id.clone());
            async move {
                let r: ByteReader = Box::pin(std::io::Cursor::new(data.to_vec()));
                rt.write_file(&id, path, r, WriteOptions::default())
                    .await
                    .unwrap();
            }
        };
        write("a", b"1").await;
        write("b", b"1").await;
        let (a, b) = (
            SnapshotId::parse("snap_a").unwrap(),
            SnapshotId::parse("snap_b").unwrap(),
        );
        rt.snapshot(&sb.id, &a).await.unwrap();
        write("a", b"2").await;
        write("c", b"3").await;
        rt.snapshot(&sb.id, &b).await.unwrap();
        let change = |path: &str, kind| PathChange {
            path: path.into(),
            kind,
        };
        assert_eq!(
            rt.snapshot_diff(&a, &b).await.unwrap(),
            [
                change("/app/a", ChangeKind::Modified),
                change("/app/c", ChangeKind::Added),
            ]
        );
        assert_eq!(
            rt.snapshot_diff(&b, &a).await.unwrap(),
            [
                change("/app/a", ChangeKind::Modified),
                change("/app/c", ChangeKind::Deleted),
            ]
        );
        assert_eq!(
            rt.snapshot_read_file(&a, "/app/a", 10).await.unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(rt.snapshot_read_file(&a, "/app/c", 10).await.unwrap(), None);
        assert!(matches!(
            rt.snapshot_read_file(&b, "/app/a", 0).await,
            Err(RuntimeError::WrongFileType(_))
        ));
    }
}
