//! MySQL-specific behaviour the shared contract suites cannot see: stored
//! v1 events, relay partitions between versions and the lock a settle and a
//! replay meet on, migrations, and error
//! translation when the server is unreachable.

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use order_core::app::relay::parked_record;
use order_core::ports::{
    DlqStore, EventStore, Holder, Outbox, OutboxFetch, ParkedEvent, RelayLeases, Settled,
    Settlement, StoreError, ALL_BUCKETS,
};
use order_core::testkit::fixtures::{at, create};
use order_core::testkit::legacy::{assert_v1_order_created_upcast, v1_order_created_data};
use order_store_mysql::{MySqlConfig, MySqlStore};
use sqlx::Executor;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_v1_order_created_is_upcast_with_exact_decimals() {
    let db = TestDb::new();
    let store = db.store().await;
    let id = Uuid::now_v7();
    let mut raw = db.raw().await;
    sqlx::query(
        "INSERT INTO event_store (event_id, aggregate_id, aggregate_type, event_type, event_data, \
         version, schema_version, occurred_on) \
         VALUES (?, ?, 'Order', 'OrderCreated', ?, 1, 1, '2019-03-01 12:00:00.250000')",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(id.to_string())
    .bind(v1_order_created_data(id))
    .execute(&mut raw)
    .await
    .expect("insert v1 event");
    assert_v1_order_created_upcast(&store, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_is_stored_as_exact_decimal_text() {
    let db = TestDb::new();
    let store = db.store().await;
    let c = create("cust-1", "rest-1", at(0));
    store.commit_batch(vec![c.clone()]).await.expect("batch")[0]
        .clone()
        .expect("commit");
    let mut raw = db.raw().await;
    let prices: Vec<String> =
        sqlx::query_scalar("SELECT price FROM order_items WHERE order_id = ? ORDER BY line_no")
            .bind(c.state.id.to_string())
            .fetch_all(&mut raw)
            .await
            .expect("prices");
    assert_eq!(prices, ["12.50", "0.10", "7"]);
    let total: String = sqlx::query_scalar("SELECT total_amount FROM orders WHERE id = ?")
        .bind(c.state.id.to_string())
        .fetch_one(&mut raw)
        .await
        .expect("total");
    assert_eq!(total, "32.30");
}

/// Rolling upgrade: while an instance of a version before relay partitions
/// still holds the single `relay_lease`, no partition is claimed (both
/// would relay the same rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_partition_is_claimed_while_an_earlier_version_holds_the_relay_lease() {
    let db = TestDb::new();
    let store = db.store().await;
    store.layout(2).await.expect("layout");
    let mut raw = db.raw().await;
    raw.execute(
        "UPDATE relay_lease SET holder = 'old-version', \
         expires_at = UTC_TIMESTAMP(6) + INTERVAL 1 MINUTE WHERE name = 'outbox'",
    )
    .await
    .expect("old holder");
    let seen = store.partitions().await.expect("partitions")[0].fence();
    let ttl = Duration::from_secs(30);
    assert_eq!(
        store
            .claim(seen, Holder::new("new", ttl))
            .await
            .expect("claim"),
        None
    );
    raw.execute("UPDATE relay_lease SET expires_at = UTC_TIMESTAMP(6) WHERE name = 'outbox'")
        .await
        .expect("old holder stops");
    assert!(store
        .claim(seen, Holder::new("new", ttl))
        .await
        .expect("claim")
        .is_some());
}

/// Outbox rows written before migration 0006 get their bucket at connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_from_before_buckets_get_theirs_at_connect() {
    let db = TestDb::new();
    let store = db.store().await;
    let c = create("cust-1", "rest-1", at(0));
    store.commit_batch(vec![c.clone()]).await.expect("batch")[0]
        .clone()
        .expect("commit");
    let mut raw = db.raw().await;
    raw.execute("UPDATE outbox SET bucket = -1")
        .await
        .expect("downgrade");
    store.close().await;
    let store = db.store().await;
    order_core::testkit::outbox::assert_the_row_is_in_its_bucket(&store, &c.state.id.to_string())
        .await;
}

/// The race between a relay parking behind a head and a replay on another
/// instance resolving that head, decided by the head row's lock: a settle
/// that has to wait for the replay's final mark sees the head resolved and
/// leaves its event in the outbox instead of holding it behind nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_waiting_on_a_replay_of_its_head_leaves_the_event_in_the_outbox() {
    let db = TestDb::new();
    let store = db.store().await;
    store.layout(1).await.expect("layout");
    let seen = store.partitions().await.expect("partitions")[0].fence();
    let fence = store
        .claim(seen, Holder::new("relay-a", Duration::from_secs(60)))
        .await
        .expect("claim")
        .expect("free");
    let v1 = create("cust-1", "rest-1", at(0));
    let p1 = store.commit_batch(vec![v1.clone()]).await.expect("batch")[0]
        .clone()
        .expect("commit");
    let head_id = v1.events[0].event_id.to_string();
    let park = |position: i64, env: &order_core::domain::EventEnvelope, head: Option<String>| {
        ParkedEvent {
            position,
            record: parked_record(env, "order-events", "down".into(), None, head),
        }
    };
    let settle = |parked: Vec<ParkedEvent>| Settlement {
        holder: "relay-a".into(),
        fences: vec![fence],
        delivered: vec![],
        parked,
    };
    assert_eq!(
        store
            .settle(&settle(vec![park(p1[0], &v1.events[0], None)]))
            .await
            .expect("park the head"),
        Settled::Done { held_back: vec![] }
    );
    let t = order_core::testkit::fixtures::transition(
        &v1.state,
        &[order_core::testkit::fixtures::confirm("pay-1")],
        at(5),
    );
    let p2 = store.commit_batch(vec![t.clone()]).await.expect("batch")[0]
        .clone()
        .expect("commit");

    // Instance B's replay holds the head's row lock and marks it replayed.
    let mut b = db.raw().await;
    b.execute("BEGIN").await.expect("begin");
    sqlx::query("SELECT status FROM dlq_replay_records WHERE event_id = ? FOR UPDATE")
        .bind(&head_id)
        .fetch_one(&mut b)
        .await
        .expect("lock the head");
    // Instance A parks v2 behind the head meanwhile: it waits for the lock.
    let a = {
        let store = store.clone();
        let s = settle(vec![park(p2[0], &t.events[0], Some(head_id.clone()))]);
        tokio::spawn(async move { store.settle(&s).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!a.is_finished(), "the settle waits on the head's lock");
    sqlx::query("UPDATE dlq_replay_records SET status = 'REPLAYED' WHERE event_id = ?")
        .bind(&head_id)
        .execute(&mut b)
        .await
        .expect("mark replayed");
    b.execute("COMMIT").await.expect("commit");

    let outcome = a.await.expect("join").expect("settle");
    assert_eq!(
        outcome,
        Settled::Done {
            held_back: vec![p2[0]]
        }
    );
    let left = store
        .fetch_batch(OutboxFetch {
            buckets: &[ALL_BUCKETS],
            limit: 10,
        })
        .await
        .expect("fetch");
    assert_eq!(left.len(), 1, "v2 stays for the next batch");
    assert!(store
        .get(&t.events[0].event_id.to_string())
        .await
        .expect("get")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_recorded() {
    let db = TestDb::new();
    order_store_mysql::migrate(&db.url).await.expect("migrate");
    order_store_mysql::migrate(&db.url)
        .await
        .expect("migrate again");
    let store = order_store_mysql::connect(&db.url).await.expect("connect");
    store.ping().await.expect("ping");
    let mut raw = db.raw().await;
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut raw)
            .await
            .expect("versions");
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let engines: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
    )
    .fetch_all(&mut raw)
    .await
    .expect("engines");
    assert_eq!(engines, ["InnoDB"]);

    // A schema newer than this build is refused, not used.
    raw.execute("INSERT INTO schema_migrations VALUES (99, 'future', UTC_TIMESTAMP(6))")
        .await
        .expect("insert");
    match order_store_mysql::connect(&db.url).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Migration 0008 counts the records stored before it (its triggers count
/// the later ones): the stats and totals read the counts from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_stored_before_the_dlq_counters_are_counted_by_the_migration() {
    let db = TestDb::new();
    let store = db.store().await;
    let mut raw = db.raw().await;
    // Back to the schema before migration 8, with records as it stored them.
    for stmt in [
        "DELETE FROM schema_migrations WHERE version >= 8",
        "DROP TABLE dlq_revisions",
        "ALTER TABLE dlq_replay_records DROP INDEX idx_dlq_customer, \
         DROP INDEX idx_dlq_event_type, DROP COLUMN consumer_group, DROP COLUMN customer_id, \
         DROP COLUMN imported_at, DROP COLUMN imported_by",
        "DROP TRIGGER dlq_counters_insert",
        "DROP TRIGGER dlq_counters_update",
        "DROP TRIGGER dlq_counters_delete",
        "DROP TABLE dlq_counters",
        "INSERT INTO dlq_replay_records (event_id, aggregate_id, event_type, original_event, \
         failure_reason, failure_time, status, source, blocked_by, topic) VALUES \
         ('h', 'a', 'OrderCreated', '{}', 'down', '2026-01-01 00:00:01', 'PENDING', 'PUBLISH', NULL, 't'), \
         ('b', 'a', 'OrderConfirmed', '{}', 'held', '2026-01-01 00:00:02', 'PENDING', 'PUBLISH', 'h', 't'), \
         ('f', 'c', 'OrderCreated', '{}', 'down', '2026-01-01 00:00:00', 'FAILED', 'PUBLISH', NULL, 't'), \
         ('r', 'd', 'OrderCreated', '{}', 'down', '2025-01-01 00:00:00', 'REPLAYED', 'PUBLISH', NULL, 't')",
    ] {
        raw.execute(stmt).await.unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    order_store_mysql::migrate(&db.url).await.expect("migrate");
    let stats = DlqStore::stats(&store).await.expect("stats");
    assert_eq!(
        (
            stats.pending_count,
            stats.blocked_count,
            stats.failed_count,
            stats.replayed_count,
            stats.total_count
        ),
        (2, 1, 1, 1, 4),
        "{stats:?}"
    );
    assert_eq!(
        stats.oldest_pending_failure_time,
        Some("2026-01-01T00:00:00Z".parse().expect("instant"))
    );
    // And the triggers count what comes after.
    let later = order_core::testkit::fixtures::dlq_record("e", 1, None, at(0));
    store.insert_new(&[later]).await.expect("insert");
    assert_eq!(
        DlqStore::stats(&store).await.expect("stats").pending_count,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let started = Instant::now();
    let r = MySqlStore::connect(&format!("mysql://root@127.0.0.1:{port}/order_write_db")).await;
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "expected Unavailable, got {r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_unavailable_after_the_timeout() {
    // Accepts connections (the kernel's backlog) but never speaks.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let started = Instant::now();
    let r = MySqlStore::connect_with(
        MySqlConfig::new(format!("mysql://root@127.0.0.1:{port}/order_write_db"))
            .with_acquire_timeout(Duration::from_millis(500)),
    )
    .await;
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "expected Unavailable, got {r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_database_makes_operations_fail_without_hanging() {
    let db = TestDb::new();
    let store = db.store().await;
    store.ping().await.expect("ping");
    let mut raw = db.raw().await;
    raw.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE `{}`", db.name)))
        .await
        .expect("drop");
    let r = store.commit_batch(vec![create("c", "r", at(0))]).await;
    assert!(r.is_err(), "{r:?}");
}

/// Throughput of single-event creates in group-commit batches of 256 (one
/// committer, as in the service). `cargo test --release -p
/// order-store-mysql --test mysql -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_create_commits_per_second() {
    const TOTAL: usize = 50_000;
    const BATCH: usize = 256;
    let db = TestDb::new();
    let store = db.store().await;
    let commits: Vec<_> = (0..TOTAL)
        .map(|i| create(&format!("cust-{}", i % 1000), "rest-1", at(i as i64)))
        .collect();
    let started = Instant::now();
    let mut done = 0;
    for batch in commits.chunks(BATCH) {
        let results = store.commit_batch(batch.to_vec()).await.expect("batch");
        done += results.iter().filter(|r| r.is_ok()).count();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(done, TOTAL);
    println!(
        "{TOTAL} creates in batches of {BATCH}: {secs:.2} s = {:.0} commits/s",
        TOTAL as f64 / secs
    );
    assert_eq!(store.outbox_stats_pending().await, TOTAL as u64);
}

trait Pending {
    async fn outbox_stats_pending(&self) -> u64;
}

impl Pending for MySqlStore {
    async fn outbox_stats_pending(&self) -> u64 {
        Outbox::stats(self).await.expect("stats").pending
    }
}
