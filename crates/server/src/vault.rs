//! Secrets vaults (spec §4, issue #13): the rules of the area. Handlers are in
//! `routes/vault.rs`; crypto, catalog and injection are in the `instavm-vault` crate; the TLS
//! proxy that injects at egress is `instavm_net::vault`.
//!
//! Values: a credential's value arrives in a create or rotate request, is sealed at once with
//! the credential's id as associated data, and from then on exists in clear only inside the
//! proxy, for the length of one injection. No route answers it, nothing logs it.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::Utc;
use instavm_api::*;
use instavm_store::{CredentialRow, RequestLogRow, ServiceRow, VaultRow};
use instavm_vault::{catalog, placeholder, AuthConfig, PlatformCa, Sealer, Secret};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const NOT_FOUND: &str = "vault not found";
const MAX_NAME: usize = 128;
const MAX_DESCRIPTION: usize = 1024;
/// Largest credential value accepted (a PEM key fits).
pub const MAX_VALUE: usize = 16 * 1024;
const MAX_CREDENTIALS: usize = 256;
const MAX_SERVICES: usize = 256;
const DEFAULT_LOG_LIMIT: i64 = 100;
const MAX_LOG_LIMIT: i64 = 1000;

/// Where the CA certificate is put inside a VM attached to a vault, and the bundle the usual
/// variables point at (the system bundle with the CA appended).
pub const VM_CA_PATH: &str = "/usr/local/share/ca-certificates/instavm-vault-ca.crt";
pub const VM_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Server settings of the vault (flags of `instavm server`, docs/vault.md).
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// The sealing key as 64 hex digits (`INSTAVM_VAULT_KEY`); `None`: `<data>/vault.key`.
    pub key: Option<String>,
    /// How long request-log rows are kept.
    pub log_retention: std::time::Duration,
    /// Extra CAs (PEM files) the proxy trusts for upstream servers, beside the host's store.
    pub upstream_ca: Vec<std::path::PathBuf>,
}

impl Default for VaultSettings {
    fn default() -> Self {
        VaultSettings {
            key: None,
            log_retention: std::time::Duration::from_secs(30 * 86400),
            upstream_ca: Vec::new(),
        }
    }
}

/// Load the sealing key and the CA of `data_dir` and hand them to the state.
pub fn start(
    state: &AppState,
    data_dir: &std::path::Path,
    settings: &VaultSettings,
) -> Result<(), String> {
    let sealer = Sealer::load(settings.key.as_deref(), data_dir).map_err(|e| e.to_string())?;
    let ca = Arc::new(PlatformCa::load_or_create(data_dir).map_err(|e| e.to_string())?);
    state.set_vault(Arc::new(VaultPlane {
        sealer,
        ca: Some(ca.clone()),
        log_retention: settings.log_retention,
    }));
    let roots =
        instavm_net::vault::upstream_roots(&settings.upstream_ca).map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(write_logs(state.clone(), rx));
    let dir = Arc::new(Directory {
        state: state.clone(),
        logs: tx,
    });
    let proxy = instavm_net::vault::VaultProxy::new(dir, ca, roots).map_err(|e| e.to_string())?;
    instavm_net::vault::install(Arc::new(proxy));
    Ok(())
}

/// What the vault proxy asks: which host a VM's vaults bind, with what credentials.
struct Directory {
    state: AppState,
    logs: tokio::sync::mpsc::UnboundedSender<instavm_net::vault::RequestLog>,
}

