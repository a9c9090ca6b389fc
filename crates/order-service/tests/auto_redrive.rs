//! The opt-in automatic DLQ redrive, in process: the whole application with
//! the real SQLite adapters and embedded bus on a fresh directory, driven
//! through the router (`oneshot`, no socket) and the fault switch, with a
//! short scan interval.

// Test helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use order_core::app::relay::publish_failed_reason;
use order_core::domain::{now, EventEnvelope};
use order_core::ports::{DlqSource, FailureClass, NewDlqRecord, PublishError};
use serde_json::{json, Value};
use support::router::{test_app_with, TestApp};
use uuid::Uuid;

/// Scan interval of the tests' redrive.
const INTERVAL: Duration = Duration::from_millis(150);

async fn test_app(auto_redrive: bool) -> TestApp {
    test_app_with(|config| {
        config.dlq_auto_redrive = auto_redrive;
        config.dlq_auto_redrive_interval = INTERVAL;
        config.dlq_auto_redrive_rate = 100;
        config.dlq_auto_redrive_backoff = INTERVAL * 2;
    })
    .await
}

impl TestApp {
    /// A request with an optional JSON body; the answer's status and body
    /// (JSON, else the text as a JSON string).
    async fn send(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let reply = self.call(method, uri, body, &[]).await;
        let bytes = reply.bytes;
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (reply.status, json)
    }

