//! The throughput sampling, warm-up trimming and stop rule of docs/METHODOLOGY.md
//! ("Throughput"). Pure code: it is fed (elapsed time, cumulative bytes) samples and
//! answers whether to stop and what the figure is. No clock, no I/O.

use sonde_proto::stats::quantile_sorted;
use sonde_proto::StopReason;
use std::time::Duration;

/// Parameters of the stop rule (methodology version 1 values in [`StopRule::v1`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StopRule {
    /// Nominal sampling interval.
    pub interval: Duration,
    /// Bins in one averaging window.
    pub window_bins: usize,
    /// Consecutive windows that must agree for the rate to count as stable.
    pub windows: usize,
    /// Largest relative spread `(max - min) / max` of those windows' rates.
    pub tolerance: f64,
    /// Consecutive samples at which the windows must agree (guards against a rate that
    /// oscillates in step with the windows).
    pub confirmations: usize,
    /// When unstable, the warm-up ends at the first bin whose next window reaches
    /// this fraction of the rate over the rest of the direction.
    pub warmup_fraction: f64,
    /// When unstable, at most this many bins are trimmed as warm-up: slow start is
    /// over well within 2 s even at 200 ms RTT, and trimming more would pick a
    /// favourable part of a varying link.
    pub max_warmup_bins: usize,
    /// Cap on the direction's duration.
    pub max_duration: Duration,
}

impl StopRule {
    /// Methodology version 1: 100 ms samples, 1 s windows, three windows within 3 %,
    /// at three consecutive samples.
    pub fn v1(max_duration: Duration) -> Self {
        StopRule {
            interval: Duration::from_millis(100),
            window_bins: 10,
            windows: 3,
            tolerance: 0.03,
            confirmations: 3,
            warmup_fraction: 0.9,
            max_warmup_bins: 20,
            max_duration,
        }
    }

    fn stable_span(&self) -> usize {
        self.window_bins * self.windows
    }
}

/// What to do after a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep measuring.
    Continue,
    /// Stop now, for this reason.
    Stop(StopReason),
}

/// The figure of one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Goodput over the measured window, bit/s.
    pub goodput_bps: f64,
    /// Payload bytes in the whole direction.
    pub bytes_total: u64,
    /// Payload bytes in the measured window.
    pub bytes_measured: u64,
    /// Time covered by all samples.
    pub duration: Duration,
    /// Start of the measured window (= warm-up trimmed).
    pub window_start: Duration,
    /// Length of the measured window.
    pub window: Duration,
    /// Bins in all.
    pub bins_total: usize,
    /// Bins in the measured window.
    pub bins_used: usize,
    /// 10th, 50th and 90th percentile of the window's bin rates, bit/s.
    pub p10_bps: f64,
    /// Median bin rate, bit/s.
    pub p50_bps: f64,
    /// 90th percentile bin rate, bit/s.
    pub p90_bps: f64,
    /// Whether the window is a stable span by the stop rule.
    pub stable: bool,
}

impl Estimate {
    /// The same estimate with every byte figure multiplied by `factor` (for samples
    /// counted in units of `factor` bytes, e.g. segments of one MSS).
    pub fn scaled(self, factor: f64) -> Estimate {
        Estimate {
            goodput_bps: self.goodput_bps * factor,
            bytes_total: (self.bytes_total as f64 * factor) as u64,
            bytes_measured: (self.bytes_measured as f64 * factor) as u64,
            p10_bps: self.p10_bps * factor,
            p50_bps: self.p50_bps * factor,
            p90_bps: self.p90_bps * factor,
            ..self
        }
    }
}

/// Accumulates the samples of one direction.
#[derive(Debug, Clone)]
pub struct Sampler {
    rule: StopRule,
    /// `(seconds since start, cumulative bytes)`, starting with `(0, 0)`.
    points: Vec<(f64, u64)>,
}

impl Sampler {
    /// A sampler for one direction that starts at time 0 with 0 bytes.
    pub fn new(rule: StopRule) -> Self {
        Sampler {
            rule,
            points: vec![(0.0, 0)],
        }
    }

