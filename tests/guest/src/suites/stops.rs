// SPDX-License-Identifier: GPL-2.0
//! Guest stops and the lag bound.
//!
//! The debug kernel counts every LAGS lag it finds beyond EEVDF's bound in debugfs
//! `sched/lags/lag_overflows`. The bound assumes the CPU is there: it allows one tick of
//! overrun. Under TCG a vCPU stops while the host runs something else (another vCPU under
//! single-threaded TCG, or another process on a busy host), and the task that was running is
//! charged the stop when the vCPU resumes, so its lag can pass any bound; no scheduler bounds
//! that. A SCHED_FIFO watcher pinned to a CPU sees such a stop as a late wake-up.
//! [`attribute`] splits the counter's increments into those a stop explains and the others,
//! which are failures.

use std::time::Duration;

use super::{Ctx, OrFail, Stop};
use crate::util::{self, Cgroup, Worker, WorkerIo};

/// Debug counter of LAGS lags found beyond EEVDF's bound (CONFIG_SCHED_DEBUG).
pub const LAG_OVERFLOWS: &str = "/sys/kernel/debug/sched/lags/lag_overflows";

/// One watcher interval (a record of the lag_overflows count): 50 ms.
pub const INTERVAL_NS: u64 = 50_000_000;
/// The lag test's sampling period: a stop longer than [`STALL_NS`] always shows.
pub const FINE_PERIOD_NS: u64 = 1_000_000;
/// The stress suite's sampling period. A stop of S shows as a wake-up at least
/// S - 10 ms late, so every stop longer than 12 ms shows; a stop up to r_max (11.2 ms at
/// the 1.4 ms base slice of 2 CPUs) cannot push a lag past 2·r_max + a tick, and one of
/// 11.2-12 ms overruns it by less than 0.8 ms. A 1 ms grid on every CPU of the debug
/// kernel under TCG took most of the CPU (ten times fewer stress operations).
pub const COARSE_PERIOD_NS: u64 = 10_000_000;
/// A watcher wake-up this late means the vCPU stopped: two ticks at the project's HZ=1000
/// (the lag bound allows one tick of overrun).
pub const STALL_NS: u64 = 2_000_000;
/// How long a watcher may take to send its samples after being told to stop.
const WATCHER_TIMEOUT: Duration = Duration::from_secs(30);

pub fn lag_overflows() -> Result<u64, Stop> {
    util::read_trimmed(LAG_OVERFLOWS)
        .or_fail(LAG_OVERFLOWS)?
        .parse()
        .map_err(|e| Stop::Fail(format!("{LAG_OVERFLOWS}: {e}")))
}

/// The stall watcher (SCHED_FIFO): wakes on a grid of `period_ns` (a divisor of
/// [`INTERVAL_NS`]), and every 50 ms records the time, the lag_overflows count and the
/// largest wake-up lateness seen since the previous record; sends the records as
/// `(t_ns, count, worst_ns)` triples when told to stop. With `home`, it pins itself back to
/// that CPU at every record, since taking the CPU offline moves it away for good.
pub fn stall_watcher(io: &mut WorkerIo, period_ns: u64, home: Option<usize>) -> i32 {
    if let Err(e) = util::set_fifo(20) {
        io.send_kv("rt", e);
        return 1;
    }
    let mut out = Vec::new();
    let read_every = (INTERVAL_NS / period_ns).max(1);
    let mut next = util::now_ns() + period_ns;
    let (mut n, mut worst) = (0u64, 0u64);
    while !io.stop_requested() {
        util::sleep_until_ns(next);
        worst = worst.max(util::now_ns().saturating_sub(next));
        next += period_ns;
        n += 1;
        if n % read_every == 0 {
            let Some(count) = util::read_trimmed(LAG_OVERFLOWS)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            else {
                io.send_kv("read", LAG_OVERFLOWS);
                return 1;
            };
            out.extend([util::now_ns(), count, worst]);
            worst = 0;
            if let Some(cpu) = home {
                // Fails while the CPU is offline; the next record tries again.
                let _ = util::set_affinity(0, &[cpu]);
            }
            // A stop longer than the grid: start again from now, not with a burst.
            next = next.max(util::now_ns() + period_ns);
        }
    }
    io.send(&util::encode_u64s(&out));
    0
}

