//! Errors inside the store: SQLite's, or one of the store's own, and what each becomes
//! at the boundary (a full disk is `Full`, the rest `Backend`).

use sonde_store::StoreError;

/// An error inside the store: SQLite's, or one of the store's own.
#[derive(Debug)]
pub enum Error {
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// The store refused.
    Store(StoreError),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e,
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, m))
                if f.code == rusqlite::ErrorCode::DiskFull =>
            {
                StoreError::Full(m.unwrap_or_else(|| f.to_string()))
            }
            Error::Sqlite(e) => StoreError::Backend(e.to_string()),
        }
    }
}
