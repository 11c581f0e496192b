//! The conformance suite of [`QueueStore`]: every queue semantic, on every backend.
//!
//! ```text
//! tenancy_store::queue_conformance_suite!(queues_sqlite, tenancy_store_sql::testing::sqlite());
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use tenancy_audit::AuditEntry;
use tenancy_domain::page::PageRequest;
use tenancy_domain::queue::{MessageState, NewMessage, Queue, QueueSpec};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode};

use crate::queues::QueueStore;
use crate::store::*;

/// Generates one test per queue conformance case for a backend (see
/// [`crate::store_conformance_suite!`]).
#[macro_export]
macro_rules! queue_conformance_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            $crate::queue_conformance_suite!(@cases $make;
                queues_crud, visibility_timeout_redelivers, receive_counts_and_dead_letters, redrive,
                delay, dedup, group_ordering, group_fairness, depth, visibility_changes, concurrent_receivers,
                retention, wakeups, hooks_crud, groups_under_concurrency, attributes_and_peek);
        }
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let db = $make.await;
                let store: std::sync::Arc<dyn $crate::Store> = db.store.clone();
                $crate::queue_conformance::$case(store).await;
            }
        )*
    };
}

const T: Timestamp = Timestamp(1_000_000);

fn at(ms: i64) -> Timestamp {
    T.plus_millis(ms)
}

fn queue(name: &str, spec: serde_json::Value) -> Queue {
    serde_json::from_value::<QueueSpec>(spec).unwrap().into_queue(name, T).unwrap()
}

async fn make(store: &dyn QueueStore, name: &str, spec: serde_json::Value) {
    store.queue_put(&queue(name, spec), &Effects::none()).await.unwrap();
}

fn msg(body: serde_json::Value) -> NewMessage {
    NewMessage {
        id: tenancy_domain::ids::new_id("msg"),
        body: body.to_string(),
        delay_ms: None,
        group_id: None,
        dedup_id: None,
        attributes: Default::default(),
    }
}

fn grouped(body: serde_json::Value, group: &str) -> NewMessage {
    NewMessage { group_id: Some(group.into()), ..msg(body) }
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        id: tenancy_domain::ids::new_id("aud"),
        time: Timestamp::now(),
        actor_key_id: None,
        actor_role: "admin".into(),
        action: action.into(),
        target: "queue/q".into(),
        tenant_id: None,
        request_id: None,
        source_ip: None,
        outcome: "success".into(),
        detail: json!({}),
    }
}

async fn bodies(store: &dyn QueueStore, q: &str, max: u32, now: Timestamp) -> Vec<serde_json::Value> {
    store.message_receive(q, max, now).await.unwrap().messages.into_iter().map(|m| m.body).collect()
}

pub async fn queues_crud(store: Arc<dyn Store>) {
    let qs = store.queues();
    let fx = || Effects::none().with_audit(audit("queue.put"));
    let (q, created) = qs.queue_put(&queue("jobs", json!({"visibility_timeout_s": 30})), &fx()).await.unwrap();
    assert!(created);
    assert_eq!(q.visibility_timeout_s, 30);
    let (_, created) = qs.queue_put(&queue("jobs", json!({"visibility_timeout_s": 60})), &fx()).await.unwrap();
    assert!(!created);
    assert_eq!(qs.queue_get("jobs").await.unwrap().visibility_timeout_s, 60);
    let audits = store.audit_list(&AuditFilter::default(), &PageRequest { limit: 10, after: None }).await.unwrap();
    assert_eq!(audits.items.len(), 2, "each put commits its audit entry");

    let with_dlq =
        queue("work", json!({"visibility_timeout_s": 1, "max_receive_count": 3, "dead_letter_queue": "dlq"}));
    let err = qs.queue_put(&with_dlq, &Effects::none()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownQueue);
    make(&*qs, "dlq", json!({"visibility_timeout_s": 1})).await;
    qs.queue_put(&with_dlq, &Effects::none()).await.unwrap();
    let names: Vec<String> = qs
        .queue_list(&PageRequest { limit: 2, after: None })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["dlq", "jobs"]);
    let rest = qs.queue_list(&PageRequest { limit: 2, after: Some("jobs".into()) }).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_cursor, None);

    assert_eq!(qs.queue_delete("dlq", &Effects::none()).await.unwrap_err().code(), ErrorCode::QueueInUse);
    qs.message_send("work", &[msg(json!(1))], T).await.unwrap();
    qs.queue_delete("work", &Effects::none().with_audit(audit("queue.delete"))).await.unwrap();
    qs.queue_delete("dlq", &Effects::none()).await.unwrap();
    assert!(matches!(qs.queue_get("work").await, Err(Error::NotFound { .. })));
    assert!(matches!(qs.message_send("work", &[msg(json!(1))], T).await, Err(Error::NotFound { .. })));
    assert!(matches!(qs.message_receive("work", 1, T).await, Err(Error::NotFound { .. })));
    // A queue created again under the same name starts empty.
    make(&*qs, "work", json!({"visibility_timeout_s": 1})).await;
    assert!(bodies(&*qs, "work", 10, T).await.is_empty());
}

