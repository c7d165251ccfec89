//! What the benchmark targets share: percentiles, and where their JSON report goes.

// Each benchmark target compiles this module and uses part of it.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// `samples`, `p50_ms`, `p99_ms`, `mean_ms`, `min_ms`, `max_ms` of some timings.
pub fn stats(mut d: Vec<Duration>) -> Value {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    json!({
        "samples": d.len(),
        "p50_ms": percentile_ms(&d, 0.50),
        "p99_ms": percentile_ms(&d, 0.99),
        "mean_ms": d.iter().map(|x| ms(*x)).sum::<f64>() / d.len() as f64,
        "min_ms": ms(d[0]),
        "max_ms": ms(d[d.len() - 1]),
    })
}

/// The `p` percentile (nearest rank) of sorted timings, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// `--out PATH`, else `INSTAVM_BENCH_OUT`, else `<target>/instavm-bench/<name>.json`.
pub fn out_path(name: &str) -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--out") {
        if let Some(p) = args.get(i + 1) {
            return PathBuf::from(p);
        }
    }
    if let Some(p) = std::env::var_os("INSTAVM_BENCH_OUT") {
        return PathBuf::from(p);
    }
    crate::common::images_dir()
        .parent()
        .map(|t| t.join("instavm-bench").join(format!("{name}.json")))
        .unwrap_or_else(|| PathBuf::from(format!("instavm-bench-{name}.json")))
}

/// Write the report where [`out_path`] says, and say where.
pub fn write_report(name: &str, report: &Value) {
    let path = out_path(name);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&path, format!("{report:#}\n")) {
        Ok(()) => println!("  written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
