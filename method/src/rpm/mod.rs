//! Responsiveness under working conditions (draft-ietf-ippm-responsiveness-09) as pure
//! code: the interval rule that adds load until goodput is stable, the trimmed means of
//! the probes in the moving window, the RPM formula, the stability of both, the grade
//! and the confidence (docs/METHODOLOGY.md §11). Time is passed in; the agent's
//! `engine/rpm/` moves the bytes and times the probes.

use sonde_proto::{ForeignProbes, RpmConfidence, RpmGrade, SelfProbes};
use std::time::Duration;

/// The method and the draft version it follows, as records name it.
pub const METHOD: &str = "draft-ietf-ippm-responsiveness-09";

/// The draft's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Interval duration (ID).
    pub interval: Duration,
    /// Moving average distance (MAD): intervals in a moving window.
    pub mad: usize,
    /// Standard deviation tolerance (SDT), relative.
    pub sdt: f64,
    /// Trimmed mean percentile (TMP): values above it are left out.
    pub trim: f64,
    /// Maximum load-generating connections (MNP).
    pub max_connections: usize,
    /// Maximum test duration per direction (MPS).
    pub max_duration: Duration,
}

impl Rule {
    /// The draft's defaults: 1 s intervals, a window of 4, 5 %, the 95th percentile,
    /// 16 connections, 20 s.
    pub fn draft() -> Rule {
        Rule {
            interval: Duration::from_secs(1),
            mad: 4,
            sdt: 0.05,
            trim: 0.95,
            max_connections: 16,
            max_duration: Duration::from_secs(20),
        }
    }
}

/// A probe on a new connection: its TCP handshake, its TLS handshake per TLS round
/// trip, and its HTTP GET (request sent to last byte received).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForeignProbe {
    /// When it started, from the direction's start.
    pub at: Duration,
    /// TCP handshake.
    pub tcp: Duration,
    /// TLS handshake, divided by the round trips the TLS version takes.
    pub tls: Duration,
    /// HTTP GET of the small object.
    pub http: Duration,
}

/// A probe on a load-generating connection: an HTTP GET of the small object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelfProbe {
    /// When it started, from the direction's start.
    pub at: Duration,
    /// Request sent to last byte received.
    pub http: Duration,
}

/// What to do after an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Open one more load-generating connection.
    AddConnection,
    /// Keep the load as it is.
    Keep,
    /// Goodput and responsiveness are both stable: stop.
    Done,
}

/// The responsiveness of a window: the figure and what it stands on.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Round trips per minute.
    pub rpm: f64,
    /// The foreign probes' trimmed means.
    pub foreign: ForeignProbes,
    /// The self probes' trimmed mean.
    pub self_probes: SelfProbes,
}

/// One direction's test, interval by interval.
#[derive(Debug, Clone)]
pub struct WorkingConditions {
    rule: Rule,
    /// Cumulative bytes at the end of each interval.
    bytes: Vec<u64>,
    /// Moving average aggregate goodput at each interval, bit/s.
    goodput: Vec<f64>,
    /// Responsiveness of each interval's window, when it had probes of both kinds.
    windows: Vec<Option<Window>>,
    goodput_stable: Option<f64>,
    rpm_stable: Option<Window>,
}

/// A direction's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The reported window: the one where responsiveness became stable, else the
    /// last with probes.
    pub window: Window,
    /// Goodput at saturation, else the last moving average, bit/s.
    pub goodput_bps: f64,
    /// How far the test got.
    pub confidence: RpmConfidence,
}

impl WorkingConditions {
    /// A test under `rule`.
    pub fn new(rule: Rule) -> Self {
        WorkingConditions {
            rule,
            bytes: Vec::new(),
            goodput: Vec::new(),
            windows: Vec::new(),
            goodput_stable: None,
            rpm_stable: None,
        }
    }

    /// The end of an interval: the load's cumulative bytes, every probe so far, the
    /// time since the start and the connections open. Says what to do next.
    pub fn interval(
        &mut self,
        cumulative_bytes: u64,
        (foreign, selfp): (&[ForeignProbe], &[SelfProbe]),
        at: Duration,
        connections: usize,
    ) -> Step {
        let mad = self.rule.mad.max(1);
        self.bytes.push(cumulative_bytes);
        // Moving average aggregate goodput: the bytes of the last MAD intervals over
        // their duration.
        let n = self.bytes.len();
        let first = n.saturating_sub(mad);
        let before = if first == 0 { 0 } else { self.bytes[first - 1] };
        let span = self.rule.interval.as_secs_f64() * (n - first) as f64;
        let average = (cumulative_bytes.saturating_sub(before)) as f64 * 8.0 / span;
        self.goodput.push(average);
        if self.goodput_stable.is_none() && stable(&self.goodput, mad, self.rule.sdt) {
            self.goodput_stable = Some(average);
        }
        let from = at.saturating_sub(self.rule.interval * mad as u32);
        let window = responsiveness(foreign, selfp, (from, at), self.rule.trim);
        self.windows.push(window);
        // By the draft, responsiveness is judged once goodput is saturated.
        if self.goodput_stable.is_some() && self.rpm_stable.is_none() {
            let recent = &self.windows[self.windows.len().saturating_sub(mad)..];
            let rpms: Vec<f64> = recent.iter().flatten().map(|w| w.rpm).collect();
            if rpms.len() == mad && stable(&rpms, mad, self.rule.sdt) {
                self.rpm_stable = self.windows.last().cloned().flatten();
            }
        }
        if self.goodput_stable.is_some() && self.rpm_stable.is_some() {
            Step::Done
        } else if connections < self.rule.max_connections {
            // By the draft, one more at every interval, saturated or not.
            Step::AddConnection
        } else {
            Step::Keep
        }
    }

