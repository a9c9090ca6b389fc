//! The start-up probe: does the cluster let us in? A broker that is down
//! must not stop the service (the outbox keeps the events), but a refused
//! TLS handshake or SASL login is a configuration error that waiting will
//! not fix. librdkafka retries both silently, so the probe listens for the
//! errors it reports while it asks for metadata.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::KafkaConfig;

/// What the probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// A broker answered a metadata request.
    Granted,
    /// The cluster refused us: wrong credentials, an untrusted certificate
    /// or a TLS handshake that failed. The message is librdkafka's.
    Refused(String),
    /// No broker answered within the time (down, unreachable, or slow).
    NoAnswer(String),
}

/// Collects the errors librdkafka reports that say "refused".
#[derive(Default)]
struct Listener {
    refused: Mutex<Option<String>>,
}

impl ClientContext for Listener {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if matches!(
            code,
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
        ) {
            let mut slot = self
                .refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            slot.get_or_insert_with(|| reason.to_owned());
        }
    }
}

impl ProducerContext for Listener {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Sends metadata requests for up to `timeout` and reports the first
/// refusal, the first answer, or silence. Blocking: run it off the runtime.
pub(crate) fn probe(cfg: &KafkaConfig, timeout: Duration) -> Access {
    let producer: BaseProducer<Listener> =
        match cfg.admin_config().create_with_context(Listener::default()) {
            Ok(p) => p,
            Err(e) => return Access::Refused(e.to_string()),
        };
    let refused = || {
        producer
            .context()
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    loop {
        // Serves the error callbacks.
        producer.poll(Duration::from_millis(50));
        if let Some(why) = refused() {
            return Access::Refused(why);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Access::NoAnswer(last);
        }
        match producer
            .client()
            .fetch_metadata(None, left.min(Duration::from_millis(500)))
        {
            Ok(_) => return refused().map_or(Access::Granted, Access::Refused),
            Err(e) => last = e.to_string(),
        }
    }
}
