//! Egress policy, enforced on the host: every VM gets a resolver (`dns`) and a name gate for
//! ports 80/443 (`gate`) on the host end of its veth, and its own chains and sets in the
//! nftables table `inet instavm_egress` (`nft`). What the five policy fields mean is in
//! `policy` and docs/network.md.

pub mod dns;
pub mod gate;
pub mod nft;
pub mod policy;

use instavm_runtime::EgressPolicy;
use policy::{PrivateRanges, Rules};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// The VM's resolver listens here (UDP and TCP) on the host end of its veth.
pub const DNS_PORT: u16 = 53;
/// The name gate's port on the host end of each veth (only reached through the redirect).
pub const GATE_PORT: u16 = 15080;
/// Shortest and longest time an address stays pinned, whatever the answer's TTL (a TTL of 0
/// still leaves time to connect; a huge one does not pin forever).
pub const MIN_PIN_SECS: u32 = 30;
pub const MAX_PIN_SECS: u32 = 3600;
/// DNS questions per second a VM may ask (after a burst), and at once.
const QUERIES_PER_SEC: f64 = 500.0;
const QUERY_BURST: f64 = 1000.0;
const MAX_INFLIGHT: usize = 64;
/// Denials logged one by one per VM and second.
const MAX_DENIAL_LOGS: u32 = 20;

/// Host-wide egress settings.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// Where the resolvers forward (`--dns-upstream`, else the host's resolv.conf).
    pub upstreams: Vec<SocketAddr>,
    pub private: PrivateRanges,
}

impl EgressConfig {
    /// The host's resolvers from /etc/resolv.conf (loopback ones too: the forwarding happens
    /// on the host).
    pub fn host_upstreams() -> Vec<SocketAddr> {
        std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|s| s.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    }
}

/// Parse `ADDR[:PORT]` (port 53 by default).
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not ADDR or ADDR:PORT"))
}

