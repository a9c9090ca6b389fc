//! The `--mix` part of the summary and of the JSON object: a table per
//! request kind, the CPU per command and per request, and the single-kind
//! phases with their CPU per request.

use std::fmt::Write;

use serde_json::{json, Value};

use super::plan::{Kind, Weights};
use super::stats::{KindStats, PhaseStats};
use super::{MixRun, PhaseReport};
use crate::report::{cpu_json, cpu_lines, json_num};

/// Target: a transition costs at most this many creates (latency and CPU).
pub const TARGET_TRANSITION_OVER_CREATE: f64 = 1.5;
/// Target: reads by id per second.
pub const TARGET_READS_PER_SEC: f64 = 40_000.0;

pub fn describe_weights(w: &Weights) -> String {
    format!(
        "{}% creates, {}% confirm/prepare/ready/deliver, {}% cancels, {}% reads by id, {}% customer lists",
        w.creates, w.transitions, w.cancels, w.gets, w.lists
    )
}

fn ms(us: Option<u64>) -> String {
    us.map_or_else(
        || "n/a".to_owned(),
        |u| format!("{:.2} ms", u as f64 / 1000.0),
    )
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0} µs"))
}

fn problems(k: &KindStats) -> String {
    let mut parts: Vec<String> = k.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
    if k.not_found > 0 {
        parts.push(format!("404 not yet projected×{}", k.not_found));
    }
    if k.transport_errors > 0 {
        parts.push(format!("transport×{}", k.transport_errors));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

fn row(o: &mut String, label: &str, k: &KindStats, s: &PhaseStats) {
    let _ = writeln!(
        o,
        "  {label:<20}{:>9}{:>10.0}{:>11}{:>11}  {}",
        k.ok,
        s.per_sec(k.ok),
        ms(k.latency_us(0.5)),
        ms(k.latency_us(0.99)),
        problems(k)
    );
}

/// The per-kind table of one phase.
fn table(o: &mut String, s: &PhaseStats) {
    let _ = writeln!(
        o,
        "  {:<20}{:>9}{:>10}{:>11}{:>11}  not 2xx",
        "kind", "ok", "per s", "p50", "p99"
    );
    for k in Kind::ALL {
        let ks = s.kind(k);
        if ks.requests() > 0 {
            row(o, k.name(), ks, s);
        }
    }
    let t = s.combined(&Kind::TRANSITIONS);
    if t.requests() > 0 {
        row(o, "(all transitions)", &t, s);
    }
    let all = s.combined(&Kind::ALL);
    row(o, "(all requests)", &all, s);
}

/// The `--mix` section of the human summary.
pub fn human(run: &MixRun, connections: u32, warmup: u64, duration: u64) -> String {
    let mut o = String::new();
    let m = &run.mix;
    let s = &m.stats;
    let _ = writeln!(
        o,
        "mix               {}",
        run.weights
            .as_ref()
            .map_or_else(String::new, describe_weights)
    );
    let _ = writeln!(
        o,
        "                  {connections} keep-alive connections, each walking its own orders; {warmup} s warm-up + {duration} s measured ({:.2} s actual)",
        s.measured.as_secs_f64()
    );
    let _ = writeln!(
        o,
        "\nthroughput        {:.0} commands/s (creates + transitions), {:.0} requests/s answered",
        s.per_sec(s.commands()),
        s.per_sec(s.answered())
    );
    let (_, per_command) = m.service_us_per_command();
    let (_, per_request) = m.service_us_per_request();
    let _ = writeln!(
        o,
        "service CPU       {} per command, {} per request (catch-up included)",
        us(per_command),
        us(per_request)
    );
    table(&mut o, s);
    let failed = s.failed_statuses();
    if failed.contains_key(&409) {
        let _ = writeln!(
            o,
            "  !! 409 answers: each task owns its orders, so a conflict is a real signal"
        );
    }
    for e in &s.error_samples {
        let _ = writeln!(o, "  e.g.            {e}");
    }
    let _ = writeln!(
        o,
        "\nCPU over the mix (per command = creates + transitions):"
    );
    cpu_lines(&mut o, &m.cpu, s.commands(), "command");
    if let Some((p50, p99)) = s.transition_to_create_latency() {
        let _ = writeln!(
            o,
            "transition/create latency  p50 {p50:.2}×  p99 {p99:.2}×  (in the mix)"
        );
    }

    let phases: Vec<&PhaseReport> = [&run.creates, &run.transitions, &run.reads]
        .into_iter()
        .flatten()
        .collect();
    if !phases.is_empty() {
        let _ = writeln!(
            o,
            "\nsingle-kind phases (no warm-up; each waits for the pipeline's catch-up before the next)"
        );
        let _ = writeln!(
            o,
            "  {:<20}{:>9}{:>10}{:>11}{:>11}  {:>18}  {:>10}  not 2xx",
            "phase", "ok", "per s", "p50", "p99", "service CPU/req", "catch-up"
        );
        for p in &phases {
            let all = p.stats.combined(&Kind::ALL);
            let (during, total) = p.service_us_per_request();
            let _ = writeln!(
                o,
                "  {:<20}{:>9}{:>10.0}{:>11}{:>11}  {:>18}  {:>10}  {}{}",
                p.name,
                all.ok,
                p.stats.per_sec(all.ok),
                ms(all.latency_us(0.5)),
                ms(all.latency_us(0.99)),
                format!("{} ({})", us(total), us(during)),
                format!("{:.2} s", p.drain.seconds),
                problems(&all),
                if p.stats.exhausted_tasks > 0 {
                    format!(" ({} tasks ran out of orders)", p.stats.exhausted_tasks)
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(
            o,
            "                  (service CPU per request with the catch-up, in brackets during the load only)"
        );
        for p in &phases {
            for e in &p.stats.error_samples {
                let _ = writeln!(o, "  e.g. ({})  {e}", p.name);
            }
        }
        if let Some(r) = run.transition_to_create_cpu() {
            let _ = writeln!(
                o,
                "transition/create CPU      {r:.2}× (service CPU per request, single-kind phases)"
            );
        }
    }
    o
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// The mix's targets.
pub fn human_targets(run: &MixRun, drained: bool) -> String {
    let mut o = String::new();
    let s = &run.mix.stats;
    let mut line = |label: String, outcome: String| {
        let _ = writeln!(o, "  {label:<46}{outcome}");
    };
    let bound = TARGET_TRANSITION_OVER_CREATE;
    line(
        format!("transition ≤ {bound}× a create, latency (mix)"),
        s.transition_to_create_latency().map_or_else(
            || "n/a".to_owned(),
            |(p50, p99)| {
                format!(
                    "{} (p50 {p50:.2}×, p99 {p99:.2}×)",
                    verdict(p50.max(p99) <= bound)
                )
            },
        ),
    );
    line(
        format!("transition ≤ {bound}× a create, CPU (phases)"),
        run.transition_to_create_cpu().map_or_else(
            || "n/a (--phase-seconds 0)".to_owned(),
            |r| format!("{} ({r:.2}×)", verdict(r <= bound)),
        ),
    );
    let gets = |p: &PhaseReport| p.stats.per_sec(p.stats.kind(Kind::Get).ok);
    line(
        format!("reads by id ≥ {TARGET_READS_PER_SEC:.0}/s (reads-only phase)"),
        run.reads.as_ref().map_or_else(
            || "n/a (--read-seconds 0)".to_owned(),
            |p| {
                format!(
                    "{} ({:.0}/s)",
                    verdict(gets(p) >= TARGET_READS_PER_SEC),
                    gets(p)
                )
            },
        ),
    );
    let clean = [
        Some(&run.mix),
        run.creates.as_ref(),
        run.transitions.as_ref(),
        run.reads.as_ref(),
    ]
    .into_iter()
    .flatten()
    .all(|p| p.stats.failed_statuses().is_empty() && p.stats.transport_errors() == 0);
    line("no errors (no 409)".to_owned(), verdict(clean).to_owned());
    line("pipeline drained".to_owned(), verdict(drained).to_owned());
    format!("\ntargets (mixed workload):\n{o}")
}

fn kind_json(k: &KindStats, s: &PhaseStats) -> Value {
    let statuses: serde_json::Map<String, Value> = k
        .statuses
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    let p = |q: f64| json_num(k.latency_us(q).map(|u| u as f64 / 1000.0));
    json!({
        "ok": k.ok,
        "per_sec": s.per_sec(k.ok),
        "latency_ms": { "p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": p(1.0) },
        "not_found": k.not_found,
        "other_statuses": statuses,
        "transport_errors": k.transport_errors,
    })
}

fn phase_json(p: &PhaseReport) -> Value {
    let s = &p.stats;
    let kinds: serde_json::Map<String, Value> = Kind::ALL
        .iter()
        .filter(|k| s.kind(**k).requests() > 0)
        .map(|k| (k.name().replace(' ', "_"), kind_json(s.kind(*k), s)))
        .collect();
    let (cmd_load, cmd_total) = p.service_us_per_command();
    let (req_load, req_total) = p.service_us_per_request();
    json!({
        "name": p.name,
        "measured_seconds": s.measured.as_secs_f64(),
        "kinds": kinds,
        "transitions": kind_json(&s.combined(&Kind::TRANSITIONS), s),
        "all": kind_json(&s.combined(&Kind::ALL), s),
        "commands": s.commands(),
        "commands_per_sec": s.per_sec(s.commands()),
        "answered": s.answered(),
        "requests_per_sec": s.per_sec(s.answered()),
        "exhausted_tasks": s.exhausted_tasks,
        "connections_opened": s.connects,
        "error_samples": s.error_samples,
        "service_cpu_us_per_command": json_num(cmd_total),
        "service_cpu_us_per_command_during_load": json_num(cmd_load),
        "service_cpu_us_per_request": json_num(req_total),
        "service_cpu_us_per_request_during_load": json_num(req_load),
        "cpu": cpu_json(&p.cpu, s.answered()),
        "catch_up": {
            "drained": p.drain.drained,
            "seconds": p.drain.seconds,
            "error": p.drain.error,
        },
    })
}

/// The `mix` member of the JSON object.
pub fn to_json(run: &MixRun) -> Value {
    let latency = run.mix.stats.transition_to_create_latency();
    json!({
        "weights_percent": run.weights.map(|w| json!({
            "creates": w.creates,
            "transitions": w.transitions,
            "cancels": w.cancels,
            "reads_by_id": w.gets,
            "customer_lists": w.lists,
        })),
        "mix": phase_json(&run.mix),
        "creates_only": run.creates.as_ref().map(phase_json),
        "transitions_only": run.transitions.as_ref().map(phase_json),
        "reads_only": run.reads.as_ref().map(phase_json),
        "transition_over_create": {
            "latency_p50": json_num(latency.map(|l| l.0)),
            "latency_p99": json_num(latency.map(|l| l.1)),
            "cpu": json_num(run.transition_to_create_cpu()),
            "target": TARGET_TRANSITION_OVER_CREATE,
        },
        "reads_by_id_per_sec_target": TARGET_READS_PER_SEC,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cpu::{PhaseCpu, ProcessUse, SERVICE};

    fn phase(name: &'static str, kind: Kind, ok: u64, lat: u64, cpu: f64) -> PhaseReport {
        let mut stats = PhaseStats::default();
        let k = stats.kind_mut(kind);
        k.ok = ok;
        k.latencies_us = vec![lat; ok as usize];
        stats.finish(Duration::from_secs(1));
        PhaseReport {
            name,
            stats,
            cpu: PhaseCpu {
                load_secs: 1.0,
                total_secs: 1.5,
                processes: vec![ProcessUse {
                    name: SERVICE.into(),
                    load: Some(cpu * 0.9),
                    total: Some(cpu),
                }],
            },
            drain: Default::default(),
        }
    }

    fn run() -> MixRun {
        let mut mix = phase("mix", Kind::Create, 100, 1000, 0.02);
        let c = mix.stats.kind_mut(Kind::Confirm);
        c.ok = 100;
        c.latencies_us = vec![1200; 100];
        mix.stats.kind_mut(Kind::Get).not_found = 3;
        mix.stats.kind_mut(Kind::Cancel).statuses.insert(409, 1);
        MixRun {
            weights: Some(Weights::DEFAULT),
            mix,
            creates: Some(phase("creates only", Kind::Create, 1000, 1000, 0.1)),
            transitions: Some(phase("transitions only", Kind::Prepare, 1000, 1100, 0.12)),
            reads: Some(phase("reads by id only", Kind::Get, 45_000, 500, 0.9)),
        }
    }

    #[test]
    fn the_mix_summary_has_cpu_per_command_ratios_and_the_phases() {
        let r = run();
        let h = human(&r, 64, 1, 1);
        assert!(
            h.contains("25% creates, 40% confirm/prepare/ready/deliver"),
            "{h}"
        );
        assert!(h.contains("200 commands/s"), "{h}");
        // 0.02 s over 200 commands.
        assert!(h.contains("service CPU       100 µs per command"), "{h}");
        assert!(h.contains("404 not yet projected×3"), "{h}");
        assert!(h.contains("409×1"), "{h}");
        assert!(h.contains("!! 409"), "{h}");
        assert!(
            h.contains("transition/create latency  p50 1.20×  p99 1.20×"),
            "{h}"
        );
        assert!(h.contains("transition/create CPU      1.20×"), "{h}");
        assert!(h.contains("reads by id only"), "{h}");
        let t = human_targets(&r, true);
        assert!(
            t.contains("reads by id ≥ 40000/s (reads-only phase)      met (45000/s)"),
            "{t}"
        );
        assert!(t.contains("CPU (phases)      met (1.20×)"), "{t}");
        assert!(
            t.contains("no errors (no 409)                            MISSED"),
            "{t}"
        );
    }

    #[test]
    fn the_mix_json_has_every_phase_and_the_ratios() {
        let j = to_json(&run());
        assert_eq!(j["mix"]["kinds"]["create"]["ok"], 100);
        assert_eq!(j["mix"]["kinds"]["get_by_id"]["not_found"], 3);
        assert_eq!(j["mix"]["kinds"]["cancel"]["other_statuses"]["409"], 1);
        assert_eq!(j["mix"]["service_cpu_us_per_command"], 100.0);
        assert_eq!(j["reads_only"]["requests_per_sec"], 45000.0);
        assert_eq!(j["transition_over_create"]["latency_p50"], 1.2);
        assert!(j["transition_over_create"]["cpu"]
            .as_f64()
            .is_some_and(|r| (r - 1.2).abs() < 1e-9));
        assert_eq!(j["weights_percent"]["creates"], 25);
    }
}
