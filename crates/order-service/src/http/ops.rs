//! Operations: health, readiness, Prometheus metrics, the OpenAPI document
//! (generated: see `openapi.rs`), the offline Swagger UI and the read-model
//! rebuild.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use order_core::app::{Auditor, Metrics, Projector, RebuildReport};
use serde::Serialize;
use serde_json::json;

use super::auth::Auth;
use super::error::ApiError;
use super::extract::PathParam;
use super::server_metrics::{self, HttpMetrics};
use crate::health::{age_secs, Health, Status};
use crate::startup::AppState;

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

/// UP, or DOWN.
#[derive(Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpDown {
    Up,
    Down,
}

/// The service's health: DEGRADED when the bus or the read model is down
/// (commands still work), DOWN when the database is.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Health)]
pub struct HealthBody {
    status: HealthStatus,
    components: Components,
}

/// UP; DEGRADED when the bus or the read model is down; DOWN when the
/// database is.
#[derive(Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    Up,
    Degraded,
    Down,
}

impl From<Status> for HealthStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Up => HealthStatus::Up,
            Status::Degraded => HealthStatus::Degraded,
            Status::Down => HealthStatus::Down,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Components {
    database: ComponentHealth,
    bus: ComponentHealth,
    read_model: ComponentHealth,
    outbox: OutboxHealth,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ComponentHealth {
    status: UpDown,
    /// What the component answered, or why it did not.
    details: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxHealth {
    status: UpDown,
    /// Outbox rows not yet published or parked.
    #[schema(required = true, minimum = 0)]
    pending: Option<u64>,
    /// Age of the oldest of them, in seconds.
    #[schema(required = true, minimum = 0)]
    oldest_age_seconds: Option<f64>,
    /// Why the outbox could not be read (when DOWN).
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<String>,
}

fn component(r: &Result<String, String>) -> ComponentHealth {
    match r {
        Ok(m) => ComponentHealth {
            status: UpDown::Up,
            details: m.clone(),
        },
        Err(e) => ComponentHealth {
            status: UpDown::Down,
            details: e.clone(),
        },
    }
}

#[utoipa::path(
    get,
    path = "/actuator/health",
    operation_id = "health",
    tag = "ops",
    summary = "Health with components",
    responses(
        (status = 200, description = "UP, or DEGRADED when the bus or the read model is down.", body = HealthBody),
        (status = 503, description = "DOWN: the database does not answer.", body = HealthBody),
    ),
)]
/// UP; DEGRADED (200) when the bus or the read model is down; DOWN (503)
/// when the database is.
pub async fn health(State(health): State<Health>) -> Response {
    let report = health.check().await;
    let outbox = match &report.outbox {
        Ok(s) => OutboxHealth {
            status: UpDown::Up,
            pending: Some(s.pending),
            oldest_age_seconds: Some(age_secs(s.oldest_created_at)),
            details: None,
        },
        Err(e) => OutboxHealth {
            status: UpDown::Down,
            pending: None,
            oldest_age_seconds: None,
            details: Some(e.clone()),
        },
    };
    let status = report.status();
    let code = match status {
        Status::Down => StatusCode::SERVICE_UNAVAILABLE,
        Status::Up | Status::Degraded => StatusCode::OK,
    };
    let body = HealthBody {
        status: status.into(),
        components: Components {
            database: component(&report.database),
            bus: component(&report.bus),
            read_model: component(&report.read_model),
            outbox,
        },
    };
    (code, Json(body)).into_response()
}

/// `{"status": "UP"}` or `{"status": "DOWN"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SimpleStatus {
    status: UpDown,
}

#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "liveness",
    tag = "ops",
    summary = "Liveness",
    responses((status = 200, description = "Always UP while the process serves.", body = SimpleStatus)),
)]
pub async fn live() -> Json<SimpleStatus> {
    Json(SimpleStatus { status: UpDown::Up })
}

