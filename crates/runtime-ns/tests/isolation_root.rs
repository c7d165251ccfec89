//! Escape attempts from inside a sandbox. Each one must be refused or contained, and the host
//! and other sandboxes must stay healthy. Needs root (runs as root in CI).

mod common;

use common::*;
use instavm_runtime::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// After an attack: a second sandbox still works, and the host still answers on loopback.
async fn assert_healthy(env: &Env) {
    let other = env.sandbox().await;
    let out = env.py(&other.id, "print(6 * 7)").await;
    assert_eq!(out.stdout, "42\n", "a fresh sandbox must work: {out:?}");
    env.rt.destroy(&other.id).await.unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    TcpStream::connect(l.local_addr().unwrap()).expect("host loopback still works");
}

#[tokio::test]
async fn host_files_are_invisible() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let secret = format!("host-secret-{}", rand_suffix());
    let planted = format!("/tmp/{secret}");
    std::fs::write(&planted, &secret).unwrap();
    let sb = env.sandbox().await;

    let out = env
        .sh(
            &sb.id,
            &format!(
                "cat {planted}; ls /tmp; grep -r {secret} /tmp /root /etc 2>/dev/null; echo done"
            ),
        )
        .await;
    assert!(!out.stdout.contains(&format!("{secret}\n{secret}")));
    assert!(
        !out.stdout.lines().any(|l| l == secret),
        "host file leaked: {out:?}"
    );
    let out = env
        .py(&sb.id, &format!("print(open('{planted}').read())"))
        .await;
    assert_ne!(out.exit_code, 0);
    assert!(out.stderr.contains("FileNotFoundError"), "{out:?}");
    // The file API sees the sandbox's /tmp, not the host's.
    assert!(matches!(
        env.rt.read_file(&sb.id, &planted).await,
        Err(RuntimeError::FileNotFound(_))
    ));
    // Nothing of the host's root is mounted: the data directory and the agent binary's
    // directory are absent.
    let data = env.data.path().display().to_string();
    let out = env.sh(&sb.id, &format!("ls -d {data} /work /proc/1/root/work 2>&1; cat /proc/1/exe >/dev/null 2>&1 && echo READABLE")).await;
    assert!(
        !out.stdout.contains("READABLE"),
        "agent binary readable: {out:?}"
    );
    assert!(
        out.stdout.contains("No such file") || out.stdout.contains("Permission denied"),
        "{out:?}"
    );
    std::fs::remove_file(&planted).unwrap();
    env.finish().await;
}

#[tokio::test]
async fn paths_with_dotdot_and_symlinks_stay_inside() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    let host_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let marker = format!("escape-{}", rand_suffix());

    // `..` past the root is the sandbox's root.
    env.rt
        .write_file(
            &sb.id,
            &format!("../../../../../../tmp/{marker}"),
            reader(b"x".to_vec()),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        !std::path::Path::new(&format!("/tmp/{marker}")).exists(),
        "write escaped to the host"
    );
    let out = env.sh(&sb.id, &format!("cat /tmp/{marker}")).await;
    assert_eq!(out.stdout, "x");

    // Symlinks created inside point inside, whatever they say.
    env.sh(
        &sb.id,
        "ln -s / /app/up && ln -s /../../../.. /app/dots && ln -s /proc/1/root /app/init-root",
    )
    .await;
    // A link through /proc's magic links is refused outright.
    assert!(matches!(
        env.rt
            .read_file(&sb.id, "/app/init-root/etc/hostname")
            .await,
        Err(RuntimeError::InvalidPath(_))
    ));
    for path in ["/app/up/etc/hostname", "/app/dots/etc/hostname"] {
        let (_, r) = env.rt.read_file(&sb.id, path).await.unwrap();
        let got = String::from_utf8(read_all(r).await.unwrap()).unwrap();
        assert!(got.starts_with("sbx-"), "{path} gave {got:?}");
        assert_ne!(got, host_hostname);
    }
    env.rt
        .write_file(
            &sb.id,
            &format!("/app/dots/tmp/{marker}-2"),
            reader(b"y".to_vec()),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(!std::path::Path::new(&format!("/tmp/{marker}-2")).exists());
    assert!(matches!(
        env.rt.read_file(&sb.id, "/etc/../..").await,
        Err(RuntimeError::WrongFileType(_))
    ));
    assert!(matches!(
        env.rt.read_file(&sb.id, "bad\0path").await,
        Err(RuntimeError::InvalidPath(_))
    ));
    env.finish().await;
}

