//! Bulk replay as its own `impl DlqService` block: it only strings single
//! replays together (one bus look-up for all heads, one audit entry for the
//! whole), so it reads best apart from the single-record operations in
//! [`super::service`]; the replay job runner ([`super::jobs`]) drives it
//! through `matching_heads` and `replay_for_job`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::service::{replay_message, DlqService, ReplayOutcome};
use crate::app::error::AppError;
use crate::app::principal::Principal;
use crate::ports::{AuditAction, BusMessage, DlqRecord, DlqSource, DlqStatus, PageRequest};

/// What `POST /api/dlq/replay` replays (also a job's filter, stored as
/// JSON with these field names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkReplayRequest {
    /// Most sequence heads to replay (1..=[`BULK_REPLAY_MAX`]).
    pub limit: usize,
    /// Count and list what would be replayed; publish nothing.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub aggregate_id: Option<String>,
    #[serde(default)]
    pub event_type: Option<String>,
    /// PENDING or FAILED heads only; both when absent.
    #[serde(default)]
    pub status: Option<DlqStatus>,
    /// Heads that failed at or after this instant.
    #[serde(default)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Heads that failed strictly before this instant.
    #[serde(default)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

/// Largest `limit` of a bulk replay.
pub const BULK_REPLAY_MAX: usize = 1000;

/// Answer of a bulk replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkReplayOutcome {
    pub dry_run: bool,
    /// Sequence heads that matched (at most `limit`), in failure order.
    pub matched: usize,
    pub replayed: usize,
    pub failed: usize,
    /// Resolved meanwhile (by another replay): nothing published.
    pub skipped: usize,
    /// Refused (409: claimed by another instance, or no longer a head).
    pub refused: usize,
    /// Messages put on the bus, the held events included.
    pub published: usize,
    /// Event ids of the matched heads (dry run) or one outcome per head.
    pub event_ids: Vec<String>,
    pub results: Vec<ReplayOutcome>,
}

impl DlqService {
    /// Replays the unresolved sequence heads (records not held behind an
    /// unresolved one) that match, oldest failure first, one after another;
    /// each publishes the events held behind it, so per-order order holds.
    /// A head whose replay fails stays FAILED and the next one is tried.
    /// Audited as one DLQ_BULK_REPLAY entry, plus one DLQ_REPLAY entry
    /// (`parameters.bulk = true`) per head it replayed.
    /// `POST /api/dlq/replay` uses it for dry runs only; a real bulk replay
    /// runs as a durable, throttled job (see [`super::jobs`]).
    pub async fn replay_bulk(
        &self,
        who: &Principal,
        req: &BulkReplayRequest,
    ) -> Result<BulkReplayOutcome, AppError> {
        let outcome = self.run_bulk_replay(who, req).await;
        let parameters = serde_json::to_value(req).unwrap_or_else(|_| json!({}));
        self.audit
            .record_outcome(
                who,
                AuditAction::DlqBulkReplay,
                None,
                parameters,
                &outcome,
                |o| {
                    if o.dry_run {
                        format!("DRY_RUN: {} matched", o.matched)
                    } else {
                        format!(
                            "OK: {} matched, {} replayed, {} failed, {} skipped, {} refused",
                            o.matched, o.replayed, o.failed, o.skipped, o.refused
                        )
                    }
                },
            )
            .await;
        outcome
    }

