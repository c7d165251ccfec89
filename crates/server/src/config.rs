//! Server configuration: one struct, filled by the CLI from flags and `INSTAVM_*` variables,
//! validated before anything starts.

use instavm_api::{EffectiveLimits, UserLimits};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Which sandbox backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Linux namespaces (the real backend; needs root).
    Namespaces,
    /// In-memory fake that runs no code: for developing the API only.
    Fake,
}

impl RuntimeKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "namespaces" | "ns" => Some(RuntimeKind::Namespaces),
            "fake" => Some(RuntimeKind::Fake),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The SSH gateway's address (`None`: no gateway); port 0 picks a free port.
    pub ssh_listen: Option<SocketAddr>,
    /// The host name users `ssh` to, shown as `ssh_host` on VM records (`None`: the address the
    /// gateway listens on).
    pub ssh_host: Option<String>,
    /// The share proxy (`None`: no shares).
    pub shares: Option<crate::shares::ShareSettings>,
    /// Database, admin key and the namespace runtime's state (images, layers, sandboxes) live
    /// here.
    pub data_dir: PathBuf,
    /// Shared image directory for the namespace runtime (`None`: inside the data directory).
    pub images_dir: Option<PathBuf>,
    pub runtime: RuntimeKind,
    /// Pre-started sandboxes the namespace runtime keeps ready (`None`: its default).
    pub warm_pool: Option<usize>,
    /// From `INSTAVM_ADMIN_API_KEY`; when `None` a key is generated once and kept in the data
    /// directory.
    pub admin_api_key: Option<String>,
    pub limits: Limits,
    /// DNS upstreams and private ranges of the VMs' egress (docs/network.md).
    pub egress: instavm_runtime_ns::EgressSettings,
    /// Webhook deliveries (docs/webhooks.md).
    pub webhooks: crate::webhooks::WebhookSettings,
    /// Metering rates, allocations and enforcement (docs/billing.md).
    pub billing: crate::metering::BillingSettings,
    /// The secrets vault: key, request-log retention, upstream CAs (docs/vault.md).
    pub vault: crate::vault::VaultSettings,
    /// Where tapes' LLM cassettes are written (`None`: `<data_dir>/tapes`; docs/tapes.md).
    pub tapes_cassette_root: Option<PathBuf>,
}

/// Bounds on what users may ask for. Over a bound is 403 (a limit), malformed is 422.
/// An operator sets them in the `[limits]` table of the `--config` file (docs/quotas.md); keys
/// left out keep these defaults.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub default_lifetime_seconds: u64,
    pub min_lifetime_seconds: u64,
    pub max_lifetime_seconds: u64,
    pub default_memory_mb: u32,
    pub min_memory_mb: u32,
    pub max_memory_mb: u32,
    pub default_vcpu_count: u32,
    pub max_vcpu_count: u32,
    pub max_active_sessions_per_user: u64,
    pub max_pending_tasks_per_user: u64,
    pub max_api_keys_per_user: u64,
    pub max_ssh_keys_per_user: u64,
    /// Longest `timeout` an execution may ask for.
    pub max_exec_timeout_seconds: u64,
    /// Largest JSON or form body.
    pub max_body_bytes: usize,
    /// Largest `/upload` body.
    pub max_upload_bytes: usize,
    /// Executions running at once (sync and async) per session and per user. Together with
    /// the runtime's per-stream output cap this bounds the output the server holds per user.
    pub max_concurrent_execs_per_session: usize,
    pub max_concurrent_execs_per_user: usize,
    /// Uploads and downloads in flight at once per user.
    pub max_concurrent_transfers_per_user: usize,
    /// Bytes of uploads a user may have spooled on the server's disk at once.
    pub max_spool_bytes_per_user: u64,
    /// Largest file `/download` sends (the base64 document is 4/3 of it).
    pub max_download_bytes: u64,
    /// Sums over live sandboxes that a new one must fit in (see `admission.rs`).
    /// From the file's own `[admission]` table.
    #[serde(skip)]
    pub admission: AdmissionLimits,
}

