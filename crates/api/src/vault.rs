//! Secrets vaults (spec §4). No response type has a field for a credential value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVaultRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateVaultRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultRecord {
    pub id: String,
    pub vault_id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultList {
    pub vaults: Vec<VaultRecord>,
}

/// `POST .../credentials`. `value` is write-only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCredentialRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for CreateCredentialRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateCredentialRequest")
            .field("name", &self.name)
            .field("credential_type", &self.credential_type)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateCredentialRequest {
    #[serde(default)]
    pub value: Option<String>,
}

impl std::fmt::Debug for RotateCredentialRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RotateCredentialRequest { .. }")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    pub id: String,
    pub credential_id: String,
    pub vault_id: String,
    pub name: String,
    pub credential_type: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialList {
    pub credentials: Vec<CredentialRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateServiceRequest {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub auth_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub id: String,
    pub service_id: String,
    pub vault_id: String,
    pub host: String,
    pub auth_config: serde_json::Value,
    pub enabled: bool,
    pub description: Option<String>,
    pub template_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceList {
    pub services: Vec<ServiceRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromTemplateRequest {
    #[serde(default)]
    pub template_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FromTemplateResponse {
    pub vault_id: String,
    /// The services bound by this call.
    pub services: Vec<ServiceRecord>,
    pub created: usize,
    /// Template ids whose host the vault already had a service for.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogTemplate {
    pub id: String,
    pub name: String,
    pub host: String,
    pub auth_type: String,
    pub credential_key: String,
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub path_placeholder: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogList {
    pub templates: Vec<CatalogTemplate>,
}

/// `GET .../discover`: names and hosts only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultDiscovery {
    pub vault_id: String,
    pub name: String,
    pub credentials: Vec<DiscoveredCredential>,
    pub services: Vec<DiscoveredService>,
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredCredential {
    pub name: String,
    pub credential_type: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredService {
    pub host: String,
    pub auth_type: String,
    pub enabled: bool,
    /// The credentials its auth_config names.
    pub credential_names: Vec<String>,
    /// Names it refers to that the vault does not have (nothing is injected for those).
    pub missing_credentials: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLogQuery {
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLogRecord {
    pub timestamp: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub vault_id: String,
    pub vm_id: Option<String>,
    pub host: String,
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub status: Option<u16>,
    pub status_code: Option<u16>,
    pub credential_name: Option<String>,
    pub credential_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLogList {
    pub logs: Vec<RequestLogRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedResponse {
    pub deleted: bool,
    pub id: String,
}
