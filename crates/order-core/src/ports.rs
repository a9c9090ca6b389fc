//! Ports: the traits the application services need from the outside world.
//! Adapters (SQLite, MySQL, Kafka, MongoDB, the embedded bus) implement them
//! and translate their driver errors into the error types defined here before
//! anything leaves the adapter. Every port has a contract suite in
//! [`crate::testkit`] that every adapter must pass.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{EventEnvelope, Order, OrderStatus, RecordedEvent};

/// Infrastructure failure of a store, already translated by the adapter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or timed out; retrying later may succeed (503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data cannot be read back (a bug or manual tampering) (500).
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

// ---------------------------------------------------------------------------
// Event store + current state + outbox (the write side)
// ---------------------------------------------------------------------------

/// A record that an `Idempotency-Key` was used for a create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// Hash of the request body; a reuse with another body is rejected.
    pub fingerprint: String,
    pub order_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// Everything one command writes, atomically: its events (which are also
/// the outbox rows), the order's new current state and, for a create with an
/// `Idempotency-Key`, the key.
#[derive(Clone, Debug)]
pub struct Commit {
    /// Version of the order the decision was made on (0 for a create).
    pub expected_version: u64,
    /// Events in version order, `expected_version + 1 ..`.
    pub events: Vec<EventEnvelope>,
    /// State after applying `events`; `state.version` is the last event's version.
    pub state: Order,
    pub idempotency: Option<IdempotencyRecord>,
}

/// Why one commit of a batch was not written. The other commits of the batch
/// are unaffected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Another command wrote the order first (UNIQUE(aggregate_id, version)).
    #[error("version conflict")]
    VersionConflict,
    /// The idempotency key was stored by an earlier (or concurrent) request.
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which part of a stream to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamBound {
    All,
    /// Events with `version <= n`.
    UpToVersion(u64),
    /// Events with `occurred_on <= t`.
    UpToInstant(DateTime<Utc>),
}

/// The event store with the current-state tables and the outbox.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Writes a batch of commits in ONE transaction (group commit). Each
    /// commit succeeds or fails on its own (savepoints): a conflicting commit
    /// leaves no row behind while the others are written. Writes, per commit:
    /// `event_store` rows (the auto-increment id is the global position),
    /// `orders`/`order_items` current state, one outbox row per event, and the
    /// idempotency key. Returns the global positions of each commit's events,
    /// or the batch-wide error when the transaction itself failed.
    async fn commit_batch(
        &self,
        commits: Vec<Commit>,
    ) -> Result<Vec<Result<Vec<i64>, CommitError>>, StoreError>;

    /// Current state from the `orders`/`order_items` tables.
    async fn load_order(&self, id: Uuid) -> Result<Option<Order>, StoreError>;

    /// One aggregate's events in version order, optionally bounded.
    async fn load_stream(
        &self,
        aggregate_id: &str,
        bound: StreamBound,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events with `position > after`, in position order, at most `limit`.
    async fn read_all(&self, after: i64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Highest global position, 0 when empty.
    async fn head_position(&self) -> Result<i64, StoreError>;

    async fn find_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Cheap round trip for health checks.
    async fn ping(&self) -> Result<(), StoreError>;
}

// ---------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------

/// One outbox row: an event committed but not yet delivered or parked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Global position of the event (outbox rows are taken in this order).
    pub position: i64,
    pub envelope: EventEnvelope,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxStats {
    pub pending: u64,
    pub oldest_created_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait Outbox: Send + Sync {
    /// The oldest `limit` outbox rows in position order. Only the relay that
    /// holds the relay lease calls this, so rows are never taken twice.
    async fn fetch_batch(&self, limit: usize) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Whether the rows of the last non-empty [`fetch_batch`](Self::fetch_batch)
    /// may already have been published by a relay that did not settle them
    /// (it crashed, or lost the relay lease, mid-batch): true for the first
    /// batch after this store was opened and after this instance (re)took
    /// the relay lease. The relay then asks the bus before sending them.
    fn last_batch_maybe_sent(&self) -> bool;

    /// In one transaction: deletes the delivered rows, inserts the parked
    /// events as DLQ records (an event id already in the DLQ is left as it is)
    /// and deletes their outbox rows.
    async fn settle(&self, delivered: &[i64], parked: &[ParkedEvent]) -> Result<(), StoreError>;

    async fn stats(&self) -> Result<OutboxStats, StoreError>;
}

/// An outbox row that is moved to the DLQ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedEvent {
    pub position: i64,
    pub record: NewDlqRecord,
}

// ---------------------------------------------------------------------------
// DLQ records
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// Where a DLQ record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    pub failure_time: DateTime<Utc>,
    pub source: DlqSource,
    /// Event id of the unresolved head this event waits behind.
    pub blocked_by: Option<String>,
    /// Topic the message is replayed to.
    pub topic: String,
    /// Where a consumer-side failure was read from (`topic/partition/offset`).
    pub origin: Option<String>,
}

