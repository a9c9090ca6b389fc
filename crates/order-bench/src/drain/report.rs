//! The drain scenario's result: a table with one row per instance count,
//! the details of each run below it, or one JSON object.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::{DrainRun, Failover};
use crate::report::json_num;

impl DrainRun {
    /// Events taken out of the outbox during the window.
    pub fn relayed(&self) -> f64 {
        (self.events as f64 - self.pending_at_end.unwrap_or(0.0)).max(0.0)
    }

    /// Seconds of the drain: until empty, else the whole window.
    pub fn seconds(&self) -> f64 {
        self.drained_after.unwrap_or(self.window_secs)
    }

    pub fn events_per_sec(&self) -> Option<f64> {
        let s = self.seconds();
        (s > 0.0).then(|| self.relayed() / s)
    }

    pub fn events_per_sec_per_instance(&self) -> Option<f64> {
        Some(self.events_per_sec()? / f64::from(self.instances.max(1)))
    }

    /// Microseconds of CPU per relayed event.
    fn per_event(&self, cpu_secs: Option<f64>) -> Option<f64> {
        let n = self.relayed();
        (n > 0.0).then_some(cpu_secs? * 1e6 / n)
    }

    /// CPU seconds of all instances (None when one could not be read).
    pub fn service_cpu_secs(&self) -> Option<f64> {
        self.per_instance.iter().map(|i| i.cpu_secs).sum()
    }

    pub fn process_cpu_secs(&self, name: &str) -> Option<f64> {
        self.processes
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.cpu_secs)
    }

    pub fn service_us_per_event(&self) -> Option<f64> {
        self.per_event(self.service_cpu_secs())
    }

    pub fn process_us_per_event(&self, name: &str) -> Option<f64> {
        self.per_event(self.process_cpu_secs(name))
    }

    /// Events the instances report as published.
    pub fn published(&self) -> f64 {
        self.per_instance.iter().filter_map(|i| i.published).sum()
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The table and the details of every run.
pub fn human(runs: &[DrainRun]) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = String::new();
    let _ = writeln!(o, "\n== order-bench: relay drain ==");
    let _ = writeln!(
        o,
        "machine {cores} cores; instances, MariaDB, broker and MongoDB server share them"
    );
    let _ = writeln!(
        o,
        "\n{:>9} {:>9} {:>8} {:>9} {:>13} {:>13} {:>13} {:>12}",
        "instances",
        "events",
        "seconds",
        "events/s",
        "events/s/inst",
        "svc CPU µs/ev",
        "MariaDB µs/ev",
        "failover gap"
    );
    for r in runs {
        let gap = r
            .failover
            .as_ref()
            .map_or_else(|| "-".to_owned(), |f| num(f.rebalanced_after, 1) + " s");
        let _ = writeln!(
            o,
            "{:>9} {:>9} {:>8} {:>9} {:>13} {:>13} {:>13} {:>12}",
            r.instances,
            r.events,
            format!(
                "{:.2}{}",
                r.seconds(),
                if r.drained_after.is_some() { "" } else { "!" }
            ),
            num(r.events_per_sec(), 0),
            num(r.events_per_sec_per_instance(), 0),
            num(r.service_us_per_event(), 1),
            num(r.process_us_per_event("mariadbd"), 1),
            gap
        );
    }
    if runs.iter().any(|r| r.drained_after.is_none()) {
        let _ = writeln!(o, "(!: the outbox was NOT empty at the end of the wait)");
    }
    for r in runs {
        details(&mut o, r);
    }
    o
}

fn details(o: &mut String, r: &DrainRun) {
    let _ = writeln!(
        o,
        "\n-- {} instance{} (database {}, topic {})",
        r.instances,
        if r.instances == 1 { "" } else { "s" },
        r.database,
        r.topic
    );
    let _ = writeln!(
        o,
        "preload       {} events over {} orders in {:.1} s, before any instance ran",
        r.events, r.orders, r.preload_secs
    );
    let _ = writeln!(
        o,
        "drain         all ready after {:.2} s, outbox empty after {} s; {} published (instances' counters)",
        r.ready_secs,
        num(r.drained_after, 2),
        r.published()
    );
    for (i, inst) in r.per_instance.iter().enumerate() {
        let _ = writeln!(
            o,
            "  instance {}  {}  published {}  parked {}  partitions held {}  fenced {}  CPU {} s",
            i + 1,
            inst.url,
            num(inst.published, 0),
            num(inst.parked, 0),
            num(inst.partitions_held, 0),
            num(inst.fenced, 0),
            num(inst.cpu_secs, 2)
        );
    }
    let mut cpu = vec![format!(
        "instances {} s ({} µs/event)",
        num(r.service_cpu_secs(), 2),
        num(r.service_us_per_event(), 1)
    )];
    for p in &r.processes {
        cpu.push(format!(
            "{} {} s ({} µs/event)",
            p.name,
            num(p.cpu_secs, 2),
            num(r.process_us_per_event(&p.name), 1)
        ));
    }
    let _ = writeln!(o, "CPU           {}", cpu.join(", "));
    if let Some(f) = &r.failover {
        failover_line(o, f);
    }
}

