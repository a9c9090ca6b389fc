//! The `dlq_replay_jobs` table: its statements and row mapping. Every
//! conditional change is one UPDATE with its condition in the WHERE clause,
//! so concurrent runners and a cancel never both win.

use chrono::DateTime;
use chrono::Utc;
use uuid::Uuid;

use super::int;
use super::Checked;
use super::ColumnReader;
use super::PageQuery;
use super::SortKey;
use super::SqlValue;
use super::Statement;
use super::Where;
use crate::ports::JobCancel;
use crate::ports::JobCancelled;
use crate::ports::JobCounters;
use crate::ports::JobEnd;
use crate::ports::JobLease;
use crate::ports::JobProgress;
use crate::ports::JobStatus;
use crate::ports::ListRequest;
use crate::ports::NewReplayJob;
use crate::ports::ReplayJob;
use crate::ports::StoreError;

/// The columns [`read_job`] reads, in its order.
pub const COLUMNS: &str = "id, principal, role, filter, status, matched, processed, \
     replayed, failed, skipped, published, message, created_at, updated_at, finished_at, \
     runner, lease_until";

/// A job from a row of [`COLUMNS`].
pub fn read_job(r: &dyn ColumnReader) -> Result<ReplayJob, StoreError> {
    let id = read_id(r)?;
    let c = Checked::new(r, COLUMNS, format!("job {id}"));
    Ok(ReplayJob {
        id,
        principal: r.text(1)?,
        role: r.text(2)?,
        filter: c.json(3)?,
        status: c.parsed(4, JobStatus::parse)?,
        counters: JobCounters {
            matched: c.number(5)?,
            processed: c.number(6)?,
            replayed: c.number(7)?,
            failed: c.number(8)?,
            skipped: c.number(9)?,
            published: c.number(10)?,
        },
        message: r.opt_text(11)?,
        created_at: r.time(12)?,
        updated_at: r.time(13)?,
        finished_at: r.opt_time(14)?,
        runner: r.opt_text(15)?,
        lease_until: r.opt_time(16)?,
    })
}

/// The job id in a row's first column.
pub fn read_id(r: &dyn ColumnReader) -> Result<Uuid, StoreError> {
    let id = r.text(0)?;
    Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("job id {id:?}: {e}")))
}

/// Stores a RUNNING job, zero counters except `matched`.
pub fn insert(job: &NewReplayJob) -> Result<Statement, StoreError> {
    Ok(Statement::new(
        "INSERT INTO dlq_replay_jobs (id, principal, role, filter, status, matched, \
         created_at, updated_at) VALUES (?, ?, ?, ?, 'RUNNING', ?, ?, ?)",
        [
            SqlValue::from(job.id.to_string()),
            SqlValue::from(&job.principal),
            SqlValue::from(&job.role),
            SqlValue::from(job.filter.to_string()),
            int(job.matched)?,
            SqlValue::from(job.created_at),
            SqlValue::from(job.created_at),
        ],
    ))
}

pub fn get(id: Uuid) -> Statement {
    Statement::new(
        format!("SELECT {COLUMNS} FROM dlq_replay_jobs WHERE id = ?"),
        [SqlValue::from(id.to_string())],
    )
}

/// All jobs, newest first (`idx_replay_jobs_created`), by page number or
/// after a cursor.
pub fn list(req: &ListRequest) -> PageQuery {
    let key = SortKey {
        time: "created_at",
        id: "id",
    };
    PageQuery::new(COLUMNS, "dlq_replay_jobs", Where::default(), key, req)
}

/// Ids of the RUNNING jobs whose lease is free or lapsed at `now`, or held
/// by `runner`, oldest first.
pub fn leasable(runner: &str, now: DateTime<Utc>) -> Statement {
    Statement::new(
        "SELECT id FROM dlq_replay_jobs WHERE status = 'RUNNING' \
         AND (runner IS NULL OR runner = ? OR lease_until IS NULL OR lease_until <= ?) \
         ORDER BY created_at, id",
        [SqlValue::from(runner), SqlValue::from(now)],
    )
}

