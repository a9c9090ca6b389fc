//! Revisions of DLQ records (`dlq_revisions`) in the write-side database.
//! The statements and row mapping are `order_core::ports::sql::dlq_revisions`;
//! texts are cut to the column widths.

use async_trait::async_trait;
use order_core::ports::sql::dlq_revisions as sql;
use order_core::ports::{DlqRevisionStore, NewRevision, Review, Revision, StoreError};

use crate::db::{db_err, execute, fetch, fetch_optional, fit, is_duplicate, query};
use crate::store::MySqlStore;

/// Width of the VARCHAR columns (event id, author, reviewer).
const NAME_WIDTH: usize = 255;

#[async_trait]
impl DlqRevisionStore for MySqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(event_id = rev.event_id, revision = rev.revision))]
    async fn add_revision(&self, rev: &NewRevision) -> Result<Option<Revision>, StoreError> {
        let rev = NewRevision {
            author: fit(&rev.author, NAME_WIDTH).into_owned(),
            ..rev.clone()
        };
        let insert = sql::insert(&rev);
        self.timed("add a DLQ revision", async {
            match query(&insert).map_err(db_err)?.execute(self.pool()).await {
                Ok(_) => Ok(Some(sql::inserted(&rev))),
                // Another editor took this number first.
                Err(e) if is_duplicate(&e) => Ok(None),
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn revisions(&self, event_id: &str) -> Result<Vec<Revision>, StoreError> {
        let q = sql::list(event_id);
        self.timed(
            "list DLQ revisions",
            fetch(self.pool(), &q, sql::read_revision),
        )
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(event_id = review.event_id, revision = review.revision))]
    async fn review(&self, review: &Review<'_>) -> Result<Option<Revision>, StoreError> {
        let reviewer = fit(review.reviewer, NAME_WIDTH);
        let update = sql::review(&Review {
            reviewer: &reviewer,
            ..review.clone()
        });
        let get = sql::get(review.event_id, review.revision);
        self.timed("review a DLQ revision", async {
            if execute(self.pool(), &update).await? != 1 {
                return Ok(None);
            }
            fetch_optional(self.pool(), &get, sql::read_revision).await
        })
        .await
    }
}
