//! # order-service
//!
//! The service binary's library: everything but the `main` shim. A tour:
//!
//! - [`config`]: layered configuration (built-in `config/default.toml` →
//!   `ORDER_CONFIG_FILE` → `ORDER_*` variables), validated at start-up.
//! - [`startup`]: opens the SQLite adapters and the embedded bus, builds the
//!   `order-core` services, starts the outbox relay, the projector and the
//!   DLQ recorder, and serves HTTP with graceful shutdown.
//! - [`http`]: the REST API of DESIGN §5 (orders, DLQ, test endpoints, ops),
//!   with every error as `application/problem+json`.
//! - [`telemetry`]: tracing set-up.
//! - [`cli`]: the command line (`serve`, `migrate`, `rebuild-read-model`).

pub mod cli;
pub mod config;
pub mod http;
pub mod startup;
pub mod telemetry;
