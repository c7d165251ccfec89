//! `instavm admin users create EMAIL` and `instavm admin users list` (self-hosting; needs the
//! admin key: `--api-key`, else `INSTAVM_ADMIN_API_KEY`, else the usual key settings).

use super::RuntimeArgs;
use crate::errors::MissingKey;
use crate::output::{display, emit, table, Spinner};
use clap::{Args, Subcommand};
use instavm_sdk::{Client, UserLimits, UserLimitsResponse};

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
    /// Show a user's limits: the operator's overrides and what is in force.
    Limits(UserArg),
    /// Override limits for one user (others keep theirs); `--reset` clears the overrides.
    SetLimits(SetLimitsArgs),
}

#[derive(Args, Debug)]
pub struct UserArg {
    /// The user's id or email.
    pub user: String,
    #[command(flatten)]
    pub rt: RuntimeArgs,
}

/// Each flag sets one override; the names are the `--config` file's keys (docs/quotas.md).
#[derive(Args, Debug)]
pub struct SetLimitsArgs {
    /// The user's id or email.
    pub user: String,
    /// Clear every override first (alone: the server's limits apply again).
    #[arg(long)]
    pub reset: bool,
    #[arg(long, value_name = "N")]
    pub max_active_sessions_per_user: Option<u64>,
    #[arg(long, value_name = "MB")]
    pub max_memory_mb: Option<u32>,
    #[arg(long, value_name = "N")]
    pub max_vcpu_count: Option<u32>,
    #[arg(long, value_name = "SECONDS")]
    pub max_lifetime_seconds: Option<u64>,
    /// Memory summed over the user's live sandboxes.
    #[arg(long, value_name = "MB")]
    pub user_memory_mb: Option<u64>,
    /// vCPUs summed over the user's live sandboxes.
    #[arg(long, value_name = "N")]
    pub user_vcpus: Option<u64>,
    /// Disk summed over the user's live sandboxes.
    #[arg(long, value_name = "MB")]
    pub user_disk_mb: Option<u64>,
    #[command(flatten)]
    pub rt: RuntimeArgs,
}

impl SetLimitsArgs {
    /// The overrides after this command: the current ones (none with `--reset`) with each
    /// given flag put in.
    fn apply(&self, current: UserLimits) -> UserLimits {
        let base = if self.reset {
            UserLimits::default()
        } else {
            current
        };
        UserLimits {
            max_active_sessions_per_user: self
                .max_active_sessions_per_user
                .or(base.max_active_sessions_per_user),
            max_memory_mb: self.max_memory_mb.or(base.max_memory_mb),
            max_vcpu_count: self.max_vcpu_count.or(base.max_vcpu_count),
            max_lifetime_seconds: self.max_lifetime_seconds.or(base.max_lifetime_seconds),
            user_memory_mb: self.user_memory_mb.or(base.user_memory_mb),
            user_vcpus: self.user_vcpus.or(base.user_vcpus),
            user_disk_mb: self.user_disk_mb.or(base.user_disk_mb),
        }
    }
}

/// A user named by id, or by email (looked up in the user list).
async fn user_id(client: &Client, user: &str) -> anyhow::Result<i64> {
    if let Ok(id) = user.parse() {
        return Ok(id);
    }
    let users = client.list_users().await?;
    users
        .iter()
        .find(|u| u.email.eq_ignore_ascii_case(user))
        .map(|u| u.id)
        .ok_or_else(|| anyhow::anyhow!("no user has the id or email {user:?}"))
}

fn limits_lines(l: &UserLimitsResponse) -> Vec<String> {
    let o = &l.overrides;
    let e = &l.effective;
    let row = |name: &str, set: Option<u64>, value: u64| {
        vec![
            name.to_owned(),
            value.to_string(),
            if set.is_some() {
                "override".to_owned()
            } else {
                "server".to_owned()
            },
        ]
    };
    let rows = vec![
        row(
            "max_active_sessions_per_user",
            o.max_active_sessions_per_user,
            e.max_active_sessions_per_user,
        ),
        row(
            "max_memory_mb",
            o.max_memory_mb.map(u64::from),
            e.max_memory_mb.into(),
        ),
        row(
            "max_vcpu_count",
            o.max_vcpu_count.map(u64::from),
            e.max_vcpu_count.into(),
        ),
        row(
            "max_lifetime_seconds",
            o.max_lifetime_seconds,
            e.max_lifetime_seconds,
        ),
        row("user_memory_mb", o.user_memory_mb, e.user_memory_mb),
        row("user_vcpus", o.user_vcpus, e.user_vcpus),
        row("user_disk_mb", o.user_disk_mb, e.user_disk_mb),
    ];
    let mut lines = vec![format!("Limits of user {}", l.user_id)];
    lines.extend(table(&["Limit", "Value", "From"], &rows));
    lines
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
        AdminCommand::Users(UsersCommand::Limits(args)) => {
            let client = admin_client(&args.rt)?;
            let id = user_id(&client, &args.user).await?;
            let limits = client.user_limits(id).await?;
            emit(args.rt.json, &limits, &limits_lines(&limits))
        }
        AdminCommand::Users(UsersCommand::SetLimits(args)) => {
            let client = admin_client(&args.rt)?;
            let id = user_id(&client, &args.user).await?;
            let current = client.user_limits(id).await?.overrides;
            let limits = client.set_user_limits(id, &args.apply(current)).await?;
            emit(args.rt.json, &limits, &limits_lines(&limits))
        }
    }
}
