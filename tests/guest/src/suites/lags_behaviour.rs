// SPDX-License-Identifier: GPL-2.0
//! `lags_behaviour`: A/B measurements in one boot, everything pinned to one CPU.
//!
//! Groups live under `/sys/fs/cgroup/lagsab`. Workers are forked processes, one per group,
//! pinned to the first online CPU; the runner moves itself to another CPU (if there is one)
//! and mostly sleeps. Each phase uses fresh groups and fresh workers so phases are
//! independent. The sysctl and debugfs knobs are restored afterwards.

use std::path::Path;
use std::time::Duration;

use super::lags_iface::{need_lags, SCHEDSTATS, SYSCTL};
use super::{ensure, fail, Ctx, OrFail, Stop, Suite, Test, TestResult};
use crate::util::{self, AffinityGuard, Cgroup, Restore, Summary, Worker, WorkerIo};

pub const SUITE: Suite = Suite {
    name: "lags_behaviour",
    tests: &[
        Test {
            name: "light_latency_ab",
            run: light_latency_ab,
        },
        Test {
            name: "heavy_progress_bounded",
            run: heavy_progress_bounded,
        },
        Test {
            name: "non_member_latency_bounded",
            run: non_member_latency_bounded,
        },
        Test {
            name: "service_floor",
            run: service_floor,
        },
        Test {
            name: "credit_rises_and_decays",
            run: credit_rises_and_decays,
        },
        Test {
            name: "preempt_count_only_lags_decisions",
            run: preempt_count_only_lags_decisions,
        },
        Test {
            name: "picks_count_only_picks",
            run: picks_count_only_picks,
        },
        Test {
            name: "wait_ended_by_class_change_counts",
            run: wait_ended_by_class_change_counts,
        },
    ],
};

/// Heavy (always runnable) groups in the latency test.
const HEAVIES: usize = 4;
/// The light probe wakes every 4 ms, runs 200 us, and keeps 300 samples after 20.
const PERIOD_NS: u64 = 4_000_000;
const LIGHT_RUN_NS: u64 = 200_000;
const SAMPLES: usize = 250;
/// Interleaved rounds of the A/B/C latency experiment: the median of five stands two
/// rounds disturbed by the host (the CI of 9579935's parent had two of three: every phase of
/// round 1 ten times slower than usual, and a 200 ms backlog in round 2).
const ROUNDS: usize = 5;
const DISCARD: usize = 20;
/// Heavies run alone this long before the light probe starts: 1.5 credit time constants,
/// so their credit (and with it their request size) is near its steady state.
const SETTLE_MS: u64 = 1_500;
/// Heavies ignore gaps during their first 200 ms.
const GAP_WARMUP_NS: u64 = 200_000_000;
/// Lighter siblings in the service-floor test: they spin in 1 ms steps.
const FLOODERS: usize = 6;
const FLOOD_MS: u64 = 3_000;
const PREHEAT_MS: u64 = 1_500;
const DEFAULT_BASE_SLICE_NS: u64 = 3_000_000;

/// Timeouts for collecting worker output (generous: TCG).
const LIGHT_TIMEOUT: Duration = Duration::from_secs(60);
const WORKER_TIMEOUT: Duration = Duration::from_secs(20);

/// The set-up every test here shares.
struct Env {
    /// The CPU every worker runs on.
    cpu: usize,
    base_slice_ns: u64,
    // Dropped in this order: the groups, then the sysctl, then the runner's affinity.
    parent: Cgroup,
    _sysctl: Restore,
    _pin: Option<AffinityGuard>,
}

impl Env {
    /// EEVDF's bound on a waiting entity's wait with n busy equal-weight siblings, each
    /// running at most a LAGS request of 8 x base_slice at a time, plus 100 ms of TCG slack
    /// (a loaded host delays a single-threaded TCG guest by tens of milliseconds).
    fn bound_ns(&self, siblings: u64) -> u64 {
        100_000_000 + siblings * 8 * self.base_slice_ns
    }

    fn bound_text(&self, siblings: u64) -> String {
        format!(
            "100ms + {siblings} siblings x 8 x base_slice {} = {}",
            util::ms(self.base_slice_ns),
            util::ms(self.bound_ns(siblings))
        )
    }
}

fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    util::read_trimmed(path).ok()?.parse().ok()
}

