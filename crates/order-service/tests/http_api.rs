//! HTTP tests through the router (no socket): each test builds the whole
//! application with the real SQLite adapters and embedded bus on a fresh
//! temporary directory and drives it with `oneshot` requests.

// Test helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use order_service::config::Config;
use order_service::startup;
use serde_json::{json, Value};
use support::router::{test_app_with, Reply, TestApp};

/// The problem-response checks of these tests.
impl Reply {
    fn is_problem(&self) -> bool {
        self.header("content-type") == Some("application/problem+json")
    }
    /// Asserts a problem response with `status` and returns its body.
    fn problem(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        assert!(self.is_problem(), "not problem+json: {:?}", self.headers);
        let p = self.json();
        assert_eq!(p["status"], status.as_u16());
        assert!(p["type"]
            .as_str()
            .unwrap()
            .starts_with("https://order-service.dev/problems/"));
        assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
        p
    }
}

async fn test_app() -> TestApp {
    test_app_with(|_| {}).await
}

impl TestApp {
    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None, &[]).await
    }

    async fn create(&self, customer: &str) -> Value {
        let r = self
            .call(Method::POST, "/api/orders", Some(order_body(customer)), &[])
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
        r.json()
    }

    async fn put(&self, uri: &str) -> Reply {
        self.call(Method::PUT, uri, None, &[]).await
    }

    /// Polls `probe` until it returns `Some`, for at most 10 s.
    async fn eventually<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn order_body(customer: &str) -> Value {
    json!({
        "customerId": customer,
        "restaurantId": "restaurant-1",
        "items": [
            {"menuItemId": "pizza", "name": "Margherita", "price": 12.5, "quantity": 2},
            {"menuItemId": "cola", "name": "Cola", "price": "2.25", "quantity": 1}
        ]
    })
}

