//! Suspend and resume. On this runtime memory cannot be checkpointed: suspend keeps the disk
//! in a snapshot and stops the sandbox; resume boots a new VM (a new `vm_id`) from that
//! snapshot and binds the same session to it.

use super::*;

/// VMs with a resume in flight: a second resume of the same VM is refused, not run twice.
static RESUMING: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Suspend: snapshot the disk, record the VM as suspended, stop its sandbox (freeing its
/// memory, CPU and network slot). Processes and memory are not kept on this runtime.
pub async fn suspend(state: &AppState, mut row: VmRow, why: &str) -> ApiResult<VmRecord> {
    if row.record.status != VmState::Active {
        return Err(not_in_state(&row.record, "active"));
    }
    let sandbox = sandbox_of(&row)?;
    let name = format!("suspend/{}", row.record.vm_id);
    let snap = snapshots::take(state, &row, name).await?;
    row.record.status = VmState::Suspended;
    row.record.suspend_snapshot_id = Some(snap.id);
    row.record.end_reason = Some(why.to_owned());
    row.sandbox_id = None;
    let saved = row.clone();
    if !state.db(move |s| s.suspend_vm(&saved)).await? {
        return Err(ApiError::Conflict(format!(
            "VM {} ended while it was being suspended",
            row.record.vm_id
        )));
    }
    match state.runtime().destroy(&sandbox).await {
        Ok(()) | Err(RuntimeError::NotFound(_)) => {}
        Err(err) => {
            tracing::warn!(vm_id = %row.record.vm_id, error = %err, "stopping a suspended VM's sandbox failed")
        }
    }
    tracing::info!(vm_id = %row.record.vm_id, reason = why, "VM suspended");
    Ok(row.record)
}

pub(super) struct ResumeGuard(String);

impl ResumeGuard {
    fn take(vm_id: &str) -> Option<ResumeGuard> {
        let mut set = RESUMING.lock().unwrap_or_else(|e| e.into_inner());
        set.get_or_insert_with(HashSet::new)
            .insert(vm_id.to_owned())
            .then(|| ResumeGuard(vm_id.to_owned()))
    }
}

impl ResumeGuard {
    pub(super) fn busy(vm_id: &str) -> bool {
        let set = RESUMING.lock().unwrap_or_else(|e| e.into_inner());
        set.as_ref().is_some_and(|s| s.contains(vm_id))
    }
}

/// Wait (up to the longest create) for a resume someone else started.
async fn wait_for_resume(vm_id: &str) -> ApiResult<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while ResumeGuard::busy(vm_id) {
        if std::time::Instant::now() > deadline {
            return Err(ApiError::Conflict(format!("VM {vm_id} is still resuming")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

impl Drop for ResumeGuard {
    fn drop(&mut self) {
        let mut set = RESUMING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = set.as_mut() {
            set.remove(&self.0);
        }
    }
}

/// Resume: boot a new VM from the suspend snapshot, bound to the same session; the old record
/// says which VM took over.
pub async fn resume(state: &AppState, old: VmRow, wait: bool) -> ApiResult<VmRecord> {
    let Some(guard) = ResumeGuard::take(&old.record.vm_id) else {
        return Err(ApiError::Conflict(format!(
            "VM {} is being resumed already",
            old.record.vm_id
        )));
    };
    // Read it again under the guard: another resume may have finished since `old` was read.
    let id = old.record.vm_id.clone();
    let old = state
        .db(move |s| s.get_vm(&id))
        .await?
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))?;
    if old.record.status != VmState::Suspended {
        return Err(not_in_state(&old.record, "suspended"));
    }
    let snap = old.record.suspend_snapshot_id.clone().unwrap_or_default();
    let from = SnapshotId::parse(&snap).ok_or_else(|| {
        ApiError::Internal(format!("VM {} has no suspend snapshot", old.record.vm_id))
    })?;
    let now = Utc::now();
    let r = &old.record;
    let new_id = new_vm_id();
    // The same placeholders, now recorded for the new VM id too.
    let mut env = old.env.clone();
    crate::vault::attach_env(state, &new_id, &r.vault_ids, &mut env).await?;
    let row = VmRow {
        user_id: old.user_id,
        sandbox_id: None,
        env: env.clone(),
        record: VmRecord {
            vm_id: new_id.clone(),
            id: new_id.clone(),
            status: VmState::Creating,
            created_at: now,
            ended_at: None,
            end_reason: None,
            snapshot_id: Some(snap),
            suspend_snapshot_id: None,
            resumed_vm_id: None,
            ..r.clone()
        },
    };
    let mut replaced = old.clone();
    replaced.record.status = VmState::Terminated;
    replaced.record.ended_at = Some(now);
    replaced.record.end_reason = Some(format!("resumed as {new_id}"));
    replaced.record.resumed_vm_id = Some(new_id);
    let spec = SandboxSpec {
        memory_mb: r.memory_mb,
        vcpu_count: r.vcpu_count,
        env,
        lifetime: Duration::from_secs(r.vm_lifetime_seconds),
        from_snapshot: Some(from),
        ..SandboxSpec::default()
    };
    // The suspended VM's volumes come back (it holds none while suspended).
    let mounts = crate::volumes::inherited(state, old.user_id, Some(&old.record.vm_id)).await;
    let limits = state.limits_for(old.user_id).await?;
    let reservation = crate::admission::admit(
        state,
        old.user_id,
        crate::admission::Resources::of_spec(&spec),
        &limits.admission,
    )
    .await?;
    let boot = Boot {
        row,
        spec,
        rebind: true,
        replaces: Some(replaced),
        mounts,
        reservation,
    };
    let (record, task) = spawn_boot(state, boot).await?;
    // The guard lives until the boot has finished, in or out of this request.
    let waiter = tokio::spawn(async move {
        let _guard = guard;
        task.await.map_err(ApiError::internal)?
    });
    if wait {
        return waiter.await.map_err(ApiError::internal)?;
    }
    Ok(record)
}

/// A session whose VM is suspended: resume it when the VM asked for that, else say how.
pub async fn wake_session(state: &AppState, session: &SessionRecord) -> ApiResult<()> {
    let row = of_session(state, session).await?;
    if row.record.status == VmState::Suspended && row.record.auto_resume {
        if ResumeGuard::busy(&row.record.vm_id) {
            // Another request is resuming it: wait for that one instead of failing.
            return wait_for_resume(&row.record.vm_id).await;
        }
        let Err(err) = resume(state, row, true).await else {
            return Ok(());
        };
        // Another request may have resumed it meanwhile: that is what this caller wanted.
        let id = session.id.clone();
        match state.db(move |s| s.get_session(&id)).await? {
            Some(now) if now.status == SessionState::Active => Ok(()),
            _ => Err(err),
        }
    } else {
        Err(ApiError::Conflict(format!(
            "session {} is suspended: resume its VM {} first (POST /v1/vms/{}/resume)",
            session.id, row.record.vm_id, row.record.vm_id
        )))
    }
}
