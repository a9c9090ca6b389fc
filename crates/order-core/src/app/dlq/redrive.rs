//! Automatic redrive (opt-in): once the bus answers again, parked publish
//! failures are replayed without an operator, through [`DlqService`] — so
//! per-order order, replay claims and the audit log work as for a manual
//! replay — under [`Principal::system`], at a bounded rate.
//!
//! Only records a later attempt can fix are redriven: a publish-side record
//! whose publish failed with a *retryable* error (broker unreachable,
//! timeout, the fault switch). Consumer-side records (poison messages) and
//! records whose publish or replay failed with a *permanent* error (message
//! too large, unknown topic) wait for an operator. The class is stored with
//! the record when the relay parks it and when a replay fails
//! ([`FailureClass`]).
//!
//! A head is redriven at most `max_attempts` times (every replay counts,
//! an operator's too), and after a failed attempt only once its backoff has
//! passed: `backoff`, doubling with each attempt, at most one hour. Past the
//! cap it stays parked for an operator (`orders_dlq_redrive_exhausted`,
//! alert `OrderServiceDlqRedriveExhausted`), so a head that keeps failing on
//! a healthy bus is not retried at every scan forever.
//!
//! A scan reads the heads page by page along the store's head index, oldest
//! failure first, and replays the due ones in batches
//! ([`DlqService::replay_heads`]) at most `rate_per_sec` heads a second.
//!
//! Several instances may run it: each batch claims its records in the
//! database first, so no record is published twice; a head another
//! instance is replaying is passed over (409) and looked at next scan.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::jobs::MAX_BATCH;
use super::service::DlqService;
use crate::app::error::AppError;
use crate::app::metrics::Metrics;
use crate::app::principal::Principal;
use crate::ports::{
    DlqRecord, DlqSource, DlqStatus, EventBus, FailureClass, HeadCursor, HeadQuery,
};

/// Heads read per page of a scan.
const PAGE: usize = 512;

/// What the redrive may do with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedriveClass {
    /// A publish that failed for a reason that passes (or no reason of its
    /// own: held behind a head): redriven once the bus is back.
    Retryable,
    /// A publish or replay that failed with a permanent error: it would fail
    /// again; an operator decides.
    Permanent,
    /// A consumer could not process it (a poison message): never redriven.
    Consumer,
    /// Imported from another environment's export, to reproduce a problem:
    /// never redriven; an operator replays it on purpose.
    Imported,
}

/// Whether the automatic redrive may replay `rec`. A FAILED record keeps the
/// class of its park, unless its replay itself failed permanently; a record
/// held behind a head with no error of its own is retryable.
pub fn classify(rec: &DlqRecord) -> RedriveClass {
    if rec.source == DlqSource::Consumer {
        return RedriveClass::Consumer;
    }
    if rec.imported_at.is_some() {
        return RedriveClass::Imported;
    }
    let replay = rec
        .replay_failure_class
        .filter(|_| rec.status == DlqStatus::Failed);
    match (rec.failure_class, replay) {
        (Some(FailureClass::Permanent), _) | (_, Some(FailureClass::Permanent)) => {
            RedriveClass::Permanent
        }
        _ => RedriveClass::Retryable,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedriveConfig {
    /// Pause between scans.
    pub interval: Duration,
    /// Most sequence heads replayed per second.
    pub rate_per_sec: u32,
    /// How long the bus health check may take.
    pub check_timeout: Duration,
    /// Replays of one head after which the redrive leaves it to an operator.
    pub max_attempts: u32,
    /// Wait after a head's first failed attempt; doubles with each attempt,
    /// at most [`MAX_BACKOFF`].
    pub backoff: Duration,
}

/// The longest wait between two automatic attempts at one head.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// When the redrive may try a head again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    Now,
    /// Its backoff has not passed yet.
    Later,
    /// It reached the attempt cap: an operator decides.
    Exhausted,
}

/// Whether the redrive may replay `rec` at `now` under `cfg`: never past
/// `max_attempts` replays, and after `n` attempts not before
/// `backoff × 2^(n-1)` (at most [`MAX_BACKOFF`]) since the last one.
pub fn due(rec: &DlqRecord, cfg: &RedriveConfig, now: chrono::DateTime<chrono::Utc>) -> Due {
    let attempts = rec.replay_attempts;
    if attempts >= cfg.max_attempts {
        return Due::Exhausted;
    }
    let Some(last) = rec.replay_attempt_time.filter(|_| attempts > 0) else {
        return Due::Now;
    };
    let wait = cfg
        .backoff
        .saturating_mul(1u32 << (attempts - 1).min(16))
        .min(MAX_BACKOFF);
    let wait = chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::MAX);
    if now >= last + wait {
        Due::Now
    } else {
        Due::Later
    }
}

