//! The audit log (`audit_log`) in the write-side database. Rows are only
//! ever inserted; triggers refuse updates and deletes. The statements and
//! row mapping are `order_core::ports::sql::audit`.

use async_trait::async_trait;
use order_core::ports::sql::audit;
use order_core::ports::{AuditEntry, AuditLog, AuditQuery, NewAuditEntry, Page, StoreError};

use crate::db::{execute, fetch_page, index_hint};
use crate::store::SqliteStore;

#[async_trait]
impl AuditLog for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(action = entry.action.as_str()))]
    async fn append(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let e = entry.clone();
        self.db
            .write_async(move |conn| {
                execute(conn, &audit::insert(&e))?;
                Ok(audit::inserted(e, conn.last_insert_rowid()))
            })
            .await
    }

    async fn list(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, StoreError> {
        let q = audit::list(query, index_hint);
        self.db
            .read_async(move |conn| fetch_page(conn, &q, audit::read_entry))
            .await
    }
}
