//! Raw system calls of the namespace backend. Every `unsafe` block of the crate lives here, each
//! with the reason it is sound.

pub mod beneath;
mod btrfs_snap;
pub mod mounts;
pub mod netlink;

pub use btrfs_snap::btrfs_snapshot;

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Namespaces every sandbox gets at birth. The cgroup namespace is entered by the agent itself,
/// after the host has moved it into its cgroups.
const SANDBOX_NAMESPACES: libc::c_int = libc::CLONE_NEWPID
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC;

/// What the cloned child needs, prepared before the clone: after it, the child may only make
/// async-signal-safe calls, and it shares our memory until it execs.
struct ChildArgs {
    /// The program, as a sealed memfd (executed with execveat, so no host path is involved).
    program: RawFd,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// (from, to) descriptor moves; every `from` is above 9 so no move clobbers another.
    fds: [(RawFd, RawFd); 5],
    sigmask: libc::sigset_t,
    /// Written by the child when execve fails (shared memory: CLONE_VM).
    errno: i32,
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the ChildArgs owned by `spawn_sandbox_init`, which is suspended
    // (CLONE_VFORK) and keeps it alive until this child execs or exits. Only async-signal-safe
    // calls are made.
    unsafe {
        let a = &mut *(arg as *mut ChildArgs);
        libc::setsid();
        for (from, to) in a.fds {
            if libc::dup2(from, to) < 0 {
                a.errno = *libc::__errno_location();
                libc::_exit(127);
            }
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &a.sigmask, std::ptr::null_mut());
        libc::syscall(
            libc::SYS_execveat,
            a.program,
            c"".as_ptr(),
            a.argv.as_ptr(),
            a.envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
        a.errno = *libc::__errno_location();
        libc::_exit(127)
    }
}

pub struct SpawnedInit {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// The descriptors a sandbox init starts with.
pub struct InitFds<'a> {
    /// Descriptor 3: the read end of the config pipe.
    pub config: &'a OwnedFd,
    /// Descriptor 4: the agent's listening socket.
    pub listener: &'a OwnedFd,
    /// Descriptor 5: the sandbox's user namespace, entered by the agent once it is set up.
    pub userns: &'a OwnedFd,
    /// Descriptors 1 and 2: the write end of a pipe the host reads start-up errors from.
    pub log: &'a OwnedFd,
}

/// Start `program` (a sealed memfd, see `sealed_copy`) named `name` as PID 1 of fresh pid,
/// mount, network, UTS and IPC namespaces, in its own session, with the descriptors of `fds`.
///
/// Uses `clone(CLONE_VM | CLONE_VFORK)` like posix_spawn: no copy of this (large, threaded)
/// process's page tables, and the call returns once the child has exec'd.
pub fn spawn_sandbox_init(
    program: &OwnedFd,
    name: &str,
    fds: InitFds<'_>,
) -> io::Result<SpawnedInit> {
    // Lift the descriptors above 9 so that moving them to 1..4 cannot overwrite one another.
    let high = |fd: RawFd| -> io::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own; the result is a new descriptor.
        let new = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) })?;
        // SAFETY: fcntl succeeded, so `new` is open and owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(new) })
    };
    // The program too: executed after the moves, it must not be one of their targets.
    let program = high(program.as_raw_fd())?;
    let (c, l, u, g) = (
        high(fds.config.as_raw_fd())?,
        high(fds.listener.as_raw_fd())?,
        high(fds.userns.as_raw_fd())?,
        high(fds.log.as_raw_fd())?,
    );
    // argv[0] is what sandboxed code sees in /proc/1/cmdline: not a host path.
    let arg_strings = [CString::new(name).unwrap_or_default()];
    let env_strings = [CString::new("PATH=/usr/sbin:/usr/bin:/sbin:/bin").unwrap_or_default()];
    let mut argv: Vec<*const libc::c_char> = arg_strings.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_strings.iter().map(|s| s.as_ptr()).collect();
    envp.push(std::ptr::null());

    // Block all signals around the clone so no handler of ours runs on the child's stack; the
    // child restores the original mask before exec.
    let old_mask = block_all_signals();
    let mut child = ChildArgs {
        program: program.as_raw_fd(),
        argv,
        envp,
        fds: [
            (c.as_raw_fd(), instavm_protocol::CONFIG_FD),
            (l.as_raw_fd(), instavm_protocol::LISTEN_FD),
            (u.as_raw_fd(), instavm_protocol::USERNS_FD),
            (g.as_raw_fd(), 1),
            (g.as_raw_fd(), 2),
        ],
        sigmask: old_mask,
        errno: 0,
    };
    let mut stack = vec![0u8; 64 * 1024];
    // The stack grows down: pass its (16-byte aligned) top.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let mut pidfd: libc::c_int = -1;
    let flags =
        SANDBOX_NAMESPACES | libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    // SAFETY: `top` is the aligned top of a live stack buffer; `child` outlives the child's use
    // of it (CLONE_VFORK suspends us until it execs or exits); `pidfd` receives the pidfd.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            flags,
            (&mut child as *mut ChildArgs).cast(),
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        return Err(clone_err);
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor that only we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    if child.errno != 0 {
        reap(&pidfd);
        return Err(io::Error::new(
            io::Error::from_raw_os_error(child.errno).kind(),
            format!(
                "cannot execute {name}: {}",
                io::Error::from_raw_os_error(child.errno)
            ),
        ));
    }
    Ok(SpawnedInit { pid, pidfd })
}

