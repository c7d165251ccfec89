//! Volumes (spec/cli.md §6.11): `volume ls|get|create|update|rm`, `volume checkpoint
//! ls|create|rm`, `volume files ls|upload|download|rm`.

use super::RuntimeArgs;
use crate::output::{display, emit, table};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use instavm_sdk::{UpdateVolumeRequest, VolumeRecord};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// List volumes.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show one volume.
    Get(GetArgs),
    /// Create a volume.
    Create(CreateArgs),
    /// Rename a volume or change its quota.
    Update(UpdateArgs),
    /// Delete a volume and its checkpoints.
    #[command(alias = "delete")]
    Rm(IdArgs),
    /// Checkpoints: read-only copies of a volume.
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
    /// Files of a volume.
    Files {
        #[command(subcommand)]
        command: FilesCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum CheckpointCommand {
    #[command(alias = "list")]
    Ls(IdArgs),
    Create(CheckpointCreateArgs),
    #[command(alias = "delete")]
    Rm(CheckpointIdArgs),
}

#[derive(Subcommand, Debug)]
pub enum FilesCommand {
    #[command(alias = "list")]
    Ls(FilesListArgs),
    Upload(UploadArgs),
    Download(DownloadArgs),
    #[command(alias = "delete")]
    Rm(RemotePathArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    /// Read the used sizes anew.
    #[arg(long)]
    pub refresh: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub volume_id: String,
    #[arg(long)]
    pub refresh: bool,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub name: String,
    /// Bytes, or a number with b/kb/mb/gb/tb (powers of 1024, decimals allowed): `5gb`.
    #[arg(long)]
    pub quota: String,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub volume_id: String,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub quota: Option<String>,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub volume_id: String,
}

#[derive(Args, Debug)]
pub struct CheckpointCreateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub volume_id: String,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct CheckpointIdArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub volume_id: String,
    pub checkpoint_id: String,
}

#[derive(Args, Debug)]
pub struct FilesListArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub volume_id: String,
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[arg(long)]
    pub no_recursive: bool,
}

#[derive(Args, Debug)]
pub struct UploadArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub volume_id: String,
    pub local_path: PathBuf,
    /// Destination inside the volume (default: the local file's name).
    #[arg(long)]
    pub path: Option<String>,
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Args, Debug)]
pub struct DownloadArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub volume_id: String,
    pub remote_path: String,
    /// Local file (default: the remote file's name).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RemotePathArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub volume_id: String,
    pub remote_path: String,
}

/// A size as the official CLI reads it: plain bytes, or a number with `b`, `kb`, `mb`, `gb`
/// or `tb` (case-insensitive, powers of 1024, decimals allowed, the result truncated).
pub fn parse_size(raw: &str) -> anyhow::Result<u64> {
    let s = raw.trim().to_ascii_lowercase();
    if s.is_empty() {
        bail!("size is required");
    }
    const UNITS: [(&str, u64); 5] = [
        ("tb", 1 << 40),
        ("gb", 1 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("b", 1),
    ];
    for (suffix, mult) in UNITS {
        if let Some(num) = s.strip_suffix(suffix).filter(|n| !n.is_empty()) {
            let n: f64 = num
                .trim()
                .parse()
                .with_context(|| format!("invalid size {raw:?}"))?;
            if !n.is_finite() || n < 0.0 {
                bail!("invalid size {raw:?}");
            }
            return Ok((n * mult as f64) as u64);
        }
    }
    s.parse()
        .with_context(|| format!("invalid size {raw:?}: use bytes or a number with b/kb/mb/gb/tb"))
}

fn human(bytes: u64) -> String {
    let mut amount = bytes as f64;
    for unit in ["B", "KB", "MB", "GB"] {
        if amount < 1024.0 {
            return if unit == "B" {
                format!("{bytes}B")
            } else {
                format!("{amount:.1}{unit}")
            };
        }
        amount /= 1024.0;
    }
    format!("{amount:.1}TB")
}

fn volume_lines(title: &str, v: &VolumeRecord) -> Vec<String> {
    vec![
        title.to_owned(),
        format!("  ID: {}", v.id),
        format!("  Name: {}", v.name),
        format!(
            "  Used: {} of {}",
            human(v.used_bytes),
            human(v.quota_bytes)
        ),
        format!("  Status: {}", v.status),
    ]
}

/// `{key: id, ...response}` (the official CLI's shape for deletes).
fn merged(key: &str, id: &str, rest: &impl Serialize) -> anyhow::Result<Value> {
    let mut payload = json!({ key: id });
    if let (Some(obj), Value::Object(more)) = (payload.as_object_mut(), serde_json::to_value(rest)?)
    {
        for (k, v) in more {
            obj.entry(k).or_insert(v);
        }
    }
    Ok(payload)
}

pub async fn run(cmd: VolumeCommand) -> anyhow::Result<()> {
    match cmd {
        VolumeCommand::Ls(a) => {
            let vols = a.rt.client()?.list_volumes(a.refresh).await?;
            let rows: Vec<Vec<String>> = vols
                .iter()
                .map(|v| {
                    vec![
                        v.id.clone(),
                        v.name.clone(),
                        human(v.used_bytes),
                        human(v.quota_bytes),
                        v.status.clone(),
                    ]
                })
                .collect();
            let mut out = vec![format!("Volumes ({})", vols.len())];
            if vols.is_empty() {
                out.push("  none".into());
            } else {
                out.extend(table(&["ID", "Name", "Used", "Quota", "Status"], &rows));
            }
            emit(a.rt.json, &json!({ "volumes": vols }), &out)
        }
        VolumeCommand::Get(a) => {
            let v = a.rt.client()?.get_volume(&a.volume_id, a.refresh).await?;
            emit(a.rt.json, &v, &volume_lines("Volume", &v))
        }
        VolumeCommand::Create(a) => {
            let quota = parse_size(&a.quota)?;
            let v = a.rt.client()?.create_volume(&a.name, quota).await?;
            emit(a.rt.json, &v, &volume_lines("Volume created", &v))
        }
        VolumeCommand::Update(a) => {
            let quota_bytes = a.quota.as_deref().map(parse_size).transpose()?;
            if a.name.is_none() && quota_bytes.is_none() {
                bail!("Provide --name and/or --quota");
            }
            let req = UpdateVolumeRequest {
                name: a.name.clone(),
                quota_bytes,
            };
            let v = a.rt.client()?.update_volume(&a.volume_id, &req).await?;
            emit(a.rt.json, &v, &volume_lines("Volume updated", &v))
        }
        VolumeCommand::Rm(a) => {
            let res = a.rt.client()?.delete_volume(&a.volume_id).await?;
            let payload = merged("volume_id", &a.volume_id, &res)?;
            emit(a.rt.json, &payload, &[format!("Deleted {}", a.volume_id)])
        }
        VolumeCommand::Checkpoint { command } => checkpoint(command).await,
        VolumeCommand::Files { command } => files(command).await,
    }
}

async fn checkpoint(cmd: CheckpointCommand) -> anyhow::Result<()> {
    match cmd {
        CheckpointCommand::Ls(a) => {
            let list = a.rt.client()?.list_checkpoints(&a.volume_id).await?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    vec![
                        c.id.clone(),
                        display(c.name.as_ref()),
                        c.status.clone(),
                        c.created_at.to_rfc3339(),
                    ]
                })
                .collect();
            let mut out = vec![format!("Checkpoints ({})", list.len())];
            if list.is_empty() {
                out.push("  none".into());
            } else {
                out.extend(table(&["ID", "Name", "Status", "Created"], &rows));
            }
            emit(a.rt.json, &json!({ "checkpoints": list }), &out)
        }
        CheckpointCommand::Create(a) => {
            let c =
                a.rt.client()?
                    .create_checkpoint(&a.volume_id, a.name.as_deref())
                    .await?;
            emit(a.rt.json, &c, &[format!("Created checkpoint {}", c.id)])
        }
        CheckpointCommand::Rm(a) => {
            let res =
                a.rt.client()?
                    .delete_checkpoint(&a.volume_id, &a.checkpoint_id)
                    .await?;
            let payload = merged("checkpoint_id", &a.checkpoint_id, &res)?;
            emit(
                a.rt.json,
                &payload,
                &[format!("Deleted checkpoint {}", a.checkpoint_id)],
            )
        }
    }
}

