//! The report: `summary.md` (Markdown) and `results.json`, and the environment they
//! describe.

use std::path::Path;

use anyhow::Result;
use lags_proto::bench::{KnPlan, Plan, Workload};
use serde::Serialize;
use serde_json::{json, Value};

use super::bootstrap::{capacity_cis, comparisons, CapacityCi, Comparison, Interval, ITERATIONS};
use super::headline::{headline, Headline};
use super::plan::Settings;
use super::plot::plots;
use super::records::{Records, Run};
use super::stats::{
    lags_vs_stock, overhead_rows, point_label, points, rd_points, scale_capacity,
    window_capacities, OverheadRow, Point, RatioRange, RdPoint, ScaleCapacity, SloVerdict, Spread,
    WindowCapacity, RD_MIN_REQUESTS,
};
use crate::util;
use lags_proto::bench::RdhashdRecord;

fn fmt_spread(s: &Option<Spread>, scale: f64, prec: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) => {
            let f = |x: f64| {
                if x.is_finite() {
                    format!("{:.*}", prec, x * scale)
                } else {
                    "∞".into()
                }
            };
            if s.n > 1 {
                format!("{} [{}–{}]", f(s.median), f(s.min), f(s.max))
            } else {
                f(s.median)
            }
        }
    }
}

/// Environment of the whole benchmark (host side).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Env {
    pub command: String,
    pub accel: String,
    pub accel_reason: String,
    pub cpus: u32,
    pub mem_mib: u32,
    pub seed: u64,
    pub kernel_release: String,
    pub series_hash: String,
    pub config_hash: String,
    pub qemu: String,
    pub host_cpu: String,
    pub host_cpus: usize,
    pub slo: String,
    /// Scheduling class of the load generator (`--fifo-dispatch`).
    pub dispatcher: String,
    pub settings: Option<Settings>,
    pub boots: Vec<BootInfo>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BootInfo {
    pub name: String,
    pub kernel: String,
    pub params: Vec<String>,
    pub elapsed_s: f64,
    pub verdict: String,
    pub message: String,
    pub host_loadavg_before: String,
    pub host_loadavg_after: String,
    /// Percent of the host's CPU time its hypervisor took during the boot (`/proc/stat`
    /// steal); `None` when not read (and in reports from before it).
    pub host_steal_pct: Option<f64>,
    pub guest_status: String,
}

/// The rdhashd section: one row per (function count, configuration). Pure.
pub fn render_rdhashd(
    rd: &[RdPoint],
    cmp: &[Comparison],
    detail: &CapacityDetail,
    cpus: u32,
    target: f64,
) -> String {
    let mut md = String::new();
    let thr = rd.first().map_or(0.0, |p| p.threshold_ms);
    md.push_str(&format!(
        "\n## rdhashd workload\n\nClosed loop, one thread per in-flight request, per-second in-flight targets from the synthetic trace. Goodput = requests with latency < {thr} ms per second of the measured window; normalised per repetition to stock's best repetition at the same density. Medians over the repetitions, [min–max] in brackets. **underpowered**: a repetition completed fewer than {RD_MIN_REQUESTS} requests, too few to decide a difference.\n"
    ));
    md.push_str("\n| F | F/CPU | config | requests | goodput /s | goodput / stock best | p50 ms | p99 ms | ctx/req | schedule()/req | LAGS picks/req | in-flight target | capped s | power |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for p in rd {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.label(),
            if cpus > 0 {
                format!("{:.1}", p.funcs as f64 / f64::from(cpus))
            } else {
                "–".into()
            },
            p.config,
            fmt_spread(&p.completed, 1.0, 0),
            fmt_spread(&p.goodput, 1.0, 1),
            fmt_spread(&p.goodput_norm, 1.0, 3),
            fmt_spread(&p.p50, 1.0, 1),
            fmt_spread(&p.p99, 1.0, 1),
            fmt_spread(&p.ctx_per_req, 1.0, 2),
            fmt_spread(&p.schedule_per_req, 1.0, 2),
            fmt_spread(&p.lags_picks_per_req, 1.0, 2),
            fmt_spread(&p.inflight_target, 1.0, 1),
            p.capped_seconds,
            power(p),
        ));
    }
    md.push_str(&format!("\nLatency percentiles are the upper edges of the guest histogram's bins (20 per decade: up to 12% high). \"capped s\": window seconds (summed over repetitions) in which the trace asked for more in-flight requests than the thread cap (`lb.rd_max_threads`) allowed. {LAGS_PICKS_NOTE}\n"));
    md.push_str(&render_cpu_costs(rd, cmp, "F"));
    md.push_str(&render_rd_intervals(rd, cmp, "F"));
    let unit = if rd.iter().any(|p| p.scale != 1.0) {
        "functions × scale"
    } else {
        "functions"
    };
    md.push_str(&render_capacity(rd, target, unit, Pairing::TraceWindow));
    md.push_str(&render_interpolated_capacity(
        &detail.interpolated,
        target,
        unit,
        Pairing::TraceWindow,
    ));
    md.push_str(&render_window_capacity(
        &detail.windows,
        unit,
        Pairing::TraceWindow,
    ));
    md
}

/// The capacity section of a closed-loop workload, `unit` naming its scale: each
/// configuration's bracket with the verdict at every tested scale, and the range of the
/// LAGS/stock ratio with the two capacity targets decided on it. Pure.
pub fn render_capacity(rd: &[RdPoint], target: f64, unit: &str, pairing: Pairing) -> String {
    let mut md = String::new();
    let caps = scale_capacity(rd, target);
    if caps.is_empty() {
        return md;
    }
    md.push_str(&format!(
        "\n### Capacity\n\nThe SLO holds at a tested count when at least {:.1}% {}: **held** when the 95% interval of that fraction (the two-stage bootstrap above) lies at or above {:.1}%, **missed** when it lies below, **undecided** when it contains it (without per-second counts, the median decides). Assuming that a missed SLO stays missed at larger counts, a capacity lies from the last count of the first run of held ones up to, not including, the first missed count.\n\n| config | capacity ({unit}) | per tested count: verdict, {fname} [95% CI] |\n|---|---|---|\n",
        target * 100.0,
        pairing.fraction(),
        target * 100.0,
        fname = pairing.fraction_name(),
    ));
    for c in &caps {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            c.config,
            fmt_bracket(c),
            verdict_detail(rd, c)
        ));
    }
    if let Some(r) = lags_vs_stock(&caps) {
        let (met, loss) = ratio_targets(&r, ON_THESE_COUNTS);
        md.push_str(&format!(
            "\nCapacity ratio LAGS/stock: {}.\n\n- Target ratio ≥ 1.3: {met}.\n- No capacity loss of more than 5% (ratio ≥ 0.95): {loss}.\n",
            r.describe(),
        ));
    }
    md
}

/// A capacity bracket as the capacity tables print it.
fn fmt_bracket(c: &ScaleCapacity) -> String {
    let w = fmt_workload;
    match (c.at_least, c.below) {
        (Some(a), Some(b)) => format!("[{}, {})", w(a), w(b)),
        (Some(a), None) => format!("≥ {}, no upper bound", w(a)),
        (None, Some(b)) => format!("< {}", w(b)),
        (None, None) => "undecided".into(),
    }
}

/// Every tested scale of `c` with its verdict and the fraction under the threshold [95% CI]
/// of the point in `rd` it came from.
fn verdict_detail(rd: &[RdPoint], c: &ScaleCapacity) -> String {
    let w = fmt_workload;
    let detail: Vec<String> = c
        .verdicts
        .iter()
        .map(|(f, v)| {
            let p = rd
                .iter()
                .find(|p| p.config == c.config && p.workload() == *f);
            let name = p.map_or(w(*f), |p| {
                if p.scale == 1.0 {
                    w(*f)
                } else {
                    format!("{} ({})", p.label(), w(*f))
                }
            });
            let ci = p
                .and_then(|p| p.ci.as_ref())
                .and_then(|ci| ci.good_fraction);
            let med = p.and_then(|p| p.good_fraction).map(|g| g.median);
            format!(
                "{name}: {} {}{}",
                match v {
                    SloVerdict::Held => "held",
                    SloVerdict::Missed => "**missed**",
                    SloVerdict::Undecided => "undecided",
                },
                med.map_or("–".into(), |m| format!("{:.2}%", m * 100.0)),
                ci.map_or(String::new(), |ci| format!(
                    " [{:.2}, {:.2}]",
                    ci.lo * 100.0,
                    ci.hi * 100.0
                )),
            )
        })
        .collect();
    detail.join("; ")
}

/// The two capacity targets decided on a ratio range: (ratio ≥ 1.3, ratio ≥ 0.95),
/// `undecided` naming a range that straddles the target.
fn ratio_targets(r: &RatioRange, undecided: &str) -> (String, String) {
    let say = |v: Option<bool>, yes: &str, no: &str| match v {
        Some(true) => yes.to_string(),
        Some(false) => no.to_string(),
        None => undecided.to_string(),
    };
    (
        say(r.at_least(1.3), "**met**", "**not met**"),
        say(r.at_least(0.95), "**holds**", "**a loss**"),
    )
}

/// How a bracket's ratio range says "undecided".
const ON_THESE_COUNTS: &str = "**undecided** on these counts";