#[tokio::test]
async fn host_processes_are_invisible() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let tag = format!("{}", 900000 + rand_suffix() % 99999);
    let mut host = std::process::Command::new("sleep")
        .arg(&tag)
        .spawn()
        .unwrap();
    let sb = env.sandbox().await;
    let out = env
        .sh(&sb.id, "ps -eo pid,args; ls /proc | grep -c '^[0-9]'")
        .await;
    assert!(
        !out.stdout.contains(&tag),
        "host process visible: {}",
        out.stdout
    );
    let count: usize = out.stdout.lines().last().unwrap().trim().parse().unwrap();
    assert!(count < 10, "sandbox sees {count} processes");
    let out = env
        .sh(&sb.id, &format!("kill -9 {} 2>&1; echo rc=$?", host.id()))
        .await;
    assert!(out.stdout.contains("rc=1"), "{out:?}");
    assert!(
        host.try_wait().unwrap().is_none(),
        "the host process was killed"
    );
    // PID 1 is the agent and cannot be killed from inside.
    let out = env.sh(&sb.id, "kill -9 1; sleep 0.2; echo alive").await;
    assert_eq!(out.stdout, "alive\n");
    assert_eq!(
        env.py(&sb.id, "print('still here')").await.stdout,
        "still here\n"
    );
    host.kill().unwrap();
    let _ = host.wait();
    env.finish().await;
}

#[tokio::test]
async fn host_network_services_are_unreachable() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    // A listener on every host address, like the API server or a host database.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let loopback = TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = loopback.local_addr().unwrap().port();
    let sb = env.sandbox().await;
    let gateway = {
        let out = env
            .sh(&sb.id, "ip -4 route show default | awk '{print $3}'")
            .await;
        out.stdout.trim().to_owned()
    };
    assert!(!gateway.is_empty());
    let host_ips = host_ipv4_addresses();
    let mut targets = vec![
        format!("127.0.0.1:{lport}"),
        format!("127.0.0.1:{port}"),
        format!("{gateway}:{port}"),
    ];
    targets.extend(host_ips.iter().map(|ip| format!("{ip}:{port}")));
    let script = format!(
        "import socket\nfor t in {targets:?}:\n    h, p = t.rsplit(':', 1)\n    s = socket.socket()\n    s.settimeout(1.5)\n    try:\n        s.connect((h, int(p)))\n        print('CONNECTED', t)\n    except OSError as e:\n        print('refused', t, type(e).__name__)\n"
    );
    let out = exec(&env.rt, &sb.id, Language::Python, &script, 120).await;
    assert!(
        !out.stdout.contains("CONNECTED"),
        "a host service was reachable: {}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), targets.len(), "{out:?}");
    drop(listener);
    drop(loopback);
    assert_healthy(&env).await;
    env.finish().await;
}

#[tokio::test]
async fn sandboxes_cannot_reach_each_other() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let a = env.sandbox().await;
    let b = env.sandbox().await;
    let b_ip = b.ip_address.clone().expect("b has an address");
    env.sh(&b.id, "nohup python3 -m http.server 8000 >/dev/null 2>&1 &")
        .await;
    let out = env
        .sh(
            &b.id,
            "for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:8000/ && break; sleep 0.1; done; \
             curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/",
        )
        .await;
    assert_eq!(out.stdout, "200", "b serves itself: {out:?}");
    let out = env.sh(&a.id, &format!("curl -s -m 2 -o /dev/null -w '%{{http_code}}' http://{b_ip}:8000/; echo \" rc=$?\"")).await;
    assert!(
        !out.stdout.starts_with("200"),
        "sandbox a reached sandbox b: {out:?}"
    );
    env.finish().await;
}

