//! `/api/dlq`: the original service's six endpoints and field names, plus bulk
//! replay (a dry run, or a job: `/api/dlq/jobs`) and skip (the audit log is served by `audit.rs`).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use chrono::{DateTime, Utc};
use order_core::app::{
    Auditor, BulkReplayRequest, DlqService, Listings, Principal, ReplayJobs, BULK_REPLAY_MAX,
    JOB_LIMIT_MAX, SKIP_REASON_MAX,
};
use order_core::ports::{AuditAction, DlqStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cursor::{CursorPage, Listing};
use super::error::ApiError;
use super::extract::{principal as principal_of, OptionalJsonBody, Params, PathParam};

/// Event ids are at most this long; longer ones cannot exist.
const MAX_EVENT_ID_LEN: usize = 200;

pub(super) fn event_id(PathParam(id): PathParam) -> Result<String, ApiError> {
    if id.len() > MAX_EVENT_ID_LEN {
        return Err(ApiError::not_found(format!(
            "no DLQ record for event {}…",
            id.chars().take(40).collect::<String>()
        )));
    }
    Ok(id)
}

#[utoipa::path(
    get,
    path = "/api/dlq/stats",
    operation_id = "dlqStats",
    tag = "dlq",
    summary = "DLQ counts by status",
    description = "Answered without scanning the records: the counts are kept per status (and held or not) in the write-side database, in the transaction of every change to a record; the oldest unresolved failure time is the first entry of an index.",
    responses(
        (status = 200, description = "Counts.", body = order_core::ports::DlqStats),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
    extensions(("x-required-role" = json!("viewer"))),
)]
pub async fn stats(State(dlq): State<Arc<DlqService>>) -> Result<Response, ApiError> {
    Ok(Json(dlq.stats().await?).into_response())
}

/// DLQ records as JSON for `principal`: below operator without
/// `originalEvent` (the event payload, customer data included). Without a
/// principal (cannot happen behind `auth::authorize`) the payload is hidden.
pub(super) fn records_for(
    principal: Option<Extension<Principal>>,
    body: impl Serialize,
) -> Response {
    match masked(principal, body) {
        Ok(value) => Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}

/// [`records_for`] as a JSON value.
fn masked(
    principal: Option<Extension<Principal>>,
    body: impl Serialize,
) -> Result<serde_json::Value, ApiError> {
    let sees_payload = super::dlq_repair::sees_payload(&principal);
    let mut value = serde_json::to_value(body).map_err(ApiError::internal)?;
    if !sees_payload {
        let strip = |v: &mut serde_json::Value| {
            if let Some(o) = v.as_object_mut() {
                o.remove("originalEvent");
            }
        };
        // A page of records, or one record.
        match value.get_mut("content").and_then(|c| c.as_array_mut()) {
            Some(records) => records.iter_mut().for_each(strip),
            None => strip(&mut value),
        }
    }
    Ok(value)
}

/// A page of the records of `status` (`page`/`size`, or `after` a cursor).
async fn records_page(
    lists: &Listings,
    principal: Option<Extension<Principal>>,
    status: DlqStatus,
    params: &Params,
) -> Result<Response, ApiError> {
    let req = params.list_request(Listing::DlqRecords)?;
    let records = lists.records(Some(status), req).await?;
    Ok(records_for(
        principal,
        CursorPage::new(Listing::DlqRecords, records),
    ))
}

#[utoipa::path(
    get,
    path = "/api/dlq/pending",
    operation_id = "dlqPending",
    tag = "dlq",
    summary = "PENDING records, newest failure first",
    description = "Newest failure first, then highest id. totalElements comes from the counts the store keeps (no COUNT over the records). Below operator, records come without originalEvent.",
    params(
        super::openapi::CursorQuery,
    ),
    responses(
        (status = 200, description = "A page of records.", body = CursorPage<order_core::ports::DlqRecord>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
    extensions(("x-required-role" = json!("viewer"))),
)]
pub async fn pending(
    State(lists): State<Listings>,
    principal: Option<Extension<Principal>>,
    params: Params,
) -> Result<Response, ApiError> {
    records_page(&lists, principal, DlqStatus::Pending, &params).await
}

#[utoipa::path(
    get,
    path = "/api/dlq/event/{eventId}",
    operation_id = "dlqEvent",
    tag = "dlq",
    summary = "One DLQ record, with its revision history",
    params(
        ("eventId" = String, Path, min_length = 1, description = "Event id of a DLQ record."),
    ),
    responses(
        (status = 200, description = "The record and its revisions (without originalEvent and the revisions' payload below operator).", body = super::dlq_repair::RecordWithRevisions),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
    extensions(("x-required-role" = json!("viewer"))),
)]
pub async fn event(
    State(dlq): State<Arc<DlqService>>,
    principal: Option<Extension<Principal>>,
    id: PathParam,
) -> Result<Response, ApiError> {
    let id = event_id(id)?;
    let record = dlq.get(&id).await?;
    let revisions = dlq.revisions_of(&id).await.unwrap_or_else(|e| {
        // The record is there; a history it cannot read is not worth a 5xx.
        tracing::warn!(event_id = %id, error = %e, "could not read a DLQ record's revisions");
        Vec::new()
    });
    let revisions = super::dlq_repair::revisions_for(&principal, revisions)?;
    let mut value = masked(principal, record)?;
    if let Some(o) = value.as_object_mut() {
        o.insert("approvalRequired".into(), dlq.edit_approval().into());
        o.insert("revisions".into(), revisions);
    }
    Ok(Json(value).into_response())
}

