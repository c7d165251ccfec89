//! Shared state of the server: store, runtime, limits, readiness and usage counters.

use crate::admission::Admission;
use crate::auth::hashes_equal;
use crate::config::Limits;
use crate::error::ApiError;
use crate::gate::Gate;
use instavm_runtime::Runtime;
use instavm_store::{Store, StoreError, UsageCounters, UserRecord};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Cheap to clone; every handler gets one.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    store: Store,
    runtime: Arc<dyn Runtime>,
    limits: Limits,
    admission: Admission,
    admin: AdminIdentity,
    readiness: watch::Sender<Readiness>,
    usage: Mutex<HashMap<String, UsageCounters>>,
    spool_dir: PathBuf,
    /// Executions and file transfers in flight, per session and per user.
    gate: Arc<Gate>,
    /// Bytes of uploads spooled to disk right now, per user.
    spooled: Mutex<HashMap<i64, u64>>,
    /// The host users reach the SSH gateway at, once it runs.
    ssh_host: std::sync::OnceLock<String>,
    /// The share proxy, once it runs.
    shares: std::sync::OnceLock<Arc<crate::shares::SharePlane>>,
    metrics: crate::metrics::Metrics,
    /// Wakes the workload scheduler (a new workload, a manual run, a run that ended).
    workloads_wake: tokio::sync::Notify,
    /// The webhook plane (settings, client, worker wake-up); defaults until the server sets it.
    webhooks: std::sync::OnceLock<Arc<crate::webhooks::Webhooks>>,
    /// Metering rates and allocations; defaults until the server sets them.
    billing: std::sync::OnceLock<crate::metering::BillingSettings>,
    /// The vault's sealing key and CA (set at start; an in-memory key otherwise).
    vault: std::sync::OnceLock<Arc<crate::vault::VaultPlane>>,
    tapes: crate::tapes::Tapes,
}

/// The admin key never enters the database: its hash is held here and maps to the built-in
/// admin user.
struct AdminIdentity {
    key_hash: [u8; 32],
    user: UserRecord,
}

/// Whether sandboxes can be created yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `Runtime::prepare` is running (the base image may be building).
    Preparing,
    Ready,
    /// `prepare` failed; it is retried. The message is for the log only.
    Failed(String),
}

/// Email of the built-in admin user (not a deliverable address on purpose).
pub const ADMIN_EMAIL: &str = "admin@instavm.local";

