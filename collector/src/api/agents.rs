//! `GET /api/v1/agents`: every agent, with its enrolment, latest health and state.

use super::respond::{error, json, Body};
use hyper::{Response, StatusCode};
use sonde_store::ResultReader;

/// The agents.
pub fn get(store: &dyn ResultReader) -> Response<Body> {
    match store.agents() {
        Ok(agents) => json(StatusCode::OK, &serde_json::json!({ "agents": agents })),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
