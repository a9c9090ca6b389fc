//! Replaying many sequence heads at once: the drain after an outage.
//!
//! A replay of one head ([`super::service`]) costs a dozen round trips
//! (claim, reads, a bus look-up, a send, marks, release). Draining a
//! backlog of a million parked events that way is limited by those round
//! trips, not by the bus. Here a page of heads is replayed together, with
//! the same rules:
//! - one claim statement for the page (heads claimed elsewhere are
//!   refused, as a single replay would be);
//! - one read of everything held behind the claimed heads;
//! - one bus look-up for what an earlier attempt delivered after all;
//! - one send of every message, each order's head first, then its held
//!   events in version order (one produce batch; the bus keeps the order
//!   of one key);
//! - one change marking the held events REPLAYED, then one marking the
//!   heads REPLAYED while nothing is held behind them (a relay may have
//!   parked a late event behind one meanwhile: that head alone is finished
//!   by the single-head path, which publishes the late events after it).
//!
//! A send that fails makes its record FAILED and the head of what remains
//! of its order ([`sequencing::failed_change`]), exactly as a single replay.

use std::collections::{HashMap, HashSet};

use super::renew::while_renewing;
use super::sequencing::{self, UNRESOLVED};
use super::service::{
    replay_message, replayed_message, DlqService, ReplayOutcome, REPLAY_CLAIM, REPLAY_CLAIM_RENEWAL,
};
use crate::app::error::AppError;
use crate::app::metrics::Metrics;
use crate::app::relay::{SendResult, Sent};
use crate::ports::{
    BusMessage, DlqRecord, DlqSource, DlqStatus, FailureClass, ReplayClaims, SequenceChange, Step,
    PARKED_AT,
};

/// What a batch did with one head.
pub type HeadOutcome = (String, Result<ReplayOutcome, AppError>);

/// One claimed head and what is held behind it, as sent.
struct Sequence {
    head: DlqRecord,
    held: Vec<DlqRecord>,
}

impl DlqService {
    /// Replays `heads` (records that headed their sequence when they were
    /// read, e.g. a page of [`DlqStore::heads`](crate::ports::DlqStore::heads))
    /// as one batch; see the module documentation. One outcome per head, in
    /// the order given: a head claimed by another replay is a `Conflict`, one
    /// resolved meanwhile answers SKIPPED. Not audited (the caller audits
    /// each head under its principal).
    ///
    /// Consumer-side heads go one by one through the single replay: they
    /// are few (a consumer's failures, not an outage's backlog), and each
    /// may be sent as its latest revision, to its consumer group alone.
    pub async fn replay_heads(&self, heads: Vec<DlqRecord>) -> Result<Vec<HeadOutcome>, AppError> {
        let order: Vec<String> = heads.iter().map(|h| h.event_id.clone()).collect();
        let (consumer, publish): (Vec<DlqRecord>, Vec<DlqRecord>) = heads
            .into_iter()
            .partition(|h| h.source == DlqSource::Consumer);
        let mut outcomes: HashMap<String, Result<ReplayOutcome, AppError>> = self
            .replay_publish_heads(publish)
            .await?
            .into_iter()
            .collect();
        for head in consumer {
            let outcome = self.replay_checked(&head.event_id, None).await;
            outcomes.insert(head.event_id, outcome);
        }
        Ok(order
            .into_iter()
            .filter_map(|id| outcomes.remove(&id).map(|o| (id, o)))
            .collect())
    }

