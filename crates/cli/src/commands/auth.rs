//! `instavm auth set-key|status|logout` (spec/cli.md §6.1). Local only: no request is made.

use crate::commands::RuntimeSshArgs;
use crate::config::{self, redact, ProfileUpdate};
use crate::output::emit;
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::{IsTerminal, Read};

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Store an API key (read from a hidden prompt, or from stdin when it is not a terminal).
    SetKey(SetKeyArgs),
    /// Show the effective settings and where each comes from.
    Status(RuntimeSshArgs),
    /// Remove the stored API key.
    Logout(RuntimeSshArgs),
}

#[derive(Args, Debug)]
pub struct SetKeyArgs {
    /// Also store this base URL in the profile.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Also store this SSH gateway host in the profile.
    #[arg(long)]
    pub ssh_host: Option<String>,
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(cmd: AuthCommand) -> anyhow::Result<()> {
    match cmd {
        AuthCommand::SetKey(args) => set_key(args),
        AuthCommand::Status(args) => status(args),
        AuthCommand::Logout(args) => logout(args),
    }
}

fn set_key(args: SetKeyArgs) -> anyhow::Result<()> {
    let key = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("InstaVM API key: ")?
    } else {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    };
    let key = key.trim().to_owned();
    if key.is_empty() {
        anyhow::bail!("API key is required. Enter it at the prompt or pipe it over stdin.");
    }
    let path = config::config_path()?;
    config::update_profile(
        &path,
        ProfileUpdate {
            api_key: Some(key.clone()),
            base_url: args.base_url.clone(),
            ssh_host: args.ssh_host.clone(),
            ..ProfileUpdate::default()
        },
    )?;
    let redacted = redact(Some(&key));
    let payload = json!({
        "status": "stored",
        "config_path": path.display().to_string(),
        "api_key": redacted,
        "base_url": args.base_url,
        "ssh_host": args.ssh_host,
    });
    let mut lines = vec![
        format!("Stored API key in {}", path.display()),
        format!("API key: {}", redacted.unwrap_or_default()),
    ];
    if let Some(u) = &args.base_url {
        lines.push(format!("Default base URL: {u}"));
    }
    if let Some(h) = &args.ssh_host {
        lines.push(format!("Default SSH host: {h}"));
    }
    emit(args.json, &payload, &lines)
}

fn status(args: RuntimeSshArgs) -> anyhow::Result<()> {
    let s = args.settings()?;
    let active = s.config["active_profile"].as_str().unwrap_or("default");
    let stored = s.config["profiles"][active]["auth"]["api_key"]
        .as_str()
        .is_some_and(|k| !k.is_empty());
    let redacted = redact(s.api_key.as_deref());
    let payload = json!({
        "config_path": s.config_path.display().to_string(),
        "active_profile": active,
        "api_key": {
            "configured": s.api_key.is_some(),
            "redacted": redacted,
            "source": s.api_key_source,
            "stored": stored,
        },
        "base_url": {"value": s.base_url, "source": s.base_url_source},
        "ssh_host": {"value": s.ssh_host, "source": s.ssh_host_source},
    });
    let mut lines = vec![
        format!("Config path: {}", s.config_path.display()),
        format!("Active profile: {active}"),
        format!(
            "API key: {} ({})",
            redacted.as_deref().unwrap_or("not configured"),
            s.api_key_source
        ),
        format!("Base URL: {} ({})", s.base_url, s.base_url_source),
        format!("SSH host: {} ({})", s.ssh_host, s.ssh_host_source),
    ];
    if stored {
        lines.push("Stored key: present".into());
    }
    emit(args.json, &payload, &lines)
}

fn logout(args: RuntimeSshArgs) -> anyhow::Result<()> {
    let s = args.settings()?;
    config::update_profile(
        &s.config_path,
        ProfileUpdate {
            clear_api_key: true,
            ..ProfileUpdate::default()
        },
    )?;
    let env_key_active = s.api_key_source == "env";
    let payload = json!({
        "status": "logged_out",
        "config_path": s.config_path.display().to_string(),
        "env_key_active": env_key_active,
    });
    let mut lines = vec![format!(
        "Removed the stored API key from {}",
        s.config_path.display()
    )];
    if env_key_active {
        lines
            .push("INSTAVM_API_KEY is still set in the environment and will remain active.".into());
    }
    emit(args.json, &payload, &lines)
}
