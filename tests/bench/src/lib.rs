// SPDX-License-Identifier: GPL-2.0
//! Pure parts of the LAGS benchmark (`lags-bench`): the plan read from the kernel command
//! line, the random number generator and distributions, the synthetic serverless workload
//! (functions, arrival schedule), percentiles, SLO attainment and response-time histograms.
//!
//! Everything here is deterministic and unit-tested on the host; `main.rs` holds the parts
//! that need a guest (cgroups, processes, clocks, /proc).

pub mod closed_loop;
pub mod trace;

use serde::Serialize;

// ---------------------------------------------------------------------------------------
// Plan and records: the contract with the host, in `qemu/proto`

pub use lags_proto::bench::{
    DoneRecord, EnvRecord, Function, FunctionsRecord, Hist, KnPlan, KnativeRecord, LagsCounters,
    OverheadRecord, Plan, RdPlan, RdhashdRecord, Record, RunRecord, SchedConfig, SchedFtrace,
    SchedProfile, SecondCounts, Status, Summary, Uname, Workload, BINS_PER_DECADE, HIST_BINS,
};

// ---------------------------------------------------------------------------------------
// Random numbers

/// SplitMix64: small, fast, and good enough for workload generation.
pub use lags_pid1::rng::SplitMix64 as Rng;

/// Mixes a seed with a tuple of indices (reproducible per-run seeds).
pub fn mix_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut r = Rng::new(seed);
    let mut h = r.next_u64();
    for &p in parts {
        let mut r = Rng::new(h ^ p.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        h = r.next_u64();
    }
    h
}

/// Zipf popularity: p_i proportional to 1 / (i+1)^s, normalised.
pub fn zipf_weights(n: usize, s: f64) -> Vec<f64> {
    let w: Vec<f64> = (0..n).map(|i| 1.0 / ((i + 1) as f64).powf(s)).collect();
    let sum: f64 = w.iter().sum();
    w.into_iter().map(|x| x / sum).collect()
}

/// Running sum, normalised so the last entry is exactly 1.
pub fn cdf_of(weights: &[f64]) -> Vec<f64> {
    let sum: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let mut c: Vec<f64> = weights
        .iter()
        .map(|w| {
            acc += w / sum;
            acc
        })
        .collect();
    if let Some(l) = c.last_mut() {
        *l = 1.0;
    }
    c
}

// ---------------------------------------------------------------------------------------
// Workload

