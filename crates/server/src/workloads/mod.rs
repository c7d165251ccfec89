//! Workloads: deployed `kind: cron` and `kind: job` manifests (docs/deploy.md). A workload is a
//! snapshot plus a command; every run boots a fresh VM from the snapshot as its owner, runs
//! the command with bash, keeps exit code, duration and output, and destroys the VM.
//!
//! `schedule.rs` turns cron expressions into times; `runner.rs` is the scheduler (due times to
//! runs, queued runs to VMs); this module is the records, their rules, and webhook triggers.

pub mod runner;
pub mod schedule;

use crate::error::{ApiError, ApiResult};
use crate::snapshots;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use instavm_api::*;
use instavm_store::{NewRun, RunRow, WorkloadRow};
use rand::RngCore;
use schedule::CronSchedule;
use std::collections::BTreeMap;

/// Where a command runs when the request names no workdir (the deploy layout of manifest.md §7.2).
const DEFAULT_WORKDIR: &str = "/root";
/// How long a run may take when neither the schedule nor the trigger says.
pub const DEFAULT_RUN_TIMEOUT_SECONDS: u64 = 3600;
/// The longest a run may be given.
const MAX_RUN_TIMEOUT_SECONDS: u64 = 24 * 3600;
/// A signed hook older or newer than this is refused (the webhook contract's window).
const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;
/// Hook bodies are passed to the run; keep them small.
pub const MAX_HOOK_BODY: usize = 256 * 1024;
const MAX_RETRIES: u32 = 10;

fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::Unprocessable(msg.into())
}

/// The slug rule of the manifest (lowercase letters, digits, `-`), so it can sit in URLs.
fn check_slug(slug: &str) -> ApiResult<()> {
    let ok = !slug.is_empty()
        && slug.len() <= 63
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !slug.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "slug {slug:?} must be 1 to 63 lowercase letters, digits, '-' or '_'"
        )))
    }
}

