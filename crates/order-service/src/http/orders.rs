//! `/api/orders`: commands (create and transitions) through the command
//! service, reads from the event store (current state, time travel,
//! history) and searches from the read model.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use order_core::app::{AsOf, CommandContext, IdempotencyKey};
use order_core::domain::{CreateOrder, FieldError, Order, OrderItem, OrderStatus, Transition};
use order_core::ports::{OrderFilter, OrderQuery};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;
use super::extract::{
    idempotency_key, if_match, JsonBody, OptionalJsonBody, OrderId, Params, PathParam,
};
use super::CorrelationId;
use crate::startup::Orders;

// ---------------------------------------------------------------------------
// Request parsing: fields are kept raw so a wrong type names its field and
// money is read from its decimal text, never through a float.
// ---------------------------------------------------------------------------

// The schemas of these bodies (in the OpenAPI document) say what a valid
// request holds, field by field; the fields themselves stay raw.

/// Body of `POST /api/orders`. Unknown members are accepted and ignored.
/// JSON null counts as absent. Texts are trimmed; they must contain a
/// non-blank character and no control characters. Wrong member types are
/// 422 with one error per field; a body that is not a JSON object is 400.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(
    as = CreateOrderRequest,
    example = json!({
        "customerId": "customer-1",
        "restaurantId": "restaurant-1",
        "items": [{"menuItemId": "pizza", "name": "Margherita", "price": "12.50", "quantity": 2}],
        "totalAmount": "25.00"
    })
)]
#[serde(rename_all = "camelCase")]
struct CreateBody<'a> {
    #[serde(borrow, default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$")]
    customer_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$")]
    restaurant_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    #[schema(value_type = Vec<ItemBody>, required = true, min_items = 1, max_items = 100)]
    items: Option<&'a RawValue>,
    /// Optional (see [`total_schema`]).
    #[serde(borrow, default)]
    #[schema(schema_with = total_schema)]
    total_amount: Option<&'a RawValue>,
}

/// One item of an order to create. Unknown members are accepted and ignored.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = CreateOrderItem)]
#[serde(rename_all = "camelCase")]
struct ItemBody<'a> {
    #[serde(borrow, default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$")]
    menu_item_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$")]
    name: Option<&'a RawValue>,
    /// Unit price (see [`price_schema`]).
    #[serde(borrow, default)]
    #[schema(schema_with = price_schema, required = true)]
    price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    #[schema(value_type = u32, required = true, minimum = 1, maximum = 10000)]
    quantity: Option<&'a RawValue>,
}

/// A unit price: a number, or a decimal string of at most 4 places.
fn price_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
    AnyOfBuilder::new()
        .description(Some(
            "Unit price, a decimal from 0 to 1000000 with at most 4 decimal places, as a JSON \
             number or a decimal string (read from its text, never through a float).",
        ))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0))
                .maximum(Some(1_000_000))
                .multiple_of(Some(0.0001)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^(1000000(\.0{1,4})?|[0-9]{1,6}(\.[0-9]{1,4})?)$")),
        )
        .into()
}

/// A claimed total: a number or a decimal string (or null: absent).
fn total_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
    AnyOfBuilder::new()
        .description(Some(
            "Optional. The total is computed from the items; a client-sent total that differs \
             from it is rejected with 422.",
        ))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^-?[0-9]{1,20}(\.[0-9]{1,20})?$")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// Parses the top level of a body into `T`: invalid JSON, or JSON that is
/// not an object, is a malformed request (400).
fn parse_object<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some()
        && first != Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        // Valid JSON, but `null`, an array or a scalar, which serde would
        // otherwise read as an object with every member missing.
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ApiError::bad_request(format!("the request body must be a JSON object: {e}"))
        } else {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        }
    })
}

