// SPDX-License-Identifier: GPL-2.0
//! `lags_guarantees`: what a cgroup is promised without LAGS stays true with it.
//!
//! Every test compares LAGS against stock EEVDF *in the same boot*, on the same CPU, with
//! fresh groups under `/sys/fs/cgroup/lagsg`: CPU shares follow `cpu.weight`, a `cpu.idle`
//! group is never preferred, siblings that did not opt in keep their share, switching LAGS
//! off repays no debt, the credit of one group does not depend on another group's writes,
//! and `cpu.lags` checks the credentials of the file's opener.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use super::lags_iface::{PinnedEnv, DEBUGFS_DIR, SYSCTL};
use super::stops::{self, LAG_OVERFLOWS, STALL_NS};
use super::{ensure, fail, skip, Ctx, OrFail, Stop, Suite, Test, TestResult};
use crate::util::{self, Cgroup, Restore, Worker, WorkerIo, NOBODY};

pub const SUITE: Suite = Suite {
    name: "lags_guarantees",
    tests: &[
        Test {
            name: "weights_respected",
            run: weights_respected,
        },
        Test {
            name: "idle_never_preferred",
            run: idle_never_preferred,
        },
        Test {
            name: "cpu_max_respected",
            run: cpu_max_respected,
        },
        Test {
            name: "non_lags_sibling_keeps_share",
            run: non_lags_sibling_keeps_share,
        },
        Test {
            name: "generated_scenarios",
            run: generated_scenarios,
        },
        Test {
            name: "switch_off_repays_nothing",
            run: switch_off_repays_nothing,
        },
        Test {
            name: "credit_independent_of_other_groups",
            run: credit_independent_of_other_groups,
        },
        Test {
            name: "lag_bounded_extreme_weights",
            run: lag_bounded_extreme_weights,
        },
        Test {
            name: "delayed_entities_leave_as_in_stock",
            run: delayed_entities_leave_as_in_stock,
        },
        Test {
            name: "cpu_lags_checks_opener",
            run: cpu_lags_checks_opener,
        },
        Test {
            name: "schedule_calls_not_inflated",
            run: schedule_calls_not_inflated,
        },
    ],
};

/// Length of the extreme-weight lag test.
const LAG_TEST_MS: u64 = 60_000;

/// Spinners run alone this long before a measurement window opens.
const SETTLE_MS: u64 = 1_000;
/// Length of a share measurement window.
const WINDOW_MS: u64 = 3_000;
/// Allowed relative deviation of the LAGS weight ratio from the stock ratio.
const WEIGHT_TOLERANCE: f64 = 0.15;
/// A sibling that did not opt in keeps at least this fraction of its stock share.
const NON_LAGS_FLOOR: f64 = 0.90;
/// schedule() calls with LAGS may exceed stock's by at most this fraction.
const SCHED_CALLS_TOLERANCE: f64 = 0.10;
const WORKER_TIMEOUT: Duration = Duration::from_secs(30);

type Env = PinnedEnv;

fn setup(ctx: &mut Ctx) -> Result<Env, Stop> {
    PinnedEnv::setup(ctx, "lagsg")
}

/// What a group's worker does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Load {
    /// Always runnable.
    Spin,
    /// A lighter waker: 1 ms of CPU, then 1 ms asleep.
    Flood,
    /// A waker with its own duty cycle: this many µs of CPU, then this many µs asleep.
    Duty(u64, u64),
}

/// One sibling group of a scenario.
#[derive(Clone, Debug)]
struct Member {
    name: &'static str,
    weight: u32,
    idle: bool,
    lags: bool,
    load: Load,
    /// `cpu.max` (quota and period, µs), if the group is capped.
    max: Option<(u64, u64)>,
}

impl Member {
    fn new(name: &'static str, weight: u32, lags: bool) -> Member {
        Member {
            name,
            weight,
            idle: false,
            lags,
            load: Load::Spin,
            max: None,
        }
    }
}

fn spinner(io: &mut WorkerIo) -> i32 {
    while !io.stop_requested() {
        util::spin_cpu_ns(1_000_000);
    }
    0
}

fn duty_cycle(run_us: u64, sleep_us: u64, io: &mut WorkerIo) -> i32 {
    while !io.stop_requested() {
        util::spin_cpu_ns(run_us * 1000);
        util::sleep_until_ns(util::now_ns() + sleep_us * 1000);
    }
    0
}

fn flooder(io: &mut WorkerIo) -> i32 {
    while !io.stop_requested() {
        util::spin_cpu_ns(1_000_000);
        util::sleep_ms(1);
    }
    0
}

/// Running groups and their workers (workers are declared last, so they die first).
struct Scenario {
    groups: Vec<Cgroup>,
    workers: Vec<Worker>,
}

impl Scenario {
    fn start(env: &Env, label: &str, members: &[Member]) -> Result<Scenario, Stop> {
        let mut groups = Vec::new();
        for m in members {
            let name = format!("{label}-{}", m.name);
            let cg = env
                .parent
                .child(&name)
                .or_fail(&format!("creating lagsg/{name}"))?;
            cg.write("cpu.weight", m.weight.to_string())
                .or_fail(&format!("cpu.weight of {name}"))?;
            if m.idle {
                cg.write("cpu.idle", "1")
                    .or_fail(&format!("cpu.idle of {name}"))?;
            }
            if let Some((quota, period)) = m.max {
                cg.write("cpu.max", format!("{quota} {period}"))
                    .or_fail(&format!("cpu.max of {name}"))?;
            }
            cg.write("cpu.lags", if m.lags { "1" } else { "0" })
                .or_fail(&format!("cpu.lags of {name}"))?;
            groups.push(cg);
        }
        let mut workers = Vec::new();
        for (m, cg) in members.iter().zip(&groups) {
            let mut w = match m.load {
                Load::Spin => Worker::spawn(spinner),
                Load::Flood => Worker::spawn(flooder),
                Load::Duty(run_us, sleep_us) => {
                    Worker::spawn(move |io| duty_cycle(run_us, sleep_us, io))
                }
            }
            .or_fail("fork")?;
            w.start_in(cg, Some(env.cpu)).or_fail("starting worker")?;
            workers.push(w);
        }
        Ok(Scenario { groups, workers })
    }

