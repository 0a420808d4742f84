// SPDX-License-Identifier: GPL-2.0
//! `lags-bench --host --data FILE [lb.key=value ...]`: the same workloads on the running
//! kernel (`cargo xtask bench --host`, issue 11), for real CPUs: bare metal or a KVM guest.
//!
//! Differences from the guest run: the plan comes from the arguments, progress goes to
//! stdout and records to `FILE`; the function cgroups live in `lags-bench.<pid>` under the
//! host's cpu hierarchy (cgroup v2, or the v1 cpu controller of older nodes); SIGINT,
//! SIGTERM and SIGHUP end the run at the next second with its cgroups removed, children die
//! with the controller (`PR_SET_PDEATHSIG`), and directories left by a controller that was
//! killed outright are removed by the next run.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};

use lags_bench::{cgroup_mounts, CgroupMount};

/// The command line of host mode.
#[derive(Debug, PartialEq)]
pub struct HostArgs {
    pub data: String,
    pub params: Vec<String>,
}

/// `None` for the guest (no arguments: PID 1 reads `/proc/cmdline`).
pub fn parse_args(args: &[String]) -> Result<Option<HostArgs>, String> {
    let Some(first) = args.first() else {
        return Ok(None);
    };
    if first != "--host" {
        return Err(format!(
            "unknown argument {first:?}; usage: lags-bench --host --data FILE [lb.key=value ...]"
        ));
    }
    let mut data = None;
    let mut params = Vec::new();
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data" => data = Some(it.next().ok_or("--data needs a file")?.clone()),
            p if p.starts_with(lags_proto::bench::PREFIX) => params.push(p.to_string()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(HostArgs {
        data: data.ok_or("--host needs --data FILE")?,
        params,
    }))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT, SIGTERM and SIGHUP set the stop flag instead of killing the controller,
/// so the run ends with its children and cgroups gone.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: sigaction is plain data; the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether a signal asked the run to end.
pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// In a forked child: die with the controller. Returns when the controller is alive.
pub fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: prctl/getppid/_exit have no memory-safety preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
    }
}

/// The hierarchy the function cgroups go in: the first cgroup2 mount that offers `cpu`,
/// else the first v1 mount of the cpu controller.
pub fn find_hierarchy() -> Result<CgroupMount, String> {
    let mi = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    let mounts = cgroup_mounts(&mi);
    let v2 = mounts.iter().find(|m| {
        m.v2 && fs::read_to_string(format!("{}/cgroup.controllers", m.path))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu"))
    });
    v2.or_else(|| mounts.iter().find(|m| !m.v2))
        .cloned()
        .ok_or_else(|| {
            "no cgroup hierarchy with the cpu controller is mounted (looked for cgroup2 with \
             `cpu` in cgroup.controllers and a v1 `cpu` mount)"
                .to_string()
        })
}

/// The name of this run's parent group under the hierarchy.
pub fn parent_name(pid: libc::pid_t) -> String {
    format!("lags-bench.{pid}")
}

/// Removes a group directory tree, killing what still runs in it first.
pub fn remove_tree(dir: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path().to_string_lossy());
        }
    }
    for _ in 0..50 {
        let procs = fs::read_to_string(format!("{dir}/cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        for &p in &pids {
            // SAFETY: plain kill of a process left in our own benchmark group.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        if fs::remove_dir(dir).is_ok() || !std::path::Path::new(dir).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Removes the parent groups of earlier runs whose controller no longer exists; returns
/// their names.
pub fn remove_stale(hierarchy: &str) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(hierarchy) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("lags-bench.") else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            remove_tree(&format!("{hierarchy}/{name}"));
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    // Expect the guest form (no arguments), the host form, and a clear error for anything
    // else.
    #[test]
    fn arguments() {
        assert_eq!(parse_args(&[]), Ok(None));
        assert_eq!(
            parse_args(&v(&[
                "--host",
                "--data",
                "/tmp/d",
                "lb.reps=3",
                "lb.workload=rdhashd"
            ])),
            Ok(Some(HostArgs {
                data: "/tmp/d".into(),
                params: v(&["lb.reps=3", "lb.workload=rdhashd"]),
            }))
        );
        assert!(parse_args(&v(&["--host"])).unwrap_err().contains("--data"));
        assert!(parse_args(&v(&["--host", "--data"])).is_err());
        assert!(parse_args(&v(&["--host", "--data", "f", "reps=3"]))
            .unwrap_err()
            .contains("reps=3"));
        assert!(parse_args(&v(&["--guest"])).unwrap_err().contains("usage"));
    }
}
