//! The Kafka event bus: [`KafkaBus`] implements the core's
//! [`EventBus`] port with `rdkafka` and the librdkafka it bundles.
//!
//! * **Publishing** uses one idempotent producer (`enable.idempotence=true`,
//!   `acks=all`): every message of a call is enqueued in order (key = the
//!   message key, Kafka headers = the message headers, value = the payload)
//!   and every delivery report is awaited. A message that is not acknowledged
//!   within [`KafkaConfig::publish_timeout`] (librdkafka's
//!   `message.timeout.ms`, which also bounds the in-flight produce request)
//!   fails; errors are classified by [`classify_code`].
//! * **Per-key contract** of [`EventBus::publish`]: for one key, a failure
//!   means no later message of that key in the same call counts as delivered.
//!   With the idempotent producer librdkafka keeps the order within a
//!   partition (and one key always maps to one partition), so normally a
//!   failure of a message fails the later ones of its key as well. The bus
//!   does not rely on that: once a message of a key fails, the later
//!   messages of that key are not enqueued at all if they were not yet, and
//!   are *reported* as failed (with the class of the first failure) even if
//!   the broker acknowledged them. That is safe: a reported failure is
//!   either retried together with the failed head, in order (so the broker
//!   may hold a duplicate of the later message, and possibly a copy ahead of
//!   the head), or parked in the DLQ behind the head by the relay and
//!   replayed after it. Consumers deduplicate by event id / aggregate
//!   version, and the projector fills a version gap from the event store, so
//!   an early or duplicate copy changes nothing.
//! * **Consuming** ([`EventBus::subscribe`]) uses a `StreamConsumer` in the
//!   given group with `enable.auto.commit=false` and
//!   `auto.offset.reset=earliest`; offsets move only through
//!   [`Subscription::commit`] (a synchronous commit of `offset + 1`).
//! * **Health** ([`EventBus::check`]) is a metadata request with a timeout;
//!   nothing is published.
//! * **Topics**: [`KafkaBus::ensure_topics`] creates `order-events` (with
//!   [`KafkaConfig::partitions`]) and `order-events-dlq` (with
//!   `retention.ms=604800000`) when missing. With
//!   [`KafkaConfig::create_topics_on_demand`] (default on) any other topic is
//!   created the same way before its first publish or subscription.
//! * **Producer recovery**: after a fatal error or a rejected idempotence
//!   state (`ProducerFenced`, `OutOfOrderSequenceNumber`, …, which Tansu
//!   answers to librdkafka's epoch bump after delivery timeouts) the producer
//!   is replaced by a fresh one. The messages whose failure was such a
//!   rejection (with the later messages of their keys, in call order) are
//!   sent once more right away with the fresh producer within the same
//!   call; what still fails reports its error (a fatal one `Retryable`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use order_core::ports::{BusError, BusMessage, EventBus, PublishError, Subscription};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

mod classify;
mod consumer;
mod published;

pub use classify::{classify_code, classify_error, publish_error, ErrorClass};
/// librdkafka's error codes, re-exported for callers of [`classify_code`].
pub use rdkafka::types::RDKafkaErrorCode;

use classify::to_publish_error;

/// Retention of the DLQ topic: 7 days.
pub const DLQ_RETENTION_MS: &str = "604800000";

/// Records per produced batch (librdkafka `batch.num.messages`; its default
/// is 10000). Bounds what a consumer re-reads after a rebalance.
pub const DEFAULT_BATCH_MESSAGES: i64 = 1000;

/// How long past the publish timeout a call waits for delivery reports.
const REPORT_MARGIN: Duration = Duration::from_secs(1);

