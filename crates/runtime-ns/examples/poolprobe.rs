//! Manual probe of the warm pool's claim latency.
use instavm_runtime::*;
use instavm_runtime_ns::{NsConfig, NsRuntime};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or("info".into()))
        .init();
    let mut cfg = NsConfig::new("/tmp/ivm-pool");
    cfg.images_dir = std::env::var("IMAGES").ok().map(Into::into);
    cfg.warm_pool = std::env::var("POOL")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2);
    let pool = cfg.warm_pool;
    let rt = NsRuntime::open(cfg.clone()).await.unwrap();
    for round in 0..10 {
        while rt.warm_count() < pool {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t = Instant::now();
        let sb = rt.create(SandboxSpec::default()).await.unwrap();
        let c = t.elapsed();
        let out = rt
            .exec(
                &sb.id,
                ExecRequest {
                    language: Language::Python,
                    code: "pass".into(),
                    timeout: Some(Duration::from_secs(60)),
                },
            )
            .await
            .unwrap();
        println!(
            "round {round}: claim {c:?} first exec {:?} (exec {:.3} ms)",
            t.elapsed(),
            out.execution_time * 1e3
        );
        rt.destroy(&sb.id).await.unwrap();
    }
    drop(rt);
    instavm_runtime_ns::purge(cfg).await.unwrap();
}
