//! `load_manifest`: `_cookbook.load_manifest` of the reference, check for check and in the same
//! order, so that a manifest with several problems reports the same first one.

use std::path::{Path, PathBuf};

use super::error::ManifestError;
use super::fields::*;
use super::model::*;
use super::timezone::{check_zone, ZoneLookup};
use crate::py::json::Json;
use crate::py::path::pathlib_join;
use crate::py::text::{read_text, split_whitespace, Decode, ReadTextError};
use crate::yaml::{self, Obj, PyInt};

type Result<T> = std::result::Result<T, ManifestError>;

/// Reads, parses and validates a manifest file like the reference's `load_manifest`.
pub fn load_manifest(path: &Path) -> Result<Manifest> {
    let text = read_text(path, Decode::Strict).map_err(|e| match e {
        ReadTextError::Io(source) => ManifestError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
        ReadTextError::Decode(err) => ManifestError::Python(err),
    })?;
    parse_manifest(&text, path)
}

/// Validates manifest text as if it were read from `path` (which locates the project root and
/// the `build` context).
pub fn parse_manifest(text: &str, path: &Path) -> Result<Manifest> {
    let doc = yaml::safe_load(text).map_err(|e| match e {
        yaml::LoadError::Syntax(detail) => ManifestError::InvalidYaml {
            path: path.to_path_buf(),
            detail,
        },
        yaml::LoadError::Py(err) => ManifestError::Python(err),
    })?;
    let dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    Parser { dir }.manifest(require_mapping(Some(doc.root()), "root")?)
}

struct Parser {
    dir: PathBuf,
}

const SERVICE_FIELDS: [&str; 12] = [
    "schema_version",
    "slug",
    "title",
    "version",
    "summary",
    "category",
    "runtime",
    "deploy",
    "vm",
    "run",
    "secrets",
    "post_deploy_notes",
];
const DEVBOX_FIELDS: [&str; 8] = [
    "schema_version",
    "slug",
    "name",
    "version",
    "audience",
    "vm",
    "runtime",
    "terminal",
];

/// The blocks each kind of manifest parses before the metadata fields.
struct Blocks<'a> {
    deploy: Option<Obj<'a>>,
    vm: Obj<'a>,
    run: Option<Obj<'a>>,
    app: Option<Obj<'a>>,
}

/// What the `deploy` block and its companions (`artifact`, `build`, `source`) resolve to.
struct DeployParts {
    spec: DeploySpec,
    artifact: Option<ArtifactConfig>,
    build: Build,
    source: Option<SourceConfig>,
}

impl Parser {
    fn manifest(&self, data: Obj<'_>) -> Result<Manifest> {
        let get = |key: &str| some(data.get(key));
        let schema_version = require_int(get("schema_version"), "schema_version")?;
        let version_value = schema_version.value();
        if version_value != 1.into() && version_value != 2.into() {
            return Err(ManifestError::UnsupportedSchemaVersion);
        }
        let v1 = version_value == 1.into();
        let kind = match optional_string(get("kind"), "kind")?.as_deref() {
            None | Some("service") => Kind::Service,
            Some("cron") => Kind::Cron,
            Some("job") => Kind::Job,
            Some("devbox") => Kind::Devbox,
            Some(_) => {
                return Err(ManifestError::one_of(
                    "kind",
                    "`service`, `cron`, `job`, or `devbox`",
                ))
            }
        };
        if v1 && kind != Kind::Service {
            return Err(ManifestError::rule(
                "kind",
                "Manifest field `kind` can only be omitted or `service` for `schema_version: 1`.",
            ));
        }
        check_required(data, kind)?;
        let blocks = self.blocks(data, kind, v1)?;
        let secrets = parse_secrets(get("secrets"))?;
        let deploy = self.deploy_parts(data, blocks.deploy, kind, v1)?;
        let post_deploy_notes = parse_notes(get("post_deploy_notes"), kind)?;
        let vault = parse_vault(get("vault"))?;
        let env = require_string_map(get("env"), "env")?;
        let egress = parse_egress(get("egress"), kind, vault.as_ref())?;
        let volumes = parse_volumes(get("volumes"))?;
        let share = parse_share(get("share"), &secrets)?;
        let mut load_notices = Vec::new();
        let schedule = parse_schedule(get("schedule"), kind, &mut load_notices)?;
        let triggers = parse_triggers(get("triggers"), kind)?;
        let callbacks = parse_callbacks(get("callbacks"), &secrets)?;
        let optional_block = |key: &str| -> Result<Option<Obj<'_>>> {
            get(key).map(|v| require_mapping(Some(v), key)).transpose()
        };
        let desktop = optional_block("desktop")?;
        let sandbox = optional_block("sandbox")?;
        let domain = optional_block("domain")?;
        let lifecycle = optional_block("lifecycle")?;
        let meta = parse_metadata(data, kind, blocks.app)?;

        // `desktop` implies a computer-use VM, whose viewer is enabled unless said otherwise.
        let mut profile = optional_string(some(blocks.vm.get("profile")), "vm.profile")?;
        if desktop.is_some() && profile.is_none() {
            profile = Some("computer_use".to_string());
        }
        let desktop = desktop
            .map(|d| normalize_desktop(d, profile.as_deref()))
            .transpose()?;

        let run_pre = match blocks.run {
            Some(run) => {
                optional_string(some(run.get("pre_start_command")), "run.pre_start_command")?
            }
            None => None,
        };
        let run_post = match blocks.run {
            Some(run) => {
                optional_string(some(run.get("shutdown_command")), "run.shutdown_command")?
            }
            None => None,
        };
        let warnings = collect_warnings(&WarningInputs {
            egress: egress.as_ref(),
            share: share.as_ref(),
            blocks: [
                ("desktop", desktop.is_some()),
                ("sandbox", sandbox.is_some()),
                ("domain", domain.is_some()),
            ],
            schedule: schedule.as_ref(),
            lifecycle_non_empty: lifecycle.is_some_and(|l| l.truthy()),
            run_pre: run_pre.is_some(),
            run_post: run_post.is_some(),
            volumes: &volumes,
        });

