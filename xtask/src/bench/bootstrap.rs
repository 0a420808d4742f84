//! Bootstrap 95% intervals for the rdhashd points and for each configuration against stock.
//!
//! Two stages. First the repetitions are drawn with replacement, which carries the
//! variation between runs (another trace segment and seed, another state of the host) into
//! the interval. Then each drawn run's measured window is resampled by seconds
//! (`per_second` of the record), not by request: requests of one second share its load, and
//! the trace's busy stretches last several seconds, so seconds go in circular blocks of
//! `ceil(n^(1/3))` (moving-block bootstrap). A comparison is paired: the configurations of
//! one repetition ran the same trace segment with the same seed, so both are resampled with
//! the same draws, and the interval is the one of the ratio. A ratio whose interval contains
//! 1 is "no difference".

use serde::Serialize;

use super::stats::{scale_key, RatioRange};
use lags_pid1::rng::SplitMix64;
use lags_proto::bench::{dense_quantile_ms, RdhashdRecord, HIST_BINS};

/// Resamples per interval.
pub const ITERATIONS: usize = 2000;
/// Fixed seed: the same records always give the same report.
const SEED: u64 = 0x1a65_b007;

/// A 95% percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    /// The 2.5th and 97.5th percentiles of `v`; `None` without values. Sorts `v`.
    fn of(v: &mut [f64]) -> Option<Interval> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        Some(Interval {
            lo: at(0.025),
            hi: at(0.975),
        })
    }

    /// Which side of `x` the interval lies on: `Some(true)` above, `Some(false)` below,
    /// `None` when it contains `x` (no difference).
    pub fn beyond(&self, x: f64) -> Option<bool> {
        if self.lo > x {
            Some(true)
        } else if self.hi < x {
            Some(false)
        } else {
            None
        }
    }
}

/// One run's window, second by second, with dense histograms.
struct Series {
    good: Vec<u64>,
    completed: Vec<u64>,
    hist: Vec<Vec<u64>>,
    /// Busy CPU ms of each second; `None` in records without it.
    busy_ms: Option<Vec<f64>>,
}

impl Series {
    fn of(r: &RdhashdRecord) -> Option<Series> {
        if r.per_second.is_empty() {
            return None;
        }
        Some(Series {
            good: r.per_second.iter().map(|s| s.good).collect(),
            completed: r.per_second.iter().map(|s| s.completed).collect(),
            busy_ms: (r.busy_ms_per_second.len() == r.per_second.len())
                .then(|| r.busy_ms_per_second.clone()),
            hist: r
                .per_second
                .iter()
                .map(|s| {
                    let mut d = vec![0u64; HIST_BINS];
                    for &(b, c) in &s.hist.bins {
                        if let Some(x) = d.get_mut(b as usize) {
                            *x += c;
                        }
                    }
                    d
                })
                .collect(),
        })
    }
}

/// Goodput (requests under the threshold per second), the fraction of completed requests
/// under the threshold, p50 and p99 (ms) of pooled seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    goodput: f64,
    /// Completed requests per second.
    throughput: f64,
    /// `None` when no request completed.
    fraction: Option<f64>,
    /// Busy CPU ms per completed request; `None` without per-second CPU or requests.
    cpu_ms_per_req: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
}

/// The statistic over (run, the seconds chosen from it) pairs, pooled.
fn stat<'a>(parts: impl Iterator<Item = (&'a Series, &'a [usize])>) -> Stat {
    let mut good = 0u64;
    let mut completed = 0u64;
    let mut secs = 0usize;
    let mut hist = vec![0u64; HIST_BINS];
    let mut busy = Some(0.0f64);
    for (s, ix) in parts {
        for &i in ix {
            good += s.good[i];
            completed += s.completed[i];
            busy = busy.zip(s.busy_ms.as_ref()).map(|(b, v)| b + v[i]);
            secs += 1;
            for (h, &c) in hist.iter_mut().zip(&s.hist[i]) {
                *h += c;
            }
        }
    }
    let bins = || hist.iter().enumerate().map(|(b, &c)| (b as u32, c));
    let per_second = |n: u64| {
        if secs > 0 {
            n as f64 / secs as f64
        } else {
            0.0
        }
    };
    Stat {
        goodput: per_second(good),
        throughput: per_second(completed),
        fraction: (completed > 0).then(|| good as f64 / completed as f64),
        cpu_ms_per_req: busy.filter(|_| completed > 0).map(|b| b / completed as f64),
        p50: dense_quantile_ms(bins(), 0.50),
        p99: dense_quantile_ms(bins(), 0.99),
    }
}

