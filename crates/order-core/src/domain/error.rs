//! Business rejections. Infrastructure failures live in [`crate::ports`].

use serde::Serialize;

use super::order::OrderStatus;

/// One invalid field of a request, reported back to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    #[cfg_attr(feature = "openapi", schema(example = "items[0].quantity"))]
    pub field: String,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "must be an integer between 1 and 10000")
    )]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command is malformed in business terms (422).
    #[error("invalid order: {}", .0.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Validation(Vec<FieldError>),
    /// The order's status does not allow the action (409); nothing is written.
    #[error("cannot {action} an order that is {from}")]
    IllegalTransition {
        from: OrderStatus,
        action: &'static str,
    },
}