pub async fn visibility_timeout_redelivers(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 30})).await;
    qs.message_send("q", &[msg(json!({"n": 1}))], T).await.unwrap();
    let first = qs.message_receive("q", 10, at(1)).await.unwrap().messages;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].body.clone(), first[0].receive_count), (json!({"n": 1}), 1));
    assert!(bodies(&*qs, "q", 10, at(29_000)).await.is_empty(), "invisible while in flight");
    let second = qs.message_receive("q", 10, at(30_002)).await.unwrap().messages;
    assert_eq!(second.len(), 1, "the visibility timeout expired: received again");
    assert_eq!(second[0].receive_count, 2);
    assert_eq!(second[0].id, first[0].id);
    assert_ne!(second[0].receipt, first[0].receipt);
    let deleted = qs.message_delete("q", &[first[0].receipt.clone(), second[0].receipt.clone()]).await.unwrap();
    assert_eq!(deleted, [false, true], "the first receipt went stale with the second receive");
    assert!(bodies(&*qs, "q", 10, at(100_000)).await.is_empty());
    assert_eq!(qs.message_delete("q", &["nonsense".into()]).await.unwrap_err().code(), ErrorCode::InvalidReceipt);
}

pub async fn receive_counts_and_dead_letters(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "dlq", json!({"visibility_timeout_s": 10})).await;
    make(&*qs, "q", json!({"visibility_timeout_s": 1, "max_receive_count": 2, "dead_letter_queue": "dlq"})).await;
    qs.message_send("q", &[msg(json!("poison"))], T).await.unwrap();
    let r1 = qs.message_receive("q", 1, at(0)).await.unwrap().messages;
    assert_eq!((r1[0].body.clone(), r1[0].receive_count), (json!("poison"), 1));
    let r2 = qs.message_receive("q", 1, at(2_000)).await.unwrap().messages;
    assert_eq!((r2[0].body.clone(), r2[0].receive_count), (json!("poison"), 2));
    // The third receive of "poison" moves it to the DLQ and returns the next message.
    qs.message_send("q", &[msg(json!("fine"))], at(3_000)).await.unwrap();
    let r3 = qs.message_receive("q", 2, at(4_000)).await.unwrap();
    assert_eq!(r3.dead_lettered, 1);
    assert_eq!(r3.messages.iter().map(|m| m.body.clone()).collect::<Vec<_>>(), [json!("fine")]);
    let depth = qs.queue_depth("q", at(4_000)).await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.dead_lettered), (0, 1, 1));
    let dead = qs.message_receive("dlq", 10, at(4_001)).await.unwrap().messages;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, json!("poison"));
    assert_eq!(dead[0].source_queue.as_deref(), Some("q"));
    assert_eq!(dead[0].receive_count, 1, "the count starts again in the dead-letter queue");
}

