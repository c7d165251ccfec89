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
    for path in [
        "/app/up/etc/hostname",
        "/app/dots/etc/hostname",
        "/app/init-root/etc/hostname",
    ] {
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