fn setup(ctx: &mut Ctx) -> Result<Env, Stop> {
    need_lags(ctx)?;
    ensure!(util::exists(SYSCTL), "{SYSCTL}: expected to exist, missing");
    // Keep the runner off the test CPU so its own wake-ups do not disturb the measurement.
    let util::TestCpu { cpu, others, pin } = util::test_cpu().or_fail("test CPU")?;
    let base_slice_ns = read_u64("/sys/kernel/debug/sched/base_slice_ns").unwrap_or_else(|| {
        ctx.diag("base_slice_ns unreadable; assuming 3ms");
        DEFAULT_BASE_SLICE_NS
    });
    let sysctl = Restore::save(SYSCTL).or_fail(SYSCTL)?;
    util::ensure_v2_cpu(Duration::from_secs(5)).or_fail("enabling cpu on cgroup v2")?;
    let parent = Cgroup::new_v2("lagsab").or_fail("creating /sys/fs/cgroup/lagsab")?;
    parent
        .enable_cpu_for_children()
        .or_fail("+cpu in lagsab/cgroup.subtree_control")?;
    let env = Env {
        cpu,
        base_slice_ns,
        parent,
        _sysctl: sysctl,
        _pin: pin,
    };
    ctx.diag(format!(
        "workers on CPU {cpu}, runner on {others:?}; base_slice {}",
        util::ms(env.base_slice_ns)
    ));
    Ok(env)
}

/// A child group of lagsab with cpu.lags set.
fn group(env: &Env, name: &str, lags: bool) -> Result<Cgroup, Stop> {
    let cg = env
        .parent
        .child(name)
        .or_fail(&format!("creating lagsab/{name}"))?;
    cg.write("cpu.lags", if lags { "1" } else { "0" })
        .or_fail(&format!("writing cpu.lags of lagsab/{name}"))?;
    Ok(cg)
}

/// Forks a worker running `body`, moves it into `cg`, pins it to the test CPU, starts it.
fn start<F: FnOnce(&mut WorkerIo) -> i32>(env: &Env, cg: &Cgroup, body: F) -> Result<Worker, Stop> {
    let mut w = Worker::spawn(body).or_fail("fork")?;
    w.start_in(cg, Some(env.cpu)).or_fail("starting worker")?;
    Ok(w)
}

fn set_sysctl(v: &str) -> TestResult {
    util::write_file(SYSCTL, v).or_fail(&format!("writing {v} to {SYSCTL}"))
}

fn stat(cg: &Cgroup, key: &str) -> Result<u64, Stop> {
    cg.cpu_stat(key).or_fail("cpu.stat")
}

/// The light probe: absolute-time sleeps on a 4 ms grid, lateness = wake-to-run latency,
/// then 200 us of work. Sends the kept samples (ns).
fn light_probe(io: &mut WorkerIo) -> i32 {
    let mut samples = Vec::with_capacity(SAMPLES);
    let give_up = util::now_ns() + 30_000_000_000;
    let mut target = util::now_ns() + PERIOD_NS;
    for i in 0..SAMPLES + DISCARD {
        util::sleep_until_ns(target);
        let now = util::now_ns();
        if i >= DISCARD {
            samples.push(now.saturating_sub(target));
        }
        util::spin_until_ns(now + LIGHT_RUN_NS);
        target += PERIOD_NS;
        if now > give_up {
            break;
        }
    }
    io.send(&util::encode_u64s(&samples));
    0
}

/// A flooder: a lighter LAGS group that spins until told to stop.
fn flooder(io: &mut WorkerIo) -> i32 {
    while !io.stop_requested() {
        // Lighter groups that never sleep: the CPU always has a LAGS sibling lighter than
        // the pre-heated heavy group; only EEVDF eligibility lets the heavy run.
        util::spin_cpu_ns(1_000_000);
    }
    0
}

fn heavy(io: &mut WorkerIo) -> i32 {
    util::spin_recording_gaps(io, GAP_WARMUP_NS)
}

/// Stops a heavy worker and returns its longest gap.
fn heavy_gap(w: &mut Worker) -> Result<u64, Stop> {
    let out = util::decode_u64s(&w.finish(WORKER_TIMEOUT).or_fail("heavy worker")?);
    ensure!(
        out.len() == 2,
        "heavy worker: expected [max_gap, loops], got {out:?}"
    );
    Ok(out[0])
}

/// A probe's latency samples (ns), which must be `expected` many.
fn latency_samples(raw: &[u8], expected: usize, label: &str) -> Result<Vec<u64>, Stop> {
    let samples = util::decode_u64s(raw);
    ensure!(
        samples.len() == expected,
        "phase {label}: expected {expected} latency samples, got {}",
        samples.len()
    );
    Ok(samples)
}

/// One phase of the latency experiment.
#[derive(Clone, Debug)]
struct Phase {
    lat: Summary,
    heavy_gaps: Vec<u64>,
    heavy_usage_us: Vec<u64>,
    /// The light group's `lags_wakeup_preempts` (None when cpu.lags=0: no such line).
    light_preempts: Option<u64>,
}

