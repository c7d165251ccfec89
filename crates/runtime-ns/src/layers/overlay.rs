//! overlayfs's view of a snapshot, read from the host without mounting it: an upper directory
//! (with whiteouts and opaque directories) over an image's rootfs. Nothing here follows a
//! symlink: every lookup goes one name at a time with `O_NOFOLLOW`, or through openat2 with
//! `RESOLVE_NO_SYMLINKS`, so a link the sandbox planted never leads to a host file.

use crate::sys::beneath::open_beneath;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A character device 0/0: overlayfs's mark that the image's entry was deleted.
    Whiteout,
    Other,
}

/// The metadata of one entry (what the diff compares; contents are never read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub rdev: u64,
    /// A directory that hides the image's directory of the same name.
    pub opaque: bool,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
}

impl Entry {
    /// Whether this upper entry hides whatever the image has at its path and below.
    pub fn hides_lower(&self) -> bool {
        self.kind != Kind::Dir || self.opaque
    }
}

/// What the sandbox saw at a path.
pub enum Seen {
    Upper(Entry),
    Lower(Entry),
}

fn kind_of(mode: u32, rdev: u64) -> Kind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        libc::S_IFCHR if rdev == 0 => Kind::Whiteout,
        _ => Kind::Other,
    }
}

fn from_metadata(m: &std::fs::Metadata) -> Entry {
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Entry {
        kind: kind_of(m.mode(), m.rdev()),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        ino: m.ino(),
        rdev: m.rdev(),
        opaque: false,
        target: None,
    }
}

/// The entry at `path` (a host path inside an upper tree the runtime walks itself).
pub fn entry(path: &Path) -> io::Result<Entry> {
    let mut e = from_metadata(&std::fs::symlink_metadata(path)?);
    match e.kind {
        Kind::Dir => e.opaque = is_opaque(path),
        Kind::Symlink => e.target = Some(std::fs::read_link(path)?.as_os_str().as_bytes().into()),
        _ => {}
    }
    Ok(e)
}

fn is_opaque(path: &Path) -> bool {
    xattr_is_y(path, false)
}

/// Whether the xattr `trusted.overlay.opaque` of `path` is "y"; `follow` for a
/// `/proc/self/fd/N` name, which only leads to its inode when followed.
fn xattr_is_y(path: &Path, follow: bool) -> bool {
    let (Ok(p), Ok(name)) = (
        CString::new(path.as_os_str().as_bytes()),
        CString::new(OPAQUE_XATTR),
    ) else {
        return false;
    };
    let mut value = [0u8; 4];
    let (p, name, buf, len) = (
        p.as_ptr(),
        name.as_ptr(),
        value.as_mut_ptr().cast(),
        value.len(),
    );
    // SAFETY: both names are valid C strings; the kernel writes at most `len` bytes to `buf`.
    let n = unsafe {
        if follow {
            libc::getxattr(p, name, buf, len)
        } else {
            libc::lgetxattr(p, name, buf, len)
        }
    };
    n == 1 && value[0] == b'y'
}

/// The same upper entry in two snapshots. Directories count by mode and owner only (a new
/// entry in one is that entry's change, not the directory's).
pub fn same(a: &Entry, b: &Entry, strict: bool) -> bool {
    if a.kind != b.kind || a.mode != b.mode || a.uid != b.uid || a.gid != b.gid {
        return false;
    }
    if a.kind == Kind::Dir {
        return a.opaque == b.opaque;
    }
    let loose =
        a.size == b.size && a.mtime_ns == b.mtime_ns && a.rdev == b.rdev && a.target == b.target;
    loose && (!strict || (a.ino == b.ino && a.ctime_ns == b.ctime_ns))
}

/// What the sandbox sees is unchanged. A file copied up from the image (or back to the
/// image's version) counts as changed; a directory copied up does not if it kept its mode and
/// owner.
pub fn same_view(a: &Seen, b: &Seen, strict: bool) -> bool {
    let meta_only = |x: &Entry, y: &Entry| {
        x.kind == Kind::Dir
            && y.kind == Kind::Dir
            && (x.mode, x.uid, x.gid) == (y.mode, y.uid, y.gid)
    };
    match (a, b) {
        (Seen::Upper(x), Seen::Upper(y)) => {
            same(x, y, strict) || (x.kind == Kind::Dir && meta_only(x, y))
        }
        (Seen::Lower(x), Seen::Lower(y)) => same(x, y, false) || meta_only(x, y),
        (Seen::Upper(x), Seen::Lower(y)) | (Seen::Lower(x), Seen::Upper(y)) => meta_only(x, y),
    }
}