/// A sealed, in-memory copy of `path` to execute sandbox inits from: their `/proc/self/exe`
/// then names no host file, and nobody can write through it to a binary the host runs (the
/// runc CVE-2019-5736 fix).
pub fn sealed_copy(path: &Path, name: &str) -> io::Result<OwnedFd> {
    let cname = CString::new(name)?;
    // SAFETY: `cname` is a valid C string; flags are plain integers.
    let fd = check(unsafe {
        libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: memfd_create returned a new descriptor that only we own.
    let mut memfd = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    io::copy(&mut File::open(path)?, &mut memfd)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    check(unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(memfd.into())
}

/// A pidfd for a process that is not our child (a sandbox recovered after a restart).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = check(fd as libc::c_int)?;
    // SAFETY: the syscall returned a new descriptor that only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Wait until the process behind `pidfd` has exited, then reap it if it is our child.
pub async fn wait_exit(pidfd: OwnedFd) {
    // SAFETY: the AsyncFd owns `pidfd` for its whole life and nothing else closes or replaces
    // the descriptor.
    match unsafe { tokio::io::unix::AsyncFd::register(pidfd) } {
        Ok(afd) => {
            let _ = afd.readable().await;
            reap(afd.get_ref());
        }
        Err(e) => tracing::error!("cannot watch a sandbox init: {}", e),
    }
}

/// Reap our child behind `pidfd` if it has exited (no-op for a process that is not our child).
pub fn reap(pidfd: &OwnedFd) {
    const P_PIDFD: libc::idtype_t = 3;
    // SAFETY: zeroed siginfo is a valid output buffer; waitid only writes into it.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        );
    }
}

pub fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: plain syscall; a vanished target is fine.
    unsafe { libc::kill(pid, sig) };
}

/// Run `f` on a short-lived thread that has joined the network namespace of `pid`. Sockets it
/// creates stay in that namespace.
pub fn in_netns_of<T: Send + 'static>(
    pid: i32,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::Builder::new()
        .name("netns".into())
        .stack_size(128 << 10)
        .spawn(move || {
            // SAFETY: setns on a namespace descriptor; affects only this thread, which exits
            // right after `f`.
            check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
}

/// Start time in clock ticks since boot (field 22 of /proc/PID/stat) of a running (not zombie)
/// process, to tell a live sandbox init from an unrelated process that reused its pid.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let mut rest = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    let state = rest.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    rest.nth(18)?.parse().ok()
}

pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let (s, t, f, d) = (
        CString::new(source)?,
        cstring(target)?,
        CString::new(fstype)?,
        CString::new(data)?,
    );
    // SAFETY: all four pointers are NUL-terminated strings that outlive the call.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) })
        .map(drop)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("mount {} on {}: {e}", source, target.display()),
            )
        })
}

pub fn umount_detach(target: &Path) -> io::Result<()> {
    let t = cstring(target)?;
    // SAFETY: `t` is a valid C string.
    check(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// Is `path` a mount point of this mount namespace?
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_bytes();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp).as_slice() == want)
}

