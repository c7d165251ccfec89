//! Deno and static-site projects, and the manifest a detected plan deploys as
//! (`plan_to_manifest`).

use std::path::Path;
use std::sync::LazyLock;

use num_bigint::BigInt;
use regex::Regex;

use super::files::read_strict;
use super::{
    capture_int, dir_name, pattern, secrets, slugify, DeployPlan, DetectError, PORT_PATTERN,
};
use crate::py::json::Json;
use crate::schema::*;
use crate::yaml::PyInt;

const DENO_MAIN_CANDIDATES: [&str; 8] = [
    "main.ts",
    "main.js",
    "main.mjs",
    "main.mts",
    "server.ts",
    "server.js",
    "app.ts",
    "app.js",
];
const STATIC_ROOTS: [&str; 3] = ["public", "dist", "build"];

static DENO_PORT: LazyLock<Regex> = LazyLock::new(|| pattern(r"port:\s*([0-9]{2,5})"));

pub fn detect_deno(path: &Path) -> Result<DeployPlan, DetectError> {
    let Some(main) = DENO_MAIN_CANDIDATES.iter().find(|c| path.join(c).exists()) else {
        return Err(DetectError::Refused(
            "Could not detect start command. No main.ts, main.js, server.ts, server.js, app.ts, or app.js found. Use --start-command to specify how to start the app."
                .into(),
        ));
    };
    let mut port = BigInt::from(8000);
    if let Some(text) = read_strict(&path.join(main))? {
        if let Some(found) = capture_int(&DENO_PORT, &text)? {
            port = found;
        } else if let Some(found) = capture_int(&PORT_PATTERN, &text)? {
            port = found;
        }
    }
    let secrets = secrets::collect(path, &[], "deno");
    Ok(DeployPlan {
        slug: slugify(&dir_name(path)),
        runtime: "deno".into(),
        package_manager: "deno".into(),
        install_command: "curl -fsSL https://deno.land/install.sh | sh".into(),
        build_command: None,
        start_command: format!("$HOME/.deno/bin/deno run --allow-all {main}"),
        port,
        health_path: "/".into(),
        secrets,
    })
}

/// `_has_static_signals`: an `index.html` at the root or in `public/`, `dist/` or `build/`.
pub fn has_static_signals(path: &Path) -> bool {
    path.join("index.html").exists()
        || STATIC_ROOTS
            .iter()
            .any(|d| path.join(d).join("index.html").exists())
}

pub fn detect_static(path: &Path) -> Result<DeployPlan, DetectError> {
    let root = STATIC_ROOTS
        .iter()
        .find(|d| path.join(d).join("index.html").exists())
        .copied()
        .unwrap_or(".");
    Ok(DeployPlan {
        slug: slugify(&dir_name(path)),
        runtime: "static".into(),
        package_manager: "none".into(),
        install_command: "echo 'No dependencies'".into(),
        build_command: None,
        start_command: format!("python3 -m http.server 3000 --directory {root} --bind 0.0.0.0"),
        port: BigInt::from(3000),
        health_path: "/".into(),
        secrets: Vec::new(),
    })
}

const NVM_SETUP_PREFIX: &str = concat!(
    "export NVM_DIR=\"$HOME/.nvm\" && ",
    "if [ ! -s \"$NVM_DIR/nvm.sh\" ]; then ",
    "curl -fsSL https://raw.githubusercontent.com/nvm-sh/nvm/v0.40.3/install.sh | bash; ",
    "fi && ",
    ". \"$NVM_DIR/nvm.sh\" && "
);

/// `plan_to_manifest`: the v1 service manifest a zero-config deploy runs.
pub fn plan_to_manifest(plan: &DeployPlan, path: &Path) -> Result<Manifest, DetectError> {
    let mut setup_command = plan.install_command.clone();
    if let Some(build) = plan.build_command.as_deref().filter(|b| !b.is_empty()) {
        setup_command = format!("{setup_command} && {build}");
    }
    let mut start_command = plan.start_command.clone();
    if plan.runtime == "node" {
        let version = super::node::node_version(path)?;
        setup_command = format!(
            "{NVM_SETUP_PREFIX}nvm install {version} && nvm use {version} && {setup_command}"
        );
        start_command = format!(
            "export NVM_DIR=\"$HOME/.nvm\" && . \"$NVM_DIR/nvm.sh\" && nvm use {version} >/dev/null && {start_command}"
        );
    }
    let exclude = if plan.runtime == "static" {
        Vec::new()
    } else {
        ["dist", "dist/*", "build", "build/*"]
            .map(String::from)
            .to_vec()
    };
    Ok(Manifest {
        path: crate::py::path::resolve(path),
        schema_version: PyInt::from(1),
        kind: Kind::Service,
        slug: plan.slug.clone(),
        title: plan.slug.clone(),
        version: "0.0.0".into(),
        summary: String::new(),
        category: "deploy".into(),
        runtime: Runtime::Label(plan.runtime.clone()),
        deploy: DeploySpec {
            kind: DeployKind::UploadAndRun,
            snapshot_id: None,
            snapshot_name: None,
        },
        vm: VmConfig {
            memory_mb: PyInt::from(2048),
            vcpu_count: PyInt::from(2),
            timeout_seconds: Some(PyInt::from(3600)),
            image_variant: None,
            profile: None,
            metadata: Json::Object(Vec::new()),
        },
        app: Some(AppConfig {
            port: PyInt::Int(plan.port.clone()),
            healthcheck_path: plan.health_path.clone(),
            share_public_default: true,
            readiness_timeout_seconds: PyInt::from(120),
            query: None,
        }),
        run: Some(RunConfig {
            workdir: ".".into(),
            start_command,
            logs_hint: None,
            pre_start_command: None,
            shutdown_command: None,
        }),
        secrets: plan.secrets.clone(),
        post_deploy_notes: Vec::new(),
        artifact: None,
        build: Build::None,
        source: Some(SourceConfig {
            include: vec!["*".into()],
            exclude,
            setup_command,
        }),
        vault: None,
        env: Vec::new(),
        egress: None,
        volumes: Vec::new(),
        share: None,
        schedule: None,
        triggers: Vec::new(),
        callbacks: Callbacks::default(),
        lifecycle: None,
        desktop: None,
        sandbox: None,
        domain: None,
        warnings: Vec::new(),
        name: plan.slug.clone(),
        description: String::new(),
        audience: None,
        source_repo: None,
        icon: None,
        terminal: None,
        load_notices: Vec::new(),
    })
}
