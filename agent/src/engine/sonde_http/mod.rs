//! The sonde engine: HTTP/1.1 against a `sonde-responder` ([`client`]), with its UDP
//! echo for idle and loaded latency, and the responder's own count of an upload.

pub mod client;

use super::driver::{
    agent_estimate, drive, segments_agree, throughput, Figure, Limits, StreamTask, FINAL_AGREEMENT,
};
use super::options::{Options, ProgressFn};
use super::record::settle;
use crate::net::echo::{self as train, Train};
use crate::net::netif;
use crate::net::target::{resolve, ClientError, Target};
use client::{UploadChunk, UPLOAD_BLOCK};
use sonde_method::latency::summarize;
use sonde_method::sampler::{self, StopRule};
use sonde_proto::responder::{Info, UploadReport, INFO_PATH, UPLOAD_REPORT_PREFIX};
use sonde_proto::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Measures `opts` against the sonde responder its URL names, filling `record`.
pub(crate) async fn measure(
    opts: &Options,
    record: &mut ResultRecord,
    progress: &ProgressFn,
) -> Result<(), ClientError> {
    let (addr, host) = resolve(&opts.responder).await?;
    record.run.responder.address = Some(addr.to_string());
    let target = Target {
        addr,
        host,
        interface: opts.interface.as_ref().map(|i| i.name.clone()),
    };
    let info: Info = target.get_json(INFO_PATH, Duration::from_secs(8)).await?;
    if info.service != "sonde-responder" {
        return Err(ClientError::new(
            FailureReason::ResponderError,
            format!(
                "{} is not a sonde responder ({})",
                opts.responder, info.service
            ),
        ));
    }
    record.run.responder.version = Some(info.version.clone());
    tracing::debug!(?info, "responder info");
    let udp = echo_socket(&target, &info).await;
    let mut problems: Vec<(FailureReason, String)> = Vec::new();
    if let Some(sock) = &udp {
        problems.extend(idle_latency(sock, opts, record).await);
    }
    // Never ask for more than the responder allows; keep a margin for connection setup.
    let cap = Duration::from_millis(info.limits.max_duration_ms.saturating_sub(1000).max(1000));
    let limits = Limits {
        streams: opts.streams,
        max_duration: opts.max_duration.min(cap),
        max_bytes: opts.max_bytes,
    };
    let mut outcomes = Vec::new();
    for &direction in &opts.directions {
        let test_id = uuid::Uuid::now_v7().simple().to_string();
        let result = run_direction(
            &target,
            &info,
            (direction, &test_id),
            limits,
            udp.as_ref(),
            progress,
        )
        .await;
        if let Ok((t, _)) = &result {
            if server_limited(&target, t).await && !record.flags.contains(&Flag::ServerLimited) {
                record.flags.push(Flag::ServerLimited);
            }
            if contended(&target, &test_id).await && !record.flags.contains(&Flag::ServerContended)
            {
                record.flags.push(Flag::ServerContended);
            }
        }
        outcomes.push((direction, result));
    }
    settle(record, problems, outcomes);
    Ok(())
}

/// The responder's UDP echo, when it has one and the socket opens.
async fn echo_socket(target: &Target, info: &Info) -> Option<tokio::net::UdpSocket> {
    let echo_addr = SocketAddr::new(target.addr.ip(), info.udp_port?);
    match netif::connect_udp(echo_addr, target.interface.as_deref()).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the UDP echo socket");
            None
        }
    }
}

/// The idle train: its figures into `record`, and the problem when nothing came back.
async fn idle_latency(
    sock: &tokio::net::UdpSocket,
    opts: &Options,
    record: &mut ResultRecord,
) -> Option<(FailureReason, String)> {
    let (_keep, never) = watch::channel(false);
    let train = Train {
        interval: opts.idle_interval,
        max_count: opts.idle_probes,
    };
    let probes = train::run(sock, train, Instant::now(), never).await;
    let stats = summarize(&probes);
    let problem = if stats.received == 0 && stats.sent > 0 {
        let peer = sock
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        Some((
            FailureReason::EchoUnreachable,
            format!("no UDP echo came back from port {peer}"),
        ))
    } else {
        if stats.received < stats.sent {
            record.flags.push(Flag::LatencyLoss);
        }
        None
    };
    record.idle_latency = Some(stats);
    problem
}

/// Whether the responder was the limit: its own CPU over the direction `t` (a
/// responder without the endpoint says nothing).
async fn server_limited(target: &Target, t: &Throughput) -> bool {
    let window_ms = (t.duration_s * 1e3) as u64 + 200;
    let path = format!(
        "{}?window_ms={window_ms}",
        sonde_proto::responder::LOAD_PATH
    );
    let load: Result<sonde_proto::responder::Load, _> =
        target.get_json(&path, Duration::from_secs(2)).await;
    load.is_ok_and(|l| l.cpu_busy_max >= sonde_proto::responder::SERVER_LIMITED_CPU)
}

/// Whether another test ran on the responder in the same direction while test `id`
/// did (a responder without the endpoint says nothing).
async fn contended(target: &Target, id: &str) -> bool {
    let path = format!("{}{id}", sonde_proto::responder::TESTS_PREFIX);
    let report: Result<sonde_proto::responder::TestReport, _> =
        target.get_json(&path, Duration::from_secs(2)).await;
    report.is_ok_and(|r| r.overlapped_same_direction > 0)
}

