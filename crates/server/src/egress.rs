//! Egress policy rules (spec §2): reading a request, storing policies of VMs and sessions,
//! deciding which one a sandbox follows, and applying it through the runtime.
//!
//! A VM follows the newer of its own policy and its session's (a set on either applies at once
//! to the VM running now). A VM that replaces another (resume) inherits the old VM's policy.
//! VMs and sessions without a policy follow the default, open one. What the fields mean is in
//! `instavm_net::egress::policy` and docs/network.md.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::{sessions, vms};
use chrono::Utc;
use instavm_api::{EgressPolicyRequest, EgressPolicyResponse, VmState};
use instavm_net::egress::policy;
use instavm_runtime::{EgressPolicy, SandboxId};
use instavm_store::{EgressRow, VmRow};

pub const VM: &str = "vm";
pub const SESSION: &str = "session";

/// A request as a validated policy (defaults as the SDK's: everything allowed, no lists).
pub fn from_request(req: &EgressPolicyRequest) -> ApiResult<EgressPolicy> {
    let d = EgressPolicy::default();
    let p = EgressPolicy {
        allow_package_managers: req
            .allow_public_repos
            .or(req.allow_package_managers)
            .unwrap_or(d.allow_package_managers),
        allow_http: req.allow_http.unwrap_or(d.allow_http),
        allow_https: req.allow_https.unwrap_or(d.allow_https),
        allowed_domains: req.allowed_domains.clone().unwrap_or_default(),
        allowed_cidrs: req.allowed_cidrs.clone().unwrap_or_default(),
    };
    policy::validate(&p).map_err(ApiError::Unprocessable)
}

/// `open`, `allowlist` or `deny`, as docs/network.md names the combinations.
pub fn mode(p: &EgressPolicy) -> &'static str {
    if p.is_open() {
        "open"
    } else if p.allow_http
        || p.allow_https
        || p.allow_package_managers
        || !p.allowed_domains.is_empty()
        || !p.allowed_cidrs.is_empty()
    {
        "allowlist"
    } else {
        "deny"
    }
}

async fn stored(
    state: &AppState,
    kind: &'static str,
    id: &str,
) -> ApiResult<Option<(EgressPolicy, EgressRow)>> {
    let id = id.to_owned();
    let row = state.db(move |s| s.get_egress_policy(kind, &id)).await?;
    Ok(row.and_then(|r| {
        serde_json::from_str::<EgressPolicy>(&r.policy)
            .ok()
            .map(|p| (p, r))
    }))
}

async fn store(
    state: &AppState,
    kind: &'static str,
    id: &str,
    user_id: i64,
    p: &EgressPolicy,
) -> ApiResult<()> {
    let row = EgressRow {
        target_type: kind.into(),
        target_id: id.to_owned(),
        user_id,
        policy: serde_json::to_string(p).map_err(ApiError::internal)?,
        updated_at: Utc::now(),
    };
    state.db(move |s| s.set_egress_policy(&row)).await
}

/// The policy a VM follows and where it comes from.
pub async fn effective(state: &AppState, vm: &VmRow) -> ApiResult<(EgressPolicy, &'static str)> {
    let own = stored(state, VM, &vm.record.vm_id).await?;
    let session = stored(state, SESSION, &vm.record.session_id).await?;
    Ok(match (own, session) {
        (Some((v, vr)), Some((s, sr))) => {
            if sr.updated_at > vr.updated_at {
                (s, SESSION)
            } else {
                (v, VM)
            }
        }
        (Some((v, _)), None) => (v, VM),
        (None, Some((s, _))) => (s, SESSION),
        (None, None) => (EgressPolicy::default(), "default"),
    })
}

fn running_sandbox(vm: &VmRow) -> Option<SandboxId> {
    (vm.record.status == VmState::Active)
        .then(|| vm.sandbox_id.as_deref().and_then(SandboxId::parse))
        .flatten()
}

/// Store the policy a VM was created with (before it boots).
pub async fn set_initial(
    state: &AppState,
    vm_id: &str,
    user_id: i64,
    p: &EgressPolicy,
) -> ApiResult<()> {
    store(state, VM, vm_id, user_id, p).await
}

/// Apply the policy of a VM whose sandbox was just created, before anyone gets to use it.
/// `replaces`: the VM it takes over from (resume), whose policy it inherits.
pub async fn apply_new(
    state: &AppState,
    vm: &VmRow,
    sandbox: &SandboxId,
    replaces: Option<&VmRow>,
) -> ApiResult<()> {
    if let Some(old) = replaces {
        if stored(state, VM, &vm.record.vm_id).await?.is_none() {
            if let Some((p, _)) = stored(state, VM, &old.record.vm_id).await? {
                store(state, VM, &vm.record.vm_id, vm.user_id, &p).await?;
            }
        }
    }
    let (p, source) = effective(state, vm).await?;
    if source != "default" {
        state.runtime().set_egress(sandbox, &p).await?;
    }
    Ok(())
}

