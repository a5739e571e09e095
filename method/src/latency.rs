//! Latency figures of a UDP echo train (docs/METHODOLOGY.md, "Latency"): each probe's
//! outcome goes in, the record's [`LatencyStats`] come out. Pure code: the agent's
//! train supplies the probes.

use sonde_proto::stats::{mean_abs_successive_diff, quantile_sorted};
use sonde_proto::LatencyStats;
use std::time::Duration;

/// Loss timeout: a probe whose echo is not back within this is lost (SamKnows' 2 s).
pub const LOSS_TIMEOUT: Duration = Duration::from_secs(2);

/// Outcome of one probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// Send time, relative to the train's reference instant.
    pub sent_at: Duration,
    /// Round-trip time, when the echo came back in time.
    pub rtt: Option<Duration>,
}

/// Latency figures of a train (docs/METHODOLOGY.md, "Latency"): median, P90 and
/// minimum RTT of the echoes received, jitter as the mean absolute difference of
/// consecutive RTTs in send order, loss as the share of probes not back in time.
pub fn summarize(probes: &[Probe]) -> LatencyStats {
    let rtts: Vec<f64> = probes
        .iter()
        .filter_map(|p| p.rtt.map(|d| d.as_secs_f64()))
        .collect();
    let mut sorted = rtts.clone();
    sorted.sort_by(f64::total_cmp);
    let sent = probes.len() as u32;
    let received = rtts.len() as u32;
    LatencyStats {
        sent,
        received,
        loss_ratio: if sent == 0 {
            0.0
        } else {
            1.0 - f64::from(received) / f64::from(sent)
        },
        median_s: (!sorted.is_empty()).then(|| quantile_sorted(&sorted, 0.5)),
        p90_s: (!sorted.is_empty()).then(|| quantile_sorted(&sorted, 0.9)),
        min_s: sorted.first().copied(),
        jitter_s: mean_abs_successive_diff(&rtts),
        loss_timeout_s: LOSS_TIMEOUT.as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ms: Option<u64>) -> Probe {
        Probe {
            sent_at: Duration::ZERO,
            rtt: ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn summary_of_a_train_with_loss() {
        let probes = [p(Some(10)), p(None), p(Some(30)), p(Some(20)), p(Some(40))];
        let s = summarize(&probes);
        assert_eq!((s.sent, s.received), (5, 4));
        assert!((s.loss_ratio - 0.2).abs() < 1e-12);
        assert_eq!(s.median_s, Some(0.025));
        assert_eq!(s.min_s, Some(0.010));
        // |30-10| + |20-30| + |40-20| = 50 over 3 gaps
        let jitter = s.jitter_s.expect("4 echoes");
        assert!((jitter - 0.050 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn empty_train_has_no_figures_and_no_loss() {
        let s = summarize(&[]);
        assert_eq!((s.sent, s.received, s.loss_ratio), (0, 0, 0.0));
        assert_eq!(s.median_s, None);
        let all_lost = summarize(&[p(None), p(None)]);
        assert_eq!(all_lost.loss_ratio, 1.0);
        assert_eq!(all_lost.median_s, None);
    }
}
