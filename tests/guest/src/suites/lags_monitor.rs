// SPDX-License-Identifier: GPL-2.0
//! `lags_monitor`: the project's Rust module `lags_monitor.ko` (Documentation/monitor.md).
//!
//! * the debugfs snapshot `/sys/kernel/debug/lags_monitor/snapshot` lists exactly the groups
//!   with `cpu.lags=1`, following toggles, creation and removal, with the numbers of their
//!   `cpu.stat`;
//! * the starvation watchdog stays quiet on a healthy run and reports a group starved on
//!   purpose (raised `starve_ns`, low `threshold_ms`);
//! * unloading works while a reader holds the snapshot open, and load/unload loops during
//!   cgroup churn, concurrent readers and `kernel.sched_lags` toggling leave no trace (the host
//!   fails the boot on any kernel warning).
//!
//! Groups live under `/sys/fs/cgroup/lagsmon`; workers are pinned to the first online CPU.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::lags_iface::{need_lags, SCHEDSTATS, SYSCTL};
use super::{ensure, fail, skip, Ctx, OrFail, Stop, Suite, Test, TestResult};
use crate::util::{self, Cgroup, Restore, Worker, WorkerIo, CGROUP2_ROOT};

pub const SUITE: Suite = Suite {
    name: "lags_monitor",
    tests: &[
        Test {
            name: "load_module",
            run: load_module,
        },
        Test {
            name: "snapshot_format",
            run: snapshot_format,
        },
        Test {
            name: "lists_exactly_lags_groups",
            run: lists_exactly_lags_groups,
        },
        Test {
            name: "numbers_match_cpu_stat",
            run: numbers_match_cpu_stat,
        },
        Test {
            name: "lists_a_thousand_groups",
            run: lists_a_thousand_groups,
        },
        Test {
            name: "watchdog_quiet_when_healthy",
            run: watchdog_quiet_when_healthy,
        },
        Test {
            name: "watchdog_reports_starvation",
            run: watchdog_reports_starvation,
        },
        Test {
            name: "unload_while_open",
            run: unload_while_open,
        },
        Test {
            name: "load_unload_under_churn",
            run: load_unload_under_churn,
        },
    ],
};

const KO: &str = "/lib/modules/extra/lags_monitor.ko";
const NAME: &str = "lags_monitor";
const SNAPSHOT: &str = "/sys/kernel/debug/lags_monitor/snapshot";
const PARAM: &str = "/sys/module/lags_monitor/parameters/threshold_ms";
const COLUMNS: &str =
    "cgroup_id credit_mcpu nr_running picks wakeup_preempts starved_picks wait_max_ns wait_now_ns path";
const HEADER_KEYS: &[&str] = &[
    "enabled",
    "nr_groups",
    "listed",
    "threshold_ms",
    "starvations",
    "nr_running",
    "picks",
    "wakeup_preempts",
    "starved_picks",
];
/// The watchdog's message, after the cgroup path.
const STARVED_MSG: &str = "runnable without running for";
/// Watchdog threshold of the starvation test; the waiting group in that test waits for
/// seconds.
const LOW_THRESHOLD_MS: u32 = 200;
/// Groups in the scale test (the "node with a thousand cgroups").
const SCALE_GROUPS: usize = 1000;
const FLOODERS: usize = 6;
const WORKER_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Module handling

fn need_ko() -> TestResult {
    if !Path::new(KO).exists() {
        return skip(format!("{KO} not in the initramfs"));
    }
    Ok(())
}

/// Records whether the module is loaded (updating the guard in place: replacing it would run
/// the old guard's `Drop`).
fn set_loaded(ctx: &mut Ctx, v: bool) {
    match ctx.stash.get::<util::ModuleGuard>() {
        Some(g) => g.loaded = v,
        None => ctx.stash.put(util::ModuleGuard {
            name: NAME,
            loaded: v,
        }),
    }
}

fn loaded(ctx: &mut Ctx) -> bool {
    ctx.stash
        .get::<util::ModuleGuard>()
        .is_some_and(|g| g.loaded)
}

/// Loads the module with `params`, recording it in the stash.
fn load(ctx: &mut Ctx, params: &str) -> TestResult {
    let r = util::finit_module_with(Path::new(KO), params);
    if r.is_ok() {
        set_loaded(ctx, true);
    }
    ensure!(
        r.is_ok(),
        "finit_module({KO}, {params:?}): expected success, got {}",
        util::describe(&r)
    );
    Ok(())
}

