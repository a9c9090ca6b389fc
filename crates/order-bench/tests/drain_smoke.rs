//! Smoke test of `--scenario drain`: a few hundred preloaded events drained
//! by two real `order-service` processes, then a failover. Needs
//! `ORDER_TEST_MYSQL_URL`, `ORDER_TEST_KAFKA_BROKERS` and
//! `ORDER_TEST_MONGODB_URI` (`eval "$(scripts/services.sh start)"`, or
//! `./scripts/test.sh`); like the other production-backend tests it fails,
//! never skips, without them. It runs the `order-service` binary of the same
//! target directory and profile (built by `cargo test --workspace`; else
//! `cargo build -p order-service` first).

use std::path::PathBuf;
use std::time::Duration;

use order_bench::drain::{self, DrainOptions, Setup};
use order_bench::profile::{Backends, ENV_KAFKA_BROKERS, ENV_MONGODB_URI, ENV_MYSQL_URL};

fn required(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set: the drain smoke test needs MariaDB, a Kafka-protocol broker and \
             the MongoDB wire server. Run it with ./scripts/test.sh, or start the services \
             first with `eval \"$(scripts/services.sh start)\"`"
        ),
    }
}

/// `target/<profile>/order-service`, beside `target/<profile>/deps/<this test>`.
fn service_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(format!("order-service{}", std::env::consts::EXE_SUFFIX)))
        .expect("target directory of the test executable");
    assert!(
        bin.is_file(),
        "{} not found: build it with `cargo build -p order-service` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_drain_every_preloaded_event_and_survive_a_kill() {
    let backends = Backends::resolve(
        false,
        Some(required(ENV_MYSQL_URL).trim_end_matches('/')),
        Some(&required(ENV_KAFKA_BROKERS)),
        Some(&required(ENV_MONGODB_URI)),
        |_| None,
    )
    .expect("loopback backends");
    let setup = Setup {
        backends,
        service_bin: service_bin(),
        ready_timeout: Duration::from_secs(60),
        limit: Duration::from_secs(120),
    };
    let env = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let opts = DrainOptions {
        instances: vec![2],
        events: 600,
        orders: 200,
        failover_events: 100,
        preload_batch: 100,
        // One event per relay batch and short leases: the drain lasts long
        // enough for the partitions to spread over both instances, and the
        // failover ends within seconds.
        service_env: vec![
            env("ORDER_RELAY_BATCH_SIZE", "1"),
            env("ORDER_RELAY_LINGER_MS", "0"),
            env("ORDER_PUBLISH_TIMEOUT_MS", "500"),
            env("ORDER_PUBLISH_BACKOFF_MS", "50"),
            env("ORDER_RELAY_LEASE_MS", "3000"),
        ],
        poll_ms: 100,
    };
    let runs = drain::run(&setup, &opts).await.expect("drain run");
    let [run] = runs.as_slice() else {
        panic!("one run expected: {runs:?}")
    };
    assert_eq!(run.events, 600, "{run:?}");
    assert!(run.drained_after.is_some(), "outbox not drained: {run:?}");
    let published: Vec<f64> = run
        .per_instance
        .iter()
        .map(|i| i.published.unwrap_or(0.0))
        .collect();
    assert_eq!(
        published.iter().sum::<f64>(),
        600.0,
        "every preloaded event published exactly once: {run:?}"
    );
    let failover = run.failover.as_ref().expect("a failover with 2 instances");
    assert_eq!(failover.events, 100);
    assert!(failover.rebalanced_after.is_some(), "{failover:?}");
    assert!(failover.drained_after.is_some(), "{failover:?}");
    // Each instance published some. An instance that won no partition at
    // the start may publish nothing during the drain: a holder hands
    // partitions over only between batches (`Partitions::rebalance` tries
    // the batch lock), which a relay with a backlog hardly ever leaves. The
    // killed instance is the one holding the most, so such an instance is a
    // survivor and publishes in the failover.
    let by_instance: Vec<f64> = published
        .iter()
        .zip(&failover.published_by_instance)
        .map(|(drain, after)| drain + after.unwrap_or(0.0))
        .collect();
    assert!(
        by_instance.iter().all(|p| *p > 0.0),
        "each instance published some: drain {published:?}, failover {:?}",
        failover.published_by_instance
    );
}
