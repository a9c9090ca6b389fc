//! The human summary of a [`Report`]: the text printed at the end of a
//! run, with the raw-database ceilings and the targets of the profile. Kept
//! apart from the data and the JSON so the wording can change on its own.

use std::fmt::Write;

use crate::cpu::PhaseCpu;
use crate::profile::Profile;

use super::{
    Report, TARGET_COMMANDS_PER_SEC, TARGET_CPU_US_PER_COMMAND, TARGET_MYSQL_COMMANDS_PER_SEC,
    TARGET_MYSQL_P99_MS, TARGET_P99_MS, TARGET_PRODUCTION_COMMANDS_PER_SEC,
    TARGET_PUBLISH_LAG_P99_SECS,
};

pub(super) fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} ms"))
}

fn fmt_us(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0} µs"))
}

/// One line per watched process: CPU per `unit` with the catch-up and
/// during the load, and the cores it kept busy during the load.
pub(crate) fn cpu_lines(o: &mut String, cpu: &PhaseCpu, count: u64, unit: &str) {
    if cpu.processes.is_empty() {
        let _ = writeln!(o, "  not measured");
        return;
    }
    let _ = writeln!(
        o,
        "  (load {:.2} s, catch-up until {:.2} s; CPU from /proc/<pid>/stat, user + system)",
        cpu.load_secs, cpu.total_secs
    );
    let service = cpu.service().into_iter();
    let bench = cpu.bench().into_iter();
    for p in service.chain(cpu.backends()).chain(bench) {
        let label = if p.name == crate::cpu::BENCH {
            "order-bench (load generator itself)".to_owned()
        } else {
            p.name.clone()
        };
        let _ = writeln!(
            o,
            "  {label:<36}{:>9}/{unit} with the catch-up  {:>9}/{unit} during the load  {} cores busy",
            fmt_us(crate::cpu::us_per(p.total, count)),
            fmt_us(crate::cpu::us_per(p.load, count)),
            p.cores(cpu.load_secs)
                .map_or_else(|| "n/a".to_owned(), |c| format!("{c:.2}")),
        );
    }
    if cpu.service().is_none() {
        let _ = writeln!(o, "  (service CPU unknown: not spawned by this run)");
    }
}

/// A bucket upper bound as text: "≤ 5 ms", "> last bucket" for +Inf.
pub(super) fn fmt_bound(secs: Option<f64>) -> String {
    match secs {
        None => "n/a".to_owned(),
        Some(s) if s.is_infinite() => "> largest bucket".to_owned(),
        Some(s) => format!("≤ {} ms", s * 1000.0),
    }
}

