//! Router tests: the whole API in process, over the fake runtime and an in-memory store.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use instavm_runtime::fake::FakeRuntime;
use instavm_runtime::{ExecOutput, ExecRequest, Language, Runtime, SandboxId, TIMEOUT_EXIT_CODE};
use instavm_server::{app, lifecycle, AdmissionLimits, AppState, Limits, Readiness};
use instavm_store::Store;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// A scripted stand-in for real code execution: `echo X` prints X, `fail N` exits with N,
/// `hang` times out, `err X` writes X to stderr; anything else prints nothing.
fn scripted(_id: &SandboxId, req: &ExecRequest) -> ExecOutput {
    let mut out = ExecOutput {
        stdout: String::new(),
        stderr: String::new(),
        exit_code: 0,
        execution_time: 0.01,
        cpu_time: 0.005,
        timed_out: false,
    };
    let code = req.code.as_str();
    if let Some(text) = code.strip_prefix("echo ") {
        out.stdout = format!("{text}\n");
    } else if let Some(n) = code.strip_prefix("fail ") {
        out.exit_code = n.parse().unwrap_or(1);
    } else if code == "hang" {
        out.exit_code = TIMEOUT_EXIT_CODE;
        out.timed_out = true;
    } else if let Some(text) = code.strip_prefix("err ") {
        out.stderr = text.to_owned();
    } else if let Some(ms) = code.strip_prefix("sleep ") {
        std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap()));
    } else if let Some(n) = code.strip_prefix("noisy ") {
        let n: usize = n.parse().unwrap();
        out.stdout = "\u{1}\"é".repeat(n);
        out.stderr = "\\\u{0}".repeat(n);
    } else if code == "lang" {
        out.stdout = match req.language {
            Language::Python => "python".into(),
            Language::Bash => "bash".into(),
        };
    }
    out
}

struct Api {
    app: Router,
    state: AppState,
    store: Store,
}

fn api_with(limits: Limits, ready: bool) -> Api {
    let store = Store::open_in_memory().unwrap();
    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::with_exec_handler(scripted));
    let spool = std::env::temp_dir().join("instavm-router-test-spool");
    let state = AppState::new(store.clone(), runtime, limits, ADMIN_KEY, spool).unwrap();
    if ready {
        state.set_readiness(Readiness::Ready);
    }
    Api {
        app: app(state.clone()),
        state,
        store,
    }
}

fn api() -> Api {
    api_with(Limits::default(), true)
}

struct Reply {
    status: StatusCode,
    body: Value,
    request_id: Option<String>,
}