#[tokio::test]
async fn privileged_operations_are_refused() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    let out = env
        .sh(&sb.id, "mount -t tmpfs none /mnt 2>&1; echo rc=$?")
        .await;
    assert!(
        out.stdout.contains("rc=32") || out.stdout.contains("permission denied"),
        "{out:?}"
    );
    let out = env.sh(&sb.id, "grep -c . /proc/mounts; echo 1 > /proc/sys/kernel/panic 2>&1; echo rc=$?; echo b > /proc/sysrq-trigger 2>&1; echo rc=$?").await;
    assert!(
        !out.stdout.contains("rc=0"),
        "host-wide kernel knobs writable: {out:?}"
    );
    // Raw system calls, bypassing any missing tool.
    let script = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, nr, *args):
    r = libc.syscall(nr, *args)
    print(name, r, os.strerror(ctypes.get_errno()) if r < 0 else "ok")
call("mount", 165, b"none", b"/mnt", b"tmpfs", 0, None)
call("finit_module", 313, 0, b"", 0)
call("init_module", 175, None, 0, b"")
call("unshare_user", 272, 0x10000000)
call("unshare_net", 272, 0x40000000)
call("setns", 308, 0, 0)
call("kexec_load", 246, 0, 0, None, 0)
call("bpf", 321, 0, None, 0)
call("perf_event_open", 298, None, 0, -1, -1, 0)
call("userfaultfd", 323, 0)
call("keyctl", 250, 0, 0, 0, 0, 0)
call("open_by_handle_at", 304, 0, None, 0)
call("pivot_root", 155, b"/", b"/")
call("reboot", 169, 0xfee1dead, 672274793, 0x4321fedc, None)
call("swapoff", 168, b"/")
call("settimeofday", 164, None, None)
"#;
    let out = env.py(&sb.id, script).await;
    for line in out.stdout.lines() {
        assert!(
            !line.ends_with(" ok"),
            "allowed: {line} (all: {})",
            out.stdout
        );
    }
    assert_eq!(out.stdout.lines().count(), 16, "{out:?}");
    // Capabilities are gone from every set, bounding set included.
    let out = env
        .sh(
            &sb.id,
            "grep -E 'CapBnd|CapEff|NoNewPrivs|Seccomp:' /proc/self/status",
        )
        .await;
    assert!(out.stdout.contains("NoNewPrivs:\t1"), "{out:?}");
    assert!(out.stdout.contains("Seccomp:\t2"), "{out:?}");
    let bnd = out
        .stdout
        .lines()
        .find(|l| l.starts_with("CapBnd"))
        .unwrap();
    let mask = u64::from_str_radix(bnd.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(mask & (1 << 21), 0, "CAP_SYS_ADMIN kept");
    assert_eq!(mask & (1 << 16), 0, "CAP_SYS_MODULE kept");
    assert_eq!(mask & (1 << 19), 0, "CAP_SYS_PTRACE kept");
    assert_eq!(mask & (1 << 12), 0, "CAP_NET_ADMIN kept");
    assert_healthy(&env).await;
    env.finish().await;
}

#[tokio::test]
async fn memory_limit_contains_a_hog() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env
        .sandbox_with(SandboxSpec {
            memory_mb: 128,
            ..SandboxSpec::default()
        })
        .await;
    let out = env
        .py(
            &sb.id,
            "x = bytearray(512 * 1024 * 1024)\nprint('allocated')",
        )
        .await;
    assert!(
        !out.stdout.contains("allocated"),
        "allocated past the limit: {out:?}"
    );
    assert_ne!(out.exit_code, 0);
    // The sandbox survives: the agent is not the OOM killer's choice.
    let out = env.py(&sb.id, "print('after')").await;
    assert_eq!(out.stdout, "after\n", "{out:?}");
    let stats = env.rt.stats(&sb.id).await.unwrap();
    assert_eq!(stats.memory_limit_bytes, 128 << 20);
    assert_healthy(&env).await;
    env.finish().await;
}

