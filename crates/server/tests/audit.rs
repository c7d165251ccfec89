//! Router tests of audit events (spec §14) over the fake runtime: every change a route makes is
//! an event, newest first, paged with an opaque cursor, visible to its owner and the admin.

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::{api, Api, ADMIN_KEY};
use tower::ServiceExt;

async fn events(api: &Api, key: &str, query: &str) -> Value {
    let (s, b) = api
        .call(Method::GET, &format!("/v1/audit/events{query}"), key, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

fn types(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_change_is_an_event_with_its_actor() {
    let api = api(true).await;
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key).await;
    let vm_id = vm["vm_id"].as_str().unwrap();
    let (_, share) = api
        .post("/v1/shares", &key, json!({"port": 80, "vm_id": vm_id}))
        .await;
    api.patch(
        &format!("/v1/shares/{}", share["share_id"].as_str().unwrap()),
        &key,
        json!({"revoke": true}),
    )
    .await;
    api.patch(
        &format!("/v1/vms/{vm_id}"),
        &key,
        json!({"memory_mb": 1024}),
    )
    .await;
    api.call(Method::DELETE, &format!("/v1/vms/{vm_id}"), &key, None)
        .await;

    let page = events(&api, &key, "?limit=200").await;
    let mut seen = types(&page);
    seen.reverse();
    for want in [
        "user.created",
        "api_key.created",
        "session.started",
        "vm.created",
        "vm.active",
        "share.created",
        "share.revoked",
        "vm.updated",
        "session.terminated",
        "vm.terminated",
    ] {
        assert!(
            seen.contains(&want.to_owned()),
            "{want} missing from {seen:?}"
        );
    }
    let items = page["items"].as_array().unwrap();
    let created = items
        .iter()
        .find(|e| e["event_type"] == "share.created")
        .unwrap();
    assert_eq!(
        (
            &created["actor_type"],
            &created["vm_id"],
            &created["resource_type"]
        ),
        (&json!("user"), &vm["vm_id"], &json!("share"))
    );
    assert_eq!(created["event_payload"]["port"], 80);
    assert!(
        created["request_id"].is_string() && created["id"].as_str().unwrap().starts_with("evt_")
    );
    // The user was made by the admin.
    let made = items
        .iter()
        .find(|e| e["event_type"] == "user.created")
        .unwrap();
    assert_eq!(made["actor_type"], "admin");
    let updated = items
        .iter()
        .find(|e| e["event_type"] == "vm.updated")
        .unwrap();
    assert_eq!(updated["event_payload"]["memory_mb"], 1024);

    // One event, and filters.
    let id = created["id"].as_str().unwrap();
    let (s, one) = api
        .call(Method::GET, &format!("/v1/audit/events/{id}"), &key, None)
        .await;
    assert_eq!((s, &one), (StatusCode::OK, created));
    assert_eq!(
        types(&events(&api, &key, "?event_group=share").await),
        ["share.revoked", "share.created"]
    );
    assert_eq!(
        types(&events(&api, &key, "?event_type=vm.terminated").await),
        ["vm.terminated"]
    );
    let by_vm = events(&api, &key, &format!("?vm_id={vm_id}")).await;
    assert!(by_vm["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["vm_id"] == vm["vm_id"]));

    // Another user sees none of it; the admin sees it all.
    let other = api.user("b@example.com").await;
    let theirs = types(&events(&api, &other, "").await);
    assert!(
        theirs
            .iter()
            .all(|t| t == "user.created" || t == "api_key.created"),
        "{theirs:?}"
    );
    assert_eq!(
        api.call(Method::GET, &format!("/v1/audit/events/{id}"), &other, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let admin = events(&api, ADMIN_KEY, "?event_group=share").await;
    assert_eq!(types(&admin), ["share.revoked", "share.created"]);
}

#[tokio::test]
async fn pages_follow_the_cursor_to_older_events_without_gaps() {
    let api = api(false).await;
    let key = api.user("a@example.com").await;
    for _ in 0..5 {
        api.vm(&key).await;
    }
    let all: Vec<String> = events(&api, &key, "?limit=200").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let q = if cursor.is_empty() {
            "?limit=3".to_owned()
        } else {
            format!("?limit=3&cursor={cursor}")
        };
        let page = events(&api, &key, &q).await;
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, all);
    for bad in ["?limit=0", "?limit=201", "?cursor=nope", "?user_id=x"] {
        let (s, b) = api
            .call(Method::GET, &format!("/v1/audit/events{bad}"), &key, None)
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {b}");
    }
    let (s, cat) = api.call(Method::GET, "/v1/audit/catalog", &key, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        cat["catalog"]["vm"]
            .as_array()
            .unwrap()
            .contains(&json!("vm.terminated")),
        "{cat}"
    );
}

#[tokio::test]
async fn metrics_for_the_admin_only() {
    let api = api(true).await;
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key).await;
    api.post(
        "/v1/shares",
        &key,
        json!({"port": 80, "vm_id": vm["vm_id"]}),
    )
    .await;
    let (s, b) = api.call(Method::GET, "/metrics", &key, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let req = Request::builder()
        .uri("/metrics")
        .header("x-api-key", ADMIN_KEY)
        .body(Body::empty())
        .unwrap();
    let res = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for want in [
        r#"instavm_http_requests_total{method="POST",route="/v1/vms",status="200"} 1"#,
        r#"instavm_vms{state="active"} 1"#,
        r#"instavm_sandbox_start_duration_seconds_count{kind="fresh"} 1"#,
        "instavm_http_request_duration_seconds_bucket{",
        "instavm_audit_events ",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    // Raw paths (with ids) never become labels.
    assert!(!text.contains(vm["vm_id"].as_str().unwrap()));
}
