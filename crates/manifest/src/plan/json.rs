//! `deploy --plan --json`: the reference's `_manifest_plan_payload` and zero-config payload,
//! same keys, same order, same values.

use super::{DetectedPlan, ManifestPlan, Plan};
use crate::py::json::{dumps, Json};
use crate::py::PyError;
use crate::schema::{Build, Kind, Manifest, Runtime};
use crate::yaml::PyInt;

impl Plan {
    /// The plan as the reference's JSON value.
    pub fn to_json(&self) -> Json {
        match self {
            Plan::Manifest(plan) => plan.to_json(),
            Plan::Detected(plan) => plan.to_json(),
        }
    }

    /// One line of JSON exactly as `instavm deploy --plan --json` prints it (without the
    /// newline). Fails like `json.dumps` on values JSON cannot hold (e.g. a date in
    /// `vm.metadata`).
    pub fn to_json_line(&self) -> Result<String, PyError> {
        dumps(&self.to_json())
    }
}

fn int(value: &PyInt) -> Json {
    crate::schema::int_json(value)
}

fn opt_int(value: Option<&PyInt>) -> Json {
    value.map_or(Json::Null, int)
}

impl ManifestPlan {
    pub fn to_json(&self) -> Json {
        let m = &self.manifest;
        let mut out: Vec<(&str, Json)> = vec![
            ("slug", Json::str(&m.slug)),
            ("schema_version", int(&m.schema_version)),
            ("kind", Json::str(m.kind.as_str())),
            ("runtime", Json::str(m.runtime.label())),
            ("source", Json::str(&self.source)),
            ("deploy_kind", Json::str(m.deploy.kind.as_str())),
            (
                "secrets",
                Json::strings(m.secrets.iter().map(|s| &s.env_name)),
            ),
            ("env", Json::strings(m.env_names_sorted())),
            ("warnings", Json::strings(&m.warnings)),
        ];
        if let Some(run) = &m.run {
            out.push(("start_command", Json::str(&run.start_command)));
        }
        if m.kind == Kind::Devbox {
            out.extend(devbox_fields(m));
        }
        if let Some(app) = &m.app {
            out.push((
                "app",
                Json::object([
                    ("port", int(&app.port)),
                    ("health_path", Json::str(&app.healthcheck_path)),
                    ("share_public_default", Json::Bool(app.share_public_default)),
                    (
                        "readiness_timeout_seconds",
                        int(&app.readiness_timeout_seconds),
                    ),
                ]),
            ));
            out.push(("port", int(&app.port)));
            out.push(("health_path", Json::str(&app.healthcheck_path)));
        }
        out.push(("vm", vm_json(m)));
        if let Some(s) = &m.schedule {
            out.push((
                "schedule",
                Json::object([
                    ("cron", Json::str(&s.cron)),
                    ("timezone", Json::str(&s.timezone)),
                    ("concurrency", Json::str(&s.concurrency)),
                    ("catchup", Json::str(&s.catchup)),
                    ("timeout_seconds", opt_int(s.timeout_seconds.as_ref())),
                    ("warm_start", Json::Bool(s.warm_start)),
                    (
                        "start_window_seconds",
                        opt_int(s.start_window_seconds.as_ref()),
                    ),
                    (
                        "retries",
                        Json::object([
                            ("max", int(&s.retries.max)),
                            ("backoff_seconds", int(&s.retries.backoff_seconds)),
                        ]),
                    ),
                ]),
            ));
        }
        if !m.triggers.is_empty() {
            let triggers = m.triggers.iter().map(|t| {
                Json::object([
                    ("type", Json::str(&t.kind)),
                    ("path", Json::opt_str(t.path.as_deref())),
                    ("auth", Json::str(&t.auth)),
                    ("timeout_seconds", opt_int(t.timeout_seconds.as_ref())),
                    (
                        "concurrency_per_account",
                        opt_int(t.concurrency_per_account.as_ref()),
                    ),
                ])
            });
            out.push(("triggers", Json::Array(triggers.collect())));
        }
        if let Some(vault) = &m.vault {
            out.push((
                "vault",
                Json::object([
                    ("required", Json::Bool(vault.required)),
                    ("hosts", Json::strings(&vault.hosts)),
                ]),
            ));
        }
        if let Some(e) = &m.egress {
            let effective = m.effective_egress().into_iter().map(|entry| {
                Json::object([
                    ("domain", Json::str(entry.domain)),
                    ("source", Json::str(entry.source)),
                ])
            });
            out.push((
                "egress",
                Json::object([
                    ("mode", Json::str(&e.mode)),
                    ("include_vault_hosts", Json::Bool(e.include_vault_hosts)),
                    ("allowed_domains", Json::strings(&e.allowed_domains)),
                    ("allowed_cidrs", Json::strings(&e.allowed_cidrs)),
                    (
                        "allow_package_managers",
                        Json::Bool(e.allow_package_managers),
                    ),
                    ("effective_allowlist", Json::Array(effective.collect())),
                ]),
            ));
        }
        if !m.volumes.is_empty() {
            let volumes = m.volumes.iter().map(|v| {
                Json::object([
                    ("name", Json::str(&v.name)),
                    ("mount", Json::str(&v.mount)),
                    ("mode", Json::str(&v.mode)),
                    ("size_gb", opt_int(v.size_gb.as_ref())),
                    ("create_if_missing", Json::Bool(v.create_if_missing)),
                    ("checkpoint_id", Json::opt_str(v.checkpoint_id.as_deref())),
                ])
            });
            out.push(("volumes", Json::Array(volumes.collect())));
        }
        if let Some(share) = &m.share {
            out.push((
                "share",
                Json::object([
                    ("port", int(&share.port)),
                    ("public", Json::Bool(share.public)),
                    ("auth", Json::str(&share.auth)),
                    (
                        "password_secret",
                        Json::opt_str(share.password_secret.as_deref()),
                    ),
                ]),
            ));
        }
        // One snapshot reference: --snapshot, deploy.snapshot_id, deploy.snapshot_name, then
        // artifact.snapshot_name.
        if let Some(id) = self
            .snapshot_id
            .as_deref()
            .or(m.deploy.snapshot_id.as_deref())
        {
            out.push(("snapshot_id", Json::str(id)));
        } else if let Some(name) = m
            .deploy
            .snapshot_name
            .as_deref()
            .or(m.artifact.as_ref().map(|a| a.snapshot_name.as_str()))
        {
            out.push(("snapshot_name", Json::str(name)));
        }
        Json::object(out)
    }
}

