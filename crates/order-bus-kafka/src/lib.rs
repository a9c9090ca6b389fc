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
//!
//! # Where things are
//!
//! * `config`: [`KafkaConfig`] and the librdkafka settings of each client.
//! * `bus`: [`KafkaBus`], its clients and its [`EventBus`] implementation.
//! * `producer`: publishing, the per-key contract and producer recovery.
//! * `admin`: topic creation ([`KafkaBus::ensure_topics`], on demand).
//! * `consumer`: subscriptions and offset commits.
//! * `published`: looking for what an unanswered attempt may have delivered.
//! * `classify`: librdkafka errors as retryable or permanent ([`ErrorClass`]).

use order_core::ports::BusError;
#[cfg(doc)]
use order_core::ports::{EventBus, Subscription};

mod access;
mod admin;
mod bus;
mod classify;
mod config;
mod consumer;
mod producer;
mod published;

pub use access::Access;
pub use admin::DLQ_RETENTION_MS;
pub use bus::KafkaBus;
pub use classify::{classify_code, classify_error, publish_error, ErrorClass};
pub use config::{check_properties, KafkaConfig, DEFAULT_BATCH_MESSAGES};
/// librdkafka's error codes, re-exported for callers of [`classify_code`].
pub use rdkafka::types::RDKafkaErrorCode;

pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("kafka: {what}: {e}"))
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
