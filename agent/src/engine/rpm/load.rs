//! The load-generating connections of one direction: each opens its own connection
//! and GETs the large object (download) or POSTs to the sink (upload) again and again
//! until stopped, counting the payload bytes; self probes ride on them.

use super::conn::{Body, Connector};
use crate::net::target::ClientError;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2::SendRequest;
use rand::Rng as _;
use sonde_proto::Direction;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Size of each upload frame.
const UPLOAD_FRAME: usize = 64 * 1024;
/// Bytes of one upload request at most; the next one follows.
const UPLOAD_REQUEST: u64 = 100_000_000;

/// The load of one direction.
pub(super) struct Load {
    direction: Direction,
    endpoint: (Connector, String),
    /// Payload bytes moved by every connection together.
    pub bytes: Arc<AtomicU64>,
    senders: Arc<Mutex<Vec<SendRequest<Body>>>>,
    opened: AtomicU64,
    errors: Arc<Mutex<Vec<ClientError>>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
    history: Mutex<Vec<(Duration, u64)>>,
    chunk: Bytes,
}

impl Load {
    pub(super) fn new(direction: Direction, endpoint: &(Connector, String)) -> Load {
        let mut chunk = vec![0u8; UPLOAD_FRAME];
        rand::rng().fill(&mut chunk[..]);
        Load {
            direction,
            endpoint: endpoint.clone(),
            bytes: Arc::default(),
            senders: Arc::default(),
            opened: AtomicU64::new(0),
            errors: Arc::default(),
            stop: watch::channel(false).0,
            tasks: Mutex::new(tokio::task::JoinSet::new()),
            history: Mutex::default(),
            chunk: chunk.into(),
        }
    }

    /// Connections asked for so far.
    pub(super) fn connections(&self) -> usize {
        self.opened.load(Ordering::Relaxed) as usize
    }

    /// Opens one more load-generating connection.
    pub(super) fn add(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let (connector, path) = self.endpoint.clone();
        let (bytes, senders, errors) = (
            self.bytes.clone(),
            self.senders.clone(),
            self.errors.clone(),
        );
        let (stop, up, chunk) = (
            self.stop.subscribe(),
            self.direction == Direction::Up,
            self.chunk.clone(),
        );
        let task = async move {
            let opened = match connector.open().await {
                Ok(o) => o,
                Err(e) => return lock(&errors).push(e),
            };
            lock(&senders).push(opened.sender.clone());
            let run = Stream {
                connector,
                path,
                bytes,
                stop,
                chunk,
            };
            if let Err(e) = run.repeat(opened.sender, up).await {
                lock(&errors).push(e);
            }
        };
        lock(&self.tasks).spawn(task);
    }

    /// A load connection chosen at random, for a self probe.
    pub(super) fn any_sender(&self) -> Option<SendRequest<Body>> {
        let senders = lock(&self.senders);
        if senders.is_empty() {
            return None;
        }
        let i = rand::rng().random_range(0..senders.len());
        Some(senders[i].clone())
    }

    /// The error that stopped every connection, when none carries load.
    pub(super) fn failed_everywhere(&self) -> Option<ClientError> {
        let errors = lock(&self.errors);
        (errors.len() >= self.connections())
            .then(|| errors.last().cloned())
            .flatten()
    }

    /// The rate over the last second, for the progress line.
    pub(super) fn rate_bps(&self, at: Duration) -> f64 {
        let mut h = lock(&self.history);
        h.push((at, self.bytes.load(Ordering::Relaxed)));
        let (t0, b0) = h[h.len().saturating_sub(2)];
        let (t1, b1) = h[h.len() - 1];
        if t1 > t0 {
            (b1 - b0) as f64 * 8.0 / (t1 - t0).as_secs_f64()
        } else {
            0.0
        }
    }

    /// Stops every connection.
    pub(super) fn stop(&self) {
        let _ = self.stop.send(true);
        lock(&self.tasks).abort_all();
        lock(&self.senders).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One load-generating connection's requests.
struct Stream {
    connector: Connector,
    path: String,
    bytes: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
    chunk: Bytes,
}

impl Stream {
    /// Requests again and again until stopped.
    async fn repeat(mut self, mut sender: SendRequest<Body>, up: bool) -> Result<(), ClientError> {
        while !*self.stop.borrow() {
            let body = if up {
                self.upload_body()
            } else {
                Empty::new().boxed_unsync()
            };
            let method = if up {
                hyper::Method::POST
            } else {
                hyper::Method::GET
            };
            let req = self.connector.request(method, &self.path, body);
            let failed = |e: hyper::Error| {
                ClientError::new(
                    sonde_proto::FailureReason::StreamError,
                    format!("load on {}: {e}", self.connector.addr),
                )
            };
            sender.ready().await.map_err(failed)?;
            let resp = tokio::select! {
                r = sender.send_request(req) => r.map_err(failed)?,
                _ = self.stop.changed() => return Ok(()),
            };
            if !resp.status().is_success() {
                return Err(ClientError::new(
                    sonde_proto::FailureReason::ResponderError,
                    format!(
                        "load on {}: {} answered {}",
                        self.connector.addr,
                        self.path,
                        resp.status()
                    ),
                ));
            }
            let mut body = resp.into_body();
            loop {
                let frame = tokio::select! {
                    f = body.frame() => f,
                    _ = self.stop.changed() => return Ok(()),
                };
                match frame {
                    Some(Ok(f)) => {
                        if let (false, Some(d)) = (up, f.data_ref()) {
                            self.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
                        }
                    }
                    Some(Err(e)) => return Err(failed(e)),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// An upload body of [`UPLOAD_REQUEST`] bytes at most, counted as it is handed
    /// to HTTP/2 (whose flow control holds at most a window of it unsent), ending at
    /// the stop.
    fn upload_body(&self) -> Body {
        let (chunk, bytes, stop) = (self.chunk.clone(), self.bytes.clone(), self.stop.clone());
        let frames = futures_util::stream::unfold(0u64, move |sent| {
            let (chunk, bytes, stop) = (chunk.clone(), bytes.clone(), stop.clone());
            async move {
                if sent >= UPLOAD_REQUEST || *stop.borrow() {
                    return None;
                }
                bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                let next = sent + chunk.len() as u64;
                Some((Ok::<_, std::convert::Infallible>(Frame::data(chunk)), next))
            }
        });
        http_body_util::BodyExt::boxed_unsync(StreamBody::new(frames))
    }
}
