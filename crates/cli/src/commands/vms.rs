//! VM lifecycle (spec/cli.md §6.2): `create`, `ls`, `rm`, `clone`, `vm update|suspend|resume`.

use super::RuntimeArgs;
use crate::output::{display, emit, table, Spinner};
use anyhow::bail;
use clap::{Args, Subcommand};
use instavm_sdk::{CloneVmRequest, CreateVmRequest, UpdateVmRequest, VmRecord, VolumeMountSpec};
use serde_json::{json, Value};
use std::time::Duration;

const VARIANTS: [&str; 3] = ["standard", "computer-use", "nix-dev"];

/// `--x` / `--no-x`: unset when neither is given.
fn pair(yes: bool, no: bool) -> Option<bool> {
    (yes || no).then_some(yes)
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(long = "type", default_value = "standard", value_parser = VARIANTS)]
    pub vm_type: String,
    /// Overrides --type.
    #[arg(long, value_parser = VARIANTS)]
    pub image_variant: Option<String>,
    /// VM lifetime in seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    #[arg(long)]
    pub memory: Option<u32>,
    #[arg(long)]
    pub vcpu: Option<u32>,
    /// Boot from this snapshot.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Attach to (or respawn a VM for) this session.
    #[arg(long)]
    pub session: Option<String>,
    /// `<volume_id>:<mount_path>[:rw|ro[:checkpoint_id]]` (repeatable).
    #[arg(long = "volume")]
    pub volumes: Vec<String>,
    #[arg(long = "vault")]
    pub vaults: Vec<String>,
    #[arg(long, conflicts_with = "no_auto_suspend")]
    pub auto_suspend: bool,
    #[arg(long)]
    pub no_auto_suspend: bool,
    #[arg(long, conflicts_with = "no_auto_resume")]
    pub auto_resume: bool,
    #[arg(long)]
    pub no_auto_resume: bool,
}

fn volume(spec: &str) -> anyhow::Result<VolumeMountSpec> {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() < 2 || parts.len() > 4 || parts[0].is_empty() || parts[1].is_empty() {
        bail!("invalid --volume {spec:?}: use <volume_id>:<mount_path>[:rw|ro[:checkpoint_id]]");
    }
    let mode = parts.get(2).copied().unwrap_or("rw");
    let checkpoint = match (mode, parts.get(3)) {
        ("rw", None) => None,
        ("ro", None) => Some("latest".to_owned()),
        ("ro", Some(c)) => Some((*c).to_owned()),
        ("rw", Some(_)) => bail!("invalid --volume {spec:?}: a checkpoint needs mode ro"),
        _ => bail!("invalid --volume {spec:?}: mode must be rw or ro"),
    };
    Ok(VolumeMountSpec {
        volume_id: Some(parts[0].to_owned()),
        mount_path: Some(parts[1].to_owned()),
        mode: Some(mode.to_owned()),
        checkpoint_id: checkpoint,
        ..VolumeMountSpec::default()
    })
}

fn dedup(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
    out
}

fn vm_lines(title: &str, vm: &VmRecord) -> Vec<String> {
    vec![
        title.to_owned(),
        format!("  VM ID: {}", vm.vm_id),
        format!("  Session: {}", vm.session_id),
        format!("  Status: {}", vm.status.as_str()),
        format!("  Memory: {} MB, vCPUs: {}", vm.memory_mb, vm.vcpu_count),
        format!("  Expires: {}", vm.expires_at.to_rfc3339()),
        format!("  Snapshot: {}", display(vm.snapshot_id.as_ref())),
    ]
}

pub async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let client = args.rt.client()?;
    let variant = args.image_variant.clone().unwrap_or(args.vm_type.clone());
    let volumes = args
        .volumes
        .iter()
        .map(|v| volume(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let req = CreateVmRequest {
        memory_mb: args.memory,
        vcpu_count: args.vcpu,
        vm_lifetime_seconds: args.timeout,
        image_variant: (variant != "standard").then_some(variant),
        snapshot_id: args.snapshot.clone(),
        session_id: args.session.clone(),
        volumes: (!volumes.is_empty()).then_some(volumes),
        vault_ids: (!args.vaults.is_empty()).then(|| dedup(&args.vaults)),
        auto_suspend: pair(args.auto_suspend, args.no_auto_suspend),
        auto_resume: pair(args.auto_resume, args.no_auto_resume),
        ..CreateVmRequest::default()
    };
    let spinner = Spinner::start(args.rt.json, "Creating VM");
    let vm = client.create_vm(&req, true).await?;
    drop(spinner);
    emit(args.rt.json, &vm, &vm_lines("VM created", &vm))
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    /// Every record, ended ones included.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print again every N seconds (default 5) until interrupted.
    #[arg(long, num_args = 0..=1, default_missing_value = "5", value_name = "N")]
    pub watch: Option<u64>,
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.rt.client()?;
    loop {
        let vms = if args.all {
            client.list_all_vms().await?
        } else {
            // As the official CLI: keep what is running.
            let mut vms = client.list_vms().await?;
            vms.retain(|v| matches!(v.status.as_str(), "active" | "running" | "creating"));
            vms
        };
        let rows: Vec<Vec<String>> = vms
            .iter()
            .map(|v| {
                vec![
                    v.vm_id.clone(),
                    v.status.as_str().to_owned(),
                    v.session_id.clone(),
                    format!("{}", v.memory_mb),
                    v.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                ]
            })
            .collect();
        let mut lines = vec![format!("VMs ({})", vms.len())];
        if vms.is_empty() {
            lines.push("  none".into());
        } else {
            lines.extend(table(
                &["VM ID", "Status", "Session", "MB", "Created"],
                &rows,
            ));
        }
        emit(args.rt.json, &json!({ "vms": vms }), &lines)?;
        match args.watch {
            Some(n) => tokio::time::sleep(Duration::from_secs(n.max(1))).await,
            None => return Ok(()),
        }
    }
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(required = true)]
    pub vm_ids: Vec<String>,
}