        // The dataclass constructor evaluates its arguments in this order.
        let slug = require_string(get("slug"), "slug")?;
        let version = require_string(get("version"), "version")?;
        let vm = parse_vm(blocks.vm, kind, profile)?;
        let app = blocks
            .app
            .map(|app| parse_app(app, kind, &schema_version, meta.app_query.clone()))
            .transpose()?;
        let run = blocks
            .run
            .map(|run| parse_run(run, run_pre, run_post))
            .transpose()?;
        if let Some(app) = &app {
            validate_port(&app.port, "app.port")?;
            validate_positive(
                Some(&app.readiness_timeout_seconds),
                "app.readiness_timeout_seconds",
            )?;
            if !app.healthcheck_path.starts_with('/') {
                return Err(ManifestError::rule(
                    "app.healthcheck_path",
                    "Manifest field `app.healthcheck_path` must start with `/`.",
                ));
            }
        }
        if let Some(profile) = &vm.profile {
            if profile != "microvm" && profile != "computer_use" {
                return Err(ManifestError::one_of(
                    "vm.profile",
                    "`microvm` or `computer_use`",
                ));
            }
        }
        Ok(Manifest {
            path: self.dir.clone(),
            schema_version,
            kind,
            slug,
            title: meta.title,
            version,
            summary: meta.summary,
            category: meta.category,
            runtime: meta.runtime,
            deploy: deploy.spec,
            vm,
            app,
            run,
            secrets,
            post_deploy_notes,
            artifact: deploy.artifact,
            build: deploy.build,
            source: deploy.source,
            vault,
            env,
            egress,
            volumes,
            share,
            schedule,
            triggers,
            callbacks,
            lifecycle: lifecycle.map(yaml::to_json),
            desktop,
            sandbox: sandbox.map(yaml::to_json),
            domain: domain.map(yaml::to_json),
            warnings,
            name: meta.name,
            description: meta.description,
            audience: meta.audience,
            source_repo: meta.source_repo,
            icon: meta.icon,
            terminal: meta.terminal,
            load_notices,
        })
    }

    fn blocks<'a>(&self, data: Obj<'a>, kind: Kind, v1: bool) -> Result<Blocks<'a>> {
        let get = |key: &str| some(data.get(key));
        let deploy = match kind {
            Kind::Devbox => None,
            _ => Some(require_mapping(get("deploy"), "deploy")?),
        };
        let vm = require_mapping(get("vm"), "vm")?;
        let run = match kind {
            Kind::Devbox => None,
            _ => Some(require_mapping(get("run"), "run")?),
        };
        let app = if kind == Kind::Service || get("app").is_some() {
            Some(require_mapping(get("app"), "app")?)
        } else {
            None
        };
        if !v1 && matches!(kind, Kind::Cron | Kind::Job) && get("app").is_some() {
            return Err(ManifestError::rule(
                "app",
                format!(
                    "Manifest field `app` is not supported for `{}` workloads.",
                    kind.as_str()
                ),
            ));
        }
        Ok(Blocks {
            deploy,
            vm,
            run,
            app,
        })
    }

    fn deploy_parts(
        &self,
        data: Obj<'_>,
        deploy: Option<Obj<'_>>,
        kind: Kind,
        v1: bool,
    ) -> Result<DeployParts> {
        let get = |key: &str| some(data.get(key));
        let Some(deploy) = deploy.filter(|_| kind != Kind::Devbox) else {
            return Ok(DeployParts {
                spec: DeploySpec {
                    kind: DeployKind::Devbox,
                    snapshot_id: None,
                    snapshot_name: None,
                },
                artifact: None,
                build: parse_devbox_build(get("build"))?,
                source: None,
            });
        };
        // `deploy.source` is an alias of `deploy.kind`; when both are set they must agree.
        let mut kind_value = some(deploy.get("kind"));
        let source_value = some(deploy.get("source"));
        let mut deploy_kind = None;
        match (kind_value, source_value) {
            (None, Some(source)) => kind_value = Some(source),
            (Some(k), Some(s)) => {
                let k = require_string(Some(k), "deploy.kind")?;
                let s = require_string(Some(s), "deploy.source")?;
                if k != s {
                    return Err(ManifestError::rule(
                        "deploy.kind",
                        "Manifest fields `deploy.kind` and `deploy.source` must match when both are set.",
                    ));
                }
                deploy_kind = Some(k);
            }
            _ => {}
        }
        let deploy_kind = match deploy_kind {
            Some(k) => k,
            None => require_string(kind_value, "deploy.kind")?,
        };
        let snapshot_id = optional_string(some(deploy.get("snapshot_id")), "deploy.snapshot_id")?;
        let snapshot_name =
            optional_string(some(deploy.get("snapshot_name")), "deploy.snapshot_name")?;
        if snapshot_id.is_some() && snapshot_name.is_some() {
            return Err(ManifestError::rule(
                "deploy.snapshot_id",
                "Manifest fields `deploy.snapshot_id` and `deploy.snapshot_name` cannot both be set.",
            ));
        }
        let mut parts = DeployParts {
            spec: DeploySpec {
                kind: DeployKind::UploadAndRun,
                snapshot_id,
                snapshot_name,
            },
            artifact: None,
            build: Build::None,
            source: None,
        };
        match deploy_kind.as_str() {
            "published_snapshot" => {
                parts.spec.kind = DeployKind::PublishedSnapshot;
                let artifact = require_mapping(get("artifact"), "artifact")?;
                let visibility = require_string(
                    some(artifact.get("snapshot_visibility")),
                    "artifact.snapshot_visibility",
                )?;
                if !["public_system", "private", "org"].contains(&visibility.as_str()) {
                    return Err(ManifestError::one_of(
                        "artifact.snapshot_visibility",
                        "`public_system`, `private`, or `org`",
                    ));
                }
                let oci_image =
                    require_string(some(artifact.get("oci_image")), "artifact.oci_image")?;
                let snapshot_name = require_string(
                    some(artifact.get("snapshot_name")),
                    "artifact.snapshot_name",
                )?;
                if let Some(raw_build) = get("build") {
                    parts.build = self.image_build(raw_build)?;
                }
                if v1 && visibility != "public_system" {
                    return Err(ManifestError::rule(
                        "artifact.snapshot_visibility",
                        "Manifest field `artifact.snapshot_visibility` must be `public_system`.",
                    ));
                }
                parts.artifact = Some(ArtifactConfig {
                    oci_image,
                    snapshot_name,
                    snapshot_visibility: visibility,
                });
            }
            "upload_and_run" => {
                let source = require_mapping(get("source"), "source")?;
                let include = or_empty(some(source.get("include")));
                let exclude = or_empty(some(source.get("exclude")));
                let include = require_list(include, "source.include")?;
                let exclude = require_list(exclude, "source.exclude")?;
                let strings = |items: Vec<Obj<'_>>, field: &str| -> Result<Vec<String>> {
                    items
                        .into_iter()
                        .map(|i| require_string(Some(i), field))
                        .collect()
                };
                let include = strings(include, "source.include[]")?;
                let exclude = strings(exclude, "source.exclude[]")?;
                let setup_command =
                    require_string(some(source.get("setup_command")), "source.setup_command")?;
                if include.is_empty() {
                    return Err(ManifestError::rule(
                        "source.include",
                        "Manifest field `source.include` must contain at least one path or glob.",
                    ));
                }
                parts.source = Some(SourceConfig {
                    include,
                    exclude,
                    setup_command,
                });
            }
            _ => {
                return Err(ManifestError::one_of(
                    "deploy.kind",
                    "`published_snapshot` or `upload_and_run`",
                ))
            }
        }
        Ok(parts)
    }

    /// `build` for published snapshots: the context and Dockerfile must exist on disk.
    fn image_build(&self, raw: Obj<'_>) -> Result<Build> {
        let build = require_mapping(Some(raw), "build")?;
        let context = require_string(some(build.get("context")), "build.context")?;
        let dockerfile = require_string(some(build.get("dockerfile")), "build.dockerfile")?;
        let target = optional_string(some(build.get("target")), "build.target")?;
        let context_path = pathlib_join(&self.dir, &context);
        if !context_path.exists() {
            return Err(ManifestError::MissingBuildContext { path: context_path });
        }
        let dockerfile_path = pathlib_join(&self.dir, &dockerfile);
        if !dockerfile_path.exists() {
            return Err(ManifestError::MissingDockerfile {
                path: dockerfile_path,
            });
        }
        Ok(Build::Image {
            context,
            dockerfile,
            target,
        })
    }
}