/// Unloads the module, recording it in the stash.
fn unload(ctx: &mut Ctx) -> TestResult {
    let r = util::delete_module(NAME);
    if r.is_ok() {
        set_loaded(ctx, false);
    }
    ensure!(
        r.is_ok(),
        "delete_module({NAME}): expected success, got {}",
        util::describe(&r)
    );
    Ok(())
}

/// Makes sure the module is loaded with `params` (reloading it if it is loaded).
fn reload(ctx: &mut Ctx, params: &str) -> TestResult {
    if loaded(ctx) {
        unload(ctx)?;
    }
    load(ctx, params)
}

fn need_loaded(ctx: &mut Ctx) -> TestResult {
    need_ko()?;
    need_lags(ctx)?;
    if !loaded(ctx) {
        load(ctx, "")?;
    }
    Ok(())
}

/// Kernel log lines that contain `needle`.
fn log_lines(needle: &str) -> Result<Vec<String>, Stop> {
    Ok(util::kernel_log()
        .or_fail("reading /dev/kmsg")?
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect())
}

// ---------------------------------------------------------------------------------------
// The snapshot

#[derive(Clone, Debug)]
struct Row {
    id: u64,
    credit: u64,
    nr_running: u64,
    picks: u64,
    wakeup_preempts: u64,
    starved_picks: u64,
    path: String,
}

#[derive(Debug)]
struct Snapshot {
    header: BTreeMap<String, u64>,
    rows: Vec<Row>,
}

impl Snapshot {
    fn get(&self, key: &str) -> u64 {
        self.header.get(key).copied().unwrap_or(u64::MAX)
    }

    /// Rows of groups under `/<prefix>/`, by path.
    fn under(&self, prefix: &str) -> BTreeMap<String, Row> {
        self.rows
            .iter()
            .filter(|r| r.path.starts_with(&format!("/{prefix}/")))
            .map(|r| (r.path.clone(), r.clone()))
            .collect()
    }
}

/// Parses the snapshot format (Documentation/monitor.md); errors say what is wrong.
fn parse(text: &str) -> Result<Snapshot, String> {
    let mut lines = text.lines();
    let first = lines.next().ok_or("empty snapshot")?;
    let mut words = first.split(' ');
    if words.next() != Some("lags_monitor") || words.next() != Some("1") {
        return Err(format!(
            "first line: expected \"lags_monitor 1 ...\", got {first:?}"
        ));
    }
    let mut header = BTreeMap::new();
    let mut keys = Vec::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| format!("first line: {w:?} is not key=value"))?;
        let v = v
            .parse()
            .map_err(|_| format!("first line: {k}={v:?} is not a number"))?;
        keys.push(k.to_owned());
        header.insert(k.to_owned(), v);
    }
    if keys != HEADER_KEYS {
        return Err(format!(
            "first line keys: expected {HEADER_KEYS:?}, got {keys:?}"
        ));
    }
    let second = lines.next().ok_or("no column line")?;
    if second != COLUMNS {
        return Err(format!("column line: expected {COLUMNS:?}, got {second:?}"));
    }
    let mut rows = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() != 9 {
            return Err(format!("row {l:?}: expected 9 fields, got {}", f.len()));
        }
        let n = |i: usize| {
            f[i].parse::<u64>()
                .map_err(|_| format!("row {l:?}: field {} is not a number", i + 1))
        };
        rows.push(Row {
            id: n(0)?,
            credit: n(1)?,
            nr_running: n(2)?,
            picks: n(3)?,
            wakeup_preempts: n(4)?,
            starved_picks: n(5)?,
            path: f[8].to_owned(),
        });
        n(6)?;
        n(7)?;
    }
    Ok(Snapshot { header, rows })
}

fn snapshot() -> Result<Snapshot, Stop> {
    let text = util::read_file(SNAPSHOT).or_fail(SNAPSHOT)?;
    parse(&text).or_fail("parsing the snapshot")
}

