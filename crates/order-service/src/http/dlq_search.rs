//! `/api/dlq/search`, `/api/dlq/export` and `/api/dlq/import`: find DLQ
//! records by text in the failure reason, event type, order, customer,
//! status, source and time range; export a selection as NDJSON; import
//! such a file into another environment's DLQ (see
//! `order_core::app::dlq::search`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::{stream, StreamExt};
use order_core::app::{DlqService, Principal, EXPORT_MAX_LINES, IMPORT_MAX_BYTES};
use order_core::ports::{DlqFilter, DlqRecord, DlqSource, DlqStatus, Page};
use serde::Serialize;

use super::audit::{instant, text};
use super::cursor::{encode, Listing};
use super::dlq::records_for;
use super::error::{ApiError, Problem};
use super::extract::{principal as principal_of, read_body, Params};

/// The NDJSON media type of exports and imports.
const NDJSON: &str = "application/x-ndjson";

/// The filter of the query parameters; an empty text or status means no
/// filter, an empty `from` or `to` is not an instant (400).
fn filter_of(params: &Params) -> Result<DlqFilter, ApiError> {
    let status = match params.get("status") {
        None => None,
        Some(s) => Some(
            DlqStatus::parse(s)
                .filter(|_| s == s.trim())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "query parameter status must be PENDING, REPLAYED, FAILED or SKIPPED",
                    )
                })?,
        ),
    };
    let source = match params.get("source") {
        None => None,
        Some(s) => Some(DlqSource::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
            ApiError::bad_request("query parameter source must be PUBLISH or CONSUMER")
        })?),
    };
    let filter = DlqFilter {
        text: text(params, "q")?,
        event_type: text(params, "eventType")?,
        aggregate_id: text(params, "aggregateId")?,
        customer_id: text(params, "customerId")?,
        orders: Vec::new(),
        status,
        source,
        from: instant(params, "from")?,
        to: instant(params, "to")?,
    };
    if let (Some(from), Some(to)) = (filter.from, filter.to) {
        if from > to {
            return Err(ApiError::bad_request("from must not be after to"));
        }
    }
    Ok(filter)
}

/// A page of a search: a [`CursorPage`](super::cursor::CursorPage) whose
/// totals are null for a text search (not counted: see the description).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DlqSearchPage {
    content: Vec<DlqRecord>,
    page: u32,
    #[schema(minimum = 1)]
    size: u32,
    /// Exact count of the matches; null when the search has a text (q).
    #[schema(required = true)]
    total_elements: Option<u64>,
    #[schema(required = true)]
    total_pages: Option<u64>,
    /// Send it as `after=` for the next page; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

impl DlqSearchPage {
    fn new(page: Page<DlqRecord>, counted: bool) -> Self {
        let next_cursor = page.next().map(|c| encode(Listing::DlqRecords, &c));
        Self {
            page: page.page,
            size: page.size,
            total_elements: counted.then_some(page.total_elements),
            total_pages: counted.then_some(page.total_pages),
            next_cursor,
            content: page.content,
        }
    }
}

/// The filter parameters every operation here documents.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct FilterQuery {
    /// Case-insensitive substring of the failure reason (`%` and `_` are literal). A scan: see the description.
    #[param(max_length = 255)]
    q: Option<String>,
    /// Exact event type (e.g. OrderCreated).
    #[param(max_length = 255, rename = "eventType")]
    event_type: Option<String>,
    /// Exact order (aggregate) id.
    #[param(max_length = 255, rename = "aggregateId")]
    aggregate_id: Option<String>,
    /// The records of this customer's orders: those naming the customer (OrderCreated) and the other events of the customer's newest 500 orders in the read model and of the orders those records name.
    #[param(max_length = 255, rename = "customerId")]
    customer_id: Option<String>,
    /// PENDING, REPLAYED, FAILED or SKIPPED, case-insensitive.
    #[param(
        pattern = r"^([Pp][Ee][Nn][Dd][Ii][Nn][Gg]|[Rr][Ee][Pp][Ll][Aa][Yy][Ee][Dd]|[Ff][Aa][Ii][Ll][Ee][Dd]|[Ss][Kk][Ii][Pp][Pp][Ee][Dd])?$"
    )]
    status: Option<String>,
    /// PUBLISH or CONSUMER, case-insensitive.
    #[param(pattern = r"^([Pp][Uu][Bb][Ll][Ii][Ss][Hh]|[Cc][Oo][Nn][Ss][Uu][Mm][Ee][Rr])?$")]
    source: Option<String>,
    /// Records that failed at or after this instant (RFC 3339).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Records that failed strictly before this instant (RFC 3339); not before from.
    #[param(format = DateTime)]
    to: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/dlq/search",
    operation_id = "dlqSearch",
    tag = "dlq",
    summary = "Search DLQ records, newest failure first",
    description = "Every filter given must match. Read through the index of the narrowest filter (order, customer, event type, status, else failure time), newest failure first, then highest id; `after` continues after a page's last record. The text (q) is checked record by record along that index (LOWER(failureReason) LIKE): a page stops as soon as it is full, but a rare text over a large DLQ reads far, and such a search is not counted (totalElements and totalPages are null). Without q the totals are an exact COUNT of the filter. Below operator, records come without originalEvent.",
    params(FilterQuery, super::openapi::CursorQuery),
    responses(
        (status = 200, description = "A page of records.", body = DlqSearchPage),
        (status = 400, response = super::openapi::BadRequest),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
    extensions(("x-required-role" = json!("viewer"))),
)]
pub async fn search(
    State(dlq): State<Arc<DlqService>>,
    principal: Option<Extension<Principal>>,
    params: Params,
) -> Result<Response, ApiError> {
    let filter = filter_of(&params)?;
    let page = params.list_request(Listing::DlqRecords)?;
    let counted = filter.text.is_none();
    let found = dlq.search(filter, page).await?;
    Ok(records_for(principal, DlqSearchPage::new(found, counted)))
}

