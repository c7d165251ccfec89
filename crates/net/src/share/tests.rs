//! The proxy against real sockets on loopback: an HTTP app and a WebSocket echo.

use super::*;
use futures::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app that answers `<method> <path?query>` and the headers it got, one per line.
async fn echo_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let mut text = format!("{} {}\n", req.method(), req.uri());
                    for (n, v) in req.headers() {
                        text.push_str(&format!("{n}: {}\n", v.to_str().unwrap_or("?")));
                    }
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    text.push_str(&format!("body={}\n", body.len()));
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn ws_echo_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    addr
}

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;

/// One share: public or private with token "tok" and owner key "owner-key".
struct OneShare {
    target: SocketAddr,
    public: bool,
    routed: AtomicUsize,
}

#[async_trait]
impl ShareDirectory for OneShare {
    async fn route(&self, r: ShareRequest<'_>) -> Route {
        self.routed.fetch_add(1, Ordering::SeqCst);
        let id = "shr-1".to_owned();
        match r.key {
            ShareKey::Id(k) if k != "shr-1" => {
                return Route::Refuse {
                    status: 404,
                    message: "no such share".into(),
                }
            }
            _ => {}
        }
        let grant = if self.public {
            Grant::Public
        } else if r.api_key == Some("owner-key") {
            Grant::Owner
        } else if r
            .cookie_tokens
            .iter()
            .any(|(s, t)| s == "shr-1" && t == "tok")
        {
            Grant::Cookie
        } else if r.link_token == Some("tok") {
            return Route::OpenLink { share_id: id };
        } else {
            return Route::Refuse {
                status: 401,
                message: "private share".into(),
            };
        };
        Route::Forward {
            target: self.target,
            share_id: id,
            grant,
        }
    }
}

async fn proxy_for(target: SocketAddr, public: bool) -> (ShareProxy, u16) {
    let dir = Arc::new(OneShare {
        target,
        public,
        routed: AtomicUsize::new(0),
    });
    let proxy = ShareProxy::start(
        ShareMode::Ports {
            ip: "127.0.0.1".parse().unwrap(),
            first: 41000,
            last: 41999,
        },
        dir,
    )
    .await
    .unwrap();
    let port = proxy.open_port().await.unwrap();
    (proxy, port)
}