/// Takes (or renews) the lease of a RUNNING job that is free, lapsed at
/// `now` or already `runner`'s.
pub fn lease(l: &JobLease<'_>) -> Statement {
    Statement::new(
        "UPDATE dlq_replay_jobs SET runner = ?, lease_until = ? \
         WHERE id = ? AND status = 'RUNNING' \
         AND (runner IS NULL OR runner = ? OR lease_until IS NULL OR lease_until <= ?)",
        [
            SqlValue::from(l.runner),
            SqlValue::from(l.until),
            SqlValue::from(l.id.to_string()),
            SqlValue::from(l.runner),
            SqlValue::from(l.now),
        ],
    )
}

/// Saves the counters of a RUNNING job leased by `runner` and renews its
/// lease.
pub fn progress(p: &JobProgress<'_>) -> Result<Statement, StoreError> {
    let l = &p.lease;
    let until = vec![SqlValue::from(l.until)];
    runner_write(l.id, l.runner, &p.counters, l.now, "lease_until = ?", until)
}

/// Saves the counters of a RUNNING job leased by `runner` and ends it with
/// a final status and a message, releasing the lease. The status always
/// changes, so a matched row is a changed row.
pub fn finish(e: &JobEnd<'_>) -> Result<Statement, StoreError> {
    let set = "status = ?, message = ?, finished_at = ?, runner = NULL, lease_until = NULL";
    let end = vec![
        SqlValue::from(e.status.as_str()),
        SqlValue::from(e.message),
        SqlValue::from(e.now),
    ];
    runner_write(e.id, e.runner, &e.counters, e.now, set, end)
}

/// The UPDATE of a RUNNING job leased by `runner`: `set` (its arguments
/// first), the counters and `updated_at`.
fn runner_write(
    id: Uuid,
    runner: &str,
    counters: &JobCounters,
    now: DateTime<Utc>,
    set: &str,
    mut args: Vec<SqlValue>,
) -> Result<Statement, StoreError> {
    args.extend([
        int(counters.processed)?,
        int(counters.replayed)?,
        int(counters.failed)?,
        int(counters.skipped)?,
        int(counters.published)?,
        SqlValue::from(now),
        SqlValue::from(id.to_string()),
        SqlValue::from(runner),
    ]);
    Ok(Statement::new(
        format!(
            "UPDATE dlq_replay_jobs SET {set}, processed = ?, replayed = ?, failed = ?, \
             skipped = ?, published = ?, updated_at = ? \
             WHERE id = ? AND runner = ? AND status = 'RUNNING'"
        ),
        args,
    ))
}

/// RUNNING → CANCELLED, whoever holds the lease, releasing it.
pub fn cancel(c: &JobCancel<'_>) -> Statement {
    Statement::new(
        "UPDATE dlq_replay_jobs SET status = 'CANCELLED', message = ?, updated_at = ?, \
         finished_at = ?, runner = NULL, lease_until = NULL \
         WHERE id = ? AND status = 'RUNNING'",
        [
            SqlValue::from(c.message),
            SqlValue::from(c.now),
            SqlValue::from(c.now),
            SqlValue::from(c.id.to_string()),
        ],
    )
}

/// What [`cancel`] did: whether it changed a row, and the job as it is
/// afterwards.
pub fn cancelled(changed: bool, job: Option<ReplayJob>) -> JobCancelled {
    match (changed, job) {
        (_, None) => JobCancelled::NotFound,
        (true, Some(j)) => JobCancelled::Done(j),
        (false, Some(j)) => JobCancelled::AlreadyFinished(j),
    }
}

/// The job, when it is RUNNING and leased by `runner`: what a lease or a
/// progress save leaves behind when it succeeded.
pub fn leased_by(job: Option<ReplayJob>, runner: &str) -> Option<ReplayJob> {
    job.filter(|j| j.status == JobStatus::Running && j.runner.as_deref() == Some(runner))
}