    /// The outcome, once the test stopped (stable, or at the time limit); `None` when
    /// no window had probes of both kinds.
    pub fn outcome(&self) -> Option<Outcome> {
        let window = self
            .rpm_stable
            .clone()
            .or_else(|| self.windows.iter().rev().flatten().next().cloned())?;
        let confidence = match (self.goodput_stable.is_some(), self.rpm_stable.is_some()) {
            (true, true) => RpmConfidence::High,
            (false, false) => RpmConfidence::Low,
            _ => RpmConfidence::Medium,
        };
        Some(Outcome {
            window,
            goodput_bps: self
                .goodput_stable
                .or_else(|| self.goodput.last().copied())
                .unwrap_or(0.0),
            confidence,
        })
    }
}

/// Whether the last `mad` values are stable: their standard deviation is within
/// `sdt` of the latest.
fn stable(values: &[f64], mad: usize, sdt: f64) -> bool {
    if values.len() < mad || mad < 2 {
        return false;
    }
    let last = &values[values.len() - mad..];
    let mean = last.iter().sum::<f64>() / mad as f64;
    let var = last.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / mad as f64;
    let current = last[mad - 1];
    current > 0.0 && var.sqrt() < sdt * current
}

/// The mean of the values at or below the `trim` percentile (the largest
/// `1 − trim` of them left out, at least one kept), seconds; `None` when empty.
pub fn trimmed_mean(values: &mut [f64], trim: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let keep = ((values.len() as f64 * trim).ceil() as usize).clamp(1, values.len());
    Some(values[..keep].iter().sum::<f64>() / keep as f64)
}

/// The responsiveness of the probes started in `[from, to)`: by the draft (-09 §4.3),
/// the mean of the foreign responsiveness, `60 / ((TM(tcp_f) + TM(tls_f) + TM(http_f))
/// / 3)`, and the responsiveness on the load-generating connections, `60 / TM(http_s)`,
/// times in seconds; `None` without probes of both kinds.
pub fn responsiveness(
    foreign: &[ForeignProbe],
    selfp: &[SelfProbe],
    (from, to): (Duration, Duration),
    trim: f64,
) -> Option<Window> {
    let inside = |at: Duration| at >= from && at < to;
    let f: Vec<&ForeignProbe> = foreign.iter().filter(|p| inside(p.at)).collect();
    let s: Vec<&SelfProbe> = selfp.iter().filter(|p| inside(p.at)).collect();
    let tm = |v: Vec<f64>| trimmed_mean(&mut v.clone(), trim);
    let tcp = tm(f.iter().map(|p| p.tcp.as_secs_f64()).collect())?;
    let tls = tm(f.iter().map(|p| p.tls.as_secs_f64()).collect())?;
    let http_f = tm(f.iter().map(|p| p.http.as_secs_f64()).collect())?;
    let http_s = tm(s.iter().map(|p| p.http.as_secs_f64()).collect())?;
    let foreign_rtt = (tcp + tls + http_f) / 3.0;
    (foreign_rtt > 0.0 && http_s > 0.0).then(|| {
        let (foreign_rpm, self_rpm) = (60.0 / foreign_rtt, 60.0 / http_s);
        Window {
            rpm: (foreign_rpm + self_rpm) / 2.0,
            foreign: ForeignProbes {
                count: f.len() as u32,
                rpm: foreign_rpm,
                tcp_s: tcp,
                tls_s: tls,
                http_s: http_f,
            },
            self_probes: SelfProbes {
                count: s.len() as u32,
                rpm: self_rpm,
                http_s,
            },
        }
    })
}

/// The draft's grade of an RPM figure.
pub fn grade(rpm: f64) -> RpmGrade {
    if rpm < 300.0 {
        RpmGrade::Poor
    } else if rpm < 1000.0 {
        RpmGrade::Fair
    } else if rpm <= 6000.0 {
        RpmGrade::Good
    } else {
        RpmGrade::Excellent
    }
}

#[cfg(test)]
mod tests;
