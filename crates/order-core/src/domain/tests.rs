//! Given/when/then tests of the Order aggregate: every legal transition and
//! every illegal one, validation, and upcasting of stored v1 events.

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use super::*;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_default()
}

fn item(price: &str, quantity: u32) -> OrderItem {
    OrderItem {
        menu_item_id: "m1".into(),
        name: "Margherita".into(),
        price: dec(price),
        quantity,
    }
}

fn valid_create() -> CreateOrder {
    CreateOrder::new(
        "cust-1".into(),
        "rest-1".into(),
        vec![item("12.50", 2), item("2.99", 1)],
        None,
    )
    .expect("valid command")
}

/// Given a history of events, when a transition is decided, then …
struct Given {
    state: Option<Order>,
    id: Uuid,
    version: u64,
}

fn given(events: &[OrderEvent]) -> Given {
    let id = Uuid::now_v7();
    let mut state = None;
    let mut version = 0;
    for e in events {
        version += 1;
        state = Order::apply(state.as_ref(), id, e, version, now());
        assert!(state.is_some(), "history must fold");
    }
    Given { state, id, version }
}

impl Given {
    fn when(&self, t: Transition) -> Result<OrderEvent, DomainError> {
        self.state.as_ref().expect("an order exists").decide(&t)
    }
    fn then_state(&self, e: &OrderEvent) -> Order {
        Order::apply(self.state.as_ref(), self.id, e, self.version + 1, now())
            .expect("decided event applies")
    }
}

fn created() -> OrderEvent {
    valid_create().decide()
}
fn confirmed() -> OrderEvent {
    OrderEvent::Confirmed {
        payment_id: "pay-1".into(),
    }
}
fn confirm() -> Transition {
    Transition::confirm(Some("pay-1".into())).expect("valid")
}
fn cancel() -> Transition {
    Transition::cancel(Some("changed my mind".into())).expect("valid")
}

#[test]
fn creating_an_order_computes_the_total_from_the_items() {
    let cmd = valid_create();
    assert_eq!(cmd.total_amount(), dec("27.99"));
    let g = given(&[cmd.decide()]);
    let order = g.state.expect("created");
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.version, 1);
    assert_eq!(order.total_amount, dec("27.99"));
    assert_eq!(order.items.len(), 2);
}

