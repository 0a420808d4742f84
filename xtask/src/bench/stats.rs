//! Statistics: medians and ranges over repetitions, interpolation, and the aggregation of
//! runs into points and of overhead probes into rows.

use std::collections::BTreeMap;

use serde::Serialize;

use lags_proto::bench::RdhashdRecord;

use super::bootstrap::{point_ci, PointCi};
use super::records::{OverheadRec, Run};

/// Median with the spread (min, max) of the repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// Median and range of the values present; a missing value (a percentile that fell on a
/// request that never completed) counts as +inf, so it can make the median infinite.
pub fn spread(values: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
    let mut v: Vec<f64> = values
        .into_iter()
        .map(|x| x.unwrap_or(f64::INFINITY))
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// Linear interpolation of y(x) through sorted points; clamps outside the range. Pure.
pub fn interp(points: &[(f64, f64)], x: f64) -> Option<f64> {
    let mut p: Vec<(f64, f64)> = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first = p.first()?;
    if x <= first.0 {
        return Some(first.1);
    }
    for w in p.windows(2) {
        if x <= w[1].0 {
            let t = (x - w[0].0) / (w[1].0 - w[0].0);
            if w[0].1.is_infinite() || w[1].1.is_infinite() {
                return Some(if t < 0.5 { w[0].1 } else { w[1].1 });
            }
            return Some(w[0].1 + t * (w[1].1 - w[0].1));
        }
    }
    Some(p[p.len() - 1].1)
}

/// One (sweep, configuration, functions, load) point over its repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub sweep: String,
    pub config: String,
    pub funcs: usize,
    pub load: f64,
    pub reps: usize,
    pub slo: Option<Spread>,
    pub slo_light: Option<Spread>,
    pub slo_heavy: Option<Spread>,
    pub p50: Option<Spread>,
    pub p99: Option<Spread>,
    pub p999: Option<Spread>,
    pub light_p50: Option<Spread>,
    pub light_p99: Option<Spread>,
    pub heavy_p99: Option<Spread>,
    pub offered: Option<Spread>,
    pub achieved: Option<Spread>,
    pub throughput: Option<Spread>,
    pub util: Option<Spread>,
    pub kernel: Option<Spread>,
    pub ctx_per_req: Option<Spread>,
    pub worker_cs_per_req: Option<Spread>,
    pub schedule_per_req: Option<Spread>,
    pub run_delay_per_req: Option<Spread>,
    pub worker_wait_per_req: Option<Spread>,
    pub inflation: Option<Spread>,
    pub lags_starved: Option<Spread>,
}

pub fn points(runs: &[Run]) -> Vec<Point> {
    let mut groups: BTreeMap<(String, String, usize, i64), Vec<&Run>> = BTreeMap::new();
    for r in runs {
        let key = (
            r.sweep.clone(),
            r.config.clone(),
            r.funcs,
            (r.load * 1000.0).round() as i64,
        );
        groups.entry(key).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((sweep, config, funcs, load), rs)| {
            let sp = |f: &dyn Fn(&Run) -> Option<f64>| spread(rs.iter().map(|r| f(r)));
            Point {
                sweep,
                config,
                funcs,
                load: load as f64 / 1000.0,
                reps: rs.len(),
                slo: sp(&|r| r.all.slo_attainment),
                slo_light: sp(&|r| r.light.slo_attainment),
                slo_heavy: sp(&|r| r.heavy.slo_attainment),
                p50: sp(&|r| r.all.p50_ms),
                p99: sp(&|r| r.all.p99_ms),
                p999: sp(&|r| r.all.p999_ms),
                light_p50: sp(&|r| r.light.p50_ms),
                light_p99: sp(&|r| r.light.p99_ms),
                heavy_p99: sp(&|r| r.heavy.p99_ms),
                offered: sp(&|r| Some(r.offered_load)),
                achieved: sp(&|r| Some(r.achieved_load)),
                throughput: sp(&|r| Some(r.throughput_rps)),
                util: sp(&|r| Some(r.cpu_util)),
                kernel: sp(&|r| Some(r.cpu_kernel)),
                ctx_per_req: sp(&|r| r.ctxt_per_req),
                worker_cs_per_req: sp(&|r| r.worker_cs_per_req),
                schedule_per_req: sp(&|r| r.schedule_per_req),
                run_delay_per_req: sp(&|r| r.run_delay_ms_per_req),
                worker_wait_per_req: sp(&|r| r.worker_wait_ms_per_req),
                inflation: sp(&|r| r.work_inflation),
                lags_starved: if rs.iter().any(|r| r.lags.is_some()) {
                    sp(&|r| r.lags.as_ref().map(|l| l.starved_picks as f64))
                } else {
                    None
                },
            }
        })
        .collect()
}

