//! The pure domain: no I/O, no clocks except [`events::now`].

pub mod error;
pub mod events;
pub mod order;

#[cfg(test)]
mod tests;

pub use error::{DomainError, FieldError};
pub use events::{
    fold, fold_one, now, span_id_of, trace_id_of, EventDecodeError, EventEnvelope, FoldError,
    OrderEvent, RecordedEvent,
};
pub use order::{CreateOrder, Order, OrderItem, OrderStatus, Transition, AGGREGATE_TYPE};
