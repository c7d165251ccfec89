//! VM rules: create (fresh, from a snapshot, for an existing session), update, delete, clone,
//! stage-env, expiry and keeping VM records true after a restart; suspend and resume are in
//! `vms/suspend.rs`.
//!
//! A VM runs as one runtime sandbox and is bound to one session. Suspend keeps the disk in a
//! snapshot and stops the sandbox; resume boots a new VM (a new `vm_id`, as the spec requires)
//! from that snapshot and binds the same session to it.

use crate::admission::{self, Reservation, Resources};
use crate::error::{ApiError, ApiResult};
use crate::sessions::{self, reason};
use crate::snapshots;
use crate::state::AppState;
use crate::volumes::{self, PlannedMount};
use chrono::{DateTime, Utc};
use instavm_api::{Metadata, SessionState, SnapshotState, VmRecord, VmState};
use instavm_runtime::{RuntimeError, SandboxId, SandboxSpec, SnapshotId};
use instavm_store::{SessionRecord, UsageCounters, VmRow};
use rand::RngCore;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

/// The one answer for "unknown" and "not yours".
pub const NOT_FOUND: &str = "VM not found";

/// Most records one listing returns (newest first).
pub const MAX_LISTED: usize = 1000;

/// When the server must act at a VM's expiry (auto_suspend, snapshot_on_terminate), the runtime
/// is told to stop the sandbox this much later, so the server's sweep gets there first.
const EXPIRY_GRACE: Duration = Duration::from_secs(60);

/// Recorded for VMs whose create a restart interrupted.
pub const INTERRUPTED: &str = "interrupted by a server restart";

mod suspend;

use suspend::ResumeGuard;
pub use suspend::{resume, suspend, wake_session};

pub fn new_vm_id() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("vm_{}", hex::encode(bytes))
}

/// What a new VM is made of, after the request was validated.
pub struct NewVm {
    pub user_id: i64,
    pub spec: SandboxSpec,
    pub metadata: Metadata,
    pub snapshot_id: Option<String>,
    pub auto_suspend: bool,
    pub auto_resume: bool,
    pub snapshot_on_terminate: bool,
    pub snapshot_name: Option<String>,
    pub vault_ids: Vec<String>,
    /// Bind this existing (ended) session instead of starting a new one.
    pub session_id: Option<String>,
    /// Volumes to mount once the sandbox is up (checked already).
    pub mounts: Vec<PlannedMount>,
    /// `egress_policy` of the create: stored as the VM's own policy before it boots.
    pub egress_policy: Option<instavm_runtime::EgressPolicy>,
}

/// The caller's VM with this id.
pub async fn owned(state: &AppState, user_id: i64, vm_id: &str) -> ApiResult<VmRow> {
    if !vm_id.starts_with("vm_") {
        return Err(ApiError::NotFound(NOT_FOUND.into()));
    }
    let id = vm_id.to_owned();
    state
        .db(move |s| s.get_user_vm(user_id, &id))
        .await?
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))
}

pub async fn list(state: &AppState, user_id: i64, running_only: bool) -> ApiResult<Vec<VmRecord>> {
    let rows = state
        .db(move |s| s.list_user_vms(user_id, MAX_LISTED, running_only))
        .await?;
    Ok(rows.into_iter().map(|r| r.record).collect())
}

fn needs_grace(r: &VmRecord) -> bool {
    r.auto_suspend || r.snapshot_on_terminate
}

fn not_in_state(r: &VmRecord, wanted: &str) -> ApiError {
    ApiError::Conflict(format!(
        "VM {} is {}; it must be {wanted}",
        r.vm_id,
        r.status.as_str()
    ))
}

fn sandbox_of(row: &VmRow) -> ApiResult<SandboxId> {
    row.sandbox_id
        .as_deref()
        .and_then(SandboxId::parse)
        .ok_or_else(|| ApiError::Internal(format!("VM {} has no sandbox", row.record.vm_id)))
}

