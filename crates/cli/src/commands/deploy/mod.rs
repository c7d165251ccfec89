//! `instavm deploy [PATH] [-f FILE]` (spec/cli.md §6.14, spec/manifest.md §7).
//!
//! `--plan` resolves the manifest (or zero-config detection) and prints the plan without any
//! network access. Without it, the pipeline of [`pipeline`] runs through the platform's API
//! (no SSH on the client): services get a VM, an upload, setup, a start, a health check and a
//! share; cron and job manifests are built into a snapshot and registered as workloads.

pub mod package;
pub mod pipeline;
pub mod record;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use instavm_manifest::schema::{Kind, Manifest};
use instavm_manifest::{resolve_plan, BigInt, DeployOptions, Plan};
use serde::Serialize;

use crate::config::{self, Overrides};
use crate::errors::MissingKey;
use pipeline::{DeployFailure, DeployRequest, FailureContext, Rail};

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// Project directory (default: .)
    #[arg(default_value = ".")]
    pub path: String,
    /// Manifest file to deploy (for example, instavm.cron.yaml), relative to PATH
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Skip confirmation prompt
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Set environment variable (repeatable); secrets resolve from it
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Override detected port
    #[arg(long, value_parser = python_int, allow_negative_numbers = true)]
    pub port: Option<BigInt>,
    /// Override detected health check path
    #[arg(long)]
    pub health_path: Option<String>,
    /// Override detected start command
    #[arg(long)]
    pub start_command: Option<String>,
    /// Override detected install command (zero-config only)
    #[arg(long)]
    pub install_command: Option<String>,
    /// Override detected build command (zero-config only)
    #[arg(long)]
    pub build_command: Option<String>,
    /// Show detected plan and exit (dry-run, no API key needed)
    #[arg(long)]
    pub plan: bool,
    /// Don't create public share
    #[arg(long)]
    pub private: bool,
    /// Boot the deploy VM from an existing snapshot ID
    #[arg(long = "snapshot", value_name = "ID")]
    pub snapshot_id: Option<String>,
    /// Create VM snapshot after successful deploy (zero-config only)
    #[arg(long)]
    pub save_snapshot: bool,
    /// Bind a specific org vault to the new VM (repeatable); overrides auto-discovery
    #[arg(long = "vault", value_name = "VAULT_ID")]
    pub vault_ids: Vec<String>,
    /// Skip vault auto-discovery even when the manifest declares `vault.hosts`
    #[arg(long)]
    pub no_vault: bool,
    /// Fail with a setup recipe instead of prompting to bootstrap a vault
    #[arg(long)]
    pub no_setup_vault: bool,
    /// Emit JSON output
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Override the InstaVM API key for this command
    #[arg(long)]
    pub api_key: Option<String>,
    /// Override the InstaVM API base URL for this command
    #[arg(long)]
    pub base_url: Option<String>,
    /// Override the SSH gateway host for this command
    #[arg(long)]
    pub ssh_host: Option<String>,
}

/// argparse's `type=int`: Python `int()` rules (spaces, sign, `_` between digits).
fn python_int(text: &str) -> Result<BigInt, String> {
    instavm_manifest::py::num::parse_int(text, 10)
        .map_err(|_| format!("invalid int value: '{text}'"))
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("Error: {message}");
    ExitCode::from(1)
}

fn options_of(args: &DeployArgs) -> DeployOptions {
    DeployOptions {
        file: args.file.clone(),
        port: args.port.clone(),
        health_path: args.health_path.clone(),
        start_command: args.start_command.clone(),
        install_command: args.install_command.clone(),
        build_command: args.build_command.clone(),
        private: args.private,
        snapshot_id: args.snapshot_id.clone(),
        env: args.env.clone(),
    }
}

pub fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let options = options_of(&args);
    let plan = match resolve_plan(Path::new(&args.path), &options) {
        Ok(plan) => plan,
        Err(err) => return Ok(fail(err)),
    };
    if let Plan::Manifest(p) = &plan {
        for notice in &p.manifest.load_notices {
            eprintln!("Warning: {notice}");
        }
    }
    if args.plan {
        let output = if args.json {
            plan.to_json_line().map(|line| line + "\n")
        } else {
            plan.to_text(&options)
        };
        return match output {
            Ok(text) => {
                print!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => Ok(fail(err)),
        };
    }
    if !args.yes && std::io::stdin().is_terminal() {
        if let Ok(text) = plan.to_text(&options) {
            print!("{text}");
        }
        print!("  Deploy? [Y/n] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim().eq_ignore_ascii_case("n") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let target = Target {
        api_key: args.api_key.clone(),
        base_url: args.base_url.clone(),
        ssh_host: args.ssh_host.clone(),
        json: args.json,
        vault_ids: args.vault_ids.clone(),
        no_vault: args.no_vault,
        style: Style::Deploy,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match plan {
            Plan::Manifest(p) => {
                deploy_manifest(&target, &p.manifest, &options, p.snapshot_id.clone()).await
            }
            Plan::Detected(d) => deploy_detected(&target, &d, &options, args.save_snapshot).await,
        }
    })
}

