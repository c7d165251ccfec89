//! The share proxy: a share URL serves one port inside one VM, at the root path of the URL.
//!
//! Two ways to tell shares apart (docs/network.md):
//! - **ports** (the default; works on any machine, no DNS needed): each share gets its own port
//!   on the share address, from a configured range, so the URL is `http://<host>:<port>/`;
//! - **domain**: one listener, and the share id is the first label of the `Host` header, so the
//!   URL is `http(s)://<share_id>.<domain>/` (needs a wildcard DNS record).
//!
//! What a share is, who may use it and where its VM is, the proxy asks a [`ShareDirectory`]
//! (the server) for every request; the proxy itself only moves bytes: HTTP/1.1 requests and
//! answers streamed both ways, and WebSocket (any `Upgrade`) as a byte pipe after the 101.

mod access;
mod forward;
mod page;

pub use access::{LINK_TOKEN_PARAM, OWNER_KEY_HEADER};

use async_trait::async_trait;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// Which share a request is for, as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareKey {
    /// Ports mode: the share that owns this listening port.
    Port(u16),
    /// Domain mode: the first label of the `Host` header.
    Id(String),
}

/// What the directory needs to decide a request.
#[derive(Debug)]
pub struct ShareRequest<'a> {
    pub key: &'a ShareKey,
    /// The `X-API-Key` header (the owner's key opens a private share).
    pub api_key: Option<&'a str>,
    /// The token of a share's access link (`?instavm_share_token=`), first visit.
    pub link_token: Option<&'a str>,
    /// Tokens from `instavm_share_<share_id>` cookies set by earlier link visits.
    pub cookie_tokens: &'a [(String, String)],
}

/// How a request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Public,
    /// The owner's API key.
    Owner,
    /// A cookie from an access link.
    Cookie,
}

/// The directory's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Forward {
        /// The VM's address and the shared port.
        target: SocketAddr,
        share_id: String,
        grant: Grant,
    },
    /// A visit of the share's access link: the proxy sets the share's cookie and redirects to
    /// the same URL without the token, so the app never sees it.
    OpenLink { share_id: String },
    /// Answer with an error page instead (404 unknown or revoked, 401 private, 502 VM gone).
    Refuse { status: u16, message: String },
}

#[async_trait]
pub trait ShareDirectory: Send + Sync + 'static {
    async fn route(&self, request: ShareRequest<'_>) -> Route;
}

/// How share URLs tell shares apart.
#[derive(Debug, Clone)]
pub enum ShareMode {
    /// One port per share, from `first..=last`, on `ip`.
    Ports { ip: IpAddr, first: u16, last: u16 },
    /// One listener on `listen`; shares are `<share_id>.<domain>`.
    Domain { listen: SocketAddr, domain: String },
}

/// The running proxy. Dropping it stops every listener.
pub struct ShareProxy {
    inner: Arc<Inner>,
}

struct Inner {
    directory: Arc<dyn ShareDirectory>,
    mode: ShareMode,
    /// Ports mode: the listeners, by port.
    ports: Mutex<HashMap<u16, AbortHandle>>,
    /// Domain mode: the one listener.
    domain_listener: Mutex<Option<(SocketAddr, AbortHandle)>>,
    /// Where the next port search starts, so freed ports are not reused at once.
    next_port: Mutex<u16>,
}

impl ShareProxy {
    /// Start the proxy; in domain mode this binds its listener.
    pub async fn start(mode: ShareMode, directory: Arc<dyn ShareDirectory>) -> io::Result<Self> {
        let first = match &mode {
            ShareMode::Ports { first, last, .. } if first > last || *first == 0 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the share port range {first}-{last} is empty"),
                ))
            }
            ShareMode::Ports { first, .. } => *first,
            ShareMode::Domain { .. } => 0,
        };
        let inner = Arc::new(Inner {
            directory,
            mode: mode.clone(),
            ports: Mutex::new(HashMap::new()),
            domain_listener: Mutex::new(None),
            next_port: Mutex::new(first),
        });
        if let ShareMode::Domain { listen, domain } = &mode {
            let listener = TcpListener::bind(listen).await?;
            let addr = listener.local_addr()?;
            let kind = forward::Listening::Domain(domain.to_ascii_lowercase());
            let task = tokio::spawn(forward::accept_loop(listener, kind, inner.clone()));
            *lock(&inner.domain_listener) = Some((addr, task.abort_handle()));
        }
        Ok(ShareProxy { inner })
    }

    pub fn mode(&self) -> &ShareMode {
        &self.inner.mode
    }

    /// Domain mode: the address the one listener got.
    pub fn domain_addr(&self) -> Option<SocketAddr> {
        lock(&self.inner.domain_listener).as_ref().map(|(a, _)| *a)
    }

    /// Ports mode: bind a free port of the range for a new share and serve it.
    pub async fn open_port(&self) -> io::Result<u16> {
        let ShareMode::Ports { ip, first, last } = self.inner.mode else {
            return Err(io::Error::other("the share proxy is in domain mode"));
        };
        let span = u32::from(last - first) + 1;
        let start = *lock(&self.inner.next_port);
        for step in 0..span {
            let port = (first as u32 + (start as u32 - first as u32 + step) % span) as u16;
            if lock(&self.inner.ports).contains_key(&port) {
                continue;
            }
            match self.bind_port(port).await {
                Ok(()) => {
                    *lock(&self.inner.next_port) = if port == last { first } else { port + 1 };
                    return Ok(port);
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("every port of the share range {first}-{last} on {ip} is taken"),
        ))
    }

    /// Ports mode: serve `port` (a share's recorded port, after a restart).
    pub async fn bind_port(&self, port: u16) -> io::Result<()> {
        let ShareMode::Ports { ip, .. } = self.inner.mode else {
            return Err(io::Error::other("the share proxy is in domain mode"));
        };
        if lock(&self.inner.ports).contains_key(&port) {
            return Ok(());
        }
        let listener = TcpListener::bind(SocketAddr::new(ip, port)).await?;
        let task = tokio::spawn(forward::accept_loop(
            listener,
            forward::Listening::Port(port),
            self.inner.clone(),
        ));
        lock(&self.inner.ports).insert(port, task.abort_handle());
        Ok(())
    }

    /// Ports mode: stop serving `port` (connections already open finish).
    pub fn close_port(&self, port: u16) {
        if let Some(task) = lock(&self.inner.ports).remove(&port) {
            task.abort();
        }
    }

    /// Ports mode: the ports served now.
    pub fn open_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = lock(&self.inner.ports).keys().copied().collect();
        ports.sort_unstable();
        ports
    }
}

impl Drop for ShareProxy {
    fn drop(&mut self) {
        for (_, task) in lock(&self.inner.ports).drain() {
            task.abort();
        }
        if let Some((_, task)) = lock(&self.inner.domain_listener).take() {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