/// After a restart: apply every running VM's stored policy again (the runtime keeps them
/// across restarts too; this makes the database the authority).
pub async fn reapply(state: &AppState) -> ApiResult<usize> {
    let active = state.db(|s| s.vms_with_status(VmState::Active)).await?;
    let mut n = 0;
    for vm in active {
        let Some(sb) = running_sandbox(&vm) else {
            continue;
        };
        let (p, source) = effective(state, &vm).await?;
        if source == "default" {
            continue;
        }
        match state.runtime().set_egress(&sb, &p).await {
            Ok(()) => n += 1,
            Err(e) => {
                tracing::error!(vm_id = %vm.record.vm_id, "re-applying its egress policy: {e}")
            }
        }
    }
    Ok(n)
}

async fn answer(
    state: &AppState,
    kind: &'static str,
    target: &str,
    p: EgressPolicy,
    source: &'static str,
    vm: Option<&VmRow>,
) -> EgressPolicyResponse {
    let running = vm.and_then(running_sandbox);
    let denied = match &running {
        Some(sb) => state.runtime().egress_denials(sb).await.unwrap_or(0),
        None => 0,
    };
    EgressPolicyResponse {
        status: "ok".into(),
        target_type: kind.into(),
        target_id: target.to_owned(),
        allow_public_repos: p.allow_package_managers,
        allow_package_managers: p.allow_package_managers,
        allow_http: p.allow_http,
        allow_https: p.allow_https,
        mode: mode(&p).into(),
        allowed_domains: p.allowed_domains,
        allowed_cidrs: p.allowed_cidrs,
        source: source.into(),
        vm_id: running.and(vm.map(|v| v.record.vm_id.clone())),
        denied_attempts: denied,
    }
}

/// GET for a VM: the policy it follows.
pub async fn get_vm(
    state: &AppState,
    user_id: i64,
    vm_id: &str,
) -> ApiResult<EgressPolicyResponse> {
    let vm = vms::owned(state, user_id, vm_id).await?;
    let (p, source) = effective(state, &vm).await?;
    Ok(answer(state, VM, vm_id, p, source, Some(&vm)).await)
}

/// GET for a session: the session's own policy (or the default), with its current VM's count.
pub async fn get_session(
    state: &AppState,
    user_id: i64,
    sid: &str,
) -> ApiResult<EgressPolicyResponse> {
    let session = sessions::owned(state, user_id, sid).await?;
    let vm = vms::of_session(state, &session).await.ok();
    let (p, source) = match stored(state, SESSION, sid).await? {
        Some((p, _)) => (p, SESSION),
        None => (EgressPolicy::default(), "default"),
    };
    Ok(answer(state, SESSION, sid, p, source, vm.as_ref()).await)
}

/// POST for a VM: store, then apply to its sandbox if it runs.
pub async fn set_vm(
    state: &AppState,
    user_id: i64,
    vm_id: &str,
    req: &EgressPolicyRequest,
) -> ApiResult<EgressPolicyResponse> {
    let p = from_request(req)?;
    let vm = vms::owned(state, user_id, vm_id).await?;
    store(state, VM, vm_id, user_id, &p).await?;
    if let Some(sb) = running_sandbox(&vm) {
        state.runtime().set_egress(&sb, &p).await?;
    }
    tracing::info!(vm_id, mode = mode(&p), "egress policy set");
    Ok(answer(state, VM, vm_id, p, VM, Some(&vm)).await)
}

/// POST for a session: store, then apply to the session's VM if one runs.
pub async fn set_session(
    state: &AppState,
    user_id: i64,
    sid: &str,
    req: &EgressPolicyRequest,
) -> ApiResult<EgressPolicyResponse> {
    let p = from_request(req)?;
    let session = sessions::owned(state, user_id, sid).await?;
    store(state, SESSION, sid, user_id, &p).await?;
    let vm = vms::of_session(state, &session).await.ok();
    if let Some(sb) = vm.as_ref().and_then(running_sandbox) {
        state.runtime().set_egress(&sb, &p).await?;
    }
    tracing::info!(session = sid, mode = mode(&p), "egress policy set");
    Ok(answer(state, SESSION, sid, p, SESSION, vm.as_ref()).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_take_the_sdk_defaults_and_both_flag_names() {
        let p = from_request(&EgressPolicyRequest::default()).unwrap();
        assert_eq!(p, EgressPolicy::default());
        assert_eq!(mode(&p), "open");
        let p = from_request(&EgressPolicyRequest {
            allow_package_managers: Some(false),
            allow_http: Some(false),
            allow_https: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert!(!p.allow_package_managers);
        assert_eq!(mode(&p), "deny");
        let p = from_request(&EgressPolicyRequest {
            allow_public_repos: Some(false),
            allow_http: Some(false),
            allow_https: Some(false),
            allowed_domains: Some(vec!["Example.com".into()]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.allowed_domains, vec!["example.com"]);
        assert_eq!(mode(&p), "allowlist");
        assert!(from_request(&EgressPolicyRequest {
            allowed_cidrs: Some(vec!["nope".into()]),
            ..Default::default()
        })
        .is_err());
    }
}
