// SPDX-License-Identifier: GPL-2.0
//! `lags_stress`: LAGS under churn, bounded in time (`lags.stress_secs=`, the total of the
//! timed phases; default 20 s). Not in the default suite list: `cargo xtask robustness`
//! names it in `lags.suites=` and boots the debug kernel, whose checkers (lockdep, UBSAN,
//! KFENCE, hung task, soft lockup, RCU stall) the host watches on the console.
//!
//! Every phase runs a pool of forked workers that each do a fixed amount of work
//! ([`UNITS`] units) and exit; the pool is refilled as they finish. At the end of a phase
//! the suite waits for every worker, and the numbers of workers and units started and
//! finished must match: nothing may be lost or left stuck runnable.
//!
//! Each test ends with one machine-readable diagnostic,
//! `robustness: test=<name> ops=N faults=N invalid=N worst_wait_us=N started=N finished=N …`,
//! which the host turns into the summary table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lags_iface::{need_lags, DEBUGFS_DIR, SYSCTL};
use super::stops::{self, StopWatch};
use super::{fail, skip, Ctx, OrFail, Stop, Suite, Test, TestResult};
use crate::util::{self, Cgroup, Restore, Worker, WorkerIo, CGROUP2_ROOT};

pub const SUITE: Suite = Suite {
    name: "lags_stress",
    tests: &[
        Test {
            name: "cgroup_churn",
            run: cgroup_churn,
        },
        Test {
            name: "flag_and_tunable_churn",
            run: flag_and_tunable_churn,
        },
        Test {
            name: "cpu_hotplug",
            run: cpu_hotplug,
        },
        Test {
            name: "module_churn",
            run: module_churn,
        },
        Test {
            name: "starvation_bound",
            run: starvation_bound,
        },
        Test {
            name: "nothing_left_behind",
            run: nothing_left_behind,
        },
    ],
};

/// Tests that share `lags.stress_secs`.
const TIMED_TESTS: u64 = 5;
/// Work units of one pool worker; every worker must report all of them.
pub const UNITS: u64 = 40;
/// Spin iterations of one CPU-bound unit.
const CPU_UNIT_ITERS: u64 = 150_000;
/// Spin iterations of one wakeup-heavy unit (followed by three short sleeps).
const WAKE_UNIT_ITERS: u64 = 5_000;
/// How long the pool may take to finish after a phase (TCG: generous).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);
const KO: &str = "/lib/modules/extra/lags_monitor.ko";
const MODULE: &str = "lags_monitor";
const SNAPSHOT: &str = "/sys/kernel/debug/lags_monitor/snapshot";
/// Prefix of the cgroups this suite creates.
const PREFIX: &str = "lags-stress-";
/// Slack on top of starve_ns for a heavy group's longest wait. Single-threaded TCG runs
/// one vCPU at a time and switches at most every 100 ms, so a runnable task on the other
/// vCPU can be frozen that long in wall-clock time; 500 ms covers a few such switches and
/// several slices, and is still far below the multi-second waits of a credit-only pick.
const STARVE_SLACK_NS: u64 = 500_000_000;
/// How long the heavy groups run alone before the flood (they become the heaviest).
const PREHEAT_MS: u64 = 2_000;
const SLOW_CREDIT_PERIOD_NS: u64 = 10_000_000_000;
/// W/w of the lightest member a stop of a vCPU can charge (see [`stops::attribute`]): the
/// phases queue up to about two dozen equal-weight groups on a CPU (`cgroup_churn` runs 24).
const STOP_REPAY: u64 = 32;

/// Duration of one timed phase.
fn phase_ns(ctx: &Ctx) -> u64 {
    (ctx.cfg.stress_secs * 1_000_000_000 / TIMED_TESTS).max(2_000_000_000)
}

/// Prints the machine-readable summary line of a test.
pub fn report(ctx: &mut Ctx, test: &str, fields: &[(&str, u64)]) {
    let mut line = format!("robustness: test={test}");
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v}"));
    }
    ctx.diag(line);
}

// ---------------------------------------------------------------------------------------
// Workers

