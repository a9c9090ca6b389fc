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
    Auditor, BulkReplayRequest, DlqService, Listings, Principal, ReplayJobs, Role, BULK_REPLAY_MAX,
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

fn event_id(PathParam(id): PathParam) -> Result<String, ApiError> {
    if id.len() > MAX_EVENT_ID_LEN {
        return Err(ApiError::not_found(format!(
            "no DLQ record for event {}…",
            id.chars().take(40).collect::<String>()
        )));
    }
    Ok(id)
}

pub async fn stats(State(dlq): State<Arc<DlqService>>) -> Result<Response, ApiError> {
    Ok(Json(dlq.stats().await?).into_response())
}

/// DLQ records as JSON for `principal`: below operator without
/// `originalEvent` (the event payload, customer data included). Without a
/// principal (cannot happen behind `auth::authorize`) the payload is hidden.
fn records_for(principal: Option<Extension<Principal>>, body: impl Serialize) -> Response {
    let sees_payload = principal.is_some_and(|Extension(p)| p.has(Role::Operator));
    let mut value = match serde_json::to_value(body) {
        Ok(v) => v,
        Err(e) => return ApiError::internal(e).into_response(),
    };
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
    Json(value).into_response()
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

pub async fn pending(
    State(lists): State<Listings>,
    principal: Option<Extension<Principal>>,
    params: Params,
) -> Result<Response, ApiError> {
    records_page(&lists, principal, DlqStatus::Pending, &params).await
}

pub async fn event(
    State(dlq): State<Arc<DlqService>>,
    principal: Option<Extension<Principal>>,
    id: PathParam,
) -> Result<Response, ApiError> {
    let id = event_id(id)?;
    Ok(records_for(principal, dlq.get(&id).await?))
}

/// 200 with the outcome (REPLAYED or SKIPPED); 502 with the same body shape
/// when the bus refused the message (FAILED).
pub async fn replay(
    State(dlq): State<Arc<DlqService>>,
    act: RecordAction,
) -> Result<Response, ApiError> {
    let (who, id) = act.event_id(AuditAction::DlqReplay).await?;
    let outcome = dlq.replay(&who, &id).await?;
    let status = if outcome.success {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    Ok((status, Json(outcome)).into_response())
}

/// Body of `POST /api/dlq/replay`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BulkReplayBody {
    limit: Option<u64>,
    dry_run: Option<bool>,
    aggregate_id: Option<String>,
    event_type: Option<String>,
    /// PENDING or FAILED; both when absent.
    status: Option<String>,
    /// Failure time at or after (RFC 3339).
    from: Option<String>,
    /// Failure time strictly before (RFC 3339).
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
        Some(s) => match DlqStatus::parse(s).filter(|s| s.is_unresolved()) {
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
pub async fn replay_bulk(
    State(dlq): State<Arc<DlqService>>,
    State(jobs): State<Arc<ReplayJobs>>,
    who: Option<Extension<Principal>>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
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
pub async fn jobs(State(lists): State<Listings>, params: Params) -> Result<Response, ApiError> {
    let req = params.list_request(Listing::Jobs)?;
    let page = CursorPage::new(Listing::Jobs, lists.jobs(req).await?);
    Ok(Json(page).into_response())
}

/// One replay job: its status and counters (poll this for progress).
pub async fn job(State(jobs): State<Arc<ReplayJobs>>, id: PathParam) -> Result<Response, ApiError> {
    let id = job_id(id)?;
    Ok(Json(jobs.get(id).await?).into_response())
}

/// Cancels a RUNNING job: 200 with the job, now CANCELLED; the runner stops
/// before its next head. 404 unknown; 409 already ended.
pub async fn cancel_job(
    State(jobs): State<Arc<ReplayJobs>>,
    who: Option<Extension<Principal>>,
    id: PathParam,
) -> Result<Response, ApiError> {
    let who = principal_of(who);
    let id = job_id(id)?;
    Ok(Json(jobs.cancel(&who, id).await?).into_response())
}

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
    id: PathParam,
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipBody {
    reason: Option<String>,
}

/// Marks an unresolved record SKIPPED (never published); when it heads an
/// order's sequence the next held event becomes the head. 200 with the
/// outcome; 404 unknown; 409 already resolved or being replayed.
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
