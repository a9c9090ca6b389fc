//! [`MongoOptions`]: the timeouts and batch limits a [`MongoReadModel`]
//! runs with, apart from the code that applies them.

use std::time::Duration;

#[cfg(doc)]
use order_core::ports::{ReadModel, StoreError};

#[cfg(doc)]
use crate::MongoReadModel;

/// Timeouts and batch limits of a [`MongoReadModel`].
///
/// `server_selection_timeout` and `connect_timeout` apply unless the URI
/// sets `serverSelectionTimeoutMS` / `connectTimeoutMS` itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MongoOptions {
    /// How long an operation waits for a usable server before it fails with
    /// [`StoreError::Unavailable`] (the driver's default is 30 s).
    pub server_selection_timeout: Duration,
    /// TCP connect + handshake timeout of one connection.
    pub connect_timeout: Duration,
    /// Upper bound on any single operation, including waiting for a server
    /// that accepted the connection but stopped answering.
    pub operation_timeout: Duration,
    /// Statements per `update` command in [`ReadModel::upsert_many`].
    pub max_batch: usize,
}

impl Default for MongoOptions {
    fn default() -> Self {
        Self {
            server_selection_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(30),
            max_batch: 1_000,
        }
    }
}
