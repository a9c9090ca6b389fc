//! Topic administration: creating the event and DLQ topics (at start-up
//! and, when [`KafkaConfig::create_topics_on_demand`] is on, before the
//! first use of any topic) and remembering which topics are known to exist.
//! Kept apart from publishing and consuming, which only ask it whether a
//! topic is ready.

use std::time::Duration;

use order_core::ports::BusError;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

#[cfg(doc)]
use crate::KafkaConfig;
use crate::{unavailable, KafkaBus};

/// Retention of the DLQ topic: 7 days.
pub const DLQ_RETENTION_MS: &str = "604800000";

impl KafkaBus {
    /// Creates the event topic (configured partitions) and the DLQ topic
    /// (`retention.ms=604800000`) when missing; an existing topic is left as
    /// it is.
    pub async fn ensure_topics(&self) -> Result<(), BusError> {
        let events = self.topic_spec(&self.cfg.events_topic, self.cfg.partitions);
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
            self.topic_spec(topic, self.cfg.partitions)
        }
    }

    /// A topic with `partitions`, the configured replication factor (the
    /// broker's default when it is -1) and `min.insync.replicas`.
    fn topic_spec<'a>(&'a self, topic: &'a str, partitions: i32) -> NewTopic<'a> {
        let spec = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(self.cfg.replication_factor),
        );
        match &self.min_insync_replicas {
            Some(min) => spec.set("min.insync.replicas", min),
            None => spec,
        }
    }

    pub(crate) fn is_known(&self, topic: &str) -> bool {
        self.known_topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(topic)
    }

    /// Creates the topics of `topics` this bus has not seen yet (when
    /// [`KafkaConfig::create_topics_on_demand`] is on).
    pub(crate) async fn ensure_known(
        &self,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<(), BusError> {
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
        self.topic_spec(&self.cfg.dlq_topic, self.cfg.dlq_partitions)
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
