//! Turning the freshly cloned process into a sandbox: its root filesystem, /proc, /dev, and the
//! few files that make a Linux userland happy. Runs once, as host root, before the lock-down;
//! ends by entering the sandbox's own user namespace.

use crate::sys;
use instavm_protocol::AgentConfig;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

/// /proc files that expose host kernel internals; each is covered with /dev/null.
const MASKED_PROC_FILES: &[&str] = &[
    "kcore",
    "keys",
    "key-users",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "kallsyms",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "sysrq-trigger",
    // The host's boot command line and kernel memory layouts.
    "cmdline",
    "slabinfo",
    "vmallocinfo",
    "pagetypeinfo",
    "kmsg",
    "config.gz",
];
/// /sys files and directories about the host's kernel and firmware, covered like the above.
const MASKED_SYS_FILES: &[&str] = &["kernel/vmcoreinfo", "kernel/notes"];
const MASKED_SYS_DIRS: &[&str] = &[
    "firmware",
    "kernel/debug",
    "kernel/tracing",
    "kernel/security",
];
/// /proc directories that expose host hardware; each is covered with an empty read-only tmpfs.
const MASKED_PROC_DIRS: &[&str] = &["acpi", "scsi", "asound"];
/// /proc trees that stay visible but read-only: root in the sandbox is real root, and writing
/// host-wide sysctls or IRQ affinities must not be possible.
const READONLY_PROC: &[&str] = &["sys", "irq", "bus", "fs"];

pub fn enter_sandbox(cfg: &AgentConfig, userns: &OwnedFd) -> io::Result<()> {
    // A cgroup namespace rooted at the sandbox's own cgroup (the host put us there already).
    sys::unshare(libc::CLONE_NEWCGROUP)?;
    // Nothing we mount may propagate back to the host.
    sys::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;

    // Staging: a private tmpfs where the layers get neutral relative names, which is all that
    // the overlay's options in /proc/self/mountinfo show of them.
    let stage = Path::new(&cfg.root_dir);
    sys::mount(
        Some("tmpfs"),
        stage,
        Some("tmpfs"),
        NOSUID | NODEV | NOEXEC,
        Some("mode=0700,size=64k"),
    )?;
    std::env::set_current_dir(stage)?;
    for d in ["lower", "layer", "root"] {
        mkdir(d)?;
    }
    // Both layers keep canonical owners on disk (root is 0), mapped to the sandbox's host ids.
    let layer_dir = Path::new(&cfg.upper_dir).parent().unwrap_or(Path::new("/"));
    let name = |p: &str| {
        Path::new(p)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    sys::mount_idmapped(&cfg.lower_dir, "lower", userns, true)?;
    sys::mount_idmapped(layer_dir, "layer", userns, false)?;
    // Everything created from here on belongs to the sandbox's root.
    sys::set_fs_ids(cfg.host_root_id)?;
    let opts = format!(
        "lowerdir=lower,upperdir=layer/{},workdir=layer/{}",
        name(&cfg.upper_dir),
        name(&cfg.work_dir)
    );
    sys::mount(Some("overlay"), "root", Some("overlay"), NODEV, Some(&opts))?;
    let root = &stage.join("root");

    mount_proc(root)?;
    // sysfs of the sandbox's own network namespace, read-only.
    mkdir(root.join("sys"))?;
    sys::mount(
        Some("sysfs"),
        root.join("sys"),
        Some("sysfs"),
        libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
        None,
    )?;
    mount_dev(root, cfg.shm_bytes, cfg.host_root_id)?;
    mask_proc(root)?;
    mask_sys(root)?;
    write_etc(root, cfg)?;
    mkdir(root.join("tmp"))?;
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    mkdir(root.join(cfg.workdir.trim_start_matches('/')))?;

    sys::sethostname(&cfg.hostname)?;
    std::env::set_current_dir(root)?;
    sys::pivot_root_here()?;
    sys::umount_detach(".")?;
    std::env::set_current_dir("/")?;
    sys::enter_userns(userns)
}

fn mkdir(p: impl AsRef<Path>) -> io::Result<()> {
    fs::create_dir_all(p.as_ref())
        .map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", p.as_ref().display())))
}

fn mount_proc(root: &Path) -> io::Result<()> {
    let proc_dir = root.join("proc");
    mkdir(&proc_dir)?;
    sys::mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        NOSUID | NODEV | NOEXEC,
        None,
    )?;
    // Network sysctls are per namespace: settle them while /proc/sys is still writable. No IPv6
    // in the sandbox, so there is no link-local path to the host side of the veth.
    for name in ["all", "default"] {
        let p = proc_dir.join(format!("sys/net/ipv6/conf/{name}/disable_ipv6"));
        let _ = fs::write(p, "1");
    }
    // The network namespace belongs to the host's user namespace, so CAP_NET_BIND_SERVICE of
    // the sandbox's root does not count there: let everyone bind low ports of this namespace.
    let _ = fs::write(
        proc_dir.join("sys/net/ipv4/ip_unprivileged_port_start"),
        "0",
    );
    Ok(())
}

