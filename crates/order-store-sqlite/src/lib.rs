//! # order-store-sqlite
//!
//! The embedded profile's adapters, each on its own SQLite file in WAL mode:
//!
//! - [`SqliteStore`]: [`EventStore`](order_core::ports::EventStore) +
//!   [`Outbox`](order_core::ports::Outbox) +
//!   [`DlqStore`](order_core::ports::DlqStore) +
//!   [`AuditLog`](order_core::ports::AuditLog) +
//!   [`ReplayJobStore`](order_core::ports::ReplayJobStore) on ONE database, so a command
//!   commits its events, current state and outbox rows in one transaction,
//!   and the relay parks an event and deletes its outbox row in one.
//! - [`SqliteReadModel`]: [`ReadModel`](order_core::ports::ReadModel) on its
//!   own file, so projection writes never contend with command writes.
//! - [`EmbeddedBus`]: [`EventBus`](order_core::ports::EventBus), a durable
//!   log with consumer-group offsets, on its own file.
//!
//! Each file has one writer connection (blocking work runs on tokio's
//! blocking pool) and a few read connections. Schemas come from the
//! append-only SQL files under `migrations/`, applied at open. Driver errors
//! are translated here: lock/IO trouble becomes `StoreError::Unavailable`,
//! unreadable rows `StoreError::Corrupt`, and constraint violations of a
//! commit `CommitError::VersionConflict` / `IdempotencyKeyTaken`.

mod audit;
mod bus;
mod db;
mod dlq;
mod jobs;
mod leases;
mod outbox;
mod read_model;
mod revisions;
mod store;

pub use bus::EmbeddedBus;
pub use db::index_hint;
pub use read_model::SqliteReadModel;
pub use store::SqliteStore;

use std::path::Path;

use order_core::ports::StoreError;

/// Creates or upgrades the write-side schema (event store, current state,
/// outbox, DLQ) at `path`; what `order-service migrate` runs.
pub fn migrate(path: impl AsRef<Path>) -> Result<(), StoreError> {
    SqliteStore::migrate(path)
}
