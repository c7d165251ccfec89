//! Diffs between layer snapshots and files read from them, as the sandbox saw them (the image
//! below included), and symlinks that never lead out to the host. Needs root.

mod common;

use common::*;
use instavm_runtime::*;
use std::path::Path;

fn change(path: &str, kind: ChangeKind) -> PathChange {
    PathChange {
        path: path.into(),
        kind,
    }
}

/// Every path under `dir` of the base image, as the sandbox names them.
fn image_tree(rootfs: &Path, dir: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(rootfs.join(dir.trim_start_matches('/'))).unwrap() {
        let e = e.unwrap();
        let path = format!("{dir}/{}", e.file_name().to_str().unwrap());
        if e.file_type().unwrap().is_dir() {
            image_tree(rootfs, &path, out);
        }
        out.push(path);
    }
}

#[tokio::test]
async fn diffs_and_reads_follow_the_overlay_and_never_a_symlink() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let rootfs = images_dir().join("base/rootfs");
    let sb = env.sandbox().await;
    let step = |code: &'static str| {
        let (env, id) = (&env, sb.id.clone());
        async move {
            let out = env.sh(&id, code).await;
            assert_eq!(out.exit_code, 0, "{code}: {out:?}");
        }
    };
    step(
        "mkdir -p /app/proj && echo v1 > /app/proj/a.txt && echo keep > /app/proj/keep.txt \
         && echo gone > /tmp/gone.txt && ln -s /etc/shadow /tmp/s && ln -s /etc /tmp/etc_link \
         && mkfifo /tmp/fifo && mkdir -p /app/old/sub && echo x > /app/old/sub/f \
         && mkdir -p /usr/share/doc/bash/mine && echo m > /usr/share/doc/bash/mine/m",
    )
    .await;
    let a = SnapshotId::parse("snap_diff_a").unwrap();
    env.rt.snapshot(&sb.id, &a).await.unwrap();
    step(
        "echo v2 > /app/proj/a.txt && echo new > /app/proj/b.txt && chmod 600 /app/proj/keep.txt \
         && mkdir /app/newdir && rm /tmp/gone.txt && echo changed > /etc/debian_version \
         && rm /etc/issue.net && rm -r /usr/share/doc/sudo && mv /app/old /app/new \
         && rm -r /usr/share/doc/bash && mkdir /usr/share/doc/bash && echo again > /usr/share/doc/bash/again",
    )
    .await;
    let b = SnapshotId::parse("snap_diff_b").unwrap();
    env.rt.snapshot(&sb.id, &b).await.unwrap();

    let mut expected = vec![
        change("/app/new", ChangeKind::Added),
        change("/app/new/sub", ChangeKind::Added),
        change("/app/new/sub/f", ChangeKind::Added),
        change("/app/newdir", ChangeKind::Added),
        change("/app/old", ChangeKind::Deleted),
        change("/app/old/sub", ChangeKind::Deleted),
        change("/app/old/sub/f", ChangeKind::Deleted),
        // Made again: opaque, hiding the image's files.
        change("/usr/share/doc/bash/again", ChangeKind::Added),
        change("/usr/share/doc/bash/mine", ChangeKind::Deleted),
        change("/usr/share/doc/bash/mine/m", ChangeKind::Deleted),
        change("/app/proj/a.txt", ChangeKind::Modified),
        change("/app/proj/b.txt", ChangeKind::Added),
        change("/app/proj/keep.txt", ChangeKind::Modified),
        change("/etc/debian_version", ChangeKind::Modified),
        change("/etc/issue.net", ChangeKind::Deleted),
        change("/tmp/gone.txt", ChangeKind::Deleted),
        change("/usr/share/doc/sudo", ChangeKind::Deleted),
    ];
    let mut doc = Vec::new();
    image_tree(&rootfs, "/usr/share/doc/sudo", &mut doc);
    assert!(doc.len() > 5, "{doc:?}");
    let mut bash_doc = Vec::new();
    image_tree(&rootfs, "/usr/share/doc/bash", &mut bash_doc);
    assert!(!bash_doc.is_empty());
    expected.extend(
        doc.iter()
            .chain(&bash_doc)
            .map(|p| change(p, ChangeKind::Deleted)),
    );
    expected.sort();
    let diff = env.rt.snapshot_diff(&a, &b).await.unwrap();
    assert_eq!(diff, expected);
    assert!(env.rt.snapshot_diff(&a, &a).await.unwrap().is_empty());
    // Backwards: what was deleted comes back, from the upper layer or from the image.
    let back = env.rt.snapshot_diff(&b, &a).await.unwrap();
    assert!(back.contains(&change("/tmp/gone.txt", ChangeKind::Added)));
    assert!(back.contains(&change("/etc/issue.net", ChangeKind::Added)));
    assert!(back.contains(&change("/app/proj/b.txt", ChangeKind::Deleted)));
    assert!(back.contains(&change("/etc/debian_version", ChangeKind::Modified)));
    assert_eq!(back.len(), diff.len());

    // Files at each step, the image's included.
    let read = |snap: &SnapshotId, path: &str| {
        let (rt, snap, path) = (env.rt.clone(), snap.clone(), path.to_owned());
        async move { rt.snapshot_read_file(&snap, &path, 1 << 20).await }
    };
    assert_eq!(read(&a, "/app/proj/a.txt").await.unwrap().unwrap(), b"v1\n");
    assert_eq!(read(&b, "/app/proj/a.txt").await.unwrap().unwrap(), b"v2\n");
    assert_eq!(read(&a, "/app/proj/b.txt").await.unwrap(), None);
    let image_version = std::fs::read(rootfs.join("etc/debian_version")).unwrap();
    assert_eq!(
        read(&a, "/etc/debian_version").await.unwrap().unwrap(),
        image_version
    );
    assert_eq!(
        read(&b, "//etc/./debian_version").await.unwrap().unwrap(),
        b"changed\n"
    );
    assert!(read(&a, "/etc/issue.net").await.unwrap().is_some());
    assert_eq!(read(&b, "/etc/issue.net").await.unwrap(), None);
    assert!(read(&a, "/usr/share/doc/sudo/copyright")
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        read(&b, "/usr/share/doc/sudo/copyright").await.unwrap(),
        None
    );
    // An opaque directory hides the image's files below it.
    assert!(read(&a, "/usr/share/doc/bash/copyright")
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        read(&b, "/usr/share/doc/bash/copyright").await.unwrap(),
        None
    );
    assert_eq!(
        read(&b, "/usr/share/doc/bash/again")
            .await
            .unwrap()
            .unwrap(),
        b"again\n"
    );
    assert_eq!(read(&b, "/app/new/sub/f").await.unwrap().unwrap(), b"x\n");
    assert_eq!(read(&a, "/app/proj").await.unwrap(), None);
    assert_eq!(read(&a, "/tmp/fifo").await.unwrap(), None);
    assert!(matches!(
        env.rt.snapshot_read_file(&a, "/app/proj/a.txt", 2).await,
        Err(RuntimeError::WrongFileType(_))
    ));
    assert!(matches!(
        read(
            &SnapshotId::parse("snap_nope").unwrap(),
            "/etc/debian_version"
        )
        .await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        read(&a, "etc/debian_version").await,
        Err(RuntimeError::InvalidPath(_))
    ));

    // Symlinks the sandbox made are never followed, at the end or on the way.
    for path in ["/tmp/s", "/tmp/etc_link/shadow", "/tmp/etc_link/passwd"] {
        assert_eq!(read(&a, path).await.unwrap(), None, "{path}");
    }
    assert!(matches!(
        read(&a, "/tmp/s/../x").await,
        Err(RuntimeError::InvalidPath(_))
    ));
    assert!(matches!(
        read(&a, "/tmp/../etc/shadow").await,
        Err(RuntimeError::InvalidPath(_))
    ));

    // A sandbox booted from a snapshot: its snapshots share the lineage.
    let booted = env
        .sandbox_with(SandboxSpec {
            from_snapshot: Some(b.clone()),
            ..SandboxSpec::default()
        })
        .await;
    let out = env
        .sh(
            &booted.id,
            "echo c > /app/proj/c.txt && touch \"$(printf '/app/bad\\377')\"",
        )
        .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let c = SnapshotId::parse("snap_diff_c").unwrap();
    env.rt.snapshot(&booted.id, &c).await.unwrap();
    // Besides the file it wrote, a new sandbox writes its own name and network files.
    assert_eq!(
        env.rt.snapshot_diff(&b, &c).await.unwrap(),
        [
            // Names that are not UTF-8 are reported lossily.
            change("/app/bad\u{FFFD}", ChangeKind::Added),
            change("/app/proj/c.txt", ChangeKind::Added),
            change("/etc/hostname", ChangeKind::Modified),
            change("/etc/hosts", ChangeKind::Modified),
            change("/etc/resolv.conf", ChangeKind::Modified),
        ]
    );
    // An unrelated sandbox: nothing shared, still compared right.
    let other = env.sandbox().await;
    let out = env.sh(&other.id, "echo d > /app/d.txt").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let d = SnapshotId::parse("snap_diff_d").unwrap();
    env.rt.snapshot(&other.id, &d).await.unwrap();
    let unrelated = env.rt.snapshot_diff(&d, &a).await.unwrap();
    for expected in [
        change("/app/d.txt", ChangeKind::Deleted),
        change("/app/proj/a.txt", ChangeKind::Added),
        change("/tmp/gone.txt", ChangeKind::Added),
    ] {
        assert!(
            unrelated.contains(&expected),
            "{expected:?} in {unrelated:?}"
        );
    }
    for s in [&c, &d] {
        env.rt.delete_snapshot(s).await.unwrap();
    }

    // Snapshots taken before their image was recorded are read over the base image.
    let meta = env.data.path().join("layers/snapshots/snap_diff_a.json");
    std::fs::remove_file(&meta).unwrap();
    assert_eq!(
        read(&a, "/etc/debian_version").await.unwrap().unwrap(),
        image_version
    );
    assert_eq!(env.rt.snapshot_diff(&a, &b).await.unwrap(), expected);

    env.rt.delete_snapshot(&a).await.unwrap();
    env.rt.delete_snapshot(&b).await.unwrap();
    assert!(!env
        .data
        .path()
        .join("layers/snapshots/snap_diff_b.json")
        .exists());
    assert!(matches!(
        env.rt.snapshot_diff(&a, &b).await,
        Err(RuntimeError::NotFound(_))
    ));
    env.finish().await;
}
