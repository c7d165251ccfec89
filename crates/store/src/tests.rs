use crate::*;
use chrono::Duration;

pub(crate) fn key(hash: &[u8]) -> NewApiKey<'_> {
    NewApiKey {
        hash,
        prefix: "ivm_test",
        description: Some("test"),
    }
}

pub(crate) fn session(
    id: &str,
    user_id: i64,
    sandbox: &str,
    created_at: DateTime<Utc>,
) -> SessionRecord {
    let mut metadata = Metadata::new();
    metadata.insert("env".into(), "prod".into());
    SessionRecord {
        id: id.into(),
        user_id,
        vm_id: format!("vm_{id}"),
        sandbox_id: sandbox.into(),
        status: SessionState::Active,
        end_reason: None,
        memory_mb: 512,
        vcpu_count: 1,
        lifetime_seconds: 300,
        metadata,
        created_at,
        expires_at: created_at + Duration::seconds(300),
        ended_at: None,
        usage: UsageCounters::default(),
    }
}

#[test]
fn records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instavm.db");
    let now = Utc::now();
    let user_id = {
        let store = Store::open(&path).unwrap();
        let (user, _) = store
            .create_user_with_key("a@example.com", None, &key(b"h1"), now)
            .unwrap();
        store
            .insert_session(&session("s1", user.id, "aaaaaaaaaaaa", now))
            .unwrap();
        store
            .insert_execution("t1", "s1", user.id, "python", now)
            .unwrap();
        user.id
    };
    let store = Store::open(&path).unwrap();
    let user = store.user_by_key_hash(b"h1").unwrap().unwrap();
    assert_eq!(user.id, user_id);
    assert_eq!(user.email, "a@example.com");
    let s = store.get_user_session(user_id, "s1").unwrap().unwrap();
    assert_eq!(s.metadata["env"], "prod");
    assert_eq!(s.created_at.timestamp_millis(), now.timestamp_millis());
    assert_eq!(store.fail_pending_executions("restart", now).unwrap(), 1);
    let t = store.get_user_execution(user_id, "t1").unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    assert_eq!(t.error.as_deref(), Some("restart"));
}

#[test]
fn duplicate_email_is_a_conflict_and_case_insensitive() {
    let store = Store::open_in_memory().unwrap();
    let now = Utc::now();
    store
        .create_user("A@Example.com", None, false, now)
        .unwrap();
    let err = store
        .create_user_with_key("a@example.com", None, &key(b"h"), now)
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // The failed transaction left no key behind.
    assert!(store.user_by_key_hash(b"h").unwrap().is_none());
}

#[test]
fn sessions_belong_to_their_user() {
    let store = Store::open_in_memory().unwrap();
    let now = Utc::now();
    let a = store.create_user("a@x.io", None, false, now).unwrap();
    let b = store.create_user("b@x.io", None, false, now).unwrap();
    store
        .insert_session(&session("s1", a.id, "aaaaaaaaaaaa", now))
        .unwrap();
    assert!(store.get_user_session(b.id, "s1").unwrap().is_none());
    assert!(store.get_user_session(a.id, "s1").unwrap().is_some());
    assert!(store
        .list_user_sessions(b.id, 100, |_| true)
        .unwrap()
        .is_empty());
}

#[test]
fn ending_a_session_records_the_first_reason_only() {
    let store = Store::open_in_memory().unwrap();
    let now = Utc::now();
    let a = store.create_user("a@x.io", None, false, now).unwrap();
    store
        .insert_session(&session("s1", a.id, "aaaaaaaaaaaa", now))
        .unwrap();
    assert_eq!(store.count_active_sessions(a.id).unwrap(), 1);
    assert!(store
        .active_session_by_sandbox("aaaaaaaaaaaa")
        .unwrap()
        .is_some());
    assert!(store
        .end_session("s1", SessionState::Terminated, "killed", now)
        .unwrap());
    assert!(!store
        .end_session("s1", SessionState::Expired, "expired", now)
        .unwrap());
    let s = store.get_session("s1").unwrap().unwrap();
    assert_eq!(s.status, SessionState::Terminated);
    assert_eq!(s.end_reason.as_deref(), Some("killed"));
    assert_eq!(store.count_active_sessions(a.id).unwrap(), 0);
    assert!(store.active_sessions().unwrap().is_empty());
}

