//! The router harness of the share and audit tests: the whole app in process over the fake
//! runtime and a file-backed store, with the share proxy in ports mode on loopback.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use instavm_net::share::ShareMode;
use instavm_runtime::fake::FakeRuntime;
use instavm_runtime::Runtime;
use instavm_server::{app, shares, AppState, Limits, Readiness, ShareSettings};
use instavm_store::Store;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

pub struct Api {
    pub app: Router,
    _dir: tempfile::TempDir,
}

pub async fn api(with_shares: bool) -> Api {
    let mode = ShareMode::Ports {
        ip: "127.0.0.1".parse().unwrap(),
        first: 45000,
        last: 46999,
    };
    api_in(with_shares.then_some(mode)).await
}

pub async fn api_in(mode: Option<ShareMode>) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("instavm.db")).unwrap();
    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new());
    let spool = dir.path().join("spool");
    let state = AppState::new(store, runtime, Limits::default(), ADMIN_KEY, spool).unwrap();
    state.set_readiness(Readiness::Ready);
    if let Some(mode) = mode {
        let settings = ShareSettings {
            mode,
            public_host: None,
            scheme: "http".into(),
            public_port: None,
        };
        shares::start(&state, settings).await.unwrap();
    }
    Api {
        app: app(state),
        _dir: dir,
    }
}

impl Api {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", key);
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let res = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).expect("JSON body");
        if !status.is_success() {
            assert!(body["detail"].is_string(), "{status}: {body}");
        }
        assert!(!status.is_server_error(), "{status}: {body}");
        (status, body)
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, key, Some(body)).await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, key, Some(body)).await
    }

    pub async fn user(&self, email: &str) -> String {
        let (s, b) = self
            .post("/v1/admin/users", ADMIN_KEY, json!({"email": email}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["api_key"].as_str().unwrap().to_owned()
    }

    pub async fn vm(&self, key: &str) -> Value {
        let (s, b) = self.post("/v1/vms?wait=true", key, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }
}
