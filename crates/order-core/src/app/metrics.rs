//! Process-wide counters and histograms, rendered in the Prometheus text
//! format by the HTTP layer. Lock-free: the hot path only does atomic adds.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    overflow: AtomicU64,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe_secs(&self, secs: f64) {
        let secs = secs.max(0.0);
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros
            .fetch_add((secs * 1_000_000.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Approximate quantile: the upper bound of the bucket holding it.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(BUCKETS[i]);
            }
        }
        Some(f64::INFINITY)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub commands_accepted: AtomicU64,
    pub commands_rejected: AtomicU64,
    pub commands_failed: AtomicU64,
    pub events_appended: AtomicU64,
    pub commit_batches: AtomicU64,
    pub publish_attempts: AtomicU64,
    pub publish_failures: AtomicU64,
    /// Messages found on the bus from an earlier, unanswered attempt and
    /// therefore not sent again.
    pub publish_found_earlier: AtomicU64,
    pub events_published: AtomicU64,
    pub events_parked: AtomicU64,
    /// Relay batches whose settle found a partition fenced (another
    /// instance holds it at a newer epoch): nothing of theirs was written.
    pub relay_fenced: AtomicU64,
    /// Relay partitions this instance claimed, and lost without releasing.
    pub relay_claims: AtomicU64,
    pub relay_losses: AtomicU64,
    /// Relay partitions this instance holds now.
    pub relay_partitions_held: AtomicU64,
    pub replays: AtomicU64,
    pub replay_failures: AtomicU64,
    /// Sequence heads the automatic redrive replayed.
    pub dlq_auto_redriven: AtomicU64,
    /// Retryable DLQ heads the automatic redrive left to an operator (past
    /// its attempt cap), as of its last scan.
    pub dlq_redrive_exhausted: AtomicU64,
    /// Resolved DLQ records deleted by the retention policy.
    pub dlq_purged: AtomicU64,
    pub events_projected: AtomicU64,
    pub projection_duplicates: AtomicU64,
    /// Calls from the projector to the read model (reads and writes).
    pub read_model_calls: AtomicU64,
    pub projection_failures: AtomicU64,
    pub dead_letters_recorded: AtomicU64,
    /// Global position of the newest event the projector applied.
    pub projector_position: AtomicI64,
    /// Consumer lag of the projector on the events topic (messages).
    pub projector_lag: AtomicU64,
    /// Consumer lag of the DLQ recorder on the DLQ topic (messages).
    pub dlq_recorder_lag: AtomicU64,
    /// Commit → broker acknowledgement.
    pub publish_lag: Histogram,
    /// Commit → applied to the read model.
    pub projection_lag: Histogram,
}

/// Gauges read from the stores at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    pub outbox_pending: u64,
    pub outbox_oldest_age_secs: f64,
    pub dlq_by_status: Vec<(&'static str, u64)>,
    pub dlq_oldest_pending_age_secs: f64,
    /// Unresolved DLQ records held behind a resolved head (should be 0).
    pub dlq_orphaned_holds: u64,
    pub event_store_head: i64,
    pub bus_down: bool,
}