pub async fn redrive(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "dlq", json!({"visibility_timeout_s": 10})).await;
    make(&*qs, "q", json!({"visibility_timeout_s": 1, "max_receive_count": 1, "dead_letter_queue": "dlq"})).await;
    qs.message_send("q", &[msg(json!("a")), msg(json!("b"))], T).await.unwrap();
    assert_eq!(bodies(&*qs, "q", 10, at(0)).await.len(), 2);
    assert_eq!(qs.message_receive("q", 10, at(2_000)).await.unwrap().dead_lettered, 2);
    // One is in flight in the DLQ (someone inspects it): the redrive leaves it.
    let inspected = qs.message_receive("dlq", 1, at(2_001)).await.unwrap().messages;
    assert_eq!(inspected.len(), 1);
    let fx = Effects::none().with_audit(audit("queue.redrive"));
    assert_eq!(qs.queue_redrive("dlq", at(2_002), &fx).await.unwrap(), 1);
    let back = qs.message_receive("q", 10, at(2_003)).await.unwrap().messages;
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].receive_count, back[0].source_queue.clone()), (1, None));
    assert_ne!(back[0].body, inspected[0].body);
    assert_eq!(qs.queue_depth("q", at(2_003)).await.unwrap().dead_lettered, 1);
    assert!(matches!(qs.queue_redrive("missing", T, &Effects::none()).await, Err(Error::NotFound { .. })));
}

pub async fn delay(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 30, "delay_s": 5})).await;
    let mut late = msg(json!("late"));
    late.delay_ms = Some(10_000);
    let mut now = msg(json!("now"));
    now.delay_ms = Some(0);
    qs.message_send("q", &[msg(json!("default")), late, now], T).await.unwrap();
    assert_eq!(bodies(&*qs, "q", 10, at(1)).await, [json!("now")]);
    let r = qs.message_receive("q", 10, at(2)).await.unwrap();
    assert_eq!(r.next_visible_at, Some(at(5_000)), "the long poll learns when to look again");
    assert_eq!(qs.queue_depth("q", at(2)).await.unwrap().delayed, 2);
    assert_eq!(bodies(&*qs, "q", 10, at(5_000)).await, [json!("default")]);
    assert!(bodies(&*qs, "q", 10, at(9_999)).await.is_empty());
    assert_eq!(bodies(&*qs, "q", 10, at(10_000)).await, [json!("late")]);
}

pub async fn dedup(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 30})).await;
    make(&*qs, "other", json!({"visibility_timeout_s": 30})).await;
    let with = |b: &str, d: &str| NewMessage { dedup_id: Some(d.into()), ..msg(json!(b)) };
    let first = qs.message_send("q", &[with("one", "d1")], T).await.unwrap();
    assert!(!first[0].deduplicated);
    // Again, and twice within one batch: accepted, not enqueued, the first id returned.
    let again = qs.message_send("q", &[with("two", "d1"), with("three", "d2"), with("four", "d2")], at(60_000)).await;
    let again = again.unwrap();
    assert_eq!((again[0].id.clone(), again[0].deduplicated), (first[0].id.clone(), true));
    assert!(!again[1].deduplicated);
    assert_eq!((again[2].id.clone(), again[2].deduplicated), (again[1].id.clone(), true));
    // Dedup ids are per queue.
    assert!(!qs.message_send("other", &[with("x", "d1")], T).await.unwrap()[0].deduplicated);
    assert_eq!(bodies(&*qs, "q", 10, at(60_001)).await, [json!("one"), json!("three")]);
    // After the window the same id enqueues again.
    let later = qs.message_send("q", &[with("five", "d1")], at(5 * 60_000 + 1)).await.unwrap();
    assert!(!later[0].deduplicated);
}