#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "readiness",
    tag = "ops",
    summary = "Readiness",
    responses(
        (status = 200, description = "The database answers.", body = SimpleStatus),
        (status = 503, description = "The database does not answer.", body = SimpleStatus),
    ),
)]
pub async fn ready(State(health): State<Health>) -> Response {
    match health.ready().await {
        Ok(()) => live().await.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(SimpleStatus {
                    status: UpDown::Down,
                }),
            )
                .into_response()
        }
    }
}

#[utoipa::path(
    get,
    path = "/actuator/health/liveness",
    operation_id = "actuatorLiveness",
    tag = "ops",
    summary = "Liveness (Spring Boot probe path)",
    responses((status = 200, description = "Always UP while the process serves.", body = SimpleStatus)),
)]
/// `/health/live` under the path Kubernetes manifests written for Spring
/// services use.
pub async fn actuator_liveness() -> Json<SimpleStatus> {
    live().await
}

#[utoipa::path(
    get,
    path = "/actuator/health/readiness",
    operation_id = "actuatorReadiness",
    tag = "ops",
    summary = "Readiness (Spring Boot probe path)",
    responses(
        (status = 200, description = "The database answers.", body = SimpleStatus),
        (status = 503, description = "The database does not answer.", body = SimpleStatus),
    ),
)]
/// `/health/ready` under Spring Boot's probe path.
pub async fn actuator_readiness(health: State<Health>) -> Response {
    ready(health).await
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "ops",
    summary = "Prometheus metrics (text format 0.0.4)",
    description = "Open by default; with ORDER_METRICS_AUTH=true it needs the viewer role.",
    responses(
        (status = 200, description = "Counters, histograms and gauges.", body = String,
            content_type = "text/plain"),
    ),
    security((), ("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
)]
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
    crate::otlp::render_metrics(&mut text);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

#[utoipa::path(
    post,
    path = "/api/admin/read-model/rebuild",
    operation_id = "rebuildReadModel",
    tag = "admin",
    summary = "Rebuild the read model from the event store",
    responses(
        (status = 200, description = "Done.", body = RebuildReport),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn rebuild_read_model(
    State(projector): State<Arc<Projector>>,
    State(audit): State<Auditor>,
    who: Option<axum::Extension<order_core::app::Principal>>,
) -> Result<Json<RebuildReport>, ApiError> {
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

#[utoipa::path(
    get,
    path = "/v3/api-docs",
    operation_id = "apiDocs",
    tag = "ops",
    summary = "This OpenAPI document",
    responses((status = 200, description = "OpenAPI 3.1 document, generated from the code.", body = Object)),
)]
pub async fn api_docs(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        super::openapi::json(state.config.test_endpoints),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/swagger-ui",
    operation_id = "swaggerUi",
    tag = "ops",
    summary = "Swagger UI (served offline)",
    responses((status = 200, description = "HTML page.", body = String, content_type = "text/html")),
)]
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

#[utoipa::path(
    get,
    path = "/swagger-ui/",
    operation_id = "swaggerUiDir",
    tag = "ops",
    summary = "Swagger UI (served offline)",
    responses((status = 200, description = "HTML page.", body = String, content_type = "text/html")),
)]
pub async fn swagger_ui_dir() -> Response {
    swagger_ui().await
}

#[utoipa::path(
    get,
    path = "/swagger-ui.html",
    operation_id = "swaggerUiRedirect",
    tag = "ops",
    summary = "Redirect to /swagger-ui",
    responses((status = 308, description = "Permanent redirect.",
        headers(("Location" = String, description = "/swagger-ui")))),
)]
pub async fn swagger_redirect() -> Redirect {
    Redirect::permanent("/swagger-ui")
}

#[utoipa::path(
    get,
    path = "/swagger-ui/assets/{file}",
    operation_id = "swaggerUiAsset",
    tag = "ops",
    summary = "A file of the vendored Swagger UI",
    params(("file" = String, Path, description = "swagger-ui-bundle.js, swagger-ui.css or LICENSE; anything else is 404.")),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "text/plain"),
        )),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
    ),
)]
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
