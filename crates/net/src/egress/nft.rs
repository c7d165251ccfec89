//! The egress firewall: the nftables table `inet instavm_egress`, its own so that the main
//! `inet instavm` table (flushed and re-applied whole at every runtime start) leaves VM
//! policies, pinned addresses and denial counters in place across server restarts.
//!
//! ```text
//! forward (filter - 5):  from a VM: IPv6 → drop; private ranges → drop; then the VM's chain v_<id>
//! prerouting (dstnat - 5): the VM's chain n_<id> (80/443 of closed policies → the name gate)
//! v_<id>: established → accept; DNS/DoT elsewhere → deny; @cidr_<id> → accept;
//!         [80/443 when allowed] → accept; @pin_<id> → accept; deny
//! d_<id>: log (rate-limited) and count in the named counter deny_<id>, drop
//! ```
//!
//! A VM with an open policy has no entry in the `vms` verdict map; its `n_<id>` sends only
//! HTTPS to addresses pinned for its vault hosts to the gate (the vault proxy).

use super::policy::{PrivateRanges, Rules};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub const TABLE: &str = "inet instavm_egress";
/// Addresses one VM may have pinned at once.
pub const MAX_PINS: u32 = 16384;

/// Run an nft script (one atomic transaction).
pub fn run(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft refused the egress rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The same from async code.
pub async fn run_async(script: String) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn elements(cidrs: &[super::policy::Cidr]) -> String {
    cidrs
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table, its base chains and the private ranges (idempotent; per-VM objects stay).
/// `prefix` is the host-side interface prefix of sandboxes (`ivm`).
pub fn base(private: &PrivateRanges, prefix: &str) -> String {
    let mut s = format!(
        r#"table {TABLE} {{
    set private4 {{ type ipv4_addr; flags interval; auto-merge; }}
    set private_ok {{ type ipv4_addr; flags interval; auto-merge; }}
    map vms {{ type ifname : verdict; }}
    map nat_vms {{ type ifname : verdict; }}
    chain forward {{ type filter hook forward priority filter - 5; policy accept; }}
    chain prerouting {{ type nat hook prerouting priority dstnat - 5; policy accept; }}
}}
flush set {TABLE} private4
flush set {TABLE} private_ok
flush chain {TABLE} forward
flush chain {TABLE} prerouting
"#
    );
    if !private.blocked.is_empty() {
        let _ = writeln!(
            s,
            "add element {TABLE} private4 {{ {} }}",
            elements(&private.blocked)
        );
    }
    if !private.excepted.is_empty() {
        let _ = writeln!(
            s,
            "add element {TABLE} private_ok {{ {} }}",
            elements(&private.excepted)
        );
    }
    let _ = write!(
        s,
        r#"add rule {TABLE} forward iifname "{prefix}*" meta nfproto ipv6 counter drop comment "no IPv6 egress"
add rule {TABLE} forward iifname "{prefix}*" ip daddr @private4 ip daddr != @private_ok counter drop comment "private ranges"
add rule {TABLE} forward iifname vmap @vms
add rule {TABLE} prerouting iifname vmap @nat_vms
"#
    );
    s
}

/// Objects of one VM, created when missing (`add` never fails on an existing object).
fn vm_objects(id: &str) -> String {
    format!(
        r#"add set {TABLE} pin_{id} {{ type ipv4_addr; flags timeout; size {MAX_PINS}; }}
add set {TABLE} cidr_{id} {{ type ipv4_addr; flags interval; auto-merge; }}
add counter {TABLE} deny_{id}
add chain {TABLE} v_{id}
add chain {TABLE} n_{id}
add chain {TABLE} d_{id}
"#
    )
}

