//! `cargo xtask bench`: the LAGS capacity benchmark.
//!
//! Boots the kernel with the in-guest workload generator (`tests/bench`, `lags-bench`) as
//! PID 1, which runs a dense serverless workload under several scheduler configurations,
//! interleaved in the same boot, and writes one JSON record per run to the guest's second
//! serial port. This module plans the boots, runs them, and turns the records into
//! `work/bench/<timestamp>/`: `results.json` (every raw record, the environment and the
//! aggregates), `summary.md` and PNG plots. See `Documentation/benchmarks.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use lags_proto::bench::{DoneRecord, OverheadRecord, Plan, Record, RunRecord, Status};
use serde::Serialize;
use serde_json::{json, Value};

use crate::build::{self, ProfileArgs};
use crate::console;
use crate::initramfs::Initramfs;
use crate::qemu::{self, Accel, Ending, Limits, VmSpec};
use crate::util::{self, failure, Exit, Fnv, Paths};
use crate::vmtest::{self, Verdict};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Small preset: a few minutes under TCG (50 functions, 3 loads, 2 densities, short runs).
    #[arg(long)]
    pub quick: bool,
    /// Accelerator; default: KVM if a probe boot works, else TCG.
    #[arg(long, value_enum, env = "LAGS_ACCEL")]
    pub accel: Option<Accel>,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    pub mem: u32,
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
    /// Configurations: stock, lags, tuned.
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
    /// Run everything in one boot even if it takes longer than ~20 minutes.
    #[arg(long)]
    pub single_boot: bool,
    /// Also boot this kernel (e.g. unpatched, same base) for the overhead probes only.
    #[arg(long, value_name = "BZIMAGE")]
    pub baseline_kernel: Option<PathBuf>,
    /// Extra host programs to carry into the guest (perf and stress-ng always are).
    #[arg(long = "with", value_name = "PROGRAM")]
    pub with: Vec<PathBuf>,
    /// Extra guest parameters, `lb.key=value` (see tests/bench/src/lib.rs, `Plan`).
    #[arg(long = "param", value_name = "lb.KEY=VALUE")]
    pub params: Vec<String>,
    /// Hard time limit per boot, seconds (default: twice the estimate plus 2 minutes).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Fail as a hang when the console is silent this long, seconds.
    #[arg(long, default_value_t = 180)]
    pub silence: u64,
    /// Only re-render the report of an existing results directory.
    #[arg(long, value_name = "DIR")]
    pub report_only: Option<PathBuf>,
    /// Echo the whole guest console.
    #[arg(long, short)]
    pub verbose: bool,
}

// ---------------------------------------------------------------------------------------
// Plan

/// The sweep settings after the preset and the overrides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub funcs: usize,
    pub loads: Vec<f64>,
    pub density: Vec<usize>,
    pub density_load: f64,
    pub reps: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub configs: Vec<String>,
    pub parts: Vec<String>,
    pub mean_ms: f64,
    pub ov_reps: usize,
    pub ov_pipe_loops: u64,
    pub ov_switch_s: u32,
}

impl Settings {
    pub fn preset(quick: bool) -> Settings {
        if quick {
            Settings {
                funcs: 50,
                loads: vec![0.5, 0.7, 0.9],
                density: vec![25, 100],
                density_load: 0.7,
                reps: 3,
                duration_s: 3.0,
                warmup_s: 1.0,
                configs: vec!["stock".into(), "lags".into(), "tuned".into()],
                parts: vec!["load".into(), "density".into(), "overhead".into()],
                mean_ms: 5.0,
                ov_reps: 3,
                ov_pipe_loops: 10_000,
                ov_switch_s: 2,
            }
        } else {
            Settings {
                funcs: 100,
                loads: vec![0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
                density: vec![25, 100, 400],
                density_load: 0.7,
                reps: 3,
                duration_s: 8.0,
                warmup_s: 1.0,
                configs: vec!["stock".into(), "lags".into(), "tuned".into()],
                parts: vec!["load".into(), "density".into(), "overhead".into()],
                mean_ms: 5.0,
                ov_reps: 5,
                ov_pipe_loops: 20_000,
                ov_switch_s: 3,
            }
        }
    }

    fn from_args(a: &BenchArgs) -> Result<Settings> {
        let mut s = Settings::preset(a.quick);
        if let Some(v) = a.funcs {
            s.funcs = v;
        }
        if let Some(v) = &a.loads {
            s.loads = v.clone();
        }
        if let Some(v) = &a.density {
            s.density = v.clone();
        }
        if let Some(v) = a.density_load {
            s.density_load = v;
        }
        if let Some(v) = a.reps {
            s.reps = v;
        }
        if let Some(v) = a.duration {
            s.duration_s = v;
        }
        if let Some(v) = &a.configs {
            s.configs = v.clone();
        }
        if let Some(v) = &a.parts {
            s.parts = v.clone();
        }
        if let Some(v) = a.mean_ms {
            s.mean_ms = v;
        }
        for c in &s.configs {
            if !["stock", "lags", "tuned"].contains(&c.as_str()) {
                bail!("unknown configuration {c:?}: use stock, lags, tuned");
            }
        }
        for p in &s.parts {
            if !["load", "density", "overhead"].contains(&p.as_str()) {
                bail!("unknown part {p:?}: use load, density, overhead");
            }
        }
        if s.loads.iter().any(|&l| !(0.01..=1.5).contains(&l)) {
            bail!("loads must be fractions of the vCPUs (0.01..1.5)");
        }
        s.loads.sort_by(f64::total_cmp);
        Ok(s)
    }

    /// Estimated guest seconds of one run.
    fn run_s(&self) -> f64 {
        self.warmup_s + self.duration_s + 2.0
    }

    fn overhead_s(&self) -> f64 {
        // Two modes; pipe at ~100 us/op under TCG, messaging ~5 s, switch + start-up.
        self.ov_reps as f64
            * 2.0
            * (self.ov_pipe_loops as f64 * 100e-6 + 5.0 + self.ov_switch_s as f64 + 2.0)
    }
}

/// One boot of the benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootPlan {
    pub name: String,
    pub kernel: PathBuf,
    /// `lb.*` guest parameters.
    pub params: Vec<String>,
    pub estimate_s: f64,
}

/// Splits the work into boots of at most `max_boot_s` (estimated), configurations always
/// interleaved within a boot. `base` gives the guest plan's fields that are not sweep
/// settings (seed, SLO, tuned slice, workload shape); `common` are extra parameters for
/// every boot (`--param`), after the plan so they win. Pure.
pub fn plan_boots(
    s: &Settings,
    kernel: &Path,
    baseline: Option<&Path>,
    base: &Plan,
    common: &[String],
    max_boot_s: f64,
) -> Vec<BootPlan> {
    let has = |p: &str| s.parts.iter().any(|x| x == p);
    let params = |parts: &str, loads: &[f64]| -> Vec<String> {
        let plan = Plan {
            parts: parts.split(',').map(str::to_string).collect(),
            configs: s.configs.clone(),
            funcs: s.funcs,
            loads: loads.to_vec(),
            density: s.density.clone(),
            density_load: s.density_load,
            reps: s.reps,
            duration_s: s.duration_s,
            warmup_s: s.warmup_s,
            mean_ms: s.mean_ms,
            ov_reps: s.ov_reps,
            ov_pipe_loops: s.ov_pipe_loops,
            ov_switch_s: s.ov_switch_s,
            ..base.clone()
        };
        let mut v = plan.to_cmdline();
        v.extend(common.iter().cloned());
        v
    };
    let nconf = s.configs.len() as f64;
    let load_s = |n: usize| n as f64 * s.reps as f64 * nconf * s.run_s();
    let density_s = s.density.len() as f64 * s.reps as f64 * nconf * s.run_s();
    let ov_s = s.overhead_s();
    let total = if has("load") {
        load_s(s.loads.len())
    } else {
        0.0
    } + if has("density") { density_s } else { 0.0 }
        + if has("overhead") { ov_s } else { 0.0 };
    let mut boots = Vec::new();
    if total <= max_boot_s {
        let parts: Vec<&str> = ["overhead", "load", "density"]
            .into_iter()
            .filter(|p| has(p))
            .collect();
        if !parts.is_empty() {
            boots.push(BootPlan {
                name: "all".into(),
                kernel: kernel.to_path_buf(),
                params: params(&parts.join(","), &s.loads),
                estimate_s: total,
            });
        }
    } else {
        if has("load") && !s.loads.is_empty() {
            let per = ((max_boot_s / load_s(1)).floor() as usize).max(1);
            let nboots = s.loads.len().div_ceil(per);
            // Spread the loads round-robin, so every boot covers the whole range.
            for b in 0..nboots {
                let loads: Vec<f64> = s.loads.iter().skip(b).step_by(nboots).copied().collect();
                let name = if nboots == 1 {
                    "load".to_string()
                } else {
                    format!("load-{}", b + 1)
                };
                boots.push(BootPlan {
                    name,
                    kernel: kernel.to_path_buf(),
                    estimate_s: load_s(loads.len()),
                    params: params("load", &loads),
                });
            }
        }
        let mut rest = Vec::new();
        let mut est = 0.0;
        if has("overhead") {
            rest.push("overhead");
            est += ov_s;
        }
        if has("density") {
            rest.push("density");
            est += density_s;
        }
        if !rest.is_empty() {
            boots.push(BootPlan {
                name: rest.join("+"),
                kernel: kernel.to_path_buf(),
                params: params(&rest.join(","), &s.loads),
                estimate_s: est,
            });
        }
    }
    if let Some(b) = baseline {
        boots.push(BootPlan {
            name: "baseline-kernel".into(),
            kernel: b.to_path_buf(),
            params: params("overhead", &s.loads),
            estimate_s: ov_s / 2.0,
        });
    }
    boots
}

