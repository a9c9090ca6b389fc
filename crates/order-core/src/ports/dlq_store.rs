//! DLQ records: what could not be published or processed, held per order in sequences.

use super::bus::PublishError;
use super::error::StoreError;
use super::page::Cursor;
use super::page::CursorId;
use super::page::Keyed;
use super::page::ListRequest;
use super::page::Page;
use super::page::PageRequest;
use async_trait::async_trait;
use chrono::DateTime;
use chrono::Utc;
use serde::Deserialize;
use serde::Serialize;

// ---------------------------------------------------------------------------
// DLQ records
// ---------------------------------------------------------------------------

/// Where a DLQ record stands: PENDING and FAILED wait for an operator (or
/// the redrive); REPLAYED and SKIPPED are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DlqStatus {
    Pending,
    Replayed,
    Failed,
    Skipped,
}

impl DlqStatus {
    pub const ALL: [DlqStatus; 4] = [
        DlqStatus::Pending,
        DlqStatus::Replayed,
        DlqStatus::Failed,
        DlqStatus::Skipped,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DlqStatus::Pending => "PENDING",
            DlqStatus::Replayed => "REPLAYED",
            DlqStatus::Failed => "FAILED",
            DlqStatus::Skipped => "SKIPPED",
        }
    }
    /// Case-insensitive parse.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
    }
    /// Still waiting for an operator (or the redrive).
    pub fn is_unresolved(self) -> bool {
        matches!(self, DlqStatus::Pending | DlqStatus::Failed)
    }
}

/// Where a DLQ record came from: PUBLISH, the relay could not publish it;
/// CONSUMER, a consumer dead-lettered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DlqSource {
    /// The relay (or the test endpoint) could not publish it: no broker
    /// acknowledged it (a timed-out attempt may still have landed; a replay
    /// checks), and the order's later events wait behind it.
    Publish,
    /// A consumer could not process it and sent it to the DLQ topic.
    Consumer,
}

impl DlqSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqSource::Publish => "PUBLISH",
            DlqSource::Consumer => "CONSUMER",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PUBLISH" => Some(DlqSource::Publish),
            "CONSUMER" => Some(DlqSource::Consumer),
            _ => None,
        }
    }
}

/// Why a publish failed, as the automatic redrive needs it: a later attempt
/// may succeed (broker unreachable, timeout, the fault switch) or it will
/// fail again (message too large, unknown topic). Stored in its own column,
/// so nothing parses it back out of a reason's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureClass {
    Retryable,
    Permanent,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Retryable => "RETRYABLE",
            FailureClass::Permanent => "PERMANENT",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RETRYABLE" => Some(FailureClass::Retryable),
            "PERMANENT" => Some(FailureClass::Permanent),
            _ => None,
        }
    }
    pub fn of(e: &PublishError) -> Self {
        match e {
            PublishError::Retryable(_) => FailureClass::Retryable,
            PublishError::Permanent(_) => FailureClass::Permanent,
        }
    }
}

/// A DLQ record to insert (status PENDING, zero replay attempts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDlqRecord {
    pub event_id: String,
    pub aggregate_id: String,
    pub event_type: String,
    /// Aggregate version of the event, when known.
    pub version: Option<u64>,
    /// The message value as it was (or would have been) published.
    pub original_event: String,
    pub failure_reason: String,
    /// Class of the publish error that parked it; `None` for a record held
    /// behind a head (no error of its own) and for consumer-side records.
    pub failure_class: Option<FailureClass>,
    pub failure_time: DateTime<Utc>,
    pub source: DlqSource,
    /// Event id of the unresolved head this event waits behind.
    pub blocked_by: Option<String>,
    /// Topic the message is replayed to.
    pub topic: String,
    /// Where a consumer-side failure was read from (`topic/partition/offset`).
    pub origin: Option<String>,
    /// The consumer group that dead-lettered a consumer-side record: a
    /// replay redelivers to that group alone.
    pub consumer_group: Option<String>,
    /// Set when the record comes from another environment's export.
    pub imported: Option<ImportMark>,
}

/// Who imported a record from another environment's export, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportMark {
    pub at: DateTime<Utc>,
    pub by: String,
}

/// The customer a DLQ message names (`data.customerId` of an envelope),
/// stored beside the record for search.
pub fn customer_of(message: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "customerId")]
        customer_id: Option<String>,
    }
    #[derive(Deserialize)]
    struct Envelope {
        data: Option<Data>,
    }
    serde_json::from_str::<Envelope>(message)
        .ok()?
        .data?
        .customer_id
        .filter(|c| !c.is_empty() && c.len() <= 255)
}

