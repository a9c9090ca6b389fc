//! Bulk DLQ replay as a durable job: `POST /api/dlq/replay` (without
//! `dryRun`) stores a RUNNING job and a background runner works on it.
//!
//! - Heads are read page by page along the store's head index, oldest
//!   failure first (memory stays flat whatever the backlog), and each page
//!   is replayed as one batch ([`DlqService::replay_heads`]): each head
//!   publishes what is held behind it, so per-order order holds.
//! - Throttled to `rate` heads per second (a batch is a second's worth, at
//!   most [`MAX_BATCH`]; the first batches are smaller: see
//!   [`MIN_HEADS_FOR_RATIO`]).
//! - Progress is saved after each batch; the save also renews the runner's
//!   lease and tells it when the job was cancelled (it then stops before
//!   the next batch).
//! - A head another replay holds (another instance, or a claim a crashed
//!   one left until it lapses) is tried again after a pause, not counted.
//! - It stops by itself (STOPPED) once at least [`MIN_HEADS_FOR_RATIO`]
//!   heads were processed and more than `max_failure_ratio` of them failed.
//! - Several instances: a runner works only on jobs it leased; a dead
//!   runner's lease lapses and another runner (or the restarted one) takes
//!   the job over. Heads replayed before the crash no longer match, so it
//!   continues where it stopped.
//!
//! Every replay is audited under the job's principal with the job id in the
//! parameters; creation and cancellation are audited too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::renew::while_renewing;
use super::service::{BulkReplayRequest, DlqService, JOB_LIMIT_MAX};
use crate::app::audit::Auditor;
use crate::app::error::AppError;
use crate::app::principal::{Principal, Role};
use crate::domain::now;
use crate::ports::{
    AuditAction, DlqRecord, DlqStatus, HeadCursor, JobCancel, JobCancelled, JobCounters, JobEnd,
    JobLease, JobProgress, JobStatus, NewReplayJob, ReplayJob, ReplayJobStore,
};

/// Pause before a job tries again a head another replay holds.
const REFUSED_RETRY: Duration = Duration::from_secs(1);

/// Most heads one batch of a job replays.
pub const MAX_BATCH: usize = 256;

/// Fewest processed heads before the failure ratio can stop a job.
pub const MIN_HEADS_FOR_RATIO: u64 = 5;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JobConfig {
    /// Heads replayed per second (> 0).
    pub rate: f64,
    /// A job stops once failed / processed exceeds this (0..=1).
    pub max_failure_ratio: f64,
    /// How long a runner's claim on a job lasts without a renewal; a dead
    /// runner's jobs are taken over after this.
    pub lease: Duration,
    /// How often the runner looks for jobs nobody works on.
    pub poll: Duration,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            rate: 500.0,
            max_failure_ratio: 0.5,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(5),
        }
    }
}

/// Creates, reads and cancels replay jobs, and runs them.
pub struct ReplayJobs {
    /// Names this process in job leases.
    runner: String,
    store: Arc<dyn ReplayJobStore>,
    dlq: Arc<DlqService>,
    audit: Auditor,
    cfg: JobConfig,
    wake: Notify,
}

fn lease_delta(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::seconds(30))
}

fn job_not_found(id: Uuid) -> AppError {
    AppError::NotFound(format!("no replay job {id}"))
}

