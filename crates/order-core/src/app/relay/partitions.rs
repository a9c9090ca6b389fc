//! Which relay partitions this instance holds, and keeping that fair.
//!
//! A tick (every third of a lease, at most 2 s apart) marks the instance alive, renews the
//! leases it holds, and moves at most a few partitions towards a fair share
//! (`ceil(partitions / live instances)`): it claims free partitions while it
//! holds fewer, releases its highest-numbered ones while it holds more.
//! Leases are sticky: a partition changes hands only when its holder gives
//! it up or stops renewing. Lease expiry is judged by the database clock;
//! locally a lease is trusted until `lease` after the statement that
//! renewed it was *sent*, which ends no later than the database's expiry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::app::metrics::Metrics;
use crate::ports::{partition_buckets, Fence, Holder, RelayLeases, StoreError};

/// Most partitions released per tick, so a scale-out moves work from live
/// instances gradually (free partitions are claimed at once).
pub const MOVES_PER_TICK: usize = 4;

/// Longest a tick waits for the running batch before releasing partitions.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct PartitionConfig {
    /// Partitions to create when the database has none yet; the stored
    /// layout wins afterwards.
    pub count: u32,
    /// How long a lease lasts without renewal (database time).
    pub lease: Duration,
}

/// A partition this instance holds.
#[derive(Clone, Debug)]
pub(super) struct Held {
    pub fence: Fence,
    /// The partition's buckets in the layout it was claimed under (a
    /// repartition fences the old leases; until then they keep these).
    pub buckets: std::ops::Range<u32>,
    /// Local time until which the lease is surely ours.
    pub deadline: Instant,
    /// Rows of this partition may be on the bus without being settled: the
    /// first batch after a claim, and every batch after one whose settle did
    /// not succeed, asks the bus before sending. Cleared only by a settle.
    pub maybe_sent: bool,
}

pub struct Partitions {
    leases: Arc<dyn RelayLeases>,
    instance: String,
    cfg: PartitionConfig,
    metrics: Arc<Metrics>,
    /// The layout was created or found (by the first tick).
    laid_out: AtomicBool,
    held: Mutex<BTreeMap<u32, Held>>,
    /// Held by a relay batch; a release waits for no batch to be running.
    pub(super) batch: tokio::sync::Mutex<()>,
}

