//! Lifecycle and behaviour of the namespace runtime: executions, files, destroy and expiry
//! leaving nothing behind, and recovery after the runtime restarts or is killed. Needs root.

mod common;

use common::*;
use instavm_runtime::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn python_state_persists_and_errors_keep_it() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    assert_eq!(env.py(&sb.id, "x = 41").await.exit_code, 0);
    assert_eq!(env.py(&sb.id, "print(x + 1)").await.stdout, "42\n");
    let out = env
        .py(&sb.id, "def f():\n    raise ValueError('boom')\nf()")
        .await;
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.contains("ValueError: boom"), "{out:?}");
    assert!(out.stderr.contains("line 2, in f"), "{out:?}");
    assert!(
        !out.stderr.contains("<string>"),
        "driver frames leaked: {out:?}"
    );
    assert_eq!(
        env.py(&sb.id, "x").await.stdout,
        "41\n",
        "a final expression is shown"
    );
    let out = env.py(&sb.id, "print('unterminated").await;
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.contains("SyntaxError"), "{out:?}");
    assert_eq!(env.py(&sb.id, "import sys; sys.exit(3)").await.exit_code, 3);
    assert_eq!(env.py(&sb.id, "print(x)").await.stdout, "41\n");
    let out = env
        .py(
            &sb.id,
            "import asyncio\nawait asyncio.sleep(0)\nprint('awaited')",
        )
        .await;
    assert_eq!(out.stdout, "awaited\n", "{out:?}");
    let out = env
        .py(
            &sb.id,
            "import os, sys; print(os.getcwd(), sys.argv, __name__)",
        )
        .await;
    assert_eq!(out.stdout, "/app [''] __main__\n");
    assert!(out.cpu_time >= 0.0 && out.execution_time > 0.0);
    env.finish().await;
}

#[tokio::test]
async fn bash_exit_codes_env_and_timeouts() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let mut spec = SandboxSpec::default();
    spec.env.insert("GREETING".into(), "hello world".into());
    let sb = env.sandbox_with(spec).await;
    let out = env
        .sh(&sb.id, "echo $GREETING; echo err >&2; pwd; exit 7")
        .await;
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str(), out.exit_code),
        ("hello world\n/app\n", "err\n", 7)
    );
    assert_eq!(
        env.py(&sb.id, "import os; print(os.environ['GREETING'])")
            .await
            .stdout,
        "hello world\n"
    );

    // A timeout kills the code and answers promptly.
    let t = Instant::now();
    let out = exec(&env.rt, &sb.id, Language::Bash, "sleep 30", 1).await;
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(out.timed_out);
    assert_eq!(out.exit_code, TIMEOUT_EXIT_CODE);
    // Python: interrupted, state kept.
    env.py(&sb.id, "kept = 'yes'").await;
    let t = Instant::now();
    let out = exec(
        &env.rt,
        &sb.id,
        Language::Python,
        "import time\nwhile True: time.sleep(0.1)",
        1,
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(4));
    assert!(
        out.timed_out && out.exit_code == TIMEOUT_EXIT_CODE,
        "{out:?}"
    );
    assert_eq!(env.py(&sb.id, "print(kept)").await.stdout, "yes\n");
    // Python that ignores the interrupt is killed and restarted.
    let code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: time.sleep(0.1)";
    let t = Instant::now();
    let out = exec(&env.rt, &sb.id, Language::Python, code, 1).await;
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(out.timed_out, "{out:?}");
    assert!(out.stderr.contains("state was reset"), "{out:?}");
    assert_eq!(env.py(&sb.id, "print('fresh')").await.stdout, "fresh\n");
    // The interpreter dying on its own is reported and recovered from.
    let out = env.py(&sb.id, "import os; os._exit(9)").await;
    assert_eq!(out.exit_code, 9, "{out:?}");
    assert_eq!(env.py(&sb.id, "print(1)").await.stdout, "1\n");
    // Background processes do not hold an execution open.
    let t = Instant::now();
    let out = env.sh(&sb.id, "sleep 20 & echo started").await;
    assert_eq!(out.stdout, "started\n");
    assert!(t.elapsed() < Duration::from_secs(3));
    env.finish().await;
}

