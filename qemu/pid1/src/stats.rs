// SPDX-License-Identifier: GPL-2.0
//! Percentiles of sorted samples, the two ways the guest programs compute them. Both are
//! kept as they are: their outputs are what earlier runs recorded and what the suites'
//! thresholds were set against.
//!
//! * [`percentile_nearest_rank`]: the test runner's latency summaries (`lags-init`,
//!   `util::Summary`): integer nanoseconds, always one of the samples.
//! * [`percentile_interpolated`]: the benchmark's response times and trace statistics
//!   (`lags-bench`): linear interpolation between the two closest ranks.

/// The `p`-th percentile (0 < p <= 100) of sorted samples, nearest-rank method: the sample
/// at rank `ceil(p / 100 × n)` (at least 1). Returns 0 for no samples.
pub fn percentile_nearest_rank(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Percentile (q in 0..=1) of sorted data, linear interpolation between closest ranks.
/// Infinite values (requests that never completed) sort last and propagate.
pub fn percentile_interpolated(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (sorted[lo], sorted[hi]);
    if a.is_infinite() || b.is_infinite() {
        return Some(if lo == hi || pos > lo as f64 { b } else { a });
    }
    Some(a + (b - a) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect nearest-rank percentiles: p50 of 1..=100 is 50, p99 is 99, p100 the max.
    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_nearest_rank(&v, 50.0), 50);
        assert_eq!(percentile_nearest_rank(&v, 90.0), 90);
        assert_eq!(percentile_nearest_rank(&v, 99.0), 99);
        assert_eq!(percentile_nearest_rank(&v, 100.0), 100);
        assert_eq!(percentile_nearest_rank(&[7], 99.0), 7);
        assert_eq!(percentile_nearest_rank(&[], 50.0), 0);
        // Small sets: p99 of 10 samples is the largest.
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile_nearest_rank(&v, 99.0), 10);
        assert_eq!(percentile_nearest_rank(&v, 50.0), 5);
    }

    // Expect interpolated percentiles and incomplete requests (+inf) to propagate.
    #[test]
    fn interpolated() {
        let d: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        assert_eq!(percentile_interpolated(&d, 0.0), Some(1.0));
        assert_eq!(percentile_interpolated(&d, 1.0), Some(100.0));
        assert!((percentile_interpolated(&d, 0.5).unwrap() - 50.5).abs() < 1e-9);
        assert!((percentile_interpolated(&d, 0.99).unwrap() - 99.01).abs() < 1e-9);
        assert_eq!(percentile_interpolated(&[], 0.5), None);
        let with_inf = [1.0, 2.0, f64::INFINITY];
        assert_eq!(percentile_interpolated(&with_inf, 1.0), Some(f64::INFINITY));
    }

    // Expect the two methods to differ where they do, pinned on the same samples: the
    // nearest rank is always a sample, the interpolation lies between two; an +inf next to
    // a finite sample wins once the position is past the finite one.
    #[test]
    fn the_two_methods_differ() {
        let u: Vec<u64> = (1..=4).collect();
        let f: Vec<f64> = u.iter().map(|&x| x as f64).collect();
        assert_eq!(percentile_nearest_rank(&u, 50.0), 2);
        assert_eq!(percentile_interpolated(&f, 0.5), Some(2.5));
        assert_eq!(percentile_nearest_rank(&u, 90.0), 4);
        assert!((percentile_interpolated(&f, 0.9).unwrap() - 3.7).abs() < 1e-9);
        assert_eq!(percentile_nearest_rank(&u, 0.0), 1);
        assert_eq!(percentile_interpolated(&f, -1.0), Some(1.0));
        assert_eq!(percentile_interpolated(&f, 2.0), Some(4.0));
        let with_inf = [1.0, 2.0, f64::INFINITY];
        assert_eq!(percentile_interpolated(&with_inf, 0.5), Some(2.0));
        assert_eq!(
            percentile_interpolated(&with_inf, 0.75),
            Some(f64::INFINITY)
        );
    }
}
