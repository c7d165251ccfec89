//! The fake runtime's volumes: file maps with a quota, checkpoints as copies, mounts as a list
//! per sandbox (no sandbox sees them; router tests read them back with `mounts_of`).

use crate::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use tokio::io::AsyncReadExt;

type Files = BTreeMap<String, Vec<u8>>;

struct FakeVolume {
    quota: u64,
    files: Files,
    checkpoints: BTreeMap<CheckpointId, Files>,
}

#[derive(Default)]
pub(crate) struct FakeVolumes {
    volumes: Mutex<HashMap<VolumeId, FakeVolume>>,
    mounts: Mutex<HashMap<SandboxId, Vec<VolumeMount>>>,
}

fn used(files: &Files) -> u64 {
    files.values().map(|v| v.len() as u64).sum()
}

fn info(path: &str, size: u64) -> VolumeFileInfo {
    VolumeFileInfo {
        path: path.to_owned(),
        size,
        modified: chrono::Utc::now().timestamp(),
    }
}

fn checked(path: &str) -> Result<String> {
    volume_path(path).map_err(|e| RuntimeError::InvalidPath(e.to_string()))
}

impl FakeVolumes {
    fn lock(&self) -> MutexGuard<'_, HashMap<VolumeId, FakeVolume>> {
        self.volumes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mounts(&self) -> MutexGuard<'_, HashMap<SandboxId, Vec<VolumeMount>>> {
        self.mounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<T>(&self, vol: &VolumeId, f: impl FnOnce(&mut FakeVolume) -> Result<T>) -> Result<T> {
        let mut map = self.lock();
        let v = map
            .get_mut(vol)
            .ok_or_else(|| RuntimeError::NotFound(vol.to_string()))?;
        f(v)
    }

    pub fn create(&self, vol: &VolumeId, quota: u64) -> Result<()> {
        let mut map = self.lock();
        if map.contains_key(vol) {
            return Err(RuntimeError::AlreadyExists(vol.to_string()));
        }
        map.insert(
            vol.clone(),
            FakeVolume {
                quota,
                files: Files::new(),
                checkpoints: BTreeMap::new(),
            },
        );
        Ok(())
    }

    pub fn delete(&self, vol: &VolumeId) -> Result<()> {
        self.lock()
            .remove(vol)
            .map(drop)
            .ok_or_else(|| RuntimeError::NotFound(vol.to_string()))
    }

    pub fn set_quota(&self, vol: &VolumeId, quota: u64) -> Result<()> {
        self.with(vol, |v| {
            v.quota = quota;
            Ok(())
        })
    }

    pub fn usage(&self, vol: &VolumeId) -> Result<u64> {
        self.with(vol, |v| Ok(used(&v.files)))
    }

    pub fn list(&self) -> Vec<(VolumeId, Vec<CheckpointId>)> {
        self.lock()
            .iter()
            .map(|(id, v)| (id.clone(), v.checkpoints.keys().cloned().collect()))
            .collect()
    }

    pub fn checkpoint(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<u64> {
        self.with(vol, |v| {
            if v.checkpoints.contains_key(ckpt) {
                return Err(RuntimeError::AlreadyExists(ckpt.to_string()));
            }
            v.checkpoints.insert(ckpt.clone(), v.files.clone());
            Ok(used(&v.files))
        })
    }

    pub fn delete_checkpoint(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<()> {
        self.with(vol, |v| {
            v.checkpoints
                .remove(ckpt)
                .map(drop)
                .ok_or_else(|| RuntimeError::NotFound(ckpt.to_string()))
        })
    }

    pub async fn write(
        &self,
        vol: &VolumeId,
        path: &str,
        mut data: ByteReader,
        overwrite: bool,
    ) -> Result<VolumeFileInfo> {
        let path = checked(path)?;
        self.with(vol, |v| {
            if !overwrite && v.files.contains_key(&path) {
                return Err(RuntimeError::AlreadyExists(path.clone()));
            }
            Ok(())
        })?;
        let mut buf = Vec::new();
        data.read_to_end(&mut buf)
            .await
            .map_err(|e| RuntimeError::io("reading upload", e))?;
        self.with(vol, |v| {
            let old = v.files.get(&path).map_or(0, |f| f.len() as u64);
            if used(&v.files) - old + buf.len() as u64 > v.quota {
                return Err(RuntimeError::QuotaExceeded(format!(
                    "the volume's quota is {} bytes",
                    v.quota
                )));
            }
            let i = info(&path, buf.len() as u64);
            v.files.insert(path, buf);
            Ok(i)
        })
    }

    pub fn read(&self, vol: &VolumeId, path: &str) -> Result<(VolumeFileInfo, ByteReader)> {
        let path = checked(path)?;
        self.with(vol, |v| {
            let bytes = v
                .files
                .get(&path)
                .cloned()
                .ok_or_else(|| RuntimeError::FileNotFound(path.clone()))?;
            let reader: ByteReader = Box::pin(std::io::Cursor::new(bytes.clone()));
            Ok((info(&path, bytes.len() as u64), reader))
        })
    }

    pub fn files(
        &self,
        vol: &VolumeId,
        prefix: &str,
        recursive: bool,
        limit: usize,
    ) -> Result<Vec<VolumeFileInfo>> {
        self.with(vol, |v| {
            let dir_len = prefix.rfind('/').map_or(0, |i| i + 1);
            Ok(v.files
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .filter(|(k, _)| recursive || !k[dir_len..].contains('/'))
                .take(limit)
                .map(|(k, f)| info(k, f.len() as u64))
                .collect())
        })
    }

    pub fn remove(&self, vol: &VolumeId, path: &str) -> Result<()> {
        let path = checked(path)?;
        self.with(vol, |v| {
            v.files
                .remove(&path)
                .map(drop)
                .ok_or(RuntimeError::FileNotFound(path))
        })
    }

    pub fn mount(&self, id: &SandboxId, m: &VolumeMount) -> Result<()> {
        self.with(&m.volume, |v| match &m.checkpoint {
            Some(c) if !v.checkpoints.contains_key(c) => Err(RuntimeError::NotFound(c.to_string())),
            _ => Ok(()),
        })?;
        let mut mounts = self.mounts();
        let list = mounts.entry(id.clone()).or_default();
        if list.iter().any(|x| x.mount_path == m.mount_path) {
            return Err(RuntimeError::AlreadyExists(m.mount_path.clone()));
        }
        list.push(m.clone());
        Ok(())
    }

    pub fn unmount(&self, id: &SandboxId, path: &str) -> Result<()> {
        let mut mounts = self.mounts();
        let list = mounts.entry(id.clone()).or_default();
        let before = list.len();
        list.retain(|x| x.mount_path != path);
        if list.len() == before {
            return Err(RuntimeError::FileNotFound(path.to_owned()));
        }
        Ok(())
    }

    pub fn mounts_of(&self, id: &SandboxId) -> Vec<VolumeMount> {
        self.mounts().get(id).cloned().unwrap_or_default()
    }

    /// A sandbox that ends takes its mounts with it.
    pub fn forget(&self, id: &SandboxId) {
        self.mounts().remove(id);
    }

    pub fn file(&self, vol: &VolumeId, path: &str) -> Option<Vec<u8>> {
        self.lock().get(vol)?.files.get(path).cloned()
    }
}
