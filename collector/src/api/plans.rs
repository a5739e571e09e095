//! `GET /api/v1/plans`: the plan versions, each with when it took effect;
//! `?version=N` (or `latest`) adds that version's plan, `&quartier=&building=` narrows
//! it to what that building's agents receive. Plans are changed with
//! `sonde-collector plan apply` (on the collector's host), not over HTTP: the API
//! reads only.

use super::respond::{error, json, Body};
use crate::plans::InForce;
use hyper::{Response, StatusCode};
use sonde_store::Store;
use std::collections::HashMap;

/// The history, or one version.
pub fn get(store: &dyn Store, query: &HashMap<String, String>) -> Response<Body> {
    let history = match store.plans() {
        Ok(h) => h,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let versions: Vec<_> = history
        .iter()
        .map(|v| serde_json::json!({"version": v.version, "applied_at": v.applied_at}))
        .collect();
    let Some(asked) = query.get("version") else {
        return json(StatusCode::OK, &serde_json::json!({ "plans": versions }));
    };
    let stored = match asked.as_str() {
        "latest" => history.last(),
        n => match n.parse::<u64>() {
            Ok(n) => history.iter().find(|v| v.version == n),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "version: a plan version number or latest",
                )
            }
        },
    };
    let Some(p) = stored.and_then(InForce::of) else {
        return error(StatusCode::NOT_FOUND, "no such plan version");
    };
    let plan = match (query.get("quartier"), query.get("building")) {
        (Some(q), Some(b)) => serde_json::to_value(p.plan.for_site(p.version, p.applied_at, q, b)),
        (None, None) => serde_json::to_value(&p.plan),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give quartier and building together",
            )
        }
    };
    json(
        StatusCode::OK,
        &serde_json::json!({
            "plans": versions,
            "version": p.version,
            "applied_at": p.applied_at,
            "plan": plan.unwrap_or_default(),
        }),
    )
}
