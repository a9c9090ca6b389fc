//! Request tracing end to end: request ids and the W3C `traceparent` in and
//! out of the HTTP layer, and a request's trace id carried by its event to
//! the bus (`ce_traceparent`) and into the projector's log line — on the
//! embedded profile and on Kafka (Tansu) with MariaDB and MongoDB.

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use order_core::domain::trace_id_of;
use order_core::ports::Delivery;
use serde_json::Value;
use support::router::test_app_with;
use support::{order_body, Service};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Projector lines at debug, the DLQ recorder's at info, everything else at
/// warn, as JSON lines.
const LOG: [(&str, &str); 2] = [
    (
        "ORDER_LOG",
        "warn,order_core::app::projector=debug,order_core::app::dlq::recorder=info",
    ),
    ("ORDER_LOG_FORMAT", "json"),
];

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

#[tokio::test]
async fn request_id_and_traceparent_are_echoed_and_continued() {
    let app = test_app_with(|_| {}).await;
    let r = app
        .call(
            Method::GET,
            "/health/live",
            None,
            &[("x-request-id", "req-42"), ("traceparent", TRACEPARENT)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-request-id"), Some("req-42"));
    // The caller's request id is the correlation id when it sent none.
    assert_eq!(r.header("x-correlation-id"), Some("req-42"));
    let out = r.header("traceparent").expect("a traceparent");
    assert_eq!(trace_id_of(out), Some(TRACE_ID), "{out}");
    assert_ne!(out, TRACEPARENT, "this service's span is a new one");
    assert!(out.ends_with("-01"), "the caller's flags are kept: {out}");
}

#[tokio::test]
async fn a_request_without_them_gets_a_generated_request_id_and_a_new_valid_trace() {
    let app = test_app_with(|_| {}).await;
    let mut traces = Vec::new();
    for traceparent in [
        None,
        Some("00-not-a-trace"),
        Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ] {
        let headers: Vec<(&str, &str)> = traceparent
            .map(|t| ("traceparent", t))
            .into_iter()
            .collect();
        let r = app
            .call(Method::GET, "/no/such/route", None, &headers)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let id = r.header("x-request-id").expect("a request id");
        assert!(is_uuid(id), "{id}");
        let out = r.header("traceparent").expect("a traceparent").to_owned();
        let bytes = out.as_bytes();
        assert_eq!(out.len(), 55, "{out}");
        assert!(
            out.starts_with("00-") && bytes[35] == b'-' && bytes[52] == b'-',
            "{out}"
        );
        assert!(
            out.bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{out}"
        );
        let trace_id = trace_id_of(&out).expect("a trace id").to_owned();
        assert_ne!(trace_id, TRACE_ID);
        assert_ne!(trace_id, "0".repeat(32));
        traces.push(trace_id);
    }
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 3, "each request starts its own trace");
}

#[tokio::test]
async fn an_error_is_answered_with_its_ids_and_a_problem() {
    // The whole stack (request id, trace context, access log, problem) on a
    // rejected request.
    let app = test_app_with(|_| {}).await;
    let r = app
        .call(
            Method::GET,
            "/api/orders/not-a-uuid",
            None,
            &[("traceparent", TRACEPARENT)],
        )
        .await;
    assert!(r.status.is_client_error(), "{:?}", r.status);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.header("x-request-id").is_some());
    assert_eq!(
        r.header("traceparent").and_then(trace_id_of),
        Some(TRACE_ID)
    );
}

/// The JSON log line with `message` for `event_id`, once it is there.
fn log_line(log: &str, message: &str, event_id: &str) -> Option<Value> {
    log.lines()
        .filter(|l| l.contains(message) && l.contains(event_id))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
}

/// The projector's JSON log line for `event_id`, once it is there.
fn projector_line(log: &str, event_id: &str) -> Option<Value> {
    log_line(log, "projector processed an event", event_id)
}

/// The trace id of the span a JSON log line was written in.
fn span_trace_id(line: &Value) -> Option<&str> {
    line["span"]["trace_id"].as_str()
}

