//! A stored v1 `OrderCreated` (the Java service's shape, money as JSON
//! numbers) for adapter tests: each adapter inserts [`v1_order_created_data`]
//! by hand at [`V1_OCCURRED_ON`], version 1, schema version 1, then calls
//! [`assert_v1_order_created_upcast`].

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::fixtures::dec;
use crate::domain::{fold, OrderStatus};
use crate::ports::{EventStore, StreamBound};

/// When the v1 row occurred (RFC 3339).
pub const V1_OCCURRED_ON: &str = "2019-03-01T12:00:00.25Z";

/// The `event_data` of a v1 `OrderCreated` of order `id`.
pub fn v1_order_created_data(id: Uuid) -> String {
    format!(
        r#"{{"orderId":"{id}","customerId":"cust-1","restaurantId":"rest-1",
            "items":[{{"menuItemId":"m1","name":"Pizza","price":12.50,"quantity":2}},
                     {{"menuItemId":"m2","name":"Mint","price":0.10,"quantity":3}}],
            "totalAmount":25.30}}"#
    )
}

fn instant(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("timestamp")
        .with_timezone(&Utc)
}

/// The store holds only that v1 row: it reads back upcast, with exact
/// decimals, through `load_stream`, `read_all` and the time-travel bound.
pub async fn assert_v1_order_created_upcast(store: &dyn EventStore, id: Uuid) {
    let events = store
        .load_stream(&id.to_string(), StreamBound::All)
        .await
        .expect("load_stream");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].envelope.schema_version, 1);
    let order = fold(events.iter().map(|e| &e.envelope))
        .expect("v1 event folds")
        .expect("order");
    assert_eq!(order.id, id);
    assert_eq!(order.customer_id, "cust-1");
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.items.len(), 2);
    assert_eq!(order.items[0].price, dec("12.5"));
    assert_eq!(order.items[1].price, dec("0.1"));
    assert_eq!(
        order.total_amount,
        Decimal::from_str("25.3").expect("decimal")
    );
    assert_eq!(
        order.items.iter().map(|i| i.line_total()).sum::<Decimal>(),
        order.total_amount,
        "no float rounding anywhere"
    );
    assert_eq!(order.created_at, instant(V1_OCCURRED_ON));
    assert_eq!(store.read_all(0, 10).await.expect("read_all"), events);
    assert!(store
        .load_stream(
            &id.to_string(),
            StreamBound::UpToInstant(instant("2019-03-01T12:00:00.249999Z"))
        )
        .await
        .expect("load_stream")
        .is_empty());
}
