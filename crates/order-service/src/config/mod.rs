//! Layered configuration: the compiled-in `config/default.toml` → the file
//! named by `ORDER_CONFIG_FILE` → `ORDER_*` environment variables. Every
//! value is validated here, at start-up; an error names the variable (or the
//! file key) so `main` can print one line and exit with code 2.
//!
//! One file per concern: [`layers`] (sources and typed reads), database and
//! bus settings, and auth credentials. [`Config`] stays one flat struct so
//! every caller reads `config.port`, `config.relay_batch_size`… as before.

mod auth;
mod database;
mod kafka;
mod keys;
mod layers;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::auth::{
    sha256, ApiKey, AuthPosture, AuthSettings, JwksSettings, JwtKey, JwtSettings, MIN_API_KEY_LEN,
};
pub use self::database::{DatabaseTarget, MongoSettings, SecretUrl};
pub use self::kafka::{KafkaProperties, KafkaSettings};
use self::layers::{Parser, Sources};
pub use self::layers::{CONFIG_FILE_VAR, DEFAULTS_TOML};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    pub database: DatabaseTarget,
    /// TLS to MySQL (`None`: as the URL says).
    pub database_tls: Option<order_store_mysql::Tls>,
    /// SQLite read model file (used when `mongo` is `None`).
    pub read_model_path: PathBuf,
    /// Embedded bus file (used when `kafka` is `None`).
    pub bus_path: PathBuf,
    pub kafka: Option<KafkaSettings>,
    pub mongo: Option<MongoSettings>,
    pub mysql_pool_size: u32,
    pub publish_max_attempts: u32,
    pub publish_backoff: Duration,
    pub test_endpoints: bool,
    pub topic_events: String,
    pub topic_dlq: String,
    /// Where a DLQ replay redelivers a consumer-side record to the one
    /// consumer group that failed it.
    pub topic_redelivery: String,
    pub projector_group: String,
    pub dlq_recorder_group: String,
    pub commit_batch_max: usize,
    /// Under load, how long a small group-commit batch waits for more.
    pub commit_linger: Duration,
    /// Group-commit transactions in flight (SQLite: always 1).
    pub commit_concurrency: usize,
    pub relay_batch_size: usize,
    pub relay_linger: Duration,
    /// Relay partitions of a new layout (SQLite: always 1).
    pub relay_partitions: u32,
    /// A relay partition lease, before [`Config::relay_lease`] raises it.
    pub relay_lease_configured: Duration,
    pub projector_linger: Duration,
    /// Replay parked retryable publish failures by itself once the bus is
    /// back (see `order_core::app::redrive`).
    pub dlq_auto_redrive: bool,
    /// Most sequence heads the automatic redrive replays per second.
    pub dlq_auto_redrive_rate: u32,
    /// Pause between the automatic redrive's scans.
    pub dlq_auto_redrive_interval: Duration,
    /// Replays of one head after which the redrive leaves it to an operator.
    pub dlq_auto_redrive_max_attempts: u32,
    /// Wait after a head's first failed automatic attempt (doubles).
    pub dlq_auto_redrive_backoff: Duration,
    /// Four eyes: a second admin approves each DLQ revision before a replay
    /// may send it.
    pub dlq_edit_approval: bool,
    /// Days a resolved DLQ record is kept (0: forever).
    pub dlq_retention_days: u32,
    /// Sequence heads a bulk replay job replays per second.
    pub dlq_job_rate: f64,
    /// A job stops once more than this share of its replays failed.
    pub dlq_job_max_failure_ratio: f64,
    /// A running job's lease; a dead instance's jobs resume after it.
    pub dlq_job_lease: Duration,
    pub command_timeout: Duration,
    pub max_body_bytes: usize,
    pub log: String,
    pub log_format: LogFormat,
    /// OTLP/HTTP collector to export traces to (`None`: off).
    pub otlp_endpoint: Option<String>,
    /// Who may call what (see `http::auth`).
    pub auth: AuthSettings,
}

