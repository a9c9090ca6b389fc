//! Bulk DLQ replay jobs (`dlq_replay_jobs`) in the write-side database.
//! Every conditional change is one UPDATE with its condition in the WHERE
//! clause, so concurrent runners and a cancel never both win.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::ports::{
    JobCancelled, JobCounters, JobRow, JobStatus, NewReplayJob, Page, PageRequest, ReplayJob,
    ReplayJobStore, StoreError, JOB_COLUMNS,
};
use rusqlite::{params, Connection, Row};
use uuid::Uuid;

use crate::db::{corrupt, db_err, parse_opt_ts, parse_ts, to_i64, to_u64, ts};
use crate::store::SqliteStore;

fn decode(row: &Row<'_>) -> Result<ReplayJob, StoreError> {
    let count = |i: usize| -> Result<i64, StoreError> { row.get(i).map_err(db_err) };
    let time = |i: usize| -> Result<String, StoreError> { row.get(i).map_err(db_err) };
    ReplayJob::try_from(JobRow {
        id: row.get(0).map_err(db_err)?,
        principal: row.get(1).map_err(db_err)?,
        role: row.get(2).map_err(db_err)?,
        filter: row.get(3).map_err(db_err)?,
        status: row.get(4).map_err(db_err)?,
        counts: [
            count(5)?,
            count(6)?,
            count(7)?,
            count(8)?,
            count(9)?,
            count(10)?,
        ],
        message: row.get(11).map_err(db_err)?,
        created_at: parse_ts(&time(12)?)?,
        updated_at: parse_ts(&time(13)?)?,
        finished_at: parse_opt_ts(row.get(14).map_err(db_err)?)?,
        runner: row.get(15).map_err(db_err)?,
        lease_until: parse_opt_ts(row.get(16).map_err(db_err)?)?,
    })
}

fn get(conn: &Connection, id: Uuid) -> Result<Option<ReplayJob>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM dlq_replay_jobs WHERE id = ?1"
        ))
        .map_err(db_err)?;
    let mut rows = stmt.query(params![id.to_string()]).map_err(db_err)?;
    match rows.next().map_err(db_err)? {
        Some(row) => Ok(Some(decode(row)?)),
        None => Ok(None),
    }
}

/// The counters as bound values, in column order.
fn counts(c: &JobCounters) -> Result<[i64; 5], StoreError> {
    Ok([
        to_i64(c.processed)?,
        to_i64(c.replayed)?,
        to_i64(c.failed)?,
        to_i64(c.skipped)?,
        to_i64(c.published)?,
    ])
}

