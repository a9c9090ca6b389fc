//! Past-tense order events, the envelope they travel in (event store rows,
//! outbox rows, bus messages) and upcasting of older schema versions.

use chrono::{DateTime, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::str::FromStr;
use uuid::Uuid;

use super::order::{Order, OrderItem, AGGREGATE_TYPE};

/// Current wall-clock time at the precision every store keeps (microseconds),
/// so a value read back equals the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderEvent {
    Created {
        customer_id: String,
        restaurant_id: String,
        items: Vec<OrderItem>,
        total_amount: Decimal,
    },
    Confirmed {
        payment_id: String,
    },
    Cancelled {
        reason: Option<String>,
    },
    PreparationStarted,
    MarkedReady,
    Delivered,
}

pub const ORDER_CREATED: &str = "OrderCreated";
pub const ORDER_CONFIRMED: &str = "OrderConfirmed";
pub const ORDER_CANCELLED: &str = "OrderCancelled";
pub const ORDER_PREPARATION_STARTED: &str = "OrderPreparationStarted";
pub const ORDER_MARKED_READY: &str = "OrderMarkedReady";
pub const ORDER_DELIVERED: &str = "OrderDelivered";

/// Why stored event data could not be turned into an [`OrderEvent`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventDecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("unsupported schema version {version} for {event_type}")]
    UnsupportedVersion { event_type: String, version: u32 },
    #[error("malformed {event_type} data: {reason}")]
    Malformed { event_type: String, reason: String },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedData {
    order_id: Uuid,
    customer_id: String,
    restaurant_id: String,
    items: Vec<OrderItem>,
    total_amount: Decimal,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfirmedData {
    payment_id: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelledData {
    #[serde(default)]
    reason: Option<String>,
}

impl OrderEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::Created { .. } => ORDER_CREATED,
            OrderEvent::Confirmed { .. } => ORDER_CONFIRMED,
            OrderEvent::Cancelled { .. } => ORDER_CANCELLED,
            OrderEvent::PreparationStarted => ORDER_PREPARATION_STARTED,
            OrderEvent::MarkedReady => ORDER_MARKED_READY,
            OrderEvent::Delivered => ORDER_DELIVERED,
        }
    }

    /// The schema version written for new events of this type.
    pub fn schema_version(&self) -> u32 {
        match self {
            // v1 (the Java service) carried money as JSON numbers; v2 as decimal strings.
            OrderEvent::Created { .. } => 2,
            _ => 1,
        }
    }

    /// The `data` object of the envelope at the current schema version.
    pub fn to_data(&self, order_id: Uuid) -> Value {
        match self {
            OrderEvent::Created {
                customer_id,
                restaurant_id,
                items,
                total_amount,
            } => serde_json::to_value(CreatedData {
                order_id,
                customer_id: customer_id.clone(),
                restaurant_id: restaurant_id.clone(),
                items: items.clone(),
                total_amount: *total_amount,
            })
            .unwrap_or(Value::Null),
            OrderEvent::Confirmed { payment_id } => {
                json!({ "orderId": order_id, "paymentId": payment_id })
            }
            OrderEvent::Cancelled { reason } => json!({ "orderId": order_id, "reason": reason }),
            OrderEvent::PreparationStarted | OrderEvent::MarkedReady | OrderEvent::Delivered => {
                json!({ "orderId": order_id })
            }
        }
    }

    /// Decodes stored data of any supported schema version, upcasting old ones.
    pub fn from_data(
        event_type: &str,
        schema_version: u32,
        data: &Value,
    ) -> Result<Self, EventDecodeError> {
        let malformed = |reason: String| EventDecodeError::Malformed {
            event_type: event_type.to_owned(),
            reason,
        };
        let unsupported = || EventDecodeError::UnsupportedVersion {
            event_type: event_type.to_owned(),
            version: schema_version,
        };
        match event_type {
            ORDER_CREATED => {
                // Read from the borrowed value: no copy of the data is made
                // unless it has to be upcast.
                let d = match schema_version {
                    1 => CreatedData::deserialize(&upcast_created_v1(data).map_err(malformed)?),
                    2 => CreatedData::deserialize(data),
                    _ => return Err(unsupported()),
                }
                .map_err(|e| malformed(e.to_string()))?;
                Ok(OrderEvent::Created {
                    customer_id: d.customer_id,
                    restaurant_id: d.restaurant_id,
                    items: d.items,
                    total_amount: d.total_amount,
                })
            }
            other => {
                if schema_version != 1 {
                    return Err(unsupported());
                }
                match other {
                    ORDER_CONFIRMED => {
                        let d = ConfirmedData::deserialize(data)
                            .map_err(|e| malformed(e.to_string()))?;
                        Ok(OrderEvent::Confirmed {
                            payment_id: d.payment_id,
                        })
                    }
                    ORDER_CANCELLED => {
                        let d = CancelledData::deserialize(data)
                            .map_err(|e| malformed(e.to_string()))?;
                        Ok(OrderEvent::Cancelled { reason: d.reason })
                    }
                    ORDER_PREPARATION_STARTED => Ok(OrderEvent::PreparationStarted),
                    ORDER_MARKED_READY => Ok(OrderEvent::MarkedReady),
                    ORDER_DELIVERED => Ok(OrderEvent::Delivered),
                    unknown => Err(EventDecodeError::UnknownType(unknown.to_owned())),
                }
            }
        }
    }
}