fn string_field(
    field: &str,
    raw: Option<&RawValue>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let raw = raw?;
    match serde_json::from_str::<String>(raw.get()) {
        Ok(s) => Some(s),
        Err(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    }
}

/// A decimal from a JSON number or a decimal string, read from its text.
fn decimal_field(field: &str, raw: &RawValue, errors: &mut Vec<FieldError>) -> Option<Decimal> {
    let text = raw.get();
    let parsed = if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .ok()
            .filter(|s| is_plain_decimal(s.trim()))
            .and_then(|s| Decimal::from_str(s.trim()).ok())
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        if text.contains(['e', 'E']) {
            Decimal::from_scientific(text).ok()
        } else {
            Decimal::from_str(text).ok()
        }
    } else {
        None
    };
    if parsed.is_none() {
        errors.push(FieldError::new(
            field,
            "must be a decimal number (a JSON number or a string such as \"12.50\")",
        ));
    }
    parsed
}

/// `-?digits(.digits)?`: what a decimal string may look like.
fn is_plain_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// A quantity: a JSON number with an integral value (`2`, and also `2.0`
/// or `2e0`, which JSON Schema counts as integers too), read from its text.
fn quantity_field(field: &str, raw: &RawValue, errors: &mut Vec<FieldError>) -> Option<u32> {
    let text = raw.get();
    let number = if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        None
    } else if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str(text).ok()
    };
    let integral = number
        .filter(|d| d.fract().is_zero())
        .and_then(|d| rust_decimal::prelude::ToPrimitive::to_u32(&d));
    match integral {
        Some(n) => Some(n),
        None => {
            errors.push(FieldError::new(
                field,
                format!(
                    "must be an integer between 1 and {}",
                    order_core::domain::order::limits::MAX_QUANTITY
                ),
            ));
            None
        }
    }
}

