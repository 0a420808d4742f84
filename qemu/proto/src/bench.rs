// SPDX-License-Identifier: GPL-2.0
//! The benchmark's contract: the plan the host passes as `lb.*` kernel parameters, and the
//! records `lags-bench` writes to its data port (one JSON object per line).
//!
//! Records are a `type`-tagged enum whose variants reject unknown fields, so a field the
//! guest writes under another name than the host reads is an error, not a silent zero.

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------
// Plan

/// What one boot of the benchmark does; passed as `lb.*` kernel parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Parts to run in this boot: `load`, `density`, `overhead` (`lb.parts`).
    pub parts: Vec<String>,
    /// Scheduler configurations, run interleaved: [`SchedConfig`] names (`lb.configs`).
    pub configs: Vec<String>,
    /// Function count of the load sweep (`lb.funcs`).
    pub funcs: usize,
    /// Offered loads of the load sweep, as a fraction of all vCPUs (`lb.loads`).
    pub loads: Vec<f64>,
    /// Function counts of the density sweep (`lb.density`).
    pub density: Vec<usize>,
    /// Offered load of the density sweep (`lb.dload`).
    pub density_load: f64,
    /// Repetitions of every (configuration, point) (`lb.reps`).
    pub reps: usize,
    /// Measured seconds of arrivals per run, after the warm-up (`lb.dur`).
    pub duration_s: f64,
    /// Warm-up seconds of arrivals per run, not measured (`lb.warm`).
    pub warmup_s: f64,
    /// Seed of the workload (`lb.seed`).
    pub seed: u64,
    /// Mean service time of a request, ms of calibrated CPU work (`lb.mean_ms`).
    pub mean_ms: f64,
    /// Lognormal sigma of a request's service time around its function's mean
    /// (`lb.req_sigma`).
    pub req_sigma: f64,
    /// Lognormal sigma of the function means around `mean_ms` (`lb.func_sigma`).
    pub func_sigma: f64,
    /// Zipf exponent of function popularity (`lb.zipf`).
    pub zipf_s: f64,
    /// Largest share of the total CPU demand one function may have (its single worker
    /// must stay stable on its own) (`lb.max_share`).
    pub max_share: f64,
    /// SLO: response <= max(slo_mult x service time, slo_floor_ms) (`lb.slo_mult`).
    pub slo_mult: f64,
    /// (`lb.slo_floor_ms`)
    pub slo_floor_ms: f64,
    /// `base_slice_ns` of the tuned-EEVDF configuration (`lb.tuned_slice_ns`).
    pub tuned_slice_ns: u64,
    /// Run the dispatcher as `SCHED_FIFO` during the runs (`lb.fifo`). Off by default: the
    /// dispatcher's wakeups of the workers then take the fair class's wakeup path, as
    /// network arrivals would. Plans recorded before this field existed had a `SCHED_FIFO`
    /// dispatcher, so a record without it reads as `true`.
    #[serde(default = "recorded_before_fifo_option")]
    pub fifo_dispatch: bool,
    /// Turn `kernel.sched_schedstats` on for the runs (`lb.schedstats`, the default). Off,
    /// the kernel keeps no `schedule()` or wake-up counts and LAGS counts no picks (each
    /// costs scheduler time), so the records leave them unknown; plans recorded before the
    /// option had them on.
    #[serde(default = "recorded_before_schedstats_option")]
    pub schedstats: bool,
    /// Overhead probes: repetitions (`lb.ov_reps`) and sizes (`lb.ov_pipe`,
    /// `lb.ov_msg_groups`, `lb.ov_msg_loops`, `lb.ov_switch_s`).
    pub ov_reps: usize,
    pub ov_pipe_loops: u64,
    pub ov_msg_groups: u32,
    pub ov_msg_loops: u32,
    pub ov_switch_s: u32,
    /// Workload of the sweep parts (`lb.workload`): `zipf-open` (the open-loop `load` and
    /// `density` parts) or `rdhashd` (the prototype's closed loop, which replaces `density`
    /// and has no `load` part). Plans recorded before the option were `zipf-open`.
    #[serde(default)]
    pub workload: Workload,
    /// Parameters of the `rdhashd` workload (`lb.rd_*`); plans recorded before it existed
    /// read as the defaults (unused by their `zipf-open` runs).
    #[serde(default)]
    pub rd: RdPlan,
    /// Parameters of the `knative` workload (`lb.kn_*`); plans recorded before it existed
    /// read as the defaults.
    #[serde(default)]
    pub kn: KnPlan,
}

/// The `knative` workload (issue 11, workload 2): the prototype's node experiment. Closed
/// loop users with a think time pick a pod uniformly; each pod is a cgroup with a container
/// child whose worker splits every request over `intra_op` threads and joins them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnPlan {
    /// User counts of the sweep, the workload's scale (`lb.kn_users`).
    pub users: Vec<usize>,
    /// Pod cgroups (`lb.kn_pods`).
    pub pods: usize,
    /// Threads each request is split over (`lb.kn_k`).
    pub intra_op: u32,
    /// CPU work of one request, ms of calibrated CPU, over all its threads (`lb.kn_work_ms`):
    /// every request's with `work_sigma` 0, else the mean.
    pub work_ms: f64,
    /// Lognormal sigma of a request's work around `work_ms`, mean-preserving and bounded at
    /// 50× the mean (`lb.kn_work_sigma`); 0: every request the same. Plans recorded before
    /// the option existed: 0.
    #[serde(default)]
    pub work_sigma: f64,
    /// Think time of a user between requests, uniform in [min, max] ms (`lb.kn_think_min_ms`,
    /// `lb.kn_think_max_ms`).
    pub think_min_ms: f64,
    pub think_max_ms: f64,
    /// Requests count as good below this latency, ms (`lb.kn_threshold_ms`).
    pub threshold_ms: f64,
}

