//! The outbox: committed events waiting for the relay.

use super::dlq_store::NewDlqRecord;
use super::error::StoreError;
use crate::domain::EventEnvelope;
use async_trait::async_trait;
use chrono::DateTime;
use chrono::Utc;
use serde::Serialize;

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