fn mount_dev(root: &Path, shm_bytes: u64, host_root_id: u32) -> io::Result<()> {
    let dev = root.join("dev");
    mkdir(&dev)?;
    sys::mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        NOSUID | NOEXEC,
        Some("mode=755,size=65536k"),
    )?;
    let chr = libc::S_IFCHR | 0o666;
    // mknod honours the fs uid: the nodes belong to the sandbox's root.
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        sys::mknod(&p, chr, major, minor)?;
        // mknod honours the umask; devices must be usable by every user.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        symlink(target, dev.join(link))?;
    }
    mkdir(dev.join("pts"))?;
    sys::mount(
        Some("devpts"),
        dev.join("pts"),
        Some("devpts"),
        NOSUID | NOEXEC,
        // Group tty (5) of the sandbox, in host ids.
        Some(&format!(
            "newinstance,ptmxmode=0666,mode=0620,gid={}",
            host_root_id + 5
        )),
    )?;
    mkdir(dev.join("shm"))?;
    sys::mount(
        Some("tmpfs"),
        dev.join("shm"),
        Some("tmpfs"),
        NOSUID | NODEV,
        Some(&format!("mode=1777,size={shm_bytes}")),
    )?;
    Ok(())
}

fn mask_proc(root: &Path) -> io::Result<()> {
    let proc_dir = root.join("proc");
    mask(root, &proc_dir, MASKED_PROC_FILES, MASKED_PROC_DIRS)?;
    for d in READONLY_PROC {
        let p = proc_dir.join(d);
        if p.exists() {
            let src = path_str(&p)?;
            sys::mount(Some(src), &p, None, libc::MS_BIND | libc::MS_REC, None)?;
            sys::mount(
                None,
                &p,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
                None,
            )?;
        }
    }
    Ok(())
}

fn mask_sys(root: &Path) -> io::Result<()> {
    mask(root, &root.join("sys"), MASKED_SYS_FILES, MASKED_SYS_DIRS)
}

/// Cover the `files` under `base` that exist with the sandbox's `/dev/null`, and the `dirs`
/// with an empty read-only tmpfs.
fn mask(root: &Path, base: &Path, files: &[&str], dirs: &[&str]) -> io::Result<()> {
    let null = root.join("dev/null");
    for f in files {
        let p = base.join(f);
        if p.is_file() {
            sys::mount(Some(path_str(&null)?), &p, None, libc::MS_BIND, None)?;
        }
    }
    for d in dirs {
        let p = base.join(d);
        if p.is_dir() {
            sys::mount(
                Some("tmpfs"),
                &p,
                Some("tmpfs"),
                libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
                Some("size=0"),
            )?;
        }
    }
    Ok(())
}

fn path_str(p: &Path) -> io::Result<&str> {
    p.to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "non-UTF-8 path"))
}

/// Replace a file in the sandbox's /etc, whatever was there (the image may ship a symlink).
fn replace(path: &Path, contents: &str) -> io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.is_dir() {
            fs::remove_file(path)?;
        }
    }
    fs::write(path, contents)
}

fn write_etc(root: &Path, cfg: &AgentConfig) -> io::Result<()> {
    let etc = root.join("etc");
    mkdir(&etc)?;
    replace(&etc.join("hostname"), &format!("{}\n", cfg.hostname))?;
    replace(
        &etc.join("hosts"),
        &format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{0}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            cfg.hostname
        ),
    )?;
    let resolv: String = cfg
        .nameservers
        .iter()
        .map(|ns| format!("nameserver {ns}\n"))
        .collect();
    replace(&etc.join("resolv.conf"), &resolv)?;
    Ok(())
}
