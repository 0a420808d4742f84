// SPDX-License-Identifier: GPL-2.0
//! `lags-bench`: the in-guest LAGS benchmark, PID 1 of the benchmark initramfs
//! (`rdinit=/bin/lags-bench`).
//!
//! It mounts the kernel filesystems, reads its plan from the `lb.*` kernel parameters,
//! calibrates a spin loop, and runs the parts of the plan:
//!
//! * `load`: one function set, a sweep of offered loads, every configuration interleaved;
//! * `density`: several function counts at one offered load (workload `zipf-open`), or the
//!   closed-loop `rdhashd` workload at several function counts (`lb.workload=rdhashd`,
//!   `rdhashd.rs`);
//! * `overhead`: `perf bench sched pipe|messaging` and `stress-ng --switch` with the LAGS
//!   sysctl off and on (no LAGS groups).
//!
//! Progress goes to the console through `/dev/kmsg` (`lags-bench: ...`); results go to the
//! second serial port (`/dev/ttyS1`) as one JSON object per line. The host (`cargo xtask
//! bench`) aggregates them. Every path ends in a reboot: PID 1 never exits.

#![recursion_limit = "256"]

mod ftrace;
mod host;
mod knative;
mod rdhashd;
mod window;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use lags_bench::*;
use lags_pid1::clock::{now_ns, sleep_until_ns};
use lags_pid1::init::{mount_one, MountSpec};
use lags_pid1::sched::set_scheduler;
use lags_pid1::tty::{drain, make_raw, open_write_noctty};
use lags_proto::{marker, path};

const CG: &str = "/sys/fs/cgroup";
const SYSCTL_LAGS: &str = "/proc/sys/kernel/sched_lags";
const BASE_SLICE: &str = "/sys/kernel/debug/sched/base_slice_ns";
/// LAGS's reference credit (debugfs, patch 6), and the value of the lags-inert configuration:
/// the largest the kernel accepts.
const CREDIT_REF: &str = "/sys/kernel/debug/sched/lags/credit_ref_pct";
const INERT_CREDIT_REF: &str = "1000";
const DEFAULT_CREDIT_REF: &str = "50";

/// Where the function cgroups live: the guest's cgroup2 root, or on the host
/// (`--host`) the hierarchy [`host::find_hierarchy`] found.
struct Groups {
    hierarchy: String,
    parent: String,
    v2: bool,
    host: bool,
}

static GROUPS: OnceLock<Groups> = OnceLock::new();

fn groups() -> &'static Groups {
    GROUPS.get_or_init(|| Groups {
        hierarchy: CG.into(),
        parent: format!("{CG}/bench"),
        v2: true,
        host: false,
    })
}

/// The parent of the function cgroups.
fn parent() -> &'static str {
    &groups().parent
}

// ---------------------------------------------------------------------------------------
// Output

struct Out {
    kmsg: Option<File>,
    data: Option<File>,
}

impl Out {
    fn line(&self, s: &str) {
        match &self.kmsg {
            // One write per line: each becomes one kernel log record.
            Some(k) => {
                let mut k: &File = k;
                let _ = k.write_all(format!("<6>{s}").as_bytes());
            }
            None => println!("{s}"),
        }
    }

    fn say(&self, s: &str) {
        self.line(&format!("{} {s}", marker::BENCH_PREFIX));
    }

    fn record(&mut self, r: &Record) {
        if let Some(d) = &mut self.data {
            let mut s = serde_json::to_string(r).expect("records serialize");
            s.push('\n');
            let _ = d.write_all(s.as_bytes());
            let _ = d.flush();
        }
    }
}

/// Opens the data serial port raw (no newline translation, no echo); a port that cannot be
/// made raw is used as it is.
fn open_data_port(path: &str) -> Option<File> {
    let f = open_write_noctty(path).ok()?;
    let _ = make_raw(&f);
    Some(f)
}

// ---------------------------------------------------------------------------------------
// System helpers

/// Mounts a kernel filesystem without flags or options (`lags_pid1::init::mount_one`:
/// the mount point is created, "already mounted" is fine).
fn mount(source: &'static str, target: &'static str, fstype: &'static str) -> Result<(), String> {
    let spec = MountSpec {
        source,
        target,
        fstype,
        flags: 0,
        data: "",
        config: "",
    };
    mount_one(&spec).map_err(|e| format!("mount {fstype} on {target}: {e}"))
}

fn mount_all() -> Vec<String> {
    let mut errs = Vec::new();
    for (src, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("debugfs", "/sys/kernel/debug", "debugfs"),
        ("cgroup2", CG, "cgroup2"),
        ("tmpfs", "/tmp", "tmpfs"),
    ] {
        if let Err(e) = mount(src, target, fstype) {
            errs.push(e);
        }
    }
    errs
}

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn write(path: &str, v: &str) -> Result<(), String> {
    fs::write(path, v).map_err(|e| format!("write {v:?} to {path}: {e}"))
}

/// The controller's policy: SCHED_FIFO 50 while it generates load, SCHED_OTHER otherwise
/// (errors ignored: the run goes on in the fair class).
fn set_fifo(on: bool) {
    let _ = if on {
        set_scheduler(libc::SCHED_FIFO, 50)
    } else {
        set_scheduler(libc::SCHED_OTHER, 0)
    };
}

fn power_off(out: &Out) -> ! {
    // SAFETY: sync/reboot have no memory-safety preconditions.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
        libc::reboot(libc::RB_POWER_OFF);
    }
    out.line("lags-bench: reboot failed; sleeping");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

// ---------------------------------------------------------------------------------------
// Spin loop

