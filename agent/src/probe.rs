//! One measurement of one access against one responder: info, idle latency, then each
//! throughput direction with loaded latency alongside, then the verdict. Always ends in
//! a result record; failures are written into its status, never lost.

use crate::arrivals::Arrivals;
use crate::client::{ClientError, StreamStats, Target, UploadChunk, UPLOAD_BLOCK};
use crate::latency::{self, Probe, Train};
use crate::netif::{self, Interface};
use crate::sampler::{self, Decision, Estimate, Sampler, StopRule};
use crate::verdict;
use chrono::Utc;
use sonde_proto::responder::{Info, UploadReport, INFO_PATH, UPLOAD_REPORT_PREFIX};
use sonde_proto::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Everything a probe needs, validated.
#[derive(Debug, Clone)]
pub struct Options {
    /// Responder base URL (`http://host:port`).
    pub responder: url::Url,
    /// Interface to bind to, already checked to exist.
    pub interface: Option<Interface>,
    /// Access kind.
    pub access: AccessKind,
    /// IP-layer targets `(down, up)`, bit/s: the kind's defaults unless configured.
    pub targets: (Option<f64>, Option<f64>),
    /// Parallel TCP streams per direction.
    pub streams: u32,
    /// Cap per direction.
    pub max_duration: Duration,
    /// Directions, in order.
    pub directions: Vec<Direction>,
    /// Idle latency probes to send.
    pub idle_probes: u32,
    /// Gap between idle latency probes.
    pub idle_interval: Duration,
    /// Payload bytes after which each direction stops (a data budget's allowance);
    /// `None`: no limit but the duration cap.
    pub max_bytes: Option<u64>,
}

/// Live progress of a direction, for the terminal.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Direction running.
    pub direction: Direction,
    /// Time since the direction started.
    pub elapsed: Duration,
    /// Rate over the last second, bit/s.
    pub rate_bps: f64,
}

/// Receives progress updates.
pub type ProgressFn = dyn Fn(Progress) + Send + Sync;

/// Runs the probe and returns its record.
pub async fn run(opts: &Options, progress: &ProgressFn) -> ResultRecord {
    let started_at = Utc::now();
    let mut record = empty_record(opts, started_at);
    let measured = if opts.responder.scheme() == crate::iperf3::SCHEME {
        crate::iperf3::measure(opts, &mut record, progress).await
    } else {
        measure(opts, &mut record, progress).await
    };
    match measured {
        Ok(()) => {}
        Err(e) => {
            record.status = Status {
                outcome: Outcome::Failed,
                reason: Some(e.reason),
                message: Some(e.message),
            };
        }
    }
    record.verdict = verdict::judge(
        opts.targets,
        record.access.link_speed_bps,
        record.access.mtu,
        record.download.as_ref(),
        record.upload.as_ref(),
        &mut record.flags,
    );
    record.run.ended_at = Utc::now();
    record
}

/// The record of a run that could not start (e.g. its interface is gone), with why.
pub fn failed(opts: &Options, reason: FailureReason, message: String) -> ResultRecord {
    let mut record = empty_record(opts, Utc::now());
    record.status = Status {
        outcome: Outcome::Failed,
        reason: Some(reason),
        message: Some(message),
    };
    record.verdict = verdict::judge(opts.targets, None, None, None, None, &mut record.flags);
    record
}