/// Body of `POST /api/orders` → a validated [`CreateOrder`].
fn parse_create(bytes: &[u8]) -> Result<CreateOrder, ApiError> {
    let body: CreateBody = parse_object(bytes)?;
    let mut errors = Vec::new();
    let customer_id = string_field("customerId", body.customer_id, &mut errors);
    let restaurant_id = string_field("restaurantId", body.restaurant_id, &mut errors);
    let total = body
        .total_amount
        .and_then(|raw| decimal_field("totalAmount", raw, &mut errors));
    let mut items = Vec::new();
    if let Some(raw) = body.items {
        match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
            Err(_) => errors.push(FieldError::new("items", "must be an array of items")),
            Ok(raws) => {
                for (i, raw_item) in raws.into_iter().enumerate() {
                    // Only an object: serde would read an array positionally.
                    let parsed = raw_item
                        .get()
                        .starts_with('{')
                        .then(|| serde_json::from_str::<ItemBody>(raw_item.get()).ok())
                        .flatten();
                    let Some(item) = parsed else {
                        errors.push(FieldError::new(format!("items[{i}]"), "must be an object"));
                        continue;
                    };
                    let menu_item_id = string_field(
                        &format!("items[{i}].menuItemId"),
                        item.menu_item_id,
                        &mut errors,
                    );
                    let name = string_field(&format!("items[{i}].name"), item.name, &mut errors);
                    let price = match item.price {
                        Some(raw) => decimal_field(&format!("items[{i}].price"), raw, &mut errors),
                        None => {
                            errors
                                .push(FieldError::new(format!("items[{i}].price"), "is required"));
                            None
                        }
                    };
                    let quantity = match item.quantity {
                        Some(raw) => {
                            quantity_field(&format!("items[{i}].quantity"), raw, &mut errors)
                        }
                        None => {
                            errors.push(FieldError::new(
                                format!("items[{i}].quantity"),
                                "is required",
                            ));
                            None
                        }
                    };
                    if let (Some(price), Some(quantity)) = (price, quantity) {
                        items.push(OrderItem {
                            menu_item_id: menu_item_id.unwrap_or_default(),
                            name: name.unwrap_or_default(),
                            price,
                            quantity,
                        });
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    CreateOrder::new(
        customer_id.unwrap_or_default(),
        restaurant_id.unwrap_or_default(),
        items,
        total,
    )
    .map_err(|e| order_core::app::AppError::from(e).into())
}

/// Body of `PUT /api/orders/{id}/confirm`: the alternative to the
/// `paymentId` query parameter (the query parameter wins). Unknown members
/// are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ConfirmRequest)]
#[serde(rename_all = "camelCase")]
struct ConfirmBody<'a> {
    #[serde(borrow, default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$")]
    payment_id: Option<&'a RawValue>,
}

/// Body of `PUT /api/orders/{id}/cancel`: the alternative to the `reason`
/// query parameter (the query parameter wins). Unknown members are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = CancelRequest)]
struct CancelBody<'a> {
    #[serde(borrow, default)]
    #[schema(value_type = Option<String>, max_length = 500,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    reason: Option<&'a RawValue>,
}

/// One optional string member of an optional JSON object body: `T` is the
/// body, `member` picks the field named `field` out of it.
fn body_string<'a, T: Deserialize<'a>>(
    body: Option<&'a [u8]>,
    field: &'static str,
    member: impl FnOnce(T) -> Option<&'a RawValue>,
) -> Result<Option<String>, ApiError> {
    let Some(bytes) = body else {
        return Ok(None);
    };
    let parsed: T = parse_object(bytes)?;
    let mut errors = Vec::new();
    // JSON null deserializes as `None`: absent.
    let value = string_field(field, member(parsed), &mut errors);
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(ApiError::validation(errors))
    }
}

/// 64-bit FNV-1a of the raw body, hex: the fingerprint that tells an
/// idempotent retry from a reuse of the key with another request.
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

fn etag(version: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

fn order_response(status: StatusCode, order: &Order) -> Response {
    let mut resp = (status, Json(order)).into_response();
    if let Some(v) = etag(order.version) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

fn ctx(correlation: &CorrelationId) -> CommandContext {
    CommandContext {
        correlation_id: Some(correlation.0.clone()),
        traceparent: super::trace::current_traceparent(),
    }
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/api/orders",
    operation_id = "createOrder",
    tag = "orders",
    summary = "Create an order",
    description = "Commits the OrderCreated event, the current state and the outbox row in one transaction. Publishing happens afterwards, so a bus outage never fails this call.",
    request_body(content = CreateBody, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, pattern = r"^[\x21-\x7E]{1,255}$",
            description = "Makes retries safe: a retry with the same key and the same body returns the first result; the same key with another body is 422."),
    ),
    responses(
        (status = 201, description = "Created (or, with a reused Idempotency-Key and the same body, the first result).", body = Order, headers(
            ("ETag" = String, description = "The order version, quoted."),
            ("Location" = String, description = "URL of the new order."),
            ("Idempotent-Replayed" = String, description = "`true` when this is the stored result of an earlier request with the same Idempotency-Key."),
        ), links(
            ("getOrder" = (operation_id = "getOrder", parameters(("id" = "$response.body#/id")))),
            ("getOrderEvents" = (operation_id = "getOrderEvents", parameters(("id" = "$response.body#/id")))),
            ("confirmOrder" = (operation_id = "confirmOrder", parameters(("id" = "$response.body#/id")))),
            ("cancelOrder" = (operation_id = "cancelOrder", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, response = super::openapi::BadRequest),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::Unprocessable),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["operator"]), ("apiKeyHeader" = ["operator"])),
    extensions(("x-required-role" = json!("operator"))),
)]
pub async fn create(
    State(state): State<Arc<Orders>>,
    correlation: CorrelationId,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let cmd = parse_create(&body)?;
    let idem = key.map(|key| IdempotencyKey {
        key,
        fingerprint: fingerprint(&body),
    });
    let outcome = state.commands.create(cmd, idem, ctx(&correlation)).await?;
    let mut resp = order_response(StatusCode::CREATED, &outcome.order);
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/orders/{}", outcome.order.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    if outcome.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    operation_id = "getOrder",
    tag = "orders",
    summary = "Get an order (current state or time travel)",
    params(
        ("id" = Uuid, Path, description = "Order id (UUID); anything else is 400."),
        ("version" = Option<u64>, Query, minimum = 1, maximum = 9223372036854775807_u64,
            description = "State as of this version (rebuilt from the events). Not together with asOf."),
        ("asOf" = Option<String>, Query, format = DateTime,
            description = "State as of this instant (RFC 3339). Not together with version."),
    ),
    responses(
        (status = 200, description = "The order (ETag = version).", body = Order, headers(("ETag" = String, description = "The order version, quoted."))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, description = "No such order, or it did not exist at the requested version or instant.",
            body = super::error::Body, content_type = "application/problem+json"),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
    extensions(("x-required-role" = json!("viewer"))),
)]
pub async fn get(
    State(state): State<Arc<Orders>>,
    OrderId(id): OrderId,
    params: Params,
) -> Result<Response, ApiError> {
    let version = params.u64_in("version", 1, i64::MAX as u64)?;
    let as_of = match (version, params.raw("asOf")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "use either version or asOf, not both",
            ))
        }
        (Some(v), None) => AsOf::Version(v),
        (None, Some(t)) => match DateTime::parse_from_rfc3339(t) {
            Ok(t) => AsOf::Instant(storable_instant(t.with_timezone(&Utc))),
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "query parameter asOf must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z, got {t:?}"
                )))
            }
        },
        (None, None) => AsOf::Current,
    };
    let order = state.queries.get(id, as_of).await?;
    Ok(order_response(StatusCode::OK, &order))
}

