//! The responder's HTTP/1.1 endpoints: info document, download of pre-filled random
//! bytes, upload sink with server-side 100 ms bins, upload reports. Every request is
//! bounded (size, duration, concurrent streams); bad ones get a 4xx with a one-line
//! JSON reason and never disturb the others.

use crate::payload::{Payload, CHUNK_LEN};
use crate::upload::{valid_test_id, Registry};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use sonde_proto::responder::{self as wire, ErrorBody, Info, Limits};
use sonde_proto::Direction;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Response body type of every endpoint.
pub type RespBody = BoxBody<Bytes, std::io::Error>;

/// A data stream that moves no byte for this long is cut (its connection closed).
pub const STALL: Duration = Duration::from_secs(10);
/// An upload stream slower than this on average after [`MIN_RATE_AFTER`] is cut: a
/// trickle cannot hold a test slot.
pub const MIN_RATE_BPS: u64 = 8_000;
/// When [`MIN_RATE_BPS`] starts to apply.
pub const MIN_RATE_AFTER: Duration = Duration::from_secs(5);

/// What the handlers know of the connection a request came on.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Its socket (for TCP_INFO).
    pub fd: RawFd,
    /// The client's address.
    pub peer: std::net::IpAddr,
    /// When its data stream last moved.
    pub progress: Arc<Progress>,
}

/// When a connection's data stream last moved bytes; watched by the connection's task.
#[derive(Debug, Default)]
pub struct Progress {
    /// A data stream is open on the connection.
    streaming: std::sync::atomic::AtomicBool,
    /// Milliseconds since `origin` of the last bytes moved.
    last_ms: AtomicU64,
    origin: std::sync::OnceLock<Instant>,
}

impl Progress {
    fn origin(&self) -> Instant {
        *self.origin.get_or_init(Instant::now)
    }

    /// Bytes moved now.
    pub fn touch(&self) {
        let ms = self.origin().elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// A data stream opens (`true`) or ends.
    pub fn streaming(&self, on: bool) {
        self.touch();
        self.streaming.store(on, Ordering::Relaxed);
    }

    /// Resolves once a data stream has moved nothing for `stall`.
    pub async fn stalled(&self, stall: Duration) {
        let origin = self.origin();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let idle = origin
                .elapsed()
                .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
            if self.streaming.load(Ordering::Relaxed) && idle >= stall {
                return;
            }
        }
    }
}

/// Counters of what the responder served and refused.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes sent by downloads.
    pub download_bytes: AtomicU64,
    /// Bytes received by uploads.
    pub upload_bytes: AtomicU64,
    /// Requests refused with 4xx/5xx.
    pub rejected: AtomicU64,
    /// Streams refused because the direction's tests were all taken.
    pub busy_tests: AtomicU64,
    /// Streams refused because their address had its share open.
    pub busy_address: AtomicU64,
    /// Data streams cut for moving nothing ([`STALL`]) or too slowly.
    pub stalled: AtomicU64,
}

/// Shared state of the HTTP side.
#[derive(Debug)]
pub struct State {
    /// The info document served at [`wire::INFO_PATH`].
    pub info: Info,
    /// The download payload.
    pub payload: Payload,
    /// Upload tests.
    pub uploads: Registry,
    /// One permit per concurrent data stream.
    pub streams: Arc<Semaphore>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// Tests at once, streams per address, overlaps.
    pub admission: Arc<crate::admission::Admission>,
    /// The process's own CPU load.
    pub load: Arc<crate::load::Monitor>,
}

impl State {
    /// State for these limits, UDP echo port and network-quality (HTTPS) port.
    pub fn new(limits: Limits, (udp_port, nq_port): (Option<u16>, Option<u16>)) -> Self {
        let max_duration = Duration::from_millis(limits.max_duration_ms);
        State {
            streams: Arc::new(Semaphore::new(limits.max_streams as usize)),
            uploads: Registry::new(max_duration),
            payload: Payload::new(),
            counters: Arc::default(),
            admission: crate::admission::Admission::new(crate::admission::Rules {
                tests_per_direction: limits.max_tests_per_direction.max(1) as usize,
                streams_per_address: limits.max_streams_per_address.max(1) as usize,
                max_test: max_duration + Duration::from_secs(5),
            }),
            load: crate::load::Monitor::start(),
            info: Info {
                service: "sonde-responder".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                protocol: wire::PROTOCOL_VERSION,
                udp_port,
                nq_port,
                limits,
            },
        }
    }

    fn max_duration(&self) -> Duration {
        Duration::from_millis(self.info.limits.max_duration_ms)
    }
}