pub async fn group_ordering(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 30})).await;
    let batch: Vec<_> = (0..5).map(|i| grouped(json!(i), "g")).collect();
    qs.message_send("q", &batch, T).await.unwrap();
    for i in 0..5 {
        let got = qs.message_receive("q", 10, at(i * 10)).await.unwrap().messages;
        assert_eq!(got.len(), 1, "one message of a group at a time");
        assert_eq!(got[0].body, json!(i), "in order");
        assert!(bodies(&*qs, "q", 10, at(i * 10 + 1)).await.is_empty(), "the group is busy");
        if i == 2 {
            // Not deleted: it comes back after its timeout, still first.
            let again = qs.message_receive("q", 10, at(40_000)).await.unwrap().messages;
            assert_eq!((again[0].body.clone(), again[0].receive_count), (json!(2), 2));
            assert_eq!(qs.message_delete("q", &[again[0].receipt.clone()]).await.unwrap(), [true]);
        } else {
            assert_eq!(qs.message_delete("q", &[got[0].receipt.clone()]).await.unwrap(), [true]);
        }
    }
}

pub async fn group_fairness(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 30})).await;
    let backlog: Vec<_> = (0..50).map(|i| grouped(json!(format!("a{i}")), "tenant-a")).collect();
    qs.message_send("q", &backlog, T).await.unwrap();
    qs.message_send("q", &[grouped(json!("b0"), "tenant-b"), grouped(json!("c0"), "tenant-c")], at(1)).await.unwrap();
    qs.message_send("q", &[msg(json!("plain"))], at(2)).await.unwrap();
    let got = bodies(&*qs, "q", 10, at(3)).await;
    assert_eq!(got, [json!("a0"), json!("b0"), json!("c0"), json!("plain")], "one per group, oldest first");
}

pub async fn depth(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 30})).await;
    let empty = qs.queue_depth("q", T).await.unwrap();
    assert_eq!((empty.visible, empty.oldest_age_s), (0, 0));
    let mut delayed = msg(json!("d"));
    delayed.delay_ms = Some(60_000);
    qs.message_send("q", &[msg(json!(1)), msg(json!(2)), grouped(json!(3), "g"), delayed], T).await.unwrap();
    qs.message_receive("q", 1, at(1)).await.unwrap();
    let d = qs.queue_depth("q", at(7_000)).await.unwrap();
    assert_eq!((d.visible, d.in_flight, d.delayed, d.dead_lettered, d.oldest_age_s), (2, 1, 1, 0, 7));
}

pub async fn visibility_changes(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 30})).await;
    qs.message_send("q", &[msg(json!(1))], T).await.unwrap();
    let m = qs.message_receive("q", 1, T).await.unwrap().messages.remove(0);
    // Extended: still invisible after the original timeout.
    qs.message_visibility("q", &m.receipt, 120_000, at(10_000)).await.unwrap();
    assert!(bodies(&*qs, "q", 1, at(60_000)).await.is_empty());
    // Zero: visible at once.
    qs.message_visibility("q", &m.receipt, 0, at(61_000)).await.unwrap();
    let again = qs.message_receive("q", 1, at(61_000)).await.unwrap().messages;
    assert_eq!(again.len(), 1);
    let stale = qs.message_visibility("q", &m.receipt, 0, at(61_001)).await.unwrap_err();
    assert!(matches!(stale, Error::NotFound { .. }), "{stale:?}");
    assert!(matches!(qs.message_visibility("other", &again[0].receipt, 0, T).await, Err(Error::NotFound { .. })));
}

pub async fn concurrent_receivers(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 300})).await;
    let batch: Vec<_> = (0..300).map(|i| msg(json!(i))).collect();
    for chunk in batch.chunks(100) {
        qs.message_send("q", chunk, T).await.unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let qs = qs.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let r = qs.message_receive("q", 7, at(1)).await.unwrap();
                if r.messages.is_empty() {
                    return got;
                }
                got.extend(r.messages.into_iter().map(|m| m.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (300, 300), "every message received once");
}

pub async fn retention(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 1, "retention_s": 60})).await;
    qs.message_send("q", &[msg(json!("old"))], T).await.unwrap();
    qs.message_send("q", &[msg(json!("new"))], at(30_000)).await.unwrap();
    assert_eq!(bodies(&*qs, "q", 10, at(61_000)).await, [json!("new")], "expired messages are not received");
    assert_eq!(qs.queue_prune(at(61_000), 100).await.unwrap(), 1);
    assert_eq!(qs.queue_prune(at(61_000), 100).await.unwrap(), 0);
}

