//! Edit before replay: an operator revises the message of a consumer-side
//! record (one a consumer could not process: a missing field, a wrong value
//! from an old producer) with a JSON Patch or a full replacement and a
//! reason. The record's original is never changed; each revision is stored
//! with its author, time, reason and diff, and a replay sends the latest
//! one that is not rejected, with headers that say so
//! ([`provenance_headers`]).
//!
//! - Only consumer-side records: a publish-side record is an event of our
//!   own event store, which is the truth (409).
//! - A revision must decode as its event type's schema and pass the
//!   domain's checks, and may not change the event id, order id, type or
//!   version (422, with one error per field).
//! - Four eyes (`ORDER_DLQ_EDIT_APPROVAL`): a revision waits for a second
//!   admin, never its author (403), to approve or reject it; a replay of a
//!   record whose latest revision is not approved is refused (409).

use serde::Deserialize;
use serde_json::{json, Value};

use super::patch;
use super::service::DlqService;
use crate::app::error::AppError;
use crate::app::principal::Principal;
use crate::domain::{
    now, CreateOrder, DomainError, EventEnvelope, FieldError, OrderEvent, Transition,
    AGGREGATE_TYPE,
};
use crate::ports::{
    AuditAction, DlqRecord, DlqRevisionStore, DlqSource, NewRevision, Review, Revision,
    RevisionState,
};

/// Longest revision reason and review note, in characters.
pub const REVISION_REASON_MAX: usize = 500;

/// Header of a replayed message sent as a revision: its number.
pub const REVISION_HEADER: &str = "orders_revision";
/// Header of a replayed revision: the event id of the message it revises.
pub const ORIGINAL_EVENT_ID_HEADER: &str = "orders_original_event_id";
/// Header of a replayed revision: who wrote it.
pub const EDITED_BY_HEADER: &str = "orders_edited_by";
/// Header of a replayed revision: who approved it (four eyes).
pub const APPROVED_BY_HEADER: &str = "orders_approved_by";

/// How an operator edits a message.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub enum Edit {
    /// RFC 6902 operations, applied to the latest revision (or the original).
    Patch(Value),
    /// The whole message.
    Replace(Value),
}

/// A revision to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviseRequest {
    pub edit: Edit,
    pub reason: String,
    /// The revision the edit was made from (0: the original). When given,
    /// the edit is refused (409) if another revision was written since.
    pub based_on: Option<u32>,
}

/// Approve or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

/// The revisions of a record as the repair rules read them.
pub(super) struct History(pub Vec<Revision>);

impl History {
    /// The revision a replay would send: the latest not rejected.
    pub(super) fn current(&self) -> Option<&Revision> {
        self.0
            .iter()
            .rev()
            .find(|r| r.state != RevisionState::Rejected)
    }

    fn next_number(&self) -> u32 {
        self.0.iter().map(|r| r.revision).max().unwrap_or(0) + 1
    }
}

impl DlqService {
    fn revision_store(&self) -> Result<&dyn DlqRevisionStore, AppError> {
        self.repair
            .as_ref()
            .map(|r| r.revisions.as_ref())
            .ok_or_else(|| AppError::Conflict("DLQ revisions are not set up here".to_owned()))
    }

    /// Whether a second admin must approve each revision.
    pub fn edit_approval(&self) -> bool {
        self.repair.as_ref().is_some_and(|r| r.approval)
    }

    /// The record's revisions, lowest number first (404 for an unknown record).
    pub async fn revisions(&self, event_id: &str) -> Result<Vec<Revision>, AppError> {
        self.get(event_id).await?;
        self.revisions_of(event_id).await
    }

    /// [`revisions`](Self::revisions) of a record the caller has read
    /// already (no second look-up of the record).
    pub async fn revisions_of(&self, event_id: &str) -> Result<Vec<Revision>, AppError> {
        Ok(self.history(event_id).await?.0)
    }

