//! Support of the production-backend end-to-end tests: the real
//! `order-service` binary against MariaDB, a Kafka-protocol broker (Tansu)
//! and the nx-27017 MongoDB server, each test on its own database, Mongo
//! database, topics and consumer groups; an own Tansu broker a test can
//! freeze; an independent Kafka consumer.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use order_bus_kafka::{KafkaBus, KafkaConfig};
use order_core::domain::EventEnvelope;
use order_core::ports::{Delivery, EventBus};
use serde_json::Value;

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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// --- Tansu -------------------------------------------------------------------

/// The test's own Tansu broker (memory storage), so freezing it disturbs no
/// other test. `ORDER_TEST_TANSU_BIN`, else `tansu` in ~/.cargo/bin or on PATH.
pub struct Broker {
    child: Child,
    pub address: String,
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_advertising(None)
    }

    /// Starts a broker that tells clients to connect to `advertised`
    /// (`host:port`, e.g. a TCP proxy in front of it) instead of its own
    /// listener; [`Broker::address`] is still the listener.
    pub fn start_advertising(advertised: Option<&str>) -> Broker {
        let bin = std::env::var("ORDER_TEST_TANSU_BIN")
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| {
                let home = std::env::var("HOME").unwrap_or_default();
                let cargo_bin = format!("{home}/.cargo/bin/tansu");
                if std::path::Path::new(&cargo_bin).exists() {
                    cargo_bin
                } else {
                    "tansu".to_owned()
                }
            });
        let address = format!("127.0.0.1:{}", free_port());
        let url = format!("tcp://{address}");
        let advertised_url = format!("tcp://{}", advertised.unwrap_or(&address));
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the Tansu broker {bin}: {e}; run ./scripts/test.sh \
                     (it installs Tansu) or set ORDER_TEST_TANSU_BIN"
                )
            });
        let broker = Broker { child, address };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&broker.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "Tansu did not listen on {} within 30 s",
                broker.address
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        broker
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} {}", self.child.id());
    }

    /// SIGSTOP: the broker hangs (connections stay open, nothing answers);
    /// its memory storage survives.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- HTTP ----------------------------------------------------------------------

pub use crate::support::Response;

/// One HTTP/1.1 request on a fresh connection, bounded by 30 s.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, String> {
    tokio::time::timeout(
        Duration::from_secs(30),
        crate::support::call(addr, method, path, body, &[]),
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
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let log2 = log.try_clone().expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-service"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ORDER_PORT", port.to_string())
            .env("ORDER_BIND", "127.0.0.1")
            .env(
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
            .current_dir(self.dir.path())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("the service starts"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = call(self.addr, "GET", "/health/ready", None).await {
                if r.status == 200 {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("service exited early ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "service not ready in 60 s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
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
        let text = self.call("GET", "/metrics", None).await.text;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .filter(|rest| rest.starts_with(' '))
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("metric {name} missing"))
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
        // mysql://user[:password]@host[:port]
        let rest = self
            .mysql_url
            .split_once("://")
            .map_or(self.mysql_url.as_str(), |(_, r)| r);
        let (auth, host) = rest.split_once('@').unwrap_or(("root", rest));
        let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
        let (host, port) = host.split_once(':').unwrap_or((host, "3306"));
        let mut cmd = Command::new("mysql");
        cmd.args([
            "--protocol=tcp",
            &format!("-h{host}"),
            &format!("-P{port}"),
            &format!("-u{user}"),
            "-e",
            &format!("DROP DATABASE IF EXISTS `{}`", self.names.database),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if !password.is_empty() {
            cmd.env("MYSQL_PWD", password);
        }
        let _ = cmd.status();
    }
}

impl Drop for ProdService {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

pub use crate::support::order_body;

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

// --- The independent consumer --------------------------------------------------

/// Reads `topic` from the beginning with a fresh consumer group until
/// `done(messages so far)` holds, then until the topic stays quiet for
/// `quiet` (so late duplicates are seen too). Each (partition, offset) is
/// kept once: a consumer re-read is not a duplicate in the topic.
pub async fn read_topic_until(
    bus: &KafkaBus,
    topic: &str,
    secs: u64,
    quiet: Duration,
    done: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    let group = unique("e2e-checker");
    let mut sub = bus.subscribe(&group, topic).await.expect("subscribes");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen: HashSet<(i32, i64)> = HashSet::new();
    let mut out: Vec<Delivery> = Vec::new();
    let mut complete = false;
    loop {
        let wait = if complete {
            quiet
        } else {
            Duration::from_millis(500)
        };
        let batch = sub.poll(1000, wait).await.expect("polls");
        let empty = batch.is_empty();
        for d in batch {
            if seen.insert((d.partition, d.offset)) {
                out.push(d);
            }
        }
        if complete && empty {
            return out;
        }
        complete = complete || done(&out);
        assert!(
            Instant::now() < deadline,
            "the independent consumer did not see what it expected on {topic} within {secs} s; \
             it read {} message(s)",
            out.len()
        );
    }
}

/// The envelopes among `deliveries` (in the order read; other messages skipped).
pub fn envelopes(deliveries: &[Delivery]) -> Vec<EventEnvelope> {
    deliveries
        .iter()
        .filter_map(|d| serde_json::from_slice(&d.payload).ok())
        .collect()
}

/// What a downstream consumer saw of a set of orders.
#[derive(Debug, Default)]
pub struct ConsumerView {
    /// Envelopes read (copies included).
    pub delivered: usize,
    /// Extra copies of event ids read before.
    pub duplicated: usize,
    /// Events read after a higher version of their order, or with a gap
    /// before them (a repeated copy of the latest version is a duplicate,
    /// not out of order).
    pub out_of_order: usize,
    /// Versions per order in the order read.
    pub versions: HashMap<String, Vec<u64>>,
}

/// Checks per order: versions in the order read, event ids once.
/// Partitions are read independently, so order across orders is free.
pub fn consumer_view(events: &[EventEnvelope]) -> ConsumerView {
    let mut view = ConsumerView::default();
    let mut ids = HashSet::new();
    for e in events {
        view.delivered += 1;
        if !ids.insert(e.event_id) {
            view.duplicated += 1;
        }
        let versions = view.versions.entry(e.aggregate_id.clone()).or_default();
        let highest = versions.iter().copied().max().unwrap_or(0);
        if e.version < highest || e.version > highest + 1 {
            view.out_of_order += 1;
        }
        versions.push(e.version);
    }
    view
}

/// `topic/partition/offset` of every copy of each event id read more than once.
pub fn duplicate_copies(deliveries: &[Delivery]) -> Vec<(String, u64, Vec<String>)> {
    let mut copies: HashMap<uuid::Uuid, (String, u64, Vec<String>)> = HashMap::new();
    for d in deliveries {
        if let Ok(e) = serde_json::from_slice::<EventEnvelope>(&d.payload) {
            copies
                .entry(e.event_id)
                .or_insert_with(|| (e.aggregate_id.clone(), e.version, Vec::new()))
                .2
                .push(format!("{}/{}/{}", d.topic, d.partition, d.offset));
        }
    }
    let mut dups: Vec<_> = copies
        .into_values()
        .filter(|(_, _, at)| at.len() > 1)
        .collect();
    dups.sort();
    dups
}
