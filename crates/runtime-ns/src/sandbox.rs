//! Sandbox lifecycle: create, watch, expire, destroy, and recovery after a restart.

use crate::agent_client::AgentClient;
use crate::cgroup::{cgroup_key, Cgroups, Limits};
use crate::ids::{self, IdRange, IdRanges};
use crate::image::{self, ImageStore};
use crate::layers::Layers;
use crate::network::{Network, Slot};
use crate::record::{self, Record};
use crate::volumes::Volumes;
use crate::{sys, NsConfig};
use chrono::{DateTime, Utc};
use instavm_protocol::{AgentConfig, Request, Response};
use instavm_runtime::*;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

mod live;
mod mounts;
pub use live::push_env;

/// Working directory of executed code inside every sandbox.
pub const WORKDIR: &str = "/app";
/// Hard floor for a sandbox's memory: the agent and an idle interpreter need about 10 MiB.
const MIN_MEMORY_MB: u32 = 64;
const MIN_DISK_MB: u64 = 16;
const MIN_PIDS: u32 = 16;
const MAX_VCPUS: u32 = 64;
const SHM_BYTES: u64 = 64 << 20;

pub struct Inner {
    sandboxes_dir: PathBuf,
    /// A sealed in-memory copy of the agent binary, what every sandbox init executes.
    agent: OwnedFd,
    ids: IdRanges,
    pub cgroups: Cgroups,
    pub layers: Layers,
    pub volumes: Volumes,
    network: Option<Network>,
    pub images: ImageStore,
    live: Mutex<HashMap<SandboxId, Arc<Sandbox>>>,
    pub events: broadcast::Sender<RuntimeEvent>,
    /// Pre-started sandboxes waiting to be claimed, oldest first.
    pool: Mutex<VecDeque<Arc<Sandbox>>>,
    pool_target: usize,
    pool_wake: Arc<Notify>,
    /// Set when the runtime handle is dropped: background tasks stop.
    pub closed: AtomicBool,
    /// CPUs to pin one-vCPU sandboxes to, in turn.
    cpus: Vec<u32>,
    next_cpu: AtomicUsize,
}

pub struct Sandbox {
    pub id: SandboxId,
    dir: PathBuf,
    record: Mutex<Record>,
    pub client: AgentClient,
    pidfd: Mutex<Option<OwnedFd>>,
    /// Read end of the pipe the agent reports start-up errors on (its stdout and stderr until
    /// it is set up; none after a restart).
    log: Mutex<Option<fs::File>>,
    /// Set by whoever starts tearing the sandbox down, so it happens once.
    ending: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |e| RuntimeError::io(context, e)
}