fn check_required(data: Obj<'_>, kind: Kind) -> Result<()> {
    let mut required: Vec<&str> = match kind {
        Kind::Devbox => DEVBOX_FIELDS.to_vec(),
        _ => SERVICE_FIELDS.to_vec(),
    };
    if kind == Kind::Service {
        required.push("app");
    }
    let mut missing: Vec<String> = required
        .into_iter()
        .filter(|key| !data.contains_key(key))
        .map(str::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort();
    Err(ManifestError::MissingFields { fields: missing })
}

fn parse_secrets(raw: Val<'_>) -> Result<Vec<SecretSpec>> {
    let items = require_list(or_empty(raw), "secrets")?;
    let mut secrets = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let secret = require_mapping(Some(item), &format!("secrets[{index}]"))?;
        let field = |name: &str| format!("secrets[{index}].{name}");
        secrets.push(SecretSpec {
            name: require_string(some(secret.get("name")), &field("name"))?,
            prompt: require_string(some(secret.get("prompt")), &field("prompt"))?,
            env_name: require_env_name(some(secret.get("env_name")), &field("env_name"))?,
            required: truthy_or(secret, "required", true),
        });
    }
    Ok(secrets)
}

fn parse_notes(raw: Val<'_>, kind: Kind) -> Result<Vec<String>> {
    if kind == Kind::Devbox {
        return Ok(Vec::new());
    }
    let Some(notes) = or_empty(raw) else {
        return Ok(Vec::new());
    };
    if let Some(text) = notes.as_str() {
        let note = crate::py::text::strip(text);
        return Ok(if note.is_empty() {
            Vec::new()
        } else {
            vec![note.to_string()]
        });
    }
    if notes.is_list_like() {
        return notes
            .elements()
            .into_iter()
            .map(|note| require_string(Some(note), "post_deploy_notes[]"))
            .collect();
    }
    if matches!(notes.value(), yaml::Value::Bytes(_)) {
        // bytes are a Sequence of ints in Python: the first item is not a string.
        return Err(ManifestError::NotString {
            field: "post_deploy_notes[]".into(),
        });
    }
    Err(ManifestError::rule(
        "post_deploy_notes",
        "Manifest field `post_deploy_notes` must be a string or array of strings.",
    ))
}

fn parse_vault(raw: Val<'_>) -> Result<Option<VaultConfig>> {
    let Some(raw) = raw else { return Ok(None) };
    let block = require_mapping(Some(raw), "vault")?;
    let hosts = require_list(or_empty(some(block.get("hosts"))), "vault.hosts")?;
    let hosts = normalize_hosts(&hosts, "vault.hosts")?;
    if hosts.is_empty() {
        return Err(ManifestError::rule(
            "vault.hosts",
            "Manifest field `vault.hosts` must contain at least one host.",
        ));
    }
    Ok(Some(VaultConfig {
        required: truthy_or(block, "required", false),
        hosts,
    }))
}

