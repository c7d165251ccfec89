//! The files API on the host, whether or not the volume is mounted: every path is resolved
//! beneath the volume's live root by the kernel (`sys::beneath`), never by string checks
//! alone, so a symlink or `..` a sandbox planted cannot lead out of the volume. Hard links
//! cannot lead out either: a volume's tree is its own subvolume (or tmpfs), and links across
//! subvolumes and mounts fail with `EXDEV`, so a sandbox can only link files of the volume.

use super::Volumes;
use crate::sys::beneath::{mkdir_at, open_beneath, rename_in, unlink_at};
use instavm_runtime::{Result, RuntimeError, VolumeFileInfo, VolumeId};
use rand::RngCore;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Uploads in progress are written under this name beside their target, then renamed.
const TEMP_PREFIX: &str = ".instavm-upload-";
/// Most entries one listing walks (a guard against pathological trees).
const MAX_WALKED: usize = 200_000;

/// What resolving a user path can fail with, in the runtime's terms.
fn path_error(path: &str) -> impl FnOnce(io::Error) -> RuntimeError + '_ {
    move |e| match e.raw_os_error() {
        Some(libc::ENOENT) => RuntimeError::FileNotFound(path.to_owned()),
        Some(libc::ENOTDIR) | Some(libc::EISDIR) => RuntimeError::WrongFileType(format!(
            "{path}: a directory where a file is expected, or the reverse"
        )),
        Some(libc::ELOOP) | Some(libc::EXDEV) => RuntimeError::InvalidPath(format!(
            "{path} leads through a symlink or out of the volume"
        )),
        Some(libc::EDQUOT) | Some(libc::ENOSPC) => {
            RuntimeError::QuotaExceeded(format!("writing {path}"))
        }
        Some(libc::ENOTEMPTY) => {
            RuntimeError::WrongFileType(format!("{path}: directory not empty"))
        }
        _ => RuntimeError::io(format!("volume file {path}"), e),
    }
}

/// An upload being written: the temporary file and where it goes. Dropped before it is
/// finished (an error, or a client that hung up and took the request future with it), it
/// removes its temporary file, which would otherwise hold quota unseen.
pub struct Upload {
    pub file: File,
    parent: OwnedFd,
    temp: String,
    name: String,
    path: String,
    placed: bool,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.placed {
            let _ = unlink_at(&self.parent, &self.temp);
        }
    }
}

impl Volumes {
    fn open_root(&self, vol: &VolumeId) -> Result<OwnedFd> {
        let live = self.live(vol)?;
        let f = File::open(&live).map_err(|e| RuntimeError::io("opening a volume", e))?;
        Ok(OwnedFd::from(f))
    }

    /// The directory holding `path` (a checked relative path) and the last component. With
    /// `create`, missing directories are made (owned by id 0: the sandbox's root inside).
    fn parent_of(&self, vol: &VolumeId, path: &str, create: bool) -> Result<(OwnedFd, String)> {
        let mut dir = self.open_root(vol)?;
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().unwrap_or_default().to_owned();
        for part in parts {
            if create {
                mkdir_at(&dir, part, 0o755).map_err(path_error(path))?;
            }
            dir = open_beneath(&dir, part, libc::O_PATH | libc::O_DIRECTORY, 0, true)
                .map_err(path_error(path))?;
        }
        Ok((dir, name))
    }