/// Serves one request received on the connection whose socket is `conn_fd`.
pub async fn handle(
    state: Arc<State>,
    conn: Conn,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, std::convert::Infallible> {
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
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET, wire::INFO_PATH) => json(StatusCode::OK, &state.info),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, wire::LOAD_PATH) => {
            let window_ms = query
                .get("window_ms")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(10_000)
                .clamp(100, crate::load::KEEP.as_millis() as u64);
            json(
                StatusCode::OK,
                &wire::Load {
                    cpu_busy_max: state.load.max_within(Duration::from_millis(window_ms)),
                    window_ms,
                    cores: state.load.cores as u32,
                },
            )
        }
        (&Method::GET, wire::DOWNLOAD_PATH) => download(&state, &query, &conn).await,
        (&Method::POST, wire::UPLOAD_PATH) => upload(&state, &query, &conn, req).await,
        (&Method::GET, p) if p.starts_with(wire::TESTS_PREFIX) => {
            let id = &p[wire::TESTS_PREFIX.len()..];
            match state.admission.report(id) {
                Some(r) => json(StatusCode::OK, &r),
                None => error(StatusCode::NOT_FOUND, "no test with this id"),
            }
        }
        (&Method::GET, p) if p.starts_with(wire::UPLOAD_REPORT_PREFIX) => {
            upload_report(&state, &p[wire::UPLOAD_REPORT_PREFIX.len()..]).await
        }
        (_, wire::INFO_PATH | wire::DOWNLOAD_PATH | wire::UPLOAD_PATH | "/healthz") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        }
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    if resp.status().is_client_error() || resp.status().is_server_error() {
        state.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%path, status = resp.status().as_u16(), "request refused");
    }
    Ok(resp)
}

fn parse_u64(query: &HashMap<String, String>, key: &str) -> Result<Option<u64>, String> {
    match query.get(key) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("query parameter {key}={v:?} is not a non-negative integer")),
    }
}

async fn download(
    state: &Arc<State>,
    query: &HashMap<String, String>,
    conn: &Conn,
) -> Response<RespBody> {
    let limits = &state.info.limits;
    let (bytes, duration_ms) = match (parse_u64(query, "bytes"), parse_u64(query, "duration_ms")) {
        (Ok(b), Ok(d)) => (b, d),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
    };
    if bytes.is_none() && duration_ms.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "download needs bytes=N or duration_ms=M",
        );
    }
    if let Some(b) = bytes.filter(|&b| b > limits.max_bytes) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "bytes={b} exceeds this responder's limit of {}",
                limits.max_bytes
            ),
        );
    }
    if let Some(d) = duration_ms.filter(|&d| d > limits.max_duration_ms) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "duration_ms={d} exceeds this responder's limit of {}",
                limits.max_duration_ms
            ),
        );
    }
    // Streams without a test id (older agents) are one test per address.
    let test = match query.get("test") {
        Some(t) if valid_test_id(t) => t.clone(),
        Some(_) => return error(StatusCode::BAD_REQUEST, "bad test id"),
        None => format!("anonymous-down-{}", conn.peer),
    };
    let admitted = match admit(state, &test, Direction::Down, conn.peer).await {
        Ok(a) => a,
        Err(refusal) => return refused(state, &refusal, Direction::Down),
    };
    let Some(permit) = try_permit(state) else {
        return busy();
    };
    conn.progress.streaming(true);
    let deadline = Instant::now()
        + duration_ms
            .map(Duration::from_millis)
            .unwrap_or_else(|| state.max_duration());
    let body = DownloadBody {
        state: state.clone(),
        remaining: bytes.unwrap_or(limits.max_bytes),
        exact_len: bytes,
        offset: 0,
        deadline,
        progress: conn.progress.clone(),
        _permit: permit,
        _admitted: admitted,
    };
    let mut resp = Response::new(body.boxed());
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store, no-transform"),
    );
    resp
}

/// A download body: zero-copy slices of the payload until the size or the deadline.
/// With a size it announces a Content-Length; past the deadline a sized body is cut
/// (the connection closes), a duration body simply ends.
struct DownloadBody {
    state: Arc<State>,
    remaining: u64,
    exact_len: Option<u64>,
    offset: u64,
    deadline: Instant,
    progress: Arc<Progress>,
    _permit: OwnedSemaphorePermit,
    _admitted: crate::admission::Stream,
}

impl Drop for DownloadBody {
    fn drop(&mut self) {
        self.progress.streaming(false);
    }
}

impl Body for DownloadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if Instant::now() >= self.deadline {
            if self.exact_len.is_some() {
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "download reached the responder's duration limit",
                ))));
            }
            return Poll::Ready(None);
        }
        let len = (self.remaining.min(CHUNK_LEN as u64)) as usize;
        let chunk = self.state.payload.chunk(self.offset, len);
        let n = chunk.len() as u64;
        self.offset += n;
        self.remaining -= n;
        self.progress.touch();
        self.state
            .counters
            .download_bytes
            .fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.exact_len {
            Some(_) => hyper::body::SizeHint::with_exact(self.remaining),
            None => hyper::body::SizeHint::default(),
        }
    }
}

