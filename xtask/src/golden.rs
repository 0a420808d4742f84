//! Golden tests from real boots.
//!
//! Each directory under `xtask/test_data/golden/` holds a serial-console log captured by
//! `cargo xtask qemu-test` or `cargo xtask robustness` on the built kernel (`console.log`,
//! with the kernel's early boot messages cut out; see the README there), `run.json` (where it
//! came from, how QEMU ended, and the verdict that run recorded), and what the host makes of
//! the log today: `expected.ktap` (the parsed report, re-emitted), `expected.summary` (the
//! per-suite summary printed by `qemu-test`) and `expected.json` (verdict, exit code,
//! message, counts, problems, kernel faults and, for the robustness suites, their table
//! rows).
//!
//! `UPDATE_EXPECT=1 cargo test -p xtask golden` rewrites the `expected.*` files from the
//! current code instead of comparing; review the diff before committing it. `run.json` is
//! never rewritten: the verdict a real run recorded must stay the verdict of its log.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::results::console::{self, Fault};
use crate::results::ktap::{self, Counts};
use crate::results::verdict::{self, Verdict};
use crate::robustness::{self, Row};
use crate::vm::Ending;

/// What the host derives from one captured console log.
#[derive(Debug, Serialize)]
struct Derived {
    verdict: Verdict,
    exit: i32,
    message: String,
    runner_started: bool,
    runner_done: bool,
    complete: bool,
    counts: Counts,
    problems: Vec<String>,
    faults: Vec<Fault>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    robustness_rows: Vec<Row>,
}

/// One case: its directory, the derived files by name and content.
struct Case {
    dir: PathBuf,
    run: Value,
    log: String,
    files: Vec<(&'static str, String)>,
    verdict: Verdict,
    message: String,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/golden")
}

fn ending_of(run: &Value, dir: &Path) -> Ending {
    match run["ending"].as_str() {
        Some("exited") => Ending::Exited,
        Some("silent") => Ending::Silent,
        Some("hard_timeout") => Ending::HardTimeout,
        other => panic!("{}: run.json: bad ending {other:?}", dir.display()),
    }
}

fn load(dir: PathBuf) -> Case {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
    };
    let run: Value = serde_json::from_str(&read("run.json"))
        .unwrap_or_else(|e| panic!("{}/run.json: {e}", dir.display()));
    let log = read("console.log");
    let (verdict, message, scan, report) = verdict::classify(&log, ending_of(&run, &dir));
    let derived = Derived {
        verdict,
        exit: verdict.exit() as i32,
        message: message.clone(),
        runner_started: scan.runner_started,
        runner_done: scan.runner_done,
        complete: report.complete,
        counts: report.counts(),
        problems: report.problems.clone(),
        faults: scan.faults,
        robustness_rows: robustness::rows_of(&report.tests),
    };
    let json = serde_json::to_string_pretty(&derived).expect("serializable") + "\n";
    Case {
        dir,
        run,
        log,
        files: vec![
            ("expected.ktap", report.to_ktap()),
            ("expected.summary", report.summary()),
            ("expected.json", json),
        ],
        verdict,
        message,
    }
}

fn cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("xtask/test_data/golden")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter().map(load).collect()
}

fn verdict_name(v: Verdict) -> String {
    serde_json::to_value(v)
        .expect("serializable")
        .as_str()
        .expect("a string")
        .to_owned()
}