#[inline(never)]
fn spin(iters: u64) -> u64 {
    let mut x = 0x1234_5678u64;
    for _ in 0..iters {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
    x
}

/// Iterations per ns of the spin loop on an idle CPU (best of several trials).
fn calibrate() -> f64 {
    let mut n = 100_000u64;
    loop {
        let t = now_ns();
        spin(n);
        if now_ns() - t > 20_000_000 {
            break;
        }
        n *= 2;
    }
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = now_ns();
        spin(n);
        let dt = (now_ns() - t) as f64;
        best = best.max(n as f64 / dt);
    }
    best
}

/// Total CPU capacity in units of one idle CPU: `cpus` processes spin a fixed amount of work
/// concurrently. About `cpus` on real hardware or KVM; under single-threaded TCG (vCPUs
/// taking turns on one host thread) about 1.
fn calibrate_capacity(cpus: usize, iters_per_ns: f64) -> f64 {
    let work_ns = 300_000_000u64;
    let iters = (work_ns as f64 * iters_per_ns) as u64;
    let t = now_ns();
    let mut pids = Vec::new();
    for _ in 0..cpus {
        // SAFETY: single-threaded fork; the child only spins and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            std::hint::black_box(spin(iters));
            // SAFETY: leaving the child.
            unsafe { libc::_exit(0) };
        }
        if pid > 0 {
            pids.push(pid);
        }
    }
    for pid in &pids {
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(*pid, &mut st, 0) };
    }
    let dt = (now_ns() - t) as f64;
    (pids.len() as f64 * work_ns as f64 / dt).min(cpus as f64)
}

// ---------------------------------------------------------------------------------------
// Shared completion table

/// An anonymous shared mapping: slot 0 is the current epoch, slot 1+i the completion time
/// of request i (0 = not yet).
struct Shared {
    ptr: *mut AtomicU64,
    len: usize,
}

impl Shared {
    fn new(len: usize) -> Shared {
        let bytes = (len + 1) * 8;
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
        assert!(p != libc::MAP_FAILED, "mmap failed");
        Shared {
            ptr: p as *mut AtomicU64,
            len,
        }
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        assert!(i <= self.len);
        // SAFETY: in bounds of the mapping, which lives as long as the process; AtomicU64
        // has the layout of u64 and the mapping is zero-initialised and 8-byte aligned.
        unsafe { &*self.ptr.add(i) }
    }

    fn epoch(&self) -> &AtomicU64 {
        self.slot(0)
    }

    fn done(&self, i: usize) -> &AtomicU64 {
        self.slot(i + 1)
    }
}

// ---------------------------------------------------------------------------------------
// Function groups and workers

struct Worker {
    pid: i32,
    tx: OwnedFd,
    group: String,
}

struct Fleet {
    workers: Vec<Worker>,
}

/// Request message: id (u32), epoch (u32), spin iterations (u64).
const MSG: usize = 16;

fn worker_loop(rx: i32, shared: &Shared) -> ! {
    let mut buf = [0u8; MSG];
    loop {
        let mut got = 0;
        while got < MSG {
            // SAFETY: buf has MSG bytes from offset got.
            let n = unsafe { libc::read(rx, buf[got..].as_mut_ptr().cast(), MSG - got) };
            if n <= 0 {
                if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                // SAFETY: leaving the child process.
                unsafe { libc::_exit(0) };
            }
            got += n as usize;
        }
        let id = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
        let epoch = u32::from_le_bytes(buf[4..8].try_into().unwrap()) as u64;
        let iters = u64::from_le_bytes(buf[8..16].try_into().unwrap());
        if shared.epoch().load(Ordering::Acquire) != epoch {
            continue; // left over from an aborted run
        }
        std::hint::black_box(spin(iters));
        shared.done(id).store(now_ns(), Ordering::Release);
    }
}

impl Fleet {
    /// Creates `n` function cgroups under the parent and one worker process in each.
    fn start(n: usize, shared: &Shared) -> Result<Fleet, String> {
        let mut workers = Vec::with_capacity(n);
        // SAFETY: getpid has no preconditions.
        let controller = unsafe { libc::getpid() };
        for i in 0..n {
            let group = format!("{}/f{i:04}", parent());
            fs::create_dir_all(&group).map_err(|e| format!("mkdir {group}: {e}"))?;
            let mut fds = [0i32; 2];
            // SAFETY: fds is a valid out-array.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: fork in a single-threaded process; the child only uses async-signal-
            // safe calls and memory it owns, and never returns.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return Err(format!("fork: {}", std::io::Error::last_os_error()));
            }
            if pid == 0 {
                host::die_with_parent(controller);
                // SAFETY: the write end is not needed in the worker.
                unsafe { libc::close(fds[1]) };
                worker_loop(fds[0], shared);
            }
            // SAFETY: fds are ours; the parent keeps the write end only.
            unsafe { libc::close(fds[0]) };
            // SAFETY: fds[1] is an open descriptor we own.
            let tx = unsafe { OwnedFd::from_raw_fd(fds[1]) };
            // SAFETY: plain fcntl on our descriptor.
            unsafe {
                let fl = libc::fcntl(fds[1], libc::F_GETFL);
                libc::fcntl(fds[1], libc::F_SETFL, fl | libc::O_NONBLOCK);
            }
            write(&format!("{group}/cgroup.procs"), &pid.to_string())?;
            workers.push(Worker { pid, tx, group });
        }
        Ok(Fleet { workers })
    }

    fn stop(self) {
        for w in &self.workers {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(w.pid, libc::SIGKILL) };
        }
        for w in &self.workers {
            let mut st = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(w.pid, &mut st, 0) };
        }
        for w in self.workers {
            drop(w.tx);
            let _ = fs::remove_dir(&w.group);
        }
    }

    fn groups(&self) -> Vec<String> {
        self.workers.iter().map(|w| w.group.clone()).collect()
    }

    fn set_lags(&self, on: bool) -> Result<(), String> {
        set_lags(&self.groups(), on)
    }

    /// Sum of (voluntary, nonvoluntary) context switches and (exec, wait) ns of the workers.
    fn task_counters(&self) -> [u64; 4] {
        let mut c = [0u64; 4];
        for w in &self.workers {
            let st = read(&format!("/proc/{}/status", w.pid));
            c[0] += field(&st, "voluntary_ctxt_switches").unwrap_or(0);
            c[1] += field(&st, "nonvoluntary_ctxt_switches").unwrap_or(0);
            let ss = read(&format!("/proc/{}/schedstat", w.pid));
            let v: Vec<u64> = ss
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            c[2] += v.first().copied().unwrap_or(0);
            c[3] += v.get(1).copied().unwrap_or(0);
        }
        c
    }

    /// Sum of the LAGS counters of the groups (picks, wakeup preempts, starved picks) and
    /// the largest `lags_wait_max_us`; `None` when the groups show no LAGS statistics.
    fn lags_counters(&self) -> Option<[u64; 4]> {
        lags_counters_of(self.workers.iter().map(|w| w.group.as_str()))
    }
}

