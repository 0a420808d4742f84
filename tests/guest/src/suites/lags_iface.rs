// SPDX-License-Identifier: GPL-2.0
//! `lags_iface`: the user-visible LAGS interface.
//!
//! * `cpu.lags` (cgroup v2, non-root groups): `0` or `1`, exactly; not inherited; writing
//!   needs CAP_SYS_NICE even when the file is delegated;
//! * `/proc/sys/kernel/sched_lags`: the global switch, `1` unless booted with
//!   `sched_lags=off`;
//! * `cpu.stat` of a LAGS group: `lags_*` counters;
//! * debugfs `sched/lags/{credit_period_ns,starve_ns}` tunables.
//!
//! With `lags.expect_lags=0` (kernel without CONFIG_SCHED_LAGS) only
//! `interface_absent_without_lags` runs and asserts none of this exists.

use std::path::Path;
use std::time::Duration;

use super::{ensure, fail, skip, Ctx, OrFail, Stop, Suite, Test, TestResult};
use crate::util::NOBODY;
use crate::util::{self, AffinityGuard, Cgroup, Restore, Worker, CGROUP2_ROOT};

pub const SUITE: Suite = Suite {
    name: "lags_iface",
    tests: &[
        Test {
            name: "interface_absent_without_lags",
            run: interface_absent_without_lags,
        },
        Test {
            name: "cpu_lags_on_child_not_root",
            run: cpu_lags_on_child_not_root,
        },
        Test {
            name: "cpu_lags_read_write",
            run: cpu_lags_read_write,
        },
        Test {
            name: "cpu_lags_invalid_writes_rejected",
            run: cpu_lags_invalid_writes_rejected,
        },
        Test {
            name: "cpu_lags_not_inherited",
            run: cpu_lags_not_inherited,
        },
        Test {
            name: "cpu_lags_unprivileged_denied",
            run: cpu_lags_unprivileged_denied,
        },
        Test {
            name: "sysctl_sched_lags",
            run: sysctl_sched_lags,
        },
        Test {
            name: "cpu_stat_lags_fields",
            run: cpu_stat_lags_fields,
        },
        Test {
            name: "debugfs_tunables",
            run: debugfs_tunables,
        },
    ],
};

/// The schedstats switch: `lags_picks` is counted only while it is on.
pub const SCHEDSTATS: &str = "/proc/sys/kernel/sched_schedstats";
pub const SYSCTL: &str = "/proc/sys/kernel/sched_lags";
pub const DEBUGFS_DIR: &str = "/sys/kernel/debug/sched/lags";
pub const CREDIT_PERIOD_NS: u64 = 1_000_000_000;
pub const STARVE_NS: u64 = 50_000_000;
pub const CREDIT_REF_PCT: u64 = 50;

/// The `cpu.stat` keys a LAGS group must have.
pub const STAT_FIELDS: &[&str] = &[
    "lags_credit_mcpu",
    "lags_picks",
    "lags_wakeup_preempts",
    "lags_starved_picks",
    "lags_wait_max_us",
];

/// The unprivileged user ("nobody").
const CAP_SYS_NICE: u32 = 23;

/// Inputs `cpu.lags` must reject with EINVAL, each written with one write(2) of its full
/// length.
fn invalid_cpu_lags_inputs() -> Vec<Vec<u8>> {
    vec![
        b"2".to_vec(),
        b"-1".to_vec(),
        b"abc".to_vec(),
        Vec::new(),
        b" 1".to_vec(),
        b"1 ".to_vec(),
        b"01".to_vec(),
        b"+1".to_vec(),
        vec![b'1'; 4096],
        b"1\0garbage".to_vec(),
        vec![0xff, 0xfe],
        b"1\n\n".to_vec(),
    ]
}

/// Skips unless the kernel is expected to have LAGS.
pub fn need_lags(ctx: &Ctx) -> TestResult {
    if !ctx.cfg.expect_lags {
        return skip("kernel built without CONFIG_SCHED_LAGS (lags.expect_lags=0)");
    }
    Ok(())
}