/// A stored DLQ record; field names follow the original service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqRecord {
    pub id: i64,
    pub event_id: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub version: Option<u64>,
    pub original_event: String,
    pub failure_reason: String,
    pub failure_time: DateTime<Utc>,
    pub status: DlqStatus,
    pub replay_attempt_time: Option<DateTime<Utc>>,
    pub replay_result: Option<String>,
    pub replay_attempts: u32,
    pub source: DlqSource,
    pub blocked_by: Option<String>,
    pub topic: String,
    pub origin: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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
    pub oldest_pending_failure_time: Option<DateTime<Utc>>,
}

/// A page request: `page` is zero-based, `size` at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub size: u32,
}

impl PageRequest {
    pub fn offset(&self) -> u64 {
        u64::from(self.page) * u64::from(self.size)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub content: Vec<T>,
    pub page: u32,
    pub size: u32,
    pub total_elements: u64,
    pub total_pages: u64,
}

impl<T> Page<T> {
    pub fn new(content: Vec<T>, req: PageRequest, total: u64) -> Self {
        let size = u64::from(req.size.max(1));
        Self {
            content,
            page: req.page,
            size: req.size,
            total_elements: total,
            total_pages: total.div_ceil(size),
        }
    }
}

/// Result of a conditional status change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transitioned {
    Done(DlqRecord),
    /// The record exists but was in another status; it is returned unchanged.
    WrongStatus(DlqRecord),
    NotFound,
}

#[async_trait]
pub trait DlqStore: Send + Sync {
    /// Inserts records; an event id already present is left unchanged (the
    /// DLQ recorder may see a message twice), with one exception: a
    /// consumer-side failure of a REPLAYED record read from another origin
    /// (`topic/partition/offset`) means the replay failed again downstream,
    /// so the record is reopened as PENDING with the new reason, time and
    /// origin. Returns how many were new or reopened.
    async fn insert(&self, records: &[NewDlqRecord]) -> Result<usize, StoreError>;

    async fn get(&self, event_id: &str) -> Result<Option<DlqRecord>, StoreError>;

    /// Records, newest failure first, optionally of one status.
    async fn list(
        &self,
        status: Option<DlqStatus>,
        page: PageRequest,
    ) -> Result<Page<DlqRecord>, StoreError>;

    async fn stats(&self) -> Result<DlqStats, StoreError>;

