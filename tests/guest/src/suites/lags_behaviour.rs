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
const SAMPLES: usize = 300;
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

/// A light flooder: busy 1 ms, sleep 1 ms, until told to stop.
fn flooder(io: &mut WorkerIo) -> i32 {
    while !io.stop_requested() {
        util::spin_until_ns(util::now_ns() + 1_000_000);
        util::sleep_ms(1);
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
        heavy_usage_us: usage0
            .iter()
            .zip(&usage1)
            .map(|(a, b)| b.saturating_sub(*a))
            .collect(),
    })
}

// Expect a light group's wake-up latency p99 to halve with LAGS among 4 CPU hogs, and to
// go back up when the global switch is off.
fn light_latency_ab(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let a = run_phase(&env, "a", false, "1")?;
    ctx.diag(format!("phase A (cpu.lags=0, sched_lags=1): {}", a.lat));
    let b = run_phase(&env, "b", true, "1")?;
    ctx.diag(format!("phase B (cpu.lags=1, sched_lags=1): {}", b.lat));
    ctx.stash.put(PhaseB {
        phase: b.clone(),
        bound_ns: env.bound_ns(),
        bound_text: env.bound_text(),
    });
    let c = run_phase(&env, "c", true, "0")?;
    ctx.diag(format!("phase C (cpu.lags=1, sched_lags=0): {}", c.lat));
    ctx.check(b.lat.p99 * 2 <= a.lat.p99, || {
        format!(
            "p99 with LAGS: expected <= p99(A)/2 = {}, got p99(B) = {}",
            util::us(a.lat.p99 / 2),
            util::us(b.lat.p99)
        )
    });
    ctx.check(c.lat.p99 * 2 >= b.lat.p99 * 3, || {
        format!(
            "p99 with sched_lags=0: expected >= 1.5 x p99(B) = {}, got p99(C) = {}",
            util::us(b.lat.p99 * 3 / 2),
            util::us(c.lat.p99)
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
fn flood_run(env: &Env, label: &str) -> Result<(u64, String, String), Stop> {
    let flood_cgs = (0..FLOODERS)
        .map(|i| group(env, &format!("{label}-flood{i}"), true))
        .collect::<Result<Vec<_>, _>>()?;
    let heavy_cg = group(env, &format!("{label}-heavy"), true)?;
    let mut heavy_w = start(env, &heavy_cg, heavy)?;
    let mut floods = flood_cgs
        .iter()
        .map(|cg| start(env, cg, flooder))
        .collect::<Result<Vec<_>, _>>()?;
    util::sleep_ms(FLOOD_MS);
    let gap = heavy_gap(&mut heavy_w)?;
    let stat_text = heavy_cg.read("cpu.stat").or_fail("heavy cpu.stat")?;
    let field = |k: &str| {
        util::keyed_value(&stat_text, k)
            .unwrap_or("(missing)")
            .to_owned()
    };
    let starved = field("lags_starved_picks");
    let wait_max = field("lags_wait_max_us");
    for f in &mut floods {
        f.finish(WORKER_TIMEOUT).or_fail("flooder")?;
    }
    Ok((gap, starved, wait_max))
}

// Expect the starvation fall-back to bound a heavy group's wait under a flood of light
// LAGS groups (and show that raising starve_ns is what lets the wait grow).
fn starvation_bound(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    set_sysctl("1")?;
    let (gap, starved, wait_max) = flood_run(&env, "s1")?;
    ctx.diag(format!(
        "starve_ns={}: heavy max gap {}, lags_starved_picks={starved}, lags_wait_max_us={wait_max}",
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

    let path = Path::new(DEBUGFS_DIR).join("starve_ns");
    let guard = Restore::save(&path).or_fail("starve_ns")?;
    match util::write_file(&path, RAISED_STARVE_NS.to_string()) {
        Ok(()) => {
            let (gap2, starved2, wait2) = flood_run(&env, "s2")?;
            ctx.diag(format!(
                "starve_ns={} (for comparison, not asserted): heavy max gap {}, lags_starved_picks={starved2}, lags_wait_max_us={wait2}",
                util::ms(RAISED_STARVE_NS),
                util::ms(gap2)
            ));
        }
        Err(e) => ctx.diag(format!(
            "could not raise starve_ns to {RAISED_STARVE_NS}: {}; comparison run skipped",
            util::describe_err(&e)
        )),
    }
    drop(guard);
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
