//! The event store's rows, read the same way by both SQL adapters: events
//! (`SELECT {EVENT_COLUMNS}`), the `orders` row of [`ORDER_COLUMNS`] and its
//! `order_items` (menu item, name, price, quantity).

use uuid::Uuid;

use super::ColumnReader;
use crate::domain::RecordedEvent;
use crate::ports::{EventRow, OrderItemRow, OrderRow, StoreError};

/// The columns of an `orders` row [`read_order`] reads, in its order.
pub const ORDER_COLUMNS: &str = "customer_id, restaurant_id, total_amount, status, payment_id, \
     cancellation_reason, created_at, updated_at, version";

/// A row of `SELECT {EVENT_COLUMNS}`.
pub fn read_event(r: &dyn ColumnReader) -> Result<RecordedEvent, StoreError> {
    RecordedEvent::try_from(EventRow {
        position: r.int(0)?,
        event_id: r.text(1)?,
        aggregate_id: r.text(2)?,
        aggregate_type: r.text(3)?,
        event_type: r.text(4)?,
        event_data: r.text(5)?,
        version: r.int(6)?,
        schema_version: r.int(7)?,
        occurred_on: r.time(8)?,
        correlation_id: r.opt_text(9)?,
        causation_id: r.opt_text(10)?,
    })
}

/// The order `id` from a row starting with [`ORDER_COLUMNS`]; its items
/// still to be added.
pub fn read_order(r: &dyn ColumnReader, id: Uuid) -> Result<OrderRow, StoreError> {
    Ok(OrderRow {
        id,
        customer_id: r.text(0)?,
        restaurant_id: r.text(1)?,
        total_amount: r.text(2)?,
        status: r.text(3)?,
        payment_id: r.opt_text(4)?,
        cancellation_reason: r.opt_text(5)?,
        created_at: r.time(6)?,
        updated_at: r.time(7)?,
        version: r.int(8)?,
        items: Vec::new(),
    })
}

/// The item whose columns start at `at`; `None` when its menu item is NULL
/// (an order without items in a LEFT JOIN).
pub fn read_item(r: &dyn ColumnReader, at: usize) -> Result<Option<OrderItemRow>, StoreError> {
    let Some(menu_item_id) = r.opt_text(at)? else {
        return Ok(None);
    };
    Ok(Some(OrderItemRow {
        menu_item_id,
        name: r.text(at + 1)?,
        price: r.text(at + 2)?,
        quantity: r.int(at + 3)?,
    }))
}
