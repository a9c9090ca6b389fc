//! The consuming side: a [`Subscription`] backed by a `StreamConsumer` in a
//! consumer group, committing offsets only when asked.
//!
//! **Resuming inside a record batch.** A Kafka broker answers a fetch at an
//! offset in the middle of a record batch with the whole batch, and the
//! client skips the records before the offset. Tansu (the test broker) only
//! returns batches that *start* at or after the fetch offset, so a consumer
//! resuming from a committed offset inside a batch would silently skip the
//! rest of that batch. The subscription therefore starts every assigned
//! partition that has a committed offset `c` a little earlier, at
//! `c - rewind` (`rewind` = the producer's `batch.num.messages`, so the
//! batch holding `c` starts inside the window), and drops every record below
//! `c` itself. Against Kafka this only re-reads (and drops) at most one
//! batch per partition after a rebalance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use order_core::ports::{dlt, BusError, Delivery, Subscription};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::{drop_in_background, unavailable, KafkaConfig};

/// Per (topic, partition): the committed offset the group resumed from;
/// records below it were already processed.
type Floors = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// Assigns partitions itself so it can start them before the committed
/// offset (see the module docs).
pub(crate) struct RewindContext {
    rewind: i64,
    timeout: Duration,
    floors: Floors,
}

impl ClientContext for RewindContext {}

impl RewindContext {
    fn floors(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), i64>> {
        self.floors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets each newly assigned partition's start to `committed - rewind`
    /// and records the committed offset as its floor. Partitions without a
    /// committed offset start as `auto.offset.reset` says.
    fn rewind(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let committed = match consumer.committed_offsets(tpl.clone(), self.timeout) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not read committed offsets on assignment; \
                                           starting at them without a rewind");
                return;
            }
        };
        let mut floors = self.floors();
        for elem in committed.elements() {
            let key = (elem.topic().to_owned(), elem.partition());
            let Offset::Offset(c) = elem.offset() else {
                floors.remove(&key);
                continue;
            };
            let start = c.saturating_sub(self.rewind).max(0);
            if let Err(e) = tpl.set_partition_offset(&key.0, key.1, Offset::Offset(start)) {
                tracing::warn!(error = %e, topic = %key.0, partition = key.1, "cannot set start offset");
                continue;
            }
            floors.insert(key, c);
        }
    }
}

impl ConsumerContext for RewindContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.rewind(consumer, tpl);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                {
                    let mut floors = self.floors();
                    for elem in tpl.elements() {
                        floors.remove(&(elem.topic().to_owned(), elem.partition()));
                    }
                }
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::warn!(error = %code, "Kafka rebalance error; dropping the assignment");
                self.floors().clear();
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "Kafka (un)assignment failed");
        }
    }
}

/// A consumer-group member on one topic.
pub(crate) struct KafkaSubscription {
    /// `None` only while dropping.
    consumer: Option<Arc<StreamConsumer<RewindContext>>>,
    topic: String,
    group: String,
    cfg: KafkaConfig,
    commit_timeout: Duration,
    /// Whether this member ever had partitions, and since when it has none.
    had_partitions: bool,
    unassigned_since: Option<std::time::Instant>,
}

/// How long a member that had partitions may go without any before it
/// rejoins with a fresh consumer. Tansu 0.6 can leave a member whose session
/// expired during a broker hang in an endless JoinGroup/SyncGroup loop ("rebalance
/// in progress" / "unknown member") while a new member joins at once.
fn stall_limit(cfg: &KafkaConfig) -> Duration {
    (cfg.max_poll_interval * 3).clamp(Duration::from_secs(15), Duration::from_secs(120))
}

fn create_consumer(
    cfg: &KafkaConfig,
    group: &str,
    topic: &str,
) -> Result<StreamConsumer<RewindContext>, BusError> {
    let ctx = RewindContext {
        rewind: cfg.max_batch_messages(),
        timeout: cfg.admin_timeout,
        floors: Arc::default(),
    };
    let consumer: StreamConsumer<RewindContext> = cfg
        .consumer_config(group)
        .create_with_context(ctx)
        .map_err(|e| unavailable("cannot create consumer", e))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| unavailable(&format!("cannot subscribe to {topic}"), e))?;
    Ok(consumer)
}

impl KafkaSubscription {
    pub(crate) fn new(cfg: &KafkaConfig, group: &str, topic: &str) -> Result<Self, BusError> {
        Ok(Self {
            consumer: Some(Arc::new(create_consumer(cfg, group, topic)?)),
            topic: topic.to_owned(),
            group: group.to_owned(),
            cfg: cfg.clone(),
            commit_timeout: cfg.admin_timeout,
            had_partitions: false,
            unassigned_since: None,
        })
    }

