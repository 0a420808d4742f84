// SPDX-License-Identifier: GPL-2.0
//! Pure parts of the `rdhashd` workload (issue 11): where a run starts in the trace, how
//! many request threads each function gets, the per-second in-flight targets of a run, and
//! latency percentiles from a histogram. The guest side is `src/rdhashd.rs`.
//!
//! # The in-flight controller
//!
//! Function `f` has a pool of `pool[f]` request threads, numbered from 0. Every second the
//! controller publishes the function's target `t` (the trace's row, at most the pool). Thread
//! `k` starts a request whenever [`slot_runs`]`(k, t)` holds, and waits for the target to
//! change otherwise. So exactly `min(t, pool)` requests are in flight or sleeping before their
//! burst, each on its own thread; a finished request is replaced at once while the target
//! allows it (the thread loops), and a lower target shrinks the set by not refilling (a
//! thread above the target finishes its request, then waits).

use crate::trace::{FunctionTrace, Trace};
use crate::{mix_seed, Hist, Rng};

/// Whether request thread `slot` of a function runs a request while its target is `target`.
pub fn slot_runs(slot: u32, target: u32) -> bool {
    slot < target
}

/// Request threads per function: each function's largest target, scaled down in proportion
/// when their sum exceeds `cap` (largest remainders first), so the run never has more than
/// `cap` request threads. A function with a positive target keeps at least one thread while
/// the cap allows it (hottest first).
pub fn pools(max_targets: &[u32], cap: usize) -> Vec<u32> {
    let sum: u64 = max_targets.iter().map(|&t| u64::from(t)).sum();
    if sum <= cap as u64 {
        return max_targets.to_vec();
    }
    // One thread for every function with a target, hottest first, while the cap allows.
    let mut out = vec![0u32; max_targets.len()];
    let mut hot: Vec<usize> = (0..out.len()).filter(|&i| max_targets[i] > 0).collect();
    hot.sort_by(|&a, &b| max_targets[b].cmp(&max_targets[a]));
    let mut left = cap;
    for &i in &hot {
        if left == 0 {
            return out;
        }
        out[i] = 1;
        left -= 1;
    }
    // The rest in proportion to what each function still wants, largest remainders first.
    let rest: Vec<f64> = (0..out.len())
        .map(|i| f64::from(max_targets[i] - out[i]))
        .collect();
    let scale = left as f64 / rest.iter().sum::<f64>();
    let exact: Vec<f64> = rest.iter().map(|r| r * scale).collect();
    for i in 0..out.len() {
        let add = exact[i].floor() as u32;
        out[i] += add;
        left = left.saturating_sub(add as usize);
    }
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for i in order {
        if left == 0 {
            break;
        }
        if out[i] < max_targets[i] {
            out[i] += 1;
            left -= 1;
        }
    }
    out
}

/// The second of the trace a run starts at, seeded, chosen so that the measured window
/// (`warm` seconds after the start, `window` seconds long) carries about the trace's average
/// load: uniform among the starts whose window's mean summed target is positive and within a
/// factor 2 of the whole trace's mean (the trace repeats). A short run of a sparse trace would
/// otherwise often measure idle seconds, and its repetitions would differ by their load. Falls
/// back to any start with a busy window, then to 0 for an all-idle trace.
pub fn start_offset(trace: &Trace, seed: u64, warm: u64, window: u64) -> u64 {
    let len = trace.seconds() as u64;
    if len == 0 {
        return 0;
    }
    let totals: Vec<u64> = (0..len).map(|s| trace.total_at(s)).collect();
    let mean = totals.iter().sum::<u64>() as f64 / len as f64;
    let load = |s: u64| {
        (0..window.max(1))
            .map(|t| totals[((s + warm + t) % len) as usize])
            .sum::<u64>() as f64
            / window.max(1) as f64
    };
    let loads: Vec<f64> = (0..len).map(load).collect();
    let mut r = Rng::new(mix_seed(seed, &[0x0ff5e7]));
    for ok in [
        &|l: f64| l > 0.0 && l >= mean / 2.0 && l <= mean * 2.0,
        &|l: f64| l > 0.0,
    ] as [&dyn Fn(f64) -> bool; 2]
    {
        let c: Vec<u64> = (0..len).filter(|&s| ok(loads[s as usize])).collect();
        if !c.is_empty() {
            return c[(r.next_u64() % c.len() as u64) as usize];
        }
    }
    0
}

