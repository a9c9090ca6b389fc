//! The operator's side of the DLQ: inspect, replay (a sequence head publishes
//! everything held behind it, in order), reset, skip. Every action is
//! audited under the principal that asked (see [`crate::app::audit`]).
//!
//! Bulk replay (`bulk.rs`) and the synthetic test publish
//! (`test_publish.rs`) are further `impl DlqService` blocks in their
//! own files: they build on the single replay here but are separate
//! operator features, and this file stays readable without them.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::renew::while_renewing;
use super::sequencing::{self, Changed, SkipDone};
use crate::app::audit::Auditor;
use crate::app::error::AppError;
use crate::app::metrics::Metrics;
use crate::app::principal::Principal;
use crate::app::relay::{message_for, Publisher, RetryPolicy, SendResult, Sent};
use crate::domain::{now, EventEnvelope};
use crate::ports::{
    AuditAction, BusMessage, DlqRecord, DlqSource, DlqStats, DlqStatus, DlqStore, EventBus,
    FailureClass, ReplayClaim,
};

pub use super::bulk::{BulkReplayOutcome, BulkReplayRequest, BULK_REPLAY_MAX, JOB_LIMIT_MAX};
pub use super::test_publish::{TestPublishOutcome, TEST_AGGREGATE_TYPE};

/// Answer of a replay, with the original service's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplayOutcome {
    pub event_id: String,
    pub success: bool,
    /// REPLAYED, FAILED, or SKIPPED when nothing needed publishing.
    pub status: DlqStatus,
    pub message: String,
    /// Messages this request put on the bus (the record plus those behind
    /// it), not counting those found there from an earlier attempt.
    pub published: usize,
}

/// Answer of a skip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SkipOutcome {
    pub event_id: String,
    /// Always SKIPPED.
    pub status: DlqStatus,
    pub reason: String,
    /// The held event that now heads the order's sequence (replay it to
    /// continue), when the skipped record headed one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub new_head: Option<String>,
    pub message: String,
}

/// Longest skip reason, in characters.
pub const SKIP_REASON_MAX: usize = 500;

/// How long a replay may hold its claim on a record; a crashed replayer's
/// claim lapses after this.
pub(super) const REPLAY_CLAIM: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// How often a running replay renews its claim.
pub(super) const REPLAY_CLAIM_RENEWAL: std::time::Duration = std::time::Duration::from_secs(20);

/// What one round of publishing held records did.
#[derive(Default)]
struct HeldRound {
    done: Vec<String>,
    failed: Option<(String, crate::ports::PublishError)>,
    found_earlier: usize,
}

/// Per-order turns inside one process: striped locks keyed by the order's
/// bucket, so replays of one order wait for each other and replays of
/// other orders mostly do not.
pub(super) struct OrderTurns([tokio::sync::Mutex<()>; 64]);

impl Default for OrderTurns {
    fn default() -> Self {
        Self(std::array::from_fn(|_| tokio::sync::Mutex::new(())))
    }
}

impl OrderTurns {
    async fn lock(&self, aggregate_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = crate::ports::bucket_of(aggregate_id) as usize % self.0.len();
        self.0[stripe].lock().await
    }

    /// The turns of all these orders, taken in stripe order (so two callers
    /// never wait for each other in a circle).
    pub(super) async fn lock_all<'a>(
        &self,
        aggregate_ids: impl Iterator<Item = &'a str>,
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = aggregate_ids
            .map(|a| crate::ports::bucket_of(a) as usize % self.0.len())
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.0[stripe].lock().await);
        }
        guards
    }
}

pub struct DlqService {
    /// Names this process in replay claims.
    instance: String,
    pub(super) order_turns: OrderTurns,
    pub(super) dlq: Arc<dyn DlqStore>,
    pub(super) bus: Arc<dyn EventBus>,
    pub(super) policy: RetryPolicy,
    pub(super) topic: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) audit: Auditor,
    /// Resolves a customer search's orders (see `search.rs`).
    pub(super) read_model: Option<Arc<dyn crate::ports::ReadModel>>,
}

