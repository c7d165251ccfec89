//! Terminals in real sandboxes: a login shell on a pseudo-terminal, resize, exit codes, detach
//! and reattach, takeover, kill, a flood that must not block anything else. Needs root.

mod common;

use common::*;
use instavm_runtime::*;
use std::time::Duration;

fn shell(id: &str) -> PtyRequest {
    PtyRequest {
        id: id.into(),
        command: PtyCommand::DefaultShell,
        term: "xterm-256color".into(),
        cols: 80,
        rows: 24,
    }
}

fn command(id: &str, line: &str) -> PtyRequest {
    PtyRequest {
        command: PtyCommand::Command(line.into()),
        ..shell(id)
    }
}

/// Read output until `needle` shows up (or fail after 10 s). Returns everything read.
async fn read_until(stream: &mut PtyStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&seen).to_string();
        if text.contains(needle) {
            return text;
        }
        match tokio::time::timeout_at(deadline, stream.output.recv()).await {
            Ok(Some(PtyEvent::Output(bytes))) => seen.extend(bytes),
            Ok(Some(PtyEvent::Exit(code))) => panic!("exited ({code}) before {needle:?}: {text}"),
            Ok(None) => panic!("stream ended before {needle:?}: {text}"),
            Err(_) => panic!("no {needle:?} within 10 s: {text}"),
        }
    }
}

/// Read until the exit event; returns the exit code.
async fn wait_exit(stream: &mut PtyStream) -> i32 {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.output.recv()).await {
            Ok(Some(PtyEvent::Output(_))) => {}
            Ok(Some(PtyEvent::Exit(code))) => return code,
            Ok(None) => panic!("stream ended without an exit"),
            Err(_) => panic!("no exit within 10 s"),
        }
    }
}

