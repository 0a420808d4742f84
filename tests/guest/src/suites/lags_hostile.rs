// SPDX-License-Identifier: GPL-2.0
//! `lags_hostile`: hostile input and privilege checks for the LAGS interfaces.
//!
//! * Fuzzing: `cpu.lags`, `kernel.sched_lags` and every file in debugfs `sched/lags/` get
//!   boundary and seeded-random writes (lengths 0 to a page, signs, overflow, embedded NULs,
//!   non-ASCII). Each input is checked against a model of the kernel's parser (the LAGS
//!   handlers in patches 5 and 6, `proc_dointvec_minmax()` for the sysctl): an invalid write
//!   must fail with EINVAL and change nothing, a valid one must return the accepted length
//!   and take effect, and the value read back must always be valid. A zero-length write may
//!   return 0 (kernfs and sysctl never call the handler) or EINVAL, and must change nothing.
//!   The seed is printed (`lags.seed=` reproduces a run).
//! * Privilege: an unprivileged user, a delegated cgroup v2 subtree (with `nsdelegate`) and
//!   root in a new user namespace must all be unable to set `cpu.lags`.
//!
//! Not in the default suite list; `cargo xtask robustness` runs it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use lags_pid1::futex::{futex_wait, futex_wake_all};
use std::time::Duration;

use super::lags_iface::{lags_group, need_lags, DEBUGFS_DIR, SYSCTL};
use super::lags_stress::report;
use super::{ensure, fail, skip, Ctx, OrFail, Stop, Suite, Test, TestResult};
use crate::util::NOBODY;
use crate::util::{self, Cgroup, Restore, Worker, WorkerIo, CGROUP2_ROOT};

pub const SUITE: Suite = Suite {
    name: "lags_hostile",
    tests: &[
        Test {
            name: "fuzz_cpu_lags",
            run: fuzz_cpu_lags,
        },
        Test {
            name: "fuzz_sysctl",
            run: fuzz_sysctl,
        },
        Test {
            name: "fuzz_debugfs_tunables",
            run: fuzz_debugfs_tunables,
        },
        Test {
            name: "extreme_request_arithmetic",
            run: extreme_request_arithmetic,
        },
        Test {
            name: "unprivileged_denied",
            run: unprivileged_denied,
        },
        Test {
            name: "delegated_subtree_denied",
            run: delegated_subtree_denied,
        },
        Test {
            name: "userns_root_denied",
            run: userns_root_denied,
        },
    ],
};

const PAGE: usize = 4096;
/// Random inputs per target after the boundary list.
const RANDOM_INPUTS: usize = 1500;
const CAP_SYS_NICE: u32 = 23;
/// Mismatch lines printed per target (the count is always printed).
const MAX_REPORTED: usize = 15;

// ---------------------------------------------------------------------------------------
// Models of the kernel parsers

/// What the kernel must do with one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A zero-length write: 0 or EINVAL, no change.
    Empty,
    /// EINVAL, no change.
    Invalid,
    /// Accepted: the write returns `consumed` and the value becomes `value`.
    Valid { value: u64, consumed: usize },
}

/// `cpu_lags_write()` (patch 5): exactly "0" or "1", optionally followed by one newline.
pub fn model_cpu_lags(b: &[u8]) -> Expect {
    match b {
        [] => Expect::Empty,
        [c] | [c, b'\n'] if *c == b'0' || *c == b'1' => Expect::Valid {
            value: u64::from(*c - b'0'),
            consumed: b.len(),
        },
        _ => Expect::Invalid,
    }
}

/// `sched_lags_tunable_write()` (patch 6): fewer than 24 bytes, no NUL, then
/// `kstrtou64(buf, 10)` (optional '+', decimal digits, one optional trailing newline, no
/// overflow) and `min <= value <= max`.
pub fn model_tunable(b: &[u8], min: u64, max: u64) -> Expect {
    if b.is_empty() {
        return Expect::Empty;
    }
    if b.len() >= 24 || b.contains(&0) {
        return Expect::Invalid;
    }
    let mut s = b;
    if s[0] == b'+' {
        s = &s[1..];
    }
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Expect::Invalid;
    }
    let rest = &s[digits..];
    if !(rest.is_empty() || rest == b"\n") {
        return Expect::Invalid;
    }
    let mut v: u64 = 0;
    for &c in &s[..digits] {
        match v
            .checked_mul(10)
            .and_then(|x| x.checked_add(u64::from(c - b'0')))
        {
            Some(x) => v = x,
            None => return Expect::Invalid,
        }
    }
    if v < min || v > max {
        return Expect::Invalid;
    }
    Expect::Valid {
        value: v,
        consumed: b.len(),
    }
}

/// The kernel's isspace() (lib/ctype.c: 9-13, space and 0xA0).
fn kspace(c: u8) -> bool {
    matches!(c, 9..=13 | 32 | 0xa0)
}

/// `proc_dointvec_minmax()` with min 0 and max 1 on a single int, as
/// `sched_lags_sysctl_handler()` (patch 1) uses it: leading whitespace, an optional '-', a
/// number in C notation (`strtoul` base 0: 0x hex, leading-0 octal), at most 20 characters
/// with the sign, followed by whitespace or the end; trailing whitespace is consumed and
/// anything after it is left unconsumed (a short write).
pub fn model_sysctl(b: &[u8]) -> Expect {
    const TMPBUFLEN: usize = 22;
    let count = b.len();
    if count == 0 {
        return Expect::Empty;
    }
    let mut left = count.min(PAGE - 1);
    let mut p = 0;
    while left > 0 && kspace(b[p]) {
        p += 1;
        left -= 1;
    }
    if left == 0 {
        return Expect::Invalid;
    }
    // proc_get_long() on a NUL-terminated copy of at most TMPBUFLEN - 1 bytes.
    let len = left.min(TMPBUFLEN - 1);
    let at = |i: usize| if i < len { b[p + i] } else { 0 };
    let mut q = 0;
    let neg = at(0) == b'-' && left > 1;
    if neg {
        q = 1;
    }
    if !at(q).is_ascii_digit() {
        return Expect::Invalid;
    }
    let base: u64 = if at(q) == b'0' {
        if at(q + 1) | 0x20 == b'x' && at(q + 2).is_ascii_hexdigit() {
            q += 2;
            16
        } else {
            8
        }
    } else {
        10
    };
    let mut val: u64 = 0;
    let mut overflow = false;
    loop {
        let c = at(q);
        let d = match c {
            b'0'..=b'9' => u64::from(c - b'0'),
            _ if (b'a'..=b'f').contains(&(c | 0x20)) => u64::from((c | 0x20) - b'a' + 10),
            _ => break,
        };
        if d >= base {
            break;
        }
        match val.checked_mul(base).and_then(|x| x.checked_add(d)) {
            Some(x) => val = x,
            None => {
                overflow = true;
                val = val.wrapping_mul(base).wrapping_add(d);
            }
        }
        q += 1;
    }
    if overflow {
        return Expect::Invalid;
    }
    if q == TMPBUFLEN - 1 {
        return Expect::Invalid;
    }
    if q < left && !matches!(at(q), b' ' | b'\t' | b'\n') {
        return Expect::Invalid;
    }
    p += q;
    left -= q;
    // do_proc_dointvec_conv() then the min/max check.
    let v: i64 = if neg {
        if val > (i32::MAX as u64) + 1 {
            return Expect::Invalid;
        }
        -(val as i64)
    } else {
        if val > i32::MAX as u64 {
            return Expect::Invalid;
        }
        val as i64
    };
    if !(0..=1).contains(&v) {
        return Expect::Invalid;
    }
    while left > 0 && kspace(b[p]) {
        p += 1;
        left -= 1;
    }
    Expect::Valid {
        value: v as u64,
        consumed: count - left,
    }
}

