//! Router tests of shares (spec §9, §1.11) over the fake runtime, with the share proxy running
//! in ports mode on loopback. The fake runtime gives sandboxes no address, so a request that
//! gets past the share's checks ends in the proxy's 502 page.

mod support;

use axum::http::{Method, StatusCode};
use instavm_net::share::ShareMode;
use serde_json::json;
use support::{api, api_in};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET a share URL over a plain socket: (status, body).
async fn fetch(url: &str, extra_headers: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(hostport).await.unwrap();
    let req = format!(
        "GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}

#[tokio::test]
async fn create_is_idempotent_per_vm_and_port_and_sets_visibility() {
    let api = api(true).await;
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key).await;
    let (s, a) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": 3000, "is_public": false, "vm_id": vm["vm_id"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let id = a["share_id"].as_str().unwrap();
    assert!(id.starts_with("shr-"), "{a}");
    assert_eq!(
        (
            a["id"].as_str(),
            a["port"].as_u64(),
            a["is_public"].as_bool()
        ),
        (Some(id), Some(3000), Some(false))
    );
    assert_eq!(
        (&a["vm_id"], &a["session_id"], &a["status"]),
        (&vm["vm_id"], &vm["session_id"], &json!("active"))
    );
    let url = a["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:45") && url.ends_with('/'),
        "{url}"
    );
    assert!(a["access_url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{url}?instavm_share_token=")));

    // Same VM and port (by session this time): the same share, made public as asked.
    let (_, b) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": 3000, "is_public": true, "session_id": vm["session_id"]}),
        )
        .await;
    assert_eq!(
        (&b["share_id"], &b["url"], &b["is_public"]),
        (&a["share_id"], &a["url"], &json!(true))
    );
    assert_eq!(b["access_url"], b["url"]);
    // Another port is another share with its own URL.
    let (_, c) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": 3001, "is_public": true, "vm_id": vm["vm_id"]}),
        )
        .await;
    assert_ne!(c["share_id"], a["share_id"]);
    assert_ne!(c["url"], a["url"]);
}

