//! The verdict of a boot and its exit code: one classification of what every boot shares
//! ([`classify_infra`]: boot failure, kernel fault, timeout), then KTAP for `qemu-test`
//! ([`classify`]); [`Verdict::worst`] combines several boots.

use serde::Serialize;

use super::{console, ktap};
use crate::util::Exit;
use crate::vm::Ending;

/// Outcome classes, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    TestsFailed,
    Timeout,
    KernelFault,
    BootFailure,
}

impl Verdict {
    pub fn exit(self) -> Exit {
        match self {
            Verdict::Passed => Exit::Ok,
            Verdict::TestsFailed => Exit::TestsFailed,
            Verdict::Timeout => Exit::Timeout,
            Verdict::KernelFault => Exit::KernelFault,
            Verdict::BootFailure => Exit::BootFailure,
        }
    }

    /// The verdict of several boots: the most severe of theirs (the order above), so the
    /// result never depends on the order the boots ran in; no boots at all is `Passed`.
    /// `qemu-test` and `bench` both combine their boots with this.
    pub fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts.into_iter().max().unwrap_or(Verdict::Passed)
    }
}

/// Classifies a finished boot from its console and how it ended. Pure, unit-tested.
pub fn classify(
    console_text: &str,
    ending: Ending,
) -> (Verdict, String, console::ConsoleScan, ktap::Report) {
    let scan = console::scan(console_text);
    let report = ktap::parse(console_text);
    let (verdict, msg) = if let Some(infra) = classify_infra(&scan, ending, scan.runner_done) {
        infra
    } else if !report.passed() {
        let c = report.counts();
        (
            Verdict::TestsFailed,
            format!(
                "{} of {} tests failed or crashed",
                c.failed + c.crashed + c.not_run,
                c.total
            ),
        )
    } else {
        let c = report.counts();
        (
            Verdict::Passed,
            format!("{} passed, {} skipped", c.passed, c.skipped),
        )
    };
    (verdict, msg, scan, report)
}