    fn usage_us(&self) -> Result<Vec<u64>, Stop> {
        self.groups
            .iter()
            .map(|cg| cg.cpu_stat("usage_usec").or_fail("cpu.stat"))
            .collect()
    }

    /// CPU time (µs) each group received during the next `ms` milliseconds.
    fn window(&self, ms: u64) -> Result<Vec<u64>, Stop> {
        let a = self.usage_us()?;
        util::sleep_ms(ms);
        let b = self.usage_us()?;
        Ok(a.iter()
            .zip(&b)
            .map(|(x, y)| y.saturating_sub(*x))
            .collect())
    }

    fn stop(mut self) -> Result<(), Stop> {
        for w in &mut self.workers {
            w.stop();
        }
        for w in &mut self.workers {
            w.wait(WORKER_TIMEOUT).or_fail("worker")?;
        }
        Ok(())
    }
}

/// Shares each member gets over one window after the settle time.
fn measure(env: &Env, label: &str, members: &[Member]) -> Result<Vec<u64>, Stop> {
    let s = Scenario::start(env, label, members)?;
    util::sleep_ms(SETTLE_MS);
    let usage = s.window(WINDOW_MS)?;
    s.stop()?;
    Ok(usage)
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / (b.max(1)) as f64
}

fn share(of: u64, all: &[u64]) -> f64 {
    of as f64 / (all.iter().sum::<u64>().max(1)) as f64
}

// Expect two busy LAGS siblings with cpu.weight 1000 : 100 to split the CPU like stock
// EEVDF does (about 10 : 1), within 15% of the stock ratio measured in the same boot.
fn weights_respected(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let mut ratios = Vec::new();
    for lags in [false, true] {
        let label = if lags { "lags" } else { "stock" };
        let u = measure(
            &env,
            &format!("w-{label}"),
            &[
                Member::new("w1000", 1000, lags),
                Member::new("w100", 100, lags),
            ],
        )?;
        ensure!(
            u[1] > 0,
            "{label}: the weight-100 group got no CPU time at all ({u:?} us)"
        );
        let r = ratio(u[0], u[1]);
        ctx.diag(format!("{label}: usage {u:?} us, ratio {r:.2}"));
        ratios.push(r);
    }
    let (stock, lags) = (ratios[0], ratios[1]);
    let within = (lags / stock - 1.0).abs() <= WEIGHT_TOLERANCE;
    ensure!(
        within,
        "weight 1000 : 100 with cpu.lags=1: CPU ratio {lags:.2}, stock {stock:.2}; expected \
         within {:.0}% of stock",
        WEIGHT_TOLERANCE * 100.0
    );
    Ok(())
}

// Expect a busy cpu.idle group to get no more CPU next to a busy normal sibling when both
// have cpu.lags=1 than it gets under stock EEVDF (about 0.3%), plus two points of noise.
fn idle_never_preferred(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let mut shares = Vec::new();
    for lags in [false, true] {
        let label = if lags { "lags" } else { "stock" };
        let idle = Member {
            idle: true,
            ..Member::new("idle", 100, lags)
        };
        let u = measure(
            &env,
            &format!("i-{label}"),
            &[Member::new("normal", 100, lags), idle],
        )?;
        let s = share(u[1], &u);
        ctx.diag(format!(
            "{label}: usage {u:?} us, idle share {:.2}%",
            s * 100.0
        ));
        shares.push(s);
    }
    let within = shares[1] <= shares[0] + 0.02;
    ensure!(
        within,
        "cpu.idle group with cpu.lags=1 got {:.1}% of the CPU next to a busy normal sibling; \
         stock gives it {:.1}%",
        shares[1] * 100.0,
        shares[0] * 100.0
    );
    Ok(())
}

/// `cpu.max` of the capped group in `cpu_max_respected`: 20% of a 200 ms period.
const CAP: (u64, u64) = (40_000, 200_000);