#[tokio::test]
async fn update_revoke_and_what_the_proxy_answers() {
    let api = api(true).await;
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key).await;
    let (_, share) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": 8080, "is_public": false, "vm_id": vm["vm_id"]}),
        )
        .await;
    let id = share["share_id"].as_str().unwrap();
    let url = share["url"].as_str().unwrap();

    let (status, page) = fetch(url, "").await;
    assert_eq!(status, 401, "{page}");
    assert!(page.contains("This share is private"), "{page}");
    // The owner's key gets past the check (the fake VM has no address: the proxy's 502).
    let (status, page) = fetch(url, &format!("X-API-Key: {key}\r\n")).await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("no network address"), "{page}");
    let other = api.user("b@example.com").await;
    assert_eq!(fetch(url, &format!("X-API-Key: {other}\r\n")).await.0, 401);
    // The access link sets the cookie and redirects to the URL without the token.
    let (status, page) = fetch(share["access_url"].as_str().unwrap(), "").await;
    assert_eq!(status, 303, "{page}");
    assert!(
        page.contains(&format!("set-cookie: instavm_share_{id}=")),
        "{page}"
    );

    let (s, b) = api
        .patch(
            &format!("/v1/shares/{id}"),
            &key,
            json!({"is_public": true}),
        )
        .await;
    assert_eq!((s, &b["is_public"]), (StatusCode::OK, &json!(true)));
    assert_eq!(fetch(url, "").await.0, 502);
    let (s, b) = api
        .patch(&format!("/v1/shares/{id}"), &key, json!({"revoke": true}))
        .await;
    assert_eq!(
        (s, &b["status"]),
        (StatusCode::OK, &json!("revoked")),
        "{b}"
    );
    assert!(b["revoked_at"].is_string());
    let (status, page) = fetch(url, "").await;
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("revoked"));
    let (status, page) = fetch(url, "Accept: application/json\r\n").await;
    assert!(status == 404 && page.contains(r#"{"detail":"#), "{page}");
    // Revoking twice is fine; making a revoked share public is not.
    assert_eq!(
        api.patch(&format!("/v1/shares/{id}"), &key, json!({"revoke": true}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        api.patch(
            &format!("/v1/shares/{id}"),
            &key,
            json!({"is_public": true})
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    // A new create for the port is a new share.
    let (_, again) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": 8080, "is_public": true, "vm_id": vm["vm_id"]}),
        )
        .await;
    assert_ne!(again["share_id"], share["share_id"]);
}

#[tokio::test]
async fn a_share_of_a_deleted_vm_answers_502() {
    let api = api(true).await;
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key).await;
    let (_, share) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": 80, "is_public": true, "vm_id": vm["vm_id"]}),
        )
        .await;
    let vm_id = vm["vm_id"].as_str().unwrap();
    assert_eq!(
        api.call(Method::DELETE, &format!("/v1/vms/{vm_id}"), &key, None)
            .await
            .0,
        StatusCode::OK
    );
    let (status, page) = fetch(share["url"].as_str().unwrap(), "").await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("The VM behind this share is gone"), "{page}");
    // And no new share for it.
    let (s, b) = api
        .post("/v1/shares", &key, json!({"port": 81, "vm_id": vm_id}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
}

#[tokio::test]
async fn bad_input_and_other_users() {
    let api = api(true).await;
    let key = api.user("a@example.com").await;
    let other = api.user("b@example.com").await;
    let vm = api.vm(&key).await;
    for port in [json!(0), json!(65536), json!(-1), json!(70000)] {
        let (s, b) = api
            .post(
                "/v1/shares",
                &key,
                json!({"port": port, "vm_id": vm["vm_id"]}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{port}: {b}");
        assert!(
            b["detail"]
                .as_str()
                .unwrap()
                .contains("between 1 and 65535"),
            "{b}"
        );
    }
    let (s, b) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": "x", "vm_id": vm["vm_id"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(
        api.post("/v1/shares", &key, json!({"vm_id": vm["vm_id"]}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (s, b) = api.post("/v1/shares", &key, json!({"port": 80})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["detail"]
        .as_str()
        .unwrap()
        .contains("vm_id or session_id"));
    // Someone else's VM or session: not found.
    assert_eq!(
        api.post(
            "/v1/shares",
            &other,
            json!({"port": 80, "vm_id": vm["vm_id"]})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.post(
            "/v1/shares",
            &other,
            json!({"port": 80, "session_id": vm["session_id"]})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.post("/v1/shares", &key, json!({"port": 80, "vm_id": "vm_nope"}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Someone else's share, unknown shares, empty updates.
    let (_, share) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": 80, "vm_id": vm["vm_id"]}),
        )
        .await;
    let path = format!("/v1/shares/{}", share["share_id"].as_str().unwrap());
    assert_eq!(
        api.patch(&path, &other, json!({"revoke": true})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.patch("/v1/shares/shr-0000", &key, json!({"revoke": true}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.patch("/v1/shares/nope", &key, json!({"revoke": true}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (s, b) = api.patch(&path, &key, json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["detail"]
        .as_str()
        .unwrap()
        .contains("is_public or revoke"));
    let (s, _) = api.call(Method::GET, &path, &key, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn app_url_makes_a_public_share_or_answers_the_existing_one() {
    let api = api(true).await;
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key).await;
    let sid = vm["session_id"].as_str().unwrap();
    let (s, a) = api
        .call(
            Method::GET,
            &format!("/v1/sessions/app-url/{sid}?port=8000"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(
        (&a["app_url"], &a["url"], &a["direct_url"]),
        (&a["url"], &a["direct_url"], &a["app_url"])
    );
    assert_eq!(
        (a["port"].as_u64(), a["is_public"].as_bool()),
        (Some(8000), Some(true))
    );
    let (_, again) = api
        .call(
            Method::GET,
            &format!("/v1/sessions/app-url/{sid}?port=8000"),
            &key,
            None,
        )
        .await;
    assert_eq!(again["share_id"], a["share_id"]);
    // A private share made first stays private: app_url is its access link.
    let (_, private) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": 9000, "vm_id": vm["vm_id"]}),
        )
        .await;
    let (_, b) = api
        .call(
            Method::GET,
            &format!("/v1/sessions/app-url/{sid}?port=9000"),
            &key,
            None,
        )
        .await;
    assert_eq!(
        (&b["app_url"], &b["direct_url"]),
        (&private["access_url"], &private["url"])
    );
    let (s, _) = api
        .call(
            Method::GET,
            &format!("/v1/sessions/app-url/{sid}?port=0"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // The default port is 80.
    let (_, d) = api
        .call(
            Method::GET,
            &format!("/v1/sessions/app-url/{sid}"),
            &key,
            None,
        )
        .await;
    assert_eq!(d["port"], 80);
}

#[tokio::test]
async fn shares_turned_off_are_a_clear_409() {
    let api = api(false).await;
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key).await;
    let (s, b) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": 80, "vm_id": vm["vm_id"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        b["detail"].as_str().unwrap().contains("--share-listen off"),
        "{b}"
    );
}

#[tokio::test]
async fn domain_mode_urls_name_the_share_in_the_host() {
    let api = api_in(Some(ShareMode::Domain {
        listen: "127.0.0.1:0".parse().unwrap(),
        domain: "apps.test".into(),
    }))
    .await;
    let key = api.user("a@example.com").await;
    let vm = api.vm(&key).await;
    let (_, share) = api
        .post(
            "/v1/shares",
            &key,
            json!({"port": 80, "is_public": true, "vm_id": vm["vm_id"]}),
        )
        .await;
    let id = share["share_id"].as_str().unwrap();
    let url = share["url"].as_str().unwrap();
    let port: u16 = url
        .strip_prefix(&format!("http://{id}.apps.test:"))
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("{url}"))
        .parse()
        .unwrap();
    let ask = |host: String| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    // Its own host reaches the share (the fake VM has no address: the proxy's 502).
    let page = ask(format!("{id}.apps.test:{port}")).await;
    assert!(page.starts_with("HTTP/1.1 502"), "{page}");
    for other in [
        "shr-0000.apps.test".to_owned(),
        "apps.test".to_owned(),
        format!("{id}.evil.test"),
    ] {
        let page = ask(other.clone()).await;
        assert!(page.starts_with("HTTP/1.1 404"), "{other}: {page}");
    }
}