/// Draws the function set: Zipf popularity by index (function 0 is the most popular),
/// lognormal function means independent of popularity, scaled so that the mean service time
/// over all requests is `mean_ms`, with no function above `max_share` of the demand.
pub fn make_functions(
    n: usize,
    zipf_s: f64,
    func_sigma: f64,
    mean_ms: f64,
    max_share: f64,
    seed: u64,
) -> Vec<Function> {
    let pop = zipf_weights(n, zipf_s);
    let mut rng = Rng::new(mix_seed(seed, &[0xf0]));
    let mut m: Vec<f64> = (0..n).map(|_| rng.lognormal_mean1(func_sigma)).collect();
    // Cap the demand share, then rescale; a few rounds converge (a cap below 1/n cannot be met).
    let cap = max_share.max(1.0 / n as f64);
    for _ in 0..50 {
        let total: f64 = pop.iter().zip(&m).map(|(p, m)| p * m).sum();
        let mut changed = false;
        for i in 0..n {
            let share = pop[i] * m[i] / total;
            if share > cap * 1.000_001 {
                m[i] *= cap / share;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mean: f64 = pop.iter().zip(&m).map(|(p, m)| p * m).sum();
    let scale = mean_ms / mean;
    let mut fs: Vec<Function> = (0..n)
        .map(|i| Function {
            popularity: pop[i],
            mean_ms: m[i] * scale,
            demand_share: pop[i] * m[i] / mean,
            heavy: false,
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| fs[b].demand_share.total_cmp(&fs[a].demand_share));
    let mut acc = 0.0;
    for i in order {
        if acc >= 0.5 {
            break;
        }
        acc += fs[i].demand_share;
        fs[i].heavy = true;
    }
    fs
}

/// One request of the open-loop schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Request {
    /// Arrival time from the start of the run, ns.
    pub t_ns: u64,
    pub func: u32,
    /// Service demand, ns of calibrated CPU work.
    pub work_ns: u64,
}

/// Request rate (per second) that offers `load` x `cpus` CPUs of work at `mean_ms` per request.
pub fn rate_for_load(load: f64, cpus: f64, mean_ms: f64) -> f64 {
    load * cpus / (mean_ms / 1000.0)
}

/// Open-loop arrivals: a Poisson process of `rate` per second (so every function's arrivals
/// are Poisson too, thinned by its popularity), each request's work lognormal around its
/// function's mean, bounded to 50 x the mean.
pub fn make_schedule(
    funcs: &[Function],
    rate: f64,
    duration_s: f64,
    req_sigma: f64,
    seed: u64,
) -> Vec<Request> {
    let mut rng = Rng::new(seed);
    let cdf = cdf_of(&funcs.iter().map(|f| f.popularity).collect::<Vec<_>>());
    let mut out = Vec::new();
    let mut t = 0.0;
    loop {
        t += rng.exp(rate);
        if t >= duration_s {
            break;
        }
        let f = rng.pick(&cdf);
        let work_ms =
            (funcs[f].mean_ms * rng.lognormal_mean1(req_sigma)).min(funcs[f].mean_ms * 50.0);
        out.push(Request {
            t_ns: (t * 1e9) as u64,
            func: f as u32,
            work_ns: ((work_ms * 1e6) as u64).max(1_000),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------
// Statistics

// The percentile itself (linear interpolation between the closest ranks) is shared with the
// test runner's nearest-rank one in `lags_pid1::stats`.
use lags_pid1::stats::percentile_interpolated;

fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

/// The SLO of a request: response <= max(mult x service, floor).
pub fn slo_met(response_ns: f64, service_ns: f64, mult: f64, floor_ns: f64) -> bool {
    response_ns <= (mult * service_ns).max(floor_ns)
}

/// Summarises (response_ns, service_ns) pairs; response = +inf for incomplete requests.
pub fn summarize(samples: &[(f64, f64)], mult: f64, floor_ns: f64) -> Summary {
    let mut r: Vec<f64> = samples.iter().map(|s| s.0 / 1e6).collect();
    r.sort_by(f64::total_cmp);
    let completed = r.iter().filter(|v| v.is_finite()).count();
    let met = samples
        .iter()
        .filter(|(resp, svc)| slo_met(*resp, *svc, mult, floor_ns))
        .count();
    let n = r.len();
    Summary {
        n,
        completed,
        mean_ms: if completed == n && n > 0 {
            Some(r.iter().sum::<f64>() / n as f64)
        } else {
            None
        },
        p50_ms: finite(percentile_interpolated(&r, 0.50)),
        p95_ms: finite(percentile_interpolated(&r, 0.95)),
        p99_ms: finite(percentile_interpolated(&r, 0.99)),
        p999_ms: finite(percentile_interpolated(&r, 0.999)),
        max_ms: finite(r.last().copied()),
        slo_attainment: (n > 0).then(|| met as f64 / n as f64),
    }
}

/// The measured requests of an open-loop window second by second, by arrival: second `k`
/// holds the requests that arrived `k` to `k + 1` s after the window opened, every one of
/// them (a request that never completed is late, in the histogram's last bin), `good` those
/// that met their SLO. `samples` are (arrival ns after the window opened, response ns,
/// service ns); arrivals at or past `secs` seconds are left out. The report's bootstrap
/// resamples these seconds, so that attainment, tails and capacity get intervals.
pub fn per_arrival_second(
    samples: &[(u64, f64, f64)],
    secs: usize,
    mult: f64,
    floor_ns: f64,
) -> Vec<SecondCounts> {
    let mut by_second = vec![Vec::new(); secs];
    for &(at, resp, svc) in samples {
        if let Some(v) = by_second.get_mut((at / 1_000_000_000) as usize) {
            v.push((resp, svc));
        }
    }
    by_second
        .iter()
        .map(|v: &Vec<(f64, f64)>| SecondCounts {
            completed: v.len() as u64,
            good: v
                .iter()
                .filter(|&&(resp, svc)| slo_met(resp, svc, mult, floor_ns))
                .count() as u64,
            hist: histogram(v.iter().map(|s| s.0)),
        })
        .collect()
}

pub fn hist_bin(us: f64) -> usize {
    if !us.is_finite() {
        return HIST_BINS - 1;
    }
    if us < 1.0 {
        return 0;
    }
    ((us.log10() * BINS_PER_DECADE as f64).floor() as usize).min(HIST_BINS - 1)
}

pub fn histogram(responses_ns: impl Iterator<Item = f64>) -> Hist {
    let mut c = vec![0u64; HIST_BINS];
    for r in responses_ns {
        c[hist_bin(r / 1e3)] += 1;
    }
    Hist {
        bins: c
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i as u32, n))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// /proc parsing

/// The unit of `/proc/stat`'s CPU times (USER_HZ), per second.
pub fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// `/proc/stat`: aggregate CPU jiffies and the context-switch counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ProcStat {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    pub ctxt: u64,
}

impl ProcStat {
    pub fn parse(text: &str) -> ProcStat {
        let mut s = ProcStat::default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            match it.next() {
                Some("cpu") => {
                    let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
                    let g = |i: usize| v.get(i).copied().unwrap_or(0);
                    s.user = g(0);
                    s.nice = g(1);
                    s.system = g(2);
                    s.idle = g(3);
                    s.iowait = g(4);
                    s.irq = g(5);
                    s.softirq = g(6);
                    s.steal = g(7);
                }
                Some("ctxt") => s.ctxt = it.next().and_then(|x| x.parse().ok()).unwrap_or(0),
                _ => {}
            }
        }
        s
    }

    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    /// The aggregate line of `/proc/stat` now.
    pub fn read() -> ProcStat {
        ProcStat::parse(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
    }

    /// Busy (non-idle: neither idle nor iowait) CPU ticks since boot.
    fn busy(&self) -> u64 {
        self.total() - self.idle - self.iowait
    }

    /// Busy CPU time from `a` to `self` over every CPU, ms.
    pub fn busy_ms_since(&self, a: &ProcStat) -> f64 {
        self.busy().saturating_sub(a.busy()) as f64 * 1e3 / clock_ticks_per_s()
    }

    /// (busy fraction, kernel fraction) of the interval from `a` to `self`.
    pub fn util_since(&self, a: &ProcStat) -> (f64, f64) {
        let total = self.total().saturating_sub(a.total()) as f64;
        if total <= 0.0 {
            return (0.0, 0.0);
        }
        let busy = self.busy().saturating_sub(a.busy()) as f64;
        let kern = (self.system + self.irq + self.softirq)
            .saturating_sub(a.system + a.irq + a.softirq) as f64;
        (busy / total, kern / total)
    }
}

/// `/proc/schedstat`, summed over CPUs: schedule() calls, time tasks spent running and
/// waiting on a runqueue (ns), timeslices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SchedStat {
    pub sched_count: u64,
    pub sched_goidle: u64,
    pub ttwu_count: u64,
    /// Of those, wake-ups whose target CPU was the waker's own.
    pub ttwu_local: u64,
    pub run_ns: u64,
    pub run_delay_ns: u64,
    pub timeslices: u64,
    /// CPU lines read: 0 when the kernel has no `/proc/schedstat` (no `CONFIG_SCHEDSTATS`,
    /// as on some hosts), and then the counts above are unknown, not zero.
    pub cpus: u64,
}

impl SchedStat {
    pub fn parse(text: &str) -> SchedStat {
        let mut s = SchedStat::default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let Some(head) = it.next() else { continue };
            if !head.starts_with("cpu") {
                continue;
            }
            // cpuN yld_count 0 sched_count sched_goidle ttwu_count ttwu_local rq_cpu_time
            // run_delay pcount
            let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
            if v.len() < 9 {
                continue;
            }
            s.sched_count += v[2];
            s.sched_goidle += v[3];
            s.ttwu_count += v[4];
            s.ttwu_local += v[5];
            s.run_ns += v[6];
            s.run_delay_ns += v[7];
            s.timeslices += v[8];
            s.cpus += 1;
        }
        s
    }

    pub fn delta(&self, a: &SchedStat) -> SchedStat {
        SchedStat {
            sched_count: self.sched_count.saturating_sub(a.sched_count),
            sched_goidle: self.sched_goidle.saturating_sub(a.sched_goidle),
            ttwu_count: self.ttwu_count.saturating_sub(a.ttwu_count),
            ttwu_local: self.ttwu_local.saturating_sub(a.ttwu_local),
            run_ns: self.run_ns.saturating_sub(a.run_ns),
            run_delay_ns: self.run_delay_ns.saturating_sub(a.run_delay_ns),
            timeslices: self.timeslices.saturating_sub(a.timeslices),
            cpus: self.cpus.min(a.cpus),
        }
    }
}

/// Value of a `key value` or `key:\tvalue` line.
pub fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once([':', ' '])?;
        (k.trim() == key).then(|| v.split_whitespace().next()?.parse().ok())?
    })
}

/// `usecs/op` of `perf bench sched pipe`.
pub fn parse_perf_pipe(out: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let i = l.find("usecs/op")?;
        l[..i].split_whitespace().last()?.parse().ok()
    })
}