impl Default for KnPlan {
    fn default() -> Self {
        KnPlan {
            users: vec![50, 100, 150],
            pods: 100,
            intra_op: 3,
            work_ms: 30.0,
            work_sigma: 0.0,
            think_min_ms: 1000.0,
            think_max_ms: 3000.0,
            threshold_ms: 1000.0,
        }
    }
}

/// The `rdhashd` workload: a closed loop per function, one thread per in-flight request,
/// per-second in-flight targets from a synthetic trace (issue 11).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdPlan {
    /// Function counts of the density sweep (`lb.rd_funcs`).
    pub funcs: Vec<usize>,
    /// Measured seconds per run (`lb.rd_dur`).
    pub duration_s: u32,
    /// Warm-up seconds per run, not measured (`lb.rd_warm`).
    pub warmup_s: u32,
    /// Mean of a request's exponential sleep before its CPU burst, ms (`lb.rd_sleep_ms`).
    pub sleep_ms: f64,
    /// CPU burst of a request, ms of calibrated guest CPU (`lb.rd_burst_ms`).
    pub burst_ms: f64,
    /// Goodput counts requests with latency below this, ms (`lb.rd_threshold_ms`).
    pub threshold_ms: f64,
    /// Seed of the synthetic concurrency trace (`lb.rd_trace_seed`).
    pub trace_seed: u64,
    /// Most request threads of one run, over all functions (`lb.rd_max_threads`).
    pub max_threads: usize,
    /// Profile the measured window with `perf record -a -g` (cpu-clock) for the share of CPU
    /// time inside `__schedule()` (`lb.rd_prof`); plans recorded before it existed: off.
    #[serde(default)]
    pub profile: bool,
    /// Measure the time inside `schedule()` over the measured window with the ftrace
    /// function profiler (`lb.rd_ftrace`; a kernel with `CONFIG_FUNCTION_PROFILER`, the
    /// `ftrace` profile); plans recorded before it existed: off.
    #[serde(default)]
    pub ftrace: bool,
    /// Directory of per-function concurrency traces in the prototype's CSV format to replay
    /// (`lb.rd_trace`): F functions are its first F files in name order. Empty: the seeded
    /// synthetic trace (and in plans recorded before the option).
    #[serde(default)]
    pub trace: String,
    /// Concurrency scales of the sweep (`lb.rd_scale`): every function count runs at each,
    /// its trace's targets multiplied by the scale (`closed_loop::scaled`). Plans recorded
    /// before the option: the trace as it is, 1.
    #[serde(default = "unit_scale")]
    pub scales: Vec<f64>,
}

fn unit_scale() -> Vec<f64> {
    vec![1.0]
}

impl Default for RdPlan {
    fn default() -> Self {
        RdPlan {
            funcs: vec![2, 8, 16, 38],
            duration_s: 20,
            warmup_s: 2,
            sleep_ms: 20.0,
            burst_ms: 10.0,
            threshold_ms: 1000.0,
            trace_seed: 42,
            max_threads: 1024,
            profile: false,
            ftrace: false,
            trace: String::new(),
            scales: unit_scale(),
        }
    }
}

/// The workload generator of the sweeps (`lb.workload`); plans recorded before the option
/// existed were `zipf-open`, the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Open loop, Zipf popularity, one FIFO worker per function (the `load`/`density` parts).
    #[default]
    ZipfOpen,
    /// The prototype's closed loop: per-function in-flight targets from a synthetic trace,
    /// one thread per in-flight request.
    Rdhashd,
    /// The node experiment: closed-loop users with think time, pods with a container child,
    /// intra-op parallel requests.
    Knative,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::ZipfOpen, Workload::Rdhashd, Workload::Knative];

    /// The name `lb.workload`, the command line and the report use.
    pub fn name(self) -> &'static str {
        match self {
            Workload::ZipfOpen => "zipf-open",
            Workload::Rdhashd => "rdhashd",
            Workload::Knative => "knative",
        }
    }

    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// A scheduler configuration of the benchmark (`lb.configs`); a repetition runs each
/// requested one back to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedConfig {
    /// Stock EEVDF: every function group with `cpu.lags=0`.
    Stock,
    /// LAGS: every function group with `cpu.lags=1`, the tunables at their defaults.
    Lags,
    /// LAGS's cost without its decisions: `cpu.lags=1`, but `credit_ref_pct` at its largest
    /// value (1000), so a group gets a longer request only with a credit above ten times its
    /// entitlement. The credit, the request sizing and the statistics still run; the run's
    /// `lags_picks` counter shows how many decisions were left.
    LagsInert,
    /// Stock EEVDF with a longer `base_slice_ns` (`lb.tuned_slice_ns`).
    Tuned,
}

impl SchedConfig {
    pub const ALL: [SchedConfig; 4] = [
        SchedConfig::Stock,
        SchedConfig::Lags,
        SchedConfig::LagsInert,
        SchedConfig::Tuned,
    ];

