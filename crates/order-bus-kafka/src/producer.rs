//! The publishing side of the bus: the idempotent producer, one publish
//! attempt with its per-key contract ([`KafkaBus::publish_with`]), the
//! retry with a fresh producer after the broker rejected the old one's
//! idempotence state, and the replacement of a poisoned producer. The
//! crate docs explain the guarantees; this module is how they are kept.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[cfg(doc)]
use order_core::ports::EventBus;
use order_core::ports::{dlt, BusMessage, PublishError};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::classify::{classify_error, publish_error, to_publish_error, ErrorClass};
use crate::{drop_in_background, KafkaBus};

/// How long past the publish timeout a call waits for delivery reports.
const REPORT_MARGIN: Duration = Duration::from_secs(1);

impl KafkaBus {
    pub(crate) fn producer(&self) -> FutureProducer {
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

    /// [`EventBus::publish`]: one attempt, then, for the keys whose failure
    /// was a rejected producer state, one more with the fresh producer.
    pub(crate) async fn publish_all(
        &self,
        messages: &[BusMessage],
    ) -> Vec<Result<(), PublishError>> {
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

/// The message's headers as Kafka carries them: text as UTF-8, except
/// Spring's integer dead-letter headers (see [`dlt::to_wire`]).
fn record_headers(m: &BusMessage) -> OwnedHeaders {
    m.headers.iter().fold(
        OwnedHeaders::new_with_capacity(m.headers.len()),
        |h, (k, v)| match dlt::binary_width(k) {
            None => h.insert(Header {
                key: k,
                value: Some(v.as_str()),
            }),
            Some(_) => h.insert(Header {
                key: k,
                value: Some(&dlt::to_wire(k, v)),
            }),
        },
    )
}
