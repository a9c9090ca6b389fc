//! The stored shape of an order: encoding an [`Order`] as the document the
//! crate docs describe (exact decimal text, microsecond timestamps that
//! sort as text, `sortKey`) and decoding it back, with anything unreadable
//! reported as corrupt data. Kept apart from the queries so the format is
//! defined in one place.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use mongodb::bson::{doc, Document};
use order_core::domain::{Order, OrderItem, OrderStatus};
use order_core::ports::StoreError;
use rust_decimal::Decimal;
use serde::Deserialize;
use uuid::Uuid;

fn corrupt(id: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("order document {id}: {what}"))
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(id: &str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(id, format!("bad timestamp {s:?}: {e}")))
}

pub(crate) fn version_i64(o: &Order) -> Result<i64, StoreError> {
    i64::try_from(o.version)
        .map_err(|_| StoreError::Corrupt(format!("order {} version out of range", o.id)))
}

/// The stored fields of an order (everything but `_id`).
pub(crate) fn encode(o: &Order) -> Result<Document, StoreError> {
    let id = o.id.to_string();
    let created_at = ts(&o.created_at);
    let items: Vec<Document> = o
        .items
        .iter()
        .map(|i| {
            doc! {
                "menuItemId": &i.menu_item_id,
                "name": &i.name,
                "price": i.price.to_string(),
                "quantity": i64::from(i.quantity),
            }
        })
        .collect();
    Ok(doc! {
        "customerId": &o.customer_id,
        "restaurantId": &o.restaurant_id,
        "items": items,
        "totalAmount": o.total_amount.to_string(),
        "status": o.status.as_str(),
        "paymentId": o.payment_id.as_deref(),
        "cancellationReason": o.cancellation_reason.as_deref(),
        "sortKey": format!("{created_at}|{id}"),
        "createdAt": created_at,
        "updatedAt": ts(&o.updated_at),
        "version": version_i64(o)?,
    })
}

/// Rough BSON size of an order document, for splitting commands.
pub(crate) fn approx_size(o: &Order) -> usize {
    let text = o.customer_id.len()
        + o.restaurant_id.len()
        + o.payment_id.as_ref().map_or(0, String::len)
        + o.cancellation_reason.as_ref().map_or(0, String::len);
    let items: usize = o
        .items
        .iter()
        .map(|i| 96 + i.menu_item_id.len() + i.name.len())
        .sum();
    512 + text + items
}

/// An order document as read back.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderDoc {
    #[serde(rename = "_id")]
    id: String,
    customer_id: String,
    restaurant_id: String,
    items: Vec<ItemDoc>,
    total_amount: String,
    status: String,
    #[serde(default)]
    payment_id: Option<String>,
    #[serde(default)]
    cancellation_reason: Option<String>,
    created_at: String,
    updated_at: String,
    version: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemDoc {
    menu_item_id: String,
    name: String,
    price: String,
    quantity: i64,
}

impl OrderDoc {
    pub(crate) fn into_order(self) -> Result<Order, StoreError> {
        let id = self.id;
        let dec = |s: &str| {
            Decimal::from_str(s).map_err(|e| corrupt(&id, format!("bad decimal {s:?}: {e}")))
        };
        let items = self
            .items
            .into_iter()
            .map(|i| {
                Ok(OrderItem {
                    price: dec(&i.price)?,
                    quantity: u32::try_from(i.quantity)
                        .map_err(|_| corrupt(&id, format!("bad quantity {}", i.quantity)))?,
                    menu_item_id: i.menu_item_id,
                    name: i.name,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Order {
            id: Uuid::parse_str(&id).map_err(|e| corrupt(&id, format!("bad id: {e}")))?,
            customer_id: self.customer_id,
            restaurant_id: self.restaurant_id,
            items,
            total_amount: dec(&self.total_amount)?,
            status: OrderStatus::parse(&self.status)
                .ok_or_else(|| corrupt(&id, format!("unknown status {:?}", self.status)))?,
            payment_id: self.payment_id,
            cancellation_reason: self.cancellation_reason,
            created_at: parse_ts(&id, &self.created_at)?,
            updated_at: parse_ts(&id, &self.updated_at)?,
            version: u64::try_from(self.version)
                .map_err(|_| corrupt(&id, format!("bad version {}", self.version)))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text_and_keep_microseconds() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T10:00:00.000001Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("timestamp");
        assert_eq!(ts(&t), "2024-05-01T10:00:00.000001Z");
        let whole = DateTime::parse_from_rfc3339("2024-05-01T10:00:01Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("timestamp");
        assert_eq!(ts(&whole), "2024-05-01T10:00:01.000000Z");
        assert!(ts(&t) < ts(&whole));
        assert_eq!(parse_ts("x", &ts(&t)).expect("parse"), t);
    }
}
