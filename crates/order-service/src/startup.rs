//! Builds the whole application from a [`Config`]: adapters, services, the
//! background workers (outbox relay, projector, DLQ recorder, the opt-in
//! automatic DLQ redrive) and the HTTP server, and shuts them down
//! gracefully.
//!
//! Where an event goes after commit: `GroupCommitter` (one transaction per
//! batch) → wakes the `OutboxRelay` → publishes through the `SwitchableBus`
//! (the operator's fault switch) → the `Projector` consumes it into the read
//! model; what cannot be published is parked in the DLQ.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use order_bus_kafka::{KafkaBus, KafkaConfig};
use order_core::app::{
    Auditor, AutoRedriver, CommandService, DlqRecorder, DlqService, FaultSwitch, GroupCommitter,
    JobConfig, Metrics, OrderQueries, OutboxRelay, Projector, ProjectorConfig, PublishGate,
    RebuildReport, RedriveConfig, RelayConfig, ReplayJobs, RetryPolicy, SwitchableBus,
};
use order_core::ports::StoreError;
use order_core::ports::{
    AuditLog, DlqStore, EventBus, EventStore, Outbox, ReadModel, ReplayJobStore,
};
use order_readmodel_mongo::MongoReadModel;
use order_store_mysql::{MySqlConfig, MySqlStore};
use order_store_sqlite::{EmbeddedBus, SqliteReadModel, SqliteStore};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::{AuthPosture, Config, ConfigError, DatabaseTarget, SecretUrl};

/// How long an idle relay waits before looking at the outbox again (another
/// instance's commits do not wake it).
const RELAY_IDLE_POLL: Duration = Duration::from_millis(500);
/// Messages the projector applies per read-model transaction.
const PROJECTOR_BATCH: usize = 1000;
/// How long the automatic redrive's bus health check may take.
const REDRIVE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between looks for replay jobs nobody works on.
const JOB_POLL: Duration = Duration::from_secs(5);
/// Longest wait for in-flight requests and workers at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot open {what} at {path}: {cause}")]
    Open {
        what: &'static str,
        path: String,
        cause: String,
    },
    #[error("cannot subscribe to the event bus: {0}")]
    Bus(String),
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: String, cause: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// Everything a request handler needs.
pub struct Services {
    pub config: Config,
    pub commands: CommandService,
    pub queries: OrderQueries,
    pub event_store: Arc<dyn EventStore>,
    pub outbox: Arc<dyn Outbox>,
    pub dlq_store: Arc<dyn DlqStore>,
    pub read_model: Arc<dyn ReadModel>,
    pub dlq: Arc<DlqService>,
    /// Bulk replay jobs (`POST /api/dlq/replay`, `/api/dlq/jobs`).
    pub jobs: Arc<ReplayJobs>,
    /// The audit trail of DLQ, test and admin actions.
    pub audit: Auditor,
    pub projector: Arc<Projector>,
    pub relay: Arc<OutboxRelay>,
    /// The bus behind the fault switch: everything that publishes events.
    pub bus: Arc<dyn EventBus>,
    /// The bus itself: subscriptions and the projector's dead letters.
    pub raw_bus: Arc<dyn EventBus>,
    pub fault: Arc<FaultSwitch>,
    pub metrics: Arc<Metrics>,
    /// API keys, JWT verification and the replay rate limiter.
    pub auth: crate::http::auth::Auth,
}

/// Shared, cheaply clonable application state.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The background workers and the switch that stops them.
pub struct Workers {
    shutdown: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
    /// Held while the workers run; see [`lock_database`].
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

/// The state plus its running workers, without an HTTP server (tests drive
/// it through [`crate::http::router`]).
pub struct App {
    pub state: AppState,
    pub workers: Workers,
}

fn open_err(
    what: &'static str,
    path: &std::path::Path,
    cause: impl std::fmt::Display,
) -> StartupError {
    StartupError::Open {
        what,
        path: path.display().to_string(),
        cause: cause.to_string(),
    }
}

/// Creates the parent directory of a SQLite file (`sqlite://PATH` creates
/// the file, and so its directory).
fn ensure_parent(path: &std::path::Path, what: &'static str) -> Result<(), StartupError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| open_err(what, dir, e))
        }
        _ => Ok(()),
    }
}

