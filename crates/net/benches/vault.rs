//! Vault proxy benchmark: added latency of a proxied HTTPS request (TLS terminated with a
//! platform-CA leaf, credential injected, forwarded over TLS) against the same request sent
//! straight to the upstream, on loopback with keep-alive; and requests per second through the
//! proxy with 16 concurrent connections. The directory is in memory (the server's adds one
//! SQLite lookup and one AES-GCM open per request).
//!
//! Run: `cargo bench -p instavm-net --bench vault`. Prints p50/p99 and writes JSON to
//! `INSTAVM_BENCH_OUT` or `<target>/instavm-bench/vault.json`. Target: <= 1 ms extra p50.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use instavm_net::vault::{Binding, Material, Prefixed, RequestLog, VaultDirectory, VaultProxy};
use instavm_vault::{AuthConfig, PlatformCa, Secret};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "api.openai.com";
const N: usize = 3000;

struct Dir;

#[async_trait::async_trait]
impl VaultDirectory for Dir {
    async fn binding(&self, _s: &str, host: &str) -> Option<Binding> {
        (host == HOST).then(|| Binding {
            vm_id: "vm_bench".into(),
            vault_id: "vlt_bench".into(),
            auth: AuthConfig::Bearer {
                token: "OPENAI_API_KEY".into(),
            },
            creds: vec![Material {
                id: "cred".into(),
                name: "OPENAI_API_KEY".into(),
                value: Secret::new("sk-bench".into()),
                placeholder: "ivp_bench".into(),
            }],
            capture_bodies: false,
        })
    }
    fn record(&self, _e: RequestLog) {}
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut r = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        r.add(c.unwrap()).unwrap();
    }
    r
}

async fn upstream(ca: &PlatformCa) -> SocketAddr {
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
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"{\"ok\":true}",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

async fn proxy(up: SocketAddr, dir: &std::path::Path, up_ca: &str) -> (SocketAddr, String) {
    let ca = Arc::new(PlatformCa::load_or_create(dir).unwrap());
    let pem = ca.cert_pem().to_owned();
    let p = Arc::new(VaultProxy::new(Arc::new(Dir), ca, roots(up_ca)).unwrap());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            tokio::spawn(p.clone().serve(
                Prefixed::new(Vec::new(), s),
                HOST.into(),
                up,
                "sbx".into(),
            ));
        }
    });
    (addr, pem)
}

async fn connect(
    addr: SocketAddr,
    ca: &str,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn one(send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) {
    send.ready().await.unwrap();
    let req = Request::get("/v1/models")
        .header("host", HOST)
        .header("authorization", "Bearer ivp_bench")
        .body(Empty::new())
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    r.into_body().collect().await.unwrap();
}

async fn latencies(addr: SocketAddr, ca: &str) -> serde_json::Value {
    let mut send = connect(addr, ca).await;
    for _ in 0..200 {
        one(&mut send).await;
    }
    let mut v = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        one(&mut send).await;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    serde_json::json!({
        "p50_ms": v[v.len() / 2],
        "p99_ms": v[v.len() * 99 / 100],
        "requests": N,
    })
}

async fn rps(addr: SocketAddr, ca: &str) -> f64 {
    let dur = Duration::from_secs(3);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let ca = ca.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut send = connect(addr, &ca).await;
            let mut n = 0u64;
            while start.elapsed() < dur {
                one(&mut send).await;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let up_ca = PlatformCa::load_or_create(&tmp.path().join("up")).unwrap();
        let up = upstream(&up_ca).await;
        let (px, pem) = proxy(up, &tmp.path().join("px"), up_ca.cert_pem()).await;
        let direct = latencies(up, up_ca.cert_pem()).await;
        let proxied = latencies(px, &pem).await;
        let rps_direct = rps(up, up_ca.cert_pem()).await;
        let rps_proxied = rps(px, &pem).await;
        let extra = proxied["p50_ms"].as_f64().unwrap() - direct["p50_ms"].as_f64().unwrap();
        println!(
            "HTTPS GET, keep-alive: direct p50 {:.3} ms p99 {:.3} ms | via vault proxy p50 {:.3} ms p99 {:.3} ms | extra p50 {:.3} ms (target <= 1)",
            direct["p50_ms"].as_f64().unwrap(),
            direct["p99_ms"].as_f64().unwrap(),
            proxied["p50_ms"].as_f64().unwrap(),
            proxied["p99_ms"].as_f64().unwrap(),
            extra
        );
        println!("16 connections: direct {rps_direct:.0} req/s | via vault proxy {rps_proxied:.0} req/s");
        let report = serde_json::json!({
            "keep_alive_get": {"direct": direct, "proxied": proxied, "extra_p50_ms": extra, "target_extra_p50_ms": 1.0},
            "requests_per_second_16_connections": {"direct": rps_direct, "proxied": rps_proxied},
        });
        let out = std::env::var("INSTAVM_BENCH_OUT").map(std::path::PathBuf::from).unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").into());
            std::path::PathBuf::from(target).join("instavm-bench").join("vault.json")
        });
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        println!("wrote {}", out.display());
    });
}