/// The path of a cgroup as the snapshot shows it (relative to the v2 root).
fn rel(cg: &Cgroup) -> String {
    cg.path()
        .to_string_lossy()
        .trim_start_matches(CGROUP2_ROOT)
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// Groups and workers

struct Env {
    cpu: usize,
    // Dropped in this order: the groups, then the sysctl.
    parent: Cgroup,
    _sysctl: Restore,
}

fn setup() -> Result<Env, Stop> {
    let cpu = *util::online_cpus()
        .or_fail("online CPUs")?
        .first()
        .or_fail("no online CPU")?;
    let sysctl = Restore::save(SYSCTL).or_fail(SYSCTL)?;
    util::write_file(SYSCTL, "1").or_fail("writing 1 to kernel.sched_lags")?;
    util::ensure_v2_cpu(Duration::from_secs(5)).or_fail("enabling cpu on cgroup v2")?;
    let parent = Cgroup::new_v2("lagsmon").or_fail("creating /sys/fs/cgroup/lagsmon")?;
    parent
        .enable_cpu_for_children()
        .or_fail("+cpu in lagsmon/cgroup.subtree_control")?;
    Ok(Env {
        cpu,
        parent,
        _sysctl: sysctl,
    })
}

fn group(env: &Env, name: &str, lags: bool) -> Result<Cgroup, Stop> {
    let cg = env
        .parent
        .child(name)
        .or_fail(&format!("creating lagsmon/{name}"))?;
    cg.write("cpu.lags", if lags { "1" } else { "0" })
        .or_fail(&format!("writing cpu.lags of lagsmon/{name}"))?;
    Ok(cg)
}

fn start<F: FnOnce(&mut WorkerIo) -> i32>(env: &Env, cg: &Cgroup, body: F) -> Result<Worker, Stop> {
    let mut w = Worker::spawn(body).or_fail("fork")?;
    w.start_in(cg, Some(env.cpu)).or_fail("starting worker")?;
    Ok(w)
}

fn spinner(io: &mut WorkerIo) -> i32 {
    while !io.stop_requested() {
        util::spin_until_ns(util::now_ns() + 1_000_000);
    }
    0
}

/// A light LAGS group: 1 ms of CPU, then 3 ms asleep. Next to a spinner, whose credit gives
/// it a long request, its wake-ups run before the spinner's slice ends (counted as LAGS
/// picks and wakeup preemptions).
fn waker(io: &mut WorkerIo) -> i32 {
    while !io.stop_requested() {
        util::spin_cpu_ns(1_000_000);
        util::sleep_ms(3);
    }
    0
}

/// A heavy-weight sibling that never sleeps.
fn flooder(io: &mut WorkerIo) -> i32 {
    while !io.stop_requested() {
        util::spin_cpu_ns(1_000_000);
    }
    0
}

// ---------------------------------------------------------------------------------------
// Tests

// Expect finit_module(2) to load lags_monitor.ko with its default threshold, creating the
// snapshot file and the threshold_ms parameter.
fn load_module(ctx: &mut Ctx) -> TestResult {
    need_ko()?;
    load(ctx, "")?;
    ensure!(
        util::exists(SNAPSHOT),
        "{SNAPSHOT}: expected to exist, missing"
    );
    let t = util::read_trimmed(PARAM).or_fail(PARAM)?;
    ctx.check_eq("threshold_ms parameter", t.as_str(), "500");
    Ok(())
}

// Expect the documented format: the global line with its keys in order, the column line, and
// rows of 8 numbers and a path; the global line agrees with the sysctl and cgroup counts.
fn snapshot_format(ctx: &mut Ctx) -> TestResult {
    need_ko()?;
    if !loaded(ctx) {
        load(ctx, "")?;
    }
    let s = snapshot()?;
    ctx.diag(format!("header {:?}, {} rows", s.header, s.rows.len()));
    let sysctl = util::read_trimmed(SYSCTL).unwrap_or_default();
    let enabled = if sysctl == "1" { 1 } else { 0 };
    ctx.check_eq("enabled", s.get("enabled"), enabled);
    ctx.check_eq("listed", s.get("listed"), s.rows.len() as u64);
    ctx.check_eq("threshold_ms", s.get("threshold_ms"), 500);
    let picks: u64 = s.rows.iter().map(|r| r.picks).sum();
    ctx.check_eq("picks total", s.get("picks"), picks);
    let running: u64 = s.rows.iter().map(|r| r.nr_running).sum();
    ctx.check_eq("nr_running total", s.get("nr_running"), running);
    let starved: u64 = s.rows.iter().map(|r| r.starved_picks).sum();
    ctx.check_eq("starved_picks total", s.get("starved_picks"), starved);
    Ok(())
}

// Expect the snapshot to list exactly the groups with cpu.lags=1, under their path and with
// their cgroup id (the directory's inode number), following toggles, creation and removal.
fn lists_exactly_lags_groups(ctx: &mut Ctx) -> TestResult {
    need_loaded(ctx)?;
    let env = setup()?;
    let a = group(&env, "a", true)?;
    let b = group(&env, "b", false)?;
    let c = group(&env, "c", true)?;
    let expect = |ctx: &mut Ctx, step: &str, want: &[&Cgroup]| -> TestResult {
        let mut want_paths: Vec<String> = want.iter().map(|cg| rel(cg)).collect();
        want_paths.sort();
        let want_refs: Vec<&String> = want_paths.iter().collect();
        // The snapshot must follow at once; allow a little time all the same (TCG).
        let deadline = util::now_ns() + 2_000_000_000;
        let got = loop {
            let got = snapshot()?.under("lagsmon");
            if got.keys().collect::<Vec<_>>() == want_refs || util::now_ns() > deadline {
                break got;
            }
            util::sleep_ms(20);
        };
        let got_paths: Vec<&String> = got.keys().collect();
        ctx.check(got_paths == want_refs, || {
            format!("{step}: expected groups {want_refs:?}, snapshot lists {got_paths:?}")
        });
        for cg in want {
            if let (Some(row), Ok(md)) = (got.get(&rel(cg)), std::fs::metadata(cg.path())) {
                ctx.check_eq(
                    &format!("{step}: cgroup_id of {}", rel(cg)),
                    row.id,
                    md.ino(),
                );
            }
        }
        Ok(())
    };
    expect(ctx, "a=1 b=0 c=1", &[&a, &c])?;
    b.write("cpu.lags", "1").or_fail("b cpu.lags=1")?;
    expect(ctx, "b set", &[&a, &b, &c])?;
    a.write("cpu.lags", "0").or_fail("a cpu.lags=0")?;
    expect(ctx, "a cleared", &[&b, &c])?;
    c.remove().or_fail("removing lagsmon/c")?;
    expect(ctx, "c removed", &[&b])?;
    let d = group(&env, "d", true)?;
    expect(ctx, "d created", &[&b, &d])?;
    drop((a, b, d));
    expect(ctx, "all removed", &[])?;
    Ok(())
}

// Expect one snapshot to list each of a thousand LAGS groups exactly once, with the header's
// counts agreeing. What a read costs is reported as a diagnostic, not asserted: speed targets
// belong to benchmarks, and TCG timings are not the hardware's.
fn lists_a_thousand_groups(ctx: &mut Ctx) -> TestResult {
    need_loaded(ctx)?;
    let env = setup()?;
    let t0 = util::now_ns();
    let groups = (0..SCALE_GROUPS)
        .map(|i| group(&env, &format!("s{i:04}"), true))
        .collect::<Result<Vec<_>, _>>()?;
    let created_ns = util::now_ns() - t0;
    let mut reads = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let t = util::now_ns();
        let text = util::read_file(SNAPSHOT).or_fail(SNAPSHOT)?;
        reads.push(util::now_ns() - t);
        bytes = text.len();
    }
    reads.sort_unstable();
    let s = snapshot()?;
    let rows = s.under("lagsmon");
    ctx.check_eq(
        "LAGS groups listed under /lagsmon",
        rows.len(),
        SCALE_GROUPS,
    );
    let missing: Vec<String> = groups
        .iter()
        .map(rel)
        .filter(|p| !rows.contains_key(p))
        .take(5)
        .collect();
    ctx.check(missing.is_empty(), || {
        format!("groups missing from the snapshot, e.g. {missing:?}")
    });
    ctx.check(s.get("listed") >= SCALE_GROUPS as u64, || {
        format!(
            "header listed={}: expected >= {SCALE_GROUPS}",
            s.get("listed")
        )
    });
    ctx.diag(format!(
        "{SCALE_GROUPS} groups created in {}; snapshot {bytes} bytes, read in {} (median of 5, TCG)",
        util::ms(created_ns),
        util::ms(reads[reads.len() / 2])
    ));
    drop(groups);
    Ok(())
}