#[tokio::test]
async fn fork_bomb_is_contained() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env
        .sandbox_with(SandboxSpec {
            pids_max: 64,
            ..SandboxSpec::default()
        })
        .await;
    let out = exec(
        &env.rt,
        &sb.id,
        Language::Bash,
        "bomb() { bomb | bomb & }; bomb; sleep 3",
        10,
    )
    .await;
    assert!(
        out.stderr.contains("Resource temporarily unavailable"),
        "the pids limit never bit: {out:?}"
    );
    let stats = env.rt.stats(&sb.id).await.unwrap();
    assert!(stats.pids <= 64, "pids {}", stats.pids);
    assert_healthy(&env).await;
    env.rt.destroy(&sb.id).await.unwrap();
    assert!(
        leftovers(&env, &sb.id).is_empty(),
        "{:?}",
        leftovers(&env, &sb.id)
    );
    env.finish().await;
}

#[tokio::test]
async fn disk_quota_is_enforced() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env
        .sandbox_with(SandboxSpec {
            disk_mb: 64,
            ..SandboxSpec::default()
        })
        .await;
    let out = env
        .sh(
            &sb.id,
            "dd if=/dev/zero of=/app/big bs=1M count=200 2>&1; sync; echo rc=$?",
        )
        .await;
    assert!(
        out.stdout.contains("quota exceeded") || out.stdout.contains("No space left"),
        "wrote past the quota: {out:?}"
    );
    env.sh(&sb.id, "rm -f /app/big; sync").await;
    let big = vec![7u8; 100 << 20];
    let err = env
        .rt
        .write_file(
            &sb.id,
            "/app/upload.bin",
            reader(big),
            WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::QuotaExceeded(_)), "{err:?}");
    let stats = env.rt.stats(&sb.id).await.unwrap();
    assert_eq!(stats.disk_limit_bytes, 64 << 20);
    assert!(stats.disk_bytes <= 64 << 20, "{stats:?}");
    // A failed upload leaves nothing behind, and the sandbox is still usable below the quota.
    let out = env.sh(&sb.id, "ls /app; sync").await;
    assert!(!out.stdout.contains("upload"), "{out:?}");
    env.rt
        .write_file(
            &sb.id,
            "/app/small.bin",
            reader(vec![1u8; 1 << 20]),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    env.sh(&sb.id, "head -c 5000000 /dev/urandom > /app/five; sync")
        .await;
    let used = env.rt.stats(&sb.id).await.unwrap().disk_bytes;
    assert!(used >= 5_000_000, "usage not reported: {used}");
    assert_healthy(&env).await;
    env.finish().await;
}

#[tokio::test]
async fn the_outside_world_is_reachable_through_nat() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let outside = OutsideHost::new();
    let sb = env.sandbox().await;
    let out = env
        .sh(
            &sb.id,
            &format!("curl -s -m 5 http://{}:{}/", outside.ip, outside.port),
        )
        .await;
    assert_eq!(out.stdout, "hello from outside", "{out:?}");
    env.finish().await;
}

/// Host processes of a sandbox (found through its cgroup): (pid, real uid).
fn host_processes_of(id: &SandboxId) -> Vec<(u32, u32)> {
    let mut found = Vec::new();
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cg = std::fs::read_to_string(p.path().join("cgroup")).unwrap_or_default();
        if !cg.contains(&format!("/{}", id.as_str())) {
            continue;
        }
        let status = std::fs::read_to_string(p.path().join("status")).unwrap_or_default();
        if let Some(uid) = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        {
            found.push((pid, uid));
        }
    }
    found
}

