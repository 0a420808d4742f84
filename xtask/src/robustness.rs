//! `cargo xtask robustness`: the stress and hostile-input suites on the debug kernel.
//!
//! Configures and builds the `debug` profile (lockdep, UBSAN, KFENCE, hung task, soft
//! lockup, RCU stall, DEBUG_PREEMPT …) and the monitor module, boots it once with
//! `lags.suites=lags_stress,lags_hostile`, and turns the suites' `robustness: test=… k=v`
//! diagnostics into a table. Results go to `work/robustness/<timestamp>/` (`summary.json`,
//! `summary.md`, plus the boot's console log and KTAP in `work/results/`). Any failed test or
//! kernel fault fails the command with the boot's verdict exit code.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use crate::build::{self, ProfileArgs};
use crate::config::{self, Profile};
use crate::results::ktap::{Status, TestCase};
use crate::results::verdict::Verdict;
use crate::util::{self, failure, Exit, Paths};
use crate::vm::{Accel, MachineArgs};
use crate::vmtest::{BootResult, QemuTestArgs};

/// The suites this command runs, in this order.
pub const SUITES: &str = "lags_stress,lags_hostile";
pub use lags_proto::robustness::parse_mark;

/// Arguments of `cargo xtask robustness`.
#[derive(Debug, clap::Args)]
pub struct RobustnessArgs {
    /// Short run (the CI variant): 20 s of timed phases per suite.
    #[arg(long)]
    pub quick: bool,
    /// Seconds of timed phases per suite (default: 20 with --quick, 150 otherwise).
    #[arg(long)]
    pub secs: Option<u64>,
    /// Seed of the hostile-input fuzzer (default: from the clock; always printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Use the debug kernel and module already in work/build/debug; build nothing.
    #[arg(long)]
    pub no_build: bool,
    /// Accelerator; default: KVM if a probe boot works, else TCG.
    #[arg(long, value_enum, env = "LAGS_ACCEL")]
    pub accel: Option<Accel>,
    /// Virtual CPUs (CPU hotplug needs 2 or more).
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Hard time limit of the boot, seconds (default: 600 + 8 x secs).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Echo the whole guest console.
    #[arg(long, short)]
    pub verbose: bool,
}

/// One row of the table: a test of one of the suites.
#[derive(Debug, Serialize)]
pub struct Row {
    pub suite: String,
    pub test: String,
    pub status: String,
    pub skip_reason: Option<String>,
    /// The `k=v` fields of the test's `robustness:` line.
    pub fields: BTreeMap<String, String>,
    /// The test's `FAIL:` diagnostics.
    pub failures: Vec<String>,
}

impl Row {
    fn field(&self, k: &str) -> &str {
        self.fields.get(k).map_or("–", String::as_str)
    }
}

/// The whole run, as written to `summary.json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub timestamp: String,
    pub quick: bool,
    pub secs: u64,
    pub seed: u64,
    pub profile: &'static str,
    pub command: String,
    pub verdict: Verdict,
    pub message: String,
    pub accel: Accel,
    pub cpus: u32,
    pub elapsed_s: f64,
    pub kernel_faults: Vec<String>,
    pub console_log: String,
    pub rows: Vec<Row>,
}

/// The rows of every test of the robustness suites in a boot's KTAP report.
pub fn rows_of(tests: &[TestCase]) -> Vec<Row> {
    let wanted: Vec<&str> = SUITES.split(',').collect();
    let mut rows = Vec::new();
    for suite in tests.iter().filter(|s| wanted.contains(&s.name.as_str())) {
        if suite.subtests.is_empty() {
            rows.push(Row {
                suite: suite.name.clone(),
                test: "(suite)".into(),
                status: suite.status.as_str().into(),
                skip_reason: suite.directive_reason.clone(),
                fields: BTreeMap::new(),
                failures: suite.diagnostics.clone(),
            });
        }
        for t in &suite.subtests {
            let fields = t
                .diagnostics
                .iter()
                .filter_map(|d| parse_mark(d))
                .map(|(_, f)| f)
                .next_back()
                .unwrap_or_default();
            rows.push(Row {
                suite: suite.name.clone(),
                test: t.name.clone(),
                status: t.status.as_str().into(),
                skip_reason: (t.status == Status::Skip)
                    .then(|| t.directive_reason.clone())
                    .flatten(),
                fields,
                failures: t
                    .diagnostics
                    .iter()
                    .filter(|d| d.starts_with("FAIL"))
                    .cloned()
                    .collect(),
            });
        }
    }
    rows
}

