//! The private writable layer of each sandbox (the overlayfs upper and work directories), with a
//! disk quota.
//!
//! Preferred: a btrfs file system in a sparse image file under the data directory, loop-mounted
//! at `<data>/layers`, one subvolume per sandbox with a qgroup limit. Real disk, an enforced
//! quota, and later cheap snapshots. Fallback (no loop devices or no mkfs.btrfs): one tmpfs per
//! sandbox with `size=` as the quota, which is memory-backed and charged to the sandbox's memory.

mod diff;
mod overlay;
mod send_stream;
mod snapshot;

pub use snapshot::{ReadError, SnapshotMeta};

use crate::sys;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Upper bound for the sparse btrfs image (it never takes more than the data written).
const MAX_IMAGE_BYTES: u64 = 256 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Btrfs,
    Tmpfs,
}

pub struct Layers {
    dir: PathBuf,
    backend: Backend,
}

/// One sandbox's layer: where overlayfs gets its upper and work directories.
pub struct Layer {
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Layers {
    /// Mount (or create and mount) the layer store under `data_dir`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join("layers");
        fs::create_dir_all(&dir)?;
        if sys::is_mount_point(&dir) && is_btrfs(&dir) {
            return Ok(Layers {
                dir,
                backend: Backend::Btrfs,
            });
        }
        match mount_btrfs_image(data_dir, &dir) {
            Ok(()) => Ok(Layers {
                dir,
                backend: Backend::Btrfs,
            }),
            Err(e) => {
                tracing::warn!(
                    "btrfs layer store unavailable ({e}); falling back to tmpfs layers, whose \
                     disk quota is memory-backed"
                );
                Ok(Layers {
                    dir,
                    backend: Backend::Tmpfs,
                })
            }
        }
    }

    /// Where the store is mounted (volumes live beside the layers).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Size of the btrfs store (the sparse image); `None` for tmpfs layers, which take memory.
    pub fn capacity_bytes(&self) -> Option<u64> {
        let image = self.dir.parent()?.join("layers.img");
        match self.backend {
            Backend::Btrfs => fs::metadata(image).ok().map(|m| m.len()),
            Backend::Tmpfs => None,
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn create(&self, id: &str, quota_bytes: u64) -> io::Result<Layer> {
        let root = self.path(id);
        match self.backend {
            Backend::Btrfs => sys::btrfs_create_subvolume(&self.dir, id, quota_bytes)?,
            Backend::Tmpfs => {
                fs::create_dir_all(&root)?;
                sys::mount(
                    "tmpfs",
                    &root,
                    "tmpfs",
                    libc::MS_NOSUID | libc::MS_NODEV,
                    &format!("size={quota_bytes},mode=0700"),
                )?;
            }
        }
        let layer = Layer {
            upper: root.join("upper"),
            work: root.join("work"),
        };
        fs::create_dir_all(&layer.upper)?;
        fs::create_dir_all(&layer.work)?;
        Ok(layer)
    }

    /// Bytes the sandbox's layer uses (what its quota counts).
    pub fn usage(&self, id: &str) -> u64 {
        let root = self.path(id);
        match self.backend {
            Backend::Btrfs => sys::btrfs_usage(&root).unwrap_or(0),
            Backend::Tmpfs => sys::used_bytes(&root).unwrap_or(0),
        }
    }

    /// Change the quota of a sandbox's layer.
    pub fn set_quota(&self, id: &str, quota_bytes: u64) -> io::Result<()> {
        let root = self.path(id);
        match self.backend {
            Backend::Btrfs => sys::btrfs_set_quota(&root, quota_bytes),
            Backend::Tmpfs => sys::mount(
                "tmpfs",
                &root,
                "tmpfs",
                libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
                &format!("size={quota_bytes}"),
            ),
        }
    }

    pub fn remove(&self, id: &str) -> io::Result<()> {
        let root = self.path(id);
        if !root.exists() {
            return Ok(());
        }
        match self.backend {
            // A plain directory (a crash before the subvolume existed) is not a subvolume.
            Backend::Btrfs => {
                sys::btrfs_delete_subvolume(&self.dir, id).or_else(|_| fs::remove_dir_all(&root))
            }
            Backend::Tmpfs => {
                let _ = sys::umount_detach(&root);
                fs::remove_dir_all(&root)
            }
        }
    }

    /// Sandbox ids that have a layer.
    pub fn list(&self) -> Vec<String> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| instavm_runtime::SandboxId::parse(n).is_some())
            .collect()
    }

    /// Unmount the store (the loop device detaches itself).
    pub fn unmount(&self) {
        while self.backend == Backend::Btrfs && sys::is_mount_point(&self.dir) {
            if sys::umount_detach(&self.dir).is_err() {
                break;
            }
        }
    }
}

fn is_btrfs(dir: &Path) -> bool {
    const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
    sys::fs_type(dir).ok() == Some(BTRFS_SUPER_MAGIC)
}

fn mount_btrfs_image(data_dir: &Path, dir: &Path) -> io::Result<()> {
    if !Path::new("/dev/loop-control").exists() {
        return Err(io::Error::other("no /dev/loop-control"));
    }
    let image = data_dir.join("layers.img");
    if !image.exists() {
        let size = (sys::free_bytes(data_dir)? / 2).min(MAX_IMAGE_BYTES);
        if size < (1 << 30) {
            return Err(io::Error::other("less than 2 GiB free for the layer store"));
        }
        let tmp = data_dir.join("layers.img.tmp");
        let f = fs::File::create(&tmp)?;
        f.set_len(size)?;
        drop(f);
        let out = Command::new("mkfs.btrfs")
            .args(["-q", "-f"])
            .arg(&tmp)
            .output()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("mkfs.btrfs (install btrfs-progs): {e}"))
            })?;
        if !out.status.success() {
            let _ = fs::remove_file(&tmp);
            return Err(io::Error::other(format!(
                "mkfs.btrfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        fs::rename(&tmp, &image)?;
        tracing::info!(
            "created the btrfs layer store {} ({} GiB sparse)",
            image.display(),
            size >> 30
        );
    }
    let (dev, _hold) = sys::attach_loop(&image)?;
    sys::mount(&dev, dir, "btrfs", libc::MS_NOATIME, "")?;
    sys::btrfs_enable_quota(dir)?;
    Ok(())
}