/// An order of `n` ranks in which every prefix spreads over all of them: the middle rank,
/// then each time the rank farthest from those already taken (the lowest on a tie), so both
/// ends come second and third and no gap in a prefix is wider than twice the even spacing. A density sweep takes the first F ranks of its largest
/// trace, so every count samples the whole popularity curve and each count's functions
/// include the smaller counts'. Pure.
pub fn spread_order(n: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(n);
    if n == 0 {
        return order;
    }
    let mut dist = vec![usize::MAX; n];
    let mut next = (n - 1) / 2;
    for _ in 0..n {
        order.push(next);
        for (i, d) in dist.iter_mut().enumerate() {
            *d = (*d).min(i.abs_diff(next));
        }
        next = (0..n)
            .max_by_key(|&i| (dist[i], usize::MAX - i))
            .unwrap_or(0);
    }
    order
}

/// The trace of a density sweep's run at `n` functions: the functions at the first `n`
/// positions of `order` in `full`, the trace of the sweep's largest count, in `full`'s
/// order. Nested: a larger count runs a superset of a smaller count's functions, so with
/// the same window its summed target is at least as large every second. An error when
/// `full` has fewer than `n` functions. Pure.
pub fn nested(full: &Trace, order: &[usize], n: usize) -> Result<Trace, String> {
    if n == 0 || n > full.functions.len() || n > order.len() {
        return Err(format!(
            "the trace has {} functions; {n} asked for",
            full.functions.len()
        ));
    }
    let mut ix: Vec<usize> = order[..n].to_vec();
    ix.sort_unstable();
    Ok(Trace {
        functions: ix.iter().map(|&i| full.functions[i].clone()).collect(),
    })
}

/// The trace with every target multiplied by `scale` (the concurrency axis), rounded
/// stochastically: target `x` of function `f` at second `s` becomes `⌊scale·x + u⌋` with
/// `u` uniform in [0, 1) drawn from (`seed`, `f`, `s`) alone. So the mean target is
/// `scale` times the trace's, the result is non-decreasing in `scale` for every function
/// and second (a capacity in scale is well defined), and `scale` 1 is the trace itself.
/// Pure.
pub fn scaled(trace: &Trace, scale: f64, seed: u64) -> Trace {
    if scale == 1.0 {
        return trace.clone();
    }
    let functions = trace
        .functions
        .iter()
        .enumerate()
        .map(|(f, ft)| {
            let targets = ft
                .targets
                .iter()
                .enumerate()
                .map(|(s, &x)| {
                    let u = Rng::new(mix_seed(seed, &[f as u64, s as u64])).uniform();
                    (scale.max(0.0) * f64::from(x) + u).floor() as u32
                })
                .collect();
            FunctionTrace::new(ft.name.clone(), targets)
        })
        .collect();
    Trace { functions }
}

/// The in-flight targets of one run of `seconds` seconds from trace second `offset`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunTargets {
    /// `targets[s][f]`: function `f`'s target in second `s` of the run, at most its pool.
    pub targets: Vec<Vec<u32>>,
    /// Per run second: whether the trace asked some function for more than its pool.
    pub capped: Vec<bool>,
    /// Per run second: the summed targets before the cap.
    pub wanted: Vec<u64>,
}

impl RunTargets {
    pub fn new(trace: &Trace, offset: u64, seconds: u64, pools: &[u32]) -> RunTargets {
        let mut t = RunTargets {
            targets: Vec::new(),
            capped: Vec::new(),
            wanted: Vec::new(),
        };
        for s in 0..seconds {
            let mut row = Vec::with_capacity(trace.functions.len());
            let mut capped = false;
            for (f, ft) in trace.functions.iter().enumerate() {
                let want = ft.target_at(offset + s);
                let pool = pools.get(f).copied().unwrap_or(0);
                capped |= want > pool;
                row.push(want.min(pool));
            }
            t.wanted.push(trace.total_at(offset + s));
            t.capped.push(capped);
            t.targets.push(row);
        }
        t
    }

    /// Summed (capped) target of run second `s`.
    pub fn total(&self, s: usize) -> u64 {
        self.targets[s].iter().map(|&x| u64::from(x)).sum()
    }
}