// Expect `cpu.max` (Kubernetes CPU limits) to cap a busy LAGS group as it caps a stock one:
// a spinning group limited to 20% next to an unlimited spinning sibling gets at most 20% plus
// one point, with cpu.lags=1 as without, and the sibling takes the rest. While throttled the
// capped group is off the runqueue, not waiting: its lags_wait_max_us must stay below the
// 160 ms it spends throttled in every period (the bound is 100 ms, the TCG slack used
// elsewhere), and lags_starved_picks must not count a throttled period as a starved wait.
fn cpu_max_respected(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let cap = CAP.0 as f64 / CAP.1 as f64;
    let mut shares = Vec::new();
    for lags in [false, true] {
        let label = if lags { "lags" } else { "stock" };
        let capped = Member {
            max: Some(CAP),
            ..Member::new("capped", 100, lags)
        };
        let s = Scenario::start(
            &env,
            &format!("m-{label}"),
            &[capped, Member::new("free", 100, lags)],
        )?;
        util::sleep_ms(SETTLE_MS);
        let u = s.window(WINDOW_MS)?;
        let stat = if lags {
            let g = &s.groups[0];
            Some((
                g.cpu_stat("lags_wait_max_us").or_fail("cpu.stat")?,
                g.cpu_stat("lags_starved_picks").or_fail("cpu.stat")?,
                g.cpu_stat("nr_throttled").or_fail("cpu.stat")?,
            ))
        } else {
            None
        };
        s.stop()?;
        let sh = share(u[0], &u);
        ctx.diag(format!(
            "{label}: usage {u:?} us, capped share {:.1}%{}",
            sh * 100.0,
            stat.map_or(String::new(), |(w, sp, t)| format!(
                ", capped lags_wait_max_us {w}, lags_starved_picks {sp}, nr_throttled {t}"
            ))
        ));
        let under_cap = sh <= cap + 0.01;
        ensure!(
            under_cap,
            "{label}: the group capped at {:.0}% (cpu.max {} {}) got {:.1}% of the CPU",
            cap * 100.0,
            CAP.0,
            CAP.1,
            sh * 100.0
        );
        let near_cap = sh >= cap - 0.05;
        ensure!(
            near_cap,
            "{label}: the group capped at {:.0}% got only {:.1}% next to one equal sibling",
            cap * 100.0,
            sh * 100.0
        );
        if let Some((wait_us, starved, throttled)) = stat {
            ensure!(
                throttled > 0,
                "{label}: the capped group was never throttled (nr_throttled 0)"
            );
            ensure!(
                wait_us < 100_000 && starved == 0,
                "{label}: capped group's lags_wait_max_us {wait_us}, lags_starved_picks \
                 {starved}; expected < 100000 and 0: throttled time is not a wait"
            );
        }
        shares.push(sh);
    }
    let within = (shares[1] - shares[0]).abs() <= 0.02;
    ensure!(
        within,
        "capped share with cpu.lags=1 {:.1}%, stock {:.1}%: expected within 2 points",
        shares[1] * 100.0,
        shares[0] * 100.0
    );
    Ok(())
}

// Expect a busy sibling that did not opt in to keep at least 90% of its stock share while
// LAGS siblings (two busy, three lighter wakers) share its runqueue.
fn non_lags_sibling_keeps_share(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let mut got = Vec::new();
    for lags in [false, true] {
        let label = if lags { "lags" } else { "stock" };
        let flood = |name| Member {
            load: Load::Flood,
            ..Member::new(name, 100, lags)
        };
        let members = [
            Member::new("plain", 100, false),
            Member::new("heavy1", 100, lags),
            Member::new("heavy2", 100, lags),
            flood("light1"),
            flood("light2"),
            flood("light3"),
        ];
        let u = measure(&env, &format!("n-{label}"), &members)?;
        let s = share(u[0], &u);
        ctx.diag(format!(
            "{label}: usage {u:?} us, plain share {:.1}%",
            s * 100.0
        ));
        got.push(s);
    }
    let kept = got[1] >= NON_LAGS_FLOOR * got[0];
    ensure!(
        kept,
        "cpu.lags=0 sibling: {:.1}% of the CPU among LAGS siblings, {:.1}% under stock; \
         expected at least {:.0}% of stock",
        got[1] * 100.0,
        got[0] * 100.0,
        NON_LAGS_FLOOR * 100.0
    );
    Ok(())
}

/// Seeded scenarios of `generated_scenarios`.
const SCENARIOS: u64 = 5;

/// One generated scenario: 2-5 LAGS groups (weights 25-400, spinning or waking with random
/// duty cycles) and 1-2 busy groups without cpu.lags (weights 25-400).
fn scenario(seed: u64) -> Vec<Member> {
    const NAMES: [&str; 7] = ["p0", "p1", "l0", "l1", "l2", "l3", "l4"];
    let mut rng = util::Rng::new(seed);
    let plain = 1 + rng.below(2) as usize;
    let lags = 2 + rng.below(4) as usize;
    let mut members = Vec::new();
    for name in NAMES.iter().take(plain) {
        members.push(Member::new(name, rng.range(25, 401) as u32, false));
    }
    for name in NAMES[2..].iter().take(lags) {
        let load = if rng.below(3) == 0 {
            Load::Spin
        } else {
            Load::Duty(rng.range(100, 3_001), rng.range(200, 8_001))
        };
        members.push(Member {
            load,
            ..Member::new(name, rng.range(25, 401) as u32, true)
        });
    }
    members
}