/// One line of a targets list: the target, then whether it was met.
fn target(o: &mut String, label: &str, ok: bool) {
    let _ = writeln!(o, "  {label:<26}{}", verdict(ok));
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

impl Report {
    pub fn human(&self) -> String {
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
                (true, Profile::Mysql) =>
                    "spawned, fresh MySQL database, embedded bus and SQLite read model",
            }
        );
        if let Some(b) = &self.backends {
            let _ = writeln!(o, "backends          {b}");
        }
        match &self.mix {
            Some(m) => o.push_str(&crate::mix::report::human(
                m,
                self.connections,
                self.warmup_secs,
                self.duration_secs,
            )),
            None => self.human_load(&mut o),
        }
        if let Some(c) = self.server.commands_per_commit() {
            let _ = writeln!(
                o,
                "group commit      {c:.1} commands per transaction (server counters)"
            );
        }
        if let (Some(r), Some(calls), Some(events)) = (
            self.server.read_model_calls_per_event(),
            self.server.read_model_calls,
            self.server.events_projected,
        ) {
            let _ = writeln!(
                o,
                "projector         {r:.3} read-model round trips per event ({calls} calls, {events} events projected)"
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
            Profile::Production | Profile::Mysql => self.human_raw_mysql(&mut o),
        }
        self.human_echo(&mut o);
        self.human_rebuild(&mut o);
        match (&self.mix, self.profile) {
            (Some(m), _) => o.push_str(&crate::mix::report::human_targets(m, self.drain.drained)),
            (None, Profile::Embedded) => self.human_targets_embedded(&mut o),
            (None, Profile::Production) => self.human_targets_production(&mut o),
            (None, Profile::Mysql) => self.human_targets_mysql(&mut o),
        }
        o
    }

    fn human_load(&self, o: &mut String) {
        let l = &self.load;
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
        let (during, total) = self.service_us_per_command();
        let _ = writeln!(
            o,
            "service CPU       {} per command with the catch-up  ({} during the load)",
            fmt_us(total),
            fmt_us(during)
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
        let _ = writeln!(o, "\nCPU over the load (per command = 201 response):");
        cpu_lines(o, &self.cpu, l.created, "command");
    }

    fn human_raw_mysql(&self, o: &mut String) {
        let service = self.service_commands_per_sec();
        skipped_when(o, "raw MySQL", self.raw_mysql.is_empty());
        for r in &self.raw_mysql {
            let _ = writeln!(
                o,
                "raw MySQL         {:.0} commands/s = {:.0} transactions/s at {}, {} connections  ({} in {:.2} s, {} errors)",
                r.commands_per_sec(),
                r.transactions_per_sec(),
                per_transaction(r.batch),
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
                    100.0 * service / r.commands_per_sec(),
                    r.batch,
                    if r.batch == 1 { "" } else { "s" },
                );
            }
        }
    }

    fn human_targets_production(&self, o: &mut String) {
        let l = &self.load;
        let _ = writeln!(o, "\ntargets (issue 3 item 9, production backends):");
        target(
            o,
            &format!("≥ {TARGET_PRODUCTION_COMMANDS_PER_SEC:.0} commands/s"),
            l.throughput() >= TARGET_PRODUCTION_COMMANDS_PER_SEC,
        );
        target(o, "publish lag p99 ≤ 100 ms", self.publish_lag_ok());
        target(o, "no errors", l.non_201 == 0 && l.transport_errors == 0);
        target(o, "pipeline drained", self.drain.drained);
    }

    fn human_targets_mysql(&self, o: &mut String) {
        let l = &self.load;
        let p99 = self.p(0.99);
        let (_, service) = self.service_us_per_command();
        let mariadb = self
            .cpu
            .get("mariadbd")
            .and_then(|m| crate::cpu::us_per(m.total, l.created));
        let within = |v: Option<f64>, limit: f64| v.is_some_and(|v| v <= limit);
        let _ = writeln!(o, "\ntargets (issue 13, MySQL profile, 64 connections):");
        target(
            o,
            &format!("≥ {TARGET_MYSQL_COMMANDS_PER_SEC:.0} commands/s"),
            l.throughput() >= TARGET_MYSQL_COMMANDS_PER_SEC,
        );
        target(
            o,
            &format!("p99 ≤ {TARGET_MYSQL_P99_MS:.0} ms"),
            within(p99, TARGET_MYSQL_P99_MS),
        );
        target(
            o,
            &format!("service CPU ≤ {TARGET_CPU_US_PER_COMMAND:.0} µs/cmd"),
            within(service, TARGET_CPU_US_PER_COMMAND),
        );
        target(
            o,
            &format!("MariaDB CPU ≤ {TARGET_CPU_US_PER_COMMAND:.0} µs/cmd"),
            within(mariadb, TARGET_CPU_US_PER_COMMAND),
        );
        target(o, "no errors", l.non_201 == 0 && l.transport_errors == 0);
    }

    fn human_rebuild(&self, o: &mut String) {
        let Some(r) = &self.rebuild else { return };
        let cpu = r
            .us_per_event()
            .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1} µs"));
        let _ = writeln!(
            o,
            "rebuild           {} events/s: {} events, {} orders in {} ms; service CPU {cpu} per event",
            r.events_per_second, r.events, r.orders, r.millis
        );
        let _ = writeln!(
            o,
            "                  (target ≥ {:.0} events/s on the embedded profile: {})",
            crate::rebuild::TARGET_EVENTS_PER_SEC,
            verdict(r.met())
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
        let service = self.service_commands_per_sec();
        skipped_when(o, "raw SQLite", self.raw.is_empty());
        for r in &self.raw {
            let _ = writeln!(
                o,
                "raw SQLite        {:.0} commands/s at {}  ({} in {:.2} s; WAL, synchronous=NORMAL)",
                r.per_sec(),
                per_transaction(r.batch),
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
        }
        for r in &self.raw {
            if r.per_sec() > 0.0 {
                let _ = writeln!(
                    o,
                    "service/raw       {:.0}% of the raw ceiling at {}",
                    100.0 * service / r.per_sec(),
                    per_transaction(r.batch)
                );
            }
        }
    }

    fn human_echo(&self, o: &mut String) {
        let Some(e) = &self.echo else {
            let _ = writeln!(
                o,
                "echo ceiling      skipped (--echo-seconds 0, or it failed)"
            );
            return;
        };
        let s = &e.stats;
        let _ = writeln!(
            o,
            "echo ceiling      {:.0} requests/s, p50 {}  p99 {}  ({} echoed in {:.2} s, {} non-201, {} transport errors)",
            s.throughput(),
            fmt_ms(s.latency_us(0.5).map(|u| u as f64 / 1000.0)),
            fmt_ms(s.latency_us(0.99).map(|u| u as f64 / 1000.0)),
            s.created,
            s.measured.as_secs_f64(),
            s.non_201,
            s.transport_errors
        );
        let _ = writeln!(
            o,
            "                  (hyper HTTP/1.1 in this process, {} workers, {} connections, create-order JSON parsed and echoed with 201; {} CPU per request, client and server)",
            crate::echo::ECHO_WORKERS,
            self.connections,
            fmt_us(e.process_us_per_request())
        );
        if let Some(r) = self.service_over_echo() {
            let what = if self.mix.is_some() {
                "the mix's requests/s"
            } else {
                "creates/s"
            };
            let _ = writeln!(
                o,
                "service/echo      {:.0}% of the echo ceiling ({what})",
                100.0 * r
            );
        }
        if let Some(reads) = self.mix.as_ref().and_then(|m| m.reads.as_ref()) {
            if s.throughput() > 0.0 {
                let _ = writeln!(
                    o,
                    "reads/echo        {:.0}% of the echo ceiling (reads-by-id-only phase)",
                    100.0 * reads.stats.per_sec(reads.stats.answered()) / s.throughput()
                );
            }
        }
    }

    fn human_targets_embedded(&self, o: &mut String) {
        let l = &self.load;
        let p99 = self.p(0.99);
        let _ = writeln!(o, "\ntargets (DESIGN.md §7, embedded, 64 connections):");
        target(
            o,
            &format!("≥ {TARGET_COMMANDS_PER_SEC:.0} commands/s"),
            l.throughput() >= TARGET_COMMANDS_PER_SEC,
        );
        target(
            o,
            &format!("p99 ≤ {TARGET_P99_MS:.0} ms"),
            p99.is_some_and(|p| p <= TARGET_P99_MS),
        );
        target(o, "publish lag p99 ≤ 100 ms", self.publish_lag_ok());
        target(o, "no errors", l.non_201 == 0 && l.transport_errors == 0);
    }
}

/// "N command(s)/transaction".
fn per_transaction(batch: usize) -> String {
    let plural = if batch == 1 { "" } else { "s" };
    format!("{batch} command{plural}/transaction")
}

/// The line that says a raw ceiling was not measured.
fn skipped_when(o: &mut String, what: &str, empty: bool) {
    if empty {
        let _ = writeln!(o, "{what:<18}skipped (--raw-seconds 0)");
    }
}