/// Fewest completed requests for a point to decide anything (issue 11: at least 10^4).
pub const RD_MIN_REQUESTS: u64 = 10_000;

/// Goodput of an rdhashd run: requests under the threshold per second of the window.
pub fn goodput(r: &RdhashdRecord) -> Option<f64> {
    (r.window_s > 0.0).then(|| r.good as f64 / r.window_s)
}

/// One rdhashd (configuration, function count) point over its repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct RdPoint {
    pub config: String,
    pub funcs: usize,
    /// Concurrency scale: the trace's in-flight targets times this (1: as they are).
    pub scale: f64,
    pub reps: usize,
    pub completed: Option<Spread>,
    /// Fewest completed requests of a repetition.
    pub min_completed: u64,
    /// A repetition completed fewer than [`RD_MIN_REQUESTS`].
    pub underpowered: bool,
    /// Requests under the threshold per second.
    pub goodput: Option<Spread>,
    /// Completed requests per second.
    pub rps: Option<Spread>,
    /// Goodput over stock's best repetition at the same function count.
    pub goodput_norm: Option<Spread>,
    pub p50: Option<Spread>,
    pub p90: Option<Spread>,
    pub p99: Option<Spread>,
    pub p999: Option<Spread>,
    pub ctx_per_req: Option<Spread>,
    pub schedule_per_req: Option<Spread>,
    /// Member starts that LAGS moved ahead of stock's order (`lags_picks`) per completed
    /// request; `None` where no run had LAGS statistics (stock, tuned, a kernel without LAGS).
    pub lags_picks_per_req: Option<Spread>,
    pub util: Option<Spread>,
    /// CPU time of the whole guest (every CPU, kernel included) per completed request, ms.
    pub cpu_ms_per_req: Option<Spread>,
    /// Of it, the kernel's (system, irq, softirq), and the rest (user space); `None` in
    /// records from before the split.
    pub kernel_ms_per_req: Option<Spread>,
    pub user_ms_per_req: Option<Spread>,
    /// Wake-ups of a task on another CPU than the waker's per completed request; `None`
    /// without schedstats and in records from before them.
    pub remote_wakeups_per_req: Option<Spread>,
    pub inflight_target: Option<Spread>,
    /// Window seconds, summed over the repetitions, in which the thread cap bit.
    pub capped_seconds: u64,
    pub threshold_ms: f64,
    /// Block-bootstrap 95% intervals over the repetitions' seconds.
    pub ci: Option<PointCi>,
    /// Completed requests under the threshold, as a fraction of the completed ones.
    pub good_fraction: Option<Spread>,
    /// Share of all CPU time (idle included) inside `__schedule()`, from `perf` samples.
    pub sched_share: Option<Spread>,
    /// The same share of the busy (non-idle) CPU time.
    pub sched_busy_share: Option<Spread>,
    /// µs inside `__schedule()` per context switch of the window.
    pub sched_us_per_switch: Option<Spread>,
    /// Share of all CPU time (idle included) inside `schedule()` and `schedule_idle()` with
    /// their callees, from the ftrace function profiler (`--sched-ftrace`): the prototype's
    /// quantity.
    pub ftrace_share: Option<Spread>,
    /// µs inside them per call, from the function profiler.
    pub ftrace_us_per_call: Option<Spread>,
    /// Their calls per completed request, from the function profiler.
    pub ftrace_calls_per_req: Option<Spread>,
}

/// A concurrency scale as an ordered key (millionths).
pub fn scale_key(scale: f64) -> i64 {
    (scale * 1e6).round() as i64
}

impl RdPoint {
    /// The workload scale of the point: functions × concurrency scale (users for knative),
    /// the axis its capacity is measured on.
    pub fn workload(&self) -> f64 {
        self.funcs as f64 * self.scale
    }

    /// The point's name in tables: the count, and the scale when it is not 1.
    pub fn label(&self) -> String {
        point_label(self.funcs, self.scale)
    }
}