impl Api {
    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let request_id = res
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{status}: body is not JSON ({ctype:?}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        if !status.is_success() {
            assert!(
                body["detail"].is_string(),
                "{status}: error without detail: {body}"
            );
        }
        Reply {
            status,
            body,
            request_id,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None).await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    async fn raw_post(&self, path: &str, key: &str, ctype: &str, body: impl Into<Body>) -> Reply {
        let req = Request::post(path)
            .header("x-api-key", key)
            .header(header::CONTENT_TYPE, ctype)
            .body(body.into())
            .unwrap();
        self.send(req).await
    }

    /// Create a user through the admin API and return its key.
    async fn user(&self, email: &str) -> String {
        let r = self
            .post("/v1/admin/users", ADMIN_KEY, json!({"email": email}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["api_key"].as_str().unwrap().to_owned()
    }

    async fn try_session(&self, key: &str, body: Value) -> Reply {
        let mut body = body;
        body["api_key"] = json!(key);
        self.call(Method::POST, "/v1/sessions/session", None, Some(body))
            .await
    }

    async fn session(&self, key: &str, body: Value) -> String {
        let mut body = body;
        body["api_key"] = json!(key);
        let r = self
            .call(Method::POST, "/v1/sessions/session", None, Some(body))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["session_id"].as_str().unwrap().to_owned()
    }

    async fn exec(&self, key: &str, sid: &str, code: &str) -> Reply {
        self.post("/execute", key, json!({"command": code, "session_id": sid}))
            .await
    }
}

#[tokio::test]
async fn health_waits_for_the_runtime() {
    let api = api_with(Limits::default(), false);
    let r = api.call(Method::GET, "/health", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // Sessions cannot start before the runtime is ready either.
    let key = api.user("a@example.com").await;
    let r = api
        .call(
            Method::POST,
            "/v1/sessions/session",
            None,
            Some(json!({"api_key": key})),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    api.state.set_readiness(Readiness::Ready);
    let r = api.call(Method::GET, "/health", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["runtime"], "fake");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_without_redirects() {
    let api = api();
    let r = api.call(Method::GET, "/nope", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .call(Method::GET, "/v1/users/me/", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .call(Method::DELETE, "/execute", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.request_id.is_some(), "every answer carries a request id");
}

#[tokio::test]
async fn authentication() {
    let api = api();
    let r = api.call(Method::GET, "/v1/users/me", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api.get("/v1/users/me", "ivm_not-a-real-key-000000").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api.get("/v1/users/me", ADMIN_KEY).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["is_admin"], true);

    let key = api.user("Dev@Example.com").await;
    let r = api.get("/v1/users/me", &key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["email"], "Dev@Example.com");
    assert_eq!(r.body["is_verified"], true);
    assert_eq!(r.body["is_admin"], false);

    // Only the admin creates users; emails are unique (case-insensitive) and must look valid.
    let r = api
        .post("/v1/admin/users", &key, json!({"email": "x@example.com"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .post(
            "/v1/admin/users",
            ADMIN_KEY,
            json!({"email": "dev@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = api
        .post("/v1/admin/users", ADMIN_KEY, json!({"email": "nope"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = api.get("/v1/admin/users", ADMIN_KEY).await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);

    // Keys are stored hashed: the plaintext appears nowhere in the database.
    let hash = instavm_server::auth::hash_key(&key);
    assert!(api.store.user_by_key_hash(&hash).unwrap().is_some());
}

#[tokio::test]
async fn session_start_validates_input_and_limits() {
    let api = api();
    let key = api.user("a@example.com").await;
    let start = |body: Value| {
        let api = &api;
        async move {
            api.call(Method::POST, "/v1/sessions/session", None, Some(body))
                .await
        }
    };
    // The key may come in the body (official SDK) or in the header.
    let sid = api.session(&key, json!({"vm_lifetime_seconds": 300})).await;
    assert!(uuid::Uuid::parse_str(&sid).is_ok());
    let r = api
        .call(
            Method::POST,
            "/v1/sessions/session",
            Some(&key),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["vm_id"].as_str().unwrap().starts_with("vm_"));
    assert_eq!(r.body["status"], "active");

    let r = start(json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = start(json!({"api_key": "wrong-key-1234567890"})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = start(json!({"api_key": key, "vm_lifetime_seconds": 90000})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["detail"], "vm lifetime cannot exceed 86400s");
    let r = start(json!({"api_key": key, "memory_mb": 1_000_000})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = start(json!({"api_key": key, "vcpu_count": 64})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = start(json!({"api_key": key, "vm_lifetime_seconds": 5})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = start(json!({"api_key": key, "memory_mb": "lots"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body["detail"].as_str().unwrap().contains("memory_mb"),
        "{}",
        r.body
    );
    let r = start(json!({"api_key": key, "vm_lifetime_seconds": -1})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = start(json!({"api_key": key, "env": {"1BAD": "x"}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = start(json!({"api_key": key, "metadata": ["not", "an", "object"]})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Explicit nulls are the same as missing fields.
    let r = start(json!({"api_key": key, "memory_mb": null, "env": null})).await;
    assert_eq!(r.status, StatusCode::OK);

    let r = api
        .raw_post(
            "/v1/sessions/session",
            &key,
            "application/json",
            "{\"api_key\": ",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["detail"].as_str().unwrap().contains("invalid JSON"));
    let r = api
        .raw_post("/v1/sessions/session", &key, "application/json", "")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api
        .raw_post(
            "/v1/sessions/session",
            &key,
            "application/json",
            vec![0xff, 0xfe, b'{'],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Issue 8, admission: a sandbox must fit in the sums of memory, vCPUs and disk of the user's
/// and the host's live sandboxes; each refusal is a 403 naming the sum (spec §6.1 style).
#[tokio::test]
async fn admission_refuses_what_the_user_or_host_cannot_hold() {
    let with = |admission: AdmissionLimits| {
        api_with(
            Limits {
                admission,
                ..Limits::default()
            },
            true,
        )
    };

    // A sandbox never gets more vCPUs than the host has CPUs.
    let api = with(AdmissionLimits::default());
    let key = api.user("a@example.com").await;
    let cpus = std::thread::available_parallelism().unwrap().get().min(8);
    let r = api.try_session(&key, json!({"vcpu_count": cpus + 1})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.body["detail"], format!("vcpu count cannot exceed {cpus}"));
    api.session(&key, json!({"vcpu_count": cpus})).await;

    // Per user: memory and vCPUs; killing a session frees its share.
    let api = with(AdmissionLimits {
        user_memory_mb: 1024,
        user_vcpus: 2,
        ..AdmissionLimits::default()
    });
    let key = api.user("a@example.com").await;
    let first = api.session(&key, json!({"memory_mb": 512})).await;
    api.session(&key, json!({"memory_mb": 512})).await;
    let r = api.try_session(&key, json!({"memory_mb": 128})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        r.body["detail"],
        "memory limit reached: at most 1024 MB across a user's live sandboxes (1024 MB in use, \
         128 MB asked); kill a session or wait for one to expire"
    );
    let other = api.user("b@example.com").await;
    api.session(&other, json!({"memory_mb": 1024})).await;
    let r = api.post("/kill", &key, json!({"session_id": first})).await;
    assert_eq!(r.status, StatusCode::OK);
    if cpus >= 2 {
        let r = api
            .try_session(&key, json!({"memory_mb": 256, "vcpu_count": 2}))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("vCPU limit reached: at most 2 vCPUs"),
            "{detail}"
        );
    }
    api.session(&key, json!({"memory_mb": 256})).await;

    // Per user: disk (every session gets the default 2048 MB quota).
    let api = with(AdmissionLimits {
        user_disk_mb: 3000,
        ..AdmissionLimits::default()
    });
    let key = api.user("a@example.com").await;
    api.session(&key, json!({})).await;
    let r = api.try_session(&key, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("disk limit reached: at most 3000 MB"),
        "{detail}"
    );

    // Per host: the sum over every user's sandboxes.
    let api = with(AdmissionLimits {
        host_memory_mb: Some(1536),
        ..AdmissionLimits::default()
    });
    let a = api.user("a@example.com").await;
    let b = api.user("b@example.com").await;
    api.session(&a, json!({"memory_mb": 1024})).await;
    api.session(&b, json!({"memory_mb": 512})).await;
    let r = api.try_session(&b, json!({"memory_mb": 128})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        r.body["detail"],
        "host memory capacity reached: this host holds at most 1536 MB across all sandboxes \
         (1536 MB in use, 128 MB asked); retry when sandboxes end"
    );
}

#[tokio::test]
async fn active_session_limit_is_a_403() {
    let limits = Limits {
        max_active_sessions_per_user: 2,
        ..Limits::default()
    };
    let api = api_with(limits, true);
    let key = api.user("a@example.com").await;
    let first = api.session(&key, json!({})).await;
    api.session(&key, json!({})).await;
    let r = api
        .call(
            Method::POST,
            "/v1/sessions/session",
            None,
            Some(json!({"api_key": key})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    api.post("/kill", &key, json!({"session_id": first})).await;
    api.session(&key, json!({})).await;
}

#[tokio::test]
async fn execute() {
    let api = api();
    let key = api.user("a@example.com").await;
    let sid = api.session(&key, json!({})).await;

    let r = api.exec(&key, &sid, "echo hi").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["stdout"], "hi\n");
    assert_eq!(r.body["output"], "hi\n");
    assert_eq!(r.body["exit_code"], 0);
    assert_eq!(r.body["language"], "python", "python is the default");
    assert!(r.body["execution_time"].is_number() && r.body["cpu_time"].is_number());

    let r = api
        .post(
            "/execute",
            &key,
            json!({"command": "lang", "session_id": sid, "language": "bash"}),
        )
        .await;
    assert_eq!(r.body["stdout"], "bash");

    // A failing command is still a 200.
    let r = api.exec(&key, &sid, "fail 3").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["exit_code"], 3);
    let r = api.exec(&key, &sid, "hang").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["exit_code"], 124);
    assert_eq!(r.body["timed_out"], true);

    let bad = |body: Value| {
        let api = &api;
        let key = key.clone();
        async move { api.post("/execute", &key, body).await }
    };
    let r = bad(json!({"command": "x", "session_id": sid, "language": "ruby"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = bad(json!({"command": "x", "session_id": sid, "timeout": 0})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = bad(json!({"command": "x", "session_id": sid, "timeout": "soon"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = bad(json!({"session_id": sid})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["detail"].as_str().unwrap().contains("command"));
    let r = bad(json!({"command": 5, "session_id": sid})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = bad(json!({"command": "x", "session_id": "not-a-session"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = bad(json!({"command": "x", "session_id": uuid::Uuid::new_v4().to_string()})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Usage counts the executions (flushed or not).
    let r = api.get(&format!("/v1/sessions/usage/{sid}"), &key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["execution_count"], 4);
    lifecycle::sweep(&api.state).await.unwrap();
    let r = api.get(&format!("/v1/sessions/usage/{sid}"), &key).await;
    assert_eq!(r.body["execution_count"], 4);
}

/// Issue 8, finding 3: the answer is escaped while it streams; it must still be exactly the
/// JSON document, control bytes, quotes and multi-byte characters included.
#[tokio::test]
async fn execute_streams_exact_json_for_noisy_output() {
    let api = api();
    let key = api.user("a@example.com").await;
    let sid = api.session(&key, json!({})).await;
    let r = api.exec(&key, &sid, "noisy 100000").await;
    assert_eq!(r.status, StatusCode::OK);
    let stdout = "\u{1}\"é".repeat(100_000);
    assert_eq!(r.body["stdout"], stdout.as_str());
    assert_eq!(r.body["output"], stdout.as_str());
    assert_eq!(r.body["stderr"], "\\\u{0}".repeat(100_000).as_str());
    assert_eq!(r.body["exit_code"], 0);
    assert_eq!(r.body["language"], "python");

    let r = api
        .post(
            "/execute_async",
            &key,
            json!({"command": "noisy 1000", "session_id": sid}),
        )
        .await;
    let task = r.body["task_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = api.get(&format!("/v1/executions/{task}"), &key).await;
        if r.body["is_complete"] == true {
            assert_eq!(
                r.body["serialized_stdout"],
                "\u{1}\"é".repeat(1000).as_str()
            );
            assert_eq!(r.body["serialized_stderr"], "\\\u{0}".repeat(1000).as_str());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task did not complete"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Issue 8, finding 3: executions running at once are limited per session and per user; over
/// the limit is a 429 with a JSON detail (the official SDK raises `RateLimitError(detail)`),
/// and places come back when executions end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_executions_are_limited_per_session_and_user() {
    let api = Arc::new(api_with(
        Limits {
            max_concurrent_execs_per_session: 1,
            max_concurrent_execs_per_user: 2,
            ..Limits::default()
        },
        true,
    ));
    let key = api.user("a@example.com").await;
    let s1 = api.session(&key, json!({})).await;
    let s2 = api.session(&key, json!({})).await;
    let s3 = api.session(&key, json!({})).await;
    let slow = |sid: String| {
        let (api, key) = (api.clone(), key.clone());
        tokio::spawn(async move { api.exec(&key, &sid, "sleep 1500").await.status })
    };
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(300));
    let a = slow(s1.clone());
    pause().await;
    let r = api.exec(&key, &s1, "echo busy").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(
        r.body["detail"],
        "too many concurrent executions: at most 1 at a time per session; wait for one to finish"
    );
    let c = slow(s2.clone());
    pause().await;
    let r = api.exec(&key, &s3, "echo busy").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("at most 2 at a time per user"));
    // Another user is not affected.
    let other = api.user("b@example.com").await;
    let so = api.session(&other, json!({})).await;
    assert_eq!(
        api.exec(&other, &so, "echo hi").await.status,
        StatusCode::OK
    );
    assert_eq!(a.await.unwrap(), StatusCode::OK);
    assert_eq!(c.await.unwrap(), StatusCode::OK);
    assert_eq!(
        api.exec(&key, &s1, "echo again").await.body["stdout"],
        "again\n"
    );
}

#[tokio::test]
async fn users_cannot_see_each_others_sessions() {
    let api = api();
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    let sid = api
        .session(&alice, json!({"metadata": {"owner": "alice"}}))
        .await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let task = api
        .post(
            "/execute_async",
            &alice,
            json!({"command": "echo x", "session_id": sid}),
        )
        .await
        .body["task_id"]
        .as_str()
        .unwrap()
        .to_owned();

    for (method, path, body) in [
        (
            Method::POST,
            "/execute".to_owned(),
            Some(json!({"command": "echo x", "session_id": "SID"})),
        ),
        (
            Method::POST,
            "/execute_async".to_owned(),
            Some(json!({"command": "echo x", "session_id": "SID"})),
        ),
        (
            Method::POST,
            "/kill".to_owned(),
            Some(json!({"session_id": "SID"})),
        ),
        (Method::POST, "/download".to_owned(), None),
        (Method::GET, "/v1/sessions/session/SID".to_owned(), None),
        (Method::GET, "/v1/sessions/status/SID".to_owned(), None),
        (Method::GET, "/v1/sessions/usage/SID".to_owned(), None),
        (Method::GET, "/v1/sessions/app-url/SID".to_owned(), None),
    ] {
        let mut answers = Vec::new();
        for target in [&sid, &unknown] {
            let path = path.replace("SID", target);
            let r = if path == "/download" {
                api.raw_post(
                    &path,
                    &bob,
                    "application/x-www-form-urlencoded",
                    format!("filename=/etc/hostname&session_id={target}"),
                )
                .await
            } else {
                let body = body
                    .clone()
                    .map(|b| serde_json::from_str(&b.to_string().replace("SID", target)).unwrap());
                api.call(method.clone(), &path, Some(&bob), body).await
            };
            answers.push((r.status, r.body));
        }
        assert_eq!(answers[0].0, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            answers[0], answers[1],
            "{method} {path}: another user's session must look exactly like an unknown one"
        );
    }
    let r = api.get(&format!("/v1/executions/{task}"), &bob).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api.get("/v1/sessions/sandboxes", &bob).await;
    assert_eq!(r.body, json!([]));
    // Alice's session is untouched.
    let r = api.exec(&alice, &sid, "echo still mine").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn async_tasks_complete_and_are_stored() {
    let api = api();
    let key = api.user("a@example.com").await;
    let sid = api.session(&key, json!({})).await;
    let r = api
        .post(
            "/execute_async",
            &key,
            json!({"command": "echo later", "session_id": sid, "language": "bash"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "pending");
    let task = r.body["task_id"].as_str().unwrap().to_owned();
    let mut record = Value::Null;
    for _ in 0..500 {
        record = api.get(&format!("/v1/executions/{task}"), &key).await.body;
        if record["is_complete"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(record["is_complete"], true, "{record}");
    assert_eq!(record["status"], "complete");
    assert_eq!(record["serialized_stdout"], "later\n");
    assert_eq!(record["exit_code"], 0);
    let r = api.get("/v1/executions/not-a-task", &key).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pending_task_limit_is_a_429_with_json() {
    let limits = Limits {
        max_pending_tasks_per_user: 0,
        ..Limits::default()
    };
    let api = api_with(limits, true);
    let key = api.user("a@example.com").await;
    let sid = api.session(&key, json!({})).await;
    let r = api
        .post(
            "/execute_async",
            &key,
            json!({"command": "echo x", "session_id": sid}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "XBOUNDARYX";
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn upload_and_download_binary_files() {
    let api = api();
    let key = api.user("a@example.com").await;
    let sid = api.session(&key, json!({})).await;
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();

    // Fields first (what the official SDK sends): streamed straight into the sandbox.
    let (ctype, body) = multipart(&[
        ("remote_path", None, b"/data/deep/blob.bin"),
        ("session_id", None, sid.as_bytes()),
        ("recursive", None, b"false"),
        ("file", Some("../local/blob.bin"), &data),
    ]);
    let r = api.raw_post("/upload", &key, &ctype, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["success"], true);
    assert_eq!(r.body["remote_path"], "/data/deep/blob.bin");
    assert_eq!(r.body["size"], data.len());

    // File before `remote_path`: spooled until the target is known.
    let (ctype, body) = multipart(&[
        ("session_id", None, sid.as_bytes()),
        ("file", Some("x"), b"\x00\x01\x02"),
        ("remote_path", None, b"rel.bin"),
    ]);
    let r = api.raw_post("/upload", &key, &ctype, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["remote_path"], "/app/rel.bin");

    let download = |name: &str| {
        let api = &api;
        let body = format!("filename={name}&session_id={sid}");
        let key = key.clone();
        async move {
            api.raw_post("/download", &key, "application/x-www-form-urlencoded", body)
                .await
        }
    };
    let r = download("%2Fdata%2Fdeep%2Fblob.bin").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let got = base64::engine::general_purpose::STANDARD
        .decode(r.body["content"].as_str().unwrap())
        .unwrap();
    assert_eq!(got, data);
    assert_eq!(r.body["size"], data.len());
    let r = download("rel.bin").await;
    assert_eq!(r.body["content"], "AAEC");

    let r = download("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = download("../../etc/passwd").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["detail"].as_str().unwrap().contains(".."));
    let r = api
        .raw_post("/download", &key, "application/json", "{}")
        .await;
    assert!(r.status.is_client_error());

    let (ctype, body) = multipart(&[
        ("remote_path", None, b"/a/../../etc/x"),
        ("session_id", None, sid.as_bytes()),
        ("file", Some("x"), b"x"),
    ]);
    let r = api.raw_post("/upload", &key, &ctype, body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let (ctype, body) = multipart(&[
        ("session_id", None, sid.as_bytes()),
        ("file", Some("x"), b"x"),
    ]);
    let r = api.raw_post("/upload", &key, &ctype, body).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = api
        .raw_post(
            "/upload",
            &key,
            "multipart/form-data; boundary=zz",
            "garbage",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api.raw_post("/upload", &key, "text/plain", "garbage").await;
    assert!(r.status.is_client_error());
}

/// Issue 8, finding 6: the session is checked before any upload byte is spooled, spooled bytes
/// are capped per user, and downloads are capped (a huge sparse file is refused up front).
#[tokio::test]
async fn upload_spool_and_download_limits() {
    let spool = std::env::temp_dir().join(format!("instavm-router-spool-{}", std::process::id()));
    let store = Store::open_in_memory().unwrap();
    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::with_exec_handler(scripted));
    let limits = Limits {
        max_spool_bytes_per_user: 100_000,
        max_download_bytes: 100_000,
        ..Limits::default()
    };
    let state = AppState::new(store, runtime, limits, ADMIN_KEY, spool.clone()).unwrap();
    state.set_readiness(Readiness::Ready);
    let api = Api {
        app: app(state.clone()),
        state,
        store: Store::open_in_memory().unwrap(),
    };
    let key = api.user("a@example.com").await;
    let sid = api.session(&key, json!({})).await;
    let other = api.user("b@example.com").await;
    let spooled_files = || std::fs::read_dir(&spool).map_or(0, |d| d.count());
    let big = vec![7u8; 200_000];

    // Another user's session: 404 before anything is spooled, as for an unknown one.
    let (ctype, body) = multipart(&[
        ("session_id", None, sid.as_bytes()),
        ("file", Some("x"), &big),
        ("remote_path", None, b"/app/x"),
    ]);
    let r = api.raw_post("/upload", &other, &ctype, body).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.body["detail"], "session not found");
    assert_eq!(spooled_files(), 0);
    // A file before `session_id` is refused before any byte is read.
    let (ctype, body) = multipart(&[
        ("file", Some("x"), &big),
        ("session_id", None, sid.as_bytes()),
    ]);
    let r = api.raw_post("/upload", &key, &ctype, body).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("`session_id` must come before `file`"));
    // Over the user's spool allowance: 413, and the spool file is gone.
    let (ctype, body) = multipart(&[
        ("session_id", None, sid.as_bytes()),
        ("file", Some("x"), &big),
        ("remote_path", None, b"/app/x"),
    ]);
    let r = api.raw_post("/upload", &key, &ctype, body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .starts_with("upload spool limit reached: at most 100000 bytes"));
    assert_eq!(spooled_files(), 0);
    // Streamed uploads (`remote_path` first) are not spooled, so the allowance does not apply.
    let (ctype, body) = multipart(&[
        ("session_id", None, sid.as_bytes()),
        ("remote_path", None, b"/app/big.bin"),
        ("file", Some("x"), &big),
    ]);
    let r = api.raw_post("/upload", &key, &ctype, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Within the allowance, spooling works (and gives its bytes back).
    for _ in 0..3 {
        let (ctype, body) = multipart(&[
            ("session_id", None, sid.as_bytes()),
            ("file", Some("x"), &big[..60_000]),
            ("remote_path", None, b"/app/small.bin"),
        ]);
        let r = api.raw_post("/upload", &key, &ctype, body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    let download = |name: &str| {
        let body = format!("filename={name}&session_id={sid}");
        let (api, key) = (&api, key.clone());
        async move {
            api.raw_post("/download", &key, "application/x-www-form-urlencoded", body)
                .await
        }
    };
    let r = download("/app/big.bin").await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(
        r.body["detail"],
        "/app/big.bin is 200000 bytes; downloads are limited to 100000 bytes"
    );
    let r = download("/app/small.bin").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["size"], 60_000);
    let _ = std::fs::remove_dir_all(&spool);
}

#[tokio::test]
async fn oversized_bodies_are_a_413_with_json() {
    let limits = Limits {
        max_body_bytes: 1024,
        max_upload_bytes: 2048,
        ..Limits::default()
    };
    let api = api_with(limits, true);
    let key = api.user("a@example.com").await;
    let sid = api.session(&key, json!({})).await;
    let r = api.exec(&key, &sid, &"x".repeat(4096)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let (ctype, body) = multipart(&[
        ("remote_path", None, b"/big"),
        ("session_id", None, sid.as_bytes()),
        ("file", Some("x"), &[7u8; 10_000]),
    ]);
    let r = api.raw_post("/upload", &key, &ctype, body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
}

#[tokio::test]
async fn kill_status_and_info() {
    let api = api();
    let key = api.user("a@example.com").await;
    let sid = api.session(&key, json!({"metadata": {"team": "x"}})).await;
    let r = api.get(&format!("/v1/sessions/status/{sid}"), &key).await;
    assert_eq!(r.body["vm_status"], "active");
    assert_eq!(r.body["exists"], true);
    assert_eq!(r.body["vm_alive"], true);
    assert!(r.body["vm_id"].as_str().unwrap().starts_with("vm_"));
    let r = api.get(&format!("/v1/sessions/session/{sid}"), &key).await;
    assert_eq!(r.body["metadata"]["team"], "x");

    let r = api.post("/kill", &key, json!({"session_id": sid})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "terminated");
    let r = api.post("/kill", &key, json!({"session_id": sid})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api.exec(&key, &sid, "echo x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["detail"].as_str().unwrap().contains("killed"));
    let r = api.get(&format!("/v1/sessions/status/{sid}"), &key).await;
    assert_eq!(r.body["vm_status"], "terminated");
    assert_eq!(r.body["exists"], true);
    assert_eq!(r.body["vm_alive"], false);
    let r = api.get(&format!("/v1/sessions/session/{sid}"), &key).await;
    assert_eq!(r.body["end_reason"], "killed");
}

#[tokio::test]
async fn sessions_expire_after_their_lifetime() {
    let limits = Limits {
        min_lifetime_seconds: 1,
        ..Limits::default()
    };
    let api = api_with(limits, true);
    let key = api.user("a@example.com").await;
    let sid = api.session(&key, json!({"vm_lifetime_seconds": 1})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    lifecycle::sweep(&api.state).await.unwrap();
    let r = api.get(&format!("/v1/sessions/status/{sid}"), &key).await;
    assert_eq!(r.body["status"], "expired");
    assert_eq!(r.body["vm_alive"], false);
    let r = api.exec(&key, &sid, "echo x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_restart_marks_lost_sessions_and_interrupted_tasks() {
    let api = api();
    let key = api.user("a@example.com").await;
    let sid = api.session(&key, json!({})).await;
    let user = api
        .store
        .user_by_key_hash(&instavm_server::auth::hash_key(&key))
        .unwrap()
        .unwrap();
    api.store
        .insert_execution(
            "00000000-0000-4000-8000-000000000000",
            &sid,
            user.id,
            "python",
            chrono::Utc::now(),
        )
        .unwrap();

    // A new server process over the same store: the fake runtime has lost every sandbox.
    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new());
    let state = AppState::new(
        api.store.clone(),
        runtime,
        Limits::default(),
        ADMIN_KEY,
        std::env::temp_dir(),
    )
    .unwrap();
    lifecycle::reconcile(&state).await.unwrap();
    state.set_readiness(Readiness::Ready);
    let again = Api {
        app: app(state.clone()),
        state,
        store: api.store.clone(),
    };
    let r = again.get(&format!("/v1/sessions/status/{sid}"), &key).await;
    assert_eq!(r.body["status"], "terminated");
    assert_eq!(r.body["vm_alive"], false);
    let r = again
        .get("/v1/executions/00000000-0000-4000-8000-000000000000", &key)
        .await;
    assert_eq!(r.body["is_complete"], true);
    assert_eq!(r.body["status"], "failed");
    assert!(r.body["serialized_stderr"]
        .as_str()
        .unwrap()
        .contains("restart"));
}

#[tokio::test]
async fn sandboxes_listing_filters_by_metadata() {
    let api = api();
    let key = api.user("a@example.com").await;
    let prod = api
        .session(&key, json!({"metadata": {"env": "prod", "n": 1}}))
        .await;
    api.session(&key, json!({"metadata": {"env": "dev"}})).await;
    api.session(&key, json!({})).await;
    let r = api.get("/v1/sessions/sandboxes", &key).await;
    assert_eq!(r.body.as_array().unwrap().len(), 3);
    let r = api
        .get(
            "/v1/sessions/sandboxes?metadata=%7B%22env%22%3A%22prod%22%7D",
            &key,
        )
        .await;
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["session_id"], prod.as_str());
    let r = api.get("/v1/sessions/sandboxes?limit=2", &key).await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let r = api.get("/v1/sessions/sandboxes?limit=0", &key).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = api.get("/v1/sessions/sandboxes?limit=abc", &key).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = api
        .get("/v1/sessions/sandboxes?metadata=%7Bnope", &key)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn api_keys_crud_with_and_without_trailing_slash() {
    let api = api();
    let key = api.user("a@example.com").await;
    let r = api
        .post(
            "/v1/api-keys/",
            &key,
            json!({"description": "ci key", "extra": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let new_key = r.body["api_key"].as_str().unwrap().to_owned();
    assert_eq!(r.body["key"], new_key.as_str());
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(
        api.get("/v1/users/me", &new_key).await.status,
        StatusCode::OK
    );

    for path in ["/v1/api-keys/", "/v1/api-keys"] {
        let r = api.get(path, &key).await;
        let list = r.body.as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert!(
            list.iter().all(|k| k.get("api_key").is_none()),
            "never the plaintext"
        );
    }
    let r = api.get(&format!("/v1/api-keys/{id}"), &key).await;
    assert_eq!(r.body["description"], "ci key");
    let r = api
        .call(
            Method::PATCH,
            &format!("/v1/api-keys/{id}"),
            Some(&key),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(r.body["is_active"], false);
    assert_eq!(
        api.get("/v1/users/me", &new_key).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = api
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.body, json!({"id": id, "deleted": true}));
    let r = api
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api.get("/v1/api-keys/abc", &key).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Another user cannot see the key.
    let other = api.user("b@example.com").await;
    let first_id = api.get("/v1/api-keys/", &key).await.body[0]["id"]
        .as_i64()
        .unwrap();
    let r = api.get(&format!("/v1/api-keys/{first_id}"), &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ssh_keys() {
    let api = api();
    let key = api.user("a@example.com").await;
    let public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOXVjkXmOASXrQbvyWaF9wtjh+RVyXP7SjOBus2Q2o9H test@example";
    let r = api
        .post("/v1/ssh-keys", &key, json!({"public_key": public}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["fingerprint"],
        "SHA256:bU05fYdcKvBloGJtHM7i8Ao2bQyKnP7FxU5KXJwFPDU"
    );
    let id = r.body["id"].as_i64().unwrap();
    let r = api
        .post("/v1/ssh-keys", &key, json!({"public_key": public}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = api
        .post(
            "/v1/ssh-keys",
            &key,
            json!({"public_key": "ssh-ed25519 nope"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = api.get("/v1/ssh-keys", &key).await;
    assert_eq!(r.body["keys"][0]["comment"], "test@example");
    let r = api
        .call(
            Method::DELETE,
            &format!("/v1/ssh-keys/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.body["deleted"], true);
    let r = api.get("/v1/ssh-keys", &key).await;
    assert_eq!(r.body, json!({"keys": []}));
}

#[tokio::test]
async fn usage_breakdown_and_app_url() {
    let api = api();
    let key = api.user("a@example.com").await;
    let sid = api
        .session(&key, json!({"memory_mb": 1024, "vcpu_count": 2}))
        .await;
    let r = api.get("/v1/users/me/usage-breakdown?days=7", &key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["total_days"], 7);
    assert_eq!(r.body["daily_breakdown"].as_array().unwrap().len(), 7);
    assert!(r.body["totals"]["cpu_hours"].as_f64().unwrap() >= 0.0);
    let r = api.get("/v1/users/me/usage-breakdown?days=0", &key).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = api
        .get("/v1/users/me/usage-breakdown?start_date=2026-13-01", &key)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let r = api
        .get(&format!("/v1/sessions/app-url/{sid}?port=70000"), &key)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // This router runs no share proxy (tests/shares.rs has one).
    let r = api
        .get(&format!("/v1/sessions/app-url/{sid}?port=8000"), &key)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("shares are turned off"));
}

#[tokio::test]
async fn vm_views_of_sessions() {
    let api = api();
    let key = api.user("a@example.com").await;
    let other = api.user("b@example.com").await;
    let live = api.session(&key, json!({})).await;
    let dead = api.session(&key, json!({})).await;
    api.post("/kill", &key, json!({"session_id": dead})).await;
    let r = api.get("/v1/vms", &key).await;
    let running = r.body.as_array().unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0]["session_id"], live.as_str());
    let vm_id = running[0]["vm_id"].as_str().unwrap().to_owned();
    assert_eq!(running[0]["id"], vm_id.as_str());
    let r = api.get("/v1/vms/", &key).await;
    assert_eq!(
        r.body.as_array().unwrap().len(),
        2,
        "the trailing slash means all records"
    );
    let r = api.get(&format!("/v1/vms/{vm_id}"), &key).await;
    assert_eq!(r.body["status"], "active");
    let r = api.get(&format!("/v1/vms/{vm_id}"), &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/v1/vms", &other).await.body, json!([]));
}

/// Terminals (spec §12) over the fake runtime, whose terminals echo their input.
#[tokio::test]
async fn terminals_in_both_scopes() {
    let api = api();
    let key = api.user("pty@example.com").await;
    let sid = api.session(&key, json!({})).await;
    let vms = api.get("/v1/vms", &key).await;
    let vm_id = vms.body[0]["vm_id"].as_str().unwrap().to_owned();

    let base = format!("/v1/sessions/{sid}/pty/sessions");
    let r = api
        .post(&base, &key, json!({"cols": 100, "rows": 30}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let pty = r.body["session_id"].as_str().unwrap().to_owned();
    assert!(pty.starts_with("pty-") && pty.len() == 16, "{pty}");
    assert_eq!(r.body["id"], pty.as_str());
    assert_eq!(r.body["alive"], true);
    assert_eq!(r.body["command"], "/bin/bash -il");

    // The VM scope sees the same terminal.
    let vm_base = format!("/v1/vms/{vm_id}/pty/sessions");
    let listed = api.get(&vm_base, &key).await;
    assert_eq!(listed.body["sessions"][0]["session_id"], pty.as_str());
    let r = api
        .post(
            &format!("{vm_base}/{pty}/resize"),
            &key,
            json!({"cols": 90, "rows": 20}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["cols"].clone()),
        (StatusCode::OK, json!(90))
    );
    let r = api.get(&format!("{base}/{pty}"), &key).await;
    assert_eq!(
        (r.body["cols"].clone(), r.body["rows"].clone()),
        (json!(90), json!(20))
    );

    // Shell vs command, client-chosen ids, and what is refused.
    let r = api
        .post(
            &vm_base,
            &key,
            json!({"command": "make test", "id": "pty-0123456789ab"}),
        )
        .await;
    assert_eq!(r.body["argv"], json!(["/bin/bash", "-lc", "make test"]));
    let r = api
        .post(&vm_base, &key, json!({"id": "pty-0123456789ab"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = api.post(&base, &key, json!({"shell": "/bin/zsh"})).await;
    assert_eq!(r.body["argv"], json!(["/bin/zsh", "-il"]));
    for bad in [
        json!({"shell": "/bin/sh", "command": "ls"}),
        json!({"cols": 0}),
        json!({"rows": 5000}),
        json!({"id": "a/b"}),
        json!({"command": "  "}),
    ] {
        let r = api.post(&base, &key, bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let r = api.post(&base, &key, json!({"cols": "wide"})).await;
    assert!(r.status.is_client_error(), "{}", r.body);

    // Another user cannot see or touch them; unknown terminals are 404.
    let other = api.user("other@example.com").await;
    assert_eq!(api.get(&base, &other).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.get(&vm_base, &other).await.status,
        StatusCode::NOT_FOUND
    );
    let r = api.get(&format!("{base}/nope"), &key).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["detail"].as_str().unwrap().contains("nope"));

    let r = api
        .call(Method::DELETE, &format!("{base}/{pty}"), Some(&key), None)
        .await;
    assert_eq!(
        (r.status, r.body["status"].clone()),
        (StatusCode::OK, json!("killed"))
    );
    assert_eq!(
        api.get(&format!("{base}/{pty}"), &key).await.status,
        StatusCode::NOT_FOUND
    );

    // The WebSocket route answers a plain GET with a JSON error, not axum's text.
    let r = api
        .get(
            &format!("/v1/sessions/{sid}/pty/{pty}/connect?api_key={key}"),
            &key,
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert!(
        r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        r.body
    );
}
