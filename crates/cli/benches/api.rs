//! API-path benchmark (not a test): starts `instavm server` like the end-to-end tests do and
//! measures
//! - session start, and session start to the first finished execution;
//! - the round trip of `/execute` with `pass` against a plain `GET /health` round trip, both
//!   on one keep-alive connection, interleaved so drift affects both alike.
//!
//! Prints p50/p99 and writes JSON to `--out PATH`, `INSTAVM_BENCH_OUT`, or
//! `<target>/instavm-bench/api.json`. Target: execute(`pass`) p50 - health p50 <= 1 ms.
//!
//! Run: `cargo bench -p instavm-cli --bench api` (as root, real runtime), or with
//! `INSTAVM_E2E_RUNTIME=fake` to measure the control plane alone.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use instavm_sdk::{ExecuteRequest, StartSessionRequest};
use serde_json::json;
use std::time::Instant;

const SESSION_SAMPLES: usize = 10;
const WARMUP: usize = 200;
const ROUND_TRIPS: usize = 2000;

fn main() {
    // `cargo test --benches` runs bench targets in test mode; there is nothing to check then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let server = common::TestServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async {
        let (client, _) = server.user("bench@example.com").await;
        let pass = |sid: &str| ExecuteRequest {
            command: "pass".into(),
            session_id: sid.to_owned(),
            language: None,
            timeout: None,
        };

        let mut starts = Vec::new();
        let mut first_exec = Vec::new();
        for _ in 0..SESSION_SAMPLES {
            let t0 = Instant::now();
            let s = client
                .start_session(&StartSessionRequest::default())
                .await
                .expect("start session");
            let started = t0.elapsed();
            client
                .execute(&pass(&s.session_id))
                .await
                .expect("first execute");
            starts.push(started);
            first_exec.push(t0.elapsed());
            client.kill(&s.session_id).await.expect("kill");
        }

        let sid = client
            .start_session(&StartSessionRequest::default())
            .await
            .expect("start session")
            .session_id;
        let req = pass(&sid);
        for _ in 0..WARMUP {
            client.health().await.expect("health");
            client.execute(&req).await.expect("execute");
        }
        let (mut health, mut exec) = (Vec::new(), Vec::new());
        for _ in 0..ROUND_TRIPS {
            let t = Instant::now();
            client.health().await.expect("health");
            health.push(t.elapsed());
            let t = Instant::now();
            let out = client.execute(&req).await.expect("execute");
            exec.push(t.elapsed());
            assert_eq!(out.exit_code, 0, "pass failed: {}", out.stderr);
        }
        let (health, exec) = (support::stats(health), support::stats(exec));
        let overhead = exec["p50_ms"].as_f64().unwrap_or(f64::NAN)
            - health["p50_ms"].as_f64().unwrap_or(f64::NAN);
        json!({
            "runtime": client.health().await.expect("health").runtime,
            "session_start": support::stats(starts),
            "session_start_to_first_execute": support::stats(first_exec),
            "health_round_trip": health,
            "execute_pass_round_trip": exec,
            "execute_minus_health_p50_ms": overhead,
            "target_ms": 1.0,
            "target_met": overhead <= 1.0,
        })
    });

    println!(
        "instavm API benchmark ({} runtime)",
        report["runtime"].as_str().unwrap_or("?")
    );
    for key in [
        "session_start",
        "session_start_to_first_execute",
        "health_round_trip",
        "execute_pass_round_trip",
    ] {
        let s = &report[key];
        println!(
            "  {key:<32} p50 {:>9.3} ms   p99 {:>9.3} ms   ({} samples)",
            s["p50_ms"].as_f64().unwrap_or(f64::NAN),
            s["p99_ms"].as_f64().unwrap_or(f64::NAN),
            s["samples"]
        );
    }
    println!(
        "  execute(pass) - health at p50: {:.3} ms (target <= 1 ms: {})",
        report["execute_minus_health_p50_ms"]
            .as_f64()
            .unwrap_or(f64::NAN),
        if report["target_met"] == true {
            "met"
        } else {
            "NOT met"
        }
    );
    support::write_report("api", &report);
}
