//! The audit trail of operator actions: every DLQ replay (single and bulk,
//! dry runs included), reset and skip, every test switch and publish and
//! every read-model rebuild is appended to the [`AuditLog`] with who asked,
//! the parameters and the result, refusals (404, 409, 503…) included.
//!
//! The entry is written after the action, so it records what happened. A
//! failure to write it does not undo or fail the action (it already took
//! effect); it is logged at error level instead.

use std::sync::Arc;

use serde_json::Value;

use super::error::AppError;
use super::principal::Principal;
use crate::domain::now;
use crate::ports::{
    AuditAction, AuditEntry, AuditLog, AuditQuery, NewAuditEntry, Page, AUDIT_TEXT_MAX,
};

/// Appends audit entries and reads them back. Cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    log: Arc<dyn AuditLog>,
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(AUDIT_TEXT_MAX) {
        Some((end, _)) => s[..end].to_owned(),
        None => s.to_owned(),
    }
}

impl Auditor {
    pub fn new(log: Arc<dyn AuditLog>) -> Self {
        Self { log }
    }

    /// Appends one entry, stamped now.
    pub async fn record(
        &self,
        who: &Principal,
        action: AuditAction,
        target: Option<&str>,
        parameters: Value,
        result: &str,
    ) {
        let entry = NewAuditEntry {
            principal: cut(&who.name),
            role: who.role.as_str().to_owned(),
            action,
            target: target.map(cut),
            parameters,
            result: cut(result),
            at: now(),
        };
        if let Err(e) = self.log.append(&entry).await {
            tracing::error!(
                action = action.as_str(),
                principal = %who.name,
                target,
                result,
                error = %e,
                "could not write an audit entry"
            );
        }
    }

    /// Appends the entry for an action that answered `outcome`: `ok` names
    /// a success, an error is recorded by its HTTP status.
    pub async fn record_outcome<T>(
        &self,
        who: &Principal,
        action: AuditAction,
        target: Option<&str>,
        parameters: Value,
        outcome: &Result<T, AppError>,
        ok: impl FnOnce(&T) -> String,
    ) {
        let result = match outcome {
            Ok(v) => ok(v),
            Err(e) => error_result(e).to_owned(),
        };
        self.record(who, action, target, parameters, &result).await;
    }

    /// Matching entries, newest first.
    pub async fn list(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, AppError> {
        Ok(self.log.list(query).await?)
    }
}

/// The HTTP status an error answers with, as the audit result.
pub fn error_result(e: &AppError) -> &'static str {
    match e {
        AppError::NotFound(_) => "404",
        AppError::Conflict(_) | AppError::VersionConflict => "409",
        AppError::BadRequest(_) => "400",
        AppError::Forbidden(_) => "403",
        AppError::PreconditionFailed { .. } => "412",
        AppError::Domain(crate::domain::DomainError::Validation(_))
        | AppError::IdempotencyMismatch => "422",
        AppError::Domain(_) => "409",
        AppError::Unavailable(_) => "503",
        AppError::Internal(_) => "500",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cut_at_characters_and_actions_parse() {
        let long = "é".repeat(AUDIT_TEXT_MAX + 10);
        assert_eq!(cut(&long).chars().count(), AUDIT_TEXT_MAX);
        assert_eq!(cut("short"), "short");
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(&a.as_str().to_lowercase()), Some(a));
        }
        assert_eq!(AuditAction::parse("DELETE"), None);
        assert_eq!(error_result(&AppError::Conflict("x".into())), "409");
        assert_eq!(error_result(&AppError::NotFound("x".into())), "404");
    }
}