fn empty_record(opts: &Options, started_at: chrono::DateTime<Utc>) -> ResultRecord {
    ResultRecord {
        schema_version: SCHEMA_VERSION,
        id: uuid::Uuid::now_v7(),
        agent: AgentInfo {
            id: None,
            version: env!("CARGO_PKG_VERSION").into(),
        },
        site: Site::default(),
        access: Access {
            name: None,
            kind: opts.access,
            interface: opts.interface.as_ref().map(|i| i.name.clone()),
            link_speed_bps: opts.interface.as_ref().and_then(|i| i.link_speed_bps),
            mtu: opts.interface.as_ref().and_then(|i| i.mtu),
        },
        run: Run {
            started_at,
            ended_at: started_at,
            engine: Engine::SondeHttp,
            responder: ResponderRef {
                url: opts.responder.to_string(),
                version: None,
                address: None,
            },
            directions: opts.directions.clone(),
            streams: opts.streams,
            max_duration_s: opts.max_duration.as_secs_f64(),
            interval_s: None,
            cross_traffic_bytes: None,
            cpu_busy_ratio: None,
        },
        download: None,
        upload: None,
        idle_latency: None,
        radio: None,
        flags: Vec::new(),
        verdict: Verdict {
            target_down_bps: None,
            target_up_bps: None,
            tolerance: verdict::TOLERANCE,
            down: VerdictOutcome::Inconclusive,
            up: VerdictOutcome::Inconclusive,
        },
        status: Status {
            outcome: Outcome::Ok,
            reason: None,
            message: None,
        },
        methodology_version: METHODOLOGY_VERSION.into(),
    }
}

/// Checks a responder URL: `http://HOST[:PORT]` for a sonde responder,
/// `iperf3://HOST[:PORT]` for a stock iperf3 server.
pub fn responder_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != crate::iperf3::SCHEME {
        return Err(format!(
            "scheme {:?} is not supported; use http:// (a sonde responder) or iperf3:// (an iperf3 server)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err("the URL has no host".into());
    }
    Ok(url)
}

/// Resolves the responder URL to one address.
pub async fn resolve(url: &url::Url) -> Result<(SocketAddr, String), ClientError> {
    let host = url
        .host_str()
        .ok_or_else(|| ClientError::new(FailureReason::Dns, "the responder URL has no host"))?;
    let port = match url.scheme() {
        crate::iperf3::SCHEME => url.port().unwrap_or(crate::iperf3::DEFAULT_PORT),
        _ => url.port_or_known_default().unwrap_or(80),
    };
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let lookup_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let lookup = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((lookup_host.as_str(), port)),
    )
    .await;
    match lookup {
        Err(_) => Err(ClientError::new(
            FailureReason::Dns,
            format!("resolving {host}: no answer within 5 s"),
        )),
        Ok(Err(e)) => Err(ClientError::new(
            FailureReason::Dns,
            format!("resolving {host}: {e}"),
        )),
        Ok(Ok(mut addrs)) => addrs
            .next()
            .map(|a| (a, host_header))
            .ok_or_else(|| ClientError::new(FailureReason::Dns, format!("{host} has no address"))),
    }
}

async fn measure(
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

    let udp = match info.udp_port {
        Some(port) => {
            let echo_addr = SocketAddr::new(addr.ip(), port);
            match netif::connect_udp(echo_addr, target.interface.as_deref()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the UDP echo socket");
                    None
                }
            }
        }
        None => None,
    };
    let mut problems: Vec<(FailureReason, String)> = Vec::new();
    if let Some(sock) = &udp {
        let (_keep, never) = watch::channel(false);
        let train = Train {
            interval: opts.idle_interval,
            max_count: opts.idle_probes,
        };
        let probes = latency::run(sock, train, Instant::now(), never).await;
        let stats = latency::summarize(&probes);
        if stats.received == 0 && stats.sent > 0 {
            problems.push((
                FailureReason::EchoUnreachable,
                format!("no UDP echo came back from port {}", addr.ip()),
            ));
        } else if stats.received < stats.sent {
            record.flags.push(Flag::LatencyLoss);
        }
        record.idle_latency = Some(stats);
    }

    // Never ask for more than the responder allows; keep a margin for connection setup.
    let cap = Duration::from_millis(info.limits.max_duration_ms.saturating_sub(1000).max(1000));
    let max_duration = opts.max_duration.min(cap);
    let mut outcomes = Vec::new();
    for &direction in &opts.directions {
        let limits = Limits {
            streams: opts.streams,
            max_duration,
            max_bytes: opts.max_bytes,
        };
        let result = run_direction(&target, &info, direction, limits, udp.as_ref(), progress).await;
        if let Ok((t, _)) = &result {
            // Was the responder the limit? Its own CPU over this direction (a
            // responder without the endpoint says nothing).
            let window_ms = (t.duration_s * 1e3) as u64 + 200;
            let load: Result<sonde_proto::responder::Load, _> = target
                .get_json(
                    &format!(
                        "{}?window_ms={window_ms}",
                        sonde_proto::responder::LOAD_PATH
                    ),
                    Duration::from_secs(2),
                )
                .await;
            if load.is_ok_and(|l| l.cpu_busy_max >= sonde_proto::responder::SERVER_LIMITED_CPU)
                && !record.flags.contains(&Flag::ServerLimited)
            {
                record.flags.push(Flag::ServerLimited);
            }
        }
        outcomes.push((direction, result));
    }
    settle(record, problems, outcomes);
    Ok(())
}

