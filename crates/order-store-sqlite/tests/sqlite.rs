//! SQLite-specific behaviour the shared contract suites cannot see: stored
//! v1 events, schema migrations, error translation, durability on reopen.

use std::sync::Arc;
use std::time::Duration;

use order_core::ports::{
    CommitError, EventBus, EventStore, Outbox, OutboxFetch, ReadModel, StoreError, StreamBound,
    ALL_BUCKETS,
};
use order_core::testkit::fixtures::{at, create, message, poll_n};
use order_core::testkit::legacy::{assert_v1_order_created_upcast, v1_order_created_data};
use order_store_sqlite::{EmbeddedBus, SqliteReadModel, SqliteStore};
use uuid::Uuid;

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[tokio::test]
async fn a_stored_v1_order_created_is_upcast_with_exact_decimals() {
    let dir = temp_dir();
    let path = dir.path().join("orders.db");
    let store = SqliteStore::open(&path).expect("open");
    let id = Uuid::now_v7();
    let raw = rusqlite::Connection::open(&path).expect("raw connection");
    raw.execute(
        "INSERT INTO event_store (event_id, aggregate_id, aggregate_type, event_type, event_data, \
         version, schema_version, occurred_on) \
         VALUES (?1, ?2, 'Order', 'OrderCreated', ?3, 1, 1, '2019-03-01T12:00:00.250000Z')",
        rusqlite::params![
            Uuid::now_v7().to_string(),
            id.to_string(),
            v1_order_created_data(id)
        ],
    )
    .expect("insert v1 event");
    assert_v1_order_created_upcast(&store, id).await;
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_reapply_migrations() {
    let dir = temp_dir();
    let path = dir.path().join("nested/dirs/orders.db");
    let c = create("cust-1", "rest-1", at(0));
    {
        let store = SqliteStore::open(&path).expect("open creates directories");
        store.commit_batch(vec![c.clone()]).await.expect("commit")[0]
            .clone()
            .expect("committed");
    }
    order_store_sqlite::migrate(&path).expect("migrate is idempotent");
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        store.load_order(c.state.id).await.expect("load"),
        Some(c.state.clone())
    );
    assert_eq!(store.stats().await.expect("stats").pending, 1);
    let raw = rusqlite::Connection::open(&path).expect("raw");
    let applied: i64 = raw
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .expect("schema_migrations");
    assert_eq!(applied, 9, "every migration recorded once");
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join("orders.db");
    SqliteStore::migrate(&path).expect("migrate");
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')",
        [],
    )
    .expect("insert");
    drop(raw);
    match SqliteStore::open(&path) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("999"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn undecodable_rows_are_corrupt() {
    let dir = temp_dir();
    let path = dir.path().join("orders.db");
    let store = SqliteStore::open(&path).expect("open");
    let c = create("cust-1", "rest-1", at(0));
    store.commit_batch(vec![c.clone()]).await.expect("commit")[0]
        .clone()
        .expect("committed");
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute_batch(
        "UPDATE event_store SET event_data = 'not json';
         UPDATE orders SET total_amount = 'lots';
         UPDATE outbox SET payload = '{}';",
    )
    .expect("tamper");
    let id = c.state.id;
    assert!(matches!(
        store.load_stream(&id.to_string(), StreamBound::All).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.load_order(id).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store
            .fetch_batch(OutboxFetch {
                buckets: &[ALL_BUCKETS],
                limit: 10,
            })
            .await,
        Err(StoreError::Corrupt(_))
    ));
}

/// Outbox rows written before migration 0006 had no bucket: the store
/// gives them their order's bucket when it is opened.
#[tokio::test]
async fn outbox_rows_from_before_buckets_get_theirs_at_open() {
    let dir = temp_dir();
    let path = dir.path().join("orders.db");
    let store = SqliteStore::open(&path).expect("open");
    let c = create("cust-1", "rest-1", at(0));
    store
        .commit_batch(vec![c.clone()])
        .await
        .expect("commit")
        .remove(0)
        .expect("committed");
    drop(store);
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute_batch("UPDATE outbox SET bucket = -1")
        .expect("downgrade");
    drop(raw);
    let store = SqliteStore::open(&path).expect("reopen");
    order_core::testkit::outbox::assert_the_row_is_in_its_bucket(&store, &c.state.id.to_string())
        .await;
}

#[tokio::test]
async fn a_locked_database_is_unavailable_and_fails_the_whole_batch() {
    let dir = temp_dir();
    let path = dir.path().join("orders.db");
    let store = SqliteStore::open(&path).expect("open");
    // Another process holds the write lock longer than the busy timeout.
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let c = create("cust-1", "rest-1", at(0));
    let started = std::time::Instant::now();
    let r = store.commit_batch(vec![c.clone()]).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for the lock"
    );
    raw.execute_batch("ROLLBACK").expect("unlock");
    let r = store.commit_batch(vec![c.clone()]).await.expect("batch");
    assert!(r[0].is_ok());
}

