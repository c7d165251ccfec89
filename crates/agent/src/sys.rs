//! Thin safe wrappers over the raw system calls the agent needs. Every `unsafe` block of the
//! agent lives here.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

fn cstr(p: impl AsRef<Path>) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_ref().as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn with_context<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> io::Result<T> {
    r.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", what())))
}

pub fn mount(
    source: Option<&str>,
    target: impl AsRef<Path>,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let target = target.as_ref();
    let src = source.map(cstr).transpose()?;
    let tgt = cstr(target)?;
    let fs = fstype.map(cstr).transpose()?;
    let data = data.map(cstr).transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    let ret = unsafe {
        libc::mount(
            ptr(&src),
            tgt.as_ptr(),
            ptr(&fs),
            flags,
            ptr(&data) as *const libc::c_void,
        )
    };
    with_context(check(ret).map(drop), || {
        format!("mount {:?} on {}", source.or(fstype), target.display())
    })
}

pub fn umount_detach(target: impl AsRef<Path>) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: `t` is a valid C string.
    check(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// `pivot_root(".", ".")` in the current directory: the old root ends up stacked under the new
/// one and can then be detached, without needing a directory to put it in.
pub fn pivot_root_here() -> io::Result<()> {
    let dot = c".";
    // SAFETY: both arguments are valid C strings; the syscall has no other memory effects.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
    with_context(check(ret as libc::c_int).map(drop), || "pivot_root".into())
}

pub fn mknod(path: impl AsRef<Path>, mode: libc::mode_t, major: u32, minor: u32) -> io::Result<()> {
    let p = cstr(path.as_ref())?;
    // SAFETY: `p` is a valid C string.
    let ret = unsafe { libc::mknod(p.as_ptr(), mode, libc::makedev(major, minor)) };
    with_context(check(ret).map(drop), || {
        format!("mknod {}", path.as_ref().display())
    })
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall with an integer argument.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

pub fn setsid() {
    // SAFETY: plain syscall; failing (already a leader) is harmless.
    unsafe { libc::setsid() };
}

pub fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the options used by the agent take integer arguments only.
    check(unsafe {
        libc::prctl(
            option,
            arg2,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
    .map(drop)
}

/// Set the effective, permitted and inheritable capability sets (64-bit masks).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |m: u64| (m as u32, (m >> 32) as u32);
    let (e0, e1) = split(effective);
    let (p0, p1) = split(permitted);
    let (i0, i1) = split(inheritable);
    let data = [
        Data {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        Data {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: header and data match the kernel's v3 layout (one header, two data structs).
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    check(ret as libc::c_int).map(drop)
}

/// A pipe whose both ends are close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Close every descriptor numbered `first` or above.
pub fn close_fds_from(first: RawFd) {
    // SAFETY: close_range only closes descriptors; nothing in this fresh process uses them.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
}

/// Commit the file system holding `fd`.
pub fn syncfs(fd: &impl AsRawFd) {
    // SAFETY: syncfs on a descriptor we own; no memory is involved.
    unsafe { libc::syncfs(fd.as_raw_fd()) };
}

pub fn set_cloexec(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// An eventfd used to wake a poll loop from another thread.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: eventfd succeeded; the descriptor is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn eventfd_signal(fd: &impl AsRawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Read up to `buf.len()` bytes; `Ok(None)` when a non-blocking descriptor has nothing now.
pub fn read_nb(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Wait until one of `fds` is readable (or hung up) or `timeout_ms` passes (-1: forever).
/// Returns, per descriptor, whether it is ready.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(pfds.iter().map(|p| p.revents != 0).collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: plain syscall; a vanished target is not an error we care about.
    unsafe { libc::kill(pid, sig) };
}

pub struct Exited {
    pub pid: i32,
    /// Raw wait status.
    pub status: i32,
    pub cpu_seconds: f64,
}

impl Exited {
    /// Shell convention: the exit status, or 128 + the signal that killed it.
    pub fn exit_code(&self) -> i32 {
        if libc::WIFEXITED(self.status) {
            libc::WEXITSTATUS(self.status)
        } else if libc::WIFSIGNALED(self.status) {
            128 + libc::WTERMSIG(self.status)
        } else {
            1
        }
    }
}

/// Reap one exited child without blocking.
pub fn reap_any() -> Option<Exited> {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value for the kernel to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: status and rusage point to live, writable values.
    let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut ru) };
    if pid <= 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(Exited {
        pid,
        status,
        cpu_seconds: secs(ru.ru_utime) + secs(ru.ru_stime),
    })
}

/// Block SIGCHLD in the calling thread (and every thread it creates afterwards), so that only
/// the reaper thread receives it, through `wait_sigchld`.
pub fn block_sigchld() -> io::Result<()> {
    // SAFETY: sigset operations on a local, initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// Wait for a SIGCHLD (blocked beforehand with `block_sigchld`).
pub fn wait_sigchld() {
    // SAFETY: sigset operations on a local set; sigwaitinfo accepts a null info pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigwaitinfo(&set, std::ptr::null_mut());
    }
}

/// For use between fork and exec only (async-signal-safe): put the child in its own process
/// group, as a user process (see [`become_user_process`]).
pub fn child_setup() -> io::Result<()> {
    // SAFETY: setpgid is async-signal-safe and takes integers only.
    if unsafe { libc::setpgid(0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    become_user_process();
    Ok(())
}

/// Between fork and exec (async-signal-safe), for every process of user code: the agent's copy
/// is not dumpable, so its /proc files belong to the host's root and are closed to the
/// sandbox's; dumpable (as exec would make it anyway), the child owns its own /proc/self again.
/// Then it makes itself a preferred OOM victim over the agent (raising the score needs no
/// privilege; it also undoes the agent's own immunity, which children inherit).
fn become_user_process() {
    // SAFETY: prctl, open, write and close are async-signal-safe; the path and buffer are
    // static.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        let path: &CStr = c"/proc/self/oom_score_adj";
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"500".as_ptr().cast(), 3);
            libc::close(fd);
        }
    }
}

/// For use between fork and exec only: make `from` available as descriptor `to` (inherited).
pub fn dup_to(from: RawFd, to: RawFd) -> io::Result<()> {
    if from == to {
        // dup2 would do nothing, leaving close-on-exec set: clear it instead.
        // SAFETY: fcntl is async-signal-safe; integer arguments only.
        return check(unsafe { libc::fcntl(from, libc::F_SETFD, 0) }).map(drop);
    }
    // SAFETY: dup2 is async-signal-safe and only manipulates the descriptor table.
    check(unsafe { libc::dup2(from, to) }).map(drop)
}

/// A CPU set (affinity mask).
#[derive(Clone, Copy)]
pub struct CpuSet(libc::cpu_set_t);

impl CpuSet {
    /// The CPUs the calling thread may run on.
    pub fn current() -> io::Result<Self> {
        // SAFETY: a zeroed cpu_set_t is valid; the kernel fills it in.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a writable cpu_set_t of the size passed.
        check(unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
        })?;
        Ok(CpuSet(set))
    }

    pub fn single(cpu: u32) -> Self {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it for cpu < CPU_SETSIZE.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize % libc::CPU_SETSIZE as usize, &mut set);
            CpuSet(set)
        }
    }

    /// Apply to one thread (0: the calling one). Async-signal-safe.
    pub fn apply(&self, tid: i32) -> io::Result<()> {
        // SAFETY: `self.0` is a valid cpu_set_t of the size passed.
        check(unsafe {
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &self.0)
        })
        .map(drop)
    }

    /// Apply to every thread of process `pid` (0: this one).
    pub fn apply_to_process(&self, pid: i32) {
        let dir = if pid == 0 {
            "/proc/self/task".to_owned()
        } else {
            format!("/proc/{pid}/task")
        };
        for task in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                let _ = self.apply(tid);
            }
        }
    }
}

