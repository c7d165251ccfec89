//! End-to-end test of volumes on the real `instavm` binary through the Rust SDK: every volume,
//! checkpoint, file and mount call, and a `kill -9` of the server with a volume mounted. Needs
//! root (the namespace runtime); CI runs it as root.

mod common;

use common::TestServer;
use instavm_sdk::{
    Client, CreateVmRequest, Error, ExecuteRequest, MountVolumeRequest, UpdateVolumeRequest,
    VmRecord, VolumeMountSpec,
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

fn status(e: Error) -> u16 {
    match e {
        Error::Api { status, .. } => status,
        other => panic!("expected an HTTP error, got {other}"),
    }
}

#[tokio::test]
async fn e2e_volumes_through_the_rust_sdk_and_a_crash() {
    let mut server = TestServer::start();
    let (client, _) = server.user("volumes@example.com").await;
    let vol = client.create_volume("data", 8 << 20).await.expect("create");
    let renamed = client
        .update_volume(
            &vol.id,
            &UpdateVolumeRequest {
                name: Some("data-v2".into()),
                quota_bytes: Some(16 << 20),
            },
        )
        .await
        .expect("update");
    assert_eq!(
        (renamed.name.as_str(), renamed.quota_bytes),
        ("data-v2", 16 << 20)
    );

    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("a.txt");
    std::fs::write(&local, "alpha").unwrap();
    client
        .upload_volume_file(&vol.id, &local, "docs/a.txt", false)
        .await
        .expect("upload");
    let e = client
        .upload_volume_file(&vol.id, &local, "docs/a.txt", false)
        .await
        .unwrap_err();
    assert_eq!(status(e), 409);
    let files = client
        .list_volume_files(&vol.id, "docs/", true, 10)
        .await
        .expect("list");
    assert_eq!(files.len(), 1);
    let (res, bytes) = client
        .download_volume_file(&vol.id, "docs/a.txt")
        .await
        .expect("download");
    assert_eq!(
        (res.filename.as_str(), bytes.as_slice()),
        ("a.txt", &b"alpha"[..])
    );
    let ckpt = client
        .create_checkpoint(&vol.id, Some("v1"))
        .await
        .expect("checkpoint");

    // Mounted rw at create, the checkpoint ro live; the VM sees both.
    let vm = client
        .create_vm(
            &CreateVmRequest {
                volumes: Some(vec![VolumeMountSpec {
                    volume_id: Some(vol.id.clone()),
                    mount_path: Some("/data".into()),
                    ..VolumeMountSpec::default()
                }]),
                ..CreateVmRequest::default()
            },
            true,
        )
        .await
        .expect("create VM");
    client
        .mount_volume(
            &vm.vm_id,
            &MountVolumeRequest {
                volume_id: Some(vol.id.clone()),
                mount_path: Some("/old".into()),
                mode: Some("ro".into()),
                checkpoint_id: Some(ckpt.id.clone()),
            },
        )
        .await
        .expect("mount ro");
    assert_eq!(
        bash(
            &client,
            &vm,
            "echo beta > /data/docs/a.txt; cat /data/docs/a.txt /old/docs/a.txt"
        )
        .await,
        "beta\nalpha"
    );
    assert_eq!(client.vm_volumes(&vm.vm_id).await.expect("mounts").len(), 2);

    // kill -9: records, data and mounts are all still there.
    server.kill9();
    server.restart();
    // The restarted server may listen elsewhere: a client for its address, same key.
    let again = Client::new(&server.base_url, client.api_key().map(str::to_owned)).unwrap();
    assert_eq!(again.list_volumes(true).await.expect("list").len(), 1);
    assert_eq!(again.vm_volumes(&vm.vm_id).await.expect("mounts").len(), 2);
    assert_eq!(bash(&again, &vm, "cat /data/docs/a.txt").await, "beta\n");
    let e = again.delete_volume(&vol.id).await.unwrap_err();
    assert_eq!(status(e), 409);
    again
        .unmount_volume(&vm.vm_id, &vol.id, "/old")
        .await
        .expect("unmount ro");
    again
        .unmount_volume(&vm.vm_id, &vol.id, "/data")
        .await
        .expect("unmount rw");
    assert_eq!(bash(&again, &vm, "ls /data | wc -l").await.trim(), "0");
    assert_eq!(again.list_checkpoints(&vol.id).await.unwrap().len(), 1);
    again
        .delete_checkpoint(&vol.id, &ckpt.id)
        .await
        .expect("delete checkpoint");
    again
        .delete_volume_file(&vol.id, "docs/a.txt")
        .await
        .expect("delete file");
    again.delete_volume(&vol.id).await.expect("delete volume");
    again.delete_vm(&vm.vm_id).await.expect("delete VM");
}
