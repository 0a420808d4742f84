//! Kernel console log classifier.
//!
//! [`scan`] walks a serial console log and reports kernel fault splats
//! (panics, oopses, BUG/WARNING reports, lockdep, sanitizers, stalls and
//! lockups), whether the guest test runner started and finished
//! (`lags-init: start` / `lags-init: done`), and the last line printed.
//!
//! Only kernel lines are classified: when the log contains printk
//! timestamps, lines without one (firmware, QEMU) are ignored.  Lines written
//! by the test runner are never faults, whatever they contain; a line is a
//! runner line if its content (after the timestamp and an optional
//! `module_name: ` prefix) starts with whitespace, `#`, `ok `, `not ok `,
//! `KTAP`, `TAP version` or `1..`, or if it starts with `lags-init:`.

use serde::Serialize;
use std::cmp::Reverse;

use lags_proto::marker::{RUNNER_DONE, RUNNER_START};

use super::lines::strip_timestamp;
/// A header this many kernel lines after `cut here` belongs to the same report.
const CUT_HERE_WINDOW: usize = 3;
/// An oops this many kernel lines after a page-fault/`kernel BUG` line belongs to it.
const OOPS_WINDOW: usize = 20;

/// Lockdep (and RCU-lockdep) report headers.
const LOCKDEP: &[&str] = &[
    "possible circular locking dependency",
    "possible recursive locking detected",
    "inconsistent lock state",
    "possible irq lock inversion",
    "-unsafe lock order detected",
    "Nested lock was not taken",
    "bad unlock balance detected",
    "bad contention detected",
    "held lock freed",
    "still has locks held",
    "lock held when returning to user space",
    "suspicious RCU usage",
    "chain_key collision",
    "trying to register non-static key",
];

/// Kind of kernel fault report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `Kernel panic - not syncing`.
    Panic,
    /// `Oops:`, `general protection fault`, or a `BUG:`/`kernel BUG at` that turned into an oops.
    Oops,
    /// Other `BUG:` reports (`sleeping function called from invalid context`, `workqueue lockup`, ...).
    Bug,
    /// `WARNING: CPU:` / `------------[ cut here ]------------` (one per report).
    Warning,
    /// Lockdep reports, including `suspicious RCU usage`.
    Lockdep,
    /// `UBSAN:` reports.
    Ubsan,
    /// `BUG: KFENCE:` reports.
    Kfence,
    /// `BUG: KASAN:` reports.
    Kasan,
    /// RCU CPU / expedited / tasks stall warnings.
    RcuStall,
    /// `INFO: task ... blocked for more than N seconds`.
    HungTask,
    /// `BUG: soft lockup`.
    SoftLockup,
    /// `Watchdog detected hard LOCKUP`.
    HardLockup,
}

impl FaultKind {
    /// Relative severity used by [`ConsoleScan::worst`]; higher is worse.
    pub fn severity(self) -> u8 {
        match self {
            FaultKind::Panic => 100,
            FaultKind::Oops => 90,
            FaultKind::HardLockup => 80,
            FaultKind::SoftLockup => 75,
            FaultKind::RcuStall => 70,
            FaultKind::HungTask => 65,
            FaultKind::Kasan => 60,
            FaultKind::Kfence => 55,
            FaultKind::Bug => 50,
            FaultKind::Ubsan => 40,
            FaultKind::Lockdep => 35,
            FaultKind::Warning => 30,
        }
    }
}

/// One fault report found in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// What kind of report this is.
    pub kind: FaultKind,
    /// 1-based line number of `line` in the log.
    pub line_no: usize,
    /// The header line of the report, as printed (timestamp included).
    pub line: String,
}

/// Result of [`scan`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleScan {
    /// Fault reports in log order.
    pub faults: Vec<Fault>,
    /// Saw `lags-init: start`.
    pub runner_started: bool,
    /// Saw `lags-init: done`.
    pub runner_done: bool,
    /// Last non-empty line of the log (useful when the guest hangs).
    pub last_line: Option<String>,
}

impl ConsoleScan {
    /// The most severe fault (the earliest one among equals).
    pub fn worst(&self) -> Option<&Fault> {
        self.faults
            .iter()
            .min_by_key(|f| Reverse(f.kind.severity()))
    }

