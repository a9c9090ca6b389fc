//! The DLQ replay service on real SQLite stores: what a replay claim held by
//! another instance does, and that a sequence is published in order.

use std::sync::Arc;

use order_core::app::{AppError, DlqService, Metrics, PublishGate, RetryPolicy};
use order_core::domain::now;
use order_core::ports::{DlqStatus, DlqStore, EventBus};
use order_core::testkit::fixtures::{at, dlq_record};
use order_store_sqlite::{EmbeddedBus, SqliteStore};

struct World {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    bus: Arc<EmbeddedBus>,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path().join("orders.db")).expect("store"));
    let bus = Arc::new(EmbeddedBus::open(dir.path().join("bus.db")).expect("bus"));
    World {
        _dir: dir,
        store,
        bus,
    }
}

fn service(w: &World) -> DlqService {
    DlqService::new(
        w.store.clone(),
        w.bus.clone(),
        PublishGate::default(),
        RetryPolicy::default(),
        "order-events".into(),
        Arc::new(Metrics::default()),
    )
}

async fn published(bus: &EmbeddedBus) -> usize {
    let mut sub = bus
        .subscribe("checker", "order-events")
        .await
        .expect("subscribe");
    sub.poll(1000, std::time::Duration::from_millis(50))
        .await
        .expect("poll")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_claimed_by_another_instance_is_not_published_twice() {
    let w = world();
    let rec = dlq_record("agg-1", 1, None, at(0));
    w.store
        .insert(std::slice::from_ref(&rec))
        .await
        .expect("insert");
    let t = now();
    assert!(w
        .store
        .claim_replay(
            &rec.event_id,
            "other-instance",
            t,
            t + chrono::TimeDelta::seconds(60)
        )
        .await
        .expect("claim"));

    let err = service(&w)
        .replay(&rec.event_id)
        .await
        .expect_err("claimed elsewhere");
    assert!(matches!(err, AppError::Conflict(_)), "{err:?}");
    assert_eq!(published(&w.bus).await, 0);

    w.store
        .release_replay(&rec.event_id, "other-instance")
        .await
        .expect("release");
    let done = service(&w).replay(&rec.event_id).await.expect("replay");
    assert_eq!(done.status, DlqStatus::Replayed);
    assert_eq!(published(&w.bus).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_head_publishes_its_whole_sequence_in_order() {
    let w = world();
    let head = dlq_record("agg-1", 1, None, at(0));
    let second = dlq_record("agg-1", 2, Some(&head.event_id), at(1));
    let third = dlq_record("agg-1", 3, Some(&head.event_id), at(2));
    w.store
        .insert(&[head.clone(), second.clone(), third.clone()])
        .await
        .expect("insert");
    let done = service(&w).replay(&head.event_id).await.expect("replay");
    assert_eq!((done.status, done.published), (DlqStatus::Replayed, 3));
    for r in [&head, &second, &third] {
        let stored = w
            .store
            .get(&r.event_id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(stored.status, DlqStatus::Replayed);
    }
    let mut sub = w
        .bus
        .subscribe("order", "order-events")
        .await
        .expect("subscribe");
    let keys: Vec<String> = sub
        .poll(10, std::time::Duration::from_millis(50))
        .await
        .expect("poll")
        .iter()
        .filter_map(|d| d.header("eventId").map(str::to_owned))
        .collect();
    assert_eq!(keys, [head.event_id, second.event_id, third.event_id]);
}