// Expect, in each of five seeded random scenarios, the busy groups without cpu.lags to keep at
// least 90% of their stock share, and schedule() calls per second over all five scenarios to
// stay within stock + 10%: the same groups run once with every cpu.lags at 0 and once with
// the LAGS groups at 1. (Per scenario the calls are reported, not asserted: scenario 4, with
// five LAGS wakers, measured +7% and +21% in two boots; see the issue-12 notes.)
fn generated_scenarios(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let stats = schedstats_on()?;
    let mut totals = [0.0f64; 2];
    for seed in 0..SCENARIOS {
        let with_lags = scenario(0x5eed_0000 + seed);
        let plain = with_lags.iter().filter(|m| !m.lags).count();
        let mut share = Vec::new();
        let mut rate = Vec::new();
        for lags in [false, true] {
            let members: Vec<Member> = with_lags
                .iter()
                .map(|m| Member {
                    lags: lags && m.lags,
                    ..m.clone()
                })
                .collect();
            let label = format!("g{seed}-{}", if lags { "lags" } else { "stock" });
            let s = Scenario::start(&env, &label, &members)?;
            util::sleep_ms(SETTLE_MS);
            let (calls, usage) = schedule_rate(env.cpu, || s.window(2_000))?;
            s.stop()?;
            share.push(
                usage[..plain].iter().sum::<u64>() as f64 / usage.iter().sum::<u64>().max(1) as f64,
            );
            rate.push(calls);
        }
        ctx.diag(format!(
            "scenario {seed}: {}; plain share {:.1}% stock / {:.1}% LAGS; schedule() calls/s \
             {:.0} / {:.0}",
            with_lags
                .iter()
                .map(|m| format!(
                    "{}{}:w{}:{}",
                    m.name,
                    if m.lags { "*" } else { "" },
                    m.weight,
                    match m.load {
                        Load::Spin => "spin".to_owned(),
                        Load::Flood => "flood".to_owned(),
                        Load::Duty(r, s) => format!("{r}/{s}us"),
                    }
                ))
                .collect::<Vec<_>>()
                .join(" "),
            share[0] * 100.0,
            share[1] * 100.0,
            rate[0],
            rate[1]
        ));
        let kept = share[1] >= NON_LAGS_FLOOR * share[0];
        ctx.check(kept, || {
            format!(
                "scenario {seed}: groups without cpu.lags got {:.1}% with LAGS, {:.1}% stock; \
                 expected at least {:.0}% of stock",
                share[1] * 100.0,
                share[0] * 100.0,
                NON_LAGS_FLOOR * 100.0
            )
        });
        totals[0] += rate[0];
        totals[1] += rate[1];
    }
    drop(stats);
    let calm = totals[1] <= totals[0] * (1.0 + SCHED_CALLS_TOLERANCE);
    ctx.check(calm, || {
        format!(
            "schedule() calls/s summed over the scenarios: {:.0} with LAGS, {:.0} stock; \
             expected at most {:.0}% more",
            totals[1],
            totals[0],
            SCHED_CALLS_TOLERANCE * 100.0
        )
    });
    Ok(())
}

// Expect no repayment when LAGS is switched off (by cpu.lags and by the sysctl): after a
// weight 1000 : 100 pair ran 3 s with LAGS, the weight-100 group keeps getting CPU at once,
// at least half its weight share (1/11) in the first second and some within 100 ms.
fn switch_off_repays_nothing(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    for how in ["cpu.lags", "sysctl"] {
        util::write_file(SYSCTL, "1").or_fail("switching LAGS on")?;
        let s = Scenario::start(
            &env,
            &format!("off-{}", how.replace('.', "_")),
            &[
                Member::new("w1000", 1000, true),
                Member::new("w100", 100, true),
            ],
        )?;
        util::sleep_ms(WINDOW_MS);
        if how == "sysctl" {
            util::write_file(SYSCTL, "0").or_fail("switching LAGS off")?;
        } else {
            for cg in &s.groups {
                cg.write("cpu.lags", "0").or_fail("cpu.lags=0")?;
            }
        }
        let first = s.window(100)?;
        let rest = s.window(900)?;
        s.stop()?;
        util::write_file(SYSCTL, "1").or_fail("switching LAGS back on")?;
        let second: Vec<u64> = first.iter().zip(&rest).map(|(a, b)| a + b).collect();
        ctx.diag(format!(
            "off by {how}: first 100 ms {first:?} us, first second {second:?} us"
        ));
        let floor = 1_000_000 / 11 / 2;
        ctx.check(second[1] >= floor, || {
            format!(
                "off by {how}: the weight-100 group got {} us in the first second; expected \
                 at least {floor} us (half its share)",
                second[1]
            )
        });
        ctx.check(first[1] > 0, || {
            format!("off by {how}: the weight-100 group got no CPU in the first 100 ms")
        });
    }
    Ok(())
}

/// A waker with random busy and sleep lengths (0.1-3 ms each), seeded.
fn random_waker(seed: u64, io: &mut WorkerIo) -> i32 {
    let mut rng = util::Rng::new(seed);
    while !io.stop_requested() {
        util::spin_cpu_ns(rng.range(100_000, 3_000_000));
        util::sleep_until_ns(util::now_ns() + rng.range(100_000, 3_000_000));
    }
    0
}

// Expect every LAGS entity's lag to stay inside EEVDF's bound (debugfs lag_overflows stays 0)
// over 60 s with busy LAGS groups of cpu.weight 1 and 10000, three random wakers, and churn:
// every 200 ms a LAGS group is created, runs a 2 ms task and is removed, and the weight-1
// group's cpu.lags is switched off and on. Afterwards both busy groups still split the CPU
// by weight (the weight-1 group gets at most 1% and the weight-10000 group at least 90%).
// The bound assumes the CPU is there: it allows one tick of overrun. Under TCG on a busy
// host the guest stops for tens of ms at a time and whoever was running is charged for it,
// which no scheduler bounds. A SCHED_FIFO watcher on the test CPU sees such stops as late
// wake-ups; overflows in a 50 ms interval with (or right after) a stop longer than 2 ms
// are reported as explained, and any other overflow fails the test. An overflow can only
// fail it in an interval that no stop excuses; with fewer than LAG_MIN_CLEAN such intervals
// (10 s of the 60) the host was too busy to check the bound, and the test is skipped with
// that reason unless another check failed (it used to fail as inconclusive, which made a
// host with 40% steal time fail CI on an infrastructure condition).
/// The cpu.weight of the lag test's busy members, of its wakers (wake0, three random
/// wakers) and of its churn group.
const LAG_W_LIGHT: u32 = 1;
const LAG_W_HEAVY: u32 = 10_000;
/// Also the default cpu.weight, which the random wakers' and churn groups keep.
const LAG_W_WAKER: u32 = 100;
const LAG_WAKERS: u32 = 4;
/// W/w of the lightest member a stop can charge that the test lets run often enough to be
/// charged: a waker or the churn group. The weight-1 group runs about 0.01% of the time, so
/// a stop charged to it (repay 10^4 times longer) is not provided for.
const LAG_REPAY: u64 =
    (LAG_W_LIGHT + LAG_W_HEAVY + LAG_W_WAKER * (LAG_WAKERS + 1)).div_ceil(LAG_W_WAKER) as u64;

