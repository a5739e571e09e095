//! `sonde-store`: the boundary between the collector and what keeps its data. The
//! collector depends on these role traits only; each backend (`sonde-store-sqlite`,
//! and one for PostgreSQL) implements them and passes the [`conformance`] suite, which
//! includes the hand-worked report example, so every backend gives the same figures.
//!
//! - [`roles`]: `ResultWriter`, `Enrolments`, `ResultReader`, `ReportSource`,
//!   `Maintenance`, `Plans`, and `Store`, their sum;
//! - [`log`]: the transparency log's hashing and proofs, which every backend keeps alike;
//! - `StoreError`: backend-neutral;
//! - [`rows`]: the one record → report-row mapping;
//! - [`types`]: what is stored and answered.
#![warn(missing_docs)]

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod log;
pub mod roles;
pub mod rows;
pub mod types;

pub use error::StoreError;

/// The role traits, for `use sonde_store::prelude::*` where a store's methods are called.
pub mod prelude {
    pub use crate::roles::{
        Enrolments, Maintenance, Plans, ReportSource, ResultReader, ResultWriter, SealedKeys,
        TransparencyLog,
    };
}
pub use roles::{
    resolve_pictures, split_scan, Chains, Enrolments, Maintenance, Plans, ReportSource,
    ResultReader, ResultWriter, SealedKeys, Store, TransparencyLog,
};
pub use sonde_method::report::{Fact, ReportScope, ReportSink, ScheduledAccess};
pub use types::*;

/// A store's URL with its password hidden, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
