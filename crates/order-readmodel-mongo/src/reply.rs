//! Reading what the server answers: per-statement outcomes of an `update`
//! command, integers in replies, and the translation of driver errors into
//! [`StoreError`]s (corrupt data versus an unavailable backend).

use mongodb::bson::{Bson, Document};
use mongodb::error::{Error as MongoError, ErrorKind};
use order_core::ports::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Written,
    DuplicateKey,
}

pub(crate) fn int(v: Option<&Bson>) -> Option<i64> {
    match v? {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) if d.fract() == 0.0 => Some(*d as i64),
        _ => None,
    }
}

pub(crate) fn bad_reply(reply: &Document) -> StoreError {
    StoreError::Unavailable(format!("unexpected MongoDB update reply: {reply}"))
}

/// Translates a driver error: unreadable documents are corrupt data,
/// everything else (network, server selection, timeouts, server errors) is
/// an unavailable backend that a retry may get past.
pub(crate) fn mongo_err(e: MongoError) -> StoreError {
    match &*e.kind {
        ErrorKind::BsonDeserialization(_) => {
            StoreError::Corrupt(format!("MongoDB document is unreadable: {e}"))
        }
        _ => StoreError::Unavailable(format!("MongoDB: {e}")),
    }
}
