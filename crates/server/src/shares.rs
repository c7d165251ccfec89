//! Share rules (spec §9, §1.11): one live share per (session, port), private ones opened by
//! the owner's key or the share's access link, and the directory the share proxy asks for
//! every request. The proxy itself (`instavm_net::share`) only moves bytes.
//!
//! A share belongs to a session rather than a VM id: a resumed VM gets a new id, and the share
//! follows it. A request to a suspended VM with `auto_resume` resumes it.

use crate::auth::{self, hash_key, hashes_equal};
use crate::error::{ApiError, ApiResult};
use crate::sessions;
use crate::state::AppState;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use instavm_api::{
    AppUrl, CreateShareRequest, SessionState, ShareRecord, ShareState, UpdateShareRequest, VmState,
};
use instavm_net::share::{
    Grant, Route, ShareDirectory, ShareKey, ShareMode, ShareProxy, ShareRequest, LINK_TOKEN_PARAM,
};
use instavm_store::{SessionRecord, ShareRow};
use rand::RngCore;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub const NOT_FOUND: &str = "share not found";

/// How long a revoked share, or one whose VM has ended, keeps its proxy port (answering 404
/// or 502) before the port is given back.
pub const LINGER: Duration = Duration::from_secs(3600);

/// How share URLs are made (docs/network.md).
#[derive(Debug, Clone)]
pub struct ShareSettings {
    pub mode: ShareMode,
    /// Ports mode: the host put in URLs (`None`: the listen address, else this host's name).
    pub public_host: Option<String>,
    /// Domain mode: `http` or `https` (TLS terminated in front of the proxy).
    pub scheme: String,
    /// Domain mode: the port put in URLs (`None`: the listener's; left out when it is the
    /// scheme's default).
    pub public_port: Option<u16>,
}

/// The running share proxy and how its URLs look.
pub struct SharePlane {
    proxy: ShareProxy,
    urls: UrlForm,
}

enum UrlForm {
    Ports { host: String },
    Domain { prefix: String, suffix: String },
}

impl SharePlane {
    fn url(&self, row: &ShareRow) -> String {
        match &self.urls {
            UrlForm::Ports { host } => match row.listen_port {
                Some(port) => format!("http://{host}:{port}/"),
                // Released after its linger: nothing serves it any more.
                None => String::new(),
            },
            UrlForm::Domain { prefix, suffix } => format!("{prefix}{}{suffix}/", row.id),
        }
    }

    fn access_url(&self, row: &ShareRow) -> String {
        let url = self.url(row);
        if row.is_public || url.is_empty() {
            url
        } else {
            format!("{url}?{LINK_TOKEN_PARAM}={}", row.token)
        }
    }
}

/// Start the share proxy, serve the ports of shares recorded before a restart, and let the
/// state hand out share URLs.
/// Answers where it listens, for the log.
pub async fn start(state: &AppState, settings: ShareSettings) -> std::io::Result<String> {
    let directory = Arc::new(Directory {
        state: state.clone(),
    });
    let proxy = ShareProxy::start(settings.mode.clone(), directory).await?;
    let (urls, shown) = match &settings.mode {
        ShareMode::Ports { ip, first, last } => {
            let host = settings.public_host.clone().unwrap_or_else(|| host_of(*ip));
            (
                UrlForm::Ports { host },
                format!("{ip}, ports {first}-{last}"),
            )
        }
        ShareMode::Domain { domain, .. } => {
            let addr = proxy.domain_addr().expect("domain mode has a listener");
            let port = settings.public_port.unwrap_or(addr.port());
            let default = if settings.scheme == "https" { 443 } else { 80 };
            let suffix = if port == default {
                format!(".{domain}")
            } else {
                format!(".{domain}:{port}")
            };
            let prefix = format!("{}://", settings.scheme);
            (
                UrlForm::Domain { prefix, suffix },
                format!("{addr}, *.{domain}"),
            )
        }
    };
    let plane = Arc::new(SharePlane { proxy, urls });
    restore_ports(state, &plane).await;
    state.set_shares(plane);
    Ok(shown)
}

/// A host name for URLs when none is configured: the address itself, unless it is a wildcard.
fn host_of(ip: IpAddr) -> String {
    if ip.is_unspecified() {
        return hostname().unwrap_or_else(|| "localhost".into());
    }
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// After a restart: serve every share that still holds a port.
async fn restore_ports(state: &AppState, plane: &SharePlane) {
    if !matches!(plane.proxy.mode(), ShareMode::Ports { .. }) {
        return;
    }
    let rows = match state.db(|s| s.shares_with_listen_port()).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "reading shares to serve");
            return;
        }
    };
    for row in rows {
        let port = row.listen_port.unwrap_or_default();
        if let Err(e) = plane.proxy.bind_port(port).await {
            tracing::error!(share_id = %row.id, port, error = %e, "cannot serve a share's port again; its URL is down");
        }
    }
}