/// What `POST /api/dlq/replay/{eventId}` answers with 200: the replay's
/// outcome, or with `preview=true` the preview (documentation only).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ReplayAnswer {
    Outcome(order_core::app::ReplayOutcome),
    Preview(Box<order_core::app::dlq::preview::ReplayPreview>),
}

/// What `POST /api/dlq/replay` answers with 200: a dry run's outcome, or
/// with `preview=true` the previews (documentation only).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum BulkReplayAnswer {
    Outcome(order_core::app::BulkReplayOutcome),
    Preview(super::dlq_repair::BulkPreview),
}

/// 200 with the outcome (REPLAYED or SKIPPED); 502 with the same body shape
/// when the bus refused the message (FAILED).
#[utoipa::path(
    post,
    path = "/api/dlq/replay/{eventId}",
    operation_id = "dlqReplay",
    tag = "dlq",
    summary = "Replay a record (a sequence head publishes the events held behind it, in order), or preview the replay",
    description = "A consumer-side record goes out as its current revision (see POST /api/dlq/{eventId}/revisions) with provenance headers; when its dead letter named its consumer group, to the redelivery topic (ORDER_TOPIC_REDELIVERY) with the header orders_redeliver_to naming that group alone. With preview=true nothing is published or written: 200 with the messages in the order they would be sent (the record, then the events held behind it), whether each is on the bus already and would be sent, why a replay would be refused now, and the projector's read-model document before and after applying them.",
    params(
        ("eventId" = String, Path, min_length = 1, description = "Event id of a DLQ record."),
        ("preview" = Option<bool>, Query, description = "true: answer what a replay would do; publish and write nothing."),
    ),
    responses(
        (status = 200, description = "REPLAYED, or SKIPPED when the record was already replayed (nothing is published); with preview=true, the preview (a ReplayPreview).", body = ReplayAnswer),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "The record is held behind an unresolved head of the same order (replay the head), its current revision awaits approval, or another service instance is replaying it right now (retry shortly).",
            body = super::error::Body, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = 502, description = "The bus refused the message: the record is now FAILED (success=false).", body = order_core::app::ReplayOutcome),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn replay(
    State(dlq): State<Arc<DlqService>>,
    act: RecordAction,
    params: Params,
) -> Result<Response, ApiError> {
    if params.flag("preview")? {
        let id = event_id(act.id)?;
        return Ok(Json(dlq.preview(&id).await?).into_response());
    }
    let (who, id) = act.event_id(AuditAction::DlqReplay).await?;
    let outcome = dlq.replay(&who, &id).await?;
    let status = if outcome.success {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    Ok((status, Json(outcome)).into_response())
}

/// Body of `POST /api/dlq/replay`; every field optional, no other allowed.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = BulkReplayRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BulkReplayBody {
    /// Most sequence heads to replay (default 100): at most 1000 for a dry
    /// run (it lists them), at most 100,000,000 for a job (it reads them
    /// page by page from the head index, oldest failure first).
    #[schema(minimum = 1, maximum = 100_000_000)]
    limit: Option<u64>,
    /// Count and list the matching heads; publish nothing (default false).
    dry_run: Option<bool>,
    /// Only records of this order.
    aggregate_id: Option<String>,
    /// Only heads of this event type.
    event_type: Option<String>,
    /// PENDING or FAILED (case-insensitive); both when absent.
    #[schema(pattern = r"^([Pp][Ee][Nn][Dd][Ii][Nn][Gg]|[Ff][Aa][Ii][Ll][Ee][Dd])$")]
    status: Option<String>,
    /// Only heads that failed at or after this instant (RFC 3339).
    #[schema(format = DateTime)]
    from: Option<String>,
    /// Only heads that failed strictly before this instant (RFC 3339);
    /// after `from`.
    #[schema(format = DateTime)]
    to: Option<String>,
}

