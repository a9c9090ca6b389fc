//! Builds the whole application from a [`Config`]: adapters, services, the
//! background workers (outbox relay, projector, DLQ recorder, the opt-in
//! automatic DLQ redrive) and the HTTP server, and shuts them down
//! gracefully.
//!
//! Where an event goes after commit: `GroupCommitter` (one transaction per
//! batch) → wakes the `OutboxRelay` → publishes through the `SwitchableBus`
//! (the operator's fault switch) → the `Projector` consumes it into the read
//! model; what cannot be published is parked in the DLQ.
//!
//! The parts: [`backends`] picks the adapters, [`workers`] builds, starts
//! and stops the background loops, `state` is what handlers get, `server`
//! serves HTTP, `offline` runs the one-shot commands. [`build`] wires them.

mod backends;
mod offline;
mod server;
mod state;
mod workers;

use std::sync::Arc;

use order_core::app::{Auditor, DlqService, Listings, OrderQueries};

pub use self::backends::{lock_database, open_backends, Backends};
pub use self::offline::{migrate, rebuild_read_model, relay_partitions};
pub use self::server::{spawn_app, RunningApp};
pub use self::state::{AppState, BusSwitch, Orders, Services};
pub use self::workers::Workers;
use self::workers::{Background, Shared, WorkerPorts};
use crate::config::{AuthPosture, Config, ConfigError};
use crate::health::Health;
use crate::http::auth::Auth;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot open {what} at {path}: {cause}")]
    Open {
        what: &'static str,
        path: String,
        cause: String,
    },
    #[error("cannot subscribe to the event bus: {0}")]
    Bus(String),
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: String, cause: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// The state plus its running workers, without an HTTP server (tests drive
/// it through [`crate::http::router`]).
pub struct App {
    pub state: AppState,
    pub workers: Workers,
}

/// Opens the adapters, builds the services and starts the workers.
pub async fn build(config: Config) -> Result<App, StartupError> {
    // Before anything is opened: a deployment without credentials stops here.
    let posture = config.auth_posture()?;
    announce(&config, posture);
    let auth = Arc::new(Auth::new(&config.auth, posture).map_err(StartupError::Other)?);
    let backends = open_backends(&config).await?;
    let (event_store, outbox, dlq_store, read_model) = (
        backends.event_store,
        backends.outbox,
        backends.dlq_store,
        backends.read_model,
    );
    let audit = Auditor::new(backends.audit_log);
    let shared = Shared::new(&config, backends::open_bus(&config).await?);

    let commands = workers::commands(&config, &shared, &event_store);
    let queries = OrderQueries::new(event_store.clone());
    let dlq = Arc::new(
        DlqService::new(
            dlq_store.clone(),
            shared.bus.clone(),
            shared.policy,
            config.topic_events.clone(),
            shared.metrics.clone(),
            audit.clone(),
        )
        .with_read_model(read_model.clone()),
    );
    let health = Health {
        event_store: event_store.clone(),
        outbox: outbox.clone(),
        dlq_store: dlq_store.clone(),
        read_model: read_model.clone(),
        bus: shared.bus.clone(),
        fault: shared.fault.clone(),
        orphans: Default::default(),
    };
    let listings = Listings::new(dlq_store.clone(), backends.replay_jobs.clone());
    let background = Background::new(
        &config,
        &shared,
        WorkerPorts {
            event_store,
            outbox,
            leases: backends.leases,
            dlq_store: dlq_store.clone(),
            read_model: read_model.clone(),
            replay_jobs: backends.replay_jobs,
        },
        &dlq,
        &audit,
    );
    let workers = background
        .start(&config, &shared.raw_bus, backends.lock)
        .await?;

    if let Some(jwks) = auth.jwks() {
        // In the background: start-up does not wait for the identity
        // provider (tokens get 401 until its keys are there).
        jwks.spawn_refresher();
    }
    let state = AppState::new(Services {
        config,
        orders: Arc::new(Orders {
            commands,
            queries,
            read_model,
        }),
        dlq,
        jobs: background.jobs,
        listings,
        audit,
        health,
        projector: background.projector,
        relay: background.relay,
        bus_switch: BusSwitch {
            bus: shared.bus,
            fault: shared.fault,
        },
        raw_bus: shared.raw_bus,
        dlq_store,
        metrics: shared.metrics,
        http_metrics: Default::default(),
        auth,
    });
    Ok(App { state, workers })
}

/// Says at start-up, loudly when open, how callers are authenticated.
fn announce(config: &Config, posture: AuthPosture) {
    match posture {
        AuthPosture::Enforced => tracing::info!(
            api_keys = config.auth.api_keys.len(),
            jwt = config.auth.jwt.is_some(),
            jwks_url = config
                .auth
                .jwt
                .as_ref()
                .and_then(|j| j.jwks.as_ref())
                .map(|j| j.url.as_str()),
            "authentication on"
        ),
        AuthPosture::Disabled => tracing::warn!(
            "AUTHENTICATION DISABLED (ORDER_AUTH_DISABLED=true): every caller is admin"
        ),
        AuthPosture::OpenEmbedded => tracing::warn!(
            "AUTHENTICATION OFF: no credentials configured, every caller is admin; set \
             ORDER_API_KEYS, ORDER_ADMIN_API_KEY or ORDER_JWT_* before exposing this service"
        ),
    }
}