#[tokio::test]
async fn large_outputs_and_files_stream() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    // 24 MB of base64 through stdout, as the Agents integration does with tarballs.
    let out = env
        .sh(&sb.id, "head -c 18000000 /dev/urandom | base64 -w0")
        .await;
    assert_eq!(out.stdout.len(), 24_000_000);
    let out = env.py(&sb.id, "print('y' * 20_000_000)").await;
    assert_eq!(out.stdout.len(), 20_000_001);
    // A big cell source.
    let big_cell = format!("s = '{}'\nprint(len(s))", "z".repeat(3_000_000));
    assert_eq!(env.py(&sb.id, &big_cell).await.stdout, "3000000\n");

    let data: Vec<u8> = (0..40_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let info = env
        .rt
        .write_file(
            &sb.id,
            "deep/er/blob.bin",
            reader(data.clone()),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (info.path.as_str(), info.size),
        ("/app/deep/er/blob.bin", 40_000_000)
    );
    let (info, r) = env
        .rt
        .read_file(&sb.id, "/app/deep/er/blob.bin")
        .await
        .unwrap();
    assert_eq!(info.size, 40_000_000);
    assert!(
        read_all(r).await.unwrap() == data,
        "downloaded bytes differ"
    );
    let out = env
        .sh(&sb.id, "sha256sum deep/er/blob.bin | cut -c1-16")
        .await;
    assert_eq!(out.stdout.len(), 17);

    let st = env.rt.stat(&sb.id, "/app/deep").await.unwrap();
    assert_eq!(st.kind, FileKind::Dir);
    let listing = env.rt.list_dir(&sb.id, "/app", true).await.unwrap();
    let paths: Vec<_> = listing.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"/app/deep/er/blob.bin"), "{paths:?}");
    assert!(matches!(
        env.rt.read_file(&sb.id, "/nope").await,
        Err(RuntimeError::FileNotFound(_))
    ));
    assert!(matches!(
        env.rt.read_file(&sb.id, "/app").await,
        Err(RuntimeError::WrongFileType(_))
    ));
    assert!(matches!(
        env.rt
            .list_dir(&sb.id, "/app/deep/er/blob.bin", false)
            .await,
        Err(RuntimeError::WrongFileType(_))
    ));
    let empty = env
        .rt
        .write_file(
            &sb.id,
            "/app/empty",
            reader(vec![]),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(empty.size, 0);
    env.finish().await;
}

/// Issue 8, finding 4: 100 MB of `"` and `\x01` (the worst cases for JSON escaping) on stdout
/// and stderr of a 256 MiB sandbox. The agent (PID 1) keeps 32 MiB of each, so the code gets
/// truncated output and the sandbox, its interpreter and its state live on.
#[tokio::test]
async fn noisy_output_is_truncated_and_the_sandbox_lives_on() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env
        .sandbox_with(SandboxSpec {
            memory_mb: 256,
            ..SandboxSpec::default()
        })
        .await;
    let cap = instavm_runtime_ns::max_output(256) as usize;
    assert_eq!(cap, 32 << 20);
    let note = |stream: &str, dropped: usize| {
        format!("\n[instavm: {stream} truncated, {dropped} bytes dropped]\n")
    };
    assert_eq!(env.py(&sb.id, "kept = 'state'").await.exit_code, 0);
    let out = env
        .py(
            &sb.id,
            "import sys\nfor _ in range(100):\n    sys.stdout.write('\"' * 1_000_000)\n    \
             sys.stderr.write('\\x01' * 1_000_000)\nsys.stdout.flush(); sys.stderr.flush()",
        )
        .await;
    assert_eq!(
        out.exit_code,
        0,
        "{}",
        &out.stderr[out.stderr.len().saturating_sub(300)..]
    );
    assert_eq!(
        out.stdout.len(),
        cap + note("stdout", 100_000_000 - cap).len()
    );
    assert!(out.stdout.ends_with(&note("stdout", 100_000_000 - cap)));
    assert!(out.stdout[..cap].bytes().all(|b| b == b'"'));
    assert!(out.stderr.ends_with(&note("stderr", 100_000_000 - cap)));
    assert!(out.stderr[..cap].bytes().all(|b| b == 1));
    assert_eq!(env.py(&sb.id, "print(kept)").await.stdout, "state\n");

    let out = env
        .sh(
            &sb.id,
            "head -c 100000000 /dev/zero | tr '\\0' '\"'; \
             head -c 100000000 /dev/zero | tr '\\0' '\\001' >&2",
        )
        .await;
    assert_eq!(out.exit_code, 0);
    assert!(out.stdout.ends_with(&note("stdout", 100_000_000 - cap)));
    assert!(out.stderr.ends_with(&note("stderr", 100_000_000 - cap)));
    assert_eq!(env.py(&sb.id, "print(kept)").await.stdout, "state\n");
    env.finish().await;
}