    /// True if the kernel panicked.
    #[allow(dead_code)] // API for callers; not every xtask build path needs it
    pub fn is_panic(&self) -> bool {
        self.faults.iter().any(|f| f.kind == FaultKind::Panic)
    }
}

/// Scans a serial console log for kernel faults and runner progress markers.
pub fn scan(log: &str) -> ConsoleScan {
    let lines: Vec<(usize, &str, Option<&str>)> = log
        .split('\n')
        .enumerate()
        .map(|(i, raw)| {
            let raw = raw.trim_matches('\r').trim_end();
            (i + 1, raw, strip_timestamp(raw))
        })
        .collect();
    let timestamped = lines.iter().any(|(_, _, stripped)| stripped.is_some());
    let mut out = ConsoleScan::default();
    // (fault index, kernel line counter) of an open `cut here` report.
    let mut cut_here: Option<(usize, usize)> = None;
    // (fault index, kernel line counter) of a BUG line that an oops may follow.
    let mut oops_cause: Option<(usize, usize)> = None;
    let mut kline = 0;
    for &(no, raw, stripped) in &lines {
        if raw.is_empty() {
            continue;
        }
        out.last_line = Some(raw.to_string());
        let content = stripped.unwrap_or(raw);
        out.runner_started |= content.contains(RUNNER_START);
        out.runner_done |= content.contains(RUNNER_DONE);
        if (timestamped && stripped.is_none()) || is_runner_line(content) {
            continue;
        }
        kline += 1;
        let Some(kind) = classify(content) else {
            continue;
        };
        let fault = Fault {
            kind,
            line_no: no,
            line: raw.to_string(),
        };
        if content.contains("[ cut here ]") {
            cut_here = Some((out.faults.len(), kline));
            out.faults.push(fault);
            continue;
        }
        let idx = match cut_here.take() {
            Some((idx, at)) if kline - at <= CUT_HERE_WINDOW => {
                out.faults[idx] = fault;
                idx
            }
            _ => match oops_cause {
                Some((idx, at)) if kind == FaultKind::Oops && kline - at <= OOPS_WINDOW => {
                    out.faults[idx].kind = FaultKind::Oops;
                    oops_cause = None;
                    continue;
                }
                _ => {
                    out.faults.push(fault);
                    out.faults.len() - 1
                }
            },
        };
        let leads_to_oops = [
            "kernel BUG at",
            "unable to handle",
            "NULL pointer dereference",
            "stack guard page",
        ];
        if kind == FaultKind::Bug && leads_to_oops.iter().any(|p| content.contains(p)) {
            oops_cause = Some((idx, kline));
        }
    }
    out
}

/// Classifies one kernel line (timestamp already stripped).
fn classify(c: &str) -> Option<FaultKind> {
    use FaultKind::*;
    if c.starts_with("---[ end Kernel panic") {
        return None;
    }
    let kind = if c.contains("Kernel panic - not syncing") {
        Panic
    } else if LOCKDEP.iter().any(|p| c.contains(p)) {
        Lockdep
    } else if c.contains("BUG: KFENCE") {
        Kfence
    } else if c.contains("BUG: KASAN") {
        Kasan
    } else if c.contains("BUG: soft lockup") {
        SoftLockup
    } else if c.contains("detected hard LOCKUP") {
        HardLockup
    } else if c.contains("INFO: task ") && c.contains(" blocked for more than ") {
        HungTask
    } else if c.contains("INFO: rcu") && c.contains(" stall") {
        RcuStall
    } else if c.contains("Oops:")
        || c.contains("Oops -")
        || c.starts_with("general protection fault")
    {
        Oops
    } else if c.contains("UBSAN:") {
        Ubsan
    } else if c.contains("WARNING: CPU:") || c.contains("[ cut here ]") {
        Warning
    } else if c.contains("BUG:") || c.contains("kernel BUG at") {
        Bug
    } else {
        return None;
    };
    Some(kind)
}

