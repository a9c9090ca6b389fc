//! Edit before replay (`/api/dlq/{eventId}/revisions`), four-eyes review
//! and replay previews: see `order_core::app::dlq::revisions` and
//! `preview` for the rules.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use order_core::app::dlq::preview::{ReplayPreview, PREVIEW_BULK_MAX};
use order_core::app::dlq::{Decision, Edit, ReviseRequest, REVISION_REASON_MAX};
use order_core::app::{DlqService, Principal, Role};
use order_core::ports::{DlqRecord, Revision};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{principal as principal_of, OptionalJsonBody, PathParam};

/// A record with its revision history, as `GET /api/dlq/event/{eventId}`
/// answers.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordWithRevisions {
    #[serde(flatten)]
    pub record: DlqRecord,
    /// Whether a second admin must approve each revision.
    pub approval_required: bool,
    /// Its revisions, lowest number first (without payload below operator).
    pub revisions: Vec<Revision>,
}

/// `GET /api/dlq/{eventId}/revisions`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionHistory {
    pub event_id: String,
    /// Whether a second admin must approve each revision.
    pub approval_required: bool,
    /// The revision a replay sends (the latest not rejected); null: the
    /// original message.
    #[schema(required = true)]
    pub current: Option<u32>,
    pub revisions: Vec<Revision>,
}

/// Body of `POST /api/dlq/{eventId}/revisions`: a `patch` or a whole
/// `message`, and a reason.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = RevisionRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevisionBody {
    /// Why the message is edited (kept with the revision and audited).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 500, pattern = r"\S")]
    reason: Option<String>,
    /// RFC 6902 operations applied to the current revision (or the
    /// original). Exactly one of patch and message.
    #[schema(value_type = Option<Vec<Object>>)]
    patch: Option<serde_json::Value>,
    /// The whole message. Exactly one of patch and message.
    #[schema(value_type = Option<Object>)]
    message: Option<serde_json::Value>,
    /// The revision the edit was made from (0: the original); when given
    /// and another revision was written since, 409.
    #[schema(minimum = 0, maximum = 1_000_000)]
    based_on: Option<u32>,
}

/// Body of approve and reject: an optional note.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = ReviewRequest)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    /// Kept with the review and audited.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    note: Option<String>,
}

fn event_id(id: String) -> Result<String, ApiError> {
    super::dlq::event_id(PathParam(id))
}

/// Revisions for `principal`: without the payload below operator (it is
/// the message, customer data included); the diff stays visible.
pub(super) fn revisions_for(
    principal: &Option<Extension<Principal>>,
    revisions: Vec<Revision>,
) -> Result<serde_json::Value, ApiError> {
    let mut value = serde_json::to_value(revisions).map_err(ApiError::internal)?;
    if !sees_payload(principal) {
        if let Some(list) = value.as_array_mut() {
            for r in list.iter_mut().filter_map(|r| r.as_object_mut()) {
                r.remove("payload");
            }
        }
    }
    Ok(value)
}

pub(super) fn sees_payload(principal: &Option<Extension<Principal>>) -> bool {
    principal
        .as_ref()
        .is_some_and(|Extension(p)| p.has(Role::Operator))
}

fn json_object(bytes: &[u8], what: &str) -> Result<(), ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(format!(
            "invalid {what}: the body must be a JSON object"
        )));
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/api/dlq/{eventId}/revisions",
    operation_id = "dlqRevisions",
    tag = "dlq",
    summary = "The revision history of a DLQ record",
    description = "Every revision of the record's message, lowest number first, with its author, time, reason, diff (RFC 6902 from the revision it was based on) and review. Below operator, revisions come without payload (the diff is shown).",
    params(
        ("eventId" = String, Path, min_length = 1, description = "Event id of a DLQ record."),
    ),
    responses(
        (status = 200, description = "The history.", body = RevisionHistory),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
    extensions(("x-required-role" = json!("viewer"))),
)]
pub async fn history(
    axum::extract::State(dlq): axum::extract::State<Arc<DlqService>>,
    principal: Option<Extension<Principal>>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = event_id(id)?;
    let revisions = dlq.revisions(&id).await?;
    let current = revisions
        .iter()
        .rev()
        .find(|r| r.state != order_core::ports::RevisionState::Rejected)
        .map(|r| r.revision);
    let body = serde_json::json!({
        "eventId": id,
        "approvalRequired": dlq.edit_approval(),
        "current": current,
        "revisions": revisions_for(&principal, revisions)?,
    });
    Ok(Json(body).into_response())
}