/// What the suites that pin their workers share: the test CPU, the other usable CPUs (where
/// the runner moved), the global switch on, and a parent group `dir` under the cgroup v2 root
/// with the cpu controller enabled for its children.
pub struct PinnedEnv {
    /// The CPU the workers run on.
    pub cpu: usize,
    /// The runner's CPUs (and helpers'): all other usable CPUs, empty with one CPU.
    pub others: Vec<usize>,
    // Dropped in this order: the groups, then the sysctl, then the runner's affinity.
    pub parent: Cgroup,
    _sysctl: Restore,
    _pin: Option<AffinityGuard>,
}

impl PinnedEnv {
    pub fn setup(ctx: &Ctx, dir: &str) -> Result<PinnedEnv, Stop> {
        need_lags(ctx)?;
        let util::TestCpu { cpu, others, pin } = util::test_cpu().or_fail("test CPU")?;
        let sysctl = Restore::set(SYSCTL, "1").or_fail("switching LAGS on")?;
        util::ensure_v2_cpu(Duration::from_secs(5)).or_fail("enabling cpu on cgroup v2")?;
        let parent = Cgroup::new_v2(dir).or_fail(&format!("creating /sys/fs/cgroup/{dir}"))?;
        parent
            .enable_cpu_for_children()
            .or_fail(&format!("+cpu in {dir}/cgroup.subtree_control"))?;
        Ok(PinnedEnv {
            cpu,
            others,
            parent,
            _sysctl: sysctl,
            _pin: pin,
        })
    }
}

/// A new v2 cgroup under the root with the cpu controller, which must have `cpu.lags`.
pub fn lags_group(name: &str) -> Result<Cgroup, Stop> {
    util::ensure_v2_cpu(Duration::from_secs(5)).or_fail("enabling cpu on cgroup v2")?;
    let cg = Cgroup::new_v2(name).or_fail(&format!("creating cgroup {name}"))?;
    ensure!(
        cg.file("cpu.lags").exists(),
        "{}: expected cpu.lags, missing",
        cg.path().display()
    );
    Ok(cg)
}

fn read_raw(cg: &Cgroup) -> Result<String, Stop> {
    cg.read("cpu.lags").or_fail("reading cpu.lags")
}

// Expect no trace of LAGS on a kernel built without it (only with lags.expect_lags=0).
fn interface_absent_without_lags(ctx: &mut Ctx) -> TestResult {
    if ctx.cfg.expect_lags {
        return skip("kernel has CONFIG_SCHED_LAGS (lags.expect_lags=1)");
    }
    util::ensure_v2_cpu(Duration::from_secs(5)).or_fail("enabling cpu on cgroup v2")?;
    let cg = Cgroup::new_v2("lags-test-absent").or_fail("creating cgroup")?;
    // Without the cpu controller on the child the check below would prove nothing.
    ensure!(
        cg.file("cpu.weight").exists(),
        "{}: no cpu.weight, the cpu controller is not enabled there",
        cg.path().display()
    );
    ctx.check(!cg.file("cpu.lags").exists(), || {
        format!(
            "{}/cpu.lags exists on a kernel without LAGS",
            cg.path().display()
        )
    });
    let root_file = Path::new(CGROUP2_ROOT).join("cpu.lags");
    ctx.check(!root_file.exists(), || {
        format!("{} exists on a kernel without LAGS", root_file.display())
    });
    ctx.check(!util::exists(SYSCTL), || {
        format!("{SYSCTL} exists on a kernel without LAGS")
    });
    if util::exists("/sys/kernel/debug/sched") {
        ctx.check(!util::exists(DEBUGFS_DIR), || {
            format!("{DEBUGFS_DIR} exists on a kernel without LAGS")
        });
    } else {
        ctx.diag("/sys/kernel/debug/sched missing (debugfs or CONFIG_SCHED_DEBUG); debugfs part not checked");
    }
    let stat = cg.read("cpu.stat").or_fail("cpu.stat")?;
    for key in STAT_FIELDS {
        ctx.check(util::keyed_value(&stat, key).is_none(), || {
            format!("cpu.stat has {key} on a kernel without LAGS")
        });
    }
    Ok(())
}