/// lag_overflows increments split by whether a stop of the guest can explain them.
#[derive(Debug, Default, PartialEq)]
pub struct Overflows {
    pub explained: u64,
    pub unexplained: u64,
    /// Records (of all watchers) with a stop longer than `stall_ns`.
    pub stalled_intervals: u64,
    /// Records (of all watchers) in which an overflow would be explained.
    pub excused_intervals: u64,
    /// Records of all watchers.
    pub intervals: u64,
    pub worst_stall_ns: u64,
}

/// Splits the increments of lag_overflows, from `before`, that the watchers' records
/// (`(t_ns, count, worst_ns)` triples, one vector per watcher) saw. Pure.
///
/// A stop of length S is charged to the entity that was running. If its weight is w out
/// of W queued, its lag drops by about S and the others' lags rise by the same amount
/// in total, most of it on the heaviest member, which then stays past the bound until the
/// charged entity has been repaid: that takes about S·W/w of CPU time, during which
/// every put_prev of the heavy member counts again (the debug kernel, a 40 ms SIGSTOP of
/// QEMU: a 2 ms churn task charged 16.8 ms, then the weight-10000 group 4 ms past its
/// bound for more than 400 ms, at every 1 ms watcher wake-up). Lags in service stay
/// within r_max (+ a tick) without stops, against a bound of 2·r_max + a tick, so a stop
/// of S overruns the bound by at most S - r_max, which takes (S - r_max)·W/w to repay.
///
/// So a watcher record with a stop longer than `stall_ns` excuses the time from the
/// watcher's previous record to `repay`·(S - `rmax_ns`) after it, rounded up to whole
/// intervals, plus one interval (and half an interval for the watchers' jitter). The records
/// of all watchers, merged in time order, each carry the increments since the record before;
/// an increment is explained when its record falls in a time that some watcher's stop
/// excuses. With one watcher that is: the stop's interval, the one after, and the repayment.
pub fn attribute(
    watchers: &[Vec<u64>],
    before: u64,
    stall_ns: u64,
    rmax_ns: u64,
    repay: u64,
) -> Overflows {
    let mut o = Overflows::default();
    // (from, to]: times whose records a stop explains.
    let mut excused = Vec::new();
    let mut records = Vec::new();
    for w in watchers {
        let mut prev_t = None;
        for rec in w.chunks_exact(3) {
            let (t, count, worst) = (rec[0], rec[1], rec[2]);
            if worst > stall_ns {
                o.stalled_intervals += 1;
                let excess = worst.saturating_sub(rmax_ns);
                let window = excess.saturating_mul(repay).div_ceil(INTERVAL_NS) + 1;
                let from = prev_t.unwrap_or(t.saturating_sub(INTERVAL_NS + worst));
                let to = t.saturating_add(window * INTERVAL_NS + INTERVAL_NS / 2);
                excused.push((from, to));
            }
            o.worst_stall_ns = o.worst_stall_ns.max(worst);
            records.push((t, count));
            prev_t = Some(t);
        }
    }
    records.sort_unstable();
    let mut seen = before;
    for (t, count) in records {
        let is_excused = excused.iter().any(|&(from, to)| from < t && t <= to);
        o.intervals += 1;
        o.excused_intervals += u64::from(is_excused);
        let new = count.saturating_sub(seen);
        seen = seen.max(count);
        if is_excused {
            o.explained += new;
        } else {
            o.unexplained += new;
        }
    }
    o
}

/// Stall watchers on a [`COARSE_PERIOD_NS`] grid on every online CPU, in a group of their own that the watch removes
/// when it ends (not a LAGS group: they run SCHED_FIFO), with the lag_overflows count they
/// are measured from.
pub struct StopWatch {
    before: u64,
    watchers: Vec<Worker>,
    /// Dropped after the watchers, which are killed and reaped first.
    _cg: Cgroup,
}