/// "16" at scale 1, else "16 × 0.75".
pub fn point_label(funcs: usize, scale: f64) -> String {
    if scale == 1.0 {
        funcs.to_string()
    } else {
        format!("{funcs} × {scale}")
    }
}

/// Aggregates rdhashd runs into points, ordered by function count, scale, then
/// configuration. Goodput is normalised per run to the best stock repetition at its
/// function count and scale (no normalisation without a stock run there). Pure.
pub fn rd_points(recs: &[RdhashdRecord]) -> Vec<RdPoint> {
    let mut groups: BTreeMap<(usize, i64, String), Vec<&RdhashdRecord>> = BTreeMap::new();
    for r in recs {
        groups
            .entry((r.funcs, scale_key(r.scale()), r.config.clone()))
            .or_default()
            .push(r);
    }
    let stock_best = |funcs: usize, sk: i64| {
        recs.iter()
            .filter(|r| r.funcs == funcs && scale_key(r.scale()) == sk && r.config == "stock")
            .filter_map(goodput)
            .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))))
            .filter(|&b| b > 0.0)
    };
    groups
        .into_iter()
        .map(|((funcs, sk, config), rs)| {
            let sp = |f: &dyn Fn(&RdhashdRecord) -> Option<f64>| spread(rs.iter().map(|r| f(r)));
            // A quantity no run measured (no schedstats, no profile) is unknown, not ∞.
            let known = |f: &dyn Fn(&RdhashdRecord) -> Option<f64>| {
                if rs.iter().any(|r| f(r).is_some()) {
                    sp(f)
                } else {
                    None
                }
            };
            let best = stock_best(funcs, sk);
            let min_completed = rs.iter().map(|r| r.completed).min().unwrap_or(0);
            RdPoint {
                reps: rs.len(),
                completed: sp(&|r| Some(r.completed as f64)),
                min_completed,
                underpowered: min_completed < RD_MIN_REQUESTS,
                goodput: sp(&|r| goodput(r)),
                rps: sp(&|r| (r.window_s > 0.0).then(|| r.completed as f64 / r.window_s)),
                goodput_norm: best.and_then(|b| sp(&|r| goodput(r).map(|g| g / b))),
                p50: sp(&|r| r.p50_ms),
                p90: sp(&|r| r.p90_ms),
                p99: sp(&|r| r.p99_ms),
                p999: sp(&|r| r.p999_ms),
                ctx_per_req: sp(&|r| r.ctxt_per_req),
                schedule_per_req: known(&|r| r.schedule_per_req),
                // LAGS counts picks only while schedstats are on, which is when the record
                // has schedule() counts.
                lags_picks_per_req: known(&|r| {
                    let l = r.lags.as_ref()?;
                    r.schedule_per_req?;
                    (r.completed > 0).then(|| l.picks as f64 / r.completed as f64)
                }),
                util: sp(&|r| Some(r.cpu_util)),
                cpu_ms_per_req: sp(&|r| cpu_ms_per_req(r, Some(r.cpu_util))),
                kernel_ms_per_req: known(&|r| cpu_ms_per_req(r, r.cpu_kernel)),
                user_ms_per_req: known(&|r| {
                    cpu_ms_per_req(r, r.cpu_kernel.map(|k| (r.cpu_util - k).max(0.0)))
                }),
                remote_wakeups_per_req: known(&|r| {
                    let remote = r.wakeups?.saturating_sub(r.wakeups_local?);
                    (r.completed > 0).then(|| remote as f64 / r.completed as f64)
                }),
                ci: point_ci(&rs),
                good_fraction: sp(&|r| {
                    (r.completed > 0).then(|| r.good as f64 / r.completed as f64)
                }),
                sched_share: known(&|r| r.sched_profile.as_ref().map(|p| p.schedule_share)),
                sched_busy_share: known(&|r| {
                    let p = r.sched_profile.as_ref()?;
                    (p.idle_share < 1.0).then(|| p.schedule_share / (1.0 - p.idle_share))
                }),
                sched_us_per_switch: known(&|r| {
                    let p = r.sched_profile.as_ref()?;
                    (r.ctxt > 0)
                        .then(|| p.schedule_share * p.sampled_ns as f64 / r.ctxt as f64 / 1e3)
                }),
                ftrace_share: known(&|r| {
                    let f = r.sched_ftrace.as_ref()?;
                    let cpu_ns = r.window_s * 1e9 * r.cpus as f64;
                    (cpu_ns > 0.0).then(|| f.time_ns as f64 / cpu_ns)
                }),
                ftrace_us_per_call: known(&|r| {
                    let f = r.sched_ftrace.as_ref()?;
                    (f.calls > 0).then(|| f.time_ns as f64 / f.calls as f64 / 1e3)
                }),
                ftrace_calls_per_req: known(&|r| {
                    let f = r.sched_ftrace.as_ref()?;
                    (r.completed > 0).then(|| f.calls as f64 / r.completed as f64)
                }),
                inflight_target: sp(&|r| Some(r.inflight_target_mean)),
                capped_seconds: rs.iter().map(|r| r.capped_seconds).sum(),
                threshold_ms: rs.first().map_or(0.0, |r| r.threshold_ms),
                config,
                funcs,
                scale: rs.first().map_or(1.0, |r| r.scale()),
            }
        })
        .collect()
}