/// Settings of the Kafka bus.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Replication factor of created topics.
    pub replication_factor: i32,
    /// Consumer `max.poll.interval.ms`, also the consumer-group rebalance
    /// timeout (`session.timeout.ms` is capped to it). Tansu completes a
    /// group join only after the rebalance timeout: tests use ~6 s.
    pub max_poll_interval: Duration,
    /// Timeout of admin requests (topic creation) and offset commits.
    pub admin_timeout: Duration,
    /// Whether the bus creates a topic it has not used yet before the first
    /// publish to it or subscription on it (with `partitions`; the DLQ topic
    /// as in [`KafkaBus::ensure_topics`]), instead of relying on broker-side
    /// auto-creation. Costs one CreateTopics round trip per topic and
    /// process. When creation fails because the broker is unreachable, the
    /// publish fails as retryable at once.
    pub create_topics_on_demand: bool,
    /// How long [`EventBus::find_published`] may read a topic looking for
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
            replication_factor: 1,
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
            .set("batch.num.messages", DEFAULT_BATCH_MESSAGES.to_string());
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("kafka: {what}: {e}"))
}

/// The Kafka event bus. Cheap to share behind an `Arc`.
pub struct KafkaBus {
    cfg: KafkaConfig,
    /// Replaced when librdkafka reports a fatal (idempotence) error, after
    /// which the old instance can no longer produce.
    producer: Mutex<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist (created or found by this bus).
    known_topics: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.cfg.brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Creates the producer and the admin client. Does not wait for the
    /// broker (a broker that is down must not stop the service from
    /// starting: the relay keeps events in the outbox meanwhile); only an
    /// invalid configuration fails.
    pub async fn connect(cfg: KafkaConfig) -> Result<KafkaBus, BusError> {
        let producer: FutureProducer = cfg
            .producer_config()
            .create()
            .map_err(|e| unavailable("cannot create producer", e))?;
        let admin: AdminClient<DefaultClientContext> = cfg
            .admin_config()
            .create()
            .map_err(|e| unavailable("cannot create admin client", e))?;
        Ok(KafkaBus {
            cfg,
            producer: Mutex::new(producer),
            admin,
            known_topics: Mutex::new(HashSet::new()),
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.cfg
    }

    /// Creates the event topic (configured partitions) and the DLQ topic
    /// (`retention.ms=604800000`) when missing; an existing topic is left as
    /// it is.
    pub async fn ensure_topics(&self) -> Result<(), BusError> {
        let events = NewTopic::new(
            &self.cfg.events_topic,
            self.cfg.partitions,
            TopicReplication::Fixed(self.cfg.replication_factor),
        );
        let dlq = self.dlq_new_topic();
        self.create_topics(&[events, dlq], self.cfg.admin_timeout, false)
            .await
    }

    /// The creation request for `topic`: the DLQ topic with its retention,
    /// any other with the configured partitions.
    fn new_topic<'a>(&'a self, topic: &'a str) -> NewTopic<'a> {
        if topic == self.cfg.dlq_topic {
            self.dlq_new_topic()
        } else {
            NewTopic::new(
                topic,
                self.cfg.partitions,
                TopicReplication::Fixed(self.cfg.replication_factor),
            )
        }
    }

    fn is_known(&self, topic: &str) -> bool {
        self.known_topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(topic)
    }

    /// Creates the topics of `topics` this bus has not seen yet (when
    /// [`KafkaConfig::create_topics_on_demand`] is on).
    async fn ensure_known(&self, topics: &[&str], timeout: Duration) -> Result<(), BusError> {
        if !self.cfg.create_topics_on_demand {
            return Ok(());
        }
        let mut missing: Vec<&str> = topics
            .iter()
            .copied()
            .filter(|t| !self.is_known(t))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic<'_>> = missing.iter().map(|t| self.new_topic(t)).collect();
        self.create_topics(&new, timeout, true).await
    }

    fn dlq_new_topic(&self) -> NewTopic<'_> {
        NewTopic::new(
            &self.cfg.dlq_topic,
            self.cfg.dlq_partitions,
            TopicReplication::Fixed(self.cfg.replication_factor),
        )
        .set("retention.ms", DLQ_RETENTION_MS)
    }

    async fn create_topics(
        &self,
        topics: &[NewTopic<'_>],
        timeout: Duration,
        on_demand: bool,
    ) -> Result<(), BusError> {
        let opts = AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout));
        let results = self
            .admin
            .create_topics(topics, &opts)
            .await
            .map_err(|e| unavailable("create topics", e))?;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(name) => {
                    tracing::info!(topic = %name, "created Kafka topic");
                    self.remember(name);
                }
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => self.remember(name),
                Err((name, code)) if on_demand && !is_connectivity(code) => {
                    // Not ours to fix here (e.g. not authorized to create):
                    // let the publish or consumer report what the broker says.
                    tracing::warn!(topic = %name, ?code, "could not create Kafka topic on demand");
                    self.remember(name);
                }
                Err((name, code)) => {
                    first_error.get_or_insert(unavailable(&format!("create topic {name}"), code));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn remember(&self, topic: String) {
        self.known_topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic);
    }

    fn producer(&self) -> FutureProducer {
        self.producer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the producer `used` by a fresh one (a new producer id),
    /// unless a concurrent publish already did. Needed after a fatal error
    /// (the instance cannot produce again) and after the broker rejected the
    /// producer's idempotence state: after delivery timeouts librdkafka bumps
    /// the producer epoch, which Tansu answers with `ProducerFenced` for
    /// every later request.
    fn replace_producer(&self, used: &FutureProducer, why: &str) {
        let mut guard = self
            .producer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.client().native_ptr() != used.client().native_ptr() {
            return;
        }
        match self.cfg.producer_config().create::<FutureProducer>() {
            Ok(fresh) => {
                tracing::warn!(reason = %why, "replaced the Kafka producer");
                let old = std::mem::replace(&mut *guard, fresh);
                drop(guard);
                drop_in_background(old);
            }
            Err(e) => {
                tracing::error!(reason = %why, error = %e, "cannot replace the Kafka producer");
            }
        }
    }

    /// One attempt of [`EventBus::publish`] with `producer`. Also says, per
    /// message, whether its own failure was a rejected producer state (see
    /// [`needs_new_producer`]); replaces the producer after such a failure.
    async fn publish_with(
        &self,
        producer: &FutureProducer,
        messages: &[BusMessage],
    ) -> (Vec<Result<(), PublishError>>, Vec<bool>) {
        let started = Instant::now();
        let topics: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
        // Topic creation failed (broker unreachable): fail fast, retryably,
        // instead of waiting out the delivery timeout as well.
        let unready = self
            .ensure_known(&topics, self.cfg.publish_timeout)
            .await
            .err();
        let enqueue_deadline = started + self.cfg.publish_timeout;
        let mut results: Vec<Option<Result<(), PublishError>>> = vec![None; messages.len()];
        // First failure class per key: later messages of the key are not sent.
        let mut failed: HashMap<&str, ErrorClass> = HashMap::new();
        let mut pending: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(messages.len());
        // An error after which this producer instance must be replaced.
        let mut poisoned: Option<String> = None;
        let mut rejected = vec![false; messages.len()];

        for (i, m) in messages.iter().enumerate() {
            if let Some(&class) = failed.get(m.key.as_str()) {
                results[i] = Some(Err(to_publish_error(
                    class,
                    format!("not sent: an earlier message of key {} failed", m.key),
                )));
                continue;
            }
            if let Some(e) = &unready {
                if !self.is_known(&m.topic) {
                    failed.insert(m.key.as_str(), ErrorClass::Retryable);
                    results[i] = Some(Err(PublishError::Retryable(format!(
                        "topic {} not ready: {e}",
                        m.topic
                    ))));
                    continue;
                }
            }
            let mut record = FutureRecord::to(&m.topic)
                .key(m.key.as_bytes())
                .payload(m.payload.as_slice())
                .headers(record_headers(m));
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push((i, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < enqueue_deadline =>
                    {
                        // The local queue drains as deliveries complete; keep
                        // the call's order by waiting rather than skipping.
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        if needs_new_producer(&e) {
                            poisoned.get_or_insert_with(|| e.to_string());
                            rejected[i] = true;
                        }
                        let class = classify_error(&e);
                        failed.insert(m.key.as_str(), class);
                        results[i] = Some(Err(to_publish_error(class, format!("kafka: {e}"))));
                        break;
                    }
                }
            }
        }

        // librdkafka reports an unanswered message after its timeouts; a
        // report later than that (seen with a connection cut mid-request:
        // reconnect backoff) is not waited for. The producer is replaced
        // then, and the old one's queue purged when it is dropped, so
        // nothing of this call goes out later unnoticed (what was already in
        // flight may: the relay asks the topic before sending it again).
        let reports_by = started + self.cfg.publish_timeout + REPORT_MARGIN;
        for (i, delivery) in pending {
            let report = match tokio::time::timeout_at(reports_by.into(), delivery).await {
                Ok(r) => r,
                Err(_) => {
                    poisoned.get_or_insert_with(|| "delivery reports overdue".to_owned());
                    results[i] = Some(Err(PublishError::Retryable(format!(
                        "kafka: no delivery report within {:?}",
                        self.cfg.publish_timeout + REPORT_MARGIN
                    ))));
                    continue;
                }
            };
            results[i] = Some(match report {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => {
                    if needs_new_producer(&e) {
                        poisoned.get_or_insert_with(|| e.to_string());
                        rejected[i] = true;
                    }
                    Err(publish_error(&e))
                }
                Err(_canceled) => Err(PublishError::Retryable(
                    "kafka: delivery report lost (producer shut down)".to_owned(),
                )),
            });
        }

        // The per-key contract, enforced in call order: after the first
        // failure of a key every later message of the key reports failure,
        // even if the broker acknowledged it (see the crate docs for why
        // that is safe).
        let mut first_failure: HashMap<&str, ErrorClass> = HashMap::new();
        let out: Vec<Result<(), PublishError>> = messages
            .iter()
            .zip(results)
            .map(|(m, r)| {
                let r = r.unwrap_or_else(|| {
                    Err(PublishError::Retryable("kafka: no delivery report".into()))
                });
                match (&r, first_failure.get(m.key.as_str())) {
                    (Ok(()), Some(&class)) => Err(to_publish_error(
                        class,
                        format!(
                            "acknowledged after an earlier message of key {} failed; \
                             reported as failed to keep per-key order",
                            m.key
                        ),
                    )),
                    (Ok(()), None) => r,
                    (Err(e), _) => {
                        let class = match e {
                            PublishError::Retryable(_) => ErrorClass::Retryable,
                            PublishError::Permanent(_) => ErrorClass::Permanent,
                        };
                        first_failure.entry(m.key.as_str()).or_insert(class);
                        r
                    }
                }
            })
            .collect();

        let failures = out.iter().filter(|r| r.is_err()).count();
        if failures > 0 {
            tracing::debug!(failures, "Kafka publish had failures");
            if let Some((code, reason)) = producer.client().fatal_error() {
                poisoned.get_or_insert_with(|| format!("fatal error {code:?}: {reason}"));
            }
            if let Some(why) = poisoned {
                self.replace_producer(producer, &why);
            }
        }
        (out, rejected)
    }
}

/// Errors after which the producer instance is replaced (a fresh producer
/// id and sequence): fatal errors and rejected idempotence state.
fn needs_new_producer(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::Fatal
                | C::ProducerFenced
                | C::InvalidProducerEpoch
                | C::OutOfOrderSequenceNumber
                | C::UnknownProducerId
                | C::InvalidProducerIdMapping
        )
    )
}