/// A stored DLQ record; field names follow the original service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({
    "id": 7, "eventId": "0193a6b2-5f1e-7c3a-9d0e-2b4c6d8e0f12",
    "aggregateId": "0193a6b2-5e00-7000-8000-000000000001", "eventType": "OrderCreated",
    "version": 1, "failureReason": "bus unavailable: the fault switch is on",
    "failureClass": "RETRYABLE", "failureTime": "2024-05-01T12:00:00Z", "status": "PENDING",
    "replayAttemptTime": null, "replayResult": null, "replayFailureClass": null,
    "replayAttempts": 0, "source": "PUBLISH", "blockedBy": null, "topic": "order-events",
    "origin": null, "consumerGroup": null, "customerId": "customer-42", "importedAt": null,
    "importedBy": null
})))]
#[serde(rename_all = "camelCase")]
pub struct DlqRecord {
    pub id: i64,
    pub event_id: String,
    pub aggregate_id: String,
    pub event_type: String,
    /// Aggregate version of the event, when known.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub version: Option<u64>,
    /// The message value as published (or as it would have been). Omitted
    /// for principals below operator.
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub original_event: String,
    pub failure_reason: String,
    /// Class of the publish error that parked it: RETRYABLE (the automatic
    /// redrive may replay it) or PERMANENT (an operator decides). Null for a
    /// record held behind a head without an error of its own and for
    /// consumer-side records.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub failure_class: Option<FailureClass>,
    pub failure_time: DateTime<Utc>,
    pub status: DlqStatus,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub replay_attempt_time: Option<DateTime<Utc>>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub replay_result: Option<String>,
    /// Class of the error of the last failed replay while the record is
    /// FAILED; null otherwise.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub replay_failure_class: Option<FailureClass>,
    pub replay_attempts: u32,
    pub source: DlqSource,
    /// Event id of the unresolved head of the same order this record waits
    /// behind.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub blocked_by: Option<String>,
    /// Topic the message is replayed to.
    pub topic: String,
    /// `topic/partition/offset` a consumer-side failure was read from.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub origin: Option<String>,
    /// The consumer group that dead-lettered a consumer-side record; a
    /// replay redelivers to that group alone (see the README's "Targeted
    /// redelivery"). Null for publish-side records and when the dead letter
    /// did not name its group.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub consumer_group: Option<String>,
    /// The customer the message names (`data.customerId`), for search.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub customer_id: Option<String>,
    /// When the record was imported from another environment's export;
    /// null for records this environment recorded.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub imported_at: Option<DateTime<Utc>>,
    /// Who imported it.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub imported_by: Option<String>,
}

/// Listings sort newest failure first.
impl Keyed for DlqRecord {
    fn cursor(&self) -> Cursor {
        Cursor {
            at: self.failure_time,
            id: CursorId::Int(self.id),
        }
    }
}

/// Record counts by status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DlqStats {
    pub pending_count: u64,
    pub replayed_count: u64,
    pub failed_count: u64,
    pub skipped_count: u64,
    pub total_count: u64,
    /// PENDING records waiting behind a head of the same order.
    pub blocked_count: u64,
    /// Failure time of the oldest unresolved (PENDING or FAILED) record.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub oldest_pending_failure_time: Option<DateTime<Utc>>,
}

/// An unresolved publish-side record, as the relay needs it to find an
/// order's sequence head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceMember {
    pub aggregate_id: String,
    pub event_id: String,
    pub version: Option<u64>,
    pub id: i64,
}

/// A condition a [`SequenceChange`] needs to still hold when it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The record exists and its status is one of these.
    Status {
        event_id: String,
        any_of: Vec<DlqStatus>,
    },
    /// No replay holds a claim on the record that is still live at the
    /// change's `at`.
    Unclaimed { event_id: String },
    /// The record is held behind exactly this head (`None`: it heads its
    /// sequence).
    HeldBehind {
        event_id: String,
        head: Option<String>,
    },
    /// The record's origin is exactly this.
    Origin {
        event_id: String,
        origin: Option<String>,
    },
    /// No unresolved record is held behind `head`. Checked under the head
    /// row's lock, the lock a relay takes before it parks events behind that
    /// head ([`Outbox::settle`](super::Outbox::settle)): a replay that
    /// resolves a head cannot miss an event parked behind it meanwhile.
    NothingHeldBehind { head: String },
}