    /// The name `lb.configs`, the command line, the records and the report use.
    pub fn name(self) -> &'static str {
        match self {
            SchedConfig::Stock => "stock",
            SchedConfig::Lags => "lags",
            SchedConfig::LagsInert => "lags-inert",
            SchedConfig::Tuned => "tuned",
        }
    }

    pub fn from_name(name: &str) -> Option<SchedConfig> {
        SchedConfig::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Does it need LAGS in the kernel?
    pub fn needs_lags(self) -> bool {
        matches!(self, SchedConfig::Lags | SchedConfig::LagsInert)
    }

    /// The first name in `names` that is no configuration, as an error that lists the
    /// valid ones.
    pub fn check(names: &[String]) -> Result<(), String> {
        match names.iter().find(|c| SchedConfig::from_name(c).is_none()) {
            Some(c) => Err(format!(
                "unknown configuration {c:?}: use {}",
                SchedConfig::names()
            )),
            None => Ok(()),
        }
    }

    /// The names of all configurations, for error messages: `stock, lags, ...`.
    pub fn names() -> String {
        SchedConfig::ALL.map(SchedConfig::name).join(", ")
    }
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            parts: vec!["load".into(), "density".into(), "overhead".into()],
            configs: vec!["stock".into(), "lags".into(), "tuned".into()],
            funcs: 100,
            loads: vec![0.5, 0.6, 0.7, 0.8, 0.9],
            density: vec![25, 100, 400],
            density_load: 0.7,
            reps: 3,
            duration_s: 8.0,
            warmup_s: 1.0,
            seed: 42,
            mean_ms: 5.0,
            req_sigma: 1.0,
            func_sigma: 1.0,
            zipf_s: 1.0,
            max_share: 0.15,
            slo_mult: 10.0,
            slo_floor_ms: 20.0,
            tuned_slice_ns: 100_000_000,
            fifo_dispatch: false,
            schedstats: true,
            ov_reps: 3,
            ov_pipe_loops: 20_000,
            ov_msg_groups: 2,
            ov_msg_loops: 20,
            ov_switch_s: 3,
            workload: Workload::ZipfOpen,
            rd: RdPlan::default(),
            kn: KnPlan::default(),
        }
    }
}

/// The dispatcher of every plan recorded before `lb.fifo` existed was `SCHED_FIFO`.
fn recorded_before_fifo_option() -> bool {
    true
}

fn recorded_before_schedstats_option() -> bool {
    true
}

fn list<T: std::str::FromStr>(v: &str) -> Option<Vec<T>> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim().parse().ok())
        .collect()
}