fn spin_iters(n: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..n {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

fn cpu_worker(io: &mut WorkerIo) -> i32 {
    let mut done = 0;
    for _ in 0..UNITS {
        std::hint::black_box(spin_iters(CPU_UNIT_ITERS));
        done += 1;
    }
    io.send_kv("units", done);
    0
}

fn wakeup_worker(io: &mut WorkerIo) -> i32 {
    let mut done = 0;
    for _ in 0..UNITS {
        for _ in 0..3 {
            std::hint::black_box(spin_iters(WAKE_UNIT_ITERS));
            util::sleep_until_ns(util::now_ns() + 300_000);
        }
        done += 1;
    }
    io.send_kv("units", done);
    0
}

/// Like a wakeup worker, but each step also runs as SCHED_FIFO for a moment, returns to
/// SCHED_OTHER and changes its nice value: the kernel takes the running task out of the
/// fair class and puts it back (`set_next_task(first == false)`) in every step.
fn flip_worker(io: &mut WorkerIo) -> i32 {
    let mut done = 0;
    for unit in 0..UNITS {
        for _ in 0..3 {
            std::hint::black_box(spin_iters(WAKE_UNIT_ITERS));
            if let Err(e) = util::set_fifo(1) {
                io.send_kv("error", format!("sched_setscheduler(SCHED_FIFO): {e}"));
                return 1;
            }
            std::hint::black_box(spin_iters(WAKE_UNIT_ITERS));
            if let Err(e) = util::set_other() {
                io.send_kv("error", format!("sched_setscheduler(SCHED_OTHER): {e}"));
                return 1;
            }
            let nice = if unit % 2 == 0 { 0 } else { 5 };
            // SAFETY: setpriority() only reads its integer arguments; 0 is this process.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
                io.send_kv(
                    "error",
                    format!("setpriority: {}", std::io::Error::last_os_error()),
                );
                return 1;
            }
            util::sleep_until_ns(util::now_ns() + 300_000);
        }
        done += 1;
    }
    io.send_kv("units", done);
    0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cpu,
    Wakeup,
    /// A wakeup worker that also changes its policy and nice value, see [`flip_worker`].
    Flip,
}

/// A pool of fixed-work workers and the accounting of what they did.
#[derive(Default)]
pub struct Pool {
    live: Vec<(Worker, Kind)>,
    pub started: u64,
    pub finished: u64,
    pub units_started: u64,
    pub units_done: u64,
    pub problems: Vec<String>,
}

impl Pool {
    /// Forks a worker, moves it into `cg`, pins it to `cpu` if given, and lets it run.
    pub fn spawn(&mut self, kind: Kind, cg: &Cgroup, cpu: Option<usize>) -> Result<(), Stop> {
        let mut w = Worker::spawn(move |io| match kind {
            Kind::Cpu => cpu_worker(io),
            Kind::Wakeup => wakeup_worker(io),
            Kind::Flip => flip_worker(io),
        })
        .or_fail("fork")?;
        w.start_in(cg, cpu).or_fail("starting a pool worker")?;
        self.started += 1;
        self.units_started += UNITS;
        self.live.push((w, kind));
        Ok(())
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.live.iter().filter(|(_, k)| *k == kind).count()
    }

    /// Spawns workers until `cpu` CPU-bound and `wake` wakeup-heavy ones run; `place`
    /// chooses each new worker's cgroup (by index) and CPU.
    pub fn refill<'a>(
        &mut self,
        cpu: usize,
        wake: usize,
        mut place: impl FnMut(u64) -> (&'a Cgroup, Option<usize>),
    ) -> Result<(), Stop> {
        while self.count(Kind::Cpu) < cpu {
            let (cg, c) = place(self.started);
            self.spawn(Kind::Cpu, cg, c)?;
        }
        while self.count(Kind::Wakeup) < wake {
            let (cg, c) = place(self.started);
            self.spawn(Kind::Wakeup, cg, c)?;
        }
        Ok(())
    }

    pub fn pids(&self) -> Vec<libc::pid_t> {
        self.live.iter().map(|(w, _)| w.pid()).collect()
    }

    /// Accounts for the workers that have exited.
    pub fn reap(&mut self) {
        let mut i = 0;
        while i < self.live.len() {
            match self.live[i].0.try_wait() {
                Some(code) => {
                    let (mut w, kind) = self.live.swap_remove(i);
                    self.account(&mut w, kind, code);
                }
                None => i += 1,
            }
        }
    }

    fn account(&mut self, w: &mut Worker, kind: Kind, code: i32) {
        let out = match w.collect(Duration::from_secs(5)) {
            Ok(o) => o,
            Err(e) => {
                self.problems
                    .push(format!("{kind:?} worker {}: {e}", w.pid()));
                return;
            }
        };
        let kvs = util::parse_kv_lines(&String::from_utf8_lossy(&out));
        let units: u64 = util::kv(&kvs, "units")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        self.units_done += units;
        if code == 0 && units == UNITS {
            self.finished += 1;
        } else {
            self.problems.push(format!(
                "{kind:?} worker {} exited with {code} after {units} of {UNITS} units",
                w.pid()
            ));
        }
    }

    /// Waits for every worker to finish its work; the ones that do not within `timeout`
    /// are reported with their /proc state (R = stuck runnable) and killed.
    pub fn drain(&mut self, timeout: Duration) -> u64 {
        let start = util::now_ns();
        let deadline = start + timeout.as_nanos() as u64;
        while !self.live.is_empty() && util::now_ns() < deadline {
            self.reap();
            util::sleep_ms(10);
        }
        for (w, kind) in self.live.drain(..) {
            let state = util::proc_state(w.pid()).map_or("gone".to_owned(), |(s, _)| s.to_string());
            self.problems.push(format!(
                "{kind:?} worker {} not finished {timeout:?} after the phase (state {state}); killed",
                w.pid()
            ));
            drop(w);
        }
        util::now_ns() - start
    }

    /// Prints the accounting and fails the test (softly) on any loss.
    pub fn check(&self, ctx: &mut Ctx, drain_ns: u64) {
        ctx.diag(format!(
            "workers started={} finished={}; units started={} done={}; drain took {}",
            self.started,
            self.finished,
            self.units_started,
            self.units_done,
            util::ms(drain_ns)
        ));
        for p in self.problems.iter().take(20) {
            ctx.diag(format!("lost: {p}"));
        }
        let ok = self.started == self.finished
            && self.units_started == self.units_done
            && self.problems.is_empty();
        ctx.check(ok, || {
            format!(
                "nothing lost: expected every worker and unit to finish, got workers {}/{} units {}/{} ({} problems)",
                self.finished,
                self.started,
                self.units_done,
                self.units_started,
                self.problems.len()
            )
        });
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A v2 group under the root with cpu.lags present and the cpu controller enabled for its
/// children (the base of every phase).
fn base_group(name: &str) -> Result<Cgroup, Stop> {
    let cg = super::lags_iface::lags_group(&format!("{PREFIX}{name}"))?;
    cg.enable_cpu_for_children()
        .or_fail(&format!("+cpu in {}", cg.path().display()))?;
    Ok(cg)
}

fn set_lags(cg: &Cgroup, on: bool) -> Result<(), Stop> {
    cg.write("cpu.lags", if on { "1" } else { "0" })
        .or_fail(&format!("writing cpu.lags of {}", cg.path().display()))
}

/// A child group with cpu.lags set to `lags`.
fn lags_child(parent: &Cgroup, name: &str, lags: bool) -> Result<Cgroup, Stop> {
    let cg = parent
        .child(name)
        .or_fail(&format!("mkdir {}/{name}", parent.path().display()))?;
    set_lags(&cg, lags)?;
    Ok(cg)
}

/// Moves `pid` into `cg`; a worker that has just exited (ESRCH) does not count.
fn move_pid(cg: &Cgroup, pid: libc::pid_t) -> Result<bool, Stop> {
    match cg.add_pid(pid) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(e) => fail(format!(
            "moving {pid} into {}: {}",
            cg.path().display(),
            util::describe_err(&e)
        )),
    }
}

/// Starts watching the guest for stops for one test (see [`stops`]).
fn watch_stops() -> Result<StopWatch, Stop> {
    StopWatch::start(base_group("watch")?)
}

/// Ends a test's watch for stops, failing the test on each overflow of the lag bound that no
/// stop of a vCPU explains, and prints the test's summary line: its `fields`, then the
/// watch's. Stops of the
/// emulated CPUs are frequent (single-threaded TCG runs one vCPU at a time), and an
/// overflow while one is excused, so the summary says how many records no stop excused;
/// below [`stops::MIN_CLEAN`] the bound was hardly checked, which a diagnostic says (the
/// test's other checks still decide it). Stops include stop_machine() of CPU hotplug and
/// module loading, which the watchers cannot tell from the host's.
fn report_watched(
    ctx: &mut Ctx,
    test: &str,
    watch: StopWatch,
    fields: &[(&str, u64)],
) -> Result<(), Stop> {
    let (o, _) = watch.finish(ctx, stops::rmax_ns()?, STOP_REPAY)?;
    let clean = o.intervals.saturating_sub(o.excused_intervals);
    if clean < stops::MIN_CLEAN {
        ctx.diag(format!(
            "lag bound hardly checked: stops excuse {} of {} watcher records, {clean} left \
             (a check needs {})",
            o.excused_intervals,
            o.intervals,
            stops::MIN_CLEAN
        ));
    }
    let watched = [
        ("lag_overflows", o.explained + o.unexplained),
        ("lag_overflows_unexplained", o.unexplained),
        ("stopped_intervals", o.stalled_intervals),
        ("excused_intervals", o.excused_intervals),
        ("watched_intervals", o.intervals),
    ];
    report(ctx, test, &[fields, &watched[..]].concat());
    Ok(())
}

fn debugfs(name: &str) -> PathBuf {
    Path::new(DEBUGFS_DIR).join(name)
}

fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    util::read_trimmed(path).ok()?.parse().ok()
}

/// Every `ms` of a phase, a progress line (the host treats a silent console as a hang).
struct Progress {
    next: u64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            next: util::now_ns() + 10_000_000_000,
        }
    }

    fn tick(&mut self, ctx: &mut Ctx, what: impl FnOnce() -> String) {
        let now = util::now_ns();
        if now >= self.next {
            ctx.diag(format!("progress: {}", what()));
            self.next = now + 10_000_000_000;
        }
    }
}

