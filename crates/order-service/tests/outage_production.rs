//! Issue #11's outage scenario on the production backends: 100,000 events
//! parked in MariaDB over 20,000 orders, drained by ONE bulk replay job to a
//! Kafka-protocol broker (Tansu); an independent consumer then reads the
//! topic (`order_core::testkit::outage`). The embedded profile runs the
//! same scenario in `order-store-sqlite/tests/outage.rs`.
//!
//! Needs `ORDER_TEST_MYSQL_URL` and `ORDER_TEST_KAFKA_BROKERS` (run
//! ./scripts/test.sh); fails without them.

use std::sync::Arc;

use order_bus_kafka::{KafkaBus, KafkaConfig};
use order_core::testkit::fixtures::unique_name;
use order_core::testkit::outage::{drained_by_one_job, Outage};

/// Resident memory the drain may add, MiB: one page of at most 256
/// sequences in flight, the Kafka client's queues and the pool's buffers;
/// the backlog itself (~45 MiB as stored) never is (see the embedded
/// test).
const RSS_GROWTH_BOUND_MIB: f64 = 80.0;

/// The job's drain rate must stay above this (a debug build, a shared
/// 2-core machine running MariaDB and the broker too).
const MIN_EVENTS_PER_SEC: f64 = 300.0;

fn env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: run ./scripts/test.sh"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_parked_events_drain_to_kafka_in_one_job_in_order() {
    let url = format!(
        "{}/{}",
        env("ORDER_TEST_MYSQL_URL").trim_end_matches('/'),
        unique_name("outage").replace('-', "_")
    );
    order_store_mysql::migrate(&url).await.expect("migrate");
    let store = Arc::new(order_store_mysql::connect(&url).await.expect("connect"));
    let mut cfg = KafkaConfig::new(env("ORDER_TEST_KAFKA_BROKERS"));
    cfg.events_topic = unique_name("outage-events");
    cfg.dlq_topic = unique_name("outage-events-dlq");
    cfg.partitions = 3;
    let topic = cfg.events_topic.clone();
    let bus = KafkaBus::connect(cfg).await.expect("kafka");
    bus.ensure_topics().await.expect("topics");
    let outage = Outage {
        orders: 20_000,
        events_per_order: 5,
    };
    let d = drained_by_one_job(store, Arc::new(bus), &topic, outage).await;
    d.assert_within("MariaDB + Tansu", RSS_GROWTH_BOUND_MIB, MIN_EVENTS_PER_SEC);
}
