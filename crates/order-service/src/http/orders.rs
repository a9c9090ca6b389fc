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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody<'a> {
    #[serde(borrow, default)]
    customer_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    restaurant_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    items: Option<&'a RawValue>,
    #[serde(borrow, default)]
    total_amount: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemBody<'a> {
    #[serde(borrow, default)]
    menu_item_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    quantity: Option<&'a RawValue>,
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

fn quantity_field(field: &str, raw: &RawValue, errors: &mut Vec<FieldError>) -> Option<u32> {
    match serde_json::from_str::<i64>(raw.get()) {
        Ok(n) if n >= 0 && n <= i64::from(u32::MAX) => Some(n as u32),
        _ => {
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

/// One optional string member of an optional JSON object body.
fn body_string(body: Option<&[u8]>, field: &'static str) -> Result<Option<String>, ApiError> {
    let Some(bytes) = body else {
        return Ok(None);
    };
    let map: std::collections::HashMap<String, &RawValue> = parse_object(bytes)?;
    let mut errors = Vec::new();
    let value = match map.get(field) {
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => string_field(field, Some(raw), &mut errors),
        None => None,
    };
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

/// A string given as a query parameter or as a member of the JSON body
/// (the query wins).
fn param_or_body(
    params: &Params,
    body: Option<&[u8]>,
    field: &'static str,
) -> Result<Option<String>, ApiError> {
    let from_body = body_string(body, field)?;
    Ok(params.get(field).map(str::to_owned).or(from_body))
}

pub async fn confirm(
    State(state): State<Arc<Orders>>,
    target: Target,
    params: Params,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let payment_id = param_or_body(&params, body.as_deref(), "paymentId")?;
    let t = Transition::confirm(payment_id).map_err(domain)?;
    transition(&state, target, t).await
}

pub async fn cancel(
    State(state): State<Arc<Orders>>,
    target: Target,
    params: Params,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let reason = param_or_body(&params, body.as_deref(), "reason")?;
    let t = Transition::cancel(reason).map_err(domain)?;
    transition(&state, target, t).await
}

pub async fn prepare(
    State(state): State<Arc<Orders>>,
    target: Target,
) -> Result<Response, ApiError> {
    transition(&state, target, Transition::Prepare).await
}

pub async fn ready(State(state): State<Arc<Orders>>, target: Target) -> Result<Response, ApiError> {
    transition(&state, target, Transition::MarkReady).await
}

pub async fn deliver(
    State(state): State<Arc<Orders>>,
    target: Target,
) -> Result<Response, ApiError> {
    transition(&state, target, Transition::Deliver).await
}

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