/// mountinfo escapes space, tab, newline and backslash as \ooo (octal).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let octal = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(v) = octal {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Exclusive advisory lock held until the returned file is dropped.
pub fn lock_file(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a descriptor we own.
    check(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) })?;
    Ok(f)
}

// ---- loop devices ----

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Attach `image` to a free loop device that detaches itself when no longer used. Returns the
/// device path and an open handle: keep it until the device is mounted, or the device detaches
/// right away.
pub fn attach_loop(image: &Path) -> io::Result<(String, File)> {
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)?;
    let ctl = File::open("/dev/loop-control")?;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = check(unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) })?;
        let dev = format!("/dev/loop{n}");
        let loopdev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)?;
        // SAFETY: an all-zero LoopConfig is valid; we fill in the fields we use.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_CONFIGURE reads one LoopConfig from the pointer.
        let rc = unsafe {
            libc::ioctl(
                loopdev.as_raw_fd(),
                LOOP_CONFIGURE,
                &cfg as *const LoopConfig,
            )
        };
        if rc == 0 {
            return Ok((dev, loopdev));
        }
        let e = io::Error::last_os_error();
        // Someone else took this device between GET_FREE and CONFIGURE: try another.
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
    }
    Err(io::Error::other("no free loop device"))
}

// ---- btrfs ----

const BTRFS_IOC_SUBVOL_CREATE: libc::c_ulong = 0x5000_940E;
const BTRFS_IOC_SNAP_DESTROY: libc::c_ulong = 0x5000_940F;
const BTRFS_IOC_QUOTA_CTL: libc::c_ulong = 0xC010_9428;
const BTRFS_IOC_QGROUP_LIMIT: libc::c_ulong = 0x8030_942B;
const BTRFS_QUOTA_CTL_ENABLE: u64 = 1;
const BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA: u64 = 4;
const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1;

#[repr(C)]
struct BtrfsVolArgs {
    fd: i64,
    name: [u8; 4088],
}

fn vol_args(name: &str) -> io::Result<Box<BtrfsVolArgs>> {
    if name.is_empty() || name.len() >= 4088 || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad subvolume name",
        ));
    }
    let mut args = Box::new(BtrfsVolArgs {
        fd: 0,
        name: [0; 4088],
    });
    args.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(args)
}

/// Turn on quotas: "simple quotas" (Linux 6.7+) where the kernel has them, full qgroups
/// otherwise. Full qgroups walk back-references on every subvolume deletion, which can stall
/// the file system's commits (and so every sandbox create) for seconds under load.
pub fn btrfs_enable_quota(mount_point: &Path) -> io::Result<()> {
    let dir = File::open(mount_point)?;
    for cmd in [BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA, BTRFS_QUOTA_CTL_ENABLE] {
        let mut args = [cmd, 0u64];
        // SAFETY: QUOTA_CTL reads and writes the two-u64 struct behind the pointer.
        let rc = unsafe { libc::ioctl(dir.as_raw_fd(), BTRFS_IOC_QUOTA_CTL, args.as_mut_ptr()) };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
}

/// Create subvolume `parent/name` whose referenced size is limited to `limit_bytes`.
pub fn btrfs_create_subvolume(parent: &Path, name: &str, limit_bytes: u64) -> io::Result<()> {
    let dir = File::open(parent)?;
    let args = vol_args(name)?;
    // SAFETY: SUBVOL_CREATE reads one BtrfsVolArgs.
    check(unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            BTRFS_IOC_SUBVOL_CREATE,
            &*args as *const BtrfsVolArgs,
        )
    })?;
    btrfs_set_quota(&parent.join(name), limit_bytes)
}

/// Limit the referenced size of the subvolume at `subvolume`.
pub fn btrfs_set_quota(subvolume: &Path, limit_bytes: u64) -> io::Result<()> {
    let sub = File::open(subvolume)?;
    // qgroupid 0 means "the qgroup of the subvolume this descriptor is in".
    let limit: [u64; 6] = [0, BTRFS_QGROUP_LIMIT_MAX_RFER, limit_bytes, 0, 0, 0];
    // SAFETY: QGROUP_LIMIT reads one 48-byte struct (qgroupid + btrfs_qgroup_limit).
    check(unsafe { libc::ioctl(sub.as_raw_fd(), BTRFS_IOC_QGROUP_LIMIT, limit.as_ptr()) }).map(drop)
}