// Expect each group's credit, picks and wakeup preemptions in the snapshot to lie between two
// reads of its cpu.stat taken just before and just after it (credit within 5%), for a spinner
// and a light waker that runs before the spinner's long request ends (picks > 0; picks are
// counted while schedstats are on).
fn numbers_match_cpu_stat(ctx: &mut Ctx) -> TestResult {
    need_loaded(ctx)?;
    let env = setup()?;
    let _schedstats =
        Restore::set(SCHEDSTATS, "1").or_fail(&format!("writing 1 to {SCHEDSTATS}"))?;
    let cgs = [group(&env, "n0", true)?, group(&env, "n1", true)?];
    let mut workers = Vec::new();
    workers.push(start(&env, &cgs[0], spinner)?);
    workers.push(start(&env, &cgs[1], waker)?);
    util::sleep_ms(1500);
    let stat = |cg: &Cgroup| -> Result<[u64; 3], Stop> {
        Ok([
            cg.cpu_stat("lags_credit_mcpu").or_fail("cpu.stat")?,
            cg.cpu_stat("lags_picks").or_fail("cpu.stat")?,
            cg.cpu_stat("lags_wakeup_preempts").or_fail("cpu.stat")?,
        ])
    };
    let before = [stat(&cgs[0])?, stat(&cgs[1])?];
    let s = snapshot()?;
    let after = [stat(&cgs[0])?, stat(&cgs[1])?];
    for w in &mut workers {
        w.finish(WORKER_TIMEOUT).or_fail("worker")?;
    }
    let rows = s.under("lagsmon");
    for (i, cg) in cgs.iter().enumerate() {
        let Some(r) = rows.get(&rel(cg)) else {
            return fail(format!("{} not in the snapshot", rel(cg)));
        };
        let (b, a) = (before[i], after[i]);
        ctx.diag(format!(
            "{}: cpu.stat before {b:?}, snapshot [{}, {}, {}], after {a:?}",
            rel(cg),
            r.credit,
            r.picks,
            r.wakeup_preempts
        ));
        let lo = b[0].min(a[0]) * 95 / 100;
        let hi = b[0].max(a[0]) * 105 / 100 + 5;
        ctx.check(r.credit >= lo && r.credit <= hi, || {
            format!(
                "{} credit_mcpu: expected {lo}..={hi}, got {}",
                rel(cg),
                r.credit
            )
        });
        ctx.check(r.picks >= b[1] && r.picks <= a[1], || {
            format!(
                "{} picks: expected {}..={}, got {}",
                rel(cg),
                b[1],
                a[1],
                r.picks
            )
        });
        ctx.check(
            r.wakeup_preempts >= b[2] && r.wakeup_preempts <= a[2],
            || {
                format!(
                    "{} wakeup_preempts: expected {}..={}, got {}",
                    rel(cg),
                    b[2],
                    a[2],
                    r.wakeup_preempts
                )
            },
        );
    }
    ctx.check(rows.values().any(|r| r.picks > 0), || {
        "expected LAGS picks in one of the two groups, got none".to_owned()
    });
    Ok(())
}

