//! Errors of the application services, one variant per HTTP outcome class.
//! The HTTP layer maps them to problem+json; 5xx details are logged, never
//! returned.

use crate::domain::{DomainError, FoldError};
use crate::ports::{CommitError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    NotFound(String),
    /// Concurrent writers kept winning the race for this order (409).
    #[error("the order was modified concurrently; retry")]
    VersionConflict,
    /// `If-Match` named a version that is no longer current (412).
    #[error("order is at version {current}, not {expected}")]
    PreconditionFailed { expected: u64, current: u64 },
    /// An `Idempotency-Key` was reused with a different request (422).
    #[error("Idempotency-Key was already used with a different request")]
    IdempotencyMismatch,
    /// The action does not fit the resource's state (409).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    /// The principal may not do this, whatever its role (403): e.g. the
    /// author of a DLQ revision approving it.
    #[error("{0}")]
    Forbidden(String),
    /// A backend is down or timed out (503).
    #[error(transparent)]
    Unavailable(StoreError),
    /// A bug or corrupt data (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => AppError::Unavailable(e),
            StoreError::Corrupt(m) => AppError::Internal(m),
        }
    }
}

impl From<FoldError> for AppError {
    fn from(e: FoldError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<CommitError> for AppError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::VersionConflict => AppError::VersionConflict,
            CommitError::IdempotencyKeyTaken => AppError::IdempotencyMismatch,
            CommitError::Store(s) => s.into(),
        }
    }
}