pub fn btrfs_delete_subvolume(parent: &Path, name: &str) -> io::Result<()> {
    let dir = File::open(parent)?;
    let args = vol_args(name)?;
    // SAFETY: SNAP_DESTROY reads one BtrfsVolArgs.
    check(unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            BTRFS_IOC_SNAP_DESTROY,
            &*args as *const BtrfsVolArgs,
        )
    })
    .map(drop)
}

/// Commit the file system holding `path` (btrfs: the transaction that updates qgroups).
pub fn sync_fs(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    // SAFETY: syncfs on a descriptor we hold.
    check(unsafe { libc::syncfs(f.as_raw_fd()) }).map(drop)
}

/// Free bytes of the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let p = cstring(path)?;
    // SAFETY: zeroed statvfs is a valid output buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `p` is a valid C string and `st` a writable statvfs.
    check(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    Ok(st.f_bavail * st.f_frsize)
}

/// Used bytes of the file system holding `path`.
pub fn used_bytes(path: &Path) -> io::Result<u64> {
    let p = cstring(path)?;
    // SAFETY: zeroed statvfs is a valid output buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `p` is a valid C string and `st` a writable statvfs.
    check(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    Ok((st.f_blocks - st.f_bfree) * st.f_frsize)
}

/// The file system type (statfs f_type magic) of the file system holding `path`.
pub fn fs_type(path: &Path) -> io::Result<i64> {
    let p = cstring(path)?;
    // SAFETY: zeroed statfs is a valid output buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `p` is a valid C string and `st` a writable statfs.
    check(unsafe { libc::statfs(p.as_ptr(), &mut st) })?;
    Ok(st.f_type)
}

const BTRFS_IOC_TREE_SEARCH: libc::c_ulong = 0xD000_9411;
const BTRFS_IOC_INO_LOOKUP: libc::c_ulong = 0xD000_9412;
const BTRFS_QUOTA_TREE_OBJECTID: u64 = 8;
const BTRFS_QGROUP_INFO_KEY: u32 = 242;
const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;

#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

#[repr(C)]
struct SearchKey {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    nr_items: u32,
    unused: u32,
    unused1: u64,
    unused2: u64,
    unused3: u64,
    unused4: u64,
}

#[repr(C)]
struct SearchArgs {
    key: SearchKey,
    buf: [u8; 4096 - std::mem::size_of::<SearchKey>()],
}

/// Bytes referenced by the subvolume at `subvolume`, from its qgroup (what its quota counts).
pub fn btrfs_usage(subvolume: &Path) -> io::Result<u64> {
    let sub = File::open(subvolume)?;
    let mut lookup = Box::new(InoLookupArgs {
        treeid: 0,
        objectid: BTRFS_FIRST_FREE_OBJECTID,
        name: [0; 4080],
    });
    // SAFETY: INO_LOOKUP reads and writes one InoLookupArgs; with treeid 0 it reports the
    // subvolume (tree) id of the descriptor.
    check(unsafe {
        libc::ioctl(
            sub.as_raw_fd(),
            BTRFS_IOC_INO_LOOKUP,
            &mut *lookup as *mut InoLookupArgs,
        )
    })?;
    let subvol_id = lookup.treeid;
    // SAFETY: an all-zero SearchArgs is valid; the key is filled in below.
    let mut args: Box<SearchArgs> = Box::new(unsafe { std::mem::zeroed() });
    args.key = SearchKey {
        tree_id: BTRFS_QUOTA_TREE_OBJECTID,
        min_objectid: 0,
        max_objectid: 0,
        min_offset: subvol_id,
        max_offset: subvol_id,
        min_transid: 0,
        max_transid: u64::MAX,
        min_type: BTRFS_QGROUP_INFO_KEY,
        max_type: BTRFS_QGROUP_INFO_KEY,
        nr_items: 1,
        unused: 0,
        unused1: 0,
        unused2: 0,
        unused3: 0,
        unused4: 0,
    };
    // SAFETY: TREE_SEARCH reads the key and fills `buf` with at most `nr_items` items.
    check(unsafe {
        libc::ioctl(
            sub.as_raw_fd(),
            BTRFS_IOC_TREE_SEARCH,
            &mut *args as *mut SearchArgs,
        )
    })?;
    if args.key.nr_items == 0 {
        return Ok(0);
    }
    // Each item: a 32-byte btrfs_ioctl_search_header (transid, objectid, offset, type, len),
    // then a btrfs_qgroup_info_item (generation, rfer, rfer_cmpr, excl, excl_cmpr), all LE.
    let item = &args.buf[32..];
    let rfer = u64::from_le_bytes(item[8..16].try_into().unwrap_or([0; 8]));
    Ok(rfer)
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<u32> {
    // SAFETY: a zeroed cpu_set_t is valid output for sched_getaffinity.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads within the set for indexes below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .map(|c| c as u32)
        .collect()
}

// ---- user namespaces ----

/// What the user-namespace helper needs, prepared before its clone (it shares our memory and
/// may only make async-signal-safe calls).
struct UsernsHelper {
    id: libc::c_uint,
    /// Written when the namespace exists; the helper then waits for `wait_r` to close.
    ready_w: RawFd,
    wait_r: RawFd,
}

extern "C" fn userns_helper_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the UsernsHelper owned by `create_userns`, which keeps it alive
    // until it has reaped this child. Only raw system calls are made (no libc wrapper that
    // would coordinate with the parent's threads, such as setuid's all-threads broadcast).
    unsafe {
        let a = &*(arg as *const UsernsHelper);
        // Keep only our two pipe ends: the copied descriptor table also holds other helpers'
        // pipes (creates run in parallel), and holding those would keep them waiting.
        let (lo, hi) = (a.ready_w.min(a.wait_r), a.ready_w.max(a.wait_r));
        let close = |first: RawFd, last: libc::c_uint| {
            if first as libc::c_uint <= last {
                libc::syscall(libc::SYS_close_range, first as libc::c_uint, last, 0);
            }
        };
        close(0, (lo - 1) as libc::c_uint);
        close(lo + 1, (hi - 1) as libc::c_uint);
        close(hi + 1, libc::c_uint::MAX);
        let id = a.id as libc::c_long;
        let ok = libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
            && libc::syscall(libc::SYS_setresgid, id, id, id) == 0
            && libc::syscall(libc::SYS_setresuid, id, id, id) == 0
            && libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) == 0;
        if !ok {
            libc::_exit(1);
        }
        let byte = 1u8;
        libc::write(a.ready_w, (&byte as *const u8).cast(), 1);
        let mut buf = 0u8;
        libc::read(a.wait_r, (&mut buf as *mut u8).cast(), 1);
        libc::_exit(0)
    }
}

