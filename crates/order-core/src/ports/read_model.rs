//! The query-side read model.

use super::error::StoreError;
use super::page::Page;
use super::page::PageRequest;
use crate::domain::Order;
use crate::domain::OrderStatus;
use async_trait::async_trait;
use std::collections::HashMap;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Read model
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub customer_id: Option<String>,
    pub restaurant_id: Option<String>,
    pub status: Option<OrderStatus>,
}

/// A field an [`OrderFilter`] condition is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderField {
    CustomerId,
    RestaurantId,
    Status,
}

impl OrderFilter {
    /// The conditions that are set, each `field = value`, always in the
    /// order customer, restaurant, status. A read model matches the orders
    /// that meet all of them.
    pub fn conditions(&self) -> impl Iterator<Item = (OrderField, &str)> {
        [
            (OrderField::CustomerId, self.customer_id.as_deref()),
            (OrderField::RestaurantId, self.restaurant_id.as_deref()),
            (OrderField::Status, self.status.map(OrderStatus::as_str)),
        ]
        .into_iter()
        .filter_map(|(field, value)| Some((field, value?)))
    }
}

/// [`ReadModel::query`]: a page of the orders `filter` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderQuery {
    pub filter: OrderFilter,
    pub page: PageRequest,
}

/// Which orders a [`ReadModel::upsert_many`] wrote, in input order: `false`
/// where the stored document already had the same or a higher version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upserted(pub Vec<bool>);

impl Upserted {
    /// How many documents were written.
    pub fn count(&self) -> usize {
        self.0.iter().filter(|w| **w).count()
    }
}

/// The query-side store. It only stores documents; the projector folds
/// events in the core so every adapter applies the same logic.
#[async_trait]
pub trait ReadModel: Send + Sync {
    async fn get_many(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Order>, StoreError>;

    /// Writes each order unless the stored one has the same or a higher
    /// version (a version-guarded upsert: duplicates and stale writes change
    /// nothing). Says which were written. One round trip to the store
    /// (a batch larger than one command allows takes several).
    async fn upsert_many(&self, orders: &[Order]) -> Result<Upserted, StoreError>;

    async fn get(&self, id: Uuid) -> Result<Option<Order>, StoreError>;

    /// Newest first (`created_at` desc, then id).
    async fn query(&self, query: &OrderQuery) -> Result<Page<Order>, StoreError>;

    /// Removes every document (before a rebuild).
    async fn clear(&self) -> Result<(), StoreError>;

    /// Before a rebuild writes every document again: removes them all (as
    /// [`ReadModel::clear`]) and may drop what slows such a bulk write
    /// (secondary indexes), until [`ReadModel::finish_rebuild`].
    async fn begin_rebuild(&self) -> Result<(), StoreError> {
        self.clear().await
    }

    /// After a rebuild, also a failed one: restores what
    /// [`ReadModel::begin_rebuild`] dropped. An adapter restores it when it
    /// opens too, so a process killed mid-rebuild leaves nothing missing.
    async fn finish_rebuild(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn count(&self) -> Result<u64, StoreError>;

    async fn ping(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_the_set_fields_in_a_fixed_order() {
        assert_eq!(OrderFilter::default().conditions().count(), 0);
        let filter = OrderFilter {
            customer_id: Some("c-1".into()),
            restaurant_id: None,
            status: Some(OrderStatus::Confirmed),
        };
        assert_eq!(
            filter.conditions().collect::<Vec<_>>(),
            [
                (OrderField::CustomerId, "c-1"),
                (OrderField::Status, OrderStatus::Confirmed.as_str()),
            ]
        );
    }
}
