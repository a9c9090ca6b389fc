//! The wire format of a message: value = the envelope JSON, key = the order
//! id (one order's events stay on one partition, in order), CloudEvents
//! `ce_*` headers so generic consumers can route without parsing the value.

use crate::domain::EventEnvelope;
use crate::ports::BusMessage;

/// The CloudEvents distributed-tracing extension: the W3C `traceparent` of
/// the request that caused the event.
pub const TRACEPARENT_HEADER: &str = "ce_traceparent";

/// Header carrying the event's global position (absent for synthetic events).
pub const POSITION_HEADER: &str = "orders_position";

/// The message that carries `env` to `topic`.
pub fn message_for(env: &EventEnvelope, topic: &str, position: Option<i64>) -> BusMessage {
    message_with_payload(env, topic, position, env.to_json())
}

/// The message that carries `env` to `topic` with `payload`, the envelope's
/// JSON as already encoded (an outbox row's): not encoded a second time.
pub fn message_with_payload(
    env: &EventEnvelope,
    topic: &str,
    position: Option<i64>,
    payload: String,
) -> BusMessage {
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
    if let Some(t) = &env.traceparent {
        headers.push((TRACEPARENT_HEADER.to_owned(), t.clone()));
    }
    if let Some(p) = position {
        headers.push((POSITION_HEADER.to_owned(), p.to_string()));
    }
    BusMessage {
        topic: topic.to_owned(),
        key: env.aggregate_id.clone(),
        payload: payload.into_bytes(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{now, OrderEvent};

    fn envelope() -> EventEnvelope {
        let event = OrderEvent::Cancelled { reason: None };
        EventEnvelope::new(uuid::Uuid::now_v7(), &event, 2, now(), None)
    }

    fn header<'a>(m: &'a BusMessage, name: &str) -> Option<&'a str> {
        m.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_traceparent_travels_as_the_cloudevents_tracing_header() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut env = envelope();
        env.traceparent = Some(tp.to_owned());
        let m = message_for(&env, "order-events", Some(7));
        assert_eq!(header(&m, TRACEPARENT_HEADER), Some(tp));
        assert_eq!(header(&m, "ce_id"), Some(env.event_id.to_string().as_str()));
    }

    #[test]
    fn an_already_encoded_envelope_is_sent_as_it_is_with_the_same_headers() {
        let env = envelope();
        let encoded = message_for(&env, "order-events", Some(7));
        assert_eq!(encoded.payload, env.to_json().into_bytes());
        let stored = message_with_payload(&env, "order-events", Some(7), env.to_json());
        assert_eq!(stored, encoded);
    }

    #[test]
    fn an_event_without_a_traceparent_has_no_tracing_header() {
        let m = message_for(&envelope(), "order-events", None);
        assert_eq!(header(&m, TRACEPARENT_HEADER), None);
    }
}
