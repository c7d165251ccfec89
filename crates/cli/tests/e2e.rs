//! End-to-end tests: the real `instavm server` on the real sandbox runtime, driven through the
//! Rust SDK and the CLI. They need root (the namespace runtime); CI runs them as root.

mod common;

use base64::Engine;
use common::{json_line, session, TestServer};
use instavm_sdk::{
    Client, Error, ExecuteRequest, Metadata, StartSessionRequest, UpdateApiKeyRequest,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn req(session_id: &str, language: Option<&str>, code: &str) -> ExecuteRequest {
    ExecuteRequest {
        command: code.to_owned(),
        session_id: session_id.to_owned(),
        language: language.map(str::to_owned),
        timeout: None,
    }
}

async fn py(client: &Client, sid: &str, code: &str) -> instavm_sdk::ExecuteResponse {
    client
        .execute(&req(sid, None, code))
        .await
        .expect("execute python")
}

async fn bash(client: &Client, sid: &str, code: &str) -> instavm_sdk::ExecuteResponse {
    client
        .execute(&req(sid, Some("bash"), code))
        .await
        .expect("execute bash")
}

fn status_of(err: Error) -> u16 {
    err.status()
        .unwrap_or_else(|| panic!("expected an HTTP error, got {err}"))
}

#[tokio::test]
async fn e2e_users_keys_and_cli_identity() {
    let server = TestServer::start();

    // The admin creates a user through the CLI; the key is shown once.
    let out = server
        .cli()
        .args([
            "admin",
            "users",
            "create",
            "dev@example.com",
            "--name",
            "Dev",
            "--json",
        ])
        .env("INSTAVM_ADMIN_API_KEY", &server.admin_key)
        .output()
        .unwrap();
    let created = json_line(&out);
    let key = created["api_key"].as_str().unwrap().to_owned();
    assert_eq!(created["email"], "dev@example.com");

    // A second user with the same email is refused.
    let out = server
        .cli()
        .args(["admin", "users", "create", "DEV@example.com"])
        .env("INSTAVM_ADMIN_API_KEY", &server.admin_key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: HTTP 409: "));

    // auth set-key reads the key from stdin; whoami uses it.
    let mut child = server
        .cli()
        .args(["auth", "set-key", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let stored = json_line(&child.wait_with_output().unwrap());
    assert_eq!(stored["status"], "stored");
    assert_ne!(stored["api_key"], key.as_str(), "the key is redacted");

    let client = Client::new(&server.base_url, Some(key.clone())).unwrap();
    let public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOXVjkXmOASXrQbvyWaF9wtjh+RVyXP7SjOBus2Q2o9H test@example";
    let ssh = client.add_ssh_key(public).await.unwrap();
    assert_eq!(
        ssh.fingerprint,
        "SHA256:bU05fYdcKvBloGJtHM7i8Ao2bQyKnP7FxU5KXJwFPDU"
    );

    let me = json_line(&server.cli().args(["whoami", "--json"]).output().unwrap());
    assert_eq!(me["email"], "dev@example.com");
    assert_eq!(me["name"], "Dev");
    assert_eq!(me["ssh_keys"][0]["id"], ssh.id);
    let status = json_line(
        &server
            .cli()
            .args(["auth", "status", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["api_key"]["source"], "config");
    assert_eq!(status["base_url"]["source"], "env");

    // A second key works until it is revoked.
    let second = client.create_api_key(Some("ci")).await.unwrap();
    let other = Client::new(&server.base_url, Some(second.api_key.clone())).unwrap();
    assert_eq!(other.me().await.unwrap().email, "dev@example.com");
    assert_eq!(client.list_api_keys().await.unwrap().len(), 2);
    client
        .update_api_key(
            second.record.id,
            &UpdateApiKeyRequest {
                is_active: Some(false),
                ..UpdateApiKeyRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(status_of(other.me().await.unwrap_err()), 401);

    // A bad key: 401 from the API, and the CLI's hint with exit code 1.
    let out = server
        .cli()
        .args(["whoami", "--api-key", "ivm_bad000000000000000000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("Error: Invalid API key or session expired"),
        "{err}"
    );

    let out = server
        .cli()
        .args(["auth", "logout", "--json"])
        .output()
        .unwrap();
    assert_eq!(json_line(&out)["status"], "logged_out");
    let out = server.cli().args(["whoami"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No InstaVM API key configured"));
}

#[tokio::test]
async fn e2e_python_and_bash_execution() {
    let server = TestServer::start();
    let (client, _) = server.user("a@example.com").await;
    let sid = client
        .start_session(&StartSessionRequest {
            env: Some([("GREETING".to_owned(), "hello there".to_owned())].into()),
            ..StartSessionRequest::default()
        })
        .await
        .unwrap()
        .session_id;

    let out = py(&client, &sid, "print('hello from python')").await;
    assert_eq!(out.stdout, "hello from python\n");
    assert_eq!(out.output, out.stdout);
    assert_eq!(out.exit_code, 0);
    assert!(out.execution_time >= 0.0 && out.cpu_time >= 0.0);

    // State persists between Python executions.
    py(
        &client,
        &sid,
        "counter = 41\ndef bump():\n    global counter\n    counter += 1\n    return counter",
    )
    .await;
    let out = py(&client, &sid, "print(bump())").await;
    assert_eq!(out.stdout, "42\n");

    // An exception is an answer, not an HTTP error; the session keeps working after it.
    let out = py(&client, &sid, "1 / 0").await;
    assert_ne!(out.exit_code, 0);
    assert!(out.stderr.contains("ZeroDivisionError"), "{}", out.stderr);
    assert_eq!(py(&client, &sid, "print(counter)").await.stdout, "42\n");

    // Bash: exit codes, the working directory, the session's environment.
    let out = bash(&client, &sid, "echo out; echo err >&2; exit 3").await;
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str(), out.exit_code),
        ("out\n", "err\n", 3)
    );
    assert_eq!(bash(&client, &sid, "pwd").await.stdout, "/app\n");
    assert_eq!(
        bash(&client, &sid, "echo \"$GREETING\"").await.stdout,
        "hello there\n"
    );
    let out = bash(&client, &sid, "true").await;
    assert_eq!(out.exit_code, 0, "exit_code is present and 0 for bash");

    // Large output comes back whole.
    let out = py(&client, &sid, "print('x' * 5_000_000, end='')").await;
    assert_eq!(out.stdout.len(), 5_000_000);

    // The CLI: inline code and a file, with the language inferred from the extension.
    let key = client.api_key().unwrap();
    let out = server
        .cli()
        .args([
            "exec",
            "--cmd",
            "print(6 * 7)",
            "--session",
            &sid,
            "--api-key",
            key,
            "--json",
        ])
        .output()
        .unwrap();
    let payload = json_line(&out);
    assert_eq!(payload["stdout"], "42\n");
    assert_eq!(payload["session_id"], sid.as_str());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("job.sh");
    std::fs::write(&script, "echo from-file; exit 0\n").unwrap();
    let out = server
        .cli()
        .arg("exec")
        .arg(&script)
        .args(["--api-key", key, "--json"])
        .output()
        .unwrap();
    let payload = json_line(&out);
    assert_eq!(payload["stdout"], "from-file\n");
    assert_eq!(payload["language"], "bash");
    assert_ne!(
        payload["session_id"],
        sid.as_str(),
        "without --session, exec starts one"
    );
    let out = server
        .cli()
        .args([
            "exec",
            "--cmd",
            "echo plain",
            "--language",
            "bash",
            "--api-key",
            key,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Stdout\nplain"), "{text}");
}

#[tokio::test]
async fn e2e_timeouts_answer_before_the_client_gives_up() {
    let server = TestServer::start();
    let (client, _) = server.user("a@example.com").await;
    let sid = session(&client).await;
    py(&client, &sid, "import time").await;
    for (language, code) in [(None, "time.sleep(30)"), (Some("bash"), "sleep 30")] {
        let mut r = req(&sid, language, code);
        r.timeout = Some(3);
        let started = Instant::now();
        let out = client.execute(&r).await.expect("a timeout is a 200");
        let took = started.elapsed();
        assert_eq!(out.exit_code, 124, "{language:?}");
        assert!(out.timed_out);
        assert!(took < Duration::from_secs(3), "{language:?} took {took:?}");
    }
    // The session is still usable.
    assert_eq!(bash(&client, &sid, "echo alive").await.stdout, "alive\n");
    assert_eq!(py(&client, &sid, "print('alive')").await.stdout, "alive\n");
}

#[tokio::test]
async fn e2e_upload_and_download_binary_files() {
    let server = TestServer::start();
    let (client, _) = server.user("a@example.com").await;
    let sid = session(&client).await;
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("blob.bin");
    std::fs::write(&local, &data).unwrap();

    let up = client
        .upload_file(&sid, &local, "/data/nested/blob.bin")
        .await
        .unwrap();
    assert_eq!(
        (up.remote_path.as_str(), up.size),
        ("/data/nested/blob.bin", data.len() as u64)
    );
    assert_eq!(
        client
            .download(&sid, "/data/nested/blob.bin")
            .await
            .unwrap(),
        data
    );
    // The code in the sandbox sees the same bytes.
    let out = py(&client, &sid, "import hashlib; print(hashlib.sha256(open('/data/nested/blob.bin','rb').read()).hexdigest())").await;
    let expected = {
        use std::fmt::Write;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&data);
        digest.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    assert_eq!(out.stdout.trim(), expected);

    // Relative paths land in /app; empty files round-trip.
    client
        .upload_bytes(&sid, "empty.txt", Vec::new())
        .await
        .unwrap();
    assert_eq!(
        client.download(&sid, "/app/empty.txt").await.unwrap(),
        Vec::<u8>::new()
    );
    bash(&client, &sid, "printf '\\x00\\xff\\x10' > /app/made.bin").await;
    assert_eq!(
        client.download(&sid, "made.bin").await.unwrap(),
        vec![0, 0xff, 0x10]
    );

    // Bad paths and missing files are clear 4xx answers.
    assert_eq!(
        status_of(client.download(&sid, "../../etc/shadow").await.unwrap_err()),
        400
    );
    assert_eq!(
        status_of(client.download(&sid, "/nope/missing").await.unwrap_err()),
        404
    );
    assert_eq!(
        status_of(client.download(&sid, "/app").await.unwrap_err()),
        400
    );
    assert_eq!(
        status_of(
            client
                .upload_bytes(&sid, "/x/../../etc/passwd", b"x".to_vec())
                .await
                .unwrap_err()
        ),
        400
    );
}

#[tokio::test]
async fn e2e_async_tasks_kill_and_status() {
    let server = TestServer::start();
    let (client, key) = server.user("a@example.com").await;
    let sid = session(&client).await;

    let task = client
        .execute_async(&req(&sid, Some("bash"), "sleep 1; echo done"))
        .await
        .unwrap();
    assert!(!client.execution(&task.task_id).await.unwrap().is_complete);
    let rec = client
        .wait_for_task(
            &task.task_id,
            Duration::from_millis(200),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(rec.serialized_stdout, "done\n");
    assert_eq!(rec.exit_code, Some(0));

    // The CLI submits a task and waits for it.
    let out = server
        .cli()
        .args([
            "exec",
            "--cmd",
            "print('bg')",
            "--async",
            "--session",
            &sid,
            "--api-key",
            &key,
            "--json",
        ])
        .output()
        .unwrap();
    let task_id = json_line(&out)["task_id"].as_str().unwrap().to_owned();
    let out = server
        .cli()
        .args(["exec", "result", &task_id, "--api-key", &key, "--json"])
        .output()
        .unwrap();
    assert_eq!(json_line(&out)["stdout"], "bg\n");

    let status = client.session_status(&sid).await.unwrap();
    assert_eq!(
        (status.vm_status.as_str(), status.exists, status.vm_alive),
        ("active", true, true)
    );
    assert!(status.vm_id.starts_with("vm_"));
    let usage = client.session_usage(&sid).await.unwrap();
    assert!(usage.execution_count >= 2, "{usage:?}");

    client.kill(&sid).await.unwrap();
    let status = client.session_status(&sid).await.unwrap();
    assert_eq!(
        (status.vm_status.as_str(), status.exists, status.vm_alive),
        ("terminated", true, false)
    );
    assert_eq!(
        status_of(client.execute(&req(&sid, None, "1")).await.unwrap_err()),
        404
    );
    assert_eq!(status_of(client.kill(&sid).await.unwrap_err()), 404);
}

#[tokio::test]
async fn e2e_users_are_isolated() {
    let server = TestServer::start();
    let (alice, _) = server.user("alice@example.com").await;
    let (bob, _) = server.user("bob@example.com").await;
    let sid = session(&alice).await;
    py(&alice, &sid, "secret = 'alice only'").await;
    let task = alice
        .execute_async(&req(&sid, None, "print(secret)"))
        .await
        .unwrap();
    let unknown = uuid::Uuid::new_v4().to_string();

    for target in [&sid, &unknown] {
        let e1 = bob
            .execute(&req(target, None, "print(secret)"))
            .await
            .unwrap_err();
        assert_eq!(e1.to_string(), "HTTP 404: session not found");
        let e2 = bob.session_status(target).await.unwrap_err();
        assert_eq!(e2.to_string(), "HTTP 404: session not found");
        let e3 = bob.download(target, "/etc/hostname").await.unwrap_err();
        assert_eq!(e3.to_string(), "HTTP 404: session not found");
        let e4 = bob.kill(target).await.unwrap_err();
        assert_eq!(e4.to_string(), "HTTP 404: session not found");
    }
    assert_eq!(
        status_of(bob.execution(&task.task_id).await.unwrap_err()),
        404
    );
    assert!(bob.list_sandboxes(None, None).await.unwrap().is_empty());
    assert_eq!(
        py(&alice, &sid, "print(secret)").await.stdout,
        "alice only\n"
    );
}

#[tokio::test]
async fn e2e_sandboxes_listing_with_metadata_filter() {
    let server = TestServer::start();
    let (client, _) = server.user("a@example.com").await;
    let mut ids = Vec::new();
    for env in ["prod", "dev", "prod"] {
        let mut metadata = Metadata::new();
        metadata.insert("env".into(), json!(env));
        let s = client
            .start_session(&StartSessionRequest {
                metadata: Some(metadata),
                ..StartSessionRequest::default()
            })
            .await
            .unwrap();
        ids.push(s.session_id);
    }
    let mut filter = Metadata::new();
    filter.insert("env".into(), json!("prod"));
    let prod = client.list_sandboxes(Some(&filter), None).await.unwrap();
    let got: Vec<&str> = prod.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[0].as_str()], "newest first");
    assert_eq!(client.list_sandboxes(None, Some(1)).await.unwrap().len(), 1);
    assert_eq!(
        status_of(client.list_sandboxes(None, Some(0)).await.unwrap_err()),
        422
    );
}

#[tokio::test]
async fn e2e_bad_input_gets_json_4xx() {
    let server = TestServer::start();
    let (client, key) = server.user("a@example.com").await;
    let sid = session(&client).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base_url);
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            http.post(url("/execute"))
                .header("x-api-key", &key)
                .body("{not json"),
            400,
        ),
        (
            http.post(url("/execute"))
                .header("x-api-key", &key)
                .body(vec![0xc3, 0x28]),
            400,
        ),
        (
            http.post(url("/execute"))
                .header("x-api-key", &key)
                .json(&json!({"command": ["x"], "session_id": sid})),
            422,
        ),
        (
            http.post(url("/execute"))
                .header("x-api-key", &key)
                .json(&json!({"command": "x", "session_id": sid, "language": "cobol"})),
            422,
        ),
        (
            http.post(url("/execute"))
                .header("x-api-key", &key)
                .body(vec![b'x'; 80 << 20]),
            413,
        ),
        (
            http.post(url("/execute"))
                .json(&json!({"command": "x", "session_id": sid})),
            401,
        ),
        (
            http.post(url("/upload"))
                .header("x-api-key", &key)
                .header("content-type", "multipart/form-data; boundary=b")
                .body("--b\r\nbroken"),
            400,
        ),
        (
            http.post(url("/v1/sessions/session"))
                .json(&json!({"api_key": key, "vm_lifetime_seconds": 999_999})),
            403,
        ),
        (
            http.get(url("/v1/sessions/sandboxes?metadata=%5B1%5D"))
                .header("x-api-key", &key),
            422,
        ),
        (http.get(url("/no/such/route")), 404),
        (http.put(url("/execute")).header("x-api-key", &key), 405),
    ];
    for (request, expected) in cases {
        let res = request.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("error bodies are JSON");
        assert_eq!(status, expected, "{body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    // The session survived all of that.
    assert_eq!(py(&client, &sid, "print('ok')").await.stdout, "ok\n");
}

#[tokio::test]
async fn e2e_restart_keeps_records_and_marks_dead_sessions() {
    let mut server = TestServer::start();
    let (client, key) = server.user("a@example.com").await;
    let sid = session(&client).await;
    py(&client, &sid, "kept = 'still here'").await;
    let task = client
        .execute_async(&req(&sid, Some("bash"), "echo stored"))
        .await
        .unwrap();
    client
        .wait_for_task(
            &task.task_id,
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    // A crash: the sandboxes outlive the server and are recovered.
    server.kill9();
    server.restart();
    let client = Client::new(&server.base_url, Some(key.clone())).unwrap();
    assert_eq!(client.me().await.unwrap().email, "a@example.com");
    let rec = client.execution(&task.task_id).await.unwrap();
    assert_eq!(rec.serialized_stdout, "stored\n");
    assert_eq!(
        client.session_status(&sid).await.unwrap().vm_status,
        "active"
    );
    assert_eq!(
        py(&client, &sid, "print(kept)").await.stdout,
        "still here\n"
    );

    // A crash that also loses the sandboxes: the session is marked, never left active.
    let pending = client
        .execute_async(&req(&sid, Some("bash"), "sleep 600"))
        .await
        .unwrap();
    server.kill9();
    server.purge();
    server.restart();
    let client = Client::new(&server.base_url, Some(key)).unwrap();
    let status = client.session_status(&sid).await.unwrap();
    assert_eq!(
        (status.vm_status.as_str(), status.vm_alive),
        ("terminated", false)
    );
    assert!(status.end_reason.unwrap().contains("lost"));
    let rec = client.execution(&pending.task_id).await.unwrap();
    assert!(rec.is_complete);
    assert!(rec.error.unwrap().contains("restart"));
    // New sessions work after the restart.
    let sid = session(&client).await;
    assert_eq!(py(&client, &sid, "print(1)").await.stdout, "1\n");
}

#[tokio::test]
async fn e2e_sessions_expire() {
    let server = TestServer::start();
    let (client, _) = server.user("a@example.com").await;
    let sid = client
        .start_session(&StartSessionRequest {
            vm_lifetime_seconds: Some(20),
            ..StartSessionRequest::default()
        })
        .await
        .unwrap()
        .session_id;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.session_status(&sid).await.unwrap();
        if status.vm_status == "expired" {
            assert!(!status.vm_alive);
            break;
        }
        assert!(Instant::now() < deadline, "still {status:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        status_of(client.execute(&req(&sid, None, "1")).await.unwrap_err()),
        404
    );
}

#[test]
fn e2e_download_is_json_with_base64() {
    // The wire format the official SDK decodes, checked on raw bytes.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = TestServer::start();
    rt.block_on(async {
        let (client, key) = server.user("a@example.com").await;
        let sid = session(&client).await;
        client
            .upload_bytes(&sid, "/app/b.bin", vec![1, 2, 3, 250])
            .await
            .unwrap();
        let body: Value = reqwest::Client::new()
            .post(format!("{}/download", server.base_url))
            .header("x-api-key", key)
            .form(&[("filename", "/app/b.bin"), ("session_id", sid.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["size"], 4);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body["content"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes, [1, 2, 3, 250]);
    });
}

/// Issue 8, findings 3 and 4: three sandboxes print 20 MB of `\x01` at once (six bytes each
/// once escaped in JSON) and the server's memory stays bounded; 100 MB of `"` and `\x01` from a
/// 256 MiB sandbox is truncated and the session lives on. Executions running at once per
/// session are limited with a 429.
#[tokio::test]
async fn e2e_noisy_output_is_bounded_and_sessions_survive() {
    let server = TestServer::start();
    let (client, key) = server.user("a@example.com").await;
    let mut sids = Vec::new();
    for _ in 0..3 {
        sids.push(session(&client).await);
    }
    let before = server.rss().0;
    let http = reqwest::Client::new();
    let noisy = sids.iter().map(|sid| {
        let (http, url, key) = (http.clone(), format!("{}/execute", server.base_url), key.clone());
        let body = json!({"command": "import sys; sys.stdout.write('\\x01' * 20_000_000)", "session_id": sid});
        async move {
            // Read the answer as it streams, without holding it.
            let mut res = http.post(url).header("x-api-key", key).json(&body).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let mut n = 0usize;
            while let Some(chunk) = res.chunk().await.unwrap() {
                n += chunk.len();
            }
            n
        }
    });
    let sizes = futures::future::join_all(noisy).await;
    let (_, peak) = server.rss();
    eprintln!(
        "server RSS: {} MiB before, {} MiB peak",
        before >> 20,
        peak >> 20
    );
    for n in sizes {
        // `stdout` and `output`, each 20 MB of `\u0001`.
        assert!(n > 240_000_000, "{n}");
    }
    assert!(peak < 200 << 20, "server peak RSS {} MiB", peak >> 20);

    // A 256 MiB sandbox printing 100 MB on each stream keeps 32 MiB of each and lives on.
    let sid = client
        .start_session(&StartSessionRequest {
            memory_mb: Some(256),
            ..StartSessionRequest::default()
        })
        .await
        .unwrap()
        .session_id;
    assert_eq!(py(&client, &sid, "kept = 1").await.exit_code, 0);
    let out = bash(
        &client,
        &sid,
        "head -c 100000000 /dev/zero | tr '\\0' '\"'; head -c 100000000 /dev/zero | tr '\\0' '\\001' >&2",
    )
    .await;
    assert_eq!(out.exit_code, 0);
    let dropped = 100_000_000 - (32 << 20);
    assert!(out.stdout.ends_with(&format!(
        "[instavm: stdout truncated, {dropped} bytes dropped]\n"
    )));
    assert!(out.stderr.ends_with(&format!(
        "[instavm: stderr truncated, {dropped} bytes dropped]\n"
    )));
    assert_eq!(py(&client, &sid, "print(kept)").await.stdout, "1\n");

    // At most 4 executions at once per session: a fifth is a 429 with a JSON detail.
    let sleep = req(&sid, None, "import time; time.sleep(0.5)");
    let slow = (0..5).map(|_| client.execute(&sleep));
    let results = futures::future::join_all(slow).await;
    let refused: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let detail = refused[0].to_string();
    assert!(
        detail
            .contains("HTTP 429: too many concurrent executions: at most 4 at a time per session"),
        "{detail}"
    );
}

/// Issue 8, admission: vCPUs above the host's CPUs and sums over a user's limit are 403s with
/// the limit in the detail (the flags set the sums).
#[tokio::test]
async fn e2e_admission_limits_are_403s() {
    let server = TestServer::start_with(&["--user-memory-mb", "1024"]);
    let (client, _) = server.user("a@example.com").await;
    let cpus = std::thread::available_parallelism().unwrap().get().min(8) as u32;
    let start = |memory_mb: u32, vcpu_count: u32| {
        let client = &client;
        async move {
            let req = StartSessionRequest {
                memory_mb: Some(memory_mb),
                vcpu_count: Some(vcpu_count),
                ..StartSessionRequest::default()
            };
            client.start_session(&req).await
        }
    };
    let err = start(512, cpus + 1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("HTTP 403: vcpu count cannot exceed {cpus}")
    );
    start(512, 1).await.unwrap();
    start(512, 1).await.unwrap();
    let err = start(128, 1).await.unwrap_err();
    assert_eq!(status_of_ref(&err), 403);
    assert!(
        err.to_string()
            .contains("memory limit reached: at most 1024 MB across a user's live sandboxes"),
        "{err}"
    );
}

fn status_of_ref(err: &Error) -> u16 {
    err.status()
        .unwrap_or_else(|| panic!("expected an HTTP error, got {err}"))
}

/// Issue 8, finding 6: an upload for someone else's session spools nothing; a download of a
/// 1 TB sparse file is refused at once with a 413.
#[tokio::test]
async fn e2e_upload_ownership_and_download_limits() {
    let server = TestServer::start();
    let (client, key) = server.user("a@example.com").await;
    let (_, other_key) = server.user("b@example.com").await;
    let sid = session(&client).await;
    let http = reqwest::Client::new();
    let upload = |key: String, form: reqwest::multipart::Form| {
        http.post(format!("{}/upload", server.base_url))
            .header("x-api-key", key)
            .multipart(form)
            .send()
    };
    let part = || reqwest::multipart::Part::bytes(vec![9u8; 8 << 20]).file_name("x");
    // `remote_path` after the file, so it would be spooled: checked first, 404.
    let form = reqwest::multipart::Form::new()
        .text("session_id", sid.clone())
        .part("file", part())
        .text("remote_path", "/app/x");
    let res = upload(other_key, form).await.unwrap();
    assert_eq!(res.status(), 404);
    let spool = server.data_dir().join("spool");
    assert_eq!(std::fs::read_dir(&spool).map_or(0, |d| d.count()), 0);
    // The owner may spool it.
    let form = reqwest::multipart::Form::new()
        .text("session_id", sid.clone())
        .part("file", part())
        .text("remote_path", "/app/x");
    let res = upload(key.clone(), form).await.unwrap();
    assert_eq!(res.status(), 200);

    assert_eq!(
        bash(&client, &sid, "truncate -s 1T /app/huge")
            .await
            .exit_code,
        0
    );
    let started = Instant::now();
    let res = http
        .post(format!("{}/download", server.base_url))
        .header("x-api-key", &key)
        .form(&[("filename", "/app/huge"), ("session_id", sid.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "/app/huge is 1099511627776 bytes; downloads are limited to 1073741824 bytes"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
