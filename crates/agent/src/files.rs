//! File requests. The agent lives inside the sandbox's root after `pivot_root`, so every path,
//! `..` and symlink included, resolves inside the sandbox: there is no host path to reach. On
//! top of that, files are opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, which
//! refuses /proc's magic links (the agent's own `/proc/1/exe` and descriptors), and the agent's
//! other /proc entries are refused too: a request reads what sandboxed code could read, not
//! what the agent process can.

use instavm_protocol::{
    parse_json, read_frame, write_frame, write_json, Entry, EntryKind, ErrorKind, FrameKind,
    Response, CHUNK,
};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most entries a listing returns, so one request cannot make the agent build an unbounded list.
const MAX_LIST: usize = 100_000;

pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

fn io_error(path: &str, e: &io::Error) -> Response {
    error(ErrorKind::from_io(e), format!("{path}: {e}"))
}

fn check_path(path: &str) -> Result<&Path, Response> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(error(
            ErrorKind::InvalidPath,
            format!("{path:?} is not an absolute path"),
        ));
    }
    Ok(Path::new(path))
}

fn entry(path: &str, meta: &Metadata) -> Entry {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    Entry {
        path: path.to_owned(),
        kind,
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
        modified: meta.mtime(),
    }
}

pub fn stat(path: &str) -> Response {
    let p = match check_path(path) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // Follow symlinks like stat(1) -L would, but still describe a dangling link.
    match open_for_request(path, libc::O_PATH) {
        Ok(f) => match f.metadata() {
            Ok(m) => Response::File(entry(path, &m)),
            Err(e) => io_error(path, &e),
        },
        Err(r) => match fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => Response::File(entry(path, &m)),
            _ => r,
        },
    }
}

