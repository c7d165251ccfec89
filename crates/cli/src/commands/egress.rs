//! `egress get|set` (spec/cli.md §6.6): a session's or a VM's egress policy.

use super::RuntimeArgs;
use crate::output::emit;
use anyhow::bail;
use clap::{Args, Subcommand};
use instavm_sdk::{EgressPolicyRequest, EgressPolicyResponse, EgressTarget};
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum EgressCommand {
    /// Get the egress policy for a session or VM.
    Get(GetArgs),
    /// Set the egress policy for a session or VM (every flag defaults to allow; the lists to
    /// empty).
    Set(SetArgs),
}

#[derive(Args, Debug)]
pub struct TargetArgs {
    /// Session ID.
    #[arg(long = "session")]
    pub session_id: Option<String>,
    /// VM ID.
    #[arg(long = "vm")]
    pub vm_id: Option<String>,
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<(&'static str, EgressTarget<'_>)> {
        match (&self.session_id, &self.vm_id) {
            (Some(s), None) => Ok(("session", EgressTarget::Session(s))),
            (None, Some(v)) => Ok(("vm", EgressTarget::Vm(v))),
            _ => bail!("Provide exactly one of --session or --vm"),
        }
    }
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Allow package-manager traffic to public repos (the default).
    #[arg(long, overrides_with = "no_allow_package_managers")]
    pub allow_package_managers: bool,
    /// Block package-manager traffic to public repos.
    #[arg(long, overrides_with = "allow_package_managers")]
    pub no_allow_package_managers: bool,
    /// Allow HTTP traffic (the default).
    #[arg(long, overrides_with = "deny_http")]
    pub allow_http: bool,
    /// Block HTTP traffic.
    #[arg(long, overrides_with = "allow_http")]
    pub deny_http: bool,
    /// Allow HTTPS traffic (the default).
    #[arg(long, overrides_with = "deny_https")]
    pub allow_https: bool,
    /// Block HTTPS traffic.
    #[arg(long, overrides_with = "allow_https")]
    pub deny_https: bool,
    /// Allowed domain (repeatable; `*.example.com` for every name under it).
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Allowed CIDR (repeatable).
    #[arg(long = "cidr", value_name = "CIDR")]
    pub cidrs: Vec<String>,
}

/// The official CLI's normalised shape.
fn payload(target_type: &str, target_id: &str, p: &EgressPolicyResponse) -> Value {
    json!({
        "target_type": target_type,
        "target_id": target_id,
        "allow_package_managers": p.allow_package_managers,
        "allow_http": p.allow_http,
        "allow_https": p.allow_https,
        "allowed_domains": p.allowed_domains,
        "allowed_cidrs": p.allowed_cidrs,
        "status": p.status,
    })
}

fn lines(target_type: &str, target_id: &str, p: &EgressPolicyResponse) -> Vec<String> {
    let word = |b: bool| if b { "allowed" } else { "blocked" };
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    vec![
        format!("Target: {target_type} {target_id}"),
        format!("Status: {}", p.status),
        format!("Package managers: {}", word(p.allow_package_managers)),
        format!("HTTP: {}", word(p.allow_http)),
        format!("HTTPS: {}", word(p.allow_https)),
        format!("Domains: {}", list(&p.allowed_domains)),
        format!("CIDRs: {}", list(&p.allowed_cidrs)),
        format!("Denied attempts: {}", p.denied_attempts),
    ]
}

pub async fn run(cmd: EgressCommand) -> anyhow::Result<()> {
    match cmd {
        EgressCommand::Get(a) => {
            let (kind, target) = a.target.target()?;
            let client = a.rt.client()?;
            let p = client.get_egress(target).await?;
            let id = a
                .target
                .session_id
                .as_deref()
                .or(a.target.vm_id.as_deref())
                .unwrap_or_default();
            emit(a.rt.json, &payload(kind, id, &p), &lines(kind, id, &p))
        }
        EgressCommand::Set(a) => {
            let (kind, target) = a.target.target()?;
            let client = a.rt.client()?;
            let req = EgressPolicyRequest {
                allow_public_repos: Some(!a.no_allow_package_managers),
                allow_package_managers: None,
                allow_http: Some(!a.deny_http),
                allow_https: Some(!a.deny_https),
                allowed_domains: Some(a.domains.clone()),
                allowed_cidrs: Some(a.cidrs.clone()),
            };
            client.set_egress(target, &req).await?;
            // As the official CLI: read it back after the set.
            let p = client.get_egress(target).await?;
            let id = a
                .target
                .session_id
                .as_deref()
                .or(a.target.vm_id.as_deref())
                .unwrap_or_default();
            emit(a.rt.json, &payload(kind, id, &p), &lines(kind, id, &p))
        }
    }
}
