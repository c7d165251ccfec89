//! Mounts into a running sandbox: a detached, idmapped copy of a host directory is made here
//! (open_tree + mount_setattr), then a helper thread that joined the sandbox's mount namespace
//! attaches it (move_mount) or takes one away (umount2).

use super::{check, cstring};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount at `source`, its owners mapped through `userns` (ids on disk
/// count from 0, as inside the sandbox), nosuid and nodev, read-only when asked.
pub fn idmapped_tree(source: &Path, userns: &File, read_only: bool) -> io::Result<OwnedFd> {
    let src = cstring(source)?;
    // SAFETY: `src` is a valid C string; open_tree returns a new descriptor or fails.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    let fd = check(fd as libc::c_int)?;
    // SAFETY: open_tree succeeded; the descriptor is ours alone.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP
            | MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: `attr` is a live mount_attr of the size passed; the path is an empty C string.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret as libc::c_int)?;
    Ok(tree)
}

/// Run `f` on a short-lived thread that has its own fs context and has joined the mount
/// namespace of `pid` (its root and working directory are then that namespace's root).
pub fn in_mount_ns_of<T: Send + 'static>(
    pid: i32,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = File::open(format!("/proc/{pid}/ns/mnt"))?;
    std::thread::Builder::new()
        .name("mntns".into())
        .stack_size(256 << 10)
        .spawn(move || {
            // SAFETY: unshare(CLONE_FS) gives this thread its own root and cwd (setns into a
            // mount namespace refuses a shared fs context); it affects this thread only.
            check(unsafe { libc::unshare(libc::CLONE_FS) })?;
            // SAFETY: setns on a namespace descriptor; this thread exits right after `f`.
            check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) })?;
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("mount namespace thread panicked"))?
}

/// This thread's file-system ids (what new files and directories are owned by). Only for
/// threads of [`in_mount_ns_of`], which end after their job.
pub fn set_thread_fs_ids(id: u32) {
    // SAFETY: setfsuid/setfsgid change the calling thread's credentials only.
    unsafe {
        libc::setfsgid(id);
        libc::setfsuid(id);
    }
}

/// Open (creating when missing) every directory of the absolute path `path` from `/`, never
/// following a symlink or a magic link: the directory the path names, as an `O_PATH` handle.
pub fn make_dirs(path: &str) -> io::Result<OwnedFd> {
    // SAFETY: open of a constant C string.
    let root = check(unsafe {
        libc::open(
            c"/".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: open succeeded; the descriptor is ours alone.
    let mut dir = unsafe { OwnedFd::from_raw_fd(root) };
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let name = std::ffi::CString::new(part)?;
        // SAFETY: `name` is a valid C string; mkdirat only reads it.
        let made = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) };
        if made != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        dir = open_no_symlinks(&dir, part, libc::O_PATH | libc::O_DIRECTORY)?;
    }
    Ok(dir)
}

fn open_no_symlinks(dir: &OwnedFd, name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let n = std::ffi::CString::new(name)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `n` is a valid C string and `how` a live open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            n.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = check(fd as libc::c_int)?;
    // SAFETY: openat2 succeeded; the descriptor is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attach the detached `tree` on the directory `target`.
pub fn attach_tree(tree: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    // SAFETY: both descriptors are live; the paths are empty C strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check(ret as libc::c_int).map(drop)
}

/// Detach the mount at the absolute `path`: its parent is reached without following any
/// symlink, and the last component is not followed either, so only a mount at exactly that
/// path can go. `EINVAL` means nothing is mounted there.
pub fn unmount_at(path: &str) -> io::Result<()> {
    let (parent, name) = match path.rsplit_once('/') {
        Some((p, n)) if !n.is_empty() => (p, n),
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    let dir = make_dirs_readonly(parent)?;
    // SAFETY: fchdir to a directory we hold; this thread has its own fs context.
    check(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
    let n = std::ffi::CString::new(name)?;
    // SAFETY: `n` is a valid C string.
    check(unsafe { libc::umount2(n.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) }).map(drop)
}

/// Like [`make_dirs`] but creating nothing.
fn make_dirs_readonly(path: &str) -> io::Result<OwnedFd> {
    // SAFETY: open of a constant C string.
    let root = check(unsafe { libc::open(c"/".as_ptr(), libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
    // SAFETY: open succeeded; the descriptor is ours alone.
    let mut dir = unsafe { OwnedFd::from_raw_fd(root) };
    for part in path.split('/').filter(|p| !p.is_empty()) {
        dir = open_no_symlinks(&dir, part, libc::O_DIRECTORY)?;
    }
    Ok(dir)
}