fn parse_egress(
    raw: Val<'_>,
    kind: Kind,
    vault: Option<&VaultConfig>,
) -> Result<Option<EgressConfig>> {
    let Some(raw) = raw else { return Ok(None) };
    let block = require_mapping(Some(raw), "egress")?;
    let legacy = require_list(or_empty(some(block.get("hosts"))), "egress.hosts")?;
    let legacy_hosts = normalize_hosts(&legacy, "egress.hosts")?;
    let allowed_value = some(block.get("allowed_domains"));
    let allow_value = match kind {
        Kind::Devbox => some(block.get("allow_domains")),
        _ => None,
    };
    if allowed_value.is_some() && allow_value.is_some() {
        return Err(ManifestError::rule(
            "egress.allowed_domains",
            "Manifest fields `egress.allowed_domains` and `egress.allow_domains` cannot both be set.",
        ));
    }
    let domains_value = allowed_value.or(allow_value);
    let default_mode =
        if !legacy_hosts.is_empty() || (kind == Kind::Devbox && truthy(domains_value)) {
            "allowlist"
        } else {
            "open"
        };
    let mode = optional_string(some(block.get("mode")), "egress.mode")?
        .unwrap_or_else(|| default_mode.to_string());
    if !["open", "deny", "allowlist"].contains(&mode.as_str()) {
        return Err(ManifestError::one_of(
            "egress.mode",
            "`open`, `deny`, or `allowlist`",
        ));
    }
    // `domains or legacy_hosts`: an empty or missing domain list falls back to the legacy hosts.
    let allowed_domains = match or_empty(domains_value) {
        Some(domains) => normalize_hosts(
            &require_list(Some(domains), "egress.allowed_domains")?,
            "egress.allowed_domains",
        )?,
        None => legacy_hosts.clone(),
    };
    let allowed_cidrs = require_string_array(
        or_empty(some(block.get("allowed_cidrs"))),
        "egress.allowed_cidrs",
    )?;
    let default_include_vault = mode == "allowlist" && vault.is_some_and(|v| !v.hosts.is_empty());
    let include_vault_hosts = optional_bool(
        some(block.get("include_vault_hosts")),
        "egress.include_vault_hosts",
        default_include_vault,
    )?;
    let allow_package_managers = optional_bool(
        some(block.get("allow_package_managers")),
        "egress.allow_package_managers",
        true,
    )?;
    Ok(Some(EgressConfig {
        mode,
        include_vault_hosts,
        allowed_domains,
        allowed_cidrs,
        allow_package_managers,
        legacy_hosts,
    }))
}

fn parse_volumes(raw: Val<'_>) -> Result<Vec<VolumeConfig>> {
    let items = require_list(or_empty(raw), "volumes")?;
    let mut volumes = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let field = |name: &str| format!("volumes[{index}].{name}");
        let volume = require_mapping(Some(item), &format!("volumes[{index}]"))?;
        let get = |key: &str| some(volume.get(key));
        let mount = require_string(get("mount"), &field("mount"))?;
        if !mount.starts_with('/') || mount == "/" {
            return Err(ManifestError::rule(
                &field("mount"),
                format!("Manifest field `volumes[{index}].mount` must be an absolute path other than `/`."),
            ));
        }
        let mode = optional_string(get("mode"), &field("mode"))?.unwrap_or_else(|| "rw".into());
        if mode != "rw" && mode != "ro" {
            return Err(ManifestError::one_of(&field("mode"), "`rw` or `ro`"));
        }
        let checkpoint_id = optional_string(get("checkpoint_id"), &field("checkpoint_id"))?;
        if checkpoint_id.is_some() && mode != "ro" {
            return Err(ManifestError::rule(
                &field("checkpoint_id"),
                format!("Manifest field `volumes[{index}].checkpoint_id` is only valid with `mode: ro`."),
            ));
        }
        let size_gb = optional_int(get("size_gb"), &field("size_gb"))?;
        validate_positive(size_gb.as_ref(), &field("size_gb"))?;
        let mut pre_seed = Vec::new();
        let seeds = or_empty(get("pre_seed"));
        for (seed_index, seed) in require_list(seeds, &field("pre_seed"))?
            .into_iter()
            .enumerate()
        {
            let seed_field = format!("volumes[{index}].pre_seed[{seed_index}]");
            let seed = require_mapping(Some(seed), &seed_field)?;
            pre_seed.push(VolumePreSeed {
                local: require_string(some(seed.get("local")), &format!("{seed_field}.local"))?,
                remote: require_string(some(seed.get("remote")), &format!("{seed_field}.remote"))?,
                overwrite: truthy_or(seed, "overwrite", false),
            });
        }
        let auto_checkpoint = match get("auto_checkpoint") {
            None => None,
            Some(raw) => {
                let auto = require_mapping(Some(raw), &field("auto_checkpoint"))?;
                let retention_field = field("auto_checkpoint.retention");
                let retention = optional_int(some(auto.get("retention")), &retention_field)?;
                validate_positive(retention.as_ref(), &retention_field)?;
                Some(VolumeAutoCheckpoint {
                    on_success: truthy_or(auto, "on_success", false),
                    retention,
                })
            }
        };
        volumes.push(VolumeConfig {
            name: require_string(get("name"), &field("name"))?,
            mount,
            mode,
            id: optional_string(get("id"), &field("id"))?,
            size_gb,
            create_if_missing: truthy_or(volume, "create_if_missing", false),
            checkpoint_id,
            pre_seed,
            auto_checkpoint,
        });
    }
    Ok(volumes)
}