#[async_trait::async_trait]
impl instavm_net::vault::VaultDirectory for Directory {
    async fn binding(&self, sandbox: &str, host: &str) -> Option<instavm_net::vault::Binding> {
        use instavm_net::vault::{Binding, Material};
        let sealer = self.state.vault().sealer.clone();
        let (sandbox, host) = (sandbox.to_owned(), host.to_ascii_lowercase());
        let may_record = self.state.tapes().may_record();
        let found = self
            .state
            .db(move |s| {
                let Some((vm_id, vault_ids)) = s.vm_of_sandbox(&sandbox)? else {
                    return Ok(None);
                };
                for vault_id in vault_ids {
                    let services = s.list_services(&vault_id)?;
                    let Some(svc) = services
                        .into_iter()
                        .find(|x| x.enabled && catalog::host_matches(&x.host, &host))
                    else {
                        continue;
                    };
                    let Ok(auth) = AuthConfig::parse(&svc.auth_config) else {
                        continue;
                    };
                    let placeholders: std::collections::HashMap<String, String> =
                        s.vm_placeholders(&vm_id)?.into_iter().collect();
                    let creds = s
                        .list_credentials(&vault_id)?
                        .into_iter()
                        .filter(|c| c.enabled)
                        .filter_map(|c| {
                            let placeholder = placeholders.get(&c.id)?.clone();
                            let value = match sealer.open(&c.id, &c.sealed) {
                                Ok(v) => v,
                                Err(e) => {
                                    tracing::warn!(credential = %c.id, "vault: {e}");
                                    return None;
                                }
                            };
                            Some(Material {
                                id: c.id,
                                name: c.name,
                                value,
                                placeholder,
                            })
                        })
                        .collect();
                    // A tape recording egress content wants the bodies too.
                    let capture_bodies = may_record
                        && s.recording_tape_of_vm(&vm_id)?
                            .is_some_and(|t| t.record.record_egress_content);
                    return Ok(Some(Binding {
                        vm_id,
                        vault_id,
                        auth,
                        creds,
                        capture_bodies,
                    }));
                }
                Ok(None)
            })
            .await;
        match found {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("vault proxy lookup: {e}");
                None
            }
        }
    }

    fn record(&self, entry: instavm_net::vault::RequestLog) {
        let _ = self.logs.send(entry);
    }
}

/// Write request-log rows in batches (one transaction per batch).
async fn write_logs(
    state: AppState,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<instavm_net::vault::RequestLog>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 500 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if state.tapes().may_record() {
            for entry in &batch {
                crate::tapes::record_egress(&state, entry).await;
            }
        }
        let rows: Vec<RequestLogRow> = batch
            .into_iter()
            .map(|e| RequestLogRow {
                vault_id: e.vault_id,
                created_at: chrono::DateTime::<Utc>::from(e.at),
                vm_id: Some(e.vm_id),
                host: e.host,
                method: e.method,
                path: e.path,
                status: e.status,
                credential_id: e.credential_id,
                credential_name: e.credential_name,
            })
            .collect();
        if let Err(e) = state.db(move |s| s.insert_request_logs(&rows)).await {
            tracing::warn!("writing vault request logs: {e}");
        }
    }
}

/// Forget request-log rows older than the retention (the lifecycle sweep calls it).
pub async fn prune_logs(state: &AppState) -> ApiResult<usize> {
    let retention = chrono::Duration::from_std(state.vault().log_retention).unwrap_or_default();
    let before = Utc::now() - retention;
    state.db(move |s| s.prune_request_logs(before)).await
}

/// The vault's keys: the sealing key and the platform CA.
pub struct VaultPlane {
    pub sealer: Sealer,
    pub ca: Option<Arc<PlatformCa>>,
    /// How long request-log rows are kept.
    pub log_retention: std::time::Duration,
}

impl VaultPlane {
    /// A plane with a key that lives only in memory (router tests; a server always loads its
    /// key file or `INSTAVM_VAULT_KEY` at start).
    pub fn ephemeral() -> VaultPlane {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut key);
        VaultPlane {
            sealer: Sealer::from_key(key),
            ca: None,
            log_retention: std::time::Duration::from_secs(30 * 86400),
        }
    }
}

fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    format!("{prefix}_{}", hex::encode(b))
}

fn check_name(what: &str, name: Option<&str>) -> ApiResult<String> {
    let name = name.map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::Unprocessable(format!("{what} is required")));
    }
    if name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "{what} must be 1 to {MAX_NAME} bytes without control characters"
        )));
    }
    Ok(name.to_owned())
}

fn check_description(d: Option<String>) -> ApiResult<Option<String>> {
    match d {
        Some(d) if d.len() > MAX_DESCRIPTION => Err(ApiError::Unprocessable(format!(
            "description must be at most {MAX_DESCRIPTION} bytes"
        ))),
        other => Ok(other),
    }
}

fn check_value(v: Option<String>) -> ApiResult<Secret> {
    match v {
        Some(v) if !v.is_empty() && v.len() <= MAX_VALUE => Ok(Secret::new(v)),
        Some(v) if v.len() > MAX_VALUE => Err(ApiError::Unprocessable(format!(
            "value must be at most {MAX_VALUE} bytes"
        ))),
        _ => Err(ApiError::Unprocessable(
            "value is required and must not be empty".into(),
        )),
    }
}

