//! `cargo xtask qemu-test`: initramfs → QEMU → KTAP → verdict, results on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::build::{self, ProfileArgs};
use crate::config::Profile;
use crate::image;
use crate::results::lines::strip_timestamp;
use crate::results::verdict::{classify, Verdict};
use crate::results::{console, ktap};
use crate::util::{self, failure, Paths};
use crate::vm::args::ICOUNT_SHIFT;
use crate::vm::{self, Accel, Ending, Limits, MachineArgs, VmSpec};

/// The guest suites whose assertions are about latency and CPU shares; they get a 1-vCPU
/// boot of their own.
pub use lags_proto::runner::TIMING_SUITES;
use lags_proto::runner::{self, Fault, RunnerOptions};

/// Arguments of `cargo xtask qemu-test`.
#[derive(Debug, Clone, clap::Args)]
pub struct QemuTestArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Comma-separated guest suites to run (default: all the runner knows).
    #[arg(long)]
    pub suites: Option<String>,
    /// Comma-separated tests to run, each `test` or `suite.test` (`lags.tests=`); the
    /// other tests of the suites are reported as skipped. Applies to every boot.
    #[arg(long)]
    pub tests: Option<String>,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Hard time limit per boot, seconds (default 300 under TCG, 120 under KVM).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Fail as a hang when the console is silent this long, seconds.
    #[arg(long, default_value_t = 90)]
    pub silence: u64,
    /// Host programs to carry into the guest with their shared libraries (repeatable).
    #[arg(long = "with", value_name = "PROGRAM")]
    pub with: Vec<PathBuf>,
    /// Extra kernel command-line parameters for the main boot (repeatable).
    #[arg(long = "cmdline", value_name = "PARAM")]
    pub cmdline: Vec<String>,
    /// Skip the second boot that checks the `sched_lags=off` boot parameter.
    #[arg(long)]
    pub no_bootflag_run: bool,
    /// Fault injection for testing this runner: panic, hang or noboot.
    #[arg(long, hide = true)]
    pub inject: Option<String>,
    /// Echo the whole guest console instead of a progress summary.
    #[arg(long, short)]
    pub verbose: bool,
}

/// The result of one boot.
#[derive(Debug, Serialize)]
pub struct BootResult {
    pub name: String,
    pub verdict: Verdict,
    pub message: String,
    pub accel: Accel,
    /// Why this accelerator (KVM probe result, forced, /dev/kvm missing).
    pub accel_reason: String,
    pub cpus: u32,
    pub elapsed_s: f64,
    pub ending: Ending,
    pub cmdline: Vec<String>,
    pub faults: Vec<console::Fault>,
    pub ktap: ktap::Report,
    pub console_log: PathBuf,
}

impl QemuTestArgs {
    pub fn run(&self, paths: &Paths) -> Result<()> {
        let results = self.run_boots(paths)?;
        let worst = Verdict::worst(results.iter().map(|r| r.verdict));
        if worst == Verdict::Passed {
            return Ok(());
        }
        let msgs: Vec<String> = results
            .iter()
            .filter(|r| r.verdict != Verdict::Passed)
            .map(|r| {
                format!(
                    "{}: {:?}: {} (console: {})",
                    r.name,
                    r.verdict,
                    r.message,
                    r.console_log.display()
                )
            })
            .collect();
        Err(failure(worst.exit(), msgs.join("\n")))
    }

