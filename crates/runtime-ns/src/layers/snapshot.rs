//! Snapshots of writable layers, kept in `<layers>/snapshots/<snapshot id>`.
//!
//! On btrfs a snapshot is a read-only subvolume snapshot of the sandbox's layer (O(1), copy on
//! write), and a sandbox booted from it gets a writable snapshot of that. On the tmpfs fallback
//! the layer's files are copied (`cp -a`, keeping owners, modes, xattrs and overlay whiteouts)
//! to the host disk and back: it costs time in proportion to the data.

use super::diff::{self, Side};
use super::overlay;
pub use super::overlay::ReadError;
use super::{Backend, Layer, Layers};
use crate::sys;
use instavm_runtime::PathChange;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a snapshot needs to be read as the sandbox saw it, in `<snapshots>/<snap>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The image the sandbox ran on (its overlay's lower layer).
    pub image: String,
}

/// What taking a snapshot cost.
pub struct Taken {
    pub size_bytes: u64,
    pub copied: bool,
}

impl Layers {
    fn snapshots_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    pub fn has_snapshot(&self, snap: &str) -> bool {
        self.snapshots_dir().join(snap).exists()
    }

    fn meta_path(&self, snap: &str) -> PathBuf {
        self.snapshots_dir().join(format!("{snap}.json"))
    }

    /// The snapshot's metadata; snapshots taken before it was recorded ran on the base image.
    pub fn snapshot_meta(&self, snap: &str) -> io::Result<SnapshotMeta> {
        self.snapshot_upper(snap)?;
        Ok(fs::read(self.meta_path(snap))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| SnapshotMeta {
                image: crate::image::BASE.into(),
            }))
    }

    /// The upper directory of a snapshot (`NotFound` for an unknown one).
    fn snapshot_upper(&self, snap: &str) -> io::Result<PathBuf> {
        let upper = self.snapshots_dir().join(snap).join("upper");
        if !upper.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no snapshot {snap}"),
            ));
        }
        Ok(upper)
    }

    /// What changed between two snapshots, each over its image's rootfs (`*_lower`).
    pub fn snapshot_diff(
        &self,
        (from, from_lower): (&str, &Path),
        (to, to_lower): (&str, &Path),
    ) -> io::Result<Vec<PathChange>> {
        let side = |snap: &str, lower: &Path| -> io::Result<Side> {
            Ok(Side {
                upper: self.snapshot_upper(snap)?,
                lower: lower.to_path_buf(),
            })
        };
        let (from_side, to_side) = (side(from, from_lower)?, side(to, to_lower)?);
        match self.backend {
            Backend::Btrfs => {
                diff::diff_btrfs(&self.snapshots_dir(), (from, &from_side), (to, &to_side))
            }
            // Copies: inode numbers and ctimes differ from one to the next.
            Backend::Tmpfs => diff::diff_walk(&from_side, &to_side, false),
        }
    }

    /// The regular file at `components` as the sandbox saw it in `snap` over `lower`.
    pub fn snapshot_read_file(
        &self,
        snap: &str,
        lower: &Path,
        components: &[&str],
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        let upper = self.snapshot_upper(snap).map_err(ReadError::Io)?;
        overlay::read_file(&[&upper, lower], components, max_bytes)
    }

    /// Snapshot the layer of sandbox `id` as `snap`.
    pub fn snapshot(&self, id: &str, snap: &str, meta: &SnapshotMeta) -> io::Result<Taken> {
        let dir = self.snapshots_dir();
        fs::create_dir_all(&dir)?;
        if dir.join(snap).exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("snapshot {snap} exists"),
            ));
        }
        // The metadata goes first: a snapshot never exists without it (a stray file left by a
        // failed snapshot is overwritten by the next one of that name).
        let tmp_meta = dir.join(format!("{snap}.json.tmp"));
        fs::write(&tmp_meta, serde_json::to_vec(meta)?)?;
        fs::rename(&tmp_meta, self.meta_path(snap))?;
        match self.backend {
            Backend::Btrfs => {
                sys::btrfs_snapshot(&self.path(id), &dir, snap, true)?;
                // Read after: the snapshot commits the transaction that brings the qgroup
                // figures up to date.
                Ok(Taken {
                    size_bytes: self.usage(id),
                    copied: false,
                })
            }
            Backend::Tmpfs => {
                // Copy beside it, then rename: a crash never leaves a half-copied snapshot
                // under its real name.
                let size_bytes = self.usage(id);
                let tmp = dir.join(format!("{snap}.tmp"));
                let _ = fs::remove_dir_all(&tmp);
                fs::create_dir_all(&tmp)?;
                copy_tree(&self.path(id).join("upper"), &tmp.join("upper"))?;
                fs::rename(&tmp, dir.join(snap))?;
                Ok(Taken {
                    size_bytes,
                    copied: true,
                })
            }
        }
    }

    /// A new layer for sandbox `id` holding the files of snapshot `snap`.
    pub fn create_from_snapshot(
        &self,
        id: &str,
        quota_bytes: u64,
        snap: &str,
    ) -> io::Result<Layer> {
        let source = self.snapshots_dir().join(snap);
        if !source.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no snapshot {snap}"),
            ));
        }
        match self.backend {
            Backend::Btrfs => {
                sys::btrfs_snapshot(&source, &self.dir, id, false)?;
                let root = self.path(id);
                sys::btrfs_set_quota(&root, quota_bytes)?;
                let layer = Layer {
                    upper: root.join("upper"),
                    work: root.join("work"),
                };
                // overlayfs wants its own, empty work directory.
                let _ = fs::remove_dir_all(&layer.work);
                fs::create_dir_all(&layer.upper)?;
                fs::create_dir_all(&layer.work)?;
                Ok(layer)
            }
            Backend::Tmpfs => {
                let layer = self.create(id, quota_bytes)?;
                fs::remove_dir(&layer.upper)?;
                copy_tree(&source.join("upper"), &layer.upper)?;
                Ok(layer)
            }
        }
    }

    pub fn delete_snapshot(&self, snap: &str) -> io::Result<()> {
        let dir = self.snapshots_dir();
        let path = dir.join(snap);
        if !path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no snapshot {snap}"),
            ));
        }
        match self.backend {
            Backend::Btrfs => sys::btrfs_delete_subvolume(&dir, snap)?,
            Backend::Tmpfs => fs::remove_dir_all(&path)?,
        }
        match fs::remove_file(self.meta_path(snap)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Names of the snapshots held (half-made copies excluded).
    pub fn list_snapshots(&self) -> Vec<String> {
        fs::read_dir(self.snapshots_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| instavm_runtime::SnapshotId::parse(n).is_some())
            .collect()
    }
}

/// `cp -a`: the simplest way to keep everything overlayfs stores in an upper directory.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let out = Command::new("cp").arg("-a").arg(from).arg(to).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "cp -a {} {}: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// The tmpfs fallback copies: owners, modes and symlinks survive both ways. Needs root
    /// (tmpfs mounts); passes without doing anything otherwise.
    #[test]
    fn tmpfs_snapshots_copy_the_upper_directory() {
        use std::os::unix::fs::MetadataExt;
        // /proc/self belongs to the process's effective user.
        if fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let layers = Layers {
            dir: tmp.path().join("layers"),
            backend: Backend::Tmpfs,
        };
        fs::create_dir_all(&layers.dir).unwrap();
        let (a, b) = ("aaaaaaaaaaaa", "bbbbbbbbbbbb");
        let layer = layers.create(a, 16 << 20).unwrap();
        fs::write(layer.upper.join("f"), b"data").unwrap();
        fs::set_permissions(layer.upper.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        symlink("f", layer.upper.join("link")).unwrap();
        let meta = SnapshotMeta {
            image: "base".into(),
        };
        let taken = layers.snapshot(a, "snap_t", &meta).unwrap();
        assert!(taken.copied);
        fs::write(layer.upper.join("later"), b"x").unwrap();
        assert_eq!(layers.list_snapshots(), vec!["snap_t".to_owned()]);

        let booted = layers.create_from_snapshot(b, 16 << 20, "snap_t").unwrap();
        assert_eq!(fs::read(booted.upper.join("f")).unwrap(), b"data");
        let mode = fs::metadata(booted.upper.join("f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::read_link(booted.upper.join("link")).unwrap(),
            Path::new("f")
        );
        assert!(!booted.upper.join("later").exists());
        assert!(booted.work.is_dir());

        layers.delete_snapshot("snap_t").unwrap();
        assert!(layers.delete_snapshot("snap_t").is_err());
        layers.remove(a).unwrap();
        layers.remove(b).unwrap();
    }
}
