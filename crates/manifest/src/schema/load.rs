//! `load_manifest`: `_cookbook.load_manifest` of the reference, check for check and in the same
//! order, so that a manifest with several problems reports the same first one.

use std::path::{Path, PathBuf};

use super::blocks::*;
use super::devbox::{parse_devbox_build, parse_devbox_metadata};
use super::error::ManifestError;
use super::fields::*;
use super::model::*;
use super::workloads::{parse_schedule, parse_triggers};
use crate::py::path::pathlib_join;
use crate::py::text::{read_text, Decode, ReadTextError};
use crate::yaml::{self, Obj};

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

/// Validates one manifest; `dir` is the directory holding it (the project root).
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

/// Metadata fields, which differ between devbox and the other kinds.
pub(super) struct Metadata {
    pub(super) name: String,
    pub(super) description: String,
    pub(super) title: String,
    pub(super) summary: String,
    pub(super) category: String,
    pub(super) runtime: Runtime,
    pub(super) terminal: Option<DevboxTerminal>,
    pub(super) audience: Option<String>,
    pub(super) source_repo: Option<String>,
    pub(super) icon: Option<String>,
    pub(super) app_query: Option<String>,
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