const BULK_REPLAY_DEFAULT: usize = 100;

fn instant(name: &str, v: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|t| {
        DateTime::parse_from_rfc3339(t.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "invalid bulk replay request: {name} must be an RFC 3339 instant \
                     (e.g. 2024-05-01T10:00:00Z), not {t:?}: {e}"
                ))
            })
    })
    .transpose()
}

fn bulk_request(body: BulkReplayBody) -> Result<BulkReplayRequest, ApiError> {
    // A dry run lists what it matched; a job streams its heads.
    let dry_run = body.dry_run.unwrap_or(false);
    let max = if dry_run {
        BULK_REPLAY_MAX
    } else {
        JOB_LIMIT_MAX
    };
    let limit = match body.limit {
        None => BULK_REPLAY_DEFAULT,
        Some(n) if (1..=max as u64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {max}{}, not {n}",
                if dry_run { " for a dry run" } else { "" }
            )))
        }
    };
    let status = match body.status.as_deref() {
        None => None,
        Some(s) => match DlqStatus::parse(s).filter(|st| st.is_unresolved() && s == s.trim()) {
            Some(s) => Some(s),
            None => {
                return Err(ApiError::bad_request(format!(
                    "invalid bulk replay request: status must be PENDING or FAILED, not {s:?}"
                )))
            }
        },
    };
    let from = instant("from", body.from)?;
    let to = instant("to", body.to)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::bad_request(
                "invalid bulk replay request: from must be before to",
            ));
        }
    }
    Ok(BulkReplayRequest {
        limit,
        dry_run,
        aggregate_id: body.aggregate_id,
        event_type: body.event_type,
        status,
        from,
        to,
    })
}

