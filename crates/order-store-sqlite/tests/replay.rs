//! The DLQ replay service on real SQLite stores: what a replay claim held by
//! another instance does, and that a sequence is published in order.

use std::sync::Arc;

use order_core::app::{AppError, Auditor, DlqService, Metrics, Principal, RetryPolicy};
use order_core::domain::now;
use order_core::ports::{DlqStatus, DlqStore, EventBus, ReplayClaim};
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
        RetryPolicy::default(),
        "order-events".into(),
        Arc::new(Metrics::default()),
        Auditor::new(w.store.clone()),
    )
}

async fn published(bus: &EmbeddedBus) -> usize {
    copies(bus).await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_claimed_by_another_instance_is_not_published_twice() {
    let w = world();
    let rec = dlq_record("agg-1", 1, None, at(0));
    w.store
        .insert_new(std::slice::from_ref(&rec))
        .await
        .expect("insert");
    let t = now();
    let claim = ReplayClaim {
        event_id: &rec.event_id,
        claimant: "other-instance",
        now: t,
        until: t + chrono::TimeDelta::seconds(60),
    };
    assert!(w.store.claim_replay(claim).await.expect("claim"));

    let err = service(&w)
        .replay(&Principal::system(), &rec.event_id)
        .await
        .expect_err("claimed elsewhere");
    assert!(matches!(err, AppError::Conflict(_)), "{err:?}");
    assert_eq!(published(&w.bus).await, 0);

    w.store
        .release_replay(&rec.event_id, "other-instance")
        .await
        .expect("release");
    let done = service(&w)
        .replay(&Principal::system(), &rec.event_id)
        .await
        .expect("replay");
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
        .insert_new(&[head.clone(), second.clone(), third.clone()])
        .await
        .expect("insert");
    let done = service(&w)
        .replay(&Principal::system(), &head.event_id)
        .await
        .expect("replay");
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

/// Copies of each event id on `order-events`, in bus order.
async fn copies(bus: &EmbeddedBus) -> Vec<String> {
    let mut sub = bus
        .subscribe(&uuid::Uuid::now_v7().to_string(), "order-events")
        .await
        .expect("subscribe");
    sub.poll(1000, std::time::Duration::from_millis(50))
        .await
        .expect("poll")
        .iter()
        .filter_map(|d| d.header("eventId").map(str::to_owned))
        .collect()
}

fn landed(event_id: &str) -> order_core::ports::BusMessage {
    order_core::ports::BusMessage {
        topic: "order-events".into(),
        key: "agg-1".into(),
        payload: b"{}".to_vec(),
        headers: vec![("eventId".into(), event_id.into())],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_an_unanswered_attempt_delivered_is_not_replayed_twice() {
    let w = world();
    let head = dlq_record("agg-1", 1, None, at(0));
    let second = dlq_record("agg-1", 2, Some(&head.event_id), at(1));
    w.store
        .insert_new(&[head.clone(), second.clone()])
        .await
        .expect("insert");
    // The attempt that timed out reached the broker after all.
    let late = w.bus.publish(&[landed(&head.event_id)]).await;
    assert!(late.iter().all(Result::is_ok));

    let done = service(&w)
        .replay(&Principal::system(), &head.event_id)
        .await
        .expect("replay");
    assert_eq!(done.status, DlqStatus::Replayed);
    assert_eq!(done.published, 1, "only the held event was sent: {done:?}");
    assert!(
        done.message.contains("already on the bus"),
        "{}",
        done.message
    );
    assert_eq!(copies(&w.bus).await, [head.event_id, second.event_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_side_record_is_redelivered_although_it_is_on_the_topic() {
    let w = world();
    let rec = order_core::testkit::fixtures::consumer_dlq_record("agg-1", at(0));
    w.store
        .insert_new(std::slice::from_ref(&rec))
        .await
        .expect("insert");
    let original = w.bus.publish(&[landed(&rec.event_id)]).await;
    assert!(original.iter().all(Result::is_ok));

    let done = service(&w)
        .replay(&Principal::system(), &rec.event_id)
        .await
        .expect("replay");
    assert_eq!((done.status, done.published), (DlqStatus::Replayed, 1));
    assert_eq!(copies(&w.bus).await, [rec.event_id.clone(), rec.event_id]);
}

/// A real bus whose first publish is appended but answered with a timeout,
/// as when the broker processes a request after the client gave up on it.
struct LateAnswer {
    inner: Arc<EmbeddedBus>,
    answered: std::sync::atomic::AtomicBool,
    publishes: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl EventBus for LateAnswer {
    async fn publish(
        &self,
        messages: &[order_core::ports::BusMessage],
    ) -> Vec<Result<(), order_core::ports::PublishError>> {
        use std::sync::atomic::Ordering;
        self.publishes.fetch_add(1, Ordering::SeqCst);
        let results = self.inner.publish(messages).await;
        if self.answered.swap(true, Ordering::SeqCst) {
            return results;
        }
        results
            .into_iter()
            .map(|_| {
                Err(order_core::ports::PublishError::Retryable(
                    "Local: Message timed out".into(),
                ))
            })
            .collect()
    }
    async fn check(
        &self,
        timeout: std::time::Duration,
    ) -> Result<String, order_core::ports::BusError> {
        self.inner.check(timeout).await
    }
    async fn find_published(
        &self,
        messages: &[order_core::ports::BusMessage],
    ) -> Result<std::collections::HashSet<String>, order_core::ports::BusError> {
        self.inner.find_published(messages).await
    }
    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Box<dyn order_core::ports::Subscription>, order_core::ports::BusError> {
        self.inner.subscribe(group, topic).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_an_unanswered_attempt_does_not_send_twice() {
    use order_core::app::relay::{Publisher, Sent};
    let w = world();
    let bus = LateAnswer {
        inner: w.bus.clone(),
        answered: false.into(),
        publishes: 0.into(),
    };
    let policy = RetryPolicy {
        max_attempts: 3,
        backoff: std::time::Duration::from_millis(10),
    };
    let metrics = Metrics::default();
    let msgs = [landed("e-1"), landed("e-2")];
    let publisher = Publisher {
        bus: &bus,
        policy,
        metrics: &metrics,
    };
    let results = publisher.send(&msgs).await;
    assert_eq!(results, [Ok(Sent::Earlier), Ok(Sent::Earlier)]);
    assert_eq!(copies(&w.bus).await, ["e-1", "e-2"], "one copy each");
    assert_eq!(
        bus.publishes.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "nothing sent again"
    );
    assert_eq!(
        metrics
            .publish_found_earlier
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_audited_under_the_principal_that_asked() {
    use order_core::app::{BulkReplayRequest, Role};
    use order_core::ports::{AuditAction, AuditFilter, AuditLog, AuditQuery, PageRequest};

    let w = world();
    let head = dlq_record("agg-1", 1, None, at(0));
    let held = dlq_record("agg-1", 2, Some(&head.event_id), at(1));
    w.store
        .insert_new(&[head.clone(), held.clone()])
        .await
        .expect("insert");
    let svc = service(&w);
    let alice = Principal::new("alice-key", Role::Operator);
    let bob = Principal::new("bob-token", Role::Admin);

    let skipped = svc
        .skip(&alice, &head.event_id, " poison ")
        .await
        .expect("skip");
    assert_eq!(skipped.new_head.as_deref(), Some(held.event_id.as_str()));
    assert_eq!(skipped.reason, "poison", "trimmed");
    let err = svc
        .skip(&alice, &head.event_id, "again")
        .await
        .expect_err("already skipped");
    assert!(matches!(err, AppError::Conflict(_)), "{err:?}");
    let err = svc
        .skip(&bob, &held.event_id, "  ")
        .await
        .expect_err("blank");
    assert!(matches!(err, AppError::BadRequest(_)), "{err:?}");
    svc.replay_bulk(
        &bob,
        &BulkReplayRequest {
            limit: 10,
            dry_run: true,
            ..BulkReplayRequest::default()
        },
    )
    .await
    .expect("dry run");
    let err = svc.reset(&bob, "unknown").await.expect_err("unknown");
    assert!(matches!(err, AppError::NotFound(_)), "{err:?}");

    let all = AuditQuery {
        filter: AuditFilter::default(),
        page: PageRequest { page: 0, size: 10 }.into(),
    };
    let page = AuditLog::list(w.store.as_ref(), &all).await.expect("audit");
    let got: Vec<(&str, &str, AuditAction, Option<&str>, &str)> = page
        .content
        .iter()
        .rev()
        .map(|e| {
            (
                e.entry.principal.as_str(),
                e.entry.role.as_str(),
                e.entry.action,
                e.entry.target.as_deref(),
                e.entry.result.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "alice-key",
                "operator",
                AuditAction::DlqSkip,
                Some(head.event_id.as_str()),
                "SKIPPED"
            ),
            (
                "alice-key",
                "operator",
                AuditAction::DlqSkip,
                Some(head.event_id.as_str()),
                "409"
            ),
            (
                "bob-token",
                "admin",
                AuditAction::DlqSkip,
                Some(held.event_id.as_str()),
                "400"
            ),
            (
                "bob-token",
                "admin",
                AuditAction::DlqBulkReplay,
                None,
                "DRY_RUN: 1 matched"
            ),
            (
                "bob-token",
                "admin",
                AuditAction::DlqReset,
                Some("unknown"),
                "404"
            ),
        ]
    );
    assert_eq!(page.content[4].entry.parameters["reason"], " poison ");
    let alice = AuditFilter {
        principal: Some("alice-key".into()),
        ..AuditFilter::default()
    };
    let only_alice = AuditLog::list(
        w.store.as_ref(),
        &AuditQuery {
            filter: alice,
            ..all
        },
    )
    .await
    .expect("audit");
    assert_eq!(only_alice.total_elements, 2);
}