/// CPU time per completed request, ms, of a `share` of all the guest's CPU time over the
/// window; `None` without completed requests or a share.
fn cpu_ms_per_req(r: &RdhashdRecord, share: Option<f64>) -> Option<f64> {
    (r.completed > 0)
        .then(|| share.map(|s| s * r.cpus as f64 * r.window_s * 1e3 / r.completed as f64))
        .flatten()
}

/// Whether a closed-loop point met the SLO: at least the target fraction of its completed
/// requests under the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SloVerdict {
    /// The 95% interval of the fraction lies at or above the target (without an interval,
    /// the median does).
    Held,
    /// The interval lies below the target (without one, the median does).
    Missed,
    /// The interval contains the target: this point cannot say.
    Undecided,
}

/// The SLO verdict of a point, from the bootstrap interval of its fraction under the
/// threshold when there is one, else from the median over the repetitions. Pure.
pub fn slo_verdict(p: &RdPoint, target: f64) -> Option<SloVerdict> {
    if let Some(ci) = p.ci.as_ref().and_then(|c| c.good_fraction) {
        return Some(if ci.lo >= target {
            SloVerdict::Held
        } else if ci.hi < target {
            SloVerdict::Missed
        } else {
            SloVerdict::Undecided
        });
    }
    p.good_fraction.map(|g| {
        if g.median >= target {
            SloVerdict::Held
        } else {
            SloVerdict::Missed
        }
    })
}

/// The capacity of one configuration of a closed-loop workload on the tested workload
/// scales ([`RdPoint::workload`]: functions × concurrency scale, or users): assuming the
/// SLO, once missed, stays missed at larger scales, the capacity c lies in
/// `[at_least, below)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleCapacity {
    pub config: String,
    /// The largest tested scale up to which the SLO held at every tested scale; `None`
    /// when it did not hold at the smallest.
    pub at_least: Option<f64>,
    /// The smallest tested scale at which the SLO was missed; `None` when it was missed
    /// nowhere (the capacity has no upper bound from this run).
    pub below: Option<f64>,
    /// Every tested scale with its verdict, ascending.
    pub verdicts: Vec<(f64, SloVerdict)>,
}

/// The capacities of every configuration. Undecided scales, and scales after one, widen
/// the bracket instead of moving it. Pure.
pub fn scale_capacity(rd: &[RdPoint], target: f64) -> Vec<ScaleCapacity> {
    let configs: std::collections::BTreeSet<&str> = rd.iter().map(|p| p.config.as_str()).collect();
    configs
        .into_iter()
        .map(|c| {
            let mut ps: Vec<&RdPoint> = rd.iter().filter(|p| p.config == c).collect();
            ps.sort_by(|a, b| a.workload().total_cmp(&b.workload()));
            let verdicts: Vec<(f64, SloVerdict)> = ps
                .iter()
                .filter_map(|p| slo_verdict(p, target).map(|v| (p.workload(), v)))
                .collect();
            let at_least = verdicts
                .iter()
                .take_while(|(_, v)| *v == SloVerdict::Held)
                .last()
                .map(|(f, _)| *f);
            let below = verdicts
                .iter()
                .find(|(_, v)| *v == SloVerdict::Missed)
                .map(|(f, _)| *f);
            ScaleCapacity {
                config: c.to_string(),
                at_least,
                below,
                verdicts,
            }
        })
        .collect()
}