fn basename(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.to_owned())
}

async fn files(cmd: FilesCommand) -> anyhow::Result<()> {
    match cmd {
        FilesCommand::Ls(a) => {
            let list =
                a.rt.client()?
                    .list_volume_files(&a.volume_id, &a.prefix, !a.no_recursive, a.limit)
                    .await?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|f| vec![f.path.clone(), human(f.size)])
                .collect();
            let mut out = vec![format!("Files ({})", list.len())];
            if list.is_empty() {
                out.push("  none".into());
            } else {
                out.extend(table(&["Path", "Size"], &rows));
            }
            emit(a.rt.json, &json!({ "files": list }), &out)
        }
        FilesCommand::Upload(a) => {
            let remote = match &a.path {
                Some(p) => p.clone(),
                None => basename(&a.local_path.to_string_lossy()),
            };
            let res =
                a.rt.client()?
                    .upload_volume_file(&a.volume_id, &a.local_path, &remote, a.overwrite)
                    .await?;
            emit(
                a.rt.json,
                &res,
                &[format!("Uploaded {} -> {remote}", a.local_path.display())],
            )
        }
        FilesCommand::Download(a) => {
            let (res, bytes) =
                a.rt.client()?
                    .download_volume_file(&a.volume_id, &a.remote_path)
                    .await?;
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(basename(&a.remote_path)));
            tokio::fs::write(&out, &bytes)
                .await
                .with_context(|| format!("writing {}", out.display()))?;
            let payload = json!({
                "path": res.path,
                "filename": res.filename,
                "size": res.size,
                "local_path": out.display().to_string(),
            });
            emit(
                a.rt.json,
                &payload,
                &[format!("Downloaded {} -> {}", a.remote_path, out.display())],
            )
        }
        FilesCommand::Rm(a) => {
            let res =
                a.rt.client()?
                    .delete_volume_file(&a.volume_id, &a.remote_path)
                    .await?;
            let payload = merged("path", &a.remote_path, &res)?;
            emit(a.rt.json, &payload, &[format!("Deleted {}", a.remote_path)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_as_the_official_cli_reads_them() {
        assert_eq!(parse_size("5gb").unwrap(), 5 << 30);
        assert_eq!(parse_size(" 1.5MB ").unwrap(), 3 << 19);
        assert_eq!(parse_size("2tb").unwrap(), 2 << 40);
        assert_eq!(parse_size("10kb").unwrap(), 10240);
        assert_eq!(parse_size("7b").unwrap(), 7);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert_eq!(parse_size("0.5kb").unwrap(), 512);
        assert!(parse_size("").is_err());
        assert!(parse_size("gb").is_err());
        assert!(parse_size("5 GiB").is_err());
        assert!(parse_size("-1gb").is_err());
        assert!(parse_size("1.5").is_err());
    }
}