// Expect cpu.lags on a non-root v2 cgroup and not on the root.
fn cpu_lags_on_child_not_root(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let _cg = lags_group("lags-test-exists")?;
    let root_file = Path::new(CGROUP2_ROOT).join("cpu.lags");
    ensure!(
        !root_file.exists(),
        "{}: expected no cpu.lags on the root cgroup, found one",
        root_file.display()
    );
    Ok(())
}

// Expect 0 on a new group, and "1", "0\n", "1\n" to be accepted and read back.
fn cpu_lags_read_write(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let cg = lags_group("lags-test-rw")?;
    let v = read_raw(&cg)?;
    ctx.check_eq("new group cpu.lags", format!("{v:?}"), "\"0\\n\"".into());
    for (input, want) in [("1", "1\n"), ("0\n", "0\n"), ("1\n", "1\n")] {
        let r = cg.write("cpu.lags", input);
        if !ctx.check(r.is_ok(), || {
            format!(
                "writing {input:?} to cpu.lags: expected success, got {}",
                util::describe(&r)
            )
        }) {
            continue;
        }
        let v = read_raw(&cg)?;
        ctx.check_eq(
            &format!("cpu.lags after writing {input:?}"),
            format!("{v:?}"),
            format!("{want:?}"),
        );
    }
    Ok(())
}

// Expect every malformed write to fail with EINVAL and leave 0 or 1 unchanged.
fn cpu_lags_invalid_writes_rejected(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let cg = lags_group("lags-test-inval")?;
    let inputs = invalid_cpu_lags_inputs();
    for start in ["0", "1"] {
        cg.write("cpu.lags", start)
            .or_fail(&format!("writing {start:?} to cpu.lags"))?;
        let want = format!("{start}\n");
        for input in &inputs {
            let shown = util::show_bytes(input);
            let r = cg.write("cpu.lags", input);
            // A zero-length write(2) never reaches the file's handler (kernfs returns 0
            // for it), so for "" only "nothing changed" can be asserted.
            let rejected =
                util::errno_of(&r) == Some(libc::EINVAL) || (input.is_empty() && r.is_ok());
            ctx.check(rejected, || {
                format!(
                    "cpu.lags={start}, writing {shown}: expected EINVAL, got {}",
                    util::describe(&r)
                )
            });
            let v = read_raw(&cg)?;
            ctx.check(v == want, || {
                format!("cpu.lags={start}, after writing {shown}: expected {want:?}, got {v:?}")
            });
            if v != want {
                // Put the starting value back so one bad case does not hide the others.
                let _ = cg.write("cpu.lags", start);
            }
        }
    }
    Ok(())
}

// Expect a child of a LAGS group to start with cpu.lags=0.
fn cpu_lags_not_inherited(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let parent = lags_group("lags-test-parent")?;
    parent
        .enable_cpu_for_children()
        .or_fail("+cpu in the parent's cgroup.subtree_control")?;
    parent
        .write("cpu.lags", "1")
        .or_fail("writing 1 to the parent's cpu.lags")?;
    let child = parent.child("child").or_fail("mkdir child")?;
    ensure!(
        child.file("cpu.lags").exists(),
        "{}: expected cpu.lags, missing",
        child.path().display()
    );
    let v = child
        .read("cpu.lags")
        .or_fail("reading the child's cpu.lags")?;
    ctx.check_eq(
        "child cpu.lags under a parent with cpu.lags=1",
        format!("{v:?}"),
        "\"0\\n\"".into(),
    );
    let v = read_raw(&parent)?;
    ctx.check_eq("parent cpu.lags", format!("{v:?}"), "\"1\\n\"".into());
    Ok(())
}

/// In a forked child: drop to nobody, then report identity and the result of each action.
fn unprivileged_probe(io: &mut util::WorkerIo, actions: &[(&str, &Path, Option<&str>)]) -> i32 {
    if let Err(e) = util::drop_to_nobody() {
        io.send_kv("drop", e);
        return 1;
    }
    util::send_identity(io);
    for (label, path, write) in actions {
        let f = util::open_write(path);
        io.send_kv(&format!("open_{label}"), util::describe(&f));
        if let (Ok(f), Some(data)) = (f, write) {
            let r = util::write_once(&f, data.as_bytes());
            io.send_kv(&format!("write_{label}"), util::describe(&r));
        }
    }
    0
}