/// A new user namespace owned by host uid `first` (not by root: the kernel charges per-user
/// counts of everything inside to the owner, level by level), mapping ids 0..count inside to
/// first..first+count on the host.
pub fn create_userns(first: u32, count: u32) -> io::Result<OwnedFd> {
    let pipe = || -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: pipe2 succeeded; both descriptors are ours alone.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    };
    let (ready_r, ready_w) = pipe()?;
    let (wait_r, wait_w) = pipe()?;
    let helper = UsernsHelper {
        id: first,
        ready_w: ready_w.as_raw_fd(),
        wait_r: wait_r.as_raw_fd(),
    };
    let mut stack = vec![0u8; 16 * 1024];
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // Signals stay blocked in the helper: none of our handlers may run on its stack.
    let old_mask = block_all_signals();
    // SAFETY: `top` is the aligned top of a live stack that outlives the helper (we reap it
    // below before `stack` is dropped); `helper` lives as long.
    let pid = unsafe {
        libc::clone(
            userns_helper_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            (&helper as *const UsernsHelper).cast_mut().cast(),
        )
    };
    let clone_err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
    if pid < 0 {
        return Err(clone_err);
    }
    drop(ready_w);
    let result = (|| {
        let mut byte = [0u8; 1];
        let n = File::from(ready_r).read(&mut byte)?;
        if n != 1 {
            return Err(io::Error::other("the user namespace helper failed"));
        }
        let map = format!("0 {first} {count}\n");
        std::fs::write(format!("/proc/{pid}/uid_map"), &map)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &map)?;
        Ok(OwnedFd::from(File::open(format!("/proc/{pid}/ns/user"))?))
    })();
    // Release the helper (explicitly: a write, not only the close, ends its wait).
    let _ = (&File::from(wait_w)).write(&[1]);
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a live output.
    unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    drop(stack);
    result
}

pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Block every signal in this thread; returns the mask to restore.
fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset operations on local, initialised sets.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}