/// A direction's figures and its failed streams, or why it has none.
pub(crate) type DirectionOutcome = Result<(Throughput, u32), ClientError>;

/// Writes each direction's outcome into the record: its figures and flags, or its
/// failure; with `problems` met before, the status says what went wrong first.
pub(crate) fn settle(
    record: &mut ResultRecord,
    mut problems: Vec<(FailureReason, String)>,
    outcomes: Vec<(Direction, DirectionOutcome)>,
) {
    let wanted = outcomes.len();
    for (direction, result) in outcomes {
        match result {
            Ok((t, failed_streams)) => {
                if failed_streams > 0 && !record.flags.contains(&Flag::StreamsFailed) {
                    record.flags.push(Flag::StreamsFailed);
                }
                if t.stop_reason != StopReason::Stable && !record.flags.contains(&Flag::Unstable) {
                    record.flags.push(Flag::Unstable);
                }
                match direction {
                    Direction::Up => record.upload = Some(t),
                    _ => record.download = Some(t),
                }
            }
            Err(e) => problems.push((e.reason, format!("{direction:?}: {}", e.message))),
        }
    }
    let got = usize::from(record.download.is_some()) + usize::from(record.upload.is_some());
    if let Some((reason, _)) = problems.first() {
        let message = problems
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        record.status = Status {
            outcome: if got == 0 && wanted > 0 {
                Outcome::Failed
            } else {
                Outcome::Partial
            },
            reason: Some(*reason),
            message: Some(message),
        };
    }
}

/// How much one direction may do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub streams: u32,
    pub max_duration: Duration,
    pub max_bytes: Option<u64>,
}

/// One data stream of a direction, given the direction's byte counter, its TCP-layer
/// arrivals and the stop signal: it moves bytes, counting them, until stopped.
pub(crate) type StreamTask =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<StreamStats, ClientError>> + Send>>;

/// What driving one direction's streams produced.
pub(crate) struct Driven {
    pub sampled: Sampled,
    /// Loaded-latency probes, when the responder echoes UDP.
    pub probes: Option<Vec<Probe>>,
    /// Streams that ended well, and the errors of the others.
    pub stats: Vec<StreamStats>,
    pub errors: Vec<ClientError>,
    /// Payload bytes the application moved.
    pub app_bytes: u64,
    pub arrivals: Arc<Arrivals>,
}

