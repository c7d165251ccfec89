//! Tape recording benchmark (not a test): `cargo bench -p instavm-runtime-ns --bench
//! snapshot_diff`.
//!
//! A sandbox whose layer holds 10,000 files: the cost of one `Runtime::snapshot` (what
//! recording a step costs; target ≤ 5 ms) and of `snapshot_diff` between two snapshots with 3
//! files changed between them (target ≤ 50 ms p50). Prints p50/p99 and writes JSON to
//! `$BENCH_JSON` (default `target/bench/snapshot_diff.json`). Needs root.

use instavm_runtime::*;
use instavm_runtime_ns::{NsConfig, NsRuntime};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FILES: usize = 10_000;
const RUNS: usize = 50;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(name: &str, unit: &str, mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
    println!(
        "{name:<44} p50 {p50:>10.3} {unit:<3}  p99 {p99:>10.3} {unit:<3}  (n={})",
        samples.len()
    );
    json!({ "name": name, "unit": unit, "p50": p50, "p99": p99, "n": samples.len() })
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

async fn python(rt: &NsRuntime, id: &SandboxId, code: &str) {
    let out = rt
        .exec(
            id,
            ExecRequest {
                language: Language::Python,
                code: code.into(),
                timeout: Some(Duration::from_secs(120)),
            },
        )
        .await
        .expect("exec");
    assert_eq!(out.exit_code, 0, "{out:?}");
}

fn snap(name: &str) -> SnapshotId {
    SnapshotId::parse(name).expect("snapshot id")
}

#[tokio::main]
async fn main() {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let images = std::env::var("INSTAVM_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target.join("instavm-images"));
    let data = tempfile::Builder::new()
        .prefix("bench-diff-")
        .tempdir_in(&target)
        .expect("tempdir");
    let mut cfg = NsConfig::new(data.path());
    cfg.images_dir = Some(images);
    cfg.warm_pool = 0;
    let rt = NsRuntime::open(cfg.clone()).await.expect("open runtime");
    rt.prepare().await.expect("base image");
    println!("namespace runtime, layers: {:?}", rt.layer_backend());

    let sb = rt
        .create(SandboxSpec {
            disk_mb: 2048,
            ..SandboxSpec::default()
        })
        .await
        .expect("create");
    python(
        &rt,
        &sb.id,
        &format!(
            "import os\n\
             for i in range({FILES}):\n\
             \x20   d = f'/app/tree/d{{i // 100}}'\n\
             \x20   os.makedirs(d, exist_ok=True)\n\
             \x20   open(f'{{d}}/f{{i}}.txt', 'w').write(f'file {{i}}\\n')\n"
        ),
    )
    .await;

    let mut results = Vec::new();
    let mut taken = Vec::new();
    // As a recording does: one step (a small write) then a snapshot, the snapshots kept.
    let steps: Vec<SnapshotId> = (0..RUNS).map(|i| snap(&format!("snap_step_{i}"))).collect();
    for (i, s) in steps.iter().enumerate() {
        python(&rt, &sb.id, &format!("open('/app/step', 'w').write('{i}')")).await;
        let started = Instant::now();
        rt.snapshot(&sb.id, s).await.expect("snapshot");
        taken.push(ms(started));
    }
    results.push(summary(
        &format!("snapshot of a {FILES}-file layer"),
        "ms",
        taken,
    ));

    let (a, b) = (snap("snap_bench_a"), snap("snap_bench_b"));
    rt.snapshot(&sb.id, &a).await.expect("snapshot a");
    python(
        &rt,
        &sb.id,
        "open('/app/tree/d1/f100.txt', 'a').write('more')\n\
         open('/app/tree/d50/new.txt', 'w').write('new')\n\
         import os; os.remove('/app/tree/d99/f9999.txt')",
    )
    .await;
    rt.snapshot(&sb.id, &b).await.expect("snapshot b");
    let started = Instant::now();
    let mut changes = rt.snapshot_diff(&a, &b).await.expect("diff");
    let first = ms(started);
    println!("first snapshot_diff after the snapshot (cold)   {first:.3} ms");
    let mut timed = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        changes = rt.snapshot_diff(&a, &b).await.expect("diff");
        timed.push(ms(started));
    }
    println!("changes: {changes:?}");
    assert_eq!(changes.len(), 3, "{changes:?}");
    results.push(summary(
        &format!("snapshot_diff, {FILES} files, 3 changed"),
        "ms",
        timed,
    ));

    // Deleted last: btrfs cleans deleted snapshots up in the background.
    for s in &steps {
        rt.delete_snapshot(s).await.expect("delete");
    }
    let report = json!({
        "host": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "layers": format!("{:?}", rt.layer_backend()),
        "files": FILES,
        "latency": results,
        "first_diff_ms": first,
    });
    let out = std::env::var("BENCH_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target.join("bench/snapshot_diff.json"));
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&report).unwrap_or_default())
        .expect("write json");
    println!("wrote {}", out.display());
    drop(rt);
    instavm_runtime_ns::purge(cfg).await.expect("purge");
}
