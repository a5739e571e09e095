//! The collector's HTTP API: `GET /healthz`, `GET /metrics` (Prometheus text format),
//! `GET /api/v1/results` (paged, filtered by time and agent), `GET /api/v1/agents` and
//! `GET /api/v1/reports` (a signed compliance report). Reads only; bad parameters get a
//! 400 with a one-line JSON reason.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use sonde_store::{ResultQuery, Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

/// Default page size of `/api/v1/results`.
pub const DEFAULT_LIMIT: usize = 100;

/// What `/api/v1/reports` needs beside the store.
#[derive(Debug)]
pub struct Reports {
    /// The collector's report key.
    pub key: crate::report::sign::ReportKey,
    /// Default time zone of the sites.
    pub time_zone: chrono_tz::Tz,
}

/// Serves one request. `metrics` (absent in tools that only read the store) answers
/// `/metrics`; `reports` answers `/api/v1/reports`.
pub async fn handle<B>(
    store: Arc<dyn Store>,
    metrics: Option<Arc<crate::metrics::Exporter>>,
    reports: Option<Arc<Reports>>,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if req.method() != Method::GET {
        return Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served here",
        ));
    }
    if req.uri().path() == "/metrics" {
        // Rendering is CPU work on in-memory series: off the async workers.
        let body = match metrics {
            Some(m) => tokio::task::spawn_blocking(move || m.page())
                .await
                .unwrap_or_default(),
            None => Default::default(),
        };
        let mut resp = Response::new(Full::new(Bytes::from(body.as_bytes().to_vec())));
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return Ok(resp);
    }
    // SQLite calls block: run them off the async workers.
    let path = req.uri().path().to_string();
    if path == "/api/v1/reports" {
        let resp = match reports {
            Some(r) => tokio::task::spawn_blocking(move || report(&*store, &r, &query))
                .await
                .unwrap_or_else(|_| {
                    error(StatusCode::INTERNAL_SERVER_ERROR, "report handler failed")
                }),
            None => error(StatusCode::NOT_FOUND, "reports are not served here"),
        };
        return Ok(resp);
    }
    let resp = tokio::task::spawn_blocking(move || route(&*store, &path, &query))
        .await
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "request handler failed"));
    Ok(resp)
}

fn route(store: &dyn Store, path: &str, query: &HashMap<String, String>) -> Response<Full<Bytes>> {
    match path {
        "/healthz" => {
            if store.healthy() {
                text(StatusCode::OK, "ok\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
            }
        }
        "/api/v1/results" => match parse_query(query) {
            Err(e) => error(StatusCode::BAD_REQUEST, &e),
            Ok(q) => match store.results(&q) {
                Ok(page) => json(StatusCode::OK, &page),
                Err(StoreError::Query(e)) => error(StatusCode::BAD_REQUEST, &e),
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            },
        },
        "/api/v1/agents" => match store.agents() {
            Ok(agents) => json(StatusCode::OK, &serde_json::json!({ "agents": agents })),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        },
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// `GET /api/v1/reports?from=&to=&quartier=&building=&format=&time_zone=`: the report
/// `sonde-collector report` writes, in the body. Its signed manifest (one file, named
/// as in `Content-Disposition`) comes base64-encoded in `X-Sonde-Manifest` and its
/// signature in `X-Sonde-Manifest-Signature`: save the three and `report verify` checks
/// them. For CSV the body is the summary; the raw results are `/api/v1/results`.
fn report(
    store: &dyn Store,
    reports: &Reports,
    query: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    use crate::report::{self, render, sign};
    use base64::Engine as _;
    let (Some(from), Some(to)) = (query.get("from"), query.get("to")) else {
        return error(StatusCode::BAD_REQUEST, "from= and to= are required");
    };
    let format = match query.get("format").map(|f| f.parse::<render::Format>()) {
        None => render::Format::Json,
        Some(Ok(f)) => f,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let tz = match query.get("time_zone").map(|t| t.parse::<chrono_tz::Tz>()) {
        None => reports.time_zone,
        Some(Ok(t)) => t,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "time_zone is not an IANA zone"),
    };
    let (from, to) = match report::parse_period(from, to, tz) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.replace("--", "")),
    };
    let request = report::Request {
        scope: sonde_store::ReportScope {
            quartier: query.get("quartier").cloned(),
            building: query.get("building").cloned(),
            from,
            to,
        },
        time_zone: tz,
        generated_at: Utc::now(),
    };
    let built = match report::build(store, &request) {
        Ok(r) => r,
        Err(
            e @ (report::ReportError::UnknownQuartier(_)
            | report::ReportError::UnknownBuilding(_)
            | report::ReportError::Period { .. }),
        ) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let body = render::render(&built, format);
    let name = report::file_name(
        from,
        to,
        tz,
        request.scope.quartier.as_deref(),
        request.scope.building.as_deref(),
        format,
    );
    let (manifest, signature) = sign::manifest(
        &reports.key,
        render::manifest_info(&built),
        vec![sign::digest(&name, &body)],
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    let headers = resp.headers_mut();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    };
    set("content-type", format.content_type().to_string());
    set(
        "content-disposition",
        format!("attachment; filename=\"{name}\""),
    );
    set(
        "x-sonde-manifest",
        base64::engine::general_purpose::STANDARD.encode(manifest),
    );
    set("x-sonde-manifest-signature", signature.trim().to_string());
    resp
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

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(value).unwrap_or_default(),
    )));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

fn error(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": reason }))
}
