//! Custom extractors: they parse at the edge and reject with a problem
//! response, so axum's plain-text rejections never reach a client.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use order_core::ports::PageRequest;
use uuid::Uuid;

use super::error::{ApiError, Problem};

/// Default and largest page size of every list.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
/// Largest page number accepted (keeps offsets far from overflow).
pub const MAX_PAGE: u32 = 1_000_000;

fn is_json_content_type(headers: &HeaderMap) -> Option<bool> {
    let ct = headers.get(header::CONTENT_TYPE)?;
    let ct = ct.to_str().ok()?;
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some(
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json")),
    )
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        Problem::UnsupportedMediaType,
        "the request body must be JSON (Content-Type: application/json)",
    )
}

pub(super) async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                Problem::PayloadTooLarge,
                "the request body exceeds the configured limit (ORDER_MAX_BODY_BYTES)",
            )
        } else {
            ApiError::bad_request("the request body could not be read")
        }
    })
}

/// A required JSON body, still raw: handlers parse it field by field so type
/// errors name the field. Missing or non-JSON `Content-Type` → 415; over
/// the body limit → 413.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if is_json_content_type(req.headers()) != Some(true) {
            return Err(unsupported_media_type());
        }
        Ok(JsonBody(read_body(req, state).await?))
    }
}

/// An optional JSON body: an empty body is `None`; a non-empty one needs a
/// JSON `Content-Type`.
pub struct OptionalJsonBody(pub Option<Bytes>);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_json = is_json_content_type(req.headers());
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        if declared_json != Some(true) {
            return Err(unsupported_media_type());
        }
        Ok(OptionalJsonBody(Some(bytes)))
    }
}

/// Query parameters, parsed by name so errors name the parameter. Unknown
/// parameters are ignored.
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("the query string is malformed"))?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// The first value of `name`, as sent (possibly empty).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`; an empty value counts as absent (used for
    /// optional filters and texts).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|v| !v.is_empty())
    }

    /// A non-negative integer made of ASCII digits only, within `min..=max`.
    pub fn u64_in(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.raw(name) else {
            return Ok(None);
        };
        let parsed = if !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) {
            v.parse::<u64>().ok()
        } else {
            None
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "query parameter {name} must be an integer from {min} to {max}, got {v:?}"
            ))),
        }
    }

    /// `true` or `false` (default false when absent); anything else is 400.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.raw(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "query parameter {name} must be true or false, got {v:?}"
            ))),
        }
    }

    /// `page` (zero-based, default 0) and `size` (1..=100, default 20).
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let page = self.u64_in("page", 0, u64::from(MAX_PAGE))?.unwrap_or(0);
        let size = self
            .u64_in("size", 1, u64::from(MAX_PAGE_SIZE))?
            .unwrap_or(u64::from(DEFAULT_PAGE_SIZE));
        Ok(PageRequest {
            page: page as u32,
            size: size as u32,
        })
    }
}

/// The one path parameter of a route, as text.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(v) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("the path parameter is malformed"))?;
        Ok(PathParam(v))
    }
}

/// An order id path parameter; anything but a UUID is 400.
pub struct OrderId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for OrderId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let PathParam(raw) = PathParam::from_request_parts(parts, state).await?;
        // Only the hyphenated form (what the API hands out) is accepted.
        Uuid::try_parse(&raw)
            .ok()
            .filter(|_| raw.len() == 36)
            .map(OrderId)
            .ok_or_else(|| ApiError::bad_request(format!("order id {raw:?} is not a valid UUID")))
    }
}

/// `If-Match: "N"` (quoted, bare or weak). `*` or absent → no precondition.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "If-Match must be an order version such as \"3\" (the ETag of the order)",
        )
    };
    let text = v.to_str().map_err(|_| bad())?.trim();
    if text == "*" {
        return Ok(None);
    }
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse::<u64>().map(Some).map_err(|_| bad())
}

/// The `Idempotency-Key` header: 1..=255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters");
    let text = v.to_str().map_err(|_| bad())?.trim();
    if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(text.to_owned()))
}

/// The principal a request is done for, as the authentication middleware
/// put it into the request; anonymous when it did not (authentication off).
pub fn principal(
    ext: Option<axum::Extension<order_core::app::Principal>>,
) -> order_core::app::Principal {
    ext.map_or_else(
        order_core::app::Principal::anonymous,
        |axum::Extension(p)| p,
    )
}
