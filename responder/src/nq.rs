//! The network-quality server of draft-ietf-ippm-responsiveness, over TLS with HTTP/2
//! (and HTTP/1.1 for clients without it): `/.well-known/nq` names the three endpoints
//! (under the draft's keys and the older `*_https_*` ones), a 1-byte object for the
//! probes, an endless object for the download load and a sink for the upload load.
//! What any RPM client (sonde's agent, `networkQuality`, Cloudflare's `mach`,
//! goresponsiveness) measures against.
//!
//! Bounds: connections at once (more are closed after accept, counted), the TLS
//! handshake (10 s), each large object and upload (`--max-duration`), idle
//! connections (HTTP/2 keep-alive pings).

use crate::payload::Payload;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sonde_proto::responder::{
    NqConfig, NqUrls, NQ_CONFIG_PATH, NQ_LARGE_PATH, NQ_SMALL_PATH, NQ_UPLOAD_PATH,
};
use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Unsent bytes a connection's socket holds at most (TCP_NOTSENT_LOWAT).
const NOTSENT_LOWAT: u32 = 16 * 1024;

/// Bytes of the large object handed to HTTP/2 at a time: one DATA frame, so the
/// send buffer below holds what it says.
const FRAME: usize = 16 * 1024;
/// Bytes of a stream HTTP/2 buffers in the server at most.
const SEND_BUF: usize = 64 * 1024;

/// The longest a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What the server shares between connections.
pub struct Server {
    tls: tokio_rustls::TlsAcceptor,
    payload: Payload,
    slots: Arc<Semaphore>,
    max_duration: Duration,
    /// Connections closed at accept because every slot was taken.
    pub refused: AtomicU64,
    /// Bytes served by large objects and sunk by uploads.
    pub bytes: AtomicU64,
}

/// Where the certificate comes from.
pub enum Certificate<'a> {
    /// A PEM certificate chain and its PEM private key.
    Files(&'a Path, &'a Path),
    /// A self-signed certificate for these names (tests), written as PEM to the
    /// path when one is given so a client can trust it.
    SelfSigned(Vec<String>, Option<&'a Path>),
}

/// The TLS configuration: HTTP/2 preferred, HTTP/1.1 accepted.
pub fn tls_config(cert: Certificate<'_>) -> anyhow::Result<rustls::ServerConfig> {
    use anyhow::Context as _;
    let (chain, key) = match cert {
        Certificate::Files(cert, key) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read the certificate chain {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("cannot read the private key {}", key.display()))?;
            (chain, key)
        }
        Certificate::SelfSigned(names, out) => {
            let made = rcgen::generate_simple_self_signed(names)?;
            if let Some(out) = out {
                std::fs::write(out, made.cert.pem()).with_context(|| {
                    format!("cannot write the certificate to {}", out.display())
                })?;
            }
            let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
                .map_err(anyhow::Error::msg)?;
            (vec![made.cert.der().clone()], key)
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("the certificate and key do not make a TLS identity")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl Server {
    /// A server with this TLS configuration, `max_connections` at once, large
    /// objects and uploads cut at `max_duration`.
    pub fn new(tls: rustls::ServerConfig, max_connections: usize, max_duration: Duration) -> Self {
        Server {
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            payload: Payload::new(),
            slots: Arc::new(Semaphore::new(max_connections)),
            max_duration,
            refused: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }
}

/// Accepts connections until `stop`.
pub async fn serve(
    server: Arc<Server>,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "nq: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(slot) = server.slots.clone().try_acquire_owned() else {
            server.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "nq: every connection slot is taken; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Data waits in the network's queue, not in this socket's send buffer: a self
        // probe's answer queues behind at most NOTSENT_LOWAT of the large object.
        let _ = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(NOTSENT_LOWAT);
        let server = server.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE, server.tls.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "nq: TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "nq: TLS handshake timed out"),
            };
            let service = hyper::service::service_fn({
                let server = server.clone();
                move |req| handle(server.clone(), req)
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(128)
                // Little of the large object waits in the server for a probe's
                // answer to queue behind.
                .max_send_buf_size(SEND_BUF)
                .keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(20));
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, error = %e, "nq: connection ended with an error");
            }
        });
    }
}

/// One request.
async fn handle(server: Arc<Server>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, NQ_CONFIG_PATH) => config(&req),
        // A trailing slash names the same document: sent there.
        (&Method::GET, "/.well-known/nq/") => {
            let mut resp = plain(StatusCode::PERMANENT_REDIRECT, "see /.well-known/nq\n");
            resp.headers_mut().insert(
                hyper::header::LOCATION,
                hyper::header::HeaderValue::from_static(NQ_CONFIG_PATH),
            );
            resp
        }
        (&Method::GET, NQ_SMALL_PATH) => bytes_response(Bytes::from_static(b"x")),
        (&Method::GET, NQ_LARGE_PATH) => large(&server),
        (&Method::POST | &Method::PUT, NQ_UPLOAD_PATH) => sink(&server, req.into_body()).await,
        (_, NQ_CONFIG_PATH | NQ_SMALL_PATH | NQ_LARGE_PATH | NQ_UPLOAD_PATH) => {
            plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here\n")
        }
        _ => plain(StatusCode::NOT_FOUND, "no such endpoint\n"),
    };
    Ok(resp)
}

/// The configuration, its URLs on the host the client asked for.
fn config(req: &Request<Incoming>) -> Response<Body> {
    let host = req.uri().authority().map(|a| a.to_string()).or_else(|| {
        req.headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    });
    let Some(host) = host.filter(|h| !h.is_empty() && !h.contains(['/', '"', '\\', ' '])) else {
        return plain(StatusCode::BAD_REQUEST, "no usable Host\n");
    };
    let doc = NqConfig {
        version: 1,
        test_endpoint: None,
        urls: NqUrls::at(&format!("https://{host}")),
    };
    let mut resp = Response::new(full(Bytes::from(
        serde_json::to_vec(&doc).unwrap_or_default(),
    )));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// An endless incompressible object, cut at the server's longest duration.
fn large(server: &Arc<Server>) -> Response<Body> {
    let until = Instant::now() + server.max_duration;
    let server = server.clone();
    let frames = futures_util::stream::unfold(0u64, move |offset| {
        let server = server.clone();
        async move {
            if Instant::now() >= until {
                return None;
            }
            let chunk = server.payload.chunk(offset, FRAME);
            server
                .bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let next = offset + chunk.len() as u64;
            Some((Ok::<_, Infallible>(Frame::data(chunk)), next))
        }
    });
    let body = BodyExt::boxed_unsync(StreamBody::new(frames.boxed()));
    let mut resp = Response::new(body);
    octet_stream(&mut resp);
    resp
}

/// Reads an upload to its end (or the server's longest duration) and says how much.
async fn sink(server: &Server, mut body: Incoming) -> Response<Body> {
    let until = tokio::time::Instant::now() + server.max_duration;
    let mut n = 0u64;
    loop {
        match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    n += data.len() as u64;
                    server.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => return plain(StatusCode::REQUEST_TIMEOUT, "upload longer than allowed\n"),
        }
    }
    let mut resp = Response::new(full(Bytes::from(format!("{{\"bytes\":{n}}}"))));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn full(b: Bytes) -> Body {
    Full::new(b).boxed_unsync()
}

fn bytes_response(b: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(b));
    octet_stream(&mut resp);
    resp
}

fn octet_stream(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}