fn plane(state: &AppState) -> ApiResult<Arc<SharePlane>> {
    state.shares().ok_or_else(|| {
        ApiError::Conflict("shares are turned off on this server (--share-listen off)".into())
    })
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Now, at the store's precision (milliseconds), so a fresh answer shows the same time as a
/// later read of the record.
fn now_as_stored() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now)
}

pub fn check_port(port: i64) -> ApiResult<u16> {
    u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| {
        ApiError::Unprocessable(format!("port must be between 1 and 65535, got {port}"))
    })
}

/// The session a create names: `vm_id` wins over `session_id` (the SDK adds its own session to
/// every create, also when the caller names another VM).
async fn target_session(
    state: &AppState,
    user_id: i64,
    req: &CreateShareRequest,
) -> ApiResult<SessionRecord> {
    let session = match (req.vm_id.as_deref(), req.session_id.as_deref()) {
        (Some(vm_id), _) if !vm_id.is_empty() => {
            let vm = crate::vms::owned(state, user_id, vm_id).await?;
            if !matches!(
                vm.record.status,
                VmState::Active | VmState::Creating | VmState::Suspended
            ) {
                return Err(ApiError::Conflict(format!(
                    "VM {vm_id} is {}; only a VM that runs (or is suspended) can be shared",
                    vm.record.status.as_str()
                )));
            }
            sessions::owned(state, user_id, &vm.record.session_id).await?
        }
        (_, Some(sid)) if !sid.is_empty() => sessions::owned(state, user_id, sid).await?,
        _ => {
            return Err(ApiError::Unprocessable(
                "give vm_id or session_id: the VM whose port to share".into(),
            ))
        }
    };
    match session.status {
        SessionState::Active | SessionState::Suspended => Ok(session),
        _ => Err(sessions::ended_error(&session)),
    }
}

/// `POST /v1/shares`: the live share of (session, port), made public or private as asked, or
/// a new one.
pub async fn create(
    state: &AppState,
    user_id: i64,
    req: CreateShareRequest,
) -> ApiResult<ShareRecord> {
    let port = check_port(
        req.port
            .ok_or_else(|| ApiError::Unprocessable("port is required".into()))?,
    )?;
    let is_public = req.is_public.unwrap_or(false);
    let plane = plane(state)?;
    let session = target_session(state, user_id, &req).await?;
    let sid = session.id.clone();
    if let Some(row) = state.db(move |s| s.live_share(&sid, port)).await? {
        return set_public(state, &plane, row, is_public).await;
    }
    let listen_port = match plane.proxy.mode() {
        ShareMode::Ports { .. } => Some(
            plane
                .proxy
                .open_port()
                .await
                .map_err(|e| ApiError::Unavailable(format!("no share port is free: {e}")))?,
        ),
        ShareMode::Domain { .. } => None,
    };
    let row = ShareRow {
        id: format!("shr-{}", random_hex(10)),
        user_id,
        session_id: session.id.clone(),
        vm_id: session.vm_id.clone(),
        port,
        is_public,
        token: random_hex(24),
        listen_port,
        created_at: now_as_stored(),
        revoked_at: None,
    };
    let saved = row.clone();
    match state.db(move |s| s.insert_share(&saved)).await {
        Ok(()) => {}
        Err(e) => {
            if let Some(p) = listen_port {
                plane.proxy.close_port(p);
            }
            // Two creates raced: the other one's share is the answer.
            if matches!(e, ApiError::Conflict(_)) {
                let sid = session.id.clone();
                if let Some(row) = state.db(move |s| s.live_share(&sid, port)).await? {
                    return set_public(state, &plane, row, is_public).await;
                }
            }
            return Err(e);
        }
    }
    tracing::info!(share_id = %row.id, vm_id = %row.vm_id, port, is_public, listen_port, "share created");
    record(state, &plane, row).await
}

async fn set_public(
    state: &AppState,
    plane: &SharePlane,
    mut row: ShareRow,
    is_public: bool,
) -> ApiResult<ShareRecord> {
    if row.is_public != is_public {
        let id = row.id.clone();
        if !state
            .db(move |s| s.set_share_public(&id, is_public))
            .await?
        {
            return Err(revoked(&row));
        }
        row.is_public = is_public;
        tracing::info!(share_id = %row.id, is_public, "share visibility changed");
    }
    record(state, plane, row).await
}

