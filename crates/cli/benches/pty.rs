//! Terminal benchmark (not a test): starts `instavm server` like the end-to-end tests do and
//! measures, over the PTY WebSocket on loopback,
//! - keystroke to echo: one byte sent to `cat` on the terminal (the kernel's line discipline
//!   echoes it), until it comes back;
//! - throughput: `cat` of a 100 MiB file through the terminal, until the exit frame;
//! - `ssh vm true` through the SSH gateway with the real OpenSSH client, connection included.
//!
//! Prints p50/p99 and writes JSON to `--out PATH`, `INSTAVM_BENCH_OUT`, or
//! `<target>/instavm-bench/pty.json`. Target: keystroke to echo p50 <= 2 ms.
//!
//! Run: `cargo bench -p instavm-cli --bench pty` (as root, real runtime).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use instavm_sdk::{CreatePtyRequest, ExecuteRequest, PtyEvent};
use serde_json::json;
use std::time::Instant;

const WARMUP: usize = 100;
const KEYSTROKES: usize = 2000;
const BIG_FILE_MIB: usize = 100;
const SSH_RUNS: usize = 30;

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let server = common::TestServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async {
        let (client, _) = server.user("pty-bench@example.com").await;
        let sid = common::session(&client).await;
        let vm_id = client.session_info(&sid).await.expect("session").vm_id;

        // Keystroke to echo.
        let req = CreatePtyRequest {
            command: Some("exec cat".into()),
            ..Default::default()
        };
        let pty = client.create_vm_pty(&vm_id, &req).await.expect("pty");
        let mut conn = client
            .connect_vm_pty(&vm_id, &pty.session_id)
            .await
            .expect("ws");
        let mut samples = Vec::with_capacity(KEYSTROKES);
        for i in 0..WARMUP + KEYSTROKES {
            let t = Instant::now();
            conn.send_input(b"x").await.expect("send");
            match conn.next_event().await.expect("echo") {
                PtyEvent::Output(bytes) => assert!(bytes.contains(&b'x'), "{bytes:?}"),
                other => panic!("unexpected {other:?}"),
            }
            if i >= WARMUP {
                samples.push(t.elapsed());
            }
            if i % 64 == 63 {
                // A newline now and then keeps the line discipline's line buffer short.
                conn.send_input(b"\n").await.expect("send");
                while let PtyEvent::Output(bytes) = conn.next_event().await.expect("line") {
                    if bytes.ends_with(b"\n") {
                        break;
                    }
                }
            }
        }
        samples.sort();
        client
            .kill_vm_pty(&vm_id, &pty.session_id)
            .await
            .expect("kill");

        // Throughput.
        let make = format!(
            "head -c {} /dev/zero | tr '\\0' 'a' > /tmp/big",
            BIG_FILE_MIB << 20
        );
        let out = client
            .execute(&ExecuteRequest {
                command: make,
                session_id: sid.clone(),
                language: Some("bash".into()),
                timeout: Some(120),
            })
            .await
            .expect("make file");
        assert_eq!(out.exit_code, 0, "{}", out.stderr);
        let req = CreatePtyRequest {
            command: Some("cat /tmp/big".into()),
            ..Default::default()
        };
        let t = Instant::now();
        let pty = client.create_vm_pty(&vm_id, &req).await.expect("pty");
        let mut conn = client
            .connect_vm_pty(&vm_id, &pty.session_id)
            .await
            .expect("ws");
        let mut bytes = 0usize;
        loop {
            match conn.next_event().await.expect("output") {
                PtyEvent::Output(b) => bytes += b.len(),
                PtyEvent::Exit(code) => {
                    assert_eq!(code, 0);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let secs = t.elapsed().as_secs_f64();
        assert!(bytes >= BIG_FILE_MIB << 20, "got {bytes} bytes");

        // `ssh vm true`, a new connection each time.
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("id_ed25519");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(made.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
        client.add_ssh_key(&public).await.expect("register key");
        let addr = server.ssh_addr().expect("the SSH gateway's address");
        let known = dir.path().join("known_hosts");
        let mut ssh_samples = Vec::with_capacity(SSH_RUNS);
        for _ in 0..SSH_RUNS {
            let t = Instant::now();
            let out = std::process::Command::new("ssh")
                .arg("-p")
                .arg(addr.port().to_string())
                .arg("-i")
                .arg(&key)
                .args([
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "IdentitiesOnly=yes",
                    "-o",
                    "LogLevel=ERROR",
                ])
                .args(["-o", "StrictHostKeyChecking=accept-new"])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known.display()))
                .arg(format!("{vm_id}@{}", addr.ip()))
                .arg("true")
                .output()
                .expect("ssh");
            assert!(out.status.success(), "{out:?}");
            ssh_samples.push(t.elapsed());
        }
        ssh_samples.sort();
        json!({
            "keystroke_to_echo": {
                "samples": samples.len(),
                "p50_ms": support::percentile_ms(&samples, 0.50),
                "p99_ms": support::percentile_ms(&samples, 0.99),
                "target_p50_ms": 2.0,
                "target_met": support::percentile_ms(&samples, 0.50) <= 2.0,
            },
            "ssh_true": {
                "samples": ssh_samples.len(),
                "p50_ms": support::percentile_ms(&ssh_samples, 0.50),
                "p99_ms": support::percentile_ms(&ssh_samples, 0.99),
            },
            "cat_100_mib": {
                "bytes": bytes,
                "seconds": secs,
                "mb_per_s": bytes as f64 / 1e6 / secs,
            },
        })
    });
    let k = &report["keystroke_to_echo"];
    println!("instavm terminal benchmark");
    println!(
        "  keystroke to echo   p50 {:>8.3} ms   p99 {:>8.3} ms   ({} samples; target p50 <= 2 ms: {})",
        k["p50_ms"].as_f64().unwrap_or(f64::NAN),
        k["p99_ms"].as_f64().unwrap_or(f64::NAN),
        k["samples"],
        if k["target_met"] == true { "met" } else { "NOT met" }
    );
    let s = &report["ssh_true"];
    println!(
        "  ssh vm true         p50 {:>8.3} ms   p99 {:>8.3} ms   ({} runs, connection included)",
        s["p50_ms"].as_f64().unwrap_or(f64::NAN),
        s["p99_ms"].as_f64().unwrap_or(f64::NAN),
        s["samples"]
    );
    let c = &report["cat_100_mib"];
    println!(
        "  cat 100 MiB         {:>8.1} MB/s  ({:.2} s)",
        c["mb_per_s"].as_f64().unwrap_or(f64::NAN),
        c["seconds"].as_f64().unwrap_or(f64::NAN)
    );
    support::write_report("pty", &report);
}
