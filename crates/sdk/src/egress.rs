//! Egress policy (spec §2): per session and per VM.

use crate::*;

/// Which policy: a session's or a VM's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressTarget<'a> {
    Session(&'a str),
    Vm(&'a str),
}

impl EgressTarget<'_> {
    fn segments(&self) -> [&str; 4] {
        match self {
            EgressTarget::Session(id) => ["v1", "egress", "session", id],
            EgressTarget::Vm(id) => ["v1", "egress", "vm", id],
        }
    }
}

impl Client {
    /// `GET /v1/egress/{session|vm}/{id}`.
    pub async fn get_egress(&self, target: EgressTarget<'_>) -> Result<EgressPolicyResponse> {
        self.get(&target.segments()).await
    }

    /// `POST /v1/egress/{session|vm}/{id}` with all five fields, as the official SDK sends
    /// them (`allow_package_managers` goes out as `allow_public_repos`).
    pub async fn set_egress(
        &self,
        target: EgressTarget<'_>,
        policy: &EgressPolicyRequest,
    ) -> Result<EgressPolicyResponse> {
        let body = EgressPolicyRequest {
            allow_public_repos: Some(
                policy
                    .allow_public_repos
                    .or(policy.allow_package_managers)
                    .unwrap_or(true),
            ),
            allow_package_managers: None,
            allow_http: Some(policy.allow_http.unwrap_or(true)),
            allow_https: Some(policy.allow_https.unwrap_or(true)),
            allowed_domains: Some(policy.allowed_domains.clone().unwrap_or_default()),
            allowed_cidrs: Some(policy.allowed_cidrs.clone().unwrap_or_default()),
        };
        self.post(&target.segments(), &body).await
    }
}
