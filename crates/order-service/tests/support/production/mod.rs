//! Support of the production-backend end-to-end tests: the real
//! `order-service` binary against MariaDB, a Kafka-protocol broker (Tansu)
//! and the nx-27017 MongoDB server, each test on its own database, Mongo
//! database, topics and consumer groups; an own Tansu broker a test can
//! freeze; an independent Kafka consumer.
//!
//! * this module: the shared services, the names a test's service uses and
//!   the service process ([`ProdService`]);
//! * `broker`: the test's own Tansu [`Broker`](broker::Broker);
//! * `consumer`: the independent Kafka consumer and what it saw.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use order_bus_kafka::{KafkaBus, KafkaConfig};
use order_core::domain::EventEnvelope;
use serde_json::Value;

use super::metrics::metric;
use super::process::{free_port, kill9, read_log, service_command, wait_until_ready};
use super::Response;

pub mod broker;
pub mod consumer;

/// Rebalance timeout of every consumer (Tansu completes a group join only
/// after it).
pub const MAX_POLL_INTERVAL_MS: u64 = 6000;

/// The shared services `scripts/services.sh start` exported.
pub struct Services {
    pub mysql_url: String,
    pub kafka_brokers: String,
    pub mongodb_uri: String,
}

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => panic!(
            "{name} is not set: the production end-to-end tests need MariaDB, a Kafka-protocol \
             broker and the MongoDB wire server. Run them with ./scripts/test.sh, or start the \
             services first with `eval \"$(scripts/services.sh start)\"`"
        ),
    }
}

impl Services {
    /// Fails (never skips) when the services are not configured.
    pub fn from_env() -> Services {
        Services {
            mysql_url: required("ORDER_TEST_MYSQL_URL")
                .trim_end_matches('/')
                .to_owned(),
            kafka_brokers: required("ORDER_TEST_KAFKA_BROKERS"),
            mongodb_uri: required("ORDER_TEST_MONGODB_URI"),
        }
    }
}

pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    // The random tail of a v7 uuid: unique among concurrent tests.
    format!("{prefix}_{}", &id[id.len() - 16..])
}

