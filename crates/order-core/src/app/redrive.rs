//! Automatic redrive (opt-in): once the bus answers again, parked publish
//! failures are replayed without an operator, through [`DlqService`] — so
//! per-order order, replay claims and the audit log work as for a manual
//! replay — under [`Principal::system`], at a bounded rate.
//!
//! Only records a later attempt can fix are redriven: a publish-side record
//! whose publish failed with a *retryable* error (broker unreachable,
//! timeout, the fault switch). Consumer-side records (poison messages) and
//! records whose publish or replay failed with a *permanent* error (message
//! too large, unknown topic) wait for an operator. The class is read from
//! the reasons the relay and replays record: they carry the
//! [`PublishError`](crate::ports::PublishError) as text, whose display
//! starts with `retryable: ` or `permanent: ` (see [`publish_error_class`]).
//!
//! Several instances may run it: each head's replay claims the record in
//! the database first, so no record is published twice; a head another
//! instance is replaying is passed over (409) and looked at next scan.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::dlq::DlqService;
use super::error::AppError;
use super::metrics::Metrics;
use super::principal::Principal;
use crate::ports::{DlqRecord, DlqSource, DlqStatus, EventBus};

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
}

const RETRYABLE_MARK: &str = "retryable: ";
const PERMANENT_MARK: &str = "permanent: ";

/// The class of the first publish error quoted in `text` (a failure reason
/// or replay result), `None` when it quotes none. Our own wording before the
/// error contains neither mark, so the first one found is the error's.
pub fn publish_error_class(text: &str) -> Option<RedriveClass> {
    match (text.find(RETRYABLE_MARK), text.find(PERMANENT_MARK)) {
        (Some(r), Some(p)) if p < r => Some(RedriveClass::Permanent),
        (Some(_), _) => Some(RedriveClass::Retryable),
        (None, Some(_)) => Some(RedriveClass::Permanent),
        (None, None) => None,
    }
}

/// Whether the automatic redrive may replay `rec`. A FAILED record keeps the
/// class of its park, unless its replay itself failed permanently.
pub fn classify(rec: &DlqRecord) -> RedriveClass {
    if rec.source == DlqSource::Consumer {
        return RedriveClass::Consumer;
    }
    let replay = rec
        .replay_result
        .as_deref()
        .filter(|_| rec.status == DlqStatus::Failed)
        .and_then(publish_error_class);
    match (publish_error_class(&rec.failure_reason), replay) {
        (Some(RedriveClass::Permanent), _) | (_, Some(RedriveClass::Permanent)) => {
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
        let heads: Vec<DlqRecord> = self
            .dlq
            .sequence_heads(usize::MAX)
            .await?
            .into_iter()
            .filter(|r| classify(r) == RedriveClass::Retryable)
            .collect();
        let pace = Duration::from_secs(1) / self.cfg.rate_per_sec.max(1);
        let mut stop = shutdown.clone();
        for (i, head) in heads.iter().enumerate() {
            if i > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(pace) => {}
                    Ok(()) = stop.changed() => {}
                }
            }
            if *stop.borrow() {
                break;
            }
            let outcome = self
                .dlq
                .replay_audited(
                    &Principal::system(),
                    &head.event_id,
                    json!({ "auto": true }),
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
                    // The bus went away again: stop rather than fail every
                    // head. A head that fails on a healthy bus does not hold
                    // the others back.
                    if self.bus.check(self.cfg.check_timeout).await.is_err() {
                        break;
                    }
                }
                Ok(_) | Err(AppError::Conflict(_)) | Err(AppError::NotFound(_)) => {
                    report.passed += 1
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PublishError;

    fn record(source: DlqSource, reason: &str) -> DlqRecord {
        DlqRecord {
            id: 1,
            event_id: "e1".into(),
            aggregate_id: "o1".into(),
            event_type: "OrderCreated".into(),
            version: Some(1),
            original_event: "{}".into(),
            failure_reason: reason.into(),
            failure_time: crate::domain::now(),
            status: DlqStatus::Pending,
            replay_attempt_time: None,
            replay_result: None,
            replay_attempts: 0,
            source,
            blocked_by: None,
            topic: "order-events".into(),
            origin: None,
        }
    }

    fn relay_reason(e: &PublishError) -> String {
        crate::app::relay::publish_failed_reason(e)
    }

    #[test]
    fn a_retryable_publish_failure_is_redriven() {
        let e = PublishError::Retryable("broker unreachable".into());
        let r = record(DlqSource::Publish, &relay_reason(&e));
        assert_eq!(classify(&r), RedriveClass::Retryable);
    }

    #[test]
    fn a_permanent_publish_failure_is_not_redriven() {
        let e = PublishError::Permanent("message too large (retryable: no)".into());
        let r = record(DlqSource::Publish, &relay_reason(&e));
        assert_eq!(classify(&r), RedriveClass::Permanent);
        let held = format!("held behind unresolved event x of the same order ({e})");
        assert_eq!(
            classify(&record(DlqSource::Publish, &held)),
            RedriveClass::Permanent
        );
    }

    #[test]
    fn a_held_event_without_an_error_of_its_own_is_retryable() {
        let r = record(
            DlqSource::Publish,
            "held behind unresolved event x of the same order",
        );
        assert_eq!(classify(&r), RedriveClass::Retryable);
    }

    #[test]
    fn a_consumer_side_record_is_never_redriven() {
        let e = PublishError::Retryable("x".into());
        let r = record(DlqSource::Consumer, &relay_reason(&e));
        assert_eq!(classify(&r), RedriveClass::Consumer);
    }

    #[test]
    fn a_failed_record_keeps_its_class_unless_its_replay_failed_permanently() {
        let e = PublishError::Retryable("down".into());
        let mut r = record(DlqSource::Publish, &relay_reason(&e));
        r.status = DlqStatus::Failed;
        r.replay_result = Some(format!("replay failed: {e}"));
        assert_eq!(classify(&r), RedriveClass::Retryable);
        r.replay_result = Some(format!(
            "replay failed: {}",
            PublishError::Permanent("too large".into())
        ));
        assert_eq!(classify(&r), RedriveClass::Permanent);

        let p = PublishError::Permanent("too large".into());
        let mut r = record(DlqSource::Publish, &relay_reason(&p));
        r.status = DlqStatus::Failed;
        r.replay_result = Some(format!("replay failed: {e}"));
        assert_eq!(classify(&r), RedriveClass::Permanent);
    }

    #[test]
    fn the_first_quoted_error_decides() {
        assert_eq!(
            publish_error_class("publish failed after 3 attempt(s): retryable: permanent: x"),
            Some(RedriveClass::Retryable)
        );
        assert_eq!(publish_error_class("no error quoted"), None);
    }
}