/// Record a VM in `creating`, then boot it in a task of its own (a client that hangs up does
/// not leave a half-made VM). With `wait`, answers once it is `active` (or the error);
/// otherwise at once.
pub async fn create(state: &AppState, mut new: NewVm, wait: bool) -> ApiResult<VmRecord> {
    let limits = state.limits_for(new.user_id).await?;
    let reservation = admission::admit(
        state,
        new.user_id,
        Resources::of_spec(&new.spec),
        &limits.admission,
    )
    .await?;
    let now = Utc::now();
    let lifetime = new.spec.lifetime;
    let rebind = new.session_id.is_some();
    let vm_id = new_vm_id();
    // Placeholders (never values) for the credentials of its vaults.
    crate::vault::attach_env(state, &vm_id, &new.vault_ids, &mut new.spec.env).await?;
    let row = VmRow {
        user_id: new.user_id,
        sandbox_id: None,
        env: new.spec.env.clone(),
        record: VmRecord {
            id: vm_id.clone(),
            vm_id,
            session_id: new
                .session_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            status: VmState::Creating,
            created_at: now,
            expires_at: now + chrono::Duration::from_std(lifetime).unwrap_or_default(),
            ended_at: None,
            end_reason: None,
            memory_mb: new.spec.memory_mb,
            vcpu_count: new.spec.vcpu_count,
            vm_lifetime_seconds: lifetime.as_secs(),
            metadata: new.metadata,
            image_variant: "standard".into(),
            snapshot_id: new.snapshot_id,
            auto_suspend: new.auto_suspend,
            auto_resume: new.auto_resume,
            snapshot_on_terminate: new.snapshot_on_terminate,
            snapshot_name: new.snapshot_name,
            vault_ids: new.vault_ids,
            ssh_host: None,
            suspend_snapshot_id: None,
            resumed_vm_id: None,
        },
    };
    if let Some(p) = &new.egress_policy {
        crate::egress::set_initial(state, &row.record.vm_id, row.user_id, p).await?;
    }
    let boot = Boot {
        row,
        spec: new.spec,
        rebind,
        replaces: None,
        mounts: new.mounts,
        reservation,
    };
    start_boot(state, boot, wait).await
}

type BootTask = tokio::task::JoinHandle<ApiResult<VmRecord>>;

/// What a boot needs: the `creating` record, the sandbox to start, whether it takes over an
/// existing session (and which records it replaces), its volumes, and its admission place
/// (held until the VM's session is stored).
pub(crate) struct Boot {
    pub row: VmRow,
    pub spec: SandboxSpec,
    pub rebind: bool,
    pub replaces: Option<VmRow>,
    pub mounts: Vec<PlannedMount>,
    pub reservation: Reservation,
}

/// Write the `creating` record, then boot in a task of its own.
async fn spawn_boot(state: &AppState, b: Boot) -> ApiResult<(VmRecord, BootTask)> {
    {
        let row = b.row.clone();
        state.db(move |s| s.save_vm(&row)).await?;
    }
    let answer = b.row.record.clone();
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let _admitted = b.reservation;
        boot(&task_state, b.row, b.spec, b.rebind, b.replaces, b.mounts).await
    });
    Ok((answer, task))
}

async fn start_boot(state: &AppState, b: Boot, wait: bool) -> ApiResult<VmRecord> {
    let (answer, task) = spawn_boot(state, b).await?;
    if !wait {
        return Ok(answer);
    }
    task.await.map_err(ApiError::internal)?
}

/// Start the sandbox and record the VM as active with its session, or as failed.
async fn boot(
    state: &AppState,
    mut row: VmRow,
    mut spec: SandboxSpec,
    rebind: bool,
    replaces: Option<VmRow>,
    mounts: Vec<PlannedMount>,
) -> ApiResult<VmRecord> {
    if needs_grace(&row.record) {
        spec.lifetime += EXPIRY_GRACE;
    }
    let started = std::time::Instant::now();
    let from_snapshot = spec.from_snapshot.is_some();
    let sandbox = match state.runtime().create(spec).await {
        Ok(sandbox) => {
            state
                .metrics()
                .observe_sandbox_start(started.elapsed(), from_snapshot);
            sandbox
        }
        Err(err) => {
            let err = ApiError::from(err);
            fail(state, row, &err).await;
            return Err(err);
        }
    };
    // The egress policy is in force before anyone can use the sandbox.
    if let Err(err) = crate::egress::apply_new(state, &row, &sandbox.id, replaces.as_ref()).await {
        if let Err(e) = state.runtime().destroy(&sandbox.id).await {
            tracing::warn!(error = %e, "destroying the sandbox of a failed VM create");
        }
        fail(state, row, &err).await;
        return Err(err);
    }
    // A VM attached to vaults trusts the platform CA before anyone can use it.
    if let Err(err) = crate::vault::install_ca(state, &sandbox.id, &row.record.vault_ids).await {
        if let Err(e) = state.runtime().destroy(&sandbox.id).await {
            tracing::warn!(error = %e, "destroying the sandbox of a VM whose vault CA failed");
        }
        fail(state, row, &err).await;
        return Err(err);
    }
    if let Err(err) = mount_all(state, &row.record.vm_id, &sandbox.id, &mounts).await {
        if let Err(e) = state.runtime().destroy(&sandbox.id).await {
            tracing::warn!(error = %e, "destroying the sandbox of a VM whose volumes failed");
        }
        fail(state, row, &err).await;
        return Err(err);
    }
    let now = Utc::now();
    row.sandbox_id = Some(sandbox.id.to_string());
    row.record.status = VmState::Active;
    row.record.expires_at = now + chrono::Duration::seconds(row.record.vm_lifetime_seconds as i64);
    let stored = {
        let row = row.clone();
        let session_expires_at = sandbox.expires_at;
        state
            .db(move |s| {
                if rebind {
                    let others: Vec<&VmRow> = replaces.iter().collect();
                    s.rebind_session(&row, session_expires_at, &others)
                } else {
                    s.insert_vm_session(&row, &session_for(&row, session_expires_at))
                }
            })
            .await
    };
    if let Err(err) = stored {
        if let Err(e) = state.runtime().destroy(&sandbox.id).await {
            tracing::warn!(error = %e, "destroying the sandbox of a failed VM create");
        }
        row.sandbox_id = None;
        fail(state, row, &err).await;
        return Err(err);
    }
    tracing::info!(
        vm_id = %row.record.vm_id,
        session = %row.record.session_id,
        sandbox = %sandbox.id,
        from_snapshot = row.record.snapshot_id.as_deref().unwrap_or("-"),
        ms = started.elapsed().as_millis() as u64,
        "VM active"
    );
    Ok(row.record)
}