/// Identifies a data directory on this host (cgroup paths, address-slot owners).
fn instance_tag(data_dir: &Path) -> String {
    let canonical = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

fn find_agent(config: &NsConfig) -> Result<PathBuf> {
    if let Some(p) = &config.agent_path {
        return Ok(p.clone());
    }
    if let Ok(p) = std::env::var("INSTAVM_AGENT_PATH") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(io_err("locating the current executable"))?;
    // Next to us (target/release/instavm), or one level up for test binaries in deps/.
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("instavm-agent");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(RuntimeError::Unavailable(format!(
        "instavm-agent not found next to {} (build the workspace, or set INSTAVM_AGENT_PATH)",
        exe.display()
    )))
}

impl Inner {
    pub fn open(config: NsConfig) -> Result<Self> {
        // SAFETY-free check: only root can create namespaces, mount and manage cgroups here.
        if !is_root() {
            return Err(RuntimeError::Unavailable(
                "the namespace runtime must run as root".into(),
            ));
        }
        fs::create_dir_all(&config.data_dir).map_err(io_err("creating the data directory"))?;
        // Canonical, so mount points compare equal to /proc/self/mountinfo's.
        let data_dir =
            fs::canonicalize(&config.data_dir).map_err(io_err("resolving the data directory"))?;
        let sandboxes_dir = data_dir.join("sandboxes");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&sandboxes_dir)
            .map_err(io_err("creating the sandboxes directory"))?;
        let instance = instance_tag(&data_dir);
        let agent_path = find_agent(&config)?;
        let agent = sys::sealed_copy(&agent_path, "instavm-agent").map_err(|e| {
            RuntimeError::Unavailable(format!("loading {}: {e}", agent_path.display()))
        })?;
        let ids = IdRanges::open(&instance, &sandboxes_dir)
            .map_err(io_err("opening the uid range pool"))?;
        let cgroups =
            Cgroups::detect(&instance).map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        let layers = Layers::open(&data_dir).map_err(io_err("opening the layer store"))?;
        let volumes = Volumes::open(layers.dir(), layers.backend())
            .map_err(io_err("opening the volume store"))?;
        let network = match Network::setup(&instance, &sandboxes_dir, &config.egress) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("sandboxes will have no network: {e}");
                None
            }
        };
        let images_dir = config
            .images_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("images"));
        let images = ImageStore::new(images_dir).map_err(io_err("opening the image store"))?;
        tracing::info!(
            "namespace runtime: cgroup {:?}, layers {:?}, network {}",
            cgroups.version(),
            layers.backend(),
            if network.is_some() { "on" } else { "off" }
        );
        Ok(Inner {
            sandboxes_dir,
            agent,
            ids,
            cgroups,
            layers,
            volumes,
            network,
            images,
            live: Mutex::new(HashMap::new()),
            events: broadcast::channel(256).0,
            pool: Mutex::new(VecDeque::new()),
            pool_target: config.warm_pool,
            pool_wake: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            cpus: sys::allowed_cpus(),
            next_cpu: AtomicUsize::new(0),
        })
    }

    /// Where a sandbox's agent and interpreter live: one CPU (in turn) for a one-vCPU sandbox,
    /// whose quota is one CPU anyway; anywhere for bigger ones, or on a one-CPU host.
    fn cpu_for(&self, spec: &SandboxSpec) -> Option<u32> {
        if spec.vcpu_count != 1 || self.cpus.len() < 2 {
            return None;
        }
        let n = self.next_cpu.fetch_add(1, Ordering::Relaxed);
        Some(self.cpus[n % self.cpus.len()])
    }

    /// A user's sandbox (pooled ones belong to nobody yet).
    pub fn get(&self, id: &SandboxId) -> Result<Arc<Sandbox>> {
        lock(&self.live)
            .get(id)
            .filter(|s| !s.pooled())
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }

    /// Users' sandboxes.
    pub fn all(&self) -> Vec<Arc<Sandbox>> {
        self.everything()
            .into_iter()
            .filter(|s| !s.pooled())
            .collect()
    }

    pub fn warm_count(&self) -> usize {
        lock(&self.pool).len()
    }

    /// Every sandbox, the warm pool included.
    pub fn everything(&self) -> Vec<Arc<Sandbox>> {
        lock(&self.live).values().cloned().collect()
    }

    pub fn validate(&self, spec: &SandboxSpec) -> Result<PathBuf> {
        let bad = |m: String| Err(RuntimeError::InvalidSpec(m));
        if spec.memory_mb < MIN_MEMORY_MB {
            return bad(format!("memory_mb must be at least {MIN_MEMORY_MB}"));
        }
        if spec.vcpu_count == 0 || spec.vcpu_count > MAX_VCPUS {
            return bad(format!("vcpu_count must be between 1 and {MAX_VCPUS}"));
        }
        if spec.disk_mb < MIN_DISK_MB {
            return bad(format!("disk_mb must be at least {MIN_DISK_MB}"));
        }
        if spec.pids_max < MIN_PIDS {
            return bad(format!("pids_max must be at least {MIN_PIDS}"));
        }
        if spec.lifetime.is_zero() {
            return bad("lifetime must be positive".into());
        }
        for (k, v) in &spec.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return bad(format!("invalid environment variable {k:?}"));
            }
        }
        self.check_snapshot(spec)?;
        if spec.image == image::BASE {
            return self
                .images
                .ensure_base()
                .map_err(|e| RuntimeError::Unavailable(format!("base image: {e}")));
        }
        self.images
            .rootfs(&spec.image)
            .ok_or_else(|| RuntimeError::InvalidSpec(format!("unknown image {:?}", spec.image)))
    }

    /// Create and start a sandbox (blocking). On any failure, everything created is removed.
    pub fn create(&self, spec: SandboxSpec, pooled: bool) -> Result<Arc<Sandbox>> {
        let lower = self.validate(&spec)?;
        let mut id = SandboxId::generate();
        while self.sandboxes_dir.join(id.as_str()).exists() {
            id = SandboxId::generate();
        }
        let dir = self.sandboxes_dir.join(id.as_str());
        fs::create_dir(&dir).map_err(io_err("creating the sandbox directory"))?;
        let now = Utc::now();
        let lifetime = chrono::Duration::from_std(spec.lifetime)
            .map_err(|_| RuntimeError::InvalidSpec("lifetime is too long".into()))?;
        let mut rec = Record {
            id: id.clone(),
            spec,
            created_at: now,
            expires_at: now + lifetime,
            pid: None,
            start_time: None,
            slot: None,
            ids: None,
            pooled,
            cpu: None,
            egress: None,
        };
        rec.cpu = self.cpu_for(&rec.spec);
        let started = record::save(&dir, &rec)
            .map_err(io_err("writing the sandbox record"))
            .and_then(|()| self.start(&dir, &mut rec, &lower));
        match started {
            Ok((pidfd, log)) => {
                let sb = Sandbox::new(dir, rec, pidfd, Some(log));
                lock(&self.live).insert(id, sb.clone());
                Ok(sb)
            }
            Err(e) => {
                self.release(&id, &rec);
                Err(e)
            }
        }
    }

    fn start(&self, dir: &Path, rec: &mut Record, lower: &Path) -> Result<(OwnedFd, fs::File)> {
        let id = rec.id.as_str().to_owned();
        let mut phases = Phases::start();
        let slot = match &self.network {
            Some(net) => {
                let slot = net
                    .allocate(&id)
                    .map_err(|e| RuntimeError::Exhausted(e.to_string()))?;
                rec.slot = Some(slot.0);
                record::save(dir, rec).map_err(io_err("writing the sandbox record"))?;
                Some(slot)
            }
            None => None,
        };
        phases.mark("address");
        let range = self
            .ids
            .allocate(&id)
            .map_err(|e| RuntimeError::Exhausted(e.to_string()))?;
        rec.ids = Some(range.0);
        record::save(dir, rec).map_err(io_err("writing the sandbox record"))?;
        let userns = sys::create_userns(range.first(), ids::RANGE_SIZE)
            .map_err(io_err("creating the user namespace"))?;
        phases.mark("userns");
        let limits = Limits {
            memory_bytes: u64::from(rec.spec.memory_mb) << 20,
            pids: rec.spec.pids_max,
            vcpus: rec.spec.vcpu_count,
        };
        let cgroup = cgroup_key(&id, rec.spec.tenant.as_deref());
        self.cgroups
            .create(&cgroup, limits)
            .map_err(io_err("creating cgroups"))?;
        phases.mark("cgroups");
        let layer = self
            .create_layer(&id, &rec.spec)
            .map_err(io_err("creating the writable layer"))?;
        phases.mark("layer");
        let root = dir.join("root");
        fs::create_dir(&root).map_err(io_err("creating the root mount point"))?;
        let socket = dir.join("agent.sock");
        let listener = UnixListener::bind(&socket).map_err(io_err("binding the agent socket"))?;
        let (log_r, log_w) = pipe().map_err(io_err("creating the log pipe"))?;
        let (config_r, config_w) = pipe().map_err(io_err("creating the config pipe"))?;

        let spawned = sys::spawn_sandbox_init(
            &self.agent,
            "instavm-agent",
            sys::InitFds {
                config: &config_r,
                listener: &OwnedFd::from(listener),
                userns: &userns,
                log: &log_w,
            },
        )
        .map_err(io_err("starting the sandbox"))?;
        drop((config_r, log_w, userns));
        phases.mark("clone");
        rec.pid = Some(spawned.pid);
        rec.start_time = sys::process_start_time(spawned.pid);
        record::save(dir, rec).map_err(io_err("writing the sandbox record"))?;

        // The agent waits for its config, so it is in its cgroups before it does anything. Where
        // we may (CAP_SYS_RESOURCE), it is also exempt from the OOM killer; either way its
        // children raise their own score so the OOM killer picks them first.
        self.cgroups
            .add(&cgroup, spawned.pid)
            .map_err(io_err("joining cgroups"))?;
        let _ = fs::write(format!("/proc/{}/oom_score_adj", spawned.pid), "-1000");
        let config = AgentConfig {
            sandbox_id: id.clone(),
            hostname: format!("sbx-{id}"),
            lower_dir: path_string(lower)?,
            upper_dir: path_string(&layer.upper)?,
            work_dir: path_string(&layer.work)?,
            root_dir: path_string(&root)?,
            workdir: WORKDIR.into(),
            env: rec.spec.env.clone().into_iter().collect(),
            // The VM's own resolver on the host end of its veth (instavm-net).
            nameservers: slot
                .map(|s| vec![s.host_ip().to_string()])
                .unwrap_or_default(),
            shm_bytes: SHM_BYTES,
            deadline_unix_secs: agent_deadline(rec.expires_at),
            cpu: rec.cpu,
            host_root_id: range.first(),
        };
        let mut w = fs::File::from(config_w);
        w.write_all(&serde_json::to_vec(&config).map_err(|e| RuntimeError::Agent(e.to_string()))?)
            .map_err(io_err("sending the agent its config"))?;
        drop(w);
        phases.mark("config");

        // Meanwhile the agent mounts its root and starts Python.
        if let (Some(net), Some(slot)) = (&self.network, slot) {
            net.attach(&id, spawned.pid, slot)
                .map_err(io_err("connecting the sandbox network"))?;
            net.egress
                .attach(
                    &id,
                    slot.host_ip(),
                    slot.sandbox_ip(),
                    &rec.egress.clone().unwrap_or_default(),
                )
                .map_err(io_err("starting the sandbox's resolver and egress rules"))?;
        }
        phases.mark("network");
        tracing::debug!(sandbox = %id, "create phases (ms): {phases}");
        let log = fs::File::from(log_r);
        sys::set_nonblocking(&log).map_err(io_err("setting up the log pipe"))?;
        Ok((spawned.pidfd, log))
    }

    /// Free everything a sandbox holds, whether or not it is still running (blocking).
    fn release(&self, id: &SandboxId, rec: &Record) {
        if let Some(pid) = rec.pid {
            if alive(pid, rec.start_time) {
                sys::kill(pid, libc::SIGKILL);
            }
        }
        let cgroup = cgroup_key(id.as_str(), rec.spec.tenant.as_deref());
        if let Err(e) = self.cgroups.destroy(&cgroup) {
            tracing::error!(sandbox = %id, "cgroup cleanup: {e}");
        }
        if let Some(net) = &self.network {
            net.egress.detach(id.as_str());
            if let Err(e) = net.detach(id.as_str()) {
                tracing::warn!(sandbox = %id, "veth cleanup: {e}");
            }
            if let Some(slot) = rec.slot {
                net.release(Slot(slot));
            }
        }
        if let Err(e) = self.layers.remove(id.as_str()) {
            tracing::error!(sandbox = %id, "layer cleanup: {e}");
        }
        if let Some(range) = rec.ids {
            self.ids.release(IdRange(range));
        }
        let dir = self.sandboxes_dir.join(id.as_str());
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(sandbox = %id, "removing {}: {e}", dir.display());
            }
        }
    }

    /// Re-attach to sandboxes a previous run left alive; clean up after dead ones and after
    /// anything half-created (blocking).
    pub fn recover(&self) -> Result<()> {
        let mut live = Vec::new();
        for (id, dir) in record::scan(&self.sandboxes_dir) {
            let rec = record::load(&dir);
            let alive_pid = rec
                .as_ref()
                .and_then(|r| r.pid.filter(|&p| alive(p, r.start_time)));
            match (rec, alive_pid) {
                // Pooled sandboxes were nobody's: start the pool afresh.
                (Some(rec), Some(pid)) if !rec.pooled && dir.join("agent.sock").exists() => {
                    match sys::pidfd_open(pid) {
                        Ok(pidfd) => {
                            tracing::info!(sandbox = %id, "recovered a running sandbox");
                            if let (Some(net), Some(slot)) = (&self.network, rec.slot) {
                                let slot = Slot(slot);
                                let policy = rec.egress.clone().unwrap_or_default();
                                if let Err(e) = net.egress.attach(
                                    id.as_str(),
                                    slot.host_ip(),
                                    slot.sandbox_ip(),
                                    &policy,
                                ) {
                                    tracing::error!(sandbox = %id, "egress of a recovered sandbox: {e}");
                                }
                            }
                            live.push(Sandbox::new(dir, rec, pidfd, None));
                        }
                        Err(_) => self.release(&id, &rec),
                    }
                }
                (rec, _) => {
                    tracing::info!(sandbox = %id, "cleaning up a sandbox that did not survive");
                    let rec = rec.unwrap_or_else(|| Record {
                        id: id.clone(),
                        spec: SandboxSpec::default(),
                        created_at: Utc::now(),
                        expires_at: Utc::now(),
                        pid: None,
                        start_time: None,
                        slot: None,
                        ids: None,
                        pooled: false,
                        cpu: None,
                        egress: None,
                    });
                    self.release(&id, &rec);
                }
            }
        }
        // Resources without a record (a crash between creating them and writing it).
        let known: Vec<String> = live.iter().map(|s| s.id.to_string()).collect();
        for key in self.cgroups.list() {
            let id = key.rsplit('/').next().unwrap_or_default().to_owned();
            if !known.contains(&id) {
                let _ = self.cgroups.destroy(&key);
            }
        }
        for id in self.layers.list() {
            if !known.contains(&id) {
                let _ = self.layers.remove(&id);
            }
        }
        for (range, id) in self.ids.owned() {
            if !known.contains(&id) {
                self.ids.release(range);
            }
        }
        if let Some(net) = &self.network {
            for (slot, id) in net.owned_slots() {
                if !known.contains(&id) {
                    let _ = net.detach(&id);
                    net.release(slot);
                }
            }
        }
        let mut map = lock(&self.live);
        for sb in live {
            map.insert(sb.id.clone(), sb);
        }
        Ok(())
    }

    pub fn stats(&self, sb: &Sandbox) -> SandboxStats {
        let (cgroup, disk_mb) = {
            let rec = lock(&sb.record);
            let key = cgroup_key(sb.id.as_str(), rec.spec.tenant.as_deref());
            (key, rec.spec.disk_mb)
        };
        let mut s = self.cgroups.stats(&cgroup);
        s.disk_limit_bytes = disk_mb << 20;
        s.disk_bytes = self.layers.usage(sb.id.as_str());
        s
    }

    /// Apply and remember a sandbox's egress policy (blocking).
    pub fn set_egress(&self, sb: &Sandbox, policy: &instavm_runtime::EgressPolicy) -> Result<()> {
        let Some(net) = &self.network else {
            return Err(RuntimeError::Unsupported {
                backend: "namespaces",
                what: "egress policies without the sandbox network (nftables)".into(),
            });
        };
        let mut rec = lock(&sb.record);
        net.egress
            .set_policy(sb.id.as_str(), policy)
            .map_err(io_err("applying the egress policy"))?;
        rec.egress = (*policy != instavm_runtime::EgressPolicy::default()).then(|| policy.clone());
        record::save(&sb.dir, &rec).map_err(io_err("writing the sandbox record"))
    }

    pub fn egress_denials(&self, sb: &Sandbox) -> Result<u64> {
        match &self.network {
            Some(net) => net
                .egress
                .denials(sb.id.as_str())
                .map_err(io_err("reading egress denials")),
            None => Ok(0),
        }
    }

    pub fn set_expiry(&self, sb: &Sandbox, expires_at: DateTime<Utc>) -> Result<()> {
        let mut rec = lock(&sb.record);
        rec.expires_at = expires_at;
        record::save(&sb.dir, &rec).map_err(io_err("writing the sandbox record"))
    }
}