/// The adapters the configuration selects, behind the core's ports.
pub struct Backends {
    pub event_store: Arc<dyn EventStore>,
    pub outbox: Arc<dyn Outbox>,
    pub dlq_store: Arc<dyn DlqStore>,
    pub audit_log: Arc<dyn AuditLog>,
    pub replay_jobs: Arc<dyn ReplayJobStore>,
    pub read_model: Arc<dyn ReadModel>,
    /// Held while the app runs (SQLite profile only); see [`lock_database`].
    pub lock: Option<std::fs::File>,
}

fn sqlite_err<'a>(
    what: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(StoreError) -> StartupError + 'a {
    move |e| open_err(what, path, e)
}

fn open_sqlite_store(path: &std::path::Path) -> Result<SqliteStore, StartupError> {
    ensure_parent(path, "the database")?;
    SqliteStore::open(path).map_err(sqlite_err("the database", path))
}

async fn open_mysql_store(config: &Config, url: &SecretUrl) -> Result<MySqlStore, StartupError> {
    MySqlStore::connect_with(
        MySqlConfig::new(url.expose())
            .with_max_connections(config.mysql_pool_size)
            // A command waits no longer for a connection than it may take.
            .with_acquire_timeout(config.command_timeout),
    )
    .await
    .map_err(|e| StartupError::Open {
        what: "the MySQL database",
        path: url.masked(),
        cause: e.to_string(),
    })
}

/// The ports one write-side database serves.
type WriteSide = (
    Arc<dyn EventStore>,
    Arc<dyn Outbox>,
    Arc<dyn DlqStore>,
    Arc<dyn AuditLog>,
    Arc<dyn ReplayJobStore>,
);

/// Event store, outbox, DLQ records and audit log: one database, SQLite or MySQL.
async fn open_write_side(config: &Config) -> Result<WriteSide, StartupError> {
    Ok(match &config.database {
        DatabaseTarget::Sqlite(path) => {
            let store = Arc::new(open_sqlite_store(path)?);
            (
                store.clone(),
                store.clone(),
                store.clone(),
                store.clone(),
                store,
            )
        }
        DatabaseTarget::MySql(url) => {
            let store = Arc::new(open_mysql_store(config, url).await?);
            (
                store.clone(),
                store.clone(),
                store.clone(),
                store.clone(),
                store,
            )
        }
    })
}

async fn open_read_model(config: &Config) -> Result<Arc<dyn ReadModel>, StartupError> {
    match &config.mongo {
        Some(m) => {
            let rm = MongoReadModel::connect(m.uri.expose(), &m.database, &m.collection)
                .await
                .map_err(|e| StartupError::Open {
                    what: "the MongoDB read model",
                    path: m.uri.masked(),
                    cause: e.to_string(),
                })?;
            Ok(Arc::new(rm))
        }
        None => {
            let path = &config.read_model_path;
            ensure_parent(path, "the read model")?;
            let rm = SqliteReadModel::open(path).map_err(sqlite_err("the read model", path))?;
            Ok(Arc::new(rm))
        }
    }
}

fn open_embedded_bus(config: &Config) -> Result<EmbeddedBus, StartupError> {
    let path = &config.bus_path;
    ensure_parent(path, "the embedded bus")?;
    EmbeddedBus::open(path).map_err(sqlite_err("the embedded bus", path))
}

/// The bus the configuration selects: Kafka (topics ensured) or embedded.
async fn open_bus(config: &Config) -> Result<Arc<dyn EventBus>, StartupError> {
    match &config.kafka {
        Some(k) => {
            let cfg = KafkaConfig {
                publish_timeout: k.publish_timeout,
                events_topic: config.topic_events.clone(),
                dlq_topic: config.topic_dlq.clone(),
                partitions: k.partitions,
                max_poll_interval: k.max_poll_interval,
                ..KafkaConfig::new(k.brokers.clone())
            };
            let bus = KafkaBus::connect(cfg)
                .await
                .map_err(|e| StartupError::Bus(e.to_string()))?;
            // A broker that is down at start is not fatal: commands still
            // work and the relay parks what it cannot publish; topics are
            // also created on first use.
            if let Err(e) = bus.ensure_topics().await {
                tracing::warn!(error = %e, "could not create the Kafka topics at start-up; will retry on first use");
            }
            Ok(Arc::new(bus))
        }
        None => Ok(Arc::new(open_embedded_bus(config)?)),
    }
}