/// Block length for `n` seconds.
pub fn block_len(n: usize) -> usize {
    ((n as f64).cbrt().ceil() as usize).clamp(1, n.max(1))
}

/// `n` indices of circular blocks of `block_len(n)` seconds with random starts.
fn resample(n: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let l = block_len(n);
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let start = (rng.next_u64() % n as u64) as usize;
        v.extend((0..l).map(|j| (start + j) % n).take(n - v.len()));
    }
    v
}

/// One two-stage resample of runs with `lens[k]` seconds each: the runs themselves drawn
/// with replacement (between-repetition variation: the trace segment, the host's state),
/// then each drawn run's seconds in blocks. Returns (run, its second indices) pairs.
fn draw(lens: &[usize], rng: &mut SplitMix64) -> Vec<(usize, Vec<usize>)> {
    (0..lens.len())
        .map(|_| {
            let k = (rng.next_u64() % lens.len() as u64) as usize;
            (k, resample(lens[k], rng))
        })
        .collect()
}

/// [`stat`] over a [`draw`].
fn stat_of_draw(runs: &[&Series], d: &[(usize, Vec<usize>)]) -> Stat {
    stat(d.iter().map(|(k, ix)| (runs[*k], ix.as_slice())))
}

/// Intervals of one (configuration, function count) point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointCi {
    pub goodput: Option<Interval>,
    /// Of the completed requests, the fraction under the threshold (the SLO a capacity is
    /// judged by).
    pub good_fraction: Option<Interval>,
    pub p50: Option<Interval>,
    pub p99: Option<Interval>,
    /// Seconds resampled, over all repetitions, and the block length.
    pub seconds: usize,
    pub block_s: usize,
}

/// The intervals of a point from its runs; `None` when a run has no per-second counts
/// (records from before them).
pub fn point_ci(recs: &[&RdhashdRecord]) -> Option<PointCi> {
    let series: Vec<Series> = recs.iter().map(|r| Series::of(r)).collect::<Option<_>>()?;
    let runs: Vec<&Series> = series.iter().collect();
    let mut rng = SplitMix64::new(SEED);
    let (mut g, mut frac, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ITERATIONS {
        let lens: Vec<usize> = runs.iter().map(|s| s.good.len()).collect();
        let st = stat_of_draw(&runs, &draw(&lens, &mut rng));
        g.push(st.goodput);
        frac.extend(st.fraction);
        p50.extend(st.p50);
        p99.extend(st.p99);
    }
    Some(PointCi {
        goodput: Interval::of(&mut g),
        good_fraction: Interval::of(&mut frac),
        p50: Interval::of(&mut p50),
        p99: Interval::of(&mut p99),
        seconds: runs.iter().map(|s| s.good.len()).sum(),
        block_s: runs
            .iter()
            .map(|s| block_len(s.good.len()))
            .max()
            .unwrap_or(1),
    })
}

/// A configuration against stock at one function count: ratios with paired intervals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub funcs: usize,
    /// Concurrency scale (1: the trace as it is).
    pub scale: f64,
    pub config: String,
    /// Repetitions present in both.
    pub reps: usize,
    pub goodput_ratio: f64,
    pub goodput_ratio_ci: Option<Interval>,
    /// Completed requests per second: at saturation, how much work the CPUs got done.
    pub rps_ratio: f64,
    pub rps_ratio_ci: Option<Interval>,
    /// Busy CPU time per completed request (every CPU, idle excluded); `None` where a run
    /// has no per-second CPU (records from before it).
    pub cpu_ratio: Option<f64>,
    pub cpu_ratio_ci: Option<Interval>,
    pub p99_ratio: Option<f64>,
    pub p99_ratio_ci: Option<Interval>,
}