/// `dryRun`: 200 with the matched count and a sample of event ids, nothing
/// published (see `DlqService::replay_bulk`). Otherwise a replay job: 202
/// with the job and `Location: /api/dlq/jobs/{id}` (see
/// `order_core::app::jobs`).
#[utoipa::path(
    post,
    path = "/api/dlq/replay",
    operation_id = "dlqReplayBulk",
    tag = "dlq",
    summary = "Start a bulk replay job over the unresolved sequence heads that match (or, with dryRun, count them)",
    description = "With preview=true (query) nothing is published or written: 200 with a replay preview of each matching head (at most 100; see POST /api/dlq/replay/{eventId}?preview=true). With dryRun nothing is published: 200 with the number of matching heads and their event ids. Otherwise 202 with a replay job (Location: /api/dlq/jobs/{id}) that a background runner works on: one head at a time, oldest failure first, each publishing the events held behind it (per-order order), throttled to ORDER_DLQ_JOB_RATE heads per second, progress saved after each head. It stops by itself (STOPPED) when more than ORDER_DLQ_JOB_MAX_FAILURE_RATIO of its replays failed (after at least 5), and survives a restart (a RUNNING job is resumed; heads already replayed no longer match). Publish failures that an unanswered attempt delivered after all are found on the bus and not sent again.",
    request_body(content = Option<BulkReplayBody>, content_type = "application/json"),
    params(
        ("preview" = Option<bool>, Query, description = "true: a replay preview of each matching head (at most 100, the body's limit); publish and write nothing."),
    ),
    responses(
        (status = 200, description = "dryRun: what would be replayed; nothing was published. preview=true: a BulkPreview.", body = BulkReplayAnswer),
        (status = 202, description = "The replay job, RUNNING.", body = order_core::ports::ReplayJob,
            headers(("Location" = String, description = "The job: /api/dlq/jobs/{jobId}."))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn replay_bulk(
    State(dlq): State<Arc<DlqService>>,
    State(jobs): State<Arc<ReplayJobs>>,
    who: Option<Extension<Principal>>,
    params: Params,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let preview = params.flag("preview")?;
    let body: BulkReplayBody = match body {
        None => BulkReplayBody::default(),
        // Only an object: serde would read an array positionally.
        Some(bytes) if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') => {
            return Err(ApiError::bad_request(
                "invalid bulk replay request: the body must be a JSON object",
            ))
        }
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid bulk replay request: {e}")))?,
    };
    let req = bulk_request(body)?;
    if preview {
        let limit = req.limit.min(super::dlq_repair::BULK_PREVIEW_MAX);
        let previews = dlq.preview_heads(&req.heads(None, limit)).await?;
        return Ok(Json(super::dlq_repair::BulkPreview { previews }).into_response());
    }
    let who = principal_of(who);
    if req.dry_run {
        return Ok(Json(dlq.replay_bulk(&who, &req).await?).into_response());
    }
    let job = jobs.create(&who, &req).await?;
    let location = format!("/api/dlq/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job),
    )
        .into_response())
}

fn job_id(PathParam(id): PathParam) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id.trim()).map_err(|_| {
        ApiError::not_found(format!(
            "no replay job {}",
            id.chars().take(40).collect::<String>()
        ))
    })
}

/// Replay jobs, newest first (`page`/`size`, or `after` a cursor).
#[utoipa::path(
    get,
    path = "/api/dlq/jobs",
    operation_id = "dlqReplayJobs",
    tag = "dlq",
    summary = "Bulk replay jobs, newest first",
    params(
        super::openapi::CursorQuery,
    ),
    responses(
        (status = 200, description = "A page of jobs.", body = CursorPage<order_core::ports::ReplayJob>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["operator"]), ("apiKeyHeader" = ["operator"])),
    extensions(("x-required-role" = json!("operator"))),
)]
pub async fn jobs(State(lists): State<Listings>, params: Params) -> Result<Response, ApiError> {
    let req = params.list_request(Listing::Jobs)?;
    let page = CursorPage::new(Listing::Jobs, lists.jobs(req).await?);
    Ok(Json(page).into_response())
}

