// SPDX-License-Identifier: GPL-2.0
//! `lags_v1`: `cpu.lags` on a cgroup v1 cpu hierarchy.
//!
//! The cpu controller can be mounted on v1 only while cgroup v2 does not use it, so this
//! suite runs before `cgroup` in the default order; if v2 already uses it (and we are the
//! test guest) it is freed first. At the end the v1 hierarchy is unmounted and the suite
//! checks that the controller returns to v2 for the suites after it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ensure, fail, skip, Ctx, OrFail, Stop, Suite, Test, TestResult};
use crate::util::{self, Cgroup, CGROUP2_ROOT};

pub const SUITE: Suite = Suite {
    name: "lags_v1",
    tests: &[
        Test {
            name: "v1_mount_cpu_hierarchy",
            run: v1_mount_cpu_hierarchy,
        },
        Test {
            name: "v1_cpu_lags_on_child_not_root",
            run: v1_cpu_lags_on_child_not_root,
        },
        Test {
            name: "v1_cpu_lags_round_trip",
            run: v1_cpu_lags_round_trip,
        },
        Test {
            name: "v1_cpu_lags_invalid_rejected",
            run: v1_cpu_lags_invalid_rejected,
        },
        Test {
            name: "v1_unmount_returns_cpu_to_v2",
            run: v1_unmount_returns_cpu_to_v2,
        },
    ],
};

const MNT: &str = "/mnt/cgv1";

/// The mounted v1 hierarchy and its test child; unmounted when the suite ends.
struct V1 {
    mnt: PathBuf,
    child: Option<Cgroup>,
    mounted: bool,
}

impl V1 {
    /// Removes the child, waits until the kernel has released it (otherwise umount leaves
    /// the hierarchy alive) and unmounts.
    fn teardown(&mut self) -> Result<(), String> {
        if let Some(child) = self.child.take() {
            child
                .remove()
                .map_err(|e| format!("rmdir of the v1 child: {}", util::describe_err(&e)))?;
        }
        if !self.mounted {
            return Ok(());
        }
        wait_v1_cgroups_released(Duration::from_secs(3));
        util::umount(&self.mnt).map_err(|e| format!("umount {MNT}: {}", util::describe_err(&e)))?;
        self.mounted = false;
        Ok(())
    }
}

impl Drop for V1 {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            util::warn(format!("cleanup: {e}"));
        }
    }
}

fn v2_controllers() -> Vec<String> {
    util::controller_list(&Path::new(CGROUP2_ROOT).join("cgroup.controllers")).unwrap_or_default()
}

/// `num_cgroups` of the cpu hierarchy in /proc/cgroups.
fn cpu_num_cgroups() -> Option<u64> {
    let text = util::read_file("/proc/cgroups").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&"cpu")).then(|| f.get(2)?.parse().ok())?
    })
}

/// Waits until only the v1 root is left in the cpu hierarchy (removed children are freed
/// asynchronously).
fn wait_v1_cgroups_released(wait: Duration) {
    let deadline = util::now_ns() + wait.as_nanos() as u64;
    while cpu_num_cgroups().is_some_and(|n| n > 1) && util::now_ns() < deadline {
        util::sleep_ms(20);
    }
}

/// Frees the cpu controller from cgroup v2: empties and removes every child cgroup and
/// writes `-cpu` to the root's subtree_control. Only done in the test guest.
fn free_cpu_from_v2(ctx: &mut Ctx) -> TestResult {
    let root = Path::new(CGROUP2_ROOT);
    let sub = util::controller_list(&root.join("cgroup.subtree_control")).unwrap_or_default();
    if !sub.iter().any(|c| c == "cpu") {
        return Ok(());
    }
    if !ctx.cfg.in_guest {
        return skip("cpu is in use on cgroup v2 and this is not the test guest (would have to tear down the host's cgroups)");
    }
    ctx.diag("cpu is enabled on cgroup v2: removing child cgroups and writing -cpu");
    let children: Vec<PathBuf> = std::fs::read_dir(root)
        .or_fail("listing /sys/fs/cgroup")?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    for c in children {
        util::remove_tree(&c, root).or_fail(&format!("removing {}", c.display()))?;
    }
    util::write_file(root.join("cgroup.subtree_control"), "-cpu")
        .or_fail("writing -cpu to the v2 root's cgroup.subtree_control")
}

/// Mounts `-t cgroup -o cpu none /mnt/cgv1`, retrying while the controller is still busy
/// on v2 (css being destroyed).
fn mount_v1() -> Result<(), std::io::Error> {
    let _ = std::fs::create_dir_all(MNT);
    let deadline = util::now_ns() + 5_000_000_000;
    loop {
        match util::mount("none", Path::new(MNT), "cgroup", 0, "cpu") {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && util::now_ns() < deadline => {
                util::sleep_ms(50)
            }
            r => return r,
        }
    }
}

fn need_v1<'a>(ctx: &'a mut Ctx<'_>) -> Result<&'a mut V1, Stop> {
    match ctx.stash.get::<V1>() {
        Some(v1) if v1.mounted => Ok(v1),
        _ => skip("no v1 cpu hierarchy (see v1_mount_cpu_hierarchy)"),
    }
}

