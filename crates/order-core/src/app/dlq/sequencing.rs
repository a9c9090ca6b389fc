//! The DLQ's sequencing rules, decided here once for every adapter.
//!
//! An order's parked events form a *sequence*: its earliest unresolved
//! publish-side record is the *head*; the order's later events are *held*
//! behind it (`blocked_by` = the head's event id) and published only after
//! it, in version order. Every change to a sequence is decided here as a
//! [`SequenceChange`] — guards that must still hold, then storage steps —
//! and an adapter writes it in one transaction ([`DlqStore::apply`]). A
//! change whose guards no longer hold (another writer came first) is decided
//! again from what is stored now.
//!
//! The invariants the contract suite checks on every adapter:
//! - a held record never points at a resolved head (marking a sequence
//!   resolved goes tail first, head last; a skipped head hands its held
//!   records to the lowest held version in the same transaction);
//! - only a consumer-side failure of a REPLAYED record, read from another
//!   origin, reopens it;
//! - a record that a live replay claims is not skipped.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::ports::{
    DlqRecord, DlqSource, DlqStatus, DlqStore, FailureClass, Guard, NewDlqRecord, SequenceChange,
    SequenceMember, Step, StoreError,
};

/// The statuses of a record still waiting for an operator (or the redrive).
pub const UNRESOLVED: [DlqStatus; 2] = [DlqStatus::Pending, DlqStatus::Failed];

/// How often a change is decided again after another writer came first.
pub const ATTEMPTS: usize = 5;

/// The head of each order's sequence: of the unresolved publish-side
/// records, the lowest version (then the lowest id), whether or not it is
/// itself marked as held — a record whose head was resolved elsewhere must
/// still hold the order's later events back.
pub fn heads_by_order(members: Vec<SequenceMember>) -> HashMap<String, String> {
    let mut best: HashMap<String, SequenceMember> = HashMap::new();
    for m in members {
        let better = best
            .get(&m.aggregate_id)
            .is_none_or(|b| (m.version, m.id) < (b.version, b.id));
        if better {
            best.insert(m.aggregate_id.clone(), m);
        }
    }
    best.into_iter().map(|(agg, m)| (agg, m.event_id)).collect()
}

/// The unresolved sequence head of each of `aggregate_ids` that has one.
pub async fn unresolved_heads(
    dlq: &dyn DlqStore,
    aggregate_ids: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    if aggregate_ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(heads_by_order(
        dlq.unresolved_publish_records(aggregate_ids).await?,
    ))
}

/// Whether a consumer-side failure `new` of the stored record `existing`
/// reopens it: the record was replayed and the replayed message failed
/// again downstream (read from another `topic/partition/offset` than the
/// failure recorded before). Anything else seen twice is a duplicate.
pub fn reopens(existing: &DlqRecord, new: &NewDlqRecord) -> bool {
    existing.status == DlqStatus::Replayed
        && new.source == DlqSource::Consumer
        && new.origin.is_some()
        && existing.origin != new.origin
}

/// Records DLQ records: new event ids are inserted, a known one is left
/// unchanged unless [`reopens`] says the replay failed again. Returns how
/// many records were new or reopened.
pub async fn record(dlq: &dyn DlqStore, records: &[NewDlqRecord]) -> Result<usize, StoreError> {
    if records.is_empty() {
        return Ok(0);
    }
    // One entry per record that was not inserted (a duplicate inside the
    // call included).
    let known = dlq.insert_new(records).await?;
    let mut changed = records.len().saturating_sub(known.len());
    let known: HashSet<String> = known.into_iter().collect();
    for new in records.iter().filter(|r| known.contains(&r.event_id)) {
        for _ in 0..ATTEMPTS {
            let Some(existing) = dlq.get(&new.event_id).await? else {
                break;
            };
            if !reopens(&existing, new) {
                break;
            }
            let change = SequenceChange {
                at: new.failure_time,
                guards: vec![
                    Guard::Status {
                        event_id: new.event_id.clone(),
                        any_of: vec![DlqStatus::Replayed],
                    },
                    Guard::Origin {
                        event_id: new.event_id.clone(),
                        origin: existing.origin.clone(),
                    },
                ],
                steps: vec![Step::Reopen {
                    event_id: new.event_id.clone(),
                    reason: new.failure_reason.clone(),
                    failure_time: new.failure_time,
                    origin: new.origin.clone(),
                }],
            };
            if dlq.apply(&change).await? {
                changed += 1;
                break;
            }
        }
    }
    Ok(changed)
}

