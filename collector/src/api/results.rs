//! `GET /api/v1/results?from=&to=&agent=&limit=&cursor=`: results in pages of at most
//! 1000, in start order, with a cursor to the next page. Times are RFC 3339.

use super::respond::{error, json, Body};
use chrono::{DateTime, Utc};
use hyper::{Response, StatusCode};
use sonde_store::{ResultQuery, ResultReader, StoreError};
use std::collections::HashMap;

/// Default page size of `/api/v1/results`.
pub const DEFAULT_LIMIT: usize = 100;

/// A page of results.
pub fn get(store: &dyn ResultReader, query: &HashMap<String, String>) -> Response<Body> {
    match parse_query(query) {
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
        Ok(q) => match store.results(&q) {
            Ok(page) => json(StatusCode::OK, &page),
            Err(StoreError::Query(e)) => error(StatusCode::BAD_REQUEST, &e),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        },
    }
}

fn parse_time(query: &HashMap<String, String>, key: &str) -> Result<Option<DateTime<Utc>>, String> {
    query
        .get(key)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    format!("{key}={v:?} is not an RFC 3339 time (e.g. 2026-11-29T00:00:00Z)")
                })
        })
        .transpose()
}

fn parse_query(query: &HashMap<String, String>) -> Result<ResultQuery, String> {
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse()
            .map_err(|_| format!("limit={v:?} is not a number"))?,
    };
    Ok(ResultQuery {
        from: parse_time(query, "from")?,
        to: parse_time(query, "to")?,
        agent: query.get("agent").cloned(),
        limit,
        cursor: query.get("cursor").cloned(),
    })
}
