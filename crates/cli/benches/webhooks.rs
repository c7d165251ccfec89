//! Webhook delivery benchmark (not a test): starts `instavm server --allow-private-webhooks`,
//! runs a keep-alive HTTP receiver on loopback (answers 200 at once), queues `webhook.test`
//! deliveries through the API (8 requests in flight) and measures
//! - deliveries per second: deliveries / (first queued → last received);
//! - queue-to-receipt latency per delivery (the API answer to the receiver's read).
//!
//! Prints p50/p99 and writes JSON to `--out PATH`, `INSTAVM_BENCH_OUT`, or
//! `<target>/instavm-bench/webhooks.json`.
//!
//! Run: `cargo bench -p instavm-cli --bench webhooks` (as root, real runtime; no VM is made).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use instavm_sdk::CreateWebhookRequest;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const DELIVERIES: usize = 2000;
const IN_FLIGHT: usize = 8;

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// A minimal HTTP/1.1 keep-alive receiver: records when each event id arrived.
async fn receiver(seen: Seen) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let at = Instant::now();
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                        if let Some(id) = v["id"].as_str() {
                            seen.lock().unwrap().insert(id.to_owned(), at);
                        }
                    }
                    if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn main() {
    let server = common::TestServer::start_with(&["--allow-private-webhooks"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let seen: Seen = Arc::default();
        let port = receiver(seen.clone()).await;
        let (client, _) = server.user("bench@example.com").await;
        let ep = client
            .create_webhook(&CreateWebhookRequest {
                url: format!("http://127.0.0.1:{port}/hook"),
                event_patterns: Some(vec!["webhook.test".into()]),
                ..Default::default()
            })
            .await
            .expect("create endpoint");
        let client = Arc::new(client);
        let queued: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..IN_FLIGHT {
            let (client, queued, id) = (client.clone(), queued.clone(), ep.id.clone());
            tasks.push(tokio::spawn(async move {
                for _ in (worker..DELIVERIES).step_by(IN_FLIGHT) {
                    let r = client.test_webhook(&id).await.expect("queue");
                    let event = r["event_id"].as_str().unwrap().to_owned();
                    queued.lock().unwrap().insert(event, Instant::now());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let queued_in = start.elapsed();
        let deadline = Instant::now() + Duration::from_secs(300);
        while seen.lock().unwrap().len() < DELIVERIES && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seen = seen.lock().unwrap().clone();
        let last = seen.values().max().copied().unwrap_or(start);
        let total = last - start;
        let queued = queued.lock().unwrap().clone();
        let latencies: Vec<Duration> = queued
            .iter()
            .filter_map(|(id, q)| seen.get(id).map(|s| s.saturating_duration_since(*q)))
            .collect();
        let per_second = seen.len() as f64 / total.as_secs_f64();
        println!(
            "webhooks: {} of {DELIVERIES} delivered in {:.2} s ({per_second:.0}/s); queued through the API in {:.2} s",
            seen.len(),
            total.as_secs_f64(),
            queued_in.as_secs_f64()
        );
        let lat = support::stats(latencies);
        println!(
            "  queue to receipt: p50 {:.2} ms, p99 {:.2} ms",
            lat["p50_ms"].as_f64().unwrap_or_default(),
            lat["p99_ms"].as_f64().unwrap_or_default()
        );
        support::write_report(
            "webhooks",
            &json!({
                "deliveries": DELIVERIES,
                "delivered": seen.len(),
                "seconds": total.as_secs_f64(),
                "deliveries_per_second": per_second,
                "api_in_flight": IN_FLIGHT,
                "queue_to_receipt": lat,
            }),
        );
    });
    server.purge();
}