// ---------------------------------------------------------------------------------------
// Inputs

/// Boundary inputs every target gets; `extra` adds target-specific numbers.
fn boundary_inputs(extra: &[u64]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        &b""[..],
        b"0",
        b"1",
        b"0\n",
        b"1\n",
        b"2",
        b"-1",
        b"-0",
        b"+1",
        b"+0",
        b" 1",
        b"1 ",
        b"\t1\n",
        b"01",
        b"00",
        b"0x1",
        b"0X0",
        b"0x",
        b"08",
        b"1\0",
        b"\0",
        b"\0\0\0",
        b"\n",
        b" ",
        b"-",
        b"+",
        b"1\n\n",
        b"1\n2",
        b"1 2",
        b"1\x0b",
        b"\xa01",
        b"1\xa0",
        b"\xff\xfe",
        "\u{ff11}".as_bytes(),
        "1\u{e9}".as_bytes(),
        "\u{0661}".as_bytes(),
        b"18446744073709551615",
        b"18446744073709551616",
        b"99999999999999999999999999999",
        b"-9223372036854775808",
        b"2147483647",
        b"2147483648",
        b"-2147483648",
        b"-2147483649",
        b"4294967296",
        b"4294967297",
        b"000000000000000000001",
        b"00000000000000000001",
        b"1e3",
        b"1.0",
        b"true",
        b"on",
        b"y",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    for &n in extra {
        for x in [n.saturating_sub(1), n, n.saturating_add(1)] {
            v.push(x.to_string().into_bytes());
            v.push(format!("{x}\n").into_bytes());
            v.push(format!("+{x}").into_bytes());
        }
    }
    for (fill, tail) in [(b'1', &b""[..]), (b'0', b""), (b' ', b"1"), (b'0', b"1")] {
        for len in [23, 24, 25, 64, PAGE - 1, PAGE] {
            let mut s = vec![fill; len - tail.len()];
            s.extend_from_slice(tail);
            v.push(s);
        }
    }
    v
}

fn pick<'a>(rng: &mut util::Rng, items: &[&'a [u8]]) -> &'a [u8] {
    items[rng.below(items.len() as u64) as usize]
}

/// One seeded random input: a number in some notation with decorations, or random bytes.
fn random_input(rng: &mut util::Rng, numbers: &[u64]) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"",
        b"\n",
        b"\n\n",
        b" ",
        b"\t",
        b"\0",
        b"x",
        b"-",
        b"+",
        b"0x",
        b"0",
        b"\xa0",
        b"\xff",
        b"\xc3\xa9",
        b"\r",
        b"\x0b",
    ];
    match rng.below(10) {
        // Structured: prefix, sign, number, suffix.
        0..=5 => {
            let mut s = Vec::new();
            const PREFIXES: &[&[u8]] = &[b"", b"", b"", b" ", b"\t", b"\xa0", b"\0"];
            const SIGNS: &[&[u8]] = &[b"", b"", b"", b"-", b"+", b"--"];
            s.extend_from_slice(pick(rng, PREFIXES));
            s.extend_from_slice(pick(rng, SIGNS));
            let n = match rng.below(6) {
                0 => rng.below(3),
                1 => *rng.pick(numbers),
                2 => rng
                    .pick(numbers)
                    .saturating_add(rng.below(3))
                    .saturating_sub(1),
                3 => rng.next_u64(),
                4 => rng.next_u64() >> rng.below(64),
                _ => rng.below(1 << 40),
            };
            match rng.below(5) {
                0 => s.extend_from_slice(format!("{n:#x}").as_bytes()),
                1 => s.extend_from_slice(format!("0{n:o}").as_bytes()),
                2 => s.extend_from_slice(format!("{n:030}").as_bytes()),
                _ => s.extend_from_slice(n.to_string().as_bytes()),
            }
            s.extend_from_slice(pick(rng, PIECES));
            if rng.below(4) == 0 {
                s.extend_from_slice(pick(rng, PIECES));
            }
            s
        }
        // Random bytes of a random length up to a page.
        6..=7 => {
            let len = match rng.below(4) {
                0 => rng.below(4) as usize,
                1 => rng.below(32) as usize,
                2 => rng.below(PAGE as u64 + 1) as usize,
                _ => PAGE,
            };
            (0..len).map(|_| rng.next_u64() as u8).collect()
        }
        // Random digits and separators.
        _ => {
            let len = rng.below(30) as usize;
            (0..len).map(|_| *rng.pick(b"0123456789 \n-+x\0")).collect()
        }
    }
}

// ---------------------------------------------------------------------------------------
// The fuzz driver

/// One fuzz target: where to write, where to read back, the model and what a valid value is.
struct Target<'a> {
    name: String,
    path: PathBuf,
    model: &'a dyn Fn(&[u8]) -> Expect,
    /// Parses a read-back value; `None` = invalid text.
    parse: &'a dyn Fn(&str) -> Option<u64>,
    valid: &'a dyn Fn(u64) -> bool,
    numbers: Vec<u64>,
}

#[derive(Default)]
struct Tally {
    inputs: u64,
    invalid: u64,
    valid: u64,
    empty: u64,
    mismatches: u64,
}

