// SPDX-License-Identifier: GPL-2.0
//! The `knative` workload (issue 11, workload 2): the prototype's node experiment
//! (`benchmark-anchors.md` §2).
//!
//! * **Pods:** `lb.kn_pods` cgroups `pNNNN` under the bench parent, each with one container
//!   child `pNNNN/c` holding one process: a handler thread and `intra_op - 1` helpers. A
//!   request's CPU work is split over the `intra_op` threads, which run at once and are
//!   joined before the response (intra-op parallelism, as a PyTorch pod's). Requests to one
//!   pod are served one at a time, oldest first.
//!   A request's work is `lb.kn_work_ms`, or with `lb.kn_work_sigma` > 0 a lognormal draw
//!   around it (mean-preserving, at most 50× the mean) that the user makes when it sends.
//! * **Users:** threads of the controller (root cgroup, fair class). Each thinks for a
//!   uniform 1–3 s, sends a request to a uniformly chosen pod, and waits for the response:
//!   a closed loop, like the prototype's locust users. The user count is the scale
//!   (`lb.kn_users`, swept).
//! * **Latency:** from sending to the user's wake-up by the response.
//!
//! Everything shared lives in two anonymous shared mappings (`rdhashd::Map`), inherited
//! by the forked pods; waits are futexes on them.

use std::fs;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use lags_bench::*;
use lags_pid1::clock::now_ns;

use crate::rdhashd::{futex_wait, futex_wake_all, sleep_ns, Fleet, Map};
use crate::window::{self, Window};
use crate::{groups, host, parent, spin, Ctx, Out};

// u64 slots.
const EPOCH: usize = 0;
const ITERS: usize = 1;
const READY: usize = 2;
const THREADS: usize = 3;
const PENDING: usize = 4;
/// The measured window's counts.
const WIN: Window = Window { base: 5 };
/// Then one send time per user, one request size per user, one request size per pod
/// ([`Layout`]).
const USER_T0: usize = 5 + Window::LEN;

// u32 words: the active user count, the end flag, then 4 per pod, then 2 per user.
const ACTIVE: usize = 0;
const QUIT: usize = 1;
const POD0: usize = 2;

/// The request states of a user slot.
const IDLE: u32 = 0;
const SENT: u32 = 1;
const TAKEN: u32 = 2;
const ANSWERED: u32 = 3;

struct Layout {
    pods: usize,
    /// The most users of the sweep.
    users: usize,
}

impl Layout {
    /// u64 slot: the size of user `u`'s current request, as a multiple of the mean (f64
    /// bits).
    fn user_size(&self, u: usize) -> usize {
        USER_T0 + self.users + u
    }
    /// u64 slot: spin iterations per thread of the request pod `p` serves now.
    fn pod_iters(&self, p: usize) -> usize {
        USER_T0 + 2 * self.users + p
    }
    fn slots(&self) -> usize {
        USER_T0 + 2 * self.users + self.pods
    }
    /// Bumped by a user who sent this pod a request (the handler's futex).
    fn arrivals(&self, p: usize) -> usize {
        POD0 + p * 4
    }
    /// Bumped by the handler when a request's work is ready for the helpers.
    fn work(&self, p: usize) -> usize {
        POD0 + p * 4 + 1
    }
    /// Helpers still working on the current request (the handler's join futex).
    fn left(&self, p: usize) -> usize {
        POD0 + p * 4 + 2
    }
    fn user_pod(&self, u: usize) -> usize {
        POD0 + self.pods * 4 + u * 2
    }
    fn user_state(&self, u: usize) -> usize {
        POD0 + self.pods * 4 + u * 2 + 1
    }
    fn words(&self, users: usize) -> usize {
        POD0 + self.pods * 4 + users * 2
    }
}

fn wait_while(word: &AtomicU32, mut busy: impl FnMut(u32) -> bool) {
    loop {
        let v = word.load(Ordering::Acquire);
        if !busy(v) {
            return;
        }
        futex_wait(word, v, 1_000_000_000);
    }
}

/// A helper thread of pod `p`: runs its share of each request and counts itself done.
fn helper(c: &Map<AtomicU64>, w: &Map<AtomicU32>, l: &Layout, p: usize) -> ! {
    let mut seen = w.at(l.work(p)).load(Ordering::Acquire);
    loop {
        wait_while(w.at(l.work(p)), |g| g == seen);
        seen = w.at(l.work(p)).load(Ordering::Acquire);
        std::hint::black_box(spin(c.at(l.pod_iters(p)).load(Ordering::Acquire)));
        if w.at(l.left(p)).fetch_sub(1, Ordering::AcqRel) == 1 {
            futex_wake_all(w.at(l.left(p)));
        }
    }
}

