//! The proxy in process: a test "api.openai.com" with its own CA on loopback, the proxy in
//! front of it, and a client that trusts the platform CA, over HTTP/1.1 and HTTP/2.

use super::*;
use http_body_util::Empty;
use std::sync::Mutex as StdMutex;
use tokio::net::TcpListener;

const HOST: &str = "api.openai.com";
const VALUE: &str = "sk-real-value-123";
const PH: &str = "ivp_placeholder";

/// What the upstream saw: (method, path and query, authorization header).
type Seen = Arc<StdMutex<Vec<(String, String, Option<String>)>>>;

struct Dir {
    logs: StdMutex<Vec<RequestLog>>,
}

#[async_trait::async_trait]
impl VaultDirectory for Dir {
    async fn binding(&self, _sandbox: &str, host: &str) -> Option<Binding> {
        (host == HOST).then(|| Binding {
            vm_id: "vm_test".into(),
            vault_id: "vlt_test".into(),
            auth: AuthConfig::Bearer {
                token: "OPENAI_API_KEY".into(),
            },
            creds: vec![Material {
                id: "cred_1".into(),
                name: "OPENAI_API_KEY".into(),
                value: Secret::new(VALUE.into()),
                placeholder: PH.into(),
            }],
            // Every request goes through the body capture (a tape recording content).
            capture_bodies: true,
        })
    }
    fn record(&self, e: RequestLog) {
        self.logs.lock().unwrap().push(e);
    }
}

/// An HTTPS server for HOST with a CA of its own; answers 200, or 302 to another host on
/// /redirect. Returns its address and its CA's PEM.
async fn upstream(seen: Seen) -> (SocketAddr, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let ca = PlatformCa::load_or_create(dir.path()).unwrap();
    let leaf = ca.issue(HOST).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_pkcs8_der)),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let pq = req.uri().path_and_query().unwrap().to_string();
                        seen.lock()
                            .unwrap()
                            .push((req.method().to_string(), pq.clone(), auth));
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut r = Response::new(Full::new(Bytes::from(format!(
                            "ok {} body bytes",
                            body.len()
                        ))));
                        if pq.starts_with("/redirect") {
                            *r.status_mut() = StatusCode::FOUND;
                            r.headers_mut().insert(
                                "location",
                                "https://collector.example/steal".parse().unwrap(),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let pem = ca.cert_pem().as_bytes().to_vec();
    (addr, pem)
}

struct Setup {
    proxy_addr: SocketAddr,
    platform_ca: Vec<u8>,
    seen: Seen,
    dir: Arc<Dir>,
    _tmp: tempfile::TempDir,
}

async fn setup(trust_upstream: bool) -> Setup {
    let seen: Seen = Arc::default();
    let (up, up_ca) = upstream(seen.clone()).await;
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(PlatformCa::load_or_create(tmp.path()).unwrap());
    let mut roots = rustls::RootCertStore::empty();
    if trust_upstream {
        for c in pem_certs(&up_ca) {
            roots.add(c).unwrap();
        }
    }
    let dir = Arc::new(Dir {
        logs: StdMutex::default(),
    });
    let proxy = Arc::new(VaultProxy::new(dir.clone(), ca.clone(), roots).unwrap());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            // What the gate does: it has read the ClientHello already.
            let mut first = vec![0u8; 1];
            let mut s = s;
            use tokio::io::AsyncReadExt;
            s.read_exact(&mut first).await.unwrap();
            let p = proxy.clone();
            tokio::spawn(p.serve(Prefixed::new(first, s), HOST.into(), up, "sbx".into()));
        }
    });
    Setup {
        proxy_addr,
        platform_ca: ca.cert_pem().as_bytes().to_vec(),
        seen,
        dir,
        _tmp: tmp,
    }
}

/// A client that trusts `ca` and speaks h2 or http/1.1 to `addr` as `sni`.
async fn client(
    addr: SocketAddr,
    ca: &[u8],
    sni: &str,
    h2: bool,
) -> Result<
    Box<
        dyn FnMut(
                Request<Empty<Bytes>>,
            )
                -> futures::future::BoxFuture<'static, Result<Response<Incoming>, hyper::Error>>
            + Send,
    >,
    io::Error,