fn fuzz(ctx: &mut Ctx, t: &Target, seed: u64, deadline: u64) -> Result<Tally, Stop> {
    let mut rng = util::Rng::new(seed);
    let mut inputs = boundary_inputs(&t.numbers);
    let fixed = inputs.len();
    inputs.extend((0..RANDOM_INPUTS).map(|_| random_input(&mut rng, &t.numbers)));
    let read = |what: &str| -> Result<u64, Stop> {
        let text = util::read_file(&t.path).or_fail(&format!("reading {}", t.name))?;
        match (t.parse)(&text) {
            Some(v) if (t.valid)(v) => Ok(v),
            _ => fail(format!(
                "{}: read back invalid text {text:?} {what}",
                t.name
            )),
        }
    };
    let mut tally = Tally::default();
    for (i, input) in inputs.iter().enumerate() {
        if i >= fixed && util::now_ns() > deadline {
            ctx.diag(format!("{}: time budget used up after {i} inputs", t.name));
            break;
        }
        let before = read("before a write")?;
        let expect = (t.model)(input);
        let r = util::write_count(&t.path, input);
        let after = read(&format!("after writing {}", util::show_bytes(input)))?;
        tally.inputs += 1;
        let ok = match expect {
            Expect::Empty => {
                tally.empty += 1;
                after == before && (matches!(r, Ok(0)) || util::errno_of(&r) == Some(libc::EINVAL))
            }
            Expect::Invalid => {
                tally.invalid += 1;
                after == before && util::errno_of(&r) == Some(libc::EINVAL)
            }
            Expect::Valid { value, consumed } => {
                tally.valid += 1;
                after == value && matches!(r, Ok(n) if n == consumed)
            }
        };
        if !ok {
            tally.mismatches += 1;
            if tally.mismatches as usize <= MAX_REPORTED {
                let got = match &r {
                    Ok(n) => format!("wrote {n} of {}", input.len()),
                    Err(e) => util::describe_err(e),
                };
                ctx.diag(format!(
                    "FAIL: {} input #{i} {} (len {}): expected {expect:?}, got {got}; value {before} -> {after}",
                    t.name,
                    util::show_bytes(input),
                    input.len()
                ));
            }
        }
    }
    ctx.diag(format!(
        "{}: {} inputs ({} boundary, seed {seed}): {} invalid, {} valid, {} empty; {} mismatches",
        t.name, tally.inputs, fixed, tally.invalid, tally.valid, tally.empty, tally.mismatches
    ));
    Ok(tally)
}

fn seed_of(ctx: &Ctx) -> u64 {
    ctx.cfg.seed.unwrap_or_else(|| util::now_ns() ^ 0x5eed)
}

fn deadline_of(ctx: &Ctx) -> u64 {
    util::now_ns() + (ctx.cfg.stress_secs * 1_000_000_000 / 3).max(5_000_000_000)
}

fn parse_u64(text: &str) -> Option<u64> {
    let t = text.strip_suffix('\n')?;
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn fuzz_report(ctx: &mut Ctx, test: &str, tallies: &[Tally], seed: u64) {
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    report(
        ctx,
        test,
        &[
            ("ops", sum(|t| t.inputs)),
            ("faults", 0),
            ("invalid", sum(|t| t.invalid)),
            ("valid", sum(|t| t.valid)),
            ("mismatches", sum(|t| t.mismatches)),
            ("seed", seed),
        ],
    );
    let bad = sum(|t| t.mismatches);
    ctx.check(bad == 0, || {
        format!(
            "{test}: expected every write to match the model, got {bad} mismatches (seed {seed})"
        )
    });
}

/// A spinner in `cg` until stopped, so that writes land on a group with a running task.
fn busy_in(cg: &Cgroup) -> Result<Worker, Stop> {
    let mut w = Worker::spawn(|io: &mut WorkerIo| {
        while !io.stop_requested() {
            util::spin_cpu_ns(1_000_000);
        }
        0
    })
    .or_fail("fork")?;
    w.start_in(cg, None).or_fail("starting a spinner")?;
    Ok(w)
}

// ---------------------------------------------------------------------------------------
// Arithmetic at the ends of the ranges

/// Busy nice -20 threads in the root cgroup on the loaded CPU: 1500 x 88761 of weight.
const HEAVY_THREADS: usize = 1500;
/// How long the loaded CPU stays loaded while the member's entity is placed there.
const EXTREME_PHASE_MS: u64 = 3_000;

/// A worker that sets its nice value, then runs `threads` spinning threads (at least one,
/// its own) until killed, or with `sleeper`, blocks and wakes for 0.1 ms of work at each
/// further "go" byte, so that its group's entity is placed on its CPU exactly then (a task
/// that just sleeps could be queued, and its entity with it, when the load arrives, and
/// then never leave). With more than one thread it creates them blocked,
/// sends `spawned=N` and lets them all spin at the next "go" byte (creating 1500 threads
/// while the earlier ones spin would take minutes).
fn niced_load(nice: i32, threads: usize, sleeper: bool) -> impl FnOnce(&mut WorkerIo) -> i32 {
    move |io: &mut WorkerIo| {
        // SAFETY: setpriority has no memory-safety preconditions; 0 means this thread,
        // whose nice value the threads spawned below inherit.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
            io.send_kv("error", "setpriority");
            return 1;
        }
        if sleeper {
            while io.wait_go() {
                util::spin_cpu_ns(100_000);
            }
            return 0;
        }
        // A futex, not a Barrier: a Barrier's waiters leave through its mutex one at a time,
        // each needing a turn on the loaded CPU, which with a 4 s slice takes hours.
        let start: &'static AtomicU32 = Box::leak(Box::new(AtomicU32::new(0)));
        // Threads that reached the wait. `spawned` is sent only when all have: a thread
        // still starting up (stack, signal stack) can queue on mmap_lock, whose waiters
        // leave one slice at a time once the slice is 4 s.
        let ready: &'static AtomicU32 = Box::leak(Box::new(AtomicU32::new(0)));
        for _ in 1..threads {
            if std::thread::Builder::new()
                .spawn(move || {
                    ready.fetch_add(1, Ordering::AcqRel);
                    while start.load(Ordering::Acquire) == 0 {
                        futex_wait(start, 0, 1_000_000_000);
                    }
                    loop {
                        util::spin_cpu_ns(1_000_000);
                    }
                })
                .is_err()
            {
                io.send_kv("error", "spawning a thread");
                return 1;
            }
        }
        if threads > 1 {
            let deadline = util::now_ns() + 60_000_000_000;
            while (ready.load(Ordering::Acquire) as usize) < threads - 1 {
                if util::now_ns() > deadline {
                    io.send_kv("error", "threads not ready after 60 s");
                    return 1;
                }
                util::sleep_ms(1);
            }
            io.send_kv("spawned", threads);
            if !io.wait_go() {
                return 0;
            }
        }
        start.store(1, Ordering::Release);
        futex_wake_all(start);
        loop {
            util::spin_cpu_ns(1_000_000);
        }
    }
}