/// One replay job: its status and counters (poll this for progress).
#[utoipa::path(
    get,
    path = "/api/dlq/jobs/{jobId}",
    operation_id = "dlqReplayJob",
    tag = "dlq",
    summary = "One bulk replay job: status and progress",
    params(
        ("jobId" = Uuid, Path, description = "A replay job id (UUID); anything else is 404."),
    ),
    responses(
        (status = 200, description = "The job.", body = order_core::ports::ReplayJob),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["operator"]), ("apiKeyHeader" = ["operator"])),
    extensions(("x-required-role" = json!("operator"))),
)]
pub async fn job(State(jobs): State<Arc<ReplayJobs>>, id: PathParam) -> Result<Response, ApiError> {
    let id = job_id(id)?;
    Ok(Json(jobs.get(id).await?).into_response())
}

/// Cancels a RUNNING job: 200 with the job, now CANCELLED; the runner stops
/// before its next head. 404 unknown; 409 already ended.
#[utoipa::path(
    delete,
    path = "/api/dlq/jobs/{jobId}",
    operation_id = "dlqCancelReplayJob",
    tag = "dlq",
    summary = "Cancel a running bulk replay job",
    description = "The job becomes CANCELLED at once; its runner stops before the next head (a head being replayed finishes). Audited as DLQ_REPLAY_JOB_CANCEL.",
    params(
        ("jobId" = Uuid, Path, description = "A replay job id (UUID); anything else is 404."),
    ),
    responses(
        (status = 200, description = "The job, now CANCELLED.", body = order_core::ports::ReplayJob),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "The job has already ended.", body = super::error::Body, content_type = "application/problem+json"),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn cancel_job(
    State(jobs): State<Arc<ReplayJobs>>,
    who: Option<Extension<Principal>>,
    id: PathParam,
) -> Result<Response, ApiError> {
    let who = principal_of(who);
    let id = job_id(id)?;
    Ok(Json(jobs.cancel(&who, id).await?).into_response())
}

#[utoipa::path(
    put,
    path = "/api/dlq/reset/{eventId}",
    operation_id = "dlqReset",
    tag = "dlq",
    summary = "FAILED → PENDING",
    params(
        ("eventId" = String, Path, min_length = 1, description = "Event id of a DLQ record."),
    ),
    responses(
        (status = 200, description = "The record, now PENDING.", body = order_core::ports::DlqRecord),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "The record is not FAILED.", body = super::error::Body, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn reset(
    State(dlq): State<Arc<DlqService>>,
    act: RecordAction,
) -> Result<Response, ApiError> {
    let (who, id) = act.event_id(AuditAction::DlqReset).await?;
    Ok(Json(dlq.reset(&who, &id).await?).into_response())
}

/// The principal acting on one DLQ record and the record's id as given in
/// the path; [`RecordAction::event_id`] audits an id that cannot exist as a
/// refused (404) action.
pub struct RecordAction {
    who: Principal,
    audit: Auditor,
    pub(super) id: PathParam,
}

impl<S: Send + Sync> FromRequestParts<S> for RecordAction
where
    Auditor: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let id = PathParam::from_request_parts(parts, state).await?;
        let who = parts.extensions.get::<Principal>().cloned();
        Ok(RecordAction {
            who: who.unwrap_or_else(Principal::anonymous),
            audit: Auditor::from_ref(state),
            id,
        })
    }
}

impl RecordAction {
    /// Who acts, and the record's id ([`event_id`]).
    async fn event_id(self, action: AuditAction) -> Result<(Principal, String), ApiError> {
        let raw = self.id.0.clone();
        match event_id(self.id) {
            Ok(id) => Ok((self.who, id)),
            Err(e) => {
                let target: String = raw.chars().take(MAX_EVENT_ID_LEN).collect();
                self.audit
                    .record(
                        &self.who,
                        action,
                        Some(&target),
                        serde_json::json!({}),
                        "404",
                    )
                    .await;
                Err(e)
            }
        }
    }
}

/// Body of `POST /api/dlq/skip/{eventId}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = SkipRequest)]
#[serde(deny_unknown_fields)]
struct SkipBody {
    /// Why the event is given up on; kept as the record's replayResult.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 500, pattern = r"\S")]
    reason: Option<String>,
}

