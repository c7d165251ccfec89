//! Resource limits and accounting per sandbox, on cgroup v2 where its controllers are available
//! and on cgroup v1 otherwise (these machines run v1 plus a controller-less hybrid v2 mount).
//!
//! Layout: `<controller root>/instavm/<instance>/<tenant>/<sandbox id>`, where `instance`
//! identifies the data directory, so several servers on one host never touch each other's
//! sandboxes, and `<tenant>` (`t-<hash of the tenant>`) groups one tenant's sandboxes: every
//! tenant's parent has the same default CPU weight, so CPU is shared fairly between tenants
//! first, then between a tenant's sandboxes. Sandboxes without a tenant (the unclaimed warm
//! pool) sit directly under the instance. Methods take the sandbox's `key` (`cgroup_key`).

use instavm_runtime::SandboxStats;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct"];
const CFS_PERIOD_US: u64 = 100_000;

/// Where a sandbox's cgroups live below the instance: `t-<hash>/<id>`, or `<id>`.
pub fn cgroup_key(id: &str, tenant: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    match tenant {
        Some(t) => {
            let digest = Sha256::digest(t.as_bytes());
            let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
            format!("{TENANT_PREFIX}{hex}/{id}")
        }
        None => id.to_owned(),
    }
}

const TENANT_PREFIX: &str = "t-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids: u32,
    pub vcpus: u32,
}

/// Where this runtime instance keeps its cgroups.
#[derive(Debug, Clone)]
pub struct Cgroups {
    version: Version,
    instance: String,
}

/// Moving a process between cgroups waits for an RCU grace period unless the kernel is told to
/// favour such "dynamic modifications" (a global switch, set through any cgroup2 mount): about
/// 10 ms per sandbox start on these machines, against 0.3 ms with it. The cost is slightly
/// slower fork and exit, the right trade for a sandbox host. Best effort: on a host without a
/// cgroup2 mount, or an old kernel, starts are just slower.
fn favor_dynamic_modifications() {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let Some((target, opts)) = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 3 && f[2] == "cgroup2").then(|| (f[1].to_owned(), f[3].to_owned()))
    }) else {
        return;
    };
    if opts.split(',').any(|o| o == "favordynmods") {
        return;
    }
    // Keep the cgroup2 options already in force: a remount replaces them all.
    const CGROUP2_OPTIONS: &[&str] = &[
        "nsdelegate",
        "memory_localevents",
        "memory_recursiveprot",
        "memory_hugetlb_accounting",
        "pids_localevents",
    ];
    let mut data: Vec<&str> = opts
        .split(',')
        .filter(|o| CGROUP2_OPTIONS.contains(o))
        .collect();
    data.push("favordynmods");
    let flags = libc::MS_REMOUNT
        | if opts.split(',').any(|o| o == "ro") {
            libc::MS_RDONLY
        } else {
            0
        };
    match crate::sys::mount(
        "cgroup2",
        Path::new(&target),
        "cgroup2",
        flags,
        &data.join(","),
    ) {
        Ok(()) => tracing::info!("enabled cgroup favordynmods on {target} (faster sandbox starts)"),
        Err(e) => tracing::debug!("cgroup favordynmods not enabled: {e}"),
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("write {value:?} to {}: {e}", path.display()),
        )
    })
}

fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

impl Cgroups {
    /// Pick the cgroup version this host can enforce limits with.
    pub fn detect(instance: &str) -> io::Result<Self> {
        let v2_controllers =
            fs::read_to_string(Path::new(ROOT).join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| v2_controllers.split_whitespace().any(|x| x == c);
        let version = if has("memory") && has("pids") && has("cpu") {
            Version::V2
        } else if V1_CONTROLLERS
            .iter()
            .all(|c| Path::new(ROOT).join(c).join("tasks").exists())
        {
            Version::V1
        } else {
            return Err(io::Error::other(
                "neither cgroup v2 (with memory, pids and cpu) nor cgroup v1 memory/pids/cpu/cpuacct \
                 hierarchies are mounted under /sys/fs/cgroup",
            ));
        };
        let cg = Cgroups {
            version,
            instance: instance.to_owned(),
        };
        cg.prepare_parents()?;
        favor_dynamic_modifications();
        Ok(cg)
    }

    pub fn version(&self) -> Version {
        self.version
    }

    fn instance_dirs(&self) -> Vec<PathBuf> {
        match self.version {
            Version::V2 => vec![Path::new(ROOT).join("instavm").join(&self.instance)],
            Version::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| Path::new(ROOT).join(c).join("instavm").join(&self.instance))
                .collect(),
        }
    }

    fn v1_dir(&self, controller: &str, id: &str) -> PathBuf {
        Path::new(ROOT)
            .join(controller)
            .join("instavm")
            .join(&self.instance)
            .join(id)
    }

    fn dirs(&self, id: &str) -> Vec<PathBuf> {
        self.instance_dirs()
            .into_iter()
            .map(|d| d.join(id))
            .collect()
    }

    fn prepare_parents(&self) -> io::Result<()> {
        for d in self.instance_dirs() {
            fs::create_dir_all(&d)?;
        }
        if self.version == Version::V2 {
            // Delegate the controllers down to the sandbox level.
            for d in [
                Path::new(ROOT).to_path_buf(),
                Path::new(ROOT).join("instavm"),
                Path::new(ROOT).join("instavm").join(&self.instance),
            ] {
                let _ = write(&d.join("cgroup.subtree_control"), "+memory +pids +cpu");
            }
        }
        Ok(())
    }

