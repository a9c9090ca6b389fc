//! The outage scenario, run by each profile's tests on real components: a
//! backlog parked as the relay parks it during a bus outage (each order's
//! first parked event heads its sequence, the later ones are held behind
//! it), then ONE bulk replay job drains it. Checked: every event on the
//! topic exactly once, each order in version order, nothing left parked,
//! the job COMPLETED; measured: the job's events/s and the process's peak
//! resident memory during the drain, against its resident memory before.
//!
//! Memory must not grow with the backlog: the job reads heads page by page
//! from the store's head index and replays one page at a time, so what it
//! holds is one page of sequences, whatever the number of parked records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use crate::app::dlq::sequencing;
use crate::app::{
    Auditor, BulkReplayRequest, DlqService, JobConfig, Metrics, Principal, ReplayJobs, RetryPolicy,
    JOB_LIMIT_MAX,
};
use crate::ports::{
    AuditLog, DlqSource, DlqStore, EventBus, FailureClass, JobStatus, NewDlqRecord, ReplayJobStore,
};
use crate::testkit::fixtures::lifecycle;

/// The size of the backlog.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    pub orders: usize,
    /// 1..=[`MAX_EVENTS_PER_ORDER`](crate::testkit::fixtures::MAX_EVENTS_PER_ORDER).
    pub events_per_order: u64,
}

/// What the drain measured.
#[derive(Clone, Copy, Debug)]
pub struct Drained {
    pub events: u64,
    pub heads: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    /// Resident memory of the process before the job started, MiB.
    pub rss_before_mib: f64,
    /// Highest resident memory while the job ran, MiB.
    pub rss_peak_mib: f64,
}

impl Drained {
    /// Prints the figures of `profile` and asserts the bounds its test
    /// chose: resident memory added during the drain, and the drain rate.
    pub fn assert_within(&self, profile: &str, rss_growth_mib: f64, min_events_per_sec: f64) {
        println!(
            "{profile} outage drain: {} events / {} heads in {:.1} s = {:.0} events/s; \
             RSS {:.0} MiB before, {:.0} MiB peak",
            self.events,
            self.heads,
            self.seconds,
            self.events_per_sec,
            self.rss_before_mib,
            self.rss_peak_mib
        );
        let grown = self.rss_peak_mib - self.rss_before_mib;
        assert!(
            grown < rss_growth_mib,
            "memory grew by {grown:.0} MiB during the drain"
        );
        assert!(
            self.events_per_sec > min_events_per_sec,
            "{:.0} events/s",
            self.events_per_sec
        );
    }
}

/// This process's resident memory, in KiB (0 where /proc is missing).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// How long ago the outage parked the backlog.
pub const OUTAGE_AGO: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

/// Parks `outage` in `dlq` through the DLQ's own write path, in chunks:
/// whole order lifecycles (real event envelopes, at most
/// [`MAX_EVENTS_PER_ORDER`](crate::testkit::fixtures::MAX_EVENTS_PER_ORDER) an order), each order's first event failed at
/// the outage, the later ones held behind it. Returns each event id's order
/// and version.
pub async fn park(
    dlq: &dyn DlqStore,
    outage: Outage,
    topic: &str,
) -> HashMap<String, (String, u64)> {
    let mut index = HashMap::new();
    let mut chunk: Vec<NewDlqRecord> = Vec::new();
    for o in 0..outage.orders {
        let mut commit = lifecycle(o as u64, outage.events_per_order);
        let mut head: Option<String> = None;
        for event in &mut commit.events {
            // Committed (and parked) during an outage that is over.
            event.occurred_on -= OUTAGE_AGO;
            let event_id = event.event_id.to_string();
            index.insert(
                event_id.clone(),
                (event.aggregate_id.clone(), event.version),
            );
            chunk.push(NewDlqRecord {
                original_event: serde_json::to_string(event).expect("an envelope serialises"),
                event_id: event_id.clone(),
                aggregate_id: event.aggregate_id.clone(),
                event_type: event.event_type.clone(),
                version: Some(event.version),
                failure_reason: if head.is_none() {
                    "publish failed after retries: retryable: broker down".into()
                } else {
                    "held behind an unpublished event of the same order".into()
                },
                failure_class: head.is_none().then_some(FailureClass::Retryable),
                failure_time: event.occurred_on,
                source: DlqSource::Publish,
                blocked_by: head.clone(),
                topic: topic.to_owned(),
                origin: None,
                consumer_group: None,
                imported: None,
            });
            head.get_or_insert(event_id);
        }
        if chunk.len() >= 2_000 {
            sequencing::record(dlq, &chunk).await.expect("park");
            chunk.clear();
        }
    }
    sequencing::record(dlq, &chunk).await.expect("park");
    index
}