    /// [`replay_heads`](Self::replay_heads) of publish-side heads, as one batch.
    async fn replay_publish_heads(
        &self,
        heads: Vec<DlqRecord>,
    ) -> Result<Vec<HeadOutcome>, AppError> {
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let _turns = self
            .order_turns
            .lock_all(heads.iter().map(|h| h.aggregate_id.as_str()))
            .await;
        let ids: Vec<String> = heads.iter().map(|h| h.event_id.clone()).collect();
        let at = self.dlq.clock().await?;
        let claimed: HashSet<String> = self
            .dlq
            .claim_replays(self.claims(&ids, at))
            .await?
            .into_iter()
            .collect();
        let (mine, others): (Vec<DlqRecord>, Vec<DlqRecord>) = heads
            .into_iter()
            .partition(|h| claimed.contains(&h.event_id));
        let mine_ids: Vec<String> = mine.iter().map(|h| h.event_id.clone()).collect();
        let renew = || async {
            let renewed = match self.dlq.clock().await {
                Ok(now) => self.dlq.claim_replays(self.claims(&mine_ids, now)).await,
                Err(e) => Err(e),
            };
            if !matches!(&renewed, Ok(held) if held.len() == mine_ids.len()) {
                tracing::warn!(?renewed, "could not renew the claims of a batch replay");
            }
        };
        let replayed = while_renewing(
            self.replay_claimed_batch(mine, at),
            REPLAY_CLAIM_RENEWAL,
            renew,
        )
        .await;
        if let Err(e) = self.dlq.release_replays(&mine_ids, self.instance()).await {
            // The claims lapse by themselves; nothing else depends on them.
            tracing::warn!(error = %e, "could not release the claims of a batch replay");
        }
        let mut outcomes: HashMap<String, Result<ReplayOutcome, AppError>> =
            replayed?.into_iter().collect();
        for head in others {
            let outcome = self.not_claimed(&head).await;
            outcomes.insert(head.event_id, outcome);
        }
        Ok(ids
            .into_iter()
            .filter_map(|id| outcomes.remove(&id).map(|o| (id, o)))
            .collect())
    }

