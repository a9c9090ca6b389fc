//! DLQ search, NDJSON export and import over HTTP, on the real SQLite
//! service: filters and keyset pages, payload masking below operator, an
//! export imported into a second instance (marked, audited, duplicates
//! skipped), roles, and every refusal.

// Test helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::TimeDelta;
use order_core::app::Role;
use order_core::domain::now;
use order_core::ports::{DlqSource, NewDlqRecord};
use order_core::testkit::fixtures::create;
use order_service::config::{ApiKey, Config};
use serde_json::{json, Value};
use support::router::{test_app_with, Reply, TestApp};
use uuid::Uuid;

const VIEWER_KEY: &str = "viewer-key-0123456789";
const OPERATOR_KEY: &str = "operator-key-0123456789";
const ADMIN_KEY: &str = "admin-key-0123456789abc";

fn with_keys(c: &mut Config) {
    c.auth.api_keys = vec![
        ApiKey::new("the-viewer", Role::Viewer, VIEWER_KEY),
        ApiKey::new("the-operator", Role::Operator, OPERATOR_KEY),
        ApiKey::new("the-admin", Role::Admin, ADMIN_KEY),
    ];
}

/// A parked record of `order`, `i` seconds old; its message names
/// `customer` when given (as an OrderCreated does).
fn record(
    order: &str,
    event_type: &str,
    customer: Option<&str>,
    reason: &str,
    i: i64,
) -> NewDlqRecord {
    let event_id = Uuid::now_v7().to_string();
    let data = customer.map_or(json!({}), |c| json!({ "customerId": c }));
    NewDlqRecord {
        original_event: json!({ "eventId": event_id, "aggregateId": order, "data": data })
            .to_string(),
        event_id,
        aggregate_id: order.to_owned(),
        event_type: event_type.to_owned(),
        version: Some(1),
        failure_reason: reason.to_owned(),
        failure_class: None,
        failure_time: now() - TimeDelta::seconds(i),
        source: DlqSource::Publish,
        blocked_by: None,
        topic: "order-events".to_owned(),
        origin: None,
        consumer_group: None,
        imported: None,
    }
}

/// Seven records: three orders, two customers, assorted reasons.
async fn seeded() -> TestApp {
    let t = test_app_with(with_keys).await;
    let records = [
        record("o-1", "OrderCreated", Some("c-1"), "Broker DOWN", 1),
        record("o-1", "OrderConfirmed", None, "held: 100% full", 2),
        record("o-2", "OrderCreated", Some("c-2"), "message too large", 3),
        record("o-2", "OrderConfirmed", None, "broker down again", 4),
        record("o-3", "OrderConfirmed", None, "timeout", 5),
        record("o-3", "OrderPrepared", None, "timeout", 6),
        record("o-4", "OrderPrepared", None, "a_b", 7),
    ];
    assert!(t
        .app
        .state
        .dlq_store
        .insert_new(&records)
        .await
        .unwrap()
        .is_empty());
    t
}

impl TestApp {
    async fn as_key(&self, method: Method, uri: &str, key: &str) -> Reply {
        let auth = format!("Bearer {key}");
        self.call(method, uri, None, &[("authorization", auth.as_str())])
            .await
    }