impl Sandbox {
    fn new(dir: PathBuf, rec: Record, pidfd: OwnedFd, log: Option<fs::File>) -> Arc<Self> {
        Arc::new(Sandbox {
            log: Mutex::new(log),
            id: rec.id.clone(),
            client: AgentClient::new(dir.join("agent.sock")),
            dir,
            record: Mutex::new(rec),
            pidfd: Mutex::new(Some(pidfd)),
            ending: AtomicBool::new(false),
        })
    }

    fn pooled(&self) -> bool {
        lock(&self.record).pooled
    }

    pub fn info(&self) -> SandboxInfo {
        let rec = lock(&self.record);
        SandboxInfo {
            id: self.id.clone(),
            state: if self.ending.load(Ordering::SeqCst) {
                SandboxState::Exited
            } else {
                SandboxState::Running
            },
            image: rec.spec.image.clone(),
            memory_mb: rec.spec.memory_mb,
            vcpu_count: rec.spec.vcpu_count,
            disk_mb: rec.spec.disk_mb,
            created_at: rec.created_at,
            expires_at: rec.expires_at,
            ip_address: rec.slot.map(|s| Slot(s).sandbox_ip().to_string()),
        }
    }

    /// The agent answered: it is set up and reports nothing on the log pipe any more.
    pub fn started(&self) {
        lock(&self.log).take();
    }