/// What the capacity sections add to a closed-loop workload's points: the interpolated
/// capacities with their intervals, and the capacity of each window on its own.
#[derive(Debug, Default)]
pub struct CapacityDetail {
    pub interpolated: Vec<CapacityCi>,
    pub windows: Vec<WindowCapacity>,
}

impl CapacityDetail {
    pub fn of(recs: &[RdhashdRecord], target: f64) -> CapacityDetail {
        CapacityDetail {
            interpolated: capacity_cis(recs, target),
            windows: window_capacities(recs, target),
        }
    }
}

/// A capacity's bounds: one number, or a one-sided range when the curve did not cross.
fn fmt_bounds(b: RatioRange, prec: usize) -> String {
    match b.hi {
        Some(h) if h == b.lo => format!("{:.prec$}", b.lo),
        Some(h) if b.lo == 0.0 => format!("< {h:.prec$}"),
        Some(h) => format!("{:.prec$}–{h:.prec$}", b.lo),
        // Neither curve crossed inside the tested range: a ratio it does not bound.
        None if b.lo == 0.0 => "unbounded".into(),
        None => format!("≥ {:.prec$}", b.lo),
    }
}

/// A 95% interval of bounds.
fn fmt_bounds_ci(b: RatioRange, prec: usize) -> String {
    match b.hi {
        Some(h) => format!("[{:.prec$}, {h:.prec$}]", b.lo),
        None => format!("[{:.prec$}, ∞)", b.lo),
    }
}

/// What a repetition's configurations share, which makes them compare paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pairing {
    /// A trace window and a seed (rdhashd).
    TraceWindow,
    /// The same user count only (knative): no trace, and the users' random streams run on
    /// across repetitions, so the configurations see the same distributions, not the same
    /// requests.
    Load,
    /// The same arrival schedule (zipf-open): every request at the same time, for the same
    /// function, with the same work.
    Schedule,
}

impl Pairing {
    fn shared(self) -> &'static str {
        match self {
            Pairing::TraceWindow => "the same trace window and seed",
            Pairing::Load => "the same user count (its users drawing from the same distributions)",
            Pairing::Schedule => {
                "the same arrival schedule at each load (the same requests at the same times)"
            }
        }
    }

    /// The fraction a capacity is read on, as a configuration's.
    fn its_fraction(self) -> &'static str {
        match self {
            Pairing::TraceWindow | Pairing::Load => "its fraction of requests under the threshold",
            Pairing::Schedule => "its SLO attainment (of the requests that arrived)",
        }
    }

    /// The fraction's name in a table header.
    fn fraction_name(self) -> &'static str {
        match self {
            Pairing::TraceWindow | Pairing::Load => "fraction under the threshold",
            Pairing::Schedule => "SLO attainment",
        }
    }

    /// What the SLO of a capacity is a fraction of.
    fn fraction(self) -> &'static str {
        match self {
            Pairing::TraceWindow | Pairing::Load => {
                "of the completed requests are under the threshold"
            }
            Pairing::Schedule => {
                "of the requests that arrived met their SLO (one that never completed missed it)"
            }
        }
    }

    /// A repetition's name in the per-window tables.
    fn window(self, wc: &WindowCapacity) -> String {
        match self {
            Pairing::TraceWindow => format!("{} (trace {} s)", wc.rep, wc.trace_offset_s),
            Pairing::Load | Pairing::Schedule => format!("{}", wc.rep),
        }
    }

    fn scope(self) -> &'static str {
        match self {
            Pairing::TraceWindow => "in this trace window",
            Pairing::Load | Pairing::Schedule => "in this repetition",
        }
    }
}

/// The interpolated capacities and their ratio to stock, with paired bootstrap intervals
/// ([`CapacityCi`]), and the two capacity targets decided on the ratio's
/// interval. Pure.
pub fn render_interpolated_capacity(
    cis: &[CapacityCi],
    target: f64,
    unit: &str,
    pairing: Pairing,
) -> String {
    let mut md = String::new();
    if cis.is_empty() {
        return md;
    }
    md.push_str(&format!(
        "\n### Capacity, interpolated, with intervals\n\nA configuration's capacity here is where {its}, pooled over the repetitions, first drops below {:.1}% as the workload grows, interpolated linearly between the two tested scales around the crossing (\"≥ x\": it held at every tested scale; \"< x\": it missed already at the smallest), on the scales every repetition ran for both configurations. The 95% intervals come from {ITERATIONS} paired resamples: the repetitions drawn with replacement, each drawn repetition's seconds in circular blocks, the same draw for both configurations and every scale, since they ran {shared}. A resample that does not cross counts with its most extreme reading, so an interval is never narrower than the data allow.\n\n| config | reps | scales | capacity ({unit}) | 95% CI | stock | 95% CI | ratio to stock | 95% CI | one-sided resamples | ratio ≥ 1.3 | ratio ≥ 0.95 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        target * 100.0,
        shared = pairing.shared(),
        its = pairing.its_fraction(),
    ));
    for c in cis {
        let (met, loss) = ratio_targets(&c.ratio_ci, "undecided");
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.config,
            c.reps,
            c.scales,
            fmt_bounds(c.capacity, 2),
            fmt_bounds_ci(c.capacity_ci, 2),
            fmt_bounds(c.stock, 2),
            fmt_bounds_ci(c.stock_ci, 2),
            fmt_bounds(c.ratio, 3),
            fmt_bounds_ci(c.ratio_ci, 3),
            c.censored,
            met,
            loss,
        ));
    }
    md
}

/// The capacity of each repetition on its own, paired LAGS against stock within it (see
/// [`WindowCapacity`]), and how many windows decide each target. Pure.
pub fn render_window_capacity(windows: &[WindowCapacity], unit: &str, pairing: Pairing) -> String {
    let mut md = String::new();
    if windows.is_empty() {
        return md;
    }
    md.push_str(&format!(
        "\n### Capacity per window\n\nEach repetition on its own: its configurations ran {shared} back to back, so their capacities compare paired. A verdict comes from the block bootstrap of that repetition's own seconds (circular blocks of ⌈n^⅓⌉ s, {ITERATIONS} resamples): its interval carries the variation within the window (which seconds, the host's noise), not the variation between windows, which the pooled capacity above carries. So a window's ratio answers \"{scope}, on this testbed\".\n\n| window | config | capacity ({unit}) | per tested count: verdict, {fname} [95% CI] |\n|---|---|---|---|\n",
        shared = pairing.shared(),
        scope = pairing.scope(),
        fname = pairing.fraction_name(),
    ));
    for wc in windows {
        for c in &wc.caps {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                pairing.window(wc),
                c.config,
                fmt_bracket(c),
                verdict_detail(&wc.points, c)
            ));
        }
    }
    let ratios: Vec<(String, RatioRange)> = windows
        .iter()
        .filter_map(|wc| wc.ratio.map(|r| (pairing.window(wc), r)))
        .collect();
    if ratios.is_empty() {
        return md;
    }
    md.push_str("\n| window | LAGS/stock capacity ratio | ≥ 1.3 | ≥ 0.95 (no loss over 5%) |\n|---|---|---|---|\n");
    for (window, r) in &ratios {
        let (met, loss) = ratio_targets(r, ON_THESE_COUNTS);
        md.push_str(&format!(
            "| {window} | {} | {met} | {loss} |\n",
            r.describe()
        ));
    }
    let count =
        |x: f64, want: Option<bool>| ratios.iter().filter(|(_, r)| r.at_least(x) == want).count();
    let n = ratios.len();
    md.push_str(&format!(
        "\nRatio ≥ 1.3: met in {} of {n} windows, not met in {}, undecided in {}. Ratio ≥ 0.95: holds in {} of {n}, a loss in {}, undecided in {}.\n",
        count(1.3, Some(true)),
        count(1.3, Some(false)),
        count(1.3, None),
        count(0.95, Some(true)),
        count(0.95, Some(false)),
        count(0.95, None),
    ));
    md
}