/// Errors that say the broker could not be reached (rather than refused).
fn is_connectivity(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::OperationTimedOut
            | C::RequestTimedOut
            | C::TimedOutQueue
            | C::MessageTimedOut
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::NetworkException
            | C::BrokerNotAvailable
            | C::CoordinatorNotAvailable
            | C::NotController
    )
}

/// Destroying a librdkafka handle may block (closing a consumer leaves the
/// group); never do that on an async worker thread.
pub(crate) fn drop_in_background<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || drop(value));
        }
        Err(_) => drop(value),
    }
}

fn record_headers(m: &BusMessage) -> OwnedHeaders {
    m.headers.iter().fold(
        OwnedHeaders::new_with_capacity(m.headers.len()),
        |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_str()),
            })
        },
    )
}

#[async_trait]
impl EventBus for KafkaBus {
    #[tracing::instrument(level = "debug", skip_all, fields(messages = messages.len()))]
    async fn publish(&self, messages: &[BusMessage]) -> Vec<Result<(), PublishError>> {
        if messages.is_empty() {
            return Vec::new();
        }
        let producer = self.producer();
        let (mut out, rejected) = self.publish_with(&producer, messages).await;
        // Possibly the last handle of a replaced instance: destroying it may
        // block.
        drop_in_background(producer);
        // The broker rejected the old producer's state (typically
        // `ProducerFenced` on the first request after an outage) and the
        // producer was replaced: those messages were not appended, so they
        // are sent once more right away with the fresh producer. Per key,
        // from the key's first failure on, in call order (the earlier
        // messages of the key were acknowledged): the per-key contract holds.
        let mut retry_keys: HashSet<&str> = HashSet::new();
        let mut failed_keys: HashSet<&str> = HashSet::new();
        for (i, m) in messages.iter().enumerate() {
            if out[i].is_err() && failed_keys.insert(m.key.as_str()) && rejected[i] {
                retry_keys.insert(m.key.as_str());
            }
        }
        let retry: Vec<usize> = (0..messages.len())
            .filter(|&i| out[i].is_err() && retry_keys.contains(messages[i].key.as_str()))
            .collect();
        if retry.is_empty() {
            return out;
        }
        tracing::debug!(
            messages = retry.len(),
            "retrying with a fresh producer what the old one's state was rejected for"
        );
        let again: Vec<BusMessage> = retry.iter().map(|&i| messages[i].clone()).collect();
        let fresh = self.producer();
        let (results, _) = self.publish_with(&fresh, &again).await;
        drop_in_background(fresh);
        for (i, r) in retry.into_iter().zip(results) {
            out[i] = r;
        }
        out
    }

