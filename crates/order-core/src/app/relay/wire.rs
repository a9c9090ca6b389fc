//! The wire format of a message: value = the envelope JSON, key = the order
//! id (one order's events stay on one partition, in order), CloudEvents
//! `ce_*` headers so generic consumers can route without parsing the value.

use crate::domain::EventEnvelope;
use crate::ports::BusMessage;

/// Header carrying the event's global position (absent for synthetic events).
pub const POSITION_HEADER: &str = "orders_position";

/// The message that carries `env` to `topic`.
pub fn message_for(env: &EventEnvelope, topic: &str, position: Option<i64>) -> BusMessage {
    let mut headers = vec![
        ("ce_specversion".to_owned(), "1.0".to_owned()),
        ("ce_id".to_owned(), env.event_id.to_string()),
        ("ce_type".to_owned(), env.event_type.clone()),
        ("ce_source".to_owned(), "order-service".to_owned()),
        ("ce_subject".to_owned(), env.aggregate_id.clone()),
        ("ce_time".to_owned(), env.occurred_on.to_rfc3339()),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("eventId".to_owned(), env.event_id.to_string()),
        ("eventType".to_owned(), env.event_type.clone()),
        ("aggregateId".to_owned(), env.aggregate_id.clone()),
        ("version".to_owned(), env.version.to_string()),
    ];
    if let Some(c) = &env.correlation_id {
        headers.push(("ce_correlationid".to_owned(), c.clone()));
    }
    if let Some(p) = position {
        headers.push((POSITION_HEADER.to_owned(), p.to_string()));
    }
    BusMessage {
        topic: topic.to_owned(),
        key: env.aggregate_id.clone(),
        payload: env.to_json().into_bytes(),
        headers,
    }
}