/// Writes `cpu.lags` of every group. Switching off is a no-op on a kernel without LAGS
/// (`--host` on a stock kernel); switching on there is an error.
fn set_lags(groups: &[String], on: bool) -> Result<(), String> {
    for g in groups {
        let f = format!("{g}/cpu.lags");
        if !on && fs::metadata(&f).is_err() {
            continue;
        }
        write(&f, if on { "1" } else { "0" }).map_err(|e| {
            if fs::metadata(&f).is_err() {
                format!("{f} missing: the running kernel has no LAGS (configuration lags)")
            } else {
                e
            }
        })?;
    }
    Ok(())
}

/// Sum of the LAGS counters of the groups (picks, wakeup preempts, starved picks) and the
/// largest `lags_wait_max_us`; `None` when the groups show no LAGS statistics.
fn lags_counters_of<'a>(groups: impl Iterator<Item = &'a str>) -> Option<[u64; 4]> {
    let mut c = [0u64; 4];
    let mut any = false;
    for g in groups {
        let st = read(&format!("{g}/cpu.stat"));
        if let Some(p) = field(&st, "lags_picks") {
            any = true;
            c[0] += p;
            c[1] += field(&st, "lags_wakeup_preempts").unwrap_or(0);
            c[2] += field(&st, "lags_starved_picks").unwrap_or(0);
            c[3] = c[3].max(field(&st, "lags_wait_max_us").unwrap_or(0));
        }
    }
    any.then_some(c)
}

/// The LAGS counters of a run from two [`lags_counters_of`] snapshots: the sums as
/// differences, the longest wait as read at the end.
fn lags_delta(before: Option<[u64; 4]>, after: Option<[u64; 4]>) -> Option<LagsCounters> {
    let (a, b) = (before?, after?);
    Some(LagsCounters {
        picks: b[0].saturating_sub(a[0]),
        wakeup_preempts: b[1].saturating_sub(a[1]),
        starved_picks: b[2].saturating_sub(a[2]),
        wait_max_us: b[3],
    })
}

// ---------------------------------------------------------------------------------------
// Configurations

struct Knobs {
    base_slice_default: Option<String>,
    /// `credit_ref_pct` as the boot found it; `None` without LAGS or debugfs.
    credit_ref_default: Option<String>,
    tuned_slice_ns: u64,
}

/// The knobs as the first [`Knobs::new`] found them, for the host mode's cleanup after a
/// panic.
static KNOBS_FOUND: OnceLock<(Option<String>, Option<String>)> = OnceLock::new();

impl Knobs {
    fn new(tuned_slice_ns: u64) -> Knobs {
        let k = Knobs {
            base_slice_default: fs::read_to_string(BASE_SLICE).ok(),
            credit_ref_default: fs::read_to_string(CREDIT_REF).ok(),
            tuned_slice_ns,
        };
        let _ = KNOBS_FOUND.set((k.base_slice_default.clone(), k.credit_ref_default.clone()));
        k
    }

    /// A warning when the reference credit is not the kernel's default (50, patch 6): a run
    /// killed before it could restore it (`--host`, SIGKILL) leaves lags-inert's 1000, and
    /// every `lags` run would then be inert too.
    fn warning(&self) -> Option<String> {
        let r = self.credit_ref_default.as_deref()?.trim();
        (r != DEFAULT_CREDIT_REF).then(|| {
            format!(
                "warning: {CREDIT_REF} is {r}, not the kernel's default {DEFAULT_CREDIT_REF}; lags runs use {r} (write {DEFAULT_CREDIT_REF} to it if an earlier run left it)"
            )
        })
    }

    /// Puts back the knobs as the first [`Knobs::new`] found them.
    fn restore_found() {
        if let Some((slice, credit)) = KNOBS_FOUND.get() {
            put_back(slice, credit);
        }
    }

    /// Applies configuration `cfg` to the function `groups`: every knob another
    /// configuration may have changed is set, so the order of the configurations does not
    /// matter.
    fn apply(&self, cfg: &str, groups: &[String]) -> Result<(), String> {
        let cfg = SchedConfig::from_name(cfg).ok_or_else(|| {
            format!(
                "unknown configuration {cfg:?}: use {}",
                SchedConfig::names()
            )
        })?;
        match (cfg, &self.base_slice_default) {
            (SchedConfig::Tuned, None) => {
                return Err(format!(
                    "{BASE_SLICE} missing: cannot run the tuned baseline"
                ))
            }
            (SchedConfig::Tuned, Some(_)) => write(BASE_SLICE, &self.tuned_slice_ns.to_string())?,
            (_, Some(s)) => write(BASE_SLICE, s.trim())?,
            (_, None) => {}
        }
        match (cfg, &self.credit_ref_default) {
            (SchedConfig::LagsInert, None) => {
                return Err(format!(
                    "{CREDIT_REF} missing: cannot run lags-inert (no LAGS or no debugfs)"
                ))
            }
            (SchedConfig::LagsInert, Some(_)) => write(CREDIT_REF, INERT_CREDIT_REF)?,
            (_, Some(r)) => write(CREDIT_REF, r.trim())?,
            (_, None) => {}
        }
        if cfg.needs_lags() && fs::metadata(SYSCTL_LAGS).is_ok() {
            write(SYSCTL_LAGS, "1")?;
        }
        set_lags(groups, cfg.needs_lags())
    }

