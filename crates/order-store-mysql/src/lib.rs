//! # order-store-mysql
//!
//! The production write side on MySQL 8 / MariaDB 10.11:
//! [`MySqlStore`] implements [`EventStore`](order_core::ports::EventStore),
//! [`Outbox`](order_core::ports::Outbox) and
//! [`DlqStore`](order_core::ports::DlqStore) and
//! [`AuditLog`](order_core::ports::AuditLog) and
//! [`ReplayJobStore`](order_core::ports::ReplayJobStore) on ONE database, so a command
//! commits its events, current state and outbox rows in one transaction,
//! and the relay parks an event and deletes its outbox row in one.
//!
//! - Schema: the append-only SQL files under `migrations/` (the original
//!   service's `event_store` and `dlq_replay_records` columns plus ours),
//!   applied at connect under a named lock; the database is created when
//!   missing.
//! - Group commit: one transaction per batch, multi-row INSERTs first and
//!   a SAVEPOINT per commit when a commit conflicts (see `commit.rs`).
//! - Several instances: [`RelayLeases`](order_core::ports::RelayLeases)
//!   partitions in `relay_partitions` with fencing epochs (see `leases.rs`);
//!   an instance fetches only its partitions' buckets, and a settle writes
//!   only while its fences hold (see `outbox.rs`).
//! - Driver errors are translated here: duplicate keys of a commit become
//!   `CommitError::VersionConflict` / `IdempotencyKeyTaken`, connection
//!   trouble, timeouts and lost lock races `StoreError::Unavailable`,
//!   unreadable rows `StoreError::Corrupt`.

mod audit;
mod commit;
mod db;
mod dlq;
mod jobs;
mod leases;
mod outbox;
mod revisions;
mod store;

pub use db::index_hint;
pub use db::{MySqlConfig, Tls, TlsMode, DEFAULT_DATABASE};
pub use store::MySqlStore;

use order_core::ports::StoreError;

/// Connects to `url` (`mysql://user:password@host:port/database`) with the
/// default configuration, creating the database if missing and applying
/// migrations.
pub async fn connect(url: &str) -> Result<MySqlStore, StoreError> {
    MySqlStore::connect(url).await
}

/// Creates the database if missing and applies pending migrations; what
/// `order-service migrate` runs.
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    MySqlStore::migrate(url).await
}
