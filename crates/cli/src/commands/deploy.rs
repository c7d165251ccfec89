//! `instavm deploy [PATH] [-f FILE] --plan [--json]` (spec/manifest.md §7).

use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct DeployArgs {
    /// Project directory.
    #[arg(default_value = ".")]
    pub path: String,
    /// Print the resolved plan and exit; never contacts a server.
    #[arg(long)]
    pub plan: bool,
    /// One line of JSON.
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(_args: DeployArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("deploy is not implemented yet")
}