/// Normalise a service host: lower case, no trailing dot; a DNS name, or `*.` plus one.
pub fn check_host(host: Option<&str>) -> ApiResult<String> {
    let raw = host.map(str::trim).unwrap_or_default();
    let h = raw.trim_end_matches('.').to_ascii_lowercase();
    let bad = || {
        ApiError::Unprocessable(format!(
            "host {raw:?} must be a DNS name such as api.example.com or *.example.com (no scheme, port or path)"
        ))
    };
    if h.is_empty() || h.len() > 253 {
        return Err(bad());
    }
    let name = h.strip_prefix("*.").unwrap_or(&h);
    let ok = name.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    });
    if !ok || !name.contains('.') && name != "localhost" {
        return Err(bad());
    }
    Ok(h)
}

pub fn vault_record(v: VaultRow) -> VaultRecord {
    VaultRecord {
        vault_id: v.id.clone(),
        id: v.id,
        name: v.name,
        description: v.description,
        created_at: v.created_at,
        updated_at: v.updated_at,
    }
}

pub fn credential_record(c: CredentialRow) -> CredentialRecord {
    CredentialRecord {
        credential_id: c.id.clone(),
        id: c.id,
        vault_id: c.vault_id,
        name: c.name,
        credential_type: c.credential_type,
        description: c.description,
        enabled: c.enabled,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

pub fn service_record(s: ServiceRow) -> ServiceRecord {
    ServiceRecord {
        service_id: s.id.clone(),
        id: s.id,
        vault_id: s.vault_id,
        host: s.host,
        auth_config: s.auth_config,
        enabled: s.enabled,
        description: s.description,
        template_id: s.template_id,
        created_at: s.created_at,
    }
}

/// The caller's vault with this id.
pub async fn owned(state: &AppState, user_id: i64, id: &str) -> ApiResult<VaultRow> {
    let id = id.to_owned();
    state
        .db(move |s| s.get_user_vault(user_id, &id))
        .await?
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))
}

pub async fn list(state: &AppState, user_id: i64) -> ApiResult<VaultList> {
    let rows = state.db(move |s| s.list_user_vaults(user_id)).await?;
    Ok(VaultList {
        vaults: rows.into_iter().map(vault_record).collect(),
    })
}

pub async fn create(
    state: &AppState,
    user_id: i64,
    req: CreateVaultRequest,
) -> ApiResult<VaultRecord> {
    let name = check_name("name", req.name.as_deref())?;
    let description = check_description(req.description)?;
    let now = Utc::now();
    let row = VaultRow {
        id: new_id("vlt"),
        user_id,
        name,
        description,
        created_at: now,
        updated_at: now,
    };
    let saved = row.clone();
    state.db(move |s| s.insert_vault(&saved)).await?;
    Ok(vault_record(row))
}

pub async fn update(
    state: &AppState,
    mut row: VaultRow,
    req: UpdateVaultRequest,
) -> ApiResult<VaultRecord> {
    if req.name.is_some() {
        row.name = check_name("name", req.name.as_deref())?;
    }
    if req.description.is_some() {
        row.description = check_description(req.description)?;
    }
    row.updated_at = Utc::now();
    let saved = row.clone();
    state.db(move |s| s.update_vault(&saved)).await?;
    Ok(vault_record(row))
}

pub async fn delete(state: &AppState, row: VaultRow) -> ApiResult<DeletedResponse> {
    let id = row.id.clone();
    state.db(move |s| s.delete_vault(&id)).await?;
    Ok(DeletedResponse {
        deleted: true,
        id: row.id,
    })
}