// Expect the request arithmetic to survive the ends of the valid ranges: base_slice_ns at its
// maximum (u32), credit_ref_pct=1, and a LAGS group whose credit comes from a CPU it has to
// itself while its entity on another CPU has the minimum weight (cpu.weight 1 and a nice 19
// task there) under 1500 busy nice -20 threads. Its credit relative to that entitlement is
// then ~6e13 in Q20, and slice * rho / rho_ref passes 64 bits: before the saturation of rho
// the x86-64 mul_u64_u64_div_u64() raised a divide error under the rq lock. The kernel must
// carry on, log no divide error, and give the group the longest request (its credit stays
// readable, the CPU it has to itself stays busy).
fn extreme_request_arithmetic(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let cpus = util::online_cpus().or_fail("online CPUs")?;
    let [loaded, own, ..] = cpus[..] else {
        return skip(
            "needs 2 CPUs: the group's credit comes from one, its entity sits on the other",
        );
    };
    let _runner = util::AffinityGuard::pin_self(&[own]).or_fail("pinning the runner")?;
    let before = util::kernel_log().or_fail("reading /dev/kmsg")?.len();
    let cg = lags_group("hostile-extreme")?;
    cg.write("cpu.weight", "1").or_fail("cpu.weight 1")?;
    cg.write("cpu.lags", "1").or_fail("cpu.lags 1")?;
    let mut spinner = Worker::spawn(niced_load(-20, 1, false)).or_fail("fork")?;
    spinner
        .start_in(&cg, Some(own))
        .or_fail("starting the group's spinner")?;
    let mut sleeper = Worker::spawn(niced_load(19, 1, true)).or_fail("fork")?;
    sleeper
        .start_in(&cg, Some(loaded))
        .or_fail("starting the group's sleeper")?;
    // tau = 1 s: after 2 s the credit is ~0.86 CPU.
    util::sleep_ms(2_000);
    // One wake-up of the sleeper now, so that its entity's weight is recomputed with the
    // spinner's full load on the other CPU: the minimum, 2.
    sleeper.go().or_fail("waking the group's sleeper")?;
    util::sleep_ms(100);
    let credit = cg.cpu_stat("lags_credit_mcpu").map_err(Stop::Fail)?;
    let mut heavy = Worker::spawn(niced_load(-20, HEAVY_THREADS, false)).or_fail("fork")?;
    util::set_affinity(heavy.pid(), &[loaded]).or_fail("pinning the heavy threads")?;
    heavy.go().or_fail("starting the heavy worker")?;
    heavy
        .read_line_until("spawned", Duration::from_secs(60))
        .or_fail("creating the heavy threads")?;
    // Release the threads with the stock slice and wait until they all run: on the debug
    // kernel, with the 4 s slice already set, 1498 of 1500 were still waiting for their
    // wake-up 300 ms later.
    heavy.go().or_fail("releasing the heavy threads")?;
    let deadline = util::now_ns() + 60_000_000_000;
    let mut states = thread_states(heavy.pid());
    while states.running < HEAVY_THREADS && util::now_ns() < deadline {
        util::sleep_ms(50);
        states = thread_states(heavy.pid());
    }
    ctx.diag(format!("heavy threads by state: {}", states.text));
    let slice =
        util::Restore::save("/sys/kernel/debug/sched/base_slice_ns").or_fail("base_slice_ns")?;
    let ref_pct =
        util::Restore::save(format!("{DEBUGFS_DIR}/credit_ref_pct")).or_fail("credit_ref_pct")?;
    util::write_file(
        "/sys/kernel/debug/sched/base_slice_ns",
        u32::MAX.to_string(),
    )
    .or_fail("base_slice_ns = u32::MAX")?;
    util::write_file(format!("{DEBUGFS_DIR}/credit_ref_pct"), "1").or_fail("credit_ref_pct = 1")?;
    // The group's entity joins the loaded CPU now, with the load and the tunables in place.
    sleeper.go().or_fail("waking the group's sleeper")?;
    let heavy_cgroup = util::read_trimmed(format!("/proc/{}/cgroup", heavy.pid()))
        .unwrap_or_else(|e| format!("? ({e})"));
    util::sleep_ms(100);
    // The regime the test is about, as sched/debug shows it on the loaded CPU: the group
    // entity's weight and the load of the root runqueue it is queued on.
    let dbg = util::read_file("/sys/kernel/debug/sched/debug").or_fail("sched/debug")?;
    let (weight, load) = entity_weight_and_load(&dbg, loaded, "/hostile-extreme");
    let u0 = cg.cpu_stat("usage_usec").map_err(Stop::Fail)?;
    util::sleep_ms(EXTREME_PHASE_MS);
    let u1 = cg.cpu_stat("usage_usec").map_err(Stop::Fail)?;
    // The short slice back first, so that the killed threads get to run and exit.
    drop(slice);
    drop(ref_pct);
    heavy.kill();
    sleeper.kill();
    spinner.kill();
    let log = util::kernel_log().or_fail("reading /dev/kmsg")?;
    let faults: Vec<&String> = log
        .iter()
        .skip(before)
        .filter(|l| l.contains("divide error") || l.contains("Oops") || l.contains("BUG:"))
        .collect();
    ctx.diag(format!(
        "credit before the load {credit} mcpu; the group used {} us of CPU in {} ms with \
         {HEAVY_THREADS} nice -20 threads on CPU {loaded} (cgroup {heavy_cgroup}); kernel log: \
         {} fault lines",
        u1.saturating_sub(u0),
        EXTREME_PHASE_MS,
        faults.len()
    ));
    ensure!(
        faults.is_empty(),
        "the kernel logged a fault: {}",
        faults.first().map_or("", |l| l.as_str())
    );
    // rho = credit * load / w in Q20, and the product the kernel divides by rho_ref.
    let rho = (credit as u128 * (1 << 20) / 1000) * load.unwrap_or(0) as u128
        / weight.unwrap_or(u64::MAX).max(1) as u128;
    let product = u32::MAX as u128 * rho / ((1u128 << 20) / 100);
    ctx.diag(format!(
        "entity weight {weight:?}, root load {load:?} on CPU {loaded}: rho ~{rho:.3e}, \
         slice * rho / rho_ref ~{:.3e} (2^64 = 1.845e19)",
        product as f64
    ));
    report(
        ctx,
        "extreme_request_arithmetic",
        &[
            ("ops", 1),
            ("faults", 0),
            ("threads", HEAVY_THREADS as u64),
            ("weight", weight.unwrap_or(0)),
            ("product_log2", (128 - product.leading_zeros()) as u64),
        ],
    );
    ensure!(
        product > u64::MAX as u128,
        "inconclusive: slice * rho / rho_ref ~{:.3e} stays inside 64 bits (weight {weight:?}, \
         load {load:?}, credit {credit} mcpu)",
        product as f64
    );
    ensure!(
        (u1 - u0) * 1000 >= EXTREME_PHASE_MS * 1_000_000 / 2,
        "the group's spinner on CPU {own} got {} us in {EXTREME_PHASE_MS} ms; expected at least half",
        u1 - u0
    );
    cg.remove().or_fail("removing hostile-extreme")?;
    Ok(())
}