impl DlqService {
    pub fn new(
        dlq: Arc<dyn DlqStore>,
        bus: Arc<dyn EventBus>,
        policy: RetryPolicy,
        topic: String,
        metrics: Arc<Metrics>,
        audit: Auditor,
    ) -> Self {
        Self {
            instance: Uuid::now_v7().to_string(),
            order_turns: OrderTurns::default(),
            dlq,
            bus,
            policy,
            topic,
            metrics,
            audit,
            read_model: None,
        }
    }

    /// Names this process in replay claims.
    pub(super) fn instance(&self) -> &str {
        &self.instance
    }

    pub async fn stats(&self) -> Result<DlqStats, AppError> {
        Ok(self.dlq.stats().await?)
    }

    pub async fn get(&self, event_id: &str) -> Result<DlqRecord, AppError> {
        self.dlq
            .get(event_id)
            .await?
            .ok_or_else(|| not_found(event_id))
    }

    /// Replays one record. A REPLAYED or SKIPPED record publishes nothing
    /// and answers SKIPPED. A record held behind an unresolved head is
    /// refused (409): replaying the head publishes it, in order.
    pub async fn replay(&self, who: &Principal, event_id: &str) -> Result<ReplayOutcome, AppError> {
        let outcome = self.replay_checked(event_id, None).await;
        self.audit_replay(who, event_id, json!({}), &outcome).await;
        outcome
    }

    /// [`replay`](Self::replay) audited with `parameters` (the automatic
    /// redrive marks its replays `{"auto": true}`).
    pub async fn replay_audited(
        &self,
        who: &Principal,
        event_id: &str,
        parameters: serde_json::Value,
    ) -> Result<ReplayOutcome, AppError> {
        let outcome = self.replay_checked(event_id, None).await;
        self.audit_replay(who, event_id, parameters, &outcome).await;
        outcome
    }

    pub(super) async fn audit_replay(
        &self,
        who: &Principal,
        event_id: &str,
        parameters: serde_json::Value,
        outcome: &Result<ReplayOutcome, AppError>,
    ) {
        self.audit
            .record_outcome(
                who,
                AuditAction::DlqReplay,
                Some(event_id),
                parameters,
                outcome,
                |o| o.status.as_str().to_owned(),
            )
            .await;
    }

    /// [`replay`](Self::replay); `prechecked`: the ids a
    /// [`EventBus::find_published`] over this record's sequence found (a
    /// bulk replay asks once for all its heads).
    pub(super) async fn replay_checked(
        &self,
        event_id: &str,
        prechecked: Option<&HashSet<String>>,
    ) -> Result<ReplayOutcome, AppError> {
        // Replays of one order in this process take turns (a second replay
        // of a record then finds it REPLAYED); other instances are kept out
        // by the claim below, and orders in other stripes do not wait.
        let order = self.get(event_id).await?.aggregate_id;
        let _turn = self.order_turns.lock(&order).await;
        let rec = self.get(event_id).await?;
        if !rec.status.is_unresolved() {
            return Ok(ReplayOutcome {
                event_id: rec.event_id,
                success: true,
                status: DlqStatus::Skipped,
                message: format!("record is {}; nothing was published", rec.status.as_str()),
                published: 0,
            });
        }
        if let Some(head) = &rec.blocked_by {
            if let Some(h) = self.dlq.get(head).await? {
                if h.status.is_unresolved() {
                    return Err(AppError::Conflict(format!(
                        "event {event_id} is held behind event {head} of the same order; \
                         replay {head} first, which publishes this one after it"
                    )));
                }
            }
        }

        // Other instances may replay the same record: only the claimant publishes.
        // The claim's times are the database's, and the claim is renewed
        // while the replay runs (bus probes can outlast it).
        let at = self.dlq.clock().await?;
        if !self.dlq.claim_replay(self.claim(event_id, at)).await? {
            return Err(AppError::Conflict(format!(
                "event {event_id} is being replayed by another instance; retry shortly"
            )));
        }
        let renew = || async {
            let renewed = match self.dlq.clock().await {
                Ok(now) => self.dlq.claim_replay(self.claim(event_id, now)).await,
                Err(e) => Err(e),
            };
            if !matches!(renewed, Ok(true)) {
                tracing::warn!(event_id, ?renewed, "could not renew a replay claim");
            }
        };
        let replay = self.replay_claimed(rec, at, prechecked);
        let outcome = while_renewing(replay, REPLAY_CLAIM_RENEWAL, renew).await;
        if let Err(e) = self.dlq.release_replay(event_id, &self.instance).await {
            // The claim lapses by itself; nothing else depends on it.
            tracing::warn!(event_id, error = %e, "could not release a replay claim");
        }
        outcome
    }

