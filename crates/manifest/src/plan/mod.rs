//! The resolved deploy plan: `instavm deploy [PATH] [-f FILE]` with its overrides, from a
//! manifest or from zero-config detection (the reference's `handle_deploy` up to `--plan`).
//! Later stages (VM create, upload, start, shares) consume [`Plan`] instead of re-reading flags.

mod json;
mod text;

use std::path::{Path, PathBuf};

use num_bigint::BigInt;
use num_traits::Zero;

use crate::detect::{self, DeployPlan, DetectError};
use crate::py::path::{expanduser, resolve};
use crate::schema::{load_manifest, Manifest, ManifestError};
use crate::yaml::PyInt;

/// The `instavm deploy` flags that shape the plan.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// `-f/--file`, relative to the project path.
    pub file: Option<String>,
    pub port: Option<BigInt>,
    pub health_path: Option<String>,
    pub start_command: Option<String>,
    pub install_command: Option<String>,
    /// `--build-command`; an empty string clears a detected build step.
    pub build_command: Option<String>,
    pub private: bool,
    /// `--snapshot ID`.
    pub snapshot_id: Option<String>,
    /// `--env K=V`, in order (later values win).
    pub env: Vec<String>,
}

impl DeployOptions {
    /// The `--env` pairs the reference exports: both sides non-empty.
    pub fn env_overrides(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (!k.is_empty() && !v.is_empty()).then(|| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// What the deploy sees for an environment variable: `--env` first, then the process.
    pub fn env_value(&self, name: &str) -> Option<String> {
        self.env_overrides()
            .into_iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .or_else(|| std::env::var(name).ok())
    }

    fn snapshot(&self) -> Option<&str> {
        self.snapshot_id.as_deref().filter(|s| !s.is_empty())
    }

    /// Python truthiness of `--port`: `--port 0` is ignored.
    fn port_override(&self) -> Option<&BigInt> {
        self.port.as_ref().filter(|p| !p.is_zero())
    }
}

/// A plan from `instavm.yaml` (or `-f FILE`).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestPlan {
    /// The manifest with the CLI overrides applied.
    pub manifest: Manifest,
    /// The manifest file name, shown as `source`.
    pub source: String,
    /// `--snapshot`, which wins over the manifest's snapshot settings.
    pub snapshot_id: Option<String>,
}

/// A plan from zero-config detection.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectedPlan {
    /// The detected plan with the CLI overrides applied.
    pub plan: DeployPlan,
    /// The project directory.
    pub path: PathBuf,
    pub snapshot_id: Option<String>,
    /// `--private` (applied to the manifest the deploy builds).
    pub private: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Manifest(Box<ManifestPlan>),
    Detected(Box<DetectedPlan>),
}

/// Why no plan could be made. Messages are the reference CLI's.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{} is not a directory.", .0.display())]
    NotADirectory(PathBuf),
    #[error("manifest file not found: {}", .0.display())]
    ManifestNotFound(PathBuf),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(
        "--port, --health-path, and --private only apply to service manifests with an app block."
    )]
    AppOverrideWithoutApp,
    #[error("--start-command only applies to manifests with a run block.")]
    StartCommandWithoutRun,
}

/// Resolves `instavm deploy <path> [-f FILE]` into a plan, never touching the network.
pub fn resolve_plan(path: &Path, options: &DeployOptions) -> Result<Plan, PlanError> {
    let mut dir = resolve(path);
    if !dir.is_dir() {
        return Err(PlanError::NotADirectory(dir));
    }
    let manifest_path = match options.file.as_deref() {
        Some(file) if !file.is_empty() => {
            let mut candidate = expanduser(file);
            if !candidate.is_absolute() {
                candidate = dir.join(candidate);
            }
            let candidate = resolve(&candidate);
            if !candidate.is_file() {
                return Err(PlanError::ManifestNotFound(candidate));
            }
            dir = candidate
                .parent()
                .map_or_else(PathBuf::new, Path::to_path_buf);
            candidate
        }
        _ => dir.join("instavm.yaml"),
    };
    if manifest_path.exists() {
        let manifest = apply_manifest_overrides(load_manifest(&manifest_path)?, options)?;
        let source = manifest_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(Plan::Manifest(Box::new(ManifestPlan {
            manifest,
            source,
            snapshot_id: options.snapshot().map(str::to_string),
        })));
    }
    let mut plan = detect::detect_project(&dir)?;
    if let Some(port) = options.port_override() {
        plan.port = port.clone();
    }
    let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    if let Some(health) = non_empty(&options.health_path) {
        plan.health_path = health;
    }
    if let Some(start) = non_empty(&options.start_command) {
        plan.start_command = start;
    }
    if let Some(install) = non_empty(&options.install_command) {
        plan.install_command = install;
    }
    if let Some(build) = &options.build_command {
        plan.build_command = Some(build.clone());
    }
    Ok(Plan::Detected(Box::new(DetectedPlan {
        plan,
        path: dir,
        snapshot_id: options.snapshot().map(str::to_string),
        private: options.private,
    })))
}

/// `--port`, `--health-path`, `--start-command` and `--private` on top of a manifest.
fn apply_manifest_overrides(
    mut manifest: Manifest,
    options: &DeployOptions,
) -> Result<Manifest, PlanError> {
    let health = options.health_path.as_deref().filter(|s| !s.is_empty());
    let start = options.start_command.as_deref().filter(|s| !s.is_empty());
    let port = options.port_override();
    if (port.is_some() || health.is_some() || options.private) && manifest.app.is_none() {
        return Err(PlanError::AppOverrideWithoutApp);
    }
    if let Some(app) = manifest.app.as_mut() {
        if let Some(port) = port {
            app.port = PyInt::Int(port.clone());
        }
        if let Some(health) = health {
            app.healthcheck_path = health.to_string();
        }
    }
    if let Some(start) = start {
        let run = manifest
            .run
            .as_mut()
            .ok_or(PlanError::StartCommandWithoutRun)?;
        run.start_command = start.to_string();
    }
    if let Some(app) = manifest.app.as_mut().filter(|_| options.private) {
        app.share_public_default = false;
    }
    Ok(manifest)
}
