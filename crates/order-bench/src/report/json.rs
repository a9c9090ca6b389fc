//! The machine-readable [`Report`]: one JSON object with the same figures
//! as the human summary, for scripts and for keeping runs side by side.

use serde_json::{json, Value};

use crate::cpu::{us_per, PhaseCpu};
use crate::raw::RawResult;

use super::{Lag, Report};

/// Per watched process: CPU seconds, µs per `count` (with the catch-up and
/// during the load) and cores busy during the load.
pub(crate) fn cpu_json(cpu: &PhaseCpu, count: u64) -> Value {
    let processes: serde_json::Map<String, Value> = cpu
        .processes
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                json!({
                    "cpu_seconds_load": json_num(p.load),
                    "cpu_seconds_with_catch_up": json_num(p.total),
                    "us_per_unit_load": json_num(us_per(p.load, count)),
                    "us_per_unit_with_catch_up": json_num(us_per(p.total, count)),
                    "cores_busy_load": json_num(p.cores(cpu.load_secs)),
                }),
            )
        })
        .collect();
    json!({
        "load_seconds": cpu.load_secs,
        "with_catch_up_seconds": cpu.total_secs,
        "units": count,
        "processes": processes,
    })
}

pub(crate) fn json_num(v: Option<f64>) -> Value {
    match v {
        Some(x) if x.is_finite() => json!(x),
        Some(_) => json!("+Inf"),
        None => Value::Null,
    }
}

impl Report {
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
        let (cpu_load, cpu_total) = self.service_us_per_command();
        let echo = self.echo.as_ref().map(|e| {
            json!({
                "requests_per_sec": e.stats.throughput(),
                "echoed": e.stats.created,
                "measured_seconds": e.stats.measured.as_secs_f64(),
                "latency_ms": {
                    "p50": json_num(e.stats.latency_us(0.5).map(|u| u as f64 / 1000.0)),
                    "p99": json_num(e.stats.latency_us(0.99).map(|u| u as f64 / 1000.0)),
                },
                "non_201": e.stats.non_201,
                "transport_errors": e.stats.transport_errors,
                "workers": crate::echo::ECHO_WORKERS,
                "process_cpu_us_per_request": json_num(e.process_us_per_request()),
            })
        });
        let service = self.service_commands_per_sec();
        let over = |ceiling: f64| json_num((ceiling > 0.0).then(|| service / ceiling));
        let over_raw: Vec<Value> = self
            .raw
            .iter()
            .map(|r| json!({ "raw": "sqlite", "batch": r.batch, "fraction": over(r.per_sec()) }))
            .chain(self.raw_mysql.iter().map(|r| {
                json!({ "raw": "mysql", "batch": r.batch, "clients": r.clients, "fraction": over(r.commands_per_sec()) })
            }))
            .collect();
        let load = if self.mix.is_some() {
            Value::Null
        } else {
            json!({
                "measured_seconds": l.measured.as_secs_f64(),
                "created": l.created,
                "commands_per_sec": l.throughput(),
                "service_cpu_us_per_command": json_num(cpu_total),
                "service_cpu_us_per_command_during_load": json_num(cpu_load),
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
                "read_model_calls_per_event": json_num(self.server.read_model_calls_per_event()),
            })
        };
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
            "load": load,
            "cpu": cpu_json(&self.cpu, if self.mix.is_some() {
                self.mix.as_ref().map_or(0, |m| m.mix.stats.commands())
            } else {
                l.created
            }),
            "echo": echo,
            "service_over_echo": json_num(self.service_over_echo()),
            "service_over_raw": over_raw,
            "mix": self.mix.as_ref().map(crate::mix::report::to_json),
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
            "rebuild": self.rebuild.as_ref().map(|r| json!({
                "events": r.events,
                "orders": r.orders,
                "millis": r.millis,
                "events_per_second": r.events_per_second,
                "service_cpu_us_per_event": json_num(r.us_per_event()),
            })),
        })
    }
}