impl StopWatch {
    pub fn start(cg: Cgroup) -> Result<StopWatch, Stop> {
        let before = lag_overflows()?;
        let mut watchers = Vec::new();
        for cpu in util::online_cpus().or_fail("online CPUs")? {
            let mut w = Worker::spawn(move |io| stall_watcher(io, COARSE_PERIOD_NS, Some(cpu)))
                .or_fail("fork")?;
            w.start_in(&cg, Some(cpu))
                .or_fail("starting a stall watcher")?;
            watchers.push(w);
        }
        Ok(StopWatch {
            before,
            watchers,
            _cg: cg,
        })
    }

    /// Stops the watchers and attributes the overflows since [`StopWatch::start`]. Adds a
    /// failed check for every overflow no stop explains, and for a counter below what the
    /// watchers read. Returns the attribution and the count now.
    pub fn finish(
        mut self,
        ctx: &mut Ctx,
        rmax_ns: u64,
        repay: u64,
    ) -> Result<(Overflows, u64), Stop> {
        for w in &mut self.watchers {
            w.stop();
        }
        let mut records = Vec::new();
        for w in &mut self.watchers {
            let out = w.finish(WATCHER_TIMEOUT).or_fail("stall watcher")?;
            records.push(util::decode_u64s(&out));
        }
        let after = lag_overflows()?;
        // The increments after the watchers' last records: a record of their own, excused
        // only by a stop seen before it.
        if let Some(first) = records.first_mut() {
            first.extend([util::now_ns(), after, 0]);
        }
        // On the coarse grid a wake-up shows a stop of S as S - 10 ms late at worst, so the
        // repayment is measured from a stop one period longer than the lateness seen.
        let o = attribute(
            &records,
            self.before,
            STALL_NS,
            rmax_ns.saturating_sub(COARSE_PERIOD_NS),
            repay,
        );
        ctx.check(o.unexplained == 0, || {
            format!(
                "{LAG_OVERFLOWS}: {} overflows that no guest stop explains ({} explained; \
                 stops longer than {} in {} of {} watcher intervals, longest {})",
                o.unexplained,
                o.explained,
                util::ms(STALL_NS),
                o.stalled_intervals,
                o.intervals,
                util::ms(o.worst_stall_ns)
            )
        });
        let before = self.before;
        ctx.check(after >= before + o.explained + o.unexplained, || {
            format!("{LAG_OVERFLOWS} went from {before} to {after}, below what the watchers read")
        });
        Ok((o, after))
    }
}

/// 50 ms records free of any stop that a watch needs before its "no unexplained overflow"
/// says something about the bound: 10 s (the lag test's minimum).
pub const MIN_CLEAN: u64 = 200;

