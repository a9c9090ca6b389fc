//! The background workers: the group committer behind the command service,
//! the outbox relay, the projector, the DLQ recorder, the replay-job runner
//! and (opt-in) the automatic DLQ redrive. They are built from the
//! configuration here, started together and stopped together, so start-up
//! and shutdown cannot disagree about what runs.

use std::sync::Arc;
use std::time::Duration;

use order_core::app::{
    Auditor, AutoRedriver, CommandService, DlqRecorder, DlqService, FaultSwitch, GroupCommitter,
    JobConfig, Metrics, OutboxRelay, PartitionConfig, Partitions, Projector, ProjectorConfig,
    RedriveConfig, RelayConfig, RelayPorts, ReplayJobs, Retention, RetentionConfig, RetryPolicy,
    SwitchableBus,
};
use order_core::ports::{
    DlqStore, EventBus, EventStore, Outbox, ReadModel, RelayLeases, ReplayJobStore,
};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::StartupError;
use crate::config::{Config, DatabaseTarget};

/// How long an idle relay waits before looking at the outbox again (another
/// instance's commits do not wake it).
const RELAY_IDLE_POLL: Duration = Duration::from_millis(500);
/// Messages the projector applies per read-model transaction.
const PROJECTOR_BATCH: usize = 1000;
/// How long the automatic redrive's bus health check may take.
const REDRIVE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two purges of resolved DLQ records past retention.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Resolved DLQ records deleted per statement.
const RETENTION_BATCH: usize = 1000;
/// Longest pause between looks for replay jobs nobody works on.
const JOB_POLL: Duration = Duration::from_secs(5);
/// Longest wait for in-flight requests and workers at shutdown.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The background workers and the switch that stops them.
pub struct Workers {
    shutdown: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
    /// Held while the workers run; see [`super::lock_database`].
    _lock: Option<std::fs::File>,
}

impl Workers {
    /// Asks every worker to stop and waits (bounded) for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for h in self.handles {
            if tokio::time::timeout(SHUTDOWN_GRACE, h).await.is_err() {
                tracing::warn!("a background worker did not stop in time");
            }
        }
    }
}

/// What the services and the workers share: metrics, the bus on both sides
/// of the operator's fault switch, and the relay's publishing rules.
pub(super) struct Shared {
    pub metrics: Arc<Metrics>,
    pub fault: Arc<FaultSwitch>,
    /// The bus itself: subscriptions and the projector's dead letters.
    pub raw_bus: Arc<dyn EventBus>,
    /// The bus behind the fault switch: everything that publishes events.
    pub bus: Arc<dyn EventBus>,
    pub policy: RetryPolicy,
    /// Rung by each commit to wake the relay.
    pub committed: Arc<Notify>,
}

impl Shared {
    pub fn new(config: &Config, raw_bus: Arc<dyn EventBus>) -> Self {
        let fault = Arc::new(FaultSwitch::default());
        Self {
            metrics: Arc::new(Metrics::default()),
            bus: Arc::new(SwitchableBus::new(raw_bus.clone(), fault.clone())),
            fault,
            raw_bus,
            policy: RetryPolicy {
                max_attempts: config.publish_max_attempts,
                backoff: config.publish_backoff,
            },
            committed: Arc::new(Notify::new()),
        }
    }
}

/// The command service over a group committer (one transaction per batch;
/// SQLite takes one writer at a time).
pub(super) fn commands(
    config: &Config,
    shared: &Shared,
    event_store: &Arc<dyn EventStore>,
) -> CommandService {
    let concurrency = match config.database {
        DatabaseTarget::Sqlite(_) => 1,
        DatabaseTarget::MySql(_) => config.commit_concurrency,
    };
    let committer = GroupCommitter::start(
        event_store.clone(),
        config.commit_batch_max,
        config.commit_linger,
        concurrency,
        config.command_timeout,
        shared.committed.clone(),
        shared.metrics.clone(),
    );
    CommandService::new(
        event_store.clone(),
        committer,
        shared.metrics.clone(),
        config.command_timeout,
    )
}

/// The projector's settings; `linger` differs between serving and an
/// offline rebuild.
pub(super) fn projector_config(config: &Config, linger: Duration) -> ProjectorConfig {
    ProjectorConfig {
        group: config.projector_group.clone(),
        topic: config.topic_events.clone(),
        dlq_topic: config.topic_dlq.clone(),
        redelivery_topic: Some(config.topic_redelivery.clone()),
        batch_size: PROJECTOR_BATCH,
        linger,
        rebuild_page: order_core::app::projector::DEFAULT_REBUILD_PAGE,
    }
}

/// The workers, built but not yet running.
pub(super) struct Background {
    pub relay: Arc<OutboxRelay>,
    pub projector: Arc<Projector>,
    pub recorder: Arc<DlqRecorder>,
    pub jobs: Arc<ReplayJobs>,
    pub redriver: Option<Arc<AutoRedriver>>,
    pub retention: Option<Arc<Retention>>,
}

/// The ports the workers read and write.
pub(super) struct WorkerPorts {
    pub event_store: Arc<dyn EventStore>,
    pub outbox: Arc<dyn Outbox>,
    pub leases: Arc<dyn RelayLeases>,
    pub dlq_store: Arc<dyn DlqStore>,
    pub read_model: Arc<dyn ReadModel>,
    pub replay_jobs: Arc<dyn ReplayJobStore>,
}

