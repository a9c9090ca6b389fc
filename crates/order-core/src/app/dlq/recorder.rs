//! The DLQ recorder: consumers that cannot process a message send it to the
//! DLQ topic; the recorder turns those messages into DLQ records (source
//! CONSUMER), deduplicated by event id. A message that is not an envelope is
//! recorded as malformed, so nothing on that topic is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::sequencing;
use crate::app::metrics::Metrics;
use crate::app::projector::{consume_loop, message_span};
use crate::domain::{now, EventEnvelope};
use crate::ports::dlt;
use crate::ports::{Delivery, DlqSource, DlqStore, NewDlqRecord, StoreError, Subscription};

/// Records DLQ-topic messages as DLQ records (source CONSUMER), deduplicated
/// by event id; a message that is not an envelope is recorded as malformed.
pub struct DlqRecorder {
    dlq: Arc<dyn DlqStore>,
    events_topic: String,
    metrics: Arc<Metrics>,
}

impl DlqRecorder {
    pub fn new(dlq: Arc<dyn DlqStore>, events_topic: String, metrics: Arc<Metrics>) -> Self {
        Self {
            dlq,
            events_topic,
            metrics,
        }
    }

    pub fn to_record(&self, d: &Delivery) -> NewDlqRecord {
        use dlt as h;
        let reason = d
            .header(h::EXCEPTION_MESSAGE)
            .unwrap_or("no failure reason given")
            .to_owned();
        let failure_time = d
            .header(h::FAILED_AT)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(now, |t| t.with_timezone(&chrono::Utc));
        let topic = d
            .header(h::ORIGINAL_TOPIC)
            .unwrap_or(&self.events_topic)
            .to_owned();
        let origin = Some(
            match (
                d.header(h::ORIGINAL_PARTITION),
                d.header(h::ORIGINAL_OFFSET),
            ) {
                (Some(p), Some(o)) => format!("{topic}/{p}/{o}"),
                _ => format!("{}/{}/{}", d.topic, d.partition, d.offset),
            },
        );
        let text = String::from_utf8_lossy(&d.payload).into_owned();
        let (event_id, aggregate_id, event_type, version, failure_reason) =
            match serde_json::from_slice::<EventEnvelope>(&d.payload) {
                Ok(env) => (
                    env.event_id.to_string(),
                    env.aggregate_id,
                    env.event_type,
                    Some(env.version),
                    reason,
                ),
                Err(e) => (
                    d.header("eventId")
                        .or_else(|| d.header("ce_id"))
                        .map_or_else(
                            || format!("malformed-{}-{}-{}", d.topic, d.partition, d.offset),
                            str::to_owned,
                        ),
                    d.key.clone().unwrap_or_else(|| "unknown".to_owned()),
                    "MALFORMED".to_owned(),
                    None,
                    format!("malformed message ({e}); {reason}"),
                ),
            };
        NewDlqRecord {
            event_id,
            aggregate_id,
            event_type,
            version,
            original_event: text,
            failure_reason,
            failure_class: None,
            failure_time,
            source: DlqSource::Consumer,
            blocked_by: None,
            topic,
            origin,
            consumer_group: d
                .header(h::ORIGINAL_CONSUMER_GROUP)
                .filter(|g| !g.trim().is_empty())
                .map(str::to_owned),
            imported: None,
        }
    }

    pub async fn record(&self, deliveries: &[Delivery]) -> Result<usize, StoreError> {
        let records: Vec<NewDlqRecord> = deliveries.iter().map(|d| self.to_record(d)).collect();
        let n = sequencing::record(self.dlq.as_ref(), &records).await?;
        Metrics::add(&self.metrics.dead_letters_recorded, n as u64);
        // Dead letters are rare: one line each, in a span with the trace id
        // of the request that caused the event (from `ce_traceparent`, which
        // the projector's dead letter keeps, or from the envelope).
        for (d, r) in deliveries.iter().zip(&records) {
            let env = serde_json::from_slice::<EventEnvelope>(&d.payload).ok();
            let _span = message_span(d, env.as_ref()).entered();
            tracing::info!(
                event_id = %r.event_id,
                event_type = %r.event_type,
                aggregate_id = %r.aggregate_id,
                "DLQ recorder recorded a dead letter"
            );
        }
        Ok(n)
    }

    pub async fn run(
        self: Arc<Self>,
        mut sub: Box<dyn Subscription>,
        shutdown: watch::Receiver<bool>,
    ) {
        consume_loop(
            &mut sub,
            shutdown,
            500,
            Duration::ZERO,
            "dlq-recorder",
            &self.metrics.dlq_recorder_lag,
            |d| {
                let this = self.clone();
                async move { this.record(&d).await.map(|_| ()) }
            },
        )
        .await;
    }
}
