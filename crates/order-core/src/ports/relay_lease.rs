//! Relay partitions: who may publish which part of the outbox.
//!
//! Every outbox row carries a fixed *bucket* derived from its order id
//! ([`bucket_of`], [`BUCKETS`] of them), so all events of one order share a
//! bucket. The buckets are cut into `count` contiguous *partitions*
//! ([`partition_buckets`]); an instance relays a partition only while it
//! holds the partition's lease row. Each claim increments the row's
//! **epoch**, and every write of relay work ([`Outbox::settle`]) checks
//! `holder = me AND epoch = e` in its own transaction, so a relay that lost
//! its lease (stopped, partitioned, slow) cannot settle or park what the
//! new holder relays. All lease times are computed by the database clock.
//!
//! [`Outbox::settle`]: super::Outbox::settle

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;

use super::error::StoreError;

/// How many buckets the order ids are hashed into. Fixed forever: it is
/// part of every stored outbox row. Partition counts up to this are valid.
pub const BUCKETS: u32 = 1024;

/// Every bucket: what a relay holding every partition fetches.
pub const ALL_BUCKETS: Range<u32> = 0..BUCKETS;

/// The bucket of an order: FNV-1a of its id, modulo [`BUCKETS`].
pub fn bucket_of(aggregate_id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in aggregate_id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % BUCKETS
}

/// The buckets of partition `partition` out of `count` (contiguous, every
/// bucket in exactly one partition).
pub fn partition_buckets(partition: u32, count: u32) -> Range<u32> {
    let count = count.clamp(1, BUCKETS);
    let lo = partition * BUCKETS / count;
    let hi = (partition + 1) * BUCKETS / count;
    lo..hi
}

/// What [`RelayLeases::layout`] does when `stored` partition rows exist and
/// `requested` are configured: the partition numbers to create (none when a
/// layout exists: it wins) and the partition count afterwards.
pub fn layout_plan(stored: i64, requested: u32) -> (Range<u32>, u32) {
    if stored > 0 {
        (0..0, u32::try_from(stored).unwrap_or(u32::MAX))
    } else {
        let n = requested.clamp(1, BUCKETS);
        (0..n, n)
    }
}

/// A lease on one partition at one epoch: what a relay presents when it
/// writes relay work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fence {
    pub partition: u32,
    pub epoch: i64,
}

/// Who takes or keeps a lease, and for how long (database time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    pub instance: &'a str,
    pub ttl: Duration,
}

impl<'a> Holder<'a> {
    pub fn new(instance: &'a str, ttl: Duration) -> Self {
        Self { instance, ttl }
    }
}

/// One partition's lease row as the database sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: u32,
    /// Instance id of the holder; empty when released.
    pub holder: String,
    pub epoch: i64,
    /// The lease has not run out (database time).
    pub live: bool,
}

impl PartitionState {
    pub fn fence(&self) -> Fence {
        Fence {
            partition: self.partition,
            epoch: self.epoch,
        }
    }

    /// Nobody holds it: released, or its holder stopped renewing. (A row
    /// a [`RelayLeases::repartition`] wrote is not free until the old
    /// leases ran out.)
    pub fn is_free(&self) -> bool {
        !self.live
    }
}

#[async_trait]
pub trait RelayLeases: Send + Sync {
    /// Creates the partition rows when there are none (`count` of them) and
    /// returns how many partitions the database holds: the stored layout
    /// wins over the configured count (see [`repartition`](Self::repartition)).
    async fn layout(&self, count: u32) -> Result<u32, StoreError>;

    /// Rewrites the layout to `count` partitions in one transaction. Every
    /// new row starts released, with an epoch above every old one, and can
    /// be claimed only once the longest old lease has run out, so no two
    /// instances ever relay the same bucket.
    async fn repartition(&self, count: u32) -> Result<(), StoreError>;

    /// Marks `by.instance` alive for `by.ttl` and forgets instances whose
    /// mark ran out. Returns how many instances are alive, this one included.
    async fn heartbeat(&self, by: Holder<'_>) -> Result<u32, StoreError>;

    /// Removes `instance`'s mark (graceful shutdown).
    async fn leave(&self, instance: &str) -> Result<(), StoreError>;

    /// Every partition's lease row, by partition number.
    async fn partitions(&self) -> Result<Vec<PartitionState>, StoreError>;

    /// Takes the partition if it is still at `seen.epoch` and its lease has
    /// run out (database time; a release ends it at once): holder =
    /// `by.instance`, epoch + 1, lease `by.ttl` from now.
    /// `None` when someone else moved first.
    async fn claim(&self, seen: Fence, by: Holder<'_>) -> Result<Option<Fence>, StoreError>;

    /// Extends those of `fences` that `by.instance` still holds at their
    /// epoch (also when they ran out and nobody took them) to `by.ttl` from
    /// now, and returns them; a fence not returned is lost.
    async fn renew(&self, fences: &[Fence], by: Holder<'_>) -> Result<Vec<Fence>, StoreError>;

    /// Gives the partitions up at their epoch, so another instance can take
    /// them at once.
    async fn release(&self, fences: &[Fence], instance: &str) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_belongs_to_exactly_one_partition() {
        for count in [1, 2, 3, 7, 16, 100, BUCKETS] {
            let mut next = 0;
            for p in 0..count {
                let r = partition_buckets(p, count);
                assert_eq!(r.start, next, "partition {p} of {count}");
                assert!(!r.is_empty());
                next = r.end;
            }
            assert_eq!(next, BUCKETS);
        }
    }

    #[test]
    fn an_order_keeps_its_bucket_and_orders_spread_over_buckets() {
        let id = "0b7f2a52-2a8c-4d0e-9a53-5b1a0b6c1d2e";
        assert_eq!(bucket_of(id), bucket_of(id));
        let used: std::collections::HashSet<u32> = (0..10_000)
            .map(|i| bucket_of(&uuid::Uuid::from_u128(i * 0x9e37_79b9_7f4a_7c15).to_string()))
            .collect();
        assert!(used.len() > 1000, "only {} buckets used", used.len());
    }
}
