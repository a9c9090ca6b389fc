//! The HTTP API (DESIGN §5). [`router`] wires every endpoint, each declared
//! once with the access it needs (see [`routes`]); the layers
//! around it give each request a request id, a correlation id and a trace
//! context ([`trace`]), a span and an access-log line, mask credentials in
//! anything that logs headers, count it in the duration histogram
//! ([`server_metrics`]), turn every framework error (unknown route, wrong
//! method, body too large…) into problem+json, and answer a 500 problem if
//! a handler ever panics.

pub mod audit;
pub mod auth;
pub mod cursor;
pub mod dashboard;
pub mod dlq;
pub mod dlq_repair;
pub mod dlq_search;
pub mod error;
pub mod extract;
pub mod jwks;
pub mod openapi;
pub mod ops;
pub mod orders;
pub mod routes;
pub mod server_metrics;
pub mod testing;
pub mod trace;

use std::any::Any;
use std::convert::Infallible;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use order_core::app::Role;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use self::error::{problem_response, ApiError, Problem, PROBLEM_JSON};
use self::routes::{Access, Routes};
use crate::startup::AppState;

pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The request's correlation id (from `X-Correlation-Id`, or generated).
#[derive(Clone, Debug)]
pub struct CorrelationId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<CorrelationId>()
            .cloned()
            .unwrap_or_else(|| CorrelationId(uuid::Uuid::new_v4().to_string())))
    }
}

const VIEWER: Access = Access::Role(Role::Viewer);
const OPERATOR: Access = Access::Role(Role::Operator);
const ADMIN: Access = Access::Role(Role::Admin);
/// Admin, and the per-principal replay rate limit.
const ADMIN_LIMITED: Access = Access::Limited(Role::Admin);

/// Every endpoint of the service and the access it needs. DLQ record reads
/// are viewer-readable: below operator the records leave without
/// `originalEvent` (see `dlq.rs`).
pub(crate) fn declared_routes(test_endpoints: bool) -> Routes {
    let routes = Routes::new()
        .get("/api/orders", VIEWER, orders::search)
        .post("/api/orders", OPERATOR, orders::create)
        .get("/api/orders/{id}", VIEWER, orders::get)
        .get("/api/orders/{id}/events", VIEWER, orders::events)
        .get(
            "/api/orders/customer/{customerId}",
            VIEWER,
            orders::by_customer,
        )
        .put("/api/orders/{id}/confirm", OPERATOR, orders::confirm)
        .put("/api/orders/{id}/cancel", OPERATOR, orders::cancel)
        .put("/api/orders/{id}/prepare", OPERATOR, orders::prepare)
        .put("/api/orders/{id}/ready", OPERATOR, orders::ready)
        .put("/api/orders/{id}/deliver", OPERATOR, orders::deliver)
        .get("/api/dlq/stats", VIEWER, dlq::stats)
        .get("/api/dlq/pending", VIEWER, dlq::pending)
        .get("/api/dlq/event/{eventId}", VIEWER, dlq::event)
        .get("/api/dlq/status/{status}", VIEWER, dlq::by_status)
        .post("/api/dlq/replay", ADMIN_LIMITED, dlq::replay_bulk)
        .get("/api/dlq/jobs", OPERATOR, dlq::jobs)
        .get("/api/dlq/jobs/{jobId}", OPERATOR, dlq::job)
        .delete("/api/dlq/jobs/{jobId}", ADMIN, dlq::cancel_job)
        .post("/api/dlq/replay/{eventId}", ADMIN_LIMITED, dlq::replay)
        .get("/api/dlq/{eventId}/revisions", VIEWER, dlq_repair::history)
        .post(
            "/api/dlq/{eventId}/revisions",
            ADMIN_LIMITED,
            dlq_repair::revise,
        )
        .post(
            "/api/dlq/{eventId}/revisions/{revision}/approve",
            ADMIN_LIMITED,
            dlq_repair::approve,
        )
        .post(
            "/api/dlq/{eventId}/revisions/{revision}/reject",
            ADMIN_LIMITED,
            dlq_repair::reject,
        )
        .put("/api/dlq/reset/{eventId}", ADMIN_LIMITED, dlq::reset)
        .post("/api/dlq/skip/{eventId}", ADMIN_LIMITED, dlq::skip)
        .get("/api/dlq/search", VIEWER, dlq_search::search)
        .get("/api/dlq/export", OPERATOR, dlq_search::export)
        .post(
            "/api/dlq/import",
            ADMIN,
            Handler::layer(dlq_search::import, dlq_search::import_limit()),
        )
        .get("/api/dlq/audit", ADMIN, audit::list)
        .post(
            "/api/admin/read-model/rebuild",
            ADMIN,
            ops::rebuild_read_model,
        )
        .get("/actuator/health", Access::Open, ops::health)
        .get("/health/live", Access::Open, ops::live)
        .get("/health/ready", Access::Open, ops::ready)
        // Spring Boot's probe paths, as Kubernetes manifests written for
        // Spring services name them.
        .get(
            "/actuator/health/liveness",
            Access::Open,
            ops::actuator_liveness,
        )
        .get(
            "/actuator/health/readiness",
            Access::Open,
            ops::actuator_readiness,
        )
        .get("/metrics", Access::Metrics, ops::metrics)
        .get("/v3/api-docs", Access::Open, ops::api_docs)
        .get("/swagger-ui", Access::Open, ops::swagger_ui)
        .get("/swagger-ui/", Access::Open, ops::swagger_ui_dir)
        .get("/swagger-ui.html", Access::Open, ops::swagger_redirect)
        .get(
            "/swagger-ui/assets/{file}",
            Access::Open,
            ops::swagger_asset,
        )
        .get("/dashboard", Access::Open, dashboard::page)
        .get("/dashboard/", Access::Open, dashboard::page_dir)
        .get("/dashboard/app.js", Access::Open, dashboard::script)
        .get("/dashboard/app.css", Access::Open, dashboard::stylesheet);
    if !test_endpoints {
        return routes;
    }
    routes
        .post("/api/test/publish-event", ADMIN, testing::publish_event)
        .get("/api/test/kafka-status", ADMIN, testing::kafka_status)
        .post("/api/test/bus/down", ADMIN, testing::bus_down)
        .post("/api/test/bus/up", ADMIN, testing::bus_up)
}