/// Apply a VM's rules. `gate` is the name gate's address (the host end of the VM's veth).
pub fn apply_vm(id: &str, ifname: &str, gate: (Ipv4Addr, u16), rules: &Rules) -> String {
    let mut s = vm_objects(id);
    let _ = write!(
        s,
        r#"flush chain {TABLE} d_{id}
add rule {TABLE} d_{id} limit rate 5/second log prefix "instavm egress deny {id}: " level info
add rule {TABLE} d_{id} counter name "deny_{id}" drop
"#
    );
    if rules.open {
        // Out of the forward map: nothing but the host-wide rules applies. (`add` first, so
        // the `delete` always has something to delete.) In prerouting only HTTPS to addresses
        // pinned for hosts of the VM's vaults goes to the gate, which hands it to the vault
        // proxy (an open policy pins nothing else).
        let (gip, gport) = gate;
        let _ = write!(
            s,
            r#"add element {TABLE} vms {{ "{ifname}" : jump v_{id} }}
delete element {TABLE} vms {{ "{ifname}" }}
flush chain {TABLE} v_{id}
flush chain {TABLE} n_{id}
flush set {TABLE} cidr_{id}
add rule {TABLE} n_{id} ip daddr @pin_{id} tcp dport 443 dnat ip to {gip}:{gport} comment "vault hosts"
add element {TABLE} nat_vms {{ "{ifname}" : jump n_{id} }}
"#
        );
        return s;
    }
    let _ = write!(
        s,
        r#"flush chain {TABLE} v_{id}
flush chain {TABLE} n_{id}
flush set {TABLE} cidr_{id}
"#
    );
    if !rules.cidrs.is_empty() {
        let _ = writeln!(
            s,
            "add element {TABLE} cidr_{id} {{ {} }}",
            elements(&rules.cidrs)
        );
    }
    let v = format!("add rule {TABLE} v_{id}");
    let _ = writeln!(s, "{v} ct state established,related accept");
    let _ = writeln!(
        s,
        "{v} meta l4proto {{ tcp, udp }} th dport {{ 53, 853 }} goto d_{id} comment \"DNS only through the VM's resolver\""
    );
    let _ = writeln!(s, "{v} ip daddr @cidr_{id} accept");
    if rules.policy.allow_http {
        let _ = writeln!(s, "{v} tcp dport 80 accept");
    }
    if rules.policy.allow_https {
        let _ = writeln!(s, "{v} tcp dport 443 accept");
    }
    let _ = writeln!(s, "{v} ip daddr @pin_{id} accept");
    let _ = writeln!(s, "{v} goto d_{id}");
    let n = format!("add rule {TABLE} n_{id}");
    let _ = writeln!(s, "{n} ip daddr @cidr_{id} return");
    let (gip, gport) = gate;
    if !rules.policy.allow_http {
        let _ = writeln!(s, "{n} tcp dport 80 dnat ip to {gip}:{gport}");
    }
    if !rules.policy.allow_https {
        let _ = writeln!(s, "{n} tcp dport 443 dnat ip to {gip}:{gport}");
    }
    let _ = write!(
        s,
        r#"add element {TABLE} vms {{ "{ifname}" : jump v_{id} }}
add element {TABLE} nat_vms {{ "{ifname}" : jump n_{id} }}
"#
    );
    s
}

/// Forget the pinned addresses of a VM (its resolver starts afresh).
pub fn flush_pins(id: &str) -> String {
    format!("{}flush set {TABLE} pin_{id}\n", vm_objects(id))
}

/// Remove everything of a VM.
pub fn remove_vm(id: &str, ifname: &str) -> String {
    format!(
        r#"{objects}add element {TABLE} vms {{ "{ifname}" : jump v_{id} }}
delete element {TABLE} vms {{ "{ifname}" }}
add element {TABLE} nat_vms {{ "{ifname}" : jump n_{id} }}
delete element {TABLE} nat_vms {{ "{ifname}" }}
flush chain {TABLE} v_{id}
flush chain {TABLE} n_{id}
flush chain {TABLE} d_{id}
delete chain {TABLE} v_{id}
delete chain {TABLE} n_{id}
delete chain {TABLE} d_{id}
delete set {TABLE} pin_{id}
delete set {TABLE} cidr_{id}
delete counter {TABLE} deny_{id}
"#,
        objects = vm_objects(id)
    )
}

/// Pin addresses for `secs` each (re-adding an element resets its timeout: add, delete, add).
pub fn pin(id: &str, addrs: &[(Ipv4Addr, u32)]) -> String {
    let mut s = String::new();
    let plain = addrs
        .iter()
        .map(|(ip, _)| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let timed = addrs
        .iter()
        .map(|(ip, t)| format!("{ip} timeout {t}s"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(s, "add element {TABLE} pin_{id} {{ {plain} }}");
    let _ = writeln!(s, "delete element {TABLE} pin_{id} {{ {plain} }}");
    let _ = writeln!(s, "add element {TABLE} pin_{id} {{ {timed} }}");
    s
}

/// Packets the VM's firewall chain refused so far.
pub fn denied_packets(id: &str) -> u64 {
    let out = Command::new("nft")
        .args([
            "list",
            "counter",
            "inet",
            "instavm_egress",
            &format!("deny_{id}"),
        ])
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else { return 0 };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "packets" {
            return words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use instavm_runtime::EgressPolicy;

    /// nft accepts every script we generate (`nft -c`: checked, not applied). Needs root.
    #[test]
    fn scripts_are_valid_nft() {
        if unsafe_is_root() {
            let closed = Rules::new(&EgressPolicy {
                allow_package_managers: true,
                allow_http: true,
                allow_https: false,
                allowed_domains: vec!["example.com".into(), "*.example.org".into()],
                allowed_cidrs: vec!["198.18.0.0/24".into(), "1.2.3.4/32".into()],
            });
            let open = Rules::new(&EgressPolicy::default());
            let gate = (Ipv4Addr::new(10, 231, 0, 1), 15080);
            let script = format!(
                "{}{}{}{}{}{}",
                base(
                    &PrivateRanges::new(&[], &["10.20.0.0/16".into()]).unwrap(),
                    "ivm"
                ),
                apply_vm("0123456789ab", "ivm0123456789ab", gate, &closed),
                pin("0123456789ab", &[(Ipv4Addr::new(198, 18, 0, 1), 30)]),
                apply_vm("0123456789ab", "ivm0123456789ab", gate, &open),
                flush_pins("0123456789ab"),
                remove_vm("0123456789ab", "ivm0123456789ab"),
            );
            let mut child = Command::new("nft")
                .args(["-c", "-f", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn unsafe_is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
}
