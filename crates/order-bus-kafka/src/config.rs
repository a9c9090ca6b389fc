//! The bus's settings: [`KafkaConfig`] with its defaults, and the
//! librdkafka configuration it derives for each client (producer,
//! consumers, admin). Kept apart from the clients so what is tunable, and
//! what each setting becomes in librdkafka, reads in one place.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;

/// Records per produced batch (librdkafka `batch.num.messages`; its default
/// is 10000). Bounds what a consumer re-reads after a rebalance.
pub const DEFAULT_BATCH_MESSAGES: i64 = 1000;

/// Settings of the Kafka bus.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `localhost:9092`.
    pub brokers: String,
    /// `client.id` of the producer, admin client and consumers.
    pub client_id: String,
    /// How long one publish of a message may take before it counts as failed
    /// (librdkafka `message.timeout.ms` a.k.a. `delivery.timeout.ms`). A few
    /// seconds, so a hung broker parks events in seconds, not minutes.
    pub publish_timeout: Duration,
    /// The event topic (`order-events`).
    pub events_topic: String,
    /// The dead-letter topic (`order-events-dlq`).
    pub dlq_topic: String,
    /// Partition count of the event topic when it is created.
    pub partitions: i32,
    /// Partition count of the DLQ topic when it is created.
    pub dlq_partitions: i32,
    /// Replication factor of created topics; -1: the broker's
    /// `default.replication.factor` (KIP-464).
    pub replication_factor: i32,
    /// `min.insync.replicas` of created topics; `None`: the broker's default.
    pub min_insync_replicas: Option<u32>,
    /// The producer's `compression.type` (`none`, `gzip`, `snappy`, `lz4`,
    /// `zstd`).
    pub compression: String,
    /// Consumer `max.poll.interval.ms`, also the consumer-group rebalance
    /// timeout (`session.timeout.ms` is capped to it). Tansu completes a
    /// group join only after the rebalance timeout: tests use ~6 s.
    pub max_poll_interval: Duration,
    /// Timeout of admin requests (topic creation) and offset commits.
    pub admin_timeout: Duration,
    /// Whether the bus creates a topic it has not used yet before the first
    /// publish to it or subscription on it (with `partitions`; the DLQ topic
    /// as in [`KafkaBus::ensure_topics`](crate::KafkaBus::ensure_topics)), instead of relying on broker-side
    /// auto-creation. Costs one CreateTopics round trip per topic and
    /// process. When creation fails because the broker is unreachable, the
    /// publish fails as retryable at once.
    pub create_topics_on_demand: bool,
    /// How long [`EventBus::find_published`](order_core::ports::EventBus::find_published) may read a topic looking for
    /// messages an unanswered attempt may have delivered (see the
    /// `published` module).
    pub find_published_budget: Duration,
    /// Raw librdkafka options applied last to every client (producer,
    /// consumers, admin), overriding the settings above.
    pub extra: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".to_owned(),
            client_id: "order-service".to_owned(),
            publish_timeout: Duration::from_secs(5),
            events_topic: "order-events".to_owned(),
            dlq_topic: "order-events-dlq".to_owned(),
            partitions: 3,
            dlq_partitions: 1,
            replication_factor: -1,
            min_insync_replicas: None,
            compression: "none".to_owned(),
            max_poll_interval: Duration::from_secs(300),
            admin_timeout: Duration::from_secs(10),
            create_topics_on_demand: true,
            find_published_budget: Duration::from_secs(20),
            extra: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The defaults with `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            ..Self::default()
        }
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
        c
    }

    fn with_extra(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// The producer's librdkafka configuration.
    pub fn producer_config(&self) -> ClientConfig {
        let timeout_ms = millis(self.publish_timeout).max(1);
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout_ms.to_string())
            // request.timeout.ms stays at librdkafka's 30 s: shorter, a
            // request unanswered by a hung broker is sent again while the
            // first copy waits in the broker's socket, and both are appended
            // when it resumes (seen on Tansu). The call stops waiting after
            // the publish timeout instead (see `publish_with`).
            // librdkafka requires linger.ms < message.timeout.ms.
            .set("linger.ms", timeout_ms.saturating_sub(1).min(5).to_string())
            .set("batch.num.messages", DEFAULT_BATCH_MESSAGES.to_string())
            .set("compression.type", &self.compression);
        self.with_extra(c)
    }

    /// The most records one produced batch may hold (`batch.num.messages`,
    /// overridable through `extra`): how far a consumer rewinds before a
    /// committed offset (see the `consumer` module).
    pub fn max_batch_messages(&self) -> i64 {
        self.extra
            .get("batch.num.messages")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_BATCH_MESSAGES)
    }

    /// A consumer's librdkafka configuration for `group`.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let poll_ms = millis(self.max_poll_interval).max(1);
        let session_ms = poll_ms.min(45_000);
        let heartbeat_ms = (session_ms / 3).clamp(1, 3_000);
        let mut c = self.base();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("max.poll.interval.ms", poll_ms.to_string())
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", heartbeat_ms.to_string());
        self.with_extra(c)
    }

    /// The admin client's librdkafka configuration.
    pub fn admin_config(&self) -> ClientConfig {
        self.with_extra(self.base())
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("events_topic", &self.events_topic)
            .field("dlq_topic", &self.dlq_topic)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Checks librdkafka properties the way the client will read them, without
/// connecting: an unknown name or an invalid value is `Err((name, why))`.
pub fn check_properties(properties: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    for (name, value) in properties {
        let mut c = ClientConfig::new();
        c.set(name, value);
        if let Err(e) = c.create_native_config() {
            let why = match e {
                rdkafka::error::KafkaError::ClientConfig(_, desc, _, _) => desc,
                other => other.to_string(),
            };
            return Err((name.clone(), why));
        }
    }
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
