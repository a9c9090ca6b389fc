//! The DLQ: where an event goes when it cannot be published or processed,
//! and how it gets out again.
//!
//! - [`sequencing`]: the rules of an order's parked sequence (what heads it,
//!   who takes over after a skip or a failed replay, what reopens), decided
//!   once here and written by the adapters as guarded primitives;
//! - [`recorder`]: consumers' failures, read from the DLQ topic, become
//!   records;
//! - [`service`]: the operator's side — inspect, replay (a head publishes
//!   everything held behind it, in order), reset, skip, audited;
//! - [`jobs`]: bulk replays as durable, throttled, cancellable jobs;
//! - [`redrive`]: opt-in, replays retryable publish failures by itself once
//!   the bus answers again.

mod batch;
mod bulk;
pub mod jobs;
pub mod patch;
pub mod preview;
pub mod recorder;
pub mod redrive;
pub mod renew;
pub mod retention;
pub mod revisions;
mod search;
pub mod sequencing;
pub mod service;
mod test_publish;

pub use batch::HeadOutcome;
pub use jobs::{JobConfig, ReplayJobs, MIN_HEADS_FOR_RATIO};
pub use recorder::DlqRecorder;
pub use redrive::{AutoRedriver, RedriveClass, RedriveConfig, RedriveReport};
pub use retention::{Retention, RetentionConfig};
pub use revisions::{Decision, Edit, ReviseRequest, REVISION_REASON_MAX};
pub use search::{
    ExportCursor, ImportOutcome, CUSTOMER_ORDERS_MAX, EXPORT_MAX_LINES, IMPORT_MAX_BYTES,
    IMPORT_MAX_LINES,
};
pub use service::{
    BulkReplayOutcome, BulkReplayRequest, DlqService, Repair, ReplayOutcome, SkipOutcome,
    TestPublishOutcome, BULK_REPLAY_MAX, JOB_LIMIT_MAX, REDELIVER_TO_HEADER, SKIP_REASON_MAX,
    TEST_AGGREGATE_TYPE,
};
