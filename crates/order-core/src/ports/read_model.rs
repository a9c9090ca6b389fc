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

/// The query-side store. It only stores documents; the projector folds
/// events in the core so every adapter applies the same logic.
#[async_trait]
pub trait ReadModel: Send + Sync {
    async fn get_many(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Order>, StoreError>;

    /// Writes each order unless the stored one has the same or a higher
    /// version (a version-guarded upsert: duplicates and stale writes change
    /// nothing). Returns how many were written.
    async fn upsert_many(&self, orders: &[Order]) -> Result<usize, StoreError>;

    async fn get(&self, id: Uuid) -> Result<Option<Order>, StoreError>;

    /// Newest first (`created_at` desc, then id).
    async fn query(
        &self,
        filter: &OrderFilter,
        page: PageRequest,
    ) -> Result<Page<Order>, StoreError>;

    /// Removes every document (before a rebuild).
    async fn clear(&self) -> Result<(), StoreError>;

    async fn count(&self) -> Result<u64, StoreError>;

    async fn ping(&self) -> Result<(), StoreError>;
}
