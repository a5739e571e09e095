//! The engine-neutral direction driver: opens a direction's streams (each engine says
//! how a stream moves bytes), samples them every 100 ms until the stop rule, runs the
//! loaded-latency train alongside, and turns what happened into the direction's
//! figures. Every engine uses it; it knows no engine.

use super::options::{Progress, ProgressFn};
use crate::net::arrivals::Arrivals;
use crate::net::echo::{self as train, Train};
use crate::net::netif;
use crate::net::target::{ClientError, StreamStats};
use sonde_method::latency::{summarize, Probe};
use sonde_method::sampler::{Decision, Estimate, Sampler, StopRule};
use sonde_proto::*;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

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
    /// Each stream's cumulative application bytes at every sample.
    pub per_stream: Vec<Vec<u64>>,
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
    // One counter per stream: the direction's bytes are their sum, and each stream's
    // bins are kept for the test's picture.
    let counters: Vec<Arc<AtomicU64>> = (0..limits.streams)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let start = Instant::now();
    let alive = Arc::new(AtomicUsize::new(limits.streams as usize));
    let arrivals = Arc::new(Arrivals::new(direction == Direction::Up));
    let mut tasks = tokio::task::JoinSet::new();
    for counter in &counters {
        let stream = open(counter.clone(), arrivals.clone(), stop_rx.clone());
        let alive = alive.clone();
        tasks.spawn(async move {
            let r = stream.await;
            alive.fetch_sub(1, Ordering::Relaxed);
            r
        });
    }

    let loaded = loaded_train(udp, start, stop_rx.clone());
    let sampling = sample(
        Counts {
            app: &counters,
            tcp: Some(arrivals.as_ref()),
        },
        &alive,
        start,
        limits.max_duration,
        limits.max_bytes,
        direction,
        progress,
    );
    let (mut sampled, probes) = tokio::join!(
        async {
            let s = sampling.await;
            let _ = stop_tx.send(true);
            s
        },
        loaded
    );

    let (stats, errors) = collect(tasks, direction).await;
    let per_stream = std::mem::take(&mut sampled.per_stream);
    Driven {
        sampled,
        probes,
        stats,
        errors,
        app_bytes: total(&counters),
        arrivals,
        per_stream,
    }
}

/// The loaded-latency train, a probe every 100 ms until the stop, when the responder
/// echoes UDP.
async fn loaded_train(
    udp: Option<&tokio::net::UdpSocket>,
    start: Instant,
    stop: watch::Receiver<bool>,
) -> Option<Vec<Probe>> {
    let train = Train {
        interval: Duration::from_millis(100),
        max_count: u32::MAX,
    };
    Some(train::run(udp?, train, start, stop).await)
}