pub async fn discover(state: &AppState, row: VaultRow) -> ApiResult<VaultDiscovery> {
    let id = row.id.clone();
    let (creds, services) = state
        .db(move |s| Ok((s.list_credentials(&id)?, s.list_services(&id)?)))
        .await?;
    let names: Vec<String> = creds.iter().map(|c| c.name.clone()).collect();
    let mut hosts: Vec<String> = services
        .iter()
        .filter(|s| s.enabled)
        .map(|s| s.host.clone())
        .collect();
    hosts.dedup();
    Ok(VaultDiscovery {
        vault_id: row.id,
        name: row.name,
        credentials: creds
            .into_iter()
            .map(|c| DiscoveredCredential {
                name: c.name,
                credential_type: c.credential_type,
                enabled: c.enabled,
            })
            .collect(),
        services: services
            .into_iter()
            .map(|s| {
                let auth = AuthConfig::parse(&s.auth_config).ok();
                let refs: Vec<String> = auth
                    .as_ref()
                    .map(|a| {
                        a.credential_names()
                            .into_iter()
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                DiscoveredService {
                    auth_type: s
                        .auth_config
                        .get("type")
                        .and_then(|t| t.as_str())
                        .unwrap_or("unknown")
                        .to_owned(),
                    host: s.host,
                    enabled: s.enabled,
                    missing_credentials: refs
                        .iter()
                        .filter(|n| !names.contains(n))
                        .cloned()
                        .collect(),
                    credential_names: refs,
                }
            })
            .collect(),
        hosts,
    })
}

pub async fn list_credentials(state: &AppState, row: VaultRow) -> ApiResult<CredentialList> {
    let id = row.id;
    let rows = state.db(move |s| s.list_credentials(&id)).await?;
    Ok(CredentialList {
        credentials: rows.into_iter().map(credential_record).collect(),
    })
}

pub async fn add_credential(
    state: &AppState,
    row: VaultRow,
    req: CreateCredentialRequest,
) -> ApiResult<CredentialRecord> {
    let name = check_name("name", req.name.as_deref())?;
    let credential_type = match req.credential_type.as_deref().map(str::trim) {
        None | Some("") => "api_key".to_owned(),
        Some(t) => check_name("credential_type", Some(t))?,
    };
    let description = check_description(req.description)?;
    let value = check_value(req.value)?;
    let id = new_id("cred");
    let sealed = state
        .vault()
        .sealer
        .seal(&id, &value)
        .map_err(ApiError::internal)?;
    drop(value);
    let now = Utc::now();
    let cred = CredentialRow {
        id,
        vault_id: row.id.clone(),
        name,
        credential_type,
        description,
        enabled: req.enabled.unwrap_or(true),
        sealed,
        created_at: now,
        updated_at: now,
    };
    let saved = cred.clone();
    let vault_id = row.id;
    state
        .db(move |s| {
            if s.list_credentials(&vault_id)?.len() >= MAX_CREDENTIALS {
                return Ok(false);
            }
            s.insert_credential(&saved)?;
            Ok(true)
        })
        .await?
        .then_some(())
        .ok_or_else(|| {
            ApiError::Forbidden(format!(
                "a vault holds at most {MAX_CREDENTIALS} credentials"
            ))
        })?;
    Ok(credential_record(cred))
}

pub async fn rotate_credential(
    state: &AppState,
    row: VaultRow,
    credential_id: &str,
    req: RotateCredentialRequest,
) -> ApiResult<CredentialRecord> {
    let value = check_value(req.value)?;
    let (vid, cid) = (row.id.clone(), credential_id.to_owned());
    let mut cred = state
        .db(move |s| s.get_credential(&vid, &cid))
        .await?
        .ok_or_else(|| ApiError::NotFound("credential not found".into()))?;
    let sealed = state
        .vault()
        .sealer
        .seal(&cred.id, &value)
        .map_err(ApiError::internal)?;
    drop(value);
    let now = Utc::now();
    let id = cred.id.clone();
    state
        .db(move |s| s.rotate_credential(&id, &sealed, now))
        .await?;
    cred.updated_at = now;
    Ok(credential_record(cred))
}

pub async fn delete_credential(
    state: &AppState,
    row: VaultRow,
    credential_id: &str,
) -> ApiResult<DeletedResponse> {
    let (vid, cid) = (row.id, credential_id.to_owned());
    if !state.db(move |s| s.delete_credential(&vid, &cid)).await? {
        return Err(ApiError::NotFound("credential not found".into()));
    }
    Ok(DeletedResponse {
        deleted: true,
        id: credential_id.to_owned(),
    })
}

pub async fn list_services(state: &AppState, row: VaultRow) -> ApiResult<ServiceList> {
    let id = row.id;
    let rows = state.db(move |s| s.list_services(&id)).await?;
    Ok(ServiceList {
        services: rows.into_iter().map(service_record).collect(),
    })
}

async fn insert_services(state: &AppState, vault_id: &str, rows: Vec<ServiceRow>) -> ApiResult<()> {
    let vid = vault_id.to_owned();
    let ok = state
        .db(move |s| {
            if s.list_services(&vid)?.len() + rows.len() > MAX_SERVICES {
                return Ok(false);
            }
            s.insert_services(&rows)?;
            Ok(true)
        })
        .await?;
    if !ok {
        return Err(ApiError::Forbidden(format!(
            "a vault binds at most {MAX_SERVICES} services"
        )));
    }
    Ok(())
}

pub async fn add_service(
    state: &AppState,
    row: VaultRow,
    req: CreateServiceRequest,
) -> ApiResult<ServiceRecord> {
    let host = check_host(req.host.as_deref())?;
    let auth_config = req
        .auth_config
        .ok_or_else(|| ApiError::Unprocessable("auth_config is required".into()))?;
    AuthConfig::parse(&auth_config).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let description = check_description(req.description)?;
    let vid = row.id.clone();
    let existing = state.db(move |s| s.list_services(&vid)).await?;
    if existing.iter().any(|s| s.host == host) {
        return Err(ApiError::Conflict(format!(
            "this vault already has a service for {host}; remove it first"
        )));
    }
    let svc = ServiceRow {
        id: new_id("svc"),
        vault_id: row.id.clone(),
        host,
        auth_config,
        enabled: req.enabled.unwrap_or(true),
        description,
        template_id: None,
        created_at: Utc::now(),
    };
    insert_services(state, &row.id, vec![svc.clone()]).await?;
    Ok(service_record(svc))
}

pub async fn delete_service(
    state: &AppState,
    row: VaultRow,
    service_id: &str,
) -> ApiResult<DeletedResponse> {
    let (vid, sid) = (row.id, service_id.to_owned());
    if !state.db(move |s| s.delete_service(&vid, &sid)).await? {
        return Err(ApiError::NotFound("service not found".into()));
    }
    Ok(DeletedResponse {
        deleted: true,
        id: service_id.to_owned(),
    })
}

pub async fn from_template(
    state: &AppState,
    row: VaultRow,
    req: FromTemplateRequest,
) -> ApiResult<FromTemplateResponse> {
    let ids = req.template_ids.unwrap_or_default();
    if ids.is_empty() {
        return Err(ApiError::Unprocessable(
            "template_ids must name at least one catalog template".into(),
        ));
    }
    let unknown: Vec<&String> = ids.iter().filter(|i| catalog::find(i).is_none()).collect();
    if !unknown.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "unknown template ids: {unknown:?}; GET /v1/vaults/catalog lists them"
        )));
    }
    let vid = row.id.clone();
    let existing = state.db(move |s| s.list_services(&vid)).await?;
    let now = Utc::now();
    let mut new = Vec::new();
    let mut skipped = Vec::new();
    for id in &ids {
        let entry = catalog::find(id).expect("checked above");
        let host = entry.host.to_ascii_lowercase();
        if existing.iter().any(|s| s.host == host)
            || new.iter().any(|s: &ServiceRow| s.host == host)
        {
            skipped.push(id.clone());
            continue;
        }
        new.push(ServiceRow {
            id: new_id("svc"),
            vault_id: row.id.clone(),
            host,
            auth_config: entry.auth_config(),
            enabled: true,
            description: Some(entry.description.to_owned()),
            template_id: Some(entry.id.to_owned()),
            created_at: now,
        });
    }
    if !new.is_empty() {
        insert_services(state, &row.id, new.clone()).await?;
    }
    Ok(FromTemplateResponse {
        vault_id: row.id,
        created: new.len(),
        services: new.into_iter().map(service_record).collect(),
        skipped,
    })
}

