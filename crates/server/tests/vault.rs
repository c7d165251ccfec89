//! Router tests of the secrets vault (spec §4) over the fake runtime: every route, the error
//! statuses, ownership, and that no answer carries a value.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::api;

const VALUE: &str = "sk-router-test-value";

#[tokio::test]
async fn every_route_and_no_value_in_any_answer() {
    let api = api(false).await;
    let key = api.user("v@example.com").await;
    let mut answers = Vec::new();
    let (s, v) = api.post("/v1/vaults", &key, json!({"name": "a"})).await;
    assert_eq!(s, StatusCode::OK);
    let vid = v["id"].as_str().unwrap().to_owned();
    let base = format!("/v1/vaults/{vid}");
    let (s, c) = api
        .post(
            &format!("{base}/credentials"),
            &key,
            json!({"name": "OPENAI_API_KEY", "value": VALUE}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c["credential_type"], "api_key");
    answers.push(c.clone());
    let cid = c["id"].as_str().unwrap().to_owned();
    let (s, _) = api
        .post(
            &format!("{base}/credentials"),
            &key,
            json!({"name": "OPENAI_API_KEY", "value": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, r) = api
        .post(
            &format!("{base}/credentials/{cid}/rotate"),
            &key,
            json!({"value": VALUE}),
        )
        .await;
    assert_eq!((s, r["id"].as_str()), (StatusCode::OK, Some(cid.as_str())));
    answers.push(r);
    let (s, svc) = api
        .post(
            &format!("{base}/services"),
            &key,
            json!({"host": "api.example.com", "auth_config": {"type": "header", "header": "X-Key", "key": "OPENAI_API_KEY"}, "enabled": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, t) = api
        .post(
            &format!("{base}/services:from_template"),
            &key,
            json!({"template_ids": ["openai", "stripe"]}),
        )
        .await;
    assert_eq!((s, t["created"].as_u64()), (StatusCode::OK, Some(2)));
    for path in [
        "/v1/vaults".to_owned(),
        "/v1/vaults/catalog".to_owned(),
        base.clone(),
        format!("{base}/discover"),
        format!("{base}/credentials"),
        format!("{base}/services"),
        format!("{base}/request-logs?limit=10"),
    ] {
        let (s, b) = api.call(Method::GET, &path, &key, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        answers.push(b);
    }
    let (s, b) = api.patch(&base, &key, json!({})).await;
    assert_eq!(s, StatusCode::OK);
    answers.push(b);
    assert!(!serde_json::to_string(&answers).unwrap().contains(VALUE));
    // Another user sees nothing of it.
    let other = api.user("w@example.com").await;
    let (s, _) = api.call(Method::GET, &base, &other, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api
        .post("/v1/vms?wait=true", &other, json!({"vault_ids": [vid]}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The owner attaches it; the VM record names it once.
    let (s, vm) = api
        .post("/v1/vms?wait=true", &key, json!({"vault_ids": [vid, vid]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{vm}");
    assert_eq!(vm["vault_ids"], json!([vid]));
    let id = svc["id"].as_str().unwrap();
    let (s, _) = api
        .call(Method::DELETE, &format!("{base}/services/{id}"), &key, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api
        .call(Method::DELETE, &format!("{base}/services/{id}"), &key, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api
        .call(
            Method::DELETE,
            &format!("{base}/credentials/{cid}"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.call(Method::DELETE, &base, &key, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.call(Method::GET, &base, &key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_is_422_with_detail() {
    let api = api(false).await;
    let key = api.user("x@example.com").await;
    let (_, v) = api.post("/v1/vaults", &key, json!({"name": "a"})).await;
    let base = format!("/v1/vaults/{}", v["id"].as_str().unwrap());
    for (path, body) in [
        ("/v1/vaults".to_owned(), json!({"name": ""})),
        (
            format!("{base}/credentials"),
            json!({"name": "A", "value": ""}),
        ),
        (
            format!("{base}/services"),
            json!({"host": "http://a.b/", "auth_config": {"type": "bearer", "token": "A"}}),
        ),
        (
            format!("{base}/services"),
            json!({"host": "a.b", "auth_config": {"type": "nope"}}),
        ),
        (format!("{base}/services"), json!({"host": "a.b"})),
        (
            format!("{base}/services:from_template"),
            json!({"template_ids": ["nope"]}),
        ),
        (format!("{base}/services:from_template"), json!({})),
    ] {
        let (s, b) = api.post(&path, &key, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path} {body}: {b}");
    }
    let (s, _) = api
        .call(
            Method::GET,
            &format!("{base}/request-logs?limit=0"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}
