//! Runtime benchmark (not a test): `cargo bench -p instavm-runtime-ns --bench runtime`.
//!
//! Measures, in one run on this host: create-to-first-exec, exec round trip of `pass`, memory
//! per idle sandbox over 100 sandboxes, 500 concurrent idle sandboxes; and the same for
//! bubblewrap + python3 on the same rootfs as the floor. Prints p50/p99 and writes JSON to
//! `$BENCH_JSON` (default `target/bench/runtime.json`). Needs root. `BENCH_QUICK=1` runs smaller
//! counts.

use instavm_runtime::*;
use instavm_runtime_ns::{NsConfig, NsRuntime};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn drop_caches() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
}

fn python(code: &str) -> ExecRequest {
    ExecRequest {
        language: Language::Python,
        code: code.into(),
        timeout: Some(Duration::from_secs(60)),
    }
}

fn spec() -> SandboxSpec {
    SandboxSpec {
        memory_mb: 256,
        lifetime: Duration::from_secs(3600),
        ..SandboxSpec::default()
    }
}

async fn ns_create_to_first_exec(rt: &NsRuntime, n: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..n {
        wait_for_pool(rt).await;
        let t = Instant::now();
        let sb = rt.create(spec()).await.expect("create");
        let r = rt.exec(&sb.id, python("pass")).await.expect("exec");
        out.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.exit_code, 0);
        rt.destroy(&sb.id).await.expect("destroy");
    }
    out
}

async fn ns_exec_round_trip(rt: &NsRuntime, n: usize, language: Language, code: &str) -> Vec<f64> {
    let sb = rt.create(spec()).await.expect("create");
    let req = ExecRequest {
        language,
        code: code.into(),
        timeout: Some(Duration::from_secs(60)),
    };
    for _ in 0..50 {
        rt.exec(&sb.id, req.clone()).await.expect("warm-up");
    }
    let mut out = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        rt.exec(&sb.id, req.clone()).await.expect("exec");
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    rt.destroy(&sb.id).await.expect("destroy");
    out
}

