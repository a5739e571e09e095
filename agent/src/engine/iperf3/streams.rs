//! iperf3's data streams: each its own TCP connection, read (a download) or written
//! (an upload) with the bytes counted for the driver until the stop, then drained of
//! what the server still had in flight.

use crate::net::arrivals::{Arrivals, Registered};
use crate::net::netif;
use crate::net::target::{ClientError, StreamStats};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Bytes written per call by an upload stream (iperf3's own TCP default).
pub const BLOCK: usize = 128 * 1024;
/// Time a finished stream drains what the server still had in flight.
const DRAIN: Duration = Duration::from_secs(2);

/// What one data stream shares with its direction.
#[derive(Debug)]
pub struct StreamIo {
    /// The direction's byte counter.
    pub counter: Arc<AtomicU64>,
    /// The direction's TCP-layer arrivals.
    pub arrivals: Arc<Arrivals>,
    /// Turns true at the stop.
    pub stop: watch::Receiver<bool>,
    /// Bytes that arrived after the stop, while draining.
    pub drained: Arc<AtomicU64>,
}

/// Reads a reverse-mode stream, counting bytes until the stop, then drains it.
pub async fn download(mut stream: TcpStream, mut io: StreamIo) -> Result<StreamStats, ClientError> {
    let registered = Registered::new(&io.arrivals, &stream);
    let mut buf = vec![0u8; BLOCK];
    let mut got = 0u64;
    let mut eof = false;
    while !*io.stop.borrow() {
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) => { eof = true; break; }
                Ok(n) => {
                    got += n as u64;
                    io.counter.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => match failure(*io.stop.borrow(), "iperf3 download stream", &e) {
                    Some(failed) => return Err(failed),
                    None => { eof = true; break; }
                },
            },
            _ = io.stop.changed() => break,
        }
    }
    // The counts stop here, with the sampling; what still arrives is only drained.
    drop(registered);
    let info = netif::tcp_info(&stream).ok();
    if !eof {
        drain(&mut stream, &io.drained, &mut buf).await;
    }
    Ok(StreamStats { bytes: got, info })
}

/// Writes a stream until the stop or its byte allowance, then waits for the server to
/// close it.
pub async fn upload(
    mut stream: TcpStream,
    mut io: StreamIo,
    block: Arc<Vec<u8>>,
    limit: u64,
) -> Result<StreamStats, ClientError> {
    let registered = Registered::new(&io.arrivals, &stream);
    let mut sent = 0u64;
    let mut at = 0usize;
    while !*io.stop.borrow() && sent < limit {
        tokio::select! {
            r = stream.write(&block[at..]) => match r {
                Ok(n) => {
                    sent += n as u64;
                    at = (at + n) % block.len();
                    io.counter.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => match failure(*io.stop.borrow(), "iperf3 upload stream", &e) {
                    Some(failed) => return Err(failed),
                    None => break,
                },
            },
            _ = io.stop.changed() => break,
        }
    }
    // Acknowledged segments keep arriving for what sits in the send buffer: read them
    // a last time at the stop, as the sampler did.
    drop(registered);
    let info = netif::tcp_info(&stream).ok();
    let mut buf = vec![0u8; 16 * 1024];
    drain(&mut stream, &io.drained, &mut buf).await;
    Ok(StreamStats { bytes: sent, info })
}

/// What an I/O error on a data stream means: a failure while the direction runs; once
/// it has stopped, only the end of the stream (the agent sends TEST_END at the stop,
/// and the server may reset the stream before this task has seen the stop).
fn failure(stopped: bool, what: &str, e: &std::io::Error) -> Option<ClientError> {
    (!stopped).then(|| ClientError::io(what, e))
}

/// Reads until the server closes the connection (it does at TEST_END), for `DRAIN`
/// at most. A reset also ends it: the server closes with unread data.
async fn drain(stream: &mut TcpStream, drained: &AtomicU64, buf: &mut [u8]) {
    let work = async {
        loop {
            match stream.read(buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    drained.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN, work).await;
}

/// A block of random bytes an upload writes again and again.
pub fn random_block() -> Vec<u8> {
    use rand::RngCore;
    let mut block = vec![0u8; BLOCK];
    rand::rng().fill_bytes(&mut block);
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_proto::FailureReason;

    #[test]
    fn a_reset_after_the_stop_ends_a_stream_and_before_it_fails_it() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(failure(true, "s", &reset).is_none());
        let e = failure(false, "s", &reset).expect("a failure while running");
        assert_eq!(e.reason, FailureReason::StreamError);
    }
}
