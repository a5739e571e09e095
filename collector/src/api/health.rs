//! `GET /healthz`: whether the store answers.

use super::respond::{text, Body};
use hyper::{Response, StatusCode};
use sonde_store::Maintenance;

/// `ok`, or why not.
pub fn get(store: &dyn Maintenance) -> Response<Body> {
    if store.healthy() {
        text(StatusCode::OK, "ok\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
    }
}
