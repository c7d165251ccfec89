//! `instavm connect VM_ID [-- SSH_ARGS...]`: runs `ssh <vm_id>@<ssh_host> [args]` (spec/cli.md
//! §4). Like the official CLI it adds no options, so a gateway on a non-standard port is set up
//! in `~/.ssh/config` (docs/pty.md shows the lines). `--json` prints the command only.

use crate::config::{self, Overrides};
use crate::output::emit;
use anyhow::Context;
use clap::Args;
use serde_json::json;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The VM to connect to (the SSH user name).
    pub vm_id: String,
    /// Passed to ssh after the destination (put them after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ssh_args: Vec<String>,
    /// Override the InstaVM API key for this command.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Override the InstaVM API base URL for this command.
    #[arg(long)]
    pub base_url: Option<String>,
    /// The SSH gateway host [default: derived from the base URL].
    #[arg(long)]
    pub ssh_host: Option<String>,
    /// Print the ssh command as JSON instead of running it.
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let settings = config::resolve(&Overrides {
        api_key: args.api_key,
        base_url: args.base_url,
        ssh_host: args.ssh_host,
    })?;
    let mut extra = args.ssh_args;
    if extra.first().map(String::as_str) == Some("--") {
        extra.remove(0);
    }
    // The resolved path, as the official CLI prints it (`shutil.which("ssh")`).
    let ssh =
        find_on_path("ssh").context("ssh was not found on PATH: install the OpenSSH client")?;
    let mut command = vec![
        ssh.display().to_string(),
        format!("{}@{}", args.vm_id, settings.ssh_host),
    ];
    command.extend(extra);
    if args.json {
        emit(true, &json!({ "command": command }), &[])?;
        return Ok(ExitCode::SUCCESS);
    }
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .context("running ssh")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(255).clamp(0, 255) as u8
    ))
}

fn find_on_path(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