fn vm_json(m: &Manifest) -> Json {
    Json::object([
        ("memory_mb", int(&m.vm.memory_mb)),
        ("vcpu_count", int(&m.vm.vcpu_count)),
        ("timeout_seconds", opt_int(m.vm.timeout_seconds.as_ref())),
        (
            "image_variant",
            Json::opt_str(m.vm.image_variant.as_deref()),
        ),
        ("profile", Json::opt_str(m.vm.profile.as_deref())),
        ("metadata", m.vm.metadata.clone()),
    ])
}

fn devbox_fields(m: &Manifest) -> Vec<(&'static str, Json)> {
    let build = match &m.build {
        Build::Steps(steps) => steps
            .iter()
            .map(|s| {
                Json::object([
                    ("name", Json::str(&s.name)),
                    ("command", Json::str(&s.command)),
                ])
            })
            .collect(),
        _ => Vec::new(),
    };
    let steps = match &m.runtime {
        Runtime::Steps(steps) => steps
            .iter()
            .map(|step| {
                let secrets = step.secrets.iter().map(|s| {
                    Json::object([
                        ("name", Json::str(&s.name)),
                        ("env_name", Json::str(&s.env_name)),
                        ("optional", Json::Bool(s.optional)),
                    ])
                });
                Json::object([
                    ("kind", Json::str(&step.kind)),
                    ("name", Json::opt_str(step.name.as_deref())),
                    ("command", Json::opt_str(step.command.as_deref())),
                    ("optional", Json::Bool(step.optional)),
                    ("secrets", Json::Array(secrets.collect())),
                ])
            })
            .collect(),
        Runtime::Label(_) => Vec::new(),
    };
    let terminal = m.terminal.as_ref().map_or(Json::Null, |t| {
        Json::object([
            ("tmux_session", Json::str(&t.tmux_session)),
            ("command", Json::str(&t.command)),
            ("cwd", Json::str(&t.cwd)),
        ])
    });
    vec![
        ("build", Json::Array(build)),
        ("runtime_steps", Json::Array(steps)),
        ("terminal", terminal),
        ("audience", Json::opt_str(m.audience.as_deref())),
        ("source_repo", Json::opt_str(m.source_repo.as_deref())),
        ("icon", Json::opt_str(m.icon.as_deref())),
    ]
}

impl DetectedPlan {
    pub fn to_json(&self) -> Json {
        let p = &self.plan;
        let mut out: Vec<(&str, Json)> = vec![
            ("slug", Json::str(&p.slug)),
            ("runtime", Json::str(&p.runtime)),
            ("package_manager", Json::str(&p.package_manager)),
            ("install_command", Json::str(&p.install_command)),
            ("build_command", Json::opt_str(p.build_command.as_deref())),
            ("start_command", Json::str(&p.start_command)),
            ("port", Json::Int(p.port.clone())),
            ("health_path", Json::str(&p.health_path)),
            (
                "secrets",
                Json::strings(p.secrets.iter().map(|s| &s.env_name)),
            ),
        ];
        if let Some(id) = &self.snapshot_id {
            out.push(("snapshot_id", Json::str(id)));
        }
        Json::object(out)
    }
}