pub async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let client = args.rt.client()?;
    let mut results = Vec::new();
    let mut lines = Vec::new();
    for id in &args.vm_ids {
        let vm = client.delete_vm(id).await?;
        lines.push(format!("Deleted {id} ({})", vm.status.as_str()));
        let mut entry = json!({ "vm_id": id });
        if let (Some(obj), Value::Object(rest)) =
            (entry.as_object_mut(), serde_json::to_value(&vm)?)
        {
            obj.extend(rest);
        }
        results.push(entry);
    }
    emit(args.rt.json, &json!({ "results": results }), &lines)
}

#[derive(Args, Debug)]
pub struct CloneArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vm_id: String,
    /// Name of the snapshot the clone is made from.
    #[arg(long)]
    pub name: Option<String>,
}

pub async fn clone(args: CloneArgs) -> anyhow::Result<()> {
    let client = args.rt.client()?;
    let spinner = Spinner::start(args.rt.json, "Cloning VM");
    let req = CloneVmRequest {
        snapshot_name: args.name.clone(),
    };
    let vm = client.clone_vm(&args.vm_id, &req, true).await?;
    drop(spinner);
    emit(args.rt.json, &vm, &vm_lines("VM cloned", &vm))
}

#[derive(Subcommand, Debug)]
pub enum VmCommand {
    /// Change memory (live) and the VM's flags.
    Update(UpdateArgs),
    /// Snapshot the disk and stop the VM, freeing its resources.
    Suspend(IdArgs),
    /// Boot a suspended VM again (it gets a new VM ID, same session).
    Resume(ResumeArgs),
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vm_id: String,
    #[arg(long)]
    pub memory_mb: Option<u32>,
    #[arg(long, conflicts_with = "no_snapshot_on_terminate")]
    pub snapshot_on_terminate: bool,
    #[arg(long)]
    pub no_snapshot_on_terminate: bool,
    #[arg(long)]
    pub snapshot_name: Option<String>,
    #[arg(long = "vault")]
    pub vaults: Vec<String>,
    #[arg(long, conflicts_with = "no_auto_suspend")]
    pub auto_suspend: bool,
    #[arg(long)]
    pub no_auto_suspend: bool,
    #[arg(long, conflicts_with = "no_auto_resume")]
    pub auto_resume: bool,
    #[arg(long)]
    pub no_auto_resume: bool,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vm_id: String,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub vm_id: String,
    /// Answer once the resume is dispatched.
    #[arg(long)]
    pub no_wait: bool,
}

pub async fn run(cmd: VmCommand) -> anyhow::Result<()> {
    match cmd {
        VmCommand::Update(a) => {
            let req = UpdateVmRequest {
                memory_mb: a.memory_mb,
                snapshot_on_terminate: pair(a.snapshot_on_terminate, a.no_snapshot_on_terminate),
                snapshot_name: a.snapshot_name.clone(),
                vault_ids: (!a.vaults.is_empty()).then(|| dedup(&a.vaults)),
                auto_suspend: pair(a.auto_suspend, a.no_auto_suspend),
                auto_resume: pair(a.auto_resume, a.no_auto_resume),
            };
            if req == UpdateVmRequest::default() {
                bail!("nothing to update: give at least one of --memory-mb, --snapshot-on-terminate, --snapshot-name, --vault, --auto-suspend, --auto-resume (or their --no- forms)");
            }
            let client = a.rt.client()?;
            let vm = client.update_vm(&a.vm_id, &req).await?;
            emit(a.rt.json, &vm, &vm_lines("VM updated", &vm))
        }
        VmCommand::Suspend(a) => {
            let client = a.rt.client()?;
            let spinner = Spinner::start(a.rt.json, "Suspending VM");
            let vm = client.suspend_vm(&a.vm_id).await?;
            drop(spinner);
            emit(a.rt.json, &vm, &vm_lines("VM suspended", &vm))
        }
        VmCommand::Resume(a) => {
            let client = a.rt.client()?;
            let spinner = Spinner::start(a.rt.json, "Resuming VM");
            let vm = client.resume_vm(&a.vm_id, !a.no_wait).await?;
            drop(spinner);
            emit(a.rt.json, &vm, &vm_lines("VM resumed (new VM ID)", &vm))
        }
    }
}
