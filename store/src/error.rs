//! The store's errors, the same whatever the backend: callers decide on what happened
//! (full, too new, a bad query), never on a driver's error type.

/// Errors of a store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend refused or failed (I/O, a lock held too long, corruption).
    #[error("database: {0}")]
    Backend(String),
    /// The storage is full: nothing more can be committed until space is made.
    #[error("storage full: {0}")]
    Full(String),
    /// The database is from a newer sonde (a migration this code does not know).
    #[error("the database is at schema version {found}, newer than this collector's {known}")]
    TooNew {
        /// Version found.
        found: i64,
        /// Latest version this code knows.
        known: i64,
    },
    /// A query parameter is out of range.
    #[error("{0}")]
    Query(String),
}