/// A workload scale as the capacity section prints it: whole numbers without decimals.
fn fmt_workload(x: f64) -> String {
    // 100 × 0.55 is 55.000000000000007 in binary floating point.
    let x = (x * 1e6).round() / 1e6;
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// What the "LAGS picks/req" column of the closed-loop tables counts.
const LAGS_PICKS_NOTE: &str = "\"LAGS picks/req\": starts of a LAGS group that stock's requests would have run later (`lags_picks` of `cpu.stat`), per completed request; – where no group had LAGS statistics or schedstats were off (LAGS counts picks only with `kernel.sched_schedstats`).";

/// The knative section: one row per (user count, configuration), then the intervals,
/// the comparison with stock and the capacity in users. Pure.
pub fn render_knative(
    kn: &[RdPoint],
    cmp: &[Comparison],
    detail: &CapacityDetail,
    target: f64,
) -> String {
    let mut md = String::new();
    let thr = kn.first().map_or(0.0, |p| p.threshold_ms);
    md.push_str(&format!(
        "\n## knative workload\n\nClosed-loop users (think time, then one request to a uniformly chosen pod, then wait for it); each pod a cgroup with a container child whose worker splits every request over its threads and joins them. Goodput = requests with latency < {thr} ms per second of the window. Medians over the repetitions, [min–max] in brackets; **underpowered**: a repetition completed fewer than {RD_MIN_REQUESTS} requests.\n\n| users | config | requests | RPS | goodput /s | p50 ms | p99 ms | ctx/req | schedule()/req | LAGS picks/req | in flight | util % | power |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    ));
    for p in kn {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.funcs,
            p.config,
            fmt_spread(&p.completed, 1.0, 0),
            fmt_spread(&p.rps, 1.0, 1),
            fmt_spread(&p.goodput, 1.0, 1),
            fmt_spread(&p.p50, 1.0, 1),
            fmt_spread(&p.p99, 1.0, 1),
            fmt_spread(&p.ctx_per_req, 1.0, 2),
            fmt_spread(&p.schedule_per_req, 1.0, 2),
            fmt_spread(&p.lags_picks_per_req, 1.0, 2),
            fmt_spread(&p.inflight_target, 1.0, 1),
            fmt_spread(&p.util, 100.0, 0),
            power(p),
        ));
    }
    md.push_str(&format!("\n{LAGS_PICKS_NOTE}\n"));
    md.push_str(&render_cpu_costs(kn, cmp, "users"));
    md.push_str(&render_rd_intervals(kn, cmp, "users"));
    md.push_str(&render_capacity(kn, target, "users", Pairing::Load));
    md.push_str(&render_interpolated_capacity(
        &detail.interpolated,
        target,
        "users",
        Pairing::Load,
    ));
    md.push_str(&render_window_capacity(
        &detail.windows,
        "users",
        Pairing::Load,
    ));
    md
}

/// A zipf-open sweep with intervals: each point's requests (and whether they can decide),
/// SLO attainment and tails with the two-stage bootstrap over its arrival seconds, each
/// configuration against stock paired on the same arrival schedule, and for the load sweep
/// the capacity on the load axis with intervals. Empty for runs without seconds. Pure.
pub fn render_zipf_windows(w: &Windows, sweep: &str, target: f64) -> String {
    let mut md = String::new();
    if w.points.is_empty() {
        return md;
    }
    md.push_str(&format!(
        "\n### {sweep} sweep: intervals\n\nThe same runs, second by second by arrival: a second holds every request that arrived in it, a request that never completed counts as missing its SLO. Two-stage bootstrap ({ITERATIONS} resamples): the repetitions drawn with replacement, then each drawn repetition's seconds in circular blocks of ⌈n^⅓⌉ seconds. **underpowered**: a repetition measured fewer than {RD_MIN_REQUESTS} requests, too few to decide a difference in a tail. Percentiles are the upper edges of the histogram's bins (20 per decade: up to 12% high).\n\n| F × load | config | requests | SLO % | 95% CI | p50 ms | 95% CI | p99 ms | 95% CI | power |\n|---|---|---|---|---|---|---|---|---|---|\n"
    ));
    for p in &w.points {
        let ci = p.ci.as_ref();
        let pct = |i: Option<Interval>| {
            i.map_or("–".into(), |c| {
                format!("[{:.2}, {:.2}]", c.lo * 100.0, c.hi * 100.0)
            })
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.label(),
            p.config,
            fmt_spread(&p.completed, 1.0, 0),
            fmt_spread(&p.good_fraction, 100.0, 2),
            pct(ci.and_then(|c| c.good_fraction)),
            fmt_spread(&p.p50, 1.0, 1),
            fmt_ci(ci.and_then(|c| c.p50), 1),
            fmt_spread(&p.p99, 1.0, 1),
            fmt_ci(ci.and_then(|c| c.p99), 1),
            power(p),
        ));
    }
    if !w.cmp.is_empty() {
        md.push_str("\nAgainst stock, paired: both configurations of a repetition ran the same arrival schedule, and are resampled with the same draws. Every second holds the same arrivals for both, so the ratio of requests within their SLO is the ratio of attainments. An interval that contains 1 is **no difference**.\n\n| F × load | config | reps | SLO attainment ratio | 95% CI | attainment | p99 ratio | 95% CI | p99 |\n|---|---|---|---|---|---|---|---|---|\n");
        for c in &w.cmp {
            md.push_str(&format!(
                "| {} | {} | {} | {:.4} | {} | {} | {} | {} | {} |\n",
                point_label(c.funcs, c.scale),
                c.config,
                c.reps,
                c.goodput_ratio,
                fmt_ci(c.goodput_ratio_ci, 4),
                c.goodput_verdict(),
                c.p99_ratio.map_or("–".into(), |r| format!("{r:.3}")),
                fmt_ci(c.p99_ratio_ci, 3),
                c.p99_verdict(),
            ));
        }
    }
    if sweep == "Load" {
        let unit = "functions × offered load";
        let funcs: std::collections::BTreeSet<usize> = w.points.iter().map(|p| p.funcs).collect();
        if let [f] = funcs.into_iter().collect::<Vec<_>>()[..] {
            md.push_str(&format!(
                "\nCapacities below are in {unit}: divide by {f} for the offered load.\n"
            ));
        }
        md.push_str(&render_capacity(&w.points, target, unit, Pairing::Schedule));
        md.push_str(&render_interpolated_capacity(
            &w.capacity.interpolated,
            target,
            unit,
            Pairing::Schedule,
        ));
        md.push_str(&render_window_capacity(
            &w.capacity.windows,
            unit,
            Pairing::Schedule,
        ));
    }
    md
}

/// Where the CPU time of a closed-loop point went, per completed request: the whole guest's
/// (idle excluded), split into user space and kernel, and the wake-ups that crossed CPUs.
/// Then each configuration against stock: the paired ratio of CPU per request, resampled
/// with the draws of the other comparisons, where the runs have per-second CPU. Empty when
/// no record has the split (reports from before it). Pure.
/// A table column of points: the quantity and the factor it is shown with.
type Column = (fn(&RdPoint) -> Option<Spread>, f64);

/// Table rows of points: the label, the configuration, then each column's spread times its
/// factor, two decimals.
fn spread_rows(points: &[RdPoint], cols: &[Column]) -> String {
    points
        .iter()
        .map(|p| {
            let cells: Vec<String> = cols.iter().map(|(f, k)| fmt_spread(&f(p), *k, 2)).collect();
            format!("| {} | {} | {} |\n", p.label(), p.config, cells.join(" | "))
        })
        .collect()
}

fn render_cpu_costs(points: &[RdPoint], cmp: &[Comparison], scale: &str) -> String {
    if points.iter().all(|p| p.kernel_ms_per_req.is_none()) {
        return String::new();
    }
    let mut md = format!(
        "\n### CPU per request\n\nThe guest's busy CPU time over the window (every CPU, the controller and the kernel included), per completed request, from `/proc/stat`; \"remote wake-ups\": wake-ups whose target CPU is not the waker's (`ttwu_count` − `ttwu_local` of `/proc/schedstat`). A configuration that completes the same work with more CPU per request spent the difference somewhere other than the work (busy time is tick-sampled: an interrupt on an idle CPU counts as idle). Medians over the repetitions, [min–max].\n\n| {scale} | config | CPU ms/req | user ms/req | kernel ms/req | remote wake-ups/req | ctx/req |\n|---|---|---|---|---|---|---|\n"
    );
    md.push_str(&spread_rows(
        points,
        &[
            (|p| p.cpu_ms_per_req, 1.0),
            (|p| p.user_ms_per_req, 1.0),
            (|p| p.kernel_ms_per_req, 1.0),
            (|p| p.remote_wakeups_per_req, 1.0),
            (|p| p.ctx_per_req, 1.0),
        ],
    ));
    let paired: Vec<&Comparison> = cmp.iter().filter(|c| c.cpu_ratio.is_some()).collect();
    if !paired.is_empty() {
        md.push_str(&format!(
            "\nBusy CPU per completed request against stock, paired (the two-stage bootstrap of \"Against stock\", per-second CPU from `/proc/stat`); above 1: more CPU for each request.\n\n| {scale} | config | reps | CPU/req ratio | 95% CI | CPU/req |\n|---|---|---|---|---|---|\n"
        ));
        for c in paired {
            md.push_str(&format!(
                "| {} | {} | {} | {:.3} | {} | {} |\n",
                point_label(c.funcs, c.scale),
                c.config,
                c.reps,
                c.cpu_ratio.unwrap_or(f64::NAN),
                fmt_ci(c.cpu_ratio_ci, 3),
                c.cpu_verdict()
            ));
        }
    }
    md
}

/// Whether a closed-loop point has the requests to decide (the table's "power" cell).
fn power(p: &RdPoint) -> String {
    if p.underpowered {
        format!("**underpowered** (min {})", p.min_completed)
    } else {
        "ok".into()
    }
}

fn fmt_ci(ci: Option<Interval>, prec: usize) -> String {
    let f = |x: f64| {
        if x.is_finite() {
            format!("{x:.prec$}")
        } else {
            "∞".into()
        }
    };
    ci.map_or("–".into(), |c| format!("[{}, {}]", f(c.lo), f(c.hi)))
}