    /// The publishing part of a replay, run under the record's claim.
    pub(super) async fn replay_claimed(
        &self,
        rec: DlqRecord,
        at: chrono::DateTime<chrono::Utc>,
        prechecked: Option<&HashSet<String>>,
    ) -> Result<ReplayOutcome, AppError> {
        let event_id = rec.event_id.as_str();
        // Taken before publishing: what waits behind this record now.
        let behind = self.dlq.blocked_behind(&rec.event_id).await?;
        // A publish failure may have reached the broker after all (a timed
        // out request it appended later): `republish` asks the bus first, so
        // the replay does not put it there twice. A consumer-side record is
        // on the bus by definition and is re-delivered on purpose.
        let head = [replay_message(&rec)];
        let first = match rec.source {
            DlqSource::Publish => self.send_parked(&head, prechecked).await,
            DlqSource::Consumer => self.single_attempt().send(&head).await,
        };
        let mut found_earlier = 0;
        match first.into_iter().next() {
            Some(Err(e)) => {
                let reason = format!("replay failed: {e}");
                let failed = sequencing::failed_change(
                    &rec.event_id,
                    &rec.event_id,
                    at,
                    &reason,
                    FailureClass::of(&e),
                );
                self.dlq.apply(&failed).await?;
                Metrics::inc(&self.metrics.replay_failures);
                tracing::warn!(event_id, error = %e, "DLQ replay failed");
                return Ok(ReplayOutcome {
                    event_id: rec.event_id,
                    success: false,
                    status: DlqStatus::Failed,
                    message: reason,
                    published: 0,
                });
            }
            Some(Ok(Sent::Earlier)) => found_earlier += 1,
            Some(Ok(Sent::Now)) | None => {}
        }
        Metrics::inc(&self.metrics.replays);

        // The head is out: publish what waited behind it, in version order.
        // The head is marked last, and only while nothing unresolved is held
        // behind it: a relay on another instance may park more events behind
        // this head until then; they are published in the next round.
        let head_id = rec.event_id.clone();
        let mut done: Vec<String> = Vec::new();
        let mut failed: Option<(String, crate::ports::PublishError)> = None;
        let mut waiting = behind;
        let mut rounds = 0;
        loop {
            if failed.is_none() {
                let round = self
                    .publish_held(&head_id, &waiting, at, prechecked)
                    .await?;
                found_earlier += round.found_earlier;
                done.extend(round.done);
                failed = round.failed;
            }
            if self
                .dlq
                .apply(&sequencing::head_replayed_change(&head_id, at))
                .await?
            {
                break;
            }
            rounds += 1;
            if rounds >= sequencing::ATTEMPTS {
                return Err(AppError::Conflict(format!(
                    "events of the order of {event_id} kept arriving behind it while it was \
                     replayed; replay it again"
                )));
            }
            waiting = self.dlq.blocked_behind(&head_id).await?;
            if let Some((new_head, _)) = &failed {
                // Late arrivals wait behind the record that failed.
                let moved = sequencing::move_held_change(&head_id, new_head, at);
                self.dlq.apply(&moved).await?;
            }
        }
        let failed = failed.map(|(new_head, err)| format!("event {new_head} failed ({err})"));
        let message = replayed_message(done.len(), found_earlier, failed.as_deref());
        let published = 1 + done.len() - found_earlier;
        tracing::info!(event_id, published, found_earlier, "DLQ record replayed");
        Ok(ReplayOutcome {
            event_id: rec.event_id,
            success: true,
            status: DlqStatus::Replayed,
            message,
            published,
        })
    }

