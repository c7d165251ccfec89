//! Audit events come from triggers: every change writes its event in the same transaction, with
//! the actor of the store call.

use crate::tests::{key, session};
use crate::*;

fn types(store: &Store, filter: &EventFilter) -> Vec<String> {
    let mut t: Vec<String> = store
        .list_events(filter, 200)
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    t.reverse();
    t
}

#[test]
fn changes_write_events_with_their_actor_newest_first() {
    let store = Store::open_in_memory().unwrap();
    let now = Utc::now();
    let actor = Actor {
        kind: "user",
        id: Some("7".into()),
        request_id: Some("req-1".into()),
    };
    let (user, api_key) = with_actor(Some(actor.clone()), || {
        store
            .create_user_with_key("a@example.com", None, &key(b"h1"), now)
            .unwrap()
    });
    store
        .insert_session(&session("s1", user.id, "aaaaaaaaaaaa", now))
        .unwrap();
    store
        .end_session("s1", SessionState::Expired, "lifetime ended", now)
        .unwrap();
    store
        .update_api_key(user.id, api_key.id, None, Some(false))
        .unwrap();
    let mine = EventFilter {
        user_id: Some(user.id),
        ..Default::default()
    };
    assert_eq!(
        types(&store, &mine),
        [
            "user.created",
            "api_key.created",
            "session.started",
            "vm.created",
            "session.expired",
            "vm.terminated",
            "api_key.revoked"
        ]
    );
    let events = store.list_events(&mine, 200).unwrap();
    let first = events.last().unwrap();
    assert_eq!(
        (first.actor_type.as_str(), first.actor_id.as_deref()),
        ("user", Some("7"))
    );
    assert_eq!(first.request_id.as_deref(), Some("req-1"));
    assert_eq!(first.payload["email"], "a@example.com");
    // Outside `with_actor` the server acts on its own.
    assert_eq!(events[0].actor_type, "system");
    let ended = events
        .iter()
        .find(|e| e.event_type == "session.expired")
        .unwrap();
    assert_eq!(ended.session_id.as_deref(), Some("s1"));
    assert_eq!(ended.vm_id.as_deref(), Some("vm_s1"));
    assert_eq!(ended.payload["reason"], "lifetime ended");
    assert!(
        events.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first"
    );
    assert!(events.iter().all(|e| e.id.starts_with("evt_")));

    // Filters and paging.
    let vm = EventFilter {
        user_id: Some(user.id),
        event_group: Some("vm".into()),
        ..Default::default()
    };
    assert_eq!(types(&store, &vm), ["vm.created", "vm.terminated"]);
    let page = store.list_events(&mine, 3).unwrap();
    let older = EventFilter {
        before_seq: Some(page.last().unwrap().seq),
        ..mine.clone()
    };
    assert_eq!(
        store.list_events(&older, 200).unwrap().len(),
        events.len() - 3
    );
    assert_eq!(store.get_event(&first.id).unwrap().unwrap(), *first);
}

#[test]
fn a_failed_change_leaves_no_event() {
    let store = Store::open_in_memory().unwrap();
    let now = Utc::now();
    store
        .create_user_with_key("a@example.com", None, &key(b"h1"), now)
        .unwrap();
    let before = store
        .list_events(&EventFilter::default(), 200)
        .unwrap()
        .len();
    // A duplicate key rolls the whole transaction back, its events too.
    assert!(store
        .create_user_with_key("b@example.com", None, &key(b"h1"), now)
        .is_err());
    assert_eq!(
        store
            .list_events(&EventFilter::default(), 200)
            .unwrap()
            .len(),
        before
    );
}
