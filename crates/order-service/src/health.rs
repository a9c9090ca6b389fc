//! The service's view of its own dependencies, for `/actuator/health`,
//! `/health/ready` and the gauges of `/metrics`.
//!
//! It exists so HTTP handlers ask one question ("how are we?") instead of
//! reaching into the event store, outbox, DLQ store, read model and bus
//! ports themselves, and so every probe shares one time bound: a store that
//! hangs makes a check answer DOWN, never makes it hang.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use order_core::app::{FaultSwitch, Gauges};
use order_core::ports::{DlqStore, EventBus, EventStore, Outbox, OutboxStats, ReadModel};

/// Longest a single probe may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The probes, over the ports the application was built with.
#[derive(Clone)]
pub struct Health {
    pub event_store: Arc<dyn EventStore>,
    pub outbox: Arc<dyn Outbox>,
    pub dlq_store: Arc<dyn DlqStore>,
    pub read_model: Arc<dyn ReadModel>,
    /// The bus behind the fault switch, as publishers see it.
    pub bus: Arc<dyn EventBus>,
    pub fault: Arc<FaultSwitch>,
    /// The last count of orphaned holds, for large DLQs (see
    /// [`Health::gauges`]).
    pub orphans: Arc<OrphanCount>,
}

/// Unresolved DLQ records above which `orders_dlq_orphaned_holds` is
/// counted in the background, at most once per [`ORPHANS_REFRESH`], instead
/// of at every scrape: the count joins every held record with its head
/// (about 1.5 s on MariaDB at 100,000 held records).
pub const ORPHANS_INLINE_MAX: u64 = 50_000;
/// How old the background count of orphaned holds may get.
pub const ORPHANS_REFRESH: Duration = Duration::from_secs(60);

/// The background count of orphaned holds: the last value, when it was
/// taken, and whether a count runs now.
#[derive(Debug, Default)]
pub struct OrphanCount {
    last: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
    running: std::sync::atomic::AtomicBool,
}

impl OrphanCount {
    /// The last count (0 before the first), starting a new one in the
    /// background when it is older than [`ORPHANS_REFRESH`] and none runs.
    fn read(self: &Arc<Self>, dlq: &Arc<dyn DlqStore>) -> u64 {
        use std::sync::atomic::Ordering;
        let last = *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = last.is_none_or(|(at, _)| at.elapsed() >= ORPHANS_REFRESH);
        if stale && !self.running.swap(true, Ordering::AcqRel) {
            let (me, dlq) = (self.clone(), dlq.clone());
            tokio::spawn(async move {
                match dlq.orphaned_holds().await {
                    Ok(n) => {
                        *me.last
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some((std::time::Instant::now(), n));
                    }
                    Err(e) => tracing::debug!(error = %e, "metrics: orphaned holds unavailable"),
                }
                me.running.store(false, Ordering::Release);
            });
        }
        last.map_or(0, |(_, n)| n)
    }
}

/// Overall state: the database is essential, the rest degrades the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Up,
    Degraded,
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "UP",
            Status::Degraded => "DEGRADED",
            Status::Down => "DOWN",
        }
    }
}

/// One look at every dependency; `Err` holds why a probe failed.
#[derive(Clone, Debug)]
pub struct HealthReport {
    pub database: Result<String, String>,
    pub bus: Result<String, String>,
    pub read_model: Result<String, String>,
    pub outbox: Result<OutboxStats, String>,
}

impl HealthReport {
    /// DOWN without the database; DEGRADED when anything else fails.
    pub fn status(&self) -> Status {
        if self.database.is_err() {
            Status::Down
        } else if self.bus.is_err() || self.read_model.is_err() || self.outbox.is_err() {
            Status::Degraded
        } else {
            Status::Up
        }
    }
}

impl Health {
    /// Probes every dependency at once.
    pub async fn check(&self) -> HealthReport {
        let (db, bus, rm, outbox) = tokio::join!(
            bounded(self.event_store.ping()),
            bounded(self.bus.check(CHECK_TIMEOUT)),
            bounded(self.read_model.ping()),
            bounded(self.outbox.stats()),
        );
        HealthReport {
            database: db.map(|()| "event store answers".to_owned()),
            bus,
            read_model: rm.map(|()| "read model answers".to_owned()),
            outbox,
        }
    }

    /// Whether requests can be served: the database answers.
    pub async fn ready(&self) -> Result<(), String> {
        bounded(self.event_store.ping()).await
    }

    /// The store-backed gauges of `/metrics`. A store that does not answer
    /// leaves its gauges at zero rather than failing the scrape.
    pub async fn gauges(&self) -> Gauges {
        let (outbox, dlq, head) = tokio::join!(
            bounded(self.outbox.stats()),
            bounded(self.dlq_store.stats()),
            bounded(self.event_store.head_position()),
        );
        // Exact at every scrape while the DLQ is small; from the background
        // count once it is large.
        let unresolved = dlq
            .as_ref()
            .map_or(u64::MAX, |s| s.pending_count + s.failed_count);
        let orphans = if unresolved <= ORPHANS_INLINE_MAX {
            bounded(self.dlq_store.orphaned_holds()).await
        } else {
            Ok(self.orphans.read(&self.dlq_store))
        };
        let mut g = Gauges {
            bus_down: self.fault.is_down(),
            ..Gauges::default()
        };
        match outbox {
            Ok(s) => {
                g.outbox_pending = s.pending;
                g.outbox_oldest_age_secs = age_secs(s.oldest_created_at);
            }
            Err(e) => tracing::debug!(error = %e, "metrics: outbox stats unavailable"),
        }
        match dlq {
            Ok(s) => {
                g.dlq_by_status = vec![
                    ("PENDING", s.pending_count),
                    ("REPLAYED", s.replayed_count),
                    ("FAILED", s.failed_count),
                    ("SKIPPED", s.skipped_count),
                ];
                g.dlq_oldest_pending_age_secs = age_secs(s.oldest_pending_failure_time);
            }
            Err(e) => tracing::debug!(error = %e, "metrics: DLQ stats unavailable"),
        }
        match orphans {
            Ok(n) => g.dlq_orphaned_holds = n,
            Err(e) => tracing::debug!(error = %e, "metrics: orphaned holds unavailable"),
        }
        match head {
            Ok(h) => g.event_store_head = h,
            Err(e) => tracing::debug!(error = %e, "metrics: event store head unavailable"),
        }
        g
    }
}

async fn bounded<T, E: std::fmt::Display>(
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// Seconds since `since` (0 when there is nothing to age).
pub fn age_secs(since: Option<DateTime<Utc>>) -> f64 {
    since.map_or(0.0, |t| {
        ((Utc::now() - t).num_milliseconds().max(0) as f64) / 1000.0
    })
}