    async fn check(&self, timeout: Duration) -> Result<String, BusError> {
        let producer = self.producer();
        let brokers = self.cfg.brokers.clone();
        let lookup = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(|md| {
                format!(
                    "kafka at {brokers}: {} broker(s), {} topic(s) (answered by {})",
                    md.brokers().len(),
                    md.topics().len(),
                    md.orig_broker_name()
                )
            })
        });
        // The blocking call honours `timeout`; the margin only guards
        // against it not doing so.
        match tokio::time::timeout(timeout + Duration::from_secs(1), lookup).await {
            Ok(Ok(Ok(desc))) => Ok(desc),
            Ok(Ok(Err(e))) => Err(unavailable(
                &format!("metadata request to {} failed", self.cfg.brokers),
                e,
            )),
            Ok(Err(join)) => Err(unavailable("metadata request aborted", join)),
            Err(_) => Err(BusError::Unavailable(format!(
                "kafka: {} did not answer a metadata request within {timeout:?}",
                self.cfg.brokers
            ))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(messages = messages.len()))]
    async fn find_published(&self, messages: &[BusMessage]) -> Result<HashSet<String>, BusError> {
        let cfg = self.cfg.clone();
        let messages = messages.to_vec();
        let limit = cfg.find_published_budget + cfg.publish_timeout * 4 + Duration::from_secs(1);
        let scan = tokio::task::spawn_blocking(move || published::find_published(&cfg, &messages));
        match tokio::time::timeout(limit, scan).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(unavailable("looking for published messages aborted", join)),
            Err(_) => Err(BusError::Unavailable(format!(
                "kafka: {} did not answer while looking for published messages",
                self.cfg.brokers
            ))),
        }
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.ensure_known(&[topic], self.cfg.admin_timeout).await?;
        let sub = consumer::KafkaSubscription::new(&self.cfg, group, topic)?;
        Ok(Box::new(sub))
    }
}