fn counter(out: &mut String, name: &str, help: &str, v: &AtomicU64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
        v.load(Ordering::Relaxed)
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::with_capacity(4096);
        counter(
            &mut o,
            "orders_commands_accepted_total",
            "Commands that committed events.",
            &self.commands_accepted,
        );
        counter(
            &mut o,
            "orders_commands_rejected_total",
            "Commands rejected by validation or the domain (4xx).",
            &self.commands_rejected,
        );
        counter(
            &mut o,
            "orders_commands_failed_total",
            "Commands that failed on infrastructure (5xx).",
            &self.commands_failed,
        );
        counter(
            &mut o,
            "orders_events_appended_total",
            "Events appended to the event store.",
            &self.events_appended,
        );
        counter(
            &mut o,
            "orders_commit_batches_total",
            "Group-commit transactions.",
            &self.commit_batches,
        );
        counter(
            &mut o,
            "orders_publish_attempts_total",
            "Publish attempts (messages).",
            &self.publish_attempts,
        );
        counter(
            &mut o,
            "orders_publish_failures_total",
            "Failed publish attempts (messages).",
            &self.publish_failures,
        );
        counter(
            &mut o,
            "orders_publish_found_earlier_total",
            "Messages not sent again because an earlier, unanswered attempt had delivered them.",
            &self.publish_found_earlier,
        );
        counter(
            &mut o,
            "orders_events_published_total",
            "Events acknowledged by the bus.",
            &self.events_published,
        );
        counter(
            &mut o,
            "orders_events_parked_total",
            "Events parked in the DLQ by the relay.",
            &self.events_parked,
        );
        counter(
            &mut o,
            "orders_relay_fenced_total",
            "Relay batches refused at settle because a partition's lease had moved on (nothing written).",
            &self.relay_fenced,
        );
        counter(
            &mut o,
            "orders_relay_partition_claims_total",
            "Relay partitions this instance claimed.",
            &self.relay_claims,
        );
        counter(
            &mut o,
            "orders_relay_partition_losses_total",
            "Relay partitions this instance lost without releasing them.",
            &self.relay_losses,
        );
        gauge(
            &mut o,
            "orders_relay_partitions_held",
            "Relay partitions this instance holds.",
            self.relay_partitions_held.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "orders_dlq_replays_total",
            "DLQ replay requests that published.",
            &self.replays,
        );
        counter(
            &mut o,
            "orders_dlq_replay_failures_total",
            "DLQ replays that failed.",
            &self.replay_failures,
        );
        counter(
            &mut o,
            "orders_dlq_auto_redriven_total",
            "DLQ sequence heads the automatic redrive replayed.",
            &self.dlq_auto_redriven,
        );
        counter(
            &mut o,
            "orders_dlq_purged_total",
            "Resolved DLQ records deleted by the retention policy (ORDER_DLQ_RETENTION_DAYS).",
            &self.dlq_purged,
        );
        gauge(
            &mut o,
            "orders_dlq_redrive_exhausted",
            "Retryable DLQ sequence heads past the automatic redrive's attempt cap (last scan); an operator decides.",
            self.dlq_redrive_exhausted.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "orders_events_projected_total",
            "Events applied to the read model.",
            &self.events_projected,
        );
        counter(
            &mut o,
            "orders_projection_duplicates_total",
            "Events the projector had already applied.",
            &self.projection_duplicates,
        );
        counter(
            &mut o,
            "orders_projector_read_model_calls_total",
            "Read-model calls of the projector (get_many and upsert_many; about one per batch).",
            &self.read_model_calls,
        );
        counter(
            &mut o,
            "orders_projection_failures_total",
            "Messages the projector sent to the DLQ topic.",
            &self.projection_failures,
        );
        counter(
            &mut o,
            "orders_dead_letters_recorded_total",
            "DLQ topic messages recorded.",
            &self.dead_letters_recorded,
        );
        self.publish_lag.render(
            &mut o,
            "orders_publish_lag_seconds",
            "Commit to broker acknowledgement.",
        );
        self.projection_lag.render(
            &mut o,
            "orders_projection_lag_seconds",
            "Commit to read-model update.",
        );
        gauge(
            &mut o,
            "orders_outbox_pending",
            "Outbox rows not yet delivered or parked.",
            g.outbox_pending,
        );
        gauge(
            &mut o,
            "orders_outbox_oldest_age_seconds",
            "Age of the oldest outbox row.",
            g.outbox_oldest_age_secs,
        );
        let _ = writeln!(
            o,
            "# HELP orders_dlq_records DLQ records by status.\n# TYPE orders_dlq_records gauge"
        );
        for (status, n) in &g.dlq_by_status {
            let _ = writeln!(o, "orders_dlq_records{{status=\"{status}\"}} {n}");
        }
        gauge(
            &mut o,
            "orders_dlq_oldest_pending_age_seconds",
            "Age of the oldest unresolved DLQ record.",
            g.dlq_oldest_pending_age_secs,
        );
        gauge(
            &mut o,
            "orders_dlq_orphaned_holds",
            "Unresolved DLQ records held behind a resolved head; the sequencing rules keep it at 0.",
            g.dlq_orphaned_holds,
        );
        gauge(
            &mut o,
            "orders_event_store_position",
            "Highest global position in the event store.",
            g.event_store_head,
        );
        let projected = self.projector_position.load(Ordering::Relaxed);
        gauge(
            &mut o,
            "orders_projector_position",
            "Global position of the newest projected event.",
            projected,
        );
        gauge(
            &mut o,
            "orders_projector_lag_events",
            "Messages on the events topic the projector has not processed (consumer lag, measured every second).",
            self.projector_lag.load(Ordering::Relaxed),
        );
        gauge(
            &mut o,
            "orders_dlq_recorder_lag_events",
            "Messages on the DLQ topic not yet recorded (consumer lag, measured every second).",
            self.dlq_recorder_lag.load(Ordering::Relaxed),
        );
        gauge(
            &mut o,
            "orders_bus_down",
            "1 while the bus fault switch is on.",
            u8::from(g.bus_down),
        );
        o
    }
}
