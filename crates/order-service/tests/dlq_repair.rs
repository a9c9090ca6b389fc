//! Edit before replay over HTTP, against the real SQLite service and
//! embedded bus: revisions by patch and by replacement, every validation
//! and role rule, four eyes, replay previews, and the targeted redelivery
//! of a revised message to the consumer group that failed it (the
//! projector), with its provenance headers.

// Test helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use order_core::app::Role;
use order_core::domain::now;
use order_core::ports::{Delivery, DlqSource, EventBus, NewDlqRecord};
use order_service::config::{ApiKey, Config};
use serde_json::{json, Value};
use support::router::{test_app_with, Reply, TestApp};
use uuid::Uuid;

const ALICE: &str = "alice-admin-key-0123456789";
const BOB: &str = "bob-admin-key-0123456789ab";
const OPERATOR: &str = "the-operator-key-012345678";
const VIEWER: &str = "the-viewer-key-0123456789a";

fn with_keys(c: &mut Config) {
    c.auth.api_keys = vec![
        ApiKey::new("alice", Role::Admin, ALICE),
        ApiKey::new("bob", Role::Admin, BOB),
        ApiKey::new("the-operator", Role::Operator, OPERATOR),
        ApiKey::new("the-viewer", Role::Viewer, VIEWER),
    ];
    // Edits count against the replay rate limit; these tests send many.
    c.auth.replay_burst = 1_000;
}

async fn app(approval: bool) -> TestApp {
    test_app_with(|c| {
        with_keys(c);
        c.dlq_edit_approval = approval;
    })
    .await
}

fn poison(order: Uuid, event_id: Uuid) -> Value {
    support::poison_order_created(&order.to_string(), &event_id.to_string(), "customer-1")
}

struct Poisoned {
    event_id: String,
    order: Uuid,
}

/// A consumer-side record the projector dead-lettered.
async fn park_poison(t: &TestApp) -> Poisoned {
    let (order, event_id) = (Uuid::now_v7(), Uuid::now_v7());
    let rec = NewDlqRecord {
        event_id: event_id.to_string(),
        aggregate_id: order.to_string(),
        event_type: "OrderCreated".to_owned(),
        version: Some(1),
        original_event: poison(order, event_id).to_string(),
        failure_reason: "malformed OrderCreated data: missing field `totalAmount`".to_owned(),
        failure_class: None,
        failure_time: now(),
        source: DlqSource::Consumer,
        blocked_by: None,
        topic: "order-events".to_owned(),
        origin: Some("order-events/0/7".to_owned()),
        consumer_group: Some("order-projector".to_owned()),
        imported: None,
    };
    t.app.state.dlq_store.insert_new(&[rec]).await.unwrap();
    Poisoned {
        event_id: event_id.to_string(),
        order,
    }
}

fn add_total() -> Value {
    json!([{ "op": "add", "path": "/data/totalAmount", "value": "25.00" }])
}

impl TestApp {
    async fn as_(&self, key: &str, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.call(method, uri, body, &[("x-api-key", key)]).await
    }

    async fn revise(&self, key: &str, event_id: &str, body: Value) -> Reply {
        let uri = format!("/api/dlq/{event_id}/revisions");
        self.as_(key, Method::POST, &uri, Some(body)).await
    }

    async fn review(&self, key: &str, event_id: &str, n: u32, verb: &str) -> Reply {
        let uri = format!("/api/dlq/{event_id}/revisions/{n}/{verb}");
        self.as_(key, Method::POST, &uri, Some(json!({ "note": "checked" })))
            .await
    }