    fn claims<'a>(
        &'a self,
        ids: &'a [String],
        now: chrono::DateTime<chrono::Utc>,
    ) -> ReplayClaims<'a> {
        ReplayClaims {
            event_ids: ids,
            claimant: self.instance(),
            now,
            until: now + REPLAY_CLAIM,
        }
    }

    /// A head the batch could not claim: resolved meanwhile (SKIPPED), or
    /// being replayed elsewhere (409).
    async fn not_claimed(&self, head: &DlqRecord) -> Result<ReplayOutcome, AppError> {
        match self.dlq.get(&head.event_id).await? {
            Some(r) if !r.status.is_unresolved() => Ok(ReplayOutcome {
                event_id: r.event_id,
                success: true,
                status: DlqStatus::Skipped,
                message: format!("record is {}; nothing was published", r.status.as_str()),
                published: 0,
            }),
            Some(_) => Err(AppError::Conflict(format!(
                "event {} is being replayed by another instance; retry shortly",
                head.event_id
            ))),
            None => Err(AppError::NotFound(format!(
                "no DLQ record {}",
                head.event_id
            ))),
        }
    }

    /// The batch under its claims.
    async fn replay_claimed_batch(
        &self,
        heads: Vec<DlqRecord>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<HeadOutcome>, AppError> {
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = heads.iter().map(|h| h.event_id.clone()).collect();
        let mut held: HashMap<String, Vec<DlqRecord>> = HashMap::new();
        for r in self.dlq.held_behind(&ids).await? {
            if let Some(head) = r.blocked_by.clone() {
                held.entry(head).or_default().push(r);
            }
        }
        let sequences: Vec<Sequence> = heads
            .into_iter()
            .map(|head| Sequence {
                held: held.remove(&head.event_id).unwrap_or_default(),
                head,
            })
            .collect();
        let results = self.send_sequences(&sequences).await;

        // Per head: what went out, and the first send that failed.
        let mut done: Vec<String> = Vec::new();
        let mut head_ok: Vec<&Sequence> = Vec::new();
        let mut failures: Vec<SequenceChange> = Vec::new();
        let mut outcomes: Vec<HeadOutcome> = Vec::new();
        let mut published: HashMap<&str, (usize, usize)> = HashMap::new();
        for (seq, results) in sequences.iter().zip(results) {
            let mut results = results.into_iter();
            let head = &seq.head;
            let head_result = results.next();
            if let Some(Err(e)) = head_result {
                let reason = format!("replay failed: {e}");
                failures.push(sequencing::failed_change(
                    &head.event_id,
                    &head.event_id,
                    at,
                    &reason,
                    FailureClass::of(&e),
                ));
                Metrics::inc(&self.metrics.replay_failures);
                outcomes.push((
                    head.event_id.clone(),
                    Ok(ReplayOutcome {
                        event_id: head.event_id.clone(),
                        success: false,
                        status: DlqStatus::Failed,
                        message: reason,
                        published: 0,
                    }),
                ));
                continue;
            }
            let mut earlier = usize::from(matches!(head_result, Some(Ok(Sent::Earlier))));
            let mut sent = 0;
            for (r, res) in seq.held.iter().zip(results) {
                match res {
                    Ok(s) => {
                        earlier += usize::from(s == Sent::Earlier);
                        sent += 1;
                        done.push(r.event_id.clone());
                    }
                    Err(e) => {
                        // What follows stays held behind the record that
                        // failed, and goes out after it.
                        failures.push(sequencing::failed_change(
                            &r.event_id,
                            &head.event_id,
                            at,
                            &format!("replay failed: {e}"),
                            FailureClass::of(&e),
                        ));
                        break;
                    }
                }
            }
            published.insert(&head.event_id, (sent, earlier));
            head_ok.push(seq);
        }

        // Tail first, head last: no moment shows an unresolved record held
        // behind a resolved one.
        if !done.is_empty() {
            let note = "replayed after its sequence head (batch)";
            sequencing::mark_replayed(self.dlq.as_ref(), &done, at, note).await?;
        }
        for change in &failures {
            self.dlq.apply(change).await?;
        }
        let all_heads = SequenceChange {
            at,
            guards: head_ok
                .iter()
                .flat_map(|s| sequencing::head_replayed_change(&s.head.event_id, at).guards)
                .collect(),
            steps: vec![Step::SetStatus {
                event_ids: head_ok.iter().map(|s| s.head.event_id.clone()).collect(),
                from: UNRESOLVED.to_vec(),
                to: DlqStatus::Replayed,
                result: "replayed".to_owned(),
                failure_class: None,
                count_attempt: true,
            }],
        };
        let together = head_ok.is_empty() || self.dlq.apply(&all_heads).await?;
        for seq in head_ok {
            let id = seq.head.event_id.clone();
            let marked = together
                || self
                    .dlq
                    .apply(&sequencing::head_replayed_change(&id, at))
                    .await?;
            let outcome = if marked {
                Metrics::inc(&self.metrics.replays);
                let (sent, earlier) = published.get(id.as_str()).copied().unwrap_or_default();
                let failed_behind = seq.held.len() > sent;
                Ok(ReplayOutcome {
                    event_id: id.clone(),
                    success: true,
                    status: DlqStatus::Replayed,
                    message: replayed_message(
                        sent,
                        earlier,
                        failed_behind.then_some("a held event failed"),
                    ),
                    published: 1 + sent - earlier,
                })
            } else {
                // Events were parked behind it since it was read: finish it
                // the single-head way, which publishes them after it (the
                // head is found on the bus and not sent again).
                self.replay_claimed(seq.head.clone(), at, None, None).await
            };
            outcomes.push((id, outcome));
        }
        Ok(outcomes)
    }

    /// Sends every sequence in one go: publish-side ones unless an earlier
    /// attempt delivered them (one bus look-up for all), consumer-side ones
    /// again on purpose. One result list per sequence, head first.
    async fn send_sequences(&self, sequences: &[Sequence]) -> Vec<Vec<SendResult>> {
        let messages = |source: DlqSource| -> Vec<BusMessage> {
            sequences
                .iter()
                .filter(|s| s.head.source == source)
                .flat_map(|s| {
                    // An earlier attempt at any of them (the park, a failed
                    // replay that sent part of the sequence) was made by
                    // the last of these times.
                    let records = || std::iter::once(&s.head).chain(&s.held);
                    let parked = records()
                        .flat_map(|r| [Some(r.failure_time), r.replay_attempt_time])
                        .flatten()
                        .max();
                    records().map(move |r| {
                        let mut m = replay_message(r);
                        if let Some(at) = parked {
                            m.headers.push((
                                PARKED_AT.to_owned(),
                                at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            ));
                        }
                        m
                    })
                })
                .collect()
        };
        let parked = messages(DlqSource::Publish);
        let prechecked = if parked.is_empty() {
            None
        } else {
            match self.bus.find_published(&parked).await {
                Ok(found) => Some(found),
                Err(e) => {
                    tracing::warn!(error = %e, "batch replay: the bus cannot say what it has");
                    None
                }
            }
        };
        let redelivered = messages(DlqSource::Consumer);
        let mut publish = if parked.is_empty() {
            Vec::new()
        } else {
            self.send_parked(&parked, prechecked.as_ref()).await
        }
        .into_iter();
        let mut consumer = if redelivered.is_empty() {
            Vec::new()
        } else {
            self.single_attempt().send(&redelivered).await
        }
        .into_iter();
        sequences
            .iter()
            .map(|s| {
                let results = match s.head.source {
                    DlqSource::Publish => &mut publish,
                    DlqSource::Consumer => &mut consumer,
                };
                results.take(1 + s.held.len()).collect()
            })
            .collect()
    }
}
