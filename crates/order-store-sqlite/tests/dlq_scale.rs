//! The DLQ at a million records (ignored by default: it seeds 1,000,000
//! rows): the plans of the listing and stats statements, and their
//! timings through the store.
//!
//! ```sh
//! cargo test -p order-store-sqlite --release --test dlq_scale -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::time::Instant;

use order_core::testkit::dlq_scale::{self, BUDGET, SEEDED};
use order_core::testkit::fixtures::at;
use order_store_sqlite::SqliteStore;

/// [`SEEDED`] rows shaped as `dlq_scale::seeded_status` / `seeded_time`
/// say, in one statement (the counting triggers fire for each).
fn seed(raw: &rusqlite::Connection) {
    let base = at(0).timestamp();
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {SEEDED}) \
         INSERT INTO dlq_replay_records (id, event_id, aggregate_id, event_type, \
         original_event, failure_reason, failure_time, status, replay_attempts, version, \
         source, blocked_by, topic) \
         SELECT i, 'evt-' || i, 'agg-' || (i / 10), 'OrderCreated', \
         '{{\"eventId\":\"evt-' || i || '\"}}', 'retryable: broker down', \
         strftime('%Y-%m-%dT%H:%M:%S', {base} + i / 2, 'unixepoch') || '.123456Z', \
         CASE i % 10 WHEN 6 THEN 'REPLAYED' WHEN 7 THEN 'FAILED' WHEN 8 THEN 'SKIPPED' \
         ELSE 'PENDING' END, 0, 1, 'PUBLISH', \
         CASE WHEN i % 10 = 9 THEN 'evt-' || (i - 1) END, 'order-events' FROM n"
    );
    raw.execute_batch(&sql).expect("seed");
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "seeds a million rows; run with --release --ignored --nocapture"]
async fn listings_and_stats_answer_within_budget_at_a_million_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scale.db");
    drop(SqliteStore::open(&path).expect("open"));
    let raw = rusqlite::Connection::open(&path).expect("raw");
    let started = Instant::now();
    seed(&raw);
    raw.execute_batch("ANALYZE").expect("analyze");
    println!(
        "sqlite: seeded {SEEDED} records in {:.1?}",
        started.elapsed()
    );
    let planned = dlq_scale::planned(order_store_sqlite::index_hint);
    let sorts_its_page = planned.len() - 1;
    for (n, (what, stmt)) in planned.into_iter().enumerate() {
        let sql = format!("EXPLAIN QUERY PLAN {}", dlq_scale::inline(&stmt, time));
        let mut q = raw.prepare(&sql).expect("explain");
        let plan: Vec<String> = q
            .query_map([], |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        println!("sqlite plan, {what}:\n  {}", plan.join("\n  "));
        // An ordered index walk (`SCAN … USING INDEX` stops at the LIMIT)
        // or range (`SEARCH`); never a sort or a walk of the table itself.
        let records = |p: &&String| p.contains("dlq_replay_records");
        assert!(
            (n == sorts_its_page || plan.iter().all(|p| !p.contains("TEMP B-TREE")))
                && plan
                    .iter()
                    .filter(records)
                    .all(|p| p.contains("INDEX") || p.contains("PRIMARY KEY")),
            "{what}: {plan:?}"
        );
    }
    let store = SqliteStore::open(&path).expect("open");
    let slowest = dlq_scale::time_listings(Arc::new(store), "sqlite").await;
    assert!(slowest < BUDGET, "slowest {slowest:?}");
}