    async fn audit_actions(&self, event_id: &str) -> Vec<(String, String, String)> {
        let uri = format!("/api/dlq/audit?target={event_id}&size=100");
        let page = self.as_(ALICE, Method::GET, &uri, None).await.json();
        page["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_owned(),
                    e["principal"].as_str().unwrap().to_owned(),
                    e["result"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

impl Reply {
    fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        self.json()
    }

    /// The field names of a 422's errors.
    fn fields(&self) -> Vec<String> {
        let p = self.expect(StatusCode::UNPROCESSABLE_ENTITY);
        p["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors in {p}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Everything on `topic`, read by a fresh consumer group (an independent
/// downstream consumer).
async fn everything(bus: &Arc<dyn EventBus>, topic: &str) -> Vec<Delivery> {
    let mut sub = bus
        .subscribe(&format!("checker-{}", Uuid::now_v7()), topic)
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let batch = sub.poll(1000, Duration::from_millis(300)).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patched_revision_is_previewed_then_redelivered_to_the_failed_group_alone() {
    let t = app(false).await;
    let p = park_poison(&t).await;
    let history = format!("/api/dlq/{}/revisions", p.event_id);
    let h = t.as_(VIEWER, Method::GET, &history, None).await;
    let h = h.expect(StatusCode::OK);
    assert_eq!(h["revisions"], json!([]));
    assert_eq!(
        (h["current"].clone(), h["approvalRequired"].clone()),
        (Value::Null, json!(false))
    );

    let body = json!({ "reason": "old producer left out the total", "patch": add_total() });
    let r = t.revise(ALICE, &p.event_id, body).await;
    let rev = r.expect(StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/api/dlq/{}/revisions", p.event_id).as_str())
    );
    assert_eq!(
        (
            rev["revision"].clone(),
            rev["basedOn"].clone(),
            rev["state"].clone()
        ),
        (json!(1), json!(0), json!("READY"))
    );
    assert_eq!(rev["author"], "alice");
    assert_eq!(rev["patch"], add_total(), "the diff from the original");
    let payload: Value = serde_json::from_str(rev["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["data"]["totalAmount"], "25.00");

    // The record shows its history; the original is unchanged.
    let rec = t
        .as_(
            OPERATOR,
            Method::GET,
            &format!("/api/dlq/event/{}", p.event_id),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(rec["revisions"].as_array().unwrap().len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(rec["originalEvent"].as_str().unwrap()).unwrap(),
        poison(p.order, p.event_id.parse().unwrap())
    );
    assert_eq!(rec["consumerGroup"], "order-projector");

    // The preview: one message, to the redelivery topic, for the
    // projector's group, as revision 1; the projector would create the order.
    let uri = format!("/api/dlq/replay/{}?preview=true", p.event_id);
    let pv = t
        .as_(ALICE, Method::POST, &uri, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(pv["replayable"], true, "{pv}");
    assert_eq!(pv["redeliverTo"], "order-projector");
    let msgs = pv["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["topic"], "order-events-redelivery");
    assert_eq!(msgs[0]["revision"], 1);
    assert_eq!(msgs[0]["willSend"], true);
    assert_eq!(msgs[0]["alreadyOnBus"], false);
    let header = |name: &str| {
        msgs[0]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .map(|h| h["value"].clone())
    };
    assert_eq!(header("orders_revision"), Some(json!("1")));
    assert_eq!(header("orders_original_event_id"), Some(json!(p.event_id)));
    assert_eq!(header("orders_edited_by"), Some(json!("alice")));
    assert_eq!(
        header("orders_redeliver_to"),
        Some(json!("order-projector"))
    );
    let rm = &pv["readModel"];
    assert_eq!(rm["before"], Value::Null);
    assert_eq!(rm["after"]["status"], "PENDING");
    assert_eq!(rm["after"]["totalAmount"], "25.00");
    assert!(
        rm["steps"][0].as_str().unwrap().starts_with("APPLIED"),
        "{rm}"
    );
    // Nothing was published or written by the preview.
    let bus = t.app.state.raw_bus.clone();
    assert!(everything(&bus, "order-events-redelivery").await.is_empty());
    let rec = t.app.state.dlq.get(&p.event_id).await.unwrap();
    assert_eq!(rec.status.as_str(), "PENDING");

    // The replay sends revision 1 to the projector alone.
    let uri = format!("/api/dlq/replay/{}", p.event_id);
    let out = t
        .as_(ALICE, Method::POST, &uri, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(out["status"], "REPLAYED", "{out}");
    let sent = everything(&bus, "order-events-redelivery").await;
    assert_eq!(sent.len(), 1, "sent once");
    let d = &sent[0];
    assert_eq!(d.header("orders_redeliver_to"), Some("order-projector"));
    assert_eq!(d.header("orders_revision"), Some("1"));
    assert_eq!(
        d.header("orders_original_event_id"),
        Some(p.event_id.as_str())
    );
    assert_eq!(d.header("orders_edited_by"), Some("alice"));
    assert_eq!(d.header("orders_approved_by"), None);
    assert_eq!(
        serde_json::from_slice::<Value>(&d.payload).unwrap(),
        payload
    );
    let on_events = everything(&bus, "order-events").await;
    assert!(
        !on_events
            .iter()
            .any(|d| d.header("ce_id") == Some(p.event_id.as_str())),
        "other subscribers of order-events do not see it again"
    );
    // The projector took it: the order is in the read model.
    let read_model = t.app.state.orders.read_model.clone();
    let doc = support::eventually(10, "the projector applies the revision", || {
        let rm = read_model.clone();
        async move { rm.get(p.order).await.unwrap() }
    })
    .await;
    assert_eq!(doc.total_amount.to_string(), "25.00");
    let actions = t.audit_actions(&p.event_id).await;
    assert!(actions.contains(&("DLQ_REVISION_CREATE".into(), "alice".into(), "READY".into())));
    assert!(actions.contains(&("DLQ_REPLAY".into(), "alice".into(), "REPLAYED".into())));
    // A replayed record cannot be edited any more.
    let again = json!({ "reason": "again", "patch": [{ "op": "replace", "path": "/data/customerId", "value": "c2" }] });
    t.revise(ALICE, &p.event_id, again)
        .await
        .expect(StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_that_is_not_a_valid_event_of_its_type_is_refused_field_by_field() {
    let t = app(false).await;
    let p = park_poison(&t).await;
    let original = poison(p.order, p.event_id.parse().unwrap());
    let patch = |ops: Value| json!({ "reason": "fix", "patch": ops });
    let total = json!({ "op": "add", "path": "/data/totalAmount", "value": "25.00" });
    // Identity: event id, order id, type and version stay.
    let cases = [
        (
            json!({ "op": "replace", "path": "/eventId", "value": Uuid::now_v7() }),
            "eventId",
        ),
        (
            json!({ "op": "replace", "path": "/aggregateId", "value": Uuid::now_v7() }),
            "aggregateId",
        ),
        (
            json!({ "op": "replace", "path": "/eventType", "value": "OrderConfirmed" }),
            "eventType",
        ),
        (
            json!({ "op": "replace", "path": "/version", "value": 2 }),
            "version",
        ),
        // The domain's checks, as a create command would pass them.
        (
            json!({ "op": "replace", "path": "/data/items/0/quantity", "value": 0 }),
            "data.items[0].quantity",
        ),
        (
            json!({ "op": "replace", "path": "/data/customerId", "value": " " }),
            "data.customerId",
        ),
        // The event type's schema.
        (
            json!({ "op": "replace", "path": "/data/items", "value": "pizza" }),
            "data",
        ),
        (
            json!({ "op": "replace", "path": "/aggregateType", "value": "Invoice" }),
            "aggregateType",
        ),
    ];
    for (op, field) in cases {
        let r = t
            .revise(
                ALICE,
                &p.event_id,
                patch(json!([total.clone(), op.clone()])),
            )
            .await;
        assert!(r.fields().contains(&field.to_owned()), "{op}: {}", r.json());
    }
    // A claimed total that is not the items' sum.
    let wrong = json!({ "op": "add", "path": "/data/totalAmount", "value": "24.00" });
    let r = t.revise(ALICE, &p.event_id, patch(json!([wrong]))).await;
    assert_eq!(r.fields(), vec!["data.totalAmount"]);
    // Without the total it still does not decode.
    let r = t
        .revise(
            ALICE,
            &p.event_id,
            patch(json!([{ "op": "replace", "path": "/data/customerId", "value": "c9" }])),
        )
        .await;
    assert_eq!(r.fields(), vec!["data"]);
    // A patch that does not apply names its operation.
    let r = t
        .revise(
            ALICE,
            &p.event_id,
            patch(json!([total.clone(), { "op": "remove", "path": "/nope" }])),
        )
        .await;
    assert_eq!(r.fields(), vec!["patch[1]"]);
    // An edit that changes nothing; a replacement that is not an envelope.
    let same = json!({ "reason": "fix", "message": original });
    assert_eq!(
        t.revise(ALICE, &p.event_id, same).await.fields(),
        vec!["message"]
    );
    let r = t
        .revise(
            ALICE,
            &p.event_id,
            json!({ "reason": "fix", "message": { "a": 1 } }),
        )
        .await;
    assert_eq!(r.fields(), vec!["message"]);
    // Malformed requests: 400.
    for body in [
        json!({ "patch": [total] }),
        json!({ "reason": "  ", "patch": [total] }),
        json!({ "reason": "x".repeat(501), "patch": [total] }),
        json!({ "reason": "fix" }),
        json!({ "reason": "fix", "patch": [total], "message": original }),
        json!({ "reason": "fix", "patch": { "op": "add" } }),
        json!({ "reason": "fix", "patch": [total], "extra": 1 }),
        json!({ "reason": "fix\u{0007}", "patch": [total] }),
        json!([total]),
    ] {
        let r = t.revise(ALICE, &p.event_id, body.clone()).await;
        r.expect(StatusCode::BAD_REQUEST);
    }
    // Nothing was stored by any of them.
    let h = t
        .as_(
            ALICE,
            Method::GET,
            &format!("/api/dlq/{}/revisions", p.event_id),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(h["revisions"], json!([]));
    // Unknown record: 404, for reads and writes.
    t.revise(ALICE, "no-such-event", patch(json!([total.clone()])))
        .await
        .expect(StatusCode::NOT_FOUND);
    t.as_(
        VIEWER,
        Method::GET,
        "/api/dlq/no-such-event/revisions",
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    // Refused attempts are audited with their status.
    let actions = t.audit_actions(&p.event_id).await;
    assert!(
        actions
            .iter()
            .any(|(a, _, r)| a == "DLQ_REVISION_CREATE" && r == "422"),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|(a, _, r)| a == "DLQ_REVISION_CREATE" && r == "400"),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_side_records_stale_edits_and_low_roles_are_refused() {
    let t = app(false).await;
    let p = park_poison(&t).await;
    let fix = json!({ "reason": "fix", "patch": add_total() });
    // Viewer and operator may not edit.
    t.revise(VIEWER, &p.event_id, fix.clone())
        .await
        .expect(StatusCode::FORBIDDEN);
    t.revise(OPERATOR, &p.event_id, fix.clone())
        .await
        .expect(StatusCode::FORBIDDEN);
    // A publish-side record: the event store is the truth.
    let mut publish = t
        .app
        .state
        .dlq_store
        .get(&p.event_id)
        .await
        .unwrap()
        .unwrap();
    publish.event_id = Uuid::now_v7().to_string();
    let rec = NewDlqRecord {
        event_id: publish.event_id.clone(),
        aggregate_id: publish.aggregate_id.clone(),
        event_type: "OrderCreated".into(),
        version: Some(1),
        original_event: publish.original_event.clone(),
        failure_reason: "publish failed after retries".into(),
        failure_class: None,
        failure_time: now(),
        source: DlqSource::Publish,
        blocked_by: None,
        topic: "order-events".into(),
        origin: None,
        consumer_group: None,
        imported: None,
    };
    t.app.state.dlq_store.insert_new(&[rec]).await.unwrap();
    let p409 = t
        .revise(ALICE, &publish.event_id, fix.clone())
        .await
        .expect(StatusCode::CONFLICT);
    assert!(
        p409["detail"].as_str().unwrap().contains("event store"),
        "{p409}"
    );

    // basedOn: an edit made from an older revision is refused.
    let first = json!({ "reason": "fix", "patch": add_total(), "basedOn": 0 });
    t.revise(ALICE, &p.event_id, first)
        .await
        .expect(StatusCode::CREATED);
    let stale = json!({ "reason": "fix", "patch": [{ "op": "replace", "path": "/data/customerId", "value": "c2" }], "basedOn": 0 });
    t.revise(BOB, &p.event_id, stale)
        .await
        .expect(StatusCode::CONFLICT);
    // A second revision from the first: the diff is against revision 1.
    let second = json!({ "reason": "right customer", "patch": [{ "op": "replace", "path": "/data/customerId", "value": "c2" }], "basedOn": 1 });
    let rev = t
        .revise(BOB, &p.event_id, second)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        (rev["revision"].clone(), rev["basedOn"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(
        rev["patch"],
        json!([{ "op": "replace", "path": "/data/customerId", "value": "c2" }])
    );

    // A viewer sees the history and each diff, never a payload.
    let h = t
        .as_(
            VIEWER,
            Method::GET,
            &format!("/api/dlq/{}/revisions", p.event_id),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(h["current"], 2);
    for r in h["revisions"].as_array().unwrap() {
        assert!(r.get("payload").is_none(), "{r}");
        assert!(r["patch"].is_array(), "{r}");
    }
    let rec = t
        .as_(
            VIEWER,
            Method::GET,
            &format!("/api/dlq/event/{}", p.event_id),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert!(rec.get("originalEvent").is_none());
    assert!(rec["revisions"][1].get("payload").is_none());
    assert_eq!(rec["revisions"][1]["patch"], rev["patch"]);
    let h = t
        .as_(
            OPERATOR,
            Method::GET,
            &format!("/api/dlq/{}/revisions", p.event_id),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert!(h["revisions"][0]["payload"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_four_eyes_a_revision_waits_for_a_second_admin() {
    let t = app(true).await;
    let p = park_poison(&t).await;
    let fix = json!({ "reason": "old producer left out the total", "patch": add_total() });
    let rev = t
        .revise(ALICE, &p.event_id, fix)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(rev["state"], "AWAITING_APPROVAL");
    // Not replayable yet; the preview says why.
    let replay = format!("/api/dlq/replay/{}", p.event_id);
    let refused = t
        .as_(ALICE, Method::POST, &replay, None)
        .await
        .expect(StatusCode::CONFLICT);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("awaits approval"),
        "{refused}"
    );
    let pv = t
        .as_(ALICE, Method::POST, &format!("{replay}?preview=true"), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(pv["replayable"], false);
    assert!(pv["refusal"].as_str().unwrap().contains("awaits approval"));
    // The author may not approve it; an operator may not either.
    let own = t
        .review(ALICE, &p.event_id, 1, "approve")
        .await
        .expect(StatusCode::FORBIDDEN);
    assert!(
        own["detail"].as_str().unwrap().contains("second admin"),
        "{own}"
    );
    t.review(OPERATOR, &p.event_id, 1, "approve")
        .await
        .expect(StatusCode::FORBIDDEN);
    t.review(BOB, &p.event_id, 9, "approve")
        .await
        .expect(StatusCode::NOT_FOUND);
    t.review(BOB, &p.event_id, 0, "approve")
        .await
        .expect(StatusCode::NOT_FOUND);
    let ok = t
        .review(BOB, &p.event_id, 1, "approve")
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (ok["state"].clone(), ok["reviewer"].clone()),
        (json!("APPROVED"), json!("bob"))
    );
    assert_eq!(ok["reviewNote"], "checked");
    t.review(BOB, &p.event_id, 1, "reject")
        .await
        .expect(StatusCode::CONFLICT);
    // Replayed with its approver named.
    t.as_(ALICE, Method::POST, &replay, None)
        .await
        .expect(StatusCode::OK);
    let bus = t.app.state.raw_bus.clone();
    let sent = everything(&bus, "order-events-redelivery").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("orders_approved_by"), Some("bob"));
    assert_eq!(sent[0].header("orders_edited_by"), Some("alice"));
    let actions = t.audit_actions(&p.event_id).await;
    for expected in [
        ("DLQ_REVISION_CREATE", "alice", "AWAITING_APPROVAL"),
        ("DLQ_REVISION_APPROVE", "alice", "403"),
        ("DLQ_REVISION_APPROVE", "bob", "APPROVED"),
        ("DLQ_REVISION_REJECT", "bob", "409"),
        ("DLQ_REPLAY", "alice", "409"),
        ("DLQ_REPLAY", "alice", "REPLAYED"),
    ] {
        let e = (
            expected.0.to_owned(),
            expected.1.to_owned(),
            expected.2.to_owned(),
        );
        assert!(actions.contains(&e), "{expected:?} in {actions:?}");
    }

    // A rejected revision is never sent: the one before it counts again.
    let q = park_poison(&t).await;
    let fix = json!({ "reason": "fix", "patch": add_total() });
    t.revise(ALICE, &q.event_id, fix)
        .await
        .expect(StatusCode::CREATED);
    let wrong = json!({ "reason": "try another customer", "patch": [{ "op": "replace", "path": "/data/customerId", "value": "c2" }] });
    t.revise(BOB, &q.event_id, wrong)
        .await
        .expect(StatusCode::CREATED);
    // Revision 1 is superseded by 2: not reviewable.
    t.review(BOB, &q.event_id, 1, "approve")
        .await
        .expect(StatusCode::CONFLICT);
    let r = t
        .review(ALICE, &q.event_id, 2, "reject")
        .await
        .expect(StatusCode::OK);
    assert_eq!(r["state"], "REJECTED");
    let h = t
        .as_(
            VIEWER,
            Method::GET,
            &format!("/api/dlq/{}/revisions", q.event_id),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(h["current"], 1);
    t.review(BOB, &q.event_id, 1, "approve")
        .await
        .expect(StatusCode::OK);
    let pv = t
        .as_(
            ALICE,
            Method::POST,
            &format!("/api/dlq/replay/{}?preview=true", q.event_id),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(pv["replayable"], true, "{pv}");
    assert_eq!(pv["messages"][0]["revision"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_preview_covers_every_matching_head_and_changes_nothing() {
    let t = app(false).await;
    let a = park_poison(&t).await;
    let b = park_poison(&t).await;
    let r = t
        .as_(
            ALICE,
            Method::POST,
            "/api/dlq/replay?preview=true",
            Some(json!({ "limit": 10 })),
        )
        .await
        .expect(StatusCode::OK);
    let ids: Vec<&str> = r["previews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a.event_id.as_str(), b.event_id.as_str()]);
    // Without a revision the projector would dead-letter it again.
    let steps = &r["previews"][0]["readModel"]["steps"];
    assert!(
        steps[0].as_str().unwrap().starts_with("DEAD_LETTER"),
        "{steps}"
    );
    for bad in ["yes", "1", ""] {
        t.as_(
            ALICE,
            Method::POST,
            &format!("/api/dlq/replay?preview={bad}"),
            None,
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    }
    t.as_(
        ALICE,
        Method::POST,
        "/api/dlq/replay/no-such-event?preview=true",
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    let stats = t
        .as_(VIEWER, Method::GET, "/api/dlq/stats", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(stats["pendingCount"], 2, "a preview writes nothing");
}