    /// Runs every boot and writes the results; returns them for the caller's verdict.
    pub fn run_boots(&self, paths: &Paths) -> Result<Vec<BootResult>> {
        let profile = self.profile.profile();
        let kernel = build::bzimage(paths, profile);
        if !kernel.is_file() {
            bail!(
                "{} missing: run `cargo xtask build-kernel --profile {}`",
                kernel.display(),
                profile.name()
            );
        }
        let version = crate::fetch::makefile_version(&paths.src())?;
        // Each run gets its own directory (and initramfs), so concurrent runs never clash.
        let dir = paths
            .results()
            .join(format!("{}-{}", util::timestamp(), std::process::id()));
        fs_err::create_dir_all(&dir)?;
        let modules = build::guest_modules(paths, profile)?;
        let initrd =
            image::make_initramfs(paths, &modules, &self.with, &dir.join("initramfs.cpio"))?;
        let has_lags = profile != Profile::Nolags;
        let mut opts = RunnerOptions {
            expect_version: Some(version),
            expect_lags: has_lags,
            tests: self.tests.as_deref().map(runner::test_list),
            ..RunnerOptions::default()
        };
        if opts.tests.as_ref().is_some_and(Vec::is_empty) {
            bail!(
                "--tests {:?} names no test (want test or suite.test, comma-separated)",
                self.tests.as_deref().unwrap_or("")
            );
        }
        let mut noboot = false;
        match self.inject.as_deref() {
            None => {}
            Some("panic") => opts.fault = Fault::Panic,
            Some("hang") => opts.fault = Fault::Hang,
            Some("noboot") => noboot = true,
            Some(other) => bail!("unknown --inject {other}: use panic, hang or noboot"),
        }
        let mut base = opts.to_cmdline();
        if noboot {
            // A boot that never reaches the runner: point rdinit at nothing.
            base.push("rdinit=/does-not-exist".into());
        }
        let mut spec = VmSpec {
            kernel,
            initrd,
            extra_cmdline: base.clone(),
            cpus: self.machine.cpus,
            mem_mib: self.machine.mem,
            accel: Accel::Tcg,
            data_out: None,
        };
        let (accel, why) = vm::apply_accel(
            self.machine.accel,
            &mut spec,
            &paths.kvm_probe(),
            "qemu-test",
        )?;
        let hard = Duration::from_secs(self.timeout.unwrap_or(if accel == Accel::Kvm {
            120
        } else {
            300
        }));
        let limits = Limits {
            hard,
            silence: Duration::from_secs(self.silence),
        };
        let default_run = self.suites.is_none() && self.inject.is_none();
        // (name, command line, vCPUs, accelerator, why that accelerator)
        let mut boots: Vec<(String, Vec<String>, u32, Accel, String)> = Vec::new();
        let mut main = base.clone();
        match &self.suites {
            Some(s) => main.push(format!("lags.suites={s}")),
            // The timing suite gets a boot of its own, below.
            None if default_run && has_lags => main.push(runner::excluding_param(TIMING_SUITES)),
            None => {}
        }
        main.extend(self.cmdline.iter().cloned());
        boots.push(("main".into(), main, self.machine.cpus, accel, why.clone()));
        if default_run && has_lags {
            let mut t = base.clone();
            t.push(runner::suites_param(TIMING_SUITES));
            t.extend(self.cmdline.iter().cloned());
            let (cpus, timing_accel) = timing_boot(accel, self.machine.cpus);
            let reason = if timing_accel == accel {
                why.clone()
            } else {
                let r = format!(
                    "timing suites on deterministic TCG (-icount shift={ICOUNT_SHIFT}, one \
                     vCPU): under plain TCG the host's stops enter guest time"
                );
                eprintln!("[qemu-test] the behaviour boot runs {r}");
                r
            };
            boots.push(("behaviour".into(), t, cpus, timing_accel, reason));
        }
        if default_run && has_lags && !self.no_bootflag_run {
            let b = RunnerOptions {
                sched_lags_off: true,
                suites: Some(vec![runner::IFACE_SUITE.into()]),
                ..opts.clone()
            }
            .to_cmdline();
            boots.push((
                "bootflag-off".into(),
                b,
                self.machine.cpus,
                accel,
                why.clone(),
            ));
        }
        let mut results = Vec::new();
        for (name, cmdline, cpus, accel, why) in boots {
            spec.extra_cmdline = cmdline.clone();
            spec.cpus = cpus;
            spec.accel = accel;
            let log = dir.join(format!("{name}.console.log"));
            eprintln!(
                "[qemu-test] boot {name}: {} vCPUs, {}, limit {}s",
                spec.cpus,
                accel.name(),
                hard.as_secs()
            );
            let verbose = self.verbose;
            let run = vm::run_vm(&spec, &log, limits, |line| progress(line, verbose))?;
            run.ensure_qemu_ran()?;
            let (verdict, message, scan, report) = classify(&run.console, run.ending);
            let r = BootResult {
                name: name.clone(),
                verdict,
                message,
                accel,
                accel_reason: why,
                cpus: spec.cpus,
                elapsed_s: run.elapsed.as_secs_f64(),
                ending: run.ending,
                cmdline,
                faults: scan.faults.clone(),
                ktap: report,
                console_log: log,
            };
            util::write(&dir.join(format!("{name}.ktap")), r.ktap.to_ktap())?;
            util::write(
                &dir.join(format!("{name}.json")),
                serde_json::to_string_pretty(&r)?,
            )?;
            eprintln!("{}", r.ktap.summary());
            eprintln!(
                "[qemu-test] {name}: {:?} — {} ({:.1}s, {})",
                r.verdict,
                r.message,
                r.elapsed_s,
                accel.name()
            );
            results.push(r);
        }
        write_summary(&dir, &results)?;
        let latest = paths.results().join("latest");
        let _ = fs_err::remove_file(&latest);
        let _ = std::os::unix::fs::symlink(&dir, &latest);
        eprintln!("[qemu-test] results: {}", dir.display());
        Ok(results)
    }
}

