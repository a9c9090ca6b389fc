//! The DLQ at a million records on MySQL/MariaDB (ignored by default: it
//! seeds 1,000,000 rows): the plans of the listing and stats statements,
//! and their timings through the store.
//!
//! ```sh
//! ORDER_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306 \
//!   cargo test -p order-store-mysql --release --test dlq_scale -- --ignored --nocapture
//! ```

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::TestDb;
use order_core::testkit::dlq_scale::{self, BUDGET, SEEDED};
use order_core::testkit::fixtures::at;
use sqlx::{AssertSqlSafe, Executor, Row};

/// A tenth of the [`SEEDED`] rows (the hundred-thousands digit `part`),
/// shaped as `dlq_scale::seeded_status` / `seeded_time` say, in one
/// statement (the counting triggers fire for each).
fn seed_part(part: i64) -> String {
    let digit = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
                 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
                 UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let base = at(0).format("%Y-%m-%d %H:%M:%S%.6f");
    format!(
        "INSERT INTO dlq_replay_records (id, event_id, aggregate_id, event_type, \
         original_event, failure_reason, failure_time, status, replay_attempts, version, \
         source, blocked_by, topic) \
         SELECT i, CONCAT('evt-', i), CONCAT('agg-', i DIV 10), 'OrderCreated', \
         CONCAT('{{\"eventId\":\"evt-', i, '\"}}'), 'retryable: broker down', \
         TIMESTAMPADD(SECOND, i DIV 2, '{base}'), \
         CASE i % 10 WHEN 6 THEN 'REPLAYED' WHEN 7 THEN 'FAILED' WHEN 8 THEN 'SKIPPED' \
         ELSE 'PENDING' END, 0, 1, 'PUBLISH', \
         CASE WHEN i % 10 = 9 THEN CONCAT('evt-', i - 1) END, 'order-events' \
         FROM (SELECT {part} * 100000 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d \
         + 10000 * f.d + 1 AS i \
         FROM {digit} a, {digit} b, {digit} c, {digit} e, {digit} f) n"
    )
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "seeds a million rows; run with --release --ignored --nocapture"]
async fn listings_and_stats_answer_within_budget_at_a_million_records() {
    let db = TestDb::new();
    let store = db.store().await;
    let mut raw = db.raw().await;
    let started = Instant::now();
    for part in 0..SEEDED / 100_000 {
        raw.execute(AssertSqlSafe(seed_part(part)))
            .await
            .expect("seed");
    }
    raw.execute("ANALYZE TABLE dlq_replay_records")
        .await
        .expect("analyze");
    println!(
        "mysql: seeded {SEEDED} records in {:.1?}",
        started.elapsed()
    );
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut raw)
        .await
        .expect("version");
    let mariadb = version.contains("MariaDB");
    let planned = dlq_scale::planned(order_store_mysql::index_hint);
    let sorts_its_page = planned.len() - 1;
    for (n, (what, stmt)) in planned.into_iter().enumerate() {
        // MariaDB's ANALYZE runs the statement and adds the rows it read
        // (r_rows) to the plan; MySQL gets the plan alone.
        let explain = if mariadb { "ANALYZE" } else { "EXPLAIN" };
        let sql = format!("{explain} {}", dlq_scale::inline(&stmt, time));
        let rows = raw.fetch_all(AssertSqlSafe(sql)).await.expect("explain");
        println!("mysql plan, {what}:");
        for row in &rows {
            let cell = |name: &str| -> String {
                row.try_get_unchecked::<Option<String>, _>(name)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            };
            let (table, kind, key, extra) =
                (cell("table"), cell("type"), cell("key"), cell("Extra"));
            println!(
                "  {} {table}: type={kind} key={key} rows={} r_rows={} extra={extra}",
                cell("select_type"),
                cell("rows"),
                cell("r_rows")
            );
            if table == "dlq_replay_records" {
                assert!(
                    kind != "ALL"
                        && !key.is_empty()
                        && (n == sorts_its_page || !extra.contains("filesort")),
                    "{what}: {kind} {key} {extra}"
                );
            }
        }
    }
    let slowest = dlq_scale::time_listings(Arc::new(store), "mysql").await;
    assert!(slowest < BUDGET, "slowest {slowest:?}");
}
