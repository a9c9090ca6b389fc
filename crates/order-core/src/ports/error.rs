//! The error every store port returns: driver errors are translated into it inside the adapter.

/// Infrastructure failure of a store, already translated by the adapter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or timed out; retrying later may succeed (503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data cannot be read back (a bug or manual tampering) (500).
    #[error("corrupt data: {0}")]
    Corrupt(String),
}