impl Config {
    /// Loads from the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("ORDER_"))
            .collect();
        Self::from_env(&env)
    }

    /// Loads with `env` standing in for the environment (tests).
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_sources(&layers::merged(env)?)
    }

    /// The built-in defaults only.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::from_env(&HashMap::new())
    }

    /// A configuration for tests: everything in `dir`, any free port on
    /// loopback, short publish backoff.
    pub fn for_tests(dir: &Path) -> Result<Self, ConfigError> {
        let mut c = Self::defaults()?;
        c.bind = IpAddr::from([127, 0, 0, 1]);
        c.port = 0;
        c.database = DatabaseTarget::Sqlite(dir.join("orders.db"));
        c.read_model_path = dir.join("read-model.db");
        c.bus_path = dir.join("bus.db");
        c.publish_max_attempts = 2;
        c.publish_backoff = Duration::from_millis(5);
        c.test_endpoints = true;
        Ok(c)
    }

    fn from_sources(s: &Sources) -> Result<Self, ConfigError> {
        let p = Parser(&s.values);
        let storage = database::parse_storage(&p)?;
        let kafka = kafka::parse_kafka(&p, &s.kafka_properties)?;
        let mongo = database::parse_mongo(&p)?;
        let names = kafka::parse_names(&p)?;

        let log = p.required("log")?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.value) {
            return Err(ConfigError::new(format!(
                "{}: invalid log filter {:?}: {e}",
                log.source, log.value
            )));
        }
        let fmt_raw = p.required("log_format")?;
        let log_format = match fmt_raw.value.to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(ConfigError::new(format!(
                    "{}: invalid value {:?}: expected text or json",
                    fmt_raw.source, fmt_raw.value
                )))
            }
        };
        let otlp_endpoint = match p.get("otlp_endpoint") {
            None => None,
            Some(raw) => {
                let v = raw.value.trim().trim_end_matches('/');
                let authority = v
                    .strip_prefix("http://")
                    .and_then(|rest| rest.split('/').next())
                    .unwrap_or_default();
                if authority.is_empty() {
                    return Err(ConfigError::new(format!(
                        "{}: invalid value {:?}: expected http://HOST:PORT, the collector's \
                         OTLP/HTTP receiver (https is not supported: run the collector or an \
                         agent beside the service)",
                        raw.source, raw.value
                    )));
                }
                Some(v.to_owned())
            }
        };
        let bind_raw = p.required("bind")?;
        let bind = bind_raw.value.parse::<IpAddr>().map_err(|_| {
            ConfigError::new(format!(
                "{}: invalid value {:?}: expected an IP address such as 0.0.0.0 or 127.0.0.1",
                bind_raw.source, bind_raw.value
            ))
        })?;
        Ok(Config {
            bind,
            port: p.int("port", 0, u64::from(u16::MAX))? as u16,
            // Test endpoints are for demos and tests: on by default only with
            // the embedded bus.
            test_endpoints: p.bool("test_endpoints")?.unwrap_or(kafka.is_none()),
            database: storage.database,
            database_tls: storage.database_tls,
            read_model_path: storage.read_model_path,
            bus_path: storage.bus_path,
            kafka,
            mongo,
            mysql_pool_size: p.int("mysql_pool_size", 1, 1_000)? as u32,
            publish_max_attempts: p.int("publish_max_attempts", 1, 100)? as u32,
            publish_backoff: Duration::from_millis(p.int("publish_backoff_ms", 0, 600_000)?),
            topic_events: names.topic_events,
            topic_dlq: names.topic_dlq,
            topic_redelivery: names.topic_redelivery,
            projector_group: names.projector_group,
            dlq_recorder_group: names.dlq_recorder_group,
            commit_batch_max: p.int("commit_batch_max", 1, 100_000)? as usize,
            commit_linger: Duration::from_micros(p.int("commit_linger_us", 0, 100_000)?),
            commit_concurrency: p.int("commit_concurrency", 1, 64)? as usize,
            relay_batch_size: p.int("relay_batch_size", 1, 100_000)? as usize,
            relay_linger: Duration::from_millis(p.int("relay_linger_ms", 0, 1_000)?),
            relay_partitions: p.int("relay_partitions", 1, u64::from(order_core::ports::BUCKETS))?
                as u32,
            relay_lease_configured: Duration::from_millis(p.int(
                "relay_lease_ms",
                1_000,
                600_000,
            )?),
            projector_linger: Duration::from_millis(p.int("projector_linger_ms", 0, 5_000)?),
            dlq_auto_redrive: p.bool("dlq_auto_redrive")?.unwrap_or(false),
            dlq_auto_redrive_rate: p.int("dlq_auto_redrive_rate", 1, 100_000)? as u32,
            dlq_auto_redrive_interval: Duration::from_millis(p.int(
                "dlq_auto_redrive_interval_ms",
                100,
                86_400_000,
            )?),
            dlq_auto_redrive_max_attempts: p.int("dlq_auto_redrive_max_attempts", 1, 1_000)? as u32,
            dlq_auto_redrive_backoff: Duration::from_millis(p.int(
                "dlq_auto_redrive_backoff_ms",
                0,
                3_600_000,
            )?),
            dlq_edit_approval: p.bool("dlq_edit_approval")?.unwrap_or(false),
            dlq_retention_days: p.int("dlq_retention_days", 0, 3_650)? as u32,
            dlq_job_rate: p.float("dlq_job_rate", 0.01, 100_000.0)?,
            dlq_job_max_failure_ratio: p.float("dlq_job_max_failure_ratio", 0.0, 1.0)?,
            dlq_job_lease: Duration::from_millis(p.int("dlq_job_lease_ms", 1_000, 3_600_000)?),
            command_timeout: Duration::from_millis(p.int("command_timeout_ms", 1, 600_000)?),
            max_body_bytes: p.int("max_body_bytes", 1024, 64 * 1024 * 1024)? as usize,
            log: log.value.clone(),
            log_format,
            otlp_endpoint,
            auth: auth::parse_auth(&p)?,
        })
    }

    /// The longest one relay batch may take to publish: every attempt
    /// timing out, plus the backoffs between them.
    pub fn publish_budget(&self) -> Duration {
        let timeout = self
            .kafka
            .as_ref()
            .map_or(Duration::from_secs(1), |k| k.publish_timeout);
        let policy = order_core::app::RetryPolicy {
            max_attempts: self.publish_max_attempts,
            backoff: self.publish_backoff,
        };
        let backoffs: Duration = (1..self.publish_max_attempts)
            .map(|a| policy.delay_after(a))
            .sum();
        timeout * self.publish_max_attempts + backoffs
    }

    /// The relay partition lease: as configured, raised to 1.5 times the
    /// [`publish_budget`](Self::publish_budget) so a batch that started
    /// sending finishes before its lease can run out.
    pub fn relay_lease(&self) -> Duration {
        self.relay_lease_configured
            .max(self.publish_budget() * 3 / 2)
    }

    /// The partitions of a new relay layout: one on SQLite (one process).
    pub fn relay_partition_count(&self) -> u32 {
        match self.database {
            DatabaseTarget::Sqlite(_) => 1,
            DatabaseTarget::MySql(_) => self.relay_partitions,
        }
    }

    /// The SQLite file of the event store, when the database is SQLite.
    pub fn sqlite_database_path(&self) -> Option<&Path> {
        match &self.database {
            DatabaseTarget::Sqlite(p) => Some(p),
            DatabaseTarget::MySql(_) => None,
        }
    }
}