/// One write of a [`SequenceChange`]: the storage primitives the DLQ rules
/// in the core are made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Records whose status is one of `from` get status `to`,
    /// `replay_result = result`, `replay_attempt_time = at`, and
    /// `replay_failure_class = failure_class`; `replay_attempts` grows by one
    /// when `count_attempt`.
    SetStatus {
        event_ids: Vec<String>,
        from: Vec<DlqStatus>,
        to: DlqStatus,
        result: String,
        failure_class: Option<FailureClass>,
        count_attempt: bool,
    },
    /// The record heads its sequence: `blocked_by` is cleared.
    MakeHead { event_id: String },
    /// Every record held behind `from`, other than `to`, is held behind `to`.
    MoveHeld { from: String, to: String },
    /// A REPLAYED record failed again downstream: PENDING with the new
    /// failure's reason, time and origin.
    Reopen {
        event_id: String,
        reason: String,
        failure_time: DateTime<Utc>,
        origin: Option<String>,
    },
}

/// A change to DLQ records decided in the core
/// ([`crate::app::dlq::sequencing`]) and written by an adapter in ONE
/// transaction: every guard is checked on the rows as they are then (locked
/// against concurrent writers), and either all steps are written, in order,
/// or — when a guard fails — none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceChange {
    pub at: DateTime<Utc>,
    pub guards: Vec<Guard>,
    pub steps: Vec<Step>,
}

/// [`DlqStore::claim_replay`]: `claimant` claims record `event_id` at
/// `now`, until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayClaim<'a> {
    pub event_id: &'a str,
    pub claimant: &'a str,
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// A position in the order of sequence heads (oldest failure first, then
/// id): [`HeadQuery::after`] continues after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadCursor {
    pub failure_time: DateTime<Utc>,
    pub id: i64,
}

impl HeadCursor {
    /// The cursor just past `rec`.
    pub fn of(rec: &DlqRecord) -> Self {
        Self {
            failure_time: rec.failure_time,
            id: rec.id,
        }
    }
}

/// [`DlqStore::heads`]: unresolved sequence heads matching every given
/// condition, oldest failure first (then id), after `after`, at most
/// `limit`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadQuery<'a> {
    pub aggregate_id: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub status: Option<DlqStatus>,
    pub source: Option<DlqSource>,
    /// Failed at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Failed strictly before this instant.
    pub to: Option<DateTime<Utc>>,
    pub after: Option<HeadCursor>,
    pub limit: usize,
}

/// [`DlqStore::claim_replays`]: `claimant` claims the records `event_ids`
/// at `now`, until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayClaims<'a> {
    pub event_ids: &'a [String],
    pub claimant: &'a str,
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// What [`DlqStore::search`] matches: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqFilter {
    /// A case-insensitive substring of the failure reason (`%` and `_`
    /// are literal). Found by a scan (LIKE), see [`DlqStore::search`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Records of this order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<String>,
    /// Records whose message names this customer (`customer_id`, filled
    /// from `data.customerId`: only `OrderCreated` carries it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Records of any of these orders; empty: any order. The app layer
    /// turns a customer search into the customer's orders.
    #[serde(skip)]
    pub orders: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<DlqStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<DlqSource>,
    /// Failed at or after this instant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// Failed strictly before this instant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
}

/// [`DlqStore::search`]: the records `filter` matches, a page of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlqSearch {
    pub filter: DlqFilter,
    pub page: ListRequest,
}

/// The DLQ records. Adapters store and find; every rule (what heads a
/// sequence, who takes over, what may change) is decided in the core.
#[async_trait]
pub trait DlqStore: Send + Sync {
    /// Inserts the records whose event id is not stored yet (the DLQ
    /// recorder may see a message twice). Returns the event ids that were
    /// already there, left unchanged.
    async fn insert_new(&self, records: &[NewDlqRecord]) -> Result<Vec<String>, StoreError>;

    async fn get(&self, event_id: &str) -> Result<Option<DlqRecord>, StoreError>;

    /// Records, newest failure first (then highest id), optionally of one
    /// status: a page by number or the page after a cursor. The total is
    /// kept by the store as records change, never counted row by row.
    async fn list_page(
        &self,
        status: Option<DlqStatus>,
        req: ListRequest,
    ) -> Result<Page<DlqRecord>, StoreError>;