/// The pod process: joins its container cgroup, starts the helpers, and serves requests.
fn pod_main(
    group: &str,
    p: usize,
    k: u32,
    users: usize,
    c: &'static Map<AtomicU64>,
    w: &'static Map<AtomicU32>,
    l: &'static Layout,
) -> ! {
    // SAFETY: getpid/getppid have no preconditions.
    let (pid, controller) = unsafe { (libc::getpid(), libc::getppid()) };
    host::die_with_parent(controller);
    if fs::write(format!("{group}/cgroup.procs"), pid.to_string()).is_err() {
        loop {
            // SAFETY: pause has no preconditions; the controller notices the missing READY.
            unsafe { libc::pause() };
        }
    }
    for _ in 1..k {
        let ok = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || helper(c, w, l, p))
            .is_ok();
        if ok {
            c.at(THREADS).fetch_add(1, Ordering::AcqRel);
        }
    }
    c.at(THREADS).fetch_add(1, Ordering::AcqRel);
    c.at(READY).fetch_add(1, Ordering::AcqRel);
    loop {
        let gen = w.at(l.arrivals(p)).load(Ordering::Acquire);
        // The oldest request sent to this pod.
        let mut best: Option<(u64, usize)> = None;
        for u in 0..users {
            if w.at(l.user_state(u)).load(Ordering::Acquire) == SENT
                && w.at(l.user_pod(u)).load(Ordering::Acquire) as usize == p
            {
                let t0 = c.at(USER_T0 + u).load(Ordering::Acquire);
                if best.is_none_or(|(t, _)| t0 < t) {
                    best = Some((t0, u));
                }
            }
        }
        let Some((_, u)) = best else {
            futex_wait(w.at(l.arrivals(p)), gen, 1_000_000_000);
            continue;
        };
        if w.at(l.user_state(u))
            .compare_exchange(SENT, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        let size = f64::from_bits(c.at(l.user_size(u)).load(Ordering::Acquire));
        let iters = (c.at(ITERS).load(Ordering::Relaxed) as f64 * size) as u64;
        c.at(l.pod_iters(p)).store(iters, Ordering::Release);
        if k > 1 {
            w.at(l.left(p)).store(k - 1, Ordering::Release);
            w.at(l.work(p)).fetch_add(1, Ordering::AcqRel);
            futex_wake_all(w.at(l.work(p)));
        }
        std::hint::black_box(spin(iters));
        wait_while(w.at(l.left(p)), |left| left > 0);
        w.at(l.user_state(u)).store(ANSWERED, Ordering::Release);
        futex_wake_all(w.at(l.user_state(u)));
    }
}

/// A user: think, send, wait for the answer, count it.
fn user(u: usize, c: &Map<AtomicU64>, w: &Map<AtomicU32>, l: &Layout, kn: &KnPlan, seed: u64) {
    let mut rng = Rng::new(seed);
    loop {
        if w.at(QUIT).load(Ordering::Acquire) != 0 {
            return;
        }
        let active = w.at(ACTIVE).load(Ordering::Acquire) as usize;
        if u >= active {
            futex_wait(w.at(ACTIVE), active as u32, 1_000_000_000);
            continue;
        }
        let think = kn.think_min_ms + (kn.think_max_ms - kn.think_min_ms) * rng.uniform();
        sleep_ns((think * 1e6) as u64);
        if u >= w.at(ACTIVE).load(Ordering::Acquire) as usize {
            continue;
        }
        let epoch = c.at(EPOCH).load(Ordering::Acquire);
        let pod = (rng.next_u64() % l.pods as u64) as usize;
        // Equal requests draw nothing, so their users' streams stay as they were.
        let size = if kn.work_sigma > 0.0 {
            rng.lognormal_mean1(kn.work_sigma).min(50.0)
        } else {
            1.0
        };
        c.at(l.user_size(u))
            .store(size.to_bits(), Ordering::Release);
        let t0 = now_ns();
        c.at(PENDING).fetch_add(1, Ordering::AcqRel);
        c.at(USER_T0 + u).store(t0, Ordering::Release);
        w.at(l.user_pod(u)).store(pod as u32, Ordering::Release);
        w.at(l.user_state(u)).store(SENT, Ordering::Release);
        w.at(l.arrivals(pod)).fetch_add(1, Ordering::AcqRel);
        futex_wake_all(w.at(l.arrivals(pod)));
        wait_while(w.at(l.user_state(u)), |s| s != ANSWERED);
        let t2 = now_ns();
        w.at(l.user_state(u)).store(IDLE, Ordering::Release);
        c.at(PENDING).fetch_sub(1, Ordering::AcqRel);
        if c.at(EPOCH).load(Ordering::Acquire) == epoch {
            WIN.count(c, t2, t2 - t0);
        }
    }
}