/// 50 ms intervals free of guest stops that the lag test needs to check the bound: 10 s.
const LAG_MIN_CLEAN: u64 = stops::MIN_CLEAN;

/// Why `intervals` watched 50 ms intervals, `excused` of them covered by a guest stop, cannot
/// check the lag bound; `None` when at least [`LAG_MIN_CLEAN`] were free of stops. Pure.
fn lag_unchecked(intervals: u64, excused: u64) -> Option<String> {
    let clean = intervals.saturating_sub(excused);
    (clean < LAG_MIN_CLEAN).then(|| {
        format!(
            "the host is too busy to check the lag bound: guest stops cover {excused} of \
             {intervals} 50 ms intervals, {clean} left without one (needs {LAG_MIN_CLEAN})"
        )
    })
}

fn lag_bounded_extreme_weights(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    // Under single-threaded TCG the vCPUs take turns on one host thread, so whatever runs on
    // another vCPU (this runner's churn, kworkers) freezes the test CPU and shows as a guest
    // stop: on 2 vCPUs, 70% of the intervals of a quiet host had one, too many to check the
    // bound. With the other CPUs offline for the test, only the host stops the guest. The
    // runner moves to the test CPU first (restored after the CPUs are back, dropped last).
    let _runner = util::AffinityGuard::pin_self(&[env.cpu]).or_fail("moving the runner")?;
    let (_alone, offline, refused) = util::offline_cpus(&env.others);
    if !refused.is_empty() {
        ctx.diag(format!("CPUs left online: {refused:?}"));
    }
    // r_max = 8 x the stock request, which for these groups of default-slice tasks is the
    // base slice.
    let rmax_ns = stops::rmax_ns()?;
    let before = stops::lag_overflows()?;
    let wake = |name| Member {
        load: Load::Flood,
        ..Member::new(name, LAG_W_WAKER, true)
    };
    let s = Scenario::start(
        &env,
        "lag",
        &[
            Member::new("w1", LAG_W_LIGHT, true),
            Member::new("w10000", LAG_W_HEAVY, true),
            wake("wake0"),
        ],
    )?;
    let mut wakers = Vec::new();
    for i in 0..3u64 {
        let cg = env
            .parent
            .child(&format!("lag-rnd{i}"))
            .or_fail("creating a waker group")?;
        cg.write("cpu.lags", "1")
            .or_fail("cpu.lags of a waker group")?;
        let mut w = Worker::spawn(move |io| random_waker(0x1a65 + i, io)).or_fail("fork")?;
        w.start_in(&cg, Some(env.cpu)).or_fail("starting a waker")?;
        wakers.push((w, cg));
    }
    let watch_cg = env
        .parent
        .child("lag-watch")
        .or_fail("creating the watcher's group")?;
    let mut watcher = Worker::spawn(|io| stops::stall_watcher(io, stops::FINE_PERIOD_NS, None))
        .or_fail("fork")?;
    watcher
        .start_in(&watch_cg, Some(env.cpu))
        .or_fail("starting the stall watcher")?;
    let end = util::now_ns() + LAG_TEST_MS * 1_000_000;
    let (mut churned, mut toggles) = (0u64, 0u64);
    let u0 = s.usage_us()?;
    while util::now_ns() < end {
        let cg = env
            .parent
            .child(&format!("lag-churn{}", churned % 4))
            .or_fail("creating a churn group")?;
        cg.write("cpu.lags", "1")
            .or_fail("cpu.lags of a churn group")?;
        let mut w = Worker::spawn(|_io| {
            util::spin_cpu_ns(2_000_000);
            0
        })
        .or_fail("fork")?;
        w.start_in(&cg, Some(env.cpu))
            .or_fail("starting a churn task")?;
        w.wait(WORKER_TIMEOUT).or_fail("churn task")?;
        cg.remove().or_fail("removing a churn group")?;
        churned += 1;
        if churned % 5 == 0 {
            s.groups[0].write("cpu.lags", "0").or_fail("cpu.lags 0")?;
            s.groups[0].write("cpu.lags", "1").or_fail("cpu.lags 1")?;
            toggles += 1;
        }
        util::sleep_ms(200);
    }
    let u1 = s.usage_us()?;
    for (w, _) in &mut wakers {
        w.stop();
    }
    for (w, _) in &mut wakers {
        w.wait(WORKER_TIMEOUT).or_fail("waker")?;
    }
    s.stop()?;
    let watched = util::decode_u64s(&watcher.finish(WORKER_TIMEOUT).or_fail("stall watcher")?);
    let after = stops::lag_overflows()?;
    let o = stops::attribute(&[watched], before, STALL_NS, rmax_ns, LAG_REPAY);
    let intervals = o.intervals;
    let used: Vec<u64> = u0.iter().zip(&u1).map(|(a, b)| b - a).collect();
    let busy = used[0] + used[1];
    ctx.diag(format!(
        "CPUs offline during the test: {offline:?}; \
         {churned} churn groups, {toggles} cpu.lags toggles; CPU of w1/w10000/wake0: {used:?} us; \
         lag_overflows {before} -> {after}: {} not explained by a guest stop, {} explained; \
         guest stopped longer than {} in {} of {intervals} 50 ms intervals, longest {}; \
         {} intervals within {LAG_REPAY}x (a stop's length - r_max {}) after it",
        o.unexplained,
        o.explained,
        util::ms(STALL_NS),
        o.stalled_intervals,
        util::ms(o.worst_stall_ns),
        o.excused_intervals,
        util::ms(rmax_ns)
    ));
    ctx.check(o.unexplained == 0, || {
        format!(
            "{LAG_OVERFLOWS}: {} overflows that no guest stop explains",
            o.unexplained
        )
    });
    ctx.check(after >= before + o.explained + o.unexplained, || {
        format!("{LAG_OVERFLOWS} went from {before} to {after}, below what the watcher read")
    });
    ctx.check(used[0] * 100 <= busy, || {
        format!(
            "weight-1 group got {} of {busy} us of the busy pair's CPU; expected <= 1%",
            used[0]
        )
    });
    ctx.check(used[1] * 10 >= busy * 9, || {
        format!(
            "weight-10000 group got {} of {busy} us; expected >= 90%",
            used[1]
        )
    });
    // After the other checks, so that a failed one still fails the test.
    match lag_unchecked(intervals, o.excused_intervals) {
        Some(reason) => skip(reason),
        None => Ok(()),
    }
}