async fn send(stream: &PtyStream, text: &str) {
    stream
        .input
        .send(PtyInput::Data(text.as_bytes().to_vec()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_login_shell_on_a_terminal() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let mut spec = SandboxSpec::default();
    spec.env.insert("GREETING".into(), "hi there".into());
    let sb = env.sandbox_with(spec).await;
    let info = env.rt.pty_open(&sb.id, shell("pty-a")).await.unwrap();
    assert!(info.alive());
    assert_eq!(info.argv, ["/bin/bash", "-il"]);
    let mut s = env.rt.pty_attach(&sb.id, "pty-a").await.unwrap();
    send(
        &s,
        "tty; echo \"T=$TERM G=$GREETING\"; stty size; pwd; echo MARK-$((6*7))\n",
    )
    .await;
    let out = read_until(&mut s, "MARK-42").await;
    assert!(out.contains("/dev/pts/"), "a real terminal: {out}");
    assert!(out.contains("T=xterm-256color G=hi there"), "{out}");
    assert!(out.contains("24 80"), "{out}");
    assert!(out.contains("\n/app\r\n"), "{out}");

    // Resize, through the stream and through the API.
    s.input
        .send(PtyInput::Resize {
            cols: 100,
            rows: 30,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    send(&s, "stty size\n").await;
    read_until(&mut s, "30 100").await;
    env.rt.pty_resize(&sb.id, "pty-a", 132, 43).await.unwrap();
    send(&s, "stty size\n").await;
    read_until(&mut s, "43 132").await;
    assert_eq!(env.rt.pty_get(&sb.id, "pty-a").await.unwrap().cols, 132);

    // A job-control shell is a session leader with a controlling terminal.
    send(
        &s,
        "[ $(cut -d' ' -f6 /proc/$$/stat) = $$ ] && echo LEADER-$((1+1))\n",
    )
    .await;
    read_until(&mut s, "LEADER-2").await;

    // Like every user process, the shell is a preferred OOM victim over the agent.
    send(&s, "echo OOM=$(cat /proc/$$/oom_score_adj)\n").await;
    read_until(&mut s, "OOM=500").await;

    send(&s, "exit 7\n").await;
    assert_eq!(wait_exit(&mut s).await, 7);
    let after = env.rt.pty_get(&sb.id, "pty-a").await.unwrap();
    assert_eq!(after.exit_code, Some(7));
    assert!(!after.alive());
    env.finish().await;
}

#[tokio::test]
async fn detach_reattach_takeover_and_kill() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    env.rt.pty_open(&sb.id, shell("t1")).await.unwrap();
    let dup = env.rt.pty_open(&sb.id, shell("t1")).await;
    assert!(
        matches!(dup, Err(RuntimeError::AlreadyExists(_))),
        "{dup:?}"
    );
    assert!(matches!(
        env.rt.pty_get(&sb.id, "nope").await,
        Err(RuntimeError::PtyNotFound(_))
    ));

    let mut first = env.rt.pty_attach(&sb.id, "t1").await.unwrap();
    send(&first, "X=kept; echo ready-$X\n").await;
    read_until(&mut first, "ready-kept").await;
    // Detach; output written meanwhile is replayed to the next attach, once.
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!env.rt.pty_get(&sb.id, "t1").await.unwrap().attached);
    let mut second = env.rt.pty_attach(&sb.id, "t1").await.unwrap();
    send(
        &second,
        "(sleep 0.3; echo late-$X) & echo spawned-$((2+2))\n",
    )
    .await;
    read_until(&mut second, "spawned-4").await;
    drop(second);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut third = env.rt.pty_attach(&sb.id, "t1").await.unwrap();
    let replay = read_until(&mut third, "late-kept").await;
    assert!(
        !replay.contains("ready-kept"),
        "delivered output is not replayed: {replay}"
    );

    // A newer attach takes the stream over; the older one just ends.
    let mut fourth = env.rt.pty_attach(&sb.id, "t1").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = third.output.recv().await {
            assert!(!matches!(ev, PtyEvent::Exit(_)), "takeover is not an exit");
        }
    })
    .await;
    assert!(ended.is_ok(), "the taken-over stream ends");
    send(&fourth, "echo still-$X\n").await;
    read_until(&mut fourth, "still-kept").await;

    // Kill takes the whole session (background jobs included) and forgets the terminal.
    send(&fourth, "sleep 1000 & echo bg-$((1+1))\n").await;
    read_until(&mut fourth, "bg-2").await;
    env.rt.pty_kill(&sb.id, "t1").await.unwrap();
    assert!(matches!(
        env.rt.pty_get(&sb.id, "t1").await,
        Err(RuntimeError::PtyNotFound(_))
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let count_sleeps =
        "for p in /proc/[0-9]*; do cat $p/comm 2>/dev/null; done | grep -cx sleep || true";
    let left = env.sh(&sb.id, count_sleeps).await;
    assert_eq!(left.stdout.trim(), "0", "{left:?}");
    assert!(env.rt.pty_list(&sb.id).await.unwrap().is_empty());
    env.finish().await;
}

#[tokio::test]
async fn a_flood_blocks_nothing_else_and_commands_report_exit_codes() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    // Attached but never read: the agent must push back, not buffer without bound.
    env.rt
        .pty_open(&sb.id, command("flood", "yes"))
        .await
        .unwrap();
    let flood = env.rt.pty_attach(&sb.id, "flood").await.unwrap();
    // Detached: the agent keeps reading (into a bounded buffer) so `yes` runs on.
    env.rt
        .pty_open(&sb.id, command("flood2", "yes"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut other = {
        env.rt
            .pty_open(&sb.id, command("quick", "echo quick-output; exit 3"))
            .await
            .unwrap();
        env.rt.pty_attach(&sb.id, "quick").await.unwrap()
    };
    let out = read_until(&mut other, "quick-output").await;
    assert!(out.contains("quick-output"));
    assert_eq!(wait_exit(&mut other).await, 3);
    // Executions still answer.
    assert_eq!(env.sh(&sb.id, "echo ok").await.stdout, "ok\n");
    let stats = env.rt.stats(&sb.id).await.unwrap();
    assert!(
        stats.memory_bytes < 128 << 20,
        "terminal floods do not grow memory: {stats:?}"
    );
    drop(flood);
    assert_eq!(env.rt.pty_list(&sb.id).await.unwrap().len(), 3);
    env.finish().await;
}