/// The threads of `pid`: how many are runnable, and all counted by state letter with the
/// wait channel of one that is not.
struct ThreadStates {
    running: usize,
    text: String,
}

fn thread_states(pid: libc::pid_t) -> ThreadStates {
    let mut counts = std::collections::BTreeMap::new();
    let mut wchan = None;
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Some((state, _)) = util::proc_state(tid) else {
            continue;
        };
        if state != 'R' && wchan.is_none() {
            wchan = util::read_file(e.path().join("wchan")).ok();
        }
        *counts.entry(state).or_insert(0usize) += 1;
    }
    ThreadStates {
        running: counts.get(&'R').copied().unwrap_or(0),
        text: format!(
            "{counts:?}, one not running waits in {}",
            wchan.as_deref().unwrap_or("-")
        ),
    }
}

/// From sched/debug: the `se->load.weight` of the group entity `group` (e.g. `/g`) on
/// `cpu`, and the `.load` of the root runqueue of `cpu`, both scaled down as the
/// scheduler's arithmetic uses them (sched/debug prints them unscaled).
fn entity_weight_and_load(dbg: &str, cpu: usize, group: &str) -> (Option<u64>, Option<u64>) {
    let (mut weight, mut load) = (None, None);
    let mut sect = "";
    for l in dbg.lines() {
        if l.starts_with("cfs_rq[") {
            sect = l.trim_end();
            continue;
        }
        let value = || l.rsplit(':').next()?.trim().parse::<u64>().ok();
        if sect == format!("cfs_rq[{cpu}]:{group}") && l.contains(".se->load.weight") {
            // scale_load_down(): 0 stays 0, anything else is at least 2.
            weight = value().map(|v| if v == 0 { 0 } else { (v >> 10).max(2) });
        } else if sect == format!("cfs_rq[{cpu}]:/") && l.trim_start().starts_with(".load ") {
            load = value().map(|v| v >> 10);
        }
    }
    (weight, load)
}

// ---------------------------------------------------------------------------------------
// Fuzz tests

// Expect cpu.lags of a nested, busy group to accept exactly "0"/"1" (+ one newline) and
// reject every other write with EINVAL, reading back "0\n" or "1\n" throughout.
fn fuzz_cpu_lags(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let seed = seed_of(ctx);
    let parent = lags_group("lags-hostile-fuzz")?;
    parent.enable_cpu_for_children().or_fail("+cpu")?;
    let cg = parent.child("leaf").or_fail("mkdir leaf")?;
    let mut spinner = busy_in(&cg)?;
    let t = Target {
        name: "cpu.lags".into(),
        path: cg.file("cpu.lags"),
        model: &model_cpu_lags,
        parse: &parse_u64,
        valid: &|v| v <= 1,
        numbers: vec![0, 1],
    };
    let tally = fuzz(ctx, &t, seed, deadline_of(ctx))?;
    spinner.finish(Duration::from_secs(30)).or_fail("spinner")?;
    fuzz_report(ctx, "fuzz_cpu_lags", &[tally], seed);
    Ok(())
}

// Expect kernel.sched_lags to behave exactly as proc_dointvec_minmax() with 0..1 while a
// LAGS group runs: EINVAL and no change for invalid input, the value for valid input.
fn fuzz_sysctl(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let seed = seed_of(ctx).wrapping_add(1);
    let _restore = Restore::save(SYSCTL).or_fail(SYSCTL)?;
    let cg = lags_group("lags-hostile-sysctl")?;
    cg.write("cpu.lags", "1").or_fail("cpu.lags")?;
    let mut spinner = busy_in(&cg)?;
    let t = Target {
        name: "kernel.sched_lags".into(),
        path: PathBuf::from(SYSCTL),
        model: &model_sysctl,
        parse: &parse_u64,
        valid: &|v| v <= 1,
        numbers: vec![0, 1, 2, i32::MAX as u64],
    };
    let tally = fuzz(ctx, &t, seed, deadline_of(ctx))?;
    spinner.finish(Duration::from_secs(30)).or_fail("spinner")?;
    fuzz_report(ctx, "fuzz_sysctl", &[tally], seed);
    Ok(())
}

/// Documented read-only counters in the same directory (sched-lags.rst §3.5).
const READ_ONLY_COUNTERS: &[&str] = &["lag_overflows"];

/// Documented ranges of the tunables (sched-lags.rst §3.5).
fn tunable_range(name: &str) -> Option<(u64, u64)> {
    match name {
        "credit_period_ns" => Some((10_000_000, 10_000_000_000)),
        "starve_ns" => Some((1_000_000, 10_000_000_000)),
        "credit_ref_pct" => Some((1, 1_000)),
        _ => None,
    }
}

