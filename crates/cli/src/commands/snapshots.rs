//! Snapshots (spec/cli.md §6.3): `snapshot ls|create|get|rm`. `snapshot build` (from an OCI
//! image) comes with the OCI issue.

use super::RuntimeArgs;
use crate::output::{display, emit, table, Spinner};
use clap::{Args, Subcommand};
use instavm_sdk::{SnapshotRecord, SnapshotVmRequest};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// List snapshots.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Snapshot a VM's disk.
    Create(CreateArgs),
    /// Show one snapshot.
    Get(GetArgs),
    /// Delete a snapshot (VMs booted from it are not affected).
    #[command(alias = "delete")]
    Rm(IdArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(long = "type", value_parser = ["user", "system"])]
    pub snapshot_type: Option<String>,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vm_id: String,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub snapshot_id: String,
    /// Print again every N seconds (default 5) until interrupted.
    #[arg(long, num_args = 0..=1, default_missing_value = "5", value_name = "N")]
    pub watch: Option<u64>,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub snapshot_id: String,
}

fn lines(title: &str, s: &SnapshotRecord) -> Vec<String> {
    vec![
        title.to_owned(),
        format!("  ID: {}", s.id),
        format!("  Name: {}", s.name),
        format!("  Status: {}", s.status.as_str()),
        format!("  Size: {} bytes ({})", s.size_bytes, s.storage),
        format!("  From VM: {}", display(s.vm_id.as_ref())),
    ]
}

pub async fn run(cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Ls(a) => {
            let client = a.rt.client()?;
            let snaps = client.list_snapshots(a.snapshot_type.as_deref()).await?;
            let rows: Vec<Vec<String>> = snaps
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.name.clone(),
                        s.status.as_str().to_owned(),
                        s.size_bytes.to_string(),
                        display(s.vm_id.as_ref()),
                    ]
                })
                .collect();
            let mut out = vec![format!("Snapshots ({})", snaps.len())];
            if snaps.is_empty() {
                out.push("  none".into());
            } else {
                out.extend(table(&["ID", "Name", "Status", "Bytes", "VM"], &rows));
            }
            emit(a.rt.json, &json!({ "snapshots": snaps }), &out)
        }
        SnapshotCommand::Create(a) => {
            let client = a.rt.client()?;
            let spinner = Spinner::start(a.rt.json, "Taking snapshot");
            let req = SnapshotVmRequest {
                name: a.name.clone(),
            };
            let snap = client.snapshot_vm(&a.vm_id, &req, true).await?;
            drop(spinner);
            emit(a.rt.json, &snap, &lines("Snapshot created", &snap))
        }
        SnapshotCommand::Get(a) => {
            let client = a.rt.client()?;
            loop {
                let snap = client.get_snapshot(&a.snapshot_id).await?;
                emit(a.rt.json, &snap, &lines("Snapshot", &snap))?;
                match a.watch {
                    Some(n) => tokio::time::sleep(Duration::from_secs(n.max(1))).await,
                    None => return Ok(()),
                }
            }
        }
        SnapshotCommand::Rm(a) => {
            let client = a.rt.client()?;
            let res = client.delete_snapshot(&a.snapshot_id).await?;
            let mut payload = json!({ "snapshot_id": a.snapshot_id });
            if let (Some(obj), Value::Object(rest)) =
                (payload.as_object_mut(), serde_json::to_value(&res)?)
            {
                obj.extend(rest);
            }
            emit(
                a.rt.json,
                &payload,
                &[format!("Deleted snapshot {}", a.snapshot_id)],
            )
        }
    }
}