fn revoked(row: &ShareRow) -> ApiError {
    ApiError::Conflict(format!(
        "share {} is revoked; create a new share for the port",
        row.id
    ))
}

/// The caller's share.
pub async fn owned(state: &AppState, user_id: i64, id: &str) -> ApiResult<ShareRow> {
    if !id.starts_with("shr-") || id.len() > 64 {
        return Err(ApiError::NotFound(NOT_FOUND.into()));
    }
    let id = id.to_owned();
    state
        .db(move |s| s.get_share(&id))
        .await?
        .filter(|r| r.user_id == user_id)
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))
}

/// `PATCH /v1/shares/{id}`.
pub async fn update(
    state: &AppState,
    row: ShareRow,
    req: UpdateShareRequest,
) -> ApiResult<ShareRecord> {
    if req.is_public.is_none() && req.revoke.is_none() {
        return Err(ApiError::Unprocessable(
            "give is_public or revoke (or both)".into(),
        ));
    }
    let plane = plane(state)?;
    if req.revoke == Some(true) {
        let mut row = row;
        if row.revoked_at.is_none() {
            let now = now_as_stored();
            let id = row.id.clone();
            state.db(move |s| s.revoke_share(&id, now)).await?;
            row.revoked_at = Some(now);
            tracing::info!(share_id = %row.id, "share revoked");
        }
        return record(state, &plane, row).await;
    }
    match req.is_public {
        Some(_) if row.revoked_at.is_some() => Err(revoked(&row)),
        Some(is_public) => set_public(state, &plane, row, is_public).await,
        None => record(state, &plane, row).await,
    }
}

/// The wire record; `vm_id` is the VM the session runs on now.
async fn record(state: &AppState, plane: &SharePlane, row: ShareRow) -> ApiResult<ShareRecord> {
    let sid = row.session_id.clone();
    let vm_id = match state.db(move |s| s.get_session(&sid)).await? {
        Some(session) => session.vm_id,
        None => row.vm_id.clone(),
    };
    Ok(ShareRecord {
        share_id: row.id.clone(),
        id: row.id.clone(),
        url: plane.url(&row),
        access_url: plane.access_url(&row),
        port: row.port,
        is_public: row.is_public,
        vm_id,
        session_id: row.session_id.clone(),
        status: if row.revoked_at.is_some() {
            ShareState::Revoked
        } else {
            ShareState::Active
        },
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    })
}

/// `GET /v1/sessions/app-url/{id}?port=`: the session's share of the port; one is made
/// (public: the README calls it the "publicly-reachable app URL") when there is none. A
/// private share made earlier stays private and answers its access link.
pub async fn app_url(
    state: &AppState,
    user_id: i64,
    session_id: &str,
    port: u16,
) -> ApiResult<AppUrl> {
    let session = sessions::owned(state, user_id, session_id).await?;
    let sid = session.id.clone();
    let share = match state.db(move |s| s.live_share(&sid, port)).await? {
        Some(row) => record(state, &*plane(state)?, row).await?,
        None => {
            let req = CreateShareRequest {
                port: Some(port.into()),
                is_public: Some(true),
                session_id: Some(session.id.clone()),
                vm_id: None,
            };
            create(state, user_id, req).await?
        }
    };
    Ok(AppUrl {
        session_id: session.id,
        app_url: share.access_url.clone(),
        url: share.access_url,
        direct_url: share.url,
        port,
        share_id: share.share_id,
        is_public: share.is_public,
    })
}

/// Give back the proxy ports of shares revoked, or whose session ended, more than [`LINGER`]
/// ago.
pub async fn sweep(state: &AppState) -> ApiResult<()> {
    let Some(plane) = state.shares() else {
        return Ok(());
    };
    let rows = state.db(|s| s.shares_with_listen_port()).await?;
    let cutoff = Utc::now() - chrono::Duration::from_std(LINGER).unwrap_or_default();
    for row in rows {
        let sid = row.session_id.clone();
        let session = state.db(move |s| s.get_session(&sid)).await?;
        let ended_at: Option<DateTime<Utc>> = match session {
            None => Some(row.created_at),
            Some(s) if matches!(s.status, SessionState::Active | SessionState::Suspended) => None,
            Some(s) => Some(s.ended_at.unwrap_or(row.created_at)),
        };
        let done = row.revoked_at.into_iter().chain(ended_at).min();
        if done.is_some_and(|t| t < cutoff) {
            let id = row.id.clone();
            state.db(move |s| s.release_share_port(&id)).await?;
            if let Some(port) = row.listen_port {
                plane.proxy.close_port(port);
            }
            tracing::info!(share_id = %row.id, port = row.listen_port, "share port released");
        }
    }
    Ok(())
}

