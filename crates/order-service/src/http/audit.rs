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

fn text(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        Some(v) if v.chars().count() > AUDIT_TEXT_MAX => Err(ApiError::bad_request(format!(
            "query parameter {name} must be at most {AUDIT_TEXT_MAX} characters"
        ))),
        v => Ok(v.map(str::to_owned)),
    }
}

fn instant(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(name)
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
pub async fn list(
    State(audit): State<Auditor>,
    params: Params,
) -> Result<Json<CursorPage<AuditEntry>>, ApiError> {
    let action = match params.get("action") {
        None => None,
        Some(a) => Some(AuditAction::parse(a).ok_or_else(|| {
            let valid: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
            ApiError::bad_request(format!(
                "unknown audit action {:?}; valid actions are {}",
                a.chars().take(60).collect::<String>(),
                valid.join(", ")
            ))
        })?),
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