/// Runs one direction on `limits.streams` streams made by `open`, samples it every
/// 100 ms until the stop rule, then turns `stop` true and collects the streams (3 s at
/// most). Engine-neutral: the engines differ only in how a stream moves bytes.
pub(crate) async fn drive(
    direction: Direction,
    limits: Limits,
    udp: Option<&tokio::net::UdpSocket>,
    progress: &ProgressFn,
    stop: (watch::Sender<bool>, watch::Receiver<bool>),
    mut open: impl FnMut(Arc<AtomicU64>, Arc<Arrivals>, watch::Receiver<bool>) -> StreamTask,
) -> Driven {
    let (stop_tx, stop_rx) = stop;
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let alive = Arc::new(AtomicUsize::new(limits.streams as usize));
    let arrivals = Arc::new(Arrivals::new(direction == Direction::Up));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..limits.streams {
        let stream = open(counter.clone(), arrivals.clone(), stop_rx.clone());
        let alive = alive.clone();
        tasks.spawn(async move {
            let r = stream.await;
            alive.fetch_sub(1, Ordering::Relaxed);
            r
        });
    }

    let loaded = async {
        match udp {
            Some(sock) => {
                let train = Train {
                    interval: Duration::from_millis(100),
                    max_count: u32::MAX,
                };
                Some(latency::run(sock, train, start, stop_rx.clone()).await)
            }
            None => None,
        }
    };
    let sampling = sample(
        Counts {
            app: &counter,
            tcp: Some(arrivals.as_ref()),
        },
        &alive,
        start,
        limits.max_duration,
        limits.max_bytes,
        direction,
        progress,
    );
    let (sampled, probes) = tokio::join!(
        async {
            let s = sampling.await;
            let _ = stop_tx.send(true);
            s
        },
        loaded
    );

    let mut stats: Vec<StreamStats> = Vec::new();
    let mut errors: Vec<ClientError> = Vec::new();
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(s)) => stats.push(s),
                Ok(Err(e)) => {
                    tracing::warn!(?direction, error = %e, "a stream failed");
                    errors.push(e)
                }
                Err(e) => errors.push(ClientError::new(FailureReason::Other, e.to_string())),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(3), collect)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    Driven {
        sampled,
        probes,
        stats,
        errors,
        app_bytes: counter.load(Ordering::Relaxed),
        arrivals,
    }
}

/// The figure of a direction counted at the agent: the TCP-layer count when it can
/// be trusted (a download's received segments agreeing with the bytes read; an
/// upload's acknowledged segments), else the application's bytes.
pub(crate) fn agent_estimate(direction: Direction, d: &Driven) -> (Option<Estimate>, Counting) {
    let (segs, mss) = d.arrivals.total();
    let trusted = match direction {
        // Acknowledged can never exceed written: more means segments are not cut to
        // the MSS (loopback), and the count is not bytes.
        Direction::Up => {
            mss > 0
                && segs > 0
                && (segs * u64::from(mss)) as f64 <= d.app_bytes as f64 * (1.0 + FINAL_AGREEMENT)
        }
        _ => segments_agree(segs, mss, d.app_bytes, FINAL_AGREEMENT),
    };
    let tcp = d
        .sampled
        .tcp
        .as_ref()
        .filter(|_| trusted)
        .and_then(|t| t.estimate())
        .map(|e| e.scaled(f64::from(mss)));
    match tcp {
        Some(e) => (Some(e), Counting::TcpSegments),
        None => (d.sampled.app.estimate(), Counting::Application),
    }
}

/// How a direction's figure was taken.
pub(crate) struct Figure {
    pub estimate: Option<Estimate>,
    pub measured_at: MeasuredAt,
    pub counting: Counting,
    pub sample_count: usize,
    /// Payload bytes that crossed the access.
    pub carried: u64,
}

impl Figure {
    /// No figure (the direction carried nothing).
    pub(crate) fn none() -> Figure {
        Figure {
            estimate: None,
            measured_at: MeasuredAt::Agent,
            counting: Counting::Application,
            sample_count: 0,
            carried: 0,
        }
    }
}