    /// Create the sandbox's cgroups with their limits (and its tenant's parent if needed).
    pub fn create(&self, id: &str, limits: Limits) -> io::Result<()> {
        for d in self.dirs(id) {
            if let Some(parent) = d.parent().filter(|_| id.contains('/')) {
                if !parent.exists() {
                    fs::create_dir_all(parent)?;
                    if self.version == Version::V2 {
                        write(&parent.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
                    }
                }
            }
            fs::create_dir_all(&d)?;
        }
        self.set_limits(id, limits)
    }

    /// Move a running sandbox's processes from cgroup `from` to `to` (a claimed pooled sandbox
    /// joining its tenant), with `limits`, and remove `from`.
    pub fn migrate(&self, from: &str, to: &str, limits: Limits) -> io::Result<()> {
        self.create(to, limits)?;
        for pid in self.pids(from) {
            match self.add(to, pid) {
                // Gone in the meantime.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                r => r?,
            }
        }
        self.destroy(from)
    }

    /// Set (or change, on a running sandbox) the limits.
    pub fn set_limits(&self, id: &str, limits: Limits) -> io::Result<()> {
        let quota = CFS_PERIOD_US * u64::from(limits.vcpus.max(1));
        match self.version {
            Version::V2 => {
                let d = &self.dirs(id)[0];
                write(&d.join("memory.max"), &limits.memory_bytes.to_string())?;
                let _ = write(&d.join("memory.swap.max"), "0");
                write(&d.join("pids.max"), &limits.pids.to_string())?;
                write(&d.join("cpu.max"), &format!("{quota} {CFS_PERIOD_US}"))?;
            }
            Version::V1 => {
                let dir = |c: &str| self.v1_dir(c, id);
                let mem = dir("memory");
                let bytes = limits.memory_bytes.to_string();
                let mem_limit = mem.join("memory.limit_in_bytes");
                // memory+swap may never be below memory: raise it first when growing, lower it
                // last when shrinking. It only exists where swap accounting does.
                let memsw = mem.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    if write(&mem_limit, &bytes).is_err() {
                        write(&memsw, &bytes)?;
                        write(&mem_limit, &bytes)?;
                    }
                    write(&memsw, &bytes)?;
                } else {
                    write(&mem_limit, &bytes)?;
                }
                write(&dir("pids").join("pids.max"), &limits.pids.to_string())?;
                let cpu = dir("cpu");
                write(&cpu.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        Ok(())
    }

    /// Move a process (and so everything it will start) into the sandbox's cgroups.
    pub fn add(&self, id: &str, pid: i32) -> io::Result<()> {
        for d in self.dirs(id) {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Processes currently in the sandbox's cgroup.
    pub fn pids(&self, id: &str) -> Vec<i32> {
        let d = &self.dirs(id)[0];
        fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub fn stats(&self, id: &str) -> SandboxStats {
        let mut s = SandboxStats::default();
        match self.version {
            Version::V2 => {
                let d = &self.dirs(id)[0];
                s.memory_bytes = read_u64(&d.join("memory.current"));
                s.memory_limit_bytes = read_u64(&d.join("memory.max"));
                s.pids = read_u64(&d.join("pids.current"));
                let cpu = fs::read_to_string(d.join("cpu.stat")).unwrap_or_default();
                let usec = cpu
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                s.cpu_seconds = usec as f64 / 1e6;
            }
            Version::V1 => {
                let dir = |c: &str| self.v1_dir(c, id);
                s.memory_bytes = read_u64(&dir("memory").join("memory.usage_in_bytes"));
                s.memory_limit_bytes = read_u64(&dir("memory").join("memory.limit_in_bytes"));
                s.pids = read_u64(&dir("pids").join("pids.current"));
                s.cpu_seconds = read_u64(&dir("cpuacct").join("cpuacct.usage")) as f64 / 1e9;
            }
        }
        s
    }

    /// Kill every process in the sandbox's cgroups and remove them. Waits (briefly) for the
    /// processes to be gone, since a cgroup with members cannot be removed.
    pub fn destroy(&self, id: &str) -> io::Result<()> {
        let dirs = self.dirs(id);
        if !dirs.iter().any(|d| d.exists()) {
            return Ok(());
        }
        if self.version == Version::V2 {
            let _ = write(&dirs[0].join("cgroup.kill"), "1");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids(id);
            for &pid in &pids {
                crate::sys::kill(pid, libc::SIGKILL);
            }
            let removed = dirs.iter().all(|d| match fs::remove_dir(d) {
                Ok(()) => true,
                Err(e) => e.kind() == io::ErrorKind::NotFound,
            });
            if removed {
                // The tenant's parent goes with its last sandbox (busy otherwise: fine).
                if id.contains('/') {
                    for d in &dirs {
                        if let Some(parent) = d.parent() {
                            let _ = fs::remove_dir(parent);
                        }
                    }
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "cgroup of sandbox {id} still busy after 10 s ({} processes)",
                    pids.len()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Keys of the sandboxes that have a cgroup under this instance.
    pub fn list(&self) -> Vec<String> {
        let children = |d: &Path| -> Vec<String> {
            fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        };
        let mut ids: Vec<String> = Vec::new();
        for d in self.instance_dirs() {
            for name in children(&d) {
                if name.starts_with(TENANT_PREFIX) {
                    let tenant = d.join(&name);
                    ids.extend(
                        children(&tenant)
                            .into_iter()
                            .map(|id| format!("{name}/{id}")),
                    );
                    // An empty tenant parent left by a crash.
                    let _ = fs::remove_dir(&tenant);
                } else {
                    ids.push(name);
                }
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }

    /// Remove this instance's (empty) parent cgroups.
    pub fn remove_instance(&self) {
        for d in self.instance_dirs() {
            let _ = fs::remove_dir(&d);
        }
    }
}