/// vCPUs and accelerator of the boot that runs the timing suites, given the run's own.
///
/// Those suites judge scheduling decisions by wall-clock latencies and CPU shares. Under plain
/// TCG the guest's clock is the host's, so every time the host runs something else (another
/// process, or its own hypervisor's steal) the guest stops and the stop is charged to whoever
/// was running: a CI boot on a busy host measured a stock wake-up p50 of 363 ms against 2 ms
/// on a quiet one. Instruction counting (`-icount`, one vCPU) takes the host out of guest
/// time, so the same kernel makes the same decisions in every run. Multi-threaded TCG and KVM
/// are what their user asked for and keep their vCPUs.
fn timing_boot(accel: Accel, cpus: u32) -> (u32, Accel) {
    match accel {
        Accel::Tcg | Accel::Icount => (1, Accel::Icount),
        Accel::Mttcg | Accel::Kvm => (cpus, accel),
    }
}

/// Echo runner progress: markers, suite results and failures (or everything with -v).
fn progress(line: &str, verbose: bool) {
    if verbose {
        eprintln!("  | {line}");
        return;
    }
    let body = strip_timestamp(line).unwrap_or(line);
    let interesting = body.starts_with("lags-init:")
        || body.starts_with("ok ")
        || body.starts_with("not ok ")
        || body.trim_start().starts_with("not ok ")
        || body.contains("Kernel panic")
        || body.contains("WARNING:")
        || body.contains("BUG:");
    if interesting {
        eprintln!("  | {body}");
    }
}

fn write_summary(dir: &Path, results: &[BootResult]) -> Result<()> {
    let mut md = String::from("# qemu-test results\n\n| boot | verdict | accel | vCPUs | time (s) | passed | failed | skipped | message |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in results {
        let c = r.ktap.counts();
        md.push_str(&format!(
            "| {} | {:?} | {} | {} | {:.1} | {} | {} | {} | {} |\n",
            r.name,
            r.verdict,
            r.accel.name(),
            r.cpus,
            r.elapsed_s,
            c.passed,
            c.failed + c.crashed + c.not_run,
            c.skipped,
            r.message.replace('|', "/")
        ));
    }
    util::write(&dir.join("summary.md"), md)?;
    util::write(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the timing suites to run on the instruction-counting clock with one vCPU
    // whenever the run would use plain TCG, and to keep KVM and multi-threaded TCG (and
    // their vCPU count) when the user chose those.
    #[test]
    fn timing_boot_leaves_the_host_out_of_guest_time() {
        assert_eq!(timing_boot(Accel::Tcg, 2), (1, Accel::Icount));
        assert_eq!(timing_boot(Accel::Icount, 1), (1, Accel::Icount));
        assert_eq!(timing_boot(Accel::Kvm, 4), (4, Accel::Kvm));
        assert_eq!(timing_boot(Accel::Mttcg, 2), (2, Accel::Mttcg));
    }
}
