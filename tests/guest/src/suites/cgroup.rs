// SPDX-License-Identifier: GPL-2.0
//! `cgroup`: the stock cgroup v2 cpu controller behaves as users rely on. LAGS changes the
//! fair class; this suite makes sure the plumbing it builds on still works.

use std::path::Path;
use std::time::Duration;

use super::{ensure, fail, Ctx, OrFail, Suite, Test, TestResult};
use crate::util::{self, Cgroup, Worker, CGROUP2_ROOT};

pub const SUITE: Suite = Suite {
    name: "cgroup",
    tests: &[
        Test {
            name: "cgroup2_has_cpu_controller",
            run: cgroup2_has_cpu_controller,
        },
        Test {
            name: "enable_cpu_in_subtree_control",
            run: enable_cpu_in_subtree_control,
        },
        Test {
            name: "cpu_weight_default_and_round_trip",
            run: cpu_weight_default_and_round_trip,
        },
        Test {
            name: "cpu_weight_invalid_rejected",
            run: cpu_weight_invalid_rejected,
        },
        Test {
            name: "cpu_stat_usage_grows",
            run: cpu_stat_usage_grows,
        },
        Test {
            name: "cgroup_removal",
            run: cgroup_removal,
        },
    ],
};

/// The root's cpu controller enabled for children, as a precondition of the later tests.
fn need_cpu() -> TestResult {
    util::ensure_v2_cpu(Duration::from_secs(5)).or_fail("enabling cpu on cgroup v2")
}

// Expect cgroup2 mounted on /sys/fs/cgroup with the cpu controller available.
fn cgroup2_has_cpu_controller(ctx: &mut Ctx) -> TestResult {
    let mounts = util::read_file("/proc/mounts").or_fail("/proc/mounts")?;
    // The last mount on the path is the one in effect.
    let line = mounts
        .lines()
        .rfind(|l| l.split_whitespace().nth(1) == Some(CGROUP2_ROOT));
    ensure!(
        line.map(|l| l.split_whitespace().nth(2) == Some("cgroup2")) == Some(true),
        "/proc/mounts: expected a cgroup2 mount on {CGROUP2_ROOT}, got {line:?}"
    );
    // After the lags_v1 suite unmounts its v1 hierarchy the controller comes back to v2
    // asynchronously, so allow a few seconds.
    let path = Path::new(CGROUP2_ROOT).join("cgroup.controllers");
    let deadline = util::now_ns() + 5_000_000_000;
    loop {
        let ctrls = util::controller_list(&path).or_fail("cgroup.controllers")?;
        if ctrls.iter().any(|c| c == "cpu") {
            ctx.diag(format!("cgroup.controllers: {}", ctrls.join(" ")));
            return Ok(());
        }
        if util::now_ns() > deadline {
            return fail(format!(
                "{}: expected to list cpu, got {:?}",
                path.display(),
                ctrls.join(" ")
            ));
        }
        util::sleep_ms(50);
    }
}

// Expect "+cpu" in the root's cgroup.subtree_control to be accepted and to show up there.
fn enable_cpu_in_subtree_control(_ctx: &mut Ctx) -> TestResult {
    let path = Path::new(CGROUP2_ROOT).join("cgroup.subtree_control");
    util::write_file(&path, "+cpu").or_fail("writing +cpu to cgroup.subtree_control")?;
    let sub = util::controller_list(&path).or_fail("cgroup.subtree_control")?;
    ensure!(
        sub.iter().any(|c| c == "cpu"),
        "cgroup.subtree_control after +cpu: expected to contain cpu, got {:?}",
        sub.join(" ")
    );
    Ok(())
}

// Expect a new child's cpu.weight to be 100 and a write of 200 to read back.
fn cpu_weight_default_and_round_trip(ctx: &mut Ctx) -> TestResult {
    need_cpu()?;
    let cg = Cgroup::new_v2("lags-test-weight").or_fail("creating cgroup")?;
    let w = cg.read("cpu.weight").or_fail("reading cpu.weight")?;
    ctx.check_eq("default cpu.weight", w.trim(), "100");
    cg.write("cpu.weight", "200")
        .or_fail("writing 200 to cpu.weight")?;
    let w = cg.read("cpu.weight").or_fail("reading cpu.weight")?;
    ctx.check_eq("cpu.weight after writing 200", w.trim(), "200");
    Ok(())
}

