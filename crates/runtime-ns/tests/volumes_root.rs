//! Volumes on the namespace runtime: quotas seen from inside a sandbox, checkpoints that never
//! change, read-only mounts, live mount and unmount while code runs, and the files API's
//! confinement. Needs root.

mod common;

use common::*;
use instavm_runtime::*;
use std::time::{Duration, Instant};

fn vol(s: &str) -> VolumeId {
    VolumeId::parse(s).unwrap()
}

fn ckpt(s: &str) -> CheckpointId {
    CheckpointId::parse(s).unwrap()
}

fn rw(v: &VolumeId, path: &str) -> VolumeMount {
    VolumeMount {
        volume: v.clone(),
        checkpoint: None,
        mount_path: path.into(),
    }
}

#[tokio::test]
async fn quota_checkpoints_ro_mounts_and_live_mounts() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let v = vol("vol_test1");
    env.rt.volume_create(&v, 8 << 20).await.unwrap();
    assert!(matches!(
        env.rt.volume_create(&v, 8 << 20).await,
        Err(RuntimeError::AlreadyExists(_))
    ));
    let a = env.sandbox().await;
    // A background writer runs while the volume arrives (live mount into running code).
    env.sh(
        &a.id,
        "nohup sh -c 'while :; do sleep 0.1; done' >/dev/null 2>&1 &",
    )
    .await;
    let started = Instant::now();
    env.rt
        .mount_volume(&a.id, &rw(&v, "/data/vol"))
        .await
        .unwrap();
    eprintln!("live mount took {:?}", started.elapsed());
    let out = env
        .sh(
            &a.id,
            "echo hello > /data/vol/f && stat -c '%u:%g' /data/vol /data/vol/f && cat /data/vol/f",
        )
        .await;
    assert_eq!(out.stdout, "0:0\n0:0\nhello\n", "{out:?}");

    // Past the quota inside the VM: EDQUOT (btrfs) or ENOSPC (tmpfs), never success.
    let out = env
        .sh(
            &a.id,
            "dd if=/dev/zero of=/data/vol/big bs=1M count=32 2>&1; echo rc=$?",
        )
        .await;
    assert!(
        out.stdout.contains("quota exceeded") || out.stdout.contains("No space left"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("rc=0"), "{out:?}");
    env.sh(&a.id, "rm -f /data/vol/big; sync").await;

    // Checkpoint, then change: the checkpoint keeps the old content and refuses writes.
    let c = ckpt("ckpt_test1");
    let started = Instant::now();
    env.rt.volume_checkpoint(&v, &c).await.unwrap();
    eprintln!("checkpoint took {:?}", started.elapsed());
    env.sh(&a.id, "echo changed > /data/vol/f").await;
    let b = env.sandbox().await;
    env.rt
        .mount_volume(
            &b.id,
            &VolumeMount {
                volume: v.clone(),
                checkpoint: Some(c.clone()),
                mount_path: "/snap".into(),
            },
        )
        .await
        .unwrap();
    let out = env
        .sh(
            &b.id,
            "cat /snap/f; echo x > /snap/g 2>&1; touch /snap/f 2>&1; true",
        )
        .await;
    assert!(out.stdout.starts_with("hello\n"), "{out:?}");
    assert!(out.stdout.contains("Read-only file system"), "{out:?}");
    // The sandbox root cannot unmount or remount what the host mounted.
    let out = env
        .sh(
            &b.id,
            "umount /snap 2>&1; mount -o remount,rw /snap 2>&1; echo y > /snap/f 2>&1; cat /snap/f",
        )
        .await;
    assert!(out.stdout.ends_with("hello\n"), "{out:?}");

    // Unmount from A while it runs, then B-like reuse: a new sandbox reads what A wrote.
    env.rt.unmount_volume(&a.id, "/data/vol").await.unwrap();
    let out = env.sh(&a.id, "ls /data/vol | wc -l").await;
    assert_eq!(out.stdout.trim(), "0", "{out:?}");
    assert!(matches!(
        env.rt.unmount_volume(&a.id, "/data/vol").await,
        Err(RuntimeError::FileNotFound(_))
    ));
    env.rt.mount_volume(&b.id, &rw(&v, "/work")).await.unwrap();
    assert_eq!(env.sh(&b.id, "cat /work/f").await.stdout, "changed\n");

    // A mount point that is a file, or a path through a symlink, is refused.
    env.sh(&b.id, "touch /afile; ln -s /etc /elink").await;
    assert!(env.rt.mount_volume(&b.id, &rw(&v, "/afile")).await.is_err());
    assert!(env
        .rt
        .mount_volume(&b.id, &rw(&v, "/elink/x"))
        .await
        .is_err());

    // Quota changes apply; usage counts what the volume holds.
    env.sh(&b.id, "head -c 3000000 /dev/urandom > /work/r; sync")
        .await;
    let used = env.rt.volume_usage(&v).await.unwrap();
    assert!(used >= 3_000_000, "{used}");
    env.rt.volume_set_quota(&v, 64 << 20).await.unwrap();
    let out = env
        .sh(
            &b.id,
            "dd if=/dev/zero of=/work/big bs=1M count=16 2>&1 >/dev/null; echo rc=$?",
        )
        .await;
    assert!(out.stdout.contains("rc=0"), "{out:?}");

    let listed = env.rt.volume_list().await.unwrap();
    assert_eq!(listed, vec![(v.clone(), vec![c.clone()])]);
    env.rt.unmount_volume(&b.id, "/work").await.unwrap();
    env.rt.unmount_volume(&b.id, "/snap").await.unwrap();
    env.rt.volume_delete_checkpoint(&v, &c).await.unwrap();
    env.rt.volume_delete(&v).await.unwrap();
    assert!(env.rt.volume_list().await.unwrap().is_empty());
    env.finish().await;
}

