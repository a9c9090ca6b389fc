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
use super::ops::UpDown;
use crate::health::CHECK_TIMEOUT;
use crate::startup::BusSwitch;

#[utoipa::path(
    post,
    path = "/api/test/publish-event",
    operation_id = "testPublishEvent",
    tag = "test",
    summary = "Publish a synthetic OrderCreated (parked in the DLQ when the retries are exhausted)",
    responses(
        (status = 200, description = "Published, or parked (success=false).", body = order_core::app::TestPublishOutcome),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn publish_event(
    State(dlq): State<Arc<DlqService>>,
    who: Option<Extension<Principal>>,
) -> Result<Json<order_core::app::TestPublishOutcome>, ApiError> {
    Ok(Json(dlq.publish_test_event(&principal(who)).await?))
}

/// Whether the bus answered a metadata request.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BusStatus {
    kafka: UpDown,
    message: String,
}

/// The operator's fault switch.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BusSwitchState {
    /// Every publish attempt fails while true.
    bus_down: bool,
}

/// Asks the configured bus (through the fault switch) whether it is
/// reachable. Publishes nothing.
#[utoipa::path(
    get,
    path = "/api/test/kafka-status",
    operation_id = "testKafkaStatus",
    tag = "test",
    summary = "Is the bus reachable? Publishes nothing.",
    responses(
        (status = 200, description = "UP or DOWN (DOWN while the bus is switched off).", body = BusStatus),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn kafka_status(State(switch): State<BusSwitch>) -> Json<BusStatus> {
    let checked = tokio::time::timeout(CHECK_TIMEOUT, switch.bus.check(CHECK_TIMEOUT)).await;
    Json(match checked {
        Ok(Ok(message)) => BusStatus {
            kafka: UpDown::Up,
            message,
        },
        Ok(Err(e)) => BusStatus {
            kafka: UpDown::Down,
            message: e.to_string(),
        },
        Err(_) => BusStatus {
            kafka: UpDown::Down,
            message: format!("no answer from the bus within {CHECK_TIMEOUT:?}"),
        },
    })
}

#[utoipa::path(
    post,
    path = "/api/test/bus/down",
    operation_id = "testBusDown",
    tag = "test",
    summary = "Make every publish attempt fail until /api/test/bus/up",
    responses(
        (status = 200, description = "Switched off.", body = BusSwitchState),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn bus_down(
    State(switch): State<BusSwitch>,
    State(audit): State<Auditor>,
    who: Option<Extension<Principal>>,
) -> Json<BusSwitchState> {
    switch.fault.set_down(true);
    let who = principal(who);
    tracing::warn!(principal = %who.name, "bus switched OFF by operator: every publish attempt now fails");
    audit
        .record(&who, AuditAction::TestBusDown, None, json!({}), "OK")
        .await;
    Json(BusSwitchState { bus_down: true })
}

#[utoipa::path(
    post,
    path = "/api/test/bus/up",
    operation_id = "testBusUp",
    tag = "test",
    summary = "Undo /api/test/bus/down",
    responses(
        (status = 200, description = "Switched on.", body = BusSwitchState),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn bus_up(
    State(switch): State<BusSwitch>,
    State(audit): State<Auditor>,
    who: Option<Extension<Principal>>,
) -> Json<BusSwitchState> {
    switch.fault.set_down(false);
    let who = principal(who);
    tracing::info!(principal = %who.name, "bus switched back ON by operator");
    audit
        .record(&who, AuditAction::TestBusUp, None, json!({}), "OK")
        .await;
    Json(BusSwitchState { bus_down: false })
}