/// Create-time volumes go in by the live-mount path once the sandbox is up (a warm sandbox
/// too); the first failure undoes the others' records and fails the create.
async fn mount_all(
    state: &AppState,
    vm_id: &str,
    sandbox: &SandboxId,
    mounts: &[PlannedMount],
) -> ApiResult<()> {
    for (i, p) in mounts.iter().enumerate() {
        if let Err(err) = volumes::attach(state, vm_id, sandbox, p).await {
            for done in &mounts[..i] {
                let (vm, path) = (vm_id.to_owned(), done.mount_path.clone());
                let _ = state.db(move |s| s.delete_mount(&vm, &path)).await;
            }
            return Err(err);
        }
    }
    Ok(())
}

fn session_for(row: &VmRow, expires_at: DateTime<Utc>) -> SessionRecord {
    let r = &row.record;
    SessionRecord {
        id: r.session_id.clone(),
        user_id: row.user_id,
        vm_id: r.vm_id.clone(),
        sandbox_id: row.sandbox_id.clone().unwrap_or_default(),
        status: SessionState::Active,
        end_reason: None,
        memory_mb: r.memory_mb,
        vcpu_count: r.vcpu_count,
        lifetime_seconds: r.vm_lifetime_seconds,
        metadata: r.metadata.clone(),
        created_at: r.created_at,
        expires_at,
        ended_at: None,
        usage: UsageCounters::default(),
    }
}

/// A create that did not succeed ends in `failed` with a reason the user may read.
async fn fail(state: &AppState, mut row: VmRow, err: &ApiError) {
    row.record.status = VmState::Failed;
    row.record.ended_at = Some(Utc::now());
    row.record.end_reason = Some(err.detail());
    tracing::warn!(vm_id = %row.record.vm_id, error = %err, "VM create failed");
    if let Err(e) = state.db(move |s| s.save_vm(&row)).await {
        tracing::error!(error = %e, "recording a failed VM create");
    }
}

/// The VM bound to a session right now.
pub async fn of_session(state: &AppState, session: &SessionRecord) -> ApiResult<VmRow> {
    let vm_id = session.vm_id.clone();
    state
        .db(move |s| s.get_vm(&vm_id))
        .await?
        .ok_or_else(|| ApiError::Internal(format!("session {} has no VM record", session.id)))
}

/// `session_id` on create: attach to the session's running VM, resume its suspended one, or
/// boot a new VM for an ended session.
pub async fn for_session(
    state: &AppState,
    session: SessionRecord,
    mut new: NewVm,
    wait: bool,
) -> ApiResult<VmRecord> {
    match session.status {
        SessionState::Active => Ok(of_session(state, &session).await?.record),
        SessionState::Suspended => resume(state, of_session(state, &session).await?, wait).await,
        SessionState::Expired | SessionState::Terminated => {
            new.session_id = Some(session.id);
            create(state, new, wait).await
        }
    }
}

