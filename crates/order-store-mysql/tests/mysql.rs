//! MySQL-specific behaviour the shared contract suites cannot see: stored
//! v1 events, the relay lease between instances, migrations, and error
//! translation when the server is unreachable.

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use order_core::ports::{EventStore, Outbox, StoreError};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_gets_outbox_rows_and_another_takes_over_after_expiry() {
    let db = TestDb::new();
    let lease = Duration::from_secs(1);
    let a = db.store_with(|c| c.with_lease_duration(lease)).await;
    let b = db.store_with(|c| c.with_lease_duration(lease)).await;
    assert_ne!(a.instance_id(), b.instance_id());
    for i in 0..3 {
        a.commit_batch(vec![create(&format!("cust-{i}"), "rest-1", at(i))])
            .await
            .expect("batch")[0]
            .clone()
            .expect("commit");
    }

    let got_a = a.fetch_batch(100).await.expect("fetch a");
    assert_eq!(got_a.len(), 3, "the first fetcher takes the lease");
    assert!(a.holds_relay_lease());
    assert!(
        b.fetch_batch(100).await.expect("fetch b").is_empty(),
        "another instance gets nothing while the lease is held"
    );
    assert!(!b.holds_relay_lease());

    // The holder keeps renewing by fetching; b stays shut out past the
    // original expiry.
    let until = Instant::now() + lease + Duration::from_millis(500);
    while Instant::now() < until {
        a.settle(&[], &[]).await.expect("settle");
        assert_eq!(a.fetch_batch(100).await.expect("fetch a").len(), 3);
        assert!(b.fetch_batch(100).await.expect("fetch b").is_empty());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The holder delivers one row and stops renewing (settled: nothing in
    // flight, so the heartbeat does not renew either).
    a.settle(&[got_a[0].position], &[]).await.expect("settle");
    assert!(b.fetch_batch(100).await.expect("fetch b").is_empty());
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let got_b = b.fetch_batch(100).await.expect("fetch b");
    assert_eq!(
        got_b.iter().map(|m| m.position).collect::<Vec<_>>(),
        got_a[1..].iter().map(|m| m.position).collect::<Vec<_>>(),
        "after expiry the other instance takes over where the holder left off"
    );
    assert!(b.holds_relay_lease());
    assert!(
        a.fetch_batch(100).await.expect("fetch a").is_empty(),
        "the old holder is shut out now"
    );
    assert!(!a.holds_relay_lease());

    // Releasing hands the lease over at once.
    b.settle(&[], &[]).await.expect("settle");
    b.release_relay_lease().await.expect("release");
    assert_eq!(a.fetch_batch(100).await.expect("fetch a").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsettled_batch_keeps_the_lease_renewed() {
    let db = TestDb::new();
    let lease = Duration::from_millis(600);
    let a = db.store_with(|c| c.with_lease_duration(lease)).await;
    let b = db.store_with(|c| c.with_lease_duration(lease)).await;
    a.commit_batch(vec![create("cust-1", "rest-1", at(0))])
        .await
        .expect("batch")[0]
        .clone()
        .expect("commit");
    assert_eq!(a.fetch_batch(10).await.expect("fetch").len(), 1);
    // A publish that takes longer than the lease: the heartbeat renews it.
    tokio::time::sleep(lease * 3).await;
    assert!(
        b.fetch_batch(10).await.expect("fetch b").is_empty(),
        "a batch in flight is not taken over"
    );
    // When the holder goes away, its lease runs out.
    drop(a);
    tokio::time::sleep(lease * 2).await;
    assert_eq!(b.fetch_batch(10).await.expect("fetch b").len(), 1);
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
    assert_eq!(versions, [1, 2, 3, 4, 5]);
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