    /// The agent's last words, for errors about a sandbox that would not start. What the agent
    /// reported is kept in `agent.log` of the sandbox directory.
    pub fn last_log_line(&self) -> Option<String> {
        let mut said = Vec::new();
        if let Some(pipe) = lock(&self.log).as_mut() {
            let _ = std::io::Read::read_to_end(pipe, &mut said);
        }
        if !said.is_empty() {
            let _ = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.dir.join("agent.log"))
                .and_then(|mut f| f.write_all(&said));
        }
        let log = fs::read_to_string(self.dir.join("agent.log")).ok()?;
        log.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_owned)
    }

    /// A connection error means the sandbox is gone or going: say so plainly.
    pub fn explain(&self, e: RuntimeError) -> RuntimeError {
        match e {
            RuntimeError::Agent(m) if self.ending.load(Ordering::SeqCst) => {
                let _ = m;
                RuntimeError::NotRunning(self.id.to_string())
            }
            other => other,
        }
    }
}

/// The agent ends its sandbox a little after the host would have: the host's reaper normally
/// wins and reports an expiry; the agent's own deadline only matters when no server runs.
const AGENT_DEADLINE_GRACE: i64 = 30;

pub fn agent_deadline(expires_at: DateTime<Utc>) -> i64 {
    expires_at.timestamp().saturating_add(AGENT_DEADLINE_GRACE)
}