/// Marks records REPLAYED (`replay_attempts` + 1); only unresolved ones
/// change. Callers mark a sequence tail first and its head last.
pub async fn mark_replayed(
    dlq: &dyn DlqStore,
    event_ids: &[String],
    at: DateTime<Utc>,
    result: &str,
) -> Result<(), StoreError> {
    if event_ids.is_empty() {
        return Ok(());
    }
    let change = SequenceChange {
        at,
        guards: Vec::new(),
        steps: vec![Step::SetStatus {
            event_ids: event_ids.to_vec(),
            from: UNRESOLVED.to_vec(),
            to: DlqStatus::Replayed,
            result: result.to_owned(),
            failure_class: None,
            count_attempt: true,
        }],
    };
    dlq.apply(&change).await.map(drop)
}

/// The change that marks a replayed head REPLAYED, written only while no
/// unresolved record is held behind it (a relay may have parked one since
/// the replay read what it held).
pub fn head_replayed_change(head: &str, at: DateTime<Utc>) -> SequenceChange {
    SequenceChange {
        at,
        guards: vec![Guard::NothingHeldBehind {
            head: head.to_owned(),
        }],
        steps: vec![Step::SetStatus {
            event_ids: vec![head.to_owned()],
            from: UNRESOLVED.to_vec(),
            to: DlqStatus::Replayed,
            result: "replayed".to_owned(),
            failure_class: None,
            count_attempt: true,
        }],
    }
}

/// The change that hands the records held behind `from` to `to`.
pub fn move_held_change(from: &str, to: &str, at: DateTime<Utc>) -> SequenceChange {
    SequenceChange {
        at,
        guards: Vec::new(),
        steps: vec![Step::MoveHeld {
            from: from.to_owned(),
            to: to.to_owned(),
        }],
    }
}

/// The change that marks `event_id` FAILED after a failed replay and makes
/// it the head of its sequence: the records held behind `previous_head`
/// (itself, when the head's own replay failed) are held behind it. Written
/// only while the record is unresolved.
pub fn failed_change(
    event_id: &str,
    previous_head: &str,
    at: DateTime<Utc>,
    result: &str,
    class: FailureClass,
) -> SequenceChange {
    let mut steps = vec![
        Step::SetStatus {
            event_ids: vec![event_id.to_owned()],
            from: UNRESOLVED.to_vec(),
            to: DlqStatus::Failed,
            result: result.to_owned(),
            failure_class: Some(class),
            count_attempt: true,
        },
        Step::MakeHead {
            event_id: event_id.to_owned(),
        },
    ];
    if previous_head != event_id {
        steps.push(Step::MoveHeld {
            from: previous_head.to_owned(),
            to: event_id.to_owned(),
        });
    }
    SequenceChange {
        at,
        guards: vec![Guard::Status {
            event_id: event_id.to_owned(),
            any_of: UNRESOLVED.to_vec(),
        }],
        steps,
    }
}

/// What a reset or skip found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed<T> {
    Done(T),
    /// The record is in a status the action does not apply to; unchanged.
    WrongStatus(DlqRecord),
    /// A live replay claim holds it; unchanged.
    Claimed(DlqRecord),
    NotFound,
}