/// The rdhashd intervals, the comparison with stock and the profile. Pure.
pub fn render_rd_intervals(rd: &[RdPoint], cmp: &[Comparison], scale: &str) -> String {
    let mut md = String::new();
    if rd.iter().any(|p| p.ci.is_some()) {
        md.push_str(&format!(
            "\n### 95% intervals\n\nTwo-stage bootstrap ({ITERATIONS} resamples): the repetitions drawn with replacement (run-to-run variation), then each drawn repetition's measured seconds in circular blocks of ⌈n^⅓⌉ seconds.\n\n| {scale} | config | seconds | block s | goodput /s | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|\n"
        ));
        for p in rd {
            if let Some(ci) = &p.ci {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    p.label(),
                    p.config,
                    ci.seconds,
                    ci.block_s,
                    fmt_ci(ci.goodput, 1),
                    fmt_ci(ci.p50, 1),
                    fmt_ci(ci.p99, 1),
                ));
            }
        }
    }
    if !cmp.is_empty() {
        md.push_str(&format!("\n### Against stock\n\nRatios configuration / stock at the same {scale}, paired: both resampled with the same draws of repetitions and blocks (a repetition runs every configuration back to back, on the same trace segment and seed where the workload has them). An interval that contains 1 is **no difference**. RPS (completed requests per second, late ones included) is what the CPUs got done: past saturation, where goodput mostly measures which requests were late, it is the capacity.\n\n| {scale} | config | reps | goodput ratio | 95% CI | goodput | RPS ratio | 95% CI | RPS | p99 ratio | 95% CI | p99 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"));
        for c in cmp {
            md.push_str(&format!(
                "| {} | {} | {} | {:.3} | {} | {} | {:.3} | {} | {} | {} | {} | {} |\n",
                point_label(c.funcs, c.scale),
                c.config,
                c.reps,
                c.goodput_ratio,
                fmt_ci(c.goodput_ratio_ci, 3),
                c.goodput_verdict(),
                c.rps_ratio,
                fmt_ci(c.rps_ratio_ci, 3),
                c.rps_verdict(),
                c.p99_ratio.map_or("–".into(), |r| format!("{r:.3}")),
                fmt_ci(c.p99_ratio_ci, 3),
                c.p99_verdict(),
            ));
        }
    }
    if rd.iter().any(|p| p.sched_share.is_some()) {
        md.push_str(&format!("\n### Where the CPU time went\n\n`perf record -a -g -e cpu-clock` (499 Hz) over each measured window: the share of samples inside `__schedule()` and its callees, of all CPU time and of the busy (non-idle) time, and that time per context switch of the window (`/proc/stat` ctxt). Sampling needs no function profiler (the prototype's measurement is `--sched-ftrace`, below); samples that fall in interrupts-off sections are taken when interrupts return, inside `__schedule()`'s tail.\n\n| {scale} | config | __schedule share % | of busy time % | µs per switch |\n|---|---|---|---|---|\n"));
        md.push_str(&spread_rows(
            rd,
            &[
                (|p| p.sched_share, 100.0),
                (|p| p.sched_busy_share, 100.0),
                (|p| p.sched_us_per_switch, 1.0),
            ],
        ));
    }
    if rd.iter().any(|p| p.ftrace_share.is_some()) {
        md.push_str(&format!("\n### Time inside `schedule()` (ftrace function profiler)\n\nThe prototype's measurement: the function profiler with the graph tracer over each measured window, on `schedule()` and `schedule_idle()` only (`__schedule()` is `notrace`; these are its callers for tasks, including preemption on the way back to user space, and for the idle loop), summed over both and over the CPUs, with `sleep-time` off (the time a task spends switched out is not charged to it); their callees are not traced, so their time counts. Share of all CPU time, idle included; µs per call; calls per completed request (calls are counted on entry, time on return). The profiler's entry hook and its sched_switch probe are inside the measured time, alike for every configuration; under emulation the times are emulated time (under icount: instructions, 8 ns each).\n\n| {scale} | config | schedule() share % | µs per call | calls per request |\n|---|---|---|---|---|\n"));
        md.push_str(&spread_rows(
            rd,
            &[
                (|p| p.ftrace_share, 100.0),
                (|p| p.ftrace_us_per_call, 1.0),
                (|p| p.ftrace_calls_per_req, 1.0),
            ],
        ));
    }
    md
}

/// The points of one set of measured windows with intervals: a closed-loop workload's, or
/// one zipf-open sweep's ([`Run::window`]).
#[derive(Debug, Default)]
pub struct Windows {
    pub points: Vec<RdPoint>,
    /// Each configuration against stock, paired.
    pub cmp: Vec<Comparison>,
    pub capacity: CapacityDetail,
}

impl Windows {
    pub fn of(recs: &[RdhashdRecord], target: f64) -> Windows {
        Windows {
            capacity: CapacityDetail::of(recs, target),
            ..Windows::paired(recs)
        }
    }

    /// The points and the comparisons only: windows on no capacity axis (zipf-open's density
    /// sweep, where the function count changes the workload's shape, not its size).
    pub fn paired(recs: &[RdhashdRecord]) -> Windows {
        Windows {
            points: rd_points(recs),
            cmp: comparisons(recs),
            capacity: CapacityDetail::default(),
        }
    }
}

/// Everything the report shows, aggregated from the records.
#[derive(Debug)]
pub struct Report {
    /// zipf-open's points (medians over the repetitions) and headline.
    pub pts: Vec<Point>,
    pub ov: Vec<OverheadRow>,
    pub h: Headline,
    /// zipf-open's sweeps with intervals (empty for records without seconds).
    pub zipf_load: Windows,
    pub zipf_density: Windows,
    pub rd: Windows,
    pub kn: Windows,
}

impl Report {
    /// The report of `recs`, capacities judged at SLO fraction `target`. Pure.
    pub fn of(recs: &Records, target: f64) -> Report {
        let pts = points(&recs.runs);
        let ov = overhead_rows(&recs.overhead);
        let h = headline(&pts, &ov, target);
        let sweep = |name: &str| -> Vec<RdhashdRecord> {
            recs.runs
                .iter()
                .filter(|r| r.sweep == name)
                .filter_map(Run::window)
                .collect()
        };
        let kn: Vec<RdhashdRecord> = recs.kn.iter().map(|k| k.run.clone()).collect();
        Report {
            zipf_load: Windows::of(&sweep("load"), target),
            zipf_density: Windows::paired(&sweep("density")),
            rd: Windows::of(&recs.rd, target),
            kn: Windows::of(&kn, target),
            pts,
            ov,
            h,
        }
    }

    /// A report of the given zipf-open points only (tests).
    #[cfg(test)]
    fn zipf(pts: Vec<Point>, ov: Vec<OverheadRow>, h: Headline) -> Report {
        Report {
            pts,
            ov,
            h,
            zipf_load: Windows::default(),
            zipf_density: Windows::default(),
            rd: Windows::default(),
            kn: Windows::default(),
        }
    }
}

