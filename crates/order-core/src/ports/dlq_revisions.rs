//! Revisions of a DLQ record's message: an operator's edit of a message a
//! consumer could not process, kept beside the record (whose original is
//! never changed) and replayed instead of it.

use super::error::StoreError;
use async_trait::async_trait;
use chrono::DateTime;
use chrono::Utc;
use serde::Deserialize;
use serde::Serialize;

/// Where a revision stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RevisionState {
    /// Written while approval was off: a replay may send it.
    Ready,
    /// Four eyes: waits for a second admin to approve or reject it.
    AwaitingApproval,
    /// A second admin approved it: a replay may send it.
    Approved,
    /// A second admin rejected it: never sent; the revision before it
    /// counts again.
    Rejected,
}

impl RevisionState {
    pub const ALL: [RevisionState; 4] = [
        RevisionState::Ready,
        RevisionState::AwaitingApproval,
        RevisionState::Approved,
        RevisionState::Rejected,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionState::Ready => "READY",
            RevisionState::AwaitingApproval => "AWAITING_APPROVAL",
            RevisionState::Approved => "APPROVED",
            RevisionState::Rejected => "REJECTED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A revision to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRevision {
    pub event_id: String,
    /// Its number: one more than the highest stored for the record.
    pub revision: u32,
    /// The revision it was edited from (0: the original message).
    pub based_on: u32,
    pub author: String,
    pub reason: String,
    /// The RFC 6902 patch from the message it was based on to `payload`.
    pub patch: serde_json::Value,
    /// The whole message as this revision has it.
    pub payload: String,
    pub state: RevisionState,
    pub at: DateTime<Utc>,
}

/// A stored revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub event_id: String,
    /// 1 for the first edit; numbers are never reused.
    pub revision: u32,
    /// The revision it was edited from (0: the original message).
    pub based_on: u32,
    pub author: String,
    pub reason: String,
    /// RFC 6902 operations from the message it was based on to this one
    /// (its diff).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub patch: serde_json::Value,
    /// The whole message as this revision has it. Omitted for principals
    /// below operator, like a record's originalEvent.
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub payload: String,
    pub state: RevisionState,
    pub created_at: DateTime<Utc>,
    /// The admin who approved or rejected it.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reviewer: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reviewed_at: Option<DateTime<Utc>>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub review_note: Option<String>,
}

/// [`DlqRevisionStore::review`]: revision `revision` of `event_id` goes
/// from one of `from` to `to`, reviewed by `reviewer` at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review<'a> {
    pub event_id: &'a str,
    pub revision: u32,
    pub from: &'a [RevisionState],
    pub to: RevisionState,
    pub reviewer: &'a str,
    pub note: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// The revisions of DLQ records. Append-only but for a review, which only
/// moves a revision's state (and names its reviewer) under a guard.
#[async_trait]
pub trait DlqRevisionStore: Send + Sync {
    /// Stores `rev` unless the record already has a revision of that number
    /// (another editor was first): `None` then, and nothing is written.
    async fn add_revision(&self, rev: &NewRevision) -> Result<Option<Revision>, StoreError>;

    /// The record's revisions, lowest number first.
    async fn revisions(&self, event_id: &str) -> Result<Vec<Revision>, StoreError>;

    /// Moves a revision whose state is one of `review.from` to `review.to`.
    /// `None` (nothing written) when there is no such revision in such a
    /// state.
    async fn review(&self, review: &Review<'_>) -> Result<Option<Revision>, StoreError>;
}
