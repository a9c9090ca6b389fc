//! [`EventBus::find_published`](order_core::ports::EventBus::find_published)
//! on Kafka: which messages are already on their topic.
//!
//! A produce request that timed out on our side may still be appended when
//! the broker answers again (it was in the broker's socket buffer, or the
//! broker was paused). Before such a message is sent again, its topic is
//! read — every partition, since the key's partition depends on the
//! producer's partitioner — from the first offset whose timestamp is at or
//! after the message's earliest send time (`ListOffsets` by time; the
//! producer stamps a record when it is handed over, which is after its
//! event's time) up to the high watermark seen at the start, looking for
//! the message's `ce_id`/`eventId` header. The start is moved back by one
//! producer batch, as in the consumer (Tansu returns only batches starting
//! at or after the fetch offset).
//!
//! A DLQ replay also says when the message's last earlier attempt was made
//! (`orders_parked_at`, [`BusMessage::latest_send`]): then the read stops at
//! the first offset stamped after that (plus one producer batch), so the
//! look-up before each batch of a large drain reads the outage's window, not
//! everything the drain itself has published since.
//!
//! Reading is bounded by [`KafkaConfig::find_published_budget`]. A broker
//! that does not answer is an error (the caller then does not send). A topic
//! with more traffic since the message than can be read in the budget is
//! answered with what was found (a replay may then publish a second copy:
//! at least once, which consumers dedupe by event id), and logged.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use order_core::ports::{BusError, BusMessage};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::{unavailable, KafkaConfig};

/// What is looked for on one topic.
#[derive(Default)]
struct Wanted {
    ids: HashSet<String>,
    /// Earliest send time, epoch milliseconds; `None`: from the beginning.
    since_ms: Option<i64>,
    /// Latest send time, epoch milliseconds, when every message has one
    /// (`BusMessage::latest_send`); `None`: to the end.
    until_ms: Option<i64>,
    /// A message without a latest send time was seen.
    open_ended: bool,
}

/// Blocking: run on a blocking thread.
pub(crate) fn find_published(
    cfg: &KafkaConfig,
    messages: &[BusMessage],
) -> Result<HashSet<String>, BusError> {
    let mut topics: HashMap<&str, Wanted> = HashMap::new();
    let mut unbounded: HashSet<&str> = HashSet::new();
    for m in messages {
        let Some(id) = m.event_id() else { continue };
        let w = topics.entry(m.topic.as_str()).or_default();
        w.ids.insert(id.to_owned());
        match m.latest_send().filter(|_| !w.open_ended) {
            Some(t) => {
                let ms = t.timestamp_millis();
                w.until_ms = Some(w.until_ms.map_or(ms, |u| u.max(ms)));
            }
            None => {
                w.open_ended = true;
                w.until_ms = None;
            }
        }
        match m.earliest_send() {
            Some(t) if !unbounded.contains(m.topic.as_str()) => {
                let ms = t.timestamp_millis();
                w.since_ms = Some(w.since_ms.map_or(ms, |s| s.min(ms)));
            }
            _ => {
                unbounded.insert(m.topic.as_str());
                w.since_ms = None;
            }
        }
    }
    let mut found = HashSet::new();
    if topics.is_empty() {
        return Ok(found);
    }
    let consumer: BaseConsumer = cfg
        .consumer_config(&format!("{}-find-published", cfg.client_id))
        .create()
        .map_err(|e| unavailable("cannot create a Kafka consumer", e))?;
    for (topic, wanted) in topics {
        scan_topic(cfg, &consumer, topic, &wanted, &mut found)?;
    }
    Ok(found)
}

