//! The iperf3 engine: measures an access against a stock iperf3 server (`iperf3 -s`,
//! version 3.x), which operators often already run in their networks. It speaks the
//! server's control protocol as its own client does, with `-P N` streams and reverse
//! mode for the download, and feeds the same sampler, stop rule and record as the sonde
//! engine (docs/METHODOLOGY.md §9).
//!
//! The protocol, on one control TCP connection: the client sends a 37-byte cookie; the
//! server answers state bytes (signed), the client sends its parameters and later its
//! results as JSON documents framed by a 4-byte big-endian length. Data streams are
//! more TCP connections to the same port, each opened by the same cookie. The
//! protocol itself is sans-IO ([`control`]); [`session`] carries it on the control
//! connection, [`streams`] moves the data.

pub mod control;
pub mod session;
pub mod streams;

use crate::engine::driver::{self, Driven, Figure, Limits, StreamTask};
use crate::engine::options::{Options, ProgressFn};
use crate::engine::record;
use crate::net::target::{resolve, ClientError, Target};
use control::{make_cookie, received, state, Params, Results, StreamResult};
use session::Control;
use sonde_proto::responder::SERVER_LIMITED_CPU;
use sonde_proto::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streams::{download, random_block, upload, StreamIo, BLOCK};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long a second test waits for the server to listen again after the first.
const RELISTEN: Duration = Duration::from_secs(3);

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
    let (mut ctrl, sockets) = start(target, direction, limits, patience).await?;
    let drained = Arc::new(AtomicU64::new(0));
    let open = opener(direction, limits, sockets, drained.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut ended = stop_rx.clone();
    // The moment the stop rule ends the direction, the server hears it: it then stops
    // sending and closes the data connections, which ends the streams' draining.
    let end_test = async {
        let _ = ended.wait_for(|s| *s).await;
        ctrl.send(&[state::TEST_END as u8], "TEST_END").await
    };
    let (d, ended) = tokio::join!(
        driver::drive(direction, limits, None, progress, (stop_tx, stop_rx), open),
        end_test
    );
    ended?;
    // The closing exchange: our results, then the server's. The figure is the agent's
    // own: a server that fails the exchange costs its count, never the figure.
    let theirs = match ctrl.close(client_results(direction, &d)).await {
        Ok(theirs) => Some(theirs),
        Err(e) => {
            tracing::warn!(error = %e, "iperf3: the closing exchange failed; the figure stands");
            None
        }
    };
    tracing::debug!(?theirs, "iperf3 server results");
    // iperf3 reports its process's CPU time over the test as a percentage of one core:
    // a server near a whole core was the limit (the responder's threshold).
    let server_limited = theirs
        .as_ref()
        .is_some_and(|t| t.cpu_util_total >= SERVER_LIMITED_CPU * 100.0);
    let figure = figure(
        direction,
        &d,
        theirs.as_ref(),
        drained.load(Ordering::Relaxed),
    );
    let (t, failed) = driver::throughput(direction, d, figure, target.addr.is_ipv6())?;
    Ok((t, failed, server_limited))
}

/// Opens the test: parameters sent, the data streams connected, until the server says
/// the test runs.
async fn start(
    target: &Target,
    direction: Direction,
    limits: Limits,
    patience: Duration,
) -> Result<(Control, Vec<TcpStream>), ClientError> {
    let cookie = make_cookie();
    let mut ctrl = Control::open(target, &cookie, patience).await?;
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
    ctrl.send_json(&params).await?;
    ctrl.expect(state::CREATE_STREAMS).await?;
    let mut sockets = Vec::with_capacity(limits.streams as usize);
    for _ in 0..limits.streams {
        let mut s = target.connect().await?;
        tokio::io::AsyncWriteExt::write_all(&mut s, &cookie)
            .await
            .map_err(|e| ClientError::io("iperf3: sending a stream's cookie", &e))?;
        sockets.push(s);
    }
    ctrl.expect(state::TEST_START).await?;
    ctrl.expect(state::TEST_RUNNING).await?;
    Ok((ctrl, sockets))
}

/// What the driver opens each stream with: one of the connected sockets, read or
/// written.
fn opener(
    direction: Direction,
    limits: Limits,
    sockets: Vec<TcpStream>,
    drained: Arc<AtomicU64>,
) -> impl FnMut(Arc<AtomicU64>, Arc<crate::net::arrivals::Arrivals>, watch::Receiver<bool>) -> StreamTask
{
    let sockets = Mutex::new(sockets);
    let block = Arc::new(random_block());
    let per_stream_limit = limits
        .max_bytes
        .map(|m| m.div_ceil(u64::from(limits.streams.max(1))))
        .unwrap_or(u64::MAX);
    move |counter, arrivals, stop| -> StreamTask {
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
    }
}

/// The direction's figure, counted at the agent; what crossed the access: for an
/// upload the server's count (or the acknowledged segments when more: it stops reading
/// at TEST_END), for a download what was read and drained.
fn figure(direction: Direction, d: &Driven, theirs: Option<&Results>, drained: u64) -> Figure {
    let (estimate, counting, rates_bps) = driver::agent_estimate(direction, d);
    let carried = match direction {
        Direction::Up => {
            let (segs, mss) = d.arrivals.total();
            let acked = (segs * u64::from(mss)).min(d.app_bytes);
            theirs.map_or(acked, |t| received(t).max(acked))
        }
        _ => d.app_bytes + drained,
    };
    Figure {
        estimate,
        measured_at: MeasuredAt::Agent,
        counting,
        sample_count: d.sampled.app.bins(),
        carried,
        rates_bps,
    }
}

/// The client's results document: each stream's bytes, in iperf3's stream numbering
/// (1, 3, 4, …).
fn client_results(direction: Direction, d: &Driven) -> Results {
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
