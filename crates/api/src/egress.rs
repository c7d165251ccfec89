//! Egress policy (spec §2): the body of `POST /v1/egress/{session|vm}/{id}` and of
//! `egress_policy` on `POST /v1/vms`, and the answer of both routes.

use serde::{Deserialize, Serialize};

/// The five fields. The SDK always sends all of them; a missing one (or `null`) takes the
/// SDK's default. `allow_package_managers` is accepted as an alias of `allow_public_repos`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressPolicyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public_repos: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_package_managers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_https: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<String>>,
}

/// A policy as the routes answer it: both names of the package-manager flag (§2.2
/// [server-rec]), what it applies to, and the refused attempts counted so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressPolicyResponse {
    /// `"ok"`.
    pub status: String,
    /// `session` or `vm`.
    pub target_type: String,
    pub target_id: String,
    pub allow_public_repos: bool,
    pub allow_package_managers: bool,
    pub allow_http: bool,
    pub allow_https: bool,
    pub allowed_domains: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    /// `open` (http and https allowed: the public internet), `allowlist` (only what the lists
    /// and the package registries open) or `deny` (nothing).
    pub mode: String,
    /// Where the policy in force comes from: `vm`, `session` or `default`.
    pub source: String,
    /// The VM the policy applies to right now (for a session: its current VM), if running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    /// Refused DNS names, gate connections and dropped packets of that VM so far.
    pub denied_attempts: u64,
}
