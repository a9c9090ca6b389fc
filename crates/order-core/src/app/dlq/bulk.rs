//! Bulk replay as its own `impl DlqService` block: the heads a request
//! matches (from the store's head index), replayed as one batch
//! ([`super::batch`]). `POST /api/dlq/replay` uses it for dry runs; a real
//! bulk replay runs as a durable job ([`super::jobs`]) built on the same
//! pieces.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::service::{DlqService, ReplayOutcome};
use crate::app::error::AppError;
use crate::app::principal::Principal;
use crate::ports::AuditAction;
use crate::ports::{DlqStatus, HeadCursor, HeadQuery};

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

/// Largest `limit` of a dry run or a synchronous bulk replay.
pub const BULK_REPLAY_MAX: usize = 1000;

/// Largest `limit` of a replay job (it streams its heads).
pub const JOB_LIMIT_MAX: usize = 100_000_000;

/// Answer of a bulk replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// unresolved one) that match, oldest failure first, as one batch; each
    /// publishes the events held behind it, so per-order order holds.
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
        let heads = self.dlq.heads(&req.heads(None, limit)).await?;
        let mut out = BulkReplayOutcome {
            dry_run: req.dry_run,
            matched: heads.len(),
            event_ids: heads.iter().map(|r| r.event_id.clone()).collect(),
            ..BulkReplayOutcome::default()
        };
        if req.dry_run {
            return Ok(out);
        }
        let statuses: std::collections::HashMap<String, DlqStatus> = heads
            .iter()
            .map(|h| (h.event_id.clone(), h.status))
            .collect();
        for (event_id, one) in self.replay_heads(heads).await? {
            self.audit_replay(who, &event_id, json!({ "bulk": true }), &one)
                .await;
            let status = statuses
                .get(&event_id)
                .copied()
                .unwrap_or(DlqStatus::Pending);
            out.add(event_id, status, one)?;
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
}

impl BulkReplayOutcome {
    /// Counts the outcome of one head (of `status` when it was read); an
    /// error other than a refusal (409) ends the bulk replay.
    fn add(
        &mut self,
        event_id: String,
        status: DlqStatus,
        one: Result<ReplayOutcome, AppError>,
    ) -> Result<(), AppError> {
        match one {
            Ok(r) => {
                match r.status {
                    DlqStatus::Replayed => self.replayed += 1,
                    DlqStatus::Failed => self.failed += 1,
                    _ => self.skipped += 1,
                }
                self.published += r.published;
                self.results.push(r);
            }
            Err(AppError::Conflict(message)) => {
                self.refused += 1;
                self.results.push(ReplayOutcome {
                    event_id,
                    success: false,
                    status,
                    message,
                    published: 0,
                });
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

impl BulkReplayRequest {
    /// The heads this request matches, after `after`, at most `limit`.
    pub fn heads(&self, after: Option<HeadCursor>, limit: usize) -> HeadQuery<'_> {
        HeadQuery {
            aggregate_id: self.aggregate_id.as_deref(),
            event_type: self.event_type.as_deref(),
            status: self.status,
            source: None,
            from: self.from,
            to: self.to,
            after,
            limit,
        }
    }
}