#[utoipa::path(
    get,
    path = "/api/dlq/export",
    operation_id = "dlqExport",
    tag = "dlq",
    summary = "Export the records of a search as NDJSON",
    description = "One DLQ record per line (as the search answers it, originalEvent included), newest failure first, streamed page by page: at most `limit` records (default and most 100000). The filters are those of /api/dlq/search. Audited as DLQ_EXPORT with the filter as parameters. `POST /api/dlq/import` reads the file into another environment's DLQ.",
    params(
        FilterQuery,
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 100000, description = "Most records to export (default 100000)."),
    ),
    responses(
        (status = 200, description = "The records, one JSON object per line.", content_type = "application/x-ndjson", body = String),
        (status = 400, response = super::openapi::BadRequest),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["operator"]), ("apiKeyHeader" = ["operator"])),
    extensions(("x-required-role" = json!("operator"))),
)]
pub async fn export(
    State(dlq): State<Arc<DlqService>>,
    who: Option<Extension<Principal>>,
    params: Params,
) -> Result<Response, ApiError> {
    let filter = filter_of(&params)?;
    let limit = params
        .u64_in("limit", 1, EXPORT_MAX_LINES as u64)?
        .map_or(EXPORT_MAX_LINES, |n| n as usize);
    let who = principal_of(who);
    // The first page is read before answering, so a store that is down
    // answers 503 rather than an empty 200.
    let (cursor, first) = dlq.export_start(&who, filter, limit).await?;
    let rest = stream::unfold((dlq, cursor), |(dlq, mut cursor)| async move {
        match dlq.export_next(&mut cursor).await {
            Ok(Some(lines)) => Some((Ok::<_, std::io::Error>(lines), (dlq, cursor))),
            Ok(None) => None,
            Err(e) => {
                // The answer has begun: the stream is cut short.
                tracing::error!(error = %e, written = cursor.written(), "DLQ export failed");
                Some((Err(std::io::Error::other(e.to_string())), (dlq, cursor)))
            }
        }
    });
    let body = stream::iter([Ok(first)]).chain(rest);
    Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response())
}

/// Import's body: NDJSON (`application/x-ndjson`); anything else is 415.
fn is_ndjson(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(NDJSON))
}

#[utoipa::path(
    post,
    path = "/api/dlq/import",
    operation_id = "dlqImport",
    tag = "dlq",
    summary = "Import an NDJSON export into this environment's DLQ (for reproduction)",
    description = "Each line is a record as /api/dlq/export writes it. It becomes a new PENDING record with the line's source, event id, type, version, topic, origin, consumer group, failure reason and time, marked imported (importedAt, importedBy); it heads its own sequence (blockedBy is not kept). Event ids already stored are left unchanged and listed in skipped. A malformed line refuses the whole file (400 naming the line; nothing is written). At most 100000 records and 64 MiB. Audited as DLQ_IMPORT with the counts.",
    request_body(content = String, content_type = "application/x-ndjson"),
    responses(
        (status = 200, description = "What was imported and what was skipped.", body = order_core::app::ImportOutcome),
        (status = 400, response = super::openapi::BadRequest),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, description = "The body is not application/x-ndjson.", body = super::error::Body, content_type = "application/problem+json"),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["admin"]), ("apiKeyHeader" = ["admin"])),
    extensions(("x-required-role" = json!("admin"))),
)]
pub async fn import(
    State(dlq): State<Arc<DlqService>>,
    who: Option<Extension<Principal>>,
    req: Request,
) -> Result<Response, ApiError> {
    if !is_ndjson(&req) {
        return Err(ApiError::new(
            Problem::UnsupportedMediaType,
            format!("the body of an import must be {NDJSON} (an export of /api/dlq/export)"),
        ));
    }
    let body = read_body(req, &()).await?;
    let who = principal_of(who);
    Ok(Json(dlq.import(&who, &body).await?).into_response())
}

/// The body limit of [`import`]: an export of up to `EXPORT_MAX_LINES`
/// records is far larger than ORDER_MAX_BODY_BYTES.
pub fn import_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(IMPORT_MAX_BYTES)
}
