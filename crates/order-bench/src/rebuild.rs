//! `--rebuild`: after the load, the read model is rebuilt from the event
//! store (`POST /api/admin/read-model/rebuild`) on the same service, timed
//! by the service itself and with the service's CPU over the call.

use std::time::Duration;

use crate::cpu::{self, Meter};
use crate::service::{self, Target};
use crate::{Error, Result};

/// Issue 13: a rebuild of the embedded read model projects at least this
/// many events per second.
pub const TARGET_EVENTS_PER_SEC: f64 = 100_000.0;

/// What the rebuild endpoint answers, and the service's CPU over it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RebuildRun {
    pub events: u64,
    pub orders: u64,
    pub millis: u64,
    pub events_per_second: u64,
    /// Service CPU seconds over the call (None: not spawned by this run).
    pub service_cpu_secs: Option<f64>,
}

impl RebuildRun {
    /// The endpoint's JSON answer.
    pub fn parse(body: &str) -> Result<RebuildRun> {
        let bad = |why: &str| Error::msg(format!("rebuild answer {body:?} {why}"));
        let v: serde_json::Value = serde_json::from_str(body).map_err(|_| bad("is not JSON"))?;
        let field = |name: &str| {
            v.get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad(&format!("has no number {name}")))
        };
        Ok(RebuildRun {
            events: field("events")?,
            orders: field("orders")?,
            millis: field("millis")?,
            events_per_second: field("eventsPerSecond")?,
            service_cpu_secs: None,
        })
    }

    /// Service CPU µs per event projected.
    pub fn us_per_event(&self) -> Option<f64> {
        cpu::us_per(self.service_cpu_secs, self.events)
    }

    pub fn met(&self) -> bool {
        self.events_per_second as f64 >= TARGET_EVENTS_PER_SEC
    }
}

/// Rebuilds the read model of the service at `target` once.
pub async fn measure(target: &Target, meter: &Meter, limit: Duration) -> Result<RebuildRun> {
    let start = meter.sample();
    let (status, body) =
        service::request(target, "POST", "/api/admin/read-model/rebuild", None, limit).await?;
    let end = meter.sample();
    if status != 200 {
        return Err(Error::msg(format!(
            "POST /api/admin/read-model/rebuild answered {status}: {}",
            service::clip(&body, 300)
        )));
    }
    let mut run = RebuildRun::parse(&body)?;
    run.service_cpu_secs = meter
        .phase(&start, &end, &end)
        .service()
        .and_then(|s| s.total);
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_report_is_read_and_judged_against_the_target() {
        let body = r#"{"events":200000,"orders":80000,"millis":1900,"eventsPerSecond":105263}"#;
        let mut run = RebuildRun::parse(body).expect("report");
        assert_eq!(run.events, 200_000);
        assert!(run.met());
        run.service_cpu_secs = Some(2.0);
        assert_eq!(run.us_per_event(), Some(10.0));
        run.events_per_second = 96_000;
        assert!(!run.met());
        assert!(RebuildRun::parse(r#"{"events":1}"#).is_err());
    }
}
