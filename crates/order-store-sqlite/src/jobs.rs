//! Bulk DLQ replay jobs (`dlq_replay_jobs`) in the write-side database. The
//! statements and row mapping are `order_core::ports::sql::jobs`; a change
//! happened when its UPDATE changed a row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::ports::sql::jobs;
use order_core::ports::{
    JobCancel, JobCancelled, JobEnd, JobLease, JobProgress, ListRequest, NewReplayJob, Page,
    ReplayJob, ReplayJobStore, StoreError,
};
use rusqlite::Connection;
use uuid::Uuid;

use crate::db::{corrupt, execute, fetch, fetch_optional, fetch_page};
use crate::store::SqliteStore;

fn get(conn: &Connection, id: Uuid) -> Result<Option<ReplayJob>, StoreError> {
    fetch_optional(conn, &jobs::get(id), jobs::read_job)
}

#[async_trait]
impl ReplayJobStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %job.id))]
    async fn create_job(&self, job: &NewReplayJob) -> Result<ReplayJob, StoreError> {
        let (id, insert) = (job.id, jobs::insert(job)?);
        self.db
            .write_async(move |conn| {
                execute(conn, &insert)?;
                get(conn, id)?.ok_or_else(|| corrupt("a created job vanished"))
            })
            .await
    }

    /// SQLite runs in this process: its clock is this process's.
    async fn clock(&self) -> Result<DateTime<Utc>, StoreError> {
        Ok(order_core::domain::now())
    }

    async fn get_job(&self, id: Uuid) -> Result<Option<ReplayJob>, StoreError> {
        self.db.read_async(move |conn| get(conn, id)).await
    }

    async fn list_jobs_page(&self, req: ListRequest) -> Result<Page<ReplayJob>, StoreError> {
        let q = jobs::list(&req);
        self.db
            .read_async(move |conn| fetch_page(conn, &q, jobs::read_job))
            .await
    }

    async fn leasable_jobs(&self, by: &str, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
        let q = jobs::leasable(by, now);
        self.db
            .read_async(move |conn| fetch(conn, &q, jobs::read_id))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %lease.id))]
    async fn lease_job(&self, lease: JobLease<'_>) -> Result<Option<ReplayJob>, StoreError> {
        let (id, lease) = (lease.id, jobs::lease(&lease));
        self.db
            .write_async(move |conn| match execute(conn, &lease)? {
                0 => Ok(None),
                _ => get(conn, id),
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %progress.lease.id))]
    async fn save_job_progress(&self, progress: JobProgress<'_>) -> Result<bool, StoreError> {
        let save = jobs::progress(&progress)?;
        self.db
            .write_async(move |conn| Ok(execute(conn, &save)? == 1))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %end.id, status = end.status.as_str()))]
    async fn finish_job(&self, end: JobEnd<'_>) -> Result<bool, StoreError> {
        let finish = jobs::finish(&end)?;
        self.db
            .write_async(move |conn| Ok(execute(conn, &finish)? == 1))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %cancel.id))]
    async fn cancel_job(&self, cancel: JobCancel<'_>) -> Result<JobCancelled, StoreError> {
        let (id, cancel) = (cancel.id, jobs::cancel(&cancel));
        self.db
            .write_async(move |conn| {
                let changed = execute(conn, &cancel)? == 1;
                Ok(jobs::cancelled(changed, get(conn, id)?))
            })
            .await
    }
}
