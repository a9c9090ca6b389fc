//! # order-service
//!
//! The service binary's library: everything but the `main` shim. A tour:
//!
//! - [`config`]: layered configuration (built-in `config/default.toml` →
//!   `ORDER_CONFIG_FILE` → `ORDER_*` variables), validated at start-up.
//! - [`startup`]: opens the SQLite adapters and the embedded bus, builds the
//!   `order-core` services, starts the outbox relay, the projector, the
//!   DLQ recorder and (opt-in) the automatic DLQ redrive, and serves HTTP
//!   with graceful shutdown.
//! - [`health`]: the probes behind health, readiness and the metric gauges.
//! - [`http`]: the REST API of DESIGN §5 (orders, DLQ, test endpoints, ops),
//!   with every error as `application/problem+json`.
//! - [`telemetry`]: tracing set-up; [`otlp`]: the optional export of
//!   traces to an OpenTelemetry collector.
//! - [`cli`]: the command line (`serve`, `migrate`, `rebuild-read-model`,
//!   and `dlq …`, the DLQ operations as a client of a running service).

pub mod cli;
pub mod config;
pub mod health;
pub mod http;
pub mod otlp;
pub mod startup;
pub mod telemetry;
