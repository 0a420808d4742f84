//! `cargo xtask bench`: the LAGS capacity benchmark.
//!
//! Boots the kernel with the in-guest workload generator (`tests/bench`, `lags-bench`) as
//! PID 1, which runs a dense serverless workload under several scheduler configurations,
//! interleaved in the same boot, and writes one JSON record per run to the guest's second
//! serial port. This module plans the boots, runs them, and turns the records into
//! `work/bench/<timestamp>/`: `results.json` (every raw record, the environment and the
//! aggregates), `summary.md` and PNG plots. See `Documentation/benchmarks.md`.
//!
//! The parts: [`plan`] (settings and boots), [`records`] (what the guest wrote),
//! [`stats`] (medians, ranges, aggregation), [`headline`] (capacity and targets),
//! [`report`] (Markdown and JSON) and [`plot`] (PNG); this file holds the command and the
//! boot loop.

pub mod bootstrap;
pub mod headline;
pub mod host;
pub mod plan;
pub mod plot;
pub mod records;
pub mod report;
pub mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use lags_bench::ProcStat;
use lags_proto::bench::{KnPlan, Plan, RdPlan, Status, Workload};

use crate::build::{self, ProfileArgs};
use crate::image::Initramfs;
use crate::results::console;
use crate::results::lines::strip_timestamp;
use crate::results::verdict::{self, Verdict};
use crate::util::{self, failure, Exit, Fnv, Paths};
use crate::vm::{self, Accel, Ending, Limits, MachineArgs, VmSpec};
use plan::{plan_boots, Settings};
use records::{load_dir, Records};
use report::{BootInfo, Env};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Small preset: a few minutes under TCG (zipf-open: 50 functions, 3 loads, 2 densities,
    /// short runs; rdhashd: 4 s windows).
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Function cgroups of the load sweep.
    #[arg(long)]
    pub funcs: Option<usize>,
    /// Offered loads of the load sweep (fractions of the measured CPU capacity), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub loads: Option<Vec<f64>>,
    /// Function counts of the density sweep, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub density: Option<Vec<usize>>,
    /// Offered load of the density sweep.
    #[arg(long)]
    pub density_load: Option<f64>,
    /// Repetitions of every (configuration, point); at least 3 for a spread.
    #[arg(long)]
    pub reps: Option<usize>,
    /// Measured seconds per run (after a 1 s warm-up).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Configurations: stock, lags, tuned, lags-inert (LAGS with credit_ref_pct 1000).
    #[arg(long, value_delimiter = ',')]
    pub configs: Option<Vec<String>>,
    /// Parts: load, density, overhead.
    #[arg(long, value_delimiter = ',')]
    pub parts: Option<Vec<String>>,
    /// Seed of the workload (the same for every configuration).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Mean service time per request, ms of calibrated guest CPU work.
    #[arg(long)]
    pub mean_ms: Option<f64>,
    /// SLO: response <= max(MULT x service time, FLOOR).
    #[arg(long, default_value_t = 10.0)]
    pub slo_mult: f64,
    /// SLO floor in ms.
    #[arg(long, default_value_t = 20.0)]
    pub slo_floor_ms: f64,
    /// SLO attainment that defines capacity.
    #[arg(long, default_value_t = 0.99)]
    pub slo_target: f64,
    /// base_slice_ns of the tuned-EEVDF baseline.
    #[arg(long, default_value_t = 100_000_000)]
    pub tuned_slice_ns: u64,
    /// Run the load generator as SCHED_FIFO 50 (the wakeups of the workers then bypass the
    /// fair class's wakeup path); default: the fair class, as network arrivals would wake them.
    #[arg(long)]
    pub fifo_dispatch: bool,
    /// rdhashd, knative: leave `kernel.sched_schedstats` off during the runs. The kernel then
    /// keeps no schedule() and wake-up counts and LAGS counts no picks (the records leave
    /// them unknown); what they cost in the scheduler is then not measured with it.
    #[arg(long)]
    pub no_schedstats: bool,
    /// Run everything in one boot even if it takes longer than ~20 minutes.
    #[arg(long)]
    pub single_boot: bool,
    /// Also boot this kernel (e.g. unpatched, same base) for the overhead probes only.
    #[arg(long, value_name = "BZIMAGE")]
    pub baseline_kernel: Option<PathBuf>,
    /// Extra host programs to carry into the guest (perf and stress-ng always are).
    #[arg(long = "with", value_name = "PROGRAM")]
    pub with: Vec<PathBuf>,
    /// Extra guest parameters, `lb.key=value` (see qemu/proto/src/bench.rs, `Plan`).
    #[arg(long = "param", value_name = "lb.KEY=VALUE")]
    pub params: Vec<String>,
    /// Hard time limit per boot, seconds (default: twice the estimate plus 2 minutes).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Fail as a hang when the console is silent this long, seconds.
    #[arg(long, default_value_t = 180)]
    pub silence: u64,
    /// Workload: zipf-open (open loop, the `load` and `density` parts) or rdhashd (the
    /// prototype's closed loop: a density sweep; default parts: density).
    #[arg(long, default_value = "zipf-open", value_parser = parse_workload)]
    pub workload: Workload,
    /// rdhashd: densities in functions per vCPU, comma-separated (default 1,4,8,19).
    #[arg(long, value_delimiter = ',')]
    pub rd_density: Option<Vec<f64>>,
    /// rdhashd: concurrency scales, comma-separated: the trace's in-flight targets times
    /// each (default 1). Several sweep the concurrency axis at one density; the
    /// capacity is then in scale (functions × scale).
    #[arg(long, value_delimiter = ',')]
    pub rd_scale: Option<Vec<f64>>,
    /// rdhashd: CPU burst per request, ms of calibrated guest CPU.
    #[arg(long, default_value_t = 10.0)]
    pub rd_burst_ms: f64,
    /// rdhashd: mean of the exponential sleep before each burst, ms.
    #[arg(long, default_value_t = 20.0)]
    pub rd_sleep_ms: f64,
    /// rdhashd: goodput counts requests with latency (end of sleep to completion) below this, ms.
    #[arg(long, default_value_t = 1000.0)]
    pub rd_threshold_ms: f64,
    /// rdhashd: replay these per-function concurrency traces (the prototype's CSV format,
    /// `,seconds,concurrency`, one `*.csv` per function) instead of the synthetic trace;
    /// F functions use the first F files in name order. Copied into the guest image.
    #[arg(long, value_name = "DIR")]
    pub rd_trace: Option<PathBuf>,
    /// knative: user counts of the sweep, comma-separated (default 50,100,150; quick 20,60).
    #[arg(long, value_delimiter = ',')]
    pub kn_users: Option<Vec<usize>>,
    /// knative: pod cgroups (each with a container child).
    #[arg(long, default_value_t = 100)]
    pub kn_pods: usize,
    /// knative: threads each request is split over (intra-op parallelism).
    #[arg(long, default_value_t = 3)]
    pub kn_k: u32,
    /// knative: CPU work of one request over all its threads, ms of calibrated CPU.
    #[arg(long, default_value_t = 30.0)]
    pub kn_work_ms: f64,
    /// knative: lognormal sigma of a request's work around --kn-work-ms (mean-preserving,
    /// at most 50× the mean); 0: every request the same, as in the prototype's experiment.
    #[arg(long, default_value_t = 0.0)]
    pub kn_work_sigma: f64,
    /// Only re-render the report of an existing results directory.
    #[arg(long, value_name = "DIR")]
    pub report_only: Option<PathBuf>,
    /// With `--report-only OUT`: first merge these results directories into OUT (created if
    /// missing), so that boots of one kernel and plan that cover different scales or
    /// densities are reported together. Refused unless they share kernel, config, machine
    /// and seeds.
    #[arg(
        long,
        value_name = "DIR,…",
        value_delimiter = ',',
        requires = "report_only"
    )]
    pub merge: Vec<PathBuf>,
    /// Echo the whole guest console.
    #[arg(long, short)]
    pub verbose: bool,
    /// Run the workloads on the running kernel, not in a guest: real CPUs (bare metal or a
    /// KVM guest). Needs root; creates its cgroups under the host's cpu hierarchy (cgroup v2
    /// or the v1 cpu controller) and removes them, also when interrupted. Configurations the
    /// kernel cannot run (lags without LAGS, tuned without a writable base_slice_ns,
    /// lags-inert without either) are
    /// left out, and the report says so. `--rd-density` counts functions per host CPU.
    #[arg(long)]
    pub host: bool,
    /// rdhashd: profile every measured window with `perf record -a -g` for the share of
    /// CPU time in `__schedule()` (always on with --host).
    #[arg(long)]
    pub sched_profile: bool,
    /// rdhashd, knative: measure the CPU time inside `schedule()` over every measured
    /// window with the ftrace function profiler, as the prototype did. Needs a kernel with
    /// `CONFIG_FUNCTION_PROFILER`: `--profile ftrace` (single-threaded TCG or icount).
    #[arg(long)]
    pub sched_ftrace: bool,
}