    /// Publishes `held` (records held behind `head`, in version order) and
    /// marks what went out REPLAYED; the first failure becomes the head of
    /// what remains ([`sequencing::failed_change`]).
    async fn publish_held(
        &self,
        head: &str,
        held: &[DlqRecord],
        at: chrono::DateTime<chrono::Utc>,
        prechecked: Option<&HashSet<String>>,
    ) -> Result<HeldRound, AppError> {
        let mut round = HeldRound::default();
        if held.is_empty() {
            return Ok(round);
        }
        let messages: Vec<BusMessage> = held.iter().map(replay_message).collect();
        let results = self.send_parked(&messages, prechecked).await;
        for (r, res) in held.iter().zip(results) {
            match res {
                Ok(sent) if round.failed.is_none() => {
                    round.found_earlier += usize::from(sent == Sent::Earlier);
                    round.done.push(r.event_id.clone());
                }
                Ok(_) => {}
                Err(e) => {
                    if round.failed.is_none() {
                        round.failed = Some((r.event_id.clone(), e));
                    }
                }
            }
        }
        // Tail first, head last: no moment shows an unresolved record behind
        // a resolved one.
        if !round.done.is_empty() {
            let note = format!("replayed after its sequence head {head}");
            sequencing::mark_replayed(self.dlq.as_ref(), &round.done, at, &note).await?;
        }
        if let Some((new_head, err)) = &round.failed {
            let change = sequencing::failed_change(
                new_head,
                head,
                at,
                &format!("replay failed: {err}"),
                FailureClass::of(err),
            );
            self.dlq.apply(&change).await?;
        }
        Ok(round)
    }

    /// This instance's claim on `event_id` from `now` (database time).
    fn claim<'a>(
        &'a self,
        event_id: &'a str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> ReplayClaim<'a> {
        ReplayClaim {
            event_id,
            claimant: &self.instance,
            now,
            until: now + REPLAY_CLAIM,
        }
    }

    /// Sends parked publish failures once: what an earlier attempt delivered
    /// after all is found on the bus and not sent again.
    pub(super) async fn send_parked(
        &self,
        messages: &[BusMessage],
        prechecked: Option<&HashSet<String>>,
    ) -> Vec<SendResult> {
        let single = self.single_attempt();
        match prechecked {
            Some(found) => single.send_unless_found(messages, found).await,
            None => single.resend(messages).await,
        }
    }