fn seed_of(ctx: &Ctx) -> u64 {
    ctx.cfg.seed.unwrap_or_else(util::now_ns)
}

// ---------------------------------------------------------------------------------------
// Tests

// Expect cgroups to be created, marked LAGS (nested up to three levels), filled with running
// tasks, toggled, emptied and removed over and over under a CPU-bound and a wakeup-heavy
// load without a kernel complaint, and every worker to finish its work. Two of the workers
// also switch themselves to SCHED_FIFO and back and renice themselves in every step, so the
// groups' entities keep starting to run without a pick.
fn cgroup_churn(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let watch = watch_stops()?;
    let base = base_group("churn")?;
    let home = lags_child(&base, "home", true)?;
    let mut pool = Pool::default();
    let end = util::now_ns() + phase_ns(ctx);
    let (mut cycles, mut created, mut lags_writes, mut moves, mut raced, mut stat_reads) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut progress = Progress::new();
    while util::now_ns() < end {
        pool.reap();
        pool.refill(3, 3, |_| (&home, None))?;
        while pool.count(Kind::Flip) < 2 {
            pool.spawn(Kind::Flip, &home, None)?;
        }
        let depth = 1 + (cycles % 3) as usize;
        let mut chain = vec![lags_child(&base, &format!("c{cycles}"), true)?];
        created += 1;
        lags_writes += 1;
        for d in 1..depth {
            let parent = chain.last().expect("chain is never empty");
            parent
                .enable_cpu_for_children()
                .or_fail("+cpu in a churn group")?;
            let c = lags_child(parent, &format!("l{d}"), true)?;
            chain.push(c);
            created += 1;
            lags_writes += 1;
        }
        let leaf = chain.last().expect("chain is never empty");
        let pids = pool.pids();
        for (i, pid) in pids.iter().enumerate() {
            if (i as u64 + cycles).is_multiple_of(2) {
                if move_pid(leaf, *pid)? {
                    moves += 1;
                } else {
                    raced += 1;
                }
            }
        }
        for t in 0u32..4 {
            for cg in &chain {
                set_lags(cg, !t.is_multiple_of(2))?;
                lags_writes += 1;
            }
        }
        if cycles.is_multiple_of(4) {
            set_lags(&home, !cycles.is_multiple_of(8))?;
            lags_writes += 1;
        }
        leaf.read("cpu.stat").or_fail("cpu.stat of a churn group")?;
        stat_reads += 1;
        let inside = leaf.read("cgroup.procs").unwrap_or_default();
        for pid in inside.split_whitespace().filter_map(|p| p.parse().ok()) {
            if move_pid(&home, pid)? {
                moves += 1;
            } else {
                raced += 1;
            }
        }
        while let Some(cg) = chain.pop() {
            let path = cg.path().display().to_string();
            cg.remove().or_fail(&format!("rmdir {path}"))?;
        }
        cycles += 1;
        progress.tick(ctx, || {
            format!("cgroup_churn cycles={cycles} workers={}", pool.started)
        });
    }
    set_lags(&home, true)?;
    let drain = pool.drain(DRAIN_TIMEOUT);
    ctx.diag(format!(
        "cgroup_churn: {cycles} cycles, {created} groups created and removed (depth 1-3), {lags_writes} cpu.lags writes, {moves} task moves ({raced} raced with exit), {stat_reads} cpu.stat reads"
    ));
    pool.check(ctx, drain);
    report_watched(
        ctx,
        "cgroup_churn",
        watch,
        &[
            ("ops", created + lags_writes + moves + stat_reads),
            ("faults", 0),
            ("invalid", 0),
            ("cycles", cycles),
            ("groups", created),
            ("lags_writes", lags_writes),
            ("moves", moves),
            ("started", pool.units_started),
            ("finished", pool.units_done),
        ],
    )?;
    Ok(())
}

