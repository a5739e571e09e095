//! How times are kept in columns: Unix nanoseconds.

use chrono::{DateTime, Utc};

/// `t` in nanoseconds since the Unix epoch.
pub fn ns(t: DateTime<Utc>) -> i64 {
    sonde_store::rows::nanos(t)
}

/// The time `v` nanoseconds after the Unix epoch.
pub fn from_ns(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(v)
}