/// The Markdown report.
pub fn markdown(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Robustness run {}\n", s.timestamp);
    let _ = writeln!(
        out,
        "`{}` — profile `{}`, {} vCPUs, {}, {} s of timed phases per suite, seed {}, boot {:.0} s.\n",
        s.command,
        s.profile,
        s.cpus,
        s.accel.name(),
        s.secs,
        s.seed,
        s.elapsed_s
    );
    let _ = writeln!(
        out,
        "| Suite | Test | Result | Operations | Faults injected | Invalid inputs | Worst starvation wait | Work units started / finished | Details |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---|");
    for r in &s.rows {
        let result = match &r.skip_reason {
            Some(why) => format!("skip ({why})"),
            None => r.status.clone(),
        };
        let wait = match r.fields.get("worst_wait_us") {
            Some(w) => format!(
                "{} ms (bound {} ms)",
                w.parse::<u64>()
                    .map_or(w.clone(), |v| format!("{:.1}", v as f64 / 1000.0)),
                r.fields
                    .get("bound_us")
                    .and_then(|b| b.parse::<u64>().ok())
                    .map_or("?".into(), |b| format!("{:.0}", b as f64 / 1000.0))
            ),
            None => "–".into(),
        };
        let work = match (r.fields.get("started"), r.fields.get("finished")) {
            (Some(a), Some(b)) => format!("{a} / {b}"),
            _ => "–".into(),
        };
        let details: Vec<String> = r
            .fields
            .iter()
            .filter(|(k, _)| {
                ![
                    "ops",
                    "faults",
                    "invalid",
                    "worst_wait_us",
                    "bound_us",
                    "started",
                    "finished",
                ]
                .contains(&k.as_str())
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.suite,
            r.test,
            result,
            r.field("ops"),
            r.field("faults"),
            r.field("invalid"),
            wait,
            work,
            details.join(" ")
        );
    }
    let _ = writeln!(
        out,
        "\nKernel log verdict: **{:?}** — {}",
        s.verdict, s.message
    );
    if s.kernel_faults.is_empty() {
        let _ = writeln!(
            out,
            "No WARNING, BUG, Oops, lockdep, UBSAN, KFENCE, RCU stall, hung task or soft lockup report."
        );
    } else {
        let _ = writeln!(out, "\nKernel reports:\n");
        for f in &s.kernel_faults {
            let _ = writeln!(out, "    {f}");
        }
    }
    let failures: Vec<String> = s
        .rows
        .iter()
        .flat_map(|r| {
            r.failures
                .iter()
                .map(move |f| format!("{}.{}: {f}", r.suite, r.test))
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nFailures:\n");
        for f in failures.iter().take(40) {
            let _ = writeln!(out, "- {f}");
        }
    }
    let _ = writeln!(out, "\nConsole log: `{}`", s.console_log);
    out
}

impl RobustnessArgs {
    pub fn run(&self, paths: &Paths) -> Result<()> {
        let profile = Profile::Debug;
        let secs = self.secs.unwrap_or(if self.quick { 20 } else { 150 });
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
        if !self.no_build {
            config::configure(paths, profile, false)?;
            build::build_kernel(paths, profile, false)?;
            if let Err(e) = build::build_module(paths, profile) {
                eprintln!(
                    "[robustness] WARNING: the monitor module did not build ({e:#}); module_churn will skip"
                );
            }
        }
        let test = QemuTestArgs {
            profile: ProfileArgs {
                profile,
                debug: false,
            },
            suites: Some(SUITES.into()),
            tests: None,
            machine: MachineArgs {
                accel: self.accel,
                cpus: self.cpus,
                mem: 2048,
            },
            timeout: Some(self.timeout.unwrap_or(600 + 8 * secs)),
            silence: 120,
            with: Vec::new(),
            cmdline: vec![
                format!("lags.stress_secs={secs}"),
                format!("lags.seed={seed}"),
            ],
            no_bootflag_run: true,
            inject: None,
            verbose: self.verbose,
        };
        eprintln!("[robustness] debug kernel, suites {SUITES}, {secs} s per suite, seed {seed}");
        let results = test.run_boots(paths)?;
        let boot: &BootResult = results
            .first()
            .ok_or_else(|| anyhow::anyhow!("qemu-test returned no boot"))?;
        let timestamp = util::timestamp();
        let command = format!(
            "cargo xtask robustness{}{} --seed {seed}",
            if self.quick { " --quick" } else { "" },
            self.secs.map_or(String::new(), |s| format!(" --secs {s}"))
        );
        let summary = Summary {
            timestamp: timestamp.clone(),
            quick: self.quick,
            secs,
            seed,
            profile: profile.name(),
            command,
            verdict: boot.verdict,
            message: boot.message.clone(),
            accel: boot.accel,
            cpus: boot.cpus,
            elapsed_s: boot.elapsed_s,
            kernel_faults: boot
                .faults
                .iter()
                .map(|f| format!("{:?}: {}", f.kind, f.line.trim()))
                .collect(),
            console_log: boot.console_log.display().to_string(),
            rows: rows_of(&boot.ktap.tests),
        };
        let dir = paths.work.join("robustness").join(&timestamp);
        let md = markdown(&summary);
        util::write(
            &dir.join("summary.json"),
            serde_json::to_string_pretty(&summary)?,
        )?;
        util::write(&dir.join("summary.md"), &md)?;
        println!("{md}");
        eprintln!("[robustness] results: {}", dir.display());
        let missing = summary.rows.is_empty();
        match (boot.verdict, missing) {
            (Verdict::Passed, false) => Ok(()),
            (Verdict::Passed, true) => Err(failure(
                Exit::TestsFailed,
                "the robustness suites reported nothing",
            )),
            (v, _) => Err(failure(
                v.exit(),
                format!(
                    "robustness: {:?}: {} (console: {})",
                    v,
                    boot.message,
                    boot.console_log.display()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the marker line to give the test name and its fields, and other lines nothing.
    #[test]
    fn marker_lines() {
        let (t, f) =
            parse_mark("robustness: test=cgroup_churn ops=12 faults=0 started=80").unwrap();
        assert_eq!(t, "cgroup_churn");
        assert_eq!(f["ops"], "12");
        assert_eq!(f["started"], "80");
        assert!(!f.contains_key("test"));
        assert!(parse_mark("cgroup_churn: 3 cycles").is_none());
        assert!(parse_mark("robustness: ops=1").is_none());
    }

    // Expect rows for every test of the robustness suites, with their fields and failures,
    // from a KTAP report.
    #[test]
    fn rows_from_ktap() {
        let log = "\
KTAP version 1
1..2
  KTAP version 1
  # Subtest: lags_stress
  1..2
  # robustness: test=cgroup_churn ops=10 faults=0 invalid=0 started=80 finished=80
  ok 1 cgroup_churn
  # FAIL: heavy waited too long
  # robustness: test=starvation_bound ops=5 worst_wait_us=60000 bound_us=550000
  not ok 2 starvation_bound
not ok 1 lags_stress
  KTAP version 1
  # Subtest: lags_hostile
  1..1
  ok 1 fuzz_cpu_lags # SKIP no LAGS
ok 2 lags_hostile
";
        let report = crate::results::ktap::parse(log);
        let rows = rows_of(&report.tests);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0].field("ops"), "10");
        assert_eq!(rows[1].status, "fail");
        assert_eq!(rows[1].failures.len(), 1);
        assert_eq!(rows[2].skip_reason.as_deref(), Some("no LAGS"));
        let s = Summary {
            timestamp: "t".into(),
            quick: true,
            secs: 20,
            seed: 1,
            profile: "debug",
            command: "cargo xtask robustness --quick".into(),
            verdict: Verdict::TestsFailed,
            message: "m".into(),
            accel: Accel::Tcg,
            cpus: 2,
            elapsed_s: 1.0,
            kernel_faults: vec![],
            console_log: "c".into(),
            rows,
        };
        let md = markdown(&s);
        assert!(
            md.contains("| lags_stress | starvation_bound | fail | 5 |"),
            "{md}"
        );
        assert!(md.contains("60.0 ms (bound 550 ms)"), "{md}");
        assert!(md.contains("skip (no LAGS)"), "{md}");
    }
}