/// An operator moves a FAILED record back to PENDING (never a resolved one).
pub async fn reset(
    dlq: &dyn DlqStore,
    event_id: &str,
    result: &str,
    at: DateTime<Utc>,
) -> Result<Changed<DlqRecord>, StoreError> {
    let change = SequenceChange {
        at,
        guards: vec![Guard::Status {
            event_id: event_id.to_owned(),
            any_of: vec![DlqStatus::Failed],
        }],
        steps: vec![Step::SetStatus {
            event_ids: vec![event_id.to_owned()],
            from: vec![DlqStatus::Failed],
            to: DlqStatus::Pending,
            result: result.to_owned(),
            failure_class: None,
            count_attempt: false,
        }],
    };
    let applied = dlq.apply(&change).await?;
    Ok(match (dlq.get(event_id).await?, applied) {
        (None, _) => Changed::NotFound,
        (Some(r), true) => Changed::Done(r),
        (Some(r), false) => Changed::WrongStatus(r),
    })
}

/// A skipped record, and the held record that took over as head of its
/// sequence, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkipDone {
    pub record: DlqRecord,
    pub new_head: Option<String>,
}

/// The change that skips `rec`: it becomes SKIPPED (`replay_attempts`
/// unchanged). When records are held behind it (it heads a sequence), the
/// lowest version (then id) of them becomes the new head and the others are
/// held behind that one, in the same transaction. A held record simply
/// leaves its sequence. Guarded: `rec` still unresolved and unclaimed, the
/// new head still held behind it.
pub fn skip_change(
    rec: &DlqRecord,
    held: &[DlqRecord],
    reason: &str,
    at: DateTime<Utc>,
) -> (SequenceChange, Option<String>) {
    let id = rec.event_id.clone();
    let new_head = held
        .iter()
        .filter(|r| r.status.is_unresolved() && r.blocked_by.as_deref() == Some(id.as_str()))
        .min_by_key(|r| (r.version, r.id))
        .map(|r| r.event_id.clone());
    let mut guards = vec![
        Guard::Status {
            event_id: id.clone(),
            any_of: UNRESOLVED.to_vec(),
        },
        Guard::Unclaimed {
            event_id: id.clone(),
        },
    ];
    let mut steps = vec![Step::SetStatus {
        event_ids: vec![id.clone()],
        from: UNRESOLVED.to_vec(),
        to: DlqStatus::Skipped,
        result: reason.to_owned(),
        failure_class: None,
        count_attempt: false,
    }];
    if let Some(head) = &new_head {
        guards.push(Guard::HeldBehind {
            event_id: head.clone(),
            head: Some(id.clone()),
        });
        guards.push(Guard::Status {
            event_id: head.clone(),
            any_of: UNRESOLVED.to_vec(),
        });
        steps.push(Step::MakeHead {
            event_id: head.clone(),
        });
        steps.push(Step::MoveHeld {
            from: id,
            to: head.clone(),
        });
    }
    (SequenceChange { at, guards, steps }, new_head)
}

/// An operator gives up on an unresolved record (see [`skip_change`]).
pub async fn skip(
    dlq: &dyn DlqStore,
    event_id: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<Changed<SkipDone>, StoreError> {
    for _ in 0..ATTEMPTS {
        let Some(rec) = dlq.get(event_id).await? else {
            return Ok(Changed::NotFound);
        };
        if !rec.status.is_unresolved() {
            return Ok(Changed::WrongStatus(rec));
        }
        let held = dlq.blocked_behind(event_id).await?;
        let (change, new_head) = skip_change(&rec, &held, reason, at);
        if dlq.apply(&change).await? {
            let record = dlq
                .get(event_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("DLQ record {event_id} vanished")))?;
            return Ok(Changed::Done(SkipDone { record, new_head }));
        }
        // A guard failed: a live claim is the one reason not to decide again.
        if !dlq
            .apply(&SequenceChange {
                at,
                guards: vec![Guard::Unclaimed {
                    event_id: event_id.to_owned(),
                }],
                steps: Vec::new(),
            })
            .await?
        {
            return Ok(Changed::Claimed(rec));
        }
    }
    Err(StoreError::Unavailable(format!(
        "DLQ record {event_id} kept changing while it was skipped; try again"
    )))
}
