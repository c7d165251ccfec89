//! Volume benchmark (not a test): starts `instavm server` like the end-to-end tests and
//! measures, through the Rust SDK,
//! - a checkpoint of a volume holding 10 MiB, 1 GiB and 10,000 small files (target: <= 20 ms
//!   p50, flat in the size);
//! - files API upload and download of a 256 MiB file (target: >= 200 MB/s on loopback), with
//!   curl (the server's throughput) and through the Rust SDK (its JSON and base64 decoding
//!   included);
//! - live mount and unmount into a running VM.
//!
//! Prints p50/p99 and writes JSON to `--out PATH`, `INSTAVM_BENCH_OUT`, or
//! `<target>/instavm-bench/volumes.json`. Run: `cargo bench -p instavm-cli --bench volumes`
//! (as root).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use instavm_sdk::{Client, CreateVmRequest, ExecuteRequest, MountVolumeRequest, VmRecord};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CHECKPOINTS: usize = 15;
const TRANSFERS: usize = 3;
const TRANSFER_MIB: u64 = 256;
const MOUNTS: usize = 20;

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

fn mount(volume_id: &str, path: &str) -> MountVolumeRequest {
    MountVolumeRequest {
        volume_id: Some(volume_id.into()),
        mount_path: Some(path.into()),
        mode: Some("rw".into()),
        checkpoint_id: None,
    }
}

/// Checkpoint times of a volume after a VM filled it with `fill`.
async fn checkpoint_times(client: &Client, vm: &VmRecord, name: &str, fill: &str) -> Value {
    let vol = client.create_volume(name, 4 << 30).await.expect("volume");
    client
        .mount_volume(&vm.vm_id, &mount(&vol.id, "/data"))
        .await
        .expect("mount");
    bash(client, vm, &format!("cd /data && {fill} && sync")).await;
    client
        .unmount_volume(&vm.vm_id, &vol.id, "/data")
        .await
        .expect("unmount");
    let mut times = Vec::new();
    for _ in 0..CHECKPOINTS {
        let t = Instant::now();
        let c = client
            .create_checkpoint(&vol.id, None)
            .await
            .expect("checkpoint");
        times.push(t.elapsed());
        client
            .delete_checkpoint(&vol.id, &c.id)
            .await
            .expect("delete checkpoint");
    }
    let used = client
        .get_volume(&vol.id, true)
        .await
        .expect("get")
        .used_bytes;
    client.delete_volume(&vol.id).await.expect("delete volume");
    let mut s = support::stats(times);
    s["used_bytes"] = json!(used);
    s
}