/// The stores compare instants as fixed-width RFC 3339 text (SQLite) or as
/// DATETIME (MySQL), which hold years 1000 to 9999 only (an offset can push
/// a valid `asOf` past them: a wrong 404, or a 500 from MySQL). No event
/// lies outside, so the nearest end of that range is the same point in time.
fn storable_instant(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::TimeZone;
    let first = Utc.with_ymd_and_hms(1000, 1, 1, 0, 0, 0).single();
    let last = Utc
        .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .map(|t| t + chrono::Duration::microseconds(999_999));
    match (first, last) {
        (Some(first), _) if t < first => first,
        (_, Some(last)) if t > last => last,
        _ => t,
    }
}

#[utoipa::path(
    get,
    path = "/api/orders/{id}/events",
    operation_id = "getOrderEvents",
    tag = "orders",
    summary = "The order's events, in version order",
    params(
        ("id" = Uuid, Path, description = "Order id (UUID); anything else is 400."),
    ),
    responses(
        (status = 200, description = "Event envelopes.", body = Vec<order_core::domain::EventEnvelope>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
    extensions(("x-required-role" = json!("viewer"))),
)]
pub async fn events(
    State(state): State<Arc<Orders>>,
    OrderId(id): OrderId,
) -> Result<Response, ApiError> {
    let history = state.queries.history(id).await?;
    Ok(Json(history).into_response())
}

fn status_filter(params: &Params) -> Result<Option<OrderStatus>, ApiError> {
    match params.raw("status") {
        None => Ok(None),
        Some(s) => OrderStatus::parse(s)
            .filter(|_| s == s.trim())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown order status {s:?}; valid statuses are {}",
                    order_core::app::commands::valid_order_statuses()
                ))
            }),
    }
}

fn filter_value(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        Some(v) if v.chars().count() > 200 => Err(ApiError::bad_request(format!(
            "query parameter {name} must be at most 200 characters"
        ))),
        v => Ok(v.map(str::to_owned)),
    }
}

#[utoipa::path(
    get,
    path = "/api/orders",
    operation_id = "searchOrders",
    tag = "orders",
    summary = "Search orders (read model)",
    params(
        ("customerId" = Option<String>, Query, max_length = 200, description = "Exact customer id; empty means no filter."),
        ("restaurantId" = Option<String>, Query, max_length = 200, description = "Exact restaurant id; empty means no filter."),
        ("status" = Option<String>, Query, pattern = r"^([Pp][Ee][Nn][Dd][Ii][Nn][Gg]|[Cc][Oo][Nn][Ff][Ii][Rr][Mm][Ee][Dd]|[Pp][Rr][Ee][Pp][Aa][Rr][Ii][Nn][Gg]|[Rr][Ee][Aa][Dd][Yy]|[Dd][Ee][Ll][Ii][Vv][Ee][Rr][Ee][Dd]|[Cc][Aa][Nn][Cc][Ee][Ll][Ll][Ee][Dd])$",
            description = "Order status (PENDING, CONFIRMED, PREPARING, READY, DELIVERED, CANCELLED), case-insensitive; an unknown one is 400 naming the valid ones."),
        super::openapi::PageQuery,
    ),
    responses(
        (status = 200, description = "A page of orders, newest first. The read model is eventually consistent.", body = order_core::ports::Page<Order>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
    extensions(("x-required-role" = json!("viewer"))),
)]
pub async fn search(
    State(state): State<Arc<Orders>>,
    params: Params,
) -> Result<Response, ApiError> {
    let filter = OrderFilter {
        customer_id: filter_value(&params, "customerId")?,
        restaurant_id: filter_value(&params, "restaurantId")?,
        status: status_filter(&params)?,
    };
    let page = params.page()?;
    let result = state.read_model.query(&OrderQuery { filter, page }).await?;
    Ok(Json(result).into_response())
}

