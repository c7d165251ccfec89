//! Secrets vaults (spec/cli.md §6.7): `vault …`, `vault secret …`, `vault service …` and
//! `vault setup [PATH]` (the bootstrap of spec/manifest.md §8). Values are read from a flag,
//! a file, stdin (when not a terminal) or a hidden prompt, and never printed.

use super::RuntimeArgs;
use crate::output::emit;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use instavm_sdk::*;
use serde_json::{json, Value};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum VaultCommand {
    /// List vaults.
    #[command(alias = "ls")]
    List(Rt),
    /// Create a vault.
    Create(CreateArgs),
    /// Show a vault (never values).
    Get(VaultId),
    /// Rename or describe a vault.
    Update(UpdateArgs),
    /// Delete a vault and every credential in it.
    #[command(alias = "rm")]
    Delete(DeleteArgs),
    /// A safe summary: credential names and bound hosts.
    Discover(VaultId),
    /// The provider catalog.
    Catalog(Rt),
    /// Recent requests the vault's credentials were injected into.
    Logs(LogsArgs),
    /// Bootstrap vaults for the hosts an instavm.yaml declares.
    Setup(SetupArgs),
    /// Credentials of a vault.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Hosts a vault's credentials are injected for.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    #[command(alias = "ls")]
    List(VaultId),
    /// Add a credential (the value from --value, --value-file, stdin or a prompt).
    Set(SetArgs),
    /// Replace a credential's value; same id and name.
    Rotate(RotateArgs),
    #[command(alias = "rm")]
    Delete(CredDeleteArgs),
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    #[command(alias = "ls")]
    List(VaultId),
    /// Bind a host: a catalog template, or a host with an auth type.
    Add(ServiceAddArgs),
    #[command(alias = "rm")]
    Remove(ServiceRemoveArgs),
}

#[derive(Args, Debug)]
pub struct Rt {
    #[command(flatten)]
    pub rt: RuntimeArgs,
}

#[derive(Args, Debug)]
pub struct VaultId {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vault_id: String,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub name: String,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vault_id: String,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vault_id: String,
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vault_id: String,
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

#[derive(Args, Debug)]
pub struct SetupArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(default_value = ".")]
    pub path: PathBuf,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vault_id: String,
    pub name: String,
    #[arg(long, conflicts_with = "value_file")]
    pub value: Option<String>,
    #[arg(long)]
    pub value_file: Option<PathBuf>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long = "type", default_value = "api_key")]
    pub credential_type: String,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vault_id: String,
    pub credential_id: String,
    #[arg(long, conflicts_with = "value_file")]
    pub value: Option<String>,
    #[arg(long)]
    pub value_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CredDeleteArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vault_id: String,
    pub credential_id: String,
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct ServiceAddArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vault_id: String,
    #[arg(long, conflicts_with = "host", required_unless_present = "host")]
    pub template: Option<String>,
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long, default_value = "bearer", value_parser = ["bearer", "api-key", "header", "url-path"])]
    pub auth_type: String,
    #[arg(long)]
    pub header: Option<String>,
    #[arg(long)]
    pub placeholder: Option<String>,
    #[arg(long)]
    pub credential: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Args, Debug)]
pub struct ServiceRemoveArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vault_id: String,
    pub service_id: String,
}

/// The value of a `set` or `rotate`: flag, file, stdin when piped, else a hidden prompt.
fn read_value(value: Option<String>, file: Option<PathBuf>, what: &str) -> anyhow::Result<String> {
    let v = if let Some(v) = value {
        v
    } else if let Some(f) = file {
        std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?
    } else if !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        rpassword::prompt_password(format!("Value for {what}: "))?
    };
    let v = v.trim_end_matches(['\r', '\n']).to_owned();
    if v.is_empty() {
        bail!("the value is empty");
    }
    Ok(v)
}

