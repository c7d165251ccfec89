//! Egress benchmark (not a test; root): "the internet" in a network namespace
//! (`tests/common/internet.rs`) and `instavm server --dns-upstream` at its DNS server. Measures
//! - how long a policy change takes to be in force: `POST /v1/egress/vm/{id}` (the nft
//!   transaction is committed before it answers), alternating allow/deny, each followed by a
//!   connection from inside the VM that must follow the new policy (mismatches are counted);
//! - what the 80/443 name gate adds: a small HTTP GET (new connection each) from inside the
//!   VM straight to the site (open policy) vs through the gate (allowlist policy);
//! - what the VM's resolver adds: a DNS question to the upstream straight vs through the
//!   resolver (open: forwarding only), and in an allowlist for a name pinned already vs a new
//!   name (an nft run to pin it).
//!
//! Prints p50/p99, writes JSON to `--out PATH`, `INSTAVM_BENCH_OUT`, or
//! `<target>/instavm-bench/egress.json`. Run: `cargo bench -p instavm-cli --bench egress`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/internet.rs"]
mod internet;
mod support;

use instavm_sdk::{
    Client, CreateVmRequest, EgressPolicyRequest, EgressTarget, ExecuteRequest, VmRecord,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CHANGES: usize = 30;
const REQUESTS: usize = 300;

/// Timings from inside the VM: `http IP HOST N` (new connection, GET, read to close) or
/// `dns SERVER NAME N [unique]`; prints a JSON list of seconds.
const PROBE: &str = r#"
import json, socket, struct, sys, time
mode, target, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
unique = len(sys.argv) > 5
out = []
for i in range(n):
    if mode == "http":
        t = time.perf_counter()
        s = socket.create_connection((target, 80), 3)
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + name.encode() + b"\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass
        s.close()
    else:
        q = (f"q{i}-{time.time_ns()}." + name) if unique else name
        msg = struct.pack(">HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in q.split(".")) + b"\0\0\1\0\1"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
        t = time.perf_counter()
        s.sendto(msg, (target, 53)); a = s.recv(4096)
        assert a[3] & 15 == 0, a
        s.close()
    out.append(time.perf_counter() - t)
print(json.dumps(out))
"#;

async fn bash(client: &Client, vm: &VmRecord, code: &str) -> (String, i32) {
    let out = client
        .execute(&ExecuteRequest {
            command: code.into(),
            session_id: vm.session_id.clone(),
            language: Some("bash".into()),
            timeout: Some(600),
        })
        .await
        .expect("execute");
    (out.stdout, out.exit_code)
}

async fn probe(client: &Client, vm: &VmRecord, args: &str) -> Value {
    let (out, code) = bash(client, vm, &format!("python3 /tmp/probe.py {args}")).await;
    assert_eq!(code, 0, "probe {args}: {out}");
    let secs: Vec<f64> = serde_json::from_str(out.trim()).expect("probe output");
    support::stats(secs.into_iter().map(Duration::from_secs_f64).collect())
}

fn policy(domains: &[&str], cidrs: &[String]) -> EgressPolicyRequest {
    EgressPolicyRequest {
        allow_public_repos: Some(false),
        allow_http: Some(false),
        allow_https: Some(false),
        allowed_domains: Some(domains.iter().map(|d| d.to_string()).collect()),
        allowed_cidrs: Some(cidrs.to_vec()),
        ..Default::default()
    }
}

fn open() -> EgressPolicyRequest {
    EgressPolicyRequest {
        allow_public_repos: Some(true),
        allow_http: Some(true),
        allow_https: Some(true),
        allowed_domains: Some(vec![]),
        allowed_cidrs: Some(vec![]),
        ..Default::default()
    }
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let net = internet::Internet::new();
    let dns = net.dns();
    let server = common::TestServer::start_with(&["--dns-upstream", &dns]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async {
        let (client, _) = server.user("egress-bench@example.com").await;
        let vm = client
            .create_vm(&CreateVmRequest::default(), true)
            .await
            .expect("create VM");
        let target = EgressTarget::Vm(&vm.vm_id);
        bash(&client, &vm, &format!("cat > /tmp/probe.py <<'PY'\n{PROBE}\nPY")).await;
        let (a, b) = (net.site_a(), net.site_b());
        let upstream = format!("{}.1", net.net);
        let resolver = bash(&client, &vm, "awk '/^nameserver/{print $2; exit}' /etc/resolv.conf")
            .await
            .0
            .trim()
            .to_owned();

        // Open policy: straight to the site and to the upstream DNS server; the resolver forwards.
        let http_direct = probe(&client, &vm, &format!("http {a} a.test {REQUESTS}")).await;
        let dns_direct = probe(&client, &vm, &format!("dns {upstream} a.test {REQUESTS}")).await;
        let dns_forward = probe(&client, &vm, &format!("dns {resolver} a.test {REQUESTS}")).await;
        // The resolver answers 500 questions/s after a burst of 1,000: let the burst refill.
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Allowlist: through the gate, the resolver filtering and pinning.
        client
            .set_egress(target, &policy(&["a.test", "*.a.test"], &[]))
            .await
            .expect("set");
        let dns_pinned = probe(&client, &vm, &format!("dns {resolver} a.test {REQUESTS}")).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let dns_new_name = probe(&client, &vm, &format!("dns {resolver} a.test 200 unique")).await;
        let http_gate = probe(&client, &vm, &format!("http {a} a.test {REQUESTS}")).await;

        // Policy changes: allow b's address, then deny it again; each followed by a probe.
        let connect = format!(
            "python3 -c \"import socket; socket.create_connection(('{b}', 8080), 0.5); print('open')\" 2>/dev/null || echo closed"
        );
        let (mut allow, mut deny, mut mismatches) = (Vec::new(), Vec::new(), 0);
        for _ in 0..CHANGES {
            let t = Instant::now();
            client
                .set_egress(target, &policy(&["a.test"], &[format!("{b}/32")]))
                .await
                .expect("set");
            allow.push(t.elapsed());
            if bash(&client, &vm, &connect).await.0.trim() != "open" {
                mismatches += 1;
            }
            let t = Instant::now();
            client
                .set_egress(target, &policy(&["a.test"], &[]))
                .await
                .expect("set");
            deny.push(t.elapsed());
            if bash(&client, &vm, &connect).await.0.trim() != "closed" {
                mismatches += 1;
            }
        }
        client.set_egress(target, &open()).await.expect("set");
        client.delete_vm(&vm.vm_id).await.expect("delete");
        json!({
            "policy_change": {
                "allow": support::stats(allow),
                "deny": support::stats(deny),
                "mismatches": mismatches,
                "changes": CHANGES * 2,
            },
            "http_get": {"direct": http_direct, "through_gate": http_gate},
            "dns": {
                "direct_to_upstream": dns_direct,
                "resolver_open_forward": dns_forward,
                "resolver_allowlist_pinned_name": dns_pinned,
                "resolver_allowlist_new_name": dns_new_name,
            },
        })
    });
    let p50 = |v: &Value| v["p50_ms"].as_f64().unwrap_or(f64::NAN);
    let p99 = |v: &Value| v["p99_ms"].as_f64().unwrap_or(f64::NAN);
    let pc = &report["policy_change"];
    println!(
        "policy change in force (POST answered): allow p50 {:.2} ms p99 {:.2} ms, deny p50 {:.2} ms p99 {:.2} ms, mismatches {}",
        p50(&pc["allow"]), p99(&pc["allow"]), p50(&pc["deny"]), p99(&pc["deny"]), pc["mismatches"]
    );
    let h = &report["http_get"];
    println!(
        "HTTP GET, new connection: direct p50 {:.3} ms, through the gate p50 {:.3} ms (p99 {:.3} / {:.3})",
        p50(&h["direct"]), p50(&h["through_gate"]), p99(&h["direct"]), p99(&h["through_gate"])
    );
    let d = &report["dns"];
    println!(
        "DNS: upstream direct p50 {:.3} ms, resolver forwarding p50 {:.3} ms, allowlist pinned name p50 {:.3} ms, new name (nft pin) p50 {:.3} ms p99 {:.3} ms",
        p50(&d["direct_to_upstream"]), p50(&d["resolver_open_forward"]), p50(&d["resolver_allowlist_pinned_name"]),
        p50(&d["resolver_allowlist_new_name"]), p99(&d["resolver_allowlist_new_name"])
    );
    support::write_report("egress", &report);
}