#[tokio::test]
async fn a_malformed_commit_is_rejected_alone() {
    let dir = temp_dir();
    let store = SqliteStore::open(dir.path().join("orders.db")).expect("open");
    let good = create("cust-1", "rest-1", at(0));
    let mut bad = create("cust-2", "rest-1", at(1));
    bad.events[0].version = 5;
    let r = store
        .commit_batch(vec![bad.clone(), good.clone()])
        .await
        .expect("batch");
    assert!(
        matches!(r[0], Err(CommitError::Store(StoreError::Corrupt(_)))),
        "{:?}",
        r[0]
    );
    assert!(r[1].is_ok());
    assert_eq!(store.load_order(bad.state.id).await.expect("load"), None);
}

#[tokio::test]
async fn bus_messages_survive_a_reopen_and_offsets_are_kept() {
    let dir = temp_dir();
    let path = dir.path().join("bus.db");
    {
        let bus = EmbeddedBus::open(&path).expect("open");
        let r = bus
            .publish(&[message("t", "k", 0), message("t", "k", 1)])
            .await;
        assert!(r.iter().all(Result::is_ok));
        let mut sub = bus.subscribe("g", "t").await.expect("subscribe");
        let got = poll_n(&mut sub, 2).await;
        sub.commit(&got[0]).await.expect("commit");
        assert_eq!(
            bus.check(Duration::from_secs(1)).await.expect("check"),
            format!("embedded bus at {}", path.display())
        );
    }
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&path).expect("reopen"));
    let mut sub = bus.subscribe("g", "t").await.expect("subscribe");
    let got = poll_n(&mut sub, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, message("t", "k", 1).payload);
    assert_eq!(got[0].partition, 0);
}