/// Each function's largest target over the runs starting at `offsets`, `seconds` long.
pub fn max_targets(trace: &Trace, offsets: &[u64], seconds: u64) -> Vec<u32> {
    trace
        .functions
        .iter()
        .map(|f| {
            offsets
                .iter()
                .flat_map(|&o| (0..seconds).map(move |s| f.target_at(o + s)))
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// Upper edge in ms of the histogram bin holding quantile `q`: [`Hist::quantile_ms`].
pub fn hist_quantile_ms(h: &Hist, q: f64) -> Option<f64> {
    h.quantile_ms(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::FunctionTrace;
    use crate::{hist_bin, histogram};

    // Expect a permutation whose every prefix of k ≥ 3 covers the ranks: both ends in it,
    // and no gap wider than twice the even spacing (n - 1)/(k - 1), rounded up.
    #[test]
    fn spread_order_prefixes() {
        assert!(spread_order(0).is_empty());
        assert_eq!(spread_order(1), [0]);
        let o = spread_order(19);
        assert_eq!(&o[..3], [9, 0, 18]);
        let mut sorted = o.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..19).collect::<Vec<_>>());
        for n in 3..200 {
            let o = spread_order(n);
            for k in 3..=n {
                let mut p = o[..k].to_vec();
                p.sort_unstable();
                let gap = p.windows(2).map(|w| w[1] - w[0]).max().unwrap();
                assert!(p[0] == 0 && p[k - 1] == n - 1, "n {n}, prefix {k}: {p:?}");
                assert!(
                    gap <= 2 * (n - 1).div_ceil(k - 1),
                    "n {n}, prefix {k}: {p:?}"
                );
            }
        }
    }

    // Expect the run at every count of a sweep to replay a superset of the smaller counts'
    // functions from the largest count's trace, so that in one window the summed target
    // grows with the count (issue 11's capacity needs load that rises with density: with a
    // trace and a window of its own per count it did not, run R), and to refuse a count
    // larger than the trace.
    #[test]
    fn nested_sweep_load_grows_with_count() {
        let full = Trace::synthetic(19, crate::trace::PROTOTYPE_SECONDS, 42);
        let order = spread_order(19);
        let counts = [8, 12, 14, 16, 18, 19];
        for rep in 0..5u64 {
            let off = start_offset(&full, rep, 2, 75);
            let mut last = 0.0;
            let mut last_names: Vec<String> = Vec::new();
            for &n in &counts {
                let t = nested(&full, &order, n).unwrap();
                assert_eq!(t.functions.len(), n);
                let names: Vec<String> = t.functions.iter().map(|f| f.name.clone()).collect();
                assert!(
                    last_names.iter().all(|x| names.contains(x)),
                    "{n}: {names:?}"
                );
                let load = (2..77).map(|s| t.total_at(off + s)).sum::<u64>() as f64 / 75.0;
                assert!(load >= last, "rep {rep}: {n} functions {load} < {last}");
                (last, last_names) = (load, names);
            }
            assert!(last > 0.0);
        }
        assert!(nested(&full, &order, 20).is_err());
        assert!(nested(&full, &order, 0).is_err());
        assert_eq!(nested(&full, &order, 19).unwrap(), full);
    }

    // Expect the concurrency scale to multiply the load without bias (the mean target of
    // each scale within 1% of scale × the trace's over the 300 s × 19 functions), to never
    // lower any target when the scale grows (a capacity in scale needs monotone load, as
    // nested counts do for functions), to keep idle seconds idle, and to leave the trace
    // unchanged at 1.
    #[test]
    fn scaled_load_grows_with_the_scale() {
        let full = Trace::synthetic(19, crate::trace::PROTOTYPE_SECONDS, 42);
        let total = |t: &Trace| (0..t.seconds() as u64).map(|s| t.total_at(s)).sum::<u64>() as f64;
        let base = total(&full);
        assert_eq!(scaled(&full, 1.0, 7), full);
        let scales = [0.0, 0.3, 0.55, 0.7, 0.85, 0.9, 1.0, 1.1, 1.6];
        let ts: Vec<Trace> = scales.iter().map(|&k| scaled(&full, k, 7)).collect();
        for (k, t) in scales.iter().zip(&ts) {
            let mean = total(t) / base;
            assert!((mean - k).abs() <= 0.01 * k.max(0.1), "scale {k}: {mean}");
        }
        for w in ts.windows(2) {
            for (a, b) in w[0].functions.iter().zip(&w[1].functions) {
                assert_eq!(a.name, b.name);
                assert!(a.targets.iter().zip(&b.targets).all(|(x, y)| x <= y));
            }
        }
        for (f, ft) in full.functions.iter().enumerate() {
            for (s, &x) in ft.targets.iter().enumerate() {
                if x == 0 {
                    assert_eq!(ts[8].functions[f].targets[s], 0);
                }
            }
        }
        // Another seed rounds differently but keeps the mean.
        assert_ne!(scaled(&full, 0.85, 8), ts[4]);
    }

    fn trace(rows: &[&[u32]]) -> Trace {
        Trace {
            functions: rows
                .iter()
                .enumerate()
                .map(|(i, r)| FunctionTrace::new(format!("f{i}"), r.to_vec()))
                .collect(),
        }
    }

    // Expect exactly min(target, pool) slots to run: refill up to the target, shrink by the
    // slots above a lowered target not starting another request.
    #[test]
    fn slots_follow_the_target() {
        let running = |target: u32, pool: u32| (0..pool).filter(|&k| slot_runs(k, target)).count();
        assert_eq!(running(3, 5), 3);
        assert_eq!(running(0, 5), 0);
        assert_eq!(running(9, 5), 5);
        // Target 4 then 2: slots 2 and 3 stop after their current request.
        assert!(slot_runs(3, 4) && !slot_runs(3, 2) && slot_runs(1, 2));
    }

    // Expect pools unchanged under the cap; above it, a sum of exactly the cap, no function
    // above its own maximum, and every function with a target keeping a thread.
    #[test]
    fn pools_respect_the_cap() {
        assert_eq!(pools(&[3, 0, 5], 100), vec![3, 0, 5]);
        let p = pools(&[100, 1, 1, 0, 50], 20);
        assert_eq!(p.iter().sum::<u32>(), 20, "{p:?}");
        assert_eq!(p[3], 0);
        assert!(p[1] == 1 && p[2] == 1, "{p:?}");
        assert!(p[0] > p[4], "{p:?}");
        let p = pools(&[1; 10], 4);
        assert_eq!(p.iter().sum::<u32>(), 4);
        assert!(pools(&[7, 7], 0).iter().all(|&x| x == 0));
    }

    // Expect the start to be a busy second, deterministic per seed, and targets to repeat
    // with the trace (second mod length), capped at the pool with the capped seconds marked.
    #[test]
    fn offsets_and_targets() {
        let t = trace(&[&[0, 0, 0, 4, 0, 0], &[0, 0, 0, 0, 1, 0]]);
        // Mean load 5/6; one-second windows one second after the start: only the window at
        // second 4 (load 1) is within a factor 2, so the start is second 3.
        for seed in 0..20 {
            assert_eq!(start_offset(&t, seed, 1, 1), 3);
        }
        // Two-second windows right at the start: (0,0) (0,0) (0,4) (4,1) (1,0) (0,0) give
        // loads 0, 0, 2, 2.5, 0.5, 0; within [5/12, 5/3] only second 4.
        assert_eq!(start_offset(&t, 7, 0, 2), 4);
        // Deterministic per seed, and several candidates are all reached.
        let u = trace(&[&[1, 1, 1, 1, 1, 1, 1, 1]]);
        let got: std::collections::BTreeSet<u64> =
            (0..64).map(|seed| start_offset(&u, seed, 1, 2)).collect();
        assert_eq!(got.len(), 8);
        assert_eq!(start_offset(&u, 5, 1, 2), start_offset(&u, 5, 1, 2));
        // A trace busy only far above its mean in one second falls back to a busy window.
        let spike = trace(&[&[0, 0, 0, 0, 0, 0, 0, 0, 0, 90]]);
        for seed in 0..10 {
            assert_eq!(start_offset(&spike, seed, 2, 1), 7);
        }
        assert_eq!(start_offset(&trace(&[&[0, 0]]), 1, 0, 1), 0);
        assert_eq!(max_targets(&t, &[3], 2), vec![4, 1]);
        assert_eq!(max_targets(&t, &[0], 2), vec![0, 0]);
        let r = RunTargets::new(&t, 3, 4, &[2, 1]);
        assert_eq!(
            r.targets,
            vec![vec![2, 0], vec![0, 1], vec![0, 0], vec![0, 0]]
        );
        assert_eq!(r.capped, vec![true, false, false, false]);
        assert_eq!(r.wanted, vec![4, 1, 0, 0]);
        assert_eq!(r.total(0), 2);
        // Wraps: second 6 is second 0 again.
        let r = RunTargets::new(&t, 5, 5, &[9, 9]);
        assert_eq!(r.wanted, vec![0, 0, 0, 0, 4]);
    }

    // Expect nearest-rank quantiles at bin upper edges, and none for the last bin.
    #[test]
    fn quantiles_from_the_histogram() {
        assert_eq!(hist_quantile_ms(&Hist::default(), 0.5), None);
        // 90 requests at 1 ms, 10 at 100 ms.
        let lat: Vec<f64> = (0..100)
            .map(|i| if i < 90 { 1.0e6 } else { 100.0e6 })
            .collect();
        let h = histogram(lat.into_iter());
        let edge = |ms: f64| 10f64.powf((hist_bin(ms * 1e3) as f64 + 1.0) / 20.0) / 1e3;
        assert_eq!(hist_quantile_ms(&h, 0.5), Some(edge(1.0)));
        assert_eq!(hist_quantile_ms(&h, 0.9), Some(edge(1.0)));
        assert_eq!(hist_quantile_ms(&h, 0.91), Some(edge(100.0)));
        assert_eq!(hist_quantile_ms(&h, 0.999), Some(edge(100.0)));
        assert!(edge(1.0) > 1.0 && edge(1.0) < 1.13);
        // The last bin has no upper edge: a quantile there (a request that never completed,
        // or beyond 100 s) is infinite.
        let h = histogram([1.0e6, f64::INFINITY].into_iter());
        assert_eq!(hist_quantile_ms(&h, 0.5), Some(edge(1.0)));
        assert_eq!(hist_quantile_ms(&h, 0.99), Some(f64::INFINITY));
    }
}