#[tokio::test]
async fn destroy_leaves_nothing_behind() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    env.sh(
        &sb.id,
        "sleep 1000 & python3 -c 'import time; time.sleep(1000)' &",
    )
    .await;
    assert!(
        !leftovers(&env, &sb.id).is_empty(),
        "the probe must see a live sandbox"
    );
    let mut events = env.rt.subscribe();
    env.rt.destroy(&sb.id).await.unwrap();
    assert_eq!(leftovers(&env, &sb.id), Vec::<String>::new());
    assert!(matches!(
        env.rt.get(&sb.id).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        env.rt.destroy(&sb.id).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        env.rt
            .exec(
                &sb.id,
                ExecRequest {
                    language: Language::Bash,
                    code: "true".into(),
                    timeout: None
                }
            )
            .await,
        Err(RuntimeError::NotFound(_))
    ));
    let ev = events.recv().await.unwrap();
    assert_eq!(
        ev,
        RuntimeEvent::Exited {
            id: sb.id.clone(),
            reason: ExitReason::Destroyed
        }
    );
    env.finish().await;
}

#[tokio::test]
async fn expiry_reaps_the_sandbox() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let mut events = env.rt.subscribe();
    let sb = env
        .sandbox_with(SandboxSpec {
            lifetime: Duration::from_secs(2),
            ..SandboxSpec::default()
        })
        .await;
    let long = env.sandbox().await;
    env.rt
        .set_expiry(&long.id, chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    let mut expired = Vec::new();
    while expired.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(RuntimeEvent::Exited {
                id,
                reason: ExitReason::Expired,
            })) => expired.push(id),
            other => panic!("expected expiry events, got {other:?}"),
        }
    }
    assert!(expired.contains(&sb.id) && expired.contains(&long.id));
    for id in [&sb.id, &long.id] {
        assert_eq!(leftovers(&env, id), Vec::<String>::new());
    }
    env.finish().await;
}

#[tokio::test]
async fn a_dead_init_is_noticed_and_cleaned_up() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let mut events = env.rt.subscribe();
    let sb = env.sandbox().await;
    let pid = agent_pid(&env, &sb.id);
    unsafe_free_kill(pid);
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev,
        RuntimeEvent::Exited {
            id: sb.id.clone(),
            reason: ExitReason::Died
        }
    );
    assert_eq!(leftovers(&env, &sb.id), Vec::<String>::new());
    env.finish().await;
}

#[tokio::test]
async fn a_restarted_runtime_recovers_live_sandboxes_and_cleans_dead_ones() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    // A runtime in another process creates two sandboxes, then is killed with SIGKILL.
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_runtime_that_gets_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("HELPER_DATA_DIR", env.data.path())
        .env("HELPER_IMAGES_DIR", images_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<SandboxId> = text
        .lines()
        .filter_map(|l| l.strip_prefix("SANDBOX "))
        .filter_map(SandboxId::parse)
        .collect();
    assert_eq!(ids.len(), 2, "helper output: {text}");
    assert!(!out.status.success(), "the helper must have been killed");
    let (survivor, victim) = (&ids[0], &ids[1]);
    // While no runtime runs, one sandbox dies (say its init was OOM-killed).
    unsafe_free_kill(agent_pid(&env, victim));
    std::thread::sleep(Duration::from_millis(300));

    let rt = env.reopen().await;
    let listed: Vec<SandboxId> = rt.list().await.unwrap().into_iter().map(|i| i.id).collect();
    assert!(listed.contains(survivor), "{listed:?}");
    assert!(!listed.contains(victim), "{listed:?}");
    assert_eq!(
        leftovers(&env, victim),
        Vec::<String>::new(),
        "the dead sandbox left traces"
    );
    let out = exec(&rt, survivor, Language::Python, "print(state)", 10).await;
    assert_eq!(out.stdout, "kept across the restart\n", "{out:?}");
    // Half-created leftovers without a record are cleaned too.
    drop(rt);
    let orphan = SandboxId::generate();
    std::fs::create_dir_all(env.data.path().join("layers").join(orphan.as_str())).unwrap();
    let cg = std::fs::read_dir("/sys/fs/cgroup/pids/instavm")
        .unwrap()
        .flatten()
        .find(|d| d.path().join(survivor.as_str()).exists())
        .map(|d| d.path().join(orphan.as_str()));
    if let Some(cg) = &cg {
        std::fs::create_dir_all(cg).unwrap();
    }
    let rt = env.reopen().await;
    assert_eq!(leftovers(&env, &orphan), Vec::<String>::new());
    assert_eq!(rt.list().await.unwrap().len(), 1);
    env.finish().await;
}

