//! The group committer's linger against the SQLite store: a lone command
//! never waits, and under load a small batch waits for the next commands.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_core::app::{GroupCommitter, Metrics};
use order_core::domain::now;
use order_core::testkit::fixtures::create;
use order_store_sqlite::SqliteStore;
use tokio::sync::Notify;

const LINGER: Duration = Duration::from_millis(300);

fn committer(dir: &tempfile::TempDir) -> (GroupCommitter, Arc<Metrics>) {
    let store = Arc::new(SqliteStore::open(dir.path().join("orders.db")).expect("store"));
    let metrics = Arc::new(Metrics::default());
    let c = GroupCommitter::start(
        store,
        512,
        LINGER,
        1,
        Duration::from_secs(10),
        Arc::new(Notify::new()),
        metrics.clone(),
    );
    (c, metrics)
}

async fn commit_one(c: &GroupCommitter) {
    c.commit(create("cust-1", "rest-1", now()))
        .await
        .expect("committed");
}

fn batches(m: &Metrics) -> u64 {
    m.commit_batches.load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_lone_command_does_not_wait_for_the_linger() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (c, _) = committer(&dir);
    for _ in 0..3 {
        let started = Instant::now();
        commit_one(&c).await;
        assert!(
            started.elapsed() < LINGER / 2,
            "took {:?} with a linger of {LINGER:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn under_load_a_small_batch_waits_for_the_next_commands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (c, metrics) = committer(&dir);
    // Load: many commands at once, so the last batch is not tiny.
    let wave: Vec<_> = (0..64)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { commit_one(&c).await })
        })
        .collect();
    for t in wave {
        t.await.expect("join");
    }
    let before = batches(&metrics);
    // One command, then another well within the linger: one transaction.
    let first = tokio::spawn({
        let c = c.clone();
        async move { commit_one(&c).await }
    });
    tokio::time::sleep(LINGER / 6).await;
    commit_one(&c).await;
    first.await.expect("join");
    assert_eq!(batches(&metrics) - before, 1, "both commands in one batch");
}
