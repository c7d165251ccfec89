//! Admission control: a new sandbox must fit in what the host and its user may hold, as sums
//! of the limits (memory, vCPUs, disk) of the live sandboxes. Session starts call [`admit`];
//! anything else that creates sandboxes (VMs) should call it too and keep the [`Reservation`]
//! until its record is stored.
//!
//! Checks run one at a time, and a granted reservation counts until the caller drops it, so
//! parallel creates cannot both squeeze into the last place. Live sandboxes are what the
//! runtime lists (the host) and, of those, the ones behind the user's active sessions.

use crate::config::{AdmissionLimits, VCPUS_PER_CPU};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use instavm_runtime::{HostCapacity, SandboxInfo, SandboxSpec, SandboxState};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What one sandbox holds, or a sum of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory_mb: u64,
    pub vcpus: u64,
    pub disk_mb: u64,
}

impl Resources {
    pub fn of_spec(spec: &SandboxSpec) -> Self {
        Resources {
            memory_mb: spec.memory_mb.into(),
            vcpus: spec.vcpu_count.into(),
            disk_mb: spec.disk_mb,
        }
    }

    fn of_info(info: &SandboxInfo) -> Self {
        Resources {
            memory_mb: info.memory_mb.into(),
            vcpus: info.vcpu_count.into(),
            disk_mb: info.disk_mb,
        }
    }

    fn add(&mut self, other: Resources) {
        self.memory_mb += other.memory_mb;
        self.vcpus += other.vcpus;
        self.disk_mb += other.disk_mb;
    }
}

/// The resolved bounds (host values filled in from the runtime) and the reservations granted
/// but not yet visible as stored sessions.
pub struct Admission {
    host: Resources,
    host_cpus: u32,
    pending: Arc<Mutex<HashMap<u64, (i64, Resources)>>>,
    next_id: AtomicU64,
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// A granted place; it counts until dropped (drop it once the sandbox's record is stored).
pub struct Reservation {
    id: u64,
    pending: Arc<Mutex<HashMap<u64, (i64, Resources)>>>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.remove(&self.id);
    }
}

impl Admission {
    pub fn new(limits: &AdmissionLimits, capacity: HostCapacity) -> Self {
        let unlimited = u64::MAX;
        Admission {
            host: Resources {
                memory_mb: limits.host_memory_mb.unwrap_or(capacity.memory_mb),
                vcpus: limits
                    .host_vcpus
                    .unwrap_or(u64::from(capacity.cpus) * VCPUS_PER_CPU),
                disk_mb: limits
                    .host_disk_mb
                    .or(capacity.disk_mb)
                    .unwrap_or(unlimited),
            },
            host_cpus: capacity.cpus.max(1),
            pending: Arc::default(),
            next_id: AtomicU64::new(0),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// A sandbox may not have more vCPUs than the host has CPUs.
    pub fn host_cpus(&self) -> u32 {
        self.host_cpus
    }

    fn pending_sums(&self, user_id: i64) -> (Resources, Resources) {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (mut host, mut user) = (Resources::default(), Resources::default());
        for (owner, r) in pending.values() {
            host.add(*r);
            if *owner == user_id {
                user.add(*r);
            }
        }
        (host, user)
    }

    fn reserve(&self, user_id: i64, want: Resources) -> Reservation {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(id, (user_id, want));
        Reservation {
            id,
            pending: self.pending.clone(),
        }
    }
}

/// Admit a sandbox of `want` for `user_id`, whose limits are `limits` (with their overrides:
/// [`AppState::limits_for`]), or 403 naming the sum it would break.
pub async fn admit(
    state: &AppState,
    user_id: i64,
    want: Resources,
    limits: &AdmissionLimits,
) -> ApiResult<Reservation> {
    crate::metering::enforce_credits(state, user_id).await?;
    let admission = state.admission();
    let _turn = admission.one_at_a_time.lock().await;
    // Pending first: a reservation dropped after this point belongs to a sandbox whose record
    // is stored by then, so the reads below see it (it may count twice, never zero times).
    let (mut host, mut user) = admission.pending_sums(user_id);
    let live = state.runtime().list().await?;
    let sessions = state.db(|s| s.active_sessions()).await?;
    let users_sandboxes: HashSet<&str> = sessions
        .iter()
        .filter(|s| s.user_id == user_id)
        .map(|s| s.sandbox_id.as_str())
        .collect();
    for info in live.iter().filter(|i| i.state == SandboxState::Running) {
        host.add(Resources::of_info(info));
        if users_sandboxes.contains(info.id.as_str()) {
            user.add(Resources::of_info(info));
        }
    }
    let user_max = Resources {
        memory_mb: limits.user_memory_mb,
        vcpus: limits.user_vcpus,
        disk_mb: limits.user_disk_mb,
    };
    check(&user, want, &user_max, Scope::User)?;
    check(&host, want, &admission.host, Scope::Host)?;
    Ok(admission.reserve(user_id, want))
}

#[derive(Clone, Copy)]
enum Scope {
    User,
    Host,
}

fn check(used: &Resources, want: Resources, max: &Resources, scope: Scope) -> ApiResult<()> {
    let over = [
        (
            "memory",
            "MB",
            used.memory_mb,
            want.memory_mb,
            max.memory_mb,
        ),
        ("vCPU", "vCPUs", used.vcpus, want.vcpus, max.vcpus),
        ("disk", "MB", used.disk_mb, want.disk_mb, max.disk_mb),
    ]
    .into_iter()
    .find(|(_, _, used, want, max)| used.saturating_add(*want) > *max);
    let Some((what, unit, used, want, max)) = over else {
        return Ok(());
    };
    Err(ApiError::Forbidden(match scope {
        Scope::User => format!(
            "{what} limit reached: at most {max} {unit} across a user's live sandboxes \
             ({used} {unit} in use, {want} {unit} asked); kill a session or wait for one to expire"
        ),
        Scope::Host => format!(
            "host {what} capacity reached: this host holds at most {max} {unit} across all \
             sandboxes ({used} {unit} in use, {want} {unit} asked); retry when sandboxes end"
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_a_limit_are_refused_with_the_first_one_named() {
        let max = Resources {
            memory_mb: 1024,
            vcpus: 4,
            disk_mb: 4096,
        };
        let used = Resources {
            memory_mb: 512,
            vcpus: 3,
            disk_mb: 2048,
        };
        let want = Resources {
            memory_mb: 512,
            vcpus: 1,
            disk_mb: 2048,
        };
        assert!(check(&used, want, &max, Scope::User).is_ok());
        let err = check(&used, Resources { vcpus: 2, ..want }, &max, Scope::Host).unwrap_err();
        assert_eq!(
            err.to_string(),
            "host vCPU capacity reached: this host holds at most 4 vCPUs across all sandboxes \
             (3 vCPUs in use, 2 vCPUs asked); retry when sandboxes end"
        );
    }
}
