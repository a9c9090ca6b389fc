//! The one error type of the HTTP layer. Everything that goes wrong in a
//! request ends here and leaves as `application/problem+json` (RFC 9457).
//! 5xx causes are logged once, here, and never returned to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use order_core::app::AppError;
use order_core::domain::{DomainError, FieldError};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";
const TYPE_BASE: &str = "https://order-service.dev/problems/";

/// The stable problem types this service answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    Validation,
    MalformedRequest,
    NotFound,
    MethodNotAllowed,
    IllegalTransition,
    VersionConflict,
    Conflict,
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    ServiceUnavailable,
    Internal,
    /// Any other HTTP error status produced outside our handlers.
    Http(StatusCode),
}

impl Problem {
    pub fn status(self) -> StatusCode {
        match self {
            Problem::Validation | Problem::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Problem::MalformedRequest => StatusCode::BAD_REQUEST,
            Problem::NotFound => StatusCode::NOT_FOUND,
            Problem::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Problem::IllegalTransition | Problem::VersionConflict | Problem::Conflict => {
                StatusCode::CONFLICT
            }
            Problem::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Problem::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Problem::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Problem::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Problem::Http(s) => s,
        }
    }

    fn slug(self) -> String {
        let s = match self {
            Problem::Validation => "validation",
            Problem::MalformedRequest => "malformed-request",
            Problem::NotFound => "not-found",
            Problem::MethodNotAllowed => "method-not-allowed",
            Problem::IllegalTransition => "illegal-transition",
            Problem::VersionConflict => "version-conflict",
            Problem::Conflict => "conflict",
            Problem::PreconditionFailed => "precondition-failed",
            Problem::PayloadTooLarge => "payload-too-large",
            Problem::UnsupportedMediaType => "unsupported-media-type",
            Problem::IdempotencyKeyReused => "idempotency-key-reused",
            Problem::ServiceUnavailable => "service-unavailable",
            Problem::Internal => "internal",
            Problem::Http(s) => return format!("http-{}", s.as_u16()),
        };
        s.to_owned()
    }

    fn title(self) -> &'static str {
        match self {
            Problem::Validation => "Request validation failed",
            Problem::MalformedRequest => "Malformed request",
            Problem::NotFound => "Resource not found",
            Problem::MethodNotAllowed => "Method not allowed",
            Problem::IllegalTransition => "Illegal state transition",
            Problem::VersionConflict => "Concurrent modification",
            Problem::Conflict => "Conflict with the current state",
            Problem::PreconditionFailed => "Precondition failed",
            Problem::PayloadTooLarge => "Request body too large",
            Problem::UnsupportedMediaType => "Unsupported media type",
            Problem::IdempotencyKeyReused => "Idempotency key reused",
            Problem::ServiceUnavailable => "Service unavailable",
            Problem::Internal => "Internal server error",
            Problem::Http(s) => s.canonical_reason().unwrap_or("Error"),
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub problem: Problem,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

/// RFC 9457 problem details. `type` is a stable URI per kind of problem.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub(crate) struct Body<'a> {
    /// One of `https://order-service.dev/problems/` followed by validation,
    /// malformed-request, not-found, method-not-allowed, illegal-transition,
    /// version-conflict, conflict, precondition-failed, payload-too-large,
    /// unsupported-media-type, idempotency-key-reused, service-unavailable,
    /// internal, or `http-<status>` for another status.
    #[serde(rename = "type")]
    #[schema(
        format = "uri",
        example = "https://order-service.dev/problems/validation"
    )]
    type_: String,
    #[schema(example = "Request validation failed")]
    title: &'a str,
    #[schema(minimum = 400, maximum = 599, example = 422)]
    status: u16,
    #[schema(example = "items[0].quantity must be an integer between 1 and 10000")]
    detail: &'a str,
    /// Present on validation problems: one entry per invalid field.
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    #[schema(value_type = Vec<FieldError>)]
    errors: &'a [FieldError],
}

impl ApiError {
    pub fn new(problem: Problem, detail: impl Into<String>) -> Self {
        Self {
            problem,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Problem::MalformedRequest, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(Problem::NotFound, detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = if errors.len() == 1 {
            format!("{} {}", errors[0].field, errors[0].message)
        } else {
            format!("{} fields are invalid", errors.len())
        };
        Self {
            problem: Problem::Validation,
            detail,
            errors,
        }
    }

    /// A 500 whose cause is logged here and replaced by a generic detail.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "request failed with an internal error");
        Self::new(Problem::Internal, "internal error")
    }

    pub fn status(&self) -> StatusCode {
        self.problem.status()
    }
}

/// A problem response for `status` with `detail` (used by the middleware
/// that turns framework errors into problems).
pub fn problem_response(problem: Problem, detail: &str, errors: &[FieldError]) -> Response {
    let status = problem.status();
    let body = Body {
        type_: format!("{TYPE_BASE}{}", problem.slug()),
        title: problem.title(),
        status: status.as_u16(),
        detail,
        errors,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = (status, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem_response(self.problem, &self.detail, &self.errors)
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Domain(DomainError::Validation(errors)) => ApiError::validation(errors),
            AppError::Domain(d @ DomainError::IllegalTransition { .. }) => {
                ApiError::new(Problem::IllegalTransition, d.to_string())
            }
            AppError::NotFound(m) => ApiError::new(Problem::NotFound, m),
            e @ AppError::VersionConflict => ApiError::new(Problem::VersionConflict, e.to_string()),
            e @ AppError::PreconditionFailed { .. } => {
                ApiError::new(Problem::PreconditionFailed, e.to_string())
            }
            e @ AppError::IdempotencyMismatch => {
                ApiError::new(Problem::IdempotencyKeyReused, e.to_string())
            }
            AppError::Conflict(m) => ApiError::new(Problem::Conflict, m),
            AppError::BadRequest(m) => ApiError::bad_request(m),
            AppError::Forbidden(m) => ApiError::new(Problem::Http(StatusCode::FORBIDDEN), m),
            AppError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "request failed: a backend is unavailable");
                ApiError::new(
                    Problem::ServiceUnavailable,
                    "a backend is temporarily unavailable; retry later",
                )
            }
            AppError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<order_core::ports::StoreError> for ApiError {
    fn from(e: order_core::ports::StoreError) -> Self {
        AppError::from(e).into()
    }
}
