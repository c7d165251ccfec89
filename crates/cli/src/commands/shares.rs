//! Shares (spec/cli.md §6.6): `share create|set-public|set-private|revoke`.

use super::RuntimeArgs;
use crate::output::emit;
use clap::{Args, Subcommand};
use instavm_sdk::{CreateShareRequest, ShareRecord, UpdateShareRequest};
use serde_json::Value;

#[derive(Subcommand, Debug)]
pub enum ShareCommand {
    /// Share a VM's port (the same share again for the same VM and port).
    Create(CreateArgs),
    /// Let anyone with the URL in.
    SetPublic(IdArgs),
    /// Only the owner's API key or the access link gets in.
    SetPrivate(IdArgs),
    /// End a share; its URL answers 404 from then on.
    Revoke(IdArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vm_id: String,
    pub port: i64,
    /// Create the share as public.
    #[arg(long)]
    pub public: bool,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub share_id: String,
}

fn visibility(public: bool) -> &'static str {
    if public {
        "public"
    } else {
        "private"
    }
}

pub async fn run(cmd: ShareCommand) -> anyhow::Result<()> {
    match cmd {
        ShareCommand::Create(a) => {
            let client = a.rt.client()?;
            let req = CreateShareRequest {
                port: Some(a.port),
                is_public: Some(a.public),
                session_id: None,
                vm_id: Some(a.vm_id),
            };
            let s = client.create_share(&req).await?;
            let mut lines = vec![
                format!("Share: {}", s.share_id),
                format!("URL: {}", s.url),
                format!("Port: {}", s.port),
                format!("Visibility: {}", visibility(s.is_public)),
            ];
            if !s.is_public {
                lines.push(format!("Access link: {}", s.access_url));
            }
            emit(a.rt.json, &s, &lines)
        }
        ShareCommand::SetPublic(a) => set_visibility(a, true).await,
        ShareCommand::SetPrivate(a) => set_visibility(a, false).await,
        ShareCommand::Revoke(a) => {
            let line = format!("Revoked share {}", a.share_id);
            let req = UpdateShareRequest {
                is_public: None,
                revoke: Some(true),
            };
            update(a, req, line).await
        }
    }
}

async fn set_visibility(a: IdArgs, public: bool) -> anyhow::Result<()> {
    let line = format!("Updated share {} to {}", a.share_id, visibility(public));
    let req = UpdateShareRequest {
        is_public: Some(public),
        revoke: None,
    };
    update(a, req, line).await
}

async fn update(a: IdArgs, req: UpdateShareRequest, line: String) -> anyhow::Result<()> {
    let client = a.rt.client()?;
    let s: ShareRecord = client.update_share(&a.share_id, &req).await?;
    // `{share_id, ...response}`, like the official CLI.
    let mut payload = serde_json::to_value(&s)?;
    if let Value::Object(map) = &mut payload {
        map.insert("share_id".into(), Value::String(a.share_id.clone()));
    }
    emit(a.rt.json, &payload, &[line])
}