/// How much the live sandboxes of the host and of one user may hold together, as sums of their
/// limits. Host values left `None` come from the runtime: all of its memory, 16 vCPUs per CPU
/// (sandboxes are mostly idle, so CPU is overcommitted; memory and disk are not), and the size
/// of its layer store.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionLimits {
    pub host_memory_mb: Option<u64>,
    pub host_vcpus: Option<u64>,
    pub host_disk_mb: Option<u64>,
    pub user_memory_mb: u64,
    pub user_vcpus: u64,
    pub user_disk_mb: u64,
}

/// vCPUs the host sums to per real CPU, by default.
pub const VCPUS_PER_CPU: u64 = 16;

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            host_memory_mb: None,
            host_vcpus: None,
            host_disk_mb: None,
            // 32 sessions of the default 512 MB and 1 vCPU; 16 of the default 2 GiB disk.
            user_memory_mb: 16_384,
            user_vcpus: 32,
            user_disk_mb: 32_768,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_lifetime_seconds: 300,
            min_lifetime_seconds: 20,
            max_lifetime_seconds: 86_400,
            default_memory_mb: 512,
            min_memory_mb: 128,
            max_memory_mb: 8192,
            default_vcpu_count: 1,
            max_vcpu_count: 8,
            max_active_sessions_per_user: 32,
            max_pending_tasks_per_user: 64,
            max_api_keys_per_user: 100,
            max_ssh_keys_per_user: 100,
            max_exec_timeout_seconds: 86_400,
            max_body_bytes: 64 << 20,
            max_upload_bytes: 1 << 30,
            max_concurrent_execs_per_session: 4,
            max_concurrent_execs_per_user: 8,
            max_concurrent_transfers_per_user: 4,
            max_spool_bytes_per_user: 1 << 30,
            max_download_bytes: 1 << 30,
            admission: AdmissionLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use images directory {path}: {source}")]
    ImagesDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("INSTAVM_ADMIN_API_KEY must be 16 to 256 printable ASCII characters without spaces")]
    AdminKey,
    #[error("{0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Check the configuration and create the directories it names.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(key) = &self.admin_api_key {
            if !is_valid_key_text(key) {
                return Err(ConfigError::AdminKey);
            }
        }
        let l = &self.limits;
        if l.min_lifetime_seconds == 0
            || l.min_lifetime_seconds > l.max_lifetime_seconds
            || !(l.min_lifetime_seconds..=l.max_lifetime_seconds)
                .contains(&l.default_lifetime_seconds)
            || l.min_memory_mb > l.max_memory_mb
            || !(l.min_memory_mb..=l.max_memory_mb).contains(&l.default_memory_mb)
            || !(1..=l.max_vcpu_count).contains(&l.default_vcpu_count)
        {
            return Err(ConfigError::Invalid(format!("inconsistent limits: {l:?}")));
        }
        create_private_dir(&self.data_dir).map_err(|source| ConfigError::DataDir {
            path: self.data_dir.clone(),
            source,
        })?;
        if let Some(images) = &self.images_dir {
            std::fs::create_dir_all(images).map_err(|source| ConfigError::ImagesDir {
                path: images.clone(),
                source,
            })?;
        }
        Ok(())
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("instavm.db")
    }

    pub fn admin_key_path(&self) -> PathBuf {
        self.data_dir.join("admin_api_key")
    }

    /// Where uploads wait when their file part arrives before the fields naming the target.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }

    /// The SSH gateway's ed25519 host key (OpenSSH format, mode 0600).
    pub fn ssh_host_key_path(&self) -> PathBuf {
        self.data_dir.join("ssh_host_ed25519_key")
    }
}