async fn upload(
    state: &Arc<State>,
    query: &HashMap<String, String>,
    conn: &Conn,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let Some(test_id) = query.get("test").filter(|t| valid_test_id(t)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "upload needs test=ID (1-64 of A-Z a-z 0-9 - _)",
        );
    };
    let limits = state.info.limits.clone();
    if let Some(len) = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&len| len > limits.max_bytes)
    {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "upload of {len} bytes exceeds the limit of {}",
                limits.max_bytes
            ),
        );
    }
    let _admitted = match admit(state, test_id, Direction::Up, conn.peer).await {
        Ok(a) => a,
        Err(refusal) => return refused(state, &refusal, Direction::Up),
    };
    let Some(_permit) = try_permit(state) else {
        return busy();
    };
    conn.progress.streaming(true);
    let test = state.uploads.get_or_create(test_id);
    test.stream_started();
    // The test's sampler reads this connection's TCP segment count every 100 ms.
    let registration = test.register_socket(conn.fd);
    let (received, outcome) = sink(state, conn, &test, req.into_body()).await;
    test.unregister_socket(registration);
    conn.progress.streaming(false);
    state
        .counters
        .upload_bytes
        .fetch_add(received, Ordering::Relaxed);
    test.stream_ended(outcome.is_err());
    match outcome {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "bytes": received })),
        Err((status, reason)) => error(status, reason),
    }
}

/// Reads an upload's body into `test` until it ends or breaks a limit (duration,
/// bytes, minimum rate); the bytes received and how it ended.
async fn sink(
    state: &State,
    conn: &Conn,
    test: &crate::upload::UploadTest,
    mut body: Incoming,
) -> (u64, Result<(), (StatusCode, &'static str)>) {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + state.max_duration();
    let max_bytes = state.info.limits.max_bytes;
    let mut received: u64 = 0;
    let outcome = loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                break Err((
                    StatusCode::REQUEST_TIMEOUT,
                    "upload exceeded the duration limit",
                ))
            }
            Ok(None) => break Ok(()),
            Ok(Some(Err(_))) => break Err((StatusCode::BAD_REQUEST, "upload body broke off")),
            Ok(Some(Ok(frame))) => frame,
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        received += data.len() as u64;
        test.add(data.len(), Instant::now());
        conn.progress.touch();
        let elapsed = started.elapsed();
        if elapsed > MIN_RATE_AFTER && (received * 8) < MIN_RATE_BPS * elapsed.as_secs() {
            state.counters.stalled.fetch_add(1, Ordering::Relaxed);
            state.admission.penalise(conn.peer, Instant::now());
            break Err((
                StatusCode::REQUEST_TIMEOUT,
                "upload slower than the responder's minimum of 8 kb/s per stream",
            ));
        }
        if received > max_bytes {
            break Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "upload exceeded the byte limit",
            ));
        }
    };
    (received, outcome)
}

async fn upload_report(state: &Arc<State>, id: &str) -> Response<RespBody> {
    if !valid_test_id(id) {
        return error(StatusCode::BAD_REQUEST, "bad test id");
    }
    match state.uploads.get(id) {
        None => error(StatusCode::NOT_FOUND, "no upload test with this id"),
        Some(test) => json(
            StatusCode::OK,
            &test.report(id, Duration::from_secs(3)).await,
        ),
    }
}

/// Admits a stream of `test`; when the only tests in the way have ended their streams
/// and merely linger, waits them out (at most [`crate::admission::LINGER`]) instead of
/// refusing.
async fn admit(
    state: &Arc<State>,
    test: &str,
    direction: Direction,
    peer: std::net::IpAddr,
) -> Result<crate::admission::Stream, crate::admission::Refusal> {
    let mut waited = false;
    loop {
        match state.admission.admit(test, direction, peer, Instant::now()) {
            Err(crate::admission::Refusal::Tests {
                lingering: Some(wait),
                ..
            }) if !waited => {
                waited = true;
                tokio::time::sleep(wait + Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

fn try_permit(state: &Arc<State>) -> Option<OwnedSemaphorePermit> {
    state.streams.clone().try_acquire_owned().ok()
}

/// A stream the admission refused: 503, why, and when to come back; counted.
fn refused(
    state: &State,
    refusal: &crate::admission::Refusal,
    direction: Direction,
) -> Response<RespBody> {
    let counter = match refusal {
        crate::admission::Refusal::Tests { .. } => &state.counters.busy_tests,
        crate::admission::Refusal::Address { .. } | crate::admission::Refusal::Penalised { .. } => {
            &state.counters.busy_address
        }
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, &refusal.reason(direction));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&refusal.retry_after_s().to_string()) {
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    resp
}

fn busy() -> Response<RespBody> {
    let mut resp = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "responder busy: too many concurrent streams",
    );
    resp.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("5"),
    );
    resp
}

fn full(bytes: Bytes) -> RespBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<RespBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(full(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<RespBody> {
    let mut resp = Response::new(full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

fn error(status: StatusCode, reason: &str) -> Response<RespBody> {
    json(
        status,
        &ErrorBody {
            error: reason.to_string(),
        },
    )
}