/// The whole report: zipf-open's sweeps and headline, then the rdhashd and knative sections
/// (each with its comparisons against stock); a report with closed-loop runs but no
/// zipf-open runs leaves out zipf-open's capacity headline. Pure.
pub fn render_markdown(env: &Env, r: &Report) -> String {
    let (pts, ov, h) = (&r.pts, &r.ov, &r.h);
    let (rd, cmp, rdc) = (&r.rd.points, &r.rd.cmp, &r.rd.capacity);
    let (kn, kcmp, knc) = (&r.kn.points, &r.kn.cmp, &r.kn.capacity);
    let rd_only = pts.is_empty() && (!rd.is_empty() || !kn.is_empty());
    let mut md = String::new();
    md.push_str("# LAGS benchmark results\n\n");
    md.push_str(&format!(
        "- Command: `{}`\n- Accelerator: **{}** ({}); {}\n- Kernel: {} (series {}, config {})\n- Host: {} ({} CPUs); {}\n",
        env.command,
        env.accel,
        env.accel_reason,
        if env.accel == "host" {
            format!("{} CPUs of the host, no guest", env.cpus)
        } else {
            format!("{} vCPUs, {} MiB", env.cpus, env.mem_mib)
        },
        env.kernel_release,
        env.series_hash,
        env.config_hash,
        env.host_cpu,
        env.host_cpus,
        env.qemu,
    ));
    if rd_only {
        md.push_str(&format!("- Seed {}; {}\n", env.seed, env.slo));
    } else {
        md.push_str(&format!(
            "- Seed {}; SLO: {}; capacity = highest offered load with median SLO attainment ≥ {:.1}%\n",
            env.seed,
            env.slo,
            h.slo_target * 100.0
        ));
    }
    if !env.dispatcher.is_empty() {
        md.push_str(&format!("- Load generator: {}\n", env.dispatcher));
    }
    match env.accel.as_str() {
        "tcg" => md.push_str("- **TCG**: the guest is emulated (10–30× slower than native, kernel paths relatively slower still), its vCPUs take turns on one host thread; only ratios between configurations of the same boot mean anything.\n"),
        "mttcg" => md.push_str("- **Multi-threaded TCG**: the guest is emulated (10–30× slower than native, kernel paths relatively slower still) with one host thread per vCPU; only ratios between configurations of the same boot mean anything.\n"),
        _ => {}
    }
    md.push_str("\n| boot | verdict | time (s) | guest | host loadavg before → after | host steal % |\n|---|---|---|---|---|---|\n");
    for b in &env.boots {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} → {} | {} |\n",
            b.name,
            b.verdict,
            b.elapsed_s,
            b.guest_status,
            b.host_loadavg_before,
            b.host_loadavg_after,
            b.host_steal_pct.map_or("–".into(), |p| format!("{p:.1}")),
        ));
    }
    if !rd_only {
        md.push_str("\n## Headline\n\n| configuration | capacity (offered load) |\n|---|---|\n");
        for (c, cap) in &h.capacity {
            md.push_str(&format!("| {c} | {} |\n", cap.describe()));
        }
        match h.ratio_lags_stock {
            Some(r) => md.push_str(&format!(
                "\nCapacity ratio LAGS/stock {} {r:.3}{}.",
                h.ratio_qualifier,
                match h.node_saving {
                    Some(s) => format!(
                        " ⇒ {:.1}% fewer machines for the same load (1 − 1/r)",
                        s * 100.0
                    ),
                    None => String::new(),
                }
            )),
            None => md
                .push_str("\nCapacity ratio LAGS/stock: not determinable from the measured range."),
        }
        if let Some(r) = h.ratio_tuned_stock {
            md.push_str(&format!(" Tuned-EEVDF/stock: {r:.3}."));
        }
        if let Some(c) = r
            .zipf_load
            .capacity
            .interpolated
            .iter()
            .find(|c| c.config == "lags")
        {
            let (met, loss) = ratio_targets(&c.ratio_ci, "undecided");
            md.push_str(&format!(
                "\n\nInterpolated, with a paired 95% interval (\"Load sweep: intervals\"): LAGS/stock {} {}; ratio ≥ 1.3: {met}; ratio ≥ 0.95 (no loss over 5%): {loss}.",
                fmt_bounds(c.ratio, 3),
                fmt_bounds_ci(c.ratio_ci, 3),
            ));
        }
        md.push_str("\n\n### Targets\n\n| target | met | measured |\n|---|---|---|\n");
        for t in &h.targets {
            let m = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "n/a",
            };
            md.push_str(&format!("| {} | {m} | {} |\n", t.name, t.detail));
        }
    }
    let table = |md: &mut String, sweep: &str| {
        let ps: Vec<&Point> = pts.iter().filter(|p| p.sweep == sweep).collect();
        if ps.is_empty() {
            return;
        }
        md.push_str("\n| F | load | config | SLO % | light SLO % | p50 ms | p99 ms | p99.9 ms | light p99 ms | heavy p99 ms | achieved load | util % | kernel % | ctx/req | worker cs/req | schedule()/req | run-delay ms/req | work inflation |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        let mut ps = ps;
        ps.sort_by(|a, b| {
            (a.funcs, (a.load * 1e3) as i64, &a.config).cmp(&(
                b.funcs,
                (b.load * 1e3) as i64,
                &b.config,
            ))
        });
        for p in ps {
            md.push_str(&format!(
                "| {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                p.funcs, p.load, p.config,
                fmt_spread(&p.slo, 100.0, 2), fmt_spread(&p.slo_light, 100.0, 2),
                fmt_spread(&p.p50, 1.0, 1), fmt_spread(&p.p99, 1.0, 1), fmt_spread(&p.p999, 1.0, 1),
                fmt_spread(&p.light_p99, 1.0, 1), fmt_spread(&p.heavy_p99, 1.0, 1),
                fmt_spread(&p.achieved, 1.0, 3), fmt_spread(&p.util, 100.0, 1), fmt_spread(&p.kernel, 100.0, 1),
                fmt_spread(&p.ctx_per_req, 1.0, 2), fmt_spread(&p.worker_cs_per_req, 1.0, 2),
                fmt_spread(&p.schedule_per_req, 1.0, 2), fmt_spread(&p.run_delay_per_req, 1.0, 2),
                fmt_spread(&p.inflation, 1.0, 3),
            ));
        }
    };
    if pts.iter().any(|p| p.sweep == "load") {
        md.push_str("\n## Load sweep\n\nMedians over the repetitions, [min–max] in brackets.\n");
        table(&mut md, "load");
        md.push_str(&render_zipf_windows(&r.zipf_load, "Load", h.slo_target));
    }
    if pts.iter().any(|p| p.sweep == "density") {
        md.push_str("\n## Density sweep\n");
        table(&mut md, "density");
        md.push_str(&render_zipf_windows(
            &r.zipf_density,
            "Density",
            h.slo_target,
        ));
    }
    if !rd.is_empty() {
        md.push_str(&render_rdhashd(rd, cmp, rdc, env.cpus, h.slo_target));
    }
    if !kn.is_empty() {
        md.push_str(&render_knative(kn, kcmp, knc, h.slo_target));
    }
    if !ov.is_empty() {
        md.push_str("\n## Overhead of having LAGS\n\n| probe | unit | off | on, no LAGS groups | baseline kernel | on vs off | off vs baseline | noise (off, max−min) |\n|---|---|---|---|---|---|---|---|\n");
        for r in ov {
            let m = |k: &str| fmt_spread(&r.modes.get(k).copied(), 1.0, 3);
            let pct = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:+.2}%"));
            md.push_str(&format!(
                "| {} | {}{} | {} | {} | {} | {} | {} | {} |\n",
                r.probe,
                r.unit,
                if r.higher_is_better {
                    " (higher is better)"
                } else {
                    " (lower is better)"
                },
                m("off"),
                m("on-nogroups"),
                m("kernel"),
                pct(r.on_vs_off_pct),
                pct(r.off_vs_baseline_pct),
                r.noise_pct.map_or("–".into(), |v| format!("{v:.1}%")),
            ));
            for e in r.errors.iter().take(2) {
                md.push_str(&format!(
                    "\n> {} error: {}\n",
                    r.probe,
                    e.lines().next().unwrap_or("")
                ));
            }
        }
        md.push_str("\nPositive percentages mean slower with LAGS (on) / with the LAGS kernel.\n");
    }
    if !rd_only {
        md.push_str("\nPlots: `slo.png` (SLO attainment vs offered load), `cdf-load-*.png` (response-time CDFs), `ctx.png` (context switches per request vs density).\n");
    }
    md
}

