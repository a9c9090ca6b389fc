//! The audit log (`audit_log`) in the write-side database. Rows are only
//! ever inserted; triggers refuse updates and deletes.

use async_trait::async_trait;
use order_core::ports::{
    AuditEntry, AuditFilter, AuditLog, AuditRow, NewAuditEntry, Page, PageRequest, StoreError,
};
use rusqlite::types::Value;
use rusqlite::{params, Connection, Row};

use crate::db::{db_err, parse_ts, to_u64, ts};
use crate::store::SqliteStore;

const COLUMNS: &str = "id, at, principal, role, action, target, parameters, result";

fn decode(row: &Row<'_>) -> Result<AuditEntry, StoreError> {
    let at: String = row.get(1).map_err(db_err)?;
    AuditEntry::try_from(AuditRow {
        id: row.get(0).map_err(db_err)?,
        at: parse_ts(&at)?,
        principal: row.get(2).map_err(db_err)?,
        role: row.get(3).map_err(db_err)?,
        action: row.get(4).map_err(db_err)?,
        target: row.get(5).map_err(db_err)?,
        parameters: row.get(6).map_err(db_err)?,
        result: row.get(7).map_err(db_err)?,
    })
}

fn query(conn: &Connection, sql: &str, args: Vec<Value>) -> Result<Vec<AuditEntry>, StoreError> {
    let mut stmt = conn.prepare(sql).map_err(db_err)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(args))
        .map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// `WHERE …` of a filter and its arguments.
fn conditions(f: &AuditFilter) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    let mut add = |clause: &str, v: String| {
        clauses.push(clause.to_owned());
        args.push(Value::Text(v));
    };
    if let Some(p) = &f.principal {
        add("principal = ?", p.clone());
    }
    if let Some(a) = f.action {
        add("action = ?", a.as_str().to_owned());
    }
    if let Some(t) = &f.target {
        add("target = ?", t.clone());
    }
    if let Some(from) = &f.from {
        add("at >= ?", ts(from));
    }
    if let Some(to) = &f.to {
        add("at < ?", ts(to));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

#[async_trait]
impl AuditLog for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(action = entry.action.as_str()))]
    async fn append(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let e = entry.clone();
        self.db
            .write_async(move |conn| {
                let parameters = e.parameters.to_string();
                conn.prepare_cached(
                    "INSERT INTO audit_log (at, principal, role, action, target, parameters, \
                     result) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        ts(&e.at),
                        e.principal,
                        e.role,
                        e.action.as_str(),
                        e.target,
                        parameters,
                        e.result,
                    ])
                })
                .map_err(db_err)?;
                let id = conn.last_insert_rowid();
                Ok(AuditEntry {
                    id,
                    principal: e.principal,
                    role: e.role,
                    action: e.action,
                    target: e.target,
                    parameters: e.parameters,
                    result: e.result,
                    at: e.at,
                })
            })
            .await
    }

    async fn list(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let (cond, args) = conditions(filter);
        let size = i64::from(page.size.max(1));
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        self.db
            .read_async(move |conn| {
                // One snapshot for the page and its total.
                let tx = conn.unchecked_transaction().map_err(db_err)?;
                let mut page_args = args.clone();
                page_args.push(Value::Integer(size));
                page_args.push(Value::Integer(offset));
                let content = query(
                    &tx,
                    &format!(
                        "SELECT {COLUMNS} FROM audit_log{cond} \
                         ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
                    ),
                    page_args,
                )?;
                let total: i64 = tx
                    .prepare(&format!("SELECT COUNT(*) FROM audit_log{cond}"))
                    .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get(0)))
                    .map_err(db_err)?;
                tx.finish().map_err(db_err)?;
                Ok(Page::new(content, page, to_u64(total)?))
            })
            .await
    }
}