impl Comparison {
    /// "higher", "lower" or "no difference" for the goodput ratio.
    pub fn goodput_verdict(&self) -> &'static str {
        verdict(self.goodput_ratio_ci)
    }

    pub fn rps_verdict(&self) -> &'static str {
        verdict(self.rps_ratio_ci)
    }

    pub fn cpu_verdict(&self) -> &'static str {
        verdict(self.cpu_ratio_ci)
    }

    pub fn p99_verdict(&self) -> &'static str {
        verdict(self.p99_ratio_ci)
    }
}

fn verdict(ci: Option<Interval>) -> &'static str {
    match ci.map(|c| c.beyond(1.0)) {
        Some(Some(true)) => "higher",
        Some(Some(false)) => "lower",
        Some(None) => "no difference",
        None => "–",
    }
}

/// Every non-stock configuration against stock, per function count and concurrency scale,
/// paired by repetition.
pub fn comparisons(recs: &[RdhashdRecord]) -> Vec<Comparison> {
    let mut keys: Vec<(usize, i64, String)> = recs
        .iter()
        .filter(|r| r.config != "stock")
        .map(|r| (r.funcs, scale_key(r.scale()), r.config.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for (funcs, sk, config) in keys {
        let at = |r: &&RdhashdRecord| r.funcs == funcs && scale_key(r.scale()) == sk;
        let find = |cfg: &str, rep: usize| {
            recs.iter()
                .filter(at)
                .find(|r| r.config == cfg && r.rep == rep)
        };
        let mut pairs = Vec::new();
        for r in recs.iter().filter(at).filter(|r| r.config == config) {
            let Some(s) = find("stock", r.rep) else {
                continue;
            };
            if let (Some(a), Some(b)) = (Series::of(r), Series::of(s)) {
                pairs.push((a, b));
            }
        }
        if pairs.is_empty() {
            continue;
        }
        // Paired seconds: the shorter window of the two.
        let n: Vec<usize> = pairs
            .iter()
            .map(|(a, b)| a.good.len().min(b.good.len()))
            .collect();
        let (xs, ys): (Vec<&Series>, Vec<&Series>) = pairs.iter().map(|(a, b)| (a, b)).unzip();
        let full: Vec<Vec<usize>> = n.iter().map(|&k| (0..k).collect()).collect();
        let whole =
            |runs: &[&Series]| stat(runs.iter().zip(&full).map(|(s, ix)| (*s, ix.as_slice())));
        let (x0, y0) = (whole(&xs), whole(&ys));
        let ratio = |x: f64, y: f64| (y > 0.0).then(|| x / y);
        // A tail among the requests that never completed (infinite) has no ratio.
        let tail_ratio = |x: Option<f64>, y: Option<f64>| {
            x.zip(y)
                .filter(|(a, b)| a.is_finite() && b.is_finite())
                .and_then(|(a, b)| ratio(a, b))
        };
        // Scale 1 keeps the stream of the reports from before the scale axis.
        let mut rng = SplitMix64::new(
            SEED ^ funcs as u64 ^ ((sk - 1_000_000) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let (mut g, mut rps, mut cpu, mut p99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ITERATIONS {
            let d = draw(&n, &mut rng);
            let (x, y) = (stat_of_draw(&xs, &d), stat_of_draw(&ys, &d));
            g.extend(ratio(x.goodput, y.goodput));
            rps.extend(ratio(x.throughput, y.throughput));
            if let (Some(a), Some(b)) = (x.cpu_ms_per_req, y.cpu_ms_per_req) {
                cpu.extend(ratio(a, b));
            }
            p99.extend(tail_ratio(x.p99, y.p99));
        }
        out.push(Comparison {
            funcs,
            scale: sk as f64 / 1e6,
            reps: pairs.len(),
            goodput_ratio: ratio(x0.goodput, y0.goodput).unwrap_or(f64::NAN),
            goodput_ratio_ci: Interval::of(&mut g),
            rps_ratio: ratio(x0.throughput, y0.throughput).unwrap_or(f64::NAN),
            rps_ratio_ci: Interval::of(&mut rps),
            cpu_ratio: x0
                .cpu_ms_per_req
                .zip(y0.cpu_ms_per_req)
                .and_then(|(a, b)| ratio(a, b)),
            cpu_ratio_ci: Interval::of(&mut cpu),
            p99_ratio: tail_ratio(x0.p99, y0.p99),
            p99_ratio_ci: Interval::of(&mut p99),
            config,
        });
    }
    out
}

/// Where a fraction curve (workload ascending) first drops below `target`, linearly
/// interpolated between the last tested scale above it and the first below. `None` for an
/// empty curve. Pure.
///
/// A capacity on the workload axis is a [`RatioRange`] too: the values one fraction curve
/// allows, the interpolated crossing of the target (`lo == hi`), or, when the curve does not
/// cross inside the tested range, everything below the smallest scale (missed there) or
/// above the largest (held everywhere; `hi: None`).
pub fn crossing(curve: &[(f64, f64)], target: f64) -> Option<RatioRange> {
    let &(x0, f0) = curve.first()?;
    if f0 < target {
        return Some(RatioRange {
            lo: 0.0,
            hi: Some(x0),
        });
    }
    for w in curve.windows(2) {
        let ((xa, fa), (xb, fb)) = (w[0], w[1]);
        if fb < target {
            let x = xa + (xb - xa) * (fa - target) / (fa - fb);
            return Some(RatioRange { lo: x, hi: Some(x) });
        }
    }
    curve.last().map(|&(x, _)| RatioRange { lo: x, hi: None })
}

/// The interpolated capacity of a configuration and its ratio to stock's, each with a
/// paired bootstrap interval. A capacity is where the pooled fraction of requests under the
/// threshold first drops below the SLO target as the workload grows ([`crossing`]). The
/// resamples draw the repetitions with replacement and each drawn repetition's seconds in
/// circular blocks, the same draw for every configuration and every scale of the
/// repetition (they ran the same trace window). A draw whose curve does not cross inside
/// the tested range gives a one-sided value; the interval then takes its most extreme
/// reading (the lower end from the lowest values a draw allows, the upper end from the
/// highest), so censoring only ever widens it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityCi {
    pub config: String,
    /// Repetitions (trace windows) of both configurations.
    pub reps: usize,
    /// The tested scales every repetition ran for both configurations, which the capacity
    /// is read on (the others are left out).
    pub scales: usize,
    pub stock: RatioRange,
    pub stock_ci: RatioRange,
    pub capacity: RatioRange,
    pub capacity_ci: RatioRange,
    pub ratio: RatioRange,
    pub ratio_ci: RatioRange,
    /// Resamples whose ratio was one-sided.
    pub censored: usize,
}

/// 95% interval of one-sided values: the 2.5th percentile of the lower ends and the 97.5th
/// of the upper ends (unbounded when more than 2.5% of them are).
fn bounds_interval(v: &[RatioRange]) -> Option<RatioRange> {
    let mut lo: Vec<f64> = v.iter().map(|b| b.lo).collect();
    let mut hi: Vec<f64> = v.iter().map(|b| b.hi.unwrap_or(f64::INFINITY)).collect();
    let lo = Interval::of(&mut lo)?.lo;
    let hi = Interval::of(&mut hi)?.hi;
    Some(RatioRange {
        lo,
        hi: hi.is_finite().then_some(hi),
    })
}

/// [`CapacityCi`] of every non-stock configuration, on the workload axis
/// (functions × scale, or users). Needs per-second counts and at least two tested scales
/// in the repetitions both configurations share; `target` is the SLO fraction. Pure.
pub fn capacity_cis(recs: &[RdhashdRecord], target: f64) -> Vec<CapacityCi> {
    let workload = |r: &RdhashdRecord| (r.funcs as f64 * r.scale() * 1e6).round() as i64;
    let mut configs: Vec<&str> = recs
        .iter()
        .map(|r| r.config.as_str())
        .filter(|c| *c != "stock")
        .collect();
    configs.sort_unstable();
    configs.dedup();
    let mut out = Vec::new();
    for config in configs {
        let pair = [config, "stock"];
        let in_pair: Vec<&RdhashdRecord> = recs
            .iter()
            .filter(|r| pair.contains(&r.config.as_str()) && !r.per_second.is_empty())
            .collect();
        // A repetition is its number and its trace window, so that runs of merged boots with
        // other seeds never pair.
        // Only repetitions in which both configurations ran.
        let mut reps: Vec<(usize, u64)> =
            in_pair.iter().map(|r| (r.rep, r.trace_offset_s)).collect();
        reps.sort_unstable();
        reps.dedup();
        reps.retain(|&(rep, offset)| {
            pair.iter().all(|&c| {
                in_pair
                    .iter()
                    .any(|r| r.config == c && r.rep == rep && r.trace_offset_s == offset)
            })
        });
        let get = |c: &str, (rep, offset): (usize, u64), x: i64| {
            in_pair.iter().copied().find(|r| {
                r.config == c && r.rep == rep && r.trace_offset_s == offset && workload(r) == x
            })
        };
        // The scales every repetition ran for both configurations.
        let mut xs: Vec<i64> = in_pair.iter().map(|r| workload(r)).collect();
        xs.sort_unstable();
        xs.dedup();
        xs.retain(|&x| {
            reps.iter()
                .all(|&k| pair.iter().all(|&c| get(c, k, x).is_some()))
        });
        if reps.is_empty() || xs.len() < 2 {
            continue;
        }
        // series[rep][config][scale]
        let series: Vec<[Vec<Series>; 2]> = reps
            .iter()
            .map(|&k| {
                let of = |c: &str| {
                    xs.iter()
                        .filter_map(|&x| get(c, k, x).and_then(Series::of))
                        .collect::<Vec<_>>()
                };
                [of(config), of("stock")]
            })
            .collect();
        // Paired seconds: the shortest window of the repetition.
        let lens: Vec<usize> = series
            .iter()
            .map(|cs| cs.iter().flatten().map(|s| s.good.len()).min().unwrap_or(0))
            .collect();
        let x_at: Vec<f64> = xs.iter().map(|&x| x as f64 / 1e6).collect();
        let capacity_of = |d: &[(usize, Vec<usize>)], c: usize| {
            let curve: Vec<(f64, f64)> = x_at
                .iter()
                .enumerate()
                .map(|(j, &x)| {
                    let (mut good, mut done) = (0u64, 0u64);
                    for (k, ix) in d {
                        let s = &series[*k][c][j];
                        for &i in ix {
                            good += s.good[i];
                            done += s.completed[i];
                        }
                    }
                    (
                        x,
                        if done > 0 {
                            good as f64 / done as f64
                        } else {
                            0.0
                        },
                    )
                })
                .collect();
            crossing(&curve, target)
        };
        let whole: Vec<(usize, Vec<usize>)> = lens
            .iter()
            .enumerate()
            .map(|(k, &n)| (k, (0..n).collect()))
            .collect();
        let (Some(c0), Some(s0)) = (capacity_of(&whole, 0), capacity_of(&whole, 1)) else {
            continue;
        };
        let mut rng = SplitMix64::new(SEED ^ 0xc0de);
        let (mut cs, mut ss, mut rs) = (Vec::new(), Vec::new(), Vec::new());
        let mut censored = 0;
        for _ in 0..ITERATIONS {
            let d = draw(&lens, &mut rng);
            if let (Some(c), Some(s)) = (capacity_of(&d, 0), capacity_of(&d, 1)) {
                let r = RatioRange::quotient(c, s);
                censored += usize::from(r.hi != Some(r.lo));
                cs.push(c);
                ss.push(s);
                rs.push(r);
            }
        }
        let (Some(capacity_ci), Some(stock_ci), Some(ratio_ci)) = (
            bounds_interval(&cs),
            bounds_interval(&ss),
            bounds_interval(&rs),
        ) else {
            continue;
        };
        out.push(CapacityCi {
            config: config.to_string(),
            reps: series.len(),
            scales: xs.len(),
            stock: s0,
            stock_ci,
            capacity: c0,
            capacity_ci,
            ratio: RatioRange::quotient(c0, s0),
            ratio_ci,
            censored,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lags_proto::bench::{Hist, SecondCounts};

    /// A run whose second `i` completed `good[i]` requests, all in histogram bin `bin`.
    fn run(config: &str, rep: usize, good: &[u64], bin: u32) -> RdhashdRecord {
        run_late(config, rep, good, good, bin)
    }

    /// A run whose `completed` requests per second include late ones beyond the `good`.
    fn run_late(
        config: &str,
        rep: usize,
        completed: &[u64],
        good: &[u64],
        bin: u32,
    ) -> RdhashdRecord {
        RdhashdRecord {
            config: config.into(),
            funcs: 8,
            rep,
            per_second: completed
                .iter()
                .zip(good)
                .map(|(&c, &g)| SecondCounts {
                    completed: c,
                    good: g,
                    hist: Hist {
                        bins: vec![(bin, g)],
                    },
                })
                .collect(),
            ..RdhashdRecord::default()
        }
    }

    // Expect blocks of ceil(n^(1/3)) seconds and resamples of the run's own length.
    #[test]
    fn blocks() {
        assert_eq!(
            [1, 8, 9, 20, 110].map(block_len),
            [1, 2, 3, 3, 5],
            "block lengths"
        );
        let mut rng = SplitMix64::new(1);
        let r = resample(20, &mut rng);
        assert_eq!(r.len(), 20);
        assert!(r.iter().all(|&i| i < 20));
    }

    // Expect a clear win, a clear loss and equal runs to be told apart, the interval to
    // contain the point estimate, and throughput to be judged apart from goodput: a
    // configuration that completes as many requests as stock but half of them late has
    // lower goodput and no difference in RPS.
    #[test]
    fn paired_comparisons() {
        let noisy: Vec<u64> = (0..30).map(|i| 100 + (i * 37 % 23)).collect();
        let doubled: Vec<u64> = noisy.iter().map(|g| g * 2).collect();
        let halved: Vec<u64> = noisy.iter().map(|g| g / 2).collect();
        let recs = vec![
            run("stock", 0, &noisy, 80),
            run("stock", 1, &noisy[5..], 80),
            run("lags", 0, &doubled, 60),
            run("lags", 1, &doubled[5..], 60),
            run("tuned", 0, &noisy, 80),
            run("tuned", 1, &noisy[5..], 80),
            run_late("late", 0, &noisy, &halved, 80),
            run_late("late", 1, &noisy[5..], &halved[5..], 80),
        ];
        let c = comparisons(&recs);
        assert_eq!(c.len(), 3);
        let lags = c.iter().find(|c| c.config == "lags").unwrap();
        assert_eq!(lags.reps, 2);
        assert!((lags.goodput_ratio - 2.0).abs() < 1e-9);
        let ci = lags.goodput_ratio_ci.unwrap();
        assert!(ci.lo <= 2.0 && ci.hi >= 2.0, "{ci:?}");
        assert_eq!(lags.goodput_verdict(), "higher");
        assert!((lags.rps_ratio - 2.0).abs() < 1e-9);
        assert_eq!(lags.rps_verdict(), "higher");
        assert_eq!(lags.p99_verdict(), "lower", "bin 60 is below bin 80");
        let tuned = c.iter().find(|c| c.config == "tuned").unwrap();
        assert_eq!(tuned.goodput_verdict(), "no difference");
        assert_eq!(tuned.p99_verdict(), "no difference");
        assert_eq!(tuned.rps_verdict(), "no difference");
        let late = c.iter().find(|c| c.config == "late").unwrap();
        assert_eq!(late.goodput_verdict(), "lower");
        assert!(late.goodput_ratio < 0.55, "{}", late.goodput_ratio);
        assert_eq!(late.rps_ratio, 1.0);
        assert_eq!(late.rps_verdict(), "no difference");
    }

    // Expect the CPU per request of a configuration that completes the same requests with
    // 10% more busy CPU in every second to be 1.1 of stock's and "higher", one with the same
    // CPU to be "no difference", and no ratio where a run has no per-second CPU.
    #[test]
    fn cpu_per_request_paired() {
        let done: Vec<u64> = (0..30).map(|i| 100 + (i * 37 % 23)).collect();
        let busy: Vec<f64> = (0..30)
            .map(|i| 1500.0 + (i * 13 % 17) as f64 * 10.0)
            .collect();
        let with_cpu = |config: &str, rep: usize, f: f64| RdhashdRecord {
            busy_ms_per_second: busy[rep * 5..].iter().map(|b| b * f).collect(),
            ..run(config, rep, &done[rep * 5..], 80)
        };
        let recs = vec![
            with_cpu("stock", 0, 1.0),
            with_cpu("stock", 1, 1.0),
            with_cpu("costly", 0, 1.1),
            with_cpu("costly", 1, 1.1),
            with_cpu("same", 0, 1.0),
            with_cpu("same", 1, 1.0),
            run("old", 0, &done, 80),
            run("old", 1, &done[5..], 80),
        ];
        let c = comparisons(&recs);
        let get = |n: &str| c.iter().find(|c| c.config == n).unwrap();
        let costly = get("costly");
        assert!((costly.cpu_ratio.unwrap() - 1.1).abs() < 1e-9);
        assert_eq!(costly.cpu_verdict(), "higher");
        assert_eq!(costly.rps_verdict(), "no difference");
        assert_eq!(get("same").cpu_ratio, Some(1.0));
        assert_eq!(get("same").cpu_verdict(), "no difference");
        assert_eq!(
            (get("old").cpu_ratio, get("old").cpu_verdict()),
            (None, "–")
        );
    }

    // Expect the interval of a noisy point to contain its mean and be wider than zero, and
    // no interval for records without per-second counts.
    #[test]
    fn point_intervals() {
        let noisy: Vec<u64> = (0..40).map(|i| 50 + (i * 17 % 31)).collect();
        let mean = noisy.iter().sum::<u64>() as f64 / noisy.len() as f64;
        let r = run("stock", 0, &noisy, 70);
        let ci = point_ci(&[&r]).unwrap();
        let g = ci.goodput.unwrap();
        assert!(
            g.lo < mean && mean < g.hi && g.hi - g.lo > 1.0,
            "{g:?} vs {mean}"
        );
        assert_eq!(ci.seconds, 40);
        // Two runs, each steady but at different levels (the host was busier during one):
        // the interval must show that spread, not only the (zero) variation within runs.
        let (a, b) = (
            run("stock", 0, &[100; 30], 70),
            run("stock", 1, &[200; 30], 70),
        );
        let g = point_ci(&[&a, &b]).unwrap().goodput.unwrap();
        assert!(g.lo <= 100.0 + 1e-9 && g.hi >= 200.0 - 1e-9, "{g:?}");
        let old = RdhashdRecord::default();
        assert_eq!(point_ci(&[&r, &old]), None);
        assert_eq!(Interval { lo: 0.9, hi: 1.1 }.beyond(1.0), None);
        assert_eq!(Interval { lo: 1.2, hi: 1.3 }.beyond(1.0), Some(true));
    }

    /// A run at workload 10 × `scale` whose fraction under the threshold is `frac` over
    /// 30 seconds of 200 requests each, give or take one good request per second by
    /// repetition (0: one less, 2: one more), so that resamples vary while the three
    /// repetitions together keep `frac`.
    fn at(config: &str, rep: usize, scale: f64, frac: f64) -> RdhashdRecord {
        let good = (frac * 200.0).round() as u64;
        RdhashdRecord {
            config: config.into(),
            funcs: 10,
            scale: Some(scale),
            rep,
            per_second: (0..30u64)
                .map(|_| {
                    let g = if good == 200 {
                        200
                    } else {
                        good + rep as u64 - 1
                    };
                    SecondCounts {
                        completed: 200,
                        good: g,
                        hist: Hist { bins: vec![] },
                    }
                })
                .collect(),
            ..RdhashdRecord::default()
        }
    }

    // Expect the capacity where the curve first drops below the target, interpolated, and
    // one-sided values when it does not cross inside the tested range.
    #[test]
    fn crossing_of_the_slo() {
        let c = crossing(&[(5.0, 1.0), (10.0, 0.98), (15.0, 0.995)], 0.99).unwrap();
        assert_eq!(
            c,
            RatioRange {
                lo: 7.5,
                hi: Some(7.5)
            }
        );
        assert_eq!(
            crossing(&[(5.0, 0.9), (10.0, 0.8)], 0.99),
            Some(RatioRange {
                lo: 0.0,
                hi: Some(5.0)
            })
        );
        assert_eq!(
            crossing(&[(5.0, 1.0), (10.0, 0.995)], 0.99),
            Some(RatioRange { lo: 10.0, hi: None })
        );
        assert_eq!(crossing(&[], 0.99), None);
        let r = RatioRange::quotient(
            RatioRange { lo: 10.0, hi: None },
            RatioRange {
                lo: 4.0,
                hi: Some(5.0),
            },
        );
        assert_eq!(r, RatioRange { lo: 2.0, hi: None });
        let r = RatioRange::quotient(
            RatioRange {
                lo: 8.0,
                hi: Some(8.0),
            },
            RatioRange {
                lo: 0.0,
                hi: Some(5.0),
            },
        );
        assert_eq!(r, RatioRange { lo: 1.6, hi: None });
    }

    // Expect a configuration that holds the SLO to 2.33 times stock's workload to meet the
    // 1.3 target with an interval, an identical one to be decided "not met" and "no loss",
    // one that holds everywhere to be a one-sided lower bound, and runs without a shared
    // repetition or with one scale to give nothing.
    #[test]
    fn capacity_ratio_intervals() {
        let stock = [1.0, 0.98, 0.97, 0.96];
        let better = [1.0, 1.0, 1.0, 0.98];
        let mut recs = Vec::new();
        for rep in 0..3 {
            for (j, s) in [0.5, 1.0, 1.5, 2.0].into_iter().enumerate() {
                recs.push(at("stock", rep, s, stock[j]));
                recs.push(at("lags", rep, s, better[j]));
                recs.push(at("same", rep, s, stock[j]));
                recs.push(at("always", rep, s, 1.0));
            }
        }
        let cis = capacity_cis(&recs, 0.99);
        let get = |c: &str| cis.iter().find(|x| x.config == c).unwrap();
        let lags = get("lags");
        assert_eq!(lags.reps, 3);
        assert!((lags.stock.lo - 7.5).abs() < 1e-9, "{lags:?}");
        assert!((lags.capacity.lo - 17.5).abs() < 1e-9, "{lags:?}");
        assert!(
            lags.ratio_ci.lo > 2.0 && lags.ratio_ci.hi.unwrap() < 2.7,
            "{lags:?}"
        );
        assert!(
            lags.stock_ci.lo < 7.5 && lags.stock_ci.hi.unwrap() > 7.5,
            "{lags:?}"
        );
        assert_eq!(lags.ratio_ci.at_least(1.3), Some(true));
        let same = get("same");
        assert_eq!(
            same.ratio_ci,
            RatioRange {
                lo: 1.0,
                hi: Some(1.0)
            }
        );
        assert_eq!(same.censored, 0);
        assert_eq!(same.ratio_ci.at_least(1.3), Some(false));
        assert_eq!(same.ratio_ci.at_least(0.95), Some(true));
        let always = get("always");
        assert_eq!(always.capacity, RatioRange { lo: 20.0, hi: None });
        assert_eq!(always.ratio_ci.hi, None);
        assert_eq!(always.censored, ITERATIONS);
        assert_eq!(always.ratio_ci.at_least(1.3), Some(true));
        assert_eq!(lags.scales, 4);
        // A scale that one repetition ran for one configuration only is left out.
        let mut extra = recs.clone();
        extra.push(at("lags", 0, 3.0, 0.9));
        let cis = capacity_cis(&extra, 0.99);
        let lags = cis.iter().find(|x| x.config == "lags").unwrap();
        assert_eq!((lags.reps, lags.scales), (3, 4));
        assert!((lags.capacity.lo - 17.5).abs() < 1e-9, "{lags:?}");
        // A repetition whose stock runs come from another trace window does not pair.
        let mut moved = recs.clone();
        for r in moved
            .iter_mut()
            .filter(|r| r.config == "stock" && r.rep == 2)
        {
            r.trace_offset_s = 999;
        }
        let cis = capacity_cis(&moved, 0.99);
        assert_eq!(cis.iter().find(|x| x.config == "lags").unwrap().reps, 2);
        // Without stock in the same repetition, or with a single scale, nothing.
        let lone: Vec<_> = recs
            .iter()
            .filter(|r| r.config != "stock")
            .cloned()
            .collect();
        assert!(capacity_cis(&lone, 0.99).is_empty());
        let one: Vec<_> = recs
            .iter()
            .filter(|r| r.scale == Some(0.5))
            .cloned()
            .collect();
        assert!(capacity_cis(&one, 0.99).is_empty());
    }
}
