//! `order-bench`: starts the order service the way a user would, drives
//! `POST /api/orders` over HTTP/1.1 keep-alive, waits for the outbox and the
//! projector to catch up, reads the lag histograms from `/metrics`, and
//! measures the raw database ceiling of the same writes and an HTTP echo
//! ceiling in the same run.
//!
//! ```text
//! cargo build --release -p order-service -p order-bench
//! cargo run --release -p order-bench -- [--duration 20] [--warmup 3] [--connections 64]
//!     [--raw-seconds 5] [--raw-batch 256] [--echo-seconds 5] [--json] [--url http://127.0.0.1:8084]
//!
//! # mixed workload: creates, lifecycle transitions and reads (shares in percent,
//! # adding up to 100), then creates-only, transitions-only and reads-only phases
//! cargo run --release -p order-bench -- --mix [--mix-creates 25] [--mix-transitions 40]
//!     [--mix-cancels 5] [--mix-reads 20] [--mix-lists 10] [--phase-seconds 5] [--read-seconds 5]
//!
//! # production backends (fresh MySQL database, topics, groups, Mongo database):
//! eval "$(scripts/services.sh start)"
//! cargo run --release -p order-bench -- --profile production [--mysql-url mysql://root@127.0.0.1:3306]
//!     [--kafka-brokers 127.0.0.1:PORT] [--mongodb-uri mongodb://127.0.0.1:PORT]
//!     [--raw-clients 64] [--raw-batch-clients 4] [--raw-batch 64]
//!
//! # MySQL event store alone (fresh database; embedded bus, SQLite read model):
//! cargo run --release -p order-bench -- --profile mysql [--mysql-url mysql://root@127.0.0.1:3306]
//!
//! # relay drain: preload the outbox, then time N instances draining it
//! # (and, with N ≥ 2, the failover after one is killed); production backends
//! cargo build --release -p order-service -p order-bench
//! cargo run --release -p order-bench -- --scenario drain --instances 1,2,3
//!     [--events 200000] [--orders 20000] [--failover-events 20000]
//!     [--service-env ORDER_RELAY_LEASE_MS=3000] [--json]
//! ```
//!
//! The embedded profile's raw ceiling is SQLite (one connection, batched and
//! one command per transaction); the MySQL and production profiles' is MySQL: one
//! event row + one order row per transaction from `--raw-clients`
//! connections, and `--raw-batch` commands per transaction from
//! `--raw-batch-clients` connections.
//!
//! **CPU per command** is the headline beside throughput: utime + stime of
//! the service process from `/proc/<pid>/stat` ([`cpu`]) from the end of the
//! warm-up to the end of the load, and — the headline "service CPU per
//! command" — until the outbox and the projector have caught up, since the
//! pipeline's work goes on after the last response. The MySQL profile adds
//! `mariadbd`, the production profile also Tansu (`$ORDER_TEST_TANSU_PID`)
//! and nx-27017 when found;
//! the load generator's own CPU is shown too (it shares the cores).
//!
//! The **echo ceiling** ([`echo`], `--echo-seconds`, 0 skips) is a minimal
//! hyper HTTP/1.1 server in this process (own thread, two-worker runtime)
//! that parses the create-order JSON and echoes it with 201, driven by the
//! same load code after the service has stopped: the service's throughput
//! is reported as a fraction of it and of each raw database ceiling.
//!
//! **`--mix`** ([`mix`]) replaces the creates-only load: every connection
//! task creates its own orders and walks them through PENDING → CONFIRMED →
//! PREPARING → READY → DELIVERED (cancelling some PENDING ones), reads them
//! by id and lists customers' orders, per request kind: count, rate, p50/p99
//! and statuses (a 409 is a real signal: each task owns its orders). Since
//! CPU is per process, short single-kind phases follow (creates only,
//! transitions only on the orders made so far, reads by id only), each
//! with its CPU per request, so "a transition costs ≤ 1.5× a create" is
//! measured in CPU as well as latency, and the read ceiling in isolation.
//!
//! Progress goes to stderr; the summary (or with `--json` one JSON object)
//! to stdout. Only 127.0.0.1 is ever contacted. `main.rs` only parses the
//! options; [`run`] does the work ([`drain`] for `--scenario drain`).

pub mod cpu;
pub mod drain;
pub mod echo;
pub mod load;
pub mod mix;
pub mod outage;
pub mod profile;
pub mod prom;
pub mod raw;
pub mod raw_mysql;
pub mod rebuild;
pub mod report;
pub mod service;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

