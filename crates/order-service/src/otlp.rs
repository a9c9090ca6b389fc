//! Optional export of traces to an OpenTelemetry collector: OTLP over HTTP
//! with the JSON encoding (`POST {ORDER_OTLP_ENDPOINT}/v1/traces`), off
//! unless `ORDER_OTLP_ENDPOINT` is set.
//!
//! Two kinds of span are exported, the ones that carry a W3C trace: each
//! HTTP request (`http`, kind SERVER: its trace id, the span id it hands on
//! in `traceparent`, the caller's span as parent, method, route, status)
//! and each message the projector or the DLQ recorder handles (`message`,
//! kind CONSUMER, child of the span that published it). A collector thus
//! shows a request and the consumers of its events as one trace.
//!
//! Written here rather than with the OpenTelemetry SDK: the SDK and an OTLP
//! exporter (tonic or reqwest) would add a large dependency graph to every
//! build for what is a few hundred bytes of JSON per span. Spans go through
//! a bounded queue (full: dropped and counted, never blocking a request) to
//! a thread of its own that posts them in batches.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Spans waiting for the exporter; more are dropped.
const QUEUE: usize = 8192;
/// Most spans in one request to the collector.
const BATCH: usize = 512;
/// How long a partial batch waits for more spans.
const LINGER: Duration = Duration::from_secs(1);
/// Upper bound of one request to the collector.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static ENABLED: OnceLock<()> = OnceLock::new();

/// One finished span.
#[derive(Clone, Debug, PartialEq)]
struct SpanData {
    trace_id: u128,
    span_id: u64,
    parent_id: Option<u64>,
    name: String,
    kind: u8,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<(&'static str, String)>,
    error: bool,
}

/// OTLP span kinds.
const KIND_SERVER: u8 = 2;
const KIND_CONSUMER: u8 = 5;

/// The layer that turns `http` and `message` spans into OTLP spans.
pub struct OtlpLayer {
    queue: mpsc::Sender<SpanData>,
}

/// Starts the exporter thread for `endpoint` (`http://host:port`) and
/// returns the layer that feeds it. Errors when the thread cannot start.
pub fn layer(endpoint: &str) -> std::io::Result<OtlpLayer> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("order-service: OTLP export off: no runtime: {e}");
                    return;
                }
            };
            rt.block_on(ship(rx, url));
        })?;
    let _ = ENABLED.set(());
    Ok(OtlpLayer { queue: tx })
}