/// One repetition's capacities: every configuration's bracket from that repetition alone,
/// with SLO verdicts from the block bootstrap of its own seconds, and the LAGS/stock ratio
/// range. The configurations of a repetition ran the same trace window back to back, so
/// the ratio is paired; its intervals carry the variation within the window (which seconds,
/// the host's noise), not the variation between windows, which the pooled capacity carries.
#[derive(Debug, Clone, Serialize)]
pub struct WindowCapacity {
    pub rep: usize,
    /// Where the repetition's window starts in the trace, in seconds.
    pub trace_offset_s: u64,
    pub caps: Vec<ScaleCapacity>,
    pub ratio: Option<RatioRange>,
    /// The repetition's points, whose intervals gave the verdicts.
    #[serde(skip)]
    pub points: Vec<RdPoint>,
}

/// The capacities of every repetition on its own ([`WindowCapacity`]); empty with fewer
/// than two repetitions, where the pooled capacity is the same thing. Pure.
pub fn window_capacities(recs: &[RdhashdRecord], target: f64) -> Vec<WindowCapacity> {
    // A window is a repetition's number and its place in the trace (merged boots with other
    // seeds have other windows under the same number).
    let reps: std::collections::BTreeSet<(usize, u64)> =
        recs.iter().map(|r| (r.rep, r.trace_offset_s)).collect();
    if reps.len() < 2 {
        return Vec::new();
    }
    reps.into_iter()
        .map(|(rep, trace_offset_s)| {
            let rs: Vec<RdhashdRecord> = recs
                .iter()
                .filter(|r| r.rep == rep && r.trace_offset_s == trace_offset_s)
                .cloned()
                .collect();
            let points = rd_points(&rs);
            let caps = scale_capacity(&points, target);
            WindowCapacity {
                rep,
                trace_offset_s,
                ratio: lags_vs_stock(&caps),
                caps,
                points,
            }
        })
        .collect()
}

/// The range of a capacity ratio `num / den` that the two brackets allow: the ratio lies
/// above `lo` and below `hi` (`None`: no upper bound). Pure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RatioRange {
    pub lo: f64,
    pub hi: Option<f64>,
}

/// LAGS's capacity over stock's, when both configurations ran. Pure.
pub fn lags_vs_stock(caps: &[ScaleCapacity]) -> Option<RatioRange> {
    let get = |name: &str| caps.iter().find(|c| c.config == name);
    Some(ratio_range(get("lags")?, get("stock")?))
}

pub fn ratio_range(num: &ScaleCapacity, den: &ScaleCapacity) -> RatioRange {
    RatioRange::quotient(num.range(), den.range())
}

impl ScaleCapacity {
    /// The bracket as the range of capacities it allows (0 below when it missed at the
    /// smallest scale, no upper end when it held everywhere).
    fn range(&self) -> RatioRange {
        RatioRange {
            lo: self.at_least.unwrap_or(0.0),
            hi: self.below,
        }
    }
}

impl RatioRange {
    /// `num / den` over every pair of values the two ranges allow.
    pub fn quotient(num: RatioRange, den: RatioRange) -> RatioRange {
        let lo = match den.hi {
            Some(h) if h > 0.0 => num.lo / h,
            _ => 0.0,
        };
        let hi = match num.hi {
            Some(n) if den.lo > 0.0 => Some(n / den.lo),
            _ => None,
        };
        RatioRange { lo, hi }
    }

    /// Whether the ratio is at least `x`: `Some(true)` when the whole range is, `Some(false)`
    /// when none of it is, `None` when the range straddles `x`.
    pub fn at_least(&self, x: f64) -> Option<bool> {
        if self.lo >= x {
            Some(true)
        } else if self.hi.is_some_and(|h| h <= x) {
            Some(false)
        } else {
            None
        }
    }

    pub fn describe(&self) -> String {
        match self.hi {
            Some(h) => format!("between {:.2} and {h:.2}", self.lo),
            None => format!("above {:.2}, no upper bound", self.lo),
        }
    }
}

/// Overhead of one probe: medians per mode and the change of "on" against "off".
#[derive(Debug, Clone, Serialize)]
pub struct OverheadRow {
    pub probe: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// mode -> spread ("off", "on-nogroups", "kernel" = baseline kernel).
    pub modes: BTreeMap<String, Spread>,
    /// Slowdown of on-nogroups against off, percent (positive = slower with LAGS on).
    pub on_vs_off_pct: Option<f64>,
    /// Slowdown of the LAGS kernel (off) against the baseline kernel, percent.
    pub off_vs_baseline_pct: Option<f64>,
    /// (max - min) / median of the "off" repetitions, percent: the noise floor.
    pub noise_pct: Option<f64>,
    pub errors: Vec<String>,
}