/// Opens every adapter the configuration selects (not the bus).
pub async fn open_backends(config: &Config) -> Result<Backends, StartupError> {
    let lock = lock_database(config)?;
    let (event_store, outbox, dlq_store, audit_log, replay_jobs) = open_write_side(config).await?;
    let read_model = open_read_model(config).await?;
    Ok(Backends {
        event_store,
        outbox,
        dlq_store,
        audit_log,
        replay_jobs,
        read_model,
        lock,
    })
}

/// Takes an exclusive lock beside a SQLite database for as long as the
/// returned file lives (`None` for MySQL, where the relay lease in the
/// database coordinates instances). The embedded profile is single-instance:
/// two processes on one database would both relay the outbox (double
/// publish) and both project, so a second one refuses to start. The kernel
/// drops the lock when the process dies, `kill -9` included.
pub fn lock_database(config: &Config) -> Result<Option<std::fs::File>, StartupError> {
    let Some(db) = config.sqlite_database_path() else {
        return Ok(None);
    };
    ensure_parent(db, "the database")?;
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| open_err("the database lock", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartupError::Other(format!(
            "another order-service process is using {} (lock {}); the SQLite profile runs \
             one process per database",
            db.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(open_err("the database lock", &path, e)),
    }
}

/// Opens the adapters, builds the services and starts the workers.
pub async fn build(config: Config) -> Result<App, StartupError> {
    // Before anything is opened: a deployment without credentials stops here.
    let posture = config.auth_posture()?;
    match posture {
        AuthPosture::Enforced => tracing::info!(
            api_keys = config.auth.api_keys.len(),
            jwt = config.auth.jwt.is_some(),
            "authentication on"
        ),
        AuthPosture::Disabled => tracing::warn!(
            "AUTHENTICATION DISABLED (ORDER_AUTH_DISABLED=true): every caller is admin"
        ),
        AuthPosture::OpenEmbedded => tracing::warn!(
            "AUTHENTICATION OFF: no credentials configured, every caller is admin; set \
             ORDER_API_KEYS, ORDER_ADMIN_API_KEY or ORDER_JWT_* before exposing this service"
        ),
    }
    let auth = crate::http::auth::Auth::new(&config.auth, posture);
    let Backends {
        event_store,
        outbox,
        dlq_store,
        audit_log,
        replay_jobs,
        read_model,
        lock,
    } = open_backends(&config).await?;
    let audit = Auditor::new(audit_log);
    let raw_bus: Arc<dyn EventBus> = open_bus(&config).await?;

    let metrics = Arc::new(Metrics::default());
    let fault = Arc::new(FaultSwitch::default());
    let bus: Arc<dyn EventBus> = Arc::new(SwitchableBus::new(raw_bus.clone(), fault.clone()));
    let committed = Arc::new(Notify::new());
    let gate: PublishGate = PublishGate::default();
    let policy = RetryPolicy {
        max_attempts: config.publish_max_attempts,
        backoff: config.publish_backoff,
    };

    let concurrency = match config.database {
        DatabaseTarget::Sqlite(_) => 1,
        DatabaseTarget::MySql(_) => config.commit_concurrency,
    };
    let committer = GroupCommitter::start(
        event_store.clone(),
        config.commit_batch_max,
        concurrency,
        config.command_timeout,
        committed.clone(),
        metrics.clone(),
    );
    let commands = CommandService::new(
        event_store.clone(),
        committer,
        metrics.clone(),
        config.command_timeout,
    );
    let queries = OrderQueries::new(event_store.clone());
    let relay = Arc::new(OutboxRelay::new(
        outbox.clone(),
        dlq_store.clone(),
        bus.clone(),
        gate.clone(),
        RelayConfig {
            topic: config.topic_events.clone(),
            batch_size: config.relay_batch_size,
            policy,
            idle_poll: RELAY_IDLE_POLL,
            linger: config.relay_linger,
        },
        metrics.clone(),
        committed,
    ));
    let projector = Arc::new(Projector::new(
        read_model.clone(),
        event_store.clone(),
        raw_bus.clone(),
        ProjectorConfig {
            group: config.projector_group.clone(),
            topic: config.topic_events.clone(),
            dlq_topic: config.topic_dlq.clone(),
            batch_size: PROJECTOR_BATCH,
            linger: config.projector_linger,
        },
        metrics.clone(),
    ));
    let recorder = Arc::new(DlqRecorder::new(
        dlq_store.clone(),
        config.topic_events.clone(),
        metrics.clone(),
    ));
    let dlq = Arc::new(DlqService::new(
        dlq_store.clone(),
        bus.clone(),
        gate,
        policy,
        config.topic_events.clone(),
        metrics.clone(),
        audit.clone(),
    ));

    let projector_sub = raw_bus
        .subscribe(&config.projector_group, &config.topic_events)
        .await
        .map_err(|e| StartupError::Bus(e.to_string()))?;
    let recorder_sub = raw_bus
        .subscribe(&config.dlq_recorder_group, &config.topic_dlq)
        .await
        .map_err(|e| StartupError::Bus(e.to_string()))?;

    let (shutdown, rx) = watch::channel(false);
    let mut handles = vec![
        tokio::spawn(relay.clone().run(rx.clone())),
        tokio::spawn(projector.clone().run(projector_sub, rx.clone())),
    ];
    if config.dlq_auto_redrive {
        // Safe in every instance: each head's replay claims its record in
        // the database first (see `order_core::app::redrive`).
        let redriver = Arc::new(AutoRedriver::new(
            dlq.clone(),
            bus.clone(),
            RedriveConfig {
                interval: config.dlq_auto_redrive_interval,
                rate_per_sec: config.dlq_auto_redrive_rate,
                check_timeout: REDRIVE_CHECK_TIMEOUT,
            },
            metrics.clone(),
        ));
        tracing::info!(
            interval_ms = config.dlq_auto_redrive_interval.as_millis() as u64,
            rate_per_sec = config.dlq_auto_redrive_rate,
            "automatic DLQ redrive on"
        );
        handles.push(tokio::spawn(redriver.run(rx.clone())));
    }
    let jobs = Arc::new(ReplayJobs::new(
        replay_jobs,
        dlq.clone(),
        audit.clone(),
        JobConfig {
            rate: config.dlq_job_rate,
            max_failure_ratio: config.dlq_job_max_failure_ratio,
            lease: config.dlq_job_lease,
            poll: (config.dlq_job_lease / 2).min(JOB_POLL),
        },
    ));
    handles.push(tokio::spawn(jobs.clone().run(rx.clone())));
    handles.push(tokio::spawn(recorder.run(recorder_sub, rx)));

    let state = AppState(Arc::new(Services {
        config,
        commands,
        queries,
        event_store,
        outbox,
        dlq_store,
        read_model,
        dlq,
        jobs,
        audit,
        projector,
        relay,
        bus,
        raw_bus,
        fault,
        metrics,
        auth,
    }));
    Ok(App {
        state,
        workers: Workers {
            shutdown,
            handles,
            _lock: lock,
        },
    })
}

/// A running service: HTTP server plus workers.
pub struct RunningApp {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    pub state: AppState,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    workers: Workers,
}

impl RunningApp {
    /// Stops accepting connections, lets in-flight requests finish, then
    /// stops the workers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
            Err(_) => tracing::warn!("in-flight requests did not finish in time"),
        }
        self.workers.stop().await;
        tracing::info!("order-service stopped");
    }

    /// Serves until SIGTERM or Ctrl-C (or the server fails), then shuts down.
    pub async fn run_until_signal(mut self) {
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutdown signal received"),
            r = &mut self.server => {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
                    Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
                }
                self.workers.stop().await;
                return;
            }
        }
        self.shutdown().await;
    }
}