/// Runs one direction (and its test id) against a sonde responder and returns its
/// figures and the number of streams that failed.
async fn run_direction(
    target: &Target,
    info: &Info,
    (direction, test_id): (Direction, &str),
    limits: Limits,
    udp: Option<&tokio::net::UdpSocket>,
    progress: &ProgressFn,
) -> Result<(Throughput, u32), ClientError> {
    let test_id = test_id.to_string();
    let chunk = Arc::new(UploadChunk::new(UPLOAD_BLOCK));
    // Under a data budget each stream carries its share of the allowance at most: the
    // responder stops sending a download there, the agent stops writing an upload.
    let per_stream_bytes = match limits.max_bytes {
        Some(m) => info
            .limits
            .max_bytes
            .min(m.div_ceil(u64::from(limits.streams.max(1)))),
        None => info.limits.max_bytes,
    };
    let open = |counter, arrivals, stop| -> StreamTask {
        let (target, test_id, chunk) = (target.clone(), test_id.clone(), chunk.clone());
        Box::pin(async move {
            match direction {
                Direction::Up => {
                    target
                        .upload(&test_id, chunk, per_stream_bytes, counter, arrivals, stop)
                        .await
                }
                _ => {
                    target
                        .download(&test_id, per_stream_bytes, counter, arrivals, stop)
                        .await
                }
            }
        })
    };
    let d = drive(
        direction,
        limits,
        udp,
        progress,
        watch::channel(false),
        open,
    )
    .await;
    if d.stats.is_empty() {
        return throughput(direction, d, Figure::none(), target.addr.is_ipv6());
    }
    let figure = match direction {
        Direction::Up => {
            // Measured where the payload arrives: the responder's report of this test.
            let path = format!("{UPLOAD_REPORT_PREFIX}{test_id}");
            let report: UploadReport = target.get_json(&path, Duration::from_secs(8)).await?;
            tracing::trace!(bins = ?report.bins, segment_bins = ?report.segment_bins, mss = report.mss, "upload report");
            responder_figure(&report, limits.max_duration, d.app_bytes)
        }
        _ => {
            let (estimate, counting, rates_bps) = agent_estimate(direction, &d);
            Figure {
                estimate,
                measured_at: MeasuredAt::Agent,
                counting,
                sample_count: d.sampled.app.bins(),
                carried: d.app_bytes,
                rates_bps,
            }
        }
    };
    throughput(direction, d, figure, target.addr.is_ipv6())
}

/// An upload's figure from the responder's report of it: its TCP-layer segment bins
/// when they agree with the bytes it read, else those bytes (§1.3). `written`: the
/// payload bytes the agent wrote.
fn responder_figure(report: &UploadReport, max_duration: Duration, written: u64) -> Figure {
    let bin = Duration::from_millis(report.bin_ms.max(1));
    let rule = StopRule::v1(max_duration);
    let segs: u64 = report.segment_bins.iter().sum();
    // What crossed the access: at least what the responder read, and what arrived at
    // its TCP layer unread when the test was cut. Segments × MSS counts every short
    // segment as a full one (many, on a loaded box), so it is only an upper bound, and
    // nothing crossed that the agent did not write.
    let carried = (segs * u64::from(report.mss))
        .min(written)
        .max(report.bytes);
    let by_segments = segments_agree(segs, report.mss, report.bytes, FINAL_AGREEMENT);
    let (bins, counting, scale) = if by_segments {
        (
            &report.segment_bins,
            Counting::TcpSegments,
            f64::from(report.mss),
        )
    } else {
        (&report.bins, Counting::Application, 1.0)
    };
    let s = sampler::from_bins(rule, bin, bins);
    Figure {
        estimate: s.estimate().map(|e| e.scaled(scale)),
        measured_at: MeasuredAt::Responder,
        counting,
        sample_count: s.bins(),
        carried,
        rates_bps: s.bin_rates(scale),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(bytes: u64, segments: u64, mss: u32) -> UploadReport {
        UploadReport {
            test: "t".into(),
            streams: 4,
            bytes,
            bin_ms: 100,
            bins: vec![bytes / 10; 10],
            span_ns: 1_000_000_000,
            failed_streams: 4,
            segment_bins: vec![segments / 10; 10],
            mss,
        }
    }

    #[test]
    fn carried_bytes_never_exceed_what_the_agent_wrote() {
        // A loaded box sends short segments: 2,200 segments of up to 65,483 bytes is
        // 144 MB by count, for 125 MB written (a budget test once read 139.9 MB).
        let r = report(124_000_000, 2_200, 65_483);
        let f = responder_figure(&r, Duration::from_secs(10), 125_000_000);
        assert_eq!(f.carried, 125_000_000);
        // Bytes that arrived unread at the cut count; the responder's read is a floor.
        let r = report(100_000_000, 1_600, 65_483);
        let f = responder_figure(&r, Duration::from_secs(10), 125_000_000);
        assert_eq!(f.carried, 1_600 * 65_483);
        let f = responder_figure(&r, Duration::from_secs(10), 90_000_000);
        assert_eq!(f.carried, 100_000_000);
    }
}
