//! The result: a human summary and a JSON object.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::load::LoadStats;
use crate::profile::Profile;
use crate::prom::{Histogram, Scrape};
use crate::raw::RawResult;
use crate::raw_mysql::MysqlRaw;
use crate::service::Drain;

pub const PUBLISH_LAG: &str = "orders_publish_lag_seconds";
pub const PROJECTION_LAG: &str = "orders_projection_lag_seconds";

/// Targets from DESIGN.md §7 (embedded profile).
pub const TARGET_COMMANDS_PER_SEC: f64 = 20_000.0;
pub const TARGET_P99_MS: f64 = 20.0;
pub const TARGET_PUBLISH_LAG_P99_SECS: f64 = 0.1;
/// Target of the production profile (issue 3, item 9).
pub const TARGET_PRODUCTION_COMMANDS_PER_SEC: f64 = 9_000.0;

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
    /// Raw SQLite (embedded): batched first, then one command per
    /// transaction; empty when skipped.
    pub raw: Vec<RawResult>,
    /// Raw MySQL (production): one command per transaction first, then
    /// batched; empty when skipped.
    pub raw_mysql: Vec<MysqlRaw>,
}

fn ms(us: Option<u64>) -> Option<f64> {
    us.map(|u| u as f64 / 1000.0)
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} ms"))
}

/// A bucket upper bound as text: "≤ 5 ms", "> last bucket" for +Inf.
fn fmt_bound(secs: Option<f64>) -> String {
    match secs {
        None => "n/a".to_owned(),
        Some(s) if s.is_infinite() => "> largest bucket".to_owned(),
        Some(s) => format!("≤ {} ms", s * 1000.0),
    }
}