// ---------------------------------------------------------------------------
// Orders: commands
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_an_order_answers_201_with_location_etag_and_the_full_order() {
    let t = test_app().await;
    let r = t
        .call(
            Method::POST,
            "/api/orders",
            Some(order_body("alice")),
            &[("x-correlation-id", "corr-123")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let o = r.json();
    let id = o["id"].as_str().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/orders/{id}").as_str())
    );
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("x-correlation-id"), Some("corr-123"));
    assert_eq!(o["customerId"], "alice");
    assert_eq!(o["restaurantId"], "restaurant-1");
    assert_eq!(o["status"], "PENDING");
    assert_eq!(o["totalAmount"], "27.25");
    assert_eq!(o["items"][0]["price"], "12.5");
    assert_eq!(o["items"][1]["quantity"], 1);
    assert_eq!(o["paymentId"], Value::Null);
    assert_eq!(o["cancellationReason"], Value::Null);
    assert_eq!(o["version"], 1);
    assert!(o["createdAt"].is_string() && o["updatedAt"].is_string());

    let events = t.get(&format!("/api/orders/{id}/events")).await.json();
    assert_eq!(events[0]["correlationId"], "corr-123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_without_a_correlation_id_gets_a_generated_one() {
    let t = test_app().await;
    let r = t.get("/health/live").await;
    assert!(r.header("x-correlation-id").is_some_and(|v| v.len() >= 32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_idempotency_key_returns_the_first_result() {
    let t = test_app().await;
    let key = [("idempotency-key", "key-1")];
    let first = t
        .call(Method::POST, "/api/orders", Some(order_body("bob")), &key)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = t
        .call(Method::POST, "/api/orders", Some(order_body("bob")), &key)
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.json(), first.json());
    assert_eq!(second.header("location"), first.header("location"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_an_idempotency_key_with_another_body_is_422() {
    let t = test_app().await;
    let key = [("idempotency-key", "key-2")];
    t.call(Method::POST, "/api/orders", Some(order_body("bob")), &key)
        .await;
    let r = t
        .call(Method::POST, "/api/orders", Some(order_body("carol")), &key)
        .await;
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        p["type"],
        "https://order-service.dev/problems/idempotency-key-reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_idempotency_key_is_400() {
    let t = test_app().await;
    let r = t
        .call(
            Method::POST,
            "/api/orders",
            Some(order_body("bob")),
            &[("idempotency-key", "")],
        )
        .await;
    r.problem(StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_order_is_422_with_one_error_per_field() {
    let t = test_app().await;
    let r = t
        .call(
            Method::POST,
            "/api/orders",
            Some(json!({
                "customerId": " ",
                "restaurantId": "r",
                "items": [{"menuItemId": "m", "name": "n", "price": "-1", "quantity": 0}]
            })),
            &[],
        )
        .await;
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["type"], "https://order-service.dev/problems/validation");
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"customerId"), "{p}");
    assert!(fields.contains(&"items[0].quantity"), "{p}");
    assert!(fields.contains(&"items[0].price"), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_without_items_is_422() {
    let t = test_app().await;
    let r = t
        .call(
            Method::POST,
            "/api/orders",
            Some(json!({"customerId": "c", "restaurantId": "r", "items": []})),
            &[],
        )
        .await;
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["errors"][0]["field"], "items");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_json_types_are_422_naming_the_field() {
    let t = test_app().await;
    let r = t
        .call(
            Method::POST,
            "/api/orders",
            Some(json!({
                "customerId": 42,
                "restaurantId": "r",
                "items": [{"menuItemId": "m", "name": "n", "price": true, "quantity": "2"}]
            })),
            &[],
        )
        .await;
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["customerId", "items[0].price", "items[0].quantity"],
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_that_disagrees_with_the_items_is_422() {
    let t = test_app().await;
    let mut body = order_body("dave");
    body["totalAmount"] = json!("27.24");
    let r = t.call(Method::POST, "/api/orders", Some(body), &[]).await;
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["errors"][0]["field"], "totalAmount");

    let mut body = order_body("dave");
    body["totalAmount"] = json!(27.25);
    let r = t.call(Method::POST, "/api/orders", Some(body), &[]).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "a matching total is accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_are_exact_decimals_never_floats() {
    let t = test_app().await;
    let r = t
        .call(
            Method::POST,
            "/api/orders",
            Some(json!({
                "customerId": "c", "restaurantId": "r",
                "items": [
                    {"menuItemId": "a", "name": "a", "price": 0.1, "quantity": 1},
                    {"menuItemId": "b", "name": "b", "price": "0.2", "quantity": 1}
                ],
                "totalAmount": 0.3
            })),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    assert_eq!(r.json()["totalAmount"], "0.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_twice_is_409_and_writes_no_second_event() {
    let t = test_app().await;
    let id = t.create("erin").await["id"].as_str().unwrap().to_owned();
    let r = t
        .put(&format!(
            "/api/orders/{id}/cancel?reason=changed%20my%20mind"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "CANCELLED");
    assert_eq!(r.json()["cancellationReason"], "changed my mind");
    let again = t.put(&format!("/api/orders/{id}/cancel")).await;
    let p = again.problem(StatusCode::CONFLICT);
    assert_eq!(
        p["type"],
        "https://order-service.dev/problems/illegal-transition"
    );
    let events = t.get(&format!("/api/orders/{id}/events")).await.json();
    assert_eq!(events.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirming_after_cancel_is_409() {
    let t = test_app().await;
    let id = t.create("frank").await["id"].as_str().unwrap().to_owned();
    t.put(&format!("/api/orders/{id}/cancel")).await;
    let r = t
        .put(&format!("/api/orders/{id}/confirm?paymentId=p-1"))
        .await;
    r.problem(StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_a_step_is_409() {
    let t = test_app().await;
    let id = t.create("gina").await["id"].as_str().unwrap().to_owned();
    t.put(&format!("/api/orders/{id}/prepare"))
        .await
        .problem(StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirming_without_a_payment_id_is_422() {
    let t = test_app().await;
    let id = t.create("hank").await["id"].as_str().unwrap().to_owned();
    let p = t
        .put(&format!("/api/orders/{id}/confirm"))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["errors"][0]["field"], "paymentId");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_moves_through_every_status_with_json_bodies_or_query_parameters() {
    let t = test_app().await;
    let id = t.create("ivy").await["id"].as_str().unwrap().to_owned();
    let r = t
        .call(
            Method::PUT,
            &format!("/api/orders/{id}/confirm"),
            Some(json!({"paymentId": "pay-9"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["status"], "CONFIRMED");
    assert_eq!(r.json()["paymentId"], "pay-9");
    assert_eq!(r.header("etag"), Some("\"2\""));
    for (action, status) in [
        ("prepare", "PREPARING"),
        ("ready", "READY"),
        ("deliver", "DELIVERED"),
    ] {
        let r = t.put(&format!("/api/orders/{id}/{action}")).await;
        assert_eq!(r.status, StatusCode::OK, "{action}: {}", r.json());
        assert_eq!(r.json()["status"], status);
    }
    assert_eq!(
        t.get(&format!("/api/orders/{id}")).await.json()["version"],
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reason_can_come_in_a_json_body() {
    let t = test_app().await;
    let id = t.create("jack").await["id"].as_str().unwrap().to_owned();
    let r = t
        .call(
            Method::PUT,
            &format!("/api/orders/{id}/cancel"),
            Some(json!({"reason": "too slow"})),
            &[],
        )
        .await;
    assert_eq!(r.json()["cancellationReason"], "too slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_if_match_is_412_and_a_current_one_succeeds() {
    let t = test_app().await;
    let id = t.create("kim").await["id"].as_str().unwrap().to_owned();
    let uri = format!("/api/orders/{id}/confirm?paymentId=p");
    let stale = t
        .call(Method::PUT, &uri, None, &[("if-match", "\"7\"")])
        .await;
    let p = stale.problem(StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        p["type"],
        "https://order-service.dev/problems/precondition-failed"
    );
    let ok = t
        .call(Method::PUT, &uri, None, &[("if-match", "\"1\"")])
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let bare = t
        .call(
            Method::PUT,
            &format!("/api/orders/{id}/prepare"),
            None,
            &[("if-match", "2")],
        )
        .await;
    assert_eq!(bare.status, StatusCode::OK, "a bare version works too");
    let garbage = t
        .call(
            Method::PUT,
            &format!("/api/orders/{id}/ready"),
            None,
            &[("if-match", "\"abc\"")],
        )
        .await;
    garbage.problem(StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_of_an_unknown_order_is_404() {
    let t = test_app().await;
    t.put("/api/orders/00000000-0000-0000-0000-000000000000/prepare")
        .await
        .problem(StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------
// Orders: reads
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_answers_the_current_state_with_the_version_as_etag() {
    let t = test_app().await;
    let id = t.create("lee").await["id"].as_str().unwrap().to_owned();
    t.put(&format!("/api/orders/{id}/confirm?paymentId=p"))
        .await;
    let r = t.get(&format!("/api/orders/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert_eq!(r.json()["status"], "CONFIRMED");
    t.get("/api/orders/00000000-0000-0000-0000-000000000000")
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_by_version_and_by_instant_rebuilds_past_states() {
    let t = test_app().await;
    let created = t.create("mia").await;
    let id = created["id"].as_str().unwrap().to_owned();
    let created_at = created["createdAt"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(5)).await;
    t.put(&format!("/api/orders/{id}/confirm?paymentId=p"))
        .await;

    let v1 = t.get(&format!("/api/orders/{id}?version=1")).await;
    assert_eq!(v1.status, StatusCode::OK);
    assert_eq!(v1.json()["status"], "PENDING");
    assert_eq!(v1.header("etag"), Some("\"1\""));

    let as_of = created_at.replace('+', "%2B");
    let r = t.get(&format!("/api/orders/{id}?asOf={as_of}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["status"], "PENDING");
    assert_eq!(r.json()["version"], 1);

    t.get(&format!("/api/orders/{id}?version=9"))
        .await
        .problem(StatusCode::NOT_FOUND);
    t.get(&format!("/api/orders/{id}?asOf=2000-01-01T00:00:00Z"))
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_time_travel_parameters_are_400() {
    let t = test_app().await;
    let id = t.create("ned").await["id"].as_str().unwrap().to_owned();
    for q in [
        "version=1&asOf=2030-01-01T00:00:00Z",
        "version=0",
        "version=x",
        "version=",
        "asOf=yesterday",
    ] {
        let p = t
            .get(&format!("/api/orders/{id}?{q}"))
            .await
            .problem(StatusCode::BAD_REQUEST);
        assert!(p["detail"].is_string(), "{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_history_lists_envelopes_in_version_order() {
    let t = test_app().await;
    let id = t.create("olga").await["id"].as_str().unwrap().to_owned();
    t.put(&format!("/api/orders/{id}/confirm?paymentId=p"))
        .await;
    let events = t.get(&format!("/api/orders/{id}/events")).await.json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["eventType"], "OrderCreated");
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[1]["eventType"], "OrderConfirmed");
    assert_eq!(events[1]["version"], 2);
    assert_eq!(events[1]["aggregateId"], id.as_str());
    assert!(events[1]["schemaVersion"].is_u64() && events[1]["eventId"].is_string());
    t.get("/api/orders/00000000-0000-0000-0000-000000000000/events")
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_the_customer_listing_come_from_the_read_model() {
    let t = test_app().await;
    let a = t.create("pat").await["id"].as_str().unwrap().to_owned();
    t.create("pat").await;
    t.create("quinn").await;
    t.put(&format!("/api/orders/{a}/confirm?paymentId=p")).await;

    let page = t
        .eventually("the projector to catch up", || async {
            let r = t.get("/api/orders?customerId=pat&size=10").await;
            let v = r.json();
            let confirmed = v["content"]
                .as_array()
                .is_some_and(|c| c.iter().any(|o| o["status"] == "CONFIRMED"));
            (v["totalElements"] == 2 && confirmed).then_some(v)
        })
        .await;
    assert_eq!(page["page"], 0);
    assert_eq!(page["size"], 10);
    assert_eq!(page["totalPages"], 1);

    let r = t.get("/api/orders?customerId=pat&status=confirmed").await;
    assert_eq!(r.json()["totalElements"], 1, "status is case-insensitive");
    let r = t.get("/api/orders/customer/pat?size=1&page=1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["totalElements"], 2);
    assert_eq!(r.json()["content"].as_array().unwrap().len(), 1);
    assert_eq!(r.json()["totalPages"], 2);
    let r = t.get("/api/orders?restaurantId=restaurant-1").await;
    assert_eq!(r.json()["totalElements"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_status_filter_is_400_naming_the_valid_ones() {
    let t = test_app().await;
    let p = t
        .get("/api/orders?status=LOST")
        .await
        .problem(StatusCode::BAD_REQUEST);
    let detail = p["detail"].as_str().unwrap();
    for s in ["PENDING", "CONFIRMED", "CANCELLED", "DELIVERED"] {
        assert!(detail.contains(s), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_paging_is_400() {
    let t = test_app().await;
    for q in [
        "page=-1", "size=0", "size=101", "page=abc", "size=", "page=1.5",
    ] {
        t.get(&format!("/api/orders?{q}"))
            .await
            .problem(StatusCode::BAD_REQUEST);
        t.get(&format!("/api/dlq/pending?{q}"))
            .await
            .problem(StatusCode::BAD_REQUEST);
    }
}

// ---------------------------------------------------------------------------
// DLQ and test endpoints
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_lookups_of_unknown_events_are_404() {
    let t = test_app().await;
    t.get("/api/dlq/event/nope")
        .await
        .problem(StatusCode::NOT_FOUND);
    t.call(Method::POST, "/api/dlq/replay/nope", None, &[])
        .await
        .problem(StatusCode::NOT_FOUND);
    t.put("/api/dlq/reset/nope")
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_status_names_are_case_insensitive_and_unknown_ones_are_400() {
    let t = test_app().await;
    let r = t.get("/api/dlq/status/pending").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["content"], json!([]));
    assert_eq!(r.json()["totalElements"], 0);
    let p = t
        .get("/api/dlq/status/LOST")
        .await
        .problem(StatusCode::BAD_REQUEST);
    let detail = p["detail"].as_str().unwrap();
    for s in ["PENDING", "REPLAYED", "FAILED", "SKIPPED"] {
        assert!(detail.contains(s), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_stats_start_at_zero() {
    let t = test_app().await;
    let s = t.get("/api/dlq/stats").await.json();
    for k in [
        "pendingCount",
        "replayedCount",
        "failedCount",
        "skippedCount",
        "totalCount",
    ] {
        assert_eq!(s[k], 0, "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_switch_drives_kafka_status_without_publishing() {
    let t = test_app().await;
    let r = t.get("/api/test/kafka-status").await;
    assert_eq!(r.json()["kafka"], "UP", "{}", r.json());
    let r = t.call(Method::POST, "/api/test/bus/down", None, &[]).await;
    assert_eq!(r.json(), json!({"busDown": true}));
    let r = t.get("/api/test/kafka-status").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["kafka"], "DOWN");
    assert!(r.json()["message"].is_string());
    let r = t.call(Method::POST, "/api/test/bus/up", None, &[]).await;
    assert_eq!(r.json(), json!({"busDown": false}));
    assert_eq!(t.get("/api/test/kafka-status").await.json()["kafka"], "UP");
    let h = t.get("/actuator/health").await;
    assert_eq!(h.json()["status"], "UP", "{}", h.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_event_parked_while_the_bus_is_down_is_replayed_once_it_is_back() {
    let t = test_app().await;
    t.call(Method::POST, "/api/test/bus/down", None, &[]).await;
    let r = t
        .call(Method::POST, "/api/test/publish-event", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let out = r.json();
    assert_eq!(out["success"], false, "{out}");
    assert!(out["orderId"].as_str().unwrap().starts_with("test-order-"));
    let event_id = out["eventId"].as_str().unwrap().to_owned();

    let rec = t.get(&format!("/api/dlq/event/{event_id}")).await;
    assert_eq!(rec.status, StatusCode::OK);
    assert_eq!(rec.json()["status"], "PENDING");
    assert_eq!(t.get("/api/dlq/stats").await.json()["pendingCount"], 1);
    let pending = t.get("/api/dlq/pending").await.json();
    assert_eq!(pending["content"][0]["eventId"], event_id.as_str());

    // Health is degraded, not down, while the bus is off.
    let h = t.get("/actuator/health").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json()["status"], "DEGRADED");
    assert_eq!(h.json()["components"]["bus"]["status"], "DOWN");

    // A replay while the bus is still down fails: 502, FAILED.
    let r = t
        .call(
            Method::POST,
            &format!("/api/dlq/replay/{event_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.json()["success"], false);
    assert_eq!(r.json()["status"], "FAILED");
    let rec = t.get(&format!("/api/dlq/event/{event_id}")).await.json();
    assert_eq!(rec["status"], "FAILED");
    assert_eq!(rec["replayAttempts"], 1);

    // FAILED → PENDING.
    let r = t.put(&format!("/api/dlq/reset/{event_id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "PENDING");
    t.put(&format!("/api/dlq/reset/{event_id}"))
        .await
        .problem(StatusCode::CONFLICT);

    t.call(Method::POST, "/api/test/bus/up", None, &[]).await;
    let r = t
        .call(
            Method::POST,
            &format!("/api/dlq/replay/{event_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["success"], true);
    assert_eq!(r.json()["status"], "REPLAYED");
    assert_eq!(r.json()["published"], 1);

    let again = t
        .call(
            Method::POST,
            &format!("/api/dlq/replay/{event_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["status"], "SKIPPED");
    assert_eq!(again.json()["published"], 0);
    t.put(&format!("/api/dlq/reset/{event_id}"))
        .await
        .problem(StatusCode::CONFLICT);
    let replayed = t.get("/api/dlq/status/REPLAYED").await.json();
    assert_eq!(replayed["totalElements"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_held_behind_its_head_cannot_be_replayed_before_it() {
    let t = test_app().await;
    t.call(Method::POST, "/api/test/bus/down", None, &[]).await;
    let id = t.create("rita").await["id"].as_str().unwrap().to_owned();
    t.eventually("the created event to be parked", || async {
        (t.get("/api/dlq/stats").await.json()["pendingCount"] == 1).then_some(())
    })
    .await;
    t.put(&format!("/api/orders/{id}/confirm?paymentId=p"))
        .await;
    let page = t
        .eventually("the confirmed event to be parked behind it", || async {
            let v = t.get("/api/dlq/pending").await.json();
            (v["totalElements"] == 2).then_some(v)
        })
        .await;
    let records = page["content"].as_array().unwrap();
    let head = records
        .iter()
        .find(|r| r["blockedBy"].is_null())
        .unwrap()
        .clone();
    let blocked = records
        .iter()
        .find(|r| !r["blockedBy"].is_null())
        .unwrap()
        .clone();
    assert_eq!(blocked["blockedBy"], head["eventId"]);

    t.call(Method::POST, "/api/test/bus/up", None, &[]).await;
    let blocked_id = blocked["eventId"].as_str().unwrap();
    t.call(
        Method::POST,
        &format!("/api/dlq/replay/{blocked_id}"),
        None,
        &[],
    )
    .await
    .problem(StatusCode::CONFLICT);
    let head_id = head["eventId"].as_str().unwrap();
    let r = t
        .call(
            Method::POST,
            &format!("/api/dlq/replay/{head_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["published"], 2);
    let stats = t.get("/api/dlq/stats").await.json();
    assert_eq!(stats["pendingCount"], 0);
    assert_eq!(stats["replayedCount"], 2);

    // The projector receives both, in order.
    t.eventually("the replayed events to reach the read model", || async {
        let v = t.get("/api/orders/customer/rita").await.json();
        (v["content"][0]["status"] == "CONFIRMED").then_some(())
    })
    .await;
}

impl TestApp {
    /// Starts a bulk replay job with `body`: 202 with the job and its
    /// Location; then polls the job until it ends and returns it.
    async fn start_replay_job(&self, body: Value) -> Value {
        let r = self
            .call(Method::POST, "/api/dlq/replay", Some(body), &[])
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json());
        let job = r.json();
        let id = job["id"].as_str().unwrap();
        assert_eq!(
            r.header("location").map(str::to_owned),
            Some(format!("/api/dlq/jobs/{id}"))
        );
        assert_eq!(job["status"], "RUNNING", "{job}");
        job
    }

    async fn job(&self, id: &str) -> Value {
        let r = self.get(&format!("/api/dlq/jobs/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        r.json()
    }

    async fn until_job_ends(&self, id: &str) -> Value {
        self.eventually("the replay job to end", || async {
            let job = self.job(id).await;
            (job["status"] != "RUNNING").then_some(job)
        })
        .await
    }

    async fn replay_job(&self, body: Value) -> Value {
        let job = self.start_replay_job(body).await;
        self.until_job_ends(job["id"].as_str().unwrap()).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_replay_replays_every_head_in_failure_order_with_what_is_held_behind() {
    let t = test_app().await;
    t.call(Method::POST, "/api/test/bus/down", None, &[]).await;
    let mut ids = Vec::new();
    for customer in ["bulk-a", "bulk-b", "bulk-c"] {
        let id = t.create(customer).await["id"].as_str().unwrap().to_owned();
        t.put(&format!("/api/orders/{id}/confirm?paymentId=p"))
            .await;
        ids.push(id);
    }
    t.eventually("6 events parked", || async {
        (t.get("/api/dlq/stats").await.json()["pendingCount"] == 6).then_some(())
    })
    .await;
    t.call(Method::POST, "/api/test/bus/up", None, &[]).await;
    let bulk = |body: Option<Value>| t.call(Method::POST, "/api/dlq/replay", body, &[]);

    // Bad requests are 400/415 and replay nothing.
    for body in [
        json!({"limit": 0}),
        json!({"limit": 1001, "dryRun": true}),
        json!({"limit": 100_000_001}),
        json!({"limit": "x"}),
        json!({"bogus": 1}),
        json!([]),
        json!({"status": "REPLAYED"}),
        json!({"from": "yesterday"}),
        json!({"from": "2024-05-02T00:00:00Z", "to": "2024-05-01T00:00:00Z"}),
    ] {
        bulk(Some(body)).await.problem(StatusCode::BAD_REQUEST);
    }
    let dry_filtered = bulk(Some(json!({
        "dryRun": true,
        "status": "FAILED",
        "from": "2000-01-01T00:00:00Z"
    })))
    .await
    .json();
    assert_eq!(dry_filtered["matched"], 0, "no FAILED head: {dry_filtered}");
    let dry_window = bulk(Some(json!({
        "dryRun": true,
        "status": "pending",
        "from": "2000-01-01T00:00:00Z",
        "to": "2999-01-01T00:00:00+02:00"
    })))
    .await
    .json();
    assert_eq!(dry_window["matched"], 3, "{dry_window}");
    let text = Request::builder()
        .method(Method::POST)
        .uri("/api/dlq/replay")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    t.raw(text)
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let dry = bulk(Some(json!({"dryRun": true, "limit": 2}))).await;
    assert_eq!(dry.status, StatusCode::OK);
    let dry = dry.json();
    assert_eq!(
        (dry["dryRun"].clone(), dry["matched"].clone()),
        (json!(true), json!(2))
    );
    assert_eq!(dry["eventIds"].as_array().unwrap().len(), 2);
    assert_eq!(
        t.get("/api/dlq/stats").await.json()["pendingCount"],
        6,
        "a dry run changes nothing"
    );

    let one = t.replay_job(json!({"aggregateId": ids[1]})).await;
    assert_eq!(
        (
            one["status"].clone(),
            one["matched"].clone(),
            one["processed"].clone(),
            one["replayed"].clone(),
            one["published"].clone()
        ),
        (json!("COMPLETED"), json!(1), json!(1), json!(1), json!(2)),
        "{one}"
    );

    let rest = t.replay_job(json!({})).await;
    assert_eq!(
        (
            rest["status"].clone(),
            rest["matched"].clone(),
            rest["replayed"].clone(),
            rest["published"].clone(),
            rest["failed"].clone()
        ),
        (json!("COMPLETED"), json!(2), json!(2), json!(4), json!(0)),
        "{rest}"
    );
    assert_eq!(rest["message"], "no matching unresolved record left");
    assert!(
        rest["finishedAt"].is_string() && rest["runner"].is_null(),
        "{rest}"
    );
    let jobs = t.get("/api/dlq/jobs").await.json();
    assert_eq!(jobs["totalElements"], 2);
    assert_eq!(jobs["content"][0]["id"], rest["id"], "newest first");
    let stats = t.get("/api/dlq/stats").await.json();
    assert_eq!(
        (
            stats["pendingCount"].clone(),
            stats["replayedCount"].clone()
        ),
        (json!(0), json!(6))
    );
    for id in &ids {
        t.eventually("every order confirmed in the read model", || async {
            (t.get(&format!("/api/orders/{id}")).await.json()["status"] == "CONFIRMED")
                .then_some(())
        })
        .await;
    }
}

impl TestApp {
    /// Parks one OrderCreated per customer (each its own sequence head)
    /// with the bus down, then brings the bus back unless `keep_down`.
    async fn park_heads(&self, n: usize, keep_down: bool) {
        self.call(Method::POST, "/api/test/bus/down", None, &[])
            .await;
        for i in 0..n {
            self.create(&format!("job-{i}")).await;
        }
        self.eventually("the events parked", || async {
            (self.get("/api/dlq/stats").await.json()["pendingCount"] == n).then_some(())
        })
        .await;
        if !keep_down {
            self.call(Method::POST, "/api/test/bus/up", None, &[]).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_replay_job_replays_nothing_more() {
    let t = test_app_with(|c| c.dlq_job_rate = 2.0).await;
    t.park_heads(6, false).await;
    let job = t.start_replay_job(json!({})).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["matched"], 6);
    // Progress shows while it runs.
    t.eventually("the job to make progress", || async {
        let j = t.job(&id).await;
        (j["status"] == "RUNNING" && j["processed"].as_u64().unwrap() >= 1).then_some(())
    })
    .await;
    let cancel = t
        .call(Method::DELETE, &format!("/api/dlq/jobs/{id}"), None, &[])
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.json());
    let cancelled = cancel.json();
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["message"], "cancelled by anonymous");
    // A head being replayed when the cancel came finishes; then nothing.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let replayed = t.get("/api/dlq/stats").await.json()["replayedCount"].clone();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = t.get("/api/dlq/stats").await.json();
    assert_eq!(
        stats["replayedCount"], replayed,
        "no replay after the cancel"
    );
    assert!(stats["pendingCount"].as_u64().unwrap() >= 3, "{stats}");
    assert_eq!(t.job(&id).await["status"], "CANCELLED");

    t.call(Method::DELETE, &format!("/api/dlq/jobs/{id}"), None, &[])
        .await
        .problem(StatusCode::CONFLICT);
    let unknown = "0190f1e2-0000-7000-8000-000000000000";
    t.call(
        Method::DELETE,
        &format!("/api/dlq/jobs/{unknown}"),
        None,
        &[],
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    t.get(&format!("/api/dlq/jobs/{unknown}"))
        .await
        .problem(StatusCode::NOT_FOUND);
    t.get("/api/dlq/jobs/not-a-job")
        .await
        .problem(StatusCode::NOT_FOUND);
    let actions: Vec<Value> = t
        .audit("")
        .await
        .iter()
        .filter(|e| e["target"] == id.as_str())
        .map(|e| json!([e["action"], e["result"]]))
        .collect();
    assert_eq!(
        actions,
        vec![
            json!(["DLQ_REPLAY_JOB_CANCEL", "409"]),
            json!(["DLQ_REPLAY_JOB_CANCEL", "CANCELLED"]),
            json!(["DLQ_REPLAY_JOB_CREATE", "RUNNING: 6 matched"]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_job_stops_by_itself_when_too_many_replays_fail() {
    let t = test_app().await;
    t.park_heads(7, true).await;
    let job = t.replay_job(json!({})).await;
    assert_eq!(
        (
            job["status"].clone(),
            job["processed"].clone(),
            job["failed"].clone(),
            job["replayed"].clone()
        ),
        (json!("STOPPED"), json!(5), json!(5), json!(0)),
        "{job}"
    );
    assert!(
        job["message"]
            .as_str()
            .unwrap()
            .contains("5 of 5 replays failed"),
        "{job}"
    );
    let stats = t.get("/api/dlq/stats").await.json();
    assert_eq!(stats["replayedCount"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_endpoints_are_404_when_switched_off() {
    let t = test_app_with(|c| c.test_endpoints = false).await;
    t.call(Method::POST, "/api/test/publish-event", None, &[])
        .await
        .problem(StatusCode::NOT_FOUND);
    t.get("/api/test/kafka-status")
        .await
        .problem(StatusCode::NOT_FOUND);
    t.call(Method::POST, "/api/test/bus/down", None, &[])
        .await
        .problem(StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------
// Malformed input: always a 4xx problem, never a 500 or plain text
// ---------------------------------------------------------------------------

fn raw_post(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut req = Request::builder().method(Method::POST).uri(uri);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    req.body(body.into()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400() {
    let t = test_app().await;
    for body in ["{\"customerId\":", "not json", "", "{} trailing"] {
        t.raw(raw_post("/api/orders", Some("application/json"), body))
            .await
            .problem(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_a_json_object_is_400() {
    let t = test_app().await;
    for body in ["[]", "\"order\"", "42", "null"] {
        t.raw(raw_post("/api/orders", Some("application/json"), body))
            .await
            .problem(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_content_type_is_415() {
    let t = test_app().await;
    let body = order_body("sam").to_string();
    t.raw(raw_post("/api/orders", None, body.clone()))
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    t.raw(raw_post("/api/orders", Some("text/plain"), body.clone()))
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let ok = t
        .raw(raw_post(
            "/api/orders",
            Some("application/json; charset=utf-8"),
            body,
        ))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);

    let id = ok.json()["id"].as_str().unwrap().to_owned();
    let req = Request::builder()
        .method(Method::PUT)
        .uri(format!("/api/orders/{id}/confirm"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("paymentId=1"))
        .unwrap();
    t.raw(req).await.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413() {
    let t = test_app_with(|c| c.max_body_bytes = 2048).await;
    let mut body = order_body("tom");
    body["padding"] = json!("x".repeat(4096));
    t.raw(raw_post(
        "/api/orders",
        Some("application/json"),
        body.to_string(),
    ))
    .await
    .problem(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_accepted_and_ignored() {
    let t = test_app().await;
    let mut body = order_body("uma");
    body["coupon"] = json!("FREE");
    let r = t.call(Method::POST, "/api/orders", Some(body), &[]).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.json().get("coupon").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_id_that_is_not_a_uuid_is_400() {
    let t = test_app().await;
    for uri in [
        "/api/orders/not-a-uuid",
        "/api/orders/123/events",
        "/api/orders/00000000000000000000000000000000",
    ] {
        t.get(uri).await.problem(StatusCode::BAD_REQUEST);
    }
    t.put("/api/orders/xyz/confirm?paymentId=p")
        .await
        .problem(StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_route_is_a_404_problem() {
    let t = test_app().await;
    let p = t
        .get("/api/nothing-here")
        .await
        .problem(StatusCode::NOT_FOUND);
    assert_eq!(p["type"], "https://order-service.dev/problems/not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_a_405_problem_with_allow() {
    let t = test_app().await;
    let r = t.call(Method::DELETE, "/api/orders", None, &[]).await;
    let p = r.problem(StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.header("allow").is_some_and(|a| a.contains("POST")));
    assert_eq!(
        p["type"],
        "https://order-service.dev/problems/method-not-allowed"
    );
    t.get("/api/dlq/replay/x")
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED);
}

// ---------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_liveness_and_readiness_are_up_on_a_fresh_service() {
    let t = test_app().await;
    let h = t.get("/actuator/health").await;
    assert_eq!(h.status, StatusCode::OK);
    let h = h.json();
    assert_eq!(h["status"], "UP", "{h}");
    for c in ["database", "bus", "readModel"] {
        assert_eq!(h["components"][c]["status"], "UP", "{c}");
    }
    assert_eq!(h["components"]["outbox"]["pending"], 0);
    assert!(h["components"]["outbox"]["oldestAgeSeconds"].is_number());
    assert_eq!(t.get("/health/live").await.status, StatusCode::OK);
    assert_eq!(t.get("/health/ready").await.json()["status"], "UP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let t = test_app().await;
    t.create("vic").await;
    let r = t.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.bytes.clone()).unwrap();
    for name in [
        "orders_commands_accepted_total 1",
        "orders_events_appended_total 1",
        "orders_outbox_pending",
        "orders_dlq_records{status=\"PENDING\"}",
        "orders_projector_lag_events",
        "orders_bus_down 0",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_can_be_rebuilt_from_the_event_store() {
    let t = test_app().await;
    let id = t.create("wes").await["id"].as_str().unwrap().to_owned();
    t.put(&format!("/api/orders/{id}/cancel")).await;
    t.create("wes").await;
    let r = t
        .call(Method::POST, "/api/admin/read-model/rebuild", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let report = r.json();
    assert_eq!(report["events"], 3);
    assert_eq!(report["orders"], 2);
    assert!(report["eventsPerSecond"].is_u64() && report["millis"].is_u64());
    let page = t.get("/api/orders/customer/wes").await.json();
    assert_eq!(page["totalElements"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let t = test_app().await;
    let r = t.get("/v3/api-docs").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected = [
        ("/api/orders", "post"),
        ("/api/orders", "get"),
        ("/api/orders/{id}", "get"),
        ("/api/orders/{id}/events", "get"),
        ("/api/orders/customer/{customerId}", "get"),
        ("/api/orders/{id}/confirm", "put"),
        ("/api/orders/{id}/cancel", "put"),
        ("/api/orders/{id}/prepare", "put"),
        ("/api/orders/{id}/ready", "put"),
        ("/api/orders/{id}/deliver", "put"),
        ("/api/dlq/stats", "get"),
        ("/api/dlq/pending", "get"),
        ("/api/dlq/event/{eventId}", "get"),
        ("/api/dlq/replay/{eventId}", "post"),
        ("/api/dlq/replay", "post"),
        ("/api/dlq/reset/{eventId}", "put"),
        ("/api/dlq/skip/{eventId}", "post"),
        ("/api/dlq/status/{status}", "get"),
        ("/api/dlq/audit", "get"),
        ("/api/dlq/jobs", "get"),
        ("/api/dlq/jobs/{jobId}", "get"),
        ("/api/dlq/jobs/{jobId}", "delete"),
        ("/api/dlq/{eventId}/revisions", "get"),
        ("/api/dlq/{eventId}/revisions", "post"),
        ("/api/dlq/{eventId}/revisions/{revision}/approve", "post"),
        ("/api/dlq/{eventId}/revisions/{revision}/reject", "post"),
        ("/api/dlq/search", "get"),
        ("/api/dlq/export", "get"),
        ("/api/dlq/import", "post"),
        ("/api/test/publish-event", "post"),
        ("/api/test/kafka-status", "get"),
        ("/api/test/bus/down", "post"),
        ("/api/test/bus/up", "post"),
        ("/api/admin/read-model/rebuild", "post"),
        ("/actuator/health", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/actuator/health/liveness", "get"),
        ("/actuator/health/readiness", "get"),
        ("/metrics", "get"),
        ("/v3/api-docs", "get"),
        ("/swagger-ui", "get"),
        ("/swagger-ui.html", "get"),
        ("/swagger-ui/", "get"),
        ("/swagger-ui/assets/{file}", "get"),
        ("/dashboard", "get"),
        ("/dashboard/", "get"),
        ("/dashboard/app.js", "get"),
        ("/dashboard/app.css", "get"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in expected {
        assert!(paths[path][method].is_object(), "{method} {path}");
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, expected.len(), "no undocumented extras");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_is_served_offline() {
    let t = test_app().await;
    let page = t.get("/swagger-ui").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8(page.bytes.clone()).unwrap();
    assert!(html.contains("/swagger-ui/assets/swagger-ui-bundle.js"));
    assert!(html.contains("/v3/api-docs"));
    assert!(!html.contains("https://"), "no CDN");
    let js = t.get("/swagger-ui/assets/swagger-ui-bundle.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.bytes.len() > 100_000);
    let css = t.get("/swagger-ui/assets/swagger-ui.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    t.get("/swagger-ui/assets/other.js")
        .await
        .problem(StatusCode::NOT_FOUND);
    let redirect = t.get("/swagger-ui.html").await;
    assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.header("location"), Some("/swagger-ui"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_shuts_down_its_workers_on_request() {
    let t = test_app().await;
    let TestApp { app, router, _dir } = t;
    drop(router);
    tokio::time::timeout(Duration::from_secs(10), app.workers.stop())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_app_serves_on_an_ephemeral_port_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_tests(dir.path()).unwrap();
    let running = startup::spawn_app(config).await.unwrap();
    assert_ne!(running.addr.port(), 0);
    let stream = tokio::net::TcpStream::connect(running.addr).await;
    assert!(stream.is_ok());
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------
// DLQ: skip
// ---------------------------------------------------------------------------

impl TestApp {
    async fn post(&self, uri: &str, body: Option<Value>) -> Reply {
        self.call(Method::POST, uri, body, &[]).await
    }

    /// Parks the events of one order (create, confirm, ...) with the bus
    /// down and returns the parked records in version order.
    async fn parked_sequence(&self, customer: &str, steps: &[&str]) -> Vec<Value> {
        self.post("/api/test/bus/down", None).await;
        let id = self.create(customer).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for step in steps {
            self.put(&format!("/api/orders/{id}/{step}")).await;
        }
        let n = 1 + steps.len();
        let page = self
            .eventually("the order's events to be parked", || async {
                let v = self.get("/api/dlq/pending?size=100").await.json();
                let mine: Vec<Value> = v["content"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["aggregateId"] == id.as_str())
                    .cloned()
                    .collect();
                (mine.len() == n).then_some(mine)
            })
            .await;
        let mut records = page;
        records.sort_by_key(|r| r["version"].as_u64());
        records
    }
}

fn event_id_of(record: &Value) -> String {
    record["eventId"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_a_sequence_head_makes_the_next_held_event_the_head() {
    let t = test_app().await;
    let seq = t
        .parked_sequence("skip-head", &["confirm?paymentId=p", "prepare"])
        .await;
    let (head, second, third) = (
        event_id_of(&seq[0]),
        event_id_of(&seq[1]),
        event_id_of(&seq[2]),
    );
    assert_eq!(seq[1]["blockedBy"], head.as_str());

    // A reason is required: 1 to 500 characters, in a JSON object.
    let uri = format!("/api/dlq/skip/{head}");
    t.post(&uri, None).await.problem(StatusCode::BAD_REQUEST);
    for body in [
        json!({}),
        json!({"reason": ""}),
        json!({"reason": "   "}),
        json!({"reason": 5}),
        json!({"reason": "x".repeat(501)}),
        json!({"reason": "ok", "bogus": 1}),
        json!(["reason"]),
    ] {
        t.post(&uri, Some(body))
            .await
            .problem(StatusCode::BAD_REQUEST);
    }
    assert_eq!(t.get("/api/dlq/stats").await.json()["skippedCount"], 0);
    t.post("/api/dlq/skip/no-such-event", Some(json!({"reason": "x"})))
        .await
        .problem(StatusCode::NOT_FOUND);

    let r = t
        .post(
            &uri,
            Some(json!({"reason": "poison: customer asked to drop it"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let out = r.json();
    assert_eq!(out["status"], "SKIPPED");
    assert_eq!(out["eventId"], head.as_str());
    assert_eq!(out["newHead"], second.as_str());
    let rec = t.get(&format!("/api/dlq/event/{head}")).await.json();
    assert_eq!(rec["status"], "SKIPPED");
    assert_eq!(rec["replayResult"], "poison: customer asked to drop it");
    assert_eq!(rec["replayAttempts"], 0);
    let new_head = t.get(&format!("/api/dlq/event/{second}")).await.json();
    assert_eq!(new_head["blockedBy"], Value::Null);
    assert_eq!(
        t.get(&format!("/api/dlq/event/{third}")).await.json()["blockedBy"],
        second.as_str()
    );
    let stats = t.get("/api/dlq/stats").await.json();
    assert_eq!(
        (
            stats["skippedCount"].clone(),
            stats["pendingCount"].clone(),
            stats["blockedCount"].clone()
        ),
        (json!(1), json!(2), json!(1))
    );
    let skipped = t.get("/api/dlq/status/SKIPPED").await.json();
    assert_eq!(skipped["content"][0]["eventId"], head.as_str());

    // Skipped once: a second skip is refused.
    t.post(&uri, Some(json!({"reason": "again"})))
        .await
        .problem(StatusCode::CONFLICT);

    // The sequence continues from the new head.
    t.post("/api/test/bus/up", None).await;
    let r = t.post(&format!("/api/dlq/replay/{second}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["status"], "REPLAYED");
    assert_eq!(r.json()["published"], 2);
    let stats = t.get("/api/dlq/stats").await.json();
    assert_eq!(
        (
            stats["pendingCount"].clone(),
            stats["replayedCount"].clone()
        ),
        (json!(0), json!(2))
    );
    // A replayed record cannot be skipped; a skipped one is not replayed.
    t.post(
        &format!("/api/dlq/skip/{second}"),
        Some(json!({"reason": "late"})),
    )
    .await
    .problem(StatusCode::CONFLICT);
    let r = t.post(&uri.replace("skip", "replay"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "SKIPPED");
    assert_eq!(r.json()["published"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_a_held_event_removes_it_from_its_sequence() {
    let t = test_app().await;
    let seq = t
        .parked_sequence("skip-held", &["confirm?paymentId=p", "prepare"])
        .await;
    let (head, second, third) = (
        event_id_of(&seq[0]),
        event_id_of(&seq[1]),
        event_id_of(&seq[2]),
    );
    let r = t
        .post(
            &format!("/api/dlq/skip/{third}"),
            Some(json!({"reason": "not needed"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["newHead"], Value::Null);
    assert_eq!(
        t.get(&format!("/api/dlq/event/{second}")).await.json()["blockedBy"],
        head.as_str(),
        "the rest still wait behind the head"
    );
    t.post("/api/test/bus/up", None).await;
    let r = t.post(&format!("/api/dlq/replay/{head}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["published"], 2, "the head and the one still held");
    assert_eq!(
        t.get(&format!("/api/dlq/event/{third}")).await.json()["status"],
        "SKIPPED"
    );
}

// ---------------------------------------------------------------------------
// DLQ: audit log
// ---------------------------------------------------------------------------

impl TestApp {
    /// Every audit entry (newest first) matching `query`.
    async fn audit(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/dlq/audit?size=100&{query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        r.json()["content"].as_array().unwrap().clone()
    }
}

fn summary(entries: &[Value]) -> Vec<(String, String, Option<String>)> {
    entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["result"].as_str().unwrap().to_owned(),
                e["target"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dlq_test_and_admin_action_is_audited_refusals_included() {
    let t = test_app().await;
    assert!(t.audit("").await.is_empty());

    t.post("/api/test/bus/down", None).await;
    let parked = t.post("/api/test/publish-event", None).await.json();
    let ev = parked["eventId"].as_str().unwrap().to_owned();
    assert_eq!(
        t.post(&format!("/api/dlq/replay/{ev}"), None).await.status,
        StatusCode::BAD_GATEWAY
    );
    t.put(&format!("/api/dlq/reset/{ev}")).await;
    t.put(&format!("/api/dlq/reset/{ev}"))
        .await
        .problem(StatusCode::CONFLICT);
    t.post("/api/dlq/replay/unknown-event", None)
        .await
        .problem(StatusCode::NOT_FOUND);
    let long = "x".repeat(300);
    t.post(&format!("/api/dlq/replay/{long}"), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    t.post("/api/test/bus/up", None).await;
    t.post("/api/dlq/replay", Some(json!({"dryRun": true, "limit": 5})))
        .await;
    let bulk = t.replay_job(json!({})).await;
    assert_eq!(bulk["replayed"], 1, "{bulk}");
    let job_id = bulk["id"].as_str().unwrap().to_owned();
    t.post(
        &format!("/api/dlq/skip/{ev}"),
        Some(json!({"reason": "late"})),
    )
    .await
    .problem(StatusCode::CONFLICT);
    t.post("/api/dlq/skip/unknown-event", Some(json!({"reason": "r"})))
        .await
        .problem(StatusCode::NOT_FOUND);
    let second = t.post("/api/test/publish-event", None).await.json();
    let ev2 = second["eventId"].as_str().unwrap().to_owned();
    t.post("/api/admin/read-model/rebuild", None).await;

    let entries = t.audit("").await;
    let s = |a: &str, r: &str, target: Option<&str>| {
        (a.to_owned(), r.to_owned(), target.map(str::to_owned))
    };
    let long_target: String = long.chars().take(200).collect();
    assert_eq!(
        summary(&entries),
        [
            s("TEST_BUS_DOWN", "OK", None),
            s("TEST_PUBLISH_EVENT", "PARKED", Some(&ev)),
            s("DLQ_REPLAY", "FAILED", Some(&ev)),
            s("DLQ_RESET", "PENDING", Some(&ev)),
            s("DLQ_RESET", "409", Some(&ev)),
            s("DLQ_REPLAY", "404", Some("unknown-event")),
            s("DLQ_REPLAY", "404", Some(&long_target)),
            s("TEST_BUS_UP", "OK", None),
            s("DLQ_BULK_REPLAY", "DRY_RUN: 1 matched", None),
            s("DLQ_REPLAY_JOB_CREATE", "RUNNING: 1 matched", Some(&job_id)),
            s("DLQ_REPLAY", "REPLAYED", Some(&ev)),
            s("DLQ_SKIP", "409", Some(&ev)),
            s("DLQ_SKIP", "404", Some("unknown-event")),
            s("TEST_PUBLISH_EVENT", "PUBLISHED", Some(&ev2)),
            s(
                "READ_MODEL_REBUILD",
                entries[0]["result"].as_str().unwrap(),
                None
            ),
        ]
    );
    assert!(entries[0]["result"].as_str().unwrap().starts_with("OK: "));
    for e in &entries {
        assert_eq!(e["principal"], "anonymous", "{e}");
        assert_eq!(e["role"], "admin", "{e}");
        assert!(e["id"].as_i64().unwrap() > 0);
        assert!(
            e["at"].as_str().is_some() && e["parameters"].is_object(),
            "{e}"
        );
    }
    let dry = entries
        .iter()
        .find(|e| e["result"].as_str().unwrap().starts_with("DRY_RUN"))
        .unwrap();
    assert_eq!(dry["parameters"]["dryRun"], true);
    assert_eq!(dry["parameters"]["limit"], 5);
    let bulk_one = entries
        .iter()
        .find(|e| e["action"] == "DLQ_REPLAY" && e["result"] == "REPLAYED")
        .unwrap();
    assert_eq!(bulk_one["parameters"]["bulk"], true);
    assert_eq!(bulk_one["parameters"]["jobId"], job_id.as_str());
    let skip = entries.iter().find(|e| e["action"] == "DLQ_SKIP").unwrap();
    assert_eq!(
        skip["parameters"]["reason"],
        "unknown-event".replace("unknown-event", "r")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_filters_by_principal_action_target_and_time_and_pages() {
    let t = test_app().await;
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    t.post("/api/test/bus/down", None).await;
    let ev = t.post("/api/test/publish-event", None).await.json()["eventId"]
        .as_str()
        .unwrap()
        .to_owned();
    t.put(&format!("/api/dlq/reset/{ev}")).await; // 409: PENDING
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    t.post("/api/test/bus/up", None).await;
    t.post("/api/test/bus/down", None).await;
    t.post("/api/test/bus/up", None).await;
    let after = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    let ts = |t: chrono::DateTime<chrono::Utc>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .replace('+', "%2B")
    };

    assert_eq!(t.audit("").await.len(), 6);
    assert_eq!(t.audit("principal=anonymous").await.len(), 6);
    assert!(t.audit("principal=someone-else").await.is_empty());
    let downs = t.audit("action=TEST_BUS_DOWN").await;
    assert_eq!(downs.len(), 2);
    assert!(downs.iter().all(|e| e["action"] == "TEST_BUS_DOWN"));
    assert_eq!(
        t.audit("action=test_bus_up").await.len(),
        2,
        "case-insensitive"
    );
    let on_ev = t.audit(&format!("target={ev}")).await;
    assert_eq!(
        summary(&on_ev),
        [
            (
                "TEST_PUBLISH_EVENT".to_owned(),
                "PARKED".to_owned(),
                Some(ev.clone())
            ),
            ("DLQ_RESET".to_owned(), "409".to_owned(), Some(ev.clone())),
        ]
    );
    assert_eq!(
        t.audit(&format!("action=DLQ_RESET&target={ev}"))
            .await
            .len(),
        1
    );
    // Time range: from inclusive, to exclusive.
    assert_eq!(t.audit(&format!("from={}", ts(before))).await.len(), 6);
    assert_eq!(t.audit(&format!("to={}", ts(middle))).await.len(), 3);
    assert_eq!(t.audit(&format!("from={}", ts(middle))).await.len(), 3);
    assert_eq!(
        t.audit(&format!(
            "from={}&to={}&action=TEST_BUS_UP",
            ts(middle),
            ts(after)
        ))
        .await
        .len(),
        2
    );
    assert!(t.audit(&format!("from={}", ts(after))).await.is_empty());
    assert_eq!(
        t.audit("from=2000-01-01T00:00:00%2B02:00").await.len(),
        6,
        "offsets are accepted"
    );

    // Paging: newest first, the Page shape of every list.
    let all = t.audit("").await;
    let p0 = t.get("/api/dlq/audit?page=0&size=4").await.json();
    assert_eq!(
        (
            p0["page"].clone(),
            p0["size"].clone(),
            p0["totalElements"].clone(),
            p0["totalPages"].clone()
        ),
        (json!(0), json!(4), json!(6), json!(2))
    );
    let p1 = t.get("/api/dlq/audit?page=1&size=4").await.json();
    let paged: Vec<Value> = p0["content"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p1["content"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(paged, all);
    assert_eq!(all[0]["action"], "TEST_BUS_UP");
    assert!(all
        .windows(2)
        .all(|w| w[0]["at"].as_str() >= w[1]["at"].as_str()
            && w[0]["id"].as_i64() > w[1]["id"].as_i64()));
    let filtered = t
        .get("/api/dlq/audit?action=TEST_BUS_DOWN&size=1")
        .await
        .json();
    assert_eq!(
        (
            filtered["totalElements"].clone(),
            filtered["totalPages"].clone()
        ),
        (json!(2), json!(2))
    );

    // Bad parameters: 400 problems.
    for q in [
        "action=BOGUS",
        "from=yesterday",
        "to=2024-13-01T00:00:00Z",
        "from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z",
        "page=-1",
        "size=0",
        "size=101",
        &format!("principal={}", "p".repeat(256)),
    ] {
        t.get(&format!("/api/dlq/audit?{q}"))
            .await
            .problem(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_changes_or_deletes_audit_entries() {
    let t = test_app().await;
    t.post("/api/test/bus/down", None).await;
    t.post("/api/test/bus/up", None).await;
    let before = t.audit("").await;
    assert_eq!(before.len(), 2);
    let id = before[0]["id"].as_i64().unwrap();
    for method in [Method::DELETE, Method::PUT, Method::POST, Method::PATCH] {
        let r = t
            .call(method.clone(), "/api/dlq/audit", Some(json!({})), &[])
            .await;
        r.problem(StatusCode::METHOD_NOT_ALLOWED);
        for uri in [format!("/api/dlq/audit/{id}"), "/api/audit".to_owned()] {
            let r = t.call(method.clone(), &uri, Some(json!({})), &[]).await;
            assert!(
                r.status == StatusCode::NOT_FOUND || r.status == StatusCode::METHOD_NOT_ALLOWED,
                "{method} {uri}: {}",
                r.status
            );
        }
    }
    // Reading and acting again only appends.
    t.post("/api/test/bus/down", None).await;
    let after = t.audit("").await;
    assert_eq!(after.len(), 3);
    assert_eq!(&after[1..], &before[..], "earlier entries unchanged");
}