    /// For each given aggregate that has one: the event id of its earliest
    /// unresolved publish-side record (source PUBLISH, status PENDING or
    /// FAILED, lowest version), whether or not that record is itself marked
    /// as blocked: a record whose head was resolved elsewhere (another
    /// instance's replay) must still hold the order's later events back.
    async fn unresolved_heads(
        &self,
        aggregate_ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError>;

    /// Unresolved records waiting behind `head_event_id`, in version order
    /// (then id order).
    async fn blocked_behind(&self, head_event_id: &str) -> Result<Vec<DlqRecord>, StoreError>;

    /// Marks records REPLAYED: `replay_attempts += 1`, `replay_attempt_time =
    /// at`, `replay_result = result`. Only records in PENDING or FAILED change.
    async fn mark_replayed(
        &self,
        event_ids: &[String],
        at: DateTime<Utc>,
        result: &str,
    ) -> Result<(), StoreError>;

    /// Marks one record FAILED after a failed replay (`replay_attempts += 1`,
    /// time, result) and makes it the head of its sequence: its `blocked_by`
    /// is cleared and every record blocked behind `previous_head` (other than
    /// itself) is re-pointed to it.
    async fn mark_failed(
        &self,
        event_id: &str,
        previous_head: &str,
        at: DateTime<Utc>,
        result: &str,
    ) -> Result<(), StoreError>;

    /// Claims an unresolved (PENDING or FAILED) record for a replay until
    /// `until`, so replays on several instances never publish it twice.
    /// True when `claimant` holds the claim now: it was free, had expired
    /// (before `now`), or was already `claimant`'s.
    async fn claim_replay(
        &self,
        event_id: &str,
        claimant: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Gives back `claimant`'s claim on a record (another's is left alone).
    async fn release_replay(&self, event_id: &str, claimant: &str) -> Result<(), StoreError>;

    /// Conditional status change `from -> to` (e.g. FAILED -> PENDING on reset).
    async fn transition(
        &self,
        event_id: &str,
        from: DlqStatus,
        to: DlqStatus,
        result: &str,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, StoreError>;

    /// An operator gives up on an unresolved (PENDING or FAILED) record: in
    /// one transaction it becomes SKIPPED (`replay_result = reason`,
    /// `replay_attempt_time = at`; `replay_attempts` unchanged). A record
    /// with a live replay claim (not expired at `at`) is left alone
    /// ([`Skipped::Claimed`]). When unresolved records wait behind it (it
    /// heads a sequence), the one with the lowest version (then id) becomes
    /// the new head: its `blocked_by` is cleared and every other record
    /// blocked behind the skipped one is re-pointed to it. A record held
    /// behind another simply leaves the sequence.
    async fn skip(
        &self,
        event_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Skipped, StoreError>;
}

/// Result of [`DlqStore::skip`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// The record as stored now, and the event id of the record that took
    /// over as head of its sequence, if any.
    Done {
        record: DlqRecord,
        new_head: Option<String>,
    },
    /// Not PENDING or FAILED; returned unchanged.
    WrongStatus(DlqRecord),
    /// A replay holds it right now; returned unchanged.
    Claimed(DlqRecord),
    NotFound,
}

// ---------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------

/// What an audited operator action was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditAction {
    DlqReplay,
    /// Also a dry run (`parameters.dryRun`).
    DlqBulkReplay,
    DlqReset,
    DlqSkip,
    TestPublishEvent,
    TestBusDown,
    TestBusUp,
    ReadModelRebuild,
    /// A bulk replay job was created (`target`: the job id).
    DlqReplayJobCreate,
    /// A bulk replay job was cancelled (`target`: the job id).
    DlqReplayJobCancel,
}

impl AuditAction {
    pub const ALL: [AuditAction; 10] = [
        AuditAction::DlqReplay,
        AuditAction::DlqBulkReplay,
        AuditAction::DlqReset,
        AuditAction::DlqSkip,
        AuditAction::TestPublishEvent,
        AuditAction::TestBusDown,
        AuditAction::TestBusUp,
        AuditAction::ReadModelRebuild,
        AuditAction::DlqReplayJobCreate,
        AuditAction::DlqReplayJobCancel,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::DlqReplay => "DLQ_REPLAY",
            AuditAction::DlqBulkReplay => "DLQ_BULK_REPLAY",
            AuditAction::DlqReset => "DLQ_RESET",
            AuditAction::DlqSkip => "DLQ_SKIP",
            AuditAction::TestPublishEvent => "TEST_PUBLISH_EVENT",
            AuditAction::TestBusDown => "TEST_BUS_DOWN",
            AuditAction::TestBusUp => "TEST_BUS_UP",
            AuditAction::ReadModelRebuild => "READ_MODEL_REBUILD",
            AuditAction::DlqReplayJobCreate => "DLQ_REPLAY_JOB_CREATE",
            AuditAction::DlqReplayJobCancel => "DLQ_REPLAY_JOB_CANCEL",
        }
    }
    /// Case-insensitive parse.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Longest principal name, target and result an audit log must store
/// (the app layer cuts longer ones).
pub const AUDIT_TEXT_MAX: usize = 255;

/// An audit entry to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub principal: String,
    /// The principal's role (`viewer`, `operator`, `admin`).
    pub role: String,
    pub action: AuditAction,
    /// The event id acted on, when the action has one.
    pub target: Option<String>,
    /// The request's parameters, as a JSON object.
    pub parameters: serde_json::Value,
    /// REPLAYED, FAILED, SKIPPED, OK, or the HTTP status of a refusal (404, 409, 503…).
    pub result: String,
    pub at: DateTime<Utc>,
}

/// A stored audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub principal: String,
    pub role: String,
    pub action: AuditAction,
    pub target: Option<String>,
    pub parameters: serde_json::Value,
    pub result: String,
    pub at: DateTime<Utc>,
}

/// Which entries [`AuditLog::list`] returns; every field narrows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub action: Option<AuditAction>,
    pub target: Option<String>,
    /// Entries at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Entries strictly before this instant.
    pub to: Option<DateTime<Utc>>,
}

