//! The validated manifest, field for field the reference's `CookbookManifest` dataclasses.
//! Integers are [`PyInt`] because the reference keeps Python ints: `true` passes as `1` and is
//! printed back as `true`, and values are unbounded.

use std::path::PathBuf;

use crate::py::json::Json;
use crate::yaml::PyInt;

/// `kind`: what the manifest deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    Cron,
    Job,
    Devbox,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Cron => "cron",
            Kind::Job => "job",
            Kind::Devbox => "devbox",
        }
    }
}

/// `deploy.kind` (or its alias `deploy.source`); devbox manifests get `devbox` internally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployKind {
    UploadAndRun,
    PublishedSnapshot,
    Devbox,
}

impl DeployKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployKind::UploadAndRun => "upload_and_run",
            DeployKind::PublishedSnapshot => "published_snapshot",
            DeployKind::Devbox => "devbox",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploySpec {
    pub kind: DeployKind,
    pub snapshot_id: Option<String>,
    pub snapshot_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecretSpec {
    pub name: String,
    pub prompt: String,
    pub env_name: String,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VmConfig {
    pub memory_mb: PyInt,
    /// `vm.vcpu_count`, or `vm.vcpus` for devbox manifests.
    pub vcpu_count: PyInt,
    pub timeout_seconds: Option<PyInt>,
    pub image_variant: Option<String>,
    /// `microvm` or `computer_use`; a `desktop` block implies `computer_use`.
    pub profile: Option<String>,
    /// `vm.metadata` as JSON (`{}` when absent). Values JSON cannot hold are kept as
    /// [`Json::Fail`], which fails only when the metadata is serialised, as in Python.
    pub metadata: Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    pub port: PyInt,
    pub healthcheck_path: String,
    pub share_public_default: bool,
    pub readiness_timeout_seconds: PyInt,
    /// Devbox only: the query string opened with the share, starting with `?`.
    pub query: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub workdir: String,
    pub start_command: String,
    pub logs_hint: Option<String>,
    /// Warned about as "not executed", but 0.26.1 runs it as `<pre> && <start>`.
    pub pre_start_command: Option<String>,
    pub shutdown_command: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactConfig {
    pub oci_image: String,
    pub snapshot_name: String,
    pub snapshot_visibility: String,
}

/// `build`: a Docker build for published snapshots, or build steps for devbox manifests.
#[derive(Debug, Clone, PartialEq)]
pub enum Build {
    None,
    Image {
        context: String,
        dockerfile: String,
        target: Option<String>,
    },
    Steps(Vec<DevboxBuildStep>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DevboxBuildStep {
    pub name: String,
    pub command: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DevboxRuntimeSecret {
    pub name: String,
    pub env_name: String,
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DevboxRuntimeStep {
    /// `stage_secret`, `update` or `command`.
    pub kind: String,
    pub name: Option<String>,
    pub command: Option<String>,
    pub optional: bool,
    pub secrets: Vec<DevboxRuntimeSecret>,
}

/// `runtime`: a label for service, cron and job manifests, setup steps for devbox manifests.
#[derive(Debug, Clone, PartialEq)]
pub enum Runtime {
    Label(String),
    Steps(Vec<DevboxRuntimeStep>),
}

impl Runtime {
    /// What the plan shows: the label, or `devbox`.
    pub fn label(&self) -> &str {
        match self {
            Runtime::Label(label) => label,
            Runtime::Steps(_) => "devbox",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DevboxTerminal {
    pub tmux_session: String,
    pub command: String,
    pub cwd: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub setup_command: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VaultConfig {
    pub required: bool,
    /// Lowercased, de-duplicated, at least one.
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EgressConfig {
    /// `open`, `deny` or `allowlist`.
    pub mode: String,
    pub include_vault_hosts: bool,
    pub allowed_domains: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    pub allow_package_managers: bool,
    /// `egress.hosts`, the legacy spelling of `allowed_domains`.
    pub legacy_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumePreSeed {
    pub local: String,
    pub remote: String,
    pub overwrite: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeAutoCheckpoint {
    pub on_success: bool,
    pub retention: Option<PyInt>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeConfig {
    pub name: String,
    pub mount: String,
    /// `rw` or `ro`.
    pub mode: String,
    pub id: Option<String>,
    pub size_gb: Option<PyInt>,
    pub create_if_missing: bool,
    pub checkpoint_id: Option<String>,
    pub pre_seed: Vec<VolumePreSeed>,
    pub auto_checkpoint: Option<VolumeAutoCheckpoint>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShareConfig {
    pub port: PyInt,
    pub public: bool,
    /// `none`, `password` or `api_key` (only parsed).
    pub auth: String,
    pub password_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRetries {
    pub max: PyInt,
    pub backoff_seconds: PyInt,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleFanout {
    pub count: PyInt,
    pub shard_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    pub cron: String,
    pub timezone: String,
    pub concurrency: String,
    pub catchup: String,
    pub timeout_seconds: Option<PyInt>,
    pub warm_start: bool,
    pub start_window_seconds: Option<PyInt>,
    pub retries: ScheduleRetries,
    pub fanout: Option<ScheduleFanout>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TriggerConfig {
    /// `manual` or `webhook`.
    pub kind: String,
    pub path: Option<String>,
    pub auth: String,
    pub timeout_seconds: Option<PyInt>,
    pub concurrency_per_account: Option<PyInt>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    pub url: String,
    pub retries: Option<PyInt>,
    pub signing_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Callbacks {
    pub on_success: Vec<Callback>,
    pub on_failure: Vec<Callback>,
}

/// A manifest accepted by [`load_manifest`](super::load_manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The project root: the directory holding the manifest.
    pub path: PathBuf,
    pub schema_version: PyInt,
    pub kind: Kind,
    pub slug: String,
    pub title: String,
    pub version: String,
    pub summary: String,
    pub category: String,
    pub runtime: Runtime,
    pub deploy: DeploySpec,
    pub vm: VmConfig,
    pub app: Option<AppConfig>,
    pub run: Option<RunConfig>,
    pub secrets: Vec<SecretSpec>,
    pub post_deploy_notes: Vec<String>,
    pub artifact: Option<ArtifactConfig>,
    pub build: Build,
    pub source: Option<SourceConfig>,
    pub vault: Option<VaultConfig>,
    /// In manifest order; the plan and the launch script sort by name.
    pub env: Vec<(String, String)>,
    pub egress: Option<EgressConfig>,
    pub volumes: Vec<VolumeConfig>,
    pub share: Option<ShareConfig>,
    pub schedule: Option<ScheduleConfig>,
    pub triggers: Vec<TriggerConfig>,
    pub callbacks: Callbacks,
    /// Parsed-only blocks, kept as JSON-like values.
    pub lifecycle: Option<Json>,
    pub desktop: Option<Json>,
    pub sandbox: Option<Json>,
    pub domain: Option<Json>,
    pub warnings: Vec<String>,
    pub name: String,
    pub description: String,
    pub audience: Option<String>,
    pub source_repo: Option<String>,
    pub icon: Option<String>,
    pub terminal: Option<DevboxTerminal>,
    /// What the reference prints on stderr while loading (Python `warnings.warn`), e.g. a
    /// schedule timezone missing from the local tz database.
    pub load_notices: Vec<String>,
}

impl Manifest {
    /// `schema_version == 1` (a YAML `true` counts as 1, as in Python).
    pub fn is_v1(&self) -> bool {
        self.schema_version.value() == 1.into()
    }

    /// The env names in sorted order, as the plan lists them.
    pub fn env_names_sorted(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        names
    }
}
