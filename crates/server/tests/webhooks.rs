//! Webhooks at the router (no worker running, so nothing is sent): the endpoint API, the URL
//! guard of a default server, deliveries paging and ownership; credits routes answer.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::api;

#[tokio::test]
async fn endpoints_guard_and_ownership() {
    let api = api(false).await;
    let key = api.user("a@example.com").await;
    let other = api.user("b@example.com").await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/",
        "http://10.1.2.3/",
    ] {
        let (s, b) = api
            .post("/v1/webhooks/endpoints", &key, json!({ "url": url }))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{url}: {b}");
    }
    let (s, b) = api
        .post(
            "/v1/webhooks/endpoints",
            &key,
            json!({"url": "ftp://example.com/"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = api
        .post(
            "/v1/webhooks/endpoints",
            &key,
            json!({"url": "https://93.184.216.34/hook", "timeout_seconds": 61}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");

    let (s, ep) = api
        .post(
            "/v1/webhooks/endpoints",
            &key,
            json!({"url": "https://93.184.216.34/hook", "event_patterns": ["vm.*"], "description": null}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ep}");
    let id = ep["id"].as_str().unwrap().to_owned();
    assert!(ep["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(ep["status"], "active");
    assert_eq!(ep["timeout_seconds"], 10);
    assert_eq!(ep["max_retries"], 5);

    let (s, list) = api
        .call(Method::GET, "/v1/webhooks/endpoints", &key, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none());
    let path = format!("/v1/webhooks/endpoints/{id}");
    let (s, _) = api.call(Method::GET, &path, &other, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = api
        .patch(&path, &key, json!({"max_retries": 2, "enabled": false}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "disabled");
    assert_eq!(b["max_retries"], 2);
    let (s, b) = api.post(&format!("{path}/test"), &key, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = api.patch(&path, &key, json!({"enabled": true})).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("active")));
    let (s, rotated) = api
        .post(&format!("{path}/rotate-secret"), &key, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(rotated["secret"], ep["secret"]);
    let (s, t) = api.post(&format!("{path}/test"), &key, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["event_type"], "webhook.test");
    let (s, page) = api
        .call(Method::GET, "/v1/webhooks/deliveries?limit=1", &key, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["items"][0]["status"], "pending");
    assert_eq!(page["items"][0]["event_type"], "webhook.test");
    let (s, _) = api
        .call(
            Method::GET,
            "/v1/webhooks/deliveries?cursor=nope",
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, page) = api
        .call(Method::GET, "/v1/webhooks/deliveries", &other, None)
        .await;
    assert_eq!(
        (s, page["items"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let d = t["id"].as_str().unwrap();
    let (s, _) = api
        .post(
            &format!("/v1/webhooks/deliveries/{d}/replay"),
            &other,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = api.call(Method::DELETE, &path, &key, None).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("disabled"))
    );

    // Endpoint changes are audit events.
    let (_, ev) = api
        .call(
            Method::GET,
            "/v1/audit/events?event_group=webhook",
            &key,
            None,
        )
        .await;
    let mut kinds: Vec<&str> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "webhook.endpoint_created",
            "webhook.endpoint_disabled",
            "webhook.endpoint_disabled",
            "webhook.endpoint_enabled",
            "webhook.endpoint_updated",
            "webhook.secret_rotated",
        ]
    );
}

#[tokio::test]
async fn credits_routes_answer() {
    let api = api(false).await;
    let key = api.user("a@example.com").await;
    for path in [
        "/v1/credits/allocation",
        "/v1/credits/summary?period=all",
        "/v1/credits/usage?period=last_30_days",
        "/v1/credits/check?usage_type=browser_automation&required_credits=1",
        "/v1/credits/rates",
        "/v1/credits/usage/trends?period=7d&granularity=weekly",
        "/v1/credits/usage/forecasting",
        "/v1/users/me/usage-breakdown?days=3",
    ] {
        let (s, b) = api.call(Method::GET, path, &key, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
    let (s, _) = api
        .call(Method::GET, "/v1/credits/summary?period=year", &key, None)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api
        .call(
            Method::PUT,
            "/v1/admin/users/1/credits",
            &key,
            Some(json!({"dollars": 5})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
