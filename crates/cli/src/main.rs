//! `instavm`: the command-line client (spec/cli.md) and, as `instavm server`, the platform.

mod commands;

use clap::{Parser, Subcommand};
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
    /// Deploy an app from instavm.yaml (or zero-config detection); `--plan` prints the plan offline.
    Deploy(commands::deploy::DeployArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return ExitCode::SUCCESS;
        }
        Some(Command::Deploy(args)) => commands::deploy::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::from(1)
        }
    }
}
