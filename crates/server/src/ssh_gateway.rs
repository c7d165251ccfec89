//! The SSH gateway's view of the platform: a VM id and a key fingerprint become a sandbox when
//! the key is registered by the VM's owner and the VM runs.

use crate::sessions;
use crate::state::AppState;
use async_trait::async_trait;
use instavm_api::SessionState;
use instavm_runtime::SandboxId;

pub struct GatewayDirectory {
    pub state: AppState,
}

#[async_trait]
impl instavm_gateway::Directory for GatewayDirectory {
    async fn authorize(&self, vm_id: &str, fingerprint: &str) -> Option<SandboxId> {
        if !vm_id.starts_with("vm_") || vm_id.len() > 64 {
            return None;
        }
        let (vm, fp) = (vm_id.to_owned(), fingerprint.to_owned());
        let found = self
            .state
            .db(move |s| {
                let Some(rec) = s.get_session_by_vm(&vm)? else {
                    return Ok(None);
                };
                let allowed = s.user_has_ssh_key(rec.user_id, &fp)?;
                Ok(allowed.then_some(rec))
            })
            .await;
        let rec = match found {
            Ok(Some(rec)) => rec,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(error = %e, "SSH gateway: looking up a VM failed");
                return None;
            }
        };
        // The same liveness rules as the API (an overdue expiry ends the session now).
        let rec = sessions::active(&self.state, rec.user_id, &rec.id)
            .await
            .ok()?;
        (rec.status == SessionState::Active)
            .then(|| sessions::sandbox_id(&rec).ok())
            .flatten()
    }
}
