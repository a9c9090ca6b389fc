//! Which backends the spawned service runs on: the embedded default (SQLite
//! files and the embedded bus) or the production stack (MySQL/MariaDB, a
//! Kafka-protocol broker and a MongoDB-protocol server), each run with fresh
//! database, topic and consumer-group names.

use clap::ValueEnum;

use crate::{Error, Result};

/// `--profile`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// Fresh SQLite file, embedded bus and read model (no external services).
    #[default]
    Embedded,
    /// MySQL/MariaDB + Kafka + MongoDB, fresh names per run.
    Production,
    /// A fresh MySQL/MariaDB database for the event store, with the
    /// embedded bus and the SQLite read model (no Kafka, no MongoDB): the
    /// cost of the MySQL adapter alone.
    Mysql,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Embedded => "embedded",
            Profile::Production => "production",
            Profile::Mysql => "mysql",
        }
    }

    /// Whether the service runs on a MySQL/MariaDB database of its own.
    pub fn uses_mysql(self) -> bool {
        matches!(self, Profile::Production | Profile::Mysql)
    }
}

/// Used when neither `--mysql-url` nor `ORDER_TEST_MYSQL_URL` is given.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";
pub const ENV_MYSQL_URL: &str = "ORDER_TEST_MYSQL_URL";
pub const ENV_KAFKA_BROKERS: &str = "ORDER_TEST_KAFKA_BROKERS";
pub const ENV_MONGODB_URI: &str = "ORDER_TEST_MONGODB_URI";
/// Tansu completes a group join only after the rebalance timeout, which
/// librdkafka derives from `max.poll.interval.ms`: keep it short.
pub const MAX_POLL_INTERVAL_MS: u32 = 6000;

/// Where the production backends are (all loopback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    /// Server URL without a database, e.g. `mysql://root@127.0.0.1:3306`.
    pub mysql_server: String,
    /// Query string of the MySQL URL (`?…`), kept for every database URL.
    pub mysql_query: String,
    /// `host:port[,host:port…]`.
    pub kafka_brokers: String,
    pub mongodb_uri: String,
}