/// A new pseudo-terminal pair of the given size; both ends close-on-exec, the master
/// non-blocking (its reader polls; writers wait for POLLOUT).
pub fn openpty(cols: u16, rows: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave): (RawFd, RawFd) = (-1, -1);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the provided ints; the name buffer is null
    // (not wanted) and the termios pointer is null (defaults); `size` outlives the call.
    check(unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    })?;
    // SAFETY: openpty succeeded, so both descriptors are open and owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    set_cloexec(&master)?;
    set_cloexec(&slave)?;
    set_nonblocking(&master)?;
    Ok((master, slave))
}

/// Set a terminal's window size; the kernel signals SIGWINCH to its foreground group.
pub fn set_winsize(fd: &impl AsRawFd, cols: u16, rows: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct, which lives across the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
}

/// For use between fork and exec only (async-signal-safe): a new session whose controlling
/// terminal is stdin (the PTY's slave end), as a user process (see [`become_user_process`]).
pub fn pty_child_setup() -> io::Result<()> {
    // SAFETY: setsid and ioctl are async-signal-safe and take integers only.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    become_user_process();
    Ok(())
}

/// Write all of `buf` to a non-blocking descriptor, waiting for room when it is full.
pub fn write_all_nb(fd: &impl AsRawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf = &buf[n as usize..];
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd struct.
                unsafe { libc::poll(&mut pfd, 1, -1) };
            }
            _ => return Err(e),
        }
    }
    Ok(())
}

// ---- mounts by descriptor and the user namespace ----

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Mount a copy of the directory `source` at `target`, with its owners mapped through the user
/// namespace `userns` (ids on disk count from 0 as inside the sandbox; the mount shows them as
/// the sandbox's host ids).
pub fn mount_idmapped(
    source: impl AsRef<Path>,
    target: impl AsRef<Path>,
    userns: &impl AsRawFd,
    read_only: bool,
) -> io::Result<()> {
    let (src, tgt) = (cstr(source.as_ref())?, cstr(target.as_ref())?);
    let what = || format!("idmapped mount of {}", source.as_ref().display());
    // SAFETY: `src` is a valid C string; open_tree returns a new descriptor or fails.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    let fd = with_context(check(fd as libc::c_int), what)?;
    // SAFETY: open_tree succeeded; the descriptor is ours alone.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
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
    with_context(check(ret as libc::c_int), what)?;
    // SAFETY: both paths are valid C strings; the source is the detached tree we hold.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            tgt.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    with_context(check(ret as libc::c_int).map(drop), what)
}