/// `Total time: X [sec]` of `perf bench sched messaging`.
pub fn parse_perf_total(out: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Total time:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `bogo-ops-per-second-real-time` of a stress-ng YAML report.
pub fn parse_stress_yaml(out: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("bogo-ops-per-second-real-time:")?;
        rest.trim().parse().ok()
    })
}

/// A mounted cgroup hierarchy that may carry the cpu controller: a cgroup2 mount, or a v1
/// mount with the `cpu` option (`--host` runs on whatever the host has).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    pub path: String,
    pub v2: bool,
}

/// The candidate hierarchies of `/proc/self/mountinfo`, in mount order: every cgroup2 mount
/// and every v1 mount whose super options name `cpu` (not `cpuset` or `cpuacct` alone).
/// Whether a cgroup2 mount offers `cpu` is for the caller to read (`cgroup.controllers`).
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let path = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let opts = post.nth(1).unwrap_or("");
            let path = path.replace("\\040", " ");
            match fstype {
                "cgroup2" => Some(CgroupMount { path, v2: true }),
                "cgroup" if opts.split(',').any(|o| o == "cpu") => {
                    Some(CgroupMount { path, v2: false })
                }
                _ => None,
            }
        })
        .collect()
}

/// What `perf report --stdio --children --sort sym -g none` says about a profile:
/// (event count, share of samples in `__schedule()` and callees, share in the idle loop
/// outside `__schedule()`). The event count of `cpu-clock` is the sampled CPU time in ns.
/// `None` without a header or with an empty profile.
pub fn parse_perf_children(report: &str) -> Option<(u64, f64, f64)> {
    let mut events = None;
    let share = |sym: &str| {
        report.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            let children = w.next()?.strip_suffix('%')?.parse::<f64>().ok()?;
            let _self = w.next()?.strip_suffix('%')?;
            (w.next()? == "[k]" && w.next()? == sym && w.next().is_none())
                .then_some(children / 100.0)
        })
    };
    let sched = share("__schedule").unwrap_or(0.0);
    let idle = share("do_idle").unwrap_or(0.0) - share("schedule_idle").unwrap_or(0.0);
    for l in report.lines() {
        if let Some(v) = l.strip_prefix("# Event count (approx.):") {
            events = v.trim().parse::<u64>().ok();
        }
    }
    let events = events.filter(|&e| e > 0)?;
    Some((events, sched, idle.max(0.0)))
}