    /// Start an upload: refused at once when the file exists and `overwrite` is not set.
    pub fn begin_upload(&self, vol: &VolumeId, path: &str, overwrite: bool) -> Result<Upload> {
        let (parent, name) = self.parent_of(vol, path, true)?;
        if !overwrite {
            match open_beneath(&parent, &name, libc::O_PATH, 0, true) {
                Ok(_) => return Err(RuntimeError::AlreadyExists(path.to_owned())),
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(RuntimeError::AlreadyExists(path.to_owned()))
                }
                Err(_) => {}
            }
        }
        let mut bytes = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut bytes);
        let temp = format!(
            "{TEMP_PREFIX}{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let fd = open_beneath(
            &parent,
            &temp,
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
            0o644,
            true,
        )
        .map_err(path_error(path))?;
        Ok(Upload {
            file: File::from(fd),
            parent,
            temp,
            name,
            path: path.to_owned(),
            placed: false,
        })
    }

    /// Make the upload durable and put it in place (atomically; without `overwrite` a file
    /// that appeared meanwhile is not replaced). On any error the temporary file goes.
    pub fn finish_upload(&self, mut up: Upload, overwrite: bool) -> Result<VolumeFileInfo> {
        let done = (|| {
            up.file.sync_all()?;
            let meta = up.file.metadata()?;
            rename_in(&up.parent, &up.temp, &up.name, overwrite)?;
            Ok::<_, io::Error>(meta)
        })();
        match done {
            Ok(meta) => {
                up.placed = true;
                Ok(VolumeFileInfo {
                    path: up.path.clone(),
                    size: meta.len(),
                    modified: meta.mtime(),
                })
            }
            // Dropping `up` removes the temporary file.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                Err(RuntimeError::AlreadyExists(up.path.clone()))
            }
            Err(e) => Err(path_error(&up.path)(e)),
        }
    }

    /// Open a regular file for reading (symlinks that stay inside the volume are followed).
    pub fn open_file(&self, vol: &VolumeId, path: &str) -> Result<(VolumeFileInfo, File)> {
        let root = self.open_root(vol)?;
        let fd = open_beneath(&root, path, libc::O_RDONLY | libc::O_NONBLOCK, 0, false)
            .map_err(path_error(path))?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(path_error(path))?;
        if !meta.is_file() {
            return Err(RuntimeError::WrongFileType(format!(
                "{path} is not a regular file"
            )));
        }
        Ok((
            VolumeFileInfo {
                path: path.to_owned(),
                size: meta.len(),
                modified: meta.mtime(),
            },
            file,
        ))
    }

    /// Regular files whose path starts with `prefix`, sorted, at most `limit`. Symlinks are
    /// not listed and never followed.
    pub fn list_files(
        &self,
        vol: &VolumeId,
        prefix: &str,
        recursive: bool,
        limit: usize,
    ) -> Result<Vec<VolumeFileInfo>> {
        let root = self.open_root(vol)?;
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let start = open_beneath(
            &root,
            if dir_part.is_empty() { "." } else { dir_part },
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            true,
        );
        let start = match start {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(path_error(prefix)(e)),
        };
        let base = if dir_part.is_empty() {
            String::new()
        } else {
            format!("{dir_part}/")
        };
        let mut out = Vec::new();
        let mut walked = 0;
        walk(&start, &base, prefix, recursive, &mut out, &mut walked)
            .map_err(path_error(prefix))?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out.truncate(limit);
        Ok(out)
    }

    pub fn remove_file(&self, vol: &VolumeId, path: &str) -> Result<()> {
        let (parent, name) = self.parent_of(vol, path, false)?;
        unlink_at(&parent, &name).map_err(path_error(path))
    }
}

/// Collect the files of `dir` (reached as `base`) that match `prefix`, depth first.
fn walk(
    dir: &OwnedFd,
    base: &str,
    prefix: &str,
    recursive: bool,
    out: &mut Vec<VolumeFileInfo>,
    walked: &mut usize,
) -> io::Result<()> {
    // The descriptor's /proc entry lists exactly the directory we hold, whatever was renamed.
    for entry in fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let entry = entry?;
        *walked += 1;
        if *walked > MAX_WALKED {
            return Ok(());
        }
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = format!("{base}{name}");
        let kind = entry.file_type()?;
        if kind.is_file() {
            if path.starts_with(prefix) {
                let meta = entry.metadata()?;
                out.push(VolumeFileInfo {
                    path,
                    size: meta.len(),
                    modified: meta.mtime(),
                });
            }
        } else if kind.is_dir() && recursive {
            let below = format!("{path}/");
            if below.starts_with(prefix) || prefix.starts_with(&below) {
                let sub = open_beneath(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0, true)?;
                walk(&sub, &below, prefix, recursive, out, walked)?;
            }
        }
    }
    Ok(())
}