// Expect out-of-range and non-numeric weights to fail (EINVAL/ERANGE) and change nothing.
fn cpu_weight_invalid_rejected(ctx: &mut Ctx) -> TestResult {
    need_cpu()?;
    let cg = Cgroup::new_v2("lags-test-weight-inval").or_fail("creating cgroup")?;
    cg.write("cpu.weight", "200")
        .or_fail("writing 200 to cpu.weight")?;
    for bad in ["0", "10001", "abc"] {
        let r = cg.write("cpu.weight", bad);
        let errno = util::errno_of(&r);
        ctx.check(
            errno == Some(libc::EINVAL) || errno == Some(libc::ERANGE),
            || {
                format!(
                    "writing {bad:?} to cpu.weight: expected EINVAL or ERANGE, got {}",
                    util::describe(&r)
                )
            },
        );
        let now = cg.read("cpu.weight").or_fail("reading cpu.weight")?;
        ctx.check_eq(
            &format!("cpu.weight after rejected {bad:?}"),
            now.trim(),
            "200",
        );
    }
    Ok(())
}

// Expect ~300 ms of spinning in a child cgroup to be charged to its cpu.stat usage_usec.
fn cpu_stat_usage_grows(ctx: &mut Ctx) -> TestResult {
    need_cpu()?;
    let cg = Cgroup::new_v2("lags-test-usage").or_fail("creating cgroup")?;
    let before = cg.cpu_stat("usage_usec").or_fail("cpu.stat")?;
    let mut w = Worker::spawn(|_| {
        util::spin_until_ns(util::now_ns() + 300_000_000);
        0
    })
    .or_fail("fork")?;
    let t0 = util::now_ns();
    w.start_in(&cg, None).or_fail("starting spinner")?;
    let code = w
        .wait(Duration::from_secs(30))
        .or_fail("waiting for spinner")?;
    let wall_us = (util::now_ns() - t0) / 1000;
    ensure!(code == 0, "spinner exit status: expected 0, got {code}");
    let after = cg.cpu_stat("usage_usec").or_fail("cpu.stat")?;
    let delta = after.saturating_sub(before);
    ctx.diag(format!(
        "usage_usec grew by {delta} over {wall_us}us of wall time"
    ));
    ensure!(
        delta > 50_000,
        "cpu.stat usage_usec growth after spinning 300ms: expected > 50000, got {delta}"
    );
    // One single-threaded process cannot use more CPU than wall time (+ accounting slack).
    ensure!(
        delta <= wall_us + wall_us / 10 + 20_000,
        "cpu.stat usage_usec growth: expected <= wall time {wall_us}us (+10% +20ms), got {delta}"
    );
    Ok(())
}

// Expect rmdir to refuse a populated cgroup (EBUSY) and to succeed once it is emptied.
fn cgroup_removal(_ctx: &mut Ctx) -> TestResult {
    need_cpu()?;
    let cg = Cgroup::new_v2("lags-test-rmdir").or_fail("creating cgroup")?;
    let path = cg.path().to_owned();
    let mut w = Worker::spawn(|io| {
        while !io.stop_requested() {
            util::sleep_ms(10);
        }
        0
    })
    .or_fail("fork")?;
    w.start_in(&cg, None).or_fail("starting sleeper")?;
    let r = std::fs::remove_dir(&path);
    ensure!(
        util::errno_of(&r) == Some(libc::EBUSY),
        "rmdir of a populated cgroup: expected EBUSY, got {}",
        util::describe(&r)
    );
    let root = Path::new(CGROUP2_ROOT);
    util::write_file(root.join("cgroup.procs"), w.pid().to_string())
        .or_fail("moving the process back to the root cgroup")?;
    let procs = cg.read("cgroup.procs").or_fail("cgroup.procs")?;
    ensure!(
        procs.trim().is_empty(),
        "cgroup.procs after moving out: expected empty, got {:?}",
        procs.trim()
    );
    w.finish(Duration::from_secs(10))
        .or_fail("stopping sleeper")?;
    let r = std::fs::remove_dir(&path);
    ensure!(
        r.is_ok(),
        "rmdir of an emptied cgroup: expected success, got {}",
        util::describe(&r)
    );
    ensure!(
        !path.exists(),
        "{} still exists after rmdir",
        path.display()
    );
    // The guard's own removal is now a no-op (the directory is gone).
    cg.remove().or_fail("guard cleanup")?;
    Ok(())
}
