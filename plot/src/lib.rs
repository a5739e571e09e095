//! The picture of one test: an SVG drawn from a result record alone, so the agent
//! (`sonde-agent probe --plot`) and the collector (`/api/v1/results/{id}/plot.svg`)
//! draw the same picture of the same bytes.
//!
//! For each direction that ran, two panels on one time axis from the direction's
//! start: the IP-layer rate of every 100 ms bin (the count the figure was taken from,
//! × the record's IP overhead ratio) with each stream's bins beneath it, the measured
//! window shaded, the figure, the target and the stop point; then the loaded round
//! trips with the idle median beside them and the lost probes marked. The header
//! names the test: box, access, responder, time and methodology version. The axes can
//! be fixed (`Axes`) so pictures of several tests compare.
//! Self-contained: no script, no font, no external reference.

mod draw;

use draw::{Frame, Side, Svg};
use sonde_proto::{Direction, ResultRecord, Throughput};
use std::fmt::Write as _;

pub use draw::{esc, ticks};

/// Fixed axes, for pictures that compare; each `None` is fitted to the test.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Axes {
    /// Top of the rate axis, bit/s.
    pub max_rate_bps: Option<f64>,
    /// Top of the round-trip axis, seconds.
    pub max_rtt_s: Option<f64>,
    /// End of the time axis, seconds.
    pub max_time_s: Option<f64>,
}

/// Width of the picture, px.
const WIDTH: f64 = 960.0;
/// Height of the header naming the test, px.
const HEADER: f64 = 64.0;
/// Height of a rate panel and of a latency panel, px.
const RATE_H: f64 = 220.0;
const RTT_H: f64 = 120.0;
/// Space around a direction's two panels (axis labels, titles), px.
const GAP: f64 = 56.0;
/// Colours: the direction's bins, the streams, the target, the window, latency.
const BINS: &str = "#1f5fa8";
const STREAM: &str = "#9bb9de";
const TARGET: &str = "#b3261e";
const WINDOW: &str = "#e8f0e0";
const RTT: &str = "#7a4b00";

/// The picture of `record`, an SVG document.
pub fn svg(record: &ResultRecord, axes: Axes) -> String {
    let directions: Vec<&Throughput> = [&record.download, &record.upload]
        .into_iter()
        .flatten()
        .collect();
    let height = HEADER + directions.len().max(1) as f64 * (RATE_H + RTT_H + 2.0 * GAP) + 8.0;
    let mut svg = Svg::new(WIDTH, height);
    header(&mut svg, record);
    if directions.is_empty() {
        let why = record
            .status
            .message
            .as_deref()
            .unwrap_or("no direction ran");
        svg.text(
            24.0,
            HEADER + 40.0,
            "start",
            14.0,
            &format!("No figure: {why}"),
        );
    }
    let time_max = axes.max_time_s.unwrap_or_else(|| {
        directions
            .iter()
            .map(|t| t.duration_s)
            .fold(record.run.max_duration_s, f64::max)
    });
    for (i, t) in directions.iter().enumerate() {
        let top = HEADER + i as f64 * (RATE_H + RTT_H + 2.0 * GAP) + 24.0;
        let target = match t.direction {
            Direction::Up => record.verdict.target_up_bps,
            _ => record.verdict.target_down_bps,
        };
        rate_panel(&mut svg, t, target, axes.max_rate_bps, (top, time_max));
        let idle = record.idle_latency.as_ref().and_then(|l| l.median_s);
        let rtt_top = top + RATE_H + GAP;
        rtt_panel(&mut svg, t, idle, axes.max_rtt_s, (rtt_top, time_max));
    }
    svg.finish()
}