#[utoipa::path(
    get,
    path = "/api/orders/customer/{customerId}",
    operation_id = "getCustomerOrders",
    tag = "orders",
    summary = "A customer's orders (read model)",
    params(
        ("customerId" = String, Path, min_length = 1, max_length = 200, description = "Exact customer id (trimmed)."),
        ("status" = Option<String>, Query, pattern = r"^([Pp][Ee][Nn][Dd][Ii][Nn][Gg]|[Cc][Oo][Nn][Ff][Ii][Rr][Mm][Ee][Dd]|[Pp][Rr][Ee][Pp][Aa][Rr][Ii][Nn][Gg]|[Rr][Ee][Aa][Dd][Yy]|[Dd][Ee][Ll][Ii][Vv][Ee][Rr][Ee][Dd]|[Cc][Aa][Nn][Cc][Ee][Ll][Ll][Ee][Dd])$",
            description = "Order status, case-insensitive; an unknown one is 400."),
        super::openapi::PageQuery,
    ),
    responses(
        (status = 200, description = "A page of orders, newest first.", body = order_core::ports::Page<Order>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["viewer"]), ("apiKeyHeader" = ["viewer"])),
    extensions(("x-required-role" = json!("viewer"))),
)]
pub async fn by_customer(
    State(state): State<Arc<Orders>>,
    PathParam(customer_id): PathParam,
    params: Params,
) -> Result<Response, ApiError> {
    if customer_id.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "customerId must be at most 200 characters",
        ));
    }
    let filter = OrderFilter {
        customer_id: Some(customer_id.trim().to_owned()),
        restaurant_id: None,
        status: status_filter(&params)?,
    };
    let page = params.page()?;
    let result = state.read_model.query(&OrderQuery { filter, page }).await?;
    Ok(Json(result).into_response())
}

/// What every transition request names: the order, the version the
/// client expects (`If-Match`, checked after the body so a malformed body
/// is reported first) and the correlation id.
pub struct Target {
    id: uuid::Uuid,
    expected: Result<Option<u64>, ApiError>,
    correlation: CorrelationId,
}

impl<S: Send + Sync> FromRequestParts<S> for Target {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let OrderId(id) = OrderId::from_request_parts(parts, state).await?;
        let Ok(correlation) = CorrelationId::from_request_parts(parts, state).await;
        Ok(Target {
            id,
            expected: if_match(&parts.headers),
            correlation,
        })
    }
}

async fn transition(state: &Orders, target: Target, t: Transition) -> Result<Response, ApiError> {
    let expected = target.expected?;
    let order = state
        .commands
        .transition(target.id, t, expected, ctx(&target.correlation))
        .await?;
    Ok(order_response(StatusCode::OK, &order))
}

fn domain(e: order_core::domain::DomainError) -> ApiError {
    order_core::app::AppError::from(e).into()
}

