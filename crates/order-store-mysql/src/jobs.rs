//! Bulk DLQ replay jobs (`dlq_replay_jobs`) in the write-side database.
//! Semantics follow the SQLite adapter: every conditional change is one
//! UPDATE with its condition in the WHERE clause.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use order_core::ports::{
    JobCancelled, JobCounters, JobRow, JobStatus, NewReplayJob, Page, PageRequest, ReplayJob,
    ReplayJobStore, StoreError, AUDIT_TEXT_MAX, JOB_COLUMNS,
};
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use crate::db::{corrupt, db_err, fit, naive, to_i64, to_u64, utc};
use crate::store::MySqlStore;

/// Longest runner id the table keeps.
const RUNNER_MAX: usize = 64;

fn decode(row: &MySqlRow) -> Result<ReplayJob, StoreError> {
    let count = |i: usize| -> Result<i64, StoreError> { row.try_get(i).map_err(db_err) };
    let time = |i: usize| -> Result<DateTime<Utc>, StoreError> {
        Ok(utc(row.try_get::<NaiveDateTime, _>(i).map_err(db_err)?))
    };
    let opt_time = |i: usize| -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(row
            .try_get::<Option<NaiveDateTime>, _>(i)
            .map_err(db_err)?
            .map(utc))
    };
    ReplayJob::try_from(JobRow {
        id: row.try_get(0).map_err(db_err)?,
        principal: row.try_get(1).map_err(db_err)?,
        role: row.try_get(2).map_err(db_err)?,
        filter: row.try_get(3).map_err(db_err)?,
        status: row.try_get(4).map_err(db_err)?,
        counts: [
            count(5)?,
            count(6)?,
            count(7)?,
            count(8)?,
            count(9)?,
            count(10)?,
        ],
        message: row.try_get(11).map_err(db_err)?,
        created_at: time(12)?,
        updated_at: time(13)?,
        finished_at: opt_time(14)?,
        runner: row.try_get(15).map_err(db_err)?,
        lease_until: opt_time(16)?,
    })
}

fn runner_id(runner: &str) -> String {
    fit(runner, RUNNER_MAX).into_owned()
}

impl MySqlStore {
    async fn fetch_job(&self, id: Uuid) -> Result<Option<ReplayJob>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM dlq_replay_jobs WHERE id = ?"
        )))
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?;
        row.as_ref().map(decode).transpose()
    }
}