// Expect every file in debugfs sched/lags/ to accept exactly the decimal values of its
// documented range and reject everything else with EINVAL, reading back a valid value; the
// documented read-only counters refuse every write.
fn fuzz_debugfs_tunables(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let seed = seed_of(ctx).wrapping_add(2);
    let mut names: Vec<String> = std::fs::read_dir(DEBUGFS_DIR)
        .or_fail(DEBUGFS_DIR)?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    ensure!(
        !names.is_empty(),
        "{DEBUGFS_DIR}: expected tunables, found none"
    );
    let cg = lags_group("lags-hostile-tunables")?;
    cg.write("cpu.lags", "1").or_fail("cpu.lags")?;
    let mut spinner = busy_in(&cg)?;
    let mut tallies = Vec::new();
    for name in &names {
        if READ_ONLY_COUNTERS.contains(&name.as_str()) {
            // A documented read-only counter: no write may succeed, it reads as a number.
            let path = Path::new(DEBUGFS_DIR).join(name);
            for data in ["0", "1", "abc", ""] {
                let r = util::write_file(&path, data);
                ctx.check(r.is_err() || data.is_empty(), || {
                    format!(
                        "{}: writing {data:?} succeeded on a read-only counter",
                        path.display()
                    )
                });
            }
            let v = util::read_trimmed(&path).or_fail(&path.display().to_string())?;
            ctx.check(v.parse::<u64>().is_ok(), || {
                format!("{}: expected a number, read {v:?}", path.display())
            });
            continue;
        }
        let Some((min, max)) = tunable_range(name) else {
            ctx.check(false, || {
                format!("{DEBUGFS_DIR}/{name}: undocumented tunable, no range to check against")
            });
            continue;
        };
        let path = Path::new(DEBUGFS_DIR).join(name);
        let _restore = Restore::save(&path).or_fail(&path.display().to_string())?;
        let model = move |b: &[u8]| model_tunable(b, min, max);
        let t = Target {
            name: name.clone(),
            path,
            model: &model,
            parse: &parse_u64,
            valid: &move |v| (min..=max).contains(&v),
            numbers: vec![min, max, 50_000_000, 1_000_000_000, u64::MAX],
        };
        let deadline =
            util::now_ns() + (ctx.cfg.stress_secs * 1_000_000_000 / 6).max(4_000_000_000);
        tallies.push(fuzz(
            ctx,
            &t,
            seed.wrapping_add(tallies.len() as u64),
            deadline,
        )?);
    }
    spinner.finish(Duration::from_secs(30)).or_fail("spinner")?;
    fuzz_report(ctx, "fuzz_debugfs_tunables", &tallies, seed);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Privilege

/// Who the probe child becomes before acting.
#[derive(Clone, Copy, Debug)]
enum Identity {
    /// uid/gid 65534, no capabilities.
    Nobody,
    /// 65534, then root (uid 0, all capabilities) of a new user namespace mapping 0 to 65534.
    NobodyUserns,
    /// Real root entering a new user namespace that maps 0 to 0: still uid 0, but its
    /// capabilities are those of the new namespace only.
    RootUserns,
}

enum Act {
    Write(&'static str, PathBuf, &'static str),
    Mkdir(&'static str, PathBuf),
}

/// unshare(CLONE_NEWUSER) and map uid/gid 0 of the new namespace to `outer`.
fn enter_userns(outer: u32) -> std::io::Result<()> {
    // SAFETY: unshare has no memory-safety preconditions; the child is single-threaded.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    util::write_file("/proc/self/setgroups", "deny")?;
    util::write_file("/proc/self/uid_map", format!("0 {outer} 1"))?;
    util::write_file("/proc/self/gid_map", format!("0 {outer} 1"))?;
    Ok(())
}

fn probe_child(io: &mut WorkerIo, who: Identity, acts: &[Act]) -> i32 {
    let setup = match who {
        Identity::Nobody => util::drop_to_nobody(),
        Identity::NobodyUserns => util::drop_to_nobody().and_then(|()| enter_userns(NOBODY)),
        Identity::RootUserns => enter_userns(0),
    };
    io.send_kv("setup", util::describe(&setup));
    if setup.is_err() {
        return 1;
    }
    util::send_identity(io);
    for act in acts {
        match act {
            Act::Write(label, path, data) => {
                let f = util::open_write(path);
                io.send_kv(&format!("open_{label}"), util::describe(&f));
                if let Ok(f) = f {
                    let r = util::write_once(&f, data.as_bytes());
                    io.send_kv(&format!("write_{label}"), util::describe(&r));
                }
            }
            Act::Mkdir(label, path) => {
                let r = std::fs::create_dir(path);
                io.send_kv(&format!("mkdir_{label}"), util::describe(&r));
            }
        }
    }
    0
}

/// Runs the actions as `who` in a forked child and returns its `key=value` report.
fn probe(ctx: &mut Ctx, who: Identity, acts: Vec<Act>) -> Result<Vec<(String, String)>, Stop> {
    let mut w = Worker::spawn(move |io| probe_child(io, who, &acts)).or_fail("fork")?;
    w.go().or_fail("starting the probe")?;
    let out = w.collect(Duration::from_secs(30)).or_fail("probe output")?;
    let code = w.wait(Duration::from_secs(30)).or_fail("probe exit")?;
    let kvs = util::parse_kv_lines(&String::from_utf8_lossy(&out));
    ctx.diag(format!(
        "probe as {who:?}: {}",
        kvs.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    ensure!(
        code == 0 && util::kv(&kvs, "setup") == Some("ok"),
        "probe as {who:?}: setup failed (exit {code}, setup={:?})",
        util::kv(&kvs, "setup")
    );
    // No probe may hold CAP_SYS_NICE in the initial namespace. Nobody has no capabilities
    // at all; in a user namespace CapEff shows the namespace's (full) set, which is what
    // makes the check in cpu_lags_write() (capable(), i.e. the initial namespace) matter.
    if matches!(who, Identity::Nobody) {
        let capeff = util::kv(&kvs, "capeff").and_then(|c| u64::from_str_radix(c, 16).ok());
        ensure!(
            capeff.is_some_and(|c| c & (1 << CAP_SYS_NICE) == 0),
            "probe as nobody: CAP_SYS_NICE still effective ({:?})",
            util::kv(&kvs, "capeff")
        );
    }
    Ok(kvs)
}

fn got<'a>(kvs: &'a [(String, String)], key: &str) -> &'a str {
    util::kv(kvs, key).unwrap_or("(missing)")
}

/// The outcome of one write attempt: the open's error, else the write's result.
fn outcome(kvs: &[(String, String)], label: &str) -> String {
    let open = got(kvs, &format!("open_{label}"));
    if open != "ok" {
        return format!("open:{open}");
    }
    format!("write:{}", got(kvs, &format!("write_{label}")))
}

fn denied(o: &str) -> bool {
    matches!(
        o,
        "open:EACCES" | "open:EPERM" | "write:EPERM" | "write:EACCES"
    )
}

/// Remounts cgroup2 with `nsdelegate` and back without it when dropped.
struct NsDelegate;

const CG_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

impl NsDelegate {
    fn on() -> Result<NsDelegate, Stop> {
        util::mount(
            "cgroup2",
            Path::new(CGROUP2_ROOT),
            "cgroup2",
            libc::MS_REMOUNT | CG_FLAGS,
            "nsdelegate",
        )
        .or_fail("remounting cgroup2 with nsdelegate")?;
        Ok(NsDelegate)
    }
}

impl Drop for NsDelegate {
    fn drop(&mut self) {
        if let Err(e) = util::mount(
            "cgroup2",
            Path::new(CGROUP2_ROOT),
            "cgroup2",
            libc::MS_REMOUNT | CG_FLAGS,
            "",
        ) {
            util::warn(format!(
                "cleanup: remounting cgroup2 without nsdelegate: {}",
                util::describe_err(&e)
            ));
        }
    }
}

/// A group delegated to nobody the cgroup v2 way: the directory and its cgroup.procs,
/// cgroup.subtree_control and cgroup.threads chowned (cpu.lags is not delegated).
fn delegated_group(name: &str) -> Result<Cgroup, Stop> {
    let d = lags_group(name)?;
    for f in [
        d.path().to_path_buf(),
        d.file("cgroup.procs"),
        d.file("cgroup.subtree_control"),
        d.file("cgroup.threads"),
    ] {
        util::chown(&f, NOBODY, NOBODY).or_fail(&format!("chown {}", f.display()))?;
    }
    Ok(d)
}

fn lags_value(path: &Path) -> String {
    util::read_trimmed(path).unwrap_or_else(|e| util::describe_err(&e))
}

// Expect an unprivileged user to be unable to write cpu.lags, the sysctl or the debugfs
// tunables (EACCES/EPERM), and nothing to change.
fn unprivileged_denied(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let cg = lags_group("lags-hostile-nobody")?;
    let sysctl_before = lags_value(Path::new(SYSCTL));
    let starve = Path::new(DEBUGFS_DIR).join("starve_ns");
    let starve_before = lags_value(&starve);
    let kvs = probe(
        ctx,
        Identity::Nobody,
        vec![
            Act::Write("cpu_lags", cg.file("cpu.lags"), "1"),
            Act::Write("sysctl_0", SYSCTL.into(), "0"),
            Act::Write("sysctl_1", SYSCTL.into(), "1"),
            Act::Write("starve_ns", starve.clone(), "1000000"),
            Act::Write(
                "credit_period_ns",
                Path::new(DEBUGFS_DIR).join("credit_period_ns"),
                "10000000",
            ),
        ],
    )?;
    let mut tried = 0;
    for label in [
        "cpu_lags",
        "sysctl_0",
        "sysctl_1",
        "starve_ns",
        "credit_period_ns",
    ] {
        let o = outcome(&kvs, label);
        tried += 1;
        ctx.check(denied(&o), || {
            format!("nobody writing {label}: expected EACCES/EPERM, got {o}")
        });
    }
    ctx.check_eq(
        "cpu.lags after",
        lags_value(&cg.file("cpu.lags")),
        "0".into(),
    );
    ctx.check_eq(
        "sched_lags after",
        lags_value(Path::new(SYSCTL)),
        sysctl_before,
    );
    ctx.check_eq("starve_ns after", lags_value(&starve), starve_before);
    report(
        ctx,
        "unprivileged_denied",
        &[("ops", tried), ("faults", 0), ("invalid", tried)],
    );
    Ok(())
}

// Expect a cgroup v2 subtree delegated to an unprivileged user (nsdelegate mount) to let
// the user create a child group and enable cpu on it, but not set cpu.lags on the child
// (EPERM from the kernel even though the user owns the file) or on the delegated group
// itself (EACCES).
fn delegated_subtree_denied(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let _nsd = NsDelegate::on()?;
    let d = delegated_group("lags-hostile-deleg")?;
    let child = d.path().join("tenant");
    let kvs = probe(
        ctx,
        Identity::Nobody,
        vec![
            Act::Mkdir("child", child.clone()),
            Act::Write("subtree", d.file("cgroup.subtree_control"), "+cpu"),
            Act::Mkdir("grandchild", child.join("inner")),
            Act::Write("child_lags", child.join("cpu.lags"), "1"),
            Act::Write("child_lags_nl", child.join("cpu.lags"), "1\n"),
            Act::Write("own_lags", d.file("cpu.lags"), "1"),
        ],
    )?;
    ctx.check_eq(
        "mkdir in the delegated subtree",
        got(&kvs, "mkdir_child").to_owned(),
        "ok".into(),
    );
    ctx.check_eq(
        "+cpu on the delegated subtree",
        got(&kvs, "write_subtree").to_owned(),
        "ok".into(),
    );
    let owner = std::fs::metadata(child.join("cpu.lags"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .ok();
    ctx.diag(format!("tenant/cpu.lags owner uid: {owner:?}"));
    for label in ["child_lags", "child_lags_nl"] {
        let o = outcome(&kvs, label);
        ctx.check(o == "write:EPERM", || {
            format!("delegatee writing its own child's cpu.lags ({label}): expected write:EPERM, got {o}")
        });
    }
    let o = outcome(&kvs, "own_lags");
    ctx.check(denied(&o), || {
        format!("delegatee writing the delegated group's cpu.lags: expected EACCES/EPERM, got {o}")
    });
    ctx.check_eq(
        "tenant cpu.lags after",
        lags_value(&child.join("cpu.lags")),
        "0".into(),
    );
    ctx.check_eq(
        "delegated cpu.lags after",
        lags_value(&d.file("cpu.lags")),
        "0".into(),
    );
    report(
        ctx,
        "delegated_subtree_denied",
        &[("ops", 6), ("faults", 0), ("invalid", 3)],
    );
    Ok(())
}

// Expect "root" of a new user namespace to be unable to set cpu.lags (EPERM), both for an
// unprivileged user's namespace acting on its delegated groups and for real root entering
// a namespace (uid 0 kept, capabilities only in the new namespace).
fn userns_root_denied(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let _nsd = NsDelegate::on()?;
    let d = delegated_group("lags-hostile-userns")?;
    d.enable_cpu_for_children().or_fail("+cpu")?;
    let tenant = d.child("tenant").or_fail("mkdir tenant")?;
    util::chown(tenant.path(), NOBODY, NOBODY).or_fail("chown tenant")?;
    util::chown(&tenant.file("cpu.lags"), NOBODY, NOBODY).or_fail("chown tenant/cpu.lags")?;
    let sysctl_before = lags_value(Path::new(SYSCTL));

    // 1. An unprivileged user's own namespace: root there, owner of the files.
    let kvs = probe(
        ctx,
        Identity::NobodyUserns,
        vec![
            Act::Mkdir("child", d.path().join("nsroot")),
            Act::Write("tenant_lags", tenant.file("cpu.lags"), "1"),
            Act::Write("own_lags", d.file("cpu.lags"), "1"),
            Act::Write("sysctl", SYSCTL.into(), "0"),
        ],
    )?;
    ctx.check_eq(
        "uid inside the namespace",
        got(&kvs, "uid").to_owned(),
        "0/0".into(),
    );
    let mut tried = 0;
    let o = outcome(&kvs, "tenant_lags");
    tried += 1;
    ctx.check(o == "write:EPERM", || {
        format!("userns root writing its delegated tenant/cpu.lags: expected write:EPERM, got {o}")
    });
    for label in ["own_lags", "sysctl"] {
        let o = outcome(&kvs, label);
        tried += 1;
        ctx.check(denied(&o), || {
            format!("userns root (uid {NOBODY} outside) writing {label}: expected EACCES/EPERM, got {o}")
        });
    }

    // 2. Real root in a new user namespace: DAC passes for root-owned files, only the
    // capability check in the initial namespace stands in the way.
    let plain = lags_group("lags-hostile-userns-root")?;
    let sysctl_now = lags_value(Path::new(SYSCTL));
    let sysctl_write: &'static str = if sysctl_now == "0" { "0" } else { "1" };
    let kvs = probe(
        ctx,
        Identity::RootUserns,
        vec![
            Act::Write("root_owned_lags", plain.file("cpu.lags"), "1"),
            Act::Write("own_lags", d.file("cpu.lags"), "1"),
            // The current value: harmless whatever the kernel does.
            Act::Write("sysctl_same", SYSCTL.into(), sysctl_write),
        ],
    )?;
    for label in ["root_owned_lags", "own_lags"] {
        let o = outcome(&kvs, label);
        tried += 1;
        ctx.check(o == "write:EPERM", || {
            format!("root in a new user namespace writing {label}: expected write:EPERM, got {o}")
        });
    }
    // The sysctl handler itself requires CAP_SYS_ADMIN in the initial namespace: file
    // permissions alone (by euid) would let uid 0 of a user namespace switch LAGS off.
    let o = outcome(&kvs, "sysctl_same");
    tried += 1;
    ctx.check(o == "write:EPERM", || {
        format!(
            "root in a new user namespace writing kernel.sched_lags: expected write:EPERM, got {o}"
        )
    });
    ctx.check_eq(
        "tenant cpu.lags after",
        lags_value(&tenant.file("cpu.lags")),
        "0".into(),
    );
    ctx.check_eq(
        "plain cpu.lags after",
        lags_value(&plain.file("cpu.lags")),
        "0".into(),
    );
    ctx.check_eq(
        "delegated cpu.lags after",
        lags_value(&d.file("cpu.lags")),
        "0".into(),
    );
    ctx.check_eq(
        "sched_lags after",
        lags_value(Path::new(SYSCTL)),
        sysctl_before,
    );
    report(
        ctx,
        "userns_root_denied",
        &[("ops", tried + 1), ("faults", 0), ("invalid", tried)],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the weight and load to be read from sched/debug as 6.12 prints them.
    #[test]
    fn weight_and_load_from_sched_debug() {
        let dbg = "cfs_rq[0]:/hostile-extreme\n  .load                          : 15360\n  \
                   .se->load.weight               : 2\ncfs_rq[0]:/\n  .load                          \
                   : 136338993154\ncfs_rq[1]:/\n  .load                          : 3155966\n";
        assert_eq!(
            entity_weight_and_load(dbg, 0, "/hostile-extreme"),
            (Some(2), Some(133_143_548))
        );
        assert_eq!(entity_weight_and_load(dbg, 1, "/x"), (None, Some(3_081)));
    }

    fn v(value: u64, consumed: usize) -> Expect {
        Expect::Valid { value, consumed }
    }

    // Expect the cpu.lags model to accept exactly "0"/"1" with one optional newline.
    #[test]
    fn cpu_lags_model() {
        assert_eq!(model_cpu_lags(b""), Expect::Empty);
        assert_eq!(model_cpu_lags(b"1"), v(1, 1));
        assert_eq!(model_cpu_lags(b"0\n"), v(0, 2));
        for bad in [&b"2"[..], b"01", b"1\n\n", b" 1", b"1\0", b"+1", b"\n"] {
            assert_eq!(model_cpu_lags(bad), Expect::Invalid, "{bad:?}");
        }
    }

    // Expect the tunable model to follow kstrtou64() and the range.
    #[test]
    fn tunable_model() {
        let m = |b: &[u8]| model_tunable(b, 10, 1000);
        assert_eq!(m(b"10"), v(10, 2));
        assert_eq!(m(b"+1000\n"), v(1000, 6));
        assert_eq!(m(b"0010"), v(10, 4));
        for bad in [
            &b"9"[..],
            b"1001",
            b"-10",
            b" 10",
            b"10 ",
            b"10\n\n",
            b"0x10",
            b"10\0",
            b"+",
            b"18446744073709551616",
            b"000000000000000000000100",
        ] {
            assert_eq!(m(bad), Expect::Invalid, "{bad:?}");
        }
        assert_eq!(
            model_tunable(b"18446744073709551615", 0, u64::MAX),
            v(u64::MAX, 20)
        );
    }

    // Expect the sysctl model to follow proc_dointvec_minmax(): whitespace, base 0, '-',
    // the 21-character limit and short writes for trailing data.
    #[test]
    fn sysctl_model() {
        assert_eq!(model_sysctl(b""), Expect::Empty);
        assert_eq!(model_sysctl(b"1"), v(1, 1));
        assert_eq!(model_sysctl(b"1\n"), v(1, 2));
        assert_eq!(model_sysctl(b"  0\t\n"), v(0, 5));
        assert_eq!(model_sysctl(b"-0"), v(0, 2));
        assert_eq!(model_sysctl(b"0x1"), v(1, 3));
        assert_eq!(model_sysctl(b"01"), v(1, 2));
        assert_eq!(model_sysctl(b"\xa01"), v(1, 2));
        assert_eq!(model_sysctl(b"1 2"), v(1, 2));
        assert_eq!(model_sysctl(b"00000000000000000001"), v(1, 20));
        for bad in [
            &b"2"[..],
            b"-1",
            b"+1",
            b"1x",
            b"1\0",
            b"08",
            b"0x",
            b" ",
            b"-",
            b"1\xa0",
            b"000000000000000000001",
            b"18446744073709551616",
            b"4294967297",
        ] {
            assert_eq!(model_sysctl(bad), Expect::Invalid, "{bad:?}");
        }
        let mut page = vec![b' '; PAGE];
        page[PAGE - 1] = b'1';
        // Only the first PAGE - 1 bytes are looked at: all spaces.
        assert_eq!(model_sysctl(&page), Expect::Invalid);
        page[0] = b'1';
        page[PAGE - 1] = b' ';
        assert_eq!(model_sysctl(&page), v(1, PAGE));
    }

    // Expect the same seed to give the same inputs.
    #[test]
    fn seeded_inputs_repeat() {
        let gen = |seed| {
            let mut r = util::Rng::new(seed);
            (0..50)
                .map(|_| random_input(&mut r, &[0, 1]))
                .collect::<Vec<_>>()
        };
        assert_eq!(gen(7), gen(7));
        assert_ne!(gen(7), gen(8));
        assert!(gen(7).iter().all(|i| i.len() <= PAGE));
    }
}
