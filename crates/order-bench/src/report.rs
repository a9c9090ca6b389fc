//! The result: a human summary and a JSON object.
//!
//! The figures of a run and what the server said about it live here; the
//! `human` module writes the summary, the `json` module the JSON object.

use crate::cpu::PhaseCpu;
use crate::echo::EchoRun;
use crate::load::LoadStats;
use crate::mix::MixRun;
use crate::profile::Profile;
use crate::prom::{Histogram, Scrape};
use crate::raw::RawResult;
use crate::raw_mysql::MysqlRaw;
use crate::service::Drain;

mod human;
mod json;

pub(crate) use human::cpu_lines;
pub(crate) use json::{cpu_json, json_num};

pub const PUBLISH_LAG: &str = "orders_publish_lag_seconds";
pub const PROJECTION_LAG: &str = "orders_projection_lag_seconds";

/// Targets from DESIGN.md §7 (embedded profile).
pub const TARGET_COMMANDS_PER_SEC: f64 = 20_000.0;
pub const TARGET_P99_MS: f64 = 20.0;
pub const TARGET_PUBLISH_LAG_P99_SECS: f64 = 0.1;
/// Target of the production profile (issue 3, item 9).
pub const TARGET_PRODUCTION_COMMANDS_PER_SEC: f64 = 9_000.0;
/// Issue 13: the MySQL profile (MySQL event store, embedded bus, SQLite
/// read model), with the catch-up counted in the CPU figures.
pub const TARGET_MYSQL_COMMANDS_PER_SEC: f64 = 12_000.0;
pub const TARGET_MYSQL_P99_MS: f64 = 15.0;
/// Issue 13: CPU per create command of the service, and of MariaDB.
pub const TARGET_CPU_US_PER_COMMAND: f64 = 50.0;

/// Approximate quantiles of a lag histogram over this run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lag {
    pub count: f64,
    pub p50_secs: Option<f64>,
    pub p99_secs: Option<f64>,
    pub mean_secs: Option<f64>,
}

impl Lag {
    fn from_histogram(h: &Histogram) -> Lag {
        Lag {
            count: h.count,
            p50_secs: h.quantile(0.5),
            p99_secs: h.quantile(0.99),
            mean_secs: (h.count > 0.0).then(|| h.sum / h.count),
        }
    }
}

/// What `/metrics` says about this run (after minus before).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerSide {
    pub publish_lag: Option<Lag>,
    pub projection_lag: Option<Lag>,
    pub commands_accepted: Option<f64>,
    pub commit_batches: Option<f64>,
    pub events_projected: Option<f64>,
    /// The projector's read-model calls (`get_many`, `upsert_many`).
    pub read_model_calls: Option<f64>,
}

impl ServerSide {
    pub fn from_scrapes(before: &Scrape, after: &Scrape) -> ServerSide {
        let lag = |name: &str| {
            let now = after.histogram(name)?;
            let delta = match before.histogram(name) {
                Some(b) => now.since(&b),
                None => now,
            };
            Some(Lag::from_histogram(&delta))
        };
        let counter = |name: &str| Some(after.value(name)? - before.value(name).unwrap_or(0.0));
        ServerSide {
            publish_lag: lag(PUBLISH_LAG),
            projection_lag: lag(PROJECTION_LAG),
            commands_accepted: counter("orders_commands_accepted_total"),
            commit_batches: counter("orders_commit_batches_total"),
            events_projected: counter("orders_events_projected_total"),
            read_model_calls: counter("orders_projector_read_model_calls_total"),
        }
    }

    /// The projector's read-model round trips per projected event.
    pub fn read_model_calls_per_event(&self) -> Option<f64> {
        match (self.read_model_calls, self.events_projected) {
            (Some(c), Some(e)) if e > 0.0 => Some(c / e),
            _ => None,
        }
    }