impl Background {
    pub fn new(
        config: &Config,
        shared: &Shared,
        ports: WorkerPorts,
        dlq: &Arc<DlqService>,
        audit: &Auditor,
    ) -> Self {
        let partitions = Arc::new(Partitions::new(
            ports.leases,
            uuid::Uuid::new_v4().simple().to_string(),
            PartitionConfig {
                count: config.relay_partition_count(),
                lease: config.relay_lease(),
            },
            shared.metrics.clone(),
        ));
        let relay = Arc::new(OutboxRelay {
            ports: RelayPorts {
                outbox: ports.outbox,
                dlq: ports.dlq_store.clone(),
                bus: shared.bus.clone(),
            },
            partitions,
            cfg: RelayConfig {
                topic: config.topic_events.clone(),
                batch_size: config.relay_batch_size,
                policy: shared.policy,
                idle_poll: RELAY_IDLE_POLL,
                linger: config.relay_linger,
                publish_budget: config.publish_budget(),
            },
            metrics: shared.metrics.clone(),
            wake: shared.committed.clone(),
        });
        let projector = Arc::new(Projector::new(
            ports.read_model,
            ports.event_store,
            shared.raw_bus.clone(),
            projector_config(config, config.projector_linger),
            shared.metrics.clone(),
        ));
        let retention = retention(config, shared, &ports.dlq_store);
        let recorder = Arc::new(DlqRecorder::new(
            ports.dlq_store,
            config.topic_events.clone(),
            shared.metrics.clone(),
        ));
        let jobs = Arc::new(ReplayJobs::new(
            ports.replay_jobs,
            dlq.clone(),
            audit.clone(),
            JobConfig {
                rate: config.dlq_job_rate,
                max_failure_ratio: config.dlq_job_max_failure_ratio,
                lease: config.dlq_job_lease,
                poll: (config.dlq_job_lease / 2).min(JOB_POLL),
            },
        ));
        Self {
            relay,
            projector,
            recorder,
            jobs,
            redriver: redriver(config, shared, dlq),
            retention,
        }
    }

    /// Subscribes the consumers, then starts every worker. `lock` is held
    /// until the workers are stopped.
    pub async fn start(
        &self,
        config: &Config,
        raw_bus: &Arc<dyn EventBus>,
        lock: Option<std::fs::File>,
    ) -> Result<Workers, StartupError> {
        let projector_sub = raw_bus
            .subscribe(&config.projector_group, &config.topic_events)
            .await
            .map_err(|e| StartupError::Bus(e.to_string()))?;
        let recorder_sub = raw_bus
            .subscribe(&config.dlq_recorder_group, &config.topic_dlq)
            .await
            .map_err(|e| StartupError::Bus(e.to_string()))?;
        // Its own consumer group: a second member with another topic in the
        // projector's group would join every rebalance of the events topic
        // (on Tansu, a broker outage then left the events partitions
        // unconsumed). It accepts what is addressed to the projector's group.
        let redelivery_group = format!("{}-redelivery", config.projector_group);
        let redelivery_sub = raw_bus
            .subscribe(&redelivery_group, &config.topic_redelivery)
            .await
            .map_err(|e| StartupError::Bus(e.to_string()))?;

        let (shutdown, rx) = watch::channel(false);
        let mut handles = vec![
            tokio::spawn(self.relay.clone().run(rx.clone())),
            tokio::spawn(self.projector.clone().run(projector_sub, rx.clone())),
            tokio::spawn(
                self.projector
                    .clone()
                    .run_redeliveries(redelivery_sub, rx.clone()),
            ),
        ];
        if let Some(redriver) = &self.redriver {
            handles.push(tokio::spawn(redriver.clone().run(rx.clone())));
        }
        if let Some(retention) = &self.retention {
            handles.push(tokio::spawn(retention.clone().run(rx.clone())));
        }
        handles.push(tokio::spawn(self.jobs.clone().run(rx.clone())));
        handles.push(tokio::spawn(self.recorder.clone().run(recorder_sub, rx)));
        Ok(Workers {
            shutdown,
            handles,
            _lock: lock,
        })
    }
}

/// The DLQ retention policy, when configured (`ORDER_DLQ_RETENTION_DAYS`).
fn retention(
    config: &Config,
    shared: &Shared,
    dlq_store: &Arc<dyn DlqStore>,
) -> Option<Arc<Retention>> {
    if config.dlq_retention_days == 0 {
        return None;
    }
    tracing::info!(days = config.dlq_retention_days, "DLQ retention on");
    Some(Arc::new(Retention::new(
        dlq_store.clone(),
        RetentionConfig {
            keep: Duration::from_secs(u64::from(config.dlq_retention_days) * 86_400),
            interval: RETENTION_INTERVAL,
            batch: RETENTION_BATCH,
        },
        shared.metrics.clone(),
    )))
}

/// The automatic redrive, when configured. Safe in every instance: each
/// head's replay claims its record in the database first (see
/// `order_core::app::redrive`).
fn redriver(config: &Config, shared: &Shared, dlq: &Arc<DlqService>) -> Option<Arc<AutoRedriver>> {
    if !config.dlq_auto_redrive {
        return None;
    }
    tracing::info!(
        interval_ms = config.dlq_auto_redrive_interval.as_millis() as u64,
        rate_per_sec = config.dlq_auto_redrive_rate,
        "automatic DLQ redrive on"
    );
    Some(Arc::new(AutoRedriver::new(
        dlq.clone(),
        shared.bus.clone(),
        RedriveConfig {
            interval: config.dlq_auto_redrive_interval,
            rate_per_sec: config.dlq_auto_redrive_rate,
            check_timeout: REDRIVE_CHECK_TIMEOUT,
            max_attempts: config.dlq_auto_redrive_max_attempts,
            backoff: config.dlq_auto_redrive_backoff,
        },
        shared.metrics.clone(),
    )))
}
