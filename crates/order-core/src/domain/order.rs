//! The Order aggregate: validated commands, decisions (`decide_*`) and state
//! changes (`apply`). Decisions never mutate; `apply` never rejects a
//! well-formed history.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{DomainError, FieldError};
use super::events::OrderEvent;

/// Aggregate type written in every envelope and in the event store.
pub const AGGREGATE_TYPE: &str = "Order";

/// Limits applied at the edge so no input can grow a row without bound.
pub mod limits {
    pub const MAX_ID_LEN: usize = 64;
    pub const MAX_NAME_LEN: usize = 200;
    pub const MAX_ITEMS: usize = 100;
    pub const MAX_QUANTITY: u32 = 10_000;
    pub const MAX_REASON_LEN: usize = 500;
    /// Largest accepted unit price (inclusive).
    pub const MAX_PRICE_UNITS: i64 = 1_000_000;
    pub const MAX_PRICE_SCALE: u32 = 4;
}

/// An order's status: `PENDING → CONFIRMED → PREPARING → READY → DELIVERED`,
/// and `PENDING → CANCELLED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Preparing,
    Ready,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Preparing,
        OrderStatus::Ready,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Preparing => "PREPARING",
            OrderStatus::Ready => "READY",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    /// Case-insensitive parse; `None` for an unknown name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub menu_item_id: String,
    pub name: String,
    /// Unit price, a decimal string.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "12.50"))]
    pub price: Decimal,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub quantity: u32,
}

impl OrderItem {
    pub fn line_total(&self) -> Decimal {
        self.price * Decimal::from(self.quantity)
    }
}

/// Current state of one order, as folded from its events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Uuid,
    pub customer_id: String,
    pub restaurant_id: String,
    pub items: Vec<OrderItem>,
    /// The sum of the items, a decimal string.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "25.00"))]
    pub total_amount: Decimal,
    pub status: OrderStatus,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub payment_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub cancellation_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Aggregate version; also the ETag.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
}

/// A create command that has passed validation: only `CreateOrder::new` builds one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateOrder {
    customer_id: String,
    restaurant_id: String,
    items: Vec<OrderItem>,
    total_amount: Decimal,
}