/// A `0`/`1` switch.
fn flag(v: &str) -> Option<bool> {
    match v {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// The prefix of every benchmark parameter.
pub const PREFIX: &str = "lb.";

impl Plan {
    /// Reads `lb.key=value` parameters from a kernel command line on top of the defaults.
    /// Returns the plan and a warning per parameter it could not use.
    pub fn from_cmdline(cmdline: &str) -> (Plan, Vec<String>) {
        let mut p = Plan::default();
        let mut warnings = Vec::new();
        for param in cmdline.split_whitespace() {
            let Some(rest) = param.strip_prefix(PREFIX) else {
                continue;
            };
            let Some((k, v)) = rest.split_once('=') else {
                warnings.push(format!("ignoring {param:?}: no value"));
                continue;
            };
            let ok = match k {
                "parts" => list(v).map(|x| p.parts = x).is_some(),
                "configs" => list(v).map(|x| p.configs = x).is_some(),
                "funcs" => v.parse().map(|x| p.funcs = x).is_ok(),
                "loads" => list(v).map(|x| p.loads = x).is_some(),
                "density" => list(v).map(|x| p.density = x).is_some(),
                "dload" => v.parse().map(|x| p.density_load = x).is_ok(),
                "reps" => v.parse().map(|x| p.reps = x).is_ok(),
                "dur" => v.parse().map(|x| p.duration_s = x).is_ok(),
                "warm" => v.parse().map(|x| p.warmup_s = x).is_ok(),
                "seed" => v.parse().map(|x| p.seed = x).is_ok(),
                "mean_ms" => v.parse().map(|x| p.mean_ms = x).is_ok(),
                "req_sigma" => v.parse().map(|x| p.req_sigma = x).is_ok(),
                "func_sigma" => v.parse().map(|x| p.func_sigma = x).is_ok(),
                "zipf" => v.parse().map(|x| p.zipf_s = x).is_ok(),
                "max_share" => v.parse().map(|x| p.max_share = x).is_ok(),
                "slo_mult" => v.parse().map(|x| p.slo_mult = x).is_ok(),
                "slo_floor_ms" => v.parse().map(|x| p.slo_floor_ms = x).is_ok(),
                "tuned_slice_ns" => v.parse().map(|x| p.tuned_slice_ns = x).is_ok(),
                "fifo" => flag(v).map(|x| p.fifo_dispatch = x).is_some(),
                "schedstats" => flag(v).map(|x| p.schedstats = x).is_some(),
                "ov_reps" => v.parse().map(|x| p.ov_reps = x).is_ok(),
                "ov_pipe" => v.parse().map(|x| p.ov_pipe_loops = x).is_ok(),
                "ov_msg_groups" => v.parse().map(|x| p.ov_msg_groups = x).is_ok(),
                "ov_msg_loops" => v.parse().map(|x| p.ov_msg_loops = x).is_ok(),
                "ov_switch_s" => v.parse().map(|x| p.ov_switch_s = x).is_ok(),
                "workload" => Workload::from_name(v).map(|x| p.workload = x).is_some(),
                "rd_funcs" => list(v).map(|x| p.rd.funcs = x).is_some(),
                "rd_dur" => v.parse().map(|x| p.rd.duration_s = x).is_ok(),
                "rd_warm" => v.parse().map(|x| p.rd.warmup_s = x).is_ok(),
                "rd_sleep_ms" => v.parse().map(|x| p.rd.sleep_ms = x).is_ok(),
                "rd_burst_ms" => v.parse().map(|x| p.rd.burst_ms = x).is_ok(),
                "rd_threshold_ms" => v.parse().map(|x| p.rd.threshold_ms = x).is_ok(),
                "rd_trace_seed" => v.parse().map(|x| p.rd.trace_seed = x).is_ok(),
                "rd_max_threads" => v.parse().map(|x| p.rd.max_threads = x).is_ok(),
                "rd_prof" => flag(v).map(|x| p.rd.profile = x).is_some(),
                "rd_ftrace" => flag(v).map(|x| p.rd.ftrace = x).is_some(),
                "rd_scale" => list(v)
                    .filter(|x: &Vec<f64>| {
                        !x.is_empty() && x.iter().all(|&k| k > 0.0 && k <= 100.0)
                    })
                    .map(|x| p.rd.scales = x)
                    .is_some(),
                "kn_users" => list(v).map(|x| p.kn.users = x).is_some(),
                "kn_pods" => v.parse().map(|x| p.kn.pods = x).is_ok(),
                "kn_k" => v.parse().map(|x| p.kn.intra_op = x).is_ok(),
                "kn_work_ms" => v.parse().map(|x| p.kn.work_ms = x).is_ok(),
                "kn_work_sigma" => v
                    .parse()
                    .ok()
                    .filter(|x: &f64| (0.0..=3.0).contains(x))
                    .map(|x| p.kn.work_sigma = x)
                    .is_some(),
                "kn_think_min_ms" => v.parse().map(|x| p.kn.think_min_ms = x).is_ok(),
                "kn_think_max_ms" => v.parse().map(|x| p.kn.think_max_ms = x).is_ok(),
                "kn_threshold_ms" => v.parse().map(|x| p.kn.threshold_ms = x).is_ok(),
                "rd_trace" => {
                    p.rd.trace = v.to_string();
                    true
                }
                _ => {
                    warnings.push(format!("ignoring unknown parameter {param:?}"));
                    true
                }
            };
            if !ok {
                warnings.push(format!("ignoring {param:?}: bad value"));
            }
        }
        (p, warnings)
    }

    /// Every field as an `lb.key=value` parameter, in declaration order, so the guest's
    /// plan is fully determined by the host (no guest default matters).
    pub fn to_cmdline(&self) -> Vec<String> {
        vec![
            format!("lb.parts={}", self.parts.join(",")),
            format!("lb.configs={}", self.configs.join(",")),
            format!("lb.funcs={}", self.funcs),
            format!("lb.loads={}", join(&self.loads)),
            format!("lb.density={}", join(&self.density)),
            format!("lb.dload={}", self.density_load),
            format!("lb.reps={}", self.reps),
            format!("lb.dur={}", self.duration_s),
            format!("lb.warm={}", self.warmup_s),
            format!("lb.seed={}", self.seed),
            format!("lb.mean_ms={}", self.mean_ms),
            format!("lb.req_sigma={}", self.req_sigma),
            format!("lb.func_sigma={}", self.func_sigma),
            format!("lb.zipf={}", self.zipf_s),
            format!("lb.max_share={}", self.max_share),
            format!("lb.slo_mult={}", self.slo_mult),
            format!("lb.slo_floor_ms={}", self.slo_floor_ms),
            format!("lb.tuned_slice_ns={}", self.tuned_slice_ns),
            format!("lb.fifo={}", u8::from(self.fifo_dispatch)),
            format!("lb.schedstats={}", u8::from(self.schedstats)),
            format!("lb.ov_reps={}", self.ov_reps),
            format!("lb.ov_pipe={}", self.ov_pipe_loops),
            format!("lb.ov_msg_groups={}", self.ov_msg_groups),
            format!("lb.ov_msg_loops={}", self.ov_msg_loops),
            format!("lb.ov_switch_s={}", self.ov_switch_s),
            format!("lb.workload={}", self.workload.name()),
            format!("lb.rd_funcs={}", join(&self.rd.funcs)),
            format!("lb.rd_dur={}", self.rd.duration_s),
            format!("lb.rd_warm={}", self.rd.warmup_s),
            format!("lb.rd_sleep_ms={}", self.rd.sleep_ms),
            format!("lb.rd_burst_ms={}", self.rd.burst_ms),
            format!("lb.rd_threshold_ms={}", self.rd.threshold_ms),
            format!("lb.rd_trace_seed={}", self.rd.trace_seed),
            format!("lb.rd_max_threads={}", self.rd.max_threads),
            format!("lb.rd_prof={}", u8::from(self.rd.profile)),
            format!("lb.rd_ftrace={}", u8::from(self.rd.ftrace)),
            format!("lb.rd_scale={}", join(&self.rd.scales)),
            format!("lb.rd_trace={}", self.rd.trace),
            format!("lb.kn_users={}", join(&self.kn.users)),
            format!("lb.kn_pods={}", self.kn.pods),
            format!("lb.kn_k={}", self.kn.intra_op),
            format!("lb.kn_work_ms={}", self.kn.work_ms),
            format!("lb.kn_work_sigma={}", self.kn.work_sigma),
            format!("lb.kn_think_min_ms={}", self.kn.think_min_ms),
            format!("lb.kn_think_max_ms={}", self.kn.think_max_ms),
            format!("lb.kn_threshold_ms={}", self.kn.threshold_ms),
        ]
    }

    /// Whether this boot runs `part`.
    pub fn has(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }
}

// ---------------------------------------------------------------------------------------
// Records

/// Response-time summary in ms; `None` where a percentile falls on a request that never
/// completed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub n: usize,
    pub completed: usize,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Fraction of requests that met their SLO (incomplete ones did not).
    pub slo_attainment: Option<f64>,
}

/// Log-binned histogram of response times: [`BINS_PER_DECADE`] bins per decade from 1 us;
/// bin k holds values in [10^(k/B), 10^((k+1)/B)) us; the last bin ([`HIST_BINS`] - 1)
/// also holds everything larger, including requests that never completed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hist {
    /// Sparse: (bin, count), bins ascending.
    pub bins: Vec<(u32, u64)>,
}

pub const BINS_PER_DECADE: usize = 20;
pub const HIST_BINS: usize = BINS_PER_DECADE * 8 + 1;

impl Hist {
    /// Upper edge, in ms, of bin `bin` (bin b holds responses below 10^((b + 1) / 20) µs).
    pub fn upper_edge_ms(bin: u32) -> f64 {
        10f64.powf((f64::from(bin) + 1.0) / BINS_PER_DECADE as f64) / 1e3
    }