/// The debugfs tunables and the part of their valid range this suite writes.
const TUNABLES: &[(&str, u64, u64)] = &[
    ("credit_period_ns", 10_000_000, 10_000_000_000),
    ("starve_ns", 1_000_000, 10_000_000_000),
    ("credit_ref_pct", 1, 1_000),
];

// Expect kernel.sched_lags to be toggled rapidly and the tunables rewritten with valid values
// (boundaries included) while nested LAGS groups run, each write taking effect, and every
// worker to finish.
fn flag_and_tunable_churn(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let watch = watch_stops()?;
    let _sysctl = Restore::save(SYSCTL).or_fail(SYSCTL)?;
    let mut restores = Vec::new();
    let mut tunables = Vec::new();
    for (name, lo, hi) in TUNABLES {
        let p = debugfs(name);
        if util::exists(&p) {
            restores.push(Restore::save(&p).or_fail(&p.display().to_string())?);
            tunables.push((p, *lo, *hi));
        } else {
            ctx.diag(format!("{} missing; not churned", p.display()));
        }
    }
    let base = base_group("flags")?;
    let a = lags_child(&base, "a", true)?;
    a.enable_cpu_for_children().or_fail("+cpu in a")?;
    let leaves = [
        lags_child(&a, "x", true)?,
        lags_child(&a, "y", true)?,
        lags_child(&base, "b", true)?,
    ];
    let mut rng = util::Rng::new(seed_of(ctx));
    let mut pool = Pool::default();
    let end = util::now_ns() + phase_ns(ctx);
    let (mut toggles, mut tunable_writes, mut lags_writes, mut iter) = (0u64, 0u64, 0u64, 0u64);
    let mut progress = Progress::new();
    while util::now_ns() < end {
        pool.reap();
        pool.refill(3, 3, |n| (&leaves[(n % 3) as usize], None))?;
        for i in 0u32..20 {
            let v = if i.is_multiple_of(2) { "0" } else { "1" };
            util::write_file(SYSCTL, v).or_fail("toggling kernel.sched_lags")?;
            toggles += 1;
        }
        for (p, lo, hi) in &tunables {
            let v = match rng.below(8) {
                0 => *lo,
                1 => *hi,
                _ => rng.range(*lo, (*hi).min(1_000_000_000)),
            };
            util::write_file(p, v.to_string())
                .or_fail(&format!("writing {v} to {}", p.display()))?;
            tunable_writes += 1;
            let back = read_u64(p);
            ctx.check(back == Some(v), || {
                format!("{} after writing {v}: read {back:?}", p.display())
            });
        }
        if iter.is_multiple_of(5) {
            set_lags(&a, !iter.is_multiple_of(10))?;
            lags_writes += 1;
        }
        iter += 1;
        progress.tick(ctx, || format!("flag churn toggles={toggles}"));
    }
    set_lags(&a, true)?;
    drop(restores);
    let drain = pool.drain(DRAIN_TIMEOUT);
    ctx.diag(format!(
        "flag churn: {toggles} kernel.sched_lags toggles, {tunable_writes} tunable writes, {lags_writes} cpu.lags toggles"
    ));
    pool.check(ctx, drain);
    report_watched(
        ctx,
        "flag_and_tunable_churn",
        watch,
        &[
            ("ops", toggles + tunable_writes + lags_writes),
            ("faults", toggles),
            ("invalid", 0),
            ("toggles", toggles),
            ("tunable_writes", tunable_writes),
            ("started", pool.units_started),
            ("finished", pool.units_done),
        ],
    )?;
    Ok(())
}

