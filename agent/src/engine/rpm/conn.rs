//! One HTTP/2 connection over TLS to a network-quality server, on a socket the agent
//! owns (bound to the access's interface), with the time each handshake took: what
//! load-generating connections and foreign probes are made of.

use crate::net::netif;
use crate::net::target::ClientError;
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt as _, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use sonde_proto::FailureReason;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A request body: empty for a GET, generated for an upload.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// Unsent bytes a connection's socket holds at most (TCP_NOTSENT_LOWAT), as the
/// responder's.
const NOTSENT_LOWAT: u32 = 16 * 1024;
/// Bytes of a stream HTTP/2 buffers in the agent at most.
const SEND_BUF: usize = 64 * 1024;

/// The longest a TCP or TLS handshake may take.
pub(crate) const HANDSHAKE: Duration = Duration::from_secs(5);
/// The longest a small GET may take.
pub(crate) const REQUEST: Duration = Duration::from_secs(10);

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Connector {
    pub addr: SocketAddr,
    pub name: ServerName<'static>,
    /// `host[:port]` of the URLs, for the `:authority` of each request.
    pub authority: String,
    pub interface: Option<String>,
    pub tls: tokio_rustls::TlsConnector,
}

/// A connection ready for requests, and what opening it took.
pub(crate) struct Opened {
    pub sender: SendRequest<Body>,
    /// TCP handshake.
    pub tcp: Duration,
    /// TLS handshake divided by the round trips its version takes (1 for TLS 1.3, 2
    /// for TLS 1.2).
    pub tls: Duration,
}

/// The TLS client configuration: the certificates of `ca` (PEM) when given, else the
/// system's roots; HTTP/2 only.
pub(crate) fn tls_config(
    ca: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let bad = |m: String| ClientError::new(FailureReason::Other, m);
    match ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect())
                .map_err(|e| {
                    bad(format!(
                        "cannot read certificates from {}: {e}",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(bad(format!("{} holds no certificate", path.display())));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl Connector {
    /// Opens a connection: TCP (bound to the interface), TLS, HTTP/2. Each step is
    /// bounded; the error names the step and the address.
    pub(crate) async fn open(&self) -> Result<Opened, ClientError> {
        let start = Instant::now();
        let tcp = tokio::time::timeout(
            HANDSHAKE,
            netif::connect_tcp(self.addr, self.interface.as_deref()),
        )
        .await
        .map_err(|_| timeout(format!("TCP connection to {} took over 5 s", self.addr)))?
        .map_err(|e| {
            let reason = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                FailureReason::Refused
            } else {
                FailureReason::Other
            };
            ClientError::new(reason, format!("TCP connection to {}: {e}", self.addr))
        })?;
        let _ = tcp.set_nodelay(true);
        // What the agent sends waits in the network's queue, not in its own socket:
        // a self probe queues behind at most this much of an upload.
        let _ = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(NOTSENT_LOWAT);
        let tcp_time = start.elapsed();
        let tls = tokio::time::timeout(HANDSHAKE, self.tls.connect(self.name.clone(), tcp))
            .await
            .map_err(|_| {
                timeout(format!(
                    "TLS handshake with {} took over 5 s (is it an HTTPS server?)",
                    self.addr
                ))
            })?
            .map_err(|e| {
                ClientError::new(
                    FailureReason::ResponderError,
                    format!(
                        "TLS handshake with {} failed: {e} (is it an HTTPS server with a certificate this agent trusts?)",
                        self.addr
                    ),
                )
            })?;
        let tls_time = start.elapsed() - tcp_time;
        let (_, session) = tls.get_ref();
        let round_trips = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => 2,
            _ => 1,
        };
        if session.alpn_protocol() != Some(b"h2") {
            return Err(ClientError::new(
                FailureReason::ResponderError,
                format!("{} does not speak HTTP/2 (ALPN h2)", self.addr),
            ));
        }
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .max_send_buf_size(SEND_BUF)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| {
                ClientError::new(
                    FailureReason::ResponderError,
                    format!("HTTP/2 with {}: {e}", self.addr),
                )
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Opened {
            sender,
            tcp: tcp_time,
            tls: tls_time / round_trips,
        })
    }

    /// A request for `path` (with its query) on this server.
    pub(crate) fn request(
        &self,
        method: hyper::Method,
        path: &str,
        body: Body,
    ) -> hyper::Request<Body> {
        let mut req = hyper::Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = format!("https://{}{path}", self.authority)
            .parse()
            .unwrap_or_default();
        req
    }
}

/// GETs `path` on `sender` and reads the whole answer (at most `limit` bytes): the
/// time from sending to the last byte, and the body.
pub(crate) async fn get(
    connector: &Connector,
    sender: &mut SendRequest<Body>,
    path: &str,
    limit: usize,
) -> Result<(Duration, Bytes), ClientError> {
    let start = Instant::now();
    let req = connector.request(hyper::Method::GET, path, Empty::new().boxed_unsync());
    let exchange = async {
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let body = http_body_util::Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map(|b| b.to_bytes());
        Ok::<_, hyper::Error>((status, location, body))
    };
    let (status, location, body) = tokio::time::timeout(REQUEST, exchange)
        .await
        .map_err(|_| timeout(format!("GET {path} on {} took over 10 s", connector.addr)))?
        .map_err(|e| {
            ClientError::new(
                FailureReason::ResponderError,
                format!("GET {path} on {}: {e}", connector.addr),
            )
        })?;
    if status.is_redirection() {
        return Err(ClientError::new(
            FailureReason::ResponderError,
            format!(
                "GET {path} on {} redirects ({status} to {}); give the final URL",
                connector.addr,
                location.as_deref().unwrap_or("nowhere")
            ),
        ));
    }
    if !status.is_success() {
        return Err(ClientError::new(
            FailureReason::ResponderError,
            format!("GET {path} on {}: {status}", connector.addr),
        ));
    }
    let body = body.map_err(|e| {
        ClientError::new(
            FailureReason::ResponderError,
            format!("GET {path} on {}: {e}", connector.addr),
        )
    })?;
    Ok((start.elapsed(), body))
}

fn timeout(message: String) -> ClientError {
    ClientError::new(FailureReason::Timeout, message)
}
