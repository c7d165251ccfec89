//! Sandbox networking: each sandbox gets its own network namespace with one veth pair to the
//! host on a private /30, a default route through the host, and NAT to the outside world.
//! An nftables table keeps sandboxes away from every address of the host itself (so from its
//! services and the API port), from each other, and from link-local metadata services.
//!
//! Egress policy (instavm-net): each sandbox's resolver and 80/443 name gate listen on the host
//! end of its veth (the only host ports a sandbox reaches, accepted below), and its policy lives
//! in the table `inet instavm_egress`, together with the host-wide block of private ranges.
//!
//! Addresses come from a host-wide pool shared by every server instance on the host: one file
//! per /30 slot under `/run/instavm/ipam`, claimed with `O_EXCL` (`slots.rs`).

use crate::slots::SlotPool;
use crate::sys::{self, netlink::Netlink};
use instavm_net::egress::policy::PrivateRanges;
use instavm_net::egress::{Egress, EgressConfig, DNS_PORT, GATE_PORT};
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
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
    slots: SlotPool,
    pub egress: Egress,
}

impl Network {
    /// Enable forwarding and install the firewall. Fails when nftables is not available:
    /// without the firewall a sandbox could reach host services, so there is no network at all.
    pub fn setup(
        instance: &str,
        sandboxes_dir: &Path,
        settings: &crate::EgressSettings,
    ) -> io::Result<Self> {
        let slots = SlotPool::open(IPAM_DIR, POOL_SLOTS, instance, sandboxes_dir)?;
        let private =
            PrivateRanges::new(&settings.private_ranges, &settings.allowed_private_ranges)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let upstreams = if settings.dns_upstreams.is_empty() {
            EgressConfig::host_upstreams()
        } else {
            settings.dns_upstreams.clone()
        };
        install_firewall()?;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| io::Error::other("the network needs a tokio runtime"))?;
        let egress = Egress::install(
            EgressConfig { upstreams, private },
            HOST_IF_PREFIX,
            handle.clone(),
        )?;
        handle.spawn(keep_firewall());
        fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        Ok(Network {
            host_netns: fs::File::open("/proc/self/ns/net")?.into(),
            slots,
            egress,
        })
    }

    /// Claim a free /30 for sandbox `id`.
    pub fn allocate(&self, id: &str) -> io::Result<Slot> {
        self.slots
            .allocate(id)
            .map(Slot)
            .map_err(|e| io::Error::new(e.kind(), format!("the sandbox address pool: {e}")))
    }

    pub fn release(&self, slot: Slot) {
        self.slots.release(slot.0)
    }

    /// Slots this instance holds: (slot, sandbox id).
    pub fn owned_slots(&self) -> Vec<(Slot, String)> {
        self.slots
            .owned()
            .into_iter()
            .map(|(n, id)| (Slot(n), id))
            .collect()
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

/// Connections a sandbox may have tracked at once (the host's conntrack table holds
/// `nf_conntrack_max`, 262,144 here, for every sandbox and the host together).
pub const MAX_TRACKED_FLOWS: u32 = 4096;
/// New flows per second a sandbox may open, after a burst.
pub const NEW_FLOWS_PER_SEC: u32 = 500;
pub const NEW_FLOWS_BURST: u32 = 1000;

/// The comment of the rule that lets sandboxes reach their resolver.
const RESOLVER_RULE: &str = "the sandbox's resolver (instavm-net)";

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
        iifname "{p}*" ip daddr {pool} meta l4proto {{ tcp, udp }} th dport {dns} accept comment "{resolver_rule}"
        iifname "{p}*" ip daddr {pool} tcp dport {gate} ct status dnat accept comment "the 80/443 name gate, only through the redirect"
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
{limits}"#,
        p = HOST_IF_PREFIX,
        dns = DNS_PORT,
        resolver_rule = RESOLVER_RULE,
        gate = GATE_PORT,
        limits = flow_limits(),
    )
}

/// Per-sandbox conntrack limits, keyed on the host side of the sandbox's veth. A table of its
/// own: runtimes of an older version re-apply `inet instavm` (flushing it) without knowing about
/// these rules, and must not remove them. Deleted and re-created whole, so a changed set
/// definition always applies.
fn flow_limits() -> String {
    format!(
        r#"table inet instavm_limits {{}}
delete table inet instavm_limits
table inet instavm_limits {{
    set tracked {{
        type ifname
        size 65536
        flags dynamic
    }}
    set opening {{
        type ifname
        size 65536
        flags dynamic,timeout
        timeout 1m
    }}
    chain forward {{
        type filter hook forward priority filter - 20; policy accept;
        iifname "{p}*" ct state new add @opening {{ iifname limit rate over {rate}/second burst {burst} packets }} counter drop comment "new flows per second per sandbox"
        iifname "{p}*" ct state new add @tracked {{ iifname ct count over {count} }} counter drop comment "tracked connections per sandbox"
    }}
}}
"#,
        p = HOST_IF_PREFIX,
        rate = NEW_FLOWS_PER_SEC,
        burst = NEW_FLOWS_BURST,
        count = MAX_TRACKED_FLOWS,
    )
}

/// Runtimes of an older version (another server on the host) re-apply `inet instavm` without
/// the rules that let sandboxes reach their resolver and name gate: put ours back when that
/// happens, within a couple of seconds.
async fn keep_firewall() {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let out = tokio::process::Command::new("nft")
            .args(["list", "chain", "inet", "instavm", "input"])
            .stderr(Stdio::null())
            .output()
            .await;
        let Ok(out) = out else { continue };
        if !String::from_utf8_lossy(&out.stdout).contains(RESOLVER_RULE) {
            tracing::warn!("the sandbox firewall lost its resolver rules (an older runtime re-applied it): installing it again");
            match tokio::task::spawn_blocking(install_firewall).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("re-installing the sandbox firewall: {e}"),
                Err(e) => tracing::error!("re-installing the sandbox firewall: {e}"),
            }
        }
    }
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
