//! Operations: health, readiness, Prometheus metrics, the OpenAPI document,
//! the offline Swagger UI and the read-model rebuild.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use order_core::app::Gauges;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::PathParam;
use crate::startup::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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

async fn bounded<T, E: std::fmt::Display>(
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

fn age_secs(since: Option<DateTime<Utc>>) -> f64 {
    since.map_or(0.0, |t| {
        ((Utc::now() - t).num_milliseconds().max(0) as f64) / 1000.0
    })
}

fn component(r: &Result<String, String>) -> Value {
    match r {
        Ok(m) => json!({ "status": "UP", "details": m }),
        Err(e) => json!({ "status": "DOWN", "details": e }),
    }
}

/// UP; DEGRADED (200) when the bus or the read model is down; DOWN (503)
/// when the database is.
pub async fn health(State(state): State<AppState>) -> Response {
    let (db, bus, rm, outbox) = tokio::join!(
        bounded(state.event_store.ping()),
        bounded(state.bus.check(CHECK_TIMEOUT)),
        bounded(state.read_model.ping()),
        bounded(state.outbox.stats()),
    );
    let db = db.map(|()| "event store answers".to_owned());
    let rm = rm.map(|()| "read model answers".to_owned());
    let outbox_json = match &outbox {
        Ok(s) => json!({
            "status": "UP",
            "pending": s.pending,
            "oldestAgeSeconds": age_secs(s.oldest_created_at),
        }),
        Err(e) => {
            json!({ "status": "DOWN", "pending": null, "oldestAgeSeconds": null, "details": e })
        }
    };
    let (status, code) = if db.is_err() {
        ("DOWN", StatusCode::SERVICE_UNAVAILABLE)
    } else if bus.is_err() || rm.is_err() || outbox.is_err() {
        ("DEGRADED", StatusCode::OK)
    } else {
        ("UP", StatusCode::OK)
    };
    let body = json!({
        "status": status,
        "components": {
            "database": component(&db),
            "bus": component(&bus),
            "readModel": component(&rm),
            "outbox": outbox_json,
        }
    });
    (code, Json(body)).into_response()
}

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "UP" }))
}

pub async fn ready(State(state): State<AppState>) -> Response {
    match bounded(state.event_store.ping()).await {
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

/// Prometheus text format 0.0.4. A store that does not answer leaves its
/// gauges at zero rather than failing the scrape.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let (outbox, dlq, head) = tokio::join!(
        bounded(state.outbox.stats()),
        bounded(state.dlq_store.stats()),
        bounded(state.event_store.head_position()),
    );
    let mut g = Gauges {
        bus_down: state.fault.is_down(),
        ..Gauges::default()
    };
    match outbox {
        Ok(s) => {
            g.outbox_pending = s.pending;
            g.outbox_oldest_age_secs = age_secs(s.oldest_created_at);
        }
        Err(e) => tracing::debug!(error = %e, "metrics: outbox stats unavailable"),
    }
    match dlq {
        Ok(s) => {
            g.dlq_by_status = vec![
                ("PENDING", s.pending_count),
                ("REPLAYED", s.replayed_count),
                ("FAILED", s.failed_count),
                ("SKIPPED", s.skipped_count),
            ];
            g.dlq_oldest_pending_age_secs = age_secs(s.oldest_pending_failure_time);
        }
        Err(e) => tracing::debug!(error = %e, "metrics: DLQ stats unavailable"),
    }
    match head {
        Ok(h) => g.event_store_head = h,
        Err(e) => tracing::debug!(error = %e, "metrics: event store head unavailable"),
    }
    let text = state.metrics.render(&g);
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
    State(state): State<AppState>,
    who: Option<axum::Extension<order_core::app::Principal>>,
) -> Result<Json<order_core::app::RebuildReport>, ApiError> {
    let outcome = state.projector.rebuild().await;
    state
        .audit
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
