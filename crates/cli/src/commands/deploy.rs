//! `instavm deploy [PATH] [-f FILE] --plan [--json]` (spec/cli.md §6.14, spec/manifest.md §7).
//!
//! `--plan` resolves the manifest (or zero-config detection) and prints the plan without any
//! network access. The deploy itself needs the server-side pipeline, which is not built yet.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use instavm_manifest::{resolve_plan, BigInt, DeployOptions, Plan};

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

pub fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let options = DeployOptions {
        file: args.file.clone(),
        port: args.port.clone(),
        health_path: args.health_path.clone(),
        start_command: args.start_command.clone(),
        install_command: args.install_command.clone(),
        build_command: args.build_command.clone(),
        private: args.private,
        snapshot_id: args.snapshot_id.clone(),
        env: args.env.clone(),
    };
    let plan = match resolve_plan(Path::new(&args.path), &options) {
        Ok(plan) => plan,
        Err(err) => return Ok(fail(err)),
    };
    if let Plan::Manifest(p) = &plan {
        for notice in &p.manifest.load_notices {
            eprintln!("Warning: {notice}");
        }
    }
    if !args.plan {
        return Ok(fail(
            "deploying needs the server-side deploy pipeline (VM create, upload, start, share), \
             which this build does not include yet. Use `instavm deploy --plan` to validate the \
             manifest and preview the plan.",
        ));
    }
    let output = if args.json {
        plan.to_json_line().map(|line| line + "\n")
    } else {
        plan.to_text(&options)
    };
    match output {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => Ok(fail(err)),
    }
}
