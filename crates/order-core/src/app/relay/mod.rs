//! Where an event goes after commit: the outbox relay takes outbox rows in
//! global order and publishes them with the retry policy. What cannot be
//! published is parked in the DLQ; an order whose earlier event is parked has
//! its later events parked behind it (`blocked_by`) so per-order order holds
//! while other orders keep flowing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex, Notify};

use super::dlq::sequencing;
use super::metrics::Metrics;
use crate::domain::now;
use crate::ports::{
    DlqSource, DlqStore, EventBus, FailureClass, NewDlqRecord, Outbox, OutboxMessage, ParkedEvent,
    PublishError, StoreError,
};

pub mod fault;
pub mod retry;
pub mod wire;

pub use fault::{FaultSwitch, SwitchableBus};
pub use retry::{publish_with_retry, republish, send_unless_found, RetryPolicy, SendResult, Sent};
pub use wire::{message_for, POSITION_HEADER};

/// Serialises everything that publishes an order's events (the relay and
/// DLQ replays), so a replayed sequence and newer outbox rows of the same
/// order cannot interleave.
pub type PublishGate = Arc<Mutex<()>>;

#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub topic: String,
    pub batch_size: usize,
    pub policy: RetryPolicy,
    /// How long an idle relay sleeps when nothing wakes it.
    pub idle_poll: Duration,
    /// After a wake-up that found less than a full batch, how long the relay
    /// lets commits accumulate before the next batch. Bigger batches mean
    /// fewer bus and outbox transactions; this bounds the added publish lag.
    pub linger: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub delivered: usize,
    pub parked: usize,
}

impl RelayReport {
    pub fn is_empty(&self) -> bool {
        self.delivered == 0 && self.parked == 0
    }
}

pub struct OutboxRelay {
    outbox: Arc<dyn Outbox>,
    dlq: Arc<dyn DlqStore>,
    bus: Arc<dyn EventBus>,
    gate: PublishGate,
    cfg: RelayConfig,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
}

impl OutboxRelay {
    pub fn new(
        outbox: Arc<dyn Outbox>,
        dlq: Arc<dyn DlqStore>,
        bus: Arc<dyn EventBus>,
        gate: PublishGate,
        cfg: RelayConfig,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            outbox,
            dlq,
            bus,
            gate,
            cfg,
            metrics,
            wake,
        }
    }

    /// Runs until `shutdown` turns true, draining the outbox whenever a
    /// commit wakes it (or every `idle_poll`).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.run_once().await {
                Ok(r) if r.delivered + r.parked >= self.cfg.batch_size => continue,
                Ok(r) => {
                    if r.is_empty() {
                        tokio::select! {
                            _ = self.wake.notified() => {}
                            _ = tokio::time::sleep(self.cfg.idle_poll) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                    if !self.cfg.linger.is_zero() {
                        tokio::time::sleep(self.cfg.linger).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay could not read the outbox; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// Takes one batch of outbox rows and delivers or parks every one of them.
    pub async fn run_once(&self) -> Result<RelayReport, StoreError> {
        let _gate = self.gate.lock().await;
        let batch = self.outbox.fetch_batch(self.cfg.batch_size).await?;
        if batch.is_empty() {
            return Ok(RelayReport::default());
        }
        let aggregates: Vec<String> = batch
            .iter()
            .map(|m| m.envelope.aggregate_id.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let heads = sequencing::unresolved_heads(self.dlq.as_ref(), &aggregates).await?;

        let mut parked = Vec::new();
        let mut to_send: Vec<&OutboxMessage> = Vec::new();
        for m in &batch {
            match heads.get(&m.envelope.aggregate_id) {
                Some(head) => parked.push(self.park(
                    m,
                    format!("held behind unresolved event {head} of the same order"),
                    None,
                    Some(head.clone()),
                )),
                None => to_send.push(m),
            }
        }

        let messages: Vec<_> = to_send
            .iter()
            .map(|m| message_for(&m.envelope, &self.cfg.topic, Some(m.position)))
            .collect();
        // A predecessor (a crashed process, or the instance this one took
        // the relay lease from) may have published these without settling
        // them: ask the bus before sending.
        let (bus, policy) = (self.bus.as_ref(), self.cfg.policy);
        let results = if self.outbox.last_batch_maybe_sent() {
            republish(bus, policy, &messages, &self.metrics).await
        } else {
            publish_with_retry(bus, policy, &messages, &self.metrics).await
        };

        let acked_at = now();
        let mut delivered = Vec::new();
        let mut new_heads: HashMap<String, String> = HashMap::new();
        for (m, r) in to_send.iter().zip(results) {
            match r {
                Ok(_) => {
                    delivered.push(m.position);
                    let lag = (acked_at - m.created_at).num_microseconds().unwrap_or(0);
                    self.metrics.publish_lag.observe_secs(lag as f64 / 1e6);
                }
                Err(e) => {
                    let agg = m.envelope.aggregate_id.clone();
                    match new_heads.get(&agg) {
                        Some(head) => {
                            let reason = format!(
                                "held behind unresolved event {head} of the same order ({e})"
                            );
                            parked.push(self.park(
                                m,
                                reason,
                                Some(FailureClass::of(&e)),
                                Some(head.clone()),
                            ));
                        }
                        None => {
                            tracing::warn!(
                                event_id = %m.envelope.event_id,
                                aggregate_id = %agg,
                                error = %e,
                                "publish retries exhausted; event parked in the DLQ"
                            );
                            new_heads.insert(agg, m.envelope.event_id.to_string());
                            parked.push(self.park(
                                m,
                                publish_failed_reason(&e),
                                Some(FailureClass::of(&e)),
                                None,
                            ));
                        }
                    }
                }
            }
        }
        Metrics::add(&self.metrics.events_published, delivered.len() as u64);
        Metrics::add(&self.metrics.events_parked, parked.len() as u64);
        self.outbox.settle(&delivered, &parked).await?;
        Ok(RelayReport {
            delivered: delivered.len(),
            parked: parked.len(),
        })
    }

    fn park(
        &self,
        m: &OutboxMessage,
        reason: String,
        class: Option<FailureClass>,
        blocked_by: Option<String>,
    ) -> ParkedEvent {
        ParkedEvent {
            position: m.position,
            record: parked_record(&m.envelope, &self.cfg.topic, reason, class, blocked_by),
        }
    }
}

/// Failure reason of a sequence head the relay parks; the error's class is
/// stored beside it ([`FailureClass`]) for the automatic redrive.
pub fn publish_failed_reason(e: &PublishError) -> String {
    format!("publish failed after retries: {e}")
}

/// The DLQ record for an event that could not be published.
pub fn parked_record(
    env: &crate::domain::EventEnvelope,
    topic: &str,
    reason: String,
    class: Option<FailureClass>,
    blocked_by: Option<String>,
) -> NewDlqRecord {
    NewDlqRecord {
        event_id: env.event_id.to_string(),
        aggregate_id: env.aggregate_id.clone(),
        event_type: env.event_type.clone(),
        version: Some(env.version),
        original_event: env.to_json(),
        failure_reason: reason,
        failure_class: class,
        failure_time: now(),
        source: DlqSource::Publish,
        blocked_by,
        topic: topic.to_owned(),
        origin: None,
    }
}