/// The streams' outcomes once the direction stopped (3 s at most; the rest aborted).
async fn collect(
    mut tasks: tokio::task::JoinSet<Result<StreamStats, ClientError>>,
    direction: Direction,
) -> (Vec<StreamStats>, Vec<ClientError>) {
    let mut stats: Vec<StreamStats> = Vec::new();
    let mut errors: Vec<ClientError> = Vec::new();
    let collecting = async {
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
    if tokio::time::timeout(Duration::from_secs(3), collecting)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    (stats, errors)
}

/// The figure of a direction counted at the agent: the TCP-layer count when it can
/// be trusted (a download's received segments agreeing with the bytes read; an
/// upload's acknowledged segments), else the application's bytes; with the rate of
/// every bin of that count.
pub(crate) fn agent_estimate(
    direction: Direction,
    d: &Driven,
) -> (Option<Estimate>, Counting, Vec<f64>) {
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
    let tcp = d.sampled.tcp.as_ref().filter(|_| trusted).and_then(|t| {
        let e = t.estimate()?.scaled(f64::from(mss));
        Some((e, t.bin_rates(f64::from(mss))))
    });
    match tcp {
        Some((e, rates)) => (Some(e), Counting::TcpSegments, rates),
        None => (
            d.sampled.app.estimate(),
            Counting::Application,
            d.sampled.app.bin_rates(1.0),
        ),
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
    /// Each bin's rate by the count the figure was taken from, bit/s.
    pub rates_bps: Vec<f64>,
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
            rates_bps: Vec::new(),
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
    let loaded_latency = d.probes.as_ref().map(|p| summarize(&in_window(p, &e)));
    let series = series(&figure.rates_bps, &d.per_stream, d.probes.as_deref());
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
        series: Some(series),
    };
    Ok((throughput, d.errors.len() as u32))
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

/// Bins a record keeps of all streams together at most (5 s of 8 streams): beyond, only the
/// direction's bins are kept, so a record stays far below its 64 KiB bound.
const STREAM_BINS_KEPT: usize = 400;
/// Bins and probes a record keeps of a direction at most (5 minutes).
const BINS_KEPT: usize = 3_000;

/// The direction over time for its picture: the figure's bins, each stream's
/// application bins, and the loaded-latency probes, within the record's bounds.
fn series(rates: &[f64], per_stream: &[Vec<u64>], probes: Option<&[Probe]>) -> Series {
    let micro = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e6;
    let bins = |cumulative: &[u64]| -> Vec<u64> {
        std::iter::once(&0)
            .chain(cumulative)
            .zip(cumulative)
            .map(|(a, b)| b.saturating_sub(*a) * 80)
            .take(BINS_KEPT)
            .collect()
    };
    let kept = per_stream.iter().map(Vec::len).sum::<usize>() <= STREAM_BINS_KEPT;
    let probes = probes.unwrap_or_default();
    Series {
        interval_s: 0.1,
        rates_bps: rates
            .iter()
            .take(BINS_KEPT)
            .map(|r| r.round() as u64)
            .collect(),
        stream_rates_bps: if kept && per_stream.len() > 1 {
            per_stream.iter().map(|s| bins(s)).collect()
        } else {
            Vec::new()
        },
        rtt_s: probes
            .iter()
            .filter_map(|p| Some([micro(p.sent_at), micro(p.rtt?)]))
            .take(BINS_KEPT)
            .collect(),
        lost_at_s: probes
            .iter()
            .filter(|p| p.rtt.is_none())
            .map(|p| micro(p.sent_at))
            .take(BINS_KEPT)
            .collect(),
    }
}

/// The sum of the streams' counters.
fn total(counters: &[Arc<AtomicU64>]) -> u64 {
    counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// The counts a direction is sampled from.
struct Counts<'a> {
    /// Bytes moved as the application saw them, per stream.
    app: &'a [Arc<AtomicU64>],
    /// TCP-layer segment count.
    tcp: Option<&'a Arrivals>,
}

/// What sampling a direction produced.
pub(crate) struct Sampled {
    pub app: Sampler,
    pub tcp: Option<Sampler>,
    pub reason: StopReason,
    pub elapsed: Duration,
    /// Each stream's cumulative bytes at every sample.
    pub per_stream: Vec<Vec<u64>>,
}

/// Segments × MSS agree with the application's bytes within `tolerance` (relative):
/// the segment count then measures the same payload, without head-of-line re-timing.
pub(crate) fn segments_agree(segs: u64, mss: u32, app_bytes: u64, tolerance: f64) -> bool {
    mss > 0
        && app_bytes > 0
        && ((segs * u64::from(mss)) as f64 / app_bytes as f64 - 1.0).abs() <= tolerance
}

/// Agreement needed while sampling (the application lags by what loss holds back:
/// 2-3 % of the bytes on a 50 ms path with 0.5 % loss).
const LIVE_AGREEMENT: f64 = 0.05;
/// Agreement needed at the end for the segment count to give the figure. Loopback,
/// where segments are not cut to the MSS, disagrees by more than 10 %.
pub(crate) const FINAL_AGREEMENT: f64 = 0.05;

/// The rate over the last second of `history` (elapsed, cumulative bytes), bit/s.
fn last_second(history: &[(Duration, u64)]) -> f64 {
    let Some(&(elapsed, bytes)) = history.last() else {
        return 0.0;
    };
    let (t0, b0) = history[history.len().saturating_sub(11)];
    if elapsed > t0 {
        (bytes - b0) as f64 * 8.0 / (elapsed - t0).as_secs_f64()
    } else {
        0.0
    }
}

/// The TCP-layer count's decision when it can be used, else the application's.
fn tcp_or_app(
    direction: Direction,
    arrivals: &Arrivals,
    tcp: &mut Sampler,
    (elapsed, bytes): (Duration, u64),
    app_decision: Decision,
) -> Decision {
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
    // Acknowledged segments trail the bytes written by whatever sits in the send
    // buffers, so for an upload they are not compared, only required.
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
    let mut per_stream: Vec<Vec<u64>> = vec![Vec::new(); counts.app.len()];
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        for (kept, c) in per_stream.iter_mut().zip(counts.app) {
            kept.push(c.load(Ordering::Relaxed));
        }
        let bytes = per_stream.iter().filter_map(|s| s.last()).sum();
        history.push((elapsed, bytes));
        progress(Progress {
            direction,
            elapsed,
            rate_bps: last_second(&history),
        });
        let app_decision = app.push(elapsed, bytes);
        let decision = match (counts.tcp, tcp.as_mut()) {
            (Some(arrivals), Some(tcp)) => {
                tcp_or_app(direction, arrivals, tcp, (elapsed, bytes), app_decision)
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
                per_stream,
            };
        }
        // Every stream already ended: all failed, or the responder cut them.
        if alive.load(Ordering::Relaxed) == 0 {
            return Sampled {
                app,
                tcp,
                reason: StopReason::Error,
                elapsed,
                per_stream,
            };
        }
    }
}
