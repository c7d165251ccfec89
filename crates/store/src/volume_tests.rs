use crate::*;

fn volume(id: &str, user_id: i64, name: &str) -> VolumeRow {
    let now = Utc::now();
    VolumeRow {
        id: id.into(),
        user_id,
        name: name.into(),
        quota_bytes: 1 << 20,
        used_bytes: 0,
        status: "ready".into(),
        created_at: now,
        updated_at: now,
    }
}

fn mount(vm: &str, vol: &str, path: &str, mode: &str) -> MountRow {
    MountRow {
        vm_id: vm.into(),
        volume_id: vol.into(),
        mount_path: path.into(),
        mode: mode.into(),
        checkpoint_id: None,
        created_at: Utc::now(),
    }
}

#[test]
fn volumes_checkpoints_and_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("instavm.db")).unwrap();
    let u = store
        .create_user("a@example.com", None, false, Utc::now())
        .unwrap();
    store.insert_volume(&volume("vol_a", u.id, "data")).unwrap();
    assert!(matches!(
        store.insert_volume(&volume("vol_b", u.id, "data")),
        Err(StoreError::Conflict(_))
    ));
    store
        .insert_volume(&volume("vol_b", u.id, "other"))
        .unwrap();
    assert_eq!(store.list_user_volumes(u.id).unwrap().len(), 2);
    assert!(store.get_user_volume(u.id + 1, "vol_a").unwrap().is_none());

    for (i, id) in ["ckpt_1", "ckpt_2"].iter().enumerate() {
        store
            .insert_checkpoint(&CheckpointRow {
                id: (*id).into(),
                volume_id: "vol_a".into(),
                name: None,
                status: "ready".into(),
                size_bytes: i as u64,
                created_at: Utc::now(),
            })
            .unwrap();
    }
    assert_eq!(store.list_checkpoints("vol_a").unwrap()[0].id, "ckpt_2");

    {
        let w = store.writer();
        w.execute_batch(
            "INSERT INTO vms (id, user_id, session_id, status, created_at, record)
             VALUES ('vm_1', 1, 's1', 'active', 0, '{}'), ('vm_2', 1, 's2', 'active', 0, '{}');",
        )
        .unwrap();
    }
    assert_eq!(
        store
            .add_mount(&mount("vm_1", "vol_a", "/data", "rw"))
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .add_mount(&mount("vm_2", "vol_a", "/data", "rw"))
            .unwrap(),
        Err(MountRefused::HeldBy("vm_1".into()))
    );
    assert_eq!(
        store
            .add_mount(&mount("vm_2", "vol_a", "/ro", "ro"))
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .add_mount(&mount("vm_2", "vol_b", "/ro", "rw"))
            .unwrap(),
        Err(MountRefused::PathTaken)
    );
    assert_eq!(store.live_mounts_of_volume("vol_a").unwrap().len(), 2);
    // An ended VM holds nothing; its rows stay for snapshot boots.
    store
        .writer()
        .execute("UPDATE vms SET status = 'terminated' WHERE id = 'vm_1'", [])
        .unwrap();
    assert_eq!(
        store
            .add_mount(&mount("vm_2", "vol_a", "/rw", "rw"))
            .unwrap(),
        Ok(())
    );
    assert_eq!(store.mounts_of_vm("vm_1").unwrap().len(), 1);
    assert_eq!(
        store.volume_ids().unwrap(),
        vec![
            (
                "vol_a".to_owned(),
                vec!["ckpt_1".to_owned(), "ckpt_2".to_owned()]
            ),
            ("vol_b".to_owned(), vec![])
        ]
    );
    // Mounted by a VM that is up: not deleted; the blocking mount is answered.
    assert_eq!(store.delete_unmounted_volume("vol_a").unwrap().len(), 2);
    assert!(store.delete_volume("vol_a").unwrap());
    assert_eq!(
        store
            .add_mount(&mount("vm_2", "vol_a", "/again", "ro"))
            .unwrap(),
        Err(MountRefused::VolumeGone)
    );
    assert!(store.delete_unmounted_volume("vol_b").unwrap().is_empty());
    assert!(store.list_user_volumes(u.id).unwrap().is_empty());
    assert!(store.mounts_of_vm("vm_1").unwrap().is_empty());
    assert!(store.list_checkpoints("vol_a").unwrap().is_empty());
}
