//! The collector's HTTP API: `GET /healthz`, `GET /metrics` (Prometheus text format),
//! `GET /api/v1/results` (paged, filtered by time and agent), `GET /api/v1/agents` and
//! `GET /api/v1/reports` (a signed compliance report); one module per resource. Reads
//! only; bad parameters get a 400 with a one-line JSON reason. Store reads and
//! rendering run on the blocking pool, never on the async workers.

pub mod agents;
pub mod health;
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

/// Serves one request. `metrics` (absent in tools that only read the store) answers
/// `/metrics`; `reports` answers `/api/v1/reports`.
pub async fn handle<B>(
    store: Arc<dyn Store>,
    metrics: Option<Arc<crate::metrics::Exporter>>,
    reports: Option<Arc<Reports>>,
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
    let resp = sonde_cli::blocking::run(move || match path.as_str() {
        "/metrics" => metrics_page(metrics.as_deref()),
        "/healthz" => health::get(store.as_ref()),
        "/api/v1/results" => results::get(store.as_ref(), &query),
        "/api/v1/agents" => agents::get(store.as_ref()),
        "/api/v1/reports" => match reports {
            Some(r) => reports::get(store.as_ref(), &r, &query),
            None => error(StatusCode::NOT_FOUND, "reports are not served here"),
        },
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    })
    .await
    .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "request handler failed"));
    Ok(resp)
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