/// Aggregates, writes results.json, summary.md and the plots; prints the headline.
pub(super) fn write(dir: &Path, env_v: Value, recs: &Records, target: f64) -> Result<bool> {
    let mut env: Env = env_from_value(&env_v);
    if let Some(kn) = guest_knative_plan(recs) {
        env.dispatcher = super::knative_text(&kn);
    }
    let r = Report::of(recs, target);
    let md = render_markdown(&env, &r);
    util::write(&dir.join("summary.md"), &md)?;
    let doc = json!({
        "env": env_v,
        "guest_env": recs.env,
        "headline": r.h,
        "points": r.pts,
        "zipf_load_intervals": r.zipf_load.points,
        "zipf_load_vs_stock": r.zipf_load.cmp,
        "zipf_load_capacity_interpolated": r.zipf_load.capacity.interpolated,
        "zipf_load_capacity_per_window": r.zipf_load.capacity.windows,
        "zipf_density_intervals": r.zipf_density.points,
        "zipf_density_vs_stock": r.zipf_density.cmp,
        "overhead": r.ov,
        "rdhashd": r.rd.points,
        "rdhashd_vs_stock": r.rd.cmp,
        "rdhashd_capacity": capacity_json(&r.rd.points, target),
        "rdhashd_capacity_interpolated": r.rd.capacity.interpolated,
        "rdhashd_capacity_per_window": r.rd.capacity.windows,
        "knative": r.kn.points,
        "knative_vs_stock": r.kn.cmp,
        "knative_capacity": capacity_json(&r.kn.points, target),
        "knative_capacity_interpolated": r.kn.capacity.interpolated,
        "knative_capacity_per_window": r.kn.capacity.windows,
        "records": recs.raw,
    });
    util::write(
        &dir.join("results.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    for w in plots(
        dir,
        &recs.runs,
        &r.pts,
        &r.rd.points,
        env.cpus,
        &env.accel,
        target,
    ) {
        eprintln!("[bench] WARNING: {w}");
    }
    eprintln!("\n{}", md.split("\n## Load sweep").next().unwrap_or(&md));
    Ok(recs.has_results())
}

/// The capacities of a closed-loop workload and the LAGS/stock ratio range, for
/// results.json.
fn capacity_json(rd: &[RdPoint], target: f64) -> Value {
    let caps = scale_capacity(rd, target);
    let ratio = lags_vs_stock(&caps);
    json!({ "slo_fraction": target, "configs": caps, "ratio_lags_stock": ratio })
}

/// The knative plan a guest recorded running, when its boot ran knative: what the report
/// describes, whatever the command line said (`--param` overrides included).
fn guest_knative_plan(recs: &Records) -> Option<KnPlan> {
    if recs.kn.is_empty() {
        return None;
    }
    recs.env.iter().find_map(|v| {
        let plan: Plan = serde_json::from_value(v.get("plan")?.clone()).ok()?;
        (plan.workload == Workload::Knative).then_some(plan.kn)
    })
}

pub(crate) fn env_from_value(v: &Value) -> Env {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    Env {
        command: s("command"),
        accel: s("accel"),
        accel_reason: s("accel_reason"),
        cpus: v["cpus"].as_u64().unwrap_or(0) as u32,
        mem_mib: v["mem_mib"].as_u64().unwrap_or(0) as u32,
        seed: v["seed"].as_u64().unwrap_or(0),
        kernel_release: s("kernel_release"),
        series_hash: s("series_hash"),
        config_hash: s("config_hash"),
        qemu: s("qemu"),
        host_cpu: s("host_cpu"),
        host_cpus: v["host_cpus"].as_u64().unwrap_or(0) as usize,
        slo: s("slo"),
        dispatcher: s("dispatcher"),
        settings: None,
        boots: v["boots"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| BootInfo {
                        name: b["name"].as_str().unwrap_or("").into(),
                        elapsed_s: b["elapsed_s"].as_f64().unwrap_or(0.0),
                        verdict: b["verdict"].as_str().unwrap_or("").into(),
                        message: b["message"].as_str().unwrap_or("").into(),
                        host_loadavg_before: b["host_loadavg_before"].as_str().unwrap_or("").into(),
                        host_loadavg_after: b["host_loadavg_after"].as_str().unwrap_or("").into(),
                        host_steal_pct: b["host_steal_pct"].as_f64(),
                        guest_status: b["guest_status"].as_str().unwrap_or("").into(),
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::headline::Capacity;
    use crate::bench::records::{Hist, OverheadRec, Run, Summary};
    use crate::bench::stats::rd_points;

    fn run(config: &str, load: f64, rep: usize, slo: f64, light_p99: f64, ctx: f64) -> Run {
        Run {
            boot: "all".into(),
            sweep: "load".into(),
            config: config.into(),
            funcs: 100,
            load,
            rep,
            ctxt_per_req: Some(ctx),
            all: Summary {
                slo_attainment: Some(slo),
                p99_ms: Some(light_p99 * 2.0),
                ..Default::default()
            },
            light: Summary {
                p99_ms: Some(light_p99),
                slo_attainment: Some(slo),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// A zipf-open run with `secs` seconds of `arrived` requests each, `met` of them within
    /// their SLO, the rest in the histogram's last bin.
    fn arrivals(config: &str, load: f64, rep: usize, secs: usize, arrived: u64, met: u64) -> Run {
        use lags_proto::bench::SecondCounts;
        let second = SecondCounts {
            completed: arrived,
            good: met,
            hist: Hist {
                bins: [(80, met), (160, arrived - met)]
                    .into_iter()
                    .filter(|b| b.1 > 0)
                    .collect(),
            },
        };
        let mut r = run(config, load, rep, met as f64 / arrived as f64, 10.0, 3.0);
        r.funcs = 50;
        r.cpus = 2;
        r.window_s = secs as f64;
        r.hist_all = Hist {
            bins: second
                .hist
                .bins
                .iter()
                .map(|&(b, n)| (b, n * secs as u64))
                .collect(),
        };
        r.per_second = vec![second; secs];
        r
    }

    // Expect a zipf-open run's seconds to become a window of its function count at its load,
    // every arrival counted, and none for a record from before the seconds.
    #[test]
    fn zipf_window() {
        let w = arrivals("lags", 0.5, 2, 10, 40, 30)
            .window()
            .expect("a window");
        assert_eq!((w.funcs, w.scale, w.rep), (50, Some(0.5), 2));
        assert_eq!((w.completed, w.good, w.window_s), (400, 300, 10.0));
        // A quarter never completed: the median is the met requests' bin, the p99 has no
        // bound.
        assert_eq!(w.p50_ms, Some(Hist::upper_edge_ms(80)));
        assert_eq!(w.p99_ms, Some(f64::INFINITY));
        assert_eq!(w.cpus, 2);
        assert!(run("lags", 0.5, 0, 1.0, 1.0, 1.0).window().is_none());
    }

    // Expect the zipf-open load sweep with intervals: attainment with its interval and the
    // power of each point, LAGS against stock paired (lower where it misses more), and the
    // interpolated capacity with the two capacity targets decided on its interval, also in
    // the headline.
    #[test]
    fn zipf_intervals() {
        let mut recs = Records::default();
        for rep in 0..3 {
            for (load, stock_met, lags_met) in [
                (0.3, 100, 100),
                (0.5, 100, 100),
                (0.7, 99, 90),
                (0.9, 80, 60),
            ] {
                recs.runs
                    .push(arrivals("stock", load, rep, 20, 300, 3 * stock_met));
                recs.runs
                    .push(arrivals("lags", load, rep, 20, 300, 3 * lags_met));
            }
        }
        let r = Report::of(&recs, 0.99);
        assert!(r.zipf_density.points.is_empty());
        let env = Env::default();
        let md = render_markdown(&env, &r);
        assert!(md.contains("### Load sweep: intervals"), "{md}");
        assert!(
            md.contains(
                "| 50 × 0.7 | lags | 6000 [6000–6000] | 90.00 [90.00–90.00] | [90.00, 90.00] |"
            ),
            "{md}"
        );
        assert!(md.contains("| **underpowered** (min 6000) |"), "{md}");
        assert!(
            md.contains("| 50 × 0.7 | lags | 3 | 0.9091 | [0.9091, 0.9091] | lower |"),
            "{md}"
        );
        assert!(
            md.contains("| 50 × 0.3 | lags | 3 | 1.0000 | [1.0000, 1.0000] | no difference |"),
            "{md}"
        );
        assert!(md.contains("divide by 50 for the offered load"), "{md}");
        // At 0.9 a fifth (stock) and two fifths (LAGS) never completed: both p99s are
        // unbounded, and their ratio is not a number to show.
        assert!(
            md.contains("| 50 × 0.9 | lags | 3 | 0.7500 | [0.7500, 0.7500] | lower | – | – | – |"),
            "{md}"
        );
        assert!(
            md.contains("| 11.2 [11.2–11.2] | [11.2, 11.2] | ∞ [∞–∞] | [∞, ∞] |"),
            "{md}"
        );
        assert!(md.contains("| lags | [25, 35) |"), "{md}");
        assert!(
            md.contains("of the requests that arrived met their SLO"),
            "{md}"
        );
        // Stock crosses 99% at 0.7 (exactly), LAGS between 0.5 and 0.7: 50 × (0.5 + 0.2/10).
        let c = &r.zipf_load.capacity.interpolated[0];
        assert_eq!(c.config, "lags");
        assert!((c.capacity.lo - 26.0).abs() < 1e-9, "{c:?}");
        assert!((c.stock.lo - 35.0).abs() < 1e-9, "{c:?}");
        assert!(md.contains("LAGS/stock 0.743 [0.743, 0.743]; ratio ≥ 1.3: **not met**; ratio ≥ 0.95 (no loss over 5%): **a loss**."), "{md}");
        // Both held at every tested load: the ratio is not bounded, and says so.
        let mut held = Records::default();
        for rep in 0..2 {
            for load in [0.3, 0.5] {
                for config in ["stock", "lags"] {
                    held.runs.push(arrivals(config, load, rep, 20, 300, 300));
                }
            }
        }
        let md = render_markdown(&env, &Report::of(&held, 0.99));
        assert!(
            md.contains("LAGS/stock unbounded [0.000, ∞); ratio ≥ 1.3: undecided; ratio ≥ 0.95 (no loss over 5%): undecided."),
            "{md}"
        );
    }

    // Expect aggregation, headline numbers, targets and the Markdown report from a small
    // synthetic data set.
    #[test]
    fn aggregate_and_render() {
        let mut runs = Vec::new();
        for rep in 0..3 {
            let d = rep as f64 * 0.001;
            runs.push(run("stock", 0.5, rep, 0.995 - d, 10.0, 4.0));
            runs.push(run("stock", 0.7, rep, 0.95 - d, 30.0, 5.0));
            runs.push(run("lags", 0.5, rep, 1.0, 4.0, 3.0));
            runs.push(run("lags", 0.7, rep, 0.995, 8.0, 3.5));
        }
        let pts = points(&runs);
        assert_eq!(pts.len(), 4);
        assert!(pts.iter().all(|p| p.reps == 3));
        let ov = overhead_rows(&[
            OverheadRec {
                probe: "perf-pipe".into(),
                mode: "off".into(),
                value: Some(10.0),
                unit: "usecs/op".into(),
                ..Default::default()
            },
            OverheadRec {
                probe: "perf-pipe".into(),
                mode: "on-nogroups".into(),
                value: Some(10.05),
                unit: "usecs/op".into(),
                ..Default::default()
            },
            OverheadRec {
                probe: "sw".into(),
                mode: "off".into(),
                value: Some(100.0),
                higher_is_better: true,
                ..Default::default()
            },
            OverheadRec {
                probe: "sw".into(),
                mode: "on-nogroups".into(),
                value: Some(90.0),
                higher_is_better: true,
                ..Default::default()
            },
        ]);
        assert!((ov[0].on_vs_off_pct.unwrap() - 0.5).abs() < 1e-9);
        assert!((ov[1].on_vs_off_pct.unwrap() - 10.0).abs() < 1e-9);
        let h = headline(&pts, &ov, 0.99);
        assert_eq!(h.capacity["lags"], Capacity::AtLeast(0.7));
        let stock = h.capacity["stock"].load().unwrap();
        assert!(stock > 0.5 && stock < 0.7, "{stock}");
        assert_eq!(h.ratio_qualifier, "≥");
        assert_eq!(h.targets[0].met, Some(true));
        // light p99 at the stock capacity: stock between 10 and 30, lags between 4 and 8.
        assert_eq!(h.targets[1].met, Some(true));
        assert_eq!(h.targets[2].met, Some(true));
        assert_eq!(h.targets[3].met, Some(false));
        let env = Env {
            accel: "tcg".into(),
            command: "cargo xtask bench --quick".into(),
            ..Default::default()
        };
        let md = render_markdown(&env, &Report::zipf(pts, ov, h));
        assert!(md.contains("**tcg**"), "{md}");
        assert!(md.contains("| lags | ≥ 0.700 |"), "{md}");
        assert!(md.contains("fewer machines"));
        assert!(
            md.contains("| perf-pipe | usecs/op (lower is better) | 10.000 | 10.050 |"),
            "{md}"
        );
        assert!(
            md.contains("| 100 | 0.50 | stock | 99.40 [99.30–99.50] |"),
            "{md}"
        );
        assert!(!md.contains("rdhashd"), "{md}");
    }

    // Expect an rdhashd-only report: no zipf-open headline, one row per (density,
    // configuration) with goodput normalised to stock's best, and underpowered points marked.
    #[test]
    fn rdhashd_table() {
        use lags_proto::bench::RdhashdRecord;
        let rec =
            |config: &str, funcs: usize, rep: usize, good: u64, completed: u64| RdhashdRecord {
                config: config.into(),
                funcs,
                rep,
                good,
                completed,
                window_s: 4.0,
                threshold_ms: 1000.0,
                p50_ms: Some(20.0 + rep as f64),
                p99_ms: Some(100.0),
                ctxt_per_req: Some(3.0),
                schedule_per_req: Some(2.5),
                inflight_target_mean: 7.5,
                // LAGS moved 0.1, 0.2, 0.3 starts per request in repetitions 0, 1, 2.
                lags: (config == "lags").then(|| lags_proto::bench::LagsCounters {
                    picks: completed * (rep as u64 + 1) / 10,
                    ..Default::default()
                }),
                ..RdhashdRecord::default()
            };
        let recs = [
            rec("stock", 4, 0, 400, 12_000),
            rec("stock", 4, 1, 360, 11_000),
            rec("stock", 4, 2, 380, 11_500),
            rec("lags", 4, 0, 420, 12_500),
            rec("lags", 4, 1, 400, 10_500),
            rec("lags", 4, 2, 440, 9_000),
        ];
        let rd = rd_points(&recs);
        let env = Env {
            accel: "tcg".into(),
            cpus: 2,
            slo: "goodput: latency < 1000 ms".into(),
            ..Default::default()
        };
        let h = headline(&[], &[], 0.99);
        let mut report = Report::zipf(Vec::new(), Vec::new(), h);
        report.rd.points = rd;
        let md = render_markdown(&env, &report);
        assert!(
            !md.contains("## Headline") && !md.contains("Plots:"),
            "{md}"
        );
        assert!(md.contains("## rdhashd workload"), "{md}");
        assert!(md.contains("latency < 1000 ms per second"), "{md}");
        assert!(
            md.contains("| 4 | 2.0 | lags | 10500 [9000–12500] | 105.0 [100.0–110.0] | 1.050 [1.000–1.100] | 21.0 [20.0–22.0] | 100.0 [100.0–100.0] | 3.00 [3.00–3.00] | 2.50 [2.50–2.50] | 0.20 [0.10–0.30] | 7.5 [7.5–7.5] | 0 | **underpowered** (min 9000) |"),
            "{md}"
        );
        assert!(
            md.contains("| 4 | 2.0 | stock | 11500 [11000–12000] | 95.0 [90.0–100.0] | 0.950 [0.900–1.000] |"),
            "{md}"
        );
        // Stock has no LAGS statistics: its picks are unknown, not zero.
        assert!(
            md.contains("| 2.50 [2.50–2.50] | – | 7.5 [7.5–7.5] | 0 | ok |"),
            "{md}"
        );
        assert!(
            md.contains("\"LAGS picks/req\": starts of a LAGS group"),
            "{md}"
        );
        assert!(md.contains("| ok |"), "{md}");
    }

    // Expect the knative table to give per user count and configuration the LAGS picks per
    // request (– for stock, which has no LAGS statistics) and to say what they count.
    #[test]
    fn knative_table() {
        use lags_proto::bench::{LagsCounters, RdhashdRecord};
        let rec = |config: &str, rep: usize, picks: Option<u64>| RdhashdRecord {
            config: config.into(),
            funcs: 135,
            rep,
            good: 11_000,
            completed: 11_500,
            window_s: 200.0,
            threshold_ms: 1000.0,
            lags: picks.map(|p| LagsCounters {
                picks: p,
                ..Default::default()
            }),
            // Runs with schedstats on: LAGS counted its picks.
            schedule_per_req: Some(30.0),
            ..RdhashdRecord::default()
        };
        let recs = [
            rec("stock", 0, None),
            rec("lags", 0, Some(23_000)),
            rec("lags-inert", 0, Some(0)),
        ];
        let md = render_knative(&rd_points(&recs), &[], &CapacityDetail::default(), 0.99);
        assert!(md.contains("| users | config | requests | RPS | goodput /s | p50 ms | p99 ms | ctx/req | schedule()/req | LAGS picks/req |"), "{md}");
        // One repetition: single values; no latencies or switches recorded here.
        assert!(
            md.contains(
                "| 135 | lags | 11500 | 57.5 | 55.0 | ∞ | ∞ | ∞ | 30.00 | 2.00 | 0.0 | 0 | ok |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 135 | lags-inert | 11500 | 57.5 | 55.0 | ∞ | ∞ | ∞ | 30.00 | 0.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| 135 | stock | 11500 | 57.5 | 55.0 | ∞ | ∞ | ∞ | 30.00 | – |"),
            "{md}"
        );
        assert!(
            md.contains("\"LAGS picks/req\": starts of a LAGS group"),
            "{md}"
        );
    }

    // Expect the CPU per request from the window's busy share of every CPU, split into user
    // space and kernel, and the wake-ups that crossed CPUs per request; no section for
    // records from before the split.
    #[test]
    fn cpu_costs_per_request() {
        use lags_proto::bench::RdhashdRecord;
        let rec = |config: &str, util: f64, kern: Option<f64>, remote: u64| RdhashdRecord {
            config: config.into(),
            funcs: 135,
            cpus: 2,
            window_s: 200.0,
            completed: 10_000,
            cpu_util: util,
            cpu_kernel: kern,
            wakeups: kern.map(|_| 30_000 + remote),
            wakeups_local: kern.map(|_| 30_000),
            ..RdhashdRecord::default()
        };
        let md = render_cpu_costs(
            &rd_points(&[
                rec("stock", 0.9, Some(0.1), 20_000),
                rec("lags", 0.96, Some(0.16), 35_000),
            ]),
            &[],
            "users",
        );
        assert!(md.contains("| users | config | CPU ms/req | user ms/req | kernel ms/req | remote wake-ups/req | ctx/req |"), "{md}");
        assert!(
            md.contains("| 135 | stock | 36.00 | 32.00 | 4.00 | 2.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| 135 | lags | 38.40 | 32.00 | 6.40 | 3.50 |"),
            "{md}"
        );
        let old = render_cpu_costs(&rd_points(&[rec("stock", 0.9, None, 0)]), &[], "users");
        assert_eq!(
            old, "",
            "a report from before the split has no such section"
        );
    }

    // Expect the knative description to come from the plan a guest recorded (a re-rendered
    // report of a `--param lb.kn_k=1` run said "3 threads"), and none without knative runs.
    #[test]
    fn knative_plan_from_the_guest() {
        use crate::bench::records::Records;
        use lags_proto::bench::KnativeRecord;
        let plan = Plan {
            workload: Workload::Knative,
            kn: KnPlan {
                intra_op: 1,
                ..KnPlan::default()
            },
            ..Plan::default()
        };
        let mut recs = Records {
            env: vec![json!({ "boot": "density", "plan": plan })],
            ..Records::default()
        };
        assert_eq!(guest_knative_plan(&recs), None, "no knative runs");
        recs.kn.push(KnativeRecord::default());
        let kn = guest_knative_plan(&recs).unwrap();
        assert_eq!(kn.intra_op, 1);
        assert!(super::super::knative_text(&kn).contains("on one thread"));
    }

    // Expect the comparison with stock to give goodput, RPS and p99 ratios each with its
    // interval and verdict, and a missing p99 as "–".
    #[test]
    fn against_stock_table() {
        let iv = |lo, hi| Some(Interval { lo, hi });
        let cmp = [Comparison {
            funcs: 115,
            scale: 1.0,
            config: "lags-inert".into(),
            reps: 3,
            goodput_ratio: 0.765,
            goodput_ratio_ci: iv(0.5, 0.9),
            rps_ratio: 0.974,
            rps_ratio_ci: iv(0.915, 1.047),
            cpu_ratio: None,
            cpu_ratio_ci: None,
            p99_ratio: None,
            p99_ratio_ci: None,
        }];
        let md = render_rd_intervals(&[], &cmp, "users");
        assert!(md.contains("| users | config | reps | goodput ratio | 95% CI | goodput | RPS ratio | 95% CI | RPS | p99 ratio |"), "{md}");
        assert!(
            md.contains("| 115 | lags-inert | 3 | 0.765 | [0.500, 0.900] | lower | 0.974 | [0.915, 1.047] | no difference | – | – | – |"),
            "{md}"
        );
    }

    // Expect the capacity section to give each configuration's bracket with the verdict at
    // every tested count, and to decide the two capacity targets only when the ratio range
    // lies wholly on one side: first both hold at 8 and miss at 19, so the ratio lies
    // between 0.42 and 2.38 and neither target is decided; then LAGS holds at 19 where
    // stock missed at 8, which decides both.
    #[test]
    fn capacity_section() {
        use lags_proto::bench::RdhashdRecord;
        let rec = |config: &str, funcs: usize, good: u64| RdhashdRecord {
            config: config.into(),
            funcs,
            good,
            completed: 1000,
            window_s: 10.0,
            threshold_ms: 1000.0,
            ..RdhashdRecord::default()
        };
        let recs = [
            rec("stock", 8, 1000),
            rec("stock", 19, 900),
            rec("lags", 8, 995),
            rec("lags", 19, 950),
        ];
        let md = render_capacity(&rd_points(&recs), 0.99, "functions", Pairing::TraceWindow);
        assert!(
            md.contains("| lags | [8, 19) | 8: held 99.50%; 19: **missed** 95.00% |"),
            "{md}"
        );
        assert!(md.contains("| stock | [8, 19) |"), "{md}");
        assert!(
            md.contains("Capacity ratio LAGS/stock: between 0.42 and 2.38."),
            "{md}"
        );
        assert!(
            md.contains("- Target ratio ≥ 1.3: **undecided** on these counts."),
            "{md}"
        );
        // LAGS held at 19 functions where stock missed at 8: the ratio exceeds 19/8.
        let recs = [
            rec("stock", 8, 900),
            rec("stock", 4, 1000),
            rec("lags", 19, 1000),
        ];
        let md = render_capacity(&rd_points(&recs), 0.99, "functions", Pairing::TraceWindow);
        assert!(md.contains("| lags | ≥ 19, no upper bound |"), "{md}");
        assert!(md.contains("| stock | [4, 8) |"), "{md}");
        assert!(md.contains("above 2.38, no upper bound"), "{md}");
        assert!(md.contains("- Target ratio ≥ 1.3: **met**."), "{md}");
        assert!(
            md.contains("- No capacity loss of more than 5% (ratio ≥ 0.95): **holds**."),
            "{md}"
        );
        assert_eq!(render_capacity(&[], 0.99, "users", Pairing::Load), "");
    }

    // Expect one row per window and configuration, the paired ratio of each window with
    // both targets decided on it, the count of windows per decision, and nothing for no
    // windows.
    #[test]
    fn window_capacity_section() {
        let cap = |config: &str, at_least, below| ScaleCapacity {
            config: config.into(),
            at_least,
            below,
            verdicts: Vec::new(),
        };
        let window = |rep: usize, ratio| WindowCapacity {
            rep,
            trace_offset_s: 195,
            caps: vec![
                cap("lags", Some(17.1), Some(19.0)),
                cap("stock", Some(17.1), Some(19.0)),
            ],
            ratio,
            points: Vec::new(),
        };
        let md = render_window_capacity(
            &[
                window(
                    0,
                    Some(RatioRange {
                        lo: 0.9,
                        hi: Some(1.11),
                    }),
                ),
                window(1, Some(RatioRange { lo: 0.0, hi: None })),
            ],
            "functions × scale",
            Pairing::TraceWindow,
        );
        assert!(
            md.contains("| 0 (trace 195 s) | lags | [17.10, 19) |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 0 (trace 195 s) | between 0.90 and 1.11 | **not met** | **undecided** on these counts |"
            ),
            "{md}"
        );
        assert!(
            md.contains("Ratio ≥ 1.3: met in 0 of 2 windows, not met in 1, undecided in 1. Ratio ≥ 0.95: holds in 0 of 2, a loss in 0, undecided in 2."),
            "{md}"
        );
        // knative has no trace: a repetition is named by its number alone.
        let md = render_window_capacity(&[window(2, None)], "users", Pairing::Load);
        assert!(md.contains("| 2 | lags | [17.10, 19) |"), "{md}");
        assert!(
            md.contains(
                "ran the same user count (its users drawing from the same distributions) back to back"
            ),
            "{md}"
        );
        assert!(!md.contains("seed"), "{md}");
        assert!(!md.contains("trace"), "{md}");
        assert_eq!(render_window_capacity(&[], "users", Pairing::Load), "");
    }

    // Expect the interpolated capacities with their intervals, one-sided values written as
    // such, and the targets decided on the ratio's interval; nothing without a comparison.
    #[test]
    fn interpolated_capacity_section() {
        let b = |lo: f64, hi: Option<f64>| RatioRange { lo, hi };
        let ci = |lo: f64, hi: Option<f64>| CapacityCi {
            config: "lags".into(),
            reps: 3,
            scales: 11,
            stock: b(0.0, Some(7.6)),
            stock_ci: b(0.0, Some(18.22)),
            capacity: b(7.82, Some(7.82)),
            capacity_ci: b(0.0, Some(17.59)),
            ratio: b(1.029, None),
            ratio_ci: b(lo, hi),
            censored: 899,
        };
        let md = render_interpolated_capacity(
            &[ci(0.0, None)],
            0.99,
            "functions × scale",
            Pairing::TraceWindow,
        );
        assert!(md.contains("first drops below 99.0%"), "{md}");
        assert!(
            md.contains("since they ran the same trace window and seed."),
            "{md}"
        );
        assert!(
            md.contains("| lags | 3 | 11 | 7.82 | [0.00, 17.59] | < 7.60 | [0.00, 18.22] | ≥ 1.029 | [0.000, ∞) | 899 | undecided | undecided |"),
            "{md}"
        );
        let md =
            render_interpolated_capacity(&[ci(0.88, Some(1.21))], 0.99, "users", Pairing::Load);
        assert!(
            md.contains("| [0.880, 1.210] | 899 | **not met** | undecided |"),
            "{md}"
        );
        assert!(
            md.contains(
                "since they ran the same user count (its users drawing from the same distributions)."
            ),
            "{md}"
        );
        let md =
            render_interpolated_capacity(&[ci(0.97, Some(1.12))], 0.99, "users", Pairing::Load);
        assert!(md.contains("| **not met** | **holds** |"), "{md}");
        assert_eq!(
            render_interpolated_capacity(&[], 0.99, "users", Pairing::Load),
            ""
        );
    }

    // Expect a concurrency-scale sweep at one function count to give one point per scale,
    // named "F × scale" in every table and paired against stock at the same scale, and its
    // capacity on functions × scale: stock holds at 16 × 0.7 and misses at 16 × 0.85, LAGS
    // holds at 16 × 0.85 and misses at 16 × 1, so the ratio lies in (1, 1.43) — above the
    // 5% loss, the 1.3 target undecided.
    #[test]
    fn scale_sweep_capacity() {
        use lags_proto::bench::{Hist, RdhashdRecord, SecondCounts};
        let rec = |config: &str, scale: f64, rep: usize, good: u64| RdhashdRecord {
            config: config.into(),
            funcs: 16,
            scale: (scale != 1.0).then_some(scale),
            rep,
            good: good * 20,
            completed: 20_000,
            window_s: 20.0,
            threshold_ms: 1000.0,
            per_second: (0..20)
                .map(|_| SecondCounts {
                    completed: 1000,
                    good,
                    hist: Hist {
                        bins: vec![(60, good), (90, 1000 - good)],
                    },
                })
                .collect(),
            ..RdhashdRecord::default()
        };
        let mut recs = Vec::new();
        for rep in 0..3 {
            for (scale, stock, lags) in [(0.7, 999, 1000), (0.85, 970, 998), (1.0, 900, 960)] {
                recs.push(rec("stock", scale, rep, stock));
                recs.push(rec("lags", scale, rep, lags));
            }
        }
        let rd = rd_points(&recs);
        assert_eq!(rd.len(), 6);
        let cmp = comparisons(&recs);
        let labels: Vec<String> = cmp.iter().map(|c| point_label(c.funcs, c.scale)).collect();
        assert_eq!(labels, ["16 × 0.7", "16 × 0.85", "16"]);
        let md = render_rdhashd(&rd, &cmp, &CapacityDetail::default(), 2, 0.99);
        assert!(md.contains("| 16 × 0.7 | 8.0 | lags | 20000 "), "{md}");
        assert!(md.contains("| 16 × 0.85 | lags | 3 | 1.029 |"), "{md}");
        assert!(md.contains("capacity (functions × scale)"), "{md}");
        assert!(
            md.contains("| lags | [13.60, 16) | 16 × 0.7 (11.20): held 100.00%"),
            "{md}"
        );
        assert!(md.contains("| stock | [11.20, 13.60) |"), "{md}");
        assert!(
            md.contains("Capacity ratio LAGS/stock: between 1.00 and 1.43."),
            "{md}"
        );
        assert!(
            md.contains("- No capacity loss of more than 5% (ratio ≥ 0.95): **holds**."),
            "{md}"
        );
        assert!(
            md.contains("- Target ratio ≥ 1.3: **undecided** on these counts."),
            "{md}"
        );
    }
}