fn start_pods(
    kn: &KnPlan,
    users: usize,
    c: &'static Map<AtomicU64>,
    w: &'static Map<AtomicU32>,
    l: &'static Layout,
) -> Result<Fleet, String> {
    let mut pods = Fleet {
        pids: Vec::new(),
        groups: Vec::new(),
    };
    for p in 0..kn.pods {
        let group = format!("{}/p{p:04}", parent());
        let made = fs::create_dir_all(&group)
            .and_then(|()| {
                if groups().v2 {
                    fs::write(format!("{group}/cgroup.subtree_control"), "+cpu")?;
                }
                fs::create_dir_all(format!("{group}/c"))
            })
            .map_err(|e| format!("pod cgroup {group}: {e}"));
        pods.groups.push(group.clone());
        if let Err(e) = made {
            pods.stop();
            return Err(e);
        }
        // SAFETY: the controller is single-threaded here (the users start after the pods);
        // the child joins its cgroup, starts its threads and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            pods.stop();
            return Err(format!("fork: {e}"));
        }
        if pid == 0 {
            pod_main(&format!("{group}/c"), p, kn.intra_op.max(1), users, c, w, l);
        }
        pods.pids.push(pid);
    }
    pods.wait_ready(c.at(READY), "pods")
}

/// One run: `users` active users under configuration `cfg`.
#[allow(clippy::too_many_arguments)]
fn run_once(
    ctx: &mut Ctx,
    out: &mut Out,
    pods: &Fleet,
    c: &Map<AtomicU64>,
    w: &Map<AtomicU32>,
    users: usize,
    cfg: &str,
    rep: usize,
    seed: u64,
) -> Result<(), String> {
    let plan = ctx.plan;
    let kn = &plan.kn;
    ctx.knobs.apply(cfg, &pods.groups)?;
    std::thread::sleep(Duration::from_millis(300));
    // Users think for up to think_max: the warm-up lets every one of them enter the loop.
    let warm = u64::from(plan.rd.warmup_s).max((kn.think_max_ms / 1e3).ceil() as u64 + 1);
    let k = kn.intra_op.max(1);
    let tl = WIN.start_run(c, warm, u64::from(plan.rd.duration_s), kn.threshold_ms);
    c.at(ITERS).store(
        (kn.work_ms / f64::from(k) * 1e6 * ctx.iters_per_ns) as u64,
        Ordering::Relaxed,
    );
    c.at(EPOCH).fetch_add(1, Ordering::AcqRel);
    // The LAGS counters over the measured window, as the other per-request counts.
    let mut lags0 = None;
    w.at(ACTIVE).store(users as u32, Ordering::Release);
    futex_wake_all(w.at(ACTIVE));
    let mut pending_sum = 0u64;
    let ran = window::drive(
        tl,
        window::Probes {
            perf: plan.rd.profile,
            ftrace: ctx.ftrace.as_ref(),
        },
        out,
        "knative",
        |s| {
            if s == warm {
                lags0 = crate::lags_counters_of(pods.groups.iter().map(String::as_str));
            }
            if s >= warm {
                pending_sum += c.at(PENDING).load(Ordering::Acquire);
            }
        },
        || w.at(ACTIVE).store(0, Ordering::Release),
    );
    let lags1 = crate::lags_counters_of(pods.groups.iter().map(String::as_str));
    let drain_s = window::drain(c.at(PENDING), 10_000_000_000);
    if ran.stopped {
        return Err("interrupted by a signal".into());
    }
    let run = RdhashdRecord {
        burst_ms: kn.work_ms,
        sleep_ms: (kn.think_min_ms + kn.think_max_ms) / 2.0,
        inflight_target_mean: pending_sum as f64 / plan.rd.duration_s.max(1) as f64,
        inflight_target_max: users as u64,
        threads: c.at(THREADS).load(Ordering::Acquire) as usize + users,
        drain_s,
        lags: crate::lags_delta(lags0, lags1),
        ..window::record(
            ctx,
            cfg,
            users,
            rep,
            seed,
            WIN.read(c, plan.rd.duration_s as usize),
            &ran,
            kn.threshold_ms,
        )
    };
    let (completed, util) = (run.completed, run.cpu_util);
    let rps = completed as f64 / run.window_s.max(1e-9);
    ctx.runs_done += 1;
    let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.1}"));
    out.say(&format!(
        "run {}/{} knative users={users} {cfg} rep={rep}: {completed} requests, {rps:.1}/s, p50={}ms p99={}ms ctx/req={:.2} in flight {:.1} util={:.0}%",
        ctx.runs_done,
        ctx.runs_total,
        f(run.p50_ms),
        f(run.p99_ms),
        run.ctxt_per_req.unwrap_or(0.0),
        run.inflight_target_mean,
        util * 100.0,
    ));
    out.record(&Record::Knative(Box::new(KnativeRecord {
        users,
        pods: kn.pods,
        intra_op: k,
        work_ms: kn.work_ms,
        rps,
        run,
    })));
    Ok(())
}