    fn restore(&self) {
        put_back(&self.base_slice_default, &self.credit_ref_default);
    }
}

/// Writes the knobs' saved values back (`None`: the knob did not exist).
fn put_back(slice: &Option<String>, credit: &Option<String>) {
    if let Some(s) = slice {
        let _ = write(BASE_SLICE, s.trim());
    }
    if let Some(r) = credit {
        let _ = write(CREDIT_REF, r.trim());
    }
}

// ---------------------------------------------------------------------------------------
// One run

struct Ctx<'a> {
    plan: &'a Plan,
    cpus: usize,
    /// Measured total capacity in idle-CPU units (offered load is relative to it).
    capacity: f64,
    iters_per_ns: f64,
    shared: Shared,
    knobs: Knobs,
    epoch: u64,
    runs_done: usize,
    runs_total: usize,
    /// The function profiler, set up once when the plan asks for it (`lb.rd_ftrace`).
    ftrace: Option<ftrace::Ftrace>,
}

/// Whether the plan runs with `kernel.sched_schedstats` on (`lb.schedstats`).
static SCHEDSTATS: AtomicBool = AtomicBool::new(true);

/// The time, `/proc/stat` and `/proc/schedstat`; with schedstats off the kernel does not
/// count, so the schedstat part is empty (unknown, not zero).
fn snapshot() -> (u64, ProcStat, SchedStat) {
    let ss = if SCHEDSTATS.load(Ordering::Relaxed) {
        SchedStat::parse(&read("/proc/schedstat"))
    } else {
        SchedStat::default()
    };
    (now_ns(), ProcStat::read(), ss)
}

