//! The operator listings (DLQ records, replay jobs) read a page at a time:
//! by page number, or after a cursor (keyset pagination, see
//! [`crate::ports::ListRequest`]). Read-only; the audit log's listing is
//! [`super::Auditor::list`].

use std::sync::Arc;

use super::error::AppError;
use crate::ports::{DlqRecord, DlqStatus, DlqStore, ListRequest, Page, ReplayJob, ReplayJobStore};

#[derive(Clone)]
pub struct Listings {
    dlq: Arc<dyn DlqStore>,
    jobs: Arc<dyn ReplayJobStore>,
}

impl Listings {
    pub fn new(dlq: Arc<dyn DlqStore>, jobs: Arc<dyn ReplayJobStore>) -> Self {
        Self { dlq, jobs }
    }

    /// DLQ records, newest failure first, optionally of one status.
    pub async fn records(
        &self,
        status: Option<DlqStatus>,
        req: ListRequest,
    ) -> Result<Page<DlqRecord>, AppError> {
        Ok(self.dlq.list_page(status, req).await?)
    }

    /// Replay jobs, newest first.
    pub async fn jobs(&self, req: ListRequest) -> Result<Page<ReplayJob>, AppError> {
        Ok(self.jobs.list_jobs_page(req).await?)
    }
}