/// v1 `OrderCreated` (the Java service's shape) wrote prices and the total as
/// JSON numbers. They are re-read from their decimal text, never through
/// float arithmetic, and a missing total is recomputed from the items.
fn upcast_created_v1(data: &Value) -> Result<Value, String> {
    let mut data = data.clone();
    let obj = data
        .as_object_mut()
        .ok_or_else(|| "data is not an object".to_owned())?;
    let mut total = Decimal::ZERO;
    if let Some(Value::Array(items)) = obj.get_mut("items") {
        for item in items.iter_mut() {
            let price = item
                .get("price")
                .map(decimal_from_json)
                .transpose()?
                .ok_or_else(|| "item without price".to_owned())?;
            let qty = item.get("quantity").and_then(Value::as_u64).unwrap_or(0);
            total += price * Decimal::from(qty);
            if let Some(o) = item.as_object_mut() {
                o.insert("price".into(), Value::String(price.to_string()));
            }
        }
    }
    let total = match obj.get("totalAmount") {
        Some(v) if !v.is_null() => decimal_from_json(v)?,
        _ => total,
    };
    obj.insert("totalAmount".into(), Value::String(total.to_string()));
    Ok(data)
}

fn decimal_from_json(v: &Value) -> Result<Decimal, String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => return Err(format!("not a decimal: {other}")),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|e| format!("not a decimal {text:?}: {e}"))
}

/// The envelope every event travels in: stored, put in the outbox, published
/// as the Kafka message value, and kept as `originalEvent` in the DLQ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    pub event_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "OrderCreated"))]
    pub event_type: String,
    pub aggregate_id: String,
    #[cfg_attr(feature = "openapi", schema(example = "Order"))]
    pub aggregate_type: String,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub schema_version: u32,
    pub occurred_on: DateTime<Utc>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub correlation_id: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub causation_id: Option<String>,
    /// The W3C `traceparent` of the request that caused the event (the
    /// caller's trace, or one the service started), carried to the bus as
    /// the CloudEvents `ce_traceparent` header. Absent from events written
    /// before it existed and from the event store's own columns: it travels
    /// with the outbox row and the DLQ record, which keep the whole envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event's own fields (its `eventType` and `schemaVersion` say which).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Value,
}

impl EventEnvelope {
    /// Wraps a freshly decided event of `order` at `version`.
    pub fn new(
        order_id: Uuid,
        event: &OrderEvent,
        version: u64,
        occurred_on: DateTime<Utc>,
        correlation_id: Option<String>,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_owned(),
            aggregate_id: order_id.to_string(),
            aggregate_type: AGGREGATE_TYPE.to_owned(),
            version,
            schema_version: event.schema_version(),
            occurred_on,
            correlation_id,
            causation_id: None,
            traceparent: None,
            data: event.to_data(order_id),
        }
    }

    /// Decodes (and upcasts) the domain event this envelope carries.
    pub fn decode(&self) -> Result<OrderEvent, EventDecodeError> {
        OrderEvent::from_data(&self.event_type, self.schema_version, &self.data)
    }

    /// The trace id (32 hex digits) of [`Self::traceparent`], for log spans.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_deref().and_then(trace_id_of)
    }

    /// The envelope's JSON text as published.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// An envelope as read back from the event store, with its global position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: i64,
    pub envelope: EventEnvelope,
}

/// Why a history could not be folded into an order.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FoldError {
    #[error(transparent)]
    Decode(#[from] EventDecodeError),
    #[error("aggregate id {0:?} is not a UUID")]
    BadAggregateId(String),
    #[error("event {event_id} (version {version}) cannot follow the state before it")]
    Inconsistent { event_id: Uuid, version: u64 },
}

/// Folds one envelope into `state`.
pub fn fold_one(state: Option<&Order>, env: &EventEnvelope) -> Result<Order, FoldError> {
    let id = Uuid::parse_str(&env.aggregate_id)
        .map_err(|_| FoldError::BadAggregateId(env.aggregate_id.clone()))?;
    let event = env.decode()?;
    Order::apply(state, id, &event, env.version, env.occurred_on).ok_or(FoldError::Inconsistent {
        event_id: env.event_id,
        version: env.version,
    })
}

/// Folds a whole history (in version order) into the current state.
pub fn fold<'a>(
    events: impl IntoIterator<Item = &'a EventEnvelope>,
) -> Result<Option<Order>, FoldError> {
    let mut state: Option<Order> = None;
    for env in events {
        state = Some(fold_one(state.as_ref(), env)?);
    }
    Ok(state)
}

/// The parent id (the sender's span) of a W3C `traceparent`, as 16 hex
/// digits; `None` when it is not one.
pub fn span_id_of(traceparent: &str) -> Option<&str> {
    trace_id_of(traceparent)?;
    let id = traceparent.get(36..52)?;
    (traceparent.as_bytes().get(52) == Some(&b'-') && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(id)
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`),
/// or `None` when the value does not have that shape.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let id = traceparent.get(3..35)?;
    (traceparent.as_bytes().get(2) == Some(&b'-')
        && traceparent.as_bytes().get(35) == Some(&b'-')
        && id.bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(id)
}