fn slowdown(x: f64, reference: f64, higher_is_better: bool) -> f64 {
    if higher_is_better {
        (reference - x) / reference * 100.0
    } else {
        (x - reference) / reference * 100.0
    }
}

pub fn overhead_rows(recs: &[OverheadRec]) -> Vec<OverheadRow> {
    let mut by: BTreeMap<String, Vec<&OverheadRec>> = BTreeMap::new();
    for r in recs {
        by.entry(r.probe.clone()).or_default().push(r);
    }
    by.into_iter()
        .map(|(probe, rs)| {
            let hib = rs.iter().any(|r| r.higher_is_better);
            let unit = rs
                .iter()
                .find(|r| !r.unit.is_empty())
                .map(|r| r.unit.clone())
                .unwrap_or_default();
            let mut modes = BTreeMap::new();
            let names: std::collections::BTreeSet<&str> =
                rs.iter().map(|r| r.mode.as_str()).collect();
            for m in names {
                let vals: Vec<f64> = rs
                    .iter()
                    .filter(|r| r.mode == m)
                    .filter_map(|r| r.value)
                    .collect();
                if let Some(s) = spread(vals.into_iter().map(Some)) {
                    modes.insert(m.to_string(), s);
                }
            }
            let off = modes.get("off").map(|s| s.median);
            let on = modes.get("on-nogroups").map(|s| s.median);
            let base = modes.get("kernel").map(|s| s.median);
            OverheadRow {
                on_vs_off_pct: off.zip(on).map(|(off, on)| slowdown(on, off, hib)),
                off_vs_baseline_pct: off.zip(base).map(|(off, b)| slowdown(off, b, hib)),
                noise_pct: modes.get("off").map(|s| (s.max - s.min) / s.median * 100.0),
                errors: rs.iter().filter_map(|r| r.error.clone()).collect(),
                probe,
                unit,
                higher_is_better: hib,
                modes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the median of odd and even samples, missing values as +inf.
    #[test]
    fn spreads_and_interp() {
        let s = spread([Some(3.0), Some(1.0), Some(2.0)]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(spread([Some(1.0), Some(2.0)]).unwrap().median, 1.5);
        assert!(spread([Some(1.0), None, None])
            .unwrap()
            .median
            .is_infinite());
        assert!(spread(std::iter::empty()).is_none());
        let p = [(0.5, 10.0), (0.7, 20.0)];
        assert_eq!(interp(&p, 0.6), Some(15.0));
        assert_eq!(interp(&p, 0.1), Some(10.0));
        assert_eq!(interp(&p, 0.9), Some(20.0));
        assert_eq!(interp(&[], 0.9), None);
    }

    fn rd(config: &str, funcs: usize, good: u64, completed: u64) -> RdhashdRecord {
        RdhashdRecord {
            config: config.into(),
            funcs,
            good,
            completed,
            window_s: 10.0,
            threshold_ms: 1000.0,
            ..RdhashdRecord::default()
        }
    }

    // Expect goodput = good requests per window second, normalised per run to stock's best
    // repetition at the same function count, and points with a repetition under 10^4
    // completed requests marked underpowered.
    #[test]
    fn rdhashd_goodput_and_normalisation() {
        assert_eq!(goodput(&rd("stock", 1, 50, 60)), Some(5.0));
        assert_eq!(goodput(&RdhashdRecord::default()), None);
        let recs = [
            rd("stock", 4, 1000, 20_000),
            rd("stock", 4, 800, 20_000),
            rd("lags", 4, 1200, 20_000),
            rd("lags", 4, 600, 9_999),
            rd("lags", 8, 500, 20_000),
        ];
        let p = rd_points(&recs);
        let key: Vec<(usize, &str)> = p.iter().map(|p| (p.funcs, p.config.as_str())).collect();
        assert_eq!(key, [(4, "lags"), (4, "stock"), (8, "lags")]);
        let stock = &p[1];
        let g = stock.goodput.unwrap();
        assert_eq!((g.median, g.min, g.max), (90.0, 80.0, 100.0));
        let n = stock.goodput_norm.unwrap();
        assert_eq!((n.median, n.min, n.max), (0.9, 0.8, 1.0));
        assert!(!stock.underpowered);
        let lags = &p[0];
        let n = lags.goodput_norm.unwrap();
        assert!((n.median - 0.9).abs() < 1e-12, "{n:?}");
        assert_eq!((n.min, n.max), (0.6, 1.2));
        assert!(lags.underpowered && lags.min_completed == 9_999);
        // No stock run at 8 functions: nothing to normalise to.
        assert!(p[2].goodput_norm.is_none() && p[2].goodput.is_some());
    }

    // Expect LAGS's picks per request only from runs with schedstats on (the kernel counts
    // picks only then; such records have schedule() counts), unknown otherwise.
    #[test]
    fn lags_picks_need_schedstats() {
        let lags = |schedule_per_req| RdhashdRecord {
            lags: Some(lags_proto::bench::LagsCounters {
                picks: 1000,
                ..Default::default()
            }),
            schedule_per_req,
            ..rd("lags", 4, 400, 500)
        };
        let on = rd_points(&[lags(Some(12.0))]);
        assert_eq!(on[0].lags_picks_per_req.map(|s| s.median), Some(2.0));
        let off = rd_points(&[lags(None)]);
        assert!(off[0].lags_picks_per_req.is_none());
        assert!(off[0].schedule_per_req.is_none());
    }

    // Expect the function profiler's time inside schedule() as a share of all CPU time of
    // the window (every CPU), per call and calls per completed request; runs without it
    // leave the point's values unknown rather than zero.
    #[test]
    fn function_profiler_shares() {
        let profiled = |time_ns, calls| RdhashdRecord {
            cpus: 2,
            sched_ftrace: Some(lags_proto::bench::SchedFtrace { calls, time_ns }),
            ..rd("lags", 4, 400, 500)
        };
        // 1 s inside schedule() in a 10 s window on 2 CPUs: 5%.
        let p = rd_points(&[profiled(1_000_000_000, 1000), profiled(3_000_000_000, 2000)]);
        let s = p[0].ftrace_share.unwrap();
        assert_eq!((s.min, s.max), (0.05, 0.15));
        let c = p[0].ftrace_us_per_call.unwrap();
        assert_eq!((c.min, c.max), (1000.0, 1500.0));
        let r = p[0].ftrace_calls_per_req.unwrap();
        assert_eq!((r.min, r.max), (2.0, 4.0));
        let none = rd_points(&[rd("stock", 4, 400, 500)]);
        assert!(none[0].ftrace_share.is_none() && none[0].ftrace_us_per_call.is_none());
    }

    // Expect the capacity bracket to end at the first tested count where the SLO was
    // missed (a later recovery does not move it), an undecided count to widen it, and a
    // configuration that held everywhere to have no upper bound.
    #[test]
    fn rdhashd_capacity() {
        let recs = [
            rd("stock", 2, 1000, 1000),
            rd("stock", 8, 995, 1000),
            rd("stock", 16, 900, 1000),
            rd("stock", 38, 995, 1000),
            rd("lags", 2, 1000, 1000),
            rd("lags", 8, 1000, 1000),
            rd("lags", 16, 999, 1000),
            rd("lags", 38, 990, 1000),
            rd("tuned", 2, 980, 1000),
        ];
        let caps = scale_capacity(&rd_points(&recs), 0.99);
        let brackets: Vec<(&str, Option<f64>, Option<f64>)> = caps
            .iter()
            .map(|c| (c.config.as_str(), c.at_least, c.below))
            .collect();
        assert_eq!(
            brackets,
            [
                ("lags", Some(38.0), None),
                ("stock", Some(8.0), Some(16.0)),
                ("tuned", None, Some(2.0)),
            ]
        );
        let (lags, stock) = (&caps[0], &caps[1]);
        // LAGS held up to 38 with no bound; stock's capacity is in [8, 16).
        let r = ratio_range(lags, stock);
        assert_eq!(
            r,
            RatioRange {
                lo: 38.0 / 16.0,
                hi: None
            }
        );
        assert_eq!(r.at_least(1.3), Some(true));
        // The other way round: stock below 16, LAGS at least 38, so below 16/38.
        let r = ratio_range(stock, lags);
        assert_eq!(
            r,
            RatioRange {
                lo: 0.0,
                hi: Some(16.0 / 38.0)
            }
        );
        assert_eq!(r.at_least(0.95), Some(false));
        // Both in [8, 16): the ratio lies between 0.5 and 2, so 1.3 is undecided; both in
        // [12, 14): between 0.857 and 1.167, decided below 1.3 but not at 0.95.
        let cap = |a, b| ScaleCapacity {
            config: String::new(),
            at_least: Some(a),
            below: Some(b),
            verdicts: Vec::new(),
        };
        let r = ratio_range(&cap(8.0, 16.0), &cap(8.0, 16.0));
        assert_eq!((r.lo, r.hi), (0.5, Some(2.0)));
        assert_eq!(r.at_least(1.3), None);
        let r = ratio_range(&cap(12.0, 14.0), &cap(12.0, 14.0));
        assert_eq!(r.at_least(1.3), Some(false));
        assert_eq!(r.at_least(0.95), None);
        assert_eq!(r.describe(), "between 0.86 and 1.17");
    }

    // Expect each repetition's capacity from its own runs (a window where stock misses at
    // 16 and LAGS holds everywhere, and one where both miss at 8), the paired ratio range
    // of each, and nothing with a single repetition.
    #[test]
    fn capacity_per_window() {
        let run = |config: &str, funcs: usize, rep: usize, good: u64| RdhashdRecord {
            rep,
            trace_offset_s: 100 * rep as u64,
            ..rd(config, funcs, good, 1000)
        };
        let mut recs = Vec::new();
        for (f, s0, l0, s1, l1) in [
            (4, 1000, 1000, 1000, 1000),
            (8, 1000, 1000, 900, 900),
            (16, 900, 1000, 900, 900),
        ] {
            recs.extend([
                run("stock", f, 0, s0),
                run("lags", f, 0, l0),
                run("stock", f, 1, s1),
                run("lags", f, 1, l1),
            ]);
        }
        let w = window_capacities(&recs, 0.99);
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].rep, w[0].trace_offset_s, w[1].trace_offset_s),
            (0, 0, 100)
        );
        let bracket = |wc: &WindowCapacity, c: &str| {
            let c = wc.caps.iter().find(|x| x.config == c).unwrap();
            (c.at_least, c.below)
        };
        assert_eq!(bracket(&w[0], "stock"), (Some(8.0), Some(16.0)));
        assert_eq!(bracket(&w[0], "lags"), (Some(16.0), None));
        assert_eq!(bracket(&w[1], "stock"), (Some(4.0), Some(8.0)));
        assert_eq!(w[0].ratio, Some(RatioRange { lo: 1.0, hi: None }));
        assert_eq!(
            w[1].ratio,
            Some(RatioRange {
                lo: 0.5,
                hi: Some(2.0)
            })
        );
        assert_eq!(w[0].points.len(), 6);
        let one: Vec<_> = recs.iter().filter(|r| r.rep == 0).cloned().collect();
        assert!(window_capacities(&one, 0.99).is_empty());
    }

    // Expect the verdict of a point with per-second counts to come from the interval of its
    // fraction: held when the interval is above the target, missed when below, undecided
    // when it straddles it, even if the median alone would say "held".
    #[test]
    fn slo_verdict_from_interval() {
        use lags_proto::bench::{Hist, SecondCounts};
        let with_seconds = |rep: usize, good: u64, completed: u64| RdhashdRecord {
            per_second: (0..30)
                .map(|_| SecondCounts {
                    completed,
                    good,
                    hist: Hist {
                        bins: vec![(60, completed)],
                    },
                })
                .collect(),
            rep,
            ..rd("stock", 4, good * 30, completed * 30)
        };
        let verdict = |recs: &[RdhashdRecord]| {
            let p = rd_points(recs);
            assert_eq!(p.len(), 1);
            slo_verdict(&p[0], 0.99)
        };
        assert_eq!(
            verdict(&[with_seconds(0, 1000, 1000), with_seconds(1, 999, 1000)]),
            Some(SloVerdict::Held)
        );
        assert_eq!(
            verdict(&[with_seconds(0, 950, 1000), with_seconds(1, 980, 1000)]),
            Some(SloVerdict::Missed)
        );
        // Medians 0.995 (two of three repetitions above), but one repetition at 0.95.
        assert_eq!(
            verdict(&[
                with_seconds(0, 995, 1000),
                with_seconds(1, 950, 1000),
                with_seconds(2, 996, 1000)
            ]),
            Some(SloVerdict::Undecided)
        );
        // Without per-second counts (older records) the median decides.
        assert_eq!(
            verdict(&[rd("stock", 4, 995, 1000)]),
            Some(SloVerdict::Held)
        );
    }
}