#[allow(clippy::too_many_arguments)]
fn run_once(
    ctx: &mut Ctx,
    out: &mut Out,
    fleet: &Fleet,
    funcs: &[Function],
    sweep: &str,
    cfg: &str,
    load: f64,
    rep: usize,
    seed: u64,
) -> Result<(), String> {
    let plan = ctx.plan;
    ctx.knobs.apply(cfg, &fleet.groups())?;
    let rate = rate_for_load(load, ctx.capacity, plan.mean_ms);
    let total_s = plan.warmup_s + plan.duration_s;
    let sched = make_schedule(funcs, rate, total_s, plan.req_sigma, seed);
    if sched.len() > ctx.shared.len {
        return Err(format!(
            "{} requests exceed the completion table ({})",
            sched.len(),
            ctx.shared.len
        ));
    }
    ctx.epoch += 1;
    let epoch = ctx.epoch;
    for i in 0..sched.len() {
        ctx.shared.done(i).store(0, Ordering::Relaxed);
    }
    ctx.shared.epoch().store(epoch, Ordering::Release);
    let warm_ns = (plan.warmup_s * 1e9) as u64;
    let end_ns = (total_s * 1e9) as u64;
    // Let the previous run's load credit and runqueues settle.
    std::thread::sleep(Duration::from_millis(300));
    let lags0 = fleet.lags_counters();
    let tasks0 = fleet.task_counters();

    if plan.fifo_dispatch {
        set_fifo(true);
    }
    let t0 = now_ns() + 10_000_000;
    let mut start_snap = None;
    let mut dropped = 0usize;
    let mut late_sum = 0u64;
    let mut late_max = 0u64;
    let mut msg = [0u8; MSG];
    for (i, r) in sched.iter().enumerate() {
        if i % 64 == 0 && host::stopping() {
            if plan.fifo_dispatch {
                set_fifo(false);
            }
            return Err("interrupted by a signal".into());
        }
        let due = t0 + r.t_ns;
        if now_ns() < due {
            sleep_until_ns(due);
        }
        if start_snap.is_none() && r.t_ns >= warm_ns {
            start_snap = Some(snapshot());
        }
        let now = now_ns();
        let late = now.saturating_sub(due);
        late_sum += late;
        late_max = late_max.max(late);
        msg[0..4].copy_from_slice(&(i as u32).to_le_bytes());
        msg[4..8].copy_from_slice(&(epoch as u32).to_le_bytes());
        let iters = (r.work_ns as f64 * ctx.iters_per_ns) as u64;
        msg[8..16].copy_from_slice(&iters.to_le_bytes());
        let w = &fleet.workers[r.func as usize];
        // SAFETY: msg is MSG bytes; the fd is a non-blocking pipe we own.
        let n = unsafe { libc::write(w.tx.as_raw_fd(), msg.as_ptr().cast(), MSG) };
        if n != MSG as isize {
            dropped += 1;
            ctx.shared.done(i).store(u64::MAX, Ordering::Relaxed);
        }
    }
    if now_ns() < t0 + end_ns {
        sleep_until_ns(t0 + end_ns);
    }
    let start_snap = start_snap.unwrap_or_else(snapshot);
    let end_snap = snapshot();
    set_fifo(false);
    // Drain: wait for the outstanding requests, bounded.
    let drain_limit = t0 + end_ns + ((plan.duration_s * 0.5).max(2.0) * 1e9) as u64;
    let mut first_pending = 0;
    loop {
        while first_pending < sched.len()
            && ctx.shared.done(first_pending).load(Ordering::Acquire) != 0
        {
            first_pending += 1;
        }
        let pending = (first_pending..sched.len())
            .filter(|&i| ctx.shared.done(i).load(Ordering::Acquire) == 0)
            .count();
        if pending == 0 || now_ns() > drain_limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Abort what is left: workers skip stale requests.
    ctx.epoch += 1;
    ctx.shared.epoch().store(ctx.epoch, Ordering::Release);
    let drain_ns = now_ns().saturating_sub(t0 + end_ns);
    let tasks1 = fleet.task_counters();
    let lags1 = fleet.lags_counters();

    // Per-request results of the measured window.
    let (ws, we) = (start_snap.0, end_snap.0);
    let mut all = Vec::new();
    let mut arrivals = Vec::new();
    let mut light = Vec::new();
    let mut heavy = Vec::new();
    let mut completed_in_window = 0usize;
    let mut completed_all = 0usize;
    let mut work_offered_ns = 0f64;
    let mut work_done_window_ns = 0f64;
    for (i, r) in sched.iter().enumerate() {
        let done = ctx.shared.done(i).load(Ordering::Acquire);
        let finished = done != 0 && done != u64::MAX;
        if finished {
            completed_all += 1;
            if done >= ws && done < we {
                completed_in_window += 1;
                work_done_window_ns += r.work_ns as f64;
            }
        }
        if r.t_ns < warm_ns || r.t_ns >= end_ns {
            continue;
        }
        work_offered_ns += r.work_ns as f64;
        let resp = if finished {
            done.saturating_sub(t0 + r.t_ns) as f64
        } else {
            f64::INFINITY
        };
        let s = (resp, r.work_ns as f64);
        all.push(s);
        arrivals.push((r.t_ns - warm_ns, resp, r.work_ns as f64));
        if funcs[r.func as usize].heavy {
            heavy.push(s);
        } else {
            light.push(s);
        }
    }
    let floor = plan.slo_floor_ms * 1e6;
    let window_s = (we - ws) as f64 / 1e9;
    let (util, kern) = end_snap.1.util_since(&start_snap.1);
    let ctxt = end_snap.1.ctxt.saturating_sub(start_snap.1.ctxt);
    let ss = end_snap.2.delta(&start_snap.2);
    let per = |x: f64| {
        if completed_in_window > 0 {
            Some(x / completed_in_window as f64)
        } else {
            None
        }
    };
    let tv = tasks1[0].saturating_sub(tasks0[0]);
    let ti = tasks1[1].saturating_sub(tasks0[1]);
    let texec = tasks1[2].saturating_sub(tasks0[2]);
    let twait = tasks1[3].saturating_sub(tasks0[3]);
    let s_all = summarize(&all, plan.slo_mult, floor);
    let s_light = summarize(&light, plan.slo_mult, floor);
    let s_heavy = summarize(&heavy, plan.slo_mult, floor);
    let total_work_ns: f64 = sched.iter().map(|r| r.work_ns as f64).sum();
    let lags = lags_delta(lags0, lags1);
    let rec = Record::Run(Box::new(RunRecord {
        sweep: sweep.to_string(),
        config: cfg.to_string(),
        funcs: funcs.len(),
        load,
        rep,
        seed,
        requests: sched.len(),
        measured: all.len(),
        dropped,
        window_s,
        drain_s: drain_ns as f64 / 1e9,
        cpus: ctx.cpus,
        capacity_cpus: ctx.capacity,
        offered_load: work_offered_ns / 1e9 / (plan.duration_s * ctx.capacity),
        achieved_load: work_done_window_ns / 1e9 / (window_s * ctx.capacity),
        throughput_rps: completed_in_window as f64 / window_s,
        cpu_util: util,
        cpu_kernel: kern,
        ctxt,
        ctxt_per_req: per(ctxt as f64),
        sched_count: ss.sched_count,
        schedule_per_req: if ss.cpus > 0 {
            per(ss.sched_count as f64)
        } else {
            None
        },
        ttwu: ss.ttwu_count,
        run_delay_ms: ss.run_delay_ns as f64 / 1e6,
        run_delay_ms_per_req: per(ss.run_delay_ns as f64 / 1e6),
        timeslices: ss.timeslices,
        worker_vol_cs: tv,
        worker_invol_cs: ti,
        worker_cs_per_req: if completed_all > 0 {
            Some((tv + ti) as f64 / completed_all as f64)
        } else {
            None
        },
        worker_exec_ms: texec as f64 / 1e6,
        worker_wait_ms: twait as f64 / 1e6,
        worker_wait_ms_per_req: if completed_all > 0 {
            Some(twait as f64 / 1e6 / completed_all as f64)
        } else {
            None
        },
        work_inflation: if total_work_ns > 0.0 {
            Some(texec as f64 / total_work_ns)
        } else {
            None
        },
        dispatch_late_mean_us: late_sum as f64 / sched.len().max(1) as f64 / 1e3,
        dispatch_late_max_us: late_max as f64 / 1e3,
        all: s_all.clone(),
        light: s_light.clone(),
        heavy: s_heavy,
        hist_all: histogram(all.iter().map(|s| s.0)),
        hist_light: histogram(light.iter().map(|s| s.0)),
        hist_heavy: histogram(heavy.iter().map(|s| s.0)),
        lags,
        per_second: per_arrival_second(
            &arrivals,
            (end_ns - warm_ns).div_ceil(1_000_000_000) as usize,
            plan.slo_mult,
            floor,
        ),
    }));
    out.record(&rec);
    ctx.runs_done += 1;
    let f = |x: Option<f64>| x.map_or("inf".to_string(), |v| format!("{v:.1}"));
    out.say(&format!(
        "run {}/{} {sweep} F={} load={load:.2} {cfg} rep={rep}: slo={:.2}% p99={}ms light-p99={}ms ctx/req={:.2} util={:.0}% late={:.0}us",
        ctx.runs_done,
        ctx.runs_total,
        funcs.len(),
        s_all.slo_attainment.unwrap_or(0.0) * 100.0,
        f(s_all.p99_ms),
        f(s_light.p99_ms),
        per(ctxt as f64).unwrap_or(0.0),
        util * 100.0,
        late_sum as f64 / sched.len().max(1) as f64 / 1e3,
    ));
    Ok(())
}

/// Runs every configuration at every point, interleaved: for each repetition and point the
/// configurations run back to back, in an order rotated per (repetition, point).
fn sweep(
    ctx: &mut Ctx,
    out: &mut Out,
    name: &str,
    funcs_n: usize,
    loads: &[f64],
    seed_tag: u64,
) -> Result<(), String> {
    let plan = ctx.plan;
    let funcs = make_functions(
        funcs_n,
        plan.zipf_s,
        plan.func_sigma,
        plan.mean_ms,
        plan.max_share,
        plan.seed,
    );
    let heavy = funcs.iter().filter(|f| f.heavy).count();
    out.say(&format!(
        "{name}: starting {funcs_n} function groups ({heavy} heavy) ..."
    ));
    let fleet = Fleet::start(funcs_n, &ctx.shared)?;
    out.record(&Record::Functions(FunctionsRecord {
        sweep: name.to_string(),
        funcs: funcs_n,
        functions: funcs.clone(),
    }));
    let n = plan.configs.len();
    let mut result = Ok(());
    'outer: for rep in 0..plan.reps {
        for (li, &load) in loads.iter().enumerate() {
            let seed = mix_seed(
                plan.seed,
                &[seed_tag, funcs_n as u64, li as u64, rep as u64],
            );
            for k in 0..n {
                let cfg = plan.configs[(k + rep + li) % n].clone();
                if let Err(e) = run_once(ctx, out, &fleet, &funcs, name, &cfg, load, rep, seed) {
                    result = Err(e);
                    break 'outer;
                }
            }
        }
    }
    ctx.knobs.restore();
    let _ = fleet.set_lags(false);
    fleet.stop();
    result
}