    pub(super) async fn history(&self, event_id: &str) -> Result<History, AppError> {
        match &self.repair {
            Some(r) => Ok(History(r.revisions.revisions(event_id).await?)),
            None => Ok(History(Vec::new())),
        }
    }

    /// Writes a revision of a consumer-side record's message. Audited as
    /// DLQ_REVISION_CREATE with the diff.
    pub async fn revise(
        &self,
        who: &Principal,
        event_id: &str,
        req: &ReviseRequest,
    ) -> Result<Revision, AppError> {
        let outcome = self.revise_unaudited(who, event_id, req).await;
        let parameters = match &outcome {
            Ok(r) => json!({
                "revision": r.revision, "basedOn": r.based_on, "reason": r.reason,
                "diff": r.patch, "state": r.state.as_str(),
            }),
            Err(_) => json!({ "reason": req.reason }),
        };
        self.audit
            .record_outcome(
                who,
                AuditAction::DlqRevisionCreate,
                Some(event_id),
                parameters,
                &outcome,
                |r| r.state.as_str().to_owned(),
            )
            .await;
        outcome
    }

    async fn revise_unaudited(
        &self,
        who: &Principal,
        event_id: &str,
        req: &ReviseRequest,
    ) -> Result<Revision, AppError> {
        let reason = checked_text("reason", &req.reason)?;
        let store = self.revision_store()?;
        let rec = self.get(event_id).await?;
        if rec.source == DlqSource::Publish {
            return Err(AppError::Conflict(format!(
                "event {event_id} is a publish-side record: it is an event of this service's \
                 own event store, which is the truth, so it cannot be edited; replay it as it \
                 is, or skip it"
            )));
        }
        if !rec.status.is_unresolved() {
            return Err(AppError::Conflict(format!(
                "event {event_id} is {}; only PENDING or FAILED records can be edited",
                rec.status.as_str()
            )));
        }
        let history = History(store.revisions(event_id).await?);
        let (base_number, base_text) = match history.current() {
            Some(r) => (r.revision, r.payload.as_str()),
            None => (0, rec.original_event.as_str()),
        };
        if let Some(asked) = req.based_on {
            if asked != base_number {
                return Err(AppError::Conflict(format!(
                    "the edit was made from revision {asked}, but the current one is \
                     {base_number}: reload the record and edit from it"
                )));
            }
        }
        let base: Option<Value> = serde_json::from_str(base_text).ok();
        let revised = match (&req.edit, &base) {
            (Edit::Replace(v), _) => v.clone(),
            (Edit::Patch(ops), Some(doc)) => patch::apply(doc, ops).map_err(|e| {
                invalid(vec![FieldError::new(
                    format!("patch[{}]", e.index),
                    e.to_string(),
                )])
            })?,
            (Edit::Patch(_), None) => {
                return Err(invalid(vec![FieldError::new(
                    "patch",
                    "the message is not JSON, so a patch cannot apply: send a full replacement",
                )]))
            }
        };
        if base.as_ref() == Some(&revised) {
            return Err(invalid(vec![FieldError::new(
                "message",
                "the edit changes nothing",
            )]));
        }
        validate(&rec, &revised)?;
        let diff = match &base {
            Some(doc) => patch::diff(doc, &revised),
            None => json!([{ "op": "replace", "path": "", "value": revised }]),
        };
        let new = NewRevision {
            event_id: rec.event_id.clone(),
            revision: history.next_number(),
            based_on: base_number,
            author: who.name.clone(),
            reason,
            patch: diff,
            payload: revised.to_string(),
            state: if self.edit_approval() {
                RevisionState::AwaitingApproval
            } else {
                RevisionState::Ready
            },
            at: now(),
        };
        store.add_revision(&new).await?.ok_or_else(|| {
            AppError::Conflict(format!(
                "another revision of event {event_id} was written meanwhile: reload the \
                 record and edit from it"
            ))
        })
    }