/// The transition made from one string given as a query parameter or as a
/// member of the JSON body (the query wins). A body member the query
/// overrides must be valid too: a request is used whole or refused, never
/// half read.
fn transition_from<'a, T: Deserialize<'a>>(
    params: &Params,
    body: Option<&'a [u8]>,
    field: &'static str,
    member: impl FnOnce(T) -> Option<&'a RawValue>,
    make: impl Fn(Option<String>) -> Result<Transition, order_core::domain::DomainError>,
) -> Result<Transition, ApiError> {
    let from_body = body_string(body, field, member)?;
    // An empty query parameter is still given (and wins): `paymentId=` is
    // a blank payment id (422), `reason=` no reason.
    match params.raw(field) {
        Some(query) => {
            if from_body.is_some() {
                make(from_body).map_err(domain)?;
            }
            make(Some(query.to_owned())).map_err(domain)
        }
        None => make(from_body).map_err(domain),
    }
}

#[utoipa::path(
    put,
    path = "/api/orders/{id}/confirm",
    operation_id = "confirmOrder",
    tag = "orders",
    summary = "Confirm a PENDING order (needs a paymentId)",
    request_body(content = Option<ConfirmBody>, content_type = "application/json"),
    params(
        ("id" = Uuid, Path, description = "Order id (UUID); anything else is 400."),
        ("paymentId" = Option<String>, Query, min_length = 1, max_length = 64, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
            description = "Payment id; or give it in the JSON body (this parameter wins). Missing from both is 422."),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?("[0-9]{1,18}"|[0-9]{1,18}))$"#,
            description = "Expected order version, quoted (the ETag) or bare; `*` means any. A stale version is 412."),
    ),
    responses(
        (status = 200, description = "The order after the transition.", body = Order, headers(("ETag" = String, description = "The order version, quoted."))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::Unprocessable),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["operator"]), ("apiKeyHeader" = ["operator"])),
    extensions(("x-required-role" = json!("operator"))),
)]
pub async fn confirm(
    State(state): State<Arc<Orders>>,
    target: Target,
    params: Params,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let t = transition_from(
        &params,
        body.as_deref(),
        "paymentId",
        |b: ConfirmBody| b.payment_id,
        Transition::confirm,
    )?;
    transition(&state, target, t).await
}

#[utoipa::path(
    put,
    path = "/api/orders/{id}/cancel",
    operation_id = "cancelOrder",
    tag = "orders",
    summary = "Cancel a PENDING order",
    description = "Cancelling twice, or after confirmation, is 409 and writes nothing.",
    request_body(content = Option<CancelBody>, content_type = "application/json"),
    params(
        ("id" = Uuid, Path, description = "Order id (UUID); anything else is 400."),
        ("reason" = Option<String>, Query, max_length = 500, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
            description = "Optional reason; or give it in the JSON body. Blank means none."),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?("[0-9]{1,18}"|[0-9]{1,18}))$"#,
            description = "Expected order version, quoted (the ETag) or bare; `*` means any. A stale version is 412."),
    ),
    responses(
        (status = 200, description = "The order after the transition.", body = Order, headers(("ETag" = String, description = "The order version, quoted."))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::Unprocessable),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearerAuth" = ["operator"]), ("apiKeyHeader" = ["operator"])),
    extensions(("x-required-role" = json!("operator"))),
)]
pub async fn cancel(
    State(state): State<Arc<Orders>>,
    target: Target,
    params: Params,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let t = transition_from(
        &params,
        body.as_deref(),
        "reason",
        |b: CancelBody| b.reason,
        Transition::cancel,
    )?;
    transition(&state, target, t).await
}

/// A handler for a transition that takes no body: the same parameters,
/// answers and role, one `Transition`.
macro_rules! bodyless_transition {
    ($name:ident, $path:literal, $operation:literal, $summary:literal, $transition:expr) => {
        #[utoipa::path(
            put,
            path = $path,
            operation_id = $operation,
            tag = "orders",
            summary = $summary,
            params(
                ("id" = Uuid, Path, description = "Order id (UUID); anything else is 400."),
                ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?("[0-9]{1,18}"|[0-9]{1,18}))$"#,
                    description = "Expected order version, quoted (the ETag) or bare; `*` means any. A stale version is 412."),
            ),
            responses(
                (status = 200, description = "The order after the transition.", body = Order, headers(("ETag" = String, description = "The order version, quoted."))),
                (status = 400, response = super::openapi::BadRequest),
                (status = 404, response = super::openapi::NotFound),
                (status = 409, response = super::openapi::Conflict),
                (status = 412, response = super::openapi::PreconditionFailed),
                (status = 503, response = super::openapi::Unavailable),
            ),
            security(("bearerAuth" = ["operator"]), ("apiKeyHeader" = ["operator"])),
            extensions(("x-required-role" = json!("operator"))),
        )]
        pub async fn $name(
            State(state): State<Arc<Orders>>,
            target: Target,
        ) -> Result<Response, ApiError> {
            transition(&state, target, $transition).await
        }
    };
}