/// The test's identity across the top.
fn header(svg: &mut Svg, r: &ResultRecord) {
    let who = r.agent.id.as_deref().unwrap_or("probe");
    let place = [r.site.quartier.as_deref(), r.site.building.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
    let access = format!(
        "{} ({}{})",
        r.access.name.as_deref().unwrap_or("access"),
        r.access.kind.as_str(),
        r.access
            .interface
            .as_deref()
            .map(|i| format!(", {i}"))
            .unwrap_or_default()
    );
    let mut line = format!("{who} · {access}");
    if !place.is_empty() {
        let _ = write!(line, " · {place}");
    }
    svg.text(24.0, 26.0, "start", 15.0, &line);
    let detail = format!(
        "{} · {} · {} · {} · methodology {} · {}",
        r.run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        r.run.engine.as_str(),
        r.run.responder.url,
        r.status.outcome.as_str(),
        r.methodology_version,
        r.id
    );
    svg.text(24.0, 48.0, "start", 11.0, &detail);
}

/// A direction's rate panel: every stream's bins, the direction's bins, the measured
/// window, the figure, the target and the stop point.
fn rate_panel(
    svg: &mut Svg,
    t: &Throughput,
    target: Option<f64>,
    max_rate: Option<f64>,
    (top, time_max): (f64, f64),
) {
    let series = t.series.clone().unwrap_or_default();
    let scale = t.ip_overhead_ratio.max(1.0);
    let bins: Vec<f64> = series.rates_bps.iter().map(|r| *r as f64 * scale).collect();
    let highest = bins
        .iter()
        .copied()
        .chain(target)
        .fold(t.ip_rate_bps, f64::max);
    let f = Frame::new(
        (72.0, top, WIDTH - 96.0, RATE_H),
        time_max,
        max_rate.unwrap_or(highest * 1.1),
    );
    let title = match t.direction {
        Direction::Up => "Upload",
        _ => "Download",
    };
    svg.text(
        72.0,
        top - 8.0,
        "start",
        13.0,
        &format!(
            "{title} · {} · {} stream(s) · measured at the {} · stop: {}",
            rate(t.ip_rate_bps),
            t.streams,
            t.measured_at.as_str(),
            t.stop_reason.as_str()
        ),
    );
    let w0 = t.warmup_trimmed_s;
    svg.rect(&f, (w0, w0 + t.measured_duration_s), WINDOW);
    svg.axes(&f, rate, "s");
    let step = series.interval_s.max(0.001);
    for s in &series.stream_rates_bps {
        let pts = s.iter().map(|r| *r as f64 * scale);
        svg.steps(&f, step, pts, STREAM, 1.0);
    }
    svg.steps(&f, step, bins.into_iter(), BINS, 2.0);
    let figure = format!("figure {}", rate(t.ip_rate_bps));
    svg.hline(&f, t.ip_rate_bps, (BINS, "4 3"), (&figure, Side::Right));
    if let Some(target) = target {
        let label = format!("target {}", rate(target));
        svg.hline(&f, target, (TARGET, "8 4"), (&label, Side::Left));
    }
    svg.vline(
        &f,
        t.duration_s,
        "#333",
        &format!("stop ({})", t.stop_reason.as_str()),
    );
}

/// A direction's round trips under load, the idle median and the lost probes.
fn rtt_panel(
    svg: &mut Svg,
    t: &Throughput,
    idle: Option<f64>,
    max_rtt: Option<f64>,
    (top, time_max): (f64, f64),
) {
    let series = t.series.clone().unwrap_or_default();
    let highest = series
        .rtt_s
        .iter()
        .map(|p| p[1])
        .chain(idle)
        .fold(0.0, f64::max);
    let f = Frame::new(
        (72.0, top, WIDTH - 96.0, RTT_H),
        time_max,
        max_rtt.unwrap_or(highest * 1.2).max(0.001),
    );
    // The figures are over the measured window; the dots are every probe of the test.
    let loaded = t.loaded_latency.as_ref();
    let drawn = format!(
        "drawn: {} echoes, {} lost",
        series.rtt_s.len(),
        series.lost_at_s.len()
    );
    let summary = match loaded.and_then(|l| l.median_s) {
        Some(m) => format!(
            "Round trip under load · window median {}, {} lost of {} · {drawn}",
            ms(m),
            loaded.map_or(0, |l| l.sent - l.received),
            loaded.map_or(0, |l| l.sent)
        ),
        None => format!("Round trip under load · no echo in the window · {drawn}"),
    };
    svg.text(72.0, top - 8.0, "start", 12.0, &summary);
    svg.axes(&f, ms, "s");
    svg.dots(&f, &series.rtt_s, RTT);
    svg.crosses(&f, &series.lost_at_s, TARGET);
    if let Some(idle) = idle {
        let label = format!("idle median {}", ms(idle));
        svg.hline(&f, idle, ("#2e7d32", "2 3"), (&label, Side::Right));
    }
}

/// A rate for a label: `940 Mb/s`, `1.10 Gb/s`.
pub fn rate(bps: f64) -> String {
    if bps == 0.0 {
        return "0".into();
    }
    let (v, unit) = if bps >= 1e9 {
        (bps / 1e9, "Gb/s")
    } else if bps >= 1e6 {
        (bps / 1e6, "Mb/s")
    } else if bps >= 1e3 {
        (bps / 1e3, "kb/s")
    } else {
        (bps, "b/s")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

/// A duration in seconds as milliseconds for a label.
fn ms(s: f64) -> String {
    if s == 0.0 {
        return "0".into();
    }
    let v = s * 1e3;
    let digits = if v >= 10.0 { 0 } else { 1 };
    format!("{v:.digits$} ms")
}

#[cfg(test)]
mod tests;