/// Elapsed time per step of an operation, for debug logs.
struct Phases {
    last: std::time::Instant,
    marks: Vec<(&'static str, f64)>,
}

impl Phases {
    fn start() -> Self {
        Phases {
            last: std::time::Instant::now(),
            marks: Vec::new(),
        }
    }

    fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.marks
            .push((name, (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, ms) in &self.marks {
            write!(f, "{name} {ms:.2} ")?;
        }
        Ok(())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn path_string(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| RuntimeError::InvalidSpec(format!("non-UTF-8 path {}", p.display())))
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded; both descriptors are ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Is `pid` still the process we started (same start time)?
fn alive(pid: i32, start_time: Option<u64>) -> bool {
    match (sys::process_start_time(pid), start_time) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => false,
        (None, _) => false,
    }
}

/// Watch the sandbox's init: when it dies on its own, clean up and report it.
pub fn watch_exit(inner: &Arc<Inner>, sb: &Arc<Sandbox>) {
    let Some(pidfd) = lock(&sb.pidfd).take() else {
        return;
    };
    let inner = inner.clone();
    let id = sb.id.clone();
    tokio::spawn(async move {
        sys::wait_exit(pidfd).await;
        let _ = destroy_any(&inner, &id, ExitReason::Died).await;
    });
}

/// Tear a sandbox down once (whoever comes first: destroy, expiry, or its death).
pub async fn destroy(inner: &Arc<Inner>, id: &SandboxId, reason: ExitReason) -> Result<()> {
    inner.get(id)?;
    destroy_any(inner, id, reason).await
}

/// Like `destroy`, for any sandbox, pooled ones included. Only users' sandboxes are reported.
pub async fn destroy_any(inner: &Arc<Inner>, id: &SandboxId, reason: ExitReason) -> Result<()> {
    let sb = lock(&inner.live)
        .get(id)
        .cloned()
        .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
    if sb.ending.swap(true, Ordering::SeqCst) {
        return Err(RuntimeError::NotFound(id.to_string()));
    }
    let inner2 = inner.clone();
    let sb2 = sb.clone();
    tokio::task::spawn_blocking(move || {
        let rec = lock(&sb2.record).clone();
        inner2.release(&sb2.id, &rec);
    })
    .await
    .map_err(|e| RuntimeError::Unavailable(format!("cleanup panicked: {e}")))?;
    lock(&inner.live).remove(id);
    lock(&inner.pool).retain(|s| s.id != *id);
    if sb.pooled() {
        tracing::debug!(sandbox = %id, ?reason, "pooled sandbox ended");
        return Ok(());
    }
    tracing::info!(sandbox = %id, ?reason, "sandbox ended");
    let _ = inner.events.send(RuntimeEvent::Exited {
        id: id.clone(),
        reason,
    });
    Ok(())
}

/// Destroy sandboxes whose lifetime has passed; also watch recovered sandboxes.
pub fn start_reaper(inner: &Arc<Inner>) {
    for sb in inner.all() {
        watch_exit(inner, &sb);
    }
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade().filter(|i| !i.closed.load(Ordering::SeqCst)) else {
                return;
            };
            let now = Utc::now();
            let expired: Vec<SandboxId> = inner
                .all()
                .iter()
                .filter(|s| lock(&s.record).expires_at <= now)
                .map(|s| s.id.clone())
                .collect();
            for id in expired {
                let _ = destroy(&inner, &id, ExitReason::Expired).await;
            }
        }
    });
}