#[tokio::test]
async fn per_user_kernel_limits_are_per_sandbox() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let (a, b) = (env.sandbox().await, env.sandbox().await);

    // Inside: root, owning its files; the base image's owners look as they do on disk.
    let out = env
        .sh(
            &a.id,
            "id; stat -c '%n %u:%g' / /app /tmp /etc/passwd /usr/bin /dev/null; \
             stat -c '%G' /etc/shadow; touch /app/new; stat -c '%n %u:%g' /app/new; \
             cat /proc/self/uid_map",
        )
        .await;
    assert!(
        out.stdout
            .contains("uid=0(root) gid=0(root) groups=0(root)"),
        "{out:?}"
    );
    for owned in [
        "/ 0:0",
        "/app 0:0",
        "/tmp 0:0",
        "/etc/passwd 0:0",
        "/usr/bin 0:0",
        "/dev/null 0:0",
        "\nshadow\n",
        "/app/new 0:0",
    ] {
        assert!(out.stdout.contains(owned), "{owned:?} in {out:?}");
    }
    let map: Vec<u64> = out
        .stdout
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!((map[0], map[2]), (0, 65536), "{out:?}");
    let first = map[1];
    assert!(first >= 1 << 30, "root is host uid {first}");
    // The host sees every process of the sandbox under the sandbox's private range.
    let procs = host_processes_of(&a.id);
    assert!(!procs.is_empty());
    for (pid, uid) in &procs {
        assert!(
            (first..first + 65536).contains(&u64::from(*uid)),
            "host pid {pid} runs as uid {uid}"
        );
    }
    let b_procs = host_processes_of(&b.id);
    assert!(b_procs
        .iter()
        .all(|(_, uid)| !procs.iter().any(|(_, u)| u == uid)));

    // Sandbox A takes every inotify instance its user may have; B and host root still get one.
    let out = env
        .py(
            &a.id,
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nheld = []\n\
             while len(held) < 10000:\n    fd = libc.inotify_init1(0)\n    if fd < 0:\n        break\n    held.append(fd)\n\
             print(len(held), ctypes.get_errno())",
        )
        .await;
    assert!(
        out.stdout.trim().ends_with(" 24"),
        "A not at EMFILE: {out:?}"
    );
    let out = env
        .py(
            &b.id,
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.inotify_init1(0) >= 0)",
        )
        .await;
    assert_eq!(out.stdout, "True\n", "B lost inotify: {out:?}");
    // SAFETY: plain syscall; the descriptor is closed right away.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(fd >= 0, "host root lost inotify");
    // SAFETY: closing the descriptor we just opened.
    unsafe { libc::close(fd) };

    // A grows 80 pipes to 1 MiB (past the 64 MiB per-user soft limit): B's pipes keep 64 KiB.
    let out = env
        .py(
            &a.id,
            "import os, fcntl\nkeep = []\nfor _ in range(80):\n    r, w = os.pipe()\n    try:\n        fcntl.fcntl(w, 1031, 1 << 20)\n    except OSError:\n        pass\n    keep.append((r, w))\n\
             r, w = os.pipe()\nprint(fcntl.fcntl(w, 1032))",
        )
        .await;
    assert_ne!(
        out.stdout, "65536\n",
        "A's own pipes should be shrunk: {out:?}"
    );
    let out = env
        .py(
            &b.id,
            "import os, fcntl\nr, w = os.pipe()\nprint(fcntl.fcntl(w, 1032))",
        )
        .await;
    assert_eq!(out.stdout, "65536\n", "B's pipes shrank: {out:?}");
    env.finish().await;
}

#[tokio::test]
async fn unneeded_socket_families_are_refused() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    let script = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for name, fam in [("vsock", 40), ("packet", 17), ("alg", 38), ("key", 15), ("bluetooth", 31),
                  ("tipc", 30), ("rds", 21), ("xdp", 44), ("can", 29), ("appletalk", 5), ("x25", 9)]:
    for kind in (1, 2, 3, 5):
        fd = libc.socket(fam, kind, 0)
        if fd >= 0:
            print("ALLOWED", name, kind)
        elif ctypes.get_errno() != 97:
            print("ERRNO", name, kind, ctypes.get_errno())
    pair = (ctypes.c_int * 2)()
    if libc.socketpair(fam, 1, 0, pair) >= 0:
        print("ALLOWED socketpair", name)