/// An API key as the server accepts it: printable ASCII, no whitespace, sane length.
pub fn is_valid_key_text(key: &str) -> bool {
    (16..=256).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Create a directory (and parents) readable only by its owner.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other("not a directory"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    // Prove we can write there now rather than failing on the first request.
    let probe = path.join(".write-test");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

impl Limits {
    /// These limits with a user's overrides applied. A default above the user's maximum comes
    /// down to it, so a request that names no value still fits.
    pub fn for_user(&self, o: &UserLimits) -> Limits {
        let mut l = self.clone();
        if let Some(v) = o.max_active_sessions_per_user {
            l.max_active_sessions_per_user = v;
        }
        if let Some(v) = o.max_memory_mb {
            l.max_memory_mb = v;
            l.default_memory_mb = l.default_memory_mb.min(v);
        }
        if let Some(v) = o.max_vcpu_count {
            l.max_vcpu_count = v;
            l.default_vcpu_count = l.default_vcpu_count.min(v);
        }
        if let Some(v) = o.max_lifetime_seconds {
            l.max_lifetime_seconds = v;
            l.default_lifetime_seconds = l.default_lifetime_seconds.min(v);
        }
        let a = &mut l.admission;
        a.user_memory_mb = o.user_memory_mb.unwrap_or(a.user_memory_mb);
        a.user_vcpus = o.user_vcpus.unwrap_or(a.user_vcpus);
        a.user_disk_mb = o.user_disk_mb.unwrap_or(a.user_disk_mb);
        l
    }

    /// Overrides that would leave a user unable to start anything sensible are refused: a
    /// maximum below the server's minimum.
    pub fn check_overrides(&self, o: &UserLimits) -> Result<(), String> {
        let below = |name: &str, got: u64, min: u64| {
            Err(format!(
                "{name} must be at least {min} (the server's minimum), got {got}"
            ))
        };
        if let Some(v) = o.max_memory_mb.filter(|v| *v < self.min_memory_mb) {
            return below("max_memory_mb", v.into(), self.min_memory_mb.into());
        }
        if let Some(v) = o
            .max_lifetime_seconds
            .filter(|v| *v < self.min_lifetime_seconds)
        {
            return below("max_lifetime_seconds", v, self.min_lifetime_seconds);
        }
        if o.max_vcpu_count == Some(0) {
            return below("max_vcpu_count", 0, 1);
        }
        Ok(())
    }

    /// The fields an operator can override, as they stand.
    pub fn effective(&self) -> EffectiveLimits {
        EffectiveLimits {
            max_active_sessions_per_user: self.max_active_sessions_per_user,
            max_memory_mb: self.max_memory_mb,
            max_vcpu_count: self.max_vcpu_count,
            max_lifetime_seconds: self.max_lifetime_seconds,
            user_memory_mb: self.admission.user_memory_mb,
            user_vcpus: self.admission.user_vcpus,
            user_disk_mb: self.admission.user_disk_mb,
        }
    }
}

/// The operator's `--config` file (TOML): `[limits]` holds fields of [`Limits`] and
/// `[admission]` those of [`AdmissionLimits`]. Keys left out keep their defaults and unknown
/// keys are an error, so a typo never silently leaves a limit at its default.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    limits: Limits,
    admission: AdmissionLimits,
}

impl ConfigFile {
    /// The limits the file describes, admission sums included.
    pub fn into_limits(self) -> Limits {
        Limits {
            admission: self.admission,
            ..self.limits
        }
    }

    pub fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| ConfigError::Invalid(format!("in {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_keeps_every_default() {
        assert_eq!(
            ConfigFile::parse("").unwrap().into_limits(),
            Limits::default()
        );
        assert_eq!(
            ConfigFile::parse("[limits]\n[admission]\n")
                .unwrap()
                .into_limits(),
            Limits::default()
        );
    }

    #[test]
    fn limits_and_admission_sums_come_from_their_tables() {
        let file = ConfigFile::parse(
            "[limits]\nmax_active_sessions_per_user = 3\nmax_memory_mb = 2048\n\
             [admission]\nuser_vcpus = 4\nhost_memory_mb = 10000\n",
        )
        .unwrap();
        let l = file.into_limits();
        assert_eq!(l.max_active_sessions_per_user, 3);
        assert_eq!(l.max_memory_mb, 2048);
        assert_eq!(l.admission.user_vcpus, 4);
        assert_eq!(l.admission.host_memory_mb, Some(10_000));
        assert_eq!(l.default_memory_mb, Limits::default().default_memory_mb);
        assert_eq!(
            l.admission.user_memory_mb,
            AdmissionLimits::default().user_memory_mb
        );
    }

    #[test]
    fn typos_and_wrong_types_are_errors_that_name_the_key() {
        let err = ConfigFile::parse("[limits]\nmax_sesions = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_sesions"), "{err}");
        let err = ConfigFile::parse("[limits]\nmax_memory_mb = \"lots\"\n").unwrap_err();
        assert!(err.to_string().contains("max_memory_mb"), "{err}");
        assert!(ConfigFile::parse("[limit]\n").is_err());
        assert!(ConfigFile::parse("[admission]\nuser_cpus = 2\n").is_err());
    }
}
