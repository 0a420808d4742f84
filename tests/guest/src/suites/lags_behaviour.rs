// SPDX-License-Identifier: GPL-2.0
//! `lags_behaviour`: A/B measurements in one boot, everything pinned to one CPU.
//!
//! Groups live under `/sys/fs/cgroup/lagsab`. Workers are forked processes, one per group,
//! pinned to the first online CPU; the runner moves itself to another CPU (if there is one)
//! and mostly sleeps. Each phase uses fresh groups and fresh workers so phases are
//! independent. The sysctl and debugfs knobs are restored afterwards.

use std::path::Path;
use std::time::Duration;

use super::lags_iface::{need_lags, DEBUGFS_DIR, STARVE_NS, SYSCTL};
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
            name: "starvation_bound",
            run: starvation_bound,
        },
        Test {
            name: "credit_rises_and_decays",
            run: credit_rises_and_decays,
        },
    ],
};

/// Heavy (always runnable) groups in the latency test.
const HEAVIES: usize = 4;
/// The light probe wakes every 4 ms, runs 200 us, and keeps 300 samples after 20.
const PERIOD_NS: u64 = 4_000_000;
const LIGHT_RUN_NS: u64 = 200_000;
const SAMPLES: usize = 250;
/// Interleaved rounds of the A/B/C latency experiment.
const ROUNDS: usize = 3;
const DISCARD: usize = 20;
/// Heavies run alone this long before the light probe starts (PELT/credit settle).
const SETTLE_MS: u64 = 500;
/// Heavies ignore gaps during their first 200 ms.
const GAP_WARMUP_NS: u64 = 200_000_000;
/// Light flooders in the starvation test: busy 1 ms, sleep 1 ms.
const FLOODERS: usize = 6;
const FLOOD_MS: u64 = 3_000;
/// starve_ns for the second starvation run.
const RAISED_STARVE_NS: u64 = 2_000_000_000;
/// Credit time constant for the starvation test (the maximum allowed): credits move slowly.
const SLOW_CREDIT_PERIOD_NS: u64 = 10_000_000_000;
/// How long the heavy group spins alone before the flood starts.
const PREHEAT_MS: u64 = 1_500;
const DEFAULT_BASE_SLICE_NS: u64 = 3_000_000;
/// Timeouts for collecting worker output (generous: TCG).
const LIGHT_TIMEOUT: Duration = Duration::from_secs(60);
const WORKER_TIMEOUT: Duration = Duration::from_secs(20);

/// The set-up every test here shares.
struct Env {
    /// The CPU every worker runs on.
    cpu: usize,
    starve_ns: u64,
    base_slice_ns: u64,
    // Dropped in this order: the groups, then the sysctl, then the runner's affinity.
    parent: Cgroup,
    _sysctl: Restore,
    _pin: Option<AffinityGuard>,
}

impl Env {
    /// Allowed slack on top of starve_ns for the longest time a heavy may wait.
    fn slack_ns(&self) -> u64 {
        50_000_000 + 4 * self.base_slice_ns
    }

    fn bound_ns(&self) -> u64 {
        self.starve_ns + self.slack_ns()
    }

    fn bound_text(&self) -> String {
        format!(
            "starve_ns {} + slack {} (50ms + 4 x base_slice {}) = {}",
            util::ms(self.starve_ns),
            util::ms(self.slack_ns()),
            util::ms(self.base_slice_ns),
            util::ms(self.bound_ns())
        )
    }
}

fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    util::read_trimmed(path).ok()?.parse().ok()
}

