//! `instavm connect VM_ID [-- SSH_ARGS...]`: runs `ssh <vm_id>@<ssh_host> [args]` (spec/cli.md
//! §4). Like the official CLI it adds no options, so a gateway on a non-standard port is set up
//! in `~/.ssh/config` (docs/pty.md shows the lines). `--json` prints the command only.

use crate::commands::RuntimeSshArgs;
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
    #[command(flatten)]
    pub rt: RuntimeSshArgs,
}

pub fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let settings = args.rt.settings()?;
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
    if args.rt.json {
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
