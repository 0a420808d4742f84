//! `cargo xtask run` (the main job) and `cargo xtask ci` (everything CI checks).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::build::{self, ProfileArgs};
use crate::config::{self, Profile};
use crate::fetch::FetchArgs;
use crate::patch::PatchArgs;
use crate::series::CheckSeriesArgs;
use crate::util::{self, Paths};
use crate::vm::MachineArgs;
use crate::vmtest::QemuTestArgs;

/// Arguments of `cargo xtask run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Kernel source for `fetch` (see `cargo xtask fetch --help`).
    #[arg(long)]
    pub from: Option<String>,
    /// Do not install missing tools (only check them).
    #[arg(long)]
    pub no_install: bool,
    #[command(flatten)]
    pub test: QemuTestArgs,
}

impl RunArgs {
    pub fn run(&self, paths: &Paths) -> Result<()> {
        let profile = self.test.profile.profile();
        let mut steps = Steps::default();
        steps.time("setup", || crate::setup::setup(!self.no_install))?;
        let fetch = FetchArgs {
            from: self.from.clone(),
            allow_version_mismatch: false,
            force: false,
        };
        steps.time("fetch", || fetch.run(paths))?;
        steps.time("patch", || PatchArgs { force: false }.run(paths))?;
        steps.time("configure", || config::configure(paths, profile, false))?;
        steps.time("build-kernel", || {
            build::build_kernel(paths, profile, false)
        })?;
        steps.time("build-module", || {
            build::build_module(paths, profile).map(|_| ())
        })?;
        let r = steps.time("qemu-test", || self.test.run(paths));
        steps.print();
        r
    }
}

/// Arguments of `cargo xtask ci`.
#[derive(Debug, clap::Args)]
pub struct CiArgs {
    /// Also build the CONFIG_SCHED_LAGS=n variant and boot it.
    #[arg(long)]
    pub nolags: bool,
    /// Skip the debug-kernel robustness run (`cargo xtask robustness --quick`).
    #[arg(long)]
    pub no_robustness: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

impl CiArgs {
    pub fn run(&self, paths: &Paths) -> Result<()> {
        let start = Instant::now();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let cargo_cmd = |args: &[&str]| {
            let mut c = Command::new(&cargo);
            c.current_dir(&paths.root).args(args);
            c
        };
        util::run(&mut cargo_cmd(&["fmt", "--all", "--check"]))
            .context("rustfmt: run `cargo fmt --all`")?;
        util::run(&mut cargo_cmd(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "-q",
            "--",
            "-D",
            "warnings",
        ]))
        .context("clippy found problems")?;
        util::run(&mut cargo_cmd(&["test", "--workspace", "-q"])).context("host tests failed")?;
        self.run.run(paths)?;
        CheckSeriesArgs { build_each: false }.run(paths)?;
        fault_selftest(paths, &self.run.test)?;
        vm_selftest(paths, &self.run.test)?;
        if !self.no_robustness {
            // The shortened stress and hostile-input suites on the debug kernel (lockdep,
            // UBSAN, KFENCE, ...): any kernel report fails CI.
            crate::robustness::RobustnessArgs {
                quick: true,
                secs: None,
                seed: None,
                no_build: false,
                accel: self.run.test.machine.accel,
                cpus: 2,
                timeout: None,
                verbose: false,
            }
            .run(paths)?;
        }
        if self.nolags {
            let p = Profile::Nolags;
            config::configure(paths, p, false)?;
            build::build_kernel(paths, p, false)?;
            let mut t = self.run.test.clone();
            t.profile = ProfileArgs {
                profile: p,
                debug: false,
            };
            t.suites = Some("boot,lags_iface".into());
            t.run(paths)?;
        }
        let el = start.elapsed().as_secs();
        eprintln!("[ci] all checks passed in {}m{:02}s", el / 60, el % 60);
        Ok(())
    }
}

