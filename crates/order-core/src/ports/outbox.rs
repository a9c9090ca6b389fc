//! The outbox: committed events waiting for the relay.

use super::dlq_store::NewDlqRecord;
use std::ops::Range;

use super::error::StoreError;
use super::relay_lease::Fence;
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
    /// [`bucket_of`](super::bucket_of) the order id, stored with the row.
    pub bucket: u32,
    pub envelope: EventEnvelope,
    /// The envelope JSON as the command committed it: the relay publishes
    /// these bytes as they are instead of encoding the envelope again.
    pub payload: String,
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
    /// The oldest `want.limit` outbox rows whose bucket lies in one of
    /// `want.buckets`, in position order. Only the holder of those buckets'
    /// partitions calls this (see [`RelayLeases`](super::RelayLeases)), so
    /// per-order order holds.
    async fn fetch_batch(&self, want: OutboxFetch<'_>) -> Result<Vec<OutboxMessage>, StoreError>;

    /// In one transaction, only while `holder` holds every one of
    /// `settlement.fences` at its epoch: deletes the delivered rows, inserts
    /// the parked events as DLQ records (an event id already in the DLQ is
    /// left as it is) and deletes their outbox rows. A parked event held
    /// behind a head that is resolved by now (replayed or skipped on another
    /// instance since the relay looked) is neither inserted nor deleted: its
    /// row stays for the next batch. When a fence fails nothing is written.
    async fn settle(&self, settlement: &Settlement) -> Result<Settled, StoreError>;

    async fn stats(&self) -> Result<OutboxStats, StoreError>;
}

/// Which outbox rows a relay asks for: its partitions' buckets, at most
/// `limit` rows.
#[derive(Clone, Copy, Debug)]
pub struct OutboxFetch<'a> {
    pub buckets: &'a [Range<u32>],
    pub limit: usize,
}

/// What one relay batch did, to be written under its partitions' fences.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settlement {
    pub holder: String,
    pub fences: Vec<Fence>,
    pub delivered: Vec<i64>,
    pub parked: Vec<ParkedEvent>,
}

/// The outcome of [`Outbox::settle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Written; the positions of parked events left in the outbox because
    /// their head was resolved meanwhile.
    Done { held_back: Vec<i64> },
    /// Nothing written: these partitions are no longer held at the fence's
    /// epoch.
    Fenced(Vec<u32>),
}

/// An outbox row that is moved to the DLQ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedEvent {
    pub position: i64,
    pub record: NewDlqRecord,
}
