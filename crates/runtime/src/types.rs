use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A sandbox identifier: 12 lowercase hex characters. Short on purpose, because it is also used
/// in host interface names (which are limited to 15 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SandboxId(String);

impl SandboxId {
    pub const LEN: usize = 12;

    pub fn generate() -> Self {
        use rand::Rng;
        let n: u64 = rand::thread_rng().gen();
        SandboxId(format!("{:012x}", n & 0xffff_ffff_ffff))
    }

    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| SandboxId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SandboxId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SandboxId::parse(&s).ok_or_else(|| format!("invalid sandbox id {s:?}"))
    }
}

impl From<SandboxId> for String {
    fn from(id: SandboxId) -> String {
        id.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to create. Defaults are what a session gets when the request leaves a field out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Name of an image known to the backend ("base" is built on first use).
    pub image: String,
    pub memory_mb: u32,
    pub vcpu_count: u32,
    /// Quota for the sandbox's private writable layer.
    pub disk_mb: u64,
    /// Maximum number of processes and threads.
    pub pids_max: u32,
    /// Environment visible to all executed code.
    pub env: BTreeMap<String, String>,
    /// Time until the reaper destroys the sandbox.
    pub lifetime: Duration,
    /// Start from this disk snapshot (see [`crate::Runtime::snapshot`]) instead of an empty
    /// writable layer.
    #[serde(default)]
    pub from_snapshot: Option<SnapshotId>,
    /// Who the sandbox is for (the server passes its user): a backend may group a tenant's
    /// sandboxes, so that resources are shared fairly between tenants first.
    #[serde(default)]
    pub tenant: Option<String>,
}

impl Default for SandboxSpec {
    fn default() -> Self {
        SandboxSpec {
            image: "base".into(),
            memory_mb: 512,
            vcpu_count: 1,
            disk_mb: 2048,
            pids_max: 512,
            env: BTreeMap::new(),
            lifetime: Duration::from_secs(300),
            from_snapshot: None,
            tenant: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Running,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxInfo {
    pub id: SandboxId,
    pub state: SandboxState,
    pub image: String,
    pub memory_mb: u32,
    pub vcpu_count: u32,
    pub disk_mb: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The sandbox's own address on its private link, when it has a network.
    pub ip_address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Bash,
}

impl Language {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "python" | "python3" | "py" => Some(Language::Python),
            "bash" | "shell" | "sh" => Some(Language::Bash),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Bash => "bash",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub language: Language,
    pub code: String,
    /// Kill the code after this long. `None` means the backend's maximum.
    pub timeout: Option<Duration>,
}

/// Exit code reported when an execution was killed by its timeout (GNU `timeout` convention).
pub const TIMEOUT_EXIT_CODE: i32 = 124;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    /// Wall-clock seconds.
    pub execution_time: f64,
    /// CPU seconds (user + system) used by the code, children included.
    pub cpu_time: f64,
    pub timed_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Absolute path inside the sandbox.
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
    /// Seconds since the epoch.
    pub modified: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOptions {
    pub create_parents: bool,
    /// Permission bits for a new file; 0o644 when unset.
    pub mode: Option<u32>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            create_parents: true,
            mode: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SandboxStats {
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub cpu_seconds: f64,
    pub pids: u64,
    pub disk_bytes: u64,
    pub disk_limit_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// Its lifetime ran out and the reaper destroyed it.
    Expired,
    /// `destroy` was called.
    Destroyed,
    /// It stopped on its own (its init died) or was gone when the runtime restarted.
    Died,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuntimeEvent {
    Exited { id: SandboxId, reason: ExitReason },
}

/// What a host can hold, for admission control: its CPUs, its memory and the space for
/// writable layers (`None` when the backend has no fixed store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCapacity {
    pub cpus: u32,
    pub memory_mb: u64,
    pub disk_mb: Option<u64>,
}

impl HostCapacity {
    /// This machine's CPUs (the ones this process may use) and physical memory; no disk store.
    pub fn of_this_host() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let memory_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kib| kib / 1024);
        HostCapacity {
            cpus,
            memory_mb,
            disk_mb: None,
        }
    }
}
/// Names a disk snapshot held by the runtime: 1 to 64 of `[a-z0-9_]`. The server picks it (its
/// `snap_...` record id), so the two never need a mapping table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId(String);

impl SnapshotId {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
        ok.then(|| SnapshotId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SnapshotId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SnapshotId::parse(&s).ok_or_else(|| format!("invalid snapshot id {s:?}"))
    }
}

impl From<SnapshotId> for String {
    fn from(id: SnapshotId) -> String {
        id.0
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a disk snapshot took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Bytes the sandbox's writable layer held when it was taken.
    pub size_bytes: u64,
    /// True when the backend had to copy the files (the tmpfs fallback); false for a
    /// copy-on-write snapshot whose cost does not depend on the size.
    pub copied: bool,
}

/// How one path differs between two snapshots ([`crate::Runtime::snapshot_diff`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PathChange {
    pub path: String,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// What a sandbox may reach outside the host (spec/api.md §2): the five fields of the API, kept
/// as given (after the server's validation). How they combine is decided by the backend and
/// written down in docs/network.md; [`EgressPolicy::default`] is the unrestricted policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressPolicy {
    /// The API's `allow_public_repos`: the documented list of package registries.
    pub allow_package_managers: bool,
    pub allow_http: bool,
    pub allow_https: bool,
    /// Names (`example.com`) and wildcards (`*.example.com`), lowercase, without a final dot.
    pub allowed_domains: Vec<String>,
    /// IPv4 networks in canonical `a.b.c.d/n` form.
    pub allowed_cidrs: Vec<String>,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy {
            allow_package_managers: true,
            allow_http: true,
            allow_https: true,
            allowed_domains: Vec::new(),
            allowed_cidrs: Vec::new(),
        }
    }
}

impl EgressPolicy {
    /// The public internet on every port (today's default): both http and https allowed.
    pub fn is_open(&self) -> bool {
        self.allow_http && self.allow_https
    }
}
