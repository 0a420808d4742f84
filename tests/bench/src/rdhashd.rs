// SPDX-License-Identifier: GPL-2.0
//! The `rdhashd` workload (issue 11): the research prototype's experiment.
//!
//! Each function is a cgroup under the bench parent with one process in it; the process
//! holds a pool of request threads (so every thread is in the function's cgroup). Every
//! second the controller (PID 1, fair class, root cgroup) publishes each function's in-flight
//! target from a synthetic trace (`Trace::synthetic`, row `offset + second` mod its length);
//! thread `k` of a function runs requests back to back while `k` is below the target and
//! waits on a futex otherwise ([`lags_bench::closed_loop`]). A request sleeps Exp(mean
//! `sleep_ms`), then spins a calibrated `burst_ms`; its latency runs from the end of the
//! sleep to the end of the burst. Completions inside the measured window are counted in a
//! shared histogram, with the requests under the absolute threshold.

use std::fs;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use lags_bench::closed_loop::{
    max_targets, nested, pools, scaled, slot_runs, spread_order, start_offset, RunTargets,
};
use lags_bench::trace::{Trace, PROTOTYPE_SECONDS};
use lags_bench::*;
use lags_pid1::clock::now_ns;

use crate::window::{self, Window};
use crate::{host, parent, spin, Ctx, Out};

/// An anonymous shared mapping of `len` atomics of type `T` (`AtomicU64` or `AtomicU32`),
/// zero-initialised, inherited by forked children.
pub(crate) struct Map<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Map<T> {
    pub(crate) fn new(len: usize) -> Result<Map<T>, String> {
        let bytes = len.max(1) * std::mem::size_of::<T>();
        // SAFETY: anonymous shared mapping; checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Map { ptr: p.cast(), len })
    }

    pub(crate) fn at(&self, i: usize) -> &T {
        assert!(i < self.len);
        // SAFETY: in bounds of the mapping, which lives until `drop`; the atomics have the
        // layout of their integers, and the mapping is zeroed and page-aligned.
        unsafe { &*self.ptr.add(i) }
    }
}

impl<T> Drop for Map<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), self.len.max(1) * std::mem::size_of::<T>()) };
    }
}

// SAFETY: the mapping holds only atomics, which may be shared between threads.
unsafe impl<T: Sync> Sync for Map<T> {}
// SAFETY: as above; the pointer is owned by the value.
unsafe impl<T: Send> Send for Map<T> {}

// Counter slots.
const EPOCH: usize = 0;
const INFLIGHT: usize = 1;
const ITERS: usize = 2;
const SLEEP_NS: usize = 3;
const READY: usize = 4;
const THREADS: usize = 5;
/// The measured window's counts (for the totals and the report's block bootstrap).
const WIN: Window = Window { base: 6 };
const COUNTERS: usize = 6 + Window::LEN;

pub(crate) use lags_pid1::futex::{futex_wait, futex_wake_all};

pub(crate) fn sleep_ns(ns: u64) {
    let mut ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        let mut rem = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid timespecs.
        if unsafe { libc::nanosleep(&ts, &mut rem) } == 0 {
            return;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
        ts = rem;
    }
}

/// One request thread: slot `k` of a function whose target is `target`.
fn request_loop(c: &Map<AtomicU64>, target: &AtomicU32, k: u32, seed: u64) -> ! {
    let mut rng = Rng::new(seed);
    let at = |i| c.at(i);
    loop {
        let t = target.load(Ordering::Acquire);
        if !slot_runs(k, t) {
            futex_wait(target, t, 1_000_000_000);
            continue;
        }
        let epoch = at(EPOCH).load(Ordering::Acquire);
        at(INFLIGHT).fetch_add(1, Ordering::AcqRel);
        let mean = at(SLEEP_NS).load(Ordering::Relaxed) as f64;
        if mean > 0.0 {
            sleep_ns(rng.exp(1.0 / mean) as u64);
        }
        let t1 = now_ns();
        std::hint::black_box(spin(at(ITERS).load(Ordering::Relaxed)));
        let t2 = now_ns();
        if at(EPOCH).load(Ordering::Acquire) == epoch {
            WIN.count(c, t2, t2 - t1);
        }
        at(INFLIGHT).fetch_sub(1, Ordering::AcqRel);
    }
}