    async fn found(&self, query: &str) -> Value {
        let uri = format!("/api/dlq/search?{query}");
        let r = self.as_key(Method::GET, &uri, OPERATOR_KEY).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.json());
        r.json()
    }

    /// The order ids of the records a search finds, in answer order.
    async fn orders(&self, query: &str) -> Vec<String> {
        let page = self.found(&format!("{query}&size=100")).await;
        page["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}:{}",
                    r["aggregateId"].as_str().unwrap(),
                    r["eventType"].as_str().unwrap()
                )
            })
            .collect()
    }

    async fn import(&self, body: &str, key: &str, content_type: &str) -> Reply {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/api/dlq/import")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", content_type)
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.raw(req).await
    }

    async fn audit(&self, action: &str) -> Vec<Value> {
        let uri = format!("/api/dlq/audit?action={action}");
        let r = self.as_key(Method::GET, &uri, ADMIN_KEY).await;
        assert_eq!(r.status, StatusCode::OK);
        r.json()["content"].as_array().unwrap().clone()
    }

    async fn total(&self) -> u64 {
        let r = self.as_key(Method::GET, "/api/dlq/stats", ADMIN_KEY).await;
        r.json()["totalCount"].as_u64().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_narrows_the_search_newest_failure_first() {
    let t = seeded().await;
    let all = t.orders("").await;
    assert_eq!(all.len(), 7);
    assert_eq!(all[0], "o-1:OrderCreated", "newest failure first");
    for (query, want) in [
        (
            "q=bRoKeR%20down",
            vec!["o-1:OrderCreated", "o-2:OrderConfirmed"],
        ),
        ("q=100%25", vec!["o-1:OrderConfirmed"]),
        ("q=a_b", vec!["o-4:OrderPrepared"]),
        (
            "eventType=OrderPrepared",
            vec!["o-3:OrderPrepared", "o-4:OrderPrepared"],
        ),
        (
            "aggregateId=o-2",
            vec!["o-2:OrderCreated", "o-2:OrderConfirmed"],
        ),
        (
            "aggregateId=o-3&q=TIMEOUT&eventType=OrderConfirmed",
            vec!["o-3:OrderConfirmed"],
        ),
        (
            "status=pending&source=PUBLISH&eventType=OrderCreated",
            vec!["o-1:OrderCreated", "o-2:OrderCreated"],
        ),
        ("status=FAILED", vec![]),
        ("source=consumer", vec![]),
    ] {
        assert_eq!(t.orders(query).await, want, "{query}");
    }
    // The time range: from inclusive, to exclusive.
    let records = t.found("size=100").await;
    let time = |i: usize| {
        records["content"][i]["failureTime"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (from, to) = (time(4), time(1));
    let q = format!(
        "from={}&to={}",
        from.replace('+', "%2B"),
        to.replace('+', "%2B")
    );
    assert_eq!(t.orders(&q).await.len(), 3, "{q}: records 4, 3 and 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_search_finds_the_events_of_the_customers_orders() {
    let t = seeded().await;
    // o-3 is c-1's too, known only to the read model (its OrderCreated
    // was published); o-1's creation is parked and names c-1.
    let mut order = create("c-1", "r-1", now()).state;
    order.id = Uuid::now_v7();
    let o3 = order.id.to_string();
    let more = [record(&o3, "OrderConfirmed", None, "timeout", 8)];
    t.app.state.dlq_store.insert_new(&more).await.unwrap();
    t.app
        .state
        .orders
        .read_model
        .upsert_many(&[order])
        .await
        .unwrap();
    assert_eq!(
        t.orders("customerId=c-1").await,
        vec![
            "o-1:OrderCreated",
            "o-1:OrderConfirmed",
            &format!("{o3}:OrderConfirmed")
        ]
    );
    assert_eq!(
        t.orders("customerId=c-1&eventType=OrderConfirmed&q=full")
            .await,
        vec!["o-1:OrderConfirmed"]
    );
    assert_eq!(t.orders("customerId=nobody").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_pages_walk_once_and_a_text_search_is_not_counted() {
    let t = seeded().await;
    let all = t.found("size=100").await["content"].clone();
    let mut walked = Vec::new();
    let mut uri = "/api/dlq/search?size=3".to_owned();
    for _ in 0..5 {
        let r = t.as_key(Method::GET, &uri, OPERATOR_KEY).await;
        let page = r.json();
        assert_eq!(page["totalElements"], 7, "{page}");
        walked.extend(page["content"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => uri = format!("/api/dlq/search?size=3&after={c}"),
            None => break,
        }
    }
    assert_eq!(Value::Array(walked), all);
    let text = t.found("q=o&size=1").await;
    assert!(
        text["totalElements"].is_null() && text["totalPages"].is_null(),
        "{text}"
    );
    assert!(text["nextCursor"].is_string(), "{text}");
    let typed = t.found("eventType=OrderPrepared&size=1").await;
    assert_eq!(
        (
            typed["totalElements"].as_u64(),
            typed["totalPages"].as_u64()
        ),
        (Some(2), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_searches_without_the_original_event() {
    let t = seeded().await;
    let viewer = t
        .as_key(Method::GET, "/api/dlq/search?q=broker", VIEWER_KEY)
        .await;
    assert_eq!(viewer.status, StatusCode::OK);
    let records = viewer.json()["content"].as_array().unwrap().clone();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.get("originalEvent").is_none()));
    let operator = t.found("q=broker").await;
    assert!(operator["content"][0]["originalEvent"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_search_parameters_answer_400() {
    let t = seeded().await;
    let long = "x".repeat(256);
    for query in [
        "status=BOGUS".to_owned(),
        "status=%20PENDING".to_owned(),
        "source=ELSEWHERE".to_owned(),
        "from=yesterday".to_owned(),
        "from=".to_owned(),
        "to=2024-13-01T00:00:00Z".to_owned(),
        "from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z".to_owned(),
        format!("q={long}"),
        format!("aggregateId={}", "a".repeat(256)),
        "after=garbage".to_owned(),
        "size=0".to_owned(),
    ] {
        for path in ["/api/dlq/search", "/api/dlq/export"] {
            let uri = format!("{path}?{query}");
            let r = t.as_key(Method::GET, &uri, OPERATOR_KEY).await;
            if path.ends_with("export") && (query.starts_with("after") || query.starts_with("size"))
            {
                // Not parameters of an export: ignored.
                assert_eq!(r.status, StatusCode::OK, "{uri}");
                continue;
            }
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.json());
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
        }
    }
    for limit in ["0", "100001", "-1", "x"] {
        let uri = format!("/api/dlq/export?limit={limit}");
        let r = t.as_key(Method::GET, &uri, OPERATOR_KEY).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imports_into_another_instance_marked_and_audited() {
    let source = seeded().await;
    let r = source
        .as_key(
            Method::GET,
            "/api/dlq/export?eventType=OrderConfirmed",
            OPERATOR_KEY,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let file = String::from_utf8(r.bytes.clone()).unwrap();
    let lines: Vec<Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["originalEvent"].is_string() && l["eventType"] == "OrderConfirmed"));
    let exported = source.audit("DLQ_EXPORT").await;
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0]["principal"], "the-operator");
    assert_eq!(
        exported[0]["parameters"]["filter"]["eventType"],
        "OrderConfirmed"
    );

    let limited = source
        .as_key(Method::GET, "/api/dlq/export?limit=2", OPERATOR_KEY)
        .await;
    assert_eq!(String::from_utf8(limited.bytes).unwrap().lines().count(), 2);

    let target = test_app_with(with_keys).await;
    let r = target
        .import(&file, ADMIN_KEY, "application/x-ndjson")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["imported"], 3);
    assert_eq!(r.json()["skipped"], json!([]));
    for line in &lines {
        let id = line["eventId"].as_str().unwrap();
        let uri = format!("/api/dlq/event/{id}");
        let rec = target.as_key(Method::GET, &uri, ADMIN_KEY).await.json();
        assert_eq!(rec["status"], "PENDING");
        assert_eq!(rec["importedBy"], "the-admin");
        assert!(rec["importedAt"].is_string());
        assert!(rec["blockedBy"].is_null());
        for field in [
            "aggregateId",
            "eventType",
            "version",
            "originalEvent",
            "failureReason",
            "failureTime",
            "source",
            "topic",
        ] {
            assert_eq!(rec[field], line[field], "{field}");
        }
    }
    let imported = target.audit("DLQ_IMPORT").await;
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0]["principal"], "the-admin");
    assert_eq!(imported[0]["parameters"]["imported"], 3);

    // Again: every event id is known; nothing changes.
    let again = target
        .import(&file, ADMIN_KEY, "application/x-ndjson; charset=utf-8")
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["imported"], 0);
    assert_eq!(again.json()["skipped"].as_array().unwrap().len(), 3);
    assert_eq!(target.total().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_import_line_writes_nothing() {
    let source = seeded().await;
    let file = String::from_utf8(
        source
            .as_key(Method::GET, "/api/dlq/export", OPERATOR_KEY)
            .await
            .bytes,
    )
    .unwrap();
    let mut lines: Vec<&str> = file.lines().collect();
    lines.insert(2, "{\"eventId\": 1}");
    let target = test_app_with(with_keys).await;
    let r = target
        .import(&lines.join("\n"), ADMIN_KEY, "application/x-ndjson")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.starts_with("line 3:"), "{detail}");
    assert_eq!(target.total().await, 0, "nothing was written");
    let audited = target.audit("DLQ_IMPORT").await;
    assert_eq!(audited[0]["result"], "400");

    let r = target.import(&file, ADMIN_KEY, "application/json").await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(target.total().await, 0);
    let empty = target.import("", ADMIN_KEY, "application/x-ndjson").await;
    assert_eq!(
        (empty.status, empty.json()["imported"].as_u64()),
        (StatusCode::OK, Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_needs_an_operator_and_import_an_admin() {
    let t = seeded().await;
    let r = t.as_key(Method::GET, "/api/dlq/export", VIEWER_KEY).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t.as_key(Method::GET, "/api/dlq/search", VIEWER_KEY).await;
    assert_eq!(r.status, StatusCode::OK);
    for key in [VIEWER_KEY, OPERATOR_KEY] {
        let r = t.import("", key, "application/x-ndjson").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let r = t.call(Method::GET, "/api/dlq/search", None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