fn toggler(dir: std::path::PathBuf, io: &mut WorkerIo) -> i32 {
    let file = dir.join("cpu.lags");
    let mut n = 0u64;
    while !io.stop_requested() {
        for v in ["1", "0"] {
            if util::write_file(&file, v).is_err() {
                io.send_kv("error", "write");
                return 1;
            }
        }
        n += 1;
        util::sleep_until_ns(util::now_ns() + 200_000);
    }
    io.send_kv("toggles", n);
    0
}

// Expect a busy LAGS group's credit to follow the CPU time it receives while another
// group's cpu.lags is switched on and off every ~0.2 ms: one group's opt-in does not discard
// other groups' runtime. Over a window of length T the credit must reach at least 85% of
// C0·e^(-T/tau) + u·(1 - e^(-T/tau)), u being the CPU share the group measurably received.
fn credit_independent_of_other_groups(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let tau_ns = util::read_trimmed(format!("{DEBUGFS_DIR}/credit_period_ns"))
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .or_fail("credit_period_ns")?;
    let s = Scenario::start(&env, "cr", &[Member::new("busy", 100, true)])?;
    let other = env.parent.child("cr-other").or_fail("creating cr-other")?;
    util::sleep_ms(2_000);
    let dir = other.path().to_owned();
    let mut t = Worker::spawn(move |io| toggler(dir, io)).or_fail("fork")?;
    let cpu = env.others.first().copied().unwrap_or(env.cpu);
    util::set_affinity(t.pid(), &[cpu]).or_fail("pinning the toggler")?;
    let c0 = s.groups[0].cpu_stat("lags_credit_mcpu").or_fail("credit")?;
    let (u0, t0) = (s.usage_us()?[0], util::now_ns());
    t.go().or_fail("starting the toggler")?;
    util::sleep_ms(2_000);
    let c1 = s.groups[0].cpu_stat("lags_credit_mcpu").or_fail("credit")?;
    let (u1, t1) = (s.usage_us()?[0], util::now_ns());
    t.stop();
    let out = String::from_utf8_lossy(&t.finish(WORKER_TIMEOUT).or_fail("toggler")?).into_owned();
    s.stop()?;
    let kvs = util::parse_kv_lines(&out);
    let toggles: u64 = util::kv(&kvs, "toggles")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let window_ns = (t1 - t0) as f64;
    let u = (u1 - u0) as f64 * 1000.0 / window_ns;
    let decay = (-window_ns / tau_ns as f64).exp();
    let expect = c0 as f64 * decay + u * 1000.0 * (1.0 - decay);
    ctx.diag(format!(
        "busy group: credit {c0} -> {c1} mcpu over {:.0} ms with {toggles} toggles of another \
         group's cpu.lags; it received {:.0}% of the CPU, so the credit model gives {expect:.0}",
        window_ns / 1e6,
        u * 100.0
    ));
    ensure!(
        toggles >= 100,
        "toggler made only {toggles} toggles ({out:?})"
    );
    let follows = c1 as f64 >= 0.85 * expect;
    ensure!(
        follows,
        "busy group's credit is {c1} mcpu after another group toggled cpu.lags; the CPU it \
         received gives {expect:.0} mcpu (at least 85% of that expected)"
    );
    Ok(())
}

/// A field (`nr_running`, `h_nr_runnable`, …) of `cfs_rq[cpu]:<path>` in the text of
/// /sys/kernel/debug/sched/debug.
fn cfs_rq_field(text: &str, cpu: usize, path: &str, field: &str) -> Result<u64, Stop> {
    let head = format!("cfs_rq[{cpu}]:{path}");
    let key = format!(".{field}");
    let value = text
        .lines()
        .skip_while(|l| l.trim() != head)
        .skip(1)
        .take_while(|l| !l.starts_with("cfs_rq["))
        .find(|l| l.split_whitespace().next() == Some(key.as_str()))
        .and_then(|l| l.split(':').nth(1)?.trim().parse().ok());
    value.ok_or_else(|| Stop::Fail(format!("sched/debug: no {field} for {head}")))
}

