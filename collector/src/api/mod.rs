//! The collector's HTTP API: `GET /healthz`, `GET /metrics` (Prometheus text format),
//! `GET /api/v1/results` (paged, filtered by time and agent), `GET
//! /api/v1/results/{id}/plot.svg` (the picture of one test), `GET /api/v1/agents` and
//! `GET /api/v1/reports` (a signed compliance report), `GET /api/v1/plans` (the plan
//! versions); one module per resource. Reads
//! only; bad parameters get a 400 with a one-line JSON reason. Store reads and
//! rendering run on the blocking pool, never on the async workers.

pub mod agents;
pub mod health;
pub mod log;
pub mod plans;
pub mod pool;
pub mod reports;
pub mod respond;
pub mod results;

pub use reports::Reports;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use respond::{error, Body};
use sonde_store::Store;
use std::collections::HashMap;
use std::sync::Arc;

/// What the API serves from.
pub struct Api {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The ingest, whose commits `/healthz` reflects (absent in tools that only read).
    pub ingest: Option<Arc<crate::ingest::Ingest>>,
    /// `/metrics`.
    pub exporter: Option<Arc<crate::metrics::Exporter>>,
    /// `/api/v1/reports`.
    pub reports: Option<Arc<Reports>>,
    /// Where `/api/v1/*` reads run ([`pool`]).
    pub reads: pool::ReadPool,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("ingest", &self.ingest.is_some())
            .field("exporter", &self.exporter.is_some())
            .field("reports", &self.reports.is_some())
            .finish_non_exhaustive()
    }
}

/// Serves one request.
pub async fn handle<B>(
    api: Arc<Api>,
    req: Request<B>,
) -> Result<Response<Body>, std::convert::Infallible> {
    if req.method() != Method::GET {
        return Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served here",
        ));
    }
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    // /healthz and /metrics are small and must answer even while readers queue.
    let resp = if path.starts_with("/api/") {
        let a = api.clone();
        api.reads.run(move || route(&a, &path, &query)).await
    } else {
        sonde_cli::blocking::run(move || route(&api, &path, &query))
            .await
            .ok()
    };
    let resp =
        resp.unwrap_or_else(|| error(StatusCode::INTERNAL_SERVER_ERROR, "request handler failed"));
    Ok(resp)
}

/// The response to `path`, on the blocking pool.
fn route(api: &Api, path: &str, query: &HashMap<String, String>) -> Response<Body> {
    let store = api.store.as_ref();
    match path {
        "/metrics" => metrics_page(api.exporter.as_deref()),
        "/healthz" => health::get(store, api.ingest.as_deref()),
        "/api/v1/results" => results::get(store, query),
        "/api/v1/agents" => agents::get(store),
        "/api/v1/plans" => plans::get(store, query),
        "/api/v1/log/checkpoint" => log::checkpoint(store),
        "/api/v1/log/consistency" => log::consistency(store, query),
        "/api/v1/log/inclusion" => log::inclusion(store, query),
        "/api/v1/reports" => match &api.reports {
            Some(r) => reports::get(store, r, query),
            None => error(StatusCode::NOT_FOUND, "reports are not served here"),
        },
        _ => match results::plot_id(path) {
            Some(id) => results::plot(store, id, query),
            None => error(StatusCode::NOT_FOUND, "no such endpoint"),
        },
    }
}

/// `/metrics`: the exporter's page (rendered at most once per half second).
fn metrics_page(exporter: Option<&crate::metrics::Exporter>) -> Response<Body> {
    let body = exporter.map(|m| m.page()).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body.as_bytes().to_vec())));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