/// `PATCH`: memory changes live (cgroups), flags and vault ids are stored.
pub async fn update(
    state: &AppState,
    mut row: VmRow,
    req: instavm_api::UpdateVmRequest,
) -> ApiResult<VmRecord> {
    let status = row.record.status;
    if !matches!(status, VmState::Active | VmState::Suspended) {
        return Err(not_in_state(&row.record, "active or suspended"));
    }
    let had_grace = needs_grace(&row.record);
    if let Some(memory_mb) = req.memory_mb {
        let l = state.limits_for(row.user_id).await?;
        if memory_mb > l.max_memory_mb {
            return Err(ApiError::Forbidden(format!(
                "memory cannot exceed {} MB",
                l.max_memory_mb
            )));
        }
        if memory_mb < l.min_memory_mb {
            return Err(ApiError::Unprocessable(format!(
                "memory_mb must be at least {}, got {memory_mb}",
                l.min_memory_mb
            )));
        }
        if status == VmState::Active {
            state
                .runtime()
                .set_memory(&sandbox_of(&row)?, memory_mb)
                .await?;
        }
        row.record.memory_mb = memory_mb;
    }
    if let Some(ids) = req.vault_ids {
        if status == VmState::Active && ids != row.record.vault_ids {
            // The running VM gets its new placeholders (and the CA) at once.
            let mut env = row.env.clone();
            crate::vault::attach_env(state, &row.record.vm_id.clone(), &ids, &mut env).await?;
            let sandbox = sandbox_of(&row)?;
            crate::vault::install_ca(state, &sandbox, &ids).await?;
            let added: BTreeMap<String, String> = env
                .iter()
                .filter(|(k, v)| row.env.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !added.is_empty() {
                state.runtime().push_env(&sandbox, added).await?;
            }
            row.env = env;
        }
        row.record.vault_ids = ids;
    }
    let r = &mut row.record;
    r.snapshot_on_terminate = req.snapshot_on_terminate.unwrap_or(r.snapshot_on_terminate);
    r.auto_suspend = req.auto_suspend.unwrap_or(r.auto_suspend);
    r.auto_resume = req.auto_resume.unwrap_or(r.auto_resume);
    if req.snapshot_name.is_some() {
        r.snapshot_name = req.snapshot_name;
    }
    if status == VmState::Active && had_grace != needs_grace(&row.record) {
        move_expiry(state, &row).await?;
    }
    let saved = row.clone();
    state.db(move |s| s.save_vm(&saved)).await?;
    Ok(row.record)
}

/// Give the runtime (and the session) the VM's expiry, plus the grace when the server must act
/// at expiry.
async fn move_expiry(state: &AppState, row: &VmRow) -> ApiResult<()> {
    let mut at = row.record.expires_at;
    if needs_grace(&row.record) {
        at += chrono::Duration::from_std(EXPIRY_GRACE).unwrap_or_default();
    }
    state.runtime().set_expiry(&sandbox_of(row)?, at).await?;
    let session = row.record.session_id.clone();
    state.db(move |s| s.set_session_expiry(&session, at)).await
}

/// `DELETE`: snapshot first when asked, then end the session and stop the sandbox.
pub async fn delete(state: &AppState, row: VmRow) -> ApiResult<VmRecord> {
    match row.record.status {
        VmState::Creating => {
            return Err(ApiError::Conflict(format!(
                "VM {} is still being created; delete it once it is active",
                row.record.vm_id
            )))
        }
        VmState::Terminated | VmState::Failed => return Ok(row.record),
        VmState::Active => {
            if row.record.snapshot_on_terminate {
                snapshot_before_end(state, &row).await?;
            }
            let session = session_of(state, &row).await?;
            sessions::end(
                state,
                &session,
                SessionState::Terminated,
                reason::VM_DELETED,
            )
            .await?;
        }
        VmState::Suspended => {
            if ResumeGuard::busy(&row.record.vm_id) {
                return Err(ApiError::Conflict(format!(
                    "VM {} is being resumed; delete the VM it resumes as",
                    row.record.vm_id
                )));
            }
            sessions::mark_ended(
                state,
                &row.record.session_id,
                SessionState::Terminated,
                reason::VM_DELETED,
            )
            .await?;
        }
    }
    reread(state, &row).await
}

async fn snapshot_before_end(state: &AppState, row: &VmRow) -> ApiResult<()> {
    let name = row
        .record
        .snapshot_name
        .clone()
        .unwrap_or_else(|| format!("terminate/{}", row.record.vm_id));
    snapshots::take(state, row, name).await.map(drop)
}

async fn session_of(state: &AppState, row: &VmRow) -> ApiResult<SessionRecord> {
    let id = row.record.session_id.clone();
    state
        .db(move |s| s.get_session(&id))
        .await?
        .ok_or_else(|| ApiError::Internal(format!("VM {} has no session", row.record.vm_id)))
}

async fn reread(state: &AppState, row: &VmRow) -> ApiResult<VmRecord> {
    let id = row.record.vm_id.clone();
    Ok(state
        .db(move |s| s.get_vm(&id))
        .await?
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))?
        .record)
}

