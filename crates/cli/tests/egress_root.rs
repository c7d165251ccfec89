//! Egress policy end to end on the real binary (root): "the internet" in a network namespace
//! (`common/internet.rs`), the server started with `--dns-upstream` at its DNS server, a VM
//! created through the Rust SDK with an allowlist, a live change through our CLI, and the
//! policy still in force after a `kill -9` and restart of the server.

mod common;
#[path = "common/internet.rs"]
mod internet;

use common::{json_line, TestServer};
use instavm_sdk::{
    Client, CreateVmRequest, EgressPolicyRequest, EgressTarget, ExecuteRequest, VmRecord,
};

async fn bash(client: &Client, vm: &VmRecord, code: &str) -> String {
    let out = client
        .execute(&ExecuteRequest {
            command: code.into(),
            session_id: vm.session_id.clone(),
            language: Some("bash".into()),
            timeout: Some(60),
        })
        .await
        .expect("execute");
    out.stdout
}

async fn resolves(client: &Client, vm: &VmRecord, name: &str) -> String {
    bash(
        client,
        vm,
        &format!("getent ahostsv4 {name} | head -1 | cut -d' ' -f1"),
    )
    .await
    .trim()
    .to_owned()
}

async fn fetch(client: &Client, vm: &VmRecord, args: &str) -> String {
    bash(
        client,
        vm,
        &format!("curl -s --max-time 3 {args} || echo FAILED:$?"),
    )
    .await
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[tokio::test]
async fn egress_allowlist_live_change_and_restart() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let net = internet::Internet::new();
    let dns = net.dns();
    let mut server = TestServer::start_with(&["--dns-upstream", &dns]);
    let (client, key) = server.user("egress@example.com").await;
    let (a, b) = (net.site_a(), net.site_b());
    let vm = client
        .create_vm(
            &CreateVmRequest {
                egress_policy: Some(EgressPolicyRequest {
                    allow_public_repos: Some(false),
                    allow_http: Some(false),
                    allow_https: Some(false),
                    allowed_domains: Some(vec!["a.test".into(), "*.a.test".into()]),
                    allowed_cidrs: Some(vec![]),
                    ..Default::default()
                }),
                ..CreateVmRequest::default()
            },
            true,
        )
        .await
        .expect("create VM");
    assert_eq!(resolves(&client, &vm, "a.test").await, a);
    assert_eq!(resolves(&client, &vm, "x.a.test").await, a);
    assert_eq!(resolves(&client, &vm, "b.test").await, "");
    assert!(fetch(&client, &vm, "http://a.test/")
        .await
        .contains(&format!("site {a}:80")));
    assert!(fetch(&client, &vm, "http://a.test:8080/")
        .await
        .contains(&format!("site {a}:8080")));
    assert!(fetch(&client, &vm, &format!("http://{b}:8080/"))
        .await
        .contains("FAILED"));
    let out = fetch(&client, &vm, &format!("-H 'Host: a.test' http://{b}/")).await;
    assert!(out.contains("blocked by the VM's egress policy"), "{out}");

    // A live change through our CLI: b.test resolves and loads on the next try.
    let out = server
        .cli()
        .args([
            "egress",
            "set",
            "--vm",
            &vm.vm_id,
            "--no-allow-package-managers",
            "--deny-http",
            "--deny-https",
        ])
        .args([
            "--domain",
            "a.test",
            "--domain",
            "b.test",
            "--json",
            "--api-key",
            &key,
        ])
        .output()
        .unwrap();
    let got = json_line(&out);
    assert_eq!(got["target_type"], "vm");
    assert_eq!(
        got["allowed_domains"],
        serde_json::json!(["a.test", "b.test"])
    );
    assert!(fetch(&client, &vm, "http://b.test:8080/")
        .await
        .contains(&format!("site {b}:8080")));
    let out = server
        .cli()
        .args([
            "egress",
            "get",
            "--vm",
            &vm.vm_id,
            "--json",
            "--api-key",
            &key,
        ])
        .output()
        .unwrap();
    assert_eq!(json_line(&out)["allow_http"], false);

    // kill -9 and restart: the policy is still in force.
    server.kill9();
    server.restart();
    let client = Client::new(&server.base_url, Some(key.clone())).unwrap();
    assert_eq!(
        resolves(&client, &vm, "x.a.test").await,
        "",
        "*.a.test was dropped by the last set"
    );
    assert!(fetch(&client, &vm, "http://b.test/")
        .await
        .contains(&format!("site {b}:80")));
    assert!(
        fetch(&client, &vm, &format!("http://{a}:8080/"))
            .await
            .contains("FAILED"),
        "a.test not resolved since the restart"
    );
    let p = client
        .get_egress(EgressTarget::Vm(&vm.vm_id))
        .await
        .unwrap();
    assert_eq!((p.mode.as_str(), p.source.as_str()), ("allowlist", "vm"));
    assert!(p.denied_attempts > 0, "{p:?}");
    client.delete_vm(&vm.vm_id).await.unwrap();
}
