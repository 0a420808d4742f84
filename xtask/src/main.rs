//! `cargo xtask`: fetch → patch → configure → build → boot → test for the LAGS series.
//!
//! See <https://github.com/matklad/cargo-xtask>. Every task lives in its own module; this
//! file only parses the command line and maps errors to documented exit codes
//! (`Documentation/xtask.md`).

mod bench;
mod build;
mod config;
mod fetch;
#[cfg(test)]
mod golden;
/// The guest runner's KTAP writer, compiled here so that a host test can feed what it
/// writes into the host's parser (`results::ktap::tests::guest_writer_into_host_parser`).
#[cfg(test)]
#[allow(dead_code)] // the guest also uses parts that the test does not need
#[path = "../../tests/guest/src/ktap.rs"]
mod guest_ktap;
mod image;
mod patch;
mod pipeline;
mod results;
mod robustness;
mod series;
mod setup;
mod util;
mod vm;
mod vm_cmd;
mod vmtest;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::util::{exit_code_of, Paths};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, boot and test the LAGS kernel series",
    version
)]
struct Cli {
    /// Work directory for the kernel tree, builds and results.
    #[arg(long, global = true, env = "LAGS_WORK_DIR", value_name = "DIR")]
    work_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check and install the pinned toolchain (apt, cargo install); print versions.
    Setup(setup::SetupArgs),
    /// Put a pristine kernel tree in work/linux as a git repository.
    Fetch(fetch::FetchArgs),
    /// Apply patches/ on the base commit (idempotent).
    Patch(patch::PatchArgs),
    /// Write a minimal VM .config: defconfig + configs/ fragments, verified.
    Configure(config::ConfigureArgs),
    /// Build bzImage and the in-tree modules the config selects.
    BuildKernel(build::BuildKernelArgs),
    /// Build kernel-module/ out of tree against the build tree.
    BuildModule(build::BuildModuleArgs),
    /// Boot the kernel in QEMU, run the in-guest suites, collect KTAP.
    QemuTest(vmtest::QemuTestArgs),
    /// Boot the built kernel and run a command, a script or a shell in it; exits with the
    /// command's status (10/11/12 for kernel fault, boot failure, timeout).
    Vm(vm_cmd::VmArgs),
    /// checkpatch --strict, subjects, sign-offs and base of patches/ (and optionally build each).
    CheckSeries(series::CheckSeriesArgs),
    /// Regenerate patches/ from the commits on lags-base in work/linux (keeps the cover prose).
    ExportSeries(series::ExportSeriesArgs),
    /// The main job: setup, fetch, patch, configure, build kernel and module, qemu-test.
    Run(pipeline::RunArgs),
    /// Everything CI checks: fmt, clippy, host tests, check-series and the main job.
    Ci(pipeline::CiArgs),
    /// Benchmark: dense serverless workload, stock vs LAGS vs tuned EEVDF, in QEMU.
    Bench(Box<bench::BenchArgs>),
    /// Stress and hostile-input suites on the debug kernel; table in work/robustness/.
    Robustness(robustness::RobustnessArgs),
}

fn main() {
    let cli = Cli::parse();
    let paths = Paths::new(cli.work_dir);
    let result = match cli.cmd {
        Cmd::Setup(a) => a.run(),
        Cmd::Fetch(a) => a.run(&paths),
        Cmd::Patch(a) => a.run(&paths),
        Cmd::Configure(a) => a.run(&paths),
        Cmd::BuildKernel(a) => a.run(&paths),
        Cmd::BuildModule(a) => a.run(&paths),
        Cmd::QemuTest(a) => a.run(&paths),
        Cmd::Vm(a) => a.run(&paths).map(|code| std::process::exit(code)),
        Cmd::CheckSeries(a) => a.run(&paths),
        Cmd::ExportSeries(a) => a.run(&paths),
        Cmd::Run(a) => a.run(&paths),
        Cmd::Ci(a) => a.run(&paths),
        Cmd::Bench(a) => a.run(&paths),
        Cmd::Robustness(a) => a.run(&paths),
    };
    if let Err(e) = result {
        if e.downcast_ref::<vm_cmd::UsageError>().is_some() {
            // A command-line mistake clap cannot see: clap's exit code.
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
        let code = exit_code_of(&e);
        eprintln!("error: {e:#}");
        eprintln!("(exit code {} = {:?})", code as i32, code);
        std::process::exit(code as i32);
    }
}