/// Who did what to the DLQ (and the test/admin switches). Append-only: the
/// port has no way to change or remove an entry.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Stores one entry and returns it with its id (ids increase).
    async fn append(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError>;

    /// Matching entries, newest first (`at` desc, then id desc).
    async fn list(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError>;
}

// ---------------------------------------------------------------------------
// DLQ replay jobs
// ---------------------------------------------------------------------------

/// Where a bulk replay job stands. Only RUNNING jobs are worked on; the
/// others are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Running,
    /// No matching unresolved head was left, or `limit` heads were processed.
    Completed,
    /// Cancelled by an operator.
    Cancelled,
    /// Stopped by itself: too many replays failed.
    Stopped,
    /// Ended by an error (the store or the bus could not be used).
    Failed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Cancelled,
        JobStatus::Stopped,
        JobStatus::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "RUNNING",
            JobStatus::Completed => "COMPLETED",
            JobStatus::Cancelled => "CANCELLED",
            JobStatus::Stopped => "STOPPED",
            JobStatus::Failed => "FAILED",
        }
    }
    /// Case-insensitive parse.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
    }
    pub fn is_final(self) -> bool {
        self != JobStatus::Running
    }
}

/// What a job has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCounters {
    /// Matching unresolved heads when the job was created.
    pub matched: u64,
    /// Heads worked on (replayed + failed + skipped).
    pub processed: u64,
    pub replayed: u64,
    pub failed: u64,
    /// Found resolved meanwhile (by another replay): nothing published.
    pub skipped: u64,
    /// Messages put on the bus, held events included.
    pub published: u64,
}

/// A job to store: RUNNING, no runner yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReplayJob {
    pub id: Uuid,
    pub principal: String,
    pub role: String,
    /// The replay filter, as the JSON object the job was created with.
    pub filter: serde_json::Value,
    pub matched: u64,
    pub created_at: DateTime<Utc>,
}

/// A stored bulk replay job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayJob {
    pub id: Uuid,
    pub principal: String,
    pub role: String,
    pub filter: serde_json::Value,
    pub status: JobStatus,
    #[serde(flatten)]
    pub counters: JobCounters,
    /// Why it ended (or what it is doing), for people.
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The runner (service instance) holding the job, while its lease lasts.
    pub runner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
}

/// A job's id, filter and status as the stores keep them (text), read back.
/// Shared by the adapters so both report a damaged row the same way.
pub fn decode_job_text(
    id: &str,
    filter: &str,
    status: &str,
) -> Result<(Uuid, serde_json::Value, JobStatus), StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(what);
    Ok((
        Uuid::parse_str(id).map_err(|e| corrupt(format!("job id {id:?}: {e}")))?,
        serde_json::from_str(filter)
            .map_err(|e| corrupt(format!("job {id}: unreadable filter: {e}")))?,
        JobStatus::parse(status)
            .ok_or_else(|| corrupt(format!("job {id}: unknown status {status:?}")))?,
    ))
}

/// Result of [`ReplayJobStore::cancel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobCancelled {
    Done(ReplayJob),
    /// Already final; returned unchanged.
    AlreadyFinished(ReplayJob),
    NotFound,
}

/// Durable bulk replay jobs. A runner works on a job only while it holds
/// its lease; a lease that lapses (a dead runner) may be taken by another.
#[async_trait]
pub trait ReplayJobStore: Send + Sync {
    /// Stores a RUNNING job (zero counters except `matched`).
    async fn create_job(&self, job: &NewReplayJob) -> Result<ReplayJob, StoreError>;

    async fn get_job(&self, id: Uuid) -> Result<Option<ReplayJob>, StoreError>;

    /// All jobs, newest first (`created_at` desc, then id desc).
    async fn list_jobs(&self, page: PageRequest) -> Result<Page<ReplayJob>, StoreError>;