/// How and where to deploy (the flags beyond the plan).
pub struct Target {
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    pub ssh_host: Option<String>,
    pub json: bool,
    pub vault_ids: Vec<String>,
    pub no_vault: bool,
    pub style: Style,
}

/// `deploy` and `cookbook deploy` print their outcome a little differently.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Deploy,
    Cookbook,
}

#[derive(Serialize)]
struct Failed<'a, T: Serialize> {
    status: &'static str,
    error: &'a str,
    #[serde(flatten)]
    partial: T,
}

/// `{"status":"failed","error":...[,"slug":...]}`, keys in the reference's order.
pub fn print_failed_before(message: &str, slug: Option<&str>) {
    #[derive(Serialize)]
    struct Before<'a> {
        status: &'static str,
        error: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        slug: Option<&'a str>,
    }
    let line = serde_json::to_string(&Before {
        status: "failed",
        error: message,
        slug,
    })
    .unwrap_or_default();
    println!("{line}");
}

impl Target {
    fn client(&self) -> anyhow::Result<(instavm_sdk::Client, String)> {
        let settings = config::resolve(&Overrides {
            api_key: self.api_key.clone(),
            base_url: self.base_url.clone(),
            ssh_host: self.ssh_host.clone(),
        })?;
        let key = settings.api_key.ok_or(MissingKey)?;
        Ok((
            instavm_sdk::Client::new(&settings.base_url, Some(key))?,
            settings.ssh_host,
        ))
    }

    /// A failure before any VM exists: `{status, error}` (plus `slug` for cookbooks).
    pub fn fail_before(&self, message: &str, slug: &str) -> ExitCode {
        if self.json {
            let slug = (self.style == Style::Cookbook).then_some(slug);
            print_failed_before(message, slug);
        } else {
            eprintln!("Error: {message}");
        }
        ExitCode::from(1)
    }

    fn fail_after(&self, message: &str, context: &FailureContext) -> anyhow::Result<ExitCode> {
        let (vm_id, slug, destroy) = match context {
            FailureContext::Service(p) => (&p.vm_id, &p.slug, &p.destroy_command),
            FailureContext::Workload(p) => (&p.vm_id, &p.slug, &p.destroy_command),
        };
        if self.json {
            let line = match context {
                FailureContext::Service(p) => serde_json::to_string(&Failed {
                    status: "failed",
                    error: message,
                    partial: p,
                })?,
                FailureContext::Workload(p) => serde_json::to_string(&Failed {
                    status: "failed",
                    error: message,
                    partial: p,
                })?,
            };
            println!("{line}");
        } else {
            eprintln!("Deploy failed");
            eprintln!("  Error     {message}");
            eprintln!("  VM        {vm_id}");
            eprintln!("  Connect   instavm connect {vm_id}");
            eprintln!(
                "  Logs      After connecting: tail -n 200 ~/.instavm-cookbooks/logs/{slug}.log"
            );
            eprintln!("  Destroy   {destroy}");
        }
        Ok(ExitCode::from(1))
    }