// Expect no watchdog report and no starvation count with the default threshold (500 ms) on a
// run whose waits the series bounds at starve_ns (50 ms).
fn watchdog_quiet_when_healthy(ctx: &mut Ctx) -> TestResult {
    need_ko()?;
    need_lags(ctx)?;
    reload(ctx, "")?;
    let before = log_lines(STARVED_MSG)?.len();
    let env = setup()?;
    let cgs = [
        group(&env, "h0", true)?,
        group(&env, "h1", true)?,
        group(&env, "h2", true)?,
    ];
    let mut workers = vec![
        start(&env, &cgs[0], spinner)?,
        start(&env, &cgs[1], spinner)?,
        start(&env, &cgs[2], flooder)?,
    ];
    util::sleep_ms(2000);
    let s = snapshot()?;
    for w in &mut workers {
        w.finish(WORKER_TIMEOUT).or_fail("worker")?;
    }
    let msgs = log_lines(STARVED_MSG)?;
    ctx.check_eq("starvations", s.get("starvations"), 0);
    ctx.check(msgs.len() == before, || {
        format!("expected no watchdog message, got {:?}", &msgs[before..])
    });
    Ok(())
}

// Expect a LAGS group that waits on purpose (a spinner with cpu.weight 1 next to six spinning
// LAGS siblings with the default cpu.weight 100 on one CPU: its EEVDF share is about 1/600,
// so it waits about 0.6 s between millisecond turns) to be reported by a watchdog with
// threshold_ms=200, naming the waiting group, and the snapshot's starvation counter to
// increase. (Far more extreme weights make the test flaky: whatever kernel lock the starved
// task holds when preempted is then held for tens of seconds.)
fn watchdog_reports_starvation(ctx: &mut Ctx) -> TestResult {
    need_ko()?;
    need_lags(ctx)?;
    reload(ctx, &format!("threshold_ms={LOW_THRESHOLD_MS}"))?;
    let t = util::read_trimmed(PARAM).or_fail(PARAM)?;
    ctx.check_eq("threshold_ms parameter", t, LOW_THRESHOLD_MS.to_string());
    let before = log_lines(STARVED_MSG)?.len();
    let count0 = snapshot()?.get("starvations");
    let env = setup()?;
    let heavy_cg = group(&env, "starved-heavy", true)?;
    heavy_cg.write("cpu.weight", "1").or_fail("cpu.weight 1")?;
    let flood_cgs = (0..FLOODERS)
        .map(|i| group(&env, &format!("flood{i}"), true))
        .collect::<Result<Vec<_>, _>>()?;
    let mut floods = flood_cgs
        .iter()
        .map(|cg| start(&env, cg, flooder))
        .collect::<Result<Vec<_>, _>>()?;
    let mut heavy = start(&env, &heavy_cg, spinner)?;
    util::sleep_ms(3000);
    let s = snapshot()?;
    for f in &mut floods {
        f.finish(WORKER_TIMEOUT).or_fail("flooder")?;
    }
    heavy.finish(WORKER_TIMEOUT).or_fail("heavy")?;
    let msgs: Vec<String> = log_lines(STARVED_MSG)?.split_off(before);
    for m in msgs.iter().take(5) {
        ctx.diag(format!("log: {m}"));
    }
    if let Some(r) = s.under("lagsmon").get(&rel(&heavy_cg)) {
        ctx.diag(format!(
            "heavy: credit {} mcpu, picks {}, starved_picks {}",
            r.credit, r.picks, r.starved_picks
        ));
    }
    let count = s.get("starvations");
    ctx.diag(format!(
        "starvations {count0} -> {count}, {} new messages",
        msgs.len()
    ));
    ctx.check(count > count0, || {
        format!("starvations: expected to increase from {count0}, got {count}")
    });
    let heavy_name = format!("cgroup {} (id ", rel(&heavy_cg));
    ctx.check(msgs.iter().any(|m| m.contains(heavy_name.as_str())), || {
        format!("expected a watchdog message naming the starved heavy group ({heavy_name}...), got {msgs:?}")
    });
    ctx.check(
        msgs.iter().any(|m| m.contains(&format!("(threshold {LOW_THRESHOLD_MS} ms)"))),
        || format!("expected the message to state the threshold, \"(threshold {LOW_THRESHOLD_MS} ms)\""),
    );
    Ok(())
}

