//! Tapes (spec §17): start and stop recording a session, read its steps, diff its filesystem
//! between steps, branch a VM from a step. Lists are bare arrays on the wire.

use crate::*;
use serde::Deserialize;
use serde_json::Value;

/// The answer of `POST /v1/tapes/{id}/events`: only `step_id` is read (§17.6).
#[derive(Deserialize)]
struct AppendedStep {
    step_id: u64,
}

impl Client {
    /// `POST /v1/sessions/{session_id}/tape/start`. Unset options are sent with the official
    /// SDK's defaults (`record_egress_content` false, `record_fs` true, `retention_days` 7):
    /// it always sends all three.
    pub async fn start_tape(&self, session_id: &str, req: &StartTapeRequest) -> Result<TapeRecord> {
        let body = StartTapeRequest {
            record_egress_content: Some(req.record_egress_content.unwrap_or(false)),
            record_fs: Some(req.record_fs.unwrap_or(true)),
            retention_days: Some(req.retention_days.unwrap_or(7)),
        };
        self.post(&["v1", "sessions", session_id, "tape", "start"], &body)
            .await
    }

    /// `POST /v1/tapes/{id}/stop` (no body).
    pub async fn stop_tape(&self, tape_id: &str) -> Result<TapeRecord> {
        self.send(self.request(Method::POST, &["v1", "tapes", tape_id, "stop"])?)
            .await
    }

    /// `GET /v1/tapes`, newest first.
    pub async fn list_tapes(&self, query: &TapeListQuery) -> Result<Vec<TapeRecord>> {
        let req = self.request(Method::GET, &["v1", "tapes"])?.query(query);
        self.send(req).await
    }

    /// `GET /v1/tapes/{id}`.
    pub async fn tape(&self, tape_id: &str) -> Result<TapeRecord> {
        self.get(&["v1", "tapes", tape_id]).await
    }

    /// `GET /v1/tapes/{id}/events`, in step order.
    pub async fn tape_events(
        &self,
        tape_id: &str,
        query: &TapeEventsQuery,
    ) -> Result<Vec<TapeEvent>> {
        let req = self
            .request(Method::GET, &["v1", "tapes", tape_id, "events"])?
            .query(query);
        self.send(req).await
    }

    /// `POST /v1/tapes/{id}/events`: the new step's id. A missing payload is sent as `{}`,
    /// as the official SDK does.
    pub async fn append_tape_event(
        &self,
        tape_id: &str,
        req: &AppendTapeEventRequest,
    ) -> Result<u64> {
        let mut body = req.clone();
        if body.payload.is_none() {
            body.payload = Some(Value::Object(Default::default()));
        }
        let step: AppendedStep = self
            .post(&["v1", "tapes", tape_id, "events"], &body)
            .await?;
        Ok(step.step_id)
    }

    /// `GET /v1/tapes/{id}/diff?from=&to=`: the paths changed between two steps; `mode`
    /// `content` adds unified diffs of small text files (the server's default is `metadata`).
    pub async fn tape_diff(
        &self,
        tape_id: &str,
        from_step: u64,
        to_step: u64,
        mode: Option<&str>,
    ) -> Result<TapeDiff> {
        let query = TapeDiffQuery {
            from: Some(from_step),
            to: Some(to_step),
            mode: mode.map(str::to_owned),
        };
        let req = self
            .request(Method::GET, &["v1", "tapes", tape_id, "diff"])?
            .query(&query);
        self.send(req).await
    }

    /// `POST /v1/tapes/{id}/branch`: a new VM from the state after `at_step`, recorded on a
    /// child tape.
    pub async fn branch_tape(
        &self,
        tape_id: &str,
        req: &BranchTapeRequest,
    ) -> Result<BranchTapeResponse> {
        self.post(&["v1", "tapes", tape_id, "branch"], req).await
    }

    /// `DELETE /v1/tapes/{id}`: the tape, its events and its checkpoints.
    pub async fn delete_tape(&self, tape_id: &str) -> Result<DeleteTapeResponse> {
        self.send(self.request(Method::DELETE, &["v1", "tapes", tape_id])?)
            .await
    }

    /// `GET /v1/tapes/{id}/lanes`: events per kind.
    pub async fn tape_lanes(&self, tape_id: &str) -> Result<TapeLanes> {
        self.get(&["v1", "tapes", tape_id, "lanes"]).await
    }

    /// `GET /v1/tapes/{id}/export`: the bundle as the server sent it (format `instavm.tape.v1`,
    /// see [`TapeExport`]), kept as JSON so that a file written from it loses nothing.
    pub async fn export_tape(&self, tape_id: &str) -> Result<Value> {
        self.get(&["v1", "tapes", tape_id, "export"]).await
    }
}
