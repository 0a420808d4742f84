// SPDX-License-Identifier: GPL-2.0
//! The measured window of a closed-loop run (`rdhashd`, `knative`): its bounds, totals,
//! latency histogram and per-second counts live in a shared mapping that the request threads
//! of every process write, and the run's record is built from them and from the system
//! snapshots around the window.

use std::sync::atomic::{AtomicU64, Ordering};

use lags_bench::closed_loop::hist_quantile_ms;
use lags_bench::*;

use std::time::Duration;

use lags_pid1::clock::{now_ns, sleep_until_ns};

use crate::ftrace::Ftrace;
use crate::rdhashd::{Map, Profiler};
use crate::{host, snapshot, Ctx, Out};

/// Window seconds with their own counts; later seconds count only in the totals.
pub(crate) const MAX_SECONDS: usize = 3600;
/// Per second: completed, good, then the histogram.
const SEC_STRIDE: usize = 2 + HIST_BINS;

const START: usize = 0;
const END: usize = 1;
const THRESHOLD_NS: usize = 2;
const COMPLETED: usize = 3;
const GOOD: usize = 4;
const HIST0: usize = 5;
const SEC0: usize = HIST0 + HIST_BINS;

/// Slots `[base, base + Window::LEN)` of a `Map<AtomicU64>`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub base: usize,
}

/// What a window counted.
pub(crate) struct Counts {
    pub completed: u64,
    pub good: u64,
    pub hist: Hist,
    pub per_second: Vec<SecondCounts>,
}

impl Window {
    pub const LEN: usize = SEC0 + MAX_SECONDS * SEC_STRIDE;

    fn at<'a>(&self, c: &'a Map<AtomicU64>, i: usize) -> &'a AtomicU64 {
        c.at(self.base + i)
    }

    /// Clears the counts of a window of `secs` seconds and sets its bounds; requests that
    /// complete in `[start_ns, end_ns)` count, good ones below `threshold_ns`.
    pub fn open(
        &self,
        c: &Map<AtomicU64>,
        start_ns: u64,
        end_ns: u64,
        threshold_ns: u64,
        secs: usize,
    ) {
        for i in COMPLETED..SEC0 + secs.min(MAX_SECONDS) * SEC_STRIDE {
            self.at(c, i).store(0, Ordering::Relaxed);
        }
        self.at(c, THRESHOLD_NS)
            .store(threshold_ns, Ordering::Relaxed);
        self.at(c, START).store(start_ns, Ordering::Relaxed);
        self.at(c, END).store(end_ns, Ordering::Release);
    }

    /// Counts a request that completed at `done_ns` after `latency_ns`, if inside the window.
    pub fn count(&self, c: &Map<AtomicU64>, done_ns: u64, latency_ns: u64) {
        let start = self.at(c, START).load(Ordering::Acquire);
        if done_ns < start || done_ns >= self.at(c, END).load(Ordering::Acquire) {
            return;
        }
        let good = latency_ns < self.at(c, THRESHOLD_NS).load(Ordering::Relaxed);
        let bin = hist_bin(latency_ns as f64 / 1e3);
        self.at(c, COMPLETED).fetch_add(1, Ordering::Relaxed);
        if good {
            self.at(c, GOOD).fetch_add(1, Ordering::Relaxed);
        }
        self.at(c, HIST0 + bin).fetch_add(1, Ordering::Relaxed);
        let sec = ((done_ns - start) / 1_000_000_000) as usize;
        if sec < MAX_SECONDS {
            let s = SEC0 + sec * SEC_STRIDE;
            self.at(c, s).fetch_add(1, Ordering::Relaxed);
            if good {
                self.at(c, s + 1).fetch_add(1, Ordering::Relaxed);
            }
            self.at(c, s + 2 + bin).fetch_add(1, Ordering::Relaxed);
        }
    }

    fn hist(&self, c: &Map<AtomicU64>, from: usize) -> Hist {
        Hist {
            bins: (0..HIST_BINS)
                .map(|b| (b as u32, self.at(c, from + b).load(Ordering::Acquire)))
                .filter(|&(_, n)| n > 0)
                .collect(),
        }
    }

    /// The counts of a window of `secs` seconds.
    pub fn read(&self, c: &Map<AtomicU64>, secs: usize) -> Counts {
        Counts {
            completed: self.at(c, COMPLETED).load(Ordering::Acquire),
            good: self.at(c, GOOD).load(Ordering::Acquire),
            hist: self.hist(c, HIST0),
            per_second: (0..secs.min(MAX_SECONDS))
                .map(|sec| {
                    let s = SEC0 + sec * SEC_STRIDE;
                    SecondCounts {
                        completed: self.at(c, s).load(Ordering::Acquire),
                        good: self.at(c, s + 1).load(Ordering::Acquire),
                        hist: self.hist(c, s + 2),
                    }
                })
                .collect(),
        }
    }
}