#[tokio::test]
async fn files_api_stays_inside_the_volume() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let v = vol("vol_test2");
    env.rt.volume_create(&v, 4 << 20).await.unwrap();
    let info = env
        .rt
        .volume_write(&v, "docs/README.md", reader(b"readme".to_vec()), false)
        .await
        .unwrap();
    assert_eq!(info.size, 6);
    assert!(matches!(
        env.rt
            .volume_write(&v, "docs/README.md", reader(b"x".to_vec()), false)
            .await,
        Err(RuntimeError::AlreadyExists(_))
    ));
    env.rt
        .volume_write(&v, "docs/README.md", reader(b"v2".to_vec()), true)
        .await
        .unwrap();
    let (_, r) = env.rt.volume_read(&v, "docs/README.md").await.unwrap();
    assert_eq!(read_all(r).await.unwrap(), b"v2");

    // A sandbox plants escapes in the volume; the files API refuses every one.
    let sb = env.sandbox().await;
    env.rt.mount_volume(&sb.id, &rw(&v, "/v")).await.unwrap();
    let out = env
        .sh(&sb.id, "ln -s /etc/passwd /v/abs; ln -s ../../../../etc/passwd /v/rel; ln -s /etc /v/dir; ln /etc/passwd /v/hard 2>&1; ln -s docs /v/inside; echo done")
        .await;
    assert!(out.stdout.contains("done"), "{out:?}");
    assert!(
        !out.stdout.contains("hard") || out.stdout.contains("ln:"),
        "{out:?}"
    );
    for bad in ["abs", "rel", "dir/passwd", "dir/shadow"] {
        let got = env.rt.volume_read(&v, bad).await;
        assert!(
            matches!(got, Err(RuntimeError::InvalidPath(_))),
            "{bad}: {:?}",
            got.map(|g| g.0)
        );
        assert!(env
            .rt
            .volume_write(&v, &format!("{bad}/x"), reader(b"x".to_vec()), true)
            .await
            .is_err());
    }
    assert!(matches!(
        env.rt.volume_read(&v, "hard").await,
        Err(RuntimeError::FileNotFound(_))
    ));
    // A symlink that stays inside is followed when reading.
    let (_, r) = env.rt.volume_read(&v, "inside/README.md").await.unwrap();
    assert_eq!(read_all(r).await.unwrap(), b"v2");
    // Uploads through a planted directory symlink are refused; nothing lands on the host.
    assert!(env
        .rt
        .volume_write(&v, "dir/instavm-escape", reader(b"x".to_vec()), true)
        .await
        .is_err());
    assert!(!std::path::Path::new("/etc/instavm-escape").exists());

    // A client that breaks off mid-upload: an error, and no temporary file stays behind.
    let broken: ByteReader = Box::pin(tokio::io::AsyncReadExt::chain(
        std::io::Cursor::new(vec![1u8; 100_000]),
        BrokenReader,
    ));
    assert!(env
        .rt
        .volume_write(&v, "partial.bin", broken, true)
        .await
        .is_err());
    let out = env
        .sh(
            &sb.id,
            "ls -A /v | grep -c instavm-upload; test -e /v/partial.bin || echo none",
        )
        .await;
    assert_eq!(out.stdout, "0\nnone\n", "{out:?}");

    // Past the quota: QuotaExceeded, and the old file is intact, no temp file left.
    let big = vec![7u8; 8 << 20];
    assert!(matches!(
        env.rt
            .volume_write(&v, "docs/README.md", reader(big), true)
            .await,
        Err(RuntimeError::QuotaExceeded(_))
    ));
    let (_, r) = env.rt.volume_read(&v, "docs/README.md").await.unwrap();
    assert_eq!(read_all(r).await.unwrap(), b"v2");
    let files = env.rt.volume_files(&v, "", true, 100).await.unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, vec!["docs/README.md"]);
    env.rt
        .volume_write(&v, "docs/a/b.txt", reader(b"b".to_vec()), false)
        .await
        .unwrap();
    let flat = env.rt.volume_files(&v, "docs/", false, 100).await.unwrap();
    assert_eq!(flat.len(), 1);
    let deep = env.rt.volume_files(&v, "docs/a", true, 100).await.unwrap();
    assert_eq!(deep[0].path, "docs/a/b.txt");
    env.rt.volume_remove(&v, "docs/a/b.txt").await.unwrap();
    assert!(matches!(
        env.rt.volume_remove(&v, "docs/a/b.txt").await,
        Err(RuntimeError::FileNotFound(_))
    ));
    // Files written through the API belong to the sandbox's root inside.
    let out = env
        .sh(
            &sb.id,
            "stat -c '%u' /v/docs/README.md; echo more >> /v/docs/README.md && echo ok",
        )
        .await;
    assert_eq!(out.stdout, "0\nok\n", "{out:?}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    env.finish().await;
}

/// A request body that fails half-way (the client went away).
struct BrokenReader;

impl tokio::io::AsyncRead for BrokenReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::other("connection reset")))
    }
}