fn parse_share(raw: Val<'_>, secrets: &[SecretSpec]) -> Result<Option<ShareConfig>> {
    let Some(raw) = raw else { return Ok(None) };
    let share = require_mapping(Some(raw), "share")?;
    let port = require_int(some(share.get("port")), "share.port")?;
    validate_port(&port, "share.port")?;
    let auth =
        optional_string(some(share.get("auth")), "share.auth")?.unwrap_or_else(|| "none".into());
    if !["none", "password", "api_key"].contains(&auth.as_str()) {
        return Err(ManifestError::one_of(
            "share.auth",
            "`none`, `password`, or `api_key`",
        ));
    }
    let password_secret =
        optional_string(some(share.get("password_secret")), "share.password_secret")?;
    if auth == "password" && password_secret.is_none() {
        return Err(ManifestError::rule(
            "share.password_secret",
            "Manifest field `share.password_secret` is required when `share.auth: password`.",
        ));
    }
    if let Some(secret) = &password_secret {
        if !secrets.iter().any(|s| &s.env_name == secret) {
            return Err(ManifestError::rule(
                "share.password_secret",
                "Manifest field `share.password_secret` must reference a declared `secrets[].env_name`.",
            ));
        }
    }
    Ok(Some(ShareConfig {
        port,
        public: truthy_or(share, "public", false),
        auth,
        password_secret,
    }))
}

/// `mapping.get(key, default)` for an int field: the default only when the key is absent.
fn int_or(mapping: Obj<'_>, key: &str, default: i64, field: &str) -> Result<PyInt> {
    match mapping.get(key) {
        None => Ok(PyInt::from(default)),
        Some(v) => require_int(some(Some(v)), field),
    }
}

fn parse_schedule(
    raw: Val<'_>,
    kind: Kind,
    notices: &mut Vec<String>,
) -> Result<Option<ScheduleConfig>> {
    if kind != Kind::Cron {
        if raw.is_some() {
            return Err(ManifestError::rule(
                "schedule",
                "Manifest field `schedule` is only valid for `kind: cron`.",
            ));
        }
        return Ok(None);
    }
    let schedule = require_mapping(raw, "schedule")?;
    let get = |key: &str| some(schedule.get(key));
    let cron = require_string(get("cron"), "schedule.cron")?;
    if split_whitespace(&cron).len() != 5 {
        return Err(ManifestError::rule(
            "schedule.cron",
            "Manifest field `schedule.cron` must be a POSIX 5-field cron expression.",
        ));
    }
    let timezone =
        optional_string(get("timezone"), "schedule.timezone")?.unwrap_or_else(|| "UTC".into());
    if check_zone(&timezone).map_err(ManifestError::Python)? == ZoneLookup::NotFound {
        notices.push(format!(
            "Manifest field `schedule.timezone` ({}) could not be resolved locally; relying on backend tz database.",
            crate::py::text::repr_str(&timezone)
        ));
    }
    let concurrency = optional_string(get("concurrency"), "schedule.concurrency")?
        .unwrap_or_else(|| "skip".into());
    if !["skip", "queue", "overlap"].contains(&concurrency.as_str()) {
        return Err(ManifestError::one_of(
            "schedule.concurrency",
            "`skip`, `queue`, or `overlap`",
        ));
    }
    let catchup =
        optional_string(get("catchup"), "schedule.catchup")?.unwrap_or_else(|| "run-once".into());
    if !["skip", "run-once", "run-all"].contains(&catchup.as_str()) {
        return Err(ManifestError::one_of(
            "schedule.catchup",
            "`skip`, `run-once`, or `run-all`",
        ));
    }
    let timeout_seconds = optional_int(get("timeout_seconds"), "schedule.timeout_seconds")?;
    validate_positive(timeout_seconds.as_ref(), "schedule.timeout_seconds")?;
    let start_window_seconds =
        optional_int(get("start_window_seconds"), "schedule.start_window_seconds")?;
    validate_positive(
        start_window_seconds.as_ref(),
        "schedule.start_window_seconds",
    )?;
    let retries_value = or_empty(get("retries"));
    let retries = match retries_value {
        None => None,
        Some(r) => Some(require_mapping(Some(r), "schedule.retries")?),
    };
    let (max, backoff_seconds) = match retries {
        None => (PyInt::from(0), None),
        Some(r) => (int_or(r, "max", 0, "schedule.retries.max")?, Some(r)),
    };
    if max.value() < 0.into() {
        return Err(ManifestError::Negative {
            field: "schedule.retries.max".into(),
        });
    }
    let backoff_seconds = match backoff_seconds {
        None => PyInt::from(30),
        Some(r) => int_or(r, "backoff_seconds", 30, "schedule.retries.backoff_seconds")?,
    };
    validate_positive(Some(&backoff_seconds), "schedule.retries.backoff_seconds")?;
    let fanout = match get("fanout") {
        None => None,
        Some(raw) => {
            let fanout = require_mapping(Some(raw), "schedule.fanout")?;
            let count = int_or(fanout, "count", 1, "schedule.fanout.count")?;
            if count.value() < 1.into() {
                return Err(ManifestError::rule(
                    "schedule.fanout.count",
                    "Manifest field `schedule.fanout.count` must be >= 1.",
                ));
            }
            let shard_env =
                optional_string(some(fanout.get("shard_env")), "schedule.fanout.shard_env")?;
            if let Some(name) = &shard_env {
                if !is_env_name(name) {
                    return Err(ManifestError::NotEnvName {
                        field: "schedule.fanout.shard_env".into(),
                    });
                }
            }
            Some(ScheduleFanout { count, shard_env })
        }
    };
    Ok(Some(ScheduleConfig {
        cron,
        timezone,
        concurrency,
        catchup,
        timeout_seconds,
        warm_start: truthy_or(schedule, "warm_start", false),
        start_window_seconds,
        retries: ScheduleRetries {
            max,
            backoff_seconds,
        },
        fanout,
    }))
}

