//! VM benchmark (not a test): starts `instavm server` like the end-to-end tests and measures,
//! through the Rust SDK,
//! - `POST /v1/vms?wait=true` alone and 16 at once;
//! - a snapshot of a VM that wrote 1 MiB against one that wrote 1 GiB (target: both <= 20 ms
//!   p50, i.e. flat in the size);
//! - a boot from a snapshot (target: <= 1.5x a plain create);
//! - 50 clones of one VM (in two batches of 25: a user may run 32 VMs), total wall time;
//! - suspend and resume.
//!
//! Prints p50/p99 and writes JSON to `--out PATH`, `INSTAVM_BENCH_OUT`, or
//! `<target>/instavm-bench/vms.json`. Run: `cargo bench -p instavm-cli --bench vms` (as root).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use instavm_sdk::{
    Client, CloneVmRequest, CreateVmRequest, ExecuteRequest, SnapshotVmRequest, VmRecord,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CREATES: usize = 20;
const CONCURRENT: usize = 16;
const CONCURRENT_ROUNDS: usize = 3;
const SNAPSHOTS: usize = 15;
const BOOTS: usize = 15;
const CLONES: usize = 50;
const CYCLES: usize = 10;

async fn create(client: &Client, req: &CreateVmRequest) -> (VmRecord, Duration) {
    let t = Instant::now();
    let vm = client.create_vm(req, true).await.expect("create VM");
    (vm, t.elapsed())
}

async fn bash(client: &Client, vm: &VmRecord, cmd: &str) {
    let out = client
        .execute(&ExecuteRequest {
            command: cmd.into(),
            session_id: vm.session_id.clone(),
            language: Some("bash".into()),
            timeout: Some(600),
        })
        .await
        .expect("execute");
    assert_eq!(out.exit_code, 0, "{cmd}: {}", out.stderr);
}

async fn delete(client: &Client, vms: &[VmRecord]) {
    for vm in vms {
        client.delete_vm(&vm.vm_id).await.expect("delete VM");
    }
}

