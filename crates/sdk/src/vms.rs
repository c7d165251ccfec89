//! VMs and snapshots (spec §6, §7.2 to §7.4).

use crate::*;

fn wait_query(wait: bool) -> [(&'static str, &'static str); 1] {
    [("wait", if wait { "true" } else { "false" })]
}

impl Client {
    /// `POST /v1/vms?wait=`: with `wait`, answers once the VM is active.
    pub async fn create_vm(&self, req: &CreateVmRequest, wait: bool) -> Result<VmRecord> {
        let http = self.request(Method::POST, &["v1", "vms"])?;
        self.send(http.query(&wait_query(wait)).json(req)).await
    }

    /// `GET /v1/vms`: running VMs (creating or active).
    pub async fn list_vms(&self) -> Result<Vec<VmRecord>> {
        self.get(&["v1", "vms"]).await
    }

    /// `GET /v1/vms/`: every record, ended ones included.
    pub async fn list_all_vms(&self) -> Result<Vec<VmRecord>> {
        self.get(&["v1", "vms", ""]).await
    }

    pub async fn get_vm(&self, vm_id: &str) -> Result<VmRecord> {
        self.get(&["v1", "vms", vm_id]).await
    }

    pub async fn update_vm(&self, vm_id: &str, req: &UpdateVmRequest) -> Result<VmRecord> {
        self.send(
            self.request(Method::PATCH, &["v1", "vms", vm_id])?
                .json(req),
        )
        .await
    }

    pub async fn delete_vm(&self, vm_id: &str) -> Result<VmRecord> {
        self.send(self.request(Method::DELETE, &["v1", "vms", vm_id])?)
            .await
    }

    pub async fn suspend_vm(&self, vm_id: &str) -> Result<VmRecord> {
        self.send(self.request(Method::POST, &["v1", "vms", vm_id, "suspend"])?)
            .await
    }

    /// Resume boots a new VM (a new `vm_id`) bound to the same session.
    pub async fn resume_vm(&self, vm_id: &str, wait: bool) -> Result<VmRecord> {
        let http = self.request(Method::POST, &["v1", "vms", vm_id, "resume"])?;
        self.send(http.query(&wait_query(wait))).await
    }

    pub async fn clone_vm(
        &self,
        vm_id: &str,
        req: &CloneVmRequest,
        wait: bool,
    ) -> Result<VmRecord> {
        let http = self.request(Method::POST, &["v1", "vms", vm_id, "clone"])?;
        self.send(http.query(&wait_query(wait)).json(req)).await
    }

    pub async fn snapshot_vm(
        &self,
        vm_id: &str,
        req: &SnapshotVmRequest,
        wait: bool,
    ) -> Result<SnapshotRecord> {
        let http = self.request(Method::POST, &["v1", "vms", vm_id, "snapshot"])?;
        self.send(http.query(&wait_query(wait)).json(req)).await
    }

    /// Put variables into the running VM's processes; they are never stored.
    pub async fn stage_env(&self, vm_id: &str, entries: Vec<EnvEntry>) -> Result<StageEnvResponse> {
        self.post(
            &["v1", "vms", vm_id, "stage-env"],
            &StageEnvRequest { entries },
        )
        .await
    }

    /// `GET /v1/snapshots[?type=]`.
    pub async fn list_snapshots(&self, snapshot_type: Option<&str>) -> Result<Vec<SnapshotRecord>> {
        let mut http = self.request(Method::GET, &["v1", "snapshots"])?;
        if let Some(t) = snapshot_type {
            http = http.query(&[("type", t)]);
        }
        self.send(http).await
    }

    pub async fn get_snapshot(&self, snapshot_id: &str) -> Result<SnapshotRecord> {
        self.get(&["v1", "snapshots", snapshot_id]).await
    }

    pub async fn delete_snapshot(&self, snapshot_id: &str) -> Result<DeleteSnapshotResponse> {
        self.send(self.request(Method::DELETE, &["v1", "snapshots", snapshot_id])?)
            .await
    }
}