/// Command-line options.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "order-bench",
    about = "Benchmark the order service over HTTP beside a raw database baseline"
)]
pub struct Options {
    /// What to measure: the HTTP load (with the raw database ceiling) or the
    /// relay draining a preloaded outbox (always on the production backends).
    #[arg(long, value_enum, default_value_t = Scenario::Load)]
    pub scenario: Scenario,
    /// Backends of the spawned service: embedded (SQLite, embedded bus),
    /// mysql (a fresh MySQL/MariaDB database with the embedded bus and the
    /// SQLite read model) or production (MySQL/MariaDB + Kafka + MongoDB,
    /// fresh names per run).
    #[arg(long, value_enum, default_value_t = profile::Profile::Embedded)]
    pub profile: profile::Profile,
    /// MySQL and production: MySQL server URL without a database [default:
    /// $ORDER_TEST_MYSQL_URL, else mysql://root@127.0.0.1:3306].
    #[arg(long, value_name = "URL")]
    pub mysql_url: Option<String>,
    /// Production: Kafka bootstrap brokers [default: $ORDER_TEST_KAFKA_BROKERS].
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka_brokers: Option<String>,
    /// Production: MongoDB URI [default: $ORDER_TEST_MONGODB_URI].
    #[arg(long, value_name = "URI")]
    pub mongodb_uri: Option<String>,
    /// Production: connections of the raw MySQL ceiling, one command per transaction.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub raw_clients: u32,
    /// Production: connections of the batched raw MySQL measurement.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub raw_batch_clients: u32,
    /// Service binary to spawn [default: $CARGO_TARGET_DIR/release/order-service,
    /// else next to this binary, else target/release/order-service].
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    pub service_bin: Option<PathBuf>,
    /// Target an already running service (loopback only), e.g.
    /// http://127.0.0.1:8084; nothing is spawned.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Concurrent keep-alive connections (one task each).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connections: u32,
    /// Measured load duration, seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Unmeasured warm-up before the measured window, seconds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Seconds for each raw database measurement (batched and unbatched); 0 skips it.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub raw_seconds: u64,
    /// Commands per transaction in the batched raw measurement [default: 256
    /// (embedded, SQLite), 64 (production, MySQL)].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub raw_batch: Option<u32>,
    /// Longest wait for GET /health/ready to answer 200, seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub ready_timeout: u64,
    /// Longest wait after the load for the outbox and projector to catch up,
    /// or (drain) for one drain or failover, seconds [default: 60 (load), 900 (drain)].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_timeout: Option<u64>,
    /// Per-request timeout, seconds (a timed-out request counts as a transport error).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub request_timeout: u64,
    /// Seconds of the in-process HTTP echo ceiling (hyper, JSON parsed and
    /// echoed with 201, same load code and connections); 0 skips it.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub echo_seconds: u64,
    /// After the load: rebuild the read model from the event store once
    /// (`POST /api/admin/read-model/rebuild`) and report events/s and the
    /// service's CPU per event.
    #[arg(long)]
    pub rebuild: bool,
    /// Print one JSON object on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub mix: mix::MixOptions,
    #[command(flatten)]
    pub drain: drain::DrainOptions,
    #[command(flatten)]
    pub outage: outage::OutageOptions,
}

/// `--scenario`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// POST /api/orders over HTTP, then the raw database ceiling.
    #[default]
    Load,
    /// Preloaded outbox drained by 1, 2, … instances; failover gap.
    Drain,
    /// A million parked events drained by one replay job (--profile).
    Outage,
}

/// An error with the context it happened in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub fn msg(m: impl fmt::Display) -> Self {
        Error(m.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds a description of what was being done to an error.
pub trait Context<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error(format!("{what}: {e}")))
    }
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what())))
    }
}

/// A fresh directory under the system temp dir, removed (best effort) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating temp dir {}", path.display()))?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Progress line on stderr (stdout is kept for the result).
pub(crate) fn progress(msg: impl fmt::Display) {
    eprintln!("order-bench: {msg}");
}

/// The MySQL or production profile's backends and this run's fresh names.
#[derive(Debug, Clone)]
struct Production {
    profile: profile::Profile,
    backends: profile::Backends,
    names: profile::RunNames,
}

