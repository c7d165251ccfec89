//! Workloads: deployed cron and job manifests, their runs and logs (ours; docs/deploy.md).

use crate::*;

impl Client {
    /// `POST /v1/workloads`: register the workload, or replace the one with the same slug.
    pub async fn create_workload(&self, req: &CreateWorkloadRequest) -> Result<WorkloadRecord> {
        self.post(&["v1", "workloads"], req).await
    }

    pub async fn list_workloads(&self) -> Result<Vec<WorkloadRecord>> {
        let list: WorkloadList = self.get(&["v1", "workloads"]).await?;
        Ok(list.workloads)
    }

    pub async fn get_workload(&self, slug: &str) -> Result<WorkloadRecord> {
        self.get(&["v1", "workloads", slug]).await
    }

    pub async fn delete_workload(&self, slug: &str) -> Result<serde_json::Value> {
        self.send(self.request(Method::DELETE, &["v1", "workloads", slug])?)
            .await
    }

    pub async fn pause_workload(&self, slug: &str) -> Result<WorkloadRecord> {
        self.send(self.request(Method::POST, &["v1", "workloads", slug, "pause"])?)
            .await
    }

    pub async fn resume_workload(&self, slug: &str) -> Result<WorkloadRecord> {
        self.send(self.request(Method::POST, &["v1", "workloads", slug, "resume"])?)
            .await
    }

    /// `POST /v1/workloads/{slug}/runs`: start a manual run now (202).
    pub async fn start_run(&self, slug: &str) -> Result<RunRecord> {
        self.send(self.request(Method::POST, &["v1", "workloads", slug, "runs"])?)
            .await
    }

    /// `GET /v1/workloads/{slug}/runs?limit=`: newest first.
    pub async fn list_runs(&self, slug: &str, limit: Option<u32>) -> Result<Vec<RunRecord>> {
        let mut http = self.request(Method::GET, &["v1", "workloads", slug, "runs"])?;
        if let Some(limit) = limit {
            http = http.query(&[("limit", limit)]);
        }
        let list: RunList = self.send(http).await?;
        Ok(list.runs)
    }

    pub async fn get_run(&self, run_id: &str) -> Result<RunRecord> {
        self.get(&["v1", "runs", run_id]).await
    }

    pub async fn run_logs(&self, run_id: &str) -> Result<RunLogs> {
        self.get(&["v1", "runs", run_id, "logs"]).await
    }
}

impl Client {
    /// `GET <segments>` as untyped JSON, for routes whose shape varies between servers (the
    /// vault listings answer a list or an object).
    pub async fn get_json(&self, segments: &[&str]) -> Result<serde_json::Value> {
        self.get(segments).await
    }

    /// `POST <segments>` with a JSON body, as untyped JSON.
    pub async fn post_json(
        &self,
        segments: &[&str],
        body: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        self.post(segments, body).await
    }
}
