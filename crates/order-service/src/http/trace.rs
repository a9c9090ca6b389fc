//! Request tracing: the W3C trace context, the per-request span and the
//! access log.
//!
//! A request's `traceparent` (W3C Trace Context, version 00) is continued —
//! same trace id, a new span id for this service — or, when absent or
//! invalid, a new trace is started. The result is echoed in the response's
//! `traceparent`, named in the request's log span (`trace_id`) and carried
//! by the command into the events it appends (the envelope's `traceparent`,
//! published as the CloudEvents `ce_traceparent` header), so the projector
//! and the DLQ recorder log the same trace id for them.
//!
//! The access log is one line per request at `info` with the target
//! `order_service::access`: method, matched route (never the raw path),
//! status, latency, request id and trace id. `ORDER_LOG=info,order_service::access=off`
//! silences it.

use std::fmt;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::RequestId;

use super::server_metrics::{method_label, HttpMetrics};
use super::CorrelationId;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The trace context of one request: the trace it belongs to, the span id
/// this service gives its part of it and the caller's trace flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    /// The caller's span (the `parent-id` of its `traceparent`), if any.
    pub parent_id: Option<u64>,
    pub span_id: u64,
    pub flags: u8,
}

/// `sampled`, for traces this service starts: its log lines record them.
const SAMPLED: u8 = 0x01;

impl TraceContext {
    /// Parses a `traceparent` value: `(trace id, parent id, flags)`, or
    /// `None` when it is not valid (W3C Trace Context: lower-case hex, no
    /// all-zero ids, version `ff` forbidden; a later version is read by its
    /// version-00 prefix).
    pub fn parse(value: &str) -> Option<(u128, u64, u8)> {
        let b = value.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex::<u8>(&value[0..2])?;
        match version {
            0x00 if b.len() != 55 => return None,
            0xff => return None,
            0x00 => {}
            _ if b.len() > 55 && b[55] != b'-' => return None,
            _ => {}
        }
        let trace_id = hex::<u128>(&value[3..35])?;
        let parent_id = hex::<u64>(&value[36..52])?;
        let flags = hex::<u8>(&value[53..55])?;
        (trace_id != 0 && parent_id != 0).then_some((trace_id, parent_id, flags))
    }

    /// Continues the trace of `headers`' `traceparent`, or starts one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Self::parse(v.trim()));
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        // A v4 UUID fixes 6 of its 128 bits; the span id takes the 64 bits
        // of its first half, the trace id (when one is started) the rest
        // mixed with a second draw.
        let span_id = a.max(1);
        match parent {
            Some((trace_id, parent_id, flags)) => Self {
                trace_id,
                parent_id: Some(parent_id),
                span_id,
                flags,
            },
            None => {
                let (c, d) = uuid::Uuid::new_v4().as_u64_pair();
                Self {
                    trace_id: ((u128::from(b) << 64) | u128::from(c ^ d)).max(1),
                    parent_id: None,
                    span_id,
                    flags: SAMPLED,
                }
            }
        }
    }

    /// The `traceparent` this service hands on: its own span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }

    /// [`Self::traceparent`] as a header value, formatted on the stack.
    pub fn header_value(&self) -> Option<HeaderValue> {
        use std::io::Write;
        let mut buf = [0u8; 55];
        write!(
            &mut buf[..],
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            self.flags
        )
        .ok()?;
        HeaderValue::from_bytes(&buf).ok()
    }

    /// The trace id as it is logged (32 lower-case hex digits).
    pub fn trace_id(&self) -> TraceId {
        TraceId(self.trace_id)
    }
}

/// Displays as 32 lower-case hex digits (no allocation).
#[derive(Clone, Copy, Debug)]
pub struct TraceId(pub u128);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Displays as 16 lower-case hex digits (no allocation).
#[derive(Clone, Copy, Debug)]
pub struct SpanId(pub u64);

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

trait FromHex: Sized {
    fn from_hex(s: &str) -> Option<Self>;
}

macro_rules! from_hex {
    ($($t:ty),*) => {$(
        impl FromHex for $t {
            fn from_hex(s: &str) -> Option<Self> {
                <$t>::from_str_radix(s, 16).ok()
            }
        }
    )*};
}
from_hex!(u8, u64, u128);

/// Lower-case hex digits only (`from_str_radix` alone would take `+`, and
/// upper case, which the specification forbids).
fn hex<T: FromHex>(s: &str) -> Option<T> {
    s.bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then(|| T::from_hex(s))
        .flatten()
}