/// The exporter's counters in Prometheus text (only when it runs).
pub fn render_metrics(out: &mut String) {
    if ENABLED.get().is_none() {
        return;
    }
    for (name, help, value) in [
        (
            "orders_otlp_spans_exported_total",
            "Spans the OTLP collector accepted.",
            &EXPORTED,
        ),
        (
            "orders_otlp_spans_dropped_total",
            "Spans dropped: the export queue was full or the collector refused a batch.",
            &DROPPED,
        ),
        (
            "orders_otlp_export_failures_total",
            "Batches the OTLP collector did not accept.",
            &FAILED,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
}

/// What a span of interest records, kept in its extensions until it closes.
struct Pending {
    data: SpanData,
}

#[derive(Default)]
struct Fields {
    trace_id: Option<u128>,
    span_id: Option<u64>,
    parent_id: Option<u64>,
    attributes: Vec<(&'static str, String)>,
    status: Option<u16>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.take(field.name(), value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "status" {
            self.status = u16::try_from(value).ok();
        }
        self.take(field.name(), value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.take(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.take(field.name(), format!("{value:?}"));
    }
}

impl Fields {
    fn take(&mut self, name: &'static str, value: String) {
        match name {
            "trace_id" => self.trace_id = u128::from_str_radix(value.trim(), 16).ok(),
            "span_id" => self.span_id = u64::from_str_radix(value.trim(), 16).ok(),
            "parent_span_id" => self.parent_id = u64::from_str_radix(value.trim(), 16).ok(),
            _ if value.is_empty() => {}
            _ => self.attributes.push((attribute_name(name), value)),
        }
    }
}

/// Our field names as OpenTelemetry's semantic conventions name them.
fn attribute_name(field: &'static str) -> &'static str {
    match field {
        "method" => "http.request.method",
        "route" => "http.route",
        "status" => "http.response.status_code",
        "topic" => "messaging.destination.name",
        "partition" => "messaging.kafka.destination.partition",
        "offset" => "messaging.kafka.message.offset",
        other => other,
    }
}

fn random_span_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0.max(1)
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        let kind = match meta.name() {
            "http" => KIND_SERVER,
            "message" => KIND_CONSUMER,
            _ => return,
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let Some(trace_id) = fields.trace_id.filter(|t| *t != 0) else {
            return;
        };
        let name = match kind {
            KIND_SERVER => "http request",
            _ => "process message",
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Pending {
                data: SpanData {
                    trace_id,
                    span_id: fields.span_id.unwrap_or_else(random_span_id),
                    parent_id: fields.parent_id,
                    name: name.to_owned(),
                    kind,
                    start: SystemTime::now(),
                    end: SystemTime::now(),
                    attributes: fields.attributes,
                    error: false,
                },
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let Some(pending) = ext.get_mut::<Pending>() else {
            return;
        };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(status) = fields.status {
            pending.data.error = status >= 500;
        }
        pending.data.attributes.extend(fields.attributes);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(pending) = span.extensions_mut().remove::<Pending>() else {
            return;
        };
        let mut data = pending.data;
        data.end = SystemTime::now();
        if data.kind == KIND_SERVER {
            if let Some((_, route)) = data.attributes.iter().find(|(k, _)| *k == "http.route") {
                let method = data
                    .attributes
                    .iter()
                    .find(|(k, _)| *k == "http.request.method")
                    .map_or("", |(_, m)| m.as_str());
                data.name = format!("{method} {route}").trim().to_owned();
            }
        }
        if self.queue.try_send(data).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Collects batches from `rx` and posts them to `url` until the layer is
/// dropped (the process ends).
async fn ship(mut rx: mpsc::Receiver<SpanData>, url: String) {
    let Some((host, path)) = split_url(&url) else {
        eprintln!("order-service: OTLP export off: {url:?} is not an http:// URL");
        return;
    };
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                _ => break,
            }
        }
        let body = encode(&batch);
        let n = batch.len() as u64;
        batch.clear();
        match tokio::time::timeout(POST_TIMEOUT, post(&host, &path, body)).await {
            Ok(Ok(())) => {
                EXPORTED.fetch_add(n, Ordering::Relaxed);
            }
            Ok(Err(e)) => failed(n, &e),
            Err(_) => failed(n, "no answer within 5 s"),
        }
    }
}

fn failed(spans: u64, why: &str) {
    FAILED.fetch_add(1, Ordering::Relaxed);
    DROPPED.fetch_add(spans, Ordering::Relaxed);
    tracing::debug!(spans, error = why, "OTLP export failed");
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!host.is_empty()).then(|| (host.to_owned(), path.to_owned()))
}

async fn post(host: &str, path: &str, body: String) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    let stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect {host}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(axum::body::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the collector answered {status}"))
    }
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding (ids in hex,
/// times as decimal strings).
fn encode(spans: &[SpanData]) -> String {
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|s| {
            let attributes: Vec<serde_json::Value> = s
                .attributes
                .iter()
                .map(|(k, v)| serde_json::json!({"key": k, "value": {"stringValue": v}}))
                .collect();
            let mut span = serde_json::json!({
                "traceId": format!("{:032x}", s.trace_id),
                "spanId": format!("{:016x}", s.span_id),
                "name": s.name,
                "kind": s.kind,
                "startTimeUnixNano": nanos(s.start).to_string(),
                "endTimeUnixNano": nanos(s.end).to_string(),
                "attributes": attributes,
                "status": {"code": if s.error { 2 } else { 0 }},
            });
            if let Some(parent) = s.parent_id {
                span["parentSpanId"] = format!("{parent:016x}").into();
            }
            span
        })
        .collect();
    serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "order-service"}},
                {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
            ]},
            "scopeSpans": [{
                "scope": {"name": "order-service"},
                "spans": spans,
            }],
        }],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_encoded_as_otlp_json() {
        let start = UNIX_EPOCH + Duration::from_nanos(1_733_400_000_000_000_123);
        let body = encode(&[SpanData {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x00f067aa0ba902b7,
            parent_id: Some(0x1),
            name: "POST /api/orders".into(),
            kind: KIND_SERVER,
            start,
            end: start + Duration::from_millis(2),
            attributes: vec![("http.route", "/api/orders".into())],
            error: true,
        }]);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "00f067aa0ba902b7");
        assert_eq!(span["parentSpanId"], "0000000000000001");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "1733400000000000123");
        assert_eq!(span["endTimeUnixNano"], "1733400000002000123");
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["attributes"][0]["key"], "http.route");
        assert_eq!(
            v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "order-service"
        );
    }

    #[test]
    fn only_http_urls_are_split() {
        assert_eq!(
            split_url("http://collector:4318/v1/traces"),
            Some(("collector:4318".into(), "/v1/traces".into()))
        );
        assert_eq!(split_url("https://collector:4318/v1/traces"), None);
        assert_eq!(split_url("http:///v1/traces"), None);
    }
}
