//! Bulk DLQ replay jobs (`dlq_replay_jobs`) in the write-side database. The
//! statements and row mapping are `order_core::ports::sql::jobs`; texts are
//! cut to the column widths.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::ports::sql::jobs;
use order_core::ports::{
    JobCancel, JobCancelled, JobEnd, JobLease, JobProgress, ListRequest, NewReplayJob, Page,
    ReplayJob, ReplayJobStore, StoreError, AUDIT_TEXT_MAX,
};
use uuid::Uuid;

use crate::db::{corrupt, execute, fetch, fetch_optional, fetch_page, fit};
use crate::store::MySqlStore;

/// Longest runner id the table keeps.
const RUNNER_MAX: usize = 64;

fn runner_id(runner: &str) -> String {
    fit(runner, RUNNER_MAX).into_owned()
}

impl MySqlStore {
    async fn fetch_job(&self, id: Uuid) -> Result<Option<ReplayJob>, StoreError> {
        fetch_optional(self.pool(), &jobs::get(id), jobs::read_job).await
    }
}

#[async_trait]
impl ReplayJobStore for MySqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %job.id))]
    async fn create_job(&self, job: &NewReplayJob) -> Result<ReplayJob, StoreError> {
        let insert = jobs::insert(&NewReplayJob {
            principal: fit(&job.principal, AUDIT_TEXT_MAX).into_owned(),
            role: fit(&job.role, 20).into_owned(),
            ..job.clone()
        })?;
        self.timed("create a replay job", async {
            execute(self.pool(), &insert).await?;
            self.fetch_job(job.id)
                .await?
                .ok_or_else(|| corrupt("a created job vanished"))
        })
        .await
    }

    async fn clock(&self) -> Result<DateTime<Utc>, StoreError> {
        self.db_clock().await
    }

    async fn get_job(&self, id: Uuid) -> Result<Option<ReplayJob>, StoreError> {
        self.timed("read a replay job", self.fetch_job(id)).await
    }

    async fn list_jobs_page(&self, req: ListRequest) -> Result<Page<ReplayJob>, StoreError> {
        let q = jobs::list(&req);
        self.timed(
            "list replay jobs",
            fetch_page(self.pool(), &q, jobs::read_job),
        )
        .await
    }

    async fn leasable_jobs(&self, by: &str, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
        let q = jobs::leasable(&runner_id(by), now);
        self.timed(
            "find leasable replay jobs",
            fetch(self.pool(), &q, jobs::read_id),
        )
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %lease.id))]
    async fn lease_job(&self, lease: JobLease<'_>) -> Result<Option<ReplayJob>, StoreError> {
        let runner = runner_id(lease.runner);
        let q = jobs::lease(&JobLease {
            runner: &runner,
            ..lease
        });
        self.timed("lease a replay job", async {
            execute(self.pool(), &q).await?;
            // A renewal to the same instant changes no row: read back instead
            // of trusting rows_affected.
            Ok(jobs::leased_by(self.fetch_job(lease.id).await?, &runner))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %progress.lease.id))]
    async fn save_job_progress(&self, progress: JobProgress<'_>) -> Result<bool, StoreError> {
        let runner = runner_id(progress.lease.runner);
        let lease = JobLease {
            runner: &runner,
            ..progress.lease
        };
        let save = jobs::progress(&JobProgress { lease, ..progress })?;
        self.timed("save replay job progress", async {
            execute(self.pool(), &save).await?;
            // Unchanged counters change no row: read back, as for a lease.
            Ok(jobs::leased_by(self.fetch_job(lease.id).await?, &runner).is_some())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %end.id, status = end.status.as_str()))]
    async fn finish_job(&self, end: JobEnd<'_>) -> Result<bool, StoreError> {
        let runner = runner_id(end.runner);
        let finish = jobs::finish(&JobEnd {
            runner: &runner,
            ..end
        })?;
        self.timed("finish a replay job", async {
            Ok(execute(self.pool(), &finish).await? == 1)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %cancel.id))]
    async fn cancel_job(&self, cancel: JobCancel<'_>) -> Result<JobCancelled, StoreError> {
        let (id, cancel) = (cancel.id, jobs::cancel(&cancel));
        self.timed("cancel a replay job", async {
            let changed = execute(self.pool(), &cancel).await? == 1;
            Ok(jobs::cancelled(changed, self.fetch_job(id).await?))
        })
        .await
    }
}
