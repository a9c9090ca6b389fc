//! Operations: health, readiness, Prometheus metrics, the OpenAPI document,
//! the offline Swagger UI and the read-model rebuild.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use order_core::app::{Auditor, Metrics, Projector};
use serde_json::{json, Value};

use super::auth::Auth;
use super::error::ApiError;
use super::extract::PathParam;
use super::server_metrics::{self, HttpMetrics};
use crate::health::{age_secs, Health, Status};

pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");
const SWAGGER_BUNDLE: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");
const SWAGGER_LICENSE: &[u8] = include_bytes!("../../assets/swagger-ui/LICENSE");

const SWAGGER_HTML: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>order-service API</title>
  <link rel="stylesheet" href="/swagger-ui/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/swagger-ui/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/v3/api-docs", dom_id: "#swagger-ui", deepLinking: true });
  </script>
</body>
</html>
"##;

fn component(r: &Result<String, String>) -> Value {
    match r {
        Ok(m) => json!({ "status": "UP", "details": m }),
        Err(e) => json!({ "status": "DOWN", "details": e }),
    }
}

/// UP; DEGRADED (200) when the bus or the read model is down; DOWN (503)
/// when the database is.
pub async fn health(State(health): State<Health>) -> Response {
    let report = health.check().await;
    let outbox_json = match &report.outbox {
        Ok(s) => json!({
            "status": "UP",
            "pending": s.pending,
            "oldestAgeSeconds": age_secs(s.oldest_created_at),
        }),
        Err(e) => {
            json!({ "status": "DOWN", "pending": null, "oldestAgeSeconds": null, "details": e })
        }
    };
    let status = report.status();
    let code = match status {
        Status::Down => StatusCode::SERVICE_UNAVAILABLE,
        Status::Up | Status::Degraded => StatusCode::OK,
    };
    let body = json!({
        "status": status.as_str(),
        "components": {
            "database": component(&report.database),
            "bus": component(&report.bus),
            "readModel": component(&report.read_model),
            "outbox": outbox_json,
        }
    });
    (code, Json(body)).into_response()
}

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "UP" }))
}

pub async fn ready(State(health): State<Health>) -> Response {
    match health.ready().await {
        Ok(()) => Json(json!({ "status": "UP" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "DOWN" })),
            )
                .into_response()
        }
    }
}

/// Prometheus text format 0.0.4 (see [`Health::gauges`] for a store that
/// does not answer).
pub async fn metrics(
    State(health): State<Health>,
    State(metrics): State<Arc<Metrics>>,
    State(http_metrics): State<Arc<HttpMetrics>>,
    State(auth): State<Arc<Auth>>,
) -> Response {
    let mut text = metrics.render(&health.gauges().await);
    if let Some(jwks) = auth.jwks() {
        jwks.render_metrics(&mut text);
    }
    http_metrics.render(&mut text);
    server_metrics::render_process(&mut text);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

pub async fn rebuild_read_model(
    State(projector): State<Arc<Projector>>,
    State(audit): State<Auditor>,
    who: Option<axum::Extension<order_core::app::Principal>>,
) -> Result<Json<order_core::app::RebuildReport>, ApiError> {
    let outcome = projector.rebuild().await;
    audit
        .record_outcome(
            &super::extract::principal(who),
            order_core::ports::AuditAction::ReadModelRebuild,
            None,
            json!({}),
            &outcome,
            |r| format!("OK: {} events, {} orders", r.events, r.orders),
        )
        .await;
    let report = outcome?;
    tracing::info!(
        events = report.events,
        orders = report.orders,
        events_per_second = report.events_per_second,
        "read model rebuilt"
    );
    Ok(Json(report))
}

pub async fn api_docs() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI_JSON,
    )
        .into_response()
}

pub async fn swagger_ui() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        SWAGGER_HTML,
    )
        .into_response()
}

pub async fn swagger_redirect() -> Redirect {
    Redirect::permanent("/swagger-ui")
}

pub async fn swagger_asset(PathParam(file): PathParam) -> Result<Response, ApiError> {
    let (bytes, content_type) = match file.as_str() {
        "swagger-ui-bundle.js" => (SWAGGER_BUNDLE, "text/javascript; charset=utf-8"),
        "swagger-ui.css" => (SWAGGER_CSS, "text/css; charset=utf-8"),
        "LICENSE" => (SWAGGER_LICENSE, "text/plain; charset=utf-8"),
        _ => return Err(ApiError::not_found(format!("no asset named {file:?}"))),
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        bytes,
    )
        .into_response())
}