fn failover_line(o: &mut String, f: &Failover) {
    let each: Vec<String> = f
        .published_by_instance
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some(format!("instance {} {}", i + 1, (*p)?)))
        .collect();
    let _ = writeln!(
        o,
        "failover      {} events committed, then instance {} (holding {} of {} partitions) killed with SIGKILL:\n              \
         survivors held every partition after {} s, outbox empty after {} s;\n              \
         survivors published {} ({}), fenced {} times",
        f.events,
        f.victim + 1,
        f.victim_partitions,
        f.partitions,
        num(f.rebalanced_after, 2),
        num(f.drained_after, 2),
        f.published_by_survivors,
        each.join(", "),
        f.fenced_by_survivors
    );
}

/// One JSON object: `{"scenario": "drain", "runs": [...]}`.
pub fn to_json(runs: &[DrainRun]) -> Value {
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            let instances: Vec<Value> = r
                .per_instance
                .iter()
                .map(|i| {
                    json!({
                        "url": i.url,
                        "published": json_num(i.published),
                        "parked": json_num(i.parked),
                        "partitions_held": json_num(i.partitions_held),
                        "fenced": json_num(i.fenced),
                        "cpu_seconds": json_num(i.cpu_secs),
                    })
                })
                .collect();
            let processes: serde_json::Map<String, Value> = r
                .processes
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        json!({
                            "cpu_seconds": json_num(p.cpu_secs),
                            "cpu_us_per_event": json_num(r.process_us_per_event(&p.name)),
                        }),
                    )
                })
                .collect();
            let failover = r.failover.as_ref().map(|f| {
                json!({
                    "events": f.events,
                    "killed_instance": f.victim + 1,
                    "killed_partitions": f.victim_partitions,
                    "partitions": f.partitions,
                    "all_partitions_held_after_seconds": json_num(f.rebalanced_after),
                    "outbox_empty_after_seconds": json_num(f.drained_after),
                    "published_by_survivors": f.published_by_survivors,
                    "published_by_instance": f.published_by_instance.iter().map(|p| json_num(*p)).collect::<Vec<_>>(),
                    "fenced_by_survivors": f.fenced_by_survivors,
                })
            });
            json!({
                "instances": r.instances,
                "database": r.database,
                "topic": r.topic,
                "orders": r.orders,
                "events": r.events,
                "preload_seconds": r.preload_secs,
                "ready_seconds": r.ready_secs,
                "drained": r.drained_after.is_some(),
                "seconds": r.seconds(),
                "pending_at_end": json_num(r.pending_at_end),
                "published": r.published(),
                "events_per_sec": json_num(r.events_per_sec()),
                "events_per_sec_per_instance": json_num(r.events_per_sec_per_instance()),
                "service_cpu_seconds": json_num(r.service_cpu_secs()),
                "service_cpu_us_per_event": json_num(r.service_us_per_event()),
                "per_instance": instances,
                "processes": processes,
                "failover": failover,
            })
        })
        .collect();
    json!({ "scenario": "drain", "runs": runs })
}

#[cfg(test)]
mod tests {
    use super::super::{InstanceFigures, ProcessCpu};
    use super::*;

    fn run() -> DrainRun {
        DrainRun {
            instances: 2,
            events: 1000,
            drained_after: Some(4.0),
            window_secs: 4.0,
            pending_at_end: Some(0.0),
            per_instance: vec![
                InstanceFigures {
                    published: Some(600.0),
                    cpu_secs: Some(0.5),
                    ..InstanceFigures::default()
                },
                InstanceFigures {
                    published: Some(400.0),
                    cpu_secs: Some(0.25),
                    ..InstanceFigures::default()
                },
            ],
            processes: vec![
                ProcessCpu {
                    name: "mariadbd".into(),
                    cpu_secs: Some(2.0),
                },
                ProcessCpu {
                    name: "tansu".into(),
                    cpu_secs: None,
                },
            ],
            ..DrainRun::default()
        }
    }

    #[test]
    fn rates_and_cpu_per_event_follow_from_the_run() {
        let r = run();
        assert_eq!(r.events_per_sec(), Some(250.0));
        assert_eq!(r.events_per_sec_per_instance(), Some(125.0));
        assert_eq!(r.service_us_per_event(), Some(750.0));
        assert_eq!(r.process_us_per_event("mariadbd"), Some(2000.0));
        assert_eq!(r.process_us_per_event("tansu"), None);
        assert_eq!(r.published(), 1000.0);
    }

    #[test]
    fn an_undrained_run_counts_what_left_the_outbox_over_the_window() {
        let r = DrainRun {
            drained_after: None,
            window_secs: 10.0,
            pending_at_end: Some(500.0),
            ..run()
        };
        assert_eq!(r.events_per_sec(), Some(50.0));
        assert!(human(&[r]).contains("NOT empty"));
    }

    #[test]
    fn the_table_and_the_json_carry_the_failover_gap() {
        let r = DrainRun {
            failover: Some(Failover {
                rebalanced_after: Some(12.5),
                partitions: 16,
                ..Failover::default()
            }),
            ..run()
        };
        let text = human(std::slice::from_ref(&r));
        assert!(text.contains("12.5 s"), "{text}");
        let j = to_json(&[r]);
        assert_eq!(
            j["runs"][0]["failover"]["all_partitions_held_after_seconds"],
            json!(12.5)
        );
        assert_eq!(j["runs"][0]["events_per_sec"], json!(250.0));
    }
}
