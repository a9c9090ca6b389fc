//! Application services: they drive the domain through the ports. The
//! folders follow an event's way:
//!
//! [`commands`] (decide, commit events + state + outbox in one transaction)
//! → [`relay`] (outbox to bus, retry policy, wire format, fault switch)
//! → the bus → [`projector`] (read model)
//! → [`dlq`] (what could not be published or processed: sequencing rules,
//! recorder, operator service, bulk jobs, automatic redrive).
//!
//! [`audit`], [`principal`], [`metrics`] and [`error`] serve every stage;
//! [`listing`] pages through the DLQ records and replay jobs.

pub mod audit;
pub mod commands;
pub mod dlq;
pub mod error;
pub mod listing;
pub mod metrics;
pub mod principal;
pub mod projector;
pub mod relay;

pub use audit::Auditor;
pub use commands::{
    AsOf, CommandContext, CommandService, CreateOutcome, GroupCommitter, IdempotencyKey,
    OrderQueries,
};
pub use dlq::{
    AutoRedriver, BulkReplayOutcome, BulkReplayRequest, DlqRecorder, DlqService, JobConfig,
    RedriveClass, RedriveConfig, RedriveReport, ReplayJobs, ReplayOutcome, Retention,
    RetentionConfig, SkipOutcome, TestPublishOutcome, BULK_REPLAY_MAX, JOB_LIMIT_MAX,
    MIN_HEADS_FOR_RATIO, SKIP_REASON_MAX,
};
pub use dlq::{ExportCursor, ImportOutcome, EXPORT_MAX_LINES, IMPORT_MAX_BYTES, IMPORT_MAX_LINES};
pub use error::AppError;
pub use listing::Listings;
pub use metrics::{Gauges, Metrics};
pub use principal::{Principal, Role};
pub use projector::{ProjectionReport, Projector, ProjectorConfig, RebuildReport};
pub use relay::{
    FaultSwitch, OutboxRelay, PartitionConfig, Partitions, RelayConfig, RelayPorts, RelayReport,
    RetryPolicy, SwitchableBus,
};
