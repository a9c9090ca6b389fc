//! Application services: they drive the domain through the ports.

pub mod audit;
pub mod commands;
pub mod dlq;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod principal;
pub mod projector;
pub mod publisher;
pub mod redrive;
pub mod relay;

pub use audit::Auditor;
pub use commands::{
    AsOf, CommandContext, CommandService, CreateOutcome, GroupCommitter, IdempotencyKey,
    OrderQueries,
};
pub use dlq::{
    BulkReplayOutcome, BulkReplayRequest, DlqService, ReplayOutcome, SkipOutcome,
    TestPublishOutcome, BULK_REPLAY_MAX, SKIP_REASON_MAX,
};
pub use error::AppError;
pub use jobs::{JobConfig, ReplayJobs, MIN_HEADS_FOR_RATIO};
pub use metrics::{Gauges, Metrics};
pub use principal::{Principal, Role};
pub use projector::{DlqRecorder, ProjectionReport, Projector, ProjectorConfig, RebuildReport};
pub use publisher::{FaultSwitch, RetryPolicy, SwitchableBus};
pub use redrive::{AutoRedriver, RedriveClass, RedriveConfig, RedriveReport};
pub use relay::{OutboxRelay, PublishGate, RelayConfig, RelayReport};
