//! The application state and the slices of it handlers take.
//!
//! [`AppState`] is the root the router is built with; handlers do not take
//! it whole but extract the part they use (`State<Health>`,
//! `State<Arc<DlqService>>`, …) through axum's `FromRef`, so a handler's
//! signature says what it may touch.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use order_core::app::{
    Auditor, CommandService, DlqService, FaultSwitch, Listings, Metrics, OrderQueries, OutboxRelay,
    Projector, ReplayJobs,
};
use order_core::ports::{DlqStore, EventBus, ReadModel};

use crate::config::Config;
use crate::health::Health;
use crate::http::auth::Auth;
use crate::http::server_metrics::HttpMetrics;

/// Everything a request handler needs.
pub struct Services {
    pub config: Config,
    /// The order endpoints' commands and queries.
    pub orders: Arc<Orders>,
    pub dlq: Arc<DlqService>,
    /// Bulk replay jobs (`POST /api/dlq/replay`, `/api/dlq/jobs`).
    pub jobs: Arc<ReplayJobs>,
    /// The DLQ record and replay job listings (keyset pages).
    pub listings: Listings,
    /// The audit trail of DLQ, test and admin actions.
    pub audit: Auditor,
    /// Health, readiness and the store-backed gauges.
    pub health: Health,
    pub projector: Arc<Projector>,
    pub relay: Arc<OutboxRelay>,
    /// The bus behind the fault switch, and the switch (test endpoints).
    pub bus_switch: BusSwitch,
    /// The bus itself: subscriptions and the projector's dead letters.
    pub raw_bus: Arc<dyn EventBus>,
    /// The DLQ records as stored (tests seed it directly).
    pub dlq_store: Arc<dyn DlqStore>,
    pub metrics: Arc<Metrics>,
    /// The HTTP request duration histogram.
    pub http_metrics: Arc<HttpMetrics>,
    /// API keys, JWT verification and the replay rate limiter.
    pub auth: Arc<Auth>,
}

/// What the order endpoints use: the write side and both read sides.
pub struct Orders {
    pub commands: CommandService,
    /// Current state and history from the event store.
    pub queries: OrderQueries,
    /// Searches over the projected read model.
    pub read_model: Arc<dyn ReadModel>,
}

/// The operator's fault switch and the bus it guards.
#[derive(Clone)]
pub struct BusSwitch {
    /// The bus behind the switch: everything that publishes events.
    pub bus: Arc<dyn EventBus>,
    pub fault: Arc<FaultSwitch>,
}

/// Shared, cheaply clonable application state.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// `FromRef<AppState>` for a part that is cloned out of [`Services`].
macro_rules! sub_state {
    ($($ty:ty => $field:ident),* $(,)?) => {
        $(
            impl FromRef<AppState> for $ty {
                fn from_ref(state: &AppState) -> Self {
                    state.$field.clone()
                }
            }
        )*
    };
}

sub_state! {
    Arc<Orders> => orders,
    Arc<DlqService> => dlq,
    Arc<ReplayJobs> => jobs,
    Listings => listings,
    Auditor => audit,
    Health => health,
    Arc<Projector> => projector,
    BusSwitch => bus_switch,
    Arc<Metrics> => metrics,
    Arc<HttpMetrics> => http_metrics,
    Arc<Auth> => auth,
}