fn parse_triggers(raw: Val<'_>, kind: Kind) -> Result<Vec<TriggerConfig>> {
    let raw = or_empty(raw);
    if kind != Kind::Job {
        if raw.is_some() {
            return Err(ManifestError::rule(
                "triggers",
                "Manifest field `triggers` is only valid for `kind: job`.",
            ));
        }
        return Ok(Vec::new());
    }
    let items = match raw {
        Some(list) if list.is_list_like() => list.elements(),
        _ => {
            return Err(ManifestError::rule(
                "triggers",
                "Manifest field `triggers` must contain at least one trigger for `kind: job`.",
            ))
        }
    };
    let mut triggers = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let field = |name: &str| format!("triggers[{index}].{name}");
        let trigger = require_mapping(Some(item), &format!("triggers[{index}]"))?;
        let get = |key: &str| some(trigger.get(key));
        let trigger_type = require_string(get("type"), &field("type"))?;
        if trigger_type != "manual" && trigger_type != "webhook" {
            return Err(ManifestError::rule(
                &field("type"),
                "Manifest field `triggers[].type` must be `manual` or `webhook` in this CLI version.",
            ));
        }
        let auth = optional_string(get("auth"), &field("auth"))?.unwrap_or_else(|| "none".into());
        if !["none", "api_key", "hmac"].contains(&auth.as_str()) {
            return Err(ManifestError::one_of(
                "triggers[].auth",
                "`none`, `api_key`, or `hmac`",
            ));
        }
        let timeout_seconds = optional_int(get("timeout_seconds"), &field("timeout_seconds"))?;
        validate_positive(timeout_seconds.as_ref(), &field("timeout_seconds"))?;
        let concurrency = optional_int(
            get("concurrency_per_account"),
            &field("concurrency_per_account"),
        )?;
        validate_positive(concurrency.as_ref(), &field("concurrency_per_account"))?;
        let path = optional_string(get("path"), &field("path"))?;
        if trigger_type == "webhook" {
            match &path {
                None => {
                    return Err(ManifestError::rule(
                        &field("path"),
                        format!(
                        "Manifest field `triggers[{index}].path` is required for webhook triggers."
                    ),
                    ))
                }
                Some(p) if !p.starts_with('/') => {
                    return Err(ManifestError::rule(
                        &field("path"),
                        format!("Manifest field `triggers[{index}].path` must start with `/`."),
                    ))
                }
                Some(_) => {}
            }
        }
        triggers.push(TriggerConfig {
            kind: trigger_type,
            path,
            auth,
            timeout_seconds,
            concurrency_per_account: concurrency,
        });
    }
    Ok(triggers)
}

fn parse_callbacks(raw: Val<'_>, secrets: &[SecretSpec]) -> Result<Callbacks> {
    let mut callbacks = Callbacks::default();
    let Some(raw) = raw else { return Ok(callbacks) };
    let block = require_mapping(Some(raw), "callbacks")?;
    for section in ["on_success", "on_failure"] {
        let Some(raw_section) = some(block.get(section)) else {
            continue;
        };
        let items = require_list(Some(raw_section), &format!("callbacks.{section}"))?;
        let mut parsed = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let base = format!("callbacks.{section}[{index}]");
            let callback = require_mapping(Some(item), &base)?;
            let url = require_string(some(callback.get("url")), &format!("{base}.url"))?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ManifestError::rule(
                    &format!("{base}.url"),
                    format!("Manifest field `{base}.url` must start with `http://` or `https://`."),
                ));
            }
            let retries = optional_int(some(callback.get("retries")), &format!("{base}.retries"))?;
            if retries.as_ref().is_some_and(|r| r.value() < 0.into()) {
                return Err(ManifestError::Negative {
                    field: format!("{base}.retries"),
                });
            }
            let signing_secret = optional_string(
                some(callback.get("signing_secret")),
                &format!("{base}.signing_secret"),
            )?;
            if let Some(secret) = &signing_secret {
                if !secrets.iter().any(|s| &s.env_name == secret) {
                    return Err(ManifestError::rule(
                        &format!("{base}.signing_secret"),
                        format!("Manifest field `{base}.signing_secret` must reference a declared secret env_name."),
                    ));
                }
            }
            parsed.push(Callback {
                url,
                retries,
                signing_secret,
            });
        }
        if section == "on_success" {
            callbacks.on_success = parsed;
        } else {
            callbacks.on_failure = parsed;
        }
    }
    Ok(callbacks)
}

/// Metadata fields, which differ between devbox and the other kinds.
struct Metadata {
    name: String,
    description: String,
    title: String,
    summary: String,
    category: String,
    runtime: Runtime,
    terminal: Option<DevboxTerminal>,
    audience: Option<String>,
    source_repo: Option<String>,
    icon: Option<String>,
    app_query: Option<String>,
}

fn parse_metadata(data: Obj<'_>, kind: Kind, app: Option<Obj<'_>>) -> Result<Metadata> {
    let get = |key: &str| some(data.get(key));
    if kind == Kind::Devbox {
        return parse_devbox_metadata(data, app);
    }
    let title = require_string(get("title"), "title")?;
    let summary = require_string(get("summary"), "summary")?;
    let category = require_string(get("category"), "category")?;
    let runtime = require_string(get("runtime"), "runtime")?;
    let name = optional_string(get("name"), "name")?.unwrap_or_else(|| title.clone());
    let description =
        optional_string(get("description"), "description")?.unwrap_or_else(|| summary.clone());
    Ok(Metadata {
        name,
        description,
        title,
        summary,
        category,
        runtime: Runtime::Label(runtime),
        terminal: None,
        audience: optional_string(get("audience"), "audience")?,
        source_repo: optional_string(get("source_repo"), "source_repo")?,
        icon: optional_string(get("icon"), "icon")?,
        app_query: None,
    })
}

