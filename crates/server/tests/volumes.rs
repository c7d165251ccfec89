//! Router tests of volumes, checkpoints, the volume files API and VM mounts (spec §16, §6.12
//! to §6.14) over the fake runtime, which keeps volumes as file maps and mounts as lists.

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

    async fn delete(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, key, None).await
    }

    async fn patch(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, key, Some(body)).await
    }

    async fn volume(&self, key: &str, name: &str, quota: u64) -> String {
        let (s, b) = self
            .post(
                "/v1/volumes",
                key,
                json!({"name": name, "quota_bytes": quota}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["id"].as_str().unwrap().to_owned()
    }

    /// Upload with the fields in the given order (the official SDK: path, overwrite, file).
    async fn upload(&self, key: &str, vol: &str, parts: &[(&str, &str)]) -> (StatusCode, Value) {
        let boundary = "XBOUNDARYX";
        let mut body = String::new();
        for (name, value) in parts {
            let filename = if *name == "file" {
                "; filename=\"./local.txt\""
            } else {
                ""
            };
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let req = Request::post(format!("/v1/volumes/{vol}/files/upload"))
            .header("x-api-key", key)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).expect("JSON body");
        assert!(!status.is_server_error(), "{status}: {v}");
        (status, v)
    }

    async fn put_file(&self, key: &str, vol: &str, path: &str, data: &str) {
        let (s, b) = self
            .upload(
                key,
                vol,
                &[("path", path), ("overwrite", "true"), ("file", data)],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    async fn download(&self, key: &str, vol: &str, path: &str) -> Result<String, StatusCode> {
        let (s, b) = self
            .post(
                &format!("/v1/volumes/{vol}/files/download"),
                key,
                json!({"path": path}),
            )
            .await;
        if s != StatusCode::OK {
            return Err(s);
        }
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b["content"].as_str().unwrap())
            .unwrap();
        assert_eq!(b["size"], raw.len());
        Ok(String::from_utf8(raw).unwrap())
    }

    fn sandbox_of(&self, vm_id: &str) -> SandboxId {
        let row = self.store.get_vm(vm_id).unwrap().unwrap();
        SandboxId::parse(row.sandbox_id.as_deref().unwrap()).unwrap()
    }
}

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn volume_crud_with_usage_and_quota_rules() {
    let api = api();
    let key = api.user("a@example.com").await;
    let (s, v) = api
        .post(
            "/v1/volumes",
            &key,
            json!({"name": "project-data", "quota_bytes": 10 * MIB, "extra": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("vol_"));
    assert_eq!(v["name"], "project-data");
    assert_eq!(v["quota_bytes"], 10 * MIB);
    assert_eq!(v["used_bytes"], 0);
    assert_eq!(v["status"], "ready");

    // Same name again: 409; bad names and quotas: 422.
    let (s, _) = api
        .post(
            "/v1/volumes",
            &key,
            json!({"name": "project-data", "quota_bytes": MIB}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    for body in [
        json!({"quota_bytes": MIB}),
        json!({"name": "x"}),
        json!({"name": "", "quota_bytes": MIB}),
        json!({"name": "a/b", "quota_bytes": MIB}),
        json!({"name": "x", "quota_bytes": 5}),
        json!({"name": "x", "quota_bytes": -1}),
        json!({"name": "x", "quota_bytes": "5gb"}),
    ] {
        let (s, b) = api.post("/v1/volumes", &key, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
    }

    api.put_file(&key, &id, "a.bin", &"x".repeat(3000)).await;
    let (_, list) = api.get("/v1/volumes?refresh_usage=false", &key).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (s, _) = api.get("/v1/volumes?refresh_usage=yes", &key).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, got) = api
        .get(&format!("/v1/volumes/{id}?refresh_usage=true"), &key)
        .await;
    assert_eq!(got["used_bytes"], 3000);

    let (s, b) = api
        .patch(
            &format!("/v1/volumes/{id}"),
            &key,
            json!({"name": "project-data-v2", "quota_bytes": 20 * MIB}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["id"], id);
    assert_eq!(b["name"], "project-data-v2");
    assert_eq!(b["quota_bytes"], 20 * MIB);
    let (s, _) = api
        .patch(&format!("/v1/volumes/{id}"), &key, json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Renaming onto another of the user's names: 409.
    api.volume(&key, "taken", MIB).await;
    let (s, _) = api
        .patch(&format!("/v1/volumes/{id}"), &key, json!({"name": "taken"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Shrinking below what is used: 409.
    api.put_file(&key, &id, "big.bin", &"y".repeat(2 * MIB as usize))
        .await;
    let (s, b) = api
        .patch(
            &format!("/v1/volumes/{id}"),
            &key,
            json!({"quota_bytes": MIB}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");

    let (s, b) = api.delete(&format!("/v1/volumes/{id}"), &key).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["volume_id"], id);
    let (s, _) = api.get(&format!("/v1/volumes/{id}"), &key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = api.get("/v1/volumes", &key).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "only `taken` is left");
}

#[tokio::test]
async fn checkpoints_are_frozen_and_latest_is_the_newest() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vol = api.volume(&key, "v", 10 * MIB).await;
    let (_, empty) = api
        .get(&format!("/v1/volumes/{vol}/checkpoints"), &key)
        .await;
    assert_eq!(empty, json!([]));
    api.put_file(&key, &vol, "f.txt", "one").await;
    // An empty body and `{}` both work.
    let (s, c1) = api
        .call(
            Method::POST,
            &format!("/v1/volumes/{vol}/checkpoints"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c1}");
    api.put_file(&key, &vol, "f.txt", "two").await;
    let (s, c2) = api
        .post(
            &format!("/v1/volumes/{vol}/checkpoints"),
            &key,
            json!({"name": "pre-release"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c2["name"], "pre-release");
    assert_eq!(c2["status"], "ready");
    let (_, list) = api
        .get(&format!("/v1/volumes/{vol}/checkpoints"), &key)
        .await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![c2["id"].as_str().unwrap(), c1["id"].as_str().unwrap()]
    );

    // `latest` resolves to the newest when mounting ro.
    let vm = api.vm(&key, json!({})).await;
    let vm_id = vm["vm_id"].as_str().unwrap();
    let (s, m) = api
        .post(
            &format!("/v1/vms/{vm_id}/volumes?wait=true"),
            &key,
            json!({"volume_id": vol, "mount_path": "/snap", "mode": "ro"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["checkpoint_id"], c2["id"]);
    let mounts = api.fake.mounts_of(&api.sandbox_of(vm_id));
    assert_eq!(
        mounts[0].checkpoint.as_ref().unwrap().as_str(),
        c2["id"].as_str().unwrap()
    );

    // A mounted checkpoint cannot go; an unmounted one can; unknown ones are 404.
    let c2_id = c2["id"].as_str().unwrap();
    let (s, _) = api
        .delete(&format!("/v1/volumes/{vol}/checkpoints/{c2_id}"), &key)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let c1_id = c1["id"].as_str().unwrap();
    let (s, b) = api
        .delete(&format!("/v1/volumes/{vol}/checkpoints/{c1_id}"), &key)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["checkpoint_id"], c1_id);
    let (s, _) = api
        .delete(&format!("/v1/volumes/{vol}/checkpoints/{c1_id}"), &key)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn files_api_upload_download_list_delete_and_refusals() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vol = api.volume(&key, "v", MIB).await;
    api.put_file(&key, &vol, "docs/README.md", "hello").await;
    api.put_file(&key, &vol, "docs/sub/deep.txt", "deep").await;
    api.put_file(&key, &vol, "top.txt", "t").await;
    assert_eq!(
        api.download(&key, &vol, "docs/README.md").await.unwrap(),
        "hello"
    );

    // Without overwrite an existing file is refused; with it, replaced.
    let (s, b) = api
        .upload(&key, &vol, &[("path", "top.txt"), ("file", "new")])
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = api
        .upload(
            &key,
            &vol,
            &[("path", "top.txt"), ("overwrite", "false"), ("file", "new")],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(api.download(&key, &vol, "top.txt").await.unwrap(), "t");

    let (_, all) = api.get(&format!("/v1/volumes/{vol}/files"), &key).await;
    let paths: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec!["docs/README.md", "docs/sub/deep.txt", "top.txt"]
    );
    let (_, docs) = api
        .get(
            &format!("/v1/volumes/{vol}/files?prefix=docs/&recursive=false&limit=1000"),
            &key,
        )
        .await;
    assert_eq!(
        docs,
        json!([{"path": "docs/README.md", "size": 5, "modified_at": docs[0]["modified_at"]}])
    );
    let (_, one) = api
        .get(&format!("/v1/volumes/{vol}/files?limit=1"), &key)
        .await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    let (s, _) = api
        .get(&format!("/v1/volumes/{vol}/files?limit=0"), &key)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Escapes and malformed paths: 400 everywhere.
    for bad in ["../x", "/etc/passwd", "a/../../b", ""] {
        let (s, b) = api
            .upload(&key, &vol, &[("path", bad), ("file", "x")])
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
        assert_eq!(
            api.download(&key, &vol, bad).await,
            Err(StatusCode::BAD_REQUEST),
            "{bad}"
        );
        let enc = bad.replace('/', "%2F");
        let (s, _) = api
            .delete(&format!("/v1/volumes/{vol}/files?path={enc}"), &key)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (s, _) = api
        .get(&format!("/v1/volumes/{vol}/files?prefix=..%2F"), &key)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The file part before its path: refused before a byte is taken.
    let (s, _) = api
        .upload(&key, &vol, &[("file", "x"), ("path", "late.txt")])
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api.upload(&key, &vol, &[("path", "nofile.txt")]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Past the quota: 413 with a clear detail, and the volume keeps what it had.
    let (s, b) = api
        .upload(
            &key,
            &vol,
            &[
                ("path", "huge.bin"),
                ("file", &"z".repeat(MIB as usize + 1)),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("volume quota exceeded"),
        "{b}"
    );
    assert_eq!(
        api.download(&key, &vol, "huge.bin").await,
        Err(StatusCode::NOT_FOUND)
    );

    let (s, b) = api
        .delete(&format!("/v1/volumes/{vol}/files?path=top.txt"), &key)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["path"], "top.txt");
    let (s, _) = api
        .delete(&format!("/v1/volumes/{vol}/files?path=top.txt"), &key)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.delete(&format!("/v1/volumes/{vol}/files"), &key).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        api.download(&key, &vol, "missing").await,
        Err(StatusCode::NOT_FOUND)
    );
}

#[tokio::test]
async fn live_mounts_rules_and_listing() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vol = api.volume(&key, "v", MIB).await;
    let a = api.vm(&key, json!({})).await["vm_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = api.vm(&key, json!({})).await["vm_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, m) = api
        .post(
            &format!("/v1/vms/{a}/volumes?wait=true"),
            &key,
            json!({"volume_id": vol, "mount_path": "/data/"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["mode"], "rw");
    assert_eq!(m["mount_path"], "/data");
    assert_eq!(m["checkpoint_id"], Value::Null);
    let mounts = api.fake.mounts_of(&api.sandbox_of(&a));
    assert_eq!(mounts.len(), 1);
    assert!(mounts[0].checkpoint.is_none());

    // A second rw mount anywhere: 409 naming the holder.
    let (s, e) = api
        .post(
            &format!("/v1/vms/{b}/volumes"),
            &key,
            json!({"volume_id": vol, "mount_path": "/data", "mode": "rw"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(e["detail"].as_str().unwrap().contains(&a), "{e}");
    // The same path twice in one VM: 409.
    let (s, _) = api
        .post(
            &format!("/v1/vms/{a}/volumes"),
            &key,
            json!({"volume_id": vol, "mount_path": "/data"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Deleting a mounted volume: 409.
    let (s, e) = api.delete(&format!("/v1/volumes/{vol}"), &key).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(e["detail"].as_str().unwrap().contains(&a));

    // Bad input: mount paths, modes, checkpoints, missing fields.
    for (body, want) in [
        (
            json!({"volume_id": vol, "mount_path": "data"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"volume_id": vol, "mount_path": "/"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"volume_id": vol, "mount_path": "/proc/x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"volume_id": vol, "mount_path": "/sys"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"volume_id": vol, "mount_path": "/dev/v"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"volume_id": vol, "mount_path": "/a/../proc"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"volume_id": vol}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"mount_path": "/x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"volume_id": vol, "mount_path": "/x", "mode": "rx"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"volume_id": vol, "mount_path": "/x", "mode": "rw", "checkpoint_id": "latest"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"volume_id": vol, "mount_path": "/x", "mode": "ro"}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"volume_id": vol, "mount_path": "/x", "mode": "ro", "checkpoint_id": "ckpt_nope"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"volume_id": "vol_nope", "mount_path": "/x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"volume_id": "nope", "mount_path": "/x"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (s, e) = api
            .post(&format!("/v1/vms/{b}/volumes"), &key, body.clone())
            .await;
        assert_eq!(s, want, "{body}: {e}");
    }
    let (s, _) = api
        .post(
            "/v1/vms/vm_nope/volumes",
            &key,
            json!({"volume_id": vol, "mount_path": "/x"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (_, list) = api.get(&format!("/v1/vms/{a}/volumes"), &key).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["volume_id"], vol);
    assert_eq!(list[0]["volume_name"], "v");

    // Unmount: mount_path required, must match; then the volume is free for B.
    let (s, _) = api
        .delete(&format!("/v1/vms/{a}/volumes/{vol}"), &key)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api
        .delete(
            &format!("/v1/vms/{a}/volumes/{vol}?mount_path=/other"),
            &key,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, u) = api
        .delete(
            &format!("/v1/vms/{a}/volumes/{vol}?mount_path=%2Fdata&wait=true"),
            &key,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["mount_path"], "/data");
    assert!(api.fake.mounts_of(&api.sandbox_of(&a)).is_empty());
    let (_, list) = api.get(&format!("/v1/vms/{a}/volumes"), &key).await;
    assert_eq!(list, json!([]));
    let (s, _) = api
        .post(
            &format!("/v1/vms/{b}/volumes"),
            &key,
            json!({"volume_id": vol, "mount_path": "/data"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // A VM that ends releases its volume.
    let (s, _) = api.delete(&format!("/v1/vms/{b}"), &key).await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = api.get(&format!("/v1/vms/{b}/volumes"), &key).await;
    assert_eq!(list, json!([]));
    let (s, _) = api
        .post(
            &format!("/v1/vms/{b}/volumes"),
            &key,
            json!({"volume_id": vol, "mount_path": "/data"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "an ended VM mounts nothing");
    let (s, _) = api
        .post(
            &format!("/v1/vms/{a}/volumes"),
            &key,
            json!({"volume_id": vol, "mount_path": "/data"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn create_time_volumes_both_forms_and_snapshot_boots() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vol = api.volume(&key, "shared", MIB).await;
    api.put_file(&key, &vol, "f", "x").await;
    let (_, c) = api
        .post(&format!("/v1/volumes/{vol}/checkpoints"), &key, json!({}))
        .await;

    // CLI form (with the explicit null) and manifest form (create_if_missing, size_gb).
    let vm = api
        .vm(&key, json!({"volumes": [
            {"volume_id": vol, "mount_path": "/data", "mode": "rw", "checkpoint_id": null},
            {"volume_id": vol, "mount_path": "/snap", "mode": "ro", "checkpoint_id": "latest"},
            {"name": "cache", "mount_path": "/cache", "mode": "rw", "size_gb": 2, "create_if_missing": true},
        ]}))
        .await;
    let vm_id = vm["vm_id"].as_str().unwrap().to_owned();
    let mounts = api.fake.mounts_of(&api.sandbox_of(&vm_id));
    assert_eq!(mounts.len(), 3);
    assert_eq!(
        mounts[1].checkpoint.as_ref().unwrap().as_str(),
        c["id"].as_str().unwrap()
    );
    let (_, vols) = api.get("/v1/volumes", &key).await;
    let cache = vols
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "cache")
        .unwrap();
    assert_eq!(cache["quota_bytes"], 2u64 << 30);

    // Refusals before anything boots.
    for (body, want) in [
        (
            json!({"volumes": [{"name": "nope", "mount_path": "/x"}]}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"volumes": [{"volume_id": vol, "mount_path": "/x"}]}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"volumes": [{"volume_id": vol, "mount_path": "relative", "mode": "ro"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"volumes": [{"mount_path": "/x"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"volumes": [
            {"volume_id": vol, "mount_path": "/x", "mode": "ro"},
            {"volume_id": vol, "mount_path": "/x", "mode": "ro"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"volumes": "x"}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (s, e) = api.post("/v1/vms?wait=true", &key, body.clone()).await;
        assert_eq!(s, want, "{body}: {e}");
    }

    // A clone keeps the ro mounts; the rw ones stay with the running source.
    let (s, clone) = api
        .post(&format!("/v1/vms/{vm_id}/clone?wait=true"), &key, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{clone}");
    let clone_id = clone["vm_id"].as_str().unwrap();
    let paths: Vec<String> = api
        .fake
        .mounts_of(&api.sandbox_of(clone_id))
        .into_iter()
        .map(|m| m.mount_path)
        .collect();
    assert_eq!(paths, vec!["/snap".to_owned()]);

    // Suspend and resume: the new VM gets every mount back, rw included.
    let (s, b) = api
        .post(&format!("/v1/vms/{vm_id}/suspend"), &key, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, resumed) = api
        .post(
            &format!("/v1/vms/{vm_id}/resume?wait=true"),
            &key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{resumed}");
    let new_id = resumed["vm_id"].as_str().unwrap();
    assert_ne!(new_id, vm_id);
    let (_, list) = api.get(&format!("/v1/vms/{new_id}/volumes"), &key).await;
    let mut paths: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mount_path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, vec!["/cache", "/data", "/snap"]);
    assert_eq!(api.fake.mounts_of(&api.sandbox_of(new_id)).len(), 3);
}

#[tokio::test]
async fn other_users_volumes_are_404() {
    let api = api();
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    let vol = api.volume(&alice, "mine", MIB).await;
    api.put_file(&alice, &vol, "secret.txt", "s").await;
    let (_, c) = api
        .post(&format!("/v1/volumes/{vol}/checkpoints"), &alice, json!({}))
        .await;
    let ckpt = c["id"].as_str().unwrap();
    // Bob may use the same name: names are per user.
    api.volume(&bob, "mine", MIB).await;
    let bob_vm = api.vm(&bob, json!({})).await["vm_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice_vm = api.vm(&alice, json!({})).await["vm_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path, body) in [
        (Method::GET, format!("/v1/volumes/{vol}"), None),
        (
            Method::PATCH,
            format!("/v1/volumes/{vol}"),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, format!("/v1/volumes/{vol}"), None),
        (Method::GET, format!("/v1/volumes/{vol}/checkpoints"), None),
        (
            Method::POST,
            format!("/v1/volumes/{vol}/checkpoints"),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            format!("/v1/volumes/{vol}/checkpoints/{ckpt}"),
            None,
        ),
        (Method::GET, format!("/v1/volumes/{vol}/files"), None),
        (
            Method::DELETE,
            format!("/v1/volumes/{vol}/files?path=secret.txt"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/volumes/{vol}/files/download"),
            Some(json!({"path": "secret.txt"})),
        ),
        (
            Method::POST,
            format!("/v1/vms/{bob_vm}/volumes"),
            Some(json!({"volume_id": vol, "mount_path": "/x"})),
        ),
        (
            Method::POST,
            format!("/v1/vms/{alice_vm}/volumes"),
            Some(json!({"volume_id": vol, "mount_path": "/x"})),
        ),
        (Method::GET, format!("/v1/vms/{alice_vm}/volumes"), None),
    ] {
        let (s, b) = api.call(method.clone(), &path, &bob, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {b}");
    }
    let (s, _) = api
        .upload(&bob, &vol, &[("path", "x"), ("file", "x")])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = api.get("/v1/volumes", &bob).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(api.download(&alice, &vol, "secret.txt").await.unwrap(), "s");
    // No key at all: 401.
    let (s, _) = api.get("/v1/volumes", "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn records_survive_a_reopen_and_orphans_are_cleaned() {
    let api = api();
    let key = api.user("a@example.com").await;
    let vol = api.volume(&key, "keep", MIB).await;
    // Something the runtime holds with no record (a crash between the two writes).
    let orphan = instavm_runtime::VolumeId::parse("vol_orphan").unwrap();
    api.fake.volume_create(&orphan, MIB).await.unwrap();
    lifecycle::reconcile(&api.state).await.unwrap();
    let held: Vec<String> = api
        .fake
        .volume_list()
        .await
        .unwrap()
        .into_iter()
        .map(|(v, _)| v.to_string())
        .collect();
    assert_eq!(held, vec![vol.clone()]);
    let (s, _) = api.get(&format!("/v1/volumes/{vol}"), &key).await;
    assert_eq!(s, StatusCode::OK);
}