fn confirm(yes: bool, what: &str) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to delete {what} without --yes (stdin is not a terminal)");
    }
    eprint!("Delete {what}? [y/N] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

fn raw<T: serde::Serialize>(json: bool, v: &T, lines: Vec<String>) -> anyhow::Result<()> {
    emit(json, v, &lines)
}

pub async fn run(cmd: VaultCommand) -> anyhow::Result<()> {
    match cmd {
        VaultCommand::List(a) => {
            let l = a.rt.client()?.list_vaults().await?;
            let lines = l
                .vaults
                .iter()
                .map(|v| format!("{}  {}", v.id, v.name))
                .collect();
            raw(a.rt.json, &l, lines)
        }
        VaultCommand::Create(a) => {
            let v =
                a.rt.client()?
                    .create_vault(&CreateVaultRequest {
                        name: Some(a.name),
                        description: a.description,
                    })
                    .await?;
            raw(
                a.rt.json,
                &v,
                vec![format!("Created vault {} ({})", v.id, v.name)],
            )
        }
        VaultCommand::Get(a) => {
            let v = a.rt.client()?.get_vault(&a.vault_id).await?;
            raw(a.rt.json, &v, vec![format!("{}  {}", v.id, v.name)])
        }
        VaultCommand::Update(a) => {
            let v =
                a.rt.client()?
                    .update_vault(
                        &a.vault_id,
                        &UpdateVaultRequest {
                            name: a.name,
                            description: a.description,
                        },
                    )
                    .await?;
            raw(a.rt.json, &v, vec![format!("Updated vault {}", v.id)])
        }
        VaultCommand::Delete(a) => {
            if !confirm(a.yes, &format!("vault {}", a.vault_id))? {
                return raw(
                    a.rt.json,
                    &json!({"deleted": false}),
                    vec!["Not deleted".into()],
                );
            }
            a.rt.client()?.delete_vault(&a.vault_id).await?;
            raw(
                a.rt.json,
                &json!({"deleted": true, "vault_id": a.vault_id}),
                vec![format!("Deleted vault {}", a.vault_id)],
            )
        }
        VaultCommand::Discover(a) => {
            let d = a.rt.client()?.discover_vault(&a.vault_id).await?;
            let mut lines = vec![format!("Vault {} ({})", d.vault_id, d.name)];
            lines.extend(
                d.credentials
                    .iter()
                    .map(|c| format!("  credential {}", c.name)),
            );
            lines.extend(
                d.services
                    .iter()
                    .map(|s| format!("  host {} ({})", s.host, s.auth_type)),
            );
            raw(a.rt.json, &d, lines)
        }
        VaultCommand::Catalog(a) => {
            let c = a.rt.client()?.vault_catalog().await?;
            let lines = c
                .templates
                .iter()
                .map(|t| format!("{:<12} {:<36} {}", t.id, t.host, t.credential_key))
                .collect();
            raw(a.rt.json, &c, lines)
        }
        VaultCommand::Logs(a) => {
            let l =
                a.rt.client()?
                    .vault_request_logs(&a.vault_id, a.limit)
                    .await?;
            let lines = l
                .logs
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {} {} {} {}",
                        r.timestamp.to_rfc3339(),
                        r.method,
                        r.host,
                        r.path,
                        r.status.map(|s| s.to_string()).unwrap_or("-".into()),
                        r.credential_name.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            raw(a.rt.json, &l, lines)
        }
        VaultCommand::Setup(a) => setup(a).await,
        VaultCommand::Secret { command } => secret(command).await,
        VaultCommand::Service { command } => service(command).await,
    }
}

async fn secret(cmd: SecretCommand) -> anyhow::Result<()> {
    match cmd {
        SecretCommand::List(a) => {
            let l = a.rt.client()?.list_credentials(&a.vault_id).await?;
            let lines = l
                .credentials
                .iter()
                .map(|c| format!("{}  {}  {}", c.id, c.name, c.credential_type))
                .collect();
            raw(a.rt.json, &l, lines)
        }
        SecretCommand::Set(a) => {
            let value = read_value(a.value, a.value_file, &a.name)?;
            let c =
                a.rt.client()?
                    .add_credential(
                        &a.vault_id,
                        &CreateCredentialRequest {
                            name: Some(a.name),
                            value: Some(value),
                            credential_type: Some(a.credential_type),
                            description: a.description,
                            enabled: None,
                        },
                    )
                    .await?;
            raw(a.rt.json, &c, vec![format!("Stored {} ({})", c.name, c.id)])
        }
        SecretCommand::Rotate(a) => {
            let value = read_value(a.value, a.value_file, &a.credential_id)?;
            let c =
                a.rt.client()?
                    .rotate_credential(
                        &a.vault_id,
                        &a.credential_id,
                        &RotateCredentialRequest { value: Some(value) },
                    )
                    .await?;
            raw(
                a.rt.json,
                &c,
                vec![format!("Rotated {} ({})", c.name, c.id)],
            )
        }
        SecretCommand::Delete(a) => {
            if !confirm(a.yes, &format!("credential {}", a.credential_id))? {
                return raw(
                    a.rt.json,
                    &json!({"deleted": false}),
                    vec!["Not deleted".into()],
                );
            }
            a.rt.client()?
                .delete_credential(&a.vault_id, &a.credential_id)
                .await?;
            raw(
                a.rt.json,
                &json!({"deleted": true}),
                vec![format!("Deleted credential {}", a.credential_id)],
            )
        }
    }
}

async fn service(cmd: ServiceCommand) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::List(a) => {
            let l = a.rt.client()?.list_services(&a.vault_id).await?;
            let lines = l
                .services
                .iter()
                .map(|s| format!("{}  {}  {}", s.id, s.host, s.auth_config))
                .collect();
            raw(a.rt.json, &l, lines)
        }
        ServiceCommand::Add(a) => {
            let client = a.rt.client()?;
            if let Some(t) = a.template {
                let r = client
                    .add_services_from_templates(&a.vault_id, std::slice::from_ref(&t))
                    .await?;
                return raw(
                    a.rt.json,
                    &r,
                    vec![format!("Bound template {t} ({} new)", r.created)],
                );
            }
            let host = a.host.unwrap_or_default();
            let cred = a
                .credential
                .clone()
                .unwrap_or_else(|| credential_key_for_host(&host));
            let auth = match a.auth_type.as_str() {
                "api-key" | "header" => json!({
                    "type": "api-key",
                    "header": a.header.as_deref().unwrap_or("Authorization"),
                    "key": cred,
                }),
                "url-path" => json!({
                    "type": "url-path",
                    "token": cred,
                    "placeholder": a.placeholder.clone().unwrap_or_else(|| cred.clone()),
                }),
                _ => json!({"type": "bearer", "token": cred}),
            };
            let s = client
                .add_service(
                    &a.vault_id,
                    &CreateServiceRequest {
                        host: Some(host),
                        auth_config: Some(auth),
                        enabled: Some(!a.disabled),
                        description: a.description,
                    },
                )
                .await?;
            raw(a.rt.json, &s, vec![format!("Bound {} ({})", s.host, s.id)])
        }
        ServiceCommand::Remove(a) => {
            a.rt.client()?
                .delete_service(&a.vault_id, &a.service_id)
                .await?;
            raw(
                a.rt.json,
                &json!({"deleted": true}),
                vec![format!("Removed service {}", a.service_id)],
            )
        }
    }
}

