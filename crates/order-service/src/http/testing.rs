//! `/api/test`: demo and test helpers, mounted only when
//! `ORDER_TEST_ENDPOINTS` is on. The publish and the bus switch are audited.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use order_core::app::{Auditor, DlqService, Principal};
use order_core::ports::AuditAction;
use serde::Serialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::principal;
use crate::health::CHECK_TIMEOUT;
use crate::startup::BusSwitch;

pub async fn publish_event(
    State(dlq): State<Arc<DlqService>>,
    who: Option<Extension<Principal>>,
) -> Result<Json<order_core::app::TestPublishOutcome>, ApiError> {
    Ok(Json(dlq.publish_test_event(&principal(who)).await?))
}

#[derive(Serialize)]
pub struct BusStatus {
    kafka: &'static str,
    message: String,
}

/// Asks the configured bus (through the fault switch) whether it is
/// reachable. Publishes nothing.
pub async fn kafka_status(State(switch): State<BusSwitch>) -> Json<BusStatus> {
    let checked = tokio::time::timeout(CHECK_TIMEOUT, switch.bus.check(CHECK_TIMEOUT)).await;
    Json(match checked {
        Ok(Ok(message)) => BusStatus {
            kafka: "UP",
            message,
        },
        Ok(Err(e)) => BusStatus {
            kafka: "DOWN",
            message: e.to_string(),
        },
        Err(_) => BusStatus {
            kafka: "DOWN",
            message: format!("no answer from the bus within {CHECK_TIMEOUT:?}"),
        },
    })
}

pub async fn bus_down(
    State(switch): State<BusSwitch>,
    State(audit): State<Auditor>,
    who: Option<Extension<Principal>>,
) -> Json<serde_json::Value> {
    switch.fault.set_down(true);
    let who = principal(who);
    tracing::warn!(principal = %who.name, "bus switched OFF by operator: every publish attempt now fails");
    audit
        .record(&who, AuditAction::TestBusDown, None, json!({}), "OK")
        .await;
    Json(json!({ "busDown": true }))
}

pub async fn bus_up(
    State(switch): State<BusSwitch>,
    State(audit): State<Auditor>,
    who: Option<Extension<Principal>>,
) -> Json<serde_json::Value> {
    switch.fault.set_down(false);
    let who = principal(who);
    tracing::info!(principal = %who.name, "bus switched back ON by operator");
    audit
        .record(&who, AuditAction::TestBusUp, None, json!({}), "OK")
        .await;
    Json(json!({ "busDown": false }))
}