    /// The records `search.filter` matches, newest failure first (then
    /// highest id), by page number or after a cursor, read through the
    /// index of the narrowest filter given (order, customer, event type,
    /// status, else failure time). A text filter is checked row by row
    /// along that index, so a page stops as soon as it is full; for the
    /// same reason a search with text is not counted: its
    /// `total_elements` is 0 (a COUNT would read every record in range).
    /// Without text the total is an exact count of the filter.
    async fn search(&self, search: &DlqSearch) -> Result<Page<DlqRecord>, StoreError>;

    /// [`list_page`](Self::list_page) by page number.
    async fn list(
        &self,
        status: Option<DlqStatus>,
        page: PageRequest,
    ) -> Result<Page<DlqRecord>, StoreError> {
        self.list_page(status, page.into()).await
    }

    /// The counts (kept by the store as records change, so answering does
    /// not scan the records) and the oldest unresolved failure time.
    async fn stats(&self) -> Result<DlqStats, StoreError>;

    /// Every unresolved (PENDING or FAILED) publish-side record of the given
    /// aggregates, whether or not it is marked as held, in any order.
    async fn unresolved_publish_records(
        &self,
        aggregate_ids: &[String],
    ) -> Result<Vec<SequenceMember>, StoreError>;

    /// Unresolved sequence heads: records not held behind another
    /// (`blocked_by` empty) that are PENDING or FAILED, as
    /// [`HeadQuery`] asks. Answered from an index the database maintains
    /// with every write (migration 0007), never by a scan of the DLQ.
    async fn heads(&self, query: &HeadQuery<'_>) -> Result<Vec<DlqRecord>, StoreError>;

    /// How many heads match `query` (its `after` and `limit` ignored).
    async fn count_heads(&self, query: &HeadQuery<'_>) -> Result<u64, StoreError>;

    /// Unresolved records held behind any of `heads`, ordered by head, then
    /// version, then id.
    async fn held_behind(&self, heads: &[String]) -> Result<Vec<DlqRecord>, StoreError>;

    /// Unresolved records held behind `head_event_id`, in version order
    /// (then id order).
    async fn blocked_behind(&self, head_event_id: &str) -> Result<Vec<DlqRecord>, StoreError> {
        self.held_behind(&[head_event_id.to_owned()]).await
    }

    /// Claims unresolved (PENDING or FAILED) records for a replay until
    /// `claims.until`, so replays on several instances never publish one
    /// twice. Returns the event ids `claims.claimant` holds now: free ones,
    /// expired ones (before `claims.now`), and those already its own.
    async fn claim_replays(&self, claims: ReplayClaims<'_>) -> Result<Vec<String>, StoreError>;

    /// [`claim_replays`](Self::claim_replays) of one record: true when the
    /// claimant holds it now.
    async fn claim_replay(&self, claim: ReplayClaim<'_>) -> Result<bool, StoreError> {
        let ids = [claim.event_id.to_owned()];
        let held = self
            .claim_replays(ReplayClaims {
                event_ids: &ids,
                claimant: claim.claimant,
                now: claim.now,
                until: claim.until,
            })
            .await?;
        Ok(!held.is_empty())
    }

    /// Gives back `claimant`'s claims on these records (another's are left
    /// alone).
    async fn release_replays(&self, event_ids: &[String], claimant: &str)
        -> Result<(), StoreError>;

    /// Gives back `claimant`'s claim on a record (another's is left alone).
    async fn release_replay(&self, event_id: &str, claimant: &str) -> Result<(), StoreError> {
        self.release_replays(&[event_id.to_owned()], claimant).await
    }

    /// Writes `change` in one transaction. False (nothing written) when one
    /// of its guards does not hold.
    async fn apply(&self, change: &SequenceChange) -> Result<bool, StoreError>;

    /// Unresolved records held behind a head that is resolved or missing.
    /// The sequencing rules keep this at 0; it is exported as the
    /// `orders_dlq_orphaned_holds` gauge so a breach is seen.
    async fn orphaned_holds(&self) -> Result<u64, StoreError>;

    /// The database's clock. Replay claims are computed from it, so the
    /// instances' own clocks never meet.
    async fn clock(&self) -> Result<DateTime<Utc>, StoreError>;

    /// Deletes at most `limit` REPLAYED or SKIPPED records resolved (last
    /// replayed or skipped) before `before`, none that an unresolved record
    /// is held behind; a record reopened meanwhile is kept. How many went.
    async fn purge_resolved(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;
}