#[test]
fn listing_is_newest_first_filtered_and_limited() {
    let store = Store::open_in_memory().unwrap();
    let now = Utc::now();
    let a = store.create_user("a@x.io", None, false, now).unwrap();
    for i in 0..5 {
        let mut s = session(
            &format!("s{i}"),
            a.id,
            "aaaaaaaaaaaa",
            now + Duration::seconds(i),
        );
        if i % 2 == 0 {
            s.metadata.insert("even".into(), true.into());
        }
        store.insert_session(&s).unwrap();
    }
    let ids = |v: Vec<SessionRecord>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_user_sessions(a.id, 2, |_| true).unwrap()),
        ["s4", "s3"]
    );
    assert_eq!(
        ids(store
            .list_user_sessions(a.id, 100, |s| s.metadata.contains_key("even"))
            .unwrap()),
        ["s4", "s2", "s0"]
    );
}

#[test]
fn usage_counters_accumulate() {
    let store = Store::open_in_memory().unwrap();
    let now = Utc::now();
    let a = store.create_user("a@x.io", None, false, now).unwrap();
    store
        .insert_session(&session("s1", a.id, "aaaaaaaaaaaa", now))
        .unwrap();
    let d = UsageCounters {
        execution_count: 2,
        execution_seconds: 1.5,
        cpu_seconds: 0.5,
    };
    store
        .add_session_usage(&[("s1".into(), d), ("s1".into(), d)])
        .unwrap();
    let s = store.get_session("s1").unwrap().unwrap();
    assert_eq!(s.usage.execution_count, 4);
    assert!((s.usage.execution_seconds - 3.0).abs() < 1e-9);
}

#[test]
fn api_keys_update_revoke_and_delete() {
    let store = Store::open_in_memory().unwrap();
    let now = Utc::now();
    let a = store.create_user("a@x.io", None, false, now).unwrap();
    let b = store.create_user("b@x.io", None, false, now).unwrap();
    let k = store.create_api_key(a.id, &key(b"k1"), now).unwrap();
    assert!(store
        .update_api_key(b.id, k.id, Some("x"), None)
        .unwrap()
        .is_none());
    let k2 = store
        .update_api_key(a.id, k.id, Some("renamed"), Some(false))
        .unwrap()
        .unwrap();
    assert_eq!(k2.description.as_deref(), Some("renamed"));
    assert!(!k2.is_active);
    assert!(store.user_by_key_hash(b"k1").unwrap().is_none());
    assert!(!store.delete_api_key(b.id, k.id).unwrap());
    assert!(store.delete_api_key(a.id, k.id).unwrap());
    assert!(store.list_api_keys(a.id).unwrap().is_empty());
}

#[test]
fn ssh_key_duplicates_conflict_per_user() {
    let store = Store::open_in_memory().unwrap();
    let now = Utc::now();
    let a = store.create_user("a@x.io", None, false, now).unwrap();
    let b = store.create_user("b@x.io", None, false, now).unwrap();
    let k = NewSshKey {
        key_type: "ssh-ed25519",
        public_key: "ssh-ed25519 AAAA",
        fingerprint: "SHA256:x",
        comment: None,
    };
    store.add_ssh_key(a.id, &k, now).unwrap();
    assert!(matches!(
        store.add_ssh_key(a.id, &k, now),
        Err(StoreError::Conflict(_))
    ));
    store.add_ssh_key(b.id, &k, now).unwrap();
    assert_eq!(store.list_ssh_keys(a.id).unwrap().len(), 1);
}