// ---------------------------------------------------------------------------------------
// Overhead probes

fn run_tool(cmd: &str, args: &[&str]) -> Result<String, String> {
    let o = std::process::Command::new(cmd)
        .args(args)
        .env("PATH", "/usr/bin:/bin:/sbin")
        .env("HOME", "/root")
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !o.status.success() {
        return Err(format!(
            "{cmd} {args:?} failed ({}): {}",
            o.status,
            text.trim()
        ));
    }
    Ok(text)
}

fn overhead(ctx: &mut Ctx, out: &mut Out) -> Result<(), String> {
    let plan = ctx.plan;
    let has_sysctl = fs::metadata(SYSCTL_LAGS).is_ok();
    let modes: Vec<&str> = if has_sysctl {
        vec!["off", "on-nogroups"]
    } else {
        vec!["kernel"]
    };
    let pipe_loops = plan.ov_pipe_loops.to_string();
    let groups = plan.ov_msg_groups.to_string();
    let msg_loops = plan.ov_msg_loops.to_string();
    let sw_t = plan.ov_switch_s.to_string();
    let total = plan.ov_reps * modes.len() * 3;
    let mut done = 0;
    for rep in 0..plan.ov_reps {
        for k in 0..modes.len() {
            let mode = modes[(k + rep) % modes.len()];
            match mode {
                "off" => write(SYSCTL_LAGS, "0")?,
                "on-nogroups" => write(SYSCTL_LAGS, "1")?,
                _ => {}
            }
            let probes: [(&str, &str, Vec<&str>); 3] = [
                (
                    "perf-pipe",
                    "/usr/bin/perf",
                    vec!["bench", "sched", "pipe", "-l", &pipe_loops],
                ),
                (
                    "perf-messaging",
                    "/usr/bin/perf",
                    vec![
                        "bench",
                        "sched",
                        "messaging",
                        "-p",
                        "-g",
                        &groups,
                        "-l",
                        &msg_loops,
                    ],
                ),
                (
                    "stress-switch",
                    "/usr/bin/stress-ng",
                    vec![
                        "--switch",
                        "2",
                        "--timeout",
                        &sw_t,
                        "--metrics-brief",
                        "--yaml",
                        "/tmp/sng.yaml",
                    ],
                ),
            ];
            for (name, cmd, args) in probes {
                done += 1;
                if fs::metadata(cmd).is_err() {
                    out.say(&format!(
                        "overhead: {cmd} not in the initramfs; skipping {name}"
                    ));
                    continue;
                }
                let _ = fs::remove_file("/tmp/sng.yaml");
                let t = now_ns();
                let res = run_tool(cmd, &args);
                let wall = (now_ns() - t) as f64 / 1e9;
                let (value, unit, higher_better, err) = match &res {
                    Ok(text) => match name {
                        "perf-pipe" => (parse_perf_pipe(text), "usecs/op", false, None),
                        "perf-messaging" => (parse_perf_total(text), "s", false, None),
                        _ => (
                            parse_stress_yaml(&read("/tmp/sng.yaml")),
                            "bogo-ops/s",
                            true,
                            None,
                        ),
                    },
                    Err(e) => (None, "", false, Some(e.clone())),
                };
                out.record(&Record::Overhead(OverheadRecord {
                    probe: name.to_string(),
                    mode: mode.to_string(),
                    rep,
                    value,
                    unit: unit.to_string(),
                    higher_is_better: higher_better,
                    wall_s: wall,
                    error: err.clone(),
                }));
                out.say(&format!(
                    "overhead {done}/{total} {name} {mode} rep={rep}: {} {unit}{}",
                    value.map_or("n/a".into(), |v| format!("{v:.3}")),
                    err.map_or(String::new(), |e| format!(
                        " ({})",
                        e.chars().take(200).collect::<String>()
                    ))
                ));
            }
        }
    }
    if has_sysctl {
        write(SYSCTL_LAGS, "1")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Main

fn env_record(
    plan: &Plan,
    cpus: usize,
    iters_per_ns: f64,
    capacity: f64,
    warnings: &[String],
) -> EnvRecord {
    let uname = {
        // SAFETY: utsname is plain data filled by the kernel.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        unsafe { libc::uname(&mut u) };
        let s = |a: &[libc::c_char]| {
            // SAFETY: uname NUL-terminates the fields.
            unsafe { std::ffi::CStr::from_ptr(a.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        };
        Uname {
            release: s(&u.release),
            version: s(&u.version),
            machine: s(&u.machine),
        }
    };
    let text = |p: &str| read(p).trim().to_string();
    EnvRecord {
        uname,
        proc_version: text("/proc/version"),
        cmdline: text("/proc/cmdline"),
        cpus,
        spin_iters_per_ns: iters_per_ns,
        sched_lags_sysctl: text(SYSCTL_LAGS),
        base_slice_ns: text(BASE_SLICE),
        lags_credit_period_ns: text("/sys/kernel/debug/sched/lags/credit_period_ns"),
        lags_starve_ns: text("/sys/kernel/debug/sched/lags/starve_ns"),
        schedstat_version: read("/proc/schedstat")
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        plan: plan.clone(),
        warnings: warnings.to_vec(),
        capacity_cpus: capacity,
        cgroup: format!(
            "{} {}",
            if groups().v2 {
                "cgroup2"
            } else {
                "cgroup v1 cpu"
            },
            groups().parent
        ),
        host_mode: groups().host,
    }
}

fn setup_cgroups() -> Result<(), String> {
    let g = groups();
    if g.v2 {
        write(&format!("{}/cgroup.subtree_control", g.hierarchy), "+cpu")?;
    }
    fs::create_dir_all(&g.parent).map_err(|e| format!("mkdir {}: {e}", g.parent))?;
    if g.v2 {
        write(&format!("{}/cgroup.subtree_control", g.parent), "+cpu")?;
    }
    Ok(())
}

fn bench(out: &mut Out, plan: &Plan, warnings: &[String]) -> Result<usize, String> {
    // SAFETY: plain sysconf/prctl/setrlimit calls.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64);
        let lim = libc::rlimit {
            rlim_cur: 65536,
            rlim_max: 65536,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    SCHEDSTATS.store(plan.schedstats, Ordering::Relaxed);
    let _ = write(
        "/proc/sys/kernel/sched_schedstats",
        if plan.schedstats { "1" } else { "0" },
    );
    out.say("calibrating the spin loop ...");
    let ipn = calibrate();
    let capacity = calibrate_capacity(cpus, ipn);
    out.say(&format!(
        "{cpus} CPUs, measured capacity {capacity:.2} CPUs, spin loop {:.1} iterations/us; plan parts={} configs={} reps={}",
        ipn * 1e3,
        plan.parts.join(","),
        plan.configs.join(","),
        plan.reps
    ));
    for w in warnings {
        out.say(&format!("warning: {w}"));
    }
    out.record(&Record::Env(Box::new(env_record(
        plan, cpus, ipn, capacity, warnings,
    ))));

    let rdhashd = plan.workload == Workload::Rdhashd;
    let knative = plan.workload == Workload::Knative;
    let mut runs_total = 0;
    let mut max_rate: f64 = 0.0;
    if rdhashd && plan.has("density") {
        runs_total += plan.rd.funcs.len() * plan.rd.scales.len() * plan.reps * plan.configs.len();
    }
    if knative && plan.has("density") {
        runs_total += plan.kn.users.len() * plan.reps * plan.configs.len();
    }
    if !rdhashd && !knative && plan.has("load") {
        runs_total += plan.loads.len() * plan.reps * plan.configs.len();
        for &l in &plan.loads {
            max_rate = max_rate.max(rate_for_load(l, capacity, plan.mean_ms));
        }
    }
    if !rdhashd && !knative && plan.has("density") {
        runs_total += plan.density.len() * plan.reps * plan.configs.len();
        max_rate = max_rate.max(rate_for_load(plan.density_load, capacity, plan.mean_ms));
    }
    let slots = ((max_rate * (plan.warmup_s + plan.duration_s)) * 1.5) as usize + 10_000;
    let mut ctx = Ctx {
        plan,
        cpus,
        capacity,
        iters_per_ns: ipn,
        shared: Shared::new(slots),
        knobs: Knobs::new(plan.tuned_slice_ns),
        epoch: 0,
        runs_done: 0,
        runs_total,
        ftrace: None,
    };
    SchedConfig::check(&plan.configs)?;
    // Only the closed-loop sweeps use it (a --baseline-kernel boot runs the probes alone).
    if plan.rd.ftrace && plan.has("density") {
        if !(rdhashd || knative) {
            return Err(
                "lb.rd_ftrace: only the closed-loop workloads (rdhashd, knative) \
                        measure the time inside schedule()"
                    .into(),
            );
        }
        ctx.ftrace = Some(ftrace::Ftrace::setup()?);
    }
    if let Some(w) = ctx.knobs.warning() {
        out.say(&w);
    }
    let mut errors = 0;
    // Overhead first: no function groups exist yet ("on, no LAGS groups").
    if plan.has("overhead") {
        if let Err(e) = overhead(&mut ctx, out) {
            errors += 1;
            out.say(&format!("error: overhead: {e}"));
        }
    }
    if plan.has("load") || plan.has("density") {
        setup_cgroups()?;
    }
    if knative {
        if plan.has("load") {
            errors += 1;
            out.say("error: the load part belongs to the zipf-open workload; knative has none");
        }
        if plan.has("density") {
            if let Err(e) = knative::sweep(&mut ctx, out) {
                errors += 1;
                out.say(&format!("error: knative: {e}"));
            }
        }
        return Ok(errors);
    }
    if rdhashd {
        if plan.has("load") {
            errors += 1;
            out.say("error: the load part belongs to the zipf-open workload; rdhashd has none");
        }
        if plan.has("density") {
            for &n in &plan.rd.funcs {
                if host::stopping() {
                    return Err("interrupted by a signal".into());
                }
                if let Err(e) = rdhashd::sweep(&mut ctx, out, n) {
                    errors += 1;
                    out.say(&format!("error: rdhashd F={n}: {e}"));
                }
            }
        }
        return Ok(errors);
    }
    if plan.has("load") && !host::stopping() {
        if let Err(e) = sweep(&mut ctx, out, "load", plan.funcs, &plan.loads, 1) {
            errors += 1;
            out.say(&format!("error: load sweep: {e}"));
        }
    }
    if plan.has("density") {
        for &n in &plan.density {
            if host::stopping() {
                return Err("interrupted by a signal".into());
            }
            if let Err(e) = sweep(&mut ctx, out, "density", n, &[plan.density_load], 2) {
                errors += 1;
                out.say(&format!("error: density sweep F={n}: {e}"));
            }
        }
    }
    Ok(errors)
}

/// How the controller was started: PID 1 of the guest, or `--host` on a running system.
struct Mode {
    pid1: bool,
    host: Option<host::HostArgs>,
}

/// Host mode's setup: the hierarchy, the removal of stale groups, the signal handlers.
fn host_setup(out: &Out) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("--host needs root: it creates cgroups and writes scheduler tunables".into());
    }
    let h = host::find_hierarchy()?;
    for name in host::remove_stale(&h.path) {
        out.say(&format!(
            "removed {}/{name}, left by a run that was killed",
            h.path
        ));
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let g = Groups {
        parent: format!("{}/{}", h.path, host::parent_name(pid)),
        hierarchy: h.path,
        v2: h.v2,
        host: true,
    };
    out.say(&format!(
        "host mode: function groups under {} ({})",
        g.parent,
        if g.v2 {
            "cgroup v2"
        } else {
            "cgroup v1, cpu controller"
        }
    ));
    let _ = GROUPS.set(g);
    if fs::metadata(BASE_SLICE).is_err() {
        // The tuned baseline writes base_slice_ns; mounting debugfs is idempotent.
        let _ = mount("debugfs", "/sys/kernel/debug", "debugfs");
    }
    host::install_signal_handlers();
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match host::parse_args(&args) {
        Ok(host) => Mode {
            // SAFETY: getpid has no preconditions.
            pid1: host.is_none() && unsafe { libc::getpid() } == 1,
            host,
        },
        Err(e) => {
            eprintln!("lags-bench: {e}");
            std::process::exit(2);
        }
    };
    let mut mount_errs = Vec::new();
    if mode.pid1 {
        mount_errs = mount_all();
    }
    let mut out = match &mode.host {
        Some(h) => Out {
            kmsg: None,
            data: match File::create(&h.data) {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!("lags-bench: create {}: {e}", h.data);
                    std::process::exit(2);
                }
            },
        },
        None => {
            let _ = write("/proc/sys/kernel/printk_devkmsg", "on");
            Out {
                kmsg: OpenOptions::new().write(true).open("/dev/kmsg").ok(),
                data: open_data_port(path::DATA_TTY),
            }
        }
    };
    out.line(&marker::bench_start());
    for e in &mount_errs {
        out.say(&format!("warning: {e}"));
    }
    if mode.host.is_none() && out.data.is_none() {
        out.say("warning: /dev/ttyS1 unavailable; results are only on the console");
    }
    let (plan, warnings) = match &mode.host {
        Some(h) => Plan::from_cmdline(&h.params.join(" ")),
        None => Plan::from_cmdline(&read("/proc/cmdline")),
    };
    let schedstats = read("/proc/sys/kernel/sched_schedstats");
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if mode.host.is_some() {
            host_setup(&out)?;
        }
        bench(&mut out, &plan, &warnings)
    }));
    if mode.host.is_some() {
        if let Some(g) = GROUPS.get() {
            host::remove_tree(&g.parent);
        }
        if !schedstats.trim().is_empty() {
            let _ = write("/proc/sys/kernel/sched_schedstats", schedstats.trim());
        }
        // A panic skips the sweeps' own restore.
        Knobs::restore_found();
    }
    let (status, errors) = match res {
        Ok(Ok(e)) => (if e == 0 { Status::Ok } else { Status::Errors }, e),
        Ok(Err(e)) => {
            out.say(&format!("error: {e}"));
            (Status::Error, 1)
        }
        Err(p) => {
            let m = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            out.say(&format!("error: panic: {m}"));
            (Status::Panic, 1)
        }
    };
    out.record(&Record::Done(DoneRecord { status, errors }));
    if mode.host.is_none() {
        if let Some(d) = &out.data {
            drain(d);
        }
    }
    out.line(&format!(
        "{} status={} errors={errors}",
        marker::RUNNER_DONE,
        status.as_str()
    ));
    if mode.pid1 {
        power_off(&out);
    }
    if mode.host.is_some() {
        std::process::exit(i32::from(status != Status::Ok));
    }
}