pub async fn wakeups(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 1})).await;
    let mut wake = qs.queue_wakeups("q");
    wake.borrow_and_update();
    qs.message_send("q", &[msg(json!(1))], T).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), wake.changed())
        .await
        .expect("a send wakes the queue's receivers")
        .unwrap();
}

pub async fn hooks_crud(store: Arc<dyn Store>) {
    use crate::hooks::{HookSecretWrite as W, HookSecrets};
    use tenancy_domain::hook::HookSpec;
    let hooks = store.hooks();
    let spec = |url: &str| -> HookSpec {
        serde_json::from_value(json!({"url": url, "events": ["provision", "offboard"]})).unwrap()
    };
    let h = spec("http://a/h").into_hook("billing", T).unwrap();
    let put =
        hooks.hook_put(&h, &W::IfNone("s1".into()), &Effects::none().with_audit(audit("hook.put"))).await.unwrap();
    assert!(put.created && put.secret_stored);
    assert_eq!(put.hook, h);
    let later = spec("http://b/h").into_hook("billing", at(5)).unwrap();
    let put = hooks.hook_put(&later, &W::IfNone("s2".into()), &Effects::none()).await.unwrap();
    assert!(!put.created && !put.secret_stored, "a replace keeps the secret");
    let stored = put.hook;
    assert_eq!((stored.url.as_deref(), stored.created_at, stored.updated_at), (Some("http://b/h"), T, at(5)));
    let secrets = hooks.hook_secrets("billing").await.unwrap();
    assert_eq!(secrets, HookSecrets { current: Some("s1".into()), previous: None, previous_expires_at: None });
    let rotate = W::Rotate { sealed: "s3".into(), previous_until: at(99) };
    assert!(hooks.hook_put(&later, &rotate, &Effects::none()).await.unwrap().secret_stored);
    let secrets = hooks.hook_secrets("billing").await.unwrap();
    assert_eq!(
        secrets,
        HookSecrets { current: Some("s3".into()), previous: Some("s1".into()), previous_expires_at: Some(at(99)) }
    );
    assert_eq!(hooks.hook_secret_init("billing", "s4").await.unwrap(), "s3", "an existing secret stays");
    let put =
        hooks.hook_put(&spec("http://c/h").into_hook("audit", T).unwrap(), &W::Keep, &Effects::none()).await.unwrap();
    assert!(!put.secret_stored);
    assert_eq!(hooks.hook_secrets("audit").await.unwrap(), HookSecrets::default());
    assert_eq!(hooks.hook_secret_init("audit", "first").await.unwrap(), "first");
    assert_eq!(hooks.hook_secret_init("audit", "second").await.unwrap(), "first", "the first stored wins");
    let names: Vec<String> = hooks.hook_list().await.unwrap().into_iter().map(|h| h.name).collect();
    assert_eq!(names, ["audit", "billing"]);
    hooks.hook_delete("audit", &Effects::none()).await.unwrap();
    assert!(matches!(hooks.hook_delete("audit", &Effects::none()).await, Err(Error::NotFound { .. })));
    assert!(matches!(hooks.hook_get("audit").await, Err(Error::NotFound { .. })));
    assert!(matches!(hooks.hook_secrets("audit").await, Err(Error::NotFound { .. })));
    assert!(matches!(hooks.hook_secret_init("audit", "x").await, Err(Error::NotFound { .. })));
    assert_eq!(hooks.hook_get("billing").await.unwrap().url.as_deref(), Some("http://b/h"));
}