/// Snapshot times of a VM after it wrote `mib` MiB.
async fn snapshot_times(client: &Client, mib: u64) -> (Value, String) {
    let big = CreateVmRequest {
        memory_mb: Some(2048),
        vm_lifetime_seconds: Some(3600),
        ..CreateVmRequest::default()
    };
    let (vm, _) = create(client, &big).await;
    bash(
        client,
        &vm,
        &format!("head -c {}M /dev/urandom > /app/data && sync", mib),
    )
    .await;
    let mut times = Vec::new();
    let mut storage = String::new();
    for _ in 0..SNAPSHOTS {
        let t = Instant::now();
        let snap = client
            .snapshot_vm(&vm.vm_id, &SnapshotVmRequest::default(), true)
            .await
            .expect("snapshot");
        times.push(t.elapsed());
        storage = snap.storage.clone();
        client
            .delete_snapshot(&snap.id)
            .await
            .expect("delete snapshot");
    }
    delete(client, &[vm]).await;
    (support::stats(times), storage)
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let server = common::TestServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async {
        let (client, _) = server.user("bench@example.com").await;
        let plain = CreateVmRequest::default();

        let mut creates = Vec::new();
        for _ in 0..CREATES {
            let (vm, took) = create(&client, &plain).await;
            creates.push(took);
            delete(&client, &[vm]).await;
        }

        let mut concurrent = Vec::new();
        for _ in 0..CONCURRENT_ROUNDS {
            let tasks: Vec<_> = (0..CONCURRENT)
                .map(|_| {
                    let (c, req) = (client.clone(), plain.clone());
                    tokio::spawn(async move { create(&c, &req).await })
                })
                .collect();
            let mut vms = Vec::new();
            for t in tasks {
                let (vm, took) = t.await.expect("task");
                concurrent.push(took);
                vms.push(vm);
            }
            delete(&client, &vms).await;
        }

        let (snap_1m, storage) = snapshot_times(&client, 1).await;
        let (snap_1g, _) = snapshot_times(&client, 1024).await;

        let (source, _) = create(&client, &plain).await;
        bash(&client, &source, "echo hello > /app/hello.txt").await;
        let snap = client
            .snapshot_vm(&source.vm_id, &SnapshotVmRequest::default(), true)
            .await
            .expect("snapshot");
        let from_snapshot = CreateVmRequest {
            snapshot_id: Some(snap.id.clone()),
            ..CreateVmRequest::default()
        };
        let (mut boots, mut plain_again) = (Vec::new(), Vec::new());
        for _ in 0..BOOTS {
            let (vm, took) = create(&client, &from_snapshot).await;
            boots.push(took);
            delete(&client, &[vm]).await;
            let (vm, took) = create(&client, &plain).await;
            plain_again.push(took);
            delete(&client, &[vm]).await;
        }

        let mut clone_wall = Duration::ZERO;
        let mut clone_times = Vec::new();
        for _ in 0..CLONES / 25 {
            let t = Instant::now();
            let mut batch = Vec::new();
            for _ in 0..25 {
                let t1 = Instant::now();
                let vm = client
                    .clone_vm(&source.vm_id, &CloneVmRequest::default(), true)
                    .await
                    .expect("clone");
                clone_times.push(t1.elapsed());
                batch.push(vm);
            }
            clone_wall += t.elapsed();
            delete(&client, &batch).await;
        }

        let (mut suspends, mut resumes) = (Vec::new(), Vec::new());
        let mut vm = source.clone();
        for i in 0..CYCLES {
            bash(&client, &vm, &format!("echo {i} > /app/cycle.txt")).await;
            let t = Instant::now();
            client.suspend_vm(&vm.vm_id).await.expect("suspend");
            suspends.push(t.elapsed());
            let t = Instant::now();
            vm = client.resume_vm(&vm.vm_id, true).await.expect("resume");
            resumes.push(t.elapsed());
        }
        delete(&client, &[vm]).await;

        let create_p50 = support::stats(plain_again.clone())["p50_ms"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let boot_p50 = support::stats(boots.clone())["p50_ms"]
            .as_f64()
            .unwrap_or(f64::NAN);
        json!({
            "runtime": client.health().await.expect("health").runtime,
            "snapshot_storage": storage,
            "create_wait": support::stats(creates),
            "create_wait_16_concurrent": support::stats(concurrent),
            "snapshot_after_1mib": snap_1m,
            "snapshot_after_1gib": snap_1g,
            "boot_from_snapshot": support::stats(boots),
            "create_interleaved_with_boots": support::stats(plain_again),
            "boot_over_create_p50": boot_p50 / create_p50,
            "clone": support::stats(clone_times),
            "clones_50_wall_ms": clone_wall.as_secs_f64() * 1000.0,
            "suspend": support::stats(suspends),
            "resume": support::stats(resumes),
        })
    });

    println!(
        "instavm VM benchmark ({} runtime, {} snapshots)",
        report["runtime"].as_str().unwrap_or("?"),
        report["snapshot_storage"].as_str().unwrap_or("?")
    );
    for key in [
        "create_wait",
        "create_wait_16_concurrent",
        "snapshot_after_1mib",
        "snapshot_after_1gib",
        "boot_from_snapshot",
        "create_interleaved_with_boots",
        "clone",
        "suspend",
        "resume",
    ] {
        let s = &report[key];
        println!(
            "  {key:<30} p50 {:>9.3} ms   p99 {:>9.3} ms   ({} samples)",
            s["p50_ms"].as_f64().unwrap_or(f64::NAN),
            s["p99_ms"].as_f64().unwrap_or(f64::NAN),
            s["samples"]
        );
    }
    println!(
        "  boot from snapshot / create at p50: {:.2}x (target <= 1.5x)",
        report["boot_over_create_p50"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "  50 clones: {:.0} ms wall",
        report["clones_50_wall_ms"].as_f64().unwrap_or(f64::NAN)
    );
    support::write_report("vms", &report);
}
