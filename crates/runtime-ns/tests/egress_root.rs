//! Egress at the runtime level (root): the default policy keeps private ranges out of reach
//! while the outside world works; a policy set through `Runtime::set_egress` is in force at
//! once, counted, and still in force after the runtime is re-opened (as after a server
//! restart), where it can be changed again.

mod common;

use common::*;
use instavm_runtime::*;
use std::time::Duration;

/// An "outside" netns with a public (198.18.n.1) and a private (10.98.n.1) address, both
/// serving HTTP on 8080 and routed from the host.
struct Outside {
    ns: String,
    host_if: String,
    private: String,
    server: std::process::Child,
}

fn sh(cmd: &str) {
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap();
    assert!(st.success(), "{cmd}");
}

impl Outside {
    fn new() -> Outside {
        let n = 210 + std::process::id() % 40;
        let ns = format!("ivmeg{n}");
        let (host_if, peer_if) = (format!("ivg{n}h"), format!("ivg{n}p"));
        let private = format!("10.98.{n}.1");
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .status();
        sh(&format!("ip netns add {ns}"));
        sh(&format!(
            "ip link add {host_if} type veth peer name {peer_if} netns {ns}"
        ));
        sh(&format!(
            "ip addr add 198.18.{n}.2/24 dev {host_if} && ip link set {host_if} up"
        ));
        sh(&format!(
            "ip -n {ns} addr add 198.18.{n}.1/24 dev {peer_if} && ip -n {ns} addr add {private}/32 dev {peer_if} \
             && ip -n {ns} link set {peer_if} up && ip -n {ns} link set lo up && ip -n {ns} route add default via 198.18.{n}.2"
        ));
        sh(&format!(
            "ip route replace {private}/32 via 198.18.{n}.1 dev {host_if}"
        ));
        let server = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c"])
            .arg("import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n    def do_GET(s):\n        s.send_response(200); s.end_headers(); s.wfile.write(b'outside')\n    def log_message(s, *a): pass\nh.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Outside {
            ns,
            host_if,
            private,
            server,
        }
    }

    fn public(&self) -> String {
        let n = &self.ns["ivmeg".len()..];
        format!("198.18.{n}.1")
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::process::Command::new("ip")
            .args(["route", "del", &format!("{}/32", self.private)])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}

async fn get(rt: &instavm_runtime_ns::NsRuntime, id: &SandboxId, ip: &str) -> String {
    exec(
        rt,
        id,
        Language::Bash,
        &format!("curl -s --max-time 3 http://{ip}:8080/ || echo FAILED"),
        30,
    )
    .await
    .stdout
}

// Multi-threaded: the re-opened runtime takes the sandbox's resolver over from the first one,
// whose tasks must get to run their cancellation meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_defaults_policies_and_a_reopened_runtime() {
    if !is_root() {
        return;
    }
    let outside = Outside::new();
    let env = Env::new().await;
    let sb = env.sandbox().await;
    let public = outside.public();
    // The default: the outside world, never a private range; the resolver is the veth's host end.
    assert_eq!(get(&env.rt, &sb.id, &public).await.trim(), "outside");
    assert!(get(&env.rt, &sb.id, &outside.private)
        .await
        .contains("FAILED"));
    let resolv = env
        .sh(&sb.id, "cat /etc/resolv.conf; ip -4 route show default")
        .await
        .stdout;
    let gw = resolv
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        resolv.starts_with(&format!("nameserver {gw}\n")),
        "{resolv}"
    );

    let deny = EgressPolicy {
        allow_package_managers: false,
        allow_http: false,
        allow_https: false,
        allowed_domains: vec![],
        allowed_cidrs: vec![],
    };
    env.rt.set_egress(&sb.id, &deny).await.unwrap();
    assert!(get(&env.rt, &sb.id, &public).await.contains("FAILED"));
    assert!(env.rt.egress_denials(&sb.id).await.unwrap() > 0);

    // Re-opened (a restarted server): the recovered sandbox is still closed...
    let rt2 = env.reopen().await;
    assert!(get(&rt2, &sb.id, &public).await.contains("FAILED"));
    // ...and a CIDR rule set through the new runtime opens exactly that address.
    let cidr = EgressPolicy {
        allowed_cidrs: vec![format!("{public}/32")],
        ..deny.clone()
    };
    rt2.set_egress(&sb.id, &cidr).await.unwrap();
    assert_eq!(get(&rt2, &sb.id, &public).await.trim(), "outside");
    assert!(get(&rt2, &sb.id, &outside.private).await.contains("FAILED"));
    rt2.set_egress(&sb.id, &EgressPolicy::default())
        .await
        .unwrap();
    assert_eq!(get(&rt2, &sb.id, &public).await.trim(), "outside");
    rt2.destroy(&sb.id).await.unwrap();
    drop(rt2);
    env.finish().await;
}
