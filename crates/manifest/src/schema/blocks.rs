//! The optional and per-kind blocks of a manifest (`secrets`, `vault`, `egress`, `volumes`,
//! `share`, `callbacks`, `vm`, `app`, `run`, ...) and the warnings, as the reference parses them.

use super::devbox::parse_devbox_share;
use super::error::ManifestError;
use super::fields::*;
use super::model::*;
use crate::py::json::Json;
use crate::yaml::{self, Obj, PyInt};

type Result<T> = std::result::Result<T, ManifestError>;

pub(super) fn parse_secrets(raw: Val<'_>) -> Result<Vec<SecretSpec>> {
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

pub(super) fn parse_notes(raw: Val<'_>, kind: Kind) -> Result<Vec<String>> {
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

pub(super) fn parse_vault(raw: Val<'_>) -> Result<Option<VaultConfig>> {
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

pub(super) fn parse_egress(
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

pub(super) fn parse_volumes(raw: Val<'_>) -> Result<Vec<VolumeConfig>> {
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

pub(super) fn parse_share(raw: Val<'_>, secrets: &[SecretSpec]) -> Result<Option<ShareConfig>> {
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

pub(super) fn parse_callbacks(raw: Val<'_>, secrets: &[SecretSpec]) -> Result<Callbacks> {
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

pub(super) fn normalize_desktop(desktop: Obj<'_>, profile: Option<&str>) -> Result<Json> {
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

pub(super) struct WarningInputs<'a> {
    pub(super) egress: Option<&'a EgressConfig>,
    pub(super) share: Option<&'a ShareConfig>,
    pub(super) blocks: [(&'static str, bool); 3],
    pub(super) schedule: Option<&'a ScheduleConfig>,
    pub(super) lifecycle_non_empty: bool,
    pub(super) run_pre: bool,
    pub(super) run_post: bool,
    pub(super) volumes: &'a [VolumeConfig],
}

/// The reference's warnings, in its order (spec/manifest.md §5).
pub(super) fn collect_warnings(inputs: &WarningInputs<'_>) -> Vec<String> {
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

pub(super) fn parse_vm(vm: Obj<'_>, kind: Kind, profile: Option<String>) -> Result<VmConfig> {
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

pub(super) fn parse_app(
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

pub(super) fn parse_run(
    run: Obj<'_>,
    pre: Option<String>,
    post: Option<String>,
) -> Result<RunConfig> {
    let get = |key: &str| some(run.get(key));
    Ok(RunConfig {
        workdir: require_string(get("workdir"), "run.workdir")?,
        start_command: require_string(get("start_command"), "run.start_command")?,
        logs_hint: optional_string(get("logs_hint"), "run.logs_hint")?,
        pre_start_command: pre,
        shutdown_command: post,
    })
}
