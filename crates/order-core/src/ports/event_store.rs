//! The write side: event store and current state, committed together with the outbox rows.

use super::error::StoreError;
use crate::domain::EventEnvelope;
use crate::domain::Order;
use crate::domain::RecordedEvent;
use async_trait::async_trait;
use chrono::DateTime;
use chrono::Utc;
use uuid::Uuid;

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

/// The write-side schema's migrations, listed once for both SQL adapters:
/// each is the file `NNNN_name.sql`, applied once, in version order. An
/// adapter invokes it with its own `Migration` type (fields `version: i64`,
/// `name: &'static str`, `sql: &'static str`) and the folder of its SQL
/// files, ending in `/` and relative to the invoking file (`include_str!`
/// resolves paths from where the outermost macro is called):
///
/// ```ignore
/// pub(crate) const MIGRATIONS: &[Migration] =
///     order_core::write_side_migrations!(Migration, "../migrations/");
/// ```
///
/// Append-only: a new migration is a new line here and a new file in every
/// adapter's folder.
#[macro_export]
macro_rules! write_side_migrations {
    ($migration:ident, $dir:literal) => {
        $crate::write_side_migrations!(@list $migration, $dir;
            1 "initial" "0001_initial.sql",
            2 "replay_claim" "0002_replay_claim.sql",
            3 "audit" "0003_audit.sql",
            4 "replay_jobs" "0004_replay_jobs.sql",
            5 "failure_class" "0005_failure_class.sql",
        )
    };
    (@list $migration:ident, $dir:literal; $($version:literal $name:literal $file:literal,)*) => {
        &[$($migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!($dir, $file)),
        }),*]
    };
}
