//! Durable bulk replay jobs.

use super::error::StoreError;
use super::page::Cursor;
use super::page::CursorId;
use super::page::Keyed;
use super::page::ListRequest;
use super::page::Page;
use super::page::PageRequest;
use async_trait::async_trait;
use chrono::DateTime;
use chrono::Utc;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// DLQ replay jobs
// ---------------------------------------------------------------------------

/// Where a bulk replay job stands. Only RUNNING jobs are worked on; the
/// others are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Running,
    /// No matching unresolved head was left, or `limit` heads were processed.
    Completed,
    /// Cancelled by an operator.
    Cancelled,
    /// Stopped by itself: too many replays failed.
    Stopped,
    /// Ended by an error (the store or the bus could not be used).
    Failed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Cancelled,
        JobStatus::Stopped,
        JobStatus::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "RUNNING",
            JobStatus::Completed => "COMPLETED",
            JobStatus::Cancelled => "CANCELLED",
            JobStatus::Stopped => "STOPPED",
            JobStatus::Failed => "FAILED",
        }
    }
    /// Case-insensitive parse.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
    }
    pub fn is_final(self) -> bool {
        self != JobStatus::Running
    }
}

/// What a job has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobCounters {
    /// Matching unresolved heads when the job was created.
    pub matched: u64,
    /// Heads worked on (replayed + failed + skipped).
    pub processed: u64,
    pub replayed: u64,
    pub failed: u64,
    /// Found resolved meanwhile (by another replay): nothing published.
    pub skipped: u64,
    /// Messages put on the bus, held events included.
    pub published: u64,
}

/// A job to store: RUNNING, no runner yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReplayJob {
    pub id: Uuid,
    pub principal: String,
    pub role: String,
    /// The replay filter, as the JSON object the job was created with.
    pub filter: serde_json::Value,
    pub matched: u64,
    pub created_at: DateTime<Utc>,
}

/// A stored bulk replay job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplayJob {
    pub id: Uuid,
    pub principal: String,
    pub role: String,
    /// The replay filter the job was created with (the fields of a bulk
    /// replay request).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub filter: serde_json::Value,
    pub status: JobStatus,
    #[serde(flatten)]
    pub counters: JobCounters,
    /// Why it ended (or what it is doing), for people.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub finished_at: Option<DateTime<Utc>>,
    /// The runner (service instance) holding the job, while its lease lasts.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub runner: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub lease_until: Option<DateTime<Utc>>,
}

/// Listings sort newest first.
impl Keyed for ReplayJob {
    fn cursor(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: CursorId::Uuid(self.id),
        }
    }
}

/// [`ReplayJobStore::lease_job`]: `runner` takes (or renews) job `id` at
/// `now`, until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLease<'a> {
    pub id: Uuid,
    pub runner: &'a str,
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// [`ReplayJobStore::save_job_progress`]: the runner saves the job's
/// counters and renews its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobProgress<'a> {
    pub lease: JobLease<'a>,
    pub counters: JobCounters,
}

/// [`ReplayJobStore::finish_job`]: `runner` ends job `id` at `now` with a
/// final `status`, its counters and a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobEnd<'a> {
    pub id: Uuid,
    pub runner: &'a str,
    pub status: JobStatus,
    pub counters: JobCounters,
    pub message: &'a str,
    pub now: DateTime<Utc>,
}

/// [`ReplayJobStore::cancel_job`]: job `id` is cancelled at `now`, with a
/// message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobCancel<'a> {
    pub id: Uuid,
    pub message: &'a str,
    pub now: DateTime<Utc>,
}

/// Result of [`ReplayJobStore::cancel_job`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobCancelled {
    Done(ReplayJob),
    /// Already final; returned unchanged.
    AlreadyFinished(ReplayJob),
    NotFound,
}

/// Durable bulk replay jobs. A runner works on a job only while it holds
/// its lease; a lease that lapses (a dead runner) may be taken by another.
#[async_trait]
pub trait ReplayJobStore: Send + Sync {
    /// Stores a RUNNING job (zero counters except `matched`).
    async fn create_job(&self, job: &NewReplayJob) -> Result<ReplayJob, StoreError>;

    async fn get_job(&self, id: Uuid) -> Result<Option<ReplayJob>, StoreError>;

    /// The database's clock. Job leases are computed from it, so the
    /// instances' own clocks never meet.
    async fn clock(&self) -> Result<DateTime<Utc>, StoreError>;

    /// All jobs, newest first (`created_at` desc, then id desc): a page by
    /// number or the page after a cursor.
    async fn list_jobs_page(&self, req: ListRequest) -> Result<Page<ReplayJob>, StoreError>;

    /// [`list_jobs_page`](Self::list_jobs_page) by page number.
    async fn list_jobs(&self, page: PageRequest) -> Result<Page<ReplayJob>, StoreError> {
        self.list_jobs_page(page.into()).await
    }

    /// RUNNING jobs the runner `by` may lease at `now` (their lease is free,
    /// lapsed or already `by`'s), oldest first.
    async fn leasable_jobs(&self, by: &str, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError>;

    /// Takes (or renews) the lease of a RUNNING job until `lease.until`
    /// when it is free, lapsed at `lease.now` or already `lease.runner`'s.
    /// `None` otherwise.
    async fn lease_job(&self, lease: JobLease<'_>) -> Result<Option<ReplayJob>, StoreError>;

    /// Saves the counters and renews the lease, while the job is RUNNING
    /// and leased by the runner; false otherwise (cancelled, or taken over).
    async fn save_job_progress(&self, progress: JobProgress<'_>) -> Result<bool, StoreError>;

    /// Ends a RUNNING job leased by `end.runner` with a final status, the
    /// counters and a message, releasing the lease; false otherwise.
    async fn finish_job(&self, end: JobEnd<'_>) -> Result<bool, StoreError>;

    /// RUNNING → CANCELLED (whoever holds the lease), releasing the lease.
    async fn cancel_job(&self, cancel: JobCancel<'_>) -> Result<JobCancelled, StoreError>;
}