/// Phase B of `light_latency_ab`, kept for `heavy_progress_bounded`.
struct PhaseB {
    phase: Phase,
    bound_ns: u64,
    bound_text: String,
}

/// Which groups of a phase have `cpu.lags=1`.
#[derive(Clone, Copy, Debug)]
struct Members {
    heavy: bool,
    light: bool,
}

impl Members {
    const ALL: Members = Members {
        heavy: true,
        light: true,
    };
    const NONE: Members = Members {
        heavy: false,
        light: false,
    };
}

fn run_phase(env: &Env, label: &str, members: Members, sysctl: &str) -> Result<Phase, Stop> {
    set_sysctl(sysctl)?;
    let heavy_cgs = (0..HEAVIES)
        .map(|i| group(env, &format!("{label}-heavy{i}"), members.heavy))
        .collect::<Result<Vec<_>, _>>()?;
    let light_cg = group(env, &format!("{label}-light"), members.light)?;
    let lags = members.light;
    // Workers are declared after their groups, so they are killed before the groups go.
    let mut heavies = heavy_cgs
        .iter()
        .map(|cg| start(env, cg, heavy))
        .collect::<Result<Vec<_>, _>>()?;
    util::sleep_ms(SETTLE_MS);
    let usage0 = heavy_cgs
        .iter()
        .map(|cg| stat(cg, "usage_usec"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut light = start(env, &light_cg, light_probe)?;
    let raw = light.finish(LIGHT_TIMEOUT).or_fail("light worker")?;
    let light_preempts = if lags {
        Some(stat(&light_cg, "lags_wakeup_preempts")?)
    } else {
        None
    };
    let usage1 = heavy_cgs
        .iter()
        .map(|cg| stat(cg, "usage_usec"))
        .collect::<Result<Vec<_>, _>>()?;
    let heavy_gaps = heavies
        .iter_mut()
        .map(heavy_gap)
        .collect::<Result<Vec<_>, _>>()?;
    let samples = latency_samples(&raw, SAMPLES, label)?;
    Ok(Phase {
        lat: Summary::of(&samples),
        heavy_gaps,
        light_preempts,
        heavy_usage_us: usage0
            .iter()
            .zip(&usage1)
            .map(|(a, b)| b.saturating_sub(*a))
            .collect(),
    })
}

/// The median of one phase's per-round values (ROUNDS is odd, so it is the middle one).
fn median_of_rounds(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

// Expect a light group's wake-up latency p99 to halve with LAGS among 4 CPU hogs, and to
// go back up when the global switch is off. The phases are interleaved over ROUNDS rounds
// (A B C A B C ...) and each phase is judged by the median of its per-round p99, so one
// round disturbed by the host (under TCG a host preemption is a guest latency spike) cannot
// decide the outcome.
fn light_latency_ab(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let mut p50 = [Vec::new(), Vec::new(), Vec::new()];
    let mut p99 = [Vec::new(), Vec::new(), Vec::new()];
    let phases = [
        ("A", "cpu.lags=0, sched_lags=1", Members::NONE, "1"),
        ("B", "cpu.lags=1, sched_lags=1", Members::ALL, "1"),
        ("C", "cpu.lags=1, sched_lags=0", Members::ALL, "0"),
    ];
    for round in 1..=ROUNDS {
        for (i, (name, what, lags, sysctl)) in phases.iter().enumerate() {
            let label = format!("{}{round}", name.to_lowercase());
            let ph = run_phase(&env, &label, *lags, sysctl)?;
            ctx.diag(format!(
                "round {round} phase {name} ({what}): {}{}",
                ph.lat,
                ph.light_preempts.map_or(String::new(), |n| format!(
                    "; light lags_wakeup_preempts={n}"
                ))
            ));
            p50[i].push(ph.lat.p50);
            p99[i].push(ph.lat.p99);
            if *name == "B" && round == 1 {
                ctx.stash.put(PhaseB {
                    phase: ph.clone(),
                    bound_ns: env.bound_ns(HEAVIES as u64),
                    bound_text: env.bound_text(HEAVIES as u64),
                });
            }
        }
    }
    let [a99, b99, c99] = p99.map(median_of_rounds);
    let [a, b, c] = p50.map(median_of_rounds);
    ctx.diag(format!(
        "median p50 over {ROUNDS} rounds: A {} / B {} / C {} (A/B = {:.1}x); median p99: A {} \
         / B {} / C {} (reported, not asserted: under TCG the tail is host preemption)",
        util::us(a),
        util::us(b),
        util::us(c),
        a as f64 / b.max(1) as f64,
        util::us(a99),
        util::us(b99),
        util::us(c99)
    ));
    ctx.check(b * 2 <= a, || {
        format!(
            "p50 with LAGS: expected <= p50(A)/2 = {}, got p50(B) = {}",
            util::us(a / 2),
            util::us(b)
        )
    });
    ctx.check(c * 2 >= b * 3, || {
        format!(
            "p50 with sched_lags=0: expected >= 1.5 x p50(B) = {}, got p50(C) = {}",
            util::us(b * 3 / 2),
            util::us(c)
        )
    });
    Ok(())
}

// Expect a group that did not opt in to keep a bounded wake-up latency next to busy LAGS
// groups. Busy members get long requests (up to 8 x base_slice) and RUN_TO_PARITY lets each
// finish its request, so the light group's latency may grow, but not beyond the documented
// bound: one request of each busy sibling. Phases interleaved over ROUNDS rounds: A (nobody
// opted in) and D (the heavies opted in, the light group did not); the median of the
// per-round p50 of D must stay within the bound, and both medians and p99s are reported (the
// numbers a reviewer asked for: what LAGS costs the latency of groups that did not opt in).
fn non_member_latency_bounded(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let members_only_heavy = Members {
        heavy: true,
        light: false,
    };
    let phases = [
        ("A", "no group opted in", Members::NONE),
        ("D", "heavies opted in, light not", members_only_heavy),
    ];
    let mut p50 = [Vec::new(), Vec::new()];
    let mut p99 = [Vec::new(), Vec::new()];
    for round in 1..=ROUNDS {
        for (i, (name, what, members)) in phases.iter().enumerate() {
            let label = format!("n{}{round}", name.to_lowercase());
            let ph = run_phase(&env, &label, *members, "1")?;
            ctx.diag(format!("round {round} phase {name} ({what}): {}", ph.lat));
            p50[i].push(ph.lat.p50);
            p99[i].push(ph.lat.p99);
        }
    }
    let [a, d] = p50.map(median_of_rounds);
    let [a99, d99] = p99.map(median_of_rounds);
    let bound = env.bound_ns(HEAVIES as u64);
    ctx.diag(format!(
        "median p50 over {ROUNDS} rounds: A {} / D {} (D/A = {:.2}x); median p99: A {} / D {} \
         (D/A = {:.2}x); bound {}",
        util::us(a),
        util::us(d),
        d as f64 / a.max(1) as f64,
        util::us(a99),
        util::us(d99),
        d99 as f64 / a99.max(1) as f64,
        env.bound_text(HEAVIES as u64)
    ));
    ctx.check(d <= bound, || {
        format!(
            "non-member p50 next to busy LAGS groups: expected <= {}, got {}",
            util::ms(bound),
            util::ms(d)
        )
    });
    Ok(())
}

// Expect the heavy groups to keep running in phase B, none waiting longer than EEVDF's
// bound for their requests.
fn heavy_progress_bounded(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let Some(b) = ctx.stash.take::<PhaseB>() else {
        return fail("no phase B data: light_latency_ab did not get through phase B");
    };
    let worst = b.phase.heavy_gaps.iter().copied().max().unwrap_or(0);
    ctx.diag(format!(
        "heavy usage_usec during the light probe: {:?}; max gaps: {}; worst {}",
        b.phase.heavy_usage_us,
        b.phase
            .heavy_gaps
            .iter()
            .map(|g| util::ms(*g))
            .collect::<Vec<_>>()
            .join(" "),
        util::ms(worst)
    ));
    for (i, (&usage, &gap)) in b
        .phase
        .heavy_usage_us
        .iter()
        .zip(&b.phase.heavy_gaps)
        .enumerate()
    {
        ctx.check(usage > 0, || {
            format!("heavy{i} usage_usec growth: expected > 0, got {usage}")
        });
        ctx.check(gap <= b.bound_ns, || {
            format!(
                "heavy{i} longest wait: expected <= {}, got {}",
                b.bound_text,
                util::ms(gap)
            )
        });
    }
    Ok(())
}

/// A real-time task on the test CPU: 1 ms of CPU every 5 ms (SCHED_FIFO 10).
fn rt_preempter(io: &mut WorkerIo) -> i32 {
    if let Err(e) = util::set_fifo(10) {
        io.send_kv("rt", e);
        return 1;
    }
    let mut next = util::now_ns();
    while !io.stop_requested() {
        util::spin_cpu_ns(1_000_000);
        next += 5_000_000;
        util::sleep_until_ns(next);
    }
    0
}

// Expect the service floor of sched-lags.rst: a busy LAGS group with the highest credit on
// the CPU (it ran alone for 1.5 s first), under a continuous flood of six lighter LAGS
// siblings and a SCHED_FIFO task taking 20% of the CPU, still receives at least 80% of its
// weight's share of the fair-class time (1/7 of what the RT task leaves) minus EEVDF's lag
// bound for its request (2 x 8 x base_slice), and never waits longer than EEVDF's bound.
fn service_floor(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    set_sysctl("1")?;
    let flood_cgs = (0..FLOODERS)
        .map(|i| group(&env, &format!("sf-flood{i}"), true))
        .collect::<Result<Vec<_>, _>>()?;
    let heavy_cg = group(&env, "sf-heavy", true)?;
    let mut heavy_w = start(&env, &heavy_cg, heavy)?;
    util::sleep_ms(PREHEAT_MS);
    let mut floods = flood_cgs
        .iter()
        .map(|cg| start(&env, cg, flooder))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rt = Worker::spawn(rt_preempter).or_fail("fork")?;
    util::set_affinity(rt.pid(), &[env.cpu]).or_fail("pinning the RT task")?;
    rt.go().or_fail("starting the RT task")?;
    let u0 = stat(&heavy_cg, "usage_usec")?;
    let t0 = util::now_ns();
    util::sleep_ms(FLOOD_MS);
    let u1 = stat(&heavy_cg, "usage_usec")?;
    let t1 = util::now_ns();
    let rt_out = rt.finish(WORKER_TIMEOUT).or_fail("RT task")?;
    let gap = heavy_gap(&mut heavy_w)?;
    for f in &mut floods {
        f.finish(WORKER_TIMEOUT).or_fail("flooder")?;
    }
    ensure!(
        rt_out.is_empty(),
        "RT task: {}",
        String::from_utf8_lossy(&rt_out)
    );
    let window_us = (t1 - t0) / 1000;
    let got = u1 - u0;
    let fair_us = window_us * 4 / 5;
    let lag_us = 2 * 8 * env.base_slice_ns / 1000;
    let floor = (fair_us / (FLOODERS as u64 + 1) * 4 / 5).saturating_sub(lag_us);
    let text = heavy_cg.read("cpu.stat").or_fail("heavy cpu.stat")?;
    ctx.diag(format!(
        "heavy: {got} us of CPU in {window_us} us (floor {floor} us), longest wait {}; \
         credit {} mcpu, lags_wait_max_us {}",
        util::ms(gap),
        util::keyed_value(&text, "lags_credit_mcpu").unwrap_or("?"),
        util::keyed_value(&text, "lags_wait_max_us").unwrap_or("?")
    ));
    ctx.check(got >= floor, || {
        format!("heavy group under the flood: expected at least {floor} us of CPU, got {got} us")
    });
    let bound = env.bound_ns(FLOODERS as u64) + 1_000_000;
    ctx.check(gap <= bound, || {
        format!(
            "heavy longest wait: expected <= {} (+1 ms of RT), got {}",
            env.bound_text(FLOODERS as u64),
            util::ms(gap)
        )
    });
    Ok(())
}

// Expect a spinning LAGS group's credit to approach 1 CPU (1000 mcpu) within 2 s and to
// decay once it stops (tau = 1 s).
fn credit_rises_and_decays(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    set_sysctl("1")?;
    let cg = group(&env, "credit", true)?;
    let mut w = start(&env, &cg, heavy)?;
    let mut series = Vec::new();
    let t0 = util::now_ns();
    for i in 1..=8u64 {
        util::sleep_until_ns(t0 + i * 250_000_000);
        series.push(stat(&cg, "lags_credit_mcpu")?);
    }
    let end = *series.last().expect("8 samples");
    let peak = series.iter().copied().max().unwrap_or(0);
    w.kill();
    util::sleep_ms(2_500);
    let decayed = stat(&cg, "lags_credit_mcpu")?;
    ctx.diag(format!(
        "lags_credit_mcpu every 250ms while spinning: {series:?}; peak {peak}; 2.5s after stopping: {decayed}"
    ));
    ctx.check(end >= 600, || {
        format!(
            "lags_credit_mcpu after 2s of spinning: expected >= 600 (~865 for tau=1s), got {end}"
        )
    });
    ctx.check(decayed * 100 <= peak * 35, || {
        format!(
            "lags_credit_mcpu 2.5s after stopping: expected <= 35% of peak {peak} = {}, got {decayed}",
            peak * 35 / 100
        )
    });
    Ok(())
}

/// What one phase of `preempt_count_only_lags_decisions` saw.
struct CountPhase {
    /// The light group's `lags_wakeup_preempts` and `lags_picks`.
    counted: u64,
    picks: u64,
    /// The light probe's wake-ups that ran within `IMMEDIATE_NS` (all of them, none discarded).
    immediate: u64,
}

/// A wake-up that runs this soon preempted the spinner; one that waited for the spinner's
/// slice to end takes 0.5-0.8 ms under TCG (base_slice 0.75 ms, HZ 1000).
const IMMEDIATE_NS: u64 = 300_000;
/// Wake-ups of the counting probe.
const COUNT_WAKEUPS: usize = SAMPLES + DISCARD;

/// The light probe of `preempt_count_only_lags_decisions`: like `light_probe`, but it keeps
/// every sample, since every wake-up can be counted.
fn counting_probe(io: &mut WorkerIo) -> i32 {
    let mut samples = Vec::with_capacity(COUNT_WAKEUPS);
    let mut target = util::now_ns() + PERIOD_NS;
    for _ in 0..COUNT_WAKEUPS {
        util::sleep_until_ns(target);
        let now = util::now_ns();
        samples.push(now.saturating_sub(target));
        util::spin_until_ns(now + LIGHT_RUN_NS);
        target += PERIOD_NS;
    }
    io.send(&util::encode_u64s(&samples));
    0
}

fn preempt_count_phase(env: &Env, label: &str, sysctl: &str) -> Result<CountPhase, Stop> {
    set_sysctl(sysctl)?;
    let heavy_cg = group(env, &format!("{label}-heavy"), true)?;
    let light_cg = group(env, &format!("{label}-light"), true)?;
    let mut heavy_w = start(env, &heavy_cg, heavy)?;
    util::sleep_ms(SETTLE_MS);
    let mut light = start(env, &light_cg, counting_probe)?;
    let raw = light.finish(LIGHT_TIMEOUT).or_fail("light worker")?;
    let counted = stat(&light_cg, "lags_wakeup_preempts")?;
    let picks = stat(&light_cg, "lags_picks")?;
    heavy_gap(&mut heavy_w)?;
    let samples = latency_samples(&raw, COUNT_WAKEUPS, label)?;
    Ok(CountPhase {
        counted,
        picks,
        immediate: samples.iter().filter(|&&l| l < IMMEDIATE_NS).count() as u64,
    })
}

// Expect `lags_wakeup_preempts` and `lags_picks` to count the decisions LAGS changed, and
// only those. Two LAGS groups share the CPU: a spinner that ran alone first (its credit gives
// it a long request) and a light probe waking every 4 ms, first with stock EEVDF (global
// switch off), then with LAGS.
//
// 1. NO_DELAY_ZERO (wakers keep their positive lag): with two entities, a waker with positive
//    lag makes the spinner ineligible, and stock EEVDF preempts an ineligible current entity
//    and picks the waker as LAGS does; a waker with negative lag preempts nobody. LAGS
//    changes no decision, so both counts stay within the tolerance (kernel threads briefly
//    make a third entity; a waker with exactly zero lag).
// 2. Default features: DELAY_ZERO clips a waker's lag to 0, so the spinner stays eligible
//    and stock EEVDF lets it finish its slice; LAGS's longer request for the spinner lets the
//    waker preempt at once. Those wake-ups are LAGS's doing and must be counted. The extra
//    immediate wake-ups over stock's estimate them only roughly: a wake-up that lands just
//    before a slice ends runs soon without preempting, and LAGS changes when the waker
//    sleeps, hence how often it wakes with positive lag, whose preemptions stock makes too
//    (measured: 59-116 counted against 77-93 extra). So at least a third must be counted.
// 3. With schedstats off, `lags_picks` is not counted (it costs a second pick).
fn preempt_count_only_lags_decisions(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let _schedstats =
        Restore::set(SCHEDSTATS, "1").or_fail(&format!("writing 1 to {SCHEDSTATS}"))?;
    let tolerance = COUNT_WAKEUPS as u64 / 20;

    let zero = util::SchedFeature::set("DELAY_ZERO", false).or_fail("NO_DELAY_ZERO")?;
    let stock = preempt_count_phase(&env, "pk-stock", "0")?;
    let lags = preempt_count_phase(&env, "pk-lags", "1")?;
    drop(zero);
    ctx.diag(format!(
        "NO_DELAY_ZERO: {COUNT_WAKEUPS} light wake-ups, immediate (< {}): stock {}, LAGS {}; \
         light lags_wakeup_preempts {}, lags_picks {} (tolerance {tolerance})",
        util::us(IMMEDIATE_NS),
        stock.immediate,
        lags.immediate,
        lags.counted,
        lags.picks
    ));
    for (what, n) in [
        ("lags_wakeup_preempts", lags.counted),
        ("lags_picks", lags.picks),
    ] {
        ctx.check(n <= tolerance, || {
            format!(
                "light {what} with NO_DELAY_ZERO: expected <= {tolerance} (stock EEVDF makes \
                 the same decisions), got {n}"
            )
        });
    }

    let stock = preempt_count_phase(&env, "pz-stock", "0")?;
    let lags = preempt_count_phase(&env, "pz-lags", "1")?;
    let extra = lags.immediate.saturating_sub(stock.immediate);
    ctx.diag(format!(
        "DELAY_ZERO: immediate wake-ups: stock {}, LAGS {} ({extra} extra); light \
         lags_wakeup_preempts {}, lags_picks {}",
        stock.immediate, lags.immediate, lags.counted, lags.picks
    ));
    ctx.check(lags.counted * 3 >= extra, || {
        format!(
            "light lags_wakeup_preempts with DELAY_ZERO: expected >= {} (a third of the {extra} \
             more wake-ups than with stock EEVDF that ran at once), got {}",
            extra.div_ceil(3),
            lags.counted
        )
    });

    // 3. The same with schedstats off: lags_picks costs a second pick, so it is not counted;
    //    lags_wakeup_preempts is.
    util::write_file(SCHEDSTATS, "0").or_fail(&format!("writing 0 to {SCHEDSTATS}"))?;
    let off = preempt_count_phase(&env, "ps-lags", "1")?;
    ctx.diag(format!(
        "schedstats off: light lags_wakeup_preempts {}, lags_picks {}",
        off.counted, off.picks
    ));
    ctx.check(off.picks == 0, || {
        format!(
            "light lags_picks with schedstats off: expected 0, got {}",
            off.picks
        )
    });
    ctx.check(off.counted > 0, || {
        "light lags_wakeup_preempts with schedstats off: expected > 0, got 0".to_owned()
    });
    Ok(())
}

/// `setpriority()` calls per run of the renicing probe.
const RENICES_PER_RUN: u64 = 16;

/// The task's times switched in (the third field of `/proc/<pid>/schedstat`).
/// The times the calling process was switched in.
fn switched_in() -> Option<u64> {
    util::SchedStat::of("self").ok().map(|s| s.switched_in)
}

/// The light probe of `picks_count_only_picks`: wakes on the 4 ms grid and, in each 200 us
/// run, changes its own nice value between 0 and 1 `RENICES_PER_RUN` times. Each change
/// takes the running task off the CPU's fair class and puts it back (`set_user_nice()`:
/// dequeue, `put_prev_task()`, enqueue, `set_next_task()`) without a pick. Sends
/// [renices, times switched in].
fn renicing_probe(io: &mut WorkerIo) -> i32 {
    let Some(before) = switched_in() else {
        io.send_kv("schedstat", "/proc/self/schedstat unreadable");
        return 1;
    };
    let mut renices = 0u64;
    let mut target = util::now_ns() + PERIOD_NS;
    for _ in 0..COUNT_WAKEUPS {
        util::sleep_until_ns(target);
        let now = util::now_ns();
        for i in 0..RENICES_PER_RUN {
            // SAFETY: setpriority() only reads its integer arguments; 0 is this process.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, (i % 2) as libc::c_int) } == 0 {
                renices += 1;
            }
        }
        util::spin_until_ns(now + LIGHT_RUN_NS);
        target += PERIOD_NS;
    }
    let Some(after) = switched_in() else {
        io.send_kv("schedstat", "/proc/self/schedstat unreadable");
        return 1;
    };
    io.send(&util::encode_u64s(&[renices, after.saturating_sub(before)]));
    0
}

// Expect `lags_picks` to count picks, not the `put_prev_task()` / `set_next_task()` round
// trips with which the kernel changes a running task's nice value, policy, priority or
// cgroup. A light LAGS group wakes every 4 ms next to a spinning LAGS group that ran alone
// first, as in `preempt_count_only_lags_decisions` (with DELAY_ZERO, about a third of its
// wake-ups run ahead of the spinner because of LAGS), and renices itself 16 times in each
// run. The group has one task, so its entity cannot be picked more often than that task
// is switched in; every round trip in a counted run would count again otherwise.
fn picks_count_only_picks(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let _schedstats =
        Restore::set(SCHEDSTATS, "1").or_fail(&format!("writing 1 to {SCHEDSTATS}"))?;
    set_sysctl("1")?;
    let heavy_cg = group(&env, "pr-heavy", true)?;
    let light_cg = group(&env, "pr-light", true)?;
    let mut heavy_w = start(&env, &heavy_cg, heavy)?;
    util::sleep_ms(SETTLE_MS);
    let mut light = start(&env, &light_cg, renicing_probe)?;
    let out = util::decode_u64s(&light.finish(LIGHT_TIMEOUT).or_fail("light worker")?);
    heavy_gap(&mut heavy_w)?;
    ensure!(
        out.len() == 2,
        "renicing probe: expected [renices, switched in], got {out:?}"
    );
    let (renices, ins) = (out[0], out[1]);
    let picks = stat(&light_cg, "lags_picks")?;
    ctx.diag(format!(
        "light: {renices} renices, switched in {ins} times, lags_picks {picks}, \
         lags_wakeup_preempts {}",
        stat(&light_cg, "lags_wakeup_preempts")?
    ));
    let expected = COUNT_WAKEUPS as u64 * RENICES_PER_RUN;
    ensure!(
        renices == expected,
        "renicing probe: expected {expected} successful setpriority() calls, got {renices}"
    );
    ctx.check(picks <= ins, || {
        format!(
            "light lags_picks: expected <= {ins} (the times its only task was switched in), \
             got {picks}"
        )
    });
    Ok(())
}

/// How long the real-time worker of `wait_ended_by_class_change_counts` holds the CPU.
const RT_SPIN_NS: u64 = 200_000_000;

/// Sets itself SCHED_FIFO, spins `RT_SPIN_NS`, sets itself back to SCHED_OTHER and spins
/// another 10 ms in the fair class. Sends [status], 0 when every policy change succeeded.
fn rt_then_fair(io: &mut WorkerIo) -> i32 {
    if let Err(e) = util::set_fifo(1) {
        io.send_kv("sched_setscheduler(SCHED_FIFO)", e);
        return 1;
    }
    util::spin_until_ns(util::now_ns() + RT_SPIN_NS);
    if let Err(e) = util::set_other() {
        io.send_kv("sched_setscheduler(SCHED_OTHER)", e);
        return 1;
    }
    util::spin_until_ns(util::now_ns() + 10_000_000);
    io.send(&util::encode_u64s(&[0]));
    0
}

// Expect a LAGS group's wait to be recorded when it ends in a `set_next_task()` that is not
// a pick. Group G holds a spinning fair task A. Its second task B turns itself SCHED_FIFO:
// the fair class stops running, and G's entity waits in the root runqueue, A queued in it.
// After 200 ms B turns itself back to SCHED_OTHER, and the kernel makes the running B the
// fair class's current task with `set_next_task(first == false)`, which takes G's entity
// off the queue to run: that ends G's 200 ms wait. G's lags_wait_max_us must show it, and
// lags_starved_picks must count it (the wait is longer than the 50 ms threshold). A's own
// longest gap shows that the fair class did not run meanwhile (6.12's deferred fair
// server could otherwise run it), which the check relies on.
fn wait_ended_by_class_change_counts(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    set_sysctl("1")?;
    let g = group(&env, "rt-wait", true)?;
    let mut a = start(&env, &g, heavy)?;
    util::sleep_ms(300);
    let before_us = stat(&g, "lags_wait_max_us")?;
    let starved_before = stat(&g, "lags_starved_picks")?;
    let mut b = start(&env, &g, rt_then_fair)?;
    let out = util::decode_u64s(&b.finish(WORKER_TIMEOUT).or_fail("real-time worker")?);
    ensure!(
        out == [0],
        "real-time worker: expected [0] (policy changes succeeded), got {out:?}"
    );
    let wait_us = stat(&g, "lags_wait_max_us")?;
    let starved = stat(&g, "lags_starved_picks")?;
    let a_gap = heavy_gap(&mut a)?;
    ctx.diag(format!(
        "A's longest gap {}, G's lags_wait_max_us {before_us} -> {wait_us}, \
         lags_starved_picks {starved_before} -> {starved}",
        util::ms(a_gap)
    ));
    let floor_ns = RT_SPIN_NS * 3 / 4;
    ensure!(
        a_gap >= floor_ns,
        "A's longest gap: expected >= {} (B's SCHED_FIFO spin holding the CPU), got {}",
        util::ms(floor_ns),
        util::ms(a_gap)
    );
    ctx.check(wait_us * 1_000 >= floor_ns, || {
        format!(
            "G's lags_wait_max_us: expected >= {} (the wait behind B's SCHED_FIFO spin), got {wait_us}",
            floor_ns / 1_000
        )
    });
    ctx.check(starved > starved_before, || {
        format!(
            "G's lags_starved_picks: expected more than {starved_before} after a {} wait, got {starved}",
            util::ms(floor_ns)
        )
    });
    Ok(())
}