impl Production {
    fn service_env(&self) -> Vec<(&'static str, String)> {
        match self.profile {
            profile::Profile::Mysql => profile::mysql_service_env(&self.backends, &self.names),
            _ => profile::service_env(&self.backends, &self.names),
        }
    }

    fn describe(&self) -> String {
        match self.profile {
            profile::Profile::Mysql => profile::describe_mysql(&self.backends, &self.names),
            _ => profile::describe(&self.backends, &self.names),
        }
    }
}

/// The production backends from the options, else the environment.
fn production_backends(opts: &Options) -> Result<profile::Backends> {
    profile::Backends::resolve(
        opts.profile == profile::Profile::Mysql,
        opts.mysql_url.as_deref(),
        opts.kafka_brokers.as_deref(),
        opts.mongodb_uri.as_deref(),
        |var| std::env::var(var).ok(),
    )
}

/// Drops a run's MySQL database, best effort (reported, never fatal).
pub(crate) async fn drop_database_best_effort(backends: &profile::Backends, db: &str) {
    let server = backends.mysql_server_url();
    match tokio::time::timeout(
        Duration::from_secs(30),
        raw_mysql::drop_database(&server, db),
    )
    .await
    {
        Ok(Ok(())) => progress(format!("dropped MySQL database {db}")),
        Ok(Err(e)) => progress(format!("could not drop MySQL database {db}: {e}")),
        Err(_) => progress(format!("dropping MySQL database {db} timed out")),
    }
}

/// Waits for the outbox and the projector to catch up with everything
/// committed since `before`; a failed check is reported in the result,
/// never fatal (the load figures are not lost).
pub(crate) async fn catch_up(
    target: &service::Target,
    before: &prom::Scrape,
    limit: Duration,
) -> service::Drain {
    progress("waiting for the outbox and the projector to catch up");
    let drain = match service::wait_drained(target, before, limit).await {
        Ok(d) => d,
        Err(e) => service::Drain {
            error: Some(e.to_string()),
            ..service::Drain::default()
        },
    };
    match &drain.error {
        Some(e) => progress(format!("drain check failed: {e}")),
        None => progress(format!(
            "drain {} after {:.2} s",
            if drain.drained {
                "complete"
            } else {
                "NOT complete"
            },
            drain.seconds
        )),
    }
    drain
}

/// Runs the whole benchmark and prints the result.
pub async fn run(opts: Options) -> Result<()> {
    if opts.scenario == Scenario::Drain {
        if opts.profile == profile::Profile::Mysql {
            return Err(Error::msg(
                "--scenario drain always runs on the production backends; leave out --profile mysql",
            ));
        }
        if opts.url.is_some() {
            return Err(Error::msg(
                "--scenario drain spawns its own instances on fresh databases and topics; \
                 it cannot be combined with --url",
            ));
        }
        let backends = production_backends(&opts)?;
        let bin = service::resolve_service_bin(opts.service_bin.clone())?;
        let runs = drain::run(
            &drain::Setup {
                backends,
                service_bin: bin,
                ready_timeout: Duration::from_secs(opts.ready_timeout),
                limit: Duration::from_secs(opts.drain_timeout.unwrap_or(900)),
            },
            &opts.drain,
        )
        .await?;
        if opts.json {
            println!("{}", drain::report::to_json(&runs));
        } else {
            print!("{}", drain::report::human(&runs));
        }
        return Ok(());
    }
    if opts.scenario == Scenario::Outage {
        let backends = match opts.profile {
            profile::Profile::Production => Some(production_backends(&opts)?),
            profile::Profile::Embedded => None,
            profile::Profile::Mysql => {
                return Err(Error::msg(
                    "--scenario outage runs on --profile embedded or production",
                ))
            }
        };
        let bin = service::resolve_service_bin(opts.service_bin.clone())?;
        let run = outage::run(
            &outage::Setup {
                profile: opts.profile,
                backends: backends.as_ref(),
                service_bin: &bin,
                ready_timeout: Duration::from_secs(opts.ready_timeout),
                limit: Duration::from_secs(opts.drain_timeout.unwrap_or(3600)),
            },
            &opts.outage,
        )
        .await?;
        print!("{}", outage::human(&run));
        return Ok(());
    }
    let production = match opts.profile {
        profile::Profile::Embedded => {
            if opts.mysql_url.is_some()
                || opts.kafka_brokers.is_some()
                || opts.mongodb_uri.is_some()
            {
                return Err(Error::msg(
                    "--mysql-url needs --profile mysql or production; --kafka-brokers and \
                     --mongodb-uri need --profile production",
                ));
            }
            None
        }
        profile::Profile::Production | profile::Profile::Mysql => {
            if opts.url.is_some() {
                return Err(Error::msg(format!(
                    "--profile {} spawns its own service on a fresh database; \
                     it cannot be combined with --url",
                    opts.profile.name()
                )));
            }
            if opts.profile == profile::Profile::Mysql
                && (opts.kafka_brokers.is_some() || opts.mongodb_uri.is_some())
            {
                return Err(Error::msg(
                    "--profile mysql runs the embedded bus and the SQLite read model; \
                     --kafka-brokers and --mongodb-uri need --profile production",
                ));
            }
            let backends = production_backends(&opts)?;
            Some(Production {
                profile: opts.profile,
                backends,
                names: profile::RunNames::fresh(),
            })
        }
    };
    let outcome = run_profile(&opts, production.as_ref()).await;
    if let Some(p) = &production {
        // The service created it; the service is gone by now.
        drop_database_best_effort(&p.backends, &p.names.mysql_database).await;
    }
    outcome
}