impl Backends {
    /// The option when given, else the environment variable, else (MySQL
    /// only) the built-in default. `env` stands in for the environment.
    /// `mysql_only` (the MySQL profile) resolves the MySQL server alone and
    /// leaves the Kafka and MongoDB addresses empty.
    pub fn resolve(
        mysql_only: bool,
        mysql: Option<&str>,
        kafka: Option<&str>,
        mongodb: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Backends> {
        let pick = |given: Option<&str>, var: &str| -> Option<String> {
            given
                .map(str::to_owned)
                .or_else(|| env(var))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mysql = pick(mysql, ENV_MYSQL_URL).unwrap_or_else(|| DEFAULT_MYSQL_URL.to_owned());
        let (mysql_server, mysql_query) = split_mysql_url(&mysql)?;
        if mysql_only {
            return Ok(Backends {
                mysql_server,
                mysql_query,
                kafka_brokers: String::new(),
                mongodb_uri: String::new(),
            });
        }
        let kafka = pick(kafka, ENV_KAFKA_BROKERS).ok_or_else(|| {
            Error::msg(format!(
                "--profile production needs a Kafka broker: pass --kafka-brokers 127.0.0.1:PORT \
                 or set {ENV_KAFKA_BROKERS} (e.g. eval \"$(scripts/services.sh start)\")"
            ))
        })?;
        let mongodb = pick(mongodb, ENV_MONGODB_URI).ok_or_else(|| {
            Error::msg(format!(
                "--profile production needs a MongoDB server: pass --mongodb-uri \
                 mongodb://127.0.0.1:PORT or set {ENV_MONGODB_URI} (e.g. eval \"$(scripts/services.sh start)\")"
            ))
        })?;

        for broker in kafka.split(',') {
            let broker = broker.trim();
            let host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
            require_loopback("--kafka-brokers", broker, host)?;
        }
        let mongo_rest = mongodb.strip_prefix("mongodb://").ok_or_else(|| {
            Error::msg(format!("--mongodb-uri {mongodb:?}: expected mongodb://…"))
        })?;
        let authority = mongo_rest.split(['/', '?']).next().unwrap_or("");
        let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        for h in hosts.split(',') {
            require_loopback("--mongodb-uri", &mongodb, host_of(h))?;
        }
        Ok(Backends {
            mysql_server,
            mysql_query,
            kafka_brokers: kafka,
            mongodb_uri: mongodb,
        })
    }

    /// URL of database `name` on the MySQL server.
    pub fn mysql_database_url(&self, name: &str) -> String {
        format!("{}/{name}{}", self.mysql_server, self.mysql_query)
    }

    /// URL of the server with no database selected.
    pub fn mysql_server_url(&self) -> String {
        format!("{}/{}", self.mysql_server, self.mysql_query)
    }
}

/// Splits `mysql://user@host:port[/][?query]` into the server part and the
/// query; a database in the path is refused (each run makes its own).
fn split_mysql_url(url: &str) -> Result<(String, String)> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let rest = base
        .strip_prefix("mysql://")
        .or_else(|| base.strip_prefix("mariadb://"))
        .ok_or_else(|| Error::msg(format!("--mysql-url {url:?}: expected mysql://…")))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() {
        return Err(Error::msg(format!(
            "--mysql-url {url:?}: give the server without a database (each run creates its own)"
        )));
    }
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    require_loopback("--mysql-url", url, host_of(hostport))?;
    let scheme_len = base.len() - rest.len();
    Ok((format!("{}{authority}", &base[..scheme_len]), query))
}

/// The host of `host[:port]` or `[v6]:port`.
fn host_of(hostport: &str) -> &str {
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    hostport.split(':').next().unwrap_or("")
}

fn require_loopback(option: &str, value: &str, host: &str) -> Result<()> {
    match host {
        "127.0.0.1" | "localhost" | "::1" => Ok(()),
        _ => Err(Error::msg(format!(
            "{option} {value:?}: host {host:?} refused; the benchmark only talks to loopback"
        ))),
    }
}

/// Fresh names for one run, so runs never share state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunNames {
    pub mysql_database: String,
    pub raw_database: String,
    pub topic_events: String,
    pub topic_dlq: String,
    pub projector_group: String,
    pub dlq_recorder_group: String,
    pub mongodb_database: String,
}

impl RunNames {
    /// Names built from `suffix` (letters and digits).
    pub fn with_suffix(suffix: &str) -> RunNames {
        RunNames {
            mysql_database: format!("order_bench_{suffix}"),
            raw_database: format!("order_bench_raw_{suffix}"),
            topic_events: format!("order-bench-{suffix}-events"),
            topic_dlq: format!("order-bench-{suffix}-events-dlq"),
            projector_group: format!("order-bench-{suffix}-projector"),
            dlq_recorder_group: format!("order-bench-{suffix}-dlq-recorder"),
            mongodb_database: format!("order_bench_{suffix}"),
        }
    }

    pub fn fresh() -> RunNames {
        let id = uuid::Uuid::new_v4().simple().to_string();
        RunNames::with_suffix(&id[..12])
    }
}

/// The environment the production service is spawned with.
pub fn service_env(b: &Backends, n: &RunNames) -> Vec<(&'static str, String)> {
    vec![
        (
            "ORDER_DATABASE_URL",
            b.mysql_database_url(&n.mysql_database),
        ),
        ("ORDER_KAFKA_BROKERS", b.kafka_brokers.clone()),
        // The benchmark measures the pipeline, not authentication.
        ("ORDER_AUTH_DISABLED", "true".to_owned()),
        ("ORDER_TOPIC_EVENTS", n.topic_events.clone()),
        ("ORDER_TOPIC_DLQ", n.topic_dlq.clone()),
        ("ORDER_PROJECTOR_GROUP", n.projector_group.clone()),
        ("ORDER_DLQ_RECORDER_GROUP", n.dlq_recorder_group.clone()),
        (
            "ORDER_KAFKA_MAX_POLL_INTERVAL_MS",
            MAX_POLL_INTERVAL_MS.to_string(),
        ),
        ("ORDER_MONGODB_URI", b.mongodb_uri.clone()),
        ("ORDER_MONGODB_DATABASE", n.mongodb_database.clone()),
    ]
}

