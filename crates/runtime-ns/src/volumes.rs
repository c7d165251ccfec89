//! Volumes: persistent file trees with a quota, read-only checkpoints of them, and mounts into
//! running sandboxes.
//!
//! Layout, under the layer store (`<data>/layers`):
//! `volumes/<vol>/live` (the volume) and `volumes/<vol>/checkpoints/<ckpt>`. On btrfs the live
//! tree is a subvolume with a qgroup limit (writes past it fail with `EDQUOT`) and a checkpoint
//! is a read-only snapshot of it (O(1), copy on write). On the tmpfs fallback the live tree is
//! a tmpfs with `size=` (memory-backed, lost at a host reboot; writes past it fail with
//! `ENOSPC`) and a checkpoint a copy on the host's disk (`cp -a`, time in proportion to the
//! data), made read-only where it is mounted.
//!
//! Mounts: a detached idmapped copy of the tree (files on disk belong to id 0, shown as the
//! sandbox's root) is attached inside the sandbox's mount namespace by a helper thread; the
//! namespace belongs to the host's user namespace, so the sandbox cannot unmount or remount it.

mod files;

use crate::layers::Backend;
use crate::sys;
use instavm_runtime::{CheckpointId, Result, RuntimeError, VolumeId};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Volumes {
    dir: PathBuf,
    backend: Backend,
}

fn io_err(what: &str, vol: &VolumeId) -> impl FnOnce(io::Error) -> RuntimeError {
    let context = format!("{what} of volume {vol}");
    move |e| match e.raw_os_error() {
        Some(libc::EDQUOT) | Some(libc::ENOSPC) => RuntimeError::QuotaExceeded(context),
        _ => RuntimeError::io(context, e),
    }
}

impl Volumes {
    pub fn open(layers_dir: &Path, backend: Backend) -> io::Result<Self> {
        let dir = layers_dir.join("volumes");
        fs::create_dir_all(&dir)?;
        Ok(Volumes { dir, backend })
    }

    fn root(&self, vol: &VolumeId) -> PathBuf {
        self.dir.join(vol.as_str())
    }

    /// The live tree of a volume, where it is written and mounted `rw`.
    pub fn live(&self, vol: &VolumeId) -> Result<PathBuf> {
        let p = self.root(vol).join("live");
        if !p.is_dir() {
            return Err(RuntimeError::NotFound(vol.to_string()));
        }
        Ok(p)
    }