/// The knative part: the pods once, then every user count, repetition and configuration,
/// interleaved as the other sweeps are.
pub(crate) fn sweep(ctx: &mut Ctx, out: &mut Out) -> Result<(), String> {
    let plan = ctx.plan;
    let kn = &plan.kn;
    let max_users = kn.users.iter().copied().max().unwrap_or(0);
    if kn.pods == 0 || max_users == 0 {
        return Err("lb.kn_pods and lb.kn_users must be positive".into());
    }
    if !(0.0..=3.0).contains(&kn.work_sigma) {
        return Err("lb.kn_work_sigma must be in [0, 3]".into());
    }
    if kn.think_max_ms < kn.think_min_ms || kn.think_min_ms < 0.0 {
        return Err("lb.kn_think_min_ms must be in [0, lb.kn_think_max_ms]".into());
    }
    out.say(&format!(
        "knative: starting {} pods ({} threads per request) for up to {max_users} users ...",
        kn.pods, kn.intra_op
    ));
    let l: &'static Layout = Box::leak(Box::new(Layout {
        pods: kn.pods,
        users: max_users,
    }));
    let c: &'static Map<AtomicU64> = Box::leak(Box::new(Map::new(l.slots())?));
    let w: &'static Map<AtomicU32> = Box::leak(Box::new(Map::new(l.words(max_users))?));
    let pods = start_pods(kn, max_users, c, w, l)?;
    let kn_static: &'static KnPlan = Box::leak(Box::new(kn.clone()));
    // A user that cannot start is an error, not a quietly smaller scale.
    let mut user_threads = Vec::with_capacity(max_users);
    let mut result = Ok(());
    for u in 0..max_users {
        let seed = mix_seed(plan.seed, &[5, u as u64]);
        match std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || user(u, c, w, l, kn_static, seed))
        {
            Ok(t) => user_threads.push(t),
            Err(e) => {
                result = Err(format!("knative: starting user {u} of {max_users}: {e}"));
                break;
            }
        }
    }
    let n = plan.configs.len();
    if result.is_ok() {
        'outer: for &users in &kn.users {
            for rep in 0..plan.reps {
                let seed = mix_seed(plan.seed, &[6, users as u64, rep as u64]);
                for i in 0..n {
                    let cfg = plan.configs[(i + rep) % n].clone();
                    if let Err(e) = run_once(ctx, out, &pods, c, w, users, &cfg, rep, seed) {
                        result = Err(e);
                        break 'outer;
                    }
                }
            }
        }
    }
    w.at(ACTIVE).store(0, Ordering::Release);
    w.at(QUIT).store(1, Ordering::Release);
    futex_wake_all(w.at(ACTIVE));
    ctx.knobs.restore();
    let _ = crate::set_lags(&pods.groups, false);
    // The users end after their current think time and request; the pods must still run
    // until then.
    for t in user_threads {
        let _ = t.join();
    }
    pods.stop();
    result
}
