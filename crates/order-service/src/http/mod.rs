//! The HTTP API (DESIGN §5). [`router`] wires every endpoint; the layers
//! around it give each request a correlation id, turn every framework error
//! (unknown route, wrong method, body too large…) into problem+json, and
//! answer a 500 problem if a handler ever panics.

pub mod audit;
pub mod auth;
pub mod dashboard;
pub mod dlq;
pub mod error;
pub mod extract;
pub mod ops;
pub mod orders;
pub mod testing;

use std::convert::Infallible;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use tracing::Instrument;

use self::error::{problem_response, ApiError, Problem, PROBLEM_JSON};
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

/// Every endpoint of the service.
pub fn router(state: AppState) -> Router {
    let orders = Router::new()
        .route("/{id}", get(orders::get))
        .route("/{id}/events", get(orders::events))
        .route("/customer/{customerId}", get(orders::by_customer))
        .route("/{id}/confirm", put(orders::confirm))
        .route("/{id}/cancel", put(orders::cancel))
        .route("/{id}/prepare", put(orders::prepare))
        .route("/{id}/ready", put(orders::ready))
        .route("/{id}/deliver", put(orders::deliver));

    let dlq = Router::new()
        .route("/stats", get(dlq::stats))
        .route("/pending", get(dlq::pending))
        .route("/event/{eventId}", get(dlq::event))
        .route("/replay", post(dlq::replay_bulk))
        .route("/jobs", get(dlq::jobs))
        .route("/jobs/{jobId}", get(dlq::job).delete(dlq::cancel_job))
        .route("/replay/{eventId}", post(dlq::replay))
        .route("/reset/{eventId}", put(dlq::reset))
        .route("/skip/{eventId}", post(dlq::skip))
        .route("/audit", get(audit::list))
        .route("/status/{status}", get(dlq::by_status));

    let mut app = Router::new()
        .route("/api/orders", get(orders::search).post(orders::create))
        .nest("/api/orders", orders)
        .nest("/api/dlq", dlq)
        .route(
            "/api/admin/read-model/rebuild",
            post(ops::rebuild_read_model),
        )
        .route("/actuator/health", get(ops::health))
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/v3/api-docs", get(ops::api_docs))
        .route("/swagger-ui", get(ops::swagger_ui))
        .route("/swagger-ui/", get(ops::swagger_ui))
        .route("/swagger-ui.html", get(ops::swagger_redirect))
        .route("/swagger-ui/assets/{file}", get(ops::swagger_asset))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/", get(dashboard::page))
        .route("/dashboard/app.js", get(dashboard::script))
        .route("/dashboard/app.css", get(dashboard::stylesheet));

    if state.config.test_endpoints {
        app = app
            .route("/api/test/publish-event", post(testing::publish_event))
            .route("/api/test/kafka-status", get(testing::kafka_status))
            .route("/api/test/bus/down", post(testing::bus_down))
            .route("/api/test/bus/up", post(testing::bus_up));
    }

    // Authentication and roles (auth::ROUTES) for every route above: it runs
    // after routing, so unknown paths stay 404 (wrong methods: see
    // auth::access_for). Add routes above this line, never below.
    app = app.route_layer(middleware::from_fn_with_state(
        state.auth.clone(),
        auth::authorize,
    ));

    let limit = state.config.max_body_bytes;
    app.fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn(request_context))
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no endpoint {method} {}", uri.path()))
}

/// Catches a panic in the rest of the stack so it becomes a 500 problem
/// instead of a dropped connection (without a task spawn per request).
async fn catch_panic(req: Request, next: Next) -> Response {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!("request handler panicked");
            problem_response(Problem::Internal, "internal error", &[])
        }
    }
}

fn valid_correlation_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?.trim();
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

/// Correlation id in and out, a span per request, and the guarantee that
/// no error leaves without a problem+json body.
async fn request_context(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(valid_correlation_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(CorrelationId(id.clone()));
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        path = %req.uri().path(),
        correlation_id = %id,
    );
    let method = req.method().clone();
    let mut resp = next.run(req).instrument(span).await;
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
            .layer(middleware::from_fn(catch_panic))
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