/// Not a test on its own: the other process of the restart test.
#[tokio::test]
#[ignore = "helper process for a_restarted_runtime_recovers_live_sandboxes_and_cleans_dead_ones"]
async fn helper_runtime_that_gets_killed() {
    let Ok(data) = std::env::var("HELPER_DATA_DIR") else {
        return;
    };
    let mut config = instavm_runtime_ns::NsConfig::new(data);
    config.images_dir = std::env::var("HELPER_IMAGES_DIR").ok().map(Into::into);
    let rt = instavm_runtime_ns::NsRuntime::open(config).await.unwrap();
    for _ in 0..2 {
        let sb = rt.create(SandboxSpec::default()).await.unwrap();
        exec(
            &rt,
            &sb.id,
            Language::Python,
            "state = 'kept across the restart'",
            10,
        )
        .await;
        println!("SANDBOX {}", sb.id);
    }
    // Die like a crashed server: no cleanup at all.
    unsafe_free_kill(std::process::id() as i32);
}

fn agent_pid(env: &Env, id: &SandboxId) -> i32 {
    let rec = std::fs::read_to_string(
        env.data
            .path()
            .join("sandboxes")
            .join(id.as_str())
            .join("sandbox.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

/// SIGKILL through the kill(1) command, so the tests need no unsafe code.
fn unsafe_free_kill(pid: i32) {
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
}

#[tokio::test]
async fn an_imported_rootfs_tarball_runs() {
    if !is_root() {
        return;
    }
    let base = Env::new().await; // makes sure the base image exists
    let work = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(target_dir())
        .unwrap();
    let tarball = work.path().join("rootfs.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(images_dir().join("base/rootfs"))
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let mut config = instavm_runtime_ns::NsConfig::new(work.path().join("data"));
    config.images_dir = Some(work.path().join("images"));
    let rt = instavm_runtime_ns::NsRuntime::open(config.clone())
        .await
        .unwrap();
    rt.import_image("imported", tarball.clone()).await.unwrap();
    assert!(
        rt.import_image("imported", tarball).await.is_err(),
        "names are not silently replaced"
    );
    let sb = rt
        .create(SandboxSpec {
            image: "imported".into(),
            ..SandboxSpec::default()
        })
        .await
        .unwrap();
    let out = exec(
        &rt,
        &sb.id,
        Language::Python,
        "import platform; print(platform.python_version_tuple()[0])",
        20,
    )
    .await;
    assert_eq!(out.stdout, "3\n", "{out:?}");
    let unknown = rt
        .create(SandboxSpec {
            image: "nope".into(),
            ..SandboxSpec::default()
        })
        .await;
    assert!(
        matches!(unknown, Err(RuntimeError::InvalidSpec(_))),
        "{unknown:?}"
    );
    drop(rt);
    instavm_runtime_ns::purge(config).await.unwrap();
    base.finish().await;
}

#[tokio::test]
async fn warm_pool_hands_over_configured_sandboxes() {
    if !is_root() {
        return;
    }
    let env = Env::with_pool(2).await;
    wait_for_pool(&env, 2).await;
    let mut spec = SandboxSpec {
        memory_mb: 256,
        disk_mb: 64,
        pids_max: 100,
        ..SandboxSpec::default()
    };
    spec.env
        .insert("TEAM".into(), "platform \"quoted\" \\ value".into());
    let t = Instant::now();
    let sb = env.sandbox_with(spec).await;
    let claimed_in = t.elapsed();
    assert!(
        claimed_in < Duration::from_millis(500),
        "a claim took {claimed_in:?}"
    );
    assert_eq!(
        env.rt.list().await.unwrap().len(),
        1,
        "pooled sandboxes are nobody's"
    );
    let expected = "platform \"quoted\" \\ value\n";
    assert_eq!(
        env.py(&sb.id, "import os; print(os.environ['TEAM'])")
            .await
            .stdout,
        expected
    );
    assert_eq!(env.sh(&sb.id, "echo \"$TEAM\"").await.stdout, expected);
    let stats = env.rt.stats(&sb.id).await.unwrap();
    assert_eq!(stats.memory_limit_bytes, 256 << 20);
    let out = env
        .sh(&sb.id, "dd if=/dev/zero of=/app/big bs=1M count=100 2>&1")
        .await;
    assert!(
        out.stdout.contains("quota") || out.stdout.contains("space"),
        "disk quota not applied: {out:?}"
    );
    let info = env.rt.get(&sb.id).await.unwrap();
    assert!(info.expires_at > chrono::Utc::now() + chrono::Duration::seconds(250));
    assert!(
        info.expires_at < chrono::Utc::now() + chrono::Duration::seconds(310),
        "lifetime not applied"
    );
    // Variables that Python reads at start-up get a fresh interpreter.
    let mut spec = SandboxSpec::default();
    spec.env
        .insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
    let sb2 = env.sandbox_with(spec).await;
    assert_eq!(
        env.py(&sb2.id, "import sys; print(sys.flags.dont_write_bytecode)")
            .await
            .stdout,
        "1\n"
    );
    // A bigger sandbox from the pool is not kept on one CPU.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        wait_for_pool(&env, 1).await;
        let big = env
            .sandbox_with(SandboxSpec {
                vcpu_count: 2,
                ..SandboxSpec::default()
            })
            .await;
        let probe = "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('Cpus_allowed_list')][0])";
        let cpus = env.py(&big.id, probe).await.stdout;
        assert!(
            cpus.contains('-') || cpus.contains(','),
            "still pinned: {cpus}"
        );
    }
    // Specs the pool cannot serve are refused like cold ones.
    let bad = env
        .rt
        .create(SandboxSpec {
            memory_mb: 1,
            ..SandboxSpec::default()
        })
        .await;
    assert!(matches!(bad, Err(RuntimeError::InvalidSpec(_))), "{bad:?}");
    wait_for_pool(&env, 2).await;
    env.finish().await;
}

async fn wait_for_pool(env: &Env, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.rt.warm_count() < n {
        assert!(Instant::now() < deadline, "the warm pool never filled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_vcpu_sandboxes_keep_agent_and_interpreter_on_one_cpu() {
    if !is_root() {
        return;
    }
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if host_cpus < 2 {
        eprintln!("SKIPPED: a one-CPU host has nothing to pin");
        return;
    }
    let env = Env::new().await;
    let allowed = |out: ExecOutput| out.stdout.trim().to_owned();
    let probe_py = "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('Cpus_allowed_list')][0])";
    let probe_sh = "grep Cpus_allowed_list /proc/self/status | cut -f2";
    let one = env.sandbox().await;
    let py = allowed(env.py(&one.id, probe_py).await);
    assert!(
        !py.contains(',') && !py.contains('-'),
        "interpreter not pinned: {py}"
    );
    let sh = allowed(env.sh(&one.id, probe_sh).await);
    assert!(
        sh.contains('-') || sh.contains(','),
        "bash should get every CPU: {sh}"
    );
    let two = env
        .sandbox_with(SandboxSpec {
            vcpu_count: 2,
            ..SandboxSpec::default()
        })
        .await;
    let py = allowed(env.py(&two.id, probe_py).await);
    assert!(
        py.contains('-') || py.contains(','),
        "a 2-vCPU interpreter is pinned: {py}"
    );
    env.finish().await;
}
