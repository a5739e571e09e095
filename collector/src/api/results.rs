//! `GET /api/v1/results?from=&to=&agent=&limit=&cursor=`: results in pages of at most
//! 1000, in start order, with a cursor to the next page. Times are RFC 3339.
//! `GET /api/v1/results/{id}/plot.svg?max_rate_mbps=&max_rtt_ms=&max_time_s=`: the
//! picture of one stored test (`sonde_plot`, what `sonde-agent probe --plot` draws),
//! with the collector's identity and site; the axes fixed by the parameters given.

use super::respond::{error, json, svg, Body};
use chrono::{DateTime, Utc};
use hyper::{Response, StatusCode};
use sonde_proto::ResultRecord;
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

/// The result id of a `/api/v1/results/{id}/plot.svg` path.
pub fn plot_id(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v1/results/")?
        .strip_suffix("/plot.svg")
}

/// The picture of the stored result `id`.
pub fn plot(store: &dyn ResultReader, id: &str, query: &HashMap<String, String>) -> Response<Body> {
    if uuid::Uuid::try_parse(id).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{id:?} is not a result id (a UUID)"),
        );
    }
    let axes = match plot_axes(query) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let stored = match store.result(id) {
        Ok(Some(s)) => s,
        Ok(None) => return error(StatusCode::NOT_FOUND, &format!("no result {id}")),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    // The record as the API shows it: the collector's identity and site.
    let shown = serde_json::to_vec(&stored).unwrap_or_default();
    match ResultRecord::from_json(&shown) {
        Ok(record) => svg(sonde_plot::svg(&record, axes)),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("result {id} no longer reads as a record: {e}"),
        ),
    }
}

/// Fixed axes from `max_rate_mbps`, `max_rtt_ms` and `max_time_s`.
fn plot_axes(query: &HashMap<String, String>) -> Result<sonde_plot::Axes, String> {
    let positive = |key: &str| -> Result<Option<f64>, String> {
        query
            .get(key)
            .map(|v| match v.parse::<f64>() {
                Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
                _ => Err(format!("{key}={v:?} is not a positive number")),
            })
            .transpose()
    };
    Ok(sonde_plot::Axes {
        max_rate_bps: positive("max_rate_mbps")?.map(|m| m * 1e6),
        max_rtt_s: positive("max_rtt_ms")?.map(|m| m / 1e3),
        max_time_s: positive("max_time_s")?,
    })
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
