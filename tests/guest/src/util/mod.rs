// SPDX-License-Identifier: GPL-2.0
//! Helpers shared by the suites: file I/O that keeps the errno, time and CPU affinity,
//! statistics, cgroup guards, and forked worker processes with a pipe back to the runner.
//!
//! Everything that creates something (a cgroup, a process, a changed tunable) returns a guard
//! whose `Drop` undoes it, so a failing or panicking test still cleans up. Problems found
//! while cleaning up are queued with [`warn`] and printed by the runner as diagnostics.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod cgroup;
mod cleanup;
mod cpu;
mod files;
mod kmsg;
mod robustness;
mod stats;
mod time;
mod worker;

pub use cgroup::*;
pub use cleanup::*;
pub use cpu::*;
pub use files::*;
pub use kmsg::*;
pub use robustness::*;
pub use stats::*;
pub use time::*;
pub use worker::*;

/// For unit tests that fork (through [`Worker`]): [`Worker::spawn`] relies on the process
/// being single-threaded, but libtest runs tests on a pool of threads, any of which may hold
/// a lock (stdout, the output capture, an allocator arena) at the moment of `fork`. So such a
/// test starts with `if !in_own_process("path::to::test") { return; }`: in the test harness
/// this runs the same test alone in a fresh process of this test binary
/// (`--exact --test-threads=1`), asserts that it passed there and returns `false`; in that
/// process it returns `true`, and the test forks while the only other thread is libtest's
/// main thread, blocked waiting for this one test's result.
#[cfg(test)]
pub fn in_own_process(test: &str) -> bool {
    const CHILD: &str = "LAGS_GUEST_TEST_IN_OWN_PROCESS";
    if std::env::var_os(CHILD).is_some_and(|v| v == test) {
        let threads = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|st| {
                st.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|n| n.trim().parse::<u32>().ok())
            })
            .expect("Threads: in /proc/self/status");
        assert!(
            threads <= 2,
            "{test}: {threads} threads in its own process; only libtest's main thread may \
             run beside the test"
        );
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(&exe)
        .args([test, "--exact", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .unwrap_or_else(|e| panic!("running {} {test}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} in its own process: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect a summary to sort its input first.
    #[test]
    fn summary_sorts() {
        let s = Summary::of(&[5, 1, 4, 2, 3]);
        assert_eq!((s.n, s.p50, s.p90, s.p99, s.max), (5, 3, 5, 5, 5));
    }

    // Expect kernel CPU lists with ranges, singles and a trailing newline.
    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n").unwrap(), vec![0]);
        assert_eq!(
            parse_cpu_list("0-3,5,7-8").unwrap(),
            vec![0, 1, 2, 3, 5, 7, 8]
        );
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }

    // Expect a schedstat line's three fields, and an error for anything else.
    #[test]
    fn schedstat_lines() {
        assert_eq!(
            SchedStat::parse("123 45 6\n").unwrap(),
            SchedStat {
                exec_ns: 123,
                wait_ns: 45,
                switched_in: 6
            }
        );
        assert!(SchedStat::parse("123 45").is_err());
        assert!(SchedStat::parse("1 2 3 4").is_err());
        assert!(SchedStat::parse("1 x 3").is_err());
    }

    // Expect flat-keyed lookups to match whole keys only.
    #[test]
    fn keyed_files() {
        let stat = "usage_usec 1234\nuser_usec 1000\nlags_picks 7\nlags_credit_mcpu 865\n";
        assert_eq!(keyed_u64(stat, "usage_usec"), Some(1234));
        assert_eq!(keyed_u64(stat, "lags_credit_mcpu"), Some(865));
        assert_eq!(keyed_u64(stat, "usage"), None);
        assert_eq!(keyed_u64("x abc", "x"), None);
    }

    // Expect the CapEff hex mask of /proc/self/status.
    #[test]
    fn cap_eff() {
        let st = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(st), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x"), None);
    }

    // Expect u64 round trips and kv lookups for worker reports.
    #[test]
    fn worker_encodings() {
        let v = [0, 1, u64::MAX, 42];
        assert_eq!(decode_u64s(&encode_u64s(&v)), v);
        let kvs = parse_kv_lines("a=1\nnoise\nb=x=y\n");
        assert_eq!(kv(&kvs, "a"), Some("1"));
        assert_eq!(kv(&kvs, "b"), Some("x=y"));
        assert_eq!(kv(&kvs, "c"), None);
    }

    // Expect diagnostics to show control bytes and long runs readably.
    #[test]
    fn bytes_for_humans() {
        assert_eq!(show_bytes(b"1\0x"), "\"1\\x00x\"");
        assert_eq!(show_bytes(&[0xff, 0xfe]), "\"\\xff\\xfe\"");
        assert_eq!(show_bytes(&[b'1'; 4096]), "'1' x 4096");
        assert_eq!(errno_name(libc::EINVAL), "EINVAL");
        assert_eq!(errno_name(9999), "errno 9999");
    }

    // Expect a forked worker to start on "go", report over the pipe, and be reaped.
    #[test]
    fn worker_round_trip() {
        if !in_own_process("util::tests::worker_round_trip") {
            return;
        }
        let mut w = Worker::spawn(|io| {
            io.send_kv("hello", 42);
            0
        })
        .unwrap();
        w.go().unwrap();
        let out = w.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "hello=42\n");
    }

    // Expect a spinning worker to notice the stop request and a dropped one to be killed.
    #[test]
    fn worker_stop_and_kill() {
        if !in_own_process("util::tests::worker_stop_and_kill") {
            return;
        }
        let mut w = Worker::spawn(|io| spin_recording_gaps(io, 0)).unwrap();
        w.go().unwrap();
        sleep_ms(50);
        let out = decode_u64s(&w.finish(Duration::from_secs(10)).unwrap());
        assert_eq!(out.len(), 2);
        assert!(out[1] > 0);

        let mut w = Worker::spawn(|_| loop {
            sleep_ms(1000);
        })
        .unwrap();
        w.go().unwrap();
        let pid = w.pid();
        drop(w);
        // SAFETY: signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "worker {pid} survived its guard");
    }
}
