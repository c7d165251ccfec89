//! Sandbox networking: each sandbox gets its own network namespace with one veth pair to the
//! host on a private /30, a default route through the host, and NAT to the outside world.
//! An nftables table keeps sandboxes away from every address of the host itself (so from its
//! services and the API port), from each other, and from link-local metadata services.
//!
//! Addresses come from a host-wide pool shared by every server instance on the host: one file
//! per /30 slot under `/run/instavm/ipam`, claimed with `O_EXCL`.

use crate::sys::{self, netlink::Netlink};
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// 10.231.0.0/16: 16384 /30 slots.
const POOL_BASE: u32 = u32::from_be_bytes([10, 231, 0, 0]);
const POOL_SLOTS: u32 = 1 << 14;
const IPAM_DIR: &str = "/run/instavm/ipam";
/// Host-side interface names are `ivm<sandbox id>` (15 bytes, the kernel's limit).
pub const HOST_IF_PREFIX: &str = "ivm";

pub fn host_ifname(id: &str) -> String {
    format!("{HOST_IF_PREFIX}{id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(pub u32);

impl Slot {
    pub fn host_ip(self) -> Ipv4Addr {
        Ipv4Addr::from(POOL_BASE + self.0 * 4 + 1)
    }
    pub fn sandbox_ip(self) -> Ipv4Addr {
        Ipv4Addr::from(POOL_BASE + self.0 * 4 + 2)
    }
}

/// The host's network setup, shared by all sandboxes of a runtime.
pub struct Network {
    /// The host's network namespace, where veth peers are sent.
    host_netns: OwnedFd,
    /// Who owns a slot file: `<boot id> <instance> <sandbox id> <sandboxes dir>`.
    instance: String,
    boot_id: String,
    sandboxes_dir: PathBuf,
    pub nameservers: Vec<String>,
}

impl Network {
    /// Enable forwarding and install the firewall. Fails when nftables is not available:
    /// without the firewall a sandbox could reach host services, so there is no network at all.
    pub fn setup(instance: &str, sandboxes_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(IPAM_DIR)?;
        install_firewall()?;
        fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        Ok(Network {
            host_netns: fs::File::open("/proc/self/ns/net")?.into(),
            instance: instance.to_owned(),
            boot_id: fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            nameservers: host_nameservers(),
            sandboxes_dir: sandboxes_dir.to_path_buf(),
        })
    }

    fn slot_path(slot: u32) -> PathBuf {
        Path::new(IPAM_DIR).join(slot.to_string())
    }

    /// Claim a free /30 for sandbox `id`.
    pub fn allocate(&self, id: &str) -> io::Result<Slot> {
        let start = rand::random::<u32>() % POOL_SLOTS;
        for i in 0..POOL_SLOTS {
            let slot = (start + i) % POOL_SLOTS;
            let path = Self::slot_path(slot);
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    writeln!(
                        f,
                        "{} {} {} {}",
                        self.boot_id,
                        self.instance,
                        id,
                        self.sandboxes_dir.display()
                    )?;
                    return Ok(Slot(slot));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if self.is_stale(&fs::read_to_string(&path).unwrap_or_default()) {
                        let _ = fs::remove_file(&path);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("the sandbox address pool is exhausted"))
    }

    /// A claim left by a previous boot, or by a sandbox whose directory no longer exists.
    fn is_stale(&self, owner: &str) -> bool {
        if owner.trim().is_empty() {
            // Claimed a moment ago and not written yet.
            return false;
        }
        let mut parts = owner.trim_end().splitn(4, ' ');
        let (boot, _instance, id, dir) = (parts.next(), parts.next(), parts.next(), parts.next());
        match (boot, id, dir) {
            (Some(b), _, _) if b != self.boot_id => true,
            (_, Some(id), Some(dir)) => !Path::new(dir).join(id).exists(),
            // Being written right now, or an older format: leave it.
            _ => false,
        }
    }

    pub fn release(&self, slot: Slot) {
        let _ = fs::remove_file(Self::slot_path(slot.0));
    }

    /// Slots this instance holds: (slot, sandbox id).
    pub fn owned_slots(&self) -> Vec<(Slot, String)> {
        let mut out = Vec::new();
        for e in fs::read_dir(IPAM_DIR).into_iter().flatten().flatten() {
            let Some(slot) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let owner = fs::read_to_string(e.path()).unwrap_or_default();
            let mut parts = owner.trim_end().splitn(4, ' ');
            if let (Some(_boot), Some(inst), Some(id)) = (parts.next(), parts.next(), parts.next())
            {
                if inst == self.instance {
                    out.push((Slot(slot), id.to_owned()));
                }
            }
        }
        out
    }

    /// Connect a sandbox whose init is `pid`: a veth pair (`eth0` inside, `ivm<id>` outside),
    /// addresses, loopback, default route.
    pub fn attach(&self, id: &str, pid: i32, slot: Slot) -> io::Result<()> {
        let host_if = host_ifname(id);
        let host_netns = self.host_netns.as_raw_fd();
        let gateway = slot.host_ip();
        let addr = slot.sandbox_ip();
        let peer = host_if.clone();
        // Inside the sandbox's namespace: create the pair (sending the peer out to the host),
        // then bring up lo and eth0.
        sys::in_netns_of(pid, move || {
            let mut nl = Netlink::open()?;
            nl.create_veth("eth0", &peer, host_netns)?;
            nl.set_up(1)?; // lo is always index 1 in a new namespace
            let eth0 = nl.link_index("eth0")?;
            nl.add_address(eth0, addr, 30)?;
            nl.set_up(eth0)?;
            nl.add_default_route(gateway)
        })?;
        let mut nl = Netlink::open()?;
        let idx = nl.link_index(&host_if)?;
        nl.add_address(idx, gateway, 30)?;
        nl.set_up(idx)
    }

    /// Remove the host side of a sandbox's veth (the pair goes with it).
    pub fn detach(&self, id: &str) -> io::Result<()> {
        Netlink::open()?.delete_link(&host_ifname(id))
    }
}

/// The firewall for every sandbox of the host, replaced atomically and idempotently.
fn ruleset() -> String {
    let pool = format!("{}/16", Ipv4Addr::from(POOL_BASE));
    format!(
        r#"table inet instavm {{}}
flush table inet instavm
table inet instavm {{
    chain input {{
        type filter hook input priority filter - 10; policy accept;
        iifname "{p}*" ct state established,related accept comment "answers to the host's own connections"
        iifname "{p}*" drop comment "sandboxes never reach any address of the host"
    }}
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{p}*" oifname "{p}*" drop comment "no sandbox-to-sandbox traffic"
        iifname "{p}*" ip daddr 169.254.0.0/16 drop comment "no link-local metadata services"
        oifname "{p}*" ct state established,related accept
        oifname "{p}*" drop comment "nothing outside starts connections into a sandbox"
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {pool} oifname != "{p}*" masquerade
    }}
}}
"#,
        p = HOST_IF_PREFIX
    )
}

fn install_firewall() -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run nft (install the nftables package): {e}"),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(ruleset().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft refused the sandbox firewall: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The host's resolvers that a sandbox can reach: loopback ones (a local stub resolver) are on
/// the host itself, which sandboxes may not talk to.
fn host_nameservers() -> Vec<String> {
    fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_owned())
        .filter(|s| {
            s.parse::<Ipv4Addr>()
                .map(|ip| !ip.is_loopback())
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_claims_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("aaaaaaaaaaaa")).unwrap();
        let net = Network {
            host_netns: fs::File::open("/proc/self/ns/net").unwrap().into(),
            instance: "i".into(),
            boot_id: "boot".into(),
            nameservers: vec![],
            sandboxes_dir: dir.path().to_path_buf(),
        };
        let d = dir.path().display();
        assert!(!net.is_stale(""), "a claim being written");
        assert!(net.is_stale("oldboot i aaaaaaaaaaaa /x\n"), "another boot");
        assert!(
            !net.is_stale(&format!("boot i aaaaaaaaaaaa {d}\n")),
            "live sandbox"
        );
        assert!(
            net.is_stale(&format!("boot i bbbbbbbbbbbb {d}\n")),
            "sandbox gone"
        );
        assert!(!net.is_stale("boot i aaaaaaaaaaaa"), "older format, kept");
    }
}
