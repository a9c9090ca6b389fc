//! The audit log (`audit_log`) in the write-side database. Rows are only
//! ever inserted. The statements and row mapping are
//! `order_core::ports::sql::audit`; texts are cut to the column widths.

use async_trait::async_trait;
use order_core::ports::sql::audit;
use order_core::ports::{
    AuditEntry, AuditLog, AuditQuery, NewAuditEntry, Page, StoreError, AUDIT_TEXT_MAX,
};

use crate::db::{corrupt, db_err, fetch_page, fit, index_hint, query};
use crate::store::MySqlStore;

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
        let insert = audit::insert(&e);
        self.timed("append an audit entry", async {
            let done = query(&insert)
                .map_err(db_err)?
                .execute(self.pool())
                .await
                .map_err(db_err)?;
            let id = i64::try_from(done.last_insert_id())
                .map_err(|_| corrupt("audit entry id out of range"))?;
            Ok(audit::inserted(e, id))
        })
        .await
    }

    async fn list(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, StoreError> {
        let q = audit::list(query, index_hint);
        self.timed(
            "list audit entries",
            fetch_page(self.pool(), &q, audit::read_entry),
        )
        .await
    }
}
