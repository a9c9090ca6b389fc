//! Valid domain data for the contract suites, built through the domain
//! (`CreateOrder::new(..).decide()`, `Order::apply`, `EventEnvelope::new`)
//! so adapters are tested with exactly what the service writes.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::{
    CreateOrder, EventEnvelope, Order, OrderEvent, OrderItem, OrderStatus, Transition,
};
use crate::ports::{
    BusMessage, Commit, Delivery, DlqSource, FailureClass, IdempotencyRecord, NewDlqRecord,
    Subscription,
};

/// Parses a decimal literal; panics on a typo in a test.
pub fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

/// A fixed instant with microseconds (`2024-05-01T10:00:00.123456Z`) plus
/// `offset_micros`, so stores must keep sub-second precision exactly.
pub fn at(offset_micros: i64) -> DateTime<Utc> {
    let base = Utc
        .with_ymd_and_hms(2024, 5, 1, 10, 0, 0)
        .single()
        .expect("valid date")
        + chrono::Duration::microseconds(123_456);
    base + chrono::Duration::microseconds(offset_micros)
}

/// Items whose prices need exact decimals: 2 × 12.50 + 3 × 0.10 + 1 × 7.
pub fn sample_items() -> Vec<OrderItem> {
    vec![
        OrderItem {
            menu_item_id: "pizza-margherita".into(),
            name: "Pizza Margherita".into(),
            price: dec("12.50"),
            quantity: 2,
        },
        OrderItem {
            menu_item_id: "mint".into(),
            name: "Mint (ünïcode ✓)".into(),
            price: dec("0.10"),
            quantity: 3,
        },
        OrderItem {
            menu_item_id: "soda".into(),
            name: "Soda".into(),
            price: dec("7"),
            quantity: 1,
        },
    ]
}

/// The exact total of [`sample_items`].
pub fn sample_total() -> Decimal {
    dec("32.30")
}

/// A create commit of a new order (version 1) decided at `at`.
pub fn create(customer: &str, restaurant: &str, at: DateTime<Utc>) -> Commit {
    create_with_id(Uuid::now_v7(), customer, restaurant, at)
}

/// A create commit for a chosen order id.
pub fn create_with_id(id: Uuid, customer: &str, restaurant: &str, at: DateTime<Utc>) -> Commit {
    // Validated through the domain, but written with the prices' original
    // scale ("12.50", not the normalised "12.5") so a store that loses the
    // decimal text (floats, fixed scales in JSON) shows up.
    CreateOrder::new(
        customer.to_owned(),
        restaurant.to_owned(),
        sample_items(),
        Some(sample_total()),
    )
    .expect("valid create command");
    let event = OrderEvent::Created {
        customer_id: customer.to_owned(),
        restaurant_id: restaurant.to_owned(),
        items: sample_items(),
        total_amount: sample_total(),
    };
    let envelope = EventEnvelope::new(id, &event, 1, at, Some(format!("corr-{id}")));
    let state = Order::apply(None, id, &event, 1, at).expect("create applies");
    Commit {
        expected_version: 0,
        events: vec![envelope],
        state,
        idempotency: None,
    }
}

/// Adds an idempotency key to a create commit.
pub fn with_key(mut commit: Commit, key: &str, fingerprint: &str) -> Commit {
    commit.idempotency = Some(IdempotencyRecord {
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
        order_id: commit.state.id,
        created_at: commit.events[0].occurred_on,
    });
    commit
}

/// A commit applying `transitions` (in order) to `prev`, one event each,
/// the n-th at `at + n µs`.
pub fn transition(prev: &Order, transitions: &[Transition], at: DateTime<Utc>) -> Commit {
    let mut state = prev.clone();
    let mut events = Vec::new();
    for (n, t) in transitions.iter().enumerate() {
        let when = at + chrono::Duration::microseconds(n as i64);
        let event = state.decide(t).expect("legal transition");
        let version = state.version + 1;
        events.push(EventEnvelope::new(state.id, &event, version, when, None));
        state = Order::apply(Some(&state), state.id, &event, version, when)
            .expect("transition applies");
    }
    Commit {
        expected_version: prev.version,
        events,
        state,
        idempotency: None,
    }
}

/// Most events one order can have: created and its four transitions.
pub const MAX_EVENTS_PER_ORDER: u64 = 5;

/// One order with `events` events (1..=5: created, confirmed, preparing,
/// ready, delivered) in one commit; `i` varies the customer, restaurant and
/// payment.
pub fn lifecycle(i: u64, events: u64) -> Commit {
    let at = crate::domain::now();
    let created = create(
        &format!("cust-{}", i % 1000),
        &format!("rest-{}", i % 50),
        at,
    );
    let steps: Vec<Transition> = [
        confirm(&format!("pay-{i}")),
        Transition::Prepare,
        Transition::MarkReady,
        Transition::Deliver,
    ]
    .into_iter()
    .take(events.saturating_sub(1) as usize)
    .collect();
    if steps.is_empty() {
        return created;
    }
    let later = transition(&created.state, &steps, at);
    Commit {
        expected_version: 0,
        events: created.events.into_iter().chain(later.events).collect(),
        state: later.state,
        idempotency: None,
    }
}

