//! `GET /api/dlq/audit`: the audit trail of DLQ, test and admin actions,
//! newest first. Read-only: no endpoint changes or removes an entry.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use order_core::app::Auditor;
use order_core::ports::{AuditAction, AuditEntry, AuditFilter, AuditQuery, AUDIT_TEXT_MAX};

use super::cursor::{CursorPage, Listing};
use super::error::ApiError;
use super::extract::Params;

pub(super) fn text(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        Some(v) if v.chars().count() > AUDIT_TEXT_MAX => Err(ApiError::bad_request(format!(
            "query parameter {name} must be at most {AUDIT_TEXT_MAX} characters"
        ))),
        v => Ok(v.map(str::to_owned)),
    }
}

/// An instant filter: present means an RFC 3339 date-time (an empty value
/// is not one, as for `asOf`).
pub(super) fn instant(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .raw(name)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "query parameter {name} must be an RFC 3339 date-time such as \
                         2024-05-01T10:00:00Z, got {:?}",
                        v.chars().take(60).collect::<String>()
                    ))
                })
        })
        .transpose()
}

/// `principal`, `action`, `target` (exact), `from` (inclusive) and `to`
/// (exclusive) narrow; `page`/`size` as every list, or `after` a cursor.
#[utoipa::path(
    get,
    path = "/api/dlq/audit",
    operation_id = "dlqAudit",
    tag = "dlq",
    summary = "The audit log of DLQ, test and admin actions, newest first",
    description = "One entry per replay (single, and one per head of a bulk replay with parameters.bulk), bulk replay (dry runs included), reset, skip, test publish, bus switch and read-model rebuild, refused attempts (404, 409, 503...) included: who (principal and role), what (action, target event id, parameters), the result and when. Entries are only ever appended; no endpoint changes or deletes them.",
    params(
        ("principal" = Option<String>, Query, max_length = 255, description = "Exact principal name."),
        ("action" = Option<String>, Query,
            pattern = r"^([Dd][Ll][Qq]_[Rr][Ee][Pp][Ll][Aa][Yy]|[Dd][Ll][Qq]_[Bb][Uu][Ll][Kk]_[Rr][Ee][Pp][Ll][Aa][Yy]|[Dd][Ll][Qq]_[Rr][Ee][Ss][Ee][Tt]|[Dd][Ll][Qq]_[Ss][Kk][Ii][Pp]|[Tt][Ee][Ss][Tt]_[Pp][Uu][Bb][Ll][Ii][Ss][Hh]_[Ee][Vv][Ee][Nn][Tt]|[Tt][Ee][Ss][Tt]_[Bb][Uu][Ss]_[Dd][Oo][Ww][Nn]|[Tt][Ee][Ss][Tt]_[Bb][Uu][Ss]_[Uu][Pp]|[Rr][Ee][Aa][Dd]_[Mm][Oo][Dd][Ee][Ll]_[Rr][Ee][Bb][Uu][Ii][Ll][Dd]|[Dd][Ll][Qq]_[Rr][Ee][Pp][Ll][Aa][Yy]_[Jj][Oo][Bb]_[Cc][Rr][Ee][Aa][Tt][Ee]|[Dd][Ll][Qq]_[Rr][Ee][Pp][Ll][Aa][Yy]_[Jj][Oo][Bb]_[Cc][Aa][Nn][Cc][Ee][Ll]|[Dd][Ll][Qq]_[Rr][Ee][Vv][Ii][Ss][Ii][Oo][Nn]_[Cc][Rr][Ee][Aa][Tt][Ee]|[Dd][Ll][Qq]_[Rr][Ee][Vv][Ii][Ss][Ii][Oo][Nn]_[Aa][Pp][Pp][Rr][Oo][Vv][Ee]|[Dd][Ll][Qq]_[Rr][Ee][Vv][Ii][Ss][Ii][Oo][Nn]_[Rr][Ee][Jj][Ee][Cc][Tt]|[Dd][Ll][Qq]_[Ee][Xx][Pp][Oo][Rr][Tt]|[Dd][Ll][Qq]_[Ii][Mm][Pp][Oo][Rr][Tt])?$",
            description = "An audit action (DLQ_REPLAY, DLQ_BULK_REPLAY, DLQ_RESET, DLQ_SKIP, TEST_PUBLISH_EVENT, TEST_BUS_DOWN, TEST_BUS_UP, READ_MODEL_REBUILD, DLQ_REPLAY_JOB_CREATE, DLQ_REPLAY_JOB_CANCEL, DLQ_REVISION_CREATE, DLQ_REVISION_APPROVE, DLQ_REVISION_REJECT, DLQ_EXPORT, DLQ_IMPORT), case-insensitive; empty means no filter; an unknown one is 400 naming the valid ones."),
        ("target" = Option<String>, Query, max_length = 255, description = "Exact event id."),
        ("from" = Option<String>, Query, format = DateTime, description = "Entries at or after this instant (RFC 3339)."),
        ("to" = Option<String>, Query, format = DateTime, description = "Entries strictly before this instant (RFC 3339); not before from."),
        super::openapi::CursorQuery,
    ),
    responses(
        (status = 200, description = "A page of entries.", body = CursorPage<AuditEntry>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn list(
    State(audit): State<Auditor>,
    params: Params,
) -> Result<Json<CursorPage<AuditEntry>>, ApiError> {
    let action = match params.get("action") {
        None => None,
        Some(a) => Some(
            AuditAction::parse(a)
                .filter(|_| a == a.trim())
                .ok_or_else(|| {
                    let valid: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                    ApiError::bad_request(format!(
                        "unknown audit action {:?}; valid actions are {}",
                        a.chars().take(60).collect::<String>(),
                        valid.join(", ")
                    ))
                })?,
        ),
    };
    let filter = AuditFilter {
        principal: text(&params, "principal")?,
        action,
        target: text(&params, "target")?,
        from: instant(&params, "from")?,
        to: instant(&params, "to")?,
    };
    if let (Some(from), Some(to)) = (filter.from, filter.to) {
        if from > to {
            return Err(ApiError::bad_request("from must not be after to"));
        }
    }
    let page = params.list_request(Listing::Audit)?;
    let entries = audit.list(&AuditQuery { filter, page }).await?;
    Ok(Json(CursorPage::new(Listing::Audit, entries)))
}