async fn run_profile(opts: &Options, production: Option<&Production>) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let backends_env = production.map(Production::service_env);
    let backends_desc = production.map(Production::describe);
    if let Some(d) = &backends_desc {
        progress(format!("production backends: {d}"));
    }

    let mut svc = match &opts.url {
        Some(url) => {
            let target = service::Target::from_url(url)?;
            progress(format!("using running service at {}", target.base_url()));
            service::Service::external(target)
        }
        None => {
            let bin = service::resolve_service_bin(opts.service_bin.clone())?;
            progress(format!("starting {}", bin.display()));
            service::Service::spawn(&bin, backends_env.as_deref())?
        }
    };
    let ready_in = svc
        .wait_ready(Duration::from_secs(opts.ready_timeout))
        .await?;
    progress(format!(
        "service ready at {} after {:.2} s",
        svc.target().base_url(),
        ready_in.as_secs_f64()
    ));
    let target = svc.target().clone();

    let drain_limit = Duration::from_secs(opts.drain_timeout.unwrap_or(60));
    let backends_pids = match production {
        Some(p) if p.profile == profile::Profile::Mysql => cpu::production_backends()
            .into_iter()
            .filter(|(name, _)| name == "mariadbd")
            .collect(),
        Some(_) => cpu::production_backends(),
        None => Vec::new(),
    };
    let meter = cpu::Meter::new(svc.pid(), backends_pids);
    progress(format!("CPU measured for: {}", meter.names().join(", ")));

    // Histograms are cumulative since service start; diff against a baseline
    // so an already running service reports this run only.
    let before = service::scrape(&target).await?;

    let (load, died, drain, server, cpu, mix) = if opts.mix.mix {
        let (mix, server) = mix::run(
            &mix::Setup {
                target: &target,
                meter: &meter,
                connections: opts.connections as usize,
                warmup: Duration::from_secs(opts.warmup),
                duration: Duration::from_secs(opts.duration),
                request_timeout: Duration::from_secs(opts.request_timeout),
                drain_limit,
            },
            &opts.mix,
        )
        .await?;
        let died = svc.died()?;
        if let Some(d) = &died {
            progress(d);
        }
        let (drain, cpu) = (mix.mix.drain.clone(), mix.mix.cpu.clone());
        (
            load::LoadStats::default(),
            died,
            drain,
            server,
            cpu,
            Some(mix),
        )
    } else {
        progress(format!(
            "load: {} connections, {} s warm-up + {} s measured",
            opts.connections, opts.warmup, opts.duration
        ));
        let warmup = Duration::from_secs(opts.warmup);
        let cfg = load::LoadConfig {
            addr: target.addr,
            host: target.host_header(),
            connections: opts.connections as usize,
            warmup,
            duration: Duration::from_secs(opts.duration),
            request_timeout: Duration::from_secs(opts.request_timeout),
        };
        let (load, cpu_start) = tokio::join!(load::run(&cfg), async {
            tokio::time::sleep(warmup).await;
            meter.sample()
        });
        let cpu_end = meter.sample();
        let load = load?;
        progress(format!(
            "load done: {} created in {:.2} s ({:.0}/s), {} non-201, {} transport errors",
            load.created,
            load.measured.as_secs_f64(),
            load.throughput(),
            load.non_201,
            load.transport_errors
        ));

        // After the load, failures are reported rather than fatal so the load
        // figures are not lost.
        let died = svc.died()?;
        if let Some(d) = &died {
            progress(d);
        }
        let drain = catch_up(&target, &before, drain_limit).await;
        let cpu = meter.phase(&cpu_start, &cpu_end, &meter.sample());
        let server = match service::scrape(&target).await {
            Ok(after) => report::ServerSide::from_scrapes(&before, &after),
            Err(e) => {
                progress(format!("final /metrics scrape failed: {e}"));
                report::ServerSide::default()
            }
        };
        (load, died, drain, server, cpu, None)
    };

    let rebuild = if opts.rebuild {
        progress("rebuilding the read model from the event store");
        match rebuild::measure(&target, &meter, Duration::from_secs(1800)).await {
            Ok(r) => {
                progress(format!(
                    "rebuild done: {} events, {} orders in {} ms ({} events/s)",
                    r.events, r.orders, r.millis, r.events_per_second
                ));
                Some(r)
            }
            Err(e) => {
                progress(format!("rebuild failed: {e}"));
                None
            }
        }
    } else {
        None
    };

    if let Some(status) = svc.stop()? {
        progress(format!("service stopped ({status})"));
    }
    drop(svc);

    // With the service gone, so that the two do not share the cores.
    let echo = if opts.echo_seconds == 0 {
        None
    } else {
        progress(format!(
            "HTTP echo ceiling: {} s, {} connections, hyper server with {} workers in this process",
            opts.echo_seconds,
            opts.connections,
            echo::ECHO_WORKERS
        ));
        match echo::measure(
            opts.connections as usize,
            Duration::from_secs(opts.echo_seconds),
            Duration::from_secs(opts.request_timeout),
        )
        .await
        {
            Ok(e) => {
                progress(format!("echo done: {:.0} requests/s", e.stats.throughput()));
                Some(e)
            }
            Err(e) => {
                progress(format!("echo ceiling failed: {e}"));
                None
            }
        }
    };

    let mut raw_mysql_results = Vec::new();
    let raw = if opts.raw_seconds == 0 {
        None
    } else if let Some(p) = production {
        let secs = opts.raw_seconds;
        let variants = [
            raw_mysql::Variant {
                clients: opts.raw_clients as usize,
                batch: 1,
            },
            raw_mysql::Variant {
                clients: opts.raw_batch_clients as usize,
                batch: opts.raw_batch.unwrap_or(64) as usize,
            },
        ];
        progress(format!(
            "raw MySQL: {secs} s at 1 command/transaction from {} connections, then {secs} s at {} \
             commands/transaction from {} connections (database {})",
            variants[0].clients, variants[1].batch, variants[1].clients, p.names.raw_database
        ));
        let limit = Duration::from_secs(2 * secs + 120);
        let measured = tokio::time::timeout(
            limit,
            raw_mysql::measure(
                &p.backends.mysql_server_url(),
                &p.backends.mysql_database_url(&p.names.raw_database),
                &p.names.raw_database,
                Duration::from_secs(secs),
                &variants,
            ),
        )
        .await
        .map_err(|_| Error::msg(format!("raw MySQL measurement exceeded {limit:?}")))?;
        raw_mysql_results = measured?;
        None
    } else {
        let secs = opts.raw_seconds;
        let batch = opts.raw_batch.unwrap_or(256) as usize;
        progress(format!(
            "raw SQLite: {secs} s at {batch} commands/transaction, then {secs} s at 1"
        ));
        let results = tokio::task::spawn_blocking(move || -> Result<Vec<raw::RawResult>> {
            let d = Duration::from_secs(secs);
            Ok(vec![raw::measure(d, batch)?, raw::measure(d, 1)?])
        })
        .await
        .context("raw SQLite task failed")??;
        Some(results)
    };

    let rep = report::Report {
        profile: opts.profile,
        backends: backends_desc,
        cores,
        connections: opts.connections,
        warmup_secs: opts.warmup,
        duration_secs: opts.duration,
        target: target.base_url(),
        spawned: opts.url.is_none(),
        service_died: died,
        load,
        drain,
        server,
        cpu,
        echo,
        mix,
        raw: raw.unwrap_or_default(),
        raw_mysql: raw_mysql_results,
        rebuild,
    };
    if opts.json {
        println!("{}", rep.to_json());
    } else {
        print!("{}", rep.human());
    }
    Ok(())
}
