//! The audit log (`audit_log`) in the write-side database. Rows are only
//! ever inserted. Semantics follow the SQLite adapter.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use order_core::ports::{
    AuditEntry, AuditFilter, AuditLog, AuditRow, NewAuditEntry, Page, PageRequest, StoreError,
    AUDIT_TEXT_MAX,
};
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, Row};

use crate::db::{corrupt, db_err, fit, naive, to_u64, utc};
use crate::store::MySqlStore;

const COLUMNS: &str = "id, at, principal, role, action, target, parameters, result";

fn decode(row: &MySqlRow) -> Result<AuditEntry, StoreError> {
    let at: NaiveDateTime = row.try_get(1).map_err(db_err)?;
    AuditEntry::try_from(AuditRow {
        id: row.try_get(0).map_err(db_err)?,
        at: utc(at),
        principal: row.try_get(2).map_err(db_err)?,
        role: row.try_get(3).map_err(db_err)?,
        action: row.try_get(4).map_err(db_err)?,
        target: row.try_get(5).map_err(db_err)?,
        parameters: row.try_get(6).map_err(db_err)?,
        result: row.try_get(7).map_err(db_err)?,
    })
}

/// One bound value of a filter.
enum Arg {
    Text(String),
    Time(NaiveDateTime),
}

fn conditions(f: &AuditFilter) -> (String, Vec<Arg>) {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    if let Some(p) = &f.principal {
        clauses.push("principal = ?");
        args.push(Arg::Text(p.clone()));
    }
    if let Some(a) = f.action {
        clauses.push("action = ?");
        args.push(Arg::Text(a.as_str().to_owned()));
    }
    if let Some(t) = &f.target {
        clauses.push("target = ?");
        args.push(Arg::Text(t.clone()));
    }
    if let Some(from) = &f.from {
        clauses.push("at >= ?");
        args.push(Arg::Time(naive(from)));
    }
    if let Some(to) = &f.to {
        clauses.push("at < ?");
        args.push(Arg::Time(naive(to)));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Time(t) => q.bind(*t),
            };
        }
        q
    }};
}

#[async_trait]
impl AuditLog for MySqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(action = entry.action.as_str()))]
    async fn append(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let cut = |s: &str| fit(s, AUDIT_TEXT_MAX).into_owned();
        let e = NewAuditEntry {
            principal: cut(&entry.principal),
            role: fit(&entry.role, 20).into_owned(),
            target: entry.target.as_deref().map(cut),
            result: cut(&entry.result),
            ..entry.clone()
        };
        self.timed("append an audit entry", async {
            let done = sqlx::query(
                "INSERT INTO audit_log (at, principal, role, action, target, parameters, result) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(naive(&e.at))
            .bind(&e.principal)
            .bind(&e.role)
            .bind(e.action.as_str())
            .bind(&e.target)
            .bind(e.parameters.to_string())
            .bind(&e.result)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
            let id = i64::try_from(done.last_insert_id())
                .map_err(|_| corrupt("audit entry id out of range"))?;
            Ok(AuditEntry {
                id,
                principal: e.principal.clone(),
                role: e.role.clone(),
                action: e.action,
                target: e.target.clone(),
                parameters: e.parameters.clone(),
                result: e.result.clone(),
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
        self.timed("list audit entries", async {
            let rows = bind_all!(
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM audit_log{cond} \
                     ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
                ))),
                &args
            )
            .bind(size)
            .bind(offset)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
            let total: i64 = bind_all!(
                sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM audit_log{cond}"
                ))),
                &args
            )
            .fetch_one(self.pool())
            .await
            .map_err(db_err)?;
            let content = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
            Ok(Page::new(content, page, to_u64(total)?))
        })
        .await
    }
}
