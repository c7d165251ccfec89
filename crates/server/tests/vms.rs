//! Router tests of VMs and snapshots (spec §6, §7.2 to §7.4) over the fake runtime, which keeps
//! files, snapshots, env pushes and memory limits in memory.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use instavm_runtime::fake::FakeRuntime;
use instavm_runtime::{ExecOutput, Runtime, SandboxId};
use instavm_server::{app, lifecycle, AppState, Limits, Readiness};
use instavm_store::Store;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const ADMIN_KEY: &str = "test-admin-key-0123456789";

struct Api {
    app: Router,
    state: AppState,
    fake: Arc<FakeRuntime>,
    store: Store,
    _dir: tempfile::TempDir,
}

/// A file-backed store (WAL, as the real server has): concurrent requests behave as in
/// production, which a shared-cache in-memory database does not.
fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("instavm.db")).unwrap();
    let fake = Arc::new(FakeRuntime::with_exec_handler(|_, _| ExecOutput {
        stdout: "ok\n".into(),
        stderr: String::new(),
        exit_code: 0,
        execution_time: 0.0,
        cpu_time: 0.0,
        timed_out: false,
    }));
    let runtime: Arc<dyn Runtime> = fake.clone();
    let spool = std::env::temp_dir().join("instavm-router-test-spool");
    let state = AppState::new(store.clone(), runtime, Limits::default(), ADMIN_KEY, spool).unwrap();
    state.set_readiness(Readiness::Ready);
    Api {
        app: app(state.clone()),
        state,
        fake,
        store,
        _dir: dir,
    }
}

impl Api {
    async fn call(
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

    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, key, None).await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, key, Some(body)).await
    }

    async fn user(&self, email: &str) -> String {
        let (s, b) = self
            .post("/v1/admin/users", ADMIN_KEY, json!({"email": email}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["api_key"].as_str().unwrap().to_owned()
    }

    async fn vm(&self, key: &str, body: Value) -> Value {
        let (s, b) = self.post("/v1/vms?wait=true", key, body).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "active", "{b}");
        b
    }

    async fn upload(&self, key: &str, sid: &str, path: &str, data: &str) {
        let boundary = "XBOUNDARYX";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\n{sid}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"remote_path\"\r\n\r\n{path}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n{data}\r\n\
             --{boundary}--\r\n"
        );
        let req = Request::post("/upload")
            .header("x-api-key", key)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    /// The file's content, or the status when it cannot be read.
    async fn download(&self, key: &str, sid: &str, path: &str) -> Result<String, StatusCode> {
        let req = Request::post("/download")
            .header("x-api-key", key)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("filename={path}&session_id={sid}")))
            .unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        if status != StatusCode::OK {
            return Err(status);
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["content"].as_str().unwrap())
            .unwrap();
        Ok(String::from_utf8(raw).unwrap())
    }

    fn sandbox_of(&self, vm_id: &str) -> SandboxId {
        let row = self.store.get_vm(vm_id).unwrap().unwrap();
        SandboxId::parse(row.sandbox_id.as_deref().unwrap()).unwrap()
    }
}

