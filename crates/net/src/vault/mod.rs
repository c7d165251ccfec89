//! The vault proxy: TLS interception for hosts bound to a VM's vaults, with credential
//! injection (issue #13, docs/vault.md).
//!
//! The egress gate hands a connection here when the VM's TLS SNI names a bound host **and** the
//! address the VM connected to is one its resolver pinned for that very name. The proxy then
//! terminates TLS with a leaf for the SNI signed by the platform CA, serves HTTP/1.1 or HTTP/2
//! (ALPN), and for every request whose `Host` / `:authority` equals the SNI, replaces the VM's
//! placeholder in the header or path the service's `auth_config` names (or adds the header),
//! then forwards over a new TLS connection to the original destination, verified against the
//! host's trust store plus `--upstream-ca`. A request for any other authority gets `421` and
//! no value. `CONNECT` is refused. Bodies are streamed both ways, never buffered or rewritten.

pub mod capture;
mod stream;

use bytes::Bytes;
use http::header::HOST;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use instavm_vault::auth::{inject, Cred};
use instavm_vault::{AuthConfig, PlatformCa, Secret};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub use stream::Prefixed;

type Body = BoxBody<Bytes, hyper::Error>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One credential as injection needs it.
pub struct Material {
    pub id: String,
    pub name: String,
    pub value: Secret,
    /// The VM's placeholder for it.
    pub placeholder: String,
}

/// What a VM's vaults say about one host.
pub struct Binding {
    pub vm_id: String,
    pub vault_id: String,
    pub auth: AuthConfig,
    pub creds: Vec<Material>,
    /// Keep the start of the request and response bodies in the log entry (a tape records
    /// this VM's egress content).
    pub capture_bodies: bool,
}

/// One proxied request, for the vault's request log. Never a value, never a query string.
#[derive(Debug, Clone)]
pub struct RequestLog {
    pub at: SystemTime,
    pub vm_id: String,
    pub vault_id: String,
    pub host: String,
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    pub credential_id: Option<String>,
    pub credential_name: Option<String>,
    /// The request had a query string (which is never logged).
    pub has_query: bool,
    /// With `Binding::capture_bodies`: the bodies' starts, secrets redacted.
    pub bodies: Option<CapturedBodies>,
}

/// What a log entry keeps of the bodies (the VM's request as the VM sent it, placeholders and
/// all; the upstream's response with every injected value redacted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedBodies {
    pub request: capture::Captured,
    pub response: capture::Captured,
    pub response_content_type: Option<String>,
    /// `Content-Encoding` of the response: the body is kept as it came (compressed).
    pub response_content_encoding: Option<String>,
}

/// The server's side: which hosts a VM's vaults bind, with what, and where logs go.
#[async_trait::async_trait]
pub trait VaultDirectory: Send + Sync + 'static {
    /// The binding of `host` for the VM in sandbox `sandbox`, or `None` when it has none.
    async fn binding(&self, sandbox: &str, host: &str) -> Option<Binding>;
    fn record(&self, entry: RequestLog);
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("reading upstream CA {path}: {source}")]
    UpstreamCa {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

pub struct VaultProxy {
    dir: Arc<dyn VaultDirectory>,
    ca: Arc<PlatformCa>,
    leaves: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
    upstream: Arc<rustls::ClientConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The host's trust store (`SSL_CERT_FILE` or the Debian bundle) plus `extra` PEM files; the
/// webpki roots when the host has no bundle.
pub fn upstream_roots(extra: &[PathBuf]) -> Result<rustls::RootCertStore, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let mut found = false;
    if let Ok(pem) = std::fs::read(&system) {
        for der in pem_certs(&pem) {
            found |= roots.add(der).is_ok();
        }
    }
    if !found {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for path in extra {
        let pem = std::fs::read(path).map_err(|source| ProxyError::UpstreamCa {
            path: path.display().to_string(),
            source,
        })?;
        for der in pem_certs(&pem) {
            roots.add(der)?;
        }
    }
    Ok(roots)
}

fn pem_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

impl VaultProxy {
    pub fn new(
        dir: Arc<dyn VaultDirectory>,
        ca: Arc<PlatformCa>,
        roots: rustls::RootCertStore,
    ) -> Result<VaultProxy, ProxyError> {
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(VaultProxy {
            dir,
            ca,
            leaves: Mutex::new(HashMap::new()),
            upstream: Arc::new(client),
        })
    }

    /// Whether connections of this VM to `host` are to be intercepted.
    pub async fn intercepts(&self, sandbox: &str, host: &str) -> bool {
        self.dir.binding(sandbox, host).await.is_some()
    }

    fn server_config(&self, host: &str) -> io::Result<Arc<rustls::ServerConfig>> {
        if let Some(c) = self
            .leaves
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
        {
            return Ok(c.clone());
        }
        let leaf = self
            .ca
            .issue(host)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let chain = vec![
            CertificateDer::from(leaf.cert_der),
            CertificateDer::from(leaf.ca_der),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_pkcs8_der));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(io::Error::other)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        let mut map = self.leaves.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 4096 {
            map.clear();
        }
        map.insert(host.to_owned(), cfg.clone());
        Ok(cfg)
    }

    /// Serve one intercepted connection of the VM in `sandbox`, whose ClientHello named
    /// `sni` and which was headed for `dst` (already checked: pinned for `sni`).
    pub async fn serve<S>(
        self: Arc<Self>,
        client: S,
        sni: String,
        dst: SocketAddr,
        sandbox: String,
    ) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let cfg = self.server_config(&sni)?;
        let tls = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tokio_rustls::TlsAcceptor::from(cfg).accept(client),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
        let conn = Arc::new(Conn {
            proxy: self.clone(),
            sni,
            dst,
            sandbox,
            upstream: tokio::sync::Mutex::new(None),
        });
        let service = hyper::service::service_fn(move |req| {
            let conn = conn.clone();
            async move { Ok::<_, std::convert::Infallible>(conn.handle(req).await) }
        });
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tls), service)
            .await
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