/// Parks `outage`, drains it with one bulk replay job over `bus`, checks
/// the topic and the DLQ, and returns what it measured.
pub async fn drained_by_one_job<S>(
    store: Arc<S>,
    bus: Arc<dyn EventBus>,
    topic: &str,
    outage: Outage,
) -> Drained
where
    S: DlqStore + AuditLog + ReplayJobStore + 'static,
{
    let index = park(store.as_ref(), outage, topic).await;
    let expected = index.len() as u64;
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.pending_count, expected, "everything parked");
    assert_eq!(
        store.count_heads(&Default::default()).await.expect("heads"),
        outage.orders as u64,
        "one head per order"
    );

    let metrics = Arc::new(Metrics::default());
    let auditor = Auditor::new(store.clone());
    let dlq = Arc::new(DlqService::new(
        store.clone(),
        bus.clone(),
        RetryPolicy::default(),
        topic.to_owned(),
        metrics,
        auditor.clone(),
    ));
    let cfg = JobConfig {
        rate: 100_000.0,
        ..JobConfig::default()
    };
    let jobs = ReplayJobs::new(store.clone(), dlq, auditor, cfg);
    let req = BulkReplayRequest {
        limit: JOB_LIMIT_MAX,
        ..BulkReplayRequest::default()
    };
    let job = jobs
        .create(&Principal::system(), &req)
        .await
        .expect("create job");
    assert_eq!(job.counters.matched, outage.orders as u64);

    // Peak resident memory, sampled while the job runs.
    let before = rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let (done_tx, mut done_rx) = watch::channel(false);
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = done_rx.changed() => return,
                }
            }
        })
    };
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let started = Instant::now();
    let ran = jobs.run_pending(&shutdown).await.expect("run the job");
    let seconds = started.elapsed().as_secs_f64();
    let _ = done_tx.send(true);
    sampler.await.expect("sampler");
    assert_eq!(ran, 1, "the job ran");

    let job = jobs.get(job.id).await.expect("job");
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(job.counters.replayed, outage.orders as u64, "{job:?}");
    assert_eq!(job.counters.published, expected, "{job:?}");
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        (
            stats.pending_count,
            stats.failed_count,
            stats.replayed_count
        ),
        (0, 0, expected),
        "nothing left parked"
    );
    assert_topic_holds_each_once_in_order(bus.as_ref(), topic, &index).await;

    Drained {
        events: expected,
        heads: outage.orders as u64,
        seconds,
        events_per_sec: expected as f64 / seconds.max(1e-9),
        rss_before_mib: before as f64 / 1024.0,
        rss_peak_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
    }
}

/// Reads `topic` from the start: every event of `index` exactly once, and
/// each order's events in version order.
pub async fn assert_topic_holds_each_once_in_order(
    bus: &dyn EventBus,
    topic: &str,
    index: &HashMap<String, (String, u64)>,
) {
    let group = format!("outage-check-{}", Uuid::now_v7());
    let mut sub = bus.subscribe(&group, topic).await.expect("subscribe");
    let mut seen: HashMap<&str, u32> = HashMap::new();
    let mut last_version: HashMap<&str, u64> = HashMap::new();
    let mut idle_since = Instant::now();
    while seen.len() < index.len() && idle_since.elapsed() < Duration::from_secs(60) {
        let batch = sub
            .poll(5_000, Duration::from_millis(500))
            .await
            .expect("poll");
        if !batch.is_empty() {
            idle_since = Instant::now();
        }
        for d in &batch {
            let id = d.header("eventId").expect("eventId header");
            let (id, (order, version)) = index
                .get_key_value(id)
                .unwrap_or_else(|| panic!("unexpected event {id} on {topic}"));
            *seen.entry(id.as_str()).or_default() += 1;
            let last = last_version.insert(order.as_str(), *version).unwrap_or(0);
            assert!(
                *version > last,
                "order {order}: version {version} published after version {last}"
            );
            assert_eq!(d.key.as_deref(), Some(order.as_str()), "keyed by order");
        }
    }
    assert_eq!(seen.len(), index.len(), "every parked event on {topic}");
    let twice = seen.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "no event on {topic} twice");
}