/// The direction's record from what its streams did and its figure; an error when no
/// stream carried data or no sample was taken.
pub(crate) fn throughput(
    direction: Direction,
    d: Driven,
    figure: Figure,
    ipv6: bool,
) -> Result<(Throughput, u32), ClientError> {
    if d.stats.is_empty() {
        return Err(d.errors.into_iter().next().unwrap_or_else(|| {
            ClientError::new(FailureReason::StreamError, "no stream carried data")
        }));
    }
    let Some(e) = figure.estimate else {
        return Err(ClientError::new(
            FailureReason::StreamError,
            "the direction ended before its first sample",
        ));
    };
    let infos: Vec<_> = d.stats.iter().filter_map(|s| s.info).collect();
    let sending = direction == Direction::Up;
    let mss = infos.iter().map(|i| i.payload_mss(sending)).max();
    let ratio = match (mss, infos.first()) {
        (Some(mss), Some(i)) => netif::ip_overhead_ratio(mss, i.timestamps, ipv6),
        _ => 1.0,
    };
    let loaded_latency = d.probes.map(|p| latency::summarize(&in_window(&p, &e)));
    let throughput = Throughput {
        direction,
        measured_at: figure.measured_at,
        counting: Some(figure.counting),
        streams: d.stats.iter().filter(|s| s.bytes > 0).count() as u32,
        goodput_bps: e.goodput_bps,
        ip_rate_bps: e.goodput_bps * ratio,
        ip_overhead_ratio: ratio,
        mss_bytes: mss,
        bytes_total: figure.carried,
        bytes_measured: e.bytes_measured,
        duration_s: d.sampled.elapsed.as_secs_f64(),
        measured_duration_s: e.window.as_secs_f64(),
        warmup_trimmed_s: e.window_start.as_secs_f64(),
        samples: SampleSummary {
            interval_s: 0.1,
            count: figure.sample_count as u32,
            used: e.bins_used as u32,
            p10_bps: e.p10_bps,
            p50_bps: e.p50_bps,
            p90_bps: e.p90_bps,
        },
        stop_reason: if e.stable {
            StopReason::Stable
        } else {
            d.sampled.reason
        },
        retransmits: (!infos.is_empty())
            .then(|| infos.iter().map(|i| u64::from(i.total_retrans)).sum()),
        loaded_latency,
    };
    Ok((throughput, d.errors.len() as u32))
}

/// Runs one direction against a sonde responder and returns its figures and the
/// number of streams that failed.
async fn run_direction(
    target: &Target,
    info: &Info,
    direction: Direction,
    limits: Limits,
    udp: Option<&tokio::net::UdpSocket>,
    progress: &ProgressFn,
) -> Result<(Throughput, u32), ClientError> {
    let test_id = uuid::Uuid::now_v7().simple().to_string();
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
                        .download(per_stream_bytes, counter, arrivals, stop)
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
            let bin = Duration::from_millis(report.bin_ms.max(1));
            let rule = StopRule::v1(limits.max_duration);
            let segs: u64 = report.segment_bins.iter().sum();
            // What reached the responder (bytes written but discarded by the reset
            // never left the box).
            let carried = report.bytes.max(segs * u64::from(report.mss));
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
            }
        }
        _ => {
            let (estimate, counting) = agent_estimate(direction, &d);
            Figure {
                estimate,
                measured_at: MeasuredAt::Agent,
                counting,
                sample_count: d.sampled.app.bins(),
                carried: d.app_bytes,
            }
        }
    };
    throughput(direction, d, figure, target.addr.is_ipv6())
}

/// Probes sent inside the measured window, or all of them when fewer than 3 were.
fn in_window(probes: &[Probe], e: &Estimate) -> Vec<Probe> {
    let end = e.window_start + e.window;
    let inside: Vec<Probe> = probes
        .iter()
        .copied()
        .filter(|p| p.sent_at >= e.window_start && p.sent_at <= end)
        .collect();
    if inside.len() >= 3 {
        inside
    } else {
        probes.to_vec()
    }
}

/// The counts a direction is sampled from.
struct Counts<'a> {
    /// Bytes moved as the application saw them.
    app: &'a AtomicU64,
    /// TCP-layer segment count.
    tcp: Option<&'a Arrivals>,
}