/// The entry at `path` (relative, '/'-separated) under `root` (an upper tree or an image),
/// symlinks on the way refused.
pub fn entry_beneath(root: &Path, path: &str) -> io::Result<Option<Entry>> {
    let root = File::open(root)?;
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let dir = if parent.is_empty() {
        root.try_clone()?.into()
    } else {
        match open_beneath(&root, parent, libc::O_PATH | libc::O_DIRECTORY, 0, true) {
            Ok(fd) => fd,
            Err(e) if gone(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    };
    match stat_at(&dir, name) {
        Ok(st) => Ok(Some(st)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// "Not there" as far as a lookup is concerned: missing, under a non-directory, or through a
/// symlink.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP) | Some(libc::EXDEV)
    )
}

fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `name` is one path component.
fn stat_at(dir: &impl AsRawFd, name: &str) -> io::Result<Entry> {
    let n = cname(name)?;
    let fd = open_at(dir, &n, libc::O_PATH | libc::O_NOFOLLOW)?;
    let file = File::from(fd);
    let mut e = from_metadata(&file.metadata()?);
    match e.kind {
        Kind::Dir => e.opaque = fd_opaque(&file),
        Kind::Symlink => e.target = Some(link_target(&file)?),
        _ => {}
    }
    Ok(e)
}

/// The target of the symlink an `O_PATH | O_NOFOLLOW` descriptor holds.
fn link_target(link: &File) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty path makes readlinkat read the link `link` itself; it writes at most
    // `buf.len()` bytes.
    let n = unsafe {
        libc::readlinkat(
            link.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn open_at(dir: &impl AsRawFd, name: &CString, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; openat returns a new descriptor or -1.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat succeeded; the descriptor is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The opaque mark of an `O_PATH` directory descriptor (fgetxattr refuses those: go through
/// /proc/self/fd, which names this very inode).
fn fd_opaque(dir: &impl AsRawFd) -> bool {
    xattr_is_y(
        Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())),
        true,
    )
}

/// Why a snapshot file could not be read, in the caller's terms.
pub enum ReadError {
    TooBig(u64),
    Io(io::Error),
}

/// The regular file at `components` (already checked: no "", ".", "..") in the overlay of
/// `layers` (upper first). `Ok(None)` when the sandbox saw no regular file there.
pub fn read_file(
    layers: &[&Path],
    components: &[&str],
    max_bytes: u64,
) -> Result<Option<Vec<u8>>, ReadError> {
    let io = ReadError::Io;
    // Directories of the layers that still take part at the current depth, topmost first.
    let mut dirs: Vec<OwnedFd> = Vec::new();
    for l in layers {
        dirs.push(File::open(l).map_err(io)?.into());
    }
    let Some((last, parents)) = components.split_last() else {
        return Ok(None);
    };
    for name in parents {
        let n = cname(name).map_err(io)?;
        let mut next = Vec::new();
        for dir in &dirs {
            let fd = match open_at(
                dir,
                &n,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            ) {
                Ok(fd) => fd,
                // A whiteout, file or symlink here hides this name in the layers below.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                    break
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(io(e)),
            };
            let file = File::from(fd);
            let opaque = fd_opaque(&file);
            next.push(file.into());
            if opaque {
                break;
            }
        }
        if next.is_empty() {
            return Ok(None);
        }
        dirs = next;
    }
    let n = cname(last).map_err(io)?;
    for dir in &dirs {
        // O_PATH first: a FIFO or device the sandbox made is looked at, never opened.
        let fd = match open_at(dir, &n, libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(io(e)),
        };
        let meta = File::from(fd.try_clone().map_err(io)?)
            .metadata()
            .map_err(io)?;
        if !meta.file_type().is_file() {
            // A whiteout, a directory, a symlink, a device: no regular file here, whatever
            // is below.
            return Ok(None);
        }
        let mut file = File::open(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io)?;
        if meta.len() > max_bytes {
            return Err(ReadError::TooBig(meta.len()));
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        file.by_ref()
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(io)?;
        if data.len() as u64 > max_bytes {
            return Err(ReadError::TooBig(data.len() as u64));
        }
        return Ok(Some(data));
    }
    Ok(None)
}