// ---- the warm pool ----

/// What pooled sandboxes are started with; a claim then applies the user's spec. The lifetime
/// only bounds a pooled sandbox that is never claimed.
fn pool_spec() -> SandboxSpec {
    SandboxSpec {
        lifetime: Duration::from_secs(24 * 3600),
        ..SandboxSpec::default()
    }
}

/// Keep `pool_target` pre-started sandboxes ready, refilling after each claim.
pub fn start_pool(inner: &Arc<Inner>) {
    if inner.pool_target == 0 {
        return;
    }
    let weak = Arc::downgrade(inner);
    let wake = inner.pool_wake.clone();
    tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade().filter(|i| !i.closed.load(Ordering::SeqCst)) else {
                return;
            };
            let full = lock(&inner.pool).len() >= inner.pool_target;
            if full || inner.images.rootfs(image::BASE).is_none() {
                drop(inner);
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let i2 = inner.clone();
            let created = tokio::task::spawn_blocking(move || i2.create(pool_spec(), true)).await;
            match created {
                Ok(Ok(sb)) => {
                    watch_exit(&inner, &sb);
                    if matches!(
                        sb.client.call(&Request::Ping).await,
                        Ok(Response::Pong { .. })
                    ) {
                        sb.started();
                        lock(&inner.pool).push_back(sb);
                    } else {
                        let _ = destroy_any(&inner, &sb.id, ExitReason::Died).await;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!("warm pool: cannot pre-start a sandbox: {e}");
                    drop(inner);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => tracing::error!("warm pool: worker panicked: {e}"),
            }
        }
    });
}