    /// Upper edge in ms of the bin holding quantile `q` (0..=1) of the counts; `None` for an
    /// empty histogram. Nearest-rank: the smallest bin whose cumulative count reaches
    /// `ceil(q × n)` (at least 1). Infinite when that is the last bin, which has no upper
    /// edge: it holds everything larger, and the requests that never completed (a record
    /// written with an infinite percentile reads it back as `None`).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        dense_quantile_ms(self.bins.iter().copied(), q)
    }
}

/// [`Hist::quantile_ms`] over (bin, count) pairs in ascending bin order; the host's
/// bootstrap calls it on dense arrays.
pub fn dense_quantile_ms(bins: impl Iterator<Item = (u32, u64)> + Clone, q: f64) -> Option<f64> {
    let n: u64 = bins.clone().map(|b| b.1).sum();
    if n == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
    let mut acc = 0;
    for (bin, c) in bins {
        acc += c;
        if acc >= rank {
            return Some(if bin as usize >= HIST_BINS - 1 {
                f64::INFINITY
            } else {
                Hist::upper_edge_ms(bin)
            });
        }
    }
    None
}

/// One function (one cgroup, one worker process).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// Probability that a request is for this function (popularity).
    pub popularity: f64,
    /// Mean service time of its requests, ms.
    pub mean_ms: f64,
    /// Share of the total CPU demand (popularity x mean, normalised).
    pub demand_share: f64,
    /// Heavy: among the highest-demand functions that together make up half of the demand.
    pub heavy: bool,
}

/// LAGS counters of the function groups over one run (sum over groups; `wait_max_us` is
/// the largest at the end).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LagsCounters {
    pub picks: u64,
    pub wakeup_preempts: u64,
    pub starved_picks: u64,
    pub wait_max_us: u64,
}

/// One run (configuration x point x repetition).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// `load` or `density`.
    pub sweep: String,
    pub config: String,
    pub funcs: usize,
    pub load: f64,
    pub rep: usize,
    pub seed: u64,
    pub requests: usize,
    pub measured: usize,
    pub dropped: usize,
    pub window_s: f64,
    pub drain_s: f64,
    pub cpus: usize,
    pub capacity_cpus: f64,
    pub offered_load: f64,
    pub achieved_load: f64,
    pub throughput_rps: f64,
    pub cpu_util: f64,
    pub cpu_kernel: f64,
    pub ctxt: u64,
    pub ctxt_per_req: Option<f64>,
    pub sched_count: u64,
    pub schedule_per_req: Option<f64>,
    pub ttwu: u64,
    pub run_delay_ms: f64,
    pub run_delay_ms_per_req: Option<f64>,
    pub timeslices: u64,
    pub worker_vol_cs: u64,
    pub worker_invol_cs: u64,
    pub worker_cs_per_req: Option<f64>,
    pub worker_exec_ms: f64,
    pub worker_wait_ms: f64,
    pub worker_wait_ms_per_req: Option<f64>,
    pub work_inflation: Option<f64>,
    pub dispatch_late_mean_us: f64,
    pub dispatch_late_max_us: f64,
    pub all: Summary,
    pub light: Summary,
    pub heavy: Summary,
    pub hist_all: Hist,
    pub hist_light: Hist,
    pub hist_heavy: Hist,
    /// `None` when the kernel has no LAGS statistics.
    pub lags: Option<LagsCounters>,
    /// The measured requests second by second, by arrival: second `k` holds every request
    /// that arrived in it (one that never completed is late, in the last bin), `good` those
    /// that met their SLO; the report's bootstrap resamples them. Empty in records from
    /// before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_second: Vec<SecondCounts>,
}

/// A `perf record -a -g -e cpu-clock` profile of a measured window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedProfile {
    /// CPU time the samples stand for, ns, over all CPUs, idle included (perf's event count).
    pub sampled_ns: u64,
    /// Share of the samples inside `__schedule()` or its callees.
    pub schedule_share: f64,
    /// Share of the samples in the idle loop (`do_idle()` outside `__schedule()`).
    pub idle_share: f64,
}

/// The ftrace function profiler's account of `schedule()` and `schedule_idle()` (the
/// callers of the `notrace` `__schedule()` that tasks and the idle loop use) over a measured
/// window, summed over the CPUs and both functions (`trace_stat/function<N>`, with
/// `sleep-time` off so that the time a task spent switched out inside them does not count;
/// their callees are not traced, so their time counts in the callers'): the prototype's
/// "time inside `schedule()`".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedFtrace {
    /// Calls that started inside the window (the profiler counts a hit on entry and adds
    /// the time on return: a call still switched out at the window's end is a hit without
    /// its time, and a task switched out when the window began adds time without a hit).
    pub calls: u64,
    /// CPU time inside the two and their callees, ns.
    pub time_ns: u64,
}