/// The function process: moves itself into `group`, starts `pool` request threads, and
/// waits to be killed. Runs in a child forked from the single-threaded controller.
fn function_main(
    group: &str,
    pool: u32,
    c: &'static Map<AtomicU64>,
    target: &'static AtomicU32,
    seed: u64,
) -> ! {
    // SAFETY: getpid/getppid have no preconditions.
    let (pid, controller) = unsafe { (libc::getpid(), libc::getppid()) };
    host::die_with_parent(controller);
    if fs::write(format!("{group}/cgroup.procs"), pid.to_string()).is_ok() {
        for k in 0..pool {
            let s = mix_seed(seed, &[u64::from(k)]);
            let spawned = std::thread::Builder::new()
                .stack_size(128 << 10)
                .spawn(move || request_loop(c, target, k, s));
            if spawned.is_ok() {
                c.at(THREADS).fetch_add(1, Ordering::AcqRel);
            }
        }
        c.at(READY).fetch_add(1, Ordering::AcqRel);
    }
    loop {
        // SAFETY: pause has no preconditions; the controller ends us with SIGKILL.
        unsafe { libc::pause() };
    }
}

/// The forked processes of a closed-loop workload and the cgroups they run in.
pub(crate) struct Fleet {
    pub pids: Vec<i32>,
    /// The groups the configurations act on (each removed with what it contains).
    pub groups: Vec<String>,
}

impl Fleet {
    /// Waits until `ready` counts every process (each in its cgroup with its threads), at
    /// most 60 s; on time-out stops the fleet and names the shortfall.
    pub(crate) fn wait_ready(self, ready: &AtomicU64, what: &str) -> Result<Fleet, String> {
        let n = self.pids.len() as u64;
        let deadline = now_ns() + 60_000_000_000;
        while ready.load(Ordering::Acquire) < n {
            if now_ns() > deadline {
                let r = ready.load(Ordering::Acquire);
                self.stop();
                return Err(format!("only {r} of {n} {what} started"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(self)
    }

    pub(crate) fn stop(self) {
        for &pid in &self.pids {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for &pid in &self.pids {
            let mut st = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, &mut st, 0) };
        }
        for g in &self.groups {
            host::remove_tree(g);
        }
    }
}

/// Starts one function process per pool, each in its own cgroup under the bench parent.
fn start(
    pools: &[u32],
    c: &'static Map<AtomicU64>,
    targets: &'static Map<AtomicU32>,
    seed: u64,
) -> Result<Fleet, String> {
    let mut fleet = Fleet {
        pids: Vec::new(),
        groups: Vec::new(),
    };
    for (f, &pool) in pools.iter().enumerate() {
        let group = format!("{}/f{f:04}", parent());
        if let Err(e) = fs::create_dir_all(&group) {
            fleet.stop();
            return Err(format!("mkdir {group}: {e}"));
        }
        fleet.groups.push(group.clone());
        let fseed = mix_seed(seed, &[f as u64]);
        // SAFETY: the controller is single-threaded when it forks; the child moves itself
        // into its cgroup, starts its threads and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            fleet.stop();
            return Err(format!("fork: {e}"));
        }
        if pid == 0 {
            function_main(&group, pool, c, targets.at(f), fseed);
        }
        fleet.pids.push(pid);
    }
    fleet.wait_ready(c.at(READY), "function processes")
}

fn lags_counters(groups: &[String]) -> Option<[u64; 4]> {
    crate::lags_counters_of(groups.iter().map(String::as_str))
}

/// One run of one configuration.
#[allow(clippy::too_many_arguments)]
fn run_once(
    ctx: &mut Ctx,
    out: &mut Out,
    fleet: &Fleet,
    c: &Map<AtomicU64>,
    targets: &Map<AtomicU32>,
    rt: &RunTargets,
    cfg: &str,
    rep: usize,
    seed: u64,
    offset: u64,
    threads: usize,
    scale: f64,
) -> Result<(), String> {
    let plan = ctx.plan;
    let rd = &plan.rd;
    ctx.knobs.apply(cfg, &fleet.groups)?;
    let n = fleet.groups.len();
    // Let the previous run's load credit and runqueues settle.
    std::thread::sleep(Duration::from_millis(300));
    let epoch = c.at(EPOCH).load(Ordering::Acquire) + 1;
    let tl = WIN.start_run(
        c,
        u64::from(rd.warmup_s),
        u64::from(rd.duration_s),
        rd.threshold_ms,
    );
    c.at(SLEEP_NS)
        .store((rd.sleep_ms * 1e6) as u64, Ordering::Relaxed);
    c.at(ITERS).store(
        (rd.burst_ms * 1e6 * ctx.iters_per_ns) as u64,
        Ordering::Relaxed,
    );
    c.at(EPOCH).store(epoch, Ordering::Release);
    // The LAGS counters over the measured window, as the other per-request counts.
    let mut lags0 = None;
    let window_start = tl.warm;
    let ran = window::drive(
        tl,
        window::Probes {
            perf: rd.profile,
            ftrace: ctx.ftrace.as_ref(),
        },
        out,
        "rdhashd",
        |s| {
            if s == window_start {
                lags0 = lags_counters(&fleet.groups);
            }
            for f in 0..n {
                let t = rt.targets[s as usize][f];
                let old = targets.at(f).swap(t, Ordering::AcqRel);
                if t > old {
                    futex_wake_all(targets.at(f));
                }
            }
        },
        || {
            for f in 0..n {
                targets.at(f).store(0, Ordering::Release);
            }
        },
    );
    let lags1 = lags_counters(&fleet.groups);
    let drain_s = window::drain(c.at(INFLIGHT), 10_000_000_000);
    if ran.stopped {
        return Err("interrupted by a signal".into());
    }
    let left = c.at(INFLIGHT).load(Ordering::Acquire);
    if left > 0 {
        out.say(&format!(
            "warning: rdhashd: {left} requests still in flight {drain_s:.1}s after the run"
        ));
    }

    let (warm, total) = (tl.warm, tl.total);
    let measured = warm as usize..total as usize;
    let rec = RdhashdRecord {
        scale: (scale != 1.0).then_some(scale),
        trace_offset_s: offset,
        burst_ms: rd.burst_ms,
        sleep_ms: rd.sleep_ms,
        inflight_target_mean: measured.clone().map(|s| rt.total(s) as f64).sum::<f64>()
            / measured.len().max(1) as f64,
        inflight_target_max: measured.clone().map(|s| rt.wanted[s]).max().unwrap_or(0),
        threads,
        capped_seconds: measured.clone().filter(|&s| rt.capped[s]).count() as u64,
        drain_s,
        lags: crate::lags_delta(lags0, lags1),
        ..window::record(
            ctx,
            cfg,
            n,
            rep,
            seed,
            WIN.read(c, rd.duration_s as usize),
            &ran,
            rd.threshold_ms,
        )
    };
    let (completed, good, window_s, util) = (rec.completed, rec.good, rec.window_s, rec.cpu_util);
    ctx.runs_done += 1;
    let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.1}"));
    out.say(&format!(
        "run {}/{} rdhashd F={n}{} {cfg} rep={rep}: {completed} requests, goodput {:.1}/s, p50={}ms p99={}ms ctx/req={:.2} in-flight target {:.1} util={:.0}%",
        ctx.runs_done,
        ctx.runs_total,
        if scale == 1.0 {
            String::new()
        } else {
            format!(" scale={scale}")
        },
        good as f64 / window_s.max(1e-9),
        f(rec.p50_ms),
        f(rec.p99_ms),
        rec.ctxt_per_req.unwrap_or(0.0),
        rec.inflight_target_mean,
        util * 100.0,
    ));
    out.record(&Record::Rdhashd(Box::new(rec)));
    Ok(())
}

/// `perf record -a -g -e cpu-clock` over a measured window, for the share of CPU time in
/// `__schedule()` (the prototype measured it with the ftrace function profiler, which
/// neither the bench kernels nor typical hosts enable; sampling needs only perf).
pub(crate) struct Profiler {
    child: std::process::Child,
    data: String,
}

impl Profiler {
    /// Starts `perf record -a`; it records until [`Profiler::finish`] interrupts it.
    pub(crate) fn start() -> Result<Profiler, String> {
        // SAFETY: getpid has no preconditions.
        let data = format!(
            "{}/lags-bench.{}.perf.data",
            std::env::temp_dir().display(),
            unsafe { libc::getpid() }
        );
        let child = std::process::Command::new("perf")
            .args([
                "record",
                "-a",
                "-g",
                "-e",
                "cpu-clock",
                "-F",
                "499",
                "-q",
                "-o",
            ])
            .arg(&data)
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("perf record: {e}"))?;
        Ok(Profiler { child, data })
    }