/// Create files from now on as host id `id` (uid and gid), keeping every capability effective.
/// Overlayfs records the mounter's ids for its own work files, and the idmapped layers only
/// accept ids of the sandbox's range.
pub fn set_fs_ids(id: u32) -> io::Result<()> {
    // SAFETY: plain syscalls with integer arguments (they return the previous id).
    unsafe {
        libc::setfsgid(id);
        libc::setfsuid(id);
    }
    // Changing the fs uid away from 0 clears the file capabilities from the effective set:
    // raise the effective set back to the permitted one.
    let (_, permitted, _) = capget()?;
    capset(permitted, permitted, 0)
}

/// (effective, permitted, inheritable) capability sets of this thread.
pub fn capget() -> io::Result<(u64, u64, u64)> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: header and data match the kernel's v3 layout (one header, two data structs).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    check(ret as libc::c_int)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

/// Become root of the user namespace `userns` (host id `first` of the sandbox's range), with no
/// supplementary groups. The process must still be single-threaded.
pub fn enter_userns(userns: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: setns on a namespace descriptor we hold; integer arguments.
    let ret = unsafe { libc::setns(userns.as_raw_fd(), libc::CLONE_NEWUSER) };
    with_context(check(ret).map(drop), || {
        "entering the user namespace".into()
    })?;
    // SAFETY: plain syscalls; setgroups with size 0 reads no memory.
    let ret = unsafe {
        let failed = libc::setgroups(0, std::ptr::null()) < 0 || libc::setresgid(0, 0, 0) < 0;
        if failed {
            -1
        } else {
            libc::setresuid(0, 0, 0)
        }
    };
    with_context(check(ret).map(drop), || {
        "becoming root of the user namespace".into()
    })
}

/// Point stdout and stderr at the sandbox's /dev/null.
pub fn silence_stdio() -> io::Result<()> {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    for fd in [1, 2] {
        // SAFETY: dup2 only manipulates the descriptor table.
        check(unsafe { libc::dup2(null.as_raw_fd(), fd) })?;
    }
    Ok(())
}

// ---- resolving file requests ----

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;
const PROC_SUPER_MAGIC: libc::c_long = 0x9fa0;

/// Open `path` (absolute or not, always taken from the sandbox's `/`) the way a file request
/// may: `..` and symlinks never leave the root, and /proc's magic links (`/proc/1/exe`,
/// `/proc/*/fd/*`, `/proc/*/root`), which name objects rather than paths, are refused. Opened
/// non-blocking, so a FIFO or a device cannot stall the thread; `flags` adds to that.
pub fn open_in_root(path: &str, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let p = cstr(path)?;
    // O_PATH takes no other open flags.
    let extra = if flags & libc::O_PATH != 0 {
        libc::O_CLOEXEC
    } else {
        libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY
    };
    let how = OpenHow {
        flags: (flags | extra) as u64,
        mode: if flags & libc::O_CREAT != 0 {
            u64::from(mode)
        } else {
            0
        },
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    let root = c"/";
    // SAFETY: open with a valid C string; returns a new descriptor or fails.
    let dirfd = check(unsafe {
        libc::open(
            root.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: open succeeded; the descriptor is ours.
    let dirfd = unsafe { OwnedFd::from_raw_fd(dirfd) };
    // SAFETY: `p` is a valid C string and `how` a live open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd.as_raw_fd(),
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = check(fd as libc::c_int)?;
    // SAFETY: openat2 succeeded; the descriptor is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Is `fd` a file of the agent's own /proc entries (`/proc/1/maps`, `/proc/<agent thread>/...`)?
/// Those of a process that is not dumpable, like the agent, belong to the host's root, whose id
/// is not mapped in the sandbox's user namespace and shows as the overflow id.
pub fn is_agent_proc_file(fd: &impl AsRawFd) -> bool {
    // SAFETY: a zeroed statfs is a valid output buffer for fstatfs on our descriptor.
    let on_proc = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::fstatfs(fd.as_raw_fd(), &mut fs) == 0 && fs.f_type == PROC_SUPER_MAGIC
    };
    if !on_proc {
        return false;
    }
    let Ok(resolved) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
        return true;
    };
    let in_pid_dir = resolved
        .components()
        .nth(2)
        .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
        .is_some();
    // The /proc/<pid> directory itself always shows the task's uid; its entries show the
    // owner that dumpability decides.
    // SAFETY: a zeroed stat is a valid output buffer for fstat on our descriptor.
    let owner = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd.as_raw_fd(), &mut st) == 0).then_some(st.st_uid)
    };
    in_pid_dir && owner.is_none_or(|uid| uid == overflow_uid())
}

fn overflow_uid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65534)
}

/// Clear O_NONBLOCK once a descriptor is known to be a regular file.
pub fn set_blocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) }).map(drop)
}
