//! Layer snapshots, boots from them, live memory changes and env pushes on the namespace
//! runtime. Needs root.

mod common;

use common::*;
use instavm_runtime::*;
use std::collections::BTreeMap;
use std::time::Instant;

#[tokio::test]
async fn snapshot_then_boot_keeps_files_before_not_after() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    assert_eq!(
        env.sh(
            &sb.id,
            "echo one > /app/before; mkdir -p /root/d; echo x > /root/d/y; rm -f /etc/motd"
        )
        .await
        .exit_code,
        0
    );
    let snap = SnapshotId::parse("snap_test1").unwrap();
    let started = Instant::now();
    let info = env.rt.snapshot(&sb.id, &snap).await.unwrap();
    eprintln!("snapshot took {:?} ({info:?})", started.elapsed());
    if env.rt.layer_backend() == instavm_runtime_ns::LayerBackend::Btrfs {
        assert!(!info.copied);
        assert!(info.size_bytes > 0, "{info:?}");
    }
    assert_eq!(env.sh(&sb.id, "echo two > /app/after").await.exit_code, 0);

    let booted = env
        .sandbox_with(SandboxSpec {
            from_snapshot: Some(snap.clone()),
            ..SandboxSpec::default()
        })
        .await;
    let out = env
        .sh(&booted.id, "cat /app/before /root/d/y; test -e /app/after || echo no-after; test -e /etc/motd || echo no-motd")
        .await;
    assert_eq!(out.stdout, "one\nx\nno-after\nno-motd\n", "{out:?}");
    // The booted VM writes its own layer; snapshots of it work too.
    assert_eq!(
        env.sh(&booted.id, "echo three > /app/third")
            .await
            .exit_code,
        0
    );
    let child = SnapshotId::parse("snap_test2").unwrap();
    env.rt.snapshot(&booted.id, &child).await.unwrap();
    // Deleting the parent snapshot does not affect the VM booted from it.
    env.rt.delete_snapshot(&snap).await.unwrap();
    assert_eq!(env.sh(&booted.id, "cat /app/before").await.stdout, "one\n");
    assert!(matches!(
        env.rt.delete_snapshot(&snap).await,
        Err(RuntimeError::NotFound(_))
    ));
    let grandchild = env
        .sandbox_with(SandboxSpec {
            from_snapshot: Some(child.clone()),
            ..SandboxSpec::default()
        })
        .await;
    assert_eq!(
        env.sh(&grandchild.id, "cat /app/before /app/third")
            .await
            .stdout,
        "one\nthree\n"
    );
    assert_eq!(env.rt.list_snapshots().await.unwrap(), vec![child.clone()]);
    env.rt.delete_snapshot(&child).await.unwrap();
    let unknown = SandboxSpec {
        from_snapshot: Some(SnapshotId::parse("snap_nope").unwrap()),
        ..SandboxSpec::default()
    };
    assert!(matches!(
        env.rt.create(unknown).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    env.finish().await;
}

#[tokio::test]
async fn memory_changes_live_and_pushed_env_reaches_python_and_bash() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    assert_eq!(env.py(&sb.id, "x = 1").await.exit_code, 0);
    env.rt.set_memory(&sb.id, 1024).await.unwrap();
    // The sandbox has no cgroup file system of its own: read the limit the host enforces.
    let stats = env.rt.stats(&sb.id).await.unwrap();
    assert_eq!(stats.memory_limit_bytes, 1024 << 20);
    assert_eq!(env.rt.get(&sb.id).await.unwrap().memory_mb, 1024);

    let mut vars = BTreeMap::new();
    vars.insert("STAGED_SECRET".to_owned(), "s3cret".to_owned());
    env.rt.push_env(&sb.id, vars).await.unwrap();
    assert_eq!(
        env.sh(&sb.id, "echo $STAGED_SECRET").await.stdout,
        "s3cret\n"
    );
    let out = env
        .py(&sb.id, "import os; print(os.environ['STAGED_SECRET'], x)")
        .await;
    assert_eq!(
        out.stdout, "s3cret 1\n",
        "the interpreter kept its state: {out:?}"
    );
    // Never on the sandbox's disk: not in its record, not in its layer.
    let snap = SnapshotId::parse("snap_env").unwrap();
    env.rt.snapshot(&sb.id, &snap).await.unwrap();
    let found = std::process::Command::new("grep")
        .args(["-r", "-l", "s3cret"])
        .arg(env.data.path().join("sandboxes"))
        .arg(env.data.path().join("layers"))
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&found.stdout)
    );
    env.rt.delete_snapshot(&snap).await.unwrap();
    env.finish().await;
}
