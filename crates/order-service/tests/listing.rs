//! The listings' keyset pages over HTTP: `after=` walks every record,
//! audit entry and replay job once, the last page's `nextCursor` is null,
//! and a cursor that is garbled or from another listing answers 400.

// Test helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod support;

use axum::http::{Method, StatusCode};
use chrono::TimeDelta;
use order_core::domain::now;
use order_core::ports::{DlqSource, NewDlqRecord};
use serde_json::{json, Value};
use support::router::{test_app_with, TestApp};
use uuid::Uuid;

/// A parked publish failure; three records share each failure time.
fn record(i: i64) -> NewDlqRecord {
    let event_id = Uuid::now_v7().to_string();
    NewDlqRecord {
        original_event: json!({ "eventId": event_id }).to_string(),
        event_id,
        aggregate_id: format!("order-{i}"),
        event_type: "OrderCreated".to_owned(),
        version: Some(1),
        failure_reason: "publish failed after retries: retryable: broker down".to_owned(),
        failure_class: None,
        failure_time: now() - TimeDelta::seconds(i / 3),
        source: DlqSource::Publish,
        blocked_by: None,
        topic: "order-events".to_owned(),
        origin: None,
        consumer_group: None,
        imported: None,
    }
}

impl TestApp {
    async fn ok(&self, uri: &str) -> Value {
        let r = self.call(Method::GET, uri, None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.json());
        r.json()
    }

    /// Every row of `listing` (a path with its query), walked `size` at a
    /// time with `after=`.
    async fn walk(&self, listing: &str, size: usize) -> Vec<Value> {
        let sep = if listing.contains('?') { '&' } else { '?' };
        let mut rows = Vec::new();
        let mut uri = format!("{listing}{sep}size={size}");
        for _ in 0..50 {
            let page = self.ok(&uri).await;
            let content = page["content"].as_array().unwrap();
            assert!(content.len() <= size, "{page}");
            rows.extend(content.iter().cloned());
            match page["nextCursor"].as_str() {
                None => {
                    assert!(page["nextCursor"].is_null(), "{page}");
                    return rows;
                }
                Some(cursor) => {
                    assert_eq!(content.len(), size, "only the last page is short");
                    uri = format!("{listing}{sep}size={size}&after={cursor}");
                }
            }
        }
        panic!("{listing}: the walk did not end");
    }

    /// The whole listing in one page.
    async fn all(&self, listing: &str) -> Vec<Value> {
        let sep = if listing.contains('?') { '&' } else { '?' };
        let page = self.ok(&format!("{listing}{sep}size=100")).await;
        assert!(page["nextCursor"].is_null(), "{page}");
        page["content"].as_array().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listing_walks_with_after_once_in_order_and_ends_with_a_null_cursor() {
    let t = test_app_with(|_| {}).await;
    let records: Vec<NewDlqRecord> = (0..8).map(record).collect();
    let known = t.app.state.dlq_store.insert_new(&records).await.unwrap();
    assert!(known.is_empty());
    for _ in 0..3 {
        for switch in ["down", "up"] {
            let uri = format!("/api/test/bus/{switch}");
            t.call(Method::POST, &uri, None, &[]).await;
        }
    }
    for _ in 0..3 {
        let r = t
            .call(
                Method::POST,
                "/api/dlq/replay",
                Some(json!({"limit": 1, "status": "FAILED"})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json());
    }

    for (listing, total) in [
        ("/api/dlq/pending", 8),
        ("/api/dlq/status/PENDING", 8),
        ("/api/dlq/audit?action=TEST_BUS_DOWN", 3),
        ("/api/dlq/audit", 9),
        ("/api/dlq/jobs", 3),
    ] {
        let all = t.all(listing).await;
        assert_eq!(all.len(), total, "{listing}");
        for size in [1, 2, 3, total] {
            assert_eq!(t.walk(listing, size).await, all, "{listing}, size {size}");
        }
        let first = t
            .ok(&format!(
                "{listing}{}size=1",
                if listing.contains('?') { '&' } else { '?' }
            ))
            .await;
        assert_eq!(first["totalElements"], total, "{listing}: {first}");
        assert!(first["nextCursor"].is_string(), "{first}");
    }
    // Pages by number answer a cursor too: the next page by cursor is the
    // next page by number.
    let p0 = t.ok("/api/dlq/pending?page=0&size=3").await;
    let p1 = t.ok("/api/dlq/pending?page=1&size=3").await;
    let cursor = p0["nextCursor"].as_str().unwrap();
    let after = t
        .ok(&format!("/api/dlq/pending?size=3&after={cursor}"))
        .await;
    assert_eq!(after["content"], p1["content"]);
    let last = t.ok("/api/dlq/pending?page=2&size=3").await;
    assert_eq!(
        (
            last["content"].as_array().unwrap().len(),
            &last["nextCursor"]
        ),
        (2, &Value::Null)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_or_foreign_cursor_is_a_400_problem() {
    let t = test_app_with(|_| {}).await;
    let records: Vec<NewDlqRecord> = (0..3).map(record).collect();
    t.app.state.dlq_store.insert_new(&records).await.unwrap();
    let record_cursor = t.ok("/api/dlq/pending?size=1").await["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let long = "A".repeat(5_000);
    for listing in [
        "/api/dlq/pending",
        "/api/dlq/status/FAILED",
        "/api/dlq/audit",
        "/api/dlq/jobs",
    ] {
        let mut bad = vec!["garbled", "%25%25%25", "cjEuMi4z", "4pyT", long.as_str()];
        if !listing.starts_with("/api/dlq/pending") && !listing.starts_with("/api/dlq/status") {
            bad.push(&record_cursor);
        }
        for after in bad {
            let r = t
                .call(Method::GET, &format!("{listing}?after={after}"), None, &[])
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{listing} after={after}");
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
            let p = r.json();
            assert!(p["detail"].as_str().unwrap().contains("after"), "{p}");
        }
    }
}