/// The system snapshot of `crate::snapshot`: time, `/proc/stat`, `/proc/schedstat`.
pub(crate) type Snap = (u64, ProcStat, SchedStat);

/// What every closed-loop record holds, from the window's counts and the snapshots around
/// it; `count` is the run's function (or user) count, and the workload fills in the rest.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    ctx: &Ctx,
    cfg: &str,
    count: usize,
    rep: usize,
    seed: u64,
    counts: Counts,
    ran: &Ran,
    threshold_ms: f64,
) -> RdhashdRecord {
    let (start, end) = (&ran.start, &ran.end);
    let completed = counts.completed;
    let ctxt = end.1.ctxt.saturating_sub(start.1.ctxt);
    let ss = end.2.delta(&start.2);
    let (util, kernel) = end.1.util_since(&start.1);
    let per = |x: u64| (completed > 0).then(|| x as f64 / completed as f64);
    RdhashdRecord {
        config: cfg.to_string(),
        funcs: count,
        rep,
        seed,
        cpus: ctx.cpus,
        capacity_cpus: ctx.capacity,
        window_s: (end.0 - start.0) as f64 / 1e9,
        completed,
        good: counts.good,
        threshold_ms,
        p50_ms: hist_quantile_ms(&counts.hist, 0.50),
        p90_ms: hist_quantile_ms(&counts.hist, 0.90),
        p99_ms: hist_quantile_ms(&counts.hist, 0.99),
        p999_ms: hist_quantile_ms(&counts.hist, 0.999),
        hist: counts.hist,
        cpu_util: util,
        cpu_kernel: Some(kernel),
        ctxt,
        ctxt_per_req: per(ctxt),
        sched_count: ss.sched_count,
        schedule_per_req: if ss.cpus > 0 {
            per(ss.sched_count)
        } else {
            None
        },
        wakeups: (ss.cpus > 0).then_some(ss.ttwu_count),
        wakeups_local: (ss.cpus > 0).then_some(ss.ttwu_local),
        // A window cut short by a signal has no per-second CPU for its last seconds.
        busy_ms_per_second: if ran.busy_ms.len() == counts.per_second.len() {
            ran.busy_ms.clone()
        } else {
            Vec::new()
        },
        per_second: counts.per_second,
        sched_profile: ran.profile.clone(),
        sched_ftrace: ran.ftrace.clone(),
        ..RdhashdRecord::default()
    }
}

/// The timeline of one run: `warm` seconds of warm-up from `t0`, then the measured window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeline {
    pub t0: u64,
    pub warm: u64,
    pub total: u64,
}

/// How a run's timeline went.
pub(crate) struct Ran {
    pub start: Snap,
    pub end: Snap,
    pub profile: Option<SchedProfile>,
    /// Time inside `schedule()` and `schedule_idle()` from the function profiler.
    pub ftrace: Option<SchedFtrace>,
    /// Busy CPU time of every measured second, ms (`/proc/stat` read at each second's start).
    pub busy_ms: Vec<f64>,
    /// A signal ended the run early (`--host`).
    pub stopped: bool,
}

impl Window {
    /// Opens the window of a run that starts in 10 ms with `warm` seconds of warm-up and
    /// `secs` measured seconds.
    pub fn start_run(
        &self,
        c: &Map<AtomicU64>,
        warm: u64,
        secs: u64,
        threshold_ms: f64,
    ) -> Timeline {
        let t0 = now_ns() + 10_000_000;
        let total = warm + secs;
        self.open(
            c,
            t0 + warm * 1_000_000_000,
            t0 + total * 1_000_000_000,
            (threshold_ms * 1e6) as u64,
            secs as usize,
        );
        Timeline { t0, warm, total }
    }
}