pub fn catalog_list() -> CatalogList {
    CatalogList {
        templates: catalog::CATALOG
            .iter()
            .map(|e| CatalogTemplate {
                id: e.id.into(),
                name: e.name.into(),
                host: e.host.into(),
                auth_type: e.auth_type.into(),
                credential_key: e.credential_key.into(),
                header: e.header.map(Into::into),
                prefix: e.prefix.map(Into::into),
                path_placeholder: e.path_placeholder.map(Into::into),
                description: e.description.into(),
            })
            .collect(),
    }
}

pub async fn request_logs(
    state: &AppState,
    row: VaultRow,
    limit: Option<i64>,
) -> ApiResult<RequestLogList> {
    let limit = limit.unwrap_or(DEFAULT_LOG_LIMIT);
    if !(1..=MAX_LOG_LIMIT).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and {MAX_LOG_LIMIT}, got {limit}"
        )));
    }
    let id = row.id;
    let rows = state.db(move |s| s.list_request_logs(&id, limit)).await?;
    Ok(RequestLogList {
        logs: rows
            .into_iter()
            .map(|r: RequestLogRow| RequestLogRecord {
                timestamp: r.created_at,
                created_at: r.created_at,
                vault_id: r.vault_id,
                vm_id: r.vm_id,
                host: r.host,
                method: r.method,
                path: r.path,
                status: r.status,
                status_code: r.status,
                credential_name: r.credential_name,
                credential_id: r.credential_id,
            })
            .collect(),
    })
}

