//! The synthetic test publish (`POST /api/test/publish-event`) in its own
//! file: it exists to demonstrate the publish → park → replay flow without a
//! real outage, which is not an operation on existing DLQ records like the
//! rest of [`super::service`].

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::sequencing;
use super::service::DlqService;
use crate::app::error::AppError;
use crate::app::metrics::Metrics;
use crate::app::principal::Principal;
use crate::app::relay::{message_for, parked_record, Publisher, Sent};
use crate::domain::{now, EventEnvelope};
use crate::ports::{AuditAction, FailureClass};

/// Aggregate type of the synthetic events of `POST /api/test/publish-event`;
/// the projector ignores aggregates that are not orders.
pub const TEST_AGGREGATE_TYPE: &str = "TestOrder";

/// Answer of `POST /api/test/publish-event`: published, or parked in the
/// DLQ after the retries (`success` false).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TestPublishOutcome {
    pub success: bool,
    pub message: String,
    #[cfg_attr(feature = "openapi", schema(format = Uuid))]
    pub event_id: String,
    pub order_id: String,
}

impl DlqService {
    /// Publishes a synthetic OrderCreated through the retry policy; on
    /// exhaustion it is parked like any relay failure.
    pub async fn publish_test_event(
        &self,
        who: &Principal,
    ) -> Result<TestPublishOutcome, AppError> {
        let outcome = self.publish_test_event_unaudited().await;
        let target = outcome.as_ref().ok().map(|o| o.event_id.clone());
        self.audit
            .record_outcome(
                who,
                AuditAction::TestPublishEvent,
                target.as_deref(),
                json!({}),
                &outcome,
                |o| if o.success { "PUBLISHED" } else { "PARKED" }.to_owned(),
            )
            .await;
        outcome
    }

    async fn publish_test_event_unaudited(&self) -> Result<TestPublishOutcome, AppError> {
        let at = now();
        let order_id = format!("test-order-{}", at.timestamp_millis());
        let env = EventEnvelope {
            event_id: Uuid::now_v7(),
            event_type: crate::domain::events::ORDER_CREATED.to_owned(),
            aggregate_id: order_id.clone(),
            aggregate_type: TEST_AGGREGATE_TYPE.to_owned(),
            version: 1,
            schema_version: 2,
            occurred_on: at,
            correlation_id: None,
            causation_id: None,
            traceparent: None,
            data: json!({
                "orderId": order_id,
                "customerId": "test-customer",
                "restaurantId": "test-restaurant",
                "items": [{"menuItemId": "test-item", "name": "Test item", "price": "9.99", "quantity": 1}],
                "totalAmount": "9.99",
            }),
        };
        let msg = message_for(&env, &self.topic, None);
        let publisher = Publisher {
            bus: self.bus.as_ref(),
            policy: self.policy,
            metrics: &self.metrics,
        };
        let result = publisher
            .send(&[msg])
            .await
            .into_iter()
            .next()
            .unwrap_or(Ok(Sent::Now));
        let event_id = env.event_id.to_string();
        match result {
            Ok(_) => {
                Metrics::inc(&self.metrics.events_published);
                Ok(TestPublishOutcome {
                    success: true,
                    message: format!("event published to {}", self.topic),
                    event_id,
                    order_id,
                })
            }
            Err(e) => {
                let reason = format!(
                    "publish failed after {} attempt(s): {e}",
                    self.policy.max_attempts
                );
                let record = parked_record(
                    &env,
                    &self.topic,
                    reason.clone(),
                    Some(FailureClass::of(&e)),
                    None,
                );
                sequencing::record(self.dlq.as_ref(), &[record]).await?;
                Metrics::inc(&self.metrics.events_parked);
                Ok(TestPublishOutcome {
                    success: false,
                    message: format!("{reason}; parked in the DLQ as PENDING"),
                    event_id,
                    order_id,
                })
            }
        }
    }
}