/// A raw HTTP/1.1 exchange (so the test sees exactly what went over the wire).
async fn raw(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_public_share_serves_the_app_at_the_root_without_the_owner_key() {
    let app = echo_app().await;
    let (_proxy, port) = proxy_for(app, true).await;
    let answer = raw(
        port,
        "POST /x/y?q=1 HTTP/1.1\r\nHost: h\r\nX-Api-Key: secret\r\nCookie: instavm_share_shr-1=tok; a=b\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("POST /x/y?q=1\n"), "{answer}");
    assert!(answer.contains("body=5"), "{answer}");
    assert!(answer.contains("cookie: a=b\n"), "{answer}");
    assert!(answer.contains("x-forwarded-for: 127.0.0.1"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("secret"), "{answer}");
}

#[tokio::test]
async fn keep_alive_requests_reuse_one_connection_to_the_app() {
    let app = echo_app().await;
    let (_proxy, port) = proxy_for(app, true).await;
    let two =
        "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let answer = raw(port, two).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(answer.contains("GET /1\n") && answer.contains("GET /2\n"));
}

#[tokio::test]
async fn a_private_share_wants_the_owner_key_or_its_link() {
    let app = echo_app().await;
    let (_proxy, port) = proxy_for(app, false).await;
    let get = |extra: &str| {
        format!("GET /page?a=1 HTTP/1.1\r\nHost: h\r\n{extra}Connection: close\r\n\r\n")
    };
    // A first visit (no credential) goes to the sign-in page, which asks for the token.
    let first = raw(port, &get("")).await;
    assert!(first.starts_with("HTTP/1.1 303"), "{first}");
    assert!(
        first.contains("location: /.well-known/instavm-share/sign-in?next=%2Fpage%3Fa%3D1"),
        "{first}"
    );
    let sign_in = raw(
        port,
        "GET /.well-known/instavm-share/sign-in?next=%2Fpage%3Fa%3D1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(sign_in.starts_with("HTTP/1.1 200"), "{sign_in}");
    assert!(sign_in.contains("action=\"/page\"") && sign_in.contains("instavm_share_token"));
    // Never an open redirect.
    let elsewhere = raw(
        port,
        "GET /.well-known/instavm-share/sign-in?next=//evil.example/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(elsewhere.contains("action=\"/\""), "{elsewhere}");
    let refused = raw(port, &get("Cookie: instavm_share_x=nope\r\n")).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("private share"));
    let json = raw(port, &get("Accept: application/json\r\n")).await;
    assert!(json.contains(r#"{"detail":"private share"}"#), "{json}");
    assert!(raw(port, &get("X-API-Key: wrong\r\n"))
        .await
        .starts_with("HTTP/1.1 401"));

    let owner = raw(port, &get("X-API-Key: owner-key\r\n")).await;
    assert!(owner.starts_with("HTTP/1.1 200"), "{owner}");
    assert!(!owner.contains("owner-key"));

    let link = raw(
        port,
        "GET /page?a=1&instavm_share_token=tok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(link.starts_with("HTTP/1.1 303"), "{link}");
    assert!(link.contains("location: /page?a=1\r\n"), "{link}");
    assert!(link.contains("set-cookie: instavm_share_shr-1=tok; Path=/; HttpOnly"));
    let cookie = raw(port, &get("Cookie: instavm_share_shr-1=tok\r\n")).await;
    assert!(cookie.starts_with("HTTP/1.1 200"), "{cookie}");
    assert!(
        !cookie.contains("tok"),
        "the app must not see the token: {cookie}"
    );
}

#[tokio::test]
async fn nothing_listening_in_the_vm_is_a_502_page() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (_proxy, port) = proxy_for(closed, true).await;
    let answer = raw(
        port,
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        answer.contains(&format!("port {}", closed.port())),
        "{answer}"
    );
}

#[tokio::test]
async fn websockets_pass_through() {
    let app = ws_echo_app().await;
    let (_proxy, port) = proxy_for(app, true).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    for i in 0..3 {
        ws.send(format!("hello {i}").into()).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), format!("hello {i}"));
    }
}

#[tokio::test]
async fn ports_are_allocated_freed_and_skipped_when_taken() {
    let app = echo_app().await;
    let dir = Arc::new(OneShare {
        target: app,
        public: true,
        routed: AtomicUsize::new(0),
    });
    // Someone else holds the first port of the range.
    let squatter = std::net::TcpListener::bind("127.0.0.1:42100").unwrap();
    let proxy = ShareProxy::start(
        ShareMode::Ports {
            ip: "127.0.0.1".parse().unwrap(),
            first: 42100,
            last: 42102,
        },
        dir,
    )
    .await
    .unwrap();
    let a = proxy.open_port().await.unwrap();
    let b = proxy.open_port().await.unwrap();
    assert_eq!((a, b), (42101, 42102));
    assert!(proxy.open_port().await.is_err(), "the range is full");
    proxy.close_port(a);
    assert_eq!(proxy.open_ports(), vec![42102]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(proxy.open_port().await.unwrap(), 42101);
    drop(squatter);
}

#[tokio::test]
async fn domain_mode_routes_by_host() {
    let app = echo_app().await;
    let dir = Arc::new(OneShare {
        target: app,
        public: true,
        routed: AtomicUsize::new(0),
    });
    let proxy = ShareProxy::start(
        ShareMode::Domain {
            listen: "127.0.0.1:0".parse().unwrap(),
            domain: "Apps.Test".into(),
        },
        dir,
    )
    .await
    .unwrap();
    let port = proxy.domain_addr().unwrap().port();
    let ok = raw(
        port,
        "GET / HTTP/1.1\r\nHost: shr-1.apps.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let other = raw(
        port,
        "GET / HTTP/1.1\r\nHost: shr-2.apps.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let bare = raw(
        port,
        "GET / HTTP/1.1\r\nHost: apps.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(bare.starts_with("HTTP/1.1 404"), "{bare}");
}

use std::time::Duration;
use tokio::net::TcpStream;
