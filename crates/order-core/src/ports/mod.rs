//! Ports: the traits the application services need from the outside world.
//! Adapters (SQLite, MySQL, Kafka, MongoDB, the embedded bus) implement them
//! and translate their driver errors into the error types defined here before
//! anything leaves the adapter. Every port has a contract suite in
//! [`crate::testkit`] that every adapter must pass. [`sql`] holds what the
//! two SQL adapters share (statements, row mapping), still without a driver.

mod audit;
mod bus;
mod dlq_revisions;
mod dlq_store;
pub mod dlt;
mod error;
mod event_store;
mod jobs;
mod outbox;
mod page;
mod read_model;
mod relay_lease;
pub mod sql;

pub use audit::*;
pub use bus::*;
pub use dlq_revisions::*;
pub use dlq_store::*;
pub use error::*;
pub use event_store::*;
pub use jobs::*;
pub use outbox::*;
pub use page::*;
pub use read_model::*;
pub use relay_lease::*;