/// The bootstrap's derived credential name for an unknown host (manifest.md §8):
/// `api.acme-internal.io` → `ACME_INTERNAL_API_KEY`.
pub fn credential_key_for_host(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    let h = h
        .strip_prefix("api.")
        .or_else(|| h.strip_prefix("www."))
        .unwrap_or(&h);
    let first = h.split('.').next().unwrap_or("");
    let base: String = first
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}_API_KEY", base.to_ascii_uppercase())
}

/// One host's binding: a catalog template id, or an auth_config of its own.
struct Plan {
    host: String,
    credential: String,
    template: Option<String>,
    auth_config: Value,
}

fn plan_for(host: &str, catalog: &[CatalogTemplate]) -> Plan {
    if let Some(t) = catalog
        .iter()
        .find(|t| t.host == host || instavm_vault::catalog::host_matches(&t.host, host))
    {
        let entry = instavm_vault::catalog::find(&t.id);
        return Plan {
            host: host.to_owned(),
            credential: t.credential_key.clone(),
            template: Some(t.id.clone()),
            auth_config: entry.map(|e| e.auth_config()).unwrap_or(Value::Null),
        };
    }
    let credential = credential_key_for_host(host);
    Plan {
        host: host.to_owned(),
        auth_config: json!({"type": "bearer", "token": credential}),
        credential,
        template: None,
    }
}