bodyless_transition!(
    prepare,
    "/api/orders/{id}/prepare",
    "prepareOrder",
    "CONFIRMED → PREPARING",
    Transition::Prepare
);
bodyless_transition!(
    ready,
    "/api/orders/{id}/ready",
    "readyOrder",
    "PREPARING → READY",
    Transition::MarkReady
);
bodyless_transition!(
    deliver,
    "/api/orders/{id}/deliver",
    "deliverOrder",
    "READY → DELIVERED",
    Transition::Deliver
);

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(body: &str) -> Vec<String> {
        match parse_create(body.as_bytes()) {
            Ok(_) => vec![],
            Err(e) => e
                .errors
                .into_iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect(),
        }
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fingerprint(b""), "cbf29ce484222325");
        assert_eq!(fingerprint(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fingerprint(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn prices_are_read_from_their_decimal_text() {
        let cmd = parse_create(
            br#"{"customerId":"c","restaurantId":"r","items":[
                {"menuItemId":"m","name":"n","price":0.1,"quantity":3},
                {"menuItemId":"m2","name":"n2","price":"0.2","quantity":1}],
                "totalAmount":"0.5"}"#,
        )
        .unwrap();
        assert_eq!(cmd.total_amount(), Decimal::from_str("0.5").unwrap());
    }

    #[test]
    fn wrong_types_name_their_field() {
        let errs = errors_of(
            r#"{"customerId":1,"restaurantId":"r","items":[{"menuItemId":"m","name":"n","price":"x","quantity":1.5}]}"#,
        );
        assert_eq!(
            errs,
            vec![
                "customerId: must be a string",
                "items[0].price: must be a decimal number (a JSON number or a string such as \"12.50\")",
                "items[0].quantity: must be an integer between 1 and 10000",
            ]
        );
    }

    #[test]
    fn instants_beyond_what_the_stores_hold_are_clamped() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            storable_instant(at("9999-12-31T23:59:59-23:59")),
            at("9999-12-31T23:59:59.999999Z")
        );
        assert_eq!(
            storable_instant(at("0000-01-01T00:00:00+23:59")),
            at("1000-01-01T00:00:00Z")
        );
        let now = at("2024-05-01T12:00:00.5Z");
        assert_eq!(storable_instant(now), now);
    }

    #[test]
    fn a_quantity_is_any_json_number_with_an_integral_value() {
        let item = |q: &str| {
            format!(
                r#"{{"customerId":"c","restaurantId":"r","items":[{{"menuItemId":"m","name":"n","price":"1","quantity":{q}}}]}}"#
            )
        };
        for q in ["2", "2.0", "2e0", "0.2e1", "10000.000"] {
            assert_eq!(errors_of(&item(q)), Vec::<String>::new(), "{q}");
        }
        for q in ["2.5", "\"2\"", "-1", "1e30", "true", "4294967296"] {
            assert_eq!(errors_of(&item(q)).len(), 1, "{q}");
        }
    }

    #[test]
    fn an_item_given_as_an_array_is_not_read_positionally() {
        assert_eq!(
            errors_of(r#"{"customerId":"c","restaurantId":"r","items":[["m","n","1.00",1]]}"#),
            vec!["items[0]: must be an object"]
        );
    }

    #[test]
    fn decimal_strings_must_be_plain_decimals() {
        for bad in ["1_000", "1e3", "", " ", "1.", ".5", "NaN", "+1"] {
            assert!(!is_plain_decimal(bad), "{bad:?}");
        }
        for good in ["0", "12.50", "-1.25"] {
            assert!(is_plain_decimal(good), "{good:?}");
        }
    }
}
