//! The transparency log over HTTP, for monitors and verifiers (`crate::log`):
//!
//! - `GET /api/v1/log/checkpoint`: the latest signed checkpoint (a C2SP signed note,
//!   text/plain);
//! - `GET /api/v1/log/consistency?from=A&to=B`: the RFC 6962 consistency proof that
//!   the tree of A leaves is a prefix of the tree of B;
//! - `GET /api/v1/log/inclusion?result=ID[&size=N]`: the leaf of that result, its
//!   stored bytes' hash and its inclusion proof in the tree of N leaves (default: the
//!   latest checkpoint's).
//!
//! Hashes are base64, as in checkpoints.

use super::respond::{error, json, Body};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use sonde_store::log;
use sonde_store::Store;
use std::collections::HashMap;

/// `/api/v1/log/checkpoint`.
pub fn checkpoint(store: &dyn Store) -> Response<Body> {
    match store.latest_checkpoint() {
        Ok(Some((_, note))) => {
            let mut resp = Response::new(Full::new(Bytes::from(note.into_bytes())));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "no checkpoint yet: the first is signed within [log] checkpoint_every of the first stored result",
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// Hashes in base64.
fn b64(hashes: &[log::Hash]) -> Vec<String> {
    hashes.iter().map(ToString::to_string).collect()
}

/// A size parameter; its problem otherwise.
fn size(query: &HashMap<String, String>, name: &str) -> Result<Option<u64>, String> {
    query
        .get(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: a number of leaves"))
        })
        .transpose()
}

/// `/api/v1/log/consistency`.
pub fn consistency(store: &dyn Store, query: &HashMap<String, String>) -> Response<Body> {
    let (from, to) = match (size(query, "from"), size(query, "to")) {
        (Ok(Some(f)), Ok(Some(t))) if f >= 1 && f <= t => (f, t),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give from and to, numbers of leaves with 1 <= from <= to",
            )
        }
    };
    match store.log_size() {
        Ok(n) if to > n => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("the log holds {n} leaves, not {to}"),
            )
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Ok(_) => {}
    }
    match log::consistency(from, to, &|i| store.log_hashes(i)) {
        Ok(proof) => json(
            StatusCode::OK,
            &serde_json::json!({"from": from, "to": to, "proof": b64(&proof)}),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `/api/v1/log/inclusion`.
pub fn inclusion(store: &dyn Store, query: &HashMap<String, String>) -> Response<Body> {
    let Some(id) = query.get("result") else {
        return error(StatusCode::BAD_REQUEST, "result: a result id");
    };
    let asked = match size(query, "size") {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let tree = match asked {
        Some(s) => Ok(Some(s)),
        None => store.latest_checkpoint().map(|c| c.map(|c| c.0)),
    };
    let (tree, leaf) = match (tree, store.log_leaf(id)) {
        (Ok(Some(t)), Ok(Some(l))) => (t, l),
        (Ok(None), _) => return error(StatusCode::NOT_FOUND, "no checkpoint yet"),
        (_, Ok(None)) => return error(StatusCode::NOT_FOUND, "no such result in the log"),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let (index, bytes) = leaf;
    if index >= tree {
        return error(
            StatusCode::NOT_FOUND,
            &format!("leaf {index} is after the tree of {tree} leaves: ask again after the next checkpoint"),
        );
    }
    match log::inclusion(index, tree, &|i| store.log_hashes(i)) {
        Ok(proof) => json(
            StatusCode::OK,
            &serde_json::json!({
                "result": id,
                "leaf": index,
                "size": tree,
                "leaf_hash": log::leaf_hash(bytes.as_bytes()).to_string(),
                "proof": b64(&proof),
            }),
        ),
        Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}