fn parse_devbox_metadata(data: Obj<'_>, app: Option<Obj<'_>>) -> Result<Metadata> {
    let get = |key: &str| some(data.get(key));
    let name = require_string(get("name"), "name")?;
    let description = optional_string(get("description"), "description")?.unwrap_or_default();
    let category = optional_string(get("category"), "category")?.unwrap_or_else(|| "devbox".into());
    let runtime = parse_runtime_steps(get("runtime"))?;
    let terminal = parse_terminal(get("terminal"))?;
    let audience = require_string(get("audience"), "audience")?;
    if !["coding-agent", "chat-agent", "devbox"].contains(&audience.as_str()) {
        return Err(ManifestError::one_of(
            "audience",
            "`coding-agent`, `chat-agent`, or `devbox`",
        ));
    }
    let source_repo = optional_string(get("source_repo"), "source_repo")?;
    let icon = optional_string(get("icon"), "icon")?;
    let app_query = match app {
        Some(app) => optional_string(some(app.get("query")), "app.query")?,
        None => None,
    };
    if app_query.as_ref().is_some_and(|q| !q.starts_with('?')) {
        return Err(ManifestError::rule(
            "app.query",
            "Manifest field `app.query` must start with `?`.",
        ));
    }
    Ok(Metadata {
        title: name.clone(),
        summary: description.clone(),
        name,
        description,
        category,
        runtime: Runtime::Steps(runtime),
        terminal: Some(terminal),
        audience: Some(audience),
        source_repo,
        icon,
        app_query,
    })
}

/// Devbox `build`: an array of `{name, command}` steps.
fn parse_devbox_build(raw: Val<'_>) -> Result<Build> {
    let Some(raw) = raw else {
        return Ok(Build::Steps(Vec::new()));
    };
    if !raw.is_list_like() {
        return Err(ManifestError::rule(
            "build",
            "Manifest field `build` must be an array for `kind: devbox`.",
        ));
    }
    let mut steps = Vec::new();
    for (index, item) in raw.elements().into_iter().enumerate() {
        let step = require_mapping(Some(item), &format!("build[{index}]"))?;
        steps.push(DevboxBuildStep {
            name: require_string(some(step.get("name")), &format!("build[{index}].name"))?,
            command: require_string(
                some(step.get("command")),
                &format!("build[{index}].command"),
            )?,
        });
    }
    Ok(Build::Steps(steps))
}

fn parse_runtime_steps(raw: Val<'_>) -> Result<Vec<DevboxRuntimeStep>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if !raw.is_list_like() {
        return Err(ManifestError::rule(
            "runtime",
            "Manifest field `runtime` must be an array for `kind: devbox`.",
        ));
    }
    let mut steps = Vec::new();
    for (index, item) in raw.elements().into_iter().enumerate() {
        let step = require_mapping(Some(item), &format!("runtime[{index}]"))?;
        let get = |key: &str| some(step.get(key));
        let kind = require_string(get("kind"), &format!("runtime[{index}].kind"))?;
        if !["stage_secret", "update", "command"].contains(&kind.as_str()) {
            return Err(ManifestError::one_of(
                "runtime[].kind",
                "`stage_secret`, `update`, or `command`",
            ));
        }
        let raw_secrets = or_empty(get("secrets"));
        let mut secrets = Vec::new();
        for (s_index, raw_secret) in
            require_list(raw_secrets, &format!("runtime[{index}].secrets"))?
                .into_iter()
                .enumerate()
        {
            let base = format!("runtime[{index}].secrets[{s_index}]");
            let secret = require_mapping(Some(raw_secret), &base)?;
            secrets.push(DevboxRuntimeSecret {
                name: require_string(some(secret.get("name")), &format!("{base}.name"))?,
                env_name: require_env_name(
                    some(secret.get("env_name")),
                    &format!("{base}.env_name"),
                )?,
                optional: optional_bool(
                    some(secret.get("optional")),
                    &format!("{base}.optional"),
                    false,
                )?,
            });
        }
        let command = optional_string(get("command"), &format!("runtime[{index}].command"))?;
        if (kind == "update" || kind == "command") && command.is_none() {
            return Err(ManifestError::rule(
                &format!("runtime[{index}].command"),
                format!(
                    "Manifest field `runtime[{index}].command` is required for `{kind}` steps."
                ),
            ));
        }
        steps.push(DevboxRuntimeStep {
            name: optional_string(get("name"), &format!("runtime[{index}].name"))?,
            command,
            optional: optional_bool(
                get("optional"),
                &format!("runtime[{index}].optional"),
                false,
            )?,
            secrets,
            kind,
        });
    }
    Ok(steps)
}

fn parse_terminal(raw: Val<'_>) -> Result<DevboxTerminal> {
    let terminal = require_mapping(raw, "terminal")?;
    Ok(DevboxTerminal {
        tmux_session: require_string(some(terminal.get("tmux_session")), "terminal.tmux_session")?,
        command: require_string(some(terminal.get("command")), "terminal.command")?,
        cwd: require_string(some(terminal.get("cwd")), "terminal.cwd")?,
    })
}

