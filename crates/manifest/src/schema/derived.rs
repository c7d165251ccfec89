//! What the deploy pipeline derives from a manifest: the effective egress allowlist, the egress
//! policy and the volume entries of `POST /v1/vms` (the reference's `effective_egress_entries`,
//! `build_egress_policy_payload`, `volume_payloads_for_manifest` and `build_vm_payload`).

use super::model::Manifest;
use crate::py::json::Json;
use crate::yaml::PyInt;

/// One entry of the effective allowlist with where it came from: `egress.allowed_domains`,
/// `egress.hosts` (legacy) or `vault.hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressDomain {
    pub domain: String,
    pub source: &'static str,
}

/// The `egress_policy` of VM create and `POST /v1/egress/session/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    pub allow_public_repos: bool,
    pub allow_http: bool,
    pub allow_https: bool,
    pub allowed_domains: Vec<String>,
    pub allowed_cidrs: Vec<String>,
}

/// One entry of the `volumes` array of VM create.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumePayload {
    pub name: String,
    pub mount_path: String,
    pub mode: String,
    pub volume_id: Option<String>,
    pub size_gb: Option<PyInt>,
    pub create_if_missing: bool,
    pub checkpoint_id: Option<String>,
}

impl Manifest {
    /// The effective allowlist, in order and without duplicates.
    pub fn effective_egress(&self) -> Vec<EgressDomain> {
        let mut entries: Vec<EgressDomain> = Vec::new();
        let mut add = |domain: &str, source: &'static str| {
            if !entries.iter().any(|e| e.domain == domain) {
                entries.push(EgressDomain {
                    domain: domain.to_string(),
                    source,
                });
            }
        };
        let vault_hosts = self
            .vault
            .as_ref()
            .map(|v| v.hosts.as_slice())
            .unwrap_or_default();
        let Some(egress) = &self.egress else {
            // v1 without an egress block: the vault hosts alone.
            if self.is_v1() {
                vault_hosts.iter().for_each(|h| add(h, "vault.hosts"));
            }
            return entries;
        };
        for domain in &egress.allowed_domains {
            let source = if egress.legacy_hosts.contains(domain) {
                "egress.hosts"
            } else {
                "egress.allowed_domains"
            };
            add(domain, source);
        }
        if egress.include_vault_hosts {
            vault_hosts.iter().for_each(|h| add(h, "vault.hosts"));
        }
        entries
    }

    /// The egress policy to send, or `None` when nothing restricts egress.
    pub fn egress_policy(&self) -> Option<EgressPolicy> {
        let domains = || {
            self.effective_egress()
                .into_iter()
                .map(|e| e.domain)
                .collect()
        };
        let Some(egress) = &self.egress else {
            let hosts: Vec<String> = domains();
            return (!hosts.is_empty()).then_some(EgressPolicy {
                allow_public_repos: true,
                allow_http: true,
                allow_https: true,
                allowed_domains: hosts,
                allowed_cidrs: Vec::new(),
            });
        };
        let open = egress.mode == "open";
        let allowlist = egress.mode == "allowlist";
        Some(EgressPolicy {
            allow_public_repos: egress.allow_package_managers,
            allow_http: open,
            allow_https: open,
            allowed_domains: if allowlist { domains() } else { Vec::new() },
            allowed_cidrs: if allowlist {
                egress.allowed_cidrs.clone()
            } else {
                Vec::new()
            },
        })
    }

    pub fn volume_payloads(&self) -> Vec<VolumePayload> {
        self.volumes
            .iter()
            .map(|v| VolumePayload {
                name: v.name.clone(),
                mount_path: v.mount.clone(),
                mode: v.mode.clone(),
                volume_id: v.id.clone(),
                size_gb: v.size_gb.clone(),
                create_if_missing: v.create_if_missing,
                checkpoint_id: v.checkpoint_id.clone(),
            })
            .collect()
    }

    /// The body of `POST /v1/vms` for this manifest (`build_vm_payload`).
    pub fn vm_payload(&self, snapshot_id: Option<&str>, vault_ids: &[String]) -> Json {
        let mut body: Vec<(&str, Json)> = vec![
            ("memory_mb", int_json(&self.vm.memory_mb)),
            ("vcpu_count", int_json(&self.vm.vcpu_count)),
        ];
        if let Some(timeout) = &self.vm.timeout_seconds {
            body.push(("vm_lifetime_seconds", int_json(timeout)));
        }
        if let Some(variant) = &self.vm.image_variant {
            body.push(("image_variant", Json::str(variant)));
        } else if self.vm.profile.as_deref() == Some("computer_use") {
            body.push(("image_variant", Json::str("computer-use")));
        }
        if self.vm.metadata.truthy() {
            body.push(("metadata", self.vm.metadata.clone()));
        }
        if let Some(id) = snapshot_id.filter(|s| !s.is_empty()) {
            body.push(("snapshot_id", Json::str(id)));
        }
        let volumes = self.volume_payloads();
        if !volumes.is_empty() {
            body.push((
                "volumes",
                Json::Array(volumes.iter().map(VolumePayload::to_json).collect()),
            ));
        }
        if let Some(policy) = self.egress_policy() {
            body.push(("egress_policy", policy.to_json()));
        }
        let mut ids: Vec<&String> = Vec::new();
        for id in vault_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if !ids.is_empty() {
            body.push(("vault_ids", Json::strings(ids)));
        }
        Json::object(body)
    }
}

/// A Python int as JSON: `true` stays `true`.
pub(crate) fn int_json(value: &PyInt) -> Json {
    match value {
        PyInt::Bool(b) => Json::Bool(*b),
        PyInt::Int(i) => Json::Int(i.clone()),
    }
}

impl EgressPolicy {
    pub fn to_json(&self) -> Json {
        Json::object([
            ("allow_public_repos", Json::Bool(self.allow_public_repos)),
            ("allow_http", Json::Bool(self.allow_http)),
            ("allow_https", Json::Bool(self.allow_https)),
            ("allowed_domains", Json::strings(&self.allowed_domains)),
            ("allowed_cidrs", Json::strings(&self.allowed_cidrs)),
        ])
    }
}

impl VolumePayload {
    pub fn to_json(&self) -> Json {
        let mut entries = vec![
            ("name", Json::str(&self.name)),
            ("mount_path", Json::str(&self.mount_path)),
            ("mode", Json::str(&self.mode)),
        ];
        if let Some(id) = &self.volume_id {
            entries.push(("volume_id", Json::str(id)));
        }
        if let Some(size) = &self.size_gb {
            entries.push(("size_gb", int_json(size)));
        }
        if self.create_if_missing {
            entries.push(("create_if_missing", Json::Bool(true)));
        }
        if let Some(checkpoint) = &self.checkpoint_id {
            entries.push(("checkpoint_id", Json::str(checkpoint)));
        }
        Json::object(entries)
    }
}