impl AppState {
    /// Build the state; creates the built-in admin user on first start.
    pub fn new(
        store: Store,
        runtime: Arc<dyn Runtime>,
        limits: Limits,
        admin_key: &str,
        spool_dir: PathBuf,
    ) -> Result<AppState, StoreError> {
        let user = store.ensure_admin_user(ADMIN_EMAIL, chrono::Utc::now())?;
        let admission = Admission::new(&limits.admission, runtime.capacity());
        Ok(AppState {
            inner: Arc::new(Shared {
                store,
                runtime,
                limits,
                admission,
                admin: AdminIdentity {
                    key_hash: crate::auth::hash_key(admin_key),
                    user,
                },
                readiness: watch::channel(Readiness::Preparing).0,
                usage: Mutex::new(HashMap::new()),
                spool_dir,
                gate: Arc::default(),
                spooled: Mutex::new(HashMap::new()),
                ssh_host: std::sync::OnceLock::new(),
                shares: std::sync::OnceLock::new(),
                metrics: crate::metrics::Metrics::default(),
                workloads_wake: tokio::sync::Notify::new(),
                webhooks: std::sync::OnceLock::new(),
                billing: std::sync::OnceLock::new(),
                vault: std::sync::OnceLock::new(),
                tapes: crate::tapes::Tapes::default(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.runtime
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The limits in force for one user: the server's, with the operator's overrides for them
    /// (`PUT /v1/admin/users/{id}/limits`). Read per call, so a change applies to the next
    /// request.
    pub async fn limits_for(&self, user_id: i64) -> Result<Limits, ApiError> {
        let overrides = self.db(move |s| s.user_limits(user_id)).await?;
        Ok(match overrides {
            Some((o, _)) => self.limits().for_user(&o),
            None => self.limits().clone(),
        })
    }

    pub fn tapes(&self) -> &crate::tapes::Tapes {
        &self.inner.tapes
    }

    pub fn spool_dir(&self) -> &PathBuf {
        &self.inner.spool_dir
    }

    /// Set once, when the SSH gateway starts: VM records then carry it as `ssh_host`.
    pub fn set_ssh_host(&self, host: String) {
        let _ = self.inner.ssh_host.set(host);
    }

    pub fn ssh_host(&self) -> Option<String> {
        self.inner.ssh_host.get().cloned()
    }

    pub fn workloads_wake(&self) -> &tokio::sync::Notify {
        &self.inner.workloads_wake
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// Set once, when the share proxy starts.
    pub(crate) fn set_shares(&self, plane: Arc<crate::shares::SharePlane>) {
        let _ = self.inner.shares.set(plane);
    }

    pub(crate) fn shares(&self) -> Option<Arc<crate::shares::SharePlane>> {
        self.inner.shares.get().cloned()
    }

    /// Set once, when the webhook worker starts.
    pub(crate) fn set_webhooks(&self, hooks: Arc<crate::webhooks::Webhooks>) {
        let _ = self.inner.webhooks.set(hooks);
    }

    /// The webhook plane; private URLs refused unless the server was started allowing them.
    pub(crate) fn webhooks(&self) -> Arc<crate::webhooks::Webhooks> {
        self.inner
            .webhooks
            .get_or_init(|| Arc::new(crate::webhooks::Webhooks::new(Default::default())))
            .clone()
    }

    /// Set once, when the metering sampler starts.
    pub(crate) fn set_billing(&self, settings: crate::metering::BillingSettings) {
        let _ = self.inner.billing.set(settings);
    }

    pub(crate) fn billing(&self) -> &crate::metering::BillingSettings {
        self.inner.billing.get_or_init(Default::default)
    }

    /// Set once at start, before serving.
    pub fn set_vault(&self, plane: Arc<crate::vault::VaultPlane>) {
        let _ = self.inner.vault.set(plane);
    }

    pub fn vault(&self) -> Arc<crate::vault::VaultPlane> {
        self.inner
            .vault
            .get_or_init(|| Arc::new(crate::vault::VaultPlane::ephemeral()))
            .clone()
    }

    pub fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    pub fn gate(&self) -> &Arc<Gate> {
        &self.inner.gate
    }

    /// Reserve `bytes` of a user's spool allowance; false when it would go over `max`.
    pub fn reserve_spool(&self, user_id: i64, bytes: u64, max: u64) -> bool {
        let mut map = self.inner.spooled.lock().unwrap_or_else(|e| e.into_inner());
        let used = map.entry(user_id).or_default();
        if used.saturating_add(bytes) > max {
            return false;
        }
        *used += bytes;
        true
    }

    pub fn release_spool(&self, user_id: i64, bytes: u64) {
        let mut map = self.inner.spooled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(used) = map.get_mut(&user_id) {
            *used = used.saturating_sub(bytes);
            if *used == 0 {
                map.remove(&user_id);
            }
        }
    }

    pub fn admin_for_hash(&self, hash: &[u8; 32]) -> Option<UserRecord> {
        hashes_equal(hash, &self.inner.admin.key_hash).then(|| self.inner.admin.user.clone())
    }

    /// Run a store call on a blocking thread (SQLite calls block, and a commit fsyncs).
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.inner.store.clone();
        // The events this call writes name who acts (the request's user, else the system).
        let actor = crate::audit::current_actor();
        tokio::task::spawn_blocking(move || instavm_store::with_actor(actor, || f(&store)))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }

    pub fn readiness(&self) -> Readiness {
        self.inner.readiness.borrow().clone()
    }

    pub fn set_readiness(&self, r: Readiness) {
        self.inner.readiness.send_replace(r);
    }

    /// Refuse with 503 until sandboxes can be created.
    pub fn require_ready(&self) -> Result<(), ApiError> {
        match self.readiness() {
            Readiness::Ready => Ok(()),
            Readiness::Preparing => Err(ApiError::Unavailable(
                "the server is still preparing the sandbox runtime (first start builds the base image); retry shortly".into(),
            )),
            Readiness::Failed(_) => Err(ApiError::Unavailable(
                "the sandbox runtime failed to prepare; the server log has the details".into(),
            )),
        }
    }

    /// Count an execution against a session (flushed to the store in batches).
    pub fn record_usage(&self, session_id: &str, delta: UsageCounters) {
        let mut map = self.inner.usage.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(session_id.to_owned()).or_default().add(delta);
    }

    /// Counters recorded but not yet flushed for one session.
    pub fn unflushed_usage(&self, session_id: &str) -> UsageCounters {
        let map = self.inner.usage.lock().unwrap_or_else(|e| e.into_inner());
        map.get(session_id).copied().unwrap_or_default()
    }

    /// Write buffered counters to the store. On failure they are put back for the next try.
    pub async fn flush_usage(&self) -> Result<(), ApiError> {
        let batch: Vec<(String, UsageCounters)> = {
            let mut map = self.inner.usage.lock().unwrap_or_else(|e| e.into_inner());
            map.drain().collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        let result = {
            let batch = batch.clone();
            self.db(move |s| s.add_session_usage(&batch)).await
        };
        if result.is_err() {
            for (id, delta) in batch {
                self.record_usage(&id, delta);
            }
        }
        result
    }
}