#[async_trait]
impl ReplayJobStore for MySqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %job.id))]
    async fn create_job(&self, job: &NewReplayJob) -> Result<ReplayJob, StoreError> {
        self.timed("create a replay job", async {
            sqlx::query(
                "INSERT INTO dlq_replay_jobs (id, principal, role, filter, status, matched, \
                 created_at, updated_at) VALUES (?, ?, ?, ?, 'RUNNING', ?, ?, ?)",
            )
            .bind(job.id.to_string())
            .bind(fit(&job.principal, AUDIT_TEXT_MAX).into_owned())
            .bind(fit(&job.role, 20).into_owned())
            .bind(job.filter.to_string())
            .bind(to_i64(job.matched)?)
            .bind(naive(&job.created_at))
            .bind(naive(&job.created_at))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
            self.fetch_job(job.id)
                .await?
                .ok_or_else(|| corrupt("a created job vanished"))
        })
        .await
    }

    async fn get_job(&self, id: Uuid) -> Result<Option<ReplayJob>, StoreError> {
        self.timed("read a replay job", self.fetch_job(id)).await
    }

    async fn list_jobs(&self, page: PageRequest) -> Result<Page<ReplayJob>, StoreError> {
        let size = i64::from(page.size.max(1));
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        self.timed("list replay jobs", async {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {JOB_COLUMNS} FROM dlq_replay_jobs \
                 ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
            )))
            .bind(size)
            .bind(offset)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dlq_replay_jobs")
                .fetch_one(self.pool())
                .await
                .map_err(db_err)?;
            let content = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
            Ok(Page::new(content, page, to_u64(total)?))
        })
        .await
    }

    async fn leasable_jobs(
        &self,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.timed("find leasable replay jobs", async {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM dlq_replay_jobs WHERE status = 'RUNNING' \
                 AND (runner IS NULL OR runner = ? OR lease_until IS NULL \
                      OR lease_until <= ?) \
                 ORDER BY created_at, id",
            )
            .bind(runner_id(runner))
            .bind(naive(&now))
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
            ids.iter()
                .map(|id| Uuid::parse_str(id).map_err(|e| corrupt(format!("job id {id:?}: {e}"))))
                .collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %id))]
    async fn lease_job(
        &self,
        id: Uuid,
        runner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<ReplayJob>, StoreError> {
        let runner = runner_id(runner);
        self.timed("lease a replay job", async {
            sqlx::query(
                "UPDATE dlq_replay_jobs SET runner = ?, lease_until = ? \
                 WHERE id = ? AND status = 'RUNNING' \
                 AND (runner IS NULL OR runner = ? OR lease_until IS NULL \
                      OR lease_until <= ?)",
            )
            .bind(&runner)
            .bind(naive(&until))
            .bind(id.to_string())
            .bind(&runner)
            .bind(naive(&now))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
            // A renewal to the same instant changes no row: read back instead
            // of trusting rows_affected.
            Ok(self
                .fetch_job(id)
                .await?
                .filter(|j| j.status == JobStatus::Running && j.runner.as_deref() == Some(&runner)))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %id))]
    async fn save_job_progress(
        &self,
        id: Uuid,
        runner: &str,
        counters: &JobCounters,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let runner = runner_id(runner);
        self.timed("save replay job progress", async {
            sqlx::query(
                "UPDATE dlq_replay_jobs SET processed = ?, replayed = ?, failed = ?, \
                 skipped = ?, published = ?, updated_at = ?, lease_until = ? \
                 WHERE id = ? AND runner = ? AND status = 'RUNNING'",
            )
            .bind(to_i64(counters.processed)?)
            .bind(to_i64(counters.replayed)?)
            .bind(to_i64(counters.failed)?)
            .bind(to_i64(counters.skipped)?)
            .bind(to_i64(counters.published)?)
            .bind(naive(&now))
            .bind(naive(&until))
            .bind(id.to_string())
            .bind(&runner)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
            Ok(self.fetch_job(id).await?.is_some_and(|j| {
                j.status == JobStatus::Running && j.runner.as_deref() == Some(&runner)
            }))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %id, status = status.as_str()))]
    async fn finish_job(
        &self,
        id: Uuid,
        runner: &str,
        status: JobStatus,
        counters: &JobCounters,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let runner = runner_id(runner);
        self.timed("finish a replay job", async {
            let done = sqlx::query(
                "UPDATE dlq_replay_jobs SET status = ?, processed = ?, replayed = ?, \
                 failed = ?, skipped = ?, published = ?, message = ?, updated_at = ?, \
                 finished_at = ?, runner = NULL, lease_until = NULL \
                 WHERE id = ? AND runner = ? AND status = 'RUNNING'",
            )
            .bind(status.as_str())
            .bind(to_i64(counters.processed)?)
            .bind(to_i64(counters.replayed)?)
            .bind(to_i64(counters.failed)?)
            .bind(to_i64(counters.skipped)?)
            .bind(to_i64(counters.published)?)
            .bind(message)
            .bind(naive(&now))
            .bind(naive(&now))
            .bind(id.to_string())
            .bind(&runner)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
            // The status always changes from RUNNING, so a match is a change.
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %id))]
    async fn cancel_job(
        &self,
        id: Uuid,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<JobCancelled, StoreError> {
        self.timed("cancel a replay job", async {
            let done = sqlx::query(
                "UPDATE dlq_replay_jobs SET status = 'CANCELLED', message = ?, updated_at = ?, \
                 finished_at = ?, runner = NULL, lease_until = NULL \
                 WHERE id = ? AND status = 'RUNNING'",
            )
            .bind(message)
            .bind(naive(&now))
            .bind(naive(&now))
            .bind(id.to_string())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
            Ok(match (done.rows_affected(), self.fetch_job(id).await?) {
                (_, None) => JobCancelled::NotFound,
                (1, Some(j)) => JobCancelled::Done(j),
                (_, Some(j)) => JobCancelled::AlreadyFinished(j),
            })
        })
        .await
    }
}