    /// Records the cumulative bytes at `elapsed` and says whether to stop. Samples
    /// that go back in time or in bytes are ignored.
    pub fn push(&mut self, elapsed: Duration, cumulative_bytes: u64) -> Decision {
        let t = elapsed.as_secs_f64();
        let &(last_t, last_b) = self.points.last().unwrap_or(&(0.0, 0));
        if t > last_t && cumulative_bytes >= last_b {
            self.points.push((t, cumulative_bytes));
        }
        if elapsed >= self.rule.max_duration {
            Decision::Stop(StopReason::MaxDuration)
        } else if self.stable_at_end() {
            Decision::Stop(StopReason::Stable)
        } else {
            Decision::Continue
        }
    }

    /// Samples taken (bins).
    pub fn bins(&self) -> usize {
        self.points.len() - 1
    }

    /// The rate of every bin in order, bit/s, each count worth `scale` bytes (the MSS
    /// for segment counts): the series a test's picture draws.
    pub fn bin_rates(&self, scale: f64) -> Vec<f64> {
        (1..self.points.len())
            .map(|i| self.rate(i - 1, i) * scale)
            .collect()
    }

    fn rate(&self, from: usize, to: usize) -> f64 {
        let (t0, b0) = self.points[from];
        let (t1, b1) = self.points[to];
        if t1 <= t0 {
            return 0.0;
        }
        (b1 - b0) as f64 * 8.0 / (t1 - t0)
    }

    fn stable_at_end(&self) -> bool {
        let n = self.bins();
        let confirmations = self.rule.confirmations.max(1);
        n + 1 >= self.rule.stable_span() + confirmations
            && (0..confirmations).all(|back| self.stable_at(n - back))
    }

    /// Whether the windows ending at bin `n` agree.
    fn stable_at(&self, n: usize) -> bool {
        let span = self.rule.stable_span();
        if n < span || span == 0 {
            return false;
        }
        let w = self.rule.window_bins;
        let rates: Vec<f64> = (0..self.rule.windows)
            .map(|j| self.rate(n - (j + 1) * w, n - j * w))
            .collect();
        let max = rates.iter().copied().fold(f64::MIN, f64::max);
        let min = rates.iter().copied().fold(f64::MAX, f64::min);
        max > 0.0 && (max - min) / max <= self.rule.tolerance
    }

    /// Start bin of the measured window: the stable span when the direction ended
    /// stable, otherwise the end of the warm-up.
    fn window_start(&self) -> usize {
        let n = self.bins();
        if self.stable_at_end() {
            return n - self.rule.stable_span();
        }
        let w = self.rule.window_bins;
        let close = 1.0 - self.rule.tolerance;
        // First choice: the first bin that, like the window it starts, is within the
        // tolerance of the rate over the rest. Then the looser warm-up fraction on the
        // window alone; then the last bin.
        (0..n)
            .find(|&i| {
                let rest = self.rate(i, n);
                rest > 0.0
                    && self.rate(i, i + 1) >= close * rest
                    && self.rate(i, (i + w).min(n)) >= close * rest
            })
            .or_else(|| {
                (0..n).find(|&i| {
                    let rest = self.rate(i, n);
                    rest > 0.0 && self.rate(i, (i + w).min(n)) >= self.rule.warmup_fraction * rest
                })
            })
            .unwrap_or(n.saturating_sub(1))
            .min(self.rule.max_warmup_bins)
            .min(n.saturating_sub(1))
    }

    /// The figure, or `None` before the first sample.
    pub fn estimate(&self) -> Option<Estimate> {
        let n = self.bins();
        if n == 0 {
            return None;
        }
        let s = self.window_start();
        let mut bin_rates: Vec<f64> = (s..n).map(|i| self.rate(i, i + 1)).collect();
        bin_rates.sort_by(f64::total_cmp);
        let (t_s, b_s) = self.points[s];
        let (t_n, b_n) = self.points[n];
        Some(Estimate {
            goodput_bps: self.rate(s, n),
            bytes_total: b_n,
            bytes_measured: b_n - b_s,
            duration: Duration::from_secs_f64(t_n),
            window_start: Duration::from_secs_f64(t_s),
            window: Duration::from_secs_f64(t_n - t_s),
            bins_total: n,
            bins_used: n - s,
            p10_bps: quantile_sorted(&bin_rates, 0.1),
            p50_bps: quantile_sorted(&bin_rates, 0.5),
            p90_bps: quantile_sorted(&bin_rates, 0.9),
            stable: self.stable_at_end(),
        })
    }
}

