//! `instavm`: the command-line client (spec/cli.md) and, as `instavm server`, the platform.

mod commands;
mod config;
mod errors;
mod output;
mod terminal;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "instavm",
    version,
    about = "Self-hosted InstaVM: sandboxes for AI agents and developers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Store, inspect or remove the API key and defaults in ~/.instavm/config.json.
    Auth {
        #[command(subcommand)]
        command: Option<commands::auth::AuthCommand>,
    },
    /// Show the account and its SSH keys.
    Whoami(commands::RuntimeArgs),
    /// Run inline code or a local file in a session; `exec result TASK_ID` waits for a task.
    Exec(commands::exec::ExecArgs),
    /// Self-hosting administration (needs the admin API key).
    Admin {
        #[command(subcommand)]
        command: Option<commands::admin::AdminCommand>,
    },
    /// Run the platform: the HTTP API and the sandboxes on this host.
    Server(Box<commands::server::ServerArgs>),
    /// Sandbox images (build the base image ahead of the first server start).
    Image {
        #[command(subcommand)]
        command: Option<commands::image::ImageCommand>,
    },
    /// Deploy an app from instavm.yaml (or zero-config detection); `--plan` prints the plan offline.
    Deploy(commands::deploy::DeployArgs),
    /// Cookbooks: the catalogue in INSTAVM_COOKBOOKS_DIR (list, info, deploy).
    #[command(alias = "cookbooks")]
    Cookbook {
        #[command(subcommand)]
        command: Option<commands::cookbook::CookbookCommand>,
    },
    /// Cron workloads (deployed `kind: cron` manifests): list, run, pause, resume, history, logs.
    Cron {
        #[command(subcommand)]
        command: Option<commands::workloads::CronCommand>,
    },
    /// Job workloads (deployed `kind: job` manifests): list, run, history, logs.
    Job {
        #[command(subcommand)]
        command: Option<commands::workloads::JobCommand>,
    },
    /// Start a run of a cron or job workload now.
    Run(commands::workloads::RunArgs),
    /// Open a terminal in a VM over the WebSocket API.
    Pty(commands::pty::PtyArgs),
    /// SSH into a VM through the platform's SSH gateway (runs `ssh <vm_id>@<ssh_host>`).
    Connect(commands::connect::ConnectArgs),
    /// Create a VM (waits until it is active).
    #[command(alias = "new")]
    Create(commands::vms::CreateArgs),
    /// List running VMs (`-a`: every record).
    #[command(alias = "list")]
    Ls(commands::vms::ListArgs),
    /// Delete VMs.
    #[command(alias = "delete")]
    Rm(commands::vms::RemoveArgs),
    /// Clone a VM through a snapshot of its disk.
    Clone(commands::vms::CloneArgs),
    /// Update, suspend or resume a VM.
    #[command(alias = "vms")]
    Vm {
        #[command(subcommand)]
        command: Option<commands::vms::VmCommand>,
    },
    /// Snapshots of VM disks.
    Snapshot {
        #[command(subcommand)]
        command: Option<commands::snapshots::SnapshotCommand>,
    },
    /// Tapes: sessions recorded step by step, diffed and branched (time travel).
    #[command(alias = "tapes")]
    Tape {
        #[command(subcommand)]
        command: Option<commands::tape::TapeCommand>,
    },
    /// Audit events: what changed, when, and who did it.
    #[command(alias = "audit")]
    Events {
        #[command(subcommand)]
        command: Option<commands::events::EventsCommand>,
    },
    /// Create and manage VM shares (URLs that serve a port inside a VM).
    Share {
        #[command(subcommand)]
        command: Option<commands::shares::ShareCommand>,
    },
    /// Secrets vaults: credentials injected at egress, never visible inside a VM.
    #[command(visible_alias = "secrets", alias = "secret")]
    Vault {
        #[command(subcommand)]
        command: Option<commands::vault::VaultCommand>,
    },
    /// Volumes: persistent storage with checkpoints, mounted into VMs.
    #[command(alias = "volumes")]
    Volume {
        #[command(subcommand)]
        command: Option<commands::volumes::VolumeCommand>,
    },
    /// Credits, usage and rates (`billing` alone prints the portal URL).
    Billing {
        #[command(subcommand)]
        command: Option<commands::billing::BillingCommand>,
    },
    /// Webhook endpoints, deliveries and signature checks.
    #[command(alias = "webhook")]
    Webhooks {
        #[command(subcommand)]
        command: Option<commands::webhooks::WebhooksCommand>,
    },
    /// Get or set VM and session egress policy.
    Egress {
        #[command(subcommand)]
        command: Option<commands::egress::EgressCommand>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => {
            let _ = Cli::command().print_help();
            return ExitCode::SUCCESS;
        }
        Some(Command::Auth { command: None }) => group_help("auth"),
        Some(Command::Auth { command: Some(c) }) => {
            commands::auth::run(c).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Whoami(args)) => block_on(commands::whoami::run(args)),
        Some(Command::Exec(args)) => block_on(commands::exec::run(args)),
        Some(Command::Admin { command: None }) => group_help("admin"),
        Some(Command::Admin { command: Some(c) }) => block_on(commands::admin::run(c)),
        Some(Command::Server(args)) => commands::server::run(*args).map(|()| ExitCode::SUCCESS),
        Some(Command::Image { command: None }) => group_help("image"),
        Some(Command::Image { command: Some(c) }) => {
            commands::image::run(c).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Deploy(args)) => commands::deploy::run(args),
        Some(Command::Cookbook { command: None }) => group_help("cookbook"),
        Some(Command::Cookbook { command: Some(c) }) => commands::cookbook::run(c),
        Some(Command::Cron { command: None }) => group_help("cron"),
        Some(Command::Cron { command: Some(c) }) => block_on(commands::workloads::run_cron(c)),
        Some(Command::Job { command: None }) => group_help("job"),
        Some(Command::Job { command: Some(c) }) => block_on(commands::workloads::run_job(c)),
        Some(Command::Run(args)) => block_on(commands::workloads::run_now(args)),
        Some(Command::Pty(args)) => block_on_code(commands::pty::run(args)),
        Some(Command::Connect(args)) => commands::connect::run(args),
        Some(Command::Create(args)) => block_on(commands::vms::create(args)),
        Some(Command::Ls(args)) => block_on(commands::vms::list(args)),
        Some(Command::Rm(args)) => block_on(commands::vms::remove(args)),
        Some(Command::Clone(args)) => block_on(commands::vms::clone(args)),
        Some(Command::Vm { command: None }) => group_help("vm"),
        Some(Command::Vm { command: Some(c) }) => block_on(commands::vms::run(c)),
        Some(Command::Snapshot { command: None }) => group_help("snapshot"),
        Some(Command::Snapshot { command: Some(c) }) => block_on(commands::snapshots::run(c)),
        Some(Command::Tape { command: None }) => group_help("tape"),
        Some(Command::Tape { command: Some(c) }) => block_on(commands::tape::run(c)),
        Some(Command::Events { command: None }) => group_help("events"),
        Some(Command::Events { command: Some(c) }) => block_on(commands::events::run(c)),
        Some(Command::Share { command: None }) => group_help("share"),
        Some(Command::Share { command: Some(c) }) => block_on(commands::shares::run(c)),
        Some(Command::Vault { command: None }) => group_help("vault"),
        Some(Command::Vault { command: Some(c) }) => block_on(commands::vault::run(c)),
        Some(Command::Volume { command: None }) => group_help("volume"),
        Some(Command::Volume { command: Some(c) }) => block_on(commands::volumes::run(c)),
        Some(Command::Billing { command }) => block_on(commands::billing::run(command)),
        Some(Command::Webhooks { command: None }) => group_help("webhooks"),
        Some(Command::Webhooks { command: Some(c) }) => block_on_code(commands::webhooks::run(c)),
        Some(Command::Egress { command: None }) => group_help("egress"),
        Some(Command::Egress { command: Some(c) }) => block_on(commands::egress::run(c)),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            errors::report(&err);
            ExitCode::from(1)
        }
    }
}

/// A group without a subcommand prints its help and succeeds (the official CLI since 0.26).
fn group_help(name: &str) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    if let Some(sub) = cmd.find_subcommand_mut(name) {
        sub.print_help()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Client commands are a few sequential requests: a single-threaded runtime is enough.
fn block_on(
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(fut).map(|()| ExitCode::SUCCESS)
}

/// Like [`block_on`], for commands whose exit code is their result (a remote program's).
fn block_on_code(
    fut: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(fut)
}
