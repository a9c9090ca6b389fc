//! Retention of resolved DLQ records (opt-in): REPLAYED and SKIPPED records
//! resolved longer ago than `keep` are deleted in batches, so a table that
//! an outage filled does not keep every record forever. Unresolved records,
//! records something is still held behind, and the audit log (which keeps
//! who replayed or skipped what) are never deleted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::metrics::Metrics;
use crate::ports::{DlqStore, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionConfig {
    /// How long a resolved record is kept after it was resolved.
    pub keep: Duration,
    /// Pause between two purges.
    pub interval: Duration,
    /// Records deleted per statement.
    pub batch: usize,
}

pub struct Retention {
    dlq: Arc<dyn DlqStore>,
    cfg: RetentionConfig,
    metrics: Arc<Metrics>,
}

impl Retention {
    pub fn new(dlq: Arc<dyn DlqStore>, cfg: RetentionConfig, metrics: Arc<Metrics>) -> Self {
        Self { dlq, cfg, metrics }
    }

    /// Deletes every record past retention, a batch at a time; how many.
    pub async fn run_once(&self) -> Result<u64, StoreError> {
        let keep = chrono::TimeDelta::from_std(self.cfg.keep).unwrap_or(chrono::TimeDelta::MAX);
        let before = self.dlq.clock().await? - keep;
        let mut total = 0;
        loop {
            let gone = self.dlq.purge_resolved(before, self.cfg.batch).await?;
            total += gone;
            Metrics::add(&self.metrics.dlq_purged, gone);
            if gone < self.cfg.batch as u64 {
                return Ok(total);
            }
        }
    }

    /// Purges every `interval` until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.run_once().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "resolved DLQ records past retention deleted"),
                Err(e) => tracing::warn!(error = %e, "could not purge resolved DLQ records"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