// ---------------------------------------------------------------------------------------
// Records from the guest

pub use lags_proto::bench::{Hist, LagsCounters, Summary};

/// Bins per decade of the guest's histograms (from 1 us).
const BINS_PER_DECADE: f64 = lags_proto::bench::BINS_PER_DECADE as f64;

/// What the host does with a guest histogram.
pub trait HistExt {
    /// Empirical CDF: (upper edge of the bin in ms, cumulative fraction).
    fn cdf(&self) -> Vec<(f64, f64)>;
    /// Adds the counts of `other`.
    fn merge(&mut self, other: &Hist);
}

impl HistExt for Hist {
    fn cdf(&self) -> Vec<(f64, f64)> {
        let total: u64 = self.bins.iter().map(|b| b.1).sum();
        let mut acc = 0;
        self.bins
            .iter()
            .map(|&(b, n)| {
                acc += n;
                (
                    10f64.powf((b as f64 + 1.0) / BINS_PER_DECADE) / 1e3,
                    acc as f64 / total.max(1) as f64,
                )
            })
            .collect()
    }

    fn merge(&mut self, other: &Hist) {
        let mut m: BTreeMap<u32, u64> = self.bins.iter().copied().collect();
        for &(b, n) in &other.bins {
            *m.entry(b).or_default() += n;
        }
        self.bins = m.into_iter().collect();
    }
}

/// One run (configuration x point x repetition): the fields of the guest's
/// [`RunRecord`] the report uses, tagged with the boot.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Run {
    pub boot: String,
    pub sweep: String,
    pub config: String,
    pub funcs: usize,
    pub load: f64,
    pub rep: usize,
    pub offered_load: f64,
    pub achieved_load: f64,
    pub throughput_rps: f64,
    pub cpu_util: f64,
    pub cpu_kernel: f64,
    pub ctxt_per_req: Option<f64>,
    pub schedule_per_req: Option<f64>,
    pub run_delay_ms_per_req: Option<f64>,
    pub worker_cs_per_req: Option<f64>,
    pub worker_wait_ms_per_req: Option<f64>,
    pub work_inflation: Option<f64>,
    pub dispatch_late_mean_us: f64,
    pub dropped: usize,
    pub all: Summary,
    pub light: Summary,
    pub heavy: Summary,
    pub hist_all: Hist,
    pub hist_light: Hist,
    pub lags: Option<LagsCounters>,
}

/// One overhead measurement: the guest's [`OverheadRecord`] tagged with the boot.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OverheadRec {
    pub boot: String,
    pub probe: String,
    pub mode: String,
    pub rep: usize,
    pub value: Option<f64>,
    pub unit: String,
    pub higher_is_better: bool,
    pub error: Option<String>,
}

impl Run {
    fn from_record(boot: &str, r: RunRecord) -> Run {
        Run {
            boot: boot.to_string(),
            sweep: r.sweep,
            config: r.config,
            funcs: r.funcs,
            load: r.load,
            rep: r.rep,
            offered_load: r.offered_load,
            achieved_load: r.achieved_load,
            throughput_rps: r.throughput_rps,
            cpu_util: r.cpu_util,
            cpu_kernel: r.cpu_kernel,
            ctxt_per_req: r.ctxt_per_req,
            schedule_per_req: r.schedule_per_req,
            run_delay_ms_per_req: r.run_delay_ms_per_req,
            worker_cs_per_req: r.worker_cs_per_req,
            worker_wait_ms_per_req: r.worker_wait_ms_per_req,
            work_inflation: r.work_inflation,
            dispatch_late_mean_us: r.dispatch_late_mean_us,
            dropped: r.dropped,
            all: r.all,
            light: r.light,
            heavy: r.heavy,
            hist_all: r.hist_all,
            hist_light: r.hist_light,
            lags: r.lags,
        }
    }
}

impl OverheadRec {
    fn from_record(boot: &str, r: OverheadRecord) -> OverheadRec {
        OverheadRec {
            boot: boot.to_string(),
            probe: r.probe,
            mode: r.mode,
            rep: r.rep,
            value: r.value,
            unit: r.unit,
            higher_is_better: r.higher_is_better,
            error: r.error,
        }
    }
}

/// Everything the guests wrote, tagged with the boot.
#[derive(Debug, Default)]
pub struct Records {
    /// Every record as written, with `boot` added.
    pub raw: Vec<Value>,
    pub runs: Vec<Run>,
    pub overhead: Vec<OverheadRec>,
    /// The guests' environment records, with `boot` added.
    pub env: Vec<Value>,
    /// The end record of each boot.
    pub done: Vec<(String, DoneRecord)>,
    /// Lines that are JSON but not a record of the contract (`boot: error`).
    pub invalid: Vec<String>,
}

impl Records {
    /// Parses one boot's data channel: one record per line, as `lags_proto::bench::Record`
    /// defines it. Lines that are not JSON (the serial port's start-up noise) are ignored;
    /// JSON that is not a valid record is listed in `invalid` and not used.
    pub fn add(&mut self, boot: &str, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            let Ok(mut v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let rec = match serde_json::from_str::<Record>(line) {
                Ok(r) => r,
                Err(e) => {
                    self.invalid.push(format!("{boot}: {e}"));
                    continue;
                }
            };
            if let Some(obj) = v.as_object_mut() {
                obj.insert("boot".into(), Value::String(boot.to_string()));
            }
            match rec {
                Record::Run(r) => self.runs.push(Run::from_record(boot, *r)),
                Record::Overhead(r) => self.overhead.push(OverheadRec::from_record(boot, r)),
                Record::Env(_) => self.env.push(v.clone()),
                Record::Done(d) => self.done.push((boot.to_string(), d)),
                Record::Functions(_) => {}
            }
            self.raw.push(v);
        }
    }

    /// The guest's status of `boot`, from its end record.
    pub fn status_of(&self, boot: &str) -> Option<Status> {
        self.done
            .iter()
            .rev()
            .find(|(b, _)| b == boot)
            .map(|(_, d)| d.status)
    }
}

// ---------------------------------------------------------------------------------------
// Statistics