// Expect CPUs to go offline and online while LAGS groups (nested too) have runnable tasks on
// them, pinned and unpinned, and every worker to finish.
fn cpu_hotplug(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let watch = watch_stops()?;
    let cpus = util::online_cpus().or_fail("online CPUs")?;
    let hot: Vec<usize> = cpus
        .iter()
        .copied()
        .filter(|&c| c != 0 && util::exists(util::cpu_online_path(c)))
        .collect();
    if hot.is_empty() {
        return skip(format!(
            "no hot-pluggable CPU (online: {cpus:?}; needs 2+ vCPUs and CONFIG_HOTPLUG_CPU)"
        ));
    }
    let _guard = util::OnlineGuard(hot.clone());
    let base = base_group("hotplug")?;
    let g1 = lags_child(&base, "g1", true)?;
    let g2 = lags_child(&base, "g2", true)?;
    g2.enable_cpu_for_children().or_fail("+cpu in g2")?;
    let g2n = lags_child(&g2, "n", true)?;
    let groups = [&g1, &g2n];
    let mut pool = Pool::default();
    let end = util::now_ns() + phase_ns(ctx);
    let (mut offlines, mut onlines, mut ebusy) = (0u64, 0u64, 0u64);
    let mut progress = Progress::new();
    while util::now_ns() < end {
        for &c in &hot {
            pool.reap();
            // Half the new workers pinned to the CPU about to go away.
            pool.refill(4, 2, |n| {
                (groups[(n % 2) as usize], (n.is_multiple_of(2)).then_some(c))
            })?;
            match util::write_file(util::cpu_online_path(c), "0") {
                Ok(()) => offlines += 1,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => ebusy += 1,
                Err(e) => return fail(format!("offlining CPU {c}: {}", util::describe_err(&e))),
            }
            util::sleep_ms(30);
            pool.reap();
            pool.refill(4, 2, |n| (groups[(n % 2) as usize], None))?;
            util::write_file(util::cpu_online_path(c), "1")
                .or_fail(&format!("onlining CPU {c}"))?;
            onlines += 1;
            util::sleep_ms(30);
        }
        progress.tick(ctx, || format!("hotplug offlines={offlines}"));
    }
    let now_online = util::online_cpus().or_fail("online CPUs")?;
    ctx.check(now_online == cpus, || {
        format!("online CPUs after hotplug: expected {cpus:?}, got {now_online:?}")
    });
    let drain = pool.drain(DRAIN_TIMEOUT);
    ctx.diag(format!(
        "cpu hotplug: CPUs {hot:?}: {offlines} offline and {onlines} online transitions ({ebusy} EBUSY)"
    ));
    pool.check(ctx, drain);
    report_watched(
        ctx,
        "cpu_hotplug",
        watch,
        &[
            ("ops", offlines + onlines),
            ("faults", offlines + onlines),
            ("invalid", 0),
            ("offlines", offlines),
            ("onlines", onlines),
            ("started", pool.units_started),
            ("finished", pool.units_done),
        ],
    )?;
    Ok(())
}