/// Check a registration and say what is wrong with it.
fn validate(req: &CreateWorkloadRequest) -> ApiResult<()> {
    check_slug(&req.slug)?;
    if req.start_command.trim().is_empty() {
        return Err(bad("start_command is empty"));
    }
    if let Some(w) = &req.workdir {
        if !w.starts_with('/') {
            return Err(bad(format!("workdir {w:?} must be an absolute path")));
        }
    }
    for key in req.env.keys() {
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(bad(format!(
                "env name {key:?} is not a shell variable name"
            )));
        }
    }
    match req.kind {
        WorkloadKind::Cron => {
            let Some(s) = &req.schedule else {
                return Err(bad("a cron workload needs a schedule"));
            };
            if !req.triggers.is_empty() {
                return Err(bad(
                    "triggers belong to job workloads; cron ones have a schedule",
                ));
            }
            CronSchedule::parse(&s.cron, &s.timezone).map_err(bad)?;
            check_timeout(s.timeout_seconds, "schedule.timeout_seconds")?;
            if s.retries.max > MAX_RETRIES {
                return Err(bad(format!(
                    "schedule.retries.max is at most {MAX_RETRIES}"
                )));
            }
            if s.retries.backoff_seconds == 0 {
                return Err(bad("schedule.retries.backoff_seconds must be positive"));
            }
        }
        WorkloadKind::Job => {
            if req.schedule.is_some() {
                return Err(bad(
                    "a schedule belongs to cron workloads; jobs have triggers",
                ));
            }
            if req.triggers.is_empty() {
                return Err(bad("a job workload needs at least one trigger"));
            }
            let mut paths = std::collections::HashSet::new();
            for t in &req.triggers {
                check_timeout(t.timeout_seconds, "triggers[].timeout_seconds")?;
                if t.kind == TriggerType::Webhook {
                    let Some(path) = &t.path else {
                        return Err(bad("a webhook trigger needs a path starting with '/'"));
                    };
                    let valid = path.starts_with('/')
                        && path.len() <= 200
                        && path
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
                        && !path.contains("..");
                    if !valid {
                        return Err(bad(format!(
                            "webhook path {path:?} must start with '/' and use letters, digits, '/', '-', '_' or '.'"
                        )));
                    }
                    if !paths.insert(path.clone()) {
                        return Err(bad(format!("two webhook triggers share the path {path:?}")));
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_timeout(t: Option<u64>, name: &str) -> ApiResult<()> {
    match t {
        Some(0) => Err(bad(format!("{name} must be positive"))),
        Some(t) if t > MAX_RUN_TIMEOUT_SECONDS => Err(bad(format!(
            "{name} is at most {MAX_RUN_TIMEOUT_SECONDS} (a day)"
        ))),
        _ => Ok(()),
    }
}

fn encode<T: serde::Serialize>(v: &T) -> ApiResult<String> {
    serde_json::to_string(v).map_err(ApiError::internal)
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> ApiResult<T> {
    serde_json::from_str(text).map_err(ApiError::internal)
}

/// The parts of a stored workload the scheduler and runner need, decoded.
pub struct Workload {
    pub row: WorkloadRow,
    pub kind: WorkloadKind,
    pub schedule: Option<Schedule>,
    pub triggers: Vec<Trigger>,
    pub env: BTreeMap<String, String>,
    pub vm: WorkloadVm,
}

impl Workload {
    pub fn decode(row: WorkloadRow) -> ApiResult<Self> {
        Ok(Workload {
            kind: if row.kind == "cron" {
                WorkloadKind::Cron
            } else {
                WorkloadKind::Job
            },
            schedule: row.schedule.as_deref().map(decode).transpose()?,
            triggers: decode(&row.triggers)?,
            env: decode(&row.env)?,
            vm: decode(&row.vm)?,
            row,
        })
    }

    pub fn cron(&self) -> Option<CronSchedule> {
        let s = self.schedule.as_ref()?;
        CronSchedule::parse(&s.cron, &s.timezone).ok()
    }

    fn record(&self, base_url: &str) -> WorkloadRecord {
        let r = &self.row;
        WorkloadRecord {
            id: r.id.clone(),
            slug: r.slug.clone(),
            kind: self.kind,
            version: r.version.clone(),
            status: if r.status == "paused" {
                WorkloadStatus::Paused
            } else {
                WorkloadStatus::Active
            },
            snapshot_id: r.snapshot_id.clone(),
            workdir: r.workdir.clone(),
            start_command: r.start_command.clone(),
            env_keys: self.env.keys().cloned().collect(),
            vm: self.vm.clone(),
            schedule: self.schedule.clone(),
            triggers: self
                .triggers
                .iter()
                .map(|t| Trigger {
                    url: (t.kind == TriggerType::Webhook).then(|| {
                        format!(
                            "{base_url}/v1/hooks/{}{}",
                            r.id,
                            t.path.as_deref().unwrap_or_default()
                        )
                    }),
                    ..t.clone()
                })
                .collect(),
            next_run_at: r.next_run_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            webhook_secret: None,
        }
    }
}

pub fn run_record(row: &RunRow, slug: &str) -> RunRecord {
    let parse_trigger = |t: &str| match t {
        "schedule" => RunTrigger::Schedule,
        "webhook" => RunTrigger::Webhook,
        "catchup" => RunTrigger::Catchup,
        "retry" => RunTrigger::Retry,
        _ => RunTrigger::Manual,
    };
    let status = match row.status.as_str() {
        "queued" => RunStatus::Queued,
        "running" => RunStatus::Running,
        "succeeded" => RunStatus::Succeeded,
        "timed_out" => RunStatus::TimedOut,
        "skipped" => RunStatus::Skipped,
        _ => RunStatus::Failed,
    };
    RunRecord {
        id: row.id.clone(),
        workload_id: row.workload_id.clone(),
        slug: slug.to_owned(),
        trigger: parse_trigger(&row.trigger),
        status,
        exit_code: row.exit_code,
        attempt: row.attempt,
        scheduled_for: row.scheduled_for,
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        duration_ms: match (row.started_at, row.finished_at) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds().max(0) as u64),
            _ => None,
        },
        vm_id: row.vm_id.clone(),
        error: row.error.clone(),
    }
}

/// The caller's workload `slug`.
pub async fn owned(state: &AppState, user_id: i64, slug: &str) -> ApiResult<Workload> {
    let s = slug.to_owned();
    let row = state
        .db(move |st| st.get_workload(user_id, &s))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no workload named {slug:?}")))?;
    Workload::decode(row)
}

/// Register or replace a workload. A replaced cron workload's next time is computed anew; a
/// replaced job gets a new webhook secret only when it has hmac triggers.
pub async fn deploy(
    state: &AppState,
    user_id: i64,
    req: CreateWorkloadRequest,
    base_url: &str,
) -> ApiResult<(WorkloadRecord, bool)> {
    validate(&req)?;
    let snap = snapshots::owned(state, user_id, &req.snapshot_id).await?;
    if !crate::vms::bootable(snap.record.status) {
        return Err(ApiError::Conflict(format!(
            "snapshot {} is {}; a workload needs a ready snapshot",
            req.snapshot_id,
            snap.record.status.as_str()
        )));
    }
    let now = Utc::now();
    let slug = req.slug.clone();
    let existing = state.db(move |s| s.get_workload(user_id, &slug)).await?;
    let next_run_at = match &req.schedule {
        Some(s) => CronSchedule::parse(&s.cron, &s.timezone)
            .map_err(bad)?
            .next_after(now),
        None => None,
    };
    let hmac = req.triggers.iter().any(|t| t.auth == TriggerAuth::Hmac);
    let secret = hmac.then(new_secret);
    let kind = match req.kind {
        WorkloadKind::Cron => "cron",
        WorkloadKind::Job => "job",
    };
    let triggers: Vec<Trigger> = req
        .triggers
        .iter()
        .map(|t| Trigger {
            url: None,
            ..t.clone()
        })
        .collect();
    let row = WorkloadRow {
        id: existing
            .as_ref()
            .map(|w| w.id.clone())
            .unwrap_or_else(|| new_id("wl")),
        user_id,
        slug: req.slug.clone(),
        kind: kind.to_owned(),
        version: req.version.clone().unwrap_or_else(|| "0.0.0".into()),
        status: "active".into(),
        snapshot_id: req.snapshot_id.clone(),
        workdir: req
            .workdir
            .clone()
            .unwrap_or_else(|| DEFAULT_WORKDIR.into()),
        start_command: req.start_command.clone(),
        env: encode(&req.env)?,
        vm: encode(&req.vm)?,
        schedule: req.schedule.as_ref().map(encode).transpose()?,
        triggers: encode(&triggers)?,
        webhook_secret: secret.clone(),
        next_run_at,
        created_at: now,
        updated_at: now,
    };
    let stored = state.db(move |s| s.upsert_workload(&row)).await?;
    // A paused workload stays paused across a redeploy: its schedule waits for `resume`.
    if stored.status == "paused" {
        let id = stored.id.clone();
        state
            .db(move |s| s.set_workload_status(&id, "paused", None, now))
            .await?;
    }
    let id = stored.id.clone();
    let stored = state
        .db(move |s| s.get_workload_by_id(&id))
        .await?
        .ok_or_else(|| ApiError::internal("workload vanished after its write"))?;
    let mut record = Workload::decode(stored)?.record(base_url);
    record.webhook_secret = secret;
    runner::wake(state);
    Ok((record, existing.is_none()))
}

pub async fn list(state: &AppState, user_id: i64, base_url: &str) -> ApiResult<WorkloadList> {
    let rows = state.db(move |s| s.list_workloads(user_id)).await?;
    let workloads = rows
        .into_iter()
        .map(|r| Workload::decode(r).map(|w| w.record(base_url)))
        .collect::<ApiResult<_>>()?;
    Ok(WorkloadList { workloads })
}

pub async fn get(
    state: &AppState,
    user_id: i64,
    slug: &str,
    base_url: &str,
) -> ApiResult<WorkloadRecord> {
    Ok(owned(state, user_id, slug).await?.record(base_url))
}

/// Deleting a workload stops its schedule and triggers; runs in flight finish on their own.
pub async fn delete(state: &AppState, user_id: i64, slug: &str) -> ApiResult<()> {
    let s = slug.to_owned();
    if !state.db(move |st| st.delete_workload(user_id, &s)).await? {
        return Err(ApiError::NotFound(format!("no workload named {slug:?}")));
    }
    Ok(())
}

/// Pause (no scheduled runs; triggers refuse) or resume (the schedule continues from now: the
/// times passed while paused are not caught up).
pub async fn set_paused(
    state: &AppState,
    user_id: i64,
    slug: &str,
    paused: bool,
    base_url: &str,
) -> ApiResult<WorkloadRecord> {
    let w = owned(state, user_id, slug).await?;
    let now = Utc::now();
    let next = if paused {
        None
    } else {
        w.cron().and_then(|c| c.next_after(now))
    };
    let id = w.row.id.clone();
    let status = if paused { "paused" } else { "active" };
    state
        .db(move |s| s.set_workload_status(&id, status, next, now))
        .await?;
    runner::wake(state);
    get(state, user_id, slug, base_url).await
}

/// Queue a run now (a manual run or a webhook's), answering its record.
pub async fn start_run(
    state: &AppState,
    w: &Workload,
    trigger: &str,
    payload: Option<String>,
) -> ApiResult<RunRecord> {
    if w.row.status == "paused" {
        return Err(ApiError::Conflict(format!(
            "workload {} is paused; resume it first",
            w.row.slug
        )));
    }
    let now = Utc::now();
    let run = NewRun {
        id: new_id("run"),
        trigger: trigger.to_owned(),
        status: "queued".into(),
        attempt: 1,
        scheduled_for: None,
        not_before: now,
        payload,
        error: None,
    };
    let (wid, uid, rid) = (w.row.id.clone(), w.row.user_id, run.id.clone());
    state
        .db(move |s| s.insert_run(&wid, uid, &run, now))
        .await?;
    runner::wake(state);
    let row = state
        .db(move |s| s.get_run(&rid))
        .await?
        .ok_or_else(|| ApiError::internal("run vanished after its write"))?;
    Ok(run_record(&row, &w.row.slug))
}

/// Newest first.
pub async fn history(state: &AppState, w: &Workload, limit: u32) -> ApiResult<RunList> {
    let id = w.row.id.clone();
    let rows = state.db(move |s| s.list_runs(&id, limit)).await?;
    Ok(RunList {
        runs: rows.iter().map(|r| run_record(r, &w.row.slug)).collect(),
    })
}

/// A run of one of the caller's workloads.
pub async fn owned_run(
    state: &AppState,
    user_id: i64,
    run_id: &str,
) -> ApiResult<(RunRow, Workload)> {
    let id = run_id.to_owned();
    let not_found = || ApiError::NotFound(format!("no run {run_id:?}"));
    let run = state
        .db(move |s| s.get_run(&id))
        .await?
        .filter(|r| r.user_id == user_id)
        .ok_or_else(not_found)?;
    let wid = run.workload_id.clone();
    let w = state
        .db(move |s| s.get_workload_by_id(&wid))
        .await?
        .ok_or_else(not_found)?;
    Ok((run, Workload::decode(w)?))
}

/// How a hook request proves itself, per its trigger's `auth`.
pub enum HookCredential<'a> {
    /// The owner's API key was checked by the caller.
    ApiKey(bool),
    Signature(Option<&'a str>),
}

/// Find the webhook trigger for `path` of workload `id`, check the request's credential, and
/// queue the run. Every refusal is 401 or 404 with a reason that leaks nothing about secrets.
pub async fn hook(
    state: &AppState,
    workload_id: &str,
    path: &str,
    signature: Option<&str>,
    api_key_user: Option<i64>,
    body: &[u8],
) -> ApiResult<RunRecord> {
    let id = workload_id.to_owned();
    let not_found = || {
        ApiError::NotFound(format!(
            "no webhook trigger at /v1/hooks/{workload_id}{path}"
        ))
    };
    let row = state
        .db(move |s| s.get_workload_by_id(&id))
        .await?
        .ok_or_else(not_found)?;
    let w = Workload::decode(row)?;
    let trigger = w
        .triggers
        .iter()
        .find(|t| t.kind == TriggerType::Webhook && t.path.as_deref() == Some(path))
        .ok_or_else(not_found)?;
    match trigger.auth {
        TriggerAuth::None => {}
        TriggerAuth::ApiKey => {
            if api_key_user != Some(w.row.user_id) {
                return Err(ApiError::Unauthorized(
                    "this trigger needs the workload owner's X-API-Key header".into(),
                ));
            }
        }
        TriggerAuth::Hmac => {
            let secret = w.row.webhook_secret.as_deref().unwrap_or_default();
            verify_signature(secret, signature, body, Utc::now())?;
        }
    }
    let payload = (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned());
    start_run(state, &w, "webhook", payload).await
}

/// The signature contract of spec/webhooks.md §1, as a receiver checks it: header
/// `InstaVM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, the key being
/// the secret's UTF-8 bytes, within 300 s of now.
pub fn verify_signature(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let refuse = |why: &str| {
        ApiError::Unauthorized(format!(
            "{why}; sign the body with the workload's webhook secret: InstaVM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">"
        ))
    };
    let header = header
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| refuse("the InstaVM-Signature header is missing"))?;
    let (mut t, mut v1) = (None, None);
    for item in header.split(',') {
        if let Some((k, v)) = item.split_once('=') {
            match k.trim() {
                "t" => t = Some(v.trim().to_owned()),
                "v1" => v1 = Some(v.trim().to_lowercase()),
                _ => {}
            }
        }
    }
    let t = t.ok_or_else(|| refuse("the signature has no t= timestamp"))?;
    let v1 = v1.ok_or_else(|| refuse("the signature has no v1= digest"))?;
    let t: i64 = t
        .parse()
        .map_err(|_| refuse("the signature's timestamp is not an integer"))?;
    if (now.timestamp() - t).abs() > SIGNATURE_TOLERANCE_SECONDS {
        return Err(refuse(
            "the signature's timestamp is more than 300 s away from now",
        ));
    }
    let digest = hex::decode(&v1).map_err(|_| refuse("the signature does not match"))?;
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).map_err(ApiError::internal)?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    // Constant time.
    mac.verify_slice(&digest)
        .map_err(|_| refuse("the signature does not match"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_follow_the_webhook_contract() {
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let body = br#"{"id":"evt_1","event_type":"webhook.test"}"#;
        let good = sign("whsec_test", 1_700_000_000, body);
        assert!(verify_signature("whsec_test", Some(&good), body, now).is_ok());
        // The contract's worked example.
        assert_eq!(
            good,
            "t=1700000000,v1=890797583de4452b0b2411b0be0a1dd51250edfed3ad44813c4651a029ba9a76"
        );
        assert!(verify_signature("whsec_other", Some(&good), body, now).is_err());
        assert!(verify_signature("whsec_test", Some(&good), b"{}", now).is_err());
        assert!(verify_signature("whsec_test", None, body, now).is_err());
        assert!(verify_signature("whsec_test", Some("v1=00"), body, now).is_err());
        let stale = now + chrono::Duration::seconds(301);
        assert!(verify_signature("whsec_test", Some(&good), body, stale).is_err());
        let upper = good
            .to_uppercase()
            .replace("T=", "t=")
            .replace("V1=", "v1=");
        assert!(verify_signature("whsec_test", Some(&upper), body, now).is_ok());
    }

    fn job(triggers: Vec<Trigger>) -> CreateWorkloadRequest {
        CreateWorkloadRequest {
            slug: "nightly".into(),
            kind: WorkloadKind::Job,
            version: None,
            snapshot_id: "snap".into(),
            workdir: None,
            start_command: "true".into(),
            env: BTreeMap::new(),
            vm: WorkloadVm::default(),
            schedule: None,
            triggers,
        }
    }

    #[test]
    fn registrations_are_checked() {
        let hook = |path: Option<&str>| Trigger {
            kind: TriggerType::Webhook,
            path: path.map(Into::into),
            auth: TriggerAuth::Hmac,
            timeout_seconds: None,
            url: None,
        };
        assert!(validate(&job(vec![hook(Some("/go"))])).is_ok());
        assert!(validate(&job(vec![])).is_err());
        assert!(validate(&job(vec![hook(None)])).is_err());
        assert!(validate(&job(vec![hook(Some("/a/../b"))])).is_err());
        assert!(validate(&job(vec![hook(Some("/go")), hook(Some("/go"))])).is_err());
        let mut cron = job(vec![]);
        cron.kind = WorkloadKind::Cron;
        assert!(validate(&cron).is_err(), "a cron workload needs a schedule");
        cron.schedule = Some(Schedule {
            cron: "*/5 * * * *".into(),
            timezone: "Asia/Tokyo".into(),
            concurrency: Concurrency::Skip,
            catchup: Catchup::RunOnce,
            timeout_seconds: Some(60),
            retries: RetryPolicy::default(),
        });
        assert!(validate(&cron).is_ok());
        cron.slug = "Bad Slug".into();
        assert!(validate(&cron).is_err());
    }
}