// Expect DELAY_DEQUEUE to work as in stock: a delayed entity leaves when EEVDF picks it, so a
// delay lasts at most as long as its lag takes to be repaid. The worst case for LAGS is the
// longest request: with credit_ref_pct at its minimum every member gets 8 x base_slice. A
// LAGS group whose task runs a 3 ms burst (shorter than that request, so it runs in one go
// and blocks with negative lag) and then sleeps longer than the bound is delayed on the
// parent next to two busy LAGS groups. Sampled every 10 ms for 3 s: an episode is a run of
// samples in which the parent counts the group's entity although the group has no runnable
// task *and* the group received no CPU time in between (so two sleeps never join into one
// episode). Every episode lasts at most EEVDF's bound, 3 siblings x 2 x the largest LAGS
// request, plus 30 ms of sampling and TCG slack; the sleep is longer than that, so a delay
// the bound does not cover shows. (v1 kept such entities queued for about
// tau x ln(C_D / C_min), seconds.) Stock runs the same load with its own requests.
fn delayed_entities_leave_as_in_stock(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let base_slice_ns = util::read_trimmed("/sys/kernel/debug/sched/base_slice_ns")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .or_fail("base_slice_ns")?;
    let bound_ns = 3 * 2 * 8 * base_slice_ns + 30_000_000;
    let sleep_us = bound_ns / 1000 + 50_000;
    let ref_pct = format!("{DEBUGFS_DIR}/credit_ref_pct");
    let _ref = Restore::save(&ref_pct).or_fail(&ref_pct)?;
    util::write_file(&ref_pct, "1").or_fail(&ref_pct)?;
    for lags in [false, true] {
        let label = if lags { "lags" } else { "stock" };
        let blocker = Member {
            load: Load::Duty(3_000, sleep_us),
            ..Member::new("blocker", 100, lags)
        };
        let s = Scenario::start(
            &env,
            &format!("d-{label}"),
            &[
                Member::new("busy1", 100, lags),
                Member::new("busy2", 100, lags),
                blocker,
            ],
        )?;
        let blocker_cg = &s.groups[2];
        let group = format!("/lagsg/d-{label}-blocker");
        util::sleep_ms(SETTLE_MS);
        let (mut samples, mut delayed) = (0u64, 0u64);
        // Start time and blocker CPU time of the episode in progress.
        let mut episode: Option<(u64, u64)> = None;
        let mut episodes: Vec<u64> = Vec::new();
        let end = util::now_ns() + 3_000_000_000;
        while util::now_ns() < end {
            let now = util::now_ns();
            let text = util::read_file("/sys/kernel/debug/sched/debug").or_fail("sched/debug")?;
            let usage = blocker_cg.cpu_stat("usage_usec").or_fail("cpu.stat")?;
            let queued = cfs_rq_field(&text, env.cpu, "/lagsg", "nr_running")?;
            let runnable = cfs_rq_field(&text, env.cpu, &group, "h_nr_runnable")?;
            let is_delayed = queued == 3 && runnable == 0;
            delayed += u64::from(is_delayed);
            samples += 1;
            episode = match episode {
                Some((start, u)) if is_delayed && u == usage => {
                    *episodes.last_mut().expect("episode in progress") = now - start;
                    Some((start, u))
                }
                _ if is_delayed => {
                    episodes.push(0);
                    Some((now, usage))
                }
                _ => None,
            };
            util::sleep_ms(10);
        }
        s.stop()?;
        let longest = episodes.iter().copied().max().unwrap_or(0);
        let listed: Vec<String> = episodes.iter().map(|&e| util::ms(e)).collect();
        ctx.diag(format!(
            "{label}: the blocker group queued without a runnable task in {delayed} of \
             {samples} samples ({:.1}%); episodes [{}], longest {} (bound {}, sleeps {})",
            delayed as f64 * 100.0 / samples.max(1) as f64,
            listed.join(", "),
            util::ms(longest),
            util::ms(bound_ns),
            util::ms(sleep_us * 1000)
        ));
        ctx.check(longest <= bound_ns, || {
            format!(
                "{label}: a delayed entity stayed queued for {}, expected at most {}",
                util::ms(longest),
                util::ms(bound_ns)
            )
        });
    }
    Ok(())
}

/// In a forked child: drop to nobody, open `path` for writing and keep it open until told
/// to stop; sends `fd=N` (or `open=ERR`).
fn open_as_nobody(path: std::path::PathBuf, io: &mut WorkerIo) -> i32 {
    if let Err(e) = util::drop_to_nobody() {
        io.send_kv("drop", e);
        return 1;
    }
    util::send_identity(io);
    match util::open_write(&path) {
        Ok(f) => {
            use std::os::fd::AsRawFd;
            io.send_kv("fd", f.as_raw_fd());
            while !io.stop_requested() {
                util::sleep_ms(5);
            }
            drop(f);
            0
        }
        Err(e) => {
            io.send_kv("open", util::describe_err(&e));
            1
        }
    }
}

/// Reads `key=value` lines from a running worker until `key` appears.
fn wait_kv(w: &mut Worker, key: &str) -> Result<Vec<(String, String)>, Stop> {
    let text = w.read_line_until(key, WORKER_TIMEOUT).or_fail("worker")?;
    Ok(util::parse_kv_lines(&text))
}

// Expect cpu.lags to check the credentials of whoever opened the file, not of whoever
// writes to it (the CVE-2021-4197 pattern): a delegated cpu.lags opened by nobody and
// handed to root must still refuse the write with EPERM.
fn cpu_lags_checks_opener(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let cg = env
        .parent
        .child("opener")
        .or_fail("creating lagsg/opener")?;
    let lags = cg.file("cpu.lags");
    util::chown(cg.path(), NOBODY, NOBODY).or_fail("chown of the cgroup directory")?;
    util::chown(&lags, NOBODY, NOBODY).or_fail("chown of cpu.lags")?;
    let path = lags.clone();
    let mut w = Worker::spawn(move |io| open_as_nobody(path, io)).or_fail("fork")?;
    w.go().or_fail("starting the child")?;
    let kvs = wait_kv(&mut w, "fd")?;
    let Some(fd) = util::kv(&kvs, "fd").and_then(|v| v.parse::<i32>().ok()) else {
        return fail(format!(
            "child could not open its delegated cpu.lags: {kvs:?}"
        ));
    };
    ensure!(
        util::kv(&kvs, "uid") == Some(&format!("{NOBODY}/{NOBODY}")),
        "child did not drop to nobody: {kvs:?}"
    );
    // Take the child's descriptor: the file stays opened with nobody's credentials.
    // SAFETY: pidfd_open takes a pid and flags; it returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, w.pid(), 0) };
    ensure!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: pidfd_open returned a descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_getfd takes a pidfd, the target's descriptor number and flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    ensure!(fd >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
    // SAFETY: pidfd_getfd returned a new descriptor that nothing else owns.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    let r = util::write_once(&file, b"1");
    drop(file);
    w.stop();
    w.finish(WORKER_TIMEOUT).or_fail("child")?;
    let got = util::describe(&r);
    let v = cg.read("cpu.lags").or_fail("reading cpu.lags")?;
    ctx.diag(format!(
        "root writing 1 through nobody's descriptor: {got}; cpu.lags now {v:?}"
    ));
    ctx.check(got == "EPERM", || {
        format!("write through a descriptor opened by nobody: expected EPERM, got {got}")
    });
    ctx.check_eq("cpu.lags afterwards", v.trim().to_owned(), "0".to_owned());
    Ok(())
}

