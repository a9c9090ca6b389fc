//! Kafka-specific behaviour beyond the port contract: topic creation, the
//! per-key contract with a permanent failure, and failure against an
//! unreachable broker (a closed loopback port).

mod common;

use std::time::{Duration, Instant};

use order_bus_kafka::{KafkaBus, KafkaConfig, DLQ_RETENTION_MS};
use order_core::ports::{BusError, BusMessage, EventBus, PublishError};
use order_core::testkit::fixtures::{message, poll_n, unique_name};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client")
}

fn partition_count(brokers: &str, topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("metadata client");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("topic {topic} missing from metadata"));
    assert!(t.error().is_none(), "topic {topic}: {:?}", t.error());
    t.partitions().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_topics_creates_both_topics_once() {
    let brokers = common::brokers();
    let mut cfg = common::test_config(&brokers);
    cfg.partitions = 4;
    cfg.create_topics_on_demand = false;
    let (events, dlq) = (cfg.events_topic.clone(), cfg.dlq_topic.clone());
    let bus = KafkaBus::connect(cfg).await.expect("connect");

    bus.ensure_topics().await.expect("create topics");
    bus.ensure_topics().await.expect("existing topics are fine");

    assert_eq!(
        partition_count(&brokers, &events),
        4,
        "configured partitions"
    );
    assert_eq!(partition_count(&brokers, &dlq), 1);

    let admin = admin(&brokers);
    let described = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(&dlq)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("describe configs");
    let resource = described
        .into_iter()
        .next()
        .expect("one resource")
        .expect("dlq topic config");
    let retention = resource
        .get("retention.ms")
        .and_then(|e| e.value.clone())
        .expect("retention.ms of the DLQ topic");
    assert_eq!(retention, DLQ_RETENTION_MS);
    assert_eq!(retention, "604800000", "7 days");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_fails_the_later_messages_of_its_key_only() {
    let cfg = common::test_config(&common::brokers());
    let bus = KafkaBus::connect(cfg).await.expect("connect");
    let topic = unique_name("orders");
    let mut too_large = message(&topic, "a", 1);
    too_large.payload = vec![b'x'; 2 * 1024 * 1024]; // > message.max.bytes (1 MB)
    let batch: Vec<BusMessage> = vec![
        message(&topic, "a", 0),
        too_large,
        message(&topic, "b", 0),
        message(&topic, "a", 2),
        message(&topic, "b", 1),
    ];
    let results = bus.publish(&batch).await;
    assert_eq!(results.len(), 5);
    assert_eq!(results[0], Ok(()));
    assert!(
        matches!(results[1], Err(PublishError::Permanent(_))),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2], Ok(()));
    assert!(
        matches!(results[3], Err(PublishError::Permanent(_))),
        "{:?}",
        results[3]
    );
    assert_eq!(results[4], Ok(()));

    // Only the reported deliveries reached the topic.
    let mut sub = bus
        .subscribe(&unique_name("group"), &topic)
        .await
        .expect("subscribe");
    let got = poll_n(&mut sub, 3).await;
    let mut seen: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect();
    seen.sort();
    let mut expected: Vec<String> = [&batch[0], &batch[2], &batch[4]]
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    let more = sub
        .poll(10, Duration::from_millis(500))
        .await
        .expect("poll");
    assert!(more.is_empty(), "{more:?}");
}