pub fn confirm(payment: &str) -> Transition {
    Transition::confirm(Some(payment.to_owned())).expect("valid payment id")
}

pub fn cancel(reason: Option<&str>) -> Transition {
    Transition::cancel(reason.map(str::to_owned)).expect("valid reason")
}

/// A read-model document: a created order moved to `status` (fields set
/// consistently), created at `created_at`, with the given version.
pub fn order_doc(
    customer: &str,
    restaurant: &str,
    status: OrderStatus,
    created_at: DateTime<Utc>,
    version: u64,
) -> Order {
    let mut order = create(customer, restaurant, created_at).state;
    order.status = status;
    order.version = version;
    order.updated_at = created_at + chrono::Duration::microseconds(version as i64);
    match status {
        OrderStatus::Pending => {}
        OrderStatus::Cancelled => order.cancellation_reason = Some("changed my mind".into()),
        _ => order.payment_id = Some(format!("pay-{}", order.id)),
    }
    order
}

/// A DLQ record for a publish-side failure of `aggregate_id` at `version`.
pub fn dlq_record(
    aggregate_id: &str,
    version: u64,
    blocked_by: Option<&str>,
    failure_time: DateTime<Utc>,
) -> NewDlqRecord {
    let event_id = Uuid::now_v7().to_string();
    NewDlqRecord {
        original_event: format!(
            r#"{{"eventId":"{event_id}","aggregateId":"{aggregate_id}","version":{version},"data":{{"price":"12.50"}}}}"#
        ),
        event_id,
        aggregate_id: aggregate_id.to_owned(),
        event_type: "OrderConfirmed".to_owned(),
        version: Some(version),
        failure_reason: "publish failed after retries: retryable: broker down".to_owned(),
        failure_class: Some(FailureClass::Retryable),
        failure_time,
        source: DlqSource::Publish,
        blocked_by: blocked_by.map(str::to_owned),
        topic: "order-events".to_owned(),
        origin: None,
        consumer_group: None,
        imported: None,
    }
}

/// A DLQ record recorded from the DLQ topic (a consumer failure).
pub fn consumer_dlq_record(aggregate_id: &str, failure_time: DateTime<Utc>) -> NewDlqRecord {
    NewDlqRecord {
        source: DlqSource::Consumer,
        origin: Some("order-events/0/42".to_owned()),
        failure_reason: "projection failed".to_owned(),
        failure_class: None,
        ..dlq_record(aggregate_id, 1, None, failure_time)
    }
}

/// A name no other case (or earlier run) uses: topics and consumer groups on
/// a shared broker, collections on a shared server.
pub fn unique_name(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", Uuid::now_v7().simple())
}

/// Message `i` of `key` on `topic`, with two headers.
pub fn message(topic: &str, key: &str, i: usize) -> BusMessage {
    BusMessage {
        topic: topic.to_owned(),
        key: key.to_owned(),
        payload: format!(r#"{{"key":"{key}","seq":{i}}}"#).into_bytes(),
        headers: vec![
            ("eventId".to_owned(), format!("{key}-{i}")),
            ("ce_type".to_owned(), "OrderCreated".to_owned()),
        ],
    }
}

/// How long bus cases wait for messages (a real broker needs time for a
/// consumer group to join).
pub const BUS_DEADLINE: Duration = Duration::from_secs(30);

/// Polls until `n` messages arrived (asking for at most the missing count)
/// or [`BUS_DEADLINE`] passed; returns what arrived.
pub async fn poll_n(sub: &mut Box<dyn Subscription>, n: usize) -> Vec<Delivery> {
    let deadline = tokio::time::Instant::now() + BUS_DEADLINE;
    let mut got = Vec::new();
    while got.len() < n && tokio::time::Instant::now() < deadline {
        let batch = sub
            .poll(n - got.len(), Duration::from_millis(500))
            .await
            .expect("poll");
        got.extend(batch);
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifecycle_commit_holds_consecutive_versions_from_the_create() {
        for n in 1..=MAX_EVENTS_PER_ORDER {
            let c = lifecycle(7, n);
            assert_eq!(c.expected_version, 0);
            assert_eq!(c.events.len() as u64, n);
            let versions: Vec<u64> = c.events.iter().map(|e| e.version).collect();
            assert_eq!(versions, (1..=n).collect::<Vec<_>>());
            assert_eq!(c.state.version, n);
        }
        assert_eq!(lifecycle(7, 9).events.len() as u64, MAX_EVENTS_PER_ORDER);
    }
}
