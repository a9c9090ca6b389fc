//! `/dashboard`: the operators' page (DLQ by status, outbox and projector
//! lag, publish rate, recent failures, replay / reset / skip of a record,
//! replay jobs: progress, rate and ETA, start after a dry run, cancel).
//! A static HTML page, a plain JavaScript file and a stylesheet compiled into
//! the binary, like the Swagger UI: nothing is fetched from elsewhere. The
//! page calls the JSON API and `/metrics` itself, with the operator's API key,
//! so these routes serve no data and stay open.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../../assets/dashboard/app.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The files change with the binary; a reload must see a new one.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/dashboard",
    operation_id = "dashboard",
    tag = "ops",
    summary = "The operators' dashboard",
    responses((status = 200, description = "HTML page (it calls the JSON API with the operator's API key).", body = String, content_type = "text/html")),
)]
pub async fn page() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

#[utoipa::path(
    get,
    path = "/dashboard/",
    operation_id = "dashboardDir",
    tag = "ops",
    summary = "The operators' dashboard",
    responses((status = 200, description = "HTML page.", body = String, content_type = "text/html")),
)]
pub async fn page_dir() -> Response {
    page().await
}

#[utoipa::path(
    get,
    path = "/dashboard/app.js",
    operation_id = "dashboardScript",
    tag = "ops",
    summary = "The dashboard's script",
    responses((status = 200, description = "JavaScript.", body = String, content_type = "text/javascript")),
)]
pub async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

#[utoipa::path(
    get,
    path = "/dashboard/app.css",
    operation_id = "dashboardStylesheet",
    tag = "ops",
    summary = "The dashboard's stylesheet",
    responses((status = 200, description = "CSS.", body = String, content_type = "text/css")),
)]
pub async fn stylesheet() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}
