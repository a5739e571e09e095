//! Errors inside the store: PostgreSQL's, the pool's, or one of the store's own, and
//! what each becomes at the boundary (a full disk is `Full`, the rest `Backend`).

use sonde_store::StoreError;

/// An error inside the store.
#[derive(Debug)]
pub enum Error {
    /// PostgreSQL failed or refused.
    Pg(postgres::Error),
    /// No connection could be had from the pool.
    Pool(String),
    /// The store refused.
    Store(StoreError),
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Pg(e)
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
            Error::Pool(e) => StoreError::Backend(format!("no connection to PostgreSQL: {e}")),
            Error::Pg(e) => match e.code() {
                // disk_full, out_of_memory-like storage refusals: nothing more commits.
                Some(c) if c.code() == "53100" => StoreError::Full(pg_message(&e)),
                _ => StoreError::Backend(pg_message(&e)),
            },
        }
    }
}

/// The server's own message when there is one (`Display` of a driver error often says
/// only "db error").
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}