#[tokio::test]
async fn the_read_model_lives_in_its_own_file() {
    let dir = temp_dir();
    let rm = SqliteReadModel::open(dir.path().join("rm/read.db")).expect("open");
    assert_eq!(rm.count().await.expect("count"), 0);
    assert!(dir.path().join("rm/read.db").exists());
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes() {
    use order_core::ports::{
        AuditAction, AuditFilter, AuditLog, AuditQuery, NewAuditEntry, PageRequest,
    };
    let dir = temp_dir();
    let path = dir.path().join("orders.db");
    let store = SqliteStore::open(&path).expect("open");
    let entry = store
        .append(&NewAuditEntry {
            principal: "ops".into(),
            role: "admin".into(),
            action: AuditAction::DlqSkip,
            target: Some("evt-1".into()),
            parameters: serde_json::json!({ "reason": "r" }),
            result: "SKIPPED".into(),
            at: at(0),
        })
        .await
        .expect("append");
    let raw = rusqlite::Connection::open(&path).expect("raw");
    let update = raw.execute("UPDATE audit_log SET result = 'REPLAYED'", []);
    assert!(update.is_err(), "an update is refused");
    let delete = raw.execute("DELETE FROM audit_log", []);
    assert!(delete.is_err(), "a delete is refused");
    let page = store
        .list(&AuditQuery {
            filter: AuditFilter::default(),
            page: PageRequest { page: 0, size: 10 }.into(),
        })
        .await
        .expect("list");
    assert_eq!(page.content, [entry]);
}

/// Migration 0005 classifies the records stored before it from their text,
/// once: the first of the marks `retryable: ` / `permanent: ` a reason
/// quotes is its error's; consumer-side records and held records without an
/// error of their own get no class.
#[tokio::test]
async fn records_stored_before_the_failure_class_column_are_classified_from_their_text() {
    use order_core::ports::{DlqStore, FailureClass};
    let dir = temp_dir();
    let path = dir.path().join("orders.db");
    drop(SqliteStore::open(&path).expect("open"));
    // Back to the schema before migration 5, with rows as it stored them.
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute_batch(
        "DELETE FROM schema_migrations WHERE version >= 5;
         DROP TABLE dlq_revisions;
         DROP INDEX idx_dlq_customer;
         DROP INDEX idx_dlq_event_type;
         ALTER TABLE dlq_replay_records DROP COLUMN consumer_group;
         ALTER TABLE dlq_replay_records DROP COLUMN customer_id;
         ALTER TABLE dlq_replay_records DROP COLUMN imported_at;
         ALTER TABLE dlq_replay_records DROP COLUMN imported_by;
         DROP TABLE dlq_counters;
         DROP TRIGGER dlq_counters_insert;
         DROP TRIGGER dlq_counters_update;
         DROP TRIGGER dlq_counters_delete;
         DROP INDEX idx_dlq_heads;
         ALTER TABLE dlq_replay_records DROP COLUMN head_since;
         DROP TABLE relay_partitions;
         DROP TABLE relay_instances;
         ALTER TABLE outbox DROP COLUMN bucket;
         ALTER TABLE dlq_replay_records DROP COLUMN failure_class;
         ALTER TABLE dlq_replay_records DROP COLUMN replay_failure_class;",
    )
    .expect("downgrade");
    let rows = [
        (
            "r",
            "PUBLISH",
            "PENDING",
            "publish failed after retries: retryable: broker down",
            None,
        ),
        (
            "p",
            "PUBLISH",
            "PENDING",
            "publish failed after retries: permanent: too large (retryable: no)",
            None,
        ),
        (
            "h",
            "PUBLISH",
            "PENDING",
            "held behind unresolved event r of the same order",
            None,
        ),
        (
            "f",
            "PUBLISH",
            "FAILED",
            "publish failed after retries: retryable: down",
            Some("replay failed: permanent: too large"),
        ),
        (
            "c",
            "CONSUMER",
            "PENDING",
            "projection failed: permanent: no",
            None,
        ),
    ];
    for (id, source, status, reason, result) in rows {
        raw.execute(
            "INSERT INTO dlq_replay_records (event_id, aggregate_id, event_type, version, \
             original_event, failure_reason, failure_time, status, replay_attempts, source, \
             topic, replay_result) VALUES (?1, 'agg', 'OrderCreated', 1, '{}', ?2, \
             '2026-01-01T00:00:00.000000Z', ?3, 0, ?4, 'order-events', ?5)",
            rusqlite::params![id, reason, status, source, result],
        )
        .expect("insert an old row");
    }
    drop(raw);

    let store = SqliteStore::open(&path).expect("migrates");
    let class = |id: &'static str| {
        let store = store.clone();
        async move {
            let r = store.get(id).await.expect("get").expect("record");
            (r.failure_class, r.replay_failure_class)
        }
    };
    assert_eq!(class("r").await, (Some(FailureClass::Retryable), None));
    assert_eq!(class("p").await, (Some(FailureClass::Permanent), None));
    assert_eq!(class("h").await, (None, None));
    assert_eq!(
        class("f").await,
        (Some(FailureClass::Retryable), Some(FailureClass::Permanent))
    );
    assert_eq!(class("c").await, (None, None), "consumer-side: no class");
    // Migration 0008 counted them too.
    let stats = DlqStore::stats(&store).await.expect("stats");
    assert_eq!(
        (stats.pending_count, stats.failed_count, stats.total_count),
        (4, 1, 5),
        "{stats:?}"
    );
}

/// The retention worker deletes what was resolved longer ago than it keeps,
/// counted in the metric, and leaves the rest.
#[tokio::test]
async fn the_retention_worker_deletes_records_resolved_longer_ago_than_it_keeps() {
    use order_core::app::dlq::sequencing;
    use order_core::app::{Metrics, Retention, RetentionConfig};
    use order_core::ports::DlqStore;
    use order_core::testkit::fixtures::dlq_record;
    let dir = temp_dir();
    let store = Arc::new(SqliteStore::open(dir.path().join("orders.db")).expect("open"));
    let old = dlq_record("agg-1", 1, None, at(0));
    let fresh = dlq_record("agg-2", 1, None, at(0));
    sequencing::record(store.as_ref(), &[old.clone(), fresh.clone()])
        .await
        .expect("record");
    let now = order_core::domain::now();
    for (r, days_ago) in [(&old, 10), (&fresh, 1)] {
        sequencing::mark_replayed(
            store.as_ref(),
            std::slice::from_ref(&r.event_id),
            now - chrono::TimeDelta::days(days_ago),
            "replayed",
        )
        .await
        .expect("mark_replayed");
    }
    let metrics = Arc::new(Metrics::default());
    let retention = Retention::new(
        store.clone(),
        RetentionConfig {
            keep: Duration::from_secs(7 * 86_400),
            interval: Duration::from_secs(3600),
            batch: 1,
        },
        metrics.clone(),
    );
    assert_eq!(retention.run_once().await.expect("purge"), 1);
    assert!(store.get(&old.event_id).await.expect("get").is_none());
    assert!(store.get(&fresh.event_id).await.expect("get").is_some());
    assert!(metrics
        .render(&Default::default())
        .contains("orders_dlq_purged_total 1"));
}
