//! # order-core
//!
//! The heart of the order service, free of any database, HTTP or broker
//! dependency. A guided tour, in the order an order travels:
//!
//! 1. [`domain`]: the `Order` aggregate. A validated command is *decided*
//!    into past-tense events; `apply` folds events into state.
//! 2. [`app::commands`]: the command service commits events, current state
//!    and outbox rows in ONE transaction through the [`ports::EventStore`]
//!    port, group-committing concurrent commands.
//! 3. [`app::relay`]: the outbox relay publishes committed events through
//!    [`ports::EventBus`] with bounded retries, and parks what cannot be
//!    published in the DLQ, holding an order's later events behind it.
//!    Instances share the outbox by partition ([`app::relay::partitions`],
//!    leases with fencing epochs behind [`ports::RelayLeases`]); every
//!    settle is written under those fences ([`ports::Outbox::settle`]).
//! 4. [`app::projector`]: the projector folds bus messages into the
//!    [`ports::ReadModel`] idempotently and dead-letters what it cannot
//!    process to the DLQ topic.
//! 5. [`app::dlq`]: what could not be published or processed.
//!    [`app::dlq::sequencing`] decides every rule of an order's parked
//!    sequence once (adapters only write guarded steps through
//!    [`ports::DlqStore::apply`]); [`app::dlq::recorder`] records consumers'
//!    failures; [`app::dlq::service`] lets operators inspect, replay, reset
//!    and skip; [`app::dlq::jobs`] runs bulk replays; [`app::dlq::redrive`]
//!    (opt-in) replays retryable publish failures once the bus is back.
//!
//! [`ports::sql`] holds what the two SQL adapters share (statements, row
//! mapping, the settle's decision); [`testkit`] holds the contract suites
//! every adapter must pass.

pub mod app;
pub mod domain;
pub mod ports;
#[cfg(feature = "testkit")]
pub mod testkit;