/// `vault_ids` of a VM create or update: each must be one of the caller's vaults. Returns them
/// de-duplicated, in order.
pub async fn check_vault_ids(
    state: &AppState,
    user_id: i64,
    ids: &[String],
) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        if out.contains(id) {
            continue;
        }
        let probe = id.clone();
        if state
            .db(move |s| s.get_user_vault(user_id, &probe))
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound(format!("vault {id} not found")));
        }
        out.push(id.clone());
    }
    Ok(out)
}

/// The environment a VM attached to `vault_ids` gets: one placeholder per credential whose
/// name is a valid variable name (reusing a placeholder already in `env`, as a clone's copied
/// environment has), recorded for `vm_id`; plus the CA variables. Values never appear here.
pub async fn attach_env(
    state: &AppState,
    vm_id: &str,
    vault_ids: &[String],
    env: &mut BTreeMap<String, String>,
) -> ApiResult<()> {
    if vault_ids.is_empty() {
        return Ok(());
    }
    let ids = vault_ids.to_vec();
    let creds = state
        .db(move |s| {
            let mut all = Vec::new();
            for id in &ids {
                all.extend(s.list_credentials(id)?);
            }
            Ok(all)
        })
        .await?;
    let mut rows = Vec::new();
    for c in creds {
        if !c.enabled || !placeholder::is_env_name(&c.name) {
            continue;
        }
        let token = match env.get(&c.name) {
            Some(t) if t.starts_with(placeholder::PREFIX) => t.clone(),
            _ => placeholder::new_token(),
        };
        env.insert(c.name.clone(), token.clone());
        rows.push((c.id, token));
    }
    let vm = vm_id.to_owned();
    state.db(move |s| s.insert_placeholders(&vm, &rows)).await?;
    if state.vault().ca.is_some() {
        for var in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
            env.insert(var.into(), VM_BUNDLE_PATH.into());
        }
        env.insert("NODE_EXTRA_CA_CERTS".into(), VM_CA_PATH.into());
    }
    Ok(())
}

/// Trust the platform CA inside a freshly booted VM attached to a vault: the certificate in
/// the system store's directory and appended to the system bundle (in the VM's writable
/// layer). Only the certificate goes in; its key never leaves the host.
pub async fn install_ca(
    state: &AppState,
    sandbox: &instavm_runtime::SandboxId,
    vault_ids: &[String],
) -> ApiResult<()> {
    let Some(ca) = state.vault().ca.clone() else {
        return Ok(());
    };
    if vault_ids.is_empty() {
        return Ok(());
    }
    let pem = ca.cert_pem().trim().to_owned();
    if pem.contains('\'') {
        return Err(ApiError::Internal("CA certificate has a quote".into()));
    }
    let script = format!(
        "set -e; umask 022; mkdir -p /usr/local/share/ca-certificates /etc/ssl/certs; \
         printf '%s\\n' '{pem}' > {VM_CA_PATH}; \
         grep -qF 'instavm vault CA' {VM_BUNDLE_PATH} 2>/dev/null || \
         {{ printf '\\n# instavm vault CA\\n'; cat {VM_CA_PATH}; }} >> {VM_BUNDLE_PATH}"
    );
    let out = state
        .runtime()
        .exec(
            sandbox,
            instavm_runtime::ExecRequest {
                language: instavm_runtime::Language::Bash,
                code: script,
                timeout: Some(std::time::Duration::from_secs(20)),
            },
        )
        .await?;
    if out.exit_code != 0 {
        return Err(ApiError::Internal(format!(
            "installing the vault CA in the VM failed: {}",
            out.stderr.trim()
        )));
    }
    Ok(())
}
