//! VM records (spec §6.2 to §6.4), read-only: every session is backed by one VM, and these
//! views list them. Creating VMs directly comes with the VM API.

use crate::{Metadata, SessionState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub vm_id: String,
    /// Same as `vm_id` (the official deploy code reads either).
    pub id: String,
    pub session_id: String,
    /// `active` while it runs (the CLI's `ls` shows active, running and creating VMs).
    pub status: SessionState,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub memory_mb: u32,
    pub vcpu_count: u32,
    #[serde(default)]
    pub metadata: Metadata,
}