/// Median with the spread (min, max) of the repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// Median and range of the values present; a missing value (a percentile that fell on a
/// request that never completed) counts as +inf, so it can make the median infinite.
pub fn spread(values: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
    let mut v: Vec<f64> = values
        .into_iter()
        .map(|x| x.unwrap_or(f64::INFINITY))
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// Capacity: the highest offered load at which SLO attainment stays at or above target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "load", rename_all = "snake_case")]
pub enum Capacity {
    /// Interpolated between the last passing and the first failing load.
    Exact(f64),
    /// Every measured load passed: capacity is at least the highest.
    AtLeast(f64),
    /// Even the lowest load failed: capacity is below it.
    Below(f64),
    NoData,
}

impl Capacity {
    pub fn load(self) -> Option<f64> {
        match self {
            Capacity::Exact(x) | Capacity::AtLeast(x) | Capacity::Below(x) => Some(x),
            Capacity::NoData => None,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Capacity::Exact(x) => format!("{x:.3}"),
            Capacity::AtLeast(x) => format!("≥ {x:.3}"),
            Capacity::Below(x) => format!("< {x:.3}"),
            Capacity::NoData => "n/a".into(),
        }
    }
}

/// Capacity from (load, attainment) points: walk up from the lowest load and interpolate
/// linearly at the first crossing below `target`. Pure.
pub fn capacity(points: &[(f64, f64)], target: f64) -> Capacity {
    let mut p = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(first) = p.first() else {
        return Capacity::NoData;
    };
    if first.1 < target {
        return Capacity::Below(first.0);
    }
    for w in p.windows(2) {
        let ((l0, a0), (l1, a1)) = (w[0], w[1]);
        if a1 < target {
            let x = l0 + (a0 - target) / (a0 - a1) * (l1 - l0);
            return Capacity::Exact(x);
        }
    }
    Capacity::AtLeast(p[p.len() - 1].0)
}

/// Ratio of two capacities with its qualifier (`=`, `≥`, `≤` or unknown).
pub fn capacity_ratio(num: Capacity, den: Capacity) -> (Option<f64>, &'static str) {
    use Capacity::*;
    match (num, den) {
        (Exact(a), Exact(b)) => (Some(a / b), "="),
        (AtLeast(a), Exact(b)) | (AtLeast(a), Below(b)) | (Exact(a), Below(b)) => {
            (Some(a / b), "≥")
        }
        (Exact(a), AtLeast(b)) | (Below(a), AtLeast(b)) | (Below(a), Exact(b)) => {
            (Some(a / b), "≤")
        }
        _ => (None, "?"),
    }
}

/// Fewer machines for the same load with capacity ratio r: 1 - 1/r.
pub fn node_saving(r: f64) -> f64 {
    1.0 - 1.0 / r
}

/// Linear interpolation of y(x) through sorted points; clamps outside the range. Pure.
pub fn interp(points: &[(f64, f64)], x: f64) -> Option<f64> {
    let mut p: Vec<(f64, f64)> = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first = p.first()?;
    if x <= first.0 {
        return Some(first.1);
    }
    for w in p.windows(2) {
        if x <= w[1].0 {
            let t = (x - w[0].0) / (w[1].0 - w[0].0);
            if w[0].1.is_infinite() || w[1].1.is_infinite() {
                return Some(if t < 0.5 { w[0].1 } else { w[1].1 });
            }
            return Some(w[0].1 + t * (w[1].1 - w[0].1));
        }
    }
    Some(p[p.len() - 1].1)
}

// ---------------------------------------------------------------------------------------
// Aggregation

/// One (sweep, configuration, functions, load) point over its repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub sweep: String,
    pub config: String,
    pub funcs: usize,
    pub load: f64,
    pub reps: usize,
    pub slo: Option<Spread>,
    pub slo_light: Option<Spread>,
    pub slo_heavy: Option<Spread>,
    pub p50: Option<Spread>,
    pub p99: Option<Spread>,
    pub p999: Option<Spread>,
    pub light_p50: Option<Spread>,
    pub light_p99: Option<Spread>,
    pub heavy_p99: Option<Spread>,
    pub offered: Option<Spread>,
    pub achieved: Option<Spread>,
    pub throughput: Option<Spread>,
    pub util: Option<Spread>,
    pub kernel: Option<Spread>,
    pub ctx_per_req: Option<Spread>,
    pub worker_cs_per_req: Option<Spread>,
    pub schedule_per_req: Option<Spread>,
    pub run_delay_per_req: Option<Spread>,
    pub worker_wait_per_req: Option<Spread>,
    pub inflation: Option<Spread>,
    pub lags_starved: Option<Spread>,
}

pub fn points(runs: &[Run]) -> Vec<Point> {
    let mut groups: BTreeMap<(String, String, usize, i64), Vec<&Run>> = BTreeMap::new();
    for r in runs {
        let key = (
            r.sweep.clone(),
            r.config.clone(),
            r.funcs,
            (r.load * 1000.0).round() as i64,
        );
        groups.entry(key).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((sweep, config, funcs, load), rs)| {
            let sp = |f: &dyn Fn(&Run) -> Option<f64>| spread(rs.iter().map(|r| f(r)));
            Point {
                sweep,
                config,
                funcs,
                load: load as f64 / 1000.0,
                reps: rs.len(),
                slo: sp(&|r| r.all.slo_attainment),
                slo_light: sp(&|r| r.light.slo_attainment),
                slo_heavy: sp(&|r| r.heavy.slo_attainment),
                p50: sp(&|r| r.all.p50_ms),
                p99: sp(&|r| r.all.p99_ms),
                p999: sp(&|r| r.all.p999_ms),
                light_p50: sp(&|r| r.light.p50_ms),
                light_p99: sp(&|r| r.light.p99_ms),
                heavy_p99: sp(&|r| r.heavy.p99_ms),
                offered: sp(&|r| Some(r.offered_load)),
                achieved: sp(&|r| Some(r.achieved_load)),
                throughput: sp(&|r| Some(r.throughput_rps)),
                util: sp(&|r| Some(r.cpu_util)),
                kernel: sp(&|r| Some(r.cpu_kernel)),
                ctx_per_req: sp(&|r| r.ctxt_per_req),
                worker_cs_per_req: sp(&|r| r.worker_cs_per_req),
                schedule_per_req: sp(&|r| r.schedule_per_req),
                run_delay_per_req: sp(&|r| r.run_delay_ms_per_req),
                worker_wait_per_req: sp(&|r| r.worker_wait_ms_per_req),
                inflation: sp(&|r| r.work_inflation),
                lags_starved: if rs.iter().any(|r| r.lags.is_some()) {
                    sp(&|r| r.lags.as_ref().map(|l| l.starved_picks as f64))
                } else {
                    None
                },
            }
        })
        .collect()
}

/// Overhead of one probe: medians per mode and the change of "on" against "off".
#[derive(Debug, Clone, Serialize)]
pub struct OverheadRow {
    pub probe: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// mode -> spread ("off", "on-nogroups", "kernel" = baseline kernel).
    pub modes: BTreeMap<String, Spread>,
    /// Slowdown of on-nogroups against off, percent (positive = slower with LAGS on).
    pub on_vs_off_pct: Option<f64>,
    /// Slowdown of the LAGS kernel (off) against the baseline kernel, percent.
    pub off_vs_baseline_pct: Option<f64>,
    /// (max - min) / median of the "off" repetitions, percent: the noise floor.
    pub noise_pct: Option<f64>,
    pub errors: Vec<String>,
}

fn slowdown(x: f64, reference: f64, higher_is_better: bool) -> f64 {
    if higher_is_better {
        (reference - x) / reference * 100.0
    } else {
        (x - reference) / reference * 100.0
    }
}

pub fn overhead_rows(recs: &[OverheadRec]) -> Vec<OverheadRow> {
    let mut by: BTreeMap<String, Vec<&OverheadRec>> = BTreeMap::new();
    for r in recs {
        by.entry(r.probe.clone()).or_default().push(r);
    }
    by.into_iter()
        .map(|(probe, rs)| {
            let hib = rs.iter().any(|r| r.higher_is_better);
            let unit = rs
                .iter()
                .find(|r| !r.unit.is_empty())
                .map(|r| r.unit.clone())
                .unwrap_or_default();
            let mut modes = BTreeMap::new();
            let names: std::collections::BTreeSet<&str> =
                rs.iter().map(|r| r.mode.as_str()).collect();
            for m in names {
                let vals: Vec<f64> = rs
                    .iter()
                    .filter(|r| r.mode == m)
                    .filter_map(|r| r.value)
                    .collect();
                if let Some(s) = spread(vals.into_iter().map(Some)) {
                    modes.insert(m.to_string(), s);
                }
            }
            let off = modes.get("off").map(|s| s.median);
            let on = modes.get("on-nogroups").map(|s| s.median);
            let base = modes.get("kernel").map(|s| s.median);
            OverheadRow {
                on_vs_off_pct: off.zip(on).map(|(off, on)| slowdown(on, off, hib)),
                off_vs_baseline_pct: off.zip(base).map(|(off, b)| slowdown(off, b, hib)),
                noise_pct: modes.get("off").map(|s| (s.max - s.min) / s.median * 100.0),
                errors: rs.iter().filter_map(|r| r.error.clone()).collect(),
                probe,
                unit,
                higher_is_better: hib,
                modes,
            }
        })
        .collect()
}