// Expect delete_module to succeed while a reader holds the snapshot open, the reader's next
// read to fail (EIO) or see EOF, and closing it afterwards to be harmless.
fn unload_while_open(ctx: &mut Ctx) -> TestResult {
    need_ko()?;
    need_lags(ctx)?;
    if !loaded(ctx) {
        load(ctx, "")?;
    }
    let mut f = File::open(SNAPSHOT).or_fail("opening the snapshot")?;
    let mut head = [0u8; 12];
    f.read_exact(&mut head).or_fail("reading the snapshot")?;
    ensure!(
        &head == b"lags_monitor",
        "snapshot starts with {}, expected \"lags_monitor\"",
        util::show_bytes(&head)
    );
    unload(ctx)?;
    ensure!(
        !util::exists(SNAPSHOT),
        "{SNAPSHOT} still exists after unloading"
    );
    let mut rest = Vec::new();
    let r = f.read_to_end(&mut rest);
    ctx.diag(format!(
        "read after unload: {}",
        match &r {
            Ok(n) => format!("{n} bytes"),
            Err(e) => util::describe_err(e),
        }
    ));
    ctx.check(matches!(r, Ok(0)) || r.is_err(), || {
        format!(
            "read after unload: expected an error or EOF, got {} bytes",
            rest.len()
        )
    });
    drop(f);
    // And the module loads again afterwards.
    load(ctx, "")?;
    Ok(())
}