enum Upstream {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

struct Conn {
    proxy: Arc<VaultProxy>,
    sni: String,
    dst: SocketAddr,
    sandbox: String,
    upstream: tokio::sync::Mutex<Option<Upstream>>,
}

/// A fixed page. Never carries anything of the request or of a credential.
fn page(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "transfer-encoding",
    "upgrade",
    "te",
];

fn strip_hop_by_hop(h: &mut http::HeaderMap) {
    for name in HOP_BY_HOP {
        h.remove(*name);
    }
}

/// The names a request gives for where it goes: its `Host` header and its URI's authority.
fn authorities(req: &Request<Incoming>) -> Vec<String> {
    let strip = |s: &str| -> String {
        let s = s.trim();
        let host = match s.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') => h,
            _ => s,
        };
        host.trim_end_matches('.').to_ascii_lowercase()
    };
    let mut out: Vec<String> = req
        .headers()
        .get_all(HOST)
        .iter()
        .map(|v| v.to_str().map(strip).unwrap_or_default())
        .collect();
    if let Some(a) = req.uri().authority() {
        out.push(strip(a.as_str()));
    }
    out
}

fn port_ok(req: &Request<Incoming>) -> bool {
    let port = |s: &str| {
        s.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or(443)
    };
    req.uri()
        .authority()
        .is_none_or(|a| a.port_u16().unwrap_or(443) == 443)
        && req
            .headers()
            .get_all(HOST)
            .iter()
            .all(|v| v.to_str().map(|s| port(s) == 443).unwrap_or(false))
}