/// What one scan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// The bus did not answer (or the fault switch is on): nothing was tried.
    pub bus_down: bool,
    /// Heads replayed (REPLAYED).
    pub replayed: usize,
    /// Heads whose replay failed; the scan stops at the first one after
    /// which the bus does not answer.
    pub failed: usize,
    /// Heads passed over: being replayed elsewhere, or resolved meanwhile.
    pub passed: usize,
    /// Messages put on the bus, held events included.
    pub published: usize,
    /// Retryable heads left to an operator: past the attempt cap.
    pub exhausted: usize,
}

pub struct AutoRedriver {
    dlq: Arc<DlqService>,
    /// The bus behind the fault switch, so the switch stops the redrive too.
    bus: Arc<dyn EventBus>,
    cfg: RedriveConfig,
    metrics: Arc<Metrics>,
}

impl AutoRedriver {
    pub fn new(
        dlq: Arc<DlqService>,
        bus: Arc<dyn EventBus>,
        cfg: RedriveConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            dlq,
            bus,
            cfg,
            metrics,
        }
    }

    /// Scans every `interval` until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.interval) => {}
                Ok(()) = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            match self.run_once(&shutdown).await {
                Ok(r) if r.replayed + r.failed > 0 => tracing::info!(
                    replayed = r.replayed,
                    failed = r.failed,
                    passed = r.passed,
                    published = r.published,
                    "automatic DLQ redrive"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "automatic DLQ redrive could not scan the DLQ")
                }
            }
        }
    }

    /// One scan: when the bus answers, replays the redrivable sequence heads
    /// oldest failure first, at most `rate_per_sec` per second, until a
    /// replay fails and the bus no longer answers, or `shutdown` turns true.
    pub async fn run_once(
        &self,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<RedriveReport, AppError> {
        let mut report = RedriveReport::default();
        if let Err(e) = self.bus.check(self.cfg.check_timeout).await {
            tracing::debug!(error = %e, "automatic DLQ redrive waits for the bus");
            report.bus_down = true;
            return Ok(report);
        }
        let now = crate::domain::now();
        let rate = f64::from(self.cfg.rate_per_sec.max(1));
        let batch = (self.cfg.rate_per_sec as usize).clamp(1, MAX_BATCH);
        let mut exhausted = 0u64;
        let mut after: Option<HeadCursor> = None;
        let mut next_at = tokio::time::Instant::now();
        let mut stop = shutdown.clone();
        // Page by page along the head index, oldest failure first: memory
        // stays flat whatever the backlog.
        loop {
            let query = HeadQuery {
                source: Some(DlqSource::Publish),
                after,
                limit: PAGE,
                ..HeadQuery::default()
            };
            let page = self.dlq.dlq.heads(&query).await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(HeadCursor::of(last));
            let due_now: Vec<DlqRecord> = page
                .into_iter()
                .filter(|r| classify(r) == RedriveClass::Retryable)
                .filter(|r| match due(r, &self.cfg, now) {
                    Due::Now => true,
                    Due::Later => false,
                    Due::Exhausted => {
                        exhausted += 1;
                        false
                    }
                })
                .collect();
            let mut due_now = due_now.into_iter().peekable();
            while due_now.peek().is_some() {
                let heads: Vec<DlqRecord> = due_now.by_ref().take(batch).collect();
                tokio::select! {
                    _ = tokio::time::sleep_until(next_at) => {}
                    Ok(()) = stop.changed() => {}
                }
                if *stop.borrow() {
                    return Ok(report);
                }
                next_at = tokio::time::Instant::now()
                    + Duration::from_secs_f64(heads.len() as f64 / rate);
                let mut failed = false;
                for (event_id, outcome) in self.dlq.replay_heads(heads).await? {
                    self.dlq
                        .audit_replay(
                            &Principal::system(),
                            &event_id,
                            json!({ "auto": true }),
                            &outcome,
                        )
                        .await;
                    match outcome {
                        Ok(o) if o.status == DlqStatus::Replayed => {
                            report.replayed += 1;
                            report.published += o.published;
                            Metrics::inc(&self.metrics.dlq_auto_redriven);
                        }
                        Ok(o) if o.status == DlqStatus::Failed => {
                            report.failed += 1;
                            failed = true;
                        }
                        Ok(_) | Err(AppError::Conflict(_)) | Err(AppError::NotFound(_)) => {
                            report.passed += 1
                        }
                        Err(e) => return Err(e),
                    }
                }
                // The bus went away again: stop rather than fail every head.
                // A head that fails on a healthy bus does not hold the
                // others back.
                if failed && self.bus.check(self.cfg.check_timeout).await.is_err() {
                    return Ok(report);
                }
            }
        }
        self.metrics
            .dlq_redrive_exhausted
            .store(exhausted, std::sync::atomic::Ordering::Relaxed);
        report.exhausted = exhausted as usize;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: DlqSource, class: Option<FailureClass>) -> DlqRecord {
        DlqRecord {
            id: 1,
            event_id: "e1".into(),
            aggregate_id: "o1".into(),
            event_type: "OrderCreated".into(),
            version: Some(1),
            original_event: "{}".into(),
            failure_reason: "publish failed after retries".into(),
            failure_class: class,
            failure_time: crate::domain::now(),
            status: DlqStatus::Pending,
            replay_attempt_time: None,
            replay_result: None,
            replay_failure_class: None,
            replay_attempts: 0,
            source,
            blocked_by: None,
            topic: "order-events".into(),
            origin: None,
            consumer_group: None,
            customer_id: None,
            imported_at: None,
            imported_by: None,
        }
    }

    #[test]
    fn a_retryable_publish_failure_is_redriven() {
        let r = record(DlqSource::Publish, Some(FailureClass::Retryable));
        assert_eq!(classify(&r), RedriveClass::Retryable);
    }

    #[test]
    fn a_permanent_publish_failure_is_not_redriven() {
        let r = record(DlqSource::Publish, Some(FailureClass::Permanent));
        assert_eq!(classify(&r), RedriveClass::Permanent);
    }

    #[test]
    fn a_held_event_without_an_error_of_its_own_is_retryable() {
        let r = record(DlqSource::Publish, None);
        assert_eq!(classify(&r), RedriveClass::Retryable);
    }

    #[test]
    fn an_imported_record_is_never_redriven() {
        let mut r = record(DlqSource::Publish, Some(FailureClass::Retryable));
        r.imported_at = Some(crate::domain::now());
        assert_eq!(classify(&r), RedriveClass::Imported);
    }

    #[test]
    fn a_consumer_side_record_is_never_redriven() {
        let r = record(DlqSource::Consumer, Some(FailureClass::Retryable));
        assert_eq!(classify(&r), RedriveClass::Consumer);
    }

    #[test]
    fn a_failed_record_keeps_its_class_unless_its_replay_failed_permanently() {
        let mut r = record(DlqSource::Publish, Some(FailureClass::Retryable));
        r.status = DlqStatus::Failed;
        r.replay_failure_class = Some(FailureClass::Retryable);
        assert_eq!(classify(&r), RedriveClass::Retryable);
        r.replay_failure_class = Some(FailureClass::Permanent);
        assert_eq!(classify(&r), RedriveClass::Permanent);
        // Reset to PENDING: the replay's class no longer counts.
        r.status = DlqStatus::Pending;
        assert_eq!(classify(&r), RedriveClass::Retryable);

        let mut r = record(DlqSource::Publish, Some(FailureClass::Permanent));
        r.status = DlqStatus::Failed;
        r.replay_failure_class = Some(FailureClass::Retryable);
        assert_eq!(classify(&r), RedriveClass::Permanent);
    }

    fn cfg() -> RedriveConfig {
        RedriveConfig {
            interval: Duration::from_secs(10),
            rate_per_sec: 10,
            check_timeout: Duration::from_secs(2),
            max_attempts: 4,
            backoff: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_head_is_retried_with_a_doubling_backoff_until_the_cap() {
        let t0 = crate::domain::now();
        let mut r = record(DlqSource::Publish, Some(FailureClass::Retryable));
        assert_eq!(due(&r, &cfg(), t0), Due::Now, "never tried");
        r.replay_attempts = 1;
        r.replay_attempt_time = Some(t0);
        let s = chrono::TimeDelta::seconds;
        assert_eq!(due(&r, &cfg(), t0 + s(29)), Due::Later);
        assert_eq!(
            due(&r, &cfg(), t0 + s(30)),
            Due::Now,
            "30 s after the first"
        );
        r.replay_attempts = 2;
        assert_eq!(due(&r, &cfg(), t0 + s(59)), Due::Later);
        assert_eq!(
            due(&r, &cfg(), t0 + s(60)),
            Due::Now,
            "60 s after the second"
        );
        r.replay_attempts = 3;
        assert_eq!(due(&r, &cfg(), t0 + s(119)), Due::Later);
        assert_eq!(due(&r, &cfg(), t0 + s(120)), Due::Now);
        r.replay_attempts = 4;
        assert_eq!(due(&r, &cfg(), t0 + s(86_400)), Due::Exhausted, "the cap");
    }

    #[test]
    fn the_backoff_stops_growing_at_an_hour() {
        let t0 = crate::domain::now();
        let mut r = record(DlqSource::Publish, Some(FailureClass::Retryable));
        let many = RedriveConfig {
            max_attempts: 100,
            ..cfg()
        };
        r.replay_attempts = 40;
        r.replay_attempt_time = Some(t0);
        let hour = chrono::TimeDelta::hours(1);
        assert_eq!(
            due(&r, &many, t0 + hour - chrono::TimeDelta::seconds(1)),
            Due::Later
        );
        assert_eq!(due(&r, &many, t0 + hour), Due::Now);
    }

    #[test]
    fn a_publish_error_has_the_class_of_its_kind() {
        use crate::ports::PublishError;
        assert_eq!(
            FailureClass::of(&PublishError::Permanent("retryable: no".into())),
            FailureClass::Permanent
        );
        assert_eq!(
            FailureClass::of(&PublishError::Retryable("x".into())),
            FailureClass::Retryable
        );
    }
}