/// `vault setup [PATH]`: discovery, then a bootstrap of what is missing (manifest.md §8).
/// Values come from the environment variable named after the credential, else a prompt.
async fn setup(a: SetupArgs) -> anyhow::Result<()> {
    let path = a.path.join("instavm.yaml");
    let manifest = instavm_manifest::load_manifest(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let slug = manifest.slug.clone();
    let hosts: Vec<String> = manifest
        .vault
        .as_ref()
        .map(|v| v.hosts.iter().map(|h| h.to_ascii_lowercase()).collect())
        .unwrap_or_default();
    if hosts.is_empty() {
        return raw(
            a.rt.json,
            &json!({"status": "skipped", "reason": "the manifest declares no vault hosts", "slug": slug}),
            vec!["The manifest declares no vault hosts; nothing to set up".into()],
        );
    }
    let client = a.rt.client()?;
    // Discovery: the first vault that covers a host wins it.
    let mut covered: Vec<(String, String, String)> = Vec::new();
    let vaults = client
        .list_vaults()
        .await
        .map(|l| l.vaults)
        .unwrap_or_default();
    for v in &vaults {
        let Ok(services) = client.list_services(&v.id).await else {
            continue;
        };
        for s in services.services.iter().filter(|s| s.enabled) {
            let h = s.host.to_ascii_lowercase();
            if hosts.contains(&h) && !covered.iter().any(|c| c.0 == h) {
                covered.push((h, v.id.clone(), v.name.clone()));
            }
        }
    }
    let mut matched: Vec<String> = Vec::new();
    for c in &covered {
        if !matched.contains(&c.1) {
            matched.push(c.1.clone());
        }
    }
    let missing: Vec<&String> = hosts
        .iter()
        .filter(|h| !covered.iter().any(|c| &c.0 == *h))
        .collect();
    if missing.is_empty() {
        let bindings: Vec<Value> = covered
            .iter()
            .map(|(h, id, name)| json!({"host": h, "vault_id": id, "vault_name": name}))
            .collect();
        return raw(
            a.rt.json,
            &json!({"status": "already_covered", "vault_ids": matched, "host_to_vault": bindings}),
            vec![format!(
                "Every vault host is covered by {}",
                matched.join(", ")
            )],
        );
    }
    let catalog = client
        .vault_catalog()
        .await
        .map(|c| c.templates)
        .unwrap_or_default();
    let plans: Vec<Plan> = missing.iter().map(|h| plan_for(h, &catalog)).collect();
    let target = match matched.first() {
        Some(id) => id.clone(),
        None => {
            client
                .create_vault(&CreateVaultRequest {
                    name: Some(format!("{slug}-vault")),
                    description: Some(format!("Credentials for {slug} (instavm vault setup)")),
                })
                .await?
                .id
        }
    };
    let existing: Vec<String> = client
        .list_credentials(&target)
        .await?
        .credentials
        .into_iter()
        .map(|c| c.name)
        .collect();
    let mut templates = Vec::new();
    let mut added = Vec::new();
    for p in &plans {
        if !existing.contains(&p.credential) && !added.contains(&p.credential) {
            let value = match std::env::var(&p.credential) {
                Ok(v) if !v.is_empty() => v,
                _ if std::io::stdin().is_terminal() => {
                    rpassword::prompt_password(format!("Value for {} ({}): ", p.credential, p.host))?
                }
                _ => bail!(
                    "no value for {} (host {}): set the environment variable {} or run on a terminal",
                    p.credential,
                    p.host,
                    p.credential
                ),
            };
            if value.is_empty() {
                bail!("empty value for {}", p.credential);
            }
            client
                .add_credential(
                    &target,
                    &CreateCredentialRequest {
                        name: Some(p.credential.clone()),
                        value: Some(value),
                        credential_type: Some("api_key".into()),
                        description: Some(format!("for {}", p.host)),
                        enabled: None,
                    },
                )
                .await?;
            added.push(p.credential.clone());
        }
        match &p.template {
            Some(t) => templates.push(t.clone()),
            None => {
                client
                    .add_service(
                        &target,
                        &CreateServiceRequest {
                            host: Some(p.host.clone()),
                            auth_config: Some(p.auth_config.clone()),
                            enabled: Some(true),
                            description: Some(format!("{slug} (instavm vault setup)")),
                        },
                    )
                    .await?;
            }
        }
    }
    if !templates.is_empty() {
        client
            .add_services_from_templates(&target, &templates)
            .await?;
    }
    let mut ids = vec![target.clone()];
    for m in matched {
        if !ids.contains(&m) {
            ids.push(m);
        }
    }
    raw(
        a.rt.json,
        &json!({"status": "ok", "vault_ids": ids}),
        vec![format!("Vault {target} now covers {}", hosts.join(", "))],
    )
}