pub async fn groups_under_concurrency(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "q", json!({"visibility_timeout_s": 300})).await;
    // Four producers send to one group at once, one message per transaction.
    let mut tasks = Vec::new();
    for p in 0..4 {
        let qs = qs.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                qs.message_send("q", &[grouped(json!([p, i]), "g")], T).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Concurrent receivers: at most one message of the group per receive, and each
    // producer's messages in the order it sent them.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (qs, seen) = (qs.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut idle = 0;
            while idle < 50 {
                let got = qs.message_receive("q", 10, at(1)).await.unwrap().messages;
                assert!(got.len() <= 1, "one message of a group at a time: {got:?}");
                let Some(m) = got.into_iter().next() else {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                };
                idle = 0;
                seen.lock().unwrap().push(m.body.clone());
                assert_eq!(qs.message_delete("q", &[m.receipt]).await.unwrap(), [true]);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 60);
    for p in 0..4 {
        let mine: Vec<i64> = seen.iter().filter(|b| b[0] == p).map(|b| b[1].as_i64().unwrap()).collect();
        assert_eq!(mine, (0..15).collect::<Vec<_>>(), "producer {p} in order");
    }
}

/// Attributes come back with a receive, a peek and after a dead-lettering and redrive;
/// a peek shows every message in send order with its state and changes nothing.
pub async fn attributes_and_peek(store: Arc<dyn Store>) {
    let qs = store.queues();
    make(&*qs, "dlq", json!({"visibility_timeout_s": 1})).await;
    make(&*qs, "q", json!({"visibility_timeout_s": 10, "max_receive_count": 1, "dead_letter_queue": "dlq"})).await;
    let attrs: std::collections::BTreeMap<String, String> =
        [("traceparent".to_owned(), "00-abc".to_owned()), ("kind".to_owned(), "é ü".to_owned())].into();
    let first = NewMessage { attributes: attrs.clone(), ..msg(json!(1)) };
    let delayed = NewMessage { delay_ms: Some(60_000), ..msg(json!(3)) };
    qs.message_send("q", &[first, msg(json!(2)), delayed], T).await.unwrap();
    assert!(qs.message_peek("q", 10, T).await.unwrap().iter().all(|m| m.receive_count == 0));
    let got = qs.message_receive("q", 1, at(1)).await.unwrap().messages;
    assert_eq!((got[0].body.clone(), got[0].attributes.clone()), (json!(1), attrs.clone()));

    let peeked = qs.message_peek("q", 10, at(2)).await.unwrap();
    let seen: Vec<_> = peeked.iter().map(|m| (m.body.clone(), m.state, m.receive_count)).collect();
    assert_eq!(
        seen,
        [
            (json!(1), MessageState::InFlight, 1),
            (json!(2), MessageState::Visible, 0),
            (json!(3), MessageState::Delayed, 0)
        ]
    );
    assert_eq!(peeked[0].attributes, attrs);
    assert!(peeked[1].attributes.is_empty());
    assert_eq!(qs.message_peek("q", 1, at(2)).await.unwrap().len(), 1, "the limit");
    // Peeking twice received nothing: the visible message is still there to receive.
    qs.message_peek("q", 10, at(3)).await.unwrap();
    assert_eq!(bodies(&*qs, "q", 10, at(3)).await, [json!(2)]);

    // Past its visibility timeout the first message goes to the dead-letter queue with
    // its attributes; a peek there shows where it came from; a redrive keeps them.
    let r = qs.message_receive("q", 10, at(20_000)).await.unwrap();
    assert!(r.dead_lettered >= 1);
    let dead = qs.message_peek("dlq", 10, at(20_001)).await.unwrap();
    let first = dead.iter().find(|m| m.body == json!(1)).expect("dead-lettered");
    assert_eq!((first.source_queue.as_deref(), &first.attributes), (Some("q"), &attrs));
    qs.queue_redrive("dlq", at(20_002), &Effects::none()).await.unwrap();
    let again = qs.message_receive("q", 10, at(20_003)).await.unwrap().messages;
    let first = again.iter().find(|m| m.body == json!(1)).expect("redriven");
    assert_eq!(first.attributes, attrs);
    assert!(matches!(qs.message_peek("nope", 10, T).await, Err(Error::NotFound { .. })));
}
