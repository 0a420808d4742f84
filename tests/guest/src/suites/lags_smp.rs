// SPDX-License-Identifier: GPL-2.0
//! `lags_smp`: LAGS behaviour that needs more than one CPU.
//!
//! A group's tasks may run on several CPUs, while EEVDF sizes requests per CPU. Groups live
//! under `/sys/fs/cgroup/lagssmp`; workers are pinned; the runner stays off the first CPU.
//! Skipped with fewer than two CPUs.

use std::time::Duration;

use super::lags_iface::PinnedEnv;
use super::{ensure, skip, Ctx, OrFail, Stop, Suite, Test, TestResult};
use crate::util::{self, Cgroup, Worker, WorkerIo};

pub const SUITE: Suite = Suite {
    name: "lags_smp",
    tests: &[Test {
        name: "request_judged_per_cpu",
        run: request_judged_per_cpu,
    }],
};

/// Spinners run this long before the window opens: two credit time constants.
const SETTLE_MS: u64 = 2_000;
const WINDOW_MS: u64 = 3_000;
const WORKER_TIMEOUT: Duration = Duration::from_secs(20);
/// The two phases' run lengths may differ by this factor (a request of 4 s against 8 s
/// differs by 2).
const RUN_RATIO_MAX: f64 = 1.3;

/// The pinned-suite set-up and the two CPUs the workers use.
struct Env {
    cpus: [usize; 2],
    base: PinnedEnv,
}

fn setup(ctx: &mut Ctx) -> Result<Env, Stop> {
    if util::online_cpus().or_fail("online CPUs")?.len() < 2 {
        return skip("needs two CPUs");
    }
    let base = PinnedEnv::setup(ctx, "lagssmp")?;
    let Some(&second) = base.others.first() else {
        return skip("needs two usable CPUs");
    };
    ctx.diag(format!(
        "workers on CPUs {} and {second}, runner on {:?}",
        base.cpu, base.others
    ));
    Ok(Env {
        cpus: [base.cpu, second],
        base,
    })
}

fn group(env: &Env, name: &str, weight: u32, lags: bool) -> Result<Cgroup, Stop> {
    let cg = env
        .base
        .parent
        .child(name)
        .or_fail(&format!("creating lagssmp/{name}"))?;
    cg.write("cpu.weight", weight.to_string())
        .or_fail(&format!("writing cpu.weight of lagssmp/{name}"))?;
    cg.write("cpu.lags", if lags { "1" } else { "0" })
        .or_fail(&format!("writing cpu.lags of lagssmp/{name}"))?;
    Ok(cg)
}

fn spinner(io: &mut WorkerIo) -> i32 {
    while !io.stop_requested() {
        util::spin_cpu_ns(1_000_000);
    }
    0
}

fn start(cg: &Cgroup, cpu: usize) -> Result<Worker, Stop> {
    let mut w = Worker::spawn(spinner).or_fail("fork")?;
    w.start_in(cg, Some(cpu)).or_fail("starting worker")?;
    Ok(w)
}

/// CPU time (ns, /proc/PID/schedstat) and involuntary switches (/proc/PID/status) of a task.
fn runs(pid: libc::pid_t) -> Result<(u64, u64), Stop> {
    let exec = util::SchedStat::of(pid).or_fail("schedstat")?.exec_ns;
    let status = util::read_trimmed(format!("/proc/{pid}/status"))
        .or_fail(&format!("/proc/{pid}/status"))?;
    let switches = status.lines().find_map(|l| {
        l.strip_prefix("nonvoluntary_ctxt_switches:")?
            .trim()
            .parse()
            .ok()
    });
    match switches {
        Some(s) => Ok((exec, s)),
        None => Err(Stop::Fail(format!(
            "/proc/{pid}/status: no nonvoluntary_ctxt_switches"
        ))),
    }
}

