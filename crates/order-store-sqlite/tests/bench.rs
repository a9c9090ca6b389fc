//! Micro-benchmark of the command write path (ignored by default):
//!
//! ```sh
//! cargo test -p order-store-sqlite --release --test bench -- --ignored --nocapture
//! ```

use std::time::Instant;

use order_core::domain::now;
use order_core::ports::{Commit, EventStore};
use order_core::testkit::fixtures::create;
use order_store_sqlite::SqliteStore;

const COMMITS: usize = 50_000;
const BATCH: usize = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --release --ignored --nocapture"]
async fn commit_batch_throughput() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("bench.db")).expect("open");
    let at = now();
    let commits: Vec<Commit> = (0..COMMITS)
        .map(|i| create(&format!("cust-{}", i % 1000), "rest-1", at))
        .collect();
    let batches: Vec<Vec<Commit>> = commits.chunks(BATCH).map(<[Commit]>::to_vec).collect();
    let cpu_before = process_cpu_secs();
    let started = Instant::now();
    let mut ok = 0;
    for batch in batches {
        let results = store.commit_batch(batch).await.expect("batch");
        ok += results.iter().filter(|r| r.is_ok()).count();
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = process_cpu_secs()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    assert_eq!(ok, COMMITS);
    println!(
        "committed {COMMITS} single-event creates (3 items each) in batches of {BATCH}: \
         {secs:.2} s, {:.0} commits/s",
        COMMITS as f64 / secs
    );
    if let Some(cpu) = cpu {
        // On a busy machine wall time lies; CPU time spent is steadier.
        println!(
            "process CPU time {cpu:.2} s: {:.0} commits per CPU-second",
            COMMITS as f64 / cpu
        );
    }
}

/// User + system CPU time of this process (Linux `/proc`), if available.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
