//! The `audit_log` table: its statements and row mapping.

use super::Checked;
use super::ColumnReader;
use super::IndexHint;
use super::PageQuery;
use super::SortKey;
use super::SqlValue;
use super::Statement;
use super::Where;
use crate::ports::AuditAction;
use crate::ports::AuditEntry;
use crate::ports::AuditQuery;
use crate::ports::NewAuditEntry;
use crate::ports::StoreError;

/// The columns [`read_entry`] reads, in its order.
pub const COLUMNS: &str = "id, at, principal, role, action, target, parameters, result";

/// An entry from a row of [`COLUMNS`].
pub fn read_entry(r: &dyn ColumnReader) -> Result<AuditEntry, StoreError> {
    let id = r.int(0)?;
    let c = Checked::new(r, COLUMNS, format!("audit entry {id}"));
    let entry = NewAuditEntry {
        at: r.time(1)?,
        principal: r.text(2)?,
        role: r.text(3)?,
        action: c.parsed(4, AuditAction::parse)?,
        target: r.opt_text(5)?,
        parameters: c.json(6)?,
        result: r.text(7)?,
    };
    Ok(AuditEntry { id, entry })
}

pub fn insert(e: &NewAuditEntry) -> Statement {
    Statement::new(
        "INSERT INTO audit_log (at, principal, role, action, target, parameters, result) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            SqlValue::from(e.at),
            SqlValue::from(&e.principal),
            SqlValue::from(&e.role),
            SqlValue::from(e.action.as_str()),
            SqlValue::from(e.target.as_ref()),
            SqlValue::from(e.parameters.to_string()),
            SqlValue::from(&e.result),
        ],
    )
}

/// The entry [`insert`] stored, given the id the database gave it.
pub fn inserted(entry: NewAuditEntry, id: i64) -> AuditEntry {
    AuditEntry { id, entry }
}

/// Matching entries, newest first (`at` desc, then id desc), by page
/// number or after a cursor, read through the index of the narrowest
/// filter given (each ends with `at`, then the id), as `hint` writes it.
/// The total is an exact `COUNT(*)` of the filter.
pub fn list(q: &AuditQuery, hint: IndexHint) -> PageQuery {
    let f = &q.filter;
    let index = if f.target.is_some() {
        "idx_audit_target"
    } else if f.principal.is_some() {
        "idx_audit_principal"
    } else if f.action.is_some() {
        "idx_audit_action"
    } else {
        "idx_audit_at"
    };
    let filter = Where::default()
        .and("principal = ?", f.principal.as_ref())
        .and("action = ?", f.action.map(|a| a.as_str()))
        .and("target = ?", f.target.as_ref())
        .and("at >= ?", f.from)
        .and("at < ?", f.to);
    let key = SortKey {
        time: "at",
        id: "id",
    };
    PageQuery::in_index(COLUMNS, "audit_log", (index, hint), filter, key, &q.page)
}
