use crate::*;
use rusqlite::Connection;

#[test]
fn migration_gives_existing_sessions_a_vm_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instavm.db");
    {
        // A database as the previous release left it: schema 1 with one ended session.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(migrations::MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, email, created_at) VALUES (7, 'a@example.com', 0);
             INSERT INTO sessions (id, user_id, vm_id, sandbox_id, status, end_reason, memory_mb,
                 vcpu_count, lifetime_seconds, metadata, created_at, expires_at, ended_at)
             VALUES ('s1', 7, 'vm_abc', '0123456789ab', 'expired', 'lifetime ended', 512, 1,
                 300, '{\"team\":\"x\"}', 1764000000123, 1764000300123, 1764000300500);",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let vm = store
        .get_user_vm(7, "vm_abc")
        .unwrap()
        .expect("a VM record");
    assert_eq!(vm.record.status, VmState::Terminated);
    assert_eq!(vm.record.session_id, "s1");
    assert_eq!(vm.record.created_at.timestamp_millis(), 1764000000123);
    assert_eq!(
        vm.record.metadata.get("team").and_then(|v| v.as_str()),
        Some("x")
    );
    assert_eq!(vm.record.end_reason.as_deref(), Some("lifetime ended"));
}

#[test]
fn ending_a_session_terminates_its_vm_once() {
    let store = Store::open_in_memory().unwrap();
    let user = store
        .create_user("a@example.com", None, false, Utc::now())
        .unwrap();
    let now = Utc::now();
    let s = SessionRecord {
        id: "s1".into(),
        user_id: user.id,
        vm_id: "vm_1".into(),
        sandbox_id: "0123456789ab".into(),
        status: SessionState::Active,
        end_reason: None,
        memory_mb: 512,
        vcpu_count: 1,
        lifetime_seconds: 300,
        metadata: Metadata::new(),
        created_at: now,
        expires_at: now,
        ended_at: None,
        usage: UsageCounters::default(),
    };
    store.insert_session(&s).unwrap();
    assert_eq!(store.list_user_vms(user.id, 10, true).unwrap().len(), 1);
    assert!(store
        .end_session("s1", SessionState::Terminated, "killed", now)
        .unwrap());
    let vm = store.get_vm("vm_1").unwrap().unwrap();
    assert_eq!(
        (vm.record.status, vm.sandbox_id),
        (VmState::Terminated, None)
    );
    assert_eq!(vm.record.end_reason.as_deref(), Some("killed"));
    assert!(store.list_user_vms(user.id, 10, true).unwrap().is_empty());
    assert!(!store
        .end_session("s1", SessionState::Expired, "later", now)
        .unwrap());
}
