// SPDX-License-Identifier: GPL-2.0
//! `lags-bench --host` on this machine's own kernel: it refuses to run without root, and as
//! root it leaves no cgroup, process or profile behind when interrupted or killed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lags-bench");

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The benchmark parents of `pid` under any cpu hierarchy of this machine.
fn parents_of(pid: u32) -> Vec<String> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    lags_bench::cgroup_mounts(&mi)
        .into_iter()
        .map(|m| format!("{}/lags-bench.{pid}", m.path))
        .filter(|p| Path::new(p).exists())
        .collect()
}

fn start(data: &Path, seconds: u32) -> std::process::Child {
    Command::new(BIN)
        .arg("--host")
        .arg("--data")
        .arg(data)
        .args([
            "lb.workload=rdhashd",
            "lb.parts=density",
            "lb.configs=stock",
            "lb.reps=1",
            "lb.rd_funcs=4",
            "lb.rd_warm=1",
            "lb.rd_prof=1",
        ])
        .arg(format!("lb.rd_dur={seconds}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run has made its function groups (or 30 s).
fn wait_for_groups(pid: u32) -> Vec<String> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        let p = parents_of(pid);
        if let Some(dir) = p.first() {
            if Path::new(&format!("{dir}/f0003")).exists() {
                return p;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("lags-bench {pid} made no function groups within 30 s");
}

// Expect an interrupted run to end within seconds with status 1, an end record saying it
// stopped, and no group, function process or perf data left; and a run killed outright to
// leave a group that the next run removes.
#[test]
fn host_mode_cleans_up() {
    let dir = std::env::temp_dir().join(format!("lags-bench-test.{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data.ndjson");
    if !is_root() {
        let o = start(&data, 2).wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("needs root"), "{out}");
        return;
    }
    // SIGINT in the middle of a 60 s window.
    let child = start(&data, 60);
    let pid = child.id();
    let parents = wait_for_groups(pid);
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let t = Instant::now();
    let o = child.wait_with_output().unwrap();
    let took = t.elapsed();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        took < Duration::from_secs(15),
        "took {took:?} to stop\n{out}"
    );
    assert!(out.contains("interrupted by a signal"), "{out}");
    for p in &parents {
        assert!(!Path::new(p).exists(), "{p} left behind");
    }
    let records = std::fs::read_to_string(&data).unwrap();
    assert!(
        records
            .lines()
            .last()
            .unwrap_or("")
            .contains("\"status\":\"error"),
        "{records}"
    );
    let perf = std::env::temp_dir().join(format!("lags-bench.{pid}.perf.data"));
    assert!(!perf.exists(), "{} left behind", perf.display());

    // SIGKILL: the function processes die with the controller (PR_SET_PDEATHSIG); the
    // group stays until the next run.
    let mut child = start(&data, 60);
    let pid = child.id();
    let parents = wait_for_groups(pid);
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Instant::now();
    loop {
        let procs: usize = parents
            .iter()
            .flat_map(|p| std::fs::read_dir(p).unwrap().flatten())
            .filter(|e| e.path().is_dir())
            .map(|e| {
                std::fs::read_to_string(e.path().join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .sum();
        if procs == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{procs} function processes outlived the controller"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = start(&data, 1).wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    for p in &parents {
        assert!(
            !Path::new(p).exists(),
            "{p} not removed by the next run\n{out}"
        );
        assert!(out.contains(&format!("removed {p}")), "{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