impl Conn {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() == Method::CONNECT {
            return page(
                StatusCode::METHOD_NOT_ALLOWED,
                "vault proxy: CONNECT is not allowed\n",
            );
        }
        let names = authorities(&req);
        if names.is_empty() || names.iter().any(|n| *n != self.sni) || !port_ok(&req) {
            // A Host that differs from the SNI (or HTTP/2 coalescing onto this connection).
            return page(
                StatusCode::MISDIRECTED_REQUEST,
                "vault proxy: the request's Host does not match the TLS server name\n",
            );
        }
        let binding = self.proxy.dir.binding(&self.sandbox, &self.sni).await;
        let (mut parts, body) = req.into_parts();
        let mut path = parts.uri.path().to_owned();
        let logged_path = path.clone();
        let query = parts.uri.query().map(str::to_owned);
        let injected = binding.as_ref().and_then(|b| {
            inject(&b.auth, &mut parts.headers, &mut path, |name| {
                b.creds.iter().find(|c| c.name == name).map(|c| Cred {
                    id: &c.id,
                    name: &c.name,
                    value: &c.value,
                    placeholder: &c.placeholder,
                })
            })
        });
        strip_hop_by_hop(&mut parts.headers);
        let pq = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let method = parts.method.to_string();
        let capture = binding.as_ref().is_some_and(|b| b.capture_bodies);
        let request_capture = capture::Shared::default();
        let body = if capture {
            capture::Tee::new(body, request_capture.clone()).boxed()
        } else {
            body.boxed()
        };
        let result = self.forward(parts, body, &pq).await;
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        let log = binding.as_ref().map(|b| RequestLog {
            at: SystemTime::now(),
            vm_id: b.vm_id.clone(),
            vault_id: b.vault_id.clone(),
            host: self.sni.clone(),
            method,
            path: logged_path,
            status: status.or(Some(502)),
            credential_id: injected.as_ref().map(|i| i.credential_id.clone()),
            credential_name: injected.as_ref().map(|i| i.credential_name.clone()),
            has_query: query.is_some(),
            bodies: None,
        });
        match result {
            Ok(mut resp) => {
                strip_hop_by_hop(resp.headers_mut());
                match (log, binding) {
                    (Some(mut log), Some(b)) if capture => {
                        // Logged once the response body has gone through, with both bodies.
                        let secrets: Vec<String> = b
                            .creds
                            .iter()
                            .map(|c| c.value.expose().to_owned())
                            .collect();
                        let header = |name| {
                            resp.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let content_type = header(http::header::CONTENT_TYPE);
                        let content_encoding = header(http::header::CONTENT_ENCODING);
                        let response_capture = capture::Shared::default();
                        let dir = self.proxy.dir.clone();
                        let on_end = {
                            let response_capture = response_capture.clone();
                            move || {
                                let secrets: Vec<&str> =
                                    secrets.iter().map(String::as_str).collect();
                                let take = |c: &capture::Shared| {
                                    let mut c = c.lock().unwrap_or_else(|e| e.into_inner()).clone();
                                    c.bytes = capture::redact(&c.bytes, &secrets);
                                    c
                                };
                                log.bodies = Some(CapturedBodies {
                                    request: take(&request_capture),
                                    response: take(&response_capture),
                                    response_content_type: content_type,
                                    response_content_encoding: content_encoding,
                                });
                                dir.record(log);
                            }
                        };
                        resp.map(|b| {
                            capture::Tee::new(b, response_capture)
                                .on_end(on_end)
                                .boxed()
                        })
                    }
                    (log, _) => {
                        if let Some(log) = log {
                            self.proxy.dir.record(log);
                        }
                        resp.map(|b| b.boxed())
                    }
                }
            }
            Err(e) => {
                if let Some(log) = log {
                    self.proxy.dir.record(log);
                }
                tracing::debug!(host = %self.sni, "vault proxy upstream: {e}");
                page(
                    StatusCode::BAD_GATEWAY,
                    "vault proxy: the upstream server could not be reached or failed\n",
                )
            }
        }
    }

    async fn connect(&self) -> io::Result<Upstream> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.dst))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect"))??;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.sni.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = tokio_rustls::TlsConnector::from(self.proxy.upstream.clone())
            .connect(name, tcp)
            .await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Upstream::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Upstream::H1(send))
        }
    }

    async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: Body,
        pq: &str,
    ) -> io::Result<Response<Incoming>> {
        let mut guard = self.upstream.lock().await;
        let closed = match guard.as_ref() {
            None => true,
            Some(Upstream::H1(s)) => s.is_closed(),
            Some(Upstream::H2(s)) => s.is_closed(),
        };
        if closed {
            *guard = Some(self.connect().await?);
        }
        let host = http::HeaderValue::from_str(&self.sni).map_err(io::Error::other)?;
        match guard.as_mut().expect("set above") {
            Upstream::H1(send) => {
                parts.uri = Uri::try_from(pq).map_err(io::Error::other)?;
                parts.version = http::Version::HTTP_11;
                parts.headers.insert(HOST, host);
                send.ready().await.map_err(io::Error::other)?;
                let fut = send.send_request(Request::from_parts(parts, body));
                // HTTP/1.1 upstream: one request at a time on this connection.
                fut.await.map_err(io::Error::other)
            }
            Upstream::H2(send) => {
                parts.uri =
                    Uri::try_from(format!("https://{}{pq}", self.sni)).map_err(io::Error::other)?;
                parts.version = http::Version::HTTP_2;
                parts.headers.remove(HOST);
                let mut send = send.clone();
                drop(guard);
                send.ready().await.map_err(io::Error::other)?;
                send.send_request(Request::from_parts(parts, body))
                    .await
                    .map_err(io::Error::other)
            }
        }
    }
}

/// The proxy the egress gates hand intercepted connections to (set once by the server).
static PROXY: OnceLock<Arc<VaultProxy>> = OnceLock::new();

pub fn install(proxy: Arc<VaultProxy>) {
    let _ = PROXY.set(proxy);
}

pub fn installed() -> Option<Arc<VaultProxy>> {
    PROXY.get().cloned()
}

#[cfg(test)]
mod tests;
