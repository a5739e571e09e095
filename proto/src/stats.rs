//! Order statistics used by every figure sonde publishes. Pure functions on slices;
//! the definitions are the ones written in docs/METHODOLOGY.md ("Percentiles").

/// The `q`-quantile (0 ≤ q ≤ 1) of `values` by linear interpolation between closest
/// ranks (Hyndman–Fan type 7, numpy's default). `None` for an empty slice or a NaN.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(quantile_sorted(&sorted, q))
}

/// Like [`quantile`] on an already sorted, non-empty slice without NaN.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Like [`quantile`], equal to it, in linear time: the values are reordered in place
/// (a selection, not a sort), so several quantiles of a large set cost little. `None`
/// when empty, with NaN, or `q` outside [0, 1].
pub fn quantile_select(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let pos = q * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, x_lo, right) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let x_lo = *x_lo;
    // The next value in order is the least of those above.
    let x_hi = if pos.ceil() as usize > lo {
        right.iter().copied().min_by(f64::total_cmp).unwrap_or(x_lo)
    } else {
        x_lo
    };
    Some(x_lo + (x_hi - x_lo) * frac)
}

/// Median, the 0.5-quantile.
pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// Mean absolute difference between consecutive values (RFC 3550-style jitter without
/// smoothing, as Cloudflare's speed test computes it). `None` with fewer than 2 values.
pub fn mean_abs_successive_diff(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let sum: f64 = values.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
    Some(sum / (values.len() - 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_gives_the_sorted_quantile_exactly() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for n in [1usize, 2, 3, 5, 10, 11, 100, 1001] {
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Ties too: values from a small set.
                    (x % 97) as f64 * 1.5e6
                })
                .collect();
            for q in [0.0, 0.1, 0.2, 0.25, 0.5, 0.9, 1.0] {
                let mut scratch = values.clone();
                let want = quantile(&values, q);
                let got = quantile_select(&mut scratch, q);
                assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "n {n} q {q}");
            }
        }
        assert_eq!(quantile_select(&mut [], 0.5), None);
        assert_eq!(quantile_select(&mut [1.0, f64::NAN], 0.5), None);
    }

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(4.0));
        assert_eq!(median(&v), Some(2.5));
        // position 0.1 * 3 = 0.3 -> 1 + 0.3 * (2 - 1)
        assert!((quantile(&v, 0.1).unwrap_or(0.0) - 1.3).abs() < 1e-12);
        assert_eq!(median(&[7.0]), Some(7.0));
    }

    #[test]
    fn empty_or_nan_has_no_quantile() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
        assert_eq!(quantile(&[1.0], 1.5), None);
    }

    #[test]
    fn jitter_is_mean_successive_difference() {
        assert_eq!(mean_abs_successive_diff(&[1.0]), None);
        assert_eq!(mean_abs_successive_diff(&[1.0, 3.0, 2.0]), Some(1.5));
    }
}
