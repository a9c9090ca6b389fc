//! The write side: event store and current state, committed together with the outbox rows.

use super::error::StoreError;
use crate::domain::EventEnvelope;
use crate::domain::Order;
use crate::domain::OrderItem;
use crate::domain::OrderStatus;
use crate::domain::RecordedEvent;
use async_trait::async_trait;
use chrono::DateTime;
use chrono::Utc;
use rust_decimal::Decimal;
use std::str::FromStr;
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

/// The columns of an [`EventRow`], in its field order, for `SELECT` lists.
pub const EVENT_COLUMNS: &str = "id, event_id, aggregate_id, aggregate_type, event_type, \
     event_data, version, schema_version, occurred_on, correlation_id, causation_id";

/// An `event_store` row as both SQL databases hand it over (text, integers,
/// the instant already read), before it is checked; [`TryFrom`] decides what
/// a damaged row is, once for every adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    /// `id`: the global position.
    pub position: i64,
    pub event_id: String,
    pub aggregate_id: String,
    pub aggregate_type: String,
    pub event_type: String,
    /// The event's `data` as JSON text.
    pub event_data: String,
    pub version: i64,
    pub schema_version: i64,
    pub occurred_on: DateTime<Utc>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
}

impl TryFrom<EventRow> for RecordedEvent {
    type Error = StoreError;

    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        let position = r.position;
        let bad = |what: String| StoreError::Corrupt(format!("event {position}: {what}"));
        let envelope = EventEnvelope {
            event_id: Uuid::parse_str(&r.event_id)
                .map_err(|e| bad(format!("bad event id {:?}: {e}", r.event_id)))?,
            aggregate_id: r.aggregate_id,
            aggregate_type: r.aggregate_type,
            event_type: r.event_type,
            version: count(r.version)?,
            schema_version: u32::try_from(r.schema_version)
                .map_err(|_| bad(format!("bad schema version {}", r.schema_version)))?,
            occurred_on: r.occurred_on,
            correlation_id: r.correlation_id,
            causation_id: r.causation_id,
            traceparent: None,
            data: serde_json::from_str(&r.event_data)
                .map_err(|e| bad(format!("event_data is not JSON: {e}")))?,
        };
        Ok(RecordedEvent { position, envelope })
    }
}

/// An `orders` row with its `order_items` rows (in line order) as both SQL
/// databases hand them over, before they are checked; [`TryFrom`] decides
/// what a damaged order is, once for every adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    /// The id the order was looked up by.
    pub id: Uuid,
    pub customer_id: String,
    pub restaurant_id: String,
    /// Decimal text.
    pub total_amount: String,
    pub status: String,
    pub payment_id: Option<String>,
    pub cancellation_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub items: Vec<OrderItemRow>,
}

/// An `order_items` row of an [`OrderRow`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderItemRow {
    pub menu_item_id: String,
    pub name: String,
    /// Decimal text.
    pub price: String,
    pub quantity: i64,
}

impl TryFrom<OrderRow> for Order {
    type Error = StoreError;

    fn try_from(r: OrderRow) -> Result<Self, StoreError> {
        let id = r.id;
        let bad = |what: String| StoreError::Corrupt(format!("order {id}: {what}"));
        let items = r
            .items
            .into_iter()
            .map(|i| {
                Ok(OrderItem {
                    price: decimal(&i.price, "item price")?,
                    quantity: u32::try_from(i.quantity)
                        .map_err(|_| bad(format!("bad quantity {}", i.quantity)))?,
                    menu_item_id: i.menu_item_id,
                    name: i.name,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Order {
            id,
            customer_id: r.customer_id,
            restaurant_id: r.restaurant_id,
            items,
            total_amount: decimal(&r.total_amount, "total amount")?,
            status: OrderStatus::parse(&r.status)
                .ok_or_else(|| bad(format!("unknown status {:?}", r.status)))?,
            payment_id: r.payment_id,
            cancellation_reason: r.cancellation_reason,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: count(r.version)?,
        })
    }
}

/// A stored version, which is never negative.
fn count(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("negative value {v} where a count was stored")))
}

fn decimal(s: &str, what: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str(s)
        .map_err(|e| StoreError::Corrupt(format!("{what} {s:?} is not a decimal: {e}")))
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
            6 "relay_partitions" "0006_relay_partitions.sql",
            7 "dlq_heads" "0007_dlq_heads.sql",
            8 "dlq_listing" "0008_dlq_listing.sql",
            9 "dlq_repair" "0009_dlq_repair.sql",
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
