//! `GET /api/v1/reports`: a signed compliance report, its manifest and signature in
//! headers.

use super::respond::{error, Body};
use crate::report::{self, render, sign};
use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use sonde_store::Store;
use std::collections::HashMap;

/// What `/api/v1/reports` needs beside the store.
#[derive(Debug)]
pub struct Reports {
    /// The collector's report key.
    pub key: std::sync::Arc<crate::keys::CurrentKey>,
    /// Default time zone of the sites.
    pub time_zone: chrono_tz::Tz,
    /// Who issues the reports.
    pub issuer: Option<String>,
}

/// What the query asks for: the request, the format, the pages' language; or why it
/// cannot be answered.
fn asked(
    reports: &Reports,
    query: &HashMap<String, String>,
) -> Result<(report::Request, render::Format, render::Lang), String> {
    let (Some(from), Some(to)) = (query.get("from"), query.get("to")) else {
        return Err("from= and to= are required".into());
    };
    let format = match query.get("format").map(|f| f.parse::<render::Format>()) {
        None => render::Format::Json,
        Some(f) => f?,
    };
    let tz = match query.get("time_zone").map(|t| t.parse::<chrono_tz::Tz>()) {
        None => reports.time_zone,
        Some(Ok(t)) => t,
        Some(Err(_)) => return Err("time_zone is not an IANA zone".into()),
    };
    let lang = match query.get("lang").map(String::as_str) {
        None => render::Lang::for_zone(tz),
        Some("fr") => render::Lang::Fr,
        Some("en") => render::Lang::En,
        Some(_) => return Err("lang is fr or en".into()),
    };
    let (from, to) = report::parse_period(from, to, tz).map_err(|e| e.replace("--", ""))?;
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
    Ok((request, format, lang))
}

/// `GET /api/v1/reports?from=&to=&quartier=&building=&format=&time_zone=&lang=`: the report
/// `sonde-collector report` writes, in the body. Its signed manifest (one file, named
/// as in `Content-Disposition`) comes base64-encoded in `X-Sonde-Manifest` and its
/// signature in `X-Sonde-Manifest-Signature`: save the three and `report verify` checks
/// them. For CSV the body is the summary; the raw results are `/api/v1/results`.
pub fn get(
    store: &dyn Store,
    reports: &Reports,
    query: &HashMap<String, String>,
) -> Response<Body> {
    let (request, format, lang) = match asked(reports, query) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let (from, to, tz) = (request.scope.from, request.scope.to, request.time_zone);
    let mut built = match report::build(store, &request) {
        Ok(r) => r,
        Err(
            e @ (report::ReportError::UnknownQuartier(_)
            | report::ReportError::UnknownBuilding(_)
            | report::ReportError::Period { .. }),
        ) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    // One key for the whole report, even if a rotation lands meanwhile.
    let key = reports.key.get();
    report::stamp(&mut built, &key, reports.issuer.as_deref());
    let body = match render::render(&built, format, lang) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let name = report::file_name(
        from,
        to,
        tz,
        request.scope.quartier.as_deref(),
        request.scope.building.as_deref(),
        format,
    );
    let (manifest, signature) = sign::manifest(
        &key,
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
