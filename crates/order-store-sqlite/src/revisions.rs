//! Revisions of DLQ records (`dlq_revisions`) in the write-side database.
//! The statements and row mapping are `order_core::ports::sql::dlq_revisions`.

use async_trait::async_trait;
use order_core::ports::sql::dlq_revisions as sql;
use order_core::ports::{DlqRevisionStore, NewRevision, Review, Revision, StoreError};

use crate::db::{execute, fetch, fetch_optional};
use crate::store::SqliteStore;

#[async_trait]
impl DlqRevisionStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(event_id = rev.event_id, revision = rev.revision))]
    async fn add_revision(&self, rev: &NewRevision) -> Result<Option<Revision>, StoreError> {
        let rev = rev.clone();
        self.db
            .write_async(move |conn| {
                let insert = sql::insert(&rev).then(" ON CONFLICT (event_id, revision) DO NOTHING");
                Ok((execute(conn, &insert)? == 1).then(|| sql::inserted(&rev)))
            })
            .await
    }

    async fn revisions(&self, event_id: &str) -> Result<Vec<Revision>, StoreError> {
        let q = sql::list(event_id);
        self.db
            .read_async(move |conn| fetch(conn, &q, sql::read_revision))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(event_id = review.event_id, revision = review.revision))]
    async fn review(&self, review: &Review<'_>) -> Result<Option<Revision>, StoreError> {
        let update = sql::review(review);
        let get = sql::get(review.event_id, review.revision);
        self.db
            .write_async(move |conn| {
                if execute(conn, &update)? != 1 {
                    return Ok(None);
                }
                fetch_optional(conn, &get, sql::read_revision)
            })
            .await
    }
}