fn message_of<'a>(deliveries: &'a [Delivery], order_id: &str) -> Option<&'a Delivery> {
    deliveries
        .iter()
        .find(|d| d.key.as_deref() == Some(order_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_reaches_the_bus_header_and_the_projector_log_on_the_embedded_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &LOG).await;
    let r = support::call(
        svc.addr,
        "POST",
        "/api/orders",
        Some(&order_body("c-trace", "r-trace")),
        &[("traceparent", TRACEPARENT)],
    )
    .await
    .expect("POST answered");
    assert_eq!(r.status, 201, "{}", r.text);
    let answered = r.header("traceparent").expect("traceparent").to_owned();
    assert_eq!(trace_id_of(&answered), Some(TRACE_ID));
    let order_id = r.json()["id"].as_str().expect("an id").to_owned();

    let bus = svc.bus();
    let message = support::eventually(20, "the order's event on the bus", || {
        let bus = bus.clone();
        let order_id = order_id.clone();
        async move {
            let all = support::read_deliveries(&bus, "order-events").await;
            message_of(&all, &order_id).cloned()
        }
    })
    .await;
    // The header is the service's traceparent, as answered: same trace,
    // the service's span as the parent.
    assert_eq!(message.header("ce_traceparent"), Some(answered.as_str()));
    let envelope: Value = serde_json::from_slice(&message.payload).expect("an envelope");
    assert_eq!(envelope["traceparent"], answered.as_str());
    let event_id = envelope["eventId"].as_str().expect("eventId").to_owned();

    let line = support::eventually(20, "the projector's line for the event", || {
        let log = svc.log();
        let event_id = event_id.clone();
        async move { projector_line(&log, &event_id) }
    })
    .await;
    assert_eq!(span_trace_id(&line), Some(TRACE_ID), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_reaches_the_kafka_header_and_the_projector_log_on_the_production_profile() {
    use support::production::consumer::read_topic_until;
    use support::production::{eventually, ProdService, Services};

    let services = Services::from_env();
    let svc = ProdService::start(&services, &services.kafka_brokers, &LOG).await;
    let r = support::call(
        svc.addr,
        "POST",
        "/api/orders",
        Some(&order_body("c-trace", "r-trace")),
        &[("traceparent", TRACEPARENT)],
    )
    .await
    .expect("POST answered");
    assert_eq!(r.status, 201, "{}", r.text);
    let answered = r.header("traceparent").expect("traceparent").to_owned();
    assert_eq!(trace_id_of(&answered), Some(TRACE_ID));
    let order_id = r.json()["id"].as_str().expect("an id").to_owned();

    let kafka = svc.kafka_client(&services.kafka_brokers).await;
    let deliveries = read_topic_until(
        &kafka,
        &svc.names.events_topic,
        60,
        Duration::from_secs(1),
        |ds| message_of(ds, &order_id).is_some(),
    )
    .await;
    let message = message_of(&deliveries, &order_id).expect("the order's event");
    assert_eq!(message.header("ce_traceparent"), Some(answered.as_str()));
    let envelope: Value = serde_json::from_slice(&message.payload).expect("an envelope");
    let event_id = envelope["eventId"].as_str().expect("eventId").to_owned();

    let line = eventually(60, "the projector's line for the event", || {
        let log = svc.log();
        let event_id = event_id.clone();
        async move {
            projector_line(&log, &event_id)
                .ok_or_else(|| format!("{} log lines so far", log.lines().count()))
        }
    })
    .await;
    assert_eq!(span_trace_id(&line), Some(TRACE_ID), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_keeps_its_trace_id_into_the_dlq_recorders_log_line() {
    use order_core::ports::{BusMessage, EventBus};

    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &LOG).await;
    // An envelope the projector cannot apply (unknown event type), sent as
    // the relay would: with its trace in `ce_traceparent`.
    let poison_id = uuid::Uuid::now_v7().to_string();
    let order_id = uuid::Uuid::now_v7().to_string();
    let poison = serde_json::json!({
        "eventId": poison_id, "eventType": "OrderTeleported", "aggregateId": order_id,
        "aggregateType": "Order", "version": 1, "schemaVersion": 1,
        "occurredOn": "2026-01-01T00:00:00Z", "data": {}
    });
    let sent = svc
        .bus()
        .publish(&[BusMessage {
            topic: "order-events".into(),
            key: order_id,
            payload: poison.to_string().into_bytes(),
            headers: vec![("ce_traceparent".into(), TRACEPARENT.into())],
        }])
        .await;
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    let line = support::eventually(20, "the DLQ recorder's line for the dead letter", || {
        let log = svc.log();
        let poison_id = poison_id.clone();
        async move { log_line(&log, "DLQ recorder recorded a dead letter", &poison_id) }
    })
    .await;
    assert_eq!(span_trace_id(&line), Some(TRACE_ID), "{line}");
}

/// An OTLP/HTTP collector stand-in: every `POST /v1/traces` body it gets.
async fn collector() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) {
    use axum::routing::post;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    sink.lock().expect("lock").push(v);
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, got)
}

/// Every span the collector received.
fn spans(got: &std::sync::Mutex<Vec<Value>>) -> Vec<Value> {
    got.lock()
        .expect("lock")
        .iter()
        .flat_map(|req| {
            req["resourceSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|rs| rs["scopeSpans"].as_array().into_iter().flatten())
                .flat_map(|ss| ss["spans"].as_array().into_iter().flatten())
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_and_its_consumer_are_exported_as_one_trace_over_otlp() {
    let (addr, got) = collector().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://{addr}");
    let svc = Service::start(
        dir.path(),
        &[
            ("ORDER_OTLP_ENDPOINT", endpoint.as_str()),
            // The log level does not decide what is exported.
            ("ORDER_LOG", "error"),
        ],
    )
    .await;
    let r = support::call(
        svc.addr,
        "POST",
        "/api/orders",
        Some(&order_body("c-otlp", "r-otlp")),
        &[("traceparent", TRACEPARENT)],
    )
    .await
    .expect("POST answered");
    assert_eq!(r.status, 201, "{}", r.text);
    let answered = r.header("traceparent").expect("traceparent").to_owned();
    let service_span = answered[36..52].to_owned();

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (server, consumer) = loop {
        let all = spans(&got);
        let server = all.iter().find(|s| s["spanId"] == service_span.as_str());
        let consumer = all
            .iter()
            .find(|s| s["kind"] == 5 && s["parentSpanId"] == service_span.as_str());
        if let (Some(server), Some(consumer)) = (server, consumer) {
            break (server.clone(), consumer.clone());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request's span {service_span} and its consumer's did not reach the \
             collector; it got {all:#?}\nlog:\n{}",
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(server["traceId"], TRACE_ID);
    assert_eq!(server["kind"], 2, "SERVER");
    assert_eq!(server["name"], "POST /api/orders");
    assert_eq!(
        server["parentSpanId"], "00f067aa0ba902b7",
        "the caller's span is the parent"
    );
    let attr = |span: &Value, key: &str| -> Option<String> {
        span["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)
            .and_then(|a| a["value"]["stringValue"].as_str().map(str::to_owned))
    };
    assert_eq!(attr(&server, "http.route").as_deref(), Some("/api/orders"));
    assert_eq!(
        attr(&server, "http.response.status_code").as_deref(),
        Some("201")
    );
    assert_eq!(
        consumer["traceId"], TRACE_ID,
        "the consumer is in the same trace"
    );
    assert_eq!(
        attr(&consumer, "messaging.destination.name").as_deref(),
        Some("order-events")
    );
    let metrics = svc.call("GET", "/metrics", None).await.text;
    assert!(
        metrics.contains("orders_otlp_spans_exported_total"),
        "{metrics}"
    );
}