impl CreateOrder {
    /// Validates every field and collects all violations at once, so a client
    /// fixes its request in one round trip.
    pub fn new(
        customer_id: String,
        restaurant_id: String,
        items: Vec<OrderItem>,
        claimed_total: Option<Decimal>,
    ) -> Result<Self, DomainError> {
        let mut errors = Vec::new();
        check_id("customerId", &customer_id, &mut errors);
        check_id("restaurantId", &restaurant_id, &mut errors);
        if items.is_empty() {
            errors.push(FieldError::new("items", "must contain at least one item"));
        }
        if items.len() > limits::MAX_ITEMS {
            errors.push(FieldError::new(
                "items",
                format!("must contain at most {} items", limits::MAX_ITEMS),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            check_id(
                &format!("items[{i}].menuItemId"),
                &item.menu_item_id,
                &mut errors,
            );
            check_text(
                &format!("items[{i}].name"),
                &item.name,
                limits::MAX_NAME_LEN,
                &mut errors,
            );
            if item.quantity < 1 || item.quantity > limits::MAX_QUANTITY {
                errors.push(FieldError::new(
                    format!("items[{i}].quantity"),
                    format!("must be between 1 and {}", limits::MAX_QUANTITY),
                ));
            }
            if item.price.is_sign_negative() && !item.price.is_zero() {
                errors.push(FieldError::new(format!("items[{i}].price"), "must be >= 0"));
            } else if item.price > Decimal::from(limits::MAX_PRICE_UNITS) {
                errors.push(FieldError::new(
                    format!("items[{i}].price"),
                    format!("must be <= {}", limits::MAX_PRICE_UNITS),
                ));
            }
            if item.price.normalize().scale() > limits::MAX_PRICE_SCALE {
                errors.push(FieldError::new(
                    format!("items[{i}].price"),
                    format!(
                        "must have at most {} decimal places",
                        limits::MAX_PRICE_SCALE
                    ),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(DomainError::Validation(errors));
        }
        let total: Decimal = items.iter().map(OrderItem::line_total).sum();
        if let Some(claimed) = claimed_total {
            if claimed != total {
                return Err(DomainError::Validation(vec![FieldError::new(
                    "totalAmount",
                    format!("does not match the sum of the items ({total})"),
                )]));
            }
        }
        Ok(Self {
            customer_id: customer_id.trim().to_owned(),
            restaurant_id: restaurant_id.trim().to_owned(),
            items: items
                .into_iter()
                .map(|i| OrderItem {
                    menu_item_id: i.menu_item_id.trim().to_owned(),
                    name: i.name.trim().to_owned(),
                    price: i.price,
                    quantity: i.quantity,
                })
                .collect(),
            total_amount: total,
        })
    }

    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }
    pub fn restaurant_id(&self) -> &str {
        &self.restaurant_id
    }
    pub fn items(&self) -> &[OrderItem] {
        &self.items
    }
    pub fn total_amount(&self) -> Decimal {
        self.total_amount
    }

    /// The single event a valid create produces.
    pub fn decide(&self) -> OrderEvent {
        OrderEvent::Created {
            customer_id: self.customer_id.clone(),
            restaurant_id: self.restaurant_id.clone(),
            items: self.items.clone(),
            total_amount: self.total_amount,
        }
    }
}

fn check_id(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    check_text(field, value, limits::MAX_ID_LEN, errors);
}

fn check_text(field: &str, value: &str, max: usize, errors: &mut Vec<FieldError>) {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        errors.push(FieldError::new(field, "must not be blank"));
    } else if trimmed.chars().count() > max {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    } else if trimmed.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
}

/// A state change requested on an existing order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Confirm { payment_id: String },
    Cancel { reason: Option<String> },
    Prepare,
    MarkReady,
    Deliver,
}

impl Transition {
    /// Builds a confirm, validating the payment id.
    pub fn confirm(payment_id: Option<String>) -> Result<Self, DomainError> {
        let payment_id = payment_id.unwrap_or_default();
        let mut errors = Vec::new();
        check_id("paymentId", &payment_id, &mut errors);
        if errors.is_empty() {
            Ok(Transition::Confirm {
                payment_id: payment_id.trim().to_owned(),
            })
        } else {
            Err(DomainError::Validation(errors))
        }
    }

    /// Builds a cancel; a blank reason counts as none.
    pub fn cancel(reason: Option<String>) -> Result<Self, DomainError> {
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if let Some(r) = &reason {
            let mut errors = Vec::new();
            check_text("reason", r, limits::MAX_REASON_LEN, &mut errors);
            if !errors.is_empty() {
                return Err(DomainError::Validation(errors));
            }
        }
        Ok(Transition::Cancel { reason })
    }

    pub fn action(&self) -> &'static str {
        match self {
            Transition::Confirm { .. } => "confirm",
            Transition::Cancel { .. } => "cancel",
            Transition::Prepare => "prepare",
            Transition::MarkReady => "ready",
            Transition::Deliver => "deliver",
        }
    }
}

impl Order {
    /// Decides which event a transition produces, or rejects it. Writes nothing.
    pub fn decide(&self, transition: &Transition) -> Result<OrderEvent, DomainError> {
        use OrderStatus as S;
        let event = match (self.status, transition) {
            (S::Pending, Transition::Confirm { payment_id }) => OrderEvent::Confirmed {
                payment_id: payment_id.clone(),
            },
            (S::Pending, Transition::Cancel { reason }) => OrderEvent::Cancelled {
                reason: reason.clone(),
            },
            (S::Confirmed, Transition::Prepare) => OrderEvent::PreparationStarted,
            (S::Preparing, Transition::MarkReady) => OrderEvent::MarkedReady,
            (S::Ready, Transition::Deliver) => OrderEvent::Delivered,
            (from, t) => {
                return Err(DomainError::IllegalTransition {
                    from,
                    action: t.action(),
                })
            }
        };
        Ok(event)
    }

    /// Folds one event into the state. `at` is the event's time; `version` its
    /// aggregate version. Returns `None` when the event cannot follow the state
    /// (a corrupt or out-of-order history).
    pub fn apply(
        state: Option<&Order>,
        id: Uuid,
        event: &OrderEvent,
        version: u64,
        at: DateTime<Utc>,
    ) -> Option<Order> {
        match (state, event) {
            (
                None,
                OrderEvent::Created {
                    customer_id,
                    restaurant_id,
                    items,
                    total_amount,
                },
            ) => Some(Order {
                id,
                customer_id: customer_id.clone(),
                restaurant_id: restaurant_id.clone(),
                items: items.clone(),
                total_amount: *total_amount,
                status: OrderStatus::Pending,
                payment_id: None,
                cancellation_reason: None,
                created_at: at,
                updated_at: at,
                version,
            }),
            (None, _) | (Some(_), OrderEvent::Created { .. }) => None,
            (Some(prev), e) => {
                let mut next = prev.clone();
                next.version = version;
                next.updated_at = at;
                match e {
                    OrderEvent::Confirmed { payment_id } => {
                        next.status = OrderStatus::Confirmed;
                        next.payment_id = Some(payment_id.clone());
                    }
                    OrderEvent::Cancelled { reason } => {
                        next.status = OrderStatus::Cancelled;
                        next.cancellation_reason = reason.clone();
                    }
                    OrderEvent::PreparationStarted => next.status = OrderStatus::Preparing,
                    OrderEvent::MarkedReady => next.status = OrderStatus::Ready,
                    OrderEvent::Delivered => next.status = OrderStatus::Delivered,
                    OrderEvent::Created { .. } => return None,
                }
                Some(next)
            }
        }
    }
}