    /// RUNNING jobs whose lease is free or lapsed at `now`, or held by
    /// `runner`, oldest first.
    async fn leasable_jobs(
        &self,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// Takes (or renews) the lease of a RUNNING job until `until` when it is
    /// free, lapsed at `now` or already `runner`'s. `None` otherwise.
    async fn lease_job(
        &self,
        id: Uuid,
        runner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<ReplayJob>, StoreError>;

    /// Saves the counters and renews the lease, while the job is RUNNING
    /// and leased by `runner`; false otherwise (cancelled, or taken over).
    async fn save_job_progress(
        &self,
        id: Uuid,
        runner: &str,
        counters: &JobCounters,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Ends a RUNNING job leased by `runner` with a final `status`, the
    /// counters and a message, releasing the lease; false otherwise.
    async fn finish_job(
        &self,
        id: Uuid,
        runner: &str,
        status: JobStatus,
        counters: &JobCounters,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// RUNNING → CANCELLED (whoever holds the lease), releasing the lease.
    async fn cancel_job(
        &self,
        id: Uuid,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<JobCancelled, StoreError>;
}

// ---------------------------------------------------------------------------
// Read model
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub customer_id: Option<String>,
    pub restaurant_id: Option<String>,
    pub status: Option<OrderStatus>,
}

/// The query-side store. It only stores documents; the projector folds
/// events in the core so every adapter applies the same logic.
#[async_trait]
pub trait ReadModel: Send + Sync {
    async fn get_many(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Order>, StoreError>;

    /// Writes each order unless the stored one has the same or a higher
    /// version (a version-guarded upsert: duplicates and stale writes change
    /// nothing). Returns how many were written.
    async fn upsert_many(&self, orders: &[Order]) -> Result<usize, StoreError>;

    async fn get(&self, id: Uuid) -> Result<Option<Order>, StoreError>;

    /// Newest first (`created_at` desc, then id).
    async fn query(
        &self,
        filter: &OrderFilter,
        page: PageRequest,
    ) -> Result<Page<Order>, StoreError>;

    /// Removes every document (before a rebuild).
    async fn clear(&self) -> Result<(), StoreError>;

    async fn count(&self) -> Result<u64, StoreError>;

    async fn ping(&self) -> Result<(), StoreError>;
}

// ---------------------------------------------------------------------------
// Event bus
// ---------------------------------------------------------------------------

/// A message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    pub topic: String,
    /// Partitioning key: the aggregate id, so one order's events stay in order.
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl BusMessage {
    /// The last value of header `name` (as a Kafka consumer reads it).
    pub fn header(&self, name: &str) -> Option<&str> {
        last_header(&self.headers, name)
    }

    /// The id a duplicate is recognised by: the `ce_id` header, else `eventId`.
    pub fn event_id(&self) -> Option<&str> {
        self.header("ce_id").or_else(|| self.header("eventId"))
    }

    /// The earliest moment the message can have been sent: its event's time
    /// (`ce_time`), minus [`CLOCK_MARGIN`] for clock differences between
    /// instances and the broker. `None` when the header is missing or
    /// unreadable (look at everything).
    pub fn earliest_send(&self) -> Option<DateTime<Utc>> {
        let at = DateTime::parse_from_rfc3339(self.header("ce_time")?).ok()?;
        Some(at.with_timezone(&Utc) - CLOCK_MARGIN)
    }
}

/// Allowed clock difference between the instance that sent a message and
/// whoever answers [`EventBus::find_published`].
pub const CLOCK_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A message received by a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        last_header(&self.headers, name)
    }
}

fn last_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Worth another attempt (broker unreachable, queue full, timeout).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Will fail again (message too large, unknown topic): park at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes messages and waits for the broker's acknowledgement. Returns
    /// one result per message, in order. Contract: for messages with the same
    /// key, a failure means no later message of that key in this call was
    /// delivered (they also report failure), so retrying the failed suffix
    /// keeps per-key order.
    async fn publish(&self, messages: &[BusMessage]) -> Vec<Result<(), PublishError>>;

    /// Asks the broker whether it is reachable (a metadata request); publishes
    /// nothing. Returns a human-readable description.
    async fn check(&self, timeout: Duration) -> Result<String, BusError>;

    /// Which of `messages` are already on their topic, as the set of their
    /// [`BusMessage::event_id`]s found there. Asked before a message is sent
    /// again after an attempt whose outcome is unknown (a timed-out request
    /// may still be appended once the broker answers again), so a retry or
    /// a replay does not put an event on the bus twice. Looks no further
    /// back than each message's [`BusMessage::earliest_send`]. An error
    /// means the bus could not say; the caller must not send then.
    async fn find_published(&self, messages: &[BusMessage]) -> Result<HashSet<String>, BusError>;

    /// Joins consumer group `group` on `topic`. Delivery is at least once:
    /// offsets move only through [`Subscription::commit`].
    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError>;
}

#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` messages after the committed position, waiting at most
    /// `wait` for the first one. May return messages already returned but not
    /// committed (after a restart).
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;

    /// Commits every message up to and including `delivery` (of its partition).
    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError>;

    /// Consumer lag: messages on the topic after this member's position (of
    /// the partitions it holds now). Asks the broker; callers throttle it.
    async fn lag(&mut self) -> Result<u64, BusError>;
}