/// What sampling a direction produced.
pub(crate) struct Sampled {
    pub app: Sampler,
    pub tcp: Option<Sampler>,
    pub reason: StopReason,
    pub elapsed: Duration,
}

/// Segments × MSS agree with the application's bytes within `tolerance` (relative):
/// the segment count then measures the same payload, without head-of-line re-timing.
fn segments_agree(segs: u64, mss: u32, app_bytes: u64, tolerance: f64) -> bool {
    mss > 0
        && app_bytes > 0
        && ((segs * u64::from(mss)) as f64 / app_bytes as f64 - 1.0).abs() <= tolerance
}

/// Agreement needed while sampling (the application lags by what loss holds back:
/// 2-3 % of the bytes on a 50 ms path with 0.5 % loss).
const LIVE_AGREEMENT: f64 = 0.05;
/// Agreement needed at the end for the segment count to give the figure. Loopback,
/// where segments are not cut to the MSS, disagrees by more than 10 %.
const FINAL_AGREEMENT: f64 = 0.05;

/// Samples the counts every 100 ms until the stop rule, the cap, or the end of every
/// stream. The stop rule follows the TCP-layer count (for a download, while it agrees
/// with the application's bytes), and the application's bytes otherwise.
async fn sample(
    counts: Counts<'_>,
    alive: &AtomicUsize,
    start: Instant,
    max_duration: Duration,
    max_bytes: Option<u64>,
    direction: Direction,
    progress: &ProgressFn,
) -> Sampled {
    let rule = StopRule::v1(max_duration);
    let mut app = Sampler::new(rule.clone());
    let mut tcp = counts.tcp.map(|_| Sampler::new(rule.clone()));
    let mut tick = tokio::time::interval_at(start + rule.interval, rule.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut history: Vec<(Duration, u64)> = Vec::new();
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        let bytes = counts.app.load(Ordering::Relaxed);
        history.push((elapsed, bytes));
        let back = history.len().saturating_sub(11);
        let (t0, b0) = history[back];
        let rate = if elapsed > t0 {
            (bytes - b0) as f64 * 8.0 / (elapsed - t0).as_secs_f64()
        } else {
            0.0
        };
        progress(Progress {
            direction,
            elapsed,
            rate_bps: rate,
        });
        let app_decision = app.push(elapsed, bytes);
        let decision = match (counts.tcp, tcp.as_mut()) {
            (Some(arrivals), Some(tcp)) => {
                let (segs, mss) = arrivals.total();
                tracing::trace!(
                    ?direction,
                    t = elapsed.as_secs_f64(),
                    bytes,
                    segs,
                    mss,
                    "sample"
                );
                let tcp_decision = tcp.push(elapsed, segs);
                // Acknowledged segments trail the bytes written by whatever sits in the
                // send buffers, so for an upload they are not compared, only required.
                let usable = if direction == Direction::Up {
                    mss > 0 && segs > 0
                } else {
                    segments_agree(segs, mss, bytes, LIVE_AGREEMENT)
                };
                if usable {
                    tcp_decision
                } else {
                    app_decision
                }
            }
            _ => {
                tracing::trace!(?direction, t = elapsed.as_secs_f64(), bytes, "sample");
                app_decision
            }
        };
        // A data budget's allowance is spent: stop here (the figure is the window so far).
        let decision = match decision {
            Decision::Continue if max_bytes.is_some_and(|m| bytes >= m) => {
                Decision::Stop(StopReason::ByteBudget)
            }
            d => d,
        };
        if let Decision::Stop(reason) = decision {
            return Sampled {
                app,
                tcp,
                reason,
                elapsed,
            };
        }
        // Every stream already ended: all failed, or the responder cut them.
        if alive.load(Ordering::Relaxed) == 0 {
            return Sampled {
                app,
                tcp,
                reason: StopReason::Error,
                elapsed,
            };
        }
    }
}
