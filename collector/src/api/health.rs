//! `GET /healthz`: whether the collector can take results now: its store answers, and
//! its disk has room (above [`sonde_store::Space::reserve`]), and its commits go
//! through (the last one did not fail, none is stuck). When not, the reason, with 503.

use super::respond::Body;
use crate::ingest::Ingest;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use sonde_store::Maintenance;

/// `ok`, or why not.
pub fn get(store: &dyn Maintenance, ingest: Option<&Ingest>) -> Response<Body> {
    let trouble = if let Err(e) = store.health() {
        Some(format!("store unavailable: {e}"))
    } else if let Some(space) = store.space().filter(|s| s.low()) {
        Some(format!(
            "storage full: {} KiB free on the store's disk (keeps {} KiB in reserve)",
            space.free_bytes >> 10,
            space.reserve() >> 10
        ))
    } else if let Some(i) = ingest {
        if i.committer().running() {
            i.commit_stats().trouble(chrono::Utc::now())
        } else {
            Some("the commit thread stopped".to_string())
        }
    } else {
        None
    };
    let (status, body) = match trouble {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ok: {why}\n")),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}