/// The part of the verdict that does not depend on what the runner did, shared by
/// `qemu-test` and `vm`: boot failure (the runner never started), kernel fault, or timeout
/// (or QEMU exiting) before the runner reported it was `done`. `None` means the boot ran
/// to the end cleanly and the runner's own result decides.
pub fn classify_infra(
    scan: &console::ConsoleScan,
    ending: Ending,
    done: bool,
) -> Option<(Verdict, String)> {
    if !scan.runner_started {
        let why = match scan.worst() {
            Some(f) => format!("kernel fault before the runner started: {}", f.line.trim()),
            None => match ending {
                Ending::Exited => "QEMU exited before the test runner started".to_string(),
                _ => format!(
                    "no test runner after {ending:?}; last console line: {}",
                    scan.last_line.clone().unwrap_or_default()
                ),
            },
        };
        Some((Verdict::BootFailure, why))
    } else if let Some(f) = scan.worst() {
        Some((
            Verdict::KernelFault,
            format!(
                "kernel log shows {:?} at console line {}: {}",
                f.kind,
                f.line_no,
                f.line.trim()
            ),
        ))
    } else if ending != Ending::Exited || !done {
        let how = match ending {
            Ending::Silent => "the guest stopped producing output",
            Ending::HardTimeout => "the hard time limit passed",
            Ending::Exited => "QEMU exited before the runner finished",
        };
        let v = if ending == Ending::Exited {
            Verdict::BootFailure
        } else {
            Verdict::Timeout
        };
        Some((
            v,
            format!(
                "{how}; last console line: {}",
                scan.last_line.clone().unwrap_or_default()
            ),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "[    0.000000] Linux version 6.12.117\n[    1.000000] lags-init: start\n";

    fn ktap_ok() -> String {
        [
            "[    1.1] KTAP version 1",
            "[    1.1] 1..1",
            "[    1.1]   KTAP version 1",
            "[    1.1]   # Subtest: boot",
            "[    1.1]   1..1",
            "[    1.1]   ok 1 kernel_release_matches",
            "[    1.1] ok 1 boot",
            "[    1.2] lags-init: done passed=1 failed=0 skipped=0",
            "[    1.3] reboot: Restarting system",
        ]
        .join("\n")
    }

    // Expect each outcome class to map to its own verdict and exit code.
    #[test]
    fn classifies_outcomes() {
        let ok = format!("{START}{}\n", ktap_ok());
        assert_eq!(classify(&ok, Ending::Exited).0, Verdict::Passed);

        let failed = ok
            .replace(
                "  ok 1 kernel_release_matches",
                "  not ok 1 kernel_release_matches",
            )
            .replace("ok 1 boot", "not ok 1 boot");
        assert_eq!(classify(&failed, Ending::Exited).0, Verdict::TestsFailed);

        let panic = format!("{START}[    1.1] KTAP version 1\n[    1.1] 1..1\n[    1.2] sysrq: Trigger a crash\n[    1.2] Kernel panic - not syncing: sysrq triggered crash\n");
        assert_eq!(classify(&panic, Ending::Exited).0, Verdict::KernelFault);

        let hang = format!("{START}[    1.1] KTAP version 1\n[    1.1] 1..1\n");
        assert_eq!(classify(&hang, Ending::Silent).0, Verdict::Timeout);
        assert_eq!(classify(&hang, Ending::HardTimeout).0, Verdict::Timeout);

        let noboot = "[    0.0] Linux version 6.12.117\n[    0.9] Kernel panic - not syncing: No working init found.\n";
        let (v, msg, ..) = classify(noboot, Ending::Exited);
        assert_eq!(v, Verdict::BootFailure);
        assert!(msg.contains("No working init"), "{msg}");
        assert_eq!(
            classify("[ 0.0] Linux version\n", Ending::Silent).0,
            Verdict::BootFailure
        );

        let warn = ok.replace(
            "[    1.2] lags-init: done",
            "[    1.15] ------------[ cut here ]------------\n[    1.15] WARNING: CPU: 0 PID: 1 at kernel/sched/fair.c:100 f+0x1/0x2\n[    1.2] lags-init: done",
        );
        assert_eq!(classify(&warn, Ending::Exited).0, Verdict::KernelFault);

        let order = [
            Verdict::Passed,
            Verdict::TestsFailed,
            Verdict::Timeout,
            Verdict::KernelFault,
            Verdict::BootFailure,
        ];
        let codes: Vec<i32> = order.iter().map(|v| v.exit() as i32).collect();
        assert_eq!(codes, [0, 1, 12, 10, 11]);
    }

    // Expect the boots' verdicts to combine into the most severe one whatever the order of
    // the boots (every permutation of every pair and of a mixed set), and no boots to pass.
    #[test]
    fn worst_verdict_is_order_independent() {
        let all = [
            Verdict::Passed,
            Verdict::TestsFailed,
            Verdict::Timeout,
            Verdict::KernelFault,
            Verdict::BootFailure,
        ];
        assert_eq!(Verdict::worst([]), Verdict::Passed);
        for a in all {
            for b in all {
                assert_eq!(Verdict::worst([a, b]), Verdict::worst([b, a]));
                assert_eq!(Verdict::worst([a, b]), a.max(b));
            }
        }
        // Exit-code numbers would rank a timeout (12) above a boot failure (11) and a
        // kernel fault (10); severity does not.
        let boots = [Verdict::Timeout, Verdict::KernelFault, Verdict::BootFailure];
        let mut seen = Vec::new();
        for i in 0..boots.len() {
            for j in 0..boots.len() {
                for k in 0..boots.len() {
                    if i != j && j != k && i != k {
                        seen.push(Verdict::worst([boots[i], boots[j], boots[k]]));
                    }
                }
            }
        }
        assert_eq!(seen.len(), 6);
        assert!(seen.iter().all(|&v| v == Verdict::BootFailure), "{seen:?}");
        assert_eq!(
            Verdict::worst([Verdict::Passed, Verdict::TestsFailed, Verdict::Passed]),
            Verdict::TestsFailed
        );
    }
}