/// One function's line of an ftrace `trace_stat/function<N>` file (the function profiler
/// with the graph tracer): `name  hits  time us  avg us  s^2 us`, times in µs with up to
/// three decimals. `None` when the function has no line (it did not return on that CPU).
pub fn parse_function_stat(text: &str, func: &str) -> Option<SchedFtrace> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        if w.next()? != func {
            return None;
        }
        let calls = w.next()?.parse::<u64>().ok()?;
        let us = w.next()?;
        (w.next()? == "us").then_some(())?;
        // Integer arithmetic on the printed digits (whole µs past 7 digits).
        let (int, frac) = us.split_once('.').unwrap_or((us, ""));
        let mut ns = int.parse::<u64>().ok()?.checked_mul(1000)?;
        if !frac.is_empty() {
            let digits = frac.len().min(3);
            let f = frac[..digits].parse::<u64>().ok()?;
            ns += f * 10u64.pow(3 - digits as u32);
        }
        Some(SchedFtrace { calls, time_ns: ns })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the profiler's line of the function asked for, times as ns in each of the
    // widths the kernel prints (3, 2, 1 or no decimals as the integer part grows); another
    // function's line, or none, is None.
    #[test]
    fn function_profiler_stat() {
        let text = "  Function                               Hit    Time            Avg             s^2\n  --------                               ---    ----            ---             ---\n  schedule                            12345    4567.891 us     0.370 us        0.123 us    \n  schedule_idle                          10    12345.67 us     1234.567 us     0.000 us    \n";
        let at = |text: &str, f: &str| parse_function_stat(text, f).map(|s| (s.calls, s.time_ns));
        assert_eq!(at(text, "schedule"), Some((12345, 4_567_891)));
        assert_eq!(at(text, "schedule_idle"), Some((10, 12_345_670)));
        assert_eq!(at(text, "__schedule"), None);
        let one = "  schedule                              7    123456.7 us     17636.67 us     9.000 us    \n";
        assert_eq!(at(one, "schedule"), Some((7, 123_456_700)));
        let none = "  schedule                       98765432    12345678 us     124.999 us     9.000 us    \n";
        assert_eq!(at(none, "schedule"), Some((98_765_432, 12_345_678_000)));
        assert_eq!(at("  schedule  12  bad us\n", "schedule"), None);
        assert_eq!(at("  schedule  12  1.000 ms\n", "schedule"), None);
        assert_eq!(at("", "schedule"), None);
    }

    // Expect the generator's moments to match the distributions' definitions.
    #[test]
    fn distributions() {
        let mut r = Rng::new(1);
        let n = 200_000;
        let u: f64 = (0..n).map(|_| r.uniform()).sum::<f64>() / n as f64;
        assert!((u - 0.5).abs() < 0.005, "{u}");
        let e: f64 = (0..n).map(|_| r.exp(4.0)).sum::<f64>() / n as f64;
        assert!((e - 0.25).abs() < 0.005, "{e}");
        let z: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let m = z.iter().sum::<f64>() / n as f64;
        let v = z.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "{m} {v}");
        let l: f64 = (0..n).map(|_| r.lognormal_mean1(1.0)).sum::<f64>() / n as f64;
        assert!((l - 1.0).abs() < 0.03, "{l}");
        // Same seed, same stream.
        assert_eq!(Rng::new(9).next_u64(), Rng::new(9).next_u64());
        assert_ne!(mix_seed(1, &[1, 2]), mix_seed(1, &[2, 1]));
    }

    // Expect Zipf weights to be normalised, decreasing, with the right ratio, and picks to
    // follow them.
    #[test]
    fn zipf_and_pick() {
        let w = zipf_weights(10, 1.0);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((w[0] / w[1] - 2.0).abs() < 1e-12);
        let cdf = cdf_of(&w);
        let mut counts = [0usize; 10];
        let mut r = Rng::new(3);
        for _ in 0..100_000 {
            counts[r.pick(&cdf)] += 1;
        }
        let f0 = counts[0] as f64 / 100_000.0;
        assert!((f0 - w[0]).abs() < 0.01, "{f0} vs {}", w[0]);
    }

    // Expect the function set to hit the requested mean, respect the demand cap and split
    // the demand roughly in half between heavy and light.
    #[test]
    fn functions_and_schedule() {
        let fs = make_functions(100, 1.0, 1.0, 5.0, 0.15, 42);
        let mean: f64 = fs.iter().map(|f| f.popularity * f.mean_ms).sum();
        assert!((mean - 5.0).abs() < 1e-9, "{mean}");
        assert!(fs.iter().all(|f| f.demand_share <= 0.15 + 1e-6));
        let heavy: f64 = fs.iter().filter(|f| f.heavy).map(|f| f.demand_share).sum();
        assert!((0.5..0.7).contains(&heavy), "{heavy}");
        assert!(fs.iter().filter(|f| f.heavy).count() < 50);

        let rate = rate_for_load(0.5, 2.0, 5.0);
        assert!((rate - 200.0).abs() < 1e-9);
        let s = make_schedule(&fs, rate, 50.0, 1.0, 7);
        let n = s.len() as f64;
        assert!((n / 50.0 - rate).abs() / rate < 0.05, "{n}");
        let work: f64 = s.iter().map(|r| r.work_ns as f64).sum::<f64>() / n / 1e6;
        assert!((work - 5.0).abs() < 0.5, "mean work {work}");
        assert!(s.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
        // Deterministic.
        assert_eq!(s, make_schedule(&fs, rate, 50.0, 1.0, 7));
    }

    // Expect interpolated percentiles and incomplete requests to count as +inf (the
    // percentile function's own cases: lags_pid1::stats).
    #[test]
    fn percentiles_and_slo() {
        assert!(slo_met(10e6, 1e6, 10.0, 5e6));
        assert!(!slo_met(10.1e6, 1e6, 10.0, 5e6));
        assert!(slo_met(5e6, 0.1e6, 10.0, 5e6)); // floor applies
        let samples = [(1e6, 1e6), (30e6, 1e6), (f64::INFINITY, 1e6), (2e6, 1e6)];
        let s = summarize(&samples, 10.0, 5e6);
        assert_eq!((s.n, s.completed), (4, 3));
        assert_eq!(s.slo_attainment, Some(0.5));
        assert_eq!(s.max_ms, None);
        assert_eq!(s.mean_ms, None);
        assert_eq!(s.p50_ms, Some(16.0));
    }

    // Expect each request in the second it arrived in, late and never-completed ones
    // counted but not good, and arrivals past the window left out.
    #[test]
    fn open_loop_seconds() {
        let s = 1_000_000_000u64;
        let samples = [
            (0, 1e6, 1e6),           // second 0, met
            (s - 1, 30e6, 1e6),      // second 0, late (SLO 10 ms)
            (s, f64::INFINITY, 1e6), // second 1, never completed
            (2 * s + 5, 4e6, 0.1e6), // second 2, met through the 5 ms floor
            (3 * s, 1e6, 1e6),       // past a 3 s window
        ];
        let v = per_arrival_second(&samples, 3, 10.0, 5e6);
        assert_eq!(v.len(), 3);
        assert_eq!((v[0].completed, v[0].good), (2, 1));
        assert_eq!((v[1].completed, v[1].good), (1, 0));
        assert_eq!((v[2].completed, v[2].good), (1, 1));
        assert_eq!(v[0].hist.bins, vec![(60, 1), (89, 1)]);
        assert_eq!(v[1].hist.bins, vec![(HIST_BINS as u32 - 1, 1)]);
        let total: u64 = v.iter().map(|c| c.completed).sum();
        assert_eq!(total, 4);
    }

    // Expect log bins at 20 per decade from 1 us, everything huge in the last bin.
    #[test]
    fn hist() {
        assert_eq!(hist_bin(0.5), 0);
        assert_eq!(hist_bin(1.0), 0);
        assert_eq!(hist_bin(10.0), 20);
        assert_eq!(hist_bin(1000.0), 60);
        assert_eq!(hist_bin(f64::INFINITY), HIST_BINS - 1);
        assert_eq!(hist_bin(1e12), HIST_BINS - 1);
        let h = histogram([1e4, 1e4, 1e6].into_iter());
        assert_eq!(h.bins, vec![(20, 2), (60, 1)]);
    }

    // Expect the /proc formats of 6.12 and the tools' outputs to parse.
    #[test]
    fn proc_and_tools() {
        let st = ProcStat::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\nctxt 12345\n");
        assert_eq!(st.ctxt, 12345);
        let a = ProcStat::default();
        let (busy, kern) = st.util_since(&a);
        assert!((busy - 0.15).abs() < 1e-9 && (kern - 0.05).abs() < 1e-9);
        // 150 busy ticks (user 100 + system 50; idle and iowait excluded) at Linux's USER_HZ
        // of 100: 1.5 s.
        assert_eq!(clock_ticks_per_s(), 100.0);
        assert!((st.busy_ms_since(&a) - 1500.0).abs() < 1e-9);
        let ss = SchedStat::parse(
            "version 16\ntimestamp 1\ncpu0 0 0 10 2 5 1 1000 300 7\ndomain0 3 1 2 3\ncpu1 0 0 20 3 6 2 2000 700 8\n",
        );
        assert_eq!(
            (ss.sched_count, ss.run_ns, ss.run_delay_ns, ss.timeslices),
            (30, 3000, 1000, 15)
        );
        assert_eq!((ss.ttwu_count, ss.ttwu_local), (11, 3));
        assert_eq!(ss.cpus, 2);
        assert_eq!(SchedStat::parse("").cpus, 0, "a kernel without schedstats");
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(field(status, "voluntary_ctxt_switches"), Some(12));
        assert_eq!(field(status, "nonvoluntary_ctxt_switches"), Some(3));
        assert_eq!(
            field("lags_picks 9\nlags_credit_mcpu 3\n", "lags_picks"),
            Some(9)
        );
        let pipe = "# Running 'sched/pipe' benchmark:\n# Executed 1000 pipe operations between two processes\n\n     Total time: 0.050 [sec]\n\n      50.123000 usecs/op\n           19950 ops/sec\n";
        assert_eq!(parse_perf_pipe(pipe), Some(50.123));
        assert_eq!(parse_perf_total(pipe), Some(0.05));
        let yaml = "metrics:\n    - stressor: switch\n      bogo-ops: 100\n      bogo-ops-per-second-real-time: 33.500000\n";
        assert_eq!(parse_stress_yaml(yaml), Some(33.5));
    }

    // Expect the v2 mount and only the v1 mount carrying `cpu` (as on this project's own
    // development host: v1 controllers under a tmpfs, a cgroup2 mount at .../unified).
    #[test]
    fn cgroup_mounts_from_mountinfo() {
        let mi = "\
25 30 0:22 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/cpuset rw,relatime shared:12 - cgroup cgroup rw,cpuset
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/unified rw,relatime shared:14 - cgroup2 cgroup2 rw
31 30 0:28 / /proc rw - proc proc rw
";
        let m = cgroup_mounts(mi);
        assert_eq!(
            m,
            vec![
                CgroupMount {
                    path: "/sys/fs/cgroup/cpu".into(),
                    v2: false
                },
                CgroupMount {
                    path: "/sys/fs/cgroup/cpu,cpuacct".into(),
                    v2: false
                },
                CgroupMount {
                    path: "/sys/fs/cgroup/unified".into(),
                    v2: true
                },
            ]
        );
        assert!(cgroup_mounts("garbage\n1 2 3\n").is_empty());
    }

    // Expect the shares of a real `perf report` (captured on the development host) and no
    // answer from a report without samples.
    #[test]
    fn perf_children_report() {
        let rep = "\
# Total Lost Samples: 0
#
# Samples: 997  of event 'cpu-clock'
# Event count (approx.): 997997997
#
# Children      Self  Symbol
# ........  ........  ...................................
#
    99.60%    99.60%  [k] pv_native_safe_halt
    99.60%     0.00%  [k] do_idle
     2.10%     0.00%  [k] schedule_idle
     3.10%     0.20%  [k] __schedule
     0.10%     0.00%  [k] schedule
     0.10%     0.10%  [.] __schedule_user
";
        let (ev, sched, idle) = parse_perf_children(rep).unwrap();
        assert_eq!(ev, 997_997_997);
        assert!((sched - 0.031).abs() < 1e-9, "{sched}");
        assert!((idle - 0.975).abs() < 1e-9, "{idle}");
        assert_eq!(parse_perf_children("# Event count (approx.): 0\n"), None);
        assert_eq!(
            parse_perf_children("    1.00%  0.00%  [k] __schedule\n"),
            None
        );
    }
}