/// r_max for groups of default-slice tasks: 8 times the base slice.
pub fn rmax_ns() -> Result<u64, Stop> {
    let base = util::read_trimmed("/sys/kernel/debug/sched/base_slice_ns")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .or_fail("/sys/kernel/debug/sched/base_slice_ns")?;
    Ok(base * 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// One watcher's records from `(count, worst)` pairs, one interval apart.
    fn timed(pairs: &[u64]) -> Vec<u64> {
        pairs
            .chunks_exact(2)
            .enumerate()
            .flat_map(|(k, p)| [(k as u64 + 1) * INTERVAL_NS, p[0], p[1]])
            .collect()
    }

    // Expect an overflow in an interval with a guest stop, or in the one after, to be
    // explained, and every other overflow to stay unexplained.
    #[test]
    fn overflows_attributed_to_stops() {
        // (count, worst lateness) per 50 ms interval, starting from 5 overflows.
        let samples = timed(&[
            5,
            MS / 2, // nothing new
            7,
            30 * MS, // +2 during a 30 ms stop
            8,
            MS / 2, // +1 right after it
            9,
            MS / 2, // +1 with no stop anywhere near
            9,
            3 * MS, // a stop, nothing new
        ]);
        let o = attribute(std::slice::from_ref(&samples), 5, STALL_NS, 0, 0);
        assert_eq!(
            o,
            Overflows {
                explained: 3,
                unexplained: 1,
                stalled_intervals: 2,
                excused_intervals: 3,
                intervals: 5,
                worst_stall_ns: 30 * MS,
            }
        );
        assert_eq!(attribute(&[], 5, STALL_NS, 0, 0), Overflows::default());
        // A stop no longer than r_max cannot overrun the bound: only the old two intervals.
        let o = attribute(&[samples], 5, STALL_NS, 30 * MS, 106);
        assert_eq!((o.explained, o.unexplained, o.excused_intervals), (3, 1, 3));
    }

    // The CI failure of 0faee65, as the debug kernel showed it under a 40 ms stop: a stop
    // charged to a weight-100 member leaves the heavy member past its bound for seconds,
    // counted at every watcher wake-up. Expect the repayment window to explain those
    // counts, and an overflow after the window to stay unexplained.
    #[test]
    fn overflows_while_a_charged_stop_is_repaid() {
        let mut pairs = vec![0, MS / 2, 0, 22_600_000];
        // (22.6 ms - r_max 5.6 ms) * 106 = 1.8 s: the stop's interval and the 38 after it
        // (37 intervals of 50 ms, rounded up, plus one), 50 counts in each.
        for k in 1..=38 {
            pairs.extend([50 * k, MS / 2]);
        }
        let rmax = 5_600_000;
        let o = attribute(&[timed(&pairs)], 0, STALL_NS, rmax, 106);
        assert_eq!((o.explained, o.unexplained), (1900, 0), "{o:?}");
        pairs.extend([1901, MS / 2]);
        let o = attribute(&[timed(&pairs)], 0, STALL_NS, rmax, 106);
        assert_eq!((o.explained, o.unexplained), (1900, 1), "{o:?}");
        assert_eq!(o.excused_intervals, 39, "{o:?}");
        // Without the window (the old rule), the same run fails.
        let o = attribute(&[timed(&pairs)], 0, STALL_NS, rmax, 0);
        assert!(o.unexplained > 1800, "{o:?}");
    }

    // The robustness CI failure of 94ac58d: 7 overflows on a 2-vCPU single-threaded-TCG boot.
    // With a watcher per CPU, expect a stop of one vCPU to explain an increment that the
    // other CPU's watcher records first (its own records show no stop), and an increment
    // in a stretch where neither CPU stopped to stay unexplained.
    #[test]
    fn a_stop_on_either_cpu_explains() {
        // CPU 0: no stop at all; its records fall 10 ms after CPU 1's.
        let cpu0: Vec<u64> = [
            (60, 0, MS / 2),
            (110, 3, MS / 2),
            (160, 3, MS / 2),
            (210, 4, MS / 2),
        ]
        .iter()
        .flat_map(|&(t, c, w)| [t * MS, c, w])
        .collect();
        // CPU 1: a 40 ms stop recorded at 100 ms.
        let cpu1: Vec<u64> = [
            (50, 0, MS / 2),
            (100, 2, 40 * MS),
            (150, 3, MS / 2),
            (200, 3, MS / 2),
        ]
        .iter()
        .flat_map(|&(t, c, w)| [t * MS, c, w])
        .collect();
        let o = attribute(&[cpu0.clone(), cpu1.clone()], 0, STALL_NS, 0, 0);
        // Excused: (50, 175] ms. +2 at 100 (CPU 1), +1 at 110 (CPU 0), +1 at 210 (CPU 0).
        assert_eq!((o.explained, o.unexplained), (3, 1), "{o:?}");
        assert_eq!((o.intervals, o.stalled_intervals), (8, 1), "{o:?}");
        // CPU 0 alone sees no stop: all four are unexplained.
        let o = attribute(&[cpu0], 0, STALL_NS, 0, 0);
        assert_eq!((o.explained, o.unexplained), (0, 4), "{o:?}");
    }
}