#[async_trait]
impl ReplayJobStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(job_id = %job.id))]
    async fn create_job(&self, job: &NewReplayJob) -> Result<ReplayJob, StoreError> {
        let j = job.clone();
        self.db
            .write_async(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO dlq_replay_jobs (id, principal, role, filter, status, matched, \
                     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'RUNNING', ?5, ?6, ?6)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        j.id.to_string(),
                        j.principal,
                        j.role,
                        j.filter.to_string(),
                        to_i64(j.matched).unwrap_or(i64::MAX),
                        ts(&j.created_at),
                    ])
                })
                .map_err(db_err)?;
                get(conn, j.id)?.ok_or_else(|| corrupt("a created job vanished"))
            })
            .await
    }

    async fn get_job(&self, id: Uuid) -> Result<Option<ReplayJob>, StoreError> {
        self.db.read_async(move |conn| get(conn, id)).await
    }

    async fn list_jobs(&self, page: PageRequest) -> Result<Page<ReplayJob>, StoreError> {
        let size = i64::from(page.size.max(1));
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        self.db
            .read_async(move |conn| {
                let tx = conn.unchecked_transaction().map_err(db_err)?;
                let mut content = Vec::new();
                {
                    let mut stmt = tx
                        .prepare(&format!(
                            "SELECT {JOB_COLUMNS} FROM dlq_replay_jobs \
                             ORDER BY created_at DESC, id DESC LIMIT ?1 OFFSET ?2"
                        ))
                        .map_err(db_err)?;
                    let mut rows = stmt.query(params![size, offset]).map_err(db_err)?;
                    while let Some(row) = rows.next().map_err(db_err)? {
                        content.push(decode(row)?);
                    }
                }
                let total: i64 = tx
                    .query_row("SELECT COUNT(*) FROM dlq_replay_jobs", [], |r| r.get(0))
                    .map_err(db_err)?;
                tx.finish().map_err(db_err)?;
                Ok(Page::new(content, page, to_u64(total)?))
            })
            .await
    }

    async fn leasable_jobs(
        &self,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let runner = runner.to_owned();
        self.db
            .read_async(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id FROM dlq_replay_jobs WHERE status = 'RUNNING' \
                         AND (runner IS NULL OR runner = ?1 OR lease_until IS NULL \
                              OR lease_until <= ?2) \
                         ORDER BY created_at, id",
                    )
                    .map_err(db_err)?;
                let ids = stmt
                    .query_map(params![runner, ts(&now)], |r| r.get::<_, String>(0))
                    .map_err(db_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_err)?;
                ids.iter()
                    .map(|id| {
                        Uuid::parse_str(id).map_err(|e| corrupt(format!("job id {id:?}: {e}")))
                    })
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
        let runner = runner.to_owned();
        self.db
            .write_async(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE dlq_replay_jobs SET runner = ?2, lease_until = ?4 \
                         WHERE id = ?1 AND status = 'RUNNING' \
                         AND (runner IS NULL OR runner = ?2 OR lease_until IS NULL \
                              OR lease_until <= ?3)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id.to_string(), runner, ts(&now), ts(&until)])
                    })
                    .map_err(db_err)?;
                if n == 0 {
                    return Ok(None);
                }
                get(conn, id)
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
        let runner = runner.to_owned();
        let [p, r, f, s, pb] = counts(counters)?;
        self.db
            .write_async(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE dlq_replay_jobs SET processed = ?3, replayed = ?4, failed = ?5, \
                         skipped = ?6, published = ?7, updated_at = ?8, lease_until = ?9 \
                         WHERE id = ?1 AND runner = ?2 AND status = 'RUNNING'",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            id.to_string(),
                            runner,
                            p,
                            r,
                            f,
                            s,
                            pb,
                            ts(&now),
                            ts(&until)
                        ])
                    })
                    .map_err(db_err)?;
                Ok(n == 1)
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
        let runner = runner.to_owned();
        let message = message.to_owned();
        let [p, r, f, s, pb] = counts(counters)?;
        self.db
            .write_async(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE dlq_replay_jobs SET status = ?3, processed = ?4, replayed = ?5, \
                         failed = ?6, skipped = ?7, published = ?8, message = ?9, \
                         updated_at = ?10, finished_at = ?10, runner = NULL, lease_until = NULL \
                         WHERE id = ?1 AND runner = ?2 AND status = 'RUNNING'",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            id.to_string(),
                            runner,
                            status.as_str(),
                            p,
                            r,
                            f,
                            s,
                            pb,
                            message,
                            ts(&now)
                        ])
                    })
                    .map_err(db_err)?;
                Ok(n == 1)
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
        let message = message.to_owned();
        self.db
            .write_async(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE dlq_replay_jobs SET status = 'CANCELLED', message = ?2, \
                         updated_at = ?3, finished_at = ?3, runner = NULL, lease_until = NULL \
                         WHERE id = ?1 AND status = 'RUNNING'",
                    )
                    .and_then(|mut st| st.execute(params![id.to_string(), message, ts(&now)]))
                    .map_err(db_err)?;
                Ok(match (n, get(conn, id)?) {
                    (_, None) => JobCancelled::NotFound,
                    (1, Some(j)) => JobCancelled::Done(j),
                    (_, Some(j)) => JobCancelled::AlreadyFinished(j),
                })
            })
            .await
    }
}