// Expect the cpu controller to mount as a cgroup v1 hierarchy (and leave cgroup v2).
fn v1_mount_cpu_hierarchy(ctx: &mut Ctx) -> TestResult {
    if !ctx.cfg.in_guest {
        // A host may already have the cpu controller on a v1 hierarchy, which the mount
        // would join; leave the host's cgroups alone.
        return skip("mounts a cgroup v1 cpu hierarchy: only in the test guest (PID 1)");
    }
    free_cpu_from_v2(ctx)?;
    match mount_v1() {
        Ok(()) => {}
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(0);
            if [libc::ENODEV, libc::ENOENT, libc::EOPNOTSUPP].contains(&errno) {
                return skip(format!(
                    "cgroup v1 cpu hierarchy not available: mount failed with {}",
                    util::errno_name(errno)
                ));
            }
            return fail(format!(
                "mount -t cgroup -o cpu none {MNT}: expected success, got {}",
                util::describe_err(&e)
            ));
        }
    }
    ctx.stash.put(V1 {
        mnt: PathBuf::from(MNT),
        child: None,
        mounted: true,
    });
    let v2 = v2_controllers();
    ensure!(
        !v2.iter().any(|c| c == "cpu"),
        "v2 cgroup.controllers while cpu is on v1: expected no cpu, got {:?}",
        v2.join(" ")
    );
    ensure!(
        Path::new(MNT).join("cpu.shares").exists(),
        "{MNT}/cpu.shares missing: this is not a v1 cpu hierarchy"
    );
    let child = Cgroup::new_in(Path::new(MNT), "lagsv1").or_fail("mkdir of a v1 child")?;
    need_v1(ctx)?.child = Some(child);
    Ok(())
}

fn v1_child(ctx: &mut Ctx) -> Result<PathBuf, Stop> {
    let v1 = need_v1(ctx)?;
    match &v1.child {
        Some(c) => Ok(c.path().to_owned()),
        None => fail("the v1 child cgroup was not created"),
    }
}

// Expect cpu.lags on a v1 child and not on the v1 root (absent on both without LAGS).
fn v1_cpu_lags_on_child_not_root(ctx: &mut Ctx) -> TestResult {
    let child = v1_child(ctx)?;
    let root_has = util::exists(Path::new(MNT).join("cpu.lags"));
    let child_has = util::exists(child.join("cpu.lags"));
    ensure!(
        util::exists(child.join("cpu.shares")),
        "{}: no cpu.shares, the cpu controller is not active there",
        child.display()
    );
    if ctx.cfg.expect_lags {
        ctx.check(child_has, || {
            format!("{}/cpu.lags: expected to exist, missing", child.display())
        });
        ctx.check(!root_has, || {
            format!("{MNT}/cpu.lags: expected no file on the root, found one")
        });
    } else {
        ctx.check(!child_has && !root_has, || {
            format!("lags.expect_lags=0 but cpu.lags exists (child: {child_has}, root: {root_has})")
        });
    }
    Ok(())
}

fn need_lags(ctx: &Ctx) -> TestResult {
    if !ctx.cfg.expect_lags {
        return skip("kernel built without CONFIG_SCHED_LAGS (lags.expect_lags=0)");
    }
    Ok(())
}

// Expect a new v1 group to read 0 and 1/0 writes to read back.
fn v1_cpu_lags_round_trip(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let f = v1_child(ctx)?.join("cpu.lags");
    let v = util::read_file(&f).or_fail("reading cpu.lags")?;
    ctx.check_eq("new v1 group cpu.lags", format!("{v:?}"), "\"0\\n\"".into());
    for (write, want) in [("1", "1\n"), ("0", "0\n")] {
        util::write_file(&f, write).or_fail(&format!("writing {write:?} to v1 cpu.lags"))?;
        let v = util::read_file(&f).or_fail("reading cpu.lags")?;
        ctx.check_eq(
            &format!("v1 cpu.lags after writing {write:?}"),
            format!("{v:?}"),
            format!("{want:?}"),
        );
    }
    Ok(())
}

// Expect "2" to fail with EINVAL on v1 and leave the value.
fn v1_cpu_lags_invalid_rejected(ctx: &mut Ctx) -> TestResult {
    need_lags(ctx)?;
    let f = v1_child(ctx)?.join("cpu.lags");
    util::write_file(&f, "1").or_fail("writing 1 to v1 cpu.lags")?;
    let r = util::write_file(&f, "2");
    ctx.check(util::errno_of(&r) == Some(libc::EINVAL), || {
        format!(
            "writing \"2\" to v1 cpu.lags: expected EINVAL, got {}",
            util::describe(&r)
        )
    });
    let v = util::read_file(&f).or_fail("reading cpu.lags")?;
    ctx.check_eq(
        "v1 cpu.lags after rejected \"2\"",
        format!("{v:?}"),
        "\"1\\n\"".into(),
    );
    Ok(())
}

// Expect rmdir + umount to work and the cpu controller to come back to cgroup v2.
fn v1_unmount_returns_cpu_to_v2(ctx: &mut Ctx) -> TestResult {
    let mut v1 = match ctx.stash.take::<V1>() {
        Some(v1) if v1.mounted => v1,
        _ => return skip("no v1 cpu hierarchy (see v1_mount_cpu_hierarchy)"),
    };
    v1.teardown().or_fail("tearing down the v1 hierarchy")?;
    // The hierarchy is destroyed asynchronously after umount. If a removed child was still
    // referenced at umount time the hierarchy stays alive unmounted; mounting and
    // unmounting it again then finishes the job.
    for attempt in 0..3 {
        let deadline = util::now_ns() + 2_000_000_000;
        while util::now_ns() < deadline {
            if v2_controllers().iter().any(|c| c == "cpu") {
                if attempt > 0 {
                    ctx.diag(format!("cpu came back to v2 after {attempt} re-mount(s)"));
                }
                return Ok(());
            }
            util::sleep_ms(20);
        }
        if mount_v1().is_ok() {
            wait_v1_cgroups_released(Duration::from_secs(2));
            let _ = util::umount(Path::new(MNT));
        }
    }
    fail(format!(
        "v2 cgroup.controllers after unmounting the v1 hierarchy: expected cpu, got {:?}",
        v2_controllers().join(" ")
    ))
}