/// True for lines printed by the test runner (see the module docs).
fn is_runner_line(content: &str) -> bool {
    if content.starts_with("lags-init:") {
        return true;
    }
    let body = match content.split_once(": ") {
        Some((module, rest))
            if !module.is_empty()
                && module
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            rest
        }
        _ => content,
    };
    body.starts_with([' ', '\t', '#'])
        || ["ok ", "not ok ", "KTAP", "TAP version", "1.."]
            .iter()
            .any(|p| body.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../test_data/console/", $name))
        };
    }

    const ALL_PASSED: &str = fixture!("all_passed.log");
    const PANIC_MID_SUITE: &str = fixture!("panic_mid_suite.log");
    const OOPS: &str = fixture!("oops.log");
    const WARNING: &str = fixture!("warning.log");
    const LOCKDEP: &str = fixture!("lockdep.log");
    const SOFT_LOCKUP: &str = fixture!("soft_lockup.log");
    const RCU_STALL: &str = fixture!("rcu_stall.log");
    const HUNG_TASK: &str = fixture!("hung_task.log");
    const KFENCE: &str = fixture!("kfence.log");
    const UBSAN: &str = fixture!("ubsan.log");
    const FAILURE: &str = fixture!("failure.log");
    const BOOT_FAILURE: &str = fixture!("boot_failure.log");
    const TRUNCATED: &str = fixture!("truncated.log");

    /// Fixtures whose kernel output is clean (KTAP noise only).
    const CLEAN: &[&str] = &[
        ALL_PASSED,
        FAILURE,
        fixture!("skip.log"),
        fixture!("nested.log"),
        fixture!("missing_plan.log"),
        TRUNCATED,
        fixture!("module_prefix.log"),
        fixture!("interleaved.log"),
        fixture!("crlf.log"),
        fixture!("no_ktap.log"),
        fixture!("tap13.log"),
        fixture!("out_of_order.log"),
    ];

    fn line_of(log: &str, needle: &str) -> usize {
        log.lines()
            .position(|l| l.contains(needle))
            .expect("needle in log")
            + 1
    }

    /// Asserts that `log` has exactly one fault, of `kind`, on the first line containing `needle`.
    fn single_fault(log: &str, kind: FaultKind, needle: &str) -> ConsoleScan {
        let s = scan(log);
        let line_no = line_of(log, needle);
        let line = log.lines().nth(line_no - 1).unwrap().trim_end().to_string();
        assert_eq!(
            s.faults,
            [Fault {
                kind,
                line_no,
                line
            }]
        );
        assert_eq!(s.worst(), s.faults.first());
        s
    }

    fn kinds(log: &str) -> Vec<FaultKind> {
        scan(log).faults.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn clean_boot() {
        let s = scan(ALL_PASSED);
        assert!(s.faults.is_empty());
        assert!(s.runner_started && s.runner_done);
        assert!(!s.is_panic() && s.worst().is_none());
        assert_eq!(
            s.last_line.as_deref(),
            Some("[    2.113480] reboot: Restarting system")
        );
        for log in CLEAN {
            assert_eq!(scan(log).faults, [], "{}", &log[log.len() - 200..]);
        }
    }

    #[test]
    fn panic() {
        let s = single_fault(
            PANIC_MID_SUITE,
            FaultKind::Panic,
            "Kernel panic - not syncing: sysrq triggered crash",
        );
        assert!(s.is_panic());
        assert!(s.runner_started && !s.runner_done);
        assert!(s
            .last_line
            .unwrap()
            .ends_with("---[ end Kernel panic - not syncing: sysrq triggered crash ]---"));
    }

    #[test]
    fn oops_then_panic() {
        let s = scan(OOPS);
        assert_eq!(s.faults.len(), 2, "{:?}", s.faults);
        assert_eq!(s.faults[0].kind, FaultKind::Oops);
        assert_eq!(
            s.faults[0].line_no,
            line_of(OOPS, "BUG: kernel NULL pointer dereference")
        );
        assert_eq!(s.faults[1].kind, FaultKind::Panic);
        assert!(s.faults[1]
            .line
            .ends_with("Kernel panic - not syncing: Attempted to kill the idle task!"));
        assert_eq!(s.worst().unwrap().kind, FaultKind::Panic);
        assert!(s.is_panic());
    }

    #[test]
    fn warning_with_cut_here_counts_once() {
        let s = single_fault(WARNING, FaultKind::Warning, "WARNING: CPU: 1 PID: 97");
        assert!(!s.is_panic() && s.runner_done);
        // A cut-here marker without a recognisable header still counts.
        let log =
            "[    1.000000] ------------[ cut here ]------------\n[    1.000001] something odd\n";
        assert_eq!(
            scan(log).faults,
            [Fault {
                kind: FaultKind::Warning,
                line_no: 1,
                line: log.lines().next().unwrap().into()
            }]
        );
        // Two separate reports are two faults.
        let cut = line_of(WARNING, "[ cut here ]") - 1;
        let again: Vec<&str> = WARNING.lines().skip(cut).take(3).collect();
        let twice = format!("{WARNING}{}\n", again.join("\n"));
        assert_eq!(kinds(&twice), [FaultKind::Warning, FaultKind::Warning]);
    }

    #[test]
    fn lockdep_circular() {
        single_fault(
            LOCKDEP,
            FaultKind::Lockdep,
            "WARNING: possible circular locking dependency detected",
        );
    }

    #[test]
    fn soft_lockup() {
        let s = single_fault(
            SOFT_LOCKUP,
            FaultKind::SoftLockup,
            "watchdog: BUG: soft lockup - CPU#2 stuck for 26s!",
        );
        assert!(s.runner_started && !s.runner_done);
    }

    #[test]
    fn rcu_stall() {
        single_fault(
            RCU_STALL,
            FaultKind::RcuStall,
            "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
        );
    }

    #[test]
    fn hung_task() {
        single_fault(
            HUNG_TASK,
            FaultKind::HungTask,
            "INFO: task lags-worker:131 blocked for more than 122 seconds.",
        );
    }

    #[test]
    fn kfence() {
        single_fault(
            KFENCE,
            FaultKind::Kfence,
            "BUG: KFENCE: use-after-free read",
        );
    }

    #[test]
    fn ubsan_with_cut_here_counts_once() {
        single_fault(UBSAN, FaultKind::Ubsan, "UBSAN: shift-out-of-bounds");
    }

    #[test]
    fn runner_diagnostics_are_not_faults() {
        assert!(FAILURE.contains("  # WARNING: CPU: 1 runqueue imbalance"));
        assert!(FAILURE.contains("# service_floor: BUG: weight"));
        let s = scan(FAILURE);
        assert_eq!(s.faults, []);
        let log = "[    2.0] lags-init: start\n[    2.1] lags_monitor:   # BUG: expected 3, got 4\n\
                   [    2.2] lags-init: WARNING: CPU: 3 is offline\n[    2.3] lags_monitor: not ok 1 Kernel panic - not syncing\n";
        assert_eq!(scan(log).faults, []);
    }

    #[test]
    fn boot_failure() {
        let s = single_fault(
            BOOT_FAILURE,
            FaultKind::Panic,
            "Kernel panic - not syncing: VFS: Unable to mount root fs",
        );
        assert!(s.is_panic() && !s.runner_started && !s.runner_done);
    }

    #[test]
    fn hang_log_just_stops() {
        let s = scan(TRUNCATED);
        assert!(s.faults.is_empty());
        assert!(s.runner_started && !s.runner_done);
        assert!(s.last_line.unwrap().ends_with("random: crng init done"));
    }

    #[test]
    fn header_variants() {
        use FaultKind::*;
        let cases: &[(&str, Option<FaultKind>)] = &[
            ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 1", Some(HardLockup)),
            ("watchdog: CPU1: Watchdog detected hard LOCKUP on cpu 1", Some(HardLockup)),
            ("BUG: KASAN: slab-out-of-bounds in lags_enqueue+0x1c/0x90", Some(Kasan)),
            ("BUG: sleeping function called from invalid context at kernel/sched/core.c:8708", Some(Bug)),
            ("BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 31s!", Some(Bug)),
            ("BUG: scheduling while atomic: lags-init/97/0x00000002", Some(Bug)),
            ("WARNING: suspicious RCU usage", Some(Lockdep)),
            ("WARNING: possible recursive locking detected", Some(Lockdep)),
            ("WARNING: inconsistent lock state", Some(Lockdep)),
            ("WARNING: possible irq lock inversion dependency detected", Some(Lockdep)),
            ("INFO: possible irq lock inversion dependency detected", Some(Lockdep)),
            ("rcu: INFO: rcu_sched detected stalls on CPUs/tasks:", Some(RcuStall)),
            ("rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-... } 21002 jiffies s: 373 root: 0x2/.", Some(RcuStall)),
            ("rcu: INFO: rcu_preempt self-detected stall on CPU", Some(RcuStall)),
            ("INFO: rcu_tasks detected stalls on tasks:", Some(RcuStall)),
            ("Oops: general protection fault, probably for non-canonical address 0xdffffc0000000000: 0000 [#1] PREEMPT SMP KASAN", Some(Oops)),
            ("general protection fault: 0000 [#1] SMP", Some(Oops)),
            ("Internal error: Oops: 0000000096000004 [#1] PREEMPT SMP", Some(Oops)),
            ("kernel BUG at kernel/sched/lags.c:120!", Some(Bug)),
            ("traps: lags-test[130] general protection fault ip:401136 sp:7ffd3c0 error:0 in lags-test[401000+1000]", None),
            ("WARNING: CPU: 0 PID: 1 at kernel/sched/lags.c:12 lags_init+0x1/0x2", Some(Warning)),
            ("---[ end Kernel panic - not syncing: Fatal exception ]---", None),
            ("---[ end trace 0000000000000000 ]---", None),
            ("sysrq: Trigger a crash", None),
            ("lags-test[131]: segfault at 0 ip 0000000000401136 sp 00007ffd3c0 error 4", None),
        ];
        for (line, kind) in cases {
            let log = format!("[    5.000000] {line}\n");
            let got = scan(&log).faults.first().map(|f| f.kind);
            assert_eq!(got, *kind, "{line}");
        }
    }

    #[test]
    fn kernel_bug_then_oops_is_one_fault() {
        let log = "[    3.0] ------------[ cut here ]------------\n[    3.1] kernel BUG at kernel/sched/lags.c:120!\n\
                   [    3.2] Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n[    3.3] CPU: 0 UID: 0 PID: 1 Comm: init\n\
                   [    3.4] ---[ end trace 0000000000000000 ]---\n";
        let s = scan(log);
        assert_eq!(s.faults.len(), 1, "{:?}", s.faults);
        assert_eq!(
            (s.faults[0].kind, s.faults[0].line_no),
            (FaultKind::Oops, 2)
        );
    }

    #[test]
    fn timestamps_decide_what_is_a_kernel_line() {
        // Without any timestamps (printk.time=0) every line is a kernel line.
        let s = scan("lags-init: start\nKernel panic - not syncing: Attempted to kill init!\r\n");
        assert_eq!(s.faults.len(), 1);
        assert!(s.runner_started && s.is_panic());
        // With timestamps, untimestamped lines come from elsewhere (firmware, userspace on the console).
        let s = scan("[    1.000000] Linux version 6.12.0\nBUG: this is userspace output\n[    1.1] lags-init: start\n");
        assert!(s.faults.is_empty() && s.runner_started);
        // Caller-id timestamps.
        assert!(scan("[    1.000000][    T1] Kernel panic - not syncing: x\n").is_panic());
    }

    #[test]
    fn worst_prefers_severity_then_order() {
        let log = "[ 1.0] UBSAN: shift-out-of-bounds in a.c:1:1\n[ 1.1] BUG: KASAN: use-after-free in f\n\
                   [ 1.2] BUG: KASAN: double-free in g\n[ 1.3] WARNING: CPU: 0 PID: 1 at a.c:1 f\n";
        let s = scan(log);
        assert_eq!(
            kinds(log),
            [
                FaultKind::Ubsan,
                FaultKind::Kasan,
                FaultKind::Kasan,
                FaultKind::Warning
            ]
        );
        assert_eq!(s.worst().unwrap().line_no, 2);
        assert!(!s.is_panic());
    }

    #[test]
    fn serializes_snake_case_kinds() {
        let json = serde_json::to_value(scan(RCU_STALL)).unwrap();
        assert_eq!(json["faults"][0]["kind"], "rcu_stall");
        assert_eq!(json["runner_started"], true);
    }
}
