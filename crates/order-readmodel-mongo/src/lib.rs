//! MongoDB read model: version-guarded upserts, indexes for the list queries.
//!
//! One document per order in one collection (defaults: database
//! [`DEFAULT_DATABASE`], collection [`DEFAULT_COLLECTION`]):
//!
//! ```text
//! { _id: "<order uuid>", customerId, restaurantId,
//!   items: [ { menuItemId, name, price: "12.50", quantity: <int> } ],
//!   totalAmount: "32.30", status: "PENDING", paymentId: <string|null>,
//!   cancellationReason: <string|null>,
//!   createdAt: "2024-05-01T10:00:00.123456Z", updatedAt: "…",
//!   version: <int64>, sortKey: "<createdAt>|<_id>" }
//! ```
//!
//! Money is kept as exact decimal text (the scale a client sent survives) and
//! timestamps as RFC 3339 UTC text with exactly six fractional digits: BSON
//! dates keep only milliseconds, while this text keeps microseconds and sorts
//! chronologically as a string. `sortKey` is `createdAt` plus the id, so the
//! list order (newest first, then id) is one indexed field.
//!
//! Writes never use transactions: each order is one `update` statement
//! `{q: {_id, version: {$lt: v}}, u: {$set: doc}, upsert: true}`, many per
//! command (`ordered: false`). A stored document with the same or a higher
//! version makes the statement fail with a duplicate key (E11000) instead of
//! writing, which counts as "not written".
//!
//! # Where things are
//!
//! * `options`: [`MongoOptions`], timeouts and batch limits.
//! * `read_model`: [`MongoReadModel`], connecting, the queries and commands,
//!   and the [`ReadModel`] implementation.
//! * `document`: an [`Order`] as a stored document and back.
//! * `reply`: reading command replies and translating driver errors.

#[cfg(doc)]
use order_core::{domain::Order, ports::ReadModel};

mod document;
mod options;
mod read_model;
mod reply;

pub use options::MongoOptions;
pub use read_model::{connect, MongoReadModel};

/// Database used by the service unless configured otherwise.
pub const DEFAULT_DATABASE: &str = "order_read_db";
/// Collection used by the service unless configured otherwise.
pub const DEFAULT_COLLECTION: &str = "orders";