#[cfg(test)]
mod test_support {
    use std::collections::HashMap;

    use super::Config;

    pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    pub fn err(pairs: &[(&str, &str)]) -> String {
        match Config::from_env(&env(pairs)) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{env, err};
    use super::*;

    #[test]
    fn the_built_in_defaults_are_the_documented_ones() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.port, 8084);
        assert_eq!(c.bind, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(
            c.database,
            DatabaseTarget::Sqlite(PathBuf::from("data/orders.db"))
        );
        assert_eq!(c.read_model_path, PathBuf::from("data/read-model.db"));
        assert_eq!(c.bus_path, PathBuf::from("data/bus.db"));
        assert_eq!(c.publish_max_attempts, 3);
        assert_eq!(c.publish_backoff, Duration::from_millis(1000));
        assert!(c.test_endpoints);
        assert_eq!(c.topic_events, "order-events");
        assert_eq!(c.topic_dlq, "order-events-dlq");
        assert_eq!(c.projector_group, "order-projector");
        assert_eq!(c.dlq_recorder_group, "order-dlq-recorder");
        assert_eq!(c.commit_batch_max, 512);
        assert_eq!(c.relay_batch_size, 500);
        assert_eq!(c.command_timeout, Duration::from_millis(5000));
        assert_eq!(c.max_body_bytes, 262_144);
        assert_eq!(c.log, "info");
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn environment_variables_override_the_defaults() {
        let c = Config::from_env(&env(&[
            ("ORDER_PORT", "9000"),
            ("ORDER_BIND", "127.0.0.1"),
            ("ORDER_DATABASE_URL", "sqlite:///var/lib/orders/o.db"),
            ("ORDER_PUBLISH_MAX_ATTEMPTS", "5"),
            ("ORDER_PUBLISH_BACKOFF_MS", "10"),
            ("ORDER_TEST_ENDPOINTS", "false"),
            ("ORDER_LOG_FORMAT", "JSON"),
        ]))
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            c.sqlite_database_path(),
            Some(Path::new("/var/lib/orders/o.db"))
        );
        assert_eq!(
            c.read_model_path,
            PathBuf::from("/var/lib/orders/read-model.db")
        );
        assert_eq!(c.bus_path, PathBuf::from("/var/lib/orders/bus.db"));
        assert_eq!(c.publish_max_attempts, 5);
        assert_eq!(c.publish_backoff, Duration::from_millis(10));
        assert!(!c.test_endpoints);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn a_port_out_of_range_is_rejected() {
        let e = err(&[("ORDER_PORT", "70000")]);
        assert!(e.contains("ORDER_PORT") && e.contains("0 to 65535"), "{e}");
    }

    #[test]
    fn an_invalid_bind_address_is_rejected() {
        let e = err(&[("ORDER_BIND", "localhost:80")]);
        assert!(e.starts_with("ORDER_BIND"), "{e}");
    }

    #[test]
    fn replay_job_settings_have_defaults_and_ranges() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.dlq_job_rate, 500.0);
        assert_eq!(c.dlq_job_max_failure_ratio, 0.5);
        assert_eq!(c.dlq_job_lease, Duration::from_secs(30));
        let c = Config::from_env(&env(&[
            ("ORDER_DLQ_JOB_RATE", "0.5"),
            ("ORDER_DLQ_JOB_MAX_FAILURE_RATIO", "1"),
            ("ORDER_DLQ_JOB_LEASE_MS", "2000"),
        ]))
        .unwrap();
        assert_eq!(c.dlq_job_rate, 0.5);
        assert_eq!(c.dlq_job_max_failure_ratio, 1.0);
        assert_eq!(c.dlq_job_lease, Duration::from_secs(2));
        for (k, v) in [
            ("ORDER_DLQ_JOB_RATE", "0"),
            ("ORDER_DLQ_JOB_RATE", "NaN"),
            ("ORDER_DLQ_JOB_RATE", "fast"),
            ("ORDER_DLQ_JOB_MAX_FAILURE_RATIO", "1.5"),
            ("ORDER_DLQ_JOB_MAX_FAILURE_RATIO", "-0.1"),
            ("ORDER_DLQ_JOB_LEASE_MS", "999"),
        ] {
            let e = err(&[(k, v)]);
            assert!(e.starts_with(k), "{k}={v}: {e}");
        }
    }

    #[test]
    fn publish_attempts_must_be_at_least_one() {
        let e = err(&[("ORDER_PUBLISH_MAX_ATTEMPTS", "0")]);
        assert!(e.starts_with("ORDER_PUBLISH_MAX_ATTEMPTS"), "{e}");
    }

    #[test]
    fn a_negative_backoff_is_rejected() {
        let e = err(&[("ORDER_PUBLISH_BACKOFF_MS", "-5")]);
        assert!(e.starts_with("ORDER_PUBLISH_BACKOFF_MS"), "{e}");
    }

    #[test]
    fn the_automatic_redrive_is_off_by_default_and_configurable() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert!(!c.dlq_auto_redrive);
        assert_eq!(c.dlq_auto_redrive_rate, 100);
        assert_eq!(c.dlq_auto_redrive_interval, Duration::from_secs(10));
        assert_eq!(c.dlq_auto_redrive_max_attempts, 10);
        assert_eq!(c.dlq_retention_days, 0, "retention is off by default");
        assert_eq!(c.dlq_auto_redrive_backoff, Duration::from_secs(30));
        let c = Config::from_env(&env(&[
            ("ORDER_DLQ_AUTO_REDRIVE", "true"),
            ("ORDER_DLQ_AUTO_REDRIVE_RATE", "3"),
            ("ORDER_DLQ_AUTO_REDRIVE_INTERVAL_MS", "500"),
        ]))
        .unwrap();
        assert!(c.dlq_auto_redrive);
        assert_eq!(c.dlq_auto_redrive_rate, 3);
        assert_eq!(c.dlq_auto_redrive_interval, Duration::from_millis(500));
        for (var, bad) in [
            ("ORDER_DLQ_AUTO_REDRIVE", "sometimes"),
            ("ORDER_DLQ_AUTO_REDRIVE_RATE", "0"),
            ("ORDER_DLQ_AUTO_REDRIVE_INTERVAL_MS", "0"),
        ] {
            let e = err(&[(var, bad)]);
            assert!(e.starts_with(var), "{e}");
        }
    }

    #[test]
    fn test_endpoints_must_be_a_boolean() {
        let e = err(&[("ORDER_TEST_ENDPOINTS", "maybe")]);
        assert!(e.starts_with("ORDER_TEST_ENDPOINTS"), "{e}");
    }

    #[test]
    fn batch_sizes_and_timeouts_must_be_in_range() {
        for var in [
            "ORDER_COMMIT_BATCH_MAX",
            "ORDER_RELAY_BATCH_SIZE",
            "ORDER_COMMAND_TIMEOUT_MS",
        ] {
            let e = err(&[(var, "0")]);
            assert!(e.starts_with(var), "{e}");
        }
    }

    #[test]
    fn a_tiny_body_limit_is_rejected() {
        let e = err(&[("ORDER_MAX_BODY_BYTES", "10")]);
        assert!(e.starts_with("ORDER_MAX_BODY_BYTES"), "{e}");
    }

    #[test]
    fn an_invalid_log_filter_is_rejected() {
        let e = err(&[("ORDER_LOG", "info,[[[")]);
        assert!(e.starts_with("ORDER_LOG"), "{e}");
    }

    #[test]
    fn the_otlp_endpoint_is_off_by_default_and_must_be_http() {
        assert_eq!(Config::defaults().unwrap().otlp_endpoint, None);
        let c =
            Config::from_env(&env(&[("ORDER_OTLP_ENDPOINT", "http://collector:4318/")])).unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://collector:4318"));
        for bad in [
            "https://collector:4318",
            "collector:4318",
            "http://",
            "http:///v1",
        ] {
            let e = err(&[("ORDER_OTLP_ENDPOINT", bad)]);
            assert!(e.starts_with("ORDER_OTLP_ENDPOINT"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_unknown_log_format_is_rejected() {
        let e = err(&[("ORDER_LOG_FORMAT", "xml")]);
        assert!(e.starts_with("ORDER_LOG_FORMAT"), "{e}");
    }
}