    /// One attempt per replay: an operator (or the redrive) retries.
    pub(super) fn single_attempt(&self) -> Publisher<'_> {
        Publisher {
            bus: self.bus.as_ref(),
            policy: RetryPolicy {
                max_attempts: 1,
                ..self.policy
            },
            metrics: &self.metrics,
        }
    }

    /// FAILED → PENDING. Any other status is refused with 409.
    pub async fn reset(&self, who: &Principal, event_id: &str) -> Result<DlqRecord, AppError> {
        let outcome = self.reset_unaudited(event_id).await;
        self.audit
            .record_outcome(
                who,
                AuditAction::DlqReset,
                Some(event_id),
                json!({}),
                &outcome,
                |r| r.status.as_str().to_owned(),
            )
            .await;
        outcome
    }

    async fn reset_unaudited(&self, event_id: &str) -> Result<DlqRecord, AppError> {
        let reason = "reset to PENDING by operator";
        match sequencing::reset(self.dlq.as_ref(), event_id, reason, now()).await? {
            Changed::Done(r) => Ok(r),
            Changed::WrongStatus(r) | Changed::Claimed(r) => Err(AppError::Conflict(format!(
                "only FAILED records can be reset; event {event_id} is {}",
                r.status.as_str()
            ))),
            Changed::NotFound => Err(not_found(event_id)),
        }
    }

    /// Gives up on an unresolved (PENDING or FAILED) record: it becomes
    /// SKIPPED with `reason` as its replay result and is never published.
    /// When events of the order are held behind it, the one with the lowest
    /// version becomes the new head (replaying it continues the sequence);
    /// a held record skipped directly just leaves the sequence. 404 for an
    /// unknown record, 409 for a resolved one or one being replayed.
    pub async fn skip(
        &self,
        who: &Principal,
        event_id: &str,
        reason: &str,
    ) -> Result<SkipOutcome, AppError> {
        let outcome = self.skip_unaudited(event_id, reason).await;
        self.audit
            .record_outcome(
                who,
                AuditAction::DlqSkip,
                Some(event_id),
                json!({ "reason": reason }),
                &outcome,
                |o| o.status.as_str().to_owned(),
            )
            .await;
        outcome
    }

    async fn skip_unaudited(&self, event_id: &str, reason: &str) -> Result<SkipOutcome, AppError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > SKIP_REASON_MAX {
            return Err(AppError::BadRequest(format!(
                "reason must be 1 to {SKIP_REASON_MAX} characters"
            )));
        }
        // A replay on this instance holds the gate while it publishes.
        match sequencing::skip(self.dlq.as_ref(), event_id, reason, now()).await? {
            Changed::Done(SkipDone { record, new_head }) => {
                let message = match &new_head {
                    Some(h) => format!(
                        "event skipped; event {h} now heads the order's sequence: replay it to \
                         publish the events held behind it"
                    ),
                    None => "event skipped; it will not be published".to_owned(),
                };
                tracing::info!(event_id, new_head = ?new_head, "DLQ record skipped");
                Ok(SkipOutcome {
                    event_id: record.event_id,
                    status: record.status,
                    reason: reason.to_owned(),
                    new_head,
                    message,
                })
            }
            Changed::WrongStatus(r) => Err(AppError::Conflict(format!(
                "only PENDING or FAILED records can be skipped; event {event_id} is {}",
                r.status.as_str()
            ))),
            Changed::Claimed(_) => Err(AppError::Conflict(format!(
                "event {event_id} is being replayed; retry shortly"
            ))),
            Changed::NotFound => Err(not_found(event_id)),
        }
    }
}

fn not_found(event_id: &str) -> AppError {
    AppError::NotFound(format!("no DLQ record for event {event_id}"))
}

/// The message a record is replayed as: its original value, to its topic,
/// with the standard headers when the value is a readable envelope.
/// The message of a successful replay: `held` events published behind the
/// head, `earlier` of all found on the bus already, and the held event that
/// failed (described), if any.
pub(super) fn replayed_message(held: usize, earlier: usize, failed: Option<&str>) -> String {
    let mut message = format!("event published; {held} event(s) held behind it published in order");
    if earlier > 0 {
        message.push_str(&format!(
            "; {earlier} of them already on the bus from an earlier attempt, not sent again"
        ));
    }
    if let Some(failed) = failed {
        message.push_str(&format!("; {failed} and now heads the event(s) behind it"));
    }
    message
}

pub(super) fn replay_message(rec: &DlqRecord) -> BusMessage {
    match serde_json::from_str::<EventEnvelope>(&rec.original_event) {
        Ok(env) => {
            let mut m = message_for(&env, &rec.topic, None);
            m.payload = rec.original_event.clone().into_bytes();
            m.headers
                .push(("orders_replayed".to_owned(), "true".to_owned()));
            m
        }
        Err(_) => BusMessage {
            topic: rec.topic.clone(),
            key: rec.aggregate_id.clone(),
            payload: rec.original_event.clone().into_bytes(),
            headers: vec![
                ("eventId".to_owned(), rec.event_id.clone()),
                ("orders_replayed".to_owned(), "true".to_owned()),
            ],
        },
    }
}