    async fn get(&self, uri: &str) -> Value {
        let (status, body) = self.send(Method::GET, uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        body
    }

    async fn bus(&self, up: bool) {
        let uri = if up {
            "/api/test/bus/up"
        } else {
            "/api/test/bus/down"
        };
        let (status, _) = self.send(Method::POST, uri, None).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Creates and confirms an order: two events, versions 1 and 2.
    async fn order_with_two_events(&self, customer: &str) -> String {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/orders",
                Some(support::order_body(customer, "restaurant-1")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        let (status, body) = self
            .send(
                Method::PUT,
                &format!("/api/orders/{id}/confirm?paymentId=p-1"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id
    }

    async fn stats(&self) -> Value {
        self.get("/api/dlq/stats").await
    }

    async fn records(&self) -> Vec<Value> {
        self.get("/api/dlq/pending?size=100").await["content"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Every envelope on the events topic, read with a fresh consumer group.
    async fn bus_events(&self) -> Vec<EventEnvelope> {
        let state = &self.app.state;
        let group = format!("checker-{}", Uuid::now_v7());
        let mut sub = state
            .raw_bus
            .subscribe(&group, &state.config.topic_events)
            .await
            .unwrap();
        let mut out = Vec::new();
        loop {
            let batch = sub.poll(1000, Duration::from_millis(300)).await.unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(
                batch
                    .iter()
                    .filter_map(|d| serde_json::from_slice::<EventEnvelope>(&d.payload).ok()),
            );
        }
    }
}

/// A parked record inserted directly, as the relay (`Ok`: its publish
/// error) or the DLQ recorder (`Err`: a consumer's reason) would store it;
/// its envelope is a synthetic `TestOrder` the projector ignores.
fn record(source: DlqSource, error: Result<PublishError, &str>) -> NewDlqRecord {
    let (reason, failure_class) = match &error {
        Ok(e) => (publish_failed_reason(e), Some(FailureClass::of(e))),
        Err(text) => ((*text).to_owned(), None),
    };
    let env = EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: "OrderCreated".to_owned(),
        aggregate_id: format!("test-order-{}", Uuid::now_v7()),
        aggregate_type: order_core::app::dlq::TEST_AGGREGATE_TYPE.to_owned(),
        version: 1,
        schema_version: 2,
        occurred_on: now(),
        correlation_id: None,
        causation_id: None,
        traceparent: None,
        data: json!({}),
    };
    NewDlqRecord {
        event_id: env.event_id.to_string(),
        aggregate_id: env.aggregate_id.clone(),
        event_type: env.event_type.clone(),
        version: Some(1),
        original_event: env.to_json(),
        failure_reason: reason,
        failure_class,
        failure_time: now(),
        source,
        blocked_by: None,
        topic: "order-events".to_owned(),
        origin: (source == DlqSource::Consumer).then(|| "order-events/0/7".to_owned()),
        consumer_group: None,
        imported: None,
    }
}

async fn status_of(t: &TestApp, event_id: &str) -> String {
    t.get(&format!("/api/dlq/event/{event_id}")).await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_are_replayed_in_order_once_the_bus_is_back_without_an_operator() {
    let t = test_app(true).await;
    t.bus(false).await;
    let a = t.order_with_two_events("alice").await;
    let b = t.order_with_two_events("bob").await;
    support::eventually(10, "four parked events", || async {
        (t.stats().await["pendingCount"] == 4).then_some(())
    })
    .await;

    // An operator's replay while the bus is down leaves a FAILED head: it
    // keeps its retryable class.
    let head_a = t
        .records()
        .await
        .into_iter()
        .find(|r| r["aggregateId"] == a.as_str() && r["blockedBy"].is_null())
        .unwrap()["eventId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = t
        .send(Method::POST, &format!("/api/dlq/replay/{head_a}"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["status"], "FAILED");

    // While the bus stays down the redrive does nothing: no replay, no
    // FAILED churn, no audit entry.
    tokio::time::sleep(INTERVAL * 5).await;
    let s = t.stats().await;
    assert_eq!(
        (s["pendingCount"].clone(), s["failedCount"].clone()),
        (json!(3), json!(1))
    );
    for r in t.records().await {
        assert_eq!(r["replayAttempts"], 0, "{r}");
    }
    let failed = t.get(&format!("/api/dlq/event/{head_a}")).await;
    assert_eq!(failed["replayAttempts"], 1, "{failed}");
    assert!(t.get("/api/dlq/audit?principal=system").await["content"]
        .as_array()
        .unwrap()
        .is_empty());

    t.bus(true).await;
    support::eventually(10, "every record REPLAYED", || async {
        let s = t.stats().await;
        (s["replayedCount"] == 4 && s["pendingCount"] == 0).then_some(())
    })
    .await;

    let events = t.bus_events().await;
    let per = support::assert_ordered_once(&events);
    assert_eq!(per[&a], vec![1, 2]);
    assert_eq!(per[&b], vec![1, 2]);

    // One replay per sequence head, by `system`, marked automatic.
    let audit = t.get("/api/dlq/audit?principal=system&size=100").await["content"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(audit.len(), 2, "{audit:?}");
    for e in &audit {
        assert_eq!(e["action"], "DLQ_REPLAY", "{e}");
        assert_eq!(e["result"], "REPLAYED", "{e}");
        assert_eq!(e["parameters"]["auto"], true, "{e}");
    }
    let (_, metrics) = t.send(Method::GET, "/metrics", None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("orders_dlq_auto_redriven_total 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_redrive_off_parked_events_stay_pending() {
    let t = test_app(false).await;
    t.bus(false).await;
    t.order_with_two_events("carol").await;
    support::eventually(10, "two parked events", || async {
        (t.stats().await["pendingCount"] == 2).then_some(())
    })
    .await;
    t.bus(true).await;
    tokio::time::sleep(INTERVAL * 6).await;
    let s = t.stats().await;
    assert_eq!(s["pendingCount"], 2, "{s}");
    assert_eq!(s["replayedCount"], 0, "{s}");
    assert_eq!(t.bus_events().await.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_side_and_permanent_failures_are_never_redriven() {
    let t = test_app(true).await;
    let consumer = record(
        DlqSource::Consumer,
        Err("projection failed: unreadable payload"),
    );
    // Parked with the relay's own wording.
    let permanent = record(
        DlqSource::Publish,
        Ok(PublishError::Permanent("message too large".into())),
    );
    let retryable = record(
        DlqSource::Publish,
        Ok(PublishError::Retryable("broker unreachable".into())),
    );
    let known = t
        .app
        .state
        .dlq_store
        .insert_new(&[consumer.clone(), permanent.clone(), retryable.clone()])
        .await
        .unwrap();
    assert!(known.is_empty(), "{known:?}");

    // The retryable one is redriven; the scan that did it saw the others.
    support::eventually(10, "the retryable record REPLAYED", || async {
        (status_of(&t, &retryable.event_id).await == "REPLAYED").then_some(())
    })
    .await;
    tokio::time::sleep(INTERVAL * 3).await;
    assert_eq!(status_of(&t, &consumer.event_id).await, "PENDING");
    assert_eq!(status_of(&t, &permanent.event_id).await, "PENDING");
    for id in [&consumer.event_id, &permanent.event_id] {
        let r = t.get(&format!("/api/dlq/event/{id}")).await;
        assert_eq!(r["replayAttempts"], 0, "{r}");
    }
    let audit = t.get("/api/dlq/audit?principal=system&size=100").await["content"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["target"], retryable.event_id.as_str());
}
