//! The core's event-bus contract suite against the Kafka broker at
//! `ORDER_TEST_KAFKA_BROKERS` (every case uses its own topics and groups).

mod common;

use std::sync::Arc;

use order_bus_kafka::KafkaBus;
use order_core::ports::EventBus;

async fn bus() -> Arc<dyn EventBus> {
    let cfg = common::test_config(&common::brokers());
    Arc::new(KafkaBus::connect(cfg).await.expect("connect"))
}

order_core::event_bus_contract!(bus);
