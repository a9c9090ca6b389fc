//! Shared helpers of the Kafka tests.
#![allow(dead_code)]

use std::net::TcpListener;
use std::time::Duration;

use order_bus_kafka::KafkaConfig;
use order_core::testkit::fixtures::unique_name;

/// The broker the tests run against. Fails (never skips) when unset.
pub fn brokers() -> String {
    match std::env::var("ORDER_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "ORDER_TEST_KAFKA_BROKERS is not set: these tests need a Kafka-protocol broker. \
             Run them with ./scripts/test.sh, or start the services first with \
             `eval \"$(scripts/services.sh start)\"`"
        ),
    }
}

/// A config for tests: unique topic names, a short rebalance timeout
/// (Tansu completes a group join only after it).
pub fn test_config(brokers: &str) -> KafkaConfig {
    let mut cfg = KafkaConfig::new(brokers);
    cfg.client_id = "order-bus-kafka-test".to_owned();
    cfg.events_topic = unique_name("order-events");
    cfg.dlq_topic = unique_name("order-events-dlq");
    cfg.partitions = 3;
    cfg.max_poll_interval = Duration::from_secs(6);
    cfg
}

/// A loopback address nothing listens on.
pub fn closed_port_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    format!("127.0.0.1:{port}")
}