impl ReplayJobs {
    /// This runner's lease on job `id` from `now` (database time).
    fn lease(&self, id: Uuid, now: chrono::DateTime<chrono::Utc>) -> JobLease<'_> {
        JobLease {
            id,
            runner: &self.runner,
            now,
            until: now + lease_delta(self.cfg.lease),
        }
    }

    /// Extends this runner's lease on job `id` (while a replay runs).
    async fn renew_lease(&self, id: Uuid) {
        let renewed = match self.store.clock().await {
            Ok(now) => self
                .store
                .lease_job(self.lease(id, now))
                .await
                .map(|j| j.is_some()),
            Err(e) => Err(e),
        };
        if !matches!(renewed, Ok(true)) {
            tracing::warn!(job_id = %id, ?renewed, "could not renew a replay job's lease");
        }
    }

    pub fn new(
        store: Arc<dyn ReplayJobStore>,
        dlq: Arc<DlqService>,
        audit: Auditor,
        cfg: JobConfig,
    ) -> Self {
        Self {
            runner: Uuid::now_v7().to_string(),
            store,
            dlq,
            audit,
            cfg,
            wake: Notify::new(),
        }
    }

    pub fn runner_id(&self) -> &str {
        &self.runner
    }

    /// Stores a RUNNING job for `req` (not a dry run) and wakes the runner.
    /// Audited as DLQ_REPLAY_JOB_CREATE with the filter as parameters.
    pub async fn create(
        &self,
        who: &Principal,
        req: &BulkReplayRequest,
    ) -> Result<ReplayJob, AppError> {
        let req = BulkReplayRequest {
            dry_run: false,
            limit: req.limit.clamp(1, JOB_LIMIT_MAX),
            ..req.clone()
        };
        let filter = serde_json::to_value(&req).map_err(|e| AppError::Internal(e.to_string()))?;
        let outcome = async {
            let matched = self
                .dlq
                .dlq
                .count_heads(&req.heads(None, 0))
                .await?
                .min(req.limit as u64);
            let job = NewReplayJob {
                id: Uuid::now_v7(),
                principal: who.name.clone(),
                role: who.role.as_str().to_owned(),
                filter: filter.clone(),
                matched,
                created_at: now(),
            };
            Ok::<_, AppError>(self.store.create_job(&job).await?)
        }
        .await;
        let target = outcome.as_ref().ok().map(|j| j.id.to_string());
        self.audit
            .record_outcome(
                who,
                AuditAction::DlqReplayJobCreate,
                target.as_deref(),
                filter,
                &outcome,
                |j| format!("RUNNING: {} matched", j.counters.matched),
            )
            .await;
        if outcome.is_ok() {
            self.wake.notify_one();
        }
        outcome
    }

    pub async fn get(&self, id: Uuid) -> Result<ReplayJob, AppError> {
        self.store
            .get_job(id)
            .await?
            .ok_or_else(|| job_not_found(id))
    }

    /// Jobs, newest first.
    /// RUNNING → CANCELLED; the runner stops before its next head. 404
    /// unknown, 409 already finished. Audited as DLQ_REPLAY_JOB_CANCEL.
    pub async fn cancel(&self, who: &Principal, id: Uuid) -> Result<ReplayJob, AppError> {
        let outcome = async {
            let message = format!("cancelled by {}", who.name);
            let cancel = JobCancel {
                id,
                message: &message,
                now: now(),
            };
            match self.store.cancel_job(cancel).await? {
                JobCancelled::Done(j) => Ok(j),
                JobCancelled::AlreadyFinished(j) => Err(AppError::Conflict(format!(
                    "replay job {id} already ended: {}",
                    j.status.as_str()
                ))),
                JobCancelled::NotFound => Err(job_not_found(id)),
            }
        }
        .await;
        self.audit
            .record_outcome(
                who,
                AuditAction::DlqReplayJobCancel,
                Some(&id.to_string()),
                json!({}),
                &outcome,
                |j| j.status.as_str().to_owned(),
            )
            .await;
        outcome
    }

    /// Works on jobs until `shutdown` turns true: at start, when a job is
    /// created here, and every `poll` (jobs of dead runners). At shutdown a
    /// job in progress keeps RUNNING and its lease is given up, so the next
    /// start (or another instance) resumes it at once.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.run_pending(&shutdown).await {
                tracing::warn!(error = %e, "replay job runner: cannot look for jobs");
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.poll) => {}
            }
        }
    }

    /// Leases and runs, one after another, every RUNNING job nobody else
    /// holds; returns how many it ran.
    pub async fn run_pending(&self, shutdown: &watch::Receiver<bool>) -> Result<usize, AppError> {
        let mut ran = 0;
        let at = self.store.clock().await?;
        for id in self.store.leasable_jobs(&self.runner, at).await? {
            if *shutdown.borrow() {
                break;
            }
            let at = self.store.clock().await?;
            let Some(job) = self.store.lease_job(self.lease(id, at)).await? else {
                continue;
            };
            self.run_job(job, shutdown.clone()).await;
            ran += 1;
        }
        Ok(ran)
    }

    async fn run_job(&self, job: ReplayJob, shutdown: watch::Receiver<bool>) {
        let id = job.id;
        let end = self.work(&job, shutdown).await;
        let (status, counters, message) = match end {
            Ok(Some(end)) => end,
            // Cancelled or taken over: nothing more to write.
            Ok(None) => return,
            Err((counters, e)) => (
                JobStatus::Failed,
                counters,
                format!("ended by an error: {e}"),
            ),
        };
        let end = JobEnd {
            id,
            runner: &self.runner,
            status,
            counters,
            message: &message,
            now: now(),
        };
        match self.store.finish_job(end).await {
            Ok(true) => tracing::info!(
                job_id = %id,
                status = status.as_str(),
                processed = counters.processed,
                replayed = counters.replayed,
                failed = counters.failed,
                "replay job ended"
            ),
            Ok(false) => {}
            // The lease lapses and the job is taken up again.
            Err(e) => tracing::warn!(job_id = %id, error = %e, "cannot end a replay job"),
        }
    }

    /// Processes the job's heads. `Ok(None)`: the job is no longer ours
    /// (cancelled or taken over).
    #[allow(clippy::type_complexity)]
    async fn work(
        &self,
        job: &ReplayJob,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Option<(JobStatus, JobCounters, String)>, (JobCounters, AppError)> {
        let mut c = job.counters;
        let req: BulkReplayRequest = serde_json::from_value(job.filter.clone())
            .map_err(|e| (c, AppError::Internal(format!("unreadable job filter: {e}"))))?;
        let who = Principal::new(
            job.principal.clone(),
            Role::parse(&job.role).unwrap_or(Role::Admin),
        );
        let job_id = job.id.to_string();
        let limit = req.limit.clamp(1, JOB_LIMIT_MAX) as u64;
        let rate = self.cfg.rate.max(0.001);
        // Heads replayed per batch: a second's worth, at most MAX_BATCH.
        let batch = (rate.ceil() as usize).clamp(1, MAX_BATCH);
        // Heads this run tried that stay FAILED: not tried again by this run.
        let mut tried: HashSet<String> = HashSet::new();
        // Heads refused (being replayed elsewhere, e.g. a claim left by a
        // crashed instance until it lapses): tried again after a pause.
        let mut refused: HashMap<String, tokio::time::Instant> = HashMap::new();
        // The walk through the heads, page by page along the head index:
        // where it is, whether it replayed anything, and which refused heads
        // it passed (others were resolved elsewhere).
        let mut after: Option<HeadCursor> = None;
        let mut progressed = false;
        let mut passed: HashSet<String> = HashSet::new();
        let mut next_at = tokio::time::Instant::now();
        loop {
            // Throttled before the save below, so a cancel that came
            // meanwhile stops the job before its next batch.
            tokio::select! {
                _ = tokio::time::sleep_until(next_at) => {}
                _ = shutdown.changed() => {}
            }
            // Cancelled? (The save also renews the lease, or gives it up at
            // shutdown.)
            let stopping = *shutdown.borrow();
            if !self.save(job.id, c, stopping).await.map_err(|e| (c, e))? || stopping {
                return Ok(None);
            }
            if c.processed >= limit {
                return Ok(Some((
                    JobStatus::Completed,
                    c,
                    format!("limit of {limit} head(s) reached"),
                )));
            }
            if c.processed >= MIN_HEADS_FOR_RATIO
                && c.failed as f64 / c.processed as f64 > self.cfg.max_failure_ratio
            {
                return Ok(Some((
                    JobStatus::Stopped,
                    c,
                    format!(
                        "stopped: {} of {} replays failed (more than {:.0}%)",
                        c.failed,
                        c.processed,
                        self.cfg.max_failure_ratio * 100.0
                    ),
                )));
            }
            // Slow start: the first batches are MIN_HEADS_FOR_RATIO heads,
            // then as many as were processed (doubling), so a job on a bus
            // that is still broken stops after a handful of heads.
            let want = batch
                .min(MIN_HEADS_FOR_RATIO.max(c.processed) as usize)
                .min(usize::try_from(limit - c.processed).unwrap_or(batch));
            let page = self
                .dlq
                .dlq
                .heads(&req.heads(after, want))
                .await
                .map_err(|e| (c, e.into()))?;
            let Some(last) = page.last() else {
                // The end of a walk. Heads may have come up behind it (a held
                // event that failed heads its order now): walk again while
                // walks replay something; then wait for refused heads.
                after = None;
                refused.retain(|id, _| passed.contains(id));
                passed.clear();
                if std::mem::take(&mut progressed) {
                    continue;
                }
                if let Some(due) = refused.values().min().copied() {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                return Ok(Some((
                    JobStatus::Completed,
                    c,
                    "no matching unresolved record left".to_owned(),
                )));
            };
            after = Some(HeadCursor::of(last));
            let clock = tokio::time::Instant::now();
            passed.extend(
                page.iter()
                    .filter(|h| refused.contains_key(&h.event_id))
                    .map(|h| h.event_id.clone()),
            );
            let todo: Vec<DlqRecord> = page
                .into_iter()
                .filter(|h| {
                    !tried.contains(&h.event_id)
                        && refused.get(&h.event_id).is_none_or(|t| *t <= clock)
                })
                .collect();
            if todo.is_empty() {
                continue;
            }
            next_at =
                tokio::time::Instant::now() + Duration::from_secs_f64(todo.len() as f64 / rate);
            // The lease is renewed while the batch runs (bus probes can
            // outlast it).
            let replay = self.dlq.replay_heads(todo);
            let renew = || self.renew_lease(job.id);
            let outcomes = while_renewing(replay, self.cfg.lease / 3, renew)
                .await
                .map_err(|e| (c, e))?;
            for (event_id, one) in outcomes {
                let parameters = json!({ "bulk": true, "jobId": job_id });
                self.dlq
                    .audit_replay(&who, &event_id, parameters, &one)
                    .await;
                match one {
                    Ok(r) => {
                        c.processed += 1;
                        progressed = true;
                        refused.remove(&event_id);
                        c.published += r.published as u64;
                        match r.status {
                            DlqStatus::Replayed => c.replayed += 1,
                            DlqStatus::Failed => {
                                c.failed += 1;
                                tried.insert(event_id);
                            }
                            _ => c.skipped += 1,
                        }
                    }
                    Err(AppError::Conflict(m)) => {
                        tracing::debug!(
                            %event_id,
                            reason = %m,
                            "replay job: head refused; tried again later"
                        );
                        refused.insert(event_id, tokio::time::Instant::now() + REFUSED_RETRY);
                    }
                    // Gone meanwhile (retention, or never there): nothing to do.
                    Err(AppError::NotFound(_)) => {}
                    Err(e) => return Err((c, e)),
                }
            }
            // Progress shows at once (the throttle may wait a while).
            if !self.save(job.id, c, false).await.map_err(|e| (c, e))? {
                return Ok(None);
            }
        }
    }

    /// Saves a job's progress, renewing the runner's lease (or giving it up
    /// when `stopping`). False: the job is no longer this runner's
    /// (cancelled, or taken over).
    async fn save(
        &self,
        id: Uuid,
        counters: JobCounters,
        stopping: bool,
    ) -> Result<bool, AppError> {
        let at = self.store.clock().await?;
        let mut lease = self.lease(id, at);
        if stopping {
            lease.until = at;
        }
        Ok(self
            .store
            .save_job_progress(JobProgress { lease, counters })
            .await?)
    }
}