/// One run of the `rdhashd` workload (configuration x function count x repetition).
/// Latencies run from the end of a request's sleep to its completion; the counts and
/// percentiles cover the requests that completed inside the measured window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdhashdRecord {
    pub config: String,
    pub funcs: usize,
    /// Concurrency scale of the run (`RdPlan::scales`); `None`: the trace as it is, 1
    /// (knative runs, and records from before the option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    pub rep: usize,
    pub seed: u64,
    /// Second of the trace the run started at (the trace repeats).
    pub trace_offset_s: u64,
    pub cpus: usize,
    pub capacity_cpus: f64,
    /// Length of the measured window, s.
    pub window_s: f64,
    /// Requests that completed inside the window.
    pub completed: u64,
    /// Of those, requests with latency below `threshold_ms`.
    pub good: u64,
    pub threshold_ms: f64,
    pub burst_ms: f64,
    pub sleep_ms: f64,
    /// Latency percentiles, ms: the upper edge of the histogram bin holding the quantile;
    /// `None` without completed requests, or beyond the histogram's range.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub hist: Hist,
    /// Mean over the window's seconds of the summed in-flight targets (after the thread cap).
    pub inflight_target_mean: f64,
    /// Largest summed in-flight target of a window second, before the thread cap.
    pub inflight_target_max: u64,
    /// Request threads of the run (the cap: `max_threads`).
    pub threads: usize,
    /// Window seconds in which the trace asked for more in-flight requests than the threads.
    pub capped_seconds: u64,
    pub cpu_util: f64,
    /// Share of all CPU time in the kernel (system, irq, softirq) over the window; `None` in
    /// records from before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_kernel: Option<f64>,
    pub ctxt: u64,
    pub ctxt_per_req: Option<f64>,
    pub sched_count: u64,
    pub schedule_per_req: Option<f64>,
    /// Wake-ups over the window (`ttwu_count` of `/proc/schedstat`, summed over CPUs) and, of
    /// them, those on the waker's own CPU (`ttwu_local`); `None` without schedstats and in
    /// records from before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wakeups: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wakeups_local: Option<u64>,
    /// Seconds the controller waited after the window for in-flight requests to finish.
    pub drain_s: f64,
    /// `None` when the kernel has no LAGS statistics.
    pub lags: Option<LagsCounters>,
    /// Where the CPU time of the measured window went, from `perf record` (`lb.rd_prof`);
    /// `None` when the run was not profiled (or records from before the option).
    #[serde(default)]
    pub sched_profile: Option<SchedProfile>,
    /// Time inside `schedule()` from the ftrace function profiler (`lb.rd_ftrace`); `None`
    /// when the run was not profiled so (and in records from before the option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched_ftrace: Option<SchedFtrace>,
    /// The window's counts second by second (for the report's block-bootstrap intervals);
    /// empty in records from before them.
    #[serde(default)]
    pub per_second: Vec<SecondCounts>,
    /// Busy CPU time of the guest (every CPU, idle excluded) in each second of the window, ms,
    /// aligned with `per_second`; empty in records from before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub busy_ms_per_second: Vec<f64>,
}

impl RdhashdRecord {
    /// The run's concurrency scale, 1 when it has none.
    pub fn scale(&self) -> f64 {
        self.scale.unwrap_or(1.0)
    }
}

/// One second of a measured window: the requests that completed in it (closed-loop
/// workloads), or that arrived in it (zipf-open, [`RunRecord::per_second`]); `good` those
/// under the threshold or within their SLO.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondCounts {
    pub completed: u64,
    pub good: u64,
    pub hist: Hist,
}

/// One measurement of an overhead probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverheadRecord {
    pub probe: String,
    pub mode: String,
    pub rep: usize,
    pub value: Option<f64>,
    pub unit: String,
    pub higher_is_better: bool,
    pub wall_s: f64,
    pub error: Option<String>,
}

/// The function set of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionsRecord {
    pub sweep: String,
    pub funcs: usize,
    pub functions: Vec<Function>,
}

/// `uname(2)` of the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uname {
    pub release: String,
    pub version: String,
    pub machine: String,
}

/// The guest's environment, written once per boot before any run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvRecord {
    pub uname: Uname,
    pub proc_version: String,
    pub cmdline: String,
    pub cpus: usize,
    pub spin_iters_per_ns: f64,
    pub sched_lags_sysctl: String,
    pub base_slice_ns: String,
    pub lags_credit_period_ns: String,
    pub lags_starve_ns: String,
    pub schedstat_version: String,
    pub plan: Plan,
    /// Problems with the plan's parameters.
    pub warnings: Vec<String>,
    /// Measured CPU capacity in CPUs (less than `cpus` when the host is busy).
    pub capacity_cpus: f64,
    /// Where the function cgroups were made: `cgroup2 /sys/fs/cgroup/bench` in the guest;
    /// on the host (`--host`) the hierarchy found there, v2 or the v1 cpu controller.
    #[serde(default)]
    pub cgroup: String,
    /// The run was on the host's own kernel (`cargo xtask bench --host`), not in a guest.
    #[serde(default)]
    pub host_mode: bool,
}

/// How a benchmark boot ended, from the guest's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every part ran without an error.
    Ok,
    /// Some parts reported errors (counted in `errors`).
    Errors,
    /// The benchmark stopped with an error before its end.
    Error,
    /// The benchmark panicked.
    Panic,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Errors => "errors",
            Status::Error => "error",
            Status::Panic => "panic",
        }
    }
}

/// The last record of a boot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoneRecord {
    pub status: Status,
    pub errors: usize,
}

/// One line of the data port. The large variants are boxed (clippy's
/// `large_enum_variant`); serde writes them as if they were not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    Env(Box<EnvRecord>),
    Functions(FunctionsRecord),
    Run(Box<RunRecord>),
    Overhead(OverheadRecord),
    Done(DoneRecord),
    Rdhashd(Box<RdhashdRecord>),
    Knative(Box<KnativeRecord>),
}