for name, fam, kind in [("unix", 1, 1), ("inet", 2, 1), ("inet6", 10, 2), ("netlink", 16, 3)]:
    fd = libc.socket(fam, kind, 0)
    print(name, "ok" if fd >= 0 else os.strerror(ctypes.get_errno()))
"#;
    let out = env.py(&sb.id, script).await;
    assert!(
        !out.stdout.contains("ALLOWED") && !out.stdout.contains("ERRNO"),
        "{out:?}"
    );
    for ok in ["unix ok", "inet ok", "inet6 ok", "netlink ok"] {
        assert!(out.stdout.contains(ok), "{ok}: {out:?}");
    }
    // Everyday tools still work: ip (netlink), Python's socket module, resolver setup, port 80.
    let out = env
        .sh(
            &sb.id,
            "ip -o addr show dev eth0 && python3 -c 'import socket; socket.socketpair(); \
             socket.getaddrinfo(\"localhost\", 80); socket.socket().bind((\"0.0.0.0\", 80))' \
             && echo fine",
        )
        .await;
    assert!(
        out.stdout.contains("eth0") && out.stdout.contains("fine"),
        "{out:?}"
    );
    env.finish().await;
}

#[tokio::test]
async fn host_details_are_hidden() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    let data = env.data.path().display().to_string();
    let images = images_dir().display().to_string();
    let out = env.sh(&sb.id, "cat /proc/self/mountinfo").await;
    for host_path in [
        data.as_str(),
        images.as_str(),
        "/work/",
        "sandboxes/",
        "layers/",
        "rootfs",
    ] {
        assert!(
            !out.stdout.contains(host_path),
            "mountinfo names {host_path}: {}",
            out.stdout
        );
    }
    for file in [
        "/proc/cmdline",
        "/proc/slabinfo",
        "/proc/vmallocinfo",
        "/proc/kallsyms",
        "/sys/kernel/vmcoreinfo",
    ] {
        let out = env
            .sh(&sb.id, &format!("cat {file} 2>/dev/null | wc -c"))
            .await;
        assert_eq!(out.stdout.trim(), "0", "{file} readable: {out:?}");
    }
    let out = env.sh(&sb.id, "ls -A /sys/firmware | wc -l").await;
    assert_eq!(out.stdout.trim(), "0", "/sys/firmware listed: {out:?}");
    let out = env
        .sh(
            &sb.id,
            "before=$(cat /proc/1/oom_score_adj); echo 1000 > /proc/1/oom_score_adj; echo rc=$?; \
             [ \"$(cat /proc/1/oom_score_adj)\" = \"$before\" ] && echo unchanged",
        )
        .await;
    assert!(
        !out.stdout.contains("rc=0") && out.stdout.contains("unchanged"),
        "{out:?}"
    );
    env.finish().await;
}