/// The environment the MySQL profile's service is spawned with: the event
/// store on a fresh database; the embedded bus and the read model stay on
/// SQLite files (see [`crate::service::Service::spawn`]).
pub fn mysql_service_env(b: &Backends, n: &RunNames) -> Vec<(&'static str, String)> {
    vec![
        (
            "ORDER_DATABASE_URL",
            b.mysql_database_url(&n.mysql_database),
        ),
        ("ORDER_AUTH_DISABLED", "true".to_owned()),
    ]
}

/// One line naming the MySQL profile's backends, for the report.
pub fn describe_mysql(b: &Backends, n: &RunNames) -> String {
    format!(
        "MariaDB/MySQL {}, embedded bus and SQLite read model",
        b.mysql_database_url(&n.mysql_database)
    )
}

/// One line naming the backends, for the report.
pub fn describe(b: &Backends, n: &RunNames) -> String {
    format!(
        "MariaDB/MySQL {}, Kafka {} (topics {} / {}), MongoDB {} (database {})",
        b.mysql_database_url(&n.mysql_database),
        b.kafka_brokers,
        n.topic_events,
        n.topic_dlq,
        b.mongodb_uri,
        n.mongodb_database
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_with(var: &str) -> Option<String> {
        match var {
            ENV_MYSQL_URL => Some("mysql://root@127.0.0.1:3307".into()),
            ENV_KAFKA_BROKERS => Some("127.0.0.1:9092".into()),
            ENV_MONGODB_URI => Some("mongodb://127.0.0.1:27017".into()),
            _ => None,
        }
    }

    #[test]
    fn options_win_over_the_environment_and_mysql_has_a_default() {
        let b = Backends::resolve(
            false,
            None,
            Some("localhost:1"),
            Some("mongodb://localhost:2"),
            no_env,
        );
        let b = b.map_err(|e| e.to_string());
        assert_eq!(
            b.as_ref().map(|b| b.mysql_server.as_str()),
            Ok(DEFAULT_MYSQL_URL)
        );
        assert_eq!(b.map(|b| b.kafka_brokers), Ok("localhost:1".to_owned()));

        let e = Backends::resolve(false, Some("mysql://u@127.0.0.1:1"), None, None, env_with);
        let e = e.map_err(|e| e.to_string());
        assert_eq!(
            e.as_ref().map(|b| b.mysql_server.as_str()),
            Ok("mysql://u@127.0.0.1:1")
        );
        assert_eq!(
            e.map(|b| b.mongodb_uri),
            Ok("mongodb://127.0.0.1:27017".to_owned())
        );
    }

    #[test]
    fn a_missing_broker_or_mongo_server_is_a_clear_error() {
        let e = Backends::resolve(false, None, None, Some("mongodb://127.0.0.1:1"), no_env);
        assert!(e.is_err_and(|e| e.to_string().contains("--kafka-brokers")
            && e.to_string().contains(ENV_KAFKA_BROKERS)));
        let e = Backends::resolve(false, None, Some("127.0.0.1:1"), None, no_env);
        assert!(e.is_err_and(|e| e.to_string().contains(ENV_MONGODB_URI)));
    }

    #[test]
    fn non_loopback_backends_are_refused() {
        let ok_k = Some("127.0.0.1:1");
        let ok_m = Some("mongodb://127.0.0.1:2");
        assert!(Backends::resolve(
            false,
            Some("mysql://root@10.0.0.1:3306"),
            ok_k,
            ok_m,
            no_env
        )
        .is_err());
        assert!(
            Backends::resolve(false, None, Some("127.0.0.1:1,kafka:9092"), ok_m, no_env).is_err()
        );
        assert!(Backends::resolve(
            false,
            None,
            ok_k,
            Some("mongodb://u:p@db.example:27017/x"),
            no_env
        )
        .is_err());
        assert!(Backends::resolve(
            false,
            None,
            ok_k,
            Some("mongodb://u:p@[::1]:27017/x"),
            no_env
        )
        .is_ok());
    }

    #[test]
    fn the_database_goes_between_the_server_and_the_query() {
        let b = Backends::resolve(
            false,
            Some("mysql://root:pw@127.0.0.1:3306/?ssl-mode=disabled"),
            Some("127.0.0.1:1"),
            Some("mongodb://127.0.0.1:2"),
            no_env,
        );
        let b = b.map_err(|e| e.to_string());
        assert_eq!(
            b.as_ref().map(|b| b.mysql_database_url("db1")),
            Ok("mysql://root:pw@127.0.0.1:3306/db1?ssl-mode=disabled".to_owned())
        );
        assert_eq!(
            b.map(|b| b.mysql_server_url()),
            Ok("mysql://root:pw@127.0.0.1:3306/?ssl-mode=disabled".to_owned())
        );
    }

    #[test]
    fn a_mysql_url_naming_a_database_is_refused() {
        let e = Backends::resolve(
            false,
            Some("mysql://root@127.0.0.1:3306/orders"),
            Some("127.0.0.1:1"),
            Some("mongodb://127.0.0.1:2"),
            no_env,
        );
        assert!(e.is_err_and(|e| e.to_string().contains("without a database")));
    }

    #[test]
    fn the_service_gets_fresh_names_and_a_short_poll_interval() {
        let b = Backends::resolve(false, None, None, None, env_with);
        let Ok(b) = b else { panic!("{b:?}") };
        let n = RunNames::with_suffix("abc");
        let env = service_env(&b, &n);
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("ORDER_DATABASE_URL"),
            Some("mysql://root@127.0.0.1:3307/order_bench_abc")
        );
        assert_eq!(get("ORDER_TOPIC_EVENTS"), Some("order-bench-abc-events"));
        assert_eq!(get("ORDER_TOPIC_DLQ"), Some("order-bench-abc-events-dlq"));
        assert_ne!(
            get("ORDER_PROJECTOR_GROUP"),
            get("ORDER_DLQ_RECORDER_GROUP")
        );
        assert_eq!(get("ORDER_KAFKA_MAX_POLL_INTERVAL_MS"), Some("6000"));
        assert_eq!(get("ORDER_MONGODB_DATABASE"), Some("order_bench_abc"));
        assert_eq!(get("ORDER_AUTH_DISABLED"), Some("true"));
        assert_eq!(env.len(), 10);
    }

    #[test]
    fn the_mysql_profile_needs_no_broker_and_no_mongodb() {
        let b = Backends::resolve(
            true,
            Some("mysql://root@127.0.0.1:3306"),
            None,
            None,
            no_env,
        );
        let Ok(b) = b else { panic!("{b:?}") };
        assert_eq!(b.kafka_brokers, "");
        assert_eq!(b.mongodb_uri, "");
        let n = RunNames::with_suffix("abc");
        let env = mysql_service_env(&b, &n);
        assert_eq!(
            env,
            vec![
                (
                    "ORDER_DATABASE_URL",
                    "mysql://root@127.0.0.1:3306/order_bench_abc".to_owned()
                ),
                ("ORDER_AUTH_DISABLED", "true".to_owned()),
            ]
        );
        // Only loopback, as in the production profile.
        let e = Backends::resolve(
            true,
            Some("mysql://root@db.example:3306"),
            None,
            None,
            no_env,
        );
        assert!(e.is_err_and(|e| e.to_string().contains("loopback")));
    }

    #[test]
    fn fresh_names_differ_between_runs_and_are_plain_identifiers() {
        let (a, b) = (RunNames::fresh(), RunNames::fresh());
        assert_ne!(a, b);
        assert!(a
            .mysql_database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_ne!(a.mysql_database, a.raw_database);
    }
}
