//! Where an event goes after commit: the outbox relay takes outbox rows in
//! global order and publishes them with the retry policy. What cannot be
//! published is parked in the DLQ; an order whose earlier event is parked has
//! its later events parked behind it (`blocked_by`) so per-order order holds
//! while other orders keep flowing.
//!
//! Several instances share the work by partition ([`partitions`]): each
//! relays only the buckets of the partitions it leases, and writes a batch's
//! outcome only under the fences of those leases, so a relay that lost a
//! lease publishes nothing more and settles nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::dlq::sequencing;
use super::metrics::Metrics;
use crate::domain::now;
use crate::ports::{
    DlqSource, DlqStore, EventBus, FailureClass, NewDlqRecord, Outbox, OutboxFetch, OutboxMessage,
    ParkedEvent, PublishError, Settled, Settlement, StoreError,
};

pub mod fault;
pub mod partitions;
pub mod retry;
pub mod wire;

pub use fault::{FaultSwitch, SwitchableBus};
pub use partitions::{PartitionConfig, Partitions};
pub use retry::{Publisher, RetryPolicy, SendResult, Sent};
pub use wire::{message_for, message_with_payload, POSITION_HEADER, TRACEPARENT_HEADER};

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
    /// The longest one batch may take to publish (every attempt timing out,
    /// plus the backoffs): a partition whose lease lasts less than this is
    /// not published from until renewed.
    pub publish_budget: Duration,
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

/// Longest pause between two rounds of partition keeping.
const KEEP_PERIOD_MAX: Duration = Duration::from_secs(2);

/// What the relay reads, writes and publishes to.
pub struct RelayPorts {
    pub outbox: Arc<dyn Outbox>,
    pub dlq: Arc<dyn DlqStore>,
    pub bus: Arc<dyn EventBus>,
}

pub struct OutboxRelay {
    pub ports: RelayPorts,
    pub partitions: Arc<Partitions>,
    pub cfg: RelayConfig,
    pub metrics: Arc<Metrics>,
    /// Notified by each commit.
    pub wake: Arc<Notify>,
}

impl OutboxRelay {
    /// Keeps this instance's partitions (heartbeat, renewal, fair share)
    /// until `shutdown`, then gives them up.
    pub async fn keep_partitions(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        // Every third of a lease, and at least every 2 s so a newcomer gets
        // its share quickly (a few statements per tick).
        let period = (self.partitions.lease() / 3).min(KEEP_PERIOD_MAX);
        loop {
            if let Err(e) = self.partitions.tick().await {
                tracing::warn!(error = %e, "could not renew or balance relay partitions; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        if let Err(e) = self.partitions.leave().await {
            tracing::warn!(error = %e, "could not release relay partitions; they lapse after one lease");
        }
    }

    /// Runs until `shutdown` turns true, draining the outbox whenever a
    /// commit wakes it (or every `idle_poll`).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let keeper = tokio::spawn(self.clone().keep_partitions(shutdown.clone()));
        self.relay_until(&mut shutdown).await;
        if let Err(e) = keeper.await {
            tracing::warn!(error = %e, "the relay partition keeper stopped abnormally");
        }
    }

    async fn relay_until(&self, shutdown: &mut watch::Receiver<bool>) {
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

    /// Takes one batch of outbox rows of the partitions this instance holds
    /// and delivers or parks every one of them.
    pub async fn run_once(&self) -> Result<RelayReport, StoreError> {
        let _batch = self.partitions.batch.lock().await;
        let budget = self.cfg.publish_budget;
        let usable = self.partitions.usable(budget);
        if usable.is_empty() {
            return Ok(RelayReport::default());
        }
        let fences: Vec<_> = usable.iter().map(|h| h.fence).collect();
        let ranges: Vec<_> = usable.iter().map(|h| h.buckets.clone()).collect();
        // A predecessor (a crashed process, the instance this one took a
        // partition from, or this one when a settle failed) may have
        // published these without settling them: ask the bus before sending.
        let maybe_sent = usable.iter().any(|h| h.maybe_sent);
        let batch = self
            .ports
            .outbox
            .fetch_batch(OutboxFetch {
                buckets: &ranges,
                limit: self.cfg.batch_size,
            })
            .await?;
        if batch.is_empty() {
            return Ok(RelayReport::default());
        }
        let aggregates: Vec<String> = batch
            .iter()
            .map(|m| m.envelope.aggregate_id.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let heads = sequencing::unresolved_heads(self.ports.dlq.as_ref(), &aggregates).await?;

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
            .map(|m| {
                message_with_payload(
                    &m.envelope,
                    &self.cfg.topic,
                    Some(m.position),
                    m.payload.clone(),
                )
            })
            .collect();
        // The heads were read under the leases; sending needs them to last
        // the whole publish, or a successor could send the same rows.
        if !self.partitions.all_last(&fences, budget) {
            return Ok(RelayReport::default());
        }
        self.partitions.mark_maybe_sent(&fences, true);
        let publisher = self.publisher();
        let attempt_budget = budget / publisher.policy.max_attempts.max(1);
        let may_retry = || self.partitions.all_last(&fences, attempt_budget);
        let results = publisher
            .send_while(&messages, maybe_sent, &may_retry)
            .await;
        // Only a relay that still holds its leases decides what to park; one
        // whose lease ran out meanwhile leaves the failures in the outbox.
        let firm = self.partitions.all_last(&fences, Duration::ZERO);

        let acked_at = now();
        // Failures left in the outbox (not parked) may have landed: the
        // next batch asks the bus about them first.
        let mut left_unsure = false;
        let mut delivered = Vec::new();
        let mut new_heads: HashMap<String, String> = HashMap::new();
        for (m, r) in to_send.iter().zip(results) {
            match r {
                Ok(_) => {
                    delivered.push(m.position);
                    let lag = (acked_at - m.created_at).num_microseconds().unwrap_or(0);
                    self.metrics.publish_lag.observe_secs(lag as f64 / 1e6);
                }
                Err(_) if !firm => left_unsure = true,
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
        let settlement = Settlement {
            holder: self.partitions.instance().to_owned(),
            fences,
            delivered,
            parked,
        };
        match self.ports.outbox.settle(&settlement).await {
            Ok(Settled::Done { held_back }) => {
                self.partitions
                    .mark_maybe_sent(&settlement.fences, left_unsure);
                let parked = settlement.parked.len() - held_back.len();
                Metrics::add(
                    &self.metrics.events_published,
                    settlement.delivered.len() as u64,
                );
                Metrics::add(&self.metrics.events_parked, parked as u64);
                if !held_back.is_empty() {
                    tracing::info!(
                        rows = held_back.len(),
                        "events left in the outbox: their DLQ head was resolved meanwhile"
                    );
                }
                Ok(RelayReport {
                    delivered: settlement.delivered.len(),
                    parked,
                })
            }
            Ok(Settled::Fenced(lost)) => {
                Metrics::inc(&self.metrics.relay_fenced);
                self.partitions.drop_fenced(&lost);
                Ok(RelayReport::default())
            }
            Err(e) => Err(e),
        }
    }

    fn publisher(&self) -> Publisher<'_> {
        Publisher {
            bus: self.ports.bus.as_ref(),
            policy: self.cfg.policy,
            metrics: &self.metrics,
        }
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
        consumer_group: None,
        imported: None,
    }
}