impl Partitions {
    pub fn new(
        leases: Arc<dyn RelayLeases>,
        instance: String,
        cfg: PartitionConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            leases,
            instance,
            cfg,
            metrics,
            laid_out: AtomicBool::new(false),
            held: Mutex::new(BTreeMap::new()),
            batch: tokio::sync::Mutex::new(()),
        }
    }

    fn holder(&self, ttl: Duration) -> Holder<'_> {
        Holder::new(&self.instance, ttl)
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn lease(&self) -> Duration {
        self.cfg.lease
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The partitions held now, by number.
    pub fn owned(&self) -> Vec<Fence> {
        self.held().values().map(|h| h.fence).collect()
    }

    /// The held partitions whose lease lasts at least `budget` more, with
    /// their buckets and whether their rows may have been sent already.
    pub(super) fn usable(&self, budget: Duration) -> Vec<Held> {
        let now = Instant::now();
        self.held()
            .values()
            .filter(|h| h.deadline > now + budget)
            .cloned()
            .collect()
    }

    /// Whether every one of `fences` is still held and lasts `budget` more.
    pub(super) fn all_last(&self, fences: &[Fence], budget: Duration) -> bool {
        let now = Instant::now();
        let held = self.held();
        fences.iter().all(|f| {
            held.get(&f.partition)
                .is_some_and(|h| h.fence == *f && h.deadline > now + budget)
        })
    }

    /// Sets `maybe_sent` of the partitions of `fences` still held at that epoch.
    pub(super) fn mark_maybe_sent(&self, fences: &[Fence], maybe_sent: bool) {
        let mut held = self.held();
        for f in fences {
            if let Some(h) = held.get_mut(&f.partition).filter(|h| h.fence == *f) {
                h.maybe_sent = maybe_sent;
            }
        }
    }

    /// Forgets partitions a settle found fenced.
    pub(super) fn drop_fenced(&self, partitions: &[u32]) {
        let mut held = self.held();
        for p in partitions {
            if held.remove(p).is_some() {
                tracing::warn!(instance = %self.instance, partition = p, "relay partition fenced: another instance holds it now");
            }
        }
        self.publish_count(&held);
    }

    fn publish_count(&self, held: &BTreeMap<u32, Held>) {
        self.metrics
            .relay_partitions_held
            .store(held.len() as u64, Ordering::Relaxed);
    }

    /// One round of heartbeat, renewal and rebalancing.
    pub async fn tick(&self) -> Result<(), StoreError> {
        let ttl = self.cfg.lease;
        let live = self.leases.heartbeat(self.holder(ttl)).await?.max(1);
        if !self.laid_out.load(Ordering::Relaxed) {
            self.leases.layout(self.cfg.count).await?;
            self.laid_out.store(true, Ordering::Relaxed);
        }
        self.renew(ttl).await?;
        self.rebalance(live, ttl).await
    }

    async fn renew(&self, ttl: Duration) -> Result<(), StoreError> {
        let fences = self.owned();
        if fences.is_empty() {
            return Ok(());
        }
        let sent = Instant::now();
        let kept = self.leases.renew(&fences, self.holder(ttl)).await?;
        let mut held = self.held();
        for f in &fences {
            if kept.contains(f) {
                if let Some(h) = held.get_mut(&f.partition).filter(|h| h.fence == *f) {
                    h.deadline = sent + ttl;
                }
            } else if held.get(&f.partition).is_some_and(|h| h.fence == *f) {
                held.remove(&f.partition);
                Metrics::inc(&self.metrics.relay_losses);
                tracing::warn!(instance = %self.instance, partition = f.partition, "lost a relay partition lease");
            }
        }
        self.publish_count(&held);
        Ok(())
    }

    async fn rebalance(&self, live: u32, ttl: Duration) -> Result<(), StoreError> {
        let states = self.leases.partitions().await?;
        let count = states.len() as u32;
        let share = count.div_ceil(live) as usize;
        let mine = self.held().len();
        if mine > share {
            // Between batches only: a running batch keeps its partitions.
            // The lock is fair, so a busy relay lets this in after its
            // current batch; a batch stuck on a hung bus is not waited for
            // (the next tick tries again), so renewals never wait on it.
            let Ok(_batch) = tokio::time::timeout(RELEASE_WAIT, self.batch.lock()).await else {
                return Ok(());
            };
            let surplus: Vec<Fence> = self
                .held()
                .values()
                .rev()
                .take((mine - share).min(MOVES_PER_TICK))
                .map(|h| h.fence)
                .collect();
            self.leases.release(&surplus, &self.instance).await?;
            let mut held = self.held();
            for f in &surplus {
                held.remove(&f.partition);
            }
            self.publish_count(&held);
            tracing::info!(instance = %self.instance, released = surplus.len(), share, "released relay partitions towards a fair share");
            return Ok(());
        }
        let free: Vec<Fence> = states
            .iter()
            .filter(|s| s.is_free())
            .map(|s| s.fence())
            .collect();
        // Claims are not throttled: a free partition has nobody relaying it.
        let mut wanted = share - mine;
        for seen in free {
            if wanted == 0 {
                break;
            }
            let sent = Instant::now();
            if let Some(fence) = self.leases.claim(seen, self.holder(ttl)).await? {
                wanted -= 1;
                Metrics::inc(&self.metrics.relay_claims);
                let mut held = self.held();
                held.insert(
                    fence.partition,
                    Held {
                        fence,
                        buckets: partition_buckets(fence.partition, count),
                        deadline: sent + ttl,
                        maybe_sent: true,
                    },
                );
                self.publish_count(&held);
                tracing::info!(instance = %self.instance, partition = fence.partition, epoch = fence.epoch, "claimed a relay partition");
            }
        }
        Ok(())
    }

    /// Gives every partition up and leaves (graceful shutdown).
    pub async fn leave(&self) -> Result<(), StoreError> {
        let _batch = self.batch.lock().await;
        let fences = self.owned();
        self.held().clear();
        self.publish_count(&BTreeMap::new());
        if !fences.is_empty() {
            self.leases.release(&fences, &self.instance).await?;
        }
        self.leases.leave(&self.instance).await
    }
}
