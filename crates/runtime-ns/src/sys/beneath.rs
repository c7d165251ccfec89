//! File operations confined to a directory (a volume's root): every path is resolved with
//! openat2 `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`, so `..`, absolute
//! symlinks, symlinks that climb out, /proc magic links and other mounts are refused by the
//! kernel, whatever the tree's owner (a sandbox) put there.

use super::check;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Open `path` (relative) beneath `dir`. `no_symlinks` refuses every symlink on the way
/// (used for directories being walked or created), otherwise symlinks that stay beneath are
/// followed.
pub fn open_beneath(
    dir: &impl AsRawFd,
    path: &str,
    flags: libc::c_int,
    mode: u32,
    no_symlinks: bool,
) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // openat2 refuses O_PATH with any flag but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
    let extra = if flags & libc::O_PATH != 0 {
        libc::O_CLOEXEC
    } else {
        libc::O_CLOEXEC | libc::O_NOCTTY
    };
    let how = OpenHow {
        flags: (flags | extra) as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            u64::from(mode)
        } else {
            0
        },
        resolve: RESOLVE_BENEATH
            | RESOLVE_NO_MAGICLINKS
            | RESOLVE_NO_XDEV
            | if no_symlinks { RESOLVE_NO_SYMLINKS } else { 0 },
    };
    // SAFETY: `p` is a valid C string and `how` a live open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = check(fd as libc::c_int)?;
    // SAFETY: openat2 succeeded; the descriptor is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mkdirat(dir, name)`; an existing entry is fine (the caller opens it without following).
pub fn mkdir_at(dir: &impl AsRawFd, name: &str, mode: u32) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: `n` is a valid C string; mkdirat only reads it.
    match check(unsafe { libc::mkdirat(dir.as_raw_fd(), n.as_ptr(), mode) }) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other.map(drop),
    }
}

/// Rename `from` to `to`, both names in `dir`; with `replace` false an existing `to` is
/// `EEXIST` (atomically: `RENAME_NOREPLACE`).
pub fn rename_in(dir: &impl AsRawFd, from: &str, to: &str, replace: bool) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    let flags = if replace { 0 } else { libc::RENAME_NOREPLACE };
    // SAFETY: both names are valid C strings; renameat2 only reads them.
    check(unsafe {
        libc::renameat2(
            dir.as_raw_fd(),
            f.as_ptr(),
            dir.as_raw_fd(),
            t.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// Remove the entry `name` of `dir`: a file or symlink, or an empty directory.
pub fn unlink_at(dir: &impl AsRawFd, name: &str) -> io::Result<()> {
    let n = cstr(name)?;
    let unlink = |flags| {
        // SAFETY: `n` is a valid C string that outlives the call; unlinkat only reads it.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), n.as_ptr(), flags) }).map(drop)
    };
    match unlink(0) {
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => unlink(libc::AT_REMOVEDIR),
        other => other,
    }
}
