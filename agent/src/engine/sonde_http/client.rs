//! The agent's HTTP/1.1 side of the responder protocol, on sockets it owns: each data
//! stream is one TCP connection bound to the probed interface, read or written in large
//! blocks with the bytes counted as they pass, and its TCP_INFO read before it closes.
//! Heads are parsed by `httparse`; bodies are counted, never buffered.

use crate::net::arrivals::{Arrivals, Registered};
use crate::net::netif;
use crate::net::target::{ClientError, StreamStats, Target, CONNECT_TIMEOUT};
use sonde_proto::FailureReason;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest control document (info, upload report) accepted.
const MAX_DOC: usize = 1024 * 1024;
/// Read/write block of data streams.
const BLOCK: usize = 256 * 1024;
impl Target {
    fn request(&self, method: &str, path: &str, extra: &str) -> String {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sonde-agent/{}\r\n{extra}\r\n",
            self.host,
            env!("CARGO_PKG_VERSION")
        )
    }

    /// `GET path` of a small JSON document.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let work = async {
            let mut stream = self.connect().await?;
            let req = self.request("GET", path, "Connection: close\r\n");
            write(&mut stream, req.as_bytes()).await?;
            let head = read_head(&mut stream).await?;
            let mut body = head.rest;
            let want = head.content_length.unwrap_or(MAX_DOC as u64 + 1) as usize;
            if head.content_length.is_some_and(|l| l > MAX_DOC as u64) {
                return Err(responder_error(format!(
                    "{path}: document larger than {MAX_DOC} bytes"
                )));
            }
            let mut buf = vec![0u8; 16 * 1024];
            while body.len() < want {
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| ClientError::io(&format!("reading {path}"), &e))?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&buf[..n]);
                if body.len() > MAX_DOC {
                    return Err(responder_error(format!(
                        "{path}: document larger than {MAX_DOC} bytes"
                    )));
                }
            }
            if head.status != 200 {
                return Err(status_error(path, head.status, &body));
            }
            serde_json::from_slice(&body)
                .map_err(|e| responder_error(format!("{path}: not the expected document: {e}")))
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::new(
                    FailureReason::Timeout,
                    format!(
                        "{path}: no complete answer from {} within {timeout:?}",
                        self.addr
                    ),
                ))
            })
    }

    /// One download stream of test `test`: asks for `bytes`, counts what arrives into `counter` until
    /// the body ends or `stop` turns true, then resets the connection.
    pub async fn download(
        &self,
        test: &str,
        bytes: u64,
        counter: Arc<AtomicU64>,
        arrivals: Arc<Arrivals>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<StreamStats, ClientError> {
        let mut stream = self.connect().await?;
        // Dropped before `stream` on every path: the socket is read while registered.
        let registered = Registered::new(&arrivals, &stream);
        let req = self.request("GET", &format!("/download?bytes={bytes}&test={test}"), "");
        write(&mut stream, req.as_bytes()).await?;
        let head = tokio::time::timeout(CONNECT_TIMEOUT, read_head(&mut stream))
            .await
            .map_err(|_| ClientError::new(FailureReason::Timeout, "no download response head"))??;
        if head.status != 200 {
            return Err(status_error("/download", head.status, &head.rest));
        }
        let expected = head.content_length.unwrap_or(u64::MAX);
        let mut got = head.rest.len() as u64;
        counter.fetch_add(got, Ordering::Relaxed);
        let mut buf = vec![0u8; BLOCK];
        while got < expected && !*stop.borrow() {
            tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(0) => break,
                    Ok(n) => {
                        got += n as u64;
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => return Err(ClientError::io("download stream", &e)),
                },
                _ = stop.changed() => break,
            }
        }
        drop(registered);
        Ok(finish(stream, got))
    }

    /// One upload stream to test `test`: sends chunked body blocks until `stop` or until
    /// `limit` payload bytes are written, counting them into `counter`, then resets the
    /// connection.
    pub async fn upload(
        &self,
        test: &str,
        chunk: Arc<UploadChunk>,
        limit: u64,
        counter: Arc<AtomicU64>,
        arrivals: Arc<Arrivals>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<StreamStats, ClientError> {
        let mut stream = self.connect().await?;
        let registered = Registered::new(&arrivals, &stream);
        let req = self.request(
            "POST",
            &format!("/upload?test={test}"),
            "Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n",
        );
        write(&mut stream, req.as_bytes()).await?;
        let block = chunk.payload as u64;
        let mut sent = 0u64;
        while !*stop.borrow() && sent < limit {
            tokio::select! {
                r = stream.write_all(&chunk.framed) => match r {
                    Ok(()) => {
                        sent += block;
                        counter.fetch_add(block, Ordering::Relaxed);
                    }
                    Err(e) => {
                        // The responder answers early (busy, limit) by closing: read why.
                        let mut why = vec![0u8; 4096];
                        if let Ok(Ok(n)) = tokio::time::timeout(
                            Duration::from_millis(200), stream.read(&mut why)).await {
                            if let Ok(head) = parse_head(&why[..n]) {
                                return Err(status_error("/upload", head.status, &head.rest));
                            }
                        }
                        return Err(ClientError::io("upload stream", &e));
                    }
                },
                _ = stop.changed() => break,
            }
        }
        drop(registered);
        Ok(finish(stream, sent))
    }
}