/// Clone: snapshot the VM's disk, then boot a new VM (with its own session) from it. Files and
/// the create-time environment carry over; processes and staged variables do not.
pub async fn clone_vm(
    state: &AppState,
    src: VmRow,
    snapshot_name: Option<String>,
    wait: bool,
) -> ApiResult<VmRecord> {
    if src.record.status != VmState::Active {
        return Err(not_in_state(&src.record, "active"));
    }
    let name = snapshot_name.unwrap_or_else(|| format!("clone/{}", src.record.vm_id));
    let snap = snapshots::take(state, &src, name).await?;
    let mounts = volumes::inherited(state, src.user_id, Some(&src.record.vm_id)).await;
    // A clone keeps the egress restrictions of its source.
    let egress_policy = match crate::egress::effective(state, &src).await? {
        (_, "default") => None,
        (p, _) => Some(p),
    };
    let r = &src.record;
    let new = NewVm {
        user_id: src.user_id,
        spec: SandboxSpec {
            memory_mb: r.memory_mb,
            vcpu_count: r.vcpu_count,
            env: src.env.clone(),
            lifetime: Duration::from_secs(r.vm_lifetime_seconds),
            from_snapshot: SnapshotId::parse(&snap.id),
            ..SandboxSpec::default()
        },
        metadata: r.metadata.clone(),
        snapshot_id: Some(snap.id),
        auto_suspend: r.auto_suspend,
        auto_resume: r.auto_resume,
        snapshot_on_terminate: r.snapshot_on_terminate,
        snapshot_name: r.snapshot_name.clone(),
        vault_ids: r.vault_ids.clone(),
        session_id: None,
        mounts,
        egress_policy,
    };
    create(state, new, wait).await
}

/// `stage-env`: variables go to the running sandbox's memory only.
pub async fn stage_env(
    state: &AppState,
    row: &VmRow,
    env: BTreeMap<String, String>,
) -> ApiResult<()> {
    if row.record.status != VmState::Active {
        return Err(not_in_state(&row.record, "active"));
    }
    Ok(state.runtime().push_env(&sandbox_of(row)?, env).await?)
}

/// Expiry of VMs the server must act on itself: auto_suspend suspends, snapshot_on_terminate
/// snapshots before the end. (Other VMs expire with their session.)
pub async fn sweep(state: &AppState) -> ApiResult<()> {
    let now = Utc::now();
    for row in state.db(|s| s.vms_with_status(VmState::Active)).await? {
        if now < row.record.expires_at || !needs_grace(&row.record) {
            continue;
        }
        let vm_id = row.record.vm_id.clone();
        let done = if row.record.auto_suspend {
            suspend(state, row, reason::EXPIRED).await.map(drop)
        } else {
            expire_with_snapshot(state, row).await
        };
        if let Err(err) = done {
            tracing::warn!(vm_id, error = %err, "acting on a VM's expiry failed");
        }
    }
    Ok(())
}

async fn expire_with_snapshot(state: &AppState, row: VmRow) -> ApiResult<()> {
    snapshot_before_end(state, &row).await?;
    let session = session_of(state, &row).await?;
    sessions::end(state, &session, SessionState::Expired, reason::EXPIRED)
        .await
        .map(drop)
}

/// After a restart: creates it interrupted end in `failed` (their sandboxes, if any, are
/// orphans the session reconciliation destroys), and snapshots are made consistent.
pub async fn reconcile(state: &AppState) -> ApiResult<()> {
    let creating = state.db(|s| s.vms_with_status(VmState::Creating)).await?;
    let interrupted = creating.len();
    for row in creating {
        fail(state, row, &ApiError::Conflict(INTERRUPTED.into())).await;
    }
    let snaps = snapshots::reconcile(state).await?;
    let vols = volumes::reconcile(state).await?;
    tracing::info!(
        interrupted_creates = interrupted,
        cleaned_snapshots = snaps,
        cleaned_volumes = vols,
        "reconciled VMs"
    );
    Ok(())
}

/// Snapshot states a record can boot from.
pub fn bootable(state: SnapshotState) -> bool {
    state == SnapshotState::Ready
}
