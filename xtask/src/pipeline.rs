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
        if !self.no_robustness {
            // The shortened stress and hostile-input suites on the debug kernel (lockdep,
            // UBSAN, KFENCE, ...): any kernel report fails CI.
            crate::robustness::RobustnessArgs {
                quick: true,
                secs: None,
                seed: None,
                no_build: false,
                accel: self.run.test.accel,
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
    use crate::vmtest::Verdict;
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