/// Marks an unresolved record SKIPPED (never published); when it heads an
/// order's sequence the next held event becomes the head. 200 with the
/// outcome; 404 unknown; 409 already resolved or being replayed.
#[utoipa::path(
    post,
    path = "/api/dlq/skip/{eventId}",
    operation_id = "dlqSkip",
    tag = "dlq",
    summary = "Give up on a PENDING or FAILED record: it becomes SKIPPED and is never published",
    description = "The reason is kept as the record's replayResult and the record counts in skippedCount. When events of the same order are held behind the record (it heads the order's sequence), the held event with the lowest version becomes the new head: its blockedBy is cleared and the others are re-pointed to it, so replaying it continues the sequence (answered as newHead). A held record skipped directly just leaves its sequence; the rest still wait behind their head. A record being replayed at that moment is refused (409). Audited as DLQ_SKIP.",
    request_body(content = SkipBody, content_type = "application/json"),
    params(
        ("eventId" = String, Path, min_length = 1, description = "Event id of a DLQ record."),
    ),
    responses(
        (status = 200, description = "The record is SKIPPED.", body = order_core::app::SkipOutcome),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "The record is not PENDING or FAILED, or is being replayed.", body = super::error::Body, content_type = "application/problem+json"),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn skip(
    State(dlq): State<Arc<DlqService>>,
    act: RecordAction,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("invalid skip request: {m}"));
    let body: SkipBody = match body {
        None => return Err(bad("a JSON body with a reason is required".into())),
        Some(bytes) if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') => {
            return Err(bad("the body must be a JSON object".into()))
        }
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?,
    };
    let reason = body.reason.as_deref().map(str::trim).unwrap_or("");
    if reason.is_empty() || reason.chars().count() > SKIP_REASON_MAX {
        return Err(bad(format!(
            "reason is required: 1 to {SKIP_REASON_MAX} characters"
        )));
    }
    let (who, id) = act.event_id(AuditAction::DlqSkip).await?;
    Ok(Json(dlq.skip(&who, &id, reason).await?).into_response())
}

#[utoipa::path(
    get,
    path = "/api/dlq/status/{status}",
    operation_id = "dlqByStatus",
    tag = "dlq",
    summary = "Records of one status",
    description = "Newest failure first, then highest id. totalElements comes from the counts the store keeps (no COUNT over the records). Below operator, records come without originalEvent.",
    params(
        ("status" = String, Path, pattern = r"^([Pp][Ee][Nn][Dd][Ii][Nn][Gg]|[Rr][Ee][Pp][Ll][Aa][Yy][Ee][Dd]|[Ff][Aa][Ii][Ll][Ee][Dd]|[Ss][Kk][Ii][Pp][Pp][Ee][Dd])$", description = "PENDING, REPLAYED, FAILED or SKIPPED, case-insensitive."),
        super::openapi::CursorQuery,
    ),
    responses(
        (status = 200, description = "A page of records.", body = CursorPage<order_core::ports::DlqRecord>),
        (status = 400, description = "Unknown status (the detail names PENDING, REPLAYED, FAILED, SKIPPED) or bad paging.",
            body = super::error::Body, content_type = "application/problem+json"),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
    extensions(("x-required-role" = json!("viewer"))),
)]
pub async fn by_status(
    State(lists): State<Listings>,
    principal: Option<Extension<Principal>>,
    PathParam(status): PathParam,
    params: Params,
) -> Result<Response, ApiError> {
    let Some(status) = DlqStatus::parse(&status).filter(|_| status == status.trim()) else {
        let valid: Vec<&str> = DlqStatus::ALL.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "unknown DLQ status {status:?}; valid statuses are {}",
            valid.join(", ")
        )));
    };
    records_page(&lists, principal, status, &params).await
}