/// The headline numbers and the targets of the issue.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    pub slo_target: f64,
    pub capacity: BTreeMap<String, Capacity>,
    pub ratio_lags_stock: Option<f64>,
    pub ratio_qualifier: String,
    pub ratio_tuned_stock: Option<f64>,
    pub node_saving: Option<f64>,
    /// The load at which light p99 and context switches are compared (stock capacity,
    /// clamped to the measured range).
    pub reference_load: Option<f64>,
    pub light_p99_at_ref: BTreeMap<String, f64>,
    pub ctx_per_req_at_ref: BTreeMap<String, f64>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub met: Option<bool>,
    pub detail: String,
}

fn med(s: &Option<Spread>) -> Option<f64> {
    s.map(|s| s.median)
}

pub fn headline(pts: &[Point], ov: &[OverheadRow], slo_target: f64) -> Headline {
    let load_pts: Vec<&Point> = pts.iter().filter(|p| p.sweep == "load").collect();
    let mut caps = BTreeMap::new();
    let configs: std::collections::BTreeSet<&str> =
        load_pts.iter().map(|p| p.config.as_str()).collect();
    for c in &configs {
        let xy: Vec<(f64, f64)> = load_pts
            .iter()
            .filter(|p| p.config == *c)
            .filter_map(|p| med(&p.slo).map(|a| (p.load, a)))
            .collect();
        caps.insert(c.to_string(), capacity(&xy, slo_target));
    }
    let cap = |c: &str| caps.get(c).copied().unwrap_or(Capacity::NoData);
    let (ratio, q) = capacity_ratio(cap("lags"), cap("stock"));
    let (ratio_t, _) = capacity_ratio(cap("tuned"), cap("stock"));
    let reference_load = cap("stock").load();
    let series = |c: &str, f: &dyn Fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        load_pts
            .iter()
            .filter(|p| p.config == c)
            .filter_map(|p| f(p).map(|v| (p.load, v)))
            .collect()
    };
    let mut light = BTreeMap::new();
    let mut ctx = BTreeMap::new();
    if let Some(x) = reference_load {
        for c in &configs {
            if let Some(v) = interp(&series(c, &|p| med(&p.light_p99)), x) {
                light.insert(c.to_string(), v);
            }
            if let Some(v) = interp(&series(c, &|p| med(&p.ctx_per_req)), x) {
                ctx.insert(c.to_string(), v);
            }
        }
    }
    let mut targets = Vec::new();
    targets.push(Target {
        name: "capacity ratio LAGS/stock ≥ 1.3".into(),
        met: ratio.map(|r| match q {
            "≥" | "=" => r >= 1.3,
            _ => false,
        }),
        detail: match ratio {
            Some(r) => format!(
                "{q} {r:.3} (LAGS {}, stock {})",
                cap("lags").describe(),
                cap("stock").describe()
            ),
            None => format!(
                "not determinable (LAGS {}, stock {})",
                cap("lags").describe(),
                cap("stock").describe()
            ),
        },
    });
    let lp = (light.get("stock"), light.get("lags"));
    targets.push(Target {
        name: "light-function p99 at the stock capacity point ≥ 2× lower with LAGS".into(),
        met: match lp {
            (Some(s), Some(l)) if s.is_finite() && l.is_finite() && *l > 0.0 => Some(s / l >= 2.0),
            _ => None,
        },
        detail: match lp {
            (Some(s), Some(l)) => format!(
                "stock {s:.2} ms vs LAGS {l:.2} ms (×{:.2}) at load {:.3}",
                s / l,
                reference_load.unwrap_or(f64::NAN)
            ),
            _ => "no data".into(),
        },
    });
    let dens: Vec<(usize, f64, f64)> = {
        let mut v = Vec::new();
        let fs: std::collections::BTreeSet<usize> = pts
            .iter()
            .filter(|p| p.sweep == "density")
            .map(|p| p.funcs)
            .collect();
        for f in fs {
            let get = |c: &str| {
                pts.iter()
                    .find(|p| p.sweep == "density" && p.funcs == f && p.config == c)
                    .and_then(|p| med(&p.ctx_per_req))
            };
            if let (Some(s), Some(l)) = (get("stock"), get("lags")) {
                v.push((f, s, l));
            }
        }
        v
    };
    let cp = (ctx.get("stock"), ctx.get("lags"));
    let mut detail = match cp {
        (Some(s), Some(l)) => format!(
            "load sweep at {:.3}: stock {s:.2}, LAGS {l:.2}",
            reference_load.unwrap_or(f64::NAN)
        ),
        _ => "load sweep: no data".into(),
    };
    for (f, s, l) in &dens {
        detail.push_str(&format!("; density F={f}: stock {s:.2}, LAGS {l:.2}"));
    }
    let mut verdicts: Vec<bool> = dens.iter().map(|(_, s, l)| l < s).collect();
    if let (Some(s), Some(l)) = cp {
        verdicts.push(l < s);
    }
    targets.push(Target {
        name: "fewer context switches per request with LAGS".into(),
        met: (!verdicts.is_empty()).then(|| verdicts.iter().all(|&b| b)),
        detail,
    });
    let ov_rows: Vec<&OverheadRow> = ov.iter().filter(|r| r.on_vs_off_pct.is_some()).collect();
    targets.push(Target {
        name: "overhead of LAGS on with no LAGS groups vs off within 1%".into(),
        met: (!ov_rows.is_empty()).then(|| {
            ov_rows
                .iter()
                .all(|r| r.on_vs_off_pct.is_some_and(|p| p.abs() <= 1.0))
        }),
        detail: ov_rows
            .iter()
            .map(|r| {
                format!(
                    "{}: {:+.2}% (noise {:.1}%)",
                    r.probe,
                    r.on_vs_off_pct.unwrap_or(f64::NAN),
                    r.noise_pct.unwrap_or(f64::NAN)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    });
    let base_rows: Vec<&OverheadRow> = ov
        .iter()
        .filter(|r| r.off_vs_baseline_pct.is_some())
        .collect();
    if !base_rows.is_empty() {
        targets.push(Target {
            name: "overhead of the LAGS kernel (flag off) vs the baseline kernel within 1% (cross-boot)".into(),
            met: Some(
                base_rows
                    .iter()
                    .all(|r| r.off_vs_baseline_pct.is_some_and(|p| p.abs() <= 1.0)),
            ),
            detail: base_rows
                .iter()
                .map(|r| format!("{}: {:+.2}%", r.probe, r.off_vs_baseline_pct.unwrap_or(f64::NAN)))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Headline {
        slo_target,
        ratio_lags_stock: ratio,
        ratio_qualifier: q.into(),
        ratio_tuned_stock: ratio_t,
        node_saving: ratio.filter(|_| q == "=" || q == "≥").map(node_saving),
        reference_load,
        light_p99_at_ref: light,
        ctx_per_req_at_ref: ctx,
        capacity: caps,
        targets,
    }
}

// ---------------------------------------------------------------------------------------
// Report

fn fmt_spread(s: &Option<Spread>, scale: f64, prec: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) => {
            let f = |x: f64| {
                if x.is_finite() {
                    format!("{:.*}", prec, x * scale)
                } else {
                    "∞".into()
                }
            };
            if s.n > 1 {
                format!("{} [{}–{}]", f(s.median), f(s.min), f(s.max))
            } else {
                f(s.median)
            }
        }
    }
}

/// Environment of the whole benchmark (host side).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Env {
    pub command: String,
    pub accel: String,
    pub accel_reason: String,
    pub cpus: u32,
    pub mem_mib: u32,
    pub seed: u64,
    pub kernel_release: String,
    pub series_hash: String,
    pub config_hash: String,
    pub qemu: String,
    pub host_cpu: String,
    pub host_cpus: usize,
    pub slo: String,
    pub settings: Option<Settings>,
    pub boots: Vec<BootInfo>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BootInfo {
    pub name: String,
    pub kernel: String,
    pub params: Vec<String>,
    pub elapsed_s: f64,
    pub verdict: String,
    pub message: String,
    pub host_loadavg_before: String,
    pub host_loadavg_after: String,
    pub guest_status: String,
}

pub fn render_markdown(env: &Env, pts: &[Point], ov: &[OverheadRow], h: &Headline) -> String {
    let mut md = String::new();
    md.push_str("# LAGS benchmark results\n\n");
    md.push_str(&format!(
        "- Command: `{}`\n- Accelerator: **{}** ({}); {} vCPUs, {} MiB\n- Kernel: {} (series {}, config {})\n- Host: {} ({} CPUs); {}\n- Seed {}; SLO: {}; capacity = highest offered load with median SLO attainment ≥ {:.1}%\n",
        env.command, env.accel, env.accel_reason, env.cpus, env.mem_mib, env.kernel_release,
        env.series_hash, env.config_hash, env.host_cpu, env.host_cpus, env.qemu, env.seed, env.slo,
        h.slo_target * 100.0
    ));
    if env.accel == "tcg" {
        md.push_str("- **TCG**: the guest is emulated (10–30× slower than native, kernel paths relatively slower still); only ratios between configurations of the same boot mean anything.\n");
    }
    md.push_str("\n| boot | verdict | time (s) | guest | host loadavg before → after |\n|---|---|---|---|---|\n");
    for b in &env.boots {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} → {} |\n",
            b.name,
            b.verdict,
            b.elapsed_s,
            b.guest_status,
            b.host_loadavg_before,
            b.host_loadavg_after
        ));
    }
    md.push_str("\n## Headline\n\n| configuration | capacity (offered load) |\n|---|---|\n");
    for (c, cap) in &h.capacity {
        md.push_str(&format!("| {c} | {} |\n", cap.describe()));
    }
    match h.ratio_lags_stock {
        Some(r) => md.push_str(&format!(
            "\nCapacity ratio LAGS/stock {} {r:.3}{}.",
            h.ratio_qualifier,
            match h.node_saving {
                Some(s) => format!(
                    " ⇒ {:.1}% fewer machines for the same load (1 − 1/r)",
                    s * 100.0
                ),
                None => String::new(),
            }
        )),
        None => {
            md.push_str("\nCapacity ratio LAGS/stock: not determinable from the measured range.")
        }
    }
    if let Some(r) = h.ratio_tuned_stock {
        md.push_str(&format!(" Tuned-EEVDF/stock: {r:.3}."));
    }
    md.push_str("\n\n### Targets\n\n| target | met | measured |\n|---|---|---|\n");
    for t in &h.targets {
        let m = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        md.push_str(&format!("| {} | {m} | {} |\n", t.name, t.detail));
    }
    let table = |md: &mut String, sweep: &str| {
        let ps: Vec<&Point> = pts.iter().filter(|p| p.sweep == sweep).collect();
        if ps.is_empty() {
            return;
        }
        md.push_str("\n| F | load | config | SLO % | light SLO % | p50 ms | p99 ms | p99.9 ms | light p99 ms | heavy p99 ms | achieved load | util % | kernel % | ctx/req | worker cs/req | schedule()/req | run-delay ms/req | work inflation |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        let mut ps = ps;
        ps.sort_by(|a, b| {
            (a.funcs, (a.load * 1e3) as i64, &a.config).cmp(&(
                b.funcs,
                (b.load * 1e3) as i64,
                &b.config,
            ))
        });
        for p in ps {
            md.push_str(&format!(
                "| {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                p.funcs, p.load, p.config,
                fmt_spread(&p.slo, 100.0, 2), fmt_spread(&p.slo_light, 100.0, 2),
                fmt_spread(&p.p50, 1.0, 1), fmt_spread(&p.p99, 1.0, 1), fmt_spread(&p.p999, 1.0, 1),
                fmt_spread(&p.light_p99, 1.0, 1), fmt_spread(&p.heavy_p99, 1.0, 1),
                fmt_spread(&p.achieved, 1.0, 3), fmt_spread(&p.util, 100.0, 1), fmt_spread(&p.kernel, 100.0, 1),
                fmt_spread(&p.ctx_per_req, 1.0, 2), fmt_spread(&p.worker_cs_per_req, 1.0, 2),
                fmt_spread(&p.schedule_per_req, 1.0, 2), fmt_spread(&p.run_delay_per_req, 1.0, 2),
                fmt_spread(&p.inflation, 1.0, 3),
            ));
        }
    };
    if pts.iter().any(|p| p.sweep == "load") {
        md.push_str("\n## Load sweep\n\nMedians over the repetitions, [min–max] in brackets.\n");
        table(&mut md, "load");
    }
    if pts.iter().any(|p| p.sweep == "density") {
        md.push_str("\n## Density sweep\n");
        table(&mut md, "density");
    }
    if !ov.is_empty() {
        md.push_str("\n## Overhead of having LAGS\n\n| probe | unit | off | on, no LAGS groups | baseline kernel | on vs off | off vs baseline | noise (off, max−min) |\n|---|---|---|---|---|---|---|---|\n");
        for r in ov {
            let m = |k: &str| fmt_spread(&r.modes.get(k).copied(), 1.0, 3);
            let pct = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:+.2}%"));
            md.push_str(&format!(
                "| {} | {}{} | {} | {} | {} | {} | {} | {} |\n",
                r.probe,
                r.unit,
                if r.higher_is_better {
                    " (higher is better)"
                } else {
                    " (lower is better)"
                },
                m("off"),
                m("on-nogroups"),
                m("kernel"),
                pct(r.on_vs_off_pct),
                pct(r.off_vs_baseline_pct),
                r.noise_pct.map_or("–".into(), |v| format!("{v:.1}%")),
            ));
            for e in r.errors.iter().take(2) {
                md.push_str(&format!(
                    "\n> {} error: {}\n",
                    r.probe,
                    e.lines().next().unwrap_or("")
                ));
            }
        }
        md.push_str("\nPositive percentages mean slower with LAGS (on) / with the LAGS kernel.\n");
    }
    md.push_str("\nPlots: `slo.png` (SLO attainment vs offered load), `cdf-load-*.png` (response-time CDFs), `ctx.png` (context switches per request vs density).\n");
    md
}