fn normalize_desktop(desktop: Obj<'_>, profile: Option<&str>) -> Result<Json> {
    let Json::Object(mut entries) = yaml::to_json(desktop) else {
        return Ok(Json::Object(Vec::new()));
    };
    if profile == Some("computer_use") {
        let viewer = match some(desktop.get("viewer")) {
            Some(v) => Some(require_mapping(Some(v), "desktop.viewer")?),
            None => None,
        };
        let mut viewer_entries = match viewer.map(yaml::to_json) {
            Some(Json::Object(e)) => e,
            _ => Vec::new(),
        };
        if !viewer.is_some_and(|v| v.contains_key("enabled")) {
            viewer_entries.push((Json::str("enabled"), Json::Bool(true)));
        }
        let viewer_json = Json::Object(viewer_entries);
        match entries
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some("viewer"))
        {
            Some(slot) => slot.1 = viewer_json,
            None => entries.push((Json::str("viewer"), viewer_json)),
        }
    }
    Ok(Json::Object(entries))
}

struct WarningInputs<'a> {
    egress: Option<&'a EgressConfig>,
    share: Option<&'a ShareConfig>,
    blocks: [(&'static str, bool); 3],
    schedule: Option<&'a ScheduleConfig>,
    lifecycle_non_empty: bool,
    run_pre: bool,
    run_post: bool,
    volumes: &'a [VolumeConfig],
}

/// The reference's warnings, in its order (spec/manifest.md §5).
fn collect_warnings(inputs: &WarningInputs<'_>) -> Vec<String> {
    let mut warnings = Vec::new();
    if inputs.egress.is_some_and(|e| !e.legacy_hosts.is_empty()) {
        warnings.push(
            "`egress.hosts` is legacy; interpreting as `egress.mode: allowlist` with `allowed_domains`."
                .to_string(),
        );
    }
    if inputs.share.is_some_and(|s| s.auth != "none") {
        warnings.push("`share.auth` parsed but not executed by this CLI version.".to_string());
    }
    for (block, present) in inputs.blocks {
        if present {
            warnings.push(format!(
                "`{block}` block parsed but not executed by this CLI version."
            ));
        }
    }
    if inputs.schedule.is_some_and(|s| s.fanout.is_some()) {
        warnings.push("`schedule.fanout` parsed but not executed by this CLI version.".to_string());
    }
    if inputs.lifecycle_non_empty {
        warnings.push("`lifecycle` block parsed but not executed by this CLI version.".to_string());
    }
    if inputs.run_pre {
        warnings.push(
            "`run.pre_start_command` parsed but not executed by this CLI version.".to_string(),
        );
    }
    if inputs.run_post {
        warnings.push(
            "`run.shutdown_command` parsed but not executed by this CLI version.".to_string(),
        );
    }
    if let Some(volume) = inputs.volumes.iter().find(|v| !v.pre_seed.is_empty()) {
        warnings.push(format!(
            "`volumes[{}].pre_seed` parsed but not executed by this CLI version.",
            volume.name
        ));
    }
    warnings
}

fn parse_vm(vm: Obj<'_>, kind: Kind, profile: Option<String>) -> Result<VmConfig> {
    let get = |key: &str| some(vm.get(key));
    let memory_mb = require_int(get("memory_mb"), "vm.memory_mb")?;
    let vcpu_count = match kind {
        Kind::Devbox => require_int(get("vcpus"), "vm.vcpus")?,
        _ => require_int(get("vcpu_count"), "vm.vcpu_count")?,
    };
    let timeout_seconds = optional_int(get("timeout_seconds"), "vm.timeout_seconds")?;
    let image_variant = optional_string(get("image_variant"), "vm.image_variant")?;
    let metadata = match get("metadata") {
        Some(raw) => yaml::to_json(require_mapping(Some(raw), "vm.metadata")?),
        None => Json::Object(Vec::new()),
    };
    Ok(VmConfig {
        memory_mb,
        vcpu_count,
        timeout_seconds,
        image_variant,
        profile,
        metadata,
    })
}

fn parse_app(
    app: Obj<'_>,
    kind: Kind,
    schema_version: &PyInt,
    query: Option<String>,
) -> Result<AppConfig> {
    let get = |key: &str| some(app.get(key));
    let port = require_int(get("port"), "app.port")?;
    let healthcheck_path = if kind == Kind::Devbox {
        let value = get("health_path").or_else(|| get("healthcheck_path"));
        require_string(value, "app.health_path")?
    } else {
        require_string(get("healthcheck_path"), "app.healthcheck_path")?
    };
    let share_public_default = if kind == Kind::Devbox {
        parse_devbox_share(get("share"))?
    } else {
        truthy_or(
            app,
            "share_public_default",
            schema_version.value() == 1.into(),
        )
    };
    let readiness_timeout_seconds = if kind == Kind::Devbox {
        int_or(
            app,
            "readiness_timeout_seconds",
            60,
            "app.readiness_timeout_seconds",
        )?
    } else {
        require_int(
            get("readiness_timeout_seconds"),
            "app.readiness_timeout_seconds",
        )?
    };
    Ok(AppConfig {
        port,
        healthcheck_path,
        share_public_default,
        readiness_timeout_seconds,
        query,
    })
}

/// Devbox `app.share`: `public`, `private` or a boolean; private by default.
fn parse_devbox_share(v: Val<'_>) -> Result<bool> {
    let Some(v) = v else { return Ok(false) };
    if let Some(b) = v.as_bool() {
        return Ok(b);
    }
    match require_string(Some(v), "app.share")?.as_str() {
        "public" => Ok(true),
        "private" => Ok(false),
        _ => Err(ManifestError::one_of(
            "app.share",
            "`public`, `private`, or a boolean",
        )),
    }
}

fn parse_run(run: Obj<'_>, pre: Option<String>, post: Option<String>) -> Result<RunConfig> {
    let get = |key: &str| some(run.get(key));
    Ok(RunConfig {
        workdir: require_string(get("workdir"), "run.workdir")?,
        start_command: require_string(get("start_command"), "run.start_command")?,
        logs_hint: optional_string(get("logs_hint"), "run.logs_hint")?,
        pre_start_command: pre,
        shutdown_command: post,
    })
}
