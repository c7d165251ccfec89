//! End-to-end tests of VMs and snapshots on the real `instavm` binary through the Rust SDK,
//! including a `kill -9` of the server with a VM suspended. They need root (the namespace
//! runtime); CI runs them as root.

mod common;

use common::TestServer;
use instavm_sdk::{
    Client, CloneVmRequest, CreateVmRequest, EnvEntry, ExecuteRequest, SnapshotVmRequest,
    UpdateVmRequest, VmRecord, VmState,
};
use std::collections::BTreeMap;

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
    assert_eq!(out.exit_code, 0, "{code}: {}", out.stderr);
    out.stdout
}

#[tokio::test]
async fn e2e_vms_through_the_rust_sdk_and_a_crash_while_suspended() {
    let mut server = TestServer::start();
    let (client, key) = server.user("vms@example.com").await;
    let mut env = BTreeMap::new();
    env.insert("FROM_CREATE".to_owned(), "1".to_owned());
    let vm = client
        .create_vm(
            &CreateVmRequest {
                memory_mb: Some(256),
                env: Some(env),
                metadata: Some(serde_json::from_str(r#"{"k": "v"}"#).unwrap()),
                ..CreateVmRequest::default()
            },
            true,
        )
        .await
        .unwrap();
    assert_eq!(vm.status, VmState::Active);

    let updated = client
        .update_vm(
            &vm.vm_id,
            &UpdateVmRequest {
                memory_mb: Some(640),
                ..UpdateVmRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.memory_mb, 640);
    let usage = client.session_usage(&vm.session_id).await.unwrap();
    assert_eq!(usage.memory_limit_bytes, Some(640 << 20));

    let staged = client
        .stage_env(
            &vm.vm_id,
            vec![EnvEntry {
                env_name: "TOKEN".into(),
                value: "abc".into(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(staged.staged, vec!["TOKEN".to_owned()]);
    assert_eq!(
        bash(&client, &vm, "echo $TOKEN $FROM_CREATE").await,
        "abc 1\n"
    );

    bash(&client, &vm, "echo one > /app/one.txt").await;
    let snap = client
        .snapshot_vm(
            &vm.vm_id,
            &SnapshotVmRequest {
                name: Some("one".into()),
            },
            true,
        )
        .await
        .unwrap();
    assert_eq!(client.get_snapshot(&snap.id).await.unwrap().name, "one");
    assert_eq!(client.list_snapshots(Some("user")).await.unwrap().len(), 1);
    let booted = client
        .create_vm(
            &CreateVmRequest {
                snapshot_id: Some(snap.id.clone()),
                ..CreateVmRequest::default()
            },
            true,
        )
        .await
        .unwrap();
    assert_eq!(bash(&client, &booted, "cat /app/one.txt").await, "one\n");
    let clone = client
        .clone_vm(&vm.vm_id, &CloneVmRequest::default(), true)
        .await
        .unwrap();
    assert_eq!(
        bash(&client, &clone, "cat /app/one.txt; echo ${TOKEN:-none}").await,
        "one\nnone\n"
    );

    // Suspend, crash, restart: the VM is still suspended and resumes with its files.
    bash(&client, &vm, "echo two > /app/two.txt").await;
    let suspended = client.suspend_vm(&vm.vm_id).await.unwrap();
    assert_eq!(suspended.status, VmState::Suspended);
    server.kill9();
    server.restart();
    let client = Client::new(&server.base_url, Some(key)).unwrap();
    assert_eq!(
        client.get_vm(&vm.vm_id).await.unwrap().status,
        VmState::Suspended
    );
    assert_eq!(bash(&client, &booted, "cat /app/one.txt").await, "one\n");
    let resumed = client.resume_vm(&vm.vm_id, true).await.unwrap();
    assert_ne!(resumed.vm_id, vm.vm_id);
    assert_eq!(resumed.session_id, vm.session_id);
    assert_eq!(
        bash(&client, &resumed, "cat /app/one.txt /app/two.txt").await,
        "one\ntwo\n"
    );

    let running: Vec<String> = client
        .list_vms()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.vm_id)
        .collect();
    assert_eq!(running.len(), 3, "{running:?}");
    for id in &running {
        assert_eq!(
            client.delete_vm(id).await.unwrap().status,
            VmState::Terminated
        );
    }
    assert!(client.list_vms().await.unwrap().is_empty());
    assert_eq!(client.list_all_vms().await.unwrap().len(), 4);
    client.delete_snapshot(&snap.id).await.unwrap();
}