// Expect every captured log to give the KTAP, summary and verdict recorded next to it
// (UPDATE_EXPECT=1 rewrites them instead).
#[test]
fn golden_console_logs() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let mut mismatches = Vec::new();
    for case in cases() {
        for (name, got) in &case.files {
            let path = case.dir.join(name);
            if update {
                std::fs::write(&path, got).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if &want != got {
                mismatches.push(format!(
                    "{}: differs (UPDATE_EXPECT=1 rewrites it)\n--- expected\n{want}\n--- got\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// `message` with the number after `console line ` replaced by `N` (cutting the early boot
/// messages out of a log moves its lines).
fn without_line_number(message: &str) -> String {
    match message.split_once("console line ") {
        Some((head, tail)) => {
            let rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{head}console line N{rest}")
        }
        None => message.to_owned(),
    }
}

// Expect the verdict and message of each trimmed log to be the ones its real run recorded
// (up to the moved line number), and the log to be of the command line the run used:
// trimming kept what decides, and the classifier still agrees with the run. Never rewritten.
#[test]
fn golden_verdicts_match_the_recorded_runs() {
    for case in cases() {
        let dir = case.dir.display();
        let recorded = case.run["recorded_verdict"].as_str().unwrap_or_default();
        assert_eq!(
            verdict_name(case.verdict),
            recorded,
            "{dir}: the run recorded {recorded}"
        );
        let recorded = case.run["recorded_message"].as_str().unwrap_or_default();
        assert_eq!(
            without_line_number(&case.message),
            without_line_number(recorded),
            "{dir}"
        );
        let cmdline = case.run["cmdline"].as_str().unwrap_or_default();
        let booted = case
            .log
            .lines()
            .find_map(|l| l.split_once("] Command line: ").map(|(_, c)| c))
            .unwrap_or_else(|| panic!("{dir}: no kernel command line in the log"));
        assert!(
            !cmdline.is_empty() && booted.ends_with(cmdline),
            "{dir}: booted with {booted:?}, run.json says {cmdline:?}"
        );
    }
    assert_eq!(
        without_line_number("Panic at console line 294: [ 1.0] x"),
        "Panic at console line N: [ 1.0] x"
    );
}

// Expect the golden set to cover every verdict class, every default qemu-test boot and
// the robustness table, so that losing a case is noticed.
#[test]
fn golden_set_covers_every_outcome() {
    let cases = cases();
    for v in [
        Verdict::Passed,
        Verdict::TestsFailed,
        Verdict::Timeout,
        Verdict::KernelFault,
        Verdict::BootFailure,
    ] {
        assert!(
            cases.iter().any(|c| c.verdict == v),
            "no golden log with verdict {v:?}"
        );
    }
    let names: Vec<String> = cases
        .iter()
        .map(|c| c.dir.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for boot in ["main", "behaviour", "bootflag-off"] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("qemu-test-{boot}-"))),
            "no golden log of the {boot} boot in {names:?}"
        );
    }
    assert!(
        cases
            .iter()
            .any(|c| c.files[2].1.contains("\"robustness_rows\"")),
        "no golden log of the robustness suites"
    );
}

// Expect the fault kinds found in the captured fault-injection logs to be the ones the
// injections cause (independent of the expected files).
#[test]
fn golden_fault_logs_show_their_fault() {
    let log = |case: &str| {
        std::fs::read_to_string(golden_dir().join(case).join("console.log")).expect(case)
    };
    let panic = console::scan(&log("fault-panic"));
    assert!(panic.runner_started && !panic.runner_done);
    assert_eq!(
        panic.worst().map(|f| f.kind),
        Some(console::FaultKind::Panic)
    );
    let noboot = console::scan(&log("fault-noboot"));
    assert!(!noboot.runner_started);
    let hang = console::scan(&log("fault-hang"));
    assert!(hang.runner_started && !hang.runner_done && hang.faults.is_empty());
    let report = ktap::parse(&log("fault-hang"));
    assert!(!report.complete);
}

// Expect every console log under test_data (the real ones in `golden/` and the hand-made ones in
// `console/`, which exercise damage a real run rarely shows) to be of the real runner: its
// kernel command line gives the runner no warning (an unknown `lags.*` key such as
// `lags.tests=` would) and every suite it reports is one the runner has.
#[test]
fn test_data_names_real_suites_and_keys() {
    use lags_proto::runner::{RunnerOptions, DEFAULT_SUITES, ROBUSTNESS_SUITES};
    let console_dir = golden_dir().with_file_name("console");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&console_dir)
        .expect("xtask/test_data/console")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.extend(cases().into_iter().map(|c| c.dir.join("console.log")));
    assert!(logs.len() > 20, "{logs:?}");
    for path in logs {
        let log = std::fs::read_to_string(&path).expect("a log");
        let name = path.display();
        let cmdline = log
            .lines()
            .find_map(|l| l.split_once("] Command line: ").map(|(_, c)| c.trim_end()))
            .unwrap_or_else(|| panic!("{name}: no kernel command line"));
        let opts = RunnerOptions::from_cmdline(cmdline);
        assert!(opts.warnings.is_empty(), "{name}: {:?}", opts.warnings);
        // Unnamed entries are the parser's own, for suites a crash left unstarted.
        for suite in ktap::parse(&log)
            .tests
            .iter()
            .filter(|t| !t.name.is_empty())
        {
            assert!(
                DEFAULT_SUITES.contains(&suite.name.as_str())
                    || ROBUSTNESS_SUITES.contains(&suite.name.as_str()),
                "{name}: the runner has no suite {:?}",
                suite.name
            );
        }
    }
}

/// The real benchmark runs: `xtask/test_data/bench/<case>/` holds a results directory of
/// `cargo xtask bench` as it wrote it (`env.json`, `<boot>.data.ndjson`, the boot's console
/// log with the early boot messages cut out as for the logs above), `run.json` (where it
/// came from, how QEMU ended, the SLO target) and the expectations: `expected.summary.md`
/// (the report; at first the run's own `summary.md`) and `expected.json` (each boot's
/// verdict, the headline, the record counts).
fn bench_cases() -> Vec<PathBuf> {
    let root = golden_dir().with_file_name("bench");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("xtask/test_data/bench")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

// Expect every captured benchmark run to give the report, headline and boot verdicts
// recorded next to it (UPDATE_EXPECT=1 rewrites them), every record of its data port to
// decode under the contract, and each boot's verdict to be the one the run wrote into
// env.json (never rewritten).
#[test]
fn golden_bench_runs() {
    use crate::bench;
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let dirs = bench_cases();
    assert!(
        !dirs.is_empty(),
        "no benchmark run in xtask/test_data/bench"
    );
    let mut mismatches = Vec::new();
    for dir in dirs {
        let name = dir.display();
        let run: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).expect("run.json"))
                .expect("run.json is JSON");
        let target = run["slo_target"].as_f64().expect("slo_target");
        let (env_v, recs) = bench::records::load_dir(&dir).expect("a results directory");
        assert!(recs.invalid.is_empty(), "{name}: {:?}", recs.invalid);
        assert!(
            !(recs.runs.is_empty() && recs.rd.is_empty() && recs.kn.is_empty()),
            "{name}: no run records"
        );
        let mut boots = Vec::new();
        for b in env_v["boots"].as_array().expect("boots in env.json") {
            let boot = b["name"].as_str().expect("a boot name");
            let console = std::fs::read_to_string(dir.join(format!("{boot}.console.log")))
                .expect("the boot's console log");
            let (v, message) =
                bench::boot_verdict(&console, ending_of(&run, &dir), recs.status_of(boot));
            assert_eq!(
                bench::verdict_word(v),
                b["verdict"].as_str().unwrap_or_default(),
                "{name}: boot {boot}"
            );
            assert_eq!(message, b["message"].as_str().unwrap_or_default(), "{name}");
            boots.push(serde_json::json!({
                "boot": boot,
                "verdict": v,
                "exit": v.exit() as i32,
                "message": message,
            }));
        }
        let env = bench::report::env_from_value(&env_v);
        let report = bench::report::Report::of(&recs, target);
        let md = bench::report::render_markdown(&env, &report);
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "boots": boots,
            "records": recs.raw.len(),
            "runs": recs.runs.len(),
            "rdhashd": recs.rd.len(),
            "knative": recs.kn.len(),
            "overhead": recs.overhead.len(),
            "headline": report.h,
        }))
        .expect("serializable")
            + "\n";
        for (file, got) in [("expected.summary.md", md), ("expected.json", json)] {
            let path = dir.join(file);
            if update {
                std::fs::write(&path, &got).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if want != got {
                mismatches.push(format!(
                    "{}: differs (UPDATE_EXPECT=1 rewrites it)\n--- expected\n{want}\n--- got\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