// ---------------------------------------------------------------------------------------
// Plots

fn register_font() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        for p in [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        ] {
            if let Ok(bytes) = fs_err::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(
                    "sans-serif",
                    plotters::style::FontStyle::Normal,
                    bytes,
                )
                .is_ok()
                {
                    return true;
                }
            }
        }
        false
    })
}

fn color(config: &str) -> plotters::style::RGBColor {
    match config {
        "stock" => plotters::style::RGBColor(200, 50, 50),
        "lags" => plotters::style::RGBColor(30, 100, 200),
        "tuned" => plotters::style::RGBColor(40, 150, 60),
        _ => plotters::style::RGBColor(90, 90, 90),
    }
}

type PlotResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn plot_slo(path: &Path, pts: &[Point], accel: &str, target: f64) -> PlotResult {
    use plotters::prelude::*;
    let ps: Vec<&Point> = pts.iter().filter(|p| p.sweep == "load").collect();
    if ps.is_empty() {
        return Ok(());
    }
    let (lo, hi) = ps.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.load), b.max(p.load))
    });
    let ymin = ps
        .iter()
        .filter_map(|p| p.slo.map(|s| s.min))
        .fold(1.0f64, f64::min)
        .min(target)
        * 100.0;
    let ymin = (ymin - 2.0).max(0.0).floor();
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(
            format!("SLO attainment vs offered load ({accel})"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo - 0.03)..(hi + 0.03), ymin..100.5)?;
    c.configure_mesh()
        .x_desc("offered load (fraction of the measured CPU capacity)")
        .y_desc("requests meeting the SLO (%)")
        .draw()?;
    c.draw_series(LineSeries::new(
        [(lo - 0.03, target * 100.0), (hi + 0.03, target * 100.0)],
        BLACK.mix(0.5),
    ))?
    .label(format!("target {:.1}%", target * 100.0))
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    let configs: std::collections::BTreeSet<&str> = ps.iter().map(|p| p.config.as_str()).collect();
    for cfg in configs {
        let col = color(cfg);
        let mut xs: Vec<(f64, Spread)> = ps
            .iter()
            .filter(|p| p.config == cfg)
            .filter_map(|p| p.slo.map(|s| (p.load, s)))
            .collect();
        xs.sort_by(|a, b| a.0.total_cmp(&b.0));
        c.draw_series(LineSeries::new(
            xs.iter().map(|(l, s)| (*l, s.median * 100.0)),
            col.stroke_width(2),
        ))?
        .label(cfg)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        c.draw_series(xs.iter().map(|(l, s)| {
            ErrorBar::new_vertical(
                *l,
                s.min * 100.0,
                s.median * 100.0,
                s.max * 100.0,
                col.filled(),
                8,
            )
        }))?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plot_cdf(path: &Path, runs: &[Run], load: f64, accel: &str) -> PlotResult {
    use plotters::prelude::*;
    let sel: Vec<&Run> = runs
        .iter()
        .filter(|r| r.sweep == "load" && (r.load - load).abs() < 1e-6)
        .collect();
    if sel.is_empty() {
        return Ok(());
    }
    let mut hists: BTreeMap<(String, bool), Hist> = BTreeMap::new();
    for r in &sel {
        hists
            .entry((r.config.clone(), false))
            .or_default()
            .merge(&r.hist_all);
        hists
            .entry((r.config.clone(), true))
            .or_default()
            .merge(&r.hist_light);
    }
    let xmax = hists
        .values()
        .flat_map(|h| h.cdf())
        .map(|p| p.0)
        .fold(1.0f64, f64::max)
        .min(1e5);
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    for (i, panel) in panels.iter().enumerate() {
        let light = i == 1;
        let mut c = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{} requests, load {load:.2} ({accel})",
                    if light { "light-function" } else { "all" }
                ),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d((0.1f64..xmax * 1.2).log_scale(), 0f64..1.0)?;
        c.configure_mesh()
            .x_desc("response time (ms, log)")
            .y_desc("fraction of requests ≤ x")
            .draw()?;
        for ((cfg, l), h) in &hists {
            if *l != light {
                continue;
            }
            let col = color(cfg);
            let pts: Vec<(f64, f64)> = h.cdf().into_iter().map(|(x, y)| (x.max(0.1), y)).collect();
            c.draw_series(LineSeries::new(pts, col.stroke_width(2)))?
                .label(cfg.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn plot_ctx(path: &Path, pts: &[Point], accel: &str) -> PlotResult {
    use plotters::prelude::*;
    let ps: Vec<&Point> = pts
        .iter()
        .filter(|p| p.sweep == "density" && p.ctx_per_req.is_some())
        .collect();
    if ps.is_empty() {
        return Ok(());
    }
    let fmax = ps.iter().map(|p| p.funcs).max().unwrap_or(1) as f64;
    let fmin = ps.iter().map(|p| p.funcs).min().unwrap_or(1) as f64;
    let ymax = ps
        .iter()
        .filter_map(|p| p.ctx_per_req.map(|s| s.max))
        .fold(1.0f64, f64::max)
        * 1.15;
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(
            format!("context switches per request vs density ({accel})"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((fmin * 0.8..fmax * 1.25).log_scale(), 0f64..ymax)?;
    c.configure_mesh()
        .x_desc("function cgroups (log)")
        .y_desc("system-wide context switches per completed request")
        .draw()?;
    let configs: std::collections::BTreeSet<&str> = ps.iter().map(|p| p.config.as_str()).collect();
    for cfg in configs {
        let col = color(cfg);
        let mut xs: Vec<(f64, Spread)> = ps
            .iter()
            .filter(|p| p.config == cfg)
            .filter_map(|p| p.ctx_per_req.map(|s| (p.funcs as f64, s)))
            .collect();
        xs.sort_by(|a, b| a.0.total_cmp(&b.0));
        c.draw_series(LineSeries::new(
            xs.iter().map(|(f, s)| (*f, s.median)),
            col.stroke_width(2),
        ))?
        .label(cfg)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        c.draw_series(
            xs.iter()
                .map(|(f, s)| ErrorBar::new_vertical(*f, s.min, s.median, s.max, col.filled(), 8)),
        )?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plots(dir: &Path, runs: &[Run], pts: &[Point], accel: &str, target: f64) -> Vec<String> {
    let mut warnings = Vec::new();
    if !register_font() {
        warnings.push("no TrueType font found (install fonts-dejavu-core): plots skipped".into());
        return warnings;
    }
    let mut check = |name: String, r: PlotResult| {
        if let Err(e) = r {
            warnings.push(format!("plot {name}: {e}"));
        }
    };
    check(
        "slo.png".into(),
        plot_slo(&dir.join("slo.png"), pts, accel, target),
    );
    let mut loads: Vec<f64> = runs
        .iter()
        .filter(|r| r.sweep == "load")
        .map(|r| r.load)
        .collect();
    loads.sort_by(f64::total_cmp);
    loads.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
    for l in loads {
        let name = format!("cdf-load-{l:.2}.png");
        check(name.clone(), plot_cdf(&dir.join(&name), runs, l, accel));
    }
    check("ctx.png".into(), plot_ctx(&dir.join("ctx.png"), pts, accel));
    warnings
}

// ---------------------------------------------------------------------------------------
// Running

/// The verdict of one benchmark boot: `qemu-test`'s infrastructure verdict
/// ([`vmtest::classify_infra`]: boot failure, kernel fault, timeout), and then the guest's
/// end record in place of KTAP: anything but `ok` means the benchmark had errors. Pure.
pub fn boot_verdict(
    console_text: &str,
    ending: Ending,
    status: Option<Status>,
) -> (Verdict, String) {
    let scan = console::scan(console_text);
    if let Some(infra) = vmtest::classify_infra(&scan, ending, scan.runner_done) {
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

fn host_cpu() -> String {
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

fn loadavg() -> String {
    fs_err::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Builds the static benchmark binary (like the guest runner: +crt-static).
fn build_bench(paths: &Paths) -> Result<PathBuf> {
    Ok(crate::vmtest::build_static(paths, "lags-bench")?.join("lags-bench"))
}

/// The benchmark's own initramfs: busybox, lags-bench, perf, stress-ng (+ --with).
fn make_bench_initramfs(bench: &Path, programs: &[PathBuf], out: &Path) -> Result<Vec<String>> {
    let mut fs = Initramfs::new();
    fs.busybox(Path::new("/bin/busybox"))?;
    fs.host_file("/bin/lags-bench", bench)?;
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

fn progress(line: &str, verbose: bool) {
    if verbose {
        eprintln!("  | {line}");
        return;
    }
    let body = match line.find("] ") {
        Some(i) if line.starts_with('[') => &line[i + 2..],
        _ => line,
    };
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
    pub fn run(&self, paths: &Paths) -> Result<()> {
        if let Some(dir) = &self.report_only {
            let (env, recs) = load_dir(dir)?;
            let ok = report(dir, env, &recs, self.slo_target)?;
            return ok
                .then_some(())
                .ok_or_else(|| failure(Exit::TestsFailed, "incomplete results"));
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
        if let Some(b) = &self.baseline_kernel {
            if !b.is_file() {
                bail!("--baseline-kernel {} does not exist", b.display());
            }
        }
        let dir = paths.work.join("bench").join(util::timestamp());
        fs_err::create_dir_all(&dir)?;
        eprintln!("[bench] building lags-bench (static) ...");
        let bench = build_bench(paths)?;
        let mut programs: Vec<PathBuf> = vec!["/usr/bin/perf".into(), "/usr/bin/stress-ng".into()];
        programs.extend(self.with.iter().cloned());
        let initrd = dir.join("initramfs.cpio");
        for w in make_bench_initramfs(&bench, &programs, &initrd)? {
            eprintln!("[bench] WARNING: {w}");
        }
        let base = Plan {
            seed: self.seed,
            slo_mult: self.slo_mult,
            slo_floor_ms: self.slo_floor_ms,
            tuned_slice_ns: self.tuned_slice_ns,
            ..Plan::default()
        };
        let mut common = Vec::new();
        for p in &self.params {
            if !p.starts_with("lb.") || !p.contains('=') {
                bail!("--param {p:?}: expected lb.KEY=VALUE");
            }
            common.push(p.clone());
        }
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
            cpus: self.cpus,
            mem_mib: self.mem,
            accel: Accel::Tcg,
            data_out: None,
        };
        let (accel, why) = qemu::apply_accel(
            self.accel,
            &mut spec,
            &paths.work.join("kvm-probe"),
            "bench",
        )?;
        let files = crate::patch::series(&paths.patches())?;
        let mut env = Env {
            command: format!(
                "cargo xtask bench {}",
                std::env::args().skip(2).collect::<Vec<_>>().join(" ")
            )
            .trim()
            .to_string(),
            accel: accel.name().into(),
            accel_reason: why,
            cpus: self.cpus,
            mem_mib: self.mem,
            seed: self.seed,
            kernel_release: crate::fetch::makefile_version(&paths.src()).unwrap_or_default(),
            series_hash: crate::patch::series_hash(&files).unwrap_or_default(),
            config_hash: fs_err::read(paths.build(profile).join(".config"))
                .map(|b| Fnv::default().update(&b).hex())
                .unwrap_or_default(),
            qemu: util::tool_version(qemu::qemu_binary(), &["--version"])
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            host_cpu: host_cpu(),
            host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            slo: format!(
                "response ≤ max({}× service time, {} ms)",
                self.slo_mult, self.slo_floor_ms
            ),
            settings: Some(settings.clone()),
            boots: vec![],
        };
        let total: f64 = boots.iter().map(|b| b.estimate_s).sum();
        eprintln!(
            "[bench] {} boot(s), estimated {:.0} min of guest time; results in {}",
            boots.len(),
            total / 60.0,
            dir.display()
        );
        let mut recs = Records::default();
        let mut worst = Verdict::Passed;
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
            let run = qemu::run_vm(
                &spec,
                &log,
                Limits {
                    hard,
                    silence: Duration::from_secs(self.silence),
                },
                |l| progress(l, self.verbose),
            )?;
            let text = fs_err::read_to_string(&data).unwrap_or_default();
            recs.add(&b.name, &text);
            for e in &recs.invalid {
                eprintln!("[bench] WARNING: invalid record from the guest: {e}");
            }
            recs.invalid.clear();
            let guest_status = recs.status_of(&b.name);
            let status =
                guest_status.map_or_else(|| "no end record".into(), |s| s.as_str().to_string());
            let (v, message) = boot_verdict(&run.console, run.ending, guest_status);
            worst = worst.max(v);
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
                guest_status: status,
            });
            util::write(&dir.join("env.json"), serde_json::to_string_pretty(&env)?)?;
        }
        let _ = fs_err::remove_file(&initrd);
        report(&dir, serde_json::to_value(&env)?, &recs, self.slo_target)?;
        let latest = paths.work.join("bench").join("latest");
        let _ = fs_err::remove_file(&latest);
        let _ = std::os::unix::fs::symlink(&dir, &latest);
        eprintln!("[bench] results: {}", dir.display());
        if worst != Verdict::Passed {
            return Err(failure(
                worst.exit(),
                format!(
                    "one or more benchmark boots did not finish cleanly; see {}",
                    dir.display()
                ),
            ));
        }
        Ok(())
    }
}

/// Reads env.json and the data files of a results directory.
pub(crate) fn load_dir(dir: &Path) -> Result<(Value, Records)> {
    let env: Value = serde_json::from_str(&util::read(&dir.join("env.json"))?)?;
    let mut recs = Records::default();
    let mut names: Vec<PathBuf> = fs_err::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".data.ndjson"))
        .collect();
    names.sort();
    for p in names {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .trim_end_matches(".data.ndjson")
            .to_string();
        recs.add(&name, &util::read(&p)?);
    }
    Ok((env, recs))
}

/// Aggregates, writes results.json, summary.md and the plots; prints the headline.
fn report(dir: &Path, env_v: Value, recs: &Records, target: f64) -> Result<bool> {
    let env: Env = env_from_value(&env_v);
    let pts = points(&recs.runs);
    let ov = overhead_rows(&recs.overhead);
    let h = headline(&pts, &ov, target);
    let md = render_markdown(&env, &pts, &ov, &h);
    util::write(&dir.join("summary.md"), &md)?;
    let doc = json!({
        "env": env_v,
        "guest_env": recs.env,
        "headline": h,
        "points": pts,
        "overhead": ov,
        "records": recs.raw,
    });
    util::write(
        &dir.join("results.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    for w in plots(dir, &recs.runs, &pts, &env.accel, target) {
        eprintln!("[bench] WARNING: {w}");
    }
    eprintln!("\n{}", md.split("\n## Load sweep").next().unwrap_or(&md));
    Ok(!recs.runs.is_empty() || !recs.overhead.is_empty())
}

pub(crate) fn env_from_value(v: &Value) -> Env {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    Env {
        command: s("command"),
        accel: s("accel"),
        accel_reason: s("accel_reason"),
        cpus: v["cpus"].as_u64().unwrap_or(0) as u32,
        mem_mib: v["mem_mib"].as_u64().unwrap_or(0) as u32,
        seed: v["seed"].as_u64().unwrap_or(0),
        kernel_release: s("kernel_release"),
        series_hash: s("series_hash"),
        config_hash: s("config_hash"),
        qemu: s("qemu"),
        host_cpu: s("host_cpu"),
        host_cpus: v["host_cpus"].as_u64().unwrap_or(0) as usize,
        slo: s("slo"),
        settings: None,
        boots: v["boots"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| BootInfo {
                        name: b["name"].as_str().unwrap_or("").into(),
                        elapsed_s: b["elapsed_s"].as_f64().unwrap_or(0.0),
                        verdict: b["verdict"].as_str().unwrap_or("").into(),
                        message: b["message"].as_str().unwrap_or("").into(),
                        host_loadavg_before: b["host_loadavg_before"].as_str().unwrap_or("").into(),
                        host_loadavg_after: b["host_loadavg_after"].as_str().unwrap_or("").into(),
                        guest_status: b["guest_status"].as_str().unwrap_or("").into(),
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect exact interpolation at the first crossing, and censored answers at the edges.
    #[test]
    fn capacity_interpolation() {
        let p = [(0.5, 1.0), (0.7, 0.995), (0.9, 0.95)];
        match capacity(&p, 0.99) {
            Capacity::Exact(x) => assert!((x - (0.7 + 0.005 / 0.045 * 0.2)).abs() < 1e-9, "{x}"),
            c => panic!("{c:?}"),
        }
        assert_eq!(
            capacity(&[(0.5, 0.99), (0.9, 0.999)], 0.99),
            Capacity::AtLeast(0.9)
        );
        assert_eq!(
            capacity(&[(0.9, 0.5), (0.5, 0.98)], 0.99),
            Capacity::Below(0.5)
        );
        assert_eq!(capacity(&[], 0.99), Capacity::NoData);
        // Non-monotonic: the first crossing counts.
        assert!(
            matches!(capacity(&[(0.4, 1.0), (0.5, 0.9), (0.6, 1.0)], 0.99), Capacity::Exact(x) if x < 0.5)
        );
        let (r, q) = capacity_ratio(Capacity::Exact(0.78), Capacity::Exact(0.6));
        assert!((r.unwrap() - 1.3).abs() < 1e-9 && q == "=");
        assert_eq!(
            capacity_ratio(Capacity::AtLeast(0.9), Capacity::Exact(0.6)).1,
            "≥"
        );
        assert_eq!(
            capacity_ratio(Capacity::Below(0.5), Capacity::Below(0.5)).0,
            None
        );
        assert!((node_saving(1.39) - 0.2806).abs() < 1e-3);
    }

    // Expect the median of odd and even samples, missing values as +inf.
    #[test]
    fn spreads_and_interp() {
        let s = spread([Some(3.0), Some(1.0), Some(2.0)]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(spread([Some(1.0), Some(2.0)]).unwrap().median, 1.5);
        assert!(spread([Some(1.0), None, None])
            .unwrap()
            .median
            .is_infinite());
        assert!(spread(std::iter::empty()).is_none());
        let p = [(0.5, 10.0), (0.7, 20.0)];
        assert_eq!(interp(&p, 0.6), Some(15.0));
        assert_eq!(interp(&p, 0.1), Some(10.0));
        assert_eq!(interp(&p, 0.9), Some(20.0));
        assert_eq!(interp(&[], 0.9), None);
    }

    // Expect a CDF from the sparse histogram at the bins' upper edges.
    #[test]
    fn hist_cdf_and_merge() {
        let mut h = Hist {
            bins: vec![(60, 1), (80, 3)],
        };
        h.merge(&Hist {
            bins: vec![(60, 1), (100, 5)],
        });
        assert_eq!(h.bins, vec![(60, 2), (80, 3), (100, 5)]);
        let c = h.cdf();
        assert!((c[0].0 - 10f64.powf(61.0 / 20.0) / 1e3).abs() < 1e-12);
        assert_eq!(c[0].1, 0.2);
        assert_eq!(c[2].1, 1.0);
    }

    fn run(config: &str, load: f64, rep: usize, slo: f64, light_p99: f64, ctx: f64) -> Run {
        Run {
            boot: "all".into(),
            sweep: "load".into(),
            config: config.into(),
            funcs: 100,
            load,
            rep,
            ctxt_per_req: Some(ctx),
            all: Summary {
                slo_attainment: Some(slo),
                p99_ms: Some(light_p99 * 2.0),
                ..Default::default()
            },
            light: Summary {
                p99_ms: Some(light_p99),
                slo_attainment: Some(slo),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    // Expect aggregation, headline numbers, targets and the Markdown report from a small
    // synthetic data set.
    #[test]
    fn aggregate_and_render() {
        let mut runs = Vec::new();
        for rep in 0..3 {
            let d = rep as f64 * 0.001;
            runs.push(run("stock", 0.5, rep, 0.995 - d, 10.0, 4.0));
            runs.push(run("stock", 0.7, rep, 0.95 - d, 30.0, 5.0));
            runs.push(run("lags", 0.5, rep, 1.0, 4.0, 3.0));
            runs.push(run("lags", 0.7, rep, 0.995, 8.0, 3.5));
        }
        let pts = points(&runs);
        assert_eq!(pts.len(), 4);
        assert!(pts.iter().all(|p| p.reps == 3));
        let ov = overhead_rows(&[
            OverheadRec {
                probe: "perf-pipe".into(),
                mode: "off".into(),
                value: Some(10.0),
                unit: "usecs/op".into(),
                ..Default::default()
            },
            OverheadRec {
                probe: "perf-pipe".into(),
                mode: "on-nogroups".into(),
                value: Some(10.05),
                unit: "usecs/op".into(),
                ..Default::default()
            },
            OverheadRec {
                probe: "sw".into(),
                mode: "off".into(),
                value: Some(100.0),
                higher_is_better: true,
                ..Default::default()
            },
            OverheadRec {
                probe: "sw".into(),
                mode: "on-nogroups".into(),
                value: Some(90.0),
                higher_is_better: true,
                ..Default::default()
            },
        ]);
        assert!((ov[0].on_vs_off_pct.unwrap() - 0.5).abs() < 1e-9);
        assert!((ov[1].on_vs_off_pct.unwrap() - 10.0).abs() < 1e-9);
        let h = headline(&pts, &ov, 0.99);
        assert_eq!(h.capacity["lags"], Capacity::AtLeast(0.7));
        let stock = h.capacity["stock"].load().unwrap();
        assert!(stock > 0.5 && stock < 0.7, "{stock}");
        assert_eq!(h.ratio_qualifier, "≥");
        assert_eq!(h.targets[0].met, Some(true));
        // light p99 at the stock capacity: stock between 10 and 30, lags between 4 and 8.
        assert_eq!(h.targets[1].met, Some(true));
        assert_eq!(h.targets[2].met, Some(true));
        assert_eq!(h.targets[3].met, Some(false));
        let env = Env {
            accel: "tcg".into(),
            command: "cargo xtask bench --quick".into(),
            ..Default::default()
        };
        let md = render_markdown(&env, &pts, &ov, &h);
        assert!(md.contains("**tcg**"), "{md}");
        assert!(md.contains("| lags | ≥ 0.700 |"), "{md}");
        assert!(md.contains("fewer machines"));
        assert!(
            md.contains("| perf-pipe | usecs/op (lower is better) | 10.000 | 10.050 |"),
            "{md}"
        );
        assert!(
            md.contains("| 100 | 0.50 | stock | 99.40 [99.30–99.50] |"),
            "{md}"
        );
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
            let (q, _, _, _) = vmtest::classify(&console, ending);
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

    /// The guest plan's base for the boot-plan tests: seed 1, everything else default.
    fn seed1() -> Plan {
        Plan {
            seed: 1,
            ..Plan::default()
        }
    }

    // Expect one boot when it fits, otherwise loads spread over boots and the rest in one.
    #[test]
    fn boot_plan() {
        let s = Settings::preset(true);
        let k = Path::new("/k");
        let b = plan_boots(&s, k, None, &seed1(), &[], 1200.0);
        assert_eq!(b.len(), 1);
        assert!(b[0]
            .params
            .contains(&"lb.parts=overhead,load,density".to_string()));
        assert!(b[0].estimate_s < 600.0, "{}", b[0].estimate_s);
        let f = Settings::preset(false);
        let b = plan_boots(&f, k, None, &seed1(), &[], 1200.0);
        assert_eq!(b.len(), 1, "the full preset fits one 20-minute boot: {b:?}");
        let b = plan_boots(
            &f,
            k,
            Some(Path::new("/base")),
            &seed1(),
            &["lb.x=1".into()],
            800.0,
        );
        let names: Vec<&str> = b.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["load", "overhead+density", "baseline-kernel"]);
        assert!(b.iter().all(|b| b.estimate_s <= 800.0));
        assert!(b.iter().all(|b| b.params.contains(&"lb.x=1".to_string())));
        assert_eq!(b[2].kernel, Path::new("/base"));
        let b = plan_boots(&f, k, None, &seed1(), &[], 300.0);
        let loads: Vec<&String> = b
            .iter()
            .flat_map(|b| b.params.iter())
            .filter(|p| p.starts_with("lb.loads="))
            .collect();
        assert!(b.len() > 3, "{b:?}");
        assert!(loads[0].contains("0.4") && loads[1].contains("0.5"));
    }

    // Expect guest lines to be parsed by type and tagged with the boot; junk ignored, and
    // a record that does not match the contract reported instead of read as defaults.
    #[test]
    fn records() {
        let mut r = Records::default();
        let run = Record::Run(Box::new(RunRecord {
            sweep: "load".into(),
            config: "lags".into(),
            load: 0.5,
            all: Summary {
                slo_attainment: Some(0.99),
                ..Summary::default()
            },
            ..RunRecord::default()
        }));
        let ov = Record::Overhead(OverheadRecord {
            probe: "p".into(),
            mode: "off".into(),
            value: Some(1.0),
            ..OverheadRecord::default()
        });
        let done = Record::Done(DoneRecord {
            status: Status::Ok,
            errors: 0,
        });
        let line = |r: &Record| serde_json::to_string(r).unwrap();
        // A record with a field the contract does not have is not used.
        let misspelt = r#"{"type":"overhead","probe":"p","mode":"on","value":1.0,"unit":"","higher_is_better":false,"wall_s":1.0,"eror":null}"#;
        r.add(
            "b1",
            &format!(
                "garbage\n{}\n{}\n{misspelt}\n{}\n",
                line(&run),
                line(&ov),
                line(&done)
            ),
        );
        assert_eq!(r.runs.len(), 1);
        assert_eq!(r.runs[0].boot, "b1");
        assert_eq!(r.runs[0].all.slo_attainment, Some(0.99));
        assert_eq!(r.overhead.len(), 1);
        assert_eq!(r.done.len(), 1);
        assert_eq!(r.raw.len(), 3);
        assert_eq!(r.invalid.len(), 1, "{:?}", r.invalid);
        assert_eq!(r.status_of("b1"), Some(Status::Ok));
    }
}