/// The mean length of the runs of `probe` (ns of CPU per involuntary switch) over the window.
fn mean_run(probe: &Worker) -> Result<(u64, u64, u64), Stop> {
    let (e0, s0) = runs(probe.pid())?;
    util::sleep_ms(WINDOW_MS);
    let (e1, s1) = runs(probe.pid())?;
    let (exec, switches) = (e1 - e0, s1 - s0);
    ensure!(
        switches > 0,
        "the probe was never preempted in {WINDOW_MS} ms (ran {} ms)",
        exec / 1_000_000
    );
    Ok((exec / switches, exec, switches))
}

/// Creates `groups`, starts `spinners` (group index, CPU), lets the credits settle and
/// returns the mean run, CPU time and involuntary switches of spinner 1 (the probe) over the
/// window, and the credit of the probe's group.
fn probe_phase(
    env: &Env,
    groups: &[(&str, u32, bool)],
    spinners: &[(usize, usize)],
) -> Result<(u64, u64, u64, u64), Stop> {
    let cgs = groups
        .iter()
        .map(|&(name, weight, lags)| group(env, name, weight, lags))
        .collect::<Result<Vec<_>, _>>()?;
    // Declared after the groups, so they are killed before the groups go.
    let mut workers = spinners
        .iter()
        .map(|&(g, cpu)| start(&cgs[g], cpu))
        .collect::<Result<Vec<_>, _>>()?;
    util::sleep_ms(SETTLE_MS);
    let (run, exec, switches) = mean_run(&workers[1])?;
    let credit = cgs[spinners[1].0]
        .cpu_stat("lags_credit_mcpu")
        .or_fail("cpu.stat")?;
    for w in &mut workers {
        w.finish(WORKER_TIMEOUT).or_fail("spinner")?;
    }
    Ok((run, exec, switches, credit))
}

// Expect the request of a group's entity on a CPU to depend on what the group received on
// that CPU, not on what it ran elsewhere. On the first CPU a spinner of group A (weight 100)
// shares the CPU with a spinner `probe` of another LAGS group, whose entity there weighs half
// of A's; the probe gets a third of the CPU, exactly its entitlement, so its request is the
// same in both phases:
// * P: the probe's group (weight 100) also runs a spinner on the second CPU, which splits the
//   group's weight into two halves;
// * Q: the probe's group has weight 50 and runs nothing else; a third group keeps the second
//   CPU busy.
// Busy spinners run their whole request at once, so the probe's mean run (CPU time per
// involuntary switch) is its request. If the credit the group earned on the second CPU
// counted against its entitlement on the first (the credit is 1.33 CPUs in P, 0.33 in Q), P
// would give the probe the longest request, 8 x base_slice, against 4 x in Q.
fn request_judged_per_cpu(ctx: &mut Ctx) -> TestResult {
    let env = setup(ctx)?;
    let [first, second] = env.cpus;

    // Groups (name, cpu.weight, cpu.lags) and spinners (group, CPU); the probe is spinner 1.
    let (run_p, exec_p, sw_p, credit_p) = probe_phase(
        &env,
        &[("p-a", 100, true), ("p-b", 100, true)],
        &[(0, first), (1, first), (1, second)],
    )?;
    let (run_q, exec_q, sw_q, credit_q) = probe_phase(
        &env,
        &[("q-a", 100, true), ("q-b", 50, true), ("q-c", 100, false)],
        &[(0, first), (1, first), (2, second)],
    )?;

    let ratio = run_p as f64 / run_q.max(1) as f64;
    ctx.diag(format!(
        "probe: P (group on both CPUs, credit {credit_p} mcpu) {} ms in {sw_p} runs, mean {}; \
         Q (group on the first CPU only, credit {credit_q} mcpu) {} ms in {sw_q} runs, mean \
         {}; P/Q {ratio:.2}",
        exec_p / 1_000_000,
        util::ms(run_p),
        exec_q / 1_000_000,
        util::ms(run_q)
    ));
    ctx.check(
        (1.0 / RUN_RATIO_MAX..=RUN_RATIO_MAX).contains(&ratio),
        || {
            format!(
                "the probe's mean run with its group also busy on another CPU: expected within \
             {RUN_RATIO_MAX}x of the same entitlement on one CPU ({}), got {} ({ratio:.2}x)",
                util::ms(run_q),
                util::ms(run_p)
            )
        },
    );
    Ok(())
}
