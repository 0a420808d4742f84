// SPDX-License-Identifier: GPL-2.0
//! `boot`: the guest booted the kernel we built.

use super::{ensure, skip, Ctx, OrFail, Suite, Test, TestResult};
use crate::util;

pub const SUITE: Suite = Suite {
    name: "boot",
    tests: &[
        Test {
            name: "kernel_release_matches",
            run: kernel_release_matches,
        },
        Test {
            name: "proc_version_matches",
            run: proc_version_matches,
        },
        Test {
            name: "online_cpus_consistent",
            run: online_cpus_consistent,
        },
    ],
};

/// The release string from uname(2).
fn uname_release() -> Result<String, String> {
    // SAFETY: utsname is plain data; all-zeroes is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn expected_version(ctx: &Ctx) -> Result<String, super::Stop> {
    match &ctx.cfg.expect_version {
        Some(v) => Ok(v.clone()),
        None => skip("no lags.expect_version= on the kernel command line"),
    }
}

// Expect `uname -r` to start with the version the host built (e.g. 6.12.117).
fn kernel_release_matches(ctx: &mut Ctx) -> TestResult {
    let release = uname_release().or_fail("uname")?;
    ctx.diag(format!("uname -r: {release}"));
    let want = expected_version(ctx)?;
    ensure!(
        release.starts_with(&want),
        "kernel release: expected prefix {want:?}, got {release:?}"
    );
    Ok(())
}

// Expect /proc/version to name the same version and the same release as uname.
fn proc_version_matches(ctx: &mut Ctx) -> TestResult {
    let text = util::read_trimmed("/proc/version").or_fail("/proc/version")?;
    ctx.diag(format!("/proc/version: {text}"));
    let want = expected_version(ctx)?;
    ensure!(
        text.contains(&want),
        "/proc/version: expected to contain {want:?}, got {text:?}"
    );
    let release = uname_release().or_fail("uname")?;
    ensure!(
        text.contains(&release),
        "/proc/version: expected to contain the uname release {release:?}, got {text:?}"
    );
    Ok(())
}

// Expect sysfs, sysconf and the runner's affinity to agree on the online CPUs.
fn online_cpus_consistent(ctx: &mut Ctx) -> TestResult {
    let online = util::online_cpus().or_fail("online CPUs")?;
    let affinity = util::get_affinity(0).or_fail("sched_getaffinity")?;
    // SAFETY: sysconf has no preconditions.
    let nproc = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    ctx.diag(format!(
        "online={online:?} affinity={affinity:?} sysconf(_SC_NPROCESSORS_ONLN)={nproc}"
    ));
    ensure!(!online.is_empty(), "online CPUs: expected >= 1, got none");
    ctx.check_eq(
        "sysconf(_SC_NPROCESSORS_ONLN) vs /sys/devices/system/cpu/online",
        nproc,
        online.len() as libc::c_long,
    );
    ctx.check(affinity.iter().all(|c| online.contains(c)), || {
        format!("affinity {affinity:?} contains CPUs that are not online {online:?}")
    });
    if ctx.cfg.in_guest {
        // PID 1 starts with the full online mask; elsewhere a shell may have narrowed it.
        ctx.check(affinity == online, || {
            format!("PID 1 affinity: expected all online CPUs {online:?}, got {affinity:?}")
        });
    } else {
        ctx.check(!affinity.is_empty(), || "empty affinity".to_owned());
    }
    Ok(())
}