/// Unloads the monitor when dropped if it is still loaded.
struct ModuleGuard;

fn module_loaded() -> bool {
    util::exists(format!("/sys/module/{MODULE}"))
}

fn unload_module(timeout_ms: u64) -> std::io::Result<()> {
    let deadline = util::now_ns() + timeout_ms * 1_000_000;
    loop {
        match util::delete_module(MODULE) {
            Ok(()) => return Ok(()),
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY))
                    && util::now_ns() < deadline =>
            {
                util::sleep_ms(10)
            }
            Err(e) => return Err(e),
        }
    }
}

impl Drop for ModuleGuard {
    fn drop(&mut self) {
        if module_loaded() {
            if let Err(e) = unload_module(5_000) {
                util::warn(format!(
                    "cleanup: unloading {MODULE}: {}",
                    util::describe_err(&e)
                ));
            }
        }
    }
}

/// Reads the snapshot in a loop until told to stop; counts outcomes.
fn snapshot_reader(io: &mut WorkerIo) -> i32 {
    let (mut ok, mut absent, mut eio, mut other, mut bad) = (0u64, 0u64, 0u64, 0u64, 0u64);
    while !io.stop_requested() {
        match std::fs::read(SNAPSHOT) {
            Ok(b) => {
                if b.starts_with(b"lags_monitor ") {
                    ok += 1;
                } else {
                    bad += 1;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => absent += 1,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => eio += 1,
            Err(_) => other += 1,
        }
        util::sleep_ms(2);
    }
    io.send_kv("ok", ok);
    io.send_kv("absent", absent);
    io.send_kv("eio", eio);
    io.send_kv("other", other);
    io.send_kv("bad", bad);
    0
}

// Expect the Rust monitor to be loaded, read and unloaded in a loop, with a concurrent
// reader, while groups are created, marked, removed and the global flag toggles.
fn module_churn(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let watch = watch_stops()?;
    if !Path::new(KO).exists() {
        return skip(format!(
            "{KO} not in the initramfs (monitor module not built)"
        ));
    }
    let _guard = ModuleGuard;
    if module_loaded() {
        unload_module(5_000).or_fail("unloading a previously loaded monitor")?;
    }
    let _sysctl = Restore::save(SYSCTL).or_fail(SYSCTL)?;
    let base = base_group("module")?;
    let home = lags_child(&base, "home", true)?;
    let mut reader = Worker::spawn(snapshot_reader).or_fail("fork")?;
    reader.go().or_fail("starting the snapshot reader")?;
    let mut pool = Pool::default();
    let end = util::now_ns() + phase_ns(ctx);
    let (mut loads, mut unloads, mut reads, mut groups, mut toggles) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut progress = Progress::new();
    while util::now_ns() < end {
        pool.reap();
        pool.refill(2, 2, |_| (&home, None))?;
        util::finit_module(Path::new(KO)).or_fail("loading lags_monitor")?;
        loads += 1;
        let g = lags_child(&base, &format!("m{loads}"), true)?;
        groups += 1;
        for pid in pool.pids().into_iter().take(2) {
            move_pid(&g, pid)?;
        }
        let snap = util::read_file(SNAPSHOT).or_fail("reading the snapshot")?;
        reads += 1;
        let first = snap.lines().next().unwrap_or("");
        ctx.check(first.starts_with("lags_monitor "), || {
            format!("snapshot line 1: expected 'lags_monitor …', got {first:?}")
        });
        for v in ["0", "1"] {
            util::write_file(SYSCTL, v).or_fail("toggling kernel.sched_lags")?;
            toggles += 1;
        }
        for pid in g
            .read("cgroup.procs")
            .unwrap_or_default()
            .split_whitespace()
        {
            if let Ok(pid) = pid.parse() {
                move_pid(&home, pid)?;
            }
        }
        g.remove().or_fail("rmdir a module-churn group")?;
        unload_module(5_000).or_fail("unloading lags_monitor")?;
        unloads += 1;
        progress.tick(ctx, || format!("module churn loads={loads}"));
    }
    let out = reader
        .finish(Duration::from_secs(30))
        .or_fail("snapshot reader")?;
    let kvs = util::parse_kv_lines(&String::from_utf8_lossy(&out));
    let get = |k: &str| {
        util::kv(&kvs, k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let drain = pool.drain(DRAIN_TIMEOUT);
    ctx.diag(format!(
        "module churn: {loads} loads, {unloads} unloads, {reads} snapshot reads in the runner; concurrent reader: {} ok, {} absent, {} EIO, {} other errors, {} malformed; {groups} groups, {toggles} flag toggles",
        get("ok"), get("absent"), get("eio"), get("other"), get("bad")
    ));
    ctx.check(get("bad") == 0 && get("other") == 0, || {
        format!(
            "concurrent snapshot reads: expected only ok/ENOENT/EIO, got {} malformed and {} other errors",
            get("bad"),
            get("other")
        )
    });
    pool.check(ctx, drain);
    report_watched(
        ctx,
        "module_churn",
        watch,
        &[
            (
                "ops",
                loads + unloads + reads + get("ok") + groups + toggles,
            ),
            ("faults", loads + unloads),
            ("invalid", 0),
            ("loads", loads),
            ("reader_ok", get("ok")),
            ("started", pool.units_started),
            ("finished", pool.units_done),
        ],
    )?;
    Ok(())
}

/// Busy 2 ms of CPU, sleep 0.5 ms, until told to stop; sends the number of cycles. Three
/// of them ask for 240 % of a CPU, so the CPU never idles and a heavy group runs only when
/// the scheduler picks it over them.
fn flooder(io: &mut WorkerIo) -> i32 {
    let mut cycles = 0u64;
    while !io.stop_requested() {
        util::spin_cpu_ns(2_000_000);
        util::sleep_until_ns(util::now_ns() + 500_000);
        cycles += 1;
    }
    io.send_kv("cycles", cycles);
    0
}

// Expect every heavy LAGS group, one per CPU, to get CPU within starve_ns + slack while
// three light LAGS groups per CPU flood it, with a credit time constant so slow that the
// credit order alone would keep the heavy groups waiting for seconds.
fn starvation_bound(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let watch = watch_stops()?;
    let sysctl = Restore::save(SYSCTL).or_fail(SYSCTL)?;
    if sysctl.value() != "1" {
        util::write_file(SYSCTL, "1").or_fail("enabling kernel.sched_lags")?;
    }
    let starve_ns = read_u64(debugfs("starve_ns")).unwrap_or(super::lags_iface::STARVE_NS);
    let _credit = Restore::save(debugfs("credit_period_ns")).or_fail("credit_period_ns")?;
    util::write_file(
        debugfs("credit_period_ns"),
        SLOW_CREDIT_PERIOD_NS.to_string(),
    )
    .or_fail("slowing credit_period_ns")?;
    let cpus = util::online_cpus().or_fail("online CPUs")?;
    let base = base_group("starve")?;
    let mut heavy_cgs = Vec::new();
    let mut light_cgs = Vec::new();
    for &c in &cpus {
        heavy_cgs.push((c, lags_child(&base, &format!("h{c}"), true)?));
        for j in 0..3 {
            light_cgs.push((c, lags_child(&base, &format!("l{c}_{j}"), true)?));
        }
    }
    let phase = phase_ns(ctx);
    let warmup = PREHEAT_MS * 1_000_000 + 300_000_000;
    let mut heavies = Vec::new();
    for (c, cg) in &heavy_cgs {
        let mut w =
            Worker::spawn(move |io| util::spin_recording_gaps(io, warmup)).or_fail("fork")?;
        w.start_in(cg, Some(*c)).or_fail("starting a heavy")?;
        heavies.push(w);
    }
    util::sleep_ms(PREHEAT_MS);
    let mut lights = Vec::new();
    for (c, cg) in &light_cgs {
        let mut w = Worker::spawn(flooder).or_fail("fork")?;
        w.start_in(cg, Some(*c)).or_fail("starting a flooder")?;
        lights.push(w);
    }
    util::sleep_ms(phase / 1_000_000);
    let bound = starve_ns + STARVE_SLACK_NS;
    let mut worst = 0u64;
    let mut flood_cycles = 0u64;
    let mut finished = 0u64;
    for w in &mut lights {
        let out = w.finish(Duration::from_secs(60)).or_fail("flooder")?;
        let kvs = util::parse_kv_lines(&String::from_utf8_lossy(&out));
        flood_cycles += util::kv(&kvs, "cycles")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        finished += 1;
    }
    let mut starved_picks = 0u64;
    let mut wait_max_us = 0u64;
    for ((c, cg), w) in heavy_cgs.iter().zip(&mut heavies) {
        let stat = cg.read("cpu.stat").or_fail("heavy cpu.stat")?;
        let out = util::decode_u64s(&w.finish(Duration::from_secs(60)).or_fail("heavy")?);
        finished += 1;
        let (gap, loops) = (
            out.first().copied().unwrap_or(0),
            out.get(1).copied().unwrap_or(0),
        );
        let sp = util::keyed_u64(&stat, "lags_starved_picks").unwrap_or(0);
        let wm = util::keyed_u64(&stat, "lags_wait_max_us").unwrap_or(0);
        starved_picks += sp;
        wait_max_us = wait_max_us.max(wm);
        worst = worst.max(gap);
        ctx.diag(format!(
            "heavy on CPU {c}: longest gap {} (bound {}), loops {loops}, lags_starved_picks {sp}, lags_wait_max_us {wm}, credit {} mcpu",
            util::ms(gap),
            util::ms(bound),
            util::keyed_value(&stat, "lags_credit_mcpu").unwrap_or("?")
        ));
        ctx.check(gap <= bound, || {
            format!(
                "heavy on CPU {c}: longest wait expected <= starve_ns {} + slack {} = {}, got {}",
                util::ms(starve_ns),
                util::ms(STARVE_SLACK_NS),
                util::ms(bound),
                util::ms(gap)
            )
        });
        ctx.check(loops > 0, || format!("heavy on CPU {c} never ran"));
    }
    let light_credits: Vec<String> = light_cgs
        .iter()
        .map(|(_, cg)| {
            util::keyed_value(&cg.read("cpu.stat").unwrap_or_default(), "lags_credit_mcpu")
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    ctx.diag(format!(
        "starvation: {} heavy + {} light groups on CPUs {cpus:?} for {}; flood cycles {flood_cycles}; light credits {light_credits:?} mcpu; worst heavy wait {} (kernel lags_wait_max_us {wait_max_us}), starved picks {starved_picks}",
        heavy_cgs.len(),
        light_cgs.len(),
        util::ms(phase),
        util::ms(worst),
    ));
    let started = (heavies.len() + lights.len()) as u64;
    ctx.check(finished == started, || {
        format!("starvation workers: {finished} of {started} finished")
    });
    report_watched(
        ctx,
        "starvation_bound",
        watch,
        &[
            ("ops", flood_cycles),
            ("faults", 0),
            ("invalid", 0),
            ("worst_wait_us", worst / 1000),
            ("bound_us", bound / 1000),
            ("kernel_wait_max_us", wait_max_us),
            ("starved_picks", starved_picks),
            ("started", started),
            ("finished", finished),
        ],
    )?;
    drop(sysctl);
    Ok(())
}

// Expect no process of the suite to survive it (every child reaped, none stuck runnable)
// and no cgroup of the suite to remain.
fn nothing_left_behind(ctx: &mut Ctx) -> TestResult {
    let deadline = util::now_ns() + 10_000_000_000;
    let mut procs = util::user_processes();
    while !procs.is_empty() && util::now_ns() < deadline {
        // Reap any orphan that was re-parented to us (PID 1).
        // SAFETY: waitpid(-1) with WNOHANG and a null status pointer.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        util::sleep_ms(50);
        procs = util::user_processes();
    }
    let leftover_cgs: Vec<String> = std::fs::read_dir(CGROUP2_ROOT)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with(PREFIX))
                .collect()
        })
        .unwrap_or_default();
    ctx.check(procs.is_empty(), || {
        format!("leftover processes (pid, state): expected none, got {procs:?}")
    });
    ctx.check(leftover_cgs.is_empty(), || {
        format!("leftover cgroups: expected none, got {leftover_cgs:?}")
    });
    // Each timed test checks the lag bound over its own run (see `report_watched`); the total
    // over the suite is only reported.
    let overflows = stops::lag_overflows().ok();
    report(
        ctx,
        "nothing_left_behind",
        &[
            ("ops", 1),
            ("faults", 0),
            ("invalid", 0),
            ("leftover_procs", procs.len() as u64),
            ("leftover_cgroups", leftover_cgs.len() as u64),
            ("lag_overflows", overflows.unwrap_or(u64::MAX)),
        ],
    );
    Ok(())
}