    /// Approves or rejects a revision. Only a second admin: the author may
    /// not review their own revision (403). Only the current revision (the
    /// latest not rejected) that awaits approval, or was written while
    /// approval was off, can be reviewed (409). Audited.
    pub async fn review(
        &self,
        who: &Principal,
        event_id: &str,
        revision: u32,
        decision: Decision,
        note: Option<&str>,
    ) -> Result<Revision, AppError> {
        let outcome = self
            .review_unaudited(who, event_id, revision, decision, note)
            .await;
        let action = match decision {
            Decision::Approve => AuditAction::DlqRevisionApprove,
            Decision::Reject => AuditAction::DlqRevisionReject,
        };
        self.audit
            .record_outcome(
                who,
                action,
                Some(event_id),
                json!({ "revision": revision, "note": note }),
                &outcome,
                |r| r.state.as_str().to_owned(),
            )
            .await;
        outcome
    }

    async fn review_unaudited(
        &self,
        who: &Principal,
        event_id: &str,
        revision: u32,
        decision: Decision,
        note: Option<&str>,
    ) -> Result<Revision, AppError> {
        let note = note.map(|n| checked_text("note", n)).transpose()?;
        let store = self.revision_store()?;
        self.get(event_id).await?;
        let history = History(store.revisions(event_id).await?);
        let Some(rev) = history.0.iter().find(|r| r.revision == revision) else {
            return Err(AppError::NotFound(format!(
                "event {event_id} has no revision {revision}"
            )));
        };
        if rev.author == who.name {
            return Err(AppError::Forbidden(format!(
                "{} wrote revision {revision}: a second admin must review it",
                who.name
            )));
        }
        let reviewable = [RevisionState::AwaitingApproval, RevisionState::Ready];
        if !reviewable.contains(&rev.state) {
            return Err(AppError::Conflict(format!(
                "revision {revision} of event {event_id} is already {}",
                rev.state.as_str()
            )));
        }
        if let Some(current) = history.current() {
            if current.revision != revision {
                return Err(AppError::Conflict(format!(
                    "revision {revision} of event {event_id} was superseded by revision {}",
                    current.revision
                )));
            }
        }
        let to = match decision {
            Decision::Approve => RevisionState::Approved,
            Decision::Reject => RevisionState::Rejected,
        };
        let review = Review {
            event_id,
            revision,
            from: &reviewable,
            to,
            reviewer: &who.name,
            note: note.as_deref(),
            at: now(),
        };
        store.review(&review).await?.ok_or_else(|| {
            AppError::Conflict(format!(
                "revision {revision} of event {event_id} was reviewed meanwhile"
            ))
        })
    }

    /// The revision a replay of `rec` sends (`None`: the original), or why
    /// it may not be replayed now (409).
    pub(super) async fn revision_to_send(
        &self,
        rec: &DlqRecord,
    ) -> Result<Option<Revision>, AppError> {
        if rec.source != DlqSource::Consumer {
            return Ok(None);
        }
        let history = self.history(&rec.event_id).await?;
        let Some(current) = history.current().cloned() else {
            return Ok(None);
        };
        sendable(&current, self.edit_approval())?;
        Ok(Some(current))
    }
}

/// Whether `rev` may be sent: not while it awaits approval, nor (with four
/// eyes on) when nobody approved it.
pub(super) fn sendable(rev: &Revision, approval: bool) -> Result<(), AppError> {
    let waiting = match rev.state {
        RevisionState::AwaitingApproval => true,
        RevisionState::Ready => approval,
        RevisionState::Approved | RevisionState::Rejected => false,
    };
    if waiting {
        return Err(AppError::Conflict(format!(
            "revision {} of event {} awaits approval by a second admin; approve or reject it \
             first",
            rev.revision, rev.event_id
        )));
    }
    Ok(())
}

/// Headers that say a replayed message is a revision: its number, the
/// original event id, its author and (four eyes) its approver.
pub fn provenance_headers(rev: &Revision) -> Vec<(String, String)> {
    let mut h = vec![
        (REVISION_HEADER.to_owned(), rev.revision.to_string()),
        (ORIGINAL_EVENT_ID_HEADER.to_owned(), rev.event_id.clone()),
        (EDITED_BY_HEADER.to_owned(), rev.author.clone()),
    ];
    if let (RevisionState::Approved, Some(by)) = (rev.state, &rev.reviewer) {
        h.push((APPROVED_BY_HEADER.to_owned(), by.clone()));
    }
    h
}

