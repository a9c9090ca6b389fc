//! The event bus (Kafka or the embedded bus) and its subscriptions.

use async_trait::async_trait;
use chrono::DateTime;
use chrono::Utc;
use std::collections::HashSet;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Event bus
// ---------------------------------------------------------------------------

/// A message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    pub topic: String,
    /// Partitioning key: the aggregate id, so one order's events stay in order.
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl BusMessage {
    /// The last value of header `name` (as a Kafka consumer reads it).
    pub fn header(&self, name: &str) -> Option<&str> {
        last_header(&self.headers, name)
    }

    /// The id a duplicate is recognised by: the `ce_id` header, else `eventId`.
    pub fn event_id(&self) -> Option<&str> {
        self.header("ce_id").or_else(|| self.header("eventId"))
    }

    /// The earliest moment the message can have been sent: its event's time
    /// (`ce_time`), minus [`CLOCK_MARGIN`] for clock differences between
    /// instances and the broker. `None` when the header is missing or
    /// unreadable (look at everything).
    pub fn earliest_send(&self) -> Option<DateTime<Utc>> {
        let at = DateTime::parse_from_rfc3339(self.header("ce_time")?).ok()?;
        Some(at.with_timezone(&Utc) - CLOCK_MARGIN)
    }
}

impl BusMessage {
    /// The latest moment an earlier attempt at this message can have landed
    /// on the bus: the `orders_parked_at` header (set on DLQ replays: the
    /// last time its sequence was parked or failed a replay), plus
    /// [`LATE_MARGIN`]. `None`: no such bound (look up to the end).
    pub fn latest_send(&self) -> Option<DateTime<Utc>> {
        let at = DateTime::parse_from_rfc3339(self.header(PARKED_AT)?).ok()?;
        Some(at.with_timezone(&Utc) + LATE_MARGIN)
    }
}

/// Header of a replayed DLQ message: when its sequence was last parked or
/// failed a replay (RFC 3339). An earlier attempt at it cannot have landed
/// much later, so a look-up for it ([`EventBus::find_published`]) need not
/// read what the bus received after that.
pub const PARKED_AT: &str = "orders_parked_at";

/// How long after `orders_parked_at` an earlier attempt may still carry its
/// timestamp: the attempt was stamped by the instance that then parked the
/// record (or failed the replay) on the database's clock, so only the
/// difference between those clocks and a produce request's retries count.
/// Narrower than [`CLOCK_MARGIN`]: a look-up during a drain reads what was
/// published in this window after the outage.
pub const LATE_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Allowed clock difference between the instance that sent a message and
/// whoever answers [`EventBus::find_published`].
pub const CLOCK_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A message received by a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// When the bus received the message (Kafka: the record's timestamp),
    /// if it says.
    pub timestamp: Option<DateTime<Utc>>,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        last_header(&self.headers, name)
    }
}

fn last_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Worth another attempt (broker unreachable, queue full, timeout).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Will fail again (message too large, unknown topic): park at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes messages and waits for the broker's acknowledgement. Returns
    /// one result per message, in order. Contract: for messages with the same
    /// key, a failure means no later message of that key in this call was
    /// delivered (they also report failure), so retrying the failed suffix
    /// keeps per-key order.
    async fn publish(&self, messages: &[BusMessage]) -> Vec<Result<(), PublishError>>;

    /// Asks the broker whether it is reachable (a metadata request); publishes
    /// nothing. Returns a human-readable description.
    async fn check(&self, timeout: Duration) -> Result<String, BusError>;

    /// Which of `messages` are already on their topic, as the set of their
    /// [`BusMessage::event_id`]s found there. Asked before a message is sent
    /// again after an attempt whose outcome is unknown (a timed-out request
    /// may still be appended once the broker answers again), so a retry or
    /// a replay does not put an event on the bus twice. Looks no further
    /// back than each message's [`BusMessage::earliest_send`]. An error
    /// means the bus could not say; the caller must not send then.
    async fn find_published(&self, messages: &[BusMessage]) -> Result<HashSet<String>, BusError>;

    /// Joins consumer group `group` on `topic`. Delivery is at least once:
    /// offsets move only through [`Subscription::commit`].
    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError>;
}

#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` messages after the committed position, waiting at most
    /// `wait` for the first one. May return messages already returned but not
    /// committed (after a restart).
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;

    /// Commits every message up to and including `delivery` (of its partition).
    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError>;

    /// Consumer lag: messages on the topic after this member's position (of
    /// the partitions it holds now). Asks the broker; callers throttle it.
    async fn lag(&mut self) -> Result<u64, BusError>;
}