/// Creates, toggles and removes LAGS groups under `dir` until told to stop.
fn churn(dir: &str, io: &mut WorkerIo) -> i32 {
    let mut i = 0u64;
    while !io.stop_requested() {
        let p = format!("{dir}/c{}", i % 8);
        let _ = std::fs::create_dir(&p);
        let _ = util::write_file(format!("{p}/cpu.lags"), "1");
        // Every third group is switched off again, every other one removed.
        let (third, second) = (i % 3, i % 2);
        if third == 0 {
            let _ = util::write_file(format!("{p}/cpu.lags"), "0");
        }
        if second == 1 {
            let _ = std::fs::remove_dir(&p);
        }
        i += 1;
    }
    for j in 0..8 {
        let _ = std::fs::remove_dir(format!("{dir}/c{j}"));
    }
    0
}

/// Reads the snapshot (when it exists) in a loop until told to stop, holding each open
/// briefly.
fn reader(io: &mut WorkerIo) -> i32 {
    let mut buf = [0u8; 64];
    while !io.stop_requested() {
        if let Ok(mut f) = File::open(SNAPSHOT) {
            while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
    0
}

/// Toggles kernel.sched_lags every few ms until told to stop (ends with 1).
fn toggler(io: &mut WorkerIo) -> i32 {
    let mut on = false;
    while !io.stop_requested() {
        let _ = util::write_file(SYSCTL, if on { "1" } else { "0" });
        on = !on;
        util::sleep_ms(3);
    }
    let _ = util::write_file(SYSCTL, "1");
    0
}

// Expect 10 load/read/unload cycles, with threshold_ms=1 so the watchdog runs all the time,
// to succeed while other processes create, toggle and remove LAGS groups, read the snapshot
// and toggle kernel.sched_lags (any kernel warning fails the boot on the host).
fn load_unload_under_churn(ctx: &mut Ctx) -> TestResult {
    need_ko()?;
    need_lags(ctx)?;
    if loaded(ctx) {
        unload(ctx)?;
    }
    let env = setup()?;
    let dir = env.parent.path().to_string_lossy().into_owned();
    let mut workers = vec![
        Worker::spawn(move |io| churn(&dir, io)).or_fail("fork")?,
        Worker::spawn(reader).or_fail("fork")?,
        Worker::spawn(toggler).or_fail("fork")?,
    ];
    for w in &mut workers {
        w.go().or_fail("starting worker")?;
    }
    let mut reads = 0;
    for i in 0..10 {
        load(ctx, "threshold_ms=1")?;
        util::sleep_ms(50);
        match util::read_file(SNAPSHOT) {
            Ok(t) => {
                parse(&t).or_fail(&format!("cycle {i}: parsing the snapshot"))?;
                reads += 1;
            }
            Err(e) => ctx.diag(format!("cycle {i}: read: {}", util::describe_err(&e))),
        }
        unload(ctx)?;
    }
    for w in &mut workers {
        w.finish(WORKER_TIMEOUT).or_fail("worker")?;
    }
    ctx.check_eq("successful snapshot reads", reads, 10);
    ensure!(
        util::read_trimmed(SYSCTL).or_fail(SYSCTL)? == "1",
        "kernel.sched_lags not restored to 1"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the documented example to parse, and a wrong column line to be rejected.
    #[test]
    fn parse_example() {
        let text = "lags_monitor 1 enabled=1 nr_groups=2 listed=2 threshold_ms=500 starvations=0 \
                    nr_running=1 picks=10 wakeup_preempts=2 starved_picks=0\n\
                    cgroup_id credit_mcpu nr_running picks wakeup_preempts starved_picks wait_max_ns wait_now_ns path\n\
                    1234 870 1 7 0 0 2000000 0 /svc/a\n\
                    1240 12 0 3 2 0 0 0 /svc/b\\x20c\n";
        let s = parse(text).unwrap();
        assert_eq!(s.get("picks"), 10);
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[1].path, "/svc/b\\x20c");
        assert_eq!(s.under("svc").len(), 2);
        assert!(parse(&text.replace("wait_now_ns path", "path")).is_err());
    }
}