#[tokio::test]
async fn the_file_api_serves_no_host_files() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let sb = env.sandbox().await;
    let data = env.data.path().display().to_string();
    for path in [
        "/proc/1/exe",
        "/proc/1/fd/1",
        "/proc/1/fd/2",
        "/proc/1/fd/4",
        "/proc/1/maps",
        "/proc/1/environ",
        "/proc/self/exe",
        "/proc/self/maps",
        "/proc/thread-self/maps",
    ] {
        match env.rt.read_file(&sb.id, path).await {
            Err(_) => {}
            Ok((_, r)) => {
                let got = read_all(r).await.unwrap_or_default();
                let text = String::from_utf8_lossy(&got);
                assert!(
                    !text.contains(&data) && !text.contains("/work/") && !text.contains("target/"),
                    "{path} leaked: {text}"
                );
                panic!("{path} was served: {text}");
            }
        }
    }
    // A link to the agent's /proc planted inside is refused the same way.
    env.sh(
        &sb.id,
        "ln -s /proc/1/maps /app/maps; ln -s /proc/1/fd/1 /app/log",
    )
    .await;
    for path in ["/app/maps", "/app/log"] {
        assert!(env.rt.read_file(&sb.id, path).await.is_err(), "{path}");
    }
    // Listings and uploads resolve the same way.
    assert!(env.rt.list_dir(&sb.id, "/proc/1/fd", false).await.is_err());
    assert!(env
        .rt
        .write_file(
            &sb.id,
            "/proc/1/cwd/app/planted",
            reader(b"x".to_vec()),
            WriteOptions::default()
        )
        .await
        .is_err());
    let listed = env.rt.list_dir(&sb.id, "/app", false).await.unwrap();
    assert!(listed.iter().any(|f| f.path == "/app/maps"), "{listed:?}");
    // The agent runs from a sealed memory copy: its /proc/1/exe names no host file.
    let out = env.sh(&sb.id, "cat /proc/1/maps 2>&1 | head -3").await;
    assert!(!out.stdout.contains("/work"), "{out:?}");
    // A FIFO (nobody writing) does not wedge the agent: the download fails at once.
    env.sh(&sb.id, "mkfifo /app/fifo").await;
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        env.rt.read_file(&sb.id, "/app/fifo"),
    )
    .await
    .expect("download of a FIFO hung");
    assert!(
        matches!(
            r,
            Err(RuntimeError::WrongFileType(_)) | Err(RuntimeError::InvalidPath(_))
        ),
        "{:?}",
        r.map(|x| x.0)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Ordinary /proc files of the sandbox's own processes are still served.
    let (_, r) = env.rt.read_file(&sb.id, "/proc/cpuinfo").await.unwrap();
    assert!(!read_all(r).await.unwrap().is_empty());
    env.finish().await;
}

#[tokio::test]
async fn conntrack_flooding_is_limited_per_sandbox() {
    if !is_root() {
        return;
    }
    let env = Env::new().await;
    let outside = OutsideHost::new();
    let (a, b) = (env.sandbox().await, env.sandbox().await);
    let a_ip = a.ip_address.clone().unwrap();
    // 20,000 UDP flows as fast as Python sends them (a different port each).
    let out = env
        .py(
            &a.id,
            &format!(
                "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nt = time.time()\n\
                 for i in range(20000):\n    s.sendto(b'x', ('{}', 10000 + i))\nprint(time.time() - t)",
                outside.ip
            ),
        )
        .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let conntrack = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap_or_default();
    let tracked = conntrack
        .lines()
        .filter(|l| l.contains(&format!("src={a_ip} ")))
        .count();
    eprintln!(
        "20,000 UDP flows in {}s: {tracked} tracked",
        out.stdout.trim()
    );
    assert!(
        tracked <= 4096 + 16,
        "sandbox A holds {tracked} conntrack entries"
    );
    assert!(tracked > 100, "flows did not go out at all ({tracked})");
    // B's network is untouched.
    let out = env
        .sh(
            &b.id,
            &format!("curl -s -m 5 http://{}:{}/", outside.ip, outside.port),
        )
        .await;
    assert_eq!(out.stdout, "hello from outside", "{out:?}");
    env.finish().await;
}

/// The cpu-controller cgroup directory of a sandbox (v1 `cpu` hierarchy, or the v2 tree).
fn cpu_cgroup_of(id: &SandboxId) -> std::path::PathBuf {
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v1 = cg
        .lines()
        .any(|l| l.contains(":cpu,") || l.contains(":cpu:"));
    let base = if v1 {
        std::path::Path::new("/sys/fs/cgroup/cpu/instavm").to_path_buf()
    } else {
        std::path::Path::new("/sys/fs/cgroup/instavm").to_path_buf()
    };
    let pid = host_processes_of(id)[0].0;
    let mine = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = mine
        .lines()
        .find(|l| l.contains(&format!("/{}", id.as_str())) && (!v1 || l.contains("cpu")))
        .unwrap()
        .to_owned();
    let rel = line
        .splitn(3, ':')
        .nth(2)
        .unwrap()
        .trim_start_matches("/instavm/");
    base.join(rel)
}

