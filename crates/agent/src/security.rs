//! The lock-down applied once the sandbox is set up, before any user code runs. It is inherited
//! by every process in the sandbox. See docs/threat-model.md for what is allowed and why.

use crate::sys;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::io;

/// Capabilities that sandboxed root keeps: what a package manager or a typical program run as
/// root needs inside its own files (the same set container runtimes grant by default, minus
/// MKNOD, NET_RAW, SETFCAP and AUDIT_WRITE, which would let a sandbox forge audit records). Everything else (SYS_ADMIN, SYS_MODULE, SYS_PTRACE, NET_ADMIN,
/// SYS_TIME, DAC_READ_SEARCH, ...) is gone from every set, bounding set included.
const KEPT_CAPS: &[u32] = &[
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    18, // SYS_CHROOT
];
const LAST_CAP: u32 = 40;

pub fn lock_down() -> io::Result<()> {
    // Nobody in the sandbox may ptrace or read the memory of the agent (it holds the host's
    // socket); children become dumpable again when they exec.
    sys::prctl(libc::PR_SET_DUMPABLE, 0)?;
    drop_capabilities()?;
    sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    install_seccomp()
}

fn drop_capabilities() -> io::Result<()> {
    for cap in 0..=LAST_CAP {
        if !KEPT_CAPS.contains(&cap) {
            // EINVAL: the kernel does not know this capability; nothing to drop.
            match sys::prctl(libc::PR_CAPBSET_DROP, cap.into()) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                r => r?,
            }
        }
    }
    sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    )?;
    let mask = KEPT_CAPS.iter().fold(0u64, |m, c| m | (1 << c));
    sys::capset(mask, mask, 0)
}

/// System calls refused with EPERM, whatever their arguments.
const DENIED: &[i64] = &[
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_setns,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_syslog,
    libc::SYS_lookup_dcookie,
    libc::SYS_uselib,
    libc::SYS_fanotify_init,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_vhangup,
    libc::SYS_nfsservctl,
    libc::SYS__sysctl,
];

/// Namespace-creating flags of clone/unshare: a new user namespace would hand the caller a full
/// capability set over fresh namespaces, the classic first step of a kernel exploit.
const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

fn flag_rules(arg: u8) -> io::Result<Vec<SeccompRule>> {
    NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let cond = SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .map_err(to_io)?;
            SeccompRule::new(vec![cond]).map_err(to_io)
        })
        .collect()
}

fn to_io(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("seccomp: {e}"))
}

fn eq_rule(arg: u8, value: u64) -> io::Result<SeccompRule> {
    let cond = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        .map_err(to_io)?;
    SeccompRule::new(vec![cond]).map_err(to_io)
}

fn build_filter() -> io::Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in DENIED {
        rules.insert(nr, vec![]);
    }
    rules.insert(libc::SYS_clone, flag_rules(0)?);
    rules.insert(libc::SYS_unshare, flag_rules(0)?);
    // Injecting keystrokes into a terminal that someone else reads.
    rules.insert(
        libc::SYS_ioctl,
        vec![eq_rule(1, libc::TIOCSTI)?, eq_rule(1, libc::TIOCLINUX)?],
    );
    compile(rules, libc::EPERM)
}

/// clone3 passes its flags in memory, where a filter cannot look: answer ENOSYS so that libc
/// falls back to clone(2), whose flags are checked. seccompiler has one match action per filter,
/// so this is a second, separate filter.
fn build_clone3_filter() -> io::Result<BpfProgram> {
    compile(BTreeMap::from([(libc::SYS_clone3, vec![])]), libc::ENOSYS)
}

/// Socket address families a sandbox may use: local sockets, IPv4, IPv6 and netlink (`ip`,
/// glibc's getaddrinfo and getifaddrs). Everything else (AF_VSOCK, which reaches the host's
/// vsock space beside the firewall; AF_PACKET; AF_ALG; AF_KEY; Bluetooth, TIPC, RDS, XDP, ...)
/// is kernel attack surface nobody's code needs here.
const SOCKET_FAMILIES: &[u64] = &[
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
    libc::AF_NETLINK as u64,
];

/// `socket` and `socketpair` with any other family answer EAFNOSUPPORT, what a kernel without
/// that family says, so programs fall back as they would there (a third filter: one errno each).
fn build_socket_filter() -> io::Result<BpfProgram> {
    let other_family = SOCKET_FAMILIES
        .iter()
        .map(|&family| {
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, family)
                .map_err(to_io)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let rule = || SeccompRule::new(other_family.clone()).map_err(to_io);
    compile(
        BTreeMap::from([
            (libc::SYS_socket, vec![rule()?]),
            (libc::SYS_socketpair, vec![rule()?]),
        ]),
        libc::EAFNOSUPPORT,
    )
}

/// A filter that answers the matching calls with `errno` and allows everything else.
fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> io::Result<BpfProgram> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        TargetArch::x86_64,
    )
    .map_err(to_io)?;
    filter.try_into().map_err(to_io)
}

fn install_seccomp() -> io::Result<()> {
    seccompiler::apply_filter(&build_filter()?).map_err(to_io)?;
    seccompiler::apply_filter(&build_clone3_filter()?).map_err(to_io)?;
    seccompiler::apply_filter(&build_socket_filter()?).map_err(to_io)
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_compiles() {
        assert!(!super::build_filter().unwrap().is_empty());
        assert!(!super::build_clone3_filter().unwrap().is_empty());
        assert!(!super::build_socket_filter().unwrap().is_empty());
    }
}
