//! The independent Kafka consumer of the production tests: reading a topic
//! with a fresh consumer group, and judging what a downstream service saw
//! (duplicates, order per order, copies).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use order_bus_kafka::KafkaBus;
use order_core::domain::EventEnvelope;
use order_core::ports::{Delivery, EventBus};

use super::unique;

/// What [`read_topic_within`] read, and how the reading ended.
pub struct TopicRead {
    pub deliveries: Vec<Delivery>,
    /// Whether `done` held.
    pub done: bool,
    /// Whether the topic then stayed quiet (false: the time ran out).
    pub quiet: bool,
}

/// Reads `topic` from the beginning with a fresh consumer group (named
/// after `group_prefix`) until `done(messages so far)` holds and then the
/// topic stays quiet for `quiet` (so late duplicates are seen too), or until
/// `secs` pass. Each (partition, offset) is kept once: a consumer re-read is
/// not a duplicate in the topic.
pub async fn read_topic_within(
    bus: &KafkaBus,
    topic: &str,
    group_prefix: &str,
    secs: u64,
    quiet: Duration,
    done: impl Fn(&[Delivery]) -> bool,
) -> TopicRead {
    let group = unique(group_prefix);
    let mut sub = bus.subscribe(&group, topic).await.expect("subscribes");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen: HashSet<(i32, i64)> = HashSet::new();
    let mut out: Vec<Delivery> = Vec::new();
    let mut complete = false;
    loop {
        let wait = if complete {
            quiet
        } else {
            Duration::from_millis(500)
        };
        let batch = sub.poll(1000, wait).await.expect("polls");
        let empty = batch.is_empty();
        for d in batch {
            if seen.insert((d.partition, d.offset)) {
                out.push(d);
            }
        }
        if complete && empty {
            return TopicRead {
                deliveries: out,
                done: true,
                quiet: true,
            };
        }
        complete = complete || done(&out);
        if Instant::now() >= deadline {
            return TopicRead {
                deliveries: out,
                done: complete,
                quiet: false,
            };
        }
    }
}

/// [`read_topic_within`] that fails the test unless `done` held and the
/// topic then stayed quiet within `secs`.
pub async fn read_topic_until(
    bus: &KafkaBus,
    topic: &str,
    secs: u64,
    quiet: Duration,
    done: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    let read = read_topic_within(bus, topic, "e2e-checker", secs, quiet, done).await;
    assert!(
        read.quiet,
        "the independent consumer did not see what it expected on {topic} within {secs} s; \
         it read {} message(s)",
        read.deliveries.len()
    );
    read.deliveries
}

/// The envelopes among `deliveries` (in the order read; other messages skipped).
pub fn envelopes(deliveries: &[Delivery]) -> Vec<EventEnvelope> {
    deliveries
        .iter()
        .filter_map(|d| serde_json::from_slice(&d.payload).ok())
        .collect()
}

/// The event ids among `deliveries`.
pub fn event_ids(deliveries: &[Delivery]) -> HashSet<uuid::Uuid> {
    envelopes(deliveries).iter().map(|e| e.event_id).collect()
}

/// What a consumer saw of the committed events.
pub struct Coverage {
    /// The distinct event ids seen.
    pub seen_ids: HashSet<uuid::Uuid>,
    /// Committed events not seen.
    pub missing: usize,
    /// Events seen that were not committed.
    pub foreign: usize,
}

/// Compares the envelopes `seen` with the `committed` events (by id).
pub fn coverage<V>(committed: &HashMap<uuid::Uuid, V>, seen: &[EventEnvelope]) -> Coverage {
    let seen_ids: HashSet<uuid::Uuid> = seen.iter().map(|e| e.event_id).collect();
    let missing = committed.keys().filter(|id| !seen_ids.contains(id)).count();
    let foreign = seen_ids
        .iter()
        .filter(|id| !committed.contains_key(id))
        .count();
    Coverage {
        seen_ids,
        missing,
        foreign,
    }
}

/// The order status an event of `event_type` leaves behind.
pub fn status_after(event_type: &str) -> &'static str {
    match event_type {
        "OrderCreated" => "PENDING",
        "OrderConfirmed" => "CONFIRMED",
        "OrderCancelled" => "CANCELLED",
        "OrderPreparationStarted" => "PREPARING",
        "OrderMarkedReady" => "READY",
        "OrderDelivered" => "DELIVERED",
        other => panic!("unknown event type {other}"),
    }
}

/// What a downstream consumer saw of a set of orders.
#[derive(Debug, Default)]
pub struct ConsumerView {
    /// Envelopes read (copies included).
    pub delivered: usize,
    /// Extra copies of event ids read before.
    pub duplicated: usize,
    /// Events read after a higher version of their order, or with a gap
    /// before them (a repeated copy of the latest version is a duplicate,
    /// not out of order).
    pub out_of_order: usize,
    /// Versions per order in the order read.
    pub versions: HashMap<String, Vec<u64>>,
}

/// Checks per order: versions in the order read, event ids once.
/// Partitions are read independently, so order across orders is free.
pub fn consumer_view(events: &[EventEnvelope]) -> ConsumerView {
    let mut view = ConsumerView::default();
    let mut ids = HashSet::new();
    for e in events {
        view.delivered += 1;
        if !ids.insert(e.event_id) {
            view.duplicated += 1;
        }
        let versions = view.versions.entry(e.aggregate_id.clone()).or_default();
        let highest = versions.iter().copied().max().unwrap_or(0);
        if e.version < highest || e.version > highest + 1 {
            view.out_of_order += 1;
        }
        versions.push(e.version);
    }
    view
}

/// `topic/partition/offset` of every copy of each event id read more than once.
pub fn duplicate_copies(deliveries: &[Delivery]) -> Vec<(String, u64, Vec<String>)> {
    let mut copies: HashMap<uuid::Uuid, (String, u64, Vec<String>)> = HashMap::new();
    for d in deliveries {
        if let Ok(e) = serde_json::from_slice::<EventEnvelope>(&d.payload) {
            copies
                .entry(e.event_id)
                .or_insert_with(|| (e.aggregate_id.clone(), e.version, Vec::new()))
                .2
                .push(format!("{}/{}/{}", d.topic, d.partition, d.offset));
        }
    }
    let mut dups: Vec<_> = copies
        .into_values()
        .filter(|(_, _, at)| at.len() > 1)
        .collect();
    dups.sort();
    dups
}