/// One knative run. `run` holds what every closed-loop run measures, with `run.funcs` the
/// user count (the workload's scale, so the host aggregates it as it does rdhashd's
/// function counts) and the latency from a user's request to its last thread's join.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnativeRecord {
    pub users: usize,
    pub pods: usize,
    pub intra_op: u32,
    pub work_ms: f64,
    /// Completed requests per second of the window.
    pub rps: f64,
    pub run: RdhashdRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect lb.* parameters to override defaults and junk to produce warnings.
    #[test]
    fn plan_from_cmdline() {
        let (p, w) = Plan::from_cmdline(
            "console=ttyS0 rdinit=/bin/lags-bench lb.funcs=25 lb.loads=0.5,0.9 lb.configs=stock,lags lb.seed=7 lb.reps=x lb.nope=1",
        );
        assert_eq!(p.funcs, 25);
        assert_eq!(p.loads, vec![0.5, 0.9]);
        assert_eq!(p.configs, vec!["stock", "lags"]);
        assert_eq!(p.seed, 7);
        assert_eq!(p.reps, Plan::default().reps);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(p.has("load") && !Plan::from_cmdline("lb.parts=overhead").0.has("load"));
    }

    // Expect the dispatcher in the fair class unless lb.fifo=1, a bad value to be a warning
    // that changes nothing, and a plan recorded before the option to read as SCHED_FIFO
    // (which every such run used).
    #[test]
    fn fifo_dispatch_is_opt_in() {
        assert!(!Plan::default().fifo_dispatch);
        assert!(Plan::from_cmdline("lb.fifo=1").0.fifo_dispatch);
        let (p, w) = Plan::from_cmdline("lb.fifo=yes");
        assert!(!p.fifo_dispatch && w.len() == 1, "{w:?}");
        let mut old = serde_json::to_value(Plan::default()).unwrap();
        old.as_object_mut().unwrap().remove("fifo_dispatch");
        assert!(serde_json::from_value::<Plan>(old).unwrap().fifo_dispatch);
    }

    // Expect a plan in which every field differs from the default to read back unchanged,
    // so every field has a parameter in both directions.
    #[test]
    fn plan_round_trip() {
        let p = Plan {
            parts: vec!["overhead".into(), "load".into()],
            configs: vec!["lags".into()],
            funcs: 7,
            loads: vec![0.25, 0.7, 1.1],
            density: vec![3, 9],
            density_load: 0.55,
            reps: 5,
            duration_s: 2.5,
            warmup_s: 0.5,
            seed: 99,
            mean_ms: 3.3,
            req_sigma: 0.4,
            func_sigma: 0.6,
            zipf_s: 1.2,
            max_share: 0.2,
            slo_mult: 8.0,
            slo_floor_ms: 15.0,
            tuned_slice_ns: 3_000_000,
            fifo_dispatch: true,
            schedstats: false,
            ov_reps: 4,
            ov_pipe_loops: 1000,
            ov_msg_groups: 3,
            ov_msg_loops: 7,
            ov_switch_s: 1,
            workload: Workload::Rdhashd,
            rd: RdPlan {
                funcs: vec![1, 5],
                duration_s: 7,
                warmup_s: 3,
                sleep_ms: 12.5,
                burst_ms: 2.5,
                threshold_ms: 250.0,
                trace_seed: 11,
                max_threads: 64,
                profile: true,
                ftrace: true,
                trace: "/traces".into(),
                scales: vec![0.5, 0.85, 1.25],
            },
            kn: KnPlan {
                users: vec![10, 20],
                pods: 7,
                intra_op: 2,
                work_ms: 12.0,
                work_sigma: 1.5,
                think_min_ms: 100.0,
                think_max_ms: 900.0,
                threshold_ms: 500.0,
            },
        };
        let line = p.to_cmdline().join(" ");
        let (q, w) = Plan::from_cmdline(&line);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(q, p, "{line}");
        // And through JSON, as the guest reports it in its env record.
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&s).unwrap(), p);
    }

    // Expect each record type to round-trip through one JSON line with its `type` tag.
    #[test]
    fn records_round_trip() {
        let recs = [
            Record::Run(Box::new(RunRecord {
                sweep: "load".into(),
                config: "lags".into(),
                lags: Some(LagsCounters {
                    picks: 3,
                    ..LagsCounters::default()
                }),
                hist_all: Hist {
                    bins: vec![(4, 2), (9, 1)],
                },
                ctxt_per_req: Some(1.5),
                per_second: vec![SecondCounts {
                    completed: 3,
                    good: 2,
                    hist: Hist {
                        bins: vec![(9, 2), (160, 1)],
                    },
                }],
                ..RunRecord::default()
            })),
            Record::Overhead(OverheadRecord {
                probe: "pipe".into(),
                error: Some("x".into()),
                ..OverheadRecord::default()
            }),
            Record::Functions(FunctionsRecord {
                sweep: "density".into(),
                funcs: 1,
                functions: vec![Function {
                    popularity: 1.0,
                    mean_ms: 5.0,
                    demand_share: 1.0,
                    heavy: true,
                }],
            }),
            Record::Env(Box::new(EnvRecord {
                uname: Uname::default(),
                proc_version: "Linux".into(),
                cmdline: "lb.funcs=2".into(),
                cpus: 2,
                spin_iters_per_ns: 0.5,
                sched_lags_sysctl: "1".into(),
                base_slice_ns: "3000000".into(),
                lags_credit_period_ns: String::new(),
                lags_starve_ns: String::new(),
                schedstat_version: "version 15".into(),
                plan: Plan::default(),
                warnings: vec![],
                capacity_cpus: 1.9,
                cgroup: "cgroup v1 cpu /sys/fs/cgroup/cpu/lags-bench.7".into(),
                host_mode: true,
            })),
            Record::Done(DoneRecord {
                status: Status::Errors,
                errors: 2,
            }),
            Record::Knative(Box::new(KnativeRecord {
                users: 100,
                pods: 100,
                intra_op: 3,
                work_ms: 30.0,
                rps: 41.5,
                run: RdhashdRecord {
                    config: "stock".into(),
                    funcs: 100,
                    completed: 2490,
                    ..RdhashdRecord::default()
                },
            })),
            Record::Rdhashd(Box::new(RdhashdRecord {
                config: "lags".into(),
                funcs: 19,
                completed: 12_000,
                good: 11_000,
                p99_ms: Some(120.0),
                p999_ms: None,
                hist: Hist {
                    bins: vec![(70, 5)],
                },
                ctxt_per_req: Some(2.5),
                lags: Some(LagsCounters::default()),
                sched_profile: Some(SchedProfile {
                    sampled_ns: 40_000_000_000,
                    schedule_share: 0.02,
                    idle_share: 0.1,
                }),
                sched_ftrace: Some(SchedFtrace {
                    calls: 250_000,
                    time_ns: 900_000_000,
                }),
                per_second: vec![SecondCounts {
                    completed: 3,
                    good: 2,
                    hist: Hist {
                        bins: vec![(61, 2), (130, 1)],
                    },
                }],
                ..RdhashdRecord::default()
            })),
        ];
        for r in recs {
            let line = serde_json::to_string(&r).unwrap();
            assert!(line.starts_with("{\"type\":"), "{line}");
            assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), r);
        }
    }

    // Expect equal-size knative requests by default and in plans recorded before the
    // option, and a request-size sigma outside [0, 3] to be a warning that changes nothing.
    #[test]
    fn knative_work_sigma() {
        assert_eq!(Plan::default().kn.work_sigma, 0.0);
        assert_eq!(
            Plan::from_cmdline("lb.kn_work_sigma=1").0.kn.work_sigma,
            1.0
        );
        for bad in ["-0.5", "4", "x", "NaN"] {
            let (p, w) = Plan::from_cmdline(&format!("lb.kn_work_sigma={bad}"));
            assert_eq!(p.kn.work_sigma, 0.0, "{bad}");
            assert_eq!(w.len(), 1, "{bad}: {w:?}");
        }
        let mut old = serde_json::to_value(KnPlan::default()).unwrap();
        old.as_object_mut().unwrap().remove("work_sigma");
        let old: KnPlan = serde_json::from_value(old).unwrap();
        assert_eq!(old, KnPlan::default());
    }

    // Expect every configuration name to read back as its configuration, the names to be
    // distinct, the two LAGS configurations to need LAGS, and a plan naming an unknown
    // configuration to be refused by the check, not silently run with the defaults.
    #[test]
    fn sched_configs() {
        for c in SchedConfig::ALL {
            assert_eq!(SchedConfig::from_name(c.name()), Some(c));
        }
        let mut names: Vec<_> = SchedConfig::ALL.map(SchedConfig::name).to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SchedConfig::ALL.len());
        assert_eq!(SchedConfig::names(), "stock, lags, lags-inert, tuned");
        let lags: Vec<_> = SchedConfig::ALL
            .into_iter()
            .filter(|c| c.needs_lags())
            .collect();
        assert_eq!(lags, [SchedConfig::Lags, SchedConfig::LagsInert]);
        assert_eq!(SchedConfig::from_name("LAGS"), None);
        let (p, w) = Plan::from_cmdline("lb.configs=stock,lags-inert");
        assert_eq!(p.configs, ["stock", "lags-inert"]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(SchedConfig::check(&p.configs), Ok(()));
        // An unknown name is kept, not replaced by the defaults (which would run
        // configurations nobody asked for), and checking the plan refuses it.
        let (p, _) = Plan::from_cmdline("lb.configs=stock,bogus");
        assert_eq!(p.configs, ["stock", "bogus"]);
        let e = SchedConfig::check(&p.configs).unwrap_err();
        assert!(e.contains("\"bogus\"") && e.contains("lags-inert"), "{e}");
    }

    // Expect the workload to default to zipf-open, an unknown workload to be a warning that
    // changes nothing, and a plan recorded before the workload selector to read as zipf-open
    // with the default rdhashd parameters.
    #[test]
    fn workload_selector() {
        assert_eq!(Plan::default().workload.name(), "zipf-open");
        assert_eq!(
            Plan::from_cmdline("lb.workload=rdhashd").0.workload.name(),
            "rdhashd"
        );
        // On the wire (records, results.json) the workload is its name.
        let json = serde_json::to_value(Plan::from_cmdline("lb.workload=rdhashd").0).unwrap();
        assert_eq!(json["workload"], "rdhashd");
        assert_eq!(
            Plan::from_cmdline("lb.workload=knative").0.workload,
            Workload::Knative
        );
        let (p, w) = Plan::from_cmdline(
            "lb.workload=bogus lb.rd_funcs=1,x lb.rd_scale=0 lb.rd_scale= lb.rd_scale=1,-2",
        );
        assert_eq!(p, Plan::default());
        assert_eq!(w.len(), 5, "{w:?}");
        let mut old_rd = serde_json::to_value(RdPlan::default()).unwrap();
        old_rd.as_object_mut().unwrap().remove("scales");
        assert_eq!(
            serde_json::from_value::<RdPlan>(old_rd).unwrap().scales,
            [1.0]
        );
        let mut old = serde_json::to_value(Plan::default()).unwrap();
        let o = old.as_object_mut().unwrap();
        o.remove("workload");
        o.remove("rd");
        o.remove("kn");
        assert_eq!(
            serde_json::from_value::<Plan>(old).unwrap(),
            Plan::default()
        );
    }

    // Expect a misspelt or unknown field, a missing field and an unknown type to be
    // errors, not defaults.
    #[test]
    fn records_are_strict() {
        let good = r#"{"type":"done","status":"ok","errors":0}"#;
        assert!(serde_json::from_str::<Record>(good).is_ok());
        for bad in [
            r#"{"type":"done","status":"ok","errors":0,"boot":"x"}"#,
            r#"{"type":"done","status":"ok","erors":0}"#,
            r#"{"type":"done","status":"fine","errors":0}"#,
            r#"{"type":"finished","status":"ok","errors":0}"#,
            r#"{"type":"overhead","probe":"pipe"}"#,
        ] {
            assert!(serde_json::from_str::<Record>(bad).is_err(), "{bad}");
        }
    }
}
