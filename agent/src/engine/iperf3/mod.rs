//! The iperf3 engine: measures an access against a stock iperf3 server (`iperf3 -s`,
//! version 3.x), which operators often already run in their networks. It speaks the
//! server's control protocol as its own client does, with `-P N` streams and reverse
//! mode for the download, and feeds the same sampler, stop rule and record as the sonde
//! engine (docs/METHODOLOGY.md §9).
//!
//! The protocol, on one control TCP connection: the client sends a 37-byte cookie; the
//! server answers state bytes (signed), the client sends its parameters and later its
//! results as JSON documents framed by a 4-byte big-endian length. Data streams are
//! more TCP connections to the same port, each opened by the same cookie.

use crate::engine::driver::{self, Figure, Limits, StreamTask};
use crate::engine::options::{Options, ProgressFn};
use crate::engine::record;
use crate::net::arrivals::Arrivals;
use crate::net::arrivals::Registered;
use crate::net::netif;
use crate::net::target::{resolve, ClientError, StreamStats, Target};
use serde::{Deserialize, Serialize};
use sonde_proto::responder::SERVER_LIMITED_CPU;
use sonde_proto::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The port `iperf3 -s` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 5201;
/// The URL scheme that names an iperf3 server among an access's responders.
pub const SCHEME: &str = "iperf3";

/// Length of the cookie that opens every connection of a test (36 characters + NUL).
const COOKIE_SIZE: usize = 37;
/// Bytes written per call by an upload stream (iperf3's own TCP default).
const BLOCK: usize = 128 * 1024;
/// Largest JSON document accepted from the server.
const MAX_JSON: usize = 1024 * 1024;
/// Patience for each control message.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a second test waits for the server to listen again after the first.
const RELISTEN: Duration = Duration::from_secs(3);
/// Time a finished stream drains what the server still had in flight.
const DRAIN: Duration = Duration::from_secs(2);

/// The control states this client meets (iperf3's `iperf_api.h`).
mod state {
    pub const TEST_START: i8 = 1;
    pub const TEST_RUNNING: i8 = 2;
    pub const TEST_END: i8 = 4;
    pub const PARAM_EXCHANGE: i8 = 9;
    pub const CREATE_STREAMS: i8 = 10;
    pub const SERVER_TERMINATE: i8 = 11;
    pub const EXCHANGE_RESULTS: i8 = 13;
    pub const DISPLAY_RESULTS: i8 = 14;
    pub const IPERF_DONE: i8 = 16;
    pub const ACCESS_DENIED: i8 = -1;
    pub const SERVER_ERROR: i8 = -2;
}

/// The test parameters sent to the server. A key's presence is what counts for the
/// flags (`reverse`), so absent ones are left out.
#[derive(Debug, Serialize)]
struct Params {
    tcp: bool,
    omit: u32,
    time: u64,
    num: u64,
    blockcount: u64,
    parallel: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    reverse: Option<bool>,
    len: usize,
    pacing_timer: u32,
    client_version: String,
}

/// One stream in a results document. Numbers stay as written: a server writes -1
/// as an unsigned 64-bit integer.
#[derive(Debug, Serialize, Deserialize)]
struct StreamResult {
    id: i64,
    bytes: serde_json::Number,
    retransmits: serde_json::Number,
    jitter: f64,
    errors: serde_json::Number,
    packets: serde_json::Number,
    #[serde(default)]
    start_time: f64,
    #[serde(default)]
    end_time: f64,
}

/// A results document (the server requires the CPU and retransmit keys).
#[derive(Debug, Serialize, Deserialize)]
struct Results {
    cpu_util_total: f64,
    cpu_util_user: f64,
    cpu_util_system: f64,
    sender_has_retransmits: serde_json::Number,
    #[serde(default)]
    streams: Vec<StreamResult>,
}

