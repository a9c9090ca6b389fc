//! End-to-end tests against the real binary on the embedded profile: the DLQ
//! story, restart durability, and concurrent replays. An independent consumer
//! reads the embedded bus to check what downstream services would see.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{assert_ordered_once, eventually, order_body, read_topic, Service};

const EVENTS_TOPIC: &str = "order-events";

async fn dlq_stats(svc: &Service) -> Value {
    svc.call("GET", "/api/dlq/stats", None).await.json()
}

async fn all_records(svc: &Service, status: &str) -> Vec<Value> {
    let r = svc
        .call("GET", &format!("/api/dlq/status/{status}?size=100"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["content"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_story_parks_holds_back_and_replays_every_order_in_version_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;

    let down = svc.call("POST", "/api/test/bus/down", None).await;
    assert_eq!(down.json(), json!({"busDown": true}));
    let status = svc.call("GET", "/api/test/kafka-status", None).await.json();
    assert_eq!(status["kafka"], "DOWN");

    // Several orders of several customers, created then confirmed or cancelled,
    // while the bus is down: every command still succeeds, and fast.
    let mut orders: Vec<(String, String)> = Vec::new();
    for c in 0..3 {
        for r in 0..2 {
            let customer = format!("story-cust-{c}");
            let started = Instant::now();
            let res = svc
                .call(
                    "POST",
                    "/api/orders",
                    Some(&order_body(&customer, &format!("rest-{r}"))),
                )
                .await;
            assert_eq!(res.status, 201, "{}", res.text);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "a bus outage slowed a command"
            );
            orders.push((res.json()["id"].as_str().expect("id").to_owned(), customer));
        }
    }
    for (i, (id, _)) in orders.iter().enumerate() {
        let path = if i % 3 == 2 {
            format!("/api/orders/{id}/cancel?reason=too%20slow")
        } else {
            format!("/api/orders/{id}/confirm?paymentId=pay-{i}")
        };
        let res = svc.call("PUT", &path, None).await;
        assert_eq!(res.status, 200, "{}", res.text);
    }
    let committed = orders.len() * 2;

    // Every event is parked: each order's first event heads its sequence,
    // the second waits behind it.
    eventually(20, "all events parked", || async {
        let s = dlq_stats(&svc).await;
        (s["pendingCount"] == json!(committed)).then_some(())
    })
    .await;
    let pending = all_records(&svc, "pending").await;
    assert_eq!(pending.len(), committed);
    let mut heads: HashMap<String, String> = HashMap::new();
    for r in &pending {
        if r["version"] == json!(1) {
            assert!(
                r["blockedBy"].is_null(),
                "version 1 must head its sequence: {r}"
            );
            heads.insert(
                r["aggregateId"].as_str().expect("aggregateId").to_owned(),
                r["eventId"].as_str().expect("eventId").to_owned(),
            );
        }
    }
    assert_eq!(heads.len(), orders.len());
    for r in &pending {
        if r["version"] == json!(2) {
            let agg = r["aggregateId"].as_str().expect("aggregateId");
            assert_eq!(r["blockedBy"].as_str(), Some(heads[agg].as_str()), "{r}");
            // A held-back event cannot overtake its head.
            let id = r["eventId"].as_str().expect("eventId");
            let res = svc
                .call("POST", &format!("/api/dlq/replay/{id}"), None)
                .await;
            assert_eq!(res.status, 409, "{}", res.text);
        }
    }
    assert_eq!(dlq_stats(&svc).await["blockedCount"], json!(orders.len()));
    assert!(read_topic(&svc.bus(), EVENTS_TOPIC).await.is_empty());

    // The broker comes back; replaying each head publishes its whole sequence.
    let up = svc.call("POST", "/api/test/bus/up", None).await;
    assert_eq!(up.json(), json!({"busDown": false}));
    assert_eq!(
        svc.call("GET", "/api/test/kafka-status", None).await.json()["kafka"],
        "UP"
    );
    for head in heads.values() {
        let res = svc
            .call("POST", &format!("/api/dlq/replay/{head}"), None)
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let body = res.json();
        assert_eq!(body["success"], true);
        assert_eq!(body["status"], "REPLAYED");
        assert_eq!(body["published"], 2);
    }
    let stats = dlq_stats(&svc).await;
    assert_eq!(stats["pendingCount"], 0);
    assert_eq!(stats["replayedCount"], json!(committed));
    assert_eq!(stats["totalCount"], json!(committed));

    // Replaying again publishes nothing.
    let again_id = heads.values().next().expect("a head");
    let again = svc
        .call("POST", &format!("/api/dlq/replay/{again_id}"), None)
        .await;
    assert_eq!(again.json()["status"], "SKIPPED");

    // Downstream sees every order's events once, in version order.
    let seen = read_topic(&svc.bus(), EVENTS_TOPIC).await;
    let per = assert_ordered_once(&seen);
    assert_eq!(seen.len(), committed);
    for (id, _) in &orders {
        assert_eq!(per.get(id).map(Vec::len), Some(2), "order {id}");
    }

    // The projector applied each event once and the read model is current.
    for (i, (id, customer)) in orders.iter().enumerate() {
        let expected = if i % 3 == 2 { "CANCELLED" } else { "CONFIRMED" };
        eventually(10, "read model caught up", || async {
            let list = svc
                .call("GET", &format!("/api/orders/customer/{customer}"), None)
                .await
                .json();
            list["content"]
                .as_array()?
                .iter()
                .find(|o| o["id"] == json!(id))
                .filter(|o| o["status"] == expected && o["version"] == 2)
                .map(|_| ())
        })
        .await;
    }
    assert_eq!(svc.metric("orders_projection_duplicates_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_survive_a_kill_between_commit_and_publish() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Retries with a long backoff keep the events in the outbox (not parked).
    let mut svc = Service::start(
        dir.path(),
        &[
            ("ORDER_PUBLISH_MAX_ATTEMPTS", "50"),
            ("ORDER_PUBLISH_BACKOFF_MS", "200"),
        ],
    )
    .await;
    svc.call("POST", "/api/test/bus/down", None).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let res = svc
            .call(
                "POST",
                "/api/orders",
                Some(&order_body(&format!("crash-cust-{i}"), "rest-1")),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text);
        let id = res.json()["id"].as_str().expect("id").to_owned();
        let res = svc
            .call(
                "PUT",
                &format!("/api/orders/{id}/confirm?paymentId=p-{i}"),
                None,
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        ids.push(id);
    }
    assert_eq!(svc.metric("orders_outbox_pending").await, 20.0);

    svc.kill9();
    // The fault switch is not persisted: the restarted service finds the bus up.
    svc.restart().await;

    eventually(20, "outbox drained after restart", || async {
        (svc.metric("orders_outbox_pending").await == 0.0).then_some(())
    })
    .await;
    let seen = read_topic(&svc.bus(), EVENTS_TOPIC).await;
    let per = assert_ordered_once(&seen);
    assert_eq!(seen.len(), 20);
    for id in &ids {
        assert_eq!(per.get(id), Some(&vec![1, 2]), "order {id}");
        let order = svc.call("GET", &format!("/api/orders/{id}"), None).await;
        assert_eq!(order.json()["status"], "CONFIRMED");
    }
    assert_eq!(dlq_stats(&svc).await["totalCount"], 0);
    eventually(10, "read model caught up", || async {
        let list = svc
            .call("GET", "/api/orders?status=CONFIRMED&size=100", None)
            .await
            .json();
        (list["totalElements"] == json!(10)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_replays_of_one_record_publish_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;
    svc.call("POST", "/api/test/bus/down", None).await;
    let parked = svc.call("POST", "/api/test/publish-event", None).await;
    assert_eq!(parked.status, 200, "{}", parked.text);
    let parked = parked.json();
    assert_eq!(parked["success"], false);
    let event_id = parked["eventId"].as_str().expect("eventId").to_owned();
    let record = svc
        .call("GET", &format!("/api/dlq/event/{event_id}"), None)
        .await;
    assert_eq!(record.json()["status"], "PENDING");
    svc.call("POST", "/api/test/bus/up", None).await;

    let addr = svc.addr;
    let replays: Vec<_> = (0..50)
        .map(|_| {
            let path = format!("/api/dlq/replay/{event_id}");
            tokio::spawn(async move { support::call(addr, "POST", &path, None, &[]).await })
        })
        .collect();
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for r in replays {
        let r = r.await.expect("task").expect("response");
        assert_eq!(r.status, 200, "{}", r.text);
        *statuses
            .entry(r.json()["status"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    assert_eq!(statuses.get("REPLAYED"), Some(&1), "{statuses:?}");
    assert_eq!(statuses.get("SKIPPED"), Some(&49), "{statuses:?}");

    let seen = read_topic(&svc.bus(), EVENTS_TOPIC).await;
    let copies = seen
        .iter()
        .filter(|e| e.event_id.to_string() == event_id)
        .count();
    assert_eq!(copies, 1);
    let record = svc
        .call("GET", &format!("/api/dlq/event/{event_id}"), None)
        .await
        .json();
    assert_eq!(record["status"], "REPLAYED");
    assert_eq!(record["replayAttempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_replay_answers_502_and_reset_puts_it_back_to_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;
    svc.call("POST", "/api/test/bus/down", None).await;
    let parked = svc
        .call("POST", "/api/test/publish-event", None)
        .await
        .json();
    let event_id = parked["eventId"].as_str().expect("eventId").to_owned();

    let replay = svc
        .call("POST", &format!("/api/dlq/replay/{event_id}"), None)
        .await;
    assert_eq!(replay.status, 502, "{}", replay.text);
    let body = replay.json();
    assert_eq!(body["success"], false);
    assert_eq!(body["status"], "FAILED");
    let record = svc
        .call("GET", &format!("/api/dlq/event/{event_id}"), None)
        .await
        .json();
    assert_eq!(record["status"], "FAILED");
    assert_eq!(record["replayAttempts"], 1);
    assert_eq!(dlq_stats(&svc).await["failedCount"], 1);

    let reset = svc
        .call("PUT", &format!("/api/dlq/reset/{event_id}"), None)
        .await;
    assert_eq!(reset.status, 200, "{}", reset.text);
    assert_eq!(reset.json()["status"], "PENDING");

    svc.call("POST", "/api/test/bus/up", None).await;
    let replay = svc
        .call("POST", &format!("/api/dlq/replay/{event_id}"), None)
        .await;
    assert_eq!(replay.json()["status"], "REPLAYED");
    // REPLAYED never goes back to PENDING.
    let reset = svc
        .call("PUT", &format!("/api/dlq/reset/{event_id}"), None)
        .await;
    assert_eq!(reset.status, 409, "{}", reset.text);
    assert_eq!(
        reset.header("content-type"),
        Some("application/problem+json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_projector_cannot_process_is_dead_lettered_and_recorded_without_stalling() {
    use order_core::ports::{BusMessage, EventBus};

    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[]).await;
    let bus = svc.bus();

    // A well-formed envelope the projector cannot apply (an unknown event
    // type), and a message that is not JSON at all, both on `order-events`.
    let poison_id = uuid::Uuid::now_v7();
    let order_id = uuid::Uuid::now_v7();
    let poison = json!({
        "eventId": poison_id, "eventType": "OrderTeleported", "aggregateId": order_id,
        "aggregateType": "Order", "version": 1, "schemaVersion": 1,
        "occurredOn": "2026-01-01T00:00:00Z", "data": {}
    });
    let results = bus
        .publish(&[
            BusMessage {
                topic: EVENTS_TOPIC.into(),
                key: order_id.to_string(),
                payload: poison.to_string().into_bytes(),
                headers: vec![],
            },
            BusMessage {
                topic: EVENTS_TOPIC.into(),
                key: "garbage".into(),
                payload: b"\x00not json{".to_vec(),
                headers: vec![],
            },
        ])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // A normal order after them is still projected: the projector moved on.
    let res = svc
        .call(
            "POST",
            "/api/orders",
            Some(&order_body("poison-cust", "rest-1")),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    eventually(15, "the later order projected", || async {
        let list = svc
            .call("GET", "/api/orders/customer/poison-cust", None)
            .await
            .json();
        (list["totalElements"] == json!(1)).then_some(())
    })
    .await;

    // Both bad messages went to the DLQ topic with failure headers and were recorded.
    let records = eventually(15, "two consumer-side DLQ records", || async {
        let r = all_records(&svc, "pending").await;
        (r.len() == 2).then_some(r)
    })
    .await;
    let poison_rec = records
        .iter()
        .find(|r| r["eventId"] == json!(poison_id.to_string()))
        .expect("poison recorded under its event id");
    assert_eq!(poison_rec["source"], "CONSUMER");
    assert_eq!(poison_rec["eventType"], "OrderTeleported");
    assert!(poison_rec["failureReason"]
        .as_str()
        .is_some_and(|r| r.contains("OrderTeleported")));
    assert!(poison_rec["origin"]
        .as_str()
        .is_some_and(|o| o.starts_with("order-events/0/")));
    let malformed = records
        .iter()
        .find(|r| r["eventType"] == "MALFORMED")
        .expect("malformed message recorded as such");
    assert_eq!(malformed["source"], "CONSUMER");

    let dead = support::read_deliveries(&bus, "order-events-dlq").await;
    assert_eq!(dead.len(), 2);
    for d in &dead {
        assert_eq!(d.header("kafka_dlt-original-topic"), Some(EVENTS_TOPIC));
        assert!(d.header("kafka_dlt-original-offset").is_some());
        assert!(d.header("kafka_dlt-exception-message").is_some());
        assert!(d.header("kafka_dlt-failed-at").is_some());
    }

    // Replaying the poison record re-delivers it once, to the projector
    // alone: on the redelivery topic, addressed to its group; order-events
    // keeps the original delivery only.
    let id = poison_id.to_string();
    assert_eq!(poison_rec["consumerGroup"], "order-projector");
    let replay = svc
        .call("POST", &format!("/api/dlq/replay/{id}"), None)
        .await;
    assert_eq!(replay.json()["status"], "REPLAYED", "{}", replay.text);
    let copies = read_topic(&bus, EVENTS_TOPIC)
        .await
        .iter()
        .filter(|e| e.event_id == poison_id)
        .count();
    assert_eq!(copies, 1, "the original delivery only");
    let redelivered: Vec<_> = support::read_deliveries(&bus, "order-events-redelivery")
        .await
        .into_iter()
        .filter(|d| d.header("ce_id") == Some(id.as_str()))
        .collect();
    assert_eq!(redelivered.len(), 1, "the replay, once");
    assert_eq!(
        redelivered[0].header("orders_redeliver_to"),
        Some("order-projector")
    );

    // It is still unprocessable, so it fails again downstream: the record
    // is reopened with the new origin instead of claiming REPLAYED.
    let first_origin = poison_rec["origin"].clone();
    let reopened = eventually(15, "the record reopened", || async {
        let r = svc
            .call("GET", &format!("/api/dlq/event/{id}"), None)
            .await
            .json();
        (r["status"] == "PENDING" && r["origin"] != first_origin).then_some(r)
    })
    .await;
    assert_eq!(reopened["replayAttempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_database_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = Service::start(dir.path(), &[]).await;
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
        .env("ORDER_PORT", "0")
        .env("ORDER_BIND", "127.0.0.1")
        .env(
            "ORDER_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("orders.db").display()),
        )
        .env("ORDER_LOG", "warn")
        .output()
        .expect("second process runs");
    assert!(!second.status.success(), "a second instance must not start");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another order-service process is using"),
        "{stderr}"
    );
}