    async fn run_bulk_replay(
        &self,
        who: &Principal,
        req: &BulkReplayRequest,
    ) -> Result<BulkReplayOutcome, AppError> {
        let limit = req.limit.clamp(1, BULK_REPLAY_MAX);
        let heads = self.heads(req, limit).await?;
        let mut out = BulkReplayOutcome {
            dry_run: req.dry_run,
            matched: heads.len(),
            event_ids: heads.iter().map(|r| r.event_id.clone()).collect(),
            ..BulkReplayOutcome::default()
        };
        if req.dry_run {
            return Ok(out);
        }
        // One look at the bus for every parked publish of every matched
        // sequence, instead of one per head.
        let mut parked: Vec<BusMessage> = Vec::new();
        for head in heads.iter().filter(|h| h.source == DlqSource::Publish) {
            parked.push(replay_message(head));
            let behind = self.dlq.blocked_behind(&head.event_id).await?;
            parked.extend(behind.iter().map(replay_message));
        }
        let prechecked = match self.bus.find_published(&parked).await {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::warn!(error = %e, "bulk replay: the bus cannot say what it has; checking per head");
                None
            }
        };
        for head in heads {
            let one = self
                .replay_checked(&head.event_id, prechecked.as_ref())
                .await;
            self.audit_replay(who, &head.event_id, json!({ "bulk": true }), &one)
                .await;
            match one {
                Ok(r) => {
                    match r.status {
                        DlqStatus::Replayed => out.replayed += 1,
                        DlqStatus::Failed => out.failed += 1,
                        _ => out.skipped += 1,
                    }
                    out.published += r.published;
                    out.results.push(r);
                }
                Err(AppError::Conflict(message)) => {
                    out.refused += 1;
                    out.results.push(ReplayOutcome {
                        event_id: head.event_id,
                        success: false,
                        status: head.status,
                        message,
                        published: 0,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(
            matched = out.matched,
            replayed = out.replayed,
            failed = out.failed,
            published = out.published,
            "bulk DLQ replay"
        );
        Ok(out)
    }

    /// Replays one sequence head for the bulk replay job `job_id`, audited
    /// under `who` with the job id in the parameters. A head found resolved
    /// answers SKIPPED; one no longer a head or claimed elsewhere is 409.
    pub async fn replay_for_job(
        &self,
        who: &Principal,
        job_id: &str,
        event_id: &str,
    ) -> Result<ReplayOutcome, AppError> {
        let outcome = self.replay_checked(event_id, None).await;
        self.audit_replay(
            who,
            event_id,
            json!({ "bulk": true, "jobId": job_id }),
            &outcome,
        )
        .await;
        outcome
    }

    /// Unresolved sequence heads that match `req`, oldest failure first, at
    /// most `limit` (a job's next heads and its matched count).
    pub async fn matching_heads(
        &self,
        req: &BulkReplayRequest,
        limit: usize,
    ) -> Result<Vec<DlqRecord>, AppError> {
        self.heads(req, limit).await
    }

    /// Unresolved records that head their sequence and match `req`, oldest
    /// failure first, at most `limit`.
    pub(super) async fn heads(
        &self,
        req: &BulkReplayRequest,
        limit: usize,
    ) -> Result<Vec<DlqRecord>, AppError> {
        let mut unresolved: Vec<DlqRecord> = Vec::new();
        // Both statuses even with a status filter: a head is found by looking
        // at every unresolved record of its order.
        for status in [DlqStatus::Pending, DlqStatus::Failed] {
            let mut page = 0;
            loop {
                let p = self
                    .dlq
                    .list(Some(status), PageRequest { page, size: 500 })
                    .await?;
                let last = u64::from(page) + 1 >= p.total_pages;
                unresolved.extend(p.content);
                if last {
                    break;
                }
                page += 1;
            }
        }
        let open: std::collections::HashSet<String> =
            unresolved.iter().map(|r| r.event_id.clone()).collect();
        let mut heads: Vec<DlqRecord> = unresolved
            .into_iter()
            .filter(|r| r.blocked_by.as_ref().is_none_or(|h| !open.contains(h)))
            .filter(|r| {
                req.aggregate_id
                    .as_ref()
                    .is_none_or(|a| &r.aggregate_id == a)
            })
            .filter(|r| req.event_type.as_ref().is_none_or(|t| &r.event_type == t))
            .filter(|r| req.status.is_none_or(|s| r.status == s))
            .filter(|r| req.from.is_none_or(|t| r.failure_time >= t))
            .filter(|r| req.to.is_none_or(|t| r.failure_time < t))
            .collect();
        heads.sort_by_key(|r| (r.failure_time, r.id));
        heads.truncate(limit);
        Ok(heads)
    }
}