#[utoipa::path(
    post,
    path = "/api/dlq/{eventId}/revisions",
    operation_id = "dlqRevise",
    tag = "dlq",
    summary = "Edit a consumer-side record's message before replaying it",
    description = "Stores a new revision made from the current one (the latest not rejected, or the original) by an RFC 6902 JSON Patch or a whole replacement message, with a required reason. The original is never changed; a replay sends the current revision with the headers orders_revision, orders_original_event_id, orders_edited_by (and orders_approved_by). The result must decode as its event type's schema and pass the domain's checks, and may not change eventId, aggregateId, eventType or version (422 with one error per field). Publish-side records (events of this service's own event store, which is the truth) cannot be edited (409). With ORDER_DLQ_EDIT_APPROVAL=true the revision is AWAITING_APPROVAL until a second admin approves it. Audited as DLQ_REVISION_CREATE with the diff.",
    request_body(content = RevisionBody, content_type = "application/json"),
    params(
        ("eventId" = String, Path, min_length = 1, description = "Event id of a DLQ record."),
    ),
    responses(
        (status = 201, description = "The revision.", body = Revision,
            headers(("Location" = String, description = "The record's revisions: /api/dlq/{eventId}/revisions."))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "A publish-side or resolved record, or another revision was written since basedOn.", body = super::error::Body, content_type = "application/problem+json"),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, description = "The patch does not apply, or the result is not a valid event of its type, or it changes the event's identity.", body = super::error::Body, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn revise(
    axum::extract::State(dlq): axum::extract::State<Arc<DlqService>>,
    who: Option<Extension<Principal>>,
    PathParam(id): PathParam,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let bad = |m: &str| ApiError::bad_request(format!("invalid revision: {m}"));
    let Some(bytes) = body else {
        return Err(bad(
            "a JSON body with a reason and a patch or a message is required",
        ));
    };
    json_object(&bytes, "revision")?;
    let body: RevisionBody = serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))?;
    let reason = body.reason.unwrap_or_default();
    if reason.trim().is_empty() || reason.trim().chars().count() > REVISION_REASON_MAX {
        return Err(bad(&format!(
            "reason is required: 1 to {REVISION_REASON_MAX} characters"
        )));
    }
    let edit = match (body.patch, body.message) {
        (Some(p), None) if p.is_array() => Edit::Patch(p),
        (Some(_), None) => return Err(bad("patch must be an array of RFC 6902 operations")),
        (None, Some(m)) => Edit::Replace(m),
        _ => return Err(bad("give exactly one of patch and message")),
    };
    let id = event_id(id)?;
    let who = principal_of(who);
    let req = ReviseRequest {
        edit,
        reason,
        based_on: body.based_on,
    };
    let rev = dlq.revise(&who, &id, &req).await?;
    let location = format!("/api/dlq/{}/revisions", urlencoding(&id));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(rev),
    )
        .into_response())
}

/// `id` for a path segment: what is not unreserved is percent-encoded.
fn urlencoding(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The two path parameters of a review; unreadable ones (not UTF-8) are 400.
type ReviewPath = Result<Path<(String, String)>, PathRejection>;

async fn review(
    dlq: &DlqService,
    who: Option<Extension<Principal>>,
    path: ReviewPath,
    body: Option<axum::body::Bytes>,
    decision: Decision,
) -> Result<Response, ApiError> {
    let Path((id, revision)) =
        path.map_err(|_| ApiError::bad_request("the path parameters are malformed"))?;
    let body: ReviewBody = match body {
        None => ReviewBody::default(),
        Some(bytes) => {
            json_object(&bytes, "review")?;
            serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::bad_request(format!("invalid review: {e}")))?
        }
    };
    let id = event_id(id)?;
    let revision = match revision.parse::<u32>() {
        Ok(n) if n >= 1 && revision.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => {
            return Err(ApiError::not_found(format!(
                "event {id} has no revision {}",
                revision.chars().take(20).collect::<String>()
            )))
        }
    };
    let who = principal_of(who);
    let rev = dlq
        .review(&who, &id, revision, decision, body.note.as_deref())
        .await?;
    Ok(Json(rev).into_response())
}

#[utoipa::path(
    post,
    path = "/api/dlq/{eventId}/revisions/{revision}/approve",
    operation_id = "dlqApproveRevision",
    tag = "dlq",
    summary = "Approve a revision (four eyes: a second admin, never its author)",
    description = "The current revision (the latest not rejected) becomes APPROVED, and a replay may send it. Its author may not approve it (403). Audited as DLQ_REVISION_APPROVE.",
    request_body(content = Option<ReviewBody>, content_type = "application/json"),
    params(
        ("eventId" = String, Path, min_length = 1, description = "Event id of a DLQ record."),
        ("revision" = u32, Path, minimum = 1, description = "The revision's number."),
    ),
    responses(
        (status = 200, description = "The revision, APPROVED.", body = Revision),
        (status = 400, response = super::openapi::BadRequest),
        (status = 403, description = "The principal wrote the revision.", body = super::error::Body, content_type = "application/problem+json"),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "Already reviewed, or superseded by a later revision.", body = super::error::Body, content_type = "application/problem+json"),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn approve(
    axum::extract::State(dlq): axum::extract::State<Arc<DlqService>>,
    who: Option<Extension<Principal>>,
    path: ReviewPath,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    review(&dlq, who, path, body, Decision::Approve).await
}

#[utoipa::path(
    post,
    path = "/api/dlq/{eventId}/revisions/{revision}/reject",
    operation_id = "dlqRejectRevision",
    tag = "dlq",
    summary = "Reject a revision (a second admin, never its author)",
    description = "The revision becomes REJECTED and is never sent; the revision before it (or the original) is current again. Audited as DLQ_REVISION_REJECT.",
    request_body(content = Option<ReviewBody>, content_type = "application/json"),
    params(
        ("eventId" = String, Path, min_length = 1, description = "Event id of a DLQ record."),
        ("revision" = u32, Path, minimum = 1, description = "The revision's number."),
    ),
    responses(
        (status = 200, description = "The revision, REJECTED.", body = Revision),
        (status = 400, response = super::openapi::BadRequest),
        (status = 403, description = "The principal wrote the revision.", body = super::error::Body, content_type = "application/problem+json"),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "Already reviewed, or superseded by a later revision.", body = super::error::Body, content_type = "application/problem+json"),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn reject(
    axum::extract::State(dlq): axum::extract::State<Arc<DlqService>>,
    who: Option<Extension<Principal>>,
    path: ReviewPath,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    review(&dlq, who, path, body, Decision::Reject).await
}

/// The previews of a bulk filter.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkPreview {
    /// One preview per matching sequence head (at most 100), oldest
    /// failure first.
    pub previews: Vec<ReplayPreview>,
}

/// The largest bulk preview.
pub const BULK_PREVIEW_MAX: usize = PREVIEW_BULK_MAX;