/// `schedule()` calls on `cpu` so far (`/proc/schedstat`, third counter of the CPU line).
fn sched_count(cpu: usize) -> Result<u64, Stop> {
    let text = util::read_file("/proc/schedstat").or_fail("/proc/schedstat")?;
    let tag = format!("cpu{cpu}");
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(tag.as_str()));
    let Some(n) = line.and_then(|l| l.split_whitespace().nth(3)?.parse().ok()) else {
        return fail(format!("/proc/schedstat: no sched_count for {tag}"));
    };
    Ok(n)
}

/// Turns schedstats on (sched_count needs it); the old value comes back when dropped.
fn schedstats_on() -> Result<Restore, Stop> {
    let saved =
        Restore::save("/proc/sys/kernel/sched_schedstats").or_fail("kernel.sched_schedstats")?;
    util::write_file("/proc/sys/kernel/sched_schedstats", "1").or_fail("enabling schedstats")?;
    Ok(saved)
}

/// Runs `during` and returns `schedule()` calls per second on `cpu` meanwhile, with its result.
fn schedule_rate<T>(
    cpu: usize,
    during: impl FnOnce() -> Result<T, Stop>,
) -> Result<(f64, T), Stop> {
    let (n0, t0) = (sched_count(cpu)?, util::now_ns());
    let out = during()?;
    let (n1, t1) = (sched_count(cpu)?, util::now_ns());
    Ok(((n1 - n0) as f64 * 1e9 / (t1 - t0) as f64, out))
}

// Expect no reschedule storm: with four busy LAGS groups and three lighter wakers on one
// CPU, schedule() calls per second are at most 10% above stock's in the same boot.
fn schedule_calls_not_inflated(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let stats = schedstats_on()?;
    let mut rates = Vec::new();
    for lags in [false, true] {
        let label = if lags { "lags" } else { "stock" };
        let flood = |name| Member {
            load: Load::Flood,
            ..Member::new(name, 100, lags)
        };
        let members = [
            Member::new("heavy1", 100, lags),
            Member::new("heavy2", 100, lags),
            Member::new("heavy3", 100, lags),
            Member::new("heavy4", 100, lags),
            flood("light1"),
            flood("light2"),
            flood("light3"),
        ];
        let s = Scenario::start(&env, &format!("s-{label}"), &members)?;
        util::sleep_ms(SETTLE_MS);
        let (rate, ()) = schedule_rate(env.cpu, || {
            util::sleep_ms(WINDOW_MS);
            Ok(())
        })?;
        s.stop()?;
        ctx.diag(format!(
            "{label}: {rate:.0} schedule() calls/s on CPU {}",
            env.cpu
        ));
        rates.push(rate);
    }
    drop(stats);
    let within = rates[1] <= rates[0] * (1.0 + SCHED_CALLS_TOLERANCE);
    ensure!(
        within,
        "schedule() calls/s: {:.0} with LAGS, {:.0} stock; expected at most {:.0}% more",
        rates[1],
        rates[0],
        SCHED_CALLS_TOLERANCE * 100.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the lag test to decide with 200 stop-free intervals or more and to give the
    // skip reason below that: the two CI boots of 2026-11-26 on a host with 40% steal time
    // had 97 (1018 of 1115 excused) and 240 (654 of 894).
    #[test]
    fn lag_bound_needs_clean_intervals() {
        assert_eq!(lag_unchecked(894, 654), None);
        assert_eq!(lag_unchecked(1200, 1000), None);
        let r = lag_unchecked(1115, 1018).unwrap();
        assert!(r.contains("1018 of 1115") && r.contains("97 left"), "{r}");
        assert!(lag_unchecked(100, 0).is_some());
        assert!(lag_unchecked(10, 20).is_some());
    }

    #[test]
    fn lag_repay_is_the_lightest_chargeable_members_share() {
        assert_eq!(LAG_REPAY, 106);
    }

    fn describe(ms: &[Member]) -> String {
        format!("{ms:?}")
    }

    #[test]
    fn generated_scenarios_differ_and_have_both_kinds() {
        let all: Vec<String> = (0..SCENARIOS)
            .map(|s| describe(&scenario(0x5eed_0000 + s)))
            .collect();
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "scenarios {i} and {j} are identical");
            }
        }
        for s in 0..SCENARIOS {
            let m = scenario(0x5eed_0000 + s);
            let plain = m.iter().filter(|m| !m.lags).count();
            assert!((1..=2).contains(&plain), "{m:?}");
            assert!((2..=5).contains(&(m.len() - plain)), "{m:?}");
            assert!(m.iter().all(|m| (25..=400).contains(&m.weight)), "{m:?}");
        }
    }
}