fn setup(ctx: &mut Ctx) -> Result<Env, Stop> {
    need_lags(ctx)?;
    ensure!(util::exists(SYSCTL), "{SYSCTL}: expected to exist, missing");
    let online = util::online_cpus().or_fail("online CPUs")?;
    let allowed = util::get_affinity(0).or_fail("sched_getaffinity")?;
    let usable: Vec<usize> = online
        .iter()
        .copied()
        .filter(|c| allowed.contains(c))
        .collect();
    let Some(&cpu) = usable.first() else {
        return fail(format!(
            "no usable CPU (online {online:?}, allowed {allowed:?})"
        ));
    };
    // Keep the runner off the test CPU so its own wake-ups do not disturb the measurement.
    let others: Vec<usize> = usable.iter().copied().filter(|&c| c != cpu).collect();
    let pin = if others.is_empty() {
        None
    } else {
        Some(AffinityGuard::pin_self(&others).or_fail("moving the runner off the test CPU")?)
    };
    let starve_ns = match read_u64(Path::new(DEBUGFS_DIR).join("starve_ns")) {
        Some(v) => v,
        None => {
            ctx.diag(format!(
                "{DEBUGFS_DIR}/starve_ns unreadable; assuming {STARVE_NS}"
            ));
            STARVE_NS
        }
    };
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
        starve_ns,
        base_slice_ns,
        parent,
        _sysctl: sysctl,
        _pin: pin,
    };
    ctx.diag(format!(
        "workers on CPU {cpu}, runner on {others:?}; heavy wait bound: {}",
        env.bound_text()
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
        // the pre-heated heavy group, so only the starvation bound can let the heavy run.
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

fn run_phase(env: &Env, label: &str, lags: bool, sysctl: &str) -> Result<Phase, Stop> {
    set_sysctl(sysctl)?;
    let heavy_cgs = (0..HEAVIES)
        .map(|i| group(env, &format!("{label}-heavy{i}"), lags))
        .collect::<Result<Vec<_>, _>>()?;
    let light_cg = group(env, &format!("{label}-light"), lags)?;
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
    let samples = util::decode_u64s(&raw);
    ensure!(
        samples.len() == SAMPLES,
        "phase {label}: expected {SAMPLES} latency samples, got {}",
        samples.len()
    );
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

// Expect a light group's wake-up latency p99 to halve with LAGS among 4 CPU hogs, and to
// go back up when the global switch is off. The phases are interleaved over ROUNDS rounds
// (A B C A B C ...) and each phase is judged by the median of its per-round p99, so one
// round disturbed by the host (under TCG a host preemption is a guest latency spike) cannot
// decide the outcome.
fn light_latency_ab(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let mut p99 = [Vec::new(), Vec::new(), Vec::new()];
    let phases = [
        ("A", "cpu.lags=0, sched_lags=1", false, "1"),
        ("B", "cpu.lags=1, sched_lags=1", true, "1"),
        ("C", "cpu.lags=1, sched_lags=0", true, "0"),
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
            p99[i].push(ph.lat.p99);
            if *name == "B" && round == 1 {
                ctx.stash.put(PhaseB {
                    phase: ph.clone(),
                    bound_ns: env.bound_ns(),
                    bound_text: env.bound_text(),
                });
            }
        }
    }
    let [a, b, c] = p99.map(|mut v| {
        v.sort_unstable();
        v[v.len() / 2]
    });
    ctx.diag(format!(
        "median p99 over {ROUNDS} rounds: A {} / B {} / C {} (A/B = {:.1}x)",
        util::us(a),
        util::us(b),
        util::us(c),
        a as f64 / b.max(1) as f64
    ));
    ctx.check(b * 2 <= a, || {
        format!(
            "p99 with LAGS: expected <= p99(A)/2 = {}, got p99(B) = {}",
            util::us(a / 2),
            util::us(b)
        )
    });
    ctx.check(c * 2 >= b * 3, || {
        format!(
            "p99 with sched_lags=0: expected >= 1.5 x p99(B) = {}, got p99(C) = {}",
            util::us(b * 3 / 2),
            util::us(c)
        )
    });
    Ok(())
}

// Expect the heavy groups to keep running in phase B, none waiting longer than the
// starvation bound.
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

/// One starvation run: 6 flooders + 1 heavy, all LAGS groups. Returns the heavy's max gap
/// and its lags_starved_picks / lags_wait_max_us.
fn flood_run(env: &Env, label: &str) -> Result<(u64, u64, String), Stop> {
    let flood_cgs = (0..FLOODERS)
        .map(|i| group(env, &format!("{label}-flood{i}"), true))
        .collect::<Result<Vec<_>, _>>()?;
    let heavy_cg = group(env, &format!("{label}-heavy"), true)?;
    let mut heavy_w = start(env, &heavy_cg, heavy)?;
    // Let the heavy group build up credit alone first, so that it is heavier than every
    // flooder for the whole flood: with the slow credit set by the caller, the credit order
    // alone would then keep it off the CPU, and only the starvation bound lets it run.
    util::sleep_ms(PREHEAT_MS);
    let mut floods = flood_cgs
        .iter()
        .map(|cg| start(env, cg, flooder))
        .collect::<Result<Vec<_>, _>>()?;
    util::sleep_ms(FLOOD_MS);
    let gap = heavy_gap(&mut heavy_w)?;
    let stat_text = heavy_cg.read("cpu.stat").or_fail("heavy cpu.stat")?;
    let starved = util::keyed_value(&stat_text, "lags_starved_picks")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let field = |t: &str, k: &str| util::keyed_value(t, k).unwrap_or("?").to_owned();
    let flood_credits: Vec<String> = flood_cgs
        .iter()
        .map(|cg| field(&cg.read("cpu.stat").unwrap_or_default(), "lags_credit_mcpu"))
        .collect();
    let wait_max = format!(
        "{}, heavy lags_picks={} credit={} mcpu, flooder credits {:?} mcpu",
        field(&stat_text, "lags_wait_max_us"),
        field(&stat_text, "lags_picks"),
        field(&stat_text, "lags_credit_mcpu"),
        flood_credits
    );
    for f in &mut floods {
        f.finish(WORKER_TIMEOUT).or_fail("flooder")?;
    }
    Ok((gap, starved, wait_max))
}

// Expect the starvation fall-back, and nothing else, to bound a heavy group's wait under a
// flood of lighter LAGS groups. The credit time constant is raised to 10 s so credits move
// slowly and a pre-heated heavy group stays the heaviest for the whole flood: with
// starve_ns = 50 ms it must still run within the bound (and lags_starved_picks must count
// it), with starve_ns = 2 s it must wait far longer.
fn starvation_bound(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    set_sysctl("1")?;
    let period = Path::new(DEBUGFS_DIR).join("credit_period_ns");
    let period_guard = Restore::save(&period).or_fail("credit_period_ns")?;
    util::write_file(&period, SLOW_CREDIT_PERIOD_NS.to_string()).or_fail("credit_period_ns")?;
    let (gap, starved, wait_max) = flood_run(&env, "s1")?;
    ctx.diag(format!(
        "credit_period_ns={SLOW_CREDIT_PERIOD_NS}, starve_ns={}: heavy max gap {}, lags_starved_picks={starved}, lags_wait_max_us={wait_max}",
        util::ms(env.starve_ns),
        util::ms(gap)
    ));
    ctx.check(gap <= env.bound_ns(), || {
        format!(
            "heavy longest wait under the flood: expected <= {}, got {}",
            env.bound_text(),
            util::ms(gap)
        )
    });
    ctx.check(starved > 0, || {
        "lags_starved_picks of the heavy group: expected > 0 (the bound must be what lets it run), got 0".to_string()
    });

    let path = Path::new(DEBUGFS_DIR).join("starve_ns");
    let guard = Restore::save(&path).or_fail("starve_ns")?;
    util::write_file(&path, RAISED_STARVE_NS.to_string()).or_fail("raising starve_ns")?;
    let (gap2, starved2, wait2) = flood_run(&env, "s2")?;
    ctx.diag(format!(
        "starve_ns={}: heavy max gap {}, lags_starved_picks={starved2}, lags_wait_max_us={wait2}",
        util::ms(RAISED_STARVE_NS),
        util::ms(gap2)
    ));
    ctx.check(gap2 > 4 * env.bound_ns(), || {
        format!(
            "with starve_ns raised the heavy group should wait far longer: expected > {}, got {}",
            util::ms(4 * env.bound_ns()),
            util::ms(gap2)
        )
    });
    drop(guard);
    drop(period_guard);
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