/// Feeds fixed-width bins (e.g. the responder's upload bins) to a sampler. The last
/// bin is partial by construction and is left out. The bins are judged after the
/// fact, so stability needs no confirmation at earlier samples.
pub fn from_bins(rule: StopRule, bin: Duration, bins: &[u64]) -> Sampler {
    let mut sampler = Sampler::new(StopRule {
        max_duration: Duration::MAX,
        confirmations: 1,
        ..rule
    });
    let mut total = 0u64;
    for (i, b) in bins.iter().take(bins.len().saturating_sub(1)).enumerate() {
        total += b;
        sampler.push(bin * (i as u32 + 1), total);
    }
    sampler
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;

    /// Drives a sampler with a rate function (bit/s at bin i), returning when it stops.
    fn drive(rule: StopRule, rate: impl Fn(usize) -> f64) -> (Sampler, StopReason, usize) {
        let mut s = Sampler::new(rule);
        let mut total = 0.0;
        for i in 1..10_000 {
            total += rate(i) * 0.1 / 8.0;
            if let Decision::Stop(r) = s.push(Duration::from_millis(100 * i as u64), total as u64) {
                return (s, r, i);
            }
        }
        unreachable!("max_duration always stops the loop")
    }

    fn rule() -> StopRule {
        StopRule::v1(Duration::from_secs(10))
    }

    #[test]
    fn bin_rates_are_each_bins_own_rate_scaled() {
        let mut s = Sampler::new(rule());
        s.push(Duration::from_millis(100), 1_000);
        s.push(Duration::from_millis(200), 3_000);
        // A sample back in bytes is ignored, so no bin is negative.
        s.push(Duration::from_millis(300), 2_000);
        s.push(Duration::from_millis(400), 3_000);
        let rates = s.bin_rates(2.0);
        assert_eq!(rates.len(), 3);
        assert!((rates[0] - 160_000.0).abs() < 1e-6, "{rates:?}");
        assert!((rates[1] - 320_000.0).abs() < 1e-6, "{rates:?}");
        assert!(rates[2].abs() < 1e-6, "{rates:?}");
    }

    #[test]
    fn plateau_stops_after_three_agreeing_windows() {
        let (s, reason, bins) = drive(rule(), |_| 500.0 * MB);
        assert_eq!(reason, StopReason::Stable);
        assert_eq!(
            bins, 32,
            "30 bins of windows, confirmed at 3 consecutive samples"
        );
        let e = s.estimate().expect("samples");
        assert!((e.goodput_bps - 500.0 * MB).abs() < 1.0, "{e:?}");
        assert!(e.stable);
        assert_eq!(e.bins_used, 30);
    }

    #[test]
    fn slow_start_is_trimmed_and_does_not_bias_the_figure() {
        // Exponential ramp for 1.2 s (doubling per 100 ms), then 940 Mb/s.
        let ramp = |i: usize| {
            if i <= 12 {
                940.0 * MB / 2f64.powi(12 - i as i32)
            } else {
                940.0 * MB
            }
        };
        let (s, reason, bins) = drive(rule(), ramp);
        assert_eq!(reason, StopReason::Stable);
        assert!(bins <= 45, "stopped after {bins} bins");
        let e = s.estimate().expect("samples");
        assert!((e.goodput_bps / (940.0 * MB) - 1.0).abs() < 0.001, "{e:?}");
        assert!(e.window_start >= Duration::from_millis(1100), "{e:?}");
        // The naive whole-direction average is biased low by the ramp.
        let naive = e.bytes_total as f64 * 8.0 / e.duration.as_secs_f64();
        assert!(naive < 0.97 * 940.0 * MB);
    }

    #[test]
    fn noisy_link_within_tolerance_stops_with_the_mean() {
        // ±20 % per bin, a deterministic pattern that averages out over 1 s windows.
        let noisy = |i: usize| 100.0 * MB * (1.0 + 0.2 * ((i % 5) as f64 - 2.0) / 2.0);
        let (s, reason, _) = drive(rule(), noisy);
        assert_eq!(reason, StopReason::Stable);
        let e = s.estimate().expect("samples");
        assert!((e.goodput_bps / (100.0 * MB) - 1.0).abs() < 0.01, "{e:?}");
        assert!(e.p10_bps < e.p50_bps && e.p50_bps < e.p90_bps, "{e:?}");
    }

    #[test]
    fn link_that_never_stabilises_runs_to_the_cap_and_trims_warmup() {
        // Rate alternates 50 / 150 Mb/s every second: 1 s windows never agree.
        let wobbly = |i: usize| {
            if (i / 10).is_multiple_of(2) {
                50.0 * MB
            } else {
                150.0 * MB
            }
        };
        let (s, reason, bins) = drive(rule(), wobbly);
        assert_eq!(reason, StopReason::MaxDuration);
        assert_eq!(bins, 100);
        let e = s.estimate().expect("samples");
        assert!(!e.stable);
        assert!((e.goodput_bps / (100.0 * MB) - 1.0).abs() < 0.1, "{e:?}");
    }

    #[test]
    fn warmup_trim_is_capped_on_a_varying_link() {
        // A wobbling trough (10/30 Mb/s) for 5 s, then a wobbling peak (90/110): trimming
        // "until the rate is reached" would keep only the peak; the cap keeps all but
        // the first 2 s: (3 s × 20 + 5 s × 100) / 8 s = 70 Mb/s.
        let varying = |i: usize| {
            let wobble = if ((i - 1) / 10).is_multiple_of(2) {
                -10.0
            } else {
                10.0
            };
            (if i <= 50 { 20.0 } else { 100.0 } + wobble) * MB
        };
        let (s, reason, _) = drive(rule(), varying);
        assert_eq!(reason, StopReason::MaxDuration);
        let e = s.estimate().expect("samples");
        assert!(!e.stable);
        assert_eq!(e.window_start, Duration::from_secs(2));
        assert!((e.goodput_bps / (70.0 * MB) - 1.0).abs() < 0.01, "{e:?}");
    }

    #[test]
    fn a_slow_drift_is_not_called_stable() {
        // +2 % per second: three 1 s windows span 4 %, beyond the 3 % tolerance.
        let drift = |i: usize| 100.0 * MB * (1.0 + 0.02 * i as f64 / 10.0);
        let (_, reason, _) = drive(rule(), drift);
        assert_eq!(reason, StopReason::MaxDuration);
    }

    #[test]
    fn zero_throughput_is_never_stable() {
        let (s, reason, _) = drive(rule(), |_| 0.0);
        assert_eq!(reason, StopReason::MaxDuration);
        assert_eq!(s.estimate().map(|e| e.goodput_bps), Some(0.0));
    }

    #[test]
    fn backwards_samples_are_ignored() {
        let mut s = Sampler::new(rule());
        s.push(Duration::from_millis(100), 1000);
        s.push(Duration::from_millis(50), 2000);
        s.push(Duration::from_millis(200), 500);
        assert_eq!(s.bins(), 1);
    }

    #[test]
    fn responder_bins_drop_the_partial_last_bin() {
        let mut bins = vec![1_250_000u64; 35]; // 100 Mb/s in 100 ms bins
        bins[0] = 100_000; // slow start
        bins.push(17); // partial last bin
        let s = from_bins(rule(), Duration::from_millis(100), &bins);
        assert_eq!(s.bins(), 35);
        let e = s.estimate().expect("bins");
        assert!((e.goodput_bps - 100.0 * MB).abs() < 1.0, "{e:?}");
        assert!(e.stable);
    }

    #[test]
    fn short_responder_series_exclude_ramp_bins() {
        // The responder sees the plateau 2 bins later than the agent: its series is
        // stable only at the last sample, and its ramp bins must not enter the figure.
        let mut bins = vec![6_000u64, 450_000];
        bins.extend(std::iter::repeat_n(597_750, 30)); // 47.82 Mb/s
        bins.push(900_000); // partial last bin
        let s = from_bins(rule(), Duration::from_millis(100), &bins);
        let e = s.estimate().expect("bins");
        assert!((e.goodput_bps / 47.82e6 - 1.0).abs() < 0.001, "{e:?}");
        assert!(e.stable);
        assert_eq!(e.window_start, Duration::from_millis(200));
    }

    #[test]
    fn unstable_series_trim_the_ramp() {
        // Never stable (the rate alternates by 10 % per second after the ramp), so
        // the warm-up rule decides; a 2 % bin is not warmed up.
        let mut bins = vec![12_000u64];
        for i in 0..60 {
            bins.push(if (i / 10) % 2 == 0 { 600_000 } else { 660_000 });
        }
        let s = from_bins(rule(), Duration::from_millis(100), &bins);
        let e = s.estimate().expect("bins");
        assert!(!e.stable);
        assert!(e.window_start >= Duration::from_millis(100), "{e:?}");
    }

    #[test]
    fn no_samples_no_estimate() {
        assert_eq!(Sampler::new(rule()).estimate(), None);
    }
}
