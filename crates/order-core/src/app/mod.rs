//! Application services: they drive the domain through the ports.

pub mod commands;
pub mod dlq;
pub mod error;
pub mod metrics;
pub mod principal;
pub mod projector;
pub mod publisher;
pub mod relay;

pub use commands::{
    AsOf, CommandContext, CommandService, CreateOutcome, GroupCommitter, IdempotencyKey,
    OrderQueries,
};
pub use dlq::{
    BulkReplayOutcome, BulkReplayRequest, DlqService, ReplayOutcome, TestPublishOutcome,
    BULK_REPLAY_MAX,
};
pub use error::AppError;
pub use metrics::{Gauges, Metrics};
pub use principal::{Principal, Role};
pub use projector::{DlqRecorder, ProjectionReport, Projector, ProjectorConfig, RebuildReport};
pub use publisher::{FaultSwitch, RetryPolicy, SwitchableBus};
pub use relay::{OutboxRelay, PublishGate, RelayConfig, RelayReport};
