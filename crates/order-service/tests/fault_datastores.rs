//! Datastore outages under load, end to end: the real binary on the test's
//! OWN MariaDB server (killed with SIGKILL for ~30 s, then started again on
//! the same data directory) and on the test's OWN nx-27017 MongoDB wire
//! server (the same, on a file data directory), with the shared Kafka broker.
//! Four concurrent clients create and confirm orders throughout.
//!
//! - Database outage: commands answer 503 `application/problem+json` within
//!   the command timeout (no hang), `/actuator/health` reports DOWN, nothing
//!   is half written, and the service recovers by itself; every committed
//!   event reaches the bus and the read model.
//! - Read-model outage: commands are unaffected; the projector retries and
//!   catches up, applying each event once.
//!
//! Needs `ORDER_TEST_MYSQL_URL`, `ORDER_TEST_KAFKA_BROKERS` and
//! `ORDER_TEST_MONGODB_URI` (run ./scripts/test.sh), `mariadb-install-db` and
//! `mariadbd` (as scripts/services.sh uses) and nx-27017 (the cached
//! virtualenv of scripts/services.sh, or `ORDER_TEST_NX_BIN`).

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::order_body;
use support::process::free_port;
use support::production::consumer::{
    consumer_view, coverage, envelopes, event_ids, read_topic_until, Coverage,
};
use support::production::{call, eventually, ProdService, Services};

/// The two tests load the shared 2-core machine; one at a time keeps their
/// latency figures meaningful.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Concurrent load clients.
const CLIENTS: usize = 4;
/// Pause of a client between two orders (keeps the load modest).
const PAUSE: Duration = Duration::from_millis(100);
/// Pause of a client after a failed command.
const FAIL_PAUSE: Duration = Duration::from_millis(100);
/// How long the datastore stays down.
const OUTAGE: Duration = Duration::from_secs(30);
/// `ORDER_COMMAND_TIMEOUT_MS` of the database-outage test.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(2000);
/// What a command may take beyond the command timeout (scheduling on a
/// loaded 2-core machine, the HTTP round trip).
const MARGIN: Duration = Duration::from_millis(1500);

// --- Load --------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Create,
    Confirm,
}

/// One command as a client saw it.
#[derive(Clone, Debug)]
struct Sample {
    kind: Kind,
    client: usize,
    /// Since the test's epoch.
    start: Duration,
    latency: Duration,
    /// 0: no HTTP answer at all.
    status: u16,
    content_type: String,
    /// The order created (a 201) or confirmed.
    order: Option<String>,
    body: String,
}

impl Sample {
    fn ok(&self) -> bool {
        self.status == 200 || self.status == 201
    }
    fn end(&self) -> Duration {
        self.start + self.latency
    }
    fn problem_json(&self) -> bool {
        self.content_type.starts_with("application/problem+json")
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

fn customer(prefix: &str, client: usize) -> String {
    format!("{prefix}-cust-{client}")
}

async fn timed_call(
    addr: SocketAddr,
    epoch: Instant,
    client: usize,
    kind: Kind,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Sample {
    let started = Instant::now();
    let res = call(addr, method, path, body).await;
    let latency = started.elapsed();
    let start = started.duration_since(epoch);
    match res {
        Ok(r) => Sample {
            kind,
            client,
            start,
            latency,
            status: r.status,
            content_type: r.header("content-type").unwrap_or_default().to_owned(),
            order: None,
            body: r.text,
        },
        Err(e) => Sample {
            kind,
            client,
            start,
            latency,
            status: 0,
            content_type: String::new(),
            order: None,
            body: e,
        },
    }
}

impl Load {
    /// `CLIENTS` clients, each creating an order for its own customer and
    /// confirming it, until stopped.
    fn start(addr: SocketAddr, epoch: Instant, prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|c| {
                let stop = stop.clone();
                let cust = customer(prefix, c);
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let body = order_body(&cust, &format!("rest-{}", n % 5));
                        let mut s = timed_call(
                            addr,
                            epoch,
                            c,
                            Kind::Create,
                            "POST",
                            "/api/orders",
                            Some(&body),
                        )
                        .await;
                        if s.status == 201 {
                            s.order = serde_json::from_str::<Value>(&s.body)
                                .ok()
                                .and_then(|v| v["id"].as_str().map(str::to_owned));
                        }
                        let created = s.order.clone();
                        let mut ok = s.ok();
                        samples.push(s);
                        if let Some(id) = created {
                            let path = format!("/api/orders/{id}/confirm?paymentId=pay-{c}-{n}");
                            let mut s =
                                timed_call(addr, epoch, c, Kind::Confirm, "PUT", &path, None).await;
                            s.order = Some(id);
                            ok = ok && s.ok();
                            samples.push(s);
                        }
                        tokio::time::sleep(if ok { PAUSE } else { FAIL_PAUSE }).await;
                    }
                    samples
                })
            })
            .collect();
        Load { stop, clients }
    }

    async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for c in self.clients {
            all.extend(c.await.expect("a load client panicked"));
        }
        all.sort_by_key(|s| s.start);
        all
    }
}

