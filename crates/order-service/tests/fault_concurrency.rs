//! Concurrency on the production stack (the real binary on MariaDB, the
//! test's own Tansu broker and nx-27017): requests that race for one thing
//! must leave exactly one effect.
//!
//! - 50 concurrent replays of one parked DLQ record publish it once;
//! - a confirm racing a cancel on one order: one wins, the other is 409, and
//!   the state, the event store and the topic all tell the winner's story;
//! - 20 concurrent creates with one `Idempotency-Key` and the same body make
//!   one order.
//!
//! An independent Kafka consumer (a fresh group) checks what downstream
//! services see. Needs `ORDER_TEST_MYSQL_URL`, `ORDER_TEST_KAFKA_BROKERS`
//! and `ORDER_TEST_MONGODB_URI` (run ./scripts/test.sh); fails without them.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::order_body;
use support::production::broker::Broker;
use support::production::consumer::{consumer_view, envelopes, read_topic_until};
use support::production::{eventually, mysql_client, ProdService, Services};
use support::Response;

/// One request on a fresh connection with extra headers, bounded by 60 s
/// (it panics otherwise: run inside a task, the test sees the panic).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Response {
    tokio::time::timeout(
        Duration::from_secs(60),
        support::call(addr, method, path, body, headers),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {path}: no answer within 60 s"))
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// One value from the test's MariaDB database (`mysql` client, as the
/// harness uses to drop it).
fn mysql_scalar(services: &Services, database: &str, sql: &str) -> String {
    let mut cmd = mysql_client(&services.mysql_url);
    cmd.args(["-N", "-B", database, "-e", sql]);
    let out = cmd.output().expect("the mysql client runs");
    assert!(
        out.status.success(),
        "mysql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn problem_type(r: &Response) -> String {
    r.json()["type"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .unwrap_or("?")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_replays_of_one_dlq_record_publish_it_exactly_once() {
    let test_started = Instant::now();
    let services = Services::from_env();
    let broker = Broker::start();
    let svc = ProdService::start(
        &services,
        &broker.address,
        &[("ORDER_PUBLISH_MAX_ATTEMPTS", "1")],
    )
    .await;

    // A parked record: the bus is switched off, an order's OrderCreated
    // fails its one publish attempt and is parked.
    let down = svc.call("POST", "/api/test/bus/down", None).await;
    assert_eq!(down.status, 200, "{}", down.text);
    let created = svc
        .call(
            "POST",
            "/api/orders",
            Some(&order_body("replay-cust", "replay-rest")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let order_id = created.json()["id"].as_str().expect("id").to_owned();
    let event_id = eventually(60, "the OrderCreated parked", || async {
        let pending = svc.dlq_records("PENDING").await;
        match pending
            .iter()
            .find(|r| r["aggregateId"] == json!(order_id.as_str()))
        {
            Some(r) => Ok(r["eventId"].as_str().expect("eventId").to_owned()),
            None => Err(format!("PENDING records: {pending:?}")),
        }
    })
    .await;
    let up = svc.call("POST", "/api/test/bus/up", None).await;
    assert_eq!(up.status, 200, "{}", up.text);

    // 50 replays at once.
    let replays_started = Instant::now();
    let path = format!("/api/dlq/replay/{event_id}");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let addr = svc.addr;
            let path = path.clone();
            tokio::spawn(async move { call(addr, "POST", &path, None, &[]).await })
        })
        .collect();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut published_by_replayed = Vec::new();
    for t in tasks {
        let r = t.await.expect("a replay answered");
        let kind = match r.status {
            200 => {
                let body = r.json();
                let status = body["status"].as_str().unwrap_or("?").to_owned();
                if status == "REPLAYED" {
                    published_by_replayed.push(body["published"].clone());
                }
                status
            }
            409 => {
                assert!(
                    r.header("content-type")
                        .is_some_and(|ct| ct.starts_with("application/problem+json")),
                    "a 409 is a problem: {}",
                    r.text
                );
                "409".to_owned()
            }
            other => panic!("replay answered {other}: {}", r.text),
        };
        *outcomes.entry(kind).or_default() += 1;
    }
    let replays_took = replays_started.elapsed();
    let replayed = outcomes.get("REPLAYED").copied().unwrap_or(0);
    let skipped = outcomes.get("SKIPPED").copied().unwrap_or(0);
    let conflicts = outcomes.get("409").copied().unwrap_or(0);
    assert_eq!(replayed, 1, "exactly one replay publishes: {outcomes:?}");
    assert_eq!(published_by_replayed, vec![json!(1)], "{outcomes:?}");
    assert_eq!(
        replayed + skipped + conflicts,
        50,
        "only REPLAYED, SKIPPED or 409: {outcomes:?}"
    );

    // The record is resolved once; downstream sees the event once.
    let record = svc.get_json(&format!("/api/dlq/event/{event_id}")).await;
    assert_eq!(record["status"], "REPLAYED", "{record}");
    assert_eq!(record["replayAttempts"], 1, "{record}");
    let bus = svc.kafka_client(&broker.address).await;
    let wanted = event_id.clone();
    let deliveries = read_topic_until(
        &bus,
        &svc.names.events_topic,
        90,
        Duration::from_secs(3),
        |d| {
            envelopes(d)
                .iter()
                .any(|e| e.event_id.to_string() == wanted)
        },
    )
    .await;
    let seen = envelopes(&deliveries);
    let copies = seen
        .iter()
        .filter(|e| e.event_id.to_string() == event_id)
        .count();
    assert_eq!(
        copies, 1,
        "the consumer saw the replayed event {copies} times"
    );
    let view = consumer_view(&seen);
    assert_eq!(view.duplicated, 0, "{view:?}");
    let stats = svc.dlq_stats().await;
    assert_eq!(stats["pendingCount"], 0, "{stats}");
    assert_eq!(stats["replayedCount"], 1, "{stats}");

    println!(
        "concurrent replays: 50 requests for one DLQ record → {replayed} REPLAYED (published 1), \
         {skipped} SKIPPED, {conflicts} × 409 in {:.2} s; the independent consumer read {} \
         message(s), the event {copies} time(s); test {:.1} s",
        replays_took.as_secs_f64(),
        deliveries.len(),
        test_started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_racing_a_cancel_has_one_winner_and_every_view_agrees() {
    const ROUNDS: usize = 20;
    let test_started = Instant::now();
    let services = Services::from_env();
    let broker = Broker::start();
    let svc = ProdService::start(&services, &broker.address, &[]).await;

    let mut winners: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut loser_types: BTreeMap<String, usize> = BTreeMap::new();
    let (mut confirm_won, mut cancel_won) = (0usize, 0usize);
    for round in 0..ROUNDS {
        let created = svc
            .call(
                "POST",
                "/api/orders",
                Some(&order_body(&format!("race-cust-{round}"), "race-rest")),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.json()["id"].as_str().expect("id").to_owned();

        let addr = svc.addr;
        let confirm_path = format!("/api/orders/{id}/confirm?paymentId=pay-{round}");
        let cancel_path = format!("/api/orders/{id}/cancel?reason=race-{round}");
        let confirm =
            tokio::spawn(async move { call(addr, "PUT", &confirm_path, None, &[]).await });
        let cancel = tokio::spawn(async move { call(addr, "PUT", &cancel_path, None, &[]).await });
        let confirm = confirm.await.expect("the confirm answered");
        let cancel = cancel.await.expect("the cancel answered");

        let (winner, loser, status, event_type) = match (confirm.status, cancel.status) {
            (200, 409) => {
                confirm_won += 1;
                (&confirm, &cancel, "CONFIRMED", "OrderConfirmed")
            }
            (409, 200) => {
                cancel_won += 1;
                (&cancel, &confirm, "CANCELLED", "OrderCancelled")
            }
            (c, k) => panic!(
                "round {round}: confirm {c} ({}), cancel {k} ({}): expected one 200 and one 409",
                confirm.text, cancel.text
            ),
        };
        assert!(
            loser
                .header("content-type")
                .is_some_and(|ct| ct.starts_with("application/problem+json")),
            "round {round}: the 409 is a problem: {}",
            loser.text
        );
        *loser_types.entry(problem_type(loser)).or_default() += 1;
        let w = winner.json();
        assert_eq!(w["status"], status, "round {round}: {w}");
        assert_eq!(w["version"], 2, "round {round}: {w}");

        // The current state and the event store agree with the winner.
        let now = svc.get_json(&format!("/api/orders/{id}")).await;
        assert_eq!(now["status"], status, "round {round}: {now}");
        assert_eq!(now["version"], 2, "round {round}: {now}");
        if status == "CONFIRMED" {
            assert_eq!(now["paymentId"], format!("pay-{round}"), "{now}");
            assert!(now["cancellationReason"].is_null(), "{now}");
        } else {
            assert_eq!(now["cancellationReason"], format!("race-{round}"), "{now}");
            assert!(now["paymentId"].is_null(), "{now}");
        }
        let history = svc.history(&id).await;
        let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["OrderCreated", event_type], "round {round}");
        winners.insert(id, event_type);
    }

    // The topic tells the same story: per order, OrderCreated then the
    // winner's event, once each.
    let bus = svc.kafka_client(&broker.address).await;
    let deliveries = read_topic_until(
        &bus,
        &svc.names.events_topic,
        120,
        Duration::from_secs(3),
        |d| {
            let seen: HashSet<(String, u64)> = envelopes(d)
                .into_iter()
                .map(|e| (e.aggregate_id, e.version))
                .collect();
            winners
                .keys()
                .all(|id| seen.contains(&(id.clone(), 1)) && seen.contains(&(id.clone(), 2)))
        },
    )
    .await;
    let seen = envelopes(&deliveries);
    let view = consumer_view(&seen);
    assert_eq!(view.duplicated, 0, "{view:?}");
    assert_eq!(view.out_of_order, 0, "{view:?}");
    for (id, event_type) in &winners {
        assert_eq!(
            view.versions.get(id).map(Vec::as_slice),
            Some(&[1u64, 2][..]),
            "order {id} on the topic"
        );
        let second = seen
            .iter()
            .find(|e| &e.aggregate_id == id && e.version == 2)
            .expect("version 2 on the topic");
        assert_eq!(&second.event_type, event_type, "order {id} on the topic");
    }

    println!(
        "confirm/cancel races: {ROUNDS} rounds → {ROUNDS} × (one 200 + one 409); confirm won \
         {confirm_won}, cancel won {cancel_won}; the 409s: {loser_types:?}; topic: {} events \
         for {} orders, {} duplicated, {} out of order; test {:.1} s",
        view.delivered,
        winners.len(),
        view.duplicated,
        view.out_of_order,
        test_started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_creates_with_one_idempotency_key_make_one_order() {
    const REQUESTS: usize = 20;
    let test_started = Instant::now();
    let services = Services::from_env();
    let broker = Broker::start();
    let svc = ProdService::start(&services, &broker.address, &[]).await;

    let key = format!("idem-{}", uuid::Uuid::new_v4());
    let body = order_body("idem-cust", "idem-rest");
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let addr = svc.addr;
            let key = key.clone();
            let body = body.clone();
            tokio::spawn(async move {
                call(
                    addr,
                    "POST",
                    "/api/orders",
                    Some(&body),
                    &[("idempotency-key", key.as_str())],
                )
                .await
            })
        })
        .collect();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let (mut fresh, mut replayed) = (0usize, 0usize);
    for t in tasks {
        let r = t.await.expect("the create answered");
        assert_eq!(r.status, 201, "every create answers 201: {}", r.text);
        let order = r.json();
        assert_eq!(order["version"], 1, "{order}");
        assert_eq!(order["status"], "PENDING", "{order}");
        *ids.entry(order["id"].as_str().expect("id").to_owned())
            .or_default() += 1;
        if r.header("idempotent-replayed") == Some("true") {
            replayed += 1;
        } else {
            fresh += 1;
        }
    }
    assert_eq!(ids.len(), 1, "one order id among the answers: {ids:?}");
    assert_eq!(
        (fresh, replayed),
        (1, REQUESTS - 1),
        "one first result, the others its replay"
    );
    let id = ids.keys().next().expect("an id").clone();

    // One OrderCreated in the event store (the test's own database)…
    let history = svc.history(&id).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].event_type, "OrderCreated");
    let in_store = mysql_scalar(
        &services,
        &svc.names.database,
        "SELECT COUNT(*) FROM event_store WHERE event_type = 'OrderCreated'",
    );
    assert_eq!(in_store, "1", "OrderCreated rows in the event store");
    let orders_rows = mysql_scalar(
        &services,
        &svc.names.database,
        "SELECT COUNT(*) FROM orders",
    );
    assert_eq!(orders_rows, "1", "rows of the current-state table");

    // …and on the topic (the test's own broker and topic).
    let bus = svc.kafka_client(&broker.address).await;
    let deliveries = read_topic_until(
        &bus,
        &svc.names.events_topic,
        90,
        Duration::from_secs(3),
        |d| envelopes(d).iter().any(|e| e.aggregate_id == id),
    )
    .await;
    let created_on_topic: Vec<_> = envelopes(&deliveries)
        .into_iter()
        .filter(|e| e.event_type == "OrderCreated")
        .collect();
    assert_eq!(created_on_topic.len(), 1, "{created_on_topic:?}");
    assert_eq!(created_on_topic[0].aggregate_id, id);

    println!(
        "idempotent creates: {REQUESTS} concurrent requests with one key → {REQUESTS} × 201 \
         ({fresh} new, {replayed} replayed), {} order id, {in_store} OrderCreated in the event \
         store, {} on the topic; test {:.1} s",
        ids.len(),
        created_on_topic.len(),
        test_started.elapsed().as_secs_f64()
    );
}