#[tokio::test]
async fn create_with_every_field_then_list_get_patch_delete() {
    let api = api();
    let key = api.user("a@example.com").await;
    // vault_ids must name the caller's vaults.
    let (_, vault) = api.post("/v1/vaults", &key, json!({"name": "v1"})).await;
    let v1 = vault["id"].as_str().unwrap().to_owned();
    let vm = api
        .vm(
            &key,
            json!({"memory_mb": 1024, "vcpu_count": 2, "vm_lifetime_seconds": 600,
                   "metadata": {"team": "x"}, "vault_ids": [v1], "auto_suspend": false,
                   "auto_resume": true, "snapshot_on_terminate": false, "snapshot_name": "n",
                   "env": {"A": "1"}, "volumes": [], "image_variant": "standard"}),
        )
        .await;
    let vm_id = vm["vm_id"].as_str().unwrap();
    assert!(vm_id.starts_with("vm_"));
    assert_eq!(vm["id"], vm["vm_id"]);
    assert_eq!(vm["memory_mb"], 1024);
    assert_eq!(vm["vcpu_count"], 2);
    assert_eq!(vm["vault_ids"], json!([v1]));
    assert_eq!(vm["metadata"], json!({"team": "x"}));
    assert_eq!(vm["auto_resume"], true);
    // The VM has a session that runs code.
    let sid = vm["session_id"].as_str().unwrap();
    let (s, b) = api
        .post("/execute", &key, json!({"command": "x", "session_id": sid}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let (_, running) = api.get("/v1/vms", &key).await;
    assert_eq!(running.as_array().unwrap().len(), 1);
    let (s, b) = api.get(&format!("/v1/vms/{vm_id}"), &key).await;
    assert_eq!((s, b["session_id"].as_str()), (StatusCode::OK, Some(sid)));

    let (s, b) = api
        .call(
            Method::PATCH,
            &format!("/v1/vms/{vm_id}"),
            &key,
            Some(json!({"memory_mb": 2048, "auto_suspend": true, "vault_ids": []})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["memory_mb"], 2048);
    assert_eq!(b["auto_suspend"], true);
    assert_eq!(api.fake.memory_of(&api.sandbox_of(vm_id)), Some(2048));

    let (s, b) = api
        .call(Method::DELETE, &format!("/v1/vms/{vm_id}"), &key, None)
        .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("terminated"))
    );
    assert_eq!(api.get("/v1/vms", &key).await.1, json!([]));
    let (_, all) = api.get("/v1/vms/", &key).await;
    assert_eq!(all[0]["status"], "terminated");
    // Its session ended with it.
    let (s, _) = api
        .post("/execute", &key, json!({"command": "x", "session_id": sid}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_session_has_a_vm_record_and_kill_ends_it() {
    let api = api();
    let key = api.user("a@example.com").await;
    let (s, b) = api
        .call(
            Method::POST,
            "/v1/sessions/session",
            &key,
            Some(json!({"api_key": key})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let vm_id = b["vm_id"].as_str().unwrap().to_owned();
    let sid = b["session_id"].as_str().unwrap().to_owned();
    let (s, vm) = api.get(&format!("/v1/vms/{vm_id}"), &key).await;
    assert_eq!((s, vm["status"].as_str()), (StatusCode::OK, Some("active")));
    assert_eq!(vm["session_id"], sid.as_str());
    api.post("/kill", &key, json!({"session_id": sid})).await;
    let (_, vm) = api.get(&format!("/v1/vms/{vm_id}"), &key).await;
    assert_eq!(vm["status"], "terminated");
}

#[tokio::test]
async fn wait_false_answers_creating_and_finishes_in_the_background() {
    let api = api();
    let key = api.user("a@example.com").await;
    let (s, b) = api.post("/v1/vms?wait=false", &key, json!({})).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("creating"))
    );
    let vm_id = b["vm_id"].as_str().unwrap();
    for _ in 0..100 {
        let (_, b) = api.get(&format!("/v1/vms/{vm_id}"), &key).await;
        if b["status"] == "active" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the VM never became active");
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let api = api();
    let key = api.user("a@example.com").await;
    let cases = [
        (
            json!({"memory_mb": -5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "memory_mb",
        ),
        (
            json!({"memory_mb": "lots"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "memory_mb",
        ),
        (
            json!({"memory_mb": 100000}),
            StatusCode::FORBIDDEN,
            "memory cannot exceed",
        ),
        (
            json!({"vm_lifetime_seconds": 999999}),
            StatusCode::FORBIDDEN,
            "vm lifetime cannot exceed 86400s",
        ),
        (
            json!({"snapshot_id": "snap_nope"}),
            StatusCode::NOT_FOUND,
            "snapshot not found",
        ),
        (
            json!({"image_variant": "computer-use"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "computer-use",
        ),
        (
            json!({"metadata": {"x": "y".repeat(20000)}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "metadata",
        ),
        (
            json!({"volumes": [{"volume_id": "v"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "volumes",
        ),
        (
            json!({"session_id": "not-a-session"}),
            StatusCode::NOT_FOUND,
            "session not found",
        ),
        (
            json!({"vault_ids": vec!["v"; 100]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "vault_ids",
        ),
        (
            json!({"auto_suspend": "yes"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "auto_suspend",
        ),
    ];
    for (body, status, words) in cases {
        let (s, b) = api.post("/v1/vms?wait=true", &key, body.clone()).await;
        assert_eq!(s, status, "{body}: {b}");
        assert!(b["detail"].as_str().unwrap().contains(words), "{body}: {b}");
    }
    let (s, _) = api.get("/v1/vms/vm_000000000000000000000000", &key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let vm = api.vm(&key, json!({})).await;
    let path = format!("/v1/vms/{}", vm["vm_id"].as_str().unwrap());
    let (s, _) = api
        .call(Method::PATCH, &path, &key, Some(json!({"memory_mb": 64})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api
        .post(
            &format!("{path}/stage-env"),
            &key,
            json!({"entries": [{"env_name": "1BAD", "value": "x"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api.post(&format!("{path}/resume"), &key, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn another_users_vms_and_snapshots_are_404() {
    let api = api();
    let alice = api.user("a@example.com").await;
    let bob = api.user("b@example.com").await;
    let vm = api.vm(&alice, json!({})).await;
    let vm_id = vm["vm_id"].as_str().unwrap();
    let (_, snap) = api
        .post(
            &format!("/v1/vms/{vm_id}/snapshot?wait=true"),
            &alice,
            json!({"name": "s"}),
        )
        .await;
    let snap_id = snap["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, format!("/v1/vms/{vm_id}")),
        (Method::PATCH, format!("/v1/vms/{vm_id}")),
        (Method::DELETE, format!("/v1/vms/{vm_id}")),
        (Method::POST, format!("/v1/vms/{vm_id}/suspend")),
        (Method::POST, format!("/v1/vms/{vm_id}/clone")),
        (Method::POST, format!("/v1/vms/{vm_id}/snapshot")),
        (Method::GET, format!("/v1/snapshots/{snap_id}")),
        (Method::DELETE, format!("/v1/snapshots/{snap_id}")),
    ] {
        let (s, _) = api.call(method.clone(), &path, &bob, Some(json!({}))).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (s, b) = api
        .post("/v1/vms?wait=true", &bob, json!({"snapshot_id": snap_id}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(api.get("/v1/snapshots", &bob).await.1, json!([]));
    assert_eq!(api.get("/v1/vms/", &bob).await.1, json!([]));
}

#[tokio::test]
async fn snapshots_boot_clone_and_outlive_their_vm() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key, json!({"env": {"KEEP": "1"}})).await;
    let (vm_id, sid) = (
        vm["vm_id"].as_str().unwrap(),
        vm["session_id"].as_str().unwrap(),
    );
    api.upload(&key, sid, "/app/before.txt", "before").await;
    let (s, snap) = api
        .post(
            &format!("/v1/vms/{vm_id}/snapshot?wait=true"),
            &key,
            json!({"name": "first"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{snap}");
    assert_eq!(snap["status"], "ready");
    assert_eq!(snap["type"], "user");
    assert_eq!(snap["vm_id"], vm_id);
    let snap_id = snap["id"].as_str().unwrap().to_owned();
    api.upload(&key, sid, "/app/after.txt", "after").await;

    let booted = api.vm(&key, json!({"snapshot_id": snap_id})).await;
    let bsid = booted["session_id"].as_str().unwrap();
    assert_eq!(booted["snapshot_id"], snap_id.as_str());
    assert_eq!(
        api.download(&key, bsid, "/app/before.txt").await,
        Ok("before".into())
    );
    assert_eq!(
        api.download(&key, bsid, "/app/after.txt").await,
        Err(StatusCode::NOT_FOUND)
    );

    // A snapshot of the snapshot-booted VM names its parent.
    let (_, child) = api
        .post(
            &format!("/v1/vms/{}/snapshot", booted["vm_id"].as_str().unwrap()),
            &key,
            json!({}),
        )
        .await;
    assert_eq!(child["parent_snapshot_id"], snap_id.as_str());

    let (s, clone) = api
        .post(
            &format!("/v1/vms/{vm_id}/clone?wait=true"),
            &key,
            json!({"snapshot_name": "c"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{clone}");
    assert_ne!(clone["session_id"], vm["session_id"]);
    let csid = clone["session_id"].as_str().unwrap();
    assert_eq!(
        api.download(&key, csid, "/app/after.txt").await,
        Ok("after".into())
    );
    let env = api
        .fake
        .env_of(&api.sandbox_of(clone["vm_id"].as_str().unwrap()))
        .unwrap();
    assert_eq!(env.get("KEEP").map(String::as_str), Some("1"));

    // Deleting the VM keeps the snapshot; deleting the snapshot keeps the booted VM.
    api.call(Method::DELETE, &format!("/v1/vms/{vm_id}"), &key, None)
        .await;
    let (s, _) = api.get(&format!("/v1/snapshots/{snap_id}"), &key).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = api
        .call(
            Method::DELETE,
            &format!("/v1/snapshots/{snap_id}"),
            &key,
            None,
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("deleted")));
    assert_eq!(
        api.download(&key, bsid, "/app/before.txt").await,
        Ok("before".into())
    );
    let (s, _) = api.get(&format!("/v1/snapshots/{snap_id}"), &key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, system) = api.get("/v1/snapshots?type=system", &key).await;
    assert_eq!(system, json!([]));
}

#[tokio::test]
async fn suspend_resume_cycles_keep_every_file() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key, json!({})).await;
    let sid = vm["session_id"].as_str().unwrap().to_owned();
    let mut vm_id = vm["vm_id"].as_str().unwrap().to_owned();
    for cycle in 0..20 {
        api.upload(
            &key,
            &sid,
            &format!("/app/f{cycle}.txt"),
            &format!("v{cycle}"),
        )
        .await;
        let (s, b) = api
            .post(&format!("/v1/vms/{vm_id}/suspend"), &key, json!({}))
            .await;
        assert_eq!(
            (s, b["status"].as_str()),
            (StatusCode::OK, Some("suspended")),
            "{b}"
        );
        // Its disk lives in the suspend snapshot, which cannot be deleted meanwhile.
        let snap = b["suspend_snapshot_id"].as_str().unwrap();
        let (s, _) = api
            .call(Method::DELETE, &format!("/v1/snapshots/{snap}"), &key, None)
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        // Without auto_resume, the session says how to get it back.
        let (s, _) = api
            .post("/execute", &key, json!({"command": "x", "session_id": sid}))
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, b) = api
            .post(
                &format!("/v1/vms/{vm_id}/resume?wait=true"),
                &key,
                json!({}),
            )
            .await;
        assert_eq!(
            (s, b["status"].as_str()),
            (StatusCode::OK, Some("active")),
            "{b}"
        );
        assert_eq!(b["session_id"], sid.as_str());
        assert_ne!(b["vm_id"], vm_id.as_str());
        let (_, old) = api.get(&format!("/v1/vms/{vm_id}"), &key).await;
        assert_eq!(old["resumed_vm_id"], b["vm_id"]);
        vm_id = b["vm_id"].as_str().unwrap().to_owned();
    }
    for cycle in 0..20 {
        assert_eq!(
            api.download(&key, &sid, &format!("/app/f{cycle}.txt"))
                .await,
            Ok(format!("v{cycle}"))
        );
    }
    assert_eq!(
        api.get("/v1/vms", &key).await.1.as_array().unwrap().len(),
        1
    );
    // A kill ends a suspended session (and its VM) without resuming it.
    api.post(&format!("/v1/vms/{vm_id}/suspend"), &key, json!({}))
        .await;
    let (s, b) = api.post("/kill", &key, json!({"session_id": sid})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = api.get(&format!("/v1/vms/{vm_id}"), &key).await;
    assert_eq!(b["status"], "terminated");
}

#[tokio::test]
async fn auto_resume_wakes_a_suspended_vm_on_execute() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key, json!({"auto_resume": true})).await;
    let sid = vm["session_id"].as_str().unwrap();
    api.upload(&key, sid, "/app/x", "kept").await;
    api.post(
        &format!("/v1/vms/{}/suspend", vm["vm_id"].as_str().unwrap()),
        &key,
        json!({}),
    )
    .await;
    // Several requests at once: one resumes, the others wait for it.
    let body = json!({"command": "x", "session_id": sid});
    let answers = futures_join(&api, &key, &body).await;
    for (s, b) in answers {
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    assert_eq!(api.download(&key, sid, "/app/x").await, Ok("kept".into()));
    let (_, running) = api.get("/v1/vms", &key).await;
    assert_eq!(
        running.as_array().unwrap().len(),
        1,
        "resumed once: {running}"
    );
}

async fn futures_join(api: &Api, key: &str, body: &Value) -> Vec<(StatusCode, Value)> {
    let (a, b, c) = tokio::join!(
        api.post("/execute", key, body.clone()),
        api.post("/execute", key, body.clone()),
        api.post("/execute", key, body.clone()),
    );
    vec![a, b, c]
}

#[tokio::test]
async fn auto_suspend_at_expiry_and_snapshot_on_terminate() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vm = api
        .vm(
            &key,
            json!({"auto_suspend": true, "vm_lifetime_seconds": 20}),
        )
        .await;
    let other = api
        .vm(
            &key,
            json!({"snapshot_on_terminate": true, "snapshot_name": "last"}),
        )
        .await;
    // Pretend the lifetime has passed: the sweep suspends instead of destroying.
    let mut row = api
        .store
        .get_vm(vm["vm_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    row.record.expires_at = chrono::Utc::now() - chrono::Duration::seconds(1);
    api.store.save_vm(&row).unwrap();
    lifecycle::sweep(&api.state).await.unwrap();
    let (_, b) = api
        .get(&format!("/v1/vms/{}", row.record.vm_id), &key)
        .await;
    assert_eq!(b["status"], "suspended", "{b}");
    assert!(b["suspend_snapshot_id"]
        .as_str()
        .unwrap()
        .starts_with("snap_"));

    api.call(
        Method::DELETE,
        &format!("/v1/vms/{}", other["vm_id"].as_str().unwrap()),
        &key,
        None,
    )
    .await;
    let (_, snaps) = api.get("/v1/snapshots", &key).await;
    assert!(
        snaps
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "last"),
        "{snaps}"
    );
}

#[tokio::test]
async fn stage_env_reaches_the_sandbox_and_is_not_stored() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key, json!({})).await;
    let vm_id = vm["vm_id"].as_str().unwrap();
    let (s, b) = api
        .post(
            &format!("/v1/vms/{vm_id}/stage-env"),
            &key,
            json!({"entries": [{"env_name": "SECRET", "value": "hunter2"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["staged"], json!(["SECRET"]));
    let env = api.fake.env_of(&api.sandbox_of(vm_id)).unwrap();
    assert_eq!(env.get("SECRET").map(String::as_str), Some("hunter2"));
    let row = api.store.get_vm(vm_id).unwrap().unwrap();
    assert!(!row.env.contains_key("SECRET"));
}

#[tokio::test]
async fn a_restart_fails_interrupted_creates() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key, json!({})).await;
    let mut row = api
        .store
        .get_vm(vm["vm_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    row.record.vm_id = "vm_111111111111111111111111".into();
    row.record.status = instavm_api::VmState::Creating;
    api.store.save_vm(&row).unwrap();
    lifecycle::reconcile(&api.state).await.unwrap();
    let (_, b) = api.get("/v1/vms/vm_111111111111111111111111", &key).await;
    assert_eq!(b["status"], "failed");
    assert_eq!(b["end_reason"], "interrupted by a server restart");
}

#[tokio::test]
async fn session_id_attaches_or_respawns() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key, json!({})).await;
    let sid = vm["session_id"].as_str().unwrap();
    let attached = api.vm(&key, json!({"session_id": sid})).await;
    assert_eq!(attached["vm_id"], vm["vm_id"]);
    api.post("/kill", &key, json!({"session_id": sid})).await;
    let respawned = api.vm(&key, json!({"session_id": sid})).await;
    assert_ne!(respawned["vm_id"], vm["vm_id"]);
    assert_eq!(respawned["session_id"], sid);
    let (s, _) = api
        .post("/execute", &key, json!({"command": "x", "session_id": sid}))
        .await;
    assert_eq!(s, StatusCode::OK);
}

/// Egress policies (spec §2): set and read per VM and per session, the SDK's field names, the
/// runtime told at once, a create with `egress_policy`, a resume and a clone keep it.
#[tokio::test]
async fn egress_policies_are_set_read_and_applied() {
    let api = api();
    let key = api.user("a@example.com").await;
    let closed = json!({"allow_public_repos": false, "allow_http": false, "allow_https": false,
        "allowed_domains": ["Example.COM", "*.test.org"], "allowed_cidrs": ["198.18.0.7/24"]});
    let vm = api.vm(&key, json!({"egress_policy": closed})).await;
    let vm_id = vm["vm_id"].as_str().unwrap().to_owned();
    let sid = vm["session_id"].as_str().unwrap().to_owned();
    let sb = api.sandbox_of(&vm_id);
    let applied = api.fake.egress_of(&sb).unwrap();
    assert_eq!(applied.allowed_domains, vec!["example.com", "*.test.org"]);
    assert_eq!(applied.allowed_cidrs, vec!["198.18.0.0/24"]);
    assert!(!applied.allow_http && !applied.allow_https && !applied.allow_package_managers);
    let (s, b) = api.get(&format!("/v1/egress/vm/{vm_id}"), &key).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            b["allow_public_repos"].clone(),
            b["allow_package_managers"].clone()
        ),
        (json!(false), json!(false))
    );
    assert_eq!(
        (b["mode"].as_str(), b["source"].as_str()),
        (Some("allowlist"), Some("vm"))
    );
    assert_eq!(b["denied_attempts"], 0);
    // The session's policy: default until set; a set applies to its VM at once (newest wins).
    let (_, b) = api.get(&format!("/v1/egress/session/{sid}"), &key).await;
    assert_eq!(
        (b["source"].as_str(), b["allow_http"].clone()),
        (Some("default"), json!(true))
    );
    let deny = json!({"allow_public_repos": false, "allow_http": false, "allow_https": false,
        "allowed_domains": [], "allowed_cidrs": []});
    let (s, b) = api
        .post(&format!("/v1/egress/session/{sid}"), &key, deny)
        .await;
    assert_eq!(
        (s, b["status"].as_str(), b["mode"].as_str()),
        (StatusCode::OK, Some("ok"), Some("deny"))
    );
    assert!(api.fake.egress_of(&sb).unwrap().allowed_domains.is_empty());
    let (_, b) = api.get(&format!("/v1/egress/vm/{vm_id}"), &key).await;
    assert_eq!(b["source"], "session");
    // Back to open through the VM route.
    let open = json!({"allow_public_repos": true, "allow_http": true, "allow_https": true,
        "allowed_domains": [], "allowed_cidrs": []});
    let (s, _) = api
        .post(&format!("/v1/egress/vm/{vm_id}"), &key, open)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(api.fake.egress_of(&sb).unwrap().is_open());
    // A resumed VM (a new id) keeps the policy.
    let (s, _) = api
        .post(&format!("/v1/egress/vm/{vm_id}"), &key, closed.clone())
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api
        .post(&format!("/v1/vms/{vm_id}/suspend"), &key, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = api
        .post(
            &format!("/v1/vms/{vm_id}/resume?wait=true"),
            &key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let new_id = b["vm_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, vm_id);
    let p = api.fake.egress_of(&api.sandbox_of(&new_id)).unwrap();
    assert_eq!(p.allowed_domains, vec!["example.com", "*.test.org"]);
    // A clone too.
    let (s, b) = api
        .post(
            &format!("/v1/vms/{new_id}/clone?wait=true"),
            &key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let clone_id = b["vm_id"].as_str().unwrap().to_owned();
    assert!(!api
        .fake
        .egress_of(&api.sandbox_of(&clone_id))
        .unwrap()
        .is_open());
}

#[tokio::test]
async fn egress_bad_input_and_other_users_are_4xx() {
    let api = api();
    let alice = api.user("a@example.com").await;
    let bob = api.user("b@example.com").await;
    let vm = api.vm(&alice, json!({})).await;
    let vm_id = vm["vm_id"].as_str().unwrap();
    let sid = vm["session_id"].as_str().unwrap();
    for body in [
        json!({"allowed_domains": ["not a name"]}),
        json!({"allowed_domains": ["1.2.3.4"]}),
        json!({"allowed_cidrs": ["300.1.1.1/8"]}),
        json!({"allowed_cidrs": ["fd00::/8"]}),
        json!({"allow_http": "yes"}),
    ] {
        let (s, b) = api
            .post(&format!("/v1/egress/vm/{vm_id}"), &alice, body.clone())
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        let (s, _) = api
            .post("/v1/vms?wait=true", &alice, json!({"egress_policy": body}))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
    for path in [
        format!("/v1/egress/vm/{vm_id}"),
        format!("/v1/egress/session/{sid}"),
        "/v1/egress/vm/vm_nope".into(),
        "/v1/egress/session/nope".into(),
    ] {
        let (s, _) = api.get(&path, &bob).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        let (s, _) = api.post(&path, &bob, json!({})).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, _) = api
        .get(&format!("/v1/egress/vm/{vm_id}"), "wrong-key-0123456789")
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