/// One curl request whose answer must be 200 (the body is dropped).
fn curl(args: &[&str]) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "curl {args:?}");
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
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
        let (client, key) = server.user("bench@example.com").await;
        let req = CreateVmRequest {
            memory_mb: Some(1024),
            vm_lifetime_seconds: Some(3600),
            ..CreateVmRequest::default()
        };
        let vm = client.create_vm(&req, true).await.expect("create VM");

        let ck_10m = checkpoint_times(&client, &vm, "ck-10m", "head -c 10M /dev/urandom > f").await;
        let ck_1g = checkpoint_times(&client, &vm, "ck-1g", "head -c 1024M /dev/urandom > f").await;
        let ck_files = checkpoint_times(
            &client,
            &vm,
            "ck-10k",
            "mkdir s && for i in $(seq 10000); do echo $i > s/$i; done",
        )
        .await;

        // Files API throughput of one 256 MiB file, both ways.
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("big.bin");
        let bytes = TRANSFER_MIB << 20;
        let data: Vec<u8> = (0..bytes).map(|i| ((i * 2654435761) >> 13) as u8).collect();
        std::fs::write(&local, &data).expect("write local file");
        let vol = client
            .create_volume("transfer", 2 << 30)
            .await
            .expect("volume");
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for _ in 0..TRANSFERS {
            let t = Instant::now();
            client
                .upload_volume_file(&vol.id, &local, "big.bin", true)
                .await
                .expect("upload");
            up.push(mb_per_s(bytes, t.elapsed()));
            let t = Instant::now();
            let (_, got) = client
                .download_volume_file(&vol.id, "big.bin")
                .await
                .expect("download");
            down.push(mb_per_s(bytes, t.elapsed()));
            assert!(got == data, "download differs from upload");
        }
        up.sort_by(f64::total_cmp);
        down.sort_by(f64::total_cmp);
        let (mut curl_up, mut curl_down) = (Vec::new(), Vec::new());
        let base = format!("{}/v1/volumes/{}/files", server.base_url, vol.id);
        let header = format!("X-API-Key: {key}");
        for _ in 0..TRANSFERS {
            let file = format!("file=@{}", local.display());
            let t = Instant::now();
            curl(&["-H", &header, "-F", "path=big.bin", "-F", "overwrite=true", "-F", &file, &format!("{base}/upload")]);
            curl_up.push(mb_per_s(bytes, t.elapsed()));
            let t = Instant::now();
            curl(&["-H", &header, "-H", "Content-Type: application/json", "-d", "{\"path\":\"big.bin\"}", &format!("{base}/download")]);
            curl_down.push(mb_per_s(bytes, t.elapsed()));
        }
        curl_up.sort_by(f64::total_cmp);
        curl_down.sort_by(f64::total_cmp);

        // Live mount and unmount into a running VM.
        let (mut mounts, mut unmounts) = (Vec::new(), Vec::new());
        for i in 0..MOUNTS {
            let path = format!("/mnt/v{i}");
            let t = Instant::now();
            client
                .mount_volume(&vm.vm_id, &mount(&vol.id, &path))
                .await
                .expect("mount");
            mounts.push(t.elapsed());
            let t = Instant::now();
            client
                .unmount_volume(&vm.vm_id, &vol.id, &path)
                .await
                .expect("unmount");
            unmounts.push(t.elapsed());
        }
        client.delete_volume(&vol.id).await.expect("delete volume");
        client.delete_vm(&vm.vm_id).await.expect("delete VM");
        json!({
            "runtime": client.health().await.expect("health").runtime,
            "checkpoint_10mib": ck_10m,
            "checkpoint_1gib": ck_1g,
            "checkpoint_10000_files": ck_files,
            "upload_256mib_mb_per_s": {"median": curl_up[curl_up.len() / 2], "runs": curl_up},
            "download_256mib_mb_per_s": {"median": curl_down[curl_down.len() / 2], "runs": curl_down},
            "sdk_upload_256mib_mb_per_s": {"median": up[up.len() / 2], "runs": up},
            "sdk_download_256mib_mb_per_s": {"median": down[down.len() / 2], "runs": down},
            "live_mount": support::stats(mounts),
            "live_unmount": support::stats(unmounts),
        })
    });

    println!(
        "instavm volume benchmark ({} runtime)",
        report["runtime"].as_str().unwrap_or("?")
    );
    for key in [
        "checkpoint_10mib",
        "checkpoint_1gib",
        "checkpoint_10000_files",
        "live_mount",
        "live_unmount",
    ] {
        let s = &report[key];
        println!(
            "  {key:<24} p50 {:>9.3} ms   p99 {:>9.3} ms   ({} samples)",
            s["p50_ms"].as_f64().unwrap_or(f64::NAN),
            s["p99_ms"].as_f64().unwrap_or(f64::NAN),
            s["samples"]
        );
    }
    for key in [
        "upload_256mib_mb_per_s",
        "download_256mib_mb_per_s",
        "sdk_upload_256mib_mb_per_s",
        "sdk_download_256mib_mb_per_s",
    ] {
        println!(
            "  {key:<28} median {:>7.1} MB/s   runs {}",
            report[key]["median"].as_f64().unwrap_or(f64::NAN),
            report[key]["runs"]
        );
    }
    support::write_report("volumes", &report);
}