/// Runs [`unprivileged_probe`] and checks that it really lost its privileges.
fn probe_as_nobody(
    ctx: &mut Ctx,
    actions: Vec<(&'static str, std::path::PathBuf, Option<String>)>,
) -> Result<Vec<(String, String)>, Stop> {
    let mut w = Worker::spawn(move |io| {
        let acts: Vec<(&str, &Path, Option<&str>)> = actions
            .iter()
            .map(|(l, p, d)| (*l, p.as_path(), d.as_deref()))
            .collect();
        unprivileged_probe(io, &acts)
    })
    .or_fail("fork")?;
    w.go().or_fail("starting the unprivileged child")?;
    let out = w
        .finish(Duration::from_secs(20))
        .or_fail("unprivileged child")?;
    let kvs = util::parse_kv_lines(&String::from_utf8_lossy(&out));
    ctx.diag(format!(
        "unprivileged child: {}",
        kvs.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let want_uid = format!("{NOBODY}/{NOBODY}");
    ensure!(
        util::kv(&kvs, "uid") == Some(want_uid.as_str()),
        "unprivileged child uid/euid: expected {want_uid}, got {:?}",
        util::kv(&kvs, "uid")
    );
    let capeff = util::kv(&kvs, "capeff").and_then(|c| u64::from_str_radix(c, 16).ok());
    ensure!(
        capeff.is_some_and(|c| c & (1 << CAP_SYS_NICE) == 0),
        "unprivileged child CapEff: expected CAP_SYS_NICE cleared, got {:?}",
        util::kv(&kvs, "capeff")
    );
    Ok(kvs)
}

// Expect an unprivileged user to be unable to set cpu.lags: EACCES on open, and EPERM on
// write even when the group is delegated to it (chown); and unable to write the sysctl.
fn cpu_lags_unprivileged_denied(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let cg = lags_group("lags-test-priv")?;
    let lags = cg.file("cpu.lags");
    let sysctl_now = util::read_trimmed(SYSCTL).or_fail(SYSCTL)?;

    // 1. Files owned by root: opening for writing fails.
    let kvs = probe_as_nobody(
        ctx,
        vec![
            ("cpu_lags", lags.clone(), Some("1".to_owned())),
            // Writing the current value: harmless even if the kernel wrongly allowed it.
            ("sysctl", SYSCTL.into(), Some(sysctl_now)),
        ],
    )?;
    let got = util::kv(&kvs, "open_cpu_lags").unwrap_or("(missing)");
    ctx.check(got == "EACCES", || {
        format!("nobody opening root-owned cpu.lags for writing: expected EACCES, got {got}")
    });
    let open = util::kv(&kvs, "open_sysctl").unwrap_or("(missing)");
    let write = util::kv(&kvs, "write_sysctl");
    ctx.check(
        open == "EACCES" || open == "EPERM" || (open == "ok" && write == Some("EPERM")),
        || {
            format!(
                "nobody writing {SYSCTL}: expected EACCES/EPERM, got open={open} write={write:?}"
            )
        },
    );

    // 2. Delegated group (directory and cpu.lags chowned): open works, the write must not.
    util::chown(cg.path(), NOBODY, NOBODY).or_fail("chown of the cgroup directory")?;
    util::chown(&lags, NOBODY, NOBODY).or_fail("chown of cpu.lags")?;
    let kvs = probe_as_nobody(ctx, vec![("cpu_lags", lags.clone(), Some("1".to_owned()))])?;
    let open = util::kv(&kvs, "open_cpu_lags").unwrap_or("(missing)");
    ctx.check(open == "ok", || {
        format!("nobody opening its delegated cpu.lags: expected ok, got {open}")
    });
    let write = util::kv(&kvs, "write_cpu_lags").unwrap_or("(missing)");
    ctx.check(write == "EPERM", || {
        format!("nobody writing 1 to its delegated cpu.lags: expected EPERM, got {write}")
    });
    let v = read_raw(&cg)?;
    ctx.check_eq(
        "cpu.lags after the unprivileged write",
        format!("{v:?}"),
        "\"0\\n\"".into(),
    );
    Ok(())
}

// Expect the global switch to default to 1 (0 with sched_lags=off), accept 0/1 and reject
// anything else.
fn sysctl_sched_lags(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    ensure!(util::exists(SYSCTL), "{SYSCTL}: expected to exist, missing");
    let orig = Restore::save(SYSCTL).or_fail(SYSCTL)?;
    let want = if ctx.cfg.sched_lags_off { "0" } else { "1" };
    ctx.diag(format!(
        "{SYSCTL}={} (booted with sched_lags off: {})",
        orig.value(),
        ctx.cfg.sched_lags_off
    ));
    ctx.check_eq(
        &format!("{SYSCTL} at boot"),
        orig.value().to_owned(),
        want.to_owned(),
    );
    for v in ["0", "1"] {
        util::write_file(SYSCTL, v).or_fail(&format!("writing {v} to {SYSCTL}"))?;
        let got = util::read_trimmed(SYSCTL).or_fail(SYSCTL)?;
        ctx.check_eq(&format!("{SYSCTL} after writing {v}"), got, v.to_owned());
    }
    for start in ["1", "0"] {
        util::write_file(SYSCTL, start).or_fail(&format!("writing {start} to {SYSCTL}"))?;
        for bad in ["2", "-1", "abc"] {
            let r = util::write_file(SYSCTL, bad);
            ctx.check(util::errno_of(&r) == Some(libc::EINVAL), || {
                format!(
                    "{SYSCTL}={start}, writing {bad:?}: expected EINVAL, got {}",
                    util::describe(&r)
                )
            });
            let got = util::read_trimmed(SYSCTL).or_fail(SYSCTL)?;
            ctx.check_eq(
                &format!("{SYSCTL}={start} after rejected {bad:?}"),
                got,
                start.to_owned(),
            );
        }
    }
    drop(orig);
    let back = util::read_trimmed(SYSCTL).or_fail(SYSCTL)?;
    ctx.check_eq(&format!("{SYSCTL} restored"), back, want.to_owned());
    Ok(())
}

// Expect the lags_* counters in cpu.stat of a LAGS group, and none in a normal group.
fn cpu_stat_lags_fields(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let on = lags_group("lags-test-stat-on")?;
    let off = lags_group("lags-test-stat-off")?;
    on.write("cpu.lags", "1").or_fail("writing 1 to cpu.lags")?;
    let stat = on.read("cpu.stat").or_fail("cpu.stat")?;
    for key in STAT_FIELDS {
        let v = util::keyed_value(&stat, key);
        ctx.check(v.is_some_and(|v| v.parse::<u64>().is_ok()), || {
            format!("cpu.stat with cpu.lags=1: expected an integer {key}, got {v:?}")
        });
    }
    let stat = off.read("cpu.stat").or_fail("cpu.stat")?;
    for key in STAT_FIELDS {
        ctx.check(util::keyed_value(&stat, key).is_none(), || {
            format!("cpu.stat with cpu.lags=0: expected no {key}, found one")
        });
    }
    Ok(())
}

// Expect the debugfs tunables' defaults, range checks and effect of a valid write.
fn debugfs_tunables(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    if !util::exists("/sys/kernel/debug/sched") {
        return fail(
            "/sys/kernel/debug/sched missing: debugfs not mounted or CONFIG_SCHED_DEBUG off",
        );
    }
    ensure!(
        util::exists(DEBUGFS_DIR),
        "{DEBUGFS_DIR}: expected to exist, missing"
    );
    let bad_ns: &[&str] = &[
        "0",
        "1",
        "-5",
        "abc",
        "99999999999999999999",
        "",
        "20000000000",
    ];
    let bad_pct: &[&str] = &["0", "-5", "abc", "99999999999999999999", "", "1001", "50x"];
    for (name, default, valid, bad) in [
        ("credit_period_ns", CREDIT_PERIOD_NS, 500_000_000u64, bad_ns),
        ("starve_ns", STARVE_NS, 20_000_000, bad_ns),
        ("credit_ref_pct", CREDIT_REF_PCT, 25, bad_pct),
    ] {
        let path = Path::new(DEBUGFS_DIR).join(name);
        let guard = Restore::save(&path).or_fail(&path.display().to_string())?;
        ctx.check_eq(name, guard.value().to_owned(), default.to_string());
        let start = guard.value().to_owned();
        for b in bad {
            let r = util::write_file(&path, b);
            // A zero-length write never reaches the handler; only "unchanged" applies.
            let rejected = util::errno_of(&r) == Some(libc::EINVAL) || (b.is_empty() && r.is_ok());
            ctx.check(rejected, || {
                format!(
                    "{name}: writing {b:?}: expected EINVAL, got {}",
                    util::describe(&r)
                )
            });
            let now = util::read_trimmed(&path).or_fail(name)?;
            ctx.check_eq(&format!("{name} after rejected {b:?}"), now, start.clone());
        }
        let r = util::write_file(&path, valid.to_string());
        ctx.check(r.is_ok(), || {
            format!(
                "{name}: writing {valid}: expected success, got {}",
                util::describe(&r)
            )
        });
        let now = util::read_trimmed(&path).or_fail(name)?;
        ctx.check_eq(
            &format!("{name} after writing {valid}"),
            now,
            valid.to_string(),
        );
        drop(guard);
        let now = util::read_trimmed(&path).or_fail(name)?;
        ctx.check_eq(&format!("{name} restored"), now, start);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the forked probe to really become nobody without capabilities, so that a
    // root-owned 0644 file cannot be opened for writing. Run by a user who is not root, expect
    // the probe to report that it could not drop privileges (EPERM) instead of pretending.
    // Forks, so it runs alone in a process of its own.
    #[test]
    fn probe_drops_privileges() {
        if !util::in_own_process("suites::lags_iface::tests::probe_drops_privileges") {
            return;
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let mut w = Worker::spawn(|io| unprivileged_probe(io, &[])).unwrap();
            w.go().unwrap();
            let out = w.collect(Duration::from_secs(10)).unwrap();
            let code = w.wait(Duration::from_secs(10)).unwrap();
            let kvs = util::parse_kv_lines(&String::from_utf8_lossy(&out));
            let drop = util::kv(&kvs, "drop").unwrap_or("(missing)");
            assert_eq!(code, 1, "not root: the probe should fail, {kvs:?}");
            assert!(
                drop.contains("Operation not permitted"),
                "not root: {kvs:?}"
            );
            return;
        }
        let path = std::env::temp_dir().join(format!("lags-probe-{}", std::process::id()));
        std::fs::write(&path, "0\n").unwrap();
        let p2 = path.clone();
        let mut w =
            Worker::spawn(move |io| unprivileged_probe(io, &[("file", p2.as_path(), Some("1"))]))
                .unwrap();
        w.go().unwrap();
        let out = w.finish(Duration::from_secs(10)).unwrap();
        let _ = std::fs::remove_file(&path);
        let kvs = util::parse_kv_lines(&String::from_utf8_lossy(&out));
        assert_eq!(util::kv(&kvs, "uid"), Some("65534/65534"), "{kvs:?}");
        let cap = u64::from_str_radix(util::kv(&kvs, "capeff").unwrap(), 16).unwrap();
        assert_eq!(cap & (1 << CAP_SYS_NICE), 0, "{kvs:?}");
        assert_eq!(util::kv(&kvs, "open_file"), Some("EACCES"), "{kvs:?}");
        assert_eq!(util::kv(&kvs, "write_file"), None, "{kvs:?}");
    }

    // Expect the invalid-input table to hold the cases the interface promises to reject.
    #[test]
    fn invalid_inputs_table() {
        let inputs = invalid_cpu_lags_inputs();
        assert_eq!(inputs.len(), 12);
        assert!(inputs.iter().any(|i| i.is_empty()));
        assert!(inputs.iter().any(|i| i.len() == 4096));
        assert!(inputs.iter().any(|i| i.contains(&0)));
        assert!(!inputs.iter().any(|i| i == b"0" || i == b"1" || i == b"1\n"));
    }
}