/// Boots with injected faults and checks each is classified as what it is, with its own
/// exit code: a panic mid-suite, a guest that hangs, a boot that never reaches the runner.
pub fn fault_selftest(paths: &Paths, base: &QemuTestArgs) -> Result<()> {
    use crate::results::verdict::Verdict;
    let cases = [
        ("panic", Verdict::KernelFault),
        ("hang", Verdict::Timeout),
        ("noboot", Verdict::BootFailure),
    ];
    let mut bad = Vec::new();
    for (inject, want) in cases {
        eprintln!("\n=== runner self-test: --inject {inject} must give {want:?} ===");
        let mut t = base.clone();
        t.inject = Some(inject.into());
        t.suites = Some("boot,cgroup".into());
        t.silence = 15;
        t.timeout = Some(120);
        let got = t.run_boots(paths)?;
        let v = got.first().map(|r| r.verdict);
        if v != Some(want) {
            bad.push(format!("--inject {inject}: expected {want:?}, got {v:?}"));
        } else {
            eprintln!(
                "[ci] --inject {inject}: {want:?} (exit code {}) as expected",
                want.exit() as i32
            );
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(util::failure(
            util::Exit::TestsFailed,
            format!("runner self-test failed:\n  {}", bad.join("\n  ")),
        ))
    }
}

/// `cargo xtask vm` end to end: the command's status comes back, the guest has the cpu
/// controller at the cgroup v2 root, a script that crashes the kernel gives exit code 10,
/// and `--out` brings files back.
pub fn vm_selftest(paths: &Paths, base: &QemuTestArgs) -> Result<()> {
    use crate::results::verdict::Verdict;
    use crate::vm_cmd::{Outcome, VmArgs};
    let dir = paths
        .results()
        .join(format!("vm-selftest-{}", std::process::id()));
    fs_err::create_dir_all(&dir)?;
    let script = dir.join("panic.sh");
    util::write(
        &script,
        "echo before the crash\necho c > /proc/sysrq-trigger\necho after\n",
    )?;
    let out = dir.join("out");
    let vm = |command: &[&str]| VmArgs {
        profile: base.profile.clone(),
        machine: MachineArgs {
            accel: base.machine.accel,
            cpus: 2,
            mem: 1024,
        },
        with: Vec::new(),
        cmdline: Vec::new(),
        script: None,
        share: None,
        no_share: true,
        out: None,
        timeout: 120,
        silence: 0,
        verbose: false,
        command: command.iter().map(|s| s.to_string()).collect(),
    };
    let mut panic = vm(&[]);
    panic.script = Some(script);
    let mut with_out = vm(&["sh", "-c", "echo lags > /out/x"]);
    with_out.out = Some(out.clone());
    type Check = Box<dyn Fn(&crate::vm_cmd::VmReport) -> Result<(), String>>;
    let cases: Vec<(&str, VmArgs, Check)> = vec![
        (
            "vm -- sh -c 'exit 7' returns 7",
            vm(&["sh", "-c", "exit 7"]),
            Box::new(|r| match r.outcome {
                Outcome::Command(7) => Ok(()),
                o => Err(format!(
                    "expected the command's status 7, got {o:?} (exit code {})",
                    o.exit_code()
                )),
            }),
        ),
        (
            "vm -- cat /sys/fs/cgroup/cgroup.controllers shows cpu",
            vm(&["cat", "/sys/fs/cgroup/cgroup.controllers"]),
            Box::new(|r| {
                if r.outcome != Outcome::Command(0) {
                    return Err(format!("expected exit 0, got {:?}", r.outcome));
                }
                if !r.output.split_whitespace().any(|w| w == "cpu") {
                    return Err(format!("no `cpu` in the output {:?}", r.output.trim()));
                }
                Ok(())
            }),
        ),
        (
            "vm --script (echo c > /proc/sysrq-trigger) returns 10",
            panic,
            Box::new(|r| match r.outcome {
                Outcome::Infra(Verdict::KernelFault) if r.outcome.exit_code() == 10 => Ok(()),
                o => Err(format!(
                    "expected a kernel fault (exit 10), got {o:?} (exit code {})",
                    o.exit_code()
                )),
            }),
        ),
        (
            "vm --out DIR brings /out back",
            with_out,
            Box::new(move |r| {
                if r.outcome != Outcome::Command(0) {
                    return Err(format!("expected exit 0, got {:?}", r.outcome));
                }
                match fs_err::read_to_string(out.join("x")) {
                    Ok(s) if s == "lags\n" => Ok(()),
                    other => Err(format!(
                        "expected {}/x = \"lags\\n\", got {other:?}",
                        out.display()
                    )),
                }
            }),
        ),
    ];
    let mut bad = Vec::new();
    for (name, args, check) in cases {
        eprintln!("\n=== vm self-test: {name} ===");
        let report = args.execute(paths, &paths.root, false)?;
        match check(&report) {
            Ok(()) => eprintln!("[ci] {name}: ok"),
            Err(e) => bad.push(format!(
                "{name}: {e} (console: {})",
                report.console_log.display()
            )),
        }
    }
    let name = "vm --accel icount twice: identical switch counts and CPU times";
    eprintln!("\n=== vm self-test: {name} ===");
    let mut det = vm(&["sh", "-c", DETERMINISM_PROBE]);
    det.machine = MachineArgs {
        accel: Some(crate::vm::Accel::Icount),
        cpus: 1,
        mem: 1024,
    };
    let runs = [
        det.clone().execute(paths, &paths.root, false)?,
        det.execute(paths, &paths.root, false)?,
    ];
    match same_run(&runs[0], &runs[1]) {
        Ok(()) => eprintln!("[ci] {name}: ok"),
        Err(e) => bad.push(format!(
            "{name}: {e} (consoles: {}, {})",
            runs[0].console_log.display(),
            runs[1].console_log.display()
        )),
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(util::failure(
            util::Exit::TestsFailed,
            format!("vm self-test failed:\n  {}", bad.join("\n  ")),
        ))
    }
}

/// A guest program for the determinism self-test: a busy loop, then the guest clock, the
/// context switches and interrupts since boot, and CPU 0's schedstat line (its run and wait
/// time, ns, and its timeslices).
const DETERMINISM_PROBE: &str = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; \
    cat /proc/uptime; grep -E '^(ctxt|intr|processes) ' /proc/stat | cut -d' ' -f1,2; \
    grep '^cpu0 ' /proc/schedstat";

/// Two `--accel icount` runs of [`DETERMINISM_PROBE`] must print the same (non-empty) thing.
fn same_run(a: &crate::vm_cmd::VmReport, b: &crate::vm_cmd::VmReport) -> Result<(), String> {
    use crate::vm_cmd::Outcome;
    for r in [a, b] {
        if r.outcome != Outcome::Command(0) {
            return Err(format!("expected exit 0, got {:?}", r.outcome));
        }
        if !r.output.contains("ctxt ") || !r.output.contains("cpu0 ") {
            return Err(format!(
                "expected ctxt and cpu0 lines, got {:?}",
                r.output.trim()
            ));
        }
    }
    if a.output == b.output {
        Ok(())
    } else {
        Err(format!(
            "expected identical output, got {:?} and {:?}",
            a.output.trim(),
            b.output.trim()
        ))
    }
}

/// Wall time per pipeline step, printed at the end.
#[derive(Default)]
struct Steps(Vec<(&'static str, f64)>);

impl Steps {
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        eprintln!("\n=== {name} ===");
        let r = f();
        self.0.push((name, t.elapsed().as_secs_f64()));
        r
    }

    fn print(&self) {
        eprintln!("\nstep           seconds");
        for (n, s) in &self.0 {
            eprintln!("{n:<14} {s:>7.1}");
        }
        eprintln!(
            "{:<14} {:>7.1}",
            "total",
            self.0.iter().map(|x| x.1).sum::<f64>()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        test: QemuTestArgs,
    }

    // Expect the vm checks of `cargo xtask ci` to pass on the built default kernel. Boots
    // QEMU four times, so it only runs on request:
    // `cargo test -p xtask -- --ignored vm_selftest_on_built_kernel`.
    #[test]
    #[ignore = "boots the built kernel (cargo xtask run first)"]
    fn vm_selftest_on_built_kernel() {
        let paths = Paths::new(None);
        let base = Cli::parse_from(["qemu-test"]).test;
        vm_selftest(&paths, &base).unwrap();
    }
}
