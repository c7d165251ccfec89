//! Serving one client connection: every request is routed by the directory, then sent over
//! this connection's own connection to the app (kept while the app keeps it and the target
//! stays the same), and the answer streamed back. An upgrade (WebSocket) becomes a plain
//! byte pipe between the two sockets once the app answered 101.

use super::access::{self, Credentials};
use super::{lock, page, Inner, Route, ShareKey, ShareRequest};
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// A client that sends no complete request head in this time is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting to the app inside the VM.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn full(text: String) -> Body {
    Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// What a listener serves.
#[derive(Debug, Clone)]
pub enum Listening {
    Port(u16),
    /// Shares are `<share_id>.<domain>`.
    Domain(String),
}

pub async fn accept_loop(listener: TcpListener, kind: Listening, inner: Arc<Inner>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "share proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(serve_connection(stream, peer, kind.clone(), inner.clone()));
    }
}

/// This client connection's connection to the app.
struct Upstream {
    target: SocketAddr,
    sender: SendRequest<Incoming>,
}

struct Connection {
    peer: SocketAddr,
    kind: Listening,
    inner: Arc<Inner>,
    upstream: Mutex<Option<Upstream>>,
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, kind: Listening, inner: Arc<Inner>) {
    let _ = stream.set_nodelay(true);
    let conn = Arc::new(Connection {
        peer,
        kind,
        inner,
        upstream: Mutex::new(None),
    });
    let service = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(conn.handle(req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "share proxy: client connection ended");
    }
}

impl Connection {
    async fn handle(&self, mut req: Request<Incoming>) -> Response<Body> {
        let key = match &self.kind {
            Listening::Port(port) => ShareKey::Port(*port),
            Listening::Domain(domain) => match share_of_host(req.headers(), domain) {
                Some(id) => ShareKey::Id(id),
                None => {
                    return page::error(404, "There is no share at this address.", req.headers())
                }
            },
        };
        if req.uri().path() == page::SIGN_IN_PATH {
            return page::sign_in(req.uri().query());
        }
        let creds = Credentials::of(req.headers(), req.uri().query());
        let route = self
            .inner
            .directory
            .route(ShareRequest {
                key: &key,
                api_key: creds.api_key.as_deref(),
                link_token: creds.link_token.as_deref(),
                cookie_tokens: &creds.cookie_tokens,
            })
            .await;
        let target = match route {
            Route::Forward { target, .. } => target,
            Route::OpenLink { share_id } => {
                let token = creds.link_token.unwrap_or_default();
                let location = access::without_link_token(req.uri().path(), req.uri().query());
                return page::redirect(&location, &access::grant_cookie(&share_id, &token));
            }
            // A visitor with no credential at all, navigating (not asking for JSON), is sent to
            // the sign-in page, as sign-in walls do; API clients and wrong credentials get the
            // 401 itself.
            Route::Refuse { status: 401, .. }
                if creds.is_empty() && page::is_browser_navigation(req.method(), req.headers()) =>
            {
                let next = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "/".into());
                return page::to_sign_in(&next);
            }
            Route::Refuse { status, message } => {
                return page::error(status, &message, req.headers())
            }
        };
        let upgrade = access::is_upgrade(req.headers());
        access::prepare_for_app(req.headers_mut(), self.peer, upgrade);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let mut sender = match self.sender_for(target).await {
            Ok(s) => s,
            Err(resp) => return resp(req.headers()),
        };
        let headers = req.headers().clone();
        let mut resp = match sender.send_request(req).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(%target, error = %e, "share proxy: the app dropped a request");
                return page::error(
                    502,
                    &format!(
                        "The app on port {} inside the VM closed the connection without answering.",
                        target.port()
                    ),
                    &headers,
                );
            }
        };
        if let Some(client_upgrade) = client_upgrade {
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                let app_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(pipe(client_upgrade, app_upgrade));
                return resp.map(|_| full(String::new()));
            }
        } else {
            // Put the connection back for the next request of this client.
            *lock(&self.upstream) = Some(Upstream { target, sender });
        }
        access::strip_hop_by_hop(resp.headers_mut(), false);
        resp.map(BodyExt::boxed)
    }

    /// The connection to `target`: this client's last one when it is still open, else a new one.
    async fn sender_for(
        &self,
        target: SocketAddr,
    ) -> Result<SendRequest<Incoming>, impl FnOnce(&http::HeaderMap) -> Response<Body>> {
        let kept = lock(&self.upstream).take();
        if let Some(mut up) = kept.filter(|u| u.target == target) {
            if up.sender.ready().await.is_ok() {
                return Ok(up.sender);
            }
        }
        let refused = move |what: String| move |h: &http::HeaderMap| page::error(502, &what, h);
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(refused(format!(
                    "Nothing answers on port {} inside the VM ({e}). Is the app running and listening on 0.0.0.0?",
                    target.port()
                )))
            }
            Err(_) => {
                return Err(refused(format!(
                    "Port {} inside the VM did not answer within {} s.",
                    target.port(),
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok((sender, connection)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection.with_upgrades().await {
                        tracing::debug!(%target, error = %e, "share proxy: app connection ended");
                    }
                });
                Ok(sender)
            }
            Err(e) => Err(refused(format!(
                "Port {} inside the VM does not speak HTTP/1.1 ({e}).",
                target.port()
            ))),
        }
    }
}

/// After a 101: copy bytes both ways until either side closes.
async fn pipe(client: hyper::upgrade::OnUpgrade, app: hyper::upgrade::OnUpgrade) {
    let (client, app) = match tokio::try_join!(client, app) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "share proxy: an upgrade did not complete");
            return;
        }
    };
    let (mut client, mut app) = (TokioIo::new(client), TokioIo::new(app));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut app).await {
        tracing::debug!(error = %e, "share proxy: an upgraded connection ended");
    }
}

/// Domain mode: `<share_id>.<domain>[:port]` → the share id.
fn share_of_host(headers: &http::HeaderMap, domain: &str) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains('.')).then(|| label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_mode_takes_the_first_label() {
        let h = |host: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(header::HOST, host.parse().unwrap());
            m
        };
        let id = |host: &str| share_of_host(&h(host), "apps.example.com");
        assert_eq!(id("shr-1.apps.example.com").as_deref(), Some("shr-1"));
        assert_eq!(id("SHR-1.Apps.Example.com:8080").as_deref(), Some("shr-1"));
        assert_eq!(id("shr-1.apps.example.com.").as_deref(), Some("shr-1"));
        assert_eq!(id("apps.example.com"), None);
        assert_eq!(id("a.b.apps.example.com"), None);
        assert_eq!(id("shr-1.evilapps.example.com"), None);
        assert_eq!(id("shr-1.example.org"), None);
    }
}