    /// Ends the recording (SIGINT, as at a terminal: perf writes its data and exits) and
    /// reads it; a stopped run only ends the recording.
    pub(crate) fn finish(self, stopped: bool) -> Result<SchedProfile, String> {
        // SAFETY: signalling our own unreaped child (its pid cannot be reused yet).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let p = self;
        let o = p
            .child
            .wait_with_output()
            .map_err(|e| format!("perf record: {e}"))?;
        if stopped {
            let _ = fs::remove_file(&p.data);
            return Err("run stopped".into());
        }
        // perf record ends with status 0, or by SIGINT itself when it had not yet set up
        // its handler.
        if !o.status.success() && !fs::metadata(&p.data).is_ok_and(|m| m.len() > 0) {
            let _ = fs::remove_file(&p.data);
            return Err(format!(
                "perf record failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        let r = crate::run_tool(
            "perf",
            &[
                "report",
                "-i",
                &p.data,
                "--stdio",
                "--children",
                "--sort",
                "sym",
                "-g",
                "none",
            ],
        );
        let _ = fs::remove_file(&p.data);
        let (sampled_ns, schedule_share, idle_share) = parse_perf_children(&r?)
            .ok_or("perf report: no samples or no event count in its output")?;
        Ok(SchedProfile {
            sampled_ns,
            schedule_share,
            idle_share,
        })
    }
}

/// The rdhashd runs at `n` functions: every configuration and repetition, interleaved as
/// the zipf-open sweeps are.
pub(crate) fn sweep(ctx: &mut Ctx, out: &mut Out, n: usize) -> Result<(), String> {
    let plan = ctx.plan;
    let rd = &plan.rd;
    // Every count of the sweep replays functions of the largest count's trace, nested, in the
    // same window per repetition: the load grows with the count, as a capacity in functions
    // needs (closed_loop::nested).
    let most = rd.funcs.iter().copied().chain([n]).max().unwrap_or(n);
    let (full, order) = if rd.trace.is_empty() {
        let t = Trace::synthetic(
            most,
            PROTOTYPE_SECONDS,
            mix_seed(rd.trace_seed, &[most as u64]),
        );
        (t, spread_order(most))
    } else {
        let t = Trace::from_csv_dir(std::path::Path::new(&rd.trace))
            .map_err(|e| format!("lb.rd_trace: {e}"))?
            .first(most)
            .map_err(|e| format!("lb.rd_trace={}: {e}", rd.trace))?;
        (t, (0..most).collect())
    };
    // Every concurrency scale multiplies the same nested trace, rounded with the same
    // draws, so the load grows with the scale too (closed_loop::scaled).
    let scales: &[f64] = if rd.scales.is_empty() {
        &[1.0]
    } else {
        &rd.scales
    };
    let traces = scales
        .iter()
        .map(|&k| {
            nested(
                &scaled(&full, k, mix_seed(rd.trace_seed, &[most as u64, 0x5ca1e])),
                &order,
                n,
            )
        })
        .collect::<Result<Vec<Trace>, String>>()?;
    let seconds = u64::from(rd.warmup_s) + u64::from(rd.duration_s);
    let offsets: Vec<u64> = (0..plan.reps)
        .map(|rep| {
            start_offset(
                &full,
                mix_seed(rd.trace_seed, &[most as u64, rep as u64]),
                u64::from(rd.warmup_s),
                u64::from(rd.duration_s),
            )
        })
        .collect();
    let want = traces
        .iter()
        .map(|t| max_targets(t, &offsets, seconds))
        .reduce(|a, b| a.iter().zip(&b).map(|(x, y)| *x.max(y)).collect())
        .unwrap_or_default();
    let pool = pools(&want, rd.max_threads);
    let want_sum: u64 = want.iter().map(|&x| u64::from(x)).sum();
    let pool_sum: u64 = pool.iter().map(|&x| u64::from(x)).sum();
    out.say(&format!(
        "rdhashd: starting {n} function groups with {pool_sum} request threads{} ...",
        if pool_sum < want_sum {
            format!(
                " (capped: the trace asks for up to {want_sum}; lb.rd_max_threads={})",
                rd.max_threads
            )
        } else {
            String::new()
        }
    ));
    let c: &'static Map<AtomicU64> = Box::leak(Box::new(Map::new(COUNTERS)?));
    let targets: &'static Map<AtomicU32> = Box::leak(Box::new(Map::new(n)?));
    let fleet = start(&pool, c, targets, mix_seed(plan.seed, &[4, n as u64]))?;
    let threads = c.at(THREADS).load(Ordering::Acquire) as usize;
    if threads < pool_sum as usize {
        out.say(&format!(
            "warning: rdhashd: only {threads} of {pool_sum} request threads started"
        ));
    }
    let k = plan.configs.len();
    let mut result = Ok(());
    // A repetition's window runs at every scale, each scale every configuration back to
    // back (the pairs the report compares), so drift over the boot spreads over the scales.
    'outer: for (rep, &offset) in offsets.iter().enumerate() {
        let seed = mix_seed(plan.seed, &[3, n as u64, rep as u64]);
        for (trace, &scale) in traces.iter().zip(scales) {
            let rt = RunTargets::new(trace, offset, seconds, &pool);
            for i in 0..k {
                let cfg = plan.configs[(i + rep) % k].clone();
                if let Err(e) = run_once(
                    ctx, out, &fleet, c, targets, &rt, &cfg, rep, seed, offset, threads, scale,
                ) {
                    result = Err(e);
                    break 'outer;
                }
            }
        }
    }
    ctx.knobs.restore();
    let _ = crate::set_lags(&fleet.groups, false);
    fleet.stop();
    // The two small mappings are leaked on purpose (the request threads needed them
    // 'static); PID 1 reboots at the end.
    result
}