/// Whether `ip` is one of the host's own addresses (it can be bound here): never pinned, never
/// a destination of the gate, which connects from the host itself.
pub fn is_host_address(ip: Ipv4Addr) -> bool {
    ip.is_unspecified() || ip.is_broadcast() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// What the resolver and the gate of one VM share.
pub struct VmState {
    pub id: String,
    pub ifname: String,
    pub host_ip: Ipv4Addr,
    pub sandbox_ip: Ipv4Addr,
    cfg: Arc<EgressConfig>,
    rules: RwLock<Arc<Rules>>,
    /// Address → names it was resolved for, with the pin's expiry.
    pins: Mutex<HashMap<Ipv4Addr, HashMap<String, Instant>>>,
    denials: AtomicU64,
    log_window: Mutex<(Instant, u32)>,
    bucket: Mutex<(f64, Instant)>,
    inflight: Arc<Semaphore>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl VmState {
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Count and log a refused attempt (at most `MAX_DENIAL_LOGS` lines a second per VM: a
    /// flood is counted in full but cannot flood the log).
    pub fn deny(&self, what: std::fmt::Arguments<'_>) {
        self.denials.fetch_add(1, Ordering::Relaxed);
        let mut w = self.log_window.lock().unwrap_or_else(|e| e.into_inner());
        if w.0.elapsed() >= Duration::from_secs(1) {
            if w.1 > MAX_DENIAL_LOGS {
                tracing::info!(vm = %self.id, "egress denied: {} more in the last second (not logged one by one)", w.1 - MAX_DENIAL_LOGS);
            }
            *w = (Instant::now(), 0);
        }
        w.1 += 1;
        if w.1 <= MAX_DENIAL_LOGS {
            tracing::info!(vm = %self.id, "egress denied: {what}");
        }
    }

    fn take_query_token(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * QUERIES_PER_SEC).min(QUERY_BURST);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether `ip` was pinned for `name` and has not expired.
    pub fn pinned(&self, ip: Ipv4Addr, name: &str) -> bool {
        let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        pins.get(&ip)
            .and_then(|names| names.get(name))
            .is_some_and(|exp| *exp > Instant::now())
    }

    /// Pin `addrs` (with their TTLs) for `name`: in the nftables set first, then for the gate.
    async fn pin(&self, name: &str, addrs: &[(Ipv4Addr, u32)]) -> io::Result<()> {
        let now = Instant::now();
        let mut todo = Vec::new();
        {
            let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
            for &(ip, ttl) in addrs {
                let secs = ttl.clamp(MIN_PIN_SECS, MAX_PIN_SECS);
                let want = now + Duration::from_secs(u64::from(secs));
                // The kernel's entry is refreshed only when it would expire noticeably earlier
                // than the new answer allows (repeated questions cost no nft run).
                let latest = pins
                    .get(&ip)
                    .and_then(|m| m.values().max().copied())
                    .unwrap_or(now);
                if latest + Duration::from_secs(5) < want
                    || !pins.get(&ip).is_some_and(|m| m.contains_key(name))
                {
                    todo.push((ip, secs));
                }
            }
        }
        if !todo.is_empty() {
            // Never shorten a pin another name holds: use the longest of the two.
            let todo: Vec<(Ipv4Addr, u32)> = {
                let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
                todo.into_iter()
                    .map(|(ip, secs)| {
                        let held = pins
                            .get(&ip)
                            .and_then(|m| m.values().max().copied())
                            .map(|e| e.saturating_duration_since(now).as_secs() as u32)
                            .unwrap_or(0);
                        (ip, secs.max(held))
                    })
                    .collect()
            };
            nft::run_async(nft::pin(&self.id, &todo)).await?;
        }
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        if pins.len() > nft::MAX_PINS as usize {
            pins.retain(|_, m| {
                m.retain(|_, e| *e > now);
                !m.is_empty()
            });
        }
        for &(ip, ttl) in addrs {
            let secs = ttl.clamp(MIN_PIN_SECS, MAX_PIN_SECS);
            let exp = now + Duration::from_secs(u64::from(secs));
            let e = pins
                .entry(ip)
                .or_default()
                .entry(name.to_owned())
                .or_insert(exp);
            *e = (*e).max(exp);
        }
        Ok(())
    }
}

/// The egress side of a runtime: one per host network setup.
pub struct Egress {
    cfg: Arc<EgressConfig>,
    handle: Handle,
    prefix: String,
}

/// The VMs served in this process, whichever `Egress` attached them: a runtime re-opened in
/// the same process (tests) takes its VMs over from the previous one.
static VMS: Mutex<Option<HashMap<String, Arc<VmState>>>> = Mutex::new(None);

fn vms() -> std::sync::MutexGuard<'static, Option<HashMap<String, Arc<VmState>>>> {
    VMS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bind, retrying for a moment while a task that held the address is still being cancelled.
fn bind_retry<T>(f: impl Fn() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl Egress {
    /// Install the table and its host-wide rules (blocking; call from a runtime context or
    /// pass its handle). `prefix` is the sandboxes' host-side interface prefix.
    pub fn install(cfg: EgressConfig, prefix: &str, handle: Handle) -> io::Result<Egress> {
        nft::run(&nft::base(&cfg.private, prefix))?;
        if cfg.upstreams.is_empty() {
            tracing::warn!("no DNS upstream (resolv.conf has none and --dns-upstream is not set): names will not resolve in VMs");
        }
        Ok(Egress {
            cfg: Arc::new(cfg),
            handle,
            prefix: prefix.to_owned(),
        })
    }

    pub fn config(&self) -> &EgressConfig {
        &self.cfg
    }

    /// Start a VM's resolver and gate on `host_ip` (already on the host end of its veth) and
    /// apply `policy` (blocking). Also for VMs recovered after a restart: their pins are
    /// forgotten, the policy applied again.
    pub fn attach(
        &self,
        id: &str,
        host_ip: Ipv4Addr,
        sandbox_ip: Ipv4Addr,
        policy: &EgressPolicy,
    ) -> io::Result<()> {
        check_id(id)?;
        self.detach_tasks(id);
        let ifname = format!("{}{id}", self.prefix);
        let rules = Rules::new(policy);
        nft::run(&format!(
            "{}{}",
            nft::flush_pins(id),
            nft::apply_vm(id, &ifname, (host_ip, GATE_PORT), &rules)
        ))?;
        let vm = Arc::new(VmState {
            id: id.to_owned(),
            ifname,
            host_ip,
            sandbox_ip,
            cfg: self.cfg.clone(),
            rules: RwLock::new(Arc::new(rules)),
            pins: Mutex::new(HashMap::new()),
            denials: AtomicU64::new(0),
            log_window: Mutex::new((Instant::now(), 0)),
            bucket: Mutex::new((QUERY_BURST, Instant::now())),
            inflight: Arc::new(Semaphore::new(MAX_INFLIGHT)),
            tasks: Mutex::new(Vec::new()),
        });
        let udp = bind_retry(|| std::net::UdpSocket::bind((host_ip, DNS_PORT)))?;
        udp.set_nonblocking(true)?;
        let tcp = bind_retry(|| std::net::TcpListener::bind((host_ip, DNS_PORT)))?;
        tcp.set_nonblocking(true)?;
        let gate = bind_retry(|| std::net::TcpListener::bind((host_ip, GATE_PORT)))?;
        gate.set_nonblocking(true)?;
        let _guard = self.handle.enter();
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let gate = tokio::net::TcpListener::from_std(gate)?;
        let tasks = vec![
            self.handle.spawn(dns::serve_udp(vm.clone(), udp)),
            self.handle.spawn(dns::serve_tcp(vm.clone(), tcp)),
            self.handle.spawn(gate::serve(vm.clone(), gate)),
        ];
        *vm.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        vms()
            .get_or_insert_with(HashMap::new)
            .insert(id.to_owned(), vm);
        Ok(())
    }

    fn vm(&self, id: &str) -> io::Result<Arc<VmState>> {
        vms()
            .as_ref()
            .and_then(|m| m.get(id))
            .cloned()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no egress state for {id}"))
            })
    }

    /// Replace a VM's policy (blocking: one nft transaction). New connections follow it,
    /// established ones stay. A policy that only adds names keeps the pins; one that drops a
    /// name (or closes an open policy) forgets them all, so nothing resolved under the old
    /// policy stays reachable.
    pub fn set_policy(&self, id: &str, policy: &EgressPolicy) -> io::Result<()> {
        let vm = self.vm(id)?;
        let rules = Rules::new(policy);
        let old = vm.rules();
        let narrower = old.open != rules.open || old.names.iter().any(|p| !rules.names.contains(p));
        let mut script = String::new();
        if narrower {
            script.push_str(&nft::flush_pins(id));
        }
        script.push_str(&nft::apply_vm(
            id,
            &vm.ifname,
            (vm.host_ip, GATE_PORT),
            &rules,
        ));
        nft::run(&script)?;
        if narrower {
            vm.pins.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        *vm.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
        Ok(())
    }

    /// Refused attempts: DNS names and gate connections, plus packets the firewall dropped.
    pub fn denials(&self, id: &str) -> io::Result<u64> {
        let vm = self.vm(id)?;
        Ok(vm.denials.load(Ordering::Relaxed) + nft::denied_packets(id))
    }

    fn detach_tasks(&self, id: &str) {
        let vm = vms().as_mut().and_then(|m| m.remove(id));
        if let Some(vm) = vm {
            for t in vm.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                t.abort();
            }
        }
    }

    /// Stop a VM's resolver and gate and remove its firewall objects (blocking).
    pub fn detach(&self, id: &str) {
        if check_id(id).is_err() {
            return;
        }
        self.detach_tasks(id);
        let ifname = format!("{}{id}", self.prefix);
        if let Err(e) = nft::run(&nft::remove_vm(id, &ifname)) {
            tracing::warn!(vm = %id, "removing egress rules: {e}");
        }
    }
}

/// Ids go into nft object names: letters, digits and `_` only.
fn check_id(id: &str) -> io::Result<()> {
    if !id.is_empty()
        && id.len() <= 32
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad VM id {id:?}"),
        ))
    }
}