    /// Rejoins with a fresh consumer when this member lost its partitions and
    /// has not got any back for [`stall_limit`]. Uncommitted messages are
    /// delivered again to the new member (at least once).
    fn watch_assignment(&mut self) {
        let Some(consumer) = self.consumer.as_ref() else {
            return;
        };
        let assigned = consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false);
        if assigned {
            self.had_partitions = true;
            self.unassigned_since = None;
            return;
        }
        if !self.had_partitions {
            return;
        }
        let since = *self
            .unassigned_since
            .get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < stall_limit(&self.cfg) {
            return;
        }
        match create_consumer(&self.cfg, &self.group, &self.topic) {
            Ok(fresh) => {
                tracing::warn!(
                    group = %self.group,
                    topic = %self.topic,
                    after = ?since.elapsed(),
                    "Kafka consumer lost its partitions and did not get them back; rejoining with a fresh consumer"
                );
                if let Some(old) = self.consumer.replace(Arc::new(fresh)) {
                    drop_in_background(old);
                }
                self.had_partitions = false;
                self.unassigned_since = None;
            }
            Err(e) => tracing::warn!(error = %e, "could not create a fresh Kafka consumer"),
        }
    }

    fn consumer(&self) -> Result<Arc<StreamConsumer<RewindContext>>, BusError> {
        self.consumer
            .clone()
            .ok_or_else(|| BusError::Unavailable("kafka: subscription closed".into()))
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        // Closing leaves the group (without committing: auto-commit is off).
        if let Some(consumer) = self.consumer.take() {
            drop_in_background(consumer);
        }
    }
}

fn to_delivery(m: &BorrowedMessage<'_>) -> Delivery {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value
                            .map(|v| dlt::from_wire(h.key, v))
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Delivery {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
        timestamp: m
            .timestamp()
            .to_millis()
            .and_then(chrono::DateTime::from_timestamp_millis),
    }
}

/// Whether a record lies below its partition's floor (already processed).
fn below_floor(consumer: &StreamConsumer<RewindContext>, m: &BorrowedMessage<'_>) -> bool {
    let floors = consumer.context().floors();
    floors
        .get(&(m.topic().to_owned(), m.partition()))
        .is_some_and(|&floor| m.offset() < floor)
}

/// Consumer errors worth reporting to the caller; the others (a topic not
/// yet known, a broker connection that librdkafka re-establishes, …) are
/// logged and waited out.
fn consumer_error_is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumptionFatal(_))
        || matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::Fatal
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::GroupAuthorizationFailed
            )
        )
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        self.watch_assignment();
        let consumer = self.consumer()?;
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let deadline = tokio::time::Instant::now() + wait;
        // The first message: wait for it at most until the deadline.
        while out.is_empty() {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_elapsed) => return Ok(out),
                Ok(Ok(m)) => {
                    if !below_floor(&consumer, &m) {
                        out.push(to_delivery(&m));
                    }
                }
                Ok(Err(e)) if consumer_error_is_fatal(&e) => {
                    return Err(unavailable(&format!("consuming {}", self.topic), e));
                }
                Ok(Err(e)) => {
                    tracing::debug!(topic = %self.topic, error = %e, "Kafka consumer error");
                }
            }
        }
        // Whatever is already fetched, without waiting.
        while out.len() < max {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(m)) => {
                    if !below_floor(&consumer, &m) {
                        out.push(to_delivery(&m));
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(topic = %self.topic, error = %e, "Kafka consumer error");
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        Ok(out)
    }

    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        if delivery.topic != self.topic {
            return Err(BusError::Unavailable(format!(
                "kafka: cannot commit an offset of topic {} on a subscription to {}",
                delivery.topic, self.topic
            )));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &delivery.topic,
            delivery.partition,
            Offset::Offset(delivery.offset.saturating_add(1)),
        )
        .map_err(|e| unavailable("commit", e))?;
        let consumer = self.consumer()?;
        let commit = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync));
        match tokio::time::timeout(self.commit_timeout, commit).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(unavailable(
                &format!(
                    "commit {}/{}/{}",
                    delivery.topic, delivery.partition, delivery.offset
                ),
                e,
            )),
            Ok(Err(join)) => Err(unavailable("commit aborted", join)),
            Err(_) => Err(BusError::Unavailable(format!(
                "kafka: commit of {}/{}/{} not confirmed within {:?}",
                delivery.topic, delivery.partition, delivery.offset, self.commit_timeout
            ))),
        }
    }

    async fn lag(&mut self) -> Result<u64, BusError> {
        let consumer = self.consumer()?;
        let timeout = self.cfg.publish_timeout;
        let measure = tokio::task::spawn_blocking(move || -> Result<u64, BusError> {
            let position = consumer
                .position()
                .map_err(|e| unavailable("consumer position", e))?;
            let mut lag = 0u64;
            for elem in position.elements() {
                let (low, high) = consumer
                    .fetch_watermarks(elem.topic(), elem.partition(), timeout)
                    .map_err(|e| unavailable("watermarks", e))?;
                let at = match elem.offset() {
                    Offset::Offset(o) => o,
                    // Nothing consumed yet in this session: from the commit,
                    // or from the start (`auto.offset.reset=earliest`).
                    _ => committed_offset(&consumer, elem.topic(), elem.partition(), timeout)
                        .unwrap_or(low),
                };
                lag += u64::try_from(high.saturating_sub(at.max(low))).unwrap_or(0);
            }
            Ok(lag)
        });
        match tokio::time::timeout(self.commit_timeout, measure).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(unavailable("lag measurement aborted", join)),
            Err(_) => Err(BusError::Unavailable(
                "kafka: the broker did not answer a lag measurement".into(),
            )),
        }
    }
}

fn committed_offset(
    consumer: &StreamConsumer<RewindContext>,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer.committed_offsets(tpl, timeout).ok()?;
    let elem = committed.find_partition(topic, partition)?;
    match elem.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}