/// Measures `opts` against the iperf3 server its responder URL names, filling `record`.
pub(crate) async fn measure(
    opts: &Options,
    record: &mut ResultRecord,
    progress: &ProgressFn,
) -> Result<(), ClientError> {
    record.run.engine = Engine::Iperf3;
    let (addr, host) = resolve(&opts.responder).await?;
    record.run.responder.address = Some(addr.to_string());
    let target = Target {
        addr,
        host,
        interface: opts.interface.as_ref().map(|i| i.name.clone()),
    };
    let mut outcomes = Vec::new();
    for &direction in &opts.directions {
        let limits = Limits {
            streams: opts.streams,
            max_duration: opts.max_duration,
            max_bytes: opts.max_bytes,
        };
        // iperf3 -s listens again only once it has cleaned up the previous test.
        let patience = if outcomes.is_empty() {
            Duration::ZERO
        } else {
            RELISTEN
        };
        let r = run_direction(&target, direction, limits, patience, progress).await;
        if let Err(e) = &r {
            // A server that refuses the first test refuses the next: fail over now.
            if outcomes.is_empty()
                && matches!(
                    e.reason,
                    FailureReason::ResponderBusy
                        | FailureReason::ResponderError
                        | FailureReason::Refused
                        | FailureReason::Timeout
                )
            {
                return Err(e.clone());
            }
        }
        let r = r.map(|(t, failed, server_limited)| {
            if server_limited && !record.flags.contains(&Flag::ServerLimited) {
                record.flags.push(Flag::ServerLimited);
            }
            (t, failed)
        });
        outcomes.push((direction, r));
    }
    record::settle(record, Vec::new(), outcomes);
    Ok(())
}