/// Hand a pre-started sandbox to a user: apply the spec's limits, environment and lifetime.
/// `None` when the pool is empty or cannot serve this spec (then the caller starts one cold).
pub async fn claim(inner: &Arc<Inner>, spec: &SandboxSpec) -> Result<Option<Arc<Sandbox>>> {
    // A pooled sandbox has an empty layer: one from a snapshot starts cold.
    if inner.pool_target == 0 || spec.image != image::BASE || spec.from_snapshot.is_some() {
        return Ok(None);
    }
    loop {
        let Some(sb) = lock(&inner.pool).pop_front() else {
            return Ok(None);
        };
        inner.pool_wake.notify_one();
        if sb.ending.load(Ordering::SeqCst) {
            continue;
        }
        match configure(inner, &sb, spec).await {
            Ok(()) => return Ok(Some(sb)),
            Err(e @ RuntimeError::InvalidSpec(_)) => {
                let _ = destroy_any(inner, &sb.id, ExitReason::Destroyed).await;
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(sandbox = %sb.id, "warm pool: claim failed, discarding: {e}");
                let (inner, id) = (inner.clone(), sb.id.clone());
                tokio::spawn(async move { destroy_any(&inner, &id, ExitReason::Died).await });
            }
        }
    }
}

async fn configure(inner: &Arc<Inner>, sb: &Arc<Sandbox>, spec: &SandboxSpec) -> Result<()> {
    let (i2, sb2, spec2) = (inner.clone(), sb.clone(), spec.clone());
    let expires_at = tokio::task::spawn_blocking(move || -> Result<DateTime<Utc>> {
        i2.validate(&spec2)?;
        let id = sb2.id.as_str();
        let limits = Limits {
            memory_bytes: u64::from(spec2.memory_mb) << 20,
            pids: spec2.pids_max,
            vcpus: spec2.vcpu_count,
        };
        // A tenant's sandbox joins the tenant's parent cgroup; the record says where it is
        // at once, so a failure later still cleans up the right cgroup.
        let now_in = cgroup_key(id, lock(&sb2.record).spec.tenant.as_deref());
        let wanted = cgroup_key(id, spec2.tenant.as_deref());
        if now_in == wanted {
            i2.cgroups
                .set_limits(&wanted, limits)
                .map_err(io_err("setting limits"))?;
        } else {
            i2.cgroups
                .migrate(&now_in, &wanted, limits)
                .map_err(io_err("moving into the tenant's cgroup"))?;
            lock(&sb2.record).spec.tenant = spec2.tenant.clone();
        }
        i2.layers
            .set_quota(id, spec2.disk_mb << 20)
            .map_err(io_err("setting the disk quota"))?;
        let now = Utc::now();
        let lifetime = chrono::Duration::from_std(spec2.lifetime)
            .map_err(|_| RuntimeError::InvalidSpec("lifetime is too long".into()))?;
        Ok(now + lifetime)
    })
    .await
    .map_err(|e| RuntimeError::Unavailable(format!("worker panicked: {e}")))??;
    // A one-vCPU sandbox keeps the CPU it was started on; a bigger one is let loose.
    let cpu = if spec.vcpu_count == 1 {
        lock(&sb.record).cpu
    } else {
        None
    };
    let request = Request::Configure {
        env: spec.env.clone().into_iter().collect(),
        deadline_unix_secs: agent_deadline(expires_at),
        cpu,
    };
    match sb.client.call(&request).await? {
        Response::Ok => {}
        Response::Error { message, .. } => return Err(RuntimeError::Agent(message)),
        other => return Err(RuntimeError::Agent(format!("unexpected answer {other:?}"))),
    }
    let mut rec = lock(&sb.record);
    rec.spec = spec.clone();
    rec.created_at = Utc::now();
    rec.expires_at = expires_at;
    rec.pooled = false;
    rec.cpu = cpu;
    record::save(&sb.dir, &rec).map_err(io_err("writing the sandbox record"))
}