/// Counts of a set of samples.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    accepted: usize,
    failed: usize,
    unavailable: usize,
    max_latency: Duration,
}

fn tally<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Tally {
    let mut t = Tally::default();
    for s in samples {
        t.sent += 1;
        if s.ok() {
            t.accepted += 1;
        } else {
            t.failed += 1;
        }
        if s.status == 503 {
            t.unavailable += 1;
        }
        t.max_latency = t.max_latency.max(s.latency);
    }
    t
}

/// Orders a client created (201), with whether their confirm was accepted.
fn accepted_orders(samples: &[Sample]) -> HashMap<String, (usize, bool)> {
    let mut orders: HashMap<String, (usize, bool)> = HashMap::new();
    for s in samples.iter().filter(|s| s.kind == Kind::Create && s.ok()) {
        if let Some(id) = &s.order {
            orders.insert(id.clone(), (s.client, false));
        }
    }
    for s in samples.iter().filter(|s| s.kind == Kind::Confirm && s.ok()) {
        if let Some(o) = s.order.as_ref().and_then(|id| orders.get_mut(id)) {
            o.1 = true;
        }
    }
    orders
}

// --- Health probing ----------------------------------------------------------

#[derive(Clone, Debug)]
struct Probe {
    start: Duration,
    latency: Duration,
    code: u16,
    status: String,
    database: String,
    read_model: String,
}