#[tokio::test]
async fn cpu_is_shared_between_tenants_first() {
    if !is_root() {
        return;
    }
    // A warm pool of one: a claimed sandbox must move into its tenant's cgroup too.
    let env = Env::with_pool(1).await;
    let spec = |tenant: &str| SandboxSpec {
        tenant: Some(tenant.into()),
        ..SandboxSpec::default()
    };
    let a1 = env.sandbox_with(spec("alice")).await;
    let a2 = env.sandbox_with(spec("alice")).await;
    let b1 = env.sandbox_with(spec("bob")).await;
    for sb in [&a1, &a2, &b1] {
        assert_eq!(env.py(&sb.id, "print(1)").await.stdout, "1\n");
    }
    let (pa1, pa2, pb1) = (
        cpu_cgroup_of(&a1.id),
        cpu_cgroup_of(&a2.id),
        cpu_cgroup_of(&b1.id),
    );
    let tenant_a = pa1.parent().unwrap();
    assert_eq!(
        Some(tenant_a),
        pa2.parent(),
        "alice's sandboxes share a parent"
    );
    let tenant_b = pb1.parent().unwrap();
    assert_ne!(tenant_a, tenant_b, "bob has a parent of his own");
    assert_eq!(tenant_a.parent(), tenant_b.parent());
    let weight = |d: &std::path::Path| {
        std::fs::read_to_string(d.join("cpu.shares"))
            .or_else(|_| std::fs::read_to_string(d.join("cpu.weight")))
            .unwrap()
    };
    assert_eq!(weight(tenant_a), weight(tenant_b), "tenants weigh the same");
    // The tenant's parent goes with its last sandbox.
    env.rt.destroy(&b1.id).await.unwrap();
    assert!(!tenant_b.exists(), "{} left behind", tenant_b.display());
    env.finish().await;
}

/// An "internet host" in its own network namespace, routed through the host like the real
/// outside world: 198.18.x.1 serving HTTP, reachable from the host via a veth.
struct OutsideHost {
    ns: String,
    ip: String,
    port: u16,
    server: std::process::Child,
}

impl OutsideHost {
    fn new() -> Self {
        let n = rand_suffix() % 200 + 10;
        let ns = format!("ivmtest{n}");
        let (host_if, peer_if) = (format!("ivt{n}h"), format!("ivt{n}p"));
        let ip = format!("198.18.{n}.1");
        let sh = |cmd: &str| {
            let st = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .status()
                .unwrap();
            assert!(st.success(), "{cmd}");
        };
        sh(&format!("ip netns add {ns}"));
        sh(&format!(
            "ip link add {host_if} type veth peer name {peer_if} netns {ns}"
        ));
        sh(&format!(
            "ip addr add 198.18.{n}.2/24 dev {host_if} && ip link set {host_if} up"
        ));
        sh(&format!("ip -n {ns} addr add {ip}/24 dev {peer_if} && ip -n {ns} link set {peer_if} up && ip -n {ns} link set lo up"));
        sh(&format!("ip -n {ns} route add default via 198.18.{n}.2"));
        let port = 18080;
        let server = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c"])
            .arg(format!(
                "import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n    def do_GET(s):\n        s.send_response(200); s.end_headers(); s.wfile.write(b'hello from outside')\n    def log_message(s, *a): pass\nh.HTTPServer(('{ip}', {port}), H).serve_forever()"
            ))
            .spawn()
            .unwrap();
        // Wait until it listens.
        for _ in 0..100 {
            let probe = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "python3", "-c"])
                .arg(format!(
                    "import socket; socket.create_connection(('{ip}', {port}), 1)"
                ))
                .status()
                .unwrap();
            if probe.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        OutsideHost {
            ns,
            ip,
            port,
            server,
        }
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
    }
}

/// The host's own addresses, minus loopback and the host ends of other sandboxes' veths (tests
/// run in parallel; those are covered by the gateway case).
fn host_ipv4_addresses() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|dev| !dev.starts_with("ivm"))
        })
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|cidr| cidr.split('/').next())
        .filter(|ip| !ip.starts_with("127."))
        .map(str::to_owned)
        .collect()
}

fn rand_suffix() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u32::from_le_bytes(b) % 1_000_000
}