/// One iperf3 test: one direction, its streams, and the closing exchange. Also says
/// whether the server reported itself CPU-bound.
async fn run_direction(
    target: &Target,
    direction: Direction,
    limits: Limits,
    patience: Duration,
    progress: &ProgressFn,
) -> Result<(Throughput, u32, bool), ClientError> {
    let cookie = make_cookie();
    let mut ctrl = open_test(target, &cookie, patience).await?;
    let params = Params {
        tcp: true,
        omit: 0,
        // The server ends a test on its own only 40 s after this; the agent ends it
        // (TEST_END) as soon as the stop rule allows.
        time: limits.max_duration.as_secs_f64().ceil() as u64,
        num: 0,
        blockcount: 0,
        parallel: limits.streams,
        reverse: (direction != Direction::Up).then_some(true),
        len: BLOCK,
        pacing_timer: 1000,
        client_version: format!("sonde-agent {}", env!("CARGO_PKG_VERSION")),
    };
    write_json(&mut ctrl, &params).await?;
    expect(&mut ctrl, state::CREATE_STREAMS).await?;
    let mut sockets = Vec::with_capacity(limits.streams as usize);
    for _ in 0..limits.streams {
        let mut s = target.connect().await?;
        send(&mut s, &cookie, "a stream's cookie").await?;
        sockets.push(s);
    }
    expect(&mut ctrl, state::TEST_START).await?;
    expect(&mut ctrl, state::TEST_RUNNING).await?;

    let sockets = Mutex::new(sockets);
    let block = Arc::new(random_block());
    let drained = Arc::new(AtomicU64::new(0));
    let per_stream_limit = limits
        .max_bytes
        .map(|m| m.div_ceil(u64::from(limits.streams.max(1))))
        .unwrap_or(u64::MAX);
    let open = |counter, arrivals, stop| -> StreamTask {
        let socket = sockets.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (block, drained) = (block.clone(), drained.clone());
        Box::pin(async move {
            let Some(socket) = socket else {
                return Err(ClientError::new(FailureReason::Other, "no stream socket"));
            };
            let io = StreamIo {
                counter,
                arrivals,
                stop,
                drained,
            };
            match direction {
                Direction::Up => upload(socket, io, block, per_stream_limit).await,
                _ => download(socket, io).await,
            }
        })
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut ended = stop_rx.clone();
    // The moment the stop rule ends the direction, the server hears it: it then stops
    // sending and closes the data connections, which ends the streams' draining.
    let end_test = async {
        let _ = ended.wait_for(|s| *s).await;
        send(&mut ctrl, &[state::TEST_END as u8], "TEST_END").await
    };
    let (d, ended) = tokio::join!(
        driver::drive(direction, limits, None, progress, (stop_tx, stop_rx), open),
        end_test
    );
    ended?;

    // The closing exchange: our results, then the server's. The figure is the agent's
    // own: a server that fails the exchange costs its count, never the figure.
    let theirs = match close_test(&mut ctrl, client_results(direction, &d)).await {
        Ok(theirs) => Some(theirs),
        Err(e) => {
            tracing::warn!(error = %e, "iperf3: the closing exchange failed; the figure stands");
            None
        }
    };
    tracing::debug!(?theirs, "iperf3 server results");

    let (estimate, counting) = driver::agent_estimate(direction, &d);
    let carried = match direction {
        // What reached the server: its count, or the acknowledged segments when more
        // (it stops reading at TEST_END).
        Direction::Up => {
            let (segs, mss) = d.arrivals.total();
            let acked = (segs * u64::from(mss)).min(d.app_bytes);
            theirs.as_ref().map_or(acked, |t| received(t).max(acked))
        }
        _ => d.app_bytes + drained.load(Ordering::Relaxed),
    };
    // iperf3 reports its process's CPU time over the test as a percentage of one core:
    // a server near a whole core was the limit (the responder's threshold).
    let server_limited = theirs
        .as_ref()
        .is_some_and(|t| t.cpu_util_total >= SERVER_LIMITED_CPU * 100.0);
    let figure = Figure {
        estimate,
        measured_at: MeasuredAt::Agent,
        counting,
        sample_count: d.sampled.app.bins(),
        carried,
    };
    let (t, failed) = driver::throughput(direction, d, figure, target.addr.is_ipv6())?;
    Ok((t, failed, server_limited))
}

/// After `TEST_END`: sends our results, reads the server's, says we are done, and
/// waits for the server to close the test (it is free for the next one then).
async fn close_test(ctrl: &mut TcpStream, ours: Results) -> Result<Results, ClientError> {
    expect(ctrl, state::EXCHANGE_RESULTS).await?;
    write_json(ctrl, &ours).await?;
    let theirs: Results = read_json(ctrl).await?;
    expect(ctrl, state::DISPLAY_RESULTS).await?;
    send(ctrl, &[state::IPERF_DONE as u8], "IPERF_DONE").await?;
    let mut rest = [0u8; 64];
    let _ = tokio::time::timeout(DRAIN, async {
        while let Ok(n) = ctrl.read(&mut rest).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(theirs)
}

/// Opens the control connection and presents the cookie, until the server asks for
/// the parameters. Between two tests `iperf3 -s` stops listening, resets what
/// connected meanwhile, or still denies access while it cleans up: that is tried again
/// for `patience`.
async fn open_test(
    target: &Target,
    cookie: &[u8],
    patience: Duration,
) -> Result<TcpStream, ClientError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let attempt = async {
            let mut ctrl = target.connect().await?;
            send(&mut ctrl, cookie, "the cookie").await?;
            expect(&mut ctrl, state::PARAM_EXCHANGE).await?;
            Ok::<_, ClientError>(ctrl)
        };
        match attempt.await {
            Err(e)
                if matches!(
                    e.reason,
                    FailureReason::Refused
                        | FailureReason::StreamError
                        | FailureReason::ResponderBusy
                ) && tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "iperf3 server not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// What one data stream shares with its direction.
struct StreamIo {
    counter: Arc<AtomicU64>,
    arrivals: Arc<Arrivals>,
    stop: watch::Receiver<bool>,
    /// Bytes that arrived after the stop, while draining.
    drained: Arc<AtomicU64>,
}

/// Reads a reverse-mode stream, counting bytes until the stop, then drains it.
async fn download(mut stream: TcpStream, mut io: StreamIo) -> Result<StreamStats, ClientError> {
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
async fn upload(
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

/// Payload bytes a results document counts, over its streams.
fn received(r: &Results) -> u64 {
    r.streams
        .iter()
        .map(|s| {
            s.bytes
                .as_u64()
                .unwrap_or_else(|| s.bytes.as_f64().unwrap_or(0.0) as u64)
        })
        .sum()
}

/// The client's results document: each stream's bytes, in iperf3's stream numbering
/// (1, 3, 4, …).
fn client_results(direction: Direction, d: &driver::Driven) -> Results {
    let sending = direction == Direction::Up;
    let streams = d
        .stats
        .iter()
        .enumerate()
        .map(|(i, s)| StreamResult {
            id: if i == 0 { 1 } else { i as i64 + 2 },
            bytes: s.bytes.into(),
            retransmits: match (sending, s.info) {
                (true, Some(info)) => info.total_retrans.into(),
                _ => (-1).into(),
            },
            jitter: 0.0,
            errors: 0.into(),
            packets: 0.into(),
            start_time: 0.0,
            end_time: d.sampled.elapsed.as_secs_f64(),
        })
        .collect();
    Results {
        cpu_util_total: 0.0,
        cpu_util_user: 0.0,
        cpu_util_system: 0.0,
        sender_has_retransmits: if sending { 1 } else { -1 }.into(),
        streams,
    }
}

/// A cookie as iperf3 makes them: 36 characters of `[a-z2-7]`, then NUL.
fn make_cookie() -> [u8; COOKIE_SIZE] {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let mut cookie = [0u8; COOKIE_SIZE];
    for c in cookie.iter_mut().take(COOKIE_SIZE - 1) {
        *c = ALPHABET[rng.random_range(0..ALPHABET.len())];
    }
    cookie
}

fn random_block() -> Vec<u8> {
    use rand::RngCore;
    let mut block = vec![0u8; BLOCK];
    rand::rng().fill_bytes(&mut block);
    block
}

async fn send(stream: &mut TcpStream, bytes: &[u8], what: &str) -> Result<(), ClientError> {
    match tokio::time::timeout(CONTROL_TIMEOUT, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ClientError::io(&format!("iperf3: sending {what}"), &e)),
        Err(_) => Err(ClientError::new(
            FailureReason::Timeout,
            format!("iperf3: sending {what}: no progress within {CONTROL_TIMEOUT:?}"),
        )),
    }
}

async fn read_exact(stream: &mut TcpStream, buf: &mut [u8], what: &str) -> Result<(), ClientError> {
    match tokio::time::timeout(CONTROL_TIMEOUT, stream.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ClientError::new(
            FailureReason::ResponderError,
            format!("iperf3: the server closed the control connection before {what}"),
        )),
        Ok(Err(e)) => Err(ClientError::io(&format!("iperf3: reading {what}"), &e)),
        Err(_) => Err(ClientError::new(
            FailureReason::Timeout,
            format!("iperf3: no {what} within {CONTROL_TIMEOUT:?}"),
        )),
    }
}

/// Reads the next state byte and checks it is `want`; a refusal or a server error
/// becomes its failure reason.
async fn expect(ctrl: &mut TcpStream, want: i8) -> Result<(), ClientError> {
    let mut b = [0u8; 1];
    read_exact(ctrl, &mut b, &format!("state {}", state_name(want))).await?;
    let got = b[0] as i8;
    match got {
        g if g == want => Ok(()),
        state::ACCESS_DENIED => Err(ClientError::new(
            FailureReason::ResponderBusy,
            "iperf3: the server is busy running another test (ACCESS_DENIED)",
        )),
        state::SERVER_ERROR => {
            // Two network-order integers follow: iperf3's error number, then errno.
            let mut codes = [0u8; 8];
            let detail =
                match tokio::time::timeout(Duration::from_secs(1), ctrl.read_exact(&mut codes))
                    .await
                {
                    Ok(Ok(_)) => {
                        let ie = i32::from_be_bytes([codes[0], codes[1], codes[2], codes[3]]);
                        let errno = i32::from_be_bytes([codes[4], codes[5], codes[6], codes[7]]);
                        server_error(ie, errno)
                    }
                    _ => "no detail".into(),
                };
            Err(ClientError::new(
                FailureReason::ResponderError,
                format!("iperf3: the server failed the test (SERVER_ERROR: {detail})"),
            ))
        }
        state::SERVER_TERMINATE => Err(ClientError::new(
            FailureReason::ResponderError,
            "iperf3: the server was stopped during the test (SERVER_TERMINATE)",
        )),
        other => Err(ClientError::new(
            FailureReason::ResponderError,
            format!(
                "iperf3: expected state {}, got {} (is this an iperf3 server?)",
                state_name(want),
                state_name(other)
            ),
        )),
    }
}

fn state_name(s: i8) -> String {
    match s {
        state::TEST_START => "TEST_START".into(),
        state::TEST_RUNNING => "TEST_RUNNING".into(),
        state::TEST_END => "TEST_END".into(),
        state::PARAM_EXCHANGE => "PARAM_EXCHANGE".into(),
        state::CREATE_STREAMS => "CREATE_STREAMS".into(),
        state::SERVER_TERMINATE => "SERVER_TERMINATE".into(),
        state::EXCHANGE_RESULTS => "EXCHANGE_RESULTS".into(),
        state::DISPLAY_RESULTS => "DISPLAY_RESULTS".into(),
        state::IPERF_DONE => "IPERF_DONE".into(),
        state::ACCESS_DENIED => "ACCESS_DENIED".into(),
        state::SERVER_ERROR => "SERVER_ERROR".into(),
        other => format!("byte {other}"),
    }
}

/// The text of the iperf3 error numbers a server sends most, with the errno.
fn server_error(ie: i32, errno: i32) -> String {
    let what = match ie {
        5 => "test duration too long",
        6 => "too many parallel streams",
        7 => "block size too large",
        102 => "unable to listen for data connections",
        114 => "unable to receive the parameters",
        121 => "busy running a test",
        142 => "test authorization failed",
        _ => "iperf3 error",
    };
    if errno != 0 {
        format!(
            "{what} (i_errno {ie}, errno {errno}: {})",
            std::io::Error::from_raw_os_error(errno)
        )
    } else {
        format!("{what} (i_errno {ie})")
    }
}

async fn write_json<T: Serialize>(ctrl: &mut TcpStream, doc: &T) -> Result<(), ClientError> {
    let body = serde_json::to_vec(doc)
        .map_err(|e| ClientError::new(FailureReason::Other, format!("iperf3: {e}")))?;
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    send(ctrl, &framed, "a JSON document").await
}

async fn read_json<T: serde::de::DeserializeOwned>(ctrl: &mut TcpStream) -> Result<T, ClientError> {
    let mut len = [0u8; 4];
    read_exact(ctrl, &mut len, "the server's results").await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_JSON {
        return Err(ClientError::new(
            FailureReason::ResponderError,
            format!("iperf3: the server's results are {len} bytes, more than {MAX_JSON}"),
        ));
    }
    let mut body = vec![0u8; len];
    read_exact(ctrl, &mut body, "the server's results").await?;
    serde_json::from_slice(&body).map_err(|e| {
        ClientError::new(
            FailureReason::ResponderError,
            format!("iperf3: the server's results are not the expected document: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_36_base32_characters_and_a_nul() {
        let a = make_cookie();
        let b = make_cookie();
        assert_eq!(a[36], 0);
        assert!(a[..36]
            .iter()
            .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(c)));
        assert_ne!(a, b);
    }

    #[test]
    fn parameters_name_reverse_only_for_a_download() {
        let mut p = Params {
            tcp: true,
            omit: 0,
            time: 10,
            num: 0,
            blockcount: 0,
            parallel: 4,
            reverse: Some(true),
            len: BLOCK,
            pacing_timer: 1000,
            client_version: "x".into(),
        };
        let down = serde_json::to_value(&p).expect("json");
        assert_eq!(down["reverse"], true);
        assert_eq!(down["parallel"], 4);
        p.reverse = None;
        let up = serde_json::to_value(&p).expect("json");
        assert!(up.get("reverse").is_none(), "{up}");
    }

    #[test]
    fn server_results_as_iperf3_3_12_writes_them_parse() {
        // Recorded from Debian's iperf3 3.12 (`iperf3 -c … -P 2 --debug`, the server's
        // results after an upload): -1 as an unsigned integer, printed as a float.
        let printed = "{\n\t\"cpu_util_total\":\t41.6475949670701,\n\t\"cpu_util_user\":\t1.3582714544128083,\n\t\"cpu_util_system\":\t40.289323512657276,\n\t\"sender_has_retransmits\":\t1.8446744073709552e+19,\n\t\"congestion_used\":\t\"bbr\",\n\t\"streams\":\t[{\n\t\t\t\"id\":\t1,\n\t\t\t\"bytes\":\t1149501440,\n\t\t\t\"retransmits\":\t1.8446744073709552e+19,\n\t\t\t\"jitter\":\t0,\n\t\t\t\"errors\":\t0,\n\t\t\t\"packets\":\t0,\n\t\t\t\"start_time\":\t0,\n\t\t\t\"end_time\":\t1.000602\n\t\t}, {\n\t\t\t\"id\":\t3,\n\t\t\t\"bytes\":\t1145569280,\n\t\t\t\"retransmits\":\t1.8446744073709552e+19,\n\t\t\t\"jitter\":\t0,\n\t\t\t\"errors\":\t0,\n\t\t\t\"packets\":\t0,\n\t\t\t\"start_time\":\t0,\n\t\t\t\"end_time\":\t1.000603\n\t\t}]\n}";
        let r: Results = serde_json::from_str(printed).expect("parses");
        assert_eq!(received(&r), 1_149_501_440 + 1_145_569_280);
        // On the wire the same -1 travels as an integer.
        let wire = r#"{"cpu_util_total":2.1,"cpu_util_user":0.1,"cpu_util_system":2.0,"sender_has_retransmits":18446744073709551615,"streams":[{"id":1,"bytes":5000,"retransmits":18446744073709551615,"jitter":0,"errors":0,"packets":0}]}"#;
        let r: Results = serde_json::from_str(wire).expect("parses");
        assert_eq!(received(&r), 5000);
    }

    #[test]
    fn a_reset_after_the_stop_ends_a_stream_and_before_it_fails_it() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(failure(true, "s", &reset).is_none());
        let e = failure(false, "s", &reset).expect("a failure while running");
        assert_eq!(e.reason, FailureReason::StreamError);
    }

    #[test]
    fn server_errors_read_as_text() {
        assert_eq!(server_error(6, 0), "too many parallel streams (i_errno 6)");
        assert!(
            server_error(102, 98).contains("errno 98"),
            "{}",
            server_error(102, 98)
        );
        assert_eq!(state_name(-1), "ACCESS_DENIED");
        assert_eq!(state_name(42), "byte 42");
    }
}