/// Between samples, let the warm pool refill (a claim started the refill), as it would between
/// a user's requests. Without a pool this returns at once.
async fn wait_for_pool(rt: &NsRuntime) {
    for _ in 0..200 {
        if rt.warm_count() >= POOL {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const POOL: usize = instavm_runtime_ns::DEFAULT_WARM_POOL;

/// Create `n` idle sandboxes (each has run one cell, so its interpreter is up) and report the
/// host memory they cost, in MiB per sandbox.
async fn ns_idle_memory(rt: &NsRuntime, n: usize) -> (f64, f64, usize, f64) {
    drop_caches();
    let before = mem_available_kib();
    let mut ids = Vec::new();
    let mut failures = 0;
    let t = Instant::now();
    for _ in 0..n {
        match rt.create(spec()).await {
            Ok(sb) => match rt.exec(&sb.id, python("pass")).await {
                Ok(r) if r.exit_code == 0 => ids.push(sb.id),
                _ => failures += 1,
            },
            Err(e) => {
                eprintln!("create failed: {e}");
                failures += 1
            }
        }
    }
    let create_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Every sandbox must still answer.
    for id in &ids {
        if !matches!(rt.exec(id, python("1")).await, Ok(r) if r.exit_code == 0) {
            failures += 1;
        }
    }
    let after = mem_available_kib();
    let mut cgroup_total = 0u64;
    for id in &ids {
        cgroup_total += rt.stats(id).await.map(|s| s.memory_bytes).unwrap_or(0);
    }
    for id in &ids {
        let _ = rt.destroy(id).await;
    }
    let host = before.saturating_sub(after) as f64 / 1024.0 / n as f64;
    let cg = cgroup_total as f64 / (1 << 20) as f64 / n as f64;
    (host, cg, failures, create_secs)
}

fn bwrap(rootfs: &Path, code: &str) -> Command {
    let mut c = Command::new("bwrap");
    c.arg("--ro-bind")
        .arg(rootfs)
        .arg("/")
        .args([
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--unshare-all",
            "--die-with-parent",
        ])
        .args(["/usr/bin/python3", "-c", code]);
    c
}

fn bwrap_create_to_first_exec(rootfs: &Path, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let st = bwrap(rootfs, "pass")
                .stdout(Stdio::null())
                .status()
                .expect("bwrap");
            assert!(st.success());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn bwrap_idle_memory(rootfs: &Path, n: usize) -> f64 {
    drop_caches();
    let before = mem_available_kib();
    let mut kids: Vec<_> = (0..n)
        .map(|_| {
            bwrap(rootfs, "import sys; sys.stdin.read()")
                .stdin(Stdio::piped())
                .spawn()
                .expect("bwrap")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let after = mem_available_kib();
    for k in &mut kids {
        drop(k.stdin.take());
        let _ = k.wait();
    }
    before.saturating_sub(after) as f64 / 1024.0 / n as f64
}

fn workspace_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

#[tokio::main]
async fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let scale = |n: usize| if quick { (n / 10).max(5) } else { n };
    let target = workspace_target();
    let images = std::env::var("INSTAVM_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target.join("instavm-images"));
    let data = tempfile::Builder::new()
        .prefix("bench-")
        .tempdir_in(&target)
        .expect("tempdir");
    let mut cfg = NsConfig::new(data.path());
    cfg.images_dir = Some(images.clone());
    cfg.warm_pool = 0;
    let rt = NsRuntime::open(cfg.clone()).await.expect("open runtime");
    rt.prepare().await.expect("base image");
    let warm_data = tempfile::Builder::new()
        .prefix("bench-warm-")
        .tempdir_in(&target)
        .expect("tempdir");
    let mut warm_cfg = NsConfig::new(warm_data.path());
    warm_cfg.images_dir = Some(images.clone());
    let warm = NsRuntime::open(warm_cfg.clone())
        .await
        .expect("open runtime");
    let rootfs = images.join("base/rootfs");
    println!(
        "namespace runtime, layers: {:?}; rootfs {}",
        rt.layer_backend(),
        rootfs.display()
    );

    let mut results = Vec::new();
    results.push(summary(
        "ns: create to first exec (warm pool)",
        "ms",
        ns_create_to_first_exec(&warm, scale(100)).await,
    ));
    drop(warm);
    instavm_runtime_ns::purge(warm_cfg).await.expect("purge");
    results.push(summary(
        "ns: create to first exec (cold, no pool)",
        "ms",
        ns_create_to_first_exec(&rt, scale(100)).await,
    ));
    results.push(summary(
        "ns: exec round trip, python `pass`",
        "ms",
        ns_exec_round_trip(&rt, scale(2000), Language::Python, "pass").await,
    ));
    results.push(summary(
        "ns: exec round trip, bash `true`",
        "ms",
        ns_exec_round_trip(&rt, scale(300), Language::Bash, "true").await,
    ));
    results.push(summary(
        "bwrap floor: python3 -c pass (start to exit)",
        "ms",
        bwrap_create_to_first_exec(&rootfs, scale(100)),
    ));

    let n_idle = scale(100);
    let (host_mib, cg_mib, fails, _) = ns_idle_memory(&rt, n_idle).await;
    println!("ns: idle sandbox memory over {n_idle}: {host_mib:.2} MiB host (MemAvailable), {cg_mib:.2} MiB cgroup; failures {fails}");
    let bw_mib = bwrap_idle_memory(&rootfs, n_idle);
    println!("bwrap floor: idle python3 memory over {n_idle}: {bw_mib:.2} MiB host");
    let n_conc = scale(500);
    let (conc_mib, _, conc_fails, conc_secs) = ns_idle_memory(&rt, n_conc).await;
    println!("ns: {n_conc} concurrent idle sandboxes: {conc_fails} failures, created in {conc_secs:.1} s, {conc_mib:.2} MiB each");

    let report = json!({
        "host": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "latency": results,
        "idle_memory_mib": { "sandboxes": n_idle, "ns_host": host_mib, "ns_cgroup": cg_mib, "ns_failures": fails, "bwrap_host": bw_mib },
        "concurrent": { "sandboxes": n_conc, "failures": conc_fails, "create_seconds": conc_secs, "mib_each": conc_mib },
    });
    let out = std::env::var("BENCH_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target.join("bench/runtime.json"));
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&report).unwrap_or_default())
        .expect("write json");
    println!("wrote {}", out.display());
    drop(rt);
    instavm_runtime_ns::purge(cfg).await.expect("purge");
}
