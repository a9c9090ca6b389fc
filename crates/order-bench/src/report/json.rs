//! The machine-readable [`Report`]: one JSON object with the same figures
//! as the human summary, for scripts and for keeping runs side by side.

use serde_json::{json, Value};

use crate::raw::RawResult;

use super::{Lag, Report};

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