fn scan_topic(
    cfg: &KafkaConfig,
    consumer: &BaseConsumer,
    topic: &str,
    wanted: &Wanted,
    found: &mut HashSet<String>,
) -> Result<(), BusError> {
    let timeout = cfg.publish_timeout;
    let what = format!("reading {topic} for messages already published");
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| unavailable(&what, e))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();

    // Per partition: [start, end) to read.
    let mut ranges: HashMap<i32, (i64, i64)> = HashMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| unavailable(&what, e))?;
        if high > low {
            ranges.insert(p, (low, high));
        }
    }
    let slack = cfg.max_batch_messages();
    if let Some(since) = wanted.since_ms {
        // Each range starts at the first offset at or after `since` (less
        // a batch); without timestamps the whole partition is read.
        for (p, offset) in offsets_at(consumer, topic, ranges.keys(), since, timeout, &what)? {
            let Some(range) = ranges.get_mut(&p) else {
                continue;
            };
            match offset {
                Offset::Offset(o) => range.0 = range.0.max(o.saturating_sub(slack)),
                // Nothing at or after `since` in this partition.
                Offset::End => range.0 = range.1,
                _ => {}
            }
        }
    }
    if let Some(until) = wanted.until_ms {
        // Nothing sent after `until` is looked at: each range ends at the
        // first offset at or after it (plus a batch, for timestamps a
        // little out of order).
        for (p, offset) in offsets_at(consumer, topic, ranges.keys(), until, timeout, &what)? {
            if let (Some(range), Offset::Offset(o)) = (ranges.get_mut(&p), offset) {
                range.1 = range.1.min(o.saturating_add(slack));
            }
        }
    }
    ranges.retain(|_, (start, end)| start < end);
    if ranges.is_empty() {
        return Ok(());
    }

    let mut assignment = TopicPartitionList::new();
    for (&p, &(start, _)) in &ranges {
        assignment
            .add_partition_offset(topic, p, Offset::Offset(start))
            .map_err(|e| unavailable(&what, e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| unavailable(&what, e))?;

    let deadline = Instant::now() + cfg.find_published_budget;
    let mut last_error: Option<String> = None;
    let mut read = 0u64;
    while !ranges.is_empty() && !wanted.ids.iter().all(|id| found.contains(id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if let Some(e) = last_error {
                // Nothing could be read: the broker is not answering.
                if read == 0 {
                    return Err(BusError::Unavailable(format!("kafka: {what}: {e}")));
                }
            }
            tracing::warn!(
                topic,
                read,
                budget = ?cfg.find_published_budget,
                "could not read everything since the message within the budget; \
                 a message not found may be published a second time"
            );
            break;
        }
        match consumer.poll(left.min(std::time::Duration::from_millis(500))) {
            None => {}
            Some(Err(e)) => last_error = Some(e.to_string()),
            Some(Ok(m)) => {
                read += 1;
                let p = m.partition();
                let late = wanted
                    .until_ms
                    .zip(m.timestamp().to_millis())
                    .is_some_and(|(until, t)| t > until);
                if late {
                    // Stamped after the last earlier attempt could land:
                    // the rest of this partition is later still.
                    ranges.remove(&p);
                    continue;
                }
                if let Some(headers) = m.headers() {
                    for h in headers.iter() {
                        if h.key == "ce_id" || h.key == "eventId" {
                            if let Some(v) = h.value.and_then(|v| std::str::from_utf8(v).ok()) {
                                if wanted.ids.contains(v) {
                                    found.insert(v.to_owned());
                                }
                            }
                        }
                    }
                }
                if ranges
                    .get(&p)
                    .is_some_and(|&(_, end)| m.offset() + 1 >= end)
                {
                    ranges.remove(&p);
                }
            }
        }
    }
    consumer.unassign().map_err(|e| unavailable(&what, e))?;
    Ok(())
}

/// The first offset of each of `partitions` whose timestamp is at or after
/// `ms` (`ListOffsets` by time); empty when the broker cannot say.
fn offsets_at<'a>(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: impl Iterator<Item = &'a i32>,
    ms: i64,
    timeout: std::time::Duration,
    what: &str,
) -> Result<Vec<(i32, Offset)>, BusError> {
    let mut by_time = TopicPartitionList::new();
    for &p in partitions {
        by_time
            .add_partition_offset(topic, p, Offset::Offset(ms))
            .map_err(|e| unavailable(what, e))?;
    }
    match consumer.offsets_for_times(by_time, timeout) {
        Ok(tpl) => Ok(tpl
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect()),
        Err(e) => {
            tracing::debug!(topic, error = %e, "offsets by time unavailable");
            Ok(Vec::new())
        }
    }
}