/// A `mysql` client command connected over TCP to the server of
/// `mysql_url` (`mysql://user[:password]@host[:port]`) as its user; the
/// caller adds what to run.
pub fn mysql_client(mysql_url: &str) -> Command {
    let rest = mysql_url.split_once("://").map_or(mysql_url, |(_, r)| r);
    let (auth, host) = rest.split_once('@').unwrap_or(("root", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (host, port) = host.split_once(':').unwrap_or((host, "3306"));
    let mut cmd = Command::new("mysql");
    cmd.args([
        "--protocol=tcp",
        &format!("-h{host}"),
        &format!("-P{port}"),
        &format!("-u{user}"),
    ]);
    if !password.is_empty() {
        cmd.env("MYSQL_PWD", password);
    }
    cmd
}

// --- HTTP ----------------------------------------------------------------------

/// One HTTP/1.1 request on a fresh connection, bounded by 30 s.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, String> {
    tokio::time::timeout(
        Duration::from_secs(30),
        super::call(addr, method, path, body, &[]),
    )
    .await
    .map_err(|_| format!("{method} {path}: no answer within 30 s"))?
}

// --- The service -----------------------------------------------------------------

/// Names a test's service uses: its own database, Mongo database, topics
/// and consumer groups.
#[derive(Clone, Debug)]
pub struct Names {
    pub database: String,
    pub mongo_database: String,
    pub events_topic: String,
    pub dlq_topic: String,
    pub projector_group: String,
    pub dlq_recorder_group: String,
}

impl Names {
    pub fn unique() -> Names {
        let tag = unique("e2e");
        Names {
            database: tag.clone(),
            mongo_database: format!("{tag}_read"),
            events_topic: format!("{tag}-order-events"),
            dlq_topic: format!("{tag}-order-events-dlq"),
            projector_group: format!("{tag}-projector"),
            dlq_recorder_group: format!("{tag}-dlq-recorder"),
        }
    }
}

/// A running service process on MariaDB + Kafka + MongoDB. On drop it is
/// killed and its MariaDB database dropped; a failing test prints the end
/// of its log.
pub struct ProdService {
    pub addr: SocketAddr,
    pub names: Names,
    mysql_url: String,
    mongodb_uri: String,
    brokers: String,
    extra: Vec<(String, String)>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Whether dropping this instance drops the database (the first of
    /// several instances on one database does).
    owns_database: bool,
    /// Restarts so far (each appends to the same log).
    pub restarts: u32,
}

impl ProdService {
    /// Starts the binary against `brokers` with `extra` settings on top of
    /// the test defaults, and waits until it is ready.
    pub async fn start(services: &Services, brokers: &str, extra: &[(&str, &str)]) -> ProdService {
        Self::start_named(services, brokers, Names::unique(), extra, true).await
    }

    /// Another instance on the same database, topics and groups as `self`
    /// (its own port and log); dropping it leaves the database to `self`.
    pub async fn another(&self, extra: &[(&str, &str)]) -> ProdService {
        let services = Services {
            mysql_url: self.mysql_url.clone(),
            kafka_brokers: self.brokers.clone(),
            mongodb_uri: self.mongodb_uri.clone(),
        };
        Self::start_named(&services, &self.brokers, self.names.clone(), extra, false).await
    }

    /// Starts an instance with the given names.
    pub async fn start_named(
        services: &Services,
        brokers: &str,
        names: Names,
        extra: &[(&str, &str)],
        owns_database: bool,
    ) -> ProdService {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut svc = ProdService {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            names,
            mysql_url: services.mysql_url.clone(),
            mongodb_uri: services.mongodb_uri.clone(),
            brokers: brokers.to_owned(),
            extra: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            dir,
            child: None,
            owns_database,
            restarts: 0,
        };
        svc.spawn().await;
        svc
    }

    /// `kill -9` of the process (no shutdown of any kind).
    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`…) to the process.
    fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let sent = std::process::Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status()
                .expect("kill runs");
            assert!(sent.success(), "kill -{signal} {}", c.id());
        }
    }

    /// Freezes the process (`SIGSTOP`): it neither runs nor dies.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen process run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Graceful shutdown (`SIGTERM`), waiting up to 40 s for the exit.
    pub async fn terminate(&mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(40);
        while self.is_running() {
            assert!(Instant::now() < deadline, "no exit 40 s after SIGTERM");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.child = None;
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the process again (after [`kill9`](Self::kill9)) on the same
    /// port, names and settings, and waits until it is ready.
    pub async fn restart(&mut self) {
        self.kill9();
        self.restarts += 1;
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let names = &self.names;
        let port = self.addr.port();
        let mut cmd = service_command(port, &self.log_path());
        cmd.env(
            "ORDER_DATABASE_URL",
            format!("{}/{}", self.mysql_url, names.database),
        )
        .env("ORDER_MYSQL_POOL_SIZE", "8")
        .env("ORDER_KAFKA_BROKERS", &self.brokers)
        .env("ORDER_MONGODB_URI", &self.mongodb_uri)
        .env("ORDER_MONGODB_DATABASE", &names.mongo_database)
        .env("ORDER_TOPIC_EVENTS", &names.events_topic)
        .env("ORDER_TOPIC_DLQ", &names.dlq_topic)
        .env("ORDER_PROJECTOR_GROUP", &names.projector_group)
        .env("ORDER_DLQ_RECORDER_GROUP", &names.dlq_recorder_group)
        .env(
            "ORDER_KAFKA_MAX_POLL_INTERVAL_MS",
            MAX_POLL_INTERVAL_MS.to_string(),
        )
        .env("ORDER_TEST_ENDPOINTS", "true")
        .env("ORDER_AUTH_DISABLED", "true")
        .env(
            "ORDER_LOG",
            std::env::var("E2E_SERVICE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .current_dir(self.dir.path());
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("the service starts"));
        let addr = self.addr;
        let log_path = self.log_path();
        wait_until_ready(
            &mut self.child,
            60,
            Duration::from_millis(100),
            move || async move {
                matches!(call(addr, "GET", "/health/ready", None).await, Ok(r) if r.status == 200)
            },
            || read_log(&log_path),
        )
        .await;
    }

    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("service.log")
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        call(self.addr, method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.call("GET", path, None).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        r.json()
    }

    pub async fn dlq_stats(&self) -> Value {
        self.get_json("/api/dlq/stats").await
    }

    /// Every DLQ record with `status` (up to 100, the largest page).
    pub async fn dlq_records(&self, status: &str) -> Vec<Value> {
        self.get_json(&format!("/api/dlq/status/{status}?size=100"))
            .await["content"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A gauge or counter of `/metrics` without labels.
    pub async fn metric(&self, name: &str) -> f64 {
        metric(&self.call("GET", "/metrics", None).await.text, name)
    }

    /// Waits until the outbox is empty (`orders_outbox_pending` 0), for at
    /// most `secs`.
    pub async fn outbox_drained(&self, secs: u64) {
        eventually(secs, "the outbox drained", || async {
            let pending = self.metric("orders_outbox_pending").await;
            if pending == 0.0 {
                Ok(())
            } else {
                Err(format!("outbox pending {pending}"))
            }
        })
        .await;
    }

    /// The event store's history of an order.
    pub async fn history(&self, order_id: &str) -> Vec<EventEnvelope> {
        let r = self
            .call("GET", &format!("/api/orders/{order_id}/events"), None)
            .await;
        assert_eq!(r.status, 200, "history of {order_id}: {}", r.text);
        serde_json::from_str(&r.text).expect("a list of event envelopes")
    }

    /// A client of the service's broker, topics as the service's: the
    /// independent consumer and the poison producer of the tests.
    pub async fn kafka_client(&self, brokers: &str) -> KafkaBus {
        let mut cfg = KafkaConfig::new(brokers);
        cfg.client_id = "e2e-production-checker".to_owned();
        cfg.events_topic = self.names.events_topic.clone();
        cfg.dlq_topic = self.names.dlq_topic.clone();
        cfg.max_poll_interval = Duration::from_millis(MAX_POLL_INTERVAL_MS);
        KafkaBus::connect(cfg).await.expect("kafka client")
    }

    fn drop_database(&self) {
        let mut cmd = mysql_client(&self.mysql_url);
        cmd.args([
            "-e",
            &format!("DROP DATABASE IF EXISTS `{}`", self.names.database),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let _ = cmd.status();
    }
}

impl Drop for ProdService {
    fn drop(&mut self) {
        kill9(&mut self.child);
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            // Kept past the test for a look at the whole of it.
            let kept = std::env::temp_dir().join(format!("{}.service.log", self.names.database));
            let _ = std::fs::copy(self.log_path(), &kept);
            eprintln!(
                "--- last lines of the service log (whole log kept in {}) ---\n{tail}",
                kept.display()
            );
        }
        if self.owns_database {
            self.drop_database();
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `secs`
/// with `what` and the last state `check` described.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(state) => state,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