/// Builds the app, binds `bind:port` (port 0 = any free port) and serves.
pub async fn spawn_app(config: Config) -> Result<RunningApp, StartupError> {
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|cause| StartupError::Bind {
            addr: addr.to_string(),
            cause,
        })?;
    let addr = listener.local_addr().map_err(|cause| StartupError::Bind {
        addr: addr.to_string(),
        cause,
    })?;
    let app = build(config).await?;
    let router = crate::http::router(app.state.clone());
    let (stop, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(
        %addr,
        database = ?app.state.config.database,
        read_model = %read_model_label(&app.state.config),
        bus = %bus_label(&app.state.config),
        test_endpoints = app.state.config.test_endpoints,
        "order-service listening"
    );
    Ok(RunningApp {
        addr,
        state: app.state,
        stop,
        server,
        workers: app.workers,
    })
}

fn read_model_label(config: &Config) -> String {
    match &config.mongo {
        Some(m) => format!("{} ({}.{})", m.uri, m.database, m.collection),
        None => config.read_model_path.display().to_string(),
    }
}

fn bus_label(config: &Config) -> String {
    match &config.kafka {
        Some(k) => format!("kafka {}", k.brokers),
        None => config.bus_path.display().to_string(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// `order-service migrate`: creates or upgrades the schemas of the
/// configured database, read model and bus, then returns a summary.
pub async fn migrate(config: &Config) -> Result<String, StartupError> {
    let _backends = open_backends(config).await?;
    let bus = match &config.kafka {
        Some(_) => {
            open_bus(config).await?;
            "Kafka topics ensured".to_owned()
        }
        None => {
            open_embedded_bus(config)?;
            format!("bus {}", config.bus_path.display())
        }
    };
    let read_model = match &config.mongo {
        Some(m) => format!("MongoDB {}.{}", m.database, m.collection),
        None => config.read_model_path.display().to_string(),
    };
    Ok(format!(
        "migrations applied: database {:?}, read model {read_model}, {bus}",
        config.database
    ))
}

/// `order-service rebuild-read-model`: rebuilds the read model from the
/// event store without starting the server or the workers.
pub async fn rebuild_read_model(config: &Config) -> Result<RebuildReport, StartupError> {
    let backends = open_backends(config).await?;
    let projector = Projector::new(
        backends.read_model,
        backends.event_store,
        Arc::new(OfflineBus),
        ProjectorConfig {
            group: config.projector_group.clone(),
            topic: config.topic_events.clone(),
            dlq_topic: config.topic_dlq.clone(),
            batch_size: PROJECTOR_BATCH,
            linger: Duration::ZERO,
        },
        Arc::new(Metrics::default()),
    );
    projector
        .rebuild()
        .await
        .map_err(|e| StartupError::Other(format!("rebuild failed: {e}")))
}

/// A bus for offline tools: a rebuild reads the event store only.
struct OfflineBus;

#[async_trait::async_trait]
impl EventBus for OfflineBus {
    async fn publish(
        &self,
        messages: &[order_core::ports::BusMessage],
    ) -> Vec<Result<(), order_core::ports::PublishError>> {
        messages
            .iter()
            .map(|_| {
                Err(order_core::ports::PublishError::Permanent(
                    "no bus in offline mode".into(),
                ))
            })
            .collect()
    }

    async fn check(&self, _: Duration) -> Result<String, order_core::ports::BusError> {
        Err(order_core::ports::BusError::Unavailable(
            "no bus in offline mode".into(),
        ))
    }

    async fn find_published(
        &self,
        _: &[order_core::ports::BusMessage],
    ) -> Result<std::collections::HashSet<String>, order_core::ports::BusError> {
        Err(order_core::ports::BusError::Unavailable(
            "no bus in offline mode".into(),
        ))
    }

    async fn subscribe(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Box<dyn order_core::ports::Subscription>, order_core::ports::BusError> {
        Err(order_core::ports::BusError::Unavailable(
            "no bus in offline mode".into(),
        ))
    }
}
