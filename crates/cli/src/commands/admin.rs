//! `instavm admin users create EMAIL` and `instavm admin users list` (self-hosting; needs the
//! admin key: `--api-key`, else `INSTAVM_ADMIN_API_KEY`, else the usual key settings).

use super::RuntimeArgs;
use crate::errors::MissingKey;
use crate::output::{display, emit, table, Spinner};
use clap::{Args, Subcommand};
use instavm_sdk::Client;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user and print its first API key (shown only once).
    Create(CreateArgs),
    /// List users.
    #[command(alias = "ls")]
    List(RuntimeArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    pub email: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub rt: RuntimeArgs,
}

fn admin_client(rt: &RuntimeArgs) -> anyhow::Result<Client> {
    let mut rt = rt.clone();
    if rt.api_key.is_none() {
        rt.api_key = std::env::var("INSTAVM_ADMIN_API_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty());
    }
    let settings = rt.settings()?;
    let key = settings.api_key.ok_or(MissingKey)?;
    Ok(Client::new(&settings.base_url, Some(key))?)
}

pub async fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Users(UsersCommand::Create(args)) => {
            let client = admin_client(&args.rt)?;
            let spinner = Spinner::start(args.rt.json, "Creating user");
            let created = client
                .create_user(&args.email, args.name.as_deref())
                .await?;
            drop(spinner);
            let lines = vec![
                format!(
                    "Created user {} (id {})",
                    created.user.email, created.user.id
                ),
                format!("API key: {}", created.api_key),
                "Store the key now: it is not shown again.".to_owned(),
            ];
            emit(args.rt.json, &created, &lines)
        }
        AdminCommand::Users(UsersCommand::List(rt)) => {
            let client = admin_client(&rt)?;
            let users = client.list_users().await?;
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.id.to_string(),
                        u.email.clone(),
                        display(u.name.as_ref()),
                        if u.is_admin {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                    ]
                })
                .collect();
            let mut lines = vec![format!("Users ({})", users.len())];
            lines.extend(table(&["ID", "Email", "Name", "Admin"], &rows));
            emit(rt.json, &users, &lines)
        }
    }
}
