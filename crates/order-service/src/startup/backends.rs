//! Choosing the adapters from the configuration: SQLite or MySQL for the
//! write side, SQLite or MongoDB for the read model, the embedded bus or
//! Kafka. It is the one place that knows the store crates, so the rest of
//! start-up only sees the core's ports.

use std::sync::Arc;

use order_bus_kafka::{Access, KafkaBus, KafkaConfig};
use order_core::ports::StoreError;
use order_core::ports::{
    AuditLog, DlqRevisionStore, DlqStore, EventBus, EventStore, Outbox, ReadModel, RelayLeases,
    ReplayJobStore,
};
use order_readmodel_mongo::MongoReadModel;
use order_store_mysql::{MySqlConfig, MySqlStore};
use order_store_sqlite::{EmbeddedBus, SqliteReadModel, SqliteStore};

use super::StartupError;
use crate::config::{Config, DatabaseTarget, SecretUrl};

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
    pub leases: Arc<dyn RelayLeases>,
    pub dlq_store: Arc<dyn DlqStore>,
    pub dlq_revisions: Arc<dyn DlqRevisionStore>,
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
            .with_acquire_timeout(config.command_timeout)
            .with_tls(config.database_tls.clone()),
    )
    .await
    .map_err(|e| StartupError::Open {
        what: "the MySQL database",
        path: url.masked(),
        cause: e.to_string(),
    })
}

/// The ports one write-side database serves.
struct WriteSide {
    event_store: Arc<dyn EventStore>,
    outbox: Arc<dyn Outbox>,
    leases: Arc<dyn RelayLeases>,
    dlq_store: Arc<dyn DlqStore>,
    dlq_revisions: Arc<dyn DlqRevisionStore>,
    audit_log: Arc<dyn AuditLog>,
    replay_jobs: Arc<dyn ReplayJobStore>,
}

impl WriteSide {
    fn of<S>(store: S) -> Self
    where
        S: EventStore
            + Outbox
            + RelayLeases
            + DlqStore
            + DlqRevisionStore
            + AuditLog
            + ReplayJobStore
            + 'static,
    {
        let store = Arc::new(store);
        Self {
            event_store: store.clone(),
            outbox: store.clone(),
            leases: store.clone(),
            dlq_store: store.clone(),
            dlq_revisions: store.clone(),
            audit_log: store.clone(),
            replay_jobs: store,
        }
    }
}

/// Event store, outbox, DLQ records and audit log: one database, SQLite or MySQL.
async fn open_write_side(config: &Config) -> Result<WriteSide, StartupError> {
    Ok(match &config.database {
        DatabaseTarget::Sqlite(path) => WriteSide::of(open_sqlite_store(path)?),
        DatabaseTarget::MySql(url) => WriteSide::of(open_mysql_store(config, url).await?),
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

pub(super) fn open_embedded_bus(config: &Config) -> Result<EmbeddedBus, StartupError> {
    let path = &config.bus_path;
    ensure_parent(path, "the embedded bus")?;
    EmbeddedBus::open(path).map_err(sqlite_err("the embedded bus", path))
}

/// The bus the configuration selects: Kafka (topics ensured) or embedded.
pub(super) async fn open_bus(config: &Config) -> Result<Arc<dyn EventBus>, StartupError> {
    match &config.kafka {
        Some(k) => {
            let cfg = KafkaConfig {
                publish_timeout: k.publish_timeout,
                events_topic: config.topic_events.clone(),
                dlq_topic: config.topic_dlq.clone(),
                partitions: k.partitions,
                dlq_partitions: k.dlq_partitions,
                replication_factor: k.replication_factor.unwrap_or(-1),
                min_insync_replicas: k.min_insync_replicas,
                compression: k.compression.clone(),
                max_poll_interval: k.max_poll_interval,
                extra: k.properties.0.clone(),
                ..KafkaConfig::new(k.brokers.clone())
            };
            let admin_timeout = cfg.admin_timeout;
            let bus = KafkaBus::connect(cfg)
                .await
                .map_err(|e| StartupError::Bus(e.to_string()))?;
            // A broker that is down at start is not fatal: commands still
            // work and the relay parks what it cannot publish; topics are
            // also created on first use. A cluster that refuses our login
            // or certificate is: waiting will not fix the configuration.
            match bus.probe_access(admin_timeout).await {
                Access::Refused(why) => {
                    return Err(StartupError::Bus(format!(
                        "Kafka at {} refused the connection: {why} (check \
                         ORDER_KAFKA_SECURITY_PROTOCOL, ORDER_KAFKA_SASL_* and \
                         ORDER_KAFKA_SSL_CA_LOCATION)",
                        k.brokers
                    )))
                }
                Access::NoAnswer(why) => tracing::warn!(
                    brokers = %k.brokers,
                    error = %why,
                    "no Kafka broker answered at start-up; events wait in the outbox"
                ),
                Access::Granted => {
                    if let Err(e) = bus.ensure_topics().await {
                        tracing::warn!(error = %e, "could not create the Kafka topics at start-up; will retry on first use");
                    }
                }
            }
            Ok(Arc::new(bus))
        }
        None => Ok(Arc::new(open_embedded_bus(config)?)),
    }
}

/// Opens every adapter the configuration selects (not the bus).
pub async fn open_backends(config: &Config) -> Result<Backends, StartupError> {
    let lock = lock_database(config)?;
    let w = open_write_side(config).await?;
    let read_model = open_read_model(config).await?;
    Ok(Backends {
        event_store: w.event_store,
        outbox: w.outbox,
        leases: w.leases,
        dlq_store: w.dlq_store,
        dlq_revisions: w.dlq_revisions,
        audit_log: w.audit_log,
        replay_jobs: w.replay_jobs,
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