enum Access {
    Granted(Grant),
    /// The access link's token: the proxy turns it into a cookie first.
    Link,
}

/// What the proxy asks for every request.
struct Directory {
    state: AppState,
}

fn refuse(status: u16, message: impl Into<String>) -> Route {
    Route::Refuse {
        status,
        message: message.into(),
    }
}

#[async_trait]
impl ShareDirectory for Directory {
    async fn route(&self, req: ShareRequest<'_>) -> Route {
        let route = match self.try_route(req).await {
            Ok(route) => route,
            Err(e) => {
                tracing::error!(error = %e, "share proxy: routing a request failed");
                refuse(500, "The share proxy could not look this share up.")
            }
        };
        let outcome = match &route {
            Route::Forward { .. } => "forwarded".to_owned(),
            Route::OpenLink { .. } => "access_link".to_owned(),
            Route::Refuse { status, .. } => status.to_string(),
        };
        self.state.metrics().count_share_request(&outcome);
        route
    }
}

impl Directory {
    async fn try_route(&self, req: ShareRequest<'_>) -> Result<Route, ApiError> {
        let state = &self.state;
        let key = req.key.clone();
        let row = state
            .db(move |s| match key {
                ShareKey::Port(p) => s.get_share_by_listen_port(p),
                ShareKey::Id(id) => s.get_share(&id),
            })
            .await?;
        let Some(row) = row.filter(|r| r.revoked_at.is_none()) else {
            return Ok(refuse(404, "There is no share here, or it was revoked."));
        };
        let grant = match self.grant(&row, &req).await {
            Some(Access::Link) => return Ok(Route::OpenLink { share_id: row.id }),
            Some(Access::Granted(grant)) => grant,
            None => {
                return Ok(refuse(
                    401,
                    "This share is private. Send the owner's API key in the X-API-Key header, or open the share's access link (access_url).",
                ))
            }
        };
        // The session's VM now: an overdue expiry ends it, a suspended VM with auto_resume is
        // resumed (the request waits for it).
        let session = match sessions::active(state, row.user_id, &row.session_id).await {
            Ok(s) => s,
            Err(ApiError::Conflict(why)) => return Ok(refuse(503, why)),
            Err(ApiError::NotFound(why)) => {
                return Ok(refuse(
                    502,
                    format!("The VM behind this share is gone: {why}."),
                ))
            }
            Err(e) => return Err(e),
        };
        let sandbox = sessions::sandbox_id(&session)?;
        let ip = match state.runtime().get(&sandbox).await {
            Ok(info) => info.ip_address,
            Err(instavm_runtime::RuntimeError::NotFound(_)) => {
                let why = sessions::sandbox_gone(state, &session).await;
                return Ok(refuse(
                    502,
                    format!("The VM behind this share is gone: {why}."),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let Some(ip) = ip.and_then(|ip| ip.parse::<IpAddr>().ok()) else {
            return Ok(refuse(
                502,
                format!("VM {} has no network address to serve.", session.vm_id),
            ));
        };
        Ok(Route::Forward {
            target: SocketAddr::new(ip, row.port),
            share_id: row.id,
            grant,
        })
    }

    async fn grant(&self, row: &ShareRow, req: &ShareRequest<'_>) -> Option<Access> {
        if row.is_public {
            return Some(Access::Granted(Grant::Public));
        }
        let token = hash_key(&row.token);
        let matches = |t: &str| hashes_equal(&hash_key(t), &token);
        if req
            .cookie_tokens
            .iter()
            .any(|(id, t)| *id == row.id && matches(t))
        {
            return Some(Access::Granted(Grant::Cookie));
        }
        if req.link_token.is_some_and(matches) {
            return Some(Access::Link);
        }
        let key = req.api_key?;
        match auth::authenticate(&self.state, key).await {
            Ok(user) if user.id == row.user_id => Some(Access::Granted(Grant::Owner)),
            _ => None,
        }
    }
}

/// `GET /v1/shares/{id}` (ours).
pub async fn get(state: &AppState, row: ShareRow) -> ApiResult<ShareRecord> {
    record(state, &*plane(state)?, row).await
}