    fn success(&self, payload: &pipeline::DeployPayload) -> anyhow::Result<ExitCode> {
        if self.json {
            println!("{}", serde_json::to_string(payload)?);
            return Ok(ExitCode::SUCCESS);
        }
        let url = payload.share_url.trim_end_matches('/');
        let mut lines = match self.style {
            Style::Deploy => vec![
                "Deployed".to_owned(),
                String::new(),
                format!("  App       {}", payload.slug),
                format!("  VM        {}", payload.vm_id),
                format!("  URL       {url}"),
                format!("  Connect   instavm connect {}", payload.vm_id),
                format!("  Destroy   {}", payload.destroy_command),
            ],
            Style::Cookbook => vec![
                "Cookbook ready".to_owned(),
                String::new(),
                format!("  Cookbook  {}", payload.slug),
                format!("  VM        {}", payload.vm_id),
                format!("  URL       {url}"),
                format!("  Connect   instavm connect {}", payload.vm_id),
                format!(
                    "  Logs      After connecting: tail -n 200 ~/.instavm-cookbooks/logs/{}.log",
                    payload.slug
                ),
                format!("  Destroy   {}", payload.destroy_command),
            ],
        };
        if let Some(id) = &payload.reused_snapshot_id {
            lines.push(format!("  Snapshot  reused {id}"));
        }
        if let Some(id) = &payload.saved_snapshot_id {
            lines.push(format!("  Snapshot  saved {id}"));
        }
        for b in &payload.vault_bindings {
            lines.push(format!("  Vault     {} → {}", b.host, b.vault_id));
        }
        if self.style == Style::Cookbook && !payload.notes.is_empty() {
            lines.push(String::new());
            lines.push("  Notes".into());
            lines.extend(payload.notes.iter().map(|n| format!("    - {n}")));
        }
        for line in lines {
            println!("{line}");
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Deploys a loaded manifest: a service, or a cron/job workload.
pub async fn deploy_manifest(
    target: &Target,
    manifest: &Manifest,
    options: &DeployOptions,
    snapshot_override: Option<String>,
) -> anyhow::Result<ExitCode> {
    if manifest.kind == Kind::Devbox {
        return Ok(target.fail_before(
            "`instavm deploy` can parse and plan `kind: devbox` manifests, but devbox templates \
             must be published with `instavm template publish <dir>`.",
            &manifest.slug,
        ));
    }
    let (client, ssh_host) = target.client()?;
    let req = DeployRequest {
        manifest,
        options,
        snapshot_override,
        vault_ids: target.vault_ids.clone(),
        no_vault: target.no_vault,
        ssh_host,
    };
    if matches!(manifest.kind, Kind::Cron | Kind::Job) {
        let mut rail = Rail::new(6);
        return match pipeline::deploy_workload(&client, &req, &mut rail).await {
            Ok(payload) => {
                if target.json {
                    println!("{}", serde_json::to_string(&payload)?);
                } else {
                    print_workload_deployed(&payload);
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(DeployFailure::Before(m)) => Ok(target.fail_before(&m, &manifest.slug)),
            Err(DeployFailure::After(m, ctx)) => target.fail_after(&m, &ctx),
        };
    }
    let mut rail = Rail::new(6);
    match pipeline::deploy_service(&client, &req, &mut rail).await {
        Ok(payload) => target.success(&payload),
        Err(DeployFailure::Before(m)) => Ok(target.fail_before(&m, &manifest.slug)),
        Err(DeployFailure::After(m, ctx)) => target.fail_after(&m, &ctx),
    }
}

fn print_workload_deployed(p: &pipeline::WorkloadPayload) {
    let w = &p.workload;
    let kind = serde_json::to_value(w.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    println!("Deployed {kind} {}", w.slug);
    println!();
    println!("  Workload  {} ({})", w.slug, w.id);
    println!("  Version   {}", w.version);
    println!("  Snapshot  {} ({})", w.snapshot_id, p.snapshot_name);
    if let Some(s) = &w.schedule {
        println!("  Schedule  {} {}", s.cron, s.timezone);
    }
    if let Some(next) = &w.next_run_at {
        println!("  Next run  {}", next.to_rfc3339());
    }
    for t in &w.triggers {
        let kind = serde_json::to_value(t.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "  Trigger   {kind}{}",
            t.url
                .as_deref()
                .map(|u| format!(" {u}"))
                .unwrap_or_default()
        );
    }
    if let Some(secret) = &w.webhook_secret {
        println!("  Secret    {secret} (shown once)");
    }
    println!("  Run now   instavm run {}", w.slug);
}

/// A zero-config deploy: the manifest built from detection, the saved snapshot reused when
/// its fingerprint matches, and `--save-snapshot` afterwards.
async fn deploy_detected(
    target: &Target,
    detected: &instavm_manifest::DetectedPlan,
    options: &DeployOptions,
    save: bool,
) -> anyhow::Result<ExitCode> {
    let mut manifest =
        match instavm_manifest::detect::plan_to_manifest(&detected.plan, &detected.path) {
            Ok(m) => m,
            Err(e) => return Ok(fail(e)),
        };
    if detected.private {
        if let Some(app) = manifest.app.as_mut() {
            app.share_public_default = false;
        }
    }
    let (client, ssh_host) = target.client()?;
    let mut reused = None;
    if detected.snapshot_id.is_none() {
        if let Some(id) = record::saved_snapshot(&detected.path, &detected.plan) {
            if pipeline::validate_snapshot(&client, &id).await.is_ok() {
                eprintln!("  · Reusing saved snapshot {id}");
                reused = Some(id);
            }
        }
    }
    let req = DeployRequest {
        manifest: &manifest,
        options,
        snapshot_override: detected.snapshot_id.clone().or_else(|| reused.clone()),
        vault_ids: target.vault_ids.clone(),
        no_vault: target.no_vault,
        ssh_host,
    };
    let mut rail = Rail::new(if save { 7 } else { 6 });
    let mut payload = match pipeline::deploy_service(&client, &req, &mut rail).await {
        Ok(p) => p,
        Err(DeployFailure::Before(m)) => return Ok(target.fail_before(&m, &manifest.slug)),
        Err(DeployFailure::After(m, ctx)) => return target.fail_after(&m, &ctx),
    };
    payload.reused_snapshot_id = reused;
    if save {
        rail.start("snapshot", &format!("deploy/{}", manifest.slug));
        match pipeline::save_snapshot(&client, &payload.vm_id, &manifest.slug).await {
            Ok(Some(id)) => {
                record::save(
                    &detected.path,
                    &detected.plan,
                    &id,
                    &payload.vm_id,
                    &payload.share_url,
                )?;
                rail.finish(&id);
                payload.saved_snapshot_id = Some(id);
            }
            Ok(None) => rail.finish("no snapshot id returned"),
            Err(m) => {
                rail.fail();
                return Ok(target.fail_before(&m, &manifest.slug));
            }
        }
        payload.timings = rail.timings.clone();
    }
    target.success(&payload)
}