/// Every endpoint of the service, behind authentication.
pub fn router(state: AppState) -> Router {
    let (app, table) = declared_routes(state.config.test_endpoints).finish();
    // Built and serialized here, once, rather than on the first request.
    openapi::json(state.config.test_endpoints);
    // Authentication and roles, as declared with each route: it runs after
    // routing, so unknown paths stay 404 (wrong methods: see
    // AccessTable::access_for).
    let guard = auth::Guard::new(state.auth.clone(), table);
    let app = app.route_layer(middleware::from_fn_with_state(guard, auth::authorize));

    let limit = state.config.max_body_bytes;
    let http_metrics = state.http_metrics.clone();
    // Innermost first: each `.layer` wraps what is above it. All of them
    // run after routing, so they see the matched route (`MatchedPath`).
    app.fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::custom(panic_problem))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(trace::request_span)
                .on_request(())
                .on_response(trace::access_log)
                .on_body_chunk(())
                .on_eos(())
                // 5xx are logged once where they happen (ApiError).
                .on_failure(()),
        )
        .layer(middleware::from_fn_with_state(
            http_metrics,
            trace::trace_context,
        ))
        .layer(middleware::from_fn(request_context))
        .layer(PropagateRequestIdLayer::new(trace::REQUEST_ID))
        .layer(SetRequestIdLayer::new(trace::REQUEST_ID, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static("x-api-key"),
        ]))
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no endpoint {method} {}", uri.path()))
}

/// A panic in a handler becomes a 500 problem instead of a dropped
/// connection; its message is logged, never answered.
fn panic_problem(err: Box<dyn Any + Send + 'static>) -> Response {
    let message = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    tracing::error!(panic = message, "request handler panicked");
    problem_response(Problem::Internal, "internal error", &[])
}

fn valid_correlation_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?.trim();
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

/// Correlation id in and out (the request id when the caller sent none),
/// and the guarantee that no error leaves without a problem+json body.
async fn request_context(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(CORRELATION_HEADER)
        .or_else(|| req.headers().get(trace::REQUEST_ID))
        .and_then(valid_correlation_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(CorrelationId(id.clone()));
    let method = req.method().clone();
    let mut resp = next.run(req).await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        let is_json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with(PROBLEM_JSON) || ct.starts_with("application/json"));
        if !is_json {
            resp = framework_problem(resp, &method);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(CORRELATION_HEADER, v);
    }
    resp
}

/// Replaces a plain error response produced by the framework (e.g. 405 with
/// an empty body) with a problem, keeping headers such as `Allow`.
fn framework_problem(resp: Response, method: &Method) -> Response {
    let (parts, _) = resp.into_parts();
    let status = parts.status;
    let (problem, detail) = match status.as_u16() {
        404 => (Problem::NotFound, "no such resource".to_owned()),
        405 => (
            Problem::MethodNotAllowed,
            format!("method {method} is not allowed on this resource; the Allow header lists those that are"),
        ),
        413 => (
            Problem::PayloadTooLarge,
            "the request body exceeds the configured limit (ORDER_MAX_BODY_BYTES)".to_owned(),
        ),
        415 => (
            Problem::UnsupportedMediaType,
            "the request body must be JSON (Content-Type: application/json)".to_owned(),
        ),
        400 => (Problem::MalformedRequest, "malformed request".to_owned()),
        500 => (Problem::Internal, "internal error".to_owned()),
        _ => (
            Problem::Http(status),
            status.canonical_reason().unwrap_or("error").to_owned(),
        ),
    };
    let mut out = problem_response(problem, &detail, &[]);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    *out.status_mut() = status;
    out
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_500_problem_without_its_message() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("secret panic detail");
                    }
                }),
            )
            .layer(CatchPanicLayer::custom(panic_problem))
            .layer(middleware::from_fn(request_context));
        let resp = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(resp.headers().contains_key(CORRELATION_HEADER));
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("internal error") && !text.contains("secret"),
            "{text}"
        );
    }
}