/// Does a kernel `.config` have the ftrace function profiler with the graph tracer (time
/// per call, which `--sched-ftrace` reads)?
fn function_profiler(config: &str) -> bool {
    const NEEDED: [&str; 2] = ["CONFIG_FUNCTION_PROFILER", "CONFIG_FUNCTION_GRAPH_TRACER"];
    crate::config::options_on(config, &NEEDED).len() == NEEDED.len()
}

/// `--workload`: the contract's names.
fn parse_workload(name: &str) -> Result<Workload, String> {
    Workload::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        format!("unknown workload {name:?}: use {}", names.join(" or "))
    })
}

/// The end of every benchmark command: the report, the `latest` link, and the verdict of
/// all boots (or host runs) combined.
pub(super) fn finish(
    paths: &Paths,
    dir: &Path,
    env: &Env,
    recs: &Records,
    slo_target: f64,
    verdicts: Vec<Verdict>,
) -> Result<()> {
    report::write(dir, serde_json::to_value(env)?, recs, slo_target)?;
    let latest = paths.work.join("bench").join("latest");
    let _ = fs_err::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(dir, &latest);
    eprintln!("[bench] results: {}", dir.display());
    let worst = Verdict::worst(verdicts);
    if worst != Verdict::Passed {
        return Err(failure(
            worst.exit(),
            format!(
                "one or more benchmark runs did not finish cleanly; see {}",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// The verdict of one benchmark boot: `qemu-test`'s infrastructure verdict
/// ([`verdict::classify_infra`]: boot failure, kernel fault, timeout), and then the guest's
/// end record in place of KTAP: anything but `ok` means the benchmark had errors. Pure.
pub fn boot_verdict(
    console_text: &str,
    ending: Ending,
    status: Option<Status>,
) -> (Verdict, String) {
    let scan = console::scan(console_text);
    if let Some(infra) = verdict::classify_infra(&scan, ending, scan.runner_done) {
        return infra;
    }
    match status {
        Some(Status::Ok) => (Verdict::Passed, String::new()),
        Some(s) => (Verdict::TestsFailed, format!("guest status {}", s.as_str())),
        None => (Verdict::TestsFailed, "guest status no end record".into()),
    }
}

/// The word `env.json` and the summary use for a boot's verdict.
pub(crate) fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "ok",
        Verdict::TestsFailed => "errors",
        Verdict::Timeout => "timeout",
        Verdict::KernelFault => "kernel fault",
        Verdict::BootFailure => "boot failure",
    }
}

/// How the report names the load generator's scheduling class.
pub(super) fn dispatcher_name(fifo: bool) -> &'static str {
    if fifo {
        "SCHED_FIFO 50 (--fifo-dispatch): wakeups of the workers bypass the fair wakeup path"
    } else {
        "fair class (SCHED_OTHER, root cgroup): wakeups of the workers take the fair wakeup path"
    }
}

/// The console-silence limit of a boot, seconds. rdhashd's guest prints one line per run, and
/// under its load the kernel console has been seen to fall silent for a whole heavy density
/// (lines and kernel messages appear only when the load stops, while the data port keeps
/// receiving records), so its boots are limited by time only: the silence limit is raised to
/// the boot's estimate plus 2 minutes. Pure.
pub fn silence_limit(silence_s: u64, workload: Workload, estimate_s: f64) -> u64 {
    match workload {
        Workload::ZipfOpen => silence_s,
        Workload::Rdhashd | Workload::Knative => silence_s.max((estimate_s + 120.0).ceil() as u64),
    }
}

/// How the report names rdhashd's load generator.
/// What the report says about knative's load generator, from the plan a guest ran.
pub(super) fn knative_text(kn: &KnPlan) -> String {
    let size = if kn.work_sigma > 0.0 {
        format!(
            "lognormal around {} ms of CPU (σ = {}, at most 50× the mean)",
            kn.work_ms, kn.work_sigma
        )
    } else {
        format!("{} ms of CPU", kn.work_ms)
    };
    let threads = match kn.intra_op {
        0 | 1 => "on one thread".to_string(),
        k => format!("split over {k} threads and joined"),
    };
    format!(
        "knative: closed-loop users (threads of the controller, root cgroup, fair class), think time uniform {}–{} s, a uniformly chosen pod of {} (each a cgroup with a container child), each request {size} {threads}",
        kn.think_min_ms / 1e3,
        kn.think_max_ms / 1e3,
        kn.pods,
    )
}

pub(super) const RD_CONTROLLER: &str = "rdhashd: controller in the fair class (SCHED_OTHER, root cgroup) sets per-second in-flight targets; one thread per in-flight request in each function's cgroup";

pub(super) fn host_cpu() -> String {
    fs_err::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// The host's CPU time so far (`/proc/stat`, parsed as the guest side parses it).
pub(super) fn host_cpu_times() -> Option<ProcStat> {
    Some(ProcStat::parse(&fs_err::read_to_string("/proc/stat").ok()?))
}

/// Percent of the host's CPU time between two snapshots that its hypervisor took (steal):
/// what a VM host lends to its neighbours, which an emulated guest's clock does not see.
/// Pure.
pub(super) fn steal_pct(before: Option<ProcStat>, after: Option<ProcStat>) -> Option<f64> {
    let (a, b) = (before?, after?);
    let total = b.total().saturating_sub(a.total());
    (total > 0).then(|| b.steal.saturating_sub(a.steal) as f64 * 100.0 / total as f64)
}

pub(super) fn loadavg() -> String {
    fs_err::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Builds the static benchmark binary (like the guest runner: +crt-static).
pub(super) fn build_bench(paths: &Paths) -> Result<PathBuf> {
    Ok(crate::image::guest::build_static(paths, "lags-bench")?.join("lags-bench"))
}

/// Where `--rd-trace`'s files are in the guest.
const GUEST_TRACES: &str = "/traces";

/// The `*.csv` files of a `--rd-trace` directory, in name order; an error when there are
/// none or (on the host, where the path goes into an `lb.` parameter) the path has spaces.
pub(super) fn trace_files(dir: &Path, host: bool) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs_err::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "csv"))
        .collect();
    if v.is_empty() {
        bail!("--rd-trace {}: no *.csv files", dir.display());
    }
    if host && dir.display().to_string().contains(char::is_whitespace) {
        bail!(
            "--rd-trace {}: the path must not contain spaces",
            dir.display()
        );
    }
    v.sort();
    Ok(v)
}

/// The benchmark's own initramfs: busybox, lags-bench, perf, stress-ng (+ --with), and the
/// `--rd-trace` files under [`GUEST_TRACES`].
fn make_bench_initramfs(
    bench: &Path,
    programs: &[PathBuf],
    traces: &[PathBuf],
    out: &Path,
) -> Result<Vec<String>> {
    let mut fs = Initramfs::new();
    fs.busybox(Path::new("/bin/busybox"))?;
    fs.host_file("/bin/lags-bench", bench)?;
    if !traces.is_empty() {
        fs.dir(GUEST_TRACES);
    }
    for t in traces {
        let name = t
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        fs.host_file(&format!("{GUEST_TRACES}/{name}"), t)?;
    }
    let mut missing = Vec::new();
    for p in programs {
        if p.is_absolute() && !p.exists() {
            missing.push(format!(
                "{} not on the host: its probe is skipped",
                p.display()
            ));
            continue;
        }
        fs.host_program(p)?;
    }
    fs.write_to(out)?;
    Ok(missing)
}

pub(super) fn progress(line: &str, verbose: bool) {
    if verbose {
        eprintln!("  | {line}");
        return;
    }
    let body = strip_timestamp(line).unwrap_or(line);
    if body.starts_with("lags-bench:")
        || body.starts_with("lags-init:")
        || body.contains("Kernel panic")
        || body.contains("WARNING:")
        || body.contains("BUG:")
    {
        eprintln!("  | {body}");
    }
}

impl BenchArgs {
    /// The report's environment fields every mode fills the same way; the modes add the
    /// testbed (accelerator, kernel, QEMU).
    pub(super) fn env_base(&self, settings: &Settings) -> Env {
        Env {
            command: format!(
                "cargo xtask bench {}",
                std::env::args().skip(2).collect::<Vec<_>>().join(" ")
            )
            .trim()
            .to_string(),
            cpus: self.machine.cpus,
            mem_mib: self.machine.mem,
            seed: self.seed,
            host_cpu: host_cpu(),
            host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            slo: self.slo_text(),
            dispatcher: self.dispatcher_text(),
            settings: Some(settings.clone()),
            ..Env::default()
        }
    }

    /// What the report calls the SLO of the workload.
    pub(super) fn slo_text(&self) -> String {
        match self.workload {
            Workload::Rdhashd => format!(
                "goodput: requests with latency (end of sleep to completion) < {} ms",
                self.rd_threshold_ms
            ),
            Workload::Knative => format!(
                "goodput: requests with latency (user's send to its wake-up by the response) < {} ms",
                self.rd_threshold_ms
            ),
            Workload::ZipfOpen => format!(
                "response ≤ max({}× service time, {} ms)",
                self.slo_mult, self.slo_floor_ms
            ),
        }
    }

    /// What the report says about the load generator before the guest has said what it ran.
    pub(super) fn dispatcher_text(&self) -> String {
        match self.workload {
            Workload::Rdhashd => RD_CONTROLLER.into(),
            Workload::Knative => knative_text(&self.effective_plan().kn),
            Workload::ZipfOpen => dispatcher_name(self.fifo_dispatch).into(),
        }
    }

    /// The guest's plan as far as the host can tell before a boot: the options with the
    /// `--param` extras on top, as the guest reads them.
    fn effective_plan(&self) -> Plan {
        let Ok((base, common)) = self.base_plan() else {
            return Plan::default();
        };
        let mut line = base.to_cmdline();
        line.extend(common);
        Plan::from_cmdline(&line.join(" ")).0
    }

    /// The plan fields that are not sweep settings, and the `--param` extras.
    fn base_plan(&self) -> Result<(Plan, Vec<String>)> {
        if let Some(d) = &self.rd_trace {
            trace_files(d, self.host)?;
        }
        let base = Plan {
            seed: self.seed,
            slo_mult: self.slo_mult,
            slo_floor_ms: self.slo_floor_ms,
            tuned_slice_ns: self.tuned_slice_ns,
            fifo_dispatch: self.fifo_dispatch,
            schedstats: !self.no_schedstats,
            rd: RdPlan {
                sleep_ms: self.rd_sleep_ms,
                burst_ms: self.rd_burst_ms,
                threshold_ms: self.rd_threshold_ms,
                trace_seed: self.seed,
                profile: self.sched_profile || self.host,
                ftrace: self.sched_ftrace,
                trace: match (&self.rd_trace, self.host) {
                    (None, _) => String::new(),
                    (Some(d), true) => d.display().to_string(),
                    (Some(_), false) => GUEST_TRACES.into(),
                },
                ..RdPlan::default()
            },
            kn: KnPlan {
                pods: self.kn_pods,
                intra_op: self.kn_k,
                work_ms: self.kn_work_ms,
                work_sigma: self.kn_work_sigma,
                threshold_ms: self.rd_threshold_ms,
                ..KnPlan::default()
            },
            ..Plan::default()
        };
        let mut common = Vec::new();
        for p in &self.params {
            if !p.starts_with("lb.") || !p.contains('=') {
                bail!("--param {p:?}: expected lb.KEY=VALUE");
            }
            common.push(p.clone());
        }
        Ok((base, common))
    }

    pub fn run(&self, paths: &Paths) -> Result<()> {
        if let Some(dir) = &self.report_only {
            if !self.merge.is_empty() {
                records::merge_dirs(&self.merge, dir)?;
            }
            let (env, recs) = load_dir(dir)?;
            let ok = report::write(dir, env, &recs, self.slo_target)?;
            return ok
                .then_some(())
                .ok_or_else(|| failure(Exit::TestsFailed, "incomplete results"));
        }
        if self.host {
            return host::run(self, paths);
        }
        let settings = Settings::from_args(self)?;
        if settings.reps < 3 {
            eprintln!("[bench] WARNING: fewer than 3 repetitions: the spread is not meaningful");
        }
        let profile = self.profile.profile();
        let kernel = build::bzimage(paths, profile);
        if !kernel.is_file() {
            bail!(
                "{} missing: run `cargo xtask build-kernel --profile {}`",
                kernel.display(),
                profile.name()
            );
        }
        if self.sched_ftrace {
            let config = paths.build(profile).join(".config");
            let text = fs_err::read_to_string(&config).unwrap_or_default();
            if !function_profiler(&text) {
                bail!(
                    "--sched-ftrace: {} has no CONFIG_FUNCTION_PROFILER with \
                     CONFIG_FUNCTION_GRAPH_TRACER: use `--profile ftrace` (build it with \
                     `cargo xtask build-kernel --profile ftrace`)",
                    config.display()
                );
            }
        }
        if let Some(b) = &self.baseline_kernel {
            if !b.is_file() {
                bail!("--baseline-kernel {} does not exist", b.display());
            }
        }
        let dir = paths.work.join("bench").join(util::timestamp());
        util::create_dir(&dir)?;
        eprintln!("[bench] building lags-bench (static) ...");
        let bench = build_bench(paths)?;
        let mut programs: Vec<PathBuf> = vec!["/usr/bin/perf".into(), "/usr/bin/stress-ng".into()];
        programs.extend(self.with.iter().cloned());
        let initrd = dir.join("initramfs.cpio");
        let traces = match &self.rd_trace {
            Some(d) => trace_files(d, false)?,
            None => Vec::new(),
        };
        for w in make_bench_initramfs(&bench, &programs, &traces, &initrd)? {
            eprintln!("[bench] WARNING: {w}");
        }
        let (base, common) = self.base_plan()?;
        let max_boot = if self.single_boot {
            f64::INFINITY
        } else {
            1200.0
        };
        let boots = plan_boots(
            &settings,
            &kernel,
            self.baseline_kernel.as_deref(),
            &base,
            &common,
            max_boot,
        );
        let mut spec = VmSpec {
            kernel: kernel.clone(),
            initrd: initrd.clone(),
            extra_cmdline: vec![],
            cpus: self.machine.cpus,
            mem_mib: self.machine.mem,
            accel: Accel::Tcg,
            data_out: None,
        };
        let (accel, why) =
            vm::apply_accel(self.machine.accel, &mut spec, &paths.kvm_probe(), "bench")?;
        let files = crate::patch::series(&paths.patches())?;
        let mut env = Env {
            accel: accel.name().into(),
            accel_reason: why,
            kernel_release: crate::fetch::makefile_version(&paths.src()).unwrap_or_default(),
            series_hash: crate::patch::series_hash(&files).unwrap_or_default(),
            config_hash: fs_err::read(paths.build(profile).join(".config"))
                .map(|b| Fnv::default().update(&b).hex())
                .unwrap_or_default(),
            qemu: util::tool_version(vm::qemu_binary(), &["--version"])
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            ..self.env_base(&settings)
        };
        let total: f64 = boots.iter().map(|b| b.estimate_s).sum();
        eprintln!(
            "[bench] {} boot(s), estimated {:.0} min of guest time; results in {}",
            boots.len(),
            total / 60.0,
            dir.display()
        );
        let mut recs = Records::default();
        let mut verdicts = Vec::new();
        for b in &boots {
            spec.kernel = b.kernel.clone();
            let mut cmdline = vec!["rdinit=/bin/lags-bench".to_string()];
            cmdline.extend(b.params.iter().cloned());
            spec.extra_cmdline = cmdline.clone();
            let data = dir.join(format!("{}.data.ndjson", b.name));
            let _ = fs_err::remove_file(&data);
            spec.data_out = Some(data.clone());
            let hard =
                Duration::from_secs(self.timeout.unwrap_or((b.estimate_s * 2.0 + 120.0) as u64));
            let log = dir.join(format!("{}.console.log", b.name));
            eprintln!(
                "[bench] boot {}: {} vCPUs, {}, estimate {:.0}s, limit {}s",
                b.name,
                spec.cpus,
                accel.name(),
                b.estimate_s,
                hard.as_secs()
            );
            let before = loadavg();
            let cpu0 = host_cpu_times();
            let run = vm::run_vm(
                &spec,
                &log,
                Limits {
                    hard,
                    silence: Duration::from_secs(silence_limit(
                        self.silence,
                        self.workload,
                        b.estimate_s,
                    )),
                },
                |l| progress(l, self.verbose),
            )?;
            run.ensure_qemu_ran()?;
            let guest_status = recs.add_file(&b.name, &data);
            let status =
                guest_status.map_or_else(|| "no end record".into(), |s| s.as_str().to_string());
            let (v, message) = boot_verdict(&run.console, run.ending, guest_status);
            verdicts.push(v);
            let verdict = verdict_word(v);
            eprintln!(
                "[bench] boot {}: {verdict} ({:.0}s) {message}",
                b.name,
                run.elapsed.as_secs_f64()
            );
            env.boots.push(BootInfo {
                name: b.name.clone(),
                kernel: b.kernel.display().to_string(),
                params: b.params.clone(),
                elapsed_s: run.elapsed.as_secs_f64(),
                verdict: verdict.into(),
                message,
                host_loadavg_before: before,
                host_loadavg_after: loadavg(),
                host_steal_pct: steal_pct(cpu0, host_cpu_times()),
                guest_status: status,
            });
            util::write(&dir.join("env.json"), serde_json::to_string_pretty(&env)?)?;
        }
        let _ = fs_err::remove_file(&initrd);
        finish(paths, &dir, &env, &recs, self.slo_target, verdicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect --sched-ftrace to accept only a kernel with the profiler and the graph tracer
    // (the time per call needs the latter).
    #[test]
    fn sched_ftrace_needs_the_function_profiler() {
        let ftrace = "CONFIG_FUNCTION_PROFILER=y\nCONFIG_FUNCTION_GRAPH_TRACER=y\n";
        assert!(function_profiler(ftrace));
        assert!(!function_profiler("CONFIG_FUNCTION_PROFILER=y\n"));
        assert!(!function_profiler(
            "# CONFIG_FUNCTION_PROFILER is not set\nCONFIG_FUNCTION_GRAPH_TRACER=y\n"
        ));
        assert!(!function_profiler(""));
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/ftrace.config"),
        )
        .unwrap();
        assert!(function_profiler(&shipped), "configs/ftrace.config");
    }

    // Expect the steal share from the `cpu` line's 8th field over the sum of the first 8
    // (guest time is already in user), and nothing without two snapshots that differ.
    #[test]
    fn host_steal_share() {
        let a = Some(ProcStat::parse(
            "cpu  100 0 50 800 0 0 0 50 0 0\ncpu0 1 2 3 4 5 6 7 8\n",
        ));
        let b = Some(ProcStat::parse("cpu  200 0 100 1400 0 0 0 300 0 0\n"));
        assert_eq!(
            a.map(|a| (a.user, a.system, a.idle, a.steal)),
            Some((100, 50, 800, 50))
        );
        assert_eq!(steal_pct(a, b), Some(25.0));
        assert_eq!(steal_pct(a, a), None);
        assert_eq!(steal_pct(a, None), None);
    }

    // Expect zipf-open's silence limit unchanged and rdhashd's raised to the boot estimate
    // plus 2 minutes, never lowered.
    #[test]
    fn rdhashd_silence_limit() {
        assert_eq!(silence_limit(180, Workload::ZipfOpen, 900.0), 180);
        assert_eq!(silence_limit(180, Workload::Rdhashd, 900.0), 1020);
        assert_eq!(silence_limit(180, Workload::Rdhashd, 30.5), 180);
    }

    // Expect a benchmark boot to get qemu-test's verdict for the same console: a panic
    // before the runner starts is a boot failure (exit 11), a panic after it a kernel
    // fault (10); a clean end with a bad guest status means errors (1).
    #[test]
    fn bench_boot_verdicts() {
        let boot = "[    0.0] Linux version 6.12.117\n";
        let started = format!("{boot}[    1.0] lags-init: start (lags-bench)\n");
        let done = format!("{started}[    9.0] lags-init: done status=ok errors=0\n");
        let panic = "[    2.0] Kernel panic - not syncing: Attempted to kill init!\n";
        let cases = [
            (
                format!("{boot}{panic}"),
                Ending::Exited,
                None,
                Verdict::BootFailure,
            ),
            (
                format!("{started}{panic}"),
                Ending::Exited,
                None,
                Verdict::KernelFault,
            ),
            (started.clone(), Ending::Silent, None, Verdict::Timeout),
            (
                done.clone(),
                Ending::Exited,
                Some(Status::Ok),
                Verdict::Passed,
            ),
            (
                done.clone(),
                Ending::Exited,
                Some(Status::Errors),
                Verdict::TestsFailed,
            ),
            (done.clone(), Ending::Exited, None, Verdict::TestsFailed),
        ];
        for (console, ending, status, want) in cases {
            let (v, msg) = boot_verdict(&console, ending, status);
            assert_eq!(v, want, "{console:?}: {msg}");
            let (q, _, _, _) = verdict::classify(&console, ending);
            if want != Verdict::Passed && want != Verdict::TestsFailed {
                assert_eq!(v, q, "qemu-test disagrees on {console:?}");
            }
        }
        assert_eq!(Verdict::BootFailure.exit() as i32, 11);
        // The worst boot decides whatever the order of the boots.
        let a = [Verdict::KernelFault, Verdict::BootFailure, Verdict::Passed];
        let fwd = a.iter().copied().fold(Verdict::Passed, Verdict::max);
        let rev = a.iter().rev().copied().fold(Verdict::Passed, Verdict::max);
        assert_eq!(fwd, rev);
    }
}