/// What measures the window besides the counters.
pub(crate) struct Probes<'a> {
    /// A `perf record` of the window (`lb.rd_prof`).
    pub perf: bool,
    /// The function profiler over the window (`lb.rd_ftrace`).
    pub ftrace: Option<&'a Ftrace>,
}

/// Runs the timeline: `each_second(s)` at the start of every second, the system snapshot
/// (and the probes) from the first measured second, a signal ending it early; `at_end` as
/// soon as the window closes, before the profiles are read.
pub(crate) fn drive(
    tl: Timeline,
    probes: Probes,
    out: &Out,
    workload: &str,
    mut each_second: impl FnMut(u64),
    at_end: impl FnOnce(),
) -> Ran {
    let mut start = None;
    let mut profiler = None;
    let mut traced = None;
    let mut stopped = false;
    let mut busy = BusyPerSecond::default();
    for s in 0..tl.total {
        sleep_until_ns(tl.t0 + s * 1_000_000_000);
        if host::stopping() {
            stopped = true;
            break;
        }
        if s == tl.warm {
            let snap = snapshot();
            busy.mark(snap.1);
            start = Some(snap);
            if probes.perf {
                profiler = Some(Profiler::start());
            }
            // Starting it patches two call sites: charged to this window, in every
            // configuration alike.
            if let Some(f) = probes.ftrace {
                traced = Some(f.start().map(|()| f));
            }
        } else if s > tl.warm {
            busy.mark(ProcStat::read());
        }
        each_second(s);
    }
    if !stopped {
        sleep_until_ns(tl.t0 + tl.total * 1_000_000_000);
    }
    let end = snapshot();
    // The function profiler stops right at the window's end, the perf recording below
    // after `at_end`.
    let ftrace = match traced.map(|t| t.and_then(Ftrace::finish)) {
        Some(Err(e)) => {
            out.say(&format!("warning: {workload}: ftrace: {e}"));
            None
        }
        Some(Ok(_)) if stopped => None,
        Some(Ok(f)) => Some(f),
        None => None,
    };
    if !stopped {
        busy.mark(end.1);
    }
    at_end();
    let profile = match profiler.map(|p| p.and_then(|p| p.finish(stopped))) {
        Some(Err(e)) => {
            out.say(&format!("warning: {workload}: profile: {e}"));
            None
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    Ran {
        start: start.unwrap_or(end),
        end,
        profile,
        ftrace,
        busy_ms: busy.ms,
        stopped,
    }
}

/// Busy CPU time second by second: `mark` at the start of the window and at the end of each
/// second gives one value per second, in order, aligned with the per-second request counts
/// (which count from the window's start).
#[derive(Default)]
struct BusyPerSecond {
    last: Option<ProcStat>,
    ms: Vec<f64>,
}

impl BusyPerSecond {
    fn mark(&mut self, now: ProcStat) {
        if let Some(prev) = self.last.replace(now) {
            self.ms.push(now.busy_ms_since(&prev));
        }
    }
}

/// Waits until `busy` (requests in flight) is 0, at most `limit_ns`; returns the seconds
/// waited.
pub(crate) fn drain(busy: &AtomicU64, limit_ns: u64) -> f64 {
    let t = now_ns();
    while busy.load(Ordering::Acquire) > 0 && now_ns() - t < limit_ns {
        std::thread::sleep(Duration::from_millis(5));
    }
    (now_ns() - t) as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect one busy value per second after the window's first mark, each the busy time
    // (idle and iowait excluded) since the mark before it, in order: the second-by-second
    // values line up with the request counts, and a second of more work reads more.
    #[test]
    fn busy_time_per_second() {
        let at = |user: u64, system: u64, idle: u64| ProcStat {
            user,
            system,
            idle,
            ..ProcStat::default()
        };
        let mut b = BusyPerSecond::default();
        b.mark(at(1000, 100, 5000));
        assert!(b.ms.is_empty(), "the window's start is no second");
        b.mark(at(1150, 110, 5040)); // 160 ticks busy
        b.mark(at(1170, 110, 5220)); // 20 ticks busy, the rest idle
        b.mark(at(1370, 120, 5230)); // 210 ticks busy
        let hz = clock_ticks_per_s();
        assert_eq!(b.ms.len(), 3);
        let ms: Vec<f64> = b.ms.iter().map(|m| m * hz / 1e3).collect();
        assert_eq!(ms, [160.0, 20.0, 210.0]);
    }
}