tokio::task_local! {
    /// The trace context of the request being handled, for the command
    /// handlers (`ctx()` in `orders.rs`) without a parameter in each.
    static CURRENT: TraceContext;
}

/// The `traceparent` of the request being handled (`None` outside one).
pub fn current_traceparent() -> Option<String> {
    CURRENT.try_with(TraceContext::traceparent).ok()
}

/// Continues or starts the request's trace (request extension and the
/// task-local [`current_traceparent`]), echoes `traceparent`, and observes
/// `http_server_request_duration_seconds` by method, matched route and
/// status.
pub async fn trace_context(
    State(metrics): State<std::sync::Arc<HttpMetrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let trace = TraceContext::from_headers(req.headers());
    req.extensions_mut().insert(trace);
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = CURRENT.scope(trace, next.run(req)).await;
    if let Some(v) = trace.header_value() {
        resp.headers_mut().insert(TRACEPARENT, v);
    }
    metrics.observe(
        method,
        route.as_ref().map(MatchedPath::as_str),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// The span of one request (`TraceLayer::make_span_with`): method, matched
/// route, request id, correlation id and trace id. Everything the handler
/// logs is inside it.
pub fn request_span(req: &Request) -> tracing::Span {
    let ext = req.extensions();
    let route = ext.get::<MatchedPath>().map_or("unmatched", |m| m.as_str());
    // The caller's request id is taken as sent (a header value: no line
    // breaks); only its first 128 characters are logged.
    let request_id = ext
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map_or("", |id| &id[..id.len().min(128)]);
    let correlation_id = ext.get::<CorrelationId>().map_or("", |c| c.0.as_str());
    let trace = ext.get::<TraceContext>();
    // span_id, parent_span_id and status are for the OTLP export (see
    // `crate::otlp`); the text and JSON log lines show them too.
    tracing::info_span!(
        "http",
        method = %req.method(),
        route,
        request_id,
        correlation_id,
        trace_id = trace.map(|t| tracing::field::display(t.trace_id())),
        span_id = trace.map(|t| tracing::field::display(SpanId(t.span_id))),
        parent_span_id = trace
            .and_then(|t| t.parent_id)
            .map(|p| tracing::field::display(SpanId(p))),
        status = tracing::field::Empty,
    )
}

/// The access-log line (`TraceLayer::on_response`), inside the request span.
pub fn access_log<B>(resp: &Response<B>, latency: Duration, span: &tracing::Span) {
    span.record("status", resp.status().as_u16());
    tracing::info!(
        target: "order_service::access",
        status = resp.status().as_u16(),
        latency_ms = latency.as_micros() as f64 / 1000.0,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_parsed() {
        assert_eq!(
            TraceContext::parse(VALID),
            Some((0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 0x01))
        );
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            // upper case
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // all-zero trace id / parent id
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // version ff, version 00 with trailing data, bad separators
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // a sign where a digit belongs, non-hex
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_version_00_prefix() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert!(TraceContext::parse(v).is_some());
        let glued = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(TraceContext::parse(glued), None);
    }

    #[test]
    fn a_request_with_a_traceparent_continues_its_trace_in_a_span_of_its_own() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        let t = TraceContext::from_headers(&h);
        assert_eq!(t.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id, Some(0x00f067aa0ba902b7));
        assert_ne!(t.span_id, 0x00f067aa0ba902b7);
        let out = t.traceparent();
        assert!(
            out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{out}"
        );
        assert!(out.ends_with("-01"), "{out}");
        assert_eq!(TraceContext::parse(&out).map(|p| p.0), Some(t.trace_id));
    }

    #[test]
    fn a_request_without_a_valid_traceparent_starts_a_new_sampled_trace() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static("00-garbage"));
        let a = TraceContext::from_headers(&h);
        let b = TraceContext::from_headers(&HeaderMap::new());
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(a.parent_id, None);
        for t in [a, b] {
            let out = t.traceparent();
            assert_eq!(
                t.header_value().as_ref().map(HeaderValue::as_bytes),
                Some(out.as_bytes())
            );
            assert_eq!(out.len(), 55);
            assert_eq!(TraceContext::parse(&out), Some((t.trace_id, t.span_id, 1)));
        }
    }

    #[test]
    fn the_core_reads_the_same_trace_id_back() {
        assert_eq!(
            order_core::domain::trace_id_of(VALID),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }
}
