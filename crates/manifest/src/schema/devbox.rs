//! `kind: devbox`: metadata, runtime steps, build steps, terminal and the devbox `app.share`.

use super::error::ManifestError;
use super::fields::*;
use super::load::Metadata;
use super::model::*;
use crate::yaml::Obj;

type Result<T> = std::result::Result<T, ManifestError>;

pub(super) fn parse_devbox_metadata(data: Obj<'_>, app: Option<Obj<'_>>) -> Result<Metadata> {
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
pub(super) fn parse_devbox_build(raw: Val<'_>) -> Result<Build> {
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

pub(super) fn parse_runtime_steps(raw: Val<'_>) -> Result<Vec<DevboxRuntimeStep>> {
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

pub(super) fn parse_terminal(raw: Val<'_>) -> Result<DevboxTerminal> {
    let terminal = require_mapping(raw, "terminal")?;
    Ok(DevboxTerminal {
        tmux_session: require_string(some(terminal.get("tmux_session")), "terminal.tmux_session")?,
        command: require_string(some(terminal.get("command")), "terminal.command")?,
        cwd: require_string(some(terminal.get("cwd")), "terminal.cwd")?,
    })
}

/// Devbox `app.share`: `public`, `private` or a boolean; private by default.
pub(super) fn parse_devbox_share(v: Val<'_>) -> Result<bool> {
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