    pub fn checkpoint_path(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<PathBuf> {
        let p = self.root(vol).join("checkpoints").join(ckpt.as_str());
        if !p.is_dir() {
            return Err(RuntimeError::NotFound(ckpt.to_string()));
        }
        Ok(p)
    }

    pub fn create(&self, vol: &VolumeId, quota: u64) -> Result<()> {
        let root = self.root(vol);
        match fs::create_dir(&root) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists(vol.to_string()))
            }
            other => other.map_err(io_err("creating the directory", vol))?,
        }
        fs::create_dir(root.join("checkpoints")).map_err(io_err("creating the directory", vol))?;
        let made = match self.backend {
            Backend::Btrfs => sys::btrfs_create_subvolume(&root, "live", quota),
            Backend::Tmpfs => fs::create_dir(root.join("live")).and_then(|()| {
                sys::mount(
                    "tmpfs",
                    &root.join("live"),
                    "tmpfs",
                    libc::MS_NOSUID | libc::MS_NODEV,
                    &format!("size={quota},mode=0755"),
                )
            }),
        };
        if let Err(e) = made {
            let _ = self.delete(vol);
            return Err(io_err("creating", vol)(e));
        }
        Ok(())
    }

    pub fn delete(&self, vol: &VolumeId) -> Result<()> {
        let root = self.root(vol);
        if !root.exists() {
            return Err(RuntimeError::NotFound(vol.to_string()));
        }
        let ckpts = root.join("checkpoints");
        for name in names(&ckpts) {
            self.remove_tree(&ckpts, &name)
                .map_err(io_err("deleting a checkpoint", vol))?;
        }
        if root.join("live").exists() {
            self.remove_tree(&root, "live")
                .map_err(io_err("deleting", vol))?;
        }
        fs::remove_dir_all(&root).map_err(io_err("deleting", vol))
    }

    /// Remove `parent/name`: a subvolume (or a plain directory a crash left), or a tmpfs.
    fn remove_tree(&self, parent: &Path, name: &str) -> io::Result<()> {
        let path = parent.join(name);
        match self.backend {
            Backend::Btrfs => {
                sys::btrfs_delete_subvolume(parent, name).or_else(|_| fs::remove_dir_all(&path))
            }
            Backend::Tmpfs => {
                while sys::is_mount_point(&path) {
                    sys::umount_detach(&path)?;
                }
                fs::remove_dir_all(&path)
            }
        }
    }

    pub fn set_quota(&self, vol: &VolumeId, quota: u64) -> Result<()> {
        let live = self.live(vol)?;
        match self.backend {
            Backend::Btrfs => sys::btrfs_set_quota(&live, quota),
            Backend::Tmpfs => sys::mount(
                "tmpfs",
                &live,
                "tmpfs",
                libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
                &format!("size={quota}"),
            ),
        }
        .map_err(io_err("changing the quota", vol))
    }

    /// Bytes the quota counts. On btrfs the qgroup figures are brought up to date first (they
    /// move at transaction commits).
    pub fn usage(&self, vol: &VolumeId) -> Result<u64> {
        let live = self.live(vol)?;
        match self.backend {
            Backend::Btrfs => {
                sys::sync_fs(&live).map_err(io_err("syncing", vol))?;
                sys::btrfs_usage(&live)
            }
            Backend::Tmpfs => sys::used_bytes(&live),
        }
        .map_err(io_err("reading the usage", vol))
    }

    pub fn checkpoint(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<u64> {
        let live = self.live(vol)?;
        let dir = self.root(vol).join("checkpoints");
        if dir.join(ckpt.as_str()).exists() {
            return Err(RuntimeError::AlreadyExists(ckpt.to_string()));
        }
        match self.backend {
            // The snapshot commits the transaction, which brings the qgroup figures up to date.
            Backend::Btrfs => sys::btrfs_snapshot(&live, &dir, ckpt.as_str(), true)
                .and_then(|()| sys::btrfs_usage(&live)),
            Backend::Tmpfs => {
                let tmp = dir.join(format!("{ckpt}.tmp"));
                let _ = fs::remove_dir_all(&tmp);
                copy_tree(&live, &tmp)
                    .and_then(|()| fs::rename(&tmp, dir.join(ckpt.as_str())))
                    .and_then(|()| sys::used_bytes(&live))
            }
        }
        .map_err(io_err("checkpointing", vol))
    }

    pub fn delete_checkpoint(&self, vol: &VolumeId, ckpt: &CheckpointId) -> Result<()> {
        self.checkpoint_path(vol, ckpt)?;
        self.remove_tree(&self.root(vol).join("checkpoints"), ckpt.as_str())
            .map_err(io_err("deleting a checkpoint", vol))
    }

    /// Every volume with its checkpoints (half-made copies excluded).
    pub fn list(&self) -> Vec<(VolumeId, Vec<CheckpointId>)> {
        names(&self.dir)
            .into_iter()
            .filter_map(|n| VolumeId::parse(&n))
            .map(|v| {
                let ckpts = names(&self.root(&v).join("checkpoints"))
                    .into_iter()
                    .filter_map(|c| CheckpointId::parse(&c))
                    .collect();
                (v, ckpts)
            })
            .collect()
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

/// `cp -a`: owners, modes, links and xattrs kept (the tmpfs fallback's checkpoints).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let out = Command::new("cp").arg("-a").arg(from).arg(to).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "cp -a: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Stream an upload into a temporary file of the volume, then put it in place.
pub async fn write(
    inner: std::sync::Arc<crate::sandbox::Inner>,
    vol: &VolumeId,
    path: &str,
    mut data: instavm_runtime::ByteReader,
    overwrite: bool,
) -> Result<instavm_runtime::VolumeFileInfo> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let checked =
        instavm_runtime::volume_path(path).map_err(|e| RuntimeError::InvalidPath(e.to_string()))?;
    let (i, v, p) = (inner.clone(), vol.clone(), checked.clone());
    let up = crate::blocking(move || i.volumes.begin_upload(&v, &p, overwrite)).await?;
    let mut out = tokio::fs::File::from_std(
        up.file
            .try_clone()
            .map_err(|e| RuntimeError::io("upload", e))?,
    );
    let copied = async {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = data.read(&mut buf).await.map_err(|e| (false, e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).await.map_err(|e| (true, e))?;
        }
        out.flush().await.map_err(|e| (true, e))
    }
    .await;
    drop(out);
    if let Err((ours, e)) = copied {
        // Dropping the upload removes its temporary file.
        drop(up);
        return Err(match e.raw_os_error() {
            Some(libc::EDQUOT) | Some(libc::ENOSPC) => {
                RuntimeError::QuotaExceeded(format!("writing {checked}"))
            }
            _ if !ours => RuntimeError::InvalidRequest(format!("the upload broke off: {e}")),
            _ => RuntimeError::io(format!("writing {checked}"), e),
        });
    }
    crate::blocking(move || inner.volumes.finish_upload(up, overwrite)).await
}