fn unreachable_config(publish_timeout: Duration) -> KafkaConfig {
    let mut cfg = KafkaConfig::new(common::closed_port_address());
    cfg.publish_timeout = publish_timeout;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_an_unreachable_broker_is_retryable_within_the_timeout() {
    let timeout = Duration::from_millis(1500);
    let bus = KafkaBus::connect(unreachable_config(timeout))
        .await
        .expect("connect does not need the broker");
    let topic = unique_name("orders");
    let batch = vec![
        message(&topic, "a", 0),
        message(&topic, "a", 1),
        message(&topic, "b", 0),
    ];
    let started = Instant::now();
    let results = bus.publish(&batch).await;
    let took = started.elapsed();
    assert_eq!(results.len(), 3);
    for r in &results {
        assert!(matches!(r, Err(PublishError::Retryable(_))), "{r:?}");
    }
    assert!(
        took < timeout + Duration::from_secs(2),
        "failed after {took:?}, publish timeout {timeout:?}"
    );

    // Also when the topic is already known (no creation attempt first).
    let mut cfg = unreachable_config(timeout);
    cfg.create_topics_on_demand = false;
    let bus = KafkaBus::connect(cfg).await.expect("connect");
    let started = Instant::now();
    let results = bus.publish(&batch).await;
    let took = started.elapsed();
    for r in &results {
        assert!(matches!(r, Err(PublishError::Retryable(_))), "{r:?}");
    }
    assert!(
        took < timeout + Duration::from_secs(2),
        "failed after {took:?}, publish timeout {timeout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_of_an_unreachable_broker_is_unavailable_within_the_timeout() {
    let bus = KafkaBus::connect(unreachable_config(Duration::from_secs(5)))
        .await
        .expect("connect");
    let timeout = Duration::from_millis(1000);
    let started = Instant::now();
    let result = bus.check(timeout).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(BusError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        took < timeout + Duration::from_millis(1500),
        "answered after {took:?}, timeout {timeout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_describes_the_broker() {
    let bus = KafkaBus::connect(common::test_config(&common::brokers()))
        .await
        .expect("connect");
    let desc = bus.check(Duration::from_secs(10)).await.expect("check");
    assert!(desc.contains("1 broker(s)"), "{desc}");
}

/// A raw consumer of `topic` from the beginning (reads bytes as they are on
/// the wire, as a Java consumer would).
fn raw_consumer(brokers: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_name("raw"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("raw consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

fn raw_headers(m: &rdkafka::message::BorrowedMessage<'_>) -> Vec<(String, Vec<u8>)> {
    use rdkafka::message::{Headers, Message};
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_headers_travel_as_spring_kafka_writes_and_reads_them() {
    use order_core::ports::dlt;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let brokers = common::brokers();
    let bus = KafkaBus::connect(common::test_config(&brokers))
        .await
        .expect("connect");
    let topic = unique_name("order-events.DLT");

    // Ours, written as text in the core, leave as Spring's bytes.
    let mut ours = message(&topic, "order-1", 0);
    ours.headers = vec![
        (dlt::ORIGINAL_TOPIC.into(), "order-events".into()),
        (dlt::ORIGINAL_PARTITION.into(), "2".into()),
        (dlt::ORIGINAL_OFFSET.into(), "4711".into()),
        (dlt::ORIGINAL_TIMESTAMP.into(), "1733400000123".into()),
        (dlt::ORIGINAL_TIMESTAMP_TYPE.into(), "CreateTime".into()),
        (
            dlt::EXCEPTION_FQCN.into(),
            dlt::PROJECTION_ERROR_FQCN.into(),
        ),
        (dlt::EXCEPTION_MESSAGE.into(), "no such order".into()),
    ];
    for r in bus.publish(std::slice::from_ref(&ours)).await {
        r.expect("publish");
    }
    let consumer = raw_consumer(&brokers, &topic);
    let deadline = Instant::now() + Duration::from_secs(30);
    let headers = loop {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            break raw_headers(&m.expect("message"));
        }
        assert!(Instant::now() < deadline, "our dead letter did not arrive");
    };
    let bytes = |name: &str| -> Vec<u8> {
        headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
    };
    // What Spring's DeadLetterPublishingRecoverer writes: ByteBuffer
    // putInt(partition), putLong(offset), putLong(timestamp); text UTF-8.
    assert_eq!(bytes(dlt::ORIGINAL_PARTITION), 2i32.to_be_bytes());
    assert_eq!(bytes(dlt::ORIGINAL_OFFSET), 4711i64.to_be_bytes());
    assert_eq!(
        bytes(dlt::ORIGINAL_TIMESTAMP),
        1_733_400_000_123i64.to_be_bytes()
    );
    assert_eq!(bytes(dlt::ORIGINAL_TOPIC), b"order-events");
    assert_eq!(bytes(dlt::ORIGINAL_TIMESTAMP_TYPE), b"CreateTime");
    assert_eq!(bytes(dlt::EXCEPTION_MESSAGE), b"no such order");

    // Theirs, written by a Spring producer as bytes, read back as text.
    let spring_topic = unique_name("spring.DLT");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    // Subscribing creates the topic; the subscription starts at its
    // beginning.
    let mut sub = bus
        .subscribe(&unique_name("group"), &spring_topic)
        .await
        .expect("subscribe");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: dlt::ORIGINAL_TOPIC,
            value: Some("payments".as_bytes()),
        })
        .insert(Header {
            key: dlt::ORIGINAL_PARTITION,
            value: Some(&7i32.to_be_bytes()[..]),
        })
        .insert(Header {
            key: dlt::ORIGINAL_OFFSET,
            value: Some(&123_456_789i64.to_be_bytes()[..]),
        })
        .insert(Header {
            key: dlt::EXCEPTION_FQCN,
            value: Some("java.lang.IllegalStateException".as_bytes()),
        });
    producer
        .send(
            FutureRecord::to(&spring_topic)
                .key("k")
                .payload("{}")
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("produce as Spring would");
    let got = poll_n(&mut sub, 1).await;
    let d = &got[0];
    assert_eq!(d.header(dlt::ORIGINAL_TOPIC), Some("payments"));
    assert_eq!(d.header(dlt::ORIGINAL_PARTITION), Some("7"));
    assert_eq!(d.header(dlt::ORIGINAL_OFFSET), Some("123456789"));
    assert_eq!(
        d.header(dlt::EXCEPTION_FQCN),
        Some("java.lang.IllegalStateException")
    );
    assert!(d.timestamp.is_some(), "the record's timestamp is delivered");
}