/// Polls `/actuator/health` every 500 ms until stopped.
fn probe_health(
    addr: SocketAddr,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Probe>> {
    tokio::spawn(async move {
        let mut probes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let res = call(addr, "GET", "/actuator/health", None).await;
            let latency = started.elapsed();
            let (code, body) = match res {
                Ok(r) => (r.status, r.json()),
                Err(e) => (0, Value::String(e)),
            };
            let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
            probes.push(Probe {
                start: started.duration_since(epoch),
                latency,
                code,
                status: text(&body["status"]),
                database: text(&body["components"]["database"]["status"]),
                read_model: text(&body["components"]["readModel"]["status"]),
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        probes
    })
}

// --- The test's own MariaDB ---------------------------------------------------

/// A MariaDB server of the test's own: a fresh data directory, root without
/// a password on 127.0.0.1, killed on drop.
struct OwnMariaDb {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl OwnMariaDb {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `mariadb-install-db` on a fresh directory, then [`Self::start`].
    fn install_and_start() -> OwnMariaDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = OwnMariaDb {
            port: free_port(),
            dir,
            child: None,
        };
        let log = std::fs::File::create(db.dir.path().join("install.log")).expect("log");
        let status = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", db.data_dir().display()))
            .arg("--user=root")
            .arg("--skip-test-db")
            .arg("--innodb-log-file-size=16M")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .status()
            .expect("mariadb-install-db runs (is MariaDB installed?)");
        assert!(
            status.success(),
            "mariadb-install-db failed ({status}):\n{}",
            std::fs::read_to_string(db.dir.path().join("install.log")).unwrap_or_default()
        );
        db.start();
        db
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// Starts `mariadbd` on the data directory and port and waits until it
    /// answers.
    fn start(&mut self) {
        assert!(self.child.is_none(), "MariaDB already running");
        let dir = self.dir.path();
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--user=root")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--innodb-log-file-size=16M")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.answers() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "mariadbd exited ({status}):\n{}",
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "MariaDB did not answer within 60 s:\n{}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        Command::new("mysqladmin")
            .args([
                "--protocol=tcp",
                "-h127.0.0.1",
                &format!("-P{}", self.port),
                "-uroot",
                "--connect-timeout=2",
                "ping",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGKILL: a crash, no shutdown of any kind.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Rows of `sql` on `database`, tab-separated columns.
    fn query(&self, database: &str, sql: &str) -> Vec<Vec<String>> {
        let out = Command::new("mysql")
            .args([
                "--protocol=tcp",
                "-h127.0.0.1",
                &format!("-P{}", self.port),
                "-uroot",
                "-N",
                "-B",
                &format!("-D{database}"),
                "-e",
                sql,
            ])
            .output()
            .expect("mysql runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

// --- The test's own nx-27017 ----------------------------------------------------

/// An nx-27017 server of the test's own on a file data directory (data
/// survives a restart), killed on drop.
struct OwnMongo {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

fn nx_bin() -> String {
    std::env::var("ORDER_TEST_NX_BIN")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| {
            let cache = std::env::var("ORDER_TEST_CACHE_DIR")
                .unwrap_or_else(|_| "/var/cache/order-service-ci".to_owned());
            format!("{cache}/venv-nx/bin/nx-27017")
        })
}

impl OwnMongo {
    fn start_new() -> OwnMongo {
        let mut m = OwnMongo {
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            child: None,
        };
        m.start();
        m
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "nx-27017 already running");
        let dir = self.dir.path();
        let bin = nx_bin();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("nx.out"))
            .expect("log");
        let child = Command::new(&bin)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["-p", &self.port.to_string(), "--host", "127.0.0.1"])
            .arg("--log-file")
            .arg(dir.join("nx.log"))
            .arg("--pid-file")
            .arg(dir.join("nx.pid"))
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}; run scripts/services.sh start"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("nx-27017 exited ({status}): {}", read(&dir.join("nx.out")));
            }
            assert!(
                Instant::now() < deadline,
                "nx-27017 did not listen within 30 s: {}",
                read(&dir.join("nx.out"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnMongo {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// --- Checks ----------------------------------------------------------------------

/// Every document of the read model for `customer` (all pages).
async fn read_model_of(svc: &ProdService, customer: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut page = 0;
    loop {
        let r = svc
            .call(
                "GET",
                &format!("/api/orders?customerId={customer}&page={page}&size=100"),
                None,
            )
            .await;
        if r.status != 200 {
            return Err(format!("read model query: {} {}", r.status, r.text));
        }
        let v = r.json();
        let content = v["content"].as_array().cloned().unwrap_or_default();
        let done = content.len() < 100;
        out.extend(content);
        if done {
            return Ok(out);
        }
        page += 1;
    }
}

/// The read model of every customer, by order id.
async fn read_model(svc: &ProdService, prefix: &str) -> Result<HashMap<String, Value>, String> {
    let mut all = HashMap::new();
    for c in 0..CLIENTS {
        for doc in read_model_of(svc, &customer(prefix, c)).await? {
            let id = doc["id"].as_str().unwrap_or_default().to_owned();
            if all.insert(id.clone(), doc).is_some() {
                return Err(format!("order {id} listed twice"));
            }
        }
    }
    Ok(all)
}

/// Differences between the read model and the event store's state of
/// `orders` (id → state from the event store); empty when they agree.
fn read_model_diff(
    expected: &HashMap<String, Value>,
    read_model: &HashMap<String, Value>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (id, want) in expected {
        match read_model.get(id) {
            None => diffs.push(format!(
                "{id}: missing (event store at version {})",
                want["version"]
            )),
            Some(got) if got != want => {
                diffs.push(format!("{id}: read model {got} != event store {want}"))
            }
            Some(_) => {}
        }
    }
    for id in read_model.keys().filter(|id| !expected.contains_key(*id)) {
        diffs.push(format!("{id}: in the read model, not in the event store"));
    }
    diffs
}

/// The event store's state of each order (`GET /api/orders/{id}`).
async fn event_store_states(
    svc: &ProdService,
    ids: impl IntoIterator<Item = &String>,
) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for id in ids {
        let r = svc.call("GET", &format!("/api/orders/{id}"), None).await;
        assert_eq!(r.status, 200, "GET order {id}: {}", r.text);
        out.insert(id.clone(), r.json());
    }
    out
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// --- (6) Database outage -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_quickly_and_the_service_recovers_by_itself() {
    let _serial = SERIAL.lock().await;
    let epoch = Instant::now();
    let shared = Services::from_env();
    let mut db = OwnMariaDb::install_and_start();
    let services = Services {
        mysql_url: db.url(),
        kafka_brokers: shared.kafka_brokers.clone(),
        mongodb_uri: shared.mongodb_uri.clone(),
    };
    let timeout_ms = COMMAND_TIMEOUT.as_millis().to_string();
    let mut svc = ProdService::start(
        &services,
        &services.kafka_brokers,
        &[("ORDER_COMMAND_TIMEOUT_MS", timeout_ms.as_str())],
    )
    .await;
    let database = svc.names.database.clone();
    let health = svc.call("GET", "/actuator/health", None).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.json()["status"], "UP", "{}", health.text);
    println!(
        "db-outage: own MariaDB on port {} and the service ready after {:.1} s",
        db.port,
        epoch.elapsed().as_secs_f64()
    );

    // Load before, during and after the outage.
    let prefix = "dbout";
    let load = Load::start(svc.addr, epoch, prefix);
    let stop_probes = Arc::new(AtomicBool::new(false));
    let prober = probe_health(svc.addr, epoch, stop_probes.clone());
    tokio::time::sleep(Duration::from_secs(6)).await;

    db.kill();
    let down_at = epoch.elapsed();
    tokio::time::sleep(OUTAGE).await;
    let restart_begun = epoch.elapsed();
    tokio::task::block_in_place(|| db.start());
    let back_at = epoch.elapsed();

    // Recovery without a restart of the service: health UP, commands 2xx.
    let health_up = eventually(60, "health UP after the database returned", || async {
        let r = svc.call("GET", "/actuator/health", None).await;
        if r.status == 200 && r.json()["status"] == "UP" {
            Ok(epoch.elapsed())
        } else {
            Err(format!("{} {}", r.status, r.text))
        }
    })
    .await;
    // Steady load after the recovery.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let samples = load.stop().await;
    stop_probes.store(true, Ordering::Relaxed);
    let probes = prober.await.expect("the health prober");
    let load_stopped = epoch.elapsed();

    // --- Commands while the database was down: 503 problem+json, quickly.
    let down: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start >= down_at && s.end() <= restart_begun)
        .collect();
    let down_tally = tally(down.iter().copied());
    assert!(
        down_tally.sent >= CLIENTS * 5,
        "the clients kept sending while the database was down: {down_tally:?}"
    );
    for s in &down {
        assert_eq!(s.status, 503, "while the database was down: {s:?}");
        assert!(s.problem_json(), "503 is application/problem+json: {s:?}");
    }
    assert!(
        down_tally.max_latency <= COMMAND_TIMEOUT + MARGIN,
        "a command took {:?} while the database was down (timeout {COMMAND_TIMEOUT:?})",
        down_tally.max_latency
    );
    // In flight when it died or when it came back: answered, 2xx or 503.
    for s in &samples {
        assert!(
            s.ok() || (s.status == 503 && s.problem_json()),
            "every command answers 2xx or 503 problem+json: {s:?}"
        );
    }

    // --- Health while down: DOWN (503), bounded.
    let settled = down_at + Duration::from_secs(3);
    let down_probes: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.start >= settled && p.start + p.latency <= restart_begun)
        .collect();
    assert!(
        down_probes.len() >= 5,
        "health probed while down: {down_probes:?}"
    );
    for p in &down_probes {
        assert_eq!(p.code, 503, "health while the database is down: {p:?}");
        assert_eq!(p.status, "DOWN", "{p:?}");
        assert_eq!(p.database, "DOWN", "{p:?}");
    }
    let max_probe = down_probes
        .iter()
        .map(|p| p.latency)
        .max()
        .unwrap_or_default();
    assert!(
        max_probe <= COMMAND_TIMEOUT + MARGIN,
        "health took {max_probe:?}"
    );

    // --- Recovery: commands succeed again by themselves.
    let first_ok_after = samples
        .iter()
        .filter(|s| s.ok() && s.start >= back_at)
        .map(Sample::end)
        .min()
        .expect("a command succeeded after the database returned");
    let recovery = first_ok_after.saturating_sub(back_at);
    let health_recovery = health_up.saturating_sub(back_at);
    assert!(
        recovery <= Duration::from_secs(15),
        "commands succeed again {recovery:?} after the database returned"
    );
    let steady_from = first_ok_after + Duration::from_secs(2);
    let late_failures: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start >= steady_from && !s.ok())
        .collect();
    assert!(
        late_failures.is_empty(),
        "commands after the recovery fail: {late_failures:?}"
    );
    let after_tally = tally(samples.iter().filter(|s| s.start >= back_at));
    assert!(after_tally.accepted >= CLIENTS * 10, "{after_tally:?}");

    // --- No partial writes: each order's state and items match its events.
    // The outbox drains first (the relay recovered too).
    svc.outbox_drained(60).await;
    let dlq = svc.dlq_stats().await;
    assert_eq!(dlq["totalCount"], 0, "nothing parked: {dlq}");
    let rows = db.query(
        &database,
        "SELECT o.id, o.version, o.status, COUNT(e.id), COALESCE(MIN(e.version), 0), \
         COALESCE(MAX(e.version), 0), \
         COALESCE(SUBSTRING_INDEX(GROUP_CONCAT(e.event_type ORDER BY e.version), ',', -1), ''), \
         (SELECT COUNT(*) FROM order_items i WHERE i.order_id = o.id) \
         FROM orders o LEFT JOIN event_store e ON e.aggregate_id = o.id \
         GROUP BY o.id, o.version, o.status",
    );
    let mut stored: HashMap<String, (u64, String)> = HashMap::new();
    for r in &rows {
        let n = |i: usize| r[i].parse::<u64>().unwrap_or(u64::MAX);
        let (version, status, events, min, max, last, items) =
            (n(1), r[2].as_str(), n(3), n(4), n(5), r[6].as_str(), n(7));
        assert!(
            events == version && min == 1 && max == version,
            "order {} at version {version} has events {min}..={max} ({events})",
            r[0]
        );
        let expected_status = match last {
            "OrderCreated" => "PENDING",
            "OrderConfirmed" => "CONFIRMED",
            other => panic!("order {}: unexpected event {other}", r[0]),
        };
        assert_eq!(
            status, expected_status,
            "order {} state vs its last event",
            r[0]
        );
        assert_eq!(items, 2, "order {} has both items", r[0]);
        stored.insert(r[0].clone(), (version, status.to_owned()));
    }
    let orphans = db.query(
        &database,
        "SELECT COUNT(*) FROM event_store e WHERE NOT EXISTS \
         (SELECT 1 FROM orders o WHERE o.id = e.aggregate_id)",
    );
    assert_eq!(orphans[0][0], "0", "events without their order's state");
    let outbox_rows = db.query(&database, "SELECT COUNT(*) FROM outbox");
    assert_eq!(outbox_rows[0][0], "0", "outbox rows left");

    // Every accepted command is in the event store.
    let accepted = accepted_orders(&samples);
    for (id, (_, confirmed)) in &accepted {
        let (version, status) = stored
            .get(id)
            .unwrap_or_else(|| panic!("accepted order {id} is not in the database"));
        if *confirmed {
            assert_eq!(
                (*version, status.as_str()),
                (2, "CONFIRMED"),
                "accepted confirm of {id}"
            );
        }
    }
    // A 503 is "not known to have happened": a command cut off by the crash
    // or by its timeout may still have committed, completely.
    let ambiguous_creates = stored
        .keys()
        .filter(|id| !accepted.contains_key(*id))
        .count();
    let ambiguous_confirms = accepted
        .iter()
        .filter(|(id, (_, confirmed))| !confirmed && stored.get(*id).is_some_and(|s| s.0 == 2))
        .count();

    // The state served equals the state rebuilt from the events.
    let states = event_store_states(&svc, stored.keys()).await;
    for (id, state) in &states {
        let v = state["version"].as_u64().expect("version");
        let rebuilt = svc
            .call("GET", &format!("/api/orders/{id}?version={v}"), None)
            .await;
        assert_eq!(rebuilt.status, 200, "{}", rebuilt.text);
        assert_eq!(
            &rebuilt.json(),
            state,
            "order {id}: current state vs its events"
        );
    }

    // --- Delivered: an independent consumer reads every committed event.
    let committed: HashMap<uuid::Uuid, (String, u64)> = db
        .query(
            &database,
            "SELECT event_id, aggregate_id, version FROM event_store",
        )
        .into_iter()
        .map(|r| {
            (
                r[0].parse().expect("event id"),
                (r[1].clone(), r[2].parse().expect("version")),
            )
        })
        .collect();
    let client = svc.kafka_client(&services.kafka_brokers).await;
    let deliveries = read_topic_until(
        &client,
        &svc.names.events_topic,
        90,
        Duration::from_millis(1500),
        |ds| {
            let ids = event_ids(ds);
            committed.keys().all(|id| ids.contains(id))
        },
    )
    .await;
    let seen = envelopes(&deliveries);
    let view = consumer_view(&seen);
    let Coverage {
        seen_ids,
        missing,
        foreign,
    } = coverage(&committed, &seen);
    assert_eq!(missing, 0, "every committed event is delivered");
    assert_eq!(foreign, 0, "only committed events are delivered");
    for e in &seen {
        assert_eq!(
            committed.get(&e.event_id),
            Some(&(e.aggregate_id.clone(), e.version)),
            "the delivered envelope matches the event store"
        );
    }
    if view.duplicated == 0 {
        assert_eq!(view.out_of_order, 0, "per-order order: {:?}", view.versions);
    }

    // --- Projected: the read model equals the event store for every order.
    let projected_at = eventually(60, "the read model caught up", || async {
        let rm = read_model(&svc, prefix).await?;
        let diffs = read_model_diff(&states, &rm);
        if diffs.is_empty() {
            Ok(rm.len())
        } else {
            Err(format!(
                "{} difference(s), e.g. {:?}",
                diffs.len(),
                &diffs[..diffs.len().min(3)]
            ))
        }
    })
    .await;
    let projected_events: u64 = states.values().filter_map(|s| s["version"].as_u64()).sum();
    let failures = svc.metric("orders_projection_failures_total").await;
    assert_eq!(failures, 0.0, "nothing dead-lettered by the projector");
    let applied = svc.metric("orders_events_projected_total").await;
    assert_eq!(
        applied,
        committed.len() as f64,
        "every committed event applied to the read model once"
    );
    assert!(
        svc.is_running() && svc.restarts == 0,
        "the same process served throughout"
    );

    let all = tally(&samples);
    println!(
        "FIGURES db-outage: commands sent {} accepted {} failed {} (503s {}, other {}); \
         while down ({} s): {} commands, all 503 problem+json, max latency {} ms \
         (timeout {} ms), health DOWN in {}/{} probes (max {} ms); recovery after MariaDB \
         was back: first 2xx command {:.1} s, health UP {:.1} s, no restart; 503s that \
         committed anyway: {ambiguous_creates} create(s), {ambiguous_confirms} confirm(s); \
         events committed {}, delivered {} ({} distinct, {} duplicate copies), projected {} \
         ({projected_at} orders, {applied} applied by the projector); load ran {:.1} s, test took {:.1} s",
        all.sent,
        all.accepted,
        all.failed,
        all.unavailable,
        all.failed - all.unavailable,
        OUTAGE.as_secs(),
        down_tally.sent,
        ms(down_tally.max_latency),
        ms(COMMAND_TIMEOUT),
        down_probes.len(),
        down_probes.len(),
        ms(max_probe),
        recovery.as_secs_f64(),
        health_recovery.as_secs_f64(),
        committed.len(),
        view.delivered,
        seen_ids.len(),
        view.duplicated,
        projected_events,
        load_stopped.as_secs_f64(),
        epoch.elapsed().as_secs_f64()
    );
    drop(svc);
}

// --- (7) Read-model outage ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_outage_leaves_commands_alone_and_the_projector_catches_up() {
    let _serial = SERIAL.lock().await;
    let epoch = Instant::now();
    let shared = Services::from_env();
    let mut mongo = OwnMongo::start_new();
    let services = Services {
        mysql_url: shared.mysql_url.clone(),
        kafka_brokers: shared.kafka_brokers.clone(),
        mongodb_uri: mongo.uri(),
    };
    let svc = ProdService::start(&services, &services.kafka_brokers, &[]).await;
    println!(
        "rm-outage: own nx-27017 on port {} and the service ready after {:.1} s",
        mongo.port,
        epoch.elapsed().as_secs_f64()
    );

    let prefix = "rmout";
    let load = Load::start(svc.addr, epoch, prefix);
    let stop_probes = Arc::new(AtomicBool::new(false));
    let prober = probe_health(svc.addr, epoch, stop_probes.clone());
    tokio::time::sleep(Duration::from_secs(6)).await;

    let projected_before = svc.metric("orders_events_projected_total").await;
    mongo.kill();
    let down_at = epoch.elapsed();
    tokio::time::sleep(OUTAGE).await;
    let restart_begun = epoch.elapsed();
    tokio::task::block_in_place(|| mongo.start());
    let back_at = epoch.elapsed();
    // The backlog: what was committed up to the restart and not projected.
    let backlog_target = svc.metric("orders_events_appended_total").await;
    let backlog = backlog_target - projected_before;
    let backlog_done = eventually(60, "the projector worked off the backlog", || async {
        let p = svc.metric("orders_events_projected_total").await;
        if p >= backlog_target {
            Ok(epoch.elapsed())
        } else {
            Err(format!("projected {p} of {backlog_target}"))
        }
    })
    .await;
    let backlog_recovery = backlog_done.saturating_sub(back_at);
    let steady_until = back_at + Duration::from_secs(5);
    tokio::time::sleep(steady_until.saturating_sub(epoch.elapsed())).await;
    let samples = load.stop().await;
    stop_probes.store(true, Ordering::Relaxed);
    let probes = prober.await.expect("the health prober");

    // Commands: unaffected.
    let all = tally(&samples);
    let down = tally(
        samples
            .iter()
            .filter(|s| s.start >= down_at && s.end() <= restart_begun),
    );
    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok()).collect();
    assert!(failed.is_empty(), "commands failed: {failed:?}");
    assert!(down.accepted >= CLIENTS * 20, "load while down: {down:?}");

    // Health: DEGRADED (200) with the read model DOWN while it was away.
    let settled = down_at + Duration::from_secs(5);
    let down_probes: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.start >= settled && p.start + p.latency <= restart_begun)
        .collect();
    assert!(down_probes.len() >= 5, "{down_probes:?}");
    for p in &down_probes {
        assert_eq!(
            (
                p.code,
                p.status.as_str(),
                p.read_model.as_str(),
                p.database.as_str()
            ),
            (200, "DEGRADED", "DOWN", "UP"),
            "health while the read model is down: {p:?}"
        );
    }

    // The projector retries and catches up: the read model equals the event
    // store for every order.
    let accepted = accepted_orders(&samples);
    let states = event_store_states(&svc, accepted.keys()).await;
    for (id, (_, confirmed)) in &accepted {
        let want = if *confirmed { 2 } else { 1 };
        assert_eq!(states[id]["version"], want, "event store state of {id}");
    }
    let committed_events: u64 = states.values().filter_map(|s| s["version"].as_u64()).sum();
    eventually(90, "the read model caught up", || async {
        let rm = read_model(&svc, prefix).await?;
        let diffs = read_model_diff(&states, &rm);
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} difference(s), e.g. {:?}",
                diffs.len(),
                &diffs[..diffs.len().min(3)]
            ))
        }
    })
    .await;

    // Each event applied once: nothing skipped (dead-lettered or folded
    // into a repair), nothing applied twice.
    let projected = svc.metric("orders_events_projected_total").await;
    let duplicates = svc.metric("orders_projection_duplicates_total").await;
    let failures = svc.metric("orders_projection_failures_total").await;
    let dead = svc.metric("orders_dead_letters_recorded_total").await;
    assert_eq!(failures, 0.0, "the projector dead-lettered nothing");
    assert_eq!(dead, 0.0, "no DLQ records from the projector");
    assert_eq!(
        projected, committed_events as f64,
        "every committed event applied exactly once"
    );
    let dlq = svc.dlq_stats().await;
    assert_eq!(dlq["totalCount"], 0, "{dlq}");
    // The projector saw the outage and retried (it did not skip ahead).
    let retries = svc
        .log()
        .lines()
        .filter(|l| l.contains("projector") && l.contains("batch failed; retrying"))
        .count();
    assert!(
        retries > 0,
        "the projector retried while the read model was down"
    );

    // Delivered: an independent consumer reads every committed event.
    let mut committed: HashSet<uuid::Uuid> = HashSet::new();
    for id in accepted.keys() {
        committed.extend(svc.history(id).await.iter().map(|e| e.event_id));
    }
    assert_eq!(committed.len() as u64, committed_events);
    let client = svc.kafka_client(&services.kafka_brokers).await;
    let deliveries = read_topic_until(
        &client,
        &svc.names.events_topic,
        90,
        Duration::from_millis(1500),
        |ds| {
            let ids = event_ids(ds);
            committed.iter().all(|id| ids.contains(id))
        },
    )
    .await;
    let seen = envelopes(&deliveries);
    let view = consumer_view(&seen);
    let seen_ids: HashSet<uuid::Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert!(
        committed.is_subset(&seen_ids),
        "every committed event delivered"
    );
    assert_eq!(
        seen_ids.len(),
        committed.len(),
        "only committed events delivered"
    );
    assert_eq!(view.duplicated, 0, "each event once on the bus");
    assert_eq!(view.out_of_order, 0, "per-order order: {:?}", view.versions);

    println!(
        "FIGURES rm-outage: commands sent {} accepted {} failed {} (503s {}), max latency {} ms \
         ({} ms while down: {} commands); health DEGRADED/readModel DOWN in {}/{} probes; \
         events committed {committed_events}, delivered {} ({} distinct), projected {projected} \
         (duplicates skipped {duplicates}, projection failures {failures}, projector retries {retries}); backlog of {backlog} events projected \
         {:.1} s after nx-27017 was back; read model equal to the event store for all {} orders \
         at the end; test took {:.1} s",
        all.sent,
        all.accepted,
        all.failed,
        all.unavailable,
        ms(all.max_latency),
        ms(down.max_latency),
        down.sent,
        down_probes.len(),
        down_probes.len(),
        view.delivered,
        seen_ids.len(),
        backlog_recovery.as_secs_f64(),
        accepted.len(),
        epoch.elapsed().as_secs_f64()
    );
}