    /// Average commands per group-commit transaction, if both counters exist.
    pub fn commands_per_commit(&self) -> Option<f64> {
        match (self.commands_accepted, self.commit_batches) {
            (Some(c), Some(b)) if b > 0.0 => Some(c / b),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub profile: Profile,
    /// The production backends (None: embedded).
    pub backends: Option<String>,
    pub cores: usize,
    pub connections: u32,
    pub warmup_secs: u64,
    pub duration_secs: u64,
    pub target: String,
    pub spawned: bool,
    /// Set when the spawned service exited during the load.
    pub service_died: Option<String>,
    pub load: LoadStats,
    pub drain: Drain,
    pub server: ServerSide,
    /// CPU of the service, this process and the backends over the load
    /// (with `--mix`: over the mix).
    pub cpu: PhaseCpu,
    /// The HTTP echo ceiling (None: skipped or failed).
    pub echo: Option<EchoRun>,
    /// `--mix`: the mixed workload and its phases (then `load` is empty).
    pub mix: Option<MixRun>,
    /// Raw SQLite (embedded): batched first, then one command per
    /// transaction; empty when skipped.
    pub raw: Vec<RawResult>,
    /// Raw MySQL (production): one command per transaction first, then
    /// batched; empty when skipped.
    pub raw_mysql: Vec<MysqlRaw>,
    /// `--rebuild`: the read model rebuilt once after the load.
    pub rebuild: Option<crate::rebuild::RebuildRun>,
}

fn ms(us: Option<u64>) -> Option<f64> {
    us.map(|u| u as f64 / 1000.0)
}

impl Report {
    fn p(&self, q: f64) -> Option<f64> {
        ms(self.load.latency_us(q))
    }

    /// The create rate compared with the raw ceilings: the load's, or with
    /// `--mix` the creates-only phase's (else the mix's commands).
    pub fn service_commands_per_sec(&self) -> f64 {
        match &self.mix {
            None => self.load.throughput(),
            Some(m) => match &m.creates {
                Some(c) => c.stats.per_sec(c.stats.commands()),
                None => m.mix.stats.per_sec(m.mix.stats.commands()),
            },
        }
    }

    /// What the service sustained in the shape the echo server answers:
    /// creates per second, or with `--mix` the mix's requests per second.
    pub fn service_requests_per_sec(&self) -> f64 {
        match &self.mix {
            None => self.load.throughput(),
            Some(m) => m.mix.stats.per_sec(m.mix.stats.answered()),
        }
    }

    /// Service over the echo ceiling (None without one).
    pub fn service_over_echo(&self) -> Option<f64> {
        let echo = self.echo.as_ref()?.stats.throughput();
        (echo > 0.0).then(|| self.service_requests_per_sec() / echo)
    }

    /// Service CPU µs per successful command over the load: during it and
    /// with the catch-up (the headline).
    pub fn service_us_per_command(&self) -> (Option<f64>, Option<f64>) {
        let s = self.cpu.service();
        let n = self.load.created;
        (
            crate::cpu::us_per(s.and_then(|s| s.load), n),
            crate::cpu::us_per(s.and_then(|s| s.total), n),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use super::human::fmt_bound;
    use super::json::json_num;
    use crate::prom::parse;

    /// A scrape with the given publish-lag buckets (≤5 ms, ≤50 ms, all),
    /// lag sum, accepted commands and commit batches.
    fn scrape(buckets: [u64; 3], sum: f64, accepted: u64, batches: u64) -> String {
        let [fast, slow, all] = buckets;
        format!(
            "orders_publish_lag_seconds_bucket{{le=\"0.005\"}} {fast}\n\
             orders_publish_lag_seconds_bucket{{le=\"0.05\"}} {slow}\n\
             orders_publish_lag_seconds_bucket{{le=\"+Inf\"}} {all}\n\
             orders_publish_lag_seconds_sum {sum}\n\
             orders_publish_lag_seconds_count {all}\n\
             orders_commands_accepted_total {accepted}\n\
             orders_commit_batches_total {batches}\n"
        )
    }

    fn before() -> String {
        scrape([10, 10, 10], 0.01, 10, 10)
    }

    fn after() -> String {
        scrape([60, 109, 110], 2.01, 1010, 20)
    }

    #[test]
    fn server_side_figures_cover_only_the_observations_of_this_run() {
        let s = ServerSide::from_scrapes(&parse(&before()), &parse(&after()));
        let publish = s.publish_lag.clone().unwrap_or_default();
        assert_eq!(publish.count, 100.0);
        assert_eq!(publish.p50_secs, Some(0.005));
        assert_eq!(publish.p99_secs, Some(0.05));
        assert_eq!(s.projection_lag, None);
        assert_eq!(s.commands_per_commit(), Some(100.0));
    }

    fn production_report() -> Report {
        Report {
            profile: Profile::Production,
            backends: Some("MariaDB/MySQL mysql://root@127.0.0.1:3306/order_bench_x".into()),
            cores: 2,
            connections: 64,
            warmup_secs: 3,
            duration_secs: 20,
            target: "http://127.0.0.1:1".into(),
            spawned: true,
            service_died: None,
            load: LoadStats {
                created: 1000,
                latencies_us: vec![1000; 1000],
                measured: std::time::Duration::from_secs(1),
                ..LoadStats::default()
            },
            drain: Drain {
                drained: false,
                seconds: 10.0,
                outbox_pending: Some(0.0),
                projector_lag: Some(500.0),
                outbox_pending_start: Some(0.0),
                projector_lag_start: Some(1500.0),
                ..Drain::default()
            },
            server: ServerSide::from_scrapes(&parse(&before()), &parse(&after())),
            cpu: PhaseCpu::default(),
            echo: None,
            mix: None,
            raw: Vec::new(),
            raw_mysql: vec![
                MysqlRaw {
                    clients: 64,
                    batch: 1,
                    transactions: 4000,
                    commands: 4000,
                    seconds: 2.0,
                    ..MysqlRaw::default()
                },
                MysqlRaw {
                    clients: 4,
                    batch: 64,
                    transactions: 100,
                    commands: 6400,
                    seconds: 2.0,
                    ..MysqlRaw::default()
                },
            ],
            rebuild: None,
        }
    }

    #[test]
    fn the_mysql_profile_is_judged_by_its_own_targets_and_a_rebuild_is_reported() {
        let mut r = production_report();
        r.profile = Profile::Mysql;
        r.rebuild = Some(crate::rebuild::RebuildRun {
            events: 200_000,
            orders: 80_000,
            millis: 1_900,
            events_per_second: 105_263,
            service_cpu_secs: Some(2.0),
        });
        let h = r.human();
        assert!(h.contains("profile           mysql"), "{h}");
        assert!(h.contains("targets (issue 13, MySQL profile"), "{h}");
        // 1,000 commands/s is short of 12,000; no CPU was measured.
        assert!(h.contains("≥ 12000 commands/s        MISSED"), "{h}");
        assert!(h.contains("rebuild           105263 events/s"), "{h}");
        assert!(h.contains("10.0 µs per event"), "{h}");
        let j = r.to_json();
        assert_eq!(j["profile"], "mysql");
        assert_eq!(j["rebuild"]["events_per_second"], 105_263);
    }

    #[test]
    fn the_production_report_names_the_profile_backends_and_the_mysql_ceiling() {
        let r = production_report();
        let h = r.human();
        assert!(h.contains("profile           production"), "{h}");
        assert!(
            h.contains("backends          MariaDB/MySQL mysql://root@127.0.0.1:3306/order_bench_x")
        );
        assert!(h.contains("raw MySQL         2000 commands/s = 2000 transactions/s at 1 command/transaction, 64 connections"), "{h}");
        assert!(h.contains("raw MySQL         3200 commands/s = 50 transactions/s at 64 commands/transaction, 4 connections"), "{h}");
        assert!(
            h.contains("service/raw       50% of the raw ceiling at 1 command/transaction"),
            "{h}"
        );
        assert!(h.contains("≥ 9000 commands/s"), "{h}");
        assert!(h.contains("projector 100 events/s"), "{h}");
        assert!(!h.contains("raw SQLite"), "{h}");
        let j = r.to_json();
        assert_eq!(j["profile"], "production");
        assert_eq!(j["raw_mysql"][1]["commands_per_sec"], 3200.0);
        assert_eq!(j["drain"]["projector_events_per_sec"], 100.0);
    }

    #[test]
    fn the_embedded_report_keeps_the_sqlite_ceiling_and_its_targets() {
        let mut r = production_report();
        r.profile = Profile::Embedded;
        r.backends = None;
        r.raw_mysql.clear();
        let h = r.human();
        assert!(h.contains("spawned, fresh SQLite"), "{h}");
        assert!(h.contains("raw SQLite        skipped"), "{h}");
        assert!(h.contains("≥ 20000 commands/s"), "{h}");
        assert!(!h.contains("raw MySQL"), "{h}");
    }

    #[test]
    fn an_infinite_quantile_is_reported_as_text_not_as_an_invalid_number() {
        assert_eq!(json_num(Some(f64::INFINITY)), json!("+Inf"));
        assert_eq!(fmt_bound(Some(f64::INFINITY)), "> largest bucket");
        assert_eq!(fmt_bound(Some(0.005)), "≤ 5 ms");
    }
}