fn json_num(v: Option<f64>) -> Value {
    match v {
        Some(x) if x.is_finite() => json!(x),
        Some(_) => json!("+Inf"),
        None => Value::Null,
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

impl Report {
    fn p(&self, q: f64) -> Option<f64> {
        ms(self.load.latency_us(q))
    }

    pub fn human(&self) -> String {
        let l = &self.load;
        let mut o = String::new();
        let _ = writeln!(o, "\n== order-bench ==");
        let _ = writeln!(
            o,
            "machine           {} cores (load generator on the same machine)",
            self.cores
        );
        let _ = writeln!(o, "profile           {}", self.profile.name());
        let _ = writeln!(
            o,
            "service           {} ({})",
            self.target,
            match (self.spawned, self.profile) {
                (false, _) => "already running",
                (true, Profile::Embedded) => "spawned, fresh SQLite",
                (true, Profile::Production) =>
                    "spawned, fresh MySQL database, topics, groups and Mongo database",
            }
        );
        if let Some(b) = &self.backends {
            let _ = writeln!(o, "backends          {b}");
        }
        let _ = writeln!(
            o,
            "load              POST /api/orders, {} keep-alive connections, {} s warm-up + {} s measured ({:.2} s actual)",
            self.connections,
            self.warmup_secs,
            self.duration_secs,
            l.measured.as_secs_f64()
        );
        let _ = writeln!(
            o,
            "\nthroughput        {:.0} commands/s  ({} created)",
            l.throughput(),
            l.created
        );
        let _ = writeln!(
            o,
            "latency           p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            fmt_ms(self.p(0.5)),
            fmt_ms(self.p(0.9)),
            fmt_ms(self.p(0.99)),
            fmt_ms(self.p(0.999)),
            fmt_ms(self.p(1.0))
        );
        let statuses: Vec<String> = l.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        let _ = writeln!(
            o,
            "errors            {} non-201{}  {} transport errors  ({} connections opened)",
            l.non_201,
            if statuses.is_empty() {
                String::new()
            } else {
                format!(" ({})", statuses.join(", "))
            },
            l.transport_errors,
            l.connects
        );
        for e in &l.error_samples {
            let _ = writeln!(o, "  e.g.            {e}");
        }
        if let Some(c) = self.server.commands_per_commit() {
            let _ = writeln!(
                o,
                "group commit      {c:.1} commands per transaction (server counters)"
            );
        }

        if let Some(died) = &self.service_died {
            let _ = writeln!(o, "\n!! {died}");
        }
        let d = &self.drain;
        let show = |v: Option<f64>| v.map_or_else(|| "missing".to_owned(), |v| format!("{v}"));
        match &d.error {
            Some(e) => {
                let _ = writeln!(o, "\ndrain             could not be checked: {e}");
            }
            None => {
                let _ = writeln!(
                    o,
                    "\ndrain             {} after {:.2} s  (outbox pending {}, projector lag {} events)",
                    if d.drained { "caught up" } else { "NOT caught up" },
                    d.seconds,
                    show(d.outbox_pending),
                    show(d.projector_lag)
                );
                if let Some(n) = d.unprojected.filter(|n| *n > 0.0) {
                    let _ = writeln!(
                        o,
                        "                  {n} published events not yet projected (lag histogram counts)"
                    );
                }
                let (relay, projector) = d.rates();
                if !d.drained || d.seconds >= 1.0 {
                    let _ = writeln!(
                        o,
                        "                  (at the end of the load: outbox pending {}, projector lag {} events; worked off during the wait: relay {}, projector {})",
                        show(d.outbox_pending_start),
                        show(d.projector_lag_start),
                        relay.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0} events/s")),
                        projector.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0} events/s")),
                    );
                }
            }
        }
        for (label, lag) in [
            ("publish lag", &self.server.publish_lag),
            ("projection lag", &self.server.projection_lag),
        ] {
            match lag {
                Some(g) => {
                    let _ = writeln!(
                        o,
                        "{label:<18}p50 {}  p99 {}  (bucket bounds; mean {}, {} events)",
                        fmt_bound(g.p50_secs),
                        fmt_bound(g.p99_secs),
                        fmt_ms(g.mean_secs.map(|s| s * 1000.0)),
                        g.count
                    );
                }
                None => {
                    let _ = writeln!(o, "{label:<18}not available from /metrics");
                }
            }
        }

        o.push('\n');
        match self.profile {
            Profile::Embedded => self.human_raw_sqlite(&mut o),
            Profile::Production => self.human_raw_mysql(&mut o),
        }
        match self.profile {
            Profile::Embedded => self.human_targets_embedded(&mut o),
            Profile::Production => self.human_targets_production(&mut o),
        }
        o
    }

    fn human_raw_mysql(&self, o: &mut String) {
        let l = &self.load;
        if self.raw_mysql.is_empty() {
            let _ = writeln!(o, "raw MySQL         skipped (--raw-seconds 0)");
        }
        for r in &self.raw_mysql {
            let _ = writeln!(
                o,
                "raw MySQL         {:.0} commands/s = {:.0} transactions/s at {} command{}/transaction, {} connections  ({} in {:.2} s, {} errors)",
                r.commands_per_sec(),
                r.transactions_per_sec(),
                r.batch,
                if r.batch == 1 { "" } else { "s" },
                r.clients,
                r.commands,
                r.seconds,
                r.errors
            );
            for e in &r.error_samples {
                let _ = writeln!(o, "  e.g.            {e}");
            }
        }
        if !self.raw_mysql.is_empty() {
            let _ = writeln!(
                o,
                "                  (per command: 1 event_store row + 1 orders row, shapes of migration 0001; no items, no outbox)"
            );
        }
        for r in &self.raw_mysql {
            if r.commands_per_sec() > 0.0 {
                let _ = writeln!(
                    o,
                    "service/raw       {:.0}% of the raw ceiling at {} command{}/transaction",
                    100.0 * l.throughput() / r.commands_per_sec(),
                    r.batch,
                    if r.batch == 1 { "" } else { "s" },
                );
            }
        }
    }

    fn human_targets_production(&self, o: &mut String) {
        let l = &self.load;
        let _ = writeln!(o, "\ntargets (issue 3 item 9, production backends):");
        let _ = writeln!(
            o,
            "  ≥ {TARGET_PRODUCTION_COMMANDS_PER_SEC:.0} commands/s         {}",
            verdict(l.throughput() >= TARGET_PRODUCTION_COMMANDS_PER_SEC)
        );
        let _ = writeln!(
            o,
            "  publish lag p99 ≤ 100 ms  {}",
            verdict(self.publish_lag_ok())
        );
        let _ = writeln!(
            o,
            "  no errors                 {}",
            verdict(l.non_201 == 0 && l.transport_errors == 0)
        );
        let _ = writeln!(
            o,
            "  pipeline drained          {}",
            verdict(self.drain.drained)
        );
    }

    fn publish_lag_ok(&self) -> bool {
        self.server
            .publish_lag
            .as_ref()
            .and_then(|g| g.p99_secs)
            .is_some_and(|p| p <= TARGET_PUBLISH_LAG_P99_SECS)
    }

    fn human_raw_sqlite(&self, o: &mut String) {
        let l = &self.load;
        if self.raw.is_empty() {
            let _ = writeln!(o, "raw SQLite        skipped (--raw-seconds 0)");
        }
        for r in &self.raw {
            let _ = writeln!(
                o,
                "raw SQLite        {:.0} commands/s at {} command{}/transaction  ({} in {:.2} s; WAL, synchronous=NORMAL)",
                r.per_sec(),
                r.batch,
                if r.batch == 1 { "" } else { "s" },
                r.commands,
                r.seconds
            );
        }
        if let Some(first) = self.raw.first() {
            let _ = writeln!(
                o,
                "                  (per command: 1 event ({} B data), 1 order, 2 items, 1 outbox row ({} B payload))",
                first.event_data_bytes, first.payload_bytes
            );
            if first.per_sec() > 0.0 {
                let _ = writeln!(
                    o,
                    "service/raw       {:.0}% of the batched raw ceiling",
                    100.0 * l.throughput() / first.per_sec()
                );
            }
        }
    }

    fn human_targets_embedded(&self, o: &mut String) {
        let l = &self.load;
        let p99 = self.p(0.99);
        let _ = writeln!(o, "\ntargets (DESIGN.md §7, embedded, 64 connections):");
        let _ = writeln!(
            o,
            "  ≥ {TARGET_COMMANDS_PER_SEC:.0} commands/s        {}",
            verdict(l.throughput() >= TARGET_COMMANDS_PER_SEC)
        );
        let _ = writeln!(
            o,
            "  p99 ≤ {TARGET_P99_MS:.0} ms               {}",
            verdict(p99.is_some_and(|p| p <= TARGET_P99_MS))
        );
        let _ = writeln!(
            o,
            "  publish lag p99 ≤ 100 ms  {}",
            verdict(self.publish_lag_ok())
        );
        let _ = writeln!(
            o,
            "  no errors                 {}",
            verdict(l.non_201 == 0 && l.transport_errors == 0)
        );
    }

    pub fn to_json(&self) -> Value {
        let l = &self.load;
        let lag = |g: &Option<Lag>| match g {
            Some(g) => json!({
                "events": g.count,
                "p50_seconds": json_num(g.p50_secs),
                "p99_seconds": json_num(g.p99_secs),
                "mean_seconds": json_num(g.mean_secs),
            }),
            None => Value::Null,
        };
        let raw = |r: Option<&RawResult>| match r {
            Some(r) => json!({
                "batch": r.batch,
                "commands": r.commands,
                "seconds": r.seconds,
                "commands_per_sec": r.per_sec(),
                "event_data_bytes": r.event_data_bytes,
                "payload_bytes": r.payload_bytes,
            }),
            None => Value::Null,
        };
        let statuses: serde_json::Map<String, Value> = l
            .statuses
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        let raw_mysql: Vec<Value> = self
            .raw_mysql
            .iter()
            .map(|r| {
                json!({
                    "clients": r.clients,
                    "batch": r.batch,
                    "transactions": r.transactions,
                    "commands": r.commands,
                    "seconds": r.seconds,
                    "commands_per_sec": r.commands_per_sec(),
                    "transactions_per_sec": r.transactions_per_sec(),
                    "errors": r.errors,
                    "error_samples": r.error_samples,
                })
            })
            .collect();
        let (relay_rate, projector_rate) = self.drain.rates();
        json!({
            "profile": self.profile.name(),
            "backends": self.backends,
            "machine": { "cores": self.cores },
            "config": {
                "target": self.target,
                "spawned": self.spawned,
                "connections": self.connections,
                "warmup_seconds": self.warmup_secs,
                "duration_seconds": self.duration_secs,
            },
            "load": {
                "measured_seconds": l.measured.as_secs_f64(),
                "created": l.created,
                "commands_per_sec": l.throughput(),
                "latency_ms": {
                    "p50": json_num(self.p(0.5)),
                    "p90": json_num(self.p(0.9)),
                    "p99": json_num(self.p(0.99)),
                    "p999": json_num(self.p(0.999)),
                    "max": json_num(self.p(1.0)),
                },
                "non_201": l.non_201,
                "non_201_by_status": statuses,
                "transport_errors": l.transport_errors,
                "error_samples": l.error_samples,
                "connections_opened": l.connects,
                "commands_per_commit": json_num(self.server.commands_per_commit()),
            },
            "service_died": self.service_died,
            "drain": {
                "drained": self.drain.drained,
                "error": self.drain.error,
                "seconds": self.drain.seconds,
                "outbox_pending": json_num(self.drain.outbox_pending),
                "projector_lag_events": json_num(self.drain.projector_lag),
                "published_not_projected": json_num(self.drain.unprojected),
                "outbox_pending_at_start": json_num(self.drain.outbox_pending_start),
                "projector_lag_events_at_start": json_num(self.drain.projector_lag_start),
                "relay_events_per_sec": json_num(relay_rate),
                "projector_events_per_sec": json_num(projector_rate),
            },
            "publish_lag": lag(&self.server.publish_lag),
            "projection_lag": lag(&self.server.projection_lag),
            "raw_sqlite": {
                "batched": raw(self.raw.first()),
                "unbatched": raw(self.raw.get(1)),
            },
            "raw_mysql": raw_mysql,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::parse;

    const BEFORE: &str = "\
orders_publish_lag_seconds_bucket{le=\"0.005\"} 10
orders_publish_lag_seconds_bucket{le=\"0.05\"} 10
orders_publish_lag_seconds_bucket{le=\"+Inf\"} 10
orders_publish_lag_seconds_sum 0.01
orders_publish_lag_seconds_count 10
orders_commands_accepted_total 10
orders_commit_batches_total 10
";
    const AFTER: &str = "\
orders_publish_lag_seconds_bucket{le=\"0.005\"} 60
orders_publish_lag_seconds_bucket{le=\"0.05\"} 109
orders_publish_lag_seconds_bucket{le=\"+Inf\"} 110
orders_publish_lag_seconds_sum 2.01
orders_publish_lag_seconds_count 110
orders_commands_accepted_total 1010
orders_commit_batches_total 20
";

    #[test]
    fn server_side_figures_cover_only_the_observations_of_this_run() {
        let s = ServerSide::from_scrapes(&parse(BEFORE), &parse(AFTER));
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
            server: ServerSide::from_scrapes(&parse(BEFORE), &parse(AFTER)),
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
        }
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