/// One framed chunk of random bytes, written again and again by upload streams.
#[derive(Debug, Clone)]
pub struct UploadChunk {
    framed: Vec<u8>,
    payload: usize,
}

impl UploadChunk {
    /// A chunk carrying `block` bytes of payload: `len-hex\r\n<bytes>\r\n`.
    pub fn new(block: usize) -> Self {
        use rand::RngCore;
        let mut framed = format!("{block:x}\r\n").into_bytes();
        let start = framed.len();
        framed.resize(start + block, 0);
        rand::rng().fill_bytes(&mut framed[start..]);
        framed.extend_from_slice(b"\r\n");
        UploadChunk {
            framed,
            payload: block,
        }
    }
}

/// Payload bytes per upload chunk.
pub const UPLOAD_BLOCK: usize = BLOCK;

fn finish(stream: TcpStream, bytes: u64) -> StreamStats {
    let info = netif::tcp_info(&stream).ok();
    // Reset instead of a graceful close: whatever is still queued would only spend the
    // access's data and is not part of the measurement.
    let _ = stream.set_zero_linger();
    drop(stream);
    StreamStats { bytes, info }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), ClientError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| ClientError::io("sending the request", &e))
}

struct Head {
    status: u16,
    content_length: Option<u64>,
    /// Bytes read past the head (start of the body).
    rest: Vec<u8>,
}

async fn read_head(stream: &mut TcpStream) -> Result<Head, ClientError> {
    let mut buf = Vec::with_capacity(4096);
    let mut block = vec![0u8; 64 * 1024];
    loop {
        let n = stream
            .read(&mut block)
            .await
            .map_err(|e| ClientError::io("reading the response", &e))?;
        if n == 0 {
            return Err(responder_error(
                "the responder closed the connection without answering",
            ));
        }
        buf.extend_from_slice(&block[..n]);
        match parse_head(&buf) {
            Ok(head) => return Ok(head),
            Err(None) if buf.len() < MAX_HEAD => continue,
            Err(None) => return Err(responder_error("response head too large")),
            Err(Some(e)) => return Err(e),
        }
    }
}

/// Parses a response head; `Err(None)` when incomplete.
fn parse_head(buf: &[u8]) -> Result<Head, Option<ClientError>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let content_length = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.trim().parse().ok());
            Ok(Head {
                status: resp.code.unwrap_or(0),
                content_length,
                rest: buf[len..].to_vec(),
            })
        }
        Ok(httparse::Status::Partial) => Err(None),
        Err(e) => Err(Some(responder_error(format!("not an HTTP response: {e}")))),
    }
}

fn responder_error(message: impl Into<String>) -> ClientError {
    ClientError::new(FailureReason::ResponderError, message)
}

fn status_error(path: &str, status: u16, body: &[u8]) -> ClientError {
    let detail = serde_json::from_slice::<sonde_proto::responder::ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_default();
    let reason = if status == 503 {
        FailureReason::ResponderBusy
    } else {
        FailureReason::ResponderError
    };
    ClientError::new(
        reason,
        format!("{path}: responder answered {status} {detail}")
            .trim_end()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_body_start() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
            .map_err(|_| ())
            .expect("complete head");
        assert_eq!(head.status, 200);
        assert_eq!(head.content_length, Some(5));
        assert_eq!(head.rest, b"ab");
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-"),
            Err(None)
        ));
        assert!(matches!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(Some(_))
        ));
    }

    #[test]
    fn status_errors_carry_the_responder_reason() {
        let e = status_error("/download", 503, br#"{"error":"responder busy"}"#);
        assert_eq!(e.reason, FailureReason::ResponderBusy);
        assert!(e.message.contains("503 responder busy"), "{}", e.message);
        assert_eq!(
            status_error("/x", 400, b"").reason,
            FailureReason::ResponderError
        );
    }

    #[test]
    fn upload_chunks_are_framed() {
        let c = UploadChunk::new(0x100);
        assert!(c.framed.starts_with(b"100\r\n"));
        assert!(c.framed.ends_with(b"\r\n"));
        assert_eq!((c.framed.len(), c.payload), (0x100 + 7, 0x100));
    }
}