#[test]
fn a_client_total_that_matches_is_accepted_and_one_that_disagrees_is_rejected() {
    let ok = CreateOrder::new(
        "c".into(),
        "r".into(),
        vec![item("12.50", 2)],
        Some(dec("25.00")),
    );
    assert!(ok.is_ok());
    let err = CreateOrder::new(
        "c".into(),
        "r".into(),
        vec![item("12.50", 2)],
        Some(dec("24.99")),
    )
    .expect_err("mismatch");
    match err {
        DomainError::Validation(fields) => assert_eq!(fields[0].field, "totalAmount"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn validation_reports_every_bad_field_at_once() {
    let err = CreateOrder::new(
        " ".into(),
        "x".repeat(65),
        vec![
            OrderItem {
                menu_item_id: "".into(),
                name: "".into(),
                price: dec("-1"),
                quantity: 0,
            },
            item("0.00001", 1),
        ],
        None,
    )
    .expect_err("invalid");
    let DomainError::Validation(fields) = err else {
        panic!("expected validation error");
    };
    let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    for expected in [
        "customerId",
        "restaurantId",
        "items[0].menuItemId",
        "items[0].name",
        "items[0].quantity",
        "items[0].price",
        "items[1].price",
    ] {
        assert!(names.contains(&expected), "{expected} missing in {names:?}");
    }
}

#[test]
fn an_order_needs_at_least_one_item_and_bounded_quantities_and_prices() {
    assert!(CreateOrder::new("c".into(), "r".into(), vec![], None).is_err());
    assert!(CreateOrder::new("c".into(), "r".into(), vec![item("1", 10_001)], None).is_err());
    assert!(CreateOrder::new("c".into(), "r".into(), vec![item("1000000.01", 1)], None).is_err());
    assert!(CreateOrder::new("c".into(), "r".into(), vec![item("0", 1)], None).is_ok());
    let many = vec![item("1", 1); 101];
    assert!(CreateOrder::new("c".into(), "r".into(), many, None).is_err());
}

#[test]
fn control_characters_in_names_are_rejected_but_unicode_is_fine() {
    let mut bad = item("1", 1);
    bad.name = "Pizza\u{0000}".into();
    assert!(CreateOrder::new("c".into(), "r".into(), vec![bad], None).is_err());
    let mut good = item("1", 1);
    good.name = "Käsespätzle 🍕".into();
    assert!(CreateOrder::new("c".into(), "r".into(), vec![good], None).is_ok());
}

#[test]
fn a_pending_order_can_be_confirmed_with_a_payment_id() {
    let g = given(&[created()]);
    let e = g.when(confirm()).expect("legal");
    assert_eq!(e, confirmed());
    let s = g.then_state(&e);
    assert_eq!(s.status, OrderStatus::Confirmed);
    assert_eq!(s.payment_id.as_deref(), Some("pay-1"));
    assert_eq!(s.version, 2);
}

#[test]
fn confirming_needs_a_non_blank_payment_id() {
    assert!(Transition::confirm(None).is_err());
    assert!(Transition::confirm(Some("  ".into())).is_err());
}

#[test]
fn a_pending_order_can_be_cancelled_with_or_without_a_reason() {
    let g = given(&[created()]);
    let e = g.when(cancel()).expect("legal");
    let s = g.then_state(&e);
    assert_eq!(s.status, OrderStatus::Cancelled);
    assert_eq!(s.cancellation_reason.as_deref(), Some("changed my mind"));

    let e = g
        .when(Transition::cancel(Some("   ".into())).expect("blank is none"))
        .expect("legal");
    assert_eq!(e, OrderEvent::Cancelled { reason: None });
}

#[test]
fn a_confirmed_order_goes_through_preparing_and_ready_to_delivered() {
    let g = given(&[created(), confirmed()]);
    let e = g.when(Transition::Prepare).expect("legal");
    assert_eq!(e, OrderEvent::PreparationStarted);
    let g = given(&[created(), confirmed(), e]);
    let e = g.when(Transition::MarkReady).expect("legal");
    assert_eq!(e, OrderEvent::MarkedReady);
    let g = given(&[created(), confirmed(), OrderEvent::PreparationStarted, e]);
    let e = g.when(Transition::Deliver).expect("legal");
    assert_eq!(e, OrderEvent::Delivered);
    assert_eq!(g.then_state(&e).status, OrderStatus::Delivered);
}

#[test]
fn every_illegal_transition_is_rejected_with_the_current_status() {
    let histories: Vec<(OrderStatus, Vec<OrderEvent>)> = vec![
        (OrderStatus::Pending, vec![created()]),
        (OrderStatus::Confirmed, vec![created(), confirmed()]),
        (
            OrderStatus::Preparing,
            vec![created(), confirmed(), OrderEvent::PreparationStarted],
        ),
        (
            OrderStatus::Ready,
            vec![
                created(),
                confirmed(),
                OrderEvent::PreparationStarted,
                OrderEvent::MarkedReady,
            ],
        ),
        (
            OrderStatus::Delivered,
            vec![
                created(),
                confirmed(),
                OrderEvent::PreparationStarted,
                OrderEvent::MarkedReady,
                OrderEvent::Delivered,
            ],
        ),
        (
            OrderStatus::Cancelled,
            vec![created(), OrderEvent::Cancelled { reason: None }],
        ),
    ];
    let legal = |s: OrderStatus, t: &Transition| {
        matches!(
            (s, t),
            (OrderStatus::Pending, Transition::Confirm { .. })
                | (OrderStatus::Pending, Transition::Cancel { .. })
                | (OrderStatus::Confirmed, Transition::Prepare)
                | (OrderStatus::Preparing, Transition::MarkReady)
                | (OrderStatus::Ready, Transition::Deliver)
        )
    };
    let transitions = [
        confirm(),
        cancel(),
        Transition::Prepare,
        Transition::MarkReady,
        Transition::Deliver,
    ];
    let mut illegal = 0;
    for (status, history) in &histories {
        let g = given(history);
        assert_eq!(g.state.as_ref().map(|o| o.status), Some(*status));
        for t in &transitions {
            let r = g.when(t.clone());
            if legal(*status, t) {
                assert!(r.is_ok(), "{status} {t:?} should be legal");
            } else {
                illegal += 1;
                assert_eq!(
                    r,
                    Err(DomainError::IllegalTransition {
                        from: *status,
                        action: t.action()
                    }),
                    "{status} {t:?}"
                );
            }
        }
    }
    // 6 statuses x 5 transitions, 5 of them legal.
    assert_eq!(illegal, 25);
}

#[test]
fn cancelling_twice_and_cancelling_after_confirm_are_rejected() {
    let g = given(&[created(), OrderEvent::Cancelled { reason: None }]);
    assert!(matches!(
        g.when(cancel()),
        Err(DomainError::IllegalTransition { .. })
    ));
    let g = given(&[created(), confirmed()]);
    assert!(matches!(
        g.when(cancel()),
        Err(DomainError::IllegalTransition { .. })
    ));
}

#[test]
fn an_event_that_cannot_follow_the_state_does_not_fold() {
    let id = Uuid::now_v7();
    assert!(Order::apply(None, id, &confirmed(), 1, now()).is_none());
    let g = given(&[created()]);
    assert!(Order::apply(g.state.as_ref(), id, &created(), 2, now()).is_none());
}

#[test]
fn envelopes_round_trip_through_json_and_decode_to_the_same_event() {
    let id = Uuid::now_v7();
    let env = EventEnvelope::new(id, &created(), 1, now(), Some("corr-1".into()));
    assert_eq!(env.schema_version, 2);
    assert_eq!(env.aggregate_type, "Order");
    let text = env.to_json();
    let back: EventEnvelope = serde_json::from_str(&text).expect("parses");
    assert_eq!(back, env);
    assert_eq!(back.decode(), Ok(created()));
    // Money travels as exact decimal strings.
    assert_eq!(back.data["totalAmount"], json!("27.99"));
    assert_eq!(back.data["items"][0]["price"], json!("12.50"));
}

#[test]
fn a_stored_v1_order_created_with_float_prices_is_upcast_exactly() {
    // The Java service's shape: money as JSON numbers.
    let v1 = json!({
        "orderId": "0b8a3c1e-0000-4000-8000-000000000001",
        "customerId": "cust-legacy",
        "restaurantId": "rest-legacy",
        "items": [
            {"menuItemId": "m1", "name": "Soup", "price": 0.1, "quantity": 3},
            {"menuItemId": "m2", "name": "Bread", "price": 19.99, "quantity": 1}
        ],
        "totalAmount": 20.29
    });
    let e = OrderEvent::from_data("OrderCreated", 1, &v1).expect("upcasts");
    let OrderEvent::Created {
        items,
        total_amount,
        ..
    } = e
    else {
        panic!("expected OrderCreated");
    };
    assert_eq!(items[0].price, dec("0.1"));
    assert_eq!(items[1].price, dec("19.99"));
    assert_eq!(total_amount, dec("20.29"));
}

#[test]
fn a_v1_order_created_without_a_total_gets_it_computed() {
    let v1 = json!({
        "orderId": "0b8a3c1e-0000-4000-8000-000000000002", "customerId": "c", "restaurantId": "r",
        "items": [{"menuItemId": "m", "name": "n", "price": 2.5, "quantity": 2}]
    });
    let Ok(OrderEvent::Created { total_amount, .. }) =
        OrderEvent::from_data("OrderCreated", 1, &v1)
    else {
        panic!("expected OrderCreated");
    };
    assert_eq!(total_amount, dec("5.0"));
}

#[test]
fn unknown_types_and_versions_are_reported_not_guessed() {
    assert_eq!(
        OrderEvent::from_data("OrderTeleported", 1, &json!({})),
        Err(EventDecodeError::UnknownType("OrderTeleported".into()))
    );
    assert!(matches!(
        OrderEvent::from_data("OrderCreated", 9, &json!({})),
        Err(EventDecodeError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        OrderEvent::from_data("OrderConfirmed", 1, &json!({"nope": 1})),
        Err(EventDecodeError::Malformed { .. })
    ));
}

#[test]
fn folding_a_history_gives_the_state_at_its_last_version() {
    let id = Uuid::now_v7();
    let t0 = Utc
        .with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("valid time");
    let envs = [
        EventEnvelope::new(id, &created(), 1, t0, None),
        EventEnvelope::new(id, &confirmed(), 2, t0 + chrono::Duration::seconds(5), None),
    ];
    let order = fold(envs.iter()).expect("folds").expect("exists");
    assert_eq!(order.version, 2);
    assert_eq!(order.created_at, t0);
    assert_eq!(order.updated_at, t0 + chrono::Duration::seconds(5));
    assert_eq!(order.status, OrderStatus::Confirmed);
}

#[test]
fn status_names_parse_case_insensitively() {
    assert_eq!(OrderStatus::parse("pending"), Some(OrderStatus::Pending));
    assert_eq!(
        OrderStatus::parse("Delivered"),
        Some(OrderStatus::Delivered)
    );
    assert_eq!(OrderStatus::parse("lost"), None);
}

#[test]
fn an_envelope_stored_without_a_traceparent_still_reads_and_none_is_not_written() {
    let stored = json!({
        "eventId": "0193a8f0-0000-7000-8000-000000000001",
        "eventType": "OrderCancelled",
        "aggregateId": "0193a8f0-0000-7000-8000-000000000002",
        "aggregateType": "Order",
        "version": 2,
        "schemaVersion": 1,
        "occurredOn": "2024-05-01T10:00:00Z",
        "correlationId": null,
        "causationId": null,
        "data": {"reason": "changed mind"}
    });
    let env: EventEnvelope = serde_json::from_value(stored.clone()).expect("an old envelope reads");
    assert_eq!(env.traceparent, None);
    assert_eq!(env.trace_id(), None);
    // Written back unchanged: no `traceparent` member for consumers to meet.
    assert_eq!(serde_json::to_value(&env).ok(), Some(stored));
}

#[test]
fn an_envelope_carries_its_traceparent_and_names_its_trace_id() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut env = EventEnvelope::new(
        Uuid::now_v7(),
        &OrderEvent::Cancelled { reason: None },
        2,
        Utc::now(),
        None,
    );
    env.traceparent = Some(tp.to_owned());
    let back: EventEnvelope = serde_json::from_str(&env.to_json()).expect("reads back");
    assert_eq!(back.traceparent.as_deref(), Some(tp));
    assert_eq!(back.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(trace_id_of("not a traceparent"), None);
    assert_eq!(trace_id_of("00-4bf92f35-00f067aa0ba902b7-01"), None);
}