fn invalid(errors: Vec<FieldError>) -> AppError {
    AppError::Domain(DomainError::Validation(errors))
}

/// A reason or note: 1 to [`REVISION_REASON_MAX`] characters, no control
/// characters but line breaks and tabs. Trimmed.
fn checked_text(name: &str, text: &str) -> Result<String, AppError> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > REVISION_REASON_MAX {
        return Err(AppError::BadRequest(format!(
            "{name} is required: 1 to {REVISION_REASON_MAX} characters"
        )));
    }
    if t.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(AppError::BadRequest(format!(
            "{name} may not contain control characters"
        )));
    }
    Ok(t.to_owned())
}

/// Checks a revised message: it is an event envelope of an order, keeps the
/// record's event id, order id, type and version, decodes as its event
/// type's schema, and passes the checks a command of that kind passes.
pub fn validate(rec: &DlqRecord, message: &Value) -> Result<EventEnvelope, AppError> {
    let env: EventEnvelope = serde_json::from_value(message.clone()).map_err(|e| {
        invalid(vec![FieldError::new(
            "message",
            format!("is not an event envelope: {e}"),
        )])
    })?;
    let mut errors = Vec::new();
    let mut keep = |field: &str, was: &str, now: &str| {
        if was != now {
            errors.push(FieldError::new(
                field,
                format!("an edit may not change it (was {was:?}, the edit has {now:?})"),
            ));
        }
    };
    keep("eventId", &rec.event_id, &env.event_id.to_string());
    // A malformed original named no order, type or version of its own.
    if rec.aggregate_id != "unknown" {
        keep("aggregateId", &rec.aggregate_id, &env.aggregate_id);
    }
    if rec.event_type != "MALFORMED" {
        keep("eventType", &rec.event_type, &env.event_type);
    }
    if let Some(v) = rec.version {
        keep("version", &v.to_string(), &env.version.to_string());
    }
    if env.aggregate_type != AGGREGATE_TYPE {
        errors.push(FieldError::new(
            "aggregateType",
            format!("must be {AGGREGATE_TYPE}"),
        ));
    }
    if uuid::Uuid::parse_str(&env.aggregate_id).is_err() {
        errors.push(FieldError::new("aggregateId", "must be a UUID"));
    }
    if env.version == 0 {
        errors.push(FieldError::new("version", "must be at least 1"));
    }
    match env.decode() {
        Err(e) => errors.push(FieldError::new("data", e.to_string())),
        Ok(event) => errors.extend(domain_errors(&event)),
    }
    if errors.is_empty() {
        Ok(env)
    } else {
        Err(invalid(errors))
    }
}

/// What the domain says about an event as if a command had asked for it.
fn domain_errors(event: &OrderEvent) -> Vec<FieldError> {
    let checked = match event {
        OrderEvent::Created {
            customer_id,
            restaurant_id,
            items,
            total_amount,
        } => CreateOrder::new(
            customer_id.clone(),
            restaurant_id.clone(),
            items.clone(),
            Some(*total_amount),
        )
        .map(drop),
        OrderEvent::Confirmed { payment_id } => {
            Transition::confirm(Some(payment_id.clone())).map(drop)
        }
        OrderEvent::Cancelled { reason } => Transition::cancel(reason.clone()).map(drop),
        OrderEvent::PreparationStarted | OrderEvent::MarkedReady | OrderEvent::Delivered => Ok(()),
    };
    match checked {
        Ok(()) => Vec::new(),
        Err(DomainError::Validation(errors)) => errors
            .into_iter()
            .map(|e| FieldError::new(format!("data.{}", e.field), e.message))
            .collect(),
        Err(e) => vec![FieldError::new("data", e.to_string())],
    }
}