pub fn list_dir(path: &str, recursive: bool) -> Response {
    let p = match check_path(path) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let top = match open_for_request(path, libc::O_PATH) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match top.metadata() {
        Ok(m) if !m.is_dir() => {
            return error(
                ErrorKind::NotADirectory,
                format!("{path} is not a directory"),
            )
        }
        Err(e) => return io_error(path, &e),
        Ok(_) => {}
    }
    // Walk from the directory that was checked, not from the path again.
    let mut entries = Vec::new();
    let mut stack = vec![(fd_path(&top), p.to_path_buf())];
    while let Some((dir, shown_dir)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for item in rd.flatten() {
            if entries.len() >= MAX_LIST {
                return Response::Entries { entries };
            }
            let child = item.path();
            let shown = shown_dir.join(item.file_name());
            let Some(child_str) = shown.to_str() else {
                continue;
            };
            // symlink_metadata: a recursive listing never follows a link out of the tree.
            let Ok(meta) = fs::symlink_metadata(&child) else {
                continue;
            };
            if recursive && meta.is_dir() {
                stack.push((child.clone(), shown.clone()));
            }
            entries.push(entry(child_str, &meta));
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Response::Entries { entries }
}

/// An upload in progress: written to a hidden temporary file beside the target and renamed
/// over it only when complete, so a failed upload (quota, broken connection) neither leaves half
/// a file nor clobbers the one that was there.
struct Upload {
    file: File,
    /// Both in `dir`, named through its descriptor (`/proc/self/fd/N/...`).
    tmp: PathBuf,
    target: PathBuf,
    /// The target's directory, opened like any file request; held so the paths above stay
    /// valid, dropped last.
    _dir: File,
}

/// The agent's own name for an open descriptor, to use it as a directory in paths.
fn fd_path(f: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

impl Upload {
    fn start(path: &str, create_parents: bool, mode: Option<u32>) -> Result<Upload, Response> {
        let target = check_path(path)?.to_path_buf();
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(error(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            ));
        };
        if create_parents {
            fs::create_dir_all(parent).map_err(|e| io_error(path, &e))?;
        }
        let parent = parent.to_str().unwrap_or("/");
        let dir = open_for_request(if parent.is_empty() { "/" } else { parent }, libc::O_PATH)?;
        let target = fd_path(&dir).join(name);
        if target.is_dir() {
            return Err(error(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            ));
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tmp = fd_path(&dir).join(format!(
            ".{}.upload-{}",
            name.to_string_lossy(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode.unwrap_or(0o644))
            .open(&tmp)
            .map_err(|e| io_error(path, &e))?;
        Ok(Upload {
            file,
            tmp,
            target,
            _dir: dir,
        })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self.file.write_all(data) {
            // btrfs counts space freed by recent deletions only after a commit: commit once and
            // retry before calling the quota full.
            Err(e) if ErrorKind::from_io(&e) == ErrorKind::NoSpace => {
                crate::sys::syncfs(&self.file);
                self.file.write_all(data)
            }
            r => r,
        }
    }

    fn finish(self) -> io::Result<Metadata> {
        let meta = self.file.metadata()?;
        fs::rename(&self.tmp, &self.target)?;
        Ok(meta)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // After a successful rename the temporary name no longer exists: harmless.
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Receive a file. The data frames are always consumed to the end frame, even after a failure,
/// so the connection stays in step; the error is reported afterwards.
pub fn write_file(
    conn: &mut (impl Read + Write),
    path: &str,
    create_parents: bool,
    mode: Option<u32>,
) -> io::Result<()> {
    let mut upload = Upload::start(path, create_parents, mode);
    loop {
        let frame = read_frame(conn)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        match frame.kind {
            FrameKind::Data => {
                if let Ok(u) = &mut upload {
                    if let Err(e) = u.write(&frame.payload) {
                        upload = Err(io_error(path, &e));
                    }
                }
            }
            FrameKind::End => break,
            FrameKind::Json => {
                let _: serde_json::Value = parse_json(&frame)?;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "message in the middle of an upload",
                ));
            }
        }
    }
    let response = upload.and_then(|u| {
        let meta = u.finish().map_err(|e| io_error(path, &e))?;
        Ok(Response::File(entry(path, &meta)))
    });
    write_json(conn, &response.unwrap_or_else(|r| r))
}

/// Open `path` for a request: inside the root, no magic links, never the agent's own /proc.
fn open_for_request(path: &str, flags: libc::c_int) -> Result<File, Response> {
    let fd = crate::sys::open_in_root(path, flags, 0).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) => error(
            ErrorKind::PermissionDenied,
            format!("{path}: not served (a /proc magic link)"),
        ),
        _ => io_error(path, &e),
    })?;
    if crate::sys::is_agent_proc_file(&fd) {
        return Err(error(
            ErrorKind::PermissionDenied,
            format!("{path}: not served (belongs to the sandbox's init)"),
        ));
    }
    Ok(File::from(fd))
}

/// Send a regular file: a `File` answer, data frames, an end frame. An error after the first
/// answer is sent as an `Error` message in place of the end frame.
pub fn read_file(conn: &mut impl Write, path: &str) -> io::Result<()> {
    let opened = check_path(path).and_then(|_| {
        let f = open_for_request(path, libc::O_RDONLY)?;
        let meta = f.metadata().map_err(|e| io_error(path, &e))?;
        if meta.is_dir() {
            return Err(error(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            ));
        }
        if !meta.is_file() {
            return Err(error(
                ErrorKind::InvalidPath,
                format!("{path} is not a regular file"),
            ));
        }
        crate::sys::set_blocking(&f).map_err(|e| io_error(path, &e))?;
        Ok((f, meta))
    });
    let (mut f, meta) = match opened {
        Ok(x) => x,
        Err(r) => return write_json(conn, &r),
    };
    write_json(conn, &Response::File(entry(path, &meta)))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return write_frame(conn, FrameKind::End, &[]),
            Ok(n) => write_frame(conn, FrameKind::Data, &buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return write_json(conn, &io_error(path, &e)),
        }
    }
}