> {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(ca) {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let tcp = TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await?;
    let io = TokioIo::new(tls);
    if h2 {
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        Ok(Box::new(move |req| {
            let mut s = send.clone();
            Box::pin(async move { s.send_request(req).await })
        }))
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let send = Arc::new(tokio::sync::Mutex::new(send));
        Ok(Box::new(move |req| {
            let send = send.clone();
            Box::pin(async move {
                let mut s = send.lock().await;
                s.ready().await?;
                s.send_request(req).await
            })
        }))
    }
}

fn get(uri: &str, host: &str, auth: Option<&str>) -> Request<Empty<Bytes>> {
    let mut b = Request::get(uri).header("host", host);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(Empty::new()).unwrap()
}

async fn text(r: Response<Incoming>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn injects_over_http1_with_keep_alive_and_logs_without_values() {
    let s = setup(true).await;
    let mut send = client(s.proxy_addr, &s.platform_ca, HOST, false)
        .await
        .unwrap();
    for _ in 0..3 {
        let r = send(get("/v1/models?key=q", HOST, Some(&format!("Bearer {PH}"))))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(!text(r).await.contains(VALUE));
    }
    // No header: added.
    let r = send(get("/v1/chat", HOST, None)).await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    for (_, _, auth) in &seen {
        assert_eq!(auth.as_deref(), Some(&*format!("Bearer {VALUE}")));
    }
    assert_eq!(seen[0].1, "/v1/models?key=q");
    let logs = s.dir.logs.lock().unwrap().clone();
    assert_eq!(logs.len(), 4);
    assert_eq!(logs[0].path, "/v1/models");
    assert_eq!(logs[0].status, Some(200));
    assert_eq!(logs[0].credential_name.as_deref(), Some("OPENAI_API_KEY"));
    // With body capture on, the entry carries the response as the VM got it.
    let bodies = logs[0].bodies.as_ref().expect("bodies captured");
    assert!(bodies.response.bytes.starts_with(b"ok "), "{bodies:?}");
    assert_eq!(bodies.request.total, 0);
    assert!(!format!("{logs:?}").contains(VALUE));
}

#[tokio::test]
async fn injects_over_http2() {
    let s = setup(true).await;
    let mut send = client(s.proxy_addr, &s.platform_ca, HOST, true)
        .await
        .unwrap();
    let req = Request::get(format!("https://{HOST}/v1/models"))
        .header("authorization", format!("Bearer {PH}"))
        .body(Empty::new())
        .unwrap();
    let r = send(req).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.seen.lock().unwrap()[0].2.as_deref(),
        Some(&*format!("Bearer {VALUE}"))
    );
    // HTTP/2 coalescing: another authority on this connection gets 421, upstream sees nothing.
    let req = Request::get("https://collector.example/x")
        .header("authorization", format!("Bearer {PH}"))
        .body(Empty::new())
        .unwrap();
    let r = send(req).await.unwrap();
    assert_eq!(r.status(), 421);
    assert!(!text(r).await.contains(VALUE));
    assert_eq!(s.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_host_header_other_than_the_sni_connect_and_redirects_get_no_value() {
    let s = setup(true).await;
    let mut send = client(s.proxy_addr, &s.platform_ca, HOST, false)
        .await
        .unwrap();
    let r = send(get(
        "/v1/models",
        "collector.example",
        Some(&format!("Bearer {PH}")),
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 421);
    assert!(!text(r).await.contains(VALUE));
    let r = send(get(
        "/v1/models",
        "api.openai.com:8443",
        Some(&format!("Bearer {PH}")),
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 421);
    let mut send = client(s.proxy_addr, &s.platform_ca, HOST, false)
        .await
        .unwrap();
    let req = Request::connect("collector.example:443")
        .header("host", "collector.example:443")
        .body(Empty::new())
        .unwrap();
    let r = send(req).await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(s.seen.lock().unwrap().is_empty());
    // A redirect goes back to the VM as it came: its Location holds no value, and following
    // it is a new connection to another host with only the placeholder.
    let mut send = client(s.proxy_addr, &s.platform_ca, HOST, false)
        .await
        .unwrap();
    let r = send(get("/redirect", HOST, Some(&format!("Bearer {PH}"))))
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(!loc.contains(VALUE));
    assert!(!format!("{:?}", r.headers()).contains(VALUE));
}

#[tokio::test]
async fn an_upstream_the_host_does_not_trust_gets_nothing() {
    // The upstream's CA is not trusted: the proxy refuses to send the value there.
    let s = setup(false).await;
    let mut send = client(s.proxy_addr, &s.platform_ca, HOST, false)
        .await
        .unwrap();
    let r = send(get("/v1/models", HOST, Some(&format!("Bearer {PH}"))))
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body = text(r).await;
    assert!(!body.contains(VALUE) && !body.contains(PH));
    assert!(s.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_leaf_is_only_for_the_sni() {
    let s = setup(true).await;
    // A client asking the proxy for another name does not accept the leaf.
    assert!(
        client(s.proxy_addr, &s.platform_ca, "collector.example", false)
            .await
            .is_err()
    );
}
