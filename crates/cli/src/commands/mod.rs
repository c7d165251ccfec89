//! One module per command group of spec/cli.md.

pub mod admin;
pub mod auth;
pub mod billing;
pub mod connect;
pub mod cookbook;
pub mod deploy;
pub mod egress;
pub mod events;
pub mod exec;
pub mod image;
pub mod pty;
pub mod server;
pub mod server_billing;
pub mod server_shares;
pub mod server_vault;
pub mod shares;
pub mod snapshots;
pub mod tape;
pub mod vault;
pub mod vms;
pub mod volumes;
pub mod webhooks;
pub mod whoami;
pub mod workloads;

use crate::config::{self, Overrides, Settings};
use crate::errors::MissingKey;
use clap::Args;
use instavm_sdk::Client;

/// `--api-key`, `--base-url` and `-j/--json`, on every API-backed command.
#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Override the InstaVM API key for this command.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Override the InstaVM API base URL for this command.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Emit JSON output (one line).
    #[arg(short = 'j', long)]
    pub json: bool,
}

impl RuntimeArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        config::resolve(&Overrides {
            api_key: self.api_key.clone(),
            base_url: self.base_url.clone(),
            ssh_host: None,
        })
    }

    /// A client for the resolved settings; fails before any request when no key is set.
    pub fn client(&self) -> anyhow::Result<Client> {
        let settings = self.settings()?;
        let key = settings.api_key.ok_or(MissingKey)?;
        Ok(Client::new(&settings.base_url, Some(key))?)
    }
}

/// `--api-key`, `--base-url`, `--ssh-host` and `-j/--json` (spec/cli.md: ‹rt+ssh›).
#[derive(Args, Debug, Clone)]
pub struct RuntimeSshArgs {
    /// Override the InstaVM API key for this command.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Override the InstaVM API base URL for this command.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Override the SSH gateway host for this command [default: derived from the base URL].
    #[arg(long)]
    pub ssh_host: Option<String>,
    /// Emit JSON output (one line).
    #[arg(short = 'j', long)]
    pub json: bool,
}

impl RuntimeSshArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        config::resolve(&Overrides {
            api_key: self.api_key.clone(),
            base_url: self.base_url.clone(),
            ssh_host: self.ssh_host.clone(),
        })
    }
}
