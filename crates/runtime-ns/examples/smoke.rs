//! Manual smoke run: create a sandbox, run a few things, destroy it.
use instavm_runtime::*;
use instavm_runtime_ns::{NsConfig, NsRuntime};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or("info".into()))
        .init();
    let data = std::env::args().nth(1).unwrap_or("/tmp/ivm-smoke".into());
    let mut cfg = NsConfig::new(&data);
    cfg.images_dir = std::env::var("IMAGES").ok().map(Into::into);
    let rt = NsRuntime::open(cfg).await.unwrap();
    rt.prepare().await.unwrap();
    let t = Instant::now();
    let sb = rt.create(SandboxSpec::default()).await.unwrap();
    let created = t.elapsed();
    let out = rt
        .exec(
            &sb.id,
            ExecRequest {
                language: Language::Bash,
                code: "ls -la /usr/bin/python3; python3 -c 'print(1)'; ls -la /proc/self/fd".into(),
                timeout: None,
            },
        )
        .await;
    println!("{out:?}");
    let out = rt
        .exec(
            &sb.id,
            ExecRequest {
                language: Language::Python,
                code: "x = 41".into(),
                timeout: Some(Duration::from_secs(10)),
            },
        )
        .await
        .unwrap();
    println!(
        "create {:?} first exec {:?}: {:?}",
        created,
        t.elapsed(),
        out
    );
    for code in [
        "print(x + 1)",
        "import os; print(os.getpid(), os.getcwd())",
        "1/0",
        "2+3",
    ] {
        let out = rt
            .exec(
                &sb.id,
                ExecRequest {
                    language: Language::Python,
                    code: code.into(),
                    timeout: None,
                },
            )
            .await
            .unwrap();
        println!("{code:?} -> {out:?}");
    }
    for code in [
        "echo hi; exit 3",
        "id; hostname; ip -4 addr show eth0 | grep inet; cat /proc/1/cmdline | tr '\\0' ' '",
        "ls /",
        "sleep 5",
    ] {
        let out = rt
            .exec(
                &sb.id,
                ExecRequest {
                    language: Language::Bash,
                    code: code.into(),
                    timeout: Some(Duration::from_secs(2)),
                },
            )
            .await
            .unwrap();
        println!("{code:?} -> {out:?}");
    }
    let t = Instant::now();
    for _ in 0..100 {
        rt.exec(
            &sb.id,
            ExecRequest {
                language: Language::Python,
                code: "pass".into(),
                timeout: None,
            },
        )
        .await
        .unwrap();
    }
    println!("100 x pass: {:?}", t.elapsed() / 100);
    println!("stats {:?}", rt.stats(&sb.id).await.unwrap());
    if std::env::var("KEEP").is_err() {
        rt.destroy(&sb.id).await.unwrap();
    }
}
